//! A private key encrypted to a certificate the recipient holds: CMS EnvelopedData (RFC 5652
//! §6) around an asymmetric key package (RFC 5958), as RFC 7030 §4.4.2 returns a server-made
//! key when the client names a key to encrypt it to, as the RA releases an escrowed key, and —
//! around the SignedData that carries the package — as CMP returns a centrally generated key
//! (RFC 9483 §4.1.6).
//!
//! ```text
//!  PKCS#8 key ─▶ AsymmetricKeyPackage (SEQUENCE OF OneAsymmetricKey)
//!    [─▶ SignedData by the EST server's key (serverkeygen, RFC 7030 §4.4.2)]
//!    ─▶ AES-256-CBC under a fresh content key (random IV)
//!    ─▶ the content key to the recipient's certificate:
//!         RSA   ─▶ KeyTransRecipientInfo, RSAES-OAEP (SHA-256, MGF1-SHA-256)      RFC 8017, 4055
//!         P-256 ─▶ KeyAgreeRecipientInfo, ephemeral-static ECDH,                  RFC 5753
//!         P-384    dhSinglePass-stdDH-sha256kdf-scheme, key wrapped with aes256-wrap
//!         or, to a shared secret (CMP with MAC protection, RFC 9483 §4.1.6.3):
//!         password ─▶ PasswordRecipientInfo, PBKDF2-HMAC-SHA-256,                   RFC 3211
//!                     id-alg-PWRI-KEK with AES-256-CBC
//!    ─▶ ContentInfo { id-envelopedData, EnvelopedData }
//! ```
//!
//! The `cms` 0.2 types are reused; its builder is not: it encrypts RSA with PKCS#1 v1.5 only,
//! has no key-agreement recipient, leaves its password recipient unimplemented, and would pull a second cryptography stack (RustCrypto's
//! `rsa`, `aes`, `cbc`) beside aws-lc-rs (docs/decisions.md). The recipient is named by issuer
//! and serial number (`openssl cms -decrypt -recip cert.pem` matches it), which every client
//! reads; cms 0.2's `rKeyId` choice is encoded without its constructed bit, so it is not used.
//!
//! Randomness (content key, IV, the ephemeral ECDH key) comes from aws-lc-rs's system RNG,
//! which is why this lives in the daemon and not in the sans-I/O `protocols` crate.

use aws_lc_rs::{agreement, cipher, digest, key_wrap, rand, rsa};
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EncryptedContentInfo, EnvelopedData, KeyAgreeRecipientIdentifier, KeyAgreeRecipientInfo,
    KeyTransRecipientInfo, OriginatorIdentifierOrKey, OriginatorPublicKey, RecipientEncryptedKey,
    RecipientIdentifier, RecipientInfo, RecipientInfos,
};
use const_oid::db::rfc5911::{ID_AES_256_CBC, ID_AES_256_WRAP, ID_ENVELOPED_DATA, ID_SIGNED_DATA};
use const_oid::db::rfc5912::{
    ID_EC_PUBLIC_KEY, ID_MGF_1, ID_RSAES_OAEP, ID_SHA_256, RSA_ENCRYPTION, SECP_256_R_1,
    SECP_384_R_1,
};
use const_oid::ObjectIdentifier;
use der::asn1::{BitString, OctetString, SetOfVec};
use der::{Any, Decode, Encode, Sequence};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use zeroize::Zeroizing;

/// `id-ct-KP-aKeyPackage` (RFC 5958 §3): the content type of an asymmetric key package.
pub use pkid_protocols::cmp::ID_CT_KP_A_KEY_PACKAGE;
/// `dhSinglePass-stdDH-sha256kdf-scheme` (RFC 5753 §7.1.4, SEC 1).
pub const DH_SINGLE_PASS_STD_DH_SHA256_KDF: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.132.1.11.1");

/// Bytes of the AES-256 content-encryption and key-encryption keys.
const AES_256_KEY_LEN: usize = 32;

