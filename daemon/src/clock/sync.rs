//! Whether the clock can be vouched for: the kernel's synchronisation state, and the guard that
//! applies `[tsa] clock_sync` to it before a timestamp is issued.

use super::kernel::KernelClock;
use crate::config::ClockSyncMode;
use prometheus::IntGauge;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where the kernel clock state comes from: the kernel, or a test's answer.
pub trait ClockSyncSource: Send + Sync {
    /// The current state, `None` where the platform cannot tell.
    fn read(&self) -> Option<KernelClock>;
}

/// The running kernel, through `adjtimex(2)`.
pub struct KernelSyncSource;

impl ClockSyncSource for KernelSyncSource {
    fn read(&self) -> Option<KernelClock> {
        super::kernel::read()
    }
}

/// Applies [`ClockSyncMode`] to what the [`ClockSyncSource`] says: the guard a service that
/// vouches for the time (the TSA) consults before each use of the clock.
pub struct ClockGuard {
    mode: ClockSyncMode,
    source: Box<dyn ClockSyncSource>,
    accuracy_us: i64,
    seen_synchronised: AtomicBool,
    gauge: IntGauge,
}

/// Why the clock may not be vouched for now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ClockUnfit(pub String);

impl ClockGuard {
    /// A guard in `mode` over `source`, refusing above `accuracy_us` of kernel maximum error;
    /// `gauge` shows the last reading (1 synchronised, 0 not, -1 unknown).
    pub fn new(
        mode: ClockSyncMode,
        source: Box<dyn ClockSyncSource>,
        accuracy_us: i64,
        gauge: IntGauge,
    ) -> Self {
        Self {
            mode,
            source,
            accuracy_us,
            seen_synchronised: AtomicBool::new(false),
            gauge,
        }
    }

    /// What the source says now, without judging it.
    pub fn read(&self) -> Option<KernelClock> {
        self.source.read()
    }

    /// Whether the clock may be used now, under the guard's mode.
    pub fn check(&self) -> Result<(), ClockUnfit> {
        if self.mode == ClockSyncMode::Ignore {
            return Ok(());
        }
        let state = self.source.read();
        let gauge = &self.gauge;
        let Some(k) = state else {
            gauge.set(-1);
            return match self.mode {
                ClockSyncMode::Require => Err(ClockUnfit(
                    "the platform does not report clock synchronisation".into(),
                )),
                ClockSyncMode::Auto | ClockSyncMode::Ignore => Ok(()),
            };
        };
        gauge.set(i64::from(!k.unsynchronised));
        if !k.unsynchronised {
            self.seen_synchronised.store(true, Ordering::Relaxed);
            if k.max_error_us > self.accuracy_us {
                return Err(ClockUnfit(format!(
                    "kernel maximum clock error {} µs exceeds the declared accuracy {} µs",
                    k.max_error_us, self.accuracy_us
                )));
            }
            return Ok(());
        }
        match self.mode {
            ClockSyncMode::Require => Err(ClockUnfit(
                "the kernel reports the clock unsynchronised (STA_UNSYNC)".into(),
            )),
            ClockSyncMode::Auto if self.seen_synchronised.load(Ordering::Relaxed) => {
                Err(ClockUnfit(
                    "the kernel clock lost synchronisation (STA_UNSYNC) while pkid was running"
                        .into(),
                ))
            }
            ClockSyncMode::Auto | ClockSyncMode::Ignore => Ok(()),
        }
    }
}
