//! CRL publication: partitions, numbers, generation, storage, the schedule, and what is served.
//!
//! ```text
//! store change ─ChangeListener─▶ wake ─debounce─▶ dirty scopes ─▶ regenerate (delta, or full)
//! timer (2 s) ─▶ CRLs past half their validity, missing ones ─▶ regenerate;  newer ones stored
//!                by another process (the CLI) ─▶ load
//! regenerate: number (store, atomic) → scan rows (one read) → CrlBuilder → sign → put_crl
//!             (kept only if newest) → swap into `published` (the previous CRL is served until then)
//! ```
//!
//! A *scope* is an issuer, or one partition ("shard") of it. Full and delta CRLs of a scope share
//! one CRL number sequence (RFC 5280 §5.2.3); numbers are handed out by the store in a write
//! transaction, so two generations — threads here, or the CLI in another process — never get
//! the same number, and a CRL is stored only if it is newer than the stored one.

use crate::ca::{Authority, Issuer, ROOT};
use crate::config::CrlConfig;
use crate::metrics::Metrics;
use crate::store::crl::{CrlInfo, CrlQuery, CrlRow, CrlVisitor, NewCrl, ShardFilter, StoredCrl};
use crate::store::follow::ChangeListener;
use crate::store::{AuditEntry, CertStatus, Change, Outcome, StoreError};
use arc_swap::ArcSwap;
use bytes::Bytes;
use pkid_protocols::crl::{
    self, CrlBuilder, CrlError, CrlKind, CrlParams, CrlSerial, RevokedEntry,
};
use pkid_protocols::revocation::CrlReason;
pub use scope::{crl_url, partitioned, CrlKey};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// How often the background task checks the schedule and the store for CRLs stored by another
/// process. Both checks are a few small queries.
const TICK: Duration = Duration::from_secs(2);
/// Room reserved beyond the previous CRL's size for the next one of the scope, as a fraction
/// (1/8). Reserved pages that are never written cost no memory, and a large buffer that must
/// grow after all is moved by the allocator (`mremap`), not copied.
const GROWTH_DIVISOR: usize = 8;

/// A signed CRL being served.
#[derive(Debug)]
pub struct PublishedCrl {
    /// The DER CertificateList.
    pub der: Bytes,
    pem: OnceLock<Bytes>,
    /// cRLNumber.
    pub number: u64,
    /// For a delta, the base CRL's number.
    pub base_number: Option<u64>,
    /// thisUpdate, Unix seconds.
    pub this_update: u64,
    /// nextUpdate, Unix seconds.
    pub next_update: u64,
    /// Change-sequence position the content reflects.
    pub change_seq: u64,
    /// Number of entries.
    pub entries: u64,
}

impl PublishedCrl {
    fn from_info(info: &CrlInfo, der: Bytes) -> Self {
        Self {
            der,
            pem: OnceLock::new(),
            number: info.number,
            base_number: info.base_number,
            this_update: info.this_update,
            next_update: info.next_update,
            change_seq: info.change_seq,
            entries: info.entries,
        }
    }

    /// The CRL as PEM (`X509 CRL`), made on first request and kept.
    pub fn pem(&self) -> Bytes {
        self.pem
            .get_or_init(|| Bytes::from(crl::crl_pem(&self.der)))
            .clone()
    }

    /// A strong validator: CRL numbers are never reused within a scope, and a URL names one
    /// scope and kind, so the number identifies the bytes.
    pub fn etag(&self, pem: bool) -> String {
        if pem {
            format!("\"{}.pem\"", self.number)
        } else {
            format!("\"{}\"", self.number)
        }
    }

    /// Whether it is time to re-sign: half of its validity has passed.
    fn due(&self, now: u64) -> bool {
        now >= self.this_update + (self.next_update.saturating_sub(self.this_update)) / 2
    }
}

/// What one generation did.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The CRL number this generation signed (never signed by any other generation).
    pub signed: u64,
    /// Whether that CRL was stored; `false` when a newer one had been stored meanwhile.
    pub stored: bool,
    /// The CRL now served for the scope: the one signed here, or the newer stored one.
    pub published: Arc<PublishedCrl>,
}

