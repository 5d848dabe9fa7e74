//! TSA benchmark: timestamp tokens per second and p50/p99 latency of `POST /tsa` under
//! concurrent loopback load, against the raw signing rate of the same key backend measured in
//! the same run, for the software and the PKCS#11 (SoftHSM2) backends.
//!
//! ```text
//! cargo build --release --workspace && target/release/tsa [seconds] [connections]
//! ```
//!
//! Fairness: on a machine with two or more CPUs the daemon and the raw-signing thread are both
//! pinned to CPU 1 and the load generator to CPU 0 (with `taskset`, which children and new
//! threads inherit), so the ratio compares one core issuing tokens over HTTP with one core doing
//! nothing but signing. Rejections are not tokens: the tokens counted are the daemon's own
//! `pkid_tsa_tokens_issued_total`, and any rejection fails the run.

use pkid::config::Config;
use pkid::keys::KeyRole;
use pkid_bench::load::{self, LoadSpec, RequestTemplate};
use pkid_bench::{daemon, report};
use pkid_protocols::tsp::{self, HashAlgorithm};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes signed per raw signature: the DER of a token's signed attributes is about this long.
const SIGNED_ATTRIBUTES_BYTES: usize = 260;
/// Distinct queries cycled through by the load generator.
const QUERIES: usize = 256;
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Pins the calling thread (and what it later spawns) to `cpu`; false if that is not possible.
fn pin_current_thread(cpu: usize) -> bool {
    let tid = std::fs::read_link("/proc/thread-self").ok().and_then(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
    });
    let Some(tid) = tid else { return false };
    Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid.to_string()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A DER TimeStampReq (v1, SHA-256 imprint of `n`, nonce `n`, certReq), as `openssl ts -query
/// -sha256 -cert` sends.
fn query(n: u64) -> Vec<u8> {
    let hash = HashAlgorithm::Sha256.digest(&n.to_be_bytes());
    let mut inner = vec![
        0x02, 0x01, 0x01, 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03,
        0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
    ];
    inner.extend_from_slice(&hash);
    inner.extend_from_slice(&[0x02, 0x09, 0x01]); // 0x01 first: a positive, minimal INTEGER
    inner.extend_from_slice(&n.to_be_bytes());
    inner.extend_from_slice(&[0x01, 0x01, 0xff]);
    let mut q = vec![0x30, inner.len() as u8];
    q.extend_from_slice(&inner);
    q
}

/// On one thread for `duration` each: raw signatures per second of the TSA key, and complete
/// tokens per second built in process by `tsp::issue` (TSTInfo, lint, CMS, the same signature;
/// no HTTP), for the same key.
fn in_process_rates(data: &Path, duration: Duration) -> (f64, f64) {
    let config = Config::load(data).unwrap_or_else(|e| panic!("{e}"));
    let backend = pkid::datadir::key_backend(&config).unwrap_or_else(|e| panic!("{e}"));
    let signer = backend.load(KeyRole::Tsa).unwrap_or_else(|e| panic!("{e}"));
    let message = vec![0x31u8; SIGNED_ATTRIBUTES_BYTES];
    for _ in 0..50 {
        signer.sign(&message).unwrap_or_else(|e| panic!("{e}"));
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        signer.sign(&message).unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    let raw = n as f64 / start.elapsed().as_secs_f64();
    let der = pkid::datadir::role_certificate(data, KeyRole::Tsa).unwrap_or_else(|e| panic!("{e}"));
    let certificate =
        tsp::TsaCertificate::new(&der, signer.public_key()).unwrap_or_else(|e| panic!("{e}"));
    let settings = config.tsa.settings.clone();
    let accepted = tsp::decide(
        tsp::parse_request(&query(7)).unwrap_or_else(|e| panic!("{e}")),
        &settings,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        let issuance = tsp::Issuance {
            settings: &settings,
            certificate: &certificate,
            signer: signer.as_ref(),
            serial: n + 1,
            now,
        };
        tsp::issue(&accepted, &issuance).unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    (raw, n as f64 / start.elapsed().as_secs_f64())
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|v| v as u64)
        .unwrap_or(0)
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let out = Command::new("curl")
        .args(["-s", &format!("http://{addr}/metrics")])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

struct Backend {
    name: &'static str,
    config: String,
}

fn software() -> Backend {
    Backend {
        name: "software",
        config: String::new(),
    }
}

/// A fresh SoftHSM2 token in `dir`, selected through SOFTHSM2_CONF (inherited by the daemon).
fn softhsm(dir: &Path) -> Option<Backend> {
    if !Path::new(SOFTHSM_MODULE).exists() {
        println!("softhsm2: {SOFTHSM_MODULE} missing (apt-get install softhsm2); skipped");
        return None;
    }
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).ok()?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .ok()?;
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let ok = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "pkid-bench",
            "--so-pin",
            "12345678",
            "--pin",
            "1234",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        println!("softhsm2: could not initialise a token; skipped");
        return None;
    }
    std::fs::write(dir.join("pin"), "1234\n").ok()?;
    let config = format!("[keys]\nbackend = \"pkcs11\"\n[keys.pkcs11]\ntoken_label = \"pkid-bench\"\npin_file = \"{}\"\n", dir.join("pin").display());
    Some(Backend {
        name: "pkcs11 (SoftHSM2)",
        config,
    })
}

