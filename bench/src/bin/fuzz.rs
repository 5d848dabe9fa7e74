//! A bounded mutational fuzzer against the real daemon, on loopback.
//!
//! ```text
//!  pkid init + cert issue ──▶ valid OCSP requests (POST, GET) and TSA queries
//!        ──mutate (DER tree/byte edits, percent-encoding oddities, HTTP framing)──▶ pkid serve
//!  slow clients (silent, partial headers, partial body, trickle) ──────────────────▶ pkid serve
//!  pkid's stderr ──▶ lines, bytes, "panicked"        /proc/PID/status ──▶ VmRSS before/after
//! ```
//!
//! Usage: `fuzz [--requests N] [--seconds S] [--hang-secs H] [--slow N] [--slow-secs T]
//! [--seed X]`. It starts `pkid serve` (the release binary next to this one) on 127.0.0.1 with
//! an ephemeral port and a fresh data directory, talks only to that address, stops after N
//! requests or S seconds, whichever comes first, and prints counts of answers by status, 5xx,
//! connection resets, hangs (no answer within H seconds), daemon panics and exits, RSS growth
//! and the daemon's log volume. Exit status 1 when it saw a 5xx, a panic or an exit.
//! See docs/fuzzing.md.

use pkid_bench::daemon::{pkid, pkid_binary, server_command};
use pkid_bench::mutate::{self, SplitMix64};
use pkid_bench::requests;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Command-line settings.
struct Args {
    requests: u64,
    seconds: u64,
    hang_secs: u64,
    slow: usize,
    slow_secs: u64,
    flood: usize,
    seed: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        requests: 20_000,
        seconds: 300,
        hang_secs: 5,
        slow: 2,
        slow_secs: 40,
        flood: 500,
        seed: 1,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"))
            .as_str();
        let num = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|e| panic!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--requests" => a.requests = num(),
            "--seconds" => a.seconds = num(),
            "--hang-secs" => a.hang_secs = num().max(1),
            "--slow" => a.slow = num() as usize,
            "--slow-secs" => a.slow_secs = num(),
            "--flood" => a.flood = num() as usize,
            "--seed" => a.seed = num(),
            _ => panic!(
                "usage: fuzz [--requests N] [--seconds S] [--hang-secs H] [--slow N] \
                 [--slow-secs T] [--flood N] [--seed X]"
            ),
        }
    }
    a
}

/// What the daemon wrote to stderr, counted as it arrives.
#[derive(Default)]
struct LogVolume {
    lines: AtomicU64,
    bytes: AtomicU64,
    panics: AtomicU64,
    /// Lines by level: ERROR, WARN, INFO, anything else.
    levels: [AtomicU64; 4],
    /// The first few panic lines, for the report.
    panic_lines: Mutex<Vec<String>>,
    /// The last few lines, for the report (by then, lines written while fuzzed).
    last_lines: Mutex<std::collections::VecDeque<String>>,
}

impl LogVolume {
    const LEVELS: [&'static str; 4] = ["ERROR", "WARN", "INFO", "other"];

    fn count(&self, line: &str) {
        self.lines.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(line.len() as u64, Ordering::Relaxed);
        let level = Self::LEVELS[..3]
            .iter()
            .position(|l| line.contains(l))
            .unwrap_or(3);
        self.levels[level].fetch_add(1, Ordering::Relaxed);
        if line.contains("panicked") {
            self.panics.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut v) = self.panic_lines.lock() {
                if v.len() < 5 {
                    v.push(line.trim_end().to_string());
                }
            }
        }
        if let Ok(mut v) = self.last_lines.lock() {
            if v.len() == 3 {
                v.pop_front();
            }
            v.push_back(line.trim_end().to_string());
        }
    }

    fn levels(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.levels[i].load(Ordering::Relaxed))
    }
}

/// The daemon under test, killed on drop.
struct Target {
    child: Child,
    addr: SocketAddr,
    log: Arc<LogVolume>,
}

