//! EST (RFC 7030) message bodies: the certs-only PKCS#7 reply (§4.1.3, §4.2.3), the CSR
//! attributes (§4.5.2) and the SignedData around a server-generated key package (§4.4.2).
//! Transfer encoding (base64) is the HTTP binding's business.

use crate::algorithm::{KeyType, SignatureAlgorithm};
use crate::unsigned::Unsigned;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedAttributes, SignedData, SignerIdentifier,
    SignerInfo, SignerInfos,
};
use const_oid::db::rfc5911::{ID_CONTENT_TYPE, ID_DATA, ID_MESSAGE_DIGEST, ID_SIGNED_DATA};
use const_oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384, ID_EC_PUBLIC_KEY, RSA_ENCRYPTION, SECP_256_R_1,
    SECP_384_R_1, SHA_256_WITH_RSA_ENCRYPTION,
};
use const_oid::ObjectIdentifier;
use der::asn1::{OctetString, SetOfVec};
use der::{Any, Decode, Encode, Tag};
use x509_cert::attr::Attribute;
use x509_cert::Certificate;

/// `id-ct-KP-aKeyPackage` (RFC 5958 §3): the content type of an asymmetric key package.
pub const ID_CT_KP_A_KEY_PACKAGE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.2.1.2.78.5");

/// Why a body could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EstCodecError {
    /// A certificate did not parse, or encoding failed.
    #[error("encoding: {0}")]
    Der(#[from] der::Error),
    /// No signature could be made (the daemon's signer failed).
    #[error("signing the key package: {0}")]
    Signer(String),
}

/// A degenerate SignedData holding only `certificates` (DER), no signers, no content: the
/// "certs-only" reply of `cacerts`, `simpleenroll` and `simplereenroll`. The certificate SET OF
/// is sorted as DER requires.
pub fn certs_only(certificates: &[&[u8]]) -> Result<Vec<u8>, EstCodecError> {
    let mut set = Vec::with_capacity(certificates.len());
    for der in certificates {
        set.push(CertificateChoices::Certificate(Certificate::from_der(der)?));
    }
    let signed = SignedData {
        version: cms::content_info::CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(SetOfVec::try_from(set)?)),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    let info = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed)?,
    };
    Ok(info.to_der()?)
}

/// The CsrAttrs of RFC 7030 §4.5.2 for a profile: the subject attribute types the client must
/// supply (as OIDs), and the key types and signature algorithms the profile accepts: an
/// `id-ecPublicKey` attribute whose values are the allowed curves, `rsaEncryption` when RSA is
/// allowed, and the matching signature algorithm OIDs.
pub fn csr_attrs(subject: &[ObjectIdentifier], keys: &[KeyType]) -> Result<Vec<u8>, EstCodecError> {
    let mut items: Vec<Any> = Vec::new();
    for oid in subject {
        items.push(Any::encode_from(oid)?);
    }
    let mut curves = Vec::new();
    let mut rsa = false;
    for k in keys {
        match k {
            KeyType::EcP256 => curves.push(SECP_256_R_1),
            KeyType::EcP384 => curves.push(SECP_384_R_1),
            KeyType::Rsa(_) => rsa = true,
        }
    }
    if !curves.is_empty() {
        let mut values = SetOfVec::new();
        for c in &curves {
            values.insert(Any::encode_from(c)?)?;
        }
        items.push(Any::encode_from(&Attribute {
            oid: ID_EC_PUBLIC_KEY,
            values,
        })?);
        items.push(Any::encode_from(&ECDSA_WITH_SHA_256)?);
        if curves.contains(&SECP_384_R_1) {
            items.push(Any::encode_from(&ECDSA_WITH_SHA_384)?);
        }
    }
    if rsa {
        items.push(Any::encode_from(&RSA_ENCRYPTION)?);
        items.push(Any::encode_from(&SHA_256_WITH_RSA_ENCRYPTION)?);
    }
    Ok(items.to_der()?)
}

/// An asymmetric key package (RFC 5958 §2) waiting for the signature of the party that
/// generated its key (RFC 7030 §4.4.2): the signed attributes (contentType
/// `id-ct-KP-aKeyPackage`, messageDigest of the package) are encoded, DER-sorted, once.
///
/// ```text
/// SignedData ::= SEQUENCE {                                  -- RFC 5652 §5.1
///   version CMSVersion,                                      -- 3: eContentType is not id-data
///   digestAlgorithms SET OF DigestAlgorithmIdentifier,       -- the signer's hash
///   encapContentInfo { eContentType id-ct-KP-aKeyPackage,
///                      eContent [0] EXPLICIT OCTET STRING }  -- AsymmetricKeyPackage DER
///   certificates [0] IMPLICIT CertificateSet,                -- the signer and its chain
///   signerInfos SET OF SignerInfo }                          -- one, v1, issuerAndSerialNumber
/// ```
///
/// [`Unsigned::into_signed`] gives the DER of the `SignedData` itself (not a `ContentInfo`):
/// RFC 7030 §4.4.2 and RFC 5958 §4 put it inside an EnvelopedData whose encrypted content type
/// is `id-signedData`. The package holds a private key: this value wipes its copy when dropped,
/// the caller wipes the returned bytes (the `cms` values built on the way are not wiped; they
/// live for this call only).
pub struct UnsignedKeyPackage {
    package: Vec<u8>,
    message: Vec<u8>,
    algorithm: SignatureAlgorithm,
    signer: IssuerAndSerialNumber,
    certificates: Vec<Certificate>,
}

