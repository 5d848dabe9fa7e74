//! The HTTP binding of EST (RFC 7030 §3.2): `/.well-known/est/{operation}` and
//! `/.well-known/est/{label}/{operation}` on the HTTPS listener; on the plain listener every
//! EST path is refused (Basic credentials must never cross the network in clear).
//!
//! Replies: base64 bodies with `Content-Transfer-Encoding: base64` (some Java clients parse
//! the body as DER without it); refusals are `text/plain` with a one-line reason, counted in
//! `pkid_est_requests_total{operation,outcome}` and logged at most [`LOG_BURST`] lines per
//! [`LOG_WINDOW`] (the rest are counted and the count logged with the next line).

use super::{Caller, Enrolled, Est, EstError, ServerKeySigner};
use crate::http::tls::{ClientIdentity, TlsExporter};
use crate::http::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use base64::Engine;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Refusal log lines allowed per window.
const LOG_BURST: u32 = 20;
/// The window.
const LOG_WINDOW: Duration = Duration::from_secs(10);

static LOGGED: Mutex<Option<(Instant, u32, u64)>> = Mutex::new(None);

/// Logs a refusal unless the window's burst is spent (then counts it).
fn log_refusal(operation: &str, label: &str, status: u16, reason: &str) {
    let mut g = LOGGED.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    let (start, lines, held) = g.get_or_insert((now, 0, 0));
    if now.duration_since(*start) > LOG_WINDOW {
        *start = now;
        *lines = 0;
    }
    if *lines >= LOG_BURST {
        *held += 1;
        return;
    }
    *lines += 1;
    let held_back = std::mem::take(held);
    tracing::info!(
        operation,
        // An unknown label is the client's own text: bounded like the reason.
        label = %super::one_line(label),
        status,
        reason = %super::one_line(reason),
        held_back,
        "EST request refused"
    );
}

/// The router nested at `/.well-known/est` on the HTTPS listener.
pub fn router(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let config = state.config.load_full();
    let escrows = config.est.labels.values().any(|l| l.escrow);
    let sealer = match state.keys.sealer() {
        Ok(s) => Some(s),
        Err(e) => {
            if escrows {
                tracing::warn!(error = %e, "EST: the data key does not open; serverkeygen on escrow labels will answer 503");
            }
            None
        }
    };
    let server_key = std::fs::read(&config.server.tls_cert)
        .map_err(|e| format!("{}: {e}", config.server.tls_cert.display()))
        .and_then(|chain| {
            let key = zeroize::Zeroizing::new(
                std::fs::read(&config.server.tls_key)
                    .map_err(|e| format!("{}: {e}", config.server.tls_key.display()))?,
            );
            ServerKeySigner::load(&chain, &key)
        })
        .map_err(|e| tracing::warn!(error = %e, "EST: the server's key does not load; an encrypted serverkeygen will answer 503"))
        .ok();
    let mut est = Est::new(
        config,
        state.store.clone(),
        state.authority.clone(),
        state.keys.clone(),
    )
    .with_sealer(sealer)
    .with_server_key(server_key);
    if let Some(desk) = &state.desk {
        est = est.with_calendar(desk.live_calendar());
    }
    let est = Arc::new(est);
    // SIGHUP reaches the labels through the state (`AppState::reload`).
    let _ = state.est.set(est.clone());
    Router::new()
        .route("/{*rest}", any(handle))
        .layer(Extension(est))
}

/// Every EST path on the plain-HTTP listener: 403, whatever it carries.
pub async fn plain_http(headers: HeaderMap) -> Response {
    let msg = if headers.contains_key(axum::http::header::AUTHORIZATION) {
        "EST is served only over HTTPS; these credentials crossed the network in clear: have them replaced (pkid credential remove, then add)"
    } else {
        "EST is served only over HTTPS"
    };
    log_refusal("plain-http", "", 403, msg);
    text(StatusCode::FORBIDDEN, msg)
}

fn text(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        format!("{msg}\n"),
    )
        .into_response()
}

