//! Peer faults do not flood the log, in-process: `pkid::app::App` driven through its router on
//! a current-thread runtime, with a tracing subscriber that captures every line.
//!
//! ```text
//!  N malformed OCSP POSTs, undecodable GETs, wrong media types ─▶ counted in metrics, N each
//!  N malformed TSA queries, wrong media types                  ─▶ counted in metrics, N each
//!  log: at most one INFO line per kind per 10 s, carrying the count since the last one
//! ```

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use common::*;
use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use pkid::app::App;
use pkid::clock::SystemClock;
use pkid::http::Listener;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tower::ServiceExt;

/// Requests of each kind.
const N: usize = 300;

/// A `MakeWriter` that appends every line to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture")).into_owned()
    }
}

async fn call(router: &Listener, method: &str, path: &str, ct: &str, body: &[u8]) -> StatusCode {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(Body::from(body.to_vec()))
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let _ = resp.into_body().collect().await.expect("body");
    status
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(str::trim))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "current_thread")]
async fn malformed_requests_are_counted_and_logged_as_a_rate_limited_summary() {
    let data = init(&[]);
    let d = data.path();
    let app = App::build(d, Arc::new(SystemClock), |c| c.server.rate_limit = None).expect("app");
    let router = app.routers().http;

    let capture = Capture::default();
    let sink = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let started = Instant::now();
    for i in 0..N {
        let junk = [0x30, 0x03, 0x02, 0x01, i as u8];
        let ocsp = "application/ocsp-request";
        let tsq = "application/timestamp-query";
        assert_eq!(call(&router, "POST", "/ocsp", ocsp, &junk).await, 200);
        assert_eq!(call(&router, "GET", "/ocsp/%2B%2B!", ocsp, b"").await, 200);
        assert_eq!(
            call(&router, "POST", "/ocsp", "text/plain", &junk).await,
            415
        );
        assert_eq!(call(&router, "POST", "/tsa", tsq, &junk).await, 200);
        assert_eq!(
            call(&router, "POST", "/tsa", "text/plain", &junk).await,
            415
        );
    }
    let elapsed = started.elapsed().as_secs();

    let metrics = String::from_utf8(app.state().metrics.render()).expect("utf-8");
    assert_eq!(
        metric(
            &metrics,
            "pkid_ocsp_responses_total{status=\"malformedRequest\"}"
        ),
        2 * N as u64,
        "malformed POST bodies and undecodable GET paths"
    );
    assert_eq!(
        metric(
            &metrics,
            "pkid_tsa_rejections_total{fail_info=\"badRequest\"}"
        ),
        N as u64
    );
    assert_eq!(
        metric(
            &metrics,
            "pkid_http_requests_total{route=\"ocsp\",status=\"415\"}"
        ),
        N as u64
    );

    // Five kinds of fault; each may log one INFO line per 10 s, the first at once.
    let log = capture.text();
    let info: Vec<&str> = log.lines().filter(|l| l.contains(" INFO ")).collect();
    let most = 5 * (1 + elapsed as usize / 10);
    assert!(
        info.len() <= most,
        "{} INFO lines for {} faults in {elapsed} s (at most {most}):\n{}",
        info.len(),
        5 * N,
        info.join("\n")
    );
    assert!(
        info.iter()
            .any(|l| l.contains("OCSP") && l.contains("malformedRequest")),
        "the first fault of a kind is logged at once:\n{log}"
    );
    assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "{log}");
}
