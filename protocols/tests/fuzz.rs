//! Fuzz targets for every parser pkid runs on bytes it did not make, on stable Rust under plain
//! `cargo test`.
//!
//! ```text
//!  testdata/fuzz/<target>/* ──seeds──▶ mutate (DER tree + byte edits, seeded) ──▶ target(bytes)
//!                                                                  panics? round trip unstable? ──▶ test fails
//! ```
//!
//! Each target first runs on every seed as it is, then on `PKID_FUZZ_ITERATIONS` mutated inputs
//! (default [`DEFAULT_ITERATIONS`], bounded so the suite adds a few seconds to CI). The seed of
//! the generator is fixed, so CI checks the same inputs every run; `PKID_FUZZ_SEED` explores
//! others; `PKID_FUZZ_STRICT_DER=1` also demands that every accepted input is canonical DER. A
//! failure names the seed, the iteration, the mutations and the input in hex, and
//! writes the input to `target/fuzz-failures/`. See docs/fuzzing.md.

#[allow(dead_code, unreachable_pub)]
#[path = "../../bench/src/mutate.rs"]
mod mutate;

use der::{Decode, Encode};
use pkid_protocols::{crl, csr, document, ocsp, serial, tsp, x509, KeyType};
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Mutated inputs per target in CI: all six targets together take about 12 s of one core in
/// the debug profile (measured in docs/fuzzing.md), well under the minute the suite may add.
const DEFAULT_ITERATIONS: u64 = 20_000;

/// The generator's seed when `PKID_FUZZ_SEED` is unset.
const DEFAULT_SEED: u64 = 0x706B_6964_6675_7A7A; // "pkidfuzz"

/// CertIDs per OCSP request the daemon accepts by default (`[ocsp] max_cert_ids`).
const MAX_CERT_IDS: usize = 8;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{name}={v:?}: {e}"))
        }
        Err(_) => default,
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every file of `testdata/fuzz/<target>/` except its README, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = workspace_root().join("testdata/fuzz").join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_none_or(|x| x != "md"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("seed"))
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Runs `check` on every seed of `target`, then on the configured number of mutated inputs.
fn fuzz(target: &str, check: fn(&[u8])) {
    let seeds = corpus(target);
    for (name, bytes) in &seeds {
        if catch_unwind(|| check(bytes)).is_err() {
            panic!("{target}: seed {name} fails as it is");
        }
    }
    let iterations = env_u64("PKID_FUZZ_ITERATIONS", DEFAULT_ITERATIONS);
    let seed = env_u64("PKID_FUZZ_SEED", DEFAULT_SEED);
    let corpus: Vec<Vec<u8>> = seeds.iter().map(|(_, b)| b.clone()).collect();
    let mut rng = mutate::SplitMix64::new(seed ^ fnv1a(target.as_bytes()));
    for i in 0..iterations {
        let case = mutate::next_case(&corpus, &mut rng);
        if catch_unwind(AssertUnwindSafe(|| check(&case.input))).is_err() {
            let dir = workspace_root().join("target/fuzz-failures");
            let file = dir.join(format!("{target}-{seed:#x}-{i}.bin"));
            let _ = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, &case.input));
            panic!(
                "{target}: PKID_FUZZ_SEED={seed:#x} iteration {i} fails (written to {})\n\
                 seed file {}, mutations {:?}\ninput {}",
                file.display(),
                seeds[case.seed].0,
                case.mutations,
                hex::encode(&case.input)
            );
        }
    }
}

/// Gives each target its own stream of inputs from one `PKID_FUZZ_SEED`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// Decode → encode → decode is stable. With `PKID_FUZZ_STRICT_DER=1`, also that the encoding
/// is the accepted input itself (DER has one encoding per value). That stricter check is off by
/// default because the RustCrypto decoders accept some non-DER input today (an explicitly
/// encoded DEFAULT, an unsorted SET OF, a skipped lower-numbered context-specific field) and
/// re-encode it canonically; docs/fuzzing.md lists what it finds.
fn assert_round_trip<T>(input: &[u8], value: &T)
where
    T: for<'a> Decode<'a> + Encode + PartialEq + Debug,
{
    let encoded = value.to_der().expect("a decoded value encodes");
    let again = T::from_der(&encoded).expect("our own encoding decodes");
    assert_eq!(&again, value, "decode(encode(x)) == x");
    assert_eq!(
        again.to_der().expect("encodes"),
        encoded,
        "encode is stable"
    );
    if strict_der() {
        assert_eq!(
            hex::encode(&encoded),
            hex::encode(input),
            "the decoder accepted a non-DER encoding (left: re-encoded, right: input)"
        );
    }
}

fn strict_der() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var("PKID_FUZZ_STRICT_DER").is_ok_and(|v| v == "1"))
}

// The targets: each is what the daemon does with untrusted bytes, then the round trip.

fn ocsp_request(data: &[u8]) {
    if let Ok(parsed) = ocsp::parse_request(data, MAX_CERT_IDS) {
        for id in &parsed.cert_ids {
            let _ = ocsp::CertIdHash::of(id);
            let _ = ocsp::serial_octets(id);
        }
        let req = x509_ocsp::OcspRequest::from_der(data).expect("parse_request accepted it");
        assert_round_trip(data, &req);
    }
}

