//! SQLite side of the outbox (see `store::outbox`): the `outbox` and `reminders` tables of
//! migration 7, and the breach and expiry scans over `requests`, `organisations` and
//! `certificates`.

use super::{unavailable, SqliteStore};
use crate::store::outbox::{
    Channel, ComposeOverdue, ComposeReminder, ExpiringCertificate, Outbox, OutboxMessage,
    OverdueRequest, QueuedMessage, RequestParties,
};
use crate::store::StoreError;
use rusqlite::{params, Connection, OptionalExtension};

/// Longest `last_error` kept, characters: enough for a server's reply line, never a body.
const MAX_ERROR_CHARS: usize = 500;

/// Queues one message on `tx`, the caller's connection or transaction: the RA's transitions
/// call this inside their own transaction, so the notice commits with the event or not at all.
/// A message whose idempotency key is already queued is left as it is (a retried transaction
/// queues nothing twice).
pub(crate) fn insert_outbox(tx: &Connection, m: &OutboxMessage, now: u64) -> rusqlite::Result<()> {
    insert_counted(tx, m, now).map(|_| ())
}

/// [`insert_outbox`], returning whether the row is new.
fn insert_counted(tx: &Connection, m: &OutboxMessage, now: u64) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(
            "INSERT INTO outbox (idempotency_key, channel, recipient, subject, body, event, request,
                                 created_at, next_attempt_at, secret)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)
             ON CONFLICT (idempotency_key) DO NOTHING",
        )?
        .execute(params![
            m.idempotency_key,
            m.channel.as_str(),
            m.recipient,
            m.subject,
            m.body,
            m.event,
            m.request,
            now,
            m.secret
        ])?;
    Ok(n == 1)
}

/// Erases what the outbox holds of one request's people (addresses in the recipient and the
/// idempotency key, names in the body), on `tx`, the transaction that erases the request's own
/// personal fields at the end of their retention: the rows stay, as a record that the notices
/// existed and when they left, with `recipient`, `subject` and `body` emptied and the key
/// replaced by `erased:{id}`. Pending rows are closed too (marked delivered at `now`): nothing
/// is left to send them to. Returns how many rows were erased.
pub(crate) fn erase_outbox_of(tx: &Connection, request: i64, now: u64) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "UPDATE outbox SET idempotency_key = 'erased:' || id, recipient = '', subject = '',
                           body = '', delivered_at = COALESCE(delivered_at, ?2)
         WHERE request = ?1 AND idempotency_key NOT LIKE 'erased:%'",
    )?
    .execute(params![request, sql_time(now)])
}

const QUEUED_COLUMNS: &str = "id, idempotency_key, channel, recipient, subject, body, event, \
     request, created_at, attempts, next_attempt_at, delivered_at, last_error, secret";

fn queued_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedMessage> {
    let channel: String = r.get(2)?;
    let channel = Channel::parse(&channel).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown outbox channel {channel:?}").into(),
        )
    })?;
    Ok(QueuedMessage {
        id: r.get(0)?,
        message: OutboxMessage {
            idempotency_key: r.get(1)?,
            channel,
            recipient: r.get(3)?,
            subject: r.get(4)?,
            body: r.get(5)?,
            event: r.get(6)?,
            request: r.get(7)?,
            secret: r.get(13)?,
        },
        created_at: r.get(8)?,
        attempts: r.get(9)?,
        next_attempt_at: r.get(10)?,
        delivered_at: r.get(11)?,
        last_error: r.get(12)?,
    })
}

/// A Unix time as SQLite's INTEGER (saturating: far-future bounds stay far future).
fn sql_time(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// The organisation and subscriber columns every scan selects, in this order.
const PARTIES_COLUMNS: &str =
    "r.organisation, o.name, o.email, r.subscriber_name, r.subscriber_email";

/// [`RequestParties`] from the row's [`PARTIES_COLUMNS`], starting at column `at`.
fn parties_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RequestParties> {
    Ok(RequestParties {
        organisation: r.get(at)?,
        organisation_name: r.get(at + 1)?,
        organisation_email: r.get(at + 2)?,
        subscriber_name: r.get(at + 3)?,
        subscriber_email: r.get(at + 4)?,
    })
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Fails with `NotFound` when an update by id touched no row.
fn one_row(n: usize, id: i64) -> Result<(), StoreError> {
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("outbox message {id}")))
    }
}

