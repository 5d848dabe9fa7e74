//! SQLite side of the CRL store (see `store::crl`).
//!
//! Reads that a CRL is built from run in one read transaction, so the rows and the
//! change-sequence position they reflect agree. CRL numbers come from an `IMMEDIATE`
//! transaction (one writer at a time across processes).
//!
//! A signed CRL's body is a file in `crls/` beside the database, written and synced before
//! the row that names it (with its SHA-256) commits; the row is what makes it published.
//! Through SQLite's pager a 50 MB body cost about 250 ms (12,000 page writes, spilled and
//! re-read through the page cache, then checkpointed into the database: the same bytes
//! three times); as one file it is one `write` and one `fsync`: ~35 ms here when the page
//! cache recycles a replaced body's pages, ~165 ms into fresh memory on this VM.
//! Files no row names (a crash between the file and the commit) are removed by the next
//! store, under the same write lock. Rows from before migration 4 keep their body in `der`.

use super::{row_text, unavailable, SqliteStore};
use crate::store::crl::{
    shard_column, shard_of_column, CrlInfo, CrlQuery, CrlRow, CrlScopeChange, CrlVisitor, NewCrl,
    ShardFilter, StoredCrl,
};
use crate::store::{CertStatus, CrlStore, StoreError};
use pkid_protocols::revocation;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, params_from_iter, OptionalExtension, TransactionBehavior, MAIN_DB};
use std::io::{Read, Write};

/// Migration 2 (appended to `MIGRATIONS`): partitions, CRL numbers, stored CRLs. The two
/// partial indexes hold only revoked and held certificates, in CRL order, with every column a
/// complete CRL needs: building one is an index-only scan, without a table lookup per entry.
pub(super) const MIGRATION: &str = "
    ALTER TABLE certificates ADD COLUMN shard INTEGER;
    CREATE INDEX certificates_shard ON certificates(issuer, shard);
    CREATE INDEX certificates_crl ON certificates(issuer, length(serial), serial,
        not_after, status, revoked_at, reason, invalidity_date)
        WHERE status IN ('revoked','hold');
    CREATE INDEX certificates_crl_shard ON certificates(issuer, shard, length(serial), serial,
        not_after, status, revoked_at, reason, invalidity_date)
        WHERE status IN ('revoked','hold');
    CREATE INDEX changes_serial ON changes(serial, seq);
    CREATE TABLE crl_numbers (
        issuer TEXT NOT NULL,
        shard  INTEGER NOT NULL,
        last   INTEGER NOT NULL,
        PRIMARY KEY (issuer, shard)
    ) STRICT;
    CREATE TABLE crls (
        issuer      TEXT NOT NULL,
        shard       INTEGER NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('full','delta')),
        number      INTEGER NOT NULL,
        base_number INTEGER,
        this_update INTEGER NOT NULL,
        next_update INTEGER NOT NULL,
        change_seq  INTEGER NOT NULL,
        entries     INTEGER NOT NULL,
        size        INTEGER NOT NULL,
        der         BLOB NOT NULL,
        PRIMARY KEY (issuer, shard, kind)
    ) STRICT;";

/// Migration 4: where a CRL's body file is, and its SHA-256 (checked on every read).
pub(super) const MIGRATION_FILES: &str = "
    ALTER TABLE crls ADD COLUMN file TEXT;
    ALTER TABLE crls ADD COLUMN sha256 BLOB;";

/// The directory of CRL body files, beside the database.
pub(super) const CRL_DIR: &str = "crls";

/// The file name of a CRL body: scope and number, so a name is never reused.
fn body_name(issuer: &str, shard: i64, delta: bool, number: u64) -> String {
    // Issuer names are configuration words; hex-encode anything else rather than trust it in a
    // path.
    let safe = issuer
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let issuer = if safe {
        issuer.to_string()
    } else {
        hex::encode(issuer)
    };
    format!("{issuer}.{shard}.{}.{number}.crl", kind(delta))
}

fn io_failure(what: &str, path: &std::path::Path, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
}

/// Writes `der` to `dir/name` durably: a temporary file, synced, renamed, directory synced.
fn write_body(dir: &std::path::Path, name: &str, der: &[u8]) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| io_failure("creating", dir, e))?;
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_failure("creating", &tmp, e))?;
    f.write_all(der)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_failure("writing", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| io_failure("renaming", &tmp, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_failure("syncing", dir, e))
}

