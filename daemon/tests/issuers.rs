//! End to end: a second issuing CA added with `pkid ca add-issuer` while `pkid serve` runs,
//! checked with `openssl verify`, `openssl ocsp` and `openssl crl` against the running daemon.
//!
//! ```text
//!  pkid serve ─────────────────────────────────────────────────────────────────────────▶
//!  pkid ca add-issuer --name health (another process) ─▶ follower ─▶ served, no restart
//!  pkid cert issue --issuer health ─▶ openssl verify (root ▸ health ▸ leaf)
//!  openssl ocsp (health's own responder) good ─▶ pkid cert revoke ─▶ revoked
//!  curl /crl/health.crl ─▶ openssl crl -CAfile health.crt ─▶ lists the revoked serial
//! ```

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

/// How long a change made by the CLI may take to reach the daemon (the follower polls every
/// 250 ms; generous for a loaded CI machine).
const PROPAGATION: Duration = Duration::from_secs(15);

/// `openssl ocsp` for one certificate of `issuer`, verified against the root; returns the
/// status word openssl printed ("good", "revoked", "unknown") or the failure text.
fn ocsp_status(daemon: &Daemon, data: &Path, issuer: &Path, cert: &Path) -> String {
    let root = data.join("certs/root.crt");
    let url = daemon.http_url("/ocsp");
    let out = openssl(&[
        "ocsp",
        "-url",
        &url,
        "-issuer",
        path_str(issuer),
        "-cert",
        path_str(cert),
        "-CAfile",
        path_str(&root),
        "-timeout",
        "20",
    ]);
    let text = format!("{}{}", lossy(&out.stdout), lossy(&out.stderr));
    if !text.contains("Response verify OK") {
        return format!("not verified: {text}");
    }
    let line = text
        .lines()
        .find(|l| l.starts_with(path_str(cert)))
        .unwrap_or_default()
        .to_string();
    line.rsplit(": ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn an_issuer_added_while_the_daemon_runs_is_served_for_ocsp_crl_and_its_certificate() {
    let data = init(&[]);
    let d = data.path();
    let daemon = Daemon::start(d);
    let work = tempdir();

    let pem = pkid_ok(
        d,
        &[
            "ca",
            "add-issuer",
            "--name",
            "health",
            "--subject",
            "CN=Y tế CA,O=Ban Cơ yếu Chính phủ,C=VN",
        ],
    );
    let health = d.join("certs/health.crt");
    assert_eq!(
        read(&health),
        pem.as_bytes(),
        "certs/health.crt is what was printed"
    );
    assert_verifies(d, &health, &[]);
    let list = pkid_ok(d, &["ca", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("health ") && l.contains("Y tế CA") && l.contains("valid")),
        "{list}"
    );

    // A subscriber certificate under the new issuer, chained to the same root.
    let (_key, csr) = make_csr(
        work.path(),
        "/C=VN/O=Bệnh viện Bạch Mai/CN=Lê Thị Hoa",
        "ec:P-256",
    );
    let (serial, leaf) = issue(d, &csr, "person", &["--issuer", "health"]);
    let out = openssl(&[
        "verify",
        "-CAfile",
        path_str(&d.join("certs/root.crt")),
        "-untrusted",
        path_str(&health),
        path_str(&leaf),
    ]);
    assert_success(&out, "openssl verify root ▸ health ▸ leaf");
    let text = x509_text(&leaf);
    assert!(text.contains("/ca/health.crt"), "{text}");
    assert!(text.contains("/crl/health.crl"), "{text}");
    // It is not a certificate of the other issuer.
    assert!(!verify_chain(d, &leaf, &[]).status.success());

    // The daemon learns of the issuer through the change feed: its CA certificate is
    // published, and its own responder answers for its certificates.
    let ca_url = daemon.http_url("/ca/health.crt");
    assert!(
        poll(PROPAGATION, || get(&ca_url).status == 200),
        "GET /ca/health.crt never answered 200; log:\n{}",
        daemon.logs()
    );
    let der = get(&ca_url).body;
    let pem_from_der = openssl_ok(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        path_str(&{
            let p = work.path().join("health.der");
            std::fs::write(&p, &der).expect("write");
            p
        }),
    ]);
    assert_eq!(
        pem_from_der, pem,
        "the published certificate is the issuer's"
    );
    let mut last = String::new();
    assert!(
        poll(PROPAGATION, || {
            last = ocsp_status(&daemon, d, &health, &leaf);
            last == "good"
        }),
        "OCSP never said good: {last}; log:\n{}",
        daemon.logs()
    );
    // Signed by health's own delegated responder: trusting exactly that responder
    // certificate (-VAfile) verifies the answer, trusting the init-made issuer's does not.
    let via = |responder: &Path| {
        openssl(&[
            "ocsp",
            "-url",
            &daemon.http_url("/ocsp"),
            "-issuer",
            path_str(&health),
            "-cert",
            path_str(&leaf),
            "-VAfile",
            path_str(responder),
            "-timeout",
            "20",
        ])
    };
    let own = via(&d.join("certs/health-ocsp.crt"));
    let own_text = format!("{}{}", lossy(&own.stdout), lossy(&own.stderr));
    assert!(own_text.contains("Response verify OK"), "{own_text}");
    let other = via(&d.join("certs/ocsp.crt"));
    let other_text = format!("{}{}", lossy(&other.stdout), lossy(&other.stderr));
    assert!(
        !other_text.contains("Response verify OK"),
        "not signed by the other issuer's responder: {other_text}"
    );

    // Another issuer's responder does not answer for it: the init-made issuer's certificate
    // as -issuer names a CertID no one issued.
    let other = ocsp_status(&daemon, d, &d.join("certs/issuing.crt"), &leaf);
    assert_ne!(
        other, "good",
        "a certificate is good only under its own issuer"
    );

    revoke(d, &serial, "keyCompromise");
    assert!(
        poll(PROPAGATION, || {
            last = ocsp_status(&daemon, d, &health, &leaf);
            last == "revoked"
        }),
        "OCSP never said revoked: {last}"
    );

    // The issuer's CRL is published and lists the revoked certificate.
    let crl_path = work.path().join("health.crl.pem");
    let crl_url = daemon.http_url("/crl/health.crl");
    let mut listed = false;
    assert!(
        poll(PROPAGATION, || {
            let r = get(&crl_url);
            if r.status != 200 {
                return false;
            }
            let der = work.path().join("health.crl");
            std::fs::write(&der, &r.body).expect("write");
            let pem = openssl_ok(&["crl", "-inform", "DER", "-in", path_str(&der)]);
            std::fs::write(&crl_path, &pem).expect("write");
            let text = openssl_ok(&["crl", "-in", path_str(&crl_path), "-noout", "-text"]);
            listed = text.to_uppercase().contains(&serial.to_uppercase());
            listed
        }),
        "the health CRL never listed {serial}; log:\n{}",
        daemon.logs()
    );
    assert_crl_signed_by(&crl_path, &health);
    let out = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        path_str(&d.join("certs/root.crt")),
        "-untrusted",
        path_str(&health),
        "-CRLfile",
        path_str(&crl_path),
        path_str(&leaf),
    ]);
    assert!(
        lossy(&out.stdout).contains("certificate revoked")
            || lossy(&out.stderr).contains("certificate revoked"),
        "{}{}",
        lossy(&out.stdout),
        lossy(&out.stderr)
    );

    // After a restart the issuer is loaded from the registry, not only picked up live.
    let mut daemon = daemon;
    daemon.sigterm();
    daemon.wait();
    let daemon = Daemon::start(d);
    assert_eq!(get(&daemon.http_url("/ca/health.crt")).status, 200);
    assert_eq!(ocsp_status(&daemon, d, &health, &leaf), "revoked");
}