/// Why a CRL could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrlServiceError {
    /// No such issuer (the CLI's `--issuer`).
    #[error("unknown issuer {0:?} (`pkid ca list` shows the issuers)")]
    UnknownIssuer(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Building, linting or signing failed.
    #[error(transparent)]
    Build(#[from] CrlError),
    /// Something that cannot happen did (a stored serial that is not hex, …).
    #[error("{0}")]
    Internal(String),
}

/// Buffers kept for reuse, by scope.
type Spares = Mutex<HashMap<CrlKey, Vec<u8>>>;

/// Smallest CRL buffer worth keeping for reuse: below this, fresh memory costs little.
const SPARE_MIN_BYTES: usize = 4 << 20;

/// The owner of a served CRL's bytes. When the last `Bytes` referring to it goes — the CRL was
/// replaced and every response sending it has finished — a large buffer goes back to its
/// scope's spare slot: the scope's next CRL is written into memory that is already mapped
/// instead of paying a page fault per 4 KiB (a third of the build time at a million entries).
/// The cost is one spare buffer per large scope.
struct RecycledBuffer {
    buf: Vec<u8>,
    start: usize,
    key: CrlKey,
    spares: std::sync::Weak<Spares>,
}

impl AsRef<[u8]> for RecycledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

impl Drop for RecycledBuffer {
    fn drop(&mut self) {
        if self.buf.capacity() < SPARE_MIN_BYTES {
            return;
        }
        if let Some(spares) = self.spares.upgrade() {
            let buf = std::mem::take(&mut self.buf);
            spares
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(self.key.clone(), buf);
        }
    }
}

/// Feeds store rows into the builder.
struct EntryFeed<'a> {
    builder: &'a mut CrlBuilder,
    this_update: u64,
    error: Option<CrlServiceError>,
    clamped: u64,
}

impl CrlVisitor for EntryFeed<'_> {
    fn row(&mut self, row: CrlRow<'_>) -> bool {
        let serial = match CrlSerial::from_hex(row.serial) {
            Ok(s) => s,
            Err(e) => {
                self.error = Some(CrlServiceError::Internal(format!(
                    "stored serial {:?}: {e}",
                    row.serial
                )));
                return false;
            }
        };
        let reason = match row.status {
            CertStatus::Revoked => row.reason,
            CertStatus::Hold => Some(CrlReason::CertificateHold),
            // Only delta scans return valid rows: released from hold since the base.
            CertStatus::Valid => Some(CrlReason::RemoveFromCRL),
            CertStatus::Pending | CertStatus::Abandoned => return true,
        };
        // A revocation stamped by another node whose clock runs ahead must not stop the CRL:
        // list it as of thisUpdate.
        let revoked_at = if row.at > self.this_update {
            self.clamped += 1;
            self.this_update
        } else {
            row.at
        };
        let entry = RevokedEntry {
            serial,
            revoked_at,
            reason,
            invalidity_date: row.invalidity_date.map(|t| t.min(revoked_at)),
        };
        match self.builder.push(&entry) {
            Ok(()) => true,
            Err(e) => {
                self.error = Some(e.into());
                false
            }
        }
    }
}

/// The CRL publisher: generates, stores and serves the CRLs of every issuer.
pub struct CrlService {
    authority: Arc<Authority>,
    config: CrlConfig,
    public_url: String,
    actor: String,
    metrics: Option<Arc<Metrics>>,
    published: ArcSwap<HashMap<CrlKey, Arc<PublishedCrl>>>,
    /// Partitions served per issuer (for 404 versus "not generated yet").
    shard_counts: ArcSwap<HashMap<String, u32>>,
    /// Serialises generation in this process (numbers are safe across processes anyway).
    generating: Mutex<()>,
    /// Buffers of large CRLs no longer served, one per scope, for the scope's next CRL.
    spares: Arc<Spares>,
    /// Changes up to here are reflected in the published CRLs.
    seen_seq: AtomicU64,
    wake: Notify,
}

