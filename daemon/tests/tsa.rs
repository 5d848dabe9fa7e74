//! End-to-end tests of `POST /tsa`: the real `pkid serve` driven by the real `openssl ts` and
//! `curl`, as INTEROP.md describes (software keys, and a SoftHSM2 token).
//!
//! Every test starts its own daemon on an ephemeral port with its own data directory, in its
//! default configuration unless the test says otherwise.

use pkid_protocols::tsp::status::{FailureInfo, PkiStatus, TimeStampResp};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

mod common;

/// The shared harness's daemon, with the few operations these tests repeat.
struct Daemon {
    inner: common::Daemon,
    url: String,
    data: PathBuf,
}

impl Daemon {
    /// `pkid serve` on `data` (initialised on first start), listeners on ephemeral ports.
    fn start(data: &Path, env: &[(&str, &str)]) -> Daemon {
        let inner = common::Daemon::start_env(data, &[], env);
        let url = format!("http://{}", inner.http);
        Daemon {
            inner,
            url,
            data: data.to_path_buf(),
        }
    }

    /// SIGTERM (graceful: queued records are written) and a clean exit.
    fn stop(mut self) {
        self.inner.sigterm();
        let status = self.inner.wait();
        assert!(
            status.success(),
            "pkid exited with {status}:\n{}",
            self.inner.logs()
        );
    }

    /// SIGKILL: a crash.
    fn crash(mut self) {
        let pid = self.inner.pid().to_string();
        let out = Command::new("kill")
            .args(["-KILL", &pid])
            .output()
            .expect("kill(1)");
        common::assert_success(&out, &format!("kill -KILL {pid}"));
        let _ = self.inner.wait();
    }

    fn cert(&self, name: &str) -> PathBuf {
        self.data.join("certs").join(format!("{name}.crt"))
    }
}

fn run(cmd: &str, args: &[&str], dir: &Path) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} runs: {e}"));
    out
}

fn ok(cmd: &str, args: &[&str], dir: &Path) -> String {
    let out = run(cmd, args, dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd} {}: {text}", args.join(" "));
    text
}

/// `curl` a POST; returns (HTTP status, body, headers).
fn post(url: &str, content_type: &str, body_file: &Path, dir: &Path) -> (u16, Vec<u8>, String) {
    let out_file = dir.join("curl.out");
    let headers_file = dir.join("curl.headers");
    let out = run(
        "curl",
        &[
            "-s",
            "-o",
            out_file.to_str().expect("path"),
            "-D",
            headers_file.to_str().expect("path"),
            "-w",
            "%{http_code}",
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            &format!("@{}", body_file.display()),
            url,
        ],
        dir,
    );
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (
        code,
        std::fs::read(&out_file).unwrap_or_default(),
        std::fs::read_to_string(&headers_file).unwrap_or_default(),
    )
}

/// Sends a query file with the right media type; asserts 200 + application/timestamp-reply.
fn timestamp(d: &Daemon, tsq: &Path, tsr: &Path) -> TimeStampResp {
    let dir = tsq.parent().expect("dir");
    let (code, body, headers) = post(
        &format!("{}/tsa", d.url),
        "application/timestamp-query",
        tsq,
        dir,
    );
    assert_eq!(code, 200, "{headers}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/timestamp-reply"),
        "{headers}"
    );
    std::fs::write(tsr, &body).expect("write reply");
    use der::Decode;
    TimeStampResp::from_der(&body).expect("a DER TimeStampResp")
}

fn fail_info(resp: &TimeStampResp) -> Vec<FailureInfo> {
    resp.status
        .fail_info
        .as_ref()
        .map(FailureInfo::from_bit_string)
        .unwrap_or_default()
}

fn serial_of(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("Serial number: "))
        .expect("Serial number line")
        .trim()
        .to_string()
}

fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("doc.pdf"),
        b"%PDF-1.7 drafted, reviewed, sealed\n",
    )
    .expect("doc");
    dir
}

/// The data directory lives inside the work directory (the daemon makes it 0700).
fn data_of(work: &Path) -> PathBuf {
    work.join("data")
}

