//! Unit and vector tests for the time-stamp protocol. Vectors are in `testdata/tsp/`; its
//! README gives the openssl command that made each one.

use super::status::{FailureInfo, PkiStatus, TimeStampResp};
use super::*;
use crate::algorithm::{parse_spki, KeyType};
use crate::profile::Profile;
use crate::x509::{build_tbs, pem_or_der, CertificateTemplate, ToBeSigned};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P384_SHA384_ASN1_SIGNING, RSA_PKCS1_SHA256,
};
use cms::content_info::CmsVersion;
use cms::signed_data::SignedData;
use der::Encode;
use std::path::PathBuf;
use x509_cert::ext::pkix::{KeyUsage, KeyUsages};
use x509_tsp::TimeStampReq;

/// 2027-01-15T08:00:00Z, inside every test certificate's validity.
const NOW: u64 = 1_800_000_000;

fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/tsp")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cert_der(name: &str) -> Vec<u8> {
    pem_or_der(&vector(name), &["CERTIFICATE"]).expect("certificate PEM")
}

enum Key {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

struct TestSigner {
    key: Key,
    alg: SignatureAlgorithm,
    spki: SubjectPublicKeyInfoOwned,
}

impl TestSigner {
    /// Signs `message` with the key directly, as the daemon's signer would.
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.key {
            Key::Ec(k) => k.sign(&rng, message).expect("ecdsa").as_ref().to_vec(),
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .expect("rsa");
                sig
            }
        }
    }

    /// Signs what `unsigned` asks for and assembles it.
    fn sign_into<U: Unsigned>(&self, unsigned: U) -> Result<U::Signed, U::Error> {
        let signature = self.sign(unsigned.message());
        unsigned.into_signed(&signature)
    }
}

fn ec_signer(p384: bool) -> TestSigner {
    let (alg, sa) = if p384 {
        (
            &ECDSA_P384_SHA384_ASN1_SIGNING,
            SignatureAlgorithm::EcdsaSha384,
        )
    } else {
        (
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            SignatureAlgorithm::EcdsaSha256,
        )
    };
    let kp = EcdsaKeyPair::generate(alg).expect("keygen");
    let spki = parse_spki(kp.public_key().as_der().expect("der").as_ref()).expect("spki");
    TestSigner {
        key: Key::Ec(kp),
        alg: sa,
        spki,
    }
}

/// The RSA key of `testdata/tsp/tsa.p8`: PKCS#1 v1.5 is deterministic, so tokens are byte-exact.
fn vector_signer() -> TestSigner {
    let kp = RsaKeyPair::from_pkcs8(&vector("tsa.p8")).expect("tsa.p8");
    let spki = parse_spki(kp.public_key().as_der().expect("der").as_ref()).expect("spki");
    TestSigner {
        key: Key::Rsa(kp),
        alg: SignatureAlgorithm::RsaPkcs1Sha256,
        spki,
    }
}

/// A self-signed certificate for `signer` under `profile`.
fn self_signed(signer: &TestSigner, profile: &Profile) -> Vec<u8> {
    let template = CertificateTemplate {
        serial: crate::serial::from_random([9; 16]),
        subject: crate::name::parse("CN=Test TSA,O=pkid,C=VN").expect("name"),
        public_key: signer.spki.clone(),
        not_before: NOW - 3600,
        not_after: NOW + 86_400,
        subject_alt_name: None,
    };
    let tbs = build_tbs(profile, None, &template, signer.alg).expect("tbs");
    signer
        .sign_into(ToBeSigned::new(&tbs, signer.alg, &signer.spki).expect("tbs"))
        .expect("sign")
}

fn settings() -> Settings {
    Settings {
        policy: ObjectIdentifier::new_unwrap("1.2.3.4.1"),
        accepted_policies: vec![ObjectIdentifier::new_unwrap("1.2.3.4.5")],
        hash_algorithms: vec![
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
        ],
        accuracy_ms: 1500,
        include_tsa_name: false,
        signing_time: true,
    }
}

