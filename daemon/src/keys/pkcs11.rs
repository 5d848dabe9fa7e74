//! PKCS#11 keys: generated inside a token (SoftHSM2, an HSM, a smart card), never extractable,
//! used through `cryptoki`.
//!
//! ```text
//!  Pkcs11Backend::open ─▶ module (loaded and C_Initialize'd once per process)
//!         │                 └─▶ token, found by label ─▶ pool of N logged-in RW sessions
//!         │                                                      ▲        │
//!  generate / load ─▶ Pkcs11Signer ── sign ── borrow a session ──┘        └─▶ C_Sign
//! ```
//!
//! Choices, and why:
//! - **One context per module per process.** PKCS#11 allows a single `C_Initialize` per process,
//!   and `C_Finalize` closes every session of every user of the module, so module contexts are
//!   kept in `MODULES` for the life of the process and shared by every backend.
//! - **Tokens are found by label**, never by slot id: SoftHSM2 and many HSMs renumber slots.
//! - **Login belongs to the application, not the session** (PKCS#11 v2.40, `C_Login`): the first
//!   `C_Login` logs every session of the token in, later ones return
//!   `CKR_USER_ALREADY_LOGGED_IN` (accepted), and one `C_Logout` logs them all out.
//! - **A pool of sessions.** A `Session` may be used by one thread at a time, so signers borrow
//!   one from a pool shared by the whole backend: N sessions sign N messages in parallel.
//! - **Recovery.** When a session is closed, logged out, or the token dropped the handles it saw
//!   (SoftHSM2 forgets private-object handles on logout), the operation opens and logs in a fresh
//!   session, finds the key again and retries once; then it reports
//!   [`SignError::Unavailable`]. There is never a fallback to software keys.
//! - **Device faults re-initialise the module.** After a device-level error (`CKR_DEVICE_ERROR`,
//!   `CKR_GENERAL_ERROR`, `CKR_TOKEN_NOT_PRESENT`, …) a module keeps failing until it is
//!   finalized and initialized again (SoftHSM2 marks a token whose directory vanished invalid
//!   for the life of the context). The pool then answers [`SignError::Unavailable`] at once, and
//!   the first operation after a backoff ([`REINIT_BACKOFF_MIN`] doubling to
//!   [`REINIT_BACKOFF_MAX`]) waits for every lent session to come back, closes them, drops the
//!   context (the last clone's drop is `C_Finalize`), loads and initializes the module again,
//!   finds the token by label and logs new sessions in. Key handles belong to one context, so
//!   every signer finds its key again in the new one before signing. Re-initialising finalizes
//!   the module only when this backend is its only user in the process (the daemon has one).
//! - **A library is checked before it is used as a module**: one that does not export
//!   `C_GetFunctionList` is a configuration error, not a panic in `cryptoki`.
//! - **ECDSA is hashed here.** SoftHSM 2.6.1 has no `CKM_ECDSA_SHA256`/`CKM_ECDSA_SHA384`, so the
//!   message is hashed with aws-lc-rs and signed with `CKM_ECDSA`; the token's raw `r‖s` is
//!   re-encoded as the DER `Ecdsa-Sig-Value` X.509 and CMS expect. RSA uses
//!   `CKM_SHA256_RSA_PKCS` over the message.
//!
//! - **The data-sealing key** ([`super::seal`]) is a `CKK_AES` 256-bit secret key labelled
//!   `pkid-seal`, generated in the token on first use (`CKA_TOKEN`, `CKA_SENSITIVE`, not
//!   extractable, only `CKA_ENCRYPT`/`CKA_DECRYPT`) and used with `CKM_AES_GCM` (a 96-bit IV
//!   drawn by pkid for each seal, 128-bit tag) on the same session pool as the signers.
//!
//! The PIN is held in a zeroizing secret and never formatted into a message or a log line.

use super::seal::{self, DataSealer, SealError, SEAL_KEY_NAME, TAG_LEN};
use super::{KeyBackend, KeyError, KeyRole, Pkcs11Settings, SignError, Signer};
use const_oid::db::rfc5912 as oids;
use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use der::asn1::{BitString, ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Encode};
use pkid_protocols::{KeyType, SignatureAlgorithm};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tracing::{info, warn};
use zeroize::Zeroizing;

/// First wait after a device fault before the module is re-initialised: a device that is
/// back (a token re-inserted, a directory restored) is in service again within about a second.
const REINIT_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between re-initialisation attempts: a device that stays away is tried twice a
/// minute, not hammered.
const REINIT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Dead sessions kept for closing at the next re-initialisation (see `PooledSession::replace`).
/// Sessions die rarely (a token reset); past this many, one more is leaked instead.
const DEAD_SESSIONS_KEPT: usize = 64;
/// Fewest sessions a backend keeps open: a configured 0 would leave signers waiting forever.
const MIN_SESSIONS: usize = 1;
/// How long a signer waits for a free session before reporting the backend unavailable. One
/// `C_Sign` takes milliseconds (SoftHSM2) to ~100 ms (network HSMs), so a wait this long means
/// the token is stuck, and a request should fail rather than hang.
const SESSION_WAIT: Duration = Duration::from_secs(30);
/// Length of the random CKA_ID shared by the two halves of a generated key pair (128 bits: no
/// collision with any other key on the token).
pub(crate) const KEY_ID_LEN: usize = 16;
/// Public exponent of generated RSA keys: F4 = 65537, big-endian (RFC 8017 recommends it).
pub(crate) const RSA_PUBLIC_EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];
/// RSA modulus sizes pkid generates (the configuration names `rsa2048`, `rsa3072`, `rsa4096`).
const RSA_GENERATED_BITS: [usize; 3] = [2048, 3072, 4096];
/// First byte of an uncompressed SEC 1 elliptic-curve point (`04 ‖ X ‖ Y`).
const UNCOMPRESSED_POINT: u8 = 0x04;

/// Module contexts loaded and initialized so far, by canonical path. Never finalized: see the
/// module documentation.
static MODULES: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());

/// Keys in a PKCS#11 token, reached through a pool of logged-in sessions.
pub struct Pkcs11Backend {
    pool: Arc<SessionPool>,
    loaded: super::health::LoadedKeys,
}

impl Pkcs11Backend {
    /// Loads the module, finds the token by label and opens `settings.sessions` (at least one)
    /// read-write sessions logged in as the user.
    ///
    /// A missing or unloadable module, an unknown token label and a wrong or locked PIN are
    /// [`KeyError::Config`]; the PIN never appears in the message.
    pub fn open(settings: &Pkcs11Settings) -> Result<Self, KeyError> {
        let ctx = module(&settings.module)?;
        let slot = find_token(&ctx, &settings.token_label)?;
        let size = settings.sessions.max(MIN_SESSIONS);
        let pool = SessionPool {
            module: settings.module.clone(),
            device: Mutex::new(Some(Device { ctx, slot })),
            generation: AtomicU64::new(0),
            fault: Mutex::new(None),
            reinitialising: Mutex::new(()),
            token_label: settings.token_label.clone(),
            pin: AuthPin::new(settings.pin.as_str().to_owned()),
            idle: Mutex::new(Idle {
                sessions: Vec::with_capacity(size),
                lent: 0,
            }),
            returned: Condvar::new(),
            dead: Mutex::new(Vec::new()),
            size,
        };
        let mut sessions = Vec::with_capacity(size);
        for _ in 0..size {
            sessions.push(pool.open_session()?);
        }
        pool.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sessions = sessions;
        info!(
            module = %settings.module.display(),
            token = %settings.token_label,
            slot = slot.id(),
            sessions = size,
            "opened PKCS#11 token"
        );
        Ok(Self {
            pool: Arc::new(pool),
            loaded: Default::default(),
        })
    }

    fn signer(
        &self,
        role: &KeyRole,
        private: (ObjectHandle, u64),
        label: String,
        id: Vec<u8>,
        public_key: SubjectPublicKeyInfoOwned,
    ) -> Result<Arc<dyn Signer>, KeyError> {
        let key_type = KeyType::of(&public_key).map_err(|e| {
            KeyError::Failed(format!(
                "key {label:?} on token {:?}: {e}",
                self.pool.token_label
            ))
        })?;
        let signer: Arc<dyn Signer> = Arc::new(Pkcs11Signer {
            pool: Arc::clone(&self.pool),
            label,
            id,
            key: Mutex::new(private),
            key_type,
            algorithm: key_type.signature_algorithm(),
            public_key,
        });
        self.loaded.register(role, &signer);
        Ok(signer)
    }
}

