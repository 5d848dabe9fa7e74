//! Issuance and the certificate lifecycle: issue, renew, rekey, modify, revoke, hold, release.
//!
//! Every certificate takes the same path ([`Authority::sign_certificate`]): draw a random
//! serial → build the to-be-signed certificate (pure) → lint it against its profile (pure, before
//! the key is touched) → record serial and TBS in the store → sign the TBS with the issuer's
//! [`Signer`] ([`keys::sign`]) → assemble it in `protocols`, which verifies the signature with
//! the issuer's public key → store the certificate durably → return it. Every state-changing
//! call writes an audit record, whether it succeeds or is refused.

use crate::clock::Clock;
use crate::config::{Config, SubscriberProfile};
use crate::keys::{self, Signer};
use crate::store::{
    AuditEntry, CertStatus, CertificateRecord, ListFilter, NewCertificate, Outcome, StatusChange,
    Store, StoreError,
};
use der::Decode;
use pkid_protocols::profile::Profile;
use pkid_protocols::revocation::{self, CrlReason};
use pkid_protocols::x509::{self, CertificateError, CertificateTemplate, IssuerInfo};
use pkid_protocols::{csr, serial};
use std::collections::HashMap;
use std::sync::Arc;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::name::Name;
use x509_cert::Certificate;

/// Name of the self-signed root CA.
pub const ROOT: &str = "root";
/// Name of the CA that issues subscriber certificates.
pub const ISSUING: &str = "issuing";
/// Attempts at drawing an unused serial before giving up (a collision of 127 random bits means
/// a broken random generator, not bad luck).
const SERIAL_ATTEMPTS: usize = 3;

/// A CA the daemon signs for.
pub struct Issuer {
    /// Its name (`root`, `issuing`).
    pub name: String,
    /// Its certificate.
    pub certificate: Certificate,
    /// Its certificate, DER.
    pub der: Vec<u8>,
    /// Its key.
    pub signer: Arc<dyn Signer>,
    /// What it writes into certificates it issues.
    pub info: IssuerInfo,
}

impl Issuer {
    /// Wraps a loaded CA certificate and key. Certificates it signs point at its own published
    /// certificate, CRL and (with `with_ocsp`) the OCSP responder.
    pub fn new(
        name: &str,
        der: Vec<u8>,
        signer: Arc<dyn Signer>,
        public_url: &str,
        with_ocsp: bool,
    ) -> Result<Self, CaError> {
        let certificate = Certificate::from_der(&der)
            .map_err(|e| CaError::Internal(format!("{name} certificate: {e}")))?;
        if certificate.tbs_certificate.subject_public_key_info != *signer.public_key() {
            return Err(CaError::Internal(format!(
                "the {name} key does not match the {name} certificate"
            )));
        }
        let info = IssuerInfo {
            name: certificate.tbs_certificate.subject.clone(),
            key_identifier: pkid_protocols::algorithm::key_identifier(signer.public_key()),
            ocsp_url: with_ocsp.then(|| format!("{public_url}/ocsp")),
            ca_issuers_url: Some(format!("{public_url}/ca/{name}.crt")),
            crl_url: Some(format!("{public_url}/crl/{name}.crl")),
            freshest_crl_url: None,
        };
        Ok(Self {
            name: name.to_string(),
            certificate,
            der,
            signer,
            info,
        })
    }

    /// notAfter of the CA certificate, Unix seconds.
    pub fn not_after(&self) -> u64 {
        pkid_protocols::time::unix_of(&self.certificate.tbs_certificate.validity.not_after)
    }

    /// This issuer as a signer of certificates.
    pub fn signing(&self) -> SigningIssuer<'_> {
        SigningIssuer {
            name: &self.name,
            info: Some(&self.info),
            signer: self.signer.as_ref(),
            not_after: Some(self.not_after()),
        }
    }
}

/// Who signs a certificate being issued.
pub struct SigningIssuer<'a> {
    /// Name recorded in the store.
    pub name: &'a str,
    /// Issuer fields; `None` makes the certificate self-signed (a root).
    pub info: Option<&'a IssuerInfo>,
    /// The key.
    pub signer: &'a dyn Signer,
    /// The issuer certificate's notAfter: nothing it signs may outlast it.
    pub not_after: Option<u64>,
}

