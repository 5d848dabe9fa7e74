//! Shared support for the end-to-end suites: they run the real `pkid` binary and drive it with
//! real clients (`openssl`, `curl`), never with our own code.
//!
//! ```text
//!  init(args) ──▶ TempDir (a fresh data directory, `pkid init` succeeded)
//!  pkid(data, args) ──▶ Output of one CLI command
//!  Daemon::start(data) ──▶ `pkid serve` on 127.0.0.1:0 (HTTP and HTTPS), addresses read from its log
//!        ├─ http_url / https_url ──▶ curl(...) / fetch(...)
//!        └─ sigterm / sighup / wait / logs
//!  make_csr(dir, subject, key) ──▶ (key.pem, req.csr) made by `openssl req`
//! ```
//!
//! Every child gets a clean environment for what matters to the assertions: `RUST_LOG` is
//! removed so the daemon logs at its configured level (the readiness lines are INFO) and a CLI
//! error is exactly one line. Nothing here sets process-wide state (`std::env::set_var`): tests
//! run in parallel, so per-test settings (e.g. `SOFTHSM2_CONF`) go to the child only.
//!
//! Each test file uses a different subset of these helpers.
#![allow(dead_code, unreachable_pub)]

pub mod inprocess;
pub mod ra;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a daemon may take to print both "listener ready" lines. Generous on purpose: a
/// loaded 2-core CI machine running two test binaries' worth of processes can be slow.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon may take to exit after SIGTERM when nothing is in flight.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound for any single curl call, so a hung daemon fails a test instead of hanging it.
pub const CURL_MAX_SECS: &str = "20";
/// The module SoftHSM2 installs on Debian (INTEROP.md).
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The `pkid` binary Cargo built for this test run.
pub fn pkid_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pkid")
}

/// A `pkid` command with a clean environment for logging (see the module docs).
pub fn pkid_command(data: &Path) -> Command {
    let mut cmd = Command::new(pkid_bin());
    cmd.arg("--data")
        .arg(data)
        .env_remove("RUST_LOG")
        .env_remove("PKID_DATA")
        .env("PKID_ACTOR", "e2e");
    cmd
}

/// Runs `pkid --data DATA ARGS…` and returns its output (whatever the exit status).
pub fn pkid(data: &Path, args: &[&str]) -> Output {
    pkid_env(data, args, &[])
}

/// Like [`pkid`], with extra environment variables for the child only.
pub fn pkid_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = pkid_command(data);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", pkid_bin()))
}

/// Runs a `pkid` command that must succeed and returns its stdout.
pub fn pkid_ok(data: &Path, args: &[&str]) -> String {
    let out = pkid(data, args);
    assert_success(&out, &format!("pkid {}", args.join(" ")));
    String::from_utf8(out.stdout).expect("pkid prints UTF-8")
}

/// Runs a `pkid` command that must fail; returns (exit code, stdout, stderr).
pub fn pkid_fails(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = pkid(data, args);
    let (stdout, stderr) = (lossy(&out.stdout), lossy(&out.stderr));
    assert!(
        !out.status.success(),
        "pkid {} should fail\nstdout: {stdout}\nstderr: {stderr}",
        args.join(" ")
    );
    (
        out.status.code().expect("exit code, not a signal"),
        stdout,
        stderr,
    )
}

/// A fresh data directory initialised by `pkid init ARGS…` (asserting success).
pub fn init(args: &[&str]) -> tempfile::TempDir {
    let dir = tempdir();
    let mut full = vec!["init"];
    full.extend_from_slice(args);
    pkid_ok(dir.path(), &full);
    dir
}

/// A unique temporary directory (removed when dropped).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pkid-e2e-")
        .tempdir()
        .expect("temporary directory")
}

/// Lossy UTF-8 for messages.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Panics with both output streams unless `out` succeeded.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({})\nstdout: {}\nstderr: {}",
        out.status,
        lossy(&out.stdout),
        lossy(&out.stderr)
    );
}

/// The one error line a failing CLI command must print: asserts stderr is exactly one line,
/// that it starts with `pkid: error:`, that nothing panicked, and returns the line.
pub fn one_error_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one error line, got:\n{stderr}"
    );
    assert!(
        lines[0].starts_with("pkid: error: "),
        "error line should start with `pkid: error: `: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0]
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// Runs `openssl ARGS…` (whatever the exit status).
pub fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed (scripts/test.sh installs it)")
}

