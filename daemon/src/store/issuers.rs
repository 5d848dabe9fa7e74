//! The issuer registry: the issuing CAs added with `pkid ca add-issuer`.
//!
//! ```text
//! issuers        name → CA certificate serial, OCSP responder certificate serial,
//!                       key names in the key backend, created_at
//! ```
//!
//! The root and the issuing CA that `pkid init` makes are the data directory's own (their
//! certificates are `certs/root.crt` and `certs/issuing.crt`); every further issuer is a row
//! here, and its certificates are rows of [`super::Certificates`]. Registering an issuer
//! completes its OCSP responder certificate in the same transaction, so the change that
//! announces that certificate to followers is committed together with the registry row: a
//! running daemon that sees a change for an issuer it does not know reads the registry and
//! finds it there.

use super::{AuditEntry, StoreError};

/// A registered issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerRecord {
    /// Its name: the `/ca/NAME.crt` and `/crl/NAME.crl` path segment and the `issuer` column
    /// of the certificates it signs.
    pub name: String,
    /// Serial of its CA certificate (issued by the root).
    pub certificate_serial: String,
    /// Serial of its delegated OCSP responder certificate (issued by it).
    pub responder_serial: String,
    /// Name of its CA key in the key backend.
    pub key_name: String,
    /// Name of its responder key in the key backend.
    pub responder_key_name: String,
    /// When it was registered, Unix seconds.
    pub created_at: u64,
}

/// The issuers added after `pkid init`.
pub trait IssuerRegistry: Send + Sync {
    /// Completes the issuer's reserved responder certificate (pending → valid with `der`, and
    /// its change), inserts the registry row and appends `audit`, in one transaction. A name
    /// already registered is [`StoreError::DuplicateName`], and nothing is written.
    fn register_issuer(
        &self,
        issuer: &IssuerRecord,
        responder_der: &[u8],
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Every registered issuer, oldest first.
    fn issuers(&self) -> Result<Vec<IssuerRecord>, StoreError>;
}
