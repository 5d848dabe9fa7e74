//! The request desk: where organisations file requests and RA officers work them.
//!
//! ```text
//!             ┌───────────── return ──────────────┐
//!             ▼                                   │
//! submit ─▶ submitted ─accept─▶ accepted ─approve─▶ approved ─fulfil─▶ fulfilled
//!   │   ▲                          ▲  │                 │
//!   │   └──── resubmit ◀─ returned │  └─ return/reject  └─ (token, central, recover:
//!   │                              │                       fulfilled by the device or
//!   └─▶ awaiting-original ─original-received                the signing service)
//!         (document missing or not validly signed)     any open state ─reject─▶ rejected
//! ```
//!
//! A submission whose document carries a valid signature by an officer of the submitting
//! organisation is accepted at once, and its deadline starts then; any other waits in
//! `awaiting-original` until an RA officer records the paper original. Fulfilment goes through
//! [`crate::ra::RegistrationAuthority`] (and so the CA), never around it. Every call checks the
//! caller's role and reach ([`super::access`]) on the server; reads outside the reach are "not
//! found", actions outside it "forbidden", and both refusals are audited.

mod enrollment;
pub use enrollment::{CredentialInput, CredentialView};

use super::access::{Principal, Reach, Via};
use super::calendar::Calendar;
use super::credentials;
use super::documents::{DocumentVerifier, RevocationLookup, SignerStatus};
use super::RegistrationAuthority;
use crate::ca::CaError;
use crate::clock::Clock;
use crate::config::{Config, MAX_BULK_REQUESTS};
use crate::keys::seal::DataSealer;
use crate::store::ra::*;
use crate::store::{AuditEntry, Outcome, Store, StoreError};
use aws_lc_rs::digest;
use base64::Engine;
use pkid_protocols::revocation::{self, CrlReason};
use pkid_protocols::{csr, serial};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::OffsetDateTime;

pub use super::calendar::{local_rfc3339, HO_CHI_MINH as VIETNAM};
/// Longest list page.
pub const MAX_PAGE: usize = 500;
/// Default list page.
pub const DEFAULT_PAGE: usize = 50;
/// Longest free-text field (names, titles, reasons), characters.
const MAX_TEXT_CHARS: usize = 512;

/// One field's problem, with the row of a bulk submission it is in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Row (0-based) of a bulk submission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    /// The field, as a JSON path (`subscriber.email`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            row: None,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why an RA call did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeskError {
    /// No valid credentials.
    #[error("authentication required")]
    Unauthenticated,
    /// The caller's role or reach does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// No such record within the caller's reach.
    #[error("{0}")]
    NotFound(String),
    /// Fields are missing or wrong.
    #[error("the request has {} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// The record's state does not allow this, or it changed meanwhile.
    #[error("{0}")]
    Conflict(String),
    /// A document or batch is over its limit.
    #[error("{0}")]
    TooLarge(String),
    /// The store or key backend is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// Our fault.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for DeskError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(s) => DeskError::NotFound(format!("no such record: {s}")),
            StoreError::DuplicateName(s) => DeskError::Conflict(format!("{s:?} already exists")),
            StoreError::Changed(_) | StoreError::Conflict { .. } => {
                DeskError::Conflict(e.to_string())
            }
            StoreError::DuplicateSerial(_) => DeskError::Internal(e.to_string()),
            StoreError::Unavailable(_) => DeskError::Unavailable("store unavailable".into()),
        }
    }
}

impl From<CaError> for DeskError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::Refused(m) => DeskError::Invalid(vec![FieldError::new("", m)]),
            CaError::NotFound(s) => DeskError::NotFound(format!("no certificate {s}")),
            CaError::Conflict(m) => DeskError::Conflict(m),
            CaError::Unavailable(m) => DeskError::Unavailable(m),
            CaError::Internal(m) => DeskError::Internal(m),
        }
    }
}

/// The subscriber part of a request as filed.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriberInput {
    /// Full name, exactly as on the national id card.
    pub name: Option<String>,
    /// Official email (the organisation's domain).
    pub email: Option<String>,
    /// Phone (stored encrypted).
    pub phone: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Organisation unit.
    pub unit: Option<String>,
    /// National id number (stored encrypted).
    pub id_number: Option<String>,
    /// Roles that bar a central key: `authorised-signatory` (signs for the organisation),
    /// `finance` (financial or state-budget transactions). Checked at filing, not stored.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

/// A request document as filed.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    /// File name.
    pub filename: String,
    /// The file, base64.
    pub content_base64: String,
    /// A detached CMS signature over the file, base64 (absent for a signed PDF).
    pub signature_base64: Option<String>,
}

/// A request document to check before filing (`POST /api/v1/documents/check`).
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentCheckInput {
    /// The organisation the request would be filed for (default: the caller's own).
    pub organisation: Option<String>,
    /// The document.
    pub document: DocumentInput,
}

/// What checking a document before filing found: the verdict filing it would record now.
/// Nothing is stored.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentCheckView {
    /// The organisation it was checked for.
    pub organisation: String,
    /// File name.
    pub filename: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Whether the signature is valid evidence (a request filed with it is accepted at once).
    pub valid: bool,
    /// Signer's subject.
    pub signer_subject: Option<String>,
    /// Signer's certificate serial.
    pub signer_serial: Option<String>,
    /// Signing time relied on (RFC 3339).
    pub signed_at: Option<String>,
    /// Why it is not valid evidence (`code: detail`).
    pub problem: Option<String>,
}

/// One request as filed (`POST /api/v1/requests`).
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    /// `issue`, `renew`, `modify`, `revoke` or `recover`.
    pub kind: String,
    /// The submitting organisation (default: the officer's own).
    pub organisation: Option<String>,
    /// The certificate profile (issue).
    pub profile: Option<String>,
    /// The issuer (default: the issuing CA).
    pub issuer: Option<String>,
    /// The subscriber.
    pub subscriber: Option<SubscriberInput>,
    /// PKCS#10, PEM (key origin `csr`).
    pub csr: Option<String>,
    /// `csr` (default), `token` or `central`.
    pub key_origin: Option<String>,
    /// The certificate concerned, serial hex (renew, modify, revoke, recover).
    pub certificate: Option<String>,
    /// Revocation reason (`keyCompromise`, `affiliationChanged`, `superseded`,
    /// `cessationOfOperation`, `unspecified`, …).
    pub reason: Option<String>,
    /// A `recover` request of a remote-signing account (key origin `central`, the
    /// certificate one of its credentials): `unlock` (locked after wrong codes) or `reenrol`
    /// (a lost phone or a forgotten password: a new activation link).
    #[serde(default)]
    pub recovery: Option<String>,
    /// The signed request document.
    pub document: Option<DocumentInput>,
}

/// A revocation with the subscriber's one-time code (`POST /api/v1/revocations`): no token,
/// no certificate, no key; the code is the credential.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRevocationInput {
    /// The certificate's serial, hex.
    pub certificate: String,
    /// The one-time revocation code from the fulfilment mail (case, spaces and dashes do not
    /// matter).
    pub code: String,
}

/// What a code holder is told: the revocation request, without the dossier's personal data.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CodeRevocationView {
    /// The request's id.
    pub id: i64,
    /// `accepted`: an RA officer revokes the certificate within the deadline.
    pub state: &'static str,
    /// The certificate, serial hex.
    pub certificate: String,
    /// When it was accepted (RFC 3339, +07:00).
    pub accepted_at: Option<String>,
    /// The 12-hour revocation deadline (RFC 3339, +07:00).
    pub due_at: Option<String>,
}

/// A bulk submission: many requests of one organisation under one document.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    /// The signed document covering every row.
    pub document: Option<DocumentInput>,
    /// The requests (at most 1,000), each without its own document.
    pub requests: Vec<RequestInput>,
}

/// An action on a request (`POST /api/v1/requests/{id}/transitions`).
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    /// `accept`, `approve`, `return`, `reject`, `resubmit` or `original-received`.
    pub action: String,
    /// Why (required to return or reject).
    pub reason: Option<String>,
    /// With `resubmit` only: the corrected dossier, a request as filed (same kind and
    /// organisation), checked like a new one; it replaces the returned request's dossier (a new
    /// `document`, if given, is verified and attached). Without it, the request goes back as it
    /// was.
    pub corrected: Option<RequestInput>,
}

/// The subscriber as shown to those in reach.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriberView {
    /// Full name.
    pub name: Option<String>,
    /// Official email.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Unit.
    pub unit: Option<String>,
    /// National id number.
    pub id_number: Option<String>,
}

/// A request document's verification result as shown.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentView {
    /// Id (`GET /api/v1/documents/{id}` returns the bytes).
    pub id: i64,
    /// File name.
    pub filename: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Whether the signature is valid evidence (counts in place of paper).
    pub valid: bool,
    /// Signer's subject.
    pub signer_subject: Option<String>,
    /// Signer's certificate serial.
    pub signer_serial: Option<String>,
    /// Signing time relied on (RFC 3339).
    pub signed_at: Option<String>,
    /// Why it is not valid evidence.
    pub problem: Option<String>,
}

/// A request as answered.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    /// Id.
    pub id: i64,
    /// Kind.
    pub kind: &'static str,
    /// State.
    pub state: &'static str,
    /// Organisation id.
    pub organisation: String,
    /// Profile.
    pub profile: Option<String>,
    /// Key origin.
    pub key_origin: &'static str,
    /// Issuer.
    pub issuer: Option<String>,
    /// The subscriber (erased fields are null).
    pub subscriber: SubscriberView,
    /// The certificate concerned.
    pub certificate: Option<String>,
    /// The certificate fulfilment issued.
    pub issued_certificate: Option<String>,
    /// Revocation reason.
    pub reason: Option<String>,
    /// What a recover request does to a remote-signing account: `unlock` or `reenrol`.
    pub recovery: Option<&'static str>,
    /// The document.
    pub document: Option<DocumentView>,
    /// Bulk submission id.
    pub batch: Option<String>,
    /// Who filed it.
    pub submitted_by: String,
    /// When (RFC 3339, +07:00).
    pub submitted_at: String,
    /// When accepted.
    pub accepted_at: Option<String>,
    /// The deadline.
    pub due_at: Option<String>,
    /// When fulfilled.
    pub fulfilled_at: Option<String>,
    /// When closed.
    pub closed_at: Option<String>,
    /// Past its deadline and not fulfilled.
    pub overdue: bool,
}

/// One history entry as shown.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// When (RFC 3339, +07:00).
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// From state.
    pub from: Option<&'static str>,
    /// To state.
    pub to: &'static str,
    /// Why.
    pub reason: Option<String>,
}

/// A list query.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this state.
    pub state: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this organisation.
    pub organisation: Option<String>,
    /// Only overdue requests.
    pub overdue: Option<bool>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
    /// Page size (default 50, at most 500).
    pub limit: Option<usize>,
    /// `newest` (default: newest first) or `queue` (the RA queue: open requests only,
    /// overdue first, then by the nearest deadline, then those without one, oldest first).
    pub order: Option<String>,
}

/// A report query (`GET /api/v1/reports`).
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// The subtree's root (default: everything in the caller's reach).
    pub organisation: Option<String>,
    /// First day, YYYY-MM-DD (Asia/Ho_Chi_Minh).
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// A reason given with an action on an issuer.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonInput {
    /// Why.
    pub reason: String,
}

/// An issuance pause as answered.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PauseView {
    /// The issuer.
    pub issuer: String,
    /// Since (RFC 3339).
    pub paused_at: String,
    /// By.
    pub paused_by: String,
    /// Why.
    pub reason: String,
    /// Until (absent while in force).
    pub resumed_at: Option<String>,
}

impl From<&IssuancePause> for PauseView {
    fn from(p: &IssuancePause) -> Self {
        Self {
            issuer: p.issuer.clone(),
            paused_at: local_rfc3339(p.paused_at),
            paused_by: p.paused_by.clone(),
            reason: p.reason.clone(),
            resumed_at: p.resumed_at.map(local_rfc3339),
        }
    }
}

/// A dual-control action as answered.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ConfirmationView {
    /// Id (`POST /api/v1/confirmations/{id}/confirm`).
    pub id: i64,
    /// `issuance.resume` or `issuer.revoke`.
    pub action: String,
    /// The issuer.
    pub target: String,
    /// Why.
    pub reason: Option<String>,
    /// Who asked.
    pub requested_by: String,
    /// When (RFC 3339).
    pub requested_at: String,
    /// Who confirmed (absent while pending).
    pub confirmed_by: Option<String>,
}

impl From<&Confirmation> for ConfirmationView {
    fn from(c: &Confirmation) -> Self {
        Self {
            id: c.id,
            action: c.action.clone(),
            target: c.target.clone(),
            reason: c.reason.clone(),
            requested_by: c.requested_by.clone(),
            requested_at: local_rfc3339(c.requested_at),
            confirmed_by: c.confirmed_by.clone(),
        }
    }
}

/// A page of requests.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RequestPage {
    /// The requests, newest first.
    pub items: Vec<RequestView>,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

/// A new organisation.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganisationInput {
    /// Slug: lower-case letters, digits and `-`.
    pub id: String,
    /// Legal name.
    pub name: String,
    /// Registry or tax id.
    pub registry_id: Option<String>,
    /// Province code.
    pub province: Option<String>,
    /// Parent organisation.
    pub parent: Option<String>,
    /// Contact email.
    pub email: Option<String>,
    /// Profiles it may request (default: all).
    #[serde(default)]
    pub profiles: Vec<String>,
    /// `education`, `training`, `health` or `other` (default).
    pub sector: Option<String>,
}

/// An organisation as answered.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct OrganisationView {
    /// Id.
    pub id: String,
    /// Legal name.
    pub name: String,
    /// Registry id.
    pub registry_id: Option<String>,
    /// Province code.
    pub province: Option<String>,
    /// Parent.
    pub parent: Option<String>,
    /// Contact email.
    pub email: Option<String>,
    /// Profiles it may request (empty: all).
    pub profiles: Vec<String>,
    /// Sector.
    pub sector: String,
}

impl From<&Organisation> for OrganisationView {
    fn from(o: &Organisation) -> Self {
        Self {
            id: o.id.clone(),
            name: o.name.clone(),
            registry_id: o.registry_id.clone(),
            province: o.province.clone(),
            parent: o.parent.clone(),
            email: o.email.clone(),
            profiles: o.profiles.clone(),
            sector: o.sector.clone(),
        }
    }
}