/// The key-pair generation mechanism for `key_type` and the public template's key attributes.
fn key_pair_mechanism(key_type: KeyType) -> Result<(Mechanism<'static>, Vec<Attribute>), KeyError> {
    Ok(match key_type {
        KeyType::EcP256 => (
            Mechanism::EccKeyPairGen,
            vec![Attribute::EcParams(named_curve(oids::SECP_256_R_1)?)],
        ),
        KeyType::EcP384 => (
            Mechanism::EccKeyPairGen,
            vec![Attribute::EcParams(named_curve(oids::SECP_384_R_1)?)],
        ),
        KeyType::Rsa(bits) if RSA_GENERATED_BITS.contains(&bits) => {
            let bits = cryptoki::types::Ulong::try_from(bits)
                .map_err(|e| KeyError::Failed(format!("RSA size {bits}: {e}")))?;
            (
                Mechanism::RsaPkcsKeyPairGen,
                vec![
                    Attribute::ModulusBits(bits),
                    Attribute::PublicExponent(RSA_PUBLIC_EXPONENT.to_vec()),
                ],
            )
        }
        KeyType::Rsa(bits) => {
            return Err(KeyError::Failed(format!(
                "unsupported RSA size {bits} (pkid generates 2048, 3072 or 4096 bits)"
            )))
        }
    })
}

impl KeyBackend for Pkcs11Backend {
    fn generate(&self, role: &KeyRole, key_type: KeyType) -> Result<Arc<dyn Signer>, KeyError> {
        let label = role.pkcs11_label();
        let (mechanism, mut public_template) = key_pair_mechanism(key_type)?;
        let mut id = vec![0u8; KEY_ID_LEN];
        aws_lc_rs::rand::fill(&mut id)
            .map_err(|_| KeyError::Failed("no randomness for the key id".into()))?;
        public_template.extend([
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ]);
        let mut private_template = kept_in_token(&label, id.clone());
        private_template.extend([
            Attribute::Sign(true),
            // A CA key only signs: no decryption, unwrapping or key agreement with it.
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ]);
        let (private, public_key) = self
            .pool
            .run(|session, _retry| {
                if !session
                    .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])?
                    .is_empty()
                {
                    return Err(KeyError::Exists(role.clone()).into());
                }
                let (public, private) =
                    session.generate_key_pair(&mechanism, &public_template, &private_template)?;
                Ok((
                    (private, session.generation),
                    public_key_info(session, public)?,
                ))
            })
            .map_err(|f| f.into_key_error(&format!("generating the {role} key")))?;
        info!(
            token = %self.pool.token_label,
            label = %label,
            key_type = %key_type.name(),
            "generated key pair in PKCS#11 token"
        );
        self.signer(role, private, label, id, public_key)
    }

    fn generate_exportable(&self, key_type: KeyType) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let (mechanism, mut public_template) = key_pair_mechanism(key_type)?;
        public_template.extend([Attribute::Token(false), Attribute::Verify(true)]);
        // A session object, readable only through this logged-in session and gone when it is
        // destroyed below (or the session closes): the one kind of key pkid lets out.
        let private_template = vec![
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Sign(true),
        ];
        let pkcs8 = self
            .pool
            .run(|session, _retry| {
                let (public, private) =
                    session.generate_key_pair(&mechanism, &public_template, &private_template)?;
                let exported = export_pkcs8(session, key_type, public, private);
                for object in [private, public] {
                    if let Err(e) = session.destroy_object(object) {
                        warn!(error = %describe(&e), "PKCS#11: a generated session key was not destroyed (it goes with the session)");
                    }
                }
                exported
            })
            .map_err(|f| f.into_key_error("generating a subscriber key"))?;
        info!(
            token = %self.pool.token_label,
            key_type = %key_type.name(),
            "generated a subscriber key pair in the PKCS#11 token for export"
        );
        Ok(pkcs8)
    }

    fn load(&self, role: &KeyRole) -> Result<Arc<dyn Signer>, KeyError> {
        let label = role.pkcs11_label();
        let (private, id, public_key) = self
            .pool
            .run(|session, _retry| {
                let private = find_private_key(session, &label, None)?
                    .ok_or(KeyError::NotFound(role.clone()))?;
                let id = attribute_bytes(session, private, AttributeType::Id)?.unwrap_or_default();
                let mut template = vec![
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::Label(label.as_bytes().to_vec()),
                ];
                if !id.is_empty() {
                    template.push(Attribute::Id(id.clone()));
                }
                // Without a public key object, the private key may still expose the public
                // attributes (RSA keys do; EC private keys have no CKA_EC_POINT).
                let source = match session.find_objects(&template)?.as_slice() {
                    [] => private,
                    [public] => *public,
                    many => {
                        return Err(KeyError::Failed(format!(
                            "{} public keys are labelled {label:?}",
                            many.len()
                        ))
                        .into())
                    }
                };
                Ok((
                    (private, session.generation),
                    id,
                    public_key_info(session, source)?,
                ))
            })
            .map_err(|f| f.into_key_error(&format!("loading the {role} key")))?;
        info!(token = %self.pool.token_label, label = %label, "loaded key from PKCS#11 token");
        self.signer(role, private, label, id, public_key)
    }

    fn check(&self) -> Result<(), KeyError> {
        let pool = &self.pool;
        pool.recover_if_due()?;
        let unavailable = |what: &str, e: &CkError| {
            pool.note_fault(e);
            KeyError::Unavailable(format!(
                "token {:?}: {what}: {}",
                pool.token_label,
                describe(e)
            ))
        };
        let Device { ctx, slot } = pool.device()?;
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| unavailable("listing slots", &e))?;
        if !slots.contains(&slot) {
            pool.note_device_gone();
            return Err(KeyError::Unavailable(format!(
                "token {:?} is no longer present",
                pool.token_label
            )));
        }
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| unavailable("reading token information", &e))?;
        if info.label() != pool.token_label {
            return Err(KeyError::Unavailable(format!(
                "the slot of token {:?} now holds token {:?}",
                pool.token_label,
                info.label()
            )));
        }
        // Busy sessions are in use, which is proof enough; an idle one must answer.
        if let Some(mut session) = pool.try_checkout() {
            let lost = match session.get_session_info() {
                Ok(info) if matches!(info.session_state(), SessionState::RwUser) => None,
                Ok(_) => Some(false),
                Err(e) if session_lost(&e) => Some(session_dead(&e)),
                Err(e) => return Err(unavailable("checking a session", &e)),
            };
            if let Some(dead) = lost {
                warn!(
                    token = %pool.token_label,
                    "PKCS#11 session found logged out or closed; opening a new one"
                );
                let fresh = pool.open_session().map_err(|e| match e {
                    KeyError::Unavailable(m) | KeyError::Config(m) | KeyError::Failed(m) => {
                        KeyError::Unavailable(m)
                    }
                    other @ (KeyError::NotFound(_) | KeyError::Exists(_)) => {
                        KeyError::Unavailable(other.to_string())
                    }
                })?;
                session.replace(fresh, dead);
            }
        }
        drop((ctx, info));
        self.loaded.probe()
    }

    fn describe(&self) -> String {
        format!("pkcs11:{}", self.pool.token_label)
    }

    fn sealer(&self) -> Result<Arc<dyn DataSealer>, KeyError> {
        let label = format!("pkid-{SEAL_KEY_NAME}");
        let key = self
            .pool
            .run(|session, _retry| {
                if let Some(key) = find_secret_key(session, &label)? {
                    return Ok((key, session.generation));
                }
                let mut id = vec![0u8; KEY_ID_LEN];
                aws_lc_rs::rand::fill(&mut id)
                    .map_err(|_| KeyError::Failed("no randomness for the key id".into()))?;
                let mut template = kept_in_token(&label, id);
                template.extend([
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(CkKeyType::AES),
                    Attribute::ValueLen(seal::KEY_LEN.try_into().map_err(|_| {
                        KeyError::Failed("AES key length does not fit a CK_ULONG".into())
                    })?),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    // Only encryption: no signing, wrapping or derivation with it.
                    Attribute::Sign(false),
                    Attribute::Verify(false),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                    Attribute::Derive(false),
                ]);
                let key = session.generate_key(&Mechanism::AesKeyGen, &template)?;
                info!(token = %self.pool.token_label, label = %label, "generated the data-sealing key in the PKCS#11 token");
                Ok((key, session.generation))
            })
            .map_err(|f| f.into_key_error("opening the data-sealing key"))?;
        Ok(Arc::new(Pkcs11Sealer {
            pool: Arc::clone(&self.pool),
            label,
            key: Mutex::new(key),
        }))
    }
}

/// The data-sealing key in a PKCS#11 token: AES-256 with `CKM_AES_GCM`, through the backend's
/// session pool.
pub struct Pkcs11Sealer {
    pool: Arc<SessionPool>,
    label: String,
    /// The key's handle and the module generation it belongs to (see [`Pkcs11Signer`]).
    key: Mutex<(ObjectHandle, u64)>,
}

