//! The registration portal, end to end.
//!
//! ```text
//! in-process (oneshot through the HTTPS router, no socket):
//!   headers · language · the hashed style sheet · CSRF refusal · failed logins (limited,
//!   audited) · a script in a holder's name shown as text
//! real daemon + headless Chromium (selenium, daemon/tests/portal/driver.py):
//!   log in with password + TOTP · file an issue request · approve it as an RA officer in
//!   scope · be refused out of scope · search · switch language · CSRF refusal · screenshots
//! ```
//!
//! The browser test needs the Python that `scripts/test.sh` prepares (`target/venv-web`,
//! selenium from PyPI) in `PKID_TEST_BROWSER_PYTHON`, and fails naming the script without it.

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use common::inprocess::build_app;
use common::ra::Testbed;
use common::*;
use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use pkid::clock::{Clock, FakeClock};
use pkid::http::Listener;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use tower::ServiceExt;

/// One exchange through the router: status, headers, body text.
struct Page {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `name=value` of a `Set-Cookie` the page sent.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap_or_default().to_owned())
    }

    /// The value of the first hidden `csrf` input.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form token")
            + 19;
        self.body[at..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

async fn send(router: &Listener, req: Request<Body>, from: [u8; 4]) -> Page {
    let mut req = req;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((from, 40000))));
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).expect("request")
}

