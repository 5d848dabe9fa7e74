//! Key health end to end: readiness follows whether every key the daemon uses can sign, with
//! software keys and with a SoftHSM2 token; the services answer "try later" while a key is
//! unusable and recover when it is back; `/readyz` never shows internals; a library that is not
//! a PKCS#11 module, loose key permissions and an unreadable data directory are clear errors.

mod common;

use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// How long a test waits for readiness to change: the probe is cached for a few seconds.
const READINESS_CHANGE: Duration = Duration::from_secs(30);
const LABEL: &str = "pkid-health";
const USER_PIN: &str = "health-user-pin-2718";
const SO_PIN: &str = "health-so-pin-3141";

fn ready(d: &Daemon) -> Reply {
    get(&d.http_url("/readyz"))
}

/// An OCSP request (no nonce, so the answer may come from the cache) for a never-issued
/// serial; `serial` varies it so each call is signed afresh.
fn ocsp_request(data: &Path, serial: u32) -> PathBuf {
    let req = unique_path(data, "req", "der");
    let out = openssl(&[
        "ocsp",
        "-issuer",
        path_str(&data.join("certs/issuing.crt")),
        "-serial",
        &format!("0x{serial:x}"),
        "-no_nonce",
        "-reqout",
        path_str(&req),
    ]);
    assert_success(&out, "openssl ocsp -reqout");
    req
}

/// The `OCSPResponseStatus` (RFC 6960 §4.2.1) the daemon answers `req` with.
fn ocsp_status(d: &Daemon, req: &Path) -> u8 {
    let reply = fetch(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/ocsp-request",
        "--data-binary",
        &format!("@{}", path_str(req)),
        &d.http_url("/ocsp"),
    ]);
    assert_eq!(reply.status, 200, "{reply:?}");
    // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, ... }: 30 len 0a 01 status.
    let b = &reply.body;
    let at = if b.get(1).is_some_and(|l| l & 0x80 != 0) {
        2 + usize::from(b[1] & 0x7f)
    } else {
        2
    };
    assert_eq!(b.get(at..at + 2), Some(&[0x0a, 0x01][..]), "{b:02x?}");
    b[at + 2]
}

const SUCCESSFUL: u8 = 0;
const TRY_LATER: u8 = 3;

/// POSTs an `openssl ts -query` to `/tsa`; returns the PKIStatus (0 granted, 2 rejection).
fn timestamp_status(d: &Daemon, work: &Path) -> u8 {
    let data = work.join("hello.txt");
    std::fs::write(&data, b"hello").expect("data");
    let tsq = unique_path(work, "q", "tsq");
    assert_success(
        &openssl(&[
            "ts",
            "-query",
            "-data",
            path_str(&data),
            "-sha256",
            "-cert",
            "-out",
            path_str(&tsq),
        ]),
        "openssl ts -query",
    );
    let reply = fetch(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/timestamp-query",
        "--data-binary",
        &format!("@{}", path_str(&tsq)),
        &d.http_url("/tsa"),
    ]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let tsr = unique_path(work, "r", "tsr");
    std::fs::write(&tsr, &reply.body).expect("tsr");
    let text = lossy(&openssl(&["ts", "-reply", "-in", path_str(&tsr), "-text"]).stdout);
    if text.contains("Status: Granted") {
        0
    } else if text.contains("Status: Rejected") {
        2
    } else {
        panic!("unexpected TSA answer:\n{text}")
    }
}

/// The readiness body must be short and name no path, file, token or PKCS#11 function.
fn assert_discreet(reply: &Reply, data: &Path) {
    let body = reply.text();
    assert!(body.len() < 80, "{body:?}");
    for secret in [path_str(data), "keys/", ".p8", "C_", "token", LABEL] {
        assert!(!body.contains(secret), "{body:?} discloses {secret:?}");
    }
}

