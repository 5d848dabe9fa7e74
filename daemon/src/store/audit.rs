//! The audit role: who did what, when, and how it ended.
//!
//! ```text
//! audit          id → at, actor, action, target, outcome, detail   (append-only)
//! ```
//!
//! Status changes write their audit record in their own transaction
//! ([`super::Certificates::change_status`]); everything else appends here.

use super::StoreError;

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused (bad input, policy).
    Refused,
    /// Failed on our side.
    Failed,
}

impl Outcome {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// One audit record: who did what, when, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: u64,
    /// Operator or client identity.
    pub actor: String,
    /// What was attempted (`cert.issue`, `cert.revoke`, `ca.init`, …).
    pub action: String,
    /// What it was done to (serial, profile, issuer).
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Free text: reason for refusal, parameters.
    pub detail: String,
}

/// The append-only audit log.
pub trait AuditLog: Send + Sync {
    /// Appends an audit record.
    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The newest audit records, newest first.
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}