/// A new operator.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorInput {
    /// Login id.
    pub id: String,
    /// Full name.
    pub name: String,
    /// `org-officer`, `ra-officer`, `auditor` or `ca-admin`.
    pub role: String,
    /// The organisation (org-officers).
    pub organisation: Option<String>,
    /// `all`, `province:CODE` or `org:ID` (RA officers, auditors; default `all`).
    pub scope: Option<String>,
    /// Email.
    pub email: Option<String>,
}

/// An operator as answered (never its secrets).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct OperatorView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: &'static str,
    /// Organisation.
    pub organisation: Option<String>,
    /// Scope.
    pub scope: String,
    /// Email.
    pub email: Option<String>,
    /// Whether a portal password is set.
    pub has_password: bool,
    /// Whether a TOTP second factor is set.
    pub has_totp: bool,
}

impl From<&Operator> for OperatorView {
    fn from(o: &Operator) -> Self {
        Self {
            id: o.id.clone(),
            name: o.name.clone(),
            role: o.role.as_str(),
            organisation: o.organisation.clone(),
            scope: o.scope.to_string(),
            email: o.email.clone(),
            has_password: o.password_hash.is_some(),
            has_totp: o.totp_sealed.is_some(),
        }
    }
}

fn text(field: &str, value: &Option<String>, errors: &mut Vec<FieldError>) -> Option<String> {
    let v = value.as_ref()?.trim();
    if v.is_empty() {
        return None;
    }
    if v.chars().count() > MAX_TEXT_CHARS || v.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            format!("at most {MAX_TEXT_CHARS} characters, no control characters"),
        ));
        return None;
    }
    Some(v.to_owned())
}

/// A plausible email address: one `@`, a dot in the domain, no spaces. Deliverability is the
/// mail server's business; this stops typing mistakes at the form.
fn plausible_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !e.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

fn check_slug(field: &str, id: &str) -> Result<(), FieldError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "1 to 64 lower-case letters, digits, '-' or '.'",
        ))
    }
}

/// What a decoded document is, before verification.
struct Filed {
    content: Vec<u8>,
    signature: Option<Vec<u8>>,
    filename: String,
}

/// What the daemon does after the desk commits: set once by the composition root (the
/// command line has none; a running daemon's follower and notifier catch up on their own).
pub trait AfterCommit: Send + Sync {
    /// A certificate was issued or revoked: bring this process's status view (the revocation
    /// index, the OCSP cache, the CRLs) up to date before the caller is answered, so that OCSP
    /// never contradicts what the API just said.
    fn status_changed(&self);
    /// Notices were queued: wake the notification worker.
    fn notices_queued(&self);
}

/// A working-day calendar replaced when the configuration is reloaded.
pub type LiveCalendar = Arc<arc_swap::ArcSwap<Calendar>>;

/// The request desk.
pub struct RequestDesk {
    after: std::sync::OnceLock<Arc<dyn AfterCommit>>,
    store: Arc<dyn Store>,
    lifecycle: Option<Arc<RegistrationAuthority>>,
    config: arc_swap::ArcSwap<Config>,
    /// Shared with EST and CMP ([`RequestDesk::live_calendar`]), so a reload reaches their
    /// machine requests' deadlines too.
    calendar: LiveCalendar,
    verifier: Option<DocumentVerifier>,
    sealer: Option<Arc<dyn DataSealer>>,
    clock: Arc<dyn Clock>,
}

/// Revocation of document signers read from the store, for a desk without the daemon's
/// in-memory index (the command line, benchmarks).
pub struct StoreRevocation(pub Arc<dyn Store>);

impl RevocationLookup for StoreRevocation {
    fn status(&self, issuer: &str, serial: &[u8]) -> SignerStatus {
        let Some(hex) = serial::canonical_hex(&hex::encode(serial)) else {
            return SignerStatus::Unknown;
        };
        match self.0.certificate(&hex) {
            Ok(Some(rec)) if rec.issuer == issuer => match rec.status {
                crate::store::CertStatus::Valid => SignerStatus::Good,
                crate::store::CertStatus::Revoked | crate::store::CertStatus::Hold => {
                    SignerStatus::Revoked {
                        at: rec.revoked_at.unwrap_or(0),
                        reason: rec.reason,
                    }
                }
                _ => SignerStatus::Unknown,
            },
            _ => SignerStatus::Unknown,
        }
    }
}

/// What the desk is built from.
pub struct DeskParts {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The lifecycle RA (absent when the CA keys are not loaded: nothing can be fulfilled).
    pub lifecycle: Option<Arc<RegistrationAuthority>>,
    /// The configuration.
    pub config: Arc<Config>,
    /// The working-day calendar.
    pub calendar: Calendar,
    /// The document verifier (absent without the CA: no document is valid evidence).
    pub verifier: Option<DocumentVerifier>,
    /// The personal-data sealer (absent: phone and id numbers are refused).
    pub sealer: Option<Arc<dyn DataSealer>>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

impl RequestDesk {
    /// The desk over its parts.
    pub fn new(p: DeskParts) -> Self {
        Self {
            store: p.store,
            lifecycle: p.lifecycle,
            config: arc_swap::ArcSwap::new(p.config),
            calendar: Arc::new(arc_swap::ArcSwap::from_pointee(p.calendar)),
            verifier: p.verifier,
            sealer: p.sealer,
            clock: p.clock,
            after: std::sync::OnceLock::new(),
        }
    }

    /// The working-day calendar in use, as a handle that follows reloads: EST and CMP file
    /// their machine requests with it, so their deadlines count the calendar the desk counts.
    pub fn live_calendar(&self) -> LiveCalendar {
        self.calendar.clone()
    }

    /// Applies a reloaded configuration's `[ra]` section (SIGHUP): deadlines, working hours,
    /// limits, retention, and the calendar file, read again. A calendar that does not parse is
    /// logged and the one in use kept. Document trust, profiles and `[notify]` change only on
    /// restart. Returns whether the new section was applied.
    pub fn reload(&self, new: &Config) -> bool {
        match Calendar::load(&new.ra.calendar) {
            Ok(c) => self.calendar.store(Arc::new(c)),
            Err(e) => {
                tracing::error!(error = %e, calendar = %new.ra.calendar.display(), "the reloaded [ra] section is refused: its calendar is not valid; keeping the one in use");
                return false;
            }
        }
        let mut applied = (**self.config.load()).clone();
        applied.ra = new.ra.clone();
        self.config.store(Arc::new(applied));
        true
    }

    /// Runs the after-commit hook for a certificate issued or revoked outside the desk (EST's
    /// enrollments): this process's status view catches up before the caller answers.
    pub fn status_changed(&self) {
        self.committed(false, true);
    }

    /// The desk's clock (remote signing runs on the same one).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// The data-key sealer, when the key backend is loaded (remote signing seals subscriber
    /// keys and TOTP secrets under it).
    pub fn sealer(&self) -> Option<Arc<dyn DataSealer>> {
        self.sealer.clone()
    }

    /// The approved `issue` requests whose key is made in the key backend (`central`) and the
    /// approved `recover` requests of remote-signing accounts, oldest first, at most `limit`:
    /// what the remote-signing fulfilment worker picks up.
    pub fn approved_central(&self, limit: usize) -> Result<Vec<RequestRecord>, DeskError> {
        let mut found = Vec::new();
        for kind in [RequestKind::Issue, RequestKind::Recover] {
            // Filtered by key origin in the store: approved token requests waiting for their
            // devices (a rollout files thousands) must not crowd central ones out of the read.
            found.extend(
                self.store
                    .requests(&RequestFilter {
                        state: Some(RequestState::Approved),
                        kind: Some(kind),
                        key_origin: Some(KeyOrigin::Central),
                        limit: 1000,
                        ..RequestFilter::default()
                    })?
                    .into_iter()
                    .filter(|r| {
                        r.issued_certificate.is_none()
                            // A recover request of an escrowed key is released by an operator.
                            && (r.kind == RequestKind::Issue || r.recovery.is_some())
                    }),
            );
        }
        found.sort_by_key(|r| r.id);
        found.truncate(limit);
        Ok(found)
    }

    /// Sets what runs after each commit (once; later calls are ignored).
    pub fn after_commit(&self, hook: Arc<dyn AfterCommit>) {
        let _ = self.after.set(hook);
    }

    /// Runs the after-commit hook: `notices` when the commit queued notices, `status` when it
    /// issued or revoked a certificate.
    fn committed(&self, notices: bool, status: bool) {
        if let Some(h) = self.after.get() {
            if status {
                h.status_changed();
            }
            if notices {
                h.notices_queued();
            }
        }
    }

