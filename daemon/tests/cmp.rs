//! CMP (RFC 9810 / RFC 9483 over RFC 9811 HTTP) end to end: the real daemon on loopback,
//! driven with the real `openssl cmp` client. ir with PBM (OpenSSL 3.0's default HMAC-SHA1
//! and `-mac hmacWithSHA256`), implicit confirm, certConf/pkiConf, cr and p10cr, over HTTP and
//! HTTPS; the certificate stored before the answer, the chain in caPubs/extraCerts; every
//! negative case a protected (or, before the MAC verified, unprotected) `error` PKIMessage with
//! its PKIFailureInfo bit: wrong secret, unknown senderKID, reused transactionID (a replayed ir),
//! a replayed certConf, raVerified/absent POP, a rejected certConf (the certificate revoked),
//! MAC on a signature-only label, an unknown label, garbage; 415/405/413 at the HTTP layer;
//! and, in-process on a fake clock, a stale messageTime and a certConf that never comes (the
//! certificate revoked after the timeout). The daemon keeps serving throughout.

mod common;

use common::inprocess::build_app;
use common::*;
use pkid_protocols::cmp::{parse_response, FailureBit, ResponseView};
use std::path::{Path, PathBuf};
use std::process::Output;

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
    let other = at("other", "pem");
    openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        path_str(&at("other", "key")),
        "-subj",
        "/CN=Someone else",
        "-out",
        path_str(&other),
    ]);
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
