//! The audit role: who did what, when, and how it ended — hash-chained, so an edited,
//! deleted or reordered entry is found, and timestamped, so the log's state at a time can be
//! proved to a third party.
//!
//! ```text
//! audit          id → at, actor, action, target, outcome, detail, prev_hash, hash (append-only)
//!                hash_n = SHA-256(tag ‖ hash_{n-1} ‖ id ‖ at ‖ len‖actor ‖ … ‖ len‖detail)
//! audit_stamps   audit id → head hash, RFC 3161 response (TSA over SHA-256(head hash)), at
//!
//!   append ──▶ read the last row's hash (writer lock held) ──▶ chain_hash ──▶ insert
//!   verify ──▶ stream rows ──▶ ChainWalk::step (pure) ──▶ finish ──▶ ChainVerdict
//! ```
//!
//! Status changes write their audit record in their own transaction
//! ([`super::Certificates::change_status`]); everything else appends here. The encoding is in
//! [`chain_hash`] and `docs/audit.md`; the walk ([`ChainWalk`]) is pure, so every backend
//! verifies alike.

use super::StoreError;

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused (bad input, policy).
    Refused,
    /// Failed on our side.
    Failed,
}

impl Outcome {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// One audit record: who did what, when, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: u64,
    /// Operator or client identity.
    pub actor: String,
    /// What was attempted (`cert.issue`, `cert.revoke`, `ca.init`, …).
    pub action: String,
    /// What it was done to (serial, profile, issuer).
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Free text: reason for refusal, parameters.
    pub detail: String,
}

