//! Portal benchmark (issue 12): the server time of each main page against the call behind it,
//! interleaved in the same run, at 50 concurrent signed-in sessions.
//!
//! ```text
//! page                                   vs   the call behind it (same run, same sessions)
//! GET /  (RA officer: the queue of 10,000)     GET /api/v1/requests?order=queue&limit=50
//! GET /  (organisation officer: dashboard)     GET /api/v1/requests?limit=50
//! GET /requests/{id}                           GET /api/v1/requests/{id} + …/events
//! GET /search?q=… (1,000,000 certificates)     the store's search (no JSON API serves it)
//! ```
//!
//! Server time: each request goes through the HTTPS listener's router in process (the same
//! tower stack `pkid serve` runs: rate limit, body limit, routing, the handler), with no
//! socket or TLS, so the figure is what the server spends. Sessions are made through the real
//! login form (password + TOTP on the app's fake clock); API calls carry bearer tokens.
//!
//! ```text
//! cargo build --release -p pkid-bench -p pkid && target/release/portal [certificates] [queue] [sessions] [rounds]
//! ```
//!
//! Goals: every page p99 < 20 ms at 50 sessions; each page ≤ 1.5× its API call.

use axum::body::Body;
use axum::extract::ConnectInfo;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use pkid::clock::{Clock, FakeClock, SystemClock};
use pkid::http::Listener;
use pkid_bench::daemon;
use rusqlite::{params, Connection};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;

const PASSWORD: &str = "mật khẩu đủ dài cho benchmark";
const FAMILY: [&str; 8] = [
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ",
];
const MIDDLE: [&str; 6] = ["Văn", "Thị", "Minh", "Ngọc", "Đức", "Thu"];
const GIVEN: [&str; 10] = [
    "An", "Bình", "Cường", "Dũng", "Hà", "Hạnh", "Khánh", "Lan", "Nam", "Phương",
];
/// Search queries: a given name (about a tenth of the certificates match), a family and given
/// name together, and an organisation word.
const QUERIES: [&str; 3] = ["Phương", "Lê Khánh", "Trường 417"];

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// One school in one province, `queue` open requests of it (a third overdue), and
/// `certificates` issued certificates with Vietnamese holder names, each carrying the DER of
/// the issuing CA's certificate (the search page parses every hit's DER).
fn populate(db: &Path, der: &[u8], certificates: usize, queue: usize, now: u64) {
    let mut conn = Connection::open(db).expect("db");
    conn.execute_batch("PRAGMA synchronous=OFF;")
        .expect("pragma");
    let tx = conn.transaction().expect("tx");
    tx.execute(
        "INSERT INTO organisations (id, name, province, parent, path, created_at)
         VALUES ('so-p01', 'Sở Giáo dục và Đào tạo P01', 'P01', NULL, '/so-p01/', ?1),
                ('truong-1', 'Trường THPT Lê Quý Đôn', 'P01', 'so-p01', '/so-p01/truong-1/', ?1)",
        params![now],
    )
    .expect("organisations");
    {
        let mut req = tx
            .prepare(
                "INSERT INTO requests (kind, organisation, province, org_path, state, key_origin,
                 subscriber_name, subscriber_email, submitted_by, submitted_at, accepted_at,
                 due_at, updated_at)
                 VALUES ('issue', 'truong-1', 'P01', '/so-p01/truong-1/', ?1, 'csr', ?2, ?3,
                         'loader', ?4, ?5, ?6, ?4)",
            )
            .expect("prepare");
        for i in 0..queue {
            let state = ["submitted", "accepted", "approved"][i % 3];
            let submitted = now - 86_400 * 10 + i as u64;
            let accepted = (state != "submitted").then_some(submitted + 600);
            // A third overdue, the rest due within the next five days.
            let due = accepted.map(|a| {
                if i % 3 == 1 {
                    now - 3600 - (i as u64 % 7200)
                } else {
                    a + 86_400 * 12 + (i as u64 % 86_400)
                }
            });
            req.execute(params![
                state,
                name(i),
                format!("gv{i}@lqd.edu.vn"),
                submitted,
                accepted,
                due
            ])
            .expect("request");
        }
        let mut cert = tx
            .prepare(
                "INSERT INTO certificates (serial, issuer, subject, profile, not_before, not_after,
                 status, tbs, der, created_at, updated_at)
                 VALUES (?1, 'issuing', ?2, 'person', ?3, ?4, 'valid', x'00', ?5, ?3, ?3)",
            )
            .expect("prepare");
        for i in 0..certificates {
            cert.execute(params![
                format!("{:032x}", (1u128 << 120) + i as u128),
                format!("CN={},O=Trường {},C=VN", name(i), i % 1000),
                now - 86_400,
                now + 86_400 * 700,
                der
            ])
            .expect("certificate");
            if i % 100_000 == 99_999 {
                eprint!("\rloaded {} certificates", i + 1);
            }
        }
    }
    tx.commit().expect("commit");
    conn.execute_batch("ANALYZE;").expect("analyze");
    eprintln!();
}

