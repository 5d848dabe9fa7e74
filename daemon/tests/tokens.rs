//! End to end: subscribers' key devices, with SoftHSM2 tokens in temporary directories standing
//! in for USB tokens, on a running `pkid serve` (the RA's requests are filed through its JSON
//! API) and the `pkid token` CLI.
//!
//! ```text
//!  org officer ─curl─▶ issue request (key_origin token) ─▶ RA officer accepts, approves
//!  pkid token provision ─▶ pkcs11-tool --list-objects (key + certificates, same CKA_ID, key
//!    sensitive and never extractable) ─▶ openssl verify ─▶ pkcs11-tool --sign ─▶ openssl dgst
//!    -verify ─▶ pkid token handover
//!  recover request ─▶ pkid token unlock (new PIN; the old one refused) ─▶ sign again
//!  pkid cert revoke ─▶ pkid token outstanding ─▶ return ─▶ wipe (no objects left) ─▶ provision
//!    again
//!  bad input: wrong token, already provisioned, SO PIN refused, out of scope, wrong state
//! ```

mod common;

use common::ra::*;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The blank tokens' factory SO PIN (the pool's).
const FACTORY_SO_PIN: &str = "87654321";
/// The blank tokens' factory user PIN (replaced at provisioning).
const FACTORY_USER_PIN: &str = "111111";

fn bed() -> &'static Testbed {
    static BED: OnceLock<Testbed> = OnceLock::new();
    BED.get_or_init(|| Testbed::start(|_| {}))
}

/// One organisation in `province`, its officer, and an RA officer of the province.
struct Desk {
    org: String,
    officer: String,
    ra: String,
    /// The RA officer's operator id (`pkid token --operator`).
    ra_id: String,
}

impl Desk {
    fn new(province: &str) -> Self {
        let bed = bed();
        let org = bed.unique("so-giao-duc");
        bed.org(&org, "Sở Giáo dục và Đào tạo Cần Thơ", None, Some(province));
        let officer = bed.operator(&bed.unique("canbo"), "org-officer", Some(&org), None);
        let ra_id = bed.unique("ra");
        let ra = bed.operator(
            &ra_id,
            "ra-officer",
            None,
            Some(&format!("province:{province}")),
        );
        Desk {
            org,
            officer,
            ra,
            ra_id,
        }
    }

    /// Files `body`, has the RA officer accept and approve it; asserts it stays approved.
    fn approved(&self, body: &Value) -> i64 {
        let bed = bed();
        let r = bed.post("/api/v1/requests", &self.officer, body);
        assert_eq!(r.status, 201, "{r}");
        bed.act_ok(&self.ra, r.id(), "original-received", "accepted");
        let done = bed.act_ok(&self.ra, r.id(), "approve", "approved");
        done.id()
    }

    /// An approved issue request whose key is made on a token.
    fn issue(&self, name: &str) -> i64 {
        self.approved(&json!({
            "kind": "issue",
            "profile": "person",
            "key_origin": "token",
            "subscriber": {"name": name, "email": "giaovien@truong.edu.vn"},
        }))
    }

    /// An approved recover request for the device holding `certificate`.
    fn recover(&self, certificate: &str) -> i64 {
        self.approved(&json!({
            "kind": "recover",
            "certificate": certificate,
            "key_origin": "token",
        }))
    }
}

/// A blank token labelled `label`, as a vendor ships it to the CA.
fn blank(label: &str) -> SoftHsmToken {
    SoftHsmToken::new(label, FACTORY_USER_PIN, FACTORY_SO_PIN)
}

/// `pkid token ARGS…` against `token`'s SoftHSM2 directory.
fn token_cli(token: &SoftHsmToken, args: &[&str]) -> std::process::Output {
    let mut full = vec!["token"];
    full.extend_from_slice(args);
    pkid_env(bed().data(), &full, &token.env())
}

fn slot_args(label: &str) -> [&str; 4] {
    ["--module", SOFTHSM_MODULE, "--token-label", label]
}

/// `pkid token provision` that must succeed: (device JSON, the printed PIN).
fn provision(token: &SoftHsmToken, label: &str, request: i64) -> (Value, String) {
    let so = token.pin_file(FACTORY_SO_PIN);
    let id = request.to_string();
    let mut args = vec![
        "provision",
        "--request",
        &id,
        "--so-pin-file",
        path_str(&so),
    ];
    args.extend(slot_args(label));
    let out = token_cli(token, &args);
    assert_success(&out, "pkid token provision");
    let (device, pin) = pin_and_json(&lossy(&out.stdout));
    assert!(
        !lossy(&out.stderr).contains(&pin),
        "the PIN is not logged: {}",
        lossy(&out.stderr)
    );
    (device, pin)
}

