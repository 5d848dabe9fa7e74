//! EST (RFC 7030) end to end: the real daemon on loopback, driven with curl and openssl over
//! TLS. `cacerts` decoded with `openssl pkcs7`; `csrattrs` with `openssl asn1parse`;
//! `simpleenroll` with HTTP Basic (a credential made by `pkid credential add`) and with a
//! client certificate; `simplereenroll` (renew, rekey, a refused subject change); operator
//! approval (202 + Retry-After, approved through `pkid request approve`, 403 after
//! `pkid request reject`); and every bad input of the issue, each a precise 4xx with a reason,
//! counted, with the daemon still serving.

mod common;

use common::*;
use std::path::{Path, PathBuf};

const ORG: &str = "so-gd-dn";
const ORG_NAME: &str = "Sở Giáo dục và Đào tạo Đà Nẵng";

/// Appends the EST labels and a P-256-only device profile to the data directory's pkid.toml.
fn configure(data: &Path) {
    let path = data.join("pkid.toml");
    let mut text = std::fs::read_to_string(&path).expect("pkid.toml");
    text = text.replacen("default_label = \"\"", "default_label = \"devices\"", 1);
    text.push_str(&format!(
        r#"
[profiles.device]
key_usage = ["digitalSignature"]
extended_key_usage = ["clientAuth"]
extended_key_usage_critical = false
max_validity_days = 825
default_validity_days = 365
allowed_keys = ["p256"]
required_subject = ["CN"]
copy_subject_alt_name = true

[[est.labels]]
name = "devices"
profile = "device"
organisation = "{ORG}"

[[est.labels]]
name = "signers"
profile = "person"
organisation = "{ORG}"

[[est.labels]]
name = "staff"
profile = "tls-client"
organisation = "{ORG}"
approval = "operator"
"#
    ));
    std::fs::write(&path, text).expect("write pkid.toml");
}

/// A CSR as the base64 body EST sends (openssl wraps it at 64 columns).
fn b64_csr(dir: &Path, csr_pem: &Path) -> PathBuf {
    let der = csr_der(dir, csr_pem);
    let b64 = unique_path(dir, "req", "b64");
    openssl_ok(&["base64", "-in", path_str(&der), "-out", path_str(&b64)]);
    b64
}

struct Est<'a> {
    daemon: &'a Daemon,
    data: &'a Path,
}

impl Est<'_> {
    fn url(&self, path: &str) -> String {
        self.daemon.https_url(&format!("/.well-known/est{path}"))
    }

    /// curl over TLS (trusting the data directory's root) with `extra` options.
    fn call(&self, path: &str, extra: &[&str]) -> Reply {
        let root = self.data.join("certs/root.crt");
        let mut args: Vec<String> = self.daemon.tls_args(&root);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(self.url(path));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fetch(&args)
    }

    /// Asserts that the daemon accepts a certificate EST just issued as a TLS client
    /// certificate at once: the enrollment answered only after this process's revocation index
    /// had it (an unknown certificate is refused in the handshake).
    fn assert_known(&self, cert: &Path, key: &Path) {
        let root = self.data.join("certs/root.crt");
        let mut args: Vec<String> = self.daemon.tls_args(&root);
        args.extend(
            ["--cert", path_str(cert), "--key", path_str(key)]
                .iter()
                .map(|s| s.to_string()),
        );
        args.push(self.daemon.https_url("/whoami"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = fetch(&args);
        assert_eq!(
            r.status,
            200,
            "{} right after its enrollment",
            cert.display()
        );
    }

    /// POSTs a base64 CSR file as application/pkcs10.
    fn post(&self, path: &str, body: &Path, auth: &[&str]) -> Reply {
        let data = format!("@{}", path_str(body));
        let mut extra = vec![
            "-H",
            "Content-Type: application/pkcs10",
            "-H",
            "Content-Transfer-Encoding: base64",
            "--data-binary",
            &data,
        ];
        extra.extend_from_slice(auth);
        self.call(path, &extra)
    }
}

/// Decodes a certs-only reply into its certificates (PEM, as `openssl pkcs7 -print_certs`).
fn certs_of(dir: &Path, reply: &Reply) -> String {
    let b64 = unique_path(dir, "reply", "b64");
    std::fs::write(&b64, &reply.body).expect("write reply");
    let der = unique_path(dir, "reply", "p7");
    openssl_ok(&[
        "base64",
        "-d",
        "-in",
        path_str(&b64),
        "-out",
        path_str(&der),
    ]);
    openssl_ok(&[
        "pkcs7",
        "-inform",
        "DER",
        "-in",
        path_str(&der),
        "-print_certs",
    ])
}

/// The one certificate of an enrollment reply, saved as PEM.
fn issued(dir: &Path, reply: &Reply) -> (String, PathBuf) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.headers.contains("smime-type=certs-only"),
        "{}",
        reply.headers
    );
    assert!(
        reply.has_header("content-transfer-encoding"),
        "{}",
        reply.headers
    );
    let pem = certs_of(dir, reply);
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 1, "{pem}");
    let start = pem.find("-----BEGIN").expect("PEM");
    save_pem(dir, pem[start..].trim_end())
}

fn counted(daemon: &Daemon, operation: &str, outcome: &str) -> f64 {
    daemon
        .metric(&format!(
            "pkid_est_requests_total{{operation=\"{operation}\",outcome=\"{outcome}\"}}"
        ))
        .unwrap_or(0.0)
}