#[test]
fn openssl_ts_queries_are_granted_and_verify_against_the_ca_chain() {
    let work = workdir();
    let w = work.path();
    let d = Daemon::start(&data_of(w), &[]);
    let root = d.cert("root");
    let issuing = d.cert("issuing");
    // Without -cert the reply has no certificate: the TSA certificate comes with -untrusted.
    let untrusted = w.join("untrusted.pem");
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(&issuing).expect("issuing"),
        std::fs::read_to_string(d.cert("tsa")).expect("tsa")
    );
    std::fs::write(&untrusted, chain).expect("untrusted");
    let mut serials = HashSet::new();
    for hash in ["-sha256", "-sha384", "-sha512"] {
        for (label, extra) in [
            ("cert", vec!["-cert"]),
            ("nocert", vec![]),
            ("nononce", vec!["-cert", "-no_nonce"]),
        ] {
            let tsq = w.join(format!("q{hash}-{label}.tsq"));
            let tsr = w.join(format!("r{hash}-{label}.tsr"));
            let mut args = vec![
                "ts",
                "-query",
                "-data",
                "doc.pdf",
                hash,
                "-out",
                tsq.to_str().expect("path"),
            ];
            args.extend(extra.iter().copied());
            ok("openssl", &args, w);
            let resp = timestamp(&d, &tsq, &tsr);
            assert_eq!(resp.status.status, PkiStatus::Granted, "{hash} {label}");
            let text = ok(
                "openssl",
                &["ts", "-reply", "-in", tsr.to_str().expect("path"), "-text"],
                w,
            );
            assert!(text.contains("Status: Granted."), "{text}");
            assert!(
                text.contains(&format!("Hash Algorithm: {}", &hash[1..])),
                "{text}"
            );
            assert!(
                text.contains("Policy OID: 1.3.6.1.4.1.32473.3161.1"),
                "{text}"
            );
            assert!(text.contains("Ordering: no"), "{text}");
            assert!(text.contains("Accuracy: 0x01 seconds"), "{text}");
            assert_eq!(
                text.contains("Nonce: unspecified"),
                label == "nononce",
                "{text}"
            );
            assert!(serials.insert(serial_of(&text)), "serial repeated: {text}");
            let has_cert = !extra.is_empty();
            let tok = w.join("token.der");
            ok(
                "openssl",
                &[
                    "ts",
                    "-reply",
                    "-in",
                    tsr.to_str().expect("path"),
                    "-token_out",
                    "-out",
                    tok.to_str().expect("path"),
                ],
                w,
            );
            let certs = run(
                "openssl",
                &[
                    "pkcs7",
                    "-inform",
                    "DER",
                    "-in",
                    tok.to_str().expect("path"),
                    "-print_certs",
                    "-noout",
                ],
                w,
            );
            let listed =
                String::from_utf8_lossy(&certs.stdout).contains("pkid Timestamp Authority");
            assert_eq!(
                listed, has_cert,
                "TSA certificate included iff -cert ({hash} {label})"
            );
            let untrusted_arg = if has_cert {
                issuing.to_str().expect("path")
            } else {
                untrusted.to_str().expect("path")
            };
            for against in [
                ["-queryfile", tsq.to_str().expect("path")],
                ["-data", "doc.pdf"],
            ] {
                let v = ok(
                    "openssl",
                    &[
                        "ts",
                        "-verify",
                        "-in",
                        tsr.to_str().expect("path"),
                        against[0],
                        against[1],
                        "-CAfile",
                        root.to_str().expect("path"),
                        "-untrusted",
                        untrusted_arg,
                    ],
                    w,
                );
                assert!(
                    v.contains("Verification: OK"),
                    "{hash} {label} {}: {v}",
                    against[0]
                );
            }
        }
    }
    // A document that was not timestamped does not verify.
    std::fs::write(w.join("other.pdf"), b"%PDF-1.7 forged\n").expect("other");
    let tsr = w.join("r-sha256-cert.tsr");
    let bad = run(
        "openssl",
        &[
            "ts",
            "-verify",
            "-in",
            tsr.to_str().expect("path"),
            "-data",
            "other.pdf",
            "-CAfile",
            root.to_str().expect("path"),
            "-untrusted",
            issuing.to_str().expect("path"),
        ],
        w,
    );
    assert!(
        !bad.status.success(),
        "verification against other data must fail"
    );
    let metrics = ok("curl", &["-s", &format!("{}/metrics", d.url)], w);
    assert!(
        metrics.contains("pkid_tsa_tokens_issued_total 9"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pkid_signer_operations_total{outcome=\"ok\",role=\"tsa\"}"),
        "signing latency and count are metered"
    );
    d.stop();
}

