//! The OCSP response caches under a flood, in-process: `pkid::app::App` driven through its
//! router with `oneshot`, on a data directory whose `[ocsp]` byte bounds are small.
//!
//! ```text
//!  good and revoked certificate ─GET─▶ signed, cached, remembered (form)
//!  thousands of never-issued serials ─GET─▶ unknown, each signed; their cache stays in bounds
//!  hundreds of distinct escapings of the good request ─GET─▶ forms cache stays in bounds
//!  good and revoked again ─▶ the same bytes (cache hits): the flood pushed nothing out
//! ```

mod common;

use base64::Engine;
use common::inprocess;
use common::*;
use der::{Decode, Encode};
use hyper::StatusCode;
use pkid::app::App;
use pkid::clock::SystemClock;
use std::sync::Arc;

/// Bound of the `unknown` answers' cache in this test: room for a few dozen answers.
const UNKNOWN_CACHE_BYTES: u64 = 64 * 1024;
/// Bound of the remembered forms in this test: room for a dozen forms.
const FORMS_BYTES: u64 = 4096;
/// Never-issued serials asked for: far more than fit in `UNKNOWN_CACHE_BYTES`.
const FLOOD: usize = 2000;

fn cert_status(der: &[u8]) -> &'static str {
    let resp = x509_ocsp::OcspResponse::from_der(der).expect("OCSPResponse");
    let bytes = resp.response_bytes.expect("successful");
    let basic = x509_ocsp::BasicOcspResponse::from_der(bytes.response.as_bytes()).expect("basic");
    match basic.tbs_response_data.responses[0].cert_status {
        x509_ocsp::CertStatus::Good(_) => "good",
        x509_ocsp::CertStatus::Revoked(_) => "revoked",
        x509_ocsp::CertStatus::Unknown(_) => "unknown",
    }
}

/// `/ocsp/` plus the request's base64, `/+=` escaped.
fn get_path(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let escaped = b64
        .replace('/', "%2F")
        .replace('+', "%2B")
        .replace('=', "%3D");
    format!("/ocsp/{escaped}")
}

/// The same request for another serial (one the CA never issued).
fn with_serial(der: &[u8], serial: u64) -> Vec<u8> {
    let mut req = x509_ocsp::OcspRequest::from_der(der).expect("OCSPRequest");
    let mut bytes = vec![0x7a];
    bytes.extend_from_slice(&serial.to_be_bytes());
    req.tbs_request.request_list[0].req_cert.serial_number =
        x509_cert::serial_number::SerialNumber::new(&bytes).expect("serial");
    req.to_der().expect("encode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_serials_stays_in_its_bounds_and_pushes_out_no_answer() {
    let data = init(&[]);
    let d = data.path();

    let work = tempdir();
    let (_k, csr) = make_csr(work.path(), "/C=VN/O=Org/CN=Good", "ec:P-256");
    let (_s, good) = issue(d, &csr, "person", &[]);
    let (_k, csr) = make_csr(work.path(), "/C=VN/O=Org/CN=Revoked", "ec:P-256");
    let (revoked_serial, revoked) = issue(d, &csr, "person", &[]);
    revoke(d, &revoked_serial, "keyCompromise");
    let good_req = ocsp_request(d, &good);
    let revoked_req = ocsp_request(d, &revoked);

    let app = {
        let data = d.to_path_buf();
        let small = |c: &mut pkid::config::Config| {
            c.ocsp.unknown_cache_bytes = UNKNOWN_CACHE_BYTES;
            c.ocsp.forms_bytes = FORMS_BYTES;
            c.server.rate_limit = None;
        };
        tokio::task::spawn_blocking(move || App::build(&data, Arc::new(SystemClock), small))
            .await
            .expect("build task")
            .expect("app")
    };
    let service = app.state().ocsp.clone().expect("OCSP enabled");
    let router = app.routers().http;

    // Warm: each answer signed once, then served as the same bytes.
    let mut warm = Vec::new();
    for (req, want) in [(&good_req, "good"), (&revoked_req, "revoked")] {
        let (status, first) = inprocess::get(&router, &get_path(req)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cert_status(&first), want);
        assert_eq!(
            inprocess::get(&router, &get_path(req)).await.1,
            first,
            "a cache hit"
        );
        warm.push((req, first));
    }
    let before = service.cache_use();

    // The flood: every answer `unknown`, each signed; their cache stays within its bound.
    for i in 0..FLOOD as u64 {
        let (status, body) = inprocess::get(&router, &get_path(&with_serial(&good_req, i))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cert_status(&body), "unknown");
    }
    let metrics = String::from_utf8(app.state().metrics.render()).expect("utf-8");
    let gauge = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pkid_ocsp_cache_bytes{cache=\"unknown\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("pkid_ocsp_cache_bytes{cache=\"unknown\"}");
    // Set as answers are cached, before `cache_use` below runs moka's pending work.
    assert!(
        gauge > 0 && gauge <= UNKNOWN_CACHE_BYTES,
        "pkid_ocsp_cache_bytes{{cache=\"unknown\"}} {gauge}"
    );
    let after = service.cache_use();
    assert!(
        after.unknown <= UNKNOWN_CACHE_BYTES,
        "unknown answers hold {} bytes, bound {UNKNOWN_CACHE_BYTES}",
        after.unknown
    );
    assert!(after.unknown > 0, "some unknown answers are cached");
    assert_eq!(
        after.responses, before.responses,
        "no unknown answer is kept with the answers for issued certificates"
    );
    assert_eq!(
        after.forms, before.forms,
        "unknown answers are not remembered"
    );

    // Many distinct forms of one request (escaping a different letter each time) all answered
    // from the cache; the remembered forms stay within their bound.
    let plain = base64::engine::general_purpose::STANDARD.encode(&good_req);
    let letters: Vec<usize> = plain
        .char_indices()
        .filter(|(_, c)| c.is_ascii_alphanumeric())
        .map(|(i, _)| i)
        .collect();
    for &at in letters.iter().take(200) {
        let mut form = String::new();
        for (i, c) in plain.char_indices() {
            match c {
                _ if i == at => form.push_str(&format!("%{:02X}", c as u8)),
                '/' => form.push_str("%2F"),
                '+' => form.push_str("%2B"),
                '=' => form.push_str("%3D"),
                c => form.push(c),
            }
        }
        let (_, body) = inprocess::get(&router, &format!("/ocsp/{form}")).await;
        assert_eq!(body, warm[0].1, "an escaped form of the good request");
    }
    let forms = service.cache_use().forms;
    assert!(
        forms <= FORMS_BYTES,
        "forms hold {forms} bytes, bound {FORMS_BYTES}"
    );

    // The answers for issued certificates are still the cached ones.
    for (req, first) in &warm {
        assert_eq!(
            &inprocess::get(&router, &get_path(req)).await.1,
            first,
            "still a hit"
        );
    }
}
