//! Centralised remote signing end to end (issue 16): a real `pkid serve`, a real SMTP server
//! (Python's aiosmtpd), `curl` for every call, `openssl` to check what comes back.
//!
//! ```text
//! org officer ─curl─▶ POST /api/v1/requests (key_origin central, document signed with openssl cms)
//! RA officer  ─curl─▶ approve ─▶ the fulfilment worker: key, certificate, account, mail
//! aiosmtpd (Maildir) ◀── activation mail ─▶ the test reads the one-time link
//! subscriber  ─curl─▶ POST /api/v1/activation/{code} ─▶ otpauth:// URI ─▶ TOTP (Python hmac)
//! CSC client  ─curl─▶ /csc/v2/auth/login, credentials/list|info|authorize, signatures/signHash
//! openssl dgst -verify ◀── the signature, with the key of the certificate credentials/info gave
//! ```
//!
//! And every refusal: the policy at filing (sector, roles, profile, unsigned document), a wrong
//! or replayed OTP, a replayed SAD, a SAD for other hashes, another subscriber's credential, an
//! expired token, the lock after repeated wrong OTPs, and a revoked certificate — each audited.
//!
//! `scripts/test.sh` exports `PKID_TEST_SMTPD_PYTHON` (aiosmtpd in `target/venv`).

mod common;

use common::ra::*;
use common::*;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest wait for the fulfilment worker and the mail (the worker looks every second).
const WAIT: Duration = Duration::from_secs(60);
/// The activation password of every subscriber here (Vietnamese, 12+ characters).
const PASSWORD: &str = "Mật khẩu ký số 2026!";

fn smtpd_python() -> PathBuf {
    match std::env::var_os("PKID_TEST_SMTPD_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "PKID_TEST_SMTPD_PYTHON is not set: run through scripts/test.sh, or \
             PKID_TEST_SMTPD_PYTHON=$PWD/target/venv/bin/python cargo test -p pkid --test csc"
        ),
    }
}

/// aiosmtpd writing every accepted message into a Maildir, for the life of the test process.
struct Smtpd {
    port: u16,
    maildir: PathBuf,
    _child: Child,
}

fn smtpd() -> &'static Smtpd {
    static SMTPD: OnceLock<Smtpd> = OnceLock::new();
    SMTPD.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let maildir = tempdir().keep().join("maildir");
        // `exec` under a tether like the daemon's: the server ends when this process does.
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" "$@" & pid=$!; cat >/dev/null; kill "$pid""#)
            .arg(smtpd_python())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < WAIT, "aiosmtpd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtpd {
            port,
            maildir,
            _child: child,
        }
    })
}

const READ_MAILDIR: &str = r#"
import email, email.policy, json, pathlib, sys
out = []
for f in sorted(pathlib.Path(sys.argv[1]).glob("new/*")):
    m = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
    out.append({"to": str(m["to"]), "subject": str(m["subject"]), "body": m.get_content()})
print(json.dumps(out, ensure_ascii=False))
"#;

/// The mails received for `to`, decoded by Python's `email` package.
fn mails_to(to: &str) -> Vec<Value> {
    let maildir = &smtpd().maildir;
    if !maildir.join("new").exists() {
        return Vec::new();
    }
    let out = Command::new(smtpd_python())
        .args(["-c", READ_MAILDIR])
        .arg(maildir)
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", lossy(&out.stderr));
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("maildir JSON");
    all.into_iter()
        .filter(|m| m["to"].as_str().is_some_and(|t| t.contains(to)))
        .collect()
}

/// RFC 6238 TOTP (SHA-1, 30 s, 6 digits) computed independently of pkid, with Python's hmac:
/// the code of the step `offset` steps from now.
fn totp(secret_b32: &str, offset: i64) -> String {
    let script = r#"
import base64, hashlib, hmac, struct, sys, time
s = sys.argv[1]; s = base64.b32decode(s + "=" * (-len(s) % 8))
t = int(time.time()) // 30 + int(sys.argv[2])
h = hmac.new(s, struct.pack(">Q", t), hashlib.sha1).digest(); o = h[-1] & 15
print("%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7fffffff) % 1000000))
"#;
    let out = Command::new("python3")
        .args(["-c", script, secret_b32, &offset.to_string()])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", lossy(&out.stderr));
    lossy(&out.stdout).trim().to_owned()
}

fn edit(data: &Path, token_secs: u64) {
    let path = data.join("pkid.toml");
    let text = std::fs::read_to_string(&path).expect("pkid.toml");
    for needle in [
        "\npoll_secs = 30\n",
        "\nfulfil_interval_secs = 10\n",
        "\ntoken_secs = 900\n",
    ] {
        assert!(text.contains(needle), "the template moved: {needle:?}");
    }
    let text = text
        .replace("\npoll_secs = 30\n", "\npoll_secs = 1\n")
        .replace(
            "\nfulfil_interval_secs = 10\n",
            "\nfulfil_interval_secs = 1\n",
        )
        .replace(
            "\ntoken_secs = 900\n",
            &format!("\ntoken_secs = {token_secs}\n"),
        );
    let text = format!(
        "{text}\n[notify.email]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"Dịch vụ chứng thực <ca@pkid.test>\"\n",
        smtpd().port
    );
    std::fs::write(&path, text).expect("write pkid.toml");
}

/// The file's daemon (15-minute tokens).
fn bed() -> &'static Testbed {
    static BED: OnceLock<Testbed> = OnceLock::new();
    BED.get_or_init(|| Testbed::start(|data| edit(data, 900)))
}

/// An organisation of a sector, its officer (token, and a registered client certificate that
/// signs its request documents) and an RA officer for its province.
struct School {
    org: String,
    officer: String,
    ra: String,
    /// The RA officer's id (for the portal).
    ra_id: String,
    cert: PathBuf,
    key: PathBuf,
}

impl School {
    fn new(bed: &Testbed, name: &str, sector: &str) -> Self {
        let org = bed.unique("truong");
        let province = bed.unique("p");
        bed.cli(&[
            "org",
            "add",
            "--id",
            &org,
            "--name",
            name,
            "--province",
            &province,
            "--sector",
            sector,
        ]);
        let officer_id = bed.unique("vanthu");
        let officer = bed.operator(&officer_id, "org-officer", Some(&org), None);
        let ra_id = bed.unique("ra");
        let ra = bed.operator(
            &ra_id,
            "ra-officer",
            None,
            Some(&format!("province:{province}")),
        );
        let (key, csr) = make_csr(bed.work(), &format!("/CN={officer_id}"), "ec:P-256");
        let (_serial, cert) = issue(bed.data(), &csr, "tls-client", &[]);
        bed.cli(&[
            "operator",
            "add-cert",
            "--id",
            &officer_id,
            "--cert",
            path_str(&cert),
        ]);
        // The document's signer must be known to the daemon's revocation index.
        assert!(
            poll(PROPAGATION, || bed
                .ocsp(&cert)
                .is_some_and(|(s, _)| s == "good")),
            "the officer's certificate never reached the daemon"
        );
        Self {
            org,
            officer,
            ra,
            ra_id,
            cert,
            key,
        }
    }