/// Runs an openssl command that must succeed; returns stdout (UTF-8, lossy).
pub fn openssl_ok(args: &[&str]) -> String {
    let out = openssl(args);
    assert_success(&out, &format!("openssl {}", args.join(" ")));
    lossy(&out.stdout)
}

/// `openssl x509 -text` of a PEM certificate file.
pub fn x509_text(cert: &Path) -> String {
    openssl_ok(&["x509", "-in", path_str(cert), "-noout", "-text"])
}

/// The subject of a PEM certificate, as `openssl x509 -subject -nameopt utf8` prints it.
pub fn x509_subject(cert: &Path) -> String {
    openssl_ok(&[
        "x509",
        "-in",
        path_str(cert),
        "-noout",
        "-subject",
        "-nameopt",
        "utf8",
    ])
    .trim()
    .to_string()
}

/// The serial of a PEM certificate in pkid's canonical form (lower-case hex, no leading `00`),
/// read with `openssl x509 -serial`.
pub fn x509_serial(cert: &Path) -> String {
    let out = openssl_ok(&["x509", "-in", path_str(cert), "-noout", "-serial"]);
    let hex = out
        .trim()
        .strip_prefix("serial=")
        .unwrap_or_else(|| panic!("unexpected -serial output {out:?}"));
    canonical_serial(hex)
}

/// Lower-case hex without leading zero octets (what `pkid` prints and accepts).
pub fn canonical_serial(hex: &str) -> String {
    let mut s = hex.trim().to_ascii_lowercase();
    while s.len() > 2 && s.starts_with("00") {
        s.drain(..2);
    }
    s
}

/// `openssl verify` of `cert` against the data directory's root, with the issuing CA as the
/// untrusted intermediate; `extra` adds options such as `-purpose sslserver`.
pub fn verify_chain(data: &Path, cert: &Path, extra: &[&str]) -> Output {
    let root = data.join("certs/root.crt");
    let issuing = data.join("certs/issuing.crt");
    let mut args = vec![
        "verify",
        "-CAfile",
        path_str(&root),
        "-untrusted",
        path_str(&issuing),
    ];
    args.extend_from_slice(extra);
    args.push(path_str(cert));
    openssl(&args)
}

/// Asserts that `openssl verify` accepts `cert` (see [`verify_chain`]).
pub fn assert_verifies(data: &Path, cert: &Path, extra: &[&str]) {
    let out = verify_chain(data, cert, extra);
    assert_success(
        &out,
        &format!("openssl verify {extra:?} {}", cert.display()),
    );
    assert!(
        lossy(&out.stdout).trim().ends_with(": OK"),
        "{}",
        lossy(&out.stdout)
    );
}

/// `openssl crl -verify` against a CA certificate: "verify OK" on stderr.
pub fn assert_crl_signed_by(pem: &Path, ca: &Path) {
    let out = openssl(&[
        "crl",
        "-in",
        path_str(pem),
        "-CAfile",
        path_str(ca),
        "-noout",
    ]);
    assert_success(&out, "openssl crl -CAfile");
    assert!(
        lossy(&out.stderr).contains("verify OK"),
        "{}",
        lossy(&out.stderr)
    );
}

/// Runs `curl ARGS…` (whatever the exit status).
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl is installed (scripts/test.sh installs it)")
}

/// One HTTP exchange as curl saw it.
#[derive(Debug)]
pub struct Reply {
    /// Status code; 0 when no response arrived.
    pub status: u16,
    /// HTTP version curl used (`1.1`, `2`).
    pub version: String,
    /// The response headers as curl's `%{header_json}` (lower-case names).
    pub headers: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        lossy(&self.body)
    }

    /// Whether the response carried a header with this (lower-case) name.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.contains(&format!("\"{name}\":"))
    }
}