#[test]
fn est_enrolls_renews_and_refuses_bad_input_end_to_end() {
    let dir = init(&[]);
    let data = dir.path();
    pkid_ok(
        data,
        &[
            "org",
            "add",
            "--id",
            ORG,
            "--name",
            ORG_NAME,
            "--province",
            "DN",
        ],
    );
    let out = pkid_ok(
        data,
        &[
            "credential",
            "add",
            "--org",
            ORG,
            "--kind",
            "est",
            "--name",
            "dev1",
        ],
    );
    let password = out.lines().last().expect("the password line").to_owned();
    assert!(password.len() >= 32, "{out}");
    let listed = pkid_ok(data, &["credential", "list", "--org", ORG]);
    assert!(listed.contains("est\tdev1"), "{listed}");
    assert!(
        !listed.contains(&password),
        "a listing never shows a secret"
    );
    configure(data);
    let daemon = Daemon::start(data);
    let est = Est {
        daemon: &daemon,
        data,
    };
    let user = format!("dev1:{password}");
    let basic = ["--user", user.as_str()];

    // cacerts: the issuing CA and the root, certs-only PKCS#7, base64.
    let r = est.call("/cacerts", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers
            .contains("application/pkcs7-mime; smime-type=certs-only"),
        "{}",
        r.headers
    );
    assert!(r.has_header("content-transfer-encoding"), "{}", r.headers);
    let chain = certs_of(data, &r);
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");
    let issuing = std::fs::read_to_string(data.join("certs/issuing.crt")).expect("issuing.crt");
    let root = std::fs::read_to_string(data.join("certs/root.crt")).expect("root.crt");
    let body = |pem: &str| {
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
    };
    assert!(body(&chain).contains(&body(&issuing)) && body(&chain).contains(&body(&root)));
    // The labelled path serves the same label.
    assert_eq!(est.call("/devices/cacerts", &[]).status, 200);
    assert_eq!(est.call("/nosuch/cacerts", &[]).status, 404);

    // csrattrs: CN, the allowed curve and its signature algorithm, decoded by openssl.
    let r = est.call("/devices/csrattrs", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers.contains("application/csrattrs"), "{}", r.headers);
    let b64 = unique_path(data, "attrs", "b64");
    std::fs::write(&b64, &r.body).expect("write");
    let der = unique_path(data, "attrs", "der");
    openssl_ok(&[
        "base64",
        "-d",
        "-in",
        path_str(&b64),
        "-out",
        path_str(&der),
    ]);
    let parsed = openssl_ok(&["asn1parse", "-inform", "DER", "-in", path_str(&der)]);
    for want in [
        "commonName",
        "id-ecPublicKey",
        "prime256v1",
        "ecdsa-with-SHA256",
    ] {
        assert!(parsed.contains(want), "{want} missing:\n{parsed}");
    }
    assert!(
        !parsed.contains("rsaEncryption"),
        "the device profile allows P-256 only:\n{parsed}"
    );
    let staff = est.call("/staff/csrattrs", &[]);
    assert_eq!(staff.status, 200);

    // simpleenroll: first without credentials (401 and the challenge), then with Basic.
    let (key, csr) = make_csr(data, "/CN=may-in-01/OU=Phòng Tin học", "ec:P-256");
    let csr_b64 = b64_csr(data, &csr);
    let r = est.post("/simpleenroll", &csr_b64, &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.headers.contains("Basic realm=\\\"pkid EST devices\\\""),
        "{}",
        r.headers
    );
    let r = est.post("/simpleenroll", &csr_b64, &basic);
    let (serial, cert) = issued(data, &r);
    let subject = x509_subject(&cert);
    assert!(subject.contains("CN=may-in-01"), "{subject}");
    assert!(subject.contains(&format!("O={ORG_NAME}")), "{subject}");
    assert!(
        subject.contains("OU=Phòng Tin học") && subject.contains("C=VN"),
        "{subject}"
    );
    assert_eq!(
        public_key_of_cert(&cert),
        openssl_ok(&["pkey", "-in", path_str(&key), "-pubout"])
    );
    assert_verifies(data, &cert, &[]);
    let shown = pkid_ok(data, &["cert", "show", "--serial", &serial]);
    assert!(
        shown.contains("valid"),
        "stored before it was returned: {shown}"
    );

    // A wrong password: 401 again.
    let r = est.post(
        "/simpleenroll",
        &csr_b64,
        &["--user", "dev1:wrong-password"],
    );
    assert_eq!(r.status, 401, "{}", r.text());

    // simpleenroll with the issued certificate as the TLS client certificate, no Basic; a
    // certificate that authenticates decides even beside a wrong password.
    let (_key2, csr2) = make_csr(data, "/CN=may-in-02", "ec:P-256");
    let csr2_b64 = b64_csr(data, &csr2);
    est.assert_known(&cert, &key);
    let client = ["--cert", path_str(&cert), "--key", path_str(&key)];
    let r = est.post("/devices/simpleenroll", &csr2_b64, &client);
    let (_, second) = issued(data, &r);
    assert!(x509_subject(&second).contains("CN=may-in-02"));
    let mut both = client.to_vec();
    both.extend_from_slice(&["--user", "dev1:wrong-password"]);
    assert_eq!(
        est.post("/devices/simpleenroll", &csr2_b64, &both).status,
        200
    );

    // simplereenroll, renew: the same key, the same subject; a new serial.
    let r = est.post("/simplereenroll", &csr_b64, &client);
    let (renewed_serial, renewed) = issued(data, &r);
    assert_ne!(renewed_serial, serial);
    assert_eq!(x509_subject(&renewed), subject);
    assert_eq!(public_key_of_cert(&renewed), public_key_of_cert(&cert));
    // Rekey: a new key, the same subject; the old certificate is superseded.
    let (new_key, rekey_csr) = make_csr(data, "/CN=may-in-01/OU=Phòng Tin học", "ec:P-256");
    let r = est.post("/simplereenroll", &b64_csr(data, &rekey_csr), &client);
    let (_, rekeyed) = issued(data, &r);
    assert_eq!(x509_subject(&rekeyed), subject);
    assert_eq!(
        public_key_of_cert(&rekeyed),
        openssl_ok(&["pkey", "-in", path_str(&new_key), "-pubout"])
    );
    let shown = pkid_ok(data, &["cert", "show", "--serial", &serial]);
    assert!(
        shown.contains("revoked") && shown.contains("superseded"),
        "{shown}"
    );
    // A changed subject is refused; so is renewal with Basic alone (no certificate to renew).
    let (_, other) = make_csr(data, "/CN=someone-else", "ec:P-256");
    let other_b64 = b64_csr(data, &other);
    est.assert_known(&rekeyed, &new_key);
    let client2 = ["--cert", path_str(&rekeyed), "--key", path_str(&new_key)];
    let r = est.post("/simplereenroll", &other_b64, &client2);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .contains("differs from the certificate being renewed"),
        "{}",
        r.text()
    );
    let r = est.post("/simplereenroll", &other_b64, &basic);
    assert_eq!(r.status, 403, "{}", r.text());
    // The superseded certificate no longer authenticates (refused in the handshake or here).
    let r = est.post("/simplereenroll", &csr_b64, &client);
    assert!(
        r.status == 0 || r.status == 403,
        "{} {}",
        r.status,
        r.text()
    );

    // Bad input: each a precise 4xx with a one-line reason.
    let junk = unique_path(data, "junk", "b64");
    std::fs::write(&junk, "this is not base64 ***\n").expect("write");
    let r = est.post("/simpleenroll", &junk, &basic);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("not base64"), "{}", r.text());
    let der_body = csr_der(data, &csr);
    let r = est.post("/simpleenroll", &der_body, &basic);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("EST bodies are base64"), "{}", r.text());
    let data_arg = format!("@{}", path_str(&csr_b64));
    let r = est.call(
        "/simpleenroll",
        &[
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            &data_arg,
            "--user",
            &user,
        ],
    );
    assert_eq!(r.status, 415, "{}", r.text());
    // A broken signature: one byte of the signature flipped.
    let mut bytes = std::fs::read(&der_body).expect("csr der");
    let last = bytes.len() - 3;
    bytes[last] ^= 0x55;
    let broken = unique_path(data, "broken", "der");
    std::fs::write(&broken, &bytes).expect("write");
    let broken_b64 = unique_path(data, "broken", "b64");
    openssl_ok(&[
        "base64",
        "-in",
        path_str(&broken),
        "-out",
        path_str(&broken_b64),
    ]);
    let r = est.post("/simpleenroll", &broken_b64, &basic);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("CSR refused"), "{}", r.text());
    // A key type the profile does not allow.
    let (_, p384) = make_csr(data, "/CN=may-in-03", "ec:P-384");
    let r = est.post("/simpleenroll", &b64_csr(data, &p384), &basic);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("P-384 key is not allowed"),
        "{}",
        r.text()
    );
    // A subject the organisation is not entitled to.
    let (_, foreign) = make_csr(data, "/CN=may-in-04/O=Bộ Y tế", "ec:P-256");
    let r = est.post("/simpleenroll", &b64_csr(data, &foreign), &basic);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains(ORG_NAME), "{}", r.text());
    // A body over the limit.
    let huge = unique_path(data, "huge", "b64");
    std::fs::write(&huge, "QUFB".repeat(40_000)).expect("write");
    let r = est.post("/simpleenroll", &huge, &basic);
    assert_eq!(r.status, 413, "{}", r.text());
    // Basic over the plain HTTP listener: refused.
    let r = fetch(&[
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        &data_arg,
        "--user",
        &user,
        &daemon.http_url("/.well-known/est/simpleenroll"),
    ]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("only over HTTPS"), "{}", r.text());
    for (op, outcome) in [
        ("simpleenroll", "bad_base64"),
        ("simpleenroll", "media_type"),
        ("simpleenroll", "bad_csr"),
        ("simpleenroll", "key_type"),
        ("simpleenroll", "subject"),
        ("simpleenroll", "unauthenticated"),
        ("simpleenroll", "bad_credentials"),
        ("simpleenroll", "issued"),
        ("simplereenroll", "subject_change"),
    ] {
        assert!(
            counted(&daemon, op, outcome) >= 1.0,
            "{op} {outcome} not counted"
        );
    }
    assert!(
        daemon.logs().contains("EST request refused"),
        "{}",
        daemon.logs()
    );
    assert!(
        !daemon.logs().contains(&password),
        "the password reached the log"
    );

    // Operator approval: 202 + Retry-After, then the certificate once approved.
    let (_, staff_csr) = make_csr(data, "/CN=Nguyễn Thị Hoa", "ec:P-256");
    let staff_b64 = b64_csr(data, &staff_csr);
    let r = est.post("/staff/simpleenroll", &staff_b64, &basic);
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(r.has_header("retry-after"), "{}", r.headers);
    let id: String = r
        .text()
        .split_whitespace()
        .nth(1)
        .expect("request N")
        .to_owned();
    let again = est.post("/staff/simpleenroll", &staff_b64, &basic);
    assert_eq!(
        again.status,
        202,
        "a retry before approval: {}",
        again.text()
    );
    assert!(
        again.text().contains(&format!("request {id} ")),
        "the same request: {}",
        again.text()
    );
    pkid_ok(data, &["request", "approve", &id]);
    let r = est.post("/staff/simpleenroll", &staff_b64, &basic);
    let (_, approved) = issued(data, &r);
    let s = x509_subject(&approved);
    assert!(
        s.contains("CN=Nguyễn Thị Hoa") && s.contains(ORG_NAME),
        "{s}"
    );
    // Rejected: 403 with the officer's reason.
    let (_, reject_csr) = make_csr(data, "/CN=Trần Văn Bình", "ec:P-256");
    let reject_b64 = b64_csr(data, &reject_csr);
    let r = est.post("/staff/simpleenroll", &reject_b64, &basic);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.text().split_whitespace().nth(1).expect("id").to_owned();
    pkid_ok(
        data,
        &["request", "reject", &id, "--reason", "Không thuộc biên chế"],
    );
    let r = est.post("/staff/simpleenroll", &reject_b64, &basic);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("Không thuộc biên chế"), "{}", r.text());

    // serverkeygen: the key pair made by pkid, the reply split, the key matched to the
    // certificate.
    let (_, skg_csr) = make_csr(data, "/CN=may-chu-01", "ec:P-256");
    let skg_b64 = b64_csr(data, &skg_csr);
    let r = est.post("/serverkeygen", &skg_b64, &basic);
    assert_eq!(r.status, 200, "{}", r.text());
    let boundary = r
        .headers
        .split("boundary=")
        .nth(1)
        .and_then(|b| b.split('"').next())
        .expect("multipart/mixed with a boundary")
        .to_owned();
    assert!(r.headers.contains("multipart/mixed"), "{}", r.headers);
    let text = r.text();
    let part = |media: &str| -> Vec<u8> {
        let p = text
            .split(&format!("--{boundary}"))
            .find(|p| p.contains(&format!("Content-Type: {media}")))
            .unwrap_or_else(|| panic!("no {media} part in {text}"));
        assert!(p.contains("Content-Transfer-Encoding: base64"), "{p}");
        p.split_once("\r\n\r\n")
            .expect("part headers")
            .1
            .as_bytes()
            .to_vec()
    };
    let key_b64 = unique_path(data, "skg-key", "b64");
    std::fs::write(&key_b64, part("application/pkcs8")).expect("write");
    let key_der = unique_path(data, "skg-key", "der");
    openssl_ok(&[
        "base64",
        "-d",
        "-in",
        path_str(&key_b64),
        "-out",
        path_str(&key_der),
    ]);
    let key_pub = openssl_ok(&[
        "pkey",
        "-inform",
        "DER",
        "-in",
        path_str(&key_der),
        "-pubout",
    ]);
    let cert_reply = Reply {
        status: 200,
        version: String::new(),
        headers: String::new(),
        body: part("application/pkcs7-mime; smime-type=certs-only"),
    };
    let pem = certs_of(data, &cert_reply);
    let start = pem.find("-----BEGIN").expect("PEM");
    let (_, skg_cert) = save_pem(data, pem[start..].trim_end());
    assert_eq!(
        public_key_of_cert(&skg_cert),
        key_pub,
        "the key is the certificate's"
    );
    assert!(x509_subject(&skg_cert).contains("CN=may-chu-01"));
    assert!(!daemon.logs().contains(
        &String::from_utf8_lossy(&part("application/pkcs8"))
            .lines()
            .next()
            .unwrap_or("-")
            .to_owned()
    ));
    // Never for a profile whose keys sign with non-repudiation.
    let r = est.post("/signers/serverkeygen", &skg_b64, &basic);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("non-repudiation"), "{}", r.text());

    // Removing the credential takes effect on the very next request (the cache notwithstanding).
    pkid_ok(
        data,
        &[
            "credential",
            "remove",
            "--org",
            ORG,
            "--kind",
            "est",
            "--name",
            "dev1",
        ],
    );
    let (_, late) = make_csr(data, "/CN=may-in-05", "ec:P-256");
    let r = est.post("/simpleenroll", &b64_csr(data, &late), &basic);
    assert_eq!(r.status, 401, "{}", r.text());
    let audit = pkid_ok(data, &["audit", "list"]);
    assert!(
        audit.contains("credential.add") && audit.contains("credential.remove"),
        "{audit}"
    );

    // And the daemon still serves.
    assert_eq!(get(&daemon.http_url("/healthz")).status, 200);
}

