//! Signed request documents: a PDF with an embedded signature, or any file with a detached CMS
//! signature (RFC 5652), verified byte-exact and chained to a trust list.
//!
//! ```text
//!  PDF ─pdf::extract─▶ /ByteRange covers the whole file? ─▶ signed bytes + CMS DER ─┐
//!  file + .p7s ───────────────────────────────────────────▶ content  + CMS DER ─────┤
//!                                                                                    ▼
//!            cms::verify_detached: one SignerInfo, its certificate, content-type,
//!            message-digest, the signature over the signed attributes ─▶ SignedDocument
//!                                                                                    │
//!            chain::verify_chain(signer, certificates, anchors, at) ─▶ path to an anchor
//! ```
//!
//! Everything here is pure: the time a chain is checked at is an argument, and revocation is
//! the daemon's business (it holds the index). Every failure is one [`DocumentError`] variant
//! with a stable [`DocumentError::code`] the API puts in its problem documents; no message
//! carries a name, a key or any other part of the signer's certificate.

pub mod chain;
pub mod cms;
pub mod pdf;
mod signature;

#[cfg(test)]
mod tests;

pub use chain::{issued_by, verify_chain, MAX_CHAIN_DEPTH};
pub use cms::{verify_detached, MAX_CMS_BYTES};

use x509_cert::Certificate;

/// A digest algorithm a document signature may use (the SignerInfo's `digestAlgorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-256 (FIPS 180-4).
    Sha256,
    /// SHA-384 (FIPS 180-4).
    Sha384,
    /// SHA-512 (FIPS 180-4).
    Sha512,
}

impl DigestAlgorithm {
    /// The name shown in verification results (`sha256`, `sha384`, `sha512`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// The aws-lc-rs algorithm that computes it.
    pub fn aws_lc(&self) -> &'static aws_lc_rs::digest::Algorithm {
        match self {
            Self::Sha256 => &aws_lc_rs::digest::SHA256,
            Self::Sha384 => &aws_lc_rs::digest::SHA384,
            Self::Sha512 => &aws_lc_rs::digest::SHA512,
        }
    }
}

/// A document whose signature verified over its exact bytes. Its signer is not yet trusted:
/// that is [`verify_chain`]'s answer, and revocation the daemon's.
#[derive(Clone, Debug)]
pub struct SignedDocument {
    /// The certificate whose key made the signature (found by the SignerInfo's `sid`).
    pub signer: Certificate,
    /// Every other certificate the signature carried (candidate intermediates), in its order.
    pub other_certs: Vec<Certificate>,
    /// The signingTime signed attribute, Unix seconds, when there is one. It is the signer's
    /// claim, not a timestamp by a third party.
    pub signing_time: Option<u64>,
    /// The digest the content was hashed with.
    pub digest_algorithm: DigestAlgorithm,
}

/// Verifies a PDF's embedded signature (the last signature dictionary, `adbe.pkcs7.detached`
/// or `ETSI.CAdES.detached`): its byte ranges must cover the whole file but the signature
/// itself, and the CMS signature must verify over them.
pub fn verify_pdf(pdf_bytes: &[u8]) -> Result<SignedDocument, DocumentError> {
    let signature = pdf::extract(pdf_bytes)?;
    cms::verify_parts(&signature.signed_parts(pdf_bytes), &signature.cms)
}

