//! The hot revocation index: every issued serial per issuer with its status, in memory.
//!
//! ```text
//!            readers (OCSP, any thread)                 one writer (the change follower)
//!   load() ──▶ Snapshot { overlay: HashMap, base } ◀── swap(new Snapshot) after each batch
//!                          │            │
//!          recent changes ─┘            └─ sorted keys[] + values[] + 65,536-bucket table
//! ```
//!
//! * Reads never block and never allocate: an `arc-swap` load, one hash probe in the overlay,
//!   then a bucket lookup and a binary search over a few hundred sorted `u128` keys.
//! * Memory is 24 bytes per certificate in the base (a 16-byte key, an 8-byte packed status) plus
//!   a 256 KiB bucket table per issuer.
//! * Writes copy the small overlay; when it passes [`OVERLAY_MAX`] entries it is merged into a new
//!   base in one linear pass, off the read path.
//!
//! A serial is keyed by its numeric value as a `u128`. pkid issues 16-octet positive serials,
//! which always fit; a serial that does not fit (or is negative) is not one we issued, and is
//! reported as not found — never as good.

use crate::store::follow::ChangeListener;
use crate::store::{CertStatus, Change, StatusRow, Store, StoreError};
use arc_swap::ArcSwap;
use pkid_protocols::revocation::{self, CrlReason};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Overlay size at which it is merged into the base. Large enough that merges (O(n)) are rare,
/// small enough that copying it per write batch stays cheap.
pub const OVERLAY_MAX: usize = 16_384;
/// Bits of the key that select a bucket: 65,536 buckets, so a 10-million-entry base searches
/// about 150 keys per lookup.
const BUCKET_BITS: u32 = 16;

/// What the index knows about an issued certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Issued, not revoked.
    Good,
    /// Revoked or held (reason certificateHold) at Unix time `at`.
    Revoked {
        /// Revocation time, Unix seconds.
        at: u64,
        /// Reason, if recorded.
        reason: Option<CrlReason>,
    },
}

/// An entry packed into 8 bytes: bit 0 revoked, bits 1..6 reason code + 1 (0 = none),
/// bits 8..64 revocation time. Public so caches can compare a cached answer with the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Packed(u64);

impl Packed {
    /// Packs an entry.
    pub fn new(e: Entry) -> Self {
        match e {
            Entry::Good => Self(0),
            Entry::Revoked { at, reason } => {
                let r = reason
                    .map(|r| u64::from(revocation::code(r)) + 1)
                    .unwrap_or(0);
                Self(1 | (r << 1) | ((at & ((1 << 56) - 1)) << 8))
            }
        }
    }

    /// Unpacks it.
    pub fn entry(self) -> Entry {
        if self.0 & 1 == 0 {
            return Entry::Good;
        }
        let r = (self.0 >> 1) & 0x1f;
        let reason = if r == 0 {
            None
        } else {
            revocation::from_code((r - 1) as u8)
        };
        Entry::Revoked {
            at: self.0 >> 8,
            reason,
        }
    }

    /// The raw value.
    pub fn raw(self) -> u64 {
        self.0
    }
}

/// The numeric key of a serial given as DER INTEGER contents (sign octet included). `None` for
/// negative serials and serials over 16 significant octets: neither is one pkid issued.
pub fn serial_key(integer: &[u8]) -> Option<u128> {
    if integer.first().is_none_or(|b| b & 0x80 != 0) {
        return None;
    }
    let significant = &integer[integer.iter().take_while(|b| **b == 0).count()..];
    if significant.len() > 16 {
        return None;
    }
    Some(
        significant
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b)),
    )
}

/// The key of a serial in the store's canonical hex form.
pub fn serial_key_hex(hex: &str) -> Option<u128> {
    if hex.len() > 32 {
        return None;
    }
    u128::from_str_radix(hex, 16).ok()
}

/// Immutable sorted part of an issuer's index.
struct Base {
    keys: Vec<u128>,
    values: Vec<u64>,
    /// `buckets[b]..buckets[b+1]` is the range of keys whose top bits are `b`.
    buckets: Vec<u32>,
}

