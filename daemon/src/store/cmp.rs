//! CMP transactions (RFC 9810 §5.1.1): one row per transactionID, so that a reused
//! transactionID is refused, a replayed message is recognised by its nonces, and a restart
//! mid-transaction continues (a certConf after the restart finds its row) or fails cleanly (an
//! unconfirmed certificate past its timeout is revoked).
//!
//! ```text
//! cmp_transaction  transaction_id · label · organisation · sender · state · request · serial ·
//!                  cert_hash · client_nonce · server_nonce · created_at · updated_at
//! state: waiting ─▶ issued ─▶ confirmed | rejected | expired      (ir/cr/kur/p10cr)
//!        issued at once with implicit confirmation: confirmed
//! ```

use super::{AuditEntry, StoreError};

/// Where a transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpState {
    /// An RA request waits for an operator (the client polls).
    Waiting,
    /// The certificate was sent; its certConf is awaited.
    Issued,
    /// Confirmed (by certConf, or implicitly).
    Confirmed,
    /// The client rejected the certificate in certConf: it was revoked.
    Rejected,
    /// No certConf came before the timeout: the certificate was revoked.
    Expired,
    /// Refused (an error message ended it).
    Failed,
}

impl CmpState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Issued => "issued",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "waiting" => Self::Waiting,
            "issued" => Self::Issued,
            "confirmed" => Self::Confirmed,
            "rejected" => Self::Rejected,
            "expired" => Self::Expired,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// One transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmpTransaction {
    /// The client's transactionID.
    pub transaction_id: Vec<u8>,
    /// The label it came in under.
    pub label: String,
    /// The organisation it was authenticated as.
    pub organisation: String,
    /// Who: the senderKID of the secret, or the protecting certificate's serial.
    pub sender: String,
    /// Where it stands.
    pub state: CmpState,
    /// The RA request (operator approval).
    pub request: Option<i64>,
    /// The certificate issued in it.
    pub serial: Option<String>,
    /// certHash the certConf must carry.
    pub cert_hash: Option<Vec<u8>>,
    /// The last senderNonce of the client.
    pub client_nonce: Vec<u8>,
    /// The last senderNonce pkid sent: the next request's recipNonce.
    pub server_nonce: Vec<u8>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

/// The CMP role of the store.
pub trait CmpTransactions: Send + Sync {
    /// Records a new transaction; `false` (nothing written) if the transactionID is in use.
    fn begin_cmp_transaction(&self, t: &CmpTransaction) -> Result<bool, StoreError>;
    /// One transaction.
    fn cmp_transaction(&self, transaction_id: &[u8]) -> Result<Option<CmpTransaction>, StoreError>;
    /// Replaces a transaction's state, nonces and certificate with `t`'s, with its audit
    /// record, if the row is still in state `from` with the client nonce `t` follows; `false`
    /// (nothing written) when another message moved it first.
    fn advance_cmp_transaction(
        &self,
        t: &CmpTransaction,
        from: CmpState,
        previous_client_nonce: &[u8],
        audit: &AuditEntry,
    ) -> Result<bool, StoreError>;
    /// Transactions still `issued` (awaiting certConf) last updated before `before`.
    fn unconfirmed_cmp_transactions(&self, before: u64) -> Result<Vec<CmpTransaction>, StoreError>;
}
