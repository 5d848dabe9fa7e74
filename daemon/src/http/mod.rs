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
//! Start-up is two steps with a clean seam between them: [`build_state`] opens the data
//! directory and builds every service (no socket), [`routes::routers`] turns the state into the
//! two routers, and [`serve`] binds the listeners and runs them.

pub mod body;
mod crl;
mod error;
pub mod layers;
mod ocsp;
pub mod routes;
pub mod tls;
mod tsa;

pub use routes::{routers, Listener, Routers};
pub use tls::{ClientIdentity, ClientTrust};

use crate::cli::{Failure, ServeArgs};
use crate::config::{Config, RateLimit};
use crate::datadir;
use crate::index::RevocationIndex;
use crate::keys::KeyBackend;
use crate::metrics::Metrics;
use crate::ocsp::{OcspParts, OcspService};
use crate::store::cursor::FeedPosition;
use crate::store::follow::{ChangeListener, Follower};
use crate::store::Store;
use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing_subscriber::{reload, EnvFilter};

/// How often idle rate-limiter entries are dropped.
const LIMITER_SWEEP: Duration = Duration::from_secs(60);

type FilterHandle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;
static LOG_FILTER: OnceLock<FilterHandle> = OnceLock::new();

/// Everything a request handler can reach.
pub struct AppState {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The live configuration (replaced on SIGHUP).
    pub config: ArcSwap<Config>,
    /// The CA.
    pub authority: Arc<crate::ca::Authority>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The key backend (readiness).
    pub keys: Arc<dyn KeyBackend>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    http_metrics: routes::HttpMetrics,
    limiter: ArcSwapOption<DefaultKeyedRateLimiter<IpAddr>>,
    /// CA certificates by name, DER.
    pub ca_certs: HashMap<String, Bytes>,
    /// The hot revocation index.
    pub index: Arc<RevocationIndex>,
    /// The OCSP responder, when enabled.
    pub ocsp: Option<Arc<OcspService>>,
    /// CRL publication, when enabled.
    pub crl: Option<Arc<crate::crl::CrlService>>,
    listeners: Vec<Arc<dyn ChangeListener>>,
    /// The timestamp authority, when enabled.
    pub tsa: Option<Arc<crate::tsa::Tsa>>,
}

fn limiter(rate: Option<RateLimit>) -> Option<Arc<DefaultKeyedRateLimiter<IpAddr>>> {
    rate.map(|r| {
        Arc::new(RateLimiter::keyed(
            Quota::per_second(r.per_second).allow_burst(r.burst),
        ))
    })
}

/// Logging for CLI commands: warnings and errors to stderr (RUST_LOG overrides).
pub fn init_cli_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

fn init_serve_logging(json: bool) {
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    let ok = if json {
        registry.with(fmt.json()).try_init().is_ok()
    } else {
        registry.with(fmt).try_init().is_ok()
    };
    if ok {
        let _ = LOG_FILTER.set(handle);
    }
}

fn apply_log_level(level: &str) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    match (EnvFilter::try_new(level), LOG_FILTER.get()) {
        (Ok(f), Some(h)) => {
            if let Err(e) = h.reload(f) {
                tracing::warn!(error = %e, "could not apply log level");
            }
        }
        (Err(e), _) => {
            tracing::warn!(level, error = %e, "invalid log level; keeping the current one")
        }
        (_, None) => {}
    }
}

fn override_addr(
    value: Option<String>,
    current: Option<SocketAddr>,
    what: &str,
) -> Result<Option<SocketAddr>, Failure> {
    match value {
        None => Ok(current),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|e| Failure {
            message: format!("--{what} {s:?}: {e}"),
            code: 2,
        }),
    }
}

