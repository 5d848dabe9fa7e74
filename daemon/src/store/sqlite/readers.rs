//! Read connections beside the writer's: the portal's searches and lists run at once instead
//! of queueing behind the one connection every write and read used to share.
//!
//! ```text
//! read call ─▶ readers.get(): an idle connection, or a new one while fewer than MAX are open,
//!              or wait for one to come back ─▶ its own read transaction (WAL: readers do not
//!              block the writer or each other, and see every commit made before they start)
//!           ─▶ dropped: back to the idle list
//! ```
//!
//! Each connection is `query_only` (a write through it fails instead of bypassing the group
//! commit), memory-maps the file like the writer's and keeps its own statement cache.
//! Measured with `bench/src/bin/portal.rs` (docs/portal.md, "Performance").

use super::unavailable;
use crate::store::StoreError;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Read connections open at most: enough to keep every core busy with reads while a write
/// runs, few enough that their page caches stay small.
const MAX: usize = 4;

/// The pool.
pub(super) struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    state: Mutex<State>,
    returned: Condvar,
}

struct State {
    idle: Vec<Connection>,
    open: usize,
}

/// One read connection, back in the pool when dropped.
pub(super) struct Reader<'a> {
    pool: &'a Readers,
    conn: Option<Connection>,
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a reader holds its connection until dropped")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut s = self.pool.lock();
            s.idle.push(conn);
            drop(s);
            self.pool.returned.notify_one();
        }
    }
}

impl Readers {
    /// The pool of the database at `path` (connections are opened when first needed).
    pub(super) fn new(path: PathBuf, busy_timeout: Duration) -> Self {
        Self {
            path,
            busy_timeout,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read connection: an idle one, a new one, or the next one returned.
    pub(super) fn get(&self) -> Result<Reader<'_>, StoreError> {
        let mut s = self.lock();
        loop {
            if let Some(conn) = s.idle.pop() {
                return Ok(Reader {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if s.open < MAX {
                s.open += 1;
                drop(s);
                return match self.open() {
                    Ok(conn) => Ok(Reader {
                        pool: self,
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            s = self
                .returned
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open(&self.path).map_err(unavailable)?;
        conn.busy_timeout(self.busy_timeout).map_err(unavailable)?;
        conn.execute_batch(
            "PRAGMA query_only=ON; PRAGMA foreign_keys=ON; PRAGMA mmap_size=1073741824;",
        )
        .map_err(unavailable)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::tests::store;
    use crate::store::{CertificateQuery, Certificates};
    use std::time::{Duration, Instant};

    #[test]
    fn a_search_runs_while_the_writers_connection_is_held_and_readers_cannot_write() {
        let (_dir, s) = store();
        s.lock()
            .expect("lock")
            .execute(
                "INSERT INTO certificates (serial, issuer, subject, profile, not_before,
                     not_after, status, tbs, der, created_at, updated_at)
                 VALUES ('0b', 'issuing', 'CN=Trần Thị Bích', 'person', 1, 2, 'valid',
                     x'00', x'00', 1, 1)",
                [],
            )
            .expect("insert");
        // The writer's connection held (a long write), a search from another thread still
        // answers, and sees what was committed before it.
        let mut writer = Some(s.lock().expect("lock"));
        let (finished, hits) = std::thread::scope(|t| {
            let search = t.spawn(|| {
                s.search(&CertificateQuery::Words(vec!["bích".into()]), None, 10)
                    .expect("search")
            });
            let deadline = Instant::now() + Duration::from_secs(5);
            while !search.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let finished = search.is_finished();
            writer.take();
            (finished, search.join().expect("thread"))
        });
        assert!(finished, "the search waited for the writer's connection");
        assert_eq!(hits.len(), 1);
        // Pool connections are read-only: a write through one fails.
        let reader = s.read().expect("reader");
        assert!(reader.execute("DELETE FROM certificates", []).is_err());
        drop(reader);
        assert_eq!(
            s.search(&CertificateQuery::Words(vec!["bích".into()]), None, 10)
                .expect("search")
                .len(),
            1
        );
    }

    #[test]
    fn more_readers_than_the_pool_holds_wait_for_one_to_come_back() {
        let (_dir, s) = store();
        let held: Vec<_> = (0..super::MAX).map(|_| s.read().expect("reader")).collect();
        std::thread::scope(|t| {
            let waiting = t.spawn(|| s.read().map(|r| r.is_autocommit()).expect("reader"));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!waiting.is_finished(), "a fifth reader waits");
            drop(held);
            assert!(waiting.join().expect("thread"));
        });
        assert!(s.readers.lock().open <= super::MAX);
    }
}
