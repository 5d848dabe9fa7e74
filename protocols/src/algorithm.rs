//! Key and signature algorithms pkid accepts, and signature verification.
//!
//! pkid signs with ECDSA P-256/P-384 (SHA-256/SHA-384) and RSA PKCS#1 v1.5 with SHA-256.
//! It verifies (CSRs, and every signature it makes before publishing it) ECDSA with SHA-2 and
//! RSA PKCS#1 v1.5 with SHA-2 on keys of at least 2048 bits. MD5 and SHA-1 signatures, RSA keys
//! under 2048 bits and curves other than P-256/P-384 are refused as weak or unsupported.

use aws_lc_rs::signature::{self as lc, VerificationAlgorithm};
use const_oid::db::rfc5912 as oids;
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};

/// Largest RSA modulus we accept, in bits (bounds verification cost of hostile input).
pub const MAX_RSA_BITS: usize = 8192;
/// ecdsa-with-SHA1 (RFC 3279 §2.2.3), recognised only to refuse it by name.
const ECDSA_WITH_SHA_1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");
/// Smallest RSA modulus we accept, in bits (NIST SP 800-131A; the floor).
pub const MIN_RSA_BITS: usize = 2048;

/// A subject or issuer key type, as read from a SubjectPublicKeyInfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on NIST P-256.
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// RSA with the given modulus length in bits.
    Rsa(usize),
}

impl KeyType {
    /// Reads the key type of a SubjectPublicKeyInfo, refusing weak or unsupported keys.
    pub fn of(spki: &SubjectPublicKeyInfoOwned) -> Result<Self, AlgorithmError> {
        let alg = &spki.algorithm;
        if alg.oid == oids::ID_EC_PUBLIC_KEY {
            let curve: ObjectIdentifier = alg
                .parameters
                .as_ref()
                .ok_or(AlgorithmError::Malformed("EC key without curve parameters"))?
                .decode_as()
                .map_err(|_| AlgorithmError::Malformed("EC key curve is not a named curve"))?;
            match curve {
                oids::SECP_256_R_1 => Ok(Self::EcP256),
                oids::SECP_384_R_1 => Ok(Self::EcP384),
                other => Err(AlgorithmError::UnsupportedCurve(other.to_string())),
            }
        } else if alg.oid == oids::RSA_ENCRYPTION {
            let bits = rsa_modulus_bits(spki.subject_public_key.raw_bytes())?;
            if bits < MIN_RSA_BITS {
                return Err(AlgorithmError::WeakRsaKey(bits));
            }
            if bits > MAX_RSA_BITS {
                return Err(AlgorithmError::UnsupportedKey(format!(
                    "RSA-{bits} is over {MAX_RSA_BITS} bits"
                )));
            }
            Ok(Self::Rsa(bits))
        } else {
            Err(AlgorithmError::UnsupportedKey(alg.oid.to_string()))
        }
    }

    /// The configuration name of this key type (`p256`, `p384`, `rsa2048`, …).
    pub fn name(&self) -> String {
        match self {
            Self::EcP256 => "p256".into(),
            Self::EcP384 => "p384".into(),
            Self::Rsa(bits) => format!("rsa{bits}"),
        }
    }

    /// The signature algorithm a CA with this key signs with.
    pub fn signature_algorithm(&self) -> SignatureAlgorithm {
        match self {
            Self::EcP256 => SignatureAlgorithm::EcdsaSha256,
            Self::EcP384 => SignatureAlgorithm::EcdsaSha384,
            Self::Rsa(_) => SignatureAlgorithm::RsaPkcs1Sha256,
        }
    }
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017 A.1.1).
#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: der::asn1::UintRef<'a>,
    public_exponent: der::asn1::UintRef<'a>,
}

fn rsa_modulus_bits(key: &[u8]) -> Result<usize, AlgorithmError> {
    let key = RsaPublicKey::from_der(key)
        .map_err(|_| AlgorithmError::Malformed("RSA public key is not valid DER"))?;
    let _ = key.public_exponent;
    let m = key.modulus.as_bytes();
    let first = *m
        .first()
        .ok_or(AlgorithmError::Malformed("RSA modulus is empty"))?;
    Ok(m.len() * 8 - first.leading_zeros() as usize)
}

