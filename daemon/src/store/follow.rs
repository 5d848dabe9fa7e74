//! The change follower: polls a [`StatusFeed`] through a [`FeedCursor`] and hands every
//! committed change to the daemon's [`ChangeListener`]s (the revocation index, the OCSP
//! response cache, CRL regeneration), so that a change made by the CLI, another process or
//! another node reaches this one within a poll interval.
//!
//! ```text
//! StatusFeed ──changes_since(high) + changes_at(gaps)──▶ FeedCursor ──new, once, ascending──▶ listeners
//!                                                           └─ gaps given up after the gap timeout
//! ```
//!
//! It needs nothing of the HTTP side: the feed, the listeners, a clock, the gauge to report its
//! position on, the poll interval and a stop signal are its arguments.

use super::cursor::{FeedCursor, FeedPosition};
use super::{Change, StatusFeed, StoreError};
use crate::clock::Clock;
use prometheus::IntGauge;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Changes read from the feed per poll (bounds memory when a large batch lands at once).
pub const FOLLOW_BATCH: usize = 10_000;

/// Something that wants every store change the daemon sees (the revocation index, caches).
///
/// A change may reach a listener after changes with higher sequence values (a late commit),
/// and, after a restart from a scan, a change the scan already reflected may come again; since
/// a [`Change`] carries the certificate's state as of the read, applying it is idempotent.
pub trait ChangeListener: Send + Sync {
    /// Called with each batch of changes, ascending by sequence value, after the store
    /// committed them.
    fn apply(&self, changes: &[Change]);
}

/// What one poll did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Polled {
    /// Changes handed to the listeners.
    pub delivered: usize,
    /// The read was a full batch: more are waiting, poll again at once.
    pub more: bool,
}

/// Follows a change feed for a set of listeners.
pub struct Follower<F: ?Sized> {
    feed: Arc<F>,
    listeners: Vec<Arc<dyn ChangeListener>>,
    clock: Arc<dyn Clock>,
    applied: IntGauge,
    cursor: Mutex<FeedCursor>,
}

