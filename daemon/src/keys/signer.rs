//! The one way pkid reaches a private key, and the one place a built structure meets it.
//!
//! ```text
//! protocols: build ──▶ impl Unsigned ─┐
//!                                     ▼
//! keys::sign: Signer::sign(message) / Signer::sign_digest(message, digest)
//!                                     │  (the step an async signer will await)
//! protocols: Unsigned::into_signed ◀──┘ (verify where required, encode) ──▶ DER
//! ```
//!
//! CA certificates, CRLs, OCSP responses and timestamp tokens are all signed through
//! [`Signer`], so a PKCS#11 token and a software key are interchangeable and the HSM is the core
//! rather than an option. The `protocols` crate never sees a signer: it builds the bytes to sign
//! ([`Unsigned`]) and assembles the result, so a signer that must wait (a session pool, a
//! remote HSM) changes only this module.

use pkid_protocols::crl::CrlError;
use pkid_protocols::ocsp::OcspError;
use pkid_protocols::tsp::TspError;
use pkid_protocols::x509::CertificateError;
use pkid_protocols::{SignatureAlgorithm, Unsigned};
use spki::SubjectPublicKeyInfoOwned;

/// A private key that signs on request.
pub trait Signer: Send + Sync {
    /// The algorithm [`Signer::sign`] produces signatures for.
    fn algorithm(&self) -> SignatureAlgorithm;
    /// The public half of the key.
    fn public_key(&self) -> &SubjectPublicKeyInfoOwned;
    /// Signs `message` (not a digest: the signer hashes it) and returns the signature in its
    /// X.509 encoding (DER `Ecdsa-Sig-Value` for ECDSA, the raw block for RSA).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;

    /// Signs `message` whose digest the caller has already computed with
    /// [`SignatureAlgorithm::digest`], returning the same encoding as [`Signer::sign`].
    ///
    /// Large messages (a CRL with a million entries is ~50 MB) are then hashed once, by the
    /// builder, which also needs the digest to check the signature; backends that can sign a
    /// digest (software keys, PKCS#11 `CKM_ECDSA`) override this, and nothing large crosses to a
    /// token. The default ignores `digest` and signs `message`, so every backend stays correct.
    fn sign_digest(
        &self,
        message: &[u8],
        digest: &aws_lc_rs::digest::Digest,
    ) -> Result<Vec<u8>, SignError> {
        let _ = digest;
        self.sign(message)
    }
}

/// Why a signature could not be made. Carries no key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// A transient fault (token removed, session lost after one retry): try again later.
    #[error("key backend unavailable: {0}")]
    Unavailable(String),
    /// A permanent fault (key missing, mechanism refused).
    #[error("signing failed: {0}")]
    Failed(String),
}

/// Signs what `unsigned` built with `signer` and assembles the result: the digest when the
/// builder computed one (a CRL, hashed once), the message otherwise. Refuses, before the key is
/// used, bytes that name another algorithm than the key signs with (no relying party could
/// verify the result).
pub fn sign<U>(signer: &dyn Signer, unsigned: U) -> Result<U::Signed, U::Error>
where
    U: Unsigned,
    U::Error: From<SignError>,
{
    if signer.algorithm() != unsigned.algorithm() {
        return Err(SignError::Failed(format!(
            "the bytes name {:?} but the key signs with {:?}",
            unsigned.algorithm(),
            signer.algorithm()
        ))
        .into());
    }
    let signature = match unsigned.digest() {
        Some(digest) => signer.sign_digest(unsigned.message(), digest),
        None => signer.sign(unsigned.message()),
    }?;
    unsigned.into_signed(&signature)
}

impl From<SignError> for CertificateError {
    fn from(e: SignError) -> Self {
        match e {
            SignError::Unavailable(m) => Self::SignerUnavailable(m),
            SignError::Failed(m) => Self::SignerFailed(m),
        }
    }
}

impl From<SignError> for CrlError {
    fn from(e: SignError) -> Self {
        match e {
            SignError::Unavailable(m) => Self::SignerUnavailable(m),
            SignError::Failed(m) => Self::SignerFailed(m),
        }
    }
}

/// A transient fault is `tryLater`, a permanent one `internalError` (RFC 6960 §4.2.1).
impl From<SignError> for OcspError {
    fn from(e: SignError) -> Self {
        match e {
            SignError::Unavailable(m) => Self::SignerUnavailable(m),
            SignError::Failed(m) => Self::Internal(m),
        }
    }
}

