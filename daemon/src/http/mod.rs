//! The daemon: listeners, TLS, limits, routing, shutdown and reload.
//!
//! One hyper 1 server per listener (HTTP/1.1 and HTTP/2 on both; ALPN on HTTPS), each serving
//! its own axum `Router` ([`routes::routers`]) behind tower layers ([`layers`]): a per-client
//! rate limit (governor, 429), a body-size limit (413), a request timeout, tracing and per-route
//! metrics. The HTTPS listener asks for a client certificate ([`tls`]) and hands the verified
//! chain to every handler. Graceful shutdown on SIGTERM/SIGINT (in-flight requests finish
//! within `shutdown_grace_secs`) and a SIGHUP reload of the settings that are safe to change
//! live (log filter, rate limit, body limit).
//!
//! Below HTTP ([`conn`]): a cap on concurrent connections per listener and per client address
//! (the next one is closed at accept), and an idle timeout that closes a connection with no
//! request in progress and no byte moving — silent from the start, quiet between keep-alive
//! requests, or HTTP/2 with no stream — and a header timeout that closes one whose request head
//! keeps arriving without completing (both watched per connection, not timed per request); a
//! body's silence is bounded by [`body::TimedBody`].
//!
//! The state handlers reach ([`AppState`]) is built by the composition root (`crate::app`);
//! [`routes::routers`] turns it into the two routers, and [`listen`] binds the listeners and
//! serves them until stopped.

pub mod api;
mod api_credentials;
mod api_devices;
pub mod body;
mod conditional;
mod conn;
mod crl;
mod deferred;
mod error;
pub mod layers;
mod ocsp;
mod reply;
pub mod routes;
pub mod tls;
mod tsa;

pub use conn::Drain;
pub use routes::{routers, Listener, Routers};
pub use tls::{ClientIdentity, ClientTrust};

use crate::config::{Config, RateLimit};
use crate::index::RevocationIndex;
use crate::keys::KeyBackend;
use crate::metrics::Metrics;
use crate::ocsp::OcspService;
use crate::store::Store;
use arc_swap::{ArcSwap, ArcSwapOption};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often idle rate-limiter entries are dropped.
const LIMITER_SWEEP: Duration = Duration::from_secs(60);
/// Longest a TLS handshake may take once its first record has arrived (a silent client is
/// closed sooner, by the idle timeout): a handshake is two round trips and a signature.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a request handler can reach.
pub struct AppState {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The live configuration (replaced on SIGHUP).
    pub config: ArcSwap<Config>,
    /// The EST server, once its router is built: a reload hands it the new `[est]` section.
    pub est: std::sync::OnceLock<Arc<crate::est::Est>>,
    /// Remote signing, made at its first use: one service for the CSC API, the portal and the
    /// fulfilment worker, so that a re-enrolment ends the sessions every one of them sees.
    pub csc: std::sync::OnceLock<Option<Arc<crate::csc::Csc>>>,
    /// The CA.
    pub authority: Arc<crate::ca::Authority>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The key backend (readiness).
    pub keys: Arc<dyn KeyBackend>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    http_metrics: layers::HttpMetrics,
    limiter: ArcSwapOption<DefaultKeyedRateLimiter<IpAddr>>,
    /// The hot revocation index.
    pub index: Arc<RevocationIndex>,
    /// The OCSP responder, when enabled.
    pub ocsp: Option<Arc<OcspService>>,
    /// CRL publication, when enabled.
    pub crl: Option<Arc<crate::crl::CrlService>>,
    /// The timestamp authority, when enabled.
    pub tsa: Option<Arc<crate::tsa::Tsa>>,
    /// The registration authority's request desk (the JSON API), when served.
    pub desk: Option<Arc<crate::ra::desk::RequestDesk>>,
}

fn limiter(rate: Option<RateLimit>) -> Option<Arc<DefaultKeyedRateLimiter<IpAddr>>> {
    rate.map(|r| {
        Arc::new(RateLimiter::keyed(
            Quota::per_second(r.per_second).allow_burst(r.burst),
        ))
    })
}

/// What [`AppState::new`] is built from (the composition root has made each part).
pub struct StateParts {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The configuration in force.
    pub config: Config,
    /// The CA.
    pub authority: Arc<crate::ca::Authority>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The key backend.
    pub keys: Arc<dyn KeyBackend>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The hot revocation index.
    pub index: Arc<RevocationIndex>,
    /// The OCSP responder, when enabled.
    pub ocsp: Option<Arc<OcspService>>,
    /// CRL publication, when enabled.
    pub crl: Option<Arc<crate::crl::CrlService>>,
    /// The timestamp authority, when enabled.
    pub tsa: Option<Arc<crate::tsa::Tsa>>,
    /// The registration authority's request desk (the JSON API), when served.
    pub desk: Option<Arc<crate::ra::desk::RequestDesk>>,
}