fn bucket_of(key: u128) -> usize {
    (key >> (128 - BUCKET_BITS)) as usize
}

impl Base {
    /// Builds from key-sorted, deduplicated entries.
    fn from_sorted(keys: Vec<u128>, values: Vec<u64>) -> Self {
        let n = 1usize << BUCKET_BITS;
        let mut buckets = vec![0u32; n + 1];
        for k in &keys {
            buckets[bucket_of(*k) + 1] += 1;
        }
        for i in 0..n {
            buckets[i + 1] += buckets[i];
        }
        Self {
            keys,
            values,
            buckets,
        }
    }

    fn lookup(&self, key: u128) -> Option<u64> {
        let b = bucket_of(key);
        let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        self.keys[lo..hi]
            .binary_search(&key)
            .ok()
            .map(|i| self.values[lo + i])
    }

    fn bytes(&self) -> usize {
        self.keys.capacity() * 16 + self.values.capacity() * 8 + self.buckets.capacity() * 4
    }

    /// A new base with `overlay` merged in (one linear pass).
    fn merged(&self, overlay: &HashMap<u128, u64>) -> Self {
        let mut extra: Vec<(u128, u64)> = overlay.iter().map(|(k, v)| (*k, *v)).collect();
        extra.sort_unstable_by_key(|(k, _)| *k);
        let mut keys = Vec::with_capacity(self.keys.len() + extra.len());
        let mut values = Vec::with_capacity(self.keys.len() + extra.len());
        let (mut i, mut j) = (0, 0);
        while i < self.keys.len() || j < extra.len() {
            let take_extra =
                j < extra.len() && (i >= self.keys.len() || extra[j].0 <= self.keys[i]);
            if take_extra {
                if i < self.keys.len() && extra[j].0 == self.keys[i] {
                    i += 1; // the overlay's value replaces the base's
                }
                keys.push(extra[j].0);
                values.push(extra[j].1);
                j += 1;
            } else {
                keys.push(self.keys[i]);
                values.push(self.values[i]);
                i += 1;
            }
        }
        Self::from_sorted(keys, values)
    }
}

struct Snapshot {
    base: Arc<Base>,
    overlay: HashMap<u128, u64>,
}

/// The index of one issuer.
pub struct IssuerIndex {
    snapshot: ArcSwap<Snapshot>,
}

impl IssuerIndex {
    /// An index over `entries` (any order; later duplicates win).
    pub fn from_entries(mut entries: Vec<(u128, Packed)>) -> Self {
        // Stable sort keeps insertion order among equal keys, so "last wins" holds.
        entries.sort_by_key(|(k, _)| *k);
        let mut keys: Vec<u128> = Vec::with_capacity(entries.len());
        let mut values: Vec<u64> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            if keys.last() == Some(&k) {
                if let Some(last) = values.last_mut() {
                    *last = v.raw();
                }
            } else {
                keys.push(k);
                values.push(v.raw());
            }
        }
        let base = Arc::new(Base::from_sorted(keys, values));
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot {
                base,
                overlay: HashMap::new(),
            }),
        }
    }

    /// The status of a serial, or `None` if this issuer never issued it.
    pub fn lookup(&self, key: u128) -> Option<Packed> {
        let snap = self.snapshot.load();
        snap.overlay
            .get(&key)
            .copied()
            .or_else(|| snap.base.lookup(key))
            .map(Packed)
    }

    /// Applies updates (single writer). Readers see all of a batch or none of it.
    pub fn apply(&self, updates: &[(u128, Packed)]) {
        if updates.is_empty() {
            return;
        }
        let current = self.snapshot.load_full();
        let mut overlay = current.overlay.clone();
        for (k, v) in updates {
            overlay.insert(*k, v.raw());
        }
        let next = if overlay.len() > OVERLAY_MAX {
            Snapshot {
                base: Arc::new(current.base.merged(&overlay)),
                overlay: HashMap::new(),
            }
        } else {
            Snapshot {
                base: current.base.clone(),
                overlay,
            }
        };
        self.snapshot.store(Arc::new(next));
    }

    /// Certificates known (base and overlay may overlap; this counts distinct keys exactly only
    /// after a merge — it is for reports).
    pub fn len(&self) -> usize {
        let s = self.snapshot.load();
        s.base.keys.len()
            + s.overlay
                .keys()
                .filter(|k| s.base.lookup(**k).is_none())
                .count()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        let s = self.snapshot.load();
        // hashbrown: key + value + one control byte per slot.
        s.base.bytes() + s.overlay.capacity() * (16 + 8 + 1)
    }

    /// Calls `f` for every (key, status), base first; a key in both is visited twice, the overlay
    /// (newer) value last.
    pub fn for_each(&self, mut f: impl FnMut(u128, Packed)) {
        let s = self.snapshot.load_full();
        for (k, v) in s.base.keys.iter().zip(&s.base.values) {
            f(*k, Packed(*v));
        }
        for (k, v) in &s.overlay {
            f(*k, Packed(*v));
        }
    }
}

