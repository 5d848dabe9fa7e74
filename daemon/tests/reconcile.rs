//! Reconciling issuances that were killed between reserving their serial and storing the
//! signed certificate: `pkid cert reconcile`, and the same pass at `serve` start.
//!
//! ```text
//!  store.reserve (a killed issuance) ─▶ App::build on a FakeClock past the bound
//!     ─▶ row abandoned + audited; OCSP unknown; CRL does not list it; a second pass does nothing
//!  a fresh pending row (inside the bound) ─▶ left alone
//!  pkid cert reconcile ─▶ a pending row whose stored DER verifies is completed; one whose DER
//!     is not its own TBS signed by its issuer is abandoned
//! ```

mod common;

use common::inprocess::{build_app, get, ocsp_get_path, ocsp_single};
use common::*;
use der::Decode;
use hyper::StatusCode;
use pkid::clock::{Clock, FakeClock, SystemClock};
use pkid::config::Config;
use pkid::store::{CertStatus, NewCertificate, Store};
use std::path::Path;
use std::sync::Arc;

/// An hour and a day: past any bound the daemon may choose for a live issuance.
const LONG_AGO: u64 = 25 * 3600;

fn store_of(data: &Path) -> Arc<dyn Store> {
    let config = Config::load(data).expect("config");
    pkid::datadir::store(&config).expect("store")
}

/// Reserves a serial as `sign_and_store` does before signing, and never completes it: what a
/// process killed in the middle of an issuance leaves behind.
fn reserve(store: &dyn Store, serial: &str, created_at: u64) {
    store
        .reserve(&NewCertificate {
            serial: serial.into(),
            issuer: "issuing".into(),
            subject: "CN=Trần Thị Bích".into(),
            profile: "person".into(),
            not_before: created_at,
            not_after: created_at + 86_400,
            tbs: vec![0x30, 0x00],
            replaces: None,
            created_at,
        })
        .expect("reserve");
}

