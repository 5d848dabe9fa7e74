//! SQLite store: WAL mode with `synchronous=FULL`, versioned migrations, one connection per
//! process guarded by a mutex for writes and most reads (SQLite serialises writers anyway; the
//! hot status paths are served from memory, not from here), and a small pool of read-only
//! connections for the portal's searches, lists and counts (`sqlite/readers.rs`).

use super::*;
use pkid_protocols::revocation::{self, CrlReason};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

mod audit;
mod cmp;
mod credentials;
mod crl;
mod csc;
mod devices;
mod issuers;
mod outbox;
mod portal;
mod ra;
mod ra_schema;
mod readers;

// The RA calls these inside its own transactions: a transition queues its notices, the
// retention erasure empties them (`store::outbox`).
pub(crate) use outbox::{erase_outbox_of, insert_outbox};

/// Migrations, applied in order; the index + 1 is the schema version. Never edit one that has
/// shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: certificates, change sequence, audit log.
    "CREATE TABLE certificates (
        serial          TEXT PRIMARY KEY NOT NULL,
        issuer          TEXT NOT NULL,
        subject         TEXT NOT NULL,
        profile         TEXT NOT NULL,
        not_before      INTEGER NOT NULL,
        not_after       INTEGER NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('pending','valid','revoked','hold')),
        revoked_at      INTEGER,
        reason          INTEGER,
        invalidity_date INTEGER,
        tbs             BLOB NOT NULL,
        der             BLOB,
        replaces        TEXT REFERENCES certificates(serial),
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX certificates_issuer_status ON certificates(issuer, status);
    CREATE INDEX certificates_not_after ON certificates(not_after);
    CREATE TABLE changes (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        serial   TEXT NOT NULL REFERENCES certificates(serial),
        at       INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail  TEXT NOT NULL
    ) STRICT;",
    // TSA: the serial high-water mark (every serial below it may have been handed out) and the
    // record of issued tokens.
    "CREATE TABLE tsa_serial_mark (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        next_serial INTEGER NOT NULL CHECK (next_serial >= 1)
    ) STRICT;
    INSERT INTO tsa_serial_mark (id, next_serial) VALUES (1, 1);
    CREATE TABLE timestamps (
        serial         INTEGER PRIMARY KEY NOT NULL,
        gen_time       INTEGER NOT NULL,
        policy         TEXT NOT NULL,
        hash_algorithm TEXT NOT NULL,
        imprint        BLOB NOT NULL
    ) STRICT;
    CREATE INDEX timestamps_gen_time ON timestamps(gen_time);",
    // 3: CRLs: certificate partitions, CRL numbers, stored CRLs (see sqlite/crl.rs).
    crl::MIGRATION,
    // 4: CRL bodies in files beside the database (see sqlite/crl.rs).
    crl::MIGRATION_FILES,
    // 5: the issuer registry (see sqlite/issuers.rs).
    issuers::MIGRATION,
    // 6: abandoned issuances (docs/decisions.md, "Abandoned issuances are a column").
    MIGRATION_ABANDONED,
    // 7: the registration authority (see sqlite/ra_schema.rs).
    ra_schema::MIGRATION,
    // 8: the audit log's hash chain and the timestamps of its head (see sqlite/audit.rs).
    audit::MIGRATION,
    // 9: covering indexes for the RA's reports, revocation codes (see sqlite/ra_schema.rs).
    ra_schema::REPORT_INDEXES,
    // 10: organisations' EST and CMP credentials (see sqlite/credentials.rs).
    credentials::MIGRATION,
    // 11: certificate status beside the request that issued it (see sqlite/ra_schema.rs).
    ra_schema::CERTIFICATE_STATUS,
    // 12: key devices and their history (see sqlite/devices.rs).
    devices::MIGRATION,
    // 13: CMP transactions (see sqlite/cmp.rs).
    cmp::MIGRATION,
    // 14: remote-signing accounts and credentials (see sqlite/csc.rs).
    csc::MIGRATION,
    // 15: server-generated keys kept in escrow (see sqlite/devices.rs).
    devices::ESCROW_MIGRATION,
    // 16: the portal's certificate search and RA queue indexes (see sqlite/portal.rs).
    portal::MIGRATION,
    // 17: the audit records of one target, for signing histories (see sqlite/audit.rs).
    audit::TARGET_INDEX,
    // 18: operators' last TOTP step (see sqlite/ra_schema.rs).
    ra_schema::OPERATOR_TOTP_STEP,
    // 19: what a recover request of a remote-signing account does (see sqlite/ra_schema.rs).
    ra_schema::REQUEST_RECOVERY,
];

/// Reconciliation closes a pending row whose issuance died by setting `abandoned_at`; `status`
/// stays `'pending'`. SQLite cannot alter the status CHECK without rebuilding the table that
/// `changes` and `replaces` reference, and every query that serves or lists status already
/// excludes `'pending'`, so an abandoned row is excluded by construction. The partial index
/// keeps the reconciliation scan off the large index: it holds only unresolved rows.
const MIGRATION_ABANDONED: &str = "
    ALTER TABLE certificates ADD COLUMN abandoned_at INTEGER;
    CREATE INDEX certificates_unresolved ON certificates(created_at)
        WHERE status = 'pending' AND abandoned_at IS NULL;";

/// The embedded default store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Connections for the portal's heavy reads (searches, lists, counts), beside `conn`.
    readers: readers::Readers,
    /// Where CRL bodies are kept: `crls/` beside the database file.
    crl_dir: std::path::PathBuf,
    /// The WAL sync that [`SqliteStore::write`]'s commits share.
    group: GroupCommit,
}