/// Builds the OCSP responder: every issuer but the root, each with its delegated responder.
fn ocsp_service(
    data: &Path,
    config: &Config,
    authority: &crate::ca::Authority,
    keys: &Arc<dyn KeyBackend>,
    index: Arc<RevocationIndex>,
    metrics: Arc<Metrics>,
) -> Result<OcspService, Failure> {
    let mut issuers = Vec::new();
    for issuer in authority.issuers() {
        if issuer.name == crate::ca::ROOT {
            continue;
        }
        issuers.push(
            datadir::issuers::responder(
                data,
                authority.store().as_ref(),
                keys.as_ref(),
                &issuer,
                Some(&metrics),
            )
            .map_err(crate::cli::datadir_failure)?,
        );
    }
    let inline = matches!(
        config.keys.backend,
        crate::config::KeyBackendConfig::Software
    );
    OcspService::new(OcspParts {
        issuers,
        inline_signing: inline,
        index,
        config: config.ocsp.clone(),
        clock: Arc::new(crate::clock::SystemClock),
        metrics,
    })
    .map_err(|e| Failure {
        message: format!("OCSP responder: {e}"),
        code: 1,
    })
}

/// `pkid serve`: initialises the data directory on first start, then serves until signalled.
pub fn serve(data: &Path, args: ServeArgs, actor: &str) -> Result<(), Failure> {
    let json = Config::load(data).map(|c| c.log.json).unwrap_or(false);
    init_serve_logging(json);
    if !datadir::is_initialised(data) {
        tracing::info!(data = %data.display(), "empty data directory: initialising the CA hierarchy");
        datadir::init(data, &datadir::InitOptions::default(), actor)
            .map_err(crate::cli::datadir_failure)?;
    }
    let state = build_state(data, |config| {
        config.server.http = override_addr(args.http, config.server.http, "http")?;
        config.server.https = override_addr(args.https, config.server.https, "https")?;
        Ok(())
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(state))
}

/// Opens an initialised data directory and builds everything a request can reach: the
/// revocation index, the OCSP responder, CRL publication (its first CRLs made), the TSA. No
/// socket is opened and no task spawned, so tests build it and drive [`routers`] in-process.
/// `adjust` changes the configuration read from the directory before anything uses it (the
/// command-line listener overrides of `pkid serve`; a test's rate limit).
pub fn build_state(
    data: &Path,
    adjust: impl FnOnce(&mut Config) -> Result<(), Failure>,
) -> Result<Arc<AppState>, Failure> {
    let metrics = Arc::new(Metrics::new());
    let opened =
        datadir::open_metered(data, metrics.clone()).map_err(crate::cli::datadir_failure)?;
    let mut config = (*opened.config).clone();
    adjust(&mut config)?;
    apply_log_level(&config.log.level);
    let (authority, keys) = match (opened.authority, opened.keys) {
        (Some(a), Some(k)) => (a, k),
        _ => {
            return Err(Failure {
                message: "keys were not loaded".into(),
                code: 1,
            })
        }
    };
    let mut ca_certs = HashMap::new();
    for i in authority.issuers() {
        ca_certs.insert(i.name.clone(), Bytes::from(i.der.clone()));
    }
    let tsa = crate::tsa::Tsa::open(
        &config,
        keys.as_ref(),
        opened.store.clone(),
        metrics.clone(),
    )
    .map_err(|e| Failure {
        message: format!("timestamp authority: {e} (fix it, or set [tsa] enabled = false)"),
        code: 1,
    })?;
    let started = std::time::Instant::now();
    let issuer_names: Vec<String> = authority.issuers().iter().map(|i| i.name.clone()).collect();
    let index = Arc::new(RevocationIndex::build(
        opened.store.as_ref(),
        &issuer_names.iter().map(String::as_str).collect::<Vec<_>>(),
    )?);
    let entries: usize = issuer_names
        .iter()
        .filter_map(|n| index.issuer(n))
        .map(|i| i.len())
        .sum();
    tracing::info!(entries, bytes = index.memory_bytes(), elapsed = ?started.elapsed(), "revocation index built");
    metrics
        .index_entries
        .set(i64::try_from(entries).unwrap_or(i64::MAX));
    metrics
        .index_bytes
        .set(i64::try_from(index.memory_bytes()).unwrap_or(i64::MAX));
    let mut listeners: Vec<Arc<dyn ChangeListener>> = vec![index.clone()];
    let ocsp = if config.ocsp.enabled {
        let service = Arc::new(ocsp_service(
            data,
            &config,
            &authority,
            &keys,
            index.clone(),
            metrics.clone(),
        )?);
        service.check_responder_expiry();
        listeners.push(service.clone());
        Some(service)
    } else {
        None
    };
    let crl = config.crl.enabled.then(|| {
        let service = Arc::new(crate::crl::CrlService::new(
            authority.clone(),
            config.crl.clone(),
            &config.server.public_url,
            "pkid",
            Some(metrics.clone()),
        ));
        // Before the listeners open, so the first request finds a CRL (as the index is built
        // before OCSP is served). A failure is logged; the schedule retries.
        let started = std::time::Instant::now();
        match service.start() {
            Ok(()) => tracing::info!(elapsed = ?started.elapsed(), "CRLs ready"),
            Err(e) => {
                tracing::error!(error = %e, "CRLs could not be prepared; retrying on schedule")
            }
        }
        listeners.push(service.clone());
        service
    });
    let state = Arc::new(AppState {
        data_dir: data.to_path_buf(),
        limiter: ArcSwapOption::new(limiter(config.server.rate_limit)),
        config: ArcSwap::from_pointee(config),
        authority,
        store: opened.store,
        keys,
        http_metrics: routes::HttpMetrics::new(metrics.clone()),
        metrics,
        ca_certs,
        index,
        ocsp,
        crl,
        listeners,
        tsa,
    });
    Ok(state)
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).await.map_err(|e| Failure {
        message: format!("cannot listen on {what} {addr}: {e}"),
        code: 1,
    })
}

