//! Centralised remote signing (Công văn 293/BCY-CTSBMTT) over the Cloud Signature Consortium
//! API v2 (`docs/remote-signing.md`).
//!
//! ```text
//!  RA: central issue request ─approve─▶ approved ─▶ fulfil::Fulfiller (background worker)
//!      key generated, sealed under the data key ─▶ CA issues ─▶ account + credential stored,
//!      activation mail queued (one transaction) ─▶ the request recorded fulfilled
//!  subscriber: POST /api/v1/activation/{code} {password} ─▶ otpauth:// URI (TOTP enrolled)
//!  CSC client: auth/login (Basic: official email + password) ─▶ access token (memory)
//!              credentials/list, credentials/info
//!              credentials/authorize (OTP = TOTP, hashes) ─▶ SAD (memory, bound to the hashes)
//!              signatures/signHash (SAD, hashes) ─▶ signatures; each audited
//! ```
//!
//! [`Csc`] decides (no HTTP here; `http` adapts it). Access tokens and SADs are short-lived
//! and held in this process's memory, only as SHA-256 of the secret handed out; the key of an
//! authorised SAD is opened once, at authorisation, and dropped with the SAD. Everything that
//! must survive — accounts, failures and the lock, the last TOTP step used, credentials — is
//! in the store ([`crate::store::csc`]).

pub mod fulfil;
pub mod history;
pub mod http;
pub mod policy;

use crate::ca::Authority;
use crate::clock::Clock;
use crate::config::{CscConfig, ROOT};
use crate::keys::seal::DataSealer;
use crate::ra::access::Principal;
use crate::ra::credentials;
use crate::store::csc::{self as model, AccountRecord, AccountState, CredentialRecord};
use crate::store::ra::{AccountRecovery, RequestRecord};
use crate::store::{AuditEntry, CertStatus, Outcome, Store, StoreError};
use aws_lc_rs::digest;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::Engine;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use zeroize::Zeroizing;

/// The CSC specification version served.
pub const SPECS: &str = "2.0.0.2";
/// SHA-256.
pub const SHA256_OID: &str = "2.16.840.1.101.3.4.2.1";
/// ecdsa-with-SHA256: what a central P-256 key signs.
pub const ECDSA_SHA256_OID: &str = "1.2.840.10045.4.3.2";
/// id-ecPublicKey (some clients send the key algorithm as `signAlgo`).
pub const EC_PUBLIC_KEY_OID: &str = "1.2.840.10045.2.1";
/// prime256v1.
pub const P256_OID: &str = "1.2.840.10045.3.1.7";
/// The prefix of access tokens (recognisable by secret scanners).
pub const TOKEN_PREFIX: &str = "pkidcsc_";
/// The prefix of SADs.
pub const SAD_PREFIX: &str = "pkidsad_";
/// Most live tokens (and SADs) held; expired ones are dropped first, then the request fails.
const MAX_LIVE: usize = 200_000;
/// Most hashes one call may carry.
pub const MAX_HASHES: usize = 1000;

/// Why a CSC call was refused, in the CSC error form (`error`, `error_description`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CscError {
    /// 400 `invalid_request`: a parameter is missing or wrong (the message names it).
    #[error("{0}")]
    InvalidRequest(String),
    /// 401 `invalid_token`: no access token, an unknown one, or an expired one.
    #[error("{0}")]
    InvalidToken(String),
    /// 401 `authentication_error`: auth/login with a wrong email or password.
    #[error("the email or the password is wrong")]
    Authentication,
    /// 400 `invalid_otp`: the OTP is wrong or was already used.
    #[error("the OTP is wrong or was already used")]
    InvalidOtp,
    /// 400 `invalid_pin`: the PIN (the account password) is wrong.
    #[error("the PIN is wrong")]
    InvalidPin,
    /// 403 `access_denied`: the account is locked or not activated.
    #[error("{0}")]
    Denied(String),
    /// 404 `invalid_request`: no such activation code (or spent, or expired), no such account.
    #[error("{0}")]
    NotFound(String),
    /// 409: the account is not in a state the action applies to.
    #[error("{0}")]
    Conflict(String),
    /// 503 `temporarily_unavailable`.
    #[error("{0}")]
    Unavailable(String),
    /// 500 `server_error`.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for CscError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// A logged-in subscriber, as an access token names it.
#[derive(Clone, Debug)]
pub struct Session {
    /// The account.
    pub account: i64,
}

struct Token {
    account: i64,
    expires_at: u64,
}

struct Sad {
    account: i64,
    credential: String,
    /// The hashes still to be signed (each once).
    hashes: Vec<Vec<u8>>,
    expires_at: u64,
    /// When the OTP authorised the transaction: extensions end `transaction_lifetime` later.
    authorised_at: u64,
    key: Arc<EcdsaKeyPair>,
}

