//! End-to-end client certificates on the HTTPS listener: a `tls-client` certificate issued with
//! `pkid cert issue`, presented by curl (`--cert/--key`, the leaf alone), is verified and seen
//! by the handler (`GET /whoami`); no certificate is served anonymously; a certificate from an
//! unknown CA, a revoked one and one on hold are refused in the handshake.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

/// How long a revocation may take to reach the daemon's index (the follower polls every 250 ms).
const PROPAGATION: Duration = Duration::from_secs(20);

/// `GET /whoami` on HTTPS, presenting `cert` and `key` when given.
fn whoami(daemon: &Daemon, data: &Path, client: Option<(&Path, &Path)>) -> Reply {
    let root = data.join("certs/root.crt");
    let tls = daemon.tls_args(&root);
    let mut args: Vec<&str> = tls.iter().map(String::as_str).collect();
    if let Some((cert, key)) = client {
        args.extend_from_slice(&["--cert", path_str(cert), "--key", path_str(key)]);
    }
    let url = daemon.https_url("/whoami");
    args.push(&url);
    fetch(&args)
}

fn client_certificate(data: &Path, cn: &str) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let (key, csr) = make_csr(data, &format!("/C=VN/O=Client/CN={cn}"), "ec:P-256");
    let (serial, cert) = issue(data, &csr, "tls-client", &[]);
    (serial, cert, key)
}

#[test]
fn https_sees_verified_client_certificates_and_refuses_revoked_ones() {
    let dir = init(&[]);
    let data = dir.path();
    let (serial, cert, key) = client_certificate(data, "alice");
    let (held_serial, held_cert, held_key) = client_certificate(data, "bob");
    let daemon = Daemon::start(data);

    // The leaf alone is sent; the chain is completed from pkid's issuing CA.
    let r = whoami(&daemon, data, Some((&cert, &key)));
    assert_eq!(r.status, 200, "{} {}", r.text(), daemon.logs());
    let text = r.text();
    assert!(text.contains("subject: CN=alice,O=Client,C=VN"), "{text}");
    assert!(text.contains("issuer: issuing\n"), "{text}");
    assert!(
        text.contains(&format!("serial: {}\n", canonical_serial(&serial))),
        "{text}"
    );
    assert!(text.contains("chain: 3 certificates"), "{text}");

    // Without a certificate: served, anonymously.
    let r = whoami(&daemon, data, None);
    assert_eq!(r.status, 403, "{}", r.text());
    // The status plane does not need one either.
    let root = data.join("certs/root.crt");
    let mut args: Vec<String> = daemon.tls_args(&root);
    args.push(daemon.https_url("/healthz"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(fetch(&args).status, 200);
    // The plain listener has no /whoami (and never a client identity).
    assert_eq!(get(&daemon.http_url("/whoami")).status, 404);

    // A certificate that does not chain to client_trust: the handshake fails (no HTTP status).
    let stranger_key = unique_path(data, "stranger", "key");
    let stranger = unique_path(data, "stranger", "crt");
    openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=stranger",
        "-addext",
        "extendedKeyUsage=clientAuth",
        "-days",
        "1",
        "-keyout",
        path_str(&stranger_key),
        "-out",
        path_str(&stranger),
    ]);
    assert_eq!(
        whoami(&daemon, data, Some((&stranger, &stranger_key))).status,
        0
    );

    // Revoked and on hold: refused once the daemon's index has the change.
    revoke(data, &serial, "keyCompromise");
    pkid_ok(data, &["cert", "hold", "--serial", &held_serial]);
    assert!(
        poll(PROPAGATION, || whoami(&daemon, data, Some((&cert, &key)))
            .status
            == 0),
        "a revoked client certificate was still accepted; log:\n{}",
        daemon.logs()
    );
    assert!(
        poll(PROPAGATION, || whoami(
            &daemon,
            data,
            Some((&held_cert, &held_key))
        )
        .status
            == 0),
        "a client certificate on hold was still accepted"
    );
    // The listener still serves others.
    assert_eq!(whoami(&daemon, data, None).status, 403);
}
