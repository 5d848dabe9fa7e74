//! Logging: CLI commands log warnings to stderr; `pkid serve` logs at the configured level,
//! as text or JSON, and SIGHUP can change the level without a restart.

use std::sync::OnceLock;
use tracing_subscriber::{reload, EnvFilter};

type FilterHandle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;
static LOG_FILTER: OnceLock<FilterHandle> = OnceLock::new();

/// Logging for CLI commands: warnings and errors to stderr (RUST_LOG overrides).
pub fn init_cli() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

/// Logging for the daemon: INFO to stderr (RUST_LOG overrides), JSON lines when `json`; the
/// level can later be changed with [`apply_level`].
pub fn init_serve(json: bool) {
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

/// Applies `[log] level` (unless RUST_LOG is set, which wins); an invalid level is logged and
/// the current one kept.
pub fn apply_level(level: &str) {
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
