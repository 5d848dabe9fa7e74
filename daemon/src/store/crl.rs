//! What the store keeps for CRLs: each certificate's partition, the CRL number sequences, and
//! the newest signed CRL of every scope.
//!
//! ```text
//! certificates.shard      partition assigned at issuance (NULL: not partitioned)
//! crl_numbers             (issuer, shard) → last CRL number handed out (full and delta share it)
//! crls                    (issuer, shard, kind) → newest signed CRL, its number and coverage
//! ```

use super::CertStatus;
use pkid_protocols::revocation::CrlReason;

/// Which certificates of an issuer a CRL covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShardFilter {
    /// All of them (partitioning off: one complete CRL per issuer).
    Any,
    /// Those issued before partitioning was enabled (no shard recorded).
    Unsharded,
    /// Those assigned to this partition.
    Shard(u32),
}

/// Which revoked and held certificates to visit ([`super::Store::scan_crl_entries`]).
#[derive(Clone, Copy, Debug)]
pub struct CrlQuery<'a> {
    /// The issuer name.
    pub issuer: &'a str,
    /// The partition.
    pub shard: ShardFilter,
    /// Leave out certificates whose notAfter is before this (expired past the grace period).
    pub not_after_from: u64,
    /// For a delta CRL: only certificates whose status changed after this change-sequence
    /// position (the base CRL's), including ones released from hold (listed as valid).
    pub changed_after: Option<u64>,
}

/// One certificate as a CRL lists it.
#[derive(Clone, Copy, Debug)]
pub struct CrlRow<'a> {
    /// Canonical hex serial.
    pub serial: &'a str,
    /// Revoked, hold, or (deltas only) valid again after a hold.
    pub status: CertStatus,
    /// When it was revoked or held; for a released hold, when it was released.
    pub at: u64,
    /// The revocation reason (certificateHold for a hold).
    pub reason: Option<CrlReason>,
    /// The invalidity date, if recorded.
    pub invalidity_date: Option<u64>,
}

/// Receives a CRL scan's rows in ascending numeric serial order.
pub trait CrlVisitor {
    /// One row. Returning `false` stops the scan (the visitor keeps its own error).
    fn row(&mut self, row: CrlRow<'_>) -> bool;
}

/// A signed CRL to store.
#[derive(Clone, Copy, Debug)]
pub struct NewCrl<'a> {
    /// Issuer name.
    pub issuer: &'a str,
    /// Partition, if the CRL covers one.
    pub shard: Option<u32>,
    /// A delta CRL.
    pub delta: bool,
    /// Its cRLNumber (allocated by [`super::Store::next_crl_number`]).
    pub number: u64,
    /// For a delta, the base CRL's number.
    pub base_number: Option<u64>,
    /// thisUpdate, Unix seconds.
    pub this_update: u64,
    /// nextUpdate, Unix seconds.
    pub next_update: u64,
    /// The change-sequence position the content reflects.
    pub change_seq: u64,
    /// Number of entries.
    pub entries: u64,
    /// The DER CertificateList.
    pub der: &'a [u8],
}

/// A stored CRL's description (without the bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlInfo {
    /// Issuer name.
    pub issuer: String,
    /// Partition, if the CRL covers one.
    pub shard: Option<u32>,
    /// A delta CRL.
    pub delta: bool,
    /// Its cRLNumber.
    pub number: u64,
    /// For a delta, the base CRL's number.
    pub base_number: Option<u64>,
    /// thisUpdate, Unix seconds.
    pub this_update: u64,
    /// nextUpdate, Unix seconds.
    pub next_update: u64,
    /// The change-sequence position the content reflects.
    pub change_seq: u64,
    /// Number of entries.
    pub entries: u64,
    /// Size of the DER, bytes.
    pub size: u64,
}

/// A stored CRL with its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCrl {
    /// What it is.
    pub info: CrlInfo,
    /// The DER CertificateList.
    pub der: Vec<u8>,
}

/// A change that affects what a CRL lists ([`super::Store::crl_changes_since`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CrlScopeChange {
    /// Issuer name.
    pub issuer: String,
    /// The certificate's partition, if it has one.
    pub shard: Option<u32>,
}

/// The sentinel the `shard` columns use for "no partition" (SQLite primary keys treat NULLs as
/// distinct, so NULL cannot key the issuer-wide CRL).
pub(crate) const NO_SHARD: i64 = -1;

/// `Option<u32>` ↔ the `shard` column of `crl_numbers` and `crls`.
pub(crate) fn shard_column(shard: Option<u32>) -> i64 {
    shard.map_or(NO_SHARD, i64::from)
}

/// The `shard` column back to `Option<u32>`.
pub(crate) fn shard_of_column(v: i64) -> Option<u32> {
    u32::try_from(v).ok()
}
