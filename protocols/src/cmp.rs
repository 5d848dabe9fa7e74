//! CMP (RFC 9810, lightweight profile RFC 9483): parsing requests, password-based MAC
//! protection (PasswordBasedMac, RFC 4210 §5.1.3.1 / RFC 9481 §6.1.1; PBMAC1, RFC 9481
//! §6.1.2), proof-of-possession checks, requests for a centrally generated key (RFC 9483
//! §4.1.6) and building protected responses. Sans-I/O: time and randomness are arguments.
//!
//! ```text
//! DER ─▶ parse (header, body kept as received: the MAC is over those exact bytes)
//!     ─▶ Request { header fields, body: Ir | Cr | Kur | P10cr | CertConf | Genm | Rr | PollReq | … }
//! decision ─▶ Response { header, body } ─▶ ProtectedPart DER ─▶ MAC (PBM) ─▶ PKIMessage DER
//! ```
//!
//! The message types come from the RustCrypto `cmpv2`/`crmf` crates. Three productions are
//! modelled here because `cmpv2` 0.2 gets them wrong: `PKIFailureInfo` (its flag values are
//! bit positions used as masks, `badTime` shares `badRequest`'s value, and a `u16` cannot hold
//! bits 16–26), and with it `PKIStatusInfo`, `ErrorMsgContent` (fields not public),
//! `CertStatus` and `CertRepMessage`; `pollReq` (decoded as `PollRepContent`);
//! `CertifiedKeyPair` (RFC 4210's `privateKey EncryptedValue`, not RFC 9810's `EncryptedKey`).
//! PBMAC1's and PBKDF2's parameters (RFC 8018) have no crate here, so they are modelled too.

use crate::algorithm;
use cmpv2::header::{PkiHeader, Pvno};
use const_oid::db::rfc5912::{ID_IT_IMPLICIT_CONFIRM, ID_PASSWORD_BASED_MAC};
use const_oid::ObjectIdentifier;
use crmf::pop::ProofOfPossession;
use crmf::request::{CertReqMsg, CertRequest};
use der::asn1::{BitString, GeneralizedTime, Int, Null, OctetString};
use der::{Any, Decode, Encode, Sequence, Tag, TagNumber, Tagged};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;
use x509_cert::Certificate;

/// Largest CMP message accepted, bytes: an ir with an RSA-4096 key, its POP and a certificate
/// chain in extraCerts is under 10 KiB; 128 KiB leaves room for long chains and nested RA
/// messages and refuses anything absurd before it is parsed.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// Fewest PBM iterations accepted (RFC 4211 §4.4 and RFC 9481 §6.1.1: at least 100).
pub const MIN_PBM_ITERATIONS: u64 = 100;
/// Most PBM iterations accepted: each costs one hash, so the bound caps the work an
/// unauthenticated request can make the server do (OpenSSL 3.0 sends 500).
pub const MAX_PBM_ITERATIONS: u64 = 10_000;
/// Longest PBM salt accepted, bytes (OpenSSL sends 16).
pub const MAX_SALT_BYTES: usize = 64;
/// The length of a senderNonce and a transactionID (RFC 9483 §3.1: 128 bits).
pub const NONCE_BYTES: usize = 16;
/// Most messages one `nested` body may carry (RFC 9483 §5.2.2.2 batching): each is answered
/// in turn, so the bound caps the work one HTTP request makes; the message size bound
/// ([`MAX_MESSAGE_BYTES`]) holds as well.
pub const MAX_NESTED_MESSAGES: usize = 32;

/// OID of SHA-1 (as a PBM one-way function only).
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// OIDs of SHA-2.
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
/// HMAC-SHA1 as RFC 4210 names it (id-HMAC-SHA1, what OpenSSL 3.0 sends by default).
const HMAC_SHA1_IPSEC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.8.1.2");
/// hmacWithSHA1 … hmacWithSHA512 (RFC 8018 / RFC 9481 §6.2.1).
const HMAC_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.7");
/// hmacWithSHA256 (RFC 8018 §B.1.2).
pub const HMAC_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.9");
const HMAC_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.10");
const HMAC_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.11");
/// PBMAC1 (RFC 8018 §7.1; RFC 9481 §6.1.2).
const PBMAC1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.14");

/// A PKIFailureInfo bit (RFC 9810 §5.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FailureBit {
    /// Unrecognised or unsupported algorithm.
    BadAlg = 0,
    /// Integrity check failed (e.g. the MAC did not verify).
    BadMessageCheck = 1,
    /// The transaction is not permitted or supported.
    BadRequest = 2,
    /// messageTime was not close enough to the server's time.
    BadTime = 3,
    /// No certificate matches the criteria.
    BadCertId = 4,
    /// The data was badly formed.
    BadDataFormat = 5,
    /// The requested CA is not served.
    WrongAuthority = 6,
    /// The requester's data is incorrect.
    IncorrectData = 7,
    /// The proof of possession failed.
    BadPop = 9,
    /// The certificate has already been revoked.
    CertRevoked = 10,
    /// The certificate has already been confirmed.
    CertConfirmed = 11,
    /// Invalid integrity: MAC where a signature was expected or the reverse.
    WrongIntegrity = 12,
    /// recipNonce missing or not the expected value.
    BadRecipientNonce = 13,
    /// The template had unacceptable content.
    BadCertTemplate = 19,
    /// The signer of the message is unknown or not trusted.
    SignerNotTrusted = 20,
    /// The transactionID is already in use.
    TransactionIdInUse = 21,
    /// The message's pvno is not supported.
    UnsupportedVersion = 22,
    /// The sender is not authorised to make this request.
    NotAuthorized = 23,
    /// The system is not available.
    SystemUnavail = 24,
    /// The system failed.
    SystemFailure = 25,
    /// senderNonce missing, too short or a replay.
    BadSenderNonce = 18,
}

/// The DER BIT STRING of a PKIFailureInfo with `bits` set (named bit list: trailing zero bits
/// dropped, X.690 §11.2.2).
pub fn failure_info(bits: &[FailureBit]) -> Result<BitString, der::Error> {
    let Some(highest) = bits.iter().map(|b| *b as u8).max() else {
        return BitString::new(0, Vec::new());
    };
    let mut bytes = vec![0u8; usize::from(highest / 8) + 1];
    for b in bits {
        let b = *b as u8;
        bytes[usize::from(b / 8)] |= 0x80 >> (b % 8);
    }
    BitString::new(7 - highest % 8, bytes)
}

/// Whether `bit` is set in a PKIFailureInfo BIT STRING.
pub fn has_failure_bit(info: &BitString, bit: FailureBit) -> bool {
    let b = bit as usize;
    info.raw_bytes()
        .get(b / 8)
        .is_some_and(|byte| byte & (0x80 >> (b % 8)) != 0)
}

/// PKIStatus (RFC 9810 §5.2.3).
pub use cmpv2::status::PkiStatus;

/// ```text
/// PKIStatusInfo ::= SEQUENCE {
///     status        PKIStatus,
///     statusString  PKIFreeText     OPTIONAL,
///     failInfo      PKIFailureInfo  OPTIONAL }
/// ```
/// RFC 9810 §5.2.3.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct StatusInfo {
    /// The status.
    pub status: PkiStatus,
    /// Human-readable text (UTF8String each).
    pub status_string: Option<Vec<String>>,
    /// The failure bits.
    pub fail_info: Option<BitString>,
}

/// ```text
/// ErrorMsgContent ::= SEQUENCE {
///     pKIStatusInfo  PKIStatusInfo,
///     errorCode      INTEGER        OPTIONAL,
///     errorDetails   PKIFreeText    OPTIONAL }
/// ```
/// RFC 9810 §5.3.21.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct ErrorContent {
    /// Status (rejection), text and failure bits.
    pub status: StatusInfo,
    /// Implementation-specific code.
    pub error_code: Option<u64>,
    /// More text.
    pub error_details: Option<Vec<String>>,
}

/// ```text
/// CertResponse ::= SEQUENCE {
///     certReqId         INTEGER,
///     status            PKIStatusInfo,
///     certifiedKeyPair  CertifiedKeyPair  OPTIONAL,
///     rspInfo           OCTET STRING      OPTIONAL }
/// ```
/// RFC 9810 §5.3.4.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CertResponse {
    /// The request's certReqId.
    pub cert_req_id: Int,
    /// Accepted, or rejection with its reason.
    pub status: StatusInfo,
    /// The certificate (and, from central key generation, its private key).
    pub certified_key_pair: Option<CertifiedKeyPair>,
    /// Unused.
    pub rsp_info: Option<OctetString>,
}

/// ```text
/// CertifiedKeyPair ::= SEQUENCE {
///     certOrEncCert       CertOrEncCert,
///     privateKey      [0] EncryptedKey        OPTIONAL,
///     publicationInfo [1] PKIPublicationInfo  OPTIONAL }
/// ```
/// RFC 9810 §5.3.4; `cmpv2` 0.2 still has RFC 4210's `privateKey [0] EncryptedValue`, which
/// cannot carry the EnvelopedData of central key generation (RFC 9483 §4.1.6).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CertifiedKeyPair {
    /// The certificate.
    pub cert_or_enc_cert: cmpv2::certified_key_pair::CertOrEncCert,
    /// The centrally generated private key.
    #[asn1(
        context_specific = "0",
        tag_mode = "EXPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub private_key: Option<EncryptedKey>,
    /// Unused.
    #[asn1(
        context_specific = "1",
        tag_mode = "EXPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub publication_info: Option<crmf::controls::PkiPublicationInfo>,
}

/// ```text
/// EncryptedKey ::= CHOICE {
///     encryptedValue        EncryptedValue,   -- Deprecated
///     envelopedData     [0] EnvelopedData }
/// ```
/// RFC 4211 §2.1 as updated by RFC 9810 §5.2.2 (the CRMF module's IMPLICIT tags). Only
/// envelopedData is modelled: RFC 9483 §4.1.6 requires it.
#[derive(Clone, Debug, Eq, PartialEq, der::Choice)]
pub enum EncryptedKey {
    /// The key, enveloped to the requester.
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", constructed = "true")]
    EnvelopedData(cms::enveloped_data::EnvelopedData),
}

/// ```text
/// CertRepMessage ::= SEQUENCE {
///     caPubs    [1] SEQUENCE SIZE (1..MAX) OF CMPCertificate OPTIONAL,
///     response      SEQUENCE OF CertResponse }
/// ```
/// RFC 9810 §5.3.4.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CertRepContent {
    /// CA certificates the client may trust (only after MAC-protected enrollment).
    #[asn1(
        context_specific = "1",
        tag_mode = "EXPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub ca_pubs: Option<Vec<Certificate>>,
    /// One per request.
    pub response: Vec<CertResponse>,
}

/// ```text
/// CertStatus ::= SEQUENCE {
///     certHash    OCTET STRING,
///     certReqId   INTEGER,
///     statusInfo  PKIStatusInfo OPTIONAL,
///     hashAlg [0] AlgorithmIdentifier{DIGEST-ALGORITHM, {...}} OPTIONAL }
/// ```
/// RFC 9810 §5.3.18.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CertStatus {
    /// Hash of the certificate.
    pub cert_hash: OctetString,
    /// Which request.
    pub cert_req_id: Int,
    /// Absent or accepted: confirmed; rejection: the client does not accept it.
    pub status_info: Option<StatusInfo>,
    /// The hash algorithm, when it is not the certificate signature's.
    #[asn1(
        context_specific = "0",
        tag_mode = "EXPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub hash_alg: Option<AlgorithmIdentifierOwned>,
}

/// ```text
/// PKIMessage ::= SEQUENCE {
///     header      PKIHeader,
///     body        PKIBody,
///     protection  [0] PKIProtection OPTIONAL,
///     extraCerts  [1] SEQUENCE SIZE (1..MAX) OF CMPCertificate OPTIONAL }
/// ```
/// With header and body kept as received (RFC 9810 §5.1).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct RawMessage {
    header: Any,
    body: Any,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    protection: Option<BitString>,
    #[asn1(
        context_specific = "1",
        tag_mode = "EXPLICIT",
        constructed = "true",
        optional = "true"
    )]
    extra_certs: Option<Vec<Certificate>>,
}

/// `ProtectedPart ::= SEQUENCE { header PKIHeader, body PKIBody }` (RFC 9810 §5.1.3).
#[derive(Sequence)]
struct ProtectedPart<'a> {
    header: der::AnyRef<'a>,
    body: der::AnyRef<'a>,
}

/// Why a message could not be answered as asked. Each maps to its PKIFailureInfo bit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CmpError {
    /// Not DER, not a PKIMessage, trailing bytes, or a body that does not decode.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Over [`MAX_MESSAGE_BYTES`].
    #[error("the message of {0} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    /// pvno other than 2 or 3.
    #[error("pvno {0} is not supported (2 or 3)")]
    Version(u8),
    /// A protection, OWF or MAC algorithm not supported, or PBM parameters out of bounds.
    #[error("{0}")]
    Algorithm(String),
    /// The MAC does not verify with the secret.
    #[error("the message's protection does not verify")]
    BadMac,
    /// The signature does not verify with the protecting certificate's key (RFC 9483 §3.6.4:
    /// badMessageCheck), or uses an algorithm that key cannot make.
    #[error("the message's signature does not verify with the certificate at extraCerts[0]: {0}")]
    BadSignature(String),
    /// The message is not protected, or protected the wrong way.
    #[error("{0}")]
    Protection(String),
    /// A header field required by RFC 9483 §3.1 is missing or malformed.
    #[error("{0}")]
    Header(String),
    /// messageTime too far from the server's clock.
    #[error("messageTime is {0} s from the server's time (at most {1} s allowed)")]
    Time(u64, u64),
    /// senderNonce missing, not 16 bytes, or a replay.
    #[error("{0}")]
    SenderNonce(String),
    /// recipNonce not the expected one.
    #[error("{0}")]
    RecipientNonce(String),
    /// The request's proof of possession does not verify.
    #[error("proof of possession: {0}")]
    Pop(String),
    /// The certificate template cannot be used.
    #[error("{0}")]
    Template(String),
}

