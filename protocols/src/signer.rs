//! The one way pkid reaches a private key.
//!
//! CA certificates, CRLs, OCSP responses and timestamp tokens are all signed through
//! [`Signer`], so a PKCS#11 token and a software key are interchangeable and the HSM is the core
//! rather than an option. Implementations live in the daemon (`keys::software`,
//! `keys::pkcs11`); this crate only builds the bytes to sign and assembles the result.

use crate::algorithm::SignatureAlgorithm;
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
    /// caller, who also needs the digest to check the signature; backends that can sign a digest
    /// (software keys, PKCS#11 `CKM_ECDSA`) override this, and nothing large crosses to a token.
    /// The default ignores `digest` and signs `message`, so every backend stays correct.
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