/// Splits a command's stdout into its JSON and its last line `PIN: <digits>`.
fn pin_and_json(stdout: &str) -> (Value, String) {
    let (body, last) = stdout
        .trim_end()
        .rsplit_once('\n')
        .expect("JSON, then the PIN line");
    let pin = last.strip_prefix("PIN: ").expect("last line is PIN: …");
    assert!(
        pin.len() >= 6 && pin.chars().all(|c| c.is_ascii_digit()),
        "the PIN is numeric, at least 6 digits: {pin:?}"
    );
    (
        serde_json::from_str(body).expect("device JSON"),
        pin.to_owned(),
    )
}

/// A `pkid token` command that must fail: (exit code, stderr).
fn token_fails(token: &SoftHsmToken, args: &[&str]) -> (i32, String) {
    let out = token_cli(token, args);
    assert!(
        !out.status.success(),
        "pkid token {args:?} should fail: {}",
        lossy(&out.stdout)
    );
    (out.status.code().expect("exit code"), lossy(&out.stderr))
}

/// `pkcs11-tool --list-objects` as the user with `pin`.
fn objects(token: &SoftHsmToken, label: &str, pin: &str) -> String {
    let out = token.user_tool(label, pin, &["--list-objects"]);
    assert_success(&out, "pkcs11-tool --list-objects");
    lossy(&out.stdout)
}

/// The objects of a `--list-objects` listing: each header line ("Private Key Object; EC")
/// with the indented lines under it.
fn object_blocks(listing: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in listing.lines() {
        if line.starts_with(char::is_whitespace) {
            if let Some(b) = blocks.last_mut() {
                b.push('\n');
                b.push_str(line);
            }
        } else if !line.trim().is_empty() {
            blocks.push(line.to_owned());
        }
    }
    blocks
}

/// The block of the first object of `kind` ("Private Key Object", "Certificate Object") with
/// label `label`.
fn object(listing: &str, kind: &str, label: &str) -> Option<String> {
    object_blocks(listing).into_iter().find(|b| {
        b.starts_with(kind)
            && b.lines()
                .any(|l| l.trim().strip_prefix("label:").map(str::trim) == Some(label))
    })
}

/// A field ("ID", "Access") of an object block.
fn field(block: &str, name: &str) -> Option<String> {
    block.lines().find_map(|l| {
        l.trim()
            .strip_prefix(&format!("{name}:"))
            .map(|v| v.trim().to_owned())
    })
}

/// The `ID:` of the first object of `kind` labelled `label`.
fn object_id(listing: &str, kind: &str, label: &str) -> Option<String> {
    object(listing, kind, label).and_then(|b| field(&b, "ID"))
}

/// Signs `data` with the token's key through `pkcs11-tool --sign` (the digest made outside,
/// `CKM_ECDSA`, as SoftHSM 2.6.1 has no `CKM_ECDSA_SHA256`) and verifies the signature with
/// the certificate's public key; returns whether both worked.
fn sign_and_verify(token: &SoftHsmToken, label: &str, pin: &str, id: &str, cert: &Path) -> bool {
    let dir = token.dir.path();
    let data = unique_path(dir, "data", "txt");
    std::fs::write(&data, "Quyết định số 42/QĐ-SGDĐT").expect("data");
    let digest = unique_path(dir, "digest", "bin");
    openssl_ok(&[
        "dgst",
        "-sha256",
        "-binary",
        "-out",
        path_str(&digest),
        path_str(&data),
    ]);
    let sig = unique_path(dir, "sig", "der");
    let out = token.user_tool(
        label,
        pin,
        &[
            "--sign",
            "--mechanism",
            "ECDSA",
            "--signature-format",
            "openssl",
            "--id",
            id,
            "-i",
            path_str(&digest),
            "-o",
            path_str(&sig),
        ],
    );
    if !out.status.success() {
        return false;
    }
    let public = unique_path(dir, "pub", "pem");
    openssl_ok(&[
        "x509",
        "-in",
        path_str(cert),
        "-pubkey",
        "-noout",
        "-out",
        path_str(&public),
    ]);
    let verified = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        path_str(&public),
        "-signature",
        path_str(&sig),
        path_str(&data),
    ]);
    assert_success(&verified, "openssl dgst -verify");
    lossy(&verified.stdout).contains("Verified OK")
}

