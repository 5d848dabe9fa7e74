//! The clock, injected so validity windows and deadlines are testable.

use std::sync::Arc;

pub mod kernel;
pub mod sync;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Source of the current time, in Unix seconds.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock tests set and advance.
pub struct FakeClock(AtomicU64);

impl FakeClock {
    /// A clock standing at `now`.
    pub fn new(now: u64) -> Self {
        Self(AtomicU64::new(now))
    }

    /// Moves the clock forward.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A [`Clock`] as governor's clock, so that rate limits run on the daemon's time (a test's
/// fake clock holds a limit still however slowly the test runs). Second resolution: right for
/// limits counted per minute, not for per-second rates.
#[derive(Clone)]
pub struct LimiterClock(pub Arc<dyn Clock>);

impl governor::clock::Clock for LimiterClock {
    type Instant = governor::nanos::Nanos;

    fn now(&self) -> Self::Instant {
        std::time::Duration::from_secs(self.0.now()).into()
    }
}