#[test]
fn add_issuer_refuses_bad_and_taken_names_and_the_root_signs_no_subscriber() {
    let data = init(&[]);
    let d = data.path();
    for bad in ["Health", "a/b", "issuing", "root", "x-delta", ""] {
        let (code, _, err) =
            pkid_fails(d, &["ca", "add-issuer", "--name", bad, "--subject", "CN=x"]);
        assert_eq!(code, 3, "{bad:?}: {err}");
    }
    // A subject that is not a distinguished name is refused before any key is made.
    let (code, _, err) = pkid_fails(
        d,
        &[
            "ca",
            "add-issuer",
            "--name",
            "bad-dn",
            "--subject",
            "not a name",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        !d.join("keys/issuer-bad-dn.p8").exists(),
        "no key for a refused issuer"
    );
    pkid_ok(
        d,
        &[
            "ca",
            "add-issuer",
            "--name",
            "edu",
            "--subject",
            "CN=Giáo dục CA,C=VN",
        ],
    );
    let (code, _, err) = pkid_fails(
        d,
        &["ca", "add-issuer", "--name", "edu", "--subject", "CN=x"],
    );
    assert_eq!(code, 5, "taken: {err}");
    assert!(err.contains("already exists"), "{err}");
    let work = tempdir();
    let (_key, csr) = make_csr(work.path(), "/CN=x/O=y", "ec:P-256");
    let issue_under = |issuer: &str| {
        pkid_fails(
            d,
            &[
                "cert",
                "issue",
                "--csr",
                path_str(&csr),
                "--profile",
                "person",
                "--issuer",
                issuer,
            ],
        )
    };
    let (code, _, err) = issue_under("root");
    assert_eq!(code, 3, "the root signs only CA certificates: {err}");
    let (code, _, err) = issue_under("nope");
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("issuing, edu"), "names the issuers: {err}");
    let audit = pkid_ok(d, &["audit", "list", "--limit", "20"]);
    assert!(
        audit
            .lines()
            .any(|l| l.contains("ca.add-issuer") && l.contains("edu") && l.contains("success")),
        "{audit}"
    );
    assert!(
        audit
            .lines()
            .any(|l| l.contains("ca.add-issuer") && l.contains("refused")),
        "refusals are audited too:\n{audit}"
    );
}
