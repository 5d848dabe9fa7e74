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