/// Prepares `package` (DER AsymmetricKeyPackage) to be signed under `algorithm` by the key of
/// `signer`, whose certificate and `chain` travel in the SignedData.
pub fn key_package_to_sign(
    package: &[u8],
    signer: &Certificate,
    chain: &[Certificate],
    algorithm: SignatureAlgorithm,
) -> Result<UnsignedKeyPackage, EstCodecError> {
    let digest = aws_lc_rs::digest::digest(algorithm.digest(), package);
    let attrs = vec![
        Attribute {
            oid: ID_CONTENT_TYPE,
            values: SetOfVec::try_from(vec![Any::encode_from(&ID_CT_KP_A_KEY_PACKAGE)?])?,
        },
        Attribute {
            oid: ID_MESSAGE_DIGEST,
            values: SetOfVec::try_from(vec![Any::encode_from(&OctetString::new(
                digest.as_ref(),
            )?)?])?,
        },
    ];
    // SetOfVec sorts by DER encoding; the signature covers this exact SET OF encoding.
    let signed_attrs: SignedAttributes = SetOfVec::try_from(attrs)?;
    let mut certificates = vec![signer.clone()];
    certificates.extend(chain.iter().filter(|c| *c != signer).cloned());
    Ok(UnsignedKeyPackage {
        package: package.to_vec(),
        message: signed_attrs.to_der()?,
        algorithm,
        signer: IssuerAndSerialNumber {
            issuer: signer.tbs_certificate.issuer.clone(),
            serial_number: signer.tbs_certificate.serial_number.clone(),
        },
        certificates,
    })
}

impl Drop for UnsignedKeyPackage {
    fn drop(&mut self) {
        // The package holds a private key: no copy outlives its use.
        self.package.iter_mut().for_each(|b| *b = 0);
    }
}

impl Unsigned for UnsignedKeyPackage {
    /// DER `SignedData` (it holds the private key: the caller wipes it).
    type Signed = Vec<u8>;
    type Error = EstCodecError;

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn message(&self) -> &[u8] {
        &self.message
    }

    fn into_signed(self, signature: &[u8]) -> Result<Self::Signed, EstCodecError> {
        let digest_algorithm = spki::AlgorithmIdentifierOwned {
            oid: match self.algorithm {
                SignatureAlgorithm::EcdsaSha384 => const_oid::db::rfc5912::ID_SHA_384,
                SignatureAlgorithm::EcdsaSha256 | SignatureAlgorithm::RsaPkcs1Sha256 => {
                    const_oid::db::rfc5912::ID_SHA_256
                }
            },
            parameters: None,
        };
        let signer_info = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(self.signer.clone()),
            digest_alg: digest_algorithm.clone(),
            signed_attrs: Some(SignedAttributes::from_der(&self.message)?),
            signature_algorithm: self.algorithm.identifier(),
            signature: OctetString::new(signature)?,
            unsigned_attrs: None,
        };
        let mut certificates = SetOfVec::new();
        for c in &self.certificates {
            certificates.insert(CertificateChoices::Certificate(c.clone()))?;
        }
        let signed = SignedData {
            version: CmsVersion::V3,
            digest_algorithms: SetOfVec::try_from(vec![digest_algorithm])?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_CT_KP_A_KEY_PACKAGE,
                econtent: Some(Any::new(Tag::OctetString, self.package.as_slice())?),
            },
            certificates: Some(CertificateSet(certificates)),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info])?),
        };
        Ok(signed.to_der()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::ObjectIdentifier as Oid;

    #[test]
    fn csr_attrs_lists_subject_types_curves_and_rsa() {
        let cn = Oid::new_unwrap("2.5.4.3");
        let der = csr_attrs(
            &[cn],
            &[KeyType::EcP384, KeyType::EcP256, KeyType::Rsa(2048)],
        )
        .expect("encodes");
        let items: Vec<Any> = Vec::from_der(&der).expect("a SEQUENCE OF");
        assert_eq!(items[0].decode_as::<Oid>().expect("oid"), cn);
        let ec: Attribute = items[1].decode_as().expect("attribute");
        assert_eq!(ec.oid, ID_EC_PUBLIC_KEY);
        let curves: Vec<Oid> = ec
            .values
            .iter()
            .map(|v| v.decode_as().expect("curve"))
            .collect();
        assert_eq!(curves.len(), 2);
        assert!(curves.contains(&SECP_256_R_1) && curves.contains(&SECP_384_R_1));
        let rest: Vec<Oid> = items[2..]
            .iter()
            .map(|v| v.decode_as().expect("oid"))
            .collect();
        assert_eq!(
            rest,
            vec![
                ECDSA_WITH_SHA_256,
                ECDSA_WITH_SHA_384,
                RSA_ENCRYPTION,
                SHA_256_WITH_RSA_ENCRYPTION
            ]
        );
    }

    #[test]
    fn certs_only_refuses_what_is_not_a_certificate() {
        assert!(certs_only(&[b"not a certificate".as_slice()]).is_err());
        let empty = certs_only(&[]).expect("an empty set encodes");
        let info = ContentInfo::from_der(&empty).expect("ContentInfo");
        assert_eq!(info.content_type, ID_SIGNED_DATA);
    }
}
