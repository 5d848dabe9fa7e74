//! The time-stamp protocol: RFC 3161, with the RFC 5816 `ESSCertIDv2` signing-certificate
//! attribute.
//!
//! ```text
//! DER ─parse_request─▶ TimeStampReq ─decide(Settings)─▶ Accepted ──┐
//!                                                                   │ + serial, now (daemon)
//!   TSTInfo ◀─tst_info─────────────────────────────────────────────┘
//!      │ lint_tst_info (before the key is used)
//!      ▼
//!   signed attributes (DER SET OF, sorted) = UnsignedToken::message
//!      │ daemon: its signer signs the message
//!      ▼ into_signed(signature)
//!   SignerInfo ─▶ SignedData ─▶ granted DER
//!
//! any TspError ─failure_info (total match)─▶ rejection DER (PKIStatusInfo + failInfo)
//! ```
//!
//! Choices, all from RFC 3161 unless noted:
//! - SHA-256, SHA-384 and SHA-512 imprints; SHA-1 is recognised but accepted only when the
//!   daemon's settings list it. Hash `AlgorithmIdentifier` parameters must be absent or NULL.
//! - No request extension is understood, so any extension is refused (`unacceptedExtension`).
//! - A request without a policy gets the TSA's policy; one naming a policy gets it only if the
//!   settings accept it (`unacceptedPolicy`).
//! - `genTime` has whole seconds (the `der` crate's `GeneralizedTime` has no fraction); the
//!   daemon therefore declares an accuracy of at least one second.
//! - `ordering` is false; the nonce is echoed; the TSA name is optional (the certificate's
//!   subject as a `directoryName`).
//! - The token is CMS `SignedData` v3 with one `SignerInfo` v1 (issuerAndSerialNumber), signed
//!   attributes contentType, messageDigest, `signingCertificateV2` (SHA-256 of the TSA
//!   certificate, with issuerSerial) and optionally signingTime; the signature is over the DER
//!   `SET OF` of the signed attributes (RFC 5652 §5.4), which `der` sorts as DER requires.
//! - The TSA certificate is in `certificates` iff the request set `certReq`.

pub mod ess;
pub mod status;
mod token;

use crate::algorithm::{self, SignatureAlgorithm};
use crate::time::{generalized_time, x509_time};
use crate::unsigned::Unsigned;
use cms::cert::IssuerAndSerialNumber;
use cms::signed_data::{SignedAttributes, SignedData, SignerIdentifier};
use const_oid::db::rfc5280::ID_KP_TIME_STAMPING;
use const_oid::db::rfc5911::{ID_CONTENT_TYPE, ID_MESSAGE_DIGEST, ID_SIGNED_DATA, ID_SIGNING_TIME};
use const_oid::db::rfc5912::{self, ID_SHA_1, ID_SHA_256, ID_SHA_384, ID_SHA_512};
use const_oid::AssociatedOid;
use der::asn1::{Int, ObjectIdentifier, OctetString, SetOfVec};
use der::{Any, Decode, Encode, Tag, Tagged};
use ess::{EssCertIdV2, IssuerSerial, SigningCertificateV2, ID_AA_SIGNING_CERTIFICATE_V_2};
use spki::{AlgorithmIdentifier, AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use status::{FailureInfo, PkiStatus, PkiStatusInfo, TimeStampResp};
use x509_cert::attr::Attribute;
use x509_cert::certificate::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage};
use x509_tsp::{Accuracy, MessageImprint, TimeStampReq, TspVersion, TstInfo};

/// Largest request parsed, in bytes. A request is a hash (≤ 64 octets), a nonce, a policy OID
/// and optional extensions: under 200 bytes in practice. 16 KiB leaves room for extensions
/// (which are then refused by name) while bounding the parser's work on hostile input.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Longest nonce echoed, in octets. Clients draw 64-bit (openssl) to 160-bit nonces; 512 bits
/// is ample and bounds what a requester can make the TSA sign.
pub const MAX_NONCE_OCTETS: usize = 64;

/// `id-ct-TSTInfo` (RFC 3161 §2.4.2): the eContentType of a time-stamp token.
pub const ID_CT_TST_INFO: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");

