//! Routing: one axum `Router` per listener, built from the state with no socket.
//!
//! ```text
//! http  listener ─▶ rate limit ─▶ body limit ─▶ OCSP fast path ─▶ router ─▶ observe ─▶ deadline
//!                                                                 ─▶ status plane
//! https listener ─▶ the same            ─▶ status plane + enrollment/admin plane
//! ```
//!
//! The status plane is OCSP, CRLs, timestamps, CA certificates, the certificate repository,
//! probes and metrics (CMP joins it: see [`status_plane`]). The HTTPS listener adds the planes
//! that need to know who is asking: each of its requests carries the verified client chain as a
//! [`super::tls::ClientIdentity`] extension. Handlers are thin: they adapt HTTP to the module
//! that decides. The layers are in [`super::layers`].

use super::error::HttpError;
use super::layers::{
    BodyLimit, BodyLimitLayer, DeadlineLayer, ObserveLayer, OcspFastPath, OcspFastPathLayer,
    RateLimit, RateLimitLayer,
};
use super::tls::ClientIdentity;
use super::AppState;
use crate::metrics::Metrics;
use axum::body::Body;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Router};
use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use prometheus::{Histogram, IntCounter};
use std::sync::{Arc, OnceLock};

/// What every handler returns.
pub(crate) type Reply = axum::response::Response;

/// Media type of DER certificates (RFC 2585).
const PKIX_CERT: &str = "application/pkix-cert";
/// Media type of PEM files.
const PEM: &str = "application/x-pem-file";

pub(crate) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Reply {
    let mut r = Response::new(Body::from(body.into()));
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

/// What a listener serves: its router behind the admission layers (a tower `Service` of
/// `Request<B>` for any body; cheap to clone).
pub type Listener = RateLimit<BodyLimit<OcspFastPath<Router>>>;

/// The routers of the two listeners.
pub struct Routers {
    /// The plain-HTTP listener: the status plane only. Its requests never carry a
    /// [`ClientIdentity`].
    pub http: Listener,
    /// The HTTPS listener: the status plane, the enrollment plane and the admin plane.
    pub https: Listener,
}

/// Builds both routers from the state, layers included. No socket: tests drive them with
/// `tower::ServiceExt::oneshot`, `pkid serve` hands them to the listeners.
pub fn routers(state: &Arc<AppState>) -> Routers {
    let http = edge(status_plane(), state);
    let https = edge(status_plane().merge(enrollment_plane()), state);
    Routers { http, https }
}

/// Puts the layers around `router` (see [`super::layers`] for their order) and binds it to
/// the state.
fn edge(router: Router<Arc<AppState>>, state: &Arc<AppState>) -> Listener {
    let router = router
        .fallback(|| async { HttpError::NotFound("not found").into_response() })
        .layer(DeadlineLayer(state.clone()))
        .layer(ObserveLayer(state.clone()))
        .with_state(state.clone());
    tower::ServiceBuilder::new()
        .layer(RateLimitLayer(state.clone()))
        .layer(BodyLimitLayer(state.clone()))
        .layer(OcspFastPathLayer(state.clone()))
        .service(router)
}

/// 405 for a route that only reads: `Allow: GET, HEAD` (axum would list `GET,HEAD`; the
/// spaced form is what pkid has always sent).
const READ_ONLY: HttpError = HttpError::MethodNotAllowed {
    allow: "GET, HEAD",
    message: "method not allowed",
};
/// 405 for `POST /ocsp`.
const POST_ONLY: HttpError = HttpError::MethodNotAllowed {
    allow: "POST",
    message: "method not allowed",
};

/// `GET` (and so `HEAD`) to `handler`; any other method 405 with `Allow: GET, HEAD`.
fn read_only<H, T>(handler: H) -> MethodRouter<Arc<AppState>>
where
    H: axum::handler::Handler<T, Arc<AppState>>,
    T: 'static,
{
    get(handler).fallback(|| async { READ_ONLY.into_response() })
}

/// The status plane, on both listeners: what relying parties and document systems use.
fn status_plane() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/healthz",
            read_only(|| async { text(StatusCode::OK, "ok") }),
        )
        .route("/readyz", read_only(readyz))
        .route("/metrics", read_only(metrics))
        .route(
            "/ocsp",
            post(super::ocsp::post).fallback(|| async { POST_ONLY.into_response() }),
        )
        // The base64 may hold `/` (even `//`) and `%2F`: a catch-all, read raw by the handler.
        .route("/ocsp/", read_only(super::ocsp::get))
        .route("/ocsp/{*request}", read_only(super::ocsp::get))
        .route("/crl/{*file}", read_only(super::crl::get))
        .route(
            "/tsa",
            post(super::tsa::post).fallback(|| async { super::tsa::WRONG_METHOD.into_response() }),
        )
        .route("/ca/{*file}", read_only(ca_certificate))
        .route("/certs/{*file}", read_only(published))
    // CMP (RFC 9811 HTTP transfer, protected end to end, so on both listeners) goes here:
    // .route("/.well-known/cmp", post(super::cmp::post))
    // .route("/.well-known/cmp/p/{label}", post(super::cmp::post))
}

