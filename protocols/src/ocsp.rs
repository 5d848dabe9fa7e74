//! OCSP (RFC 6960) with the RFC 5019 / RFC 9919 lightweight profile and RFC 9654 nonces.
//!
//! Pure: [`parse_request`] turns bytes into a bounded, checked [`ParsedRequest`];
//! [`build_response`] lints decided statuses and encodes the `ResponseData` to sign once, as an
//! [`UnsignedResponse`]; the daemon signs [`UnsignedResponse::tbs`] and
//! [`Unsigned::into_signed`] encodes the `OCSPResponse` around those bytes;
//! [`error_response`] encodes the unsigned error answers. The daemon decides each status from
//! its revocation index.

use crate::algorithm::{self, SignatureAlgorithm};
use crate::time::generalized_time;
use crate::unsigned::{SignedRef, Unsigned};
use const_oid::db::{rfc5912, rfc6960};
use const_oid::AssociatedOid;
use der::asn1::{AnyRef, ContextSpecificRef, Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode, EncodeValue, FixedTag, Header, Length, Tag, TagMode, TagNumber, Writer};
use x509_cert::ext::pkix::CrlReason;
use x509_cert::ext::Extension;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    OcspResponseStatus, ResponderId, ResponseData, RevokedInfo, SingleResponse, Version,
};

/// Largest request we parse. RFC 5019 requests are under 300 bytes; 64 CertIDs of ~100 bytes
/// plus a 128-octet nonce stay well under 8 KiB.
pub const MAX_OCSP_REQUEST_BYTES: usize = 8 * 1024;
/// Nonce length bounds (RFC 9654 §2.1: at least 1 octet, and a responder need not accept more
/// than 128; RFC 8954's 32-octet cap was lifted).
pub const NONCE_OCTETS: std::ops::RangeInclusive<usize> = 1..=128;
/// Shortest validity window we sign (CA/Browser Forum BR §4.9.10: at least eight hours).
pub const MIN_VALIDITY_SECS: u64 = 8 * 3600;
/// Longest validity window we sign (CA/Browser Forum BR §4.9.10: at most ten days).
pub const MAX_VALIDITY_SECS: u64 = 10 * 86_400;

/// id-sha1, the RFC 5019 default CertID hash.
const ID_SHA1: ObjectIdentifier = rfc5912::ID_SHA_1;
/// id-sha256.
const ID_SHA256: ObjectIdentifier = rfc5912::ID_SHA_256;

/// Hash algorithms a CertID may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertIdHash {
    /// SHA-1 (RFC 5019's mandatory CertID hash; collision resistance is not needed here).
    Sha1,
    /// SHA-256.
    Sha256,
}

impl CertIdHash {
    /// The hash a CertID names, if we support it. Parameters may be absent or NULL.
    pub fn of(cert_id: &CertId) -> Option<Self> {
        let params_ok = match &cert_id.hash_algorithm.parameters {
            None => true,
            Some(p) => der::Tagged::tag(p) == der::Tag::Null && p.value().is_empty(),
        };
        match cert_id.hash_algorithm.oid {
            ID_SHA1 if params_ok => Some(Self::Sha1),
            ID_SHA256 if params_ok => Some(Self::Sha256),
            _ => None,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Self::Sha1 => &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &aws_lc_rs::digest::SHA256,
        };
        aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
    }
}

/// The name and key hashes by which CertIDs identify one issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerHashes {
    sha1: (Vec<u8>, Vec<u8>),
    sha256: (Vec<u8>, Vec<u8>),
}

impl IssuerHashes {
    /// Computes the hashes of an issuer certificate's subject name (DER) and public key
    /// (the subjectPublicKey BIT STRING contents), RFC 6960 §4.1.1.
    pub fn of(issuer: &Certificate) -> Result<Self, der::Error> {
        let name = issuer.tbs_certificate.subject.to_der()?;
        let key = issuer
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        let pair = |h: CertIdHash| (h.digest(&name), h.digest(key));
        Ok(Self {
            sha1: pair(CertIdHash::Sha1),
            sha256: pair(CertIdHash::Sha256),
        })
    }