impl Pkcs11Sealer {
    /// The key's handle for `session`, found again by label after a new session (`retry`) or a
    /// re-initialised module.
    fn key_handle(&self, session: &PooledSession<'_>, retry: bool) -> Result<ObjectHandle, Fault> {
        let (handle, generation) = *self.key.lock().unwrap_or_else(PoisonError::into_inner);
        if !retry && generation == session.generation {
            return Ok(handle);
        }
        let handle = find_secret_key(session, &self.label)?.ok_or_else(|| {
            KeyError::Unavailable(format!(
                "the data-sealing key {:?} is no longer on token {:?}",
                self.label, self.pool.token_label
            ))
        })?;
        *self.key.lock().unwrap_or_else(PoisonError::into_inner) = (handle, session.generation);
        Ok(handle)
    }

    /// Runs `op` with the key's handle on a pooled session (found again after a lost session);
    /// `what` names the operation in an error.
    fn with_key<T>(
        &self,
        what: &str,
        mut op: impl FnMut(&Session, ObjectHandle) -> Result<T, Fault>,
    ) -> Result<T, SealError> {
        self.pool
            .run(|session, retry| {
                let key = self.key_handle(session, retry)?;
                op(session, key)
            })
            .map_err(|f| SealError::from(f.into_key_error(what)))
    }
}

/// Which way [`aes_gcm`] runs.
#[derive(Clone, Copy)]
enum Direction {
    Encrypt,
    Decrypt,
}

/// What the sealing key's self-test encrypts and decrypts (not personal data).
const SEAL_PROBE: &[u8] = b"pkid data-sealing probe";

/// `CKM_AES_GCM` with a 128-bit tag over `data`, in one call.
fn aes_gcm(
    session: &Session,
    key: ObjectHandle,
    nonce: &[u8; seal::NONCE_LEN],
    aad: &[u8],
    data: &[u8],
    direction: Direction,
) -> Result<Vec<u8>, CkError> {
    let mut iv = *nonce;
    let tag_bits = cryptoki::types::Ulong::from(8 * TAG_LEN as u64);
    let mechanism = Mechanism::AesGcm(GcmParams::new(&mut iv, aad, tag_bits)?);
    match direction {
        Direction::Encrypt => session.encrypt(&mechanism, key, data),
        Direction::Decrypt => session.decrypt(&mechanism, key, data),
    }
}

/// Whether `key` still encrypts and decrypts on `session`: tells a refused tag from a device
/// fault when the token reports both alike.
fn gcm_round_trip(session: &Session, key: ObjectHandle) -> bool {
    let Ok(nonce) = seal::prepare(SEAL_PROBE) else {
        return false;
    };
    aes_gcm(session, key, &nonce, b"", SEAL_PROBE, Direction::Encrypt)
        .and_then(|sealed| aes_gcm(session, key, &nonce, b"", &sealed, Direction::Decrypt))
        .is_ok_and(|opened| opened == SEAL_PROBE)
}

impl DataSealer for Pkcs11Sealer {
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = seal::prepare(plaintext)?;
        let aad = seal::aad(context);
        let out = self.with_key("sealing with the token", |session, key| {
            Ok(aes_gcm(
                session,
                key,
                &nonce,
                &aad,
                plaintext,
                Direction::Encrypt,
            )?)
        })?;
        if out.len() != plaintext.len() + TAG_LEN {
            return Err(SealError::Failed(format!(
                "the token returned {} bytes for a {}-byte plaintext",
                out.len(),
                plaintext.len()
            )));
        }
        Ok(seal::assemble(&nonce, &out))
    }

    /// A tag that does not verify is `CKR_ENCRYPTED_DATA_INVALID` in PKCS#11 v2.40, but
    /// SoftHSM 2.6 answers `CKR_GENERAL_ERROR`, which the pool takes for a device fault. So a
    /// decryption refused either way is followed by a round trip of a probe under the same key:
    /// if that works, the token is fine and the value is [`SealError::Unauthentic`]; if not, the
    /// original error stands (and re-initialises the module as any device fault does).
    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let parts = seal::split(sealed)?;
        let aad = seal::aad(context);
        let opened = self.with_key("opening with the token", |session, key| {
            let data = parts.ciphertext_and_tag;
            match aes_gcm(session, key, &parts.nonce, &aad, data, Direction::Decrypt) {
                Ok(plaintext) => Ok(Some(Zeroizing::new(plaintext))),
                Err(
                    e @ CkError::Pkcs11(
                        RvError::EncryptedDataInvalid
                        | RvError::EncryptedDataLenRange
                        | RvError::GeneralError
                        | RvError::FunctionFailed,
                        _,
                    ),
                ) => {
                    if gcm_round_trip(session, key) {
                        Ok(None)
                    } else {
                        Err(e.into())
                    }
                }
                Err(e) => Err(e.into()),
            }
        })?;
        opened.ok_or(SealError::Unauthentic)
    }
}

/// A private key in a PKCS#11 token. Signs through the backend's session pool.
pub struct Pkcs11Signer {
    pool: Arc<SessionPool>,
    label: String,
    /// CKA_ID of the key (empty if the token object has none), to find the same key again.
    id: Vec<u8>,
    /// The private key's object handle and the module generation it belongs to, refreshed
    /// when the token forgets it (after a logout) or the module was re-initialised.
    key: Mutex<(ObjectHandle, u64)>,
    key_type: KeyType,
    algorithm: SignatureAlgorithm,
    public_key: SubjectPublicKeyInfoOwned,
}

impl Pkcs11Signer {
    /// The key's handle for `session`, found again if it belongs to an earlier module context.
    fn key_handle(&self, session: &PooledSession<'_>) -> Result<ObjectHandle, Fault> {
        let (handle, generation) = *self.key.lock().unwrap_or_else(PoisonError::into_inner);
        if generation == session.generation {
            Ok(handle)
        } else {
            self.refresh_key_handle(session)
        }
    }

    /// Finds the private key again by label and id, after a new session was opened. A key
    /// that is gone is [`KeyError::Unavailable`]: an operator may restore it (from a backup
    /// into the token), and until then the services answer "try later".
    fn refresh_key_handle(&self, session: &PooledSession<'_>) -> Result<ObjectHandle, Fault> {
        let id = (!self.id.is_empty()).then_some(self.id.as_slice());
        let handle = find_private_key(session, &self.label, id)?.ok_or_else(|| {
            KeyError::Unavailable(format!(
                "key {:?} is no longer on token {:?}",
                self.label, self.pool.token_label
            ))
        })?;
        *self.key.lock().unwrap_or_else(PoisonError::into_inner) = (handle, session.generation);
        Ok(handle)
    }
}

impl Signer for Pkcs11Signer {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
        &self.public_key
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match self.algorithm {
            SignatureAlgorithm::EcdsaSha256 | SignatureAlgorithm::EcdsaSha384 => {
                let digest = aws_lc_rs::digest::digest(self.algorithm.digest(), message);
                self.sign_with(&Mechanism::Ecdsa, digest.as_ref())
            }
            SignatureAlgorithm::RsaPkcs1Sha256 => {
                self.sign_with(&Mechanism::Sha256RsaPkcs, message)
            }
        }
    }

    /// ECDSA signs the caller's digest with `CKM_ECDSA`, as `sign` does after hashing: a large
    /// message (a CRL) is hashed once, and only the digest crosses to the token. RSA keeps
    /// `CKM_SHA256_RSA_PKCS` over the message.
    fn sign_digest(
        &self,
        message: &[u8],
        digest: &aws_lc_rs::digest::Digest,
    ) -> Result<Vec<u8>, SignError> {
        match self.algorithm {
            SignatureAlgorithm::EcdsaSha256 | SignatureAlgorithm::EcdsaSha384
                if digest.algorithm() == self.algorithm.digest() =>
            {
                self.sign_with(&Mechanism::Ecdsa, digest.as_ref())
            }
            _ => self.sign(message),
        }
    }
}

impl Pkcs11Signer {
    /// Signs `data` with `mechanism` on a pooled session (re-finding the key once if its handle
    /// went stale) and returns the signature in X.509 form.
    fn sign_with(&self, mechanism: &Mechanism<'_>, data: &[u8]) -> Result<Vec<u8>, SignError> {
        let raw = self
            .pool
            .run(|session, retry| {
                let key = if retry {
                    self.refresh_key_handle(session)?
                } else {
                    self.key_handle(session)?
                };
                Ok(session.sign(mechanism, key, data)?)
            })
            .map_err(|f| {
                sign_error(f.into_key_error(&format!("signing with key {:?}", self.label)))
            })?;
        match self.key_type {
            KeyType::EcP256 => ecdsa_sig_value(&raw, 32),
            KeyType::EcP384 => ecdsa_sig_value(&raw, 48),
            KeyType::Rsa(_) => Ok(raw),
        }
    }
}

