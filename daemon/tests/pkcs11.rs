//! End to end with a real PKCS#11 token (SoftHSM2): `pkid init --key-backend pkcs11` generates
//! the CA keys inside the token, where they stay non-extractable; issuance and the daemon sign
//! through it; misconfiguration (wrong PIN, missing module, unknown token) fails with one clear
//! line that never shows the PIN.
//!
//! Each test gets its own token directory and `SOFTHSM2_CONF`, passed to the child processes
//! only (tests run in parallel; the system token directory is never touched).

mod common;

use common::*;
use std::path::Path;
use std::process::Output;

/// The token label every test initialises (in its own token directory).
const LABEL: &str = "pkid-e2e";
/// Distinctive PINs, so that "the PIN does not appear in the output" is a meaningful check.
const USER_PIN: &str = "e2e-user-pin-4711";
const WRONG_PIN: &str = "wrong-pin-97531";
const SO_PIN: &str = "e2e-so-pin-1357";
/// The CA roles whose keys live in the token, and their CKA_LABELs.
const TOKEN_KEYS: [&str; 4] = ["pkid-root", "pkid-issuing", "pkid-ocsp", "pkid-tsa"];

type Token = SoftHsmToken;

/// A fresh token labelled [`LABEL`] with this file's PINs.
fn new_token() -> Token {
    SoftHsmToken::new(LABEL, USER_PIN, SO_PIN)
}

/// `pkcs11-tool --list-objects` as the user.
fn objects(token: &Token) -> String {
    let out = token.user_tool(LABEL, USER_PIN, &["--list-objects"]);
    assert_success(&out, "pkcs11-tool --list-objects");
    lossy(&out.stdout)
}