/// A signature algorithm pkid signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// ecdsa-with-SHA256 (RFC 5758), signature as DER `Ecdsa-Sig-Value`.
    EcdsaSha256,
    /// ecdsa-with-SHA384 (RFC 5758), signature as DER `Ecdsa-Sig-Value`.
    EcdsaSha384,
    /// sha256WithRSAEncryption (RFC 4055), PKCS#1 v1.5.
    RsaPkcs1Sha256,
}

impl SignatureAlgorithm {
    /// The AlgorithmIdentifier for certificates, CRLs, OCSP responses and CMS.
    ///
    /// ECDSA identifiers omit the parameters; RSA PKCS#1 v1.5 carries an explicit NULL
    /// (RFC 5758 §3.2, RFC 4055 §5).
    pub fn identifier(&self) -> AlgorithmIdentifierOwned {
        match self {
            Self::EcdsaSha256 => AlgorithmIdentifierOwned {
                oid: oids::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            Self::EcdsaSha384 => AlgorithmIdentifierOwned {
                oid: oids::ECDSA_WITH_SHA_384,
                parameters: None,
            },
            Self::RsaPkcs1Sha256 => AlgorithmIdentifierOwned {
                oid: oids::SHA_256_WITH_RSA_ENCRYPTION,
                parameters: Some(der::asn1::Null.into()),
            },
        }
    }

    /// The digest the algorithm hashes the message with.
    pub fn digest(&self) -> &'static aws_lc_rs::digest::Algorithm {
        match self {
            Self::EcdsaSha256 | Self::RsaPkcs1Sha256 => &aws_lc_rs::digest::SHA256,
            Self::EcdsaSha384 => &aws_lc_rs::digest::SHA384,
        }
    }

    /// Parses the configuration name (`p256`, `p384`, `rsa2048`, `rsa3072`, `rsa4096`) into a key
    /// type to generate.
    pub fn key_type_for(name: &str) -> Option<KeyType> {
        match name {
            "p256" => Some(KeyType::EcP256),
            "p384" => Some(KeyType::EcP384),
            "rsa2048" => Some(KeyType::Rsa(2048)),
            "rsa3072" => Some(KeyType::Rsa(3072)),
            "rsa4096" => Some(KeyType::Rsa(4096)),
            _ => None,
        }
    }
}

