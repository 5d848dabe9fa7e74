//! Organisations' enrollment credentials at the desk: EST HTTP Basic users and CMP shared
//! secrets, listed, made and removed by the JSON API and `pkid credential` through the same
//! calls.
//!
//! ```text
//! who                      list                      add / remove
//! ca-admin                 every organisation        every organisation
//! org-officer              its organisation          its organisation
//! ra-officer, auditor      organisations in reach    refused (403)
//! outside the reach        "no organisation" (404)   "no organisation" (404)
//! ```
//!
//! An organisation's officer may already enroll over EST with its registered certificate, so
//! making a password for its organisation's devices gives it nothing it lacked. An RA officer
//! decides requests; it does not hold the organisations' secrets. Every refusal is audited.
//!
//! The secret is generated here (192 random bits), returned once and stored as EST needs it
//! (Argon2id: the server only verifies) or CMP does (sealed under the data key: the server
//! recomputes the MAC). The EST server reads the credential row on every request, so a
//! removal takes effect on the next one, whatever its cache of verified passwords holds.

use super::{local_rfc3339, DeskError, FieldError, RequestDesk};
use crate::ra::access::{Principal, Reach};
use crate::ra::credentials;
use crate::store::credentials::cmp_seal_context;
use crate::store::ra::{Organisation, Role};
use crate::store::{CredentialKind, CredentialRecord, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use zeroize::Zeroizing;

/// A new credential.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    /// `est` (an HTTP Basic user on EST) or `cmp` (a CMP shared secret).
    pub kind: String,
    /// The user name (EST) or senderKID (CMP): 1 to 64 letters, digits, '.', '_', '-'.
    pub name: String,
}

/// A credential as listed: never its secret.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialView {
    /// The organisation.
    pub organisation: String,
    /// `est` or `cmp`.
    pub kind: &'static str,
    /// The user name or senderKID.
    pub name: String,
    /// When it was made (RFC 3339, +07:00).
    pub created: String,
    /// Who made it.
    pub created_by: String,
}

impl From<&CredentialRecord> for CredentialView {
    fn from(r: &CredentialRecord) -> Self {
        Self {
            organisation: r.organisation.clone(),
            kind: r.kind.as_str(),
            name: r.name.clone(),
            created: local_rfc3339(r.created_at),
            created_by: r.created_by.clone(),
        }
    }
}

/// The audit target of a credential.
fn target(organisation: &str, kind: &str, name: &str) -> String {
    format!("{organisation}/{kind}/{name}")
}

impl RequestDesk {
    /// The live organisation `id` when `who` may list (`manage` false) or add and remove
    /// (`manage` true) its credentials; refusals are audited under `action`.
    fn credential_organisation(
        &self,
        who: &Principal,
        id: &str,
        action: &str,
        manage: bool,
    ) -> Result<Organisation, DeskError> {
        let not_found = || DeskError::NotFound(format!("no organisation {id:?}"));
        let Some(org) = self
            .store
            .organisation(id)?
            .filter(|o| o.deleted_at.is_none())
        else {
            return Err(not_found());
        };
        let reach = who.reach();
        if !reach.covers_organisation(&org.id, org.province.as_deref(), &org.path) {
            return Err(self.refuse(who, action, id, not_found()));
        }
        let own =
            who.role() == Some(Role::OrgOfficer) && reach == Reach::Organisation(org.id.clone());
        if manage && !(who.administers() || own) {
            return Err(self.refuse(
                who,
                action,
                id,
                DeskError::Forbidden(
                    "only a ca-admin or an officer of the organisation manages its credentials"
                        .into(),
                ),
            ));
        }
        Ok(org)
    }