fn post_form(path: &str, cookie: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(Body::from(body.to_owned()))
        .expect("request")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

async fn app(data: &Path) -> Listener {
    let app = build_app(data, Arc::new(FakeClock::new(now()))).await;
    app.routers().https
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_the_security_headers_and_speak_vietnamese_first() {
    let dir = init(&[]);
    let https = app(dir.path()).await;

    let home = send(&https, get("/", &[]), [127, 0, 0, 1]).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    let csp = home.header("content-security-policy");
    for part in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "style-src 'self'",
    ] {
        assert!(csp.contains(part), "CSP {csp:?} lacks {part}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(home.header("x-content-type-options"), "nosniff");
    assert_eq!(home.header("referrer-policy"), "no-referrer");
    assert!(home
        .header("strict-transport-security")
        .starts_with("max-age="));
    assert_eq!(home.header("cache-control"), "no-store");
    assert!(home.header("content-type").starts_with("text/html"));
    assert!(home.body.contains("<html lang=\"vi\">"), "{}", home.body);
    assert!(home.body.contains("Đăng nhập"));
    for hook in [
        "login-username",
        "login-password",
        "login-totp",
        "login-submit",
        "search-query",
        "search-submit",
        "lang-switch",
    ] {
        assert!(
            home.body.contains(&format!("data-testid=\"{hook}\"")),
            "no {hook}"
        );
    }
    assert!(!home.body.contains("<script"), "no script is served");
    let pre = home
        .cookie("__Host-pkid-form")
        .expect("the pre-login form cookie");
    let set = home
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        set.contains("Secure") && set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!pre.is_empty());

    // Every control has a label.
    for id in ["username", "password", "totp", "q"] {
        assert!(
            home.body.contains(&format!("<label for=\"{id}\">")),
            "no label for {id}"
        );
    }

    let en = send(
        &https,
        get("/", &[("accept-language", "en-GB,en;q=0.9,vi;q=0.5")]),
        [127, 0, 0, 1],
    )
    .await;
    assert!(en.body.contains("<html lang=\"en\">"), "{}", en.body);
    assert!(en.body.contains("Log in"));
    let cookie_wins = send(
        &https,
        get(
            "/",
            &[("accept-language", "en"), ("cookie", "pkid-lang=vi")],
        ),
        [127, 0, 0, 1],
    )
    .await;
    assert!(cookie_wins.body.contains("<html lang=\"vi\">"));

    // The style sheet, under its content hash, cached for good; any other name is not found.
    let at = home
        .body
        .find("href=\"/static/portal.")
        .expect("stylesheet link")
        + 6;
    let css_path = home.body[at..].split('"').next().expect("path").to_owned();
    assert!(
        css_path.len() == "/static/portal.".len() + 12 + ".css".len(),
        "{css_path}"
    );
    let css = send(&https, get(&css_path, &[]), [127, 0, 0, 1]).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").starts_with("text/css"));
    assert!(css.header("cache-control").contains("immutable"));
    let stale = send(
        &https,
        get("/static/portal.000000000000.css", &[]),
        [127, 0, 0, 1],
    )
    .await;
    assert_eq!(stale.status, StatusCode::NOT_FOUND);

    // The plain-HTTP listener does not serve the portal.
    let app2 = build_app(dir.path(), Arc::new(FakeClock::new(now()))).await;
    let plain = send(&app2.routers().http, get("/", &[]), [127, 0, 0, 1]).await;
    assert_eq!(plain.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_posted_without_its_token_is_refused() {
    let dir = init(&[]);
    let https = app(dir.path()).await;
    let home = send(&https, get("/", &[]), [127, 0, 0, 2]).await;
    let pre = home.cookie("__Host-pkid-form").expect("cookie");

    for (path, body) in [
        ("/login", "username=a&password=b&totp=123456".to_owned()),
        (
            "/login",
            "username=a&password=b&totp=123456&csrf=forged".to_owned(),
        ),
        ("/lang", "lang=en".to_owned()),
        ("/logout", String::new()),
        ("/login/certificate", "csrf=".to_owned()),
    ] {
        let r = send(&https, post_form(path, &pre, &body), [127, 0, 0, 2]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} {body}: {}", r.body);
        assert!(r.body.contains("Biểu mẫu không hợp lệ"), "{}", r.body);
        assert!(r
            .header("content-security-policy")
            .contains("frame-ancestors"));
    }
    // A token from another browser (cookie) is not this one's.
    let other = send(&https, get("/", &[]), [127, 0, 0, 2]).await;
    let r = send(
        &https,
        post_form("/lang", &pre, &format!("lang=en&csrf={}", other.csrf())),
        [127, 0, 0, 2],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // With its token the switch works.
    let r = send(
        &https,
        post_form("/lang", &pre, &format!("lang=en&csrf={}", home.csrf())),
        [127, 0, 0, 2],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.cookie("pkid-lang").as_deref(), Some("pkid-lang=en"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_say_only_that_they_failed_are_limited_and_audited() {
    let dir = init(&[]);
    let data = dir.path();
    pkid_ok(
        data,
        &[
            "org",
            "add",
            "--id",
            "so-dn",
            "--name",
            "Sở Giáo dục",
            "--province",
            "DN",
        ],
    );
    pkid_ok(
        data,
        &[
            "operator",
            "add",
            "--id",
            "ra-dn",
            "--name",
            "Trần Thị B",
            "--role",
            "ra-officer",
            "--scope",
            "province:DN",
        ],
    );
    set_password(data, "ra-dn", "mật khẩu đủ dài 2026");
    pkid_ok(data, &["operator", "totp", "--id", "ra-dn"]);
    let https = app(data).await;
    let home = send(&https, get("/", &[]), [127, 0, 0, 3]).await;
    let pre = home.cookie("__Host-pkid-form").expect("cookie");
    let csrf = home.csrf();

    let wrong_password = send(
        &https,
        post_form(
            "/login",
            &pre,
            &format!("csrf={csrf}&username=ra-dn&password=sai&totp=000000"),
        ),
        [127, 0, 0, 3],
    )
    .await;
    let unknown = send(
        &https,
        post_form(
            "/login",
            &pre,
            &format!("csrf={csrf}&username=ai-do&password=sai&totp=000000"),
        ),
        [127, 0, 0, 3],
    )
    .await;
    for r in [&wrong_password, &unknown] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert!(r.body.contains("Đăng nhập không thành công."), "{}", r.body);
        assert!(r.cookie("__Host-pkid-session").is_none());
    }
    // Nothing tells an unknown id from a wrong password (the id typed is kept in the form).
    assert_eq!(
        wrong_password.body.replace("ra-dn", "ID"),
        unknown.body.replace("ai-do", "ID")
    );
    assert!(
        !wrong_password.body.contains("sai\""),
        "the password typed is not echoed"
    );

    // Five attempts a minute for one id: the next is refused before any check.
    let mut last = StatusCode::OK;
    for _ in 0..5 {
        last = send(
            &https,
            post_form(
                "/login",
                &pre,
                &format!("csrf={csrf}&username=ra-dn&password=sai&totp=000000"),
            ),
            [127, 0, 0, 4],
        )
        .await
        .status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);

    let audit = pkid_ok(data, &["audit", "list", "--limit", "1000"]);
    let refused: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("portal.login") && l.contains("refused"))
        .collect();
    assert!(refused.len() >= 6, "{audit}");
    assert!(refused.iter().any(|l| l.contains("ai-do")));
    assert!(!audit.contains("sai"), "no password in the audit log");
}

/// `pkid operator password`, the password on stdin.
fn set_password(data: &Path, id: &str, password: &str) {
    let mut child = pkid_command(data)
        .args(["operator", "password", "--id", id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pkid");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_success(&out, "pkid operator password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_in_a_holders_name_is_shown_as_text() {
    let dir = init(&[]);
    let data = dir.path();
    let work = tempdir();
    let (_key, csr) = make_csr(
        work.path(),
        "/O=Trường <b>THPT<\\/b>/CN=<script>alert(1)<\\/script> Nguyễn Thị Hoa",
        "ec:P-256",
    );
    let (serial, _) = issue(data, &csr, "person", &[]);
    let https = app(data).await;

    let r = send(&https, get("/search?q=script", &[]), [127, 0, 0, 5]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("data-testid=\"search-result\""),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<script>alert(1)"), "{}", r.body);
    assert!(!r.body.contains("<b>THPT"), "{}", r.body);
    // askama writes `<` as `&#60;`: the name is there, as text.
    assert!(
        r.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62; Nguyễn Thị Hoa"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("Nguyễn Thị Hoa"),
        "diacritics exactly as issued"
    );
    assert!(r.body.contains("còn hiệu lực"));
    assert!(r.body.contains(&format!("/certs/{serial}.pem")));

    // By serial, with colons, too; a query that is too short is explained, not run.
    let spaced: String = serial
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let by_serial = send(
        &https,
        get(&format!("/search?q={spaced}"), &[]),
        [127, 0, 0, 5],
    )
    .await;
    assert!(
        by_serial
            .body
            .contains(&format!("data-serial=\"{serial}\"")),
        "{}",
        by_serial.body
    );
    let short = send(&https, get("/search?q=a", &[]), [127, 0, 0, 5]).await;
    assert!(short.body.contains("từ 2 đến 128 ký tự"));
    let reflected = send(
        &https,
        get("/search?q=%3Cimg%20src%3Dx%3E", &[]),
        [127, 0, 0, 5],
    )
    .await;
    assert!(!reflected.body.contains("<img"), "the query is escaped too");
}

// ---- the real browser ----------------------------------------------------------------------

/// The operator's TOTP secret (base32), from `pkid operator totp`'s otpauth:// URI.
fn totp_secret(bed: &Testbed, id: &str) -> String {
    let out = bed.cli(&["operator", "totp", "--id", id]);
    let uri = out
        .lines()
        .find(|l| l.starts_with("otpauth://"))
        .expect("an otpauth URI");
    uri.split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .expect("secret=")
        .to_owned()
}

#[test]
fn a_browser_logs_in_files_approves_is_refused_out_of_scope_and_searches() {
    let python = std::env::var("PKID_TEST_BROWSER_PYTHON").unwrap_or_else(|_| {
        panic!("PKID_TEST_BROWSER_PYTHON is not set: run scripts/test.sh, which prepares target/venv-web with selenium and sets it")
    });
    let bed = Testbed::start(|_| {});
    bed.org(
        "so-gd-dn",
        "Sở Giáo dục và Đào tạo Đà Nẵng",
        None,
        Some("DN"),
    );
    bed.org(
        "thpt-lqd",
        "Trường THPT Lê Quý Đôn",
        Some("so-gd-dn"),
        Some("DN"),
    );
    bed.org(
        "so-gd-hn",
        "Sở Giáo dục và Đào tạo Hà Nội",
        None,
        Some("HN"),
    );
    bed.operator("van-thu", "org-officer", Some("thpt-lqd"), None);
    bed.operator("ra-dn", "ra-officer", None, Some("province:DN"));
    bed.operator("ra-hn", "ra-officer", None, Some("province:HN"));
    bed.operator("quan-tri", "ca-admin", None, None);
    // Older fulfilled requests of the school, so that its dashboard has a second page.
    let seeded = 60;
    seed_requests(bed.data(), "thpt-lqd", &vec![("fulfilled", None); seeded]);
    let password = "mật khẩu đủ dài 2026";
    let mut secrets = serde_json::Map::new();
    for id in ["van-thu", "ra-dn", "ra-hn", "quan-tri"] {
        set_password(bed.data(), id, password);
        secrets.insert(id.into(), totp_secret(&bed, id).into());
    }
    let name = "<script>alert(1)</script> Phạm Văn Cường";
    let csr = bed.csr("Phạm Văn Cường", "ec:P-256");
    // A request document whose detached signature is not one: checked before sending, it
    // shows as not verified.
    let document = bed.work().join("de-nghi-cap-moi.txt");
    std::fs::write(
        &document,
        "Đề nghị cấp chứng thư số cho thầy Phạm Văn Cường",
    )
    .expect("doc");
    let signature = bed.work().join("de-nghi-cap-moi.p7s");
    std::fs::write(&signature, b"not a CMS signature").expect("sig");
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/portal-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot directory");
    let plan = serde_json::json!({
        "base": bed.https_url(""),
        "password": password,
        "totp": secrets,
        "subscriber": name,
        "csr": csr,
        "document": document,
        "signature": signature,
        "screenshots": shots,
        "seeded": seeded,
    });
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/portal/driver.py");
    let out = std::process::Command::new(&python)
        .arg(&driver)
        .env("PKID_PORTAL_PLAN", plan.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser driver failed ({}):\n{stdout}\n{}\n--- daemon log ---\n{}",
        out.status,
        lossy(&out.stderr),
        bed.logs()
    );
    // What the browser did reached the store: the request was fulfilled by ra-dn, and the
    // out-of-scope officer's read was refused and audited.
    let id: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("request "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("the driver names the request it filed:\n{stdout}"));
    let shown = bed.cli(&["request", "show", &id.to_string()]);
    assert!(shown.contains("fulfilled"), "{shown}");
    assert!(
        shown.contains("Phạm Văn Cường"),
        "the name round-trips exactly: {shown}"
    );
    assert!(bed
        .audit_rows()
        .iter()
        .any(|r| r.actor == "ra-dn" && r.action == "portal.login" && r.outcome == "success"));
    assert!(
        bed.refused("ra-hn", "request.read", &id.to_string()),
        "the out-of-scope read is audited"
    );
    // The chain the browser's link downloads is the certificate, its issuer and the root.
    let p7b = stdout
        .lines()
        .find_map(|l| l.strip_prefix("p7b "))
        .unwrap_or_else(|| panic!("the driver saved the .p7b:\n{stdout}"));
    let printed = openssl_ok(&[
        "pkcs7",
        "-inform",
        "DER",
        "-in",
        p7b,
        "-print_certs",
        "-noout",
    ]);
    assert_eq!(printed.matches("subject=").count(), 3, "{printed}");
    assert!(bed
        .audit_rows()
        .iter()
        .any(|r| r.actor == "quan-tri" && r.action == "org.remove" && r.target == "so-yt-dn"));
    for shot in [
        "home.png",
        "dashboard.png",
        "form.png",
        "queue.png",
        "request.png",
        "search.png",
        "english.png",
        "audit.png",
        "admin.png",
    ] {
        assert!(shots.join(shot).is_file(), "screenshot {shot}");
    }
}

/// The `csrf` value of the first form in an HTML body.
fn form_token(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    html[at..].split('"').next().unwrap_or_default().to_owned()
}

#[test]
fn an_operator_logs_in_with_a_registered_client_certificate() {
    let bed = Testbed::start(|_| {});
    bed.org(
        "so-gd-dn",
        "Sở Giáo dục và Đào tạo Đà Nẵng",
        None,
        Some("DN"),
    );
    bed.cli(&[
        "operator",
        "add",
        "--id",
        "ra-cert",
        "--name",
        "Trần Minh Quân",
        "--role",
        "ra-officer",
        "--scope",
        "province:DN",
    ]);
    let (key, csr) = make_csr(bed.work(), "/CN=ra-cert", "ec:P-256");
    let (_serial, cert) = issue(bed.data(), &csr, "tls-client", &[]);
    bed.cli(&[
        "operator",
        "add-cert",
        "--id",
        "ra-cert",
        "--cert",
        path_str(&cert),
    ]);
    let (other_key, other_csr) = make_csr(bed.work(), "/CN=nobody", "ec:P-256");
    let (_, other_cert) = issue(bed.data(), &other_csr, "tls-client", &[]);
    let jar = bed.work().join("cookies.txt");
    let mut tls = bed.tls_args();
    tls.extend([
        "-b".into(),
        path_str(&jar).into(),
        "-c".into(),
        path_str(&jar).into(),
    ]);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let page = |extra: &[&str], path: &str| {
        let mut args = tls.clone();
        args.extend_from_slice(extra);
        let url = bed.https_url(path);
        args.push(&url);
        fetch(&args)
    };
    let home = page(&[], "/");
    assert_eq!(home.status, 200);
    let csrf = format!("csrf={}", form_token(&home.text()));

    // A certificate pkid issued but registered to nobody is not an operator's login.
    let other = [
        "--cert",
        path_str(&other_cert),
        "--key",
        path_str(&other_key),
    ];
    let mut args = other.to_vec();
    args.extend(["-d", &csrf]);
    // Until the daemon has followed the CLI's issuance, the handshake itself refuses the
    // certificate (unknown to the index: curl gets no HTTP status at all).
    let mut refused = None;
    poll(ra_propagation(), || {
        let r = page(&args, "/login/certificate");
        let done = r.status != 0;
        refused = Some(r);
        done
    });
    let refused = refused.expect("a reply");
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert!(refused
        .text()
        .contains("Không đăng nhập được bằng chứng thư số"));

    // The registered one is, once the daemon has followed the CLI's change to the store.
    let mine = ["--cert", path_str(&cert), "--key", path_str(&key)];
    let mut args = mine.to_vec();
    args.extend(["-d", &csrf]);
    let mut last = None;
    let ok = poll(ra_propagation(), || {
        let r = page(&args, "/login/certificate");
        let done = r.status == 303;
        last = Some(r);
        done
    });
    let last = last.expect("a reply");
    assert!(ok, "{} {}", last.status, last.text());
    assert!(
        last.headers.contains("__Host-pkid-session"),
        "{}",
        last.headers
    );
    // The session cookie alone carries the login now (no certificate on this request).
    let queue = page(&[], "/");
    assert!(
        queue.text().contains("Trần Minh Quân · cán bộ đăng ký"),
        "{}",
        queue.text()
    );
    assert!(queue.text().contains("data-testid=\"logout\""));
    assert!(bed
        .audit_rows()
        .iter()
        .any(|r| r.actor == "ra-cert" && r.action == "portal.login" && r.outcome == "success"));
    // Logout ends the session on the server: the old cookie, replayed, is worth nothing.
    let jar_text = String::from_utf8(read(&jar)).expect("cookie jar");
    let session = jar_text
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 7 && f[5] == "__Host-pkid-session").then(|| f[6].to_owned())
        })
        .expect("the session cookie in the jar");
    let token = format!("csrf={}", form_token(&queue.text()));
    let out = page(&["-d", &token], "/logout");
    assert_eq!(out.status, 303);
    let mut replay: Vec<String> = bed.tls_args();
    replay.extend([
        "-H".into(),
        format!("Cookie: __Host-pkid-session={session}"),
        bed.https_url("/"),
    ]);
    let replay: Vec<&str> = replay.iter().map(String::as_str).collect();
    let after = fetch(&replay);
    assert!(
        after.text().contains("data-testid=\"login-username\""),
        "{}",
        after.text()
    );
    assert!(!after.text().contains("Trần Minh Quân"));
}

fn ra_propagation() -> std::time::Duration {
    common::ra::PROPAGATION
}

/// A `multipart/form-data` body of text fields and files (name, filename, bytes).
fn multipart(fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "pkid-portal-test-7d3c1a";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    for (name, filename, bytes) in files {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Signs `id` in through `POST /login` with password + the TOTP code at the app's clock;
/// returns the `Cookie` header of the session.
/// `POST /requests` with a multipart form, as the browser sends a procedure's form.
fn request_form(
    cookie: &str,
    fields: &[(&str, &str)],
    files: &[(&str, &str, &[u8])],
) -> Request<Body> {
    let (ct, body) = multipart(fields, files);
    Request::builder()
        .method("POST")
        .uri("/requests")
        .header("content-type", ct)
        .header("cookie", cookie)
        .body(Body::from(body))
        .expect("request")
}

/// The text of the message shown next to the field `id` (its `{id}-e` element).
fn field_error<'a>(html: &'a str, id: &str) -> &'a str {
    html.split(&format!("id=\"{id}-e\" class=\"field-error\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no message next to {id}"))
        .split('<')
        .next()
        .unwrap_or_default()
}

async fn sign_in(https: &Listener, data: &Path, id: &str, from: [u8; 4]) -> (String, String) {
    set_password(data, id, "mật khẩu đủ dài 2026");
    let out = pkid_ok(data, &["operator", "totp", "--id", id]);
    let secret = out
        .split(['?', '&', '\n'])
        .find_map(|p| p.strip_prefix("secret="))
        .expect("secret")
        .to_owned();
    let secret = totp_rs::Secret::Encoded(secret).to_bytes().expect("base32");
    let code = pkid::ra::credentials::totp_code(&secret, id, now()).expect("code");
    let home = send(https, get("/", &[]), from).await;
    let pre = home.cookie("__Host-pkid-form").expect("cookie");
    let body = format!(
        "csrf={}&username={id}&password=m%E1%BA%ADt%20kh%E1%BA%A9u%20%C4%91%E1%BB%A7%20d%C3%A0i%202026&totp={code}",
        home.csrf()
    );
    let r = send(https, post_form("/login", &pre, &body), from).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "login of {id}: {}", r.body);
    let set = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-pkid-session="))
        .expect("a session cookie")
        .to_owned();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = format!("{pre}; {}", set.split(';').next().unwrap_or_default());
    let dash = send(https, get("/", &[("cookie", &cookie)]), from).await;
    (cookie, dash.csrf())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_procedure_has_its_form_and_problems_are_shown_next_to_the_field() {
    let dir = init(&[]);
    let data = dir.path();
    pkid_ok(
        data,
        &[
            "org",
            "add",
            "--id",
            "so-dn",
            "--name",
            "Sở Giáo dục và Đào tạo Đà Nẵng",
            "--province",
            "DN",
        ],
    );
    pkid_ok(
        data,
        &[
            "org",
            "add",
            "--id",
            "so-hn",
            "--name",
            "Sở Giáo dục và Đào tạo Hà Nội",
            "--province",
            "HN",
        ],
    );
    pkid_ok(
        data,
        &[
            "operator",
            "add",
            "--id",
            "van-thu",
            "--name",
            "Nguyễn Văn A",
            "--role",
            "org-officer",
            "--org",
            "so-dn",
        ],
    );
    pkid_ok(
        data,
        &[
            "operator",
            "add",
            "--id",
            "ra-hn",
            "--name",
            "Lê Văn H",
            "--role",
            "ra-officer",
            "--scope",
            "province:HN",
        ],
    );
    let https = app(data).await;
    let (cookie, csrf) = sign_in(&https, data, "van-thu", [127, 0, 0, 6]).await;

    let dash = send(&https, get("/", &[("cookie", &cookie)]), [127, 0, 0, 6]).await;
    assert!(
        dash.body.contains("Yêu cầu của cơ quan, tổ chức"),
        "{}",
        dash.body
    );
    assert!(dash.body.contains("Nguyễn Văn A · cán bộ cơ quan, tổ chức"));
    for (kind, has, lacks) in [
        (
            "issue",
            &[
                "subscriber-name",
                "subscriber-email",
                "subscriber-phone",
                "profile",
                "csr-file",
                "csr-text",
                "document-file",
                "signature-file",
            ][..],
            &["certificate-serial", "revocation-reason"][..],
        ),
        (
            "renew",
            &["certificate-serial", "document-file"][..],
            &["subscriber-name", "csr-text", "revocation-reason"][..],
        ),
        (
            "modify",
            &["certificate-serial", "subscriber-name", "csr-text"][..],
            &["revocation-reason", "profile", "recovery"][..],
        ),
        (
            "revoke",
            &["certificate-serial", "revocation-reason"][..],
            &["subscriber-name", "csr-text"][..],
        ),
        (
            "recover",
            &["certificate-serial", "recovery"][..],
            &["subscriber-name", "revocation-reason"][..],
        ),
    ] {
        let form = send(
            &https,
            get(
                &format!("/requests/new?kind={kind}"),
                &[("cookie", &cookie)],
            ),
            [127, 0, 0, 6],
        )
        .await;
        assert_eq!(form.status, StatusCode::OK, "{kind}");
        assert!(
            form.body
                .contains(&format!("name=\"kind\" value=\"{kind}\"")),
            "{kind}"
        );
        for h in has {
            assert!(
                form.body.contains(&format!("data-testid=\"{h}\"")),
                "{kind} lacks {h}"
            );
        }
        for h in lacks {
            assert!(
                !form.body.contains(&format!("data-testid=\"{h}\"")),
                "{kind} has {h}"
            );
        }
    }

    // Server-side validation: the desk's problems next to their fields, what was typed kept.
    let req = request_form(
        &cookie,
        &[
            ("csrf", &csrf),
            ("kind", "issue"),
            ("profile", "person"),
            ("subscriber_name", "Hoàng Thị Ánh"),
            ("subscriber_email", "không-phải-email"),
        ],
        &[],
    );
    let bad = send(&https, req, [127, 0, 0, 6]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let email_error = field_error(&bad.body, "subscriber_email");
    assert_eq!(
        email_error, "Địa chỉ thư điện tử không hợp lệ",
        "the desk's problem, in Vietnamese, without English"
    );
    let csr_error = field_error(&bad.body, "csr");
    assert!(!csr_error.is_empty(), "a missing CSR is named next to it");
    assert!(
        bad.body.contains("value=\"Hoàng Thị Ánh\""),
        "typed text kept"
    );

    // A revoke of something that is not a serial: the message is next to the serial.
    let req = request_form(
        &cookie,
        &[
            ("csrf", &csrf),
            ("kind", "revoke"),
            ("certificate", "zz-not-hex"),
            ("reason", "keyCompromise"),
        ],
        &[],
    );
    let bad = send(&https, req, [127, 0, 0, 6]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let serial_error = field_error(&bad.body, "certificate");
    assert_eq!(
        serial_error,
        "Số hiệu chứng thư số phải ở dạng thập lục phân"
    );

    // A recovery the desk does not know: named next to the choice, in Vietnamese (the form
    // offers the key device, unlock and re-enrol of a remote-signing account).
    let form = send(
        &https,
        get("/requests/new?kind=recover", &[("cookie", &cookie)]),
        [127, 0, 0, 6],
    )
    .await;
    for option in ["token", "unlock", "reenrol"] {
        assert!(
            form.body.contains(&format!("<option value=\"{option}\"")),
            "{option}"
        );
    }
    assert!(form.body.contains("Mở khóa tài khoản ký số từ xa"));
    let req = request_form(
        &cookie,
        &[
            ("csrf", &csrf),
            ("kind", "recover"),
            ("certificate", "01"),
            ("recovery", "xoa"),
        ],
        &[],
    );
    let bad = send(&https, req, [127, 0, 0, 6]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(
        field_error(&bad.body, "recovery"),
        "Chọn mở khóa hoặc đăng ký lại tài khoản ký số từ xa"
    );

    // Without its token the upload is refused, whatever it carries.
    let req = request_form(&cookie, &[("kind", "issue")], &[]);
    assert_eq!(
        send(&https, req, [127, 0, 0, 6]).await.status,
        StatusCode::FORBIDDEN
    );

    // A complete issue request with a document whose detached signature is not one: stored,
    // shown as not verified, waiting for the paper original.
    let work = tempdir();
    let (_key, csr) = make_csr(work.path(), "/CN=Hoàng Thị Ánh", "ec:P-256");
    let csr = read(&csr);
    let req = request_form(
        &cookie,
        &[
            ("csrf", &csrf),
            ("kind", "issue"),
            ("profile", "person"),
            ("subscriber_name", "Hoàng Thị Ánh"),
            ("subscriber_email", "anh@so-dn.edu.vn"),
        ],
        &[
            ("csr_file", "anh.csr", &csr),
            ("document_file", "de-nghi.pdf", b"%PDF-1.7 not really"),
            ("signature_file", "de-nghi.p7s", b"not a signature"),
        ],
    );
    let filed = send(&https, req, [127, 0, 0, 6]).await;
    assert_eq!(filed.status, StatusCode::SEE_OTHER, "{}", filed.body);
    let location = filed.header("location").to_owned();
    assert!(location.starts_with("/requests/"), "{location}");
    let page = send(
        &https,
        get(&location, &[("cookie", &cookie)]),
        [127, 0, 0, 6],
    )
    .await;
    assert!(page.body.contains("chờ bản gốc"), "{}", page.body);
    assert!(page.body.contains("de-nghi.pdf"));
    assert!(
        page.body.contains("chữ ký số không hợp lệ"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Hoàng Thị Ánh"));
    // An organisation officer is offered no RA action.
    assert!(!page.body.contains("data-testid=\"action-submit\""));

    // An RA officer of another province: not found to read, forbidden to act.
    let (other, other_csrf) = sign_in(&https, data, "ra-hn", [127, 0, 0, 7]).await;
    let read_it = send(
        &https,
        get(&location, &[("cookie", &other)]),
        [127, 0, 0, 7],
    )
    .await;
    assert_eq!(read_it.status, StatusCode::NOT_FOUND, "{}", read_it.body);
    assert!(!read_it.body.contains("Hoàng Thị Ánh"));
    let act = send(
        &https,
        post_form(
            &format!("{location}/actions"),
            &other,
            &format!("csrf={other_csrf}&action=original-received"),
        ),
        [127, 0, 0, 7],
    )
    .await;
    assert_eq!(act.status, StatusCode::FORBIDDEN, "{}", act.body);
    assert!(!act.body.contains("Hoàng Thị Ánh"));
    // One session's token does not pass for another's.
    let crossed = send(
        &https,
        post_form(
            &format!("{location}/actions"),
            &other,
            &format!("csrf={csrf}&action=original-received"),
        ),
        [127, 0, 0, 7],
    )
    .await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);
    assert!(crossed.body.contains("Biểu mẫu không hợp lệ"));
}

/// Files an issue request through `POST /requests` (no document) as the signed-in officer;
/// returns its id.
async fn file_issue(https: &Listener, cookie: &str, csrf: &str, name: &str, from: [u8; 4]) -> i64 {
    let work = tempdir();
    let (_key, csr) = make_csr(work.path(), "/CN=x", "ec:P-256");
    let csr = read(&csr);
    let req = request_form(
        cookie,
        &[
            ("csrf", csrf),
            ("kind", "issue"),
            ("profile", "person"),
            ("subscriber_name", name),
            ("subscriber_email", "gv@lqd.edu.vn"),
        ],
        &[("csr_file", "a.csr", &csr)],
    );
    let r = send(https, req, from).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    r.header("location")
        .trim_start_matches("/requests/")
        .parse()
        .expect("an id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ra_officer_approves_a_selection_at_once() {
    let dir = init(&[]);
    let data = dir.path();
    pkid_ok(
        data,
        &[
            "org",
            "add",
            "--id",
            "thpt-lqd",
            "--name",
            "Trường THPT Lê Quý Đôn",
            "--province",
            "DN",
        ],
    );
    pkid_ok(
        data,
        &[
            "operator",
            "add",
            "--id",
            "van-thu",
            "--name",
            "Nguyễn Văn A",
            "--role",
            "org-officer",
            "--org",
            "thpt-lqd",
        ],
    );
    pkid_ok(
        data,
        &[
            "operator",
            "add",
            "--id",
            "ra-dn",
            "--name",
            "Trần Thị B",
            "--role",
            "ra-officer",
            "--scope",
            "province:DN",
        ],
    );
    let https = app(data).await;
    let (org, org_csrf) = sign_in(&https, data, "van-thu", [127, 0, 0, 8]).await;
    let a = file_issue(&https, &org, &org_csrf, "Lê Thị Mỹ Duyên", [127, 0, 0, 8]).await;
    let b = file_issue(&https, &org, &org_csrf, "Đặng Quốc Bảo", [127, 0, 0, 8]).await;
    let (ra, csrf) = sign_in(&https, data, "ra-dn", [127, 0, 0, 9]).await;
    for id in [a, b] {
        let r = send(
            &https,
            post_form(
                &format!("/requests/{id}/actions"),
                &ra,
                &format!("csrf={csrf}&action=original-received"),
            ),
            [127, 0, 0, 9],
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    }
    let queue = send(&https, get("/", &[("cookie", &ra)]), [127, 0, 0, 9]).await;
    assert!(queue.body.contains("Yêu cầu cần xử lý"));
    assert_eq!(
        queue.body.matches("data-testid=\"bulk-select\"").count(),
        2,
        "{}",
        queue.body
    );
    assert!(
        queue.body.contains("còn "),
        "time left in words: {}",
        queue.body
    );

    let refused = send(
        &https,
        post_form("/requests/bulk", &ra, &format!("id={a}&id={b}")),
        [127, 0, 0, 9],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let empty = send(
        &https,
        post_form("/requests/bulk", &ra, &format!("csrf={csrf}")),
        [127, 0, 0, 9],
    )
    .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    // An organisation officer may not approve, in bulk or not.
    let theirs = send(
        &https,
        post_form("/requests/bulk", &org, &format!("csrf={org_csrf}&id={a}")),
        [127, 0, 0, 8],
    )
    .await;
    assert!(theirs.body.contains("Không có quyền"), "{}", theirs.body);

    let done = send(
        &https,
        post_form(
            "/requests/bulk",
            &ra,
            &format!("csrf={csrf}&id={a}&id={b}&id=999999"),
        ),
        [127, 0, 0, 9],
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let outcome = |id: i64| {
        done.body
            .split(&format!("data-request-id=\"{id}\""))
            .nth(1)
            .and_then(|s| s.split("data-testid=\"bulk-outcome\">").nth(1))
            .map(|s| s.split('<').next().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(outcome(a), "hoàn thành");
    assert_eq!(outcome(b), "hoàn thành");
    assert_eq!(outcome(999999), "Không tìm thấy");
    let page = send(
        &https,
        get(&format!("/requests/{a}"), &[("cookie", &org)]),
        [127, 0, 0, 8],
    )
    .await;
    assert!(
        page.body.contains("data-testid=\"issued-serial\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("Lê Thị Mỹ Duyên"));

    // The organisation's subscribers, with their certificates' expiry.
    let subs = send(
        &https,
        get("/subscribers", &[("cookie", &org)]),
        [127, 0, 0, 8],
    )
    .await;
    assert_eq!(subs.status, StatusCode::OK, "{}", subs.body);
    assert_eq!(
        subs.body.matches("data-testid=\"subscriber-row\"").count(),
        2,
        "{}",
        subs.body
    );
    assert!(subs.body.contains("Đặng Quốc Bảo"));
    assert!(subs.body.contains("còn hiệu lực"));
    assert!(
        subs.body.contains("ngày)"),
        "time to expiry in words: {}",
        subs.body
    );

    // The report of the year so far: its charts are SVG drawn on the server, its CSV one link.
    let report = send(&https, get("/reports", &[("cookie", &ra)]), [127, 0, 0, 9]).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    let chart = report
        .body
        .split("data-testid=\"chart-kinds\"")
        .nth(1)
        .expect("the chart")
        .split("</svg>")
        .next()
        .unwrap_or_default();
    assert!(
        chart.contains("Cấp mới chứng thư số: hoàn thành</text>"),
        "{chart}"
    );
    assert!(chart.contains("<rect"), "{chart}");
    assert!(!report.body.contains("<script"));
    let csv_at = report
        .body
        .find("href=\"/reports?format=csv")
        .expect("the CSV link")
        + 6;
    let csv_href = report.body[csv_at..]
        .split('"')
        .next()
        .unwrap_or_default()
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    let csv = send(&https, get(&csv_href, &[("cookie", &ra)]), [127, 0, 0, 9]).await;
    assert_eq!(csv.status, StatusCode::OK, "{csv_href}: {}", csv.body);
    assert!(csv.header("content-type").starts_with("text/csv"));
    assert!(csv.body.contains("issue"), "{}", csv.body);
    let bad = send(
        &https,
        get("/reports?from=2026-13-01&to=2026-12-31", &[("cookie", &ra)]),
        [127, 0, 0, 9],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    // The desk decides who reads which figures: an organisation officer gets its own
    // organisation's, and a subscriber's certificate none (not exercised here).
    let own = send(&https, get("/reports", &[("cookie", &org)]), [127, 0, 0, 8]).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
}

// ---- paging, search at scale, .p7b, the audit log, administration ------------------------

/// The raw body of a GET through the router (for binary downloads).
async fn get_bytes(router: &Listener, path: &str) -> (StatusCode, String, Vec<u8>) {
    let mut req = get(path, &[]);
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 30], 40000))));
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let media = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, media, body.to_vec())
}

/// The `href` of the first `data-testid="next-page"` link, unescaped.
fn next_link(html: &str) -> Option<String> {
    let at = html.find("data-testid=\"next-page\"")?;
    let start = html[..at].rfind("href=\"")? + 6;
    let href = html[start..].split('"').next()?;
    Some(href.replace("&amp;", "&").replace("&#38;", "&"))
}

/// The request ids of a list page, in the order shown.
fn row_ids(html: &str) -> Vec<i64> {
    html.split("data-testid=\"request-row\" data-request-id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

fn db(data: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(data.join("pkid.db")).expect("open pkid.db")
}

/// Requests of `org` inserted straight into the store (as a bulk load would): `state` and
/// `due_at` as given.
fn seed_requests(data: &Path, org: &str, rows: &[(&str, Option<i64>)]) {
    let mut conn = db(data);
    let (path, province): (String, Option<String>) = conn
        .query_row(
            "SELECT path, province FROM organisations WHERE id = ?1",
            [org],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("organisation");
    let tx = conn.transaction().expect("tx");
    for (i, (state, due)) in rows.iter().enumerate() {
        tx.execute(
            "INSERT INTO requests (kind, organisation, province, org_path, state, key_origin,
                 subscriber_name, subscriber_email, submitted_by, submitted_at, accepted_at,
                 due_at, updated_at)
             VALUES ('issue', ?1, ?2, ?3, ?4, 'csr', ?5, 'gv@lqd.edu.vn', 'van-thu', ?6, ?7, ?8, ?6)",
            rusqlite::params![
                org,
                province,
                path,
                state,
                format!("Người thứ {i}"),
                now() as i64 - 86400,
                due.map(|_| now() as i64 - 86400),
                due
            ],
        )
        .expect("request");
    }
    tx.commit().expect("commit");
}

fn add_org_and_officers(data: &Path) {
    pkid_ok(
        data,
        &[
            "org",
            "add",
            "--id",
            "thpt-lqd",
            "--name",
            "Trường THPT Lê Quý Đôn",
            "--province",
            "DN",
        ],
    );
    for (id, name, role, extra) in [
        (
            "van-thu",
            "Nguyễn Văn A",
            "org-officer",
            ["--org", "thpt-lqd"],
        ),
        (
            "ra-dn",
            "Trần Thị B",
            "ra-officer",
            ["--scope", "province:DN"],
        ),
        (
            "ra-hn",
            "Lê Văn C",
            "ra-officer",
            ["--scope", "province:HN"],
        ),
        ("kiem-toan", "Phạm Thị D", "auditor", ["--scope", "all"]),
        ("quan-tri", "Đỗ Văn E", "ca-admin", ["--scope", "all"]),
    ] {
        let mut args = vec![
            "operator", "add", "--id", id, "--name", name, "--role", role,
        ];
        args.extend_from_slice(&extra);
        pkid_ok(data, &args);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_paged_and_the_queue_is_overdue_first_over_the_whole_scope() {
    let dir = init(&[]);
    let data = dir.path();
    add_org_and_officers(data);
    let now = now() as i64;
    // 130 requests: the oldest (the first inserted) is the only overdue one; 40 are
    // fulfilled; the rest are open, due later the newer they are, or without a deadline.
    let mut rows: Vec<(&str, Option<i64>)> = vec![("accepted", Some(now - 3600))];
    for i in 1..130 {
        rows.push(match i % 3 {
            0 => ("fulfilled", Some(now + i * 60)),
            1 => ("accepted", Some(now + 86400 + i * 60)),
            _ => ("submitted", None),
        });
    }
    seed_requests(data, "thpt-lqd", &rows);
    let open = rows.iter().filter(|r| r.0 != "fulfilled").count();
    // Another province's school: in nobody's counts here but its own (and the ra-dn queue
    // never shows it).
    pkid_ok(
        data,
        &[
            "org",
            "add",
            "--id",
            "thcs-hn",
            "--name",
            "Trường THCS Hà Nội",
            "--province",
            "HN",
        ],
    );
    seed_requests(data, "thcs-hn", &[("fulfilled", None), ("rejected", None)]);
    let https = app(data).await;

    // The organisation's dashboard: newest first, 50 a page, every request once.
    let (org, _) = sign_in(&https, data, "van-thu", [127, 0, 0, 20]).await;
    let mut href = Some("/".to_owned());
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(h) = href {
        let p = send(&https, get(&h, &[("cookie", &org)]), [127, 0, 0, 20]).await;
        assert_eq!(p.status, StatusCode::OK, "{h}: {}", p.body);
        let ids = row_ids(&p.body);
        assert!(ids.len() <= 50, "{h}: {} rows", ids.len());
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        seen.extend(ids);
        href = next_link(&p.body);
        pages += 1;
    }
    assert_eq!(pages, 3);
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(
        (seen.len(), unique.len()),
        (130, 130),
        "no 500-row cap, no repeat"
    );
    // The state filters count the whole organisation, not the page shown.
    let dashboard = send(&https, get("/", &[("cookie", &org)]), [127, 0, 0, 20]).await;
    for (state, n) in [
        ("fulfilled", 43),
        ("accepted", 44),
        ("submitted", 43),
        ("rejected", 0),
    ] {
        let link = dashboard
            .body
            .split(&format!("href=\"/?state={state}\""))
            .nth(1)
            .and_then(|rest| rest.split("</a>").next())
            .unwrap_or_else(|| panic!("a {state} filter: {}", dashboard.body));
        assert!(link.ends_with(&format!(" ({n})")), "{state}: {link}");
    }
    // Filtered by state, paged the same way.
    let fulfilled = send(
        &https,
        get("/?state=fulfilled", &[("cookie", &org)]),
        [127, 0, 0, 20],
    )
    .await;
    assert_eq!(row_ids(&fulfilled.body).len(), 43);
    assert!(!fulfilled
        .body
        .contains("data-testid=\"request-state\" class=\"state-submitted\""));
    assert!(next_link(&fulfilled.body).is_none());

    // The RA officer's queue: the overdue request first although it is the oldest, then by
    // deadline, then those without one; fulfilled ones never; every open one once.
    let (ra, _) = sign_in(&https, data, "ra-dn", [127, 0, 0, 21]).await;
    let first = send(&https, get("/", &[("cookie", &ra)]), [127, 0, 0, 21]).await;
    let ids = row_ids(&first.body);
    assert_eq!(ids.first(), Some(&1), "overdue first: {ids:?}");
    assert!(first.body.contains("class=\"overdue\""));
    assert!(first.body.contains("quá hạn 1 giờ"), "{}", first.body);
    let mut queue = ids;
    let mut href = next_link(&first.body);
    while let Some(h) = href {
        assert!(h.starts_with("/?after="), "{h}");
        let p = send(&https, get(&h, &[("cookie", &ra)]), [127, 0, 0, 21]).await;
        assert_eq!(p.status, StatusCode::OK, "{h}: {}", p.body);
        queue.extend(row_ids(&p.body));
        href = next_link(&p.body);
    }
    assert_eq!(queue.len(), open, "every open request in scope, once");
    let due = |id: i64| rows[(id - 1) as usize].1.unwrap_or(i64::MAX);
    assert!(
        queue
            .windows(2)
            .all(|w| (due(w[0]), w[0]) < (due(w[1]), w[1])),
        "by deadline, then id: {queue:?}"
    );
    // Another province's officer sees none of it; a forged cursor is a 422, not a 500.
    let (hn, _) = sign_in(&https, data, "ra-hn", [127, 0, 0, 22]).await;
    let other = send(&https, get("/", &[("cookie", &hn)]), [127, 0, 0, 22]).await;
    assert!(row_ids(&other.body).is_empty(), "{}", other.body);
    let forged = send(
        &https,
        get("/?after=not-a-cursor", &[("cookie", &ra)]),
        [127, 0, 0, 21],
    )
    .await;
    assert_eq!(
        forged.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        forged.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_finds_by_name_organisation_and_email_pages_and_offers_the_p7b_chain() {
    let dir = init(&[]);
    let data = dir.path();
    add_org_and_officers(data);
    let work = tempdir();
    let (_key, csr) = make_csr(
        work.path(),
        "/O=Sở Y tế Đà Nẵng/CN=Phạm Văn Đức",
        "ec:P-256",
    );
    let (serial, _) = issue(data, &csr, "person", &[]);
    // The subscriber's email is on the request that issued it.
    seed_requests(data, "thpt-lqd", &[("fulfilled", None)]);
    db(data)
        .execute(
            "UPDATE requests SET issued_certificate = ?1, subscriber_email = 'Duc.PV@syt.danang.gov.vn'",
            [&serial],
        )
        .expect("issued");
    // 55 more holders named alike, loaded straight into the store (the index follows).
    {
        let mut conn = db(data);
        let tx = conn.transaction().expect("tx");
        for i in 0..55 {
            tx.execute(
                "INSERT INTO certificates (serial, issuer, subject, profile, not_before, not_after,
                     status, tbs, der, created_at, updated_at)
                 SELECT printf('7a%04x', ?1), issuer, 'CN=Lê Văn Tám ' || ?1, profile,
                     not_before, not_after, 'valid', tbs, der, created_at + 1 + ?1, updated_at
                 FROM certificates WHERE serial = ?2",
                rusqlite::params![i, serial],
            )
            .expect("certificate");
        }
        tx.commit().expect("commit");
    }
    let https = app(data).await;
    let found = |html: &str| -> Vec<String> {
        html.split("data-testid=\"search-result\" data-serial=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next().map(str::to_owned))
            .collect()
    };
    for q in [
        "Ph%E1%BA%A1m%20V%C4%83n",     // "Phạm Văn"
        "%C4%90%E1%BB%A8C",            // "ĐỨC": case folded
        "s%E1%BB%9F%20y%20t%E1%BA%BF", // "sở y tế": the organisation
        "duc.pv%40syt.danang.gov.vn",  // the subscriber's email, any case
    ] {
        let r = send(&https, get(&format!("/search?q={q}"), &[]), [127, 0, 0, 23]).await;
        assert_eq!(
            found(&r.body),
            std::slice::from_ref(&serial),
            "{q}: {}",
            r.body
        );
    }
    let r = send(&https, get("/search?q=Van%20Duc", &[]), [127, 0, 0, 23]).await;
    assert!(found(&r.body).is_empty(), "diacritics are exact");
    // 55 + 1 holders named "Văn": 50 on the first page, the rest on the next.
    let p1 = send(&https, get("/search?q=v%C4%83n", &[]), [127, 0, 0, 23]).await;
    let first = found(&p1.body);
    assert_eq!(first.len(), 50);
    let next = next_link(&p1.body).expect("a next page");
    assert!(next.starts_with("/search?q=v%C4%83n&after="), "{next}");
    let p2 = send(&https, get(&next, &[]), [127, 0, 0, 23]).await;
    let second = found(&p2.body);
    assert_eq!(second.len(), 6, "{}", p2.body);
    assert!(second.iter().all(|s| !first.contains(s)));
    assert!(second.contains(&serial), "the oldest comes last");
    assert!(next_link(&p2.body).is_none());

    // The .p7b: the certificate, the issuing CA and the root, readable by openssl.
    assert!(p2.body.contains(&format!("href=\"/certs/{serial}.p7b\"")));
    let (status, media, p7b) = get_bytes(&https, &format!("/certs/{serial}.p7b")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(media.starts_with("application/pkcs7-mime"), "{media}");
    let file = work.path().join("chain.p7b");
    std::fs::write(&file, &p7b).expect("write");
    let printed = openssl_ok(&[
        "pkcs7",
        "-inform",
        "DER",
        "-in",
        path_str(&file),
        "-print_certs",
        "-noout",
    ]);
    assert_eq!(printed.matches("subject=").count(), 3, "{printed}");
    // openssl escapes UTF-8 as \XX: the holder, the issuing CA, the root.
    for subject in [
        "CN = Ph\\E1\\BA\\A1m V\\C4\\83n \\C4\\90\\E1\\BB\\A9c",
        "CN = pkid Issuing CA",
        "subject=C = VN, O = pkid, CN = pkid Root CA",
    ] {
        assert!(printed.contains(subject), "{subject}: {printed}");
    }
    let (missing, _, _) = get_bytes(&https, "/certs/0bad.p7b").await;
    assert_eq!(missing, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_shows_its_chain_status_and_a_ca_admin_manages_organisations_and_operators() {
    let dir = init(&[]);
    let data = dir.path();
    add_org_and_officers(data);
    let https = app(data).await;
    let from = [127, 0, 0, 24];
    let (admin, csrf) = sign_in(&https, data, "quan-tri", from).await;
    let (auditor, _) = sign_in(&https, data, "kiem-toan", from).await;
    let (ra, ra_csrf) = sign_in(&https, data, "ra-dn", from).await;

    // The audit log, newest first, with its chain verified on request.
    let log = send(&https, get("/audit", &[("cookie", &auditor)]), from).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    assert!(log.body.contains("data-testid=\"nav-audit\""));
    assert!(log.body.contains("portal.login"));
    assert!(!log.body.contains("data-testid=\"audit-chain\""));
    let ok = send(
        &https,
        get("/audit?verify=1", &[("cookie", &auditor)]),
        from,
    )
    .await;
    assert!(ok.body.contains("data-intact=\"true\""), "{}", ok.body);
    assert!(ok.body.contains("Nhật ký nguyên vẹn"), "{}", ok.body);
    // An RA officer (scoped) does not read it, and the refusal is audited.
    let refused = send(&https, get("/audit", &[("cookie", &ra)]), from).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(!refused.body.contains("data-testid=\"nav-audit\""));
    // Someone edits an entry behind pkid's back: the page says where.
    let tampered: i64 = db(data)
        .query_row(
            "SELECT MIN(id) FROM audit WHERE action = 'portal.login'",
            [],
            |r| r.get(0),
        )
        .expect("an entry");
    db(data)
        .execute(
            "UPDATE audit SET detail = 'nothing happened' WHERE id = ?1",
            [tampered],
        )
        .expect("tamper");
    let broken = send(
        &https,
        get("/audit?verify=1", &[("cookie", &auditor)]),
        from,
    )
    .await;
    assert!(
        broken.body.contains("data-intact=\"false\""),
        "{}",
        broken.body
    );
    assert!(
        broken
            .body
            .contains(&format!("bản ghi #{tampered}: nội dung bị sửa")),
        "{}",
        broken.body
    );

    // Organisations: only a CA admin manages them.
    let theirs = send(
        &https,
        get("/admin/organisations", &[("cookie", &ra)]),
        from,
    )
    .await;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN);
    let orgs = send(
        &https,
        get("/admin/organisations", &[("cookie", &admin)]),
        from,
    )
    .await;
    assert_eq!(orgs.status, StatusCode::OK, "{}", orgs.body);
    assert!(orgs.body.contains("data-org-id=\"thpt-lqd\""));
    let post = |path: &str, cookie: &str, body: String| post_form(path, cookie, &body);
    let no_token = send(
        &https,
        post("/admin/organisations", &admin, "id=so-yt&name=x".into()),
        from,
    )
    .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let name = "S%E1%BB%9F%20Y%20t%E1%BA%BF%20%C4%90%C3%A0%20N%E1%BA%B5ng"; // Sở Y tế Đà Nẵng
    let bad = send(
        &https,
        post(
            "/admin/organisations",
            &admin,
            format!("csrf={csrf}&id=S%E1%BB%9F%20Y&name={name}&email=not-mail&sector=other"),
        ),
        from,
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(bad.body.contains("chữ thường không dấu"), "{}", bad.body);
    assert!(
        bad.body.contains("Địa chỉ thư điện tử không hợp lệ"),
        "{}",
        bad.body
    );
    assert!(
        bad.body.contains("value=\"Sở Y tế Đà Nẵng\""),
        "kept as typed"
    );
    assert!(
        !bad.body.contains("not an email"),
        "no English from the desk"
    );
    let added = send(
        &https,
        post(
            "/admin/organisations",
            &admin,
            format!("csrf={csrf}&id=so-yt-dn&name={name}&province=DN&sector=health"),
        ),
        from,
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let orgs = send(
        &https,
        get("/admin/organisations", &[("cookie", &admin)]),
        from,
    )
    .await;
    assert!(orgs.body.contains("data-org-id=\"so-yt-dn\""));
    assert!(
        orgs.body.contains("Sở Y tế Đà Nẵng"),
        "the name round-trips exactly"
    );
    let removed = send(
        &https,
        post(
            "/admin/organisations/so-yt-dn/remove",
            &admin,
            format!("csrf={csrf}"),
        ),
        from,
    )
    .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    let orgs = send(
        &https,
        get("/admin/organisations", &[("cookie", &admin)]),
        from,
    )
    .await;
    assert!(!orgs.body.contains("data-org-id=\"so-yt-dn\""));
    let again = send(
        &https,
        post(
            "/admin/organisations/so-yt-dn/remove",
            &admin,
            format!("csrf={csrf}"),
        ),
        from,
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let by_ra = send(
        &https,
        post(
            "/admin/organisations/thpt-lqd/remove",
            &ra,
            format!("csrf={ra_csrf}"),
        ),
        from,
    )
    .await;
    assert_eq!(by_ra.status, StatusCode::FORBIDDEN);

    // Operators: added and removed the same way; a removed operator's session ends.
    let added = send(
        &https,
        post(
            "/admin/operators",
            &admin,
            format!("csrf={csrf}&id=ra-dn-2&name=V%C3%B5%20Th%E1%BB%8B%20F&role=ra-officer&scope=province%3ADN"),
        ),
        from,
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let ops = send(&https, get("/admin/operators", &[("cookie", &admin)]), from).await;
    assert!(
        ops.body.contains("data-operator-id=\"ra-dn-2\""),
        "{}",
        ops.body
    );
    assert!(ops.body.contains("Võ Thị F"));
    let bad = send(
        &https,
        post(
            "/admin/operators",
            &admin,
            format!("csrf={csrf}&id=x&name=X&role=boss"),
        ),
        from,
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("Chọn một vai trò"), "{}", bad.body);
    let gone = send(
        &https,
        post(
            "/admin/operators/ra-dn/remove",
            &admin,
            format!("csrf={csrf}"),
        ),
        from,
    )
    .await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER, "{}", gone.body);
    let after = send(&https, get("/", &[("cookie", &ra)]), from).await;
    assert!(
        after.body.contains("data-testid=\"login-username\""),
        "signed out"
    );

    // Every change is in the audit log, by the admin.
    let rows: Vec<(String, String, String)> = {
        let conn = db(data);
        let mut stmt = conn
            .prepare("SELECT actor, action, target FROM audit WHERE actor = 'quan-tri'")
            .expect("stmt");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("read")
    };
    for (action, target) in [
        ("org.add", "so-yt-dn"),
        ("org.remove", "so-yt-dn"),
        ("operator.add", "ra-dn-2"),
        ("operator.remove", "ra-dn"),
    ] {
        assert!(
            rows.iter().any(|r| r.1 == action && r.2 == target),
            "{action} {target}: {rows:?}"
        );
    }
}

// ---- report figures, device history, signing history ---------------------------------------

/// Unix seconds of a local (+07:00) date and hour.
fn vn(y: i32, m: u8, d: u8, h: u8) -> i64 {
    time::Date::from_calendar_date(y, time::Month::try_from(m).expect("month"), d)
        .expect("date")
        .with_hms(h, 0, 0)
        .expect("time")
        .assume_offset(time::macros::offset!(+7))
        .unix_timestamp()
}

/// One request as a bulk load would store it, with known instants.
struct Seeded {
    kind: &'static str,
    state: &'static str,
    submitted: i64,
    accepted: Option<i64>,
    due: Option<i64>,
    fulfilled: Option<i64>,
    /// The issued certificate's status and notAfter (as kept beside the request).
    certificate: Option<(&'static str, i64)>,
}

const FILED: Seeded = Seeded {
    kind: "issue",
    state: "submitted",
    submitted: 0,
    accepted: None,
    due: None,
    fulfilled: None,
    certificate: None,
};

fn seed_known(data: &Path, org: &str, rows: &[Seeded]) {
    let mut conn = db(data);
    let (path, province): (String, Option<String>) = conn
        .query_row(
            "SELECT path, province FROM organisations WHERE id = ?1",
            [org],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("organisation");
    let tx = conn.transaction().expect("tx");
    for (i, r) in rows.iter().enumerate() {
        let serial = r.certificate.map(|_| format!("{org}-{i:04x}"));
        tx.execute(
            "INSERT INTO requests (kind, organisation, province, org_path, state, key_origin,
                 subscriber_name, subscriber_email, submitted_by, submitted_at, accepted_at,
                 due_at, fulfilled_at, issued_certificate, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'csr', ?6, 'gv@lqd.edu.vn', 'van-thu', ?7, ?8, ?9, ?10,
                     ?11, ?7)",
            rusqlite::params![
                r.kind,
                org,
                province,
                path,
                r.state,
                format!("Người thứ {i}"),
                r.submitted,
                r.accepted,
                r.due,
                r.fulfilled,
                serial,
            ],
        )
        .expect("request");
        if let Some((status, not_after)) = r.certificate {
            tx.execute(
                "UPDATE requests SET certificate_status = ?1, certificate_not_after = ?2
                 WHERE id = last_insert_rowid()",
                rusqlite::params![status, not_after],
            )
            .expect("certificate status");
        }
    }
    tx.commit().expect("commit");
}

/// The text of the first element after `marker` in `html`, up to the next tag.
fn text_after<'a>(html: &'a str, marker: &str) -> &'a str {
    html.split(marker)
        .nth(1)
        .and_then(|s| s.split('>').nth(1))
        .and_then(|s| s.split('<').next())
        .unwrap_or_else(|| panic!("no {marker}"))
}

/// A week's row of the report's table: (filed per kind in report order, on time, late).
fn week_row(html: &str, monday: &str) -> (Vec<u64>, u64, u64) {
    let row = html
        .split(&format!("data-week=\"{monday}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no week {monday}: {html}"))
        .split("</tr>")
        .next()
        .unwrap_or_default();
    let n = |marker: &str| -> u64 { text_after(row, marker).parse().expect("a count") };
    let kinds = ["issue", "renew", "modify", "revoke", "recover"]
        .iter()
        .map(|k| n(&format!("data-kind=\"{k}\"")))
        .collect();
    (
        kinds,
        n("data-testid=\"week-on-time\""),
        n("data-testid=\"week-late\""),
    )
}

/// Certificates expiring in a month, from the report's table.
fn expiring_in(html: &str, month: &str) -> u64 {
    let row = html
        .split(&format!("data-month=\"{month}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no month {month}"));
    text_after(row, "<td").parse().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_charts_weeks_deadlines_and_expiry_from_the_desks_figures_within_scope() {
    let dir = init(&[]);
    let data = dir.path();
    add_org_and_officers(data);
    pkid_ok(
        data,
        &[
            "org",
            "add",
            "--id",
            "so-yt-hn",
            "--name",
            "Sở Y tế Hà Nội",
            "--province",
            "HN",
        ],
    );
    // The period: Monday 2 to Sunday 15 November 2026, two weeks.
    seed_known(
        data,
        "thpt-lqd",
        &[
            // Week 1: an issue request filed, still open.
            Seeded {
                submitted: vn(2026, 11, 2, 9),
                ..FILED
            },
            // Week 1: a renewal fulfilled on time, using half the two working days allowed.
            Seeded {
                kind: "renew",
                state: "fulfilled",
                submitted: vn(2026, 11, 3, 10),
                accepted: Some(vn(2026, 11, 3, 10)),
                due: Some(vn(2026, 11, 5, 10)),
                fulfilled: Some(vn(2026, 11, 4, 10)),
                ..FILED
            },
            // Week 2: a revocation fulfilled late.
            Seeded {
                kind: "revoke",
                state: "fulfilled",
                submitted: vn(2026, 11, 9, 8),
                accepted: Some(vn(2026, 11, 9, 9)),
                due: Some(vn(2026, 11, 9, 17)),
                fulfilled: Some(vn(2026, 11, 10, 9)),
                ..FILED
            },
            // Before the period: certificates ending in December and January; a revoked one
            // is not expiring.
            Seeded {
                state: "fulfilled",
                submitted: vn(2026, 10, 1, 9),
                certificate: Some(("valid", vn(2026, 12, 20, 12))),
                ..FILED
            },
            Seeded {
                state: "fulfilled",
                submitted: vn(2026, 10, 1, 9),
                certificate: Some(("valid", vn(2027, 1, 15, 12))),
                ..FILED
            },
            Seeded {
                state: "fulfilled",
                submitted: vn(2026, 10, 1, 9),
                certificate: Some(("revoked", vn(2026, 12, 21, 12))),
                ..FILED
            },
        ],
    );
    seed_known(
        data,
        "so-yt-hn",
        &[
            Seeded {
                submitted: vn(2026, 11, 10, 9),
                ..FILED
            },
            Seeded {
                state: "fulfilled",
                submitted: vn(2026, 10, 1, 9),
                certificate: Some(("valid", vn(2027, 1, 1, 0))),
                ..FILED
            },
        ],
    );
    let https = app(data).await;
    let period = "/reports?from=2026-11-02&to=2026-11-15";

    // The RA officer of the school's province: its figures only.
    let (ra, _) = sign_in(&https, data, "ra-dn", [127, 0, 0, 40]).await;
    let page = send(&https, get(period, &[("cookie", &ra)]), [127, 0, 0, 40]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        week_row(&page.body, "2026-11-02"),
        (vec![1, 1, 0, 0, 0], 1, 0)
    );
    assert_eq!(
        week_row(&page.body, "2026-11-09"),
        (vec![0, 0, 0, 1, 0], 0, 1)
    );
    assert!(!page.body.contains("data-week=\"2026-11-16\""));
    assert!(page.body.contains("<th scope=\"row\">02/11/2026</th>"));
    let bucket = |html: &str, code: &str| -> u64 {
        text_after(
            html.split(&format!("data-bucket=\"{code}\""))
                .nth(1)
                .expect("bucket"),
            "<td",
        )
        .parse()
        .expect("count")
    };
    assert_eq!(bucket(&page.body, "up_to_25_percent"), 0);
    assert_eq!(bucket(&page.body, "up_to_50_percent"), 1);
    assert_eq!(bucket(&page.body, "over_100_percent"), 1);
    // Expiring from the end of the period: November 2026 to October 2027.
    assert_eq!(expiring_in(&page.body, "2026-11"), 0);
    assert_eq!(
        expiring_in(&page.body, "2026-12"),
        1,
        "the revoked one is not"
    );
    assert_eq!(expiring_in(&page.body, "2027-01"), 1);
    assert!(page.body.contains("data-month=\"2027-10\""));
    assert!(!page.body.contains("data-month=\"2027-11\""));
    // The charts are SVG on the server, their numbers in words for a screen reader.
    let chart = |id: &str| -> String {
        page.body
            .split(&format!("data-testid=\"{id}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no {id}"))
            .split("</svg>")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        chart("chart-weeks").contains("<title>02/11 · Cấp mới chứng thư số: 1</title>"),
        "{}",
        chart("chart-weeks")
    );
    assert!(chart("chart-weeks").contains("<title>09/11 · Thu hồi chứng thư số: 1</title>"));
    assert!(chart("chart-punctuality").contains("<title>09/11 · hoàn thành quá hạn: 1</title>"));
    assert!(chart("chart-expiring").contains(">01/2027</text>"));
    assert!(chart("chart-deadline-use").contains(">trên 25% đến 50%</text>"));
    assert!(!page.body.contains("<script"));
    // The same figures in the CSV.
    let csv = send(
        &https,
        get(&format!("{period}&format=csv"), &[("cookie", &ra)]),
        [127, 0, 0, 40],
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    for line in [
        "section,week_starting,issue,renew,modify,revoke,recover,on_time,late\n",
        "weeks,2026-11-02,1,1,0,0,0,1,0\n",
        "weeks,2026-11-09,0,0,0,1,0,0,1\n",
        "deadline_use,up_to_50_percent,1\n",
        "deadline_use,over_100_percent,1\n",
        "expiring,2026-12,1\n",
        "expiring,2027-01,1\n",
    ] {
        assert!(csv.body.contains(line), "{line:?} in {}", csv.body);
    }

    // The organisation's officer: the same, its own organisation; another's is not found.
    let (org, _) = sign_in(&https, data, "van-thu", [127, 0, 0, 41]).await;
    let own = send(&https, get(period, &[("cookie", &org)]), [127, 0, 0, 41]).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(
        week_row(&own.body, "2026-11-09"),
        (vec![0, 0, 0, 1, 0], 0, 1)
    );
    assert_eq!(expiring_in(&own.body, "2027-01"), 1);
    let other = send(
        &https,
        get(
            &format!("{period}&organisation=so-yt-hn"),
            &[("cookie", &org)],
        ),
        [127, 0, 0, 41],
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.body);
    // The other province's officer sees only Hà Nội's; the auditor of everything, both.
    let (hn, _) = sign_in(&https, data, "ra-hn", [127, 0, 0, 42]).await;
    let theirs = send(&https, get(period, &[("cookie", &hn)]), [127, 0, 0, 42]).await;
    assert_eq!(week_row(&theirs.body, "2026-11-02"), (vec![0; 5], 0, 0));
    assert_eq!(
        week_row(&theirs.body, "2026-11-09"),
        (vec![1, 0, 0, 0, 0], 0, 0)
    );
    assert_eq!(expiring_in(&theirs.body, "2026-12"), 0);
    assert_eq!(expiring_in(&theirs.body, "2027-01"), 1);
    let (all, _) = sign_in(&https, data, "kiem-toan", [127, 0, 0, 43]).await;
    let every = send(&https, get(period, &[("cookie", &all)]), [127, 0, 0, 43]).await;
    assert_eq!(
        week_row(&every.body, "2026-11-09"),
        (vec![1, 0, 0, 1, 0], 0, 1)
    );
    assert_eq!(expiring_in(&every.body, "2027-01"), 2);
    // In English, the same numbers.
    let en = send(
        &https,
        get(period, &[("cookie", &format!("{all}; pkid-lang=en"))]),
        [127, 0, 0, 43],
    )
    .await;
    assert!(en.body.contains("Requests per week by kind"), "{}", en.body);
    assert!(en.body.contains("fulfilled late: 1</title>"), "{}", en.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_devices_page_shows_its_record_and_history_to_its_scope_only() {
    let dir = init(&[]);
    let data = dir.path();
    add_org_and_officers(data);
    seed_known(
        data,
        "thpt-lqd",
        &[Seeded {
            state: "fulfilled",
            submitted: vn(2026, 11, 2, 9),
            certificate: Some(("valid", vn(2027, 11, 2, 9))),
            ..FILED
        }],
    );
    {
        // As `pkid token provision` and `handover` record it (docs/key-devices.md).
        let conn = db(data);
        conn.execute(
            "INSERT INTO certificates (serial, issuer, subject, profile, not_before, not_after,
                 status, tbs, der, created_at, updated_at)
             VALUES ('thpt-lqd-0000', 'issuing', 'CN=Người thứ 0', 'person', ?1, ?2, 'valid',
                 x'01', x'02', ?1, ?1)",
            [vn(2026, 11, 3, 15), vn(2027, 11, 2, 9)],
        )
        .expect("certificate");
        conn.execute(
            "INSERT INTO devices (serial, model, manufacturer, label, organisation, request,
                 certificate, so_pin_sealed, state, receiver, handed_over_at, provisioned_at,
                 updated_at)
             VALUES ('5a1c0ffee0000001', 'SoftHSM v2', 'SoftHSM project', 'tok-1', 'thpt-lqd',
                 1, 'thpt-lqd-0000', x'00112233', 'handed-over', 'Trần Văn Bình <b>', ?1, ?2, ?1)",
            [vn(2026, 11, 4, 10), vn(2026, 11, 3, 15)],
        )
        .expect("device");
        for (at, action, detail) in [
            (vn(2026, 11, 3, 15), "provisioned", "request 1, P-256"),
            (
                vn(2026, 11, 4, 10),
                "handed-over",
                "to Trần Văn Bình <b> of thpt-lqd for request 1",
            ),
            (vn(2026, 11, 20, 8), "unlocked", "request 2"),
        ] {
            conn.execute(
                "INSERT INTO device_events (serial, at, actor, action, detail)
                 VALUES ('5a1c0ffee0000001', ?1, 'ra-dn', ?2, ?3)",
                rusqlite::params![at, action, detail],
            )
            .expect("event");
        }
    }
    let https = app(data).await;
    let anonymous = send(
        &https,
        get("/devices/5a1c0ffee0000001", &[]),
        [127, 0, 0, 50],
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);

    let (org, _) = sign_in(&https, data, "van-thu", [127, 0, 0, 50]).await;
    let list = send(
        &https,
        get("/devices", &[("cookie", &org)]),
        [127, 0, 0, 50],
    )
    .await;
    assert!(
        list.body.contains("href=\"/devices/5a1c0ffee0000001\""),
        "{}",
        list.body
    );
    let page = send(
        &https,
        get("/devices/5a1c0ffee0000001", &[("cookie", &org)]),
        [127, 0, 0, 50],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        text_after(&page.body, "data-testid=\"device-state\""),
        "Đã bàn giao"
    );
    assert_eq!(
        text_after(&page.body, "data-testid=\"device-receiver\""),
        "Trần Văn Bình &#60;b&#62;",
        "the name exactly as entered, escaped"
    );
    assert!(page.body.contains("href=\"/requests/1\""));
    assert!(page.body.contains("được lưu giữ có mã hóa"));
    assert!(!page.body.contains("00112233"), "never the sealed PIN");
    let actions: Vec<&str> = page
        .body
        .split("data-testid=\"device-event\" data-action=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(
        actions,
        ["provisioned", "handed-over", "unlocked"],
        "oldest first"
    );
    assert!(page.body.contains("<td>Mở khóa (đặt lại mã PIN)</td>"));
    assert!(page.body.contains("<td>04/11/2026 10:00</td>"));
    // The request that provisioned it links it.
    let request = send(
        &https,
        get("/requests/1", &[("cookie", &org)]),
        [127, 0, 0, 50],
    )
    .await;
    assert!(
        request
            .body
            .contains("href=\"/devices/5a1c0ffee0000001\" data-testid=\"request-device\""),
        "{}",
        request.body
    );

    // Another province's officer: refused and audited; unknown and absurd serials: not found.
    let (hn, _) = sign_in(&https, data, "ra-hn", [127, 0, 0, 51]).await;
    let refused = send(
        &https,
        get("/devices/5a1c0ffee0000001", &[("cookie", &hn)]),
        [127, 0, 0, 51],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(!refused.body.contains("Trần Văn Bình"));
    let audited: i64 = db(data)
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE actor = 'ra-hn' AND action = 'device.show'
             AND target = '5a1c0ffee0000001' AND outcome = 'refused'",
            [],
            |r| r.get(0),
        )
        .expect("audit");
    assert_eq!(audited, 1);
    for path in [
        "/devices/nope".to_owned(),
        format!("/devices/{}", "9".repeat(65)),
    ] {
        let r = send(&https, get(&path, &[("cookie", &hn)]), [127, 0, 0, 51]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    // In English.
    let en = send(
        &https,
        get(
            "/devices/5a1c0ffee0000001",
            &[("cookie", &format!("{org}; pkid-lang=en"))],
        ),
        [127, 0, 0, 50],
    )
    .await;
    assert!(
        en.body.contains("<td>Unlocked (PIN reset)</td>"),
        "{}",
        en.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_makes_an_est_account_on_the_portal_that_enrolls_until_revoked() {
    let dir = init(&[]);
    let data = dir.path();
    add_org_and_officers(data);
    let mut conf = std::fs::read_to_string(data.join("pkid.toml")).expect("pkid.toml");
    conf.push_str(
        "\n[[est.labels]]\nname = \"may-chu\"\nprofile = \"tls-client\"\norganisation = \"thpt-lqd\"\n",
    );
    std::fs::write(data.join("pkid.toml"), conf).expect("pkid.toml");
    let https = app(data).await;
    let from = [127, 0, 0, 30];

    // The organisation's officer: the menu links the page; it lists the organisation's
    // accounts (none yet) whatever organisation the query names.
    let (org, csrf) = sign_in(&https, data, "van-thu", from).await;
    let dash = send(&https, get("/", &[("cookie", &org)]), from).await;
    assert!(dash.body.contains("data-testid=\"nav-credentials\""));
    let page = send(
        &https,
        get("/credentials?org=khac", &[("cookie", &org)]),
        from,
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("Tài khoản cấp chứng thư tự động"),
        "Vietnamese first"
    );
    assert!(page.body.contains("thpt-lqd") && !page.body.contains("— khac"));
    assert!(page.body.contains("Chưa có tài khoản nào."));

    // A name the desk refuses: 422, the problem next to the field, what was typed kept.
    let bad = send(
        &https,
        post_form(
            "/credentials",
            &org,
            &format!("csrf={csrf}&org=thpt-lqd&kind=est&name=m%C3%A1y%20ch%E1%BB%A7"),
        ),
        from,
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(bad.body.contains("value=\"máy chủ\""), "{}", bad.body);
    // Without the form token: refused, nothing made.
    let forged = send(
        &https,
        post_form("/credentials", &org, "org=thpt-lqd&kind=est&name=gia-mao"),
        from,
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let made = send(
        &https,
        post_form(
            "/credentials",
            &org,
            &format!("csrf={csrf}&org=thpt-lqd&kind=est&name=may-chu-01"),
        ),
        from,
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(
        made.headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let secret = made
        .body
        .split("data-testid=\"credential-secret\"")
        .next()
        .and_then(|before| before.rsplit("value=\"").next())
        .and_then(|v| v.split('"').next())
        .expect("the secret, shown once")
        .to_owned();
    assert!(secret.len() >= 20, "{secret}");
    // Listed afterwards, never with its secret.
    let list = send(&https, get("/credentials", &[("cookie", &org)]), from).await;
    assert!(
        list.body.contains("data-credential=\"est:may-chu-01\""),
        "{}",
        list.body
    );
    assert!(!list.body.contains(&secret));

    // An RA officer may look but not make one; the page's form is the desk's refusal away.
    let (ra, ra_csrf) = sign_in(&https, data, "ra-dn", [127, 0, 0, 31]).await;
    let refused = send(
        &https,
        post_form(
            "/credentials",
            &ra,
            &format!("csrf={ra_csrf}&org=thpt-lqd&kind=cmp&name=ra-lam"),
        ),
        [127, 0, 0, 31],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);

    // The secret the page showed enrolls over EST on the real daemon ...
    let daemon = Daemon::start(data);
    let root = data.join("certs/root.crt");
    let body = est_csr_body(data, "/CN=may-chu-01.thpt-lqd.edu.vn");
    let user = format!("may-chu-01:{secret}");
    let enroll = || {
        est_post_basic(
            &daemon,
            &root,
            &user,
            "/.well-known/est/may-chu/simpleenroll",
            &body,
        )
        .status
    };
    assert_eq!(enroll(), 200);

    // ... until the officer revokes it on the portal.
    let removed = send(
        &https,
        post_form(
            "/credentials/est/may-chu-01/remove",
            &org,
            &format!("csrf={csrf}&org=thpt-lqd"),
        ),
        from,
    )
    .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert!(poll(std::time::Duration::from_secs(10), || enroll() == 401));
    let audit = pkid_ok(data, &["audit", "list", "--limit", "1000"]);
    assert!(
        audit.contains("credential.add") && audit.contains("credential.remove"),
        "{audit}"
    );
    assert!(!audit.contains(&secret) && !daemon.logs().contains(&secret));
}

/// The `value` of the hidden input `name` in a page (empty: none).
fn hidden_value(html: &str, name: &str) -> String {
    html.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_checks_the_signed_document_before_sending_and_the_files_are_kept() {
    let dir = init(&[]);
    let data = dir.path();
    let work = tempdir();
    pkid_ok(
        data,
        &[
            "org",
            "add",
            "--id",
            "bv-hue",
            "--name",
            "Bệnh viện Trung ương Huế",
            "--province",
            "TTH",
        ],
    );
    for id in ["van-thu", "van-thu-2"] {
        pkid_ok(
            data,
            &[
                "operator",
                "add",
                "--id",
                id,
                "--name",
                "Lê Thị Mỹ Duyên",
                "--role",
                "org-officer",
                "--org",
                "bv-hue",
            ],
        );
    }
    // The officer's signing certificate, registered to it: its signature is valid evidence.
    let (key, csr) = make_csr(work.path(), "/CN=Lê Thị Mỹ Duyên", "ec:P-256");
    let (_serial, cert) = issue(data, &csr, "tls-client", &[]);
    pkid_ok(
        data,
        &[
            "operator",
            "add-cert",
            "--id",
            "van-thu",
            "--cert",
            path_str(&cert),
        ],
    );
    let doc = work.path().join("de-nghi.txt");
    std::fs::write(&doc, "Đề nghị cấp chứng thư số cho bác sĩ Hồ Đắc Di").expect("doc");
    let sig = work.path().join("de-nghi.p7s");
    openssl_ok(&[
        "cms",
        "-sign",
        "-binary",
        "-outform",
        "DER",
        "-in",
        path_str(&doc),
        "-signer",
        path_str(&cert),
        "-inkey",
        path_str(&key),
        "-out",
        path_str(&sig),
    ]);
    let (doc, sig) = (read(&doc), read(&sig));
    let (_k, subscriber_csr) = make_csr(work.path(), "/CN=Hồ Đắc Di", "ec:P-256");
    let subscriber_csr = read(&subscriber_csr);

    let https = app(data).await;
    let from = [127, 0, 0, 21];
    let (cookie, csrf) = sign_in(&https, data, "van-thu", from).await;
    let requests = || {
        db(data)
            .query_row("SELECT COUNT(*) FROM requests", [], |r| r.get::<_, i64>(0))
            .expect("count")
    };
    let fields = [
        ("csrf", csrf.as_str()),
        ("kind", "issue"),
        ("profile", "person"),
        ("subscriber_name", "Hồ Đắc Di"),
        ("subscriber_email", "hodacdi@bvhue.vn"),
    ];
    let mut checking = fields.to_vec();
    checking.push(("check", "1"));

    // Checked with a signature that is not one: not verified, why, and nothing filed.
    let bad = send(
        &https,
        request_form(
            &cookie,
            &checking,
            &[
                ("document_file", "de-nghi.txt", &doc),
                ("signature_file", "de-nghi.p7s", b"not a signature"),
            ],
        ),
        from,
    )
    .await;
    assert_eq!(bad.status, StatusCode::OK, "{}", bad.body);
    assert!(
        bad.body
            .contains("data-testid=\"document-check-verdict\">chữ ký số không hợp lệ"),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("Lý do: "), "{}", bad.body);
    assert!(
        !bad.body.contains("Thời điểm ký"),
        "no signature, no signing time"
    );
    assert_eq!(requests(), 0, "a check files nothing");

    // Checked with the officer's real signature: verified, the signer named, every typed value
    // and attached file kept for sending.
    let good = send(
        &https,
        request_form(
            &cookie,
            &checking,
            &[
                ("csr_file", "ho-dac-di.csr", &subscriber_csr),
                ("document_file", "de-nghi.txt", &doc),
                ("signature_file", "de-nghi.p7s", &sig),
            ],
        ),
        from,
    )
    .await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    assert!(
        good.body
            .contains("data-testid=\"document-check-verdict\">chữ ký số hợp lệ"),
        "{}",
        good.body
    );
    assert!(
        good.body.contains("Người ký: CN=Lê Thị Mỹ Duyên"),
        "{}",
        good.body
    );
    assert!(good.body.contains("value=\"Hồ Đắc Di\""), "{}", good.body);
    for (testid, name) in [
        ("kept-csr", "ho-dac-di.csr"),
        ("kept-document", "de-nghi.txt"),
        ("kept-signature", "de-nghi.p7s"),
    ] {
        assert!(
            good.body.contains(&format!("data-testid=\"{testid}\">"))
                && good.body.contains(&format!(": {name}</p>")),
            "{testid}: {}",
            good.body
        );
    }
    let draft = hidden_value(&good.body, "draft");
    assert_eq!(draft.len(), 43, "{}", good.body);
    assert_eq!(requests(), 0, "a check files nothing");

    // Another session cannot send with this draft: its files are not there for it.
    let (other, other_csrf) = sign_in(&https, data, "van-thu-2", from).await;
    let mut theirs = fields.to_vec();
    theirs[0] = ("csrf", other_csrf.as_str());
    theirs.push(("draft", draft.as_str()));
    let stolen = send(&https, request_form(&other, &theirs, &[]), from).await;
    assert_eq!(
        stolen.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        stolen.body
    );
    assert!(
        !field_error(&stolen.body, "csr").is_empty(),
        "{}",
        stolen.body
    );
    assert_eq!(requests(), 0);

    // Sent without choosing the files again: filed with the kept ones, accepted at once on
    // the verified document.
    let mut sending = fields.to_vec();
    sending.push(("draft", draft.as_str()));
    let sent = send(&https, request_form(&cookie, &sending, &[]), from).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    assert_eq!(requests(), 1);
    let location = sent.header("location").to_owned();
    let page = send(&https, get(&location, &[("cookie", &cookie)]), from).await;
    assert!(page.body.contains("đã tiếp nhận"), "{}", page.body);
    assert!(
        page.body
            .contains("data-testid=\"document-verified\">chữ ký số hợp lệ"),
        "{}",
        page.body
    );
    // The draft is spent with the sending.
    let again = send(&https, request_form(&cookie, &sending, &[]), from).await;
    assert_eq!(
        again.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        again.body
    );
    assert_eq!(requests(), 1);

    // A check with no document says so next to the document.
    let none = send(&https, request_form(&cookie, &checking, &[]), from).await;
    assert_eq!(
        none.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        none.body
    );
    assert_eq!(
        field_error(&none.body, "document"),
        "Chọn văn bản đề nghị đã ký số để kiểm tra."
    );

    // The JSON API behind the check: the same verdict, nothing stored.
    let token = pkid_ok(data, &["operator", "token", "--id", "van-thu"]);
    let token = token.lines().last().unwrap_or_default().trim().to_owned();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = serde_json::json!({
        "document": {"filename": "de-nghi.txt", "content_base64": b64.encode(&doc), "signature_base64": b64.encode(&sig)}
    });
    let api = send(
        &https,
        Request::builder()
            .method("POST")
            .uri("/api/v1/documents/check")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request"),
        from,
    )
    .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    let v: serde_json::Value = serde_json::from_str(&api.body).expect("JSON");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["organisation"], "bv-hue", "{v}");
    assert_eq!(v["signer_subject"], "CN=Lê Thị Mỹ Duyên", "{v}");
    assert_eq!(requests(), 1);
    // Another organisation's check is refused (and audited); a document that is not base64
    // is named.
    let check = |body: serde_json::Value| {
        Request::builder()
            .method("POST")
            .uri("/api/v1/documents/check")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    pkid_ok(
        data,
        &[
            "org",
            "add",
            "--id",
            "so-khac",
            "--name",
            "Sở Y tế Hà Nội",
            "--province",
            "HN",
        ],
    );
    let mut theirs = body.clone();
    theirs["organisation"] = "so-khac".into();
    let refused = send(&https, check(theirs), from).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(db(data)
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE action = 'document.check' AND outcome = 'refused'",
            [],
            |r| r.get::<_, i64>(0)
        )
        .is_ok_and(|n| n == 1));
    let garbled = send(
        &https,
        check(serde_json::json!({"document": {"filename": "x.pdf", "content_base64": "không phải base64"}})),
        from,
    )
    .await;
    assert_eq!(
        garbled.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        garbled.body
    );
    assert!(
        garbled.body.contains("document.content_base64"),
        "{}",
        garbled.body
    );
    assert_eq!(requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_totp_code_signs_in_once() {
    let dir = init(&[]);
    let data = dir.path();
    pkid_ok(
        data,
        &[
            "operator",
            "add",
            "--id",
            "ra-hue",
            "--name",
            "Tôn Nữ Thị Hà",
            "--role",
            "ra-officer",
            "--scope",
            "province:TTH",
        ],
    );
    set_password(data, "ra-hue", "mật khẩu đủ dài 2026");
    let uri = pkid_ok(data, &["operator", "totp", "--id", "ra-hue"]);
    let secret = uri
        .split(['?', '&', '\n'])
        .find_map(|p| p.strip_prefix("secret="))
        .expect("secret")
        .to_owned();
    let secret = totp_rs::Secret::Encoded(secret).to_bytes().expect("base32");
    // The app's clock stands still: codes of its step and the ones beside it are valid.
    let clock = Arc::new(FakeClock::new(now()));
    let https = build_app(data, clock.clone()).await.routers().https;
    let from = [127, 0, 0, 31];
    let code = |offset: i64| {
        let at = clock.now().saturating_add_signed(offset * 30);
        pkid::ra::credentials::totp_code(&secret, "ra-hue", at).expect("code")
    };
    let login = |code: String| {
        let https = https.clone();
        async move {
            let home = send(&https, get("/", &[]), from).await;
            let pre = home.cookie("__Host-pkid-form").expect("cookie");
            let body = format!(
                "csrf={}&username=ra-hue&password=m%E1%BA%ADt%20kh%E1%BA%A9u%20%C4%91%E1%BB%A7%20d%C3%A0i%202026&totp={code}",
                home.csrf()
            );
            send(&https, post_form("/login", &pre, &body), from)
                .await
                .status
        }
    };
    assert_eq!(login(code(0)).await, StatusCode::SEE_OTHER);
    assert_eq!(
        login(code(0)).await,
        StatusCode::UNAUTHORIZED,
        "the same code a second time (RFC 6238 §5.2)"
    );
    assert_eq!(
        login(code(-1)).await,
        StatusCode::UNAUTHORIZED,
        "an unused code of an earlier step, behind the one spent"
    );
    assert_eq!(
        login(code(1)).await,
        StatusCode::SEE_OTHER,
        "the next step's code"
    );
}
