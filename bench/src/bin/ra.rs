//! RA benchmark: 1,000,000 requests across 10,000 organisations in the embedded store, and
//! three measurements, each against a bare SQLite statement of the same shape run in the same
//! invocation on the same database:
//!
//! ```text
//! list     a provincial RA officer's filtered, paginated list (desk.list)   vs  the bare
//!          indexed SELECT … WHERE province = ? AND id < ? ORDER BY id DESC LIMIT 51
//! submit   an organisation officer filing an issue request with a signed document (CSR
//!          proof of possession, document verification, one durable transaction)
//!          vs  the bare INSERTs of a request, its event and an audit row in one transaction
//! report   a year's report of the largest subtree (the whole tree)   vs  the bare GROUP BY
//!          over the same rows
//! ```
//!
//! ```text
//! cargo build --release -p pkid-bench -p pkid && target/release/ra [requests] [organisations]
//! ```
//!
//! Goals (issue 11): list p99 < 20 ms, submission ≥ 1,000/s durable, year report < 1 s.

use hdrhistogram::Histogram;
use pkid::clock::{Clock, SystemClock};
use pkid::ra::desk::{
    DocumentInput, ListQuery, ReportQuery, RequestDesk, RequestInput, SubscriberInput,
};
use pkid_bench::daemon;
use rusqlite::{params, Connection};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROVINCES: usize = 63;
const PAGE: usize = 50;
const LIST_QUERIES: usize = 2000;
const SUBMISSIONS: usize = 2000;
const REPORT_RUNS: usize = 5;
const DAY: u64 = 86_400;

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Organisations: one national root, 63 provincial departments under it, the rest spread over
/// the provinces as schools and hospitals. Returns (id, province, path) of each.
fn populate_organisations(
    conn: &mut Connection,
    count: usize,
    now: u64,
) -> Vec<(String, String, String)> {
    let tx = conn.transaction().expect("tx");
    let mut orgs = Vec::with_capacity(count);
    let insert = |id: &str,
                  name: &str,
                  province: Option<&str>,
                  parent: Option<&str>,
                  path: &str| {
        tx.execute(
            "INSERT INTO organisations (id, name, province, parent, path, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, name, province, parent, path, now],
        )
        .expect("org");
    };
    insert(
        "chinh-phu",
        "Văn phòng Chính phủ",
        None,
        None,
        "/chinh-phu/",
    );
    for p in 0..PROVINCES {
        let code = format!("P{:02}", p + 1);
        let id = format!("so-{}", code.to_lowercase());
        let path = format!("/chinh-phu/{id}/");
        insert(
            &id,
            &format!("Sở Nội vụ tỉnh {code}"),
            Some(&code),
            Some("chinh-phu"),
            &path,
        );
        orgs.push((id, code, path));
    }
    let leaves = count.saturating_sub(PROVINCES + 1);
    for i in 0..leaves {
        let (parent, code, ppath) = orgs[i % PROVINCES].clone();
        let id = format!("don-vi-{i:05}");
        let path = format!("{ppath}{id}/");
        insert(
            &id,
            &format!("Trường Tiểu học số {i} – {code}"),
            Some(&code),
            Some(&parent),
            &path,
        );
        orgs.push((id, code, path));
    }
    tx.commit().expect("commit");
    orgs
}