/// Group commit for [`SqliteStore::write`] (docs/decisions.md, "Writes share their WAL
/// sync"): a write commits with `synchronous=NORMAL` (frames written to the WAL, no sync) and
/// releases the connection, then waits until the WAL is synced past its commit. One writer
/// syncs for every commit made before it started; the others wait for that sync instead of
/// making their own, and reads and the next writes run meanwhile. Nobody is answered before
/// their commit is on disk, as with `synchronous=FULL`.
struct GroupCommit {
    wal: std::path::PathBuf,
    state: Mutex<CommitState>,
    synced: std::sync::Condvar,
}

#[derive(Default)]
struct CommitState {
    /// Commits counted so far, in commit order (counted with the connection locked).
    committed: u64,
    /// Every commit up to this one is on disk.
    synced: u64,
    /// A writer is syncing the WAL now.
    syncing: bool,
    /// A sync failed: what was written since may not be on disk, and a later sync that
    /// succeeds would not say otherwise, so no write is confirmed again in this process.
    failed: Option<String>,
}

impl GroupCommit {
    fn new(db: &Path) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Self {
            wal: wal.into(),
            state: Mutex::default(),
            synced: std::sync::Condvar::new(),
        }
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, CommitState>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Unavailable("commit state lock poisoned".into()))
    }

    /// Refuses to write after a failed sync.
    fn check(&self) -> Result<(), StoreError> {
        match &self.state()?.failed {
            Some(e) => Err(sync_failed(e)),
            None => Ok(()),
        }
    }

    /// Numbers a commit just made; called before the connection is released.
    fn committed(&self) -> Result<u64, StoreError> {
        let mut s = self.state()?;
        s.committed += 1;
        Ok(s.committed)
    }

    /// Returns once commit `n` is on disk, syncing the WAL unless another writer's sync
    /// already covers it.
    fn wait(&self, n: u64) -> Result<(), StoreError> {
        let mut s = self.state()?;
        loop {
            if let Some(e) = &s.failed {
                return Err(sync_failed(e));
            }
            if s.synced >= n {
                return Ok(());
            }
            if s.syncing {
                s = self
                    .synced
                    .wait(s)
                    .map_err(|_| StoreError::Unavailable("commit state lock poisoned".into()))?;
                continue;
            }
            s.syncing = true;
            let target = s.committed;
            drop(s);
            // fdatasync applies to the file, whichever descriptor asks; the WAL exists as long
            // as a connection is open.
            let result = std::fs::File::open(&self.wal).and_then(|f| f.sync_data());
            s = self.state()?;
            s.syncing = false;
            match result {
                Ok(()) => s.synced = s.synced.max(target),
                Err(e) => {
                    tracing::error!(error = %e, "the database's WAL could not be synced");
                    s.failed = Some(e.to_string());
                }
            }
            self.synced.notify_all();
        }
    }
}

fn sync_failed(e: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "the database could not be synced to disk ({e}); check the disk and restart pkid"
    ))
}

