//! Service tests: the TSA without a socket, with a fake clock, a fake clock-sync source and a
//! real SQLite store in a temporary directory.

use super::*;
use crate::clock::kernel::KernelClock;
use crate::clock::FakeClock;
use crate::keys::software::SoftwareBackend;
use crate::store::sqlite::SqliteStore;
use der::{Decode, Encode};
use pkid_protocols::profile::Profile;
use pkid_protocols::tsp::status::{FailureInfo, PkiStatus, TimeStampResp};
use pkid_protocols::x509::{build_tbs, CertificateTemplate, ToBeSigned};
use pkid_protocols::KeyType;
use std::collections::HashSet;

const NOW: u64 = 1_800_000_000;

struct FixedSync(Option<KernelClock>, Arc<Mutex<bool>>);

impl ClockSyncSource for FixedSync {
    fn read(&self) -> Option<KernelClock> {
        let unsync = self.1.lock().map(|g| *g).unwrap_or(true);
        self.0.map(|k| KernelClock {
            unsynchronised: unsync,
            ..k
        })
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    signer: Arc<dyn Signer>,
    metrics: Arc<Metrics>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tmp");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("pkid.db"), Duration::from_secs(5)).expect("store"),
    );
    let signer = SoftwareBackend::new(dir.path().join("keys"))
        .generate(&KeyRole::Tsa, KeyType::EcP256)
        .expect("key");
    Fixture {
        dir,
        store,
        signer,
        metrics: Arc::new(Metrics::new()),
    }
}

fn certificate(signer: &dyn Signer, profile: &Profile) -> Vec<u8> {
    let template = CertificateTemplate {
        serial: pkid_protocols::serial::from_random([3; 16]),
        subject: pkid_protocols::name::parse("CN=Test TSA,O=pkid,C=VN").expect("name"),
        public_key: signer.public_key().clone(),
        not_before: NOW - 60,
        not_after: NOW + 30 * 86_400,
        subject_alt_name: None,
    };
    let tbs = build_tbs(profile, None, &template, signer.algorithm()).expect("tbs");
    let unsigned = ToBeSigned::new(&tbs, signer.algorithm(), signer.public_key()).expect("tbs");
    crate::keys::sign(signer, unsigned).expect("sign")
}

fn config(mode: ClockSyncMode) -> TsaConfig {
    let mut c = Config::parse(std::path::Path::new("/d"), None, "defaults")
        .expect("defaults")
        .tsa;
    c.clock_sync = mode;
    c.serial_block = 8;
    c.record_interval = Duration::from_millis(10);
    c
}

fn tsa_with(
    f: &Fixture,
    c: &TsaConfig,
    sync: Box<dyn ClockSyncSource>,
) -> Result<Arc<Tsa>, TsaStartError> {
    let der = certificate(f.signer.as_ref(), &Profile::tsa(365));
    Tsa::new(
        c,
        &der,
        f.signer.clone(),
        f.store.clone(),
        Arc::new(FakeClock::new(NOW)),
        sync,
        f.metrics.clone(),
    )
    .map(Arc::new)
}

fn tsa(f: &Fixture) -> Arc<Tsa> {
    tsa_with(
        f,
        &config(ClockSyncMode::Ignore),
        Box::new(KernelSyncSource),
    )
    .expect("tsa")
}

/// A DER TimeStampReq for SHA-256 of `doc`, built by hand like `openssl ts -query -sha256 -cert`.
fn query(doc: &[u8], policy: Option<&str>) -> Vec<u8> {
    let hash = tsp::HashAlgorithm::Sha256.digest(doc);
    let mut inner = vec![0x02, 0x01, 0x01];
    let mut imprint = vec![
        0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
        0x04, 0x20,
    ];
    imprint.extend_from_slice(&hash);
    inner.push(0x30);
    inner.push(imprint.len() as u8);
    inner.extend_from_slice(&imprint);
    if let Some(p) = policy {
        inner.extend_from_slice(
            &der::asn1::ObjectIdentifier::new_unwrap(p)
                .to_der()
                .expect("oid"),
        );
    }
    inner.extend_from_slice(&[0x02, 0x04, 0x11, 0x22, 0x33, 0x44, 0x01, 0x01, 0xff]);
    let mut q = vec![0x30, inner.len() as u8];
    q.extend_from_slice(&inner);
    q
}

fn status_of(der: &[u8]) -> (PkiStatus, Vec<FailureInfo>) {
    let resp = TimeStampResp::from_der(der).expect("TimeStampResp");
    (
        resp.status.status,
        resp.status
            .fail_info
            .as_ref()
            .map(FailureInfo::from_bit_string)
            .unwrap_or_default(),
    )
}