/// Makes one request with curl: `fetch(&["-X", "POST", url])`. Status, version and headers come
/// from `--write-out` on stderr, the body from stdout.
pub fn fetch(args: &[&str]) -> Reply {
    let mut full = vec![
        "-sS",
        "--max-time",
        CURL_MAX_SECS,
        "--write-out",
        "%{stderr}%{http_code} %{http_version}\n%{header_json}",
    ];
    full.extend_from_slice(args);
    let out = curl(&full);
    let meta = lossy(&out.stderr);
    let (first, headers) = meta.split_once('\n').unwrap_or((meta.as_str(), ""));
    let mut parts = first.split_whitespace();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = parts.next().unwrap_or_default().to_string();
    if status == 0 {
        // No response: curl's own error (`-S`) says why, e.g. a reset stream or a timeout.
        eprintln!("curl got no HTTP response: {}", meta.trim());
    }
    Reply {
        status,
        version,
        headers: headers.to_string(),
        body: out.stdout,
    }
}

/// `GET url` with curl.
pub fn get(url: &str) -> Reply {
    fetch(&[url])
}

// ---------------------------------------------------------------------------------------------
// Requests and keys
// ---------------------------------------------------------------------------------------------

static FILE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A path in `dir` that no other helper call in this process has used.
pub fn unique_path(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{stem}-{n}.{ext}"))
}

/// Makes a key and a PKCS#10 request with `openssl req -utf8` (so Vietnamese subjects are
/// encoded as UTF8String). `subject` is OpenSSL's `/C=VN/O=…/CN=…` form; `key_spec` is
/// `ec:P-256`, `ec:P-384`, `rsa:2048`, `rsa:1024`, … Returns (key path, CSR path), PEM.
pub fn make_csr(dir: &Path, subject: &str, key_spec: &str) -> (PathBuf, PathBuf) {
    make_csr_with(dir, subject, key_spec, &[])
}

/// [`make_csr`] with extra `openssl req` options, e.g. `["-addext", "subjectAltName=DNS:a.vn"]`.
pub fn make_csr_with(
    dir: &Path,
    subject: &str,
    key_spec: &str,
    extra: &[&str],
) -> (PathBuf, PathBuf) {
    let key = unique_path(dir, "key", "pem");
    let csr = unique_path(dir, "req", "csr");
    let newkey: Vec<String> = match key_spec.split_once(':') {
        Some(("ec", curve)) => vec![
            "-newkey".into(),
            "ec".into(),
            "-pkeyopt".into(),
            format!("ec_paramgen_curve:{curve}"),
        ],
        Some(("rsa", bits)) => vec!["-newkey".into(), format!("rsa:{bits}")],
        _ => panic!("unknown key spec {key_spec:?}; use ec:CURVE or rsa:BITS"),
    };
    let mut args: Vec<&str> = vec![
        "req",
        "-new",
        "-nodes",
        "-utf8",
        "-subj",
        subject,
        "-keyout",
        path_str(&key),
        "-out",
        path_str(&csr),
    ];
    args.extend(newkey.iter().map(String::as_str));
    args.extend_from_slice(extra);
    let out = openssl(&args);
    assert_success(&out, &format!("openssl req for {subject} ({key_spec})"));
    (key, csr)
}

/// Converts a PEM request to DER (`openssl req -outform DER`); returns the new file's path.
pub fn csr_der(dir: &Path, csr_pem: &Path) -> PathBuf {
    let der = unique_path(dir, "req", "der");
    openssl_ok(&[
        "req",
        "-in",
        path_str(csr_pem),
        "-outform",
        "DER",
        "-out",
        path_str(&der),
    ]);
    der
}

/// The public key of a PEM certificate (or of a private key with `-key`), as PEM.
pub fn public_key_of_cert(cert: &Path) -> String {
    openssl_ok(&["x509", "-in", path_str(cert), "-noout", "-pubkey"])
}

/// Issues a certificate with `pkid cert issue` (asserting success), writes the PEM it printed
/// next to the request and returns (serial, PEM path).
pub fn issue(data: &Path, csr: &Path, profile: &str, extra: &[&str]) -> (String, PathBuf) {
    let mut args = vec![
        "cert",
        "issue",
        "--csr",
        path_str(csr),
        "--profile",
        profile,
    ];
    args.extend_from_slice(extra);
    let pem = pkid_ok(data, &args);
    save_pem(csr.parent().expect("csr has a directory"), &pem)
}