/// A message-imprint hash algorithm the TSA knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-1: collision-broken; recognised so it can be refused by name (or allowed by policy).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// Every algorithm, weakest first.
    pub const ALL: [HashAlgorithm; 4] = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512];

    /// The algorithm's OID.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha1 => ID_SHA_1,
            Self::Sha256 => ID_SHA_256,
            Self::Sha384 => ID_SHA_384,
            Self::Sha512 => ID_SHA_512,
        }
    }

    /// Length of a hash, in octets.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Configuration name: `sha1`, `sha256`, `sha384`, `sha512`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// The algorithm with this OID.
    pub fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.oid() == oid)
    }

    /// The algorithm with this configuration name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Hashes `data` (tests and clients; the TSA itself never hashes documents).
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Self::Sha1 => &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &aws_lc_rs::digest::SHA256,
            Self::Sha384 => &aws_lc_rs::digest::SHA384,
            Self::Sha512 => &aws_lc_rs::digest::SHA512,
        };
        aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
    }
}

/// What the TSA accepts and puts in its tokens (the daemon's `[tsa]` configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The TSA's policy: used when a request names none.
    pub policy: ObjectIdentifier,
    /// Further policies a request may ask for.
    pub accepted_policies: Vec<ObjectIdentifier>,
    /// Imprint hash algorithms accepted.
    pub hash_algorithms: Vec<HashAlgorithm>,
    /// Declared accuracy of `genTime`, in milliseconds (0 leaves `accuracy` out).
    pub accuracy_ms: u32,
    /// Puts the certificate subject in `TSTInfo.tsa`.
    pub include_tsa_name: bool,
    /// Adds the signingTime signed attribute (equal to `genTime`).
    pub signing_time: bool,
}

impl Settings {
    /// The `Accuracy` for `accuracy_ms`, with zero components left out (RFC 3161 §2.4.2).
    pub fn accuracy(&self) -> Option<Accuracy> {
        if self.accuracy_ms == 0 {
            return None;
        }
        let seconds = u64::from(self.accuracy_ms / 1000);
        let millis = (self.accuracy_ms % 1000) as i16;
        Some(Accuracy {
            seconds: (seconds > 0).then_some(seconds),
            millis: (millis > 0).then_some(millis),
            micros: None,
        })
    }

    fn accepts_policy(&self, oid: &ObjectIdentifier) -> bool {
        self.policy == *oid || self.accepted_policies.contains(oid)
    }
}

/// Why no token was issued. Each variant maps to one `PKIFailureInfo` bit by
/// [`TspError::failure_info`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TspError {
    /// Peer: not a DER `TimeStampReq` v1 (bad DER, trailing data, wrong version, over
    /// [`MAX_REQUEST_BYTES`]).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Peer: the imprint's hash algorithm is unknown, not accepted, or has parameters.
    #[error("hash algorithm {0} is not accepted")]
    UnacceptedHashAlgorithm(String),
    /// Peer: the imprint's length does not match its algorithm.
    #[error("message imprint is {found} octets; {algorithm} needs {expected}")]
    ImprintLength {
        /// The algorithm's name.
        algorithm: &'static str,
        /// Its output length.
        expected: usize,
        /// What was sent.
        found: usize,
    },
    /// Peer: the nonce is longer than [`MAX_NONCE_OCTETS`].
    #[error("nonce is {0} octets; at most {MAX_NONCE_OCTETS} are accepted")]
    NonceTooLong(usize),
    /// Peer: the request asks for a policy the TSA does not issue under.
    #[error("policy {0} is not accepted")]
    UnacceptedPolicy(ObjectIdentifier),
    /// Peer: the request carries an extension (the TSA understands none).
    #[error("extension {0} is not supported")]
    UnacceptedExtension(ObjectIdentifier),
    /// Ours: the clock is known to be unsynchronised, so no trustworthy time can be given.
    #[error("time source not available: {0}")]
    TimeNotAvailable(String),
    /// Ours, transient: the store, key backend or record queue cannot take the token now.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// Ours: encoding, lint or signing failed.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl TspError {
    /// The `PKIFailureInfo` bit for this error. No `_` arm on purpose: a new variant does not
    /// compile until someone decides how it is answered.
    pub fn failure_info(&self) -> FailureInfo {
        match self {
            Self::Malformed(_) => FailureInfo::BadRequest,
            Self::UnacceptedHashAlgorithm(_) => FailureInfo::BadAlg,
            Self::ImprintLength { .. } => FailureInfo::BadDataFormat,
            Self::NonceTooLong(_) => FailureInfo::BadDataFormat,
            Self::UnacceptedPolicy(_) => FailureInfo::UnacceptedPolicy,
            Self::UnacceptedExtension(_) => FailureInfo::UnacceptedExtension,
            Self::TimeNotAvailable(_) => FailureInfo::TimeNotAvailable,
            Self::Unavailable(_) => FailureInfo::SystemFailure,
            Self::Internal(_) => FailureInfo::SystemFailure,
        }
    }

    /// Whether the requester caused it (logged at info) rather than the TSA (logged as error).
    pub fn is_peer_fault(&self) -> bool {
        match self {
            Self::Malformed(_)
            | Self::UnacceptedHashAlgorithm(_)
            | Self::ImprintLength { .. }
            | Self::NonceTooLong(_)
            | Self::UnacceptedPolicy(_)
            | Self::UnacceptedExtension(_) => true,
            Self::TimeNotAvailable(_) | Self::Unavailable(_) | Self::Internal(_) => false,
        }
    }

    /// The `statusString` sent to the requester: the reason for peer faults, a generic line
    /// for ours (details go to the TSA's log, not to the network).
    pub fn client_text(&self) -> String {
        match self {
            Self::TimeNotAvailable(_) => {
                "the TSA's clock is not synchronised; try again later".into()
            }
            Self::Unavailable(_) => {
                "the TSA is temporarily unable to issue tokens; try again later".into()
            }
            Self::Internal(_) => "the TSA could not issue a token".into(),
            peer => peer.to_string(),
        }
    }
}

