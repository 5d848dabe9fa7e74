//! The seam between building and signing: a value that owns the exact bytes to be signed.
//!
//! ```text
//! build (pure) ──▶ impl Unsigned ──message()/digest()──▶ daemon's signer ──signature──┐
//!                        │                                                             │
//!                        └──────────────── into_signed(signature) ◀────────────────────┘
//!                                           (verify where required, encode)
//! ```
//!
//! This crate never reaches a key. Each signed structure — certificate
//! ([`crate::x509::ToBeSigned`]), CRL ([`crate::crl::UnsignedCrl`]), OCSP response
//! ([`crate::ocsp::UnsignedResponse`]), time-stamp token ([`crate::tsp::UnsignedToken`]) — is
//! built into one of these values, the daemon signs [`Unsigned::message`] with whatever key
//! backend it has (blocking, pooled or, later, awaited on a remote HSM), and hands the signature
//! back to [`Unsigned::into_signed`], which checks it where the structure is published without a
//! second look (certificates, CRLs) and encodes the result around the bytes already built.

use crate::algorithm::SignatureAlgorithm;
use der::asn1::{AnyRef, BitStringRef};
use der::{Decode, Encode, Sequence};
use spki::{AlgorithmIdentifierOwned, AlgorithmIdentifierRef};

/// A structure whose to-be-signed bytes are built and which waits for their signature.
pub trait Unsigned {
    /// What assembling produces (DER, or a type that owns it).
    type Signed;
    /// Why building the result failed, including the protocol's answer to "no signature could
    /// be made" (the daemon converts its signer's error into it).
    type Error;

    /// The algorithm the bytes name and the signature must be made with.
    fn algorithm(&self) -> SignatureAlgorithm;

    /// The exact bytes to sign (not a digest: the signer hashes them).
    fn message(&self) -> &[u8];

    /// The digest of [`Unsigned::message`] under [`SignatureAlgorithm::digest`], when the value
    /// computed it already because the message is large (a CRL): signing that digest instead of
    /// the message hashes it once, and [`Unsigned::into_signed`] verifies against the same
    /// digest. `None` for small messages, which a signer simply hashes.
    fn digest(&self) -> Option<&aws_lc_rs::digest::Digest> {
        None
    }

    /// Checks `signature` where this structure requires it and encodes the signed result.
    fn into_signed(self, signature: &[u8]) -> Result<Self::Signed, Self::Error>;
}

/// `SEQUENCE { tbs, signatureAlgorithm, signatureValue BIT STRING }` with the to-be-signed
/// part already encoded: the outer shape of `Certificate` (RFC 5280 §4.1) and `CertificateList`
/// (§5.1), and the head of `BasicOCSPResponse` (RFC 6960 §4.2.1).
#[derive(Clone, Copy, Debug, Sequence)]
pub(crate) struct SignedRef<'a> {
    /// The to-be-signed structure, exactly the bytes that were signed.
    pub(crate) tbs: AnyRef<'a>,
    /// The signature algorithm (equal to the one inside the to-be-signed structure).
    pub(crate) algorithm: AlgorithmIdentifierRef<'a>,
    /// The signature.
    pub(crate) signature: BitStringRef<'a>,
}

impl<'a> SignedRef<'a> {
    /// The parts around `tbs` (a complete DER TLV) signed under `identifier`.
    pub(crate) fn new(
        tbs: &'a [u8],
        identifier: &'a AlgorithmIdentifierOwned,
        signature: &'a [u8],
    ) -> Result<Self, der::Error> {
        Ok(Self {
            tbs: AnyRef::from_der(tbs)?,
            algorithm: AlgorithmIdentifierRef {
                oid: identifier.oid,
                parameters: identifier.parameters.as_ref().map(AnyRef::from),
            },
            signature: BitStringRef::from_bytes(signature)?,
        })
    }
}

/// Encodes [`SignedRef`] into one allocation of the final size: `tbs` is copied once, nothing
/// is decoded into owned types and re-encoded.
pub(crate) fn signed_sequence(
    tbs: &[u8],
    algorithm: SignatureAlgorithm,
    signature: &[u8],
) -> Result<Vec<u8>, der::Error> {
    SignedRef::new(tbs, &algorithm.identifier(), signature)?.to_der()
}
