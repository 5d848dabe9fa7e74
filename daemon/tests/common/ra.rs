//! The registration authority's end-to-end testbed: one real `pkid serve` per test binary,
//! shared by its tests, driven with `curl` (the JSON API), `openssl` (CSRs, certificates, OCSP)
//! and the `pkid` CLI (organisations, operators, tokens, the audit log).
//!
//! ```text
//!  Testbed::shared(edit) ─▶ pkid init ─▶ edit(pkid.toml) ─▶ sh (tether) ─▶ pkid serve
//!        │                                                    ▲ stdin: a pipe from this process
//!        ├─ org / operator / token ──▶ pkid org add, operator add, operator token (CLI)
//!        ├─ call(method, path, token, body) ──▶ curl over HTTPS (--cacert the data dir's root)
//!        ├─ file_issue / act ──▶ POST /api/v1/requests, …/transitions
//!        ├─ ocsp_status ──▶ openssl ocsp against /ocsp on the plain listener
//!        └─ refused(actor, action, target) ──▶ pkid audit list
//! ```
//!
//! Tests of one binary run in parallel against the one daemon, so each test makes its own
//! organisations and operators ([`Testbed::unique`]) and asserts only about its own rows.
//!
//! The daemon outlives every test of the binary (the harness never drops statics), so it is
//! started under a small `sh` tether whose stdin is a pipe from the test process: when that
//! process exits, however it exits, the pipe closes, the tether sends SIGTERM to the daemon,
//! waits for it and removes the data directory. No daemon is left behind on a shared machine.

use super::*;
use serde_json::Value;
use std::process::ChildStdin;

/// How long a change made by another process (the CLI) may take to reach the daemon: the
/// follower polls the store every 250 ms; the bound is generous for a loaded machine.
pub const PROPAGATION: Duration = Duration::from_secs(20);

/// The tether: runs the daemon in the background, waits for end of input (the test process
/// has exited), then stops the daemon and removes the data directory (`$PKID_TESTBED_DIR`).
const TETHER: &str = r#""$0" "$@" & pid=$!
cat >/dev/null
kill -TERM "$pid" 2>/dev/null
wait "$pid"
rm -rf -- "$PKID_TESTBED_DIR""#;

/// One API exchange as curl saw it, the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct ApiReply {
    /// HTTP status (0: no response).
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The response headers as curl's `%{header_json}`.
    pub headers: Value,
    /// The raw body.
    pub body: Vec<u8>,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
}

impl ApiReply {
    fn of(reply: Reply) -> Self {
        let headers: Value = serde_json::from_str(&reply.headers).unwrap_or(Value::Null);
        let content_type = headers["content-type"][0].as_str().map(str::to_owned);
        let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        Self {
            status: reply.status,
            content_type,
            headers,
            body: reply.body,
            json,
        }
    }

    /// The first value of a (lower-case) response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers[name][0].as_str()
    }

    /// Asserts an RFC 9457 problem document with this status and `type`
    /// (`urn:pkid:problem:…`), and returns the fields its `errors` name.
    pub fn assert_problem(&self, status: u16, kind: &str) -> Vec<String> {
        assert_eq!(self.status, status, "{self}");
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json"),
            "{self}"
        );
        assert_eq!(
            self.json["type"],
            format!("urn:pkid:problem:{kind}"),
            "{self}"
        );
        assert_eq!(self.json["status"], status, "{self}");
        self.json["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `id` of a request answered.
    pub fn id(&self) -> i64 {
        self.json["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("no request id in {self}"))
    }

    /// A string field of the answer (panics naming the answer if it is absent).
    pub fn str(&self, field: &str) -> &str {
        self.json[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string {field:?} in {self}"))
    }
}

impl std::fmt::Display for ApiReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {} ({}) {}",
            self.status,
            self.content_type.as_deref().unwrap_or("no content type"),
            lossy(&self.body)
        )
    }
}

/// A data directory and the `pkid serve` running on it, shared by one test binary.
pub struct Testbed {
    data: PathBuf,
    work: PathBuf,
    /// Where the plain-HTTP listener is bound.
    pub http: SocketAddr,
    /// Where the HTTPS listener is bound.
    pub https: SocketAddr,
    logs: Arc<Mutex<String>>,
    // Held for the life of the process: dropping the pipe's end stops the daemon.
    _tether: Mutex<(Child, ChildStdin)>,
    names: AtomicUsize,
}

