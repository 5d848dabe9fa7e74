use super::*;
use crate::test_key::TestKey;
use crate::SignatureAlgorithm;
use x509_ocsp::{Request, TbsRequest};

fn vector(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/ocsp")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cert(name: &str) -> Certificate {
    let der = crate::x509::pem_or_der(&vector(name), &["CERTIFICATE"]).expect("pem");
    Certificate::from_der(&der).expect("certificate")
}

fn key() -> TestKey {
    TestKey::p256()
}

/// Builds the response and signs it with `k` directly, as the daemon's signer would.
fn sign_response(
    responses: Vec<(CertId, Status)>,
    validity: Validity,
    nonce: Option<Extension>,
    responder: &Responder,
    k: &TestKey,
) -> Result<Vec<u8>, OcspError> {
    k.sign_into(build_response(
        responses,
        validity,
        nonce,
        responder,
        SignatureAlgorithm::EcdsaSha256,
    )?)
}

#[test]
fn openssl_requests_round_trip_byte_exact() {
    for name in [
        "req-sha1-nonce.der",
        "req-sha256.der",
        "req-three.der",
        "req-other-issuer.der",
    ] {
        let der = vector(name);
        let req = OcspRequest::from_der(&der).expect(name);
        assert_eq!(
            req.to_der().expect("encode"),
            der,
            "{name} re-encodes identically"
        );
    }
}

#[test]
fn openssl_request_with_nonce_parses_and_names_the_issuer() {
    let issuing = IssuerHashes::of(&cert("issuing.pem")).expect("hashes");
    let root = IssuerHashes::of(&cert("root.pem")).expect("hashes");
    let p = parse_request(&vector("req-sha1-nonce.der"), 64).expect("parse");
    assert_eq!(p.cert_ids.len(), 1);
    assert_eq!(CertIdHash::of(&p.cert_ids[0]), Some(CertIdHash::Sha1));
    assert!(issuing.matches(&p.cert_ids[0]));
    assert!(!root.matches(&p.cert_ids[0]));
    let leaf = cert("leaf.pem");
    assert_eq!(
        serial_octets(&p.cert_ids[0]),
        leaf.tbs_certificate.serial_number.as_bytes()
    );
    let nonce = p.nonce.expect("openssl sends a nonce by default");
    assert_eq!(
        OctetString::from_der(nonce.extn_value.as_bytes())
            .expect("inner")
            .as_bytes()
            .len(),
        16
    );

    let p = parse_request(&vector("req-sha256.der"), 64).expect("parse");
    assert_eq!(CertIdHash::of(&p.cert_ids[0]), Some(CertIdHash::Sha256));
    assert!(issuing.matches(&p.cert_ids[0]));
    assert!(p.nonce.is_none());
}

#[test]
fn bounds_and_garbage_are_malformed() {
    let three = vector("req-three.der");
    assert_eq!(parse_request(&three, 3).expect("ok").cert_ids.len(), 3);
    assert_eq!(
        parse_request(&three, 2).expect_err("bound"),
        OcspError::TooManyCertIds(3, 2)
    );
    for bad in [
        &three[..three.len() - 1],
        &[0x30, 0x00][..],
        b"hello",
        &[][..],
    ] {
        let e = parse_request(bad, 64).expect_err("garbage");
        assert_eq!(e.wire_status(), OcspResponseStatus::MalformedRequest, "{e}");
    }
    let mut trailing = three.clone();
    trailing.push(0);
    assert!(matches!(
        parse_request(&trailing, 64),
        Err(OcspError::Malformed(_))
    ));
    assert!(matches!(
        parse_request(&vec![0x30; MAX_OCSP_REQUEST_BYTES + 1], 64),
        Err(OcspError::TooLarge(_))
    ));
}

fn request_with_nonce(extn_value: Vec<u8>) -> Vec<u8> {
    let base = OcspRequest::from_der(&vector("req-sha256.der")).expect("base");
    let ext = Extension {
        extn_id: rfc6960::ID_PKIX_OCSP_NONCE,
        critical: false,
        extn_value: OctetString::new(extn_value).expect("os"),
    };
    OcspRequest {
        tbs_request: TbsRequest {
            request_extensions: Some(vec![ext]),
            ..base.tbs_request
        },
        optional_signature: None,
    }
    .to_der()
    .expect("encode")
}

#[test]
fn nonce_lengths_follow_rfc_9654() {
    for len in [1usize, 32, 128] {
        let inner = OctetString::new(vec![7u8; len])
            .expect("os")
            .to_der()
            .expect("der");
        let p = parse_request(&request_with_nonce(inner.clone()), 64).expect("accepted");
        assert_eq!(
            p.nonce.expect("nonce").extn_value.as_bytes(),
            inner.as_slice(),
            "echoed exactly"
        );
    }
    for len in [0usize, 129] {
        let inner = OctetString::new(vec![7u8; len])
            .expect("os")
            .to_der()
            .expect("der");
        assert_eq!(
            parse_request(&request_with_nonce(inner), 64).expect_err("refused"),
            OcspError::BadNonce
        );
    }
    // A nonce that is not an OCTET STRING inside the extension value.
    assert_eq!(
        parse_request(&request_with_nonce(vec![1, 2, 3]), 64).expect_err("raw"),
        OcspError::BadNonce
    );
}