fn connection_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.server.header_timeout)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.server.idle_timeout)
        .keep_alive_timeout(config.server.header_timeout)
        .max_concurrent_streams(256);
    b
}

async fn run(state: Arc<AppState>) -> Result<(), Failure> {
    let config = state.config.load_full();
    let (stop_tx, stop_rx) = watch::channel(false);
    let graceful = Arc::new(GracefulShutdown::new());
    let mut tasks = Vec::new();
    let routers = routers(&state);
    if let Some(addr) = config.server.http {
        let listener = bind(addr, "http").await?;
        tracing::info!(addr = %listener.local_addr()?, "HTTP listener ready");
        tasks.push(tokio::spawn(accept_loop(
            listener,
            None,
            routers.http,
            state.clone(),
            stop_rx.clone(),
            graceful.clone(),
        )));
    }
    if let Some(addr) = config.server.https {
        let tls_failure = |e: tls::TlsSetupError| Failure {
            message: e.to_string(),
            code: 1,
        };
        let trust = Arc::new(
            ClientTrust::new(&config, &state.authority, state.index.clone())
                .map_err(tls_failure)?,
        );
        let acceptor = tls::acceptor(&config, trust.clone()).map_err(tls_failure)?;
        let listener = bind(addr, "https").await?;
        tracing::info!(addr = %listener.local_addr()?, "HTTPS listener ready");
        tasks.push(tokio::spawn(accept_loop(
            listener,
            Some((acceptor, trust)),
            routers.https,
            state.clone(),
            stop_rx.clone(),
            graceful.clone(),
        )));
    }
    if tasks.is_empty() {
        return Err(Failure {
            message: "no listener configured (server.http and server.https are both empty)".into(),
            code: 2,
        });
    }
    tokio::spawn(follow_changes(state.clone(), stop_rx.clone()));
    tokio::spawn(sweep_limiter(state.clone(), stop_rx.clone()));
    if let Some(tsa) = &state.tsa {
        tsa.start();
    }
    if let Some(ocsp) = state.ocsp.clone() {
        tokio::spawn(ocsp_upkeep(ocsp, config.ocsp.presign, stop_rx.clone()));
    }
    if let Some(crl) = state.crl.clone() {
        tokio::spawn(crl.run(stop_rx.clone()));
    }
    tracing::info!(data = %state.data_dir.display(), keys = %state.keys.describe(), "pkid serving");
    wait_for_signals(&state).await;
    tracing::info!("shutting down: no new connections; waiting for in-flight requests");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    match tokio::time::timeout(config.server.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!(grace = ?config.server.shutdown_grace, "grace period over; closing remaining connections")
        }
    }
    if let Some(tsa) = &state.tsa {
        tsa.shutdown().await;
    }
    Ok(())
}