/// A TEXT column of a row, borrowed.
pub(crate) fn row_text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str, StoreError> {
    row.get_ref(i)
        .map_err(unavailable)?
        .as_str()
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

const CERT_COLUMNS: &str =
    "serial, issuer, subject, profile, not_before, not_after, status, revoked_at, reason, \
     invalidity_date, tbs, der, replaces, created_at, abandoned_at";

/// The status a row reads as: the stored `status`, except that a pending row with
/// `abandoned_at` set is [`CertStatus::Abandoned`] (see [`MIGRATION_ABANDONED`]).
fn read_status(stored: &str, abandoned_at: Option<u64>) -> CertStatus {
    match (CertStatus::parse(stored), abandoned_at) {
        (Some(CertStatus::Pending), Some(_)) => CertStatus::Abandoned,
        (Some(status), _) => status,
        (None, _) => CertStatus::Pending,
    }
}

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<CertificateRecord> {
    let status: String = row.get(6)?;
    let reason: Option<u8> = row.get(8)?;
    let abandoned_at: Option<u64> = row.get(14)?;
    Ok(CertificateRecord {
        serial: row.get(0)?,
        issuer: row.get(1)?,
        subject: row.get(2)?,
        profile: row.get(3)?,
        not_before: row.get(4)?,
        not_after: row.get(5)?,
        status: read_status(&status, abandoned_at),
        revoked_at: row.get(7)?,
        reason: reason.and_then(revocation::from_code),
        invalidity_date: row.get(9)?,
        tbs: row.get(10)?,
        der: row.get(11)?,
        replaces: row.get(12)?,
        created_at: row.get(13)?,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        conn.busy_timeout(busy_timeout).map_err(unavailable)?;
        // WAL lets the CLI write while the daemon reads; FULL syncs the WAL on every commit, so a
        // committed certificate survives power loss (NORMAL may lose the last commits).
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(unavailable)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "could not enable WAL (journal_mode={mode})"
            )));
        }
        // Reads through a memory map of up to 1 GiB of the file instead of a `pread` copy per
        // page: a year's RA report walked 500,000 index entries and joined 325,000
        // certificates, and a third of its time was the kernel copying pages SQLite's 2 MB cache
        // could not hold (2.45 s → 1.10 s, bench/src/bin/ra.rs). Writes still go through the WAL
        // with `synchronous=FULL`; the map is address space, not memory.
        conn.execute_batch(
            "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA mmap_size=1073741824;",
        )
        .map_err(unavailable)?;
        // Room for every statement the hot paths cache (rusqlite keeps 16 by default).
        conn.set_prepared_statement_cache_capacity(64);
        Self::migrate(&mut conn)?;
        let crl_dir = path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(crl::CRL_DIR);
        Ok(Self {
            conn: Mutex::new(conn),
            readers: readers::Readers::new(path.to_path_buf(), busy_timeout),
            crl_dir,
            group: GroupCommit::new(path),
        })
    }

    fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT;",
        )
        .map_err(unavailable)?;
        let current: u64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
            .map_err(unavailable)?;
        if current as usize > MIGRATIONS.len() {
            return Err(StoreError::Unavailable(format!(
                "database schema version {current} is newer than this pkid ({}); upgrade pkid",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql).map_err(unavailable)?;
            if *sql == audit::MIGRATION {
                // The rows written before the chain existed are chained once, here.
                audit::chain_existing(&tx).map_err(unavailable)?;
            }
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [i as u64 + 1],
            )
            .map_err(unavailable)?;
            tracing::info!(version = i + 1, "applied store migration");
        }
        tx.commit().map_err(unavailable)
    }

    /// A read connection of the pool: for reads that need no snapshot shared with a write
    /// and are long or many (a search over a million certificates, a list, per-state counts).
    fn read(&self) -> Result<readers::Reader<'_>, StoreError> {
        self.readers.get()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Unavailable("store lock poisoned".into()))
    }

    /// Runs `read` in one read transaction (given the change-sequence position that transaction
    /// sees) and returns that position, so the rows read and the position come from one snapshot: a follower
    /// continuing from the position misses nothing.
    fn consistent_read(
        &self,
        read: impl FnOnce(&rusqlite::Transaction<'_>, u64) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(unavailable)?;
        let seq: u64 = tx
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
                r.get(0)
            })
            .map_err(unavailable)?;
        read(&tx, seq)?;
        tx.commit().map_err(unavailable)?;
        Ok(seq)
    }

    /// Runs `write` in one IMMEDIATE transaction (the write lock taken first, so a read inside
    /// it cannot go stale before the write) and commits it if `write` succeeds.
    fn write<T>(
        &self,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (value, n) = {
            let mut conn = self.lock()?;
            self.group.check()?;
            // This commit only writes the WAL; the sync below makes it durable. Every other
            // commit on this connection stays `synchronous=FULL`.
            conn.execute_batch("PRAGMA synchronous=NORMAL")
                .map_err(unavailable)?;
            let done = Self::commit_unsynced(&mut conn, write);
            conn.execute_batch("PRAGMA synchronous=FULL")
                .map_err(unavailable)?;
            let value = done?;
            (value, self.group.committed()?)
        };
        self.group.wait(n)?;
        Ok(value)
    }

    fn commit_unsynced<T>(
        conn: &mut Connection,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        let value = write(&tx)?;
        tx.commit().map_err(unavailable)?;
        Ok(value)
    }

    /// The schema version in force.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        self.lock()?
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .map_err(unavailable)
    }
}

/// Appends an audit record inside the caller's write transaction, chained to the last one
/// (see `sqlite/audit.rs`).
pub(super) fn insert_audit(conn: &Connection, e: &AuditEntry) -> rusqlite::Result<usize> {
    audit::insert(conn, e)
}

/// The `status` column value of a status ([`CertStatus::Abandoned`] is stored as pending).
fn stored_status(status: CertStatus) -> &'static str {
    match status {
        CertStatus::Abandoned => CertStatus::Pending.as_str(),
        other => other.as_str(),
    }
}

impl Certificates for SqliteStore {
    fn reserve(&self, c: &NewCertificate) -> Result<(), StoreError> {
        self.write(|tx| {
            let r = tx.execute(
                "INSERT INTO certificates (serial, issuer, subject, profile, not_before, not_after, status, tbs, replaces,
                                           created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9, ?9)",
                params![c.serial, c.issuer, c.subject, c.profile, c.not_before, c.not_after, c.tbs, c.replaces, c.created_at],
            );
            match r {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                {
                    Err(StoreError::DuplicateSerial(c.serial.clone()))
                }
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn complete(&self, serial: &str, der: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| complete_in(tx, serial, der))
    }

    fn stale_pending(
        &self,
        created_before: u64,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates
                 WHERE status = 'pending' AND abandoned_at IS NULL AND created_at < ?1
                 ORDER BY created_at, rowid LIMIT ?2"
            ))
            .map_err(unavailable)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let created_before = i64::try_from(created_before).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![created_before, limit], record)
            .map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }

    fn complete_recovered(
        &self,
        serial: &str,
        der: &[u8],
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            complete_in(tx, serial, der)?;
            insert_audit(tx, audit).map(|_| ()).map_err(unavailable)
        })
    }

    fn abandon(&self, serial: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE certificates SET abandoned_at = ?2, updated_at = ?2
                     WHERE serial = ?1 AND status = 'pending' AND abandoned_at IS NULL",
                    params![serial, audit.at],
                )
                .map_err(unavailable)?;
            if n != 1 {
                return Err(current_conflict(tx, serial, "abandon"));
            }
            insert_audit(tx, audit).map(|_| ()).map_err(unavailable)
        })
    }

    fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        self.lock()?
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE serial = ?1"
            ))
            .and_then(|mut s| s.query_row([serial], record).optional())
            .map_err(unavailable)
    }

    fn search(
        &self,
        query: &CertificateQuery,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<SearchHit>, StoreError> {
        portal::search(&*self.read()?, query, before, limit)
    }

    fn list(&self, f: &ListFilter) -> Result<Vec<CertificateRecord>, StoreError> {
        let conn = self.lock()?;
        // The subject filter is applied here, not in SQL: SQLite's lower() folds ASCII only, so
        // "ÁNH" would not find "Ánh". Rows stream through the filter and stop at the limit.
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates
                 WHERE (?1 IS NULL OR status = ?1)
                   AND (?2 IS NULL OR issuer = ?2)
                   AND (?3 IS NULL OR (abandoned_at IS NOT NULL) = ?3)
                 ORDER BY created_at DESC, rowid DESC"
            ))
            .map_err(unavailable)?;
        let limit = if f.limit == 0 { usize::MAX } else { f.limit };
        let needle = f.subject_contains.as_deref().map(str::to_lowercase);
        let rows = stmt
            .query_map(
                params![
                    f.status.map(stored_status),
                    f.issuer,
                    f.status.and_then(|s| match s {
                        CertStatus::Pending => Some(false),
                        CertStatus::Abandoned => Some(true),
                        _ => None,
                    })
                ],
                record,
            )
            .map_err(unavailable)?;
        rows.filter(|r| match (r, &needle) {
            (Ok(rec), Some(n)) => rec.subject.to_lowercase().contains(n.as_str()),
            _ => true,
        })
        .take(limit)
        .collect::<Result<_, _>>()
        .map_err(unavailable)
    }

    fn change_status(
        &self,
        serial: &str,
        change: StatusChange,
        audit: &AuditEntry,
    ) -> Result<CertificateRecord, StoreError> {
        self.write(|tx| apply_status_change(tx, serial, change, audit))
    }

    fn complete_superseding(
        &self,
        serial: &str,
        der: &[u8],
        predecessor: &str,
        change: StatusChange,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            complete_in(tx, serial, der)?;
            // Any refusal here (the predecessor was revoked meanwhile) drops the transaction,
            // so the successor stays pending: both commit, or neither does.
            apply_status_change(tx, predecessor, change, audit).map(|_| ())
        })
    }
}