fn internal(e: der::Error) -> TspError {
    TspError::Internal(format!("encoding: {e}"))
}

/// Parses a DER `TimeStampReq`, refusing anything over [`MAX_REQUEST_BYTES`], non-DER
/// encodings and trailing data.
pub fn parse_request(der: &[u8]) -> Result<TimeStampReq, TspError> {
    if der.len() > MAX_REQUEST_BYTES {
        return Err(TspError::Malformed(format!(
            "request is {} bytes; at most {MAX_REQUEST_BYTES} are accepted",
            der.len()
        )));
    }
    TimeStampReq::from_der(der).map_err(|e| TspError::Malformed(e.to_string()))
}

/// A request the TSA will answer with a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The imprint, exactly as requested (copied into `TSTInfo`).
    pub message_imprint: MessageImprint,
    /// Its hash algorithm.
    pub hash_algorithm: HashAlgorithm,
    /// The policy the token is issued under.
    pub policy: ObjectIdentifier,
    /// The nonce to echo.
    pub nonce: Option<Int>,
    /// Whether the TSA certificate goes into the token.
    pub cert_req: bool,
}

impl Accepted {
    /// A request for the SHA-256 imprint of the empty string under `policy`, with certReq and
    /// no nonce: what the daemon signs and verifies at start-up as a self-test.
    pub fn probe(policy: ObjectIdentifier) -> Self {
        let imprint = HashAlgorithm::Sha256.digest(b"");
        Self {
            message_imprint: MessageImprint {
                hash_algorithm: AlgorithmIdentifier {
                    oid: ID_SHA_256,
                    parameters: None,
                },
                hashed_message: OctetString::new(imprint)
                    .unwrap_or_else(|_| unreachable!("32 octets")),
            },
            hash_algorithm: HashAlgorithm::Sha256,
            policy,
            nonce: None,
            cert_req: true,
        }
    }
}

/// Decides whether a request gets a token, checking in order: hash algorithm, imprint length,
/// policy, extensions, nonce size.
pub fn decide(req: TimeStampReq, settings: &Settings) -> Result<Accepted, TspError> {
    let alg_id = &req.message_imprint.hash_algorithm;
    let named = HashAlgorithm::from_oid(alg_id.oid);
    let label = || match named {
        Some(a) => format!("{} ({})", alg_id.oid, a.name()),
        None => alg_id.oid.to_string(),
    };
    let hash_algorithm = named
        .filter(|a| settings.hash_algorithms.contains(a))
        .ok_or_else(|| TspError::UnacceptedHashAlgorithm(label()))?;
    if let Some(p) = &alg_id.parameters {
        if p.tag() != Tag::Null || !p.value().is_empty() {
            return Err(TspError::UnacceptedHashAlgorithm(format!(
                "{} with parameters other than NULL",
                label()
            )));
        }
    }
    let found = req.message_imprint.hashed_message.as_bytes().len();
    if found != hash_algorithm.output_len() {
        return Err(TspError::ImprintLength {
            algorithm: hash_algorithm.name(),
            expected: hash_algorithm.output_len(),
            found,
        });
    }
    let policy = match req.req_policy {
        None => settings.policy,
        Some(p) if settings.accepts_policy(&p) => p,
        Some(p) => return Err(TspError::UnacceptedPolicy(p)),
    };
    if let Some(ext) = req.extensions.as_ref().and_then(|e| e.first()) {
        return Err(TspError::UnacceptedExtension(ext.extn_id));
    }
    if let Some(n) = &req.nonce {
        if n.as_bytes().len() > MAX_NONCE_OCTETS {
            return Err(TspError::NonceTooLong(n.as_bytes().len()));
        }
    }
    Ok(Accepted {
        message_imprint: req.message_imprint,
        hash_algorithm,
        policy,
        nonce: req.nonce,
        cert_req: req.cert_req,
    })
}

