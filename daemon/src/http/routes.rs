//! Routing, in one place. Handlers are thin: they adapt HTTP to the module that decides.

use super::AppState;
use crate::metrics::Metrics;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{Histogram, IntCounter};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// What every handler returns.
pub(crate) type Reply = Response<Full<Bytes>>;

/// Media type of DER certificates (RFC 2585).
const PKIX_CERT: &str = "application/pkix-cert";
/// Media type of PEM files.
const PEM: &str = "application/x-pem-file";

pub(crate) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> Reply {
    let mut m = msg.into();
    m.push('\n');
    reply(status, "text/plain; charset=utf-8", m)
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// What a request was routed to: the `route` label of the HTTP metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Healthz,
    Readyz,
    Metrics,
    Ocsp,
    Crl,
    Ca,
    Tsa,
    Certs,
    NotFound,
    RateLimited,
    TooLarge,
    BadRequest,
}

impl Route {
    /// Every route, in declaration order (`Route::X as usize` indexes it).
    const ALL: [Route; 12] = [
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Ocsp,
        Route::Crl,
        Route::Ca,
        Route::Tsa,
        Route::Certs,
        Route::NotFound,
        Route::RateLimited,
        Route::TooLarge,
        Route::BadRequest,
    ];

    fn name(self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::Ocsp => "ocsp",
            Route::Crl => "crl",
            Route::Ca => "ca",
            Route::Tsa => "tsa",
            Route::Certs => "certs",
            Route::NotFound => "not_found",
            Route::RateLimited => "rate_limited",
            Route::TooLarge => "too_large",
            Route::BadRequest => "bad_request",
        }
    }
}

/// The HTTP metrics of one route: handles for the common statuses and the latency, resolved
/// on first use (so no label hashing per request, and no series for pairs never seen).
#[derive(Default)]
struct RouteMetrics {
    ok: OnceLock<IntCounter>,
    not_modified: OnceLock<IntCounter>,
    duration: OnceLock<Histogram>,
}

/// Per-route HTTP metrics.
pub(crate) struct HttpMetrics {
    routes: [RouteMetrics; Route::ALL.len()],
    metrics: Arc<Metrics>,
}

impl HttpMetrics {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            routes: Default::default(),
            metrics,
        }
    }

    fn record(&self, route: Route, status: StatusCode, seconds: f64) {
        let requests = &self.metrics.http_requests;
        let name = route.name();
        let Some(m) = self.routes.get(route as usize) else {
            // Unreachable while `Route::ALL` lists every variant (a test checks it).
            requests.with_label_values(&[name, status.as_str()]).inc();
            return;
        };
        match status {
            StatusCode::OK => {
                m.ok.get_or_init(|| requests.with_label_values(&[name, "200"]))
                    .inc()
            }
            StatusCode::NOT_MODIFIED => m
                .not_modified
                .get_or_init(|| requests.with_label_values(&[name, "304"]))
                .inc(),
            other => requests.with_label_values(&[name, other.as_str()]).inc(),
        }
        m.duration
            .get_or_init(|| self.metrics.http_duration.with_label_values(&[name]))
            .observe(seconds);
    }
}

/// Entry point for every request on every listener.
pub(crate) async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Reply {
    let start = Instant::now();
    let (route, resp) = match admit(&state, &req, peer) {
        Some(refusal) => refusal,
        None => dispatch(&state, req).await,
    };
    let status = resp.status();
    state
        .http_metrics
        .record(route, status, start.elapsed().as_secs_f64());
    if status.is_server_error() {
        tracing::warn!(%peer, route = route.name(), status = status.as_u16(), "request failed");
    } else {
        tracing::debug!(%peer, route = route.name(), status = status.as_u16(), "request");
    }
    resp
}

/// Rate limit and declared body size, before any routing work.
fn admit(state: &AppState, req: &Request<Incoming>, peer: SocketAddr) -> Option<(Route, Reply)> {
    if let Some(limiter) = state.limiter.load().as_ref() {
        if let Err(not_until) = limiter.check_key(&peer.ip()) {
            state.metrics.rate_limited.inc();
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            let mut r = text(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
            // debug, not info: a flood of 429s must not become a flood of log lines.
            tracing::debug!(%peer, "rate limited");
            return Some((Route::RateLimited, r));
        }
    }
    let limit = state.config.load().server.max_body_bytes as u64;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.parse::<u64>());
    match declared {
        Some(Ok(n)) if n > limit => Some((
            Route::TooLarge,
            text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is over the {limit}-byte limit"),
            ),
        )),
        Some(Err(_)) => Some((
            Route::BadRequest,
            text(StatusCode::BAD_REQUEST, "invalid Content-Length"),
        )),
        _ => None,
    }
}