/// `pkid init --key-backend pkcs11 …` with this token's module, label and the given PIN file.
fn init_args(pin_file: &Path) -> Vec<String> {
    [
        "init",
        "--key-backend",
        "pkcs11",
        "--pkcs11-module",
        SOFTHSM_MODULE,
        "--token-label",
        LABEL,
        "--pin-file",
        path_str(pin_file),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs the CLI on `data` with the token's environment.
fn pkid_with(token: &Token, data: &Path, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pkid_env(data, &args, &token.env())
}

/// `pkid cert issue --csr CSR --profile PROFILE` with the token's environment.
fn issue_with(token: &Token, data: &Path, csr: &Path, profile: &str) -> Output {
    pkid_with(
        token,
        data,
        &[
            "cert",
            "issue",
            "--csr",
            path_str(csr),
            "--profile",
            profile,
        ]
        .map(String::from),
    )
}

/// The object blocks of `pkcs11-tool --list-objects` (each starts at a non-indented line).
fn object_blocks(listing: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in listing.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    blocks
}

/// Asserts a failed command printed one clear error line containing `needle`, no panic and no
/// PIN anywhere; returns the line.
fn assert_clean_failure(out: &Output, needle: &str) -> String {
    let (stdout, stderr) = (lossy(&out.stdout), lossy(&out.stderr));
    assert!(
        !out.status.success(),
        "should fail\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for pin in [USER_PIN, WRONG_PIN, SO_PIN] {
        assert!(
            !stderr.contains(pin) && !stdout.contains(pin),
            "the PIN leaked:\nstdout: {stdout}\nstderr: {stderr}"
        );
    }
    assert!(!stdout.contains("BEGIN CERTIFICATE"), "{stdout}");
    let line = one_error_line(&stderr).to_string();
    assert!(line.contains(needle), "{line:?} should mention {needle:?}");
    line
}

#[test]
fn hsm_backed_ca_keeps_keys_in_the_token_issues_and_serves() {
    let token = new_token();
    let dir = tempdir();
    let data = dir.path();
    let pin = token.pin_file(USER_PIN);
    let out = pkid_with(&token, data, &init_args(&pin));
    assert_success(&out, "pkid init --key-backend pkcs11");
    assert!(!lossy(&out.stdout).contains(USER_PIN) && !lossy(&out.stderr).contains(USER_PIN));

    for role in ["ocsp", "tsa", "tls"] {
        assert_verifies(data, &data.join(format!("certs/{role}.crt")), &[]);
    }
    // Only the HTTPS key is a file; the CA keys are in the token.
    let mut key_files: Vec<String> = std::fs::read_dir(data.join("keys"))
        .expect("keys/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    key_files.sort();
    assert_eq!(key_files, ["tls.p8"]);

    let blocks = object_blocks(&objects(&token));
    for label in TOKEN_KEYS {
        let private: Vec<&String> = blocks
            .iter()
            .filter(|b| {
                b.starts_with("Private Key Object")
                    && b.lines()
                        .any(|l| l.trim() == format!("label:      {label}"))
            })
            .collect();
        assert_eq!(
            private.len(),
            1,
            "one private key labelled {label}:\n{blocks:#?}"
        );
        let access = private[0]
            .lines()
            .find(|l| l.trim_start().starts_with("Access:"))
            .unwrap_or_else(|| panic!("{}", private[0]));
        assert!(access.contains("never extractable"), "{label}: {access}");
        assert!(access.contains("sensitive"), "{label}: {access}");
        assert!(
            access.contains("local"),
            "{label} was generated in the token: {access}"
        );
    }
    // Each token key is the one its certificate certifies: the issuing CA signed the OCSP
    // certificate above, and it signs subscriber certificates below.
    let (_, csr) = make_csr(
        data,
        "/C=VN/O=Ban Cơ yếu Chính phủ/CN=Nguyễn Văn Ánh",
        "ec:P-256",
    );
    let out = issue_with(&token, data, &csr, "organization");
    assert_success(&out, "pkid cert issue with the token");
    let (serial, cert) = save_pem(data, &lossy(&out.stdout));
    assert_verifies(data, &cert, &["-purpose", "smimesign"]);

    // The daemon opens the token, reports ready, and serves what the token signed.
    let daemon = Daemon::start_env(data, &[], &token.env());
    // "pkid serving" is logged just after the listeners report ready: poll for it.
    assert!(
        daemon.wait_for_log(&format!("keys=pkcs11:{LABEL}"), 1, STARTUP_TIMEOUT),
        "{}",
        daemon.logs()
    );
    let ready = get(&daemon.http_url("/readyz"));
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(
        get(&daemon.http_url(&format!("/certs/{serial}.pem"))).body,
        read(&cert)
    );
    // The issuing CA's CRL, signed by the token over the digest pkid computed
    // (`Signer::sign_digest` with CKM_ECDSA), verifies against the issuing certificate.
    let crl = get(&daemon.http_url("/crl/issuing.pem"));
    assert_eq!(crl.status, 200, "{}", crl.text());
    let crl_file = data.join("issuing-crl.pem");
    std::fs::write(&crl_file, &crl.body).expect("write CRL");
    assert_crl_signed_by(&crl_file, &data.join("certs/issuing.crt"));
    // The CLI signs with the token while the daemon holds its sessions.
    let (_, csr2) = make_csr(data, "/CN=second", "ec:P-256");
    let out = issue_with(&token, data, &csr2, "tls-client");
    assert_success(&out, "second issue while serving");
    let (serial2, cert2) = save_pem(data, &lossy(&out.stdout));
    assert_verifies(data, &cert2, &[]);
    assert_eq!(
        get(&daemon.http_url(&format!("/certs/{serial2}"))).status,
        200
    );
    assert!(!daemon.logs().contains(USER_PIN));
}

#[test]
fn hsm_wrong_pin_fails_cleanly_and_a_corrected_retry_succeeds() {
    let token = new_token();
    let dir = tempdir();
    let data = dir.path();
    let wrong = token.pin_file(WRONG_PIN);
    let out = pkid_with(&token, data, &init_args(&wrong));
    assert_clean_failure(&out, "wrong PIN");
    assert!(
        !data.join("certs/issuing.crt").exists() && !data.join("pkid.db").exists(),
        "a failed init must not look initialised"
    );
    // Nothing was generated in the token.
    assert!(
        !object_blocks(&objects(&token))
            .iter()
            .any(|b| b.contains("pkid-")),
        "keys left in the token"
    );

    // The operator fixes the PIN file name on the command line and runs init again.
    let right = token.pin_file(USER_PIN);
    let out = pkid_with(&token, data, &init_args(&right));
    assert_success(&out, "init after a wrong PIN");
    assert_verifies(data, &data.join("certs/tsa.crt"), &[]);

    // Later, a wrong PIN in the configuration stops `serve` and `cert issue` just as clearly.
    let config = std::fs::read_to_string(data.join("pkid.toml")).expect("config");
    let broken = config.replace(path_str(&right), path_str(&wrong));
    assert_ne!(broken, config, "pin_file is in the configuration");
    std::fs::write(data.join("pkid.toml"), broken).expect("write");
    let (_, csr) = make_csr(data, "/CN=x", "ec:P-256");
    let out = issue_with(&token, data, &csr, "tls-client");
    assert_clean_failure(&out, "wrong PIN");
    let out = pkid_with(
        &token,
        data,
        &["serve", "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"].map(String::from),
    );
    let stderr = lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains(WRONG_PIN) && !stderr.contains(USER_PIN),
        "{stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("pkid: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("wrong PIN"), "{stderr}");
}

#[test]
fn hsm_missing_module_is_a_clear_error() {
    let token = new_token();
    let dir = tempdir();
    let pin = token.pin_file(USER_PIN);
    let mut args = init_args(&pin);
    let missing = "/nonexistent/libpkid-e2e-missing-module.so";
    args[4] = missing.to_string();
    let out = pkid_with(&token, dir.path(), &args);
    let line = assert_clean_failure(&out, missing);
    assert!(line.contains("not found"), "{line}");
    assert!(
        !dir.path().join("pkid.toml").exists(),
        "a retry must not inherit the wrong module path"
    );
}

#[test]
fn hsm_unknown_token_label_is_a_clear_error() {
    let token = new_token();
    let dir = tempdir();
    let pin = token.pin_file(USER_PIN);
    let mut args = init_args(&pin);
    args[6] = "no-such-token".to_string();
    let out = pkid_with(&token, dir.path(), &args);
    let line = assert_clean_failure(&out, "\"no-such-token\"");
    assert!(line.contains("no PKCS#11 token labelled"), "{line}");
}

#[test]
fn serverkeygen_makes_the_subscriber_key_in_the_token_and_leaves_none_there() {
    // EST serverkeygen on an HSM-backed CA: the key pair comes from the token's generator (a
    // session object marked extractable, read out as PKCS#8 and destroyed), so the CA keys
    // are the only keys the token holds afterwards.
    let token = new_token();
    let dir = tempdir();
    let data = dir.path();
    let pin = token.pin_file(USER_PIN);
    assert_success(&pkid_with(&token, data, &init_args(&pin)), "pkid init");
    let mut conf = std::fs::read_to_string(data.join("pkid.toml")).expect("pkid.toml");
    conf.push_str(
        "\n[[est.labels]]\nname = \"may-chu\"\nprofile = \"tls-client\"\norganisation = \"so-tttt\"\n",
    );
    std::fs::write(data.join("pkid.toml"), conf).expect("pkid.toml");
    let env = token.env();
    let run = |args: &[&str]| {
        let out = pkid_env(data, args, &env);
        assert_success(&out, &args.join(" "));
        lossy(&out.stdout)
    };
    run(&[
        "org",
        "add",
        "--id",
        "so-tttt",
        "--name",
        "Sở Thông tin và Truyền thông",
        "--province",
        "DN",
    ]);
    let password = run(&[
        "credential",
        "add",
        "--org",
        "so-tttt",
        "--kind",
        "est",
        "--name",
        "may-chu-01",
    ])
    .lines()
    .last()
    .expect("the password line")
    .to_owned();
    let daemon = Daemon::start_env(data, &[], &env);
    assert!(
        daemon.wait_for_log(&format!("keys=pkcs11:{LABEL}"), 1, STARTUP_TIMEOUT),
        "{}",
        daemon.logs()
    );

    let body = est_csr_body(data, "/CN=may-chu-van-ban.sotttt.gov.vn");
    let root = data.join("certs/root.crt");
    let user = format!("may-chu-01:{password}");
    let reply = est_post_basic(
        &daemon,
        &root,
        &user,
        "/.well-known/est/may-chu/serverkeygen",
        &body,
    );
    let parts = multipart_parts(&reply);
    assert_eq!(parts.len(), 2, "{}", reply.text());
    assert_eq!(parts[0].0, "application/pkcs8");
    let key = unique_path(data, "server", "der");
    std::fs::write(&key, &parts[0].1).expect("key");
    let (_, cert) = only_certificate_of(data, &parts[1].1);
    assert_eq!(
        openssl_ok(&["pkey", "-inform", "DER", "-in", path_str(&key), "-pubout"]),
        public_key_of_cert(&cert),
        "the key is the certificate's"
    );
    assert_verifies(data, &cert, &[]);
    assert!(
        daemon.wait_for_log(
            "generated a subscriber key pair in the PKCS#11 token for export",
            1,
            STARTUP_TIMEOUT
        ),
        "made by the token: {}",
        daemon.logs()
    );
    // The token holds the CA's keys (and the CMP responder's) and nothing else: every private
    // key in it is one of pkid's own, never extractable.
    let blocks = object_blocks(&objects(&token));
    let private: Vec<&String> = blocks
        .iter()
        .filter(|b| b.starts_with("Private Key Object"))
        .collect();
    assert_eq!(private.len(), TOKEN_KEYS.len() + 1, "{blocks:#?}");
    for b in private {
        assert!(
            b.contains("never extractable") && b.contains("label:      pkid-"),
            "{b}"
        );
    }
    assert!(!daemon.logs().contains(&password) && !daemon.logs().contains(USER_PIN));
}