/// Why a certificate cannot be a TSA's.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsaCertificateError {
    /// Not a DER certificate.
    #[error("TSA certificate is not a DER X.509 certificate: {0}")]
    Malformed(String),
    /// extendedKeyUsage is missing, not critical, or lists more than timeStamping.
    #[error("TSA certificate must have a critical extendedKeyUsage with only id-kp-timeStamping (RFC 3161 §2.3): {0}")]
    ExtendedKeyUsage(String),
    /// keyUsage lacks digitalSignature.
    #[error("TSA certificate's keyUsage does not allow digitalSignature")]
    KeyUsage,
    /// The certificate is for another key than the TSA's signer.
    #[error("TSA certificate does not match the TSA signing key")]
    KeyMismatch,
}

/// The TSA certificate, checked against RFC 3161 §2.3, with what every token repeats
/// (the `signingCertificateV2` attribute and the signer identifier) computed once.
#[derive(Clone, Debug)]
pub struct TsaCertificate {
    certificate: Certificate,
    /// DER of the certificate, copied into tokens whose request set certReq.
    der: Vec<u8>,
    signing_certificate: Attribute,
    /// DER `IssuerAndSerialNumber` (the SignerInfo's sid), encoded once.
    signer_id_der: Vec<u8>,
    not_before: u64,
    not_after: u64,
}

impl TsaCertificate {
    /// Checks `der` (critical EKU with only timeStamping, digitalSignature, key matching
    /// `signer_key`) and prepares the per-token parts.
    pub fn new(
        der: &[u8],
        signer_key: &SubjectPublicKeyInfoOwned,
    ) -> Result<Self, TsaCertificateError> {
        let certificate = Certificate::from_der(der)
            .map_err(|e| TsaCertificateError::Malformed(e.to_string()))?;
        let tbs = &certificate.tbs_certificate;
        let exts = tbs.extensions.as_deref().unwrap_or_default();
        let ekus: Vec<_> = exts
            .iter()
            .filter(|e| e.extn_id == ExtendedKeyUsage::OID)
            .collect();
        let eku = match ekus.as_slice() {
            [one] => *one,
            [] => {
                return Err(TsaCertificateError::ExtendedKeyUsage(
                    "extension missing".into(),
                ))
            }
            _ => {
                return Err(TsaCertificateError::ExtendedKeyUsage(
                    "extension repeated".into(),
                ))
            }
        };
        if !eku.critical {
            return Err(TsaCertificateError::ExtendedKeyUsage(
                "extension not critical".into(),
            ));
        }
        let purposes = ExtendedKeyUsage::from_der(eku.extn_value.as_bytes())
            .map_err(|e| TsaCertificateError::ExtendedKeyUsage(e.to_string()))?;
        if purposes.0 != [ID_KP_TIME_STAMPING] {
            let list: Vec<String> = purposes.0.iter().map(ToString::to_string).collect();
            return Err(TsaCertificateError::ExtendedKeyUsage(format!(
                "purposes are [{}]",
                list.join(", ")
            )));
        }
        if let Some(ku) = exts.iter().find(|e| e.extn_id == KeyUsage::OID) {
            let ku = KeyUsage::from_der(ku.extn_value.as_bytes())
                .map_err(|e| TsaCertificateError::Malformed(e.to_string()))?;
            if !ku.digital_signature() {
                return Err(TsaCertificateError::KeyUsage);
            }
        }
        if tbs.subject_public_key_info != *signer_key {
            return Err(TsaCertificateError::KeyMismatch);
        }
        let malformed = |e: der::Error| TsaCertificateError::Malformed(e.to_string());
        let cert_hash = HashAlgorithm::Sha256.digest(der);
        let signing_certificate = SigningCertificateV2 {
            certs: vec![EssCertIdV2 {
                hash_algorithm: None,
                cert_hash: OctetString::new(cert_hash).map_err(malformed)?,
                issuer_serial: Some(IssuerSerial {
                    issuer: vec![GeneralName::DirectoryName(tbs.issuer.clone())],
                    serial_number: tbs.serial_number.clone(),
                }),
            }],
            policies: None,
        };
        let signing_certificate = attribute(ID_AA_SIGNING_CERTIFICATE_V_2, &signing_certificate)
            .map_err(|e| TsaCertificateError::Malformed(e.to_string()))?;
        let signer_id_der = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer.clone(),
            serial_number: tbs.serial_number.clone(),
        })
        .to_der()
        .map_err(malformed)?;
        let not_before = tbs.validity.not_before.to_unix_duration().as_secs();
        let not_after = tbs.validity.not_after.to_unix_duration().as_secs();
        let der = certificate.to_der().map_err(malformed)?;
        Ok(Self {
            certificate,
            der,
            signing_certificate,
            signer_id_der,
            not_before,
            not_after,
        })
    }

    /// The certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// Whether `now` (Unix seconds) lies in the certificate's validity period.
    pub fn valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// notAfter, Unix seconds.
    pub fn not_after(&self) -> u64 {
        self.not_after
    }
}

