//! CMP (RFC 9810 / RFC 9483 over RFC 9811 HTTP) end to end: the real daemon on loopback,
//! driven with the real `openssl cmp` client. ir with PBM (OpenSSL 3.0's default HMAC-SHA1
//! and `-mac hmacWithSHA256`), implicit confirm, certConf/pkiConf, cr and p10cr, over HTTP and
//! HTTPS; the certificate stored before the answer, the chain in caPubs/extraCerts; every
//! negative case a protected (or, before the MAC verified, unprotected) `error` PKIMessage with
//! its PKIFailureInfo bit: wrong secret, unknown senderKID, reused transactionID (a replayed ir),
//! a replayed certConf, raVerified/absent POP, a rejected certConf (the certificate revoked),
//! MAC on a signature-only label, an unknown label, garbage; 415/405/413 at the HTTP layer;
//! and, in-process on a fake clock, a stale messageTime and a certConf that never comes (the
//! certificate revoked after the timeout). genm: what OpenSSL 3.0 sends (signKeyPairTypes,
//! caCerts, certReqTemplate) and, as messages built here with `cmpv2`, rootCaCert and
//! crlStatusList (by issuer and by distribution point; the CRL checked with `openssl crl`).
//! An RA pinned by fingerprint: nested batches of subscribers' requests, raVerified from
//! `openssl cmp -popo 0`, and the refusals of strangers, MAC-protected nesting and a revoked RA.
//! The daemon keeps serving throughout.

mod common;

use common::inprocess::build_app;
use common::*;
use pkid_protocols::cmp::{parse_response, FailureBit, ResponseView};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const ORG: &str = "so-gd-dn";
const ORG_NAME: &str = "Sở Giáo dục và Đào tạo Đà Nẵng";

/// Appends a P-256 device profile and the CMP labels to the data directory's pkid.toml.
fn configure(data: &Path, extra: &str) {
    let path = data.join("pkid.toml");
    let mut text = std::fs::read_to_string(&path).expect("pkid.toml");
    text.push_str(&format!(
        r#"
[profiles.device]
key_usage = ["digitalSignature"]
extended_key_usage = ["clientAuth"]
extended_key_usage_critical = false
max_validity_days = 825
default_validity_days = 365
allowed_keys = ["p256"]
required_subject = ["CN"]
copy_subject_alt_name = true

[[cmp.labels]]
name = "devices"
profile = "device"
organisation = "{ORG}"

[[cmp.labels]]
name = "signed-only"
profile = "device"
organisation = "{ORG}"
protection = ["signature"]
{extra}"#
    ));
    std::fs::write(&path, text).expect("write pkid.toml");
}

/// An organisation with one CMP credential `dev1`; its secret.
fn organisation_with_secret(data: &Path) -> String {
    pkid_ok(
        data,
        &[
            "org",
            "add",
            "--id",
            ORG,
            "--name",
            ORG_NAME,
            "--province",
            "DN",
        ],
    );
    let out = pkid_ok(
        data,
        &[
            "credential",
            "add",
            "--org",
            ORG,
            "--kind",
            "cmp",
            "--name",
            "dev1",
        ],
    );
    out.lines().last().expect("the secret line").to_owned()
}

fn p256_key(dir: &Path) -> PathBuf {
    let key = unique_path(dir, "key", "pem");
    openssl_ok(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path_str(&key),
    ]);
    key
}

/// `openssl cmp -config "" -server ADDR -path .well-known/cmp/p/LABEL -ref dev1 -recipient …`
/// plus `args`.
fn openssl_cmp(server: &str, label: &str, args: &[&str]) -> Output {
    let path = format!(".well-known/cmp/p/{label}");
    let mut full = vec![
        "cmp",
        "-config",
        "",
        "-server",
        server,
        "-path",
        &path,
        "-ref",
        "dev1",
        "-recipient",
        "/CN=Issuing CA",
    ];
    full.extend_from_slice(args);
    openssl(&full)
}

fn all_output(o: &Output) -> String {
    format!("{}{}", lossy(&o.stdout), lossy(&o.stderr))
}

/// POSTs a DER file as application/pkixcmp; the response parsed as a PKIMessage.
fn post_der(daemon: &Daemon, label: &str, file: &Path) -> ResponseView {
    let data = format!("@{}", path_str(file));
    let r = fetch(&[
        "-H",
        "Content-Type: application/pkixcmp",
        "--data-binary",
        &data,
        &daemon.http_url(&format!("/.well-known/cmp/p/{label}")),
    ]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers.contains("application/pkixcmp"), "{}", r.headers);
    parse_response(&r.body).expect("a PKIMessage")
}

fn assert_error(v: &ResponseView, bit: FailureBit, what: &str) {
    assert_eq!(v.body_tag, 23, "{what}: an error message");
    assert!(
        v.has_failure(bit),
        "{what}: failInfo {bit:?}; status {:?}",
        v.status
    );
}

fn counted(daemon: &Daemon, body: &str, outcome: &str) -> f64 {
    daemon
        .metric(&format!(
            "pkid_cmp_messages_total{{body=\"{body}\",outcome=\"{outcome}\"}}"
        ))
        .unwrap_or(0.0)
}

