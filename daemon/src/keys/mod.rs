//! Key backends: where the CA, OCSP, TSA and TLS private keys live.
//!
//! Every key is reached through [`Signer`], and every signed structure is made by [`sign`]
//! (build in `protocols`, sign here, assemble in `protocols`). Two backends implement
//! [`KeyBackend`]: [`software`] (PKCS#8 files, mode 0600, signing with aws-lc-rs) and
//! [`pkcs11`] (a token through `cryptoki`, keys generated inside it and never extractable).
//! The same backend holds the data-sealing key ([`seal`]: AES-256-GCM for personal data and
//! secrets at rest), reached through [`KeyBackend::sealer`].
//! The HTTPS listener's TLS key is always a software key: rustls needs it in process memory,
//! and it is not a CA key.

pub mod health;
pub mod pkcs11;
pub mod seal;
pub mod signer;
pub mod software;

pub use seal::{DataSealer, SealError};
pub use signer::{sign, SignError, Signer};

use pkid_protocols::KeyType;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The job a key does. The roles `pkid init` creates have one key per CA installation; each
/// issuer added with `pkid ca add-issuer` has its own CA key and OCSP responder key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// The self-signed root CA.
    Root,
    /// The issuing CA under the root (signs subscriber certificates and CRLs).
    Issuing,
    /// The delegated OCSP responder.
    Ocsp,
    /// The timestamp authority.
    Tsa,
    /// The HTTPS listener (always software).
    Tls,
    /// The CA key of an issuer added after `pkid init`, by issuer name.
    Issuer(String),
    /// The OCSP responder key of an issuer added after `pkid init`, by issuer name.
    Responder(String),
    /// The CMP responder key of an issuer (the init-made one too), by issuer name: it signs
    /// the CMP answers to signed requests.
    CmpResponder(String),
}

impl KeyRole {
    /// The roles whose keys live in the configured backend.
    pub const CA_ROLES: [KeyRole; 4] =
        [KeyRole::Root, KeyRole::Issuing, KeyRole::Ocsp, KeyRole::Tsa];

    /// Short name: file stem for software keys, suffix of the PKCS#11 label (`pkid-<name>`).
    /// Issuer names are lowercase letters, digits and `-` (see `ca::valid_issuer_name`), so
    /// `issuer-<name>`, `ocsp-<name>` and `cmp-<name>` never collide with each other or with a fixed role.
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Root => "root".into(),
            Self::Issuing => "issuing".into(),
            Self::Ocsp => "ocsp".into(),
            Self::Tsa => "tsa".into(),
            Self::Tls => "tls".into(),
            Self::Issuer(n) => format!("issuer-{n}").into(),
            Self::Responder(n) => format!("ocsp-{n}").into(),
            Self::CmpResponder(n) => format!("cmp-{n}").into(),
        }
    }

    /// The CKA_LABEL of this role's key objects in a PKCS#11 token.
    pub fn pkcs11_label(&self) -> String {
        format!("pkid-{}", self.name())
    }
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Why a key operation failed. Messages never carry key material or PINs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The backend is misconfigured: module missing, token not found, wrong PIN.
    #[error("key backend configuration: {0}")]
    Config(String),
    /// No key exists for the role.
    #[error("no {0} key found")]
    NotFound(KeyRole),
    /// A key for the role already exists and would be overwritten.
    #[error("a {0} key already exists; refusing to overwrite it")]
    Exists(KeyRole),
    /// The backend is temporarily unreachable (token removed, session lost).
    #[error("key backend unavailable: {0}")]
    Unavailable(String),
    /// Anything else (unsupported key type, I/O).
    #[error("key backend: {0}")]
    Failed(String),
}

/// Settings for the PKCS#11 backend, with the PIN already read from its file or variable.
#[derive(Clone)]
pub struct Pkcs11Settings {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// CKA_LABEL of the token (slot ids are renumbered, labels are stable).
    pub token_label: String,
    /// The user PIN.
    pub pin: Zeroizing<String>,
    /// Logged-in sessions kept open, so that concurrent requests sign in parallel.
    pub sessions: usize,
}

impl fmt::Debug for Pkcs11Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Settings")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("pin", &"<redacted>")
            .field("sessions", &self.sessions)
            .finish()
    }
}

/// A place keys are generated and loaded from.
pub trait KeyBackend: Send + Sync {
    /// Generates a new key pair for `role` inside the backend. Refuses ([`KeyError::Exists`]) if
    /// the role already has a key.
    fn generate(&self, role: &KeyRole, key_type: KeyType) -> Result<Arc<dyn Signer>, KeyError>;
    /// Loads the existing key for `role`.
    fn load(&self, role: &KeyRole) -> Result<Arc<dyn Signer>, KeyError>;
    /// Readiness: is the backend reachable, and can every key it handed out still sign? (A
    /// probe signature per key, cached for [`health::PROBE_TTL`].) A key that cannot be read
    /// or cannot sign is [`KeyError::Unavailable`]; the message is for the log, not for
    /// unauthenticated clients.
    fn check(&self) -> Result<(), KeyError>;
    /// A short description for logs (`software:/path`, `pkcs11:token-label`).
    fn describe(&self) -> String;
    /// The installation's data-sealing key (personal data and secrets at rest, see [`seal`]),
    /// created in the backend on first use: a 0600 key file, or a non-extractable AES key in
    /// the token. Call once at start and keep the sealer.
    fn sealer(&self) -> Result<Arc<dyn DataSealer>, KeyError>;
    /// Makes a key pair that is handed to its subscriber (EST serverkeygen, CMP central keys)
    /// and returns it as PKCS#8 v1 DER, wiped when dropped: in software by aws-lc-rs; in a
    /// PKCS#11 token by its generator, as a session object marked extractable and not
    /// sensitive (these keys only), read out and destroyed at once. Nothing stays in the
    /// backend.
    fn generate_exportable(&self, key_type: KeyType) -> Result<Zeroizing<Vec<u8>>, KeyError>;
}
