//! Remote-signing accounts and their central credentials (`crate::csc`, `docs/remote-signing.md`).
//!
//! ```text
//! account     id · official email (the login, unique) · organisation · state (pending |
//!             active | locked) · password (Argon2id) · TOTP secret (sealed) · the last TOTP
//!             step used (a code is accepted once) · consecutive failures · activation code
//!             (SHA-256 only) and its expiry
//! credential  id (random, the CSC credentialID) · account · RA request · certificate serial ·
//!             the subscriber's private key, PKCS#8 sealed under the data key (context
//!             `csc:credential:<id>`) · state (enabled | disabled)
//! ```
//!
//! Every change commits with its audit record; the activation mail is queued in the same
//! transaction as the account it activates. Access tokens and SADs are short-lived and held by
//! the serving process (`crate::csc`), not here.

use super::{AuditEntry, OutboxMessage, StoreError};

/// A signing account's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountState {
    /// Made at fulfilment; waiting for its activation (password and authenticator).
    Pending,
    /// Activated: may log in and sign.
    Active,
    /// Locked after repeated wrong OTPs or passwords; unlocked through the RA.
    Locked,
}

impl AccountState {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Locked => "locked",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            "locked" => Some(Self::Locked),
            _ => None,
        }
    }
}

/// One signing account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRecord {
    /// Row id.
    pub id: i64,
    /// The official email, lower case: the login name.
    pub email: String,
    /// The organisation that filed for it.
    pub organisation: String,
    /// State.
    pub state: AccountState,
    /// The Argon2id PHC string (after activation).
    pub password_phc: Option<String>,
    /// The TOTP secret sealed under the data key (context [`totp_context`]).
    pub totp_sealed: Option<Vec<u8>>,
    /// The last TOTP time step accepted (a code is never accepted twice).
    pub totp_last_step: u64,
    /// Consecutive failed OTP or password checks.
    pub failures: u32,
    /// When the activation code stops working (Unix seconds), while pending.
    pub activation_expires: Option<u64>,
}

/// One central credential: a key in the key backend and its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialRecord {
    /// The CSC credentialID (random, hex).
    pub id: String,
    /// The account it belongs to.
    pub account: i64,
    /// The RA request it fulfilled.
    pub request: i64,
    /// The certificate's serial (hex).
    pub serial: String,
    /// The private key, PKCS#8, sealed (context [`key_context`]).
    pub key_sealed: Vec<u8>,
    /// False once disabled (its certificate revoked).
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: u64,
}

/// What fulfilling a central request stores, in one transaction.
#[derive(Clone, Debug)]
pub struct Provision {
    /// The subscriber's official email.
    pub email: String,
    /// The organisation.
    pub organisation: String,
    /// The credential.
    pub credential: CredentialRecord,
    /// SHA-256 of the one-time activation code, and its expiry: used when the account is new
    /// or still pending (an active account keeps its password and authenticator).
    pub activation: (Vec<u8>, u64),
    /// The activation mail, queued only when the activation code was stored.
    pub mail: Vec<OutboxMessage>,
    /// Unix seconds.
    pub at: u64,
}

/// The signing-accounts role of the store.
pub trait CscAccounts: Send + Sync {
    /// Stores a credential (and its account if the email has none) with its audit record;
    /// returns whether the activation code (and its mail) was stored.
    fn provision(&self, p: &Provision, audit: &AuditEntry) -> Result<bool, StoreError>;
    /// The credential made for an RA request, if any.
    fn credential_for_request(&self, request: i64) -> Result<Option<CredentialRecord>, StoreError>;
    /// The credential whose certificate is `serial` (hex), if any.
    fn credential_by_serial(&self, serial: &str) -> Result<Option<CredentialRecord>, StoreError>;
    /// One credential by its id.
    fn csc_credential(&self, id: &str) -> Result<Option<CredentialRecord>, StoreError>;
    /// The credentials of an account, oldest first.
    fn csc_credentials(&self, account: i64) -> Result<Vec<CredentialRecord>, StoreError>;
    /// One account by its id.
    fn csc_account(&self, id: i64) -> Result<Option<AccountRecord>, StoreError>;
    /// The account of an official email (any case).
    fn account_by_email(&self, email: &str) -> Result<Option<AccountRecord>, StoreError>;
    /// The pending account whose activation code has this SHA-256.
    fn account_by_activation(&self, sha256: &[u8]) -> Result<Option<AccountRecord>, StoreError>;
    /// Activates a pending account whose code is `sha256` and not expired at `now`: sets the
    /// password and the sealed TOTP secret and spends the code. False if it was not pending,
    /// spent or expired meanwhile.
    fn activate(
        &self,
        account: i64,
        sha256: &[u8],
        password_phc: &str,
        totp_sealed: &[u8],
        now: u64,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError>;
    /// Counts a failed OTP or password check; at `max` consecutive failures the account is
    /// locked. Returns the account's state after it.
    fn record_failure(
        &self,
        account: i64,
        max: u32,
        audit: &AuditEntry,
    ) -> Result<AccountState, StoreError>;
    /// Records a passed OTP check at TOTP time step `step`: false if that step (or a later
    /// one) was already used, so a code is accepted once. Resets the failure count.
    fn record_otp(&self, account: i64, step: u64, audit: &AuditEntry) -> Result<bool, StoreError>;
    /// Resets the failure count after a passed password check.
    fn reset_failures(&self, account: i64) -> Result<(), StoreError>;
    /// Sets an account's state (an RA officer's unlock or lock), with its audit record.
    fn set_account_state(
        &self,
        account: i64,
        state: AccountState,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Re-enrols an account (a lost phone, a forgotten password): back to pending with no
    /// password and no TOTP secret, a new activation code, its mail queued and the audit
    /// record, in one transaction. [`StoreError::NotFound`] if there is no such account.
    fn reenrol(
        &self,
        account: i64,
        activation: (&[u8], u64),
        mail: &[OutboxMessage],
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Disables a credential (its certificate was revoked), with its audit record.
    fn disable_credential(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError>;
}

/// The context a credential's key is sealed under: a sealed key copied to another row does not
/// open.
pub fn key_context(credential: &str) -> String {
    format!("csc:credential:{credential}")
}

/// The context an account's TOTP secret is sealed under.
pub fn totp_context(account: i64) -> String {
    format!("csc:account:{account}:totp")
}
