//! The timestamp-log role: RFC 3161 serial numbers and the record of issued tokens.
//!
//! ```text
//! tsa_serial_mark   the high-water mark: every serial below it may have been handed out
//! timestamps        serial → genTime, policy, imprint
//! ```

use super::StoreError;

/// What the store keeps of an issued timestamp token (RFC 3161): enough to answer "did this
/// TSA issue serial N, for which imprint, when, under which policy".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimestampRecord {
    /// The token's serial number (TSTInfo.serialNumber).
    pub serial: u64,
    /// genTime, Unix seconds.
    pub gen_time: u64,
    /// The policy OID, dotted.
    pub policy: String,
    /// The imprint's hash algorithm (`sha256`, …).
    pub hash_algorithm: String,
    /// The hashed message.
    pub imprint: Vec<u8>,
}

/// What the TSA keeps: serial numbers that are never repeated, and what each token stamped.
pub trait TimestampLog: Send + Sync {
    /// Durably reserves `count` timestamp serial numbers that no caller, in this process or
    /// any other, has had or will get, and returns them. The reservation is committed (synced)
    /// before this returns, so serials handed out from it are never repeated after a crash.
    fn reserve_timestamp_serials(&self, count: u64) -> Result<std::ops::Range<u64>, StoreError>;
    /// Records issued timestamp tokens, all in one transaction.
    fn record_timestamps(&self, records: &[TimestampRecord]) -> Result<(), StoreError>;
    /// The record of the token with this serial number.
    fn timestamp(&self, serial: u64) -> Result<Option<TimestampRecord>, StoreError>;
}