/// Encodes one attribute with one value.
fn attribute<T: der::EncodeValue + Tagged>(
    oid: ObjectIdentifier,
    value: &T,
) -> Result<Attribute, der::Error> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![Any::encode_from(value)?])?,
    })
}

/// A positive INTEGER holding `serial`, minimally encoded.
pub fn serial_int(serial: u64) -> Result<Int, der::Error> {
    let bytes = serial.to_be_bytes();
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut v = Vec::with_capacity(9);
    if bytes[first] & 0x80 != 0 {
        v.push(0);
    }
    v.extend_from_slice(&bytes[first..]);
    Int::new(&v)
}

/// Builds the `TSTInfo` for an accepted request. `gen_time` is Unix seconds.
pub fn tst_info(
    accepted: &Accepted,
    serial: u64,
    gen_time: u64,
    settings: &Settings,
    certificate: &TsaCertificate,
) -> Result<TstInfo, TspError> {
    Ok(TstInfo {
        version: TspVersion::V1,
        policy: accepted.policy,
        message_imprint: accepted.message_imprint.clone(),
        serial_number: serial_int(serial).map_err(internal)?,
        gen_time: generalized_time(gen_time).map_err(internal)?,
        accuracy: settings.accuracy(),
        ordering: false,
        nonce: accepted.nonce.clone(),
        tsa: settings.include_tsa_name.then(|| {
            GeneralName::DirectoryName(certificate.certificate.tbs_certificate.subject.clone())
        }),
        extensions: None,
    })
}

/// Checks a `TSTInfo` against the request and RFC 3161 §2.4.2 before the key is used.
pub fn lint_tst_info(
    tst: &TstInfo,
    accepted: &Accepted,
    settings: &Settings,
    certificate: &TsaCertificate,
) -> Result<(), TspError> {
    let fail = |m: &str| Err(TspError::Internal(format!("TSTInfo lint: {m}")));
    if tst.version != TspVersion::V1 {
        return fail("version must be 1");
    }
    if tst.policy != accepted.policy || !settings.accepts_policy(&tst.policy) {
        return fail("policy is not the accepted one");
    }
    if tst.message_imprint != accepted.message_imprint {
        return fail("messageImprint differs from the request");
    }
    let serial = tst.serial_number.as_bytes();
    if serial.is_empty()
        || serial.len() > 21
        || serial[0] & 0x80 != 0
        || serial.iter().all(|b| *b == 0)
    {
        return fail("serialNumber must be positive and at most 160 bits");
    }
    if tst.nonce != accepted.nonce {
        return fail("nonce differs from the request");
    }
    if tst.ordering {
        return fail("ordering must be false");
    }
    if tst.accuracy != settings.accuracy() {
        return fail("accuracy differs from the settings");
    }
    let gen_time = tst.gen_time.to_unix_duration().as_secs();
    if !certificate.valid_at(gen_time) {
        return fail("genTime is outside the TSA certificate's validity");
    }
    match &tst.tsa {
        None => {}
        Some(GeneralName::DirectoryName(n))
            if *n == certificate.certificate.tbs_certificate.subject => {}
        Some(_) => return fail("tsa name is not the certificate subject"),
    }
    if tst.extensions.is_some() {
        return fail("no extensions are issued");
    }
    Ok(())
}

/// The digest `AlgorithmIdentifier` that goes with a signature algorithm (parameters absent,
/// RFC 5754 §2).
fn digest_identifier(alg: SignatureAlgorithm) -> AlgorithmIdentifierOwned {
    let oid = match alg {
        SignatureAlgorithm::EcdsaSha256 | SignatureAlgorithm::RsaPkcs1Sha256 => ID_SHA_256,
        SignatureAlgorithm::EcdsaSha384 => ID_SHA_384,
    };
    AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    }
}

