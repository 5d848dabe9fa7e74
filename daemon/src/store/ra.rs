//! The registration authority's role: organisations, operators and their credentials, requests
//! with their history, and request documents.
//!
//! ```text
//! organisations   id → name, province, parent, tree path, contact, profiles   (soft delete)
//! operators       id → name, role, organisation, scope, password hash, sealed TOTP secret
//! credentials     certificate fingerprint → operator; bearer-token hash → operator, expiry
//! requests        id → kind, organisation, state, subscriber, deadline, certificates
//! request_events  request → who moved it from which state to which, when, why
//! documents       id → the request document byte-exact and its verification result
//! ```
//!
//! Every write here is one transaction with its audit record, so a request never changes state
//! without its history and its audit entry, and a bulk submission is stored whole or not at all.
//! Moving a request is a compare-and-set on its state ([`Transition::from`]): two officers
//! acting on one request at once cannot both win.

use super::{AuditEntry, StoreError};

/// What an operator may do (issue 11, "Operator").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Files and follows requests for one organisation.
    OrgOfficer,
    /// Accepts, approves, returns and rejects requests within a scope.
    RaOfficer,
    /// Reads requests, reports and the audit log within a scope.
    Auditor,
    /// Manages issuers, profiles, organisations and operators.
    CaAdmin,
}

impl Role {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrgOfficer => "org-officer",
            Self::RaOfficer => "ra-officer",
            Self::Auditor => "auditor",
            Self::CaAdmin => "ca-admin",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::OrgOfficer,
            Self::RaOfficer,
            Self::Auditor,
            Self::CaAdmin,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// Which organisations an operator's role reaches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every organisation.
    All,
    /// The organisations whose province code is this one.
    Province(String),
    /// This organisation and its subtree.
    Organisation(String),
}

impl Scope {
    /// Parses `all`, `province:CODE` or `org:ID`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once(':') {
            None if s == "all" => Some(Self::All),
            Some(("province", code)) if !code.is_empty() => Some(Self::Province(code.into())),
            Some(("org", id)) if !id.is_empty() => Some(Self::Organisation(id.into())),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Province(c) => write!(f, "province:{c}"),
            Self::Organisation(id) => write!(f, "org:{id}"),
        }
    }
}

/// A directly managing organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organisation {
    /// Slug: letters, digits, `-`.
    pub id: String,
    /// Legal name (Vietnamese, UTF-8, exactly as registered).
    pub name: String,
    /// Registry or tax id.
    pub registry_id: Option<String>,
    /// Province code.
    pub province: Option<String>,
    /// The organisation above it in the delegation tree.
    pub parent: Option<String>,
    /// `/root/…/id/`: its ancestry, fixed at creation.
    pub path: String,
    /// Contact email (notifications).
    pub email: Option<String>,
    /// Profiles it may request (empty: every configured profile).
    pub profiles: Vec<String>,
    /// Sector (`education`, `training`, `health`, `other`).
    pub sector: String,
    /// Unix seconds.
    pub created_at: u64,
    /// When it was removed (soft delete).
    pub deleted_at: Option<u64>,
}

/// A person who works the RA: an organisation's officer, an RA officer, an auditor, a CA admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// Login id.
    pub id: String,
    /// Full name.
    pub name: String,
    /// Email.
    pub email: Option<String>,
    /// Role.
    pub role: Role,
    /// The organisation an `org-officer` works for.
    pub organisation: Option<String>,
    /// What the role reaches.
    pub scope: Scope,
    /// Argon2id PHC string of the portal password.
    pub password_hash: Option<String>,
    /// The TOTP secret, sealed under the data key.
    pub totp_sealed: Option<Vec<u8>>,
    /// Unix seconds.
    pub created_at: u64,
    /// When it was removed; a removed operator authenticates no more.
    pub removed_at: Option<u64>,
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// A new certificate.
    Issue,
    /// The same subject and key, a new validity.
    Renew,
    /// Changed subscriber information: a new certificate, the old one superseded.
    Modify,
    /// Revocation.
    Revoke,
    /// Recovery of a key device (unlock).
    Recover,
}