/// The columns of a [`Change`], read with [`change`].
const CHANGE_COLUMNS: &str =
    "ch.seq, c.serial, c.issuer, c.status, c.revoked_at, c.reason, c.not_after";

fn change(r: &rusqlite::Row<'_>) -> rusqlite::Result<Change> {
    let status: String = r.get(3)?;
    let reason: Option<u8> = r.get(5)?;
    Ok(Change {
        seq: r.get(0)?,
        serial: r.get(1)?,
        issuer: r.get(2)?,
        status: CertStatus::parse(&status).unwrap_or(CertStatus::Pending),
        revoked_at: r.get(4)?,
        reason: reason.and_then(revocation::from_code),
        not_after: r.get(6)?,
    })
}

/// SQLite has one writer at a time and takes a sequence value (`AUTOINCREMENT`) inside the
/// write transaction, so sequence order is commit order here, a rolled-back transaction hands
/// its value to the next one, and the highest committed value is always a settled position.
impl StatusFeed for SqliteStore {
    fn changes_since(&self, seq: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {CHANGE_COLUMNS}
                 FROM changes ch JOIN certificates c ON c.serial = ch.serial
                 WHERE ch.seq > ?1 ORDER BY ch.seq LIMIT ?2"
            ))
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![seq, limit as i64], change)
            .map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }

    fn changes_at(&self, seqs: &[u64]) -> Result<Vec<Change>, StoreError> {
        let mut sorted = seqs.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut conn = self.lock()?;
        // One read transaction: every value is looked up in the same snapshot.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(unavailable)?;
        let mut found = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {CHANGE_COLUMNS}
                     FROM changes ch JOIN certificates c ON c.serial = ch.serial
                     WHERE ch.seq = ?1"
                ))
                .map_err(unavailable)?;
            for seq in sorted {
                let Ok(key) = i64::try_from(seq) else {
                    continue; // beyond SQLite's integers: never taken
                };
                if let Some(c) = stmt
                    .query_row([key], change)
                    .optional()
                    .map_err(unavailable)?
                {
                    found.push(c);
                }
            }
        }
        tx.commit().map_err(unavailable)?;
        Ok(found)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.lock()?
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(unavailable)
    }

    fn scan_statuses(&self, visit: &mut dyn FnMut(StatusRow<'_>)) -> Result<u64, StoreError> {
        self.consistent_read(|tx, _| {
            let mut stmt = tx
                .prepare("SELECT issuer, serial, status, revoked_at, reason FROM certificates WHERE status != 'pending'")
                .map_err(unavailable)?;
            let mut rows = stmt.query([]).map_err(unavailable)?;
            while let Some(row) = rows.next().map_err(unavailable)? {
                let (issuer, serial, status) = (row_text(row, 0)?, row_text(row, 1)?, row_text(row, 2)?);
                let revoked_at: Option<u64> = row.get(3).map_err(unavailable)?;
                let reason: Option<u8> = row.get(4).map_err(unavailable)?;
                visit(StatusRow {
                    issuer,
                    serial,
                    status: CertStatus::parse(status).unwrap_or(CertStatus::Pending),
                    revoked_at,
                    reason: reason.and_then(revocation::from_code),
                });
            }
            Ok(())
        })
    }
}

impl TimestampLog for SqliteStore {
    fn reserve_timestamp_serials(&self, count: u64) -> Result<std::ops::Range<u64>, StoreError> {
        let count = i64::try_from(count)
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| StoreError::Unavailable("serial block size out of range".into()))?;
        let mut conn = self.lock()?;
        // IMMEDIATE takes the write lock first, so two processes cannot read the same mark.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        let start: i64 = tx
            .query_row(
                "SELECT next_serial FROM tsa_serial_mark WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .map_err(unavailable)?;
        let end = start
            .checked_add(count)
            .ok_or_else(|| StoreError::Unavailable("timestamp serial numbers exhausted".into()))?;
        tx.execute(
            "UPDATE tsa_serial_mark SET next_serial = ?1 WHERE id = 1",
            [end],
        )
        .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(start as u64..end as u64)
    }

