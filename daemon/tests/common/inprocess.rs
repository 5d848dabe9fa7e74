//! The daemon in-process: `pkid::app::App` built on a `FakeClock` and driven through its
//! routers with `oneshot` (no socket), plus the OCSP request and response helpers the
//! in-process suites share.

use super::{openssl_ok, path_str, read, unique_path};
use axum::body::Body;
use axum::extract::ConnectInfo;
use der::Decode;
use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use pkid::app::App;
use pkid::clock::FakeClock;
use pkid::http::Listener;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

/// `App::build` on `clock` with the data directory's own configuration (on a blocking thread,
/// as the daemon does).
pub async fn build_app(data: &Path, clock: Arc<FakeClock>) -> App {
    let data = data.to_path_buf();
    tokio::task::spawn_blocking(move || App::build(&data, clock, |_| {}))
        .await
        .expect("build task")
        .expect("app")
}

/// GET `path` through `router`, from a loopback client address; (status, body).
pub async fn get(router: &Listener, path: &str) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder()
        .uri(path)
        .body(Body::empty())
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body.to_vec())
}

/// The `GET /ocsp/{request}` path of a nonce-less request made by `openssl ocsp` under the
/// issuing CA; `which` names the certificate: `["-cert", PATH]` or `["-serial", "0xHEX"]`.
pub fn ocsp_get_path(data: &Path, work: &Path, which: [&str; 2]) -> String {
    let req = unique_path(work, "req", "der");
    openssl_ok(&[
        "ocsp",
        "-issuer",
        path_str(&data.join("certs/issuing.crt")),
        which[0],
        which[1],
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

/// The one answer of a successful OCSP response, times in Unix seconds.
#[derive(Debug)]
pub struct SingleAnswer {
    /// producedAt.
    pub produced_at: u64,
    /// thisUpdate.
    pub this_update: u64,
    /// nextUpdate.
    pub next_update: u64,
    /// `good`, `revoked` or `unknown`.
    pub status: &'static str,
    /// revocationTime, when revoked.
    pub revoked_at: Option<u64>,
}

/// Decodes a one-answer OCSP response.
pub fn ocsp_single(der: &[u8]) -> SingleAnswer {
    let resp = x509_ocsp::OcspResponse::from_der(der).expect("OCSPResponse");
    let bytes = resp.response_bytes.expect("successful");
    let basic = x509_ocsp::BasicOcspResponse::from_der(bytes.response.as_bytes()).expect("basic");
    let data = &basic.tbs_response_data;
    let single = &data.responses[0];
    let unix = |t: &der::asn1::GeneralizedTime| t.to_unix_duration().as_secs();
    let (status, revoked_at) = match &single.cert_status {
        x509_ocsp::CertStatus::Good(_) => ("good", None),
        x509_ocsp::CertStatus::Revoked(info) => ("revoked", Some(unix(&info.revocation_time.0))),
        x509_ocsp::CertStatus::Unknown(_) => ("unknown", None),
    };
    SingleAnswer {
        produced_at: unix(&data.produced_at.0),
        this_update: unix(&single.this_update.0),
        next_update: unix(&single.next_update.as_ref().expect("nextUpdate").0),
        status,
        revoked_at,
    }
}
