//! Connection hygiene against a real `pkid serve`, with raw `std::net::TcpStream` clients: a
//! connection that sends nothing, goes quiet between requests or stops mid-body is closed
//! after its timeout, and one client address cannot hold more than its share of connections.
//!
//! ```text
//!  silent TCP / TLS / HTTP/2 preface only ─▶ closed after server.idle_timeout_secs
//!  keep-alive, quiet after an answer        ─▶ closed after server.idle_timeout_secs
//!  headers + part of the body, then quiet   ─▶ 408 (or closed) after server.body_timeout_secs
//!  N+1th connection from one address        ─▶ closed at accept; freed when one of N closes
//! ```
//!
//! The timeouts are set to one second here; every wait polls for the close with a generous
//! bound (the load of a 2-core CI machine never turns a one-second timeout into twenty).

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a test waits for a close it expects after a one-second timeout.
const CLOSE_BOUND: Duration = Duration::from_secs(20);

/// An idle timeout of one second, and a header timeout longer than [`CLOSE_BOUND`], so only the
/// idle timeout can close a quiet connection within the bound.
const QUIET: &str = "idle_timeout_secs = 1\nheader_timeout_secs = 30\n";

/// A data directory whose `[server]` section is `server` over the defaults.
fn data_dir_with(server: &str) -> tempfile::TempDir {
    let dir = init(&[]);
    std::fs::write(dir.path().join("pkid.toml"), format!("[server]\n{server}")).expect("write");
    dir
}