impl RequestKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [Self; 5] = [
        Self::Issue,
        Self::Renew,
        Self::Modify,
        Self::Revoke,
        Self::Recover,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issue => "issue",
            Self::Renew => "renew",
            Self::Modify => "modify",
            Self::Revoke => "revoke",
            Self::Recover => "recover",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a request is in its life (issue 11, the state machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// Filed, not yet accepted.
    Submitted,
    /// Accepted: the deadline runs.
    Accepted,
    /// Approved by an RA officer; being fulfilled.
    Approved,
    /// Done: the certificate issued, renewed, re-issued or revoked, or the device recovered.
    Fulfilled,
    /// Sent back for correction; the clock stopped.
    Returned,
    /// Refused for good.
    Rejected,
    /// The document was not validly signed: waits for the paper original.
    AwaitingOriginal,
}

impl RequestState {
    /// Every state.
    pub const ALL: [Self; 7] = [
        Self::Submitted,
        Self::Accepted,
        Self::Approved,
        Self::Fulfilled,
        Self::Returned,
        Self::Rejected,
        Self::AwaitingOriginal,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Accepted => "accepted",
            Self::Approved => "approved",
            Self::Fulfilled => "fulfilled",
            Self::Returned => "returned",
            Self::Rejected => "rejected",
            Self::AwaitingOriginal => "awaiting-original",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the request is closed (nothing more happens to it).
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Fulfilled | Self::Rejected)
    }
}

/// Where the subscriber's key comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyOrigin {
    /// A PKCS#10 request from the client.
    Csr,
    /// Generated on a key device by the CA.
    Token,
    /// Generated in the HSM for remote signing.
    Central,
}

impl KeyOrigin {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csr => "csr",
            Self::Token => "token",
            Self::Central => "central",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Csr, Self::Token, Self::Central]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// What a `recover` request does to a remote-signing account (key origin `central`, the
/// certificate one of the account's credentials).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountRecovery {
    /// Unlocks an account locked after repeated wrong codes; password and authenticator kept.
    Unlock,
    /// Enrols the account again (a lost phone, a forgotten password): password and
    /// authenticator removed, a new activation link mailed.
    Reenrol,
}

impl AccountRecovery {
    /// Both, in the order forms list them.
    pub const ALL: [Self; 2] = [Self::Unlock, Self::Reenrol];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unlock => "unlock",
            Self::Reenrol => "reenrol",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The subscriber a request is for. Phone and national id number are sealed under the data key
/// before they reach the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriberFields {
    /// Full name.
    pub name: Option<String>,
    /// Official email.
    pub email: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Organisation unit.
    pub unit: Option<String>,
    /// Phone, sealed.
    pub phone_sealed: Option<Vec<u8>>,
    /// National id number, sealed.
    pub id_number_sealed: Option<Vec<u8>>,
}

/// A request document as received, with its verification result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentRecord {
    /// Id (0 before it is stored).
    pub id: i64,
    /// File name as given.
    pub filename: String,
    /// The bytes, exactly as received.
    pub content: Vec<u8>,
    /// The detached CMS signature, when one was given.
    pub signature: Option<Vec<u8>>,
    /// SHA-256 of `content`.
    pub sha256: Vec<u8>,
    /// Whether the signature is valid evidence for the organisation.
    pub valid: bool,
    /// The signer's certificate serial (hex).
    pub signer_serial: Option<String>,
    /// The signer's certificate issuer DN.
    pub signer_issuer: Option<String>,
    /// The signer's subject DN.
    pub signer_subject: Option<String>,
    /// The signing time relied on, Unix seconds.
    pub signed_at: Option<u64>,
    /// Why it is not valid evidence (an error code and text).
    pub problem: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
}

/// A request, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// Id (0 before it is stored).
    pub id: i64,
    /// Kind.
    pub kind: RequestKind,
    /// The submitting organisation.
    pub organisation: String,
    /// Its province, copied for scoped lists.
    pub province: Option<String>,
    /// Its tree path, copied for scoped lists.
    pub org_path: String,
    /// State.
    pub state: RequestState,
    /// The profile asked for (issue).
    pub profile: Option<String>,
    /// Key origin.
    pub key_origin: KeyOrigin,
    /// The issuer asked for (default: the issuing CA).
    pub issuer: Option<String>,
    /// The subscriber.
    pub subscriber: SubscriberFields,
    /// The PKCS#10 request (DER).
    pub csr: Option<Vec<u8>>,
    /// The certificate concerned (renew, modify, revoke, recover), serial hex.
    pub certificate: Option<String>,
    /// The certificate fulfilment issued, serial hex.
    pub issued_certificate: Option<String>,
    /// The revocation reason (revoke), or the last return/reject reason.
    pub reason: Option<String>,
    /// What a `recover` request of a remote-signing account does to it.
    pub recovery: Option<AccountRecovery>,
    /// The request document.
    pub document: Option<i64>,
    /// The bulk submission it came in.
    pub batch: Option<String>,
    /// Who filed it.
    pub submitted_by: String,
    /// Unix seconds.
    pub submitted_at: u64,
    /// When it was accepted (the deadline's start).
    pub accepted_at: Option<u64>,
    /// The deadline.
    pub due_at: Option<u64>,
    /// When it was fulfilled.
    pub fulfilled_at: Option<u64>,
    /// When it closed (fulfilled or rejected).
    pub closed_at: Option<u64>,
    /// When its breach was notified.
    pub breach_notified_at: Option<u64>,
    /// When its personal fields were erased.
    pub erased_at: Option<u64>,
    /// Unix seconds.
    pub updated_at: u64,
}