/// Logged-in sessions to one token, lent to one borrower at a time.
struct SessionPool {
    /// The module's path, to load it again after a device fault.
    module: PathBuf,
    /// The module context and the token's slot; `None` while re-initialising has failed.
    device: Mutex<Option<Device>>,
    /// Which module context the sessions and key handles belong to (one more per
    /// re-initialisation).
    generation: AtomicU64,
    /// Set by a device fault: when the module is next re-initialised, and the wait after that.
    fault: Mutex<Option<Backoff>>,
    /// Held by the one thread re-initialising the module (never while `fault` is held, since
    /// re-initialising waits for borrowers that may record a fault).
    reinitialising: Mutex<()>,
    token_label: String,
    pin: AuthPin,
    idle: Mutex<Idle>,
    /// Signalled each time a session goes back to `idle`.
    returned: Condvar,
    /// Sessions whose handle died, closed only with their context.
    dead: Mutex<Vec<Session>>,
    size: usize,
}

/// A module context and the slot of the token in it.
#[derive(Clone)]
struct Device {
    ctx: Pkcs11,
    slot: Slot,
}

/// The idle sessions, and how many are lent out.
struct Idle {
    sessions: Vec<Session>,
    lent: usize,
}

/// When the module is re-initialised after a device fault.
#[derive(Clone, Copy)]
struct Backoff {
    next_attempt: Instant,
    delay: Duration,
}

impl SessionPool {
    /// The current module context and slot.
    fn device(&self) -> Result<Device, KeyError> {
        self.device
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                KeyError::Unavailable(format!(
                    "token {:?}: the PKCS#11 module is being re-initialised after a device error",
                    self.token_label
                ))
            })
    }

    /// Records a device-level error: the module is re-initialised after the backoff.
    fn note_fault(&self, e: &CkError) {
        if device_fault(e) {
            self.note_device_gone();
        }
    }

    /// Schedules re-initialisation (unless it is already scheduled).
    fn note_device_gone(&self) {
        let mut fault = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        if fault.is_none() {
            warn!(
                token = %self.token_label,
                "PKCS#11 device error; the module will be re-initialised"
            );
            *fault = Some(Backoff {
                next_attempt: Instant::now() + REINIT_BACKOFF_MIN,
                delay: REINIT_BACKOFF_MIN,
            });
        }
    }

    /// After a device fault: [`KeyError::Unavailable`] until the backoff is over, then one
    /// attempt to re-initialise the module (see the module documentation).
    fn recover_if_due(&self) -> Result<(), KeyError> {
        let Some(backoff) = *self.fault.lock().unwrap_or_else(PoisonError::into_inner) else {
            return Ok(());
        };
        let now = Instant::now();
        let waiting = |detail: &str| {
            KeyError::Unavailable(format!(
                "token {:?}: device error; {detail}",
                self.token_label
            ))
        };
        if now < backoff.next_attempt {
            return Err(waiting(&format!(
                "the module is re-initialised in {} ms",
                backoff.next_attempt.duration_since(now).as_millis()
            )));
        }
        let Ok(_only) = self.reinitialising.try_lock() else {
            return Err(waiting("the module is being re-initialised"));
        };
        let result = self.reinitialise();
        let mut fault = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) => {
                info!(token = %self.token_label, "PKCS#11 module re-initialised; token back in service");
                *fault = None;
                Ok(())
            }
            Err(e) => {
                let delay = (backoff.delay * 2).min(REINIT_BACKOFF_MAX);
                warn!(
                    token = %self.token_label,
                    error = %e,
                    retry_in = ?delay,
                    "PKCS#11 module could not be re-initialised"
                );
                *fault = Some(Backoff {
                    next_attempt: Instant::now() + delay,
                    delay,
                });
                Err(KeyError::Unavailable(e.to_string()))
            }
        }
    }

    /// Closes every session and the module context, and opens them again. Gives up (to be
    /// retried) if a lent session is not returned within [`SESSION_WAIT`]: its context must be
    /// gone before the module is initialized again, or its late `C_Finalize` would end the
    /// new one.
    fn reinitialise(&self) -> Result<(), KeyError> {
        let deadline = Instant::now() + SESSION_WAIT;
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while idle.lent > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(KeyError::Unavailable(format!(
                    "token {:?}: {} sessions still in use; re-initialising later",
                    self.token_label, idle.lent
                )));
            }
            idle = self
                .returned
                .wait_timeout(idle, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        // Closing fails on a dead device; the handles die with the context anyway.
        drop(std::mem::take(&mut idle.sessions));
        drop(std::mem::take(
            &mut *self.dead.lock().unwrap_or_else(PoisonError::into_inner),
        ));
        drop(
            self.device
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Ok(canonical) = self.module.canonicalize() {
            MODULES
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(p, _)| *p != canonical);
        }
        let ctx = module(&self.module)?;
        let slot = find_token(&ctx, &self.token_label)?;
        *self.device.lock().unwrap_or_else(PoisonError::into_inner) = Some(Device { ctx, slot });
        let mut sessions = Vec::with_capacity(self.size);
        for _ in 0..self.size {
            sessions.push(self.open_session()?);
        }
        idle.sessions = sessions;
        self.returned.notify_all();
        Ok(())
    }

    /// Opens a read-write session and logs the user in.
    fn open_session(&self) -> Result<Session, KeyError> {
        let Device { ctx, slot } = self.device()?;
        let session = ctx.open_rw_session(slot).map_err(|e| {
            self.note_fault(&e);
            let message = format!(
                "opening a session to token {:?}: {}",
                self.token_label,
                describe(&e)
            );
            if device_fault(&e) {
                KeyError::Unavailable(message)
            } else {
                KeyError::Config(message)
            }
        })?;
        let token = &self.token_label;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                Err(KeyError::Config(format!("wrong PIN for token {token:?}")))
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(KeyError::Config(format!(
                "the user PIN of token {token:?} is locked (unlock it with the SO PIN)"
            ))),
            Err(
                e @ CkError::Pkcs11(
                    RvError::PinExpired | RvError::PinInvalid | RvError::PinLenRange,
                    _,
                ),
            ) => Err(KeyError::Config(format!(
                "token {token:?} refused the PIN: {}",
                describe(&e)
            ))),
            Err(e) if device_fault(&e) => Err(KeyError::Unavailable(format!(
                "logging in to token {token:?}: {}",
                describe(&e)
            ))),
            Err(e) => Err(KeyError::Failed(format!(
                "logging in to token {token:?}: {}",
                describe(&e)
            ))),
        }
    }

    /// Borrows a session, waiting up to [`SESSION_WAIT`] for one to be returned.
    fn checkout(&self) -> Result<PooledSession<'_>, KeyError> {
        self.recover_if_due()?;
        let deadline = Instant::now() + SESSION_WAIT;
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(session) = idle.sessions.pop() {
                idle.lent += 1;
                return Ok(PooledSession {
                    pool: self,
                    session: Some(session),
                    generation: self.generation.load(Ordering::SeqCst),
                });
            }
            if self.device().is_err() {
                return Err(self.device().err().unwrap_or(KeyError::Unavailable(
                    "the PKCS#11 module is being re-initialised".into(),
                )));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(KeyError::Unavailable(format!(
                    "all {} sessions to token {:?} stayed busy for {} s",
                    self.size,
                    self.token_label,
                    SESSION_WAIT.as_secs()
                )));
            }
            idle = self
                .returned
                .wait_timeout(idle, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Borrows a session if one is idle right now.
    fn try_checkout(&self) -> Option<PooledSession<'_>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let session = idle.sessions.pop()?;
        idle.lent += 1;
        Some(PooledSession {
            pool: self,
            session: Some(session),
            generation: self.generation.load(Ordering::SeqCst),
        })
    }

    /// Runs `op` on a borrowed session. If the session was lost (closed, logged out, or its
    /// object handles forgotten), opens and logs in a new one and runs `op` once more with
    /// `retry = true`, so that it can find its objects again.
    fn run<T>(
        &self,
        mut op: impl FnMut(&PooledSession<'_>, bool) -> Result<T, Fault>,
    ) -> Result<T, Fault> {
        let mut session = self.checkout()?;
        let result = match op(&session, false) {
            Err(Fault::Pkcs11(e)) if session_lost(&e) => {
                warn!(
                    token = %self.token_label,
                    error = %describe(&e),
                    "PKCS#11 session lost; opening a new one and retrying once"
                );
                let fresh = self.open_session()?;
                session.replace(fresh, session_dead(&e));
                op(&session, true)
            }
            other => other,
        };
        if let Err(Fault::Pkcs11(e)) = &result {
            self.note_fault(e);
        }
        result
    }
}