fn reconcile_audits(store: &dyn Store, serial: &str) -> Vec<pkid::store::AuditEntry> {
    store
        .audit_log(1000)
        .expect("audit")
        .into_iter()
        .filter(|e| e.action == "cert.reconcile" && e.target == serial)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_start_abandons_a_killed_issuance_and_leaves_a_fresh_one_alone() {
    let data = init(&[]);
    let d = data.path();
    let work = tempdir();
    let now = SystemClock.now();
    let (stale, fresh) = (
        "7a11ed00000000000000000000000001",
        "7a11ed00000000000000000000000002",
    );
    {
        let store = store_of(d);
        reserve(store.as_ref(), stale, now - LONG_AGO);
        reserve(store.as_ref(), fresh, now - 60);
    }

    // The daemon starts (on a fake clock at the real time) and reconciles before it serves.
    let clock = Arc::new(FakeClock::new(now));
    let app = build_app(d, clock.clone()).await;
    let store = app.state().store.clone();
    let rec = store.certificate(stale).expect("get").expect("row kept");
    assert_eq!(rec.status, CertStatus::Abandoned, "the killed issuance");
    assert_eq!(rec.der, None);
    let audits = reconcile_audits(store.as_ref(), stale);
    assert_eq!(audits.len(), 1, "audited once: {audits:?}");
    assert!(audits[0].detail.contains("abandoned"), "{audits:?}");
    assert_eq!(
        store.certificate(fresh).expect("get").expect("row").status,
        CertStatus::Pending,
        "an issuance that may still be running is not touched"
    );
    assert!(reconcile_audits(store.as_ref(), fresh).is_empty());

    // Never good: OCSP answers unknown for the abandoned serial, and its serial stays taken.
    let router = app.routers().https;
    let serial = format!("0x{stale}");
    let (status, body) = get(
        &router,
        &ocsp_get_path(d, work.path(), ["-serial", &serial]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ocsp_single(&body).status, "unknown");
    assert!(matches!(
        store.reserve(&NewCertificate {
            serial: stale.into(),
            issuer: "issuing".into(),
            subject: "CN=x".into(),
            profile: "person".into(),
            not_before: now,
            not_after: now + 1,
            tbs: vec![],
            replaces: None,
            created_at: now,
        }),
        Err(pkid::store::StoreError::DuplicateSerial(_))
    ));
    // Not listed on the CRL either.
    let (status, crl) = get(&router, "/crl/issuing.crl").await;
    assert_eq!(status, StatusCode::OK);
    let crl = x509_cert::crl::CertificateList::from_der(&crl).expect("CRL");
    let listed: Vec<String> = crl
        .tbs_cert_list
        .revoked_certificates
        .unwrap_or_default()
        .iter()
        .map(|r| pkid_protocols::serial::to_hex(&r.serial_number))
        .collect();
    assert!(!listed.iter().any(|s| s == stale), "{listed:?}");

    // A second pass, later (the fresh row is stale by then), finds only the fresh row.
    clock.advance(LONG_AGO);
    let ra = pkid::ra::RegistrationAuthority::new(app.state().authority.clone());
    let second = tokio::task::spawn_blocking(move || ra.reconcile("e2e"))
        .await
        .expect("task")
        .expect("reconcile");
    assert_eq!(second.abandoned, vec![fresh.to_string()]);
    assert!(second.completed.is_empty());
    assert_eq!(
        reconcile_audits(store.as_ref(), stale).len(),
        1,
        "nothing new for the first"
    );
    let ra = pkid::ra::RegistrationAuthority::new(app.state().authority.clone());
    let third = tokio::task::spawn_blocking(move || ra.reconcile("e2e"))
        .await
        .expect("task")
        .expect("reconcile");
    assert!(
        third.abandoned.is_empty() && third.completed.is_empty(),
        "{third:?}"
    );
}

/// Turns an issued certificate's row back into a stale pending row that still holds `der`, as
/// a store that wrote the DER before the status would leave it.
fn make_pending_with_der(data: &Path, serial: &str, der: &[u8], created_at: u64) {
    let conn = rusqlite::Connection::open(data.join("pkid.db")).expect("open db");
    let n = conn
        .execute(
            "UPDATE certificates SET status = 'pending', der = ?2, created_at = ?3 WHERE serial = ?1",
            rusqlite::params![serial, der, created_at],
        )
        .expect("update");
    assert_eq!(n, 1);
}

#[test]
fn cert_reconcile_completes_a_recoverable_row_and_abandons_a_forged_one() {
    let data = init(&[]);
    let d = data.path();
    let work = tempdir();
    let (_k1, csr1) = make_csr(work.path(), "/C=VN/O=Sở Y tế/CN=Lê Văn Hùng", "ec:P-256");
    let (_k2, csr2) = make_csr(work.path(), "/C=VN/O=Sở Y tế/CN=Đỗ Thu Hà", "ec:P-256");
    let (_k3, csr3) = make_csr(work.path(), "/C=VN/O=Sở Y tế/CN=Phan Văn Tú", "ec:P-256");
    let (good, good_pem) = issue(d, &csr1, "person", &[]);
    let (forged, _) = issue(d, &csr2, "person", &[]);
    let (bad_sig, bad_sig_pem) = issue(d, &csr3, "person", &[]);
    let to_der = |pem: &Path| {
        let out = unique_path(work.path(), "cert", "der");
        openssl_ok(&[
            "x509",
            "-in",
            path_str(pem),
            "-outform",
            "DER",
            "-out",
            path_str(&out),
        ]);
        read(&out)
    };
    // Its own TBS, but the last octet of the ECDSA signature's s changed: still DER, no longer
    // the issuer's signature.
    let good_der = to_der(&good_pem);
    let mut bad_sig_der = to_der(&bad_sig_pem);
    *bad_sig_der.last_mut().expect("bytes") ^= 0x01;
    let long_ago = SystemClock.now() - LONG_AGO;
    // `good` holds its own signed certificate; `forged` holds `good`'s, which is not its TBS.
    make_pending_with_der(d, &good, &good_der, long_ago);
    make_pending_with_der(d, &forged, &good_der, long_ago);
    make_pending_with_der(d, &bad_sig, &bad_sig_der, long_ago);
    let fresh = "7a11ed00000000000000000000000003";
    reserve(store_of(d).as_ref(), fresh, SystemClock.now());

    let out = pkid_ok(d, &["cert", "reconcile"]);
    assert!(out.contains(&format!("completed {good}")), "{out}");
    assert!(out.contains(&format!("abandoned {forged}")), "{out}");
    assert!(out.contains(&format!("abandoned {bad_sig}")), "{out}");
    assert!(!out.contains(fresh), "{out}");

    let store = store_of(d);
    let rec = store.certificate(&good).expect("get").expect("row");
    assert_eq!(
        (rec.status, rec.der.as_deref()),
        (CertStatus::Valid, Some(&good_der[..]))
    );
    assert_eq!(reconcile_audits(store.as_ref(), &good).len(), 1);
    assert_eq!(
        store
            .certificate(&forged)
            .expect("get")
            .expect("row")
            .status,
        CertStatus::Abandoned
    );
    assert_eq!(
        store.certificate(fresh).expect("get").expect("row").status,
        CertStatus::Pending
    );
    let detail = |serial: &str| reconcile_audits(store.as_ref(), serial)[0].detail.clone();
    assert!(
        detail(&forged).contains("not the reserved TBS"),
        "{}",
        detail(&forged)
    );
    assert!(
        detail(&bad_sig).contains("does not verify"),
        "{}",
        detail(&bad_sig)
    );
    let shown = pkid_ok(d, &["cert", "show", "--serial", &forged]);
    assert!(shown.contains("abandoned"), "{shown}");
    let listed = pkid_ok(d, &["cert", "list", "--status", "abandoned"]);
    assert!(
        listed.contains(&forged) && !listed.contains(&good),
        "{listed}"
    );
    let pending = pkid_ok(d, &["cert", "list", "--status", "pending"]);
    assert!(
        pending.contains(fresh) && !pending.contains(&forged),
        "{pending}"
    );

    // Nothing is left to do: a second run changes nothing and writes no audit record.
    let audits = store.audit_log(1000).expect("audit").len();
    let again = pkid_ok(d, &["cert", "reconcile"]);
    assert!(
        !again.contains("completed ") && !again.contains("abandoned "),
        "{again}"
    );
    assert_eq!(store.audit_log(1000).expect("audit").len(), audits);
}