    /// The desk of a data directory: its calendar, its document trust, the data key when the
    /// key backend is loaded, and the lifecycle RA when the CA is.
    pub fn open(
        config: &Config,
        store: Arc<dyn Store>,
        authority: Option<Arc<crate::ca::Authority>>,
        keys: Option<&dyn crate::keys::KeyBackend>,
        revocation: Option<Arc<dyn RevocationLookup>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, DeskError> {
        let verifier = match &authority {
            Some(a) => {
                let lookup = revocation.unwrap_or_else(|| Arc::new(StoreRevocation(store.clone())));
                Some(
                    DocumentVerifier::from_config(config, a, lookup).map_err(|e| {
                        DeskError::Unavailable(format!("request-document trust: {e}"))
                    })?,
                )
            }
            None => None,
        };
        let calendar = Calendar::load(&config.ra.calendar).map_err(|e| {
            DeskError::Unavailable(format!("calendar {}: {e}", config.ra.calendar.display()))
        })?;
        let year = OffsetDateTime::from_unix_timestamp(clock.now() as i64)
            .map(|t| t.to_offset(VIETNAM).year())
            .unwrap_or(1970);
        if !calendar.covers(year) {
            tracing::warn!(year, "the working-day calendar does not cover this year: only weekends and fixed holidays are counted; add the Government's notice to the calendar file");
        }
        let sealer = match keys {
            Some(k) => Some(
                k.sealer()
                    .map_err(|e| DeskError::Unavailable(format!("the data key: {e}")))?,
            ),
            None => None,
        };
        Ok(Self::new(DeskParts {
            store,
            lifecycle: authority.map(|a| Arc::new(RegistrationAuthority::new(a))),
            config: Arc::new(config.clone()),
            calendar,
            verifier,
            sealer,
            clock,
        }))
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: String,
    ) -> AuditEntry {
        AuditEntry {
            at: self.now(),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            outcome,
            detail,
        }
    }

    /// Records a refusal in the audit log (best effort: the refusal stands either way) and
    /// returns it.
    fn refuse(&self, who: &Principal, action: &str, target: &str, e: DeskError) -> DeskError {
        let entry = self.audit(
            &who.actor(),
            action,
            target,
            Outcome::Refused,
            e.to_string(),
        );
        if let Err(err) = self.store.audit(&entry) {
            tracing::error!(error = %err, "audit of a refusal");
        }
        e
    }

    // ---- authentication ----------------------------------------------------------------

    fn principal(&self, operator: Operator, via: Via) -> Result<Principal, DeskError> {
        let path = match (&operator.role, &operator.scope, &operator.organisation) {
            (Role::OrgOfficer, _, Some(org)) => self.store.organisation(org)?.map(|o| o.path),
            (_, Scope::Organisation(org), _) => self.store.organisation(org)?.map(|o| o.path),
            _ => None,
        };
        Ok(Principal::Operator {
            operator,
            via,
            path,
        })
    }

    /// The operator a bearer token belongs to. Expired, revoked and unknown tokens, and tokens
    /// of removed operators, are all [`DeskError::Unauthenticated`].
    pub fn authenticate_token(&self, token: &str) -> Result<Principal, DeskError> {
        if !token.starts_with(credentials::TOKEN_PREFIX) || token.len() > 128 {
            return Err(DeskError::Unauthenticated);
        }
        let hash = credentials::token_hash(token);
        match self.store.operator_by_token(&hash, self.now())? {
            Some(op) => self.principal(op, Via::Token),
            None => Err(DeskError::Unauthenticated),
        }
    }

    /// The caller a verified TLS client certificate identifies: the operator it is registered
    /// to, or else — when pkid issued it and it is valid — its subscriber.
    pub fn authenticate_certificate(
        &self,
        leaf_der: &[u8],
        serial_hex: &str,
        subject: &str,
    ) -> Result<Principal, DeskError> {
        let fingerprint = digest::digest(&digest::SHA256, leaf_der);
        if let Some(op) = self.store.operator_by_certificate(fingerprint.as_ref())? {
            return self.principal(op, Via::Certificate);
        }
        match self.store.certificate(serial_hex)? {
            Some(rec) if rec.der.as_deref() == Some(leaf_der) => Ok(Principal::Subscriber {
                serial: rec.serial,
                subject: subject.into(),
            }),
            _ => Err(DeskError::Unauthenticated),
        }
    }

    /// The operator a portal password and TOTP code identify.
    pub fn authenticate_password(
        &self,
        id: &str,
        password: &str,
        code: &str,
    ) -> Result<Principal, DeskError> {
        let op = self.store.operator(id)?.filter(|o| o.removed_at.is_none());
        let Some(op) = op else {
            // Spend the same work on an unknown id, so timing does not tell which ids exist.
            let _ = credentials::verify_password(password, DUMMY_PHC);
            return Err(DeskError::Unauthenticated);
        };
        let password_ok = op
            .password_hash
            .as_deref()
            .is_some_and(|phc| credentials::verify_password(password, phc));
        let step = match (&op.totp_sealed, &self.sealer) {
            (Some(sealed), Some(sealer)) => sealer
                .open(sealed, totp_context(&op.id).as_bytes())
                .ok()
                .and_then(|secret| credentials::totp_step(&secret, &op.id, code, self.now())),
            _ => None,
        };
        match step {
            // The code's step is spent: the same code never signs in twice (RFC 6238 §5.2).
            Some(step) if password_ok && self.store.spend_operator_totp_step(&op.id, step)? => {
                self.principal(op, Via::Password)
            }
            _ => Err(DeskError::Unauthenticated),
        }
    }

    /// The operator behind a portal session, read afresh from the store on every page (a
    /// removed operator's session ends on its next request). `via` is how the session began.
    pub fn session_principal(&self, id: &str, via: Via) -> Result<Principal, DeskError> {
        match self.store.operator(id)?.filter(|o| o.removed_at.is_none()) {
            Some(op) => self.principal(op, via),
            None => Err(DeskError::Unauthenticated),
        }
    }

    /// The command line's caller: the data directory's owner, acting as a CA admin under the
    /// name it gives (`--actor`).
    pub fn console(actor: &str) -> Principal {
        Principal::Operator {
            operator: Operator {
                id: actor.into(),
                name: actor.into(),
                email: None,
                role: Role::CaAdmin,
                organisation: None,
                scope: Scope::All,
                password_hash: None,
                totp_sealed: None,
                created_at: 0,
                removed_at: None,
            },
            via: Via::Console,
            path: None,
        }
    }

    // ---- organisations and operators -------------------------------------------------------

    /// Adds an organisation (CA admins).
    pub fn add_organisation(
        &self,
        who: &Principal,
        input: OrganisationInput,
    ) -> Result<OrganisationView, DeskError> {
        if !who.administers() {
            return Err(self.refuse(
                who,
                "org.add",
                &input.id,
                DeskError::Forbidden("only a ca-admin adds organisations".into()),
            ));
        }
        let mut errors = Vec::new();
        if let Err(e) = check_slug("id", &input.id) {
            errors.push(e);
        }
        let name = text("name", &Some(input.name.clone()), &mut errors);
        if name.is_none() && !errors.iter().any(|e| e.field == "name") {
            errors.push(FieldError::new("name", "required"));
        }
        let email = text("email", &input.email, &mut errors);
        if email.as_deref().is_some_and(|e| !plausible_email(e)) {
            errors.push(FieldError::new("email", "not an email address"));
        }
        let sector = input.sector.clone().unwrap_or_else(|| "other".into());
        if !["education", "training", "health", "other"].contains(&sector.as_str()) {
            errors.push(FieldError::new(
                "sector",
                "education, training, health or other",
            ));
        }
        for (i, p) in input.profiles.iter().enumerate() {
            if self.config.load().profile(p).is_none() {
                errors.push(FieldError::new(
                    &format!("profiles[{i}]"),
                    format!("unknown profile {p:?}"),
                ));
            }
        }
        let province = text("province", &input.province, &mut errors);
        let parent_path = match &input.parent {
            Some(p) => match self.store.organisation(p)? {
                Some(o) if o.deleted_at.is_none() => o.path,
                _ => {
                    errors.push(FieldError::new("parent", format!("no organisation {p:?}")));
                    "/".into()
                }
            },
            None => "/".into(),
        };
        if !errors.is_empty() {
            return Err(DeskError::Invalid(errors));
        }
        let org = Organisation {
            path: format!("{parent_path}{}/", input.id),
            id: input.id,
            name: name.unwrap_or_default(),
            registry_id: input.registry_id,
            province,
            parent: input.parent,
            email,
            profiles: input.profiles,
            sector,
            created_at: self.now(),
            deleted_at: None,
        };
        let audit = self.audit(
            &who.actor(),
            "org.add",
            &org.id,
            Outcome::Success,
            format!("path={}", org.path),
        );
        self.store.add_organisation(&org, &audit)?;
        Ok(OrganisationView::from(&org))
    }

    /// Organisations the caller reaches.
    pub fn organisations(&self, who: &Principal) -> Result<Vec<OrganisationView>, DeskError> {
        let reach = who.reach();
        Ok(self
            .store
            .organisations()?
            .iter()
            .filter(|o| reach.covers_organisation(&o.id, o.province.as_deref(), &o.path))
            .map(OrganisationView::from)
            .collect())
    }

    /// One organisation within the caller's reach.
    pub fn organisation(&self, who: &Principal, id: &str) -> Result<OrganisationView, DeskError> {
        let reach = who.reach();
        match self.store.organisation(id)? {
            Some(o)
                if o.deleted_at.is_none()
                    && reach.covers_organisation(&o.id, o.province.as_deref(), &o.path) =>
            {
                Ok(OrganisationView::from(&o))
            }
            _ => Err(DeskError::NotFound(format!("no organisation {id:?}"))),
        }
    }

    /// Adds an operator (CA admins).
    pub fn add_operator(
        &self,
        who: &Principal,
        input: OperatorInput,
    ) -> Result<OperatorView, DeskError> {
        if !who.administers() {
            return Err(self.refuse(
                who,
                "operator.add",
                &input.id,
                DeskError::Forbidden("only a ca-admin adds operators".into()),
            ));
        }
        let mut errors = Vec::new();
        if let Err(e) = check_slug("id", &input.id) {
            errors.push(e);
        }
        let name = text("name", &Some(input.name.clone()), &mut errors);
        if name.is_none() && !errors.iter().any(|e| e.field == "name") {
            errors.push(FieldError::new("name", "required"));
        }
        let role = Role::parse(&input.role);
        if role.is_none() {
            errors.push(FieldError::new(
                "role",
                "org-officer, ra-officer, auditor or ca-admin",
            ));
        }
        let scope = match input.scope.as_deref() {
            None => Some(Scope::All),
            Some(s) => Scope::parse(s),
        };
        if scope.is_none() {
            errors.push(FieldError::new("scope", "all, province:CODE or org:ID"));
        }
        if let Some(Scope::Organisation(org)) = &scope {
            if self
                .store
                .organisation(org)?
                .is_none_or(|o| o.deleted_at.is_some())
            {
                errors.push(FieldError::new("scope", format!("no organisation {org:?}")));
            }
        }
        match (role, &input.organisation) {
            (Some(Role::OrgOfficer), None) => {
                errors.push(FieldError::new("organisation", "an org-officer needs one"))
            }
            (_, Some(org))
                if self
                    .store
                    .organisation(org)?
                    .is_none_or(|o| o.deleted_at.is_some()) =>
            {
                errors.push(FieldError::new(
                    "organisation",
                    format!("no organisation {org:?}"),
                ));
            }
            _ => {}
        }
        let email = text("email", &input.email, &mut errors);
        if email.as_deref().is_some_and(|e| !plausible_email(e)) {
            errors.push(FieldError::new("email", "not an email address"));
        }
        let (Some(role), Some(scope)) = (role, scope) else {
            return Err(DeskError::Invalid(errors));
        };
        if !errors.is_empty() {
            return Err(DeskError::Invalid(errors));
        }
        let op = Operator {
            id: input.id,
            name: name.unwrap_or_default(),
            email,
            role,
            organisation: input.organisation,
            scope,
            password_hash: None,
            totp_sealed: None,
            created_at: self.now(),
            removed_at: None,
        };
        let audit = self.audit(
            &who.actor(),
            "operator.add",
            &op.id,
            Outcome::Success,
            format!("role={} scope={}", op.role.as_str(), op.scope),
        );
        self.store.add_operator(&op, &audit)?;
        Ok(OperatorView::from(&op))
    }

    fn live_operator(&self, id: &str) -> Result<Operator, DeskError> {
        self.store
            .operator(id)?
            .filter(|o| o.removed_at.is_none())
            .ok_or_else(|| DeskError::NotFound(format!("no operator {id:?}")))
    }

    fn admin_only(&self, who: &Principal, action: &str, target: &str) -> Result<(), DeskError> {
        if who.administers() {
            Ok(())
        } else {
            Err(self.refuse(
                who,
                action,
                target,
                DeskError::Forbidden("only a ca-admin manages operators".into()),
            ))
        }
    }

    /// Operators (CA admins).
    pub fn operators(&self, who: &Principal) -> Result<Vec<OperatorView>, DeskError> {
        self.admin_only(who, "operator.list", "")?;
        Ok(self
            .store
            .operators()?
            .iter()
            .map(OperatorView::from)
            .collect())
    }

    /// Makes a bearer token for an operator; the secret is returned once and never stored.
    pub fn issue_token(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<zeroize::Zeroizing<String>, DeskError> {
        self.admin_only(who, "operator.token", id)?;
        let op = self.live_operator(id)?;
        let token = credentials::new_token().map_err(|e| DeskError::Internal(e.to_string()))?;
        let now = self.now();
        let expires = now + u64::from(self.config.load().ra.token_days) * 86_400;
        let audit = self.audit(
            &who.actor(),
            "operator.token",
            &op.id,
            Outcome::Success,
            format!("expires={}", local_rfc3339(expires)),
        );
        self.store
            .add_token(&token.hash, &op.id, now, expires, &audit)?;
        Ok(token.secret)
    }

    /// Revokes every token of an operator.
    pub fn revoke_tokens(&self, who: &Principal, id: &str) -> Result<(), DeskError> {
        self.admin_only(who, "operator.revoke-tokens", id)?;
        let op = self.live_operator(id)?;
        let audit = self.audit(
            &who.actor(),
            "operator.revoke-tokens",
            &op.id,
            Outcome::Success,
            String::new(),
        );
        Ok(self.store.revoke_tokens(&op.id, self.now(), &audit)?)
    }

    /// Sets an operator's portal password (Argon2id).
    pub fn set_password(&self, who: &Principal, id: &str, password: &str) -> Result<(), DeskError> {
        self.admin_only(who, "operator.password", id)?;
        let mut op = self.live_operator(id)?;
        op.password_hash =
            Some(credentials::hash_password(password).map_err(|e| {
                DeskError::Invalid(vec![FieldError::new("password", e.to_string())])
            })?);
        let audit = self.audit(
            &who.actor(),
            "operator.password",
            &op.id,
            Outcome::Success,
            String::new(),
        );
        Ok(self.store.update_operator(&op, &audit)?)
    }

    /// Gives an operator a new TOTP secret; returns the `otpauth://` URI (shown once).
    pub fn set_totp(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<zeroize::Zeroizing<String>, DeskError> {
        self.admin_only(who, "operator.totp", id)?;
        let sealer = self
            .sealer
            .as_ref()
            .ok_or_else(|| DeskError::Unavailable("the data key is not loaded".into()))?;
        let mut op = self.live_operator(id)?;
        let secret =
            credentials::new_totp_secret().map_err(|e| DeskError::Internal(e.to_string()))?;
        op.totp_sealed = Some(
            sealer
                .seal(&secret, totp_context(&op.id).as_bytes())
                .map_err(|e| DeskError::Unavailable(e.to_string()))?,
        );
        let uri = credentials::totp_uri(&secret, &op.id)
            .map_err(|e| DeskError::Internal(e.to_string()))?;
        let audit = self.audit(
            &who.actor(),
            "operator.totp",
            &op.id,
            Outcome::Success,
            String::new(),
        );
        self.store.update_operator(&op, &audit)?;
        Ok(uri)
    }

    /// Registers a certificate (DER) to an operator for TLS client authentication.
    pub fn add_operator_certificate(
        &self,
        who: &Principal,
        id: &str,
        der: &[u8],
    ) -> Result<String, DeskError> {
        self.admin_only(who, "operator.add-cert", id)?;
        let op = self.live_operator(id)?;
        use der::Decode;
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| {
            DeskError::Invalid(vec![FieldError::new(
                "cert",
                format!("not a DER certificate: {e}"),
            )])
        })?;
        let serial_hex = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
        let serial_hex = serial::canonical_hex(&serial_hex).unwrap_or(serial_hex);
        let issuer = cert.tbs_certificate.issuer.to_string();
        let fingerprint = digest::digest(&digest::SHA256, der);
        let audit = self.audit(
            &who.actor(),
            "operator.add-cert",
            &op.id,
            Outcome::Success,
            format!("serial={serial_hex}"),
        );
        self.store.add_operator_certificate(
            fingerprint.as_ref(),
            &op.id,
            &serial_hex,
            &issuer,
            &audit,
        )?;
        Ok(hex::encode(fingerprint.as_ref()))
    }

    /// Removes an operator: its tokens stop working at once.
    pub fn remove_operator(&self, who: &Principal, id: &str) -> Result<(), DeskError> {
        self.admin_only(who, "operator.remove", id)?;
        let op = self.live_operator(id)?;
        let audit = self.audit(
            &who.actor(),
            "operator.remove",
            &op.id,
            Outcome::Success,
            String::new(),
        );
        Ok(self.store.remove_operator(&op.id, self.now(), &audit)?)
    }

    /// Disables an organisation (CA admins): it is no longer listed, and nothing is filed for
    /// it; its requests, certificates and history stay.
    pub fn remove_organisation(&self, who: &Principal, id: &str) -> Result<(), DeskError> {
        if !who.administers() {
            return Err(self.refuse(
                who,
                "org.remove",
                id,
                DeskError::Forbidden("only a ca-admin removes organisations".into()),
            ));
        }
        let Some(org) = self
            .store
            .organisation(id)?
            .filter(|o| o.deleted_at.is_none())
        else {
            return Err(DeskError::NotFound(format!("no organisation {id:?}")));
        };
        let audit = self.audit(
            &who.actor(),
            "org.remove",
            &org.id,
            Outcome::Success,
            String::new(),
        );
        Ok(self
            .store
            .remove_organisation(&org.id, self.now(), &audit)?)
    }

    // ---- the audit log -----------------------------------------------------------------------

    /// Whether `who` reads the audit log ([`Principal::reads_audit_log`]); a refusal is
    /// audited.
    fn audit_reader(&self, who: &Principal, action: &str) -> Result<(), DeskError> {
        if who.reads_audit_log() {
            Ok(())
        } else {
            Err(self.refuse(
                who,
                action,
                "audit",
                DeskError::Forbidden(
                    "only a ca-admin or an auditor of everything reads the audit log".into(),
                ),
            ))
        }
    }

    /// A page of the audit log, newest first, with each record's id (CA admins, auditors of
    /// everything): `limit` records (1 to [`MAX_PAGE`]) with ids below `before`.
    pub fn audit_page(
        &self,
        who: &Principal,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>, DeskError> {
        self.audit_reader(who, "audit.read")?;
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(DeskError::Invalid(vec![FieldError::new(
                "limit",
                format!("1 to {MAX_PAGE}"),
            )]));
        }
        Ok(self.store.audit_page(before, limit)?)
    }

    /// Walks the whole audit chain and its stamps (as `pkid audit verify`), for the same
    /// readers as [`RequestDesk::audit_page`].
    pub fn verify_audit(&self, who: &Principal) -> Result<crate::store::ChainVerdict, DeskError> {
        self.audit_reader(who, "audit.verify")?;
        Ok(self.store.verify_audit_chain()?)
    }

    // ---- requests ----------------------------------------------------------------------------

    fn due(&self, kind: RequestKind, at: u64) -> u64 {
        let from =
            OffsetDateTime::from_unix_timestamp(at as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let due = match kind {
            RequestKind::Revoke => self
                .calendar
                .load()
                .due_hours(from, self.config.load().ra.revoke_hours),
            _ => self
                .calendar
                .load()
                .due_working_days(from, self.config.load().ra.working_days),
        };
        due.unix_timestamp().max(0) as u64
    }

    fn seal(
        &self,
        org: &str,
        field: &str,
        value: Option<String>,
    ) -> Result<Option<Vec<u8>>, DeskError> {
        let Some(v) = value else { return Ok(None) };
        let sealer = self
            .sealer
            .as_ref()
            .ok_or_else(|| DeskError::Unavailable("the data key is not loaded".into()))?;
        sealer
            .seal(v.as_bytes(), personal_context(org, field).as_bytes())
            .map(Some)
            .map_err(|e| DeskError::Unavailable(e.to_string()))
    }

    fn unseal(&self, org: &str, field: &str, sealed: &Option<Vec<u8>>) -> Option<String> {
        let sealed = sealed.as_ref()?;
        let sealer = self.sealer.as_ref()?;
        match sealer.open(sealed, personal_context(org, field).as_bytes()) {
            Ok(plain) => String::from_utf8(plain.to_vec()).ok(),
            Err(e) => {
                tracing::error!(field, error = %e, "a sealed personal field does not open");
                None
            }
        }
    }

    fn decode_document(&self, d: &DocumentInput, errors: &mut Vec<FieldError>) -> Option<Filed> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let clean = |s: &str| {
            s.chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect::<String>()
        };
        let limit = self.config.load().ra.max_document_bytes;
        let content = match b64.decode(clean(&d.content_base64)) {
            Ok(c) if c.is_empty() => {
                errors.push(FieldError::new("document.content_base64", "empty"));
                return None;
            }
            Ok(c) => c,
            Err(e) => {
                errors.push(FieldError::new(
                    "document.content_base64",
                    format!("not base64: {e}"),
                ));
                return None;
            }
        };
        if content.len() > limit {
            errors.push(FieldError::new(
                "document.content_base64",
                format!("over the {limit}-byte limit"),
            ));
            return None;
        }
        let signature = match &d.signature_base64 {
            Some(s) => match b64.decode(clean(s)) {
                Ok(sig) if sig.len() <= limit => Some(sig),
                Ok(_) => {
                    errors.push(FieldError::new("document.signature_base64", "too large"));
                    return None;
                }
                Err(e) => {
                    errors.push(FieldError::new(
                        "document.signature_base64",
                        format!("not base64: {e}"),
                    ));
                    return None;
                }
            },
            None => None,
        };
        let filename = d.filename.trim();
        if filename.is_empty()
            || filename.chars().count() > 255
            || filename.contains(['/', '\\'])
            || filename.chars().any(char::is_control)
        {
            errors.push(FieldError::new(
                "document.filename",
                "1 to 255 characters, no path",
            ));
            return None;
        }
        Some(Filed {
            content,
            signature,
            filename: filename.to_owned(),
        })
    }

    /// Verifies a filed document and decides whether it is evidence for `organisation`: a valid
    /// signature by a registered officer of that organisation.
    fn verify_document(
        &self,
        filed: Filed,
        organisation: &str,
    ) -> Result<DocumentRecord, DeskError> {
        let now = self.now();
        let Some(verifier) = &self.verifier else {
            return Err(DeskError::Unavailable(
                "the document verifier is not loaded".into(),
            ));
        };
        let verdict = verifier.verify(&filed.content, filed.signature.as_deref(), now);
        let mut problem = verdict
            .problem
            .as_ref()
            .map(|p| format!("{}: {p}", p.code()));
        let mut valid = verdict.is_valid();
        let fingerprint = verdict
            .signer
            .as_ref()
            .and_then(|s| hex::decode(&s.sha256_fingerprint).ok());
        if valid {
            let signer_ok = match &fingerprint {
                Some(fp) => self.store.operator_by_certificate(fp)?.is_some_and(|op| {
                    op.role == Role::OrgOfficer && op.organisation.as_deref() == Some(organisation)
                }),
                None => false,
            };
            if !signer_ok {
                valid = false;
                problem = Some(
                    "signer-not-officer: the signer is not a registered officer of the organisation"
                        .into(),
                );
            }
        }
        Ok(DocumentRecord {
            id: 0,
            sha256: digest::digest(&digest::SHA256, &filed.content)
                .as_ref()
                .to_vec(),
            filename: filed.filename,
            content: filed.content,
            signature: filed.signature,
            valid,
            signer_serial: verdict.signer.as_ref().map(|s| s.serial.clone()),
            signer_issuer: verdict.signer.as_ref().map(|s| s.issuer_dn.clone()),
            signer_subject: verdict.signer.as_ref().map(|s| s.subject_dn.clone()),
            signed_at: Some(verdict.signed_at),
            problem,
            created_at: now,
        })
    }

    /// Files one request (with its own document).
    pub fn submit(
        &self,
        who: &Principal,
        mut input: RequestInput,
    ) -> Result<RequestView, DeskError> {
        let document = input.document.take();
        let mut views = self.submit_all(who, vec![input], document, None)?;
        views
            .pop()
            .ok_or_else(|| DeskError::Internal("no request stored".into()))
    }

    /// Files a `keyCompromise` revocation with a subscriber's one-time revocation code, at any
    /// hour, without the key and without the organisation: accepted at once with the 12-hour
    /// clock, the organisation told. The code is spent; a code that does not match the
    /// certificate, or was spent before, is refused (the same answer for both, and audited).
    pub fn revoke_with_code(
        &self,
        input: &CodeRevocationInput,
    ) -> Result<CodeRevocationView, DeskError> {
        let mut errors = Vec::new();
        let serial = serial::canonical_hex(input.certificate.trim());
        if serial.is_none() {
            errors.push(FieldError::new("certificate", "a serial number, hex"));
        }
        if input.code.trim().is_empty() || input.code.len() > 64 {
            errors.push(FieldError::new("code", "the revocation code from the mail"));
        }
        let Some(serial) = serial.filter(|_| errors.is_empty()) else {
            return Err(DeskError::Invalid(errors));
        };
        let who = Principal::Subscriber {
            serial: serial.clone(),
            subject: String::new(),
        };
        let hash = credentials::revocation_code_hash(&input.code);
        let spent = self.audit(
            &who.actor(),
            "revocation-code.spend",
            &serial,
            Outcome::Success,
            String::new(),
        );
        if !self
            .store
            .spend_revocation_code(&serial, &hash, self.now(), &spent)?
        {
            return Err(self.refuse(
                &who,
                "revocation-code.spend",
                &serial,
                DeskError::Forbidden(
                    "no unused revocation code of this certificate matches".into(),
                ),
            ));
        }
        let filed = self.submit(
            &who,
            RequestInput {
                kind: "revoke".into(),
                organisation: None,
                profile: None,
                issuer: None,
                subscriber: None,
                csr: None,
                key_origin: None,
                certificate: Some(serial.clone()),
                reason: Some("keyCompromise".into()),
                recovery: None,
                document: None,
            },
        );
        match filed {
            Ok(v) => Ok(CodeRevocationView {
                id: v.id,
                state: v.state,
                certificate: serial,
                accepted_at: v.accepted_at,
                due_at: v.due_at,
            }),
            Err(e) => {
                // Nothing was filed: the code stays usable.
                if let Err(err) = self.store.restore_revocation_code(&serial) {
                    tracing::error!(error = %err, "a revocation code was spent on a request that could not be stored and could not be restored");
                }
                Err(e)
            }
        }
    }

    /// Files a bulk submission: every row valid or nothing stored (per-row errors).
    pub fn submit_batch(
        &self,
        who: &Principal,
        input: BatchInput,
    ) -> Result<Vec<RequestView>, DeskError> {
        if input.requests.is_empty() {
            return Err(DeskError::Invalid(vec![FieldError::new(
                "requests", "empty",
            )]));
        }
        if input.requests.len() > MAX_BULK_REQUESTS {
            return Err(DeskError::TooLarge(format!(
                "at most {MAX_BULK_REQUESTS} requests in one submission"
            )));
        }
        let batch = {
            let mut b = [0u8; 8];
            aws_lc_rs::rand::fill(&mut b).map_err(|_| DeskError::Internal("random".into()))?;
            format!("B{}", hex::encode(b))
        };
        self.submit_all(who, input.requests, input.document, Some(batch))
    }

    fn submit_all(
        &self,
        who: &Principal,
        inputs: Vec<RequestInput>,
        document: Option<DocumentInput>,
        batch: Option<String>,
    ) -> Result<Vec<RequestView>, DeskError> {
        let now = self.now();
        let mut errors = Vec::new();
        let mut drafts = Vec::with_capacity(inputs.len());
        for (row, input) in inputs.iter().enumerate() {
            let mut row_errors = Vec::new();
            if input.document.is_some() && batch.is_some() {
                row_errors.push(FieldError::new(
                    "document",
                    "one document covers a bulk submission: put it beside `requests`",
                ));
            }
            match self.draft(who, input, now, &mut row_errors) {
                Ok(Some(d)) if row_errors.is_empty() => drafts.push(d),
                Ok(_) => {}
                Err(e) => {
                    return Err(match e {
                        DeskError::Forbidden(_) => self.refuse(who, "request.submit", "", e),
                        e => e,
                    })
                }
            }
            for mut e in row_errors {
                if batch.is_some() {
                    e.row = Some(row);
                }
                errors.push(e);
            }
        }
        let organisations: std::collections::BTreeSet<&str> =
            drafts.iter().map(|d| d.organisation.as_str()).collect();
        if batch.is_some() && organisations.len() > 1 {
            errors.push(FieldError::new(
                "requests",
                "a bulk submission is for one organisation",
            ));
        }
        let filed = document
            .as_ref()
            .and_then(|d| self.decode_document(d, &mut errors));
        if !errors.is_empty() {
            return Err(DeskError::Invalid(errors));
        }
        let organisation = drafts
            .first()
            .map(|d| d.organisation.clone())
            .unwrap_or_default();
        let document = filed
            .map(|f| self.verify_document(f, &organisation))
            .transpose()?;
        let mut refused = Vec::new();
        crate::csc::policy::check_document(&drafts, document.as_ref(), &mut refused);
        errors.extend(refused.into_iter().map(|(f, m)| FieldError::new(f, m)));
        if !errors.is_empty() {
            return Err(DeskError::Invalid(errors));
        }
        let subscriber_report = matches!(who, Principal::Subscriber { .. });
        let accepted = subscriber_report || document.as_ref().is_some_and(|d| d.valid);
        for d in &mut drafts {
            d.batch = batch.clone();
            if accepted {
                d.state = RequestState::Accepted;
                d.accepted_at = Some(now);
                d.due_at = Some(self.due(d.kind, now));
            } else {
                d.state = RequestState::AwaitingOriginal;
            }
        }
        let audit = self.audit(
            &who.actor(),
            "request.submit",
            &organisation,
            Outcome::Success,
            format!(
                "requests={} state={}{}",
                drafts.len(),
                if accepted {
                    "accepted"
                } else {
                    "awaiting-original"
                },
                batch
                    .as_ref()
                    .map(|b| format!(" batch={b}"))
                    .unwrap_or_default()
            ),
        );
        // A request accepted at submission tells its organisation and subscriber, in the
        // transaction that stores it.
        let mut orgs = std::collections::BTreeMap::new();
        if accepted {
            for d in &drafts {
                if !orgs.contains_key(&d.organisation) {
                    orgs.insert(
                        d.organisation.clone(),
                        self.store.organisation(&d.organisation)?,
                    );
                }
            }
        }
        let notices = |r: &RequestRecord| {
            if r.state != RequestState::Accepted {
                return Vec::new();
            }
            let org = orgs.get(&r.organisation).and_then(Option::as_ref);
            self.notices_for(
                r,
                org,
                crate::notify::messages::Event::Accepted,
                r.due_at,
                None,
                None,
            )
        };
        let stored = self
            .store
            .submit_requests(document.as_ref(), &drafts, &audit, &notices)?;
        self.committed(accepted, false);
        let doc = document.map(|mut d| {
            d.id = stored.first().and_then(|r| r.document).unwrap_or(0);
            d
        });
        Ok(stored.iter().map(|r| self.view(r, doc.as_ref())).collect())
    }

    /// Checks one row and builds its record (state set by the caller).
    /// The organisation `who` files for: the one named, or an officer's own; a field error
    /// when there is none, Forbidden when it is out of reach.
    fn filing_organisation(
        &self,
        who: &Principal,
        named: Option<&str>,
        errors: &mut Vec<FieldError>,
    ) -> Result<Option<Organisation>, DeskError> {
        let org_id = match (named, who) {
            (Some(o), _) => o.to_owned(),
            (None, Principal::Operator { operator, .. }) if operator.organisation.is_some() => {
                operator.organisation.clone().unwrap_or_default()
            }
            _ => {
                errors.push(FieldError::new("organisation", "required"));
                return Ok(None);
            }
        };
        let org = match self.store.organisation(&org_id)? {
            Some(o) if o.deleted_at.is_none() => o,
            _ => {
                errors.push(FieldError::new(
                    "organisation",
                    format!("no organisation {org_id:?}"),
                ));
                return Ok(None);
            }
        };
        if !who
            .reach()
            .covers_organisation(&org.id, org.province.as_deref(), &org.path)
        {
            return Err(DeskError::Forbidden(format!(
                "organisation {:?} is outside your scope",
                org.id
            )));
        }
        Ok(Some(org))
    }

    /// Checks a request document before filing: the signature verification and signer check
    /// that filing it for the organisation would record now, with nothing stored (an officer
    /// sees "verified" or why not before sending). Callers who file requests only.
    pub fn check_document(
        &self,
        who: &Principal,
        input: &DocumentCheckInput,
    ) -> Result<DocumentCheckView, DeskError> {
        if !who.files() || matches!(who, Principal::Subscriber { .. }) {
            return Err(DeskError::Forbidden(
                "this role does not file requests".into(),
            ));
        }
        let mut errors = Vec::new();
        let org = self.filing_organisation(who, input.organisation.as_deref(), &mut errors);
        let org = match org {
            Err(e @ DeskError::Forbidden(_)) => {
                return Err(self.refuse(who, "document.check", "", e))
            }
            other => other?,
        };
        let filed = self.decode_document(&input.document, &mut errors);
        let (Some(org), Some(filed), true) = (org, filed, errors.is_empty()) else {
            return Err(DeskError::Invalid(errors));
        };
        let d = self.verify_document(filed, &org.id)?;
        Ok(DocumentCheckView {
            organisation: org.id,
            filename: d.filename,
            sha256: hex::encode(&d.sha256),
            valid: d.valid,
            // A signing time only where a signature was found to have one.
            signed_at: d
                .signed_at
                .filter(|_| d.signer_subject.is_some())
                .map(local_rfc3339),
            signer_subject: d.signer_subject,
            signer_serial: d.signer_serial,
            problem: d.problem,
        })
    }

    fn draft(
        &self,
        who: &Principal,
        input: &RequestInput,
        now: u64,
        errors: &mut Vec<FieldError>,
    ) -> Result<Option<RequestRecord>, DeskError> {
        let Some(kind) = RequestKind::parse(&input.kind) else {
            errors.push(FieldError::new(
                "kind",
                "issue, renew, modify, revoke or recover",
            ));
            return Ok(None);
        };
        if let Principal::Subscriber { serial, .. } = who {
            return self.subscriber_report(serial, kind, input, now, errors);
        }
        if !who.files() {
            return Err(DeskError::Forbidden(
                "this role does not file requests".into(),
            ));
        }
        let Some(org) = self.filing_organisation(who, input.organisation.as_deref(), errors)?
        else {
            return Ok(None);
        };
        let key_origin = match input.key_origin.as_deref() {
            None => KeyOrigin::Csr,
            Some(k) => match KeyOrigin::parse(k) {
                Some(k) => k,
                None => {
                    errors.push(FieldError::new("key_origin", "csr, token or central"));
                    KeyOrigin::Csr
                }
            },
        };
        let sub = input.subscriber.clone().unwrap_or_default();
        let name = text("subscriber.name", &sub.name, errors);
        let email = text("subscriber.email", &sub.email, errors);
        if email.as_deref().is_some_and(|e| !plausible_email(e)) {
            errors.push(FieldError::new("subscriber.email", "not an email address"));
        }
        let phone = text("subscriber.phone", &sub.phone, errors);
        if phone.as_deref().is_some_and(|p| {
            !p.chars()
                .all(|c| c.is_ascii_digit() || "+ -.()".contains(c))
        }) {
            errors.push(FieldError::new(
                "subscriber.phone",
                "digits, spaces and + - . ( ) only",
            ));
        }
        let id_number = text("subscriber.id_number", &sub.id_number, errors);
        if id_number
            .as_deref()
            .is_some_and(|n| !(9..=12).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_digit()))
        {
            errors.push(FieldError::new(
                "subscriber.id_number",
                "9 to 12 digits (CMND or CCCD number)",
            ));
        }
        let mut record = RequestRecord {
            id: 0,
            kind,
            organisation: org.id.clone(),
            province: org.province.clone(),
            org_path: org.path.clone(),
            state: RequestState::Submitted,
            profile: None,
            key_origin,
            issuer: None,
            subscriber: SubscriberFields {
                name: name.clone(),
                email: email.clone(),
                title: text("subscriber.title", &sub.title, errors),
                unit: text("subscriber.unit", &sub.unit, errors),
                phone_sealed: None,
                id_number_sealed: None,
            },
            csr: None,
            certificate: None,
            issued_certificate: None,
            reason: None,
            recovery: None,
            document: None,
            batch: None,
            submitted_by: who.actor(),
            submitted_at: now,
            accepted_at: None,
            due_at: None,
            fulfilled_at: None,
            closed_at: None,
            breach_notified_at: None,
            erased_at: None,
            updated_at: now,
        };
        match kind {
            RequestKind::Issue => {
                if name.is_none() {
                    errors.push(FieldError::new("subscriber.name", "required to issue"));
                }
                if email.is_none() {
                    errors.push(FieldError::new("subscriber.email", "required to issue"));
                }
                record.profile = self.check_profile(&org, input.profile.as_deref(), errors);
                record.issuer = self.check_issuer(input.issuer.as_deref(), errors);
                if key_origin == KeyOrigin::Csr {
                    record.csr = self.check_csr(
                        input.csr.as_deref(),
                        record.profile.as_deref(),
                        true,
                        errors,
                    );
                } else if input.csr.is_some() {
                    errors.push(FieldError::new("csr", "only with key origin csr"));
                }
            }
            RequestKind::Renew
            | RequestKind::Modify
            | RequestKind::Revoke
            | RequestKind::Recover => {
                record.certificate =
                    self.check_certificate(who, &org, input.certificate.as_deref(), errors)?;
                if kind == RequestKind::Modify {
                    if name.is_none() {
                        errors.push(FieldError::new(
                            "subscriber.name",
                            "the new information is required to modify",
                        ));
                    }
                    record.csr = self.check_csr(input.csr.as_deref(), None, false, errors);
                } else if input.csr.is_some() {
                    errors.push(FieldError::new("csr", "only for issue and modify"));
                }
                if kind == RequestKind::Revoke {
                    record.reason = check_reason(input.reason.as_deref(), errors);
                } else if input.reason.is_some() {
                    errors.push(FieldError::new("reason", "only for revoke"));
                }
                if kind == RequestKind::Recover {
                    record.recovery = self.check_recovery(
                        key_origin,
                        record.certificate.as_deref(),
                        input.recovery.as_deref(),
                        errors,
                    )?;
                    // The account's holder, as its issue named them: shown on the request and
                    // told of it like any subscriber.
                    if let (Some(_), Some(c)) = (record.recovery, record.certificate.as_deref()) {
                        if let Some(origin) = self.issuing_request(c)? {
                            let s = &mut record.subscriber;
                            s.name = s.name.take().or(origin.subscriber.name);
                            s.email = s.email.take().or(origin.subscriber.email);
                        }
                    }
                } else if input.recovery.is_some() {
                    errors.push(FieldError::new("recovery", "only for recover"));
                }
            }
        }
        if kind == RequestKind::Issue && input.recovery.is_some() {
            errors.push(FieldError::new("recovery", "only for recover"));
        }
        let mut refused = Vec::new();
        crate::csc::policy::check_draft(
            &self.config.load(),
            &org,
            kind,
            key_origin,
            record.profile.as_deref(),
            sub.roles.as_deref().unwrap_or_default(),
            &mut refused,
        );
        errors.extend(refused.into_iter().map(|(f, m)| FieldError::new(f, m)));
        if !errors.is_empty() {
            return Ok(None);
        }
        record.subscriber.phone_sealed = self.seal(&org.id, "phone", phone)?;
        record.subscriber.id_number_sealed = self.seal(&org.id, "id_number", id_number)?;
        Ok(Some(record))
    }

    /// What a recover request recovers, by its key origin and certificate: a key device
    /// (`token`); with `central`, a remote-signing account (the certificate one of its
    /// credentials, `recovery` saying unlock or re-enrol) or a server-made key kept in escrow
    /// (EST serverkeygen on an escrow label, released by `pkid token recover-key`).
    fn check_recovery(
        &self,
        key_origin: KeyOrigin,
        certificate: Option<&str>,
        recovery: Option<&str>,
        errors: &mut Vec<FieldError>,
    ) -> Result<Option<AccountRecovery>, DeskError> {
        let account = match (key_origin, certificate) {
            (KeyOrigin::Central, Some(c)) => self.store.credential_by_serial(c)?.is_some(),
            _ => false,
        };
        let wanted = match recovery {
            None => None,
            Some(v) => match AccountRecovery::parse(v.trim()) {
                Some(r) => Some(r),
                None => {
                    errors.push(FieldError::new("recovery", "unlock or reenrol"));
                    return Ok(None);
                }
            },
        };
        match key_origin {
            KeyOrigin::Token if wanted.is_some() => errors.push(FieldError::new(
                "recovery",
                "only for a remote-signing account (key origin central)",
            )),
            KeyOrigin::Token => {}
            KeyOrigin::Central if account => {
                if wanted.is_none() {
                    errors.push(FieldError::new(
                        "recovery",
                        "a remote-signing account is recovered by unlock (locked after wrong codes) or reenrol (a lost phone or password)",
                    ));
                }
                return Ok(wanted);
            }
            KeyOrigin::Central => {
                if let Some(c) = certificate {
                    if self.store.escrowed_key(c)?.is_none() {
                        errors.push(FieldError::new(
                            "certificate",
                            format!(
                                "certificate {c} has no escrowed key and no remote-signing account"
                            ),
                        ));
                    } else if wanted.is_some() {
                        errors.push(FieldError::new(
                            "recovery",
                            "only for a remote-signing account; an escrowed key is recovered as it is",
                        ));
                    }
                }
            }
            KeyOrigin::Csr => errors.push(FieldError::new(
                "key_origin",
                "a key device (token), or a remote-signing account or escrowed server-made key (central) is recovered",
            )),
        }
        Ok(None)
    }

    /// A subscriber reporting its own certificate's key compromised (24/7, no organisation).
    fn subscriber_report(
        &self,
        serial: &str,
        kind: RequestKind,
        input: &RequestInput,
        now: u64,
        errors: &mut Vec<FieldError>,
    ) -> Result<Option<RequestRecord>, DeskError> {
        if kind != RequestKind::Revoke {
            return Err(DeskError::Forbidden(
                "a subscriber may only report its own key compromised".into(),
            ));
        }
        if input
            .certificate
            .as_deref()
            .and_then(serial::canonical_hex)
            .as_deref()
            != Some(serial)
        {
            return Err(DeskError::Forbidden(
                "a subscriber may only revoke the certificate it authenticated with".into(),
            ));
        }
        if input.reason.as_deref() != Some("keyCompromise") {
            errors.push(FieldError::new("reason", "keyCompromise"));
            return Ok(None);
        }
        let origin = self.issuing_request(serial)?;
        let Some(origin) = origin else {
            return Err(DeskError::Forbidden(
                "this certificate was not issued through the RA; ask the CA operator".into(),
            ));
        };
        Ok(Some(RequestRecord {
            id: 0,
            kind,
            state: RequestState::Submitted,
            profile: None,
            issuer: None,
            csr: None,
            certificate: Some(serial.into()),
            issued_certificate: None,
            reason: Some("keyCompromise".into()),
            recovery: None,
            document: None,
            batch: None,
            submitted_by: format!("subscriber:{serial}"),
            submitted_at: now,
            accepted_at: None,
            due_at: None,
            fulfilled_at: None,
            closed_at: None,
            breach_notified_at: None,
            erased_at: None,
            updated_at: now,
            ..origin
        }))
    }

    fn issuing_request(&self, serial: &str) -> Result<Option<RequestRecord>, DeskError> {
        Ok(self
            .store
            .requests(&RequestFilter {
                issued_certificate: Some(serial.into()),
                limit: 1,
                ..RequestFilter::default()
            })?
            .pop())
    }

    fn check_profile(
        &self,
        org: &Organisation,
        profile: Option<&str>,
        errors: &mut Vec<FieldError>,
    ) -> Option<String> {
        let Some(p) = profile else {
            errors.push(FieldError::new("profile", "required to issue"));
            return None;
        };
        if self.config.load().profile(p).is_none() {
            let known: Vec<_> = self.config.load().profiles.keys().cloned().collect();
            errors.push(FieldError::new(
                "profile",
                format!("unknown profile {p:?} (configured: {})", known.join(", ")),
            ));
            return None;
        }
        if !org.profiles.is_empty() && !org.profiles.iter().any(|x| x == p) {
            errors.push(FieldError::new(
                "profile",
                format!("the organisation may not request {p:?}"),
            ));
            return None;
        }
        Some(p.into())
    }

    fn check_issuer(&self, issuer: Option<&str>, errors: &mut Vec<FieldError>) -> Option<String> {
        let i = issuer?;
        let known = self
            .lifecycle
            .as_ref()
            .is_none_or(|ra| ra.ca().has_issuer(i));
        if i == crate::config::ROOT || !known {
            errors.push(FieldError::new(
                "issuer",
                format!("not an issuing CA: {i:?}"),
            ));
            return None;
        }
        Some(i.into())
    }

    fn check_csr(
        &self,
        csr_pem: Option<&str>,
        profile: Option<&str>,
        required: bool,
        errors: &mut Vec<FieldError>,
    ) -> Option<Vec<u8>> {
        let Some(pem) = csr_pem else {
            if required {
                errors.push(FieldError::new("csr", "required with key origin csr"));
            }
            return None;
        };
        let der = match csr::from_pem_or_der(pem.as_bytes()) {
            Ok(d) => d,
            Err(e) => {
                errors.push(FieldError::new("csr", e.to_string()));
                return None;
            }
        };
        let verified = match csr::verify(&der) {
            Ok(v) => v,
            Err(e) => {
                errors.push(FieldError::new("csr", e.to_string()));
                return None;
            }
        };
        let config = self.config.load();
        if let Some(p) = profile.and_then(|p| config.profile(p)) {
            if !p.profile.allows_key(verified.key_type) {
                errors.push(FieldError::new(
                    "csr",
                    format!("the profile does not allow a {:?} key", verified.key_type),
                ));
            }
        }
        Some(der)
    }

    fn check_certificate(
        &self,
        who: &Principal,
        org: &Organisation,
        serial_hex: Option<&str>,
        errors: &mut Vec<FieldError>,
    ) -> Result<Option<String>, DeskError> {
        let Some(s) = serial_hex else {
            errors.push(FieldError::new("certificate", "required (serial, hex)"));
            return Ok(None);
        };
        let Some(s) = serial::canonical_hex(s) else {
            errors.push(FieldError::new("certificate", "not a serial number (hex)"));
            return Ok(None);
        };
        if self.store.certificate(&s)?.is_none() {
            errors.push(FieldError::new("certificate", "no such certificate"));
            return Ok(None);
        }
        let belongs = match self.issuing_request(&s)? {
            Some(r) => r.organisation == org.id,
            None => match self.store.escrowed_key(&s)? {
                // Issued by EST serverkeygen on an escrow label of the organisation.
                Some(k) => k.organisation == org.id,
                // Issued outside the RA (the command line): only an RA officer who reaches
                // every organisation may file for it.
                None => who.reach() == Reach::All && who.decides(),
            },
        };
        if !belongs {
            errors.push(FieldError::new(
                "certificate",
                "not a certificate of this organisation",
            ));
            return Ok(None);
        }
        Ok(Some(s))
    }

    /// A request within the caller's reach (others are "not found").
    pub fn show(&self, who: &Principal, id: i64) -> Result<RequestView, DeskError> {
        let r = self.visible(who, id)?;
        let doc = r
            .document
            .map(|d| self.store.document(d))
            .transpose()?
            .flatten();
        Ok(self.view(&r, doc.as_ref()))
    }

    fn visible(&self, who: &Principal, id: i64) -> Result<RequestRecord, DeskError> {
        match self.store.request(id)? {
            Some(r) if who.reach().covers(&r) => Ok(r),
            Some(_) => Err(self.refuse(
                who,
                "request.read",
                &id.to_string(),
                DeskError::NotFound(format!("no request {id}")),
            )),
            None => Err(DeskError::NotFound(format!("no request {id}"))),
        }
    }

    /// A request's history.
    pub fn history(&self, who: &Principal, id: i64) -> Result<Vec<EventView>, DeskError> {
        self.visible(who, id)?;
        Ok(self
            .store
            .request_events(id)?
            .into_iter()
            .map(|e| EventView {
                at: local_rfc3339(e.at),
                actor: e.actor,
                action: e.action,
                from: e.from.map(RequestState::as_str),
                to: e.to.as_str(),
                reason: e.reason,
            })
            .collect())
    }

    /// A request's document, byte-exact (content, detached signature).
    pub fn document(&self, who: &Principal, id: i64) -> Result<DocumentRecord, DeskError> {
        let doc = self
            .store
            .document(id)?
            .ok_or_else(|| DeskError::NotFound(format!("no document {id}")))?;
        // Visible when one of the requests it covers is.
        let covered = self.store.requests(&RequestFilter {
            document: Some(id),
            limit: 1,
            ..RequestFilter::default()
        })?;
        match covered.first() {
            Some(r) if who.reach().covers(r) => Ok(doc),
            _ => Err(DeskError::NotFound(format!("no document {id}"))),
        }
    }

    /// Requests within the caller's reach, newest first, a page at a time.
    pub fn list(&self, who: &Principal, q: &ListQuery) -> Result<RequestPage, DeskError> {
        let mut errors = Vec::new();
        let state = q.state.as_deref().and_then(|s| {
            let p = RequestState::parse(s);
            if p.is_none() {
                errors.push(FieldError::new("state", "not a request state"));
            }
            p
        });
        let kind = q.kind.as_deref().and_then(|s| {
            let p = RequestKind::parse(s);
            if p.is_none() {
                errors.push(FieldError::new("kind", "not a request kind"));
            }
            p
        });
        let queue = match q.order.as_deref() {
            None | Some("newest") => false,
            Some("queue") => true,
            Some(_) => {
                errors.push(FieldError::new("order", "newest or queue"));
                false
            }
        };
        let bad_cursor = |errors: &mut Vec<FieldError>| {
            errors.push(FieldError::new(
                "cursor",
                "not a cursor from a previous page",
            ));
        };
        let mut before_id = None;
        let mut queue_after = None;
        match q.cursor.as_deref() {
            None => {}
            Some(c) if queue => match c.split_once('.').map(|(d, i)| (d.parse(), i.parse())) {
                Some((Ok(due), Ok(id))) if id > 0 => queue_after = Some(QueueKey { due, id }),
                _ => bad_cursor(&mut errors),
            },
            Some(c) => match c.parse::<i64>() {
                Ok(id) if id > 0 => before_id = Some(id),
                _ => bad_cursor(&mut errors),
            },
        }
        let limit = q.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            errors.push(FieldError::new("limit", format!("1 to {MAX_PAGE}")));
        }
        if !errors.is_empty() {
            return Err(DeskError::Invalid(errors));
        }
        let mut filter = RequestFilter {
            organisation: q.organisation.clone(),
            state,
            kind,
            due_before: q.overdue.unwrap_or(false).then(|| self.now()),
            before_id,
            order: if queue {
                RequestOrder::Queue(queue_after)
            } else {
                RequestOrder::Newest
            },
            limit: limit + 1,
            ..RequestFilter::default()
        };
        match who.reach() {
            Reach::All => {}
            Reach::Province(p) => filter.province = Some(p),
            Reach::Subtree(path) => filter.under_path = Some(path),
            Reach::Organisation(o) => match &filter.organisation {
                Some(asked) if asked != &o => {
                    return Ok(RequestPage {
                        items: vec![],
                        next: None,
                    })
                }
                _ => filter.organisation = Some(o),
            },
            Reach::Nothing => {
                return Ok(RequestPage {
                    items: vec![],
                    next: None,
                })
            }
        }
        let mut rows = self.store.requests(&filter)?;
        let next = (rows.len() > limit).then(|| {
            rows.truncate(limit);
            rows.last()
                .map(|r| {
                    if queue {
                        let k = QueueKey::of(r);
                        format!("{}.{}", k.due, k.id)
                    } else {
                        r.id.to_string()
                    }
                })
                .unwrap_or_default()
        });
        Ok(RequestPage {
            items: rows.iter().map(|r| self.view(r, None)).collect(),
            next,
        })
    }