#[test]
fn sighup_reloads_the_labels_and_refuses_a_label_of_a_profile_not_running() {
    use std::time::Duration;
    let dir = init(&[]);
    let data = dir.path();
    pkid_ok(data, &["org", "add", "--id", ORG, "--name", ORG_NAME]);
    configure(data);
    let daemon = Daemon::start(data);
    let est = Est {
        daemon: &daemon,
        data,
    };
    assert_eq!(est.call("/kiosk/cacerts", &[]).status, 404);

    // A new label, on a profile the daemon runs: served after SIGHUP, no restart.
    let path = data.join("pkid.toml");
    let mut text = std::fs::read_to_string(&path).expect("pkid.toml");
    text.push_str(&format!(
        "\n[[est.labels]]\nname = \"kiosk\"\nprofile = \"device\"\norganisation = \"{ORG}\"\n"
    ));
    std::fs::write(&path, &text).expect("write");
    daemon.sighup();
    assert!(
        daemon.wait_for_log("EST labels reloaded", 1, Duration::from_secs(10)),
        "{}",
        daemon.logs()
    );
    assert_eq!(est.call("/kiosk/cacerts", &[]).status, 200);
    let r = est.call("/kiosk/csrattrs", &[]);
    assert_eq!(r.status, 200, "{}", r.text());

    // A label on a profile added in the same edit: profiles change only on restart, so the
    // whole [est] section is refused and the labels in use keep serving.
    text.push_str(&format!(
        r#"
[profiles.late]
key_usage = ["digitalSignature"]
extended_key_usage = ["clientAuth"]
extended_key_usage_critical = false
max_validity_days = 365
default_validity_days = 365
allowed_keys = ["p256"]
required_subject = ["CN"]
copy_subject_alt_name = false

[[est.labels]]
name = "late"
profile = "late"
organisation = "{ORG}"
"#
    ));
    std::fs::write(&path, &text).expect("write");
    daemon.sighup();
    assert!(
        daemon.wait_for_log(
            "the reloaded [est] section is refused",
            1,
            Duration::from_secs(10)
        ),
        "{}",
        daemon.logs()
    );
    assert_eq!(est.call("/late/cacerts", &[]).status, 404);
    assert_eq!(est.call("/kiosk/cacerts", &[]).status, 200);
    assert_eq!(est.call("/devices/cacerts", &[]).status, 200);
}

#[test]
fn credential_cli_makes_a_sealed_cmp_secret_and_refuses_bad_names() {
    let dir = init(&[]);
    let data = dir.path();
    pkid_ok(data, &["org", "add", "--id", ORG, "--name", ORG_NAME]);
    let out = pkid_ok(
        data,
        &[
            "credential",
            "add",
            "--org",
            ORG,
            "--kind",
            "cmp",
            "--name",
            "ra-client",
        ],
    );
    let secret = out.lines().last().expect("secret").to_owned();
    assert!(secret.len() >= 32, "{out}");
    let db = std::fs::read(data.join("pkid.db")).expect("db");
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the CMP secret is stored sealed, never in clear"
    );
    let add_fails = |org: &str, kind: &str, name: &str| {
        pkid_fails(
            data,
            &[
                "credential",
                "add",
                "--org",
                org,
                "--kind",
                kind,
                "--name",
                name,
            ],
        )
    };
    let (code, _, err) = add_fails(ORG, "cmp", "ra-client");
    assert_eq!(code, 5, "{err}");
    let (code, _, err) = add_fails(ORG, "est", "a:b");
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = add_fails("nosuch", "est", "x");
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = pkid_fails(
        data,
        &[
            "credential",
            "remove",
            "--org",
            ORG,
            "--kind",
            "est",
            "--name",
            "ra-client",
        ],
    );
    assert_eq!(code, 4, "{err}");
}

// ---- serverkeygen encrypted to the client's key, escrow and recovery, channel binding ------