/// Requests spread over two years before `now`, in every state.
fn populate_requests(
    conn: &mut Connection,
    orgs: &[(String, String, String)],
    count: usize,
    now: u64,
) {
    let span = 730 * DAY;
    let kinds = [
        "issue", "issue", "issue", "renew", "modify", "revoke", "recover",
    ];
    let states = [
        "fulfilled",
        "fulfilled",
        "fulfilled",
        "fulfilled",
        "fulfilled",
        "accepted",
        "approved",
        "awaiting-original",
        "returned",
        "rejected",
        "submitted",
    ];
    let mut done = 0;
    while done < count {
        let tx = conn.transaction().expect("tx");
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO requests (kind, organisation, province, org_path, state, key_origin,
                     subscriber_name, subscriber_email, submitted_by, submitted_at, accepted_at,
                     due_at, fulfilled_at, closed_at, updated_at, issued_certificate)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'csr', ?6, ?7, 'loader', ?8, ?9, ?10, ?11, ?12, ?8, ?13)",
                )
                .expect("prepare");
            // Each fulfilled issue, renewal or change of information issued a certificate (one
            // in ten since revoked), so the report's certificate counts join real rows.
            let mut cert = tx
                .prepare_cached(
                    "INSERT INTO certificates (serial, issuer, subject, profile, not_before, not_after,
                     status, revoked_at, reason, tbs, created_at, updated_at)
                     VALUES (?1, 'issuing', 'CN=bench', 'person', ?2, ?3, ?4, ?5, ?6, x'00', ?2, ?2)",
                )
                .expect("prepare");
            for i in done..(done + 50_000).min(count) {
                let (org, province, path) = &orgs[(i * 7919) % orgs.len()];
                let state = states[i % states.len()];
                let kind = kinds[i % kinds.len()];
                let submitted = now - span + (i as u64 * span / count as u64);
                let accepted = matches!(state, "fulfilled" | "accepted" | "approved")
                    .then_some(submitted + 600);
                let due = accepted.map(|a| a + if kind == "revoke" { 12 * 3600 } else { 5 * DAY });
                // One in twenty fulfilled late.
                let fulfilled = (state == "fulfilled").then(|| {
                    accepted.unwrap_or(submitted) + if i % 20 == 0 { 6 * DAY } else { DAY }
                });
                let closed = matches!(state, "fulfilled" | "rejected")
                    .then(|| fulfilled.unwrap_or(submitted + DAY));
                let issued = (state == "fulfilled" && matches!(kind, "issue" | "renew" | "modify"))
                    .then(|| format!("{:016x}", 0x4000_0000_0000_0000u64 + i as u64));
                if let (Some(serial), Some(at)) = (&issued, fulfilled) {
                    let revoked = i % 10 == 0;
                    cert.execute(params![
                        serial,
                        at,
                        at + 730 * DAY,
                        if revoked { "revoked" } else { "valid" },
                        revoked.then_some(at + DAY),
                        revoked.then_some(1),
                    ])
                    .expect("certificate");
                }
                stmt.execute(params![
                    kind,
                    org,
                    province,
                    path,
                    state,
                    format!("Nguyễn Văn {i}"),
                    format!("gv{i}@truong.edu.vn"),
                    submitted,
                    accepted,
                    due,
                    fulfilled,
                    closed,
                    issued
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
        done = (done + 50_000).min(count);
        eprint!("\rloaded {done} requests");
    }
    eprintln!();
}

fn percentile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram")
}

fn line(name: &str, h: &Histogram<u64>, base: &Histogram<u64>) {
    println!(
        "{name:<44} p50 {:>8.3} ms  p99 {:>8.3} ms   bare: p50 {:>7.3} ms  p99 {:>7.3} ms   p99 ratio {:.1}x",
        percentile_ms(h, 0.5),
        percentile_ms(h, 0.99),
        percentile_ms(base, 0.5),
        percentile_ms(base, 0.99),
        percentile_ms(h, 0.99) / percentile_ms(base, 0.99).max(1e-6)
    );
}

/// A P-256 CSR and a document with a detached CMS signature by the organisation officer's
/// certificate, made with the openssl command line.
struct Paperwork {
    csr: String,
    document: Vec<u8>,
    signature: Vec<u8>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn paperwork(data: &Path, dir: &Path) -> Paperwork {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "sub.key",
            "-subj",
            "/CN=Giáo viên",
            "-utf8",
            "-out",
            "sub.csr",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "officer.key",
            "-subj",
            "/CN=Cán bộ văn thư/O=Trường Tiểu học số 0",
            "-utf8",
            "-out",
            "officer.csr",
        ],
    );
    let officer = daemon::pkid(
        data,
        &[
            "cert",
            "issue",
            "--csr",
            dir.join("officer.csr").to_str().unwrap_or_default(),
            "--profile",
            "person",
        ],
    );
    std::fs::write(dir.join("officer.pem"), &officer).expect("write");
    daemon::pkid(
        data,
        &[
            "operator",
            "add-cert",
            "--id",
            "van-thu",
            "--cert",
            dir.join("officer.pem").to_str().unwrap_or_default(),
        ],
    );
    let document =
        "ĐỀ NGHỊ CẤP CHỨNG THƯ SỐ\nKính gửi: Cục Chứng thực số và Bảo mật thông tin\n".repeat(40);
    std::fs::write(dir.join("request.txt"), &document).expect("write");
    openssl(
        dir,
        &[
            "cms",
            "-sign",
            "-binary",
            "-outform",
            "DER",
            "-in",
            "request.txt",
            "-signer",
            "officer.pem",
            "-inkey",
            "officer.key",
            "-out",
            "request.p7s",
        ],
    );
    Paperwork {
        csr: std::fs::read_to_string(dir.join("sub.csr")).expect("csr"),
        document: document.into_bytes(),
        signature: std::fs::read(dir.join("request.p7s")).expect("p7s"),
    }
}