    /// A CertID for `serial` under this issuer with the given hash (parameters NULL, as
    /// OpenSSL and most clients send them).
    pub fn cert_id(
        &self,
        hash: CertIdHash,
        serial: x509_cert::serial_number::SerialNumber,
    ) -> Result<CertId, der::Error> {
        let ((name, key), oid) = match hash {
            CertIdHash::Sha1 => (&self.sha1, ID_SHA1),
            CertIdHash::Sha256 => (&self.sha256, ID_SHA256),
        };
        Ok(CertId {
            hash_algorithm: spki::AlgorithmIdentifierOwned {
                oid,
                parameters: Some(Null.into()),
            },
            issuer_name_hash: OctetString::new(name.clone())?,
            issuer_key_hash: OctetString::new(key.clone())?,
            serial_number: serial,
        })
    }

    /// Whether `cert_id` names this issuer.
    pub fn matches(&self, cert_id: &CertId) -> bool {
        let (name, key) = match CertIdHash::of(cert_id) {
            Some(CertIdHash::Sha1) => &self.sha1,
            Some(CertIdHash::Sha256) => &self.sha256,
            None => return false,
        };
        cert_id.issuer_name_hash.as_bytes() == name.as_slice()
            && cert_id.issuer_key_hash.as_bytes() == key.as_slice()
    }
}

/// A checked request.
#[derive(Clone, Debug)]
pub struct ParsedRequest {
    /// The CertIDs asked about, in order (at least one).
    pub cert_ids: Vec<CertId>,
    /// The nonce extension to echo, exactly as received.
    pub nonce: Option<Extension>,
}

/// A peer fault in a request or our fault in answering. Each maps to one `OCSPResponseStatus`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OcspError {
    /// Not a DER OCSPRequest (garbage, truncated, trailing bytes).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Larger than [`MAX_OCSP_REQUEST_BYTES`].
    #[error("request of {0} bytes is over the limit")]
    TooLarge(usize),
    /// No CertID.
    #[error("request names no certificate")]
    Empty,
    /// More CertIDs than the configured bound.
    #[error("request names {0} certificates, over the limit of {1}")]
    TooManyCertIds(usize, usize),
    /// A nonce outside 1..=128 octets, or not an OCTET STRING.
    #[error("nonce must be an OCTET STRING of 1 to 128 octets")]
    BadNonce,
    /// An unknown critical request extension.
    #[error("unsupported critical extension {0}")]
    UnsupportedCriticalExtension(String),
    /// A request naming an issuer this responder does not serve.
    #[error("issuer not served by this responder")]
    IssuerNotServed,
    /// The responder's certificate has expired: we refuse to sign with it.
    #[error("the OCSP responder certificate has expired")]
    ResponderExpired,
    /// The key backend is temporarily unavailable.
    #[error("signing key unavailable: {0}")]
    SignerUnavailable(String),
    /// Encoding or signing failed, or the response failed its lint.
    #[error("internal error: {0}")]
    Internal(String),
}

impl OcspError {
    /// What goes on the wire for this error. No `_` arm on purpose.
    pub fn wire_status(&self) -> OcspResponseStatus {
        match self {
            Self::Malformed(_)
            | Self::TooLarge(_)
            | Self::Empty
            | Self::TooManyCertIds(..)
            | Self::BadNonce
            | Self::UnsupportedCriticalExtension(_) => OcspResponseStatus::MalformedRequest,
            Self::IssuerNotServed => OcspResponseStatus::Unauthorized,
            Self::ResponderExpired | Self::SignerUnavailable(_) => OcspResponseStatus::TryLater,
            Self::Internal(_) => OcspResponseStatus::InternalError,
        }
    }

    /// Whether the requester caused it (for logs and metrics).
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self.wire_status(),
            OcspResponseStatus::MalformedRequest | OcspResponseStatus::Unauthorized
        )
    }
}

