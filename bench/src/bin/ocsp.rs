//! OCSP benchmark: pkid's responder against the HTTP ceiling and against its peers, in one run.
//!
//! ```text
//! cargo build --release -p pkid -p pkid-bench
//! taskset -c 0 target/release/ocsp [--certs 100000] [--seconds 5] [--connections 64] [--backend software|pkcs11]
//!                     [--index-sizes 1000000,10000000] [--store-sizes 1000000] [--rounds 5]
//!                     [--skip-baselines]
//! ```
//!
//! Everything runs on loopback. Servers under test (pkid and every baseline) are pinned to CPU 1
//! with `taskset`; the bench and its load generators (wrk, the Rust generator) run on CPU 0
//! when the bench is started under `taskset -c 0`. Every target is measured the same way in the
//! same run, and the figures that matter are printed as ratios. The raw signing rate is one
//! thread, i.e. one core — the same core budget the pinned daemon has.

use pkid::index::{Entry, Packed, RevocationIndex};
use pkid::keys::software::SoftwareSigner;
use pkid::keys::Signer;
use pkid_bench::daemon::{pkid, Daemon};
use pkid_bench::load::{self, LoadReport, LoadSpec, RequestTemplate};
use pkid_bench::populate::{self, Synthetic};
use pkid_bench::report;
use pkid_bench::requests;
use pkid_bench::wrk;
use pkid_protocols::ocsp::{IssuerHashes, Responder, Status, Validity};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const OCSP_REQUEST: &str = "application/ocsp-request";

