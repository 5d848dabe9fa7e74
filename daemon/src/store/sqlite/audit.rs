//! SQLite side of the audit log (see `store::audit`): the hash columns and the stamps table
//! (migration 8), chaining on append and, once, of the rows a store had before, and the
//! streaming walk that verifies the chain.
//!
//! ```text
//! audit          … , prev_hash BLOB (32), hash BLOB (32)    NULL only if written around pkid
//! audit_stamps   audit_id → head_hash, token (DER TimeStampResp), at
//! ```
//!
//! An append reads the last row's id and hash and the table's AUTOINCREMENT counter with one
//! statement (the end of the primary-key b-tree and one `sqlite_sequence` row) inside the
//! caller's write transaction, so no other writer can append in between, then inserts the row
//! with its id given: the id is part of what is hashed, so it must be known before the insert.

use super::{unavailable, SqliteStore};
use crate::store::audit::{
    chain_hash, AuditHash, AuditStamp, BreakKind, ChainBreak, ChainHead, ChainVerdict, ChainWalk,
    ChainedFields, StoredEntry,
};
use crate::store::{AuditEntry, AuditLog, Outcome, StoreError};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// Migration 8 (appended to `MIGRATIONS`): the chain's columns and the head's timestamps. The
/// hash columns are nullable only because SQLite cannot add a NOT NULL column without a
/// default; [`chain_existing`] fills them in the same transaction, and every append sets them.
/// The stamps table has no foreign key to `audit` on purpose: a deleted stamped entry must
/// stay visible to the verifier, not be prevented or cascaded away.
pub(super) const MIGRATION: &str = "
    ALTER TABLE audit ADD COLUMN prev_hash BLOB;
    ALTER TABLE audit ADD COLUMN hash BLOB;
    CREATE TABLE audit_stamps (
        audit_id  INTEGER PRIMARY KEY NOT NULL,
        head_hash BLOB NOT NULL CHECK (length(head_hash) = 32),
        token     BLOB NOT NULL,
        at        INTEGER NOT NULL
    ) STRICT;";

/// Migration 17 (appended to `MIGRATIONS`): the records about one target, newest first, as
/// one index walk (a remote-signing credential's signing history in the portal, however long
/// the whole log is). One more B-tree entry per appended record.
pub(super) const TARGET_INDEX: &str = "CREATE INDEX audit_target ON audit(target, id);";

/// Rows chained per read while migrating an existing log (bounded memory for any log size).
const CHAIN_BATCH: usize = 1000;

/// The columns a [`StoredEntry`] is read from, by [`stored_entry`].
const ENTRY_COLUMNS: &str = "id, at, actor, action, target, outcome, detail, prev_hash, hash";

/// A TEXT column as stored; text that is not UTF-8 (only by editing the file) is read lossily,
/// which cannot hash like the original and so shows as an edit.
fn text(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<String> {
    let value = row.get_ref(i)?;
    match value {
        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
            Ok(String::from_utf8_lossy(t).into_owned())
        }
        rusqlite::types::ValueRef::Null => Ok(String::new()),
        rusqlite::types::ValueRef::Integer(n) => Ok(n.to_string()),
        rusqlite::types::ValueRef::Real(x) => Ok(x.to_string()),
    }
}

fn stored_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEntry> {
    Ok(StoredEntry {
        id: row.get(0)?,
        at: row.get(1)?,
        actor: text(row, 2)?,
        action: text(row, 3)?,
        target: text(row, 4)?,
        outcome: text(row, 5)?,
        detail: text(row, 6)?,
        previous: row.get(7)?,
        hash: row.get(8)?,
    })
}

/// Chains the rows a store had before migration 8, oldest first from
/// [`AuditHash::GENESIS`]. Runs once, inside the migration's transaction: rows written around
/// pkid later are never silently chained by opening the store.
pub(super) fn chain_existing(tx: &Connection) -> rusqlite::Result<()> {
    let mut previous = AuditHash::GENESIS;
    let mut after = 0i64;
    loop {
        let batch: Vec<StoredEntry> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![after, CHAIN_BATCH as i64], stored_entry)?;
            rows.collect::<Result<_, _>>()?
        };
        let Some(last) = batch.last() else {
            return Ok(());
        };
        after = last.id;
        let mut update = tx.prepare("UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE id = ?3")?;
        for row in &batch {
            let hash = chain_hash(&previous, &row.fields_as(row.id));
            update.execute(params![&previous.0[..], &hash.0[..], row.id])?;
            previous = hash;
        }
    }
}

