//! The durable record: certificates, revocations, the audit log and the change sequence.
//!
//! [`Store`] is synchronous and object-safe; the daemon calls it from blocking threads. SQLite
//! ([`sqlite::SqliteStore`]) is the embedded default; the trait is shaped so a PostgreSQL store
//! can follow without changing callers: every write that matters is one transaction, and every
//! status change appends to a monotonically increasing change sequence that other processes
//! (the daemon's revocation index, other nodes) follow.

pub mod crl;
pub mod sqlite;

use pkid_protocols::revocation::CrlReason;

/// Where a certificate is in its life. Expiry is derived from `not_after`, not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertStatus {
    /// Serial and to-be-signed bytes recorded; the signed certificate not (yet) stored. A
    /// crash between signing and storing leaves this state, never a lost certificate.
    Pending,
    /// Issued and not revoked.
    Valid,
    /// Permanently revoked.
    Revoked,
    /// Suspended (revoked with reason certificateHold); may be released.
    Hold,
}

impl CertStatus {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Valid => "valid",
            Self::Revoked => "revoked",
            Self::Hold => "hold",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "valid" => Self::Valid,
            "revoked" => Self::Revoked,
            "hold" => Self::Hold,
            _ => return None,
        })
    }
}

/// A certificate as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Canonical lower-case hex serial (see `pkid_protocols::serial`).
    pub serial: String,
    /// Name of the issuing CA (`root`, `issuing`).
    pub issuer: String,
    /// Subject, RFC 4514.
    pub subject: String,
    /// Profile it was issued under.
    pub profile: String,
    /// notBefore, Unix seconds.
    pub not_before: u64,
    /// notAfter, Unix seconds.
    pub not_after: u64,
    /// Current status.
    pub status: CertStatus,
    /// When it was revoked or held, Unix seconds.
    pub revoked_at: Option<u64>,
    /// Why (certificateHold for [`CertStatus::Hold`]).
    pub reason: Option<CrlReason>,
    /// When the key is known or suspected to have been compromised, Unix seconds.
    pub invalidity_date: Option<u64>,
    /// The to-be-signed certificate, recorded before signing.
    pub tbs: Vec<u8>,
    /// The signed certificate, once stored.
    pub der: Option<Vec<u8>>,
    /// Serial of the certificate this one renews, rekeys or modifies.
    pub replaces: Option<String>,
    /// When the record was created, Unix seconds.
    pub created_at: u64,
}

/// A certificate about to be signed.
#[derive(Clone, Debug)]
pub struct NewCertificate {
    /// Canonical hex serial.
    pub serial: String,
    /// Issuing CA name.
    pub issuer: String,
    /// Subject, RFC 4514.
    pub subject: String,
    /// Profile name.
    pub profile: String,
    /// notBefore, Unix seconds.
    pub not_before: u64,
    /// notAfter, Unix seconds.
    pub not_after: u64,
    /// DER of the TBSCertificate.
    pub tbs: Vec<u8>,
    /// Predecessor serial, for renew/rekey/modify.
    pub replaces: Option<String>,
    /// Unix seconds now.
    pub created_at: u64,
}

/// A status transition. The store applies it only from the states listed on each variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusChange {
    /// valid|hold → revoked.
    Revoke {
        /// Reason (not certificateHold).
        reason: CrlReason,
        /// Unix seconds.
        at: u64,
        /// Optional invalidity date, Unix seconds.
        invalidity_date: Option<u64>,
    },
    /// valid → hold.
    Hold {
        /// Unix seconds.
        at: u64,
    },
    /// hold → valid.
    Release,
}

/// One entry of the change sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Position in the sequence (strictly increasing).
    pub seq: u64,
    /// Serial that changed.
    pub serial: String,
    /// Its issuer.
    pub issuer: String,
    /// Its status after the change.
    pub status: CertStatus,
    /// Revocation time, if revoked or held.
    pub revoked_at: Option<u64>,
    /// Revocation reason, if revoked or held.
    pub reason: Option<CrlReason>,
    /// notAfter of the certificate.
    pub not_after: u64,
}

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused (bad input, policy).
    Refused,
    /// Failed on our side.
    Failed,
}

impl Outcome {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// One audit record: who did what, when, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: u64,
    /// Operator or client identity.
    pub actor: String,
    /// What was attempted (`cert.issue`, `cert.revoke`, `ca.init`, …).
    pub action: String,
    /// What it was done to (serial, profile, issuer).
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Free text: reason for refusal, parameters.
    pub detail: String,
}

/// One certificate's status, as [`Store::scan_statuses`] visits it.
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

/// Filter for [`Store::list`].
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Only this status.
    pub status: Option<CertStatus>,
    /// Only subjects containing this text (case-insensitive).
    pub subject_contains: Option<String>,
    /// Only this issuer.
    pub issuer: Option<String>,
    /// At most this many (newest first).
    pub limit: usize,
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The serial is already recorded (the caller draws a new one).
    #[error("serial {0} already exists")]
    DuplicateSerial(String),
    /// No such certificate.
    #[error("no certificate with serial {0}")]
    NotFound(String),
    /// The transition does not apply to the certificate's current status.
    #[error("certificate {serial} is {status}; cannot {action}")]
    Conflict {
        /// Serial.
        serial: String,
        /// Its current status.
        status: &'static str,
        /// What was attempted.
        action: &'static str,
    },
    /// The database is unreachable, locked too long or corrupt.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The durable store.