/// Parses and checks a DER OCSPRequest.
pub fn parse_request(der: &[u8], max_cert_ids: usize) -> Result<ParsedRequest, OcspError> {
    if der.len() > MAX_OCSP_REQUEST_BYTES {
        return Err(OcspError::TooLarge(der.len()));
    }
    let req = OcspRequest::from_der(der).map_err(|e| OcspError::Malformed(e.to_string()))?;
    let tbs = req.tbs_request;
    if tbs.version != Version::V1 {
        return Err(OcspError::Malformed("unsupported version".into()));
    }
    let n = tbs.request_list.len();
    if n == 0 {
        return Err(OcspError::Empty);
    }
    if n > max_cert_ids {
        return Err(OcspError::TooManyCertIds(n, max_cert_ids));
    }
    let mut nonce = None;
    for ext in tbs.request_extensions.into_iter().flatten() {
        if ext.extn_id == rfc6960::ID_PKIX_OCSP_NONCE {
            let inner = OctetString::from_der(ext.extn_value.as_bytes())
                .map_err(|_| OcspError::BadNonce)?;
            if !NONCE_OCTETS.contains(&inner.as_bytes().len()) || nonce.is_some() {
                return Err(OcspError::BadNonce);
            }
            nonce = Some(ext);
        } else if ext.critical {
            return Err(OcspError::UnsupportedCriticalExtension(
                ext.extn_id.to_string(),
            ));
        }
    }
    for r in &tbs.request_list {
        if let Some(ext) = r
            .single_request_extensions
            .iter()
            .flatten()
            .find(|e| e.critical)
        {
            return Err(OcspError::UnsupportedCriticalExtension(
                ext.extn_id.to_string(),
            ));
        }
    }
    Ok(ParsedRequest {
        cert_ids: tbs.request_list.into_iter().map(|r| r.req_cert).collect(),
        nonce,
    })
}

/// A decided certificate status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Issued by this CA and not revoked.
    Good,
    /// Revoked (or held: reason certificateHold) at Unix time `at`.
    Revoked {
        /// Revocation time, Unix seconds.
        at: u64,
        /// Reason, if any.
        reason: Option<CrlReason>,
    },
    /// Not issued by this CA, as far as the responder knows.
    Unknown,
}

/// Who signs responses: the delegated responder's key hash and certificate.
#[derive(Clone, Debug)]
pub struct Responder {
    key_hash: OctetString,
    /// DER of the responder certificate, encoded once: every response carries it verbatim.
    certificate_der: Vec<u8>,
    not_after: u64,
}

impl Responder {
    /// A responder identified by key hash (RFC 6960 §4.2.1 byKey) that includes `certificate`
    /// in its responses.
    pub fn new(certificate: Certificate) -> Result<Self, OcspError> {
        let key_hash = OctetString::new(algorithm::key_identifier(
            &certificate.tbs_certificate.subject_public_key_info,
        ))
        .map_err(|e| OcspError::Internal(e.to_string()))?;
        let not_after = crate::time::unix_of(&certificate.tbs_certificate.validity.not_after);
        let certificate_der = certificate
            .to_der()
            .map_err(|e| OcspError::Internal(e.to_string()))?;
        Ok(Self {
            key_hash,
            certificate_der,
            not_after,
        })
    }

    /// notAfter of the responder certificate, Unix seconds.
    pub fn not_after(&self) -> u64 {
        self.not_after
    }
}

/// The times a response carries, Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// producedAt: when the response is signed.
    pub produced_at: u64,
    /// thisUpdate: when the status is known to be correct.
    pub this_update: u64,
    /// nextUpdate: when newer information will be available.
    pub next_update: u64,
}

fn gt(unix: u64) -> Result<OcspGeneralizedTime, OcspError> {
    generalized_time(unix)
        .map(OcspGeneralizedTime)
        .map_err(|e| OcspError::Internal(e.to_string()))
}

/// Checks a response before the key is used: a validity window the CA/Browser Forum accepts,
/// a live responder certificate, at least one answer.
fn lint(
    responses: &[(CertId, Status)],
    v: &Validity,
    responder: &Responder,
) -> Result<(), OcspError> {
    if v.produced_at > responder.not_after {
        return Err(OcspError::ResponderExpired);
    }
    if responses.is_empty() {
        return Err(OcspError::Internal("no single responses".into()));
    }
    let window = v.next_update.saturating_sub(v.this_update);
    if !(MIN_VALIDITY_SECS..=MAX_VALIDITY_SECS).contains(&window) || v.this_update > v.produced_at {
        return Err(OcspError::Internal(format!(
            "validity window of {window} s is outside 8 hours to 10 days"
        )));
    }
    for (_, s) in responses {
        if let Status::Revoked { at, .. } = s {
            if *at > v.produced_at {
                return Err(OcspError::Internal("revocation time in the future".into()));
            }
        }
    }
    Ok(())
}