fn tsp_settings() -> tsp::Settings {
    tsp::Settings {
        policy: der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1"),
        accepted_policies: vec![],
        hash_algorithms: vec![
            tsp::HashAlgorithm::Sha256,
            tsp::HashAlgorithm::Sha384,
            tsp::HashAlgorithm::Sha512,
        ],
        accuracy_ms: 1000,
        include_tsa_name: false,
        signing_time: false,
    }
}

fn tsp_request(data: &[u8]) {
    if let Ok(req) = tsp::parse_request(data) {
        assert_round_trip(data, &req);
        if let Err(e) = tsp::decide(req, &tsp_settings()) {
            let _ = (e.failure_info(), e.is_peer_fault(), e.client_text());
        }
    }
}

fn csr(data: &[u8]) {
    if let Ok(der) = csr::from_pem_or_der(data) {
        if let Ok(req) = x509_cert::request::CertReq::from_der(&der) {
            assert_round_trip(&der, &req);
        }
        let _ = csr::verify(&der);
    }
}

fn cmp_message(data: &[u8]) {
    use pkid_protocols::cmp;
    if let Ok(req) = cmp::parse_request(data) {
        if let Ok(pbm) = req.pbm() {
            let _ = req.verify_mac(&pbm, b"abc");
        }
        let _ = req.check_time(0, 300);
        match &req.body {
            cmp::RequestBody::Ir(m) | cmp::RequestBody::Cr(m) | cmp::RequestBody::Kur(m) => {
                for msg in m {
                    let _ = cmp::verify_cert_request(msg);
                }
            }
            cmp::RequestBody::P10cr(d) => {
                let _ = csr::verify(d);
            }
            cmp::RequestBody::Genm(itavs) => {
                let _ = cmp::general_questions(itavs);
            }
            _ => {}
        }
    }
    if let Ok(v) = cmp::parse_response(data) {
        let _ = (v.verify_mac(b"abc"), v.status_text());
    }
}

fn certificate(data: &[u8]) {
    if let Ok(der) = x509::pem_or_der(data, &["CERTIFICATE"]) {
        if let Ok(cert) = x509::parse_certificate(&der) {
            assert_round_trip(&der, &cert);
            let _ = KeyType::of(&cert.tbs_certificate.subject_public_key_info);
            let _ = ocsp::IssuerHashes::of(&cert);
        }
    }
}

fn crl(data: &[u8]) {
    if let Ok(list) = crl::parse(data) {
        assert_round_trip(data, &list);
        let _ = crl::revoked_entries(&list);
        let _ = (crl::number_of(&list), crl::base_number_of(&list));
    }
}

/// The document the `document_cms` seeds sign (testdata/documents/doc.txt).
const SIGNED_DOC: &[u8] = include_bytes!("../../testdata/documents/doc.txt");

fn document_cms(data: &[u8]) {
    if let Ok(signed) = document::verify_detached(SIGNED_DOC, data) {
        let _ = document::verify_chain(&signed.signer, &signed.other_certs, &[], 0);
    }
}

fn document_pdf(data: &[u8]) {
    if let Ok(signature) = document::pdf::extract(data) {
        let [first, second] = &signature.ranges;
        assert_eq!(first.start, 0, "the first range starts the file");
        assert_eq!(second.end, data.len(), "the second range ends the file");
        assert!(first.end < second.start, "the ranges leave a hole");
        // What verify_pdf does next, without scanning the file a second time.
        let _ = document::verify_detached(&signature.signed_bytes(data), &signature.cms);
    }
}

fn serial(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(canonical) = serial::canonical_hex(text) {
            assert_eq!(
                serial::canonical_hex(&canonical).as_deref(),
                Some(canonical.as_str()),
                "canonical_hex is idempotent"
            );
        }
    }
}

#[test]
fn fuzz_ocsp_request() {
    fuzz("ocsp_request", ocsp_request);
}

#[test]
fn fuzz_tsp_request() {
    fuzz("tsp_request", tsp_request);
}

#[test]
fn fuzz_csr() {
    fuzz("csr", csr);
}

#[test]
fn fuzz_cmp_message() {
    fuzz("cmp_message", cmp_message);
}

#[test]
fn fuzz_certificate() {
    fuzz("certificate", certificate);
}

#[test]
fn fuzz_crl() {
    fuzz("crl", crl);
}

#[test]
fn fuzz_document_cms() {
    fuzz("document_cms", document_cms);
}

#[test]
fn fuzz_document_pdf() {
    fuzz("document_pdf", document_pdf);
}

#[test]
fn fuzz_serial() {
    fuzz("serial", serial);
}

/// The fuzzer is only as good as its inputs: random bytes die at the first tag. This pins that
/// the mutations keep a fair share of inputs parseable yet different from every seed, so the
/// deep checks above (CertIDs, nonces, round trips) are really reached.
#[test]
fn mutated_requests_reach_past_the_outer_tag() {
    let seeds: Vec<Vec<u8>> = corpus("ocsp_request").into_iter().map(|(_, b)| b).collect();
    let mut rng = mutate::SplitMix64::new(DEFAULT_SEED);
    let total = 2_000;
    let mut accepted_new = 0;
    for _ in 0..total {
        let case = mutate::next_case(&seeds, &mut rng);
        if !seeds.contains(&case.input) && ocsp::parse_request(&case.input, MAX_CERT_IDS).is_ok() {
            accepted_new += 1;
        }
    }
    assert!(
        accepted_new * 20 > total,
        "only {accepted_new} of {total} mutated OCSP requests still parse"
    );
}