fn request(alg: HashAlgorithm, len: usize) -> TimeStampReq {
    TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: spki::AlgorithmIdentifier {
                oid: alg.oid(),
                parameters: Some(Any::encode_from(&der::asn1::Null).expect("NULL")),
            },
            hashed_message: OctetString::new(vec![0x5a; len]).expect("imprint"),
        },
        req_policy: None,
        nonce: Some(Int::new(&[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]).expect("nonce")),
        cert_req: true,
        extensions: None,
    }
}

fn decode_response(der: &[u8]) -> TimeStampResp {
    TimeStampResp::from_der(der).expect("TimeStampResp")
}

fn rejected_with(der: &[u8]) -> Vec<FailureInfo> {
    let resp = decode_response(der);
    assert_eq!(resp.status.status, PkiStatus::Rejection);
    assert!(resp.time_stamp_token.is_none());
    assert!(
        resp.status.status_string.is_some_and(|s| !s.is_empty()),
        "rejections carry a reason"
    );
    FailureInfo::from_bit_string(resp.status.fail_info.as_ref().expect("failInfo"))
}

fn signed_data(resp: &TimeStampResp) -> SignedData {
    resp.time_stamp_token
        .as_ref()
        .expect("token")
        .content
        .decode_as()
        .expect("SignedData")
}