async fn wait_for_signals(state: &Arc<AppState>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            tracing::error!("cannot install signal handlers; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => reload_config(state),
        }
    }
}

/// SIGHUP: re-reads the configuration and applies what is safe to change live.
fn reload_config(state: &Arc<AppState>) {
    let new = match Config::load(&state.data_dir) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reload refused; keeping the running configuration");
            return;
        }
    };
    let old = state.config.load_full();
    apply_log_level(&new.log.level);
    if new.server.rate_limit != old.server.rate_limit {
        state.limiter.store(limiter(new.server.rate_limit));
    }
    let mut applied = (*old).clone();
    applied.log = new.log.clone();
    applied.server.rate_limit = new.server.rate_limit;
    applied.server.max_body_bytes = new.server.max_body_bytes;
    if new.server.http != old.server.http
        || new.server.https != old.server.https
        || new.server.public_url != old.server.public_url
    {
        tracing::warn!("listener addresses and public_url change only on restart");
    }
    state.config.store(Arc::new(applied));
    tracing::info!("configuration reloaded (log level, rate limit, body limit)");
}

/// Accepts connections until `stop`, serving each with `router`. On HTTPS (`tls`), the client's
/// verified certificate becomes a [`ClientIdentity`] extension on each of the connection's
/// requests; every request carries the peer address as `ConnectInfo` (the rate limit's key).
async fn accept_loop(
    listener: TcpListener,
    tls: Option<(tokio_rustls::TlsAcceptor, Arc<ClientTrust>)>,
    router: Listener,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
    graceful: Arc<GracefulShutdown>,
) {
    let builder = connection_builder(&state.config.load());
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
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = |identity: Option<ClientIdentity>| {
                hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    if let Some(id) = &identity {
                        req.extensions_mut().insert(id.clone());
                    }
                    tower::Service::call(&mut router.clone(), req)
                })
            };
            let result = match tls {
                None => {
                    watcher
                        .watch(
                            builder
                                .serve_connection(TokioIo::new(stream), service(None))
                                .into_owned(),
                        )
                        .await
                }
                Some((acceptor, trust)) => {
                    let handshake_timeout = Duration::from_secs(10);
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            let identity =
                                trust.identity(tls_stream.get_ref().1.peer_certificates());
                            watcher
                                .watch(
                                    builder
                                        .serve_connection(
                                            TokioIo::new(tls_stream),
                                            service(identity),
                                        )
                                        .into_owned(),
                                )
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Follows the store's change sequence so that changes made by the CLI or another process
/// reach this daemon within `follow_interval` (under a second).
async fn follow_changes(state: Arc<AppState>, stop: watch::Receiver<bool>) {
    let follower = Arc::new(Follower::new(
        state.store.clone(),
        state.listeners.clone(),
        &FeedPosition::settled(state.index.applied_seq()),
        state.config.load().store.gap_timeout,
        Arc::new(crate::clock::SystemClock),
        state.metrics.change_seq.clone(),
    ));
    follower
        .run(move || state.config.load().store.follow_interval, stop)
        .await
}

/// Hourly responder-certificate expiry check and, when configured, pre-signing (at start, then
/// every half cache lifetime so responses are replaced before they go stale).
async fn ocsp_upkeep(ocsp: Arc<OcspService>, presign: bool, mut stop: watch::Receiver<bool>) {
    let mut last_presign: Option<std::time::Instant> = None;
    let period = Duration::from_secs(3600);
    loop {
        ocsp.check_responder_expiry();
        let presign_due = last_presign.is_none_or(|t| t.elapsed() >= Duration::from_secs(6 * 3600));
        if presign && presign_due {
            let svc = ocsp.clone();
            let started = std::time::Instant::now();
            match tokio::task::spawn_blocking(move || svc.presign()).await {
                Ok(n) => {
                    tracing::info!(signed = n, elapsed = ?started.elapsed(), "OCSP responses pre-signed")
                }
                Err(e) => tracing::error!(error = %e, "pre-signing task failed"),
            }
            last_presign = Some(std::time::Instant::now());
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn sweep_limiter(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
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