/// Most issuers one daemon serves. The OCSP response cache keys an issuer by one octet, and a
/// government service runs a handful of issuing CAs (per sector), not hundreds.
pub const MAX_ISSUERS: usize = 255;

/// The status index of every issuer, kept current from the store's change sequence.
///
/// Issuers occupy slots in the order they were added and are never removed, so a slot number
/// names the same issuer for the life of the process and readers reach an issuer's index
/// without a lock ([`RevocationIndex::slot`]). An issuer added while the daemon runs
/// ([`RevocationIndex::add_issuer`]) is read from the store when it is added.
pub struct RevocationIndex {
    slots: Box<[OnceLock<(String, IssuerIndex)>]>,
    /// Serialises adding issuers (readers never take it).
    adding: Mutex<()>,
    applied: AtomicU64,
}

fn entry_of(
    status: CertStatus,
    revoked_at: Option<u64>,
    reason: Option<CrlReason>,
) -> Option<Packed> {
    match status {
        CertStatus::Pending | CertStatus::Abandoned => None,
        CertStatus::Valid => Some(Packed::new(Entry::Good)),
        CertStatus::Revoked | CertStatus::Hold => Some(Packed::new(Entry::Revoked {
            at: revoked_at.unwrap_or(0),
            reason,
        })),
    }
}

impl RevocationIndex {
    fn with_issuers(issuers: Vec<(String, IssuerIndex)>, seq: u64) -> Self {
        let slots: Box<[OnceLock<(String, IssuerIndex)>]> =
            (0..MAX_ISSUERS).map(|_| OnceLock::new()).collect();
        for (slot, issuer) in slots.iter().zip(issuers) {
            let _ = slot.set(issuer);
        }
        Self {
            slots,
            adding: Mutex::new(()),
            applied: AtomicU64::new(seq),
        }
    }

    /// Builds the index of `issuers` from the store, consistent with a change-sequence position
    /// from which [`ChangeListener::apply`] continues.
    pub fn build(store: &dyn Store, issuers: &[&str]) -> Result<Self, StoreError> {
        if issuers.len() > MAX_ISSUERS {
            return Err(StoreError::Unavailable(format!(
                "{} issuers; at most {MAX_ISSUERS} are served",
                issuers.len()
            )));
        }
        let (entries, seq) = scan(store, issuers)?;
        Ok(Self::with_issuers(entries, seq))
    }

    /// An index from explicit entries (benchmarks and tests).
    pub fn from_entries(issuers: Vec<(String, Vec<(u128, Packed)>)>, seq: u64) -> Self {
        Self::with_issuers(
            issuers
                .into_iter()
                .take(MAX_ISSUERS)
                .map(|(n, e)| (n, IssuerIndex::from_entries(e)))
                .collect(),
            seq,
        )
    }

    fn filled(&self) -> impl Iterator<Item = &(String, IssuerIndex)> {
        self.slots.iter().map_while(OnceLock::get)
    }

    /// One issuer's index.
    pub fn issuer(&self, name: &str) -> Option<&IssuerIndex> {
        self.filled().find(|(n, _)| n == name).map(|(_, i)| i)
    }

