//! EST benchmark: durable enrollments per second over the real daemon's HTTPS listener against
//! the in-process ceiling, measured in the same invocation on the same data directory.
//!
//! ```text
//! ceiling    16 threads: CSR verify + build + sign + verify + durable store
//!            (RegistrationAuthority::issue_as, the path simpleenroll takes), no HTTP, no TLS
//! keep-alive 16 clients, one TLS connection each, POST /.well-known/est/simpleenroll with
//!            HTTP Basic (Argon2id once per client, then the verified cache), P-256 CSRs
//! new conn   the same, a new TLS connection (full handshake) per enrollment
//! ```
//!
//! ```text
//! cargo build --release -p pkid-bench -p pkid && target/release/est [enrollments]
//! ```
//!
//! Goals (issue 13): keep-alive ≥ 0.6× the ceiling, p99 < 25 ms.

use base64::Engine;
use der::Encode;
use hdrhistogram::Histogram;
use pkid_bench::daemon;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;
const ORG: &str = "bench-org";

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A P-256 CSR (DER) for `CN=name`, signed by a fresh key.
fn csr(name: &str) -> Vec<u8> {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("key");
    let spki = spki::SubjectPublicKeyInfoOwned {
        algorithm: spki::AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
            parameters: Some(
                der::Any::encode_from(&const_oid::db::rfc5912::SECP_256_R_1).expect("curve"),
            ),
        },
        subject_public_key: der::asn1::BitString::from_bytes(pair.public_key().as_ref())
            .expect("point"),
    };
    let info = x509_cert::request::CertReqInfo {
        version: x509_cert::request::Version::V1,
        subject: pkid_protocols::name::parse(&format!("CN={name}")).expect("name"),
        public_key: spki,
        attributes: Default::default(),
    };
    let tbs = info.to_der().expect("info");
    let sig = pair
        .sign(&aws_lc_rs::rand::SystemRandom::new(), &tbs)
        .expect("sign");
    x509_cert::request::CertReq {
        info,
        algorithm: spki::AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        },
        signature: der::asn1::BitString::from_bytes(sig.as_ref()).expect("sig"),
    }
    .to_der()
    .expect("csr")
}

fn percentile(h: &Histogram<u64>, q: f64) -> Duration {
    Duration::from_micros(h.value_at_quantile(q))
}

struct Run {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn print(&self, name: &str, baseline: Option<(&str, f64)>) {
        let ratio = baseline
            .map(|(n, b)| format!("{:.2}x {n}", self.rate() / b.max(1e-9)))
            .unwrap_or_default();
        println!(
            "{name:<44} {:>9.0}/s  p50 {:>6} µs  p99 {:>6} µs  errors {:>4}  {ratio}",
            self.rate(),
            percentile(&self.latency, 0.5).as_micros(),
            percentile(&self.latency, 0.99).as_micros(),
            self.errors
        );
    }
}

/// The in-process ceiling: the issuance simpleenroll performs, on `CLIENTS` threads.
fn ceiling(data: &Path, csrs: Vec<Vec<u8>>) -> Run {
    let opened = pkid::datadir::open(data, true).expect("open data directory");
    let authority = opened.authority.expect("authority");
    let ra = Arc::new(pkid::ra::RegistrationAuthority::new(authority));
    let chunks: Vec<Vec<Vec<u8>>> = csrs
        .chunks(csrs.len().div_ceil(CLIENTS))
        .map(<[Vec<u8>]>::to_vec)
        .collect();
    let start = Instant::now();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let ra = ra.clone();
            std::thread::spawn(move || {
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                let (mut ok, mut errors) = (0, 0);
                for der in chunk {
                    let t = Instant::now();
                    match ra.issue_as(
                        &der,
                        Some("CN=bench,O=Đơn vị đo,C=VN"),
                        "tls-client",
                        None,
                        None,
                        "bench",
                    ) {
                        Ok(_) => ok += 1,
                        Err(_) => errors += 1,
                    }
                    let _ = h.record(t.elapsed().as_micros() as u64);
                }
                (ok, errors, h)
            })
        })
        .collect();
    let mut run = Run {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new(3).expect("histogram"),
    };
    for handle in handles {
        let (ok, errors, h) = handle.join().expect("thread");
        run.ok += ok;
        run.errors += errors;
        let _ = run.latency.add(&h);
    }
    run.elapsed = start.elapsed();
    run
}

