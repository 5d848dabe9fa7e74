//! Byte-exact CRL vectors from `testdata/crl/` (see its README for how each was made):
//! decode → assert → re-encode → identical bytes, and rebuild the TBSCertList with our builder
//! from the decoded content → identical bytes.

use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use der::{Decode, Encode};
use pkid_protocols::algorithm;
use pkid_protocols::crl::{self, CrlBuilder, CrlKind, CrlParams, CrlSerial, RevokedEntry};
use pkid_protocols::revocation::CrlReason;
use pkid_protocols::time::unix_of;
use pkid_protocols::x509::IssuerInfo;
use pkid_protocols::{SignatureAlgorithm, Unsigned};
use std::path::PathBuf;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{IssuingDistributionPoint, SubjectKeyIdentifier};
use x509_cert::Certificate;

fn vector(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/crl")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(vector(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn issuer_certificate() -> Certificate {
    let pem = read("issuer.pem");
    let (label, der) = der::pem::decode_vec(&pem).expect("PEM");
    assert_eq!(label, "CERTIFICATE");
    Certificate::from_der(&der).expect("certificate")
}

fn issuer_info(cert: &Certificate) -> IssuerInfo {
    let (_, ski) = cert
        .tbs_certificate
        .get::<SubjectKeyIdentifier>()
        .expect("extensions")
        .expect("SKI");
    assert_eq!(
        ski.0.as_bytes(),
        algorithm::key_identifier(&cert.tbs_certificate.subject_public_key_info),
        "SKI is the RFC 5280 method (1) hash"
    );
    IssuerInfo {
        name: cert.tbs_certificate.subject.clone(),
        key_identifier: ski.0.as_bytes().to_vec(),
        ocsp_url: None,
        ca_issuers_url: None,
        crl_url: None,
        freshest_crl_url: None,
    }
}

/// The test issuer's key (`issuer.key`, PKCS#8 PEM).
fn vector_key() -> EcdsaKeyPair {
    let pem = read("issuer.key");
    let (label, der) = der::pem::decode_vec(&pem).expect("PEM");
    assert_eq!(label, "PRIVATE KEY");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der).expect("PKCS#8 P-256")
}

/// Rebuilds the TBSCertList of a decoded CRL with our builder.
fn rebuild_tbs(
    list: &x509_cert::crl::CertificateList,
    issuer: &IssuerInfo,
    issuer_key: &spki::SubjectPublicKeyInfoOwned,
) -> Vec<u8> {
    let tbs = &list.tbs_cert_list;
    let idp_url = tbs
        .crl_extensions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_ISSUING_DISTRIBUTION_POINT)
        .map(|e| {
            let idp = IssuingDistributionPoint::from_der(e.extn_value.as_bytes()).expect("IDP");
            match idp.distribution_point {
                Some(DistributionPointName::FullName(names)) => match names.first() {
                    Some(GeneralName::UniformResourceIdentifier(u)) => u.to_string(),
                    other => panic!("unexpected IDP name {other:?}"),
                },
                other => panic!("unexpected IDP {other:?}"),
            }
        });
    let params = CrlParams {
        issuer,
        algorithm: SignatureAlgorithm::EcdsaSha256,
        issuer_key,
        number: crl::number_of(list).expect("cRLNumber"),
        this_update: unix_of(&tbs.this_update),
        next_update: unix_of(tbs.next_update.as_ref().expect("nextUpdate")),
        kind: match crl::base_number_of(list) {
            Some(base_number) => CrlKind::Delta { base_number },
            None => CrlKind::Full,
        },
        distribution_point: idp_url.as_deref(),
        freshest_crl: None,
    };
    let entries = crl::revoked_entries(list).expect("entries");
    let mut b = CrlBuilder::new(&params, 0).expect("builder");
    for e in &entries {
        b.push(e).expect("entry");
    }
    b.finish().expect("tbs").der().to_vec()
}