impl CmpError {
    /// The failure bit sent for this error. No `_` arm on purpose.
    pub fn failure_bit(&self) -> FailureBit {
        match self {
            Self::Malformed(_) | Self::TooLarge(_) | Self::Header(_) => FailureBit::BadDataFormat,
            Self::Version(_) => FailureBit::UnsupportedVersion,
            Self::Algorithm(_) => FailureBit::BadAlg,
            Self::BadMac | Self::BadSignature(_) => FailureBit::BadMessageCheck,
            Self::Protection(_) => FailureBit::WrongIntegrity,
            Self::Time(..) => FailureBit::BadTime,
            Self::SenderNonce(_) => FailureBit::BadSenderNonce,
            Self::RecipientNonce(_) => FailureBit::BadRecipientNonce,
            Self::Pop(_) => FailureBit::BadPop,
            Self::Template(_) => FailureBit::BadCertTemplate,
        }
    }
}

/// The body of a request, decoded.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RequestBody {
    /// `ir` (initialisation request).
    Ir(Vec<CertReqMsg>),
    /// `cr` (certification request).
    Cr(Vec<CertReqMsg>),
    /// `kur` (key update request).
    Kur(Vec<CertReqMsg>),
    /// `p10cr`: the PKCS#10 request's DER.
    P10cr(Vec<u8>),
    /// `certConf`.
    CertConf(Vec<CertStatus>),
    /// `genm`.
    Genm(Vec<cmpv2::gen::InfoTypeAndValue>),
    /// `rr`.
    Rr(cmpv2::rev::RevReqContent),
    /// `pollReq`: the certReqIds polled for.
    PollReq(Vec<Int>),
    /// `error` sent by the client.
    Error,
    /// `nested` (RFC 9810 §5.1.3.4): the DER of each inner PKIMessage, in order.
    Nested(Vec<Vec<u8>>),
    /// Any other body: its context tag number (RFC 9810 §5.1.2).
    Other(u8),
}

impl RequestBody {
    /// The body's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ir(_) => "ir",
            Self::Cr(_) => "cr",
            Self::Kur(_) => "kur",
            Self::P10cr(_) => "p10cr",
            Self::CertConf(_) => "certConf",
            Self::Genm(_) => "genm",
            Self::Rr(_) => "rr",
            Self::PollReq(_) => "pollReq",
            Self::Error => "error",
            Self::Nested(_) => "nested",
            Self::Other(_) => "other",
        }
    }
}

/// `PollReqContent ::= SEQUENCE OF SEQUENCE { certReqId INTEGER }` (RFC 9810 §5.3.22).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct PollReqEntry {
    cert_req_id: Int,
}

/// ```text
/// PollRepContent ::= SEQUENCE OF SEQUENCE {
///     certReqId   INTEGER,
///     checkAfter  INTEGER,  -- time in seconds
///     reason      PKIFreeText OPTIONAL }
/// ```
/// RFC 9810 §5.3.22.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct PollRepEntry {
    /// The polled certReqId.
    pub cert_req_id: Int,
    /// Seconds before the next pollReq.
    pub check_after: u64,
    /// Why the client waits.
    pub reason: Option<Vec<String>>,
}

/// A parsed request.
#[derive(Clone, Debug)]
pub struct Request {
    /// pvno (2 or 3).
    pub pvno: u8,
    /// The sender (a NULL-DN is allowed with MAC protection).
    pub sender: GeneralName,
    /// The recipient as the client named it (any name is accepted).
    pub recipient: GeneralName,
    /// messageTime, Unix seconds.
    pub message_time: Option<u64>,
    /// protectionAlg.
    pub protection_alg: Option<AlgorithmIdentifierOwned>,
    /// senderKID: for MAC protection, the reference of the shared secret.
    pub sender_kid: Option<Vec<u8>>,
    /// transactionID.
    pub transaction_id: Vec<u8>,
    /// senderNonce.
    pub sender_nonce: Vec<u8>,
    /// recipNonce.
    pub recip_nonce: Option<Vec<u8>>,
    /// Whether generalInfo asks for implicit confirmation.
    pub implicit_confirm: bool,
    /// The body.
    pub body: RequestBody,
    /// The DER of ProtectedPart (header and body as received).
    protected_part: Vec<u8>,
    /// The protection bits.
    pub protection: Option<Vec<u8>>,
    /// extraCerts.
    pub extra_certs: Vec<Certificate>,
}

fn malformed(what: &str) -> impl Fn(der::Error) -> CmpError + '_ {
    move |e| CmpError::Malformed(format!("{what}: {e}"))
}

fn octets(o: Option<OctetString>) -> Option<Vec<u8>> {
    o.map(|o| o.as_bytes().to_vec())
}

/// Parses a PKIMessage. Checks the structure and the header fields every request needs
/// (pvno, transactionID, a 16-byte senderNonce); protection, time and nonces against the
/// transaction are the caller's to check.
pub fn parse_request(der: &[u8]) -> Result<Request, CmpError> {
    if der.len() > MAX_MESSAGE_BYTES {
        return Err(CmpError::TooLarge(der.len()));
    }
    let raw = RawMessage::from_der(der).map_err(malformed("PKIMessage"))?;
    let header_der = raw.header.to_der().map_err(malformed("header"))?;
    let body_der = raw.body.to_der().map_err(malformed("body"))?;
    let header = PkiHeader::from_der(&header_der).map_err(malformed("header"))?;
    let pvno = match header.pvno {
        Pvno::Cmp1999 => return Err(CmpError::Version(1)),
        Pvno::Cmp2000 => 2,
    };
    let transaction_id = octets(header.trans_id.clone())
        .ok_or_else(|| CmpError::Header("the header has no transactionID".into()))?;
    if transaction_id.is_empty() || transaction_id.len() > 64 {
        return Err(CmpError::Header(format!(
            "a transactionID of {} bytes (16 expected)",
            transaction_id.len()
        )));
    }
    let sender_nonce = octets(header.sender_nonce.clone())
        .ok_or_else(|| CmpError::SenderNonce("the header has no senderNonce".into()))?;
    if sender_nonce.len() < NONCE_BYTES || sender_nonce.len() > 64 {
        return Err(CmpError::SenderNonce(format!(
            "a senderNonce of {} bytes (at least {NONCE_BYTES})",
            sender_nonce.len()
        )));
    }
    let message_time = header.message_time.map(|t| t.to_unix_duration().as_secs());
    let implicit_confirm = header
        .general_info
        .as_ref()
        .is_some_and(|g| g.iter().any(|i| i.oid == ID_IT_IMPLICIT_CONFIRM));
    let body = parse_body(&raw.body)?;
    let protected_part = ProtectedPart {
        header: der::AnyRef::from_der(&header_der).map_err(malformed("header"))?,
        body: der::AnyRef::from_der(&body_der).map_err(malformed("body"))?,
    }
    .to_der()
    .map_err(malformed("ProtectedPart"))?;
    Ok(Request {
        pvno,
        sender: header.sender.clone(),
        recipient: header.recipient.clone(),
        message_time,
        protection_alg: header.protection_alg.clone(),
        sender_kid: octets(header.sender_kid.clone()),
        transaction_id,
        sender_nonce,
        recip_nonce: octets(header.recip_nonce.clone()),
        implicit_confirm,
        body,
        protected_part,
        protection: raw.protection.map(|p| p.raw_bytes().to_vec()),
        extra_certs: raw.extra_certs.unwrap_or_default(),
    })
}

fn parse_body(body: &Any) -> Result<RequestBody, CmpError> {
    let tag = body.tag();
    let number = match tag {
        Tag::ContextSpecific {
            constructed: true,
            number,
        } => number.value(),
        other => {
            return Err(CmpError::Malformed(format!(
                "the body is {other}, not a context-tagged PKIBody"
            )))
        }
    };
    let inner = body.value();
    let decode_reqs = |name: &str| {
        let msgs = Vec::<CertReqMsg>::from_der(inner).map_err(malformed(name));
        match msgs {
            Ok(m) if m.is_empty() => Err(CmpError::Malformed(format!("{name}: no request"))),
            other => other,
        }
    };
    Ok(match number {
        0 => RequestBody::Ir(decode_reqs("ir")?),
        2 => RequestBody::Cr(decode_reqs("cr")?),
        7 => RequestBody::Kur(decode_reqs("kur")?),
        4 => {
            let any = Any::from_der(inner).map_err(malformed("p10cr"))?;
            RequestBody::P10cr(any.to_der().map_err(malformed("p10cr"))?)
        }
        24 => RequestBody::CertConf(
            Vec::<CertStatus>::from_der(inner).map_err(malformed("certConf"))?,
        ),
        21 => RequestBody::Genm(
            Vec::<cmpv2::gen::InfoTypeAndValue>::from_der(inner).map_err(malformed("genm"))?,
        ),
        11 => RequestBody::Rr(cmpv2::rev::RevReqContent::from_der(inner).map_err(malformed("rr"))?),
        25 => RequestBody::PollReq(
            Vec::<PollReqEntry>::from_der(inner)
                .map_err(malformed("pollReq"))?
                .into_iter()
                .map(|e| e.cert_req_id)
                .collect(),
        ),
        23 => RequestBody::Error,
        20 => {
            // NestedMessageContent ::= PKIMessages ::= SEQUENCE SIZE (1..MAX) OF PKIMessage
            let inner = Vec::<Any>::from_der(inner).map_err(malformed("nested"))?;
            if inner.is_empty() || inner.len() > MAX_NESTED_MESSAGES {
                return Err(CmpError::Malformed(format!(
                    "nested: {} messages (1 to {MAX_NESTED_MESSAGES})",
                    inner.len()
                )));
            }
            RequestBody::Nested(
                inner
                    .iter()
                    .map(|m| m.to_der().map_err(malformed("nested")))
                    .collect::<Result<_, _>>()?,
            )
        }
        n => RequestBody::Other(n),
    })
}

/// The hash a one-way-function OID names.
fn owf(oid: ObjectIdentifier) -> Option<&'static aws_lc_rs::digest::Algorithm> {
    use aws_lc_rs::digest;
    match oid {
        SHA1 => Some(&digest::SHA1_FOR_LEGACY_USE_ONLY),
        SHA256 => Some(&digest::SHA256),
        SHA384 => Some(&digest::SHA384),
        SHA512 => Some(&digest::SHA512),
        _ => None,
    }
}