/// One step of a request's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestEvent {
    /// Unix seconds.
    pub at: u64,
    /// Who.
    pub actor: String,
    /// What (`submit`, `accept`, `approve`, `fulfil`, …).
    pub action: String,
    /// From which state (none for the submission).
    pub from: Option<RequestState>,
    /// To which state.
    pub to: RequestState,
    /// Why (return and reject reasons).
    pub reason: Option<String>,
}

/// A state change of one request, applied only if the request is still in `from`.
#[derive(Clone, Debug)]
pub struct Transition {
    /// The request.
    pub request: i64,
    /// The state it must still be in.
    pub from: RequestState,
    /// The state it moves to.
    pub to: RequestState,
    /// The history entry's action.
    pub action: String,
    /// Who.
    pub actor: String,
    /// Why.
    pub reason: Option<String>,
    /// Unix seconds.
    pub at: u64,
    /// Sets `accepted_at` and `due_at` (acceptance); `Some((None, None))` clears them (return).
    pub deadline: Option<(Option<u64>, Option<u64>)>,
    /// Sets `issued_certificate`.
    pub issued_certificate: Option<String>,
    /// The audit record written with it.
    pub audit: AuditEntry,
    /// The notifications queued with it (in the same transaction).
    pub notices: Vec<super::OutboxMessage>,
    /// A one-time revocation code for the certificate just issued: (serial, SHA-256 of the
    /// code), stored in the same transaction (replacing an earlier code of that serial).
    pub revocation_code: Option<(String, Vec<u8>)>,
    /// A corrected dossier (resubmitting a returned request): the request's profile, key
    /// origin, issuer, subscriber, CSR, certificate and reason are replaced by this record's,
    /// and a new document, if given, is stored and attached; in the same transaction.
    pub corrected: Option<(RequestRecord, Option<DocumentRecord>)>,
}

/// Which requests a list reads: the caller's scope and the filters asked for.
#[derive(Clone, Debug, Default)]
pub struct RequestFilter {
    /// Only this province's organisations.
    pub province: Option<String>,
    /// Only organisations whose path starts with this (a subtree).
    pub under_path: Option<String>,
    /// Only this organisation.
    pub organisation: Option<String>,
    /// Only this state.
    pub state: Option<RequestState>,
    /// Only this kind.
    pub kind: Option<RequestKind>,
    /// Only requests whose key comes from here.
    pub key_origin: Option<KeyOrigin>,
    /// Only requests due before this instant and not yet fulfilled (overdue).
    pub due_before: Option<u64>,
    /// Only the request that issued this certificate (serial hex).
    pub issued_certificate: Option<String>,
    /// Only requests covered by this document.
    pub document: Option<i64>,
    /// Only ids below this (the cursor: lists are newest first).
    pub before_id: Option<i64>,
    /// The order of the list (newest first unless asked).
    pub order: RequestOrder,
    /// At most this many.
    pub limit: usize,
}

/// The order a request list is read in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RequestOrder {
    /// Newest first (by id, descending); the cursor is [`RequestFilter::before_id`].
    #[default]
    Newest,
    /// The RA queue: open requests only (not fulfilled or rejected), by deadline, earliest
    /// first, then those without a deadline, then by id. Overdue requests have the earliest
    /// deadlines, so they come first. The cursor is the last row's [`QueueKey`], exclusive.
    Queue(Option<QueueKey>),
}

/// Where a request stands in the queue order: its deadline ([`QueueKey::NO_DEADLINE`] when it
/// has none) and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueKey {
    /// Unix seconds, or [`QueueKey::NO_DEADLINE`].
    pub due: i64,
    /// The request's id.
    pub id: i64,
}

impl QueueKey {
    /// The sort value of a request without a deadline: after every deadline.
    pub const NO_DEADLINE: i64 = i64::MAX;

    /// The key of a request.
    pub fn of(r: &RequestRecord) -> Self {
        Self {
            due: r
                .due_at
                .and_then(|d| i64::try_from(d).ok())
                .unwrap_or(Self::NO_DEADLINE),
            id: r.id,
        }
    }
}