#[test]
fn software_keys_moved_away_make_the_daemon_unready_and_the_services_answer_try_later() {
    let dir = init(&[]);
    let data = dir.path();
    let work = tempdir();
    let d = Daemon::start(data);
    assert_eq!(ready(&d).status, 200);
    assert_eq!(timestamp_status(&d, work.path()), 0);
    assert_eq!(ocsp_status(&d, &ocsp_request(data, 1)), SUCCESSFUL);

    let away = data.join("keys.away");
    std::fs::rename(data.join("keys"), &away).expect("mv keys away");
    assert!(
        poll(READINESS_CHANGE, || ready(&d).status == 503),
        "/readyz stayed {:?}",
        ready(&d)
    );
    assert_discreet(&ready(&d), data);
    // One rule: the key cannot be read, so nothing is signed with it (each signer re-checks
    // its file at most every second, hence the poll).
    assert!(
        poll(READINESS_CHANGE, || timestamp_status(&d, work.path()) == 2),
        "the TSA kept issuing"
    );
    let mut serial = 100;
    assert!(
        poll(READINESS_CHANGE, || {
            serial += 1;
            ocsp_status(&d, &ocsp_request(data, serial)) == TRY_LATER
        }),
        "OCSP kept signing"
    );
    assert!(
        d.logs().contains("keys.away") || d.logs().contains("/keys"),
        "the detail is logged for the operator:\n{}",
        d.logs()
    );

    std::fs::rename(&away, data.join("keys")).expect("mv keys back");
    assert!(
        poll(READINESS_CHANGE, || ready(&d).status == 200),
        "{:?}",
        ready(&d)
    );
    assert_eq!(timestamp_status(&d, work.path()), 0);
    assert_eq!(ocsp_status(&d, &ocsp_request(data, 3)), SUCCESSFUL);
}