/// Replaces the `[0] IMPLICIT Extensions` slot of a short DER TimeStampReq with one extension.
fn with_extension(query: &[u8]) -> Vec<u8> {
    assert!(query[0] == 0x30 && query[1] < 0x80, "short-form query");
    let ext = [
        0xa0, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x04, 0x03, 0x04, 0x01, 0x00,
    ];
    let mut body = query[2..].to_vec();
    body.extend_from_slice(&ext);
    let mut out = vec![0x30, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

#[test]
fn every_rejection_has_its_status_and_fail_info_and_the_daemon_keeps_serving() {
    let work = workdir();
    let w = work.path();
    let d = Daemon::start(&data_of(w), &[]);
    let q = |name: &str, args: &[&str]| -> PathBuf {
        let path = w.join(name);
        let mut all = vec![
            "ts",
            "-query",
            "-data",
            "doc.pdf",
            "-out",
            path.to_str().expect("path"),
        ];
        all.extend_from_slice(args);
        ok("openssl", &all, w);
        path
    };
    let sha1 = q("sha1.tsq", &["-sha1"]);
    let policy = q("policy.tsq", &["-sha256", "-tspolicy", "1.2.3.4.5"]);
    let base = q("base.tsq", &["-sha256", "-no_nonce"]);
    let bytes = std::fs::read(&base).expect("base");
    // sha256 OID 2.16.840.1.101.3.4.2.1 → .2 (sha384) with a 32-octet imprint.
    let at = bytes
        .windows(9)
        .position(|s| s == [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01])
        .expect("sha256 OID");
    let mut wrong_len = bytes.clone();
    wrong_len[at + 8] = 0x02;
    let wrong_len_file = w.join("wrong-len.tsq");
    std::fs::write(&wrong_len_file, wrong_len).expect("write");
    let ext_file = w.join("ext.tsq");
    std::fs::write(&ext_file, with_extension(&bytes)).expect("write");
    let garbage = w.join("garbage.tsq");
    std::fs::write(&garbage, b"this is not DER at all").expect("write");
    let truncated = w.join("truncated.tsq");
    std::fs::write(&truncated, &bytes[..bytes.len() - 5]).expect("write");
    let cases = [
        (
            sha1,
            FailureInfo::BadAlg,
            "unrecognized or unsupported algorithm identifier",
        ),
        (
            policy,
            FailureInfo::UnacceptedPolicy,
            "the requested TSA policy is not supported by the TSA",
        ),
        (
            wrong_len_file,
            FailureInfo::BadDataFormat,
            "the data submitted has the wrong format",
        ),
        (
            ext_file,
            FailureInfo::UnacceptedExtension,
            "the requested extension is not supported by the TSA",
        ),
        (
            garbage,
            FailureInfo::BadRequest,
            "transaction not permitted or supported",
        ),
        (
            truncated,
            FailureInfo::BadRequest,
            "transaction not permitted or supported",
        ),
    ];
    for (file, bit, openssl_text) in cases {
        let tsr = file.with_extension("tsr");
        let resp = timestamp(&d, &file, &tsr);
        assert_eq!(
            resp.status.status,
            PkiStatus::Rejection,
            "{}",
            file.display()
        );
        assert_eq!(fail_info(&resp), vec![bit], "{}", file.display());
        assert!(resp.time_stamp_token.is_none());
        let text = ok(
            "openssl",
            &["ts", "-reply", "-in", tsr.to_str().expect("path"), "-text"],
            w,
        );
        assert!(text.contains("Status: Rejected."), "{text}");
        assert!(
            text.contains(&format!("Failure info: {openssl_text}")),
            "{}: {text}",
            file.display()
        );
    }
    // After all that, a good request is still granted.
    let good = q("good.tsq", &["-sha256", "-cert"]);
    assert_eq!(
        timestamp(&d, &good, &w.join("good.tsr")).status.status,
        PkiStatus::Granted
    );
    let metrics = ok("curl", &["-s", &format!("{}/metrics", d.url)], w);
    for (label, n) in [
        ("badAlg", 1),
        ("badRequest", 2),
        ("unacceptedPolicy", 1),
        ("unacceptedExtension", 1),
        ("badDataFormat", 1),
    ] {
        assert!(
            metrics.contains(&format!(
                "pkid_tsa_rejections_total{{fail_info=\"{label}\"}} {n}"
            )),
            "{label}: {metrics}"
        );
    }
    d.stop();
}

#[test]
fn http_level_errors_are_precise() {
    let work = workdir();
    let w = work.path();
    let d = Daemon::start(&data_of(w), &[]);
    let url = format!("{}/tsa", d.url);
    let tsq = w.join("q.tsq");
    ok(
        "openssl",
        &[
            "ts",
            "-query",
            "-data",
            "doc.pdf",
            "-sha256",
            "-out",
            tsq.to_str().expect("path"),
        ],
        w,
    );
    let get = ok("curl", &["-s", "-o", "/dev/null", "-D", "-", &url], w);
    assert!(get.starts_with("HTTP/1.1 405"), "{get}");
    assert!(get.to_ascii_lowercase().contains("allow: post"), "{get}");
    let (code, _, _) = post(&url, "application/ocsp-request", &tsq, w);
    assert_eq!(code, 415);
    let (code, _, _) = post(&url, "application/x-www-form-urlencoded", &tsq, w);
    assert_eq!(code, 415);
    let big = w.join("big.bin");
    std::fs::write(&big, vec![0x30; 17 * 1024]).expect("big");
    let (code, body, _) = post(&url, "application/timestamp-query", &big, w);
    assert_eq!(code, 413, "{}", String::from_utf8_lossy(&body));
    let huge = w.join("huge.bin");
    std::fs::write(&huge, vec![0u8; 1024 * 1024]).expect("huge");
    let (code, _, _) = post(&url, "application/timestamp-query", &huge, w);
    assert_eq!(code, 413);
    // Chunked, no Content-Length: the limit holds while reading.
    let chunked = run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Content-Type: application/timestamp-query",
            "--data-binary",
            &format!("@{}", big.display()),
            &url,
        ],
        w,
    );
    assert_eq!(String::from_utf8_lossy(&chunked.stdout).trim(), "413");
    let empty = w.join("empty.bin");
    std::fs::write(&empty, b"").expect("empty");
    let resp = timestamp(&d, &empty, &w.join("empty.tsr"));
    assert_eq!(fail_info(&resp), vec![FailureInfo::BadRequest]);
    let resp = timestamp(&d, &tsq, &w.join("ok.tsr"));
    assert_eq!(resp.status.status, PkiStatus::Granted, "still serving");
    d.stop();
}