/// An EST key package that cannot be signed is our fault, answered 500 or 503 by the caller.
impl From<SignError> for pkid_protocols::est::EstCodecError {
    fn from(e: SignError) -> Self {
        Self::Signer(e.to_string())
    }
}

/// Both are `systemFailure` on the wire (RFC 3161 §2.4.2); they differ in the log.
impl From<SignError> for TspError {
    fn from(e: SignError) -> Self {
        match e {
            SignError::Unavailable(m) => Self::Unavailable(format!("key backend: {m}")),
            SignError::Failed(m) => Self::Internal(format!("signing: {m}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A signer that records which entry point was used and answers with a fixed result.
    struct Recording {
        public_key: SubjectPublicKeyInfoOwned,
        answer: Result<Vec<u8>, SignError>,
        calls: Mutex<Vec<&'static str>>,
    }

    impl Signer for Recording {
        fn algorithm(&self) -> SignatureAlgorithm {
            SignatureAlgorithm::EcdsaSha256
        }
        fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
            &self.public_key
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, SignError> {
            self.calls.lock().expect("lock").push("sign");
            self.answer.clone()
        }
        fn sign_digest(
            &self,
            _: &[u8],
            _: &aws_lc_rs::digest::Digest,
        ) -> Result<Vec<u8>, SignError> {
            self.calls.lock().expect("lock").push("sign_digest");
            self.answer.clone()
        }
    }

    fn recording(answer: Result<Vec<u8>, SignError>) -> Recording {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .expect("keygen");
        let der = kp.public_key().as_der().expect("der");
        Recording {
            public_key: pkid_protocols::algorithm::parse_spki(der.as_ref()).expect("spki"),
            answer,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Bytes to sign that hand the signature back unchanged.
    struct Echo {
        algorithm: SignatureAlgorithm,
        digest: Option<aws_lc_rs::digest::Digest>,
    }

    impl Unsigned for Echo {
        type Signed = Vec<u8>;
        type Error = OcspError;
        fn algorithm(&self) -> SignatureAlgorithm {
            self.algorithm
        }
        fn message(&self) -> &[u8] {
            b"tbs"
        }
        fn digest(&self) -> Option<&aws_lc_rs::digest::Digest> {
            self.digest.as_ref()
        }
        fn into_signed(self, signature: &[u8]) -> Result<Vec<u8>, OcspError> {
            Ok(signature.to_vec())
        }
    }

    fn echo(algorithm: SignatureAlgorithm, with_digest: bool) -> Echo {
        Echo {
            algorithm,
            digest: with_digest.then(|| aws_lc_rs::digest::digest(algorithm.digest(), b"tbs")),
        }
    }

    #[test]
    fn a_precomputed_digest_is_signed_and_small_messages_are_signed_whole() {
        let s = recording(Ok(vec![1, 2]));
        assert_eq!(
            sign(&s, echo(SignatureAlgorithm::EcdsaSha256, true)),
            Ok(vec![1, 2])
        );
        assert_eq!(
            sign(&s, echo(SignatureAlgorithm::EcdsaSha256, false)),
            Ok(vec![1, 2])
        );
        assert_eq!(*s.calls.lock().expect("lock"), ["sign_digest", "sign"]);
    }

    #[test]
    fn bytes_naming_another_algorithm_never_reach_the_key() {
        let s = recording(Ok(vec![1]));
        let e = sign(&s, echo(SignatureAlgorithm::EcdsaSha384, false)).expect_err("refused");
        assert!(matches!(e, OcspError::Internal(_)), "{e:?}");
        assert!(s.calls.lock().expect("lock").is_empty());
    }

    #[test]
    fn a_transient_key_fault_stays_transient_in_each_protocol() {
        let s = recording(Err(SignError::Unavailable("token removed".into())));
        let e = sign(&s, echo(SignatureAlgorithm::EcdsaSha256, false)).expect_err("fault");
        assert_eq!(
            e.wire_status(),
            x509_ocsp::OcspResponseStatus::TryLater,
            "{e:?}"
        );
        let cert: CertificateError = SignError::Unavailable("x".into()).into();
        assert_eq!(cert, CertificateError::SignerUnavailable("x".into()));
        let crl: CrlError = SignError::Failed("x".into()).into();
        assert_eq!(crl, CrlError::SignerFailed("x".into()));
        let tsp: TspError = SignError::Unavailable("x".into()).into();
        assert!(matches!(tsp, TspError::Unavailable(_)), "{tsp:?}");
    }
}