/// Why a key could not be enveloped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The recipient's certificate holds a key this module does not encrypt to (the peer's
    /// choice: only RSA ≥ 2048, P-256 and P-384 are recipients).
    #[error("{0}")]
    UnsupportedRecipient(String),
    /// Our side: randomness, a primitive, an encoding.
    #[error("enveloping the key failed: {0}")]
    Failed(String),
}

fn failed(what: &str) -> impl Fn(aws_lc_rs::error::Unspecified) -> EnvelopeError + '_ {
    move |_| EnvelopeError::Failed(what.to_owned())
}

fn der_failed(e: der::Error) -> EnvelopeError {
    EnvelopeError::Failed(e.to_string())
}

/// RSAES-OAEP-params (RFC 8017 Appendix A.2.1; RFC 4055 §4.1), with SHA-256 and MGF1-SHA-256:
///
/// ```text
/// RSAES-OAEP-params ::= SEQUENCE {
///     hashAlgorithm      [0] HashAlgorithm     DEFAULT sha1,
///     maskGenAlgorithm   [1] MaskGenAlgorithm  DEFAULT mgf1SHA1,
///     pSourceAlgorithm   [2] PSourceAlgorithm  DEFAULT pSpecifiedEmpty }
/// ```
#[derive(Sequence)]
struct RsaesOaepParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    hash: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT")]
    mask_gen: AlgorithmIdentifierOwned,
}

/// ECC-CMS-SharedInfo (RFC 5753 §7.2), the KDF's SharedInfo:
///
/// ```text
/// ECC-CMS-SharedInfo ::= SEQUENCE {
///     keyInfo         AlgorithmIdentifier,
///     entityUInfo [0] EXPLICIT OCTET STRING OPTIONAL,
///     suppPubInfo [2] EXPLICIT OCTET STRING }
/// ```
#[derive(Sequence)]
struct EccCmsSharedInfo {
    key_info: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    supp_pub_info: OctetString,
}

fn algorithm(oid: ObjectIdentifier, parameters: Option<Any>) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned { oid, parameters }
}

/// The key identifier a client names its certificate's key by (RFC 7030 §4.4.1.2): the
/// certificate's subjectKeyIdentifier, or, without one, the SHA-1 of its public key bits (RFC
/// 5280 §4.2.1.2, method 1), as most issuers compute it.
pub fn key_identifier(certificate: &Certificate) -> Vec<u8> {
    if let Ok(Some((_, ski))) = certificate
        .tbs_certificate
        .get::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
    {
        return ski.0.as_bytes().to_vec();
    }
    let bits = certificate
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, bits)
        .as_ref()
        .to_vec()
}

/// `ContentInfo(EnvelopedData)` (DER) holding `pkcs8` as an asymmetric key package, readable
/// only with the private key of `recipient` (an escrowed key released to its recipient).
pub fn key_package_for(recipient: &Certificate, pkcs8: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let package = key_package(pkcs8)?;
    let enveloped = enveloped_data(recipient, ID_CT_KP_A_KEY_PACKAGE, &package)?;
    ContentInfo {
        content_type: ID_ENVELOPED_DATA,
        content: Any::encode_from(&enveloped).map_err(der_failed)?,
    }
    .to_der()
    .map_err(der_failed)
}

/// `AsymmetricKeyPackage ::= SEQUENCE SIZE (1..MAX) OF OneAsymmetricKey` (RFC 5958 §2), DER,
/// holding the one key `pkcs8` (a PKCS#8 PrivateKeyInfo is a version-1 OneAsymmetricKey).
pub fn key_package(pkcs8: &[u8]) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let one = Any::from_der(pkcs8).map_err(der_failed)?;
    Ok(Zeroizing::new(vec![one].to_der().map_err(der_failed)?))
}

/// `ContentInfo(EnvelopedData)` (DER) around `signed_data`, the DER `SignedData` of a signed
/// key package (RFC 7030 §4.4.2, RFC 5958 §4: signed by the key's maker, then encrypted to
/// the client), readable only with the private key of `recipient`.
pub fn signed_key_package_for(
    recipient: &Certificate,
    signed_data: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let enveloped = enveloped_data(recipient, ID_SIGNED_DATA, signed_data)?;
    ContentInfo {
        content_type: ID_ENVELOPED_DATA,
        content: Any::encode_from(&enveloped).map_err(der_failed)?,
    }
    .to_der()
    .map_err(der_failed)
}