/// Appends `e` chained to the last row. Call inside a write transaction (the callers'
/// IMMEDIATE transactions, or [`AuditLog::audit`]'s own): the read and the insert must see no
/// other writer in between. The id is one past the highest ever assigned (AUTOINCREMENT's own
/// rule), so the id of a deleted last row is never reused to hide the deletion.
pub(super) fn insert(conn: &Connection, e: &AuditEntry) -> rusqlite::Result<usize> {
    let (assigned, last_hash): (i64, Option<Vec<u8>>) = conn
        .prepare_cached(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit'), 0),
                        COALESCE((SELECT id FROM audit ORDER BY id DESC LIMIT 1), 0)),
                    (SELECT hash FROM audit ORDER BY id DESC LIMIT 1)",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let id = assigned + 1;
    // A last row without a valid hash was written around pkid; the verifier names it, and this
    // row chains from the genesis value rather than from nothing.
    let previous = last_hash
        .as_deref()
        .and_then(AuditHash::from_slice)
        .unwrap_or(AuditHash::GENESIS);
    let hash = chain_hash(&previous, &ChainedFields::of(id, e));
    conn.prepare_cached(
        "INSERT INTO audit (id, at, actor, action, target, outcome, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id,
        e.at,
        e.actor,
        e.action,
        e.target,
        e.outcome.as_str(),
        e.detail,
        &previous.0[..],
        &hash.0[..]
    ])
}

/// The walk over every row of `conn`'s snapshot. An edited entry is looked for among the rows
/// after it (a second pass, only when something is wrong): if it is one of theirs, the rows
/// were reordered.
fn walk(conn: &Connection) -> rusqlite::Result<ChainVerdict> {
    let stamps: Vec<(u64, AuditHash)> = {
        let mut stmt = conn.prepare("SELECT audit_id, head_hash FROM audit_stamps")?;
        let rows = stmt.query_map([], |r| {
            let hash: Vec<u8> = r.get(1)?;
            Ok((r.get::<_, u64>(0)?, AuditHash::from_slice(&hash)))
        })?;
        let mut stamps = Vec::new();
        for row in rows {
            let (id, hash) = row?;
            // The CHECK keeps it 32 octets; a stamp whose hash is not cannot match anything.
            stamps.push((id, hash.unwrap_or(AuditHash::GENESIS)));
        }
        stamps
    };
    let mut chain = ChainWalk::new(stamps);
    let mut stmt = conn.prepare(&format!("SELECT {ENTRY_COLUMNS} FROM audit ORDER BY id"))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let entry = stored_entry(row)?;
        match chain.step(&entry) {
            Ok(()) => {}
            Err(ChainBreak {
                id,
                kind: BreakKind::Edited,
            }) => return Ok(ChainVerdict::Broken(origin_of(conn, &entry, id)?)),
            Err(other) => return Ok(ChainVerdict::Broken(other)),
        }
    }
    let assigned: u64 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    Ok(chain.finish(assigned))
}

/// An edited entry, refined: if its content is what a later row was written as, the rows were
/// swapped or moved.
fn origin_of(conn: &Connection, entry: &StoredEntry, id: u64) -> rusqlite::Result<ChainBreak> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {ENTRY_COLUMNS} FROM audit WHERE id > ?1 ORDER BY id"
    ))?;
    let mut rows = stmt.query([entry.id])?;
    while let Some(row) = rows.next()? {
        let later = stored_entry(row)?;
        if entry.came_from(&later) {
            return Ok(ChainBreak {
                id,
                kind: BreakKind::Moved {
                    from: u64::try_from(later.id).unwrap_or(0),
                },
            });
        }
    }
    Ok(ChainBreak {
        id,
        kind: BreakKind::Edited,
    })
}

