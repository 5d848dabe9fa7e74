//! The certificate authority: the only code that signs certificates.
//!
//! What to issue, renew, rekey, modify or revoke is decided by the registration authority
//! (`crate::ra`); this module holds the issuers and signs what it is handed. Every certificate
//! takes the same path ([`Authority::sign_certificate`]): draw a random
//! serial → build the to-be-signed certificate (pure) → lint it against its profile (pure, before
//! the key is touched) → record serial and TBS in the store → sign the TBS with the issuer's
//! [`Signer`] ([`keys::sign`]) → assemble it in `protocols`, which verifies the signature with
//! the issuer's public key → store the certificate durably → return it. Every state-changing
//! call writes an audit record, whether it succeeds or is refused.

use crate::clock::Clock;
use crate::config::Config;
use crate::keys::{self, Signer};
use crate::store::{AuditEntry, NewCertificate, Outcome, StatusChange, Store, StoreError};
use arc_swap::ArcSwap;
use der::Decode;
use pkid_protocols::profile::Profile;
use pkid_protocols::revocation::CrlReason;
use pkid_protocols::serial;
use pkid_protocols::x509::{self, CertificateError, CertificateTemplate, IssuerInfo};
use std::sync::Arc;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::name::Name;
use x509_cert::Certificate;

pub use crate::config::{ISSUING, ROOT};
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
            StoreError::Conflict { .. } | StoreError::DuplicateName(_) | StoreError::Changed(_) => {
                CaError::Conflict(e.to_string())
            }
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
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            CaError::Refused(_) | CaError::NotFound(_) | CaError::Conflict(_) => Outcome::Refused,
            CaError::Unavailable(_) | CaError::Internal(_) => Outcome::Failed,
        }
    }
}

/// Makes a signed certificate durable: `(serial, der)` → the completion of the reserved row
/// (see [`Authority::sign_certificate_stored_by`]).
pub type StoreSigned<'a> = dyn FnMut(&str, &[u8]) -> Result<(), StoreError> + 'a;

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
    /// The certificate this one replaces, and what becomes of it.
    pub replaces: Option<Predecessor>,
}

/// The certificate an issuance replaces.
#[derive(Clone, Debug)]
pub enum Predecessor {
    /// Renewed or reissued: it stays valid until it expires or is revoked.
    Kept(String),
    /// Superseded (rekey, modify): revoked with reason `superseded` in the same transaction that
    /// stores its successor.
    Superseded {
        /// Its serial.
        serial: String,
        /// Who asked (for the revocation's audit record).
        actor: String,
    },
}

impl Predecessor {
    /// A predecessor to revoke as superseded, on `actor`'s request.
    pub fn superseded(serial: &str, actor: &str) -> Self {
        Self::Superseded {
            serial: serial.to_string(),
            actor: actor.to_string(),
        }
    }

    /// Its serial.
    pub fn serial(&self) -> &str {
        match self {
            Self::Kept(s) | Self::Superseded { serial: s, .. } => s,
        }
    }
}

/// The CA: issuers, policy, store and clock.
pub struct Authority {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// In the order they were loaded or added (the root first); only ever appended to, so a
    /// running daemon can take on an issuer added by the CLI.
    issuers: ArcSwap<Vec<Arc<Issuer>>>,
}

