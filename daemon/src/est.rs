//! The EST enrollment server (RFC 7030): who may enroll under a label, what a CSR becomes, and
//! the RA requests of labels an operator approves. The HTTP binding is [`http`].
//!
//! ```text
//! request ─▶ label (issuer, profile, organisation, approval)
//!   ─▶ authenticate: TLS client certificate of the organisation (it decides when valid),
//!      else HTTP Basic (Argon2id, verified results cached briefly; the row is read every time)
//!   ─▶ CSR: base64 (whitespace, PEM armour tolerated) ─▶ proof of possession ─▶ key type of
//!      the profile ─▶ subject: CN [, OU], O = the organisation's legal name, C = VN
//!   ─▶ auto:     RegistrationAuthority::issue_as (stored, audited) ─▶ certs-only PKCS#7
//!      operator: an accepted RA request ─▶ 202 Retry-After … approved: the certificate;
//!                rejected: 403 with the reason
//! simplereenroll: the client certificate is the one renewed; same subject and SAN;
//!      same key ─▶ renew, new key ─▶ rekey (the old one superseded)
//! ```

pub mod http;

use crate::ca::{Authority, CaError};
use crate::config::{Approval, ChannelBinding, Config, EstLabel, SubscriberProfile};
use crate::keygen::{self, envelope, KeygenError};
use crate::keys::DataSealer;
use crate::keys::Signer as _;
use crate::ra::calendar::Calendar;
use crate::ra::credentials::verify_password;
use crate::ra::RegistrationAuthority;
use crate::store::ra::{RequestState, Role};
use crate::store::{CertStatus, CertificateRecord, CredentialKind, EstRequest, Store, StoreError};
use aws_lc_rs::digest;
use base64::Engine;
use der::{Decode, Encode};
use pkid_protocols::csr::{self, VerifiedCsr};
use std::sync::Arc;
use std::time::Duration;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::name::Name;
use x509_cert::Certificate;

/// Largest EST request body, bytes: a base64 CSR at the protocols crate's CSR limit, wrapped.
pub const MAX_BODY_BYTES: usize = 96 * 1024;

/// Verified Basic credentials remembered at most (each entry is 32 bytes and a key).
const CACHE_ENTRIES: u64 = 10_000;

/// Why an EST call did not succeed. Each carries the one-line reason sent to the client (never
/// a secret) and the metric label of the refusal.
#[derive(Debug, thiserror::Error)]
pub enum EstError {
    /// 401 with a Basic challenge.
    #[error("{1}")]
    Unauthenticated(&'static str, String),
    /// 403.
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 400.
    #[error("{1}")]
    BadRequest(&'static str, String),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 415.
    #[error("{0}")]
    MediaType(String),
    /// 503, retry later.
    #[error("{0}")]
    Unavailable(String),
    /// 500.
    #[error("{0}")]
    Internal(String),
}

impl EstError {
    /// The metric label of this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthenticated(r, _) | Self::Forbidden(r, _) | Self::BadRequest(r, _) => r,
            Self::NotFound(_) => "not_found",
            Self::TooLarge(_) => "too_large",
            Self::MediaType(_) => "media_type",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for EstError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "EST: store");
        EstError::Unavailable("store unavailable; retry later".into())
    }
}

impl From<CaError> for EstError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::Refused(m) => EstError::BadRequest("refused", m),
            CaError::NotFound(m) => EstError::Forbidden("not_found", format!("no certificate {m}")),
            CaError::Conflict(m) => EstError::Forbidden("conflict", m),
            CaError::Unavailable(m) => EstError::Unavailable(m),
            CaError::Internal(m) => EstError::Internal(m),
        }
    }
}

/// What the client presented.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The verified TLS client certificate: its serial (canonical hex) and DER.
    pub certificate: Option<(String, Vec<u8>)>,
    /// HTTP Basic user and password.
    pub basic: Option<(String, zeroize::Zeroizing<String>)>,
    /// The TLS 1.3 connection's tls-exporter value (RFC 9266); `None` on TLS 1.2.
    pub exporter: Option<[u8; 32]>,
}

/// `challengePassword` (PKCS#9, RFC 2985 §5.4.1): where a client puts the channel binding.
const CHALLENGE_PASSWORD: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7");
/// `id-aa-asymmDecryptKeyID` (RFC 7030 §4.4.1.2): the key a server-made key is encrypted to.
pub const ASYMM_DECRYPT_KEY_ID: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.54");

/// What a CSR asks beyond its subject and key: the attributes of RFC 7030 §3.5 and §4.4.1.
#[derive(Debug, Default)]
struct CsrAsks {
    /// The challengePassword, as text.
    challenge_password: Option<String>,
    /// AsymmetricDecryptKeyIdentifier: encrypt a server-made key to this key.
    asymmetric_key: Option<Vec<u8>>,
    /// DecryptKeyIdentifier (a symmetric key) was asked for.
    symmetric_key: bool,
}

