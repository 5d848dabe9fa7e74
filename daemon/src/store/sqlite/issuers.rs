//! SQLite side of the issuer registry (see `store::issuers`).

use super::{complete_in, insert_audit, unavailable, SqliteStore};
use crate::store::issuers::{IssuerRecord, IssuerRegistry};
use crate::store::{AuditEntry, StoreError};
use rusqlite::{params, TransactionBehavior};

/// Migration 5 (appended to `MIGRATIONS`): the registry. Both certificates must exist.
pub(super) const MIGRATION: &str = "
    CREATE TABLE issuers (
        name               TEXT PRIMARY KEY NOT NULL,
        certificate        TEXT NOT NULL REFERENCES certificates(serial),
        responder          TEXT NOT NULL REFERENCES certificates(serial),
        key_name           TEXT NOT NULL,
        responder_key_name TEXT NOT NULL,
        created_at         INTEGER NOT NULL
    ) STRICT;";

impl IssuerRegistry for SqliteStore {
    fn register_issuer(
        &self,
        issuer: &IssuerRecord,
        responder_der: &[u8],
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        let inserted = tx.execute(
            "INSERT INTO issuers (name, certificate, responder, key_name, responder_key_name, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                issuer.name,
                issuer.certificate_serial,
                issuer.responder_serial,
                issuer.key_name,
                issuer.responder_key_name,
                issuer.created_at
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                return Err(StoreError::DuplicateName(issuer.name.clone()))
            }
            Err(e) => return Err(unavailable(e)),
        }
        complete_in(&tx, &issuer.responder_serial, responder_der)?;
        insert_audit(&tx, audit).map_err(unavailable)?;
        tx.commit().map_err(unavailable)
    }

    fn issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, certificate, responder, key_name, responder_key_name, created_at
                 FROM issuers ORDER BY created_at, name",
            )
            .map_err(unavailable)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(IssuerRecord {
                    name: r.get(0)?,
                    certificate_serial: r.get(1)?,
                    responder_serial: r.get(2)?,
                    key_name: r.get(3)?,
                    responder_key_name: r.get(4)?,
                    created_at: r.get(5)?,
                })
            })
            .map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }
}
