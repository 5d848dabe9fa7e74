//! The registration authority: who may ask for what, and what each lifecycle request becomes.
//!
//! ```text
//!  operator / API ──▶ ra (decide: profile, CSR and its proof of possession, lifecycle rules)
//!                       └──▶ ca::Authority::sign_certificate (the only code that signs) ──▶ store
//! ```
//!
//! The RA never touches a key: it turns a request (issue from a CSR, renew, rekey, modify,
//! revoke, hold, release) into a fully decided [`Issuance`] or [`StatusChange`] and hands it
//! to the CA, which signs and stores it. A successor that supersedes its predecessor (rekey,
//! modify) is stored in the same transaction as the predecessor's revocation, so the two cannot
//! come apart. Every call writes an audit record, whether it succeeds or is refused.
//!
//! Reconciliation ([`RegistrationAuthority::reconcile`]) decides what becomes of an issuance
//! whose process died between reserving the serial and storing the certificate:
//!
//! ```text
//!  stale pending row (older than stale_pending_after) ─┬─ DER stored, its TBS, signed by its
//!                                                      │  issuer ─▶ completed (valid)
//!                                                      └─ otherwise ─▶ abandoned
//! ```

pub mod access;
pub mod calendar;
pub mod credentials;
pub mod desk;
pub mod documents;
pub mod report;

use crate::ca::{
    audit_target, Authority, CaError, Issuance, Issued, Issuer, Predecessor, ISSUING, ROOT,
};
use crate::config::{Config, SubscriberProfile};
use crate::store::{AuditEntry, CertStatus, CertificateRecord, ListFilter, Outcome, StatusChange};
use der::Decode;
use pkid_protocols::revocation::{self, CrlReason};
use pkid_protocols::{csr, serial};
use std::sync::Arc;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::name::Name;
use x509_cert::Certificate;

/// The key of a request and its checked proof of possession: a PKCS#10 request (PEM or DER),
/// or the CRMF request a CMP client sent (ir, cr or kur, kept by
/// `pkid_protocols::cmp::held_request` while an operator decided), whose signature POP is
/// checked again here. A CRMF request without a subject gets an empty one: the callers name
/// the subject from the RA's registered data.
fn key_request(bytes: &[u8]) -> Result<csr::VerifiedCsr, CaError> {
    let refused = |e: &dyn std::fmt::Display| CaError::Refused(e.to_string());
    if let Ok((_, msg)) = pkid_protocols::cmp::parse_held_request(bytes) {
        let v = pkid_protocols::cmp::verify_cert_request(&msg).map_err(|e| refused(&e))?;
        let key_type =
            pkid_protocols::algorithm::KeyType::of(&v.public_key).map_err(|e| refused(&e))?;
        return Ok(csr::VerifiedCsr {
            subject: v.subject.unwrap_or_default(),
            public_key: v.public_key,
            key_type,
            subject_alt_name: v.subject_alt_name,
        });
    }
    let der = csr::from_pem_or_der(bytes).map_err(|e| refused(&e))?;
    csr::verify(&der).map_err(|e| refused(&e))
}

/// The registration authority over one CA.
pub struct RegistrationAuthority {
    ca: Arc<Authority>,
}

impl RegistrationAuthority {
    /// The RA in front of `ca`.
    pub fn new(ca: Arc<Authority>) -> Self {
        Self { ca }
    }

    /// The CA this RA hands its decisions to.
    pub fn ca(&self) -> &Arc<Authority> {
        &self.ca
    }

    fn subscriber_profile(&self, name: &str) -> Result<&SubscriberProfile, CaError> {
        self.ca.config().profile(name).ok_or_else(|| {
            let known: Vec<_> = self.ca.config().profiles.keys().cloned().collect();
            CaError::Refused(format!(
                "unknown profile {name:?} (configured: {})",
                known.join(", ")
            ))
        })
    }

