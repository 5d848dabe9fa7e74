//! SQLite side of the CMP transactions (see `store::cmp`).

use super::{insert_audit, unavailable, SqliteStore};
use crate::store::cmp::{CmpState, CmpTransaction, CmpTransactions};
use crate::store::{AuditEntry, StoreError};
use rusqlite::{params, OptionalExtension};

/// Migration 13 (appended to `MIGRATIONS`): CMP transactions.
pub(super) const MIGRATION: &str = "
    CREATE TABLE cmp_transactions (
        transaction_id BLOB PRIMARY KEY NOT NULL,
        label          TEXT NOT NULL,
        organisation   TEXT NOT NULL,
        sender         TEXT NOT NULL,
        state          TEXT NOT NULL CHECK (state IN
                         ('waiting', 'issued', 'confirmed', 'rejected', 'expired', 'failed')),
        request        INTEGER REFERENCES requests(id),
        serial         TEXT REFERENCES certificates(serial),
        cert_hash      BLOB,
        client_nonce   BLOB NOT NULL,
        server_nonce   BLOB NOT NULL,
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX cmp_transactions_state ON cmp_transactions(state, updated_at);";

const COLUMNS: &str = "transaction_id, label, organisation, sender, state, request, serial, \
                       cert_hash, client_nonce, server_nonce, created_at, updated_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CmpTransaction> {
    let state: String = r.get(4)?;
    Ok(CmpTransaction {
        transaction_id: r.get(0)?,
        label: r.get(1)?,
        organisation: r.get(2)?,
        sender: r.get(3)?,
        state: CmpState::parse(&state).unwrap_or(CmpState::Failed),
        request: r.get(5)?,
        serial: r.get(6)?,
        cert_hash: r.get(7)?,
        client_nonce: r.get(8)?,
        server_nonce: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

impl CmpTransactions for SqliteStore {
    fn begin_cmp_transaction(&self, t: &CmpTransaction) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    &format!(
                        "INSERT INTO cmp_transactions ({COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                         ON CONFLICT (transaction_id) DO NOTHING"
                    ),
                    params![
                        t.transaction_id,
                        t.label,
                        t.organisation,
                        t.sender,
                        t.state.as_str(),
                        t.request,
                        t.serial,
                        t.cert_hash,
                        t.client_nonce,
                        t.server_nonce,
                        t.created_at,
                        t.updated_at
                    ],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
    }

    fn cmp_transaction(&self, transaction_id: &[u8]) -> Result<Option<CmpTransaction>, StoreError> {
        let conn = self.lock()?;
        let found = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM cmp_transactions WHERE transaction_id = ?1"
            ))
            .map_err(unavailable)?
            .query_row(params![transaction_id], row)
            .optional()
            .map_err(unavailable);
        found
    }

    fn advance_cmp_transaction(
        &self,
        t: &CmpTransaction,
        from: CmpState,
        previous_client_nonce: &[u8],
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE cmp_transactions SET state = ?2, request = ?3, serial = ?4,
                         cert_hash = ?5, client_nonce = ?6, server_nonce = ?7, updated_at = ?8
                     WHERE transaction_id = ?1 AND state = ?9 AND client_nonce = ?10",
                    params![
                        t.transaction_id,
                        t.state.as_str(),
                        t.request,
                        t.serial,
                        t.cert_hash,
                        t.client_nonce,
                        t.server_nonce,
                        t.updated_at,
                        from.as_str(),
                        previous_client_nonce
                    ],
                )
                .map_err(unavailable)?;
            if n == 1 {
                insert_audit(tx, audit).map_err(unavailable)?;
            }
            Ok(n == 1)
        })
    }

    fn unconfirmed_cmp_transactions(&self, before: u64) -> Result<Vec<CmpTransaction>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM cmp_transactions
                 WHERE state = 'issued' AND updated_at < ?1 ORDER BY updated_at LIMIT 1000"
            ))
            .map_err(unavailable)?;
        let rows = stmt.query_map(params![before], row).map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }
}