fn main() {
    let requests = arg(1, 1_000_000);
    let organisations = arg(2, 10_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    daemon::pkid(&data, &["init"]);
    let now = SystemClock.now();
    let db = data.join("pkid.db");
    let mut conn = Connection::open(&db).expect("db");
    let started = Instant::now();
    let orgs = populate_organisations(&mut conn, organisations, now);
    populate_requests(&mut conn, &orgs, requests, now);
    conn.execute_batch("ANALYZE;").expect("analyze");
    eprintln!(
        "populated {requests} requests across {organisations} organisations in {:?}",
        started.elapsed()
    );

    daemon::pkid(
        &data,
        &[
            "operator",
            "add",
            "--id",
            "ra-p17",
            "--name",
            "Cán bộ RA",
            "--role",
            "ra-officer",
            "--scope",
            "province:P17",
        ],
    );
    let (leaf, _, _) = orgs[PROVINCES].clone();
    daemon::pkid(
        &data,
        &[
            "operator",
            "add",
            "--id",
            "van-thu",
            "--name",
            "Văn thư",
            "--role",
            "org-officer",
            "--org",
            &leaf,
        ],
    );
    let papers = paperwork(&data, dir.path());

    let opened = pkid::datadir::open(&data, true).expect("open");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let desk = RequestDesk::open(
        &opened.config,
        opened.store.clone(),
        opened.authority.clone(),
        opened.keys.as_deref(),
        None,
        clock,
    )
    .expect("desk");
    let officer = desk
        .authenticate_token(&token(&data, "ra-p17"))
        .expect("officer");
    let filer = desk
        .authenticate_token(&token(&data, "van-thu"))
        .expect("filer");

    // ---- list ------------------------------------------------------------------------------
    let max_id: i64 = conn
        .query_row("SELECT MAX(id) FROM requests", [], |r| r.get(0))
        .expect("max");
    let mut cursors = Vec::with_capacity(LIST_QUERIES);
    for i in 0..LIST_QUERIES {
        // Half first pages, half deep pages at spread positions.
        cursors.push((i % 2 == 1).then(|| 1 + (i as i64 * 7_368_787) % max_id));
    }
    let mut list_h = histogram();
    for c in &cursors {
        let t = Instant::now();
        let page = desk
            .list(
                &officer,
                &ListQuery {
                    cursor: c.map(|c| c.to_string()),
                    limit: Some(PAGE),
                    ..ListQuery::default()
                },
            )
            .expect("list");
        list_h.record(t.elapsed().as_micros() as u64).ok();
        assert!(page
            .items
            .iter()
            .all(|r| r.organisation.starts_with("so-p17") || r.organisation.starts_with("don-vi")));
    }
    let mut bare_h = histogram();
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT * FROM requests WHERE province = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
            )
            .expect("prepare");
        for c in &cursors {
            let t = Instant::now();
            let n = stmt
                .query_map(
                    params!["P17", c.unwrap_or(i64::MAX), PAGE as i64 + 1],
                    |r| r.get::<_, i64>(0),
                )
                .expect("query")
                .count();
            bare_h.record(t.elapsed().as_micros() as u64).ok();
            assert!(
                c.is_some() || n > 0,
                "the province's first page is not empty"
            );
        }
    }
    println!("RA benchmark: {requests} requests, {organisations} organisations, SQLite (WAL; each write synced before it returns, syncs shared)");
    line("list: province RA officer, 50 per page", &list_h, &bare_h);

    // ---- submit ------------------------------------------------------------------------------
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
    let input = RequestInput {
        kind: "issue".into(),
        organisation: None,
        profile: Some("person".into()),
        issuer: None,
        subscriber: Some(SubscriberInput {
            name: Some("Đặng Thị Ngọc Ánh".into()),
            email: Some("anh@truong.edu.vn".into()),
            ..SubscriberInput::default()
        }),
        csr: Some(papers.csr.clone()),
        key_origin: None,
        certificate: None,
        reason: None,
        recovery: None,
        document: Some(DocumentInput {
            filename: "de-nghi.txt".into(),
            content_base64: b64(&papers.document),
            signature_base64: Some(b64(&papers.signature)),
        }),
    };
    let first = desk.submit(&filer, input.clone()).expect("submit");
    let accepted = first.state == "accepted";
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..SUBMISSIONS / 2 {
                    desk.submit(&filer, input.clone()).expect("submit");
                }
            });
        }
    });
    let submit_rate = SUBMISSIONS as f64 / t.elapsed().as_secs_f64();
    let bare = Connection::open(&db).expect("db");
    bare.execute_batch("PRAGMA synchronous=FULL;")
        .expect("pragma");
    let t = Instant::now();
    for i in 0..SUBMISSIONS {
        let bare = bare.unchecked_transaction().expect("tx");
        bare.execute(
            "INSERT INTO documents (filename, content, signature, sha256, valid, created_at) VALUES ('d', ?1, ?2, x'00', 1, ?3)",
            params![papers.document, papers.signature, now],
        )
        .expect("doc");
        bare.execute(
            "INSERT INTO requests (kind, organisation, province, org_path, state, key_origin, subscriber_name, csr, submitted_by, submitted_at, updated_at)
             VALUES ('issue', ?1, 'P01', '/x/', 'accepted', 'csr', 'n', ?2, 'b', ?3, ?3)",
            params![leaf, papers.csr.as_bytes(), now + i as u64],
        )
        .expect("req");
        let id = bare.last_insert_rowid();
        bare.execute("INSERT INTO request_events (request, at, actor, action, to_state) VALUES (?1, ?2, 'b', 'submit', 'accepted')", params![id, now])
            .expect("event");
        bare.execute("INSERT INTO audit (at, actor, action, target, outcome, detail) VALUES (?1, 'b', 'x', 'y', 'success', '')", params![now])
            .expect("audit");
        bare.commit().expect("commit");
    }
    let bare_rate = SUBMISSIONS as f64 / t.elapsed().as_secs_f64();
    println!(
        "{:<44} {:>8.0} /s (document {})   bare inserts: {:>8.0} /s   ratio {:.2}x",
        "submit: issue + CSR + signed document, 2 threads",
        submit_rate,
        if accepted {
            "valid: accepted at once"
        } else {
            "NOT valid: awaiting-original"
        },
        bare_rate,
        submit_rate / bare_rate
    );

    // ---- report -----------------------------------------------------------------------------
    let me = RequestDesk::console("bench");
    let to = time::OffsetDateTime::from_unix_timestamp(now as i64)
        .expect("now")
        .date();
    let from = to - time::Duration::days(364);
    let q = ReportQuery {
        organisation: Some("chinh-phu".into()),
        from: from.to_string(),
        to: to.to_string(),
        format: None,
    };
    let mut times = Vec::new();
    let mut submitted = 0;
    let mut certificates = (0, 0);
    for _ in 0..REPORT_RUNS {
        let t = Instant::now();
        let r = desk.report(&me, &q).expect("report");
        times.push(t.elapsed());
        submitted = r.requests.values().map(|c| c.submitted).sum::<u64>();
        certificates = (r.certificates.valid, r.certificates.revoked);
    }
    times.sort();
    let mut bare_times = Vec::new();
    let start = now - 365 * DAY;
    for _ in 0..REPORT_RUNS {
        let t = Instant::now();
        let mut stmt = conn
            .prepare_cached(
                "SELECT kind, state, COUNT(*) FROM requests WHERE org_path >= '/chinh-phu/' AND org_path < '/chinh-phu0'
                 AND (submitted_at >= ?1 OR fulfilled_at >= ?1 OR due_at >= ?1) GROUP BY kind, state",
            )
            .expect("prepare");
        let n = stmt
            .query_map([start], |r| r.get::<_, i64>(2))
            .expect("q")
            .count();
        bare_times.push(t.elapsed());
        assert!(n > 0);
    }
    bare_times.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "{:<44} {:>8.3} s ({submitted} requests filed in the year; certificates {} valid, {} revoked)   bare GROUP BY: {:>6.3} s   ratio {:.2}x",
        "report: a year of the whole tree",
        median(&times).as_secs_f64(),
        certificates.0,
        certificates.1,
        median(&bare_times).as_secs_f64(),
        median(&times).as_secs_f64() / median(&bare_times).as_secs_f64().max(1e-9)
    );
}

/// A bearer token for an operator, from the CLI (its last stdout line).
fn token(data: &Path, id: &str) -> String {
    let out = daemon::pkid(data, &["operator", "token", "--id", id]);
    String::from_utf8_lossy(&out)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}
