//! Vector tests over `testdata/documents/` (see its README for the command behind each file).

use super::*;
use der::DecodePem;

macro_rules! vector {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/documents/",
            $name
        ))
        .as_slice()
    };
}

/// When openssl and pyHanko signed the vectors (their signingTime): 2026-12-01T21:18:13Z.
const SIGNED_AT: u64 = 1_796_159_893;

fn cert(pem: &[u8]) -> Certificate {
    Certificate::from_pem(pem).expect("test certificate")
}

fn root() -> Certificate {
    cert(vector!("root.crt"))
}

fn issuing() -> Certificate {
    cert(vector!("issuing.crt"))
}

fn doc() -> &'static [u8] {
    vector!("doc.txt")
}

fn common_name(c: &Certificate) -> String {
    c.tbs_certificate.subject.to_string()
}

#[test]
fn openssl_detached_signatures_verify_and_chain_to_the_root() {
    for (name, sig, digest, cn) in [
        (
            "rsa",
            vector!("rsa.p7s"),
            DigestAlgorithm::Sha256,
            "Nguyễn Văn An",
        ),
        (
            "rsa-nosmimecap",
            vector!("rsa-nosmimecap.p7s"),
            DigestAlgorithm::Sha256,
            "Nguyễn Văn An",
        ),
        (
            "rsa-pss",
            vector!("rsa-pss.p7s"),
            DigestAlgorithm::Sha256,
            "Nguyễn Văn An",
        ),
        (
            "p256",
            vector!("p256.p7s"),
            DigestAlgorithm::Sha256,
            "Trần Thị Bích",
        ),
        (
            "p256-nosmimecap",
            vector!("p256-nosmimecap.p7s"),
            DigestAlgorithm::Sha256,
            "Trần Thị Bích",
        ),
        (
            "p256-sha384",
            vector!("p256-sha384.p7s"),
            DigestAlgorithm::Sha384,
            "Trần Thị Bích",
        ),
        (
            "p256-keyid",
            vector!("p256-keyid.p7s"),
            DigestAlgorithm::Sha256,
            "Trần Thị Bích",
        ),
    ] {
        let signed = verify_detached(doc(), sig).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(signed.digest_algorithm, digest, "{name}");
        assert_eq!(signed.signing_time, Some(SIGNED_AT), "{name}");
        // The Vietnamese subject round-trips exactly (UTF8String in, UTF-8 out).
        assert!(
            common_name(&signed.signer).contains(cn),
            "{name}: {}",
            common_name(&signed.signer)
        );
        let mut intermediates = signed.other_certs.clone();
        intermediates.push(issuing());
        let path = verify_chain(&signed.signer, &intermediates, &[root()], SIGNED_AT)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(path.len(), 3, "{name}");
        assert_eq!(path[1], issuing(), "{name}");
        assert_eq!(path[2], root(), "{name}");
    }
}

#[test]
fn the_chain_carried_in_the_signature_is_used() {
    let signed = verify_detached(doc(), vector!("p256.p7s")).expect("verify");
    assert_eq!(signed.other_certs, vec![issuing()]);
    verify_chain(&signed.signer, &signed.other_certs, &[root()], SIGNED_AT).expect("chain");
    // Without it (`openssl cms -sign` carries only the signer unless -certfile), no path.
    let bare = verify_detached(doc(), vector!("p256-nosmimecap.p7s")).expect("verify");
    assert!(bare.other_certs.is_empty());
    assert_eq!(
        verify_chain(&bare.signer, &bare.other_certs, &[root()], SIGNED_AT),
        Err(DocumentError::UntrustedChain)
    );
}

#[test]
fn without_signed_attributes_the_signature_is_over_the_content() {
    let signed = verify_detached(doc(), vector!("rsa-noattr.p7s")).expect("verify");
    assert_eq!(signed.signing_time, None);
    assert_eq!(
        verify_detached(vector!("other.txt"), vector!("rsa-noattr.p7s")).expect_err("refused"),
        DocumentError::BadSignature
    );
}

#[test]
fn a_signature_over_another_file_is_a_digest_mismatch() {
    assert_eq!(
        verify_detached(doc(), vector!("other.p7s")).expect_err("refused"),
        DocumentError::DigestMismatch
    );
    verify_detached(vector!("other.txt"), vector!("other.p7s")).expect("its own file");
    let mut edited = doc().to_vec();
    edited[0] ^= 1;
    assert_eq!(
        verify_detached(&edited, vector!("rsa.p7s")).expect_err("refused"),
        DocumentError::DigestMismatch
    );
}