/// A credential as `credentials/info` describes it.
#[derive(Clone, Debug)]
pub struct CredentialView {
    /// The record.
    pub credential: CredentialRecord,
    /// The certificate and its chain up to the root, DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// `valid`, `revoked`, `expired`, `suspended`.
    pub cert_status: &'static str,
    /// The certificate's subject and issuer DNs, serial (hex), validity (`YYYYMMDDHHMMSSZ`).
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// notBefore.
    pub valid_from: String,
    /// notAfter.
    pub valid_to: String,
}

/// What [`Csc`] is built from.
pub struct CscParts {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The data-key sealer (subscriber keys, TOTP secrets).
    pub sealer: Arc<dyn DataSealer>,
    /// The CA (certificate chains).
    pub authority: Arc<Authority>,
    /// `[csc]`.
    pub config: CscConfig,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

/// The remote-signing service.
pub struct Csc {
    store: Arc<dyn Store>,
    sealer: Arc<dyn DataSealer>,
    authority: Arc<Authority>,
    config: CscConfig,
    clock: Arc<dyn Clock>,
    tokens: Mutex<HashMap<Vec<u8>, Token>>,
    sads: Mutex<HashMap<Vec<u8>, Sad>>,
}

/// Argon2id of nobody's password: verified against when the email is unknown, so the answer
/// takes as long either way (made once, on the first such login).
fn dummy_phc() -> &'static str {
    static PHC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PHC.get_or_init(|| {
        let nobody = random_secret("").map(|(s, _)| s).unwrap_or_default();
        credentials::hash_password(&format!("{}-nobody-knows", nobody.as_str())).unwrap_or_default()
    })
}

/// The audit action of a re-enrolment.
const REENROL: &str = "csc.account.reenrol";

/// Why a SAD is not known (never issued, spent or revoked).
const UNKNOWN_SAD: &str = "Invalid parameter SAD: unknown, already used or revoked";

/// The live SAD whose hash is `sad_hash`, issued to `account` for `credential`, at `now`; or
/// why it is not one. An expired SAD is dropped.
fn live_sad<'a>(
    sads: &'a mut HashMap<Vec<u8>, Sad>,
    sad_hash: &[u8],
    account: i64,
    credential: &str,
    now: u64,
) -> Result<&'a mut Sad, &'static str> {
    match sads.get(sad_hash) {
        None => return Err(UNKNOWN_SAD),
        Some(e) if e.expires_at <= now => {
            sads.remove(sad_hash);
            return Err("Invalid parameter SAD: expired");
        }
        Some(e) if e.account != account || e.credential != credential => {
            return Err("Invalid parameter SAD: not issued for this credential");
        }
        Some(_) => {}
    }
    sads.get_mut(sad_hash).ok_or(UNKNOWN_SAD)
}

fn sha256(b: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, b).as_ref().to_vec()
}

fn random_secret(prefix: &str) -> Result<(Zeroizing<String>, Vec<u8>), CscError> {
    let mut b = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(b.as_mut()).map_err(|_| CscError::Internal("random".into()))?;
    let s = Zeroizing::new(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b.as_ref())
    ));
    let h = sha256(s.as_bytes());
    Ok((s, h))
}