    fn issuer_admin(&self, who: &Principal, action: &str, issuer: &str) -> Result<(), DeskError> {
        if !who.administers() {
            return Err(self.refuse(
                who,
                action,
                issuer,
                DeskError::Forbidden("only a ca-admin acts on issuers".into()),
            ));
        }
        let known = self
            .lifecycle
            .as_ref()
            .is_none_or(|ra| ra.ca().has_issuer(issuer));
        if issuer == crate::config::ROOT || !known {
            return Err(DeskError::NotFound(format!("no issuing CA {issuer:?}")));
        }
        Ok(())
    }

    /// Pauses new issuance by an issuer at once (urgent: one CA admin suffices). Requests are
    /// still received and tracked; fulfilling one that would issue is refused with the reason.
    pub fn pause(
        &self,
        who: &Principal,
        issuer: &str,
        reason: &str,
    ) -> Result<PauseView, DeskError> {
        self.issuer_admin(who, "issuance.pause", issuer)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_TEXT_CHARS {
            return Err(DeskError::Invalid(vec![FieldError::new(
                "reason",
                "required, at most 512 characters",
            )]));
        }
        let pause = IssuancePause {
            id: 0,
            issuer: issuer.into(),
            paused_at: self.now(),
            paused_by: who.actor(),
            reason: reason.into(),
            resumed_at: None,
            resumed_by: None,
        };
        let audit = self.audit(
            &who.actor(),
            "issuance.pause",
            issuer,
            Outcome::Success,
            format!("reason={reason}"),
        );
        self.store
            .pause_issuance(&pause, &audit)
            .map_err(|e| match e {
                StoreError::Changed(_) => {
                    DeskError::Conflict(format!("issuance by {issuer} is already paused"))
                }
                e => e.into(),
            })?;
        Ok(PauseView::from(&pause))
    }