/// The HMAC a MAC OID names.
fn hmac_of(oid: ObjectIdentifier) -> Option<aws_lc_rs::hmac::Algorithm> {
    use aws_lc_rs::hmac;
    match oid {
        HMAC_SHA1 | HMAC_SHA1_IPSEC => Some(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
        HMAC_SHA256 => Some(hmac::HMAC_SHA256),
        HMAC_SHA384 => Some(hmac::HMAC_SHA384),
        HMAC_SHA512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

/// ```text
/// PBMAC1-params ::= SEQUENCE {
///     keyDerivationFunc  AlgorithmIdentifier {{PBMAC1-KDFs}},
///     messageAuthScheme  AlgorithmIdentifier {{PBMAC1-MACs}} }
/// ```
/// RFC 8018 §A.5, as RFC 9481 §6.1.2 uses it for CMP.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct Pbmac1Params {
    key_derivation_func: AlgorithmIdentifierOwned,
    message_auth_scheme: AlgorithmIdentifierOwned,
}

/// ```text
/// PBKDF2-params ::= SEQUENCE {
///     salt CHOICE {
///         specified       OCTET STRING,
///         otherSource     AlgorithmIdentifier {{PBKDF2-SaltSources}} },
///     iterationCount      INTEGER (1..MAX),
///     keyLength           INTEGER (1..MAX) OPTIONAL,
///     prf                 AlgorithmIdentifier {{PBKDF2-PRFs}} DEFAULT algid-hmacWithSHA1 }
/// ```
/// RFC 8018 §A.2. Only a `specified` salt is modelled (RFC 9481 §6.1.2: "MUST be ... OCTET
/// STRING"); `otherSource` does not decode and is refused as badAlg.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct Pbkdf2Params {
    /// The salt.
    pub salt: OctetString,
    /// The iteration count.
    pub iteration_count: u64,
    /// The derived key's length, bytes.
    pub key_length: Option<u64>,
    /// Absent: the DEFAULT, hmacWithSHA1.
    pub prf: Option<AlgorithmIdentifierOwned>,
}

impl Pbkdf2Params {
    /// The PRF's OID, the DEFAULT (hmacWithSHA1) when absent.
    fn prf_oid(&self) -> ObjectIdentifier {
        self.prf.as_ref().map_or(HMAC_SHA1, |a| a.oid)
    }
}

/// id-PBKDF2 (RFC 8018 §A.2).
pub const ID_PBKDF2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.12");

/// Most PBKDF2 iterations a PBMAC1 request may ask for: the key is derived before the MAC
/// is known good, so this bounds what an unauthenticated message costs (100 000
/// HMAC-SHA-256 iterations are about 30 ms of one core); RFC 9481 §6.1.2 sets no number.
pub const MAX_PBKDF2_ITERATIONS: u64 = 100_000;
/// Fewest PBKDF2 iterations accepted: fewer makes the shared secret cheap to guess from one
/// captured message.
pub const MIN_PBKDF2_ITERATIONS: u64 = 1_000;
/// Longest PBKDF2 key, bytes (the HMAC-SHA-512 block-size key is 64).
const MAX_PBKDF2_KEY_BYTES: u64 = 64;

/// The PBKDF2 PRF an HMAC OID names.
fn pbkdf2_of(oid: ObjectIdentifier) -> Option<aws_lc_rs::pbkdf2::Algorithm> {
    use aws_lc_rs::pbkdf2;
    match oid {
        HMAC_SHA1 => Some(pbkdf2::PBKDF2_HMAC_SHA1),
        HMAC_SHA256 => Some(pbkdf2::PBKDF2_HMAC_SHA256),
        HMAC_SHA384 => Some(pbkdf2::PBKDF2_HMAC_SHA384),
        HMAC_SHA512 => Some(pbkdf2::PBKDF2_HMAC_SHA512),
        _ => None,
    }
}

/// Checked password-based MAC parameters: PasswordBasedMac (RFC 4210 §5.1.3.1, RFC 9481
/// §6.1.1) or PBMAC1 (RFC 8018 §7.1, RFC 9481 §6.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pbm {
    scheme: Scheme,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Scheme {
    PasswordBasedMac {
        params: cmpv2::parameter::PbmParameter,
        owf: &'static aws_lc_rs::digest::Algorithm,
        mac: aws_lc_rs::hmac::Algorithm,
    },
    Pbmac1 {
        kdf: Pbkdf2Params,
        mac_alg: AlgorithmIdentifierOwned,
        mac: aws_lc_rs::hmac::Algorithm,
        key_len: usize,
    },
}

impl Pbm {
    /// The MAC parameters of a protectionAlg, checked against the bounds of this module.
    pub fn from_algorithm(alg: &AlgorithmIdentifierOwned) -> Result<Self, CmpError> {
        if alg.oid == PBMAC1 {
            let params: Pbmac1Params = alg
                .parameters
                .as_ref()
                .ok_or_else(|| CmpError::Algorithm("PBMAC1 without parameters".into()))?
                .decode_as()
                .map_err(|e| CmpError::Algorithm(format!("PBMAC1-params: {e}")))?;
            if params.key_derivation_func.oid != ID_PBKDF2 {
                return Err(CmpError::Algorithm(format!(
                    "PBMAC1 key derivation {} is not PBKDF2",
                    params.key_derivation_func.oid
                )));
            }
            let kdf: Pbkdf2Params = params
                .key_derivation_func
                .parameters
                .as_ref()
                .ok_or_else(|| CmpError::Algorithm("PBKDF2 without parameters".into()))?
                .decode_as()
                .map_err(|e| CmpError::Algorithm(format!("PBKDF2-params: {e}")))?;
            return Self::pbmac1(kdf, params.message_auth_scheme);
        }
        if alg.oid != ID_PASSWORD_BASED_MAC {
            return Err(CmpError::Algorithm(format!(
                "protection algorithm {} is neither PasswordBasedMac nor PBMAC1",
                alg.oid
            )));
        }
        let params: cmpv2::parameter::PbmParameter = alg
            .parameters
            .as_ref()
            .ok_or_else(|| CmpError::Algorithm("PasswordBasedMac without parameters".into()))?
            .decode_as()
            .map_err(|e| CmpError::Algorithm(format!("PBMParameter: {e}")))?;
        Self::new(params)
    }

    /// Checks PBMAC1 parameters: PBKDF2 with a known PRF, iterations, salt and key length
    /// within bounds, a known HMAC. Without keyLength the key is as long as the MAC's hash.
    fn pbmac1(kdf: Pbkdf2Params, mac_alg: AlgorithmIdentifierOwned) -> Result<Self, CmpError> {
        if pbkdf2_of(kdf.prf_oid()).is_none() {
            return Err(CmpError::Algorithm(format!(
                "PBKDF2 PRF {} is not supported (HMAC with SHA-1, SHA-256, SHA-384, SHA-512)",
                kdf.prf_oid()
            )));
        }
        let mac = hmac_of(mac_alg.oid)
            .filter(|_| mac_alg.oid != HMAC_SHA1_IPSEC)
            .ok_or_else(|| {
                CmpError::Algorithm(format!(
                    "PBMAC1 MAC {} is not supported (hmacWithSHA1, -SHA256, -SHA384, -SHA512)",
                    mac_alg.oid
                ))
            })?;
        if !(MIN_PBKDF2_ITERATIONS..=MAX_PBKDF2_ITERATIONS).contains(&kdf.iteration_count) {
            return Err(CmpError::Algorithm(format!(
                "PBKDF2 iterationCount {} is outside {MIN_PBKDF2_ITERATIONS}..={MAX_PBKDF2_ITERATIONS}",
                kdf.iteration_count
            )));
        }
        let salt = kdf.salt.as_bytes().len();
        if salt == 0 || salt > MAX_SALT_BYTES {
            return Err(CmpError::Algorithm(format!(
                "a PBKDF2 salt of {salt} bytes (1 to {MAX_SALT_BYTES})"
            )));
        }
        let key_len = match kdf.key_length {
            None => mac.digest_algorithm().output_len,
            Some(n) if (16..=MAX_PBKDF2_KEY_BYTES).contains(&n) => n as usize,
            Some(n) => {
                return Err(CmpError::Algorithm(format!(
                    "a PBKDF2 keyLength of {n} bytes (16 to {MAX_PBKDF2_KEY_BYTES})"
                )))
            }
        };
        Ok(Self {
            scheme: Scheme::Pbmac1 {
                kdf,
                mac_alg,
                mac,
                key_len,
            },
        })
    }

    /// Checks PasswordBasedMac parameters: a known OWF and MAC, iterations and salt within
    /// bounds.
    pub fn new(params: cmpv2::parameter::PbmParameter) -> Result<Self, CmpError> {
        let owf = owf(params.owf.oid).ok_or_else(|| {
            CmpError::Algorithm(format!(
                "PBM one-way function {} is not supported (SHA-1, SHA-256, SHA-384, SHA-512)",
                params.owf.oid
            ))
        })?;
        let mac = hmac_of(params.mac.oid).ok_or_else(|| {
            CmpError::Algorithm(format!(
                "PBM MAC {} is not supported (HMAC with SHA-1, SHA-256, SHA-384, SHA-512)",
                params.mac.oid
            ))
        })?;
        if !(MIN_PBM_ITERATIONS..=MAX_PBM_ITERATIONS).contains(&params.iteration_count) {
            return Err(CmpError::Algorithm(format!(
                "PBM iterationCount {} is outside {MIN_PBM_ITERATIONS}..={MAX_PBM_ITERATIONS}",
                params.iteration_count
            )));
        }
        if params.salt.as_bytes().len() > MAX_SALT_BYTES {
            return Err(CmpError::Algorithm(format!(
                "a PBM salt of {} bytes (at most {MAX_SALT_BYTES})",
                params.salt.as_bytes().len()
            )));
        }
        Ok(Self {
            scheme: Scheme::PasswordBasedMac { params, owf, mac },
        })
    }

    /// SHA-256 as OWF and hmacWithSHA256 as MAC (RFC 9481 §6.1.1's recommendation), for a
    /// client (tests, the benchmark).
    pub fn sha256(salt: &[u8], iterations: u64) -> Result<Self, CmpError> {
        let alg = |oid| AlgorithmIdentifierOwned {
            oid,
            parameters: None,
        };
        Self::new(cmpv2::parameter::PbmParameter {
            salt: OctetString::new(salt).map_err(|e| CmpError::Algorithm(e.to_string()))?,
            owf: alg(SHA256),
            iteration_count: iterations,
            mac: alg(HMAC_SHA256),
        })
    }

    /// PBMAC1 with PBKDF2 (PRF hmacWithSHA256, a 32-byte key) and hmacWithSHA256, as RFC 9481
    /// §6.1.2 recommends, for a client (tests).
    pub fn pbmac1_sha256(salt: &[u8], iterations: u64) -> Result<Self, CmpError> {
        let alg = |oid| AlgorithmIdentifierOwned {
            oid,
            parameters: Some(Any::from(Null)),
        };
        Self::pbmac1(
            Pbkdf2Params {
                salt: OctetString::new(salt).map_err(|e| CmpError::Algorithm(e.to_string()))?,
                iteration_count: iterations,
                key_length: Some(32),
                prf: Some(alg(HMAC_SHA256)),
            },
            alg(HMAC_SHA256),
        )
    }

    /// The same parameters with another salt (for the response).
    pub fn with_salt(&self, salt: &[u8]) -> Result<Self, CmpError> {
        let salt = OctetString::new(salt).map_err(|e| CmpError::Algorithm(e.to_string()))?;
        let mut next = self.clone();
        match &mut next.scheme {
            Scheme::PasswordBasedMac { params, .. } => params.salt = salt,
            Scheme::Pbmac1 { kdf, .. } => kdf.salt = salt,
        }
        Ok(next)
    }

    /// The protectionAlg naming these parameters.
    pub fn algorithm(&self) -> Result<AlgorithmIdentifierOwned, CmpError> {
        let enc = |e: der::Error| CmpError::Algorithm(e.to_string());
        Ok(match &self.scheme {
            Scheme::PasswordBasedMac { params, .. } => AlgorithmIdentifierOwned {
                oid: ID_PASSWORD_BASED_MAC,
                parameters: Some(Any::encode_from(params).map_err(enc)?),
            },
            Scheme::Pbmac1 { kdf, mac_alg, .. } => AlgorithmIdentifierOwned {
                oid: PBMAC1,
                parameters: Some(
                    Any::encode_from(&Pbmac1Params {
                        key_derivation_func: AlgorithmIdentifierOwned {
                            oid: ID_PBKDF2,
                            parameters: Some(Any::encode_from(kdf).map_err(enc)?),
                        },
                        message_auth_scheme: mac_alg.clone(),
                    })
                    .map_err(enc)?,
                ),
            },
        })
    }

    /// The MAC of `data` under `secret`. PasswordBasedMac (RFC 4210 §5.1.3.1): the key is the
    /// OWF applied iterationCount times to secret ‖ salt. PBMAC1 (RFC 8018 §7.1): the key is
    /// PBKDF2(secret, salt, iterationCount, keyLength). The MAC is the HMAC of data with it.
    pub fn mac(&self, secret: &[u8], data: &[u8]) -> Vec<u8> {
        use aws_lc_rs::{digest, hmac};
        let key = match &self.scheme {
            Scheme::PasswordBasedMac { params, owf, mac } => {
                let mut ctx = digest::Context::new(owf);
                ctx.update(secret);
                ctx.update(params.salt.as_bytes());
                let mut key = ctx.finish();
                for _ in 1..params.iteration_count {
                    key = digest::digest(owf, key.as_ref());
                }
                hmac::Key::new(*mac, key.as_ref())
            }
            Scheme::Pbmac1 {
                kdf, mac, key_len, ..
            } => {
                let mut key = vec![0u8; *key_len];
                // Both checked in `pbmac1`: a known PRF, at least MIN_PBKDF2_ITERATIONS.
                let prf = pbkdf2_of(kdf.prf_oid()).unwrap_or(aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256);
                let iterations = std::num::NonZeroU32::new(
                    u32::try_from(kdf.iteration_count).unwrap_or(u32::MAX),
                )
                .unwrap_or(std::num::NonZeroU32::MIN);
                aws_lc_rs::pbkdf2::derive(prf, iterations, kdf.salt.as_bytes(), secret, &mut key);
                hmac::Key::new(*mac, &key)
            }
        };
        hmac::sign(&key, data).as_ref().to_vec()
    }
}

impl Request {
    /// Whether the request is MAC-protected (protectionAlg PasswordBasedMac or PBMAC1).
    pub fn is_mac_protected(&self) -> bool {
        self.protection_alg
            .as_ref()
            .is_some_and(|a| a.oid == ID_PASSWORD_BASED_MAC || a.oid == PBMAC1)
    }

    /// The checked PBM parameters of a MAC-protected request.
    pub fn pbm(&self) -> Result<Pbm, CmpError> {
        let alg = self
            .protection_alg
            .as_ref()
            .ok_or_else(|| CmpError::Protection("the message is not protected".into()))?;
        Pbm::from_algorithm(alg)
    }

    /// Verifies the MAC with `secret` (constant time).
    pub fn verify_mac(&self, pbm: &Pbm, secret: &[u8]) -> Result<(), CmpError> {
        let got = self
            .protection
            .as_deref()
            .ok_or_else(|| CmpError::Protection("the message has no protection".into()))?;
        let want = pbm.mac(secret, &self.protected_part);
        if want.len() == got.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(&want, got).is_ok()
        {
            Ok(())
        } else {
            Err(CmpError::BadMac)
        }
    }

    /// Verifies signature protection (RFC 9810 §5.1.3.3): `protectionAlg` over the DER of
    /// ProtectedPart, with the key of the protecting certificate `spki` (the caller finds it at
    /// `extraCerts[0]` and decides whether it is trusted).
    pub fn verify_signature(&self, spki: &spki::SubjectPublicKeyInfoOwned) -> Result<(), CmpError> {
        let alg = self
            .protection_alg
            .as_ref()
            .ok_or_else(|| CmpError::Protection("the message is not protected".into()))?;
        let got = self
            .protection
            .as_deref()
            .ok_or_else(|| CmpError::Protection("the message has no protection".into()))?;
        algorithm::verify(spki, alg, &self.protected_part, got).map_err(|e| match e {
            algorithm::AlgorithmError::BadSignature => {
                CmpError::BadSignature("wrong signature".into())
            }
            other => CmpError::Algorithm(format!("protectionAlg: {other}")),
        })
    }

    /// Checks messageTime against `now` (Unix seconds): absent is allowed (RFC 9483 §3.1
    /// makes it RECOMMENDED), beyond `window` seconds either way is refused.
    pub fn check_time(&self, now: u64, window: u64) -> Result<(), CmpError> {
        match self.message_time {
            Some(t) if t.abs_diff(now) > window => Err(CmpError::Time(t.abs_diff(now), window)),
            _ => Ok(()),
        }
    }
}

/// A certificate request whose proof of possession verified.
#[derive(Clone, Debug)]
pub struct VerifiedCertRequest {
    /// certReqId.
    pub cert_req_id: Int,
    /// The subject asked for (may be absent for kur).
    pub subject: Option<Name>,
    /// The key to certify.
    pub public_key: spki::SubjectPublicKeyInfoOwned,
    /// subjectAltName from the template's extensions, if any.
    pub subject_alt_name: Option<x509_cert::ext::pkix::SubjectAltName>,
}

/// Checks one CertReqMsg: the template's key, and the signature POP over the DER of
/// certRequest with that key (RFC 4211 §4.1, case where poposkInput is absent). raVerified
/// is refused: see [`verify_cert_request_vouched`].
pub fn verify_cert_request(msg: &CertReqMsg) -> Result<VerifiedCertRequest, CmpError> {
    check_cert_request(msg, false)
}

/// As [`verify_cert_request`] for a request an RA the server trusts vouches for (it came
/// signed by that RA, or nested in a message it signed: RFC 9483 §5.2.3.2, RFC 4211 §4):
/// raVerified is accepted as the proof of possession; a signature POP is still checked.
pub fn verify_cert_request_vouched(msg: &CertReqMsg) -> Result<VerifiedCertRequest, CmpError> {
    check_cert_request(msg, true)
}

fn check_cert_request(msg: &CertReqMsg, vouched: bool) -> Result<VerifiedCertRequest, CmpError> {
    let req: &CertRequest = &msg.cert_req;
    let t = &req.cert_template;
    let public_key = t
        .subject_public_key_info
        .clone()
        .ok_or_else(|| CmpError::Template("the template has no publicKey".into()))?;
    algorithm::KeyType::of(&public_key).map_err(|e| CmpError::Template(e.to_string()))?;
    match &msg.popo {
        Some(ProofOfPossession::Signature(sk)) => {
            if sk.poposk_input.is_some() {
                return Err(CmpError::Pop(
                    "poposkInput is only for requests without a subject; send the signature over certRequest"
                        .into(),
                ));
            }
            let signed = req.to_der().map_err(malformed("certRequest"))?;
            let sig = sk
                .signature
                .as_bytes()
                .ok_or_else(|| CmpError::Pop("the signature has unused bits".into()))?;
            algorithm::verify(&public_key, &sk.alg_id, &signed, sig)
                .map_err(|e| CmpError::Pop(e.to_string()))?;
        }
        Some(ProofOfPossession::RaVerified(_)) if vouched => {}
        Some(ProofOfPossession::RaVerified(_)) => {
            return Err(CmpError::Pop(
                "raVerified is accepted only from an RA this server trusts".into(),
            ))
        }
        Some(_) => {
            return Err(CmpError::Pop(
                "only signature proof of possession is supported".into(),
            ))
        }
        None => {
            return Err(CmpError::Pop(
                "the request has no proof of possession".into(),
            ))
        }
    }
    Ok(VerifiedCertRequest {
        cert_req_id: req.cert_req_id.clone(),
        subject: t.subject.clone(),
        public_key,
        subject_alt_name: template_san(t)?,
    })
}

/// A request for a key the server generates (RFC 9483 §4.1.6): the template has no publicKey,
/// or only its algorithm (an empty subjectPublicKey), and there is no proof of possession.
#[derive(Clone, Debug)]
pub struct CentralKeyRequest {
    /// certReqId.
    pub cert_req_id: Int,
    /// The subject asked for.
    pub subject: Option<Name>,
    /// The key algorithm the client prefers (the template's algorithm-only publicKey).
    pub algorithm: Option<AlgorithmIdentifierOwned>,
    /// subjectAltName from the template's extensions, if any.
    pub subject_alt_name: Option<x509_cert::ext::pkix::SubjectAltName>,
}

/// The subjectAltName of a template's extensions.
fn template_san(
    t: &crmf::request::CertTemplate,
) -> Result<Option<x509_cert::ext::pkix::SubjectAltName>, CmpError> {
    use const_oid::AssociatedOid;
    for e in t.extensions.iter().flatten() {
        if e.extn_id == x509_cert::ext::pkix::SubjectAltName::OID {
            return x509_cert::ext::pkix::SubjectAltName::from_der(e.extn_value.as_bytes())
                .map(Some)
                .map_err(|e| CmpError::Template(format!("subjectAltName: {e}")));
        }
    }
    Ok(None)
}

/// Whether `msg` asks the server to generate the key (RFC 9483 §4.1.6): `Some` with what it
/// asks, `None` for a request that brings its own key (see [`verify_cert_request`]). A
/// central-key request with a proof of possession is malformed (there is no key to prove).
pub fn central_key_request(msg: &CertReqMsg) -> Result<Option<CentralKeyRequest>, CmpError> {
    let t = &msg.cert_req.cert_template;
    let algorithm = match &t.subject_public_key_info {
        None => None,
        Some(k) if k.subject_public_key.raw_bytes().is_empty() => Some(k.algorithm.clone()),
        Some(_) => return Ok(None),
    };
    if msg.popo.is_some() {
        return Err(CmpError::Pop(
            "a request for a centrally generated key carries no proof of possession (RFC 9483 section 4.1.6)".into(),
        ));
    }
    Ok(Some(CentralKeyRequest {
        cert_req_id: msg.cert_req.cert_req_id.clone(),
        subject: t.subject.clone(),
        algorithm,
        subject_alt_name: template_san(t)?,
    }))
}

/// `id-ct-KP-aKeyPackage` (RFC 5958 §3), as EST's serverkeygen uses it.
pub use crate::est::ID_CT_KP_A_KEY_PACKAGE;

/// The SignedData (DER, RFC 5652 §5) that carries a centrally generated key (RFC 9483
/// §4.1.6): version 3, eContentType id-ct-KP-aKeyPackage over `package` (an
/// AsymmetricKeyPackage with the one key), signed by the key generation authority `signer`
/// (its certificate and `chain` in certificates; SHA-256 digest; signed attributes
/// contentType and messageDigest), the signer named by issuer and serial number.
pub fn signed_key_package(
    package: &[u8],
    signer: &Certificate,
    chain: &[Certificate],
    signature_algorithm: AlgorithmIdentifierOwned,
    sign: &SignFn<'_>,
) -> Result<Vec<u8>, CmpError> {
    use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
    use cms::content_info::CmsVersion;
    use cms::signed_data::{
        CertificateSet, DigestAlgorithmIdentifiers, EncapsulatedContentInfo, SignedData,
        SignerIdentifier, SignerInfo, SignerInfos,
    };
    use der::asn1::SetOfVec;
    use x509_cert::attr::{Attribute, AttributeValue};
    let enc = |e: der::Error| CmpError::Malformed(format!("encoding the key package: {e}"));
    let sha256 = AlgorithmIdentifierOwned {
        oid: SHA256,
        parameters: None,
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, package);
    let attribute = |oid: ObjectIdentifier, value: AttributeValue| -> Result<Attribute, CmpError> {
        Ok(Attribute {
            oid,
            values: SetOfVec::try_from(vec![value]).map_err(enc)?,
        })
    };
    let signed_attrs = SetOfVec::try_from(vec![
        attribute(
            const_oid::db::rfc5911::ID_CONTENT_TYPE,
            Any::encode_from(&ID_CT_KP_A_KEY_PACKAGE).map_err(enc)?,
        )?,
        attribute(
            const_oid::db::rfc5911::ID_MESSAGE_DIGEST,
            Any::encode_from(&OctetString::new(digest.as_ref().to_vec()).map_err(enc)?)
                .map_err(enc)?,
        )?,
    ])
    .map_err(enc)?;
    // RFC 5652 §5.4: the signature is over the DER of the attributes as a SET OF.
    let signature = sign(&signed_attrs.to_der().map_err(enc)?).map_err(CmpError::Protection)?;
    let mut certificates = vec![CertificateChoices::Certificate(signer.clone())];
    certificates.extend(chain.iter().cloned().map(CertificateChoices::Certificate));
    SignedData {
        version: CmsVersion::V3,
        digest_algorithms: DigestAlgorithmIdentifiers::try_from(vec![sha256.clone()])
            .map_err(enc)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_CT_KP_A_KEY_PACKAGE,
            econtent: Some(
                Any::encode_from(&OctetString::new(package.to_vec()).map_err(enc)?).map_err(enc)?,
            ),
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(certificates).map_err(enc)?,
        )),
        crls: None,
        signer_infos: SignerInfos(
            SetOfVec::try_from(vec![SignerInfo {
                version: CmsVersion::V1,
                sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                    issuer: signer.tbs_certificate.issuer.clone(),
                    serial_number: signer.tbs_certificate.serial_number.clone(),
                }),
                digest_alg: sha256,
                signed_attrs: Some(signed_attrs),
                signature_algorithm,
                signature: OctetString::new(signature).map_err(enc)?,
                unsigned_attrs: None,
            }])
            .map_err(enc)?,
        ),
    }
    .to_der()
    .map_err(enc)
}

