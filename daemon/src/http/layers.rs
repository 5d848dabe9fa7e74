//! The tower layers of both listeners, outermost first:
//!
//! ```text
//! RateLimit ─▶ OcspFastPath ─▶ BodyLimit ─▶ Router ─▶ (per route) Observe ─▶ Deadline ─▶ handler
//!                  └─▶ (POST /ocsp, GET /ocsp/… without a body) OCSP handler: body limit,
//!                      observed, deadline
//! ```
//!
//! * [`RateLimit`]: the per-client-address limit (governor), 429 with `Retry-After`.
//! * [`BodyLimit`]: `[server] max_body_bytes`, 413; a declared Content-Length over it is refused
//!   before any byte is read, a body without one (chunked) is cut off when it passes it. Every
//!   body is also a [`TimedBody`]: silence mid-body for `[server] body_timeout_secs` is 408.
//! * [`Observe`]: the per-route metrics (`pkid_http_requests_total{route,status}`,
//!   `pkid_http_request_duration_seconds{route}`, the route being the router's match) and one
//!   tracing event per request — `debug` normally, `warn` for a 5xx — so a flood of bad requests
//!   never becomes a flood of INFO lines.
//! * [`Deadline`]: `[server] request_timeout_secs`, 503.
//! * [`OcspFastPath`]: the OCSP requests answered without the router, because the router's
//!   per-request work measured as much as the answer itself.
//!
//! The two admission layers sit in front of the router, so a refused request costs no routing,
//! and they answer without allocating a future; they count their refusals under the routes
//! pkid has always used (`rate_limited`, `too_large`, `bad_request`). They read the live
//! settings, so a SIGHUP reload applies to the next request. Observe and Deadline run inside the
//! router (axum's `Router::layer`) because only there is the matched route known.
//! `docs/decisions.md` ("axum and tower at the edges") says why these are hand-written services
//! rather than `axum::middleware::from_fn`: that costs allocations per layer per request on the
//! status plane.

use super::body::TimedBody;
use super::deferred::DeferredTimeout;
use super::error::HttpError;
use super::reply::Reply;
use super::AppState;
use crate::metrics::Metrics;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath};
use axum::response::IntoResponse;
use http_body_util::Limited;
use hyper::header::CONTENT_LENGTH;
use hyper::{Method, Request, StatusCode};
use prometheus::{Histogram, IntCounter};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service};

/// A boxed response future (the per-route layers, which must await the handler).
type BoxFuture = Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send>>;

/// `answer`'s output, or `None` once `timeout` has passed. An answer ready by its second
/// poll (a cached OCSP response, a probe, a POST whose body came with its head) is returned
/// without arming a timer ([`DeferredTimeout`]): registering and cancelling a tokio timer
/// entry costs more than such an answer itself.
async fn within<F: Future>(timeout: std::time::Duration, answer: F) -> Option<F::Output> {
    Within::new(timeout, std::pin::pin!(answer)).await
}

/// The future of [`within`], with a name (so a layer can hold it unboxed).
pub struct Within<F> {
    answer: F,
    deadline: DeferredTimeout,
}

impl<F> Within<F> {
    fn new(timeout: std::time::Duration, answer: F) -> Self {
        Self {
            answer,
            deadline: DeferredTimeout::new(timeout),
        }
    }
}

impl<F: Future + Unpin> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(out) = Pin::new(&mut this.answer).poll(cx) {
            return Poll::Ready(Some(out));
        }
        this.deadline.poll_expired(cx).map(|()| None)
    }
}

/// The client's address: the connection's (`known`, set by the listener for each connection),
/// else the request's `ConnectInfo` extension (in-process tests set one), else unspecified.
fn peer<B>(known: Option<SocketAddr>, req: &Request<B>) -> SocketAddr {
    known.unwrap_or_else(|| {
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0), |c| {
                c.0
            })
    })
}

/// Counts and logs a request under `route`.
fn record(
    state: &AppState,
    route: Route,
    status: hyper::StatusCode,
    start: Instant,
    peer: SocketAddr,
) {
    state
        .http_metrics
        .record(route, status, start.elapsed().as_secs_f64());
    if status.is_server_error() {
        tracing::warn!(%peer, route = route.name(), status = status.as_u16(), "request failed");
    } else {
        tracing::debug!(%peer, route = route.name(), status = status.as_u16(), "request");
    }
}