/// Lints a response and encodes its `ResponseData`, the bytes the responder key signs.
/// `algorithm` is the responder key's signature algorithm.
pub fn build_response(
    responses: Vec<(CertId, Status)>,
    validity: Validity,
    nonce: Option<Extension>,
    responder: &Responder,
    algorithm: SignatureAlgorithm,
) -> Result<UnsignedResponse<'_>, OcspError> {
    lint(&responses, &validity, responder)?;
    let this_update = gt(validity.this_update)?;
    let next_update = gt(validity.next_update)?;
    let mut singles = Vec::with_capacity(responses.len());
    for (cert_id, status) in responses {
        let cert_status = match status {
            Status::Good => CertStatus::Good(Null),
            Status::Unknown => CertStatus::Unknown(Null),
            Status::Revoked { at, reason } => CertStatus::Revoked(RevokedInfo {
                revocation_time: gt(at)?,
                revocation_reason: reason,
            }),
        };
        singles.push(SingleResponse {
            cert_id,
            cert_status,
            this_update,
            next_update: Some(next_update),
            single_extensions: None,
        });
    }
    let data = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByKey(responder.key_hash.clone()),
        produced_at: gt(validity.produced_at)?,
        responses: singles,
        response_extensions: nonce.map(|n| vec![n]),
    };
    let tbs = data
        .to_der()
        .map_err(|e| OcspError::Internal(e.to_string()))?;
    Ok(UnsignedResponse {
        tbs,
        algorithm,
        responder,
    })
}

/// A linted, encoded `ResponseData` waiting for the responder's signature.
///
/// Not verified on assembly: a response lives for hours at most, and clients check it; the
/// certificates and CRLs that stay published for years are the ones checked before release.
#[derive(Debug)]
pub struct UnsignedResponse<'r> {
    tbs: Vec<u8>,
    algorithm: SignatureAlgorithm,
    responder: &'r Responder,
}

impl UnsignedResponse<'_> {
    /// The DER `ResponseData` (RFC 6960 §4.2.1 `tbsResponseData`): the bytes to sign.
    pub fn tbs(&self) -> &[u8] {
        &self.tbs
    }
}

impl Unsigned for UnsignedResponse<'_> {
    /// The DER of a successful `OCSPResponse`.
    type Signed = Vec<u8>;
    type Error = OcspError;

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn message(&self) -> &[u8] {
        &self.tbs
    }

    /// Encodes `OCSPResponse { successful, BasicOCSPResponse { tbs, algorithm, signature,
    /// [responder certificate] } }` into one buffer of the final size, copying the TBS and the
    /// pre-encoded certificate once each.
    fn into_signed(self, signature: &[u8]) -> Result<Vec<u8>, OcspError> {
        let internal = |e: der::Error| OcspError::Internal(e.to_string());
        let identifier = self.algorithm.identifier();
        let basic = BasicResponseRef {
            signed: SignedRef::new(&self.tbs, &identifier, signature).map_err(internal)?,
            certs: [AnyRef::from_der(&self.responder.certificate_der).map_err(internal)?],
        };
        SuccessfulResponseRef { basic }.to_der().map_err(internal)
    }
}

/// ```text
/// BasicOCSPResponse ::= SEQUENCE {
///    tbsResponseData      ResponseData,
///    signatureAlgorithm   AlgorithmIdentifier,
///    signature            BIT STRING,
///    certs            [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
/// ```
/// (RFC 6960 §4.2.1) with the parts already encoded; `certs` holds the responder certificate.
struct BasicResponseRef<'a> {
    signed: SignedRef<'a>,
    certs: [AnyRef<'a>; 1],
}

impl BasicResponseRef<'_> {
    fn certs(&self) -> ContextSpecificRef<'_, [AnyRef<'_>; 1]> {
        ContextSpecificRef {
            tag_number: TagNumber::N0,
            tag_mode: TagMode::Explicit,
            value: &self.certs,
        }
    }
}

