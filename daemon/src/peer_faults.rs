//! Peer faults — malformed requests, wrong media types, unreadable bodies — logged as a
//! rate-limited summary instead of one line each.
//!
//! ```text
//! refused request ─▶ metrics (counted exactly, by the caller) ─▶ PeerFaults::record
//!                      DEBUG line, always (off by default)
//!                      INFO line: the first of its kind, then at most one per kind every
//!                      SUMMARY_INTERVAL, with the count since the previous line
//! ```
//!
//! Anyone can send garbage, so a line per refusal lets one client write the log as fast as it
//! can send (a fuzzing run of 86,852 requests once wrote 56,049 INFO lines). The exact counts
//! are in the metrics (`pkid_ocsp_responses_total`, `pkid_tsa_rejections_total`,
//! `pkid_http_requests_total`); the log keeps a sample. Faults of ours (a signer or the store
//! failing) are not peer faults: they stay WARN/ERROR lines, one each.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Shortest time between two INFO lines of one kind: often enough that an operator watching
/// the log sees a flood begin and go on, rarely enough that it cannot grow the log by more than
/// a line per kind per interval.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// The rate-limited log of one protocol's peer faults.
pub struct PeerFaults {
    /// Named in every line (`OCSP`, `TSA`).
    protocol: &'static str,
    /// Per kind: when its last INFO line was written, and faults since (not yet reported).
    kinds: Mutex<HashMap<&'static str, Summary>>,
}

#[derive(Default)]
struct Summary {
    last_line: Option<Instant>,
    since: u64,
}

impl PeerFaults {
    /// An empty log for `protocol`.
    pub fn new(protocol: &'static str) -> Self {
        Self {
            protocol,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Records one refusal of kind `kind` (a fixed name, such as a wire status) with what was
    /// wrong. Writes an INFO line for the first of its kind and then at most one per
    /// [`SUMMARY_INTERVAL`]; `count` in that line is the number of refusals of the kind since
    /// the previous line (this one included). Faults after the last line are reported with the
    /// next one; the metrics hold the exact totals at all times.
    pub fn record(&self, kind: &'static str, detail: &dyn Display) {
        tracing::debug!(protocol = self.protocol, kind, detail = %detail, "request refused");
        let now = Instant::now();
        let count = {
            let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
            let summary = kinds.entry(kind).or_default();
            summary.since += 1;
            if summary
                .last_line
                .is_some_and(|t| now.duration_since(t) < SUMMARY_INTERVAL)
            {
                return;
            }
            summary.last_line = Some(now);
            std::mem::take(&mut summary.since)
        };
        tracing::info!(
            protocol = self.protocol,
            kind,
            count,
            last = %detail,
            "requests refused (peer faults: at most one line per kind every 10 s, count since the previous one)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_carry_over_to_the_next_line() {
        let log = PeerFaults::new("TEST");
        for _ in 0..5 {
            log.record("malformed", &"x");
        }
        log.record("other", &"y");
        let kinds = log.kinds.lock().expect("lock");
        // The first of each kind was reported at once (count 1); four are waiting.
        assert_eq!(kinds["malformed"].since, 4);
        assert_eq!(kinds["other"].since, 0);
    }
}