impl Testbed {
    /// Initialises a data directory, lets `edit` change it (its `pkid.toml`), and starts the
    /// daemon on it under the tether (see the module docs).
    pub fn start(edit: impl FnOnce(&Path)) -> Self {
        let dir = tempdir().keep();
        let data = dir.join("data");
        let work = dir.join("work");
        std::fs::create_dir(&work).expect("work directory");
        pkid_ok(&data, &["init"]);
        edit(&data);
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(TETHER)
            .arg(pkid_bin())
            .arg("--data")
            .arg(&data)
            .args(["serve", "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .env_remove("PKID_DATA")
            .env("PKID_ACTOR", "e2e")
            .env("PKID_TESTBED_DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("sh");
        let stdin = child.stdin.take().expect("piped stdin");
        let (logs, _reader) = drain_into_buffer(child.stderr.take().expect("piped stderr"));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let (http, https) = loop {
            let text = logs.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let (Some(http), Some(https), true) = (
                listener_addr(&text, "HTTP listener ready"),
                listener_addr(&text, "HTTPS listener ready"),
                text.contains("pkid serving"),
            ) {
                break (http, https);
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("pkid serve exited ({status}) before it was ready; its log:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "pkid serve did not report both listeners within {STARTUP_TIMEOUT:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            data,
            work,
            http,
            https,
            logs,
            _tether: Mutex::new((child, stdin)),
            names: AtomicUsize::new(0),
        }
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// A scratch directory for keys, CSRs and certificates.
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// Everything the daemon has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `stem-N`, unique within this testbed: organisation and operator ids of one test.
    pub fn unique(&self, stem: &str) -> String {
        format!("{stem}-{}", self.names.fetch_add(1, Ordering::Relaxed))
    }

    /// `https://localhost:PORT{path}`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// curl options that trust only the data directory's root and reach the HTTPS listener.
    pub fn tls_args(&self) -> Vec<String> {
        vec![
            "--cacert".into(),
            path_str(&self.data.join("certs/root.crt")).into(),
            "--resolve".into(),
            format!("localhost:{}:127.0.0.1", self.https.port()),
        ]
    }

    // ---- the CLI -------------------------------------------------------------------------

    /// Runs a CLI command on the data directory that must succeed; returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        pkid_ok(&self.data, args)
    }

    /// Gives operator `id` a portal password and an authenticator (through the CLI), logs in
    /// with them over HTTPS, and returns the curl cookie jar that holds the session.
    pub fn portal_login(&self, id: &str) -> PathBuf {
        let password = "mật khẩu cổng thông tin 2026";
        let mut child = pkid_command(&self.data)
            .args(["operator", "password", "--id", id])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pkid");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            writeln!(stdin, "{password}").expect("password");
        }
        let out = child.wait_with_output().expect("wait");
        assert_success(&out, "pkid operator password");
        let uri = self.cli(&["operator", "totp", "--id", id]);
        let secret = uri
            .lines()
            .find(|l| l.starts_with("otpauth://"))
            .and_then(|u| u.split(['?', '&']).find_map(|p| p.strip_prefix("secret=")))
            .expect("an otpauth URI with its secret")
            .to_owned();
        let key = totp_rs::Secret::Encoded(secret).to_bytes().expect("base32");
        let code = totp_rs::TOTP::new_unchecked(
            totp_rs::Algorithm::SHA1,
            6,
            1,
            30,
            key,
            None,
            String::new(),
        )
        .generate_current()
        .expect("clock");
        let jar = unique_path(&self.work, "cookies", "txt");
        let jar_s = path_str(&jar).to_owned();
        let mut args = self.tls_args();
        args.extend(["-c".into(), jar_s.clone(), self.https_url("/")]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let home = fetch(&refs);
        let body = lossy(&home.body);
        let csrf = body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("the login form's token")
            .to_owned();
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &csrf)
            .append_pair("username", id)
            .append_pair("password", password)
            .append_pair("totp", &code)
            .finish();
        let mut args = self.tls_args();
        args.extend([
            "-b".into(),
            jar_s.clone(),
            "-c".into(),
            jar_s,
            "--data".into(),
            form,
            self.https_url("/login"),
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let login = fetch(&refs);
        assert_eq!(login.status, 303, "login: {}", lossy(&login.body));
        jar
    }

    /// `GET path` on the portal with the session in cookie jar `jar`: status and body.
    pub fn portal_get(&self, jar: &Path, path: &str) -> (u16, String) {
        let mut args = self.tls_args();
        args.extend(["-b".into(), path_str(jar).to_owned(), self.https_url(path)]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = fetch(&refs);
        (r.status, lossy(&r.body))
    }

    /// `pkid org add` (asserting success).
    pub fn org(&self, id: &str, name: &str, parent: Option<&str>, province: Option<&str>) {
        let mut args = vec!["org", "add", "--id", id, "--name", name];
        if let Some(p) = parent {
            args.extend_from_slice(&["--parent", p]);
        }
        if let Some(p) = province {
            args.extend_from_slice(&["--province", p]);
        }
        self.cli(&args);
    }

    /// `pkid operator add` (asserting success), then `pkid operator token`: returns the token,
    /// the last line of its stdout.
    pub fn operator(&self, id: &str, role: &str, org: Option<&str>, scope: Option<&str>) -> String {
        let mut args = vec!["operator", "add", "--id", id, "--name", id, "--role", role];
        if let Some(o) = org {
            args.extend_from_slice(&["--org", o]);
        }
        if let Some(s) = scope {
            args.extend_from_slice(&["--scope", s]);
        }
        self.cli(&args);
        self.token(id)
    }

    /// A new bearer token for an operator: the last line of `pkid operator token`'s stdout.
    pub fn token(&self, id: &str) -> String {
        let out = self.cli(&["operator", "token", "--id", id]);
        let token = out.lines().last().unwrap_or_default().trim().to_owned();
        assert!(token.starts_with("pkid_"), "not a token: {out:?}");
        token
    }

    /// Whether `pkid audit list` shows a `refused` row of `actor` doing `action` on `target`.
    pub fn refused(&self, actor: &str, action: &str, target: &str) -> bool {
        self.audit_rows().iter().any(|r| {
            r.actor == actor && r.action == action && r.target == target && r.outcome == "refused"
        })
    }

    /// The newest audit rows, as `pkid audit list` prints them.
    pub fn audit_rows(&self) -> Vec<AuditRow> {
        self.cli(&["audit", "list", "--limit", "100000"])
            .lines()
            .filter_map(AuditRow::parse)
            .collect()
    }

    // ---- the API -------------------------------------------------------------------------

    /// One call: `method` to `path` on the HTTPS listener with an optional bearer token and
    /// an optional JSON body (sent as `application/json`).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> ApiReply {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON"));
        self.send(
            method,
            path,
            token,
            "application/json",
            bytes.as_deref(),
            &[],
        )
    }

    /// `GET path` with a token.
    pub fn get(&self, path: &str, token: &str) -> ApiReply {
        self.call("GET", path, Some(token), None)
    }

    /// `POST path` with a token and a JSON body.
    pub fn post(&self, path: &str, token: &str, body: &Value) -> ApiReply {
        self.call("POST", path, Some(token), Some(body))
    }

    /// One call with raw body bytes (written to a file, sent with `--data-binary @file`) of
    /// the given content type; `extra` adds curl options (e.g. `--cert`).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Option<&[u8]>,
        extra: &[&str],
    ) -> ApiReply {
        let mut args: Vec<String> = self.tls_args();
        args.extend(["-X".into(), method.into()]);
        if let Some(t) = token {
            args.extend(["-H".into(), format!("Authorization: Bearer {t}")]);
        }
        if let Some(b) = body {
            let file = unique_path(&self.work, "body", "json");
            std::fs::write(&file, b).expect("write body");
            args.extend([
                "-H".into(),
                format!("Content-Type: {content_type}"),
                "--data-binary".into(),
                format!("@{}", path_str(&file)),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(self.https_url(path));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ApiReply::of(fetch(&refs))
    }

    /// A P-256 (`ec:P-256`) or RSA (`rsa:2048`) key and CSR made by `openssl req -utf8` with
    /// this common name; returns the CSR's PEM text.
    pub fn csr(&self, cn: &str, key_spec: &str) -> String {
        let (_key, csr) = make_csr(&self.work, &format!("/CN={cn}"), key_spec);
        String::from_utf8(read(&csr)).expect("PEM")
    }

    /// The body of an `issue` request (profile `person`, no document) for `name` with a new
    /// P-256 key, for the caller's own organisation or `org`.
    pub fn issue_body(&self, org: Option<&str>, name: &str) -> Value {
        let mut body = issue_body(name, &self.csr(name, "ec:P-256"));
        if let Some(o) = org {
            body["organisation"] = o.into();
        }
        body
    }

    /// An organisation officer files an `issue` request (no document) for `name`, P-256;
    /// asserts 201 and returns the answer.
    pub fn file_issue(&self, token: &str, org: Option<&str>, name: &str) -> ApiReply {
        let mut body = self.issue_body(None, name);
        if let Some(o) = org {
            body["organisation"] = o.into();
        }
        let r = self.post("/api/v1/requests", token, &body);
        assert_eq!(r.status, 201, "filing an issue request: {r}");
        r
    }

    /// `POST /api/v1/requests/{id}/transitions` with an action and an optional reason.
    pub fn act(&self, token: &str, id: i64, action: &str, reason: Option<&str>) -> ApiReply {
        let mut body = serde_json::json!({ "action": action });
        if let Some(r) = reason {
            body["reason"] = r.into();
        }
        self.post(&format!("/api/v1/requests/{id}/transitions"), token, &body)
    }

    /// Like [`Testbed::act`], asserting 200 and the state reached.
    pub fn act_ok(&self, token: &str, id: i64, action: &str, state: &str) -> ApiReply {
        let r = self.act(token, id, action, None);
        assert_eq!(r.status, 200, "{action} on request {id}: {r}");
        assert_eq!(r.json["state"], state, "{action} on request {id}: {r}");
        r
    }

    /// Downloads `/certs/SERIAL.pem` over HTTPS into the scratch directory; asserts 200.
    pub fn certificate(&self, serial: &str) -> PathBuf {
        let r = self.call("GET", &format!("/certs/{serial}.pem"), None, None);
        assert_eq!(r.status, 200, "GET /certs/{serial}.pem: {r}");
        let path = unique_path(&self.work, "cert", "pem");
        std::fs::write(&path, &r.body).expect("write certificate");
        path
    }

    /// `openssl ocsp` for a certificate of the issuing CA: (status, revocation reason), once
    /// the response verifies against the root. `None` if it does not.
    pub fn ocsp(&self, cert: &Path) -> Option<(String, Option<String>)> {
        let issuing = self.data.join("certs/issuing.crt");
        let root = self.data.join("certs/root.crt");
        let url = self.http_url("/ocsp");
        let out = openssl(&[
            "ocsp",
            "-issuer",
            path_str(&issuing),
            "-cert",
            path_str(cert),
            "-url",
            &url,
            "-CAfile",
            path_str(&root),
            "-timeout",
            "20",
        ]);
        if !out.status.success() || !lossy(&out.stderr).contains("Response verify OK") {
            return None;
        }
        let stdout = lossy(&out.stdout);
        let prefix = format!("{}: ", path_str(cert));
        let status = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))?
            .trim()
            .to_owned();
        let reason = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("Reason: "))
            .map(|r| r.trim().to_owned());
        Some((status, reason))
    }

    /// Polls OCSP until the certificate's status is `want` (within [`PROPAGATION`]); returns
    /// the revocation reason given with it.
    pub fn wait_ocsp(&self, cert: &Path, want: &str) -> Option<String> {
        let mut last = None;
        let ok = poll(PROPAGATION, || {
            last = self.ocsp(cert);
            last.as_ref().is_some_and(|(s, _)| s == want)
        });
        assert!(
            ok,
            "OCSP never said {want} for {} (last: {last:?})",
            cert.display()
        );
        last.and_then(|(_, reason)| reason)
    }
}

/// One line of `pkid audit list`.
#[derive(Debug)]
pub struct AuditRow {
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what (may be empty).
    pub target: String,
    /// `success` or `refused`.
    pub outcome: String,
}

impl AuditRow {
    /// Parses `TIME  ACTOR ACTION TARGET OUTCOME DETAIL…` (TARGET may be empty).
    fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let is_outcome = |s: &str| matches!(s, "success" | "refused" | "failed");
        let (target, outcome) = match (f.get(3), f.get(4)) {
            (Some(o), _) if is_outcome(o) => ("", *o),
            (Some(t), Some(o)) if is_outcome(o) => (*t, *o),
            _ => return None,
        };
        Some(Self {
            actor: f.get(1)?.to_string(),
            action: f.get(2)?.to_string(),
            target: target.into(),
            outcome: outcome.into(),
        })
    }
}

/// The body of an `issue` request (profile `person`, no document) for `name` with this CSR.
pub fn issue_body(name: &str, csr: &str) -> Value {
    serde_json::json!({
        "kind": "issue",
        "profile": "person",
        "subscriber": {"name": name, "email": "giaovien@truong.edu.vn"},
        "csr": csr,
    })
}

/// A profile that allows only P-256 keys, appended to a data directory's `pkid.toml`: what
/// an organisation's policy looks like when it forbids RSA.
pub const P256_ONLY_PROFILE: &str = r#"
[profiles.p256-only]
key_usage = ["digitalSignature", "nonRepudiation"]
extended_key_usage = ["emailProtection", "clientAuth"]
extended_key_usage_critical = false
max_validity_days = 730
default_validity_days = 365
allowed_keys = ["p256"]
required_subject = ["CN"]
copy_subject_alt_name = false
"#;

/// Appends text to a data directory's `pkid.toml`.
pub fn append_config(data: &Path, text: &str) {
    let path = data.join("pkid.toml");
    let mut config = std::fs::read_to_string(&path).expect("pkid.toml");
    config.push_str(text);
    std::fs::write(&path, config).expect("write pkid.toml");
}