fn stamp(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditStamp> {
    let hash: Vec<u8> = r.get(1)?;
    Ok(AuditStamp {
        audit_id: r.get(0)?,
        head_hash: AuditHash::from_slice(&hash).unwrap_or(AuditHash::GENESIS),
        token: r.get(2)?,
        at: r.get(3)?,
    })
}

impl AuditLog for SqliteStore {
    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| insert(tx, entry).map(|_| ()).map_err(unavailable))
    }

    fn audit_page(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        self.audit_rows(None, before, limit)
    }

    fn audit_of_target(
        &self,
        target: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        self.audit_rows(Some(target), before, limit)
    }

    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached("SELECT at, actor, action, target, outcome, detail FROM audit ORDER BY id DESC LIMIT ?1")
            .map_err(unavailable)?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                let outcome: String = r.get(4)?;
                Ok(AuditEntry {
                    at: r.get(0)?,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    outcome: match outcome.as_str() {
                        "success" => Outcome::Success,
                        "refused" => Outcome::Refused,
                        _ => Outcome::Failed,
                    },
                    detail: r.get(5)?,
                })
            })
            .map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }

    fn verify_audit_chain(&self) -> Result<ChainVerdict, StoreError> {
        let mut conn = self.lock()?;
        // One snapshot: rows appended while walking are not half-seen.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(unavailable)?;
        let verdict = walk(&tx).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(verdict)
    }

    fn audit_head(&self) -> Result<Option<ChainHead>, StoreError> {
        let conn = self.lock()?;
        let row: Option<(u64, Option<Vec<u8>>)> = conn
            .prepare_cached("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")
            .map_err(unavailable)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(unavailable)?;
        Ok(row.map(|(id, hash)| ChainHead {
            id,
            hash: hash
                .as_deref()
                .and_then(AuditHash::from_slice)
                .unwrap_or(AuditHash::GENESIS),
        }))
    }

    fn record_audit_stamp(&self, s: &AuditStamp) -> Result<(), StoreError> {
        let inserted = self.write(|tx| {
            tx.execute(
                "INSERT INTO audit_stamps (audit_id, head_hash, token, at) VALUES (?1, ?2, ?3, ?4)",
                params![s.audit_id, &s.head_hash.0[..], s.token, s.at],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                {
                    StoreError::DuplicateName(format!("audit stamp of entry #{}", s.audit_id))
                }
                other => unavailable(other),
            })
        });
        inserted.map(|_| ())
    }

    fn audit_stamps(&self) -> Result<Vec<AuditStamp>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT audit_id, head_hash, token, at FROM audit_stamps ORDER BY audit_id",
            )
            .map_err(unavailable)?;
        let rows = stmt.query_map([], stamp).map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }

    fn latest_audit_stamp(&self) -> Result<Option<AuditStamp>, StoreError> {
        let conn = self.lock()?;
        let latest = conn
            .prepare_cached(
                "SELECT audit_id, head_hash, token, at FROM audit_stamps ORDER BY audit_id DESC LIMIT 1",
            )
            .map_err(unavailable)?
            .query_row([], stamp)
            .optional()
            .map_err(unavailable);
        latest
    }
}