impl EncodeValue for BasicResponseRef<'_> {
    fn value_len(&self) -> der::Result<Length> {
        self.signed.tbs.encoded_len()?
            + self.signed.algorithm.encoded_len()?
            + self.signed.signature.encoded_len()?
            + self.certs().encoded_len()?
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.signed.tbs.encode(writer)?;
        self.signed.algorithm.encode(writer)?;
        self.signed.signature.encode(writer)?;
        self.certs().encode(writer)
    }
}

impl FixedTag for BasicResponseRef<'_> {
    const TAG: Tag = Tag::Sequence;
}

/// ```text
/// OCSPResponse ::= SEQUENCE {
///    responseStatus         OCSPResponseStatus,           -- successful (0)
///    responseBytes          [0] EXPLICIT ResponseBytes }
/// ResponseBytes ::= SEQUENCE {
///    responseType   OBJECT IDENTIFIER,                     -- id-pkix-ocsp-basic
///    response       OCTET STRING }                         -- DER of BasicOCSPResponse
/// ```
/// (RFC 6960 §4.2.1), encoded straight from the parts: the OCTET STRING's contents are written
/// in place rather than encoded into a buffer of their own first.
struct SuccessfulResponseRef<'a> {
    basic: BasicResponseRef<'a>,
}

impl SuccessfulResponseRef<'_> {
    /// Length of `ResponseBytes`' contents: the OID, then the OCTET STRING around the basic
    /// response.
    fn response_bytes_len(&self) -> der::Result<Length> {
        let basic = self.basic.encoded_len()?;
        ID_PKIX_OCSP_BASIC.encoded_len()?
            + Header::new(Tag::OctetString, basic)?.encoded_len()?
            + basic
    }

    /// Length of `[0] EXPLICIT ResponseBytes`' contents (the ResponseBytes SEQUENCE).
    fn explicit_len(&self) -> der::Result<Length> {
        let inner = self.response_bytes_len()?;
        Header::new(Tag::Sequence, inner)?.encoded_len()? + inner
    }
}

impl EncodeValue for SuccessfulResponseRef<'_> {
    fn value_len(&self) -> der::Result<Length> {
        let explicit = self.explicit_len()?;
        let tag = Tag::ContextSpecific {
            constructed: true,
            number: TagNumber::N0,
        };
        OcspResponseStatus::Successful.encoded_len()?
            + Header::new(tag, explicit)?.encoded_len()?
            + explicit
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        OcspResponseStatus::Successful.encode(writer)?;
        let tag = Tag::ContextSpecific {
            constructed: true,
            number: TagNumber::N0,
        };
        Header::new(tag, self.explicit_len()?)?.encode(writer)?;
        Header::new(Tag::Sequence, self.response_bytes_len()?)?.encode(writer)?;
        ID_PKIX_OCSP_BASIC.encode(writer)?;
        Header::new(Tag::OctetString, self.basic.encoded_len()?)?.encode(writer)?;
        self.basic.encode(writer)
    }
}

impl FixedTag for SuccessfulResponseRef<'_> {
    const TAG: Tag = Tag::Sequence;
}

/// The DER of an unsigned error response (`OCSPResponse` with no responseBytes).
pub fn error_response(status: OcspResponseStatus) -> Vec<u8> {
    // SEQUENCE { ENUMERATED status }: five bytes; encoding cannot fail.
    OcspResponse {
        response_status: status,
        response_bytes: None,
    }
    .to_der()
    .unwrap_or_else(|_| vec![0x30, 0x03, 0x0a, 0x01, status as u8])
}

/// The serial number octets of a CertID (INTEGER contents, leading zero octet removed).
pub fn serial_octets(cert_id: &CertId) -> &[u8] {
    let b = cert_id.serial_number.as_bytes();
    if b.len() > 1 && b[0] == 0 {
        &b[1..]
    } else {
        b
    }
}

/// id-pkix-ocsp-basic, for tests and clients.
pub const ID_PKIX_OCSP_BASIC: ObjectIdentifier = BasicOcspResponse::OID;

#[cfg(test)]
mod tests;
