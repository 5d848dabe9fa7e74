//! The follower's side of the change-feed contract, as a pure type: what to read next, which
//! sequence values are still open, and what to hand to listeners — each committed change
//! once, in ascending order within a batch.
//!
//! Sequence order need not be commit order (PostgreSQL: a transaction takes value 5, another
//! takes 6 and commits first). A follower that only remembered "the highest value read" would
//! read 6 and never look at 5 again. [`FeedCursor`] remembers the values below its high-water
//! mark that it has not seen — *gaps* — and asks for them again on every read, until they
//! appear or have been open longer than the gap timeout, after which they are taken as
//! rolled back:
//!
//! ```text
//! read 1: 1 2 3 4 _ 6     deliver 1 2 3 4 6      high 6, gaps {5 (noticed t₁)}
//! read 2: (5 missing)     deliver nothing        gap 5 kept while now − t₁ ≤ timeout
//! read 3: 5 7             deliver 5 7            high 7, no gaps
//! ```
//!
//! Why a timeout is safe: a gap is noticed only after a higher value has committed, and values
//! are taken in increasing order, so the transaction that took the gap's value began before it
//! was noticed. A backend that ends every write transaction within `T` therefore has committed
//! or rolled back the gap's value by `noticed + T`; a read that *starts* after that and does not
//! find it proves it will never commit. The cursor gives a gap up only on such a read, so a gap
//! timeout above `T` loses nothing. Time is the caller's (`now`, Unix seconds), so the cursor
//! is testable with a fake clock; the comparison is strict, so one second of clock granularity
//! is covered.
//!
//! No SQLite in here: the SQLite store never leaves a gap (one writer; a rolled-back
//! transaction hands its value to the next), so with it the cursor reduces to "read after the
//! highest value", and the same code will follow a PostgreSQL store.

use super::Change;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;

/// Most gaps a cursor keeps open (the same as the follower's read batch, so re-reading them is
/// at most one batch more per poll). A backend leaves a gap per in-flight or rolled-back write;
/// more than this at once means a sequence that skips values in bulk (e.g. a PostgreSQL
/// sequence with `CACHE` above 1, which the contract rules out): the lowest gaps beyond the
/// bound are given up at once, with a warning, rather than growing without limit.
pub const MAX_OPEN_GAPS: usize = 10_000;

/// Where a follower stands, in a form it can be saved in and restarted from: every sequence
/// value up to `high` has been delivered (or given up), except those in `gaps`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedPosition {
    /// The highest sequence value delivered.
    pub high: u64,
    /// Values below `high` not delivered yet, ascending.
    pub gaps: Vec<u64>,
}

impl FeedPosition {
    /// A settled position (as [`super::StatusFeed::scan_statuses`] returns): every value up to
    /// `seq` is reflected or will never commit, so there is nothing below it to wait for.
    pub fn settled(seq: u64) -> Self {
        Self {
            high: seq,
            gaps: Vec::new(),
        }
    }
}

/// What one read hands over ([`FeedCursor::accept`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The changes not delivered before, ascending by sequence value, each once.
    pub deliver: Vec<Change>,
    /// Values given up without waiting, because more than [`MAX_OPEN_GAPS`] would be open.
    pub dropped: Vec<RangeInclusive<u64>>,
}

/// The follower's position in a change feed whose sequence order need not be commit order.
#[derive(Clone, Debug)]
pub struct FeedCursor {
    high: u64,
    /// Open gap → when it was noticed (Unix seconds).
    gaps: BTreeMap<u64, u64>,
    timeout_secs: u64,
}

impl FeedCursor {
    /// A cursor that continues from `from`; gaps it was saved with count as noticed `now`
    /// (the restart), so each gets a full timeout again. `timeout_secs` must exceed the longest
    /// write transaction the backend allows.
    pub fn new(from: &FeedPosition, now: u64, timeout_secs: u64) -> Self {
        let gaps = from
            .gaps
            .iter()
            .filter(|s| **s < from.high)
            .map(|s| (*s, now))
            .collect();
        Self {
            high: from.high,
            gaps,
            timeout_secs,
        }
    }

    /// Read the changes after this value (`StatusFeed::changes_since`).
    pub fn after(&self) -> u64 {
        self.high
    }

    /// Re-read these values (`StatusFeed::changes_at`), ascending.
    pub fn gaps(&self) -> Vec<u64> {
        self.gaps.keys().copied().collect()
    }

    /// The position to save and restart from.
    pub fn position(&self) -> FeedPosition {
        FeedPosition {
            high: self.high,
            gaps: self.gaps(),
        }
    }