fn run_backend(backend: &Backend, dir: &Path, seconds: u64, connections: usize, pinned: bool) {
    let data = dir.join(format!(
        "data-{}",
        backend.name.split(' ').next().unwrap_or("x")
    ));
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    let toml = format!(
        "{}[server]\nrate_limit_per_second = 0\n[log]\nlevel = \"warn\"\n",
        backend.config
    );
    std::fs::write(data.join("pkid.toml"), toml).unwrap_or_else(|e| panic!("{e}"));
    daemon::pkid(&data, &["init"]);

    // The daemon and the raw signer share CPU 1; the load generator gets CPU 0.
    if pinned {
        pin_current_thread(1);
    }
    let (raw, built) = in_process_rates(&data, Duration::from_secs(seconds.div_ceil(2)));
    let d = daemon::Daemon::start(&data);
    if pinned {
        pin_current_thread(0);
    }
    let requests: Vec<RequestTemplate> = (0..QUERIES as u64)
        .map(|n| RequestTemplate::post("/tsa", "application/timestamp-query", query(n)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let before = scrape(d.http).await;
        let spec = LoadSpec {
            addr: d.http,
            connections,
            duration: Duration::from_secs(seconds),
            warmup: Duration::from_secs(2),
            keep_alive: true,
            max_requests: u64::MAX,
            requests: Arc::new(requests),
        };
        let started = Instant::now();
        let r = load::run(spec).await;
        let wall = started.elapsed().as_secs_f64();
        let after = scrape(d.http).await;
        let issued = metric(&after, "pkid_tsa_tokens_issued_total")
            - metric(&before, "pkid_tsa_tokens_issued_total");
        let rejected: u64 = after
            .lines()
            .filter(|l| l.starts_with("pkid_tsa_rejections_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(
            rejected, 0,
            "the TSA rejected requests during the benchmark:\n{after}"
        );
        assert!(
            issued >= r.ok,
            "every 2xx in the window is a token (issued {issued}, ok {})",
            r.ok
        );
        println!(
            "\n## {} backend (TSA key {}), {connections} connections, {seconds} s",
            backend.name,
            if pinned {
                "and daemon on CPU 1, load on CPU 0"
            } else {
                "unpinned"
            }
        );
        // The same daemon's cheapest route, same pinning: the HTTP stack's own ceiling.
        let ceiling = load::run(LoadSpec {
            addr: d.http,
            connections,
            duration: Duration::from_secs(seconds.min(5)),
            warmup: Duration::from_secs(1),
            keep_alive: true,
            max_requests: u64::MAX,
            requests: Arc::new(vec![RequestTemplate::get("/healthz")]),
        })
        .await;
        report::ratio_line("raw signing, 1 thread", raw, "sig/s", "", raw);
        report::ratio_line(
            "tsp::issue in process (no HTTP), 1 thread",
            built,
            "tok/s",
            "raw signing rate",
            raw,
        );
        report::header();
        report::row("GET /healthz (HTTP ceiling, keep-alive)", &ceiling, None);
        report::row(
            "POST /tsa (keep-alive)",
            &r,
            Some(("HTTP ceiling", &ceiling)),
        );
        report::ratio_line(
            "tokens/s ÷ raw signatures/s",
            r.rps(),
            "tok/s",
            "raw signing rate (target ≥ 0.70x)",
            raw,
        );
        println!("(tokens issued over the whole run incl. warm-up: {issued} in {wall:.1} s)");
    });
    drop(d);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let connections: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(32);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pinned = cpus >= 2 && pin_current_thread(0);
    if !pinned {
        println!("not pinning CPUs ({cpus} available, or taskset missing): ratios include the load generator's share");
    }
    let dir = std::env::temp_dir().join(format!("pkid-bench-tsa-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "pkid TSA benchmark: {} ({cpus} CPUs)",
        daemon::pkid_binary().display()
    );
    run_backend(&software(), &dir, seconds, connections, pinned);
    if let Some(hsm) = softhsm(&dir) {
        run_backend(&hsm, &dir, seconds, connections, pinned);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