/// A CRMF request kept while an operator decides on it: the PKIBody it came in (`ir` 0,
/// `cr` 2, `kur` 7) with its one CertReqMsg, DER. The RA request keeps these bytes where a
/// p10cr's keeps its PKCS#10; [`parse_held_request`] reads them back, so the approval issues
/// from the very request whose proof of possession was checked.
pub fn held_request(tag: u8, msg: &CertReqMsg) -> Result<Vec<u8>, CmpError> {
    let enc = |e: der::Error| CmpError::Malformed(format!("encoding the held request: {e}"));
    if !matches!(tag, 0 | 2 | 7) {
        return Err(CmpError::Malformed(format!(
            "PKIBody [{tag}] is not a CRMF certificate request"
        )));
    }
    explicit(tag, &vec![msg.clone()])
        .map_err(enc)?
        .to_der()
        .map_err(enc)
}

/// Reads bytes [`held_request`] made: the body's tag and its CertReqMsg. Anything else
/// (e.g. a PKCS#10 request) is `Malformed`.
pub fn parse_held_request(der: &[u8]) -> Result<(u8, CertReqMsg), CmpError> {
    let any = Any::from_der(der).map_err(malformed("held request"))?;
    match parse_body(&any)? {
        RequestBody::Ir(mut m) if m.len() == 1 => Ok((0, m.remove(0))),
        RequestBody::Cr(mut m) if m.len() == 1 => Ok((2, m.remove(0))),
        RequestBody::Kur(mut m) if m.len() == 1 => Ok((7, m.remove(0))),
        _ => Err(CmpError::Malformed(
            "not an ir, cr or kur with one CertReqMsg".into(),
        )),
    }
}

/// The response tag for a request tag: ir → ip, cr and p10cr → cp, kur → kup.
pub fn response_tag(request_tag: u8) -> u8 {
    match request_tag {
        0 => 1,
        7 => 8,
        _ => 3,
    }
}

/// The certHash of a certificate for certConf (RFC 9810 §5.3.18): the hash of the certificate's
/// signature algorithm (SHA-256 for every algorithm pkid signs with but ECDSA/RSA with SHA-384
/// and SHA-512), unless hashAlg names another.
pub fn cert_hash(
    cert_der: &[u8],
    hash_alg: Option<&AlgorithmIdentifierOwned>,
) -> Result<Vec<u8>, CmpError> {
    use aws_lc_rs::digest;
    let alg = match hash_alg {
        Some(a) => owf(a.oid).ok_or_else(|| {
            CmpError::Algorithm(format!("certConf hashAlg {} is not supported", a.oid))
        })?,
        None => {
            let cert = Certificate::from_der(cert_der).map_err(malformed("certificate"))?;
            let oid = cert.signature_algorithm.oid;
            use const_oid::db::rfc5912 as o;
            if oid == o::ECDSA_WITH_SHA_384 || oid == o::SHA_384_WITH_RSA_ENCRYPTION {
                &digest::SHA384
            } else if oid == o::ECDSA_WITH_SHA_512 || oid == o::SHA_512_WITH_RSA_ENCRYPTION {
                &digest::SHA512
            } else {
                &digest::SHA256
            }
        }
    };
    Ok(digest::digest(alg, cert_der).as_ref().to_vec())
}