/// EnvelopedData (RFC 5652 §6) of `content` (of type `content_type`), AES-256-CBC under a
/// fresh content key, that key encrypted to `recipient`'s public key.
pub fn enveloped_data(
    recipient: &Certificate,
    content_type: ObjectIdentifier,
    content: &[u8],
) -> Result<EnvelopedData, EnvelopeError> {
    encrypted_for(|cek| recipient_info(recipient, cek), content_type, content)
}

/// EnvelopedData as [`enveloped_data`], the content key encrypted under a key derived from
/// `password` (RFC 5652 §6.2.4 PasswordRecipientInfo): PBKDF2 with HMAC-SHA-256, a fresh
/// 16-byte salt and [`PWRI_ITERATIONS`], then the RFC 3211 key wrap (id-alg-PWRI-KEK) with
/// AES-256-CBC. This is how CMP returns a central key to a client that protected its request
/// with a shared secret (RFC 9483 §4.1.6.3); `openssl cms -decrypt -pwri_password` reads it.
pub fn enveloped_data_for_password(
    password: &[u8],
    content_type: ObjectIdentifier,
    content: &[u8],
) -> Result<EnvelopedData, EnvelopeError> {
    encrypted_for(
        |cek| password_recipient_info(password, cek),
        content_type,
        content,
    )
}

/// PBKDF2 iterations of a password recipient: RFC 8018 §4.2 asks for at least 1000; the
/// shared secrets pkid makes are random, so this is a margin, not their strength.
pub const PWRI_ITERATIONS: u32 = 10_000;

/// id-alg-PWRI-KEK (RFC 3211 §2.3).
const ID_ALG_PWRI_KEK: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.3.9");

/// AES's block, bytes.
const AES_BLOCK: usize = 16;

/// The content key `cek` wrapped under a key derived from `password` (RFC 3211 §2.3.1):
/// length byte ‖ the complement of the key's first three bytes ‖ key ‖ random padding to at
/// least two whole blocks, encrypted twice with AES-256-CBC under the KEK — first with the
/// parameters' IV, then with the first pass's last block as IV.
fn password_recipient_info(password: &[u8], cek: &[u8]) -> Result<RecipientInfo, EnvelopeError> {
    use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_256};
    use aws_lc_rs::pbkdf2;
    let mut salt = [0u8; 16];
    rand::fill(&mut salt).map_err(failed("no randomness for the salt"))?;
    let mut kek = Zeroizing::new([0u8; AES_256_KEY_LEN]);
    let iterations = std::num::NonZeroU32::new(PWRI_ITERATIONS)
        .ok_or_else(|| EnvelopeError::Failed("PBKDF2 iterations".into()))?;
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password,
        kek.as_mut(),
    );
    let [a, b, c, ..] = cek else {
        return Err(EnvelopeError::Failed("a content key under 3 bytes".into()));
    };
    let mut block = Zeroizing::new(vec![cek.len() as u8, !a, !b, !c]);
    block.extend_from_slice(cek);
    let padded = block.len().div_ceil(AES_BLOCK).max(2) * AES_BLOCK;
    let mut padding = vec![0u8; padded - block.len()];
    rand::fill(&mut padding).map_err(failed("no randomness for the padding"))?;
    block.extend_from_slice(&padding);
    let mut iv = [0u8; AES_BLOCK];
    rand::fill(&mut iv).map_err(failed("no randomness for the IV"))?;
    let pass = |iv: [u8; AES_BLOCK], data: &mut [u8]| -> Result<(), EnvelopeError> {
        let key = UnboundCipherKey::new(&AES_256, kek.as_ref()).map_err(failed("the KEK"))?;
        EncryptingKey::cbc(key)
            .map_err(failed("AES-256-CBC"))?
            .less_safe_encrypt(data, EncryptionContext::Iv128(iv.into()))
            .map_err(failed("AES-256-CBC encryption"))?;
        Ok(())
    };
    pass(iv, &mut block)?;
    let mut last = [0u8; AES_BLOCK];
    last.copy_from_slice(&block[block.len() - AES_BLOCK..]);
    pass(last, &mut block)?;
    let prf = algorithm(
        pkid_protocols::cmp::HMAC_SHA256,
        Some(Any::from(der::asn1::Null)),
    );
    let kdf = pkid_protocols::cmp::Pbkdf2Params {
        salt: OctetString::new(salt.to_vec()).map_err(der_failed)?,
        iteration_count: u64::from(PWRI_ITERATIONS),
        key_length: None,
        prf: Some(prf),
    };
    let wrap_cipher = algorithm(
        ID_AES_256_CBC,
        Some(
            Any::encode_from(&OctetString::new(iv.to_vec()).map_err(der_failed)?)
                .map_err(der_failed)?,
        ),
    );
    Ok(RecipientInfo::Pwri(
        cms::enveloped_data::PasswordRecipientInfo {
            version: CmsVersion::V0,
            key_derivation_alg: Some(algorithm(
                pkid_protocols::cmp::ID_PBKDF2,
                Some(Any::encode_from(&kdf).map_err(der_failed)?),
            )),
            key_enc_alg: algorithm(
                ID_ALG_PWRI_KEK,
                Some(Any::encode_from(&wrap_cipher).map_err(der_failed)?),
            ),
            enc_key: OctetString::new(block.to_vec()).map_err(der_failed)?,
        },
    ))
}