/// Why a signed document is not valid evidence. Peer faults all: the document or its signer
/// is at fault, never pkid.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocumentError {
    /// The file starts like a PDF but its signature dictionary cannot be read.
    #[error("malformed PDF: {0}")]
    MalformedPdf(&'static str),
    /// A PDF without any signature dictionary (`/ByteRange`).
    #[error("the PDF carries no signature")]
    NoSignature,
    /// The `/ByteRange` is not two ranges from the start of the file around exactly the
    /// `/Contents` hex string.
    #[error("the signature's /ByteRange is not usable: {0}")]
    ByteRange(&'static str),
    /// The signed ranges end before the end of the file: bytes were added after signing (an
    /// incremental update the signature does not cover).
    #[error("the signature covers {signed} of the file's {length} bytes: bytes were added after signing")]
    NotWholeFile {
        /// Where the last signed range ends.
        signed: u64,
        /// The file's length.
        length: u64,
    },
    /// The signature (or a PDF's embedded `/Contents`) is larger than [`MAX_CMS_BYTES`], or
    /// the document larger than the caller's limit.
    #[error("{length} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Its size, bytes.
        length: usize,
        /// The limit, bytes.
        max: usize,
    },
    /// Not a DER ContentInfo holding a SignedData, or a field of it cannot be read.
    #[error("malformed CMS signature: {0}")]
    MalformedCms(String),
    /// The SignedData encapsulates its content: only detached signatures are accepted, so that
    /// the bytes kept are the bytes given.
    #[error("the CMS signature encapsulates its content; a detached signature is required")]
    NotDetached,
    /// Not exactly one SignerInfo.
    #[error("the signature has {0} signers; exactly one is accepted")]
    SignerCount(usize),
    /// The signed content type is not id-data, or the content-type attribute disagrees with
    /// the encapsulated content type.
    #[error("the signed content type is {0}, not id-data")]
    ContentType(String),
    /// A signed attribute that must be there (content-type, message-digest) is missing or
    /// present more than once.
    #[error("the signed attribute {0} is missing, repeated or has other than one value")]
    Attribute(&'static str),
    /// The message-digest attribute is not the hash of the content: the document is not the
    /// one that was signed.
    #[error("the document's digest does not match the signed message-digest")]
    DigestMismatch,
    /// The signature does not verify with the signer's key.
    #[error("the signature does not verify with the signer's key")]
    BadSignature,
    /// A digest, signature or key algorithm outside the accepted set, named by its OID.
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// An RSA key under 2048 bits.
    #[error("RSA key of {0} bits is too weak (minimum 2048)")]
    WeakKey(usize),
    /// No certificate in the signature matches the SignerInfo's signer identifier.
    #[error("the signer's certificate is not in the signature")]
    SignerCertificateMissing,
    /// No path from the signer to a configured trust anchor (no issuer found, an issuer's
    /// signature that does not verify, or a path longer than [`MAX_CHAIN_DEPTH`]).
    #[error("the signer's certificate does not chain to a trusted root")]
    UntrustedChain,
    /// A certificate of the path (depth 0 is the signer) had expired at the time checked.
    #[error("the certificate at depth {depth} of the chain had expired at signing time")]
    CertificateExpired {
        /// Its position: 0 the signer, 1 its issuer, …
        depth: usize,
    },
    /// A certificate of the path (depth 0 is the signer) was not yet valid at the time checked.
    #[error("the certificate at depth {depth} of the chain was not yet valid at signing time")]
    CertificateNotYetValid {
        /// Its position: 0 the signer, 1 its issuer, …
        depth: usize,
    },
    /// The signer's keyUsage allows neither digitalSignature nor nonRepudiation.
    #[error("the signer's key usage does not allow signing documents")]
    SignerKeyUsage,
    /// An issuer of the path is not a CA (basicConstraints cA absent or false), may not sign
    /// certificates (keyUsage without keyCertSign), or its pathLenConstraint is exceeded.
    #[error("the certificate at depth {depth} of the chain may not issue certificates")]
    NotCa {
        /// Its position: 1 the signer's issuer, …
        depth: usize,
    },
    /// A certificate of the path has a critical extension pkid does not process (RFC 5280
    /// §4.2: it must then be refused), named by its OID.
    #[error("unsupported critical extension {0}")]
    CriticalExtension(String),
}

impl DocumentError {
    /// The stable code for problem documents and the stored verification result. No `_` arm:
    /// a new variant cannot compile until it has one.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedPdf(_) => "malformed-pdf",
            Self::NoSignature => "no-signature",
            Self::ByteRange(_) => "byte-range",
            Self::NotWholeFile { .. } => "not-whole-file",
            Self::TooLarge { .. } => "too-large",
            Self::MalformedCms(_) => "malformed-cms",
            Self::NotDetached => "not-detached",
            Self::SignerCount(_) => "signer-count",
            Self::ContentType(_) => "content-type",
            Self::Attribute(_) => "signed-attribute",
            Self::DigestMismatch => "digest-mismatch",
            Self::BadSignature => "bad-signature",
            Self::UnsupportedAlgorithm(_) => "unsupported-algorithm",
            Self::WeakKey(_) => "weak-key",
            Self::SignerCertificateMissing => "signer-certificate-missing",
            Self::UntrustedChain => "untrusted-chain",
            Self::CertificateExpired { .. } => "certificate-expired",
            Self::CertificateNotYetValid { .. } => "certificate-not-yet-valid",
            Self::SignerKeyUsage => "signer-key-usage",
            Self::NotCa { .. } => "issuer-not-ca",
            Self::CriticalExtension(_) => "critical-extension",
        }
    }
}