fn serial_of(t: &Tsa, der: &[u8]) -> u64 {
    let tst = tsp::verify_response(der, t.certificate.certificate()).expect("verifies");
    tst.serial_number
        .as_bytes()
        .iter()
        .fold(0u64, |n, b| n << 8 | u64::from(*b))
}

#[test]
fn serial_blocks_prefetch_and_never_repeat_across_reopen() {
    let f = fixture();
    let a = SerialAllocator::open(f.store.clone(), 4).expect("open");
    let first: Vec<u64> = (0..10).map(|_| a.next().expect("serial")).collect();
    assert_eq!(
        first,
        (1..=10).collect::<Vec<_>>(),
        "sequential across block boundaries"
    );
    drop(a);
    let b = SerialAllocator::open(f.store.clone(), 4).expect("reopen");
    let after = b.next().expect("serial");
    assert!(
        after > 10,
        "a restart continues after the persisted mark, got {after}"
    );
}

#[test]
fn concurrent_serials_are_unique() {
    let f = fixture();
    let a = Arc::new(SerialAllocator::open(f.store.clone(), 16).expect("open"));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || {
                (0..200)
                    .map(|_| a.next().expect("serial"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = HashSet::new();
    for h in handles {
        for s in h.join().expect("thread") {
            assert!(all.insert(s), "serial {s} handed out twice");
        }
    }
    assert_eq!(all.len(), 800);
}

#[tokio::test]
async fn granted_tokens_verify_and_are_recorded_in_batches() {
    let f = fixture();
    let t = tsa(&f);
    t.start();
    let doc = b"document";
    let a = t.respond(&query(doc, None)).await;
    let b = t.respond(&query(doc, None)).await;
    assert_eq!(status_of(&a).0, PkiStatus::Granted);
    let (sa, sb) = (serial_of(&t, &a), serial_of(&t, &b));
    assert_ne!(sa, sb);
    t.shutdown().await;
    let rec = f.store.timestamp(sa).expect("lookup").expect("recorded");
    assert_eq!(rec.imprint, tsp::HashAlgorithm::Sha256.digest(doc));
    assert_eq!(
        (
            rec.gen_time,
            rec.policy.as_str(),
            rec.hash_algorithm.as_str()
        ),
        (NOW, "1.3.6.1.4.1.32473.3161.1", "sha256")
    );
    assert!(f.store.timestamp(sb).expect("lookup").is_some());
    assert_eq!(f.metrics.tsa.tokens_issued.get(), 2);
}

#[tokio::test]
async fn rejections_are_answered_and_counted_by_fail_info() {
    let f = fixture();
    let t = tsa(&f);
    assert_eq!(
        status_of(&t.respond(b"garbage").await),
        (PkiStatus::Rejection, vec![FailureInfo::BadRequest])
    );
    assert_eq!(
        status_of(&t.respond(&query(b"x", Some("1.2.3.4"))).await),
        (PkiStatus::Rejection, vec![FailureInfo::UnacceptedPolicy])
    );
    assert_eq!(
        f.metrics
            .tsa
            .rejections
            .with_label_values(&["badRequest"])
            .get(),
        1
    );
    assert_eq!(
        f.metrics
            .tsa
            .rejections
            .with_label_values(&["unacceptedPolicy"])
            .get(),
        1
    );
    assert_eq!(f.metrics.tsa.tokens_issued.get(), 0);
}

#[tokio::test]
async fn a_full_record_queue_refuses_instead_of_issuing_unrecorded_tokens() {
    let f = fixture();
    let mut c = config(ClockSyncMode::Ignore);
    c.record_backlog = 1;
    let t = tsa_with(&f, &c, Box::new(KernelSyncSource)).expect("tsa");
    // The writer is not started: the one slot fills and stays full.
    assert_eq!(
        status_of(&t.respond(&query(b"1", None)).await).0,
        PkiStatus::Granted
    );
    assert_eq!(
        status_of(&t.respond(&query(b"2", None)).await),
        (PkiStatus::Rejection, vec![FailureInfo::SystemFailure])
    );
    t.start();
    let mut waited = 0;
    // Serial 1 went to the start-up probe; the first token is serial 2.
    while f.store.timestamp(2).expect("lookup").is_none() && waited < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(
        status_of(&t.respond(&query(b"3", None)).await).0,
        PkiStatus::Granted,
        "the drained queue has room again"
    );
    t.shutdown().await;
    assert_eq!(
        status_of(&t.respond(&query(b"4", None)).await).1,
        vec![FailureInfo::SystemFailure],
        "a stopped TSA cannot record, so it does not issue"
    );
}

#[tokio::test]
async fn clock_sync_modes() {
    let synced = KernelClock {
        unsynchronised: false,
        max_error_us: 20_000,
    };
    let sync_flag = Arc::new(Mutex::new(true));
    let f = fixture();
    let source = || Box::new(FixedSync(Some(synced), sync_flag.clone()));
    let require = tsa_with(&f, &config(ClockSyncMode::Require), source()).expect("tsa");
    let auto = tsa_with(&f, &config(ClockSyncMode::Auto), source()).expect("tsa");
    let ignore = tsa_with(&f, &config(ClockSyncMode::Ignore), source()).expect("tsa");
    let q = query(b"doc", None);
    // Never synchronised (a host without an NTP daemon): only "require" refuses.
    assert_eq!(
        status_of(&require.respond(&q).await),
        (PkiStatus::Rejection, vec![FailureInfo::TimeNotAvailable])
    );
    assert_eq!(status_of(&auto.respond(&q).await).0, PkiStatus::Granted);
    assert_eq!(f.metrics.tsa.clock_synchronised.get(), 0);
    *sync_flag.lock().expect("lock") = false;
    assert_eq!(status_of(&require.respond(&q).await).0, PkiStatus::Granted);
    assert_eq!(status_of(&auto.respond(&q).await).0, PkiStatus::Granted);
    assert_eq!(f.metrics.tsa.clock_synchronised.get(), 1);
    // Synchronisation lost while running: "auto" now refuses too.
    *sync_flag.lock().expect("lock") = true;
    assert_eq!(
        status_of(&auto.respond(&q).await),
        (PkiStatus::Rejection, vec![FailureInfo::TimeNotAvailable])
    );
    assert_eq!(status_of(&ignore.respond(&q).await).0, PkiStatus::Granted);
    // Synchronised, but the kernel's error bound is worse than the declared accuracy.
    let sloppy = Box::new(FixedSync(
        Some(KernelClock {
            unsynchronised: false,
            max_error_us: 5_000_000,
        }),
        Arc::new(Mutex::new(false)),
    ));
    let t = tsa_with(&f, &config(ClockSyncMode::Require), sloppy).expect("tsa");
    assert_eq!(
        status_of(&t.respond(&q).await),
        (PkiStatus::Rejection, vec![FailureInfo::TimeNotAvailable])
    );
    // A platform that cannot tell: "require" refuses, "auto" issues.
    let unknown = tsa_with(
        &f,
        &config(ClockSyncMode::Require),
        Box::new(FixedSync(None, Arc::new(Mutex::new(false)))),
    )
    .expect("tsa");
    assert_eq!(
        status_of(&unknown.respond(&q).await).1,
        vec![FailureInfo::TimeNotAvailable]
    );
}

#[test]
fn the_tsa_refuses_to_start_with_a_certificate_that_is_not_a_tsa_certificate() {
    let f = fixture();
    let c = config(ClockSyncMode::Ignore);
    let mut not_critical = Profile::tsa(365);
    not_critical.extended_key_usage_critical = false;
    let mut extra = Profile::tsa(365);
    extra
        .extended_key_usage
        .push(const_oid::db::rfc5280::ID_KP_CODE_SIGNING);
    for (what, profile) in [
        ("non-critical EKU", not_critical),
        ("extra EKU", extra),
        ("OCSP certificate", Profile::ocsp_responder(365)),
    ] {
        let der = certificate(f.signer.as_ref(), &profile);
        let r = Tsa::new(
            &c,
            &der,
            f.signer.clone(),
            f.store.clone(),
            Arc::new(FakeClock::new(NOW)),
            Box::new(KernelSyncSource),
            f.metrics.clone(),
        );
        assert!(matches!(r, Err(TsaStartError::Certificate(_))), "{what}");
    }
    let der = certificate(f.signer.as_ref(), &Profile::tsa(365));
    let expired = Tsa::new(
        &c,
        &der,
        f.signer.clone(),
        f.store.clone(),
        Arc::new(FakeClock::new(NOW + 400 * 86_400)),
        Box::new(KernelSyncSource),
        f.metrics.clone(),
    );
    assert!(matches!(expired, Err(TsaStartError::Validity(_))));
    let other = SoftwareBackend::new(f.dir.path().join("other"))
        .generate(&KeyRole::Tsa, KeyType::EcP256)
        .expect("key");
    let mismatch = Tsa::new(
        &c,
        &der,
        other,
        f.store.clone(),
        Arc::new(FakeClock::new(NOW)),
        Box::new(KernelSyncSource),
        f.metrics.clone(),
    );
    assert!(matches!(
        mismatch,
        Err(TsaStartError::Certificate(TsaCertificateError::KeyMismatch))
    ));
}