/// EnvelopedData of `content` under a fresh AES-256 content key, that key given to the one
/// recipient `wrap` makes of it.
fn encrypted_for(
    wrap: impl FnOnce(&[u8]) -> Result<RecipientInfo, EnvelopeError>,
    content_type: ObjectIdentifier,
    content: &[u8],
) -> Result<EnvelopedData, EnvelopeError> {
    let mut cek = Zeroizing::new([0u8; AES_256_KEY_LEN]);
    rand::fill(cek.as_mut()).map_err(failed("no randomness for the content key"))?;
    let recipient_info = wrap(cek.as_ref())?;
    // RFC 5652 §6.1: 0 when every RecipientInfo is version 0 (a KTRI by issuer and serial), 3
    // with a PasswordRecipientInfo, 2 otherwise (a KARI is version 3).
    let version = match recipient_info {
        RecipientInfo::Ktri(_) => CmsVersion::V0,
        RecipientInfo::Pwri(_) => CmsVersion::V3,
        _ => CmsVersion::V2,
    };

    let mut content = Zeroizing::new(content.to_vec());
    let key = cipher::UnboundCipherKey::new(&cipher::AES_256, cek.as_ref())
        .map_err(failed("the content key"))?;
    let encrypting =
        cipher::PaddedBlockEncryptingKey::cbc_pkcs7(key).map_err(failed("AES-256-CBC"))?;
    let context = encrypting
        .encrypt(&mut *content)
        .map_err(failed("AES-256-CBC encryption"))?;
    let iv: &[u8] = (&context)
        .try_into()
        .map_err(failed("the AES-256-CBC IV"))?;
    let iv = OctetString::new(iv.to_vec()).map_err(der_failed)?;

    Ok(EnvelopedData {
        version,
        originator_info: None,
        recip_infos: RecipientInfos(SetOfVec::try_from(vec![recipient_info]).map_err(der_failed)?),
        encrypted_content: EncryptedContentInfo {
            content_type,
            content_enc_alg: algorithm(
                ID_AES_256_CBC,
                Some(Any::encode_from(&iv).map_err(der_failed)?),
            ),
            encrypted_content: Some(
                OctetString::new(content.as_slice().to_vec()).map_err(der_failed)?,
            ),
        },
        unprotected_attrs: None,
    })
}

fn issuer_and_serial(recipient: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: recipient.tbs_certificate.issuer.clone(),
        serial_number: recipient.tbs_certificate.serial_number.clone(),
    }
}