/// Reads the certificate object with CKA_ID `id` off the token (public: no login) as PEM.
fn certificate_on_token(token: &SoftHsmToken, label: &str, id: &str) -> PathBuf {
    let dir = token.dir.path();
    let der = unique_path(dir, "cert", "der");
    let out = token.tool(
        "pkcs11-tool",
        &[
            "--module",
            SOFTHSM_MODULE,
            "--token-label",
            label,
            "--read-object",
            "--type",
            "cert",
            "--id",
            id,
            "-o",
            path_str(&der),
        ],
    );
    assert_success(&out, "pkcs11-tool --read-object --type cert");
    let pem = unique_path(dir, "cert", "pem");
    openssl_ok(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        path_str(&der),
        "-out",
        path_str(&pem),
    ]);
    pem
}

fn show(token: &SoftHsmToken, serial: &str) -> Value {
    let out = token_cli(token, &["show", "--device", serial]);
    assert_success(&out, "pkid token show");
    serde_json::from_str(&lossy(&out.stdout)).expect("JSON")
}

#[test]
fn a_token_is_provisioned_signs_is_unlocked_taken_back_wiped_and_provisioned_again() {
    let bed = bed();
    let desk = Desk::new("92");
    let label = "usb-0001";
    let token = blank(label);
    let name = "Nguyễn Thị Hồng Nhung";
    let request = desk.issue(name);

    // Provision: the key and the certificate are on the token, with the same CKA_ID.
    let (device, pin) = provision(&token, label, request);
    assert_eq!(device["state"], "provisioned", "{device}");
    assert_eq!(device["request"], request);
    assert_eq!(device["organisation"], desk.org.as_str());
    assert_eq!(device["so_pin_escrowed"], true);
    assert_eq!(device["label"], label, "the token keeps its label");
    let serial = device["serial"].as_str().expect("serial").to_owned();
    let cert_serial = device["certificate"].as_str().expect("cert").to_owned();
    let listing = objects(&token, label, &pin);
    let key_id = object_id(&listing, "Private Key Object", "pkid-subscriber")
        .unwrap_or_else(|| panic!("a private key on the token:\n{listing}"));
    assert_eq!(
        object_id(&listing, "Certificate Object", "pkid-subscriber").as_deref(),
        Some(key_id.as_str()),
        "the certificate carries the key's CKA_ID:\n{listing}"
    );
    assert_eq!(
        listing.matches("Certificate Object").count(),
        3,
        "the certificate, the issuing CA and the root:\n{listing}"
    );
    let private_block =
        object(&listing, "Private Key Object", "pkid-subscriber").expect("private key");
    let access = field(&private_block, "Access").expect("Access line");
    // pkcs11-tool prints the token's CKA_SENSITIVE, CKA_ALWAYS_SENSITIVE, CKA_EXTRACTABLE
    // and CKA_NEVER_EXTRACTABLE as these words (it never reads a private key's value, so
    // `--read-object --type privkey` proves nothing).
    let flags: Vec<&str> = access.split(',').map(str::trim).collect();
    assert!(
        flags.contains(&"sensitive")
            && flags.contains(&"never extractable")
            && !flags.contains(&"extractable"),
        "the key is sensitive and not extractable: {access}"
    );
    // The factory user PIN is gone.
    assert!(!token
        .user_tool(label, FACTORY_USER_PIN, &["--list-objects"])
        .status
        .success());

    // The certificate on the token is the one issued, verifies, and names the subscriber.
    let cert = certificate_on_token(&token, label, &key_id);
    assert_verifies(bed.data(), &cert, &[]);
    assert_eq!(
        canonical_serial(&x509_serial(&cert)),
        canonical_serial(&cert_serial)
    );
    assert!(
        x509_subject(&cert).contains(name),
        "the registered subscriber, in Vietnamese: {}",
        x509_subject(&cert)
    );
    let shown = bed.get(&format!("/api/v1/requests/{request}"), &desk.ra);
    assert_eq!(shown.json["state"], "fulfilled", "{shown}");
    assert_eq!(
        canonical_serial(shown.str("issued_certificate")),
        canonical_serial(&cert_serial)
    );

    // Sign with the token's key through pkcs11-tool, verify with the certificate.
    assert!(sign_and_verify(&token, label, &pin, &key_id, &cert));

    // Hand over.
    let out = token_cli(
        &token,
        &[
            "handover",
            "--device",
            &serial,
            "--receiver",
            "Trần Văn Bình",
            "--note",
            "biên bản bàn giao số 7",
        ],
    );
    assert_success(&out, "pkid token handover");
    let handed: Value = serde_json::from_str(&lossy(&out.stdout)).expect("JSON");
    assert_eq!(handed["state"], "handed-over");
    assert_eq!(
        handed["receiver"], "Trần Văn Bình",
        "Vietnamese round-trips"
    );

    // The portal lists it for the RA officer of its province, where it is and who has it, and
    // not for an officer of another province.
    let ra_jar = bed.portal_login(&desk.ra_id);
    let jar = ra_jar.clone();
    let (status, page) = bed.portal_get(&jar, "/devices");
    assert_eq!(status, 200, "{page}");
    let row = page
        .split("data-testid=\"device-row\"")
        .find(|r| r.contains(&format!(">{serial}<")))
        .unwrap_or_else(|| panic!("no row for device {serial}: {page}"));
    assert!(row.contains("Đã bàn giao"), "{row}");
    assert!(row.contains("Trần Văn Bình"), "{row}");
    let elsewhere = Desk::new("93");
    let jar = bed.portal_login(&elsewhere.ra_id);
    let (status, page) = bed.portal_get(&jar, "/devices");
    assert_eq!(status, 200, "{page}");
    assert!(
        !page.contains(&serial),
        "another province's officer sees {serial}"
    );

    // The subscriber forgets the PIN (the test discards it; SoftHSM2 does not count wrong
    // attempts, so a wrong one is simply refused). A recover request unlocks it.
    assert!(!token
        .user_tool(label, "00000000", &["--list-objects"])
        .status
        .success());
    let recover = desk.recover(&cert_serial);
    let id = recover.to_string();
    let mut args = vec!["unlock", "--request", &id];
    args.extend(slot_args(label));
    let out = token_cli(&token, &args);
    assert_success(&out, "pkid token unlock");
    let (_, new_pin) = pin_and_json(&lossy(&out.stdout));
    assert!(
        !lossy(&out.stderr).contains(&new_pin),
        "the PIN is not logged"
    );
    assert_ne!(new_pin, pin);
    assert!(
        !token
            .user_tool(label, &pin, &["--list-objects"])
            .status
            .success(),
        "the old PIN no longer opens the token"
    );
    assert!(sign_and_verify(&token, label, &new_pin, &key_id, &cert));
    let recovered = bed.get(&format!("/api/v1/requests/{recover}"), &desk.ra);
    assert_eq!(recovered.json["state"], "fulfilled", "{recovered}");
    // The device's page on the portal: its history as recorded, oldest first, no PIN.
    let (status, page) = bed.portal_get(&ra_jar, &format!("/devices/{serial}"));
    assert_eq!(status, 200, "{page}");
    let actions: Vec<&str> = page
        .split("data-testid=\"device-event\" data-action=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(
        actions,
        ["provisioned", "handed-over", "unlocked"],
        "{page}"
    );
    assert!(page.contains("biên bản bàn giao số 7"), "{page}");
    // The hand-over names the request's paper original: the RA officer recorded it before
    // approving (the request had no validly signed document).
    let handed_over = page
        .split("data-action=\"handed-over\"")
        .nth(1)
        .and_then(|s| s.split("data-testid=\"device-event\"").next())
        .unwrap_or_default();
    assert!(
        handed_over.contains("paper original received") && handed_over.contains(&desk.ra_id),
        "{handed_over}"
    );
    assert!(!page.contains(pin.as_str()) && !page.contains(new_pin.as_str()));
    // The PINs are never in the store's audit log or the daemon's log.
    let audit = bed.cli(&["audit", "list", "--limit", "100000"]);
    for p in [&pin, &new_pin] {
        assert!(!audit.contains(p.as_str()) && !bed.logs().contains(p.as_str()));
    }

    // Taking back a device whose certificate is still valid is refused.
    let (code, err) = token_fails(&token, &["return", "--device", &serial]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("still valid"), "{err}");
    revoke(bed.data(), &cert_serial, "cessationOfOperation");
    let out = token_cli(&token, &["outstanding"]);
    assert_success(&out, "pkid token outstanding");
    let outstanding: Value = serde_json::from_str(&lossy(&out.stdout)).expect("JSON");
    let row = outstanding
        .as_array()
        .expect("array")
        .iter()
        .find(|d| d["serial"] == serial.as_str())
        .unwrap_or_else(|| panic!("the revoked device is outstanding: {outstanding}"));
    assert_eq!(row["certificate_status"], "revoked");
    let out = token_cli(&token, &["return", "--device", &serial]);
    assert_success(&out, "pkid token return");
    let out = token_cli(&token, &["outstanding"]);
    assert!(
        !lossy(&out.stdout).contains(&serial),
        "returned: no longer outstanding"
    );

    // Wipe: every object gone, the token has the pool's SO PIN again and is provisioned anew.
    let pool = token.pin_file(FACTORY_SO_PIN);
    let mut args = vec![
        "wipe",
        "--device",
        &serial,
        "--so-pin-file",
        path_str(&pool),
    ];
    args.extend(slot_args(label));
    let out = token_cli(&token, &args);
    assert_success(&out, "pkid token wipe");
    let wiped: Value = serde_json::from_str(&lossy(&out.stdout)).expect("JSON");
    assert_eq!(wiped["state"], "wiped");
    assert_eq!(wiped["so_pin_escrowed"], false);
    let public = token.tool(
        "pkcs11-tool",
        &[
            "--module",
            SOFTHSM_MODULE,
            "--token-label",
            label,
            "--list-objects",
        ],
    );
    assert!(
        !lossy(&public.stdout).contains("Certificate Object"),
        "no certificate left: {}",
        lossy(&public.stdout)
    );
    let history = show(&token, &serial);
    let actions: Vec<&str> = history["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        actions,
        [
            "provisioned",
            "handed-over",
            "unlocked",
            "returned",
            "wiped"
        ]
    );
    let again = desk.issue("Lê Minh Tuấn");
    let (device, pin) = provision(&token, label, again);
    assert_eq!(device["serial"], serial.as_str(), "the same token, reused");
    assert_eq!(device["state"], "provisioned");
    let listing = objects(&token, label, &pin);
    assert!(listing.contains("Private Key Object"), "{listing}");

    // Every step audited.
    for action in [
        "device.provision",
        "device.handover",
        "device.unlock",
        "device.return",
        "device.wipe",
    ] {
        assert!(
            bed.audit_rows()
                .iter()
                .any(|r| r.action == action && r.target == serial && r.outcome == "success"),
            "{action} is audited"
        );
    }
}

