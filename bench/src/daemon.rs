//! Launching the real `pkid` binary for a benchmark.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The release `pkid` binary next to this benchmark binary (built by `cargo build --release`).
pub fn pkid_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    dir.join("pkid")
}

/// CPU the servers under test are pinned to (the load generator takes CPU 0: run the bench
/// itself under `taskset -c 0`). Pinning makes every server measured in a run get the same one
/// core, whatever the generator does.
pub const SERVER_CPU: &str = "1";

/// A command for a server under test: `taskset -c 1 PROGRAM` when the machine has a second
/// core and `taskset` (util-linux) is installed, else `PROGRAM` unpinned.
pub fn server_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    // `nproc --all` counts the machine's CPUs even when this process is itself pinned to one
    // (as it is under `taskset -c 0`, where `available_parallelism` reports 1).
    let cpus = Command::new("nproc")
        .arg("--all")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(1);
    let pin = cpus >= 2 && Command::new("taskset").arg("--version").output().is_ok();
    if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", SERVER_CPU]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs `pkid --data DIR ARGS…` to completion, panicking with its stderr on failure.
pub fn pkid(data: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(pkid_binary())
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running pkid: {e}"));
    assert!(
        out.status.success(),
        "pkid {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A running daemon, killed on drop.
pub struct Daemon {
    child: Child,
    /// The HTTP listener's address.
    pub http: SocketAddr,
}

impl Daemon {
    /// Starts `pkid serve` on a free loopback port (HTTPS off) and waits until it listens.
    pub fn start(data: &Path) -> Daemon {
        Self::start_with_env(data, &[])
    }

    /// As [`Daemon::start`], with extra environment variables for the daemon.
    pub fn start_with_env(data: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = server_command(pkid_binary())
            .envs(env.iter().copied())
            .arg("--data")
            .arg(data)
            .args(["serve", "--http", "127.0.0.1:0", "--https", ""])
            .env("RUST_LOG", "warn,pkid::http=info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting pkid: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| unreachable!());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("HTTP listener ready addr=").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            if let Ok(a) = rx.recv_timeout(Duration::from_millis(100)) {
                break a;
            }
            assert!(
                Instant::now() < deadline,
                "pkid did not start listening within 60 s"
            );
        };
        Daemon {
            child,
            http: addr
                .parse()
                .unwrap_or_else(|e| panic!("listener address {addr:?}: {e}")),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