/// The planes only the HTTPS listener serves, where the client may have shown a certificate.
/// EST (RFC 7030) nests under `/.well-known/est` and the RA's JSON API under `/api/v1`:
///
/// ```text
/// .nest("/.well-known/est", super::est::router())
/// .nest("/api/v1", super::api::router())
/// ```
fn enrollment_plane() -> Router<Arc<AppState>> {
    Router::new().route("/whoami", read_only(whoami))
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
    Whoami,
    NotFound,
    RateLimited,
    TooLarge,
    BadRequest,
}

impl Route {
    /// Every route, in declaration order (`Route::X as usize` indexes it).
    pub(crate) const ALL: [Route; 13] = [
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Ocsp,
        Route::Crl,
        Route::Ca,
        Route::Tsa,
        Route::Certs,
        Route::Whoami,
        Route::NotFound,
        Route::RateLimited,
        Route::TooLarge,
        Route::BadRequest,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::Ocsp => "ocsp",
            Route::Crl => "crl",
            Route::Ca => "ca",
            Route::Tsa => "tsa",
            Route::Certs => "certs",
            Route::Whoami => "whoami",
            Route::NotFound => "not_found",
            Route::RateLimited => "rate_limited",
            Route::TooLarge => "too_large",
            Route::BadRequest => "bad_request",
        }
    }

    /// The route of a matched path pattern (axum's `MatchedPath`). A pattern not listed here
    /// counts as `not_found`: add its variant when adding a route (a test checks every route).
    pub(crate) fn of_pattern(pattern: &str) -> Route {
        match pattern {
            "/ocsp" | "/ocsp/" | "/ocsp/{*request}" => Route::Ocsp,
            "/tsa" => Route::Tsa,
            "/crl/{*file}" => Route::Crl,
            "/ca/{*file}" => Route::Ca,
            "/certs/{*file}" => Route::Certs,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            "/whoami" => Route::Whoami,
            _ => Route::NotFound,
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

    pub(crate) fn record(&self, route: Route, status: StatusCode, seconds: f64) {
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

/// `GET /metrics`: the Prometheus text exposition.
async fn metrics(State(state): State<Arc<AppState>>) -> Reply {
    reply(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        state.metrics.render(),
    )
}

/// `GET /whoami` (HTTPS only): the client certificate this connection was verified with, so an
/// operator can check a client's mTLS set-up before pointing EST or the API at it.
async fn whoami(identity: Option<Extension<ClientIdentity>>) -> Reply {
    match identity {
        Some(Extension(id)) => text(
            StatusCode::OK,
            format!(
                "subject: {}\nissuer: {}\nserial: {}\nchain: {} certificates",
                id.subject,
                id.issuer,
                id.serial,
                id.chain.len()
            ),
        ),
        None => text(StatusCode::FORBIDDEN, "no client certificate was presented"),
    }
}

/// 200 when the store answers and the key backend is usable; 503 with the reason otherwise.
async fn readyz(State(state): State<Arc<AppState>>) -> Reply {
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
            HttpError::Unavailable(format!("not ready: {reason}")).into_response()
        }
        Err(e) => HttpError::Unavailable(format!("not ready: {e}")).into_response(),
    }
}

/// `GET /ca/{name}.crt` (DER, for AIA caIssuers) or `/ca/{name}.pem`.
async fn ca_certificate(State(state): State<Arc<AppState>>, uri: hyper::Uri) -> Reply {
    let file = uri.path().strip_prefix("/ca/").unwrap_or_default();
    let (name, pem) = match (file.strip_suffix(".crt"), file.strip_suffix(".pem")) {
        (Some(n), _) => (n, false),
        (_, Some(n)) => (n, true),
        _ => return HttpError::NotFound("not found").into_response(),
    };
    match state.ca_certs.get(name) {
        Some(der) if pem => cacheable(reply(
            StatusCode::OK,
            PEM,
            pkid_protocols::x509::certificate_pem(der),
        )),
        Some(der) => cacheable(reply(StatusCode::OK, PKIX_CERT, der.clone())),
        None => HttpError::NotFound("no such CA").into_response(),
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
async fn published(State(state): State<Arc<AppState>>, uri: hyper::Uri) -> Reply {
    let file = uri.path().strip_prefix("/certs/").unwrap_or_default();
    let (serial, pem) = match file.strip_suffix(".pem") {
        Some(s) => (s, true),
        None => (file.strip_suffix(".crt").unwrap_or(file), false),
    };
    let Some(serial) = pkid_protocols::serial::canonical_hex(serial) else {
        return HttpError::NotFound("not a serial number").into_response();
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
            None => HttpError::NotFound("not found").into_response(),
        },
        Ok(Ok(None)) => HttpError::NotFound("not found").into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "certificate lookup");
            HttpError::Unavailable("store unavailable".into()).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "certificate lookup task");
            HttpError::Internal.into_response()
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