/// Reads the attributes of [`CsrAsks`] from a CSR whose signature was verified.
fn csr_asks(der: &[u8]) -> Result<CsrAsks, EstError> {
    let req = x509_cert::request::CertReq::from_der(der)
        .map_err(|e| EstError::BadRequest("bad_csr", format!("CSR refused: {e}")))?;
    let mut asks = CsrAsks::default();
    for a in req.info.attributes.iter() {
        let one = || {
            a.values.iter().next().ok_or_else(|| {
                EstError::BadRequest("bad_csr", format!("CSR attribute {} has no value", a.oid))
            })
        };
        if a.oid == CHALLENGE_PASSWORD {
            let text = attr_text(one()?).ok_or_else(|| {
                EstError::BadRequest("bad_csr", "the challengePassword is not a string".into())
            })?;
            asks.challenge_password = Some(text);
        } else if a.oid == ASYMM_DECRYPT_KEY_ID {
            let id = one()?.decode_as::<der::asn1::OctetString>().map_err(|_| {
                EstError::BadRequest(
                    "bad_csr",
                    "the AsymmetricDecryptKeyIdentifier is not an OCTET STRING".into(),
                )
            })?;
            asks.asymmetric_key = Some(id.as_bytes().to_vec());
        } else if a.oid == const_oid::db::rfc5911::ID_AA_DECRYPT_KEY_ID {
            asks.symmetric_key = true;
        }
    }
    Ok(asks)
}

/// The tls-exporter check (RFC 9266; RFC 7030 §3.5): a challengePassword, when the CSR carries
/// one, must be the base64 of this connection's exporter value; a label with
/// `channel_binding = "required"` refuses a CSR without it.
fn check_channel_binding(
    label: &EstLabel,
    caller: &Caller,
    asks: &CsrAsks,
) -> Result<(), EstError> {
    let refuse = |m: String| EstError::BadRequest("channel_binding", m);
    let Some(sent) = asks.challenge_password.as_deref() else {
        return match label.channel_binding {
            ChannelBinding::Optional => Ok(()),
            ChannelBinding::Required => Err(refuse(format!(
                "label {:?} requires channel binding: put the base64 tls-exporter value (RFC 9266) of this TLS 1.3 connection in the CSR's challengePassword",
                label.name
            ))),
        };
    };
    let Some(exporter) = caller.exporter else {
        return Err(refuse(
            "the CSR carries a challengePassword, checked as a tls-exporter channel binding (RFC 9266), which needs TLS 1.3; this connection is TLS 1.2"
                .into(),
        ));
    };
    let sent = base64::engine::general_purpose::STANDARD
        .decode(sent.trim())
        .map_err(|_| {
            refuse(
                "the challengePassword is not base64 (of the tls-exporter value, RFC 9266)".into(),
            )
        })?;
    if aws_lc_rs::constant_time::verify_slices_are_equal(&sent, &exporter).is_err() {
        return Err(refuse(
            "the challengePassword is not this TLS connection's tls-exporter value (RFC 9266): the CSR was made for another connection"
                .into(),
        ));
    }
    Ok(())
}

/// Who was authenticated, for the audit log.
struct Authenticated {
    actor: String,
    /// The client certificate's record, when it authenticated the call.
    certificate: Option<(CertificateRecord, Certificate)>,
}

/// The answer to an enrollment.
#[derive(Debug)]
pub enum Enrolled {
    /// The certificate (DER), stored.
    Issued(Vec<u8>),
    /// Waiting for an operator: retry after this many seconds.
    Pending {
        /// The RA request.
        request: i64,
        /// Seconds.
        retry_after: u64,
    },
}

/// The EST server over one CA.
pub struct Est {
    /// The configuration; its `[est]` section is replaced on SIGHUP ([`Est::reload`]).
    config: arc_swap::ArcSwap<Config>,
    store: Arc<dyn Store>,
    authority: Arc<Authority>,
    ra: RegistrationAuthority,
    /// The desk's calendar once [`Self::with_calendar`] hands it over (a copy loaded at
    /// start before that, or without a desk).
    calendar: crate::ra::desk::LiveCalendar,
    verified: Option<moka::sync::Cache<[u8; 32], ()>>,
    /// The data key, which seals escrowed keys (`None`: escrow labels answer 503).
    sealer: Option<Arc<dyn DataSealer>>,
    /// The EST server's own key, which signs the key packages of encrypted `serverkeygen`
    /// replies (`None`: those answer 503).
    server_key: Option<ServerKeySigner>,
    /// The key backend, which makes serverkeygen's keys.
    keys: Arc<dyn crate::keys::KeyBackend>,
    /// Held from "has this CSR been filed?" to "it is now recorded" on operator labels, so
    /// that two first requests with one CSR file one RA request (striped by the CSR's hash).
    filing: [std::sync::Mutex<()>; FILING_STRIPES],
}

/// Locks of [`Est::filing`]: concurrent first requests of different CSRs rarely wait on each
/// other, and the set stays a few hundred bytes.
const FILING_STRIPES: usize = 16;

/// The EST server's key and certificate (the HTTPS listener's, `[server] tls_key` and
/// `tls_cert`): the party that signs the keys it generates (RFC 7030 §4.4.2).
pub struct ServerKeySigner {
    /// The key.
    pub signer: Arc<dyn crate::keys::Signer>,
    /// Its certificate.
    pub certificate: Certificate,
    /// The certificates above it, sent along so that a client completes the chain to the root
    /// it trusts (`cacerts`).
    pub chain: Vec<Certificate>,
}

