//! Remote-signing benchmark: `signatures/signHash` through the CSC service against raw ECDSA
//! signing with the same keys, in the same run, over a store of 100,000 provisioned subscribers.
//!
//! ```text
//! populate   N subscribers (accounts, certificates, RA requests, P-256 keys sealed under the
//!            data key of a software backend), straight into the data directory's SQLite
//! raw        16 threads: EcdsaKeyPair::sign_digest of a SHA-256 value (the keys opened once)
//! csc SAD=1  16 threads, each 50 subscribers logged in (Argon2id once each); per round every
//!            subscriber authorises one hash with its TOTP code (SAD for 1) and signs it with
//!            signHash; the clock moves one TOTP step between rounds (a code is accepted once)
//! csc SAD=10 the same with 10 hashes per SAD, one hash per signHash call
//! ```
//!
//! Only the signHash calls are timed (the authorisations of a round run before its signing
//! phase starts); each signHash reads the credential and the certificate status from the store
//! and commits its audit row (on disk, group-committed) before it returns. In-process: no HTTP, no TLS.
//!
//! ```text
//! cargo build --release -p pkid-bench -p pkid && target/release/csc [subscribers] [rounds]
//! ```
//!
//! Goal (issue 16): signHash ≥ 0.5× raw, p99 < 20 ms.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::Engine;
use hdrhistogram::Histogram;
use pkid::clock::{Clock, FakeClock};
use pkid::csc::{Csc, CscParts, Session, ECDSA_SHA256_OID};
use pkid::keys::seal::DataSealer;
use pkid::store::csc::{key_context, totp_context};
use pkid_bench::daemon;
use rusqlite::{params, Connection};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const THREADS: usize = 16;
const PER_THREAD: usize = 50;
const PASSWORD: &str = "Mật khẩu ký số 2026!";
const TOTP_SECRET: &[u8; 20] = b"pkid-bench-totp-key!";

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")
}

/// Inserts `n` subscribers; returns their emails.
fn populate(conn: &mut Connection, sealer: &dyn DataSealer, n: usize, now: u64) -> Vec<String> {
    let phc = pkid::ra::credentials::hash_password(PASSWORD).expect("phc");
    let tx = conn.transaction().expect("tx");
    tx.execute(
        "INSERT INTO organisations (id, name, path, sector, created_at)
         VALUES ('truong-bench', 'Trường THPT Chuyên Lê Quý Đôn', '/truong-bench/', 'education', ?1)",
        [now],
    )
    .expect("organisation");
    let mut emails = Vec::with_capacity(n);
    for i in 0..n {
        let id = i as i64 + 1;
        let serial = format!("7{:031x}", i);
        let email = format!("gv{i}@lqd.edu.vn");
        tx.execute(
            "INSERT INTO requests (id, kind, organisation, org_path, state, key_origin,
                                   submitted_by, submitted_at, updated_at)
             VALUES (?1, 'issue', 'truong-bench', '/truong-bench/', 'fulfilled', 'central',
                     'bench', ?2, ?2)",
            params![id, now],
        )
        .expect("request");
        tx.execute(
            "INSERT INTO certificates (serial, issuer, subject, profile, not_before, not_after,
                                       status, tbs, created_at, updated_at)
             VALUES (?1, 'issuing', 'CN=bench', 'person', ?2, ?3, 'valid', x'', ?2, ?2)",
            params![serial, now - 60, now + 365 * 86_400],
        )
        .expect("certificate");
        let totp = sealer
            .seal(TOTP_SECRET, totp_context(id).as_bytes())
            .expect("seal totp");
        tx.execute(
            "INSERT INTO csc_accounts (id, email, organisation, state, password_phc, totp_sealed,
                                       created_at, updated_at)
             VALUES (?1, ?2, 'truong-bench', 'active', ?3, ?4, ?5, ?5)",
            params![id, email, phc, totp, now],
        )
        .expect("account");
        let pkcs8 =
            pkid::keys::software::generate_pkcs8(pkid_protocols::KeyType::EcP256).expect("key");
        let credential = format!("{:032x}", i);
        let sealed = sealer
            .seal(&pkcs8, key_context(&credential).as_bytes())
            .expect("seal key");
        tx.execute(
            "INSERT INTO csc_credentials (id, account, request, serial, key_sealed, enabled,
                                          created_at)
             VALUES (?1, ?2, ?2, ?3, ?4, 1, ?5)",
            params![credential, id, serial, sealed, now],
        )
        .expect("credential");
        emails.push(email);
    }
    tx.commit().expect("commit");
    emails
}

