//! The ESS `signingCertificateV2` signed attribute ([RFC 5035 §3](https://www.rfc-editor.org/rfc/rfc5035#section-3)),
//! which RFC 5816 lets a TSA use instead of the SHA-1-only `signingCertificate`: it binds the
//! token to the TSA certificate by a SHA-256 hash, so a relying party cannot be handed another
//! certificate for the same key.
//!
//! ```text
//! id-aa-signingCertificateV2 OBJECT IDENTIFIER ::= { iso(1) member-body(2) us(840)
//!     rsadsi(113549) pkcs(1) pkcs9(9) smime(16) id-aa(2) 47 }
//!
//! SigningCertificateV2 ::=  SEQUENCE {
//!     certs        SEQUENCE OF ESSCertIDv2,
//!     policies     SEQUENCE OF PolicyInformation OPTIONAL }
//!
//! ESSCertIDv2 ::=  SEQUENCE {
//!     hashAlgorithm           AlgorithmIdentifier DEFAULT {algorithm id-sha256},
//!     certHash                Hash,
//!     issuerSerial            IssuerSerial OPTIONAL }
//!
//! Hash ::= OCTET STRING
//!
//! IssuerSerial ::= SEQUENCE {
//!     issuer                  GeneralNames,
//!     serialNumber            CertificateSerialNumber }
//! ```
//!
//! Neither `cms` 0.2 nor `x509-cert` 0.2 has these types.

use const_oid::db::rfc5912::ID_SHA_256;
use der::asn1::OctetString;
use der::Sequence;
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::name::GeneralNames;
use x509_cert::serial_number::SerialNumber;

/// `id-aa-signingCertificateV2` (RFC 5035 §3).
pub use const_oid::db::rfc5911::ID_AA_SIGNING_CERTIFICATE_V_2;

/// The `DEFAULT {algorithm id-sha256}` of `ESSCertIDv2.hashAlgorithm` (parameters absent),
/// for comparing a decoded, explicitly encoded value.
pub fn sha256_identifier() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ID_SHA_256,
        parameters: None,
    }
}

/// `SigningCertificateV2` (RFC 5035 §3).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SigningCertificateV2 {
    /// The signer's certificate first; pkid lists only that one.
    pub certs: Vec<EssCertIdV2>,
    /// Certificate policies the signature is bound to (pkid leaves this out).
    #[asn1(optional = "true")]
    pub policies: Option<Vec<PolicyInformation>>,
}

/// `ESSCertIDv2` (RFC 5035 §4).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct EssCertIdV2 {
    /// The hash over the whole DER certificate. `None` is the DEFAULT, SHA-256: DER leaves
    /// default values out, so pkid (which always uses SHA-256) always sets `None`.
    #[asn1(optional = "true")]
    pub hash_algorithm: Option<AlgorithmIdentifierOwned>,
    /// The hash of the certificate's DER encoding.
    pub cert_hash: OctetString,
    /// The certificate's issuer and serial number.
    #[asn1(optional = "true")]
    pub issuer_serial: Option<IssuerSerial>,
}

/// `IssuerSerial` (RFC 5035 §4).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct IssuerSerial {
    /// The issuer's name, as one `directoryName`.
    pub issuer: GeneralNames,
    /// The certificate's serial number.
    pub serial_number: SerialNumber,
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::{Decode, Encode};

    #[test]
    fn sha256_hash_algorithm_is_left_out_as_the_default() {
        let id = EssCertIdV2 {
            hash_algorithm: None,
            cert_hash: OctetString::new(vec![0xab; 32]).expect("hash"),
            issuer_serial: None,
        };
        let der = SigningCertificateV2 {
            certs: vec![id.clone()],
            policies: None,
        }
        .to_der()
        .expect("der");
        // SEQUENCE { SEQUENCE { SEQUENCE { OCTET STRING (32) } } }: no AlgorithmIdentifier.
        assert_eq!(&der[..6], &[0x30, 0x26, 0x30, 0x24, 0x30, 0x22]);
        assert_eq!(der[6], 0x04);
        let back = SigningCertificateV2::from_der(&der).expect("decode");
        assert_eq!(back.certs, vec![id]);
    }
}
