//! CRL benchmark: a CRL with a million revoked entries, built, signed, stored and served by
//! pkid, against a plain SHA-256 pass over the same bytes, `openssl ca -gencrl` over the same
//! entries, and a bare hyper server sending a body of the same size — all in one run.
//!
//! ```text
//! cargo build --release -p pkid -p pkid-bench
//! target/release/crl [--entries 1000000] [--runs 5] [--seconds 5] [--connections 4] [--skip-openssl]
//! ```
//!
//! Memory is measured in child processes of this binary (`--child build|generate`), each
//! reporting its resident set before the operation and its peak (`VmHWM`) after, so the figure
//! is what building, signing and storing one CRL costs, not what this harness holds.

use der::Encode;
use pkid::crl::CrlService;
use pkid::keys::software::SoftwareSigner;
use pkid::keys::Signer;
use pkid_bench::daemon::{pkid, Daemon};
use pkid_bench::load::{self, LoadReport, LoadSpec, RequestTemplate};
use pkid_protocols::crl::{self, CrlBuilder, CrlKind, CrlParams, CrlSerial, RevokedEntry};
use pkid_protocols::revocation::CrlReason;
use pkid_protocols::x509::IssuerInfo;
use rusqlite::{params, Connection};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Reasons the synthetic entries cycle through (RFC 5280 §5.3.1; unspecified gets no extension).
const REASONS: [Option<CrlReason>; 5] = [
    Some(CrlReason::KeyCompromise),
    Some(CrlReason::Superseded),
    Some(CrlReason::CessationOfOperation),
    Some(CrlReason::AffiliationChanged),
    None,
];
/// One entry in this many carries an invalidity date.
const INVALIDITY_EVERY: usize = 10;
/// Revocation dates spread over the last year.
const SPREAD_SECS: u64 = 365 * 86_400;

struct Args {
    entries: usize,
    runs: usize,
    seconds: u64,
    connections: usize,
    skip_openssl: bool,
}