/// Why a lifecycle operation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The request is malformed or breaks policy (bad CSR, weak key, unknown profile, too long).
    #[error("{0}")]
    Refused(String),
    /// No certificate with that serial.
    #[error("no certificate with serial {0}")]
    NotFound(String),
    /// The certificate's state does not allow the operation (revoked, expired, pending).
    #[error("{0}")]
    Conflict(String),
    /// The store or key backend is unavailable; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// Our fault: a lint failure on a certificate we built, a bad signature from the backend.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for CaError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(s) => CaError::NotFound(s),
            StoreError::Conflict { .. } => CaError::Conflict(e.to_string()),
            StoreError::DuplicateSerial(_) => CaError::Internal(e.to_string()),
            StoreError::Unavailable(_) => CaError::Unavailable(e.to_string()),
        }
    }
}

impl From<CertificateError> for CaError {
    fn from(e: CertificateError) -> Self {
        match e {
            CertificateError::SignerUnavailable(m) => CaError::Unavailable(m),
            other => CaError::Internal(other.to_string()),
        }
    }
}

impl CaError {
    /// The audit outcome this error stands for.
    fn outcome(&self) -> Outcome {
        match self {
            CaError::Refused(_) | CaError::NotFound(_) | CaError::Conflict(_) => Outcome::Refused,
            CaError::Unavailable(_) | CaError::Internal(_) => Outcome::Failed,
        }
    }
}

/// A freshly issued certificate.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Canonical hex serial.
    pub serial: String,
    /// DER.
    pub der: Vec<u8>,
}

/// What an issuance needs besides the issuer.
pub struct Issuance<'a> {
    /// The profile.
    pub profile: &'a Profile,
    /// Its name as stored.
    pub profile_name: &'a str,
    /// Subject.
    pub subject: Name,
    /// Subject key.
    pub public_key: spki::SubjectPublicKeyInfoOwned,
    /// Validity, days.
    pub days: u32,
    /// subjectAltName to copy.
    pub subject_alt_name: Option<SubjectAltName>,
    /// Predecessor.
    pub replaces: Option<String>,
}

/// The CA: issuers, policy, store and clock.
pub struct Authority {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    issuers: HashMap<String, Arc<Issuer>>,
}

/// The audit target for a serial typed by an operator: canonical when it parses.
fn audit_target(serial_hex: &str) -> String {
    serial::canonical_hex(serial_hex).unwrap_or_else(|| serial_hex.to_string())
}

/// Draws a fresh random serial.
pub fn random_serial() -> Result<x509_cert::serial_number::SerialNumber, CaError> {
    let mut bytes = [0u8; serial::SERIAL_OCTETS];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| CaError::Internal("random generator failed".into()))?;
    Ok(serial::from_random(bytes))
}

