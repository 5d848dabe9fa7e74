//! The composition root: the one place the daemon is wired.
//!
//! ```text
//!  cli (arguments, exit codes) ─▶ app::serve ─▶ signals first, then App::build, then App::run
//!
//!  App::build(data, clock, adjust)
//!    clock ───────────────────────────────────────────────┬──────────┬──────────┬─────────┐
//!    datadir::open ─▶ config, store (metered), keys, ca::Authority (issuers: init-made + registry)
//!    ra::reconcile: stale pending rows (killed issuances) completed or abandoned, audited
//!    RevocationIndex::build(store, every issuer)           │          │          │         │
//!    OcspService (one responder per issuer) ◀──────────────┘          │          │         │
//!    CrlService (first CRLs made) ◀── authority ◀─────────────────────┘          │         │
//!    Tsa (key, certificate, clock guard) ◀───────────────────────────────────────┘         │
//!    follower listeners: IssuerWatcher, index, OCSP cache, CRL service ◀─ Follower(clock) ─┘
//!    http::AppState ─▶ http::routers (in-process tests stop here: `oneshot`, no socket)
//!
//!  App::run: listeners, the follower, CRL schedule, OCSP upkeep, TSA writer, limiter sweep,
//!            audit-head stamper; until stopped, then graceful shutdown.
//!            the notification worker (outbox delivery, breach and expiry scans);
//!            until stopped, then graceful shutdown.
//! ```
//!
//! Nothing below this module builds a clock, a store or a key backend of its own, so a test
//! builds an [`App`] on a [`crate::clock::FakeClock`] and moves time for every service at
//! once. `cli` is the only module that imports this one.

pub mod issuers;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, KeyBackendConfig, ROOT};
use crate::crl::CrlService;
use crate::datadir::{self, DataDirError};
use crate::http::{self, AppState, ListenError, Routers, StateParts};
use crate::index::RevocationIndex;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::ocsp::{OcspParts, OcspService};
use crate::store::cursor::FeedPosition;
use crate::store::follow::{ChangeListener, Follower};
use crate::tsa::Tsa;
use issuers::IssuerWatcher;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the OCSP responder certificates' expiry is checked.
const OCSP_UPKEEP_PERIOD: Duration = Duration::from_secs(3600);
/// The shortest pre-signing period, however short the responses' cache lifetime: one pass
/// over a large index takes minutes of signing.
const MIN_PRESIGN_PERIOD: Duration = Duration::from_secs(600);

/// How often responses are pre-signed, when `[ocsp] presign` is on: every half cache lifetime
/// (a response is served from the cache from its signing until `nextUpdate − refresh_before`),
/// so every response is re-signed at least once before it falls due and a request never has to
/// wait for a signature. 24 hours with the defaults (96 h validity, 48 h refresh_before); at
/// least [`MIN_PRESIGN_PERIOD`].
pub fn presign_period(ocsp: &crate::config::OcspConfig) -> Duration {
    let lifetime = ocsp.validity_secs.saturating_sub(ocsp.refresh_before_secs);
    Duration::from_secs(lifetime / 2).max(MIN_PRESIGN_PERIOD)
}

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The data directory could not be opened or initialised.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// A service could not be built (OCSP responder, TSA, revocation index).
    #[error("{0}")]
    Service(String),
    /// The listeners could not be started.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The process could not set up its runtime or signal handlers.
    #[error("{0}")]
    Runtime(String),
}

/// The wired daemon: every service, built once, on one clock.
pub struct App {
    state: Arc<AppState>,
    follower: Arc<Follower<dyn crate::store::Store>>,
    notifier: Arc<Notifier>,
    clock: Arc<dyn Clock>,
}

/// After the RA commits: the status view catches up at once (one poll of the same follower
/// `run` drives, so nothing is delivered twice) and the notifier wakes.
struct Aftercare {
    follower: Arc<Follower<dyn crate::store::Store>>,
    waker: Arc<tokio::sync::Notify>,
}