/// An admission layer's future: its own answer, ready at once (a refusal, a cached OCSP
/// answer), the inner service's, or (the OCSP fast path) an answer of its own being made.
/// `P` is the fast path's `POST /ocsp` answer; the other layers never make one.
pub enum Admitted<F, P = Unposted> {
    /// Answered here, at once.
    Ready(Option<Reply>),
    /// Passed on.
    Inner(F),
    /// Answered here, asynchronously (a GET whose answer is not cached).
    Answering(BoxFuture),
    /// A `POST /ocsp` answered here, unboxed.
    Posting(P),
}

/// The `Posting` type of the layers that never answer a `POST /ocsp` themselves.
pub type Unposted = std::future::Pending<Result<Reply, Infallible>>;

impl<F, P> Future for Admitted<F, P>
where
    F: Future<Output = Result<Reply, Infallible>> + Unpin,
    P: Future<Output = Result<Reply, Infallible>> + Unpin,
{
    type Output = Result<Reply, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Ready(r) => Poll::Ready(Ok(r.take().unwrap_or_default())),
            Self::Inner(f) => Pin::new(f).poll(cx),
            Self::Answering(f) => f.as_mut().poll(cx),
            Self::Posting(f) => Pin::new(f).poll(cx),
        }
    }
}

/// A `POST /ocsp` on the fast path: the handler's future under the deadline, counted and
/// logged when it is answered; `B` is the request's body (hyper's own), timed.
pub struct PostAnswer<B> {
    answer: Within<super::ocsp::Post<TimedBody<B>>>,
    state: Arc<AppState>,
    start: Instant,
    peer: SocketAddr,
}

impl<B> Future for PostAnswer<B>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Reply, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Poll::Ready(answer) = Pin::new(&mut this.answer).poll(cx) else {
            return Poll::Pending;
        };
        let resp = answer.unwrap_or_else(|| HttpError::TimedOut.into_response());
        record(
            &this.state,
            Route::Ocsp,
            resp.status(),
            this.start,
            this.peer,
        );
        Poll::Ready(Ok(resp))
    }
}

/// An admission layer's refusal, counted and logged under `route`.
fn refuse<F, P>(
    state: &AppState,
    route: Route,
    error: HttpError,
    peer: SocketAddr,
) -> Admitted<F, P> {
    refuse_with(state, route, error.into_response(), peer)
}

/// [`refuse`] with a ready answer (the JSON API's problem documents).
fn refuse_with<F, P>(state: &AppState, route: Route, r: Reply, peer: SocketAddr) -> Admitted<F, P> {
    record(state, route, r.status(), Instant::now(), peer);
    Admitted::Ready(Some(r))
}

/// Defines each `$layer`: the tower `Layer` that wraps a service in `$service`, with the state
/// (and, for the services in front of the router, no connection's peer yet).
macro_rules! state_layers {
    ($($layer:ident => $service:ident { $($peer:ident)? }),* $(,)?) => {$(
        #[doc = concat!("Builds [`", stringify!($service), "`] services.")]
        #[derive(Clone)]
        pub struct $layer(pub(crate) Arc<AppState>);

        impl<S> Layer<S> for $layer {
            type Service = $service<S>;
            fn layer(&self, inner: S) -> $service<S> {
                $service {
                    state: self.0.clone(),
                    $($peer: None,)?
                    inner,
                }
            }
        }
    )*};
}

state_layers!(
    RateLimitLayer => RateLimit { peer },
    BodyLimitLayer => BodyLimit { peer },
    ObserveLayer => Observe {},
    DeadlineLayer => Deadline {},
    OcspFastPathLayer => OcspFastPath { peer },
);

impl<S: Clone> RateLimit<OcspFastPath<BodyLimit<S>>> {
    /// The listener's service for one connection from `peer`: the admission layers and the
    /// OCSP fast path know the client without a per-request extension (an `http::Extensions`
    /// map allocated and dropped with every request); a request passed on to the router gets
    /// the address as `ConnectInfo`, as in-process tests set it.
    pub fn connection(&self, peer: SocketAddr) -> Self {
        let mut s = self.clone();
        s.peer = Some(peer);
        s.inner.peer = Some(peer);
        s.inner.inner.peer = Some(peer);
        s
    }
}

/// Refuses a client over `[server] rate_limit_*` with 429 and `Retry-After`.
#[derive(Clone)]
pub struct RateLimit<S> {
    state: Arc<AppState>,
    /// The connection's client, when the service serves one connection.
    peer: Option<SocketAddr>,
    inner: S,
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Reply, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Admitted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(limiter) = self.state.limiter.load().as_ref() {
            let peer = peer(self.peer, &req);
            if let Err(not_until) = limiter.check_key(&peer.ip()) {
                self.state.metrics.rate_limited.inc();
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                let error = HttpError::RateLimited {
                    retry_after_secs: wait.as_secs(),
                };
                return refuse(&self.state, Route::RateLimited, error, peer);
            }
        }
        Admitted::Inner(self.inner.call(req))
    }
}

