//! EST (RFC 7030) message bodies: the certs-only PKCS#7 reply (§4.1.3, §4.2.3) and the CSR
//! attributes (§4.5.2). Transfer encoding (base64) is the HTTP binding's business.

use crate::algorithm::KeyType;
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use const_oid::db::rfc5911::{ID_DATA, ID_SIGNED_DATA};
use const_oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384, ID_EC_PUBLIC_KEY, RSA_ENCRYPTION, SECP_256_R_1,
    SECP_384_R_1, SHA_256_WITH_RSA_ENCRYPTION,
};
use const_oid::ObjectIdentifier;
use der::asn1::SetOfVec;
use der::{Any, Decode, Encode};
use x509_cert::attr::Attribute;
use x509_cert::Certificate;

/// Why a body could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EstCodecError {
    /// A certificate did not parse, or encoding failed.
    #[error("encoding: {0}")]
    Der(#[from] der::Error),
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