impl ServerKeySigner {
    /// The signer of a certificate chain (leaf first, PEM) and the PKCS#8 key it certifies.
    pub fn load(chain_pem: &[u8], pkcs8: &[u8]) -> Result<Self, String> {
        let mut chain = Certificate::load_pem_chain(chain_pem)
            .map_err(|e| format!("the certificate chain: {e}"))?
            .into_iter();
        let certificate = chain
            .next()
            .ok_or_else(|| "the certificate file holds no certificate".to_string())?;
        let signer = crate::keys::software::SoftwareSigner::from_pkcs8(pkcs8)
            .map_err(|e| format!("the key: {e}"))?;
        use crate::keys::Signer;
        if *signer.public_key() != certificate.tbs_certificate.subject_public_key_info {
            return Err("the key is not the certificate's".into());
        }
        Ok(Self {
            signer: Arc::new(signer),
            certificate,
            chain: chain.collect(),
        })
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The text of a directory-string attribute value.
fn attr_text(value: &der::Any) -> Option<String> {
    use der::{Tag, Tagged};
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
            String::from_utf8(value.value().to_vec()).ok()
        }
        _ => None,
    }
}

/// The subject's attributes as (short name, text); `None` for a value that is not a string.
fn attributes(name: &Name) -> Vec<(String, Option<String>)> {
    use const_oid::db::rfc4519::{C, CN, O, OU};
    let mut out = Vec::new();
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            let short = match atv.oid {
                o if o == CN => "CN".to_owned(),
                o if o == OU => "OU".to_owned(),
                o if o == O => "O".to_owned(),
                o if o == C => "C".to_owned(),
                o => o.to_string(),
            };
            out.push((short, attr_text(&atv.value)));
        }
    }
    out
}