/// The audit target for a serial typed by an operator: canonical when it parses.
pub(crate) fn audit_target(serial_hex: &str) -> String {
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
        let issuers = issuers.into_iter().map(Arc::new).collect();
        Self {
            config,
            store,
            clock,
            issuers: ArcSwap::from_pointee(issuers),
        }
    }

    /// An issuer by name.
    pub fn issuer(&self, name: &str) -> Option<Arc<Issuer>> {
        self.issuers.load().iter().find(|i| i.name == name).cloned()
    }

    /// Whether an issuer of that name is served (no reference taken: for request paths).
    pub fn has_issuer(&self, name: &str) -> bool {
        self.issuers.load().iter().any(|i| i.name == name)
    }

    /// How many issuers there are (they are only ever added, so a change in the count is a
    /// change in the set).
    pub fn issuer_count(&self) -> usize {
        self.issuers.load().len()
    }

    /// Every issuer, the root first, in the order they were loaded or added.
    pub fn issuers(&self) -> Vec<Arc<Issuer>> {
        self.issuers.load().iter().cloned().collect()
    }

    /// The issuer `name` and the issuers above it, up to a self-issued one (the root): each
    /// next one is the issuer whose subject is this one's issuer name. Empty when `name` is not
    /// served; stops where a parent is not served here.
    pub fn chain(&self, name: &str) -> Vec<Arc<Issuer>> {
        let all = self.issuers.load();
        let mut chain: Vec<Arc<Issuer>> = Vec::new();
        let mut at = all.iter().find(|i| i.name == name).cloned();
        while let Some(i) = at {
            if chain.len() > all.len() || chain.iter().any(|c| c.name == i.name) {
                break;
            }
            let tbs = &i.certificate.tbs_certificate;
            at = (tbs.issuer != tbs.subject)
                .then(|| {
                    all.iter()
                        .find(|p| p.certificate.tbs_certificate.subject == tbs.issuer)
                        .cloned()
                })
                .flatten();
            chain.push(i);
        }
        chain
    }

    /// Takes on another issuer (one added while the daemon runs) and returns it; one already
    /// present by that name is kept, and returned instead.
    pub fn add_issuer(&self, issuer: Issuer) -> Arc<Issuer> {
        let issuer = Arc::new(issuer);
        let mut result = issuer.clone();
        self.issuers.rcu(|current| {
            if let Some(existing) = current.iter().find(|i| i.name == issuer.name) {
                result = existing.clone();
                return current.clone();
            }
            result = issuer.clone();
            let mut next = Vec::clone(current);
            next.push(issuer.clone());
            Arc::new(next)
        });
        result
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The clock every service of this CA runs on.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The current time.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Writes one audit record (and its INFO log line).
    pub fn audit(
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
        self.sign_and_store(issuer, req, None)
    }

    /// As [`Authority::sign_certificate`], but the signed certificate is made durable by
    /// `store_it(serial, der)` instead of a plain completion: for a certificate that must
    /// commit together with another record (an added issuer's responder certificate and the
    /// issuer's registry row). `store_it` must complete the reserved serial.
    pub fn sign_certificate_stored_by(
        &self,
        issuer: SigningIssuer<'_>,
        req: Issuance<'_>,
        store_it: &mut StoreSigned<'_>,
    ) -> Result<Issued, CaError> {
        self.sign_and_store(issuer, req, Some(store_it))
    }

    fn sign_and_store(
        &self,
        issuer: SigningIssuer<'_>,
        req: Issuance<'_>,
        mut store_it: Option<&mut StoreSigned<'_>>,
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
            let shard =
                crate::crl::scope::shard_for(&self.config.crl, issuer.name, &template.serial);
            let with_crl_urls = issuer.info.filter(|_| self.config.crl.enabled).map(|i| {
                let (cdp, freshest) = crate::crl::scope::certificate_urls(
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
                replaces: req.replaces.as_ref().map(|p| p.serial().to_string()),
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
            // Durable before anyone sees it; a superseded predecessor ends in the same commit.
            if let Some(store_it) = store_it.as_mut() {
                store_it(&serial_hex, &der)?;
                return Ok(Issued {
                    serial: serial_hex,
                    der,
                });
            }
            match &req.replaces {
                Some(Predecessor::Superseded { serial, actor }) => {
                    let entry = AuditEntry {
                        at: now,
                        actor: actor.clone(),
                        action: "cert.revoke".into(),
                        target: serial.clone(),
                        outcome: Outcome::Success,
                        detail: format!("reason=superseded by {serial_hex}"),
                    };
                    let change = StatusChange::Revoke {
                        reason: CrlReason::Superseded,
                        at: now,
                        invalidity_date: None,
                    };
                    self.store
                        .complete_superseding(&serial_hex, &der, serial, change, &entry)?;
                }
                Some(Predecessor::Kept(_)) | None => self.store.complete(&serial_hex, &der)?,
            }
            return Ok(Issued {
                serial: serial_hex,
                der,
            });
        }
        Err(CaError::Internal(
            "could not draw an unused serial number".into(),
        ))
    }

    /// Signs a CRL that `issuer` issues: the CRL service builds and publishes CRLs, the CA is
    /// what signs them (as it signs certificates). The signature is verified against the
    /// issuer's key before the CRL is returned.
    pub fn sign_crl(
        &self,
        issuer: &Issuer,
        crl: pkid_protocols::crl::UnsignedCrl,
    ) -> Result<pkid_protocols::crl::SignedCrl, pkid_protocols::crl::CrlError> {
        keys::sign(issuer.signer.as_ref(), crl)
    }
}