#[test]
fn a_changed_signature_value_does_not_verify() {
    // The signature OCTET STRING is the last field of the last SignerInfo: the file's last byte.
    for sig in [vector!("rsa.p7s"), vector!("p256.p7s")] {
        let mut bad = sig.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        assert_eq!(
            verify_detached(doc(), &bad).expect_err("refused"),
            DocumentError::BadSignature
        );
    }
}

#[test]
fn refused_shapes_each_have_their_error() {
    assert_eq!(
        verify_detached(doc(), vector!("p256-sha1.p7s")).expect_err("refused"),
        DocumentError::UnsupportedAlgorithm("1.3.14.3.2.26".into())
    );
    assert_eq!(
        verify_detached(doc(), vector!("p256-nocerts.p7s")).expect_err("refused"),
        DocumentError::SignerCertificateMissing
    );
    assert_eq!(
        verify_detached(doc(), vector!("p256-attached.p7s")).expect_err("refused"),
        DocumentError::NotDetached
    );
    assert_eq!(
        verify_detached(doc(), vector!("two-signers.p7s")).expect_err("refused"),
        DocumentError::SignerCount(2)
    );
    assert_eq!(
        verify_detached(doc(), b"not DER")
            .expect_err("refused")
            .code(),
        "malformed-cms"
    );
    // A bare certificate is DER but not a ContentInfo.
    let der = der::Encode::to_der(&root()).expect("der");
    assert_eq!(
        verify_detached(doc(), &der).expect_err("refused").code(),
        "malformed-cms"
    );
    let huge = vec![0u8; MAX_CMS_BYTES + 1];
    assert!(matches!(
        verify_detached(doc(), &huge),
        Err(DocumentError::TooLarge { .. })
    ));
}

#[test]
fn signer_validity_and_key_usage_are_checked_at_signing_time() {
    let chain = [issuing()];
    let anchors = [root()];
    let check = |sig: &[u8]| {
        let signed = verify_detached(doc(), sig).expect("signature verifies");
        verify_chain(&signed.signer, &chain, &anchors, SIGNED_AT)
    };
    // expired-signer: valid 2026-01-01 to 2026-06-30, signed 2026-12-01.
    assert_eq!(
        check(vector!("expired.p7s")),
        Err(DocumentError::CertificateExpired { depth: 0 })
    );
    // future-signer: valid from 2030.
    assert_eq!(
        check(vector!("future.p7s")),
        Err(DocumentError::CertificateNotYetValid { depth: 0 })
    );
    // encipher-signer: keyUsage keyEncipherment only.
    assert_eq!(
        check(vector!("encipher.p7s")),
        Err(DocumentError::SignerKeyUsage)
    );
    // Checked in 2026-05, when the signer was valid, the anchor fails: the test root's
    // validity starts on 2026-12-01 (`openssl req -x509 -days`), and anchors are checked too.
    let signed = verify_detached(doc(), vector!("expired.p7s")).expect("verify");
    assert_eq!(
        verify_chain(&signed.signer, &chain, &anchors, 1_780_000_000),
        Err(DocumentError::CertificateNotYetValid { depth: 2 })
    );
    // The issuing CA expires in 2036: a signer checked then fails on its own dates first.
    let signed = verify_detached(doc(), vector!("p256.p7s")).expect("verify");
    assert_eq!(
        verify_chain(&signed.signer, &chain, &anchors, 2_200_000_000),
        Err(DocumentError::CertificateExpired { depth: 0 })
    );
}

#[test]
fn a_non_ca_issuer_and_an_unknown_critical_extension_are_refused() {
    // Made with `openssl x509 -req` a little after the others: checked at their own signingTime.
    let at = |s: &SignedDocument| s.signing_time.expect("signingTime");
    let signed = verify_detached(doc(), vector!("notca.p7s")).expect("verify");
    assert_eq!(
        verify_chain(&signed.signer, &signed.other_certs, &[root()], at(&signed)),
        Err(DocumentError::NotCa { depth: 1 })
    );
    let signed = verify_detached(doc(), vector!("critical.p7s")).expect("verify");
    assert_eq!(
        verify_chain(&signed.signer, &[issuing()], &[root()], at(&signed)),
        Err(DocumentError::CriticalExtension(
            "1.3.6.1.4.1.99999.7".into()
        ))
    );
}

