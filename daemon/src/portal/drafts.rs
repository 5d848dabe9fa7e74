//! Files attached to a procedure form that was checked but not sent yet.
//!
//! A browser cannot put a file back into a file input, so when an officer presses *Check the
//! document* the form comes back with the verification result and the attached files kept
//! here, under a random draft id the form carries; sending the form without choosing them
//! again uses the kept ones. A draft belongs to the session that made it (keyed with the
//! session's form token, which no other session knows), lives at most `ttl`, and the drafts of
//! the process hold at most `max_bytes` together: the oldest go first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attached files by form field: (file name, bytes).
pub(super) type Files = BTreeMap<String, (String, Vec<u8>)>;

struct Draft {
    owner: String,
    files: Files,
    bytes: usize,
    made: Instant,
}

/// The drafts of this process.
pub(super) struct Drafts {
    map: Mutex<HashMap<String, Draft>>,
    ttl: Duration,
    max_bytes: usize,
}

fn size(files: &Files) -> usize {
    files.values().map(|(n, b)| n.len() + b.len()).sum()
}

impl Drafts {
    /// No drafts yet.
    pub(super) fn new(ttl: Duration, max_bytes: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            ttl,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Draft>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `files` for `owner` under draft `id` (replacing that draft when it is the owner's,
    /// otherwise under a new id): the id, or `None` when they alone are over the limit.
    pub(super) fn put(&self, owner: &str, id: Option<&str>, files: Files) -> Option<String> {
        let bytes = size(&files);
        if bytes > self.max_bytes {
            return None;
        }
        let mut map = self.lock();
        let ttl = self.ttl;
        map.retain(|_, d| d.made.elapsed() < ttl);
        let id = match id {
            Some(i) if map.get(i).is_some_and(|d| d.owner == owner) => i.to_owned(),
            _ => super::session::random_token()?,
        };
        map.remove(&id);
        let mut held: usize = map.values().map(|d| d.bytes).sum();
        while held + bytes > self.max_bytes {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, d)| d.made)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(d) = map.remove(&oldest) {
                held -= d.bytes;
            }
        }
        map.insert(
            id.clone(),
            Draft {
                owner: owner.to_owned(),
                files,
                bytes,
                made: Instant::now(),
            },
        );
        Some(id)
    }

    /// The files of draft `id`, when it is `owner`'s and still kept.
    pub(super) fn get(&self, owner: &str, id: &str) -> Option<Files> {
        let map = self.lock();
        map.get(id)
            .filter(|d| d.owner == owner && d.made.elapsed() < self.ttl)
            .map(|d| d.files.clone())
    }

    /// Forgets draft `id` of `owner` (the form was sent).
    pub(super) fn remove(&self, owner: &str, id: &str) {
        let mut map = self.lock();
        if map.get(id).is_some_and(|d| d.owner == owner) {
            map.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(name: &str, n: usize) -> Files {
        BTreeMap::from([("document_file".to_owned(), (name.to_owned(), vec![7u8; n]))])
    }

    #[test]
    fn a_draft_is_its_owners_and_the_oldest_go_over_the_limit() {
        let d = Drafts::new(Duration::from_secs(60), 1000);
        let a = d.put("csrf-a", None, files("a.pdf", 400)).expect("kept");
        assert!(d.get("csrf-b", &a).is_none(), "another session's draft");
        assert_eq!(
            d.get("csrf-a", &a).expect("own")["document_file"].0,
            "a.pdf"
        );
        // Replaced in place by its owner; another owner's id is not reused.
        let same = d
            .put("csrf-a", Some(&a), files("a2.pdf", 400))
            .expect("kept");
        assert_eq!(same, a);
        let b = d
            .put("csrf-b", Some(&a), files("b.pdf", 400))
            .expect("kept");
        assert_ne!(b, a);
        assert_eq!(
            d.get("csrf-a", &a).expect("own")["document_file"].0,
            "a2.pdf"
        );
        // A third over the 1000 bytes: the oldest (a) goes.
        let c = d.put("csrf-c", None, files("c.pdf", 400)).expect("kept");
        assert!(d.get("csrf-a", &a).is_none());
        assert!(d.get("csrf-b", &b).is_some() && d.get("csrf-c", &c).is_some());
        assert!(d.put("csrf-d", None, files("huge.pdf", 2000)).is_none());
        d.remove("csrf-b", &c);
        assert!(d.get("csrf-c", &c).is_some(), "only its owner removes it");
        d.remove("csrf-c", &c);
        assert!(d.get("csrf-c", &c).is_none());
    }

    #[test]
    fn a_draft_expires() {
        let d = Drafts::new(Duration::from_millis(50), 1000);
        let a = d.put("o", None, files("a.pdf", 10)).expect("kept");
        std::thread::sleep(Duration::from_millis(80));
        assert!(d.get("o", &a).is_none());
    }
}