    /// The issuers' pauses in force.
    pub fn active_pauses(&self, who: &Principal) -> Result<Vec<PauseView>, DeskError> {
        if who.role().is_none() {
            return Err(DeskError::Forbidden("operators only".into()));
        }
        let now = self.now();
        Ok(self
            .store
            .pauses(now, now + 1)?
            .iter()
            .filter(|p| p.resumed_at.is_none())
            .map(PauseView::from)
            .collect())
    }

    /// Asks to resume a paused issuer: it takes effect when a second CA admin confirms.
    pub fn propose_resume(
        &self,
        who: &Principal,
        issuer: &str,
    ) -> Result<ConfirmationView, DeskError> {
        self.issuer_admin(who, "issuance.resume", issuer)?;
        if self.store.active_pause(issuer)?.is_none() {
            return Err(DeskError::Conflict(format!(
                "issuance by {issuer} is not paused"
            )));
        }
        self.propose(who, "issuance.resume", issuer, None)
    }

    /// Asks to revoke an issuer's CA certificate (and stop its issuance for good): it takes
    /// effect when a second CA admin confirms.
    pub fn propose_issuer_revocation(
        &self,
        who: &Principal,
        issuer: &str,
        reason: &str,
    ) -> Result<ConfirmationView, DeskError> {
        self.issuer_admin(who, "issuer.revoke", issuer)?;
        let code = revocation::parse(reason.trim()).filter(|r| *r != CrlReason::CertificateHold);
        let Some(code) = code else {
            return Err(DeskError::Invalid(vec![FieldError::new(
                "reason",
                "a revocation reason: cACompromise, keyCompromise, cessationOfOperation, superseded, unspecified",
            )]));
        };
        self.propose(
            who,
            "issuer.revoke",
            issuer,
            Some(revocation::name(code).into()),
        )
    }

