//! SQLite side of the enrollment credentials and pending EST requests (see
//! `store::credentials`).

use super::{insert_audit, unavailable, SqliteStore};
use crate::store::credentials::{CredentialKind, CredentialRecord, Credentials, EstRequest};
use crate::store::{AuditEntry, StoreError};
use rusqlite::{params, OptionalExtension};

/// Migration 10 (appended to `MIGRATIONS`): organisations' EST and CMP credentials, and the RA
/// requests EST CSRs became.
pub(super) const MIGRATION: &str = "
    CREATE TABLE credentials (
        id            INTEGER PRIMARY KEY,
        organisation  TEXT NOT NULL REFERENCES organisations(id),
        kind          TEXT NOT NULL CHECK (kind IN ('est', 'cmp')),
        name          TEXT NOT NULL,
        secret        BLOB NOT NULL,
        created_at    INTEGER NOT NULL,
        created_by    TEXT NOT NULL,
        UNIQUE (organisation, kind, name)
    ) STRICT;
    CREATE TABLE est_requests (
        csr_sha256    BLOB PRIMARY KEY NOT NULL,
        label         TEXT NOT NULL,
        organisation  TEXT NOT NULL,
        request       INTEGER NOT NULL REFERENCES requests(id)
    ) STRICT;";

const COLUMNS: &str = "id, organisation, kind, name, secret, created_at, created_by";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CredentialRecord> {
    let kind: String = r.get(2)?;
    Ok(CredentialRecord {
        id: r.get(0)?,
        organisation: r.get(1)?,
        kind: CredentialKind::parse(&kind).unwrap_or(CredentialKind::Est),
        name: r.get(3)?,
        secret: r.get(4)?,
        created_at: r.get(5)?,
        created_by: r.get(6)?,
    })
}

impl Credentials for SqliteStore {
    fn add_credential(&self, c: &CredentialRecord, audit: &AuditEntry) -> Result<i64, StoreError> {
        self.write(|tx| {
            let r = tx.execute(
                "INSERT INTO credentials (organisation, kind, name, secret, created_at, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    c.organisation,
                    c.kind.as_str(),
                    c.name,
                    c.secret,
                    c.created_at,
                    c.created_by
                ],
            );
            match r {
                Ok(_) => {}
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
                {
                    return Err(StoreError::DuplicateName(format!(
                        "{} credential {} of {}",
                        c.kind.as_str(),
                        c.name,
                        c.organisation
                    )))
                }
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    return Err(StoreError::NotFound(format!(
                        "organisation {}",
                        c.organisation
                    )))
                }
                Err(e) => return Err(unavailable(e)),
            }
            let id = tx.last_insert_rowid();
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(id)
        })
    }

    fn credentials(&self, organisation: Option<&str>) -> Result<Vec<CredentialRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM credentials WHERE ?1 IS NULL OR organisation = ?1
                 ORDER BY organisation, kind, name"
            ))
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![organisation], row)
            .map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }

    fn credential(
        &self,
        organisation: &str,
        kind: CredentialKind,
        name: &str,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let conn = self.lock()?;
        let found = conn
            .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM credentials WHERE organisation = ?1 AND kind = ?2 AND name = ?3"
        ))
            .map_err(unavailable)?
            .query_row(params![organisation, kind.as_str(), name], row)
            .optional()
            .map_err(unavailable);
        found
    }

    fn remove_credential(
        &self,
        organisation: &str,
        kind: CredentialKind,
        name: &str,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM credentials WHERE organisation = ?1 AND kind = ?2 AND name = ?3",
                    params![organisation, kind.as_str(), name],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "{} credential {name} of {organisation}",
                    kind.as_str()
                )));
            }
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn record_est_request(&self, r: &EstRequest) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO est_requests (csr_sha256, label, organisation, request)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (csr_sha256) DO NOTHING",
            params![r.csr_sha256, r.label, r.organisation, r.request],
        )
        .map_err(unavailable)?;
        Ok(())
    }

    fn est_request(&self, csr_sha256: &[u8]) -> Result<Option<EstRequest>, StoreError> {
        let conn = self.lock()?;
        let found = conn.prepare_cached(
            "SELECT csr_sha256, label, organisation, request FROM est_requests WHERE csr_sha256 = ?1",
        )
        .map_err(unavailable)?
        .query_row(params![csr_sha256], |r| {
            Ok(EstRequest {
                csr_sha256: r.get(0)?,
                label: r.get(1)?,
                organisation: r.get(2)?,
                request: r.get(3)?,
            })
        })
        .optional()
        .map_err(unavailable);
        found
    }
}
