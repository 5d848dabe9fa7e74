//! The `[crl]` section: how CRLs are published (see `docs/crl.md`).

use serde::Deserialize;
use std::time::Duration;

/// Most partitions an issuer's CRL may be split into: each partition is a CRL the daemon keeps
/// in memory and re-signs on schedule, so thousands are plenty for any population.
const MAX_SHARDS: u32 = 4096;
/// Longest debounce after a revocation, in milliseconds: a revocation must reach the CRL
/// within a minute.
const MAX_DEBOUNCE_MS: u64 = 60_000;
/// Longest CRL validity, in hours (a year).
const MAX_NEXT_UPDATE_HOURS: u64 = 8760;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCrl {
    enabled: bool,
    next_update_hours: u64,
    deltas: bool,
    delta_next_update_hours: u64,
    shards: u32,
    debounce_ms: u64,
    expired_grace_hours: u64,
    max_age_secs: u64,
}

/// CRL publication settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlConfig {
    /// Whether CRLs are generated and served at `/crl/...`.
    pub enabled: bool,
    /// nextUpdate − thisUpdate of complete CRLs, seconds. Each CRL is re-signed half-way.
    pub next_update_secs: u64,
    /// Whether delta CRLs are published (and certificates carry freshestCRL).
    pub deltas: bool,
    /// nextUpdate − thisUpdate of delta CRLs, seconds.
    pub delta_next_update_secs: u64,
    /// Partitions of the issuing CA's CRL; 0 = one complete CRL per issuer.
    pub shards: u32,
    /// Wait after a revocation before regenerating, so a burst makes one CRL.
    pub debounce: Duration,
    /// How long an expired certificate stays listed, seconds.
    pub expired_grace_secs: u64,
    /// Ceiling on Cache-Control max-age, seconds.
    pub max_age_secs: u64,
}

impl TryFrom<RawCrl> for CrlConfig {
    type Error = String;

    fn try_from(r: RawCrl) -> Result<Self, String> {
        if !(1..=MAX_NEXT_UPDATE_HOURS).contains(&r.next_update_hours) {
            return Err(format!(
                "crl.next_update_hours must be between 1 and {MAX_NEXT_UPDATE_HOURS}"
            ));
        }
        if !(1..=r.next_update_hours).contains(&r.delta_next_update_hours) {
            return Err(
                "crl.delta_next_update_hours must be between 1 and next_update_hours".into(),
            );
        }
        if r.shards > MAX_SHARDS {
            return Err(format!("crl.shards must be at most {MAX_SHARDS}"));
        }
        if r.debounce_ms > MAX_DEBOUNCE_MS {
            return Err(format!("crl.debounce_ms must be at most {MAX_DEBOUNCE_MS}"));
        }
        // RFC 5280 §3.3: an entry may leave only after it appeared on one regularly scheduled
        // CRL issued after the certificate expired. CRLs are re-signed every half validity.
        if r.expired_grace_hours < r.next_update_hours.div_ceil(2) {
            return Err(
                "crl.expired_grace_hours must be at least half of next_update_hours, so an expired \
                 certificate still appears on one scheduled CRL (RFC 5280 §3.3)"
                    .into(),
            );
        }
        Ok(Self {
            enabled: r.enabled,
            next_update_secs: r.next_update_hours * 3600,
            deltas: r.deltas,
            delta_next_update_secs: r.delta_next_update_hours * 3600,
            shards: r.shards,
            debounce: Duration::from_millis(r.debounce_ms),
            expired_grace_secs: r.expired_grace_hours * 3600,
            max_age_secs: r.max_age_secs,
        })
    }
}