/// Why a key or signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlgorithmError {
    /// The structure could not be read.
    #[error("malformed key or algorithm: {0}")]
    Malformed(&'static str),
    /// An RSA key below [`MIN_RSA_BITS`].
    #[error("RSA key of {0} bits is too weak (minimum {MIN_RSA_BITS})")]
    WeakRsaKey(usize),
    /// An elliptic curve other than P-256 or P-384.
    #[error("unsupported elliptic curve {0} (P-256 and P-384 are accepted)")]
    UnsupportedCurve(String),
    /// A key algorithm we do not know.
    #[error("unsupported key algorithm {0}")]
    UnsupportedKey(String),
    /// MD5 or SHA-1 based signature algorithms.
    #[error("weak signature algorithm {0} (MD5 and SHA-1 are refused)")]
    WeakSignature(&'static str),
    /// A signature algorithm we do not know, or that does not match the key.
    #[error("unsupported signature algorithm {0}")]
    UnsupportedSignature(String),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// Verifies `signature` over `message` with the key in `spki`, for the signature algorithm
/// `alg` (as found in a certificate, CSR or CMS structure).
pub fn verify(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
) -> Result<(), AlgorithmError> {
    let key_type = KeyType::of(spki)?;
    let verifier: &'static dyn VerificationAlgorithm = match (alg.oid, key_type) {
        (oids::MD_5_WITH_RSA_ENCRYPTION, _) | (oids::MD_2_WITH_RSA_ENCRYPTION, _) => {
            return Err(AlgorithmError::WeakSignature("MD5/MD2 with RSA"))
        }
        (oids::SHA_1_WITH_RSA_ENCRYPTION, _) => {
            return Err(AlgorithmError::WeakSignature("SHA-1 with RSA"))
        }
        (ECDSA_WITH_SHA_1, _) => return Err(AlgorithmError::WeakSignature("ECDSA with SHA-1")),
        (oids::ECDSA_WITH_SHA_256, KeyType::EcP256) => &lc::ECDSA_P256_SHA256_ASN1,
        (oids::ECDSA_WITH_SHA_384, KeyType::EcP256) => &lc::ECDSA_P256_SHA384_ASN1,
        (oids::ECDSA_WITH_SHA_256, KeyType::EcP384) => &lc::ECDSA_P384_SHA256_ASN1,
        (oids::ECDSA_WITH_SHA_384, KeyType::EcP384) => &lc::ECDSA_P384_SHA384_ASN1,
        (oids::SHA_256_WITH_RSA_ENCRYPTION, KeyType::Rsa(_)) => &lc::RSA_PKCS1_2048_8192_SHA256,
        (oids::SHA_384_WITH_RSA_ENCRYPTION, KeyType::Rsa(_)) => &lc::RSA_PKCS1_2048_8192_SHA384,
        (oids::SHA_512_WITH_RSA_ENCRYPTION, KeyType::Rsa(_)) => &lc::RSA_PKCS1_2048_8192_SHA512,
        (oid, _) => return Err(AlgorithmError::UnsupportedSignature(oid.to_string())),
    };
    lc::UnparsedPublicKey::new(verifier, spki.subject_public_key.raw_bytes())
        .verify(message, signature)
        .map_err(|_| AlgorithmError::BadSignature)
}

/// SHA-1 of the subjectPublicKey BIT STRING contents: the RFC 5280 §4.2.1.2 method (1) key
/// identifier, also the OCSP `ResponderID byKey` hash (RFC 6960 §4.2.1).
pub fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        spki.subject_public_key.raw_bytes(),
    )
    .as_ref()
    .to_vec()
}

/// Parses DER SubjectPublicKeyInfo into the owned form.
pub fn parse_spki(der: &[u8]) -> Result<SubjectPublicKeyInfoOwned, AlgorithmError> {
    let r = SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|_| AlgorithmError::Malformed("SubjectPublicKeyInfo"))?;
    let owned = SubjectPublicKeyInfoOwned::from_der(
        &r.to_der()
            .map_err(|_| AlgorithmError::Malformed("SubjectPublicKeyInfo"))?,
    )
    .map_err(|_| AlgorithmError::Malformed("SubjectPublicKeyInfo"))?;
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    fn p256() -> (EcdsaKeyPair, SubjectPublicKeyInfoOwned) {
        let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("keygen");
        let spki = parse_spki(kp.public_key().as_der().expect("der").as_ref()).expect("spki");
        (kp, spki)
    }

    #[test]
    fn ecdsa_signature_verifies_and_tampering_fails() {
        let (kp, spki) = p256();
        assert_eq!(KeyType::of(&spki), Ok(KeyType::EcP256));
        let sig = kp.sign(&SystemRandom::new(), b"hello").expect("sign");
        let alg = SignatureAlgorithm::EcdsaSha256.identifier();
        assert_eq!(verify(&spki, &alg, b"hello", sig.as_ref()), Ok(()));
        assert_eq!(
            verify(&spki, &alg, b"hellp", sig.as_ref()),
            Err(AlgorithmError::BadSignature)
        );
    }

    #[test]
    fn sha1_and_mismatched_algorithms_are_refused() {
        let (_, spki) = p256();
        let sha1 = AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA_1,
            parameters: None,
        };
        assert!(matches!(
            verify(&spki, &sha1, b"x", b"y"),
            Err(AlgorithmError::WeakSignature(_))
        ));
        let rsa = SignatureAlgorithm::RsaPkcs1Sha256.identifier();
        assert!(matches!(
            verify(&spki, &rsa, b"x", b"y"),
            Err(AlgorithmError::UnsupportedSignature(_))
        ));
    }

    #[test]
    fn rsa_key_size_is_read_from_modulus() {
        let kp =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
        let spki = parse_spki(kp.public_key().as_der().expect("der").as_ref()).expect("spki");
        assert_eq!(KeyType::of(&spki), Ok(KeyType::Rsa(2048)));
    }
}