impl Target {
    fn start(data: &Path) -> Target {
        // The daemon's own log level (from pkid.toml): the log volume measured is an operator's.
        let mut child = server_command(pkid_binary())
            .env_remove("RUST_LOG")
            .arg("--data")
            .arg(data)
            .args(["serve", "--http", "127.0.0.1:0", "--https", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", pkid_binary().display()));
        let stderr = child.stderr.take().unwrap_or_else(|| unreachable!());
        let log = Arc::new(LogVolume::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let counts = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                counts.count(&line);
                if let Some(addr) = line.split("HTTP listener ready addr=").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
                line.clear();
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("pkid did not announce its HTTP listener within 60 s"));
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("listener address {addr:?}: {e}"));
        assert!(
            addr.ip().is_loopback(),
            "refusing to fuzz {addr}: not loopback"
        );
        Target { child, addr, log }
    }

    /// VmRSS of the daemon, in KiB (`taskset` execs it, so the child's PID is pkid's).
    fn rss_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Open file descriptors of the daemon (sockets included).
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How one exchange ended.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// A response with this status code.
    Status(u16),
    /// A 200 response whose body's first status field (OCSPResponseStatus, or the TSA's
    /// PKIStatus) has this value.
    Answered(u8),
    /// The daemon reset the connection.
    Reset,
    /// No complete response within the hang limit.
    Hang,
    /// The daemon closed the connection without answering.
    ClosedSilently,
    /// Nothing listens any more.
    Refused,
    /// Some other I/O error.
    Io(String),
}

fn classify(e: &std::io::Error) -> Outcome {
    match e.kind() {
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Outcome::Reset
        }
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::Hang,
        ErrorKind::ConnectionRefused => Outcome::Refused,
        _ => Outcome::Io(e.kind().to_string()),
    }
}

/// Sends `request` on a fresh connection and reads the answer to the end (every request says
/// `Connection: close`, or the daemon closes after an error).
fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> Outcome {
    let mut stream = match TcpStream::connect_timeout(&addr, limit) {
        Ok(s) => s,
        Err(e) => return classify(&e),
    };
    let _ = stream.set_read_timeout(Some(limit));
    let _ = stream.set_write_timeout(Some(limit));
    if let Err(e) = stream.write_all(request) {
        // The daemon may answer (413, 400) and close before reading everything we send.
        if !matches!(classify(&e), Outcome::Reset) {
            return classify(&e);
        }
    }
    let deadline = Instant::now() + limit;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => {
                let o = classify(&e);
                if answer.is_empty() || o != Outcome::Reset {
                    return outcome_of(&answer).unwrap_or(o);
                }
                break;
            }
        }
        if Instant::now() > deadline {
            return outcome_of(&answer).unwrap_or(Outcome::Hang);
        }
    }
    outcome_of(&answer).unwrap_or(Outcome::ClosedSilently)
}

/// The outcome of a complete answer: for a 200 with a DER body, the first status field in it.
fn outcome_of(answer: &[u8]) -> Option<Outcome> {
    let status = status_of(answer)?;
    let body = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| &answer[i + 4..]);
    match (status, body.and_then(first_status_field)) {
        (200, Some(v)) => Some(Outcome::Answered(v)),
        _ => Some(Outcome::Status(status)),
    }
}

/// The first primitive value inside nested SEQUENCEs when it is a one-octet ENUMERATED or
/// INTEGER: OCSPResponse.responseStatus, TimeStampResp.status.status.
fn first_status_field(mut der: &[u8]) -> Option<u8> {
    while der.first() == Some(&0x30) {
        let l = *der.get(1)?;
        let skip = if l < 0x80 {
            2
        } else {
            2 + usize::from(l & 0x7F)
        };
        der = der.get(skip..)?;
    }
    match der {
        [0x0A | 0x02, 1, v, ..] => Some(*v),
        _ => None,
    }
}