impl CrlService {
    /// A publisher for the authority's issuers. `actor` names it in the audit log.
    pub fn new(
        authority: Arc<Authority>,
        config: CrlConfig,
        public_url: &str,
        actor: &str,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            authority,
            config,
            public_url: public_url.trim_end_matches('/').to_string(),
            actor: actor.to_string(),
            metrics,
            published: ArcSwap::from_pointee(HashMap::new()),
            shard_counts: ArcSwap::from_pointee(HashMap::new()),
            generating: Mutex::new(()),
            spares: Arc::new(Mutex::new(HashMap::new())),
            seen_seq: AtomicU64::new(0),
            wake: Notify::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &CrlConfig {
        &self.config
    }

    /// The issuers CRLs are published for: every issuer of the CA, including those added
    /// while the daemon runs.
    pub fn issuers(&self) -> Vec<String> {
        self.authority
            .issuers()
            .iter()
            .map(|i| i.name.clone())
            .collect()
    }

    fn issuer(&self, name: &str) -> Result<Arc<Issuer>, CrlServiceError> {
        self.authority
            .issuer(name)
            .ok_or_else(|| CrlServiceError::UnknownIssuer(name.to_string()))
    }

    /// The scopes of an issuer: the issuer-wide CRL, then its partitions (the configured ones
    /// and any that certificates were assigned earlier, so their URLs keep working).
    pub fn scopes(&self, issuer: &str) -> Result<Vec<Option<u32>>, CrlServiceError> {
        self.issuer(issuer)?;
        let mut scopes = vec![None];
        if issuer != ROOT {
            let stored = self.authority.store().max_crl_shard(issuer)?;
            let configured = if self.config.shards > 0 {
                self.config.shards
            } else {
                0
            };
            let count = configured.max(stored.map_or(0, |m| m.saturating_add(1)));
            scopes.extend((0..count).map(Some));
            self.shard_counts.rcu(|m| {
                let mut m = HashMap::clone(m);
                m.insert(issuer.to_string(), count);
                m
            });
        }
        Ok(scopes)
    }

    /// Which certificates a scope's CRL lists, and the issuingDistributionPoint it carries.
    fn coverage(&self, issuer: &str, shard: Option<u32>) -> (ShardFilter, Option<String>) {
        match shard {
            Some(n) => (
                ShardFilter::Shard(n),
                Some(crl_url(&self.public_url, issuer, shard, false)),
            ),
            None if partitioned(&self.config, issuer) => (
                ShardFilter::Unsharded,
                Some(crl_url(&self.public_url, issuer, None, false)),
            ),
            None => (ShardFilter::Any, None),
        }
    }

    /// The CRL served under `key`, if one is.
    pub fn lookup(&self, key: &CrlKey) -> Option<Arc<PublishedCrl>> {
        self.published.load().get(key).cloned()
    }

    /// Whether `key` names a CRL this daemon publishes (whether or not it exists yet).
    pub fn serves(&self, key: &CrlKey) -> bool {
        if !self.authority.has_issuer(&key.issuer) || (key.delta && !self.config.deltas) {
            return false;
        }
        match key.shard {
            None => true,
            Some(n) => self
                .shard_counts
                .load()
                .get(&key.issuer)
                .is_some_and(|c| n < *c),
        }
    }

    /// Every published CRL, by key.
    pub fn published(&self) -> Vec<(CrlKey, Arc<PublishedCrl>)> {
        let mut v: Vec<_> = self
            .published
            .load()
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn publish(&self, key: &CrlKey, crl: Arc<PublishedCrl>) {
        self.published.rcu(|m| {
            let mut m = HashMap::clone(m);
            // Never replace a CRL by an older one (a racing load of a stored CRL).
            if m.get(key).is_none_or(|old| old.number < crl.number) {
                m.insert(key.clone(), crl.clone());
            }
            m
        });
        if let Some(m) = &self.metrics {
            let scope = key
                .shard
                .map_or_else(|| "all".to_string(), |n| n.to_string());
            let kind = if key.delta { "delta" } else { "full" };
            let labels = [key.issuer.as_str(), scope.as_str(), kind];
            m.crl_number
                .with_label_values(&labels)
                .set(i64::try_from(crl.number).unwrap_or(i64::MAX));
            m.crl_entries
                .with_label_values(&labels)
                .set(i64::try_from(crl.entries).unwrap_or(i64::MAX));
            m.crl_bytes
                .with_label_values(&labels)
                .set(i64::try_from(crl.der.len()).unwrap_or(i64::MAX));
        }
    }

    /// Wraps a CRL's buffer for serving; see [`RecycledBuffer`].
    fn served_bytes(&self, key: &CrlKey, buf: Vec<u8>, start: usize) -> Bytes {
        Bytes::from_owner(RecycledBuffer {
            buf,
            start,
            key: key.clone(),
            spares: Arc::downgrade(&self.spares),
        })
    }

    fn load(&self, stored: StoredCrl) -> Arc<PublishedCrl> {
        let key = CrlKey::new(&stored.info.issuer, stored.info.shard, stored.info.delta);
        let der = self.served_bytes(&key, stored.der, 0);
        let crl = Arc::new(PublishedCrl::from_info(&stored.info, der));
        self.publish(&key, crl.clone());
        crl
    }

    /// Serves the newest stored CRL of every scope (at start, and those stored by another
    /// process, e.g. `pkid crl generate`). Returns how many were loaded.
    pub fn sync_from_store(&self) -> Result<usize, CrlServiceError> {
        let store = self.authority.store();
        let mut loaded = 0;
        for info in store.crl_infos()? {
            if !self.authority.has_issuer(&info.issuer) {
                continue;
            }
            let key = CrlKey::new(&info.issuer, info.shard, info.delta);
            if self.lookup(&key).is_some_and(|c| c.number >= info.number) {
                continue;
            }
            match store.stored_crl(&info.issuer, info.shard, info.delta) {
                Ok(Some(stored)) => {
                    tracing::info!(crl = %key.label(), number = stored.info.number, "loaded stored CRL");
                    self.load(stored);
                    loaded += 1;
                }
                Ok(None) => {}
                // A body file lost or damaged (a restore without `crls/`, a disk fault): the
                // scope is left unpublished, and the schedule signs a new CRL with a new number.
                Err(e) => {
                    tracing::warn!(crl = %key.label(), number = info.number, error = %e, "stored CRL unreadable; a new one will be signed")
                }
            }
        }
        Ok(loaded)
    }

    /// Generates, signs, stores and publishes one CRL. A delta is generated against the
    /// published full CRL of its scope (made first if there is none).
    pub fn generate(
        &self,
        issuer: &str,
        shard: Option<u32>,
        delta: bool,
    ) -> Result<Arc<PublishedCrl>, CrlServiceError> {
        self.generate_detailed(issuer, shard, delta)
            .map(|g| g.published)
    }

    /// [`CrlService::generate`], also telling which number was signed and whether it was stored.
    pub fn generate_detailed(
        &self,
        issuer: &str,
        shard: Option<u32>,
        delta: bool,
    ) -> Result<Generated, CrlServiceError> {
        let _serial = self
            .generating
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if delta {
            let base = match self.lookup(&CrlKey::new(issuer, shard, false)) {
                Some(b) => b,
                None => self.generate_locked(issuer, shard, None)?.published,
            };
            self.generate_locked(issuer, shard, Some(&base))
        } else {
            self.generate_locked(issuer, shard, None)
        }
    }

    fn generate_locked(
        &self,
        issuer_name: &str,
        shard: Option<u32>,
        base: Option<&PublishedCrl>,
    ) -> Result<Generated, CrlServiceError> {
        let started = Instant::now();
        let key = CrlKey::new(issuer_name, shard, base.is_some());
        let kind_label = if key.delta { "delta" } else { "full" };
        let result = self.build_and_store(issuer_name, shard, base, &key);
        if let Some(m) = &self.metrics {
            let outcome = if result.is_ok() { "ok" } else { "error" };
            m.crl_generations
                .with_label_values(&[issuer_name, kind_label, outcome])
                .inc();
            m.crl_generation_seconds
                .with_label_values(&[kind_label])
                .observe(started.elapsed().as_secs_f64());
        }
        let (outcome, detail) = match &result {
            Ok(g) if g.stored => (
                Outcome::Success,
                format!(
                    "number={} kind={kind_label} entries={} bytes={}",
                    g.signed,
                    g.published.entries,
                    g.published.der.len()
                ),
            ),
            Ok(g) => (
                Outcome::Success,
                format!(
                    "number={} kind={kind_label} not stored: number {} was stored meanwhile",
                    g.signed, g.published.number
                ),
            ),
            Err(e) => (Outcome::Failed, format!("kind={kind_label}: {e}")),
        };
        match &result {
            Ok(g) => {
                tracing::info!(crl = %key.label(), number = g.signed, stored = g.stored, entries = g.published.entries, bytes = g.published.der.len(), elapsed = ?started.elapsed(), "CRL signed")
            }
            Err(e) => {
                tracing::error!(crl = %key.label(), error = %e, "CRL generation failed; the previous CRL is still served")
            }
        }
        let entry = AuditEntry {
            at: self.authority.now(),
            actor: self.actor.clone(),
            action: "crl.issue".into(),
            target: key.label(),
            outcome,
            detail,
        };
        if let Err(e) = self.authority.store().audit(&entry) {
            tracing::error!(error = %e, "could not write audit record");
        }
        result
    }

    fn build_and_store(
        &self,
        issuer_name: &str,
        shard: Option<u32>,
        base: Option<&PublishedCrl>,
        key: &CrlKey,
    ) -> Result<Generated, CrlServiceError> {
        let issuer = self.issuer(issuer_name)?;
        let store = self.authority.store();
        let now = self.authority.now();
        let (filter, idp) = self.coverage(issuer_name, shard);
        let validity = if base.is_some() {
            self.config.delta_next_update_secs
        } else {
            self.config.next_update_secs
        };
        let freshest = (base.is_none() && self.config.deltas)
            .then(|| crl_url(&self.public_url, issuer_name, shard, true));
        let number = store.next_crl_number(issuer_name, shard)?;
        let params = CrlParams {
            issuer: &issuer.info,
            algorithm: issuer.signer.algorithm(),
            issuer_key: issuer.signer.public_key(),
            number,
            this_update: now,
            next_update: now + validity,
            kind: match base {
                Some(b) => CrlKind::Delta {
                    base_number: b.number,
                },
                None => CrlKind::Full,
            },
            distribution_point: idp.as_deref(),
            freshest_crl: freshest.as_deref(),
        };
        // Sized from the scope's previous CRL: no counting pass over the store.
        let expected = self.lookup(key).map_or(0, |c| c.der.len());
        let spare = self
            .spares
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
            .unwrap_or_default();
        let mut builder =
            CrlBuilder::with_buffer(&params, expected + expected / GROWTH_DIVISOR, spare)?;
        let query = CrlQuery {
            issuer: issuer_name,
            shard: filter,
            not_after_from: now.saturating_sub(self.config.expired_grace_secs),
            changed_after: base.map(|b| b.change_seq),
        };
        let mut feed = EntryFeed {
            builder: &mut builder,
            this_update: now,
            error: None,
            clamped: 0,
        };
        let seq = store.scan_crl_entries(&query, &mut feed)?;
        if let Some(e) = feed.error {
            return Err(e);
        }
        if feed.clamped > 0 {
            tracing::warn!(crl = %key.label(), entries = feed.clamped, "revocation dates after thisUpdate (clock skew?) listed as of thisUpdate");
        }
        let signed = self.authority.sign_crl(&issuer, builder.finish()?)?;
        let entries = signed.entries() as u64;
        let (buf, start) = signed.into_parts();
        let der = self.served_bytes(key, buf, start);
        let info = CrlInfo {
            issuer: issuer_name.to_string(),
            shard,
            delta: base.is_some(),
            number,
            base_number: base.map(|b| b.number),
            this_update: now,
            next_update: now + validity,
            change_seq: seq,
            entries,
            size: der.len() as u64,
        };
        let stored = store.put_crl(&NewCrl {
            issuer: issuer_name,
            shard,
            delta: info.delta,
            number,
            base_number: info.base_number,
            this_update: info.this_update,
            next_update: info.next_update,
            change_seq: seq,
            entries,
            der: &der,
        })?;
        if !stored {
            // Another process stored a newer CRL for this scope meanwhile: serve that one.
            tracing::info!(crl = %key.label(), number, "a newer CRL was stored meanwhile; serving it instead");
            let newer = store
                .stored_crl(issuer_name, shard, info.delta)?
                .ok_or_else(|| CrlServiceError::Internal("the newer stored CRL vanished".into()))?;
            return Ok(Generated {
                signed: number,
                stored: false,
                published: self.load(newer),
            });
        }
        let crl = Arc::new(PublishedCrl::from_info(&info, der));
        self.publish(key, crl.clone());
        Ok(Generated {
            signed: number,
            stored: true,
            published: crl,
        })
    }

    /// Generates the full CRL (and the delta, when enabled) of every scope of `issuer`, or of
    /// every issuer. Stops at the first failure.
    pub fn generate_all(
        &self,
        issuer: Option<&str>,
    ) -> Result<Vec<(CrlKey, Arc<PublishedCrl>)>, CrlServiceError> {
        let issuers = match issuer {
            Some(name) => {
                self.issuer(name)?;
                vec![name.to_string()]
            }
            None => self.issuers(),
        };
        let mut out = Vec::new();
        for name in &issuers {
            for shard in self.scopes(name)? {
                out.push((
                    CrlKey::new(name, shard, false),
                    self.generate(name, shard, false)?,
                ));
                if self.config.deltas {
                    out.push((
                        CrlKey::new(name, shard, true),
                        self.generate(name, shard, true)?,
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The schedule: generates CRLs that are missing or past half their validity (a delta also
    /// when its base changed). Failures are logged; the rest continue.
    pub fn refresh(&self) -> Result<(), CrlServiceError> {
        let now = self.authority.now();
        for issuer in self.issuers() {
            let issuer = issuer.as_str();
            for shard in self.scopes(issuer)? {
                let full = self.lookup(&CrlKey::new(issuer, shard, false));
                let full_fresh = match full {
                    Some(f) if !f.due(now) => Some(f),
                    // A failure is logged and audited; the old CRL stays served.
                    _ => self.generate(issuer, shard, false).ok(),
                };
                if !self.config.deltas {
                    continue;
                }
                let Some(full) = full_fresh else { continue };
                let delta = self.lookup(&CrlKey::new(issuer, shard, true));
                if delta.is_none_or(|d| d.due(now) || d.base_number != Some(full.number)) {
                    let _ = self.generate(issuer, shard, true);
                }
            }
        }
        Ok(())
    }

    /// Regenerates the CRLs of scopes whose revocations, holds or releases changed since the
    /// last call: the delta when deltas are on (complete CRLs follow the schedule), otherwise
    /// the complete CRL.
    pub fn apply_changes(&self) -> Result<usize, CrlServiceError> {
        let since = self.seen_seq.load(Ordering::SeqCst);
        let (changes, seq) = self.authority.store().crl_changes_since(since)?;
        let mut targets = BTreeSet::new();
        for c in &changes {
            if !self.authority.has_issuer(&c.issuer) {
                continue;
            }
            if partitioned(&self.config, &c.issuer) {
                targets.insert((c.issuer.clone(), c.shard));
            } else {
                targets.insert((c.issuer.clone(), None));
                if let Some(n) = c.shard {
                    targets.insert((c.issuer.clone(), Some(n))); // partition CRLs kept from before
                }
            }
        }
        let mut failed = None;
        for (issuer, shard) in &targets {
            let delta =
                self.config.deltas && self.lookup(&CrlKey::new(issuer, *shard, false)).is_some();
            let current = self.lookup(&CrlKey::new(issuer, *shard, delta));
            if current.is_some_and(|c| c.change_seq >= seq) {
                continue; // already reflects these changes (e.g. made by the CLI)
            }
            if let Err(e) = self.generate(issuer, *shard, delta) {
                failed = Some(e);
            }
        }
        match failed {
            // Keep the old position: the next wake-up or tick retries.
            Some(e) => Err(e),
            None => {
                self.seen_seq.store(seq, Ordering::SeqCst);
                Ok(targets.len())
            }
        }
    }

    /// Start-up: serve what is stored, generate what is missing or due, then catch up with
    /// revocations made while the daemon was down.
    pub fn start(&self) -> Result<(), CrlServiceError> {
        self.sync_from_store()?;
        self.refresh()?;
        let oldest = self
            .published
            .load()
            .values()
            .map(|c| c.change_seq)
            .min()
            .unwrap_or(0);
        self.seen_seq.store(oldest, Ordering::SeqCst);
        self.apply_changes()?;
        Ok(())
    }

    /// The daemon's background task (after [`CrlService::start`]): debounced regeneration
    /// after changes, and the schedule. Store and signing work runs on blocking threads.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let blocking = |svc: Arc<Self>,
                        what: &'static str,
                        f: fn(&Self) -> Result<(), CrlServiceError>| async move {
            match tokio::task::spawn_blocking(move || f(&svc)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, what, "CRL upkeep"),
                Err(e) => tracing::error!(error = %e, what, "CRL task failed"),
            }
        };
        loop {
            tokio::select! {
                _ = self.wake.notified() => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.debounce) => {}
                        _ = stop.changed() => return,
                    }
                    blocking(self.clone(), "changes", |s| s.apply_changes().map(|_| ())).await;
                }
                _ = tokio::time::sleep(TICK) => {
                    blocking(self.clone(), "schedule", |s| {
                        s.sync_from_store()?;
                        s.refresh()
                    }).await;
                }
                _ = stop.changed() => return,
            }
        }
    }
}

impl ChangeListener for CrlService {
    fn apply(&self, changes: &[Change]) {
        if !changes.is_empty() {
            // Which scopes changed is worked out from the store after the debounce; issuance
            // alone changes no CRL and is filtered there.
            self.wake.notify_one();
        }
    }
}

pub mod scope;
#[cfg(test)]
mod tests;