/// `pkid cert revoke --serial SERIAL --reason REASON` (asserting success).
pub fn revoke(data: &Path, serial: &str, reason: &str) {
    pkid_ok(
        data,
        &["cert", "revoke", "--serial", serial, "--reason", reason],
    );
}

/// Writes one PEM certificate printed by a `pkid cert …` command to a fresh file; returns
/// (serial, path). Asserts the text is exactly one PEM certificate.
pub fn save_pem(dir: &Path, pem: &str) -> (String, PathBuf) {
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE-----\n"),
        "expected a PEM certificate, got {pem:?}"
    );
    assert_eq!(
        pem.matches("-----BEGIN").count(),
        1,
        "expected exactly one certificate: {pem}"
    );
    assert!(
        pem.trim_end().ends_with("-----END CERTIFICATE-----"),
        "{pem}"
    );
    let path = unique_path(dir, "cert", "pem");
    std::fs::write(&path, pem).expect("write certificate");
    (x509_serial(&path), path)
}

/// A path as `&str` (all test paths are UTF-8 temp paths).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

// ---------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------

/// A running `pkid serve` on loopback, with its stderr drained into a buffer. Killed on drop.
pub struct Daemon {
    child: Child,
    logs: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    /// Where the plain-HTTP listener is bound.
    pub http: SocketAddr,
    /// Where the HTTPS listener is bound.
    pub https: SocketAddr,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `pkid --data DATA serve --http 127.0.0.1:0 --https 127.0.0.1:0` and waits (up to
    /// [`STARTUP_TIMEOUT`]) until both listeners have logged their addresses.
    pub fn start(data: &Path) -> Self {
        Self::start_with(data, &[])
    }

    /// [`Daemon::start`] with extra `serve` arguments (not `--http`/`--https`, which are set).
    pub fn start_with(data: &Path, extra_args: &[&str]) -> Self {
        Self::start_env(data, extra_args, &[])
    }

    /// [`Daemon::start_with`] with extra environment variables for the daemon only.
    pub fn start_env(data: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = pkid_command(data);
        cmd.args(["serve", "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            .args(extra_args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", pkid_bin()));
        let (logs, reader) = drain_into_buffer(child.stderr.take().expect("piped stderr"));
        let mut daemon = Daemon {
            child,
            logs,
            reader: Some(reader),
            http: SocketAddr::from(([0, 0, 0, 0], 0)),
            https: SocketAddr::from(([0, 0, 0, 0], 0)),
            status: None,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let logs = daemon.logs();
            // Ready is both listeners bound and the start-up finished ("pkid serving", logged
            // after the background tasks are spawned): a test that reads the start-up log or
            // needs those tasks does not race them.
            if let (Some(http), Some(https), true) = (
                listener_addr(&logs, "HTTP listener ready"),
                listener_addr(&logs, "HTTPS listener ready"),
                logs.contains("pkid serving"),
            ) {
                daemon.http = http;
                daemon.https = https;
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                daemon.status = Some(status);
                daemon.join_reader();
                panic!(
                    "pkid serve exited ({status}) before it was ready; its log:\n{}",
                    daemon.logs()
                );
            }
            if Instant::now() > deadline {
                panic!("pkid serve did not report both listeners within {STARTUP_TIMEOUT:?}; its log so far:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the daemon has logged so far (plain text: stderr is not a terminal).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Polls the log until `needle` has appeared at least `count` times or `timeout` passes.
    pub fn wait_for_log(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        poll(timeout, || self.logs().matches(needle).count() >= count)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `https://localhost:PORT{path}`. The TLS certificate names localhost, 127.0.0.1 and ::1;
    /// give curl [`Daemon::tls_args`] so that it trusts the data directory's root.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    /// curl options for [`Daemon::https_url`]: trust only `root` (the data directory's
    /// `certs/root.crt`) and resolve localhost to 127.0.0.1, where the listener is bound.
    pub fn tls_args(&self, root: &Path) -> Vec<String> {
        vec![
            "--cacert".into(),
            path_str(root).into(),
            "--resolve".into(),
            format!("localhost:{}:127.0.0.1", self.https.port()),
        ]
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends SIGHUP (configuration reload).
    pub fn sighup(&self) {
        self.signal("HUP");
    }

    fn signal(&self, name: &str) {
        // `kill(1)` rather than libc: no unsafe and no new dependency for two signals.
        let out = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .output()
            .expect("kill(1)");
        assert_success(&out, &format!("kill -{name} {}", self.child.id()));
    }

    /// Waits up to [`SHUTDOWN_TIMEOUT`] for the daemon to exit and returns its status; the log
    /// is complete afterwards. Panics (with the log) if it does not exit in time.
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_timeout(SHUTDOWN_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "pkid did not exit within {SHUTDOWN_TIMEOUT:?}; its log:\n{}",
                self.logs()
            )
        })
    }

    /// Waits up to `timeout` for the daemon to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(s) = self.child.try_wait().expect("try_wait") {
                    self.status = Some(s);
                    break;
                }
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.join_reader();
        self.status
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// The value of an unlabelled metric (e.g. `pkid_store_change_seq`) from `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let reply = get(&self.http_url("/metrics"));
        assert_eq!(reply.status, 200, "GET /metrics: {reply:?}");
        metric_value(&reply.text(), name)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.join_reader();
    }
}

/// Reads a child's stderr into a shared buffer for the child's whole life, so the pipe never
/// fills and blocks it; returns the buffer and the reading thread.
fn drain_into_buffer(stderr: std::process::ChildStderr) -> (Arc<Mutex<String>>, JoinHandle<()>) {
    let logs = Arc::new(Mutex::new(String::new()));
    let sink = logs.clone();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => sink
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&line)),
            }
        }
    });
    (logs, reader)
}

