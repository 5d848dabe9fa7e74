//! Enrollment-protocol credentials of organisations (`pkid credential`), and the EST requests
//! waiting for an operator.
//!
//! ```text
//! credential  organisation · kind (est | cmp) · name · secret · created_at · created_by
//!             est: the Argon2id PHC string of a generated password (the server only verifies)
//!             cmp: the generated shared secret sealed under the data key (the server must
//!                  recompute the MAC, so it needs the secret itself)
//! est request sha256(CSR DER) · label · organisation · RA request id
//! ```
//!
//! Every change commits with its audit record. Nothing here is cached by the store: the EST
//! server reads the credential row on every request, so a removal takes effect at once.

use super::{AuditEntry, StoreError};

/// What a credential authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// HTTP Basic on EST (RFC 7030 §3.2.3).
    Est,
    /// A CMP shared secret (RFC 4210 PasswordBasedMac).
    Cmp,
}

impl CredentialKind {
    /// `est` or `cmp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Est => "est",
            Self::Cmp => "cmp",
        }
    }

    /// Parses `est` or `cmp`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "est" => Some(Self::Est),
            "cmp" => Some(Self::Cmp),
            _ => None,
        }
    }
}

/// One stored credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialRecord {
    /// Row id (0 before it is stored).
    pub id: i64,
    /// The organisation it belongs to.
    pub organisation: String,
    /// What it authenticates.
    pub kind: CredentialKind,
    /// The user name (EST) or sender reference (CMP), unique per organisation and kind.
    pub name: String,
    /// EST: the Argon2id PHC string, UTF-8. CMP: the sealed shared secret.
    pub secret: Vec<u8>,
    /// Unix seconds.
    pub created_at: u64,
    /// Who made it.
    pub created_by: String,
}

/// An EST enrollment that became an RA request (approval = "operator").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EstRequest {
    /// SHA-256 of the CSR's DER: a retry with the same CSR finds its request.
    pub csr_sha256: Vec<u8>,
    /// The label it came in under.
    pub label: String,
    /// The organisation.
    pub organisation: String,
    /// The RA request.
    pub request: i64,
}

/// The credentials role of the store.
pub trait Credentials: Send + Sync {
    /// Stores a credential with its audit record; [`StoreError::DuplicateName`] if the
    /// organisation already has one of that kind and name.
    fn add_credential(&self, c: &CredentialRecord, audit: &AuditEntry) -> Result<i64, StoreError>;
    /// The credentials of one organisation (every organisation: `None`), by organisation,
    /// kind and name.
    fn credentials(&self, organisation: Option<&str>) -> Result<Vec<CredentialRecord>, StoreError>;
    /// One credential.
    fn credential(
        &self,
        organisation: &str,
        kind: CredentialKind,
        name: &str,
    ) -> Result<Option<CredentialRecord>, StoreError>;
    /// Removes a credential with its audit record; [`StoreError::NotFound`] if there is none.
    fn remove_credential(
        &self,
        organisation: &str,
        kind: CredentialKind,
        name: &str,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Records the RA request an EST CSR became (an existing row for the same CSR is kept).
    fn record_est_request(&self, r: &EstRequest) -> Result<(), StoreError>;
    /// The RA request a CSR became, if any.
    fn est_request(&self, csr_sha256: &[u8]) -> Result<Option<EstRequest>, StoreError>;
}

/// The context a CMP shared secret is sealed under (binds the sealed bytes to their row: a
/// secret copied to another organisation's row does not open).
pub fn cmp_seal_context(organisation: &str, name: &str) -> String {
    format!("credential:cmp:{organisation}:{name}")
}