impl crate::ra::desk::AfterCommit for Aftercare {
    fn status_changed(&self) {
        // A full batch means more are waiting: keep polling until this commit is in.
        loop {
            match self.follower.poll() {
                Ok(p) if p.more => continue,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "bringing the status view up to date after an RA commit; the follower retries");
                    return;
                }
            }
        }
    }

    fn notices_queued(&self) {
        self.waker.notify_one();
    }
}

impl App {
    /// Opens an initialised data directory and builds every service on `clock`: no socket is
    /// opened and no task spawned. `adjust` changes the configuration read from the directory
    /// before anything uses it (`pkid serve`'s listener overrides; a test's settings).
    pub fn build(
        data: &Path,
        clock: Arc<dyn Clock>,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Self, AppError> {
        let metrics = Arc::new(Metrics::new());
        let opened = datadir::open_metered(data, metrics.clone(), clock.clone())?;
        let mut config = (*opened.config).clone();
        adjust(&mut config);
        crate::logging::apply_level(&config.log.level);
        let (Some(authority), Some(keys)) = (opened.authority, opened.keys) else {
            return Err(AppError::Service("keys were not loaded".into()));
        };
        let store = opened.store;
        let tsa = Tsa::open(
            &config,
            keys.as_ref(),
            store.clone(),
            clock.clone(),
            metrics.clone(),
        )
        .map_err(|e| {
            AppError::Service(format!(
                "timestamp authority: {e} (fix it, or set [tsa] enabled = false)"
            ))
        })?;

        // Before the index is built, so what it loads has no issuance left half-done. Only rows
        // older than any live issuance can be are touched (`ra::stale_pending_after`).
        let reconciled = crate::ra::RegistrationAuthority::new(authority.clone())
            .reconcile("pkid")
            .map_err(|e| AppError::Service(format!("reconciling pending issuances: {e}")))?;
        if reconciled != crate::ra::Reconciled::default() {
            tracing::warn!(
                completed = reconciled.completed.len(),
                abandoned = reconciled.abandoned.len(),
                skipped = reconciled.skipped.len(),
                "reconciled issuances left pending by a process that died"
            );
        }

        let started = Instant::now();
        let names: Vec<String> = authority.issuers().iter().map(|i| i.name.clone()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let index = Arc::new(
            RevocationIndex::build(store.as_ref(), &names)
                .map_err(|e| AppError::Service(format!("revocation index: {e}")))?,
        );
        let entries: usize = names
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

        let ocsp = if config.ocsp.enabled {
            let mut served = Vec::new();
            for issuer in authority.issuers().iter().filter(|i| i.name != ROOT) {
                served.push(datadir::issuers::responder(
                    data,
                    store.as_ref(),
                    keys.as_ref(),
                    issuer,
                    Some(&metrics),
                )?);
            }
            let service = OcspService::new(OcspParts {
                issuers: served,
                inline_signing: matches!(config.keys.backend, KeyBackendConfig::Software),
                index: index.clone(),
                config: config.ocsp.clone(),
                clock: clock.clone(),
                metrics: metrics.clone(),
            })
            .map_err(|e| AppError::Service(format!("OCSP responder: {e}")))?;
            service.check_responder_expiry();
            Some(Arc::new(service))
        } else {
            None
        };

        let crl = config.crl.enabled.then(|| {
            let service = Arc::new(CrlService::new(
                authority.clone(),
                config.crl.clone(),
                &config.server.public_url,
                "pkid",
                Some(metrics.clone()),
            ));
            // Before the listeners open, so the first request finds a CRL (as the index is
            // built before OCSP is served). A failure is logged; the schedule retries.
            let started = Instant::now();
            match service.start() {
                Ok(()) => tracing::info!(elapsed = ?started.elapsed(), "CRLs ready"),
                Err(e) => {
                    tracing::error!(error = %e, "CRLs could not be prepared; retrying on schedule")
                }
            }
            service
        });

        // The watcher first: a new issuer is served before the index and caches see the
        // batch that announced it.
        let mut listeners: Vec<Arc<dyn ChangeListener>> = vec![
            Arc::new(IssuerWatcher {
                data: data.to_path_buf(),
                store: store.clone(),
                keys: keys.clone(),
                authority: authority.clone(),
                index: index.clone(),
                ocsp: ocsp.clone(),
                metrics: metrics.clone(),
            }),
            index.clone(),
        ];
        if let Some(o) = &ocsp {
            listeners.push(o.clone());
        }
        if let Some(c) = &crl {
            listeners.push(c.clone());
        }
        let desk = Arc::new(
            crate::ra::desk::RequestDesk::open(
                &config,
                store.clone(),
                Some(authority.clone()),
                Some(keys.as_ref()),
                Some(index.clone()),
                clock.clone(),
            )
            .map_err(|e| AppError::Service(format!("registration authority: {e}")))?,
        );
        let notifier = Arc::new(
            Notifier::new(
                store.clone(),
                &config.notify,
                clock.clone(),
                metrics.clone(),
            )
            .map_err(|e| AppError::Service(format!("notifications: {e}")))?,
        );
        let state = Arc::new(AppState::new(StateParts {
            desk: Some(desk),
            data_dir: data.to_path_buf(),
            config,
            authority,
            store,
            keys,
            metrics,
            index,
            ocsp,
            crl,
            tsa,
        }));
        let follower = Arc::new(Follower::new(
            state.store.clone(),
            listeners,
            &FeedPosition::settled(state.index.applied_seq()),
            state.config.load().store.gap_timeout,
            clock.clone(),
            state.metrics.change_seq.clone(),
        ));
        if let Some(desk) = &state.desk {
            desk.after_commit(Arc::new(Aftercare {
                follower: follower.clone(),
                waker: notifier.waker(),
            }));
        }
        Ok(Self {
            state,
            follower,
            notifier,
            clock,
        })
    }

    /// What every handler reaches.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The notification worker: its [`Notifier::waker`] is what the RA wakes after a commit
    /// that queued notices.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// The routers of both listeners (for in-process tests, and for [`App::run`]).
    pub fn routers(&self) -> Routers {
        http::routers(&self.state)
    }

    /// The follower of the store's change feed delivering to this app's listeners (the issuer
    /// watcher, the index, the OCSP cache, the CRL service), from the index's position when
    /// the app was built. One per app: [`App::run`] drives it and the RA polls it after each
    /// issuance or revocation.
    pub fn follower(&self) -> Arc<Follower<dyn crate::store::Store>> {
        self.follower.clone()
    }

    /// Serves until `stop` completes: the listeners, the change follower, the CRL schedule,
    /// OCSP upkeep, the TSA's record writer, the rate limiter's sweep and the audit-head
    /// stamper (every `ra.audit_stamp_minutes`, when the TSA is enabled); then stops accepting,
    /// lets in-flight requests finish within `shutdown_grace_secs` and writes the last TSA
    /// records. `reload` is called for each configuration reload request (SIGHUP).
    pub async fn run(
        self,
        stop: impl Future<Output = ()>,
        mut reload: impl FnMut(&AppState),
    ) -> Result<(), AppError> {
        let state = self.state.clone();
        let config = state.config.load_full();
        let (stop_tx, stop_rx) = watch::channel(false);
        let drain = Arc::new(http::Drain::new());
        let tasks = http::listen(&state, self.routers(), &stop_rx, &drain).await?;
        let follower = self.follower();
        {
            let state = state.clone();
            tokio::spawn(follower.run(
                move || state.config.load().store.follow_interval,
                stop_rx.clone(),
            ));
        }
        tokio::spawn(http::sweep_limiter(state.clone(), stop_rx.clone()));
        // Remote signing: approved central requests become keys, certificates and accounts.
        if let Some(desk) = state.desk.clone() {
            let csc = &config.csc;
            let service = crate::csc::http::service(&state);
            if let Some(w) =
                crate::csc::fulfil::Fulfiller::new(desk, state.store.clone(), csc, service)
            {
                tokio::spawn(Arc::new(w).run(stop_rx.clone()));
            }
        }
        if let Some(tsa) = &state.tsa {
            tsa.start();
        }
        if let Some(ocsp) = state.ocsp.clone() {
            let presign = config.ocsp.presign.then(|| presign_period(&config.ocsp));
            tokio::spawn(ocsp_upkeep(ocsp, presign, stop_rx.clone()));
        }
        if let Some(crl) = state.crl.clone() {
            tokio::spawn(crl.run(stop_rx.clone()));
        }
        if let Some(desk) = state.desk.clone() {
            tokio::spawn(ra_upkeep(desk, stop_rx.clone()));
        }
        let stamper = match (&state.tsa, config.ra.audit_stamp_minutes) {
            (Some(tsa), minutes) if minutes > 0 => Some(tokio::spawn(crate::audit_stamps::run(
                state.store.clone(),
                tsa.clone(),
                self.clock.clone(),
                Duration::from_secs(u64::from(minutes) * 60),
                stop_rx.clone(),
            ))),
            _ => None,
        };
        let notifier = tokio::spawn(self.notifier.clone().run(stop_rx.clone()));
        tracing::info!(data = %state.data_dir.display(), keys = %state.keys.describe(), "pkid serving");
        let mut reloads = reload_requests();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some(()) = reloads.recv() => reload(&state),
            }
        }
        tracing::info!("shutting down: no new connections; waiting for in-flight requests");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        match tokio::time::timeout(config.server.shutdown_grace, drain.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => {
                tracing::warn!(grace = ?config.server.shutdown_grace, "grace period over; closing remaining connections")
            }
        }
        // A stamp in progress finishes before the TSA stops.
        if let Some(stamper) = stamper {
            let _ = stamper.await;
        }
        if let Some(tsa) = &state.tsa {
            tsa.shutdown().await;
        }
        // A delivery in progress finishes (or times out) before the worker sees the stop; an
        // undelivered message stays queued for the next start.
        if tokio::time::timeout(config.server.shutdown_grace, notifier)
            .await
            .is_err()
        {
            tracing::warn!("notification worker still busy at shutdown; its message stays queued");
        }
        Ok(())
    }
}

