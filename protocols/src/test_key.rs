//! A P-256 key for unit tests, signing the way the daemon's `keys::sign` does: the digest when
//! the unsigned value offers one, the message otherwise.

use crate::algorithm::parse_spki;
use crate::unsigned::Unsigned;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

/// A fresh ECDSA P-256 key and its SubjectPublicKeyInfo.
pub(crate) struct TestKey {
    kp: EcdsaKeyPair,
    pub(crate) spki: spki::SubjectPublicKeyInfoOwned,
}

impl TestKey {
    /// Generates a key.
    pub(crate) fn p256() -> Self {
        let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("keygen");
        let spki = parse_spki(kp.public_key().as_der().expect("der").as_ref()).expect("spki");
        Self { kp, spki }
    }

    /// ECDSA-SHA256 over `message`, DER `Ecdsa-Sig-Value`.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.kp
            .sign(&SystemRandom::new(), message)
            .expect("sign")
            .as_ref()
            .to_vec()
    }

    /// The signature `unsigned` asks for: over its digest if it computed one, else its message.
    pub(crate) fn signature_for<U: Unsigned>(&self, unsigned: &U) -> Vec<u8> {
        match unsigned.digest() {
            Some(d) => self.kp.sign_digest(d).expect("sign").as_ref().to_vec(),
            None => self.sign(unsigned.message()),
        }
    }

    /// Signs and assembles in one step.
    pub(crate) fn sign_into<U: Unsigned>(&self, unsigned: U) -> Result<U::Signed, U::Error> {
        let signature = self.signature_for(&unsigned);
        unsigned.into_signed(&signature)
    }
}

/// `signature` with its last bit flipped, as a faulty token would return it.
pub(crate) fn corrupt(mut signature: Vec<u8>) -> Vec<u8> {
    if let Some(last) = signature.last_mut() {
        *last ^= 1;
    }
    signature
}