impl AppState {
    /// The state handlers reach, with the rate limiter and HTTP metrics of `parts.config`.
    pub fn new(parts: StateParts) -> Self {
        Self {
            data_dir: parts.data_dir,
            limiter: ArcSwapOption::new(limiter(parts.config.server.rate_limit)),
            config: ArcSwap::from_pointee(parts.config),
            est: std::sync::OnceLock::new(),
            csc: std::sync::OnceLock::new(),
            authority: parts.authority,
            store: parts.store,
            keys: parts.keys,
            http_metrics: layers::HttpMetrics::new(parts.metrics.clone()),
            metrics: parts.metrics,
            index: parts.index,
            ocsp: parts.ocsp,
            crl: parts.crl,
            tsa: parts.tsa,
            desk: parts.desk,
        }
    }

    /// Applies the HTTP settings that are safe to change live (rate limit, body limit), the
    /// log settings, the RA's `[ra]` section (with its calendar file, read again) and EST's
    /// labels (`[est]`) from `new`; listener addresses and `public_url` need a restart.
    pub fn reload(&self, new: &Config) {
        let old = self.config.load_full();
        if new.server.rate_limit != old.server.rate_limit {
            self.limiter.store(limiter(new.server.rate_limit));
        }
        let mut applied = (*old).clone();
        applied.log = new.log.clone();
        applied.server.rate_limit = new.server.rate_limit;
        applied.server.max_body_bytes = new.server.max_body_bytes;
        // The RA's deadlines, limits and calendar (the desk keeps its own copy), unless the
        // desk refused them (a calendar file that does not parse).
        if self.desk.as_ref().is_none_or(|desk| desk.reload(new)) {
            applied.ra = new.ra.clone();
        }
        // EST's labels, unless EST refused them (a profile or issuer not running).
        if self.est.get().is_some_and(|est| est.reload(new)) {
            applied.est = new.est.clone();
        }
        if new.server.http != old.server.http
            || new.server.https != old.server.https
            || new.server.public_url != old.server.public_url
        {
            tracing::warn!("listener addresses and public_url change only on restart");
        }
        self.config.store(Arc::new(applied));
    }
}

/// Why the listeners could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// An address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        /// `http` or `https`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTPS certificate, key or client trust anchors are unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    /// Both listeners are disabled.
    #[error("no listener configured (server.http and server.https are both empty)")]
    NoListener,
}

/// Binds the configured listeners and serves `routers` on them until `stop` changes; each
/// accept loop is a task the caller awaits. Connections finish under `drain`.
pub async fn listen(
    state: &Arc<AppState>,
    routers: Routers,
    stop: &watch::Receiver<bool>,
    drain: &Arc<Drain>,
) -> Result<Vec<JoinHandle<()>>, ListenError> {
    let config = state.config.load_full();
    let mut tasks = Vec::new();
    if let Some(addr) = config.server.http {
        let listener = bind(addr, "http").await?;
        tracing::info!(addr = %local(&listener, addr), "HTTP listener ready");
        tasks.push(tokio::spawn(accept_loop(
            listener,
            "http",
            None,
            routers.http,
            state.clone(),
            stop.clone(),
            drain.clone(),
        )));
    }
    if let Some(addr) = config.server.https {
        let trust = Arc::new(ClientTrust::new(
            &config,
            state.authority.clone(),
            state.index.clone(),
        )?);
        let acceptor = tls::acceptor(&config, trust.clone())?;
        let listener = bind(addr, "https").await?;
        tracing::info!(addr = %local(&listener, addr), "HTTPS listener ready");
        tasks.push(tokio::spawn(accept_loop(
            listener,
            "https",
            Some((acceptor, trust)),
            routers.https,
            state.clone(),
            stop.clone(),
            drain.clone(),
        )));
    }
    if tasks.is_empty() {
        return Err(ListenError::NoListener);
    }
    Ok(tasks)
}

fn local(listener: &TcpListener, configured: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(configured)
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { what, addr, source })
}

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // No timer and no header-read timeout in hyper: the connection's watch
    // ([`conn::Activity::expired`]) bounds a trickled head, without a timer per request.
    b.http1().header_read_timeout(None).keep_alive(true);
    // No HTTP/2 keep-alive pings: the idle timeout closes a connection on which nothing moves
    // (a ping and its answer would keep an unused connection open for ever), and a request in
    // progress is bounded by the body and request timeouts.
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    b
}