#[test]
fn a_group_or_world_readable_key_is_refused_with_one_clear_line() {
    let dir = init(&[]);
    let data = dir.path();
    let keys = ["root", "issuing", "ocsp", "tsa"].map(|r| data.join(format!("keys/{r}.p8")));
    for key in &keys {
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let (_, csr) = make_csr(data, "/CN=loose", "ec:P-256");
    let (code, _, stderr) = pkid_fails(
        data,
        &[
            "cert",
            "issue",
            "--csr",
            path_str(&csr),
            "--profile",
            "tls-client",
        ],
    );
    assert_ne!(code, 0);
    let line = one_error_line(&stderr);
    assert!(
        line.contains(".p8") && line.contains("0644") && line.contains("chmod 600"),
        "{line}"
    );
    // Put right, it works again.
    for key in &keys {
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    issue(data, &csr, "tls-client", &[]);
}

/// The effective user id of this process (`/proc/self` belongs to it).
fn euid() -> u32 {
    std::fs::metadata("/proc/self").expect("/proc/self").uid()
}

#[test]
fn a_data_directory_owned_by_another_user_is_warned_about() {
    if euid() != 0 {
        println!("skipped: only root can give the data directory to another user");
        return;
    }
    let dir = init(&[]);
    let data = dir.path();
    const NOBODY: u32 = 65534;
    std::os::unix::fs::chown(data, Some(NOBODY), None).expect("chown");
    let out = pkid(data, &["cert", "list"]);
    assert_success(&out, "pkid cert list");
    let stderr = lossy(&out.stderr);
    assert!(
        stderr.contains("owned by uid 65534") && stderr.contains("running as uid 0"),
        "{stderr}"
    );
}

#[test]
fn an_unreadable_data_directory_is_not_reported_as_uninitialised() {
    let dir = init(&[]);
    let data = dir.path();
    let (code, _, stderr) = if euid() == 0 {
        // Root reads a mode-000 directory, so the same code path is reached with a path that
        // cannot be looked at for another reason: its parent is a file.
        println!("running as root: a path under a file stands in for a mode-000 directory");
        let file = data.join("a-file");
        std::fs::write(&file, b"").expect("file");
        pkid_fails(&file.join("data"), &["cert", "list"])
    } else {
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        let r = pkid_fails(data, &["cert", "list"]);
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        r
    };
    assert_ne!(code, 0);
    let line = one_error_line(&stderr);
    assert!(!line.contains("not initialised"), "{line}");
    assert!(line.contains("cannot read"), "{line}");
}

#[test]
fn serve_does_not_initialise_over_a_directory_it_cannot_read() {
    let dir = tempdir();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").expect("file");
    let data = file.join("data");
    let out = pkid_command(&data)
        .args(["serve", "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
        .output()
        .expect("pkid serve");
    let stderr = lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("initialising"), "{stderr}");
    assert!(one_error_line(&stderr).contains("cannot read"), "{stderr}");
}

/// A library that is not a PKCS#11 module (it lacks `C_GetFunctionList`).
fn not_a_module() -> Option<&'static str> {
    [
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/aarch64-linux-gnu/libz.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

fn pkcs11_init(token: &SoftHsmToken, data: &Path, module: &str) -> Output {
    let pin = token.pin_file(USER_PIN);
    pkid_env(
        data,
        &[
            "init",
            "--key-backend",
            "pkcs11",
            "--pkcs11-module",
            module,
            "--token-label",
            LABEL,
            "--pin-file",
            path_str(&pin),
        ],
        &token.env(),
    )
}

#[test]
fn a_library_that_is_not_a_pkcs11_module_is_one_clear_error_and_leaves_nothing() {
    let Some(libz) = not_a_module() else {
        println!("skipped: no libz.so.1 on this machine to stand in for a non-module");
        return;
    };
    let token = SoftHsmToken::new(LABEL, USER_PIN, SO_PIN);
    let dir = tempdir();
    let data = dir.path().join("d");
    let out = pkcs11_init(&token, &data, libz);
    let stderr = lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "a panic: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let line = one_error_line(&stderr);
    assert!(
        line.contains(libz) && line.contains("not a PKCS#11 module"),
        "{line}"
    );
    assert!(!data.join("pkid.toml").exists(), "a retry would inherit it");
    // The corrected retry uses the new flag.
    assert_success(&pkcs11_init(&token, &data, SOFTHSM_MODULE), "retry");
}

/// The SoftHSM2 directory holding the one token of `token`.
fn token_object_dir(token: &SoftHsmToken) -> PathBuf {
    let tokens = token.dir.path().join("tokens");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&tokens)
        .expect("tokens/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.remove(0)
}

fn pkcs11_daemon() -> (SoftHsmToken, tempfile::TempDir, Daemon) {
    let token = SoftHsmToken::new(LABEL, USER_PIN, SO_PIN);
    let dir = tempdir();
    assert_success(&pkcs11_init(&token, dir.path(), SOFTHSM_MODULE), "init");
    let d = Daemon::start_env(dir.path(), &[], &token.env());
    assert_eq!(ready(&d).status, 200, "{}", d.logs());
    (token, dir, d)
}

#[test]
fn hsm_private_keys_removed_make_the_daemon_unready_and_ocsp_answer_try_later() {
    let (token, dir, d) = pkcs11_daemon();
    let data = dir.path();
    assert_eq!(ocsp_status(&d, &ocsp_request(data, 1)), SUCCESSFUL);
    for label in ["pkid-ocsp", "pkid-tsa"] {
        let out = token.user_tool(
            LABEL,
            USER_PIN,
            &["--delete-object", "--type", "privkey", "--label", label],
        );
        assert_success(&out, "pkcs11-tool --delete-object");
    }
    assert!(
        poll(READINESS_CHANGE, || ready(&d).status == 503),
        "/readyz stayed {:?}",
        ready(&d)
    );
    assert_discreet(&ready(&d), data);
    assert_eq!(ocsp_status(&d, &ocsp_request(data, 2)), TRY_LATER);
    let metrics = get(&d.http_url("/metrics")).text();
    let unavailable = metric_value(
        &metrics,
        "pkid_signer_operations_total{outcome=\"unavailable\",role=\"ocsp\"}",
    );
    assert!(unavailable.is_some_and(|n| n >= 1.0), "{metrics}");
    assert_eq!(
        metric_value(&metrics, "pkid_ready{part=\"keys\"}"),
        Some(0.0),
        "{metrics}"
    );
    assert!(!d.logs().contains(USER_PIN));
}

#[test]
fn hsm_token_moved_away_and_back_is_recovered() {
    let (token, dir, d) = pkcs11_daemon();
    let data = dir.path();
    let work = tempdir();
    assert_eq!(timestamp_status(&d, work.path()), 0);
    let objects = token_object_dir(&token);
    let away = token.dir.path().join("away");
    std::fs::rename(&objects, &away).expect("mv token away");
    assert!(
        poll(READINESS_CHANGE, || ready(&d).status == 503),
        "/readyz stayed {:?}",
        ready(&d)
    );
    assert_discreet(&ready(&d), data);
    std::fs::rename(&away, &objects).expect("mv token back");
    assert!(
        poll(READINESS_CHANGE, || ready(&d).status == 200),
        "never recovered: {:?}\n{}",
        ready(&d),
        d.logs()
    );
    assert_eq!(ocsp_status(&d, &ocsp_request(data, 7)), SUCCESSFUL);
    assert_eq!(timestamp_status(&d, work.path()), 0);
    assert!(
        d.logs().contains("PKCS#11 module re-initialised"),
        "{}",
        d.logs()
    );
}