/// What a report reads of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow<'a> {
    /// Kind.
    pub kind: RequestKind,
    /// State now.
    pub state: RequestState,
    /// Organisation.
    pub organisation: &'a str,
    /// Key origin.
    pub key_origin: KeyOrigin,
    /// Unix seconds.
    pub submitted_at: u64,
    /// When accepted.
    pub accepted_at: Option<u64>,
    /// Deadline.
    pub due_at: Option<u64>,
    /// When fulfilled.
    pub fulfilled_at: Option<u64>,
    /// When closed.
    pub closed_at: Option<u64>,
}

/// The certificates a subtree's requests issued, by status at an instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CertificateCounts {
    /// Valid and not expired.
    pub valid: u64,
    /// Of those, expiring before the horizon asked for.
    pub expiring: u64,
    /// Revoked (or on hold).
    pub revoked: u64,
}

/// A pause of new issuance by one issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuancePause {
    /// Id.
    pub id: i64,
    /// The issuer.
    pub issuer: String,
    /// Unix seconds.
    pub paused_at: u64,
    /// Who paused it.
    pub paused_by: String,
    /// Why (shown to every request refused meanwhile).
    pub reason: String,
    /// When it was resumed.
    pub resumed_at: Option<u64>,
    /// Who confirmed the resumption.
    pub resumed_by: Option<String>,
}

/// A dual-control action waiting for a second CA admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    /// Id.
    pub id: i64,
    /// `issuance.resume` or `issuer.revoke`.
    pub action: String,
    /// The issuer it acts on.
    pub target: String,
    /// The reason given with it.
    pub reason: Option<String>,
    /// Who asked.
    pub requested_by: String,
    /// Unix seconds.
    pub requested_at: u64,
    /// Who confirmed.
    pub confirmed_by: Option<String>,
    /// When.
    pub confirmed_at: Option<u64>,
}

/// The registration authority's durable records.
pub trait RaRequests: Send + Sync {
    /// Adds an organisation (its `path` computed by the caller from the parent's).
    fn add_organisation(&self, org: &Organisation, audit: &AuditEntry) -> Result<(), StoreError>;
    /// An organisation, removed ones included.
    fn organisation(&self, id: &str) -> Result<Option<Organisation>, StoreError>;
    /// Organisations not removed, ordered by id.
    fn organisations(&self) -> Result<Vec<Organisation>, StoreError>;
    /// Marks an organisation removed.
    fn remove_organisation(&self, id: &str, at: u64, audit: &AuditEntry) -> Result<(), StoreError>;