/// Accepts connections until `stop`, serving each with `router`. A connection over the
/// listener's caps is dropped at once ([`conn::ConnectionLimits`]); one with no request in
/// progress and nothing moving for `idle_timeout_secs` is dropped by its idle watch. On HTTPS
/// (`tls`), the client's verified certificate becomes a [`ClientIdentity`] extension on each of
/// the connection's requests; the peer address (the rate limit's key) is held by the
/// connection's service (`Listener::connection`), and routed requests carry it as
/// `ConnectInfo`.
async fn accept_loop(
    listener: TcpListener,
    what: &'static str,
    tls: Option<(tokio_rustls::TlsAcceptor, Arc<ClientTrust>)>,
    router: Listener,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
    drain: Arc<Drain>,
) {
    let config = state.config.load_full();
    let builder = connection_builder();
    let timeouts = conn::Timeouts {
        idle: config.server.idle_timeout,
        header: config.server.header_timeout,
    };
    let limits = conn::ConnectionLimits::new(
        what,
        config.server.max_connections,
        config.server.max_connections_per_client,
        &state.metrics,
    );
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // Over a cap: closed here, before a task, a TLS handshake or a buffer is spent on it.
        let Ok(admission) = limits.admit(peer) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The peer address lives in this connection's service, not in each request.
        let router = router.connection(peer);
        let builder = builder.clone();
        let mut drained = drain.watcher();
        let tls = tls.clone();
        let activity = conn::Activity::new();
        let idle = activity.clone();
        let connection = tokio::spawn(async move {
            let _admission = admission;
            let stream = conn::Watched::new(stream, activity.clone());
            let service = |identity: Option<ClientIdentity>, exporter: Option<tls::TlsExporter>| {
                let activity = activity.clone();
                // hyper calls a service through `&self`, tower through `&mut self`: a
                // `RefCell` (borrowed only while a request is handed over, on this task)
                // instead of a clone of the whole layer stack per request.
                let router = std::cell::RefCell::new(router);
                hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let in_flight = activity.request();
                    if let Some(id) = &identity {
                        req.extensions_mut().insert(id.clone());
                    }
                    if let Some(x) = exporter {
                        req.extensions_mut().insert(x);
                    }
                    let answer = tower::Service::call(&mut *router.borrow_mut(), req);
                    async move {
                        let _in_flight = in_flight;
                        answer.await
                    }
                })
            };
            let served = async {
                match tls {
                    None => {
                        activity
                            .serve(
                                builder
                                    .serve_connection(TokioIo::new(stream), service(None, None))
                                    .into_owned(),
                            )
                            .await
                    }
                    Some((acceptor, trust)) => {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls_stream)) => {
                                activity.handshake_done();
                                let identity =
                                    trust.identity(tls_stream.get_ref().1.peer_certificates());
                                let exporter = tls::TlsExporter::of(tls_stream.get_ref().1);
                                activity
                                    .serve(
                                        builder
                                            .serve_connection(
                                                TokioIo::new(tls_stream),
                                                service(identity, exporter),
                                            )
                                            .into_owned(),
                                    )
                                    .await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                Ok(())
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                Ok(())
                            }
                        }
                    }
                }
            };
            if let Err(e) = served.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
        // The watch is a task of its own beside the connection's, so that serving a request
        // polls neither its timer nor the drain; when a timeout expires the connection's task
        // is aborted (dropping the connection, as at the end of its task). It holds the
        // drain's receiver for the connection's life, so a shutdown waits for the connection.
        tokio::spawn(async move {
            let mut connection = connection;
            let expired = idle.expired(timeouts);
            tokio::pin!(expired);
            let mut draining = false;
            let why = loop {
                tokio::select! {
                    _ = &mut connection => return,
                    // Sent (or the daemon is going away regardless): finish and close.
                    _ = drained.changed(), if !draining => {
                        draining = true;
                        idle.drain();
                    }
                    why = &mut expired => break why,
                }
            };
            connection.abort();
            match why {
                conn::Expiry::Idle => tracing::debug!(%peer, "idle connection closed"),
                conn::Expiry::Header => tracing::debug!(
                    %peer,
                    "connection closed: a request's header fields did not arrive within header_timeout_secs"
                ),
            }
        });
    }
}

/// Drops idle rate-limiter entries every minute until `stop` changes.
pub async fn sweep_limiter(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LIMITER_SWEEP) => {}
            _ = stop.changed() => return,
        }
        if let Some(l) = state.limiter.load_full() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}
