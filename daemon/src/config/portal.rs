//! The `[portal]` section: the registration portal's sessions and login limits (see
//! `docs/portal.md`).

use serde::Deserialize;
use std::time::Duration;

/// Longest idle timeout, seconds: a forgotten session on a shared office computer must end.
const MAX_IDLE_SECS: u64 = 8 * 3600;
/// Most failed-login allowance per minute: above this the limit stops slowing a guesser.
const MAX_LOGIN_ATTEMPTS: u32 = 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPortal {
    session_idle_secs: u64,
    login_attempts_per_minute: u32,
    max_sessions: usize,
}

impl Default for RawPortal {
    fn default() -> Self {
        Self {
            session_idle_secs: 900,
            login_attempts_per_minute: 5,
            max_sessions: 10_000,
        }
    }
}

/// Portal settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortalConfig {
    /// A session unused this long ends (15 minutes).
    pub session_idle: Duration,
    /// Login attempts allowed per minute for one operator id and for one client address (5).
    pub login_attempts_per_minute: u32,
    /// Sessions held in memory at most (10,000); a login beyond it is refused until some end.
    pub max_sessions: usize,
}

impl PortalConfig {
    pub(super) fn from_raw(r: RawPortal) -> Result<Self, String> {
        if !(60..=MAX_IDLE_SECS).contains(&r.session_idle_secs) {
            return Err(format!(
                "portal.session_idle_secs must be between 60 and {MAX_IDLE_SECS}"
            ));
        }
        if !(1..=MAX_LOGIN_ATTEMPTS).contains(&r.login_attempts_per_minute) {
            return Err(format!(
                "portal.login_attempts_per_minute must be between 1 and {MAX_LOGIN_ATTEMPTS}"
            ));
        }
        if !(1..=1_000_000).contains(&r.max_sessions) {
            return Err("portal.max_sessions must be between 1 and 1000000".into());
        }
        Ok(Self {
            session_idle: Duration::from_secs(r.session_idle_secs),
            login_attempts_per_minute: r.login_attempts_per_minute,
            max_sessions: r.max_sessions,
        })
    }
}