    /// The slot of an issuer: stable for the life of the process.
    pub fn slot_of(&self, name: &str) -> Option<usize> {
        self.filled().position(|(n, _)| n == name)
    }

    /// The index in a slot (the OCSP hot path: no name comparison, no lock).
    pub fn slot(&self, slot: usize) -> Option<&IssuerIndex> {
        self.slots.get(slot)?.get().map(|(_, i)| i)
    }

    /// The names of the issuers indexed, in slot order.
    pub fn issuers(&self) -> Vec<&str> {
        self.filled().map(|(n, _)| n.as_str()).collect()
    }

    /// Adds an issuer while the daemon runs, reading its certificates from the store, and
    /// returns its slot. Adding one already indexed returns its slot and reads nothing.
    ///
    /// Changes for the issuer that the follower delivered before it was added were dropped;
    /// the scan here includes them. Changes delivered again after it are applied again, which
    /// is harmless: a change carries the certificate's status as of its reading.
    pub fn add_issuer(&self, store: &dyn Store, name: &str) -> Result<usize, StoreError> {
        let _one_at_a_time = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = self.slot_of(name) {
            return Ok(slot);
        }
        let slot = self.filled().count();
        let Some(cell) = self.slots.get(slot) else {
            return Err(StoreError::Unavailable(format!(
                "cannot serve issuer {name}: at most {MAX_ISSUERS} issuers are served"
            )));
        };
        let (mut entries, _) = scan(store, &[name])?;
        let (n, index) = entries
            .pop()
            .unwrap_or_else(|| (name.to_string(), IssuerIndex::from_entries(Vec::new())));
        let _ = cell.set((n, index));
        Ok(slot)
    }

    /// The change-sequence position applied so far.
    pub fn applied_seq(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Approximate heap bytes held by all issuers.
    pub fn memory_bytes(&self) -> usize {
        self.filled().map(|(_, i)| i.memory_bytes()).sum()
    }
}

/// Reads the statuses of `issuers`' certificates from the store, with the change-sequence
/// position the read is consistent with.
fn scan(
    store: &dyn Store,
    issuers: &[&str],
) -> Result<(Vec<(String, IssuerIndex)>, u64), StoreError> {
    let mut entries: Vec<(&str, Vec<(u128, Packed)>)> =
        issuers.iter().map(|i| (*i, Vec::new())).collect();
    let seq = store.scan_statuses(&mut |row: StatusRow<'_>| {
        let list = entries.iter_mut().find(|(n, _)| *n == row.issuer);
        if let (Some((_, list)), Some(key), Some(p)) = (
            list,
            serial_key_hex(row.serial),
            entry_of(row.status, row.revoked_at, row.reason),
        ) {
            list.push((key, p));
        }
    })?;
    let built = entries
        .into_iter()
        .map(|(name, e)| (name.to_string(), IssuerIndex::from_entries(e)))
        .collect();
    Ok((built, seq))
}

