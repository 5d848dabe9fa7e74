//! Notifications end to end: the delivery worker against a real SMTP server (Python's
//! aiosmtpd, started by each test) and a webhook served by hyper in the test.
//!
//! ```text
//! outbox (SQLite) ─▶ Notifier ─SMTP─▶ aiosmtpd (Maildir) ─▶ Python's email package decodes it
//!                             └POST─▶ hyper server in the test (records Idempotency-Key)
//! ```
//!
//! `scripts/test.sh` prepares aiosmtpd in `target/venv` and exports `PKID_TEST_SMTPD_PYTHON`;
//! without it these tests fail (they never pass silently).

use pkid::clock::{Clock, FakeClock};
use pkid::config::{Config, NotifyConfig};
use pkid::metrics::Metrics;
use pkid::notify::messages::{compose, Event, Notice};
use pkid::notify::Notifier;
use pkid::store::outbox::RequestParties;
use pkid::store::sqlite::SqliteStore;
use pkid::store::{Channel, Store};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// 2026-12-01 10:00 +07:00.
const NOW: u64 = 1_796_094_000;
/// Longest wait for aiosmtpd to listen, or for a woken worker to deliver.
const WAIT: Duration = Duration::from_secs(20);

/// The Python interpreter that has aiosmtpd (from `scripts/test.sh`).
fn smtpd_python() -> PathBuf {
    match std::env::var_os("PKID_TEST_SMTPD_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "PKID_TEST_SMTPD_PYTHON is not set: run these tests through scripts/test.sh, which \
             installs aiosmtpd in target/venv and exports it (or: python3 -m venv target/venv && \
             target/venv/bin/pip install aiosmtpd && \
             PKID_TEST_SMTPD_PYTHON=$PWD/target/venv/bin/python cargo test -p pkid --test notify)"
        ),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running aiosmtpd writing every message it accepts into a Maildir.
struct Smtpd {
    child: Child,
}

impl Smtpd {
    fn start(port: u16, maildir: &Path) -> Self {
        let child = Command::new(smtpd_python())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < WAIT,
                "aiosmtpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as Python's `email` package (policy.default) reads it from the Maildir.
#[derive(Debug, serde::Deserialize)]
struct Received {
    to: String,
    from: String,
    subject: String,
    raw_subject: String,
    message_id: String,
    body: String,
}

const READ_MAILDIR: &str = r#"
import email, email.policy, json, pathlib, sys
out = []
for f in sorted(pathlib.Path(sys.argv[1]).glob("new/*")):
    raw = f.read_bytes()
    m = email.message_from_bytes(raw, policy=email.policy.default)
    legacy = email.message_from_bytes(raw)
    out.append({"to": str(m["to"]), "from": str(m["from"]), "subject": str(m["subject"]),
                "raw_subject": str(legacy["subject"]), "message_id": str(m["message-id"]),
                "body": m.get_content()})
print(json.dumps(out, ensure_ascii=False))
"#;

fn received(maildir: &Path) -> Vec<Received> {
    if !maildir.join("new").exists() {
        return Vec::new();
    }
    let out = Command::new(smtpd_python())
        .args(["-c", READ_MAILDIR])
        .arg(maildir)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("maildir json")
}

fn config(text: &str) -> NotifyConfig {
    Config::parse(Path::new("/nonexistent"), Some(text), "test")
        .expect("config")
        .notify
}

fn email_config(port: u16) -> NotifyConfig {
    config(&format!(
        "[notify]\npoll_secs = 3600\n[notify.email]\nsmtp_url = \"smtp://127.0.0.1:{port}\"\n\
         from = \"Dịch vụ chứng thực <ca@pkid.test>\"\n"
    ))
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    maildir: PathBuf,
    clock: Arc<FakeClock>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("pkid.db");
        let maildir = dir.path().join("maildir");
        Self {
            db,
            maildir,
            clock: Arc::new(FakeClock::new(NOW)),
            _dir: dir,
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.db, Duration::from_secs(5)).expect("store"))
    }

    /// The organisation and the request rows a notice names (outbox rows reference their
    /// request), inserted with SQL as the RA core's API will.
    fn requests(&self, ids: &[i64]) {
        let conn = rusqlite::Connection::open(&self.db).expect("db");
        conn.execute(
            "INSERT OR IGNORE INTO organisations (id, name, path, email, created_at)
             VALUES ('so-tt-dn', 'Sở Thông tin và Truyền thông Đà Nẵng', '/so-tt-dn/',
                     'vanthu@dn.gov.vn', 0)",
            [],
        )
        .expect("organisation");
        for id in ids {
            conn.execute(
                "INSERT INTO requests (id, kind, organisation, org_path, state, key_origin,
                                       submitted_by, submitted_at, updated_at)
                 VALUES (?1, 'issue', 'so-tt-dn', '/so-tt-dn/', 'submitted', 'csr', 'officer',
                         0, 0)",
                [id],
            )
            .expect("request");
        }
    }

    fn notifier(
        &self,
        store: &Arc<dyn Store>,
        config: &NotifyConfig,
    ) -> (Arc<Notifier>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let clock: Arc<dyn Clock> = self.clock.clone();
        let n = Notifier::new(store.clone(), config, clock, metrics.clone()).expect("notifier");
        (Arc::new(n), metrics)
    }
}

