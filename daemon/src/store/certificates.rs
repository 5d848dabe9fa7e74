//! The certificates role: every issued certificate, from the reserved serial to its current
//! status.
//!
//! ```text
//! certificates   serial → issuer, subject, profile, validity, status, revocation, TBS, DER
//! ```
//!
//! ```text
//!  reserve ─▶ pending ─▶ complete ─▶ valid ⇄ hold ─▶ revoked
//!                └─ (the issuing process died; reconcile, past the stale bound)
//!                      ├─ stored DER verifies ─▶ complete_recovered ─▶ valid
//!                      └─ otherwise ─────────▶ abandon ─▶ abandoned (serial kept, never served)
//! ```
//!
//! A write that hands a certificate to anyone commits first ([`Certificates::complete`]), and
//! every status change commits with its change-sequence entry (see [`super::feed`]) and its
//! audit record in one transaction.

use super::{AuditEntry, StoreError};
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
    /// A pending row whose issuance never finished, closed by reconciliation
    /// ([`Certificates::abandon`]). Its serial stays taken (never drawn again) and nothing is
    /// served for it: OCSP answers `unknown`, CRLs do not list it, it is never completed.
    Abandoned,
}

impl CertStatus {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Valid => "valid",
            Self::Revoked => "revoked",
            Self::Hold => "hold",
            Self::Abandoned => "abandoned",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "valid" => Self::Valid,
            "revoked" => Self::Revoked,
            "hold" => Self::Hold,
            "abandoned" => Self::Abandoned,
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

/// Filter for [`Certificates::list`].
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

/// What the public certificate search looks for (see [`Certificates::search`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateQuery {
    /// Subjects (holder name, organisation) with a word starting with each of these, in any
    /// order; case-insensitive, diacritics exact ("Văn" finds "văn", not "Van").
    Words(Vec<String>),
    /// The certificates issued to the subscriber with this email on their request
    /// (case-insensitive, whole address).
    Email(String),
}

/// One certificate found by [`Certificates::search`], with the key the next page starts
/// after.
#[derive(Clone, Debug)]
pub struct SearchHit {
    /// The paging key (newest first: the next page asks for keys below this).
    pub key: i64,
    /// The certificate.
    pub certificate: CertificateRecord,
}

/// The certificates a CA has reserved, issued, revoked or held.
pub trait Certificates: Send + Sync {
    /// Records a serial and its to-be-signed certificate (status pending) before signing.
    fn reserve(&self, cert: &NewCertificate) -> Result<(), StoreError>;
    /// Stores the signed certificate (pending → valid) and appends to the change sequence.
    /// Returns only after the commit is durable. An abandoned row is never completed.
    fn complete(&self, serial: &str, der: &[u8]) -> Result<(), StoreError>;
    /// Pending (not abandoned) rows created before `created_before` (Unix seconds), oldest
    /// first, at most `limit`: the issuances reconciliation looks at.
    fn stale_pending(
        &self,
        created_before: u64,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError>;
    /// Reconciliation completes a pending row whose signed certificate was recovered: as
    /// [`Certificates::complete`], with `audit` in the same transaction, so the completion is
    /// never without its record.
    fn complete_recovered(
        &self,
        serial: &str,
        der: &[u8],
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Marks a pending row abandoned (pending → abandoned) with `audit` in the same
    /// transaction. Nothing is appended to the change sequence: no follower ever knew the
    /// serial, and an abandoned serial is answered exactly as an unknown one.
    fn abandon(&self, serial: &str, audit: &AuditEntry) -> Result<(), StoreError>;
    /// The certificate with this serial.
    fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;
    /// Certificates matching a filter, newest first.
    fn list(&self, filter: &ListFilter) -> Result<Vec<CertificateRecord>, StoreError>;
    /// The issued certificates (not pending, not abandoned) a public search finds, newest
    /// first, at most `limit`, only keys below `before` when given: an indexed lookup,
    /// never a scan of the certificates.
    fn search(
        &self,
        query: &CertificateQuery,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<SearchHit>, StoreError>;
    /// Applies a status change, its change-sequence entry and its audit record in one
    /// transaction. Returns the updated record.
    fn change_status(
        &self,
        serial: &str,
        change: StatusChange,
        audit: &AuditEntry,
    ) -> Result<CertificateRecord, StoreError>;
    /// Completes `serial` (as [`Certificates::complete`]) and applies `change` to its
    /// `predecessor` (with its audit entry) in one transaction: a successor that supersedes
    /// another certificate (rekey, modify) and the end of the predecessor commit together, or
    /// neither does (the successor then stays pending).
    fn complete_superseding(
        &self,
        serial: &str,
        der: &[u8],
        predecessor: &str,
        change: StatusChange,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
}