impl ChangeListener for RevocationIndex {
    fn apply(&self, changes: &[Change]) {
        let mut by_issuer: HashMap<&str, Vec<(u128, Packed)>> = HashMap::new();
        let mut last = self.applied_seq();
        for c in changes {
            // No skipping by position: a change can arrive after higher ones (a late commit,
            // see `store::cursor`), and it carries the certificate's state as of the read, so
            // applying it is right even when a higher position was applied first.
            last = last.max(c.seq);
            if let (Some(key), Some(p)) = (
                serial_key_hex(&c.serial),
                entry_of(c.status, c.revoked_at, c.reason),
            ) {
                by_issuer
                    .entry(c.issuer.as_str())
                    .or_default()
                    .push((key, p));
            }
        }
        for (issuer, updates) in by_issuer {
            if let Some(index) = self.issuer(issuer) {
                index.apply(&updates);
            }
        }
        self.applied.store(last, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoked(at: u64, reason: CrlReason) -> Packed {
        Packed::new(Entry::Revoked {
            at,
            reason: Some(reason),
        })
    }

    #[test]
    fn packing_round_trips_every_reason() {
        for (r, _) in revocation::REASONS {
            let e = Entry::Revoked {
                at: 1_800_000_000,
                reason: Some(r),
            };
            assert_eq!(Packed::new(e).entry(), e);
        }
        assert_eq!(Packed::new(Entry::Good).entry(), Entry::Good);
        let none = Entry::Revoked {
            at: 5,
            reason: None,
        };
        assert_eq!(Packed::new(none).entry(), none);
    }

    #[test]
    fn serial_keys_refuse_negative_and_oversized_serials() {
        assert_eq!(serial_key(&[0x00, 0x80]), Some(0x80));
        assert_eq!(serial_key(&[0x01, 0x00]), Some(0x100));
        assert_eq!(serial_key(&[0xff]), None, "negative");
        assert_eq!(serial_key(&[0x7f; 17]), None, "over 16 octets");
        assert_eq!(serial_key(&[]), None);
        assert_eq!(serial_key_hex("0abc"), Some(0xabc));
        assert_eq!(serial_key_hex(&"f".repeat(33)), None);
    }

    #[test]
    fn lookups_see_base_overlay_and_merges() {
        let keys: Vec<u128> = (0..50_000u128)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) >> 1)
            .collect();
        let idx = IssuerIndex::from_entries(
            keys.iter()
                .map(|k| (*k, Packed::new(Entry::Good)))
                .collect(),
        );
        assert!(keys
            .iter()
            .all(|k| idx.lookup(*k) == Some(Packed::new(Entry::Good))));
        assert_eq!(idx.lookup(12345), None, "never issued");
        idx.apply(&[(keys[7], revoked(10, CrlReason::KeyCompromise))]);
        assert_eq!(
            idx.lookup(keys[7]).map(Packed::entry),
            Some(Entry::Revoked {
                at: 10,
                reason: Some(CrlReason::KeyCompromise)
            })
        );
        // Force a merge and check nothing is lost or stale.
        let updates: Vec<_> = (0..OVERLAY_MAX as u128 + 10)
            .map(|i| ((1u128 << 100) + i, revoked(20, CrlReason::Superseded)))
            .collect();
        idx.apply(&updates);
        assert!(
            idx.snapshot.load().overlay.is_empty(),
            "merged into the base"
        );
        assert_eq!(
            idx.lookup(keys[7]).map(Packed::entry),
            Some(Entry::Revoked {
                at: 10,
                reason: Some(CrlReason::KeyCompromise)
            })
        );
        assert_eq!(idx.lookup(keys[8]), Some(Packed::new(Entry::Good)));
        assert!(updates.iter().all(|(k, v)| idx.lookup(*k) == Some(*v)));
        assert_eq!(idx.len(), keys.len() + updates.len());
        idx.apply(&[(keys[7], Packed::new(Entry::Good))]);
        assert_eq!(
            idx.lookup(keys[7]),
            Some(Packed::new(Entry::Good)),
            "release"
        );
    }

    #[test]
    fn a_change_that_arrives_after_a_higher_one_is_applied() {
        let index = RevocationIndex::from_entries(vec![("issuing".into(), Vec::new())], 4);
        let change = |seq, serial: &str, status, revoked_at, reason| Change {
            seq,
            serial: serial.into(),
            issuer: "issuing".into(),
            status,
            revoked_at,
            reason,
            not_after: 1000,
        };
        index.apply(&[change(6, "0b", CertStatus::Valid, None, None)]);
        // Sequence value 5 committed after 6 (concurrent writers): still applied.
        index.apply(&[change(
            5,
            "0a",
            CertStatus::Revoked,
            Some(7),
            Some(CrlReason::KeyCompromise),
        )]);
        let issuing = index.issuer("issuing").expect("issuer");
        assert_eq!(
            issuing.lookup(0x0a),
            Some(revoked(7, CrlReason::KeyCompromise))
        );
        assert_eq!(issuing.lookup(0x0b), Some(Packed::new(Entry::Good)));
        assert_eq!(index.applied_seq(), 6, "the position only moves forward");
    }

    use crate::store::sqlite::SqliteStore;
    use crate::store::{
        AuditEntry, Certificates, NewCertificate, Outcome, StatusChange, StatusFeed,
    };