    fn record_timestamps(&self, records: &[TimestampRecord]) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO timestamps (serial, gen_time, policy, hash_algorithm, imprint) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(unavailable)?;
            for r in records {
                let serial = i64::try_from(r.serial).map_err(|_| {
                    StoreError::Unavailable(format!("timestamp serial {} out of range", r.serial))
                })?;
                match stmt.execute(params![
                    serial,
                    r.gen_time,
                    r.policy,
                    r.hash_algorithm,
                    r.imprint
                ]) {
                    Ok(_) => {}
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                    {
                        return Err(StoreError::DuplicateSerial(r.serial.to_string()))
                    }
                    Err(e) => return Err(unavailable(e)),
                }
            }
        }
        tx.commit().map_err(unavailable)
    }

    fn timestamp(&self, serial: u64) -> Result<Option<TimestampRecord>, StoreError> {
        let Ok(key) = i64::try_from(serial) else {
            return Ok(None);
        };
        self.lock()?
            .query_row("SELECT serial, gen_time, policy, hash_algorithm, imprint FROM timestamps WHERE serial = ?1", [key], |r| {
                Ok(TimestampRecord { serial: r.get(0)?, gen_time: r.get(1)?, policy: r.get(2)?, hash_algorithm: r.get(3)?, imprint: r.get(4)? })
            })
            .optional()
            .map_err(unavailable)
    }
}

/// pending → valid with the signed DER, and its change-sequence row, inside `tx`.
pub(super) fn complete_in(
    tx: &rusqlite::Transaction<'_>,
    serial: &str,
    der: &[u8],
) -> Result<(), StoreError> {
    let n = tx
        .execute("UPDATE certificates SET der = ?2, status = 'valid' WHERE serial = ?1 AND status = 'pending' AND abandoned_at IS NULL", params![serial, der])
        .map_err(unavailable)?;
    if n != 1 {
        return Err(current_conflict(tx, serial, "complete"));
    }
    tx.execute("INSERT INTO changes (serial, at) SELECT serial, updated_at FROM certificates WHERE serial = ?1", [serial])
        .map_err(unavailable)?;
    Ok(())
}

/// Why `action` did not apply to `serial`: it does not exist, or its current status (as read
/// inside `tx`) does not allow it.
fn current_conflict(
    tx: &rusqlite::Transaction<'_>,
    serial: &str,
    action: &'static str,
) -> StoreError {
    match current_status(tx, serial) {
        Ok(Some(status)) => StoreError::Conflict {
            serial: serial.to_string(),
            status: status.as_str(),
            action,
        },
        Ok(None) => StoreError::NotFound(serial.to_string()),
        Err(e) => e,
    }
}

