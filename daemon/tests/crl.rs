//! End-to-end CRL tests: the real daemon and CLI, checked with `openssl crl` and
//! `openssl verify` (INTEROP.md "CRLs and chains") and curl.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a revocation may take to reach the served CRL: change follower (250 ms), debounce
/// (100 ms in these tests), generation — with a wide margin for a loaded CI machine.
const PROPAGATION: Duration = Duration::from_secs(20);

/// A data directory initialised with `[crl]` settings (a `pkid.toml` written before init is
/// used as it is).
fn init_with(crl: &str) -> tempfile::TempDir {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("pkid.toml"),
        format!("[crl]\ndebounce_ms = 100\n{crl}"),
    )
    .expect("config");
    pkid_ok(dir.path(), &["init"]);
    dir
}

/// Issues a `person` certificate for `cn`; returns (serial, PEM path).
fn person(data: &Path, cn: &str) -> (String, PathBuf) {
    let (_, csr) = make_csr(data, &format!("/O=Org/CN={cn}"), "ec:P-256");
    issue(data, &csr, "person", &[])
}

/// Downloads a CRL (DER) and converts it to PEM with openssl; returns the PEM path.
fn fetch_crl(daemon: &Daemon, dir: &Path, path: &str) -> PathBuf {
    let reply = get(&daemon.http_url(path));
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
    assert!(
        reply
            .headers
            .contains("\"content-type\":[\"application/pkix-crl\"]"),
        "{}",
        reply.headers
    );
    let der = unique_path(dir, "crl", "der");
    std::fs::write(&der, &reply.body).expect("write");
    let pem = unique_path(dir, "crl", "pem");
    openssl_ok(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        path_str(&der),
        "-out",
        path_str(&pem),
    ]);
    pem
}

/// `openssl crl -text` of a PEM CRL.
fn crl_text(pem: &Path) -> String {
    openssl_ok(&["crl", "-in", path_str(pem), "-noout", "-text"])
}

/// The CRL number openssl prints.
fn crl_number(pem: &Path) -> u64 {
    let text = crl_text(pem);
    let after = text
        .split("X509v3 CRL Number:")
        .nth(1)
        .unwrap_or_else(|| panic!("no CRL number in {text}"));
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable CRL number in {text}"))
}

/// Waits until the CRL at `path` lists `serial` (as openssl prints it, upper-case hex).
fn wait_listed(daemon: &Daemon, dir: &Path, path: &str, serial: &str) -> PathBuf {
    let needle = format!("Serial Number: {}", serial.to_uppercase());
    let mut last = None;
    let found = poll(PROPAGATION, || {
        let pem = fetch_crl(daemon, dir, path);
        let hit = crl_text(&pem).contains(&needle);
        last = Some(pem);
        hit
    });
    let pem = last.expect("fetched");
    assert!(
        found,
        "{serial} never appeared on {path}:\n{}",
        crl_text(&pem)
    );
    pem
}

/// `openssl verify -crl_check …`; returns (exit code, stdout+stderr).
fn verify_with_crls(data: &Path, cert: &Path, opts: &[&str], crls: &[&Path]) -> (i32, String) {
    let mut args: Vec<&str> = opts.to_vec();
    for c in crls {
        args.push("-CRLfile");
        args.push(path_str(c));
    }
    let out = verify_chain(data, cert, &args);
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", lossy(&out.stdout), lossy(&out.stderr)),
    )
}

