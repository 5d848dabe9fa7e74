//! The whole daemon on a fake clock, in-process: `pkid::app::App` built on a `FakeClock`,
//! driven through its router with `oneshot`. Moving the clock moves every service at once —
//! the OCSP responder's cache and validity, and the CRL schedule — because the composition
//! root builds one clock and hands it to all of them.
//!
//! ```text
//!  pkid init, pkid cert issue (CLI) ─▶ App::build(data, FakeClock) ─▶ https router
//!  GET /ocsp/{req}  t0: signed at t0, then served from cache
//!  clock past nextUpdate − refresh_before ─▶ signed again at the new time
//!  GET /crl/issuing.crl  number n at t0 ─▶ clock past half its validity ─▶ schedule tick ─▶ n+1
//! ```

mod common;

use common::*;
use der::{Decode, Encode};
use hyper::StatusCode;
use pkid::app::App;
use pkid::clock::{Clock, FakeClock, SystemClock};
use std::sync::Arc;

fn unix(t: &der::asn1::GeneralizedTime) -> u64 {
    t.to_unix_duration().as_secs()
}

/// (producedAt, thisUpdate, nextUpdate, status) of a one-answer OCSP response.
fn ocsp_times(der: &[u8]) -> (u64, u64, u64, String) {
    let resp = x509_ocsp::OcspResponse::from_der(der).expect("OCSPResponse");
    let bytes = resp.response_bytes.expect("successful");
    let basic = x509_ocsp::BasicOcspResponse::from_der(bytes.response.as_bytes()).expect("basic");
    let data = &basic.tbs_response_data;
    let single = &data.responses[0];
    let status = match single.cert_status {
        x509_ocsp::CertStatus::Good(_) => "good",
        x509_ocsp::CertStatus::Revoked(_) => "revoked",
        x509_ocsp::CertStatus::Unknown(_) => "unknown",
    };
    (
        unix(&data.produced_at.0),
        unix(&single.this_update.0),
        unix(&single.next_update.as_ref().expect("nextUpdate").0),
        status.to_string(),
    )
}

/// (cRLNumber, thisUpdate, nextUpdate) of a CRL.
fn crl_times(der: &[u8]) -> (Vec<u8>, u64, u64) {
    let crl = x509_cert::crl::CertificateList::from_der(der).expect("CRL");
    let tbs = &crl.tbs_cert_list;
    let number = tbs
        .crl_extensions
        .as_ref()
        .and_then(|exts| {
            exts.iter()
                .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_CRL_NUMBER)
        })
        .map(|e| e.extn_value.as_bytes().to_vec())
        .expect("cRLNumber");
    let next = tbs
        .next_update
        .expect("nextUpdate")
        .to_unix_duration()
        .as_secs();
    (number, tbs.this_update.to_unix_duration().as_secs(), next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_clock_moves_ocsp_validity_and_the_crl_schedule_together() {
    let data = init(&[]);
    let d = data.path();
    let work = tempdir();
    let (_key, csr) = make_csr(
        work.path(),
        "/C=VN/O=Sở Giáo dục/CN=Phạm Minh Đức",
        "ec:P-256",
    );
    let (_serial, leaf) = issue(d, &csr, "person", &[]);
    let req = unique_path(work.path(), "req", "der");
    openssl_ok(&[
        "ocsp",
        "-issuer",
        path_str(&d.join("certs/issuing.crt")),
        "-cert",
        path_str(&leaf),
        "-no_nonce",
        "-reqout",
        path_str(&req),
    ]);
    let encoded = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(read(&req));
        b64.replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D")
    };
    let path = format!("/ocsp/{encoded}");

    let t0 = SystemClock.now();
    let clock = Arc::new(FakeClock::new(t0));
    let app = {
        let data = d.to_path_buf();
        let clock = clock.clone();
        tokio::task::spawn_blocking(move || App::build(&data, clock, |_| {}))
            .await
            .expect("build task")
            .expect("app")
    };
    let config = app.state().config.load_full();
    let router = app.routers().https;

    // OCSP: signed at the fake time, then the same bytes from the cache.
    let (status, first) = oneshot_get(&router, &path).await;
    assert_eq!(status, StatusCode::OK);
    let (produced, this_update, next_update, cert_status) = ocsp_times(&first);
    assert_eq!(cert_status, "good");
    assert_eq!(produced, t0, "producedAt is the app's clock");
    assert!(this_update <= t0 && next_update == this_update + config.ocsp.validity_secs);
    clock.advance(60);
    assert_eq!(
        oneshot_get(&router, &path).await.1,
        first,
        "served from the cache"
    );

    // Past nextUpdate − refresh_before: the cached answer is due, a new one is signed at the
    // new time, and it is cached in turn.
    let due = next_update - config.ocsp.refresh_before_secs;
    clock.advance(due - clock.now());
    let (_, second) = oneshot_get(&router, &path).await;
    assert_ne!(second, first);
    let (produced2, this2, next2, status2) = ocsp_times(&second);
    assert_eq!(status2, "good");
    assert_eq!(produced2, due);
    assert!(this2 > this_update && next2 > next_update);
    assert!(next2 > clock.now() + config.ocsp.refresh_before_secs);
    assert_eq!(oneshot_get(&router, &path).await.1, second);

    // CRL: the scheduled CRL is re-signed once half its validity has passed.
    let (status, crl) = oneshot_get(&router, "/crl/issuing.crl").await;
    assert_eq!(status, StatusCode::OK);
    let (n1, crl_this, crl_next) = crl_times(&crl);
    let crl_service = app.state().crl.clone().expect("CRLs enabled");
    let tick = |svc: Arc<pkid::crl::CrlService>| async move {
        tokio::task::spawn_blocking(move || svc.refresh())
            .await
            .expect("tick")
            .expect("refresh");
    };
    tick(crl_service.clone()).await;
    assert_eq!(
        crl_times(&oneshot_get(&router, "/crl/issuing.crl").await.1).0,
        n1,
        "not due yet: the same CRL"
    );
    let half = crl_this + (crl_next - crl_this) / 2;
    if clock.now() < half {
        clock.advance(half - clock.now());
    }
    tick(crl_service).await;
    let (_, crl2) = oneshot_get(&router, "/crl/issuing.crl").await;
    let (n2, this2, next2) = crl_times(&crl2);
    assert!(n2 > n1, "a new CRL number: {n1:?} → {n2:?}");
    assert_eq!(this2, clock.now(), "thisUpdate is the app's clock");
    assert!(next2 > crl_next);
    // The DER is what the CRL says it is.
    let back = x509_cert::crl::CertificateList::from_der(&crl2).expect("CRL");
    assert_eq!(back.to_der().expect("der"), crl2);
}