pub trait Store: Send + Sync {
    /// Records a serial and its to-be-signed certificate (status pending) before signing.
    fn reserve(&self, cert: &NewCertificate) -> Result<(), StoreError>;
    /// Stores the signed certificate (pending → valid) and appends to the change sequence.
    /// Returns only after the commit is durable.
    fn complete(&self, serial: &str, der: &[u8]) -> Result<(), StoreError>;
    /// The certificate with this serial.
    fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;
    /// Certificates matching a filter, newest first.
    fn list(&self, filter: &ListFilter) -> Result<Vec<CertificateRecord>, StoreError>;
    /// Applies a status change, its change-sequence entry and its audit record in one
    /// transaction. Returns the updated record.
    fn change_status(
        &self,
        serial: &str,
        change: StatusChange,
        audit: &AuditEntry,
    ) -> Result<CertificateRecord, StoreError>;
    /// Completes `serial` (as [`Store::complete`]) and applies `change` to its `predecessor`
    /// (with its audit entry) in one transaction: a successor that supersedes another
    /// certificate (rekey, modify) and the end of the predecessor commit together, or neither
    /// does (the successor then stays pending).
    fn complete_superseding(
        &self,
        serial: &str,
        der: &[u8],
        predecessor: &str,
        change: StatusChange,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Appends an audit record.
    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The newest audit records, newest first.
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Changes after `seq`, oldest first, at most `limit`.
    fn changes_since(&self, seq: u64, limit: usize) -> Result<Vec<Change>, StoreError>;
    /// Cheap liveness check.
    fn ping(&self) -> Result<(), StoreError>;
    /// Visits the status of every issued (not pending) certificate in one consistent read, and
    /// returns the change-sequence position that read reflects: following changes from there
    /// misses nothing.
    fn scan_statuses(&self, visit: &mut dyn FnMut(StatusRow<'_>)) -> Result<u64, StoreError>;
    /// TSA: durably reserves `count` timestamp serial numbers that no caller, in this process or
    /// any other, has had or will get, and returns them. The reservation is committed (synced)
    /// before this returns, so serials handed out from it are never repeated after a crash.
    fn reserve_timestamp_serials(&self, count: u64) -> Result<std::ops::Range<u64>, StoreError>;
    /// TSA: records issued timestamp tokens, all in one transaction.
    fn record_timestamps(&self, records: &[TimestampRecord]) -> Result<(), StoreError>;
    /// TSA: the record of the token with this serial number.
    fn timestamp(&self, serial: u64) -> Result<Option<TimestampRecord>, StoreError>;

    // CRLs (see `crl`). Defaults refuse, so a store without CRL support still compiles.

    /// Records the CRL partition a certificate was assigned at issuance (before it is signed).
    fn set_crl_shard(&self, serial: &str, shard: u32) -> Result<(), StoreError> {
        let _ = (serial, shard);
        Err(no_crls())
    }
    /// Visits the revoked and held certificates a CRL lists, in ascending numeric serial
    /// order, in one consistent read; returns the change-sequence position it reflects.
    fn scan_crl_entries(
        &self,
        query: &crl::CrlQuery<'_>,
        visitor: &mut dyn crl::CrlVisitor,
    ) -> Result<u64, StoreError> {
        let _ = (query, visitor);
        Err(no_crls())
    }
    /// The scopes (issuer, partition) whose CRL content changed after `seq` — revocations,
    /// holds, releases; not issuance — and the change-sequence position read up to.
    fn crl_changes_since(&self, seq: u64) -> Result<(Vec<crl::CrlScopeChange>, u64), StoreError> {
        let _ = seq;
        Err(no_crls())
    }
    /// The highest partition any of an issuer's certificates was assigned, if any.
    fn max_crl_shard(&self, issuer: &str) -> Result<Option<u32>, StoreError> {
        let _ = issuer;
        Err(no_crls())
    }
    /// Hands out the next CRL number of a scope, atomically across processes: a number is
    /// never handed out twice, even if the CRL it was for is never stored.
    fn next_crl_number(&self, issuer: &str, shard: Option<u32>) -> Result<u64, StoreError> {
        let _ = (issuer, shard);
        Err(no_crls())
    }
    /// Stores a signed CRL as the newest of its scope and kind, unless one with a higher
    /// number is already stored (then returns `false` and stores nothing).
    fn put_crl(&self, crl: &crl::NewCrl<'_>) -> Result<bool, StoreError> {
        let _ = crl;
        Err(no_crls())
    }
    /// Descriptions of the newest stored CRL of every scope and kind.
    fn crl_infos(&self) -> Result<Vec<crl::CrlInfo>, StoreError> {
        Err(no_crls())
    }
    /// The newest stored CRL of a scope and kind.
    fn stored_crl(
        &self,
        issuer: &str,
        shard: Option<u32>,
        delta: bool,
    ) -> Result<Option<crl::StoredCrl>, StoreError> {
        let _ = (issuer, shard, delta);
        Err(no_crls())
    }
}

fn no_crls() -> StoreError {
    StoreError::Unavailable("this store does not keep CRLs".into())
}

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