fn serials_from(d: &Daemon, w: &Path, n: usize, tag: &str) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let tsq = w.join(format!("{tag}-{i}.tsq"));
            let tsr = w.join(format!("{tag}-{i}.tsr"));
            ok(
                "openssl",
                &[
                    "ts",
                    "-query",
                    "-data",
                    "doc.pdf",
                    "-sha256",
                    "-out",
                    tsq.to_str().expect("path"),
                ],
                w,
            );
            assert_eq!(timestamp(d, &tsq, &tsr).status.status, PkiStatus::Granted);
            let text = ok(
                "openssl",
                &["ts", "-reply", "-in", tsr.to_str().expect("path"), "-text"],
                w,
            );
            let hex = serial_of(&text);
            u64::from_str_radix(hex.trim_start_matches("0x"), 16).expect("hex serial")
        })
        .collect()
}

#[test]
fn serial_numbers_are_never_repeated_across_restarts_and_crashes() {
    let work = workdir();
    let w = work.path();
    let data = data_of(w);
    let d = Daemon::start(&data, &[]);
    let first = serials_from(&d, w, 3, "a");
    d.stop();
    let d = Daemon::start(&data, &[]);
    let second = serials_from(&d, w, 3, "b");
    d.crash();
    let d = Daemon::start(&data, &[]);
    let third = serials_from(&d, w, 3, "c");
    d.stop();
    let mut all = HashSet::new();
    for s in first.iter().chain(&second).chain(&third) {
        assert!(
            all.insert(*s),
            "serial {s} repeated: {first:?} {second:?} {third:?}"
        );
    }
    assert!(
        first.iter().max() < second.iter().min() && second.iter().max() < third.iter().min(),
        "{first:?} {second:?} {third:?}"
    );
    // Graceful stops flush every record; the crashed run's records may be lost, never reused.
    let store =
        pkid::store::sqlite::SqliteStore::open(&data.join("pkid.db"), Duration::from_secs(5))
            .expect("store");
    use pkid::store::TimestampLog;
    for s in first.iter().chain(&third) {
        let rec = store
            .timestamp(*s)
            .expect("lookup")
            .unwrap_or_else(|| panic!("serial {s} recorded"));
        assert_eq!(rec.hash_algorithm, "sha256");
        assert_eq!(rec.imprint.len(), 32);
        assert_eq!(rec.policy, "1.3.6.1.4.1.32473.3161.1");
    }
}