fn name(i: usize) -> String {
    format!(
        "{} {} {}",
        FAMILY[i % FAMILY.len()],
        MIDDLE[(i / 8) % MIDDLE.len()],
        GIVEN[(i / 48) % GIVEN.len()]
    )
}

/// An operator with a password and a TOTP secret; (its secret, a bearer token).
fn operator(data: &Path, id: &str, role_args: &[&str]) -> (Vec<u8>, String) {
    let mut args = vec!["operator", "add", "--id", id, "--name", "Cán bộ Đà Nẵng"];
    args.extend_from_slice(role_args);
    daemon::pkid(data, &args);
    let mut child = std::process::Command::new(daemon::pkid_binary())
        .arg("--data")
        .arg(data)
        .args(["operator", "password", "--id", id])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("pkid operator password");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(PASSWORD.as_bytes()).expect("password");
    }
    assert!(child.wait().expect("wait").success(), "operator password");
    let uri = String::from_utf8_lossy(&daemon::pkid(data, &["operator", "totp", "--id", id]))
        .into_owned();
    let secret = uri
        .split(['?', '&', '\n'])
        .find_map(|p| p.strip_prefix("secret="))
        .expect("a TOTP secret");
    let secret = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, secret.trim())
        .expect("base32");
    let out = daemon::pkid(data, &["operator", "token", "--id", id]);
    let token = String::from_utf8_lossy(&out)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    (secret, token)
}

async fn send(router: &Listener, req: Request<Body>) -> (StatusCode, Vec<u8>, Vec<String>) {
    let mut req = req;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
        .collect();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body.to_vec(), cookies)
}

fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    html[at..].split('"').next().unwrap_or_default().to_owned()
}

/// A portal session of `id` through the login form: its `Cookie` header.
async fn sign_in(router: &Listener, id: &str, secret: &[u8], now: u64) -> String {
    let get = Request::get("/").body(Body::empty()).expect("request");
    let (_, body, cookies) = send(router, get).await;
    let pre = cookies.join("; ");
    let code = pkid::ra::credentials::totp_code(secret, id, now).expect("code");
    let form = format!(
        "csrf={}&username={id}&password={}&totp={code}",
        csrf(&String::from_utf8_lossy(&body)),
        urlencode(PASSWORD)
    );
    let post = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &pre)
        .body(Body::from(form))
        .expect("request");
    let (status, body, cookies) = send(router, post).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "login of {id}: {}",
        String::from_utf8_lossy(&body)
    );
    format!("{pre}; {}", cookies.join("; "))
}

/// `s` percent-encoded for a form body or a query string.
fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// What one round of a measurement does: the page, then the call(s) behind it.
#[derive(Clone)]
enum Work {
    /// A page and the API paths behind it, with the session cookie and the bearer token.
    Api { page: String, api: Vec<String> },
    /// A search page and the store's search.
    Search,
}

async fn timed(router: &Listener, req: Request<Body>) -> u64 {
    let t = Instant::now();
    let (status, body, _) = send(router, req).await;
    let us = t.elapsed().as_micros() as u64;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&body[..body.len().min(500)])
    );
    us
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    name: &str,
    router: &Listener,
    store: Arc<dyn pkid::store::Store>,
    cookies: &[String],
    token: &str,
    work: Work,
    rounds: usize,
) -> bool {
    let mut tasks = Vec::new();
    for (s, cookie) in cookies.iter().enumerate() {
        let (router, store, cookie, token, work) = (
            router.clone(),
            store.clone(),
            cookie.clone(),
            token.to_owned(),
            work.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (mut page_h, mut base_h) = (histogram(), histogram());
            for r in 0..rounds {
                // Alternate which goes first, so neither always meets a warmer cache.
                let page_first = (r + s) % 2 == 0;
                for which in [page_first, !page_first] {
                    match (&work, which) {
                        (Work::Api { page, .. }, true) => {
                            let req = Request::get(page.as_str())
                                .header("cookie", &cookie)
                                .body(Body::empty())
                                .expect("request");
                            page_h.record(timed(&router, req).await.max(1)).ok();
                        }
                        (Work::Api { api, .. }, false) => {
                            let mut us = 0;
                            for path in api {
                                let req = Request::get(path.as_str())
                                    .header("authorization", format!("Bearer {token}"))
                                    .body(Body::empty())
                                    .expect("request");
                                us += timed(&router, req).await;
                            }
                            base_h.record(us.max(1)).ok();
                        }
                        (Work::Search, true) => {
                            let q = QUERIES[(r + s) % QUERIES.len()];
                            let req = Request::get(format!("/search?q={}", urlencode(q)))
                                .header("cookie", &cookie)
                                .body(Body::empty())
                                .expect("request");
                            page_h.record(timed(&router, req).await.max(1)).ok();
                        }
                        (Work::Search, false) => {
                            let q = QUERIES[(r + s) % QUERIES.len()];
                            let st = store.clone();
                            let t = Instant::now();
                            let query = pkid::store::CertificateQuery::Words(
                                q.split_whitespace().map(str::to_owned).collect(),
                            );
                            let hits =
                                tokio::task::spawn_blocking(move || st.search(&query, None, 51))
                                    .await
                                    .expect("task")
                                    .expect("search");
                            assert!(!hits.is_empty(), "the search finds certificates");
                            base_h.record((t.elapsed().as_micros() as u64).max(1)).ok();
                        }
                    }
                }
            }
            (page_h, base_h)
        }));
    }
    let (mut page, mut base) = (histogram(), histogram());
    for t in tasks {
        let (p, b) = t.await.expect("session task");
        page.add(p).expect("merge");
        base.add(b).expect("merge");
    }
    let ratio50 = ms(&page, 0.5) / ms(&base, 0.5).max(1e-6);
    let ratio99 = ms(&page, 0.99) / ms(&base, 0.99).max(1e-6);
    let met = ms(&page, 0.99) < 20.0 && ratio50 <= 1.5;
    println!(
        "{name:<34} page p50 {:>7.2} ms p99 {:>7.2} ms | behind it p50 {:>7.2} ms p99 {:>7.2} ms | page ÷ call p50 {ratio50:.2}x p99 {ratio99:.2}x | {} ({} pages)",
        ms(&page, 0.5),
        ms(&page, 0.99),
        ms(&base, 0.5),
        ms(&base, 0.99),
        if met { "goal met" } else { "goal NOT met" },
        page.len()
    );
    met
}