impl Authority {
    /// An authority over the given issuers.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        issuers: Vec<Issuer>,
    ) -> Self {
        let issuers = issuers
            .into_iter()
            .map(|i| (i.name.clone(), Arc::new(i)))
            .collect();
        Self {
            config,
            store,
            clock,
            issuers,
        }
    }

    /// An issuer by name.
    pub fn issuer(&self, name: &str) -> Option<&Arc<Issuer>> {
        self.issuers.get(name)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The current time.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: &str,
    ) -> Result<(), CaError> {
        let entry = AuditEntry {
            at: self.clock.now(),
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            outcome,
            detail: detail.to_string(),
        };
        tracing::info!(
            actor,
            action,
            target,
            outcome = outcome.as_str(),
            detail,
            "audit"
        );
        Ok(self.store.audit(&entry)?)
    }

    /// Runs `op` and audits its result, success or refusal (the success detail comes from
    /// `describe`).
    pub fn audited<T>(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        op: impl FnOnce() -> Result<T, CaError>,
        describe: impl FnOnce(&T) -> String,
    ) -> Result<T, CaError> {
        match op() {
            Ok(v) => {
                self.audit(actor, action, target, Outcome::Success, &describe(&v))?;
                Ok(v)
            }
            Err(e) => {
                // The operation's error is what the caller needs; a failing audit write is logged.
                if let Err(audit_err) =
                    self.audit(actor, action, target, e.outcome(), &e.to_string())
                {
                    tracing::error!(error = %audit_err, "could not write audit record");
                }
                Err(e)
            }
        }
    }

    /// The one path every certificate takes. See the module documentation.
    pub fn sign_certificate(
        &self,
        issuer: SigningIssuer<'_>,
        req: Issuance<'_>,
    ) -> Result<Issued, CaError> {
        let now = self.clock.now();
        let not_before = now.saturating_sub(self.config.ca.backdate_secs);
        let not_after = now + u64::from(req.days) * 86_400 - 1;
        if req.days == 0 || req.days > req.profile.max_validity_days {
            return Err(CaError::Refused(format!(
                "validity of {} days is outside 1..={} allowed by profile {}",
                req.days, req.profile.max_validity_days, req.profile.name
            )));
        }
        if let Some(limit) = issuer.not_after.filter(|limit| not_after > *limit) {
            return Err(CaError::Refused(format!(
                "validity would outlast the {} CA, which expires {}",
                issuer.name,
                pkid_protocols::time::rfc3339(limit)
            )));
        }
        let key_type = pkid_protocols::KeyType::of(&req.public_key)
            .map_err(|e| CaError::Refused(e.to_string()))?;
        if !req.profile.allows_key(key_type) {
            return Err(CaError::Refused(format!(
                "profile {} does not allow {} keys",
                req.profile.name,
                key_type.name()
            )));
        }
        for _ in 0..SERIAL_ATTEMPTS {
            let template = CertificateTemplate {
                serial: random_serial()?,
                subject: req.subject.clone(),
                public_key: req.public_key.clone(),
                not_before,
                not_after,
                subject_alt_name: req.subject_alt_name.clone(),
            };
            // CRL partition (assigned once, at issuance) and the CRL URLs that go with it.
            let shard = crate::crl::shard_for(&self.config.crl, issuer.name, &template.serial);
            let with_crl_urls = issuer.info.filter(|_| self.config.crl.enabled).map(|i| {
                let (cdp, freshest) = crate::crl::certificate_urls(
                    &self.config.crl,
                    &self.config.server.public_url,
                    issuer.name,
                    shard,
                );
                IssuerInfo {
                    crl_url: Some(cdp),
                    freshest_crl_url: freshest,
                    ..i.clone()
                }
            });
            let tbs = x509::build_tbs(
                req.profile,
                with_crl_urls.as_ref().or(issuer.info),
                &template,
                issuer.signer.algorithm(),
            )?;
            // Subject problems are the requester's; anything else the lint finds is our bug.
            x509::lint(req.profile, &tbs, issuer.signer.algorithm(), now).map_err(|e| match e {
                CertificateError::Refused(m) => CaError::Refused(m),
                other => CaError::Internal(other.to_string()),
            })?;
            let unsigned =
                x509::ToBeSigned::new(&tbs, issuer.signer.algorithm(), issuer.signer.public_key())?;
            let serial_hex = serial::to_hex(&tbs.serial_number);
            let record = NewCertificate {
                serial: serial_hex.clone(),
                issuer: issuer.name.to_string(),
                subject: tbs.subject.to_string(),
                profile: req.profile_name.to_string(),
                not_before,
                not_after,
                tbs: unsigned.tbs().to_vec(),
                replaces: req.replaces.clone(),
                created_at: now,
            };
            match self.store.reserve(&record) {
                Err(StoreError::DuplicateSerial(s)) => {
                    tracing::error!(serial = %s, "serial collision; drawing another");
                    continue;
                }
                other => other?,
            }
            if let Some(shard) = shard {
                self.store.set_crl_shard(&serial_hex, shard)?;
            }
            let der = keys::sign(issuer.signer, unsigned)?;
            // Durable before anyone sees it.
            self.store.complete(&serial_hex, &der)?;
            return Ok(Issued {
                serial: serial_hex,
                der,
            });
        }
        Err(CaError::Internal(
            "could not draw an unused serial number".into(),
        ))
    }

    fn subscriber_profile(&self, name: &str) -> Result<&SubscriberProfile, CaError> {
        self.config.profile(name).ok_or_else(|| {
            let known: Vec<_> = self.config.profiles.keys().cloned().collect();
            CaError::Refused(format!(
                "unknown profile {name:?} (configured: {})",
                known.join(", ")
            ))
        })
    }

    fn issuing(&self) -> Result<&Arc<Issuer>, CaError> {
        self.issuer(ISSUING)
            .ok_or_else(|| CaError::Internal("the issuing CA is not loaded".into()))
    }

    /// Issues a certificate from a PKCS#10 request (PEM or DER) under a subscriber profile.
    pub fn issue(
        &self,
        csr_bytes: &[u8],
        profile_name: &str,
        days: Option<u32>,
        actor: &str,
    ) -> Result<Issued, CaError> {
        self.audited(
            actor,
            "cert.issue",
            profile_name,
            || {
                let sp = self.subscriber_profile(profile_name)?;
                let der =
                    csr::from_pem_or_der(csr_bytes).map_err(|e| CaError::Refused(e.to_string()))?;
                let csr = csr::verify(&der).map_err(|e| CaError::Refused(e.to_string()))?;
                self.sign_certificate(
                    self.issuing()?.signing(),
                    Issuance {
                        profile: &sp.profile,
                        profile_name,
                        subject: csr.subject,
                        public_key: csr.public_key,
                        days: days.unwrap_or(sp.default_validity_days),
                        subject_alt_name: csr.subject_alt_name,
                        replaces: None,
                    },
                )
            },
            |i| format!("serial={}", i.serial),
        )
    }

    /// A certificate that exists, is issued, unexpired and not revoked or held.
    fn live(&self, serial_hex: &str) -> Result<(CertificateRecord, Certificate), CaError> {
        let serial = serial::canonical_hex(serial_hex)
            .ok_or_else(|| CaError::Refused(format!("{serial_hex:?} is not a serial number")))?;
        let rec = self
            .store
            .certificate(&serial)?
            .ok_or_else(|| CaError::NotFound(serial.clone()))?;
        if rec.status != CertStatus::Valid {
            return Err(CaError::Conflict(format!(
                "certificate {serial} is {}",
                rec.status.as_str()
            )));
        }
        if rec.not_after < self.clock.now() {
            return Err(CaError::Conflict(format!(
                "certificate {serial} expired {}; request a new certificate instead",
                pkid_protocols::time::rfc3339(rec.not_after)
            )));
        }
        if rec.issuer != ISSUING {
            return Err(CaError::Refused(format!(
                "certificate {serial} is a CA certificate; its lifecycle is managed by `pkid init`"
            )));
        }
        let der = rec
            .der
            .as_deref()
            .ok_or_else(|| CaError::Conflict(format!("certificate {serial} was never stored")))?;
        let cert = Certificate::from_der(der).map_err(|e| CaError::Internal(e.to_string()))?;
        Ok((rec, cert))
    }

    fn san_of(cert: &Certificate) -> Option<SubjectAltName> {
        cert.tbs_certificate
            .get::<SubjectAltName>()
            .ok()
            .flatten()
            .map(|(_, san)| san)
    }

    /// Issues a successor: `subject`/`key` default to the predecessor's.
    fn successor(
        &self,
        rec: &CertificateRecord,
        cert: &Certificate,
        subject: Option<Name>,
        key: Option<csr::VerifiedCsr>,
        days: Option<u32>,
    ) -> Result<Issued, CaError> {
        let sp = self.subscriber_profile(&rec.profile)?;
        let (public_key, san_from_csr) = match key {
            Some(csr) => (csr.public_key, csr.subject_alt_name),
            None => (cert.tbs_certificate.subject_public_key_info.clone(), None),
        };
        self.sign_certificate(
            self.issuing()?.signing(),
            Issuance {
                profile: &sp.profile,
                profile_name: &rec.profile,
                subject: subject.unwrap_or_else(|| cert.tbs_certificate.subject.clone()),
                public_key,
                days: days.unwrap_or(sp.default_validity_days),
                subject_alt_name: san_from_csr.or_else(|| Self::san_of(cert)),
                replaces: Some(rec.serial.clone()),
            },
        )
    }

    fn supersede(&self, old: &str, actor: &str, new: &str) -> Result<(), CaError> {
        let now = self.clock.now();
        let change = StatusChange::Revoke {
            reason: CrlReason::Superseded,
            at: now,
            invalidity_date: None,
        };
        let entry = AuditEntry {
            at: now,
            actor: actor.into(),
            action: "cert.revoke".into(),
            target: old.into(),
            outcome: Outcome::Success,
            detail: format!("reason=superseded by {new}"),
        };
        self.store.change_status(old, change, &entry)?;
        Ok(())
    }

    /// Renews: same subject and key, new serial and validity. The old certificate stays valid
    /// until it expires or is revoked.
    pub fn renew(
        &self,
        serial_hex: &str,
        days: Option<u32>,
        actor: &str,
    ) -> Result<Issued, CaError> {
        self.audited(
            actor,
            "cert.renew",
            &audit_target(serial_hex),
            || {
                let (rec, cert) = self.live(serial_hex)?;
                self.successor(&rec, &cert, None, None, days)
            },
            |i| format!("serial={}", i.serial),
        )
    }

    /// Rekeys: same subject, the new key from `csr_bytes` (its proof of possession checked). The
    /// old certificate is revoked as superseded, since its key is being replaced (lost or locked
    /// key device, routine key change).
    pub fn rekey(
        &self,
        serial_hex: &str,
        csr_bytes: &[u8],
        days: Option<u32>,
        actor: &str,
    ) -> Result<Issued, CaError> {
        self.audited(
            actor,
            "cert.rekey",
            &audit_target(serial_hex),
            || {
                let (rec, cert) = self.live(serial_hex)?;
                let der =
                    csr::from_pem_or_der(csr_bytes).map_err(|e| CaError::Refused(e.to_string()))?;
                let csr = csr::verify(&der).map_err(|e| CaError::Refused(e.to_string()))?;
                if csr.public_key == cert.tbs_certificate.subject_public_key_info {
                    return Err(CaError::Refused(
                        "the request carries the same key; use renew".into(),
                    ));
                }
                let issued = self.successor(&rec, &cert, None, Some(csr), days)?;
                self.supersede(&rec.serial, actor, &issued.serial)?;
                Ok(issued)
            },
            |i| format!("serial={}", i.serial),
        )
    }

    /// Changes subject information: a new certificate with the new subject (and the new key if a
    /// CSR is given); the old one is revoked with reason superseded.
    pub fn modify(
        &self,
        serial_hex: &str,
        subject: Option<&str>,
        csr_bytes: Option<&[u8]>,
        days: Option<u32>,
        actor: &str,
    ) -> Result<Issued, CaError> {
        self.audited(
            actor,
            "cert.modify",
            &audit_target(serial_hex),
            || {
                let (rec, cert) = self.live(serial_hex)?;
                let csr = match csr_bytes {
                    Some(b) => {
                        let der =
                            csr::from_pem_or_der(b).map_err(|e| CaError::Refused(e.to_string()))?;
                        Some(csr::verify(&der).map_err(|e| CaError::Refused(e.to_string()))?)
                    }
                    None => None,
                };
                let new_subject = match (subject, &csr) {
                    (Some(s), _) => pkid_protocols::name::parse(s)
                        .map_err(|e| CaError::Refused(e.to_string()))?,
                    (None, Some(c)) => c.subject.clone(),
                    (None, None) => {
                        return Err(CaError::Refused("modify needs --subject or --csr".into()))
                    }
                };
                if new_subject == cert.tbs_certificate.subject && csr.is_none() {
                    return Err(CaError::Refused(
                        "the subject is unchanged; use renew".into(),
                    ));
                }
                let issued = self.successor(&rec, &cert, Some(new_subject), csr, days)?;
                self.supersede(&rec.serial, actor, &issued.serial)?;
                Ok(issued)
            },
            |i| format!("serial={}", i.serial),
        )
    }

    fn change(
        &self,
        serial_hex: &str,
        action: &'static str,
        change: impl FnOnce(u64) -> Result<StatusChange, CaError>,
        detail: String,
        actor: &str,
    ) -> Result<CertificateRecord, CaError> {
        let target = serial::canonical_hex(serial_hex);
        let result = (|| {
            let serial = target.clone().ok_or_else(|| {
                CaError::Refused(format!("{serial_hex:?} is not a serial number"))
            })?;
            let change = change(self.clock.now())?;
            let rec = self
                .store
                .certificate(&serial)?
                .ok_or_else(|| CaError::NotFound(serial.clone()))?;
            let now = self.clock.now();
            if rec.not_after < now {
                return Err(CaError::Conflict(format!(
                    "certificate {serial} has expired; its status can no longer change"
                )));
            }
            if rec.issuer == ROOT {
                return Err(CaError::Refused(format!(
                    "certificate {serial} is a CA certificate; CA certificates are not suspended or \
                     revoked with `pkid cert` (revoke them in a key ceremony and publish the root CRL)"
                )));
            }
            let entry = AuditEntry {
                at: now,
                actor: actor.into(),
                action: action.into(),
                target: serial.clone(),
                outcome: Outcome::Success,
                detail: detail.clone(),
            };
            let rec = self.store.change_status(&serial, change, &entry)?;
            tracing::info!(actor, action, target = %serial, outcome = "success", detail = %detail, "audit");
            Ok(rec)
        })();
        if let Err(e) = &result {
            if let Err(audit_err) = self.audit(
                actor,
                action,
                target.as_deref().unwrap_or(serial_hex),
                e.outcome(),
                &e.to_string(),
            ) {
                tracing::error!(error = %audit_err, "could not write audit record");
            }
        }
        result
    }

    /// Revokes. `certificateHold` is refused here: use [`Authority::hold`].
    pub fn revoke(
        &self,
        serial_hex: &str,
        reason: CrlReason,
        invalidity_date: Option<u64>,
        actor: &str,
    ) -> Result<CertificateRecord, CaError> {
        let detail = format!(
            "reason={}{}",
            revocation::name(reason),
            invalidity_date
                .map(|t| format!(" invalidity={}", pkid_protocols::time::rfc3339(t)))
                .unwrap_or_default()
        );
        self.change(
            serial_hex,
            "cert.revoke",
            |at| {
                if reason == CrlReason::CertificateHold {
                    return Err(CaError::Refused(
                        "use `pkid cert hold` to suspend a certificate".into(),
                    ));
                }
                if invalidity_date.is_some_and(|t| t > at) {
                    return Err(CaError::Refused(
                        "the invalidity date is in the future".into(),
                    ));
                }
                Ok(StatusChange::Revoke {
                    reason,
                    at,
                    invalidity_date,
                })
            },
            detail,
            actor,
        )
    }

    /// Suspends (revoked with reason certificateHold until released).
    pub fn hold(&self, serial_hex: &str, actor: &str) -> Result<CertificateRecord, CaError> {
        self.change(
            serial_hex,
            "cert.hold",
            |at| Ok(StatusChange::Hold { at }),
            String::new(),
            actor,
        )
    }

    /// Lifts a hold.
    pub fn release(&self, serial_hex: &str, actor: &str) -> Result<CertificateRecord, CaError> {
        self.change(
            serial_hex,
            "cert.release",
            |_| Ok(StatusChange::Release),
            String::new(),
            actor,
        )
    }

    /// A certificate record by serial.
    pub fn show(&self, serial_hex: &str) -> Result<CertificateRecord, CaError> {
        let serial = serial::canonical_hex(serial_hex)
            .ok_or_else(|| CaError::Refused(format!("{serial_hex:?} is not a serial number")))?;
        self.store
            .certificate(&serial)?
            .ok_or(CaError::NotFound(serial))
    }

    /// Certificates matching a filter.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<CertificateRecord>, CaError> {
        Ok(self.store.list(filter)?)
    }
}