#[test]
fn critical_unknown_extension_is_refused() {
    let base = OcspRequest::from_der(&vector("req-sha256.der")).expect("base");
    let mut list: Vec<Request> = base.tbs_request.request_list.clone();
    list[0].single_request_extensions = Some(vec![Extension {
        extn_id: ObjectIdentifier::new_unwrap("1.2.3.4"),
        critical: true,
        extn_value: OctetString::new(vec![5, 0]).expect("os"),
    }]);
    let der = OcspRequest {
        tbs_request: TbsRequest {
            request_list: list,
            ..base.tbs_request
        },
        optional_signature: None,
    }
    .to_der()
    .expect("der");
    assert!(matches!(
        parse_request(&der, 64),
        Err(OcspError::UnsupportedCriticalExtension(_))
    ));
}

const NOW: u64 = 1_800_000_000;

fn validity() -> Validity {
    Validity {
        produced_at: NOW,
        this_update: NOW,
        next_update: NOW + 4 * 86_400,
    }
}

#[test]
fn signed_response_verifies_and_carries_each_status() {
    let k = key();
    let responder = Responder::new(cert("responder.pem")).expect("responder");
    let p = parse_request(&vector("req-three.der"), 64).expect("parse");
    let statuses = [
        Status::Good,
        Status::Revoked {
            at: NOW - 10,
            reason: Some(CrlReason::KeyCompromise),
        },
        Status::Unknown,
    ];
    let nonce = parse_request(
        &request_with_nonce(
            OctetString::new(vec![9u8; 20])
                .expect("os")
                .to_der()
                .expect("der"),
        ),
        64,
    )
    .expect("n")
    .nonce;
    let der = sign_response(
        p.cert_ids.iter().cloned().zip(statuses).collect(),
        validity(),
        nonce.clone(),
        &responder,
        &k,
    )
    .expect("sign");
    let resp = OcspResponse::from_der(&der).expect("decode");
    assert_eq!(
        resp.to_der().expect("re-encode"),
        der,
        "assembled in place, yet exactly the crate's encoding"
    );
    assert_eq!(resp.response_status, OcspResponseStatus::Successful);
    let bytes = resp.response_bytes.expect("bytes");
    assert_eq!(bytes.response_type, ID_PKIX_OCSP_BASIC);
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).expect("basic");
    let tbs = basic.tbs_response_data.to_der().expect("tbs");
    let unsigned = build_response(
        p.cert_ids.iter().cloned().zip(statuses).collect(),
        validity(),
        nonce.clone(),
        &responder,
        SignatureAlgorithm::EcdsaSha256,
    )
    .expect("build");
    assert_eq!(
        unsigned.tbs(),
        tbs,
        "the signed bytes are the ResponseData's DER"
    );
    assert_eq!(unsigned.message(), unsigned.tbs());
    assert_eq!(
        basic.certs.as_ref().map(|c| c[0].to_der().expect("der")),
        Some(cert("responder.pem").to_der().expect("der"))
    );
    crate::algorithm::verify(
        &k.spki,
        &basic.signature_algorithm,
        &tbs,
        basic.signature.raw_bytes(),
    )
    .expect("signature verifies");
    let got: Vec<_> = basic
        .tbs_response_data
        .responses
        .iter()
        .map(|r| r.cert_status)
        .collect();
    assert!(matches!(got[0], CertStatus::Good(_)));
    assert!(
        matches!(&got[1], CertStatus::Revoked(i) if i.revocation_reason == Some(CrlReason::KeyCompromise))
    );
    assert!(matches!(got[2], CertStatus::Unknown(_)));
    assert_eq!(
        basic.tbs_response_data.response_extensions,
        nonce.map(|n| vec![n])
    );
    assert_eq!(basic.certs.expect("certs").len(), 1);
    assert!(matches!(
        basic.tbs_response_data.responder_id,
        ResponderId::ByKey(_)
    ));
}

#[test]
fn lint_refuses_windows_outside_the_ca_browser_forum_rules_and_expired_responders() {
    let k = key();
    let responder = Responder::new(cert("responder.pem")).expect("responder");
    let ids = parse_request(&vector("req-sha256.der"), 64)
        .expect("parse")
        .cert_ids;
    let one = |v: Validity| {
        sign_response(
            vec![(ids[0].clone(), Status::Good)],
            v,
            None,
            &responder,
            &k,
        )
    };
    assert!(matches!(
        one(Validity {
            next_update: NOW + 3600,
            ..validity()
        }),
        Err(OcspError::Internal(_))
    ));
    assert!(matches!(
        one(Validity {
            next_update: NOW + 11 * 86_400,
            ..validity()
        }),
        Err(OcspError::Internal(_))
    ));
    let late = responder.not_after() + 1;
    let e = one(Validity {
        produced_at: late,
        this_update: late,
        next_update: late + 86_400,
    })
    .expect_err("expired");
    assert_eq!(e.wire_status(), OcspResponseStatus::TryLater);
}

#[test]
fn error_responses_are_the_five_byte_encodings() {
    assert_eq!(
        error_response(OcspResponseStatus::MalformedRequest),
        [0x30, 0x03, 0x0a, 0x01, 0x01]
    );
    assert_eq!(
        error_response(OcspResponseStatus::Unauthorized),
        [0x30, 0x03, 0x0a, 0x01, 0x06]
    );
    assert_eq!(
        error_response(OcspResponseStatus::TryLater),
        [0x30, 0x03, 0x0a, 0x01, 0x03]
    );
}