/// Whether the audit log has a refused `action` on `target`.
fn refused(action: &str, target: &str) -> bool {
    bed()
        .audit_rows()
        .iter()
        .any(|r| r.action == action && r.target == target && r.outcome == "refused")
}

#[test]
fn a_refused_so_pin_leaves_the_request_approved_and_the_token_provisionable() {
    let bed = bed();
    let desk = Desk::new("79");
    let label = "usb-pin";
    let token = blank(label);
    let request = desk.issue("Phạm Thu Hà");
    let wrong = token.pin_file("00000000");
    let id = request.to_string();
    let mut args = vec![
        "provision",
        "--request",
        &id,
        "--so-pin-file",
        path_str(&wrong),
    ];
    args.extend(slot_args(label));
    let (code, err) = token_fails(&token, &args);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("refused the SO PIN"), "{err}");
    assert!(!err.contains("00000000"), "the PIN is not echoed: {err}");
    assert!(refused("device.provision", &id));
    let shown = bed.get(&format!("/api/v1/requests/{request}"), &desk.ra);
    assert_eq!(shown.json["state"], "approved", "{shown}");
    assert_eq!(shown.json["issued_certificate"], Value::Null, "{shown}");
    let list = token_cli(&token, &["list"]);
    assert!(!lossy(&list.stdout).contains(&format!("\"request\": {request}")));
    // The factory PINs still work, and the right SO PIN provisions it.
    let (device, _) = provision(&token, label, request);
    assert_eq!(device["state"], "provisioned");

    // The same request again, on another blank token: it already has its device.
    let other = blank("usb-pin-2");
    let so = other.pin_file(FACTORY_SO_PIN);
    let mut args = vec![
        "provision",
        "--request",
        &id,
        "--so-pin-file",
        path_str(&so),
    ];
    args.extend(slot_args("usb-pin-2"));
    let (code, err) = token_fails(&other, &args);
    // The request is fulfilled now: the desk refuses it before any token is touched.
    assert_eq!(code, 5, "{err}");
}

