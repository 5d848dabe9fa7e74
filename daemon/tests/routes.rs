//! In-process tests of both routers: every route's status codes, content types and error
//! bodies, driven with `tower::ServiceExt::oneshot` — no socket, no daemon process. The state is
//! built by `pkid::app::App::build` from a data directory made by `pkid init`.

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;

use common::*;
use http_body_util::BodyExt;
use hyper::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Request, StatusCode};
use pkid::app::App;
use pkid::clock::SystemClock;
use pkid::config::RateLimit;
use pkid::http::{ClientIdentity, Listener, Routers};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

/// An answer, read whole.
struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status and the whole (text) body.
    fn expect(&self, status: StatusCode, body: &str) {
        assert_eq!((self.status, self.text().as_str()), (status, body));
    }
}

async fn send(router: &Listener, req: Request<Body>) -> Answer {
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn request(method: &str, path: &str) -> hyper::http::request::Builder {
    Request::builder().method(method).uri(path)
}

async fn get(router: &Listener, path: &str) -> Answer {
    send(
        router,
        request("GET", path).body(Body::empty()).expect("request"),
    )
    .await
}

async fn post(router: &Listener, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
    let req = request("POST", path)
        .header(CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("request");
    send(router, req).await
}

/// A data directory and the routers over it, with `adjust` applied to its configuration.
fn app(adjust: impl FnOnce(&mut pkid::config::Config)) -> (tempfile::TempDir, Routers) {
    let dir = init(&[]);
    let app = App::build(dir.path(), std::sync::Arc::new(SystemClock), adjust).expect("app");
    (dir, app.routers())
}

/// `openssl ts -query` over a few bytes.
fn timestamp_query(data: &Path) -> Vec<u8> {
    let doc = unique_path(data, "doc", "txt");
    std::fs::write(&doc, b"a document").expect("write");
    let out = unique_path(data, "query", "tsq");
    openssl_ok(&[
        "ts",
        "-query",
        "-data",
        path_str(&doc),
        "-sha256",
        "-cert",
        "-out",
        path_str(&out),
    ]);
    std::fs::read(out).expect("query")
}

/// `OCSPResponse.responseStatus` of a DER OCSP response: `SEQUENCE { ENUMERATED … }`.
fn ocsp_status(der: &[u8]) -> u8 {
    let at = if der[1] & 0x80 != 0 {
        2 + usize::from(der[1] & 0x7f)
    } else {
        2
    };
    assert_eq!(&der[at..at + 2], &[0x0a, 0x01], "ENUMERATED: {der:02x?}");
    der[at + 2]
}

#[tokio::test]
async fn every_status_route_answers_with_its_status_type_and_body() {
    let (dir, Routers { http, https }) = app(|_| {});
    let data = dir.path();

    for router in [&http, &https] {
        let r = get(router, "/healthz").await;
        r.expect(StatusCode::OK, "ok\n");
        assert_eq!(r.content_type(), "text/plain; charset=utf-8");
        let r = get(router, "/readyz").await;
        r.expect(StatusCode::OK, "ready\n");
    }

    // CA certificates, DER and PEM; an unknown CA; a name with neither suffix.
    let r = get(&http, "/ca/root.crt").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/pkix-cert");
    assert_eq!(r.body.first(), Some(&0x30), "DER");
    let r = get(&http, "/ca/issuing.pem").await;
    assert_eq!(r.content_type(), "application/x-pem-file");
    assert!(r.text().starts_with("-----BEGIN CERTIFICATE-----"));
    let r = get(&http, "/ca/nobody.crt").await;
    r.expect(StatusCode::NOT_FOUND, "no such CA\n");
    assert_eq!(
        get(&http, "/ca/root.der").await.status,
        StatusCode::NOT_FOUND
    );

    // The certificate repository: the TLS certificate pkid issued at init.
    let tls_cert = data.join("certs/tls.crt");
    let serial = canonical_serial(&x509_serial(&tls_cert));
    let r = get(&http, &format!("/certs/{serial}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.content_type(), "application/pkix-cert");
    let r = get(&http, &format!("/certs/{serial}.pem")).await;
    assert_eq!(r.content_type(), "application/x-pem-file");
    let r = get(&http, "/certs/not-hex").await;
    r.expect(StatusCode::NOT_FOUND, "not a serial number\n");
    assert_eq!(
        get(&http, "/certs/7f7f7f7f").await.status,
        StatusCode::NOT_FOUND
    );

    // CRLs.
    let r = get(&http, "/crl/issuing.crl").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/pkix-crl");
    let r = get(&http, "/crl/nobody.crl").await;
    r.expect(StatusCode::NOT_FOUND, "no such CRL\n");

    // OCSP: POST and GET of a good request; malformed ones answer malformedRequest (1) with
    // HTTP 200; a wrong media type is an HTTP fault.
    let req = ocsp_request(data, &tls_cert);
    let r = post(&http, "/ocsp", "application/ocsp-request", req.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/ocsp-response");
    assert_eq!(ocsp_status(&r.body), 0, "successful");
    let b64 = base64_standard(&req);
    let r = get(&http, &format!("/ocsp/{}", b64.replace('/', "%2F"))).await;
    assert_eq!((r.status, ocsp_status(&r.body)), (StatusCode::OK, 0));
    let r = get(&http, &format!("/ocsp/{b64}")).await;
    assert_eq!((r.status, ocsp_status(&r.body)), (StatusCode::OK, 0));
    for bad in ["/ocsp/", "/ocsp/!!not-base64!!", "/ocsp/AAAA//AA"] {
        let r = get(&http, bad).await;
        assert_eq!(
            (r.status, ocsp_status(&r.body)),
            (StatusCode::OK, 1),
            "{bad}"
        );
    }
    let r = post(
        &http,
        "/ocsp",
        "application/ocsp-request",
        b"garbage".to_vec(),
    )
    .await;
    assert_eq!((r.status, ocsp_status(&r.body)), (StatusCode::OK, 1));
    let r = post(&http, "/ocsp", "text/plain", req.clone()).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.text(), "Content-Type must be application/ocsp-request\n");
    let r = post(&http, "/ocsp", "application/ocsp-request", vec![0x30; 9000]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.text().starts_with("OCSP requests are limited to "),
        "{}",
        r.text()
    );

    // Timestamps: a granted token, a rejection (badDataFormat for garbage), HTTP faults.
    let q = timestamp_query(data);
    let r = post(&http, "/tsa", "application/timestamp-query", q.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/timestamp-reply");
    // TimeStampResp { status PKIStatusInfo { status 0 (granted) } … }
    assert!(
        r.body.windows(3).any(|w| w == [0x02, 0x01, 0x00]),
        "granted"
    );
    let r = post(
        &http,
        "/tsa",
        "application/timestamp-query",
        b"junk".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/timestamp-reply");
    assert!(
        r.body.windows(3).any(|w| w == [0x02, 0x01, 0x02]),
        "rejection"
    );
    let r = post(&http, "/tsa", "application/json", q.clone()).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = get(&http, "/tsa").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.headers.get(ALLOW).map(|v| v.as_bytes()),
        Some(&b"POST"[..])
    );
    assert_eq!(
        r.text(),
        "use POST with Content-Type application/timestamp-query\n"
    );

    // Metrics: the route label is the matched route, counted by status.
    let r = get(&http, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "text/plain; version=0.0.4");
    let m = r.text();
    for series in [
        r#"pkid_http_requests_total{route="ocsp",status="200"}"#,
        r#"pkid_http_requests_total{route="ocsp",status="415"}"#,
        r#"pkid_http_requests_total{route="tsa",status="405"}"#,
        r#"pkid_http_requests_total{route="ca",status="404"}"#,
        r#"pkid_http_requests_total{route="certs",status="200"}"#,
        r#"pkid_http_requests_total{route="crl",status="200"}"#,
        r#"pkid_http_requests_total{route="healthz",status="200"}"#,
        r#"pkid_http_request_duration_seconds_count{route="ocsp"}"#,
    ] {
        assert!(m.contains(series), "{series} missing from\n{m}");
    }
}

/// base64 (standard alphabet, padded) without a client crate: the request is small.
fn base64_standard(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn wrong_methods_unknown_paths_and_head() {
    let (dir, Routers { http, .. }) = app(|_| {});
    for (method, path, allow) in [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/ca/root.crt", "GET, HEAD"),
        ("PUT", "/crl/issuing.crl", "GET, HEAD"),
        ("POST", "/ocsp/AAAA", "GET, HEAD"),
        ("GET", "/ocsp", "POST"),
        ("PUT", "/ocsp", "POST"),
        ("POST", "/metrics", "GET, HEAD"),
    ] {
        let r = send(
            &http,
            request(method, path).body(Body::empty()).expect("request"),
        )
        .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(
            r.headers.get(ALLOW).and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
    }
    let r = get(&http, "/no/such/route").await;
    r.expect(StatusCode::NOT_FOUND, "not found\n");
    // HEAD works wherever GET does, with the GET's status and headers and no body.
    let r = send(
        &http,
        request("HEAD", "/ca/root.crt")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/pkix-cert");
    let r = send(
        &http,
        request("HEAD", "/healthz")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // HEAD on the OCSP fast path too.
    let req = ocsp_request(dir.path(), &dir.path().join("certs/tls.crt"));
    let path = format!("/ocsp/{}", base64_standard(&req).replace('/', "%2F"));
    let r = send(
        &http,
        request("HEAD", &path).body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/ocsp-response");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_declared_or_chunked() {
    let (dir, Routers { http, .. }) = app(|c| c.server.max_body_bytes = 4096);
    // Declared: refused before a byte is read (the body here is empty: a liar).
    let req = request("POST", "/tsa")
        .header(CONTENT_TYPE, "application/timestamp-query")
        .header(CONTENT_LENGTH, "1000000000000")
        .body(Body::empty())
        .expect("request");
    let r = send(&http, req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.text(), "request body is over the 4096-byte limit\n");
    // No Content-Length (as chunked): cut off once it passes the limit, on a route whose own
    // limit is larger.
    let req = request("POST", "/tsa")
        .header(CONTENT_TYPE, "application/timestamp-query")
        .body(Body::from(vec![0u8; 8192]))
        .expect("request");
    let r = send(&http, req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    // Within the limit, chunked, still served.
    let q = timestamp_query(dir.path());
    let req = request("POST", "/tsa")
        .header(CONTENT_TYPE, "application/timestamp-query")
        .body(Body::from(q))
        .expect("request");
    assert_eq!(send(&http, req).await.status, StatusCode::OK);
    // The OCSP fast path, in front of the body limit, keeps the listener's limit where it is
    // below OCSP's own 8 KiB: a 5000-byte POST without Content-Length is refused, not parsed.
    let req = request("POST", "/ocsp")
        .header(CONTENT_TYPE, "application/ocsp-request")
        .body(Body::from(vec![0x30u8; 5000]))
        .expect("request");
    let r = send(&http, req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert!(r.text().contains("4096 bytes"), "{}", r.text());
    let r = send(
        &http,
        request("POST", "/ocsp")
            .header(CONTENT_LENGTH, "lots")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let m = get(&http, "/metrics").await.text();
    assert!(
        m.contains(r#"pkid_http_requests_total{route="too_large",status="413"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn the_rate_limit_is_per_client_address_with_retry_after() {
    let (_dir, Routers { http, .. }) = app(|c| {
        c.server.rate_limit = Some(RateLimit {
            per_second: NonZeroU32::new(1).expect("1"),
            burst: NonZeroU32::new(2).expect("2"),
        })
    });
    let from = |addr: &str| {
        let mut req = request("GET", "/healthz")
            .body(Body::empty())
            .expect("request");
        req.extensions_mut()
            .insert(ConnectInfo(addr.parse::<SocketAddr>().expect("addr")));
        req
    };
    assert_eq!(
        send(&http, from("192.0.2.1:1000")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&http, from("192.0.2.1:1001")).await.status,
        StatusCode::OK
    );
    let r = send(&http, from("192.0.2.1:1002")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.text(), "rate limit exceeded\n");
    let wait: u64 = r
        .headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("numeric Retry-After");
    assert!(wait >= 1);
    // Another address has its own budget.
    assert_eq!(
        send(&http, from("192.0.2.2:1000")).await.status,
        StatusCode::OK
    );
    let m = send(&http, from("192.0.2.3:1")).await;
    assert_eq!(m.status, StatusCode::OK);
}

#[tokio::test]
async fn only_https_requests_carry_a_client_identity() {
    let (_dir, Routers { http, https }) = app(|_| {});
    // The plain listener has no enrollment plane at all.
    assert_eq!(get(&http, "/whoami").await.status, StatusCode::NOT_FOUND);
    let r = get(&https, "/whoami").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.text(), "no client certificate was presented\n");
    let leaf = rustls::pki_types::CertificateDer::from(vec![0x30, 0x00]);
    let identity = ClientIdentity {
        leaf: leaf.clone(),
        chain: Arc::from(vec![leaf]),
        issuer: "issuing".into(),
        serial: "1f".into(),
        subject: "CN=client".into(),
    };
    let mut req = request("GET", "/whoami")
        .body(Body::empty())
        .expect("request");
    req.extensions_mut().insert(identity);
    let r = send(&https, req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.text(),
        "subject: CN=client\nissuer: issuing\nserial: 1f\nchain: 1 certificates\n"
    );
    // The status plane is the same on both listeners.
    assert_eq!(get(&https, "/ca/root.crt").await.status, StatusCode::OK);
}
