//! The CMP server (RFC 9810, lightweight profile RFC 9483): who may ask under a label, what a
//! certificate request becomes, and the transactions that carry it. The HTTP binding (RFC 9811)
//! is [`http`]; the messages are parsed, MAC-checked and built in `pkid_protocols::cmp`.
//!
//! ```text
//! PKIMessage ─▶ parse (pure) ─▶ label (issuer, profile, organisation, protection)
//!   ─▶ authenticate: PBM or PBMAC1 with the organisation's shared secret named by senderKID
//!      (`pkid credential add --kind cmp`, stored sealed, opened per message), or a signature
//!      by the certificate at extraCerts[0]: stored by pkid byte for byte, valid, O = the
//!      organisation's legal name
//!   ─▶ messageTime within the window
//!   ─▶ ir / cr / p10cr: transactionID new (else transactionIdInUse) ─▶ POP (badPOP) ─▶ key type
//!      of the profile ─▶ subject: CN [, OU], O = the organisation's legal name, C = VN
//!      ─▶ Authority::sign_certificate (stored and audited) ─▶ ip / cp; caPubs = the root
//!      (MAC only), extraCerts = the chain; implicitConfirm granted when asked and allowed
//!      approval = "operator": an RA request keeps the PKCS#10 / CRMF request ─▶ waiting ─▶
//!      pollReq … pollRep until an officer decides ─▶ ip / cp / kup, or a rejection
//!      central_keygen: no key in the template ─▶ `keygen` makes it ─▶ privateKey =
//!      EnvelopedData to the signer's certificate ⊃ SignedData by the CMP responder
//!   ─▶ kur (signed by the certificate being updated) ─▶ POP ─▶ RA rekey: the new certificate
//!      committed with the old one superseded ─▶ kup
//!   ─▶ rr (issuer + serial, reason) ─▶ the organisation's own certificate ─▶ RA revoke ─▶ rp
//!   ─▶ certConf: recipNonce = our last senderNonce, certHash of the certificate;
//!      accepted ─▶ confirmed; rejected ─▶ revoked ─▶ pkiConf
//! a certificate not confirmed within confirm_timeout_secs is revoked (checked as messages come)
//! every answer is protected like its request: MAC with the same secret, or signed by the
//!   label's issuer's CMP responder (`datadir::cmp_responder`); a refusal is an `error`
//!   PKIMessage with its PKIFailureInfo bit and a status string, unprotected only when the
//!   request's protection did not verify
//! ```

pub mod http;

use crate::ca::{Authority, CaError, Issuance};
use crate::config::{Approval, CmpLabel, Config};
use crate::datadir::cmp_responder::CmpResponder;
use crate::keys::seal::DataSealer;
use crate::ra::RegistrationAuthority;
use crate::store::cmp::{CmpState, CmpTransaction};
use crate::store::credentials::cmp_seal_context;
use crate::store::{AuditEntry, CredentialKind, Outcome, Store, StoreError};
use der::asn1::Int;
use der::Decode;
use pkid_protocols::cmp::{
    self as proto, CmpError, FailureBit, Pbm, Request, RequestBody, ResponseBody, ResponseHeader,
    ResponseProtection,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;
use x509_cert::Certificate;

/// Seconds between two looks for certificates whose certConf never came.
const EXPIRY_SWEEP_SECS: u64 = 10;

/// A refusal: the failure bit, the status string (never a secret), whether it may be
/// MAC-protected (the request's MAC verified), and the metric label.
#[derive(Debug)]
pub struct Refusal {
    /// The PKIFailureInfo bit.
    pub bit: FailureBit,
    /// The status string.
    pub text: String,
}

impl Refusal {
    fn new(bit: FailureBit, text: impl Into<String>) -> Self {
        Self {
            bit,
            text: text.into(),
        }
    }

    /// The metric label of this refusal: the bit's ASN.1 name.
    pub fn reason(&self) -> &'static str {
        bit_name(self.bit)
    }
}

/// The ASN.1 name of a failure bit. No `_` arm on purpose.
pub fn bit_name(bit: FailureBit) -> &'static str {
    match bit {
        FailureBit::BadAlg => "badAlg",
        FailureBit::BadMessageCheck => "badMessageCheck",
        FailureBit::BadRequest => "badRequest",
        FailureBit::BadTime => "badTime",
        FailureBit::BadCertId => "badCertId",
        FailureBit::BadDataFormat => "badDataFormat",
        FailureBit::WrongAuthority => "wrongAuthority",
        FailureBit::IncorrectData => "incorrectData",
        FailureBit::BadPop => "badPOP",
        FailureBit::CertRevoked => "certRevoked",
        FailureBit::CertConfirmed => "certConfirmed",
        FailureBit::WrongIntegrity => "wrongIntegrity",
        FailureBit::BadRecipientNonce => "badRecipientNonce",
        FailureBit::BadCertTemplate => "badCertTemplate",
        FailureBit::SignerNotTrusted => "signerNotTrusted",
        FailureBit::TransactionIdInUse => "transactionIdInUse",
        FailureBit::UnsupportedVersion => "unsupportedVersion",
        FailureBit::NotAuthorized => "notAuthorized",
        FailureBit::SystemUnavail => "systemUnavail",
        FailureBit::SystemFailure => "systemFailure",
        FailureBit::BadSenderNonce => "badSenderNonce",
    }
}

impl From<CmpError> for Refusal {
    fn from(e: CmpError) -> Self {
        Self::new(e.failure_bit(), e.to_string())
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "CMP: store");
        Self::new(FailureBit::SystemUnavail, "store unavailable; retry later")
    }
}

impl From<CaError> for Refusal {
    fn from(e: CaError) -> Self {
        match e {
            CaError::Refused(m) => Self::new(FailureBit::BadCertTemplate, m),
            CaError::NotFound(m) => Self::new(FailureBit::BadCertId, format!("no certificate {m}")),
            CaError::Conflict(m) => Self::new(FailureBit::BadRequest, m),
            CaError::Unavailable(m) => Self::new(FailureBit::SystemUnavail, m),
            CaError::Internal(m) => {
                tracing::error!(error = %m, "CMP: CA");
                Self::new(FailureBit::SystemFailure, "internal error")
            }
        }
    }
}

/// The answer to one message: DER, the body type it answered, and the outcome label.
#[derive(Debug)]
pub struct Answer {
    /// The response PKIMessage.
    pub der: Vec<u8>,
    /// The request's body type.
    pub body: &'static str,
    /// `answered`, or the failure bit's name.
    pub outcome: &'static str,
    /// The refusal's text, for the log.
    pub refusal: Option<String>,
    /// Whether a certificate was issued or revoked (the status view must catch up before the
    /// answer).
    pub issued: bool,
    /// The answers to the messages a `nested` message carried, in order (their `der` is
    /// inside this answer's).
    pub inner: Vec<Answer>,
}

/// A verified MAC: the parameters and secret the response is protected with.
struct MacKey {
    pbm: Pbm,
    secret: zeroize::Zeroizing<Vec<u8>>,
}

/// How a verified message was protected, and so how its answer is.
enum Protection {
    /// PBM with the organisation's secret: the answer is MAC-protected with it.
    Mac(Box<MacKey>),
    /// Signed with a valid certificate pkid issued to the organisation (`extraCerts[0]`): the
    /// answer is signed by the label's issuer's CMP responder.
    Signed {
        /// The protecting certificate.
        certificate: Box<Certificate>,
    },
}

/// Who sent a verified message.
struct Sender {
    organisation: String,
    /// For the audit log.
    actor: String,
    /// The credential name (senderKID) or `cert:SERIAL`: the transaction's sender.
    kid: String,
    protection: Protection,
    /// Whether the message is signed by an RA the label trusts (`trusted_ras`): it may nest
    /// other messages, and its requests' raVerified stands for proof of possession.
    vouched: bool,
}

impl Sender {
    /// The protecting certificate of a signed message.
    fn certificate(&self) -> Option<&Certificate> {
        match &self.protection {
            Protection::Signed { certificate } => Some(certificate),
            Protection::Mac(_) => None,
        }
    }
}

/// The organisation (O) a certificate's subject names.
fn organisation_of(name: &Name) -> Option<String> {
    attribute(name, const_oid::db::rfc4519::O)
}

/// The first `oid` attribute of a name, as text.
fn attribute(name: &Name, oid: const_oid::ObjectIdentifier) -> Option<String> {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == oid)
        .and_then(|atv| attr_text(&atv.value))
}

/// `certReqId` -1, which a p10cr's answer carries (RFC 9483 §4.1.4).
fn minus_one() -> Result<Int, Refusal> {
    Int::new(&[0xff]).map_err(|e| Refusal::new(FailureBit::SystemFailure, e.to_string()))
}

/// A certificate request that waits for an operator: what the RA request keeps, and how the
/// client is answered.
struct Held {
    /// The PKCS#10 (p10cr) or the CRMF request as `proto::held_request` keeps it.
    request: Vec<u8>,
    /// The subscriber's name and unit.
    cn: String,
    ou: Option<String>,
    /// kur: the certificate being updated.
    replaces: Option<String>,
    /// The answer's body: 1 ip, 3 cp, 8 kup.
    tag: u8,
    cert_req_id: Int,
}

/// The canonical hex serial of a certificate.
fn serial_hex(cert: &Certificate) -> String {
    pkid_protocols::serial::canonical_hex(&hex::encode(
        cert.tbs_certificate.serial_number.as_bytes(),
    ))
    .unwrap_or_default()
}

/// What a message became, before it is encoded.
struct Step {
    body: ResponseBody,
    extra_certs: Vec<Certificate>,
    /// Whether a certificate was issued.
    issued: bool,
    /// The senderNonce the transaction row recorded (the next message must echo it).
    nonce: Option<[u8; proto::NONCE_BYTES]>,
}

/// The CMP server over one CA.
pub struct Cmp {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    authority: Arc<Authority>,
    ra: RegistrationAuthority,
    sealer: Option<Arc<dyn DataSealer>>,
    crl: Option<Arc<crate::crl::CrlService>>,
    /// The desk's calendar once [`Self::with_calendar`] hands it over (a copy loaded at
    /// start before that, or without a desk).
    calendar: crate::ra::desk::LiveCalendar,
    last_sweep: AtomicU64,
    responders: Option<Arc<Responders>>,
}

