//! The durable record: certificates, the change sequence, CRLs, timestamp tokens and the audit
//! log — one trait per role.
//!
//! ```text
//! role            trait           file             what it keeps
//! certificates    Certificates    certificates.rs  reserved and issued certificates, their status
//! status feed     StatusFeed      feed.rs          the change sequence followers read
//! CRLs            CrlStore        crl.rs           partitions, CRL numbers, the newest signed CRLs
//! timestamp log   TimestampLog    timestamps.rs    TSA serial numbers, issued-token records
//! audit           AuditLog        audit.rs         who did what, when, how it ended
//! RA              RaRequests      ra.rs            organisations, operators, requests, documents
//! outbox          Outbox          outbox.rs        queued notifications, breach and reminder marks
//! key devices     KeyDevices      devices.rs       subscribers' tokens, escrowed SO PINs, history
//! remote signing  CscAccounts     csc.rs           signing accounts, central credentials (sealed keys)
//! ```
//!
//! [`Store`] is every role at once, implemented for any type that implements them all, so the
//! daemon can keep one `Arc<dyn Store>` while code that needs one role names only that trait.
//! A backend that leaves a role out does not compile; nothing refuses at run time.
//!
//! **Adding a role** (the RA's requests and approvals are next): a file `store/<role>.rs` with
//! the role's record types and a trait named for what the store keeps (`RaRequests`, as
//! `Certificates` and `TimestampLog` are), its tables in a new migration of
//! `sqlite.rs::MIGRATIONS` with the SQLite side in `sqlite/<role>.rs`, the trait added to the
//! bounds of [`Store`] and its blanket impl, and a forwarding impl in `metrics::MeteredStore`.
//!
//! All traits are synchronous and object-safe; the daemon calls them from blocking threads.
//! SQLite ([`sqlite::SqliteStore`]) is the embedded default. The traits are shaped so a
//! PostgreSQL store can follow without changing callers: every write that matters is one
//! transaction, and every status change appends to a change sequence whose contract
//! (`docs/architecture.md`, "The change feed") holds even where sequence order is not commit
//! order; [`cursor::FeedCursor`] and [`follow`] are the follower's side of it.

pub mod audit;
pub mod certificates;
pub mod cmp;
pub mod credentials;
pub mod crl;
pub mod csc;
pub mod cursor;
pub mod devices;
pub mod feed;
pub mod follow;
pub mod issuers;
pub mod outbox;
pub mod ra;
pub mod sqlite;
pub mod timestamps;

pub use audit::{
    AuditEntry, AuditHash, AuditLog, AuditStamp, ChainBreak, ChainHead, ChainVerdict, Outcome,
};
pub use certificates::{
    CertStatus, CertificateQuery, CertificateRecord, Certificates, ListFilter, NewCertificate,
    SearchHit, StatusChange,
};
pub use cmp::{CmpState, CmpTransaction, CmpTransactions};
pub use credentials::{CredentialKind, CredentialRecord, Credentials, EstRequest};
pub use crl::CrlStore;
pub use csc::CscAccounts;
pub use devices::KeyDevices;
pub use feed::{Change, StatusFeed, StatusRow};
pub use issuers::{IssuerRecord, IssuerRegistry};
pub use outbox::{Channel, Outbox, OutboxMessage, QueuedMessage};
pub use ra::RaRequests;
pub use timestamps::{TimestampLog, TimestampRecord};

/// Every role of the durable store, for code that is handed the whole store (the CA, the CLI,
/// the daemon's wiring). Implemented for every type that implements all the roles.
///
/// The `as_*` methods narrow a `&dyn Store` to one role: with the crate's minimum Rust (1.85)
/// a trait object cannot be upcast to a supertrait object by coercion.
pub trait Store:
    Certificates
    + StatusFeed
    + CrlStore
    + TimestampLog
    + AuditLog
    + IssuerRegistry
    + RaRequests
    + Outbox
    + Credentials
    + KeyDevices
    + CmpTransactions
    + CscAccounts
{
    /// This store as its certificates role.
    fn as_certificates(&self) -> &dyn Certificates;
    /// This store as its status-feed role.
    fn as_status_feed(&self) -> &dyn StatusFeed;
    /// This store as its CRL role.
    fn as_crl_store(&self) -> &dyn CrlStore;
    /// This store as its timestamp-log role.
    fn as_timestamp_log(&self) -> &dyn TimestampLog;
    /// This store as its audit role.
    fn as_audit_log(&self) -> &dyn AuditLog;
    /// This store as the registration authority's role.
    fn as_ra_requests(&self) -> &dyn RaRequests;
    /// This store as its outbox role.
    fn as_outbox(&self) -> &dyn Outbox;
}

impl<
        T: Certificates
            + StatusFeed
            + CrlStore
            + TimestampLog
            + AuditLog
            + IssuerRegistry
            + RaRequests
            + Outbox
            + Credentials
            + KeyDevices
            + CmpTransactions
            + CscAccounts,
    > Store for T
{
    fn as_certificates(&self) -> &dyn Certificates {
        self
    }
    fn as_status_feed(&self) -> &dyn StatusFeed {
        self
    }
    fn as_crl_store(&self) -> &dyn CrlStore {
        self
    }
    fn as_timestamp_log(&self) -> &dyn TimestampLog {
        self
    }
    fn as_audit_log(&self) -> &dyn AuditLog {
        self
    }
    fn as_ra_requests(&self) -> &dyn RaRequests {
        self
    }
    fn as_outbox(&self) -> &dyn Outbox {
        self
    }
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
    /// The name is already taken (an issuer registered twice).
    #[error("{0:?} already exists")]
    DuplicateName(String),
    /// The record changed since it was read (a request moved by someone else meanwhile).
    #[error("{0} changed meanwhile; read it again")]
    Changed(String),
    /// The database is unreachable, locked too long or corrupt.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}
