//! The status-feed role: the change sequence other processes follow, and the consistent scan
//! they start from.
//!
//! ```text
//! changes        seq → serial, at     (one row per issuance and status change)
//! ```
//!
//! The contract a backend keeps and what a follower can rely on are in `docs/architecture.md`
//! ("The change feed"); [`super::cursor::FeedCursor`] is the follower's side of it and
//! [`super::follow`] the loop that drives it. In short: sequence values are unique and
//! increase in the order they are taken, but need not commit in that order; a [`Change`]
//! carries the certificate's state as of the read, so applying one late, or twice, is harmless;
//! and every position a consistent read returns is *settled*: each value at or below it is in
//! that read or will never commit.

use super::{CertStatus, StoreError};
use pkid_protocols::revocation::CrlReason;

/// One entry of the change sequence, with the certificate's state as of the read that returned
/// it (not as of the change: a later change of the same certificate may already be reflected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Position in the sequence (unique; increasing in the order values were taken).
    pub seq: u64,
    /// Serial that changed.
    pub serial: String,
    /// Its issuer.
    pub issuer: String,
    /// Its status as of the read.
    pub status: CertStatus,
    /// Revocation time, if revoked or held.
    pub revoked_at: Option<u64>,
    /// Revocation reason, if revoked or held.
    pub reason: Option<CrlReason>,
    /// notAfter of the certificate.
    pub not_after: u64,
}

/// One certificate's status, as [`StatusFeed::scan_statuses`] visits it.
#[derive(Clone, Copy, Debug)]
pub struct StatusRow<'a> {
    /// Issuer name.
    pub issuer: &'a str,
    /// Canonical hex serial.
    pub serial: &'a str,
    /// Status.
    pub status: CertStatus,
    /// Revocation time.
    pub revoked_at: Option<u64>,
    /// Revocation reason.
    pub reason: Option<CrlReason>,
}

/// The change sequence: what a follower (the daemon's revocation index and caches, another
/// node) reads to stay current without rescanning every certificate.
pub trait StatusFeed: Send + Sync {
    /// Committed changes with a sequence value above `seq`, ascending, at most `limit`.
    fn changes_since(&self, seq: u64, limit: usize) -> Result<Vec<Change>, StoreError>;
    /// Those of the changes with exactly these sequence values that have committed, ascending:
    /// how a follower re-reads the values it skipped because they had not committed yet.
    fn changes_at(&self, seqs: &[u64]) -> Result<Vec<Change>, StoreError>;
    /// Visits the status of every issued (not pending) certificate in one consistent read, and
    /// returns the settled change-sequence position that read reflects: following changes from
    /// there misses nothing.
    fn scan_statuses(&self, visit: &mut dyn FnMut(StatusRow<'_>)) -> Result<u64, StoreError>;
    /// Cheap liveness check (the readiness probe): a node that cannot read its feed serves
    /// stale status.
    fn ping(&self) -> Result<(), StoreError>;
}