#[test]
fn a_provisioned_token_is_not_provisioned_again_and_unlock_holds_to_the_recorded_token() {
    let bed = bed();
    let desk = Desk::new("31");
    let label = "usb-twice";
    let token = blank(label);
    let (device, pin) = provision(&token, label, desk.issue("Đỗ Quang Vinh"));
    let serial = device["serial"].as_str().expect("serial").to_owned();

    // Already provisioned: refused, audited, the token untouched (the PIN still opens it and
    // the key is there), the second request still approved.
    let second = desk.issue("Vũ Thị Lan");
    let so = token.pin_file(FACTORY_SO_PIN);
    let id = second.to_string();
    let mut args = vec![
        "provision",
        "--request",
        &id,
        "--so-pin-file",
        path_str(&so),
    ];
    args.extend(slot_args(label));
    let (code, err) = token_fails(&token, &args);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("already provisioned"), "{err}");
    assert!(refused("device.provision", &id));
    assert!(objects(&token, label, &pin).contains("Private Key Object"));
    let shown = bed.get(&format!("/api/v1/requests/{second}"), &desk.ra);
    assert_eq!(shown.json["state"], "approved", "{shown}");

    // A token provisioned by another CA (certificates on it, not in our records) is refused too.
    let foreign_label = "usb-foreign";
    let foreign = blank(foreign_label);
    let ca = unique_path(foreign.dir.path(), "ca", "der");
    openssl_ok(&[
        "x509",
        "-in",
        path_str(&bed.data().join("certs/root.crt")),
        "-outform",
        "DER",
        "-out",
        path_str(&ca),
    ]);
    let out = foreign.user_tool(
        foreign_label,
        FACTORY_USER_PIN,
        &[
            "--write-object",
            path_str(&ca),
            "--type",
            "cert",
            "--id",
            "01",
        ],
    );
    assert_success(&out, "pkcs11-tool --write-object");
    let so = foreign.pin_file(FACTORY_SO_PIN);
    let mut args = vec![
        "provision",
        "--request",
        &id,
        "--so-pin-file",
        path_str(&so),
    ];
    args.extend(slot_args(foreign_label));
    let (code, err) = token_fails(&foreign, &args);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("already holds certificates"), "{err}");

    // Unlock with the wrong token plugged in: refused, audited, neither token changed.
    let recover = desk.recover(device["certificate"].as_str().expect("cert"));
    let rid = recover.to_string();
    let mut args = vec!["unlock", "--request", &rid];
    args.extend(slot_args(foreign_label));
    let (code, err) = token_fails(&foreign, &args);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("not the recorded device"), "{err}");
    assert!(refused("device.unlock", &serial));
    assert!(objects(&token, label, &pin).contains("Private Key Object"));
    let shown = bed.get(&format!("/api/v1/requests/{recover}"), &desk.ra);
    assert_eq!(shown.json["state"], "approved", "{shown}");

    // A token that is not plugged in at all.
    let mut args = vec!["unlock", "--request", &rid];
    args.extend(slot_args("usb-absent"));
    let (code, err) = token_fails(&token, &args);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("no PKCS#11 token labelled"), "{err}");

    // Wiping a device still out is refused.
    let pool = token.pin_file(FACTORY_SO_PIN);
    let mut args = vec![
        "wipe",
        "--device",
        &serial,
        "--so-pin-file",
        path_str(&pool),
    ];
    args.extend(slot_args(label));
    let (code, err) = token_fails(&token, &args);
    assert_eq!(code, 5, "{err}");
    assert!(refused("device.wipe", &serial));
    // Handing over twice is refused.
    let handover = [
        "handover",
        "--device",
        &serial,
        "--receiver",
        "Hoàng Văn Nam",
    ];
    assert_success(&token_cli(&token, &handover), "handover");
    let (code, err) = token_fails(&token, &handover);
    assert_eq!(code, 5, "{err}");
    let (code, err) = token_fails(&token, &["show", "--device", "no-such-device"]);
    assert_eq!(code, 4, "{err}");
}