/// Removes body files no row names, except `keep` (called under the write lock, so no other
/// process is between writing a body and committing its row).
fn sweep_bodies(dir: &std::path::Path, named: &[String], keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name != keep && !named.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// What a CRL scan reads; for a released hold (deltas only), the release time.
const SCAN_COLUMNS: &str = "serial, status,
     CASE WHEN status = 'valid'
          THEN (SELECT MAX(at) FROM changes p WHERE p.serial = certificates.serial)
          ELSE revoked_at END,
     reason, invalidity_date";

const INFO_COLUMNS: &str =
    "issuer, shard, kind, number, base_number, this_update, next_update, change_seq, entries, size";

fn kind(delta: bool) -> &'static str {
    if delta {
        "delta"
    } else {
        "full"
    }
}

fn info(row: &rusqlite::Row<'_>) -> rusqlite::Result<CrlInfo> {
    let shard: i64 = row.get(1)?;
    let kind: String = row.get(2)?;
    Ok(CrlInfo {
        issuer: row.get(0)?,
        shard: shard_of_column(shard),
        delta: kind == "delta",
        number: row.get(3)?,
        base_number: row.get(4)?,
        this_update: row.get(5)?,
        next_update: row.get(6)?,
        change_seq: row.get(7)?,
        entries: row.get(8)?,
        size: row.get(9)?,
    })
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The WHERE clause and its arguments for a CRL query.
fn filter(q: &CrlQuery<'_>) -> (String, Vec<Value>) {
    let mut sql = String::from("issuer = ? AND not_after >= ?");
    let mut args = vec![
        Value::Text(q.issuer.to_string()),
        Value::Integer(i64::try_from(q.not_after_from).unwrap_or(i64::MAX)),
    ];
    match q.shard {
        ShardFilter::Any => {}
        ShardFilter::Unsharded => sql.push_str(" AND shard IS NULL"),
        ShardFilter::Shard(n) => {
            sql.push_str(" AND shard = ?");
            args.push(Value::Integer(i64::from(n)));
        }
    }
    match q.changed_after {
        // Exactly the partial indexes' condition, so SQLite walks them in serial order.
        None => sql.push_str(" AND status IN ('revoked','hold')"),
        Some(seq) => {
            let seq = Value::Integer(i64::try_from(seq).unwrap_or(i64::MAX));
            sql.push_str(
                " AND serial IN (SELECT serial FROM changes WHERE seq > ?)
                  AND (status IN ('revoked','hold')
                       OR (status = 'valid' AND EXISTS
                           (SELECT 1 FROM changes p WHERE p.serial = certificates.serial AND p.seq <= ?)))",
            );
            args.push(seq.clone());
            args.push(seq);
        }
    }
    (sql, args)
}

impl CrlStore for SqliteStore {
    fn set_crl_shard(&self, serial: &str, shard: u32) -> Result<(), StoreError> {
        let n = self
            .lock()?
            .execute(
                "UPDATE certificates SET shard = ?2 WHERE serial = ?1",
                params![serial, shard],
            )
            .map_err(unavailable)?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound(serial.to_string()))
        }
    }

    fn scan_crl_entries(
        &self,
        q: &CrlQuery<'_>,
        visitor: &mut dyn CrlVisitor,
    ) -> Result<u64, StoreError> {
        let (cond, args) = filter(q);
        self.consistent_read(|tx, _| {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {SCAN_COLUMNS} FROM certificates WHERE {cond} ORDER BY length(serial), serial"
                ))
                .map_err(unavailable)?;
            let mut rows = stmt
                .query(params_from_iter(args.iter()))
                .map_err(unavailable)?;
            // A million rows per large CRL: the columns are read as raw values, without the
            // typed conversions (they were over a third of the scan's time).
            while let Some(row) = rows.next().map_err(unavailable)? {
                let serial = row_text(row, 0)?;
                let status = match row.get_ref(1).map_err(unavailable)? {
                    ValueRef::Text(b"revoked") => CertStatus::Revoked,
                    ValueRef::Text(b"hold") => CertStatus::Hold,
                    ValueRef::Text(b"valid") => CertStatus::Valid,
                    _ => CertStatus::Pending,
                };
                let int = |i: usize| -> Result<Option<i64>, StoreError> {
                    match row.get_ref(i).map_err(unavailable)? {
                        ValueRef::Integer(v) => Ok(Some(v)),
                        ValueRef::Null => Ok(None),
                        other => Err(StoreError::Unavailable(format!(
                            "CRL scan column {i}: expected an integer, found {:?}",
                            other.data_type()
                        ))),
                    }
                };
                let keep_going = visitor.row(CrlRow {
                    serial,
                    status,
                    at: int(2)?.map_or(0, u64_of),
                    reason: int(3)?
                        .and_then(|c| u8::try_from(c).ok())
                        .and_then(revocation::from_code),
                    invalidity_date: int(4)?.map(u64_of),
                });
                if !keep_going {
                    break;
                }
            }
            Ok(())
        })
    }

    fn crl_changes_since(&self, since: u64) -> Result<(Vec<CrlScopeChange>, u64), StoreError> {
        let mut scopes = Vec::new();
        let seq = self.consistent_read(|tx, seq| {
            // Revocations and holds, and releases (valid again after an earlier change);
            // an issuance alone changes no CRL.
            let mut stmt = tx
                .prepare(
                    "SELECT DISTINCT c.issuer, c.shard FROM changes ch JOIN certificates c ON c.serial = ch.serial
                     WHERE ch.seq > ?1 AND ch.seq <= ?2
                       AND (c.status IN ('revoked','hold')
                            OR EXISTS (SELECT 1 FROM changes p WHERE p.serial = ch.serial AND p.seq < ch.seq))",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![since, seq], |r| {
                    let shard: Option<i64> = r.get(1)?;
                    Ok(CrlScopeChange {
                        issuer: r.get(0)?,
                        shard: shard.and_then(|s| u32::try_from(s).ok()),
                    })
                })
                .map_err(unavailable)?;
            scopes = rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)?;
            Ok(())
        })?;
        Ok((scopes, seq))
    }

    fn max_crl_shard(&self, issuer: &str) -> Result<Option<u32>, StoreError> {
        let max: Option<i64> = self
            .lock()?
            .query_row(
                "SELECT MAX(shard) FROM certificates WHERE issuer = ?1",
                [issuer],
                |r| r.get(0),
            )
            .map_err(unavailable)?;
        Ok(max.and_then(|m| u32::try_from(m).ok()))
    }

    fn next_crl_number(&self, issuer: &str, shard: Option<u32>) -> Result<u64, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        let n: u64 = tx
            .query_row(
                "INSERT INTO crl_numbers (issuer, shard, last) VALUES (?1, ?2, 1)
                 ON CONFLICT (issuer, shard) DO UPDATE SET last = last + 1
                 RETURNING last",
                params![issuer, shard_column(shard)],
                |r| r.get(0),
            )
            .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(n)
    }

    fn put_crl(&self, c: &NewCrl<'_>) -> Result<bool, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        let shard = shard_column(c.shard);
        let stored: Option<(u64, Option<String>)> = tx
            .query_row(
                "SELECT number, file FROM crls WHERE issuer = ?1 AND shard = ?2 AND kind = ?3",
                params![c.issuer, shard, kind(c.delta)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(unavailable)?;
        if stored.as_ref().is_some_and(|(n, _)| *n >= c.number) {
            return Ok(false); // a newer CRL is already published; drop the transaction
        }
        let name = body_name(c.issuer, shard, c.delta, c.number);
        write_body(&self.crl_dir, &name, c.der)?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, c.der);
        tx.execute(
            "INSERT OR REPLACE INTO crls (issuer, shard, kind, number, base_number, this_update, next_update,
                                          change_seq, entries, size, der, file, sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, x'', ?11, ?12)",
            params![
                c.issuer,
                shard,
                kind(c.delta),
                c.number,
                c.base_number,
                c.this_update,
                c.next_update,
                c.change_seq,
                c.entries,
                c.der.len() as u64,
                name,
                digest.as_ref()
            ],
        )
        .map_err(unavailable)?;
        let mut named: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT file FROM crls WHERE file IS NOT NULL")
                .map_err(unavailable)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(unavailable)?;
            rows.collect::<Result<_, _>>().map_err(unavailable)?
        };
        // The replaced body stays until the commit: if the commit fails, its row still names it.
        if let Some((_, Some(previous))) = &stored {
            named.push(previous.clone());
        }
        sweep_bodies(&self.crl_dir, &named, &name);
        tx.commit().map_err(unavailable)?;
        if let Some((_, Some(previous))) = stored {
            let _ = std::fs::remove_file(self.crl_dir.join(previous));
        }
        Ok(true)
    }

    fn crl_infos(&self) -> Result<Vec<CrlInfo>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {INFO_COLUMNS} FROM crls ORDER BY issuer, shard, kind DESC"
            ))
            .map_err(unavailable)?;
        let rows = stmt.query_map([], info).map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }

    fn stored_crl(
        &self,
        issuer: &str,
        shard: Option<u32>,
        delta: bool,
    ) -> Result<Option<StoredCrl>, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(unavailable)?;
        let found = tx
            .query_row(
                &format!(
                    "SELECT {INFO_COLUMNS}, rowid, file, sha256 FROM crls WHERE issuer = ?1 AND shard = ?2 AND kind = ?3"
                ),
                params![issuer, shard_column(shard), kind(delta)],
                |r| {
                    Ok((
                        info(r)?,
                        r.get::<_, i64>(10)?,
                        r.get::<_, Option<String>>(11)?,
                        r.get::<_, Option<Vec<u8>>>(12)?,
                    ))
                },
            )
            .optional()
            .map_err(unavailable)?;
        let Some((info, rowid, file, sha256)) = found else {
            return Ok(None);
        };
        let der = match file {
            Some(name) => {
                let path = self.crl_dir.join(&name);
                let der = std::fs::read(&path).map_err(|e| io_failure("reading", &path, e))?;
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
                if der.len() as u64 != info.size || sha256.as_deref() != Some(digest.as_ref()) {
                    return Err(StoreError::Unavailable(format!(
                        "{}: does not match the stored CRL's size and SHA-256",
                        path.display()
                    )));
                }
                der
            }
            None => {
                // Stored before migration 4: the body is in the row.
                let mut der = Vec::with_capacity(usize::try_from(info.size).unwrap_or(0));
                let mut blob = tx
                    .blob_open(MAIN_DB, c"crls", c"der", rowid, true)
                    .map_err(unavailable)?;
                blob.read_to_end(&mut der)
                    .map_err(|e| StoreError::Unavailable(format!("reading the CRL: {e}")))?;
                der
            }
        };
        tx.commit().map_err(unavailable)?;
        Ok(Some(StoredCrl { info, der }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::store;
    use super::*;
    use crate::store::crl::NO_SHARD;

    /// The plan SQLite picks for a complete CRL's scan.
    fn plan(s: &SqliteStore, shard: ShardFilter) -> String {
        let q = CrlQuery {
            issuer: "issuing",
            shard,
            not_after_from: 0,
            changed_after: None,
        };
        let (cond, args) = filter(&q);
        let conn = s.lock().expect("lock");
        let mut stmt = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT {SCAN_COLUMNS} FROM certificates WHERE {cond} ORDER BY length(serial), serial"
            ))
            .expect("prepare");
        let rows = stmt
            .query_map(params_from_iter(args.iter()), |r| r.get::<_, String>(3))
            .expect("plan");
        rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn complete_crl_scans_walk_a_covering_partial_index_in_serial_order() {
        let (_d, s) = store();
        for (shard, index) in [
            (ShardFilter::Any, "certificates_crl "),
            (ShardFilter::Shard(3), "certificates_crl_shard"),
            (ShardFilter::Unsharded, "certificates_crl_shard"),
        ] {
            let p = plan(&s, shard);
            assert!(p.contains(index), "{shard:?}: {p}");
            assert!(p.contains("COVERING INDEX"), "{shard:?}: {p}");
            assert!(!p.contains("TEMP B-TREE"), "{shard:?} sorts: {p}");
        }
    }

    #[test]
    fn numbers_are_per_scope_and_stored_crls_only_move_forward() {
        let (_d, s) = store();
        assert_eq!(s.next_crl_number("issuing", None).expect("n"), 1);
        assert_eq!(s.next_crl_number("issuing", None).expect("n"), 2);
        assert_eq!(s.next_crl_number("issuing", Some(0)).expect("n"), 1);
        assert_eq!(s.next_crl_number("root", None).expect("n"), 1);
        assert_eq!(shard_column(None), NO_SHARD);
        let crl = |number: u64, der: &'static [u8]| NewCrl {
            issuer: "issuing",
            shard: Some(0),
            delta: false,
            number,
            base_number: None,
            this_update: 10,
            next_update: 20,
            change_seq: 5,
            entries: 0,
            der,
        };
        assert!(s.put_crl(&crl(2, b"two")).expect("put"));
        assert!(!s.put_crl(&crl(1, b"one")).expect("older refused"));
        assert!(!s.put_crl(&crl(2, b"dup")).expect("same refused"));
        let stored = s
            .stored_crl("issuing", Some(0), false)
            .expect("get")
            .expect("some");
        assert_eq!(
            (stored.info.number, stored.der.as_slice()),
            (2, &b"two"[..])
        );
        assert!(s.put_crl(&crl(3, b"three!")).expect("newer"));
        let stored = s
            .stored_crl("issuing", Some(0), false)
            .expect("get")
            .expect("some");
        assert_eq!(
            (stored.info.number, stored.info.size, stored.der.as_slice()),
            (3, 6, &b"three!"[..])
        );
        assert!(s.stored_crl("issuing", None, false).expect("get").is_none());
        assert_eq!(s.crl_infos().expect("list").len(), 1);
    }

    #[test]
    fn crl_bodies_are_files_named_by_their_row_checked_on_read_and_swept() {
        let (d, s) = store();
        let dir = d.path().join(CRL_DIR);
        let crl = |number: u64, delta: bool, der: &'static [u8]| NewCrl {
            issuer: "issuing",
            shard: None,
            delta,
            number,
            base_number: None,
            this_update: 10,
            next_update: 20,
            change_seq: 5,
            entries: 0,
            der,
        };
        let files = || {
            let mut v: Vec<String> = std::fs::read_dir(&dir)
                .expect("dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert!(s.put_crl(&crl(1, false, b"full one")).expect("put"));
        assert!(s.put_crl(&crl(2, true, b"delta two")).expect("put"));
        assert_eq!(
            files(),
            ["issuing.-1.delta.2.crl", "issuing.-1.full.1.crl"],
            "one file per stored CRL"
        );
        // A crash between a body and its row leaves an orphan; the next store removes it.
        std::fs::write(dir.join("issuing.-1.full.9.crl"), b"orphan").expect("orphan");
        std::fs::write(dir.join("issuing.-1.full.9.crl.tmp"), b"half").expect("tmp");
        assert!(s.put_crl(&crl(3, false, b"full three")).expect("put"));
        assert_eq!(
            files(),
            ["issuing.-1.delta.2.crl", "issuing.-1.full.3.crl"],
            "the replaced body and the orphans are gone"
        );
        let stored = s
            .stored_crl("issuing", None, false)
            .expect("get")
            .expect("some");
        assert_eq!(stored.der, b"full three");
        // A body changed on disk is refused, not served.
        std::fs::write(dir.join("issuing.-1.full.3.crl"), b"full thrEe").expect("tamper");
        let e = s.stored_crl("issuing", None, false).expect_err("tampered");
        assert!(e.to_string().contains("SHA-256"), "{e}");
        std::fs::remove_file(dir.join("issuing.-1.delta.2.crl")).expect("rm");
        assert!(s.stored_crl("issuing", None, true).is_err(), "missing body");
        assert_eq!(body_name("../x", 3, false, 1), "2e2e2f78.3.full.1.crl");
    }

    #[test]
    fn crls_stored_before_migration_4_are_read_from_the_row() {
        let (_d, s) = store();
        s.lock()
            .expect("lock")
            .execute(
                "INSERT INTO crls (issuer, shard, kind, number, this_update, next_update,
                                   change_seq, entries, size, der)
                 VALUES ('issuing', -1, 'full', 4, 10, 20, 5, 0, 6, x'303132333435')",
                [],
            )
            .expect("legacy row");
        let stored = s
            .stored_crl("issuing", None, false)
            .expect("get")
            .expect("some");
        assert_eq!(
            (stored.info.number, stored.der.as_slice()),
            (4, &b"012345"[..])
        );
        assert!(s
            .put_crl(&NewCrl {
                issuer: "issuing",
                shard: None,
                delta: false,
                number: 5,
                base_number: None,
                this_update: 10,
                next_update: 20,
                change_seq: 6,
                entries: 0,
                der: b"five",
            })
            .expect("replaces the legacy row"));
        let stored = s
            .stored_crl("issuing", None, false)
            .expect("get")
            .expect("some");
        assert_eq!(stored.der, b"five");
    }
}
