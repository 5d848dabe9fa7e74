//! What the operator documentation promises, checked against the daemon (issue 10, item 13):
//! the exit code of an unset PIN variable (docs/operations.md) and `thisUpdate` of a fresh
//! revocation (docs/ocsp.md, "RFC choices").
//!
//! ```text
//!  pkid init --pin-env UNSET ─▶ exit 3, one line, nothing left behind
//!  pkid cert revoke (now) ─▶ App on a FakeClock at now ─▶ GET /ocsp ─▶ revoked,
//!      revocationTime ≤ thisUpdate ≤ producedAt (a good answer keeps its 5-minute back-dating)
//! ```

mod common;

use common::inprocess::{build_app, get, ocsp_get_path, ocsp_single};
use common::*;
use pkid::clock::{Clock, FakeClock, SystemClock};
use std::sync::Arc;

#[test]
fn an_unset_pin_variable_is_a_configuration_error_exit_3_and_leaves_nothing() {
    let parent = tempdir();
    let data = parent.path().join("data");
    let (code, _out, err) = pkid_fails(
        &data,
        &[
            "init",
            "--key-backend",
            "pkcs11",
            "--pkcs11-module",
            SOFTHSM_MODULE,
            "--pin-env",
            "PKID_TEST_PIN_THAT_IS_NOT_SET",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        one_error_line(&err).contains("the PIN variable PKID_TEST_PIN_THAT_IS_NOT_SET is not set"),
        "{err}"
    );
    assert!(
        !data.join("pkid.toml").exists(),
        "init leaves nothing behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_revocation_is_never_dated_after_this_update() {
    let data = init(&[]);
    let d = data.path();
    let work = tempdir();
    let (_k1, csr1) = make_csr(work.path(), "/C=VN/O=Sở Tư pháp/CN=Võ Thị Sáu", "ec:P-256");
    let (_k2, csr2) = make_csr(work.path(), "/C=VN/O=Sở Tư pháp/CN=Hồ Văn Nam", "ec:P-256");
    let (revoked, revoked_pem) = issue(d, &csr1, "person", &[]);
    let (_good, good_pem) = issue(d, &csr2, "person", &[]);
    revoke(d, &revoked, "keyCompromise");

    // The daemon at the time of the revocation (the CLI stamped it with the system clock).
    let clock = Arc::new(FakeClock::new(SystemClock.now()));
    let app = build_app(d, clock).await;
    let router = app.routers().https;
    let answer = |leaf: &std::path::Path| {
        let path = ocsp_get_path(d, work.path(), ["-cert", path_str(leaf)]);
        let router = router.clone();
        async move { ocsp_single(&get(&router, &path).await.1) }
    };

    let a = answer(&revoked_pem).await;
    let revoked_at = a.revoked_at.expect("revoked");
    assert!(
        revoked_at <= a.this_update && a.this_update <= a.produced_at,
        "revocationTime ≤ thisUpdate ≤ producedAt: {a:?}"
    );
    // A good answer keeps the documented back-dating for clients whose clocks are behind.
    let a = answer(&good_pem).await;
    assert_eq!((a.status, a.produced_at - a.this_update), ("good", 300));
}