/// A session borrowed from a [`SessionPool`]; goes back to the pool when dropped.
struct PooledSession<'a> {
    pool: &'a SessionPool,
    /// Always `Some` until the guard is dropped.
    session: Option<Session>,
    /// The module context the session belongs to.
    generation: u64,
}

impl PooledSession<'_> {
    /// Puts `fresh` in place of the borrowed session. A `dead` session's handle is already
    /// closed and the token may have given the same number to `fresh` or another session, so it
    /// is forgotten rather than closed a second time; a live one is closed.
    ///
    /// A forgotten session still holds a clone of the module context, which would keep the
    /// module from ever being finalized, so dead sessions are kept (up to
    /// [`DEAD_SESSIONS_KEPT`]) and dropped when the module is re-initialised, after every live
    /// session of that context is closed.
    fn replace(&mut self, fresh: Session, dead: bool) {
        let old = self.session.replace(fresh);
        if dead {
            if let Some(old) = old {
                let mut kept = self
                    .pool
                    .dead
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if kept.len() < DEAD_SESSIONS_KEPT {
                    kept.push(old);
                } else {
                    std::mem::forget(old);
                }
            }
        }
    }
}

impl Deref for PooledSession<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        self.session
            .as_ref()
            .expect("a pooled session is present until the guard drops")
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let mut idle = self
                .pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            idle.lent = idle.lent.saturating_sub(1);
            if self.generation == self.pool.generation.load(Ordering::SeqCst) {
                idle.sessions.push(session);
            }
            // Every waiter: a borrower wants a session, a re-initialisation wants them all.
            self.pool.returned.notify_all();
        }
    }
}

/// Why an operation on a pooled session failed: the token said no, or we did.
#[derive(Debug)]
enum Fault {
    Pkcs11(CkError),
    Key(KeyError),
}

impl From<CkError> for Fault {
    fn from(e: CkError) -> Self {
        Self::Pkcs11(e)
    }
}

impl From<KeyError> for Fault {
    fn from(e: KeyError) -> Self {
        Self::Key(e)
    }
}

impl Fault {
    /// A lost session still lost after one retry, or a missing token, is transient.
    fn into_key_error(self, what: &str) -> KeyError {
        match self {
            Self::Pkcs11(e) if device_fault(&e) || session_lost(&e) => {
                KeyError::Unavailable(format!("{what}: {}", describe(&e)))
            }
            Self::Pkcs11(e) => KeyError::Failed(format!("{what}: {}", describe(&e))),
            Self::Key(e) => e,
        }
    }
}

/// What a signing caller sees: transient faults stay retriable, the rest are permanent.
fn sign_error(e: KeyError) -> SignError {
    match e {
        KeyError::Unavailable(m) => SignError::Unavailable(m),
        KeyError::Config(m) | KeyError::Failed(m) => SignError::Failed(m),
        e @ (KeyError::NotFound(_) | KeyError::Exists(_)) => SignError::Failed(e.to_string()),
    }
}

fn return_value(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// The session, its login, or the object handles it saw are gone; a new session may work.
fn session_lost(e: &CkError) -> bool {
    matches!(
        return_value(e),
        Some(
            RvError::UserNotLoggedIn
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
        )
    )
}

/// The session handle itself is no longer valid.
fn session_dead(e: &CkError) -> bool {
    matches!(
        return_value(e),
        Some(RvError::SessionHandleInvalid | RvError::SessionClosed)
    )
}

/// The module or its device failed as a whole: operations keep failing until the module is
/// re-initialised (see the module documentation).
pub(crate) fn device_fault(e: &CkError) -> bool {
    matches!(
        return_value(e),
        Some(
            RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::GeneralError
                | RvError::SlotIdInvalid
                | RvError::CryptokiNotInitialized
        )
    )
}

/// One line for a cryptoki error (the `RvError` display is a paragraph of the standard).
pub(crate) fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("C_{function:?} returned {rv:?}"),
        other => other.to_string(),
    }
}

/// Loads and initializes the module at `path`, or returns the context loaded before.
pub(crate) fn module(path: &Path) -> Result<Pkcs11, KeyError> {
    let canonical = path.canonicalize().map_err(|e| {
        KeyError::Config(format!("PKCS#11 module {} not found: {e}", path.display()))
    })?;
    let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, ctx)) = modules.iter().find(|(p, _)| *p == canonical) {
        return Ok(ctx.clone());
    }
    exports_function_list(path, &canonical)?;
    let ctx = Pkcs11::new(&canonical).map_err(|e| {
        KeyError::Config(format!(
            "PKCS#11 module {} could not be loaded: {e}",
            path.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::OsThreads) {
        // Already initialized by another user in this process: its context works for us too.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(KeyError::Config(format!(
                "PKCS#11 module {} failed to initialize: {}",
                path.display(),
                describe(&e)
            )))
        }
    }
    modules.push((canonical, ctx.clone()));
    Ok(ctx)
}

/// Refuses a library that is not a PKCS#11 module before `cryptoki` uses it: `cryptoki`
/// resolves `C_GetFunctionList` lazily and panics when it is missing (`libz`, a mistyped path
/// to another library), and a panic would skip `init`'s clean-up.
#[allow(unsafe_code)]
fn exports_function_list(path: &Path, canonical: &Path) -> Result<(), KeyError> {
    let fail = |e: libloading::Error| {
        KeyError::Config(format!("{} is not a PKCS#11 module: {e}", path.display()))
    };
    // SAFETY: loading a library runs its initialisers, as `Pkcs11::new` on the same path would
    // do next; the symbol is only looked up, never called, so its type does not matter.
    unsafe {
        let library = libloading::Library::new(canonical).map_err(fail)?;
        library
            .get::<unsafe extern "C" fn()>(b"C_GetFunctionList\0")
            .map(drop)
            .map_err(fail)
    }
}

/// The slot holding the one initialized token labelled `label`.
pub(crate) fn find_token(ctx: &Pkcs11, label: &str) -> Result<Slot, KeyError> {
    let slots = ctx.get_slots_with_token().map_err(|e| {
        KeyError::Config(format!(
            "listing the slots of the PKCS#11 module: {}",
            describe(&e)
        ))
    })?;
    let mut matching = Vec::new();
    let mut others = Vec::new();
    for slot in slots {
        match ctx.get_token_info(slot) {
            Ok(info) if info.token_initialized() && info.label() == label => matching.push(slot),
            Ok(info) if info.token_initialized() => others.push(format!("{:?}", info.label())),
            Ok(_) => {}
            Err(e) => {
                warn!(
                    slot = slot.id(),
                    error = %describe(&e),
                    "cannot read PKCS#11 token information"
                )
            }
        }
    }
    match matching.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(KeyError::Config(format!(
            "no PKCS#11 token labelled {label:?} (tokens present: {})",
            if others.is_empty() {
                "none".to_owned()
            } else {
                others.join(", ")
            }
        ))),
        many => Err(KeyError::Config(format!(
            "{} PKCS#11 tokens are labelled {label:?}; token labels must be unique",
            many.len()
        ))),
    }
}

/// The attributes every secret pkid generates in a token shares: a token object, behind the
/// login, never revealed and never extractable, named by its label and id.
pub(crate) fn kept_in_token(label: &str, id: Vec<u8>) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id),
    ]
}

/// The one private key labelled `label` (and with CKA_ID `id`, if given).
fn find_private_key(
    session: &Session,
    label: &str,
    id: Option<&[u8]>,
) -> Result<Option<ObjectHandle>, Fault> {
    find_key(
        session,
        ObjectClass::PRIVATE_KEY,
        label,
        id,
        "private keys",
        "delete all but one",
    )
}

/// The one secret key labelled `label`, if any.
fn find_secret_key(session: &Session, label: &str) -> Result<Option<ObjectHandle>, Fault> {
    find_key(
        session,
        ObjectClass::SECRET_KEY,
        label,
        None,
        "secret keys",
        "keep the one that opens the stored data",
    )
}

