//! The HTTP transfer of CMP (RFC 9811): `POST /.well-known/cmp` and
//! `POST /.well-known/cmp/p/{label}` on both listeners (the messages are protected end to end,
//! so plain HTTP is as safe as HTTPS for them). HTTP/1.0 and 1.1 clients; `Pragma: no-cache`
//! is tolerated.
//!
//! A request that is not `application/pkixcmp` gets 415, one over
//! `pkid_protocols::cmp::MAX_MESSAGE_BYTES` 413, another method 405; everything else is
//! answered 200 with a PKIMessage — an `error` message for a refusal (RFC 9811 §3.3).
//! Refusals are counted in `pkid_cmp_messages_total{body,outcome}` and logged at most
//! [`LOG_BURST`] lines per [`LOG_WINDOW`] (the rest are counted and the count logged with the
//! next line).

use super::Cmp;
use crate::http::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use pkid_protocols::cmp::MAX_MESSAGE_BYTES;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The CMP media type (RFC 9811 §3.4).
const PKIXCMP: &str = "application/pkixcmp";
/// Refusal log lines allowed per window.
const LOG_BURST: u32 = 20;
/// The window.
const LOG_WINDOW: Duration = Duration::from_secs(10);

static LOGGED: Mutex<Option<(Instant, u32, u64)>> = Mutex::new(None);

/// Logs a refusal unless the window's burst is spent (then counts it).
fn log_refusal(body: &str, label: &str, outcome: &str, reason: &str) {
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
        body,
        label = %super::one_line(label),
        outcome,
        reason = %super::one_line(reason),
        held_back,
        "CMP request refused"
    );
}

/// The CMP routes, for both listeners (one server shared by them).
pub fn router(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let sealer = match state.keys.sealer() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "CMP: the data key does not open; MAC-protected messages will be refused");
            None
        }
    };
    let responders = Arc::new(super::Responders::new(
        &state.data_dir,
        state.authority.clone(),
        state.keys.clone(),
        Some(state.metrics.clone()),
    ));
    responders.prepare();
    let mut cmp = Cmp::new(
        state.config.load_full(),
        state.store.clone(),
        state.authority.clone(),
        sealer,
        state.crl.clone(),
    )
    .with_responders(responders);
    if let Some(desk) = &state.desk {
        cmp = cmp.with_calendar(desk.live_calendar());
    }
    let cmp = Arc::new(cmp);
    let wrong_method = || async {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "CMP messages are POSTed");
        r.headers_mut()
            .insert(axum::http::header::ALLOW, HeaderValue::from_static("POST"));
        r
    };
    Router::new()
        .route("/.well-known/cmp", post(unlabelled).fallback(wrong_method))
        .route(
            "/.well-known/cmp/p/{label}",
            post(labelled).fallback(wrong_method),
        )
        .layer(Extension(cmp))
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

async fn unlabelled(
    State(state): State<Arc<AppState>>,
    Extension(cmp): Extension<Arc<Cmp>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, cmp, None, headers, body).await
}

async fn labelled(
    State(state): State<Arc<AppState>>,
    Extension(cmp): Extension<Arc<Cmp>>,
    Path(label): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, cmp, Some(label), headers, body).await
}

async fn handle(
    state: Arc<AppState>,
    cmp: Arc<Cmp>,
    label: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let count = |body: &str, outcome: &str| {
        state
            .metrics
            .cmp_messages
            .with_label_values(&[body, outcome])
            .inc();
    };
    let label_text = label.clone().unwrap_or_default();
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(PKIXCMP) {
        count("unparsed", "media_type");
        let msg = format!(
            "Content-Type {:?}: CMP messages are sent as {PKIXCMP}",
            super::one_line(ct)
        );
        log_refusal("unparsed", &label_text, "media_type", &msg);
        return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg);
    }
    if body.len() > MAX_MESSAGE_BYTES {
        count("unparsed", "too_large");
        let msg = format!("the message is over the {MAX_MESSAGE_BYTES}-byte limit");
        log_refusal("unparsed", &label_text, "too_large", &msg);
        return text(StatusCode::PAYLOAD_TOO_LARGE, &msg);
    }
    let desk = state.desk.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let answer = cmp.handle(label.as_deref(), &body);
        // After an issuance, this process's status view catches up before the client is
        // answered, so the certificate is known to OCSP (and TLS) at once.
        if answer.issued {
            if let Some(d) = &desk {
                d.status_changed();
            }
        }
        answer
    })
    .await;
    let answer = match joined {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "CMP: the handler failed");
            count("unparsed", "internal");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    // A nested message's inner messages are counted and logged as if each had come alone.
    for a in std::iter::once(&answer).chain(&answer.inner) {
        count(a.body, a.outcome);
        if let Some(reason) = &a.refusal {
            log_refusal(a.body, &label_text, a.outcome, reason);
        }
    }
    if answer.der.is_empty() {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }
    (
        StatusCode::OK,
        [
            (
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static(PKIXCMP),
            ),
            (
                axum::http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ),
        ],
        answer.der,
    )
        .into_response()
}