struct Args {
    certs: usize,
    seconds: u64,
    connections: usize,
    sample: usize,
    backend: String,
    index_sizes: Vec<usize>,
    store_sizes: Vec<usize>,
    skip_baselines: bool,
    rounds: usize,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let list = |s: Option<String>, d: &str| -> Vec<usize> {
        s.unwrap_or_else(|| d.to_string())
            .split(',')
            .filter(|x| !x.is_empty())
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    Args {
        certs: get("--certs")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000),
        seconds: get("--seconds").and_then(|v| v.parse().ok()).unwrap_or(5),
        connections: get("--connections")
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        sample: get("--sample")
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000),
        backend: get("--backend").unwrap_or_else(|| "software".into()),
        index_sizes: list(get("--index-sizes"), "1000000,10000000"),
        store_sizes: list(get("--store-sizes"), "1000000"),
        skip_baselines: argv.iter().any(|a| a == "--skip-baselines"),
        rounds: get("--rounds").and_then(|v| v.parse().ok()).unwrap_or(5),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Memory per certificate, build time and lookup time of the index at each size.
fn index_bench(sizes: &[usize]) {
    println!("\n## Revocation index (in process)");
    println!(
        "{:>12} {:>10} {:>12} {:>16} {:>16}",
        "entries", "build ms", "bytes/cert", "hit lookup ns", "miss lookup ns"
    );
    for &n in sizes {
        let t = now();
        let pop = populate::population(n, 10, t);
        let entries: Vec<(u128, Packed)> = pop
            .iter()
            .map(|c| {
                (
                    c.serial,
                    Packed::new(
                        c.revoked_at
                            .map_or(Entry::Good, |at| Entry::Revoked { at, reason: None }),
                    ),
                )
            })
            .collect();
        let keys: Vec<u128> = pop
            .iter()
            .step_by((n / 1_000_000).max(1))
            .map(|c| c.serial)
            .take(1_000_000)
            .collect();
        drop(pop);
        let started = Instant::now();
        let index = RevocationIndex::from_entries(vec![("issuing".into(), entries)], 0);
        let build = started.elapsed();
        let issuer = index.issuer("issuing").unwrap_or_else(|| unreachable!());
        let started = Instant::now();
        let mut found = 0usize;
        for k in &keys {
            found += usize::from(std::hint::black_box(issuer.lookup(*k)).is_some());
        }
        let hit_ns = started.elapsed().as_nanos() as f64 / keys.len() as f64;
        assert_eq!(found, keys.len());
        let started = Instant::now();
        let mut missing = 0usize;
        for k in &keys {
            missing += usize::from(std::hint::black_box(issuer.lookup(k ^ 0x5555)).is_none());
        }
        let miss_ns = started.elapsed().as_nanos() as f64 / keys.len() as f64;
        assert!(missing > keys.len() * 99 / 100);
        println!(
            "{:>12} {:>10} {:>12.1} {:>16.0} {:>16.0}",
            n,
            build.as_millis(),
            index.memory_bytes() as f64 / n as f64,
            hit_ns,
            miss_ns
        );
    }
}

/// Time to build the index from a SQLite store of n certificates (what `pkid serve` does at start).
fn store_startup_bench(sizes: &[usize]) {
    println!("\n## Index start-up from the store");
    println!(
        "{:>12} {:>14} {:>12}",
        "certificates", "populate s", "build s"
    );
    for &n in sizes {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let db = dir.path().join("pkid.db");
        drop(
            pkid::store::sqlite::SqliteStore::open(&db, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("store: {e}")),
        );
        let t = now();
        let started = Instant::now();
        populate::insert(&db, "issuing", &populate::population(n, 10, t), t)
            .unwrap_or_else(|e| panic!("populate: {e}"));
        let populate_s = started.elapsed().as_secs_f64();
        let store = pkid::store::sqlite::SqliteStore::open(&db, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("store: {e}"));
        let started = Instant::now();
        let index =
            RevocationIndex::build(&store, &["issuing"]).unwrap_or_else(|e| panic!("build: {e}"));
        let build_s = started.elapsed().as_secs_f64();
        assert_eq!(index.issuer("issuing").map(|i| i.len()), Some(n));
        println!("{:>12} {:>14.1} {:>12.2}", n, populate_s, build_s);
    }
}

/// Signatures per second on one thread with the same key the responder uses.
fn raw_signing_rate(signer: &dyn Signer, seconds: u64) -> f64 {
    let msg = vec![0x42u8; 250]; // about the size of a ResponseData
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < end {
        for _ in 0..64 {
            std::hint::black_box(signer.sign(&msg).unwrap_or_else(|e| panic!("sign: {e}")));
        }
        n += 64;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn spawn_listening(mut cmd: Command, marker: &str) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| unreachable!());
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(rest) = line.split(marker).nth(1) {
            return (child, rest.trim().to_string());
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{cmd:?} did not print {marker:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("port: {e}"))
}

/// Waits until `child` listens on `port`; panics with its stderr (in `log`) if it exits first.
fn wait_for_port(child: &mut Child, port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "baseline exited ({status}) before listening on {port}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "nothing listening on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until a process's log contains `marker` (without connecting to it).
fn wait_for_log(log: &Path, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(marker)
    {
        assert!(
            Instant::now() < deadline,
            "{} never said {marker:?}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_file(path: &Path) -> Stdio {
    std::fs::File::create(path)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// Picks the round whose pkid/baseline ratio is the median (by pkid's rate when there is no
/// baseline), printing every round's ratio.
fn median_round(
    name: &str,
    mut rounds: Vec<(LoadReport, Option<LoadReport>)>,
) -> (LoadReport, Option<LoadReport>) {
    let ratio = |(p, b): &(LoadReport, Option<LoadReport>)| match b {
        Some(b) if b.ok > 0 => p.rps() / b.rps(),
        _ => p.rps(),
    };
    rounds.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let all: Vec<String> = rounds.iter().map(|r| format!("{:.2}", ratio(r))).collect();
    if rounds.iter().any(|(_, b)| b.is_some()) {
        println!("{name}: per-round ratios (sorted) {}", all.join(" "));
    }
    let mid = rounds.len() / 2;
    rounds.swap_remove(mid)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Bench {
    rt: tokio::runtime::Runtime,
    seconds: u64,
    connections: usize,
}

impl Bench {
    fn run(
        &self,
        addr: SocketAddr,
        keep_alive: bool,
        requests: &Arc<Vec<RequestTemplate>>,
    ) -> LoadReport {
        self.rt.block_on(load::run(LoadSpec {
            addr,
            connections: self.connections,
            duration: Duration::from_secs(self.seconds),
            warmup: Duration::from_secs(1),
            keep_alive,
            max_requests: 50_000_000,
            requests: requests.clone(),
        }))
    }

    /// Measures with the Rust generator, which opens no probe connection: `openssl ocsp -port`
    /// serves one connection at a time and hangs on a connection that sends nothing, as wrk's
    /// initial connect test does. Used for the no-keep-alive comparison on both sides.
    fn run_rust(
        &self,
        addr: SocketAddr,
        keep_alive: bool,
        requests: &Arc<Vec<RequestTemplate>>,
    ) -> LoadReport {
        self.rt.block_on(load::run(LoadSpec {
            addr,
            connections: self.connections,
            duration: Duration::from_secs(self.seconds),
            warmup: Duration::from_secs(1),
            keep_alive,
            max_requests: 50_000_000,
            requests: requests.clone(),
        }))
    }

    /// Sends every request once (fills pkid's response cache).
    fn warm(&self, addr: SocketAddr, requests: &Arc<Vec<RequestTemplate>>) {
        self.rt.block_on(load::run(LoadSpec {
            addr,
            connections: 8,
            duration: Duration::from_secs(600),
            warmup: Duration::ZERO,
            keep_alive: true,
            max_requests: requests.len() as u64,
            requests: requests.clone(),
        }));
    }
}

fn main() {
    let args = parse_args();
    assert!(
        wrk::available(),
        "the HTTP scenarios need wrk: apt-get install wrk"
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("# pkid OCSP benchmark");
    println!(
        "command: {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    println!("cores: {cores}; certificates: {}; 10% revoked; backend: {}; {} s per scenario, {} connections", args.certs, args.backend, args.seconds, args.connections);

    index_bench(&args.index_sizes);
    store_startup_bench(&args.store_sizes);

    // A CA with N certificates.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let data = dir.path().join("data");
    let mut env: Vec<(String, String)> = Vec::new();
    if args.backend == "pkcs11" {
        let conf = pkid_bench::softhsm::init_token(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let pin = dir.path().join("pin");
        env.push(("SOFTHSM2_CONF".into(), conf.display().to_string()));
        let out = Command::new(pkid_bench::daemon::pkid_binary())
            .env("SOFTHSM2_CONF", &conf)
            .arg("--data")
            .arg(&data)
            .args([
                "init",
                "--key-backend",
                "pkcs11",
                "--token-label",
                "pkid-bench",
                "--pin-file",
            ])
            .arg(&pin)
            .output()
            .unwrap_or_else(|e| panic!("pkid init: {e}"));
        assert!(
            out.status.success(),
            "pkid init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        pkid(&data, &["init"]);
    }
    let t = now();
    let pop = populate::population(args.certs, 10, t);
    populate::insert(&data.join("pkid.db"), "issuing", &pop, t)
        .unwrap_or_else(|e| panic!("populate: {e}"));
    let conf_path = data.join("pkid.toml");
    let conf = std::fs::read_to_string(&conf_path).unwrap_or_default();
    let conf = conf
        .replace("rate_limit_per_second = 1000", "rate_limit_per_second = 0")
        .replace("level = \"info\"", "level = \"warn\"");
    std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("{e}"));

    let pem = |name: &str| {
        let bytes =
            std::fs::read(data.join("certs").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let der = pkid_protocols::x509::pem_or_der(&bytes, &["CERTIFICATE"])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        <x509_cert::Certificate as der::Decode>::from_der(&der)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let issuing = IssuerHashes::of(&pem("issuing.crt")).unwrap_or_else(|e| panic!("{e}"));

    // Request sets: a sample of good and revoked serials, and never-issued ones.
    let sample: Vec<&Synthetic> = pop
        .iter()
        .step_by((pop.len() / args.sample.max(1)).max(1))
        .take(args.sample)
        .collect();
    let post =
        |serials: &mut dyn Iterator<Item = u128>, nonce: bool| -> Arc<Vec<RequestTemplate>> {
            Arc::new(
                serials
                    .enumerate()
                    .map(|(i, s)| {
                        let n = (i as u64).to_be_bytes();
                        RequestTemplate::post(
                            "/ocsp",
                            OCSP_REQUEST,
                            requests::request(&issuing, s, nonce.then_some(&n[..])),
                        )
                    })
                    .collect(),
            )
        };
    let cached_post = post(&mut sample.iter().map(|c| c.serial), false);
    let cached_get: Arc<Vec<RequestTemplate>> = Arc::new(
        sample
            .iter()
            .map(|c| {
                RequestTemplate::get(requests::get_path(&requests::request(
                    &issuing, c.serial, None,
                )))
            })
            .collect(),
    );
    let nonce_post = post(&mut sample.iter().map(|c| c.serial), true);
    let mixed = post(
        &mut sample.iter().enumerate().map(|(i, c)| {
            if i % 10 == 5 {
                c.serial ^ 0x00ff_00ff
            } else {
                c.serial
            }
        }),
        false,
    );
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let daemon = Daemon::start_with_env(&data, &env_refs);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let bench = Bench {
        rt,
        seconds: args.seconds,
        connections: args.connections,
    };
    let started = Instant::now();
    bench.warm(daemon.http, &cached_post);
    bench.warm(daemon.http, &cached_get);
    bench.warm(daemon.http, &mixed);
    println!(
        "\nwarmed pkid's cache with {} responses in {:.1} s",
        cached_post.len() * 2 + mixed.len(),
        started.elapsed().as_secs_f64()
    );

    println!("\n## HTTP (loopback; generator on one core)");
    report::header();
    let nonce_ka = bench.run(daemon.http, true, &nonce_post);
    let mixed_ka = bench.run(daemon.http, true, &mixed);
    let post_close = bench.run_rust(daemon.http, false, &cached_post);

    // Baselines stay up while pkid does, so the ratio pairs below are measured back to back.
    let mut guards: Vec<Killed> = Vec::new();
    let mut bare_addr: Option<SocketAddr> = None;
    let mut signing_addr: Option<SocketAddr> = None;
    let mut cfssl_addr: Option<SocketAddr> = None;
    let mut bare_close = None;
    let mut openssl = None;
    if !args.skip_baselines {
        let bytes = cached_post.first().map(|_| 803).unwrap_or(803);
        let exe = pkid_bench::daemon::pkid_binary().with_file_name("bare-hyper");
        let mut cmd = pkid_bench::daemon::server_command(&exe);
        cmd.args(["--addr", "127.0.0.1:0", "--bytes", &bytes.to_string()]);
        let (child, addr) = spawn_listening(cmd, "listening on ");
        guards.push(Killed(child));
        let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{e}"));
        bare_close = Some(bench.run_rust(addr, false, &cached_post));
        bare_addr = Some(addr);

        // The same server signing each answer with the OCSP key (P-256): the nonce ceiling.
        if args.backend == "software" {
            let mut cmd = pkid_bench::daemon::server_command(&exe);
            cmd.args([
                "--addr",
                "127.0.0.1:0",
                "--bytes",
                &bytes.to_string(),
                "--sign",
            ])
            .arg(data.join("keys/ocsp.p8"));
            let (child, addr) = spawn_listening(cmd, "listening on ");
            guards.push(Killed(child));
            signing_addr = Some(addr.parse().unwrap_or_else(|e| panic!("{e}")));
        }

        // openssl ocsp -port: same CA, same population, index.txt.
        let key_pem = dir.path().join("ocsp.key");
        let index_txt = dir.path().join("index.txt");
        populate::openssl_index(&index_txt, &pop).unwrap_or_else(|e| panic!("{e}"));
        let can_openssl = args.backend == "software"
            && Command::new("openssl")
                .args(["pkey", "-inform", "DER", "-in"])
                .arg(data.join("keys/ocsp.p8"))
                .arg("-out")
                .arg(&key_pem)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
        if can_openssl {
            let port = free_port();
            let child = pkid_bench::daemon::server_command("openssl")
                .args(["ocsp", "-index"])
                .arg(&index_txt)
                .args(["-port", &port.to_string(), "-rsigner"])
                .arg(data.join("certs/ocsp.crt"))
                .arg("-rkey")
                .arg(&key_pem)
                .arg("-CA")
                .arg(data.join("certs/issuing.crt"))
                .args(["-nmin", "60", "-ignore_err"])
                .stdout(log_file(&dir.path().join("openssl.out")))
                .stderr(log_file(&dir.path().join("openssl.log")))
                .spawn()
                .unwrap_or_else(|e| panic!("openssl ocsp: {e}"));
            let _o = Killed(child);
            wait_for_log(&dir.path().join("openssl.out"), "ACCEPT");
            openssl = Some(bench.run_rust(
                SocketAddr::from(([127, 0, 0, 1], port)),
                false,
                &cached_post,
            ));
        }

        // cfssl ocspserve: pre-signed responses for the same sample (signed with pkid's OCSP key).
        if args.backend == "software" && Command::new("cfssl").arg("version").output().is_ok() {
            let signer = SoftwareSigner::from_pkcs8(
                &std::fs::read(data.join("keys/ocsp.p8")).unwrap_or_default(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let responder = Responder::new(pem("ocsp.crt")).unwrap_or_else(|e| panic!("{e}"));
            let v = Validity {
                produced_at: t,
                this_update: t,
                next_update: t + 4 * 86_400,
            };
            let mut lines = String::new();
            for c in &sample {
                let id = issuing
                    .cert_id(
                        pkid_protocols::ocsp::CertIdHash::Sha1,
                        requests::serial_number(c.serial),
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                let status = c
                    .revoked_at
                    .map_or(Status::Good, |at| Status::Revoked { at, reason: None });
                let unsigned = pkid_protocols::ocsp::build_response(
                    vec![(id, status)],
                    v,
                    None,
                    &responder,
                    signer.algorithm(),
                )
                .unwrap_or_else(|e| panic!("{e}"));
                let der = pkid::keys::sign(&signer, unsigned).unwrap_or_else(|e| panic!("{e}"));
                lines.push_str(&base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    der,
                ));
                lines.push('\n');
            }
            let responses = dir.path().join("responses.txt");
            std::fs::write(&responses, lines).unwrap_or_else(|e| panic!("{e}"));
            let port = free_port();
            let child = pkid_bench::daemon::server_command("cfssl")
                .args([
                    "ocspserve",
                    "-address",
                    "127.0.0.1",
                    "-port",
                    &port.to_string(),
                    "-responses",
                ])
                .arg(&responses)
                .stdout(Stdio::null())
                .stderr(log_file(&dir.path().join("cfssl.log")))
                .spawn()
                .unwrap_or_else(|e| panic!("cfssl: {e}"));
            let mut c = Killed(child);
            wait_for_port(&mut c.0, port, &dir.path().join("cfssl.log"));
            guards.push(c);
            cfssl_addr = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }

    // Paired rounds: pkid and its baseline back to back, alternating, several times; the round
    // with the median ratio is reported, so drift on a shared machine does not land in a ratio.
    let mut get_rounds: Vec<(LoadReport, Option<LoadReport>)> = Vec::new();
    let mut post_rounds: Vec<(LoadReport, Option<LoadReport>)> = Vec::new();
    let mut post_bare_rounds: Vec<(LoadReport, Option<LoadReport>)> = Vec::new();
    let mut nonce_rounds: Vec<(LoadReport, Option<LoadReport>)> = Vec::new();
    for _ in 0..args.rounds.max(1) {
        let post = bench.run(daemon.http, true, &cached_post);
        let bare = bare_addr.map(|a| bench.run(a, true, &cached_post));
        post_bare_rounds.push((post, bare));
        let nonce = bench.run(daemon.http, true, &nonce_post);
        let signing = signing_addr.map(|a| bench.run(a, true, &nonce_post));
        nonce_rounds.push((nonce, signing));
        let get = bench.run(daemon.http, true, &cached_get);
        let bare = bare_addr.map(|a| bench.run(a, true, &cached_get));
        get_rounds.push((get, bare));
        let post = bench.run(daemon.http, true, &cached_post);
        let cf = cfssl_addr.map(|a| bench.run(a, true, &cached_post));
        post_rounds.push((post, cf));
    }
    drop(guards);
    drop(daemon);
    let (get_ka, bare_get) = median_round("cached GET / bare hyper", get_rounds);
    let (post_ka, cfssl) = median_round("cached POST / cfssl", post_rounds);
    let (post_vs_bare, bare_post) = median_round("cached POST / bare hyper", post_bare_rounds);
    let (nonce_vs_signing, signing) =
        median_round("nonce POST / bare hyper signing P-256", nonce_rounds);

    // Raw signing rate of the responder's own key backend, one thread.
    let signer: Arc<dyn Signer> = if args.backend == "pkcs11" {
        let conf = env
            .iter()
            .find(|(k, _)| k == "SOFTHSM2_CONF")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        // The signer below opens the token in this process.
        std::env::set_var("SOFTHSM2_CONF", conf);
        let settings = pkid::keys::Pkcs11Settings {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token_label: "pkid-bench".into(),
            pin: zeroize_pin(),
            sessions: 1,
        };
        let backend =
            pkid::keys::pkcs11::Pkcs11Backend::open(&settings).unwrap_or_else(|e| panic!("{e}"));
        pkid::keys::KeyBackend::load(&backend, &pkid::keys::KeyRole::Ocsp)
            .unwrap_or_else(|e| panic!("{e}"))
    } else {
        Arc::new(
            SoftwareSigner::from_pkcs8(
                &std::fs::read(data.join("keys/ocsp.p8")).unwrap_or_default(),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        )
    };
    let raw = raw_signing_rate(signer.as_ref(), args.seconds.min(3));

    let bare = bare_get.as_ref().map(|b| ("bare hyper", b));
    report::row("pkid cached GET, keep-alive", &get_ka, bare);
    report::row(
        "pkid cached POST, keep-alive",
        &post_ka,
        cfssl.as_ref().map(|c| ("cfssl", c)),
    );
    report::row("pkid nonce POST (signed per request)", &nonce_ka, None);
    report::row(
        "pkid mixed 80/10/10 good/revoked/unknown POST",
        &mixed_ka,
        None,
    );
    report::row(
        "pkid cached POST, no keep-alive (rust gen)",
        &post_close,
        openssl.as_ref().map(|o| ("openssl ocsp", o)),
    );
    report::row(
        "pkid cached POST, keep-alive (paired with bare)",
        &post_vs_bare,
        bare_post.as_ref().map(|b| ("bare hyper", b)),
    );
    report::row(
        "pkid nonce POST, keep-alive (paired)",
        &nonce_vs_signing,
        signing.as_ref().map(|b| ("bare hyper signing", b)),
    );
    if let Some(b) = &bare_get {
        report::row("baseline: bare hyper GET, keep-alive", b, None);
    }
    if let Some(b) = &signing {
        report::row("baseline: bare hyper signing P-256, POST", b, None);
    }
    if let Some(b) = &bare_close {
        report::row(
            "baseline: bare hyper POST, no keep-alive (rust gen)",
            b,
            None,
        );
    }
    if let Some(o) = &openssl {
        report::row("baseline: openssl ocsp -port, no ka (rust gen)", o, None);
    }
    if let Some(c) = &cfssl {
        report::row("baseline: cfssl ocspserve POST, keep-alive", c, None);
    }
    report::ratio_line(
        &format!("raw {} signing, one thread", args.backend),
        raw,
        "sig/s",
        "",
        raw,
    );
    report::ratio_line(
        "pkid nonce POST vs raw signing",
        nonce_ka.rps(),
        "req/s",
        "raw signing",
        raw,
    );

    println!("\n## Targets (ratios from this run)");
    let target = |name: &str, ratio: Option<f64>, goal: f64| match ratio {
        Some(r) => println!(
            "{:<52} {:>7.2}  (target >= {goal}) {}",
            name,
            r,
            if r >= goal { "met" } else { "NOT met" }
        ),
        None => println!("{name:<52}     n/a  (baseline not run or answered nothing)"),
    };
    let per = |a: &LoadReport, b: &Option<LoadReport>| {
        b.as_ref().filter(|b| b.ok > 0).map(|b| a.rps() / b.rps())
    };
    target(
        "cached GET / bare hyper (keep-alive)",
        per(&get_ka, &bare_get),
        0.8,
    );
    target(
        "cached POST / bare hyper (keep-alive)",
        per(&post_vs_bare, &bare_post),
        0.8,
    );
    target(
        "nonce POST / bare hyper signing P-256 (keep-alive)",
        per(&nonce_vs_signing, &signing),
        0.75,
    );
    target("cached POST / cfssl ocspserve", per(&post_ka, &cfssl), 10.0);
    target(
        "cached POST, no keep-alive / openssl ocsp",
        per(&post_close, &openssl),
        2.0,
    );
    target(
        "nonce POST / raw signing rate",
        Some(nonce_ka.rps() / raw),
        0.7,
    );
}

fn zeroize_pin() -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new("1234".to_string())
}