    fn propose(
        &self,
        who: &Principal,
        action: &str,
        target: &str,
        reason: Option<String>,
    ) -> Result<ConfirmationView, DeskError> {
        let mut c = Confirmation {
            id: 0,
            action: action.into(),
            target: target.into(),
            reason,
            requested_by: who.actor(),
            requested_at: self.now(),
            confirmed_by: None,
            confirmed_at: None,
        };
        let audit = self.audit(
            &who.actor(),
            &format!("{action}.propose"),
            target,
            Outcome::Success,
            c.reason.clone().unwrap_or_default(),
        );
        c.id = self.store.propose(&c, &audit)?;
        Ok(ConfirmationView::from(&c))
    }

    /// Dual-control actions waiting for a second CA admin.
    pub fn pending_confirmations(
        &self,
        who: &Principal,
    ) -> Result<Vec<ConfirmationView>, DeskError> {
        if !who.administers() {
            return Err(DeskError::Forbidden(
                "only a ca-admin sees dual-control actions".into(),
            ));
        }
        Ok(self
            .store
            .pending_confirmations()?
            .iter()
            .map(ConfirmationView::from)
            .collect())
    }

    /// Confirms a dual-control action: a CA admin other than the one who asked.
    pub fn confirm(&self, who: &Principal, id: i64) -> Result<ConfirmationView, DeskError> {
        let target = id.to_string();
        if !who.administers() {
            return Err(self.refuse(
                who,
                "confirm",
                &target,
                DeskError::Forbidden("only a ca-admin confirms".into()),
            ));
        }
        let c = self
            .store
            .confirmation(id)?
            .ok_or_else(|| DeskError::NotFound(format!("no confirmation {id}")))?;
        if c.requested_by == who.actor() {
            return Err(self.refuse(
                who,
                "confirm",
                &target,
                DeskError::Forbidden(
                    "dual control: a second, different ca-admin must confirm".into(),
                ),
            ));
        }
        if c.confirmed_at.is_some() {
            return Err(DeskError::Conflict(format!(
                "confirmation {id} is already confirmed"
            )));
        }
        if c.action == "issuer.revoke" {
            // Revoke first: if the CA refuses, nothing is marked confirmed.
            let ra = self
                .lifecycle
                .as_ref()
                .ok_or_else(|| DeskError::Unavailable("the CA keys are not loaded".into()))?;
            let issuer = ra
                .ca()
                .issuer(&c.target)
                .ok_or_else(|| DeskError::NotFound(format!("no issuing CA {:?}", c.target)))?;
            use der::Decode;
            let cert = x509_cert::Certificate::from_der(&issuer.der)
                .map_err(|e| DeskError::Internal(e.to_string()))?;
            let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
            let reason = c
                .reason
                .as_deref()
                .and_then(revocation::parse)
                .unwrap_or(CrlReason::Unspecified);
            ra.revoke(&serial, reason, None, &who.actor())?;
            if self.store.active_pause(&c.target)?.is_none() {
                self.store.pause_issuance(
                    &IssuancePause {
                        id: 0,
                        issuer: c.target.clone(),
                        paused_at: self.now(),
                        paused_by: who.actor(),
                        reason: "the issuer's certificate is revoked".into(),
                        resumed_at: None,
                        resumed_by: None,
                    },
                    &self.audit(
                        &who.actor(),
                        "issuance.pause",
                        &c.target,
                        Outcome::Success,
                        "reason=issuer revoked".into(),
                    ),
                )?;
            }
        }
        let audit = self.audit(
            &who.actor(),
            &format!("{}.confirm", c.action),
            &c.target,
            Outcome::Success,
            format!("proposed_by={}", c.requested_by),
        );
        let done = self.store.confirm(id, &who.actor(), self.now(), &audit)?;
        Ok(ConfirmationView::from(&done))
    }

    /// Refuses fulfilment that would issue while the issuer is paused.
    fn check_not_paused(&self, r: &RequestRecord) -> Result<(), DeskError> {
        if !matches!(
            r.kind,
            RequestKind::Issue | RequestKind::Renew | RequestKind::Modify
        ) {
            return Ok(());
        }
        let issuer = match (&r.issuer, &r.certificate) {
            (Some(i), _) => i.clone(),
            (None, Some(serial)) => self
                .store
                .certificate(serial)?
                .map(|c| c.issuer)
                .unwrap_or_else(|| crate::config::ISSUING.into()),
            (None, None) => crate::config::ISSUING.into(),
        };
        match self.store.active_pause(&issuer)? {
            Some(p) => Err(DeskError::Conflict(format!(
                "issuance by {issuer} is paused since {}: {}",
                local_rfc3339(p.paused_at),
                p.reason
            ))),
            None => Ok(()),
        }
    }

    /// Erases the personal fields of requests closed longer ago than `[ra] retention_days`
    /// (Decree 13/2023: kept no longer than needed); returns how many were erased.
    pub fn erase_expired(&self, who: &Principal) -> Result<u64, DeskError> {
        if !who.administers() {
            return Err(DeskError::Forbidden("only a ca-admin erases".into()));
        }
        let now = self.now();
        let before = now.saturating_sub(u64::from(self.config.load().ra.retention_days) * 86_400);
        let audit = self.audit(
            &who.actor(),
            "request.erase",
            "personal-data",
            Outcome::Success,
            String::new(),
        );
        Ok(self.store.erase_personal_data(before, now, &audit)?)
    }

    /// Everything the RA holds about one subscriber (by official email), for a data subject's
    /// request (Decree 13/2023 art. 14): the requests in the caller's reach, personal fields
    /// opened, with their history. The export is audited.
    pub fn export_subscriber(
        &self,
        who: &Principal,
        email: &str,
    ) -> Result<Vec<(RequestView, Vec<EventView>)>, DeskError> {
        if !matches!(
            who.role(),
            Some(Role::CaAdmin | Role::RaOfficer | Role::OrgOfficer)
        ) {
            return Err(DeskError::Forbidden(
                "this role does not export personal data".into(),
            ));
        }
        let reach = who.reach();
        let rows: Vec<_> = self
            .store
            .requests_of_subscriber(email.trim())?
            .into_iter()
            .filter(|r| reach.covers(r))
            .collect();
        let audit = self.audit(
            &who.actor(),
            "subscriber.export",
            "subscriber",
            Outcome::Success,
            format!("requests={}", rows.len()),
        );
        self.store.audit(&audit)?;
        rows.iter()
            .map(|r| {
                let doc = r
                    .document
                    .map(|d| self.store.document(d))
                    .transpose()?
                    .flatten();
                Ok((self.view(r, doc.as_ref()), self.history(who, r.id)?))
            })
            .collect()
    }

    /// How many requests in `who`'s reach are in each state (the dashboard's filter counts),
    /// states without one left out; nothing for a principal without reach.
    pub fn state_counts(&self, who: &Principal) -> Result<Vec<(RequestState, u64)>, DeskError> {
        let scope = match reach_scope(who) {
            Ok(s) => s,
            Err(_) => return Ok(Vec::new()),
        };
        Ok(self.store.request_counts_by_state(&scope)?)
    }