fn status_of(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn ocsp_post(der: &[u8]) -> Vec<u8> {
    post("/ocsp", "application/ocsp-request", der)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Percent-encoding oddities in an RFC 5019 GET path: malformed escapes (`%+f`, `%2`, `%ZZ`),
/// overlong and double encodings, raw base64 characters, huge and empty paths.
/// The second value says whether the path now holds an escape RFC 3986 §2.1 forbids
/// (anything but `%` and two hex digits), which the daemon must not answer as a valid request.
fn odd_path(path: &str, rng: &mut SplitMix64) -> (String, bool) {
    const ODD: &[&str] = &[
        "%+f",
        "%-1",
        "%2",
        "%ZZ",
        "%",
        "%%",
        "%0",
        "%00",
        "%C0%AF",
        "%E0%80%AF",
        "%252F",
        "%u002F",
        "%2b",
        "%2f",
        "%3d",
        "%20",
        "+",
        "/",
        "//",
        "..",
        "%2e%2e",
    ];
    let odd = ODD[rng.below(ODD.len())];
    let (head, b64) = path.split_at("/ocsp/".len());
    let out = match rng.below(8) {
        0 => format!("{head}{}", b64.replace("%2B", odd)),
        1 => format!("{head}{}", b64.replace("%2F", odd)),
        2 => format!("{head}{}", b64.replace("%3D", odd)),
        3 => {
            let at = rng.below(b64.len() + 1);
            let at = (0..=at)
                .rev()
                .find(|i| b64.is_char_boundary(*i))
                .unwrap_or(0);
            format!("{head}{}{odd}{}", &b64[..at], &b64[at..])
        }
        // The raw base64 (RFC 5019 says to URL-encode it; many clients do not).
        4 => format!(
            "{head}{}",
            b64.replace("%2B", "+")
                .replace("%2F", "/")
                .replace("%3D", "=")
        ),
        5 => format!("{head}{}", "QUFB".repeat(1 + rng.below(4000))),
        6 => format!(
            "{head}{b64}{}",
            ["/", "?x=1", "#f", "%", ";a=b"][rng.below(5)]
        ),
        _ => head.to_string(),
    };
    let malformed = has_bad_escape(&out);
    (out, malformed)
}

/// Whether `path` has a `%` not followed by two hex digits.
fn has_bad_escape(path: &str) -> bool {
    let b = path.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// HTTP framing oddities around an OCSP body, each with its kind name. The kinds in
/// [`MUST_REJECT`] break RFC 9112 rules a server must answer 400.
fn odd_framing(body: &[u8], rng: &mut SplitMix64) -> (&'static str, Vec<u8>) {
    let head = "POST /ocsp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    let ct = "Content-Type: application/ocsp-request\r\n";
    let n = body.len();
    let (kind, headers) = match rng.below(9) {
        0 => (
            "framing-chunked",
            format!("{head}{ct}Transfer-Encoding: chunked\r\n\r\n{n:x}\r\n"),
        ),
        1 => (
            "framing-bad-chunk-size",
            format!("{head}{ct}Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ),
        2 => (
            "framing-two-lengths",
            format!(
                "{head}{ct}Content-Length: {n}\r\nContent-Length: {}\r\n\r\n",
                n + 1
            ),
        ),
        3 => (
            "framing-negative-length",
            format!("{head}{ct}Content-Length: -1\r\n\r\n"),
        ),
        4 => (
            "framing-huge-length",
            format!("{head}{ct}Content-Length: 99999999999999999999\r\n\r\n"),
        ),
        5 => (
            "framing-text-plain",
            format!("{head}Content-Type: text/plain\r\nContent-Length: {n}\r\n\r\n"),
        ),
        6 => ("framing-no-length", format!("{head}{ct}\r\n")),
        7 => (
            "framing-nul-in-header",
            format!("{head}{ct}X-A: \u{0}\r\nContent-Length: {n}\r\n\r\n"),
        ),
        _ => (
            "framing-space-before-colon",
            format!("POST /ocsp HTTP/1.0\r\n{ct}Content-Length : {n}\r\n\r\n"),
        ),
    };
    let mut r = headers.into_bytes();
    r.extend_from_slice(body);
    if kind == "framing-chunked" {
        r.extend_from_slice(b"\r\n0\r\n\r\n");
    }
    (kind, r)
}

/// Framing kinds that RFC 9112 says a server must refuse with 400: differing Content-Lengths
/// (§6.3), an invalid Content-Length (§6.3), whitespace between a field name and its colon
/// (§5.1), and a NUL in a field value (RFC 9110 §5.5).
const MUST_REJECT: &[&str] = &[
    "framing-two-lengths",
    "framing-negative-length",
    "framing-nul-in-header",
    "framing-space-before-colon",
];

/// The slow clients, each kept open until the daemon closes it or the limit passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slow {
    /// Connects and sends nothing.
    Silent,
    /// Sends part of the headers, then nothing.
    PartialHeaders,
    /// Sends headers declaring 69 body bytes and 10 of them.
    PartialBody,
    /// Sends a request's headers one byte a second.
    TrickleHeaders,
    /// Sends full headers, then the body one byte a second.
    TrickleBody,
    /// Sends one complete keep-alive request, reads the answer, then sends nothing.
    IdleKeepAlive,
}

/// Seconds until the daemon closed the connection, or `None` when it was still open at `limit`.
fn slow_client(addr: SocketAddr, kind: Slow, body: &[u8], limit: Duration) -> Option<f64> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    let headers = format!(
        "POST /ocsp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/ocsp-request\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let closed = |s: &mut TcpStream, wait: Duration| -> bool {
        let _ = s.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        let mut b = [0u8; 512];
        loop {
            match s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue, // an answer (408, 400): the close follows
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false
                }
                Err(_) => return true,
            }
        }
    };
    let trickle = |s: &mut TcpStream, bytes: &[u8]| -> bool {
        for b in bytes {
            if s.write_all(&[*b]).is_err() || closed(s, Duration::from_secs(1)) {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
        }
        false
    };
    let done = match kind {
        Slow::Silent => false,
        Slow::PartialHeaders => s.write_all(&headers.as_bytes()[..30]).is_err(),
        Slow::PartialBody => {
            s.write_all(headers.as_bytes()).is_err()
                || s.write_all(&body[..10.min(body.len())]).is_err()
        }
        Slow::TrickleHeaders => trickle(&mut s, headers.as_bytes()),
        Slow::TrickleBody => s.write_all(headers.as_bytes()).is_err() || trickle(&mut s, body),
        Slow::IdleKeepAlive => {
            s.write_all(headers.as_bytes()).is_err() || s.write_all(body).is_err()
        }
    };
    if done {
        return Some(start.elapsed().as_secs_f64());
    }
    let left = limit.saturating_sub(start.elapsed());
    closed(&mut s, left).then(|| start.elapsed().as_secs_f64())
}

/// What [`silent_flood`] saw.
struct Flood {
    tried: usize,
    open: usize,
    fds_before: usize,
    fds_during: usize,
    /// The daemon's soft RLIMIT_NOFILE: past it, accept fails and nobody is served.
    limit: String,
    valid: Outcome,
}

/// Opens `n` connections that send nothing, all at once, and checks what the daemon does with
/// them (a cap on connections per listener and per address would refuse or close most) and
/// whether a valid request is still answered meanwhile.
fn silent_flood(target: &Target, n: usize, hang: Duration, valid: &[u8]) -> Flood {
    let fds_before = target.fds();
    let mut conns: Vec<TcpStream> = (0..n)
        .filter_map(|_| TcpStream::connect_timeout(&target.addr, Duration::from_secs(2)).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    conns.retain(|s| {
        let _ = s.set_nonblocking(true);
        let mut b = [0u8; 1];
        // Still open: nothing to read yet (WouldBlock); closed: Ok(0) or an error.
        matches!((&*s).read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock)
    });
    let fds_during = target.fds();
    let limit = std::fs::read_to_string(format!("/proc/{}/limits", target.child.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        .unwrap_or_default();
    let valid = exchange(target.addr, valid, hang);
    Flood {
        tried: n,
        open: conns.len(),
        fds_before,
        fds_during,
        limit,
        valid,
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/fuzz")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_none_or(|x| x != "md"))
        .collect();
    files.sort();
    files.iter().map(|p| read(p)).collect()
}

/// `pkid init`, rate limit off (a flood of 429s would hide every other answer), one issued
/// certificate; returns the issuer's CertID hashes and the OCSP seeds (for the issued serial and an unknown one, with and
/// without nonce, SHA-1 and the corpus's SHA-256 CertIDs).
fn prepare(data: &Path) -> (Vec<Vec<u8>>, pkid_protocols::ocsp::IssuerHashes) {
    pkid(data, &["init"]);
    let conf_path = data.join("pkid.toml");
    let conf = std::fs::read_to_string(&conf_path).unwrap_or_default();
    let conf = conf.replace("rate_limit_per_second = 1000", "rate_limit_per_second = 0");
    std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("pkid.toml: {e}"));
    let csr = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/fuzz/csr/rsa2048.pem");
    let csr = csr.to_string_lossy().into_owned();
    let pem = pkid(
        data,
        &["cert", "issue", "--csr", &csr, "--profile", "tls-client"],
    );
    let der = pkid_protocols::x509::pem_or_der(&pem, &["CERTIFICATE"])
        .unwrap_or_else(|e| panic!("issued certificate: {e}"));
    let leaf = pkid_protocols::x509::parse_certificate(&der).unwrap_or_else(|e| panic!("{e}"));
    let mut serial = [0u8; 16];
    let octets = leaf.tbs_certificate.serial_number.as_bytes();
    let octets = &octets[octets.len().saturating_sub(16)..];
    serial[16 - octets.len()..].copy_from_slice(octets);
    let serial = u128::from_be_bytes(serial);
    let issuing = read(&data.join("certs/issuing.crt"));
    let issuing = pkid_protocols::x509::pem_or_der(&issuing, &["CERTIFICATE"])
        .and_then(|d| pkid_protocols::x509::parse_certificate(&d))
        .unwrap_or_else(|e| panic!("issuing certificate: {e}"));
    let hashes = pkid_protocols::ocsp::IssuerHashes::of(&issuing).unwrap_or_else(|e| panic!("{e}"));
    let mut seeds = vec![
        requests::request(&hashes, serial, None),
        requests::request(&hashes, serial, Some(&[7; 16])),
        requests::request(&hashes, serial ^ 0x5555, None),
        requests::request(&hashes, serial ^ 0x5555, Some(&[9; 32])),
    ];
    seeds.extend(corpus("ocsp_request"));
    (seeds, hashes)
}

/// Whether an outcome is worth showing the request for: a 5xx, a reset, a hang, a silent
/// close, a malformed escape answered as anything but malformedRequest (OCSP status 1), or a
/// framing error RFC 9112 says to refuse answered as anything but 400.
fn is_finding(kind: &str, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Status(s) => *s >= 500 || (MUST_REJECT.contains(&kind) && *s != 400),
        Outcome::Answered(v) => {
            (kind == "ocsp-get-bad-escape" && *v != 1) || MUST_REJECT.contains(&kind)
        }
        Outcome::Reset | Outcome::Hang | Outcome::ClosedSilently | Outcome::Io(_) => true,
        Outcome::Refused => false,
    }
}

/// Counts by request kind and outcome.
type Tally = BTreeMap<(&'static str, Outcome), u64>;

fn main() {
    let args = parse_args();
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
    let data = work.path().join("data");
    let (ocsp_seeds, hashes) = prepare(&data);
    let tsa_seeds = corpus("tsp_request");
    let mut target = Target::start(&data);
    let addr = target.addr;
    let hang = Duration::from_secs(args.hang_secs);
    println!(
        "pkid fuzz: {} on {addr}, {} requests or {} s, seed {}",
        pkid_binary().display(),
        args.requests,
        args.seconds,
        args.seed
    );

    // Warm up (first signatures, caches) so the RSS baseline is not start-up growth.
    let valid = ocsp_post(&ocsp_seeds[0]);
    for _ in 0..200 {
        let _ = exchange(addr, &valid, hang);
    }
    let rss_before = target.rss_kib("VmRSS:");
    let log_lines_before = target.log.lines.load(Ordering::Relaxed);
    let log_bytes_before = target.log.bytes.load(Ordering::Relaxed);
    let levels_before = target.log.levels();

    let slow_limit = Duration::from_secs(args.slow_secs);
    let slow_body = ocsp_seeds[0].clone();
    let slow: Vec<_> = [
        Slow::Silent,
        Slow::PartialHeaders,
        Slow::PartialBody,
        Slow::TrickleHeaders,
        Slow::TrickleBody,
        Slow::IdleKeepAlive,
    ]
    .into_iter()
    .flat_map(|k| std::iter::repeat_n(k, args.slow))
    .map(|k| {
        let body = slow_body.clone();
        (
            k,
            std::thread::spawn(move || slow_client(addr, k, &body, slow_limit)),
        )
    })
    .collect();

    let mut rng = SplitMix64::new(args.seed);
    let mut tally = Tally::new();
    let mut examples: BTreeMap<(&'static str, Outcome), Vec<u8>> = BTreeMap::new();
    let mut exit = None;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let mut sent = 0u64;
    while sent < args.requests && Instant::now() < deadline {
        let (kind, request) = match rng.below(100) {
            0..=27 => (
                "ocsp-post",
                ocsp_post(&mutate::next_case(&ocsp_seeds, &mut rng).input),
            ),
            28..=45 => {
                let c = mutate::next_case(&ocsp_seeds, &mut rng);
                ("ocsp-get", get(&requests::get_path(&c.input)))
            }
            46..=59 => {
                let seed = &ocsp_seeds[rng.below(ocsp_seeds.len())];
                let (path, malformed) = odd_path(&requests::get_path(seed), &mut rng);
                let kind = if malformed {
                    "ocsp-get-bad-escape"
                } else {
                    "ocsp-get-path"
                };
                (kind, get(&path))
            }
            60..=82 => {
                let c = mutate::next_case(&tsa_seeds, &mut rng);
                let body = post("/tsa", "application/timestamp-query", &c.input);
                ("tsa-post", body)
            }
            83..=90 => {
                let c = mutate::next_case(&ocsp_seeds, &mut rng);
                odd_framing(&c.input, &mut rng)
            }
            // Valid, nonce-less requests for never-issued serials: each answer is signed and
            // may be cached, so this is what shows memory growth per unknown serial.
            91..=98 => {
                let serial = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
                let der = requests::request(&hashes, serial >> 1, None);
                ("ocsp-unknown-serial", ocsp_post(&der))
            }
            _ => ("valid-ocsp", valid.clone()),
        };
        let outcome = exchange(addr, &request, hang);
        let refused = outcome == Outcome::Refused;
        if is_finding(kind, &outcome) && examples.len() < 20 {
            examples.entry((kind, outcome.clone())).or_insert(request);
        }
        *tally.entry((kind, outcome)).or_default() += 1;
        sent += 1;
        if refused || sent % 256 == 0 {
            if let Some(status) = target.exited() {
                exit = Some(status);
                break;
            }
        }
    }
    let fuzz_secs = start.elapsed().as_secs_f64();
    let rss_after = target.rss_kib("VmRSS:");
    let hwm = target.rss_kib("VmHWM:");
    let lines = target.log.lines.load(Ordering::Relaxed) - log_lines_before;
    let bytes = target.log.bytes.load(Ordering::Relaxed) - log_bytes_before;
    let levels: Vec<String> = target
        .log
        .levels()
        .iter()
        .zip(levels_before)
        .zip(LogVolume::LEVELS)
        .map(|((after, before), name)| format!("{name} {}", after - before))
        .collect();

    let mut slow_results: BTreeMap<Slow, (u64, u64, f64)> = BTreeMap::new();
    for (kind, handle) in slow {
        let r = handle.join().unwrap_or(None);
        let e = slow_results.entry(kind).or_insert((0, 0, 0.0));
        match r {
            Some(secs) => {
                e.0 += 1;
                e.2 = e.2.max(secs);
            }
            None => e.1 += 1,
        }
    }
    let flood =
        (args.flood > 0 && exit.is_none()).then(|| silent_flood(&target, args.flood, hang, &valid));
    if exit.is_none() {
        exit = target.exited();
    }

    // Report.
    println!("\n{sent} requests in {fuzz_secs:.1} s\n");
    println!("{:<26} {:<18} {:>8}", "request", "outcome", "count");
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for ((kind, outcome), n) in &tally {
        let label = match outcome {
            Outcome::Status(s) => format!("HTTP {s}"),
            Outcome::Answered(v) if kind.starts_with("tsa") => format!("200 PKIStatus {v}"),
            Outcome::Answered(v) => format!("200 OCSP status {v}"),
            other => format!("{other:?}"),
        };
        println!("{kind:<26} {label:<18} {n:>8}");
        let class = match outcome {
            Outcome::Status(s) if *s >= 500 => "5xx",
            Outcome::Status(_) | Outcome::Answered(_) => "answered",
            Outcome::Reset => "reset",
            Outcome::Hang => "hang",
            Outcome::ClosedSilently => "closed-without-answer",
            Outcome::Refused => "refused",
            Outcome::Io(_) => "io-error",
        };
        *totals.entry(class).or_default() += n;
    }
    println!();
    for class in [
        "answered",
        "5xx",
        "reset",
        "hang",
        "closed-without-answer",
        "refused",
        "io-error",
    ] {
        println!("{class:<22} {:>8}", totals.get(class).copied().unwrap_or(0));
    }
    println!("\nslow connections (limit {} s):", args.slow_secs);
    for (kind, (closed, open, max)) in &slow_results {
        println!(
            "  {kind:<16?} closed by pkid {closed} (latest after {max:.1} s), still open {open}"
        );
    }
    if let Some(f) = &flood {
        println!(
            "\nsilent flood: {} of {} connections accepted and still open after 2 s \
             (pkid fds {} -> {}, limit {}); a valid request meanwhile: {:?}",
            f.open, f.tried, f.fds_before, f.fds_during, f.limit, f.valid
        );
    }
    let panics = target.log.panics.load(Ordering::Relaxed);
    println!(
        "\ndaemon: RSS {} KiB -> {} KiB ({:+} KiB, peak {} KiB), panics {panics}, exit {}",
        rss_before,
        rss_after,
        rss_after as i64 - rss_before as i64,
        hwm,
        exit.map_or("none (still running)".to_string(), |s| s.to_string())
    );
    if let Ok(lines) = target.log.panic_lines.lock() {
        for l in lines.iter() {
            println!("  {l}");
        }
    }
    println!(
        "log: {lines} lines ({}), {bytes} bytes during the fuzzing ({:.2} lines per request)",
        levels.join(", "),
        lines as f64 / sent.max(1) as f64
    );
    if let Ok(last) = target.log.last_lines.lock() {
        for l in last.iter() {
            println!("  {l}");
        }
    }
    if !examples.is_empty() {
        println!("\nfirst request of each finding (escaped, at most 300 bytes):");
        for ((kind, outcome), request) in &examples {
            let shown: String = request
                .iter()
                .take(300)
                .flat_map(|b| std::ascii::escape_default(*b))
                .map(char::from)
                .collect();
            println!("  {kind} -> {outcome:?}: {shown}");
        }
    }
    let fives = totals.get("5xx").copied().unwrap_or(0);
    drop(target);
    if fives > 0 || panics > 0 || exit.is_some() {
        println!("\nFAIL: 5xx answers, a panic or a daemon exit");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server on loopback that reads a little, then runs `answer`.
    fn serve_once(answer: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                answer(s);
            }
        });
        addr
    }

    #[test]
    fn a_5xx_is_told_apart_from_an_ocsp_answer() {
        let addr = serve_once(|mut s| {
            let _ = s.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
        });
        let got = exchange(addr, &get("/x"), Duration::from_secs(5));
        assert_eq!(got, Outcome::Status(500));
        assert!(is_finding("ocsp-post", &got));

        // OCSPResponse { responseStatus malformedRequest (1) }
        let addr = serve_once(|mut s| {
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n\x30\x03\x0a\x01\x01");
        });
        let got = exchange(addr, &get("/x"), Duration::from_secs(5));
        assert_eq!(got, Outcome::Answered(1));
        assert!(!is_finding("ocsp-get-bad-escape", &got));
        assert!(is_finding("ocsp-get-bad-escape", &Outcome::Answered(0)));
    }

    #[test]
    fn silence_is_a_hang_and_a_close_without_answer_is_counted() {
        let addr = serve_once(|s| {
            std::thread::sleep(Duration::from_secs(3));
            drop(s);
        });
        assert_eq!(
            exchange(addr, &get("/x"), Duration::from_secs(1)),
            Outcome::Hang
        );
        let addr = serve_once(drop);
        assert!(matches!(
            exchange(addr, &get("/x"), Duration::from_secs(5)),
            Outcome::ClosedSilently | Outcome::Reset
        ));
    }

    #[test]
    fn bad_escapes_are_recognised() {
        for bad in [
            "/ocsp/a%+f",
            "/ocsp/a%2",
            "/ocsp/%ZZ",
            "/ocsp/a%",
            "/ocsp/%u002F",
        ] {
            assert!(has_bad_escape(bad), "{bad}");
        }
        for good in ["/ocsp/a%2B", "/ocsp/%2f%3D", "/ocsp/abc"] {
            assert!(!has_bad_escape(good), "{good}");
        }
    }

    #[test]
    fn the_tsa_status_is_read_from_a_time_stamp_resp() {
        // TimeStampResp { status PKIStatusInfo { status rejection (2) } }
        assert_eq!(
            first_status_field(&[0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02]),
            Some(2)
        );
        assert_eq!(first_status_field(b"not der"), None);
    }
}
