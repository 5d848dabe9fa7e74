//! The tower layers every route of both listeners runs through, outermost first:
//!
//! 1. [`observe`]: the per-route metrics (`pkid_http_requests_total{route,status}`,
//!    `pkid_http_request_duration_seconds{route}`) and one tracing event per request — `debug`
//!    normally, `warn` for a 5xx — so a flood of bad requests never becomes a flood of INFO lines.
//! 2. [`rate_limit`]: the per-client-address limit (governor), 429 with `Retry-After`.
//! 3. [`limit_body`]: `[server] max_body_bytes`, 413; a declared Content-Length over it is refused
//!    before any byte is read, a body without one (chunked) is cut off when it passes it.
//! 4. [`deadline`]: `[server] request_timeout_secs`, 503.
//!
//! The rate limit and body limit read the live settings, so a SIGHUP reload applies to the next
//! request. A response made by a layer rather than a handler carries the [`Route`] it is counted
//! under (`rate_limited`, `too_large`, `bad_request`) as a response extension.

use super::error::HttpError;
use super::routes::{Reply, Route};
use super::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::IntoResponse;
use axum::Router;
use http_body_util::Limited;
use hyper::body::Body as _;
use hyper::header::CONTENT_LENGTH;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Puts the layers around every route of `router` and binds it to the state.
pub(crate) fn edge(router: Router<Arc<AppState>>, state: &Arc<AppState>) -> Router {
    router
        .fallback(|| async { HttpError::NotFound("not found").into_response() })
        .layer(from_fn_with_state(state.clone(), deadline))
        .layer(from_fn_with_state(state.clone(), limit_body))
        .layer(from_fn_with_state(state.clone(), rate_limit))
        .layer(from_fn_with_state(state.clone(), observe))
        .with_state(state.clone())
}

/// The client's address, as the listener recorded it; unspecified in tests that set none.
fn peer(req: &Request) -> SocketAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
}

/// A layer's own answer, marked with the route it is counted under.
fn refused(route: Route, error: HttpError) -> Reply {
    let mut r = error.into_response();
    r.extensions_mut().insert(route);
    r
}

async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Reply {
    let start = Instant::now();
    let peer = peer(&req);
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(Route::NotFound, |m| Route::of_pattern(m.as_str()));
    let resp = next.run(req).await;
    let route = resp.extensions().get::<Route>().copied().unwrap_or(matched);
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

async fn rate_limit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Reply {
    if let Some(limiter) = state.limiter.load().as_ref() {
        if let Err(not_until) = limiter.check_key(&peer(&req).ip()) {
            state.metrics.rate_limited.inc();
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            return refused(
                Route::RateLimited,
                HttpError::RateLimited {
                    retry_after_secs: wait.as_secs(),
                },
            );
        }
    }
    next.run(req).await
}

async fn limit_body(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Reply {
    let limit = state.config.load().server.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()));
    match declared {
        Some(Some(n)) if n > limit as u64 => refused(
            Route::TooLarge,
            HttpError::TooLarge(format!("request body is over the {limit}-byte limit")),
        ),
        Some(None) => refused(
            Route::BadRequest,
            HttpError::BadRequest("invalid Content-Length"),
        ),
        // Declared within the limit: hyper never delivers more than the declared length.
        Some(Some(_)) => next.run(req).await,
        None if req.body().is_end_stream() => next.run(req).await,
        // Chunked (HTTP/1.1) or an HTTP/2 body without a length: cut off past the limit.
        None => {
            next.run(req.map(|b| Body::new(Limited::new(b, limit))))
                .await
        }
    }
}

async fn deadline(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Reply {
    let timeout = state.config.load().server.request_timeout;
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => HttpError::TimedOut.into_response(),
    }
}
