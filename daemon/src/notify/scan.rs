//! The scanners the worker runs every minute: deadlines that passed (breach notices) and
//! certificates close to expiry (renewal reminders).
//!
//! ```text
//! requests accepted|approved, due_at <= now, breach_notified_at NULL
//!     ─▶ compose(breach) ─▶ outbox + breach_notified_at = now      (one transaction)
//! certificates valid, now < not_after <= now + expiry_reminder_days, no reminders row
//!     ─▶ compose(expiry-reminder) ─▶ outbox + reminders row        (one transaction)
//! ```
//!
//! A notice and its mark commit together, so a crash either queues both or neither; a re-run
//! finds nothing new. Synchronous: the worker calls it on a blocking thread.

use super::messages::{compose, Event, Notice};
use crate::config::NotifyConfig;
use crate::store::outbox::{ExpiringCertificate, OverdueRequest};
use crate::store::{Store, StoreError};

/// Rows marked per transaction: the write lock is held for one batch at a time, so the RA's
/// transitions never wait behind a scan of thousands of rows.
const SCAN_BATCH: usize = 100;
/// Seconds in a day.
const DAY: u64 = 86_400;

/// What one scan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    /// Requests newly told about as breached.
    pub breaches: usize,
    /// Certificates newly reminded about.
    pub reminders: usize,
    /// Requests past due, told or not (the `pkid_ra_overdue_requests` gauge).
    pub overdue: u64,
}

/// The breach notice of an overdue request.
pub fn breach_notice(o: &OverdueRequest) -> Notice {
    Notice {
        event: Event::Breach,
        request: o.request,
        kind: o.kind.clone(),
        recovery: None,
        parties: o.parties.clone(),
        due_at: Some(o.due_at),
        reason: None,
        serial: o.certificate.clone(),
        revocation_code: None,
        not_after: None,
    }
}

/// The renewal reminder of a certificate close to expiry.
pub fn reminder_notice(c: &ExpiringCertificate) -> Notice {
    Notice {
        event: Event::ExpiryReminder,
        request: c.request,
        kind: c.kind.clone(),
        recovery: None,
        parties: c.parties.clone(),
        due_at: None,
        reason: None,
        serial: Some(c.serial.clone()),
        revocation_code: None,
        not_after: Some(c.not_after),
    }
}

/// Runs both scans at `now` to the end, batch by batch.
pub fn scan(store: &dyn Store, config: &NotifyConfig, now: u64) -> Result<Scanned, StoreError> {
    let outbox = store.as_outbox();
    let mut done = Scanned::default();
    loop {
        let n =
            outbox.scan_breaches(now, SCAN_BATCH, &mut |o| compose(&breach_notice(o), config))?;
        done.breaches += n;
        if n < SCAN_BATCH {
            break;
        }
    }
    let until = now.saturating_add(u64::from(config.expiry_reminder_days) * DAY);
    loop {
        let n = outbox.scan_expiring(now, until, SCAN_BATCH, &mut |c| {
            compose(&reminder_notice(c), config)
        })?;
        done.reminders += n;
        if n < SCAN_BATCH {
            break;
        }
    }
    done.overdue = outbox.overdue_count(now)?;
    Ok(done)
}
