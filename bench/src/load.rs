//! A closed-loop HTTP/1.1 load generator for loopback targets.
//!
//! `connections` workers each send a request, wait for the whole response, record the latency,
//! and send the next, for a fixed duration. With keep-alive each worker reuses one connection;
//! without, it opens a new TCP connection per request (the RFC 5019 "one request per
//! connection" client). It runs on the calling thread's runtime, so on a 2-core machine the
//! generator takes one core and the server under test the other — the same for every target
//! measured in a run, which is what makes the ratios fair.
//!
//! Requests are bounded in count and time: at most `max_requests`, and `duration`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// One request to send (workers cycle through a list of these).
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    /// GET or POST.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Content-Type, for POST.
    pub content_type: Option<&'static str>,
    /// Body, for POST.
    pub body: Bytes,
}

impl RequestTemplate {
    /// A GET of `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            content_type: None,
            body: Bytes::new(),
        }
    }

    /// A POST of `body` to `path`.
    pub fn post(
        path: impl Into<String>,
        content_type: &'static str,
        body: impl Into<Bytes>,
    ) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            content_type: Some(content_type),
            body: body.into(),
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Target (loopback only).
    pub addr: SocketAddr,
    /// Concurrent connections.
    pub connections: usize,
    /// How long to send.
    pub duration: Duration,
    /// Discarded warm-up before measuring.
    pub warmup: Duration,
    /// Reuse connections.
    pub keep_alive: bool,
    /// Hard cap on requests sent.
    pub max_requests: u64,
    /// Requests, cycled.
    pub requests: Arc<Vec<RequestTemplate>>,
}

/// What happened.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// Successful (2xx/3xx) responses in the measured window.
    pub ok: u64,
    /// Failed requests (connection errors, 4xx/5xx).
    pub errors: u64,
    /// Measured window.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl LoadReport {
    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn assert_loopback(addr: SocketAddr) {
    assert!(
        addr.ip().is_loopback(),
        "load is only ever sent to loopback addresses, not {addr}"
    );
}

/// Runs the load and returns the measured report.
pub async fn run(spec: LoadSpec) -> LoadReport {
    assert_loopback(spec.addr);
    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let mut tasks = Vec::new();
    for worker in 0..spec.connections {
        let spec = spec.clone();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            worker_loop(worker, spec, sent, measure_from, end).await
        }));
    }
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| unreachable!());
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        if let Ok((h, o, e)) = t.await {
            let _ = hist.add(&h);
            ok += o;
            errors += e;
        }
    }
    LoadReport {
        ok,
        errors,
        elapsed: spec.duration,
        p50: Duration::from_micros(hist.value_at_quantile(0.50)),
        p99: Duration::from_micros(hist.value_at_quantile(0.99)),
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A request not answered within this is counted as an error and its connection dropped, so a
/// stalled server cannot hang the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

async fn worker_loop(
    worker: usize,
    spec: LoadSpec,
    sent: Arc<AtomicU64>,
    measure_from: Instant,
    end: Instant,
) -> (hdrhistogram::Histogram<u64>, u64, u64) {
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| unreachable!());
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut sender: Option<Sender> = None;
    let mut i = worker;
    loop {
        let now = Instant::now();
        if now >= end || sent.fetch_add(1, Ordering::Relaxed) >= spec.max_requests {
            break;
        }
        let t = &spec.requests[i % spec.requests.len()];
        i += spec.connections;
        let mut b = Request::builder()
            .method(t.method.clone())
            .uri(&t.path)
            .header("host", "127.0.0.1");
        if let Some(ct) = t.content_type {
            b = b.header("content-type", ct);
        }
        if !spec.keep_alive {
            b = b.header("connection", "close");
        }
        let Ok(req) = b.body(Full::new(t.body.clone())) else {
            break;
        };
        let started = Instant::now();
        let exchange = async {
            if sender.as_ref().is_none_or(|s| s.is_closed()) || !spec.keep_alive {
                sender = connect(spec.addr).await;
            }
            match sender.as_mut() {
                Some(s) => match s.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body_ok = resp.into_body().collect().await.is_ok();
                        body_ok && (status.is_success() || status.is_redirection())
                    }
                    Err(_) => false,
                },
                None => false,
            }
        };
        let success = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_default();
        if !success {
            sender = None; // start over on a fresh connection
        }
        if started >= measure_from {
            if success {
                ok += 1;
                let _ = hist.record(started.elapsed().as_micros().max(1) as u64);
            } else {
                errors += 1;
            }
        }
    }
    (hist, ok, errors)
}
