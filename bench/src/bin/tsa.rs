//! TSA benchmark: timestamp tokens per second and p50/p99 latency of `POST /tsa` under
//! concurrent loopback load, against the raw signing rate of the same key backend measured in
//! the same run, for the software and the PKCS#11 (SoftHSM2) backends.
//!
//! ```text
//! cargo build --release --workspace && target/release/tsa [seconds-per-round] [connections] [rounds]
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

/// The TSA key and certificate, opened in the benchmark process for the in-process baselines.
struct Key {
    signer: Arc<dyn pkid::keys::Signer>,
    certificate: tsp::TsaCertificate,
    settings: tsp::Settings,
}

fn open_key(data: &Path) -> Key {
    let config = Config::load(data).unwrap_or_else(|e| panic!("{e}"));
    let backend = pkid::datadir::key_backend(&config).unwrap_or_else(|e| panic!("{e}"));
    let signer = backend
        .load(&KeyRole::Tsa)
        .unwrap_or_else(|e| panic!("{e}"));
    let der =
        pkid::datadir::role_certificate(data, &KeyRole::Tsa).unwrap_or_else(|e| panic!("{e}"));
    let certificate =
        tsp::TsaCertificate::new(&der, signer.public_key()).unwrap_or_else(|e| panic!("{e}"));
    Key {
        signer,
        certificate,
        settings: config.tsa.settings.clone(),
    }
}

/// On the calling thread for `duration` each: raw signatures per second of the TSA key, and
/// complete tokens per second built in process by `tsp::issue` (TSTInfo, lint, CMS, the same
/// signature; no HTTP).
fn in_process_rates(key: &Key, duration: Duration) -> (f64, f64) {
    let message = vec![0x31u8; SIGNED_ATTRIBUTES_BYTES];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        key.signer.sign(&message).unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    let raw = n as f64 / start.elapsed().as_secs_f64();
    let accepted = tsp::decide(
        tsp::parse_request(&query(7)).unwrap_or_else(|e| panic!("{e}")),
        &key.settings,
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
            settings: &key.settings,
            certificate: &key.certificate,
            algorithm: key.signer.algorithm(),
            serial: n + 1,
            now,
        };
        let unsigned = tsp::issue(&accepted, &issuance).unwrap_or_else(|e| panic!("{e}"));
        pkid::keys::sign(key.signer.as_ref(), unsigned).unwrap_or_else(|e| panic!("{e}"));
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
    let conf = match pkid_bench::softhsm::init_token(dir) {
        Ok(conf) => conf,
        Err(e) => {
            println!("softhsm2: {e}; skipped");
            return None;
        }
    };
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let config = format!("[keys]\nbackend = \"pkcs11\"\n[keys.pkcs11]\ntoken_label = \"pkid-bench\"\npin_file = \"{}\"\n", dir.join("pin").display());
    Some(Backend {
        name: "pkcs11 (SoftHSM2)",
        config,
    })
}

struct Round {
    raw: f64,
    built: f64,
    tsa: load::LoadReport,
    ceiling: load::LoadReport,
    /// The bare hyper server signing each answer with the TSA's P-256 key (software only).
    signing: Option<load::LoadReport>,
}

/// Starts `bare-hyper --sign KEY` (pinned like the daemon) and returns it with its address.
fn bare_signing_server(key: &Path) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::BufRead;
    let exe = daemon::pkid_binary().with_file_name("bare-hyper");
    let mut child = daemon::server_command(&exe)
        .args(["--addr", "127.0.0.1:0", "--bytes", "2300", "--sign"])
        .arg(key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    let out = child.stdout.take().unwrap_or_else(|| unreachable!());
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("bare-hyper: {e}"));
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("bare-hyper said {line:?}"));
    (child, addr)
}

impl Round {
    fn ratio(&self) -> f64 {
        self.tsa.rps() / self.raw.max(1e-9)
    }
}

