//! The CMP responder certificate of every issuer: the delegated certificate CMP answers to
//! signed requests are signed with (RFC 9483 §3.1; the CA key itself never signs protocol
//! messages, as with OCSP).
//!
//! ```text
//! issuer NAME ─▶ key cmp-NAME (configured backend; generated, or the one left by an
//!                interrupted attempt)
//!             ─▶ certificate, profile cmp-responder (digitalSignature, EKU cmcCA), signed by
//!                NAME, stored and audited (ca.cmp-responder)
//!             ─▶ certs/cmp-NAME.crt
//! ```
//!
//! Made by `pkid init` and `pkid ca add-issuer`; a data directory made before CMP signed
//! its answers gets them on the daemon's first start, and a new certificate (same key) whenever
//! the file is missing, not the key's or the issuer's, revoked or on hold, or in the last third
//! of its validity — checked at start and, while the daemon runs, at most once a minute
//! (`cmp::Responders::get`).

use super::{cert_path, replace_public, DataDirError, KeyRole};
use crate::ca::{Authority, CaError, Issuance, Issuer};
use crate::keys::{KeyBackend, KeyError, Signer};
use crate::metrics::{MeteredSigner, Metrics};
use der::Decode;
use pkid_protocols::profile::Profile;
use pkid_protocols::x509::certificate_pem;
use std::path::Path;
use std::sync::Arc;
use x509_cert::Certificate;

/// One issuer's CMP responder: its certificate and key.
pub struct CmpResponder {
    /// The issuer it answers for.
    pub issuer: String,
    /// Its certificate (signed by the issuer).
    pub certificate: Certificate,
    /// Its key.
    pub signer: Arc<dyn Signer>,
}

/// The key of an issuer's CMP responder: loaded, else generated.
fn key(
    backend: &dyn KeyBackend,
    role: &KeyRole,
    kt: pkid_protocols::KeyType,
) -> Result<Arc<dyn Signer>, DataDirError> {
    match backend.load(role) {
        Ok(k) => Ok(k),
        Err(KeyError::NotFound(_)) => match backend.generate(role, kt) {
            Err(KeyError::Exists(_)) => Ok(backend.load(role)?),
            other => {
                let k = other?;
                tracing::info!(role = %role, key = %kt.name(), backend = %backend.describe(), "generated key");
                Ok(k)
            }
        },
        Err(e) => Err(e.into()),
    }
}

/// Whether `cert` is still a good CMP responder certificate at `now`: it has more than a third
/// of its validity left (so it is replaced well before clients see it expire), and the store
/// does not record it revoked or on hold.
pub fn current(authority: &Authority, cert: &Certificate, now: u64) -> bool {
    let tbs = &cert.tbs_certificate;
    let not_before = pkid_protocols::time::unix_of(&tbs.validity.not_before);
    let not_after = pkid_protocols::time::unix_of(&tbs.validity.not_after);
    let renew_at = not_after.saturating_sub(not_after.saturating_sub(not_before) / 3);
    if now >= renew_at {
        return false;
    }
    let serial = pkid_protocols::serial::to_hex(&tbs.serial_number);
    match authority.store().certificate(&serial) {
        Ok(Some(rec)) => rec.status == crate::store::CertStatus::Valid,
        // Not stored (a file from elsewhere): replaced by one that is.
        Ok(None) => false,
        // The store unreadable: keep answering with what there is.
        Err(e) => {
            tracing::warn!(error = %e, "CMP responder: its certificate's status cannot be read");
            true
        }
    }
}