    /// The issuer a subscriber certificate is signed by: `name`, or the issuing CA `pkid init`
    /// made. The root signs only CA certificates.
    fn subscriber_issuer(&self, name: Option<&str>) -> Result<Arc<Issuer>, CaError> {
        let name = name.unwrap_or(ISSUING);
        if name == ROOT {
            return Err(CaError::Refused(
                "the root CA signs only CA certificates; name an issuing CA".into(),
            ));
        }
        self.ca.issuer(name).ok_or_else(|| {
            let known: Vec<String> = self
                .ca
                .issuers()
                .iter()
                .filter(|i| i.name != ROOT)
                .map(|i| i.name.clone())
                .collect();
            CaError::Refused(format!(
                "unknown issuer {name:?} (issuers: {})",
                known.join(", ")
            ))
        })
    }

    /// Issues a certificate from a PKCS#10 request (PEM or DER) under a subscriber profile,
    /// signed by `issuer` (default: the issuing CA `pkid init` made).
    pub fn issue(
        &self,
        csr_bytes: &[u8],
        profile_name: &str,
        issuer: Option<&str>,
        days: Option<u32>,
        actor: &str,
    ) -> Result<Issued, CaError> {
        self.issue_as(csr_bytes, None, profile_name, issuer, days, actor)
    }