struct Measured {
    signatures: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.signatures as f64 / self.elapsed.as_secs_f64()
    }
    fn p(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// One subscriber as a thread holds it.
struct Held {
    session: Session,
    credential: String,
}

fn hashes(n: usize, salt: u64) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    (0..n)
        .map(|i| {
            b64.encode(digest::digest(
                &digest::SHA256,
                format!("{salt}:{i}").as_bytes(),
            ))
        })
        .collect()
}

/// Rounds of authorise-then-sign with `per_sad` hashes per SAD; only the signing phases timed.
fn csc_phase(
    csc: &Arc<Csc>,
    clock: &Arc<FakeClock>,
    held: &[Vec<Held>],
    rounds: usize,
    per_sad: usize,
) -> Measured {
    let latency = Mutex::new(histogram());
    let barrier = Barrier::new(THREADS + 1);
    let mut signing = Duration::ZERO;
    let mut signatures = 0u64;
    std::thread::scope(|s| {
        for (t, mine) in held.iter().enumerate() {
            let csc = csc.clone();
            let clock = clock.clone();
            let (latency, barrier) = (&latency, &barrier);
            s.spawn(move || {
                let mut h = histogram();
                for round in 0..rounds {
                    let mut sads = Vec::with_capacity(mine.len());
                    for (i, sub) in mine.iter().enumerate() {
                        let hs = hashes(per_sad, (round * 1_000_000 + t * 1000 + i) as u64);
                        let code = pkid::ra::credentials::totp_code(
                            TOTP_SECRET,
                            &format!("gv{}@lqd.edu.vn", sub.session.account - 1),
                            clock.now(),
                        )
                        .expect("code");
                        let (sad, _) = csc
                            .authorize(
                                &sub.session,
                                &sub.credential,
                                per_sad as u32,
                                &hs,
                                None,
                                Some(&code),
                                None,
                                "127.0.0.1",
                            )
                            .expect("authorize");
                        sads.push((sad, hs));
                    }
                    barrier.wait(); // authorised
                    barrier.wait(); // go
                    for (sub, (sad, hs)) in mine.iter().zip(&sads) {
                        for hash in hs {
                            let started = Instant::now();
                            let sig = csc
                                .sign_hash(
                                    &sub.session,
                                    &sub.credential,
                                    sad,
                                    std::slice::from_ref(hash),
                                    None,
                                    ECDSA_SHA256_OID,
                                    "127.0.0.1",
                                )
                                .expect("signHash");
                            h.record(started.elapsed().as_micros() as u64).ok();
                            assert_eq!(sig.len(), 1);
                        }
                    }
                    barrier.wait(); // signed
                    barrier.wait(); // the clock moved
                }
                latency.lock().expect("histogram").add(&h).expect("merge");
            });
        }
        for _ in 0..rounds {
            barrier.wait();
            let started = Instant::now();
            barrier.wait();
            barrier.wait();
            signing += started.elapsed();
            signatures += (THREADS * PER_THREAD * per_sad) as u64;
            clock.advance(30);
            barrier.wait();
        }
    });
    Measured {
        signatures,
        elapsed: signing,
        latency: latency.into_inner().expect("histogram"),
    }
}