/// A linted `TSTInfo` and its signed attributes, encoded once, waiting for the TSA key's
/// signature over the attributes (RFC 5652 §5.4).
#[derive(Debug)]
pub struct UnsignedToken<'a> {
    /// DER `TSTInfo`: the eContent, copied into the token unchanged.
    tst_der: Vec<u8>,
    /// DER of the signed attributes as a `SET OF`: the bytes signed, and (retagged) the
    /// `SignerInfo`'s signedAttrs.
    message: Vec<u8>,
    algorithm: SignatureAlgorithm,
    certificate: &'a TsaCertificate,
    include_certificate: bool,
}

impl<'a> UnsignedToken<'a> {
    /// Encodes `tst` and the signed attributes contentType, messageDigest (of the DER
    /// `TSTInfo`, under `algorithm`'s hash), `signingCertificateV2` and, if `signing_time`
    /// (Unix seconds) is given, signingTime. `include_certificate` puts the TSA certificate in
    /// the token (the request's certReq).
    pub fn new(
        tst: &TstInfo,
        certificate: &'a TsaCertificate,
        algorithm: SignatureAlgorithm,
        include_certificate: bool,
        signing_time: Option<u64>,
    ) -> Result<Self, TspError> {
        let tst_der = tst.to_der().map_err(internal)?;
        let digest = aws_lc_rs::digest::digest(algorithm.digest(), &tst_der);
        let mut attrs = vec![
            attribute(ID_CONTENT_TYPE, &ID_CT_TST_INFO).map_err(internal)?,
            attribute(
                ID_MESSAGE_DIGEST,
                &OctetString::new(digest.as_ref()).map_err(internal)?,
            )
            .map_err(internal)?,
            certificate.signing_certificate.clone(),
        ];
        if let Some(t) = signing_time {
            attrs.push(
                attribute(ID_SIGNING_TIME, &x509_time(t).map_err(internal)?).map_err(internal)?,
            );
        }
        // SetOfVec sorts by DER encoding; the signature covers this exact SET OF encoding.
        let signed_attrs: SignedAttributes = SetOfVec::try_from(attrs).map_err(internal)?;
        let message = signed_attrs.to_der().map_err(internal)?;
        Ok(Self {
            tst_der,
            message,
            algorithm,
            certificate,
            include_certificate,
        })
    }
}

impl Unsigned for UnsignedToken<'_> {
    /// The DER of a granted `TimeStampResp` carrying the token.
    type Signed = Vec<u8>;
    type Error = TspError;

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn message(&self) -> &[u8] {
        &self.message
    }

    /// Writes the granted `TimeStampResp` (`SignedData` with the signature in its `SignerInfo`)
    /// around the bytes already encoded, into one buffer of the final size (`tsp/token.rs`).
    /// Not verified here: the daemon's start-up self-test checks a whole token with
    /// [`verify_response`], as a relying party would.
    fn into_signed(self, signature: &[u8]) -> Result<Vec<u8>, TspError> {
        let mut digest_algorithm = [0u8; MAX_SMALL_DER];
        let digest_algorithm = digest_identifier(self.algorithm)
            .encode_to_slice(&mut digest_algorithm)
            .map_err(internal)?;
        let mut signature_algorithm = [0u8; MAX_SMALL_DER];
        let signature_algorithm = self
            .algorithm
            .identifier()
            .encode_to_slice(&mut signature_algorithm)
            .map_err(internal)?;
        let mut signed_data_oid = [0u8; MAX_SMALL_DER];
        let signed_data_oid = ID_SIGNED_DATA
            .encode_to_slice(&mut signed_data_oid)
            .map_err(internal)?;
        let mut tst_info_oid = [0u8; MAX_SMALL_DER];
        let tst_info_oid = ID_CT_TST_INFO
            .encode_to_slice(&mut tst_info_oid)
            .map_err(internal)?;
        token::granted_response(&token::TokenParts {
            signed_data_oid,
            tst_info_oid,
            digest_algorithm,
            tst_info: &self.tst_der,
            certificate: self
                .include_certificate
                .then_some(self.certificate.der.as_slice()),
            signer_id: &self.certificate.signer_id_der,
            signed_attributes: &self.message,
            signature_algorithm,
            signature,
        })
        .map_err(internal)
    }
}