/// Decodes the base64 hashes of a call: each a SHA-256 value.
pub fn decode_hashes(hashes: &[String]) -> Result<Vec<Vec<u8>>, CscError> {
    if hashes.is_empty() {
        return Err(CscError::InvalidRequest("Missing parameter hashes".into()));
    }
    if hashes.len() > MAX_HASHES {
        return Err(CscError::InvalidRequest(format!(
            "at most {MAX_HASHES} hashes in one call"
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    hashes
        .iter()
        .map(|h| match b64.decode(h.trim()) {
            Ok(d) if d.len() == 32 => Ok(d),
            _ => Err(CscError::InvalidRequest(
                "Invalid parameter hashes: each is a base64 SHA-256 value (32 bytes)".into(),
            )),
        })
        .collect()
}

fn check_hash_algorithm(oid: Option<&str>) -> Result<(), CscError> {
    match oid {
        None | Some(SHA256_OID) => Ok(()),
        Some(_) => Err(CscError::InvalidRequest(format!(
            "Invalid parameter hashAlgorithmOID: this credential signs SHA-256 hashes \
             ({SHA256_OID})"
        ))),
    }
}

impl Csc {
    /// The service over its parts.
    pub fn new(p: CscParts) -> Result<Self, CscError> {
        Ok(Self {
            store: p.store,
            sealer: p.sealer,
            authority: p.authority,
            config: p.config,
            clock: p.clock,
            tokens: Mutex::new(HashMap::new()),
            sads: Mutex::new(HashMap::new()),
        })
    }

    /// `[csc]` as this service runs it.
    pub fn config(&self) -> &CscConfig {
        &self.config
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    fn entry(
        &self,
        actor: String,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: String,
    ) -> AuditEntry {
        AuditEntry {
            at: self.now(),
            actor,
            action: action.into(),
            target: target.into(),
            outcome,
            detail,
        }
    }

    /// Records a refusal (best effort: the refusal stands either way) and returns it.
    fn refuse(
        &self,
        account: Option<i64>,
        action: &str,
        target: &str,
        client: &str,
        e: CscError,
    ) -> CscError {
        let actor = account.map_or_else(
            || "csc:anonymous".to_owned(),
            |a| format!("csc-account:{a}"),
        );
        let entry = self.entry(
            actor,
            action,
            target,
            Outcome::Refused,
            format!("{e} client={client}"),
        );
        if let Err(err) = self.store.audit(&entry) {
            tracing::error!(error = %err, action, "a refused remote-signing call could not be audited");
        }
        e
    }

    /// Counts a wrong OTP or password; the account locks at `[csc] max_otp_failures`.
    fn fail(&self, account: &AccountRecord, action: &str, client: &str, e: CscError) -> CscError {
        let entry = self.entry(
            format!("csc-account:{}", account.id),
            action,
            &format!("account:{}", account.id),
            Outcome::Refused,
            format!("{e} client={client}"),
        );
        match self
            .store
            .record_failure(account.id, self.config.max_otp_failures, &entry)
        {
            Ok(AccountState::Locked) if account.state != AccountState::Locked => {
                let lock = self.entry(
                    "pkid-csc".into(),
                    "csc.account.lock",
                    &format!("account:{}", account.id),
                    Outcome::Success,
                    format!("{} consecutive failures", self.config.max_otp_failures),
                );
                if let Err(err) = self.store.audit(&lock) {
                    tracing::error!(error = %err, "an account lock could not be audited");
                }
                tracing::warn!(
                    account = account.id,
                    "a remote-signing account was locked after repeated failures"
                );
            }
            Ok(_) => {}
            Err(err) => {
                tracing::error!(error = %err, "a failed remote-signing check could not be recorded")
            }
        }
        e
    }

    // ---- activation ---------------------------------------------------------------------

    /// Activates the account of a one-time activation code: sets its password (Argon2id) and
    /// enrols a new TOTP secret; returns the `otpauth://` URI for the authenticator app.
    pub fn activate(
        &self,
        code: &str,
        password: &str,
        client: &str,
    ) -> Result<Zeroizing<String>, CscError> {
        let hash = sha256(code.trim().as_bytes());
        let now = self.now();
        let not_found = || {
            CscError::NotFound(
                "no activation pending for this link (used, expired or never made)".into(),
            )
        };
        let account = match self.store.account_by_activation(&hash)? {
            Some(a) if a.activation_expires.is_some_and(|e| e > now) => a,
            _ => return Err(self.refuse(None, "csc.activate", "", client, not_found())),
        };
        let phc = credentials::hash_password(password).map_err(|e| match e {
            credentials::CredentialError::PasswordLength => {
                CscError::InvalidRequest(format!("password: {e}"))
            }
            e => CscError::Internal(e.to_string()),
        })?;
        let secret =
            credentials::new_totp_secret().map_err(|e| CscError::Internal(e.to_string()))?;
        let sealed = self
            .sealer
            .seal(&secret, model::totp_context(account.id).as_bytes())
            .map_err(|e| CscError::Unavailable(e.to_string()))?;
        let audit = self.entry(
            format!("csc-account:{}", account.id),
            "csc.activate",
            &format!("account:{}", account.id),
            Outcome::Success,
            format!("client={client}"),
        );
        if !self
            .store
            .activate(account.id, &hash, &phc, &sealed, now, &audit)?
        {
            return Err(self.refuse(None, "csc.activate", "", client, not_found()));
        }
        credentials::totp_uri(&secret, &account.email)
            .map_err(|e| CscError::Internal(e.to_string()))
    }

    // ---- the RA's account actions --------------------------------------------------------

    /// The account of `email`, checked for an RA officer (or CA admin) whose scope covers its
    /// organisation.
    fn account_for(
        &self,
        who: &Principal,
        email: &str,
        action: &str,
        client: &str,
    ) -> Result<AccountRecord, CscError> {
        let account = self
            .store
            .account_by_email(email.trim())?
            .ok_or_else(|| CscError::NotFound("no signing account has this email".into()))?;
        let org = self.store.organisation(&account.organisation)?;
        let covered = org.as_ref().is_some_and(|o| {
            who.reach()
                .covers_organisation(&o.id, o.province.as_deref(), &o.path)
        });
        if !who.decides() || !covered {
            let e = CscError::Denied(if who.decides() {
                "the account's organisation is outside your scope".into()
            } else {
                "your role may not act on signing accounts".into()
            });
            let entry = self.entry(
                who.actor(),
                action,
                &format!("account:{}", account.id),
                Outcome::Refused,
                format!("{e} client={client}"),
            );
            if let Err(err) = self.store.audit(&entry) {
                tracing::error!(error = %err, action, "a refused account action could not be audited");
            }
            return Err(e);
        }
        Ok(account)
    }

    /// Unlocks an account locked after repeated failures (an RA officer, for its organisation).
    pub fn unlock(&self, who: &Principal, email: &str, client: &str) -> Result<(), CscError> {
        const ACTION: &str = "csc.account.unlock";
        let account = self.account_for(who, email, ACTION, client)?;
        if account.state != AccountState::Locked {
            return Err(CscError::Conflict(format!(
                "the account is {}, not locked",
                account.state.as_str()
            )));
        }
        self.unlock_account(&account, &who.actor(), format!("client={client}"))
    }

    fn unlock_account(
        &self,
        account: &AccountRecord,
        actor: &str,
        detail: String,
    ) -> Result<(), CscError> {
        let audit = self.entry(
            actor.to_owned(),
            "csc.account.unlock",
            &format!("account:{}", account.id),
            Outcome::Success,
            detail,
        );
        self.store
            .set_account_state(account.id, AccountState::Active, &audit)?;
        Ok(())
    }

    /// Re-enrols an account (a lost phone, a forgotten password): its password and
    /// authenticator are removed and a new activation link is mailed to its email.
    pub fn reenrol(&self, who: &Principal, email: &str, client: &str) -> Result<(), CscError> {
        let account = self.account_for(who, email, REENROL, client)?;
        self.reenrol_account(&account, &who.actor(), format!("client={client}"))
    }

    fn reenrol_account(
        &self,
        account: &AccountRecord,
        actor: &str,
        detail: String,
    ) -> Result<(), CscError> {
        let name = self
            .store
            .csc_credentials(account.id)?
            .last()
            .map(|c| self.store.request(c.request))
            .transpose()?
            .flatten()
            .and_then(|r| r.subscriber.name)
            .unwrap_or_default();
        let code = fulfil::activation_code()?;
        let expires = self.now() + self.config.activation.as_secs();
        let link = format!("{}/activate/{}", self.config.portal_url, code.code.as_str());
        let mail = fulfil::account_mail(
            &name,
            &account.email,
            (
                &format!("Theo yêu cầu của đơn vị, tài khoản ký số từ xa {} được đăng ký lại: mật khẩu và ứng dụng xác thực cũ không còn dùng được.", account.email),
                &format!("At your organisation's request, the remote-signing account {} is enrolled again: its old password and authenticator no longer work.", account.email),
            ),
            &format!("csc-reenrol:{}:{}:email", account.id, hex::encode(&code.sha256[..8])),
            None,
            &link,
            self.config.activation.as_secs() / 3600,
        );
        let audit = self.entry(
            actor.to_owned(),
            REENROL,
            &format!("account:{}", account.id),
            Outcome::Success,
            detail,
        );
        self.store
            .reenrol(account.id, (&code.sha256, expires), &[mail], &audit)?;
        // Its sessions end with it.
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, t| t.account != account.id);
        self.sads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, s| s.account != account.id);
        Ok(())
    }

    /// Does what an approved `recover` request of a remote-signing account asks (the
    /// fulfilment worker, recorded as `actor`): unlocks the account of the request's
    /// certificate, or enrols it again. Done once: an account no longer locked needs no
    /// unlock, and a re-enrolment already audited for this request (the worker stopped after
    /// it, before the request was completed) is not repeated, so one link is mailed.
    pub fn recover(&self, r: &RequestRecord, actor: &str) -> Result<(), CscError> {
        let credential = match r.certificate.as_deref() {
            Some(serial) => self.store.credential_by_serial(serial)?,
            None => None,
        }
        .ok_or_else(|| {
            CscError::NotFound(format!(
                "request {} names no remote-signing credential",
                r.id
            ))
        })?;
        let account = self
            .store
            .csc_account(credential.account)?
            .ok_or_else(|| CscError::NotFound(format!("no account of request {}", r.id)))?;
        let detail = format!("request={}", r.id);
        match r.recovery {
            Some(AccountRecovery::Unlock) if account.state == AccountState::Locked => {
                self.unlock_account(&account, actor, detail)
            }
            Some(AccountRecovery::Unlock) => Ok(()),
            Some(AccountRecovery::Reenrol) => {
                let done = self
                    .store
                    .audit_of_target(&format!("account:{}", account.id), None, 100)?
                    .into_iter()
                    .any(|(_, e)| {
                        e.action == REENROL && e.outcome == Outcome::Success && e.detail == detail
                    });
                if done {
                    return Ok(());
                }
                self.reenrol_account(&account, actor, detail)
            }
            None => Err(CscError::InvalidRequest(format!(
                "request {} does not say how to recover the account",
                r.id
            ))),
        }
    }

    // ---- login and tokens ---------------------------------------------------------------

    /// The account of `email` when `password` is its password and it is active; a wrong
    /// password counts towards the lock. An unknown email takes as long as a known one.
    fn password_account(
        &self,
        email: &str,
        password: &str,
        action: &str,
        client: &str,
    ) -> Result<AccountRecord, CscError> {
        let account = self.store.account_by_email(email.trim())?;
        let Some(account) = account else {
            let _ = credentials::verify_password(password, dummy_phc());
            return Err(self.refuse(None, action, "", client, CscError::Authentication));
        };
        let Some(phc) = account.password_phc.as_deref() else {
            let _ = credentials::verify_password(password, dummy_phc());
            return Err(self.refuse(
                Some(account.id),
                action,
                "",
                client,
                CscError::Authentication,
            ));
        };
        if !credentials::verify_password(password, phc) {
            return Err(self.fail(&account, action, client, CscError::Authentication));
        }
        match account.state {
            AccountState::Active => Ok(account),
            AccountState::Locked => Err(self.refuse(Some(account.id), action, "", client, CscError::Denied(
                "the account is locked after repeated failures; ask your organisation to file an unlock request".into(),
            ))),
            AccountState::Pending => Err(self.refuse(Some(account.id), action, "", client, CscError::Denied(
                "the account is not activated".into(),
            ))),
        }
    }

    /// `auth/login`: the official email and the account password → an access token (shown
    /// once) and its lifetime in seconds.
    pub fn login(
        &self,
        email: &str,
        password: &str,
        client: &str,
    ) -> Result<(Zeroizing<String>, u64), CscError> {
        let account = self.password_account(email, password, "csc.login", client)?;
        if account.failures > 0 {
            self.store.reset_failures(account.id)?;
        }
        let (token, hash) = random_secret(TOKEN_PREFIX)?;
        let lifetime = self.config.token_lifetime.as_secs();
        let now = self.now();
        {
            let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
            if tokens.len() >= MAX_LIVE {
                tokens.retain(|_, t| t.expires_at > now);
                if tokens.len() >= MAX_LIVE {
                    return Err(CscError::Unavailable("too many live access tokens".into()));
                }
            }
            tokens.insert(
                hash,
                Token {
                    account: account.id,
                    expires_at: now + lifetime,
                },
            );
        }
        let audit = self.entry(
            format!("csc-account:{}", account.id),
            "csc.login",
            &format!("account:{}", account.id),
            Outcome::Success,
            format!("client={client}"),
        );
        self.store.audit(&audit)?;
        Ok((token, lifetime))
    }

    /// The session of an access token (`Authorization: Bearer …`).
    pub fn session(&self, token: &str, client: &str) -> Result<Session, CscError> {
        let hash = sha256(token.trim().as_bytes());
        let now = self.now();
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        match tokens.get(&hash) {
            Some(t) if t.expires_at > now => Ok(Session { account: t.account }),
            Some(t) => {
                let account = t.account;
                tokens.remove(&hash);
                drop(tokens);
                Err(self.refuse(
                    Some(account),
                    "csc.token",
                    "",
                    client,
                    CscError::InvalidToken("the access token has expired".into()),
                ))
            }
            None => {
                drop(tokens);
                Err(self.refuse(
                    None,
                    "csc.token",
                    "",
                    client,
                    CscError::InvalidToken("the access token is not valid".into()),
                ))
            }
        }
    }

    /// Ends a session (`auth/revoke`).
    pub fn logout(&self, token: &str) {
        let hash = sha256(token.trim().as_bytes());
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&hash);
    }

    /// The portal's sign-in of a subscriber: the official email, the account password and a
    /// code of the enrolled authenticator (both factors, as for an operator). The code's step
    /// is spent, like an authorisation's. Returns the account id; audited `csc.portal.login`.
    pub fn portal_login(
        &self,
        email: &str,
        password: &str,
        otp: &str,
        client: &str,
    ) -> Result<i64, CscError> {
        const ACTION: &str = "csc.portal.login";
        let account = self.password_account(email, password, ACTION, client)?;
        // A passed code resets the failure count in the same write that spends its step.
        self.check_otp(&account, otp, ACTION, client)?;
        let audit = self.entry(
            format!("csc-account:{}", account.id),
            ACTION,
            &format!("account:{}", account.id),
            Outcome::Success,
            format!("client={client}"),
        );
        self.store.audit(&audit)?;
        Ok(account.id)
    }

    /// The active account of a portal session (`None`: gone, locked or re-enrolled, and the
    /// session ends).
    pub fn portal_account(&self, account: i64) -> Result<Option<AccountRecord>, CscError> {
        Ok(self
            .store
            .csc_account(account)?
            .filter(|a| a.state == AccountState::Active && a.totp_sealed.is_some()))
    }

    /// The account's credentials as `credentials/info` describes them, for its portal page.
    pub fn own_credentials(&self, account: i64) -> Result<Vec<CredentialView>, CscError> {
        self.store
            .csc_credentials(account)?
            .into_iter()
            .map(|c| self.view(c))
            .collect()
    }

    fn active_account(
        &self,
        s: &Session,
        action: &str,
        client: &str,
    ) -> Result<AccountRecord, CscError> {
        let account = self
            .store
            .csc_account(s.account)?
            .ok_or_else(|| CscError::InvalidToken("the account no longer exists".into()))?;
        match account.state {
            AccountState::Active => Ok(account),
            _ => Err(self.refuse(Some(account.id), action, "", client, CscError::Denied(
                "the account is locked after repeated failures; ask your organisation to file an unlock request".into(),
            ))),
        }
    }

    // ---- credentials --------------------------------------------------------------------

    /// The caller's own credential `id`: another subscriber's, or none, is the same refusal.
    fn own_credential(
        &self,
        s: &Session,
        id: &str,
        action: &str,
        client: &str,
    ) -> Result<CredentialRecord, CscError> {
        match self.store.csc_credential(id.trim())? {
            Some(c) if c.account == s.account => Ok(c),
            _ => Err(self.refuse(
                Some(s.account),
                action,
                id,
                client,
                CscError::InvalidRequest("Invalid parameter credentialID".into()),
            )),
        }
    }

    /// The certificate status of a credential, disabling the credential at once when its
    /// certificate is revoked or expired.
    fn certificate_status(
        &self,
        c: &CredentialRecord,
    ) -> Result<(&'static str, Option<Vec<u8>>), CscError> {
        let rec = self.store.certificate(&c.serial)?;
        let Some(rec) = rec else {
            return Ok(("revoked", None));
        };
        let status = match rec.status {
            CertStatus::Valid if rec.not_after <= self.now() => "expired",
            CertStatus::Valid => "valid",
            CertStatus::Hold => "suspended",
            _ => "revoked",
        };
        if status == "revoked" && c.enabled {
            let audit = self.entry(
                "pkid-csc".into(),
                "csc.credential.disable",
                &c.id,
                Outcome::Success,
                format!("certificate {} revoked", c.serial),
            );
            self.store.disable_credential(&c.id, &audit)?;
            self.sads
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, sad| sad.credential != c.id);
        }
        Ok((status, rec.der))
    }

    /// `credentials/list`: the caller's credential ids.
    pub fn list(&self, s: &Session, client: &str) -> Result<Vec<CredentialRecord>, CscError> {
        self.active_account(s, "csc.credentials.list", client)?;
        Ok(self.store.csc_credentials(s.account)?)
    }

    /// `credentials/info`.
    pub fn info(&self, s: &Session, id: &str, client: &str) -> Result<CredentialView, CscError> {
        let c = self.own_credential(s, id, "csc.credentials.info", client)?;
        self.view(c)
    }

    /// [`Csc::info`] of a credential already checked to be the caller's.
    pub fn view(&self, c: CredentialRecord) -> Result<CredentialView, CscError> {
        let (cert_status, der) = self.certificate_status(&c)?;
        let der =
            der.ok_or_else(|| CscError::Internal(format!("certificate {} has no DER", c.serial)))?;
        let cert = <x509_cert::Certificate as der::Decode>::from_der(&der)
            .map_err(|e| CscError::Internal(e.to_string()))?;
        let tbs = &cert.tbs_certificate;
        let mut chain = vec![der.clone()];
        if let Some(issuer) = self.issuer_of(&c.serial)? {
            chain.push(issuer.der.clone());
            if issuer.name != ROOT {
                if let Some(root) = self.authority.issuer(ROOT) {
                    chain.push(root.der.clone());
                }
            }
        }
        let time = |t: &x509_cert::time::Time| {
            let dt = t.to_date_time();
            format!(
                "{:04}{:02}{:02}{:02}{:02}{:02}Z",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minutes(),
                dt.seconds()
            )
        };
        Ok(CredentialView {
            cert_status,
            subject: tbs.subject.to_string(),
            issuer: tbs.issuer.to_string(),
            valid_from: time(&tbs.validity.not_before),
            valid_to: time(&tbs.validity.not_after),
            chain,
            credential: c,
        })
    }

    fn issuer_of(&self, serial: &str) -> Result<Option<Arc<crate::ca::Issuer>>, CscError> {
        Ok(self
            .store
            .certificate(serial)?
            .and_then(|r| self.authority.issuer(&r.issuer)))
    }

    // ---- authorisation and signing ------------------------------------------------------

    /// Checks a TOTP code against the account's secret at `now` (± one step) and spends its
    /// step, so the same code is never accepted twice.
    fn check_otp(
        &self,
        account: &AccountRecord,
        otp: &str,
        action: &str,
        client: &str,
    ) -> Result<(), CscError> {
        let Some(sealed) = &account.totp_sealed else {
            return Err(CscError::Denied(
                "the account has no authenticator enrolled".into(),
            ));
        };
        let secret = self
            .sealer
            .open(sealed, model::totp_context(account.id).as_bytes())
            .map_err(|e| CscError::Unavailable(e.to_string()))?;
        let step = credentials::totp_step(&secret, &account.email, otp, self.now());
        let Some(step) = step else {
            return Err(self.fail(account, action, client, CscError::InvalidOtp));
        };
        let audit = self.entry(
            format!("csc-account:{}", account.id),
            "csc.otp",
            &format!("account:{}", account.id),
            Outcome::Success,
            format!("client={client}"),
        );
        if !self.store.record_otp(account.id, step, &audit)? {
            // The code of a step already used: a replay.
            return Err(self.fail(account, action, client, CscError::InvalidOtp));
        }
        Ok(())
    }

    /// `credentials/authorize`: with the TOTP as OTP (and optionally the account password as
    /// PIN), authorises `hashes` (SHA-256, base64) for signing with credential `id`: a SAD for
    /// exactly those hashes, each signed once, within `[csc] sad_secs`.
    #[allow(clippy::too_many_arguments)]
    pub fn authorize(
        &self,
        s: &Session,
        id: &str,
        num_signatures: u32,
        hashes: &[String],
        hash_algorithm: Option<&str>,
        otp: Option<&str>,
        pin: Option<&str>,
        client: &str,
    ) -> Result<(Zeroizing<String>, u64), CscError> {
        const ACTION: &str = "csc.credentials.authorize";
        let account = self.active_account(s, ACTION, client)?;
        let c = self.own_credential(s, id, ACTION, client)?;
        check_hash_algorithm(hash_algorithm)?;
        let decoded = decode_hashes(hashes)?;
        if num_signatures == 0 || num_signatures > self.config.max_signatures {
            return Err(CscError::InvalidRequest(format!(
                "Invalid parameter numSignatures: 1 to {}",
                self.config.max_signatures
            )));
        }
        if num_signatures as usize != decoded.len() {
            return Err(CscError::InvalidRequest(
                "Invalid parameter numSignatures: it must equal the number of hashes (SCAL 2)"
                    .into(),
            ));
        }
        if let Some(pin) = pin {
            let ok = account
                .password_phc
                .as_deref()
                .is_some_and(|phc| credentials::verify_password(pin, phc));
            if !ok {
                return Err(self.fail(&account, ACTION, client, CscError::InvalidPin));
            }
        }
        let Some(otp) = otp.filter(|o| !o.trim().is_empty()) else {
            return Err(CscError::InvalidRequest("Missing parameter OTP".into()));
        };
        self.check_otp(&account, otp, ACTION, client)?;
        let (status, _) = self.certificate_status(&c)?;
        if status != "valid" || !c.enabled {
            return Err(self.refuse(
                Some(s.account),
                ACTION,
                &c.id,
                client,
                CscError::InvalidRequest(format!(
                    "the credential is disabled: its certificate is {status}"
                )),
            ));
        }
        let key = self.open_key(&c)?;
        let (sad, hash) = random_secret(SAD_PREFIX)?;
        let lifetime = self.config.sad_lifetime.as_secs();
        let now = self.now();
        {
            let mut sads = self.sads.lock().unwrap_or_else(PoisonError::into_inner);
            if sads.len() >= MAX_LIVE {
                sads.retain(|_, s| s.expires_at > now);
                if sads.len() >= MAX_LIVE {
                    return Err(CscError::Unavailable("too many live authorisations".into()));
                }
            }
            sads.insert(
                hash,
                Sad {
                    account: s.account,
                    credential: c.id.clone(),
                    hashes: decoded.clone(),
                    expires_at: now + lifetime,
                    authorised_at: now,
                    key,
                },
            );
        }
        let listed: Vec<String> = decoded.iter().map(hex::encode).collect();
        let audit = self.entry(
            format!("csc-account:{}", s.account),
            ACTION,
            &c.id,
            Outcome::Success,
            format!(
                "signatures={num_signatures} hashes={} client={client}",
                listed.join(",")
            ),
        );
        self.store.audit(&audit)?;
        Ok((sad, lifetime))
    }

    /// `credentials/extendTransaction`: a new SAD for what an unexpired one still authorises
    /// — the same account and credential, the hashes not signed yet (`hashes`, when given,
    /// must be among them) — valid `sad_lifetime` more, never past `transaction_lifetime`
    /// after the OTP that authorised it. The old SAD stops working.
    pub fn extend_transaction(
        &self,
        s: &Session,
        id: &str,
        sad: &str,
        hashes: &[String],
        hash_algorithm: Option<&str>,
        client: &str,
    ) -> Result<(Zeroizing<String>, u64), CscError> {
        const ACTION: &str = "csc.credentials.extendTransaction";
        self.active_account(s, ACTION, client)?;
        let c = self.own_credential(s, id, ACTION, client)?;
        check_hash_algorithm(hash_algorithm)?;
        let asked = decode_hashes(hashes)?;
        let old = sha256(sad.trim().as_bytes());
        let (fresh, fresh_hash) = random_secret(SAD_PREFIX)?;
        let now = self.now();
        let lifetime = self.config.sad_lifetime.as_secs();
        let transaction = self.config.transaction_lifetime.as_secs();
        let extended = (|| {
            let mut sads = self.sads.lock().unwrap_or_else(PoisonError::into_inner);
            let e = live_sad(&mut sads, &old, s.account, &c.id, now)?;
            if !asked.iter().all(|h| e.hashes.contains(h)) {
                return Err(
                    "Invalid parameter hashes: not authorised by this SAD (or already signed)",
                );
            }
            if now >= e.authorised_at + transaction {
                return Err(
                    "Invalid parameter SAD: the transaction has lasted its longest; authorise again",
                );
            }
            let mut e = sads.remove(&old).ok_or(UNKNOWN_SAD)?;
            e.expires_at = (now + lifetime).min(e.authorised_at + transaction);
            let left = e.hashes.len();
            let expires_in = e.expires_at - now;
            sads.insert(fresh_hash, e);
            Ok((left, expires_in))
        })();
        match extended {
            Ok((left, expires_in)) => {
                let audit = self.entry(
                    format!("csc-account:{}", s.account),
                    ACTION,
                    &c.id,
                    Outcome::Success,
                    format!("hashes-left={left} expires-in={expires_in} client={client}"),
                );
                self.store.audit(&audit)?;
                Ok((fresh, expires_in))
            }
            Err(message) => Err(self.refuse(
                Some(s.account),
                ACTION,
                &c.id,
                client,
                CscError::InvalidRequest(message.into()),
            )),
        }
    }

    fn open_key(&self, c: &CredentialRecord) -> Result<Arc<EcdsaKeyPair>, CscError> {
        let pkcs8 = self
            .sealer
            .open(&c.key_sealed, model::key_context(&c.id).as_bytes())
            .map_err(|e| CscError::Unavailable(e.to_string()))?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8)
            .map(Arc::new)
            .map_err(|_| {
                CscError::Internal(format!("the key of credential {} does not load", c.id))
            })
    }

    /// `signatures/signHash`: signs `hashes` with credential `id` under `sad`. Every hash must
    /// be one the SAD authorised and not yet signed; the SAD is spent hash by hash and dropped
    /// when none is left or it expires. Each signature is audited before it is returned.
    #[allow(clippy::too_many_arguments)]
    pub fn sign_hash(
        &self,
        s: &Session,
        id: &str,
        sad: &str,
        hashes: &[String],
        hash_algorithm: Option<&str>,
        sign_algorithm: &str,
        client: &str,
    ) -> Result<Vec<Vec<u8>>, CscError> {
        const ACTION: &str = "csc.signatures.signHash";
        if sign_algorithm != ECDSA_SHA256_OID && sign_algorithm != EC_PUBLIC_KEY_OID {
            return Err(CscError::InvalidRequest(format!(
                "Invalid parameter signAlgo: this credential signs with ecdsa-with-SHA256 ({ECDSA_SHA256_OID})"
            )));
        }
        check_hash_algorithm(hash_algorithm)?;
        let decoded = decode_hashes(hashes)?;
        let c = self.own_credential(s, id, ACTION, client)?;
        let sad_hash = sha256(sad.trim().as_bytes());
        let now = self.now();
        // Take what this call signs out of the SAD first, so two calls with one SAD cannot
        // both sign the same hash.
        let refusal = {
            let mut sads = self.sads.lock().unwrap_or_else(PoisonError::into_inner);
            match live_sad(&mut sads, &sad_hash, s.account, &c.id, now) {
                Err(why) => why,
                Ok(e) => {
                    let mut left = e.hashes.clone();
                    let mut all = true;
                    for h in &decoded {
                        match left.iter().position(|x| x == h) {
                            Some(i) => {
                                left.swap_remove(i);
                            }
                            None => all = false,
                        }
                    }
                    if all {
                        let key = e.key.clone();
                        if left.is_empty() {
                            sads.remove(&sad_hash);
                        } else {
                            e.hashes = left;
                        }
                        drop(sads);
                        return self.sign_all(s, &c, key, &decoded, client, ACTION);
                    }
                    "Invalid parameter hashes: not authorised by this SAD (or already signed)"
                }
            }
        };
        Err(self.refuse(
            Some(s.account),
            ACTION,
            &c.id,
            client,
            CscError::InvalidRequest(refusal.into()),
        ))
    }

    fn sign_all(
        &self,
        s: &Session,
        c: &CredentialRecord,
        key: Arc<EcdsaKeyPair>,
        hashes: &[Vec<u8>],
        client: &str,
        action: &str,
    ) -> Result<Vec<Vec<u8>>, CscError> {
        // Revocation disables the key at once: the certificate is read for every call.
        let (status, _) = self.certificate_status(c)?;
        if status != "valid" {
            return Err(self.refuse(
                Some(s.account),
                action,
                &c.id,
                client,
                CscError::InvalidRequest(format!(
                    "the credential is disabled: its certificate is {status}"
                )),
            ));
        }
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            let d = digest::Digest::import_less_safe(h, &digest::SHA256)
                .map_err(|_| CscError::InvalidRequest("Invalid parameter hashes".into()))?;
            let sig = key
                .sign_digest(&d)
                .map_err(|_| CscError::Internal("ECDSA signing failed".into()))?;
            out.push(sig.as_ref().to_vec());
        }
        let listed: Vec<String> = hashes.iter().map(hex::encode).collect();
        let audit = self.entry(
            format!("csc-account:{}", s.account),
            action,
            &c.id,
            Outcome::Success,
            format!("hashes={} client={client}", listed.join(",")),
        );
        // Durably recorded before anyone receives the signature.
        self.store.audit(&audit)?;
        Ok(out)
    }
}
