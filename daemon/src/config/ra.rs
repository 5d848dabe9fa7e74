//! The `[ra]` section: the registration authority's deadlines, calendar, documents and
//! personal-data rules (see `docs/ra.md`).

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Largest request document accepted, bytes: a scanned, signed PDF of a few pages is well under
/// this; anything larger is refused with 413 before it is parsed.
const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;
/// Most requests one bulk call may carry (a school files for all its teachers at once).
pub const MAX_BULK_REQUESTS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRa {
    calendar: String,
    working_days: u32,
    revoke_hours: u32,
    working_hours: [u8; 2],
    max_document_bytes: usize,
    document_trust: Vec<String>,
    retention_days: u32,
    audit_stamp_minutes: u32,
    token_days: u32,
}

impl Default for RawRa {
    fn default() -> Self {
        Self {
            calendar: "calendar-vn.toml".into(),
            working_days: 3,
            revoke_hours: 12,
            working_hours: [8, 17],
            max_document_bytes: 10 * 1024 * 1024,
            document_trust: Vec::new(),
            retention_days: 1825,
            audit_stamp_minutes: 60,
            token_days: 90,
        }
    }
}

/// Registration-authority settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaConfig {
    /// The working-day calendar file (`calendar-vn.toml` in the data directory by default).
    pub calendar: PathBuf,
    /// Working days to fulfil an issue, renew or modify request once accepted (3).
    pub working_days: u32,
    /// Clock hours to fulfil a revoke request once accepted (12, holidays included).
    pub revoke_hours: u32,
    /// Start and end hour (local, `Asia/Ho_Chi_Minh`) of a working day, for turnaround reports.
    pub working_hours: (u8, u8),
    /// Largest request document (and its detached signature), bytes.
    pub max_document_bytes: usize,
    /// Extra trust anchors (PEM files) for request-document signers, besides pkid's own root.
    pub document_trust: Vec<PathBuf>,
    /// Days after a request closes before its personal fields are erased.
    pub retention_days: u32,
    /// Minutes between timestamps of the audit chain's head (0 = never).
    pub audit_stamp_minutes: u32,
    /// Lifetime of a bearer token made by `pkid operator token`, days.
    pub token_days: u32,
}

impl RaConfig {
    pub(super) fn from_raw(r: RawRa, data_dir: &Path) -> Result<Self, String> {
        if !(1..=30).contains(&r.working_days) {
            return Err("ra.working_days must be between 1 and 30".into());
        }
        if !(1..=168).contains(&r.revoke_hours) {
            return Err("ra.revoke_hours must be between 1 and 168".into());
        }
        let [start, end] = r.working_hours;
        if start >= end || end > 24 {
            return Err("ra.working_hours must be [start, end] with start < end <= 24".into());
        }
        if !(1024..=MAX_DOCUMENT_BYTES).contains(&r.max_document_bytes) {
            return Err(format!(
                "ra.max_document_bytes must be between 1024 and {MAX_DOCUMENT_BYTES}"
            ));
        }
        if r.retention_days == 0 {
            return Err("ra.retention_days must be at least 1".into());
        }
        if !(1..=3650).contains(&r.token_days) {
            return Err("ra.token_days must be between 1 and 3650".into());
        }
        Ok(Self {
            calendar: data_dir.join(r.calendar),
            working_days: r.working_days,
            revoke_hours: r.revoke_hours,
            working_hours: (start, end),
            max_document_bytes: r.max_document_bytes,
            document_trust: r.document_trust.iter().map(|p| data_dir.join(p)).collect(),
            retention_days: r.retention_days,
            audit_stamp_minutes: r.audit_stamp_minutes,
            token_days: r.token_days,
        })
    }
}