/// The one object of `class` labelled `label` (and with CKA_ID `id`, if given); several are
/// refused naming `what` they are and `advice` on which to keep.
fn find_key(
    session: &Session,
    class: ObjectClass,
    label: &str,
    id: Option<&[u8]>,
    what: &str,
    advice: &str,
) -> Result<Option<ObjectHandle>, Fault> {
    let mut template = vec![
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if let Some(id) = id {
        template.push(Attribute::Id(id.to_vec()));
    }
    match session.find_objects(&template)?.as_slice() {
        [] => Ok(None),
        [key] => Ok(Some(*key)),
        many => Err(KeyError::Failed(format!(
            "{} {what} are labelled {label:?}; {advice}",
            many.len()
        ))
        .into()),
    }
}

/// A generated extractable key pair as PKCS#8 v1 DER: the EC private value with the public
/// point (checked to belong together by aws-lc-rs), or the RSA components as an RFC 8017
/// RSAPrivateKey. The components are wiped when dropped.
fn export_pkcs8(
    session: &Session,
    key_type: KeyType,
    public: ObjectHandle,
    private: ObjectHandle,
) -> Result<Zeroizing<Vec<u8>>, Fault> {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    let failed = |what: &str| KeyError::Failed(format!("the generated key: {what}"));
    let read =
        |object: ObjectHandle, kinds: &[AttributeType]| -> Result<Vec<Zeroizing<Vec<u8>>>, Fault> {
            let values = session.get_attributes(object, kinds)?;
            kinds
                .iter()
                .map(|kind| {
                    values
                        .iter()
                        .find_map(|a| match (kind, a) {
                            (AttributeType::Value, Attribute::Value(v))
                            | (AttributeType::EcPoint, Attribute::EcPoint(v))
                            | (AttributeType::Modulus, Attribute::Modulus(v))
                            | (AttributeType::PublicExponent, Attribute::PublicExponent(v))
                            | (AttributeType::PrivateExponent, Attribute::PrivateExponent(v))
                            | (AttributeType::Prime1, Attribute::Prime1(v))
                            | (AttributeType::Prime2, Attribute::Prime2(v))
                            | (AttributeType::Exponent1, Attribute::Exponent1(v))
                            | (AttributeType::Exponent2, Attribute::Exponent2(v))
                            | (AttributeType::Coefficient, Attribute::Coefficient(v)) => {
                                Some(Zeroizing::new(v.clone()))
                            }
                            _ => None,
                        })
                        .ok_or_else(|| failed(&format!("the token did not return {kind:?}")).into())
                })
                .collect()
        };
    let der = match key_type {
        KeyType::EcP256 | KeyType::EcP384 => {
            let (alg, len) = if key_type == KeyType::EcP256 {
                (&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING, 32)
            } else {
                (&aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING, 48)
            };
            let scalar = read(private, &[AttributeType::Value])?.remove(0);
            let point = read(public, &[AttributeType::EcPoint])?.remove(0);
            let point = uncompressed_point(&point, len)?;
            // CKA_VALUE is the big-endian scalar, possibly without its leading zeros.
            let mut padded = Zeroizing::new(vec![0u8; len.saturating_sub(scalar.len())]);
            padded.extend_from_slice(&scalar);
            aws_lc_rs::signature::EcdsaKeyPair::from_private_key_and_public_key(alg, &padded, point)
                .map_err(|e| failed(&e.to_string()))?
                .to_pkcs8v1()
                .map_err(|_| failed("PKCS#8 encoding"))?
                .as_ref()
                .to_vec()
        }
        KeyType::Rsa(_) => {
            let public_parts = read(
                public,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )?;
            let private_parts = read(
                private,
                &[
                    AttributeType::PrivateExponent,
                    AttributeType::Prime1,
                    AttributeType::Prime2,
                    AttributeType::Exponent1,
                    AttributeType::Exponent2,
                    AttributeType::Coefficient,
                ],
            )?;
            fn uint(b: &[u8]) -> Result<der::asn1::UintRef<'_>, KeyError> {
                der::asn1::UintRef::new(b)
                    .map_err(|e| KeyError::Failed(format!("the generated key: {e}")))
            }
            let rfc8017 = RsaPrivateKey {
                version: 0,
                modulus: uint(&public_parts[0])?,
                public_exponent: uint(&public_parts[1])?,
                private_exponent: uint(&private_parts[0])?,
                prime1: uint(&private_parts[1])?,
                prime2: uint(&private_parts[2])?,
                exponent1: uint(&private_parts[3])?,
                exponent2: uint(&private_parts[4])?,
                coefficient: uint(&private_parts[5])?,
            };
            let pkcs1 =
                Zeroizing::new(der::Encode::to_der(&rfc8017).map_err(|e| failed(&e.to_string()))?);
            let pair =
                aws_lc_rs::rsa::KeyPair::from_der(&pkcs1).map_err(|e| failed(&e.to_string()))?;
            AsDer::<Pkcs8V1Der>::as_der(&pair)
                .map_err(|_| failed("PKCS#8 encoding"))?
                .as_ref()
                .to_vec()
        }
    };
    Ok(Zeroizing::new(der))
}

/// RSAPrivateKey (RFC 8017 §A.1.2), two-prime.
#[derive(der::Sequence)]
struct RsaPrivateKey<'a> {
    version: u8,
    modulus: der::asn1::UintRef<'a>,
    public_exponent: der::asn1::UintRef<'a>,
    private_exponent: der::asn1::UintRef<'a>,
    prime1: der::asn1::UintRef<'a>,
    prime2: der::asn1::UintRef<'a>,
    exponent1: der::asn1::UintRef<'a>,
    exponent2: der::asn1::UintRef<'a>,
    coefficient: der::asn1::UintRef<'a>,
}

/// The value of a byte-string attribute, `None` if the object does not have it.
fn attribute_bytes(
    session: &Session,
    object: ObjectHandle,
    kind: AttributeType,
) -> Result<Option<Vec<u8>>, Fault> {
    Ok(session
        .get_attributes(object, &[kind])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Id(v)
            | Attribute::EcParams(v)
            | Attribute::EcPoint(v)
            | Attribute::Modulus(v)
            | Attribute::PublicExponent(v) => Some(v),
            _ => None,
        }))
}

/// The SubjectPublicKeyInfo of the key whose public attributes `object` holds.
fn public_key_info(
    session: &Session,
    object: ObjectHandle,
) -> Result<SubjectPublicKeyInfoOwned, Fault> {
    let key_type = session
        .get_attributes(object, &[AttributeType::KeyType])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::KeyType(t) => Some(t),
            _ => None,
        });
    let missing = |name: &str| {
        KeyError::Failed(format!(
            "the key has no readable {name} (is its public key object missing?)"
        ))
    };
    match key_type {
        Some(CkKeyType::EC) => {
            let params = attribute_bytes(session, object, AttributeType::EcParams)?
                .ok_or_else(|| missing("CKA_EC_PARAMS"))?;
            let point = attribute_bytes(session, object, AttributeType::EcPoint)?
                .ok_or_else(|| missing("CKA_EC_POINT"))?;
            Ok(ec_spki(&params, &point)?)
        }
        Some(CkKeyType::RSA) => {
            let modulus = attribute_bytes(session, object, AttributeType::Modulus)?
                .ok_or_else(|| missing("CKA_MODULUS"))?;
            let exponent = attribute_bytes(session, object, AttributeType::PublicExponent)?
                .ok_or_else(|| missing("CKA_PUBLIC_EXPONENT"))?;
            Ok(rsa_spki(&modulus, &exponent)?)
        }
        Some(other) => Err(KeyError::Failed(format!(
            "unsupported key type {other} (pkid uses EC and RSA keys)"
        ))
        .into()),
        None => Err(missing("CKA_KEY_TYPE").into()),
    }
}

/// CKA_EC_PARAMS for a named curve: the DER of its OID.
pub(crate) fn named_curve(curve: ObjectIdentifier) -> Result<Vec<u8>, KeyError> {
    curve
        .to_der()
        .map_err(|e| KeyError::Failed(format!("encoding curve {curve}: {e}")))
}

/// `id-ecPublicKey` SubjectPublicKeyInfo from CKA_EC_PARAMS and CKA_EC_POINT (RFC 5480 §2).
pub(crate) fn ec_spki(params: &[u8], point: &[u8]) -> Result<SubjectPublicKeyInfoOwned, KeyError> {
    let curve = ObjectIdentifier::from_der(params).map_err(|_| {
        KeyError::Failed(
            "CKA_EC_PARAMS is not a named-curve OID (explicit curve parameters are not supported)"
                .into(),
        )
    })?;
    let coordinate_len = match curve {
        oids::SECP_256_R_1 => 32,
        oids::SECP_384_R_1 => 48,
        other => {
            return Err(KeyError::Failed(format!(
                "unsupported elliptic curve {other} (P-256 and P-384 are accepted)"
            )))
        }
    };
    let point = uncompressed_point(point, coordinate_len)?;
    let bad = |e: der::Error| KeyError::Failed(format!("encoding the EC public key: {e}"));
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: oids::ID_EC_PUBLIC_KEY,
            parameters: Some(curve.into()),
        },
        subject_public_key: BitString::from_bytes(point).map_err(bad)?,
    })
}