async fn dispatch(state: &Arc<AppState>, req: Request<Incoming>) -> (Route, Reply) {
    // A cheap clone (the path shares the request buffer), so the match can move `req`.
    let uri = req.uri().clone();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    match uri.path() {
        "/healthz" => (
            Route::Healthz,
            if get {
                text(StatusCode::OK, "ok")
            } else {
                method_not_allowed("GET, HEAD")
            },
        ),
        "/readyz" => (
            Route::Readyz,
            if get {
                readyz(state).await
            } else {
                method_not_allowed("GET, HEAD")
            },
        ),
        "/metrics" => (
            Route::Metrics,
            if get {
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    state.metrics.render(),
                )
            } else {
                method_not_allowed("GET, HEAD")
            },
        ),
        "/ocsp" => (
            Route::Ocsp,
            if *req.method() == Method::POST {
                super::ocsp::post(state, req).await
            } else {
                method_not_allowed("POST")
            },
        ),
        p if p.starts_with("/ocsp/") => {
            let encoded = &p["/ocsp/".len()..];
            (
                Route::Ocsp,
                if get {
                    super::ocsp::get(state, &req, encoded).await
                } else {
                    method_not_allowed("GET, HEAD")
                },
            )
        }
        p if p.starts_with("/crl/") => (
            Route::Crl,
            if get {
                super::crl::get(state, &p["/crl/".len()..], req.headers())
            } else {
                method_not_allowed("GET, HEAD")
            },
        ),
        p if p.starts_with("/ca/") => (
            Route::Ca,
            if get {
                ca_certificate(state, &p["/ca/".len()..])
            } else {
                method_not_allowed("GET, HEAD")
            },
        ),
        "/tsa" => (
            Route::Tsa,
            crate::tsa::serve_http(state.tsa.clone(), req).await,
        ),
        p if p.starts_with("/certs/") => (
            Route::Certs,
            if get {
                published(state, &p["/certs/".len()..]).await
            } else {
                method_not_allowed("GET, HEAD")
            },
        ),
        _ => (Route::NotFound, text(StatusCode::NOT_FOUND, "not found")),
    }
}

/// 200 when the store answers and the key backend is usable; 503 with the reason otherwise.
async fn readyz(state: &Arc<AppState>) -> Reply {
    let st = state.clone();
    let checked = tokio::task::spawn_blocking(move || {
        st.store.ping().map_err(|e| e.to_string())?;
        st.keys.check().map_err(|e| e.to_string())
    })
    .await;
    match checked {
        Ok(Ok(())) => text(StatusCode::OK, "ready"),
        Ok(Err(reason)) => {
            tracing::warn!(%reason, "not ready");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}"),
            )
        }
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
    }
}

/// `GET /ca/{name}.crt` (DER, for AIA caIssuers) or `/ca/{name}.pem`.
fn ca_certificate(state: &AppState, file: &str) -> Reply {
    let (name, pem) = match (file.strip_suffix(".crt"), file.strip_suffix(".pem")) {
        (Some(n), _) => (n, false),
        (_, Some(n)) => (n, true),
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    };
    match state.ca_certs.get(name) {
        Some(der) if pem => cacheable(reply(
            StatusCode::OK,
            PEM,
            pkid_protocols::x509::certificate_pem(der),
        )),
        Some(der) => cacheable(reply(StatusCode::OK, PKIX_CERT, der.clone())),
        None => text(StatusCode::NOT_FOUND, "no such CA"),
    }
}

fn cacheable(mut r: Reply) -> Reply {
    r.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// `GET /certs/{serial}` (DER) or `/certs/{serial}.pem`: the public certificate repository.
async fn published(state: &Arc<AppState>, file: &str) -> Reply {
    let (serial, pem) = match file.strip_suffix(".pem") {
        Some(s) => (s, true),
        None => (file.strip_suffix(".crt").unwrap_or(file), false),
    };
    let Some(serial) = pkid_protocols::serial::canonical_hex(serial) else {
        return text(StatusCode::NOT_FOUND, "not a serial number");
    };
    let store = state.store.clone();
    let found = tokio::task::spawn_blocking(move || store.certificate(&serial)).await;
    match found {
        Ok(Ok(Some(rec))) => match rec.der {
            Some(der) if pem => reply(
                StatusCode::OK,
                PEM,
                pkid_protocols::x509::certificate_pem(&der),
            ),
            Some(der) => reply(StatusCode::OK, PKIX_CERT, der),
            None => text(StatusCode::NOT_FOUND, "not found"),
        },
        Ok(Ok(None)) => text(StatusCode::NOT_FOUND, "not found"),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "certificate lookup");
            text(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
        Err(e) => {
            tracing::error!(error = %e, "certificate lookup task");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn route_all_lists_every_variant_at_its_index_with_distinct_names() {
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        let mut names: Vec<&str> = Route::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Route::ALL.len());
    }
}