/// Reads until the peer closes (EOF or reset) and returns what arrived, or panics if the
/// connection is still open after `bound`.
fn read_until_closed(stream: &mut TcpStream, bound: Duration) -> Vec<u8> {
    let deadline = Instant::now() + bound;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "still open after {bound:?}; received {:?}",
            lossy(&got)
        );
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return got
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Sends `GET path` on a keep-alive connection and returns the head and body of the answer
/// (read up to its Content-Length).
fn get_on(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("write request");
    stream.set_read_timeout(Some(CLOSE_BOUND)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        let n = stream.read(&mut buf).expect("read answer");
        assert!(n > 0, "closed before the answer: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

fn connect(daemon: &Daemon) -> TcpStream {
    TcpStream::connect(daemon.http).expect("connect")
}

#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout_on_both_listeners() {
    let dir = data_dir_with(QUIET);
    let daemon = Daemon::start(dir.path());
    for addr in [daemon.http, daemon.https] {
        let mut silent = TcpStream::connect(addr).expect("connect");
        let started = Instant::now();
        let got = read_until_closed(&mut silent, CLOSE_BOUND);
        assert!(got.is_empty(), "{addr}: {:?}", lossy(&got));
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{addr}: closed before the timeout"
        );
    }
    // Nothing else was disturbed: a normal request still succeeds.
    assert_eq!(get(&daemon.http_url("/healthz")).status, 200);
}

#[test]
fn a_keep_alive_connection_serves_requests_then_is_closed_when_quiet() {
    let dir = data_dir_with(QUIET);
    let daemon = Daemon::start(dir.path());
    let mut client = connect(&daemon);
    // Requests in quick succession share the connection (normal clients are unaffected).
    for _ in 0..3 {
        let answer = get_on(&mut client, "/healthz");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let got = read_until_closed(&mut client, CLOSE_BOUND);
    assert!(got.is_empty(), "{:?}", lossy(&got));
}

#[test]
fn an_http2_connection_without_streams_is_closed_when_quiet() {
    let dir = data_dir_with(QUIET);
    let daemon = Daemon::start(dir.path());
    let mut client = connect(&daemon);
    // The HTTP/2 connection preface (RFC 9113 §3.4) and an empty SETTINGS frame; no stream.
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .expect("preface");
    let got = read_until_closed(&mut client, CLOSE_BOUND);
    // The server's SETTINGS frame (type 4) came first: this was served as HTTP/2.
    assert!(got.len() >= 9 && got[3] == 4, "{got:?}");
}

/// Writes `head` a byte every `pause` until the peer closes; returns how long that took from
/// the first byte and how many bytes went out.
fn trickle_until_closed(stream: &mut TcpStream, head: &[u8], pause: Duration) -> (Duration, usize) {
    let started = Instant::now();
    for (sent, byte) in head.iter().cycle().enumerate() {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            return (started.elapsed(), sent);
        }
        assert!(
            started.elapsed() < CLOSE_BOUND,
            "still open after {CLOSE_BOUND:?} of a trickled head"
        );
        std::thread::sleep(pause);
    }
    unreachable!("cycle never ends")
}

#[test]
fn a_head_trickled_byte_by_byte_is_closed_after_the_header_timeout_even_after_a_request() {
    // The idle timeout is long: only the header timeout can close these connections.
    let dir = data_dir_with("idle_timeout_secs = 30\nheader_timeout_secs = 2\n");
    let daemon = Daemon::start(dir.path());
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    // A fresh connection, and one that has been answered once (keep-alive).
    for answered_first in [false, true] {
        let mut client = connect(&daemon);
        if answered_first {
            let answer = get_on(&mut client, "/healthz");
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        let (took, sent) = trickle_until_closed(&mut client, head, Duration::from_millis(100));
        assert!(
            took >= Duration::from_millis(1900),
            "closed {took:?} into the head (after {sent} bytes), before the header timeout"
        );
        assert!(
            took <= Duration::from_secs(6),
            "closed only {took:?} into the head, long after the 2 s header timeout"
        );
    }
    // A client that sends its head in one piece is served as before.
    assert_eq!(get(&daemon.http_url("/healthz")).status, 200);
}

#[test]
fn a_body_that_stops_midway_is_answered_408_and_closed_after_the_body_timeout() {
    let dir = data_dir_with("body_timeout_secs = 1\n");
    let daemon = Daemon::start(dir.path());
    let mut client = connect(&daemon);
    client
        .write_all(
            b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\n\
              Content-Length: 69\r\n\r\n0123456789",
        )
        .expect("write");
    let got = lossy(&read_until_closed(&mut client, CLOSE_BOUND));
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    let metrics = get(&daemon.http_url("/metrics")).text();
    assert!(
        metrics.contains("status=\"408\""),
        "the timed-out body is counted: {metrics}"
    );
}

#[test]
fn the_per_client_cap_refuses_the_next_connection_and_frees_up_when_one_closes() {
    let dir = data_dir_with("max_connections_per_client = 3\n");
    let daemon = Daemon::start(dir.path());
    let mut open: Vec<TcpStream> = (0..3).map(|_| connect(&daemon)).collect();
    // The connections are accepted in order, so the fourth finds three counted.
    let mut fourth = connect(&daemon);
    let got = read_until_closed(&mut fourth, CLOSE_BOUND);
    assert!(
        got.is_empty(),
        "refused without an answer: {:?}",
        lossy(&got)
    );
    // The three admitted connections are served as usual.
    for c in &mut open {
        let answer = get_on(c, "/healthz");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // Closing one frees its place (once the daemon has seen the close).
    drop(open.pop());
    let served = poll(CLOSE_BOUND, || {
        let mut c = connect(&daemon);
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let got = lossy(&read_until_closed(&mut c, CLOSE_BOUND));
        if !got.starts_with("HTTP/1.1 200") {
            return false;
        }
        assert!(
            got.contains("pkid_connections_refused_total{listener=\"http\",reason=\"per_client\"}"),
            "{got}"
        );
        true
    });
    assert!(served, "a place was never freed; log:\n{}", daemon.logs());
    assert!(
        daemon.logs().contains("connections refused"),
        "{}",
        daemon.logs()
    );
}

#[test]
fn the_documented_defaults_bound_every_wait_within_thirty_seconds() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/pkid.toml"))
            .expect("conf/pkid.toml");
    for key in [
        "idle_timeout_secs",
        "body_timeout_secs",
        "header_timeout_secs",
    ] {
        let value: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} is documented"))
            .trim()
            .parse()
            .expect("a number");
        assert!((1..=30).contains(&value), "{key} = {value}");
    }
}

/// The rate limit's key is the address of the connection a request came on (held by the
/// connection's service, not by each request): the OCSP fast path and the router spend one
/// budget per address, and another address (`127.0.0.2`, also loopback) has its own.
#[test]
fn the_rate_limit_keys_on_each_connections_client_address_on_both_paths() {
    let dir = data_dir_with("rate_limit_per_second = 1\nrate_limit_burst = 3\n");
    let daemon = Daemon::start(dir.path());
    let statuses = |from: &str, paths: &[&str]| -> Vec<String> {
        let urls: Vec<String> = paths.iter().map(|p| daemon.http_url(p)).collect();
        let mut args = vec!["-s", "--max-time", CURL_MAX_SECS, "--interface", from];
        args.extend(["-w", "%{http_code}\n"]);
        for url in &urls {
            args.extend(["-o", "/dev/null", url.as_str()]);
        }
        lossy(&curl(&args).stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    // One curl, one connection: three OCSP GETs (the fast path; `AAAA` is not a request, so
    // each is answered malformedRequest with HTTP 200) spend the burst, then both the fast
    // path and a routed probe are refused for the same address.
    let ocsp = "/ocsp/AAAA";
    let first = statuses("127.0.0.1", &[ocsp, ocsp, ocsp, ocsp, "/healthz"]);
    assert_eq!(
        first,
        ["200", "200", "200", "429", "429"],
        "{}",
        daemon.logs()
    );
    let other = statuses("127.0.0.2", &["/healthz", ocsp]);
    assert_eq!(other, ["200", "200"], "another address has its own budget");
}
