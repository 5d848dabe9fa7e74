//! The signature algorithms accepted on request documents and on their signers' chains:
//! RSA PKCS#1 v1.5 and RSASSA-PSS with SHA-256/384/512 (RFC 8017, RFC 4055), ECDSA on P-256 and
//! P-384 with SHA-256/384/512 (RFC 5758, RFC 5753). Wider than [`crate::algorithm::verify`]
//! (which serves CSRs and pkid's own signatures): organisations sign with whatever their token
//! or software makes, PSS included.

use super::{DigestAlgorithm, DocumentError};
use crate::algorithm::{AlgorithmError, KeyType};
use aws_lc_rs::signature::{self as lc, VerificationAlgorithm};
use const_oid::db::rfc5912 as oids;
use der::asn1::ObjectIdentifier;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

/// `RSASSA-PSS-params` (RFC 4055 §3.1; RFC 8017 A.2.3):
///
/// ```text
/// RSASSA-PSS-params ::= SEQUENCE {
///     hashAlgorithm      [0] HashAlgorithm DEFAULT sha1Identifier,
///     maskGenAlgorithm   [1] MaskGenAlgorithm DEFAULT mgf1SHA1Identifier,
///     saltLength         [2] INTEGER DEFAULT 20,
///     trailerField       [3] INTEGER DEFAULT 1 }
/// ```
#[derive(der::Sequence)]
struct RsaPssParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    hash: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    mask_gen: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    salt_length: Option<u32>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    trailer_field: Option<u32>,
}

/// The digest an AlgorithmIdentifier names (parameters absent or NULL, RFC 5754 §2).
pub(crate) fn digest_of(alg: &AlgorithmIdentifierOwned) -> Result<DigestAlgorithm, DocumentError> {
    let digest = match alg.oid {
        oids::ID_SHA_256 => DigestAlgorithm::Sha256,
        oids::ID_SHA_384 => DigestAlgorithm::Sha384,
        oids::ID_SHA_512 => DigestAlgorithm::Sha512,
        other => return Err(DocumentError::UnsupportedAlgorithm(other.to_string())),
    };
    match &alg.parameters {
        None => Ok(digest),
        Some(p) if p.is_null() => Ok(digest),
        Some(_) => Err(DocumentError::MalformedCms(format!(
            "digest algorithm {} has parameters",
            alg.oid
        ))),
    }
}

/// The key's type, refusing weak or unknown keys with the document error that says so.
pub(crate) fn key_type(spki: &SubjectPublicKeyInfoOwned) -> Result<KeyType, DocumentError> {
    KeyType::of(spki).map_err(|e| match e {
        AlgorithmError::Malformed(what) => {
            DocumentError::MalformedCms(format!("public key: {what}"))
        }
        AlgorithmError::WeakRsaKey(bits) => DocumentError::WeakKey(bits),
        AlgorithmError::UnsupportedCurve(oid) | AlgorithmError::UnsupportedKey(oid) => {
            DocumentError::UnsupportedAlgorithm(oid)
        }
        AlgorithmError::WeakSignature(name) => DocumentError::UnsupportedAlgorithm(name.into()),
        AlgorithmError::UnsupportedSignature(oid) => DocumentError::UnsupportedAlgorithm(oid),
        AlgorithmError::BadSignature => DocumentError::BadSignature,
    })
}

fn pkcs1(digest: DigestAlgorithm) -> &'static dyn VerificationAlgorithm {
    match digest {
        DigestAlgorithm::Sha256 => &lc::RSA_PKCS1_2048_8192_SHA256,
        DigestAlgorithm::Sha384 => &lc::RSA_PKCS1_2048_8192_SHA384,
        DigestAlgorithm::Sha512 => &lc::RSA_PKCS1_2048_8192_SHA512,
    }
}