fn main() {
    // The daemon's own warnings and errors (RUST_LOG overrides), so a failed call says why.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let certificates = arg(1, 1_000_000);
    let queue = arg(2, 10_000);
    let sessions = arg(3, 50);
    let rounds = arg(4, 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    daemon::pkid(&data, &["init"]);
    let now = SystemClock.now();
    let pem = std::fs::read_to_string(data.join("certs/issuing.crt")).expect("issuing.crt");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).expect("DER");
    let started = Instant::now();
    populate(&data.join("pkid.db"), &der, certificates, queue, now);
    eprintln!(
        "populated {certificates} certificates and {queue} open requests in {:?}",
        started.elapsed()
    );
    let (ra_secret, ra_token) = operator(
        &data,
        "ra-p01",
        &["--role", "ra-officer", "--scope", "province:P01"],
    );
    let (vt_secret, vt_token) = operator(
        &data,
        "van-thu",
        &["--role", "org-officer", "--org", "truong-1"],
    );
    let request_id: i64 = Connection::open(data.join("pkid.db"))
        .expect("db")
        .query_row("SELECT MAX(id) FROM requests", [], |r| r.get(0))
        .expect("a request");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let clock = Arc::new(FakeClock::new(now));
        let (data2, clock2) = (data.clone(), clock.clone());
        let app = tokio::task::spawn_blocking(move || {
            pkid::app::App::build(&data2, clock2, |c| {
                // Logins from one address, faster than a person types.
                c.portal.login_attempts_per_minute = 60;
                // Every session comes from one address: the per-client limit would answer 429
                // to the fifty of them together (it is for one client, measured elsewhere).
                c.server.rate_limit = None;
            })
        })
        .await
        .expect("task")
        .expect("app");
        let router = app.routers().https;
        let store = app.state().store.clone();
        let mut ra = Vec::new();
        let mut vt = Vec::new();
        for _ in 0..sessions {
            // A TOTP code signs in once: each login at the next 30-second step of the app's
            // clock (the requests' deadlines stay where they are).
            clock.advance(30);
            let at = clock.now();
            ra.push(sign_in(&router, "ra-p01", &ra_secret, at).await);
            vt.push(sign_in(&router, "van-thu", &vt_secret, at).await);
        }
        println!(
            "portal pages at {sessions} sessions, {rounds} rounds each; {certificates} certificates, {queue} open requests in scope (server time, in process)"
        );
        let mut all = true;
        all &= measure(
            "queue (RA officer, GET /)",
            &router,
            store.clone(),
            &ra,
            &ra_token,
            Work::Api {
                page: "/".into(),
                api: vec!["/api/v1/requests?order=queue&limit=50".into()],
            },
            rounds,
        )
        .await;
        all &= measure(
            "dashboard (org officer, GET /)",
            &router,
            store.clone(),
            &vt,
            &vt_token,
            Work::Api {
                page: "/".into(),
                api: vec!["/api/v1/requests?limit=50".into()],
            },
            rounds,
        )
        .await;
        all &= measure(
            "request page (GET /requests/{id})",
            &router,
            store.clone(),
            &ra,
            &ra_token,
            Work::Api {
                page: format!("/requests/{request_id}"),
                api: vec![
                    format!("/api/v1/requests/{request_id}"),
                    format!("/api/v1/requests/{request_id}/events"),
                ],
            },
            rounds,
        )
        .await;
        all &= measure(
            "search (GET /search?q=…)",
            &router,
            store,
            &ra,
            &ra_token,
            Work::Search,
            rounds,
        )
        .await;
        println!(
            "{}",
            if all {
                "all portal goals met"
            } else {
                "some portal goals not met"
            }
        );
    });
}
