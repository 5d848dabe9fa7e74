//! The outbox role: notifications written in the same transaction as the event that causes
//! them, delivered at least once by the notifier (`crate::notify`), and the scans that find
//! breached deadlines and certificates due a renewal reminder.
//!
//! ```text
//! outbox       id → idempotency key (unique), channel, recipient, subject, body, event,
//!                   request, created_at, attempts, next_attempt_at, delivered_at, last_error
//! reminders    serial → queued_at   (a certificate's renewal reminder is queued once)
//! ```
//!
//! A row is never deleted and never given up on: a failed delivery only moves its
//! `next_attempt_at`, so a notice survives any number of failures, restarts and crashes. It is
//! marked delivered only after the server accepted it, so a crash in between re-sends it; the
//! idempotency key lets the receiver drop the duplicate.

use super::StoreError;

/// How a notification leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Mail through the configured SMTP relay (`[notify.email]`).
    Email,
    /// A JSON POST to the configured webhook (`[notify.webhook]`, an SMS gateway).
    Webhook,
}

impl Channel {
    /// Stored name (the `channel` column), also the `channel` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
        }
    }

    /// The channel a stored name denotes.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Self::Email),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }
}

/// A notification to queue: what the RA's transitions and the scanners hand the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Unique per notice, recipient and channel (`"{event}:{request or serial}:{recipient}:{channel}"`):
    /// queuing the same key twice keeps the first, so a retried transaction or a re-run scan
    /// never queues a notice twice; receivers de-duplicate retried deliveries by it.
    pub idempotency_key: String,
    /// How it leaves.
    pub channel: Channel,
    /// The mail address (email), or the audience the gateway looks up (webhook:
    /// `organisation` or `subscriber`).
    pub recipient: String,
    /// The mail subject (email), the event name (webhook).
    pub subject: String,
    /// The mail body, plain UTF-8 text (email); the JSON payload (webhook).
    pub body: String,
    /// What happened (`accepted`, `returned`, `rejected`, `fulfilled`, `breach`,
    /// `expiry-reminder`), for operators reading the outbox.
    pub event: String,
    /// The RA request it is about, if any (a renewal reminder may concern a certificate only).
    pub request: Option<i64>,
    /// The body carries a secret (a one-time revocation code): it is emptied once delivered.
    pub secret: bool,
}

/// A queued notification as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Row id: what [`Outbox::mark_delivered`] and [`Outbox::mark_failed`] name.
    pub id: i64,
    /// The message as queued.
    pub message: OutboxMessage,
    /// When it was queued, Unix seconds.
    pub created_at: u64,
    /// Delivery attempts so far (failed ones: a delivered row keeps the count before it).
    pub attempts: u32,
    /// The earliest time of the next attempt, Unix seconds.
    pub next_attempt_at: u64,
    /// When the server accepted it, Unix seconds; `None` while pending.
    pub delivered_at: Option<u64>,
    /// Why the last attempt failed (no recipient address, no body).
    pub last_error: Option<String>,
}

/// The people of a request who are told about it: the directly managing organisation and the
/// subscriber (personal data: composed into mail, never logged or put in a webhook).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestParties {
    /// The organisation's id (slug), the only one of these a webhook carries.
    pub organisation: String,
    /// The organisation's legal name.
    pub organisation_name: String,
    /// The organisation's contact address; without one it is not mailed.
    pub organisation_email: Option<String>,
    /// The subscriber's full name.
    pub subscriber_name: Option<String>,
    /// The subscriber's official address; without one the subscriber is not mailed.
    pub subscriber_email: Option<String>,
}

/// A request whose deadline has passed while it was still `accepted` or `approved`, with what a
/// breach notice needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverdueRequest {
    /// The request id.
    pub request: i64,
    /// `issue`, `renew`, `modify`, `revoke` or `recover`.
    pub kind: String,
    /// Its organisation and subscriber.
    pub parties: RequestParties,
    /// The deadline that passed, Unix seconds.
    pub due_at: u64,
    /// The certificate concerned (renew, modify, revoke, recover), hex serial.
    pub certificate: Option<String>,
}

/// A valid certificate close to its `notAfter`, with the request that issued it and its
/// organisation: what a renewal reminder needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiringCertificate {
    /// The certificate's serial, hex.
    pub serial: String,
    /// Its notAfter, Unix seconds.
    pub not_after: u64,
    /// The newest request that issued it.
    pub request: i64,
    /// That request's kind.
    pub kind: String,
    /// Its organisation and subscriber.
    pub parties: RequestParties,
}

/// Composes the notices of one scanned row; called inside the scan's transaction.
pub type ComposeOverdue<'a> = dyn FnMut(&OverdueRequest) -> Vec<OutboxMessage> + 'a;
/// Composes the renewal reminders of one certificate; called inside the scan's transaction.
pub type ComposeReminder<'a> = dyn FnMut(&ExpiringCertificate) -> Vec<OutboxMessage> + 'a;

/// What the notifier keeps: queued notifications and what has been told already.
pub trait Outbox: Send + Sync {
    /// Queues `messages` in one transaction, for callers outside another one (a transition
    /// writes its notices in its own transaction instead). A message whose idempotency key is
    /// already queued is skipped. Returns how many were newly queued.
    fn enqueue(&self, messages: &[OutboxMessage], now: u64) -> Result<usize, StoreError>;
    /// Up to `limit` undelivered messages whose next attempt is due at `now`, the most overdue
    /// first (ties in queuing order).
    fn due(&self, now: u64, limit: usize) -> Result<Vec<QueuedMessage>, StoreError>;
    /// Records that the server accepted message `id` at `now`.
    fn mark_delivered(&self, id: i64, now: u64) -> Result<(), StoreError>;
    /// Records a failed attempt of message `id`: one more attempt, the next at
    /// `next_attempt_at`, and why (`error` must hold no address or body).
    fn mark_failed(
        &self,
        id: i64,
        now: u64,
        next_attempt_at: u64,
        error: &str,
    ) -> Result<(), StoreError>;
    /// Undelivered messages (the `pkid_outbox_pending` gauge).
    fn pending_count(&self) -> Result<u64, StoreError>;
    /// One message by id (for operators and tests).
    fn queued(&self, id: i64) -> Result<Option<QueuedMessage>, StoreError>;
    /// Requests past their deadline at `now` while still `accepted` or `approved`, told or not
    /// (the `pkid_ra_overdue_requests` gauge).
    fn overdue_count(&self, now: u64) -> Result<u64, StoreError>;
    /// The breach scan, in one transaction: up to `limit` requests past due at `now`, still
    /// `accepted` or `approved`, not told yet; for each, queues what `compose` returns and sets
    /// `breach_notified_at`. Returns how many requests were marked.
    fn scan_breaches(
        &self,
        now: u64,
        limit: usize,
        compose: &mut ComposeOverdue<'_>,
    ) -> Result<usize, StoreError>;
    /// The reminder scan, in one transaction: up to `limit` `valid` certificates with `notAfter`
    /// in `(now, until]`, issued through an RA request and without a `reminders` row; for each,
    /// queues what `compose` returns and inserts the `reminders` row. Returns how many
    /// certificates were marked.
    fn scan_expiring(
        &self,
        now: u64,
        until: u64,
        limit: usize,
        compose: &mut ComposeReminder<'_>,
    ) -> Result<usize, StoreError>;
}
