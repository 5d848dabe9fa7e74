//! Routing: one axum `Router` per listener, built from the state with no socket.
//!
//! ```text
//! http  listener ─▶ rate limit ─▶ body limit ─▶ OCSP fast path ─▶ router ─▶ observe ─▶ deadline
//!                                                                 ─▶ status plane
//! https listener ─▶ the same            ─▶ status plane + enrollment/admin plane
//! ```
//!
//! The status plane is OCSP, CRLs, timestamps, CA certificates, the certificate repository,
//! probes and metrics (CMP joins it: see `status_plane`). The HTTPS listener adds the planes
//! that need to know who is asking: each of its requests carries the verified client chain as a
//! [`super::tls::ClientIdentity`] extension. Handlers are thin: they adapt HTTP to the module
//! that decides. The layers are in [`super::layers`].

use super::error::HttpError;
use super::layers::{
    BodyLimit, BodyLimitLayer, DeadlineLayer, ObserveLayer, OcspFastPath, OcspFastPathLayer,
    RateLimit, RateLimitLayer,
};
use super::reply::{reply, text, Reply};
use super::tls::ClientIdentity;
use super::AppState;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Router};
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::StatusCode;
use std::sync::Arc;

/// Media type of DER certificates (RFC 2585).
const PKIX_CERT: &str = "application/pkix-cert";
/// A certs-only PKCS#7 (RFC 5652; RFC 8551 §3.2.2).
const PKCS7: &str = "application/pkcs7-mime; smime-type=certs-only";
/// Media type of PEM files.
const PEM: &str = "application/x-pem-file";

/// What a listener serves: its router behind the admission layers (a tower `Service` of
/// `Request<B>` for any body; cheap to clone).
pub type Listener = RateLimit<OcspFastPath<BodyLimit<Router>>>;

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
    let http = edge(
        status_plane()
            .route(
                "/api/v1/{*rest}",
                axum::routing::any(super::api::plain_http),
            )
            .route(
                "/.well-known/est/{*rest}",
                axum::routing::any(crate::est::http::plain_http),
            )
            .merge(crate::cmp::http::router(state)),
        state,
    );
    let https = edge(
        status_plane()
            .merge(enrollment_plane(state))
            .merge(crate::cmp::http::router(state))
            .merge(crate::portal::router(
                &state.config.load(),
                state.authority.clock(),
            )),
        state,
    );
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
        .layer(OcspFastPathLayer(state.clone()))
        .layer(BodyLimitLayer(state.clone()))
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
        .route("/api/openapi.json", read_only(super::api_devices::openapi))
    // CMP (RFC 9811 HTTP transfer, protected end to end, so on both listeners) is merged in
    // `routers` from `crate::cmp::http::router` (it holds its own server state).
}

/// The planes only the HTTPS listener serves, where the client may have shown a certificate.
/// EST (RFC 7030) nests under `/.well-known/est` and the RA's JSON API under `/api/v1`:
///
/// ```text
/// .nest("/.well-known/est", super::est::router())
/// .nest("/api/v1", super::api::router())
/// ```
fn enrollment_plane(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    // Remote signing: the CSC API v2 and the activation call (docs/remote-signing.md).
    let csc = crate::csc::http::service(state);
    Router::new()
        .route("/whoami", read_only(whoami))
        .nest("/.well-known/est", crate::est::http::router(state))
        .nest(
            "/api/v1",
            super::api_devices::router()
                .merge(super::api_credentials::router())
                .merge(super::api::router())
                .merge(crate::csc::http::activation_router(csc.clone())),
        )
        .merge(crate::csc::http::router(csc))
        .layer(axum::middleware::from_fn(read_small_bodies_first))
}

/// Largest declared body [`read_small_bodies_first`] reads before the handler runs.
const EARLY_READ_BYTES: u64 = 64 * 1024;

