//! PKCS#10 certification requests (RFC 2986): parsing and proof of possession.

use crate::algorithm::{self, AlgorithmError, KeyType};
use const_oid::db::rfc5912::ID_EXTENSION_REQ;
use const_oid::AssociatedOid;
use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::request::CertReq;

/// Largest CSR we parse, in bytes. An RSA-8192 request with a long subject and SANs stays under
/// 8 KiB; 64 KiB leaves room for many SANs and refuses anything absurd before parsing it.
pub const MAX_CSR_BYTES: usize = 64 * 1024;

/// A request whose signature has been verified with its own key (proof of possession).
#[derive(Clone, Debug)]
pub struct VerifiedCsr {
    /// The subject exactly as requested (encodings preserved).
    pub subject: Name,
    /// The key to certify.
    pub public_key: SubjectPublicKeyInfoOwned,
    /// The key's type (already checked to be strong enough).
    pub key_type: KeyType,
    /// subjectAltName from the extensionRequest attribute, if any.
    pub subject_alt_name: Option<SubjectAltName>,
}

/// Why a CSR was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsrError {
    /// Not a PKCS#10 structure, or trailing bytes.
    #[error("malformed CSR: {0}")]
    Malformed(String),
    /// Larger than [`MAX_CSR_BYTES`].
    #[error("CSR of {0} bytes is over the {MAX_CSR_BYTES}-byte limit")]
    TooLarge(usize),
    /// Only version 1 (value 0) exists.
    #[error("unsupported CSR version")]
    Version,
    /// Weak or unknown key or signature algorithm, or a signature that does not verify.
    #[error("CSR refused: {0}")]
    Algorithm(#[from] AlgorithmError),
}

/// Parses a DER CSR and verifies its self-signature.
pub fn verify(der: &[u8]) -> Result<VerifiedCsr, CsrError> {
    if der.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge(der.len()));
    }
    let req = CertReq::from_der(der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    if req.info.version != x509_cert::request::Version::V1 {
        return Err(CsrError::Version);
    }
    let key_type = KeyType::of(&req.info.public_key)?;
    let info = req
        .info
        .to_der()
        .map_err(|e| CsrError::Malformed(e.to_string()))?;
    let signature = req
        .signature
        .as_bytes()
        .ok_or_else(|| CsrError::Malformed("signature has unused bits".into()))?;
    algorithm::verify(&req.info.public_key, &req.algorithm, &info, signature)?;

    let mut subject_alt_name = None;
    for attr in req
        .info
        .attributes
        .iter()
        .filter(|a| a.oid == ID_EXTENSION_REQ)
    {
        for value in attr.values.iter() {
            let exts: Vec<Extension> = value
                .decode_as()
                .map_err(|e| CsrError::Malformed(format!("extensionRequest: {e}")))?;
            for ext in exts.iter().filter(|e| e.extn_id == SubjectAltName::OID) {
                let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
                    .map_err(|e| CsrError::Malformed(format!("subjectAltName: {e}")))?;
                subject_alt_name = Some(san);
            }
        }
    }
    Ok(VerifiedCsr {
        subject: req.info.subject,
        public_key: req.info.public_key,
        key_type,
        subject_alt_name,
    })
}

/// Accepts PEM (`-----BEGIN CERTIFICATE REQUEST-----`, or `NEW CERTIFICATE REQUEST`) or DER.
pub fn from_pem_or_der(input: &[u8]) -> Result<Vec<u8>, CsrError> {
    crate::x509::pem_or_der(input, &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"])
        .map_err(|e| CsrError::Malformed(e.to_string()))
}