/// Refuses a body over `[server] max_body_bytes` with 413 (and an unreadable Content-Length
/// with 400), and bounds the silence within a body by `[server] body_timeout_secs`. Turns the
/// body into axum's `Body`, which the router would do anyway.
#[derive(Clone)]
pub struct BodyLimit<S> {
    state: Arc<AppState>,
    /// The connection's client, when the service serves one connection.
    peer: Option<SocketAddr>,
    inner: S,
}

impl<S, B> Service<Request<B>> for BodyLimit<S>
where
    S: Service<Request<Body>, Response = Reply, Error = Infallible>,
    S::Future: Unpin,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Admitted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let api = req.uri().path().starts_with("/api/");
        let (limit, silence) = {
            let config = self.state.config.load();
            let limit = if api || crate::portal::takes_uploads(req.uri().path()) {
                super::api::body_limit(&config)
            } else {
                config.server.max_body_bytes
            };
            (limit, config.server.body_timeout)
        };
        let declared = match declared_within(&self.state, self.peer, &req, limit, api) {
            Ok(declared) => declared,
            Err(refused) => return refused,
        };
        let req = match declared {
            // Declared within the limit: hyper never delivers more than the declared length.
            Some(_) => req.map(|b| Body::new(TimedBody::new(b, silence))),
            // No body (a GET): an empty one, which needs no allocation.
            None if req.body().is_end_stream() => req.map(|_| Body::empty()),
            // Chunked (HTTP/1.1) or an HTTP/2 body without a length: cut off past the limit.
            None => req.map(|b| Body::new(Limited::new(TimedBody::new(b, silence), limit))),
        };
        Admitted::Inner(self.inner.call(req))
    }
}

/// The request's declared Content-Length (`None`: not declared), or the refusal, counted: 413
/// when it is over `limit` (a problem document on the JSON API, `api`), 400 when it is not a
/// number (hyper refuses that itself on a connection; an in-process request can carry one).
#[allow(clippy::result_large_err)] // the refusal is the response itself, returned as is
fn declared_within<B, F, P>(
    state: &AppState,
    known: Option<SocketAddr>,
    req: &Request<B>,
    limit: usize,
    api: bool,
) -> Result<Option<u64>, Admitted<F, P>> {
    let Some(field) = req.headers().get(CONTENT_LENGTH) else {
        return Ok(None);
    };
    match field.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
        Some(n) if n > limit as u64 && api => {
            let r = super::api::refused_body(crate::http::body::BodyError::TooLarge(limit));
            Err(refuse_with(state, Route::TooLarge, r, peer(known, req)))
        }
        Some(n) if n > limit as u64 => {
            let error = HttpError::TooLarge(format!("request body is over the {limit}-byte limit"));
            Err(refuse(state, Route::TooLarge, error, peer(known, req)))
        }
        Some(n) => Ok(Some(n)),
        None => {
            let error = HttpError::BadRequest("invalid Content-Length");
            Err(refuse(state, Route::BadRequest, error, peer(known, req)))
        }
    }
}

/// Counts each request under the route the router matched (`not_found` for the fallback) and
/// its status, times it, and logs it.
#[derive(Clone)]
pub struct Observe<S> {
    state: Arc<AppState>,
    inner: S,
}

impl<S> Service<Request<Body>> for Observe<S>
where
    S: Service<Request<Body>, Response = Reply, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let start = Instant::now();
        let peer = peer(None, &req);
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(Route::NotFound, |m| Route::of_pattern(m.as_str()));
        let state = self.state.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let Ok(resp) = answer.await;
            record(&state, route, resp.status(), start, peer);
            Ok(resp)
        })
    }
}

/// Answers 503 when a handler takes longer than `[server] request_timeout_secs`.
#[derive(Clone)]
pub struct Deadline<S> {
    state: Arc<AppState>,
    inner: S,
}

impl<S> Service<Request<Body>> for Deadline<S>
where
    S: Service<Request<Body>, Response = Reply, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let timeout = self.state.config.load().server.request_timeout;
        let answer = self.inner.call(req);
        Box::pin(async move {
            within(timeout, answer)
                .await
                .unwrap_or_else(|| Ok(HttpError::TimedOut.into_response()))
        })
    }
}

