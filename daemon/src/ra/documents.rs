//! Request documents as evidence: is this file validly signed, and by whom?
//!
//! ```text
//!  content (+ detached .p7s)
//!    ├─ size ≤ [ra] max_document_bytes
//!    ├─ .p7s given ──▶ document::verify_detached(content, p7s)
//!    ├─ %PDF-      ──▶ document::verify_pdf(content)          (last signature, whole file)
//!    └─ otherwise  ──▶ NotSigned
//!  signer ─▶ document::verify_chain(signer, its certificates + pkid's CAs, anchors, signed_at)
//!         ─▶ issued by a pkid issuer? its status in the revocation index at signed_at
//!  ─▶ DocumentVerdict { problem, signer summary, signed_at }
//! ```
//!
//! The verdict is always an answer, never an error: an invalid signature is a fact about the
//! document that the RA stores next to it (the request then waits for the paper original).
//! The anchors are pkid's root (`certs/root.crt`) and the PEM files of `[ra] document_trust`;
//! pkid's issuing CAs complete chains a signature does not carry (`openssl cms -sign` carries
//! only the signer's certificate unless given `-certfile`).
//!
//! The signing time is the signer's signingTime attribute when it is present and not in the
//! future, else the time of verification. It is the signer's own claim: a certificate revoked
//! for `keyCompromise` therefore invalidates every document it signed whatever time it claims,
//! and a certificate on hold invalidates documents while the hold lasts.

use crate::ca::Authority;
use crate::config::Config;
use crate::datadir;
use crate::index::{serial_key, Entry, RevocationIndex};
use crate::keys::KeyRole;
use der::{Decode, Encode};
use pkid_protocols::document::{self, DocumentError, SignedDocument};
use pkid_protocols::revocation::CrlReason;
use std::path::Path;
use std::sync::Arc;
use x509_cert::Certificate;

/// What pkid knows of a certificate one of its issuers issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignerStatus {
    /// Issued and not revoked.
    Good,
    /// Revoked (or on hold) since Unix time `at`.
    Revoked {
        /// Revocation time, Unix seconds.
        at: u64,
        /// The recorded reason, if any.
        reason: Option<CrlReason>,
    },
    /// Not a serial the issuer is known to have issued.
    Unknown,
}

/// Where the verifier learns whether a pkid-issued signer certificate is revoked. The daemon
/// passes its [`RevocationIndex`]; tests pass a fake.
pub trait RevocationLookup: Send + Sync {
    /// The status of the certificate with `serial` (DER INTEGER contents, sign octet
    /// included) issued by the pkid issuer named `issuer`.
    fn status(&self, issuer: &str, serial: &[u8]) -> SignerStatus;
}

impl RevocationLookup for RevocationIndex {
    fn status(&self, issuer: &str, serial: &[u8]) -> SignerStatus {
        let entry = serial_key(serial).and_then(|k| self.issuer(issuer)?.lookup(k));
        match entry.map(|p| p.entry()) {
            Some(Entry::Good) => SignerStatus::Good,
            Some(Entry::Revoked { at, reason }) => SignerStatus::Revoked { at, reason },
            None => SignerStatus::Unknown,
        }
    }
}

/// How the document was presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentKind {
    /// A PDF with an embedded signature (or one that should have had one).
    Pdf,
    /// A file with a detached CMS signature.
    Detached,
    /// Neither: a file without a signature.
    Unsigned,
}

/// Why a document is not valid evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocumentProblem {
    /// The signature or its signer's chain failed a check.
    Document(DocumentError),
    /// The signer's certificate was revoked at `at` (Unix seconds), before the signing time
    /// (or for key compromise, or it is on hold now).
    Revoked {
        /// Revocation time, Unix seconds.
        at: u64,
    },
    /// The signer's certificate names a pkid issuer that has no record of it.
    StatusUnknown,
    /// Not a PDF and no detached signature given.
    NotSigned,
}

impl DocumentProblem {
    /// The stable code the API puts in problem documents and the store in `documents.problem`.
    /// No `_` arm: a new variant cannot compile until it has one.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Document(e) => e.code(),
            Self::Revoked { .. } => "signer-revoked",
            Self::StatusUnknown => "signer-status-unknown",
            Self::NotSigned => "not-signed",
        }
    }
}