    /// A SQLite store in a fresh directory.
    fn sqlite() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = SqliteStore::open(&dir.path().join("s.db"), std::time::Duration::from_secs(1))
            .expect("store");
        (dir, store)
    }

    /// A certificate record of `issuer` to reserve.
    fn new(serial: &str, issuer: &str) -> NewCertificate {
        NewCertificate {
            serial: serial.into(),
            issuer: issuer.into(),
            subject: "CN=Trần Thị Bích".into(),
            profile: "p".into(),
            not_before: 0,
            not_after: 10,
            tbs: vec![],
            replaces: None,
            created_at: 0,
        }
    }

    /// The audit record a status change in these tests carries.
    fn audit() -> AuditEntry {
        AuditEntry {
            at: 5,
            actor: "t".into(),
            action: "a".into(),
            target: "t".into(),
            outcome: Outcome::Success,
            detail: String::new(),
        }
    }

    #[test]
    fn follows_the_store_change_sequence() {
        let (_dir, store) = sqlite();
        store.reserve(&new("0a", "issuing")).expect("reserve");
        store.complete("0a", &[1]).expect("complete");
        store.reserve(&new("0b", "issuing")).expect("pending only");
        let index = RevocationIndex::build(&store, &["issuing", "root"]).expect("build");
        let issuing = index.issuer("issuing").expect("issuer");
        assert_eq!(issuing.lookup(0x0a), Some(Packed::new(Entry::Good)));
        assert_eq!(issuing.lookup(0x0b), None, "pending is not issued");
        store
            .change_status("0a", StatusChange::Hold { at: 5 }, &audit())
            .expect("hold");
        store.complete("0b", &[2]).expect("complete");
        let changes = store
            .changes_since(index.applied_seq(), 100)
            .expect("changes");
        assert_eq!(changes.len(), 2);
        index.apply(&changes);
        assert_eq!(
            issuing.lookup(0x0a).map(Packed::entry),
            Some(Entry::Revoked {
                at: 5,
                reason: Some(CrlReason::CertificateHold)
            })
        );
        assert_eq!(issuing.lookup(0x0b), Some(Packed::new(Entry::Good)));
        assert_eq!(
            index.applied_seq(),
            changes.last().map(|c| c.seq).unwrap_or(0)
        );
    }

    #[test]
    fn an_issuer_added_at_run_time_is_read_from_the_store_and_keeps_its_slot() {
        let (_dir, store) = sqlite();
        store.reserve(&new("0a", "issuing")).expect("reserve");
        store.complete("0a", &[1]).expect("complete");
        let index = RevocationIndex::build(&store, &["root", "issuing"]).expect("build");
        // Another process adds an issuer and issues under it before this daemon hears of it.
        store.reserve(&new("0c", "health")).expect("reserve");
        store.complete("0c", &[3]).expect("complete");
        let early = store
            .changes_since(index.applied_seq(), 100)
            .expect("changes");
        index.apply(&early);
        assert!(index.issuer("health").is_none(), "not served until added");

        let slot = index.add_issuer(&store, "health").expect("add");
        assert_eq!(slot, 2, "after root and issuing");
        assert_eq!(index.add_issuer(&store, "health").expect("again"), slot);
        assert_eq!(index.slot_of("issuing"), Some(1));
        assert_eq!(index.issuers(), vec!["root", "issuing", "health"]);
        let health = index.slot(slot).expect("slot");
        assert_eq!(
            health.lookup(0x0c),
            Some(Packed::new(Entry::Good)),
            "read at add"
        );
        assert_eq!(health.lookup(0x0a), None, "another issuer's serial");

        let revoke = StatusChange::Revoke {
            reason: CrlReason::KeyCompromise,
            at: 5,
            invalidity_date: None,
        };
        store.change_status("0c", revoke, &audit()).expect("revoke");
        index.apply(
            &store
                .changes_since(index.applied_seq(), 100)
                .expect("changes"),
        );
        assert_eq!(
            health.lookup(0x0c).map(Packed::entry),
            Some(Entry::Revoked {
                at: 5,
                reason: Some(CrlReason::KeyCompromise)
            })
        );
    }
}
