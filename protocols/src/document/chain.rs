//! The signer's path to a trust anchor (RFC 5280 §6, the parts a document signature needs).
//!
//! ```text
//!  signer ─(issuer name = subject, signature by its key)─▶ intermediate … ─▶ anchor
//!   depth 0: valid at `at`, keyUsage (if present) digitalSignature or nonRepudiation
//!   depth 1…: valid at `at`, basicConstraints cA, keyUsage (if present) keyCertSign,
//!             pathLenConstraint respected
//!   anchor:  valid at `at`; its key verifies the last certificate below it
//! ```
//!
//! Candidates come from the signature's own certificates and whatever the caller adds (pkid's
//! issuing CAs), tried depth-first with backtracking, so a stray certificate with the right
//! name cannot hide the right one. Every certificate of a path, the anchor included, must be
//! valid at the time checked (the signing time): an expired root is not a basis for trust.
//! Name constraints and certificate policies are not processed; a certificate marking either
//! (or any extension pkid does not know) critical is refused, as RFC 5280 §4.2 requires.

use super::signature;
use super::DocumentError;
use const_oid::db::rfc5280 as ext;
use const_oid::AssociatedOid;
use der::Encode;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::Certificate;

/// Most certificates in a path, signer and anchor included: national PKIs run root → policy
/// CA → issuing CA → subscriber (four); six leaves room and bounds the search.
pub const MAX_CHAIN_DEPTH: usize = 6;
/// Most issuer candidates one search checks a signature for: bounds the work of a signature
/// carrying many certificates with the same name.
const MAX_CANDIDATES: usize = 64;

/// Extensions pkid reads or may safely ignore when critical.
const KNOWN_CRITICAL: [der::asn1::ObjectIdentifier; 6] = [
    ext::ID_CE_BASIC_CONSTRAINTS,
    ext::ID_CE_KEY_USAGE,
    ext::ID_CE_EXT_KEY_USAGE,
    ext::ID_CE_SUBJECT_ALT_NAME,
    ext::ID_CE_SUBJECT_KEY_IDENTIFIER,
    ext::ID_CE_AUTHORITY_KEY_IDENTIFIER,
];

/// Finds a path from `signer` through `intermediates` to one of `anchors`, every certificate
/// of it valid at `at_unix` (Unix seconds). Returns the path, signer first, anchor last.
pub fn verify_chain(
    signer: &Certificate,
    intermediates: &[Certificate],
    anchors: &[Certificate],
    at_unix: u64,
) -> Result<Vec<Certificate>, DocumentError> {
    check_common(signer, 0, at_unix)?;
    if let Some(usage) = key_usage(signer)? {
        if !(usage.digital_signature() || usage.non_repudiation()) {
            return Err(DocumentError::SignerKeyUsage);
        }
    }
    if anchors.contains(signer) {
        return Ok(vec![signer.clone()]);
    }
    let mut search = Search {
        intermediates,
        anchors,
        at: at_unix,
        candidates_left: MAX_CANDIDATES,
        first_failure: None,
    };
    let mut path = vec![signer];
    if search.extend(&mut path) {
        return Ok(path.into_iter().cloned().collect());
    }
    Err(search
        .first_failure
        .unwrap_or(DocumentError::UntrustedChain))
}

/// One depth-first path search.
struct Search<'a> {
    intermediates: &'a [Certificate],
    anchors: &'a [Certificate],
    at: u64,
    candidates_left: usize,
    /// The first specific reason a candidate was refused (expired, not a CA…): a more useful
    /// answer than "untrusted" when no path is found.
    first_failure: Option<DocumentError>,
}

impl<'a> Search<'a> {
    fn fail(&mut self, e: DocumentError) {
        self.first_failure.get_or_insert(e);
    }

    /// Whether another candidate may be tried.
    fn spend(&mut self) -> bool {
        self.candidates_left = self.candidates_left.saturating_sub(1);
        self.candidates_left > 0
    }