fn status_of(data: &Path, serial: &str) -> String {
    let out = pkid_ok(data, &["cert", "show", "--serial", serial]);
    out.lines()
        .find_map(|l| l.strip_prefix("status:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn serial_of(cert: &x509_cert::Certificate) -> String {
    canonical_serial(&hex::encode(cert.tbs_certificate.serial_number.as_bytes()))
}

#[test]
fn openssl_cmp_enrolls_with_a_shared_secret_and_every_bad_message_gets_its_failure_bit() {
    let dir = init(&[]);
    let data = dir.path();
    configure(data, "");
    let secret = organisation_with_secret(data);
    let pass = format!("pass:{secret}");
    let daemon = Daemon::start(data);
    let work = tempdir();
    let w = work.path();
    let server = daemon.http.to_string();
    let at = |stem: &str, ext: &str| unique_path(w, stem, ext);

    // ir, OpenSSL 3.0's defaults (PBM with HMAC-SHA1), certConf → pkiConf.
    let key = p256_key(w);
    let (cert, capubs) = (at("ir", "crt"), at("capubs", "pem"));
    let (ir_req, cc_req, ip_rsp, conf_rsp) = (
        at("ir", "der"),
        at("certconf", "der"),
        at("ip", "der"),
        at("pkiconf", "der"),
    );
    let reqout = format!("{},{}", path_str(&ir_req), path_str(&cc_req));
    let rspout = format!("{},{}", path_str(&ip_rsp), path_str(&conf_rsp));
    let out = openssl_cmp(
        &server,
        "devices",
        &[
            "-cmd",
            "ir",
            "-secret",
            &pass,
            "-newkey",
            path_str(&key),
            "-subject",
            "/CN=Cảm biến 01",
            "-certout",
            path_str(&cert),
            "-cacertsout",
            path_str(&capubs),
            "-reqout",
            &reqout,
            "-rspout",
            &rspout,
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let text = all_output(&out);
    assert!(
        text.contains("sending CERTCONF") && text.contains("received PKICONF"),
        "{text}"
    );
    let subject = x509_subject(&cert);
    assert!(
        subject.contains(ORG_NAME) && subject.contains("Cảm biến 01"),
        "{subject}"
    );
    assert_verifies(data, &cert, &[]);
    // caPubs: the root, byte for byte the one `pkid init` made.
    let root = std::fs::read_to_string(data.join("certs/root.crt")).expect("root");
    assert_eq!(
        std::fs::read_to_string(&capubs).expect("caPubs").trim(),
        root.trim()
    );
    // The ip: MAC-protected with the same secret, the chain in extraCerts, no implicit confirm.
    let ip = parse_response(&std::fs::read(&ip_rsp).expect("ip")).expect("ip parses");
    assert_eq!(ip.body_tag, 1);
    ip.verify_mac(secret.as_bytes())
        .expect("the ip's MAC verifies");
    assert_eq!(ip.extra_certs.len(), 2, "issuing CA and root");
    assert!(!ip.implicit_confirm);
    let issued = ip.certificate.clone().expect("the certificate");
    let serial = serial_of(&issued);
    // Stored before it was sent.
    assert_eq!(status_of(data, &serial), "valid");
    let conf = parse_response(&std::fs::read(&conf_rsp).expect("pkiConf")).expect("parses");
    assert_eq!(conf.body_tag, 19);
    conf.verify_mac(secret.as_bytes())
        .expect("pkiConf is protected");

    // A replayed ir: its transactionID is in use (answered under the same secret).
    let v = post_der(&daemon, "devices", &ir_req);
    assert_error(&v, FailureBit::TransactionIdInUse, "replayed ir");
    v.verify_mac(secret.as_bytes())
        .expect("the error is MAC-protected");
    // A replayed certConf: its senderNonce was seen.
    let v = post_der(&daemon, "devices", &cc_req);
    assert_error(&v, FailureBit::BadSenderNonce, "replayed certConf");
    assert!(counted(&daemon, "ir", "transactionIdInUse") >= 1.0);
    assert!(counted(&daemon, "certConf", "badSenderNonce") >= 1.0);

    // -mac hmacWithSHA256 with implicit confirm: granted, so no certConf is sent.
    let (cert2, req2, rsp2) = (at("imp", "crt"), at("imp-req", "der"), at("imp-rsp", "der"));
    let reqout = format!("{},{}", path_str(&req2), path_str(&at("never", "der")));
    let out = openssl_cmp(
        &server,
        "devices",
        &[
            "-cmd",
            "ir",
            "-secret",
            &pass,
            "-mac",
            "hmacWithSHA256",
            "-implicit_confirm",
            "-newkey",
            path_str(&key),
            "-subject",
            "/CN=imp",
            "-certout",
            path_str(&cert2),
            "-reqout",
            &reqout,
            "-rspout",
            path_str(&rsp2),
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    assert!(
        !all_output(&out).contains("CERTCONF"),
        "{}",
        all_output(&out)
    );
    let ip = parse_response(&std::fs::read(&rsp2).expect("ip")).expect("parses");
    assert!(
        ip.implicit_confirm,
        "implicitConfirm granted in generalInfo"
    );
    ip.verify_mac(secret.as_bytes()).expect("HMAC-SHA256 MAC");
    assert_verifies(data, &cert2, &[]);

    // cr and p10cr with the shared secret; p10cr over HTTPS (CMP is on both listeners).
    let cr = at("cr", "crt");
    let out = openssl_cmp(
        &server,
        "devices",
        &[
            "-cmd",
            "cr",
            "-secret",
            &pass,
            "-newkey",
            path_str(&key),
            "-subject",
            "/CN=cr",
            "-certout",
            path_str(&cr),
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    assert_verifies(data, &cr, &[]);
    let (_k, csr) = make_csr(w, "/CN=p10", "ec:P-256");
    let p10 = at("p10", "crt");
    let https = daemon.https.to_string();
    let root_path = data.join("certs/root.crt");
    let out = openssl_cmp(
        &https,
        "devices",
        &[
            "-tls_used",
            "-tls_trusted",
            path_str(&root_path),
            "-tls_host",
            "localhost",
            "-cmd",
            "p10cr",
            "-secret",
            &pass,
            "-csr",
            path_str(&csr),
            "-certout",
            path_str(&p10),
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    assert!(x509_subject(&p10).contains("p10"));

    // The client rejects the certificate in certConf (it does not chain to what it trusts):
    // pkid revokes it.
    let (_, other) = self_signed_p256(w, "other", "/CN=Someone else");
    let rej_rsp = at("rej-ip", "der");
    let rspout = format!(
        "{},{}",
        path_str(&rej_rsp),
        path_str(&at("rej-conf", "der"))
    );
    let out = openssl_cmp(
        &server,
        "devices",
        &[
            "-cmd",
            "ir",
            "-secret",
            &pass,
            "-newkey",
            path_str(&key),
            "-subject",
            "/CN=rejected",
            "-certout",
            path_str(&at("rej", "crt")),
            "-out_trusted",
            path_str(&other),
            "-rspout",
            &rspout,
        ],
    );
    assert!(!out.status.success(), "{}", all_output(&out));
    assert!(
        all_output(&out).contains("received PKICONF"),
        "{}",
        all_output(&out)
    );
    let ip = parse_response(&std::fs::read(&rej_rsp).expect("ip")).expect("parses");
    let rejected = serial_of(&ip.certificate.expect("the certificate"));
    assert_eq!(status_of(data, &rejected), "revoked");

    // A wrong secret and an unknown senderKID: badMessageCheck, unprotected (nothing to
    // protect it with), the same text for both.
    for (reference, secret_arg) in [("dev1", "pass:wrong"), ("nobody", pass.as_str())] {
        let path = ".well-known/cmp/p/devices";
        let out = openssl(&[
            "cmp",
            "-config",
            "",
            "-server",
            &server,
            "-path",
            path,
            "-ref",
            reference,
            "-recipient",
            "/CN=x",
            "-secret",
            secret_arg,
            "-unprotected_errors",
            "-cmd",
            "ir",
            "-newkey",
            path_str(&key),
            "-subject",
            "/CN=x",
            "-certout",
            path_str(&at("x", "crt")),
        ]);
        let text = all_output(&out);
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("badMessageCheck") && text.contains("does not verify"),
            "{reference}: {text}"
        );
    }

    // raVerified (-popo 0) and no POP (-popo -1): badPOP.
    for popo in ["0", "-1"] {
        let out = openssl_cmp(
            &server,
            "devices",
            &[
                "-cmd",
                "ir",
                "-secret",
                &pass,
                "-popo",
                popo,
                "-newkey",
                path_str(&key),
                "-subject",
                "/CN=pop",
                "-certout",
                path_str(&at("pop", "crt")),
            ],
        );
        let text = all_output(&out);
        assert!(
            !out.status.success() && text.contains("badPOP"),
            "popo {popo}: {text}"
        );
    }

    // MAC on a label that takes only signatures: wrongIntegrity. An unknown label:
    // wrongAuthority. Both before any secret is tried, so unprotected.
    for (label, bit) in [
        ("signed-only", FailureBit::WrongIntegrity),
        ("nosuch", FailureBit::WrongAuthority),
    ] {
        let v = post_der(&daemon, label, &ir_req);
        assert_error(&v, bit, label);
        assert!(!v.is_protected(), "{label}: unprotected");
    }
    // Garbage with the right media type: an error message, badDataFormat.
    let junk = at("junk", "der");
    std::fs::write(&junk, b"\x30\x03\x02\x01\x02").expect("junk");
    assert_error(
        &post_der(&daemon, "devices", &junk),
        FailureBit::BadDataFormat,
        "garbage",
    );

    // The HTTP layer: another media type 415, GET 405, a body over the limit 413.
    let url = daemon.http_url("/.well-known/cmp/p/devices");
    let data_arg = format!("@{}", path_str(&ir_req));
    let r = fetch(&[
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &data_arg,
        &url,
    ]);
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.text().contains("application/pkixcmp"));
    let r = get(&url);
    assert_eq!(r.status, 405);
    let big = at("big", "der");
    std::fs::write(&big, vec![0x30u8; 200 * 1024]).expect("big");
    let big_arg = format!("@{}", path_str(&big));
    let r = fetch(&[
        "-H",
        "Content-Type: application/pkixcmp",
        "--data-binary",
        &big_arg,
        &url,
    ]);
    assert_eq!(r.status, 413, "{}", r.text());

    // Still serving, and the secret never reached the log.
    assert_eq!(get(&daemon.http_url("/healthz")).status, 200);
    assert!(!daemon.logs().contains(&secret));
}

/// POSTs DER through an in-process router; the parsed response.
async fn post_inprocess(router: &pkid::http::Listener, label: &str, der: Vec<u8>) -> ResponseView {
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = hyper::Request::builder()
        .method("POST")
        .uri(format!("/.well-known/cmp/p/{label}"))
        .header("content-type", "application/pkixcmp")
        .body(Body::from(der))
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40000,
        ))));
    let resp = router.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    parse_response(&body).expect("a PKIMessage")
}

/// An ir made by `openssl cmp` without a server (it writes `-reqout` before it connects).
fn offline_ir(w: &Path, secret: &str, cn: &str) -> Vec<u8> {
    let key = p256_key(w);
    let req = unique_path(w, "offline", "der");
    let pass = format!("pass:{secret}");
    let subject = format!("/CN={cn}");
    let _ = openssl_cmp(
        "127.0.0.1:1",
        "devices",
        &[
            "-cmd",
            "ir",
            "-secret",
            &pass,
            "-newkey",
            path_str(&key),
            "-subject",
            &subject,
            "-certout",
            path_str(&unique_path(w, "unused", "crt")),
            "-reqout",
            path_str(&req),
        ],
    );
    std::fs::read(&req).expect("openssl wrote the request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_message_is_bad_time_and_an_unconfirmed_certificate_is_revoked() {
    use pkid::clock::{Clock, FakeClock, SystemClock};
    use std::sync::Arc;
    let dir = init(&[]);
    let data = dir.path();
    configure(data, "");
    let secret = organisation_with_secret(data);
    let work = tempdir();
    let w = work.path();

    // The server's clock an hour past the client's: badTime, protected (the MAC verified).
    let t0 = SystemClock.now();
    let clock = Arc::new(FakeClock::new(t0 + 3600));
    let app = build_app(data, clock.clone()).await;
    let router = app.routers().http;
    let v = post_inprocess(&router, "devices", offline_ir(w, &secret, "late")).await;
    assert_error(&v, FailureBit::BadTime, "an hour-old messageTime");
    v.verify_mac(secret.as_bytes()).expect("protected");
    drop(router);
    drop(app);

    // On time: issued, no implicit confirmation asked, so a certConf is awaited. None comes;
    // past confirm_timeout_secs the next message's sweep revokes the certificate.
    let clock = Arc::new(FakeClock::new(t0));
    let app = build_app(data, clock.clone()).await;
    let router = app.routers().http;
    let v = post_inprocess(&router, "devices", offline_ir(w, &secret, "silent")).await;
    assert_eq!(v.body_tag, 1, "ip: {:?}", v.status);
    let serial = serial_of(&v.certificate.expect("certificate"));
    assert_eq!(status_of(data, &serial), "valid");
    let timeout = app.state().config.load().cmp.confirm_timeout_secs;
    clock.advance(timeout + 60);
    let v = post_inprocess(&router, "devices", b"\x30\x00".to_vec()).await;
    assert_error(&v, FailureBit::BadDataFormat, "garbage");
    assert_eq!(status_of(data, &serial), "revoked");
}

/// A request header with a fresh transactionID and senderNonce: from `signer`'s subject, or
/// else a NULL-DN sender with senderKID dev1 (the organisation's MAC credential).
fn fresh_header(
    signer: Option<&x509_cert::Certificate>,
    implicit_confirm: bool,
    message_time: u64,
) -> pkid_protocols::cmp::ResponseHeader {
    use x509_cert::ext::pkix::name::GeneralName;
    let mut tid = [0u8; 16];
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut tid).expect("random");
    aws_lc_rs::rand::fill(&mut nonce).expect("random");
    pkid_protocols::cmp::ResponseHeader {
        sender: signer.map_or_else(x509_cert::name::Name::default, |c| {
            c.tbs_certificate.subject.clone()
        }),
        recipient: GeneralName::DirectoryName(x509_cert::name::Name::default()),
        message_time,
        transaction_id: tid.to_vec(),
        sender_nonce: nonce,
        recip_nonce: None,
        sender_kid: signer.is_none().then(|| b"dev1".to_vec()),
        implicit_confirm,
        pvno: 2,
    }
}

/// `body` under PKIBody tag `tag`, signed with ECDSA P-256 by `signer` (its certificate, sent
/// at extraCerts[0], and its PKCS#8 key).
fn signed_by<T: der::Encode>(
    header: &pkid_protocols::cmp::ResponseHeader,
    tag: u8,
    body: &T,
    (cert, pkcs8): (&x509_cert::Certificate, &[u8]),
) -> Vec<u8> {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    use pkid_protocols::cmp::{encode_request, ResponseProtection};
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8).expect("a P-256 key");
    let sign = |m: &[u8]| -> Result<Vec<u8>, String> {
        pair.sign(&aws_lc_rs::rand::SystemRandom::new(), m)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| e.to_string())
    };
    encode_request(
        header,
        tag,
        body,
        ResponseProtection::Signature {
            algorithm: spki::AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            sign: &sign,
        },
        vec![cert.clone()],
    )
    .expect("a signed message")
}

/// A genm with `itavs`, MAC-protected with `secret` under senderKID dev1 (what OpenSSL 3.0
/// cannot send: rootCaCert, crlStatusList), built with the `cmpv2` types.
fn genm(secret: &str, itavs: Vec<cmpv2::gen::InfoTypeAndValue>, message_time: u64) -> Vec<u8> {
    use pkid_protocols::cmp::{encode_request, Pbm, ResponseProtection};
    let header = fresh_header(None, false, message_time);
    let pbm = Pbm::sha256(&header.sender_nonce, 500).expect("PBM");
    encode_request(
        &header,
        21,
        &itavs,
        ResponseProtection::Mac {
            pbm: &pbm,
            secret: secret.as_bytes(),
        },
        Vec::new(),
    )
    .expect("genm encodes")
}

fn itav(oid: &str, value: Option<der::Any>) -> cmpv2::gen::InfoTypeAndValue {
    cmpv2::gen::InfoTypeAndValue {
        oid: oid.parse().expect("OID"),
        value,
    }
}

#[test]
fn genm_answers_key_types_ca_certificates_a_template_the_root_and_crls() {
    use der::{Decode, Encode};
    use pkid_protocols::cmp::info_type;
    use pkid_protocols::cmp::{CrlSource, CrlStatus};
    use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
    let dir = init(&[]);
    let data = dir.path();
    configure(data, "");
    let secret = organisation_with_secret(data);
    let pass = format!("pass:{secret}");
    let daemon = Daemon::start(data);
    let work = tempdir();
    let w = work.path();
    let server = daemon.http.to_string();
    let issuing = x509_cert::Certificate::from_der(
        &pkid_protocols::x509::pem_or_der(
            &std::fs::read(data.join("certs/issuing.crt")).expect("issuing"),
            &["CERTIFICATE"],
        )
        .expect("PEM"),
    )
    .expect("issuing CA");

    // What OpenSSL 3.0 can ask: signKeyPairTypes, caCerts, certReqTemplate.
    let mut answers = std::collections::BTreeMap::new();
    for t in ["signKeyPairTypes", "caCerts", "certReqTemplate"] {
        let rsp = unique_path(w, "genp", "der");
        let out = openssl_cmp(
            &server,
            "devices",
            &[
                "-cmd",
                "genm",
                "-secret",
                &pass,
                "-infotype",
                t,
                "-rspout",
                path_str(&rsp),
            ],
        );
        let text = all_output(&out);
        assert!(
            out.status.success() && text.contains("genp contains ITAV"),
            "{t}: {text}"
        );
        let v = parse_response(&std::fs::read(&rsp).expect("genp")).expect("parses");
        assert_eq!(v.body_tag, 22);
        v.verify_mac(secret.as_bytes()).expect("protected");
        assert_eq!(v.general.len(), 1, "{t}");
        answers.insert(t, v.general[0].clone());
    }
    // signKeyPairTypes: the device profile's only key type, P-256.
    let types: Vec<spki::AlgorithmIdentifierOwned> = answers["signKeyPairTypes"]
        .value
        .as_ref()
        .expect("a value")
        .decode_as()
        .expect("SEQUENCE OF AlgorithmIdentifier");
    assert_eq!(types.len(), 1);
    assert_eq!(types[0].oid, const_oid::db::rfc5912::ID_EC_PUBLIC_KEY);
    let curve: const_oid::ObjectIdentifier = types[0]
        .parameters
        .as_ref()
        .expect("curve")
        .decode_as()
        .expect("OID");
    assert_eq!(curve, const_oid::db::rfc5912::SECP_256_R_1);
    // caCerts: the issuing CA, then the root.
    let certs: Vec<x509_cert::Certificate> = answers["caCerts"]
        .value
        .as_ref()
        .expect("a value")
        .decode_as()
        .expect("certificates");
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0], issuing);
    assert_eq!(
        certs[1].tbs_certificate.subject,
        certs[1].tbs_certificate.issuer
    );
    // certReqTemplate: O and C filled in by the CA, P-256 as keySpec.
    let template: pkid_protocols::cmp::CertReqTemplateContent = answers["certReqTemplate"]
        .value
        .as_ref()
        .expect("a value")
        .decode_as()
        .expect("CertReqTemplateContent");
    let subject = template.cert_template.subject.expect("subject").to_string();
    assert!(
        subject.contains(ORG_NAME) && subject.contains("C=VN"),
        "{subject}"
    );
    let spec = template.key_spec.expect("keySpec");
    assert_eq!(spec[0].oid, info_type::REG_CTRL_ALG_ID);

    let now = unix_now();
    let post = |der: Vec<u8>| {
        let f = unique_path(w, "genm", "der");
        std::fs::write(&f, der).expect("write");
        post_der(&daemon, "devices", &f)
    };
    // rootCaCert: no root CA key update to announce, so rootCaKeyUpdate without a value.
    let v = post(genm(&secret, vec![itav("1.3.6.1.5.5.7.4.20", None)], now));
    assert_eq!(v.body_tag, 22, "{:?}", v.status);
    v.verify_mac(secret.as_bytes()).expect("protected");
    assert_eq!(v.general.len(), 1);
    assert_eq!(v.general[0].oid, info_type::ROOT_CA_KEY_UPDATE);
    assert!(v.general[0].value.is_none());

    // crlStatusList by issuer name and by distribution point: the current CRL, signed by the
    // issuing CA; with a thisUpdate in the future: crls without a value.
    let by_issuer = CrlSource::Issuer(vec![GeneralName::DirectoryName(
        issuing.tbs_certificate.subject.clone(),
    )]);
    let url = format!("{}/crl/issuing.crl", pkid_public_url(data));
    let by_dpn = CrlSource::Dpn(DistributionPointName::FullName(vec![
        GeneralName::UniformResourceIdentifier(der::asn1::Ia5String::new(&url).expect("URI")),
    ]));
    for (what, source) in [("issuer", by_issuer.clone()), ("dpn", by_dpn)] {
        let list = vec![CrlStatus {
            source,
            this_update: None,
        }];
        let value = der::Any::from_der(&list.to_der().expect("der")).expect("any");
        let v = post(genm(
            &secret,
            vec![itav("1.3.6.1.5.5.7.4.22", Some(value))],
            now,
        ));
        assert_eq!(v.body_tag, 22, "{what}: {:?}", v.status);
        assert_eq!(v.general[0].oid, info_type::CRLS);
        let crls: Vec<der::Any> = v.general[0]
            .value
            .as_ref()
            .expect("a CRL")
            .decode_as()
            .expect("CRLs");
        assert_eq!(crls.len(), 1, "{what}");
        let crl_file = unique_path(w, "crl", "der");
        std::fs::write(&crl_file, crls[0].to_der().expect("der")).expect("write");
        let out = openssl(&[
            "crl",
            "-inform",
            "DER",
            "-in",
            path_str(&crl_file),
            "-CAfile",
            path_str(&data.join("certs/issuing.crt")),
            "-noout",
        ]);
        assert!(
            lossy(&out.stderr).contains("verify OK"),
            "{what}: {}",
            lossy(&out.stderr)
        );
    }
    let later = x509_cert::time::Time::GeneralTime(
        der::asn1::GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(
            now + 86_400 * 365,
        ))
        .expect("time"),
    );
    let list = vec![CrlStatus {
        source: by_issuer,
        this_update: Some(later),
    }];
    let value = der::Any::from_der(&list.to_der().expect("der")).expect("any");
    let v = post(genm(
        &secret,
        vec![itav("1.3.6.1.5.5.7.4.22", Some(value))],
        now,
    ));
    assert_eq!(v.general[0].oid, info_type::CRLS);
    assert!(
        v.general[0].value.is_none(),
        "nothing newer than the client's"
    );
    // A CRL this server does not publish: badRequest. A genm under a wrong secret:
    // badMessageCheck.
    let list = vec![CrlStatus {
        source: CrlSource::Issuer(vec![GeneralName::DirectoryName(
            x509_cert::name::Name::default(),
        )]),
        this_update: None,
    }];
    let value = der::Any::from_der(&list.to_der().expect("der")).expect("any");
    let v = post(genm(
        &secret,
        vec![itav("1.3.6.1.5.5.7.4.22", Some(value))],
        now,
    ));
    assert_error(&v, FailureBit::BadRequest, "unknown CRL source");
    let v = post(genm(
        "not the secret",
        vec![itav("1.3.6.1.5.5.7.4.20", None)],
        now,
    ));
    assert_error(&v, FailureBit::BadMessageCheck, "wrong secret");
}