    /// The report of a subtree and period (auditors, RA officers, CA admins; organisation
    /// officers for their own organisation).
    pub fn report(
        &self,
        who: &Principal,
        q: &ReportQuery,
    ) -> Result<super::report::Report, DeskError> {
        let day = |field: &str, s: &str| {
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                .map_err(|_| FieldError::new(field, "a date, YYYY-MM-DD"))
        };
        let (from, to) = match (day("from", &q.from), day("to", &q.to)) {
            (Ok(f), Ok(t)) if f <= t => (f, t),
            (Ok(_), Ok(_)) => {
                return Err(DeskError::Invalid(vec![FieldError::new(
                    "to",
                    "before from",
                )]))
            }
            (a, b) => {
                return Err(DeskError::Invalid(
                    [a.err(), b.err()].into_iter().flatten().collect(),
                ))
            }
        };
        if q.format
            .as_deref()
            .is_some_and(|f| f != "json" && f != "csv")
        {
            return Err(DeskError::Invalid(vec![FieldError::new(
                "format",
                "json or csv",
            )]));
        }
        if who.role().is_none() {
            return Err(DeskError::Forbidden("reports are for operators".into()));
        }
        let mut scope = reach_scope(who)?;
        if let Some(org) = &q.organisation {
            let o = self
                .store
                .organisation(org)?
                .filter(|o| {
                    who.reach()
                        .covers_organisation(&o.id, o.province.as_deref(), &o.path)
                })
                .ok_or_else(|| DeskError::NotFound(format!("no organisation {org:?}")))?;
            // Within an org-officer's own organisation, the subtree is that organisation.
            if scope.organisation.is_none() {
                scope.under_path = Some(match scope.under_path.take() {
                    Some(reach) if reach.len() > o.path.len() => reach,
                    _ => o.path,
                });
            }
        }
        let start = from
            .midnight()
            .assume_offset(VIETNAM)
            .unix_timestamp()
            .max(0) as u64;
        let end = to
            .next_day()
            .unwrap_or(to)
            .midnight()
            .assume_offset(VIETNAM)
            .unix_timestamp()
            .max(0) as u64;
        let now = self.now();
        let calendar = self.calendar.load();
        let mut tally = super::report::Tally::new(
            &calendar,
            self.config.load().ra.working_hours,
            start,
            end,
            now,
        );
        self.store
            .report_rows(&scope, start, end, &mut |r| tally.add(r))?;
        let at = end.min(now);
        let counts = self
            .store
            .certificate_counts(&scope, at, at + 30 * 86_400)?;
        let pauses = self.store.pauses(start, end)?;
        let (months, until) = super::report::expiry_months(at);
        let expiring = self
            .store
            .certificates_expiring_by_month(&scope, at, until)?;
        Ok(tally.finish(
            q.organisation.clone(),
            q.from.clone(),
            q.to.clone(),
            counts,
            &pauses,
            super::report::fill_months(months, &expiring),
        ))
    }

    /// Moves a request: accept, approve (and fulfil), return, reject, resubmit,
    /// original-received.
    pub fn act(
        &self,
        who: &Principal,
        id: i64,
        input: &ActionInput,
    ) -> Result<RequestView, DeskError> {
        let target = id.to_string();
        let action = input.action.as_str();
        let audit_action = format!("request.{action}");
        let r = match self.store.request(id)? {
            Some(r) => r,
            None => return Err(DeskError::NotFound(format!("no request {id}"))),
        };
        if !who.reach().covers(&r) {
            return Err(self.refuse(
                who,
                &audit_action,
                &target,
                DeskError::Forbidden(format!("request {id} is outside your scope")),
            ));
        }
        let reason = input
            .reason
            .as_ref()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        if reason
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_TEXT_CHARS)
        {
            return Err(DeskError::Invalid(vec![FieldError::new(
                "reason",
                format!("at most {MAX_TEXT_CHARS} characters"),
            )]));
        }
        use RequestState as S;
        let deciders_only = action != "resubmit";
        let allowed = if deciders_only {
            who.decides()
        } else {
            who.files()
        };
        if !allowed && ACTIONS.contains(&action) {
            return Err(self.refuse(
                who,
                &audit_action,
                &target,
                DeskError::Forbidden(format!("your role may not {action} requests")),
            ));
        }
        let to = match (action, r.state) {
            ("accept", S::Submitted) => S::Accepted,
            ("original-received", S::AwaitingOriginal) => S::Accepted,
            ("approve", S::Accepted) => S::Approved,
            ("approve", S::Approved) if r.issued_certificate.is_none() => S::Approved,
            ("return", S::Submitted | S::AwaitingOriginal | S::Accepted) => S::Returned,
            ("reject", S::Submitted | S::AwaitingOriginal | S::Accepted | S::Returned) => {
                S::Rejected
            }
            ("resubmit", S::Returned) => S::Submitted,
            (
                "accept" | "original-received" | "approve" | "return" | "reject" | "resubmit",
                state,
            ) => {
                return Err(self.refuse(
                    who,
                    &audit_action,
                    &target,
                    DeskError::Conflict(format!(
                        "request {id} is {}; it cannot be {}",
                        state.as_str(),
                        past(action)
                    )),
                ))
            }
            _ => {
                return Err(DeskError::Invalid(vec![FieldError::new(
                    "action",
                    "accept, approve, return, reject, resubmit or original-received",
                )]))
            }
        };
        let allowed = if deciders_only {
            who.decides()
        } else {
            who.files()
        };
        if !allowed {
            return Err(self.refuse(
                who,
                &audit_action,
                &target,
                DeskError::Forbidden(format!("your role may not {action} requests")),
            ));
        }
        if to == S::Approved {
            self.check_not_paused(&r)?;
        }
        let corrected = match &input.corrected {
            None => None,
            Some(_) if action != "resubmit" => {
                return Err(DeskError::Invalid(vec![FieldError::new(
                    "corrected",
                    "only with resubmit",
                )]))
            }
            Some(c) => Some(self.correction(who, &r, c)?),
        };
        if matches!(action, "return" | "reject") && reason.is_none() {
            return Err(DeskError::Invalid(vec![FieldError::new(
                "reason",
                format!("required to {action}"),
            )]));
        }
        let now = self.now();
        let deadline = match to {
            S::Accepted => Some((Some(now), Some(self.due(r.kind, now)))),
            // Returning stops the clock; the corrected dossier starts a new period.
            S::Returned => Some((None, None)),
            _ => None,
        };
        let due = deadline.and_then(|(_, d)| d);
        let event = match to {
            S::Accepted => Some(crate::notify::messages::Event::Accepted),
            S::Returned => Some(crate::notify::messages::Event::Returned),
            S::Rejected => Some(crate::notify::messages::Event::Rejected),
            _ => None,
        };
        let notices = match event {
            Some(e) => self.notices(&r, e, due, reason.clone(), None)?,
            None => Vec::new(),
        };
        let queued = !notices.is_empty() && r.state != to;
        let mut current = if r.state == to {
            r
        } else {
            self.store.transition(&Transition {
                revocation_code: None,
                corrected,
                request: id,
                from: r.state,
                to,
                action: action.into(),
                actor: who.actor(),
                reason: reason.clone(),
                at: now,
                deadline,
                issued_certificate: None,
                notices,
                audit: self.audit(
                    &who.actor(),
                    &audit_action,
                    &target,
                    Outcome::Success,
                    format!("{} -> {}", r.state.as_str(), to.as_str()),
                ),
            })?
        };
        self.committed(queued, false);
        if to == S::Approved {
            current = self.fulfil(who, current)?;
        }
        let doc = current
            .document
            .map(|d| self.store.document(d))
            .transpose()?
            .flatten();
        Ok(self.view(&current, doc.as_ref()))
    }

    /// Checks a corrected dossier for a returned request `r` as a new filing would be checked,
    /// and verifies its document: the record whose dossier replaces `r`'s, and the document.
    fn correction(
        &self,
        who: &Principal,
        r: &RequestRecord,
        input: &RequestInput,
    ) -> Result<(RequestRecord, Option<DocumentRecord>), DeskError> {
        let mut errors = Vec::new();
        if input.kind != r.kind.as_str() {
            errors.push(FieldError::new(
                "corrected.kind",
                format!("the request's own kind, {}", r.kind.as_str()),
            ));
        }
        if input
            .organisation
            .as_ref()
            .is_some_and(|o| *o != r.organisation)
        {
            errors.push(FieldError::new(
                "corrected.organisation",
                "the request's own organisation",
            ));
        }
        let mut input = input.clone();
        input.organisation = Some(r.organisation.clone());
        let document = input.document.take();
        let mut found = Vec::new();
        let draft = self.draft(who, &input, self.now(), &mut found)?;
        let filed = document
            .as_ref()
            .and_then(|d| self.decode_document(d, &mut found));
        errors.extend(found.into_iter().map(|mut e| {
            e.field = format!("corrected.{}", e.field);
            e
        }));
        let Some(draft) = draft.filter(|_| errors.is_empty()) else {
            return Err(DeskError::Invalid(errors));
        };
        let document = filed
            .map(|f| self.verify_document(f, &r.organisation))
            .transpose()?;
        let mut found = Vec::new();
        crate::csc::policy::check_document(
            std::slice::from_ref(&draft),
            document.as_ref(),
            &mut found,
        );
        if !found.is_empty() {
            return Err(DeskError::Invalid(
                found
                    .into_iter()
                    .map(|(f, m)| FieldError::new(&format!("corrected.{f}"), m))
                    .collect(),
            ));
        }
        Ok((draft, document))
    }

    /// Fulfils an approved request through the lifecycle RA and the CA. Requests whose key is
    /// made on a device or in the HSM stay approved until that work is done.
    fn fulfil(&self, who: &Principal, r: RequestRecord) -> Result<RequestRecord, DeskError> {
        if r.key_origin != KeyOrigin::Csr
            && matches!(r.kind, RequestKind::Issue | RequestKind::Recover)
        {
            return Ok(r);
        }
        let ra = self
            .lifecycle
            .as_ref()
            .ok_or_else(|| DeskError::Unavailable("the CA keys are not loaded".into()))?;
        let actor = who.actor();
        let cert = r.certificate.as_deref().unwrap_or_default();
        let issued = match r.kind {
            RequestKind::Issue => {
                let csr = r.csr.as_deref().unwrap_or_default();
                let profile = r.profile.as_deref().unwrap_or_default();
                let org = self.store.organisation(&r.organisation)?;
                let subject = subscriber_subject(&r, org.as_ref());
                Some(
                    ra.issue_as(
                        csr,
                        subject.as_deref(),
                        profile,
                        r.issuer.as_deref(),
                        None,
                        &actor,
                    )?
                    .serial,
                )
            }
            RequestKind::Renew => Some(ra.renew(cert, None, &actor)?.serial),
            RequestKind::Modify => {
                let org = self.store.organisation(&r.organisation)?;
                let subject = subscriber_subject(&r, org.as_ref());
                Some(
                    ra.modify(cert, subject.as_deref(), r.csr.as_deref(), None, &actor)?
                        .serial,
                )
            }
            RequestKind::Revoke => {
                let reason = r
                    .reason
                    .as_deref()
                    .and_then(revocation::parse)
                    .unwrap_or(CrlReason::Unspecified);
                ra.revoke(cert, reason, None, &actor)?;
                None
            }
            RequestKind::Recover => return Ok(r),
        };
        // The CA has committed: whatever happens to the request's own row, this process's
        // status view catches up before anyone is answered.
        let done = self.record_fulfilment(&r, &actor, issued, cert);
        self.committed(done.is_ok(), true);
        done
    }

    /// The approved request `id` whose key is made outside the request itself — on a
    /// subscriber's key device (`key_origin = token`) or in the key backend (`central`) — checked
    /// for `who`'s scope and role, and for a paused issuer when it would issue.
    fn approved_off_desk(
        &self,
        who: &Principal,
        id: i64,
        audit_action: &str,
    ) -> Result<RequestRecord, DeskError> {
        let target = id.to_string();
        let r = self
            .store
            .request(id)?
            .ok_or_else(|| DeskError::NotFound(format!("no request {id}")))?;
        if !who.reach().covers(&r) {
            return Err(self.refuse(
                who,
                audit_action,
                &target,
                DeskError::Forbidden(format!("request {id} is outside your scope")),
            ));
        }
        if !who.decides() {
            return Err(self.refuse(
                who,
                audit_action,
                &target,
                DeskError::Forbidden("your role may not fulfil requests".into()),
            ));
        }
        if r.state != RequestState::Approved
            || r.key_origin == KeyOrigin::Csr
            || !matches!(r.kind, RequestKind::Issue | RequestKind::Recover)
        {
            return Err(self.refuse(
                who,
                audit_action,
                &target,
                DeskError::Conflict(format!(
                    "request {id} is a {} {} request that is {}; only an approved issue or \
                     recover request whose key is on a device or in the HSM is fulfilled here",
                    r.key_origin.as_str(),
                    r.kind.as_str(),
                    r.state.as_str()
                )),
            ));
        }
        self.check_not_paused(&r)?;
        Ok(r)
    }

    /// The approved request `id` whose key is on a device or in the key backend, after checking
    /// `who` may fulfil it (scope, role, state, a paused issuer): the record, for the caller to
    /// read the subscriber, the profile and the issuer.
    pub fn approved_for_fulfilment(
        &self,
        who: &Principal,
        id: i64,
    ) -> Result<RequestRecord, DeskError> {
        self.approved_off_desk(who, id, "request.fulfil")
    }

    /// Issues the certificate of the approved `issue` request `id` whose key was made on a key
    /// device or in the key backend, for `csr` (PEM or DER, signed by that key), with the
    /// request's subject, profile and issuer. The certificate is durably stored and audited; the
    /// request stays approved until [`RequestDesk::complete_approved`] records the fulfilment
    /// (once the certificate is on the device or in the signing account). A caller that cannot
    /// finish revokes the certificate with [`RequestDesk::withdraw_issued`].
    pub fn issue_approved(
        &self,
        who: &Principal,
        id: i64,
        csr: &[u8],
    ) -> Result<crate::ca::Issued, DeskError> {
        let r = self.approved_off_desk(who, id, "request.fulfil")?;
        if r.kind != RequestKind::Issue {
            return Err(DeskError::Conflict(format!(
                "request {id} is a {} request; it issues no certificate",
                r.kind.as_str()
            )));
        }
        let ra = self
            .lifecycle
            .as_ref()
            .ok_or_else(|| DeskError::Unavailable("the CA keys are not loaded".into()))?;
        let org = self.store.organisation(&r.organisation)?;
        let subject = subscriber_subject(&r, org.as_ref());
        let issued = ra.issue_as(
            csr,
            subject.as_deref(),
            r.profile.as_deref().unwrap_or_default(),
            r.issuer.as_deref(),
            None,
            &who.actor(),
        )?;
        self.committed(false, true);
        Ok(issued)
    }