    /// A request document signed by the officer with `openssl cms` (detached, DER).
    fn document(&self, bed: &Testbed, text: &str) -> Value {
        let doc = unique_path(bed.work(), "de-nghi", "txt");
        std::fs::write(&doc, text).expect("document");
        let sig = unique_path(bed.work(), "de-nghi", "p7s");
        openssl_ok(&[
            "cms",
            "-sign",
            "-binary",
            "-outform",
            "DER",
            "-in",
            path_str(&doc),
            "-signer",
            path_str(&self.cert),
            "-inkey",
            path_str(&self.key),
            "-out",
            path_str(&sig),
        ]);
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        json!({
            "filename": "de-nghi-ky-so-tu-xa.txt",
            "content_base64": b64.encode(read(&doc)),
            "signature_base64": b64.encode(read(&sig)),
        })
    }

    /// The body of a central issue request.
    fn central(&self, bed: &Testbed, name: &str, email: &str) -> Value {
        json!({
            "kind": "issue",
            "profile": "person",
            "key_origin": "central",
            "subscriber": {"name": name, "email": email, "title": "Giáo viên"},
            "document": self.document(bed, &format!("Đề nghị cấp chứng thư số ký tập trung cho {name}")),
        })
    }
}

/// A subscriber whose central request went all the way: activated, with its TOTP secret.
struct Subscriber {
    email: String,
    totp_secret: String,
    request: i64,
}

/// Files, approves and waits for the fulfilment, reads the activation mail and activates.
fn provision(bed: &Testbed, school: &School, name: &str) -> Subscriber {
    let (email, code, id) = fulfilled(bed, school, name);
    // A short password is refused, naming the rule, and the link still works.
    let short = bed.call(
        "POST",
        &format!("/api/v1/activation/{code}"),
        None,
        Some(&json!({"password": "ngắn"})),
    );
    short.assert_problem(422, "invalid");
    let activated = bed.call(
        "POST",
        &format!("/api/v1/activation/{code}"),
        None,
        Some(&json!({"password": PASSWORD})),
    );
    assert_eq!(activated.status, 200, "{activated}");
    let uri = activated.str("otpauth_uri").to_owned();
    // The link is one-time.
    let again = bed.call(
        "POST",
        &format!("/api/v1/activation/{code}"),
        None,
        Some(&json!({"password": PASSWORD})),
    );
    again.assert_problem(404, "not-found");
    Subscriber {
        email,
        totp_secret: secret_of(&uri),
        request: id,
    }
}

fn secret_of(uri: &str) -> String {
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    uri.split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap_or_else(|| panic!("no secret in {uri}"))
        .to_owned()
}

/// Files a central request, approves it, waits for the fulfilment and the activation mail:
/// (the subscriber's email, the activation code, the request id).
fn fulfilled(bed: &Testbed, school: &School, name: &str) -> (String, String, i64) {
    // Unique in the process: every daemon of this file mails the one Maildir.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let email = format!("gv-{n}@lqd.edu.vn");
    let filed = bed.post(
        "/api/v1/requests",
        &school.officer,
        &school.central(bed, name, &email),
    );
    assert_eq!(filed.status, 201, "{filed}");
    // A validly signed document: accepted at once, no paper original waited for.
    assert_eq!(filed.json["state"], "accepted", "{filed}");
    assert_eq!(filed.json["key_origin"], "central", "{filed}");
    let id = filed.id();
    bed.act_ok(&school.ra, id, "approve", "approved");

    let mut last = None;
    let fulfilled = poll(WAIT, || {
        let r = bed.get(&format!("/api/v1/requests/{id}"), &school.ra);
        let done = r.json["state"] == "fulfilled";
        last = Some(r);
        done
    });
    assert!(fulfilled, "never fulfilled: {}", last.expect("a reply"));

    let mut mail = None;
    let arrived = poll(WAIT, || {
        mail = mails_to(&email).into_iter().find(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.contains("Kích hoạt tài khoản ký số từ xa"))
        });
        mail.is_some()
    });
    assert!(arrived, "no activation mail for {email}");
    let body = mail.expect("mail")["body"]
        .as_str()
        .expect("body")
        .to_owned();
    assert!(body.contains(&format!("Kính gửi {name},")), "{body}");
    let link = body
        .split_whitespace()
        .find(|w| w.starts_with("https://") && w.contains("/activate/"))
        .unwrap_or_else(|| panic!("no activation link in {body}"));
    let code = link.rsplit('/').next().expect("code").to_owned();
    (email, code, id)
}

/// A CSC call with a bearer token and a JSON body.
fn csc(bed: &Testbed, path: &str, token: &str, body: &Value) -> ApiReply {
    bed.post(&format!("/csc/v2/{path}"), token, body)
}

fn login(bed: &Testbed, email: &str, password: &str) -> ApiReply {
    let user = format!("{email}:{password}");
    bed.send(
        "POST",
        "/csc/v2/auth/login",
        None,
        "application/json",
        Some(b"{}"),
        &["-u", &user],
    )
}

fn token(bed: &Testbed, s: &Subscriber) -> String {
    let r = login(bed, &s.email, PASSWORD);
    assert_eq!(r.status, 200, "{r}");
    assert!(r.json["expires_in"].as_u64().is_some_and(|e| e > 0), "{r}");
    r.str("access_token").to_owned()
}