/// The `public_url` of the data directory's configuration.
fn pkid_public_url(data: &Path) -> String {
    let text = std::fs::read_to_string(data.join("pkid.toml")).expect("pkid.toml");
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("public_url")
                .and_then(|r| r.trim().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
        .expect("public_url")
}

/// The system clock, Unix seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The id of the newest RA request (`pkid request list`, JSON).
fn newest_request(data: &Path) -> String {
    let out = pkid_ok(data, &["request", "list"]);
    let at = out.find("\"id\":").expect("a request");
    out[at + 5..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .expect("id")
        .to_owned()
}

/// A data directory polled every second, with an operator-approved label `staff` for the
/// organisation; returns the `-ref:secret` option's `pass:SECRET`.
fn operator_label(data: &Path) -> String {
    let path = data.join("pkid.toml");
    let text = std::fs::read_to_string(&path).expect("pkid.toml");
    assert!(
        text.contains("check_after_secs = 60"),
        "the template's [cmp]"
    );
    std::fs::write(
        &path,
        text.replacen("check_after_secs = 60", "check_after_secs = 1", 1),
    )
    .expect("write");
    configure(
        data,
        &format!(
            "\n[[cmp.labels]]\nname = \"staff\"\nprofile = \"device\"\norganisation = \"{ORG}\"\napproval = \"operator\"\n"
        ),
    );
    format!("pass:{}", organisation_with_secret(data))
}

#[test]
fn a_p10cr_under_operator_approval_polls_until_an_officer_decides() {
    let dir = init(&[]);
    let data = dir.path();
    let pass = operator_label(data);
    let daemon = Daemon::start(data);
    let work = tempdir();
    let w = work.path();
    let server = daemon.http.to_string();
    let (_k, csr) = make_csr(w, "/CN=Nguyễn Thị Hoa", "ec:P-256");
    let (_k2, csr2) = make_csr(w, "/CN=Trần Văn Bình", "ec:P-256");

    // Approved: openssl polls (pollReq/pollRep, checkAfter 1 s) until the officer approves.
    let cert = unique_path(w, "staff", "crt");
    let (c, s, p) = (path_str(&csr).to_owned(), server.clone(), pass.clone());
    let cert_arg = path_str(&cert).to_owned();
    let client = std::thread::spawn(move || {
        openssl_cmp(
            &s,
            "staff",
            &[
                "-cmd",
                "p10cr",
                "-secret",
                &p,
                "-csr",
                &c,
                "-certout",
                &cert_arg,
                "-total_timeout",
                "60",
            ],
        )
    });
    assert!(
        poll(Duration::from_secs(20), || pkid(data, &["request", "list"])
            .stdout
            .windows(4)
            .any(|w| w == b"\"id\"")),
        "the RA request is created on the first message"
    );
    let id = newest_request(data);
    // Polled at least once before the decision.
    assert!(poll(Duration::from_secs(10), || counted(
        &daemon, "pollReq", "answered"
    ) >= 1.0));
    pkid_ok(data, &["request", "approve", &id]);
    let out = client.join().expect("client");
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("received POLLREP") && text.contains("received ip/cp/kup after polling"),
        "{text}"
    );
    assert!(
        text.contains("received PKICONF"),
        "certConf after polling: {text}"
    );
    let subject = x509_subject(&cert);
    assert!(
        subject.contains("Nguyễn Thị Hoa") && subject.contains(ORG_NAME),
        "{subject}"
    );
    assert_verifies(data, &cert, &[]);

    // Rejected: the next pollReq gets notAuthorized with the officer's reason.
    let (c, s, p) = (path_str(&csr2).to_owned(), server.clone(), pass.clone());
    let unused = path_str(&unique_path(w, "unused", "crt")).to_owned();
    let before = newest_request(data);
    let client = std::thread::spawn(move || {
        openssl_cmp(
            &s,
            "staff",
            &[
                "-cmd",
                "p10cr",
                "-secret",
                &p,
                "-csr",
                &c,
                "-certout",
                &unused,
                "-total_timeout",
                "60",
            ],
        )
    });
    assert!(poll(Duration::from_secs(20), || newest_request(data) != before));
    let id = newest_request(data);
    pkid_ok(
        data,
        &["request", "reject", &id, "--reason", "Không thuộc biên chế"],
    );
    let out = client.join().expect("client");
    let text = all_output(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("notAuthorized") && text.contains("Không thuộc biên chế"),
        "{text}"
    );
}

/// Runs `openssl cmp` (`args`) in a thread; once its RA request is filed and polled for at
/// least `polled` times, `decide` is run on the request id; the client's output.
fn while_polling(
    daemon: &Daemon,
    data: &Path,
    args: Vec<String>,
    polled: f64,
    decide: impl FnOnce(&str),
) -> Output {
    let before = pkid_ok(data, &["request", "list"]);
    let client = std::thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(&a)
    });
    assert!(
        poll(Duration::from_secs(20), || pkid_ok(
            data,
            &["request", "list"]
        ) != before),
        "the RA request is filed on the first message"
    );
    assert!(
        poll(Duration::from_secs(20), || counted(
            daemon, "pollReq", "answered"
        ) >= polled),
        "polled before the decision"
    );
    decide(&newest_request(data));
    client.join().expect("client")
}