/// Room for a small DER value on the stack: an OID or a signature/digest AlgorithmIdentifier
/// (at most 15 octets for the algorithms pkid signs with).
const MAX_SMALL_DER: usize = 32;

/// Everything one token needs besides the request.
pub struct Issuance<'a> {
    /// The TSA's settings.
    pub settings: &'a Settings,
    /// The TSA certificate.
    pub certificate: &'a TsaCertificate,
    /// The TSA key's signature algorithm.
    pub algorithm: SignatureAlgorithm,
    /// A serial number never used before by this TSA.
    pub serial: u64,
    /// The current time, Unix seconds.
    pub now: u64,
}

/// Builds and lints the token for an accepted request and encodes what the TSA key signs;
/// [`Unsigned::into_signed`] then gives the DER of a granted `TimeStampResp`.
pub fn issue<'a>(
    accepted: &Accepted,
    issuance: &Issuance<'a>,
) -> Result<UnsignedToken<'a>, TspError> {
    if !issuance.certificate.valid_at(issuance.now) {
        return Err(TspError::Unavailable(
            "the TSA certificate is not valid now".into(),
        ));
    }
    let tst = tst_info(
        accepted,
        issuance.serial,
        issuance.now,
        issuance.settings,
        issuance.certificate,
    )?;
    lint_tst_info(&tst, accepted, issuance.settings, issuance.certificate)?;
    let signing_time = issuance.settings.signing_time.then_some(issuance.now);
    UnsignedToken::new(
        &tst,
        issuance.certificate,
        issuance.algorithm,
        accepted.cert_req,
        signing_time,
    )
}

/// `TimeStampResp { status { rejection, failInfo systemFailure } }`: sent if a rejection itself
/// cannot be encoded (it always can; this keeps the answer total).
const REJECTION_SYSTEM_FAILURE: [u8; 14] = [
    0x30, 0x0c, 0x30, 0x0a, 0x02, 0x01, 0x02, 0x03, 0x05, 0x06, 0x00, 0x00, 0x00, 0x40,
];

/// The DER of a rejection `TimeStampResp` for `error`: status rejection, the error's failInfo
/// bit and [`TspError::client_text`] as statusString.
pub fn rejection(error: &TspError) -> Vec<u8> {
    let encoded = error.failure_info().to_bit_string().and_then(|bits| {
        TimeStampResp {
            status: PkiStatusInfo {
                status: PkiStatus::Rejection,
                status_string: Some(vec![error.client_text()]),
                fail_info: Some(bits),
            },
            time_stamp_token: None,
        }
        .to_der()
    });
    encoded.unwrap_or_else(|_| REJECTION_SYSTEM_FAILURE.to_vec())
}

/// Why a time-stamp response does not verify (see [`verify_response`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("time-stamp response does not verify: {0}")]
pub struct VerifyError(pub String);