/// Runs `rounds` paired measurements (raw signing and in-process tokens on CPU 1, then HTTP load
/// with the generator on CPU 0) and prints every round and the median round. Pairing each load
/// with a baseline taken seconds before it keeps a shared machine's changing load out of the
/// ratio as far as possible.
fn run_backend(
    backend: &Backend,
    dir: &Path,
    seconds: u64,
    connections: usize,
    rounds: usize,
    pinned: bool,
) {
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
    let key = open_key(&data);
    // The daemon inherits CPU 1 from this thread; the load generator runs on CPU 0.
    if pinned {
        pin_current_thread(1);
    }
    let d = daemon::Daemon::start(&data);
    let software_key = data.join("keys/tsa.p8");
    let mut bare = software_key
        .exists()
        .then(|| bare_signing_server(&software_key));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let tsa_requests: Arc<Vec<RequestTemplate>> = Arc::new(
        (0..QUERIES as u64)
            .map(|n| RequestTemplate::post("/tsa", "application/timestamp-query", query(n)))
            .collect(),
    );
    let spec = |requests: Arc<Vec<RequestTemplate>>, secs: u64| LoadSpec {
        addr: d.http,
        connections,
        duration: Duration::from_secs(secs),
        warmup: Duration::from_secs(1),
        keep_alive: true,
        max_requests: u64::MAX,
        requests,
    };
    println!(
        "\n## {} backend, {connections} connections, {rounds} rounds of {seconds} s ({})",
        backend.name,
        if pinned {
            "daemon and baselines on CPU 1, load generator on CPU 0"
        } else {
            "unpinned"
        }
    );
    let before = rt.block_on(scrape(d.http));
    let mut results = Vec::new();
    for i in 0..rounds {
        if pinned {
            pin_current_thread(1);
        }
        let (raw, built) = in_process_rates(&key, Duration::from_millis(1500));
        if pinned {
            pin_current_thread(0);
        }
        let tsa = rt.block_on(load::run(spec(tsa_requests.clone(), seconds)));
        let ceiling = rt.block_on(load::run(spec(
            Arc::new(vec![RequestTemplate::get("/healthz")]),
            2,
        )));
        let signing = bare.as_ref().map(|(_, addr)| {
            let mut spec = spec(tsa_requests.clone(), seconds);
            spec.addr = *addr;
            rt.block_on(load::run(spec))
        });
        let round = Round {
            raw,
            built,
            tsa,
            ceiling,
            signing,
        };
        if let Some(s) = &round.signing {
            println!(
                "round {}: bare hyper signing P-256 {:.0} req/s → POST /tsa {:.2}x of it",
                i + 1,
                s.rps(),
                round.tsa.rps() / s.rps().max(1e-9)
            );
        }
        println!(
            "round {}: raw {:.0} sig/s, in-process {:.0} tok/s, POST /tsa {:.0} tok/s (p50 {} µs, p99 {} µs), /healthz {:.0} req/s → {:.2}x",
            i + 1,
            round.raw,
            round.built,
            round.tsa.rps(),
            round.tsa.p50.as_micros(),
            round.tsa.p99.as_micros(),
            round.ceiling.rps(),
            round.ratio()
        );
        results.push(round);
    }
    let after = rt.block_on(scrape(d.http));
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
    let ok: u64 = results.iter().map(|r| r.tsa.ok).sum();
    assert!(
        issued >= ok,
        "every 2xx counted is a token (issued {issued}, counted {ok})"
    );
    let mut vs_signing: Vec<f64> = results
        .iter()
        .filter_map(|r| Some(r.tsa.rps() / r.signing.as_ref()?.rps().max(1e-9)))
        .collect();
    vs_signing.sort_by(f64::total_cmp);
    if let Some(m) = vs_signing.get(vs_signing.len() / 2) {
        let all: Vec<String> = vs_signing.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "POST /tsa ÷ bare hyper signing P-256: median {m:.2}x (target >= 0.7: {}); rounds (sorted) {}",
            if *m >= 0.7 { "met" } else { "NOT met" },
            all.join(" ")
        );
    }
    results.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
    let m = &results[results.len() / 2];
    println!("median round:");
    report::ratio_line("raw signing, 1 thread", m.raw, "sig/s", "", m.raw);
    report::ratio_line(
        "tsp::issue in process (no HTTP), 1 thread",
        m.built,
        "tok/s",
        "raw signing rate",
        m.raw,
    );
    report::header();
    report::row("GET /healthz (HTTP ceiling, keep-alive)", &m.ceiling, None);
    report::row(
        "POST /tsa (keep-alive)",
        &m.tsa,
        Some(("HTTP ceiling", &m.ceiling)),
    );
    report::ratio_line(
        "tokens/s ÷ raw signatures/s",
        m.tsa.rps(),
        "tok/s",
        "raw signing rate (target ≥ 0.70x)",
        m.raw,
    );
    println!("({issued} tokens issued in the run, 0 rejections)");
    if let Some((mut child, _)) = bare.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(d);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(4);
    let connections: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(32);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5).max(1);
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
    run_backend(&software(), &dir, seconds, connections, rounds, pinned);
    if let Some(hsm) = softhsm(&dir) {
        run_backend(&hsm, &dir, seconds, connections, rounds, pinned);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