/// base64 wrapped at 64 columns (RFC 2045 bodies; clients tolerate either).
fn base64_lines(der: &[u8]) -> String {
    let flat = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(flat.len() + flat.len() / 64 + 1);
    for chunk in flat.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

fn base64_reply(content_type: &'static str, der: &[u8]) -> Response {
    (
        StatusCode::OK,
        [
            (
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static(content_type),
            ),
            (
                axum::http::HeaderName::from_static("content-transfer-encoding"),
                HeaderValue::from_static("base64"),
            ),
        ],
        base64_lines(der),
    )
        .into_response()
}

/// The `serverkeygen` reply (RFC 7030 §4.4.2): `multipart/mixed`, the private key first — as
/// `application/pkcs8`, or, encrypted to the key the client named, as
/// `application/pkcs7-mime; smime-type=server-generated-key` — then the certificate as
/// certs-only PKCS#7, all base64. Never cached by anyone on the way.
fn multipart(kc: &super::KeyAndCertificate) -> Result<Response, EstError> {
    let p7 = pkid_protocols::est::certs_only(&[kc.certificate.as_slice()])
        .map_err(|e| EstError::Internal(e.to_string()))?;
    let mut nonce = [0u8; 12];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| EstError::Internal("random".into()))?;
    let boundary = format!("est-{}", hex::encode(nonce));
    let (key_type, key_b64) = match &kc.key {
        super::ServerKey::Pkcs8(der) => (
            "application/pkcs8",
            zeroize::Zeroizing::new(base64_lines(der)),
        ),
        super::ServerKey::Enveloped(der) => (
            "application/pkcs7-mime; smime-type=server-generated-key",
            zeroize::Zeroizing::new(base64_lines(der)),
        ),
    };
    let mut body = zeroize::Zeroizing::new(String::new());
    body.push_str(&format!(
        "--{boundary}\r\nContent-Type: {key_type}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    ));
    body.push_str(&key_b64);
    body.push_str("\r\n");
    body.push_str(&format!(
        "--{boundary}\r\nContent-Type: {CERTS_ONLY}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    ));
    body.push_str(&base64_lines(&p7));
    body.push_str("\r\n");
    body.push_str(&format!("--{boundary}--\r\n"));
    let ct = HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}"))
        .map_err(|e| EstError::Internal(e.to_string()))?;
    Ok((
        StatusCode::OK,
        [
            (axum::http::header::CONTENT_TYPE, ct),
            (
                axum::http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ),
        ],
        body.as_bytes().to_vec(),
    )
        .into_response())
}

const CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";

fn refusal(e: &EstError, realm: Option<&str>) -> Response {
    let msg = e.to_string();
    let status = match e {
        EstError::Unauthenticated(..) => StatusCode::UNAUTHORIZED,
        EstError::Forbidden(..) => StatusCode::FORBIDDEN,
        EstError::NotFound(_) => StatusCode::NOT_FOUND,
        EstError::BadRequest(..) => StatusCode::BAD_REQUEST,
        EstError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        EstError::MediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        EstError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        EstError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let shown = match e {
        EstError::Internal(_) => "internal error".to_owned(),
        _ => super::one_line(&msg),
    };
    let mut r = text(status, &shown);
    if let (EstError::Unauthenticated(..), Some(realm)) = (e, realm) {
        if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
        {
            r.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, v);
        }
    }
    if matches!(e, EstError::Unavailable(_)) {
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_static("60"),
        );
    }
    r
}

/// HTTP Basic credentials, if the request carries a well-formed `Authorization: Basic`.
fn basic(headers: &HeaderMap) -> Result<Option<(String, zeroize::Zeroizing<String>)>, EstError> {
    let Some(v) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        EstError::Unauthenticated(
            "bad_authorization",
            "the Authorization header is not HTTP Basic credentials".into(),
        )
    };
    let v = v.to_str().map_err(|_| bad())?;
    let Some((scheme, b64)) = v.split_once(' ') else {
        return Err(bad());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let raw = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| bad())?,
    );
    let s = std::str::from_utf8(&raw).map_err(|_| bad())?;
    let (user, password) = s.split_once(':').ok_or_else(bad)?;
    Ok(Some((
        user.to_owned(),
        zeroize::Zeroizing::new(password.to_owned()),
    )))
}

/// `application/pkcs10` (parameters allowed), the only CSR media type of RFC 7030 §4.2.1.
fn check_pkcs10(headers: &HeaderMap) -> Result<(), EstError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/pkcs10") {
        Ok(())
    } else {
        Err(EstError::MediaType(format!(
            "Content-Type {:?}: a CSR is sent as application/pkcs10",
            super::one_line(ct)
        )))
    }
}