/// Refuses to certify the responder key again when its certificate in `path` was revoked for
/// keyCompromise: the key must be replaced first (removed from the key backend, so that the
/// next start generates a new one).
fn refuse_compromised(
    authority: &Authority,
    path: &Path,
    signer: &dyn Signer,
    role: &KeyRole,
) -> Result<(), DataDirError> {
    let Some(cert) = std::fs::read(path)
        .ok()
        .and_then(|pem| pkid_protocols::x509::pem_or_der(&pem, &["CERTIFICATE"]).ok())
        .and_then(|der| Certificate::from_der(&der).ok())
        .filter(|c| c.tbs_certificate.subject_public_key_info == *signer.public_key())
    else {
        return Ok(());
    };
    let serial = pkid_protocols::serial::to_hex(&cert.tbs_certificate.serial_number);
    let compromised = authority
        .store()
        .certificate(&serial)
        .ok()
        .flatten()
        .is_some_and(|r| r.reason == Some(pkid_protocols::revocation::CrlReason::KeyCompromise));
    if compromised {
        return Err(DataDirError::State(format!(
            "the CMP responder certificate {serial} was revoked for keyCompromise; its key {} is not certified again: remove it from the key backend and restart, and a new key is made",
            role.name()
        )));
    }
    Ok(())
}

/// Whether `der` is a usable CMP responder certificate of `issuer` for `signer` at `now`.
fn usable(
    der: &[u8],
    authority: &Authority,
    issuer: &Issuer,
    signer: &dyn Signer,
    now: u64,
) -> Option<Certificate> {
    let cert = Certificate::from_der(der).ok()?;
    let tbs = &cert.tbs_certificate;
    let ok = tbs.subject_public_key_info == *signer.public_key()
        && tbs.issuer == issuer.certificate.tbs_certificate.subject
        && current(authority, &cert, now);
    ok.then_some(cert)
}

/// The CMP responder of `issuer`: `certs/cmp-NAME.crt` with the `cmp-NAME` key, made (key,
/// certificate, file) when it is missing or unusable. `metrics` counts the key's signatures.
pub fn cmp_responder(
    data: &Path,
    authority: &Authority,
    backend: &dyn KeyBackend,
    issuer: &Issuer,
    metrics: Option<&Arc<Metrics>>,
    actor: &str,
) -> Result<CmpResponder, DataDirError> {
    let role = KeyRole::CmpResponder(issuer.name.clone());
    let config = authority.config();
    let signer = key(backend, &role, config.keys.algorithm)?;
    let path = cert_path(data, &role);
    let now = authority.now();
    let current = match std::fs::read(&path) {
        Ok(pem) => pkid_protocols::x509::pem_or_der(&pem, &["CERTIFICATE"])
            .ok()
            .and_then(|der| usable(&der, authority, issuer, signer.as_ref(), now)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(DataDirError::Io(format!("{}: {e}", path.display()))),
    };
    let certificate = match current {
        Some(c) => c,
        None => {
            refuse_compromised(authority, &path, signer.as_ref(), &role)?;
            let days = config.ca.responder_validity_days;
            let profile = Profile::cmp_responder(days);
            let subject = issuer.certificate.tbs_certificate.subject.clone();
            let cn =
                pkid_protocols::name::common_name(&subject).unwrap_or_else(|| issuer.name.clone());
            let subject =
                pkid_protocols::name::with_common_name(&subject, &format!("{cn} CMP Responder"))
                    .map_err(|e| CaError::Refused(e.to_string()))?;
            let issued = authority.audited(
                actor,
                "ca.cmp-responder",
                &issuer.name,
                || {
                    authority.sign_certificate(
                        issuer.signing(),
                        Issuance {
                            profile: &profile,
                            profile_name: &profile.name,
                            subject,
                            public_key: signer.public_key().clone(),
                            days,
                            subject_alt_name: None,
                            replaces: None,
                        },
                    )
                },
                |i| format!("serial={} key={}", i.serial, role.name()),
            )?;
            replace_public(&path, &certificate_pem(&issued.der))?;
            tracing::info!(issuer = %issuer.name, serial = %issued.serial, "issued the CMP responder certificate");
            Certificate::from_der(&issued.der)
                .map_err(|e| DataDirError::State(format!("CMP responder certificate: {e}")))?
        }
    };
    let signer = match metrics {
        Some(m) => MeteredSigner::wrap(signer, &role.name(), m.clone()),
        None => signer,
    };
    Ok(CmpResponder {
        issuer: issuer.name.clone(),
        certificate,
        signer,
    })
}
