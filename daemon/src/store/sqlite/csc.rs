//! SQLite side of the remote-signing accounts and credentials (see `store::csc`).

use super::outbox::insert_outbox;
use super::{insert_audit, unavailable, SqliteStore};
use crate::store::csc::{AccountRecord, AccountState, CredentialRecord, CscAccounts, Provision};
use crate::store::{AuditEntry, StoreError};
use rusqlite::{params, OptionalExtension};

/// Migration 14: signing accounts and
/// their central credentials.
pub(super) const MIGRATION: &str = "
    CREATE TABLE csc_accounts (
        id                 INTEGER PRIMARY KEY,
        email              TEXT NOT NULL UNIQUE,
        organisation       TEXT NOT NULL REFERENCES organisations(id),
        state              TEXT NOT NULL CHECK (state IN ('pending', 'active', 'locked')),
        password_phc       TEXT,
        totp_sealed        BLOB,
        totp_last_step     INTEGER NOT NULL DEFAULT 0,
        failures           INTEGER NOT NULL DEFAULT 0,
        activation_sha256  BLOB UNIQUE,
        activation_expires INTEGER,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE csc_credentials (
        id          TEXT PRIMARY KEY NOT NULL,
        account     INTEGER NOT NULL REFERENCES csc_accounts(id),
        request     INTEGER NOT NULL UNIQUE REFERENCES requests(id),
        serial      TEXT NOT NULL UNIQUE REFERENCES certificates(serial),
        key_sealed  BLOB NOT NULL,
        enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        created_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX csc_credentials_account ON csc_credentials(account);";

const ACCOUNT_COLUMNS: &str = "id, email, organisation, state, password_phc, totp_sealed, \
     totp_last_step, failures, activation_expires";
const CREDENTIAL_COLUMNS: &str = "id, account, request, serial, key_sealed, enabled, created_at";

fn account(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRecord> {
    let state: String = r.get(3)?;
    Ok(AccountRecord {
        id: r.get(0)?,
        email: r.get(1)?,
        organisation: r.get(2)?,
        state: AccountState::parse(&state).unwrap_or(AccountState::Locked),
        password_phc: r.get(4)?,
        totp_sealed: r.get(5)?,
        totp_last_step: r.get(6)?,
        failures: r.get(7)?,
        activation_expires: r.get(8)?,
    })
}

fn credential(r: &rusqlite::Row<'_>) -> rusqlite::Result<CredentialRecord> {
    Ok(CredentialRecord {
        id: r.get(0)?,
        account: r.get(1)?,
        request: r.get(2)?,
        serial: r.get(3)?,
        key_sealed: r.get(4)?,
        enabled: r.get::<_, i64>(5)? == 1,
        created_at: r.get(6)?,
    })
}

impl SqliteStore {
    fn one_credential(
        &self,
        clause: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        self.lock()?
            .query_row(
                &format!("SELECT {CREDENTIAL_COLUMNS} FROM csc_credentials WHERE {clause}"),
                [value],
                credential,
            )
            .optional()
            .map_err(unavailable)
    }

    fn one_account(
        &self,
        clause: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Option<AccountRecord>, StoreError> {
        self.lock()?
            .query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM csc_accounts WHERE {clause}"),
                [value],
                account,
            )
            .optional()
            .map_err(unavailable)
    }
}

impl CscAccounts for SqliteStore {
    fn provision(&self, p: &Provision, audit: &AuditEntry) -> Result<bool, StoreError> {
        let email = p.email.to_lowercase();
        self.write(|tx| {
            let existing: Option<(i64, String)> = tx
                .query_row(
                    "SELECT id, state FROM csc_accounts WHERE email = ?1",
                    [&email],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let (id, code_stored) = match existing {
                None => {
                    tx.execute(
                        "INSERT INTO csc_accounts (email, organisation, state, activation_sha256,
                                                   activation_expires, created_at, updated_at)
                         VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?5)",
                        params![email, p.organisation, p.activation.0, p.activation.1, p.at],
                    )
                    .map_err(unavailable)?;
                    (tx.last_insert_rowid(), true)
                }
                Some((id, state)) if state == "pending" => {
                    tx.execute(
                        "UPDATE csc_accounts SET activation_sha256 = ?2, activation_expires = ?3,
                                                 updated_at = ?4 WHERE id = ?1",
                        params![id, p.activation.0, p.activation.1, p.at],
                    )
                    .map_err(unavailable)?;
                    (id, true)
                }
                Some((id, _)) => (id, false),
            };
            let c = &p.credential;
            tx.execute(
                "INSERT INTO csc_credentials (id, account, request, serial, key_sealed, enabled,
                                              created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
                params![c.id, id, c.request, c.serial, c.key_sealed, c.created_at],
            )
            .map_err(unavailable)?;
            if code_stored {
                for m in &p.mail {
                    insert_outbox(tx, m, p.at).map_err(unavailable)?;
                }
            }
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(code_stored)
        })
    }

    fn credential_for_request(&self, request: i64) -> Result<Option<CredentialRecord>, StoreError> {
        self.one_credential("request = ?1", &request)
    }

    fn credential_by_serial(&self, serial: &str) -> Result<Option<CredentialRecord>, StoreError> {
        self.one_credential("serial = ?1", &serial)
    }

    fn csc_credential(&self, id: &str) -> Result<Option<CredentialRecord>, StoreError> {
        self.one_credential("id = ?1", &id)
    }

    fn csc_credentials(&self, account_id: i64) -> Result<Vec<CredentialRecord>, StoreError> {
        let conn = self.lock()?;
        let mut st = conn
            .prepare(&format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM csc_credentials WHERE account = ?1
                 ORDER BY created_at, id"
            ))
            .map_err(unavailable)?;
        let rows = st
            .query_map([account_id], credential)
            .map_err(unavailable)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(unavailable)?;
        Ok(rows)
    }

    fn csc_account(&self, id: i64) -> Result<Option<AccountRecord>, StoreError> {
        self.one_account("id = ?1", &id)
    }

    fn account_by_email(&self, email: &str) -> Result<Option<AccountRecord>, StoreError> {
        self.one_account("email = ?1", &email.to_lowercase())
    }

    fn account_by_activation(&self, sha256: &[u8]) -> Result<Option<AccountRecord>, StoreError> {
        self.one_account("activation_sha256 = ?1 AND state = 'pending'", &sha256)
    }

    fn activate(
        &self,
        account_id: i64,
        sha256: &[u8],
        password_phc: &str,
        totp_sealed: &[u8],
        now: u64,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE csc_accounts SET state = 'active', password_phc = ?3,
                            totp_sealed = ?4, activation_sha256 = NULL, activation_expires = NULL,
                            failures = 0, updated_at = ?5
                     WHERE id = ?1 AND state = 'pending' AND activation_sha256 = ?2
                       AND activation_expires > ?5",
                    params![account_id, sha256, password_phc, totp_sealed, now],
                )
                .map_err(unavailable)?;
            if n == 1 {
                insert_audit(tx, audit).map_err(unavailable)?;
            }
            Ok(n == 1)
        })
    }

    fn record_failure(
        &self,
        account_id: i64,
        max: u32,
        audit: &AuditEntry,
    ) -> Result<AccountState, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE csc_accounts SET failures = failures + 1,
                        state = CASE WHEN failures + 1 >= ?2 AND state = 'active' THEN 'locked'
                                     ELSE state END,
                        updated_at = ?3
                 WHERE id = ?1",
                params![account_id, max, audit.at],
            )
            .map_err(unavailable)?;
            insert_audit(tx, audit).map_err(unavailable)?;
            let state: String = tx
                .query_row(
                    "SELECT state FROM csc_accounts WHERE id = ?1",
                    [account_id],
                    |r| r.get(0),
                )
                .map_err(unavailable)?;
            Ok(AccountState::parse(&state).unwrap_or(AccountState::Locked))
        })
    }

    fn record_otp(
        &self,
        account_id: i64,
        step: u64,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE csc_accounts SET totp_last_step = ?2, failures = 0, updated_at = ?3
                     WHERE id = ?1 AND totp_last_step < ?2 AND state = 'active'",
                    params![account_id, step, audit.at],
                )
                .map_err(unavailable)?;
            if n == 1 {
                insert_audit(tx, audit).map_err(unavailable)?;
            }
            Ok(n == 1)
        })
    }

    fn reset_failures(&self, account_id: i64) -> Result<(), StoreError> {
        self.lock()?
            .execute(
                "UPDATE csc_accounts SET failures = 0 WHERE id = ?1 AND failures > 0",
                [account_id],
            )
            .map_err(unavailable)?;
        Ok(())
    }

    fn set_account_state(
        &self,
        account_id: i64,
        state: AccountState,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE csc_accounts SET state = ?2, failures = 0, updated_at = ?3
                     WHERE id = ?1",
                    params![account_id, state.as_str(), audit.at],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("account {account_id}")));
            }
            insert_audit(tx, audit).map_err(unavailable)
        })
        .map(|_| ())
    }

    fn reenrol(
        &self,
        account_id: i64,
        activation: (&[u8], u64),
        mail: &[crate::store::OutboxMessage],
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE csc_accounts SET state = 'pending', password_phc = NULL,
                            totp_sealed = NULL, failures = 0, activation_sha256 = ?2,
                            activation_expires = ?3, updated_at = ?4
                     WHERE id = ?1",
                    params![account_id, activation.0, activation.1, audit.at],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("account {account_id}")));
            }
            for m in mail {
                insert_outbox(tx, m, audit.at).map_err(unavailable)?;
            }
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn disable_credential(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE csc_credentials SET enabled = 0 WHERE id = ?1 AND enabled = 1",
                    [id],
                )
                .map_err(unavailable)?;
            if n == 1 {
                insert_audit(tx, audit).map_err(unavailable)?;
            }
            Ok(())
        })
    }
}