/// Refuses a recipient whose keyUsage extension, when it has one, does not allow `needed`
/// (RFC 5280 §4.2.1.3): keyEncipherment for RSA key transport, keyAgreement for ECDH (RFC 9483
/// §4.1.6.1–2 require them of the certificate a central key is enveloped to). Without the
/// extension the key is not restricted.
fn check_key_usage(
    recipient: &Certificate,
    needed: x509_cert::ext::pkix::KeyUsages,
    name: &str,
) -> Result<(), EnvelopeError> {
    use x509_cert::ext::pkix::KeyUsage;
    match recipient.tbs_certificate.get::<KeyUsage>() {
        Ok(Some((_, usage))) if !usage.0.contains(needed) => {
            Err(EnvelopeError::UnsupportedRecipient(format!(
                "the recipient certificate's keyUsage does not include {name}, so a key cannot be encrypted to it"
            )))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(EnvelopeError::UnsupportedRecipient(format!(
            "the recipient certificate's keyUsage does not decode: {e}"
        ))),
    }
}

/// The content key `cek` encrypted to `recipient`'s public key.
fn recipient_info(recipient: &Certificate, cek: &[u8]) -> Result<RecipientInfo, EnvelopeError> {
    use x509_cert::ext::pkix::KeyUsages;
    let spki = &recipient.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid == RSA_ENCRYPTION {
        check_key_usage(recipient, KeyUsages::KeyEncipherment, "keyEncipherment")?;
        let der = spki.to_der().map_err(der_failed)?;
        let public = rsa::PublicEncryptingKey::from_der(&der).map_err(|_| {
            EnvelopeError::UnsupportedRecipient(
                "the recipient certificate's RSA key is not usable (at least 2048 bits)".into(),
            )
        })?;
        if public.key_size_bits() < 2048 {
            return Err(EnvelopeError::UnsupportedRecipient(format!(
                "the recipient certificate's RSA key has {} bits; at least 2048",
                public.key_size_bits()
            )));
        }
        let oaep = rsa::OaepPublicEncryptingKey::new(public).map_err(failed("RSA-OAEP"))?;
        let mut out = vec![0u8; oaep.ciphertext_size()];
        let encrypted = oaep
            .encrypt(&rsa::OAEP_SHA256_MGF1SHA256, cek, &mut out, None)
            .map_err(failed("RSA-OAEP encryption"))?;
        let sha256 = algorithm(ID_SHA_256, None);
        let params = RsaesOaepParams {
            hash: sha256.clone(),
            mask_gen: algorithm(
                ID_MGF_1,
                Some(Any::encode_from(&sha256).map_err(der_failed)?),
            ),
        };
        return Ok(RecipientInfo::Ktri(KeyTransRecipientInfo {
            version: CmsVersion::V0,
            rid: RecipientIdentifier::IssuerAndSerialNumber(issuer_and_serial(recipient)),
            key_enc_alg: algorithm(
                ID_RSAES_OAEP,
                Some(Any::encode_from(&params).map_err(der_failed)?),
            ),
            enc_key: OctetString::new(encrypted.to_vec()).map_err(der_failed)?,
        }));
    }
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(EnvelopeError::UnsupportedRecipient(format!(
            "the recipient certificate's key ({}) is neither RSA nor EC",
            spki.algorithm.oid
        )));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    check_key_usage(recipient, KeyUsages::KeyAgreement, "keyAgreement")?;
    let ecdh = match curve {
        Some(c) if c == SECP_256_R_1 => &agreement::ECDH_P256,
        Some(c) if c == SECP_384_R_1 => &agreement::ECDH_P384,
        _ => {
            return Err(EnvelopeError::UnsupportedRecipient(
                "the recipient certificate's EC key is on neither P-256 nor P-384".into(),
            ))
        }
    };
    let rng = rand::SystemRandom::new();
    let ephemeral =
        agreement::EphemeralPrivateKey::generate(ecdh, &rng).map_err(failed("the ECDH key"))?;
    let ephemeral_public = ephemeral
        .compute_public_key()
        .map_err(failed("the ECDH public key"))?;
    let wrap_alg = algorithm(ID_AES_256_WRAP, None);
    let shared_info = EccCmsSharedInfo {
        key_info: wrap_alg.clone(),
        supp_pub_info: OctetString::new(((AES_256_KEY_LEN * 8) as u32).to_be_bytes().to_vec())
            .map_err(der_failed)?,
    }
    .to_der()
    .map_err(der_failed)?;
    let peer = agreement::UnparsedPublicKey::new(ecdh, spki.subject_public_key.raw_bytes());
    // ANSI X9.63 KDF with SHA-256 (RFC 5753 §7.1.4, SEC 1 §3.6.1): one block makes the 256-bit
    // key-encryption key, K = SHA-256(Z ‖ 00000001 ‖ SharedInfo). aws-lc-rs offers the
    // SP 800-56C one-step KDF, whose input order differs, so the one block is computed here.
    let kek = agreement::agree_ephemeral(
        ephemeral,
        peer,
        EnvelopeError::UnsupportedRecipient(
            "the recipient certificate's EC public key is not a valid point".into(),
        ),
        |z| {
            let mut ctx = digest::Context::new(&digest::SHA256);
            ctx.update(z);
            ctx.update(&1u32.to_be_bytes());
            ctx.update(&shared_info);
            let mut k = Zeroizing::new([0u8; AES_256_KEY_LEN]);
            k.copy_from_slice(ctx.finish().as_ref());
            Ok(k)
        },
    )?;
    let kek = key_wrap::AesKek::new(&key_wrap::AES_256, kek.as_ref())
        .map_err(failed("the key-encryption key"))?;
    let mut wrapped = vec![0u8; cek.len() + 8];
    let wrapped = key_wrap::KeyWrap::wrap(kek, cek, &mut wrapped)
        .map_err(failed("AES key wrap"))?
        .to_vec();
    Ok(RecipientInfo::Kari(KeyAgreeRecipientInfo {
        version: CmsVersion::V3,
        originator: OriginatorIdentifierOrKey::OriginatorKey(OriginatorPublicKey {
            // RFC 5753 §3.1.1: id-ecPublicKey; the curve is the recipient's (parameters absent).
            algorithm: algorithm(ID_EC_PUBLIC_KEY, None),
            public_key: BitString::from_bytes(ephemeral_public.as_ref()).map_err(der_failed)?,
        }),
        ukm: None,
        key_enc_alg: algorithm(
            DH_SINGLE_PASS_STD_DH_SHA256_KDF,
            Some(Any::encode_from(&wrap_alg).map_err(der_failed)?),
        ),
        recipient_enc_keys: vec![RecipientEncryptedKey {
            rid: KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(issuer_and_serial(recipient)),
            enc_key: OctetString::new(wrapped).map_err(der_failed)?,
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The key package, enveloped to a self-signed certificate of `newkey`, opens with
    /// `openssl cms -decrypt` and holds exactly the key put in.
    fn round_trip(newkey: &[&str]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let recipient = self_signed(d, newkey, &[]);
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .expect("key");
        let pkcs8 = pair.to_pkcs8v1().expect("pkcs8");
        let p7 = key_package_for(&recipient, pkcs8.as_ref()).expect("enveloped");
        std::fs::write(d.join("k.p7"), &p7).expect("write");
        openssl(
            d,
            &[
                "cms", "-decrypt", "-inform", "DER", "-in", "k.p7", "-inkey", "r.key", "-recip",
                "r.crt", "-binary", "-out", "akp.der",
            ],
        );
        let akp = std::fs::read(d.join("akp.der")).expect("akp");
        let keys: Vec<Any> = Vec::from_der(&akp).expect("a SEQUENCE OF OneAsymmetricKey");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].to_der().expect("der"), pkcs8.as_ref());
    }

    /// A self-signed certificate of a new `newkey` key (`r.key`, `r.crt` in `d`), with
    /// `extra` `openssl req` options.
    fn self_signed(d: &Path, newkey: &[&str], extra: &[&str]) -> Certificate {
        let mut args = vec!["req", "-x509", "-nodes", "-subj", "/CN=Người nhận", "-utf8"];
        args.extend_from_slice(newkey);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-keyout", "r.key", "-out", "r.crt", "-days", "1"]);
        openssl(d, &args);
        let pem = std::fs::read_to_string(d.join("r.crt")).expect("r.crt");
        let (_, der) = pem_rfc7468_decode(&pem);
        Certificate::from_der(&der).expect("certificate")
    }

    #[test]
    fn a_password_recipient_decrypts_with_openssl_pwri_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .expect("key")
        .to_pkcs8v1()
        .expect("pkcs8");
        let secret = "bí-mật-chung-7Qx9";
        let package = key_package(pkcs8.as_ref()).expect("package");
        let enveloped =
            enveloped_data_for_password(secret.as_bytes(), ID_CT_KP_A_KEY_PACKAGE, &package)
                .expect("enveloped");
        assert_eq!(
            enveloped.version,
            CmsVersion::V3,
            "RFC 5652 §6.1 with a pwri"
        );
        let p7 = ContentInfo {
            content_type: ID_ENVELOPED_DATA,
            content: Any::encode_from(&enveloped).expect("any"),
        }
        .to_der()
        .expect("der");
        std::fs::write(d.join("k.p7"), &p7).expect("write");
        let decrypt = |password: &str, out: &str| {
            std::process::Command::new("openssl")
                .current_dir(d)
                .args([
                    "cms", "-decrypt", "-inform", "DER", "-in", "k.p7", "-binary",
                ])
                .args(["-pwri_password", password, "-out", out])
                .output()
                .expect("openssl")
        };
        let opened = decrypt(secret, "akp.der");
        assert!(
            opened.status.success(),
            "{}",
            String::from_utf8_lossy(&opened.stderr)
        );
        let akp = std::fs::read(d.join("akp.der")).expect("akp");
        assert_eq!(akp, package.as_slice(), "the key package, exactly");
        let wrong = decrypt("sai", "wrong.der");
        assert!(!wrong.status.success(), "a wrong password opens nothing");
    }

    #[test]
    fn a_recipient_whose_key_usage_forbids_the_technique_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
        let rsa = ["-newkey", "rsa:2048"];
        for (newkey, usage, says) in [
            (
                &ec[..],
                "keyUsage=critical,digitalSignature",
                "keyAgreement",
            ),
            (
                &ec[..],
                "keyUsage=critical,digitalSignature,keyEncipherment",
                "keyAgreement",
            ),
            (
                &rsa[..],
                "keyUsage=critical,digitalSignature,keyAgreement",
                "keyEncipherment",
            ),
        ] {
            let recipient = self_signed(d, newkey, &["-addext", usage]);
            match key_package_for(&recipient, b"\x30\x00") {
                Err(EnvelopeError::UnsupportedRecipient(m)) => {
                    assert!(m.contains(says), "{usage}: {m}")
                }
                other => panic!("{usage}: {other:?}"),
            }
        }
        for (newkey, usage) in [
            (&ec[..], "keyUsage=critical,digitalSignature,keyAgreement"),
            (
                &rsa[..],
                "keyUsage=critical,digitalSignature,keyEncipherment",
            ),
        ] {
            let recipient = self_signed(d, newkey, &["-addext", usage]);
            key_package_for(&recipient, b"\x30\x00").unwrap_or_else(|e| panic!("{usage}: {e}"));
        }
    }

    fn pem_rfc7468_decode(pem: &str) -> (String, Vec<u8>) {
        let (label, der) = der::pem::decode_vec(pem.as_bytes()).expect("PEM");
        (label.to_owned(), der)
    }

    #[test]
    fn an_rsa_recipient_decrypts_with_openssl() {
        round_trip(&["-newkey", "rsa:2048"]);
    }

    #[test]
    fn p256_and_p384_recipients_decrypt_with_openssl() {
        round_trip(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
        round_trip(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"]);
    }

    #[test]
    fn other_keys_are_refused_as_the_peers_choice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let recipient = self_signed(d, &["-newkey", "ed25519"], &[]);
        assert!(matches!(
            key_package_for(&recipient, b"\x30\x00"),
            Err(EnvelopeError::UnsupportedRecipient(_))
        ));
    }
}