#[test]
fn openssl_ca_gencrl_is_rebuilt_byte_for_byte() {
    let cert = issuer_certificate();
    let issuer = issuer_info(&cert);
    let der = read("openssl-full.crl.der");
    let list = crl::parse(&der).expect("decode");
    assert_eq!(
        list.to_der().expect("re-encode"),
        der,
        "decode → encode is byte-exact"
    );
    assert_eq!(crl::number_of(&list), Some(0x2a));
    assert_eq!(crl::base_number_of(&list), None);
    let entries = crl::revoked_entries(&list).expect("entries");
    let serials: Vec<String> = entries.iter().map(|e| e.serial.to_hex()).collect();
    // OpenSSL sorts numerically: the 7-octet serial first.
    assert_eq!(
        serials,
        [
            "ff000000000002",
            "1122334455667788",
            "7f00000000000001",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
        ]
    );
    let reasons: Vec<Option<CrlReason>> = entries.iter().map(|e| e.reason).collect();
    assert_eq!(
        reasons,
        [
            Some(CrlReason::CessationOfOperation),
            Some(CrlReason::Superseded),
            None,
            Some(CrlReason::KeyCompromise)
        ]
    );
    assert_eq!(
        entries[3].invalidity_date,
        Some(1_768_046_400),
        "2026-01-10T12:00:00Z"
    );
    assert_eq!(entries[3].revoked_at, 1_768_464_000, "2026-01-15T08:00:00Z");

    let tbs = list.tbs_cert_list.to_der().expect("tbs");
    algorithm::verify(
        &cert.tbs_certificate.subject_public_key_info,
        &list.signature_algorithm,
        &tbs,
        list.signature.raw_bytes(),
    )
    .expect("openssl's signature verifies");
    assert_eq!(
        rebuild_tbs(
            &list,
            &issuer,
            &cert.tbs_certificate.subject_public_key_info
        ),
        tbs,
        "our builder produces the TBSCertList openssl signed"
    );
}

/// The delta CRL for shard 3 that `write_pkid_vectors` made with our builder.
#[test]
fn pkid_delta_shard_crl_vector() {
    let cert = issuer_certificate();
    let issuer = issuer_info(&cert);
    let der = read("pkid-delta-shard.crl.der");
    let list = crl::parse(&der).expect("decode");
    assert_eq!(list.to_der().expect("re-encode"), der);
    assert_eq!(
        (crl::number_of(&list), crl::base_number_of(&list)),
        (Some(43), Some(42))
    );
    let entries = crl::revoked_entries(&list).expect("entries");
    assert_eq!(entries, pkid_delta_entries());
    let tbs = list.tbs_cert_list.to_der().expect("tbs");
    algorithm::verify(
        &cert.tbs_certificate.subject_public_key_info,
        &list.signature_algorithm,
        &tbs,
        list.signature.raw_bytes(),
    )
    .expect("signature verifies");
    assert_eq!(
        rebuild_tbs(
            &list,
            &issuer,
            &cert.tbs_certificate.subject_public_key_info
        ),
        tbs,
        "deterministic: same content, same bytes"
    );
}

const PKID_THIS_UPDATE: u64 = 1_790_000_000; // 2026-09-21T14:13:20Z
const PKID_SHARD_URL: &str = "http://127.0.0.1:8080/crl/issuing/3.crl";

fn pkid_delta_entries() -> Vec<RevokedEntry> {
    let e =
        |hex: &str, ago: u64, reason: Option<CrlReason>, invalidity: Option<u64>| RevokedEntry {
            serial: CrlSerial::from_hex(hex).expect("serial"),
            revoked_at: PKID_THIS_UPDATE - ago,
            reason,
            invalidity_date: invalidity,
        };
    vec![
        e(
            "0102030405060708",
            3600,
            Some(CrlReason::RemoveFromCRL),
            None,
        ),
        e(
            "0a0b0c0d0e0f10111213141516171819",
            7200,
            Some(CrlReason::CertificateHold),
            None,
        ),
        e(
            "7a0b0c0d0e0f10111213141516171819",
            60,
            Some(CrlReason::KeyCompromise),
            Some(PKID_THIS_UPDATE - 86_400),
        ),
        e("8a0b0c0d0e0f10111213141516171819", 120, None, None),
    ]
}

/// Writes `pkid-delta-shard.crl.der` (see the README). Run only to regenerate the vector.
#[test]
#[ignore]
fn write_pkid_vectors() {
    let cert = issuer_certificate();
    let issuer = issuer_info(&cert);
    let params = CrlParams {
        issuer: &issuer,
        algorithm: SignatureAlgorithm::EcdsaSha256,
        issuer_key: &cert.tbs_certificate.subject_public_key_info,
        number: 43,
        this_update: PKID_THIS_UPDATE,
        next_update: PKID_THIS_UPDATE + 86_400,
        kind: CrlKind::Delta { base_number: 42 },
        distribution_point: Some(PKID_SHARD_URL),
        freshest_crl: None,
    };
    let unsigned = crl::build(&params, &pkid_delta_entries()).expect("build");
    let digest = unsigned.digest().expect("a CRL offers its digest");
    let signature = vector_key().sign_digest(digest).expect("sign");
    let signed = unsigned.into_signed(signature.as_ref()).expect("assemble");
    std::fs::write(vector("pkid-delta-shard.crl.der"), signed.der()).expect("write");
}