    /// Takes what a read returned — new changes and re-read gaps, in any order, possibly
    /// repeating each other or what was delivered before — and returns what to hand to
    /// listeners. Values skipped by the new changes become gaps noticed at `read_finished`
    /// (the time after the read: the skipped transactions began before it).
    pub fn accept(&mut self, mut read: Vec<Change>, read_finished: u64) -> Accepted {
        read.sort_by_key(|c| c.seq);
        read.dedup_by_key(|c| c.seq);
        let mut out = Accepted::default();
        for c in read {
            if c.seq > self.high {
                // Every value between the old high and this one is a gap. Open at most what
                // the bound allows; a jump larger than that is not a set of in-flight writes.
                let skipped = c.seq - self.high - 1;
                let room = MAX_OPEN_GAPS.saturating_sub(self.gaps.len()) as u64;
                let first_kept = self.high + 1 + skipped.saturating_sub(room);
                if first_kept > self.high + 1 {
                    out.dropped.push(self.high + 1..=first_kept - 1);
                }
                for s in first_kept..c.seq {
                    self.gaps.insert(s, read_finished);
                }
                self.high = c.seq;
                out.deliver.push(c);
            } else if self.gaps.remove(&c.seq).is_some() {
                out.deliver.push(c); // a late commit: delivered now, once
            }
            // Otherwise delivered before (or given up): never again.
        }
        out.deliver.sort_by_key(|c| c.seq);
        out
    }

    /// Gives up the gaps that a read starting at `read_started` proves rolled back: open
    /// longer than the timeout when the read began. Returns them, ascending. Call after
    /// [`FeedCursor::accept`] with the same read, so a gap that read found is delivered first.
    pub fn give_up(&mut self, read_started: u64) -> Vec<u64> {
        let timeout = self.timeout_secs;
        let expired: Vec<u64> = self
            .gaps
            .iter()
            .filter(|(_, noticed)| read_started.saturating_sub(**noticed) > timeout)
            .map(|(s, _)| *s)
            .collect();
        for s in &expired {
            self.gaps.remove(s);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CertStatus;

    fn change(seq: u64) -> Change {
        Change {
            seq,
            serial: format!("{seq:02x}"),
            issuer: "issuing".into(),
            status: CertStatus::Valid,
            revoked_at: None,
            reason: None,
            not_after: 1000,
        }
    }

    fn seqs(changes: &[Change]) -> Vec<u64> {
        changes.iter().map(|c| c.seq).collect()
    }

    fn read(values: &[u64]) -> Vec<Change> {
        values.iter().copied().map(change).collect()
    }

    #[test]
    fn a_value_that_commits_after_a_higher_one_is_delivered_once_when_it_appears() {
        let mut c = FeedCursor::new(&FeedPosition::settled(4), 100, 10);
        let a = c.accept(read(&[6]), 100);
        assert_eq!(seqs(&a.deliver), [6]);
        assert_eq!((c.after(), c.gaps()), (6, vec![5]));
        assert!(c.give_up(105).is_empty(), "within the timeout");
        // The re-read of the gap and the next new change arrive together, out of order.
        let a = c.accept(read(&[7, 5]), 106);
        assert_eq!(seqs(&a.deliver), [5, 7]);
        assert!(c.gaps().is_empty());
        // Repeats of anything delivered are dropped.
        assert!(c.accept(read(&[5, 6, 7]), 107).deliver.is_empty());
    }

    #[test]
    fn a_gap_is_given_up_only_by_a_read_that_began_after_the_timeout() {
        let mut c = FeedCursor::new(&FeedPosition::settled(0), 0, 10);
        c.accept(read(&[1, 3]), 50);
        assert!(c.give_up(60).is_empty(), "exactly the timeout: still open");
        assert_eq!(c.give_up(61), [2]);
        assert_eq!(c.position(), FeedPosition::settled(3));
        // Given up is final: a straggler is not delivered (the contract says it cannot exist).
        assert!(c.accept(read(&[2]), 62).deliver.is_empty());
    }

    #[test]
    fn a_saved_position_resumes_without_repeating_and_restarts_the_gap_timeout() {
        let mut c = FeedCursor::new(&FeedPosition::settled(0), 0, 10);
        c.accept(read(&[1, 2, 4, 6]), 5);
        let saved = c.position();
        assert_eq!(
            saved,
            FeedPosition {
                high: 6,
                gaps: vec![3, 5]
            }
        );
        let mut restarted = FeedCursor::new(&saved, 100, 10);
        assert!(
            restarted.give_up(100).is_empty(),
            "noticed again at restart"
        );
        let a = restarted.accept(read(&[1, 2, 3, 4, 6, 7]), 101);
        assert_eq!(seqs(&a.deliver), [3, 7], "only what was never delivered");
        assert_eq!(restarted.gaps(), [5]);
    }

    #[test]
    fn a_jump_past_the_gap_bound_gives_up_the_lowest_values() {
        let mut c = FeedCursor::new(&FeedPosition::settled(0), 0, 10);
        let jump = MAX_OPEN_GAPS as u64 + 6;
        let a = c.accept(read(&[jump]), 1);
        assert_eq!(seqs(&a.deliver), [jump]);
        assert_eq!(a.dropped, [1..=5], "given up at once");
        let gaps = c.gaps();
        assert_eq!(gaps.len(), MAX_OPEN_GAPS);
        assert_eq!((gaps[0], gaps[gaps.len() - 1]), (6, jump - 1));
        // Full: the next jump opens no more.
        let a = c.accept(read(&[jump + 3]), 2);
        assert_eq!(a.dropped, [jump + 1..=jump + 2]);
        assert_eq!(c.gaps().len(), MAX_OPEN_GAPS);
    }
}