/// The CMP responders of the issuers, loaded (or made: `datadir::cmp_responder`) on first use.
pub struct Responders {
    data: std::path::PathBuf,
    authority: Arc<Authority>,
    keys: Arc<dyn crate::keys::KeyBackend>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Each issuer's responder and when its certificate was last found current.
    loaded: std::sync::Mutex<std::collections::HashMap<String, (Arc<CmpResponder>, u64)>>,
}

/// Seconds a loaded responder certificate is used before its status and validity are looked
/// at again.
const RESPONDER_RECHECK_SECS: u64 = 60;

impl Responders {
    /// The responders of the data directory `data`, their keys in `keys`.
    pub fn new(
        data: &std::path::Path,
        authority: Arc<Authority>,
        keys: Arc<dyn crate::keys::KeyBackend>,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Self {
        Self {
            data: data.to_path_buf(),
            authority,
            keys,
            metrics,
            loaded: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The key backend: it holds the responders' keys and makes central keys.
    pub fn keys(&self) -> &dyn crate::keys::KeyBackend {
        self.keys.as_ref()
    }

    /// Loads (or makes) every issuer's responder now, so that a data directory made before
    /// CMP signed its answers has them after its first start. A failure is logged; the first
    /// signed request for that issuer tries again.
    pub fn prepare(&self) {
        for issuer in self.authority.issuers() {
            if issuer.name == crate::config::ROOT {
                continue;
            }
            if let Err(e) = self.get(&issuer.name) {
                tracing::error!(issuer = %issuer.name, error = %e, "CMP: no responder certificate; signed requests to this issuer will be refused");
            }
        }
    }

    /// The responder of `issuer`. A certificate revoked, put on hold or in the last third of
    /// its validity is replaced (same key) on the first call after it is noticed — within
    /// [`RESPONDER_RECHECK_SECS`].
    pub fn get(&self, issuer: &str) -> Result<Arc<CmpResponder>, String> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = self.authority.now();
        if let Some((r, checked)) = loaded.get_mut(issuer) {
            if now < *checked + RESPONDER_RECHECK_SECS {
                return Ok(r.clone());
            }
            if crate::datadir::cmp_responder::current(&self.authority, &r.certificate, now) {
                *checked = now;
                return Ok(r.clone());
            }
            tracing::warn!(issuer = %issuer, "CMP: the responder certificate is revoked, on hold or near its end; issuing a new one");
        }
        let i = self
            .authority
            .issuer(issuer)
            .ok_or_else(|| format!("issuer {issuer:?} is not loaded"))?;
        let r = Arc::new(
            crate::datadir::cmp_responder::cmp_responder(
                &self.data,
                &self.authority,
                self.keys.as_ref(),
                &i,
                self.metrics.as_ref(),
                "pkid",
            )
            .map_err(|e| e.to_string())?,
        );
        loaded.insert(issuer.to_owned(), (r.clone(), now));
        Ok(r)
    }
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

/// A status string fit for one line: control characters replaced, at most 300 chars.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

fn random<const N: usize>() -> Result<[u8; N], Refusal> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| Refusal::new(FailureBit::SystemFailure, "no randomness"))?;
    Ok(b)
}

impl Cmp {
    /// The CMP server of a daemon. `sealer` opens the organisations' shared secrets (without
    /// it every MAC-protected message is refused with systemUnavail); `crl` answers
    /// crlStatusList (without it, that question gets systemUnavail).
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        authority: Arc<Authority>,
        sealer: Option<Arc<dyn DataSealer>>,
        crl: Option<Arc<crate::crl::CrlService>>,
    ) -> Self {
        let calendar = crate::ra::calendar::Calendar::load(&config.ra.calendar).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "CMP: the working-day calendar does not load; using the shipped one for deadlines");
            crate::ra::calendar::Calendar::shipped()
        });
        Self {
            calendar: Arc::new(arc_swap::ArcSwap::from_pointee(calendar)),
            ra: RegistrationAuthority::new(authority.clone()),
            config,
            store,
            authority,
            sealer,
            crl,
            last_sweep: AtomicU64::new(0),
            responders: None,
        }
    }

    /// Files machine requests with the desk's calendar, which follows reloads.
    pub fn with_calendar(mut self, calendar: crate::ra::desk::LiveCalendar) -> Self {
        self.calendar = calendar;
        self
    }

    /// Serves signature protection: signed requests are answered signed by `responders`
    /// (without them a signed request is refused with wrongIntegrity).
    pub fn with_responders(mut self, responders: Arc<Responders>) -> Self {
        self.responders = Some(responders);
        self
    }

    /// Answers one message (DER) that came to `label` (`None`: the default label). Always a
    /// PKIMessage: a refusal is an `error` message, protected when the request's MAC verified.
    pub fn handle(&self, label: Option<&str>, der: &[u8]) -> Answer {
        let now = self.authority.now();
        self.sweep(now);
        self.answer(label, der, true, now)
    }

    /// One message: the top-level one (`outer`), or one nested in it (which may not nest again).
    fn answer(&self, label: Option<&str>, der: &[u8], outer: bool, now: u64) -> Answer {
        let req = match proto::parse_request(der) {
            Ok(r) => r,
            Err(e) => return self.refuse(None, None, None, Refusal::from(e), "unparsed"),
        };
        let body = req.body.name();
        let Some(label) = self.config.cmp.label(label) else {
            let r = Refusal::new(
                FailureBit::WrongAuthority,
                match label {
                    Some(n) => format!("no CMP label {:?}", one_line(n)),
                    None => {
                        "no default CMP label is configured; use /.well-known/cmp/p/{label}".into()
                    }
                },
            );
            return self.refuse(None, Some(&req), None, r, body);
        };
        let sender = match self.authenticate(label, &req, now) {
            Ok(s) => s,
            Err(r) => return self.refuse(Some(label), Some(&req), None, r, body),
        };
        let window = self.config.cmp.message_time_window_secs;
        if let Err(e) = req.check_time(now, window) {
            return self.refuse(Some(label), Some(&req), Some(&sender), e.into(), body);
        }
        if let (RequestBody::Nested(inner), true) = (&req.body, outer) {
            return self.nested(label, &req, &sender, inner, now);
        }
        let result = match &req.body {
            RequestBody::Ir(msgs) => self.certify(label, &req, &sender, msgs, 1, now),
            RequestBody::Cr(msgs) => self.certify(label, &req, &sender, msgs, 3, now),
            RequestBody::P10cr(csr) => self.certify_p10(label, &req, &sender, csr, now),
            RequestBody::CertConf(statuses) => self.confirm(label, &req, &sender, statuses, now),
            RequestBody::Kur(msgs) => self.update(label, &req, &sender, msgs, now),
            RequestBody::Rr(content) => self.revoke(label, &req, &sender, content, now),
            RequestBody::Genm(itavs) => self.general(label, itavs),
            RequestBody::PollReq(ids) => self.poll(label, &req, &sender, ids, now),
            RequestBody::Error => self.client_error(&req, &sender, now),
            RequestBody::Nested(_) => Err(Refusal::new(
                FailureBit::BadRequest,
                "a nested message inside a nested message; send one level",
            )),
            RequestBody::Other(n) => Err(Refusal::new(
                FailureBit::BadRequest,
                format!("PKIBody [{n}] is not a request this server answers"),
            )),
            _ => Err(Refusal::new(FailureBit::BadRequest, "unsupported body")),
        };
        match result {
            Ok(step) => {
                let issued = step.issued;
                match self.encode(label, &req, &sender, step, now) {
                    Ok(der) => Answer {
                        der,
                        body,
                        outcome: "answered",
                        refusal: None,
                        issued,
                        inner: Vec::new(),
                    },
                    Err(r) => self.refuse(Some(label), Some(&req), Some(&sender), r, body),
                }
            }
            Err(r) => self.refuse(Some(label), Some(&req), Some(&sender), r, body),
        }
    }

    /// A `nested` message from an RA the label trusts (RFC 9483 §5.2.2): each inner message
    /// is answered as if it had come alone — with its own protection, transaction and failure
    /// bits — and the answers go back in order in a `nested` reply signed by the responder.
    /// Only an RA's signature may nest: a MAC-protected or subscriber-signed outer message is
    /// notAuthorized.
    fn nested(
        &self,
        label: &CmpLabel,
        req: &Request,
        sender: &Sender,
        inner: &[Vec<u8>],
        now: u64,
    ) -> Answer {
        if !sender.vouched {
            let r = Refusal::new(
                FailureBit::NotAuthorized,
                "nested messages are accepted only signed by an RA this label trusts (trusted_ras)",
            );
            return self.refuse(Some(label), Some(req), Some(sender), r, "nested");
        }
        let mut answers: Vec<Answer> = inner
            .iter()
            .map(|m| self.answer(Some(&label.name), m, false, now))
            .collect();
        let issued = answers.iter().any(|a| a.issued);
        let encoded = if answers.iter().any(|a| a.der.is_empty()) {
            Err(Refusal::new(
                FailureBit::SystemFailure,
                "an inner answer could not be encoded",
            ))
        } else {
            let step = Step {
                body: ResponseBody::Nested(
                    answers
                        .iter_mut()
                        .map(|a| std::mem::take(&mut a.der))
                        .collect(),
                ),
                extra_certs: Vec::new(),
                issued,
                nonce: None,
            };
            self.encode(label, req, sender, step, now)
        };
        let mut answer = match encoded {
            Ok(der) => Answer {
                der,
                body: "nested",
                outcome: "answered",
                refusal: None,
                issued,
                inner: Vec::new(),
            },
            Err(r) => self.refuse(Some(label), Some(req), Some(sender), r, "nested"),
        };
        answer.issued = issued;
        answer.inner = answers;
        answer
    }

    /// Verifies the request's protection: PBM with the organisation's secret named by
    /// senderKID, or a signature by a certificate pkid issued to the organisation.
    /// The label's organisation, refused (systemUnavail) once it is not registered or deleted.
    fn label_organisation(
        &self,
        label: &CmpLabel,
    ) -> Result<crate::store::ra::Organisation, Refusal> {
        self.store
            .organisation(&label.organisation)?
            .filter(|o| o.deleted_at.is_none())
            .ok_or_else(|| {
                Refusal::new(
                    FailureBit::SystemUnavail,
                    format!(
                        "the label's organisation {:?} is not registered",
                        label.organisation
                    ),
                )
            })
    }

    fn authenticate(&self, label: &CmpLabel, req: &Request, now: u64) -> Result<Sender, Refusal> {
        if req.protection.is_none() || req.protection_alg.is_none() {
            return Err(Refusal::new(
                FailureBit::BadMessageCheck,
                "the message is not protected; protect it with the organisation's shared secret or sign it",
            ));
        }
        if !req.is_mac_protected() {
            if !label.signature {
                return Err(Refusal::new(
                    FailureBit::WrongIntegrity,
                    "this label accepts only MAC (shared-secret) protection",
                ));
            }
            return self.authenticate_signed(label, req, now);
        }
        if !label.mac {
            return Err(Refusal::new(
                FailureBit::WrongIntegrity,
                "this label accepts only signature protection",
            ));
        }
        let pbm = req.pbm()?;
        let kid = req
            .sender_kid
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
            .filter(|k| !k.is_empty() && k.len() <= 64)
            .ok_or_else(|| {
                Refusal::new(
                    FailureBit::BadRequest,
                    "MAC protection needs senderKID: the name of the organisation's CMP credential",
                )
            })?
            .to_owned();
        let bad = || Refusal::from(CmpError::BadMac);
        let org = self.label_organisation(label)?;
        let Some(cred) = self.store.credential(&org.id, CredentialKind::Cmp, &kid)? else {
            // Costs the same as a wrong secret, so that timing does not tell which names exist.
            let _ = req.verify_mac(&pbm, b"");
            return Err(bad());
        };
        let sealer = self
            .sealer
            .as_ref()
            .ok_or_else(|| Refusal::new(FailureBit::SystemUnavail, "the data key is not loaded"))?;
        let secret = sealer
            .open(&cred.secret, cmp_seal_context(&org.id, &kid).as_bytes())
            .map_err(|e| {
                tracing::error!(error = %e, credential = %kid, "CMP: a shared secret does not open");
                Refusal::new(FailureBit::SystemFailure, "the credential cannot be read")
            })?;
        req.verify_mac(&pbm, &secret).map_err(|_| bad())?;
        let salt = random::<16>()?;
        Ok(Sender {
            actor: format!("cmp:{}:{kid}", label.name),
            organisation: org.id,
            kid,
            protection: Protection::Mac(Box::new(MacKey {
                pbm: pbm.with_salt(&salt)?,
                secret,
            })),
            vouched: false,
        })
    }

    /// Signature protection (RFC 9483 §3.2): the protecting certificate at `extraCerts[0]`
    /// must be one pkid stored (byte for byte: that is what makes it pkid's, whatever chain
    /// follows it), the signature must verify with its key, the sender must be its subject,
    /// it must be valid now (the store's status, which every revocation commits to before it
    /// is announced) and name the label's organisation as O. A certificate superseded by a
    /// kur may still confirm (certConf) or end (error) the transaction it opened.
    fn authenticate_signed(
        &self,
        label: &CmpLabel,
        req: &Request,
        now: u64,
    ) -> Result<Sender, Refusal> {
        use crate::store::CertStatus;
        let leaf = req.extra_certs.first().ok_or_else(|| {
            Refusal::new(
                FailureBit::BadMessageCheck,
                "a signed message carries its protecting certificate at extraCerts[0]; there is none",
            )
        })?;
        let der = der::Encode::to_der(leaf)
            .map_err(|e| Refusal::new(FailureBit::BadDataFormat, e.to_string()))?;
        if !label.trusted_ras.is_empty() {
            let fingerprint: [u8; 32] = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der)
                .as_ref()
                .try_into()
                .map_err(|_| Refusal::new(FailureBit::SystemFailure, "SHA-256"))?;
            if label.trusted_ras.contains(&fingerprint) {
                return self.authenticate_ra(label, req, leaf, &der, &fingerprint, now);
            }
        }
        let serial = serial_hex(leaf);
        let rec = self
            .store
            .certificate(&serial)?
            .filter(|r| r.der.as_deref() == Some(der.as_slice()) && r.issuer != crate::config::ROOT)
            .ok_or_else(|| {
                Refusal::new(
                    FailureBit::SignerNotTrusted,
                    "the certificate at extraCerts[0] was not issued by this CA",
                )
            })?;
        req.verify_signature(&leaf.tbs_certificate.subject_public_key_info)?;
        if req.sender != GeneralName::DirectoryName(leaf.tbs_certificate.subject.clone()) {
            return Err(Refusal::new(
                FailureBit::BadMessageCheck,
                "the header's sender is not the subject of the protecting certificate",
            ));
        }
        let kid = format!("cert:{serial}");
        let org = self.label_organisation(label)?;
        if organisation_of(&leaf.tbs_certificate.subject).as_deref() != Some(org.name.as_str()) {
            return Err(Refusal::new(
                FailureBit::NotAuthorized,
                format!(
                    "certificate {serial} is not one of organisation {:?}, which this label serves",
                    org.id
                ),
            ));
        }
        let finishing_own = || -> Result<bool, Refusal> {
            let follow_up = matches!(
                req.body,
                RequestBody::CertConf(_) | RequestBody::PollReq(_) | RequestBody::Error
            );
            let superseded = rec.reason == Some(pkid_protocols::revocation::CrlReason::Superseded);
            Ok(follow_up
                && superseded
                && self
                    .store
                    .cmp_transaction(&req.transaction_id)?
                    .is_some_and(|t| t.sender == kid && t.organisation == org.id))
        };
        if rec.status != CertStatus::Valid && !finishing_own()? {
            return Err(Refusal::new(
                FailureBit::NotAuthorized,
                format!(
                    "the protecting certificate {serial} is {}",
                    rec.status.as_str()
                ),
            ));
        }
        if rec.not_after < now {
            return Err(Refusal::new(
                FailureBit::NotAuthorized,
                format!("the protecting certificate {serial} has expired"),
            ));
        }
        if self.responders.is_none() {
            return Err(Refusal::new(
                FailureBit::WrongIntegrity,
                "signed messages are not answered here (no CMP responder); use the organisation's shared secret",
            ));
        }
        Ok(Sender {
            actor: format!("cmp:{}:cert:{serial}", label.name),
            organisation: org.id,
            kid,
            protection: Protection::Signed {
                certificate: Box::new(leaf.clone()),
            },
            vouched: false,
        })
    }

    /// A message signed by an RA the label trusts (RFC 9483 §5.2): the certificate at
    /// `extraCerts[0]` is one of the label's `trusted_ras` (pinned by SHA-256 fingerprint,
    /// whoever issued it), the signature verifies with its key, the sender is its subject, and
    /// it is within its validity period — and not revoked, when pkid issued it. The RA acts for
    /// the label's organisation.
    fn authenticate_ra(
        &self,
        label: &CmpLabel,
        req: &Request,
        leaf: &Certificate,
        der: &[u8],
        fingerprint: &[u8; 32],
        now: u64,
    ) -> Result<Sender, Refusal> {
        use crate::store::CertStatus;
        req.verify_signature(&leaf.tbs_certificate.subject_public_key_info)?;
        if req.sender != GeneralName::DirectoryName(leaf.tbs_certificate.subject.clone()) {
            return Err(Refusal::new(
                FailureBit::BadMessageCheck,
                "the header's sender is not the subject of the RA certificate",
            ));
        }
        let id = hex::encode(&fingerprint[..8]);
        let validity = &leaf.tbs_certificate.validity;
        if now < validity.not_before.to_unix_duration().as_secs()
            || now > validity.not_after.to_unix_duration().as_secs()
        {
            return Err(Refusal::new(
                FailureBit::NotAuthorized,
                format!("the RA certificate {id}… is outside its validity period"),
            ));
        }
        if let Some(rec) = self
            .store
            .certificate(&serial_hex(leaf))?
            .filter(|r| r.der.as_deref() == Some(der))
        {
            if rec.status != CertStatus::Valid {
                return Err(Refusal::new(
                    FailureBit::NotAuthorized,
                    format!("the RA certificate {id}… is {}", rec.status.as_str()),
                ));
            }
        }
        if self.responders.is_none() {
            return Err(Refusal::new(
                FailureBit::WrongIntegrity,
                "signed messages are not answered here (no CMP responder)",
            ));
        }
        let org = self.label_organisation(label)?;
        Ok(Sender {
            actor: format!("cmp:{}:ra:{id}", label.name),
            organisation: org.id,
            kid: format!("ra:{}", hex::encode(fingerprint)),
            protection: Protection::Signed {
                certificate: Box::new(leaf.clone()),
            },
            vouched: true,
        })
    }

    /// The subject pkid issues for a requested subject under `label`: `CN` (required) and at
    /// most one `OU` from the request, `O` = the organisation's legal name, `C` = VN.
    fn subject_for(
        &self,
        label: &CmpLabel,
        subject: Option<&Name>,
    ) -> Result<(String, Option<String>, Name), Refusal> {
        use const_oid::db::rfc4519::{C, CN, O, OU};
        let org = self.label_organisation(label)?;
        let (mut cn, mut ou) = (None, None);
        let template = |m: String| Refusal::new(FailureBit::BadCertTemplate, m);
        for rdn in subject.map(|s| s.0.iter()).into_iter().flatten() {
            for atv in rdn.0.iter() {
                let v = attr_text(&atv.value)
                    .ok_or_else(|| template(format!("subject {}: not a string value", atv.oid)))?;
                match atv.oid {
                    o if o == CN && cn.is_none() => cn = Some(v),
                    o if o == OU && ou.is_none() => ou = Some(v),
                    o if o == O && v == org.name => {}
                    o if o == O => {
                        return Err(Refusal::new(
                            FailureBit::NotAuthorized,
                            format!(
                                "subject O={v:?}: organisation {:?} is registered as {:?}",
                                org.id, org.name
                            ),
                        ))
                    }
                    o if o == C && v == "VN" => {}
                    o if o == C => {
                        return Err(template(format!(
                            "subject C={v:?}: certificates are issued with C=VN"
                        )))
                    }
                    o => {
                        return Err(template(format!(
                            "subject attribute {o} is not accepted (CN, OU, O, C)"
                        )))
                    }
                }
            }
        }
        let cn = cn.ok_or_else(|| template("the subject needs a CN".into()))?;
        let mut dn = format!("CN={}", escape(&cn));
        if let Some(u) = &ou {
            dn.push_str(&format!(",OU={}", escape(u)));
        }
        dn.push_str(&format!(",O={},C=VN", escape(&org.name)));
        let name = pkid_protocols::name::parse(&dn).map_err(|e| template(e.to_string()))?;
        Ok((cn, ou, name))
    }

    /// Opens a transaction for a new request; transactionIdInUse if the ID was seen.
    fn begin(
        &self,
        label: &CmpLabel,
        req: &Request,
        sender: &Sender,
        now: u64,
    ) -> Result<CmpTransaction, Refusal> {
        let t = CmpTransaction {
            transaction_id: req.transaction_id.clone(),
            label: label.name.clone(),
            organisation: sender.organisation.clone(),
            sender: sender.kid.clone(),
            state: CmpState::Waiting,
            request: None,
            serial: None,
            cert_hash: None,
            client_nonce: req.sender_nonce.clone(),
            server_nonce: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        if !self.store.begin_cmp_transaction(&t)? {
            return Err(Refusal::new(
                FailureBit::TransactionIdInUse,
                "this transactionID is in use; start a new transaction with a fresh one",
            ));
        }
        Ok(t)
    }

    /// Ends a transaction that was refused.
    fn fail(&self, t: &CmpTransaction, actor: &str, why: &Refusal, now: u64) {
        let mut failed = t.clone();
        failed.state = CmpState::Failed;
        failed.updated_at = now;
        let audit = AuditEntry {
            at: now,
            actor: actor.to_owned(),
            action: "cmp.transaction".into(),
            target: hex::encode(&t.transaction_id),
            outcome: Outcome::Refused,
            detail: format!("state=failed {}: {}", why.reason(), one_line(&why.text)),
        };
        if let Err(e) =
            self.store
                .advance_cmp_transaction(&failed, t.state, &t.client_nonce, &audit)
        {
            tracing::error!(error = %e, "CMP: could not close a refused transaction");
        }
    }

    fn check_not_paused(&self, issuer: &str) -> Result<(), Refusal> {
        match self.store.active_pause(issuer)? {
            Some(p) => Err(Refusal::new(
                FailureBit::SystemUnavail,
                format!("issuance by {issuer} is paused: {}", one_line(&p.reason)),
            )),
            None => Ok(()),
        }
    }

    /// The issuer's chain, issuer first, up to its root.
    fn chain(&self, label: &CmpLabel) -> Result<Vec<Certificate>, Refusal> {
        let mut chain = Vec::new();
        let mut next = self.authority.issuer(&label.issuer);
        if next.is_none() {
            return Err(Refusal::new(
                FailureBit::SystemUnavail,
                format!("the label's issuer {:?} is not loaded", label.issuer),
            ));
        }
        while let Some(i) = next {
            chain.push(i.certificate.clone());
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
        Ok(chain)
    }

    /// ir / cr: one CertReqMsg with signature POP.
    fn certify(
        &self,
        label: &CmpLabel,
        req: &Request,
        sender: &Sender,
        msgs: &[crmf::request::CertReqMsg],
        tag: u8,
        now: u64,
    ) -> Result<Step, Refusal> {
        let t = self.begin(label, req, sender, now)?;
        let run = || {
            let [msg] = msgs else {
                return Err(Refusal::new(
                    FailureBit::BadRequest,
                    format!(
                        "{} certificate requests in one message; RFC 9483 section 4.1.1 allows one",
                        msgs.len()
                    ),
                ));
            };
            if let Some(central) = proto::central_key_request(msg)? {
                return self.central_keygen(label, sender, central).map(Ok);
            }
            let verified = if sender.vouched {
                proto::verify_cert_request_vouched(msg)?
            } else {
                proto::verify_cert_request(msg)?
            };
            if sender.vouched
                && label.approval == Approval::Operator
                && matches!(msg.popo, Some(crmf::pop::ProofOfPossession::RaVerified(_)))
            {
                return Err(Refusal::new(
                    FailureBit::BadPop,
                    "raVerified is taken only under labels with approval = \"auto\": a request held for an operator is checked again at approval, by its own signature; send the subscriber's signature POP",
                ));
            }
            let (cn, ou, subject) = self.subject_for(label, verified.subject.as_ref())?;
            if label.approval == Approval::Operator {
                self.check_key_type(label, &verified.public_key)?;
                let filing = Held {
                    request: proto::held_request(if tag == 1 { 0 } else { 2 }, msg)?,
                    cn,
                    ou,
                    replaces: None,
                    tag,
                    cert_req_id: verified.cert_req_id,
                };
                return self
                    .await_operator(label, sender, &t, filing, now)
                    .map(|waiting| Err(Box::new(waiting)));
            }
            self.issue(
                label,
                sender,
                subject,
                verified.public_key,
                verified.subject_alt_name,
            )
            .map(|der| Ok((der, verified.cert_req_id, None)))
        };
        match run() {
            Ok(Ok((der, id, key))) => {
                self.deliver_with_key(label, req, sender, t, der, id, tag, key, now)
            }
            Ok(Err(waiting)) => Ok(*waiting),
            Err(r) => {
                self.fail(&t, &sender.actor, &r, now);
                Err(r)
            }
        }
    }

    /// p10cr: a PKCS#10 request (its own signature is the POP); answered with cp, certReqId -1.
    fn certify_p10(
        &self,
        label: &CmpLabel,
        req: &Request,
        sender: &Sender,
        csr_der: &[u8],
        now: u64,
    ) -> Result<Step, Refusal> {
        use pkid_protocols::algorithm::AlgorithmError;
        use pkid_protocols::csr::CsrError;
        let t = self.begin(label, req, sender, now)?;
        let run = || {
            let csr = pkid_protocols::csr::verify(csr_der).map_err(|e| match e {
                CsrError::Algorithm(AlgorithmError::BadSignature) => {
                    Refusal::new(FailureBit::BadPop, format!("proof of possession: {e}"))
                }
                other => Refusal::new(FailureBit::BadDataFormat, other.to_string()),
            })?;
            let (cn, ou, subject) = self.subject_for(label, Some(&csr.subject))?;
            if label.approval == Approval::Operator {
                let filing = Held {
                    request: csr_der.to_vec(),
                    cn,
                    ou,
                    replaces: None,
                    tag: 3,
                    cert_req_id: minus_one()?,
                };
                return self.await_operator(label, sender, &t, filing, now).map(Err);
            }
            self.issue(label, sender, subject, csr.public_key, csr.subject_alt_name)
                .map(Ok)
        };
        match run() {
            Ok(Ok(der)) => self.deliver(label, req, sender, t, der, minus_one()?, 3, now),
            Ok(Err(waiting)) => Ok(waiting),
            Err(r) => {
                self.fail(&t, &sender.actor, &r, now);
                Err(r)
            }
        }
    }

    /// Central key generation (RFC 9483 §4.1.6) for an ir / cr without a key: pkid makes the
    /// key pair (`keygen`), encloses the key in a SignedData signed by the issuer's CMP
    /// responder (the key generation authority) inside an EnvelopedData to the certificate
    /// that signed the request, issues the certificate, escrows the key when the label asks,
    /// and returns the certificate DER, the certReqId and the envelope.
    #[allow(clippy::type_complexity)]
    fn central_keygen(
        &self,
        label: &CmpLabel,
        sender: &Sender,
        asked: proto::CentralKeyRequest,
    ) -> Result<(Vec<u8>, Int, Option<cms::enveloped_data::EnvelopedData>), Refusal> {
        use crate::keygen::{self, envelope, KeygenError};
        use pkid_protocols::algorithm::KeyType;
        let template = |m: String| Refusal::new(FailureBit::BadCertTemplate, m);
        if !label.central_keygen {
            return Err(template(format!(
                "the template has no publicKey, and label {:?} does not generate keys (central_keygen = false)",
                label.name
            )));
        }
        if label.approval == Approval::Operator {
            return Err(Refusal::new(
                FailureBit::BadRequest,
                "central key generation is not offered on a label an operator approves (the key would wait in the server)",
            ));
        }
        let sp = self.config.profile(&label.profile).ok_or_else(|| {
            Refusal::new(
                FailureBit::SystemFailure,
                format!("profile {} is gone", label.profile),
            )
        })?;
        let prefer = match &asked.algorithm {
            None => None,
            Some(a) if a.oid == const_oid::db::rfc5912::ID_EC_PUBLIC_KEY => {
                match a
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<const_oid::ObjectIdentifier>().ok())
                {
                    Some(c) if c == const_oid::db::rfc5912::SECP_256_R_1 => Some(KeyType::EcP256),
                    Some(c) if c == const_oid::db::rfc5912::SECP_384_R_1 => Some(KeyType::EcP384),
                    None => None,
                    Some(c) => {
                        return Err(template(format!(
                            "pkid generates P-256 and P-384 keys, not curve {c}"
                        )))
                    }
                }
            }
            // The template names the algorithm only; the profile decides the size.
            Some(a) if a.oid == const_oid::db::rfc5912::RSA_ENCRYPTION => Some(KeyType::Rsa(2048)),
            Some(a) => {
                return Err(template(format!(
                    "pkid generates EC (P-256, P-384) and RSA keys, not {}",
                    a.oid
                )))
            }
        };
        let (_, _, subject) = self.subject_for(label, asked.subject.as_ref())?;
        let unavailable = |m: String| Refusal::new(FailureBit::SystemUnavail, m);
        let responders = self
            .responders
            .as_ref()
            .ok_or_else(|| unavailable("no CMP responder".into()))?;
        let responder = responders.get(&label.issuer).map_err(unavailable)?;
        let generated = keygen::generate(&sp.profile, &label.profile, prefer, responders.keys())
            .map_err(|e| match e {
                KeygenError::NonRepudiation(_) => {
                    Refusal::new(FailureBit::NotAuthorized, e.to_string())
                }
                KeygenError::NoKeyType(_) => template(e.to_string()),
                KeygenError::Escrow => Refusal::new(FailureBit::SystemUnavail, e.to_string()),
                KeygenError::Failed(_) => Refusal::new(FailureBit::SystemFailure, e.to_string()),
            })?;
        // Enveloped before the certificate is issued: a recipient key pkid cannot encrypt to
        // is refused without a certificate left behind.
        let package = envelope::key_package(&generated.pkcs8)
            .map_err(|e| Refusal::new(FailureBit::SystemFailure, e.to_string()))?;
        let sign = |m: &[u8]| responder.signer.sign(m).map_err(|e| e.to_string());
        let signed = proto::signed_key_package(
            &package,
            &responder.certificate,
            &self.chain(label)?,
            responder.signer.algorithm().identifier(),
            &sign,
        )?;
        // RFC 9483 §4.1.6: to the protecting certificate's key (key transport or agreement),
        // or, for a MAC-protected request, under the shared secret (§4.1.6.3, password-based).
        let content = const_oid::db::rfc5911::ID_SIGNED_DATA;
        let enveloped = match &sender.protection {
            Protection::Signed { certificate } => {
                envelope::enveloped_data(certificate, content, &signed)
            }
            Protection::Mac(mac) => {
                envelope::enveloped_data_for_password(&mac.secret, content, &signed)
            }
        }
        .map_err(|e| match e {
            envelope::EnvelopeError::UnsupportedRecipient(m) => Refusal::new(
                FailureBit::BadRequest,
                format!("the protecting certificate cannot receive the key: {m}"),
            ),
            other => Refusal::new(FailureBit::SystemFailure, other.to_string()),
        })?;
        let der = self.issue(
            label,
            sender,
            subject,
            generated.public_key.clone(),
            asked.subject_alt_name,
        )?;
        if label.escrow {
            let serial = Certificate::from_der(&der)
                .map(|c| serial_hex(&c))
                .map_err(|e| Refusal::new(FailureBit::SystemFailure, e.to_string()))?;
            let kept = match &self.sealer {
                Some(sealer) => keygen::escrow(
                    self.store.as_ref(),
                    sealer.as_ref(),
                    &serial,
                    &generated.pkcs8,
                    keygen::EscrowOf {
                        organisation: &sender.organisation,
                        origin: format!("cmp:{}", label.name),
                        actor: &sender.actor,
                        detail: format!(
                            "central key generation on CMP label {}: the private key sealed under the data key",
                            label.name
                        ),
                        now: self.authority.now(),
                    },
                ),
                None => Err(KeygenError::Escrow),
            };
            if let Err(e) = kept {
                // A certificate of an escrow label always has its key in escrow.
                if let Err(w) = self.ra.revoke(
                    &serial,
                    pkid_protocols::revocation::CrlReason::CessationOfOperation,
                    None,
                    &format!("{}: its key could not be escrowed", sender.actor),
                ) {
                    tracing::error!(serial = %serial, error = %w, "CMP: a certificate whose key could not be escrowed is not revoked");
                }
                return Err(Refusal::new(FailureBit::SystemUnavail, e.to_string()));
            }
        }
        Ok((der, asked.cert_req_id, Some(enveloped)))
    }

    /// The label's profile allows this key type (else badCertTemplate).
    fn check_key_type(
        &self,
        label: &CmpLabel,
        public_key: &spki::SubjectPublicKeyInfoOwned,
    ) -> Result<(), Refusal> {
        let sp = self.config.profile(&label.profile).ok_or_else(|| {
            Refusal::new(
                FailureBit::SystemFailure,
                format!("profile {} is gone", label.profile),
            )
        })?;
        let key_type = pkid_protocols::algorithm::KeyType::of(public_key)
            .map_err(|e| Refusal::new(FailureBit::BadCertTemplate, e.to_string()))?;
        if !sp.profile.allows_key(key_type) {
            return Err(Refusal::new(
                FailureBit::BadCertTemplate,
                format!(
                    "a {} key is not allowed by profile {:?}",
                    key_type.name(),
                    label.profile
                ),
            ));
        }
        Ok(())
    }

    /// Signs and stores the certificate (the CA audits it).
    fn issue(
        &self,
        label: &CmpLabel,
        sender: &Sender,
        subject: Name,
        public_key: spki::SubjectPublicKeyInfoOwned,
        subject_alt_name: Option<x509_cert::ext::pkix::SubjectAltName>,
    ) -> Result<Vec<u8>, Refusal> {
        let sp = self.config.profile(&label.profile).ok_or_else(|| {
            Refusal::new(
                FailureBit::SystemFailure,
                format!("profile {} is gone", label.profile),
            )
        })?;
        self.check_key_type(label, &public_key)?;
        self.check_not_paused(&label.issuer)?;
        let issuer = self.authority.issuer(&label.issuer).ok_or_else(|| {
            Refusal::new(
                FailureBit::SystemUnavail,
                format!("the label's issuer {:?} is not loaded", label.issuer),
            )
        })?;
        let issued = self.authority.audited(
            &sender.actor,
            "cert.issue",
            &label.profile,
            || {
                self.authority.sign_certificate(
                    issuer.signing(),
                    Issuance {
                        profile: &sp.profile,
                        profile_name: &label.profile,
                        subject,
                        public_key,
                        days: sp.default_validity_days,
                        subject_alt_name,
                        replaces: None,
                    },
                )
            },
            |i| format!("serial={} cmp-label={}", i.serial, label.name),
        )?;
        Ok(issued.der)
    }

    /// Records the issued certificate in the transaction (confirmed at once when implicit
    /// confirmation is granted) and builds the ip/cp.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &self,
        label: &CmpLabel,
        req: &Request,
        sender: &Sender,
        t: CmpTransaction,
        der: Vec<u8>,
        cert_req_id: Int,
        tag: u8,
        now: u64,
    ) -> Result<Step, Refusal> {
        self.deliver_with_key(label, req, sender, t, der, cert_req_id, tag, None, now)
    }

    /// As [`Cmp::deliver`], the ip / cp carrying the centrally generated key `key`.
    #[allow(clippy::too_many_arguments)]
    fn deliver_with_key(
        &self,
        label: &CmpLabel,
        req: &Request,
        sender: &Sender,
        t: CmpTransaction,
        der: Vec<u8>,
        cert_req_id: Int,
        tag: u8,
        key: Option<cms::enveloped_data::EnvelopedData>,
        now: u64,
    ) -> Result<Step, Refusal> {
        let cert = Certificate::from_der(&der)
            .map_err(|e| Refusal::new(FailureBit::SystemFailure, e.to_string()))?;
        let serial = pkid_protocols::serial::canonical_hex(&hex::encode(
            cert.tbs_certificate.serial_number.as_bytes(),
        ))
        .unwrap_or_default();
        let implicit = self.grants_implicit_confirm(label, req);
        let mut next = t.clone();
        next.state = if implicit {
            CmpState::Confirmed
        } else {
            CmpState::Issued
        };
        next.serial = Some(serial.clone());
        next.cert_hash = Some(proto::cert_hash(&der, None)?);
        next.server_nonce = Vec::new();
        next.updated_at = now;
        // The nonce this response will carry is drawn in `encode`; the row keeps the one the
        // certConf must echo, so it is drawn here and passed on.
        let nonce = random::<{ proto::NONCE_BYTES }>()?;
        next.server_nonce = nonce.to_vec();
        let audit = AuditEntry {
            at: now,
            actor: sender.actor.clone(),
            action: "cmp.transaction".into(),
            target: hex::encode(&t.transaction_id),
            outcome: Outcome::Success,
            detail: format!(
                "state={} serial={serial} label={}",
                next.state.as_str(),
                label.name
            ),
        };
        if !self
            .store
            .advance_cmp_transaction(&next, t.state, &t.client_nonce, &audit)?
        {
            return Err(Refusal::new(
                FailureBit::TransactionIdInUse,
                "another message of this transaction was answered first",
            ));
        }
        let chain = self.chain(label)?;
        // caPubs lets a client trust on first use after MAC-protected enrollment (RFC 9483
        // §4.1.1); a client that signed already trusts the CA.
        let ca_pubs = matches!(sender.protection, Protection::Mac(_))
            .then(|| chain.last().cloned().into_iter().collect::<Vec<_>>());
        Ok(Step {
            body: ResponseBody::issued_with_key(tag, cert_req_id, cert, ca_pubs, key),
            extra_certs: chain,
            issued: true,
            nonce: Some(nonce),
        })
    }

    /// kur (RFC 9483 §4.1.3): signed with the certificate being updated; a new key with its
    /// POP, the subject kept. The new certificate is committed with the old one revoked as
    /// superseded (the RA's rekey, as EST's simplereenroll and the desk's rekey do), then kup,
    /// certConf / pkiConf as for ir.
    fn update(
        &self,
        label: &CmpLabel,
        req: &Request,
        sender: &Sender,
        msgs: &[crmf::request::CertReqMsg],
        now: u64,
    ) -> Result<Step, Refusal> {
        let Some(old) = sender.certificate() else {
            return Err(Refusal::new(
                FailureBit::WrongIntegrity,
                "kur must be signed with the certificate being updated (RFC 9483 section 4.1.3), not MAC-protected",
            ));
        };
        if sender.vouched {
            return Err(Refusal::new(
                FailureBit::NotAuthorized,
                "kur must be signed with the certificate being updated (RFC 9483 section 4.1.3); an RA forwards the subscriber's signed kur nested",
            ));
        }
        let t = self.begin(label, req, sender, now)?;
        let run = || {
            let [msg] = msgs else {
                return Err(Refusal::new(
                    FailureBit::BadRequest,
                    format!(
                        "{} certificate requests in one kur; RFC 9483 section 4.1.3 allows one",
                        msgs.len()
                    ),
                ));
            };
            let serial = serial_hex(old);
            if let Some(id) = proto::old_cert_id(msg)? {
                let same_issuer = matches!(&id.issuer, GeneralName::DirectoryName(n)
                    if *n == old.tbs_certificate.issuer);
                if !same_issuer
                    || id.serial_number.as_bytes() != old.tbs_certificate.serial_number.as_bytes()
                {
                    return Err(Refusal::new(
                        FailureBit::BadCertId,
                        "oldCertID names another certificate than the one that signed the kur",
                    ));
                }
            }
            let verified = proto::verify_cert_request(msg)?;
            if let Some(subject) = &verified.subject {
                if subject.to_string() != old.tbs_certificate.subject.to_string() {
                    return Err(Refusal::new(
                        FailureBit::BadCertTemplate,
                        "a kur keeps the subject of the certificate being updated",
                    ));
                }
            }
            if verified.public_key == old.tbs_certificate.subject_public_key_info {
                return Err(Refusal::new(
                    FailureBit::BadCertTemplate,
                    "a kur brings a new key; this is the key of the certificate being updated",
                ));
            }
            let rec = self.store.certificate(&serial)?.ok_or_else(|| {
                Refusal::new(FailureBit::BadCertId, format!("no certificate {serial}"))
            })?;
            if rec.profile != label.profile {
                return Err(Refusal::new(
                    FailureBit::NotAuthorized,
                    format!(
                        "certificate {serial} was issued under profile {:?}; this label manages {:?}",
                        rec.profile, label.profile
                    ),
                ));
            }
            self.check_not_paused(&rec.issuer)?;
            let key_type = pkid_protocols::algorithm::KeyType::of(&verified.public_key)
                .map_err(|e| Refusal::new(FailureBit::BadCertTemplate, e.to_string()))?;
            if label.approval == Approval::Operator {
                self.check_key_type(label, &verified.public_key)?;
                let subject = &old.tbs_certificate.subject;
                let filing = Held {
                    request: proto::held_request(7, msg)?,
                    cn: attribute(subject, const_oid::db::rfc4519::CN).unwrap_or_default(),
                    ou: attribute(subject, const_oid::db::rfc4519::OU),
                    replaces: Some(serial),
                    tag: 8,
                    cert_req_id: verified.cert_req_id,
                };
                return self.await_operator(label, sender, &t, filing, now).map(Err);
            }
            let issued = self.ra.rekey_with(
                &serial,
                || {
                    Ok(pkid_protocols::csr::VerifiedCsr {
                        subject: old.tbs_certificate.subject.clone(),
                        public_key: verified.public_key.clone(),
                        key_type,
                        subject_alt_name: verified.subject_alt_name.clone(),
                    })
                },
                None,
                &format!("{} (kur)", sender.actor),
            )?;
            Ok(Ok((issued.der, verified.cert_req_id)))
        };
        match run() {
            Ok(Ok((der, id))) => self.deliver(label, req, sender, t, der, id, 8, now),
            Ok(Err(waiting)) => Ok(waiting),
            Err(r) => {
                self.fail(&t, &sender.actor, &r, now);
                Err(r)
            }
        }
    }

    /// rr (RFC 9483 §4.2): the certificate by issuer and serial, with a reason; only one of
    /// the label's organisation (a cross-tenant rr is notAuthorized), revoked through the RA
    /// (audited, the status view updated before the rp goes out).
    fn revoke(
        &self,
        label: &CmpLabel,
        req: &Request,
        sender: &Sender,
        content: &cmpv2::rev::RevReqContent,
        now: u64,
    ) -> Result<Step, Refusal> {
        use crate::store::CertStatus;
        use pkid_protocols::revocation::{self, CrlReason};
        let asked = proto::revocation_asked(content)?;
        let t = self.begin(label, req, sender, now)?;
        let run = || {
            let issuer = self
                .authority
                .issuers()
                .into_iter()
                .find(|i| i.certificate.tbs_certificate.subject == asked.issuer)
                .ok_or_else(|| {
                    Refusal::new(
                        FailureBit::BadCertId,
                        format!("issuer {} is not a CA of this server", asked.issuer),
                    )
                })?;
            let serial = pkid_protocols::serial::canonical_hex(&pkid_protocols::serial::to_hex(
                &asked.serial,
            ))
            .unwrap_or_default();
            let unknown = || {
                Refusal::new(
                    FailureBit::BadCertId,
                    format!("no certificate {serial} from {}", issuer.name),
                )
            };
            let rec = self
                .store
                .certificate(&serial)?
                .filter(|r| r.issuer == issuer.name)
                .ok_or_else(unknown)?;
            let cert = rec
                .der
                .as_deref()
                .and_then(|d| Certificate::from_der(d).ok())
                .ok_or_else(unknown)?;
            let org = self
                .store
                .organisation(&sender.organisation)?
                .ok_or_else(|| {
                    Refusal::new(
                        FailureBit::SystemUnavail,
                        "the label's organisation is gone",
                    )
                })?;
            if organisation_of(&cert.tbs_certificate.subject).as_deref() != Some(org.name.as_str())
            {
                return Err(Refusal::new(
                    FailureBit::NotAuthorized,
                    format!(
                        "certificate {serial} is not one of organisation {:?}",
                        org.id
                    ),
                ));
            }
            if rec.status == CertStatus::Revoked {
                return Err(Refusal::new(
                    FailureBit::CertRevoked,
                    format!("certificate {serial} is already revoked"),
                ));
            }
            let reason = asked.reason.unwrap_or(CrlReason::Unspecified);
            if matches!(
                reason,
                CrlReason::CertificateHold | CrlReason::RemoveFromCRL
            ) {
                return Err(Refusal::new(
                    FailureBit::BadRequest,
                    format!(
                        "reason {} is not offered over CMP; an RA officer suspends and releases certificates",
                        revocation::name(reason)
                    ),
                ));
            }
            self.ra.revoke(&serial, reason, None, &sender.actor)?;
            Ok((serial, reason))
        };
        match run() {
            Ok((serial, reason)) => {
                let mut next = t.clone();
                next.state = CmpState::Confirmed;
                next.serial = Some(serial.clone());
                next.updated_at = now;
                let audit = AuditEntry {
                    at: now,
                    actor: sender.actor.clone(),
                    action: "cmp.transaction".into(),
                    target: hex::encode(&t.transaction_id),
                    outcome: Outcome::Success,
                    detail: format!(
                        "state=confirmed serial={serial} revoked reason={} label={}",
                        revocation::name(reason),
                        label.name
                    ),
                };
                // The revocation is committed and audited; the row only records the answer.
                if let Err(e) =
                    self.store
                        .advance_cmp_transaction(&next, t.state, &t.client_nonce, &audit)
                {
                    tracing::error!(error = %e, "CMP: could not close an rr transaction");
                }
                Ok(Step {
                    body: ResponseBody::RevRep(vec![proto::StatusInfo {
                        status: proto::PkiStatus::Accepted,
                        status_string: None,
                        fail_info: None,
                    }]),
                    extra_certs: Vec::new(),
                    issued: true,
                    nonce: None,
                })
            }
            Err(r) => {
                self.fail(&t, &sender.actor, &r, now);
                Err(r)
            }
        }
    }

    fn grants_implicit_confirm(&self, label: &CmpLabel, req: &Request) -> bool {
        label.implicit_confirm && req.implicit_confirm
    }

    /// certConf: the certificate of the transaction confirmed or rejected (then revoked).
    fn confirm(
        &self,
        label: &CmpLabel,
        req: &Request,
        sender: &Sender,
        statuses: &[proto::CertStatus],
        now: u64,
    ) -> Result<Step, Refusal> {
        let t = self.continued(label, req, sender, "certConf")?;
        if t.state != CmpState::Issued {
            return Err(Refusal::new(
                FailureBit::CertConfirmed,
                format!(
                    "the transaction is {}; nothing waits for confirmation",
                    t.state.as_str()
                ),
            ));
        }
        let [status] = statuses else {
            return Err(Refusal::new(
                FailureBit::BadRequest,
                format!(
                    "{} CertStatus entries; one certificate was issued",
                    statuses.len()
                ),
            ));
        };
        let serial = t.serial.clone().unwrap_or_default();
        let rec = self.store.certificate(&serial)?.ok_or_else(|| {
            Refusal::new(
                FailureBit::SystemFailure,
                "the transaction's certificate is gone",
            )
        })?;
        let der = rec.der.unwrap_or_default();
        let want = proto::cert_hash(&der, status.hash_alg.as_ref())?;
        if status.cert_hash.as_bytes() != want.as_slice() {
            return Err(Refusal::new(
                FailureBit::BadCertId,
                "certHash is not the hash of the certificate issued in this transaction",
            ));
        }
        let rejected = status
            .status_info
            .as_ref()
            .is_some_and(|s| s.status == proto::PkiStatus::Rejection);
        let mut next = t.clone();
        next.state = if rejected {
            CmpState::Rejected
        } else {
            CmpState::Confirmed
        };
        next.client_nonce = req.sender_nonce.clone();
        let nonce = random::<{ proto::NONCE_BYTES }>()?;
        next.server_nonce = nonce.to_vec();
        next.updated_at = now;
        let why = status
            .status_info
            .as_ref()
            .and_then(|s| s.status_string.as_ref())
            .map(|s| one_line(&s.join(" ")))
            .unwrap_or_default();
        let audit = AuditEntry {
            at: now,
            actor: sender.actor.clone(),
            action: "cmp.transaction".into(),
            target: hex::encode(&t.transaction_id),
            outcome: Outcome::Success,
            detail: format!(
                "state={} serial={serial}{}",
                next.state.as_str(),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" client-said={why:?}")
                }
            ),
        };
        if !self
            .store
            .advance_cmp_transaction(&next, t.state, &t.client_nonce, &audit)?
        {
            return Err(Refusal::new(
                FailureBit::BadSenderNonce,
                "another message of this transaction was answered first",
            ));
        }
        if rejected {
            self.ra.revoke(
                &serial,
                pkid_protocols::revocation::CrlReason::CessationOfOperation,
                None,
                &format!("{} (rejected in certConf)", sender.actor),
            )?;
        }
        Ok(Step {
            body: ResponseBody::PkiConf,
            extra_certs: Vec::new(),
            issued: false,
            nonce: Some(nonce),
        })
    }

    /// genm (RFC 9483 §4.3): signKeyPairTypes, caCerts, rootCaCert, certReqTemplate and
    /// crlStatusList are answered; other infoTypes are left out of the genp (RFC 9810
    /// §5.3.19). Nothing changes, so no transaction is recorded.
    fn general(
        &self,
        label: &CmpLabel,
        itavs: &[cmpv2::gen::InfoTypeAndValue],
    ) -> Result<Step, Refusal> {
        use proto::{general_answer as answer, GeneralQuestion as Q};
        let p = &self
            .config
            .profile(&label.profile)
            .ok_or_else(|| {
                Refusal::new(
                    FailureBit::SystemFailure,
                    format!("profile {} is gone", label.profile),
                )
            })?
            .profile;
        let mut out = Vec::new();
        for q in proto::general_questions(itavs)? {
            match q {
                Q::SignKeyPairTypes => out.push(answer::sign_key_pair_types(&p.allowed_keys)?),
                Q::CaCerts => out.push(answer::ca_certs(&self.chain(label)?)?),
                // pkid has no root CA key update to announce (a new root is a new `pkid init`).
                Q::RootCaCert(_) => out.push(answer::no_root_ca_key_update()?),
                Q::CertReqTemplate => {
                    let org = self.label_organisation(label)?;
                    let subject =
                        pkid_protocols::name::parse(&format!("O={},C=VN", escape(&org.name)))
                            .map_err(|e| Refusal::new(FailureBit::SystemFailure, e.to_string()))?;
                    let only = match p.allowed_keys.as_slice() {
                        [one] => Some(*one),
                        _ => None,
                    };
                    out.push(answer::cert_req_template(subject, only)?);
                }
                Q::CrlStatusList(list) => out.push(answer::crls(&self.newer_crls(&list)?)?),
                Q::Other(_) => {}
                _ => {}
            }
        }
        Ok(Step {
            body: ResponseBody::Genp(out),
            extra_certs: Vec::new(),
            issued: false,
            nonce: None,
        })
    }

    /// The CRLs named in a crlStatusList that are newer than the client's.
    fn newer_crls(&self, list: &[proto::CrlStatus]) -> Result<Vec<Vec<u8>>, Refusal> {
        use x509_cert::ext::pkix::name::DistributionPointName;
        let service = self.crl.as_ref().ok_or_else(|| {
            Refusal::new(FailureBit::SystemUnavail, "CRL publication is not enabled")
        })?;
        let public_url = &self.config.server.public_url;
        let mut out = Vec::new();
        for status in list {
            let key = match &status.source {
                proto::CrlSource::Issuer(names) => {
                    let issuer = self.authority.issuers().into_iter().find(|i| {
                        names.iter().any(|n| {
                            matches!(n, GeneralName::DirectoryName(d)
                                if *d == i.certificate.tbs_certificate.subject)
                        })
                    });
                    issuer.map(|i| crate::crl::CrlKey::new(&i.name, None, false))
                }
                proto::CrlSource::Dpn(DistributionPointName::FullName(names)) => service
                    .published()
                    .into_iter()
                    .map(|(k, _)| k)
                    .find(|k| {
                        let url = crate::crl::crl_url(public_url, &k.issuer, k.shard, k.delta);
                        names.iter().any(|n| {
                            matches!(n, GeneralName::UniformResourceIdentifier(u) if u.as_str() == url)
                        })
                    }),
                proto::CrlSource::Dpn(_) => None,
            };
            let crl = key.and_then(|k| service.lookup(&k)).ok_or_else(|| {
                Refusal::new(
                    FailureBit::BadRequest,
                    "crlStatusList names a CRL this server does not publish",
                )
            })?;
            let theirs = status.this_update.map(|t| t.to_unix_duration().as_secs());
            if theirs.is_none_or(|t| crl.this_update > t) {
                out.push(crl.der.to_vec());
            }
        }
        Ok(out)
    }

    /// A certificate request under an operator-approved label becomes an accepted RA request:
    /// ir and cr an `issue` request, kur a `modify` request for the certificate it updates.
    /// The RA request keeps the PKCS#10 or the CRMF request, which an officer's approval
    /// fulfils (the proof of possession checked again then); the ip / cp / kup says
    /// `waiting` and the client polls.
    fn await_operator(
        &self,
        label: &CmpLabel,
        sender: &Sender,
        t: &CmpTransaction,
        held: Held,
        now: u64,
    ) -> Result<Step, Refusal> {
        let org = self.label_organisation(label)?;
        let id = crate::ra::desk::file_machine_request(
            self.store.as_ref(),
            &self.calendar.load(),
            self.config.ra.working_days,
            now,
            crate::ra::desk::MachineFiling {
                org: &org,
                profile: &label.profile,
                issuer: &label.issuer,
                csr_der: &held.request,
                replaces: held.replaces.clone(),
                name: held.cn,
                unit: held.ou,
                actor: &sender.actor,
                via: format!(
                    "cmp-label={} (the client authenticated with {})",
                    label.name,
                    match &sender.protection {
                        Protection::Mac(_) => "the organisation's shared secret".to_owned(),
                        Protection::Signed { certificate } =>
                            format!("its certificate {}", serial_hex(certificate)),
                    }
                ),
            },
        )?;
        let nonce = random::<{ proto::NONCE_BYTES }>()?;
        let mut next = t.clone();
        next.request = Some(id);
        next.server_nonce = nonce.to_vec();
        next.updated_at = now;
        let audit = AuditEntry {
            at: now,
            actor: sender.actor.clone(),
            action: "cmp.transaction".into(),
            target: hex::encode(&t.transaction_id),
            outcome: Outcome::Success,
            detail: format!("state=waiting request={id} label={}", label.name),
        };
        if !self
            .store
            .advance_cmp_transaction(&next, t.state, &t.client_nonce, &audit)?
        {
            return Err(Refusal::new(
                FailureBit::TransactionIdInUse,
                "another message of this transaction was answered first",
            ));
        }
        Ok(Step {
            body: ResponseBody::waiting(
                held.tag,
                held.cert_req_id,
                &format!("request {id} waits for an RA officer's approval; poll for it"),
            ),
            extra_certs: Vec::new(),
            issued: false,
            nonce: Some(nonce),
        })
    }

    /// The transaction a follow-up message (certConf, pollReq) continues, with its nonces
    /// checked: the senderNonce must be new, recipNonce the server's last senderNonce.
    fn continued(
        &self,
        label: &CmpLabel,
        req: &Request,
        sender: &Sender,
        body: &str,
    ) -> Result<CmpTransaction, Refusal> {
        let t = self
            .store
            .cmp_transaction(&req.transaction_id)?
            .filter(|t| t.label == label.name && t.organisation == sender.organisation)
            .ok_or_else(|| {
                Refusal::new(
                    FailureBit::BadRequest,
                    format!("{body} for a transaction this server does not know"),
                )
            })?;
        if t.client_nonce == req.sender_nonce {
            return Err(Refusal::new(
                FailureBit::BadSenderNonce,
                "this senderNonce was already used in the transaction (a replay?)",
            ));
        }
        if req.recip_nonce.as_deref() != Some(t.server_nonce.as_slice()) {
            return Err(Refusal::new(
                FailureBit::BadRecipientNonce,
                "recipNonce is not the senderNonce of the server's last message",
            ));
        }
        Ok(t)
    }

    /// pollReq: the certificate once an officer approved the RA request (then certConf as
    /// usual), an error with the officer's reason once rejected, else pollRep.
    fn poll(
        &self,
        label: &CmpLabel,
        req: &Request,
        sender: &Sender,
        ids: &[Int],
        now: u64,
    ) -> Result<Step, Refusal> {
        use crate::store::ra::RequestState;
        let t = self.continued(label, req, sender, "pollReq")?;
        let (CmpState::Waiting, Some(request)) = (t.state, t.request) else {
            return Err(Refusal::new(
                FailureBit::BadRequest,
                format!(
                    "the transaction is {}; nothing waits for an operator",
                    t.state.as_str()
                ),
            ));
        };
        let r = self.store.request(request)?.ok_or_else(|| {
            Refusal::new(
                FailureBit::SystemFailure,
                "the transaction's RA request is gone",
            )
        })?;
        // The answer is the body the request was answered with (ip, cp or kup) and its
        // certReqId, read back from what the RA request keeps.
        let (tag, id) = match r.csr.as_deref().map(proto::parse_held_request) {
            Some(Ok((request_tag, msg))) => {
                (proto::response_tag(request_tag), msg.cert_req.cert_req_id)
            }
            _ => (3, minus_one()?),
        };
        let nonce = random::<{ proto::NONCE_BYTES }>()?;
        let mut next = t.clone();
        next.client_nonce = req.sender_nonce.clone();
        next.server_nonce = nonce.to_vec();
        next.updated_at = now;
        let advance = |next: &CmpTransaction, detail: String, outcome| -> Result<(), Refusal> {
            let audit = AuditEntry {
                at: now,
                actor: sender.actor.clone(),
                action: "cmp.transaction".into(),
                target: hex::encode(&t.transaction_id),
                outcome,
                detail,
            };
            if self
                .store
                .advance_cmp_transaction(next, t.state, &t.client_nonce, &audit)?
            {
                Ok(())
            } else {
                Err(Refusal::new(
                    FailureBit::BadSenderNonce,
                    "another message of this transaction was answered first",
                ))
            }
        };
        match r.state {
            RequestState::Fulfilled => {
                let serial = r.issued_certificate.clone().unwrap_or_default();
                let der = self
                    .store
                    .certificate(&serial)?
                    .and_then(|c| c.der)
                    .ok_or_else(|| {
                        Refusal::new(
                            FailureBit::SystemFailure,
                            format!("certificate {serial} was never stored"),
                        )
                    })?;
                let cert = Certificate::from_der(&der)
                    .map_err(|e| Refusal::new(FailureBit::SystemFailure, e.to_string()))?;
                next.state = CmpState::Issued;
                next.serial = Some(serial.clone());
                next.cert_hash = Some(proto::cert_hash(&der, None)?);
                advance(
                    &next,
                    format!("state=issued serial={serial} request={request}"),
                    Outcome::Success,
                )?;
                let chain = self.chain(label)?;
                let root = matches!(sender.protection, Protection::Mac(_))
                    .then(|| chain.last().cloned().into_iter().collect::<Vec<_>>());
                Ok(Step {
                    body: ResponseBody::issued(tag, id, cert, root),
                    extra_certs: chain,
                    issued: true,
                    nonce: Some(nonce),
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
                next.state = CmpState::Failed;
                advance(
                    &next,
                    format!("state=failed request={request} rejected"),
                    Outcome::Refused,
                )?;
                let text = format!("request {} was rejected: {}", r.id, one_line(&reason));
                Ok(Step {
                    body: ResponseBody::rejected(tag, id, &[FailureBit::NotAuthorized], &text)
                        .map_err(|e| Refusal::new(FailureBit::SystemFailure, e.to_string()))?,
                    extra_certs: Vec::new(),
                    issued: false,
                    nonce: Some(nonce),
                })
            }
            _ => {
                advance(
                    &next,
                    format!("state=waiting request={request} polled"),
                    Outcome::Success,
                )?;
                let text = format!("request {request} waits for an RA officer's approval");
                Ok(Step {
                    body: ResponseBody::PollRep(
                        ids.iter()
                            .map(|id| proto::PollRepEntry {
                                cert_req_id: id.clone(),
                                check_after: self.config.cmp.check_after_secs,
                                reason: Some(vec![text.clone()]),
                            })
                            .collect(),
                    ),
                    extra_certs: Vec::new(),
                    issued: false,
                    nonce: Some(nonce),
                })
            }
        }
    }

    /// An `error` from the client ends its transaction; answered with pkiConf.
    fn client_error(&self, req: &Request, sender: &Sender, now: u64) -> Result<Step, Refusal> {
        if let Some(t) = self.store.cmp_transaction(&req.transaction_id)? {
            if t.organisation == sender.organisation && t.state == CmpState::Issued {
                self.expire(&t, "the client sent an error", now)?;
            }
        }
        Ok(Step {
            body: ResponseBody::PkiConf,
            extra_certs: Vec::new(),
            issued: false,
            nonce: None,
        })
    }

    /// Revokes an unconfirmed certificate and closes its transaction.
    fn expire(&self, t: &CmpTransaction, why: &str, now: u64) -> Result<(), Refusal> {
        let mut next = t.clone();
        next.state = CmpState::Expired;
        next.updated_at = now;
        let audit = AuditEntry {
            at: now,
            actor: "pkid".into(),
            action: "cmp.transaction".into(),
            target: hex::encode(&t.transaction_id),
            outcome: Outcome::Success,
            detail: format!(
                "state=expired serial={}: {why}",
                t.serial.as_deref().unwrap_or("")
            ),
        };
        if self
            .store
            .advance_cmp_transaction(&next, t.state, &t.client_nonce, &audit)?
        {
            if let Some(serial) = &t.serial {
                self.ra.revoke(
                    serial,
                    pkid_protocols::revocation::CrlReason::CessationOfOperation,
                    None,
                    &format!("cmp:{} ({why})", t.label),
                )?;
            }
        }
        Ok(())
    }

    /// Revokes certificates whose certConf did not come in time (at most every
    /// [`EXPIRY_SWEEP_SECS`]).
    pub fn sweep(&self, now: u64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now < last + EXPIRY_SWEEP_SECS
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let before = now.saturating_sub(self.config.cmp.confirm_timeout_secs);
        match self.store.unconfirmed_cmp_transactions(before) {
            Ok(list) => {
                for t in list {
                    if let Err(r) = self.expire(&t, "no certConf before the timeout", now) {
                        tracing::warn!(reason = %r.text, "CMP: an unconfirmed certificate could not be revoked");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "CMP: looking for unconfirmed certificates"),
        }
    }

    /// The response header for `req` (or a bare one when it did not parse): the label's issuer
    /// as sender, no senderKID (`seal` sets both for the protection it applies).
    fn header(
        &self,
        label: Option<&CmpLabel>,
        req: Option<&Request>,
        implicit: bool,
        nonce: Option<[u8; proto::NONCE_BYTES]>,
        now: u64,
    ) -> Result<ResponseHeader, Refusal> {
        let name = label
            .and_then(|l| self.authority.issuer(&l.issuer))
            .or_else(|| self.authority.issuer(crate::config::ISSUING))
            .map(|i| i.certificate.tbs_certificate.subject.clone())
            .unwrap_or_default();
        let nonce = match nonce {
            Some(n) => n,
            None => random::<{ proto::NONCE_BYTES }>()?,
        };
        Ok(ResponseHeader {
            sender: name,
            recipient: req
                .map(|r| r.sender.clone())
                .unwrap_or_else(|| GeneralName::DirectoryName(Name::default())),
            message_time: now,
            transaction_id: req.map(|r| r.transaction_id.clone()).unwrap_or_default(),
            sender_nonce: nonce,
            recip_nonce: req.map(|r| r.sender_nonce.clone()),
            sender_kid: None,
            implicit_confirm: implicit,
            pvno: req.map(|r| r.pvno).unwrap_or(2),
        })
    }

    /// Protects and encodes an answer the way the request was protected: MAC with its
    /// secret (senderKID echoed); signed by the label's issuer's CMP responder (sender its
    /// subject, senderKID its key identifier, extraCerts the responder then the issuer's
    /// chain); unprotected when the request's protection did not verify.
    #[allow(clippy::too_many_arguments)]
    fn seal(
        &self,
        label: Option<&CmpLabel>,
        req: Option<&Request>,
        sender: Option<&Sender>,
        body: &ResponseBody,
        implicit: bool,
        nonce: Option<[u8; proto::NONCE_BYTES]>,
        extra_certs: Vec<Certificate>,
        now: u64,
    ) -> Result<Vec<u8>, Refusal> {
        let mut header = self.header(label, req, implicit, nonce, now)?;
        match sender.map(|s| (s, &s.protection)) {
            Some((s, Protection::Mac(mac))) => {
                header.sender_kid = Some(s.kid.as_bytes().to_vec());
                let protection = ResponseProtection::Mac {
                    pbm: &mac.pbm,
                    secret: &mac.secret,
                };
                Ok(proto::encode_response(
                    &header,
                    body,
                    protection,
                    extra_certs,
                )?)
            }
            Some((_, Protection::Signed { .. })) => {
                let unavailable = |m: String| Refusal::new(FailureBit::SystemUnavail, m);
                let label = label.ok_or_else(|| unavailable("no label".into()))?;
                let responder = self
                    .responders
                    .as_ref()
                    .ok_or_else(|| unavailable("no CMP responder".into()))?
                    .get(&label.issuer)
                    .map_err(unavailable)?;
                let cert = &responder.certificate;
                header.sender = cert.tbs_certificate.subject.clone();
                header.sender_kid = Some(
                    cert.tbs_certificate
                        .get::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
                        .ok()
                        .flatten()
                        .map(|(_, k)| k.0.as_bytes().to_vec())
                        .unwrap_or_else(|| {
                            pkid_protocols::algorithm::key_identifier(
                                &cert.tbs_certificate.subject_public_key_info,
                            )
                        }),
                );
                let mut extra = vec![cert.clone()];
                extra.extend(self.chain(label)?);
                let sign = |m: &[u8]| responder.signer.sign(m).map_err(|e| e.to_string());
                let protection = ResponseProtection::Signature {
                    algorithm: responder.signer.algorithm().identifier(),
                    sign: &sign,
                };
                Ok(proto::encode_response(&header, body, protection, extra)?)
            }
            None => Ok(proto::encode_response(
                &header,
                body,
                ResponseProtection::None,
                extra_certs,
            )?),
        }
    }

    fn encode(
        &self,
        label: &CmpLabel,
        req: &Request,
        sender: &Sender,
        step: Step,
        now: u64,
    ) -> Result<Vec<u8>, Refusal> {
        let implicit = matches!(step.body, ResponseBody::CertRep { .. })
            && self.grants_implicit_confirm(label, req);
        self.seal(
            Some(label),
            Some(req),
            Some(sender),
            &step.body,
            implicit,
            step.nonce,
            step.extra_certs,
            now,
        )
    }

    /// An `error` message for a refusal, protected like the request once its protection
    /// verified (unprotected should signing it fail).
    fn refuse(
        &self,
        label: Option<&CmpLabel>,
        req: Option<&Request>,
        sender: Option<&Sender>,
        r: Refusal,
        body: &'static str,
    ) -> Answer {
        let now = self.authority.now();
        let text = one_line(&r.text);
        let built = (|| -> Result<Vec<u8>, Refusal> {
            let err = ResponseBody::error(&[r.bit], &text)
                .map_err(|e| Refusal::new(FailureBit::SystemFailure, e.to_string()))?;
            match self.seal(label, req, sender, &err, false, None, Vec::new(), now) {
                Err(e) if sender.is_some() => {
                    tracing::error!(error = %e.text, "CMP: an error message could not be protected; sending it unprotected");
                    self.seal(label, req, None, &err, false, None, Vec::new(), now)
                }
                other => other,
            }
        })();
        let der = built.unwrap_or_else(|e| {
            tracing::error!(error = %e.text, "CMP: an error message could not be encoded");
            Vec::new()
        });
        Answer {
            der,
            body,
            outcome: r.reason(),
            refusal: Some(text),
            issued: false,
            inner: Vec::new(),
        }
    }
}