/// The uncompressed point `04 ‖ X ‖ Y` in a CKA_EC_POINT value: a DER OCTET STRING wrapping
/// it (PKCS#11 v2.40), or the bare point (some older tokens).
fn uncompressed_point(value: &[u8], coordinate_len: usize) -> Result<&[u8], KeyError> {
    let is_point =
        |p: &[u8]| p.len() == 1 + 2 * coordinate_len && p.first() == Some(&UNCOMPRESSED_POINT);
    if let Ok(wrapped) = OctetStringRef::from_der(value) {
        if is_point(wrapped.as_bytes()) {
            return Ok(wrapped.as_bytes());
        }
    }
    if is_point(value) {
        return Ok(value);
    }
    Err(KeyError::Failed(format!(
        "CKA_EC_POINT is not an uncompressed {}-byte point, bare or in an OCTET STRING",
        1 + 2 * coordinate_len
    )))
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017 A.1.1).
#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

/// `rsaEncryption` SubjectPublicKeyInfo (NULL parameters, RFC 3279 §2.3.1) from CKA_MODULUS
/// and CKA_PUBLIC_EXPONENT (big-endian integers).
pub(crate) fn rsa_spki(
    modulus: &[u8],
    exponent: &[u8],
) -> Result<SubjectPublicKeyInfoOwned, KeyError> {
    let bad = |e: der::Error| KeyError::Failed(format!("encoding the RSA public key: {e}"));
    let key = RsaPublicKey {
        modulus: UintRef::new(modulus).map_err(bad)?,
        public_exponent: UintRef::new(exponent).map_err(bad)?,
    }
    .to_der()
    .map_err(bad)?;
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: oids::RSA_ENCRYPTION,
            parameters: Some(der::asn1::Null.into()),
        },
        subject_public_key: BitString::from_bytes(&key).map_err(bad)?,
    })
}

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279 §2.2.3).
#[derive(der::Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// Re-encodes the raw `r ‖ s` a token returns for CKM_ECDSA (each `coordinate_len` bytes,
/// big-endian) as a DER `Ecdsa-Sig-Value` with minimal INTEGERs.
pub(crate) fn ecdsa_sig_value(raw: &[u8], coordinate_len: usize) -> Result<Vec<u8>, SignError> {
    if raw.len() != 2 * coordinate_len {
        return Err(SignError::Failed(format!(
            "the token returned a {}-byte ECDSA signature, not {}",
            raw.len(),
            2 * coordinate_len
        )));
    }
    let (r, s) = raw.split_at(coordinate_len);
    let bad = |e: der::Error| SignError::Failed(format!("encoding the ECDSA signature: {e}"));
    EcdsaSigValue {
        r: UintRef::new(r).map_err(bad)?,
        s: UintRef::new(s).map_err(bad)?,
    }
    .to_der()
    .map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkid_protocols::algorithm::verify;
    use std::process::Command;
    use std::sync::{Barrier, OnceLock};

    const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
    /// Token directories are `<temp dir>/pkid-softhsm-<pid>`.
    const TOKEN_DIR_PREFIX: &str = "pkid-softhsm-";
    const SO_PIN: &str = "87654321";
    /// Distinctive, so a leak into a message is easy to spot.
    const USER_PIN: &str = "271828";
    /// One token per test: login state is per token, and a test that logs out must not log
    /// out another test's sessions.
    const TOKENS: [&str; 12] = [
        "t-export",
        "t-p256",
        "t-p384",
        "t-rsa2048",
        "t-exists",
        "t-notfound",
        "t-wrongpin",
        "t-threads",
        "t-recovery",
        "t-check",
        "t-pool",
        "t-seal",
    ];

    /// SoftHSM2 reads `SOFTHSM2_CONF` once, at `C_Initialize`, and the module is initialized
    /// once per process, so every test shares one token directory holding every test's token,
    /// all created before the first test opens the module. A static is never dropped, so the
    /// directory is named after the process and directories of finished test processes are
    /// removed here instead.
    fn softhsm() -> &'static Path {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        DIR.get_or_init(|| {
            assert!(
                Path::new(MODULE).exists(),
                "{MODULE} is missing: install SoftHSM2 (`apt-get install softhsm2`) \
                 to run the PKCS#11 tests"
            );
            remove_stale_token_dirs();
            let dir =
                std::env::temp_dir().join(format!("{TOKEN_DIR_PREFIX}{}", std::process::id()));
            let tokens = dir.join("tokens");
            std::fs::create_dir_all(&tokens).expect("token dir");
            let conf = dir.join("softhsm2.conf");
            let conf_text = format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            );
            std::fs::write(&conf, conf_text).expect("conf");
            std::env::set_var("SOFTHSM2_CONF", &conf);
            for label in TOKENS {
                let out = Command::new("softhsm2-util")
                    .args(["--init-token", "--free", "--label", label])
                    .args(["--so-pin", SO_PIN, "--pin", USER_PIN])
                    .output()
                    .expect("softhsm2-util runs (install softhsm2)");
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.status.success(),
                    "softhsm2-util --init-token {label}: {stderr}"
                );
            }
            dir
        })
    }

    /// Removes `pkid-softhsm-<pid>` directories whose process has exited.
    fn remove_stale_token_dirs() {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(TOKEN_DIR_PREFIX)) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn settings(token: &str, sessions: usize) -> Pkcs11Settings {
        softhsm();
        Pkcs11Settings {
            module: MODULE.into(),
            token_label: token.into(),
            pin: USER_PIN.to_owned().into(),
            sessions,
        }
    }

    fn open(token: &str, sessions: usize) -> Pkcs11Backend {
        Pkcs11Backend::open(&settings(token, sessions)).expect("open token")
    }

    /// Logs the token's user out (every session of the application, PKCS#11 `C_Logout`), as a
    /// token reset would.
    fn log_out(backend: &Pkcs11Backend) {
        backend
            .pool
            .checkout()
            .expect("checkout")
            .logout()
            .expect("logout");
    }

    #[test]
    fn subscriber_keys_come_out_as_pkcs8_and_leave_nothing_in_the_token() {
        let backend = open("t-export", 1);
        for key_type in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa(2048)] {
            let pkcs8 = backend.generate_exportable(key_type).expect("generated");
            // The PKCS#8 is a whole key pair: it signs what its own public key verifies.
            let signer = crate::keys::software::SoftwareSigner::from_pkcs8(&pkcs8)
                .expect("a PKCS#8 aws-lc-rs reads");
            assert_eq!(
                pkid_protocols::KeyType::of(signer.public_key()).expect("key type"),
                key_type
            );
            assert_signs(&signer, "khóa thuê bao".as_bytes());
        }
        // Session objects, destroyed: the token holds no key at all.
        let left = backend
            .pool
            .run(|session, _| Ok(session.find_objects(&[])?))
            .expect("objects");
        assert!(left.is_empty(), "{} objects left in the token", left.len());
    }

    fn assert_signs(signer: &dyn Signer, message: &[u8]) {
        let signature = signer.sign(message).expect("sign");
        verify(
            signer.public_key(),
            &signer.algorithm().identifier(),
            message,
            &signature,
        )
        .expect("signature verifies");
    }

    fn round_trip(token: &str, role: KeyRole, key_type: KeyType, algorithm: SignatureAlgorithm) {
        let backend = open(token, 2);
        let generated = backend.generate(&role, key_type).expect("generate");
        assert_eq!(KeyType::of(generated.public_key()), Ok(key_type));
        assert_eq!(generated.algorithm(), algorithm);
        assert_signs(generated.as_ref(), b"to be signed");
        let loaded = backend.load(&role).expect("load");
        assert_eq!(loaded.public_key(), generated.public_key());
        assert_eq!(loaded.algorithm(), algorithm);
        assert_signs(loaded.as_ref(), b"signed again after loading");
        // A new backend (as after a restart) finds the same key.
        drop((generated, loaded, backend));
        let reloaded = open(token, 1).load(&role).expect("load after reopening");
        assert_signs(reloaded.as_ref(), b"after restart");
    }

    #[test]
    fn p256_key_generates_loads_and_signs_verifiably() {
        round_trip(
            "t-p256",
            KeyRole::Issuing,
            KeyType::EcP256,
            SignatureAlgorithm::EcdsaSha256,
        );
    }

    #[test]
    fn p384_key_generates_loads_and_signs_verifiably() {
        round_trip(
            "t-p384",
            KeyRole::Root,
            KeyType::EcP384,
            SignatureAlgorithm::EcdsaSha384,
        );
    }

    #[test]
    fn rsa2048_key_generates_loads_and_signs_verifiably() {
        round_trip(
            "t-rsa2048",
            KeyRole::Ocsp,
            KeyType::Rsa(2048),
            SignatureAlgorithm::RsaPkcs1Sha256,
        );
    }

    #[test]
    fn second_generate_for_a_role_is_refused() {
        let backend = open("t-exists", 1);
        let first = backend
            .generate(&KeyRole::Tsa, KeyType::EcP256)
            .expect("generate");
        assert!(matches!(
            backend.generate(&KeyRole::Tsa, KeyType::EcP384),
            Err(KeyError::Exists(KeyRole::Tsa))
        ));
        // The existing key is untouched.
        assert_eq!(
            backend.load(&KeyRole::Tsa).expect("load").public_key(),
            first.public_key()
        );
    }

    #[test]
    fn loading_a_missing_role_is_not_found() {
        let backend = open("t-notfound", 1);
        assert!(matches!(
            backend.load(&KeyRole::Root),
            Err(KeyError::NotFound(KeyRole::Root))
        ));
    }

    #[test]
    fn wrong_pin_is_a_config_error_that_does_not_show_the_pin() {
        let wrong_pin = "3141592653";
        let mut settings = settings("t-wrongpin", 2);
        settings.pin = wrong_pin.to_owned().into();
        let err = Pkcs11Backend::open(&settings)
            .err()
            .expect("wrong PIN refused");
        let (display, debug) = (err.to_string(), format!("{err:?}"));
        assert!(matches!(err, KeyError::Config(_)), "{display}");
        assert!(
            display.contains("wrong PIN") && display.contains("t-wrongpin"),
            "{display}"
        );
        for text in [&display, &debug, &format!("{settings:?}")] {
            assert!(
                !text.contains(wrong_pin) && !text.contains(USER_PIN),
                "PIN leaked: {text}"
            );
        }
        // The right PIN still works: nothing was locked.
        let _ = open("t-wrongpin", 1);
    }

    #[test]
    fn missing_module_is_a_config_error_naming_the_path() {
        let missing = "/nonexistent/libpkid-no-such-module.so";
        let mut settings = settings("t-p256", 1);
        settings.module = missing.into();
        let err = Pkcs11Backend::open(&settings)
            .err()
            .expect("missing module refused");
        assert!(
            matches!(&err, KeyError::Config(m) if m.contains(missing)),
            "{err}"
        );
        assert_eq!(err.to_string().lines().count(), 1, "{err}");
    }

    #[test]
    fn unknown_token_label_is_a_config_error_naming_the_label() {
        let err = Pkcs11Backend::open(&settings("no-such-token", 1))
            .err()
            .expect("unknown token refused");
        assert!(
            matches!(&err, KeyError::Config(m) if m.contains("no-such-token")),
            "{err}"
        );
    }

    #[test]
    fn eight_threads_sign_concurrently_over_four_sessions() {
        let backend = open("t-threads", 4);
        let signer = backend
            .generate(&KeyRole::Issuing, KeyType::EcP256)
            .expect("generate");
        let start = Barrier::new(8);
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let (signer, start) = (&signer, &start);
                scope.spawn(move || {
                    start.wait();
                    for i in 0..25 {
                        assert_signs(
                            signer.as_ref(),
                            format!("thread {thread} message {i}").as_bytes(),
                        );
                    }
                });
            }
        });
        assert_eq!(
            backend.pool.idle.lock().expect("pool").sessions.len(),
            4,
            "every session went back to the pool"
        );
    }

    #[test]
    fn pool_lends_each_session_to_one_borrower_at_a_time() {
        let backend = open("t-pool", 4);
        let borrowed: Vec<_> = (0..4)
            .map(|_| backend.pool.checkout().expect("checkout"))
            .collect();
        let mut handles: Vec<String> = borrowed.iter().map(|s| s.to_string()).collect();
        handles.sort();
        handles.dedup();
        assert_eq!(handles.len(), 4, "four distinct sessions");
        assert!(
            backend.pool.try_checkout().is_none(),
            "a fifth borrower waits"
        );
        // A waiting borrower gets the session as soon as one is returned.
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| backend.pool.checkout().map(|s| s.to_string()));
            std::thread::sleep(Duration::from_millis(50));
            drop(borrowed);
            assert!(waiter.join().expect("join").is_ok());
        });
    }

    #[test]
    fn logged_out_session_is_recovered_on_the_next_sign() {
        let backend = open("t-recovery", 1);
        let signer = backend
            .generate(&KeyRole::Ocsp, KeyType::EcP384)
            .expect("generate");
        assert_signs(signer.as_ref(), b"before");
        log_out(&backend);
        assert_signs(signer.as_ref(), b"after a logout");
        // Recovered a second time, through check() this time.
        log_out(&backend);
        backend.check().expect("check recovers the session");
        assert_signs(signer.as_ref(), b"after check");
    }

    #[test]
    fn check_and_describe_report_the_token() {
        let backend = open("t-check", 0);
        assert_eq!(backend.pool.size, MIN_SESSIONS);
        backend.check().expect("ready");
        assert_eq!(backend.describe(), "pkcs11:t-check");
    }

    #[test]
    fn the_sealing_key_is_a_non_extractable_aes_key_in_the_token_and_seals_with_gcm() {
        let backend = open("t-seal", 2);
        let sealer = backend.sealer().expect("generate the sealing key");
        crate::keys::seal::tests::behaves_as_a_sealer(sealer.as_ref());
        let sealed = sealer
            .seal("Hồ Chí Minh".as_bytes(), b"request:1:unit")
            .expect("seal");

        // A second sealer (a restart) finds the same key by label instead of making another.
        drop((sealer, backend));
        let backend = open("t-seal", 1);
        let again = backend.sealer().expect("find the sealing key");
        assert_eq!(
            again
                .open(&sealed, b"request:1:unit")
                .expect("open")
                .as_slice(),
            "Hồ Chí Minh".as_bytes()
        );
        let checkout = backend.pool.checkout().expect("checkout");
        let keys = checkout
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(b"pkid-seal".to_vec()),
            ])
            .expect("find");
        assert_eq!(keys.len(), 1, "one sealing key");
        let attributes = checkout
            .get_attributes(
                keys[0],
                &[
                    AttributeType::KeyType,
                    AttributeType::ValueLen,
                    AttributeType::Token,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Sign,
                ],
            )
            .expect("attributes");
        for expected in [
            Attribute::KeyType(CkKeyType::AES),
            Attribute::ValueLen(cryptoki::types::Ulong::try_from(32usize).expect("32 fits")),
            Attribute::Token(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(false),
        ] {
            assert!(
                attributes.contains(&expected),
                "{expected:?} in {attributes:?}"
            );
        }
        // The key value cannot be read out of the token.
        assert!(checkout
            .get_attributes(keys[0], &[AttributeType::Value])
            .map(|a| a.is_empty())
            .unwrap_or(true));
        drop(checkout);

        // After a logout (the token forgets handles) the sealer finds its key again.
        log_out(&backend);
        assert_eq!(
            again
                .open(&sealed, b"request:1:unit")
                .expect("open after logout")
                .as_slice(),
            "Hồ Chí Minh".as_bytes()
        );
        // A value sealed by the software backend does not open with the token's key.
        let dir = tempfile::tempdir().expect("tmp");
        let software =
            crate::keys::software::SoftwareSealer::open_or_create(dir.path()).expect("sw");
        let foreign = software.seal(b"x", b"request:1:unit").expect("seal");
        assert_eq!(
            again.open(&foreign, b"request:1:unit"),
            Err(SealError::Unauthentic)
        );
        backend
            .check()
            .expect("a refused tag is not a device fault");
    }

    #[test]
    fn raw_ecdsa_signature_becomes_minimal_der() {
        let mut raw = [0u8; 64];
        raw[31] = 0x01; // r = 1: leading zeros dropped
        raw[32] = 0x80; // s has its top bit set: a 0x00 is prepended
        let der = ecdsa_sig_value(&raw, 32).expect("encode");
        let mut expected = vec![0x30, 0x26, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00, 0x80];
        expected.extend([0u8; 31]);
        assert_eq!(der, expected);
        assert!(matches!(
            ecdsa_sig_value(&raw[..63], 32),
            Err(SignError::Failed(_))
        ));
    }

    #[test]
    fn ec_point_is_read_wrapped_or_bare() {
        let mut point = vec![UNCOMPRESSED_POINT];
        point.extend([7u8; 64]);
        let wrapped = OctetStringRef::new(&point)
            .expect("octets")
            .to_der()
            .expect("der");
        assert_eq!(
            uncompressed_point(&wrapped, 32).expect("wrapped"),
            point.as_slice()
        );
        assert_eq!(
            uncompressed_point(&point, 32).expect("bare"),
            point.as_slice()
        );
        assert!(
            uncompressed_point(&point, 48).is_err(),
            "wrong length for P-384"
        );
        let mut compressed = vec![0x02];
        compressed.extend([7u8; 32]);
        assert!(
            uncompressed_point(&compressed, 32).is_err(),
            "compressed points are refused"
        );
    }
}