#[test]
fn another_root_is_not_trusted() {
    let signed = verify_detached(doc(), vector!("rsa.p7s")).expect("verify");
    let other_root = cert(include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/tsp/root.crt"
    )));
    assert_eq!(
        verify_chain(
            &signed.signer,
            &signed.other_certs,
            &[other_root],
            SIGNED_AT
        ),
        Err(DocumentError::UntrustedChain)
    );
    assert_eq!(
        verify_chain(&signed.signer, &signed.other_certs, &[], SIGNED_AT),
        Err(DocumentError::UntrustedChain)
    );
    // The signer posing as an intermediate of itself does not make a path.
    assert_eq!(
        verify_chain(
            &signed.signer,
            std::slice::from_ref(&signed.signer),
            &[root()],
            SIGNED_AT
        ),
        Err(DocumentError::UntrustedChain)
    );
}

#[test]
fn the_issuing_ca_as_anchor_shortens_the_path() {
    let signed = verify_detached(doc(), vector!("p256.p7s")).expect("verify");
    let path = verify_chain(&signed.signer, &[], &[issuing()], SIGNED_AT).expect("chain");
    assert_eq!(path.len(), 2);
}

#[test]
fn pyhanko_signed_pdfs_verify() {
    for (name, pdf, cn) in [
        ("signed-rsa", vector!("signed-rsa.pdf"), "Nguyễn Văn An"),
        ("signed-p256", vector!("signed-p256.pdf"), "Trần Thị Bích"),
        // Signed by RSA, then by P-256 in an incremental update: the last signature counts.
        ("signed-twice", vector!("signed-twice.pdf"), "Trần Thị Bích"),
    ] {
        let signed = verify_pdf(pdf).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(common_name(&signed.signer).contains(cn), "{name}");
        let mut intermediates = signed.other_certs.clone();
        intermediates.push(issuing());
        verify_chain(&signed.signer, &intermediates, &[root()], SIGNED_AT)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn a_pades_signature_with_pss_verifies_without_a_signing_time() {
    let signed = verify_pdf(vector!("signed-pades-pss.pdf")).expect("verify");
    assert_eq!(signed.signing_time, None);
    assert!(common_name(&signed.signer).contains("Nguyễn Văn An"));
    verify_chain(&signed.signer, &signed.other_certs, &[root()], SIGNED_AT).expect("chain");
}

#[test]
fn pdf_ranges_must_cover_the_whole_file() {
    let signature = pdf::extract(vector!("signed-p256.pdf")).expect("extract");
    assert_eq!(signature.ranges[0].start, 0);
    assert_eq!(signature.ranges[1].end, vector!("signed-p256.pdf").len());
    assert!(matches!(
        verify_pdf(vector!("appended.pdf")),
        Err(DocumentError::NotWholeFile { .. })
    ));
    assert_eq!(
        verify_pdf(vector!("edited.pdf")).expect_err("refused"),
        DocumentError::DigestMismatch
    );
    assert_eq!(
        verify_pdf(vector!("unsigned.pdf")).expect_err("refused"),
        DocumentError::NoSignature
    );
}

#[test]
fn error_codes_are_distinct() {
    let all = [
        DocumentError::MalformedPdf(""),
        DocumentError::NoSignature,
        DocumentError::ByteRange(""),
        DocumentError::NotWholeFile {
            signed: 0,
            length: 0,
        },
        DocumentError::TooLarge { length: 0, max: 0 },
        DocumentError::MalformedCms(String::new()),
        DocumentError::NotDetached,
        DocumentError::SignerCount(0),
        DocumentError::ContentType(String::new()),
        DocumentError::Attribute(""),
        DocumentError::DigestMismatch,
        DocumentError::BadSignature,
        DocumentError::UnsupportedAlgorithm(String::new()),
        DocumentError::WeakKey(0),
        DocumentError::SignerCertificateMissing,
        DocumentError::UntrustedChain,
        DocumentError::CertificateExpired { depth: 0 },
        DocumentError::CertificateNotYetValid { depth: 0 },
        DocumentError::SignerKeyUsage,
        DocumentError::NotCa { depth: 0 },
        DocumentError::CriticalExtension(String::new()),
    ];
    let codes: std::collections::HashSet<_> = all.iter().map(DocumentError::code).collect();
    assert_eq!(codes.len(), all.len());
}