impl std::fmt::Display for DocumentProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Document(e) => e.fmt(f),
            Self::Revoked { at } => write!(
                f,
                "the signer's certificate was revoked at {at} (Unix time)"
            ),
            Self::StatusUnknown => {
                f.write_str("the signer's certificate is not one its pkid issuer issued")
            }
            Self::NotSigned => f.write_str(
                "the document is not signed: neither a signed PDF nor given a detached signature",
            ),
        }
    }
}

/// The signer as the RA records it and matches it against the organisation's officers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerSummary {
    /// Serial number, canonical lower-case hex (as `operator_certificates.serial`).
    pub serial: String,
    /// Issuer DN (RFC 4514 string).
    pub issuer_dn: String,
    /// Subject DN (RFC 4514 string, UTF-8 as signed). Personal data: never logged.
    pub subject_dn: String,
    /// SHA-256 of the certificate's DER, lower-case hex.
    pub sha256_fingerprint: String,
    /// The pkid issuer (`issuing`, …) that issued it, when one did.
    pub pkid_issuer: Option<String>,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// The answer about one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentVerdict {
    /// How it was presented.
    pub kind: DocumentKind,
    /// `None` when the document is valid evidence.
    pub problem: Option<DocumentProblem>,
    /// The signer, whenever a signature verified over the bytes (even if its chain did not).
    pub signer: Option<SignerSummary>,
    /// The time the signer's certificate was checked at, Unix seconds: its signingTime
    /// attribute when present and not after `now`, else `now`.
    pub signed_at: u64,
}

impl DocumentVerdict {
    /// Whether the document counts in place of the paper original.
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }
}

/// Why the verifier cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum DocumentSetupError {
    /// A trust-anchor file cannot be read or holds no certificate.
    #[error("request-document trust: {0}")]
    File(String),
}

/// Verifies request documents against pkid's trust list and revocation index.
pub struct DocumentVerifier {
    anchors: Vec<Certificate>,
    /// pkid's CA certificates by issuer name: chain candidates, and who issued a signer.
    issuers: Vec<(String, Certificate)>,
    revocation: Arc<dyn RevocationLookup>,
    max_document_bytes: usize,
    /// Signers whose chain verified, by the SHA-256 of the signer and the certificates that came
    /// with it (docs/decisions.md, "Verified signer chains are remembered").
    chains: moka::sync::Cache<[u8; 32], VerifiedChain>,
}

/// What a verified chain leaves to check again per document: the time window in which every
/// certificate of its path is valid (signatures and extensions do not change), and the pkid
/// issuer that signed the signer.
#[derive(Clone)]
struct VerifiedChain {
    not_before: u64,
    not_after: u64,
    pkid_issuer: Option<String>,
}

/// Signer chains remembered: one organisation signs many documents with one certificate.
const CHAIN_MEMO_ENTRIES: u64 = 10_000;

impl std::fmt::Debug for DocumentVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentVerifier")
            .field("anchors", &self.anchors.len())
            .field(
                "issuers",
                &self.issuers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("max_document_bytes", &self.max_document_bytes)
            .finish()
    }
}

/// The key a verified chain is remembered by: the signer and every certificate that came with
/// it, so a path found with one document's intermediates is not credited to another's.
fn chain_key(signed: &SignedDocument) -> Option<[u8; 32]> {
    let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for c in std::iter::once(&signed.signer).chain(&signed.other_certs) {
        h.update(&c.to_der().ok()?);
    }
    h.finish().as_ref().try_into().ok()
}