mod escrow {
    use super::common::ra::*;
    use super::common::*;
    use super::{b64_csr, certs_of};
    use base64::Engine;
    use der::{Decode, Encode};
    use serde_json::json;
    use std::io::{Read, Write};
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, OnceLock};

    /// The organisation of the labels below (made once by the testbed's first user).
    const ORG: &str = "so-tt-hue";
    const ORG_NAME: &str = "Sở Thông tin và Truyền thông Thừa Thiên Huế";
    /// Its province, the RA officer's scope.
    const PROVINCE: &str = "46";

    fn bed() -> &'static Testbed {
        static BED: OnceLock<Testbed> = OnceLock::new();
        BED.get_or_init(|| {
            let bed = Testbed::start(|data| {
                append_config(
                    data,
                    &format!(
                        r#"
[[est.labels]]
name = "escrowed"
profile = "tls-client"
organisation = "{ORG}"
escrow = true

[[est.labels]]
name = "bound"
profile = "tls-client"
organisation = "{ORG}"
channel_binding = "required"

[[est.labels]]
name = "approved"
profile = "tls-client"
organisation = "{ORG}"
approval = "operator"

{rsa_profile}{p384_profile}
[[est.labels]]
name = "rsa-keys"
profile = "rsa-server"
organisation = "{ORG}"

[[est.labels]]
name = "p384-keys"
profile = "p384-server"
organisation = "{ORG}"
"#,
                        rsa_profile = key_profile(
                            "rsa-server",
                            r#"["digitalSignature", "keyEncipherment"]"#,
                            r#"["rsa3072", "rsa4096"]"#
                        ),
                        p384_profile =
                            key_profile("p384-server", r#"["digitalSignature"]"#, r#"["p384"]"#),
                    ),
                )
            });
            bed.org(ORG, ORG_NAME, None, Some(PROVINCE));
            bed
        })
    }

    /// A server-and-client profile `name` with `key_usage` and `allowed_keys` (TOML arrays), for
    /// the labels that check which key serverkeygen makes.
    fn key_profile(name: &str, key_usage: &str, allowed_keys: &str) -> String {
        format!(
            r#"
[profiles.{name}]
key_usage = {key_usage}
extended_key_usage = ["serverAuth", "clientAuth"]
extended_key_usage_critical = false
max_validity_days = 825
default_validity_days = 365
allowed_keys = {allowed_keys}
required_subject = ["CN"]
copy_subject_alt_name = true
"#
        )
    }

    /// A new EST credential of the organisation: `user:password` for curl's `--user`.
    fn credential(bed: &Testbed) -> String {
        let name = bed.unique("may-chu");
        let out = bed.cli(&[
            "credential",
            "add",
            "--org",
            ORG,
            "--kind",
            "est",
            "--name",
            &name,
        ]);
        format!("{name}:{}", out.lines().last().expect("password").trim())
    }

    /// POSTs a base64 CSR to `/.well-known/est/{path}` with curl and `auth` options.
    fn post(bed: &Testbed, path: &str, body: &Path, auth: &[&str]) -> Reply {
        let mut args = bed.tls_args();
        let data = format!("@{}", path_str(body));
        args.extend(
            [
                "-H",
                "Content-Type: application/pkcs10",
                "--data-binary",
                &data,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        args.extend(auth.iter().map(|s| s.to_string()));
        args.push(bed.https_url(&format!("/.well-known/est/{path}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fetch(&args)
    }

    /// A client certificate of the organisation, enrolled with Basic on `label`: (key, cert).
    fn client_certificate(bed: &Testbed, user: &str, cn: &str, key: &str) -> (PathBuf, PathBuf) {
        client_certificate_on(bed, "escrowed", user, cn, key)
    }

    /// The same, enrolled on `label` (a client certificate authenticates on its own profile's
    /// labels).
    fn client_certificate_on(
        bed: &Testbed,
        label: &str,
        user: &str,
        cn: &str,
        key: &str,
    ) -> (PathBuf, PathBuf) {
        let (k, csr) = make_csr(bed.work(), &format!("/CN={cn}"), key);
        let r = post(
            bed,
            &format!("{label}/simpleenroll"),
            &b64_csr(bed.work(), &csr),
            &["--user", user],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let pem = certs_of(bed.work(), &r);
        let start = pem.find("-----BEGIN").expect("PEM");
        let (_, cert) = save_pem(bed.work(), pem[start..].trim_end());
        (k, cert)
    }

    fn certificate(path: &Path) -> x509_cert::Certificate {
        let pem = std::fs::read_to_string(path).expect("certificate");
        let (_, der) = der::pem::decode_vec(pem.as_bytes()).expect("PEM");
        x509_cert::Certificate::from_der(&der).expect("certificate")
    }

    /// The certificate's subjectKeyIdentifier.
    fn key_id(path: &Path) -> Vec<u8> {
        let (_, ski) = certificate(path)
            .tbs_certificate
            .get::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
            .expect("extensions")
            .expect("pkid puts a subjectKeyIdentifier in what it issues");
        ski.0.as_bytes().to_vec()
    }

    /// A P-256 CSR for `/CN=cn` carrying `attributes`, signed with a throwaway key, as the
    /// base64 EST body. (openssl req cannot write an OCTET STRING attribute.)
    fn csr_with(dir: &Path, cn: &str, attributes: Vec<x509_cert::attr::Attribute>) -> PathBuf {
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        use std::str::FromStr;
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("key");
        let info = x509_cert::request::CertReqInfo {
            version: x509_cert::request::Version::V1,
            subject: x509_cert::name::Name::from_str(&format!("CN={cn}")).expect("name"),
            public_key: spki::SubjectPublicKeyInfoOwned {
                algorithm: spki::AlgorithmIdentifierOwned {
                    oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
                    parameters: Some(
                        der::Any::encode_from(&const_oid::db::rfc5912::SECP_256_R_1)
                            .expect("curve"),
                    ),
                },
                subject_public_key: der::asn1::BitString::from_bytes(pair.public_key().as_ref())
                    .expect("bits"),
            },
            attributes: der::asn1::SetOfVec::try_from(attributes).expect("attributes"),
        };
        let tbs = info.to_der().expect("info");
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signature = pair.sign(&rng, &tbs).expect("signature");
        let der = x509_cert::request::CertReq {
            info,
            algorithm: spki::AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            signature: der::asn1::BitString::from_bytes(signature.as_ref()).expect("bits"),
        }
        .to_der()
        .expect("CSR");
        let path = unique_path(dir, "csr", "b64");
        std::fs::write(&path, base64::engine::general_purpose::STANDARD.encode(der))
            .expect("write");
        path
    }

    /// The AsymmetricDecryptKeyIdentifier attribute (RFC 7030 §4.4.1.2) naming `id`.
    fn decrypt_key_id(id: &[u8]) -> x509_cert::attr::Attribute {
        let value =
            der::Any::encode_from(&der::asn1::OctetString::new(id).expect("id")).expect("value");
        x509_cert::attr::Attribute {
            oid: const_oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.54"),
            values: der::asn1::SetOfVec::try_from(vec![value]).expect("values"),
        }
    }

    fn parts(reply: &Reply) -> Vec<(String, Vec<u8>)> {
        multipart_parts(reply)
    }

    /// Decrypts an EnvelopedData file with `openssl cms -decrypt` and returns the public key
    /// (PEM) of the one private key in its key package.
    /// `signed_by`: the key package is first signed (serverkeygen, RFC 7030 §4.4.2) by the
    /// certificate at this path, verified to `root` with `openssl cms -verify`.
    fn open_key_package(
        dir: &Path,
        p7: &Path,
        key: &Path,
        cert: &Path,
        signed_by: Option<(&Path, &Path)>,
    ) -> String {
        let decrypted = unique_path(dir, "decrypted", "der");
        openssl_ok(&[
            "cms",
            "-decrypt",
            "-inform",
            "DER",
            "-in",
            path_str(p7),
            "-inkey",
            path_str(key),
            "-recip",
            path_str(cert),
            "-binary",
            "-out",
            path_str(&decrypted),
        ]);
        let akp = match signed_by {
            None => decrypted,
            Some((signer, root)) => verify_signed_key_package(dir, &decrypted, signer, root),
        };
        // AsymmetricKeyPackage ::= SEQUENCE OF OneAsymmetricKey: the key starts after the
        // outer header, whose length asn1parse reports as hl=.
        let parsed = openssl_ok(&["asn1parse", "-inform", "DER", "-in", path_str(&akp)]);
        let hl: String = parsed
            .lines()
            .next()
            .and_then(|l| l.split("hl=").nth(1))
            .map(|s| s.chars().take_while(char::is_ascii_digit).collect())
            .expect("hl=");
        let one = unique_path(dir, "key", "der");
        openssl_ok(&[
            "asn1parse",
            "-inform",
            "DER",
            "-in",
            path_str(&akp),
            "-offset",
            &hl,
            "-noout",
            "-out",
            path_str(&one),
        ]);
        assert_eq!(
            parsed.lines().filter(|l| l.contains("d=1")).count(),
            1,
            "one key in the package:\n{parsed}"
        );
        openssl_ok(&["pkey", "-inform", "DER", "-in", path_str(&one), "-pubout"])
    }

    /// The decrypted content of a serverkeygen reply is a SignedData (the EnvelopedData's
    /// content type is id-signedData): wrapped in its ContentInfo, `openssl cms -verify`
    /// checks the signature and the chain to `root`, and the signer must be `signer` (the
    /// daemon's TLS certificate). `-purpose any`: that certificate's extended key usage is
    /// serverAuth, not S/MIME. Returns the AsymmetricKeyPackage it carried.
    fn verify_signed_key_package(dir: &Path, signed: &Path, signer: &Path, root: &Path) -> PathBuf {
        let sd = std::fs::read(signed).expect("decrypted");
        let info = cms::content_info::ContentInfo {
            content_type: der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2"),
            content: der::Any::from_der(&sd).expect("a SignedData, not the bare key package"),
        };
        let p7 = unique_path(dir, "signed", "p7");
        std::fs::write(&p7, info.to_der().expect("DER")).expect("write");
        let akp = unique_path(dir, "akp", "der");
        let who = unique_path(dir, "signer", "pem");
        openssl_ok(&[
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            path_str(&p7),
            "-CAfile",
            path_str(root),
            "-purpose",
            "any",
            "-binary",
            "-signer",
            path_str(&who),
            "-out",
            path_str(&akp),
        ]);
        let fingerprint = |p: &Path| {
            openssl_ok(&[
                "x509",
                "-in",
                path_str(p),
                "-noout",
                "-fingerprint",
                "-sha256",
            ])
        };
        assert_eq!(
            fingerprint(&who),
            fingerprint(signer),
            "signed by the EST server"
        );
        // Another root does not vouch for it.
        let (_, other) = self_signed_p256(dir, "other-root", "/CN=other");
        let refused = std::process::Command::new("openssl")
            .args([
                "cms",
                "-verify",
                "-inform",
                "DER",
                "-in",
                path_str(&p7),
                "-CAfile",
                path_str(&other),
                "-purpose",
                "any",
                "-binary",
                "-out",
                "/dev/null",
            ])
            .output()
            .expect("openssl");
        assert!(!refused.status.success(), "verified against another root");
        akp
    }

    /// serverkeygen naming the TLS client certificate's key: the private key comes back as
    /// EnvelopedData (server-generated-key) that openssl decrypts with the client's key, and
    /// it is the certificate's. Returns the new certificate.
    fn keygen_to(bed: &Testbed, label: &str, key: &Path, cert: &Path, cn: &str) -> PathBuf {
        let body = csr_with(bed.work(), cn, vec![decrypt_key_id(&key_id(cert))]);
        let r = post(
            bed,
            &format!("{label}/serverkeygen"),
            &body,
            &["--cert", path_str(cert), "--key", path_str(key)],
        );
        assert!(r.headers.contains("no-store"), "{} {}", r.headers, r.text());
        let parts = parts(&r);
        assert_eq!(parts.len(), 2, "{}", r.text());
        assert_eq!(
            parts[0].0, "application/pkcs7-mime; smime-type=server-generated-key",
            "the key part first"
        );
        let p7 = unique_path(bed.work(), "skg", "p7");
        std::fs::write(&p7, &parts[0].1).expect("write");
        let p7c = unique_path(bed.work(), "skg-cert", "p7");
        std::fs::write(&p7c, &parts[1].1).expect("write");
        let pem = openssl_ok(&[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            path_str(&p7c),
            "-print_certs",
        ]);
        let start = pem.find("-----BEGIN").expect("PEM");
        let (_, new_cert) = save_pem(bed.work(), pem[start..].trim_end());
        assert_eq!(
            open_key_package(
                bed.work(),
                &p7,
                key,
                cert,
                Some((
                    &bed.data().join("certs/tls.crt"),
                    &bed.data().join("certs/root.crt")
                ))
            ),
            public_key_of_cert(&new_cert),
            "the key decrypted is the new certificate's"
        );
        new_cert
    }

    /// What `openssl pkey -text_pub` says of a public key (PEM).
    fn key_text(public_pem: &str) -> String {
        let dir = bed().work();
        let path = unique_path(dir, "pub", "pem");
        std::fs::write(&path, public_pem).expect("write");
        openssl_ok(&[
            "pkey",
            "-pubin",
            "-in",
            path_str(&path),
            "-text_pub",
            "-noout",
        ])
    }

    #[test]
    fn serverkeygen_makes_the_key_type_the_label_profile_allows() {
        let bed = bed();
        let user = credential(bed);
        // In clear (Basic, no key named): the PKCS#8 part's key is the certificate's, of the
        // profile's type: the smallest RSA size an RSA-only profile allows, P-384 for a P-384
        // one. The client's CSR key (P-256) is only its proof of who asks.
        for (label, expect) in [
            ("rsa-keys", "Public-Key: (3072 bit)"),
            ("p384-keys", "NIST CURVE: P-384"),
        ] {
            let (_, csr) = make_csr(bed.work(), "/CN=Máy chủ khóa", "ec:P-256");
            let r = post(
                bed,
                &format!("{label}/serverkeygen"),
                &b64_csr(bed.work(), &csr),
                &["--user", &user],
            );
            let parts = parts(&r);
            let part = |media: &str| {
                parts
                    .iter()
                    .find(|(ct, _)| ct == media)
                    .unwrap_or_else(|| panic!("no {media} part: {}", r.text()))
                    .1
                    .clone()
            };
            let key = unique_path(bed.work(), "skg-key", "der");
            std::fs::write(&key, part("application/pkcs8")).expect("write");
            let key_pub = openssl_ok(&["pkey", "-inform", "DER", "-in", path_str(&key), "-pubout"]);
            let (_, cert) = only_certificate_of(
                bed.work(),
                &part("application/pkcs7-mime; smime-type=certs-only"),
            );
            assert_eq!(
                public_key_of_cert(&cert),
                key_pub,
                "{label}: the key is the certificate's"
            );
            let text = key_text(&key_pub);
            assert!(text.contains(expect), "{label}: {text}");
            assert!(x509_subject(&cert).contains("CN=Máy chủ khóa"));
        }
        // A P-384 client certificate of a signing-only profile (keyUsage digitalSignature)
        // cannot receive a key by key agreement: 400 naming keyAgreement, nothing issued.
        let (sig_key, sig_cert) =
            client_certificate_on(bed, "p384-keys", &user, "may-chu-chi-ky", "ec:P-384");
        let issued = || bed.cli(&["audit", "list"]).matches("cert.issue").count();
        let before = issued();
        let body = csr_with(bed.work(), "x", vec![decrypt_key_id(&key_id(&sig_cert))]);
        let r = post(
            bed,
            "p384-keys/serverkeygen",
            &body,
            &["--cert", path_str(&sig_cert), "--key", path_str(&sig_key)],
        );
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("keyAgreement"), "{}", r.text());
        assert_eq!(
            issued(),
            before,
            "no certificate for a key nobody can receive"
        );
        // Encrypted to an RSA client certificate: an RSA key inside an RSA envelope.
        let (rsa_key, rsa_cert) =
            client_certificate_on(bed, "rsa-keys", &user, "may-chu-rsa-khoa", "rsa:3072");
        let made = keygen_to(bed, "rsa-keys", &rsa_key, &rsa_cert, "Máy chủ khóa RSA");
        let text = key_text(&public_key_of_cert(&made));
        assert!(text.contains("Public-Key: (3072 bit)"), "{text}");
    }

    #[test]
    fn serverkeygen_encrypts_to_the_client_key_escrows_and_an_approved_request_recovers_it() {
        let bed = bed();
        let user = credential(bed);
        // Recipients of both kinds: an RSA and a P-256 client certificate.
        let (rsa_key, rsa_cert) = client_certificate(bed, &user, "may-chu-rsa", "rsa:2048");
        let (ec_key, ec_cert) = client_certificate(bed, &user, "may-chu-ec", "ec:P-256");
        let from_rsa = keygen_to(bed, "escrowed", &rsa_key, &rsa_cert, "Máy chủ văn bản 1");
        let escrowed = keygen_to(bed, "escrowed", &ec_key, &ec_cert, "Máy chủ văn bản 2");
        assert!(x509_subject(&escrowed).contains("CN=Máy chủ văn bản 2"));
        assert!(x509_subject(&from_rsa).contains(ORG_NAME));
        let serial = canonical_serial(&x509_serial(&escrowed));

        // A key named that is not the client certificate's: 400 with the reason.
        let body = csr_with(bed.work(), "x", vec![decrypt_key_id(&[7u8; 20])]);
        let r = post(
            bed,
            "escrowed/serverkeygen",
            &body,
            &["--cert", path_str(&ec_cert), "--key", path_str(&ec_key)],
        );
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(
            r.text()
                .contains("is not the key of the TLS client certificate"),
            "{}",
            r.text()
        );

        // Escrowed: audited, and never in the database in clear.
        let audit = bed.cli(&["audit", "list"]);
        assert!(
            audit.contains("key.escrow") && audit.contains(&serial),
            "{audit}"
        );

        // An org officer files a recover request naming the certificate (key origin central);
        // an RA officer of the province accepts and approves it; it waits for the release.
        let officer = bed.operator(&bed.unique("canbo"), "org-officer", Some(ORG), None);
        let ra_id = bed.unique("ra");
        let ra = bed.operator(
            &ra_id,
            "ra-officer",
            None,
            Some(&format!("province:{PROVINCE}")),
        );
        let file = |certificate: &str, origin: &str| {
            bed.post(
                "/api/v1/requests",
                &officer,
                &json!({"kind": "recover", "certificate": certificate, "key_origin": origin}),
            )
        };
        let r = file(&serial, "central");
        assert_eq!(r.status, 201, "{r}");
        let id = r.id();
        bed.act_ok(&ra, id, "original-received", "accepted");

        // Not approved yet: refused, nothing written.
        let recipient = unique_path(bed.work(), "recipient", "pem");
        std::fs::copy(&rsa_cert, &recipient).expect("copy");
        let out = unique_path(bed.work(), "recovered", "p7");
        let recover = |id: i64, out: &Path| {
            pkid(
                bed.data(),
                &[
                    "token",
                    "--operator",
                    &ra_id,
                    "recover-key",
                    "--request",
                    &id.to_string(),
                    "--recipient-cert",
                    path_str(&recipient),
                    "--out",
                    path_str(out),
                ],
            )
        };
        let early = recover(id, &out);
        assert_eq!(early.status.code(), Some(5), "{}", lossy(&early.stderr));
        assert!(
            lossy(&early.stderr).contains("accepted"),
            "{}",
            lossy(&early.stderr)
        );
        assert!(!out.exists(), "nothing written for a refused release");

        bed.act_ok(&ra, id, "approve", "approved");
        let done = recover(id, &out);
        assert_success(&done, "pkid token recover-key");
        // The released key decrypts with the named recipient's key and is the escrowed one.
        assert_eq!(
            open_key_package(bed.work(), &out, &rsa_key, &rsa_cert, None),
            public_key_of_cert(&escrowed)
        );
        let shown = bed.get(&format!("/api/v1/requests/{id}"), &ra);
        assert_eq!(shown.json["state"], "fulfilled", "{shown}");
        let audit = bed.cli(&["audit", "list"]);
        assert!(audit.contains("key.recover"), "{audit}");

        // Once fulfilled, not again.
        let again = recover(id, &unique_path(bed.work(), "again", "p7"));
        assert_eq!(again.status.code(), Some(5), "{}", lossy(&again.stderr));

        // A certificate of the organisation whose key pkid did not make and escrow (issued
        // through an RA issue request): refused when filed.
        let issued = bed.file_issue(&officer, None, "Nguyễn Văn An");
        bed.act_ok(&ra, issued.id(), "original-received", "accepted");
        let issued = bed.act_ok(&ra, issued.id(), "approve", "fulfilled");
        let plain_serial = issued.json["issued_certificate"]
            .as_str()
            .expect("issued_certificate")
            .to_owned();
        let r = file(&plain_serial, "central");
        assert_ne!(r.status, 201, "{r}");
        assert!(r.to_string().contains("has no escrowed key"), "{r}");
        // A recover request for a key device (token) does not release an escrowed key.
        let r = file(&serial, "token");
        assert_eq!(r.status, 201, "{r}");
        bed.act_ok(&ra, r.id(), "original-received", "accepted");
        bed.act_ok(&ra, r.id(), "approve", "approved");
        let wrong = recover(r.id(), &unique_path(bed.work(), "wrong", "p7"));
        assert_eq!(wrong.status.code(), Some(5), "{}", lossy(&wrong.stderr));
        assert!(
            lossy(&wrong.stderr).contains("key origin central"),
            "{}",
            lossy(&wrong.stderr)
        );

        // The key never reached a log or the database in clear.
        let db = [
            std::fs::read(bed.data().join("pkid.db")).unwrap_or_default(),
            std::fs::read(bed.data().join("pkid.db-wal")).unwrap_or_default(),
        ]
        .concat();
        let akp = unique_path(bed.work(), "akp", "der");
        openssl_ok(&[
            "cms",
            "-decrypt",
            "-inform",
            "DER",
            "-in",
            path_str(&out),
            "-inkey",
            path_str(&rsa_key),
            "-recip",
            path_str(&rsa_cert),
            "-binary",
            "-out",
            path_str(&akp),
        ]);
        let plain = std::fs::read(&akp).expect("akp");
        // The private scalar: ECPrivateKey's privateKey OCTET STRING (version 1, 32 bytes).
        let at = plain
            .windows(5)
            .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
            .expect("an ECPrivateKey")
            + 5;
        let secret = &plain[at..at + 32];
        assert!(
            !db.windows(secret.len()).any(|w| w == secret),
            "the key is sealed at rest"
        );
        let logs = bed.logs();
        assert!(
            !logs.contains(&hex::encode(secret)),
            "the key is never logged"
        );
        assert!(!logs.contains(&base64::engine::general_purpose::STANDARD.encode(secret)));
    }

    /// A TLS 1.3 (or 1.2) connection to the daemon, trusting only the data directory's root.
    fn connect(
        bed: &Testbed,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(bed.data().join("certs/root.crt")).expect("root.crt");
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(c.expect("PEM")).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let tcp = std::net::TcpStream::connect(bed.https).expect("connect");
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("timeout");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
        }
        tls
    }

    /// The connection's tls-exporter value (RFC 9266), base64.
    fn exporter(
        tls: &rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    ) -> String {
        let v = tls
            .conn
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .expect("exporter");
        base64::engine::general_purpose::STANDARD.encode(v)
    }

    /// POSTs a CSR body over `tls` (HTTP/1.1, Basic), then reads the answer: (status, text).
    fn post_over(
        mut tls: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
        path: &str,
        user: &str,
        body: &[u8],
    ) -> (u16, String) {
        let auth = base64::engine::general_purpose::STANDARD.encode(user);
        let head = format!(
            "POST /.well-known/est/{path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nContent-Type: application/pkcs10\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).expect("write");
        tls.write_all(body).expect("write");
        tls.flush().expect("flush");
        let mut reply = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                // The server may close without close_notify after Connection: close.
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&reply).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    /// A CSR made by `openssl req` whose challengePassword is `password`, as the EST body.
    fn csr_with_challenge(dir: &Path, cn: &str, password: &str) -> Vec<u8> {
        let conf = unique_path(dir, "req", "cnf");
        std::fs::write(
            &conf,
            format!(
                "[req]\nprompt = no\ndistinguished_name = dn\nattributes = attrs\n[dn]\nCN = {cn}\n[attrs]\nchallengePassword = {password}\n"
            ),
        )
        .expect("write");
        let key = unique_path(dir, "key", "pem");
        let csr = unique_path(dir, "req", "der");
        openssl_ok(&[
            "req",
            "-new",
            "-nodes",
            "-utf8",
            "-config",
            path_str(&conf),
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            path_str(&key),
            "-outform",
            "DER",
            "-out",
            path_str(&csr),
        ]);
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(&csr).expect("csr"))
            .into_bytes()
    }

    #[test]
    fn a_credential_made_through_the_api_enrolls_with_curl_until_it_is_deleted() {
        let bed = bed();
        let officer = bed.unique("can-bo-api");
        let token = bed.operator(&officer, "org-officer", Some(ORG), None);
        let name = bed.unique("thiet-bi");
        let path = format!("/api/v1/organisations/{ORG}/credentials");
        let made = bed.post(&path, &token, &json!({"kind": "est", "name": name}));
        assert_eq!(made.status, 201, "{made}");
        assert_eq!(made.header("cache-control"), Some("no-store"));
        let user = format!("{name}:{}", made.str("secret"));
        let listed = bed.get(&path, &token);
        assert!(
            listed
                .json
                .as_array()
                .expect("list")
                .iter()
                .any(|c| c["name"] == name.as_str()),
            "{listed}"
        );
        // simpleenroll with curl --user: issued (and the verified password now cached).
        let (_, csr) = make_csr(bed.work(), "/CN=may-api-01", "ec:P-256");
        let r = post(
            bed,
            "escrowed/simpleenroll",
            &b64_csr(bed.work(), &csr),
            &["--user", &user],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            certs_of(bed.work(), &r)
                .matches("BEGIN CERTIFICATE")
                .count(),
            1
        );
        // Deleted through the API: the very next enrollment is refused, cache or not.
        let gone = bed.call("DELETE", &format!("{path}/est/{name}"), Some(&token), None);
        assert_eq!(gone.status, 204, "{gone}");
        let (_, csr) = make_csr(bed.work(), "/CN=may-api-02", "ec:P-256");
        let r = post(
            bed,
            "escrowed/simpleenroll",
            &b64_csr(bed.work(), &csr),
            &["--user", &user],
        );
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(
            r.headers.to_lowercase().contains("www-authenticate"),
            "{}",
            r.headers
        );
        let rows = bed.audit_rows();
        for action in ["credential.add", "credential.remove"] {
            assert!(
                rows.iter().any(|r| r.actor == officer
                    && r.action == action
                    && r.target == format!("{ORG}/est/{name}")
                    && r.outcome == "success"),
                "no {action} audit row by {officer}"
            );
        }
    }

    #[test]
    fn concurrent_first_requests_with_one_csr_file_one_request_on_an_operator_label() {
        let bed = bed();
        let user = credential(bed);
        // The password verified once (then cached): the concurrent calls below reach the
        // filing together instead of queueing on Argon2.
        let (_, warm) = make_csr(
            bed.work(),
            &format!("/CN={}", bed.unique("khoi-dong")),
            "ec:P-256",
        );
        let r = post(
            bed,
            "approved/simpleenroll",
            &b64_csr(bed.work(), &warm),
            &["--user", &user],
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let cn = bed.unique("song-song");
        let (_, csr) = make_csr(bed.work(), &format!("/CN={cn}"), "ec:P-256");
        let body = b64_csr(bed.work(), &csr);
        let replies: Vec<Reply> = std::thread::scope(|s| {
            let calls: Vec<_> = (0..12)
                .map(|_| s.spawn(|| post(bed, "approved/simpleenroll", &body, &["--user", &user])))
                .collect();
            calls
                .into_iter()
                .map(|c| c.join().expect("thread"))
                .collect()
        });
        let ids: std::collections::BTreeSet<String> = replies
            .iter()
            .map(|r| {
                assert_eq!(r.status, 202, "{}", r.text());
                r.text()
                    .split_whitespace()
                    .nth(1)
                    .expect("request N waits …")
                    .to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 1, "one request for one CSR: {ids:?}");
        let admin = bed.operator(&bed.unique("quan-tri"), "ca-admin", None, None);
        let listed = bed.get(
            &format!("/api/v1/requests?organisation={ORG}&limit=500"),
            &admin,
        );
        assert_eq!(listed.status, 200, "{listed}");
        let filed = listed.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|i| i["subscriber"]["name"] == cn.as_str())
            .count();
        assert_eq!(filed, 1, "{listed}");
    }

    #[test]
    fn a_label_requiring_channel_binding_takes_only_csrs_made_for_their_connection() {
        let bed = bed();
        let user = credential(bed);
        // The CSR carries this connection's exporter value: issued, on the same connection.
        let tls = connect(bed, &rustls::version::TLS13);
        let body = csr_with_challenge(bed.work(), "kenh-rang-buoc", &exporter(&tls));
        let (status, text) = post_over(tls, "bound/simpleenroll", &user, &body);
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("smime-type=certs-only"), "{text}");
        // The same CSR on another connection: 400, the binding does not match.
        let (status, text) = post_over(
            connect(bed, &rustls::version::TLS13),
            "bound/simpleenroll",
            &user,
            &body,
        );
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("another connection"), "{text}");
        // Over TLS 1.2 there is no tls-exporter: 400 naming TLS 1.3.
        let tls12 = connect(bed, &rustls::version::TLS12);
        let body12 = csr_with_challenge(bed.work(), "tls12", "AAAA");
        let (status, text) = post_over(tls12, "bound/simpleenroll", &user, &body12);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("TLS 1.3"), "{text}");
        // No challengePassword at all: the label requires it.
        let (_, plain) = make_csr(bed.work(), "/CN=khong-rang-buoc", "ec:P-256");
        let r = post(
            bed,
            "bound/simpleenroll",
            &b64_csr(bed.work(), &plain),
            &["--user", &user],
        );
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(
            r.text().contains("requires channel binding"),
            "{}",
            r.text()
        );
        // On an optional label a wrong binding is refused too; none is fine.
        let r = post(
            bed,
            "escrowed/simpleenroll",
            &b64_csr(bed.work(), &plain),
            &["--user", &user],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let wrong = unique_path(bed.work(), "wrong", "b64");
        std::fs::write(
            &wrong,
            csr_with_challenge(bed.work(), "sai", "c2FpIHJvaQ=="),
        )
        .expect("write");
        let r = post(bed, "escrowed/simpleenroll", &wrong, &["--user", &user]);
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("tls-exporter"), "{}", r.text());
    }
}

// ---- the credentials JSON API, in process -------------------------------------------------

mod credentials_api {
    use super::common::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use hyper::{Request, StatusCode};
    use pkid::http::Listener;
    use serde_json::{json, Value};
    use std::path::Path;
    use tower::ServiceExt;

    const A: &str = "truong-a";
    const B: &str = "truong-b";

    /// A call through the HTTPS router with a bearer token: (status, headers, JSON body).
    async fn call(
        router: &Listener,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, hyper::HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&b).expect("JSON"))
            }
            None => Body::empty(),
        };
        let resp = router
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, json)
    }

    fn operator(data: &Path, id: &str, role: &str, extra: &[&str]) -> String {
        let mut args = vec!["operator", "add", "--id", id, "--name", id, "--role", role];
        args.extend_from_slice(extra);
        pkid_ok(data, &args);
        let out = pkid_ok(data, &["operator", "token", "--id", id]);
        out.lines().last().expect("token").trim().to_owned()
    }

    /// The database file's bytes, read by another process: closing a descriptor of the file
    /// in this one would drop the POSIX locks the in-process store's SQLite holds on it.
    fn database_bytes(data: &Path) -> Vec<u8> {
        let out = std::process::Command::new("cat")
            .arg(data.join("pkid.db"))
            .output()
            .expect("cat");
        assert!(out.status.success());
        out.stdout
    }

    fn refused(data: &Path, actor: &str, action: &str) -> bool {
        pkid_ok(data, &["audit", "list", "--limit", "1000"])
            .lines()
            .any(|l| l.contains(actor) && l.contains(action) && l.contains("refused"))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn credentials_are_listed_made_and_removed_by_role_and_organisation() {
        let dir = init(&[]);
        let data = dir.path();
        for (id, name) in [(A, "Trường THPT Lê Quý Đôn"), (B, "Trường THCS Nguyễn Huệ")]
        {
            pkid_ok(
                data,
                &["org", "add", "--id", id, "--name", name, "--province", "48"],
            );
        }
        let admin = operator(data, "quan-tri", "ca-admin", &[]);
        let officer_a = operator(data, "can-bo-a", "org-officer", &["--org", A]);
        let officer_b = operator(data, "can-bo-b", "org-officer", &["--org", B]);
        let ra = operator(data, "ra-dn", "ra-officer", &["--scope", "province:48"]);
        let owned = data.to_path_buf();
        let app = tokio::task::spawn_blocking(move || {
            pkid::app::App::build(
                &owned,
                std::sync::Arc::new(pkid::clock::SystemClock),
                |_| {},
            )
        })
        .await
        .expect("build task")
        .expect("app");
        let https = app.routers().https;
        let path = format!("/api/v1/organisations/{A}/credentials");

        // No token: 401 problem.
        let (s, _, j) = call(&https, "GET", &path, None, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{j}");
        assert_eq!(j["type"], "urn:pkid:problem:unauthenticated");

        // The organisation's officer makes an EST user: the secret once, not cached.
        let body = json!({"kind": "est", "name": "may-in-01"});
        let (s, h, made) = call(&https, "POST", &path, Some(&officer_a), Some(body.clone())).await;
        assert_eq!(s, StatusCode::CREATED, "{made}");
        assert_eq!(h["cache-control"], "no-store");
        let secret = made["secret"].as_str().expect("secret").to_owned();
        assert_eq!(secret.len(), 32, "{made}");
        assert_eq!(
            (
                &made["organisation"],
                &made["kind"],
                &made["name"],
                &made["created_by"]
            ),
            (
                &json!(A),
                &json!("est"),
                &json!("may-in-01"),
                &json!("can-bo-a")
            )
        );
        // Listed without the secret, by the officer and the CLI alike.
        let (s, _, list) = call(&https, "GET", &path, Some(&officer_a), None).await;
        assert_eq!(s, StatusCode::OK, "{list}");
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
        assert_eq!(list[0]["name"], "may-in-01");
        assert!(list[0].get("secret").is_none() && !list.to_string().contains(&secret));
        let cli = pkid_ok(data, &["credential", "list", "--org", A]);
        assert!(
            cli.contains("est\tmay-in-01") && !cli.contains(&secret),
            "{cli}"
        );
        let db = database_bytes(data);
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "only the Argon2id hash is stored"
        );

        // Twice the same name: 409. A bad name, kind or field: the field named.
        let (s, _, j) = call(&https, "POST", &path, Some(&officer_a), Some(body)).await;
        assert_eq!(s, StatusCode::CONFLICT, "{j}");
        let (s, _, j) = call(
            &https,
            "POST",
            &path,
            Some(&officer_a),
            Some(json!({"kind": "scep", "name": "a:b"})),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{j}");
        let fields: Vec<&str> = j["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert_eq!(fields, ["kind", "name"], "{j}");
        let (s, _, j) = call(
            &https,
            "POST",
            &path,
            Some(&officer_a),
            Some(json!({"kind": "est", "name": "x", "password": "mine"})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{j}");
        assert_eq!(j["type"], "urn:pkid:problem:malformed");

        // List, add and remove by `token`: the three statuses.
        let list_add_remove = |token: String, name: &'static str| {
            let (https, path) = (&https, &path);
            async move {
                let tried = [
                    ("GET", path.clone(), None),
                    (
                        "POST",
                        path.clone(),
                        Some(json!({"kind": "est", "name": name})),
                    ),
                    ("DELETE", format!("{path}/est/may-in-01"), None),
                ];
                let mut statuses = Vec::new();
                for (method, at, body) in tried {
                    let (s, _, j) = call(https, method, &at, Some(&token), body).await;
                    statuses.push((s, j));
                }
                statuses
            }
        };
        // Another organisation's officer: A does not exist for it (404), and it is audited.
        for (s, j) in list_add_remove(officer_b.clone(), "lay-tron").await {
            assert_eq!(s, StatusCode::NOT_FOUND, "{j}");
        }
        assert!(refused(data, "can-bo-b", "credential.list"));
        assert!(refused(data, "can-bo-b", "credential.add"));
        assert!(refused(data, "can-bo-b", "credential.remove"));
        // An RA officer of the province reads, but makes and removes nothing.
        let by_ra = list_add_remove(ra.clone(), "ra-made").await;
        let statuses: Vec<StatusCode> = by_ra.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::FORBIDDEN, StatusCode::FORBIDDEN],
            "{by_ra:?}"
        );
        assert!(refused(data, "ra-dn", "credential.add"));

        // A CA admin makes a CMP secret for B: stored sealed.
        let (s, _, cmp) = call(
            &https,
            "POST",
            &format!("/api/v1/organisations/{B}/credentials"),
            Some(&admin),
            Some(json!({"kind": "cmp", "name": "ra-client"})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{cmp}");
        let cmp_secret = cmp["secret"].as_str().expect("secret");
        let db = database_bytes(data);
        assert!(!db
            .windows(cmp_secret.len())
            .any(|w| w == cmp_secret.as_bytes()));
        let (s, _, j) = call(
            &https,
            "GET",
            "/api/v1/organisations/nosuch/credentials",
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{j}");

        // Removed by the officer: 204, then 404; the list is empty; both changes audited.
        let one = format!("{path}/est/may-in-01");
        let (s, _, _) = call(&https, "DELETE", &one, Some(&officer_a), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, _, j) = call(&https, "DELETE", &one, Some(&officer_a), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{j}");
        let (_, _, list) = call(&https, "GET", &path, Some(&officer_a), None).await;
        assert_eq!(list, json!([]));
        let audit = pkid_ok(data, &["audit", "list"]);
        assert!(
            audit.lines().any(|l| l.contains("can-bo-a")
                && l.contains("credential.add")
                && l.contains(&format!("{A}/est/may-in-01"))),
            "{audit}"
        );
        assert!(
            audit
                .lines()
                .any(|l| l.contains("can-bo-a") && l.contains("credential.remove")),
            "{audit}"
        );
    }
}

/// An operator label's request filed after a SIGHUP that brought a new calendar is due by that
/// calendar: EST files with the desk's live calendar, not a copy loaded at start.
#[test]
fn a_reloaded_calendar_sets_the_deadline_of_the_next_request_filed_over_est() {
    use std::time::Duration;
    use time::{Date, Duration as Days, OffsetDateTime, UtcOffset};
    let dir = init(&[]);
    let data = dir.path();
    pkid_ok(data, &["org", "add", "--id", ORG, "--name", ORG_NAME]);
    let out = pkid_ok(
        data,
        &[
            "credential",
            "add",
            "--org",
            ORG,
            "--kind",
            "est",
            "--name",
            "hr",
        ],
    );
    let user = format!("hr:{}", out.lines().last().expect("password").trim());
    configure(data);
    let daemon = Daemon::start(data);
    let est = Est {
        daemon: &daemon,
        data,
    };
    let file = |cn: &str| -> String {
        let (_, csr) = make_csr(data, &format!("/CN={cn}"), "ec:P-256");
        let r = est.post(
            "/staff/simpleenroll",
            &b64_csr(data, &csr),
            &["--user", &user],
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r
            .text()
            .split_whitespace()
            .nth(1)
            .expect("request N")
            .to_owned();
        let shown: serde_json::Value =
            serde_json::from_str(&pkid_ok(data, &["request", "show", &id])).expect("JSON");
        let due = shown["request"]["due_at"]
            .as_str()
            .expect("due_at")
            .to_owned();
        OffsetDateTime::parse(&due, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{due}: {e}"))
            .date()
            .to_string()
    };
    let before = file("Trần Văn Bình");

    // Every day from tomorrow for two weeks off (split at a year's end: one table per year).
    let vn = UtcOffset::from_hms(7, 0, 0).expect("+07:00");
    let tomorrow = OffsetDateTime::now_utc().to_offset(vn).date() + Days::days(1);
    let last = tomorrow + Days::days(13);
    let mut calendar = String::new();
    let mut from = tomorrow;
    while from <= last {
        let year_end =
            Date::from_calendar_date(from.year(), time::Month::December, 31).expect("31/12");
        let to = last.min(year_end);
        calendar.push_str(&format!(
            "[[{y}.day_off]]\nfrom = \"{from}\"\nto = \"{to}\"\nname = \"Nghỉ thử\"\nsource = \"test\"\n\n",
            y = from.year()
        ));
        from = to + Days::days(1);
    }
    std::fs::write(data.join("calendar-vn.toml"), calendar).expect("calendar");
    daemon.sighup();
    assert!(
        daemon.wait_for_log("EST labels reloaded", 1, Duration::from_secs(10)),
        "{}",
        daemon.logs()
    );
    let after = file("Lê Thị Cúc");
    assert!(
        after > last.to_string(),
        "filed after the reload, due {after}, within the days off ending {last} (before: {before})"
    );
    assert_ne!(before, after);
}