async fn handle(
    State(state): State<Arc<AppState>>,
    Extension(est): Extension<Arc<Est>>,
    // The connection's ClientIdentity and TlsExporter (HTTPS accept loop).
    connection: axum::http::Extensions,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let rest = path
        .strip_prefix("/.well-known/est/")
        .or_else(|| path.strip_prefix('/'))
        .unwrap_or(path);
    let (label_name, operation) = match rest.split_once('/') {
        Some((l, op)) => (Some(l), op),
        None => (None, rest),
    };
    let op_label = match operation {
        "cacerts" | "simpleenroll" | "simplereenroll" | "csrattrs" | "serverkeygen" => operation,
        _ => "unknown",
    };
    let count = |outcome: &str| {
        state
            .metrics
            .est_requests
            .with_label_values(&[op_label, outcome])
            .inc();
    };
    let label = match est.label(label_name) {
        Ok(l) => l,
        Err(e) => {
            count(e.reason());
            log_refusal(op_label, label_name.unwrap_or(""), 404, &e.to_string());
            return refusal(&e, None);
        }
    };
    let realm = Est::realm(&label);
    let wants_get = matches!(operation, "cacerts" | "csrattrs");
    let method_ok = if wants_get {
        method == Method::GET || method == Method::HEAD
    } else {
        method == Method::POST
    };
    if op_label == "unknown" {
        count("not_found");
        return text(StatusCode::NOT_FOUND, "no such EST operation");
    }
    if !method_ok {
        count("method");
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut().insert(
            axum::http::header::ALLOW,
            HeaderValue::from_static(if wants_get { "GET, HEAD" } else { "POST" }),
        );
        return r;
    }
    let caller = || -> Result<Caller, EstError> {
        Ok(Caller {
            certificate: connection
                .get::<ClientIdentity>()
                .map(|id| (id.serial.to_string(), id.leaf.to_vec())),
            basic: basic(&headers)?,
            exporter: connection.get::<TlsExporter>().map(|x| x.0),
        })
    };
    let est2 = est.clone();
    let label2 = label.clone();
    // After an issuance, this process's status view catches up before the client is answered,
    // so the certificate works for TLS client authentication (and OCSP) at once.
    let desk = state.desk.clone();
    let issued = move || {
        if let Some(d) = &desk {
            d.status_changed();
        }
    };
    let issued2 = issued.clone();
    let result: Result<Response, EstError> = match operation {
        "cacerts" => est
            .cacerts(&label)
            .map(|der| base64_reply(CERTS_ONLY, &der)),
        "csrattrs" => est
            .csrattrs(&label)
            .map(|der| base64_reply("application/csrattrs", &der)),
        "serverkeygen" => match check_pkcs10(&headers).and_then(|()| caller()) {
            Err(e) => Err(e),
            Ok(c) => {
                let joined = tokio::task::spawn_blocking(move || {
                    let kc = est2.serverkeygen(&label2, &c, &body);
                    if kc.is_ok() {
                        issued();
                    }
                    kc
                })
                .await;
                match joined {
                    Ok(Ok(kc)) => multipart(&kc),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(EstError::Internal(e.to_string())),
                }
            }
        },
        op => {
            let reenroll = op == "simplereenroll";
            match check_pkcs10(&headers).and_then(|()| caller()) {
                Err(e) => Err(e),
                Ok(c) => {
                    let joined = tokio::task::spawn_blocking(move || {
                        let enrolled = if reenroll {
                            est2.reenroll(&label2, &c, &body).map(Enrolled::Issued)
                        } else {
                            est2.enroll(&label2, &c, &body)
                        };
                        if matches!(enrolled, Ok(Enrolled::Issued(_))) {
                            issued2();
                        }
                        enrolled
                    })
                    .await;
                    match joined {
                        Ok(Ok(Enrolled::Issued(der))) => {
                            match pkid_protocols::est::certs_only(&[der.as_slice()]) {
                                Ok(p7) => Ok(base64_reply(CERTS_ONLY, &p7)),
                                Err(e) => Err(EstError::Internal(e.to_string())),
                            }
                        }
                        Ok(Ok(Enrolled::Pending {
                            request,
                            retry_after,
                        })) => {
                            let mut r = text(
                                StatusCode::ACCEPTED,
                                &format!(
                                    "request {request} waits for an RA officer's approval; retry with the same CSR"
                                ),
                            );
                            r.headers_mut()
                                .insert(axum::http::header::RETRY_AFTER, retry_after.into());
                            count("accepted");
                            return r;
                        }
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(EstError::Internal(e.to_string())),
                    }
                }
            }
        }
    };
    match result {
        Ok(r) => {
            count(if wants_get { "served" } else { "issued" });
            r
        }
        Err(e) => {
            count(e.reason());
            let r = refusal(&e, Some(&realm));
            if let EstError::Internal(m) = &e {
                tracing::error!(operation = op_label, label = %label.name, error = %m, "EST");
            } else {
                log_refusal(op_label, &label.name, r.status().as_u16(), &e.to_string());
            }
            r
        }
    }
}