/// Finds `addr=IP:PORT` on the first log line containing `marker`.
fn listener_addr(logs: &str, marker: &str) -> Option<SocketAddr> {
    let line = logs.lines().find(|l| l.contains(marker))?;
    let rest = &line[line.find("addr=")? + "addr=".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// The value of metric `name` (exact name, no labels) in a Prometheus text exposition.
pub fn metric_value(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Calls `check` every 25 ms until it returns true or `timeout` passes; returns the last result.
pub fn poll(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Reads a whole file as bytes.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads everything a raw TCP peer sends until it closes or `timeout` passes.
pub fn read_until_close(stream: &mut std::net::TcpStream, timeout: Duration) -> Vec<u8> {
    stream
        .set_read_timeout(Some(timeout))
        .expect("read timeout");
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    buf
}

/// Deterministic pseudo-random bytes (xorshift64*): garbage that can be reproduced from the seed
/// printed by the test that uses it.
pub fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// A SoftHSM2 token in a directory of its own (INTEROP.md): its own token directory and
/// configuration, so tests run in parallel and never touch the system's tokens. Only child
/// processes given [`SoftHsmToken::env`] see it.
pub struct SoftHsmToken {
    /// Holds the token directory, its configuration and PIN files.
    pub dir: tempfile::TempDir,
    conf: String,
}

impl SoftHsmToken {
    /// Initialises a token called `label` with the given user and security-officer PINs.
    pub fn new(label: &str, user_pin: &str, so_pin: &str) -> Self {
        assert!(
            Path::new(SOFTHSM_MODULE).exists(),
            "{SOFTHSM_MODULE} is missing: install softhsm2 (scripts/test.sh does)"
        );
        let dir = tempdir();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("tokens dir");
        let conf_path = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf_path,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        let token = SoftHsmToken {
            dir,
            conf: path_str(&conf_path).to_string(),
        };
        let out = token.tool(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                so_pin,
                "--pin",
                user_pin,
            ],
        );
        assert_success(&out, "softhsm2-util --init-token");
        token
    }

    /// Environment for every child that talks to this token.
    pub fn env(&self) -> [(&str, &str); 1] {
        [("SOFTHSM2_CONF", self.conf.as_str())]
    }

    /// [`SoftHsmToken::env`] as owned strings.
    pub fn env_owned(&self) -> Vec<(String, String)> {
        vec![("SOFTHSM2_CONF".to_string(), self.conf.clone())]
    }

    /// Writes `pin` (first line) to a new file outside any data directory; returns its path.
    pub fn pin_file(&self, pin: &str) -> PathBuf {
        let path = unique_path(self.dir.path(), "pin", "txt");
        std::fs::write(&path, format!("{pin}\n")).expect("pin file");
        path
    }

    /// Runs `pkcs11-tool ARGS…` on token `label`, logged in as its user with `pin`.
    pub fn user_tool(&self, label: &str, pin: &str, args: &[&str]) -> Output {
        let mut full = vec![
            "--module",
            SOFTHSM_MODULE,
            "--token-label",
            label,
            "--login",
            "--pin",
            pin,
        ];
        full.extend_from_slice(args);
        self.tool("pkcs11-tool", &full)
    }

    /// Runs a token tool (`softhsm2-util`, `pkcs11-tool`) against this token only.
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("{program} is installed (scripts/test.sh installs softhsm2 and opensc): {e}")
            })
    }
}

