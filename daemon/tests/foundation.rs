//! End to end: the foundation a CA operator and relying parties depend on — `pkid init`, the
//! certificate lifecycle on the command line, and the running daemon (health, metrics, CA
//! certificate publication, HTTP/2, limits, reload, shutdown) — checked with `openssl` and `curl`.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The public URL `pkid init` writes into the configuration, hence into every certificate.
const PUBLIC_URL: &str = "http://127.0.0.1:8080";
/// The subject every Vietnamese-name test uses (OpenSSL order, most significant first).
const VN_SUBJECT: &str = "/C=VN/O=Ban Cơ yếu Chính phủ/CN=Nguyễn Văn Ánh";
/// How `openssl x509 -subject -nameopt utf8` prints [`VN_SUBJECT`].
const VN_SUBJECT_PRINTED: &str = "subject=C=VN, O=Ban Cơ yếu Chính phủ, CN=Nguyễn Văn Ánh";
/// The store's default follow interval is 250 ms, so a change made by another process must be
/// visible to the daemon well within this bound (the configuration promises under a second).
const PROPAGATION_BOUND: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Helpers for reading `openssl x509 -text`
// ---------------------------------------------------------------------------------------------

/// An extension as `openssl x509 -text` prints it: (critical, value lines joined by `\n`).
fn extension(text: &str, name: &str) -> Option<(bool, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&format!("{name}:")))?;
    let critical = lines[at].trim_end().ends_with("critical");
    let indent = lines[at].len() - lines[at].trim_start().len();
    let value: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| l.len() - l.trim_start().len() > indent && !l.trim().is_empty())
        .map(|l| l.trim())
        .collect();
    Some((critical, value.join("\n")))
}

fn must_extension(text: &str, name: &str) -> (bool, String) {
    extension(text, name).unwrap_or_else(|| panic!("extension {name} missing in:\n{text}"))
}

/// Number of significant bits in a hex serial.
fn serial_bits(hex: &str) -> usize {
    let t = hex.trim_start_matches('0');
    let Some(first) = t.chars().next() else {
        return 0;
    };
    let d = first.to_digit(16).expect("hex digit");
    (t.len() - 1) * 4 + (32 - d.leading_zeros() as usize)
}

/// Asserts the serial is positive, carries at least 64 bits and fits RFC 5280's 20 octets.
fn assert_good_serial(cert: &Path) {
    let text = x509_text(cert);
    let serial_block = text
        .split("Serial Number:")
        .nth(1)
        .expect("serial")
        .lines()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        !serial_block.contains("Negative"),
        "negative serial: {serial_block}"
    );
    let hex = x509_serial(cert);
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{hex}");
    let bits = serial_bits(&hex);
    assert!(
        (64..=159).contains(&bits),
        "serial {hex} has {bits} bits; want at least 64 and a positive 20-octet INTEGER"
    );
}

/// The newest audit record (`pkid audit list --limit 1`).
fn newest_audit(data: &Path) -> String {
    pkid_ok(data, &["audit", "list", "--limit", "1"])
        .trim()
        .to_string()
}

/// Number of certificates `pkid cert list` shows.
fn certificate_count(data: &Path) -> usize {
    pkid_ok(data, &["cert", "list", "--limit", "0"])
        .lines()
        .count()
}

/// `pkid cert show --serial S` as text.
fn show(data: &Path, serial: &str) -> String {
    pkid_ok(data, &["cert", "show", "--serial", serial])
}

/// The value of a `field:` line of `pkid cert show`.
fn field(record: &str, name: &str) -> String {
    record
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in record:\n{record}"))
        .trim()
        .to_string()
}

/// The serials (first column) of `pkid cert list ARGS…`.
fn list_serials(data: &Path, args: &[&str]) -> Vec<String> {
    let mut full = vec!["cert", "list"];
    full.extend_from_slice(args);
    pkid_ok(data, &full)
        .lines()
        .map(|l| {
            l.split_whitespace()
                .next()
                .expect("serial column")
                .to_string()
        })
        .collect()
}

/// An RFC 3339 UTC timestamp `secs_ago` seconds in the past, whole seconds.
fn rfc3339_ago(secs_ago: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::seconds(secs_ago);
    let t = t.replace_nanosecond(0).expect("valid");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn ca(data: &Path, name: &str) -> std::path::PathBuf {
    data.join("certs").join(name)
}

// ---------------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------------

#[test]
fn init_creates_a_hierarchy_openssl_verifies() {
    let dir = init(&[]);
    let data = dir.path();
    for role in ["ocsp", "tsa", "tls"] {
        assert_verifies(data, &ca(data, &format!("{role}.crt")), &[]);
    }
    // The issuing CA itself chains to the root; the root is self-signed.
    openssl_ok(&[
        "verify",
        "-CAfile",
        path_str(&ca(data, "root.crt")),
        path_str(&ca(data, "issuing.crt")),
    ]);
    let root = x509_text(&ca(data, "root.crt"));
    assert!(root.contains("CA:TRUE"), "{root}");
    let issuing = x509_text(&ca(data, "issuing.crt"));
    assert!(issuing.contains("CA:TRUE, pathlen:0"), "{issuing}");

    // OCSP responder: EKU OCSPSigning and id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1).
    let ocsp = x509_text(&ca(data, "ocsp.crt"));
    assert_eq!(
        must_extension(&ocsp, "X509v3 Extended Key Usage").1,
        "OCSP Signing"
    );
    assert!(
        extension(&ocsp, "OCSP No Check").is_some(),
        "ocsp-nocheck missing:\n{ocsp}"
    );

    // TSA: the timeStamping EKU alone, critical (RFC 3161 §2.3).
    let tsa = x509_text(&ca(data, "tsa.crt"));
    assert_eq!(
        must_extension(&tsa, "X509v3 Extended Key Usage"),
        (true, "Time Stamping".to_string())
    );
    assert!(extension(&tsa, "OCSP No Check").is_none());

    // The HTTPS certificate names what clients connect to.
    let tls = x509_text(&ca(data, "tls.crt"));
    let san = must_extension(&tls, "X509v3 Subject Alternative Name").1;
    for name in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
    ] {
        assert!(san.contains(name), "{name} not in {san}");
    }

    // Private keys are readable by the owner only.
    use std::os::unix::fs::PermissionsExt;
    for role in ["root", "issuing", "ocsp", "tsa", "tls"] {
        let meta = std::fs::metadata(data.join(format!("keys/{role}.p8"))).expect("key file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "keys/{role}.p8");
    }

    // `pkid ca chain`: issuing CA first, then the root, byte for byte the published files.
    let chain = pkid_ok(data, &["ca", "chain"]);
    let expected = format!(
        "{}{}",
        String::from_utf8(read(&ca(data, "issuing.crt"))).expect("pem"),
        String::from_utf8(read(&ca(data, "root.crt"))).expect("pem")
    );
    assert_eq!(chain, expected);
}

#[test]
fn second_init_is_refused_and_changes_nothing() {
    let dir = init(&[]);
    let data = dir.path();
    let snapshot = |d: &Path| {
        let mut files = Vec::new();
        for sub in ["", "certs", "keys"] {
            for e in std::fs::read_dir(d.join(sub)).expect("dir") {
                let p = e.expect("entry").path();
                if p.is_file() {
                    files.push((p.clone(), read(&p)));
                }
            }
        }
        files.sort();
        files
    };
    let before = snapshot(data);
    let (code, stdout, stderr) = pkid_fails(data, &["init"]);
    assert_eq!(code, 5, "already initialised is a state conflict");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        one_error_line(&stderr).contains("already initialised"),
        "{stderr}"
    );
    let (_, _, stderr) = pkid_fails(data, &["init", "--algorithm", "p384"]);
    one_error_line(&stderr);
    assert!(
        before == snapshot(data),
        "a refused init changed the data directory"
    );
}

