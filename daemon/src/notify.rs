//! The RA's notifications: composed into the store's outbox with the event that causes them,
//! delivered at least once by a worker (SMTP, webhook), and the scanners that queue breach
//! notices and renewal reminders. `docs/notify.md` says who is told what.
//!
//! ```text
//! RA transition ─(same transaction)─▶ outbox ◀─(same transaction)─ scan (every minute):
//!   messages::compose(Notice)                │                      breaches, expiry reminders
//!                                            ▼
//! Notifier::run: every poll, or at once when woken ─▶ due(now) ─▶ email::Mailer (SMTP)
//!                                                               └▶ webhook::WebhookSender (POST)
//!     accepted ─▶ mark_delivered      failed ─▶ mark_failed(next = now + backoff(attempts))
//! ```
//!
//! A message is marked delivered only after the server accepted it: a crash in between sends
//! it again (at least once), and its idempotency key (the `Idempotency-Key` header, the mail's
//! `Message-ID`) lets the receiver drop the repeat. A message is never dropped: failures back
//! off from [`FIRST_RETRY`] doubling to [`MAX_RETRY`], for as long as it takes.

pub mod email;
pub mod messages;
pub mod scan;
pub mod webhook;

use crate::clock::Clock;
use crate::config::NotifyConfig;
use crate::metrics::Metrics;
use crate::store::{Channel, QueuedMessage, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// The wait after a first failed attempt.
pub const FIRST_RETRY: Duration = Duration::from_secs(30);
/// The longest wait between attempts: a relay down for a day is retried every hour.
pub const MAX_RETRY: Duration = Duration::from_secs(3600);
/// How often the breach and expiry scanners run.
pub const SCAN_PERIOD: Duration = Duration::from_secs(60);
/// Messages taken per pass; a full batch is followed at once by the next.
const DELIVERY_BATCH: usize = 50;
/// At most one failure line per channel per this period (the rest are counted into it).
const FAILURE_LOG_PERIOD: Duration = Duration::from_secs(60);

/// The wait before the next attempt of a message that has failed `attempts` times before this
/// failure: 30 s, 60 s, 120 s, … at most an hour.
pub fn backoff(attempts: u32) -> Duration {
    let factor = 1u64.checked_shl(attempts.min(20)).unwrap_or(u64::MAX);
    FIRST_RETRY
        .saturating_mul(u32::try_from(factor).unwrap_or(u32::MAX))
        .min(MAX_RETRY)
}

/// Why one delivery attempt failed. Kept (as [`DeliveryError::note`]) in the row's
/// `last_error` and logged; never holds a recipient address or a body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The message's channel is not configured (`[notify.email]` or `[notify.webhook]`
    /// missing): it waits until it is.
    #[error("channel {0} is not configured")]
    NotConfigured(&'static str),
    /// The recipient is not a mail address (a bad organisation or subscriber record).
    #[error("the recipient is not a valid mail address")]
    BadRecipient,
    /// The message could not be built (a header value the protocol cannot carry).
    #[error("the message could not be built: {0}")]
    Malformed(String),
    /// The SMTP server answered with an error code.
    #[error("the server refused it with {code}{}", if *.permanent { " (permanent)" } else { "" })]
    Refused {
        /// The reply code (`421`, `550`, …).
        code: String,
        /// A 5xx reply: retrying will not help until someone fixes the cause.
        permanent: bool,
    },
    /// The webhook answered with a status other than 2xx.
    #[error("the webhook answered {0}")]
    Status(u16),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The TLS handshake failed (certificate, protocol).
    #[error("TLS handshake failed")]
    Tls,
    /// The server could not be reached (refused, reset, not resolved).
    #[error("unreachable: {0}")]
    Unreachable(String),
}

impl DeliveryError {
    /// What is stored in `last_error`: this error's text, which by construction names no
    /// recipient and quotes no body.
    pub fn note(&self) -> String {
        self.to_string()
    }

    /// Whether the cause is on the receiving side or in the network (worth a warning) rather
    /// than in pkid's data or configuration (worth an error).
    pub fn is_remote(&self) -> bool {
        match self {
            Self::NotConfigured(_) | Self::BadRecipient | Self::Malformed(_) => false,
            Self::Refused { .. }
            | Self::Status(_)
            | Self::Timeout
            | Self::Tls
            | Self::Unreachable(_) => true,
        }
    }
}

/// Why the worker could not be set up from `[notify]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifySetupError {
    /// `[notify.email]`.
    #[error(transparent)]
    Mail(#[from] email::MailSetupError),
    /// `[notify.webhook]`.
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookSetupError),
}

/// What one delivery pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Messages the server accepted.
    pub delivered: usize,
    /// Attempts that failed (retried later).
    pub failed: usize,
}

/// Rate-limits failure lines: one per channel per [`FAILURE_LOG_PERIOD`], with the count of
/// those folded into it.
#[derive(Default)]
struct FailureLog {
    last: Option<Instant>,
    folded: u64,
}

/// The delivery worker.
pub struct Notifier {
    store: Arc<dyn Store>,
    config: NotifyConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    mailer: Option<email::Mailer>,
    webhook: Option<webhook::WebhookSender>,
    failures: std::sync::Mutex<[FailureLog; 2]>,
}