/// The PSS verifier for `alg`'s parameters: SHA-2, MGF1 with the same hash, the salt length
/// the parameters name (OpenSSL's `rsa_pss_saltlen:digest` is the hash length, pyHanko uses the
/// largest the key allows), trailer field 1.
fn pss(alg: &AlgorithmIdentifierOwned) -> Result<lc::RsaParameters, DocumentError> {
    let unsupported =
        |why: &str| DocumentError::UnsupportedAlgorithm(format!("{} ({why})", oids::ID_RSASSA_PSS));
    let params: RsaPssParams = alg
        .parameters
        .as_ref()
        .ok_or_else(|| unsupported("no parameters"))?
        .decode_as()
        .map_err(|e| DocumentError::MalformedCms(format!("RSASSA-PSS parameters: {e}")))?;
    let hash = params.hash.ok_or_else(|| unsupported("SHA-1"))?;
    let digest = digest_of(&hash)?;
    let mgf = params
        .mask_gen
        .ok_or_else(|| unsupported("MGF1 with SHA-1"))?;
    let mgf_hash: Option<AlgorithmIdentifierOwned> = match (&mgf.oid, &mgf.parameters) {
        (&oids::ID_MGF_1, Some(p)) => p.decode_as().ok(),
        _ => None,
    };
    if mgf_hash.map(|h| h.oid) != Some(hash.oid) {
        return Err(unsupported(
            "mask generation other than MGF1 with the same hash",
        ));
    }
    let salt = u16::try_from(params.salt_length.unwrap_or(20))
        .map_err(|_| unsupported("salt length over 65535"))?;
    if params.trailer_field.unwrap_or(1) != 1 {
        return Err(unsupported("trailer field other than 1"));
    }
    let base = match digest {
        DigestAlgorithm::Sha256 => lc::RSA_PSS_2048_8192_SHA256,
        DigestAlgorithm::Sha384 => lc::RSA_PSS_2048_8192_SHA384,
        DigestAlgorithm::Sha512 => lc::RSA_PSS_2048_8192_SHA512,
    };
    Ok(base.with_pss_salt_length(lc::RsaPssSaltLength::Custom(salt)))
}

/// Verifies `signature` over `message` with `spki`, for the signature algorithm `alg`.
/// `digest` is the SignerInfo's digest algorithm, which a bare `rsaEncryption` identifier (as
/// OpenSSL writes in CMS) signs with; certificates pass `None` (they name the hash).
pub(crate) fn verify(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
    digest: Option<DigestAlgorithm>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), DocumentError> {
    let key = key_type(spki)?;
    let unsupported = |oid: ObjectIdentifier| DocumentError::UnsupportedAlgorithm(oid.to_string());
    let pss_verifier;
    let verifier: &dyn VerificationAlgorithm = match (alg.oid, key) {
        (oids::RSA_ENCRYPTION, KeyType::Rsa(_)) => {
            pkcs1(digest.ok_or_else(|| unsupported(alg.oid))?)
        }
        (oids::SHA_256_WITH_RSA_ENCRYPTION, KeyType::Rsa(_)) => pkcs1(DigestAlgorithm::Sha256),
        (oids::SHA_384_WITH_RSA_ENCRYPTION, KeyType::Rsa(_)) => pkcs1(DigestAlgorithm::Sha384),
        (oids::SHA_512_WITH_RSA_ENCRYPTION, KeyType::Rsa(_)) => pkcs1(DigestAlgorithm::Sha512),
        (oids::ID_RSASSA_PSS, KeyType::Rsa(_)) => {
            pss_verifier = pss(alg)?;
            &pss_verifier
        }
        (oids::ECDSA_WITH_SHA_256, KeyType::EcP256) => &lc::ECDSA_P256_SHA256_ASN1,
        (oids::ECDSA_WITH_SHA_384, KeyType::EcP256) => &lc::ECDSA_P256_SHA384_ASN1,
        (oids::ECDSA_WITH_SHA_512, KeyType::EcP256) => &lc::ECDSA_P256_SHA512_ASN1,
        (oids::ECDSA_WITH_SHA_256, KeyType::EcP384) => &lc::ECDSA_P384_SHA256_ASN1,
        (oids::ECDSA_WITH_SHA_384, KeyType::EcP384) => &lc::ECDSA_P384_SHA384_ASN1,
        (oids::ECDSA_WITH_SHA_512, KeyType::EcP384) => &lc::ECDSA_P384_SHA512_ASN1,
        (oid, _) => return Err(unsupported(oid)),
    };
    verifier
        .verify_sig(spki.subject_public_key.raw_bytes(), message, signature)
        .map_err(|_| DocumentError::BadSignature)
}
