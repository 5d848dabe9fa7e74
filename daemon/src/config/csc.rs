//! The `[csc]` section: centralised remote signing over the CSC API v2 (see
//! `docs/remote-signing.md`): subscriber accounts, activation, access tokens, SADs and the lock.

use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCsc {
    enabled: bool,
    portal_url: String,
    activation_hours: u64,
    token_secs: u64,
    sad_secs: u64,
    transaction_secs: u64,
    max_signatures: u32,
    max_otp_failures: u32,
    fulfil_interval_secs: u64,
}

impl Default for RawCsc {
    fn default() -> Self {
        Self {
            enabled: true,
            portal_url: String::new(),
            activation_hours: 72,
            token_secs: 900,
            sad_secs: 300,
            transaction_secs: 3600,
            max_signatures: 100,
            max_otp_failures: 5,
            fulfil_interval_secs: 10,
        }
    }
}

/// Remote-signing settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CscConfig {
    /// Whether central requests are fulfilled and `/csc/v2/` is served.
    pub enabled: bool,
    /// The HTTPS base the activation link starts with (no trailing slash). Empty in the file:
    /// `[server] public_url` with `https://`.
    pub portal_url: String,
    /// How long an activation link stays valid (72 hours).
    pub activation: Duration,
    /// Lifetime of an access token from `auth/login` (15 minutes).
    pub token_lifetime: Duration,
    /// Lifetime of a SAD from `credentials/authorize` (5 minutes).
    pub sad_lifetime: Duration,
    /// Longest a transaction may go on with `credentials/extendTransaction`, from the OTP
    /// that authorised it (1 hour).
    pub transaction_lifetime: Duration,
    /// Most signatures one SAD may authorise (`numSignatures`).
    pub max_signatures: u32,
    /// Consecutive wrong OTPs (or passwords) that lock an account.
    pub max_otp_failures: u32,
    /// How often the fulfilment worker looks for approved central requests.
    pub fulfil_interval: Duration,
}

impl CscConfig {
    pub(super) fn from_raw(r: RawCsc, public_url: &str) -> Result<Self, String> {
        if !(1..=24 * 30).contains(&r.activation_hours) {
            return Err("csc.activation_hours must be between 1 and 720".into());
        }
        if !(60..=3600).contains(&r.token_secs) {
            return Err("csc.token_secs must be between 60 and 3600".into());
        }
        if !(10..=3600).contains(&r.sad_secs) {
            return Err("csc.sad_secs must be between 10 and 3600".into());
        }
        if !(r.sad_secs..=86_400).contains(&r.transaction_secs) {
            return Err("csc.transaction_secs must be between csc.sad_secs and 86400".into());
        }
        if !(1..=1000).contains(&r.max_signatures) {
            return Err("csc.max_signatures must be between 1 and 1000".into());
        }
        if !(1..=20).contains(&r.max_otp_failures) {
            return Err("csc.max_otp_failures must be between 1 and 20".into());
        }
        if !(1..=3600).contains(&r.fulfil_interval_secs) {
            return Err("csc.fulfil_interval_secs must be between 1 and 3600".into());
        }
        let portal_url = if r.portal_url.is_empty() {
            let rest = public_url
                .strip_prefix("http://")
                .or_else(|| public_url.strip_prefix("https://"))
                .unwrap_or(public_url);
            format!("https://{rest}")
        } else if r.portal_url.starts_with("https://") {
            r.portal_url
        } else {
            return Err("csc.portal_url must start with https://".into());
        };
        Ok(Self {
            enabled: r.enabled,
            portal_url: portal_url.trim_end_matches('/').to_owned(),
            activation: Duration::from_secs(r.activation_hours * 3600),
            token_lifetime: Duration::from_secs(r.token_secs),
            sad_lifetime: Duration::from_secs(r.sad_secs),
            transaction_lifetime: Duration::from_secs(r.transaction_secs),
            max_signatures: r.max_signatures,
            max_otp_failures: r.max_otp_failures,
            fulfil_interval: Duration::from_secs(r.fulfil_interval_secs),
        })
    }
}