impl SqliteStore {
    /// A page of the log (of one target's records when `target` is given), newest first.
    fn audit_rows(
        &self,
        target: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        let conn = self.lock()?;
        // `?3 IS NULL OR target = ?3` would not use the target index: two statements.
        let mut stmt = conn
            .prepare_cached(if target.is_some() {
                "SELECT id, at, actor, action, target, outcome, detail FROM audit
                 WHERE target = ?3 AND id < ?1 ORDER BY id DESC LIMIT ?2"
            } else {
                "SELECT id, at, actor, action, target, outcome, detail FROM audit
                 WHERE id < ?1 AND ?3 IS NULL ORDER BY id DESC LIMIT ?2"
            })
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(
                params![
                    before.unwrap_or(i64::MAX),
                    i64::try_from(limit).unwrap_or(i64::MAX),
                    target,
                ],
                |r| {
                    let outcome: String = r.get(5)?;
                    Ok((
                        r.get(0)?,
                        AuditEntry {
                            at: r.get(1)?,
                            actor: r.get(2)?,
                            action: r.get(3)?,
                            target: r.get(4)?,
                            outcome: match outcome.as_str() {
                                "success" => Outcome::Success,
                                "refused" => Outcome::Refused,
                                _ => Outcome::Failed,
                            },
                            detail: r.get(6)?,
                        },
                    ))
                },
            )
            .map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{database_before, store};
    use super::*;
    use crate::store::audit::ChainIntact;
    use std::path::Path;

    fn entry(n: usize) -> AuditEntry {
        AuditEntry {
            at: 1_780_000_000 + n as u64,
            actor: "Nguyễn Thị Hương".into(),
            action: "cert.revoke".into(),
            target: format!("{n:02x}"),
            outcome: Outcome::Success,
            detail: format!("lý do: keyCompromise #{n}"),
        }
    }

    /// A store with `n` chained entries, and the path of its file.
    fn log_of(n: usize) -> (tempfile::TempDir, SqliteStore, std::path::PathBuf) {
        let (dir, s) = store();
        for i in 1..=n {
            s.audit(&entry(i)).expect("append");
        }
        let path = dir.path().join("t.db");
        (dir, s, path)
    }

    /// A second connection to the file, as someone editing it behind pkid's back.
    fn tamper(path: &Path, sql: &str) {
        let conn = Connection::open(path).expect("open for tampering");
        conn.execute_batch(sql).expect("tamper");
    }

    fn broken(s: &SqliteStore) -> ChainBreak {
        match s.verify_audit_chain().expect("verify") {
            ChainVerdict::Broken(b) => b,
            ChainVerdict::Intact(i) => panic!("tampering not detected: {i:?}"),
        }
    }

    /// Asserts the walk stops at entry `id` with `kind`.
    fn assert_breaks_at(s: &SqliteStore, id: u64, kind: BreakKind) {
        assert_eq!(broken(s), ChainBreak { id, kind });
    }

    fn intact(s: &SqliteStore) -> ChainIntact {
        match s.verify_audit_chain().expect("verify") {
            ChainVerdict::Intact(i) => i,
            ChainVerdict::Broken(b) => panic!("intact chain reported broken: {b}"),
        }
    }

    #[test]
    fn the_chain_grows_and_verifies() {
        let (_d, s) = store();
        assert_eq!(
            intact(&s),
            ChainIntact {
                count: 0,
                head: None,
                stamps: 0
            }
        );
        let mut previous = AuditHash::GENESIS;
        for i in 1..=5 {
            s.audit(&entry(i)).expect("append");
            let head = s.audit_head().expect("head").expect("some");
            // Each head is exactly the documented hash of its row over the previous head.
            let expected = chain_hash(&previous, &ChainedFields::of(i as i64, &entry(i)));
            assert_eq!(
                head,
                ChainHead {
                    id: i as u64,
                    hash: expected
                }
            );
            previous = expected;
        }
        let verdict = intact(&s);
        assert_eq!((verdict.count, verdict.head.map(|h| h.id)), (5, Some(5)));
        // Vietnamese text round-trips byte-exact.
        assert_eq!(s.audit_log(1).expect("log")[0], entry(5));
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        let a = AuditEntry {
            actor: "ab".into(),
            action: "c".into(),
            ..entry(1)
        };
        let b = AuditEntry {
            actor: "a".into(),
            action: "bc".into(),
            ..entry(1)
        };
        let g = AuditHash::GENESIS;
        assert_ne!(
            chain_hash(&g, &ChainedFields::of(1, &a)),
            chain_hash(&g, &ChainedFields::of(1, &b)),
            "a field boundary moved must change the hash"
        );
        assert_ne!(
            chain_hash(&g, &ChainedFields::of(1, &a)),
            chain_hash(&g, &ChainedFields::of(2, &a)),
            "the id is committed to"
        );
    }

    #[test]
    fn an_edited_entry_is_named() {
        let (_d, s, path) = log_of(5);
        tamper(
            &path,
            "UPDATE audit SET detail = 'lý do: unspecified' WHERE id = 3",
        );
        assert_breaks_at(&s, 3, BreakKind::Edited);
    }

    #[test]
    fn an_outcome_edited_to_an_unknown_name_is_named() {
        // audit_log reads an unknown outcome as `failed`; the chain commits to the stored text.
        let (_d, s, path) = log_of(3);
        tamper(&path, "UPDATE audit SET outcome = 'failed' WHERE id = 2");
        let (_d2, s2, path2) = log_of(3);
        tamper(&path2, "UPDATE audit SET outcome = 'whatever' WHERE id = 2");
        for s in [&s, &s2] {
            assert_eq!(broken(s).id, 2);
        }
    }

    #[test]
    fn an_entry_edited_and_rehashed_is_named() {
        let (_d, s, path) = log_of(5);
        // Recompute #3's hash over the edited content from its stored predecessor: #3 is
        // self-consistent, but #4 was chained from the old hash.
        let conn = Connection::open(&path).expect("open");
        let mut row: StoredEntry = conn
            .query_row(
                &format!("SELECT {ENTRY_COLUMNS} FROM audit WHERE id = 3"),
                [],
                stored_entry,
            )
            .expect("row 3");
        row.detail = "sửa".into();
        let previous = AuditHash::from_slice(row.previous.as_deref().expect("prev")).expect("32");
        let hash = chain_hash(&previous, &row.fields_as(3));
        conn.execute(
            "UPDATE audit SET detail = ?1, hash = ?2 WHERE id = 3",
            params![row.detail, &hash.0[..]],
        )
        .expect("rehash");
        assert_breaks_at(&s, 3, BreakKind::Rewritten);
    }

    #[test]
    fn a_deleted_entry_is_named() {
        let (_d, s, path) = log_of(5);
        tamper(&path, "DELETE FROM audit WHERE id IN (2, 3)");
        assert_breaks_at(&s, 2, BreakKind::Deleted { last: 3 });
        assert_eq!(
            broken(&s).to_string(),
            "audit entries #2 to #3 were deleted"
        );
    }

    #[test]
    fn deleting_the_first_or_the_last_entries_is_named() {
        let (_d, s, path) = log_of(4);
        tamper(&path, "DELETE FROM audit WHERE id = 1");
        assert_breaks_at(&s, 1, BreakKind::Deleted { last: 1 });
        let (_d, s, path) = log_of(4);
        tamper(&path, "DELETE FROM audit WHERE id >= 3");
        assert_breaks_at(&s, 3, BreakKind::Deleted { last: 4 });
        // The next append does not reuse the deleted ids, so the gap stays visible.
        s.audit(&entry(9)).expect("append");
        assert_eq!(s.audit_head().expect("head").expect("some").id, 5);
        assert_breaks_at(&s, 3, BreakKind::Deleted { last: 4 });
    }

    /// Exchanges `columns` of rows 2 and 4.
    fn swap(path: &Path, columns: &[&str]) {
        let set: Vec<String> = columns
            .iter()
            .map(|c| format!("{c} = (SELECT {c} FROM audit AS o WHERE o.id = 6 - audit.id)"))
            .collect();
        tamper(
            path,
            &format!(
                "CREATE TEMP TABLE copy AS SELECT * FROM audit;
                 UPDATE audit SET {} WHERE id IN (2, 4);",
                set.join(", ").replace("FROM audit AS o", "FROM copy AS o")
            ),
        );
    }

    #[test]
    fn two_swapped_entries_are_named_as_reordered() {
        let content = ["at", "actor", "action", "target", "outcome", "detail"];
        let whole = [&content[..], &["prev_hash", "hash"]].concat();
        for columns in [&content[..], &whole[..]] {
            let (_d, s, path) = log_of(5);
            swap(&path, columns);
            assert_eq!(
                broken(&s),
                ChainBreak {
                    id: 2,
                    kind: BreakKind::Moved { from: 4 }
                },
                "swapping {columns:?}"
            );
        }
    }

    #[test]
    fn a_row_written_around_pkid_is_named() {
        let (_d, s, path) = log_of(2);
        tamper(
            &path,
            "INSERT INTO audit (at, actor, action, target, outcome, detail)
             VALUES (1, 'x', 'cert.issue', 'y', 'success', '')",
        );
        assert_breaks_at(&s, 3, BreakKind::Unchained);
    }

    /// Records a stamp of the current head (the token's content does not matter to the store)
    /// at time 1; returns the head.
    fn stamp_the_head(s: &SqliteStore) -> ChainHead {
        let head = s.audit_head().expect("head").expect("some");
        s.record_audit_stamp(&AuditStamp {
            audit_id: head.id,
            head_hash: head.hash,
            token: vec![0x30, 0x00],
            at: 1,
        })
        .expect("stamp");
        head
    }

    #[test]
    fn a_stamp_reveals_a_consistently_rewritten_chain() {
        let (_d, s, path) = log_of(4);
        let head = stamp_the_head(&s);
        assert!(matches!(
            s.record_audit_stamp(&AuditStamp {
                audit_id: head.id,
                head_hash: head.hash,
                token: vec![],
                at: 2,
            }),
            Err(StoreError::DuplicateName(_))
        ));
        assert_eq!(intact(&s).stamps, 1);
        // Rewrite #2 and re-chain everything after it: only the stamp can tell.
        let conn = Connection::open(&path).expect("open");
        conn.execute("UPDATE audit SET detail = 'sửa' WHERE id = 2", [])
            .expect("edit");
        let mut previous = AuditHash::GENESIS;
        for id in 1..=4i64 {
            let row: StoredEntry = conn
                .query_row(
                    &format!("SELECT {ENTRY_COLUMNS} FROM audit WHERE id = ?1"),
                    [id],
                    stored_entry,
                )
                .expect("row");
            let hash = chain_hash(&previous, &row.fields_as(id));
            conn.execute(
                "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
                params![&previous.0[..], &hash.0[..], id],
            )
            .expect("rechain");
            previous = hash;
        }
        assert_breaks_at(&s, 4, BreakKind::StampMismatch { stamped: head.hash });
        assert_eq!(s.latest_audit_stamp().expect("latest").expect("some").at, 1);
        assert_eq!(s.audit_stamps().expect("stamps").len(), 1);
    }

    #[test]
    fn a_truncated_tail_is_named_even_with_its_counter_reset() {
        let (_d, s, path) = log_of(4);
        stamp_the_head(&s);
        // The last two entries deleted and AUTOINCREMENT's counter wound back: the stamp still
        // remembers that #4 existed.
        tamper(
            &path,
            "DELETE FROM audit WHERE id >= 3; UPDATE sqlite_sequence SET seq = 2 WHERE name = 'audit';",
        );
        assert_breaks_at(&s, 3, BreakKind::Deleted { last: 4 });
    }

    #[test]
    fn a_store_made_before_the_chain_is_chained_on_open() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("old.db");
        {
            let before = super::super::MIGRATIONS
                .iter()
                .position(|m| *m == MIGRATION)
                .expect("the chain's migration is listed");
            let conn = database_before(&path, before);
            for i in 1..=3 {
                let e = entry(i);
                conn.execute(
                    "INSERT INTO audit (at, actor, action, target, outcome, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        e.at,
                        e.actor,
                        e.action,
                        e.target,
                        e.outcome.as_str(),
                        e.detail
                    ],
                )
                .expect("old row");
            }
        }
        let s = SqliteStore::open(&path, std::time::Duration::from_secs(1)).expect("migrate");
        assert_eq!(intact(&s).count, 3);
        s.audit(&entry(4)).expect("append after the migration");
        let verdict = intact(&s);
        assert_eq!((verdict.count, verdict.head.map(|h| h.id)), (4, Some(4)));
        // Opening again does not chain anything a second time (nor launder a later edit).
        drop(s);
        tamper(
            &path,
            "UPDATE audit SET prev_hash = NULL, hash = NULL WHERE id = 2",
        );
        let s = SqliteStore::open(&path, std::time::Duration::from_secs(1)).expect("reopen");
        assert_breaks_at(&s, 2, BreakKind::Unchained);
    }
}