/// The append-only, hash-chained audit log and the timestamps of its head.
pub trait AuditLog: Send + Sync {
    /// Appends an audit record, chained to the one before it.
    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The newest audit records, newest first.
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// A page of the log, newest first, with each record's id: at most `limit` records with
    /// ids below `before` (all when `None`).
    fn audit_page(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError>;
    /// The records about `target` (an id, a serial, a credential), newest first, like
    /// [`AuditLog::audit_page`].
    fn audit_of_target(
        &self,
        target: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError>;
    /// Walks the whole chain, oldest first, in one read snapshot, checking every entry against
    /// its predecessor and every stored stamp against the chain: intact (count, head), or the
    /// first entry that was edited, deleted or reordered. Streams: memory does not grow with
    /// the log.
    fn verify_audit_chain(&self) -> Result<ChainVerdict, StoreError>;
    /// The newest entry and its hash (`None` for an empty log): what a stamp covers.
    fn audit_head(&self) -> Result<Option<ChainHead>, StoreError>;
    /// Stores a timestamp of the head. One per audit id: a second stamp of the same head is
    /// refused with [`StoreError::DuplicateName`].
    fn record_audit_stamp(&self, stamp: &AuditStamp) -> Result<(), StoreError>;
    /// Every stored stamp, oldest first.
    fn audit_stamps(&self) -> Result<Vec<AuditStamp>, StoreError>;
    /// The newest stored stamp: the periodic stamper skips a head that has not moved since.
    fn latest_audit_stamp(&self) -> Result<Option<AuditStamp>, StoreError>;
}

/// The hash that chains audit entries: SHA-256, 32 octets.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditHash(pub [u8; 32]);

impl AuditHash {
    /// What the first entry chains from: 32 zero octets (no entry comes before it).
    pub const GENESIS: Self = Self([0; 32]);

    /// The hash from stored octets; `None` unless there are exactly 32 of them.
    pub fn from_slice(octets: &[u8]) -> Option<Self> {
        octets.try_into().ok().map(Self)
    }

    /// Lower-case hex, as `pkid audit verify` prints it and `openssl ts -verify -digest` takes
    /// the SHA-256 of it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for AuditHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Display for AuditHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The domain tag every chain hash starts with, so an audit hash can never be mistaken for (or
/// made to collide with) a SHA-256 computed for any other purpose. Changing the encoding means
/// a new tag (`…-v2`), never a silent change.
pub const CHAIN_TAG: &[u8] = b"pkid-audit-chain-v1";

/// The fields of one audit row exactly as stored, which is what the chain commits to: the
/// outcome is its stored text, not the parsed [`Outcome`], so an outcome edited to a value
/// pkid does not know still breaks the chain.
#[derive(Clone, Copy, Debug)]
pub struct ChainedFields<'a> {
    /// The row's id (AUTOINCREMENT: never reused, so a missing id is a deleted row).
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// To what.
    pub target: &'a str,
    /// The stored outcome name.
    pub outcome: &'a str,
    /// Detail line.
    pub detail: &'a str,
}

impl<'a> ChainedFields<'a> {
    /// The fields of `entry` when it is stored as row `id`.
    pub fn of(id: i64, entry: &'a AuditEntry) -> Self {
        Self {
            id,
            // Stored as SQLite INTEGER (i64); an `at` beyond i64 would not be stored at all.
            at: i64::try_from(entry.at).unwrap_or(i64::MAX),
            actor: &entry.actor,
            action: &entry.action,
            target: &entry.target,
            outcome: entry.outcome.as_str(),
            detail: &entry.detail,
        }
    }
}

/// `hash_n = SHA-256(tag ‖ hash_{n-1} ‖ id ‖ at ‖ len ‖ actor ‖ len ‖ action ‖ len ‖ target ‖
/// len ‖ outcome ‖ len ‖ detail)`: the tag is [`CHAIN_TAG`] (19 ASCII octets), `hash_{n-1}`
/// the previous entry's 32 octets ([`AuditHash::GENESIS`] for the first), `id` and `at` 8-octet
/// big-endian two's complement, and each text field its UTF-8 octets preceded by their count as
/// a 4-octet big-endian integer. Every field has a fixed width or a length prefix, so no two
/// different rows encode alike (`docs/audit.md` gives the same rule for third parties).
pub fn chain_hash(previous: &AuditHash, fields: &ChainedFields<'_>) -> AuditHash {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(CHAIN_TAG);
    ctx.update(&previous.0);
    ctx.update(&fields.id.to_be_bytes());
    ctx.update(&fields.at.to_be_bytes());
    for text in [
        fields.actor,
        fields.action,
        fields.target,
        fields.outcome,
        fields.detail,
    ] {
        // Longer than 4 GiB cannot be stored in one SQLite value (1 GB limit), so it never is.
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        ctx.update(&len.to_be_bytes());
        ctx.update(text.as_bytes());
    }
    let digest = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    AuditHash(out)
}

/// One stored row as the verifier reads it: the fields, and the two hash columns as stored
/// (either may be missing or of the wrong length if the database was edited).
#[derive(Clone, Debug)]
pub struct StoredEntry {
    /// The row's id.
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// To what.
    pub target: String,
    /// The stored outcome name.
    pub outcome: String,
    /// Detail line.
    pub detail: String,
    /// `prev_hash`: the hash this row says it chains from.
    pub previous: Option<Vec<u8>>,
    /// `hash`: this row's hash.
    pub hash: Option<Vec<u8>>,
}

impl StoredEntry {
    /// The fields the chain commits to, as if the row were stored as `id`.
    pub fn fields_as(&self, id: i64) -> ChainedFields<'_> {
        ChainedFields {
            id,
            at: self.at,
            actor: &self.actor,
            action: &self.action,
            target: &self.target,
            outcome: &self.outcome,
            detail: &self.detail,
        }
    }

    /// Whether the stored hash is what this row's content, stored as `id` and chained from
    /// `previous`, hashes to.
    fn hashes_to(&self, previous: Option<&[u8]>, id: i64, hash: Option<&[u8]>) -> bool {
        let (Some(previous), Some(hash)) = (
            previous.and_then(AuditHash::from_slice),
            hash.and_then(AuditHash::from_slice),
        ) else {
            return false;
        };
        chain_hash(&previous, &self.fields_as(id)) == hash
    }

    /// Whether this row (found at another position) is really the content of `origin`: either
    /// the whole row was moved there from `origin.id` (its own hash columns came with it), or
    /// only its content was (and `origin` still holds the hash columns it was chained with).
    pub fn came_from(&self, origin: &StoredEntry) -> bool {
        self.hashes_to(self.previous.as_deref(), origin.id, self.hash.as_deref())
            || self.hashes_to(
                origin.previous.as_deref(),
                origin.id,
                origin.hash.as_deref(),
            )
    }
}

/// The newest entry of the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// Its id.
    pub id: u64,
    /// Its hash: what a timestamp of the head is over (as SHA-256 of these 32 octets).
    pub hash: AuditHash,
}