#[test]
fn openssl_request_vectors_decode_and_re_encode_byte_exact() {
    let cases: [(&str, HashAlgorithm, bool, bool, Option<&str>); 5] = [
        ("sha256-cert.tsq", HashAlgorithm::Sha256, true, true, None),
        ("sha384.tsq", HashAlgorithm::Sha384, true, false, None),
        (
            "sha512-no-nonce.tsq",
            HashAlgorithm::Sha512,
            false,
            false,
            None,
        ),
        ("sha1.tsq", HashAlgorithm::Sha1, true, false, None),
        (
            "policy.tsq",
            HashAlgorithm::Sha256,
            true,
            false,
            Some("1.2.3.4.5"),
        ),
    ];
    let doc = vector("doc.txt");
    for (file, alg, nonce, cert_req, policy) in cases {
        let bytes = vector(file);
        let req = parse_request(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(req.message_imprint.hash_algorithm.oid, alg.oid(), "{file}");
        assert_eq!(
            req.message_imprint.hashed_message.as_bytes(),
            alg.digest(&doc),
            "{file}: imprint is the hash of doc.txt"
        );
        assert_eq!(req.nonce.is_some(), nonce, "{file}");
        assert_eq!(req.cert_req, cert_req, "{file}");
        assert_eq!(
            req.req_policy.map(|p| p.to_string()).as_deref(),
            policy,
            "{file}"
        );
        assert_eq!(
            req.to_der().expect("encode"),
            bytes,
            "{file}: re-encoding is byte-exact"
        );
    }
}

#[test]
fn sha2_requests_are_accepted_and_sha1_is_refused_unless_configured() {
    let s = settings();
    for file in ["sha256-cert.tsq", "sha384.tsq", "sha512-no-nonce.tsq"] {
        let a = decide(parse_request(&vector(file)).expect("parse"), &s).expect(file);
        assert_eq!(a.policy, s.policy, "no requested policy: the TSA's");
    }
    let sha1 = parse_request(&vector("sha1.tsq")).expect("parse");
    let err = decide(sha1.clone(), &s).expect_err("sha1 refused");
    assert_eq!(err.failure_info(), FailureInfo::BadAlg);
    assert!(err.to_string().contains("sha1"), "{err}");
    let mut with_sha1 = s;
    with_sha1.hash_algorithms.push(HashAlgorithm::Sha1);
    assert_eq!(
        decide(sha1, &with_sha1)
            .expect("allowed by policy")
            .hash_algorithm,
        HashAlgorithm::Sha1
    );
}

#[test]
fn unknown_algorithm_and_parameters_are_bad_alg() {
    let mut req = request(HashAlgorithm::Sha256, 32);
    req.message_imprint.hash_algorithm.oid = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.8"); // SHA3-256
    assert_eq!(
        decide(req, &settings())
            .expect_err("unknown")
            .failure_info(),
        FailureInfo::BadAlg
    );
    let mut req = request(HashAlgorithm::Sha256, 32);
    req.message_imprint.hash_algorithm.parameters = Some(Any::encode_from(&7u8).expect("any"));
    assert_eq!(
        decide(req, &settings()).expect_err("params").failure_info(),
        FailureInfo::BadAlg
    );
    let mut req = request(HashAlgorithm::Sha256, 32);
    req.message_imprint.hash_algorithm.parameters = None;
    decide(req, &settings()).expect("absent parameters are fine");
}

#[test]
fn imprint_length_must_match_the_algorithm() {
    for (alg, len) in [
        (HashAlgorithm::Sha256, 31),
        (HashAlgorithm::Sha256, 48),
        (HashAlgorithm::Sha384, 32),
        (HashAlgorithm::Sha512, 0),
    ] {
        let err = decide(request(alg, len), &settings()).expect_err("length");
        assert_eq!(
            err,
            TspError::ImprintLength {
                algorithm: alg.name(),
                expected: alg.output_len(),
                found: len
            }
        );
        assert_eq!(err.failure_info(), FailureInfo::BadDataFormat);
    }
}

#[test]
fn policies_are_granted_only_when_configured() {
    let s = settings();
    let accepted = decide(parse_request(&vector("policy.tsq")).expect("parse"), &s)
        .expect("1.2.3.4.5 is accepted");
    assert_eq!(accepted.policy.to_string(), "1.2.3.4.5");
    let mut only_default = s;
    only_default.accepted_policies.clear();
    let err = decide(
        parse_request(&vector("policy.tsq")).expect("parse"),
        &only_default,
    )
    .expect_err("refused");
    assert_eq!(
        err,
        TspError::UnacceptedPolicy(ObjectIdentifier::new_unwrap("1.2.3.4.5"))
    );
    assert_eq!(err.failure_info(), FailureInfo::UnacceptedPolicy);
}

#[test]
fn any_extension_is_unaccepted() {
    let mut req = request(HashAlgorithm::Sha256, 32);
    req.extensions = Some(vec![x509_cert::ext::Extension {
        extn_id: ObjectIdentifier::new_unwrap("1.2.3.99"),
        critical: false,
        extn_value: OctetString::new(vec![5, 0]).expect("value"),
    }]);
    let der = req.to_der().expect("der");
    let err =
        decide(parse_request(&der).expect("well-formed"), &settings()).expect_err("extension");
    assert_eq!(err.failure_info(), FailureInfo::UnacceptedExtension);
}

#[test]
fn oversized_nonce_is_bad_data_format() {
    let mut req = request(HashAlgorithm::Sha256, 32);
    let mut big = vec![0x11; MAX_NONCE_OCTETS + 1];
    big[0] = 0x7f;
    req.nonce = Some(Int::new(&big).expect("nonce"));
    assert_eq!(
        decide(req, &settings()).expect_err("nonce").failure_info(),
        FailureInfo::BadDataFormat
    );
}

#[test]
fn malformed_requests_are_bad_request_rejections() {
    let good = vector("sha256-cert.tsq");
    let mut trailing = good.clone();
    trailing.push(0);
    let mut version2 = good.clone();
    assert_eq!(
        &version2[2..5],
        &[0x02, 0x01, 0x01],
        "version INTEGER 1 at offset 2"
    );
    version2[4] = 2;
    let mut ber_length = vec![0x30, 0x81, good[1]];
    ber_length.extend_from_slice(&good[2..]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("truncated", good[..good.len() - 3].to_vec()),
        ("trailing data", trailing),
        ("version 2", version2),
        ("non-minimal length", ber_length),
        ("oversized", vec![0x30; MAX_REQUEST_BYTES + 1]),
    ];
    for (what, der) in cases {
        let err = parse_request(&der).expect_err(what);
        assert_eq!(err.failure_info(), FailureInfo::BadRequest, "{what}");
        assert!(err.is_peer_fault());
        assert_eq!(
            rejected_with(&rejection(&err)),
            vec![FailureInfo::BadRequest],
            "{what}"
        );
    }
}

#[test]
fn every_error_has_its_rfc_failure_bit() {
    let oid = ObjectIdentifier::new_unwrap("1.2.3");
    let table = [
        (
            TspError::Malformed("x".into()),
            FailureInfo::BadRequest,
            true,
        ),
        (
            TspError::UnacceptedHashAlgorithm("x".into()),
            FailureInfo::BadAlg,
            true,
        ),
        (
            TspError::ImprintLength {
                algorithm: "sha256",
                expected: 32,
                found: 1,
            },
            FailureInfo::BadDataFormat,
            true,
        ),
        (TspError::NonceTooLong(99), FailureInfo::BadDataFormat, true),
        (
            TspError::UnacceptedPolicy(oid),
            FailureInfo::UnacceptedPolicy,
            true,
        ),
        (
            TspError::UnacceptedExtension(oid),
            FailureInfo::UnacceptedExtension,
            true,
        ),
        (
            TspError::TimeNotAvailable("x".into()),
            FailureInfo::TimeNotAvailable,
            false,
        ),
        (
            TspError::Unavailable("x".into()),
            FailureInfo::SystemFailure,
            false,
        ),
        (
            TspError::Internal("secret detail".into()),
            FailureInfo::SystemFailure,
            false,
        ),
    ];
    for (err, bit, peer) in table {
        assert_eq!(
            (err.failure_info(), err.is_peer_fault()),
            (bit, peer),
            "{err}"
        );
        assert_eq!(rejected_with(&rejection(&err)), vec![bit]);
        if !peer {
            assert!(
                !err.client_text().contains("secret"),
                "our details stay in our logs"
            );
        }
    }
    let minimal = TimeStampResp {
        status: status::PkiStatusInfo {
            status: PkiStatus::Rejection,
            status_string: None,
            fail_info: Some(FailureInfo::SystemFailure.to_bit_string().expect("bits")),
        },
        time_stamp_token: None,
    };
    assert_eq!(
        minimal.to_der().expect("der"),
        REJECTION_SYSTEM_FAILURE,
        "the fallback constant is what the encoder makes"
    );
}

#[test]
fn serial_numbers_are_positive_minimal_integers() {
    for (n, bytes) in [
        (1u64, &[0x01][..]),
        (127, &[0x7f]),
        (128, &[0x00, 0x80]),
        (256, &[0x01, 0x00]),
        (
            u64::MAX,
            &[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
    ] {
        let i = serial_int(n).expect("int");
        assert_eq!(i.as_bytes(), bytes, "{n}");
        assert_eq!(
            Int::from_der(&i.to_der().expect("der")).expect("canonical"),
            i
        );
    }
}

fn issue_with(
    signer: &TestSigner,
    cert: &TsaCertificate,
    s: &Settings,
    accepted: &Accepted,
    serial: u64,
) -> Vec<u8> {
    let unsigned = issue(
        accepted,
        &Issuance {
            settings: s,
            certificate: cert,
            algorithm: signer.alg,
            serial,
            now: NOW,
        },
    )
    .expect("issue");
    signer.sign_into(unsigned).expect("assemble")
}

#[test]
fn tokens_verify_and_carry_exactly_what_was_asked_for() {
    for (name, signer) in [("p256", ec_signer(false)), ("p384", ec_signer(true))] {
        let der = self_signed(&signer, &Profile::tsa(30));
        let cert = TsaCertificate::new(&der, &signer.spki).expect("TSA certificate");
        for (alg, len) in [
            (HashAlgorithm::Sha256, 32),
            (HashAlgorithm::Sha384, 48),
            (HashAlgorithm::Sha512, 64),
        ] {
            for cert_req in [true, false] {
                let mut req = request(alg, len);
                req.cert_req = cert_req;
                if !cert_req {
                    req.nonce = None;
                }
                let accepted = decide(req.clone(), &settings()).expect("accepted");
                let resp_der = issue_with(&signer, &cert, &settings(), &accepted, 4242);
                let tst = verify_response(&resp_der, cert.certificate())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    tst.message_imprint, req.message_imprint,
                    "imprint copied exactly"
                );
                assert_eq!(tst.nonce, req.nonce, "nonce echoed");
                assert_eq!(tst.serial_number.as_bytes(), &[0x10, 0x92]);
                assert_eq!(tst.gen_time.to_unix_duration().as_secs(), NOW);
                assert_eq!(tst.policy, settings().policy);
                assert_eq!(
                    tst.accuracy,
                    Some(Accuracy {
                        seconds: Some(1),
                        millis: Some(500),
                        micros: None
                    })
                );
                assert!(!tst.ordering && tst.tsa.is_none() && tst.extensions.is_none());
                let resp = decode_response(&resp_der);
                assert_eq!(
                    resp.to_der().expect("re-encode"),
                    resp_der,
                    "{name}: written in place, yet exactly the crate's encoding"
                );
                assert_eq!(resp.status.status, PkiStatus::Granted);
                let sd = signed_data(&resp);
                assert_eq!(sd.version, CmsVersion::V3);
                assert_eq!(
                    sd.certificates.is_some(),
                    cert_req,
                    "certificate included iff certReq"
                );
                let si = sd.signer_infos.0.get(0).expect("signer");
                assert_eq!(si.signature_algorithm, signer.alg.identifier());
                let oids: Vec<String> = si
                    .signed_attrs
                    .as_ref()
                    .expect("attrs")
                    .iter()
                    .map(|a| a.oid.to_string())
                    .collect();
                assert_eq!(
                    oids.len(),
                    4,
                    "contentType, messageDigest, signingTime, signingCertificateV2: {oids:?}"
                );
            }
        }
    }
}

#[test]
fn tsa_name_is_the_certificate_subject_when_configured() {
    let signer = ec_signer(false);
    let der = self_signed(&signer, &Profile::tsa(30));
    let cert = TsaCertificate::new(&der, &signer.spki).expect("cert");
    let s = Settings {
        include_tsa_name: true,
        signing_time: false,
        accuracy_ms: 0,
        ..settings()
    };
    let accepted = decide(request(HashAlgorithm::Sha256, 32), &s).expect("accepted");
    let tst = verify_response(
        &issue_with(&signer, &cert, &s, &accepted, 1),
        cert.certificate(),
    )
    .expect("verify");
    assert_eq!(
        tst.tsa,
        Some(GeneralName::DirectoryName(
            cert.certificate().tbs_certificate.subject.clone()
        ))
    );
    assert_eq!(tst.accuracy, None, "accuracy 0 leaves the field out");
}

#[test]
fn tampered_tokens_and_other_certificates_fail_verification() {
    let signer = ec_signer(false);
    let der = self_signed(&signer, &Profile::tsa(30));
    let cert = TsaCertificate::new(&der, &signer.spki).expect("cert");
    let accepted = decide(request(HashAlgorithm::Sha256, 32), &settings()).expect("accepted");
    let good = issue_with(&signer, &cert, &settings(), &accepted, 7);
    // The imprint (0x5a × 32) sits in the TSTInfo: change one octet of it.
    let at = good
        .windows(32)
        .position(|w| w == [0x5a; 32])
        .expect("imprint in token");
    let mut tampered = good.clone();
    tampered[at] ^= 1;
    assert!(verify_response(&tampered, cert.certificate()).is_err());
    let other = ec_signer(false);
    let other_cert = Certificate::from_der(&self_signed(&other, &Profile::tsa(30))).expect("cert");
    assert!(
        verify_response(&good, &other_cert).is_err(),
        "signingCertificateV2 names one certificate"
    );
}

#[test]
fn certificates_without_a_critical_time_stamping_only_eku_are_refused() {
    let signer = ec_signer(false);
    let mut not_critical = Profile::tsa(30);
    not_critical.extended_key_usage_critical = false;
    let mut extra = Profile::tsa(30);
    extra
        .extended_key_usage
        .push(const_oid::db::rfc5280::ID_KP_CLIENT_AUTH);
    let mut none = Profile::tsa(30);
    none.extended_key_usage.clear();
    let mut no_signature = Profile::tsa(30);
    no_signature.key_usage = KeyUsage(KeyUsages::NonRepudiation.into());
    for (what, profile) in [
        ("not critical", not_critical),
        ("extra purpose", extra),
        ("no EKU", none),
    ] {
        let err =
            TsaCertificate::new(&self_signed(&signer, &profile), &signer.spki).expect_err(what);
        assert!(
            matches!(err, TsaCertificateError::ExtendedKeyUsage(_)),
            "{what}: {err}"
        );
    }
    assert_eq!(
        TsaCertificate::new(&self_signed(&signer, &no_signature), &signer.spki).expect_err("ku"),
        TsaCertificateError::KeyUsage
    );
    let ocsp = self_signed(&signer, &Profile::ocsp_responder(30));
    assert!(
        TsaCertificate::new(&ocsp, &signer.spki).is_err(),
        "an OCSP certificate is not a TSA's"
    );
    let other = ec_signer(false);
    assert_eq!(
        TsaCertificate::new(&self_signed(&signer, &Profile::tsa(30)), &other.spki)
            .expect_err("key"),
        TsaCertificateError::KeyMismatch
    );
    assert_eq!(KeyType::of(&signer.spki), Ok(KeyType::EcP256));
}

/// A P-256 TSA key and its self-signed TSA certificate.
fn p256_tsa() -> (TestSigner, TsaCertificate) {
    let signer = ec_signer(false);
    let cert =
        TsaCertificate::new(&self_signed(&signer, &Profile::tsa(30)), &signer.spki).expect("cert");
    (signer, cert)
}

#[test]
fn no_token_outside_the_certificate_validity() {
    let (signer, cert) = p256_tsa();
    let accepted = decide(request(HashAlgorithm::Sha256, 32), &settings()).expect("accepted");
    let late = Issuance {
        settings: &settings(),
        certificate: &cert,
        algorithm: signer.alg,
        serial: 1,
        now: NOW + 2 * 86_400,
    };
    assert_eq!(
        issue(&accepted, &late).expect_err("expired").failure_info(),
        FailureInfo::SystemFailure
    );
}

/// Serial 0x1234, genTime NOW, the vector request `sha256-cert.tsq`, signed by `tsa.p8`.
fn vector_response() -> Vec<u8> {
    let signer = vector_signer();
    let cert = TsaCertificate::new(&cert_der("tsa.crt"), &signer.spki)
        .expect("tsa.crt is a TSA certificate");
    let s = Settings {
        policy: ObjectIdentifier::new_unwrap("1.2.3.4.1"),
        accepted_policies: vec![],
        ..settings()
    };
    let accepted = decide(
        parse_request(&vector("sha256-cert.tsq")).expect("parse"),
        &s,
    )
    .expect("accepted");
    let unsigned = issue(
        &accepted,
        &Issuance {
            settings: &s,
            certificate: &cert,
            algorithm: signer.alg,
            serial: 0x1234,
            now: NOW,
        },
    )
    .expect("issue");
    signer.sign_into(unsigned).expect("assemble")
}

#[test]
fn pkid_response_vector_is_byte_exact() {
    let made = vector_response();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/tsp/pkid-granted.tsr");
    if std::env::var_os("PKID_REGENERATE_VECTORS").is_some() {
        std::fs::write(&path, &made).expect("write vector");
    }
    assert_eq!(
        made,
        vector("pkid-granted.tsr"),
        "regenerate with PKID_REGENERATE_VECTORS=1 and re-run the README's openssl checks"
    );
    let root = Certificate::from_der(&cert_der("root.crt")).expect("root");
    let tsa = Certificate::from_der(&cert_der("tsa.crt")).expect("tsa");
    verify_response(&made, &tsa).expect("verifies");
    assert!(verify_response(&made, &root).is_err());
    let decoded = decode_response(&made);
    assert_eq!(
        decoded.to_der().expect("re-encode"),
        made,
        "decode → re-encode is identical"
    );
}

#[test]
fn openssl_granted_vector_decodes_with_our_types() {
    let bytes = vector("openssl-granted.tsr");
    let resp = decode_response(&bytes);
    assert_eq!(resp.status.status, PkiStatus::Granted);
    assert_eq!(
        resp.to_der().expect("re-encode"),
        bytes,
        "byte-exact round trip"
    );
    let sd = signed_data(&resp);
    let econtent = sd.encap_content_info.econtent.as_ref().expect("eContent");
    let tst = TstInfo::from_der(econtent.value()).expect("TSTInfo");
    assert_eq!(tst.policy.to_string(), "1.2.3.4.1");
    assert_eq!(
        tst.message_imprint,
        parse_request(&vector("sha256-cert.tsq"))
            .expect("parse")
            .message_imprint
    );
    let tsa = Certificate::from_der(&cert_der("tsa.crt")).expect("tsa");
    // openssl (ess_cert_id_alg = sha256) writes signingCertificateV2 and signs with plain
    // rsaEncryption: our strict check accepts its token too.
    verify_response(&bytes, &tsa).expect("openssl's token verifies with our checks");
}

#[test]
fn openssl_rejection_vector_has_the_bits_we_send() {
    let bytes = vector("openssl-badalg.tsr");
    assert_eq!(rejected_with(&bytes), vec![FailureInfo::BadAlg]);
    let theirs = decode_response(&bytes)
        .status
        .fail_info
        .expect("failInfo")
        .to_der()
        .expect("der");
    let ours = FailureInfo::BadAlg
        .to_bit_string()
        .expect("bits")
        .to_der()
        .expect("der");
    assert_eq!(ours, theirs, "same failInfo encoding as openssl");
}

#[test]
fn the_signed_bytes_are_the_signed_attributes_and_the_status_is_the_crate_encoding() {
    let (signer, cert) = p256_tsa();
    let accepted = decide(request(HashAlgorithm::Sha256, 32), &settings()).expect("accepted");
    let issuance = Issuance {
        settings: &settings(),
        certificate: &cert,
        algorithm: signer.alg,
        serial: 5,
        now: NOW,
    };
    let unsigned = issue(&accepted, &issuance).expect("issue");
    let message = unsigned.message().to_vec();
    let der = signer.sign_into(unsigned).expect("assemble");
    let sd = signed_data(&decode_response(&der));
    let si = sd.signer_infos.0.get(0).expect("signer");
    assert_eq!(
        si.signed_attrs
            .as_ref()
            .expect("attrs")
            .to_der()
            .expect("der"),
        message,
        "the bytes signed are the DER SET OF the SignerInfo carries"
    );
    let granted = status::PkiStatusInfo {
        status: PkiStatus::Granted,
        status_string: None,
        fail_info: None,
    };
    assert_eq!(granted.to_der().expect("der"), token::GRANTED_STATUS);
}