impl Notifier {
    /// Sets up the channels `config` names (credentials are read here, once). No connection is
    /// made until a message is due.
    pub fn new(
        store: Arc<dyn Store>,
        config: &NotifyConfig,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, NotifySetupError> {
        let mailer = config.email.as_ref().map(email::Mailer::new).transpose()?;
        let webhook = config
            .webhook
            .as_ref()
            .map(webhook::WebhookSender::new)
            .transpose()?;
        Ok(Self {
            store,
            config: config.clone(),
            clock,
            metrics,
            wake: Arc::new(Notify::new()),
            mailer,
            webhook,
            failures: std::sync::Mutex::new(Default::default()),
        })
    }

    /// The handle that wakes the worker at once: the RA calls `notify_one()` on it after a
    /// transition that queued notices commits, so they leave without waiting for the poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The configuration the worker composes and delivers with.
    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    /// Runs a store call on a blocking thread (SQLite calls block).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task: {e}")))?
    }

    /// One delivery pass: every message due now, batch by batch, each delivered and marked.
    pub async fn deliver_due(&self) -> Result<Delivered, StoreError> {
        let mut done = Delivered::default();
        loop {
            let now = self.clock.now();
            let due = self
                .blocking(move |s| s.as_outbox().due(now, DELIVERY_BATCH))
                .await?;
            let full = due.len() == DELIVERY_BATCH;
            for m in due {
                match self.deliver(&m).await {
                    Ok(()) => {
                        // Marked only now that the server has it: a crash before this line
                        // sends it again, never loses it.
                        let at = self.clock.now();
                        self.blocking(move |s| s.as_outbox().mark_delivered(m.id, at))
                            .await?;
                        self.metrics
                            .notify
                            .delivered
                            .with_label_values(&[m.message.channel.as_str()])
                            .inc();
                        done.delivered += 1;
                    }
                    Err(e) => {
                        let at = self.clock.now();
                        let next = at.saturating_add(backoff(m.attempts).as_secs());
                        let note = e.note();
                        self.log_failure(&m, &e);
                        self.blocking(move |s| s.as_outbox().mark_failed(m.id, at, next, &note))
                            .await?;
                        self.metrics
                            .notify
                            .failed
                            .with_label_values(&[m.message.channel.as_str()])
                            .inc();
                        done.failed += 1;
                    }
                }
            }
            if !full {
                break;
            }
        }
        let pending = self.blocking(|s| s.as_outbox().pending_count()).await?;
        self.metrics
            .notify
            .outbox_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        Ok(done)
    }

    /// One scan: breach notices and renewal reminders queued, the overdue gauge set.
    pub async fn scan(&self) -> Result<scan::Scanned, StoreError> {
        let now = self.clock.now();
        let config = self.config.clone();
        let scanned = self.blocking(move |s| scan::scan(s, &config, now)).await?;
        self.metrics
            .notify
            .overdue_requests
            .set(i64::try_from(scanned.overdue).unwrap_or(i64::MAX));
        if scanned.breaches > 0 || scanned.reminders > 0 {
            tracing::info!(
                breaches = scanned.breaches,
                reminders = scanned.reminders,
                overdue = scanned.overdue,
                "notices queued by the scanners"
            );
        }
        Ok(scanned)
    }

    async fn deliver(&self, m: &QueuedMessage) -> Result<(), DeliveryError> {
        match m.message.channel {
            Channel::Email => match &self.mailer {
                Some(mailer) => mailer.send(m).await,
                None => Err(DeliveryError::NotConfigured("email")),
            },
            Channel::Webhook => match &self.webhook {
                Some(hook) => hook.send(m).await,
                None => Err(DeliveryError::NotConfigured("webhook")),
            },
        }
    }

    /// Logs a failed attempt: the row id, event, channel and cause — never the recipient or
    /// the body — at most once per channel per [`FAILURE_LOG_PERIOD`].
    fn log_failure(&self, m: &QueuedMessage, e: &DeliveryError) {
        let slot = match m.message.channel {
            Channel::Email => 0,
            Channel::Webhook => 1,
        };
        let folded = {
            let Ok(mut logs) = self.failures.lock() else {
                return;
            };
            let log = &mut logs[slot];
            let now = Instant::now();
            if log
                .last
                .is_some_and(|t| now.duration_since(t) < FAILURE_LOG_PERIOD)
            {
                log.folded += 1;
                return;
            }
            log.last = Some(now);
            std::mem::take(&mut log.folded)
        };
        let channel = m.message.channel.as_str();
        let retry_in = backoff(m.attempts);
        if e.is_remote() {
            tracing::warn!(id = m.id, event = %m.message.event, channel, attempts = m.attempts + 1, ?retry_in, similar_failures_not_logged = folded, error = %e, "notification not delivered; will retry");
        } else {
            tracing::error!(id = m.id, event = %m.message.event, channel, attempts = m.attempts + 1, ?retry_in, similar_failures_not_logged = folded, error = %e, "notification not delivered; will retry");
        }
    }

    /// Delivers and scans until `stop`: a delivery pass every `poll` or at once when woken,
    /// the scanners every [`SCAN_PERIOD`] (and at start). A store failure is logged and the
    /// next pass tries again.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut last_scan: Option<Instant> = None;
        loop {
            if last_scan.is_none_or(|t| t.elapsed() >= SCAN_PERIOD) {
                if let Err(e) = self.scan().await {
                    tracing::error!(error = %e, "notification scan failed; retrying next period");
                }
                last_scan = Some(Instant::now());
            }
            if let Err(e) = self.deliver_due().await {
                tracing::error!(error = %e, "notification delivery pass failed; retrying");
            }
            let wait = self.config.poll.min(SCAN_PERIOD);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_thirty_seconds_to_an_hour_and_stays_there() {
        let secs: Vec<u64> = (0..9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(u32::MAX), MAX_RETRY);
    }
}
