//! A remote-signing credential's signing history, for the officers and auditors who reach
//! the organisation that filed for it (the portal's `/signing/{credential}`).
//!
//! ```text
//! audit log ─(records whose target is the credential id, newest first: migration 17's index)
//!           ─▶ authorisations and signatures (time, how many hashes, outcome)
//! ```
//!
//! The history is read from the hash-chained audit log, where every `credentials/authorize`
//! and `signatures/signHash` is recorded before it answers (`crate::csc`); nothing else keeps a
//! second copy. The hashes themselves and the client's address stay in the audit log.

use crate::clock::Clock;
use crate::ra::access::Principal;
use crate::ra::desk::DeskError;
use crate::store::csc::{AccountRecord, CredentialRecord};
use crate::store::{AuditEntry, Outcome, Store};

/// The hash algorithm every central credential signs (`credentials/authorize` and
/// `signatures/signHash` accept no other).
pub const HASH_ALGORITHM: &str = "SHA-256";
/// The signature algorithm of every central credential (P-256 keys).
pub const SIGNATURE_ALGORITHM: &str = "ecdsa-with-SHA256";

/// The audit action of a refused read of a history.
const HISTORY_ACTION: &str = "csc.history";

/// One authorisation, signature or refusal of a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningEvent {
    /// Its id in the audit log (the page cursor).
    pub id: i64,
    /// Unix seconds.
    pub at: u64,
    /// The audit action (`csc.credentials.authorize`, `csc.signatures.signHash`, …).
    pub action: String,
    /// Success or refusal.
    pub outcome: Outcome,
    /// How many hashes it named (0 for a refusal that named none).
    pub hashes: usize,
}

/// A page of a credential's history.
#[derive(Clone, Debug)]
pub struct SigningHistory {
    /// The credential id.
    pub credential: String,
    /// Its certificate's serial.
    pub certificate: String,
    /// The RA request that created it.
    pub request: i64,
    /// The account's official email.
    pub email: String,
    /// The organisation that filed for it.
    pub organisation: String,
    /// Whether it still signs.
    pub enabled: bool,
    /// The events, newest first.
    pub events: Vec<SigningEvent>,
    /// The cursor of the next (older) page, when there is one.
    pub next: Option<i64>,
}

/// How many hashes an audit record of `crate::csc` names (its `hashes=a,b,…` field).
fn hash_count(detail: &str) -> usize {
    detail
        .split(' ')
        .find_map(|f| f.strip_prefix("hashes="))
        .map_or(0, |h| h.split(',').filter(|x| !x.is_empty()).count())
}

/// A page (at most `limit` events older than `before`) of credential `id`'s history, for
/// `who`. Unknown and out of reach answer alike (nothing tells whether a credential exists);
/// a read out of reach is audited (`csc.history`).
pub fn signing_history(
    store: &dyn Store,
    who: &Principal,
    id: &str,
    before: Option<i64>,
    limit: usize,
) -> Result<SigningHistory, DeskError> {
    let not_found = || DeskError::NotFound("no such signing credential".into());
    let credential = store.csc_credential(id)?.ok_or_else(not_found)?;
    let account = store
        .csc_account(credential.account)?
        .ok_or_else(not_found)?;
    if who.role().is_none() || !who.reaches_organisation(store, &account.organisation)? {
        let entry = AuditEntry {
            at: crate::clock::SystemClock.now(),
            actor: who.actor(),
            action: HISTORY_ACTION.into(),
            target: credential.id.clone(),
            outcome: Outcome::Refused,
            detail: "the credential's organisation is outside your scope".into(),
        };
        if let Err(e) = store.audit(&entry) {
            tracing::error!(error = %e, "audit of a refused signing-history read");
        }
        return Err(not_found());
    }
    read(store, credential, account, before, limit)
}

/// A page of the history of credential `id` for its own subscriber (the portal's signed-in
/// `account`). Another subscriber's credential answers as an unknown one.
pub fn own_signing_history(
    store: &dyn Store,
    account: i64,
    id: &str,
    before: Option<i64>,
    limit: usize,
) -> Result<SigningHistory, DeskError> {
    let not_found = || DeskError::NotFound("no such signing credential".into());
    let credential = store
        .csc_credential(id)?
        .filter(|c| c.account == account)
        .ok_or_else(not_found)?;
    let account = store.csc_account(account)?.ok_or_else(not_found)?;
    read(store, credential, account, before, limit)
}

/// A page of the events of a credential already checked to be the caller's to read.
fn read(
    store: &dyn Store,
    credential: CredentialRecord,
    account: AccountRecord,
    before: Option<i64>,
    limit: usize,
) -> Result<SigningHistory, DeskError> {
    let rows = store.audit_of_target(&credential.id, before, limit.saturating_add(1))?;
    let next = if rows.len() > limit {
        rows.get(limit.saturating_sub(1)).map(|(row, _)| *row)
    } else {
        None
    };
    let events: Vec<SigningEvent> = rows
        .into_iter()
        .take(limit)
        // The remote-signing calls on it; not the refused reads of this history.
        .filter(|(_, e)| e.action.starts_with("csc.") && e.action != HISTORY_ACTION)
        .map(|(row, e)| SigningEvent {
            id: row,
            at: e.at,
            hashes: hash_count(&e.detail),
            action: e.action,
            outcome: e.outcome,
        })
        .collect();
    Ok(SigningHistory {
        credential: credential.id,
        certificate: credential.serial,
        request: credential.request,
        email: account.email,
        organisation: account.organisation,
        enabled: credential.enabled,
        events,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hashes_of_a_record_are_counted_from_its_detail() {
        assert_eq!(
            hash_count("signatures=2 hashes=ab01,cd02 client=127.0.0.1"),
            2
        );
        assert_eq!(hash_count("hashes=ab01 client=::1"), 1);
        assert_eq!(hash_count("Invalid parameter SAD client=::1"), 0);
    }
}