fn raw_phase(keys: &[Vec<EcdsaKeyPair>], per_thread: usize) -> Measured {
    let latency = Mutex::new(histogram());
    let started = Instant::now();
    std::thread::scope(|s| {
        for (t, mine) in keys.iter().enumerate() {
            let latency = &latency;
            s.spawn(move || {
                let mut h = histogram();
                for i in 0..per_thread {
                    let key = &mine[i % mine.len()];
                    let d = digest::digest(&digest::SHA256, format!("raw:{t}:{i}").as_bytes());
                    let t0 = Instant::now();
                    let sig = key.sign_digest(&d).expect("sign");
                    h.record(t0.elapsed().as_micros() as u64).ok();
                    assert!(!sig.as_ref().is_empty());
                }
                latency.lock().expect("histogram").add(&h).expect("merge");
            });
        }
    });
    Measured {
        signatures: (keys.len() * per_thread) as u64,
        elapsed: started.elapsed(),
        latency: latency.into_inner().expect("histogram"),
    }
}

fn line(name: &str, r: &Measured, raw: Option<&Measured>) {
    let ratio = raw.map_or(String::new(), |b| {
        format!("  {:.3}× raw", r.rate() / b.rate())
    });
    println!(
        "{name:<28} {:>9} signatures  {:>10.0}/s  p50 {:>8.2} ms  p99 {:>8.2} ms{ratio}",
        r.signatures,
        r.rate(),
        r.p(0.5),
        r.p(0.99)
    );
}

fn main() {
    let subscribers = arg(1, 100_000).max(THREADS * PER_THREAD);
    let rounds = arg(2, 4);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    daemon::pkid(&data, &["init"]);
    let opened = pkid::datadir::open(&data, true).expect("open");
    let keys = opened.keys.clone().expect("keys");
    let sealer = keys.sealer().expect("sealer");
    // 2026-12-01 10:00 +07:00, well inside the certificates' validity.
    let clock = Arc::new(FakeClock::new(1_796_094_000));
    let now = clock.now();
    let mut conn = Connection::open(data.join("pkid.db")).expect("db");
    let started = Instant::now();
    let emails = populate(&mut conn, sealer.as_ref(), subscribers, now);
    drop(conn);
    eprintln!(
        "provisioned {subscribers} subscribers in {:?}",
        started.elapsed()
    );

    let csc = Arc::new(
        Csc::new(CscParts {
            store: opened.store.clone(),
            sealer: sealer.clone(),
            authority: opened.authority.clone().expect("authority"),
            config: opened.config.csc.clone(),
            clock: clock.clone(),
        })
        .expect("csc"),
    );
    // 16 threads × 50 subscribers spread over the whole population, logged in once.
    let started = Instant::now();
    let stride = subscribers / (THREADS * PER_THREAD);
    let held: Vec<Vec<Held>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (csc, emails) = (csc.clone(), &emails);
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            let n = (t * PER_THREAD + i) * stride;
                            let (token, _) =
                                csc.login(&emails[n], PASSWORD, "127.0.0.1").expect("login");
                            let session = csc.session(&token, "127.0.0.1").expect("session");
                            let credential = format!("{n:032x}");
                            Held {
                                session,
                                credential,
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("login thread"))
            .collect()
    });
    eprintln!(
        "logged in {} subscribers in {:?}",
        THREADS * PER_THREAD,
        started.elapsed()
    );

    // The same keys, opened once, for the raw baseline.
    let raw_keys: Vec<Vec<EcdsaKeyPair>> = held
        .iter()
        .map(|mine| {
            mine.iter()
                .map(|h| {
                    let store = opened.store.clone();
                    let c = store
                        .csc_credential(&h.credential)
                        .expect("store")
                        .expect("credential");
                    let pkcs8 = sealer
                        .open(&c.key_sealed, key_context(&c.id).as_bytes())
                        .expect("open");
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8).expect("key")
                })
                .collect()
        })
        .collect();

    let sad1 = csc_phase(&csc, &clock, &held, rounds, 1);
    let sad10 = csc_phase(&csc, &clock, &held, rounds.div_ceil(4).max(1), 10);
    let per_thread = (sad1.signatures.max(sad10.signatures) as usize / THREADS).max(1000);
    let raw = raw_phase(&raw_keys, per_thread);

    println!("# csc: {subscribers} subscribers provisioned, {THREADS} threads, in-process, software keys");
    line("raw ECDSA P-256 sign_digest", &raw, None);
    line("signHash, SAD for 1", &sad1, Some(&raw));
    line("signHash, SAD for 10", &sad10, Some(&raw));
}