/// A chain that verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainIntact {
    /// Entries walked.
    pub count: u64,
    /// The newest entry; `None` for an empty log.
    pub head: Option<ChainHead>,
    /// Stored timestamps whose head hash matched the chain.
    pub stamps: u64,
}

/// What is wrong with the first bad entry. Each variant names what a reader of
/// `pkid audit verify` must look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakKind {
    /// The entry's content (or its hash columns) no longer hashes to its stored hash.
    Edited,
    /// The entry holds what was written as entry `from`: rows were swapped or moved.
    Moved {
        /// Where that content was written.
        from: u64,
    },
    /// The entry hashes consistently, but the next entry was chained from a different hash:
    /// it was edited and its hash recomputed.
    Rewritten,
    /// Entries from the named one up to `last` are gone.
    Deleted {
        /// The last missing id.
        last: u64,
    },
    /// The entry has no hash at all: it was written around pkid.
    Unchained,
    /// A stored timestamp proves the chain's hash at this entry was `stamped`; it is not now.
    /// The chain was rewritten consistently from here on, which only a stamp can reveal.
    StampMismatch {
        /// The hash the timestamp covers.
        stamped: AuditHash,
    },
}

/// The first bad entry of the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    /// The first bad entry's id (the first missing one for a deletion).
    pub id: u64,
    /// What was found.
    pub kind: BreakKind,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.id;
        match self.kind {
            BreakKind::Edited => write!(
                f,
                "audit entry #{id} was edited: its content no longer matches its hash"
            ),
            BreakKind::Moved { from } => write!(
                f,
                "audit entry #{id} was reordered: it holds the entry written as #{from}"
            ),
            BreakKind::Rewritten => write!(
                f,
                "audit entry #{id} was edited and its hash recomputed: entry #{} was chained from a different hash",
                id + 1
            ),
            BreakKind::Deleted { last } if last == id => {
                write!(f, "audit entry #{id} was deleted")
            }
            BreakKind::Deleted { last } => {
                write!(f, "audit entries #{id} to #{last} were deleted")
            }
            BreakKind::Unchained => write!(
                f,
                "audit entry #{id} has no hash: it was written around pkid"
            ),
            BreakKind::StampMismatch { stamped } => write!(
                f,
                "the audit chain was rewritten at or before entry #{id}: its timestamp covers hash {stamped}, the chain now has another"
            ),
        }
    }
}

/// What walking the chain found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainVerdict {
    /// Every entry chains from its predecessor, no id is missing, every stamp matches.
    Intact(ChainIntact),
    /// The first entry that does not.
    Broken(ChainBreak),
}

/// Walks the chain one stored row at a time, in id order, holding only the previous row's id
/// and hash: a log of any length is verified in constant memory. Pure: the store streams the
/// rows in.
#[derive(Debug)]
pub struct ChainWalk {
    last: Option<(i64, AuditHash)>,
    count: u64,
    /// The stored stamps' (audit id, head hash), ascending by id, not yet reached.
    stamps: std::collections::VecDeque<(i64, AuditHash)>,
    stamps_matched: u64,
}

impl ChainWalk {
    /// A walk from the start of the log that also checks `stamps` (audit id, head hash; any
    /// order).
    pub fn new(mut stamps: Vec<(u64, AuditHash)>) -> Self {
        stamps.sort_by_key(|s| s.0);
        Self {
            last: None,
            count: 0,
            stamps: stamps
                .into_iter()
                .map(|(id, h)| (i64::try_from(id).unwrap_or(i64::MAX), h))
                .collect(),
            stamps_matched: 0,
        }
    }