impl Outbox for SqliteStore {
    fn enqueue(&self, messages: &[OutboxMessage], now: u64) -> Result<usize, StoreError> {
        self.write(|tx| {
            let mut queued = 0;
            for m in messages {
                queued += usize::from(insert_counted(tx, m, now).map_err(unavailable)?);
            }
            Ok(queued)
        })
    }

    fn due(&self, now: u64, limit: usize) -> Result<Vec<QueuedMessage>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {QUEUED_COLUMNS} FROM outbox
                 WHERE delivered_at IS NULL AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ))
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![sql_time(now), sql_limit(limit)], queued_row)
            .map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }

    fn mark_delivered(&self, id: i64, now: u64) -> Result<(), StoreError> {
        let n = self
            .lock()?
            .execute(
                "UPDATE outbox SET delivered_at = ?2, body = CASE WHEN secret THEN '' ELSE body END
                 WHERE id = ?1 AND delivered_at IS NULL",
                params![id, sql_time(now)],
            )
            .map_err(unavailable)?;
        one_row(n, id)
    }

    fn mark_failed(
        &self,
        id: i64,
        _now: u64,
        next_attempt_at: u64,
        error: &str,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        let n = self
            .lock()?
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
                 WHERE id = ?1 AND delivered_at IS NULL",
                params![id, sql_time(next_attempt_at), error],
            )
            .map_err(unavailable)?;
        one_row(n, id)
    }

    fn pending_count(&self) -> Result<u64, StoreError> {
        self.lock()?
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(unavailable)
    }

    fn queued(&self, id: i64) -> Result<Option<QueuedMessage>, StoreError> {
        self.lock()?
            .query_row(
                &format!("SELECT {QUEUED_COLUMNS} FROM outbox WHERE id = ?1"),
                [id],
                queued_row,
            )
            .optional()
            .map_err(unavailable)
    }

    fn overdue_count(&self, now: u64) -> Result<u64, StoreError> {
        self.lock()?
            .query_row(
                "SELECT COUNT(*) FROM requests
                 WHERE state IN ('accepted', 'approved') AND due_at <= ?1",
                [sql_time(now)],
                |r| r.get(0),
            )
            .map_err(unavailable)
    }

    fn scan_breaches(
        &self,
        now: u64,
        limit: usize,
        compose: &mut ComposeOverdue<'_>,
    ) -> Result<usize, StoreError> {
        self.write(|tx| {
            let overdue: Vec<OverdueRequest> = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT r.id, r.kind, r.due_at, r.certificate, {PARTIES_COLUMNS}
                         FROM requests r JOIN organisations o ON o.id = r.organisation
                         WHERE r.state IN ('accepted', 'approved') AND r.due_at <= ?1
                           AND r.breach_notified_at IS NULL
                         ORDER BY r.due_at, r.id LIMIT ?2"
                    ))
                    .map_err(unavailable)?;
                let rows = stmt
                    .query_map(params![sql_time(now), sql_limit(limit)], |r| {
                        Ok(OverdueRequest {
                            request: r.get(0)?,
                            kind: r.get(1)?,
                            due_at: r.get(2)?,
                            certificate: r.get(3)?,
                            parties: parties_row(r, 4)?,
                        })
                    })
                    .map_err(unavailable)?;
                rows.collect::<Result<_, _>>().map_err(unavailable)?
            };
            for o in &overdue {
                for m in compose(o) {
                    insert_outbox(tx, &m, now).map_err(unavailable)?;
                }
                tx.execute(
                    "UPDATE requests SET breach_notified_at = ?2 WHERE id = ?1",
                    params![o.request, sql_time(now)],
                )
                .map_err(unavailable)?;
            }
            Ok(overdue.len())
        })
    }

    fn scan_expiring(
        &self,
        now: u64,
        until: u64,
        limit: usize,
        compose: &mut ComposeReminder<'_>,
    ) -> Result<usize, StoreError> {
        self.write(|tx| {
            // The newest request that issued the certificate names who is told; a certificate
            // no RA request issued (a CLI issuance) has no one to remind and is not scanned.
            let expiring: Vec<ExpiringCertificate> = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT c.serial, c.not_after, r.id, r.kind, {PARTIES_COLUMNS}
                         FROM certificates c
                         JOIN requests r ON r.id = (SELECT MAX(id) FROM requests
                                                    WHERE issued_certificate = c.serial)
                         JOIN organisations o ON o.id = r.organisation
                         WHERE c.status = 'valid' AND c.not_after > ?1 AND c.not_after <= ?2
                           AND NOT EXISTS (SELECT 1 FROM reminders m WHERE m.serial = c.serial)
                         ORDER BY c.not_after, c.serial LIMIT ?3"
                    ))
                    .map_err(unavailable)?;
                let rows = stmt
                    .query_map(
                        params![sql_time(now), sql_time(until), sql_limit(limit)],
                        |r| {
                            Ok(ExpiringCertificate {
                                serial: r.get(0)?,
                                not_after: r.get(1)?,
                                request: r.get(2)?,
                                kind: r.get(3)?,
                                parties: parties_row(r, 4)?,
                            })
                        },
                    )
                    .map_err(unavailable)?;
                rows.collect::<Result<_, _>>().map_err(unavailable)?
            };
            for c in &expiring {
                for m in compose(c) {
                    insert_outbox(tx, &m, now).map_err(unavailable)?;
                }
                tx.execute(
                    "INSERT INTO reminders (serial, queued_at) VALUES (?1, ?2)",
                    params![c.serial, sql_time(now)],
                )
                .map_err(unavailable)?;
            }
            Ok(expiring.len())
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::sqlite::tests::store;

    fn message(key: &str) -> OutboxMessage {
        OutboxMessage {
            idempotency_key: key.into(),
            channel: Channel::Email,
            recipient: "to-chuc@so-tt.gov.vn".into(),
            subject: "Yêu cầu số 1 đã được tiếp nhận".into(),
            body: "Kính gửi Sở Thông tin và Truyền thông Đà Nẵng".into(),
            event: "accepted".into(),
            request: None,
            secret: false,
        }
    }

    #[test]
    fn a_secret_body_is_emptied_once_delivered_and_an_ordinary_one_is_kept() {
        let (_dir, s) = store();
        let mut secret = message("fulfilled:1:anh.nt@dn.gov.vn:email");
        secret.body = "Mã thu hồi một lần: ABCD-EFGH".into();
        secret.secret = true;
        s.enqueue(&[secret.clone(), message("accepted:1:x")], 100)
            .expect("q");
        let due = s.due(100, 10).expect("due");
        assert_eq!(due[0].message, secret, "kept whole until it leaves");
        for q in &due {
            s.mark_delivered(q.id, 150).expect("delivered");
        }
        let (a, b) = (
            s.queued(due[0].id).expect("read").expect("row"),
            s.queued(due[1].id).expect("read").expect("row"),
        );
        assert_eq!(a.message.body, "");
        assert_eq!(a.message.recipient, secret.recipient, "the record stays");
        assert_eq!(b.message.body, message("x").body);
    }

    /// An organisation and a request in `state` due at `due_at`, inserted as the RA core will.
    pub(in crate::store::sqlite) fn request(s: &SqliteStore, id: i64, state: &str, due_at: u64) {
        let conn = s.lock().expect("lock");
        conn.execute(
            "INSERT OR IGNORE INTO organisations (id, name, path, email, created_at)
             VALUES ('so-tt-dn', 'Sở Thông tin và Truyền thông Đà Nẵng', '/so-tt-dn/',
                     'vanthu@dn.gov.vn', 0)",
            [],
        )
        .expect("organisation");
        conn.execute(
            "INSERT INTO requests (id, kind, organisation, org_path, state, key_origin,
                                   subscriber_name, subscriber_email, submitted_by, submitted_at,
                                   accepted_at, due_at, updated_at)
             VALUES (?1, 'issue', 'so-tt-dn', '/so-tt-dn/', ?2, 'csr', 'Nguyễn Thị Ánh',
                     'anh.nt@dn.gov.vn', 'officer', 0, 0, ?3, 0)",
            params![id, state, due_at],
        )
        .expect("request");
    }

    #[test]
    fn enqueued_messages_round_trip_and_a_repeated_key_is_ignored() {
        let (_dir, s) = store();
        assert_eq!(s.enqueue(&[message("a"), message("b")], 100).expect("q"), 2);
        // A retried transaction or a re-run scan queues the same keys again: nothing is added,
        // and the first row is kept as it was.
        let mut again = message("a");
        again.body = "changed".into();
        assert_eq!(s.enqueue(&[again, message("c")], 200).expect("q"), 1);
        assert_eq!(s.pending_count().expect("count"), 3);
        let due = s.due(1000, 10).expect("due");
        assert_eq!(due.len(), 3);
        assert_eq!(due[0].message, message("a"));
        assert_eq!(due[0].created_at, 100);
        assert_eq!(due[0].next_attempt_at, 100);
        assert_eq!(due[0].attempts, 0);
        // insert_outbox, the call the RA makes inside its own transaction, ignores it too.
        let conn = s.lock().expect("lock");
        insert_outbox(&conn, &message("c"), 300).expect("insert");
        let n: u64 = conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 3);
    }

    #[test]
    fn erasing_a_request_empties_its_notices_and_keeps_the_rows() {
        let (_dir, s) = store();
        request(&s, 1, "fulfilled", 0);
        request(&s, 2, "fulfilled", 0);
        let mut mine = message("accepted:1:anh.nt@dn.gov.vn:email");
        mine.request = Some(1);
        let mut pending = message("fulfilled:1:anh.nt@dn.gov.vn:email");
        pending.request = Some(1);
        let mut other = message("accepted:2:anh.nt@dn.gov.vn:email");
        other.request = Some(2);
        s.enqueue(&[mine, pending, other.clone()], 100).expect("q");
        let first = s.due(100, 1).expect("due")[0].id;
        s.mark_delivered(first, 150).expect("delivered");

        let conn = s.lock().expect("lock");
        assert_eq!(erase_outbox_of(&conn, 1, 900).expect("erase"), 2);
        assert_eq!(erase_outbox_of(&conn, 1, 950).expect("erase"), 0, "once");
        drop(conn);
        let row = s.queued(first).expect("read").expect("row");
        assert_eq!(row.message.idempotency_key, format!("erased:{first}"));
        assert_eq!(
            (row.message.recipient.as_str(), row.message.body.as_str()),
            ("", "")
        );
        assert_eq!(row.delivered_at, Some(150), "when it left is kept");
        let left = s.due(10_000, 10).expect("due");
        assert_eq!(left.len(), 1, "the erased pending row is closed");
        assert_eq!(
            left[0].message, other,
            "another request's notices are untouched"
        );
    }

    #[test]
    fn due_orders_by_next_attempt_and_backoff_defers_a_failed_message() {
        let (_dir, s) = store();
        s.enqueue(&[message("first")], 100).expect("q");
        s.enqueue(&[message("second")], 110).expect("q");
        s.enqueue(&[message("future")], 500).expect("q");
        let due = s.due(200, 10).expect("due");
        let keys: Vec<&str> = due
            .iter()
            .map(|m| m.message.idempotency_key.as_str())
            .collect();
        assert_eq!(keys, ["first", "second"], "only what is due, oldest first");
        assert_eq!(s.due(200, 1).expect("due").len(), 1, "the limit holds");

        let first = due[0].id;
        s.mark_failed(first, 200, 260, "connection refused")
            .expect("failed");
        let keys: Vec<String> = s
            .due(230, 10)
            .expect("due")
            .into_iter()
            .map(|m| m.message.idempotency_key)
            .collect();
        assert_eq!(
            keys,
            ["second"],
            "a failed message waits for its next attempt"
        );
        let row = s.queued(first).expect("read").expect("row");
        assert_eq!(row.attempts, 1);
        assert_eq!(row.last_error.as_deref(), Some("connection refused"));
        assert_eq!(s.due(260, 10).expect("due")[0].id, due[1].id);

        s.mark_delivered(first, 270).expect("delivered");
        let row = s.queued(first).expect("read").expect("row");
        assert_eq!(row.delivered_at, Some(270));
        assert_eq!(s.pending_count().expect("count"), 2);
        assert!(s
            .due(10_000, 10)
            .expect("due")
            .iter()
            .all(|m| m.id != first));
        assert!(
            matches!(s.mark_delivered(first, 280), Err(StoreError::NotFound(_))),
            "a delivered message is not marked twice"
        );
        assert!(matches!(
            s.mark_failed(9999, 0, 0, "x"),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn the_breach_scan_marks_each_overdue_request_once_with_its_notices() {
        let (_dir, s) = store();
        request(&s, 1, "accepted", 1000);
        request(&s, 2, "approved", 1500);
        request(&s, 3, "accepted", 5000); // not yet due
        request(&s, 4, "fulfilled", 900); // fulfilled: no breach
        request(&s, 5, "returned", 900); // the clock is stopped
        assert_eq!(s.overdue_count(2000).expect("count"), 2);
        let mut seen = Vec::new();
        let n = s
            .scan_breaches(2000, 10, &mut |o| {
                seen.push(o.clone());
                vec![message(&format!("breach:{}", o.request))]
            })
            .expect("scan");
        assert_eq!(n, 2);
        assert_eq!(seen[0].request, 1);
        assert_eq!(
            seen[0].parties.organisation_name,
            "Sở Thông tin và Truyền thông Đà Nẵng"
        );
        assert_eq!(
            seen[0].parties.subscriber_name.as_deref(),
            Some("Nguyễn Thị Ánh")
        );
        assert_eq!(seen[0].due_at, 1000);
        assert_eq!(seen[1].request, 2);
        assert_eq!(s.pending_count().expect("count"), 2);
        // Re-run: nothing new; the gauge still counts them (still overdue).
        let n = s
            .scan_breaches(3000, 10, &mut |_| panic!("told twice"))
            .expect("scan");
        assert_eq!(n, 0);
        assert_eq!(s.overdue_count(3000).expect("count"), 2);
        let at: Option<u64> = s
            .lock()
            .expect("lock")
            .query_row(
                "SELECT breach_notified_at FROM requests WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .expect("row");
        assert_eq!(at, Some(2000));
    }

    #[test]
    fn the_expiry_scan_reminds_once_per_certificate_issued_through_a_request() {
        let (_dir, s) = store();
        request(&s, 1, "fulfilled", 0);
        request(&s, 2, "fulfilled", 0);
        {
            let conn = s.lock().expect("lock");
            for (serial, not_after, status) in [
                ("0a", 2_000_000u64, "valid"), // within the window
                ("0b", 9_000_000, "valid"),    // too far out
                ("0c", 2_000_000, "revoked"),  // revoked: no reminder
                ("0d", 2_000_000, "valid"),    // no request issued it
            ] {
                conn.execute(
                    "INSERT INTO certificates (serial, issuer, subject, profile, not_before,
                                               not_after, status, tbs, created_at, updated_at)
                     VALUES (?1, 'issuing', 'CN=x', 'person', 0, ?2, ?3, x'00', 0, 0)",
                    params![serial, not_after, status],
                )
                .expect("certificate");
            }
            conn.execute(
                "UPDATE requests SET issued_certificate = '0a' WHERE id = 1",
                [],
            )
            .expect("issued");
            conn.execute(
                "UPDATE requests SET issued_certificate = '0c' WHERE id = 2",
                [],
            )
            .expect("issued");
        }
        let mut seen = Vec::new();
        let n = s
            .scan_expiring(1_000_000, 3_000_000, 10, &mut |c| {
                seen.push(c.clone());
                vec![message(&format!("expiry:{}", c.serial))]
            })
            .expect("scan");
        assert_eq!(n, 1);
        assert_eq!(seen[0].serial, "0a");
        assert_eq!(seen[0].request, 1);
        assert_eq!(
            seen[0].parties.subscriber_email.as_deref(),
            Some("anh.nt@dn.gov.vn")
        );
        assert_eq!(
            seen[0].parties.organisation_email.as_deref(),
            Some("vanthu@dn.gov.vn")
        );
        let n = s
            .scan_expiring(1_000_060, 3_000_060, 10, &mut |_| panic!("reminded twice"))
            .expect("scan");
        assert_eq!(n, 0);
        assert_eq!(s.pending_count().expect("count"), 1);
    }
}