/// Reads PEM certificates (one or more) or, failing that, one DER certificate.
fn read_certificates(path: &Path) -> Result<Vec<Certificate>, DocumentSetupError> {
    let fail = |why: String| DocumentSetupError::File(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let pem = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if pem.is_empty() {
        return Certificate::from_der(&bytes)
            .map(|c| vec![c])
            .map_err(|_| fail("no certificate in it".into()));
    }
    pem.iter()
        .map(|der| Certificate::from_der(der).map_err(|e| fail(e.to_string())))
        .collect()
}

impl DocumentVerifier {
    /// A verifier trusting `anchors`, completing chains from and attributing signers to pkid's
    /// `issuers` (name, CA certificate), checking their revocation in `revocation`.
    pub fn new(
        anchors: Vec<Certificate>,
        issuers: Vec<(String, Certificate)>,
        revocation: Arc<dyn RevocationLookup>,
        max_document_bytes: usize,
    ) -> Self {
        Self {
            anchors,
            issuers,
            revocation,
            max_document_bytes,
            chains: moka::sync::Cache::new(CHAIN_MEMO_ENTRIES),
        }
    }

    /// The daemon's verifier: pkid's root from the data directory and `[ra] document_trust`
    /// as anchors, `authority`'s issuers, the index for revocation. Build it again when the
    /// authority takes on another issuer.
    pub fn from_config(
        config: &Config,
        authority: &Authority,
        revocation: Arc<dyn RevocationLookup>,
    ) -> Result<Self, DocumentSetupError> {
        let mut anchors = read_certificates(&datadir::cert_path(&config.data_dir, &KeyRole::Root))?;
        for path in &config.ra.document_trust {
            anchors.extend(read_certificates(path)?);
        }
        let issuers = authority
            .issuers()
            .iter()
            .map(|i| (i.name.clone(), i.certificate.clone()))
            .collect();
        Ok(Self::new(
            anchors,
            issuers,
            revocation,
            config.ra.max_document_bytes,
        ))
    }

    /// Verifies `content`, with its `detached_signature` (DER CMS) if given, at `now_unix`.
    pub fn verify(
        &self,
        content: &[u8],
        detached_signature: Option<&[u8]>,
        now_unix: u64,
    ) -> DocumentVerdict {
        let kind = match detached_signature {
            Some(_) => DocumentKind::Detached,
            None if content.starts_with(b"%PDF-") => DocumentKind::Pdf,
            None => DocumentKind::Unsigned,
        };
        let mut verdict = DocumentVerdict {
            kind,
            problem: None,
            signer: None,
            signed_at: now_unix,
        };
        let largest = content.len().max(detached_signature.map_or(0, <[u8]>::len));
        if largest > self.max_document_bytes {
            verdict.problem = Some(DocumentProblem::Document(DocumentError::TooLarge {
                length: largest,
                max: self.max_document_bytes,
            }));
            return verdict;
        }
        let signed = match (kind, detached_signature) {
            (DocumentKind::Detached, Some(signature)) => {
                document::verify_detached(content, signature)
            }
            (DocumentKind::Pdf, _) => document::verify_pdf(content),
            (DocumentKind::Unsigned | DocumentKind::Detached, _) => {
                verdict.problem = Some(DocumentProblem::NotSigned);
                return verdict;
            }
        };
        let signed = match signed {
            Ok(s) => s,
            Err(e) => {
                verdict.problem = Some(DocumentProblem::Document(e));
                return verdict;
            }
        };
        verdict.signed_at = signed
            .signing_time
            .filter(|t| *t <= now_unix)
            .unwrap_or(now_unix);
        let key = chain_key(&signed);
        let known = key.and_then(|k| self.chains.get(&k));
        let pkid_issuer = match &known {
            Some(k) => k.pkid_issuer.clone(),
            None => self.pkid_issuer_of(&signed.signer),
        };
        verdict.signer = Some(self.summary(&signed.signer, pkid_issuer.clone()));
        let chain = match known {
            Some(k) if (k.not_before..=k.not_after).contains(&verdict.signed_at) => Ok(()),
            _ => self.verify_chain(&signed, key, pkid_issuer.clone(), verdict.signed_at),
        };
        verdict.problem = match chain {
            Err(e) => Some(DocumentProblem::Document(e)),
            Ok(()) => self.check_revocation(&signed, pkid_issuer.as_deref(), verdict.signed_at),
        };
        verdict
    }

    /// Finds the signer's chain to an anchor at `signed_at`, and remembers it under `key`.
    fn verify_chain(
        &self,
        signed: &SignedDocument,
        key: Option<[u8; 32]>,
        pkid_issuer: Option<String>,
        signed_at: u64,
    ) -> Result<(), DocumentError> {
        let mut candidates = signed.other_certs.clone();
        candidates.extend(self.issuers.iter().map(|(_, c)| c.clone()));
        let path = document::verify_chain(&signed.signer, &candidates, &self.anchors, signed_at)?;
        if let Some(key) = key {
            let secs = |t: &x509_cert::time::Time| t.to_unix_duration().as_secs();
            let validity = path.iter().map(|c| &c.tbs_certificate.validity);
            self.chains.insert(
                key,
                VerifiedChain {
                    not_before: validity
                        .clone()
                        .map(|v| secs(&v.not_before))
                        .max()
                        .unwrap_or(0),
                    not_after: validity.map(|v| secs(&v.not_after)).min().unwrap_or(0),
                    pkid_issuer,
                },
            );
        }
        Ok(())
    }

    /// The revocation check of a signer whose chain verified.
    fn check_revocation(
        &self,
        signed: &SignedDocument,
        pkid_issuer: Option<&str>,
        signed_at: u64,
    ) -> Option<DocumentProblem> {
        let issuer = pkid_issuer?; // another CA's certificate: its revocation is its anchor's business
        let serial = signed.signer.tbs_certificate.serial_number.as_bytes();
        match self.revocation.status(issuer, serial) {
            SignerStatus::Good => None,
            SignerStatus::Unknown => Some(DocumentProblem::StatusUnknown),
            SignerStatus::Revoked { at, reason } => {
                let always = matches!(
                    reason,
                    Some(CrlReason::KeyCompromise | CrlReason::CertificateHold)
                );
                (always || at <= signed_at).then_some(DocumentProblem::Revoked { at })
            }
        }
    }

    /// The pkid issuer whose key signed `signer`, if any (name match and signature check, so a
    /// foreign CA with a look-alike name is not taken for pkid's).
    fn pkid_issuer_of(&self, signer: &Certificate) -> Option<String> {
        self.issuers
            .iter()
            .filter(|(_, ca)| ca.tbs_certificate.subject == signer.tbs_certificate.issuer)
            .find(|(_, ca)| document::issued_by(signer, ca).is_ok())
            .map(|(name, _)| name.clone())
    }

    fn summary(&self, signer: &Certificate, pkid_issuer: Option<String>) -> SignerSummary {
        let tbs = &signer.tbs_certificate;
        let der = signer.to_der().unwrap_or_default();
        SignerSummary {
            serial: pkid_protocols::serial::to_hex(&tbs.serial_number),
            issuer_dn: tbs.issuer.to_string(),
            subject_dn: tbs.subject.to_string(),
            sha256_fingerprint: hex::encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                &der,
            )),
            pkid_issuer,
            der,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::DecodePem;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A file of testdata/documents (see its README).
    fn vector(name: &str) -> Vec<u8> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/documents");
        std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The verdict on doc.txt with the detached signature `p7s`, an hour after signing.
    fn verdict_on_doc(p7s: &str) -> DocumentVerdict {
        verifier(Arc::default()).verify(&vector("doc.txt"), Some(&vector(p7s)), NOW)
    }

    /// The vectors' signingTime: 2026-12-01T21:18:13Z.
    const SIGNED_AT: u64 = 1_796_159_893;
    /// A verification an hour after signing.
    const NOW: u64 = SIGNED_AT + 3600;

    /// Statuses by serial hex; anything else is `Good`.
    #[derive(Default)]
    struct FakeIndex(Mutex<HashMap<String, SignerStatus>>);

    impl RevocationLookup for FakeIndex {
        fn status(&self, issuer: &str, serial: &[u8]) -> SignerStatus {
            assert_eq!(issuer, "issuing", "only the test issuing CA is pkid's here");
            let hex = hex::encode(serial.strip_prefix(&[0]).unwrap_or(serial));
            let statuses = self.0.lock().expect("lock");
            statuses.get(&hex).copied().unwrap_or(SignerStatus::Good)
        }
    }

    fn cert(pem: &[u8]) -> Certificate {
        Certificate::from_pem(pem).expect("test certificate")
    }

    /// The test CA of testdata/documents standing in for pkid's: its root the anchor, its
    /// issuing CA one of pkid's issuers.
    fn verifier(index: Arc<FakeIndex>) -> DocumentVerifier {
        DocumentVerifier::new(
            vec![cert(&vector("root.crt"))],
            vec![("issuing".into(), cert(&vector("issuing.crt")))],
            index,
            1024 * 1024,
        )
    }

    fn p256_serial() -> String {
        let c = cert(&vector("p256-signer.crt"));
        pkid_protocols::serial::to_hex(&c.tbs_certificate.serial_number)
    }

    #[test]
    fn a_detached_signature_by_a_pkid_signer_is_valid_and_names_the_signer() {
        // Signed without -certfile: the chain is completed from pkid's issuing CA.
        let v = verifier(Arc::default());
        let verdict = v.verify(
            &vector("doc.txt"),
            Some(&vector("p256-nosmimecap.p7s")),
            NOW,
        );
        assert_eq!(verdict.problem, None);
        assert!(verdict.is_valid());
        assert_eq!(verdict.kind, DocumentKind::Detached);
        assert_eq!(verdict.signed_at, SIGNED_AT);
        let signer = verdict.signer.expect("signer");
        assert_eq!(signer.serial, p256_serial());
        assert_eq!(signer.pkid_issuer.as_deref(), Some("issuing"));
        assert_eq!(
            signer.subject_dn,
            "CN=Trần Thị Bích,O=Trường THPT Phan Châu Trinh,C=VN"
        );
        assert_eq!(
            signer.issuer_dn,
            "CN=pkid Test Document Issuing CA,O=pkid test,C=VN"
        );
        let der = cert(&vector("p256-signer.crt")).to_der().expect("der");
        assert_eq!(
            signer.sha256_fingerprint,
            hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der))
        );
    }

    #[test]
    fn a_signed_pdf_is_recognised_without_a_detached_signature() {
        let v = verifier(Arc::default());
        let verdict = v.verify(&vector("signed-rsa.pdf"), None, NOW);
        assert_eq!(verdict.kind, DocumentKind::Pdf);
        assert_eq!(verdict.problem, None);
        let verdict = v.verify(&vector("appended.pdf"), None, NOW);
        assert_eq!(verdict.problem.map(|p| p.code()), Some("not-whole-file"));
        let verdict = v.verify(&vector("unsigned.pdf"), None, NOW);
        assert_eq!(verdict.problem.map(|p| p.code()), Some("no-signature"));
    }

    #[test]
    fn an_unsigned_file_is_not_signed() {
        let verdict = verifier(Arc::default()).verify(&vector("doc.txt"), None, NOW);
        assert_eq!(verdict.kind, DocumentKind::Unsigned);
        assert_eq!(verdict.problem, Some(DocumentProblem::NotSigned));
        assert_eq!(verdict.signer, None);
    }

    #[test]
    fn a_signer_outside_the_trust_list_is_untrusted_but_named() {
        let v = DocumentVerifier::new(
            Vec::new(),
            Vec::new(),
            Arc::new(FakeIndex::default()),
            1 << 20,
        );
        let verdict = v.verify(&vector("doc.txt"), Some(&vector("p256.p7s")), NOW);
        assert_eq!(
            verdict.problem,
            Some(DocumentProblem::Document(DocumentError::UntrustedChain))
        );
        let signer = verdict
            .signer
            .expect("the signature verified, so its signer is known");
        assert_eq!(signer.pkid_issuer, None);
    }

    #[test]
    fn revoked_before_signing_is_invalid_after_signing_is_not() {
        let index = Arc::new(FakeIndex::default());
        let v = verifier(index.clone());
        let set = |status| {
            index.0.lock().expect("lock").insert(p256_serial(), status);
        };
        let check = || {
            v.verify(&vector("doc.txt"), Some(&vector("p256.p7s")), NOW)
                .problem
        };

        set(SignerStatus::Revoked {
            at: SIGNED_AT - 60,
            reason: Some(CrlReason::Superseded),
        });
        assert_eq!(
            check(),
            Some(DocumentProblem::Revoked { at: SIGNED_AT - 60 })
        );
        set(SignerStatus::Revoked {
            at: SIGNED_AT + 60,
            reason: Some(CrlReason::Superseded),
        });
        assert_eq!(
            check(),
            None,
            "revoked after it signed: the signature stands"
        );
        // Key compromise: the claimed signing time cannot be believed.
        set(SignerStatus::Revoked {
            at: SIGNED_AT + 60,
            reason: Some(CrlReason::KeyCompromise),
        });
        assert_eq!(
            check(),
            Some(DocumentProblem::Revoked { at: SIGNED_AT + 60 })
        );
        set(SignerStatus::Revoked {
            at: SIGNED_AT + 60,
            reason: Some(CrlReason::CertificateHold),
        });
        assert_eq!(
            check(),
            Some(DocumentProblem::Revoked { at: SIGNED_AT + 60 })
        );
        set(SignerStatus::Unknown);
        assert_eq!(check(), Some(DocumentProblem::StatusUnknown));
    }

    #[test]
    fn a_remembered_chain_is_still_checked_for_time_and_revocation() {
        let index = Arc::new(FakeIndex::default());
        let v = verifier(index.clone());
        let verify = |now| v.verify(&vector("doc.txt"), Some(&vector("p256.p7s")), now);
        assert_eq!(verify(NOW).problem, None);
        // Before the signer's certificate was valid: the remembered path does not cover it.
        let signer = cert(&vector("p256-signer.crt"));
        let not_before = signer
            .tbs_certificate
            .validity
            .not_before
            .to_unix_duration()
            .as_secs();
        let early = verify(not_before - 86_400);
        assert_eq!(
            early.problem.map(|p| p.code()),
            Some("certificate-not-yet-valid")
        );
        // Revoked since: the revocation is read for every document.
        index.0.lock().expect("lock").insert(
            p256_serial(),
            SignerStatus::Revoked {
                at: SIGNED_AT - 60,
                reason: None,
            },
        );
        assert_eq!(
            verify(NOW).problem,
            Some(DocumentProblem::Revoked { at: SIGNED_AT - 60 })
        );
    }

    #[test]
    fn expired_at_signing_time_is_invalid() {
        let verdict = verdict_on_doc("expired.p7s");
        assert_eq!(
            verdict.problem,
            Some(DocumentProblem::Document(
                DocumentError::CertificateExpired { depth: 0 }
            ))
        );
        assert_eq!(
            verdict.problem.map(|p| p.code()),
            Some("certificate-expired")
        );
    }

    #[test]
    fn a_signing_time_in_the_future_is_replaced_by_now() {
        let now = SIGNED_AT - 1;
        let verdict =
            verifier(Arc::default()).verify(&vector("doc.txt"), Some(&vector("p256.p7s")), now);
        assert_eq!(verdict.signed_at, now);
    }

    #[test]
    fn documents_over_the_limit_are_refused_before_parsing() {
        let v = DocumentVerifier::new(Vec::new(), Vec::new(), Arc::new(FakeIndex::default()), 1024);
        let big = vec![b'%'; 2048];
        let verdict = v.verify(&big, None, NOW);
        assert_eq!(verdict.problem.map(|p| p.code()), Some("too-large"));
        let verdict = v.verify(b"small", Some(&big), NOW);
        assert_eq!(verdict.problem.map(|p| p.code()), Some("too-large"));
    }

    #[test]
    fn a_digest_mismatch_names_no_signer() {
        let verdict = verdict_on_doc("other.p7s");
        assert_eq!(
            verdict.problem,
            Some(DocumentProblem::Document(DocumentError::DigestMismatch))
        );
        assert_eq!(verdict.signer, None);
    }

    #[test]
    fn trust_files_take_pem_bundles_or_der_and_refuse_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(
            &bundle,
            [vector("issuing.crt"), vector("root.crt")].concat(),
        )
        .expect("write");
        assert_eq!(read_certificates(&bundle).expect("read").len(), 2);
        let der = dir.path().join("root.der");
        std::fs::write(&der, cert(&vector("root.crt")).to_der().expect("der")).expect("write");
        assert_eq!(
            read_certificates(&der).expect("read"),
            vec![cert(&vector("root.crt"))]
        );
        std::fs::write(&bundle, b"not a certificate").expect("write");
        let err = read_certificates(&bundle).expect_err("garbage");
        assert!(err.to_string().contains("no certificate"), "{err}");
    }

    fn openssl(args: &[&str], dir: &Path) {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// End to end over a real data directory: a certificate pkid issued, a document signed
    /// with its key by `openssl cms -sign`, checked against pkid's root and index, then the
    /// certificate revoked for key compromise.
    #[test]
    fn a_document_signed_with_a_pkid_certificate_by_openssl_is_valid_until_its_key_is_compromised()
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        let authority =
            datadir::init(&data, &datadir::InitOptions::default(), "test").expect("init");
        let mut toml = std::fs::read_to_string(data.join("pkid.toml")).expect("pkid.toml");
        let extra = dir.path().join("extra.pem");
        std::fs::write(&extra, vector("root.crt")).expect("write");
        assert!(
            toml.contains("\ndocument_trust = []\n"),
            "pkid.toml lists no extra anchors"
        );
        let line = format!("\ndocument_trust = [{:?}]\n", extra.display().to_string());
        toml = toml.replacen("\ndocument_trust = []\n", &line, 1);
        std::fs::write(data.join("pkid.toml"), toml).expect("write");
        let config = Config::load(&data).expect("config");

        let work = dir.path();
        openssl(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "officer.key",
                "-utf8",
                "-subj",
                "/C=VN/O=Sở Y tế Đà Nẵng/CN=Lê Thị Hồng",
                "-out",
                "officer.csr",
            ],
            work,
        );
        let ra = crate::ra::RegistrationAuthority::new(authority.clone());
        let csr = std::fs::read(work.join("officer.csr")).expect("csr");
        let issued = ra.issue(&csr, "person", None, None, "test").expect("issue");
        std::fs::write(work.join("officer.der"), &issued.der).expect("write");
        openssl(
            &[
                "x509",
                "-inform",
                "DER",
                "-in",
                "officer.der",
                "-out",
                "officer.crt",
            ],
            work,
        );
        std::fs::write(work.join("đơn.txt"), "Đơn đề nghị cấp chứng thư số\n").expect("write");
        openssl(
            &[
                "cms",
                "-sign",
                "-binary",
                "-outform",
                "DER",
                "-in",
                "đơn.txt",
                "-signer",
                "officer.crt",
                "-inkey",
                "officer.key",
                "-out",
                "đơn.p7s",
            ],
            work,
        );
        let content = std::fs::read(work.join("đơn.txt")).expect("read");
        let signature = std::fs::read(work.join("đơn.p7s")).expect("read");

        let verify = || {
            let issuers: Vec<String> = authority.issuers().iter().map(|i| i.name.clone()).collect();
            let names: Vec<&str> = issuers.iter().map(String::as_str).collect();
            let index = RevocationIndex::build(authority.store().as_ref(), &names).expect("index");
            let v = DocumentVerifier::from_config(&config, &authority, Arc::new(index))
                .expect("verifier");
            assert_eq!(
                v.anchors.len(),
                2,
                "pkid's root and the document_trust file"
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs();
            v.verify(&content, Some(&signature), now + 5)
        };
        let verdict = verify();
        assert_eq!(verdict.problem, None);
        let signer = verdict.signer.expect("signer");
        assert_eq!(signer.serial, issued.serial);
        assert_eq!(signer.pkid_issuer.as_deref(), Some(crate::ca::ISSUING));
        assert!(
            signer.subject_dn.contains("CN=Lê Thị Hồng"),
            "{}",
            signer.subject_dn
        );

        ra.revoke(&issued.serial, CrlReason::KeyCompromise, None, "test")
            .expect("revoke");
        let verdict = verify();
        assert!(
            matches!(verdict.problem, Some(DocumentProblem::Revoked { .. })),
            "{:?}",
            verdict.problem
        );
    }
}