#[test]
fn the_daemon_refuses_to_start_the_tsa_with_a_certificate_lacking_the_critical_eku() {
    let work = workdir();
    let data = data_of(work.path());
    ok(
        env!("CARGO_BIN_EXE_pkid"),
        &["--data", data.to_str().expect("path"), "init"],
        work.path(),
    );
    // The OCSP responder certificate: EKU OCSPSigning, not critical.
    std::fs::copy(data.join("certs/ocsp.crt"), data.join("certs/tsa.crt"))
        .expect("swap certificate");
    let out = run(
        env!("CARGO_BIN_EXE_pkid"),
        &[
            "--data",
            data.to_str().expect("path"),
            "serve",
            "--http",
            "127.0.0.1:0",
            "--https",
            "",
        ],
        work.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must not start: {err}");
    assert!(
        err.contains("timestamp authority") && err.contains("extendedKeyUsage"),
        "{err}"
    );
    // Disabling the TSA lets the rest of the daemon start.
    let toml = data.join("pkid.toml");
    let text = std::fs::read_to_string(&toml).expect("config");
    let at = text.find("[tsa]\n").expect("[tsa] section");
    let text = format!(
        "{}{}",
        &text[..at],
        text[at..].replacen("\nenabled = true\n", "\nenabled = false\n", 1)
    );
    std::fs::write(&toml, text).expect("config");
    let d = Daemon::start(&data, &[]);
    let tsq = work.path().join("q.tsq");
    ok(
        "openssl",
        &[
            "ts",
            "-query",
            "-data",
            "doc.pdf",
            "-out",
            tsq.to_str().expect("path"),
        ],
        work.path(),
    );
    let (code, _, _) = post(
        &format!("{}/tsa", d.url),
        "application/timestamp-query",
        &tsq,
        work.path(),
    );
    assert_eq!(code, 404);
    d.stop();
}

#[test]
fn a_softhsm2_token_backs_the_tsa() {
    let token = common::SoftHsmToken::new("pkid-tsa", "1234", "12345678");
    let work = workdir();
    let w = work.path();
    let data = data_of(w);
    std::fs::create_dir(&data).expect("data");
    std::fs::write(data.join("pkid.toml"), "[keys]\nbackend = \"pkcs11\"\n[keys.pkcs11]\ntoken_label = \"pkid-tsa\"\npin_env = \"TEST_PIN\"\n").expect("config");
    let env = [token.env()[0], ("TEST_PIN", "1234")];
    let d = Daemon::start(&data, &env);
    let root = d.cert("root");
    let issuing = d.cert("issuing");
    for hash in ["-sha256", "-sha512"] {
        let tsq = w.join(format!("hsm{hash}.tsq"));
        let tsr = w.join(format!("hsm{hash}.tsr"));
        ok(
            "openssl",
            &[
                "ts",
                "-query",
                "-data",
                "doc.pdf",
                hash,
                "-cert",
                "-out",
                tsq.to_str().expect("path"),
            ],
            w,
        );
        assert_eq!(timestamp(&d, &tsq, &tsr).status.status, PkiStatus::Granted);
        let v = ok(
            "openssl",
            &[
                "ts",
                "-verify",
                "-in",
                tsr.to_str().expect("path"),
                "-queryfile",
                tsq.to_str().expect("path"),
                "-CAfile",
                root.to_str().expect("path"),
                "-untrusted",
                issuing.to_str().expect("path"),
            ],
            w,
        );
        assert!(v.contains("Verification: OK"), "{v}");
    }
    assert!(
        !data.join("keys/tsa.p8").exists(),
        "the TSA key lives in the token"
    );
    d.stop();
}
