//! Timestamps of the audit chain's head: the evidence that the log was in a given state at a
//! given time, checkable by a third party with `openssl ts -verify` (see `docs/audit.md`).
//!
//! ```text
//!  every ra.audit_stamp_minutes (App::run) or `pkid audit stamp`
//!    store.audit_head ─▶ moved since store.latest_audit_stamp? ─no─▶ skip
//!        │ yes
//!        ▼
//!    imprint = SHA-256(head hash) ─▶ Tsa::stamp (in-process, certReq) ─▶ store.record_audit_stamp
//!
//!  `pkid audit verify`
//!    store.verify_audit_chain (every stamp's head hash = the chain's hash at its id)
//!    check_stamp per stamp: a granted token, signed with the TSA's key, over SHA-256(head hash)
//! ```
//!
//! Stamping is not itself audited: an audit entry per stamp would move the head every time,
//! and an idle log would be stamped forever.

use crate::store::audit::ChainIntact;
use crate::store::{AuditHash, AuditStamp, ChainBreak, ChainHead, ChainVerdict, Store, StoreError};
use crate::tsa::Tsa;
use const_oid::db::rfc5912::ID_SHA_256;
use pkid_protocols::tsp::{self, TspError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use x509_cert::Certificate;

/// What one stamping pass did.
#[derive(Debug)]
pub enum StampOutcome {
    /// The head was stamped.
    Stamped(AuditStamp),
    /// The head has not moved since its last stamp (or another process stamped it first).
    Unmoved(ChainHead),
    /// The log is empty: nothing to stamp.
    EmptyLog,
}

/// Why the head could not be stamped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StampError {
    /// The store could not be read or written.
    #[error("audit store: {0}")]
    Store(#[from] StoreError),
    /// The TSA refused or failed (clock unsynchronised, key backend unavailable, …).
    #[error("timestamp authority: {0}")]
    Tsa(#[from] TspError),
}

/// What the token of a stamp is over: SHA-256 of the head hash's 32 octets. This is the
/// `-digest` a third party passes to `openssl ts -verify`.
pub fn imprint_of(head_hash: &AuditHash) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &head_hash.0);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Stamps the chain's head with `tsa` unless it has not moved since the last stamp; `now`
/// (Unix seconds) is recorded as when. Blocks on the store and the key backend.
pub fn stamp_head(store: &dyn Store, tsa: &Tsa, now: u64) -> Result<StampOutcome, StampError> {
    let Some(head) = store.audit_head()? else {
        return Ok(StampOutcome::EmptyLog);
    };
    if store
        .latest_audit_stamp()?
        .is_some_and(|s| s.audit_id == head.id)
    {
        return Ok(StampOutcome::Unmoved(head));
    }
    let token = tsa.stamp(&imprint_of(&head.hash))?;
    let stamp = AuditStamp {
        audit_id: head.id,
        head_hash: head.hash,
        token,
        at: now,
    };
    match store.record_audit_stamp(&stamp) {
        Ok(()) => Ok(StampOutcome::Stamped(stamp)),
        // The CLI and the daemon stamped the same head at once: one stamp is enough.
        Err(StoreError::DuplicateName(_)) => Ok(StampOutcome::Unmoved(head)),
        Err(e) => Err(e.into()),
    }
}

/// What is wrong with a stored stamp. Each names the stamped entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StampFault {
    /// The stored bytes are not a granted, correctly signed RFC 3161 response.
    #[error("the timestamp of audit entry #{id} is not a valid token: {reason}")]
    Unreadable {
        /// The stamped entry.
        id: u64,
        /// What the check found.
        reason: String,
    },
    /// The token was signed, but not with pkid's TSA key.
    #[error("the timestamp of audit entry #{id} was not issued by this TSA")]
    ForeignSigner {
        /// The stamped entry.
        id: u64,
    },
    /// The token is over something else than SHA-256 of the stored head hash.
    #[error("the timestamp of audit entry #{id} is not over SHA-256 of its head hash")]
    WrongImprint {
        /// The stamped entry.
        id: u64,
    },
}