#[test]
fn init_with_p384_and_rsa2048_makes_chains_of_that_key_type() {
    for (algorithm, key_text, signature) in [
        ("p384", "NIST CURVE: P-384", "ecdsa-with-SHA384"),
        (
            "rsa2048",
            "Public-Key: (2048 bit)",
            "sha256WithRSAEncryption",
        ),
    ] {
        let dir = init(&["--algorithm", algorithm]);
        let data = dir.path();
        for role in ["root", "issuing", "ocsp", "tsa"] {
            let text = x509_text(&ca(data, &format!("{role}.crt")));
            assert!(text.contains(key_text), "{algorithm} {role}: {text}");
            assert!(
                text.contains(&format!("Signature Algorithm: {signature}")),
                "{algorithm} {role}: {text}"
            );
        }
        for role in ["ocsp", "tsa", "tls"] {
            assert_verifies(data, &ca(data, &format!("{role}.crt")), &[]);
        }
        // The hierarchy signs subscriber certificates with its key type too.
        let (_, csr) = make_csr(data, "/CN=leaf", "ec:P-256");
        let (_, cert) = issue(data, &csr, "tls-client", &[]);
        assert_verifies(data, &cert, &["-purpose", "sslclient"]);
        assert!(
            x509_text(&cert).contains(&format!("Signature Algorithm: {signature}")),
            "{algorithm} leaf"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Issuance
// ---------------------------------------------------------------------------------------------

#[test]
fn every_profile_issues_certificates_relying_parties_accept() {
    let dir = init(&[]);
    let data = dir.path();
    struct Case {
        profile: &'static str,
        subject: &'static str,
        key: &'static str,
        extra: &'static [&'static str],
        key_usage: &'static str,
        eku: &'static str,
        purpose: &'static str,
        wrong_purpose: &'static str,
    }
    let cases = [
        Case {
            profile: "person",
            subject: "/C=VN/O=Bộ Tài chính/CN=Lê Thị Hoa",
            key: "ec:P-256",
            extra: &["-addext", "subjectAltName=email:hoa@mof.gov.vn"],
            key_usage: "Digital Signature, Non Repudiation",
            eku: "E-mail Protection, TLS Web Client Authentication",
            purpose: "smimesign",
            wrong_purpose: "sslserver",
        },
        Case {
            profile: "organization",
            subject: "/C=VN/O=Bộ Tài chính/CN=Bộ Tài chính",
            key: "ec:P-384",
            extra: &[],
            key_usage: "Digital Signature, Non Repudiation",
            eku: "E-mail Protection, TLS Web Client Authentication",
            purpose: "smimesign",
            wrong_purpose: "sslserver",
        },
        Case {
            profile: "tls-server",
            subject: "/CN=www.bcy.gov.vn",
            key: "rsa:2048",
            extra: &["-addext", "subjectAltName=DNS:www.bcy.gov.vn,IP:10.0.0.1"],
            key_usage: "Digital Signature, Key Encipherment",
            eku: "TLS Web Server Authentication",
            purpose: "sslserver",
            wrong_purpose: "sslclient",
        },
        Case {
            profile: "tls-client",
            subject: "/O=Bộ Tài chính/CN=payroll-batch",
            key: "ec:P-256",
            extra: &[],
            // The profile's keyEncipherment, on an EC key: keyAgreement (RFC 5480 §3).
            key_usage: "Digital Signature, Key Agreement",
            eku: "TLS Web Client Authentication",
            purpose: "sslclient",
            wrong_purpose: "sslserver",
        },
    ];
    let mut serials = Vec::new();
    for c in &cases {
        let (_, csr) = make_csr_with(data, c.subject, c.key, c.extra);
        let (serial, cert) = issue(data, &csr, c.profile, &[]);
        assert_verifies(data, &cert, &[]);
        assert_verifies(data, &cert, &["-purpose", c.purpose]);
        assert!(
            !verify_chain(data, &cert, &["-purpose", c.wrong_purpose])
                .status
                .success(),
            "{} must not pass as {}",
            c.profile,
            c.wrong_purpose
        );
        let text = x509_text(&cert);
        assert_eq!(
            must_extension(&text, "X509v3 Key Usage"),
            (true, c.key_usage.to_string()),
            "{}",
            c.profile
        );
        assert_eq!(
            must_extension(&text, "X509v3 Extended Key Usage"),
            (false, c.eku.to_string()),
            "{}",
            c.profile
        );
        assert!(!text.contains("CA:TRUE"), "{}", c.profile);
        let aia = must_extension(&text, "Authority Information Access").1;
        assert!(
            aia.contains(&format!("OCSP - URI:{PUBLIC_URL}/ocsp")),
            "{aia}"
        );
        assert!(
            aia.contains(&format!("CA Issuers - URI:{PUBLIC_URL}/ca/issuing.crt")),
            "{aia}"
        );
        let crl = must_extension(&text, "X509v3 CRL Distribution Points").1;
        assert!(
            crl.contains(&format!("URI:{PUBLIC_URL}/crl/issuing.crl")),
            "{crl}"
        );
        assert_good_serial(&cert);
        assert_eq!(
            x509_subject(&cert),
            x509_subject_of_csr(&csr),
            "{}",
            c.profile
        );
        let record = show(data, &serial);
        assert_eq!(field(&record, "profile"), c.profile);
        assert_eq!(field(&record, "status"), "valid");
        serials.push(serial);
    }
    // Requested subjectAltNames are copied.
    let pem = pkid_ok(data, &["cert", "show", "--serial", &serials[2], "--pem"]);
    let (_, tls_cert) = save_pem(data, &pem);
    let san = must_extension(&x509_text(&tls_cert), "X509v3 Subject Alternative Name").1;
    assert_eq!(san, "DNS:www.bcy.gov.vn, IP Address:10.0.0.1");
    openssl_ok(&[
        "verify",
        "-CAfile",
        path_str(&ca(data, "root.crt")),
        "-untrusted",
        path_str(&ca(data, "issuing.crt")),
        "-verify_hostname",
        "www.bcy.gov.vn",
        path_str(&tls_cert),
    ]);
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), cases.len(), "serials must be unique");

    // --days sets the validity (within the profile's maximum).
    let (_, csr) = make_csr(data, "/C=VN/O=Bộ Tài chính/CN=short", "ec:P-256");
    let (_, cert) = issue(data, &csr, "person", &["--days", "30"]);
    let p = path_str(&cert);
    assert!(
        openssl(&[
            "x509",
            "-in",
            p,
            "-noout",
            "-checkend",
            &(29 * 86_400).to_string()
        ])
        .status
        .success(),
        "expires before 29 days"
    );
    assert!(
        !openssl(&[
            "x509",
            "-in",
            p,
            "-noout",
            "-checkend",
            &(31 * 86_400).to_string()
        ])
        .status
        .success(),
        "outlives 30 days"
    );
}