/// RFC 4514 escaping of one attribute value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Decodes an EST body: base64, whitespace anywhere, PEM armour lines tolerated; raw DER (a
/// client that ignored §4.2.1) is refused with the reason.
pub fn decode_body(body: &[u8]) -> Result<Vec<u8>, EstError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(EstError::TooLarge(format!(
            "the body is over the {MAX_BODY_BYTES}-byte limit"
        )));
    }
    if body.first() == Some(&0x30) {
        return Err(EstError::BadRequest(
            "bad_base64",
            "the body is DER; EST bodies are base64 (RFC 7030 section 4.2.1)".into(),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| EstError::BadRequest("bad_base64", "the body is not base64 text".into()))?;
    let clean: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if clean.is_empty() {
        return Err(EstError::BadRequest("empty", "the body is empty".into()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| EstError::BadRequest("bad_base64", format!("the body is not base64: {e}")))
}

impl Est {
    /// The EST server of a daemon: its configuration, store and CA.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        authority: Arc<Authority>,
        keys: Arc<dyn crate::keys::KeyBackend>,
    ) -> Self {
        let calendar = Calendar::load(&config.ra.calendar).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "EST: the working-day calendar does not load; using the shipped one for deadlines");
            Calendar::shipped()
        });
        let verified = (config.est.credential_cache_secs > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .time_to_live(Duration::from_secs(config.est.credential_cache_secs))
                .build()
        });
        Self {
            ra: RegistrationAuthority::new(authority.clone()),
            config: arc_swap::ArcSwap::new(config),
            store,
            authority,
            calendar: Arc::new(arc_swap::ArcSwap::from_pointee(calendar)),
            verified,
            sealer: None,
            server_key: None,
            keys,
            filing: Default::default(),
        }
    }

    /// The key that signs the key packages of encrypted `serverkeygen` replies.
    pub fn with_server_key(mut self, key: Option<ServerKeySigner>) -> Self {
        self.server_key = key;
        self
    }

    /// Files machine requests with the desk's calendar, which follows reloads.
    pub fn with_calendar(mut self, calendar: crate::ra::desk::LiveCalendar) -> Self {
        self.calendar = calendar;
        self
    }

    /// The data key that seals the keys of labels with `escrow = true`.
    pub fn with_sealer(mut self, sealer: Option<Arc<dyn DataSealer>>) -> Self {
        self.sealer = sealer;
        self
    }

    /// Applies a reloaded configuration's `[est]` section (SIGHUP): labels, the default label
    /// and `retry_after_secs`. Refused, the running section kept, when a label names a profile
    /// this process does not run (profiles change only on restart) or an issuer it has not
    /// loaded, or escrows keys of a non-repudiation profile. `credential_cache_secs` applies
    /// on restart (the cache is built once). Returns whether the section was applied.
    pub fn reload(&self, new: &Config) -> bool {
        let running = self.config.load_full();
        for l in new.est.labels.values() {
            let refusal = match running.profile(&l.profile) {
                None => Some(format!(
                    "profile {:?} is not running (profiles change on restart)",
                    l.profile
                )),
                Some(p) if l.escrow && p.profile.key_usage.non_repudiation() => Some(format!(
                    "profile {:?} signs with non-repudiation: its keys are never escrowed",
                    l.profile
                )),
                Some(_) if self.authority.issuer(&l.issuer).is_none() => {
                    Some(format!("issuer {:?} is not loaded", l.issuer))
                }
                Some(_) => None,
            };
            if let Some(why) = refusal {
                tracing::error!(label = %l.name, reason = %why, "the reloaded [est] section is refused; keeping the labels in use");
                return false;
            }
        }
        if new.est.credential_cache_secs != running.est.credential_cache_secs {
            tracing::warn!("[est] credential_cache_secs changes only on restart");
        }
        let mut applied = (*running).clone();
        applied.est = new.est.clone();
        applied.est.credential_cache_secs = running.est.credential_cache_secs;
        self.config.store(Arc::new(applied));
        tracing::info!(labels = new.est.labels.len(), "EST labels reloaded");
        true
    }

    /// The label a path names (`None`: the default label).
    pub fn label(&self, name: Option<&str>) -> Result<EstLabel, EstError> {
        let config = self.config.load();
        config.est.label(name).cloned().ok_or_else(|| match name {
            Some(n) => EstError::NotFound(format!("no EST label {n:?}")),
            None => EstError::NotFound(
                "no default EST label is configured; use /.well-known/est/{label}/".into(),
            ),
        })
    }

    fn profile(&self, label: &EstLabel) -> Result<SubscriberProfile, EstError> {
        self.config
            .load()
            .profile(&label.profile)
            .cloned()
            .ok_or_else(|| EstError::Internal(format!("profile {} is gone", label.profile)))
    }

    /// The realm of a label's Basic challenge.
    pub fn realm(label: &EstLabel) -> String {
        format!("pkid EST {}", label.name)
    }

    /// `cacerts`: the label's issuer and the CA certificates above it, as certs-only PKCS#7.
    pub fn cacerts(&self, label: &EstLabel) -> Result<Vec<u8>, EstError> {
        let mut chain = Vec::new();
        let mut next = self.authority.issuer(&label.issuer);
        if next.is_none() {
            return Err(EstError::Unavailable(format!(
                "the label's issuer {:?} is not loaded",
                label.issuer
            )));
        }
        while let Some(i) = next {
            chain.push(i.der.clone());
            let tbs = &i.certificate.tbs_certificate;
            if tbs.issuer == tbs.subject || chain.len() > 8 {
                break;
            }
            next = self
                .authority
                .issuers()
                .into_iter()
                .find(|c| c.certificate.tbs_certificate.subject == tbs.issuer);
        }
        let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
        pkid_protocols::est::certs_only(&refs).map_err(|e| EstError::Internal(e.to_string()))
    }

    /// `csrattrs`: what the label's profile requires of a CSR (DER CsrAttrs). O and C are
    /// pkid's to fill (the organisation's legal name, VN), so only the others are listed.
    pub fn csrattrs(&self, label: &EstLabel) -> Result<Vec<u8>, EstError> {
        use const_oid::db::rfc4519::{C, O};
        let profile = self.profile(label)?;
        let p = &profile.profile;
        let subject: Vec<_> = p
            .required_subject
            .iter()
            .filter(|o| **o != O && **o != C)
            .copied()
            .collect();
        pkid_protocols::est::csr_attrs(&subject, &p.allowed_keys)
            .map_err(|e| EstError::Internal(e.to_string()))
    }

    /// Whether a password matches a stored credential, through the cache of verified ones.
    fn password_matches(&self, cred: &crate::store::CredentialRecord, password: &str) -> bool {
        let key = sha256(&[
            &cred.id.to_be_bytes(),
            cred.organisation.as_bytes(),
            cred.name.as_bytes(),
            &cred.secret,
            password.as_bytes(),
        ]);
        if let Some(c) = &self.verified {
            if c.contains_key(&key) {
                return true;
            }
        }
        let ok = std::str::from_utf8(&cred.secret).is_ok_and(|phc| verify_password(password, phc));
        if ok {
            if let Some(c) = &self.verified {
                c.insert(key, ());
            }
        }
        ok
    }

    /// Who is calling, for `label`: the client certificate decides when it is valid and the
    /// organisation's; otherwise HTTP Basic. `renewing`: the certificate must be one the label
    /// issues (it is the one renewed).
    fn authenticate(
        &self,
        label: &EstLabel,
        caller: &Caller,
        renewing: bool,
    ) -> Result<Authenticated, EstError> {
        let org = self
            .store
            .organisation(&label.organisation)?
            .filter(|o| o.deleted_at.is_none())
            .ok_or_else(|| {
                EstError::Unavailable(format!(
                    "the label's organisation {:?} is not registered",
                    label.organisation
                ))
            })?;
        let mut cert_refusal = None;
        if let Some((serial, leaf)) = &caller.certificate {
            match self.store.certificate(serial)? {
                Some(rec) if rec.status != CertStatus::Valid => {
                    return Err(EstError::Forbidden(
                        "certificate_status",
                        format!("the client certificate is {}", rec.status.as_str()),
                    ))
                }
                Some(rec) if rec.not_after < self.authority.now() => {
                    return Err(EstError::Forbidden(
                        "certificate_expired",
                        "the client certificate has expired".into(),
                    ))
                }
                Some(rec) => {
                    let cert = Certificate::from_der(leaf)
                        .map_err(|e| EstError::Internal(e.to_string()))?;
                    let of_org = attributes(&cert.tbs_certificate.subject)
                        .iter()
                        .any(|(k, v)| k == "O" && v.as_deref() == Some(org.name.as_str()));
                    let fingerprint = sha256_plain(leaf);
                    let officer = !renewing
                        && self
                            .store
                            .operator_by_certificate(&fingerprint)?
                            .is_some_and(|op| {
                                op.role == Role::OrgOfficer
                                    && op.organisation.as_deref() == Some(org.id.as_str())
                            });
                    if officer || (of_org && rec.profile == label.profile) {
                        return Ok(Authenticated {
                            actor: format!("est:{}:cert:{serial}", label.name),
                            certificate: Some((rec, cert)),
                        });
                    }
                    cert_refusal = Some(format!(
                        "the client certificate {serial} is not one of organisation {:?} under profile {:?}",
                        org.id, label.profile
                    ));
                }
                None => {
                    cert_refusal = Some("the client certificate was not issued by pkid".into());
                }
            }
        }
        if renewing {
            return Err(EstError::Forbidden(
                "no_certificate",
                cert_refusal.unwrap_or_else(|| {
                    "simplereenroll needs the certificate being renewed as the TLS client certificate"
                        .into()
                }),
            ));
        }
        match &caller.basic {
            Some((user, password)) => {
                let cred = self.store.credential(&org.id, CredentialKind::Est, user)?;
                if cred.is_none() {
                    // As slow as a wrong password, so that timing does not tell which user
                    // names exist.
                    let _ = verify_password(password, dummy_phc());
                }
                match cred {
                    Some(c) if self.password_matches(&c, password) => Ok(Authenticated {
                        actor: format!("est:{}:{user}", label.name),
                        certificate: None,
                    }),
                    _ => Err(EstError::Unauthenticated(
                        "bad_credentials",
                        "the user name or password is wrong".into(),
                    )),
                }
            }
            None => match cert_refusal {
                Some(r) => Err(EstError::Forbidden("certificate_not_entitled", r)),
                None => Err(EstError::Unauthenticated(
                    "unauthenticated",
                    "authentication required: HTTP Basic or a client certificate".into(),
                )),
            },
        }
    }

    fn verify_csr(&self, label: &EstLabel, der: &[u8]) -> Result<VerifiedCsr, EstError> {
        let csr = csr::verify(der).map_err(|e| EstError::BadRequest("bad_csr", e.to_string()))?;
        let profile = self.profile(label)?;
        let p = &profile.profile;
        if !p.allows_key(csr.key_type) {
            return Err(EstError::BadRequest(
                "key_type",
                format!(
                    "a {} key is not allowed by profile {:?} (allowed: {})",
                    key_name(csr.key_type),
                    label.profile,
                    p.allowed_keys
                        .iter()
                        .map(|k| key_name(*k))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(csr)
    }

    /// The subject pkid issues for a CSR subject under `label`: `CN` (required) and at most one
    /// `OU` from the request, `O` = the organisation's legal name, `C` = VN. An `O` or `C` in
    /// the request must be those; any other attribute is refused. Returns (CN, OU, RFC 4514).
    fn subject_for(
        &self,
        label: &EstLabel,
        subject: &Name,
    ) -> Result<(String, Option<String>, String), EstError> {
        let org = self
            .store
            .organisation(&label.organisation)?
            .ok_or_else(|| EstError::Unavailable("the label's organisation is gone".into()))?;
        let (mut cn, mut ou) = (None, None);
        for (k, v) in attributes(subject) {
            let v = v.ok_or_else(|| {
                EstError::BadRequest("subject", format!("subject {k}: not a string value"))
            })?;
            match k.as_str() {
                "CN" if cn.is_none() => cn = Some(v),
                "OU" if ou.is_none() => ou = Some(v),
                "O" if v == org.name => {}
                "O" => {
                    return Err(EstError::Forbidden(
                        "subject",
                        format!(
                            "subject O={v:?}: organisation {:?} is registered as {:?}",
                            org.id, org.name
                        ),
                    ))
                }
                "C" if v == "VN" => {}
                "C" => {
                    return Err(EstError::Forbidden(
                        "subject",
                        format!("subject C={v:?}: certificates are issued with C=VN"),
                    ))
                }
                other => {
                    return Err(EstError::BadRequest(
                        "subject",
                        format!("subject attribute {other} is not accepted (CN, OU, O, C)"),
                    ))
                }
            }
        }
        let cn =
            cn.ok_or_else(|| EstError::BadRequest("subject", "the subject needs a CN".into()))?;
        let mut dn = format!("CN={}", escape(&cn));
        if let Some(u) = &ou {
            dn.push_str(&format!(",OU={}", escape(u)));
        }
        dn.push_str(&format!(",O={},C=VN", escape(&org.name)));
        Ok((cn, ou, dn))
    }

    fn check_not_paused(&self, issuer: &str) -> Result<(), EstError> {
        match self.store.active_pause(issuer)? {
            Some(p) => Err(EstError::Unavailable(format!(
                "issuance by {issuer} is paused: {}",
                p.reason
            ))),
            None => Ok(()),
        }
    }

    /// `simpleenroll`.
    pub fn enroll(
        &self,
        label: &EstLabel,
        caller: &Caller,
        body: &[u8],
    ) -> Result<Enrolled, EstError> {
        let who = self.authenticate(label, caller, false)?;
        let der = decode_body(body)?;
        let csr = self.verify_csr(label, &der)?;
        let asks = csr_asks(&der)?;
        let (cn, ou, subject) = self.subject_for(label, &csr.subject)?;
        match label.approval {
            Approval::Auto => {
                check_channel_binding(label, caller, &asks)?;
                self.check_not_paused(&label.issuer)?;
                let issued = self.ra.issue_as(
                    &der,
                    Some(&subject),
                    &label.profile,
                    Some(&label.issuer),
                    None,
                    &who.actor,
                )?;
                Ok(Enrolled::Issued(issued.der))
            }
            Approval::Operator => self.enroll_by_operator(label, &who, &der, cn, ou, || {
                check_channel_binding(label, caller, &asks)
            }),
        }
    }

    fn enroll_by_operator(
        &self,
        label: &EstLabel,
        who: &Authenticated,
        der: &[u8],
        cn: String,
        ou: Option<String>,
        bound: impl FnOnce() -> Result<(), EstError>,
    ) -> Result<Enrolled, EstError> {
        let hash = sha256_plain(der).to_vec();
        let retry_after = self.config.load().est.retry_after_secs;
        // One filing per CSR: a concurrent first request with the same CSR waits here, then
        // finds the request this one filed. (One daemon files EST requests; the store keeps
        // the first row for a CSR should another process ever race it.)
        let _filing = self.filing[usize::from(hash[0]) % FILING_STRIPES]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pending) = self.store.est_request(&hash)? {
            if pending.organisation != label.organisation {
                return Err(EstError::Forbidden(
                    "other_organisation",
                    "this CSR was filed by another organisation".into(),
                ));
            }
            let r = self
                .store
                .request(pending.request)?
                .ok_or_else(|| EstError::Internal("the RA request is gone".into()))?;
            return match r.state {
                RequestState::Fulfilled => {
                    let serial = r.issued_certificate.clone().unwrap_or_default();
                    let rec = self.store.certificate(&serial)?.ok_or_else(|| {
                        EstError::Internal(format!("issued certificate {serial} not found"))
                    })?;
                    rec.der.map(Enrolled::Issued).ok_or_else(|| {
                        EstError::Internal(format!("certificate {serial} was never stored"))
                    })
                }
                RequestState::Rejected => {
                    let reason = self
                        .store
                        .request_events(r.id)?
                        .into_iter()
                        .rev()
                        .find(|e| e.to == RequestState::Rejected)
                        .and_then(|e| e.reason)
                        .unwrap_or_else(|| "no reason given".into());
                    Err(EstError::Forbidden(
                        "rejected",
                        format!("request {} was rejected: {}", r.id, one_line(&reason)),
                    ))
                }
                _ => Ok(Enrolled::Pending {
                    request: r.id,
                    retry_after,
                }),
            };
        }
        // The channel binding is checked when the request is filed: a retry repeats the CSR,
        // which names the connection it was made on, and may come over a new one.
        bound()?;
        let now = self.authority.now();
        let org = self
            .store
            .organisation(&label.organisation)?
            .ok_or_else(|| EstError::Unavailable("the label's organisation is gone".into()))?;
        let id = crate::ra::desk::file_machine_request(
            self.store.as_ref(),
            &self.calendar.load(),
            self.config.load().ra.working_days,
            now,
            crate::ra::desk::MachineFiling {
                org: &org,
                profile: &label.profile,
                issuer: &label.issuer,
                csr_der: der,
                replaces: None,
                name: cn,
                unit: ou,
                actor: &who.actor,
                via: format!(
                    "est-label={} (the client authenticated as the organisation's)",
                    label.name
                ),
            },
        )?;
        self.store.record_est_request(&EstRequest {
            csr_sha256: hash,
            label: label.name.clone(),
            organisation: org.id,
            request: id,
        })?;
        Ok(Enrolled::Pending {
            request: id,
            retry_after,
        })
    }

    /// `simplereenroll`: renews (same key) or rekeys (new key) the client certificate, keeping
    /// its subject and subjectAltName unless the label allows a change.
    pub fn reenroll(
        &self,
        label: &EstLabel,
        caller: &Caller,
        body: &[u8],
    ) -> Result<Vec<u8>, EstError> {
        let who = self.authenticate(label, caller, true)?;
        let (rec, cert) = who
            .certificate
            .ok_or_else(|| EstError::Internal("renewal without a certificate".into()))?;
        let der = decode_body(body)?;
        let csr = self.verify_csr(label, &der)?;
        check_channel_binding(label, caller, &csr_asks(&der)?)?;
        let tbs = &cert.tbs_certificate;
        // Compared as issued: the request's subject through the label's rules (O and C are
        // pkid's to fill), against the certificate's.
        let (_, _, dn) = self.subject_for(label, &csr.subject)?;
        let derived = pkid_protocols::name::parse(&dn)
            .map_err(|e| EstError::BadRequest("subject", e.to_string()))?;
        let same_subject = derived.to_string() == tbs.subject.to_string();
        let old_san = tbs
            .get::<SubjectAltName>()
            .ok()
            .flatten()
            .map(|(_, s)| s.to_der().unwrap_or_default());
        let new_san = csr
            .subject_alt_name
            .as_ref()
            .map(|s| s.to_der().unwrap_or_default());
        let same_san = new_san.is_none() || new_san == old_san;
        if !(label.allow_subject_change || same_subject && same_san) {
            return Err(EstError::BadRequest(
                "subject_change",
                if same_subject {
                    "the subjectAltName differs from the certificate being renewed".into()
                } else {
                    format!(
                        "the subject {derived} differs from the certificate being renewed ({})",
                        tbs.subject
                    )
                },
            ));
        }
        self.check_not_paused(&rec.issuer)?;
        let issued = if !(same_subject && same_san) {
            self.ra
                .modify(&rec.serial, Some(&dn), Some(&der), None, &who.actor)?
        } else if csr.public_key == tbs.subject_public_key_info {
            self.ra.renew(&rec.serial, None, &who.actor)?
        } else {
            self.ra.rekey(&rec.serial, &der, None, &who.actor)?
        };
        Ok(issued.der)
    }
}

/// The private key of a `serverkeygen` reply (RFC 7030 §4.4.2).
pub enum ServerKey {
    /// PKCS#8 DER, protected by TLS alone; wiped from memory when dropped.
    Pkcs8(zeroize::Zeroizing<Vec<u8>>),
    /// CMS EnvelopedData (DER) of the key package signed by the EST server (SignedData),
    /// encrypted to the key the client named.
    Enveloped(Vec<u8>),
}

/// A key pair pkid generated and the certificate issued for it (`serverkeygen`).
pub struct KeyAndCertificate {
    /// The private key.
    pub key: ServerKey,
    /// The certificate, DER (stored).
    pub certificate: Vec<u8>,
}

impl Est {
    /// `serverkeygen` (RFC 7030 §4.4): pkid generates the key pair (software, in memory, never
    /// stored or logged), issues the certificate for the CSR's subject, and hands both back.
    /// Refused for profiles whose keys sign with non-repudiation (a person's signing key must
    /// exist only with its holder) and on labels an operator approves (the key would have to
    /// wait in the server).
    pub fn serverkeygen(
        &self,
        label: &EstLabel,
        caller: &Caller,
        body: &[u8],
    ) -> Result<KeyAndCertificate, EstError> {
        let who = self.authenticate(label, caller, false)?;
        let profile = self.profile(label)?;
        let p = &profile.profile;
        if p.key_usage.non_repudiation() {
            return Err(EstError::Forbidden(
                "non_repudiation",
                KeygenError::NonRepudiation(label.profile.clone()).to_string(),
            ));
        }
        if label.approval == Approval::Operator {
            return Err(EstError::Forbidden(
                "approval",
                "serverkeygen is not offered on a label an operator approves".into(),
            ));
        }
        let der = decode_body(body)?;
        let req = csr::verify(&der).map_err(|e| EstError::BadRequest("bad_csr", e.to_string()))?;
        let asks = csr_asks(&der)?;
        check_channel_binding(label, caller, &asks)?;
        let (_, _, subject) = self.subject_for(label, &req.subject)?;
        let recipient = self.decrypt_key_recipient(caller, &asks)?;
        let server_key = match (&recipient, &self.server_key) {
            (None, _) => None,
            (Some(_), Some(k)) => Some(k),
            (Some(_), None) => return Err(EstError::Unavailable(
                "the EST server's key, which signs an encrypted key, is not loaded; retry later"
                    .into(),
            )),
        };
        let sealer = match (label.escrow, &self.sealer) {
            (false, _) => None,
            (true, Some(s)) => Some(s.clone()),
            (true, None) => {
                return Err(EstError::Unavailable(
                    "the data key that seals escrowed keys does not open; retry later".into(),
                ))
            }
        };
        let internal = |e: &dyn std::fmt::Display| EstError::Internal(format!("serverkeygen: {e}"));
        let generated =
            keygen::generate(p, &label.profile, None, self.keys.as_ref()).map_err(|e| match e {
                KeygenError::NoKeyType(_) => EstError::BadRequest("key_type", e.to_string()),
                other => internal(&other),
            })?;
        let pkcs8 = generated.pkcs8.clone();
        let (signer, spki) = (&generated.signer, generated.public_key.clone());
        // A request for the new key, signed by it, carrying the client's attributes (its
        // subjectAltName): the CA's one issuance path checks it like any other.
        // Not the attributes addressed to the EST server (challengePassword, the decrypt-key
        // identifiers): they are about this exchange, not the certificate.
        let client = x509_cert::request::CertReq::from_der(&der).map_err(|e| internal(&e))?;
        let mut attributes = der::asn1::SetOfVec::new();
        for a in client.info.attributes.into_vec() {
            if a.oid != CHALLENGE_PASSWORD
                && a.oid != ASYMM_DECRYPT_KEY_ID
                && a.oid != const_oid::db::rfc5911::ID_AA_DECRYPT_KEY_ID
            {
                attributes.insert(a).map_err(|e| internal(&e))?;
            }
        }
        let info = x509_cert::request::CertReqInfo {
            version: x509_cert::request::Version::V1,
            subject: client.info.subject,
            public_key: spki,
            attributes,
        };
        let tbs = info.to_der().map_err(|e| internal(&e))?;
        let signature = signer.sign(&tbs).map_err(|e| internal(&e))?;
        let own = x509_cert::request::CertReq {
            info,
            algorithm: signer.algorithm().identifier(),
            signature: der::asn1::BitString::from_bytes(signature.as_ref())
                .map_err(|e| internal(&e))?,
        }
        .to_der()
        .map_err(|e| internal(&e))?;
        // Enveloped before the certificate is issued: a recipient pkid cannot encrypt to is
        // refused without a certificate left behind.
        let key = match (&recipient, server_key) {
            (Some(cert), Some(server)) => {
                // RFC 7030 §4.4.2: the key package signed by its maker, then encrypted.
                let package = envelope::key_package(&pkcs8).map_err(|e| internal(&e))?;
                let unsigned = pkid_protocols::est::key_package_to_sign(
                    &package,
                    &server.certificate,
                    &server.chain,
                    server.signer.algorithm(),
                )
                .map_err(|e| internal(&e))?;
                let signed = zeroize::Zeroizing::new(
                    crate::keys::sign(server.signer.as_ref(), unsigned)
                        .map_err(|e| internal(&e))?,
                );
                ServerKey::Enveloped(envelope::signed_key_package_for(cert, &signed).map_err(
                    |e| match e {
                        envelope::EnvelopeError::UnsupportedRecipient(m) => {
                            EstError::BadRequest("recipient", m)
                        }
                        other => internal(&other),
                    },
                )?)
            }
            _ => ServerKey::Pkcs8(pkcs8.clone()),
        };
        self.check_not_paused(&label.issuer)?;
        let actor = format!("{} (serverkeygen)", who.actor);
        let issued = self.ra.issue_as(
            &own,
            Some(&subject),
            &label.profile,
            Some(&label.issuer),
            None,
            &actor,
        )?;
        if let Some(sealer) = sealer {
            // Kept before anyone receives it; a key that cannot be kept takes its certificate
            // with it (a certificate of an escrow label always has its key in escrow).
            if let Err(e) = self.escrow(sealer.as_ref(), label, &actor, &issued.serial, &pkcs8) {
                let withdrawn = self.ra.revoke(
                    &issued.serial,
                    pkid_protocols::revocation::CrlReason::CessationOfOperation,
                    None,
                    &format!("{actor}: its key could not be escrowed"),
                );
                if let Err(w) = withdrawn {
                    tracing::error!(serial = %issued.serial, error = %w, "EST: a certificate whose key could not be escrowed is not revoked");
                }
                return Err(e);
            }
        }
        Ok(KeyAndCertificate {
            key,
            certificate: issued.der,
        })
    }

    /// The certificate whose key a `serverkeygen` CSR names to encrypt the new key to
    /// (RFC 7030 §4.4.1.2): the TLS client certificate, matched by its key identifier.
    /// `None`: no encryption asked (the key travels inside TLS alone).
    fn decrypt_key_recipient(
        &self,
        caller: &Caller,
        asks: &CsrAsks,
    ) -> Result<Option<Certificate>, EstError> {
        if asks.symmetric_key {
            return Err(EstError::BadRequest(
                "decrypt_key",
                "a DecryptKeyIdentifier names a symmetric key, and pkid shares none with clients; name the key of your TLS client certificate with an AsymmetricDecryptKeyIdentifier (RFC 7030 section 4.4.1.2)".into(),
            ));
        }
        let Some(id) = &asks.asymmetric_key else {
            return Ok(None);
        };
        let presented = caller
            .certificate
            .as_ref()
            .and_then(|(_, der)| Certificate::from_der(der).ok());
        match presented {
            Some(c) if envelope::key_identifier(&c) == *id => Ok(Some(c)),
            Some(_) => Err(EstError::BadRequest(
                "decrypt_key",
                format!(
                    "the AsymmetricDecryptKeyIdentifier {} is not the key of the TLS client certificate presented",
                    hex::encode(id)
                ),
            )),
            None => Err(EstError::BadRequest(
                "decrypt_key",
                format!(
                    "the AsymmetricDecryptKeyIdentifier {} names a key pkid cannot see: present its certificate as the TLS client certificate",
                    hex::encode(id)
                ),
            )),
        }
    }

    /// Seals the new key under the data key and stores it with its certificate, audited.
    fn escrow(
        &self,
        sealer: &dyn DataSealer,
        label: &EstLabel,
        actor: &str,
        serial: &str,
        pkcs8: &[u8],
    ) -> Result<(), EstError> {
        keygen::escrow(
            self.store.as_ref(),
            sealer,
            serial,
            pkcs8,
            keygen::EscrowOf {
                organisation: &label.organisation,
                origin: format!("est:{}", label.name),
                actor,
                detail: format!(
                    "serverkeygen on label {}: the private key sealed under the data key",
                    label.name
                ),
                now: self.authority.now(),
            },
        )
        .map_err(|e| EstError::Unavailable(e.to_string()))
    }
}

/// An Argon2id hash of no password anyone knows, verified against when the user does not exist.
fn dummy_phc() -> &'static str {
    static PHC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PHC.get_or_init(|| {
        let mut b = [0u8; 24];
        let _ = aws_lc_rs::rand::fill(&mut b);
        crate::ra::credentials::hash_password(&hex::encode(b)).unwrap_or_default()
    })
}

fn sha256_plain(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

fn key_name(k: pkid_protocols::algorithm::KeyType) -> String {
    use pkid_protocols::algorithm::KeyType;
    match k {
        KeyType::EcP256 => "P-256".into(),
        KeyType::EcP384 => "P-384".into(),
        KeyType::Rsa(bits) => format!("RSA-{bits}"),
    }
}

/// A reason fit for one header-safe line: control characters replaced, at most 300 chars.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_base64_with_any_whitespace_and_optional_armour() {
        let wrapped = b"TUlJ\r\nQkFB\n  \n";
        assert_eq!(decode_body(wrapped).expect("decodes"), b"MIIBAA");
        let armoured =
            b"-----BEGIN CERTIFICATE REQUEST-----\nTUlJ\n-----END CERTIFICATE REQUEST-----\n";
        assert_eq!(decode_body(armoured).expect("decodes"), b"MII");
        assert_eq!(
            decode_body(b"!!!").expect_err("refused").reason(),
            "bad_base64"
        );
        assert_eq!(
            decode_body(&[0x30, 0x82, 1, 2])
                .expect_err("refused")
                .reason(),
            "bad_base64"
        );
        assert_eq!(decode_body(b" \n").expect_err("refused").reason(), "empty");
        let big = vec![b'A'; MAX_BODY_BYTES + 1];
        assert_eq!(
            decode_body(&big).expect_err("refused").reason(),
            "too_large"
        );
    }

    #[test]
    fn escaping_follows_rfc_4514() {
        assert_eq!(escape("Sở Y tế, Đà Nẵng"), "Sở Y tế\\, Đà Nẵng");
        assert_eq!(escape("#1"), "\\#1");
    }
}