    /// Revokes a certificate [`RequestDesk::issue_approved`] issued for request `id` that never
    /// reached its device or account (`cessationOfOperation`); the request stays approved, so it
    /// can be fulfilled again.
    pub fn withdraw_issued(&self, who: &Principal, id: i64, serial: &str) -> Result<(), DeskError> {
        self.approved_off_desk(who, id, "request.withdraw")?;
        let ra = self
            .lifecycle
            .as_ref()
            .ok_or_else(|| DeskError::Unavailable("the CA keys are not loaded".into()))?;
        ra.revoke(serial, CrlReason::CessationOfOperation, None, &who.actor())?;
        self.committed(false, true);
        Ok(())
    }

    /// Records the fulfilment of the approved request `id` whose key is on a device or in the
    /// key backend: with `serial`, the certificate [`RequestDesk::issue_approved`] issued (an
    /// `issue` request); without, the device or account recovered (a `recover` request). Queues
    /// the fulfilment notices (and the subscriber's revocation code for a new certificate).
    pub fn complete_approved(
        &self,
        who: &Principal,
        id: i64,
        serial: Option<&str>,
    ) -> Result<RequestView, DeskError> {
        let r = self.approved_off_desk(who, id, "request.fulfil")?;
        match (r.kind, serial) {
            (RequestKind::Issue, Some(s)) => {
                let cert = self
                    .store
                    .certificate(s)?
                    .ok_or_else(|| DeskError::NotFound(format!("no certificate {s}")))?;
                if Some(cert.profile.as_str()) != r.profile.as_deref() {
                    return Err(DeskError::Conflict(format!(
                        "certificate {s} was not issued for request {id}'s profile"
                    )));
                }
            }
            (RequestKind::Recover, None) => {}
            (kind, _) => {
                return Err(DeskError::Conflict(format!(
                    "a {} request is completed {} a certificate",
                    kind.as_str(),
                    if kind == RequestKind::Issue {
                        "with"
                    } else {
                        "without"
                    }
                )))
            }
        }
        let done = self.record_fulfilment(
            &r,
            &who.actor(),
            serial.map(str::to_owned),
            r.certificate.as_deref().unwrap_or_default(),
        );
        self.committed(done.is_ok(), true);
        let done = done?;
        let doc = done
            .document
            .map(|d| self.store.document(d))
            .transpose()?
            .flatten();
        Ok(self.view(&done, doc.as_ref()))
    }

    /// The fulfilment's transition, with its notices, after the CA committed.
    fn record_fulfilment(
        &self,
        r: &RequestRecord,
        actor: &str,
        issued: Option<String>,
        cert: &str,
    ) -> Result<RequestRecord, DeskError> {
        let at = self.now();
        let serial = issued.clone().or_else(|| r.certificate.clone());
        let org = self.store.organisation(&r.organisation)?;
        let mut notice = self.notice_for(
            r,
            org.as_ref(),
            crate::notify::messages::Event::Fulfilled,
            r.due_at,
            None,
            serial,
        );
        // A new certificate gets its subscriber a one-time revocation code, delivered in the
        // fulfilment mail to the subscriber's own address and kept only as its SHA-256.
        let revocation_code = match (&issued, r.subscriber.email.as_deref()) {
            (Some(serial), Some(_)) => {
                let code = credentials::new_revocation_code()
                    .map_err(|e| DeskError::Unavailable(e.to_string()))?;
                notice.revocation_code = Some(code.code.to_string());
                Some((serial.clone(), code.sha256))
            }
            _ => None,
        };
        let notices = crate::notify::messages::compose(&notice, &self.config.load().notify);
        Ok(self.store.transition(&Transition {
            revocation_code,
            corrected: None,
            notices,
            request: r.id,
            from: RequestState::Approved,
            to: RequestState::Fulfilled,
            action: "fulfil".into(),
            actor: actor.to_owned(),
            reason: None,
            at,
            deadline: None,
            issued_certificate: issued.clone(),
            audit: self.audit(
                actor,
                "request.fulfil",
                &r.id.to_string(),
                Outcome::Success,
                match (&issued, r.kind) {
                    (Some(s), _) => format!("serial={s}"),
                    (None, RequestKind::Recover) => "recovered".into(),
                    (None, _) => format!("revoked={cert}"),
                },
            ),
        })?)
    }

    /// The notices an event on a request queues: to the organisation's contact and the
    /// subscriber's official email, by the configured channels (docs/notify.md).
    fn notices(
        &self,
        r: &RequestRecord,
        event: crate::notify::messages::Event,
        due_at: Option<u64>,
        reason: Option<String>,
        serial: Option<String>,
    ) -> Result<Vec<crate::store::OutboxMessage>, DeskError> {
        let org = self.store.organisation(&r.organisation)?;
        Ok(self.notices_for(r, org.as_ref(), event, due_at, reason, serial))
    }

    /// [`Self::notices`] with the organisation already read (no store access: usable inside
    /// a store transaction).
    fn notices_for(
        &self,
        r: &RequestRecord,
        org: Option<&Organisation>,
        event: crate::notify::messages::Event,
        due_at: Option<u64>,
        reason: Option<String>,
        serial: Option<String>,
    ) -> Vec<crate::store::OutboxMessage> {
        let notice = self.notice_for(r, org, event, due_at, reason, serial);
        crate::notify::messages::compose(&notice, &self.config.load().notify)
    }

    /// The notice of an event on a request, before it is composed into messages.
    fn notice_for(
        &self,
        r: &RequestRecord,
        org: Option<&Organisation>,
        event: crate::notify::messages::Event,
        due_at: Option<u64>,
        reason: Option<String>,
        serial: Option<String>,
    ) -> crate::notify::messages::Notice {
        crate::notify::messages::Notice {
            event,
            request: r.id,
            kind: r.kind.as_str().into(),
            recovery: r.recovery.map(AccountRecovery::as_str),
            parties: crate::store::outbox::RequestParties {
                organisation: r.organisation.clone(),
                organisation_name: org.map(|o| o.name.clone()).unwrap_or_default(),
                organisation_email: org.and_then(|o| o.email.clone()),
                subscriber_name: r.subscriber.name.clone(),
                subscriber_email: r.subscriber.email.clone(),
            },
            due_at,
            reason,
            serial,
            not_after: None,
            revocation_code: None,
        }
    }

    fn view(&self, r: &RequestRecord, doc: Option<&DocumentRecord>) -> RequestView {
        let s = &r.subscriber;
        RequestView {
            id: r.id,
            kind: r.kind.as_str(),
            state: r.state.as_str(),
            organisation: r.organisation.clone(),
            profile: r.profile.clone(),
            key_origin: r.key_origin.as_str(),
            issuer: r.issuer.clone(),
            subscriber: SubscriberView {
                name: s.name.clone(),
                email: s.email.clone(),
                phone: self.unseal(&r.organisation, "phone", &s.phone_sealed),
                title: s.title.clone(),
                unit: s.unit.clone(),
                id_number: self.unseal(&r.organisation, "id_number", &s.id_number_sealed),
            },
            certificate: r.certificate.clone(),
            issued_certificate: r.issued_certificate.clone(),
            reason: r.reason.clone(),
            recovery: r.recovery.map(AccountRecovery::as_str),
            document: doc.map(|d| DocumentView {
                id: d.id,
                filename: d.filename.clone(),
                sha256: hex::encode(&d.sha256),
                valid: d.valid,
                signer_subject: d.signer_subject.clone(),
                signer_serial: d.signer_serial.clone(),
                signed_at: d.signed_at.map(local_rfc3339),
                problem: d.problem.clone(),
            }),
            batch: r.batch.clone(),
            submitted_by: r.submitted_by.clone(),
            submitted_at: local_rfc3339(r.submitted_at),
            accepted_at: r.accepted_at.map(local_rfc3339),
            due_at: r.due_at.map(local_rfc3339),
            fulfilled_at: r.fulfilled_at.map(local_rfc3339),
            closed_at: r.closed_at.map(local_rfc3339),
            overdue: is_overdue(r, self.now()),
        }
    }
}

/// The actions on a request.
const ACTIONS: [&str; 6] = [
    "accept",
    "original-received",
    "approve",
    "return",
    "reject",
    "resubmit",
];

/// An `issue` request (or, for a CMP kur, a `modify` request that rekeys `replaces`) that a
/// machine protocol (EST, CMP) files for an operator to approve, on behalf of the organisation
/// whose credential the client showed.
pub struct MachineFiling<'a> {
    /// The organisation.
    pub org: &'a Organisation,
    /// The label's profile and issuer.
    pub profile: &'a str,
    /// The issuer.
    pub issuer: &'a str,
    /// The client's PKCS#10 (DER), or the CRMF request a CMP client sent
    /// (`pkid_protocols::cmp::held_request`), which the approval fulfils.
    pub csr_der: &'a [u8],
    /// The serial of the certificate a key update replaces (filed as `modify`: its approval
    /// issues the successor with the new key and revokes this one as superseded).
    pub replaces: Option<String>,
    /// The subscriber's name (the CSR's common name) and unit.
    pub name: String,
    /// The CSR's organisational unit, if any.
    pub unit: Option<String>,
    /// Who filed it (the credential's actor).
    pub actor: &'a str,
    /// What the audit record adds about the channel (e.g. `est-label=devices …`).
    pub via: String,
}

/// Stores `f` as an accepted request due `working_days` working days from `now` on
/// `calendar`, audited, with no notices (the organisation's machine polls for the answer):
/// the request's id.
pub fn file_machine_request(
    store: &dyn Store,
    calendar: &Calendar,
    working_days: u32,
    now: u64,
    f: MachineFiling<'_>,
) -> Result<i64, StoreError> {
    let accepted =
        OffsetDateTime::from_unix_timestamp(now as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let due = calendar
        .due_working_days(accepted, working_days)
        .unix_timestamp()
        .max(0) as u64;
    let kind = if f.replaces.is_some() {
        RequestKind::Modify
    } else {
        RequestKind::Issue
    };
    let record = RequestRecord {
        id: 0,
        kind,
        organisation: f.org.id.clone(),
        province: f.org.province.clone(),
        org_path: f.org.path.clone(),
        state: RequestState::Accepted,
        profile: Some(f.profile.to_owned()),
        key_origin: KeyOrigin::Csr,
        issuer: Some(f.issuer.to_owned()),
        subscriber: SubscriberFields {
            name: Some(f.name),
            email: f.org.email.clone(),
            title: None,
            unit: f.unit,
            phone_sealed: None,
            id_number_sealed: None,
        },
        csr: Some(f.csr_der.to_vec()),
        certificate: f.replaces,
        issued_certificate: None,
        reason: None,
        recovery: None,
        document: None,
        batch: None,
        submitted_by: f.actor.to_owned(),
        submitted_at: now,
        accepted_at: Some(now),
        due_at: Some(due),
        fulfilled_at: None,
        closed_at: None,
        breach_notified_at: None,
        erased_at: None,
        updated_at: now,
    };
    let audit = AuditEntry {
        at: now,
        actor: f.actor.to_owned(),
        action: "request.submit".into(),
        target: f.org.id.clone(),
        outcome: Outcome::Success,
        detail: format!("requests=1 state=accepted {}", f.via),
    };
    store
        .submit_requests(None, &[record], &audit, &|_| Vec::new())?
        .first()
        .map(|r| r.id)
        .ok_or_else(|| StoreError::Unavailable("no request stored".into()))
}

/// Whether a request is past its deadline and still open.
pub fn is_overdue(r: &RequestRecord, now: u64) -> bool {
    matches!(r.state, RequestState::Accepted | RequestState::Approved)
        && r.due_at.is_some_and(|d| d < now)
}

/// The subject of a subscriber's certificate, from the registered data (not the CSR's): the
/// subscriber's name (and unit) under the organisation's legal name, in Vietnam. Issue and
/// modify both use it, so a certificate names whom the organisation vouched for.
fn subscriber_subject(r: &RequestRecord, org: Option<&Organisation>) -> Option<String> {
    let name = r.subscriber.name.as_deref()?;
    let esc = |s: &str| {
        s.chars()
            .flat_map(|c| match c {
                ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => vec!['\\', c],
                c => vec![c],
            })
            .collect::<String>()
    };
    let mut dn = format!("CN={}", esc(name));
    if let Some(unit) = r.subscriber.unit.as_deref() {
        dn.push_str(&format!(",OU={}", esc(unit)));
    }
    if let Some(org) = org {
        dn.push_str(&format!(",O={}", esc(&org.name)));
    }
    dn.push_str(",C=VN");
    Some(dn)
}

fn check_reason(reason: Option<&str>, errors: &mut Vec<FieldError>) -> Option<String> {
    let Some(r) = reason else {
        errors.push(FieldError::new("reason", "required to revoke"));
        return None;
    };
    match revocation::parse(r) {
        Some(CrlReason::CertificateHold) | None => {
            errors.push(FieldError::new(
                "reason",
                "a revocation reason: keyCompromise, affiliationChanged, superseded, cessationOfOperation, unspecified",
            ));
            None
        }
        Some(code) => Some(revocation::name(code).into()),
    }
}

fn past(action: &str) -> &'static str {
    match action {
        "accept" => "accepted",
        "original-received" => "marked original-received",
        "approve" => "approved",
        "return" => "returned",
        "reject" => "rejected",
        _ => "resubmitted",
    }
}

/// The sealing context of a subscriber's personal field: a sealed value copied to another
/// organisation's row, or to another field, does not open.
fn personal_context(org: &str, field: &str) -> String {
    format!("pkid:ra:subscriber:{org}:{field}")
}

fn totp_context(operator: &str) -> String {
    format!("pkid:ra:operator:{operator}:totp")
}

/// An Argon2id hash of nothing in particular, verified against when the login id is unknown.
const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ";

/// The requests `who` may see, as a filter: everything, a province, a subtree or one
/// organisation; forbidden for a principal without reach.
fn reach_scope(who: &Principal) -> Result<RequestFilter, DeskError> {
    let mut scope = RequestFilter::default();
    match who.reach() {
        Reach::All => {}
        Reach::Province(p) => scope.province = Some(p),
        Reach::Subtree(path) => scope.under_path = Some(path),
        Reach::Organisation(o) => scope.organisation = Some(o),
        Reach::Nothing => return Err(DeskError::Forbidden("no reach".into())),
    }
    Ok(scope)
}