fn x509_subject_of_csr(csr: &Path) -> String {
    openssl_ok(&[
        "req",
        "-in",
        path_str(csr),
        "-noout",
        "-subject",
        "-nameopt",
        "utf8",
    ])
    .trim()
    .to_string()
}

#[test]
fn vietnamese_subject_round_trips_exactly_as_utf8string() {
    let dir = init(&[]);
    let data = dir.path();
    let (_, csr) = make_csr(data, VN_SUBJECT, "ec:P-256");
    let (serial, cert) = issue(data, &csr, "organization", &[]);
    assert_eq!(x509_subject(&cert), VN_SUBJECT_PRINTED);
    assert_eq!(x509_subject_of_csr(&csr), VN_SUBJECT_PRINTED);
    let parsed = openssl_ok(&["asn1parse", "-in", path_str(&cert)]);
    for value in ["Ban Cơ yếu Chính phủ", "Nguyễn Văn Ánh"] {
        let line = parsed
            .lines()
            .find(|l| l.ends_with(&format!(":{value}")))
            .unwrap_or_else(|| panic!("{value} not found:\n{parsed}"));
        assert!(
            line.contains("UTF8STRING"),
            "{value} must be a UTF8String: {line}"
        );
    }
    // countryName stays a PrintableString (RFC 5280 Appendix A).
    assert!(parsed.contains("PRINTABLESTRING   :VN"), "{parsed}");
    // The store and the CLI keep the name intact too.
    assert_eq!(
        field(&show(data, &serial), "subject"),
        "CN=Nguyễn Văn Ánh,O=Ban Cơ yếu Chính phủ,C=VN"
    );
    assert_eq!(
        list_serials(data, &["--subject", "Nguyễn Văn"]),
        vec![serial.clone()]
    );
    assert_eq!(
        list_serials(data, &["--subject", "cơ yếu"]),
        vec![serial.clone()]
    );
    // Case-insensitive beyond ASCII: an operator typing capitals finds the name.
    assert_eq!(
        list_serials(data, &["--subject", "NGUYỄN VĂN ÁNH"]),
        vec![serial]
    );
}