    /// The enrollment credentials of organisation `id` (every organisation the caller reaches:
    /// `None`), by organisation, kind and name. Never a secret.
    pub fn enrollment_credentials(
        &self,
        who: &Principal,
        id: Option<&str>,
    ) -> Result<Vec<CredentialView>, DeskError> {
        let rows = match id {
            Some(id) => {
                let org = self.credential_organisation(who, id, "credential.list", false)?;
                self.store.credentials(Some(&org.id))?
            }
            None => {
                let reach = who.reach();
                let reached: BTreeSet<String> = self
                    .store
                    .organisations()?
                    .into_iter()
                    .filter(|o| reach.covers_organisation(&o.id, o.province.as_deref(), &o.path))
                    .map(|o| o.id)
                    .collect();
                self.store
                    .credentials(None)?
                    .into_iter()
                    .filter(|c| reached.contains(&c.organisation))
                    .collect()
            }
        };
        Ok(rows.iter().map(CredentialView::from).collect())
    }

    /// Makes an enrollment credential of organisation `id`; returns it with its secret, which
    /// is shown this once and stored only hashed (EST) or sealed (CMP).
    pub fn add_enrollment_credential(
        &self,
        who: &Principal,
        id: &str,
        input: &CredentialInput,
    ) -> Result<(CredentialView, Zeroizing<String>), DeskError> {
        let org = self.credential_organisation(who, id, "credential.add", true)?;
        let mut errors = Vec::new();
        let kind = CredentialKind::parse(&input.kind);
        if kind.is_none() {
            errors.push(FieldError::new("kind", "est or cmp"));
        }
        if !credentials::valid_enrollment_name(&input.name) {
            errors.push(FieldError::new(
                "name",
                "1 to 64 letters, digits, '.', '_' or '-' (no ':')",
            ));
        }
        let (Some(kind), true) = (kind, errors.is_empty()) else {
            return Err(DeskError::Invalid(errors));
        };
        let secret =
            credentials::new_enrollment_secret().map_err(|e| DeskError::Internal(e.to_string()))?;
        let stored = match kind {
            CredentialKind::Est => credentials::hash_password(&secret)
                .map_err(|e| DeskError::Internal(e.to_string()))?
                .into_bytes(),
            CredentialKind::Cmp => {
                let sealer = self.sealer.as_ref().ok_or_else(|| {
                    DeskError::Unavailable(
                        "the data key is not loaded: a CMP secret is stored sealed under it".into(),
                    )
                })?;
                sealer
                    .seal(
                        secret.as_bytes(),
                        cmp_seal_context(&org.id, &input.name).as_bytes(),
                    )
                    .map_err(|e| DeskError::Unavailable(format!("sealing the secret: {e}")))?
            }
        };
        let record = CredentialRecord {
            id: 0,
            organisation: org.id.clone(),
            kind,
            name: input.name.clone(),
            secret: stored,
            created_at: self.now(),
            created_by: who.actor(),
        };
        let audit = self.audit(
            &who.actor(),
            "credential.add",
            &target(&org.id, kind.as_str(), &input.name),
            Outcome::Success,
            format!("kind={}", kind.as_str()),
        );
        self.store.add_credential(&record, &audit)?;
        Ok((CredentialView::from(&record), secret))
    }

    /// Removes an enrollment credential of organisation `id`: it stops authenticating on the
    /// next request.
    pub fn remove_enrollment_credential(
        &self,
        who: &Principal,
        id: &str,
        kind: &str,
        name: &str,
    ) -> Result<(), DeskError> {
        let org = self.credential_organisation(who, id, "credential.remove", true)?;
        let missing = || {
            DeskError::NotFound(format!(
                "organisation {id:?} has no {kind} credential {name:?}"
            ))
        };
        let kind = CredentialKind::parse(kind).ok_or_else(missing)?;
        let audit = self.audit(
            &who.actor(),
            "credential.remove",
            &target(&org.id, kind.as_str(), name),
            Outcome::Success,
            String::new(),
        );
        match self.store.remove_credential(&org.id, kind, name, &audit) {
            Err(crate::store::StoreError::NotFound(_)) => Err(missing()),
            r => Ok(r?),
        }
    }
}