/// The header of a response.
#[derive(Clone, Debug)]
pub struct ResponseHeader {
    /// The CA that answers (its subject).
    pub sender: Name,
    /// The request's sender.
    pub recipient: GeneralName,
    /// Unix seconds.
    pub message_time: u64,
    /// The request's transactionID.
    pub transaction_id: Vec<u8>,
    /// A fresh 16-byte nonce.
    pub sender_nonce: [u8; NONCE_BYTES],
    /// The request's senderNonce.
    pub recip_nonce: Option<Vec<u8>>,
    /// For MAC protection, the request's senderKID.
    pub sender_kid: Option<Vec<u8>>,
    /// Whether implicit confirmation is granted (generalInfo implicitConfirm).
    pub implicit_confirm: bool,
    /// pvno, as the request had it.
    pub pvno: u8,
}

/// A response body.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ResponseBody {
    /// `ip` (to ir), `cp` (to cr and p10cr) or `kup` (to kur): the tag says which.
    CertRep {
        /// 1 (ip), 3 (cp) or 8 (kup).
        tag: u8,
        /// The content.
        content: CertRepContent,
    },
    /// `pkiConf`.
    PkiConf,
    /// `error`.
    Error(ErrorContent),
    /// `genp`.
    Genp(Vec<cmpv2::gen::InfoTypeAndValue>),
    /// `pollRep`.
    PollRep(Vec<PollRepEntry>),
    /// `rp` (to rr): one status per RevDetails.
    RevRep(Vec<StatusInfo>),
    /// `nested` (RFC 9810 §5.1.3.4, RFC 9483 §5.2.2.2): the DER of each inner response, in
    /// the order of the requests.
    Nested(Vec<Vec<u8>>),
}

/// ```text
/// RevRepContent ::= SEQUENCE {
///     status       SEQUENCE SIZE (1..MAX) OF PKIStatusInfo,
///     revCerts [0] SEQUENCE SIZE (1..MAX) OF CertId OPTIONAL,
///     crls     [1] SEQUENCE SIZE (1..MAX) OF CertificateList OPTIONAL }
/// ```
/// RFC 9810 §5.3.10; `cmpv2`'s type holds its own (unusable) PKIStatusInfo, and RFC 9483
/// §4.2 leaves revCerts and crls out, so only `status` is modelled.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct RevRepContent {
    status: Vec<StatusInfo>,
}

/// What an `rr` asks (RFC 9483 §4.2): the certificate by issuer and serial, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationAsked {
    /// The certificate's issuer (certTemplate.issuer).
    pub issuer: Name,
    /// The certificate's serial (certTemplate.serialNumber), as encoded.
    pub serial: x509_cert::serial_number::SerialNumber,
    /// crlEntryDetails' reasonCode; `None` when absent (unspecified).
    pub reason: Option<crate::revocation::CrlReason>,
}

/// Reads the one RevDetails of an `rr` (RFC 9483 §4.2: exactly one, with issuer and
/// serialNumber in the template and at most a reasonCode in crlEntryDetails).
pub fn revocation_asked(content: &cmpv2::rev::RevReqContent) -> Result<RevocationAsked, CmpError> {
    let [details] = content.as_slice() else {
        return Err(CmpError::Template(format!(
            "{} RevDetails in one rr; RFC 9483 section 4.2 allows one",
            content.len()
        )));
    };
    let t = &details.cert_details;
    let (Some(issuer), Some(serial)) = (t.issuer.clone(), t.serial_number.clone()) else {
        return Err(CmpError::Template(
            "the rr's certTemplate needs the certificate's issuer and serialNumber".into(),
        ));
    };
    let mut reason = None;
    for e in details.crl_entry_details.iter().flatten() {
        if e.extn_id == const_oid::db::rfc5280::ID_CE_CRL_REASONS {
            reason = Some(
                crate::revocation::CrlReason::from_der(e.extn_value.as_bytes())
                    .map_err(|e| CmpError::Template(format!("crlEntryDetails reasonCode: {e}")))?,
            );
        } else if e.critical {
            return Err(CmpError::Template(format!(
                "crlEntryDetails extension {} is critical and not understood",
                e.extn_id
            )));
        }
    }
    Ok(RevocationAsked {
        issuer,
        serial,
        reason,
    })
}

/// The oldCertID control of a kur's certRequest (RFC 4211 §6.5, RFC 9483 §4.1.3): the
/// issuer and serial of the certificate being updated, when the client names it.
pub fn old_cert_id(msg: &CertReqMsg) -> Result<Option<crmf::controls::CertId>, CmpError> {
    const ID_REG_CTRL_OLD_CERT_ID: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.5.1.5");
    for c in msg.cert_req.controls.iter().flatten() {
        if c.oid == ID_REG_CTRL_OLD_CERT_ID {
            return c
                .value
                .decode_as::<crmf::controls::CertId>()
                .map(Some)
                .map_err(|e| CmpError::Template(format!("oldCertID: {e}")));
        }
    }
    Ok(None)
}

/// Signs the DER ProtectedPart with the responder's key; the error is a message for the log.
pub type SignFn<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, String> + 'a;

/// How a response is protected.
pub enum ResponseProtection<'a> {
    /// PBM with these parameters and the shared secret.
    Mac {
        /// Parameters (with a fresh salt).
        pbm: &'a Pbm,
        /// The secret.
        secret: &'a [u8],
    },
    /// Signed (RFC 9810 §5.1.3.3) by a CMP responder key: `algorithm` is its signature
    /// algorithm, `sign` signs the DER ProtectedPart (the daemon's signer; no key here).
    Signature {
        /// protectionAlg.
        algorithm: AlgorithmIdentifierOwned,
        /// Signs the bytes, returning the signature in its X.509 encoding.
        sign: &'a SignFn<'a>,
    },
    /// Unprotected (only for an error to a request whose protection could not be verified).
    None,
}

fn explicit<T: Encode>(number: u8, value: &T) -> Result<Any, der::Error> {
    let inner = value.to_der()?;
    let tag = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::new(number),
    };
    Any::new(tag, inner)
}

impl ResponseBody {
    /// The error body for `text` and `bits` (status rejection).
    pub fn error(bits: &[FailureBit], text: &str) -> Result<Self, der::Error> {
        Ok(Self::Error(ErrorContent {
            status: rejection(bits, text)?,
            error_code: None,
            error_details: None,
        }))
    }

    /// A CertRepMessage saying the request waits (for an operator); the client polls.
    pub fn waiting(tag: u8, cert_req_id: Int, text: &str) -> Self {
        Self::CertRep {
            tag,
            content: CertRepContent {
                ca_pubs: None,
                response: vec![CertResponse {
                    cert_req_id,
                    status: StatusInfo {
                        status: PkiStatus::Waiting,
                        status_string: Some(vec![text.to_owned()]),
                        fail_info: None,
                    },
                    certified_key_pair: None,
                    rsp_info: None,
                }],
            },
        }
    }

    /// A CertRepMessage refusing the request (status rejection with its failure bits): the
    /// answer to a pollReq once an operator rejected it (RFC 9483 §4.4 and §4.1.1).
    pub fn rejected(
        tag: u8,
        cert_req_id: Int,
        bits: &[FailureBit],
        text: &str,
    ) -> Result<Self, der::Error> {
        Ok(Self::CertRep {
            tag,
            content: CertRepContent {
                ca_pubs: None,
                response: vec![CertResponse {
                    cert_req_id,
                    status: rejection(bits, text)?,
                    certified_key_pair: None,
                    rsp_info: None,
                }],
            },
        })
    }

    /// A CertRepMessage carrying one issued certificate.
    pub fn issued(
        tag: u8,
        cert_req_id: Int,
        certificate: Certificate,
        ca_pubs: Option<Vec<Certificate>>,
    ) -> Self {
        Self::issued_with_key(tag, cert_req_id, certificate, ca_pubs, None)
    }

    /// A CertRepMessage carrying one issued certificate and, from central key generation,
    /// its private key enveloped to the requester (RFC 9483 §4.1.6).
    pub fn issued_with_key(
        tag: u8,
        cert_req_id: Int,
        certificate: Certificate,
        ca_pubs: Option<Vec<Certificate>>,
        private_key: Option<cms::enveloped_data::EnvelopedData>,
    ) -> Self {
        use cmpv2::certified_key_pair::CertOrEncCert;
        Self::CertRep {
            tag,
            content: CertRepContent {
                ca_pubs,
                response: vec![CertResponse {
                    cert_req_id,
                    status: StatusInfo {
                        status: PkiStatus::Accepted,
                        status_string: None,
                        fail_info: None,
                    },
                    certified_key_pair: Some(CertifiedKeyPair {
                        cert_or_enc_cert: CertOrEncCert::Certificate(Box::new(certificate)),
                        private_key: private_key.map(EncryptedKey::EnvelopedData),
                        publication_info: None,
                    }),
                    rsp_info: None,
                }],
            },
        }
    }

    fn encode(&self) -> Result<Any, der::Error> {
        match self {
            Self::CertRep { tag, content } => explicit(*tag, content),
            Self::PkiConf => explicit(19, &Null),
            Self::Error(e) => explicit(23, e),
            Self::Genp(itavs) => explicit(22, itavs),
            Self::PollRep(entries) => explicit(26, entries),
            Self::RevRep(status) => explicit(
                12,
                &RevRepContent {
                    status: status.clone(),
                },
            ),
            Self::Nested(messages) => explicit(
                20,
                &messages
                    .iter()
                    .map(|m| Any::from_der(m))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        }
    }
}

/// A rejection status with its text and failure bits.
pub fn rejection(bits: &[FailureBit], text: &str) -> Result<StatusInfo, der::Error> {
    Ok(StatusInfo {
        status: PkiStatus::Rejection,
        status_string: Some(vec![text.to_owned()]),
        fail_info: Some(failure_info(bits)?),
    })
}

/// Encodes a response: header, body, protection, extraCerts.
pub fn encode_response(
    header: &ResponseHeader,
    body: &ResponseBody,
    protection: ResponseProtection<'_>,
    extra_certs: Vec<Certificate>,
) -> Result<Vec<u8>, CmpError> {
    let enc = |e: der::Error| CmpError::Malformed(format!("encoding the response: {e}"));
    encode_message(header, body.encode().map_err(enc)?, protection, extra_certs)
}

/// Encodes a request body `[tag] value` under `header` (the client's side, for tests and the
/// benchmark: `header.sender` is then the client and `recip_nonce` the server's last nonce;
/// a signed request carries its protecting certificate first in `extra_certs`).
pub fn encode_request<T: Encode>(
    header: &ResponseHeader,
    tag: u8,
    value: &T,
    protection: ResponseProtection<'_>,
    extra_certs: Vec<Certificate>,
) -> Result<Vec<u8>, CmpError> {
    let body = explicit(tag, value).map_err(|e| CmpError::Malformed(e.to_string()))?;
    encode_message(header, body, protection, extra_certs)
}

fn encode_message(
    header: &ResponseHeader,
    body_any: Any,
    protection: ResponseProtection<'_>,
    extra_certs: Vec<Certificate>,
) -> Result<Vec<u8>, CmpError> {
    let enc = |e: der::Error| CmpError::Malformed(format!("encoding the message: {e}"));

    let protection_alg = match &protection {
        ResponseProtection::Mac { pbm, .. } => Some(pbm.algorithm()?),
        ResponseProtection::Signature { algorithm, .. } => Some(algorithm.clone()),
        ResponseProtection::None => None,
    };
    let time =
        GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(header.message_time))
            .map_err(enc)?;
    let general_info = header.implicit_confirm.then(|| {
        vec![cmpv2::gen::InfoTypeAndValue {
            oid: ID_IT_IMPLICIT_CONFIRM,
            value: Some(Any::from(Null)),
        }]
    });
    let h = PkiHeader {
        pvno: Pvno::Cmp2000,
        sender: GeneralName::DirectoryName(header.sender.clone()),
        recipient: header.recipient.clone(),
        message_time: Some(time),
        protection_alg,
        sender_kid: header
            .sender_kid
            .as_ref()
            .map(|k| OctetString::new(k.clone()))
            .transpose()
            .map_err(enc)?,
        recip_kid: None,
        trans_id: (!header.transaction_id.is_empty())
            .then(|| OctetString::new(header.transaction_id.clone()))
            .transpose()
            .map_err(enc)?,
        sender_nonce: Some(OctetString::new(header.sender_nonce.to_vec()).map_err(enc)?),
        recip_nonce: header
            .recip_nonce
            .as_ref()
            .map(|n| OctetString::new(n.clone()))
            .transpose()
            .map_err(enc)?,
        free_text: None,
        general_info,
    };
    let _ = header.pvno;
    let header_any = Any::encode_from(&h).map_err(enc)?;
    let protection = match protection {
        ResponseProtection::Mac { pbm, secret } => {
            let part = ProtectedPart {
                header: (&header_any).into(),
                body: (&body_any).into(),
            }
            .to_der()
            .map_err(enc)?;
            Some(BitString::from_bytes(&pbm.mac(secret, &part)).map_err(enc)?)
        }
        ResponseProtection::Signature { sign, .. } => {
            let part = ProtectedPart {
                header: (&header_any).into(),
                body: (&body_any).into(),
            }
            .to_der()
            .map_err(enc)?;
            let signature = sign(&part).map_err(CmpError::Protection)?;
            Some(BitString::from_bytes(&signature).map_err(enc)?)
        }
        ResponseProtection::None => None,
    };
    RawMessage {
        header: header_any,
        body: body_any,
        protection,
        extra_certs: (!extra_certs.is_empty()).then_some(extra_certs),
    }
    .to_der()
    .map_err(enc)
}

