//! What the store keeps for CRLs: each certificate's partition, the CRL number sequences, and
//! the newest signed CRL of every scope.
//!
//! ```text
//! certificates.shard      partition assigned at issuance (NULL: not partitioned)
//! crl_numbers             (issuer, shard) → last CRL number handed out (full and delta share it)
//! crls                    (issuer, shard, kind) → newest signed CRL, its number and coverage
//! ```

use super::{CertStatus, StoreError};
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

/// Which revoked and held certificates to visit ([`CrlStore::scan_crl_entries`]).
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
    /// Its cRLNumber (allocated by [`CrlStore::next_crl_number`]).
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

/// A change that affects what a CRL lists ([`CrlStore::crl_changes_since`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CrlScopeChange {
    /// Issuer name.
    pub issuer: String,
    /// The certificate's partition, if it has one.
    pub shard: Option<u32>,
}

/// Everything CRL: each certificate's partition, the CRL number sequences, and the newest
/// signed CRL of every scope. Positions returned here are settled change-sequence positions
/// (see [`super::feed`]), so a delta CRL's base position never skips a late commit.
pub trait CrlStore: Send + Sync {
    /// Records the CRL partition a certificate was assigned at issuance (before it is signed).
    fn set_crl_shard(&self, serial: &str, shard: u32) -> Result<(), StoreError>;
    /// Visits the revoked and held certificates a CRL lists, in ascending numeric serial
    /// order, in one consistent read; returns the change-sequence position it reflects.
    fn scan_crl_entries(
        &self,
        query: &CrlQuery<'_>,
        visitor: &mut dyn CrlVisitor,
    ) -> Result<u64, StoreError>;
    /// The scopes (issuer, partition) whose CRL content changed after `seq` — revocations,
    /// holds, releases; not issuance — and the change-sequence position read up to.
    fn crl_changes_since(&self, seq: u64) -> Result<(Vec<CrlScopeChange>, u64), StoreError>;
    /// The highest partition any of an issuer's certificates was assigned, if any.
    fn max_crl_shard(&self, issuer: &str) -> Result<Option<u32>, StoreError>;
    /// Hands out the next CRL number of a scope, atomically across processes: a number is
    /// never handed out twice, even if the CRL it was for is never stored.
    fn next_crl_number(&self, issuer: &str, shard: Option<u32>) -> Result<u64, StoreError>;
    /// Stores a signed CRL as the newest of its scope and kind, unless one with a higher
    /// number is already stored (then returns `false` and stores nothing).
    fn put_crl(&self, crl: &NewCrl<'_>) -> Result<bool, StoreError>;
    /// Descriptions of the newest stored CRL of every scope and kind.
    fn crl_infos(&self) -> Result<Vec<CrlInfo>, StoreError>;
    /// The newest stored CRL of a scope and kind.
    fn stored_crl(
        &self,
        issuer: &str,
        shard: Option<u32>,
        delta: bool,
    ) -> Result<Option<StoredCrl>, StoreError>;
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
