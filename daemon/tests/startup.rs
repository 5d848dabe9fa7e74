//! A stop request (SIGTERM) at any point of `pkid serve`'s start-up is a graceful exit 0, and
//! an initialisation it interrupts is either completed or never begun: a supervisor that stops
//! a daemon still starting must not leave a half-made CA behind.
//!
//! ```text
//!  spawn `pkid serve` on an empty directory ─▶ SIGTERM at point P ─▶ exit 0 within a bound
//!     P = as soon as SIGTERM can be caught │ after the first log line │ while a large store is indexed
//!  then: the directory is empty, or a complete CA that a second `pkid serve` serves
//! ```

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest an interrupted start-up may take to exit: the step in progress (an initialisation,
/// an index build) finishes first, so this is start-up time on a loaded machine, not a grace.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// `pkid serve` on loopback ports with stderr piped, not waited for.
fn spawn_serve(data: &Path) -> Child {
    pkid_command(data)
        .args(["serve", "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pkid serve")
}

/// Polls `/proc/PID/status` until the process catches SIGTERM (bit 15 of `SigCgt`): the first
/// instant a stop can be anything but the kernel's default action. Before it — between `exec`
/// and the handlers — no process can answer a signal, and none of ours has touched the disk.
fn wait_until_sigterm_is_caught(child: &mut Child) {
    const SIGTERM_BIT: u64 = 1 << (15 - 1);
    let status = format!("/proc/{}/status", child.id());
    let caught = poll(STARTUP_TIMEOUT, || {
        std::fs::read_to_string(&status)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("SigCgt:"))
                    .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            })
            .is_some_and(|mask| mask & SIGTERM_BIT != 0)
    });
    assert!(caught, "pkid serve never installed a SIGTERM handler");
}

fn sigterm(child: &Child) {
    let out = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .output()
        .expect("kill(1)");
    assert_success(&out, "kill -TERM");
}

/// Sends every stderr line to the returned channel, for as long as the child writes.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits (bounded) for the child to exit; kills it and panics if it does not.
fn wait_exit(child: &mut Child, logs: &mpsc::Receiver<String>) -> (ExitStatus, String) {
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "pkid serve did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                drain(logs)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, drain(logs))
}

fn drain(logs: &mpsc::Receiver<String>) -> String {
    // The reader thread ends at EOF (the child has exited), so this terminates.
    let mut all = String::new();
    while let Ok(line) = logs.recv_timeout(Duration::from_secs(5)) {
        all.push_str(&line);
        all.push('\n');
    }
    all
}

/// The data directory is empty, or it holds a CA complete enough for a second `pkid serve` to
/// come up and serve the root certificate it made.
fn assert_nothing_or_complete(data: &Path, log: &str) {
    let entries: Vec<_> = std::fs::read_dir(data)
        .expect("read data dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    if entries.is_empty() {
        return;
    }
    let listed = pkid(data, &["ca", "list"]);
    assert!(
        listed.status.success() && lossy(&listed.stdout).contains("root"),
        "stopped start-up left a directory that is not a complete CA: {entries:?}\n{}\nserve log:\n{log}",
        lossy(&listed.stderr)
    );
    let mut second = Daemon::start(data);
    assert_eq!(get(&second.http_url("/readyz")).status, 200);
    assert!(
        !second.logs().contains("initialising"),
        "the second start re-initialised: {}",
        second.logs()
    );
    second.sigterm();
    assert!(second.wait().success());
}

/// Sends SIGTERM, waits for the exit and checks it: exit 0, the stop handled as one during
/// start-up (or, if start-up won the race on a slow machine, as a normal shutdown), and the
/// directory empty or complete. `so_far` is what the caller already read from the log.
fn stop_and_check(child: &mut Child, logs: &mpsc::Receiver<String>, so_far: &str, data: &Path) {
    sigterm(child);
    let (status, rest) = wait_exit(child, logs);
    let log = format!("{so_far}{rest}");
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM during start-up must exit 0 (got {status}); log:\n{log}"
    );
    assert!(
        log.contains("stop requested during start-up") || log.contains("shutting down"),
        "{log}"
    );
    assert_nothing_or_complete(data, &log);
}

#[test]
fn sigterm_as_soon_as_it_can_be_caught_exits_zero_and_leaves_no_half_initialised_directory() {
    // Several rounds: each lands at a slightly different point of the first milliseconds
    // after the handlers are in (reading the configuration, starting the initialisation).
    for round in 0..3 {
        let dir = tempdir();
        let data = dir.path();
        let mut child = spawn_serve(data);
        wait_until_sigterm_is_caught(&mut child);
        let logs = stderr_lines(&mut child);
        stop_and_check(&mut child, &logs, &format!("round {round}\n"), data);
    }
}

#[test]
fn sigterm_after_the_first_log_line_exits_zero_once_initialisation_is_complete() {
    let dir = tempdir();
    let data = dir.path();
    let mut child = spawn_serve(data);
    let logs = stderr_lines(&mut child);
    let first = logs
        .recv_timeout(STARTUP_TIMEOUT)
        .expect("pkid serve logs a first line");
    stop_and_check(&mut child, &logs, &format!("{first}\n"), data);
}

/// Adds `n` valid certificate rows for the issuing CA straight into the store, so that the
/// revocation index takes a noticeable time to build (300,000 rows: most of a second in a
/// debug build). Their bytes are placeholders: start-up reads serials and statuses only.
fn bulk_certificates(data: &Path, n: u32) {
    let db = rusqlite::Connection::open(data.join("pkid.db")).expect("open the store");
    db.execute(
        "INSERT INTO certificates (serial, issuer, subject, profile, not_before, not_after, status, tbs, der, created_at, updated_at)
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         SELECT printf('7f%030x', i), 'issuing', 'CN=bulk', 'person', 0, 4102444800, 'valid', x'00', x'00', 0, 0 FROM n",
        [n],
    )
    .expect("insert the bulk rows");
}

#[test]
fn sigterm_while_a_large_store_is_indexed_exits_zero_and_the_directory_serves_again() {
    let dir = init(&[]);
    let data = dir.path();
    bulk_certificates(data, 300_000);
    let mut child = spawn_serve(data);
    let logs = stderr_lines(&mut child);
    // The TSA's serial reservation is the step just before the index is built.
    let mut before = String::new();
    loop {
        let line = logs
            .recv_timeout(STARTUP_TIMEOUT)
            .unwrap_or_else(|_| panic!("no index build in sight; log:\n{before}"));
        before.push_str(&line);
        before.push('\n');
        if line.contains("reserved timestamp serial numbers") {
            break;
        }
    }
    // Normally the stop lands in the index build (most of a second).
    stop_and_check(&mut child, &logs, &before, data);
}