#[test]
fn bad_requests_are_refused_clearly_and_audited() {
    let dir = init(&[]);
    let data = dir.path();
    let work = data.join("requests");
    std::fs::create_dir(&work).expect("mkdir");
    let (_, good) = make_csr(
        &work,
        "/C=VN/O=Ban Cơ yếu Chính phủ/CN=Phạm Minh",
        "ec:P-256",
    );

    let garbage_file = work.join("garbage.bin");
    std::fs::write(&garbage_file, garbage(0x5eed_0001, 700)).expect("write");
    let der = read(&csr_der(&work, &good));
    let truncated = work.join("truncated.der");
    std::fs::write(&truncated, &der[..der.len() * 2 / 3]).expect("write");
    // The last byte of a DER CSR is the last byte of the ECDSA signature's `s`: flipping it
    // keeps the encoding valid and breaks the proof of possession.
    let mut forged = der.clone();
    *forged.last_mut().expect("non-empty") ^= 0x01;
    let forged_file = work.join("forged.der");
    std::fs::write(&forged_file, &forged).expect("write");
    let (_, weak) = make_csr(&work, "/C=VN/O=Ban Cơ yếu Chính phủ/CN=weak", "rsa:1024");
    let (_, no_org) = make_csr(&work, "/CN=Nguyễn Văn Ánh", "ec:P-256");
    let (_, no_country) = make_csr(
        &work,
        "/O=Ban Cơ yếu Chính phủ/CN=Nguyễn Văn Ánh",
        "ec:P-256",
    );

    let count = certificate_count(data);
    let g = |p: &Path| path_str(p).to_string();
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec![g(&garbage_file), "person".into()],
            "person",
            "malformed CSR",
        ),
        (
            vec![g(&truncated), "person".into()],
            "person",
            "malformed CSR",
        ),
        (
            vec![g(&forged_file), "person".into()],
            "person",
            "signature does not verify",
        ),
        (vec![g(&weak), "person".into()], "person", "1024"),
        (
            vec![g(&good), "no-such-profile".into()],
            "no-such-profile",
            "unknown profile",
        ),
        (
            vec![g(&no_org), "organization".into()],
            "organization",
            "lacks required o",
        ),
        (
            vec![g(&no_country), "organization".into()],
            "organization",
            "lacks required c",
        ),
        (
            vec![g(&good), "person".into(), "--days".into(), "1096".into()],
            "person",
            "outside 1..=1095",
        ),
        (
            vec![g(&good), "tls-server".into(), "--days".into(), "399".into()],
            "tls-server",
            "outside 1..=398",
        ),
    ];
    for (args, profile, needle) in &cases {
        let mut full = vec![
            "cert",
            "issue",
            "--csr",
            args[0].as_str(),
            "--profile",
            args[1].as_str(),
        ];
        full.extend(args[2..].iter().map(String::as_str));
        let (code, stdout, stderr) = pkid_fails(data, &full);
        assert_eq!(code, 3, "refused input exits 3: {full:?}: {stderr}");
        assert!(stdout.is_empty(), "{full:?} printed {stdout}");
        let line = one_error_line(&stderr);
        assert!(
            line.contains(needle),
            "{full:?}: {line:?} should mention {needle:?}"
        );
        let audit = newest_audit(data);
        assert!(
            audit.contains("cert.issue") && audit.contains(profile) && audit.contains(" refused "),
            "{full:?}: audit {audit}"
        );
        assert!(
            audit.contains(needle),
            "the audit record gives the reason: {audit}"
        );
    }
    assert_eq!(
        certificate_count(data),
        count,
        "a refused request must not leave a certificate behind"
    );
    // A missing request file is refused the same way.
    let (code, stdout, stderr) = pkid_fails(
        data,
        &[
            "cert",
            "issue",
            "--csr",
            "/nonexistent/req.csr",
            "--profile",
            "person",
        ],
    );
    assert_eq!(code, 3);
    assert!(stdout.is_empty());
    assert!(
        one_error_line(&stderr).contains("/nonexistent/req.csr"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------------

#[test]
fn lifecycle_hold_release_renew_rekey_modify_revoke() {
    let dir = init(&[]);
    let data = dir.path();
    let (_, csr) = make_csr(data, VN_SUBJECT, "ec:P-256");
    let (a, a_pem) = issue(data, &csr, "person", &[]);

    // hold / release
    let held = pkid_ok(data, &["cert", "hold", "--serial", &a]);
    assert_eq!(field(&held, "status"), "hold");
    assert_eq!(field(&held, "reason"), "certificateHold");
    assert_eq!(list_serials(data, &["--status", "hold"]), vec![a.clone()]);
    let released = pkid_ok(data, &["cert", "release", "--serial", &a]);
    assert_eq!(field(&released, "status"), "valid");
    assert!(!released.contains("reason:"), "{released}");

    // renew: same subject and key, new serial; the old one stays valid
    let (b, b_pem) = save_pem(data, &pkid_ok(data, &["cert", "renew", "--serial", &a]));
    assert_ne!(a, b);
    assert_eq!(public_key_of_cert(&a_pem), public_key_of_cert(&b_pem));
    assert_eq!(x509_subject(&b_pem), VN_SUBJECT_PRINTED);
    assert_verifies(data, &b_pem, &[]);
    assert_eq!(field(&show(data, &a), "status"), "valid");
    assert_eq!(field(&show(data, &b), "replaces"), a);

    // rekey: new key from a new request; the predecessor is revoked as superseded
    let (new_key, new_csr) = make_csr(data, VN_SUBJECT, "ec:P-384");
    let (c, c_pem) = save_pem(
        data,
        &pkid_ok(
            data,
            &["cert", "rekey", "--serial", &b, "--csr", path_str(&new_csr)],
        ),
    );
    let new_pub = openssl_ok(&["pkey", "-in", path_str(&new_key), "-pubout"]);
    assert_eq!(public_key_of_cert(&c_pem), new_pub);
    assert_ne!(public_key_of_cert(&c_pem), public_key_of_cert(&b_pem));
    assert_eq!(x509_subject(&c_pem), VN_SUBJECT_PRINTED);
    assert_verifies(data, &c_pem, &[]);
    let b_rec = show(data, &b);
    assert_eq!(
        (field(&b_rec, "status"), field(&b_rec, "reason")),
        ("revoked".into(), "superseded".into())
    );
    assert_eq!(field(&show(data, &c), "replaces"), b);

    // modify --subject: new subject, same key; the predecessor is revoked as superseded
    let new_subject = "CN=Trần Thị Bình,O=Ban Cơ yếu Chính phủ,C=VN";
    let (d, d_pem) = save_pem(
        data,
        &pkid_ok(
            data,
            &["cert", "modify", "--serial", &c, "--subject", new_subject],
        ),
    );
    assert_eq!(
        x509_subject(&d_pem),
        "subject=C=VN, O=Ban Cơ yếu Chính phủ, CN=Trần Thị Bình"
    );
    assert_eq!(public_key_of_cert(&d_pem), public_key_of_cert(&c_pem));
    assert_verifies(data, &d_pem, &[]);
    let c_rec = show(data, &c);
    assert_eq!(
        (field(&c_rec, "status"), field(&c_rec, "reason")),
        ("revoked".into(), "superseded".into())
    );

    // revoke with a reason and an invalidity date
    let invalid_since = rfc3339_ago(86_400);
    let revoked = pkid_ok(
        data,
        &[
            "cert",
            "revoke",
            "--serial",
            &d,
            "--reason",
            "keyCompromise",
            "--invalidity-date",
            &invalid_since,
        ],
    );
    assert_eq!(field(&revoked, "status"), "revoked");
    assert_eq!(field(&revoked, "reason"), "keyCompromise");
    assert_eq!(field(&revoked, "invalidity"), invalid_since);
    let d_rec = show(data, &d);
    assert_eq!(field(&d_rec, "reason"), "keyCompromise");
    assert_eq!(field(&d_rec, "invalidity"), invalid_since);
    // Serials are accepted the way openssl prints them too.
    let upper = pkid_ok(
        data,
        &[
            "cert",
            "show",
            "--serial",
            &format!("0x{}", d.to_ascii_uppercase()),
        ],
    );
    assert_eq!(field(&upper, "serial"), d);

    // listings
    let mut revoked_list = list_serials(data, &["--status", "revoked"]);
    revoked_list.sort();
    let mut expected = vec![b.clone(), c.clone(), d.clone()];
    expected.sort();
    assert_eq!(revoked_list, expected);
    let valid = list_serials(data, &["--status", "valid"]);
    assert!(valid.contains(&a) && !valid.contains(&b), "{valid:?}");
    assert_eq!(
        list_serials(data, &["--subject", "Trần Thị Bình"]),
        vec![d.clone()]
    );
    assert_eq!(
        list_serials(data, &["--subject", "Nguyễn Văn Ánh"]),
        vec![c, b, a.clone()],
        "newest first"
    );
    let pem = pkid_ok(data, &["cert", "show", "--serial", &a, "--pem"]);
    assert_eq!(
        pem.as_bytes(),
        read(&a_pem),
        "show --pem prints the issued certificate"
    );

    let audit = pkid_ok(data, &["audit", "list"]);
    for action in [
        "cert.issue",
        "cert.hold",
        "cert.release",
        "cert.renew",
        "cert.rekey",
        "cert.modify",
        "cert.revoke",
    ] {
        assert!(
            audit
                .lines()
                .any(|l| l.contains(action) && l.contains(" success ")),
            "{action} not audited:\n{audit}"
        );
    }
    assert!(
        audit.contains(&format!("reason=superseded by {d}")),
        "{audit}"
    );
}

#[test]
fn lifecycle_operations_that_cannot_apply_are_refused_clearly() {
    let dir = init(&[]);
    let data = dir.path();
    let (_, csr) = make_csr(data, VN_SUBJECT, "ec:P-256");
    let (valid, _) = issue(data, &csr, "person", &[]);
    let (revoked, _) = issue(data, &csr, "person", &[]);
    pkid_ok(
        data,
        &[
            "cert",
            "revoke",
            "--serial",
            &revoked,
            "--reason",
            "cessationOfOperation",
        ],
    );
    let unknown = "7f0000000000000000000000000000aa";

    let future = rfc3339_ago(-86_400);
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (
            vec!["revoke", "--serial", &revoked],
            5,
            format!("certificate {revoked} is revoked; cannot revoke"),
        ),
        (
            vec!["hold", "--serial", &revoked],
            5,
            format!("certificate {revoked} is revoked; cannot hold"),
        ),
        (
            vec!["release", "--serial", &valid],
            5,
            format!("certificate {valid} is valid; cannot release"),
        ),
        (
            vec!["renew", "--serial", &revoked],
            5,
            format!("certificate {revoked} is revoked"),
        ),
        (
            vec!["rekey", "--serial", &revoked, "--csr", path_str(&csr)],
            5,
            format!("certificate {revoked} is revoked"),
        ),
        (
            vec!["modify", "--serial", &revoked, "--subject", "CN=x,O=y"],
            5,
            format!("certificate {revoked} is revoked"),
        ),
        (
            vec!["revoke", "--serial", unknown],
            4,
            format!("no certificate with serial {unknown}"),
        ),
        (
            vec!["renew", "--serial", unknown],
            4,
            format!("no certificate with serial {unknown}"),
        ),
        (
            vec!["show", "--serial", unknown],
            4,
            format!("no certificate with serial {unknown}"),
        ),
        (
            vec!["revoke", "--serial", "not-hex"],
            3,
            "\"not-hex\" is not a serial number".into(),
        ),
        (
            vec!["release", "--serial", "12g4"],
            3,
            "\"12g4\" is not a serial number".into(),
        ),
        (
            vec!["show", "--serial", "0x"],
            3,
            "\"0x\" is not a serial number".into(),
        ),
        (
            vec!["revoke", "--serial", &valid, "--reason", "bored"],
            3,
            "unknown revocation reason \"bored\"".into(),
        ),
        (
            vec!["revoke", "--serial", &valid, "--reason", "certificateHold"],
            3,
            "pkid cert hold".into(),
        ),
        (
            vec![
                "revoke",
                "--serial",
                &valid,
                "--invalidity-date",
                "yesterday",
            ],
            3,
            "--invalidity-date".into(),
        ),
        (
            vec!["revoke", "--serial", &valid, "--invalidity-date", &future],
            3,
            "the invalidity date is in the future".into(),
        ),
        (
            vec!["rekey", "--serial", &valid, "--csr", path_str(&csr)],
            3,
            "same key".into(),
        ),
        (
            vec![
                "modify",
                "--serial",
                &valid,
                "--subject",
                "CN=Nguyễn Văn Ánh,O=Ban Cơ yếu Chính phủ,C=VN",
            ],
            3,
            "unchanged".into(),
        ),
    ];
    for (args, expected_code, needle) in &cases {
        let mut full = vec!["cert"];
        full.extend_from_slice(args);
        let (code, stdout, stderr) = pkid_fails(data, &full);
        let line = one_error_line(&stderr);
        assert_eq!(code, *expected_code, "{full:?}: {line}");
        assert!(stdout.is_empty(), "{full:?}: {stdout}");
        assert!(
            line.contains(needle.as_str()),
            "{full:?}: {line:?} should contain {needle:?}"
        );
    }
    // Nothing changed.
    assert_eq!(field(&show(data, &valid), "status"), "valid");
    let r = show(data, &revoked);
    assert_eq!(
        (field(&r, "status"), field(&r, "reason")),
        ("revoked".into(), "cessationOfOperation".into())
    );
    assert_eq!(list_serials(data, &["--subject", "Nguyễn"]).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------

fn fetch_tls(data: &Path, daemon: &Daemon, extra: &[&str], path: &str) -> Reply {
    let tls = daemon.tls_args(&ca(data, "root.crt"));
    let url = daemon.https_url(path);
    let mut args: Vec<&str> = tls.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    args.push(&url);
    fetch(&args)
}

/// PEM → DER with openssl (an independent conversion to compare served bytes with).
fn pem_to_der(pem: &Path) -> Vec<u8> {
    let out = openssl(&["x509", "-in", path_str(pem), "-outform", "DER"]);
    assert_success(&out, "openssl x509 -outform DER");
    out.stdout
}

#[test]
fn daemon_serves_health_metrics_and_ca_certificates() {
    let dir = init(&[]);
    let data = dir.path();
    let daemon = Daemon::start(data);

    let health = get(&daemon.http_url("/healthz"));
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    let ready = get(&daemon.http_url("/readyz"));
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(
        fetch(&["-I", &daemon.http_url("/healthz")]).status,
        200,
        "HEAD"
    );

    for name in ["root", "issuing"] {
        let reply = get(&daemon.http_url(&format!("/ca/{name}.crt")));
        assert_eq!(reply.status, 200);
        assert!(
            reply.headers.contains("application/pkix-cert"),
            "{}",
            reply.headers
        );
        let served = unique_path(data, name, "der");
        std::fs::write(&served, &reply.body).expect("write");
        // openssl parses it as DER, and it is exactly the PEM file's certificate.
        let as_pem = openssl_ok(&["x509", "-inform", "DER", "-in", path_str(&served)]);
        assert_eq!(as_pem.as_bytes(), read(&ca(data, &format!("{name}.crt"))));
        assert_eq!(reply.body, pem_to_der(&ca(data, &format!("{name}.crt"))));
        let pem = get(&daemon.http_url(&format!("/ca/{name}.pem")));
        assert_eq!(
            (pem.status, pem.body),
            (200, read(&ca(data, &format!("{name}.crt"))))
        );
    }
    assert_eq!(get(&daemon.http_url("/ca/nope.crt")).status, 404);
    assert_eq!(get(&daemon.http_url("/ca/root")).status, 404);

    // /metrics comes after some traffic, so the counters have samples.
    let metrics = get(&daemon.http_url("/metrics"));
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.headers.contains("text/plain"),
        "{}",
        metrics.headers
    );
    let text = metrics.text();
    for needle in [
        "pkid_http_requests_total{route=\"healthz\",status=\"200\"}",
        "pkid_http_requests_total{route=\"ca\",status=\"404\"}",
        "pkid_http_request_duration_seconds_bucket",
        "pkid_store_operations_total{",
        "pkid_store_change_seq ",
        "pkid_signer_operations_total{",
        "pkid_signer_duration_seconds",
        "pkid_http_rate_limited_total 0",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from /metrics:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("pkid_store_operations_total{op=\"ping\",outcome=\"ok\"} ")),
        "readyz pings the store:\n{text}"
    );
}

#[test]
fn daemon_serves_certificates_the_cli_issues_and_follows_revocations() {
    let dir = init(&[]);
    let data = dir.path();
    let daemon = Daemon::start(data);

    // The CLI issues while the daemon holds the store open; the daemon serves it at once.
    let (_, csr) = make_csr(data, VN_SUBJECT, "ec:P-256");
    let (serial, pem) = issue(data, &csr, "person", &[]);
    let der_reply = get(&daemon.http_url(&format!("/certs/{serial}")));
    assert_eq!(der_reply.status, 200, "{}", der_reply.text());
    assert!(
        der_reply.headers.contains("application/pkix-cert"),
        "{}",
        der_reply.headers
    );
    assert_eq!(der_reply.body, pem_to_der(&pem));
    let pem_reply = get(&daemon.http_url(&format!("/certs/{serial}.pem")));
    assert_eq!((pem_reply.status, pem_reply.body), (200, read(&pem)));
    let upper = get(&daemon.http_url(&format!("/certs/{}", serial.to_ascii_uppercase())));
    assert_eq!(upper.status, 200, "serials are case-insensitive");
    for missing in [
        "/certs/7f0000000000000000000000000000aa",
        "/certs/7f0000000000000000000000000000aa.pem",
        "/certs/not-a-serial",
        "/certs/",
    ] {
        assert_eq!(get(&daemon.http_url(missing)).status, 404, "{missing}");
    }

    // A revocation by the CLI reaches the daemon's change follower (250 ms poll by default).
    let seq = || {
        daemon
            .metric("pkid_store_change_seq")
            .expect("pkid_store_change_seq")
    };
    // Wait until the issuance above has been followed and the sequence is quiet.
    let mut last = seq();
    assert!(
        poll(Duration::from_secs(10), || {
            std::thread::sleep(Duration::from_millis(600));
            let now = seq();
            let stable = now == last && now > 0.0;
            last = now;
            stable
        }),
        "change sequence never settled"
    );
    let before = last;
    let started = Instant::now();
    revoke(data, &serial, "keyCompromise");
    let seen = poll(Duration::from_secs(3), || seq() > before);
    let delay = started.elapsed();
    assert!(
        seen,
        "the daemon never saw the revocation (change_seq stayed {before})"
    );
    assert!(
        delay < PROPAGATION_BOUND,
        "the revocation took {delay:?} to reach the daemon"
    );
    assert_eq!(seq(), before + 1.0, "one revocation is one change");
    // The certificate stays published after revocation (relying parties may still fetch it).
    assert_eq!(
        get(&daemon.http_url(&format!("/certs/{serial}"))).status,
        200
    );
}

#[test]
fn garbage_on_every_route_leaves_the_daemon_serving() {
    let dir = init(&[]);
    let data = dir.path();
    let daemon = Daemon::start(data);
    let (_, csr) = make_csr(data, "/CN=garbage", "ec:P-256");
    let (serial, _) = issue(data, &csr, "tls-client", &[]);

    let seed = 0x9e37_79b9_7f4a_7c15u64;
    eprintln!("garbage seed {seed:#x}");
    let body = unique_path(data, "garbage", "bin");
    std::fs::write(&body, garbage(seed, 4096)).expect("write");
    let body_arg = format!("@{}", path_str(&body));
    let long = format!("/{}", "a".repeat(8000));
    let deep = format!("/certs/{}", "f".repeat(200));
    let paths = [
        "/healthz".to_string(),
        "/readyz".into(),
        "/metrics".into(),
        "/ca/root.crt".into(),
        "/ca/issuing.pem".into(),
        format!("/certs/{serial}"),
        format!("/certs/{serial}.pem"),
        "/ocsp".into(),
        "/crl/issuing.crl".into(),
        "/tsa".into(),
        "/.well-known/est/simpleenroll".into(),
        "/.well-known/cmp".into(),
        "/".into(),
        "/no/such/route".into(),
        "/ca/../../etc/passwd".into(),
        "/certs/%00%ff%2e%2e".into(),
        "/certs/-1".into(),
        "//ca//root.crt".into(),
        long,
        deep,
    ];
    let mut seen = Vec::new();
    for path in &paths {
        let url = daemon.http_url(path);
        for method in ["GET", "POST", "PUT", "DELETE"] {
            let reply = fetch(&[
                "--path-as-is",
                "-X",
                method,
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &body_arg,
                &url,
            ]);
            assert!(
                (200..500).contains(&reply.status),
                "{method} {}: status {} ({})",
                &path[..path.len().min(60)],
                reply.status,
                reply.text()
            );
            seen.push(reply.status);
        }
    }
    // A few specific answers.
    let wrong = fetch(&[
        "-X",
        "POST",
        "--data-binary",
        &body_arg,
        &daemon.http_url("/healthz"),
    ]);
    assert_eq!(wrong.status, 405);
    assert!(
        wrong.headers.contains("\"allow\":[\"GET, HEAD\"]"),
        "{}",
        wrong.headers
    );
    assert_eq!(
        fetch(&["-X", "DELETE", &daemon.http_url("/ca/root.crt")]).status,
        405
    );
    assert_eq!(get(&daemon.http_url("/no/such/route")).status, 404);

    // A body over max_body_bytes (262144) is refused with 413, by declared length…
    let big = unique_path(data, "big", "bin");
    std::fs::write(&big, garbage(seed ^ 1, 262_145)).expect("write");
    let too_large = fetch(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", path_str(&big)),
        &daemon.http_url("/ocsp"),
    ]);
    assert_eq!(too_large.status, 413, "{}", too_large.text());
    // …even when the client only claims it and sends nothing.
    let mut raw = TcpStream::connect(daemon.http).expect("connect");
    raw.write_all(b"POST /tsa HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
        .expect("write");
    let answer =
        String::from_utf8_lossy(&read_until_close(&mut raw, Duration::from_secs(5))).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A Content-Length that is not a number is a 400 (or hyper's own refusal), never a crash.
    let mut raw = TcpStream::connect(daemon.http).expect("connect");
    raw.write_all(b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n")
        .expect("write");
    let answer =
        String::from_utf8_lossy(&read_until_close(&mut raw, Duration::from_secs(5))).into_owned();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    // Bytes that are not HTTP at all, on both listeners; TLS to the plain listener.
    for addr in [daemon.http, daemon.https] {
        for (i, len) in [1usize, 17, 512, 65_536].iter().enumerate() {
            let mut raw = TcpStream::connect(addr).expect("connect");
            let _ = raw.write_all(&garbage(seed.rotate_left(i as u32 + 1), *len));
            let answer = read_until_close(&mut raw, Duration::from_secs(5));
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 4") || addr == daemon.https,
                "{}",
                lossy(&answer)
            );
        }
    }
    let tls_to_http = curl(&[
        "-s",
        "--max-time",
        "10",
        "-k",
        &format!("https://127.0.0.1:{}/healthz", daemon.http.port()),
    ]);
    assert!(!tls_to_http.status.success());
    // A client that connects and says nothing does not block others.
    let _silent = TcpStream::connect(daemon.http).expect("connect");

    assert_eq!(
        get(&daemon.http_url("/healthz")).status,
        200,
        "plain HTTP still serves"
    );
    assert_eq!(
        fetch_tls(data, &daemon, &[], "/healthz").status,
        200,
        "HTTPS still serves"
    );
    let logs = daemon.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(
        seen.contains(&405) && seen.contains(&404) && seen.contains(&200),
        "{seen:?}"
    );
}

#[test]
fn http2_works_on_both_listeners() {
    let dir = init(&[]);
    let data = dir.path();
    let daemon = Daemon::start(data);
    let plain = fetch(&["--http2-prior-knowledge", &daemon.http_url("/ca/root.crt")]);
    assert_eq!(
        (plain.status, plain.version.as_str()),
        (200, "2"),
        "{plain:?}"
    );
    assert_eq!(plain.body, pem_to_der(&ca(data, "root.crt")));
    let tls = fetch_tls(data, &daemon, &["--http2"], "/healthz");
    assert_eq!(
        (tls.status, tls.version.as_str(), tls.text().as_str()),
        (200, "2", "ok\n"),
        "{tls:?}"
    );
    let tls11 = fetch_tls(data, &daemon, &["--http1.1"], "/readyz");
    assert_eq!((tls11.status, tls11.version.as_str()), (200, "1.1"));
    // The listener's certificate is checked, not waved through: without our root it fails.
    let untrusted = curl(&[
        "-s",
        "--max-time",
        "10",
        "--resolve",
        &format!("localhost:{}:127.0.0.1", daemon.https.port()),
        &daemon.https_url("/healthz"),
    ]);
    assert_eq!(
        untrusted.status.code(),
        Some(60),
        "curl should refuse an unknown CA"
    );
}

#[test]
fn rate_limit_answers_429_and_reload_applies_a_new_limit() {
    let dir = init(&[]);
    let data = dir.path();
    // An operator's override file: merged over the defaults, only [server] rate limits change.
    std::fs::write(
        data.join("pkid.toml"),
        "[server]\nrate_limit_per_second = 1\nrate_limit_burst = 2\n",
    )
    .expect("write");
    let daemon = Daemon::start(data);
    let url = daemon.http_url("/healthz");
    let burst = |n: usize| -> Vec<(u16, String)> {
        // One curl, n requests on one connection; `-o` applies to one URL each.
        let mut args = vec![
            "-s",
            "--max-time",
            CURL_MAX_SECS,
            "-w",
            "%{http_code} %header{retry-after}\n",
        ];
        for _ in 0..n {
            args.extend(["-o", "/dev/null", url.as_str()]);
        }
        let out = curl(&args);
        lossy(&out.stdout)
            .lines()
            .map(|l| {
                let (code, retry) = l.split_once(' ').unwrap_or((l, ""));
                (code.parse().expect("status"), retry.trim().to_string())
            })
            .collect()
    };
    let replies = burst(6);
    assert_eq!(replies.len(), 6, "{replies:?}");
    let limited: Vec<_> = replies.iter().filter(|(s, _)| *s == 429).collect();
    assert!(
        !limited.is_empty(),
        "no 429 in a burst of 6 over a limit of 2: {replies:?}"
    );
    for (_, retry) in &limited {
        let secs: u64 = retry
            .parse()
            .unwrap_or_else(|_| panic!("429 without a numeric Retry-After: {replies:?}"));
        assert!((1..=60).contains(&secs), "{replies:?}");
    }
    assert!(
        replies.iter().all(|(s, _)| *s == 200 || *s == 429),
        "{replies:?}"
    );
    let refused = limited.len() as f64;

    // Raise the limit in the file and reload.
    std::fs::write(
        data.join("pkid.toml"),
        "[server]\nrate_limit_per_second = 1000\nrate_limit_burst = 1000\n",
    )
    .expect("write");
    daemon.sighup();
    assert!(
        daemon.wait_for_log("configuration reloaded", 1, Duration::from_secs(10)),
        "no reload logged:\n{}",
        daemon.logs()
    );
    // The listeners come from the command line (`--http`, `--https`), which a reload keeps:
    // no warning that they changed.
    assert!(
        !daemon.logs().contains("change only on restart"),
        "{}",
        daemon.logs()
    );
    let replies = burst(10);
    assert!(
        replies.iter().all(|(s, _)| *s == 200),
        "after reload: {replies:?}"
    );
    let counted = daemon
        .metric("pkid_http_rate_limited_total")
        .expect("pkid_http_rate_limited_total");
    assert!(counted >= refused, "{counted} counted, {refused} seen");

    // A broken file is refused on reload and the running configuration stays.
    std::fs::write(
        data.join("pkid.toml"),
        "[server]\nrate_limit_burst = \"many\"\n",
    )
    .expect("write");
    daemon.sighup();
    assert!(
        daemon.wait_for_log("reload refused", 1, Duration::from_secs(10)),
        "{}",
        daemon.logs()
    );
    assert!(burst(10).iter().all(|(s, _)| *s == 200));
}

#[test]
fn sigterm_shuts_down_gracefully_even_with_an_idle_client() {
    let dir = init(&[]);
    let data = dir.path();
    let mut daemon = Daemon::start(data);
    // A keep-alive connection left idle after one request must not hold the shutdown for the
    // 30-second grace period.
    let mut idle = TcpStream::connect(daemon.http).expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).expect("response");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        lossy(&buf[..n])
    );

    let started = Instant::now();
    daemon.sigterm();
    let status = daemon.wait();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        daemon.logs()
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown took {:?}",
        started.elapsed()
    );
    let logs = daemon.logs();
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(logs.contains("all connections closed"), "{logs}");
    assert!(!logs.contains("grace period over"), "{logs}");
    assert!(
        read_until_close(&mut idle, Duration::from_secs(5)).is_empty(),
        "the idle connection is closed"
    );
    assert!(
        TcpStream::connect(daemon.http).is_err(),
        "the listener is gone"
    );
}