#[test]
fn ir_cr_and_kur_under_operator_approval_poll_until_an_officer_decides() {
    let dir = init(&[]);
    let data = dir.path();
    let pass = operator_label(data);
    let daemon = Daemon::start(data);
    let work = tempdir();
    let w = work.path();
    let server = daemon.http.to_string();
    let root = data.join("certs/root.crt");
    let base = |cmd: &str| -> Vec<String> {
        [
            "cmp",
            "-config",
            "",
            "-server",
            &server,
            "-path",
            ".well-known/cmp/p/staff",
            "-cmd",
            cmd,
            "-total_timeout",
            "60",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mac = |cmd: &str, extra: &[&str]| -> Vec<String> {
        let mut a = base(cmd);
        for s in [
            "-ref",
            "dev1",
            "-secret",
            &pass,
            "-recipient",
            "/CN=Issuing CA",
        ] {
            a.push(s.into());
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // ir: the ip says waiting, openssl polls; the officer approves; the ip after polling
    // carries the certificate with the subject the RA registered; certConf, pkiConf.
    let k1 = p256_key(w);
    let ir = unique_path(w, "ir", "crt");
    let out = while_polling(
        &daemon,
        data,
        mac(
            "ir",
            &[
                "-newkey",
                path_str(&k1),
                "-subject",
                "/CN=Lê Thị Mai/OU=Phòng Tổ chức",
                "-certout",
                path_str(&ir),
            ],
        ),
        1.0,
        |id| {
            let shown = pkid_ok(data, &["request", "show", id]);
            assert!(
                shown.contains("Lê Thị Mai") && shown.contains("accepted"),
                "{shown}"
            );
            pkid_ok(data, &["request", "approve", id]);
        },
    );
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("received POLLREP")
            && text.contains("received ip/cp/kup after polling")
            && text.contains("received IP")
            && text.contains("received PKICONF"),
        "{text}"
    );
    let subject = x509_subject(&ir);
    assert!(
        subject.contains("Lê Thị Mai")
            && subject.contains("Phòng Tổ chức")
            && subject.contains(ORG_NAME),
        "{subject}"
    );
    assert_verifies(data, &ir, &[]);
    let ir_serial = canonical_serial(&x509_serial(&ir));
    assert_eq!(status_of(data, &ir_serial), "valid");

    // cr rejected: the cp after polling is a rejection with notAuthorized and the reason.
    let k2 = p256_key(w);
    let polled = counted(&daemon, "pollReq", "answered");
    let out = while_polling(
        &daemon,
        data,
        mac(
            "cr",
            &[
                "-newkey",
                path_str(&k2),
                "-subject",
                "/CN=Đỗ Văn Nam",
                "-certout",
                path_str(&unique_path(w, "cr", "crt")),
            ],
        ),
        polled + 1.0,
        |id| {
            pkid_ok(
                data,
                &["request", "reject", id, "--reason", "Không thuộc biên chế"],
            );
        },
    );
    let text = all_output(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("received ip/cp/kup after polling")
            && text.contains("rejection")
            && text.contains("notAuthorized")
            && text.contains("Không thuộc biên chế"),
        "{text}"
    );

    // kur, signed with the certificate from the ir: filed as a modify request of that
    // certificate; approved, the kup carries the new key's certificate and the old one is
    // superseded (the pollReq and certConf are still signed with it, and accepted).
    let k3 = p256_key(w);
    let kur = unique_path(w, "kur", "crt");
    let mut args = base("kur");
    for s in [
        "-cert",
        path_str(&ir),
        "-key",
        path_str(&k1),
        "-trusted",
        path_str(&root),
        "-newkey",
        path_str(&k3),
        "-certout",
        path_str(&kur),
    ] {
        args.push(s.into());
    }
    let polled = counted(&daemon, "pollReq", "answered");
    let out = while_polling(&daemon, data, args, polled + 1.0, |id| {
        let shown = pkid_ok(data, &["request", "show", id]);
        assert!(
            shown.contains("modify") && shown.contains(&ir_serial),
            "{shown}"
        );
        assert_eq!(status_of(data, &ir_serial), "valid", "valid while it waits");
        pkid_ok(data, &["request", "approve", id]);
    });
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("received ip/cp/kup after polling") && text.contains("received PKICONF"),
        "{text}"
    );
    assert_verifies(data, &kur, &[]);
    assert_eq!(x509_subject(&kur), x509_subject(&ir));
    assert_ne!(public_key_of_cert(&kur), public_key_of_cert(&ir));
    let shown = pkid_ok(data, &["cert", "show", "--serial", &ir_serial]);
    assert!(
        shown.contains("revoked") && shown.contains("superseded"),
        "{shown}"
    );
    assert_eq!(
        status_of(data, &canonical_serial(&x509_serial(&kur))),
        "valid"
    );
}

const OTHER_ORG: &str = "so-yt-dn";
const OTHER_ORG_NAME: &str = "Sở Y tế Đà Nẵng";

/// `openssl cmp` signing with `cert`/`key` (no shared secret), checking the signed answers
/// against `trusted`.
fn openssl_cmp_signed(
    server: &str,
    label: &str,
    (cert, key): (&Path, &Path),
    trusted: &Path,
    args: &[&str],
) -> Output {
    let path = format!(".well-known/cmp/p/{label}");
    let mut full = vec![
        "cmp",
        "-config",
        "",
        "-server",
        server,
        "-path",
        &path,
        "-cert",
        path_str(cert),
        "-key",
        path_str(key),
        "-trusted",
        path_str(trusted),
    ];
    full.extend_from_slice(args);
    openssl(&full)
}

/// The `openssl ocsp` status line of `cert` ("good", "revoked", "unknown"), the response
/// verified against the root.
fn ocsp_status(daemon: &Daemon, data: &Path, cert: &Path) -> String {
    let out = openssl(&[
        "ocsp",
        "-issuer",
        path_str(&data.join("certs/issuing.crt")),
        "-cert",
        path_str(cert),
        "-url",
        &daemon.http_url("/ocsp"),
        "-CAfile",
        path_str(&data.join("certs/root.crt")),
    ]);
    let text = all_output(&out);
    assert!(text.contains("Response verify OK"), "{text}");
    text
}

#[test]
fn signed_cr_p10cr_kur_and_rr_with_openssl_cmp() {
    let dir = init(&[]);
    let data = dir.path();
    configure(
        data,
        &format!(
            "\n[[cmp.labels]]\nname = \"health\"\nprofile = \"device\"\norganisation = \"{OTHER_ORG}\"\n"
        ),
    );
    let secret = organisation_with_secret(data);
    let pass = format!("pass:{secret}");
    pkid_ok(
        data,
        &[
            "org",
            "add",
            "--id",
            OTHER_ORG,
            "--name",
            OTHER_ORG_NAME,
            "--province",
            "DN",
        ],
    );
    let other_secret = pkid_ok(
        data,
        &[
            "credential",
            "add",
            "--org",
            OTHER_ORG,
            "--kind",
            "cmp",
            "--name",
            "dev1",
        ],
    )
    .lines()
    .last()
    .expect("the secret line")
    .to_owned();

    // `pkid init` made the issuing CA's CMP responder; a data directory from before it had
    // none: without its file and key, the daemon makes them again on its first start.
    let responder = data.join("certs/cmp-issuing.crt");
    assert!(responder.exists(), "init made certs/cmp-issuing.crt");
    let first = std::fs::read(&responder).expect("responder");
    std::fs::remove_file(&responder).expect("remove the responder certificate");
    std::fs::remove_file(data.join("keys/cmp-issuing.p8")).expect("remove the responder key");
    let daemon = Daemon::start(data);
    assert!(responder.exists(), "made again on start");
    assert_ne!(std::fs::read(&responder).expect("responder"), first);
    assert_verifies(data, &responder, &[]);
    let text = x509_text(&responder);
    assert!(
        text.contains("Digital Signature") && text.contains("CMP Responder"),
        "{text}"
    );
    let responder_cert = pem_certificate(&responder);

    let work = tempdir();
    let w = work.path();
    let server = daemon.http.to_string();
    let at = |stem: &str, ext: &str| unique_path(w, stem, ext);
    let root = data.join("certs/root.crt");

    // ir with the shared secret: the certificate the device signs with from now on; the ip
    // carries the root in caPubs and the issuing chain in extraCerts.
    let k1 = p256_key(w);
    let (dev, ip_rsp) = (at("dev", "crt"), at("ip", "der"));
    let out = openssl_cmp(
        &server,
        "devices",
        &[
            "-cmd",
            "ir",
            "-secret",
            &pass,
            "-newkey",
            path_str(&k1),
            "-subject",
            "/CN=Cảm biến 07",
            "-certout",
            path_str(&dev),
            "-rspout",
            &format!("{},{}", path_str(&ip_rsp), path_str(&at("conf", "der"))),
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let ip = parse_response(&std::fs::read(&ip_rsp).expect("ip")).expect("ip parses");
    assert_eq!(ip.ca_pubs.len(), 1, "caPubs: the root");
    assert_eq!(ip.extra_certs.len(), 2, "extraCerts: issuing CA and root");
    ip.verify_mac(secret.as_bytes()).expect("MAC-protected ip");

    // A signed cr: the cp is signed by the CMP responder (openssl checked it against the root),
    // which leads extraCerts; no caPubs.
    let k2 = p256_key(w);
    let (cr, cr_req, cp_rsp) = (at("cr", "crt"), at("cr-req", "der"), at("cp", "der"));
    let out = openssl_cmp_signed(
        &server,
        "devices",
        (&dev, &k1),
        &root,
        &[
            "-cmd",
            "cr",
            "-newkey",
            path_str(&k2),
            "-subject",
            "/CN=Cảm biến 07b",
            "-certout",
            path_str(&cr),
            "-reqout",
            &format!("{},{}", path_str(&cr_req), path_str(&at("cr-conf", "der"))),
            "-rspout",
            &format!(
                "{},{}",
                path_str(&cp_rsp),
                path_str(&at("cr-pkiconf", "der"))
            ),
        ],
    );
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("received PKICONF"), "{text}");
    assert_verifies(data, &cr, &[]);
    let subject = x509_subject(&cr);
    assert!(
        subject.contains(ORG_NAME) && subject.contains("Cảm biến 07b"),
        "{subject}"
    );
    let cp = parse_response(&std::fs::read(&cp_rsp).expect("cp")).expect("cp parses");
    assert_eq!(cp.body_tag, 3);
    assert!(
        cp.verify_mac(secret.as_bytes()).is_err(),
        "not MAC-protected"
    );
    cp.verify_signature(&responder_cert.tbs_certificate.subject_public_key_info)
        .expect("signed by the CMP responder");
    assert_eq!(cp.extra_certs.first(), Some(&responder_cert));
    assert!(cp.ca_pubs.is_empty());

    // A signed p10cr.
    let (_k, csr) = make_csr(w, "/CN=p10 ký", "ec:P-256");
    let p10 = at("p10", "crt");
    let out = openssl_cmp_signed(
        &server,
        "devices",
        (&dev, &k1),
        &root,
        &[
            "-cmd",
            "p10cr",
            "-csr",
            path_str(&csr),
            "-certout",
            path_str(&p10),
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    assert_verifies(data, &p10, &[]);

    // kur, signed by the certificate being updated: a new key, the same subject, the old
    // certificate superseded (certConf is still signed with it, and accepted).
    let k3 = p256_key(w);
    let kur = at("kur", "crt");
    let out = openssl_cmp_signed(
        &server,
        "devices",
        (&cr, &k2),
        &root,
        &[
            "-cmd",
            "kur",
            "-newkey",
            path_str(&k3),
            "-certout",
            path_str(&kur),
        ],
    );
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("received PKICONF"), "{text}");
    assert_verifies(data, &kur, &[]);
    assert_eq!(x509_subject(&kur), x509_subject(&cr));
    assert_ne!(public_key_of_cert(&kur), public_key_of_cert(&cr));
    let old = canonical_serial(&x509_serial(&cr));
    let shown = pkid_ok(data, &["cert", "show", "--serial", &old]);
    assert!(
        shown.contains("revoked") && shown.contains("superseded"),
        "{shown}"
    );
    let new = canonical_serial(&x509_serial(&kur));
    assert_eq!(status_of(data, &new), "valid");

    // The superseded certificate can no longer sign a request: notAuthorized.
    let out = openssl_cmp_signed(
        &server,
        "devices",
        (&cr, &k2),
        &root,
        &[
            "-unprotected_errors",
            "-cmd",
            "cr",
            "-newkey",
            path_str(&k2),
            "-subject",
            "/CN=again",
            "-certout",
            path_str(&at("again", "crt")),
        ],
    );
    let text = all_output(&out);
    assert!(
        !out.status.success() && text.contains("notAuthorized"),
        "{text}"
    );

    // rr signed by the organisation's certificate: revoked at once, as OCSP says.
    assert!(ocsp_status(&daemon, data, &p10).contains(": good"));
    let rp_rsp = at("rp", "der");
    let out = openssl_cmp_signed(
        &server,
        "devices",
        (&dev, &k1),
        &root,
        &[
            "-cmd",
            "rr",
            "-oldcert",
            path_str(&p10),
            "-revreason",
            "1",
            "-rspout",
            path_str(&rp_rsp),
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let rp = parse_response(&std::fs::read(&rp_rsp).expect("rp")).expect("rp parses");
    assert_eq!(rp.body_tag, 12);
    assert_eq!(
        rp.status.as_ref().map(|s| s.status),
        Some(pkid_protocols::cmp::PkiStatus::Accepted)
    );
    rp.verify_signature(&responder_cert.tbs_certificate.subject_public_key_info)
        .expect("a signed rp");
    let ocsp = ocsp_status(&daemon, data, &p10);
    assert!(
        ocsp.contains(": revoked") && ocsp.contains("keyCompromise"),
        "{ocsp}"
    );
    // Again: certRevoked.
    let out = openssl_cmp_signed(
        &server,
        "devices",
        (&dev, &k1),
        &root,
        &["-cmd", "rr", "-oldcert", path_str(&p10), "-revreason", "1"],
    );
    let text = all_output(&out);
    assert!(
        !out.status.success() && text.contains("certRevoked"),
        "{text}"
    );

    // rr with the organisation's shared secret.
    let out = openssl_cmp(
        &server,
        "devices",
        &[
            "-cmd",
            "rr",
            "-secret",
            &pass,
            "-oldcert",
            path_str(&kur),
            "-revreason",
            "5",
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    assert!(ocsp_status(&daemon, data, &kur).contains(": revoked"));

    // Cross-tenant: another organisation's certificate is notAuthorized, by signature and by
    // secret, and stays good.
    let other_pass = format!("pass:{other_secret}");
    let theirs = at("theirs", "crt");
    let out = openssl_cmp(
        &server,
        "health",
        &[
            "-cmd",
            "ir",
            "-secret",
            &other_pass,
            "-newkey",
            path_str(&p256_key(w)),
            "-subject",
            "/CN=Máy đo",
            "-certout",
            path_str(&theirs),
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let out = openssl_cmp_signed(
        &server,
        "devices",
        (&dev, &k1),
        &root,
        &[
            "-cmd",
            "rr",
            "-oldcert",
            path_str(&theirs),
            "-revreason",
            "1",
        ],
    );
    let text = all_output(&out);
    assert!(
        !out.status.success() && text.contains("notAuthorized"),
        "{text}"
    );
    let out = openssl_cmp(
        &server,
        "devices",
        &[
            "-cmd",
            "rr",
            "-secret",
            &pass,
            "-oldcert",
            path_str(&theirs),
            "-revreason",
            "1",
        ],
    );
    let text = all_output(&out);
    assert!(
        !out.status.success() && text.contains("notAuthorized"),
        "{text}"
    );
    // Nor may the other organisation's certificate sign under this organisation's label.
    let out = openssl_cmp_signed(
        &server,
        "health",
        (&dev, &k1),
        &root,
        &[
            "-unprotected_errors",
            "-cmd",
            "cr",
            "-newkey",
            path_str(&k1),
            "-subject",
            "/CN=lạc",
            "-certout",
            path_str(&at("stray", "crt")),
        ],
    );
    let text = all_output(&out);
    assert!(
        !out.status.success() && text.contains("notAuthorized"),
        "{text}"
    );
    assert!(ocsp_status(&daemon, data, &theirs).contains(": good"));

    // A certificate pkid did not issue (from another CA, naming the organisation):
    // signerNotTrusted. (A self-signed one openssl does not even send.)
    let (ca_key, ca) = self_signed_p256(w, "stranger-ca", "/CN=Stranger CA");
    let (stranger_key, stranger_csr) = make_csr(w, &format!("/CN=x/O={ORG_NAME}"), "ec:P-256");
    let stranger = at("stranger", "pem");
    openssl_ok(&[
        "x509",
        "-req",
        "-in",
        path_str(&stranger_csr),
        "-CA",
        path_str(&ca),
        "-CAkey",
        path_str(&ca_key),
        "-CAcreateserial",
        "-days",
        "30",
        "-out",
        path_str(&stranger),
    ]);
    let out = openssl_cmp_signed(
        &server,
        "devices",
        (&stranger, &stranger_key),
        &root,
        &[
            "-unprotected_errors",
            "-cmd",
            "cr",
            "-newkey",
            path_str(&k1),
            "-subject",
            "/CN=x",
            "-certout",
            path_str(&at("x", "crt")),
        ],
    );
    let text = all_output(&out);
    assert!(
        !out.status.success() && text.contains("signerNotTrusted"),
        "{text}"
    );

    // A tampered signature: badMessageCheck, unprotected.
    let mut tampered = std::fs::read(&cr_req).expect("signed cr");
    let req = pkid_protocols::cmp::parse_request(&tampered).expect("the signed cr parses");
    let sig = req.protection.clone().expect("signed");
    let at_sig = tampered
        .windows(sig.len())
        .position(|w| w == sig.as_slice())
        .expect("the signature in the message");
    tampered[at_sig + sig.len() - 2] ^= 0x01;
    let file = at("tampered", "der");
    std::fs::write(&file, &tampered).expect("write");
    let v = post_der(&daemon, "devices", &file);
    assert_error(&v, FailureBit::BadMessageCheck, "tampered signature");
    assert!(!v.is_protected());
    // The untouched message verifies, so the flipped bit is what was refused: it is only
    // refused now because its transaction was used.
    let v = post_der(&daemon, "devices", &cr_req);
    assert_error(&v, FailureBit::TransactionIdInUse, "replayed signed cr");
    v.verify_signature(&responder_cert.tbs_certificate.subject_public_key_info)
        .expect("a signed error");

    assert_eq!(get(&daemon.http_url("/healthz")).status, 200);
    assert!(!daemon.logs().contains(&secret));
    let audit = pkid_ok(data, &["audit", "verify"]);
    assert!(!audit.is_empty());
}

/// The one certificate of a PEM file.
fn pem_certificate(path: &Path) -> x509_cert::Certificate {
    use der::Decode;
    let pem = std::fs::read(path).expect("pem");
    let der = pkid_protocols::x509::pem_or_der(&pem, &["CERTIFICATE"]).expect("a certificate");
    x509_cert::Certificate::from_der(&der).expect("decodes")
}

/// A keyless ir (0) or cr (2) asking the server for the key (RFC 9483 §4.1.6: no publicKey,
/// or `algorithm` only with an empty key; no POP), signed with `signer` (its certificate and
/// PKCS#8 P-256 key) or else MAC-protected with `secret`; built with the `crmf` types.
fn keyless_request(
    tag: u8,
    cn: &str,
    algorithm: Option<spki::AlgorithmIdentifierOwned>,
    signer: Option<(&x509_cert::Certificate, &[u8])>,
    secret: &str,
) -> Vec<u8> {
    use crmf::request::{CertReqMsg, CertRequest, CertTemplate};
    use der::asn1::{BitString, Int};
    use pkid_protocols::cmp::{encode_request, Pbm, ResponseProtection};
    let msg = CertReqMsg {
        cert_req: CertRequest {
            cert_req_id: Int::new(&[0]).expect("0"),
            cert_template: CertTemplate {
                version: None,
                serial_number: None,
                signature: None,
                issuer: None,
                validity: None,
                subject: Some(pkid_protocols::name::parse(&format!("CN={cn}")).expect("name")),
                subject_public_key_info: algorithm.map(|a| spki::SubjectPublicKeyInfoOwned {
                    algorithm: a,
                    subject_public_key: BitString::from_bytes(&[]).expect("empty"),
                }),
                issuer_unique_id: None,
                subject_unique_id: None,
                extensions: None,
            },
            controls: None,
        },
        popo: None,
        reg_info: None,
    };
    let header = fresh_header(signer.map(|(c, _)| c), true, unix_now());
    match signer {
        Some(signer) => signed_by(&header, tag, &vec![msg], signer),
        None => {
            let pbm = Pbm::sha256(&header.sender_nonce, 500).expect("PBM");
            encode_request(
                &header,
                tag,
                &vec![msg],
                ResponseProtection::Mac {
                    pbm: &pbm,
                    secret: secret.as_bytes(),
                },
                Vec::new(),
            )
            .expect("a MAC-protected request")
        }
    }
}

/// The central key of a cp / ip (`v`): openssl opens the envelope (`decrypt`: the recipient's
/// `-recip`/`-inkey`, or `-pwri_password`), verifies the key generation authority's SignedData
/// up to `root`, and the one key inside is the certificate's (`cert_file`).
fn open_central_key(w: &Path, root: &Path, v: &ResponseView, decrypt: &[&str], cert_file: &Path) {
    use der::{Decode, Encode};
    let enveloped = v.private_key.clone().expect("privateKey");
    assert_eq!(
        enveloped.encrypted_content.content_type,
        const_oid::db::rfc5911::ID_SIGNED_DATA,
        "RFC 9483 section 4.1.6: the envelope holds a SignedData"
    );

    let env_file = unique_path(w, "env", "der");
    let ci = cms::content_info::ContentInfo {
        content_type: const_oid::db::rfc5911::ID_ENVELOPED_DATA,
        content: der::Any::encode_from(&enveloped).expect("any"),
    };
    std::fs::write(&env_file, ci.to_der().expect("der")).expect("write");
    let sd_file = unique_path(w, "sd", "der");
    let mut args = vec![
        "cms",
        "-decrypt",
        "-inform",
        "DER",
        "-in",
        path_str(&env_file),
    ];
    args.extend_from_slice(decrypt);
    args.extend_from_slice(&["-binary", "-out", path_str(&sd_file)]);
    openssl_ok(&args);
    let sd = std::fs::read(&sd_file).expect("SignedData");
    let sd_ci = cms::content_info::ContentInfo {
        content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
        content: der::Any::from_der(&sd).expect("a SignedData"),
    };
    let sd_ci_file = unique_path(w, "sdci", "der");
    std::fs::write(&sd_ci_file, sd_ci.to_der().expect("der")).expect("write");
    let akp_file = unique_path(w, "akp", "der");
    let out = openssl(&[
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        path_str(&sd_ci_file),
        "-CAfile",
        path_str(root),
        "-purpose",
        "any",
        "-binary",
        "-out",
        path_str(&akp_file),
    ]);
    let text = all_output(&out);
    assert!(
        out.status.success() && text.contains("Verification successful"),
        "{text}"
    );
    let signed = cms::signed_data::SignedData::from_der(&sd).expect("SignedData");
    assert_eq!(
        signed.encap_content_info.econtent_type.to_string(),
        "2.16.840.1.101.2.1.2.78.5",
        "id-ct-KP-aKeyPackage"
    );
    let package: Vec<der::Any> =
        Vec::from_der(&std::fs::read(&akp_file).expect("akp")).expect("AsymmetricKeyPackage");
    assert_eq!(package.len(), 1, "one key");
    let key_file = unique_path(w, "central", "key");
    std::fs::write(&key_file, package[0].to_der().expect("der")).expect("write");
    let public = openssl_ok(&[
        "pkey",
        "-inform",
        "DER",
        "-in",
        path_str(&key_file),
        "-pubout",
    ]);
    assert_eq!(public, public_key_of_cert(cert_file));
}

#[test]
fn central_key_generation_envelopes_a_signed_key_package_to_the_requester() {
    use der::Encode;
    let dir = init(&[]);
    let data = dir.path();
    configure(
        data,
        &format!(
            "\n[[cmp.labels]]\nname = \"kga\"\nprofile = \"device\"\norganisation = \"{ORG}\"\ncentral_keygen = true\nescrow = true\n\n[[cmp.labels]]\nname = \"kga-any\"\nprofile = \"tls-client\"\norganisation = \"{ORG}\"\ncentral_keygen = true\n\n[[cmp.labels]]\nname = \"keyholders\"\nprofile = \"device-ka\"\norganisation = \"{ORG}\"\n\n[profiles.device-ka]\nkey_usage = [\"digitalSignature\", \"keyAgreement\"]\nextended_key_usage = [\"clientAuth\"]\nextended_key_usage_critical = false\nmax_validity_days = 825\ndefault_validity_days = 365\nallowed_keys = [\"p256\"]\nrequired_subject = [\"CN\"]\ncopy_subject_alt_name = true\n"
        ),
    );
    let secret = organisation_with_secret(data);
    let pass = format!("pass:{secret}");
    let daemon = Daemon::start(data);
    let work = tempdir();
    let w = work.path();
    let server = daemon.http.to_string();
    let root = data.join("certs/root.crt");

    // The device's own certificate (its own key, ir with the shared secret; keyUsage
    // keyAgreement, RFC 9483 §4.1.6.2): it signs the keyless request and is the envelope's
    // recipient.
    let dev_key = p256_key(w);
    let dev_crt = unique_path(w, "dev", "crt");
    let out = openssl_cmp(
        &server,
        "keyholders",
        &[
            "-cmd",
            "ir",
            "-secret",
            &pass,
            "-newkey",
            path_str(&dev_key),
            "-subject",
            "/CN=Thiết bị 07",
            "-certout",
            path_str(&dev_crt),
            "-implicit_confirm",
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let dev = pem_certificate(&dev_crt);
    let pkcs8 = pkcs8_der(w, &dev_key);

    // A signed cr without a key: the cp carries the certificate and, in privateKey, an
    // EnvelopedData to the device's certificate.
    let send = |der: Vec<u8>| {
        let f = unique_path(w, "req", "der");
        std::fs::write(&f, der).expect("write");
        post_der(&daemon, "kga", &f)
    };
    let v = send(keyless_request(
        2,
        "Cảm biến nhiệt 3",
        None,
        Some((&dev, &pkcs8)),
        "",
    ));
    assert_eq!(v.body_tag, 3, "cp: {}", v.status_text());
    let responder = v.extra_certs.first().expect("the responder").clone();
    v.verify_signature(&responder.tbs_certificate.subject_public_key_info)
        .expect("signed by the responder");
    let cert = v.certificate.clone().expect("a certificate");
    let cert_der = unique_path(w, "central", "der");
    std::fs::write(&cert_der, cert.to_der().expect("der")).expect("write");
    let cert_file = unique_path(w, "central", "crt");
    openssl_ok(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        path_str(&cert_der),
        "-out",
        path_str(&cert_file),
    ]);
    let subject = x509_subject(&cert_file);
    assert!(
        subject.contains("Cảm biến nhiệt 3") && subject.contains(ORG_NAME),
        "{subject}"
    );
    assert_verifies(data, &cert_file, &[]);
    open_central_key(
        w,
        &root,
        &v,
        &["-recip", path_str(&dev_crt), "-inkey", path_str(&dev_key)],
        &cert_file,
    );

    // Escrowed, audited.
    let audit = pkid_ok(data, &["audit", "list"]);
    assert!(
        audit.contains("key.escrow") && audit.contains(&serial_of(&cert)),
        "{audit}"
    );

    // An algorithm-only publicKey (P-256) is honoured the same way.
    let alg = spki::AlgorithmIdentifierOwned {
        oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
        parameters: Some(
            der::Any::encode_from(&const_oid::db::rfc5912::SECP_256_R_1).expect("curve"),
        ),
    };
    let v = send(keyless_request(
        0,
        "dev-alg",
        Some(alg),
        Some((&dev, &pkcs8)),
        "",
    ));
    assert_eq!(v.body_tag, 1, "ip: {}", v.status_text());
    assert!(v.private_key.is_some() && v.certificate.is_some());
    let rsa_request = |cn: &str| {
        let rsa = spki::AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::RSA_ENCRYPTION,
            parameters: Some(der::Any::from(der::asn1::Null)),
        };
        keyless_request(2, cn, Some(rsa), Some((&dev, &pkcs8)), "")
    };
    // An RSA preference where the profile (device: P-256 only) does not allow RSA:
    // badCertTemplate, not another key type than the one asked for.
    let v = send(rsa_request("dev-rsa"));
    assert_error(
        &v,
        FailureBit::BadCertTemplate,
        "an RSA preference on a P-256 profile",
    );
    // On a label whose profile allows RSA (tls-client): an RSA key of the profile's smallest
    // allowed size, 2048 bits.
    let f = unique_path(w, "req", "der");
    std::fs::write(&f, rsa_request("dev-rsa-any")).expect("write");
    let v = post_der(&daemon, "kga-any", &f);
    assert_eq!(v.body_tag, 3, "cp: {}", v.status_text());
    let issued = v.certificate.as_ref().expect("a certificate");
    assert!(v.private_key.is_some(), "the key, enveloped");
    let spki = &issued.tbs_certificate.subject_public_key_info;
    assert_eq!(spki.algorithm.oid, const_oid::db::rfc5912::RSA_ENCRYPTION);
    let rsa_cert = unique_path(w, "central-rsa", "der");
    std::fs::write(&rsa_cert, issued.to_der().expect("der")).expect("write");
    let text = openssl_ok(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        path_str(&rsa_cert),
        "-noout",
        "-text",
    ]);
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    // MAC-protected (RFC 9483 §4.1.6.3): the key comes under the shared secret, a
    // PasswordRecipientInfo (PBKDF2, id-alg-PWRI-KEK) that `openssl cms -pwri_password` opens;
    // the answer MAC-protected with the same secret (keygen/envelope.rs's unit test shows a
    // wrong secret opens nothing).
    let v = send(keyless_request(
        0,
        "Cảm biến khóa chung",
        None,
        None,
        &secret,
    ));
    assert_eq!(v.body_tag, 1, "ip: {}", v.status_text());
    v.verify_mac(secret.as_bytes())
        .expect("protected with the secret");
    let enveloped = v.private_key.clone().expect("privateKey");
    assert!(
        enveloped
            .recip_infos
            .0
            .iter()
            .all(|r| matches!(r, cms::enveloped_data::RecipientInfo::Pwri(_))),
        "a password recipient"
    );
    let mac_cert = unique_path(w, "central-mac", "der");
    std::fs::write(
        &mac_cert,
        v.certificate
            .as_ref()
            .expect("a certificate")
            .to_der()
            .expect("der"),
    )
    .expect("write");
    let mac_pem = unique_path(w, "central-mac", "crt");
    openssl_ok(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        path_str(&mac_cert),
        "-out",
        path_str(&mac_pem),
    ]);
    assert!(x509_subject(&mac_pem).contains("Cảm biến khóa chung"));
    open_central_key(w, &root, &v, &["-pwri_password", &secret], &mac_pem);
    // A signer whose certificate's keyUsage is digitalSignature only (label devices) cannot
    // receive a key by key agreement: badRequest naming keyAgreement, and nothing issued.
    let sig_key = p256_key(w);
    let sig_crt = unique_path(w, "sig-only", "crt");
    let out = openssl_cmp(
        &server,
        "devices",
        &[
            "-cmd",
            "ir",
            "-secret",
            &pass,
            "-newkey",
            path_str(&sig_key),
            "-subject",
            "/CN=Thiết bị ký",
            "-certout",
            path_str(&sig_crt),
            "-implicit_confirm",
        ],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let issued_before = counted(&daemon, "cr", "answered");
    let v = send(keyless_request(
        2,
        "dev-sig-only",
        None,
        Some((&pem_certificate(&sig_crt), &pkcs8_der(w, &sig_key))),
        "",
    ));
    assert_error(
        &v,
        FailureBit::BadRequest,
        "a digitalSignature-only recipient",
    );
    assert!(
        v.status_text().contains("keyAgreement"),
        "{}",
        v.status_text()
    );
    assert!(v.certificate.is_none());
    assert_eq!(counted(&daemon, "cr", "answered"), issued_before);
    // A label without central_keygen: a template without a key is badCertTemplate.
    let f = unique_path(w, "req", "der");
    std::fs::write(
        &f,
        keyless_request(2, "dev-off", None, Some((&dev, &pkcs8)), ""),
    )
    .expect("write");
    let v = post_der(&daemon, "devices", &f);
    assert_error(&v, FailureBit::BadCertTemplate, "central_keygen = false");
    assert!(
        v.status_text().contains("central_keygen"),
        "{}",
        v.status_text()
    );
}

/// A PBMAC1-protected ir (RFC 9481 §6.1.2: PBKDF2 with hmacWithSHA256, 1000 iterations, then
/// hmacWithSHA256) for a fresh P-256 key with its signature POP, asking for implicit
/// confirmation; built with the `crmf` types (OpenSSL 3.0 cannot send PBMAC1).
fn pbmac1_ir(secret: &str, cn: &str) -> Vec<u8> {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    use crmf::pop::{PopoSigningKey, ProofOfPossession};
    use crmf::request::{CertReqMsg, CertRequest, CertTemplate};
    use der::asn1::{BitString, Int};
    use der::Encode;
    use pkid_protocols::cmp::{encode_request, Pbm, ResponseProtection};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("key");
    let cert_req = CertRequest {
        cert_req_id: Int::new(&[0]).expect("0"),
        cert_template: CertTemplate {
            version: None,
            serial_number: None,
            signature: None,
            issuer: None,
            validity: None,
            subject: Some(pkid_protocols::name::parse(&format!("CN={cn}")).expect("name")),
            subject_public_key_info: Some(spki::SubjectPublicKeyInfoOwned {
                algorithm: spki::AlgorithmIdentifierOwned {
                    oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
                    parameters: Some(
                        der::Any::encode_from(&const_oid::db::rfc5912::SECP_256_R_1)
                            .expect("curve"),
                    ),
                },
                subject_public_key: BitString::from_bytes(pair.public_key().as_ref())
                    .expect("point"),
            }),
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: None,
        },
        controls: None,
    };
    let sig = pair
        .sign(
            &aws_lc_rs::rand::SystemRandom::new(),
            &cert_req.to_der().expect("certRequest"),
        )
        .expect("sign");
    let msg = CertReqMsg {
        cert_req,
        popo: Some(ProofOfPossession::Signature(Box::new(PopoSigningKey {
            poposk_input: None,
            alg_id: spki::AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            signature: BitString::from_bytes(sig.as_ref()).expect("sig"),
        }))),
        reg_info: None,
    };
    let header = fresh_header(None, true, unix_now());
    let pbm = Pbm::pbmac1_sha256(&header.sender_nonce, 1000).expect("PBMAC1");
    encode_request(
        &header,
        0,
        &vec![msg],
        ResponseProtection::Mac {
            pbm: &pbm,
            secret: secret.as_bytes(),
        },
        Vec::new(),
    )
    .expect("ir")
}

#[test]
fn a_pbmac1_protected_ir_is_answered_with_pbmac1() {
    let dir = init(&[]);
    let data = dir.path();
    configure(data, "");
    let secret = organisation_with_secret(data);
    let daemon = Daemon::start(data);
    let work = tempdir();
    let w = work.path();
    let pbmac1: const_oid::ObjectIdentifier = "1.2.840.113549.1.5.14".parse().expect("OID");
    let send = |der: Vec<u8>| {
        let f = unique_path(w, "req", "der");
        std::fs::write(&f, der).expect("write");
        post_der(&daemon, "devices", &f)
    };

    let v = send(pbmac1_ir(&secret, "Cảm biến PBMAC1"));
    assert_eq!(v.body_tag, 1, "ip: {}", v.status_text());
    assert_eq!(v.protection_oid(), Some(pbmac1), "answered with PBMAC1");
    v.verify_mac(secret.as_bytes())
        .expect("the ip's MAC verifies");
    assert!(v.implicit_confirm);
    let cert = v.certificate.expect("certificate");
    assert_eq!(status_of(data, &serial_of(&cert)), "valid");

    // The wrong secret: badMessageCheck, unprotected (the MAC never verified).
    let v = send(pbmac1_ir("not-the-secret", "wrong"));
    assert_error(&v, FailureBit::BadMessageCheck, "a wrong PBMAC1 secret");
    assert!(!v.is_protected());
}

/// A PEM private key as PKCS#8 DER (`openssl pkcs8 -topk8 -nocrypt -outform DER`).
fn pkcs8_der(w: &Path, key: &Path) -> Vec<u8> {
    let out = unique_path(w, "key", "p8");
    openssl_ok(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        path_str(key),
        "-outform",
        "DER",
        "-out",
        path_str(&out),
    ]);
    std::fs::read(&out).expect("pkcs8")
}

/// A P-256 RA certificate: issued by pkid (`pkid cert issue`, profile tls-client) when
/// `issuer` is None, else by that CA (certificate and key files) with `openssl x509 -req`. The
/// certificate file, its key file, the key as PKCS#8 DER and the certificate parsed.
fn ra_certificate(
    data: &Path,
    w: &Path,
    subject: &str,
    issuer: Option<(&Path, &Path)>,
) -> (PathBuf, PathBuf, Vec<u8>, x509_cert::Certificate) {
    let (key, csr) = make_csr(w, subject, "ec:P-256");
    let crt = match issuer {
        None => issue(data, &csr, "tls-client", &[]).1,
        Some((ca, ca_key)) => {
            let crt = unique_path(w, "ra", "crt");
            openssl_ok(&[
                "x509",
                "-req",
                "-in",
                path_str(&csr),
                "-CA",
                path_str(ca),
                "-CAkey",
                path_str(ca_key),
                "-set_serial",
                "7",
                "-days",
                "30",
                "-out",
                path_str(&crt),
            ]);
            crt
        }
    };
    let pkcs8 = pkcs8_der(w, &key);
    let cert = pem_certificate(&crt);
    (crt, key, pkcs8, cert)
}

/// `inner` messages in a `nested` body (PKIBody [20]) signed by `signer`; the message and its
/// header.
fn nested_by(
    inner: &[Vec<u8>],
    signer: (&x509_cert::Certificate, &[u8]),
) -> (Vec<u8>, pkid_protocols::cmp::ResponseHeader) {
    use der::Decode;
    let messages: Vec<der::Any> = inner
        .iter()
        .map(|m| der::Any::from_der(m).expect("a PKIMessage"))
        .collect();
    let header = fresh_header(Some(signer.0), false, unix_now());
    (signed_by(&header, 20, &messages, signer), header)
}

#[test]
fn an_ra_the_label_trusts_nests_requests_and_vouches_for_raverified() {
    let dir = init(&[]);
    let data = dir.path();
    let work = tempdir();
    let w = work.path();
    let (ra_crt, ra_key, ra_pkcs8, ra) = ra_certificate(
        data,
        w,
        "/CN=RA Sở Giáo dục Đà Nẵng/O=Sở Giáo dục và Đào tạo Đà Nẵng",
        None,
    );
    let (rogue_ca_key, rogue_ca) = self_signed_p256(w, "rogue-ca", "/CN=Rogue CA");
    let (rogue_crt, rogue_key, rogue_pkcs8, rogue) =
        ra_certificate(data, w, "/CN=RA giả mạo", Some((&rogue_ca, &rogue_ca_key)));
    // The pin as an operator copies it: `openssl x509 -noout -fingerprint -sha256` output.
    let fp = openssl_ok(&[
        "x509",
        "-noout",
        "-fingerprint",
        "-sha256",
        "-in",
        path_str(&ra_crt),
    ]);
    let fp = fp.trim();
    configure(
        data,
        &format!(
            "\n[[cmp.labels]]\nname = \"via-ra\"\nprofile = \"device\"\norganisation = \"{ORG}\"\ntrusted_ras = [\"{fp}\"]\n\n[[cmp.labels]]\nname = \"via-ra-held\"\nprofile = \"device\"\norganisation = \"{ORG}\"\napproval = \"operator\"\ntrusted_ras = [\"{fp}\"]\n"
        ),
    );
    let secret = organisation_with_secret(data);
    let daemon = Daemon::start(data);
    let server = daemon.http.to_string();
    let root = data.join("certs/root.crt");
    let send = |label: &str, der: &[u8]| {
        let f = unique_path(w, "req", "der");
        std::fs::write(&f, der).expect("write");
        post_der(&daemon, label, &f)
    };

    // Batching (RFC 9483 §5.2.2): two subscribers' irs, each MAC-protected with the
    // organisation's secret as `openssl cmp` made it, one with a wrong secret, and a nested
    // message inside, all in one nested message the RA signs. Each inner message is answered
    // as if it had come alone; the answers come back in order, in a nested reply the
    // responder signs, echoing the RA's transactionID and nonce.
    let first = offline_ir(w, &secret, "Máy trạm Phòng Kế hoạch 01");
    let second = offline_ir(w, &secret, "Máy trạm Phòng Kế hoạch 02");
    let wrong = offline_ir(w, "not-the-secret", "Máy trạm lạ");
    let (inner_nest, _) = nested_by(std::slice::from_ref(&first), (&ra, &ra_pkcs8));
    let (msg, header) = nested_by(&[first, second, wrong, inner_nest], (&ra, &ra_pkcs8));
    let v = send("via-ra", &msg);
    assert_eq!(v.body_tag, 20, "a nested reply: {}", v.status_text());
    let responder = v.extra_certs.first().expect("the responder").clone();
    v.verify_signature(&responder.tbs_certificate.subject_public_key_info)
        .expect("the nested reply is signed by the responder");
    assert_eq!(
        v.transaction_id.as_deref(),
        Some(&header.transaction_id[..])
    );
    assert_eq!(v.recip_nonce.as_deref(), Some(&header.sender_nonce[..]));
    assert_eq!(
        v.sender,
        Some(x509_cert::ext::pkix::name::GeneralName::DirectoryName(
            responder.tbs_certificate.subject.clone()
        ))
    );
    assert_eq!(v.nested.len(), 4, "one answer per inner message");
    let answers: Vec<ResponseView> = v
        .nested
        .iter()
        .map(|m| parse_response(m).expect("an inner PKIMessage"))
        .collect();
    for (a, cn) in answers[..2].iter().zip(["01", "02"]) {
        assert_eq!(a.body_tag, 1, "ip {cn}: {}", a.status_text());
        a.verify_mac(secret.as_bytes())
            .expect("the inner answer is protected with the subscriber's secret");
        let cert = a.certificate.clone().expect("a certificate");
        assert!(
            cert.tbs_certificate
                .subject
                .to_string()
                .contains(&format!("Máy trạm Phòng Kế hoạch {cn}")),
            "{}",
            cert.tbs_certificate.subject
        );
        assert_eq!(
            status_of(data, &serial_of(&cert)),
            "valid",
            "stored before the answer"
        );
    }
    assert_error(
        &answers[2],
        FailureBit::BadMessageCheck,
        "a wrong secret inside",
    );
    assert!(!answers[2].is_protected());
    assert_error(
        &answers[3],
        FailureBit::BadRequest,
        "a nested message inside a nested one",
    );
    assert_eq!(counted(&daemon, "nested", "answered"), 1.0);
    assert_eq!(counted(&daemon, "ir", "answered"), 2.0);
    assert_eq!(counted(&daemon, "ir", "badMessageCheck"), 1.0);

    // raVerified (RFC 9483 §5.2.3.2, RFC 4211 §4): the RA checked the subscriber's POP and
    // signs the ir itself; `openssl cmp -popo 0` with the RA's certificate. Issued, the reply
    // signed by the responder, and the key is the subscriber's.
    let dev_key = p256_key(w);
    let dev_crt = unique_path(w, "dev", "crt");
    let ra_ir = |label: &str, signer: (&Path, &Path), cn: &str, out: &Path| {
        let subject = format!("/CN={cn}");
        openssl_cmp_signed(
            &server,
            label,
            signer,
            &root,
            &[
                "-cmd",
                "ir",
                "-popo",
                "0",
                "-newkey",
                path_str(&dev_key),
                "-subject",
                &subject,
                "-certout",
                path_str(out),
                "-implicit_confirm",
            ],
        )
    };
    let out = ra_ir("via-ra", (&ra_crt, &ra_key), "Máy chủ văn bản 01", &dev_crt);
    assert!(
        out.status.success(),
        "{}\n{}",
        all_output(&out),
        daemon.logs()
    );
    assert_eq!(
        public_key_of_cert(&dev_crt),
        openssl_ok(&["pkey", "-in", path_str(&dev_key), "-pubout"])
    );
    assert!(x509_subject(&dev_crt).contains("Máy chủ văn bản 01"));
    assert_verifies(data, &dev_crt, &[]);

    // The same from a certificate the label does not trust: signerNotTrusted, and nothing
    // issued. Under a label that holds requests for an operator, raVerified is badPOP (the
    // held request is checked again at approval by its own signature).
    let refused = unique_path(w, "refused", "crt");
    let out = ra_ir("via-ra", (&rogue_crt, &rogue_key), "Máy giả", &refused);
    // The error is unprotected (the signer is nobody pkid trusts), which OpenSSL reports as
    // "missing protection"; the server's count names the bit.
    assert!(!out.status.success(), "{}", all_output(&out));
    assert_eq!(counted(&daemon, "ir", "signerNotTrusted"), 1.0);
    let out = ra_ir("via-ra-held", (&ra_crt, &ra_key), "Máy chờ duyệt", &refused);
    let text = all_output(&out);
    assert!(!out.status.success() && text.contains("badPOP"), "{text}");
    assert!(!refused.exists());

    // Nesting is the RA's alone: a nested message from an untrusted signer is
    // signerNotTrusted; one MAC-protected with the organisation's secret is notAuthorized.
    let third = offline_ir(w, &secret, "Máy trạm 03");
    let (msg, _) = nested_by(std::slice::from_ref(&third), (&rogue, &rogue_pkcs8));
    assert_error(
        &send("via-ra", &msg),
        FailureBit::SignerNotTrusted,
        "an untrusted RA",
    );
    let mac_nested = {
        use der::Decode;
        use pkid_protocols::cmp::{encode_request, Pbm, ResponseProtection};
        let header = fresh_header(None, false, unix_now());
        let pbm = Pbm::sha256(&header.sender_nonce, 500).expect("PBM");
        encode_request(
            &header,
            20,
            &vec![der::Any::from_der(&third).expect("any")],
            ResponseProtection::Mac {
                pbm: &pbm,
                secret: secret.as_bytes(),
            },
            Vec::new(),
        )
        .expect("nested")
    };
    let v = send("via-ra", &mac_nested);
    assert_error(
        &v,
        FailureBit::NotAuthorized,
        "a MAC-protected nested message",
    );
    v.verify_mac(secret.as_bytes())
        .expect("protected: the MAC verified");

    // A subscriber's own certificate (issued above) may sign its requests, not nest others'.
    let dev = pem_certificate(&dev_crt);
    let (msg, _) = nested_by(
        std::slice::from_ref(&third),
        (&dev, &pkcs8_der(w, &dev_key)),
    );
    assert_error(
        &send("via-ra", &msg),
        FailureBit::NotAuthorized,
        "a subscriber nesting",
    );

    // A kur is the subscriber's to sign: from the RA it is notAuthorized.
    let out = openssl_cmp_signed(
        &server,
        "via-ra",
        (&ra_crt, &ra_key),
        &root,
        &[
            "-cmd",
            "kur",
            "-newkey",
            path_str(&p256_key(w)),
            "-oldcert",
            path_str(&dev_crt),
            "-certout",
            path_str(&refused),
        ],
    );
    let text = all_output(&out);
    assert!(
        !out.status.success() && text.contains("notAuthorized"),
        "{text}"
    );

    // The RA's certificate revoked: its next message is notAuthorized.
    revoke(data, &x509_serial(&ra_crt), "keyCompromise");
    let (msg, _) = nested_by(std::slice::from_ref(&third), (&ra, &ra_pkcs8));
    assert_error(
        &send("via-ra", &msg),
        FailureBit::NotAuthorized,
        "a revoked RA",
    );

    assert_eq!(get(&daemon.http_url("/healthz")).status, 200);
    assert!(!daemon.logs().contains(&secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cmp_responder_certificate_is_replaced_when_revoked_or_near_its_end() {
    use pkid::clock::{Clock, FakeClock, SystemClock};
    use std::sync::Arc;
    let dir = init(&[]);
    let data = dir.path();
    configure(data, "");
    organisation_with_secret(data);
    let work = tempdir();
    let w = work.path();
    // A device certificate of the organisation: it signs genm requests, answered signed.
    let (key, csr) = make_csr(w, &format!("/O={ORG_NAME}/CN=Thiết bị 09"), "ec:P-256");
    let (_, crt) = issue(data, &csr, "device", &[]);
    let dev = pem_certificate(&crt);
    let pkcs8 = pkcs8_der(w, &key);
    let clock = Arc::new(FakeClock::new(SystemClock.now()));
    let app = build_app(data, clock.clone()).await;
    let router = app.routers().http;
    let ask = || {
        let header = fresh_header(Some(&dev), false, clock.now());
        let itavs = vec![itav("1.3.6.1.5.5.7.4.17", None)];
        signed_by(&header, 21, &itavs, (&dev, &pkcs8))
    };
    // The responder that signed the genp, its signature checked.
    let responder = |v: &ResponseView| {
        assert_eq!(v.body_tag, 22, "genp: {}", v.status_text());
        let r = v.extra_certs.first().expect("the responder").clone();
        v.verify_signature(&r.tbs_certificate.subject_public_key_info)
            .expect("signed by the responder it names");
        r
    };
    let first = responder(&post_inprocess(&router, "devices", ask()).await);
    let first_serial = serial_of(&first);
    assert_eq!(status_of(data, &first_serial), "valid");

    // Revoked (superseded): within a minute the next answer comes from a new certificate for
    // the same key.
    revoke(data, &first_serial, "superseded");
    clock.advance(61);
    let second = responder(&post_inprocess(&router, "devices", ask()).await);
    assert_ne!(serial_of(&second), first_serial);
    assert_eq!(
        second.tbs_certificate.subject_public_key_info,
        first.tbs_certificate.subject_public_key_info
    );
    assert_eq!(status_of(data, &serial_of(&second)), "valid");
    let file = pem_certificate(&data.join("certs/cmp-issuing.crt"));
    assert_eq!(serial_of(&file), serial_of(&second), "installed in certs/");

    // Two thirds of its validity later it is renewed before a client sees it expire. (The
    // device certificate is valid for longer.)
    let validity = &second.tbs_certificate.validity;
    let life = validity.not_after.to_unix_duration().as_secs()
        - validity.not_before.to_unix_duration().as_secs();
    clock.advance(life * 2 / 3 + 120);
    let third = responder(&post_inprocess(&router, "devices", ask()).await);
    assert_ne!(serial_of(&third), serial_of(&second));
    assert!(
        third.tbs_certificate.validity.not_after.to_unix_duration()
            > validity.not_after.to_unix_duration()
    );

    // Revoked for keyCompromise: the key is not certified again; signed answers stop (an
    // unprotected systemUnavail) until an operator replaces the key.
    revoke(data, &serial_of(&third), "keyCompromise");
    clock.advance(61);
    let v = post_inprocess(&router, "devices", ask()).await;
    assert_error(&v, FailureBit::SystemUnavail, "a compromised responder key");
    assert!(!v.is_protected());
    assert!(
        v.status_text().contains("keyCompromise"),
        "{}",
        v.status_text()
    );
}