    /// Issues from a PKCS#10 request with the subject `subject` (an RFC 4514 string) instead of
    /// the request's own: the RA's registered data names the subscriber, the request only
    /// brings the key and its proof of possession.
    pub fn issue_as(
        &self,
        csr_bytes: &[u8],
        subject: Option<&str>,
        profile_name: &str,
        issuer: Option<&str>,
        days: Option<u32>,
        actor: &str,
    ) -> Result<Issued, CaError> {
        self.ca.audited(
            actor,
            "cert.issue",
            profile_name,
            || {
                let sp = self.subscriber_profile(profile_name)?;
                let csr = key_request(csr_bytes)?;
                let subject = match subject {
                    Some(s) => pkid_protocols::name::parse(s)
                        .map_err(|e| CaError::Refused(e.to_string()))?,
                    None => csr.subject,
                };
                self.ca.sign_certificate(
                    self.subscriber_issuer(issuer)?.signing(),
                    Issuance {
                        profile: &sp.profile,
                        profile_name,
                        subject,
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
            .ca
            .store()
            .certificate(&serial)?
            .ok_or_else(|| CaError::NotFound(serial.clone()))?;
        if rec.status != CertStatus::Valid {
            return Err(CaError::Conflict(format!(
                "certificate {serial} is {}",
                rec.status.as_str()
            )));
        }
        if rec.not_after < self.ca.now() {
            return Err(CaError::Conflict(format!(
                "certificate {serial} expired {}; request a new certificate instead",
                pkid_protocols::time::rfc3339(rec.not_after)
            )));
        }
        if rec.issuer == ROOT {
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
        predecessor: Predecessor,
    ) -> Result<Issued, CaError> {
        let sp = self.subscriber_profile(&rec.profile)?;
        let (public_key, san_from_csr) = match key {
            Some(csr) => (csr.public_key, csr.subject_alt_name),
            None => (cert.tbs_certificate.subject_public_key_info.clone(), None),
        };
        // A successor comes from its predecessor's issuer.
        self.ca.sign_certificate(
            self.subscriber_issuer(Some(&rec.issuer))?.signing(),
            Issuance {
                profile: &sp.profile,
                profile_name: &rec.profile,
                subject: subject.unwrap_or_else(|| cert.tbs_certificate.subject.clone()),
                public_key,
                days: days.unwrap_or(sp.default_validity_days),
                subject_alt_name: san_from_csr.or_else(|| Self::san_of(cert)),
                replaces: Some(predecessor),
            },
        )
    }

    /// Renews: same subject and key, new serial and validity. The old certificate stays valid
    /// until it expires or is revoked.
    pub fn renew(
        &self,
        serial_hex: &str,
        days: Option<u32>,
        actor: &str,
    ) -> Result<Issued, CaError> {
        self.ca.audited(
            actor,
            "cert.renew",
            &audit_target(serial_hex),
            || {
                let (rec, cert) = self.live(serial_hex)?;
                self.successor(
                    &rec,
                    &cert,
                    None,
                    None,
                    days,
                    Predecessor::Kept(rec.serial.clone()),
                )
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
        self.rekey_with(serial_hex, || key_request(csr_bytes), days, actor)
    }

    /// As [`RegistrationAuthority::rekey`], for a new key whose proof of possession the
    /// caller checked in another form (CMP's kur carries a CRMF request, not a PKCS#10 one).
    /// `key().subject` is not used: a rekey keeps the subject.
    pub fn rekey_with(
        &self,
        serial_hex: &str,
        key: impl FnOnce() -> Result<csr::VerifiedCsr, CaError>,
        days: Option<u32>,
        actor: &str,
    ) -> Result<Issued, CaError> {
        self.ca.audited(
            actor,
            "cert.rekey",
            &audit_target(serial_hex),
            || {
                let (rec, cert) = self.live(serial_hex)?;
                let csr = key()?;
                if csr.public_key == cert.tbs_certificate.subject_public_key_info {
                    return Err(CaError::Refused(
                        "the request carries the same key; use renew".into(),
                    ));
                }
                self.successor(
                    &rec,
                    &cert,
                    None,
                    Some(csr),
                    days,
                    Predecessor::superseded(&rec.serial, actor),
                )
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
        self.ca.audited(
            actor,
            "cert.modify",
            &audit_target(serial_hex),
            || {
                let (rec, cert) = self.live(serial_hex)?;
                let csr = match csr_bytes {
                    Some(b) => Some(key_request(b)?),
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
                self.successor(
                    &rec,
                    &cert,
                    Some(new_subject),
                    csr,
                    days,
                    Predecessor::superseded(&rec.serial, actor),
                )
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
            let change = change(self.ca.now())?;
            let rec = self
                .ca
                .store()
                .certificate(&serial)?
                .ok_or_else(|| CaError::NotFound(serial.clone()))?;
            let now = self.ca.now();
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
            let rec = self.ca.store().change_status(&serial, change, &entry)?;
            tracing::info!(actor, action, target = %serial, outcome = "success", detail = %detail, "audit");
            Ok(rec)
        })();
        if let Err(e) = &result {
            if let Err(audit_err) = self.ca.audit(
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

    /// Revokes. `certificateHold` is refused here: use [`RegistrationAuthority::hold`].
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
        self.ca
            .store()
            .certificate(&serial)?
            .ok_or(CaError::NotFound(serial))
    }

    /// Certificates matching a filter.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<CertificateRecord>, CaError> {
        Ok(self.ca.store().list(filter)?)
    }
}

/// The least age, in seconds, at which a pending row is taken for a dead issuance.
///
/// After reserving its serial, a live issuance does three things: records its CRL partition
/// and stores the signed certificate (each waits at most the store's busy timeout for the
/// write lock) and signs (waits at most 30 s for a PKCS#11 session, then one `C_Sign` of
/// milliseconds to ~100 ms). An hour is two orders of magnitude past that and absorbs a wall
/// clock stepped by NTP; the busy timeout is added twice on top, so even a store configured to
/// wait very long keeps a live issuance inside the bound.
pub const MIN_STALE_PENDING_SECS: u64 = 3600;

/// Pending rows reconciliation reads at a time: each carries its TBS (about a kilobyte).
const RECONCILE_BATCH: usize = 256;

/// How old, in seconds, a pending row must be before [`RegistrationAuthority::reconcile`]
/// touches it: [`MIN_STALE_PENDING_SECS`] plus twice the store's busy timeout (rounded up).
pub fn stale_pending_after(config: &Config) -> u64 {
    let busy = config.store.busy_timeout.as_secs()
        + u64::from(config.store.busy_timeout.subsec_nanos() > 0);
    MIN_STALE_PENDING_SECS + 2 * busy
}

/// What one reconciliation pass did, serial by serial.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Rows whose stored certificate verified: now valid.
    pub completed: Vec<String>,
    /// Rows with no recoverable certificate: now abandoned (the serial stays taken).
    pub abandoned: Vec<String>,
    /// Rows holding a certificate that cannot be checked now (its issuer is not loaded): left
    /// pending for a later pass.
    pub skipped: Vec<String>,
}

/// Why a stale row's stored DER is not its certificate, or `None` if it is: the DER must
/// parse, carry exactly the reserved TBS, and be signed by `issuer`'s key.
fn unrecoverable(rec: &CertificateRecord, der: &[u8], issuer: &Issuer) -> Option<String> {
    use der::Encode;
    let cert = match Certificate::from_der(der) {
        Ok(c) => c,
        Err(e) => return Some(format!("stored DER does not parse: {e}")),
    };
    match cert.tbs_certificate.to_der() {
        Ok(tbs) if tbs == rec.tbs => {}
        Ok(_) => return Some("stored certificate is not the reserved TBS".into()),
        Err(e) => return Some(format!("stored certificate does not re-encode: {e}")),
    }
    let Some(signature) = cert.signature.as_bytes() else {
        return Some("signature has unused bits".into());
    };
    pkid_protocols::algorithm::verify(
        &issuer.certificate.tbs_certificate.subject_public_key_info,
        &cert.signature_algorithm,
        &rec.tbs,
        signature,
    )
    .err()
    .map(|e| {
        format!(
            "signature does not verify against issuer {}: {e}",
            issuer.name
        )
    })
}

impl RegistrationAuthority {
    /// Resolves every stale pending row (older than [`stale_pending_after`]): one whose stored
    /// DER is its TBS signed by its issuer is completed, any other is abandoned; each with an
    /// audit record (`cert.reconcile`) in the same transaction. Rows inside the bound are left
    /// alone, since their issuance may still be running; a row resolved meanwhile by another
    /// process is passed over. Running it again does nothing.
    ///
    /// A recovered successor is completed alone: whether its predecessor was to be superseded
    /// is not recorded, so the predecessor keeps its status for an operator to decide.
    pub fn reconcile(&self, actor: &str) -> Result<Reconciled, CaError> {
        let store = self.ca.store();
        let now = self.ca.now();
        let cutoff = now.saturating_sub(stale_pending_after(self.ca.config()));
        let mut done = Reconciled::default();
        loop {
            let rows = store.stale_pending(cutoff, RECONCILE_BATCH)?;
            let resolved_before = done.completed.len() + done.abandoned.len();
            let read = rows.len();
            for rec in rows {
                if done.skipped.contains(&rec.serial) {
                    continue;
                }
                let issuer = self.ca.issuer(&rec.issuer);
                let verdict = match (&rec.der, &issuer) {
                    (None, _) => Err("no signed certificate was stored".to_string()),
                    (Some(_), None) => {
                        tracing::warn!(serial = %rec.serial, issuer = %rec.issuer, "pending certificate of an issuer not loaded; left for a later reconcile");
                        done.skipped.push(rec.serial);
                        continue;
                    }
                    (Some(der), Some(issuer)) => match unrecoverable(&rec, der, issuer) {
                        None => Ok(der.clone()),
                        Some(why) => Err(why),
                    },
                };
                let reserved = pkid_protocols::time::rfc3339(rec.created_at);
                let mut entry = AuditEntry {
                    at: now,
                    actor: actor.to_string(),
                    action: "cert.reconcile".into(),
                    target: rec.serial.clone(),
                    outcome: Outcome::Success,
                    detail: String::new(),
                };
                let result = match &verdict {
                    Ok(der) => {
                        entry.detail = format!(
                            "completed: the stored certificate (reserved {reserved}) verifies against issuer {}",
                            rec.issuer
                        );
                        store.complete_recovered(&rec.serial, der, &entry)
                    }
                    Err(why) => {
                        entry.detail = format!(
                            "abandoned: issuance reserved {reserved} never finished; {why}"
                        );
                        store.abandon(&rec.serial, &entry)
                    }
                };
                match result {
                    Ok(()) => {
                        tracing::warn!(actor, serial = %rec.serial, detail = %entry.detail, "audit: cert.reconcile");
                        match verdict {
                            Ok(_) => done.completed.push(rec.serial),
                            Err(_) => done.abandoned.push(rec.serial),
                        }
                    }
                    // Resolved by another process between the read and the write.
                    Err(crate::store::StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let progressed = done.completed.len() + done.abandoned.len() > resolved_before;
            if read < RECONCILE_BATCH || !progressed {
                return Ok(done);
            }
        }
    }
}