#[test]
fn sigterm_lets_a_request_in_progress_finish_before_the_daemon_exits() {
    let dir = init(&[]);
    let mut daemon = Daemon::start(dir.path());
    // A request whose body is half sent when the stop comes: it is answered, then the
    // connection and the daemon close.
    let mut busy = TcpStream::connect(daemon.http).expect("connect");
    busy.write_all(
        b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\n\
          Content-Length: 10\r\n\r\n01234",
    )
    .expect("write head and half the body");
    // The request has begun once its head is parsed; give the daemon a moment to get there.
    std::thread::sleep(Duration::from_millis(300));
    daemon.sigterm();
    assert!(
        daemon.wait_for_log("shutting down", 1, Duration::from_secs(10)),
        "{}",
        daemon.logs()
    );
    std::thread::sleep(Duration::from_millis(300));
    busy.write_all(b"56789").expect("the rest of the body");
    let answer = lossy(&read_until_close(&mut busy, Duration::from_secs(10)));
    // Not an OCSP request: answered malformedRequest, in an HTTP 200.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let status = daemon.wait();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        daemon.logs()
    );
    let logs = daemon.logs();
    assert!(logs.contains("all connections closed"), "{logs}");
}

#[test]
fn serve_initialises_an_empty_data_dir_once_and_then_reuses_it() {
    let dir = tempdir();
    let data = dir.path();
    let mut first = Daemon::start(data);
    assert!(
        first.logs().contains("empty data directory: initialising"),
        "{}",
        first.logs()
    );
    let root = read(&ca(data, "root.crt"));
    let served = get(&first.http_url("/ca/root.crt"));
    assert_eq!(served.body, pem_to_der(&ca(data, "root.crt")));
    assert_eq!(get(&first.http_url("/readyz")).status, 200);
    for role in ["ocsp", "tsa", "tls"] {
        assert_verifies(data, &ca(data, &format!("{role}.crt")), &[]);
    }
    first.sigterm();
    assert!(first.wait().success());

    let second = Daemon::start(data);
    assert!(!second.logs().contains("initialising"), "{}", second.logs());
    assert_eq!(
        read(&ca(data, "root.crt")),
        root,
        "the root certificate is kept"
    );
    assert_eq!(get(&second.http_url("/ca/root.crt")).body, served.body);
    let audit = pkid_ok(data, &["audit", "list"]);
    assert_eq!(audit.matches("ca.init").count(), 1, "{audit}");
}