fn parse_args(argv: &[String]) -> Args {
    let get = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Args {
        entries: get("--entries").unwrap_or(1_000_000) as usize,
        runs: get("--runs").unwrap_or(5).max(1) as usize,
        seconds: get("--seconds").unwrap_or(5),
        connections: get("--connections").unwrap_or(4) as usize,
        skip_openssl: argv.iter().any(|a| a == "--skip-openssl"),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The synthetic population: deterministic pseudo-random 16-octet serials (splitmix64, top
/// bit clear like pkid's), sorted as a CRL lists them.
fn entries(n: usize, now: u64) -> Vec<RevokedEntry> {
    let mut state = 0xc4c1_5eed_u64;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut v: Vec<RevokedEntry> = (0..n)
        .map(|i| {
            let serial = ((u128::from(next()) << 64) | u128::from(next())) & !(1u128 << 127)
                | (1u128 << 120);
            let revoked_at = now - 60 - next() % SPREAD_SECS;
            RevokedEntry {
                serial: CrlSerial::from_magnitude(&serial.to_be_bytes())
                    .unwrap_or_else(|e| panic!("{e}")),
                revoked_at,
                reason: REASONS[i % REASONS.len()],
                invalidity_date: (i % INVALIDITY_EVERY == 0).then_some(revoked_at - 86_400),
            }
        })
        .collect();
    crl::sort_entries(&mut v);
    v.dedup_by_key(|e| e.serial);
    v
}

/// `VmRSS` and `VmHWM` of this process, bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn bench_key() -> (SoftwareSigner, IssuerInfo) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap_or_else(|e| panic!("keygen: {e}"));
    let signer = SoftwareSigner::from_pkcs8(pkcs8.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let info = IssuerInfo {
        name: pkid_protocols::name::parse("CN=pkid Bench CA,O=pkid,C=VN")
            .unwrap_or_else(|e| panic!("{e}")),
        key_identifier: pkid_protocols::algorithm::key_identifier(signer.public_key()),
        ocsp_url: None,
        ca_issuers_url: None,
        crl_url: None,
        freshest_crl_url: None,
    };
    (signer, info)
}

/// One in-memory build: (encode ms, sign ms incl. hash and verify, total ms, the CRL).
fn build_once(
    entries: &[RevokedEntry],
    signer: &SoftwareSigner,
    info: &IssuerInfo,
    now: u64,
    recycled: Vec<u8>,
) -> (f64, f64, f64, crl::SignedCrl) {
    let params = CrlParams {
        issuer: info,
        algorithm: signer.algorithm(),
        issuer_key: signer.public_key(),
        number: 1,
        this_update: now,
        next_update: now + 7 * 86_400,
        kind: CrlKind::Full,
        distribution_point: None,
        freshest_crl: None,
    };
    let t = Instant::now();
    let capacity = entries.iter().map(RevokedEntry::max_encoded_len).sum();
    let mut b =
        CrlBuilder::with_buffer(&params, capacity, recycled).unwrap_or_else(|e| panic!("{e}"));
    for e in entries {
        b.push(e).unwrap_or_else(|e| panic!("{e}"));
    }
    let tbs = b.finish().unwrap_or_else(|e| panic!("{e}"));
    let encoded = t.elapsed();
    let signed = pkid::keys::sign(signer, tbs).unwrap_or_else(|e| panic!("{e}"));
    let total = t.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(encoded), ms(total - encoded), ms(total), signed)
}

/// Child: builds and signs once in memory; prints `rss_before peak_after ms bytes`.
fn child_build(n: usize) {
    let now = now();
    let entries = entries(n, now);
    let (signer, info) = bench_key();
    let (before, _) = memory();
    let (_, _, ms, der) = build_once(&entries, &signer, &info, now, Vec::new());
    let (_, peak) = memory();
    println!("{before} {peak} {ms} {}", der.der().len());
}

/// Child: the daemon's path for one scope — read the rows from the store, build, sign, store;
/// then stores the same bytes once more to time the store write alone. Prints
/// `rss_before peak_after generate_ms store_ms bytes entries`.
fn child_generate(data: &Path) {
    let opened = pkid::datadir::open(data, true).unwrap_or_else(|e| panic!("{e}"));
    let authority = opened.authority.unwrap_or_else(|| unreachable!());
    let config = opened.config.clone();
    let service = CrlService::new(
        authority.clone(),
        config.crl.clone(),
        &config.server.public_url,
        "bench",
        None,
    );
    let (before, _) = memory();
    let t = Instant::now();
    let crl = service
        .generate(pkid::ca::ISSUING, None, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let generate_ms = t.elapsed().as_secs_f64() * 1e3;
    let (_, peak) = memory();
    let store = authority.store();
    let t = Instant::now();
    let number = store
        .next_crl_number(pkid::ca::ISSUING, None)
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .put_crl(&pkid::store::crl::NewCrl {
            issuer: pkid::ca::ISSUING,
            shard: None,
            delta: false,
            number,
            base_number: None,
            this_update: crl.this_update,
            next_update: crl.next_update,
            change_seq: crl.change_seq,
            entries: crl.entries,
            der: &crl.der,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let store_ms = t.elapsed().as_secs_f64() * 1e3;
    // The read alone: the same scan with a visitor that only decodes the serials.
    struct Decode(u64);
    impl pkid::store::crl::CrlVisitor for Decode {
        fn row(&mut self, row: pkid::store::crl::CrlRow<'_>) -> bool {
            self.0 += u64::from(CrlSerial::from_hex(row.serial).is_ok());
            true
        }
    }
    let t = Instant::now();
    let mut visitor = Decode(0);
    store
        .scan_crl_entries(
            &pkid::store::crl::CrlQuery {
                issuer: pkid::ca::ISSUING,
                shard: pkid::store::crl::ShardFilter::Any,
                not_after_from: 0,
                changed_after: None,
            },
            &mut visitor,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let scan_ms = t.elapsed().as_secs_f64() * 1e3;
    // Steady state: the third CRL of the scope is written into the first one's buffer, which
    // went back to the scope's spare slot when the second replaced it.
    let size = crl.der.len();
    let entries = crl.entries;
    drop(crl);
    let mut steady_ms = 0.0;
    for _ in 0..2 {
        let t = Instant::now();
        service
            .generate(pkid::ca::ISSUING, None, false)
            .unwrap_or_else(|e| panic!("{e}"));
        steady_ms = t.elapsed().as_secs_f64() * 1e3;
    }
    let (_, steady_peak) = memory();
    println!("{before} {peak} {generate_ms} {store_ms} {size} {entries} {scan_ms} {steady_ms} {steady_peak}");
}

fn run_child(args: &[&str]) -> Vec<f64> {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(exe)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("child: {e}"));
    assert!(
        out.status.success(),
        "child {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// Writes the population as revoked rows of the issuing CA straight into the store.
fn populate(db: &Path, entries: &[RevokedEntry], now: u64) {
    let mut conn = Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    conn.execute_batch("PRAGMA synchronous=OFF;")
        .unwrap_or_else(|e| panic!("{e}"));
    let tx = conn.transaction().unwrap_or_else(|e| panic!("{e}"));
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO certificates (serial, issuer, subject, profile, not_before, not_after, status,
                                           revoked_at, reason, invalidity_date, tbs, der, created_at, updated_at)
                 VALUES (?1, 'issuing', 'CN=bench', 'person', ?2, ?3, 'revoked', ?4, ?5, ?6, x'00', x'00', ?2, ?2)",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        for e in entries {
            let reason = e.reason.map_or(0u8, |r| r as u8);
            stmt.execute(params![
                e.serial.to_hex(),
                now - SPREAD_SECS - 3600,
                now + 365 * 86_400,
                e.revoked_at,
                reason,
                e.invalidity_date
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    tx.commit().unwrap_or_else(|e| panic!("{e}"));
}

fn utc(unix: u64, generalized: bool) -> String {
    let t = der::DateTime::from_unix_duration(Duration::from_secs(unix))
        .unwrap_or_else(|e| panic!("{e}"));
    let year = if generalized {
        format!("{:04}", t.year())
    } else {
        format!("{:02}", t.year() % 100)
    };
    format!(
        "{year}{:02}{:02}{:02}{:02}{:02}Z",
        t.month(),
        t.day(),
        t.hour(),
        t.minutes(),
        t.seconds()
    )
}

/// The same entries as an OpenSSL CA database.
fn openssl_index(path: &Path, entries: &[RevokedEntry], now: u64) {
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}")));
    let expiry = utc(now + 365 * 86_400, false);
    for e in entries {
        let revoked = utc(e.revoked_at, false);
        let reason = match (e.reason, e.invalidity_date) {
            (Some(CrlReason::KeyCompromise), Some(t)) => format!(",keyTime,{}", utc(t, true)),
            (Some(r), _) => format!(",{}", pkid_protocols::revocation::name(r)),
            (None, _) => String::new(),
        };
        writeln!(
            f,
            "R\t{expiry}\t{revoked}{reason}\t{}\tunknown\t/CN=bench",
            e.serial.to_hex().to_uppercase()
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    f.flush().unwrap_or_else(|e| panic!("{e}"));
}

/// Times `openssl ca -gencrl` over the same entries, with the same issuing key and certificate.
fn openssl_gencrl(
    data: &Path,
    dir: &Path,
    entries: &[RevokedEntry],
    now: u64,
) -> Option<(f64, u64)> {
    let key = dir.join("issuing.key");
    let ok = Command::new("openssl")
        .args(["pkey", "-inform", "DER", "-in"])
        .arg(data.join("keys/issuing.p8"))
        .arg("-out")
        .arg(&key)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return None;
    }
    openssl_index(&dir.join("index.txt"), entries, now);
    std::fs::write(dir.join("index.txt.attr"), "unique_subject = no\n").ok()?;
    std::fs::write(dir.join("crlnumber"), "01\n").ok()?;
    let cnf = format!(
        "[ca]\ndefault_ca = bench\n[bench]\ndatabase = {d}/index.txt\ncrlnumber = {d}/crlnumber\n\
         certificate = {c}\nprivate_key = {k}\ndefault_md = sha256\ndefault_crl_days = 7\n\
         crl_extensions = crl_ext\n[crl_ext]\nauthorityKeyIdentifier = keyid:always\n",
        d = dir.display(),
        c = data.join("certs/issuing.crt").display(),
        k = key.display()
    );
    std::fs::write(dir.join("openssl.cnf"), cnf).ok()?;
    let out = dir.join("openssl.crl");
    let t = Instant::now();
    let status = Command::new("openssl")
        .args(["ca", "-gencrl", "-batch", "-config"])
        .arg(dir.join("openssl.cnf"))
        .arg("-out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !status.success() {
        return None;
    }
    let size = Command::new("openssl")
        .args(["crl", "-in"])
        .arg(&out)
        .args(["-outform", "DER"])
        .output()
        .ok()
        .map_or(0, |o| o.stdout.len() as u64);
    Some((ms, size))
}

/// A child process killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bare_hyper(bytes: usize) -> (Killed, SocketAddr) {
    let exe = pkid_bench::daemon::pkid_binary().with_file_name("bare-hyper");
    let mut child = Killed(
        pkid_bench::daemon::server_command(&exe)
            .args(["--addr", "127.0.0.1:0", "--bytes", &bytes.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display())),
    );
    let stdout = child.0.stdout.take().unwrap_or_else(|| unreachable!());
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(addr) = line.split("listening on ").nth(1) {
            let addr = addr.trim().parse().unwrap_or_else(|e| panic!("{e}"));
            return (child, addr);
        }
        line.clear();
    }
    panic!("bare-hyper did not start");
}

fn serve(addr: SocketAddr, path: &str, args: &Args) -> LoadReport {
    let spec = LoadSpec {
        addr,
        connections: args.connections,
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(1),
        keep_alive: true,
        max_requests: u64::MAX,
        requests: Arc::new(vec![RequestTemplate::get(path)]),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .block_on(load::run(spec))
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--child") {
        match (argv.get(2).map(String::as_str), argv.get(3)) {
            (Some("build"), Some(n)) => child_build(n.parse().unwrap_or(1_000_000)),
            (Some("generate"), Some(dir)) => child_generate(Path::new(dir)),
            // A data directory with N revoked certificates, for profiling `generate`.
            (Some("populate"), Some(dir)) => {
                let n = argv
                    .get(4)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1_000_000);
                let data = Path::new(dir);
                pkid(data, &["init"]);
                populate(&data.join("pkid.db"), &entries(n, now()), now());
            }
            _ => panic!("usage: crl --child build N | generate DIR | populate DIR N"),
        }
        return;
    }
    let args = parse_args(&argv);
    let n = args.entries;
    let now = now();
    let mb = |b: f64| b / 1e6;
    println!(
        "CRL benchmark: {n} revoked entries, ECDSA P-256 software key, {} cores",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    println!("(reasons cycle keyCompromise/superseded/cessationOfOperation/affiliationChanged/none; 1 in {INVALIDITY_EVERY} has an invalidity date)\n");

    // 1. In memory: build + sign (+ verify) vs one SHA-256 pass over the same number of bytes.
    let population = entries(n, now);
    let (signer, info) = bench_key();
    // Fresh buffer (the first CRL of a scope) and the previous CRL's buffer (every later one).
    let mut cold = (f64::MAX, 0.0, 0.0);
    let mut warm = (f64::MAX, 0.0, 0.0);
    let mut last: Option<crl::SignedCrl> = None;
    for _ in 0..args.runs {
        drop(last.take());
        let (enc, sign, total, signed) = build_once(&population, &signer, &info, now, Vec::new());
        if total < cold.0 {
            cold = (total, enc, sign);
        }
        let (buffer, _) = signed.into_parts();
        let (enc, sign, total, signed) = build_once(&population, &signer, &info, now, buffer);
        if total < warm.0 {
            warm = (total, enc, sign);
        }
        last = Some(signed);
    }
    let signed = last.unwrap_or_else(|| unreachable!());
    let der = signed.der();
    let size = der.len();
    let parsed = crl::parse(der).unwrap_or_else(|e| panic!("the CRL does not decode: {e}"));
    assert_eq!(parsed.to_der().map(|d| d.len()).unwrap_or(0), size);
    drop(parsed);
    let floor_input = vec![0x5au8; size];
    let mut floor = f64::MAX;
    for _ in 0..args.runs {
        let t = Instant::now();
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &floor_input);
        std::hint::black_box(d);
        floor = floor.min(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(floor_input);
    drop(signed);
    println!(
        "{:<52} {:>12} bytes ({:.1} bytes/entry)",
        "CRL size",
        size,
        size as f64 / n as f64
    );
    println!(
        "{:<52} {:>9.1} ms",
        "SHA-256 over the same bytes (floor)", floor
    );
    for (label, best) in [
        ("build + sign + verify, new buffer", cold),
        ("build + sign + verify, previous CRL's buffer", warm),
    ] {
        println!(
            "{:<52} {:>9.1} ms  {:.2}x floor  [target <= 3x]",
            label,
            best.0,
            best.0 / floor
        );
        println!("{:<52} {:>9.1} ms", "  of which encode entries", best.1);
        println!(
            "{:<52} {:>9.1} ms",
            "  of which hash once, sign digest, verify", best.2
        );
    }
    let child = run_child(&["--child", "build", &n.to_string()]);
    let build_peak = child[1] - child[0];
    println!(
        "{:<52} {:>9.1} MB  {:.2}x CRL size  [target < 3x]",
        "peak memory to build + sign (child process)",
        mb(build_peak),
        build_peak / size as f64
    );

    // 2. The daemon's path, from a store holding the population.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    pkid(&data, &["init"]);
    let t = Instant::now();
    populate(&data.join("pkid.db"), &population, now);
    println!(
        "\n({} revoked rows written to the store in {:.1} s)",
        n,
        t.elapsed().as_secs_f64()
    );
    let g = run_child(&["--child", "generate", data.to_str().unwrap_or_default()]);
    let (gen_peak, gen_ms, store_ms, gen_size) = (g[1] - g[0], g[2], g[3], g[4]);
    println!(
        "{:<52} {:>9.1} ms  ({:.0} entries, {} bytes)",
        "generate from store: read, build, sign, store", gen_ms, g[5], gen_size
    );
    println!(
        "{:<52} {:>9.1} ms",
        "  of which reading the rows (measured alone)", g[6]
    );
    println!(
        "{:<52} {:>9.1} ms",
        "  of which the store write (measured alone)", store_ms
    );
    println!(
        "{:<52} {:>9.1} MB  {:.2}x CRL size  [target < 3x]",
        "peak memory to generate (child process)",
        mb(gen_peak),
        gen_peak / gen_size
    );
    println!(
        "{:<52} {:>9.1} ms",
        "generate again, steady state (recycled buffer)", g[7]
    );
    println!(
        "{:<52} {:>9.1} MB  {:.2}x CRL size",
        "  peak memory with a CRL served and one building",
        mb(g[8] - g[0]),
        (g[8] - g[0]) / gen_size
    );

    // 3. openssl ca -gencrl over the same entries, same key and issuer.
    if !args.skip_openssl {
        let odir = dir.path().join("openssl");
        std::fs::create_dir_all(&odir).unwrap_or_else(|e| panic!("{e}"));
        match openssl_gencrl(&data, &odir, &population, now) {
            Some((ms, osize)) => {
                println!(
                    "{:<52} {:>9.1} ms  ({osize} bytes)",
                    "openssl ca -gencrl", ms
                );
                println!(
                    "{:<52} {:>9.1}x  [target >= 10x]",
                    "  pkid build + sign (new buffer) is faster by",
                    ms / cold.0
                );
                println!(
                    "{:<52} {:>9.1}x",
                    "  pkid generate from store (first) is faster by",
                    ms / gen_ms
                );
                println!(
                    "{:<52} {:>9.1}x",
                    "  pkid generate from store (steady) is faster by",
                    ms / g[7]
                );
            }
            None => println!("openssl ca -gencrl: could not run"),
        }
    }
    drop(population);

    // 4. Serving the cached CRL over HTTP, against bare hyper sending as many bytes.
    let daemon = Daemon::start(&data);
    let served = serve(daemon.http, "/crl/issuing.crl", &args);
    drop(daemon);
    let (bare, addr) = bare_hyper(gen_size as usize);
    let ceiling = serve(addr, "/", &args);
    drop(bare);
    let gbps = |r: &LoadReport| r.rps() * gen_size / 1e9;
    println!(
        "\n{:<52} {:>9.1} req/s  {:.2} GB/s  p50 {} ms  errors {}",
        format!(
            "GET /crl/issuing.crl ({} connections, keep-alive)",
            args.connections
        ),
        served.rps(),
        gbps(&served),
        served.p50.as_millis(),
        served.errors
    );
    println!(
        "{:<52} {:>9.1} req/s  {:.2} GB/s  ({:.2}x of it)",
        "bare hyper, same body size",
        ceiling.rps(),
        gbps(&ceiling),
        served.rps() / ceiling.rps().max(1e-9)
    );
}