fn notice(event: Event, request: i64) -> Notice {
    Notice {
        event,
        request,
        kind: "issue".into(),
        recovery: None,
        parties: RequestParties {
            organisation: "so-tt-dn".into(),
            organisation_name: "Sở Thông tin và Truyền thông Đà Nẵng".into(),
            organisation_email: Some("vanthu@dn.gov.vn".into()),
            subscriber_name: Some("Nguyễn Thị Ánh".into()),
            subscriber_email: Some("anh.nt@dn.gov.vn".into()),
        },
        due_at: Some(1_796_317_200),
        reason: None,
        serial: None,
        not_after: None,
        revocation_code: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_notice_reaches_a_real_smtp_server_with_its_vietnamese_subject_intact() {
    let f = Fixture::new();
    let port = free_port();
    let _smtpd = Smtpd::start(port, &f.maildir);
    let store = f.store();
    f.requests(&[42]);
    let config = email_config(port);
    let (notifier, metrics) = f.notifier(&store, &config);
    let messages = compose(&notice(Event::Accepted, 42), &config);
    assert_eq!(
        store.as_outbox().enqueue(&messages, NOW).expect("enqueue"),
        2
    );

    let done = notifier.deliver_due().await.expect("deliver");
    assert_eq!((done.delivered, done.failed), (2, 0));
    assert_eq!(store.as_outbox().pending_count().expect("count"), 0);

    let mut mail = received(&f.maildir);
    mail.sort_by(|a, b| a.to.cmp(&b.to));
    assert_eq!(mail.len(), 2);
    assert_eq!(mail[0].to, "anh.nt@dn.gov.vn");
    assert_eq!(mail[1].to, "vanthu@dn.gov.vn");
    for m in &mail {
        assert_eq!(
            m.subject,
            "Yêu cầu số 42 đã được tiếp nhận / Request 42 accepted"
        );
        assert!(
            m.raw_subject.to_ascii_lowercase().contains("=?utf-8?"),
            "the subject travels RFC 2047-encoded: {}",
            m.raw_subject
        );
        assert_eq!(m.from, "Dịch vụ chứng thực <ca@pkid.test>");
        assert!(m.message_id.ends_with("@pkid.test>"), "{}", m.message_id);
        assert!(
            m.body.contains(
                "thuê bao Nguyễn Thị Ánh đã được tiếp nhận.\nThời hạn xử lý: 04/12/2026 00:00"
            ),
            "{}",
            m.body
        );
    }
    assert!(mail[0].body.starts_with("Kính gửi Ông/Bà Nguyễn Thị Ánh,"));
    assert!(mail[1]
        .body
        .starts_with("Kính gửi Sở Thông tin và Truyền thông Đà Nẵng,"));
    assert_ne!(mail[0].message_id, mail[1].message_id, "one id per message");

    let text = String::from_utf8(metrics.render()).expect("utf-8");
    assert!(
        text.contains("pkid_notifications_delivered_total{channel=\"email\"} 2"),
        "{text}"
    );
    assert!(text.contains("pkid_outbox_pending 0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_down_the_notice_waits_and_is_delivered_after_the_retry() {
    let f = Fixture::new();
    let port = free_port();
    let store = f.store();
    f.requests(&[7]);
    let config = email_config(port);
    let (notifier, metrics) = f.notifier(&store, &config);
    let mut only_org = notice(Event::Breach, 7);
    only_org.parties.subscriber_email = None;
    store
        .as_outbox()
        .enqueue(&compose(&only_org, &config), NOW)
        .expect("enqueue");

    // Nothing listens: the attempt fails, is counted, and the message waits 30 s.
    let done = notifier.deliver_due().await.expect("deliver");
    assert_eq!((done.delivered, done.failed), (0, 1));
    let row = store.as_outbox().due(u64::MAX, 10).expect("due").remove(0);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.next_attempt_at, NOW + 30);
    let error = row.last_error.expect("last error");
    assert!(error.starts_with("unreachable"), "{error}");
    assert!(
        !error.contains("vanthu"),
        "no recipient in the error: {error}"
    );
    let text = String::from_utf8(metrics.render()).expect("utf-8");
    assert!(
        text.contains("pkid_notifications_failed_total{channel=\"email\"} 1"),
        "{text}"
    );
    assert!(text.contains("pkid_outbox_pending 1"), "{text}");

    // Before its time, nothing is tried.
    let smtpd = Smtpd::start(port, &f.maildir);
    f.clock.advance(29);
    let done = notifier.deliver_due().await.expect("deliver");
    assert_eq!((done.delivered, done.failed), (0, 0));
    assert!(received(&f.maildir).is_empty());

    // Down again for the second attempt: the wait doubles.
    smtpd.stop();
    f.clock.advance(1);
    assert_eq!(notifier.deliver_due().await.expect("deliver").failed, 1);
    let row = store.as_outbox().due(u64::MAX, 10).expect("due").remove(0);
    assert_eq!((row.attempts, row.next_attempt_at), (2, NOW + 30 + 60));

    let _smtpd = Smtpd::start(port, &f.maildir);
    f.clock.advance(60);
    let done = notifier.deliver_due().await.expect("deliver");
    assert_eq!((done.delivered, done.failed), (1, 0));
    let mail = received(&f.maildir);
    assert_eq!(mail.len(), 1);
    assert_eq!(
        mail[0].subject,
        "Yêu cầu số 7 đã quá thời hạn xử lý / Request 7 is past its deadline"
    );
    let row = store
        .as_outbox()
        .queued(row.id)
        .expect("read")
        .expect("row");
    assert_eq!(row.delivered_at, Some(NOW + 90));
    assert_eq!(row.attempts, 2, "the failed attempts are kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_queued_before_a_restart_is_delivered_once_by_the_next_worker() {
    let f = Fixture::new();
    let port = free_port();
    let _smtpd = Smtpd::start(port, &f.maildir);
    let config = email_config(port);
    {
        // The first process queues and stops (or dies) before delivering anything.
        let store = f.store();
        f.requests(&[9]);
        let (first, _) = f.notifier(&store, &config);
        let mut n = notice(Event::Fulfilled, 9);
        n.parties.subscriber_email = None;
        n.serial = Some("5A0F".into());
        store
            .as_outbox()
            .enqueue(&compose(&n, &config), NOW)
            .expect("enqueue");
        drop(first);
    }

    // The next process: its worker, woken once, delivers without waiting for the hour's poll.
    let store = f.store();
    let (worker, _) = f.notifier(&store, &config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.clone().run(stop_rx));
    let started = Instant::now();
    while received(&f.maildir).is_empty() {
        assert!(started.elapsed() < WAIT, "not delivered after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    running.await.expect("worker");
    assert_eq!(store.as_outbox().pending_count().expect("count"), 0);

    // Marked: a third start, a wake-up and a pass send nothing again.
    let (again, _) = f.notifier(&f.store(), &config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(again.clone().run(stop_rx));
    again.waker().notify_one();
    let done = again.deliver_due().await.expect("deliver");
    assert_eq!((done.delivered, done.failed), (0, 0));
    let _ = stop_tx.send(true);
    running.await.expect("worker");
    let mail = received(&f.maildir);
    assert_eq!(mail.len(), 1, "delivered once");
    assert!(
        mail[0].body.contains("Số hiệu chứng thư số: 5A0F"),
        "{}",
        mail[0].body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_request_found_by_the_scanner_is_mailed_as_a_breach() {
    let f = Fixture::new();
    let port = free_port();
    let _smtpd = Smtpd::start(port, &f.maildir);
    let store = f.store();
    {
        // The RA core's rows, inserted as its API will: accepted, due an hour ago.
        let conn = rusqlite::Connection::open(&f.db).expect("db");
        conn.execute_batch(&format!(
            "INSERT INTO organisations (id, name, path, email, created_at)
               VALUES ('thpt-le-quy-don', 'Trường THPT Lê Quý Đôn', '/thpt-le-quy-don/',
                       'vanphong@lqd.edu.vn', 0);
             INSERT INTO requests (id, kind, organisation, org_path, state, key_origin,
                                   subscriber_name, subscriber_email, submitted_by,
                                   submitted_at, accepted_at, due_at, updated_at)
               VALUES (31, 'renew', 'thpt-le-quy-don', '/thpt-le-quy-don/', 'accepted', 'csr',
                       'Trần Văn Đức', 'duc.tv@lqd.edu.vn', 'officer', 0, 0, {}, 0);",
            NOW - 3600
        ))
        .expect("rows");
    }
    let (notifier, metrics) = f.notifier(&store, &email_config(port));
    let scanned = notifier.scan().await.expect("scan");
    assert_eq!((scanned.breaches, scanned.overdue), (1, 1));
    let text = String::from_utf8(metrics.render()).expect("utf-8");
    assert!(text.contains("pkid_ra_overdue_requests 1"), "{text}");
    assert_eq!(
        notifier.scan().await.expect("scan").breaches,
        0,
        "told once"
    );

    assert_eq!(notifier.deliver_due().await.expect("deliver").delivered, 2);
    let mut mail = received(&f.maildir);
    mail.sort_by(|a, b| a.to.cmp(&b.to));
    assert_eq!(mail[0].to, "duc.tv@lqd.edu.vn");
    assert_eq!(mail[1].to, "vanphong@lqd.edu.vn");
    assert_eq!(
        mail[1].subject,
        "Yêu cầu số 31 đã quá thời hạn xử lý / Request 31 is past its deadline"
    );
    assert!(
        mail[1].body.contains(
            "Yêu cầu số 31 (gia hạn chứng thư số) của Trường THPT Lê Quý Đôn cho thuê bao Trần \
             Văn Đức đã quá thời hạn xử lý (01/12/2026 09:00, giờ Việt Nam)."
        ),
        "{}",
        mail[1].body
    );
}

/// What the test's webhook server saw of one request.
#[derive(Clone, Debug)]
struct Hook {
    idempotency_key: Option<String>,
    content_type: Option<String>,
    body: serde_json::Value,
}

/// A webhook served by hyper on a free port: answers 503 to the first request, 204 after,
/// and records every request.
async fn webhook_server() -> (u16, Arc<Mutex<Vec<Hook>>>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Arc<Mutex<Vec<Hook>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let header = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string)
                            };
                            let idempotency_key = header("idempotency-key");
                            let content_type = header("content-type");
                            let bytes = req.into_body().collect().await.expect("body").to_bytes();
                            let body = serde_json::from_slice(&bytes).expect("json body");
                            let first = {
                                let mut seen = record.lock().expect("lock");
                                seen.push(Hook {
                                    idempotency_key,
                                    content_type,
                                    body,
                                });
                                seen.len() == 1
                            };
                            let status = if first { 503 } else { 204 };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                                    .expect("response"),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_the_idempotency_key_and_a_refusal_is_retried_with_the_same_key() {
    let f = Fixture::new();
    let (port, seen) = webhook_server().await;
    let store = f.store();
    f.requests(&[12]);
    let config = config(&format!(
        "[notify.webhook]\nurl = \"http://127.0.0.1:{port}/pkid/notices?source=ra\"\n"
    ));
    let mut n = notice(Event::Returned, 12);
    n.parties.subscriber_name = None;
    n.parties.subscriber_email = None;
    n.reason = Some("Thiếu chữ ký số của thủ trưởng đơn vị".into());
    let messages = compose(&n, &config);
    assert_eq!(
        messages.len(),
        1,
        "organisation only, no mail without [notify.email]"
    );
    assert_eq!(messages[0].channel, Channel::Webhook);
    store.as_outbox().enqueue(&messages, NOW).expect("enqueue");
    let (notifier, metrics) = f.notifier(&store, &config);

    let done = notifier.deliver_due().await.expect("deliver");
    assert_eq!(
        (done.delivered, done.failed),
        (0, 1),
        "503 is not delivered"
    );
    let row = store.as_outbox().due(u64::MAX, 1).expect("due").remove(0);
    assert_eq!(row.last_error.as_deref(), Some("the webhook answered 503"));
    f.clock.advance(30);
    let done = notifier.deliver_due().await.expect("deliver");
    assert_eq!((done.delivered, done.failed), (1, 0));

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    for hook in &seen {
        assert_eq!(
            hook.idempotency_key.as_deref(),
            Some("returned:12:organisation:webhook")
        );
        assert_eq!(hook.content_type.as_deref(), Some("application/json"));
        assert_eq!(hook.body["event"], "returned");
        assert_eq!(hook.body["request"], 12);
        assert_eq!(hook.body["organisation"], "so-tt-dn");
        assert_eq!(hook.body["audience"], "organisation");
        let text = hook.body.to_string();
        assert!(!text.contains("Thiếu"), "no free-text reason: {text}");
        assert!(!text.contains("vanthu"), "no address: {text}");
    }
    let text = String::from_utf8(metrics.render()).expect("utf-8");
    assert!(
        text.contains("pkid_notifications_delivered_total{channel=\"webhook\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pkid_notifications_failed_total{channel=\"webhook\"} 1"),
        "{text}"
    );
}
