//! CMP benchmark: durable PBM-protected `ir` transactions per second over the real daemon's
//! plain-HTTP listener against the in-process ceiling, measured in the same invocation on the
//! same data directory.
//!
//! ```text
//! ceiling    16 threads: pkid::cmp::Cmp::handle — parse, PBM check (500 SHA-256 iterations),
//!            POP, build + sign + durable store, transaction row, protected ip — no HTTP
//!            (with certConf: the client builds the certConf, handle answers pkiConf)
//! HTTP       16 clients, one keep-alive connection each, POST /.well-known/cmp/p/bench
//! ```
//! Two kinds of transaction: ir with implicitConfirm (one round trip) and ir + certConf →
//! pkiConf (two). The clients build their messages with `pkid_protocols::cmp` (P-256 keys,
//! PBM SHA-256/hmacWithSHA256, 500 iterations); the irs are built before the clock starts, a
//! certConf from its ip inside the timed loop (both in the ceiling and over HTTP).
//!
//! ```text
//! cargo build --release -p pkid-bench -p pkid && target/release/cmp [transactions]
//! ```
//!
//! Goals (issue 14): ≥ 0.6× the ceiling, p99 < 25 ms.

use der::asn1::{BitString, Int, OctetString};
use der::Encode;
use hdrhistogram::Histogram;
use pkid_bench::daemon;
use pkid_protocols::cmp::{
    self as proto, encode_request, Pbm, ResponseHeader, ResponseProtection, ResponseView,
};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;

const CLIENTS: usize = 16;
const ORG: &str = "bench-org";
const KID: &[u8] = b"bench";
/// OpenSSL 3.0's iteration count.
const ITERATIONS: u64 = 500;

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("random");
    b
}

fn header(
    transaction_id: [u8; 16],
    recip_nonce: Option<Vec<u8>>,
    implicit: bool,
) -> ResponseHeader {
    ResponseHeader {
        sender: Name::default(),
        recipient: GeneralName::DirectoryName(Name::default()),
        message_time: unix_now(),
        transaction_id: transaction_id.to_vec(),
        sender_nonce: random16(),
        recip_nonce,
        sender_kid: Some(KID.to_vec()),
        implicit_confirm: implicit,
        pvno: 2,
    }
}

/// A PBM-protected ir for a fresh P-256 key, signature POP; its transactionID.
fn ir(secret: &[u8], name: &str, implicit: bool) -> ([u8; 16], Vec<u8>) {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    use crmf::pop::{PopoSigningKey, ProofOfPossession};
    use crmf::request::{CertReqMsg, CertRequest, CertTemplate};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("key");
    let spki = spki::SubjectPublicKeyInfoOwned {
        algorithm: spki::AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
            parameters: Some(
                der::Any::encode_from(&const_oid::db::rfc5912::SECP_256_R_1).expect("curve"),
            ),
        },
        subject_public_key: BitString::from_bytes(pair.public_key().as_ref()).expect("point"),
    };
    let cert_req = CertRequest {
        cert_req_id: Int::new(&[0]).expect("0"),
        cert_template: CertTemplate {
            version: None,
            serial_number: None,
            signature: None,
            issuer: None,
            validity: None,
            subject: Some(pkid_protocols::name::parse(&format!("CN={name}")).expect("name")),
            subject_public_key_info: Some(spki),
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: None,
        },
        controls: None,
    };
    let sig = pair
        .sign(
            &aws_lc_rs::rand::SystemRandom::new(),
            &cert_req.to_der().expect("certRequest"),
        )
        .expect("sign");
    let msg = CertReqMsg {
        cert_req,
        popo: Some(ProofOfPossession::Signature(Box::new(PopoSigningKey {
            poposk_input: None,
            alg_id: spki::AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            signature: BitString::from_bytes(sig.as_ref()).expect("sig"),
        }))),
        reg_info: None,
    };
    let tid = random16();
    let h = header(tid, None, implicit);
    let pbm = Pbm::sha256(&h.sender_nonce, ITERATIONS).expect("pbm");
    let der = encode_request(
        &h,
        0,
        &vec![msg],
        ResponseProtection::Mac { pbm: &pbm, secret },
        Vec::new(),
    )
    .expect("ir");
    (tid, der)
}