/// The delegated certificates (OCSP responder, TSA, HTTPS) expire long before the CAs; an
/// operator renews them in place, keeping the key and the subject, and the daemon serves the
/// new one after a restart.
#[test]
fn delegated_certificates_are_reissued_in_place() {
    let dir = init(&[]);
    let data = dir.path();
    for role in ["ocsp", "tsa", "tls"] {
        let path = ca(data, &format!("{role}.crt"));
        let (old_serial, old_key, old_subject) = (
            x509_serial(&path),
            public_key_of_cert(&path),
            x509_subject(&path),
        );
        let pem = pkid_ok(data, &["ca", "reissue", "--role", role, "--days", "30"]);
        assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");
        assert_ne!(
            x509_serial(&path),
            old_serial,
            "{role}: a new certificate is installed"
        );
        assert_eq!(public_key_of_cert(&path), old_key, "{role}: same key");
        assert_eq!(x509_subject(&path), old_subject, "{role}: same subject");
        assert_verifies(data, &path, &[]);
        let text = x509_text(&path);
        assert!(text.contains("Not After"), "{text}");
    }
    // The TSA keeps its critical timeStamping-only EKU; the HTTPS chain file is rewritten.
    let tsa = x509_text(&ca(data, "tsa.crt"));
    assert!(tsa.contains("X509v3 Extended Key Usage: critical"), "{tsa}");
    let chain = std::fs::read_to_string(data.join("certs/tls-chain.pem")).expect("chain");
    let tls = std::fs::read_to_string(ca(data, "tls.crt")).expect("tls");
    assert!(
        chain.starts_with(&tls),
        "tls-chain.pem starts with the new certificate"
    );
    let audit = pkid_ok(data, &["audit", "list"]);
    assert_eq!(audit.matches("ca.reissue").count(), 3, "{audit}");
    // Only the delegated roles can be reissued this way.
    let (code, _, stderr) = pkid_fails(data, &["ca", "reissue", "--role", "root"]);
    assert_eq!(code, 2, "{stderr}");
    // The daemon serves with the reissued HTTPS certificate.
    let daemon = Daemon::start(data);
    let mut args = daemon.tls_args(&ca(data, "root.crt"));
    args.push(daemon.https_url("/healthz"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reply = fetch(&args);
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn reload_applies_the_ra_section_and_refuses_a_broken_calendar() {
    let dir = init(&[]);
    let data = dir.path();
    std::fs::write(data.join("pkid.toml"), "[ra]\nmax_document_bytes = 1024\n").expect("write");
    let daemon = Daemon::start(data);
    let root = data.join("certs/root.crt");
    // A body declared at 5 MiB: over the API's limit for 1,024-byte documents (4 MiB of rows
    // plus the document in base64), within it for 10 MiB documents. The limit answers before
    // authentication, so no token is needed to see which side of it the body is.
    let body = dir.path().join("five-mib.json");
    std::fs::write(&body, vec![b' '; 5 * 1024 * 1024]).expect("body");
    let status = || -> u16 {
        let mut args = daemon.tls_args(&root);
        let at = format!("@{}", path_str(&body));
        let url = daemon.https_url("/api/v1/requests");
        args.extend(
            [
                "-s",
                "--http1.1",
                "--expect100-timeout",
                "60",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                CURL_MAX_SECS,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &at,
                &url,
            ]
            .map(String::from),
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        lossy(&curl(&refs).stdout).trim().parse().expect("status")
    };
    assert_eq!(status(), 413);

    std::fs::write(
        data.join("pkid.toml"),
        "[ra]\nmax_document_bytes = 10485760\n",
    )
    .expect("write");
    daemon.sighup();
    assert!(
        daemon.wait_for_log("configuration reloaded", 1, Duration::from_secs(10)),
        "{}",
        daemon.logs()
    );
    assert_eq!(
        status(),
        401,
        "within the reloaded limit, the token is asked for"
    );

    // A calendar that does not parse: the [ra] section is refused whole, the limit stays.
    std::fs::write(data.join("broken-calendar.toml"), "[2026]\nday_off = 3\n").expect("write");
    std::fs::write(
        data.join("pkid.toml"),
        "[ra]\nmax_document_bytes = 1024\ncalendar = \"broken-calendar.toml\"\n",
    )
    .expect("write");
    daemon.sighup();
    assert!(
        daemon.wait_for_log("its calendar is not valid", 1, Duration::from_secs(10)),
        "{}",
        daemon.logs()
    );
    assert_eq!(status(), 401, "the running [ra] section stays");
}
