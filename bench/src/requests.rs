//! OCSP requests for a population, as a relying party would send them.

use base64::Engine;
use der::asn1::OctetString;
use der::Encode;
use pkid_protocols::ocsp::{CertIdHash, IssuerHashes};
use x509_cert::ext::Extension;
use x509_ocsp::{OcspRequest, Request, TbsRequest, Version};

/// DER of a one-CertID request (SHA-1 CertID, the RFC 5019 default), with an optional nonce.
pub fn request(issuer: &IssuerHashes, serial: u128, nonce: Option<&[u8]>) -> Vec<u8> {
    let serial = serial_number(serial);
    let cert_id = issuer
        .cert_id(CertIdHash::Sha1, serial)
        .unwrap_or_else(|e| panic!("cert id: {e}"));
    let request_extensions = nonce.map(|n| {
        let inner = OctetString::new(n.to_vec())
            .and_then(|o| o.to_der())
            .unwrap_or_else(|e| panic!("nonce: {e}"));
        vec![Extension {
            extn_id: const_oid_nonce(),
            critical: false,
            extn_value: OctetString::new(inner).unwrap_or_else(|e| panic!("nonce: {e}")),
        }]
    });
    OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: cert_id,
                single_request_extensions: None,
            }],
            request_extensions,
        },
        optional_signature: None,
    }
    .to_der()
    .unwrap_or_else(|e| panic!("request: {e}"))
}

fn const_oid_nonce() -> der::asn1::ObjectIdentifier {
    der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2")
}

/// The minimal positive INTEGER of a serial key.
pub fn serial_number(serial: u128) -> x509_cert::serial_number::SerialNumber {
    let bytes = serial.to_be_bytes();
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(15);
    let mut v = Vec::new();
    if bytes[start] & 0x80 != 0 {
        v.push(0);
    }
    v.extend_from_slice(&bytes[start..]);
    x509_cert::serial_number::SerialNumber::new(&v).unwrap_or_else(|e| panic!("serial: {e}"))
}

/// The RFC 5019 GET path for a request: `/ocsp/` + URL-escaped base64.
pub fn get_path(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let escaped = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    format!("/ocsp/{escaped}")
}