/// The certConf accepting the certificate of `ip`.
fn cert_conf(secret: &[u8], tid: [u8; 16], ip: &ResponseView) -> Option<Vec<u8>> {
    let cert = ip.certificate.as_ref()?.to_der().ok()?;
    let status = proto::CertStatus {
        cert_hash: OctetString::new(proto::cert_hash(&cert, None).ok()?).ok()?,
        cert_req_id: Int::new(&[0]).ok()?,
        status_info: None,
        hash_alg: None,
    };
    let h = header(tid, ip.sender_nonce.clone(), false);
    let pbm = Pbm::sha256(&h.sender_nonce, ITERATIONS).ok()?;
    encode_request(
        &h,
        24,
        &vec![status],
        ResponseProtection::Mac { pbm: &pbm, secret },
        Vec::new(),
    )
    .ok()
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
    fn new() -> Self {
        Self {
            ok: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latency: Histogram::new(3).expect("histogram"),
        }
    }
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn print(&self, name: &str, baseline: Option<(&str, f64)>) {
        let ratio = baseline
            .map(|(n, b)| format!("{:.2}x {n}", self.rate() / b.max(1e-9)))
            .unwrap_or_default();
        println!(
            "{name:<44} {:>7.0}/s  p50 {:>6} µs  p99 {:>6} µs  errors {:>4}  {ratio}",
            self.rate(),
            percentile(&self.latency, 0.5).as_micros(),
            percentile(&self.latency, 0.99).as_micros(),
            self.errors
        );
    }
}

/// Whether a response is the answer a successful step expects (ip 1, pkiConf 19).
fn answered(der: &[u8], tag: u8) -> Option<ResponseView> {
    proto::parse_response(der)
        .ok()
        .filter(|v| v.body_tag == tag)
}

/// The in-process ceiling: `Cmp::handle` on `CLIENTS` threads.
fn ceiling(data: &Path, secret: Arc<[u8]>, irs: Vec<([u8; 16], Vec<u8>)>, confirm: bool) -> Run {
    let opened = pkid::datadir::open(data, true).expect("open data directory");
    let authority = opened.authority.expect("authority");
    let sealer = opened.keys.expect("keys").sealer().expect("sealer");
    let cmp = Arc::new(pkid::cmp::Cmp::new(
        opened.config.clone(),
        opened.store.clone(),
        authority,
        Some(sealer),
        None,
    ));
    let chunks: Vec<Vec<([u8; 16], Vec<u8>)>> = irs
        .chunks(irs.len().div_ceil(CLIENTS))
        .map(<[_]>::to_vec)
        .collect();
    let start = Instant::now();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (cmp, secret) = (cmp.clone(), secret.clone());
            std::thread::spawn(move || {
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                let (mut ok, mut errors) = (0, 0);
                for (tid, der) in chunk {
                    let t = Instant::now();
                    let done = answered(&cmp.handle(Some("bench"), &der).der, 1).and_then(|ip| {
                        if !confirm {
                            return Some(());
                        }
                        let cc = cert_conf(&secret, tid, &ip)?;
                        answered(&cmp.handle(Some("bench"), &cc).der, 19).map(|_| ())
                    });
                    if done.is_some() {
                        ok += 1;
                    } else {
                        errors += 1;
                    }
                    let _ = h.record(t.elapsed().as_micros() as u64);
                }
                (ok, errors, h)
            })
        })
        .collect();
    let mut run = Run::new();
    for handle in handles {
        let (ok, errors, h) = handle.join().expect("thread");
        run.ok += ok;
        run.errors += errors;
        let _ = run.latency.add(&h);
    }
    run.elapsed = start.elapsed();
    run
}

/// Starts `pkid serve` on free loopback ports; returns it and the HTTP address.
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
            if let Some(addr) = line.split("HTTP listener ready addr=").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("pkid did not start its HTTP listener within 60 s");
    (child, addr.parse().expect("address"))
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    sender
}