    /// Adds an operator.
    fn add_operator(&self, op: &Operator, audit: &AuditEntry) -> Result<(), StoreError>;
    /// An operator, removed ones included.
    fn operator(&self, id: &str) -> Result<Option<Operator>, StoreError>;
    /// Operators not removed, ordered by id.
    fn operators(&self) -> Result<Vec<Operator>, StoreError>;
    /// Replaces an operator's role, organisation, scope, password hash and sealed TOTP secret.
    fn update_operator(&self, op: &Operator, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Records that the operator's TOTP code of time step `step` was used: `false` (and
    /// nothing changed) when that step or a later one was used before, or the operator is
    /// removed.
    fn spend_operator_totp_step(&self, id: &str, step: u64) -> Result<bool, StoreError>;
    /// Marks an operator removed and revokes its tokens.
    fn remove_operator(&self, id: &str, at: u64, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Registers a certificate (by the SHA-256 of its DER) as the operator's.
    fn add_operator_certificate(
        &self,
        fingerprint: &[u8],
        operator: &str,
        serial: &str,
        issuer: &str,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// The live operator a certificate is registered to.
    fn operator_by_certificate(&self, fingerprint: &[u8]) -> Result<Option<Operator>, StoreError>;
    /// Stores a bearer token's hash.
    fn add_token(
        &self,
        hash: &[u8],
        operator: &str,
        at: u64,
        expires_at: u64,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// The live operator a token that has neither expired nor been revoked at `now` belongs to.
    fn operator_by_token(&self, hash: &[u8], now: u64) -> Result<Option<Operator>, StoreError>;
    /// Revokes every token of an operator.
    fn revoke_tokens(&self, operator: &str, at: u64, audit: &AuditEntry) -> Result<(), StoreError>;

    /// Stores a document (if any) and the requests that it covers, all or nothing, each with its
    /// `submit` event and, if `to` differs from `submitted`, its first transition; returns the
    /// stored requests.
    ///
    /// `notices` is called for each stored request (its `id` set) inside the transaction; the
    /// messages it returns are queued in the outbox in that same transaction (the notices of a
    /// request accepted at submission). It must not call the store.
    fn submit_requests(
        &self,
        document: Option<&DocumentRecord>,
        requests: &[RequestRecord],
        audit: &AuditEntry,
        notices: &dyn Fn(&RequestRecord) -> Vec<crate::store::OutboxMessage>,
    ) -> Result<Vec<RequestRecord>, StoreError>;
    /// A request.
    fn request(&self, id: i64) -> Result<Option<RequestRecord>, StoreError>;
    /// Requests matching the filter, newest first.
    fn requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRecord>, StoreError>;
    /// Applies a transition; [`StoreError::Conflict`] if the request is no longer in `from`.
    fn transition(&self, t: &Transition) -> Result<RequestRecord, StoreError>;
    /// A request's history, oldest first.
    fn request_events(&self, id: i64) -> Result<Vec<RequestEvent>, StoreError>;
    /// A document.
    fn document(&self, id: i64) -> Result<Option<DocumentRecord>, StoreError>;
    /// Pauses new issuance by an issuer ([`StoreError::Changed`] if it is paused already).
    fn pause_issuance(&self, pause: &IssuancePause, audit: &AuditEntry) -> Result<i64, StoreError>;
    /// The issuer's pause in force, if any.
    fn active_pause(&self, issuer: &str) -> Result<Option<IssuancePause>, StoreError>;
    /// Pauses that overlap `[from, to)`, of every issuer.
    fn pauses(&self, from: u64, to: u64) -> Result<Vec<IssuancePause>, StoreError>;
    /// Records a dual-control action waiting for confirmation.
    fn propose(&self, c: &Confirmation, audit: &AuditEntry) -> Result<i64, StoreError>;
    /// A dual-control action.
    fn confirmation(&self, id: i64) -> Result<Option<Confirmation>, StoreError>;
    /// Dual-control actions not yet confirmed.
    fn pending_confirmations(&self) -> Result<Vec<Confirmation>, StoreError>;
    /// Confirms an action (by someone other than who asked; [`StoreError::Changed`] if it was
    /// confirmed meanwhile) and, for `issuance.resume`, ends the pause in the same transaction.
    fn confirm(
        &self,
        id: i64,
        by: &str,
        at: u64,
        audit: &AuditEntry,
    ) -> Result<Confirmation, StoreError>;
    /// Erases the personal fields (name, email, title, unit, phone, national id number) of
    /// requests closed before `closed_before`, and the request documents only they refer to;
    /// returns how many requests were erased. The audit keeps that they existed.
    fn erase_personal_data(
        &self,
        closed_before: u64,
        at: u64,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError>;
    /// Spends the one-time revocation code of `serial`: true, with the code marked used at
    /// `at` and `audit` appended, when `sha256` is that serial's unused code; false (nothing
    /// written) otherwise.
    fn spend_revocation_code(
        &self,
        serial: &str,
        sha256: &[u8],
        at: u64,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError>;
    /// Gives a spent code back: the revocation request it was spent on could not be stored.
    fn restore_revocation_code(&self, serial: &str) -> Result<(), StoreError>;
    /// Requests whose subscriber's official email is `email`, oldest first.
    fn requests_of_subscriber(&self, email: &str) -> Result<Vec<RequestRecord>, StoreError>;
    /// Visits every request in the filter's scope (its province, path and organisation fields)
    /// submitted, or fulfilled, or due, within `[from, to)`.
    fn report_rows(
        &self,
        scope: &RequestFilter,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(&ReportRow<'_>),
    ) -> Result<(), StoreError>;
    /// How many of the scope's requests (its province, path and organisation fields) are in
    /// each state, states without one left out.
    fn request_counts_by_state(
        &self,
        scope: &RequestFilter,
    ) -> Result<Vec<(RequestState, u64)>, StoreError>;
    /// The certificates the scope's requests issued, by status at `at`; `expiring` counts valid
    /// ones whose notAfter is before `horizon`.
    fn certificate_counts(
        &self,
        scope: &RequestFilter,
        at: u64,
        horizon: u64,
    ) -> Result<CertificateCounts, StoreError>;
    /// The certificates the scope's requests issued that are valid at `at` and end before
    /// `until`, counted by the local (Asia/Ho_Chi_Minh) month of their notAfter: (`YYYY-MM`,
    /// count), months without one left out, in order.
    fn certificates_expiring_by_month(
        &self,
        scope: &RequestFilter,
        at: u64,
        until: u64,
    ) -> Result<Vec<(String, u64)>, StoreError>;
}