/// SIGHUP as a stream of reload requests (empty where it cannot be installed).
fn reload_requests() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send(()).await.is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler; reload needs a restart")
        }
    }
    rx
}

/// SIGHUP: re-reads the configuration (with the command line's overrides, `adjust`) and
/// applies what is safe to change live.
fn reload_from_disk(state: &AppState, adjust: &(dyn Fn(&mut Config) + Send + Sync)) {
    match Config::load(&state.data_dir) {
        Ok(mut new) => {
            adjust(&mut new);
            crate::logging::apply_level(&new.log.level);
            state.reload(&new);
            tracing::info!(
                "configuration reloaded (log level, rate limit, body limit, [ra], [est] labels)"
            );
        }
        Err(e) => tracing::error!(error = %e, "reload refused; keeping the running configuration"),
    }
}

/// The responder certificates' expiry check (hourly) and, when configured, pre-signing (at
/// start, then every [`presign_period`]).
/// How often closed requests past their retention are looked for.
const RA_UPKEEP_PERIOD: Duration = Duration::from_secs(3600);

/// The RA's periodic work: erasing personal data past its retention.
async fn ra_upkeep(desk: Arc<crate::ra::desk::RequestDesk>, mut stop: watch::Receiver<bool>) {
    loop {
        let d = desk.clone();
        let erased = tokio::task::spawn_blocking(move || {
            d.erase_expired(&crate::ra::desk::RequestDesk::console("pkid"))
        })
        .await;
        match erased {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(requests = n, "personal data past its retention erased"),
            Ok(Err(e)) => tracing::error!(error = %e, "erasing personal data past its retention"),
            Err(e) => tracing::error!(error = %e, "erasure task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RA_UPKEEP_PERIOD) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn ocsp_upkeep(
    ocsp: Arc<OcspService>,
    presign: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_check: Option<Instant> = None;
    let mut last_presign: Option<Instant> = None;
    loop {
        if last_check.is_none_or(|t| t.elapsed() >= OCSP_UPKEEP_PERIOD) {
            ocsp.check_responder_expiry();
            last_check = Some(Instant::now());
        }
        if let Some(period) = presign.filter(|p| last_presign.is_none_or(|t| t.elapsed() >= *p)) {
            let svc = ocsp.clone();
            let started = Instant::now();
            match tokio::task::spawn_blocking(move || svc.presign()).await {
                Ok(n) => {
                    tracing::info!(signed = n, elapsed = ?started.elapsed(), next_in = ?period, "OCSP responses pre-signed")
                }
                Err(e) => tracing::error!(error = %e, "pre-signing task failed"),
            }
            last_presign = Some(Instant::now());
        }
        let wait = presign.map_or(OCSP_UPKEEP_PERIOD, |p| p.min(OCSP_UPKEEP_PERIOD));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// SIGTERM and SIGINT, installed before anything else starts, so a stop request at any point
/// of start-up ends the process gracefully (exit 0) rather than killing it.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self, AppError> {
        use tokio::signal::unix::{signal, SignalKind};
        let failed = |e: std::io::Error| AppError::Runtime(format!("signal handlers: {e}"));
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(failed)?,
            int: signal(SignalKind::interrupt()).map_err(failed)?,
        })
    }

    async fn received(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// `pkid serve`: initialises an empty data directory, builds the [`App`] on the system clock
/// and serves until SIGTERM or SIGINT. The signal handlers come first: a stop requested
/// during start-up lets the start-up step in progress finish (an initialisation is never
/// left half-done), then exits without serving.
pub fn serve(
    data: &Path,
    adjust: impl Fn(&mut Config) + Send + Sync + 'static,
    actor: &str,
) -> Result<(), AppError> {
    // The command line's overrides (`--http`, `--https`) apply at start and to every reload,
    // so a reload compares like with like.
    let adjust = Arc::new(adjust);
    // The runtime and the stop handlers before anything else, even reading the configuration
    // for the log format: until they are installed, SIGTERM's default action kills the process.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Runtime(format!("runtime: {e}")))?;
    let mut signals = {
        let _context = runtime.enter();
        StopSignals::install()?
    };
    let json = Config::load(data).map(|c| c.log.json).unwrap_or(false);
    crate::logging::init_serve(json);
    let data = data.to_path_buf();
    let actor = actor.to_string();
    runtime.block_on(async move {
        let at_start = adjust.clone();
        let startup = tokio::task::spawn_blocking(move || -> Result<App, AppError> {
            if !datadir::is_initialised(&data)? {
                tracing::info!(data = %data.display(), "empty data directory: initialising the CA hierarchy");
                datadir::init(&data, &datadir::InitOptions::default(), &actor)?;
            }
            App::build(&data, Arc::new(SystemClock), move |c| at_start(c))
        });
        tokio::pin!(startup);
        let app = tokio::select! {
            built = &mut startup => built,
            _ = signals.received() => {
                tracing::info!("stop requested during start-up; exiting once the current step is done");
                let _ = startup.await;
                return Ok(());
            }
        };
        let app = app.map_err(|e| AppError::Runtime(format!("start-up task: {e}")))??;
        app.run(signals.received(), move |state| reload_from_disk(state, &*adjust))
            .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ocsp(text: &str) -> crate::config::OcspConfig {
        Config::parse(Path::new("/nonexistent"), Some(text), "test")
            .expect("config")
            .ocsp
    }

    #[test]
    fn presigning_runs_every_half_cache_lifetime() {
        // Defaults: 96 h validity, re-signed 48 h before nextUpdate: cached 48 h, pre-signed
        // every 24 h.
        assert_eq!(presign_period(&ocsp("")), Duration::from_secs(24 * 3600));
        let short = ocsp("[ocsp]\nvalidity_hours = 10\nrefresh_before_hours = 8\n");
        assert_eq!(presign_period(&short), Duration::from_secs(3600));
        let tiny = ocsp("[ocsp]\nvalidity_hours = 9\nrefresh_before_hours = 8\n");
        assert_eq!(presign_period(&tiny), Duration::from_secs(1800));
    }
}