async fn post(sender: &mut Sender, body: Vec<u8>) -> Option<Vec<u8>> {
    use http_body_util::BodyExt;
    let req = hyper::Request::post("/.well-known/cmp/p/bench")
        .header("host", "127.0.0.1")
        .header("content-type", "application/pkixcmp")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.ok()?;
    if resp.status() != hyper::StatusCode::OK {
        return None;
    }
    Some(resp.into_body().collect().await.ok()?.to_bytes().to_vec())
}

async fn over_http(
    addr: SocketAddr,
    secret: Arc<[u8]>,
    irs: Vec<([u8; 16], Vec<u8>)>,
    confirm: bool,
) -> Run {
    let chunks: Vec<Vec<([u8; 16], Vec<u8>)>> = irs
        .chunks(irs.len().div_ceil(CLIENTS))
        .map(<[_]>::to_vec)
        .collect();
    let mut senders = Vec::new();
    for _ in 0..chunks.len() {
        senders.push(connect(addr).await);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (chunk, mut sender) in chunks.into_iter().zip(senders) {
        let secret = secret.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            let (mut ok, mut errors) = (0u64, 0u64);
            for (tid, der) in chunk {
                let t = Instant::now();
                let mut done = false;
                if let Some(ip) = post(&mut sender, der).await.and_then(|r| answered(&r, 1)) {
                    done = !confirm;
                    if confirm {
                        if let Some(cc) = cert_conf(&secret, tid, &ip) {
                            done = post(&mut sender, cc)
                                .await
                                .and_then(|r| answered(&r, 19))
                                .is_some();
                        }
                    }
                }
                if done {
                    ok += 1;
                } else {
                    errors += 1;
                }
                let _ = h.record(t.elapsed().as_micros() as u64);
            }
            (ok, errors, h)
        }));
    }
    let mut run = Run::new();
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
    let n = arg(1, 2000);
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
            "cmp",
            "--name",
            "bench",
        ],
    );
    let secret: Arc<[u8]> = String::from_utf8_lossy(&out)
        .lines()
        .last()
        .expect("secret")
        .as_bytes()
        .into();
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
        "\n[[cmp.labels]]\nname = \"bench\"\nprofile = \"tls-client\"\norganisation = \"{ORG}\"\n"
    ));
    std::fs::write(&config, text).expect("write pkid.toml");

    // Built just before each run: messageTime must be within the server's window.
    let build = |stem: &str, implicit: bool| -> Vec<([u8; 16], Vec<u8>)> {
        (0..n)
            .map(|i| ir(&secret, &format!("{stem}-{i}"), implicit))
            .collect()
    };
    println!("{n} transactions per run, {CLIENTS} concurrent clients");
    let ceiling_implicit = ceiling(&data, secret.clone(), build("ci", true), false);
    let ceiling_confirm = ceiling(&data, secret.clone(), build("cc", false), true);
    let (mut child, addr) = start_daemon(&data);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _ = rt.block_on(over_http(
        addr,
        secret.clone(),
        build("warm", true)[..CLIENTS].to_vec(),
        false,
    ));
    let http_implicit = rt.block_on(over_http(addr, secret.clone(), build("hi", true), false));
    let http_confirm = rt.block_on(over_http(addr, secret.clone(), build("hc", false), true));
    let _ = child.kill();
    let _ = child.wait();

    println!("durable (each commit on disk before the answer) ir transactions, PBM SHA-256 x{ITERATIONS}:");
    ceiling_implicit.print("in-process ceiling, implicitConfirm", None);
    http_implicit.print(
        "HTTP keep-alive, implicitConfirm",
        Some(("ceiling", ceiling_implicit.rate())),
    );
    ceiling_confirm.print("in-process ceiling, ir + certConf", None);
    http_confirm.print(
        "HTTP keep-alive, ir + certConf",
        Some(("ceiling", ceiling_confirm.rate())),
    );
    for (name, run, base) in [
        ("implicitConfirm", &http_implicit, &ceiling_implicit),
        ("ir + certConf", &http_confirm, &ceiling_confirm),
    ] {
        let p99 = percentile(&run.latency, 0.99);
        println!(
            "goals ({name}): >= 0.6x ceiling: {}; p99 < 25 ms: {} ({} µs)",
            if run.rate() >= 0.6 * base.rate() {
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
}