    /// Whether `candidate` signed `child`; an unsupported algorithm is remembered as the reason.
    fn signed_by(&mut self, child: &Certificate, candidate: &Certificate) -> bool {
        match issued_by(child, candidate) {
            Ok(()) => true,
            Err(DocumentError::BadSignature) => false,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    /// Extends `path` (its last certificate still needing an issuer) to an anchor.
    fn extend(&mut self, path: &mut Vec<&'a Certificate>) -> bool {
        let Some(&child) = path.last() else {
            return false;
        };
        let depth = path.len();
        let issuer = &child.tbs_certificate.issuer;
        for anchor in self.anchors {
            if anchor.tbs_certificate.subject != *issuer || !self.spend() {
                continue;
            }
            if !self.signed_by(child, anchor) {
                continue;
            }
            match validity(anchor, depth, self.at) {
                Ok(()) => {
                    path.push(anchor);
                    return true;
                }
                Err(e) => self.fail(e),
            }
        }
        // Room for this intermediate and an anchor above it.
        if depth + 2 > MAX_CHAIN_DEPTH {
            return false;
        }
        for ca in self.intermediates {
            if ca.tbs_certificate.subject != *issuer || path.contains(&ca) || !self.spend() {
                continue;
            }
            if !self.signed_by(child, ca) {
                continue;
            }
            if let Err(e) = check_issuer(ca, depth, self.at) {
                self.fail(e);
                continue;
            }
            path.push(ca);
            if self.extend(path) {
                return true;
            }
            path.pop();
        }
        false
    }
}

/// Checks what every certificate of the path needs: validity at `at` and no unknown critical
/// extension.
fn check_common(cert: &Certificate, depth: usize, at: u64) -> Result<(), DocumentError> {
    validity(cert, depth, at)?;
    for e in cert.tbs_certificate.extensions.iter().flatten() {
        if e.critical && !KNOWN_CRITICAL.contains(&e.extn_id) {
            return Err(DocumentError::CriticalExtension(e.extn_id.to_string()));
        }
    }
    Ok(())
}

/// Checks an intermediate at `depth` (1 = the signer's issuer): a CA allowed to sign
/// certificates, with a path length constraint that allows the `depth - 1` CAs below it.
fn check_issuer(ca: &Certificate, depth: usize, at: u64) -> Result<(), DocumentError> {
    check_common(ca, depth, at)?;
    let not_ca = DocumentError::NotCa { depth };
    let constraints = extension::<BasicConstraints>(ca)?;
    let Some(constraints) = constraints.filter(|c| c.ca) else {
        return Err(not_ca);
    };
    if constraints
        .path_len_constraint
        .is_some_and(|n| usize::from(n) < depth - 1)
    {
        return Err(not_ca);
    }
    if key_usage(ca)?.is_some_and(|u| !u.key_cert_sign()) {
        return Err(not_ca);
    }
    Ok(())
}

fn validity(cert: &Certificate, depth: usize, at: u64) -> Result<(), DocumentError> {
    let v = &cert.tbs_certificate.validity;
    if at < v.not_before.to_unix_duration().as_secs() {
        return Err(DocumentError::CertificateNotYetValid { depth });
    }
    if at > v.not_after.to_unix_duration().as_secs() {
        return Err(DocumentError::CertificateExpired { depth });
    }
    Ok(())
}

fn extension<'a, T: der::Decode<'a> + AssociatedOid>(
    cert: &'a Certificate,
) -> Result<Option<T>, DocumentError> {
    cert.tbs_certificate
        .get::<T>()
        .map(|found| found.map(|(_, value)| value))
        .map_err(|e| DocumentError::MalformedCms(format!("certificate extension {}: {e}", T::OID)))
}

fn key_usage(cert: &Certificate) -> Result<Option<KeyUsage>, DocumentError> {
    extension::<KeyUsage>(cert)
}

/// Whether `issuer`'s key made `child`'s signature (with the algorithm `child` names, the
/// same inside and outside its TBSCertificate, RFC 5280 §4.1.1.2). Public so the daemon can
/// tell which of its CAs issued a signer without trusting a look-alike name.
pub fn issued_by(child: &Certificate, issuer: &Certificate) -> Result<(), DocumentError> {
    if child.signature_algorithm != child.tbs_certificate.signature {
        return Err(DocumentError::BadSignature);
    }
    let tbs = child
        .tbs_certificate
        .to_der()
        .map_err(|e| DocumentError::MalformedCms(format!("certificate: {e}")))?;
    let signature = child
        .signature
        .as_bytes()
        .ok_or(DocumentError::BadSignature)?;
    signature::verify(
        &issuer.tbs_certificate.subject_public_key_info,
        &child.signature_algorithm,
        None,
        &tbs,
        signature,
    )
}