/// Checks one stored stamp: a granted token that verifies (signed attributes, signature)
/// against the TSA certificate it carries, that certificate holding the key of
/// `tsa_certificate` (pkid's TSA: a certificate reissued with `pkid ca reissue --role tsa`
/// keeps the key, so earlier stamps stay checkable), and a message imprint of SHA-256 over the
/// stored head hash. Returns the token's genTime, Unix seconds. That the head hash is the
/// chain's hash at that entry is the chain walk's check (`AuditLog::verify_audit_chain`).
pub fn check_stamp(stamp: &AuditStamp, tsa_certificate: &Certificate) -> Result<u64, StampFault> {
    let id = stamp.audit_id;
    let unreadable = |reason: String| StampFault::Unreadable { id, reason };
    let key = &tsa_certificate.tbs_certificate.subject_public_key_info;
    let carried = tsp::token_certificates(&stamp.token).map_err(|e| unreadable(e.0))?;
    let signer = match carried.as_slice() {
        [] => tsa_certificate,
        some => some
            .iter()
            .find(|c| &c.tbs_certificate.subject_public_key_info == key)
            .ok_or(StampFault::ForeignSigner { id })?,
    };
    let tst = tsp::verify_response(&stamp.token, signer).map_err(|e| unreadable(e.0))?;
    let imprint = &tst.message_imprint;
    if imprint.hash_algorithm.oid != ID_SHA_256
        || imprint.hashed_message.as_bytes() != imprint_of(&stamp.head_hash)
    {
        return Err(StampFault::WrongImprint { id });
    }
    Ok(tst.gen_time.to_unix_duration().as_secs())
}

/// A log that verified: the chain, and every stored stamp of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedLog {
    /// The chain walk's result (count, head).
    pub chain: ChainIntact,
    /// Stamps checked.
    pub stamps: u64,
    /// The newest stamp: the entry it covers and its token's genTime (Unix seconds).
    pub newest_stamp: Option<(u64, u64)>,
}

/// The first thing found wrong with the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogFault {
    /// An entry was edited, deleted or reordered, or the chain disagrees with a stamp.
    #[error("{0}")]
    Chain(ChainBreak),
    /// A stored stamp's token is not valid evidence of its head.
    #[error("{0}")]
    Stamp(StampFault),
}

/// What checking the whole log found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogVerdict {
    /// The chain and every stamp are intact.
    Intact(VerifiedLog),
    /// The first fault: the chain is walked first, then the stamps oldest first.
    Broken(LogFault),
}

/// Checks the whole log: [`AuditLog::verify_audit_chain`](crate::store::AuditLog::verify_audit_chain)
/// (which also compares every stamp's head hash with the chain), then [`check_stamp`] for
/// every stamp against `tsa_certificate` (pkid's `certs/tsa.crt`). What `pkid audit verify`
/// runs; the API's verify can run the same.
pub fn verify_log(
    store: &dyn Store,
    tsa_certificate: &Certificate,
) -> Result<LogVerdict, StoreError> {
    let chain = match store.verify_audit_chain()? {
        ChainVerdict::Broken(b) => return Ok(LogVerdict::Broken(LogFault::Chain(b))),
        ChainVerdict::Intact(i) => i,
    };
    let stamps = store.audit_stamps()?;
    let mut newest_stamp = None;
    for stamp in &stamps {
        match check_stamp(stamp, tsa_certificate) {
            Ok(gen_time) => newest_stamp = Some((stamp.audit_id, gen_time)),
            Err(fault) => return Ok(LogVerdict::Broken(LogFault::Stamp(fault))),
        }
    }
    Ok(LogVerdict::Intact(VerifiedLog {
        chain,
        stamps: stamps.len() as u64,
        newest_stamp,
    }))
}

/// The daemon's stamper: stamps the head at start and then every `every`, until `stop`. A
/// failed pass is logged and retried at the next interval.
pub async fn run(
    store: Arc<dyn Store>,
    tsa: Arc<Tsa>,
    clock: Arc<dyn crate::clock::Clock>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (store, tsa, now) = (store.clone(), tsa.clone(), clock.now());
        match tokio::task::spawn_blocking(move || stamp_head(store.as_ref(), &tsa, now)).await {
            Ok(Ok(StampOutcome::Stamped(s))) => {
                tracing::info!(audit_id = s.audit_id, head = %s.head_hash, "audit chain head timestamped")
            }
            Ok(Ok(StampOutcome::Unmoved(_) | StampOutcome::EmptyLog)) => {
                tracing::debug!("audit chain head unchanged since its last timestamp")
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "timestamping the audit chain head failed; retrying at the next interval")
            }
            Err(e) => tracing::error!(error = %e, "audit stamping task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}