#[test]
fn a_provincial_ra_officer_unlocks_devices_of_its_province_only() {
    let home = Desk::new("48");
    let away = Desk::new("60");
    let label = "usb-scope";
    let token = blank(label);
    let (device, _) = provision(&token, label, home.issue("Ngô Bảo Châu"));
    let cert = device["certificate"].as_str().expect("cert").to_owned();
    let recover = home.recover(&cert);
    let id = recover.to_string();

    // The officer of another province: refused (exit 7) and audited.
    let mut args = vec!["--operator", &away.ra_id, "unlock", "--request", &id];
    args.extend(slot_args(label));
    let (code, err) = token_fails(&token, &args);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("outside your scope"), "{err}");
    assert!(bed().audit_rows().iter().any(|r| r.actor == away.ra_id
        && r.action == "device.unlock"
        && r.target == id
        && r.outcome == "refused"));
    // Nor may it read the device.
    let (code, _) = token_fails(
        &token,
        &[
            "--operator",
            &away.ra_id,
            "show",
            "--device",
            device["serial"].as_str().expect("serial"),
        ],
    );
    assert_eq!(code, 7);

    // The JSON API shows the device to those who reach its organisation only.
    let serial = device["serial"].as_str().expect("serial");
    let testbed = bed();
    let mine = testbed.get("/api/v1/devices", &home.officer);
    assert_eq!(mine.status, 200, "{mine}");
    assert!(
        mine.json
            .as_array()
            .expect("array")
            .iter()
            .any(|d| d["serial"] == serial && d["state"] == "provisioned"),
        "{mine}"
    );
    let theirs = testbed.get("/api/v1/devices", &away.officer);
    assert_eq!(theirs.status, 200, "{theirs}");
    assert!(
        !theirs
            .json
            .as_array()
            .expect("array")
            .iter()
            .any(|d| d["serial"] == serial),
        "{theirs}"
    );
    let one = testbed.get(&format!("/api/v1/devices/{serial}"), &home.ra);
    assert_eq!(one.status, 200, "{one}");
    assert_eq!(one.json["device"]["organisation"], home.org.as_str());
    assert_eq!(one.json["device"].get("so_pin_sealed"), None, "{one}");
    assert_eq!(one.json["history"][0]["action"], "provisioned", "{one}");
    testbed
        .get(&format!("/api/v1/devices/{serial}"), &away.ra)
        .assert_problem(403, "forbidden");
    testbed
        .get("/api/v1/devices/no-such-device", &home.ra)
        .assert_problem(404, "not-found");
    testbed
        .call("GET", "/api/v1/devices", None, None)
        .assert_problem(401, "unauthenticated");

    // The officer of the organisation's province may.
    let mut args = vec!["--operator", &home.ra_id, "unlock", "--request", &id];
    args.extend(slot_args(label));
    let out = token_cli(&token, &args);
    assert_success(&out, "pkid token --operator unlock");
    let (_, pin) = pin_and_json(&lossy(&out.stdout));
    assert!(objects(&token, label, &pin).contains("Private Key Object"));
    assert!(bed()
        .audit_rows()
        .iter()
        .any(|r| r.actor == home.ra_id && r.action == "device.unlock" && r.outcome == "success"));
}