impl<F: StatusFeed + ?Sized + 'static> Follower<F> {
    /// A follower continuing from `from` (the settled position the listeners were built at,
    /// or a saved [`Follower::position`]). `gap_timeout` must exceed the longest write
    /// transaction the feed's backend allows (see [`super::cursor`]); it is counted in whole
    /// seconds, rounded up. `applied` is set to the highest sequence value delivered after
    /// every poll.
    pub fn new(
        feed: Arc<F>,
        listeners: Vec<Arc<dyn ChangeListener>>,
        from: &FeedPosition,
        gap_timeout: Duration,
        clock: Arc<dyn Clock>,
        applied: IntGauge,
    ) -> Self {
        let timeout_secs = gap_timeout.as_secs() + u64::from(gap_timeout.subsec_nanos() > 0);
        let cursor = FeedCursor::new(from, clock.now(), timeout_secs);
        Self {
            feed,
            listeners,
            clock,
            applied,
            cursor: Mutex::new(cursor),
        }
    }

    /// Where the follower stands: save it to restart without delivering anything twice.
    pub fn position(&self) -> FeedPosition {
        self.lock().position()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedCursor> {
        // The cursor is only changed after both reads succeeded, in one step: a panicking
        // listener cannot leave it half-updated.
        self.cursor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One poll (blocking): reads the changes after the high-water mark and re-reads the open
    /// gaps, hands what is new to every listener, and gives up gaps the read proved rolled back.
    /// On a store error nothing is delivered and the cursor does not move.
    pub fn poll(&self) -> Result<Polled, StoreError> {
        let mut cursor = self.lock();
        let started = self.clock.now();
        let mut read = self.feed.changes_since(cursor.after(), FOLLOW_BATCH)?;
        let more = read.len() == FOLLOW_BATCH;
        let gaps = cursor.gaps();
        if !gaps.is_empty() {
            read.extend(self.feed.changes_at(&gaps)?);
        }
        let accepted = cursor.accept(read, self.clock.now());
        for range in &accepted.dropped {
            tracing::warn!(first = range.start(), last = range.end(), "change sequence skipped more values than the follower keeps open; taking them as rolled back");
        }
        for seq in cursor.give_up(started) {
            tracing::warn!(
                seq,
                "change sequence value never committed within the gap timeout; taking it as rolled back"
            );
        }
        self.applied
            .set(i64::try_from(cursor.after()).unwrap_or(i64::MAX));
        drop(cursor);
        if !accepted.deliver.is_empty() {
            for l in &self.listeners {
                l.apply(&accepted.deliver);
            }
        }
        Ok(Polled {
            delivered: accepted.deliver.len(),
            more,
        })
    }

    /// Polls on blocking threads until `stop` changes: at once, then after each `interval()`
    /// (read afresh every time, so a reloaded setting applies), at once again while batches are
    /// full. Store errors are logged and retried on the next poll.
    pub async fn run(
        self: Arc<Self>,
        interval: impl Fn() -> Duration + Send,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.poll()).await {
                Ok(Ok(p)) if p.more => continue,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "following store changes"),
                Err(e) => tracing::error!(error = %e, "change follower task failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval()) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::store::{CertStatus, StatusRow};
    use std::collections::{BTreeMap, BTreeSet};

    /// A feed with concurrent writers, as PostgreSQL has them: a writer takes a sequence value
    /// when its transaction starts and the row becomes visible when it commits, in any order.
    #[derive(Default)]
    struct InterleavedFeed {
        state: Mutex<Feed>,
    }

    #[derive(Default)]
    struct Feed {
        taken: u64,
        open: BTreeSet<u64>,
        committed: BTreeMap<u64, Change>,
        /// Each serial's current status (a change reads the certificate's state at read time).
        status: BTreeMap<String, CertStatus>,
    }

    impl InterleavedFeed {
        fn lock(&self) -> std::sync::MutexGuard<'_, Feed> {
            self.state.lock().expect("feed")
        }
        /// A writer begins and takes the next sequence value.
        fn take(&self) -> u64 {
            let mut f = self.lock();
            f.taken += 1;
            let seq = f.taken;
            f.open.insert(seq);
            seq
        }
        /// The writer holding `seq` commits `serial`'s new status.
        fn commit(&self, seq: u64, serial: &str, status: CertStatus) {
            let mut f = self.lock();
            assert!(f.open.remove(&seq), "{seq} is not open");
            f.status.insert(serial.into(), status);
            f.committed.insert(
                seq,
                Change {
                    seq,
                    serial: serial.into(),
                    issuer: "issuing".into(),
                    status,
                    revoked_at: None,
                    reason: None,
                    not_after: 10_000,
                },
            );
        }
        /// The writer holding `seq` rolls back: the value never commits.
        fn roll_back(&self, seq: u64) {
            assert!(self.lock().open.remove(&seq));
        }
        fn now_status(f: &Feed, c: &Change) -> Change {
            Change {
                status: f.status[&c.serial],
                ..c.clone()
            }
        }
    }

    impl StatusFeed for InterleavedFeed {
        fn changes_since(&self, seq: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
            let f = self.lock();
            Ok(f.committed
                .range(seq + 1..)
                .take(limit)
                .map(|(_, c)| Self::now_status(&f, c))
                .collect())
        }
        fn changes_at(&self, seqs: &[u64]) -> Result<Vec<Change>, StoreError> {
            let f = self.lock();
            Ok(seqs
                .iter()
                .filter_map(|s| f.committed.get(s))
                .map(|c| Self::now_status(&f, c))
                .collect())
        }
        /// Settled: below the lowest value still open (a snapshot cannot know whether it
        /// commits), else the highest taken.
        fn scan_statuses(&self, _: &mut dyn FnMut(StatusRow<'_>)) -> Result<u64, StoreError> {
            let f = self.lock();
            Ok(f.open.first().map_or(f.taken, |s| s - 1))
        }
        fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// Records every change it is handed.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Change>>);

    impl Recorder {
        fn seqs(&self) -> Vec<u64> {
            self.0.lock().expect("rec").iter().map(|c| c.seq).collect()
        }
    }

    impl ChangeListener for Recorder {
        fn apply(&self, changes: &[Change]) {
            self.0.lock().expect("rec").extend_from_slice(changes);
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn follower(
        feed: &Arc<InterleavedFeed>,
        from: &FeedPosition,
        clock: &Arc<FakeClock>,
    ) -> (Follower<InterleavedFeed>, Arc<Recorder>, IntGauge) {
        let rec = Arc::new(Recorder::default());
        let gauge = IntGauge::new("applied", "test").expect("gauge");
        let f = Follower::new(
            feed.clone(),
            vec![rec.clone()],
            from,
            TIMEOUT,
            clock.clone(),
            gauge.clone(),
        );
        (f, rec, gauge)
    }

    fn committed(feed: &InterleavedFeed, n: usize) {
        for _ in 0..n {
            let seq = feed.take();
            feed.commit(seq, &format!("{seq:02x}"), CertStatus::Valid);
        }
    }

    #[test]
    fn a_change_that_commits_after_a_higher_one_is_still_delivered_once() {
        let feed = Arc::new(InterleavedFeed::default());
        let clock = Arc::new(FakeClock::new(1_000));
        committed(&feed, 4);
        let (f, rec, gauge) = follower(&feed, &FeedPosition::settled(0), &clock);
        f.poll().expect("poll");
        assert_eq!(rec.seqs(), [1, 2, 3, 4]);

        let a = feed.take(); // writer A: 5, a revocation still in its transaction
        let b = feed.take(); // writer B: 6, commits first
        assert_eq!((a, b), (5, 6));
        feed.commit(b, "06", CertStatus::Valid);
        f.poll().expect("poll");
        assert_eq!(rec.seqs(), [1, 2, 3, 4, 6], "sees 6, not 5");
        assert_eq!(gauge.get(), 6);

        clock.advance(3);
        feed.commit(a, "0a", CertStatus::Revoked);
        let p = f.poll().expect("poll");
        assert_eq!(p.delivered, 1);
        assert_eq!(rec.seqs(), [1, 2, 3, 4, 6, 5], "5 delivered after all");
        let late = rec.0.lock().expect("rec")[5].clone();
        assert_eq!(
            (late.serial.as_str(), late.status),
            ("0a", CertStatus::Revoked)
        );

        for _ in 0..3 {
            clock.advance(60);
            f.poll().expect("poll");
        }
        assert_eq!(rec.seqs().len(), 6, "nothing twice");
        assert_eq!(f.position(), FeedPosition::settled(6));
    }

    #[test]
    fn a_value_that_never_commits_is_given_up_after_the_timeout_and_holds_nothing_back() {
        let feed = Arc::new(InterleavedFeed::default());
        let clock = Arc::new(FakeClock::new(1_000));
        let (f, rec, _) = follower(&feed, &FeedPosition::settled(0), &clock);
        let lost = feed.take(); // 1: will roll back
        committed(&feed, 1); // 2
        f.poll().expect("poll");
        assert_eq!(rec.seqs(), [2]);
        assert_eq!(f.position().gaps, [lost]);

        // Later changes are delivered while the gap is open.
        clock.advance(5);
        committed(&feed, 1); // 3
        f.poll().expect("poll");
        assert_eq!(rec.seqs(), [2, 3]);
        assert_eq!(f.position().gaps, [lost], "still waited for");

        feed.roll_back(lost);
        clock.advance(5); // exactly the timeout since it was noticed: not yet
        f.poll().expect("poll");
        assert_eq!(f.position().gaps, [lost]);
        clock.advance(1);
        committed(&feed, 1); // 4
        f.poll().expect("poll");
        assert_eq!(rec.seqs(), [2, 3, 4]);
        assert_eq!(f.position(), FeedPosition::settled(4), "given up");
    }

    #[test]
    fn a_restarted_follower_delivers_nothing_twice() {
        let feed = Arc::new(InterleavedFeed::default());
        let clock = Arc::new(FakeClock::new(1_000));
        committed(&feed, 2); // 1, 2
        let slow = feed.take(); // 3
        committed(&feed, 1); // 4
        let (f, rec, _) = follower(&feed, &FeedPosition::settled(0), &clock);
        f.poll().expect("poll");
        assert_eq!(rec.seqs(), [1, 2, 4]);
        let saved = f.position();
        assert_eq!(
            saved,
            FeedPosition {
                high: 4,
                gaps: vec![3]
            }
        );
        drop(f);

        // From the saved position: only what was never delivered, the late 3 included (its
        // timeout starts again at the restart, so a restart cannot cut a wait short).
        clock.advance(8);
        committed(&feed, 1); // 5
        let (f, rec, _) = follower(&feed, &saved, &clock);
        f.poll().expect("poll");
        assert_eq!(rec.seqs(), [5]);
        clock.advance(8);
        feed.commit(slow, "03", CertStatus::Hold);
        f.poll().expect("poll");
        assert_eq!(rec.seqs(), [5, 3]);

        // From a scan's settled position (how the daemon starts: the index is built from a
        // scan): nothing at or below the position comes again. What may come again is a
        // change above it that the scan already saw — here 7, committed while 6 was still
        // open. It carries the certificate's state as of the read, so applying it again
        // changes nothing.
        let open = feed.take(); // 6
        committed(&feed, 1); // 7, in the scan
        let settled = feed
            .scan_statuses(&mut |_: StatusRow<'_>| {})
            .expect("scan");
        assert_eq!((open, settled), (6, 5));
        feed.commit(open, "06", CertStatus::Valid);
        let (f, rec, _) = follower(&feed, &FeedPosition::settled(settled), &clock);
        f.poll().expect("poll");
        assert_eq!(rec.seqs(), [6, 7]);
    }

    #[tokio::test]
    async fn run_polls_at_once_and_stops_on_the_signal() {
        let feed = Arc::new(InterleavedFeed::default());
        committed(&feed, 1);
        let clock = Arc::new(FakeClock::new(1_000));
        let (f, rec, _) = follower(&feed, &FeedPosition::settled(0), &clock);
        let (stop_tx, stop_rx) = watch::channel(false);
        // An hour between polls: only the first poll, at start, can have delivered.
        let task = tokio::spawn(Arc::new(f).run(|| Duration::from_secs(3600), stop_rx));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while rec.seqs().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(rec.seqs(), [1]);
        stop_tx.send(true).expect("stop");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("stopped")
            .expect("task");
    }
}