/// `openssl ocsp -reqout` for the certificate at `cert`, issued by the issuing CA: a
/// nonce-less OCSP request, DER.
pub fn ocsp_request(data: &Path, cert: &Path) -> Vec<u8> {
    let out = unique_path(data, "req", "der");
    openssl_ok(&[
        "ocsp",
        "-issuer",
        path_str(&data.join("certs/issuing.crt")),
        "-cert",
        path_str(cert),
        "-no_nonce",
        "-reqout",
        path_str(&out),
    ]);
    std::fs::read(out).expect("request")
}

/// The parts of a multipart/mixed reply (EST serverkeygen): (Content-Type, decoded base64
/// body), asserting the reply is a 200.
pub fn multipart_parts(reply: &Reply) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let boundary = reply
        .headers
        .split("boundary=")
        .nth(1)
        .and_then(|b| b.split(['"', '\r', '\n', ';']).next())
        .expect("multipart/mixed with a boundary")
        .to_owned();
    let text = reply.text();
    text.split(&format!("--{boundary}"))
        .filter_map(|p| {
            let (head, body) = p.split_once("\r\n\r\n")?;
            let ct = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))?
                .trim()
                .to_owned();
            let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(clean)
                .expect("base64 part");
            Some((ct, der))
        })
        .collect()
}

/// A new P-256 key and a self-signed certificate for `subject` (another CA, a stranger), made
/// by `openssl req -x509` in `dir`: (key path, certificate path), PEM.
pub fn self_signed_p256(dir: &Path, stem: &str, subject: &str) -> (PathBuf, PathBuf) {
    let key = unique_path(dir, stem, "key");
    let cert = unique_path(dir, stem, "crt");
    openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        path_str(&key),
        "-subj",
        subject,
        "-out",
        path_str(&cert),
    ]);
    (key, cert)
}

/// An EST body: a new P-256 PKCS#10 request for `subject`, DER in base64 (`openssl base64`,
/// wrapped at 64 columns as clients send it). Its path.
pub fn est_csr_body(dir: &Path, subject: &str) -> PathBuf {
    let (_, csr) = make_csr(dir, subject, "ec:P-256");
    let b64 = unique_path(dir, "csr", "b64");
    openssl_ok(&[
        "base64",
        "-in",
        path_str(&csr_der(dir, &csr)),
        "-out",
        path_str(&b64),
    ]);
    b64
}

/// POSTs the EST `body` (`application/pkcs10`) to `path` on the daemon's HTTPS listener with
/// HTTP Basic `user` (`name:password`), trusting `root`.
pub fn est_post_basic(daemon: &Daemon, root: &Path, user: &str, path: &str, body: &Path) -> Reply {
    let mut args = daemon.tls_args(root);
    args.extend(
        [
            "--user",
            user,
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", path_str(body)),
            &daemon.https_url(path),
        ]
        .map(str::to_owned),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fetch(&args)
}

/// The one certificate of a certs-only PKCS#7 (DER, an EST reply part), saved as PEM in
/// `dir` (asserting there is exactly one): (serial, path).
pub fn only_certificate_of(dir: &Path, p7_der: &[u8]) -> (String, PathBuf) {
    let p7 = unique_path(dir, "certs", "p7");
    std::fs::write(&p7, p7_der).expect("write the PKCS#7");
    let pem = openssl_ok(&[
        "pkcs7",
        "-inform",
        "DER",
        "-in",
        path_str(&p7),
        "-print_certs",
    ]);
    let start = pem.find("-----BEGIN").expect("a PEM certificate");
    save_pem(dir, pem[start..].trim_end())
}