/// Checks a granted response the way a strict relying party does: DER throughout, signed
/// attributes in DER order, contentType id-ct-TSTInfo, messageDigest over the TSTInfo,
/// `signingCertificateV2` naming `tsa_certificate` by SHA-256, and the signature under its key.
/// Returns the `TSTInfo`. Used by tests and by the daemon's start-up self-test.
pub fn verify_response(der: &[u8], tsa_certificate: &Certificate) -> Result<TstInfo, VerifyError> {
    let bad = |m: String| VerifyError(m);
    let sd = granted_signed_data(der)?;
    if sd.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(bad("eContentType is not id-ct-TSTInfo".into()));
    }
    let econtent = sd
        .encap_content_info
        .econtent
        .ok_or_else(|| bad("no eContent".into()))?;
    let tst_der = econtent
        .decode_as::<OctetString>()
        .map_err(|e| bad(format!("eContent: {e}")))?
        .into_bytes();
    let tst = TstInfo::from_der(&tst_der).map_err(|e| bad(format!("TSTInfo: {e}")))?;
    let [si] = sd.signer_infos.0.as_slice() else {
        return Err(bad("expected exactly one SignerInfo".into()));
    };
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or_else(|| bad("no signed attributes".into()))?;
    let encodings: Vec<Vec<u8>> = attrs
        .iter()
        .map(|a| a.to_der())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if encodings.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("signed attributes are not in DER SET OF order".into()));
    }
    let value = |oid: ObjectIdentifier| -> Result<&Any, VerifyError> {
        let found: Vec<_> = attrs.iter().filter(|a| a.oid == oid).collect();
        match found.as_slice() {
            [a] if a.values.len() == 1 => a
                .values
                .get(0)
                .ok_or_else(|| bad(format!("attribute {oid} empty"))),
            _ => Err(bad(format!(
                "attribute {oid} must appear once with one value"
            ))),
        }
    };
    let content_type: ObjectIdentifier = value(ID_CONTENT_TYPE)?
        .decode_as()
        .map_err(|e| bad(e.to_string()))?;
    if content_type != ID_CT_TST_INFO {
        return Err(bad("contentType attribute is not id-ct-TSTInfo".into()));
    }
    let digest_alg = match si.digest_alg.oid {
        ID_SHA_256 => &aws_lc_rs::digest::SHA256,
        ID_SHA_384 => &aws_lc_rs::digest::SHA384,
        ID_SHA_512 => &aws_lc_rs::digest::SHA512,
        other => return Err(bad(format!("digest algorithm {other}"))),
    };
    let md: OctetString = value(ID_MESSAGE_DIGEST)?
        .decode_as()
        .map_err(|e| bad(e.to_string()))?;
    if md.as_bytes() != aws_lc_rs::digest::digest(digest_alg, &tst_der).as_ref() {
        return Err(bad("messageDigest does not match the TSTInfo".into()));
    }
    let scv2: SigningCertificateV2 = value(ID_AA_SIGNING_CERTIFICATE_V_2)?
        .decode_as()
        .map_err(|e| bad(e.to_string()))?;
    let cert_der = tsa_certificate.to_der().map_err(|e| bad(e.to_string()))?;
    let first = scv2
        .certs
        .first()
        .ok_or_else(|| bad("signingCertificateV2 lists no certificate".into()))?;
    if first
        .hash_algorithm
        .as_ref()
        .is_some_and(|a| *a != ess::sha256_identifier())
        || first.cert_hash.as_bytes() != HashAlgorithm::Sha256.digest(&cert_der)
    {
        return Err(bad(
            "signingCertificateV2 does not name the TSA certificate".into(),
        ));
    }
    let signed = attrs.to_der().map_err(|e| bad(e.to_string()))?;
    // CMS allows plain rsaEncryption with the hash named by digestAlgorithm (RFC 3370 §3.2);
    // openssl signs that way.
    let signature_algorithm = match (si.signature_algorithm.oid, si.digest_alg.oid) {
        (rfc5912::RSA_ENCRYPTION, ID_SHA_256) => AlgorithmIdentifierOwned {
            oid: rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
            parameters: None,
        },
        (rfc5912::RSA_ENCRYPTION, ID_SHA_384) => AlgorithmIdentifierOwned {
            oid: rfc5912::SHA_384_WITH_RSA_ENCRYPTION,
            parameters: None,
        },
        (rfc5912::RSA_ENCRYPTION, ID_SHA_512) => AlgorithmIdentifierOwned {
            oid: rfc5912::SHA_512_WITH_RSA_ENCRYPTION,
            parameters: None,
        },
        _ => si.signature_algorithm.clone(),
    };
    algorithm::verify(
        &tsa_certificate.tbs_certificate.subject_public_key_info,
        &signature_algorithm,
        &signed,
        si.signature.as_bytes(),
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok(tst)
}

/// The token's `SignedData` of a granted `TimeStampResp`, not yet verified.
fn granted_signed_data(der: &[u8]) -> Result<SignedData, VerifyError> {
    let bad = |m: String| VerifyError(m);
    let resp = TimeStampResp::from_der(der).map_err(|e| bad(format!("TimeStampResp: {e}")))?;
    if resp.status.status != PkiStatus::Granted {
        return Err(bad(format!("status is {:?}", resp.status.status)));
    }
    let token = resp
        .time_stamp_token
        .ok_or_else(|| bad("no token".into()))?;
    if token.content_type != ID_SIGNED_DATA {
        return Err(bad("token is not SignedData".into()));
    }
    token
        .content
        .decode_as()
        .map_err(|e| bad(format!("SignedData: {e}")))
}

/// The certificates a granted response's token carries (the TSA certificate when the request
/// set `certReq`), without verifying anything: a verifier picks the one to check the token
/// against with [`verify_response`] (pkid's audit stamps, whose TSA certificate may have been
/// reissued since).
pub fn token_certificates(der: &[u8]) -> Result<Vec<Certificate>, VerifyError> {
    let sd = granted_signed_data(der)?;
    Ok(sd
        .certificates
        .map(|set| {
            set.0
                .into_vec()
                .into_iter()
                .filter_map(|c| match c {
                    cms::cert::CertificateChoices::Certificate(c) => Some(c),
                    cms::cert::CertificateChoices::Other(_) => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests;