/// Reads a small HTTP/2 request body before the handler runs. A handler that refuses early (a
/// 401 before the JSON is read) answers while the client may still be sending; the server then
/// ends the stream with RST_STREAM NO_ERROR (RFC 9113 §8.1), which some clients take for an
/// error — curl 7.88 reports "Stream error in the HTTP/2 framing layer" instead of the 401. With
/// the body read first, the stream is half-closed by the client before the answer. HTTP/1.1 is
/// left alone (hyper drains or closes), and so are large or undeclared bodies, which the
/// handlers' own limits read.
async fn read_small_bodies_first(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let small = declared.is_some_and(|n| n > 0 && n <= EARLY_READ_BYTES);
    if req.version() != hyper::Version::HTTP_2 || !small {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, EARLY_READ_BYTES as usize).await {
        Ok(bytes) => {
            next.run(axum::extract::Request::from_parts(parts, bytes.into()))
                .await
        }
        Err(_) => text(
            StatusCode::BAD_REQUEST,
            "the request body did not arrive as declared\n",
        )
        .into_response(),
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

/// How often a failing readiness check is logged in detail: a load balancer polls `/readyz`
/// every few seconds, and one line per poll would bury everything else.
const NOT_READY_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// When the last "not ready" detail was logged, and how many were held back since.
static NOT_READY_LOGGED: std::sync::Mutex<Option<(std::time::Instant, u64)>> =
    std::sync::Mutex::new(None);

/// Logs why the daemon is not ready, at most once per [`NOT_READY_LOG_INTERVAL`].
fn log_not_ready(part: &str, detail: &str) {
    let mut logged = NOT_READY_LOGGED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match logged.as_mut() {
        Some((at, held_back)) if at.elapsed() < NOT_READY_LOG_INTERVAL => *held_back += 1,
        _ => {
            let held_back = logged.map_or(0, |(_, n)| n);
            tracing::warn!(part, reason = %detail, held_back, "not ready");
            *logged = Some((std::time::Instant::now(), 0));
        }
    }
}

/// 200 when the store answers and every key the daemon uses can sign; 503 otherwise. The
/// answer names only the part that failed (`store`, `keys`): the probe is unauthenticated,
/// and paths, token labels and PKCS#11 return values are for the operator's log.
async fn readyz(State(state): State<Arc<AppState>>) -> Reply {
    let st = state.clone();
    let checked = tokio::task::spawn_blocking(move || {
        st.store.ping().map_err(|e| ("store", e.to_string()))?;
        st.keys.check().map_err(|e| ("keys", e.to_string()))
    })
    .await;
    let ready = &state.metrics.ready;
    match checked {
        Ok(Ok(())) => {
            ready.with_label_values(&["store"]).set(1);
            ready.with_label_values(&["keys"]).set(1);
            text(StatusCode::OK, "ready")
        }
        Ok(Err((part, detail))) => {
            if part == "keys" {
                ready.with_label_values(&["store"]).set(1);
            }
            ready.with_label_values(&[part]).set(0);
            log_not_ready(part, &detail);
            HttpError::Unavailable(format!("not ready: {part}")).into_response()
        }
        Err(e) => {
            log_not_ready("check", &e.to_string());
            HttpError::Unavailable("not ready".into()).into_response()
        }
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
    // Looked up in the authority, so an issuer added while the daemon runs is published.
    match state.authority.issuer(name) {
        Some(i) if pem => cacheable(reply(
            StatusCode::OK,
            PEM,
            pkid_protocols::x509::certificate_pem(&i.der),
        )),
        Some(i) => cacheable(reply(StatusCode::OK, PKIX_CERT, i.der.clone())),
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

/// `GET /certs/{serial}` (DER), `/certs/{serial}.pem`, or `/certs/{serial}.p7b` (the
/// certificate and its issuers up to the root, certs-only PKCS#7, DER): the public
/// certificate repository.
async fn published(State(state): State<Arc<AppState>>, uri: hyper::Uri) -> Reply {
    let file = uri.path().strip_prefix("/certs/").unwrap_or_default();
    if let Some(serial) = file.strip_suffix(".p7b") {
        return published_chain(state, serial).await;
    }
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

/// The `.p7b` of `GET /certs/{serial}.p7b`: the certificate, its issuer and the issuers
/// above it (RFC 5652 SignedData without signers, `application/pkcs7-mime`).
async fn published_chain(state: Arc<AppState>, serial: &str) -> Reply {
    let Some(serial) = pkid_protocols::serial::canonical_hex(serial) else {
        return HttpError::NotFound("not a serial number").into_response();
    };
    let store = state.store.clone();
    let found = tokio::task::spawn_blocking(move || store.certificate(&serial)).await;
    let rec = match found {
        Ok(Ok(Some(rec))) => rec,
        Ok(Ok(None)) => return HttpError::NotFound("not found").into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "certificate lookup");
            return HttpError::Unavailable("store unavailable".into()).into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "certificate lookup task");
            return HttpError::Internal.into_response();
        }
    };
    let Some(der) = rec.der else {
        return HttpError::NotFound("not found").into_response();
    };
    let chain = state.authority.chain(&rec.issuer);
    let mut certs: Vec<&[u8]> = vec![der.as_slice()];
    certs.extend(chain.iter().map(|i| i.der.as_slice()));
    match pkid_protocols::est::certs_only(&certs) {
        Ok(p7) => reply(StatusCode::OK, PKCS7, p7),
        Err(e) => {
            tracing::error!(error = %e, "certificate chain encoding");
            HttpError::Internal.into_response()
        }
    }
}