fn assert_csc_error(r: &ApiReply, status: u16, error: &str) {
    assert_eq!(r.status, status, "{r}");
    assert_eq!(r.json["error"], error, "{r}");
    assert!(
        r.json["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{r}"
    );
}

fn sha256_b64(path: &Path) -> String {
    use base64::Engine;
    let out = openssl_ok(&["dgst", "-sha256", "-hex", path_str(path)]);
    let hex = out.trim().rsplit(' ').next().expect("digest").to_owned();
    base64::engine::general_purpose::STANDARD.encode(hex::decode(hex).expect("hex"))
}

fn only_credential(bed: &Testbed, token: &str) -> String {
    let list = csc(bed, "credentials/list", token, &json!({}));
    assert_eq!(list.status, 200, "{list}");
    let ids = list.json["credentialIDs"].as_array().expect("ids");
    assert_eq!(ids.len(), 1, "{list}");
    ids[0].as_str().expect("id").to_owned()
}

fn refused_audited(bed: &Testbed, action: &str, target: &str) -> bool {
    bed.audit_rows()
        .iter()
        .any(|r| r.action == action && r.target == target && r.outcome == "refused")
}

#[test]
fn an_education_subscriber_signs_a_hash_remotely_and_openssl_verifies_it() {
    let bed = bed();
    let school = School::new(bed, "Trường THPT Lê Quý Đôn", "education");
    let name = "Nguyễn Thị Hồng Nhung";
    let sub = provision(bed, &school, name);
    let token = token(bed, &sub);

    let info = csc(bed, "info", &token, &json!({}));
    assert_eq!(info.status, 200, "{info}");
    assert_eq!(info.json["specs"], "2.0.0.2", "{info}");
    assert!(info.json["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .any(|m| m == "signatures/signHash"));

    let id = only_credential(bed, &token);
    let described = csc(
        bed,
        "credentials/info",
        &token,
        &json!({"credentialID": id, "certificates": "chain", "certInfo": true, "authInfo": true}),
    );
    assert_eq!(described.status, 200, "{described}");
    let j = &described.json;
    assert_eq!(j["key"]["status"], "enabled", "{described}");
    assert_eq!(
        j["key"]["algo"],
        json!(["1.2.840.10045.4.3.2"]),
        "{described}"
    );
    assert_eq!(j["key"]["len"], 256, "{described}");
    assert_eq!(j["authMode"], "explicit", "{described}");
    assert_eq!(j["auth"]["mode"], "explicit", "{described}");
    assert_eq!(j["SCAL"], "2", "{described}");
    assert!(
        j["multisign"].as_u64().is_some_and(|m| m > 1),
        "{described}"
    );
    assert_eq!(j["cert"]["status"], "valid", "{described}");
    let chain = j["cert"]["certificates"].as_array().expect("chain");
    assert_eq!(chain.len(), 3, "leaf, issuing CA, root: {described}");

    // The certificate: the registered subject, Vietnamese byte-exact, chaining to pkid's root,
    // and the one the RA request names.
    let (serial, cert) = save_pem(bed.work(), &der_to_pem(chain[0].as_str().expect("b64")));
    let subject = x509_subject(&cert);
    assert!(subject.contains(name), "{subject}");
    assert!(subject.contains("Trường THPT Lê Quý Đôn"), "{subject}");
    assert_verifies(bed.data(), &cert, &[]);
    let request = bed.get(&format!("/api/v1/requests/{}", sub.request), &school.ra);
    assert_eq!(
        request.json["issued_certificate"],
        canonical_serial(&serial),
        "{request}"
    );

    // A document, its SHA-256, authorised with the TOTP and signed remotely.
    let doc = unique_path(bed.work(), "bien-ban", "txt");
    std::fs::write(&doc, "Biên bản họp tổ chuyên môn — ký số từ xa").expect("doc");
    let hash = sha256_b64(&doc);
    let otp = totp(&sub.totp_secret, 0);
    let auth = csc(
        bed,
        "credentials/authorize",
        &token,
        &json!({"credentialID": id, "numSignatures": 1, "hashes": [hash], "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1", "OTP": otp}),
    );
    assert_eq!(auth.status, 200, "{auth}");
    let sad = auth.str("SAD").to_owned();

    // A wrong OTP, and the same OTP again (RFC 6238 §5.2: accepted once), are refused.
    let wrong = csc(
        bed,
        "credentials/authorize",
        &token,
        &json!({"credentialID": id, "numSignatures": 1, "hashes": [hash], "OTP": "000000"}),
    );
    if otp != "000000" {
        assert_csc_error(&wrong, 400, "invalid_otp");
    }
    let replayed = csc(
        bed,
        "credentials/authorize",
        &token,
        &json!({"credentialID": id, "numSignatures": 1, "hashes": [hash], "OTP": otp}),
    );
    assert_csc_error(&replayed, 400, "invalid_otp");

    // A SAD for another hash signs nothing, and does not spend the SAD.
    let other = unique_path(bed.work(), "khac", "txt");
    std::fs::write(&other, "một văn bản khác").expect("doc");
    let other_hash = sha256_b64(&other);
    let mismatch = csc(
        bed,
        "signatures/signHash",
        &token,
        &json!({"credentialID": id, "SAD": sad, "hashes": [other_hash], "signAlgo": "1.2.840.10045.4.3.2"}),
    );
    assert_csc_error(&mismatch, 400, "invalid_request");

    let signed = csc(
        bed,
        "signatures/signHash",
        &token,
        &json!({"credentialID": id, "SAD": sad, "hashes": [hash], "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1", "signAlgo": "1.2.840.10045.4.3.2"}),
    );
    assert_eq!(signed.status, 200, "{signed}");
    let sig_b64 = signed.json["signatures"][0].as_str().expect("signature");
    use base64::Engine;
    let sig = unique_path(bed.work(), "chu-ky", "der");
    std::fs::write(
        &sig,
        base64::engine::general_purpose::STANDARD
            .decode(sig_b64)
            .expect("b64"),
    )
    .expect("sig");
    let pubkey = unique_path(bed.work(), "pub", "pem");
    std::fs::write(&pubkey, public_key_of_cert(&cert)).expect("pubkey");
    let verified = openssl_ok(&[
        "dgst",
        "-sha256",
        "-verify",
        path_str(&pubkey),
        "-signature",
        path_str(&sig),
        path_str(&doc),
    ]);
    assert!(verified.contains("Verified OK"), "{verified}");
    // And it does not verify another document.
    let not = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        path_str(&pubkey),
        "-signature",
        path_str(&sig),
        path_str(&other),
    ]);
    assert!(!not.status.success());

    // The SAD was for one signature: replayed, it signs nothing.
    let replay = csc(
        bed,
        "signatures/signHash",
        &token,
        &json!({"credentialID": id, "SAD": sad, "hashes": [hash], "signAlgo": "1.2.840.10045.4.3.2"}),
    );
    assert_csc_error(&replay, 400, "invalid_request");

    // Every authorisation and signature, and the refusals, are in the audit log.
    let rows = bed.audit_rows();
    assert!(rows.iter().any(|r| r.action == "csc.credentials.authorize"
        && r.target == id
        && r.outcome == "success"));
    assert!(rows.iter().any(|r| r.action == "csc.signatures.signHash"
        && r.target == id
        && r.outcome == "success"));
    assert!(rows.iter().any(|r| r.action == "csc.signatures.signHash"
        && r.target == id
        && r.outcome == "refused"));
    assert!(rows.iter().any(|r| r.action == "csc.credentials.authorize"
        && r.target.starts_with("account:")
        && r.outcome == "refused"));

    // No token, a made-up token: 401 in the CSC form.
    let none = bed.send(
        "POST",
        "/csc/v2/credentials/list",
        None,
        "application/json",
        Some(b"{}"),
        &[],
    );
    assert_csc_error(&none, 401, "invalid_token");
    assert!(
        none.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        "{none}"
    );
    let made_up = csc(bed, "credentials/list", "pkidcsc_bogus", &json!({}));
    assert_csc_error(&made_up, 401, "invalid_token");
    // A wrong password at login.
    assert_csc_error(
        &login(bed, &sub.email, "không phải mật khẩu"),
        401,
        "authentication_error",
    );

    // The revocation of the certificate disables the key at once.
    let revoke = bed.post("/api/v1/requests", &school.officer, &json!({"kind": "revoke", "certificate": canonical_serial(&serial), "reason": "keyCompromise"}));
    assert_eq!(revoke.status, 201, "{revoke}");
    let rid = revoke.id();
    if revoke.json["state"] != "accepted" {
        bed.act_ok(&school.ra, rid, "original-received", "accepted");
    }
    bed.act_ok(&school.ra, rid, "approve", "fulfilled");
    let after = csc(
        bed,
        "credentials/authorize",
        &token,
        &json!({"credentialID": id, "numSignatures": 1, "hashes": [hash], "OTP": totp(&sub.totp_secret, 1)}),
    );
    assert_csc_error(&after, 400, "invalid_request");
    assert!(
        after.json["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked"),
        "{after}"
    );
    let described = csc(
        bed,
        "credentials/info",
        &token,
        &json!({"credentialID": id}),
    );
    assert_eq!(described.json["key"]["status"], "disabled", "{described}");
    assert_eq!(described.json["cert"]["status"], "revoked", "{described}");
}

fn der_to_pem(b64: &str) -> String {
    let lines: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[test]
fn another_subscribers_credential_is_refused_and_audited() {
    let bed = bed();
    let school = School::new(bed, "Bệnh viện Đa khoa Đà Nẵng", "health");
    let a = provision(bed, &school, "Lê Văn Tâm");
    let b = provision(bed, &school, "Phạm Thị Thu Hà");
    let ta = token(bed, &a);
    let tb = token(bed, &b);
    let id_b = only_credential(bed, &tb);
    let doc = unique_path(bed.work(), "don", "txt");
    std::fs::write(&doc, "đơn thuốc").expect("doc");
    let hash = sha256_b64(&doc);
    let info = csc(bed, "credentials/info", &ta, &json!({"credentialID": id_b}));
    assert_csc_error(&info, 400, "invalid_request");
    let auth = csc(
        bed,
        "credentials/authorize",
        &ta,
        &json!({"credentialID": id_b, "numSignatures": 1, "hashes": [hash], "OTP": totp(&a.totp_secret, 0)}),
    );
    assert_csc_error(&auth, 400, "invalid_request");
    // B's own SAD, presented by A with B's credential, signs nothing.
    let sad_b = csc(
        bed,
        "credentials/authorize",
        &tb,
        &json!({"credentialID": id_b, "numSignatures": 1, "hashes": [hash], "OTP": totp(&b.totp_secret, 0)}),
    );
    assert_eq!(sad_b.status, 200, "{sad_b}");
    let stolen = csc(
        bed,
        "signatures/signHash",
        &ta,
        &json!({"credentialID": id_b, "SAD": sad_b.str("SAD"), "hashes": [hash], "signAlgo": "1.2.840.10045.4.3.2"}),
    );
    assert_csc_error(&stolen, 400, "invalid_request");
    assert!(refused_audited(bed, "csc.credentials.info", &id_b));
    assert!(refused_audited(bed, "csc.credentials.authorize", &id_b));
    assert!(refused_audited(bed, "csc.signatures.signHash", &id_b));
    // B still signs with it: A's attempts spent nothing.
    let signed = csc(
        bed,
        "signatures/signHash",
        &tb,
        &json!({"credentialID": id_b, "SAD": sad_b.str("SAD"), "hashes": [hash], "signAlgo": "1.2.840.10045.4.3.2"}),
    );
    assert_eq!(signed.status, 200, "{signed}");

    // The signing history of B's credential on the portal, for the RA officer of the
    // hospital's province: newest first, what each call named and how it ended.
    let ra_jar = bed.portal_login(&school.ra_id);
    let (status, page) = bed.portal_get(&ra_jar, &format!("/signing/{id_b}"));
    assert_eq!(status, 200, "{page}");
    let rows: Vec<(String, String)> = page
        .split("data-testid=\"signing-row\"")
        .skip(1)
        .map(|r| {
            let cell = |m: &str| {
                r.split(m)
                    .nth(1)
                    .and_then(|s| s.split('>').nth(1))
                    .and_then(|s| s.split('<').next())
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                cell("data-testid=\"signing-hashes\""),
                cell("data-testid=\"signing-outcome\""),
            )
        })
        .collect();
    let expected = [
        ("1", "thành công"), // B's signature
        ("0", "bị từ chối"), // A's signHash with B's SAD
        ("1", "thành công"), // B's authorisation
        ("0", "bị từ chối"), // A's authorisation
        ("0", "bị từ chối"), // A's credentials/info
    ];
    assert_eq!(
        rows,
        expected.map(|(h, o)| (h.to_owned(), o.to_owned())),
        "{page}"
    );
    assert!(page.contains("<td>Ký số</td>"), "{page}");
    assert!(page.contains("SHA-256, ecdsa-with-SHA256"));
    assert!(!page.contains(&hash), "the hashes stay in the audit log");
    // Its request links it.
    let request = page
        .split("href=\"/requests/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the request link")
        .to_owned();
    let (_, request_page) = bed.portal_get(&ra_jar, &format!("/requests/{request}"));
    assert!(
        request_page.contains(&format!("href=\"/signing/{id_b}\"")),
        "{request_page}"
    );
    // An RA officer of another province: not found, and the read audited.
    let other = bed.unique("ra");
    bed.operator(&other, "ra-officer", None, Some("province:khac"));
    let jar = bed.portal_login(&other);
    let (status, page) = bed.portal_get(&jar, &format!("/signing/{id_b}"));
    assert_eq!(status, 404, "{page}");
    assert!(refused_audited(bed, "csc.history", &id_b));
    // That refused read is in the audit log, not in the credential's signing history.
    let (_, again) = bed.portal_get(&ra_jar, &format!("/signing/{id_b}"));
    assert_eq!(
        again.matches("data-testid=\"signing-row\"").count(),
        5,
        "{again}"
    );
}

#[test]
fn repeated_wrong_otps_lock_the_account() {
    let bed = bed();
    let school = School::new(bed, "Trường Cao đẳng Y tế Huế", "training");
    let sub = provision(bed, &school, "Hoàng Minh Đức");
    let token = token(bed, &sub);
    let id = only_credential(bed, &token);
    let doc = unique_path(bed.work(), "bang-diem", "txt");
    std::fs::write(&doc, "bảng điểm").expect("doc");
    let hash = sha256_b64(&doc);
    let good = totp(&sub.totp_secret, 0);
    let wrong = if good == "123456" { "654321" } else { "123456" };
    for _ in 0..5 {
        let r = csc(
            bed,
            "credentials/authorize",
            &token,
            &json!({"credentialID": id, "numSignatures": 1, "hashes": [hash], "OTP": wrong}),
        );
        assert_csc_error(&r, 400, "invalid_otp");
    }
    // Locked: the right code no longer authorises, and the password no longer logs in.
    let r = csc(
        bed,
        "credentials/authorize",
        &token,
        &json!({"credentialID": id, "numSignatures": 1, "hashes": [hash], "OTP": good}),
    );
    assert_csc_error(&r, 403, "access_denied");
    assert_csc_error(&login(bed, &sub.email, PASSWORD), 403, "access_denied");
    let rows = bed.audit_rows();
    assert!(rows
        .iter()
        .any(|r| r.action == "csc.account.lock" && r.outcome == "success"));

    // Unlocking is the RA's: not the organisation's officer, not an RA officer of another
    // province; the province's RA officer may.
    let unlock = |token: &str| {
        bed.post(
            "/api/v1/csc/accounts/unlock",
            token,
            &json!({"email": sub.email}),
        )
    };
    unlock(&school.officer).assert_problem(403, "forbidden");
    let elsewhere = bed.operator(&bed.unique("ra"), "ra-officer", None, Some("province:99"));
    unlock(&elsewhere).assert_problem(403, "forbidden");
    bed.call(
        "POST",
        "/api/v1/csc/accounts/unlock",
        None,
        Some(&json!({"email": sub.email})),
    )
    .assert_problem(401, "unauthenticated");
    assert_eq!(unlock(&school.ra).status, 204);
    unlock(&school.ra).assert_problem(409, "conflict");
    let token = self::token(bed, &sub);
    let r = csc(
        bed,
        "credentials/authorize",
        &token,
        &json!({"credentialID": id, "numSignatures": 1, "hashes": [hash], "OTP": good}),
    );
    assert_eq!(r.status, 200, "{r}");

    // A lost phone: the RA re-enrols the account; the old password stops working and a new
    // activation link is mailed; the new authenticator authorises.
    let reenrol = bed.post(
        "/api/v1/csc/accounts/reenrol",
        &school.ra,
        &json!({"email": sub.email}),
    );
    assert_eq!(reenrol.status, 204, "{reenrol}");
    assert_csc_error(
        &login(bed, &sub.email, PASSWORD),
        401,
        "authentication_error",
    );
    assert_csc_error(
        &csc(bed, "credentials/list", &token, &json!({})),
        401,
        "invalid_token",
    );
    let mut mail = None;
    assert!(poll(WAIT, || {
        mail = mails_to(&sub.email).into_iter().find(|m| {
            m["body"]
                .as_str()
                .is_some_and(|b| b.contains("được đăng ký lại"))
        });
        mail.is_some()
    }));
    let body = mail.expect("mail")["body"]
        .as_str()
        .expect("body")
        .to_owned();
    assert!(body.contains("Kính gửi Hoàng Minh Đức,"), "{body}");
    let code = body
        .split_whitespace()
        .find(|w| w.contains("/activate/"))
        .and_then(|l| l.rsplit('/').next())
        .expect("link")
        .to_owned();
    let new_password = "Mật khẩu mới sau khi mất điện thoại";
    let activated = bed.call(
        "POST",
        &format!("/api/v1/activation/{code}"),
        None,
        Some(&json!({"password": new_password})),
    );
    assert_eq!(activated.status, 200, "{activated}");
    let secret = secret_of(activated.str("otpauth_uri"));
    assert_ne!(secret, sub.totp_secret);
    let again = Subscriber {
        email: sub.email.clone(),
        totp_secret: secret,
        request: 0,
    };
    let r = login(bed, &again.email, new_password);
    assert_eq!(r.status, 200, "{r}");
    let token = r.str("access_token").to_owned();
    let r = csc(
        bed,
        "credentials/authorize",
        &token,
        &json!({"credentialID": id, "numSignatures": 1, "hashes": [hash], "OTP": totp(&again.totp_secret, 1)}),
    );
    assert_eq!(r.status, 200, "{r}");
    let rows = bed.audit_rows();
    assert!(rows
        .iter()
        .any(|r| r.action == "csc.account.unlock" && r.outcome == "success"));
    assert!(rows
        .iter()
        .any(|r| r.action == "csc.account.unlock" && r.outcome == "refused"));
    assert!(rows
        .iter()
        .any(|r| r.action == "csc.account.reenrol" && r.outcome == "success"));
}

/// The organisation files a `recover` request for the account of a central certificate;
/// the RA approves it; the fulfilment worker does it: (the request's reply once fulfilled).
fn recovered(bed: &Testbed, school: &School, serial: &str, recovery: &str) -> ApiReply {
    let filed = bed.post(
        "/api/v1/requests",
        &school.officer,
        &json!({
            "kind": "recover",
            "key_origin": "central",
            "certificate": serial,
            "recovery": recovery,
            "document": school.document(bed, &format!("Đề nghị khôi phục tài khoản ký số từ xa ({recovery})")),
        }),
    );
    assert_eq!(filed.status, 201, "{filed}");
    assert_eq!(filed.json["state"], "accepted", "{filed}");
    assert_eq!(filed.json["recovery"], recovery, "{filed}");
    let id = filed.id();
    bed.act_ok(&school.ra, id, "approve", "approved");
    let mut last = None;
    let done = poll(WAIT, || {
        let r = bed.get(&format!("/api/v1/requests/{id}"), &school.ra);
        let done = r.json["state"] == "fulfilled";
        last = Some(r);
        done
    });
    let last = last.expect("a reply");
    assert!(done, "never fulfilled: {last}");
    last
}

#[test]
fn unlock_and_reenrolment_are_filed_as_recover_requests_and_done_once_approved() {
    let bed = bed();
    let school = School::new(bed, "Trường THCS Nguyễn Huệ", "education");
    let sub = provision(bed, &school, "Lê Thị Thu Trang");
    let request = bed.get(&format!("/api/v1/requests/{}", sub.request), &school.ra);
    let serial = request.str("issued_certificate").to_owned();
    let token = token(bed, &sub);
    let id = only_credential(bed, &token);
    let doc = unique_path(bed.work(), "hoc-ba", "txt");
    std::fs::write(&doc, "học bạ").expect("doc");
    let hash = sha256_b64(&doc);
    let authorize = |token: &str, otp: &str| {
        csc(
            bed,
            "credentials/authorize",
            token,
            &json!({"credentialID": id, "numSignatures": 1, "hashes": [hash], "OTP": otp}),
        )
    };
    let good = totp(&sub.totp_secret, 0);
    let wrong = if good == "123456" { "654321" } else { "123456" };
    for _ in 0..5 {
        assert_csc_error(&authorize(&token, wrong), 400, "invalid_otp");
    }
    assert_csc_error(&authorize(&token, &good), 403, "access_denied");

    // What the desk refuses, by field.
    let file = |body: Value| bed.post("/api/v1/requests", &school.officer, &body);
    let field = |r: &ApiReply, name: &str| {
        let fields = r.assert_problem(422, "invalid");
        assert!(fields.iter().any(|f| f == name), "{name}: {r}");
    };
    let doc = school.document(bed, "Đề nghị khôi phục tài khoản");
    let recover =
        json!({"kind": "recover", "key_origin": "central", "certificate": serial, "document": doc});
    // The account's certificate: unlock or re-enrol must be said.
    field(&file(recover.clone()), "recovery");
    let mut body = recover.clone();
    body["recovery"] = json!("xoa");
    field(&file(body), "recovery");
    // A key device has no account to unlock.
    let mut body = recover.clone();
    body["recovery"] = json!("unlock");
    body["key_origin"] = json!("token");
    field(&file(body), "recovery");
    // Only a recover request recovers.
    let body = json!({"kind": "revoke", "certificate": serial, "reason": "keyCompromise",
        "recovery": "unlock", "document": doc});
    field(&file(body), "recovery");
    // Online only, as the account's issue was: no paper path.
    let mut body = recover.clone();
    body["recovery"] = json!("unlock");
    body.as_object_mut().expect("object").remove("document");
    let r = file(body);
    field(&r, "document");
    assert!(lossy(&r.body).contains("central-signed-document"), "{r}");
    // Another organisation's officer may not file for it.
    let other = School::new(bed, "Trường Mầm non Hoa Sen", "education");
    let mut body = recover.clone();
    body["recovery"] = json!("unlock");
    body["document"] = other.document(bed, "Đề nghị mở khóa");
    let r = bed.post("/api/v1/requests", &other.officer, &body);
    field(&r, "certificate");

    // Unlock: approved, the worker unlocks; the password and authenticator are the same.
    let done = recovered(bed, &school, &serial, "unlock");
    assert_eq!(done.json["recovery"], "unlock", "{done}");
    // The request names the account's holder, who is told it is done, in these words.
    assert_eq!(
        done.json["subscriber"]["name"], "Lê Thị Thu Trang",
        "{done}"
    );
    assert!(
        poll(WAIT, || mails_to(&sub.email).iter().any(|m| m["body"]
            .as_str()
            .is_some_and(|b| b
                .contains("(mở khóa tài khoản ký số từ xa)")
                && b.contains("đã được xử lý xong")))),
        "no fulfilment notice of the unlock to {}",
        sub.email
    );
    // (The code refused while locked was not spent.)
    let r = authorize(&token, &good);
    assert_eq!(r.status, 200, "{r}");
    let rows = bed.audit_rows();
    assert!(
        rows.iter().any(|r| r.action == "csc.account.unlock"
            && r.actor == "pkid-csc"
            && r.outcome == "success"),
        "the worker's unlock is audited"
    );

    // Re-enrolment (a lost phone): the old password and this session end, one new link is
    // mailed, and the new authenticator authorises.
    let enrolled_again = |m: &Value| {
        m["body"]
            .as_str()
            .is_some_and(|b| b.contains("được đăng ký lại"))
    };
    recovered(bed, &school, &serial, "reenrol");
    assert_csc_error(
        &login(bed, &sub.email, PASSWORD),
        401,
        "authentication_error",
    );
    assert_csc_error(
        &csc(bed, "credentials/list", &token, &json!({})),
        401,
        "invalid_token",
    );
    let mut mail = None;
    assert!(poll(WAIT, || {
        mail = mails_to(&sub.email).into_iter().find(|m| enrolled_again(m));
        mail.is_some()
    }));
    let body = mail.expect("mail")["body"]
        .as_str()
        .expect("body")
        .to_owned();
    assert!(body.contains("Kính gửi Lê Thị Thu Trang,"), "{body}");
    let code = body
        .split_whitespace()
        .find(|w| w.contains("/activate/"))
        .and_then(|l| l.rsplit('/').next())
        .expect("link")
        .to_owned();
    let new_password = "Mật khẩu mới của cô Trang";
    let activated = bed.call(
        "POST",
        &format!("/api/v1/activation/{code}"),
        None,
        Some(&json!({"password": new_password})),
    );
    assert_eq!(activated.status, 200, "{activated}");
    let secret = secret_of(activated.str("otpauth_uri"));
    assert_ne!(secret, sub.totp_secret);
    let r = login(bed, &sub.email, new_password);
    assert_eq!(r.status, 200, "{r}");
    // (The next step: the account's last step is kept across re-enrolment.)
    let r = authorize(r.str("access_token"), &totp(&secret, 1));
    assert_eq!(r.status, 200, "{r}");
    // Done once: one re-enrolment mail, one audit record of it.
    assert_eq!(
        mails_to(&sub.email)
            .iter()
            .filter(|m| enrolled_again(m))
            .count(),
        1
    );
    assert_eq!(
        bed.audit_rows()
            .iter()
            .filter(|r| r.action == "csc.account.reenrol" && r.actor == "pkid-csc")
            .count(),
        1
    );
}

#[test]
fn a_central_request_is_fulfilled_behind_a_thousand_approved_token_requests() {
    let bed = bed();
    let school = School::new(bed, "Trường Đại học Y Dược Cần Thơ", "education");
    let filed = bed.post(
        "/api/v1/requests",
        &school.officer,
        &school.central(bed, "Phan Thị Mỹ Duyên", "duyen@ctump.edu.vn"),
    );
    assert_eq!(filed.status, 201, "{filed}");
    let id = filed.id();
    // A token rollout: 1,000 issue requests approved after it, waiting for their devices
    // (inserted straight into the store, as a bulk load would).
    let mut conn = rusqlite::Connection::open(bed.data().join("pkid.db")).expect("db");
    let (path, province): (String, Option<String>) = conn
        .query_row(
            "SELECT path, province FROM organisations WHERE id = ?1",
            [&school.org],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("organisation");
    let tx = conn.transaction().expect("tx");
    for i in 0..1000 {
        tx.execute(
            "INSERT INTO requests (kind, organisation, province, org_path, state, key_origin,
                 subscriber_name, submitted_by, submitted_at, updated_at)
             VALUES ('issue', ?1, ?2, ?3, 'approved', 'token', ?4, 'van-thu', 0, 0)",
            rusqlite::params![school.org, province, path, format!("Người thứ {i}")],
        )
        .expect("request");
    }
    tx.commit().expect("commit");
    bed.act_ok(&school.ra, id, "approve", "approved");
    let mut last = None;
    let done = poll(WAIT, || {
        let r = bed.get(&format!("/api/v1/requests/{id}"), &school.ra);
        let done = r.json["state"] == "fulfilled";
        last = Some(r);
        done
    });
    assert!(done, "starved: {}", last.expect("a reply"));
}

#[test]
fn central_keys_are_refused_with_the_rule_named() {
    let bed = bed();
    let school = School::new(bed, "Trường Tiểu học Hòa Khánh", "education");
    let email = "gv.hoakhanh@edu.vn";
    let file = |body: &Value| bed.post("/api/v1/requests", &school.officer, body);
    let rule = |r: &ApiReply, field: &str, rule: &str| {
        let fields = r.assert_problem(422, "invalid");
        assert!(fields.iter().any(|f| f == field), "{field}: {r}");
        assert!(lossy(&r.body).contains(rule), "{rule}: {r}");
    };

    let mut body = school.central(bed, "Võ Thị Sáu", email);
    body["subscriber"]["roles"] = json!(["authorised-signatory"]);
    rule(
        &file(&body),
        "subscriber.roles",
        "central-no-authorised-signatory",
    );
    body["subscriber"]["roles"] = json!(["finance"]);
    rule(&file(&body), "subscriber.roles", "central-no-finance");
    body["subscriber"]["roles"] = json!(["ke-toan"]);
    rule(&file(&body), "subscriber.roles", "unknown role");

    let mut body = school.central(bed, "Võ Thị Sáu", email);
    body["profile"] = json!("tls-client");
    rule(&file(&body), "profile", "central-profile");

    let mut body = school.central(bed, "Võ Thị Sáu", email);
    body.as_object_mut().expect("object").remove("document");
    rule(&file(&body), "document", "central-signed-document");

    // A document that is not valid evidence: its signature is over another file.
    let mut body = school.central(bed, "Võ Thị Sáu", email);
    body["document"]["signature_base64"] =
        school.document(bed, "một văn bản khác")["signature_base64"].clone();
    rule(&file(&body), "document", "central-signed-document");

    let other = School::new(bed, "Công ty Cổ phần Xây dựng Đà Nẵng", "other");
    let r = bed.post(
        "/api/v1/requests",
        &other.officer,
        &other.central(bed, "Trần Văn Bảy", "bay@xd.vn"),
    );
    rule(&r, "key_origin", "central-sector");

    // Nothing was filed by any of them.
    let listed = bed.get(
        &format!("/api/v1/requests?organisation={}", school.org),
        &school.ra,
    );
    assert_eq!(
        listed.json["items"].as_array().map_or(0, Vec::len),
        0,
        "{listed}"
    );
}

#[test]
fn an_expired_access_token_is_refused_and_audited() {
    let bed = Testbed::start(|data| edit(data, 60));
    let school = School::new(&bed, "Trường THCS Nguyễn Huệ", "education");
    let sub = provision(&bed, &school, "Đặng Thùy Trâm");
    let token = token(&bed, &sub);
    assert_eq!(
        csc(&bed, "credentials/list", &token, &json!({})).status,
        200
    );
    std::thread::sleep(Duration::from_secs(62));
    let r = csc(&bed, "credentials/list", &token, &json!({}));
    assert_csc_error(&r, 401, "invalid_token");
    assert!(
        r.json["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{r}"
    );
    assert!(bed
        .audit_rows()
        .iter()
        .any(|r| r.action == "csc.token" && r.outcome == "refused"));
}

#[test]
fn a_subscriber_activates_on_the_portal_page_and_signs_with_the_enrolled_authenticator() {
    let bed = bed();
    let school = School::new(bed, "Trường Đại học Sư phạm Đà Nẵng", "education");
    let (email, code, _) = fulfilled(bed, &school, "Trịnh Công Sơn");
    let jar = unique_path(bed.work(), "cookies", "txt");
    let path = format!("/activate/{code}");
    let page = |form: &[String]| portal_page(bed, &jar, &path, form);
    let form = page(&[]);
    assert_eq!(form.status, 200, "{}", form.text());
    let html = form.text();
    assert!(html.contains("Kích hoạt tài khoản ký số từ xa"), "{html}");
    let csrf_arg = format!("csrf={}", form_token(&html));
    let password = format!("password={PASSWORD}");
    let confirm = format!("confirm={PASSWORD}");

    // Without the form token: refused, and the code is not spent.
    let forged = page(&[password.clone(), confirm.clone()]);
    assert_eq!(forged.status, 403, "{}", forged.text());
    // Two different passwords: the form again, saying so.
    let mismatch = page(&[
        csrf_arg.clone(),
        password.clone(),
        "confirm=một mật khẩu khác hẳn".into(),
    ]);
    assert_eq!(mismatch.status, 422, "{}", mismatch.text());
    assert!(
        mismatch
            .text()
            .contains("Hai lần nhập mật khẩu không giống nhau."),
        "{}",
        mismatch.text()
    );

    let submit = [csrf_arg, password, confirm];
    let done = page(&submit);
    assert_eq!(done.status, 200, "{}", done.text());
    let html = done.text();
    assert!(html.contains("data-testid=\"activate-qr\"><svg"), "{html}");
    let needle = "data-testid=\"activate-uri\">";
    let at = html.find(needle).expect("the URI") + needle.len();
    // askama escapes `&` as `&#38;`.
    let uri = html[at..]
        .split('<')
        .next()
        .expect("uri")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let secret = secret_of(&uri);

    // The link is spent.
    let again = page(&submit);
    assert_eq!(again.status, 404, "{}", again.text());

    // The password set on the page logs in, and the enrolled secret's code authorises.
    let sub = Subscriber {
        email,
        totp_secret: secret,
        request: 0,
    };
    let token = token(bed, &sub);
    let id = only_credential(bed, &token);
    let doc = unique_path(bed.work(), "giao-an", "txt");
    std::fs::write(&doc, "giáo án").expect("doc");
    let auth = csc(
        bed,
        "credentials/authorize",
        &token,
        &json!({"credentialID": id, "numSignatures": 1, "hashes": [sha256_b64(&doc)], "OTP": totp(&sub.totp_secret, 0)}),
    );
    assert_eq!(auth.status, 200, "{auth}");
}

#[test]
fn pyhanko_signs_a_pdf_through_the_csc_api_and_validates_it_against_pkids_root() {
    // An independent client end to end: pyHanko builds a PAdES signature with a signature
    // timestamp from pkid's TSA, pkid makes the one remote signature
    // (daemon/tests/clients/sign_pdf_csc.py), and pyHanko's validator — not pkid's — checks
    // the PDF against pkid's root with revocation required, from pkid's CRLs
    // (daemon/tests/clients/validate_pdf.py). pyHanko is in the same target/venv as aiosmtpd.
    let bed = bed();
    let school = School::new(bed, "Trường Tiểu học Kim Đồng", "education");
    let name = "Phạm Thị Thu Hương";
    let sub = provision(bed, &school, name);
    let token = token(bed, &sub);
    let id = only_credential(bed, &token);
    let w = bed.work();
    let token_file = unique_path(w, "token", "txt");
    std::fs::write(&token_file, &token).expect("token");
    let otp_file = unique_path(w, "otp", "txt");
    std::fs::write(&otp_file, totp(&sub.totp_secret, 0)).expect("otp");
    let root = bed.data().join("certs/root.crt");
    let signed = unique_path(w, "cong-van", "pdf");
    let python = smtpd_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sign_pdf_csc.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .args(["--api", &bed.https_url("/csc/v2")])
        .args(["--ca", path_str(&root)])
        .args(["--token-file", path_str(&token_file)])
        .args(["--credential", &id])
        .args(["--otp-file", path_str(&otp_file)])
        .args(["--tsa", &bed.http_url("/tsa")])
        .args(["--out", path_str(&signed)])
        .output()
        .expect("python");
    let text = format!("{}{}", lossy(&out.stdout), lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains(&token),
        "the token stays out of the client's output"
    );

    let validator = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/validate_pdf.py");
    let out = std::process::Command::new(&python)
        .arg(&validator)
        .args(["--trust", path_str(&root)])
        .args(["--other", path_str(&bed.data().join("certs/issuing.crt"))])
        .args(["--http-base", &bed.http_url("")])
        .arg(&signed)
        .output()
        .expect("python");
    let report = format!("{}{}", lossy(&out.stdout), lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains(name),
        "the signer is the subscriber: {report}"
    );
    assert!(
        report.contains(
            "signature ChuKy1: intact=True trusted=True timestamp_trusted=True bottom_line=True"
        ),
        "{report}"
    );
    let rows = bed.audit_rows();
    let signed_rows = rows
        .iter()
        .filter(|r| {
            r.action == "csc.signatures.signHash" && r.target == id && r.outcome == "success"
        })
        .count();
    assert_eq!(signed_rows, 1, "one remote signature, audited");
}

#[test]
fn a_batch_is_signed_over_several_calls_with_an_extended_transaction() {
    let bed = bed();
    let school = School::new(bed, "Trường Mầm non Hoa Sen", "education");
    let sub = provision(bed, &school, "Võ Thị Ngọc Ánh");
    let token = token(bed, &sub);
    let id = only_credential(bed, &token);
    let info = csc(bed, "info", &token, &json!({}));
    assert!(info.json["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .any(|m| m == "credentials/extendTransaction"));

    // Three documents authorised with one OTP; the first signed at once.
    let docs: Vec<String> = (1..=3)
        .map(|i| {
            let f = unique_path(bed.work(), &format!("quyet-dinh-{i}"), "txt");
            std::fs::write(&f, format!("Quyết định số {i}/QĐ-MNHS")).expect("doc");
            sha256_b64(&f)
        })
        .collect();
    let sha256 = "2.16.840.1.101.3.4.2.1";
    let auth = csc(
        bed,
        "credentials/authorize",
        &token,
        &json!({"credentialID": id, "numSignatures": 3, "hashes": docs, "hashAlgorithmOID": sha256, "OTP": totp(&sub.totp_secret, 0)}),
    );
    assert_eq!(auth.status, 200, "{auth}");
    let first = auth.str("SAD").to_owned();
    let sign = |sad: &str, hashes: &[String]| {
        csc(
            bed,
            "signatures/signHash",
            &token,
            &json!({"credentialID": id, "SAD": sad, "hashes": hashes, "hashAlgorithmOID": sha256, "signAlgo": "1.2.840.10045.4.3.2"}),
        )
    };
    assert_eq!(sign(&first, &docs[..1]).status, 200);

    // No SAD, or one never issued: refused, and the live one is untouched.
    let missing = csc(
        bed,
        "credentials/extendTransaction",
        &token,
        &json!({"credentialID": id}),
    );
    assert_csc_error(&missing, 400, "invalid_request");
    let made_up = csc(
        bed,
        "credentials/extendTransaction",
        &token,
        &json!({"credentialID": id, "SAD": "pkidsad_khong-co-that"}),
    );
    assert_csc_error(&made_up, 400, "invalid_request");
    // A hash the SAD never authorised cannot ride on an extension.
    let stranger = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
    let bad = csc(
        bed,
        "credentials/extendTransaction",
        &token,
        &json!({"credentialID": id, "SAD": first, "hashes": [stranger]}),
    );
    assert_csc_error(&bad, 400, "invalid_request");

    // Extended: a new SAD for the two left; the old one no longer signs.
    let extended = csc(
        bed,
        "credentials/extendTransaction",
        &token,
        &json!({"credentialID": id, "SAD": first, "hashes": &docs[1..]}),
    );
    assert_eq!(extended.status, 200, "{extended}");
    let second = extended.str("SAD").to_owned();
    assert_ne!(second, first);
    assert!(
        extended.json["expiresIn"].as_u64().is_some_and(|s| s > 0),
        "{extended}"
    );
    assert_csc_error(&sign(&first, &docs[1..2]), 400, "invalid_request");
    // The signed hash is not authorised again by the extension.
    assert_csc_error(&sign(&second, &docs[..1]), 400, "invalid_request");
    let rest = sign(&second, &docs[1..]);
    assert_eq!(rest.status, 200, "{rest}");
    assert_eq!(rest.json["signatures"].as_array().map(Vec::len), Some(2));
    // Spent: nothing left to extend.
    let spent = csc(
        bed,
        "credentials/extendTransaction",
        &token,
        &json!({"credentialID": id, "SAD": second}),
    );
    assert_csc_error(&spent, 400, "invalid_request");

    let rows = bed.audit_rows();
    assert!(rows
        .iter()
        .any(|r| r.action == "csc.credentials.extendTransaction"
            && r.target == id
            && r.outcome == "success"));
    assert!(refused_audited(
        bed,
        "csc.credentials.extendTransaction",
        &id
    ));
}

/// A portal page fetched with a cookie jar (and the form fields, when posting).
fn portal_page(bed: &Testbed, jar: &Path, path: &str, form: &[String]) -> Reply {
    let mut args = bed.tls_args();
    args.extend([
        "-b".into(),
        path_str(jar).into(),
        "-c".into(),
        path_str(jar).into(),
    ]);
    for f in form {
        args.extend(["--data-urlencode".into(), f.clone()]);
    }
    args.push(bed.https_url(path));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    fetch(&refs)
}

fn form_token(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    html[at..].split('"').next().expect("token").to_owned()
}

/// Signs in on the portal's login form: the reply to the POST.
fn portal_login(bed: &Testbed, jar: &Path, email: &str, password: &str, code: &str) -> Reply {
    let home = portal_page(bed, jar, "/", &[]);
    assert_eq!(home.status, 200, "{}", home.text());
    let csrf = form_token(&home.text());
    portal_page(
        bed,
        jar,
        "/login",
        &[
            format!("csrf={csrf}"),
            format!("username={email}"),
            format!("password={password}"),
            format!("totp={code}"),
        ],
    )
}

#[test]
fn a_subscriber_signs_in_to_the_portal_and_reads_only_their_own_signing_history() {
    let bed = bed();
    let school = School::new(bed, "Trường Tiểu học Kim Đồng", "education");
    let sub = provision(bed, &school, "Phạm Thị Ngọc Ánh");
    let other = provision(bed, &school, "Đỗ Văn Khánh");
    let other_id = only_credential(bed, &token(bed, &other));
    let token = token(bed, &sub);
    let id = only_credential(bed, &token);

    // One document authorised (with the previous step's code) and signed over the CSC API.
    let doc = unique_path(bed.work(), "ke-hoach", "txt");
    std::fs::write(&doc, "Kế hoạch giảng dạy học kỳ I").expect("doc");
    let hash = sha256_b64(&doc);
    let auth = csc(
        bed,
        "credentials/authorize",
        &token,
        &json!({"credentialID": id, "numSignatures": 1, "hashes": [hash], "OTP": totp(&sub.totp_secret, -1)}),
    );
    assert_eq!(auth.status, 200, "{auth}");
    let signed = csc(
        bed,
        "signatures/signHash",
        &token,
        &json!({"credentialID": id, "SAD": auth.str("SAD"), "hashes": [hash], "signAlgo": "1.2.840.10045.4.3.2"}),
    );
    assert_eq!(signed.status, 200, "{signed}");

    // The password alone, or with a wrong code, does not sign in; the refusal says only that
    // it failed, and it is audited against the account.
    let jar = unique_path(bed.work(), "signer-cookies", "txt");
    let code = totp(&sub.totp_secret, 0);
    let wrong = if code == "123456" { "654321" } else { "123456" };
    let refused = portal_login(bed, &jar, &sub.email, PASSWORD, wrong);
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert!(
        refused.text().contains("Đăng nhập không thành công."),
        "{}",
        refused.text()
    );
    assert!(bed
        .audit_rows()
        .iter()
        .any(|r| r.action == "csc.portal.login" && r.outcome == "refused"));

    // Email, password and the authenticator's code: the subscriber's own page.
    let ok = portal_login(bed, &jar, &sub.email, PASSWORD, &code);
    assert_eq!(ok.status, 303, "{}", ok.text());
    let home = portal_page(bed, &jar, "/", &[]);
    assert_eq!(home.status, 200, "{}", home.text());
    let html = home.text();
    assert!(html.contains("Chữ ký số từ xa của tôi"), "{html}");
    assert!(
        html.contains(&format!("data-credential-id=\"{id}\"")),
        "{html}"
    );
    assert!(
        !html.contains(&other_id),
        "another subscriber's key: {html}"
    );
    assert!(
        html.contains("Phạm Thị Ngọc Ánh"),
        "the subject as issued: {html}"
    );
    assert!(html.contains("còn hiệu lực"), "{html}");
    assert!(
        !html.contains("nav-subscribers"),
        "no RA pages in the menu: {html}"
    );
    // The code just used does not sign in a second time (RFC 6238 §5.2).
    let replay_jar = unique_path(bed.work(), "replay-cookies", "txt");
    let replayed = portal_login(bed, &replay_jar, &sub.email, PASSWORD, &code);
    assert_eq!(replayed.status, 401, "{}", replayed.text());

    // The history: the authorisation and the signature, one hash each, both successful.
    let history = portal_page(bed, &jar, &format!("/signing/{id}"), &[]);
    assert_eq!(history.status, 200, "{}", history.text());
    let html = history.text();
    assert_eq!(
        html.matches("data-testid=\"signing-row\"").count(),
        2,
        "{html}"
    );
    assert!(html.contains("Ủy quyền ký (mã OTP)"), "{html}");
    assert!(html.contains("Ký số"), "{html}");
    assert!(
        !html.contains("/requests/"),
        "no link to the RA's request: {html}"
    );

    // Another subscriber's history, and the RA's pages, are not the subscriber's to read.
    let theirs = portal_page(bed, &jar, &format!("/signing/{other_id}"), &[]);
    assert_eq!(theirs.status, 404, "{}", theirs.text());
    let request = portal_page(bed, &jar, &format!("/requests/{}", sub.request), &[]);
    assert_eq!(request.status, 303, "{}", request.text());
    let subscribers = portal_page(bed, &jar, "/subscribers", &[]);
    assert_eq!(subscribers.status, 303, "{}", subscribers.text());

    // Locked after five wrong codes in a row — the replayed portal code was the first (the
    // successful login before it reset the count) — and the open portal session ends with it.
    for _ in 0..4 {
        let r = csc(
            bed,
            "credentials/authorize",
            &token,
            &json!({"credentialID": id, "numSignatures": 1, "hashes": [hash], "OTP": wrong}),
        );
        assert_csc_error(&r, 400, "invalid_otp");
    }
    let locked = csc(
        bed,
        "credentials/authorize",
        &token,
        &json!({"credentialID": id, "numSignatures": 1, "hashes": [hash], "OTP": totp(&sub.totp_secret, 1)}),
    );
    assert_csc_error(&locked, 403, "access_denied");
    let after = portal_page(bed, &jar, "/", &[]);
    assert_eq!(after.status, 200, "{}", after.text());
    assert!(
        after.text().contains("data-testid=\"login-username\""),
        "{}",
        after.text()
    );
    let gone = portal_page(bed, &jar, &format!("/signing/{id}"), &[]);
    assert_eq!(gone.status, 303, "{}", gone.text());
}