#[test]
fn served_crls_verify_and_openssl_refuses_a_revoked_certificate() {
    let dir = init_with("");
    let data = dir.path();
    let daemon = Daemon::start(data);
    let (_, good) = person(data, "good");
    let (bad_serial, bad) = person(data, "bad");

    // Both CAs publish from the start; each CRL is signed by its CA.
    let root_crl = fetch_crl(&daemon, data, "/crl/root.crl");
    assert_crl_signed_by(&root_crl, &data.join("certs/root.crt"));
    let first = fetch_crl(&daemon, data, "/crl/issuing.crl");
    assert_crl_signed_by(&first, &data.join("certs/issuing.crt"));
    let n0 = crl_number(&first);

    // A revocation made by the CLI (another process) reaches the daemon's CRL.
    pkid_ok(
        data,
        &[
            "cert",
            "revoke",
            "--serial",
            &bad_serial,
            "--reason",
            "keyCompromise",
        ],
    );
    let crl = wait_listed(&daemon, data, "/crl/issuing.crl", &bad_serial);
    assert!(crl_number(&crl) > n0);
    assert_crl_signed_by(&crl, &data.join("certs/issuing.crt"));
    assert!(crl_text(&crl).contains("Key Compromise"));

    let (code, out) = verify_with_crls(data, &good, &["-crl_check"], &[&crl]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify_with_crls(data, &bad, &["-crl_check"], &[&crl]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("error 23") && out.contains("certificate revoked"),
        "{out}"
    );
    // The whole chain, with the root's CRL covering the issuing CA.
    let (code, out) = verify_with_crls(data, &good, &["-crl_check_all"], &[&crl, &root_crl]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify_with_crls(data, &bad, &["-crl_check_all"], &[&crl, &root_crl]);
    assert!(code == 2 && out.contains("error 23"), "{out}");
    // Without the root's CRL the chain check cannot complete.
    let (code, out) = verify_with_crls(data, &good, &["-crl_check_all"], &[&crl]);
    assert!(
        code != 0 && out.contains("unable to get certificate CRL"),
        "{out}"
    );
}

#[test]
fn http_caching_pem_and_bad_paths() {
    let dir = init_with("");
    let data = dir.path();
    let daemon = Daemon::start(data);
    let url = daemon.http_url("/crl/issuing.crl");
    let reply = get(&url);
    assert_eq!(reply.status, 200);
    for h in ["etag", "last-modified", "expires", "cache-control"] {
        assert!(reply.has_header(h), "{h}: {}", reply.headers);
    }
    assert!(
        reply.headers.contains("public, max-age="),
        "{}",
        reply.headers
    );
    let etag = reply
        .headers
        .split("\"etag\":[\"")
        .nth(1)
        .and_then(|r| r.split("\"]").next())
        .expect("etag")
        .replace("\\\"", "\"");
    let again = fetch(&["-H", &format!("If-None-Match: {etag}"), &url]);
    assert_eq!(again.status, 304, "{}", again.headers);
    assert!(again.body.is_empty());
    let lm = reply
        .headers
        .split("\"last-modified\":[\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("last-modified")
        .to_string();
    // Strictly later only: a CRL re-signed in the second of Last-Modified must still be sent.
    assert_eq!(
        fetch(&["-H", &format!("If-Modified-Since: {lm}"), &url]).status,
        200
    );
    let later = httpdate::parse_http_date(&lm).expect("http date") + Duration::from_secs(1);
    let later = httpdate::fmt_http_date(later);
    assert_eq!(
        fetch(&["-H", &format!("If-Modified-Since: {later}"), &url]).status,
        304
    );
    assert_eq!(fetch(&["-I", &url]).status, 200);

    // PEM by suffix or by Accept.
    for pem in [
        get(&daemon.http_url("/crl/issuing.pem")),
        fetch(&["-H", "Accept: application/x-pem-file", &url]),
    ] {
        assert_eq!(pem.status, 200);
        assert!(
            pem.text().starts_with("-----BEGIN X509 CRL-----"),
            "{}",
            pem.text()
        );
        let path = unique_path(data, "crl", "pem");
        std::fs::write(&path, &pem.body).expect("write");
        assert_crl_signed_by(&path, &data.join("certs/issuing.crt"));
    }

    // Unknown issuer, partition (partitioning is off), kind (deltas are off) or file name.
    for path in [
        "/crl/nobody.crl",
        "/crl/nobody-delta.crl",
        "/crl/issuing/0.crl",
        "/crl/root/0.crl",
        "/crl/issuing-delta.crl",
        "/crl/issuing.der",
        "/crl/issuing/01.crl",
        "/crl/",
        "/crl/../ca/root.crt",
    ] {
        let r = fetch(&["--path-as-is", &daemon.http_url(path)]);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
    assert_eq!(fetch(&["-X", "POST", &url]).status, 405);
}

#[test]
fn delta_crls_are_merged_by_openssl_use_deltas() {
    let dir = init_with("deltas = true\n");
    let data = dir.path();
    let daemon = Daemon::start(data);
    let (serial, cert) = person(data, "suspended");
    let text = x509_text(&cert);
    assert!(
        text.contains("Freshest CRL") && text.contains("/crl/issuing-delta.crl"),
        "{text}"
    );
    let base = fetch_crl(&daemon, data, "/crl/issuing.crl");
    assert!(
        crl_text(&base).contains("/crl/issuing-delta.crl"),
        "the base points at its delta"
    );

    pkid_ok(data, &["cert", "hold", "--serial", &serial]);
    let delta = wait_listed(&daemon, data, "/crl/issuing-delta.crl", &serial);
    let dtext = crl_text(&delta);
    assert!(dtext.contains("Delta CRL Indicator: critical"), "{dtext}");
    assert!(dtext.contains("Certificate Hold"), "{dtext}");
    assert_crl_signed_by(&delta, &data.join("certs/issuing.crt"));
    // The complete CRL is re-signed on schedule only: still the old one.
    let base_now = fetch_crl(&daemon, data, "/crl/issuing.crl");
    assert_eq!(crl_number(&base_now), crl_number(&base));
    assert!(crl_number(&delta) > crl_number(&base));

    let (code, out) = verify_with_crls(data, &cert, &["-crl_check"], &[&base]);
    assert_eq!(code, 0, "the base alone does not know: {out}");
    let (code, out) = verify_with_crls(
        data,
        &cert,
        &["-crl_check", "-use_deltas"],
        &[&base, &delta],
    );
    assert!(code == 2 && out.contains("error 23"), "base + delta: {out}");

    // `pkid crl generate` makes a new base (and delta) that the running daemon picks up.
    let generated = pkid_ok(data, &["crl", "generate", "--issuer", "issuing"]);
    assert!(generated.contains("issuing-delta"), "{generated}");
    let after = fetch_crl(&daemon, data, "/crl/issuing.crl");
    let ok = poll(PROPAGATION, || {
        crl_text(&fetch_crl(&daemon, data, "/crl/issuing.crl"))
            .contains(&format!("Serial Number: {}", serial.to_uppercase()))
    });
    assert!(
        ok,
        "the daemon serves the CLI's new base:\n{}",
        crl_text(&after)
    );
}

#[test]
fn partitions_carry_matching_distribution_points() {
    // Certificates from before partitioning was switched on keep the issuer-wide CRL.
    let dir = init_with("");
    let data = dir.path();
    let (legacy_serial, legacy) = person(data, "legacy");
    let config = data.join("pkid.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("shards = 2\n");
    std::fs::write(&config, text).expect("config");
    let daemon = Daemon::start(data);
    // Serials are random: issue until both partitions are used.
    let mut by_shard: [Vec<(String, PathBuf)>; 2] = [Vec::new(), Vec::new()];
    for i in 0..40 {
        let (serial, cert) = person(data, &format!("p{i}"));
        let text = x509_text(&cert);
        let shard = (0..2)
            .find(|n| text.contains(&format!("/crl/issuing/{n}.crl")))
            .unwrap_or_else(|| panic!("no partition CDP in {text}"));
        by_shard[shard].push((serial, cert));
        if by_shard.iter().all(|s| !s.is_empty()) {
            break;
        }
    }
    assert!(
        by_shard.iter().all(|s| !s.is_empty()),
        "both partitions used"
    );
    let (victim_serial, victim) = by_shard[0][0].clone();
    let (_, other) = by_shard[1][0].clone();
    pkid_ok(data, &["cert", "revoke", "--serial", &victim_serial]);
    let crl0 = wait_listed(&daemon, data, "/crl/issuing/0.crl", &victim_serial);
    let crl1 = fetch_crl(&daemon, data, "/crl/issuing/1.crl");
    let t0 = crl_text(&crl0);
    assert!(
        t0.contains("Issuing Distribution Point: critical") && t0.contains("/crl/issuing/0.crl"),
        "{t0}"
    );
    assert!(!crl_text(&crl1).contains(&victim_serial.to_uppercase()));
    assert_crl_signed_by(&crl0, &data.join("certs/issuing.crt"));

    let (code, out) = verify_with_crls(data, &victim, &["-crl_check"], &[&crl0]);
    assert!(code == 2 && out.contains("error 23"), "{out}");
    let (code, out) = verify_with_crls(data, &other, &["-crl_check"], &[&crl1]);
    assert_eq!(code, 0, "{out}");
    // A partition's CRL does not cover another partition's certificate (IDP ≠ CDP).
    let (code, out) = verify_with_crls(data, &victim, &["-crl_check"], &[&crl1]);
    // OpenSSL 3.0 says "different CRL scope" (error 44) or, given other CRLs too, "unable to
    // get certificate CRL" (error 3).
    assert!(
        code != 0
            && (out.contains("different CRL scope")
                || out.contains("unable to get certificate CRL")),
        "{out}"
    );
    // The issuer-wide CRL now covers the certificates issued before partitioning, and says so
    // in its IDP (the same URL as their CDP).
    pkid_ok(data, &["cert", "revoke", "--serial", &legacy_serial]);
    let wide = wait_listed(&daemon, data, "/crl/issuing.crl", &legacy_serial);
    let wtext = crl_text(&wide);
    assert!(
        wtext.contains("Issuing Distribution Point: critical"),
        "{wtext}"
    );
    assert!(!wtext.contains(&victim_serial.to_uppercase()), "{wtext}");
    let (code, out) = verify_with_crls(data, &legacy, &["-crl_check"], &[&wide]);
    assert!(code == 2 && out.contains("error 23"), "{out}");
    let (code, out) =
        verify_with_crls(data, &data.join("certs/tsa.crt"), &["-crl_check"], &[&wide]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(get(&daemon.http_url("/crl/issuing/2.crl")).status, 404);

    let shown = pkid_ok(data, &["crl", "show", "--issuer", "issuing"]);
    for label in ["issuing ", "issuing/0 ", "issuing/1 "] {
        assert!(shown.contains(label), "{shown}");
    }
}

#[test]
fn crl_numbers_grow_across_restarts_and_concurrent_generators() {
    let dir = init_with("");
    let data = dir.path();
    let mut daemon = Daemon::start(data);
    let first = crl_number(&fetch_crl(&daemon, data, "/crl/issuing.crl"));

    // Four CLI generators race each other and the daemon; every CRL signed gets its own number.
    let (serial, _) = person(data, "churn");
    pkid_ok(data, &["cert", "hold", "--serial", &serial]);
    let data_buf = data.to_path_buf();
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let d = data_buf.clone();
            std::thread::spawn(move || pkid_ok(&d, &["crl", "generate", "--issuer", "issuing"]))
        })
        .collect();
    for r in racers {
        let out = r.join().expect("generator");
        assert!(out.contains("issuing "), "{out}");
    }
    assert!(
        daemon.wait_for_log("crl=issuing number=", 2, PROPAGATION),
        "{}",
        daemon.logs()
    );
    let audit = pkid_ok(data, &["audit", "list", "--limit", "1000"]);
    let mut numbers: Vec<u64> = audit
        .lines()
        .filter(|l| l.contains("crl.issue") && l.contains(" issuing ") && l.contains("success"))
        .filter_map(|l| {
            l.split("number=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(numbers.len() >= 5, "{audit}");
    numbers.sort_unstable();
    let all = numbers.len();
    numbers.dedup();
    assert_eq!(
        numbers.len(),
        all,
        "a CRL number was signed twice:\n{audit}"
    );
    let highest = *numbers.last().expect("numbers");
    let served = poll(PROPAGATION, || {
        crl_number(&fetch_crl(&daemon, data, "/crl/issuing.crl")) == highest
    });
    assert!(
        served,
        "the daemon serves the newest stored CRL ({highest})"
    );

    // Restart: the sequence continues.
    daemon.sigterm();
    daemon
        .wait_timeout(SHUTDOWN_TIMEOUT)
        .expect("daemon stopped");
    let out = pkid_ok(data, &["crl", "generate", "--issuer", "issuing"]);
    let offline: u64 = out
        .split("number=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(offline > highest && highest > first);
    let daemon = Daemon::start(data);
    assert!(crl_number(&fetch_crl(&daemon, data, "/crl/issuing.crl")) >= offline);
    pkid_ok(data, &["cert", "release", "--serial", &serial]);
    let grew = poll(PROPAGATION, || {
        crl_number(&fetch_crl(&daemon, data, "/crl/issuing.crl")) > offline
    });
    assert!(grew, "{}", daemon.logs());
}

#[test]
fn cli_errors_are_one_line_with_codes() {
    let dir = init_with("");
    let data = dir.path();
    let (code, _, err) = pkid_fails(data, &["crl", "generate", "--issuer", "nobody"]);
    assert_eq!(code, 3);
    assert!(one_error_line(&err).contains("unknown issuer"), "{err}");
    let (code, _, err) = pkid_fails(data, &["crl", "show", "--pem", "--shard", "7"]);
    assert_eq!(code, 4, "{err}");
    let out = pkid_ok(data, &["crl", "generate"]);
    assert!(out.contains("root ") && out.contains("issuing "), "{out}");
    let pem = pkid_ok(data, &["crl", "show", "--pem", "--issuer", "root"]);
    let path = unique_path(data, "root", "pem");
    std::fs::write(&path, pem).expect("write");
    assert_crl_signed_by(&path, &data.join("certs/root.crt"));
}
