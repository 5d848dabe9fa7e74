//! Everything pkid signs, checked by an independent linter: pkilint (the RFC 5280 / RFC 6960
//! linters `lint_pkix_cert`, `lint_crl`, `lint_ocsp_response`) over the CA hierarchy, the
//! responder certificates, a certificate of every shipped subscriber profile for each key
//! family (P-256, P-384, RSA-2048), the complete, delta and partitioned CRLs and the root's
//! ARL, and OCSP responses for a good, a revoked and an unknown serial. A finding at WARNING or
//! above fails the test, printed as pkilint reports it.
//!
//! `scripts/test.sh` installs pkilint in `target/venv` and exports `PKID_TEST_PKILINT` (the
//! venv's `bin` directory); without it these tests fail (they never pass silently).

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// The directory with pkilint's commands.
fn pkilint_bin() -> PathBuf {
    match std::env::var_os("PKID_TEST_PKILINT") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "PKID_TEST_PKILINT is not set: run these tests through scripts/test.sh, which \
             installs pkilint in target/venv and exports it (or: python3 -m venv target/venv && \
             target/venv/bin/pip install pkilint==0.13.3 && \
             PKID_TEST_PKILINT=$PWD/target/venv/bin cargo test -p pkid --test lint)"
        ),
    }
}

/// Runs `linter lint -s WARNING ARGS FILE`; the findings (empty when there are none).
fn lint(linter: &str, args: &[&str], file: &Path) -> String {
    let out = std::process::Command::new(pkilint_bin().join(linter))
        .arg("lint")
        .args(["-s", "WARNING"])
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{linter}: {e}"));
    let findings = lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() || !findings.is_empty(),
        "{linter} failed without findings: {}",
        lossy(&out.stderr)
    );
    findings
}

fn assert_clean(linter: &str, args: &[&str], file: &Path, what: &str) {
    let findings = lint(linter, args, file);
    assert!(findings.is_empty(), "{what}: {linter} reports\n{findings}");
}

/// The subscriber profiles the data directory's configuration defines.
fn profiles(data: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(data.join("pkid.toml")).expect("pkid.toml");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("[profiles.")?.strip_suffix(']'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn certificates_crls_and_ocsp_responses_pass_pkilint() {
    // Deltas and partitions on, so that every kind of CRL is made.
    let dir = tempdir();
    let data = dir.path();
    std::fs::write(
        data.join("pkid.toml"),
        "[crl]\ndebounce_ms = 100\ndeltas = true\nshards = 4\n",
    )
    .expect("config");
    pkid_ok(data, &["init"]);
    let certs = data.join("certs");

    for name in ["root", "issuing", "ocsp", "tsa", "cmp-issuing"] {
        let file = certs.join(format!("{name}.crt"));
        assert_clean("lint_pkix_cert", &[], &file, name);
    }
    // The listener's own certificate names "localhost", a single-label name that RFC 1034's
    // preferred name syntax (RFC 5280 §4.2.1.6) allows and pkilint's domain check does not;
    // that one finding is all it may have.
    let findings = lint("lint_pkix_cert", &[], &certs.join("tls.crt"));
    let others: Vec<&str> = findings
        .lines()
        .filter(|l| {
            l.starts_with("    ") && !l.contains("Invalid domain name syntax: \"localhost\"")
        })
        .collect();
    assert!(others.is_empty(), "tls.crt: {findings}");

    // The shipped configuration's profiles, if the data directory has them; the daemon's
    // built-in ones otherwise (`pkid init` kept the partial file above).
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/pkid.toml"))
            .expect("conf/pkid.toml");
    let mut names = profiles(data);
    if names.is_empty() {
        let conf = tempdir();
        std::fs::write(conf.path().join("pkid.toml"), &shipped).expect("write");
        names = profiles(conf.path());
    }
    assert!(names.len() >= 4, "profiles: {names:?}");
    let mut serials = Vec::new();
    for profile in &names {
        for key in ["ec:P-256", "ec:P-384", "rsa:2048"] {
            let subject = format!("/C=VN/O=Bộ Tài chính/CN=Nguyễn Văn Ánh {profile} {key}");
            let (_, csr) = make_csr_with(
                data,
                &subject,
                key,
                &[
                    "-addext",
                    "subjectAltName=DNS:may-chu.mof.gov.vn,email:anh@mof.gov.vn",
                ],
            );
            let (serial, cert) = issue(data, &csr, profile, &[]);
            assert_clean(
                "lint_pkix_cert",
                &[],
                &cert,
                &format!("profile {profile}, key {key}"),
            );
            serials.push((serial, cert));
        }
    }

    // Revocations, so that the CRLs have entries (with reasons) and the delta has something.
    let (revoked, revoked_cert) = serials[0].clone();
    revoke(data, &revoked, "keyCompromise");
    pkid_ok(data, &["cert", "hold", "--serial", &serials[1].0]);
    pkid_ok(data, &["crl", "generate"]);
    let crl = |args: &[&str]| -> PathBuf {
        let mut full = vec!["crl", "show", "--pem"];
        full.extend_from_slice(args);
        let pem = pkid_ok(data, &full);
        let file = unique_path(data, "crl", "pem");
        std::fs::write(&file, pem).expect("write");
        file
    };
    assert_clean(
        "lint_crl",
        &["-t", "ARL", "-p", "PKIX"],
        &crl(&["--issuer", "root"]),
        "root ARL",
    );
    assert_clean(
        "lint_crl",
        &["-t", "CRL", "-p", "PKIX"],
        &crl(&["--issuer", "issuing"]),
        "issuing CRL",
    );
    assert_clean(
        "lint_crl",
        &["-t", "CRL", "-p", "PKIX"],
        &crl(&["--issuer", "issuing", "--delta"]),
        "issuing delta CRL",
    );
    for shard in ["0", "3"] {
        assert_clean(
            "lint_crl",
            &["-t", "CRL", "-p", "PKIX"],
            &crl(&["--issuer", "issuing", "--shard", shard]),
            &format!("partition {shard}"),
        );
    }

    // OCSP: good, revoked, and a serial pkid never issued (a certificate of another CA, asked
    // of pkid's issuing CA).
    let daemon = Daemon::start(data);
    let (_, stranger) = self_signed_p256(data, "stranger", "/CN=stranger");
    for (what, cert) in [
        ("good", serials[2].1.clone()),
        ("revoked", revoked_cert),
        ("unknown", stranger),
    ] {
        let request = unique_path(data, "ocsp-req", "der");
        std::fs::write(&request, ocsp_request(data, &cert)).expect("write");
        let r = fetch(&[
            "-H",
            "Content-Type: application/ocsp-request",
            "--data-binary",
            &format!("@{}", path_str(&request)),
            &daemon.http_url("/ocsp"),
        ]);
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        let response = unique_path(data, "ocsp-resp", "der");
        std::fs::write(&response, &r.body).expect("write");
        assert_clean(
            "lint_ocsp_response",
            &[],
            &response,
            &format!("OCSP {what}"),
        );
    }
}