    /// Checks the next row (ids ascending). An [`BreakKind::Edited`] answer may be refined by
    /// the caller into [`BreakKind::Moved`] with [`StoredEntry::came_from`] over the rows after.
    pub fn step(&mut self, row: &StoredEntry) -> Result<(), ChainBreak> {
        let expected_id = self.last.map_or(1, |(id, _)| id + 1);
        if row.id > expected_id {
            return Err(ChainBreak {
                id: id_u64(expected_id),
                kind: BreakKind::Deleted {
                    last: id_u64(row.id - 1),
                },
            });
        }
        let id = id_u64(row.id);
        let (Some(previous), Some(hash)) = (&row.previous, &row.hash) else {
            return Err(ChainBreak {
                id,
                kind: BreakKind::Unchained,
            });
        };
        let (Some(previous), Some(hash)) =
            (AuditHash::from_slice(previous), AuditHash::from_slice(hash))
        else {
            return Err(ChainBreak {
                id,
                kind: BreakKind::Edited,
            });
        };
        if chain_hash(&previous, &row.fields_as(row.id)) != hash {
            return Err(ChainBreak {
                id,
                kind: BreakKind::Edited,
            });
        }
        match self.last {
            None if previous != AuditHash::GENESIS => {
                return Err(ChainBreak {
                    id,
                    kind: BreakKind::Edited,
                })
            }
            Some((last_id, last_hash)) if previous != last_hash => {
                return Err(ChainBreak {
                    id: id_u64(last_id),
                    kind: BreakKind::Rewritten,
                })
            }
            _ => {}
        }
        while let Some(&(stamp_id, stamped)) = self.stamps.front() {
            if stamp_id > row.id {
                break;
            }
            // A stamp of an id below this row's that was not matched is a deleted entry, which
            // the id check has reported already; so stamp_id == row.id here.
            if stamped != hash {
                return Err(ChainBreak {
                    id,
                    kind: BreakKind::StampMismatch { stamped },
                });
            }
            self.stamps_matched += 1;
            self.stamps.pop_front();
        }
        self.last = Some((row.id, hash));
        self.count += 1;
        Ok(())
    }

    /// Ends the walk. `assigned` is the highest id the store ever assigned (SQLite's
    /// `sqlite_sequence`): entries above the last one walked were deleted from the end, as are
    /// stamped entries the walk never reached.
    pub fn finish(self, assigned: u64) -> ChainVerdict {
        let last_id = self.last.map_or(0, |(id, _)| id_u64(id));
        let stamped_beyond = self.stamps.back().map_or(0, |&(id, _)| id_u64(id));
        let missing_up_to = assigned.max(stamped_beyond);
        if missing_up_to > last_id {
            return ChainVerdict::Broken(ChainBreak {
                id: last_id + 1,
                kind: BreakKind::Deleted {
                    last: missing_up_to,
                },
            });
        }
        ChainVerdict::Intact(ChainIntact {
            count: self.count,
            head: self.last.map(|(id, hash)| ChainHead {
                id: id_u64(id),
                hash,
            }),
            stamps: self.stamps_matched,
        })
    }
}

/// A stored id as unsigned (ids start at 1; a negative one, only possible by editing the file,
/// reads as 0).
fn id_u64(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

/// A timestamp of the chain's head: an RFC 3161 token from pkid's own TSA over SHA-256 of the
/// head's hash, so the log's state at `at` can be proved to a third party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditStamp {
    /// The head entry's id when stamped.
    pub audit_id: u64,
    /// Its hash.
    pub head_hash: AuditHash,
    /// The DER `TimeStampResp` (status granted, with the token), as `openssl ts -verify -in`
    /// reads it.
    pub token: Vec<u8>,
    /// When it was taken, Unix seconds.
    pub at: u64,
}