/// Starts `pkid serve` with HTTPS on a free loopback port; returns it and the HTTPS address.
fn start_daemon(data: &Path) -> (Child, SocketAddr) {
    let mut child = daemon::server_command(daemon::pkid_binary())
        .arg("--data")
        .arg(data)
        .args(["serve", "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
        .env("RUST_LOG", "warn,pkid::http=info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pkid");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("HTTPS listener ready addr=").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("pkid did not start its HTTPS listener within 60 s");
    (child, addr.parse().expect("address"))
}

fn tls_config(root: &Path) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(root).expect("root.crt");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.expect("certificate")).expect("anchor");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

async fn connect(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Sender {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
    tokio::spawn(conn);
    sender
}

async fn enroll(sender: &mut Sender, auth: &str, body: bytes::Bytes) -> bool {
    let req = hyper::Request::post("/.well-known/est/bench/simpleenroll")
        .header("host", "localhost")
        .header("content-type", "application/pkcs10")
        .header("authorization", auth)
        .body(http_body_util::Full::new(body))
        .expect("request");
    match sender.send_request(req).await {
        Ok(resp) => {
            let ok = resp.status() == hyper::StatusCode::OK;
            use http_body_util::BodyExt;
            let _ = resp.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

async fn over_https(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    auth: Arc<str>,
    bodies: Vec<bytes::Bytes>,
    keep_alive: bool,
) -> Run {
    let per = bodies.len().div_ceil(CLIENTS);
    let chunks: Vec<Vec<bytes::Bytes>> = bodies.chunks(per).map(<[bytes::Bytes]>::to_vec).collect();
    // Each keep-alive client pays its first Argon2 verification before the clock starts.
    let mut senders = Vec::new();
    for _ in 0..chunks.len() {
        senders.push(if keep_alive {
            Some(connect(addr, tls.clone()).await)
        } else {
            None
        });
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (chunk, sender) in chunks.into_iter().zip(senders) {
        let (tls, auth) = (tls.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut sender = sender;
            for body in chunk {
                let t = Instant::now();
                let mut fresh;
                let s = match sender.as_mut() {
                    Some(s) => s,
                    None => {
                        fresh = connect(addr, tls.clone()).await;
                        &mut fresh
                    }
                };
                if enroll(s, &auth, body).await {
                    ok += 1;
                } else {
                    errors += 1;
                }
                let _ = h.record(t.elapsed().as_micros() as u64);
            }
            (ok, errors, h)
        }));
    }
    let mut run = Run {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new(3).expect("histogram"),
    };
    for t in tasks {
        let (ok, errors, h) = t.await.expect("task");
        run.ok += ok;
        run.errors += errors;
        let _ = run.latency.add(&h);
    }
    run.elapsed = start.elapsed();
    run
}

fn main() {
    let n = arg(1, 4000);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    daemon::pkid(&data, &["init"]);
    daemon::pkid(&data, &["org", "add", "--id", ORG, "--name", "Đơn vị đo"]);
    let out = daemon::pkid(
        &data,
        &[
            "credential",
            "add",
            "--org",
            ORG,
            "--kind",
            "est",
            "--name",
            "bench",
        ],
    );
    let password = String::from_utf8_lossy(&out)
        .lines()
        .last()
        .expect("password")
        .to_owned();
    let config = data.join("pkid.toml");
    let mut text = std::fs::read_to_string(&config).expect("pkid.toml");
    text = text
        .replacen(
            "rate_limit_per_second = 1000",
            "rate_limit_per_second = 0",
            1,
        )
        .replacen("rate_limit_burst = 2000", "rate_limit_burst = 0", 1);
    text.push_str(&format!(
        "\n[[est.labels]]\nname = \"bench\"\nprofile = \"tls-client\"\norganisation = \"{ORG}\"\n"
    ));
    std::fs::write(&config, text).expect("write pkid.toml");

    println!("preparing {} P-256 CSRs", 2 * n + n / 8);
    let inproc: Vec<Vec<u8>> = (0..n).map(|i| csr(&format!("ceiling-{i}"))).collect();
    let b64 = |d: &[u8]| bytes::Bytes::from(base64::engine::general_purpose::STANDARD.encode(d));
    let keep: Vec<bytes::Bytes> = (0..n).map(|i| b64(&csr(&format!("keep-{i}")))).collect();
    let fresh: Vec<bytes::Bytes> = (0..n / 8).map(|i| b64(&csr(&format!("new-{i}")))).collect();

    let ceiling = ceiling(&data, inproc);
    let (mut child, addr) = start_daemon(&data);
    let tls = tls_config(&data.join("certs/root.crt"));
    let auth: Arc<str> = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("bench:{password}"))
    )
    .into();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Warm-up: every client's first request pays Argon2id once; the cache serves the rest.
    let warm: Vec<bytes::Bytes> = (0..CLIENTS)
        .map(|i| b64(&csr(&format!("warm-{i}"))))
        .collect();
    let _ = rt.block_on(over_https(addr, tls.clone(), auth.clone(), warm, true));
    let keep_alive = rt.block_on(over_https(addr, tls.clone(), auth.clone(), keep, true));
    let new_conn = rt.block_on(over_https(addr, tls, auth, fresh, false));
    let _ = child.kill();
    let _ = child.wait();

    println!("{CLIENTS} concurrent clients, durable (each commit on disk before the answer) enrollments:");
    ceiling.print("in-process ceiling (issue_as, no HTTP)", None);
    keep_alive.print(
        "simpleenroll, Basic, keep-alive TLS",
        Some(("ceiling", ceiling.rate())),
    );
    new_conn.print(
        "simpleenroll, Basic, new TLS connection each",
        Some(("keep-alive", keep_alive.rate())),
    );
    let p99 = percentile(&keep_alive.latency, 0.99);
    println!(
        "goals: keep-alive >= 0.6x ceiling: {}; p99 < 25 ms: {} ({} µs)",
        if keep_alive.rate() >= 0.6 * ceiling.rate() {
            "met"
        } else {
            "NOT met"
        },
        if p99 < Duration::from_millis(25) {
            "met"
        } else {
            "NOT met"
        },
        p99.as_micros()
    );
}