/// Whether the main thread of process `pid` is in a sleep system call (`nanosleep`,
/// `clock_nanosleep`: how SQLite's busy handler waits for a lock), per `/proc/PID/syscall`.
fn sleeping(pid: u32) -> bool {
    #[cfg(target_arch = "x86_64")]
    const SLEEPS: [&str; 2] = ["35", "230"];
    #[cfg(target_arch = "aarch64")]
    const SLEEPS: [&str; 2] = ["101", "115"];
    std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .is_some_and(|n| SLEEPS.contains(&n.as_str()))
}

/// `pkid cert list --subject NAME`: (serial, status) of each certificate.
fn certificates_of(name: &str) -> Vec<(String, String)> {
    bed()
        .cli(&["cert", "list", "--subject", name])
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let serial = f.next()?.to_owned();
            let _issuer = f.next()?;
            Some((serial, f.next()?.to_owned()))
        })
        .collect()
}

/// The token is pulled out after its key pair was made, while the CA is issuing: nothing is
/// recorded, the certificate already issued is revoked, the request stays approved, and the
/// token, plugged in again, is provisioned by the same command.
///
/// The steps are ordered, not timed against each other: `pkid token provision` reads SoftHSM2's
/// configuration from a FIFO, so it is past opening the store (whose write lock it would
/// otherwise wait for) when this test's write into the FIFO returns; the test then holds the
/// store's write lock, so the provisioning waits at the issuance (the certificate's first
/// write) once its key is on the token; the token directory is moved away (the token pulled
/// out) and the lock released.
#[test]
fn a_token_pulled_out_mid_provisioning_leaves_nothing_recorded_and_provisions_again() {
    use std::io::Write;
    let bed = bed();
    let desk = Desk::new("86");
    let label = "usb-pulled";
    let token = blank(label);
    let name = "Trịnh Công Sơn Thử Rút";
    let request = desk.issue(name);
    let tokens = token.dir.path().join("tokens");
    let slot_dir = std::fs::read_dir(&tokens)
        .expect("tokens")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("the token's directory");
    let fifo = token.dir.path().join("softhsm2-fifo.conf");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let so = token.pin_file(FACTORY_SO_PIN);
    let id = request.to_string();
    let child = pkid_command(bed.data())
        .args([
            "token",
            "provision",
            "--request",
            &id,
            "--so-pin-file",
            path_str(&so),
        ])
        .args(slot_args(label))
        .env("SOFTHSM2_CONF", &fifo)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pkid token provision");
    // The FIFO opens for writing once the provisioning opens it for reading: it is past the
    // store's start. (Opened without blocking, so a provisioning that ends first fails the
    // test instead of hanging it; O_NONBLOCK is 0o4000 on Linux.)
    let mut child = child;
    let mut conf = None;
    let opened = poll(std::time::Duration::from_secs(30), || {
        use std::os::unix::fs::OpenOptionsExt;
        conf = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(0o4000)
            .open(&fifo)
            .ok();
        conf.is_some() || child.try_wait().ok().flatten().is_some()
    });
    let mut conf = conf.unwrap_or_else(|| {
        panic!("the provisioning never read its PKCS#11 configuration (opened: {opened})")
    });
    let store = rusqlite::Connection::open(bed.data().join("pkid.db")).expect("store");
    store
        .execute_batch("BEGIN IMMEDIATE")
        .expect("the store's write lock");
    write!(
        conf,
        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
        tokens.display()
    )
    .expect("write the configuration");
    drop(conf);
    // The key pair on the token: two more objects beside token.object.
    let objects_on_disk = || {
        std::fs::read_dir(&slot_dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".object"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(
        poll(std::time::Duration::from_secs(20), || objects_on_disk()
            >= 3),
        "the key pair was generated on the token"
    );
    // Then the request is signed and the issuance waits for the lock: SQLite's busy handler
    // sleeps between attempts (up to the store's busy timeout, 5 s). Pull the token out once the
    // process sleeps there, then let the issuance go on.
    assert!(
        poll(std::time::Duration::from_secs(4), || sleeping(child.id())),
        "the provisioning waits for the store's lock"
    );
    let pulled = token.dir.path().join("pulled-out");
    std::fs::rename(&slot_dir, &pulled).expect("pull the token out");
    store.execute_batch("ROLLBACK").expect("release the lock");
    drop(store);
    let out = child.wait_with_output().expect("provision ends");
    let stderr = lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        !lossy(&out.stdout).contains("PIN:"),
        "no PIN for an unfinished device"
    );

    // Nothing recorded, the request still approved, any certificate issued for it revoked.
    let list = token_cli(&token, &["list"]);
    assert!(
        !lossy(&list.stdout).contains(&format!("\"request\": {request},")),
        "{}",
        lossy(&list.stdout)
    );
    let shown = bed.get(&format!("/api/v1/requests/{request}"), &desk.ra);
    assert_eq!(shown.json["state"], "approved", "{shown}");
    assert!(stderr.contains("writing the certificates"), "{stderr}");
    let issued = certificates_of(name);
    assert_eq!(issued.len(), 1, "the certificate was issued: {issued:?}");
    assert_eq!(issued[0].1, "revoked", "and withdrawn: {issued:?}");
    let record = bed.cli(&["cert", "show", "--serial", &issued[0].0]);
    assert!(record.contains("cessationOfOperation"), "{record}");
    let audit = bed.cli(&["audit", "list", "--limit", "100000"]);
    assert!(
        audit.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(2) == Some(&"device.provision")
                && f.get(3) == Some(&id.as_str())
                && f.get(4) == Some(&"failed")
        }),
        "the failed provisioning is audited"
    );

    // Plugged in again, the same command provisions it (it still has the blank SO PIN).
    std::fs::rename(&pulled, &slot_dir).expect("plug the token in again");
    let (device, pin) = provision(&token, label, request);
    assert_eq!(device["state"], "provisioned");
    assert!(objects(&token, label, &pin).contains("Private Key Object"));
    let valid: Vec<_> = certificates_of(name)
        .into_iter()
        .filter(|(_, s)| s == "valid")
        .collect();
    assert_eq!(valid.len(), 1, "{valid:?}");
    assert_eq!(
        canonical_serial(&valid[0].0),
        canonical_serial(device["certificate"].as_str().expect("cert"))
    );
}