/// `POST /ocsp` and `GET`/`HEAD /ocsp/{base64}` answered in front of the router, with the
/// observe and deadline behaviour of the routed path (route label `ocsp`); every other request,
/// wrong methods on those paths included, goes to the router. Measured, not assumed: axum's
/// router percent-decodes the catch-all parameter of every `GET /ocsp/…` (the handler never
/// uses it; it reads the path raw) and boxes and clones per route layer: 27 091 instructions
/// per cached GET through the router, 16 505 through this path (`docs/performance.md`, "HTTP
/// edge: axum and tower"). A remembered GET is answered inside `call` (no future, no timer)
/// and a POST is held as the named `http::ocsp::Post` future rather than a boxed one:
/// 12 251 and 16 564 instructions per cached GET and POST, against bare hyper's 11 381 per
/// POST (`docs/performance.md`, "The status-plane mends of 2026-12-03"). It sits in front of
/// `BodyLimit` so that a POST reads hyper's own body, within the smaller of the listener's
/// limit and 8 192 bytes, and a bodiless GET pays no body limit. Both paths call the same
/// handler code, so the answers are the same bytes; the router keeps the routes too (for their
/// 405s and for anyone reading the table).
#[derive(Clone)]
pub struct OcspFastPath<S> {
    state: Arc<AppState>,
    /// The connection's client, when the service serves one connection.
    peer: Option<SocketAddr>,
    inner: S,
}

impl<S, B> Service<Request<B>> for OcspFastPath<S>
where
    S: Service<Request<B>, Response = Reply, Error = Infallible>,
    S::Future: Unpin,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Admitted<S::Future, PostAnswer<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let post = match (req.method(), req.uri().path()) {
            (&Method::POST, "/ocsp") => true,
            // A GET with a body is unusual enough to take the routed way (its body limited
            // by `BodyLimit`); the answer is the same.
            (&Method::GET | &Method::HEAD, p)
                if p.starts_with("/ocsp/") && req.body().is_end_stream() =>
            {
                false
            }
            _ => {
                // Routed: the per-route layers and the handlers read the client's address
                // from the request (the fast path below has it at hand).
                if let Some(p) = self.peer {
                    req.extensions_mut().insert(ConnectInfo(p));
                }
                return Admitted::Inner(self.inner.call(req));
            }
        };
        let start = Instant::now();
        if post {
            // What `BodyLimit` would do for this path (one configuration load for both).
            let (limit, silence, timeout) = {
                let config = self.state.config.load();
                let server = &config.server;
                (
                    server.max_body_bytes,
                    server.body_timeout,
                    server.request_timeout,
                )
            };
            if let Err(refused) = declared_within(&self.state, self.peer, &req, limit, false) {
                return refused;
            }
            let req = req.map(|b| TimedBody::new(b, silence));
            let peer = peer(self.peer, &req);
            return match super::ocsp::Post::new(&self.state, req, limit) {
                Ok(answer) => Admitted::Posting(PostAnswer {
                    answer: Within::new(timeout, answer),
                    state: self.state.clone(),
                    start,
                    peer,
                }),
                Err(refused) => {
                    record(&self.state, Route::Ocsp, refused.status(), start, peer);
                    Admitted::Ready(Some(refused))
                }
            };
        }
        let peer = peer(self.peer, &req);
        // A remembered GET is answered here and now: no future, no timer.
        if let Some(at_once) = super::ocsp::get_at_once(&self.state, &req) {
            record(&self.state, Route::Ocsp, at_once.status(), start, peer);
            return Admitted::Ready(Some(at_once));
        }
        let state = self.state.clone();
        let timeout = state.config.load().server.request_timeout;
        // The body is empty (checked above).
        let req = req.map(|_| Body::empty());
        Admitted::Answering(Box::pin(async move {
            let resp = within(timeout, super::ocsp::get_decoded(state.clone(), req))
                .await
                .unwrap_or_else(|| HttpError::TimedOut.into_response());
            record(&state, Route::Ocsp, resp.status(), start, peer);
            Ok(resp)
        }))
    }
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

#[cfg(test)]
mod tests {
    use super::Route;

    #[tokio::test(start_paused = true)]
    async fn within_returns_a_ready_answer_and_gives_up_on_a_slow_one_at_the_deadline() {
        use std::time::Duration;
        let limit = Duration::from_secs(30);
        assert_eq!(super::within(limit, async { 7 }).await, Some(7));
        let started = tokio::time::Instant::now();
        // Ready only after a wait shorter than the deadline: answered.
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            8
        };
        assert_eq!(super::within(limit, slow).await, Some(8));
        // Never ready: given up once the (paused, auto-advanced) clock passes the deadline.
        assert_eq!(
            super::within(limit, std::future::pending::<u8>()).await,
            None
        );
        assert_eq!(started.elapsed(), Duration::from_secs(35));
    }

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
