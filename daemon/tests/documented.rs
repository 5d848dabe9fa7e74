//! What the operator documentation promises, checked against the daemon (issue 10, item 13):
//! the exit code of an unset PIN variable (docs/operations.md) and `thisUpdate` of a fresh
//! revocation (docs/ocsp.md, "RFC choices").
//!
//! ```text
//!  pkid init --pin-env UNSET ─▶ exit 3, one line, nothing left behind
//!  pkid cert revoke (now) ─▶ App on a FakeClock at now ─▶ GET /ocsp ─▶ revoked,
//!      revocationTime ≤ thisUpdate ≤ producedAt (a good answer keeps its 5-minute back-dating)
//! ```

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use common::*;
use der::Decode;
use http_body_util::BodyExt;
use hyper::Request;
use pkid::app::App;
use pkid::clock::{Clock, FakeClock, SystemClock};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

#[test]
fn an_unset_pin_variable_is_a_configuration_error_exit_3_and_leaves_nothing() {
    let parent = tempdir();
    let data = parent.path().join("data");
    let (code, _out, err) = pkid_fails(
        &data,
        &[
            "init",
            "--key-backend",
            "pkcs11",
            "--pkcs11-module",
            SOFTHSM_MODULE,
            "--pin-env",
            "PKID_TEST_PIN_THAT_IS_NOT_SET",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        one_error_line(&err).contains("the PIN variable PKID_TEST_PIN_THAT_IS_NOT_SET is not set"),
        "{err}"
    );
    assert!(
        !data.join("pkid.toml").exists(),
        "init leaves nothing behind"
    );
}

/// (producedAt, thisUpdate, revocationTime if revoked) of a one-answer OCSP response.
fn times(der: &[u8]) -> (u64, u64, Option<u64>) {
    let resp = x509_ocsp::OcspResponse::from_der(der).expect("OCSPResponse");
    let bytes = resp.response_bytes.expect("successful");
    let basic = x509_ocsp::BasicOcspResponse::from_der(bytes.response.as_bytes()).expect("basic");
    let data = &basic.tbs_response_data;
    let single = &data.responses[0];
    let revoked = match &single.cert_status {
        x509_ocsp::CertStatus::Revoked(info) => {
            Some(info.revocation_time.0.to_unix_duration().as_secs())
        }
        _ => None,
    };
    (
        data.produced_at.0.to_unix_duration().as_secs(),
        single.this_update.0.to_unix_duration().as_secs(),
        revoked,
    )
}

fn ocsp_path(data: &Path, work: &Path, leaf: &Path) -> String {
    let req = unique_path(work, "req", "der");
    openssl_ok(&[
        "ocsp",
        "-issuer",
        path_str(&data.join("certs/issuing.crt")),
        "-cert",
        path_str(leaf),
        "-no_nonce",
        "-reqout",
        path_str(&req),
    ]);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(read(&req));
    format!(
        "/ocsp/{}",
        b64.replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_revocation_is_never_dated_after_this_update() {
    let data = init(&[]);
    let d = data.path();
    let work = tempdir();
    let (_k1, csr1) = make_csr(work.path(), "/C=VN/O=Sở Tư pháp/CN=Võ Thị Sáu", "ec:P-256");
    let (_k2, csr2) = make_csr(work.path(), "/C=VN/O=Sở Tư pháp/CN=Hồ Văn Nam", "ec:P-256");
    let (revoked, revoked_pem) = issue(d, &csr1, "person", &[]);
    let (_good, good_pem) = issue(d, &csr2, "person", &[]);
    revoke(d, &revoked, "keyCompromise");

    // The daemon at the time of the revocation (the CLI stamped it with the system clock).
    let clock = Arc::new(FakeClock::new(SystemClock.now()));
    let app = {
        let data = d.to_path_buf();
        let clock = clock.clone();
        tokio::task::spawn_blocking(move || App::build(&data, clock, |_| {}))
            .await
            .expect("build task")
            .expect("app")
    };
    let router = app.routers().https;
    let fetch = |path: String| {
        let router = router.clone();
        async move {
            let mut req = Request::builder()
                .uri(path)
                .body(Body::empty())
                .expect("request");
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
            let resp = router.oneshot(req).await.expect("infallible");
            resp.into_body().collect().await.expect("body").to_bytes()
        }
    };

    let (produced, this_update, revoked_at) =
        times(&fetch(ocsp_path(d, work.path(), &revoked_pem)).await);
    let revoked_at = revoked_at.expect("revoked");
    assert!(
        revoked_at <= this_update && this_update <= produced,
        "revocationTime {revoked_at} ≤ thisUpdate {this_update} ≤ producedAt {produced}"
    );
    // A good answer keeps the documented back-dating for clients whose clocks are behind.
    let (produced, this_update, none) = times(&fetch(ocsp_path(d, work.path(), &good_pem)).await);
    assert_eq!(none, None);
    assert_eq!(produced - this_update, 300);
}