/// The general-message infoTypes pkid answers (RFC 9810 §5.3.19, RFC 9483 §4.3), under
/// id-it (1.3.6.1.5.5.7.4).
pub mod info_type {
    use const_oid::ObjectIdentifier;
    /// signKeyPairTypes: the key types a request may certify.
    pub const SIGN_KEY_PAIR_TYPES: ObjectIdentifier =
        const_oid::db::rfc5912::ID_IT_SIGN_KEY_PAIR_TYPES;
    /// caCerts: the CA certificates.
    pub const CA_CERTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.17");
    /// rootCaKeyUpdate: the answer to rootCaCert.
    pub const ROOT_CA_KEY_UPDATE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.18");
    /// certReqTemplate.
    pub const CERT_REQ_TEMPLATE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.19");
    /// rootCaCert: asks whether a new root exists.
    pub const ROOT_CA_CERT: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.20");
    /// crlStatusList: the CRLs the client has.
    pub const CRL_STATUS_LIST: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.22");
    /// crls: the answer to crlStatusList.
    pub const CRLS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.4.23");
    /// id-regCtrl-algId (RFC 9483 §4.3.3).
    pub const REG_CTRL_ALG_ID: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.5.1.11");
    /// id-regCtrl-rsaKeyLen (RFC 9483 §4.3.3).
    pub const REG_CTRL_RSA_KEY_LEN: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.5.1.12");
}

/// ```text
/// CRLSource ::= CHOICE {
///     dpn     [0] DistributionPointName,
///     issuer  [1] GeneralNames }
/// ```
/// RFC 9810 §5.3.19.16 (the module uses EXPLICIT TAGS).
#[derive(Clone, Debug, Eq, PartialEq, der::Choice)]
pub enum CrlSource {
    /// A distribution point the client took the CRL from.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", constructed = "true")]
    Dpn(x509_cert::ext::pkix::name::DistributionPointName),
    /// The CRL issuer.
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", constructed = "true")]
    Issuer(Vec<GeneralName>),
}

/// ```text
/// CRLStatus ::= SEQUENCE {
///     source      CRLSource,
///     thisUpdate  Time OPTIONAL }
/// ```
/// RFC 9810 §5.3.19.16.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CrlStatus {
    /// Which CRL.
    pub source: CrlSource,
    /// The thisUpdate of the one the client has.
    pub this_update: Option<x509_cert::time::Time>,
}

/// ```text
/// CertReqTemplateContent ::= SEQUENCE {
///     certTemplate  CertTemplate,
///     keySpec       Controls OPTIONAL }
/// ```
/// RFC 9810 §5.3.19.16, RFC 9483 §4.3.3.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CertReqTemplateContent {
    /// What the CA will put in the certificate (empty values: the client's to fill).
    pub cert_template: crmf::request::CertTemplate,
    /// The key algorithm (id-regCtrl-algId or id-regCtrl-rsaKeyLen).
    pub key_spec: Option<Vec<x509_cert::attr::AttributeTypeAndValue>>,
}

/// One question of a genm.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GeneralQuestion {
    /// signKeyPairTypes.
    SignKeyPairTypes,
    /// caCerts.
    CaCerts,
    /// rootCaCert (with the root the client has, if it said).
    RootCaCert(Option<Box<Certificate>>),
    /// certReqTemplate.
    CertReqTemplate,
    /// crlStatusList.
    CrlStatusList(Vec<CrlStatus>),
    /// An infoType pkid does not answer (RFC 9810 §5.3.19: ignored).
    Other(ObjectIdentifier),
}

/// Reads the questions of a genm.
pub fn general_questions(
    itavs: &[cmpv2::gen::InfoTypeAndValue],
) -> Result<Vec<GeneralQuestion>, CmpError> {
    use info_type as it;
    itavs
        .iter()
        .map(|i| {
            Ok(match i.oid {
                it::SIGN_KEY_PAIR_TYPES => GeneralQuestion::SignKeyPairTypes,
                it::CA_CERTS => GeneralQuestion::CaCerts,
                it::CERT_REQ_TEMPLATE => GeneralQuestion::CertReqTemplate,
                it::ROOT_CA_CERT => GeneralQuestion::RootCaCert(
                    i.value
                        .as_ref()
                        .map(|v| v.decode_as::<Certificate>().map(Box::new))
                        .transpose()
                        .map_err(malformed("rootCaCert"))?,
                ),
                it::CRL_STATUS_LIST => GeneralQuestion::CrlStatusList(
                    i.value
                        .as_ref()
                        .ok_or_else(|| CmpError::Malformed("crlStatusList without a value".into()))?
                        .decode_as::<Vec<CrlStatus>>()
                        .map_err(malformed("crlStatusList"))?,
                ),
                other => GeneralQuestion::Other(other),
            })
        })
        .collect()
}

/// The answers of a genp, built from what the server decided.
pub mod general_answer {
    use super::*;
    use cmpv2::gen::InfoTypeAndValue;

    fn itav<T: Encode>(
        oid: ObjectIdentifier,
        value: Option<&T>,
    ) -> Result<InfoTypeAndValue, CmpError> {
        Ok(InfoTypeAndValue {
            oid,
            value: value
                .map(|v| v.to_der().and_then(|d| Any::from_der(&d)))
                .transpose()
                .map_err(|e| CmpError::Malformed(format!("encoding a genp value: {e}")))?,
        })
    }

    /// signKeyPairTypes: `SEQUENCE OF AlgorithmIdentifier` of the allowed key types.
    pub fn sign_key_pair_types(keys: &[algorithm::KeyType]) -> Result<InfoTypeAndValue, CmpError> {
        let algs: Vec<AlgorithmIdentifierOwned> =
            keys.iter().map(key_algorithm).collect::<Result<_, _>>()?;
        itav(info_type::SIGN_KEY_PAIR_TYPES, Some(&algs))
    }

    /// The AlgorithmIdentifier of a key type (id-ecPublicKey with its curve, rsaEncryption).
    pub fn key_algorithm(k: &algorithm::KeyType) -> Result<AlgorithmIdentifierOwned, CmpError> {
        use const_oid::db::rfc5912 as o;
        let enc = |e: der::Error| CmpError::Malformed(e.to_string());
        Ok(match k {
            algorithm::KeyType::EcP256 => AlgorithmIdentifierOwned {
                oid: o::ID_EC_PUBLIC_KEY,
                parameters: Some(Any::encode_from(&o::SECP_256_R_1).map_err(enc)?),
            },
            algorithm::KeyType::EcP384 => AlgorithmIdentifierOwned {
                oid: o::ID_EC_PUBLIC_KEY,
                parameters: Some(Any::encode_from(&o::SECP_384_R_1).map_err(enc)?),
            },
            algorithm::KeyType::Rsa(_) => AlgorithmIdentifierOwned {
                oid: o::RSA_ENCRYPTION,
                parameters: Some(Any::from(Null)),
            },
        })
    }

    /// caCerts: `SEQUENCE SIZE (1..MAX) OF CMPCertificate`.
    pub fn ca_certs(certs: &[Certificate]) -> Result<InfoTypeAndValue, CmpError> {
        itav(info_type::CA_CERTS, Some(&certs.to_vec()))
    }

    /// rootCaKeyUpdate without a value: no root CA key update is available (RFC 9483 §4.3.2).
    pub fn no_root_ca_key_update() -> Result<InfoTypeAndValue, CmpError> {
        itav::<Null>(info_type::ROOT_CA_KEY_UPDATE, None)
    }

    /// certReqTemplate: the subject attributes the CA fills and, when the profile allows one
    /// key type, that type as keySpec.
    pub fn cert_req_template(
        subject: Name,
        only_key: Option<algorithm::KeyType>,
    ) -> Result<InfoTypeAndValue, CmpError> {
        let enc = |e: der::Error| CmpError::Malformed(e.to_string());
        let key_spec = match only_key {
            None => None,
            Some(algorithm::KeyType::Rsa(bits)) => {
                Some(vec![x509_cert::attr::AttributeTypeAndValue {
                    oid: info_type::REG_CTRL_RSA_KEY_LEN,
                    value: Any::encode_from(&(bits as u64)).map_err(enc)?,
                }])
            }
            Some(k) => Some(vec![x509_cert::attr::AttributeTypeAndValue {
                oid: info_type::REG_CTRL_ALG_ID,
                value: Any::encode_from(&key_algorithm(&k)?).map_err(enc)?,
            }]),
        };
        let content = CertReqTemplateContent {
            cert_template: crmf::request::CertTemplate {
                version: None,
                serial_number: None,
                signature: None,
                issuer: None,
                validity: None,
                subject: Some(subject),
                subject_public_key_info: None,
                issuer_unique_id: None,
                subject_unique_id: None,
                extensions: None,
            },
            key_spec,
        };
        itav(info_type::CERT_REQ_TEMPLATE, Some(&content))
    }

    /// crls: the CRLs newer than the client's (no value when none is).
    pub fn crls(crls: &[Vec<u8>]) -> Result<InfoTypeAndValue, CmpError> {
        if crls.is_empty() {
            return itav::<Null>(info_type::CRLS, None);
        }
        let list: Vec<Any> = crls
            .iter()
            .map(|d| Any::from_der(d))
            .collect::<Result<_, _>>()
            .map_err(malformed("CRL"))?;
        itav(info_type::CRLS, Some(&list))
    }
}

/// A response as a client reads it (for tests, benchmarks and diagnostics).
#[derive(Clone, Debug)]
pub struct ResponseView {
    /// The PKIBody's context tag (1 ip, 3 cp, 19 pkiConf, 23 error, …).
    pub body_tag: u8,
    /// The status of an error or of the first CertResponse.
    pub status: Option<StatusInfo>,
    /// The issued certificate of the first CertResponse.
    pub certificate: Option<Certificate>,
    /// The centrally generated private key of the first CertResponse, as enveloped.
    pub private_key: Option<cms::enveloped_data::EnvelopedData>,
    /// caPubs of a CertRepMessage.
    pub ca_pubs: Vec<Certificate>,
    /// extraCerts.
    pub extra_certs: Vec<Certificate>,
    /// transactionID.
    pub transaction_id: Option<Vec<u8>>,
    /// senderNonce.
    pub sender_nonce: Option<Vec<u8>>,
    /// recipNonce.
    pub recip_nonce: Option<Vec<u8>>,
    /// Whether generalInfo grants implicit confirmation.
    pub implicit_confirm: bool,
    /// The InfoTypeAndValues of a genp.
    pub general: Vec<cmpv2::gen::InfoTypeAndValue>,
    /// The inner messages of a `nested` body, DER, in order.
    pub nested: Vec<Vec<u8>>,
    /// The header's sender.
    pub sender: Option<GeneralName>,
    protection_alg: Option<AlgorithmIdentifierOwned>,
    protected_part: Vec<u8>,
    protection: Option<Vec<u8>>,
}

impl ResponseView {
    /// Whether the response carries a protection.
    pub fn is_protected(&self) -> bool {
        self.protection.is_some()
    }

    /// Verifies a PBM protection with `secret`.
    pub fn verify_mac(&self, secret: &[u8]) -> Result<(), CmpError> {
        let alg = self
            .protection_alg
            .as_ref()
            .ok_or_else(|| CmpError::Protection("the response is not protected".into()))?;
        let pbm = Pbm::from_algorithm(alg)?;
        let got = self
            .protection
            .as_deref()
            .ok_or_else(|| CmpError::Protection("the response has no protection".into()))?;
        if pbm.mac(secret, &self.protected_part) == got {
            Ok(())
        } else {
            Err(CmpError::BadMac)
        }
    }

    /// Verifies a signature protection with the signer's key `spki`.
    pub fn verify_signature(&self, spki: &spki::SubjectPublicKeyInfoOwned) -> Result<(), CmpError> {
        let alg = self
            .protection_alg
            .as_ref()
            .ok_or_else(|| CmpError::Protection("the response is not protected".into()))?;
        let got = self
            .protection
            .as_deref()
            .ok_or_else(|| CmpError::Protection("the response has no protection".into()))?;
        algorithm::verify(spki, alg, &self.protected_part, got)
            .map_err(|e| CmpError::BadSignature(e.to_string()))
    }

    /// Whether the status carries failure bit `bit`.
    pub fn has_failure(&self, bit: FailureBit) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.fail_info.as_ref())
            .is_some_and(|f| has_failure_bit(f, bit))
    }

    /// The protectionAlg's OID (PasswordBasedMac, PBMAC1 or a signature algorithm).
    pub fn protection_oid(&self) -> Option<ObjectIdentifier> {
        self.protection_alg.as_ref().map(|a| a.oid)
    }

    /// The status string, joined.
    pub fn status_text(&self) -> String {
        self.status
            .as_ref()
            .and_then(|s| s.status_string.as_ref())
            .map(|t| t.join(" "))
            .unwrap_or_default()
    }
}