/// The status `serial` reads as inside `tx`, if it exists.
fn current_status(
    tx: &rusqlite::Transaction<'_>,
    serial: &str,
) -> Result<Option<CertStatus>, StoreError> {
    tx.query_row(
        "SELECT status, abandoned_at FROM certificates WHERE serial = ?1",
        [serial],
        |r| Ok(read_status(&r.get::<_, String>(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(unavailable)
}

/// Applies a status transition inside `tx` (checked against the current status there), with
/// its change-sequence row and audit entry, and returns the record after it.
fn apply_status_change(
    tx: &rusqlite::Transaction<'_>,
    serial: &str,
    change: StatusChange,
    audit: &AuditEntry,
) -> Result<CertificateRecord, StoreError> {
    let status =
        current_status(tx, serial)?.ok_or_else(|| StoreError::NotFound(serial.to_string()))?;
    let (allowed, action): (&[CertStatus], &'static str) = match change {
        StatusChange::Revoke { .. } => (&[CertStatus::Valid, CertStatus::Hold], "revoke"),
        StatusChange::Hold { .. } => (&[CertStatus::Valid], "hold"),
        StatusChange::Release => (&[CertStatus::Hold], "release"),
    };
    if !allowed.contains(&status) {
        return Err(StoreError::Conflict {
            serial: serial.to_string(),
            status: status.as_str(),
            action,
        });
    }
    let now = audit.at;
    match change {
            StatusChange::Revoke { reason, at, invalidity_date } => tx.execute(
                "UPDATE certificates SET status = 'revoked', revoked_at = ?2, reason = ?3, invalidity_date = ?4, updated_at = ?5
                 WHERE serial = ?1",
                params![serial, at, revocation::code(reason), invalidity_date, now],
            ),
            StatusChange::Hold { at } => tx.execute(
                "UPDATE certificates SET status = 'hold', revoked_at = ?2, reason = ?3, invalidity_date = NULL, updated_at = ?4
                 WHERE serial = ?1",
                params![serial, at, revocation::code(CrlReason::CertificateHold), now],
            ),
            StatusChange::Release => tx.execute(
                "UPDATE certificates SET status = 'valid', revoked_at = NULL, reason = NULL, invalidity_date = NULL,
                 updated_at = ?2 WHERE serial = ?1",
                params![serial, now],
            ),
        }
        .map_err(unavailable)?;
    tx.execute(
        "INSERT INTO changes (serial, at) VALUES (?1, ?2)",
        params![serial, now],
    )
    .map_err(unavailable)?;
    insert_audit(tx, audit).map_err(unavailable)?;
    let rec = tx
        .query_row(
            &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = ?1"),
            [serial],
            record,
        )
        .map_err(unavailable)?;
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a fresh temporary directory (also used by the `crl` submodule's tests).
    pub(super) fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tmp");
        let s = SqliteStore::open(&dir.path().join("t.db"), Duration::from_secs(1)).expect("open");
        (dir, s)
    }

    fn new(serial: &str) -> NewCertificate {
        NewCertificate {
            serial: serial.into(),
            issuer: "issuing".into(),
            subject: "CN=Nguyễn Văn A".into(),
            profile: "person".into(),
            not_before: 100,
            not_after: 200,
            tbs: vec![1, 2, 3],
            replaces: None,
            created_at: 100,
        }
    }

    fn audit(action: &str) -> AuditEntry {
        AuditEntry {
            at: 150,
            actor: "op".into(),
            action: action.into(),
            target: "x".into(),
            outcome: Outcome::Success,
            detail: String::new(),
        }
    }

    #[test]
    fn after_a_failed_sync_no_write_is_confirmed() {
        let (_d, mut s) = store();
        s.reserve(&new("0a")).expect("reserve");
        // The WAL cannot be opened: the sync fails, so the write is not confirmed.
        s.group.wal = "/nonexistent/t.db-wal".into();
        let err = s.reserve(&new("0b")).expect_err("unsynced");
        assert!(err.to_string().contains("could not be synced"), "{err}");
        // A later sync would succeed, but what came before it may not be on disk: refused
        // before anything is written.
        s.group.wal = _d.path().join("t.db-wal");
        assert!(s.reserve(&new("0c")).is_err());
        assert!(s.certificate("0c").expect("read").is_none());
        assert!(s.certificate("0a").expect("read").is_some());
    }

    #[test]
    fn concurrent_writes_are_all_durable_and_visible() {
        let (_d, s) = store();
        std::thread::scope(|t| {
            for w in 0..4 {
                let s = &s;
                t.spawn(move || {
                    for i in 0..25 {
                        s.reserve(&new(&format!("{w:02x}{i:02x}")))
                            .expect("reserve");
                    }
                });
            }
        });
        let state = s.group.state().expect("state");
        assert_eq!(state.committed, 100);
        assert_eq!(
            state.synced, state.committed,
            "every commit synced before returning"
        );
        drop(state);
        for w in 0..4 {
            for i in 0..25 {
                assert!(s
                    .certificate(&format!("{w:02x}{i:02x}"))
                    .expect("read")
                    .is_some());
            }
        }
    }

    #[test]
    fn reserve_complete_and_duplicate_serials() {
        let (_d, s) = store();
        s.reserve(&new("0a")).expect("reserve");
        assert!(matches!(
            s.reserve(&new("0a")),
            Err(StoreError::DuplicateSerial(_))
        ));
        assert_eq!(
            s.certificate("0a").expect("get").expect("some").status,
            CertStatus::Pending
        );
        assert!(
            s.changes_since(0, 10).expect("changes").is_empty(),
            "pending is not announced"
        );
        s.complete("0a", &[9, 9]).expect("complete");
        let rec = s.certificate("0a").expect("get").expect("some");
        assert_eq!(
            (rec.status, rec.der.as_deref()),
            (CertStatus::Valid, Some(&[9u8, 9][..]))
        );
        assert!(s.complete("0a", &[9]).is_err(), "complete only once");
        assert_eq!(s.changes_since(0, 10).expect("changes").len(), 1);
        assert_eq!(s.schema_version().expect("v"), MIGRATIONS.len() as u64);
    }

    /// A database at `path` as a release with only the first `applied` migrations left it
    /// (also used by the `audit` submodule's tests).
    pub(super) fn database_before(path: &Path, applied: usize) -> Connection {
        let conn = Connection::open(path).expect("open");
        conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT;")
            .expect("version table");
        for (i, sql) in MIGRATIONS[..applied].iter().enumerate() {
            conn.execute_batch(sql).expect("old migration");
            conn.execute("INSERT INTO schema_version (version) VALUES (?1)", [i + 1])
                .expect("version");
        }
        conn
    }

    #[test]
    fn a_database_of_the_previous_schema_migrates_and_abandons_what_was_pending() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("old.db");
        {
            // The schema as the previous release left it, with rows in it.
            let conn = database_before(&path, MIGRATIONS.len() - 1);
            for (serial, status) in [("01", "pending"), ("02", "valid"), ("03", "revoked")] {
                conn.execute(
                    "INSERT INTO certificates (serial, issuer, subject, profile, not_before, not_after,
                         status, revoked_at, reason, tbs, der, created_at, updated_at)
                     VALUES (?1, 'issuing', 'CN=a', 'person', 100, 200, ?2,
                         CASE ?2 WHEN 'revoked' THEN 150 END, CASE ?2 WHEN 'revoked' THEN 1 END,
                         x'01', CASE ?2 WHEN 'pending' THEN NULL ELSE x'02' END, 100, 100)",
                    params![serial, status],
                )
                .expect("row");
                if status != "pending" {
                    conn.execute(
                        "INSERT INTO changes (serial, at) VALUES (?1, 100)",
                        [serial],
                    )
                    .expect("change");
                }
            }
        }
        let s = SqliteStore::open(&path, Duration::from_secs(1)).expect("migrate");
        assert_eq!(s.schema_version().expect("v"), MIGRATIONS.len() as u64);
        let stale = s.stale_pending(101, 10).expect("stale");
        assert_eq!(
            stale.iter().map(|r| r.serial.as_str()).collect::<Vec<_>>(),
            ["01"]
        );
        assert!(
            s.stale_pending(100, 10).expect("bound").is_empty(),
            "strictly older"
        );

        s.abandon("01", &audit("cert.reconcile")).expect("abandon");
        let rec = s.certificate("01").expect("get").expect("kept");
        assert_eq!((rec.status, rec.der), (CertStatus::Abandoned, None));
        assert!(s.stale_pending(u64::MAX, 10).expect("stale").is_empty());
        assert!(matches!(
            s.abandon("01", &audit("cert.reconcile")),
            Err(StoreError::Conflict {
                status: "abandoned",
                ..
            })
        ));
        assert!(
            matches!(
                s.complete("01", &[9]),
                Err(StoreError::Conflict {
                    status: "abandoned",
                    ..
                })
            ),
            "an abandoned serial is never completed"
        );
        assert!(matches!(
            s.reserve(&new("01")),
            Err(StoreError::DuplicateSerial(_))
        ));
        assert_eq!(s.audit_log(10).expect("audit").len(), 1, "audited once");
        // The status scan (what the index loads) and the feed know nothing of it.
        let mut scanned = Vec::new();
        s.scan_statuses(&mut |r| scanned.push((r.serial.to_string(), r.status)))
            .expect("scan");
        scanned.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            scanned,
            [
                ("02".to_string(), CertStatus::Valid),
                ("03".to_string(), CertStatus::Revoked)
            ]
        );
        assert!(s
            .changes_since(0, 10)
            .expect("feed")
            .iter()
            .all(|c| c.serial != "01"));
        let only = |status| ListFilter {
            status: Some(status),
            ..Default::default()
        };
        let serials = |f: ListFilter| -> Vec<String> {
            s.list(&f)
                .expect("list")
                .into_iter()
                .map(|r| r.serial)
                .collect()
        };
        assert_eq!(serials(only(CertStatus::Abandoned)), ["01"]);
        assert!(serials(only(CertStatus::Pending)).is_empty());
        assert_eq!(serials(only(CertStatus::Revoked)), ["03"]);
    }

    #[test]
    fn a_recovered_completion_commits_with_its_audit_record() {
        let (_d, s) = store();
        s.reserve(&new("0d")).expect("reserve");
        s.complete_recovered("0d", &[7], &audit("cert.reconcile"))
            .expect("complete");
        let rec = s.certificate("0d").expect("get").expect("row");
        assert_eq!(
            (rec.status, rec.der.as_deref()),
            (CertStatus::Valid, Some(&[7u8][..]))
        );
        assert_eq!(s.changes_since(0, 10).expect("feed").len(), 1, "announced");
        assert_eq!(s.audit_log(10).expect("audit").len(), 1);
        assert!(s.complete_recovered("0d", &[7], &audit("again")).is_err());
        assert_eq!(
            s.audit_log(10).expect("audit").len(),
            1,
            "no record for a refusal"
        );
    }

    #[test]
    fn status_transitions_are_checked_and_sequenced() {
        let (_d, s) = store();
        s.reserve(&new("0b")).expect("reserve");
        s.complete("0b", &[1]).expect("complete");
        assert!(matches!(
            s.change_status("0b", StatusChange::Release, &audit("r")),
            Err(StoreError::Conflict { .. })
        ));
        let held = s
            .change_status("0b", StatusChange::Hold { at: 150 }, &audit("h"))
            .expect("hold");
        assert_eq!(
            (held.status, held.reason),
            (CertStatus::Hold, Some(CrlReason::CertificateHold))
        );
        let rel = s
            .change_status("0b", StatusChange::Release, &audit("rel"))
            .expect("release");
        assert_eq!(
            (rel.status, rel.reason, rel.revoked_at),
            (CertStatus::Valid, None, None)
        );
        let rev = s
            .change_status(
                "0b",
                StatusChange::Revoke {
                    reason: CrlReason::KeyCompromise,
                    at: 160,
                    invalidity_date: Some(120),
                },
                &audit("rev"),
            )
            .expect("revoke");
        assert_eq!(
            (rev.status, rev.reason, rev.invalidity_date),
            (
                CertStatus::Revoked,
                Some(CrlReason::KeyCompromise),
                Some(120)
            )
        );
        assert!(matches!(
            s.change_status(
                "0b",
                StatusChange::Revoke {
                    reason: CrlReason::Unspecified,
                    at: 1,
                    invalidity_date: None
                },
                &audit("x")
            ),
            Err(StoreError::Conflict {
                status: "revoked",
                ..
            })
        ));
        let seqs: Vec<u64> = s
            .changes_since(0, 100)
            .expect("changes")
            .iter()
            .map(|c| c.seq)
            .collect();
        assert_eq!(seqs.len(), 4);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s.changes_since(seqs[2], 100).expect("tail").len(), 1);
        assert_eq!(s.audit_log(10).expect("audit").len(), 3);
        assert!(matches!(
            s.change_status("ff", StatusChange::Release, &audit("x")),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn a_superseding_successor_and_the_end_of_its_predecessor_commit_together() {
        let (_d, s) = store();
        let revoke = StatusChange::Revoke {
            reason: CrlReason::Superseded,
            at: 150,
            invalidity_date: None,
        };
        s.reserve(&new("01")).expect("reserve");
        s.complete("01", &[1]).expect("complete");
        s.reserve(&new("02")).expect("reserve successor");
        s.complete_superseding("02", &[2], "01", revoke, &audit("cert.revoke"))
            .expect("both");
        let (old, successor) = (
            s.certificate("01").expect("get").expect("old"),
            s.certificate("02").expect("get").expect("successor"),
        );
        assert_eq!(
            (old.status, old.reason, successor.status),
            (
                CertStatus::Revoked,
                Some(CrlReason::Superseded),
                CertStatus::Valid
            )
        );
        let before = s.changes_since(0, 100).expect("changes").len();
        let audits = s.audit_log(100).expect("audit").len();

        // The predecessor is already revoked (say, by another operator meanwhile): the
        // successor is not completed either, and nothing is announced or audited.
        s.reserve(&new("03")).expect("reserve third");
        assert!(matches!(
            s.complete_superseding("03", &[3], "01", revoke, &audit("cert.revoke")),
            Err(StoreError::Conflict {
                status: "revoked",
                ..
            })
        ));
        let third = s.certificate("03").expect("get").expect("third");
        assert_eq!((third.status, third.der), (CertStatus::Pending, None));
        assert_eq!(s.changes_since(0, 100).expect("changes").len(), before);
        assert_eq!(s.audit_log(100).expect("audit").len(), audits);
    }

    #[test]
    fn timestamp_serial_blocks_never_overlap_across_connections_and_reopen() {
        let (d, s) = store();
        let a = s.reserve_timestamp_serials(10).expect("first");
        assert_eq!(a, 1..11);
        let other =
            SqliteStore::open(&d.path().join("t.db"), Duration::from_secs(1)).expect("second");
        let b = other.reserve_timestamp_serials(5).expect("other process");
        assert_eq!(b, 11..16);
        drop((s, other));
        let reopened =
            SqliteStore::open(&d.path().join("t.db"), Duration::from_secs(1)).expect("reopen");
        assert_eq!(
            reopened
                .reserve_timestamp_serials(1)
                .expect("after restart"),
            16..17
        );
        assert!(reopened.reserve_timestamp_serials(0).is_err());
    }

    #[test]
    fn timestamp_records_are_written_in_one_batch_and_duplicates_refused() {
        let (_d, s) = store();
        let rec = |serial| TimestampRecord {
            serial,
            gen_time: 100,
            policy: "1.2.3".into(),
            hash_algorithm: "sha256".into(),
            imprint: vec![7; 32],
        };
        s.record_timestamps(&[rec(1), rec(2)]).expect("batch");
        assert_eq!(s.timestamp(2).expect("get"), Some(rec(2)));
        assert_eq!(s.timestamp(3).expect("get"), None);
        assert!(matches!(
            s.record_timestamps(&[rec(3), rec(1)]),
            Err(StoreError::DuplicateSerial(_))
        ));
        assert_eq!(
            s.timestamp(3).expect("get"),
            None,
            "the failed batch is rolled back whole"
        );
    }

    #[test]
    fn a_second_connection_sees_commits_and_list_filters() {
        let (d, s) = store();
        let other =
            SqliteStore::open(&d.path().join("t.db"), Duration::from_secs(1)).expect("second");
        s.reserve(&new("0c")).expect("reserve");
        s.complete("0c", &[1]).expect("complete");
        let f = ListFilter {
            status: Some(CertStatus::Valid),
            subject_contains: Some("văn".into()),
            ..Default::default()
        };
        assert_eq!(other.list(&f).expect("list").len(), 1);
        let f = ListFilter {
            status: Some(CertStatus::Revoked),
            ..Default::default()
        };
        assert!(other.list(&f).expect("list").is_empty());
        // Case-insensitive beyond ASCII: Vietnamese capitals find their lower-case forms.
        for needle in ["VĂN", "NGUYỄN VĂN", "nguyễn"] {
            let f = ListFilter {
                subject_contains: Some(needle.into()),
                ..Default::default()
            };
            assert_eq!(other.list(&f).expect("list").len(), 1, "{needle}");
        }
        let f = ListFilter {
            subject_contains: Some("Trần".into()),
            ..Default::default()
        };
        assert!(other.list(&f).expect("list").is_empty());
    }

    #[test]
    fn the_feed_commits_in_sequence_order_without_gaps_and_reads_the_current_state() {
        let (d, s) = store();
        // Another process (the CLI) writing the same file.
        let other =
            SqliteStore::open(&d.path().join("t.db"), Duration::from_secs(1)).expect("second");
        s.reserve(&new("01")).expect("reserve");
        s.complete("01", &[1]).expect("complete"); // 1
        {
            // A write transaction that took a sequence value, then rolled back.
            let mut conn = other.lock().expect("lock");
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .expect("begin");
            tx.execute("INSERT INTO changes (serial, at) VALUES ('01', 0)", [])
                .expect("insert");
        }
        other.reserve(&new("02")).expect("reserve");
        other.complete("02", &[2]).expect("complete"); // 2: the rolled-back value, reused
        s.change_status("01", StatusChange::Hold { at: 150 }, &audit("h"))
            .expect("hold"); // 3
        assert_eq!(
            s.scan_statuses(&mut |_| {}).expect("scan"),
            3,
            "settled: the highest committed value"
        );

        let mut cursor = cursor::FeedCursor::new(&cursor::FeedPosition::settled(0), 0, 10);
        let read = s.changes_since(cursor.after(), 100).expect("read");
        let delivered = cursor.accept(read, 0).deliver;
        assert_eq!(
            delivered.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(cursor.gaps().is_empty(), "no value skipped");

        // Re-reading by value: committed values only, each once, ascending, with the
        // certificate's state as of this read (01's issuance now reads as held).
        let again = other.changes_at(&[3, 9, 1, 3]).expect("at");
        assert_eq!(again.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(
            (again[0].serial.as_str(), again[0].status),
            ("01", CertStatus::Hold)
        );
        assert!(other.changes_at(&[]).expect("none").is_empty());
    }
}