/// Parses a response PKIMessage (the client's side of [`encode_response`]).
pub fn parse_response(der: &[u8]) -> Result<ResponseView, CmpError> {
    use cmpv2::certified_key_pair::CertOrEncCert;
    let raw = RawMessage::from_der(der).map_err(malformed("PKIMessage"))?;
    let header_der = raw.header.to_der().map_err(malformed("header"))?;
    let body_der = raw.body.to_der().map_err(malformed("body"))?;
    let header = PkiHeader::from_der(&header_der).map_err(malformed("header"))?;
    let body_tag = match raw.body.tag() {
        Tag::ContextSpecific { number, .. } => number.value(),
        other => return Err(CmpError::Malformed(format!("body tag {other}"))),
    };
    let (mut status, mut certificate, mut ca_pubs) = (None, None, Vec::new());
    let mut private_key = None;
    let mut general = Vec::new();
    let mut nested = Vec::new();
    match body_tag {
        1 | 3 | 8 => {
            let rep = CertRepContent::from_der(raw.body.value()).map_err(malformed("CertRep"))?;
            ca_pubs = rep.ca_pubs.unwrap_or_default();
            if let Some(r) = rep.response.into_iter().next() {
                status = Some(r.status);
                if let Some(kp) = r.certified_key_pair {
                    if let CertOrEncCert::Certificate(c) = kp.cert_or_enc_cert {
                        certificate = Some(*c);
                    }
                    private_key = kp.private_key.map(|EncryptedKey::EnvelopedData(e)| e);
                }
            }
        }
        23 => {
            let e = ErrorContent::from_der(raw.body.value()).map_err(malformed("error"))?;
            status = Some(e.status);
        }
        12 => {
            let rp = RevRepContent::from_der(raw.body.value()).map_err(malformed("rp"))?;
            status = rp.status.into_iter().next();
        }
        22 => {
            general = Vec::<cmpv2::gen::InfoTypeAndValue>::from_der(raw.body.value())
                .map_err(malformed("genp"))?;
        }
        20 => {
            nested = Vec::<Any>::from_der(raw.body.value())
                .map_err(malformed("nested"))?
                .iter()
                .map(|m| m.to_der().map_err(malformed("nested")))
                .collect::<Result<_, _>>()?;
        }
        _ => {}
    }
    let protected_part = ProtectedPart {
        header: der::AnyRef::from_der(&header_der).map_err(malformed("header"))?,
        body: der::AnyRef::from_der(&body_der).map_err(malformed("body"))?,
    }
    .to_der()
    .map_err(malformed("ProtectedPart"))?;
    Ok(ResponseView {
        body_tag,
        status,
        certificate,
        private_key,
        ca_pubs,
        extra_certs: raw.extra_certs.unwrap_or_default(),
        transaction_id: octets(header.trans_id.clone()),
        sender_nonce: octets(header.sender_nonce.clone()),
        recip_nonce: octets(header.recip_nonce.clone()),
        implicit_confirm: header
            .general_info
            .as_ref()
            .is_some_and(|g| g.iter().any(|i| i.oid == ID_IT_IMPLICIT_CONFIRM)),
        general,
        nested,
        sender: Some(header.sender.clone()),
        protection_alg: header.protection_alg.clone(),
        protected_part,
        protection: raw.protection.map(|p| p.raw_bytes().to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_info_is_a_named_bit_list() {
        // badTime is bit 3: 0001 0000, three unused bits after it dropped (X.690 §11.2.2).
        let b = failure_info(&[FailureBit::BadTime]).expect("bits");
        assert_eq!(b.to_der().expect("der"), [0x03, 0x02, 0x04, 0x10]);
        assert!(has_failure_bit(&b, FailureBit::BadTime));
        assert!(!has_failure_bit(&b, FailureBit::BadRequest));
        // transactionIdInUse is bit 21: the third byte's 6th bit, two unused bits.
        let b = failure_info(&[FailureBit::TransactionIdInUse]).expect("bits");
        assert_eq!(b.to_der().expect("der"), [0x03, 0x04, 0x02, 0, 0, 0x04]);
        let b = failure_info(&[FailureBit::BadAlg, FailureBit::BadPop]).expect("bits");
        assert_eq!(b.to_der().expect("der"), [0x03, 0x03, 0x06, 0x80, 0x40]);
    }

    /// The RFC 4210 §5.1.3.1 derivation, checked against an independent computation.
    #[test]
    fn pbm_key_is_the_owf_iterated_over_secret_and_salt() {
        use aws_lc_rs::{digest, hmac};
        let params = cmpv2::parameter::PbmParameter {
            salt: OctetString::new(b"0123456789abcdef".to_vec()).expect("salt"),
            owf: AlgorithmIdentifierOwned {
                oid: SHA256,
                parameters: None,
            },
            iteration_count: 500,
            mac: AlgorithmIdentifierOwned {
                oid: HMAC_SHA1_IPSEC,
                parameters: None,
            },
        };
        let pbm = Pbm::new(params).expect("valid");
        let mut k = digest::digest(&digest::SHA256, b"secret0123456789abcdef")
            .as_ref()
            .to_vec();
        for _ in 1..500 {
            k = digest::digest(&digest::SHA256, &k).as_ref().to_vec();
        }
        let want = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &k),
            b"data",
        );
        assert_eq!(pbm.mac(b"secret", b"data"), want.as_ref());
        let alg = pbm.algorithm().expect("alg");
        assert_eq!(Pbm::from_algorithm(&alg).expect("round trip"), pbm);
    }

    /// PBMAC1 (RFC 8018 §7.1) against MACs computed independently with OpenSSL 3.0 (the
    /// commands are in testdata/cmp/README.md): PBKDF2 with the PRF, iterations and keyLength
    /// of the parameters, then HMAC; without keyLength the key is the MAC hash's length, and
    /// without prf PBKDF2 uses its DEFAULT, hmacWithSHA1.
    #[test]
    fn pbmac1_matches_openssl_pbkdf2_then_hmac() {
        let data = "Cảm biến 01 · PBMAC1".as_bytes();
        let secret = b"pkid-pbmac1-test";
        let salt: Vec<u8> = (0u8..16).collect();
        let alg = |oid| AlgorithmIdentifierOwned {
            oid,
            parameters: Some(Any::from(Null)),
        };
        let pbmac1 = |prf: Option<ObjectIdentifier>, iterations, key_length, mac| {
            let kdf = Pbkdf2Params {
                salt: OctetString::new(salt.clone()).expect("salt"),
                iteration_count: iterations,
                key_length,
                prf: prf.map(alg),
            };
            AlgorithmIdentifierOwned {
                oid: PBMAC1,
                parameters: Some(
                    Any::encode_from(&Pbmac1Params {
                        key_derivation_func: AlgorithmIdentifierOwned {
                            oid: ID_PBKDF2,
                            parameters: Some(Any::encode_from(&kdf).expect("kdf")),
                        },
                        message_auth_scheme: alg(mac),
                    })
                    .expect("params"),
                ),
            }
        };
        for (a, want) in [
            (
                pbmac1(Some(HMAC_SHA256), 1000, Some(32), HMAC_SHA256),
                "5fc03e3d6b9d18eaefc6a9796ad3124f9daff9df0c9ec6a15152b3e33216095a",
            ),
            (
                pbmac1(Some(HMAC_SHA512), 2000, Some(64), HMAC_SHA512),
                "9f58bd1a7c3c220e736adb192b532c130389aba775cbf3ad25440c9db7695dbe\
                 70442a5a6c8d2197ca0392653cce95a77e037383ee5a28b024e134845c702518",
            ),
            (
                pbmac1(None, 1000, None, HMAC_SHA256),
                "c0f751ea129182e678b5aa8bbacd05bf6b182da61a27a96d5400186a8a7ca4eb",
            ),
        ] {
            let pbm = Pbm::from_algorithm(&a).expect("PBMAC1 parameters");
            assert_eq!(hex::encode(pbm.mac(secret, data)), want.replace(' ', ""));
            // The response names the same parameters, byte for byte.
            assert_eq!(pbm.algorithm().expect("alg"), a);
        }
        // What this module builds for a client is RFC 9481's recommendation and verifies.
        let ours = Pbm::pbmac1_sha256(&salt, 1000).expect("PBMAC1");
        assert_eq!(
            ours.algorithm().expect("alg"),
            pbmac1(Some(HMAC_SHA256), 1000, Some(32), HMAC_SHA256)
        );
        // Out of bounds or unknown: badAlg.
        for bad in [
            pbmac1(Some(HMAC_SHA256), 999, Some(32), HMAC_SHA256),
            pbmac1(
                Some(HMAC_SHA256),
                MAX_PBKDF2_ITERATIONS + 1,
                Some(32),
                HMAC_SHA256,
            ),
            pbmac1(Some(HMAC_SHA256), 1000, Some(8), HMAC_SHA256),
            pbmac1(Some(SHA256), 1000, Some(32), HMAC_SHA256),
            pbmac1(Some(HMAC_SHA256), 1000, Some(32), HMAC_SHA1_IPSEC),
            AlgorithmIdentifierOwned {
                oid: PBMAC1,
                parameters: None,
            },
        ] {
            assert_eq!(
                Pbm::from_algorithm(&bad)
                    .expect_err("refused")
                    .failure_bit(),
                FailureBit::BadAlg
            );
        }
    }

    #[test]
    fn pbm_bounds_are_enforced() {
        let mk = |iterations, mac| cmpv2::parameter::PbmParameter {
            salt: OctetString::new(vec![1; 16]).expect("salt"),
            owf: AlgorithmIdentifierOwned {
                oid: SHA256,
                parameters: None,
            },
            iteration_count: iterations,
            mac: AlgorithmIdentifierOwned {
                oid: mac,
                parameters: None,
            },
        };
        assert!(Pbm::new(mk(500, HMAC_SHA256)).is_ok());
        for bad in [
            mk(MAX_PBM_ITERATIONS + 1, HMAC_SHA256),
            mk(99, HMAC_SHA256),
            mk(500, SHA256),
        ] {
            assert_eq!(
                Pbm::new(bad).expect_err("refused").failure_bit(),
                FailureBit::BadAlg
            );
        }
    }

    #[test]
    fn garbage_is_bad_data_format() {
        for bytes in [&b""[..], b"\x30\x00", b"not der", b"\x30\x03\x02\x01\x02"] {
            let e = parse_request(bytes).expect_err("refused");
            assert_eq!(e.failure_bit(), FailureBit::BadDataFormat, "{e}");
        }
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(parse_request(&big), Err(CmpError::TooLarge(_))));
    }

    /// `testdata/cmp/ir-pbm-hmac-sha1.der`: an ir made by `openssl cmp` 3.0 with
    /// `-secret pass:abc` (see testdata/cmp/README.md).
    #[test]
    fn openssl_ir_parses_and_its_default_mac_verifies() {
        let der = include_bytes!("../../testdata/cmp/ir-pbm-hmac-sha1.der");
        let req = parse_request(der).expect("parses");
        assert_eq!(req.body.name(), "ir");
        assert_eq!(req.sender_kid.as_deref(), Some(&b"org-42"[..]));
        assert_eq!(req.transaction_id.len(), 16);
        assert_eq!(req.sender_nonce.len(), 16);
        assert!(!req.implicit_confirm);
        let pbm = req.pbm().expect("PBM");
        let Scheme::PasswordBasedMac { params, .. } = &pbm.scheme else {
            panic!("PasswordBasedMac")
        };
        assert_eq!(params.mac.oid, HMAC_SHA1_IPSEC);
        assert_eq!(params.owf.oid, SHA256);
        assert_eq!(params.iteration_count, 500);
        req.verify_mac(&pbm, b"abc").expect("the MAC verifies");
        assert_eq!(req.verify_mac(&pbm, b"abd"), Err(CmpError::BadMac));
        let RequestBody::Ir(msgs) = &req.body else {
            panic!("ir")
        };
        let v = verify_cert_request(&msgs[0]).expect("POP verifies");
        assert_eq!(v.subject.expect("subject").to_string(), "CN=cmp-client");
        // A flipped bit in the POP signature is badPOP.
        let mut bad = msgs[0].clone();
        if let Some(ProofOfPossession::Signature(sk)) = &mut bad.popo {
            let mut sig = sk.signature.raw_bytes().to_vec();
            let last = sig.len() - 1;
            sig[last] ^= 1;
            sk.signature = BitString::from_bytes(&sig).expect("bits");
        }
        assert_eq!(
            verify_cert_request(&bad)
                .expect_err("refused")
                .failure_bit(),
            FailureBit::BadPop
        );
    }

    /// What an RA request keeps for an operator: the body tag and the CertReqMsg exactly as
    /// received (`[0]` then the SEQUENCE OF with the one message), read back unchanged; a
    /// PKCS#10 request is not mistaken for one.
    #[test]
    fn a_held_crmf_request_reads_back_byte_for_byte() {
        let der = include_bytes!("../../testdata/cmp/ir-pbm-hmac-sha1.der");
        let req = parse_request(der).expect("parses");
        let RequestBody::Ir(msgs) = &req.body else {
            panic!("ir")
        };
        let held = held_request(0, &msgs[0]).expect("held");
        let inner = vec![msgs[0].clone()].to_der().expect("der");
        assert_eq!(held[0], 0xa0, "[0] constructed: ir");
        assert!(held.ends_with(&inner));
        let (tag, msg) = parse_held_request(&held).expect("reads back");
        assert_eq!((tag, &msg), (0, &msgs[0]));
        assert_eq!(response_tag(tag), 1);
        let kur = held_request(7, &msgs[0]).expect("kur");
        assert_eq!(kur[0], 0xa7);
        assert_eq!(parse_held_request(&kur).expect("kur").0, 7);
        assert_eq!(response_tag(7), 8);
        assert_eq!(response_tag(2), 3);
        assert!(held_request(4, &msgs[0]).is_err(), "p10cr is not CRMF");
        // A PKCS#10 (a SEQUENCE, universal tag) is not a held CRMF request.
        assert!(parse_held_request(&inner).is_err());
        // The POP still verifies from the held bytes.
        verify_cert_request(&msg).expect("POP");
    }

    /// RFC 9483 §4.1.6: no publicKey, or an algorithm with an empty key, and no POP.
    #[test]
    fn a_request_without_a_key_asks_for_central_key_generation() {
        let der = include_bytes!("../../testdata/cmp/ir-pbm-hmac-sha1.der");
        let req = parse_request(der).expect("parses");
        let RequestBody::Ir(msgs) = &req.body else {
            panic!("ir")
        };
        assert!(
            central_key_request(&msgs[0]).expect("own key").is_none(),
            "a request with its key"
        );
        let mut keyless = msgs[0].clone();
        let alg = keyless
            .cert_req
            .cert_template
            .subject_public_key_info
            .take()
            .expect("a key")
            .algorithm;
        assert_eq!(
            central_key_request(&keyless)
                .expect_err("a POP without a key")
                .failure_bit(),
            FailureBit::BadPop
        );
        keyless.popo = None;
        let asked = central_key_request(&keyless)
            .expect("keyless")
            .expect("central");
        assert!(asked.algorithm.is_none());
        assert_eq!(asked.subject.expect("subject").to_string(), "CN=cmp-client");
        keyless.cert_req.cert_template.subject_public_key_info =
            Some(spki::SubjectPublicKeyInfoOwned {
                algorithm: alg.clone(),
                subject_public_key: BitString::from_bytes(&[]).expect("empty"),
            });
        let asked = central_key_request(&keyless)
            .expect("alg only")
            .expect("central");
        assert_eq!(asked.algorithm, Some(alg));
    }

    /// `privateKey [0] EncryptedKey` is explicit (a CHOICE), `envelopedData [0]` implicit
    /// (the CRMF module's tagging): A0 { A0 { version … } }, as OpenSSL 3.2's CMP decodes it.
    #[test]
    fn a_central_key_is_tagged_as_rfc_9810_encrypted_key() {
        use cms::content_info::CmsVersion;
        use cms::enveloped_data::{EncryptedContentInfo, EnvelopedData, RecipientInfos};
        let enveloped = EnvelopedData {
            version: CmsVersion::V2,
            originator_info: None,
            recip_infos: RecipientInfos(der::asn1::SetOfVec::new()),
            encrypted_content: EncryptedContentInfo {
                content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
                content_enc_alg: AlgorithmIdentifierOwned {
                    oid: const_oid::db::rfc5911::ID_AES_256_CBC,
                    parameters: None,
                },
                encrypted_content: None,
            },
            unprotected_attrs: None,
        };
        let key = Some(EncryptedKey::EnvelopedData(enveloped.clone()));
        let der = key.to_der().expect("der");
        let body = enveloped.to_der().expect("der");
        // The implicit [0] replaces the SEQUENCE tag of EnvelopedData.
        assert_eq!(der[0], 0xa0);
        assert_eq!(&der[1..], &body[1..]);
        let pair = CertifiedKeyPair {
            cert_or_enc_cert: cmpv2::certified_key_pair::CertOrEncCert::EncryptedCert(Box::new(
                crmf::controls::EncryptedValue {
                    intended_alg: None,
                    sym_alg: None,
                    enc_sym_key: None,
                    key_alg: None,
                    value_hint: None,
                    enc_value: BitString::from_bytes(&[1]).expect("bits"),
                },
            )),
            private_key: key,
            publication_info: None,
        };
        let encoded = pair.to_der().expect("der");
        let at = encoded
            .windows(der.len())
            .position(|w| w == der.as_slice())
            .expect("the EncryptedKey inside");
        assert_eq!(encoded[at - 2], 0xa0, "privateKey [0] EXPLICIT around it");
        assert_eq!(CertifiedKeyPair::from_der(&encoded).expect("decodes"), pair);
    }

    /// A response header with a NULL-DN sender and recipient, no nonce to answer, no KID.
    fn test_header() -> ResponseHeader {
        ResponseHeader {
            sender: Name::default(),
            recipient: GeneralName::DirectoryName(Name::default()),
            message_time: 1_800_000_000,
            transaction_id: vec![1; 16],
            sender_nonce: [2; 16],
            recip_nonce: None,
            sender_kid: None,
            implicit_confirm: false,
            pvno: 2,
        }
    }

    #[test]
    fn nested_messages_keep_each_inner_message_byte_for_byte() {
        let header = test_header();
        let inner = |t: u8| {
            let mut h = header.clone();
            h.transaction_id = vec![t; 16];
            encode_request(
                &h,
                21,
                &Vec::<cmpv2::gen::InfoTypeAndValue>::new(),
                ResponseProtection::None,
                Vec::new(),
            )
            .expect("genm")
        };
        let (a, b) = (inner(5), inner(6));
        let anys = vec![Any::from_der(&a).expect("a"), Any::from_der(&b).expect("b")];
        let outer = encode_request(&header, 20, &anys, ResponseProtection::None, Vec::new())
            .expect("nested");
        let req = parse_request(&outer).expect("parses");
        assert_eq!(req.body.name(), "nested");
        let RequestBody::Nested(got) = &req.body else {
            panic!("nested")
        };
        assert_eq!(got, &vec![a.clone(), b.clone()]);
        let inner_req = parse_request(&got[1]).expect("the inner message parses");
        assert_eq!(inner_req.transaction_id, vec![6; 16]);
        // The answer carries the inner answers the same way.
        let rsp = encode_response(
            &header,
            &ResponseBody::Nested(vec![a.clone(), b.clone()]),
            ResponseProtection::None,
            Vec::new(),
        )
        .expect("nested response");
        let view = parse_response(&rsp).expect("view");
        assert_eq!(view.body_tag, 20);
        assert_eq!(view.nested, vec![a, b]);
        // An empty batch is malformed.
        let empty = encode_request(
            &header,
            20,
            &Vec::<Any>::new(),
            ResponseProtection::None,
            Vec::new(),
        )
        .expect("encodes");
        assert_eq!(
            parse_request(&empty)
                .map(|_| ())
                .map_err(|e| e.failure_bit()),
            Err(FailureBit::BadDataFormat)
        );
    }

    #[test]
    fn responses_round_trip_through_the_client_view() {
        let params = cmpv2::parameter::PbmParameter {
            salt: OctetString::new(vec![7; 16]).expect("salt"),
            owf: AlgorithmIdentifierOwned {
                oid: SHA256,
                parameters: None,
            },
            iteration_count: 500,
            mac: AlgorithmIdentifierOwned {
                oid: HMAC_SHA256,
                parameters: None,
            },
        };
        let pbm = Pbm::new(params).expect("pbm");
        let header = ResponseHeader {
            recip_nonce: Some(vec![3; 16]),
            sender_kid: Some(b"kid".to_vec()),
            ..test_header()
        };
        let body = ResponseBody::error(&[FailureBit::TransactionIdInUse], "Mã giao dịch đã dùng")
            .expect("body");
        let der = encode_response(
            &header,
            &body,
            ResponseProtection::Mac {
                pbm: &pbm,
                secret: b"s",
            },
            Vec::new(),
        )
        .expect("encodes");
        let v = parse_response(&der).expect("parses");
        assert_eq!(v.body_tag, 23);
        assert!(v.has_failure(FailureBit::TransactionIdInUse));
        assert!(!v.has_failure(FailureBit::BadRequest));
        assert_eq!(v.status_text(), "Mã giao dịch đã dùng");
        assert_eq!(v.recip_nonce.as_deref(), Some(&[3u8; 16][..]));
        v.verify_mac(b"s").expect("MAC verifies");
        assert_eq!(v.verify_mac(b"t"), Err(CmpError::BadMac));
    }

    /// `testdata/cmp/ip-from-pkid.der`: pkid's ip as openssl received it.
    #[test]
    fn pkid_ip_vector_is_an_accepted_cert_rep_with_the_chain() {
        let der = include_bytes!("../../testdata/cmp/ip-from-pkid.der");
        let v = parse_response(der).expect("parses");
        assert_eq!(v.body_tag, 1);
        assert_eq!(
            v.status.as_ref().map(|s| s.status),
            Some(PkiStatus::Accepted)
        );
        let cert = v.certificate.as_ref().expect("the certificate");
        assert!(cert
            .tbs_certificate
            .subject
            .to_string()
            .contains("CN=cmp-client"));
        assert_eq!(v.ca_pubs.len(), 1, "the root");
        assert_eq!(v.extra_certs.len(), 2, "issuing CA and root");
        assert_eq!(v.ca_pubs[0], v.extra_certs[1]);
        assert!(v.is_protected() && v.transaction_id.as_ref().is_some_and(|t| t.len() == 16));
        // Decoding and re-encoding the message gives the same bytes.
        let raw = RawMessage::from_der(der).expect("raw");
        assert_eq!(raw.to_der().expect("der"), der.to_vec());
    }

    /// `testdata/cmp/certconf-rejected.der`: openssl's certConf rejecting a certificate, with a
    /// failInfo cmpv2 0.2 cannot decode (bit 7).
    #[test]
    fn openssl_rejecting_certconf_decodes_with_its_failure_bit() {
        let der = include_bytes!("../../testdata/cmp/certconf-rejected.der");
        let req = parse_request(der).expect("parses");
        let RequestBody::CertConf(statuses) = &req.body else {
            panic!("certConf, got {}", req.body.name())
        };
        let info = statuses[0].status_info.as_ref().expect("statusInfo");
        assert_eq!(info.status, PkiStatus::Rejection);
        assert!(has_failure_bit(
            info.fail_info.as_ref().expect("failInfo"),
            FailureBit::IncorrectData
        ));
        assert_eq!(statuses[0].cert_hash.as_bytes().len(), 32, "SHA-256");
        assert!(req.recip_nonce.is_some());
    }
    /// A signed rp: the signature is over ProtectedPart, verifies with the signer's key and
    /// no other, and a flipped bit in the body breaks it.
    #[test]
    fn a_signed_rp_verifies_with_the_signers_key_only() {
        let key = crate::test_key::TestKey::p256();
        let other = crate::test_key::TestKey::p256();
        let header = ResponseHeader {
            sender: crate::name::parse("CN=Issuing CA CMP Responder").expect("name"),
            recip_nonce: Some(vec![3; 16]),
            sender_kid: Some(vec![9; 20]),
            ..test_header()
        };
        let body = ResponseBody::RevRep(vec![StatusInfo {
            status: PkiStatus::Accepted,
            status_string: None,
            fail_info: None,
        }]);
        let sign = |m: &[u8]| Ok(key.sign(m));
        let der = encode_response(
            &header,
            &body,
            ResponseProtection::Signature {
                algorithm: algorithm::SignatureAlgorithm::EcdsaSha256.identifier(),
                sign: &sign,
            },
            Vec::new(),
        )
        .expect("encodes");
        let v = parse_response(&der).expect("parses");
        assert_eq!(v.body_tag, 12);
        assert_eq!(
            v.status.as_ref().map(|s| s.status),
            Some(PkiStatus::Accepted)
        );
        v.verify_signature(&key.spki).expect("verifies");
        assert!(v.verify_signature(&other.spki).is_err());
        assert!(v.verify_mac(b"s").is_err(), "a signature is not a MAC");
        // [12] { SEQUENCE { SEQUENCE OF { PKIStatusInfo { INTEGER 0 } } } }: accepted
        // becomes rejection (2).
        let rp = [
            0xac, 0x09, 0x30, 0x07, 0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x00,
        ];
        let mut bad = der.clone();
        let at = bad
            .windows(rp.len())
            .position(|w| w == rp)
            .expect("the rp body");
        bad[at + rp.len() - 1] = 2;
        let v = parse_response(&bad).expect("still parses");
        assert_eq!(
            v.status.as_ref().map(|s| s.status),
            Some(PkiStatus::Rejection)
        );
        assert!(v.verify_signature(&key.spki).is_err());
    }

    /// An rr's one RevDetails: issuer, serial and the reasonCode; two are refused, as is a
    /// template without the serial.
    #[test]
    fn an_rr_names_issuer_serial_and_reason() {
        use crate::revocation::CrlReason;
        use x509_cert::ext::Extension;
        let issuer = crate::name::parse("CN=Issuing CA,O=pkid").expect("name");
        let serial = x509_cert::serial_number::SerialNumber::new(&[0x10, 0x01]).expect("serial");
        let reason = Extension {
            extn_id: const_oid::db::rfc5280::ID_CE_CRL_REASONS,
            critical: false,
            extn_value: OctetString::new(CrlReason::KeyCompromise.to_der().expect("der"))
                .expect("octets"),
        };
        let details =
            |serial: Option<x509_cert::serial_number::SerialNumber>| cmpv2::rev::RevDetails {
                cert_details: crmf::request::CertTemplate {
                    version: None,
                    serial_number: serial,
                    signature: None,
                    issuer: Some(issuer.clone()),
                    validity: None,
                    subject: None,
                    subject_public_key_info: None,
                    issuer_unique_id: None,
                    subject_unique_id: None,
                    extensions: None,
                },
                crl_entry_details: Some(vec![reason.clone()]),
            };
        let one = vec![details(Some(serial.clone()))];
        // Through DER, as it arrives.
        let one =
            cmpv2::rev::RevReqContent::from_der(&one.to_der().expect("der")).expect("decodes");
        let asked = revocation_asked(&one).expect("one RevDetails");
        assert_eq!(asked.issuer, issuer);
        assert_eq!(asked.serial, serial);
        assert_eq!(asked.reason, Some(CrlReason::KeyCompromise));
        let two = vec![details(Some(serial.clone())), details(Some(serial))];
        assert!(matches!(revocation_asked(&two), Err(CmpError::Template(_))));
        assert!(matches!(
            revocation_asked(&vec![details(None)]),
            Err(CmpError::Template(_))
        ));
    }
}
