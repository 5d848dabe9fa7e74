//! The OCSP responder: decides each CertID from the revocation index, serves pre-signed
//! responses from a cache, and signs fresh ones (nonces, cache misses) through the `Signer`.
//!
//! ```text
//! request ─parse─▶ CertIDs ─issuer hashes─▶ issuer index ─lookup─▶ status
//!                                                │
//!        no nonce, one CertID: cache (issuer, hash, serial) ── hit and same status ──▶ bytes
//!        otherwise / miss: sign (Signer) ──▶ bytes (cached when nonce-less, one CertID)
//!
//! caches, each bounded in bytes ([`CacheUse`]):
//!   responses  good / revoked answers        [ocsp] cache_bytes (and cache_capacity)
//!   unknown    answers for unissued serials  [ocsp] unknown_cache_bytes (small: anyone can
//!                                            ask about any serial; they evict only each other)
//!   forms      exact request bytes ─▶ answer [ocsp] forms_bytes (never for unknown answers)
//! ```
//!
//! A cached response records the index status it was signed for and is served only while the
//! index still says the same, so a revocation can never be answered from a stale cache entry —
//! even one inserted by a request that raced the revocation. Invalidation on change only frees
//! the memory early.

use crate::clock::Clock;
use crate::config::{OcspConfig, UnknownIssuer};
use crate::index::{serial_key, serial_key_hex, Entry, IssuerIndex, Packed, RevocationIndex};
use crate::keys::{self, Signer};
use crate::metrics::Metrics;
use crate::peer_faults::PeerFaults;
use crate::store::follow::ChangeListener;
use crate::store::Change;
use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper::header::{
    HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, EXPIRES, LAST_MODIFIED,
};
use moka::sync::Cache;
use pkid_protocols::ocsp::{
    self, CertIdHash, IssuerHashes, OcspError, ParsedRequest, Responder, Status, Validity,
};
use prometheus::{IntCounter, IntGauge};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};
use x509_cert::Certificate;
use x509_ocsp::{CertId, OcspResponseStatus};

/// Media type of OCSP responses (RFC 6960 Appendix C.2).
pub const OCSP_RESPONSE: &str = "application/ocsp-response";
/// Status recorded for a cached `unknown` answer (no index entry).
const UNKNOWN: u64 = u64::MAX;
/// How far thisUpdate is set before producedAt: OpenSSL tolerates five minutes of skew by
/// default; backdating by the same covers relying parties whose clocks are behind ours. A
/// response reporting a revocation less than this old is back-dated only to the revocation.
const THIS_UPDATE_BACKDATE_SECS: u64 = 300;

/// An issuer this responder answers for, with its own delegated responder.
struct Served {
    name: String,
    /// Its slot in the revocation index.
    index_slot: usize,
    hashes: IssuerHashes,
    responder: Responder,
    signer: Arc<dyn Signer>,
}

/// One issuer to answer for: its certificate, and the delegated responder certificate and key
/// that sign its answers (RFC 6960 §4.2.2.2: issued by that issuer, id-kp-OCSPSigning).
pub struct ServedIssuer {
    /// Name, as in the index.
    pub name: String,
    /// The issuer's certificate (CertIDs are matched against its name and key hashes).
    pub certificate: Certificate,
    /// Its delegated responder certificate.
    pub responder: Certificate,
    /// The responder's key.
    pub signer: Arc<dyn Signer>,
}

/// Cache key: issuer slot, CertID hash algorithm (and parameter form), serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    issuer: u8,
    alg: u8,
    serial: u128,
}

/// A signed, nonce-less response with its HTTP caching headers precomputed.
#[derive(Debug)]
pub struct Cached {
    /// The OCSPResponse DER.
    pub der: Bytes,
    /// Where it is cached.
    key: CacheKey,
    /// Index status it was signed for (see the module docs).
    status: u64,
    /// Whether the answer is `unknown` (shared caches must not keep it: the certificate may
    /// have been issued a moment ago by another process).
    pub unknown: bool,
    /// The response's HTTP header fields, built once: Content-Type, Cache-Control (with the
    /// configured max-age; see [`OcspService::shorter_max_age`]), Expires, Last-Modified and
    /// ETag.
    pub headers: HeaderMap,
    /// thisUpdate, Unix seconds.
    pub this_update: u64,
    /// nextUpdate, Unix seconds.
    pub next_update: u64,
    /// Strong validator: a hash of the response bytes.
    pub etag: HeaderValue,
}

/// How a request arrived; part of the key under which its exact bytes are remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `GET /ocsp/{form}`: the path remainder exactly as sent (still percent-escaped).
    Get,
    /// `POST /ocsp`: the body.
    Post,
}

/// Bytes a cached response holds besides its DER: the `Cached` value and its prebuilt header
/// map (five fields, about 200 bytes of values), the `Arc`, and moka's per-entry bookkeeping
/// (hash-table slot, access-order and expiry nodes). An estimate on the high side, so the
/// configured byte bounds are upper bounds on what the caches hold.
const CACHED_OVERHEAD_BYTES: usize = 1024;
/// Bytes a remembered form holds besides its own bytes and the answer it keeps: the boxed
/// slice, the `Arc`, and moka's per-entry bookkeeping.
const FORM_OVERHEAD_BYTES: usize = 192;

/// The weight of a cached response in its cache: what it holds, in bytes, but at least
/// `floor` (so that a byte bound also enforces an entry-count bound).
fn response_weight(c: &Cached, floor: u32) -> u32 {
    let bytes = c.der.len() + CACHED_OVERHEAD_BYTES;
    u32::try_from(bytes).unwrap_or(u32::MAX).max(floor)
}

/// The weight of a remembered form: its bytes, the per-entry overhead, and the whole answer it
/// keeps (counted again even while `cache` holds the same answer, so `forms_bytes` bounds
/// what the forms can keep alive on their own).
#[allow(clippy::borrowed_box)] // moka's weigher is given `&K`, and the key is a `Box<[u8]>`
fn form_weight(form: &Box<[u8]>, answer: &Arc<Cached>) -> u32 {
    u32::try_from(form.len() + FORM_OVERHEAD_BYTES)
        .unwrap_or(u32::MAX)
        .saturating_add(response_weight(answer, 0))
}

/// Bytes held by each of the responder's caches (moka's weighted sizes), for tests, metrics and
/// capacity planning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheUse {
    /// Responses for issued certificates (good, revoked), bounded by `[ocsp] cache_bytes`.
    pub responses: u64,
    /// `unknown` answers, bounded by `[ocsp] unknown_cache_bytes`.
    pub unknown: u64,
    /// Remembered request forms, bounded by `[ocsp] forms_bytes`.
    pub forms: u64,
}

/// Longest request form remembered (RFC 5019 requests are under 300 bytes even as escaped
/// GET paths); longer ones always take the full parser.
const MAX_FORM_BYTES: usize = 511;

/// Looks up a remembered form without allocating: the form's kind octet and bytes, copied
/// into a stack buffer.
fn with_form_key<T>(form: Form, bytes: &[u8], f: impl FnOnce(&[u8]) -> T) -> Option<T> {
    if bytes.len() > MAX_FORM_BYTES {
        return None;
    }
    let mut buf = [0u8; MAX_FORM_BYTES + 1];
    buf[0] = form as u8;
    buf[1..=bytes.len()].copy_from_slice(bytes);
    Some(f(&buf[..=bytes.len()]))
}

/// What to send back.
#[derive(Debug)]
pub enum Answer {
    /// A cacheable response (nonce-less, one CertID), with its HTTP validators.
    Cacheable(Arc<Cached>),
    /// A response signed for this request only (nonce, several CertIDs, `unknown` issuers).
    Fresh(Bytes),
    /// An unsigned error response.
    Error(OcspResponseStatus, OcspError),
}

/// The work left when a request needs a signature.
pub struct SignJob {
    /// The issuer whose responder signs.
    by: Arc<Served>,
    decisions: Vec<(CertId, Status)>,
    nonce: Option<x509_cert::ext::Extension>,
    cache_as: Option<(CacheKey, u64)>,
}

impl std::fmt::Debug for SignJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignJob")
            .field("by", &self.by.name)
            .field("decisions", &self.decisions.len())
            .field("nonce", &self.nonce.is_some())
            .finish()
    }
}

/// The outcome of looking a request up.
#[derive(Debug)]
pub enum Prepared {
    /// Answered without signing.
    Ready(Answer),
    /// Needs a signature.
    Sign(SignJob),
}

/// Pre-resolved counters for the hot path (no label hashing per request).
struct Counters {
    /// `pkid_ocsp_cache_bytes{cache="responses"}`.
    responses_bytes: IntGauge,
    /// `pkid_ocsp_cache_bytes{cache="unknown"}`.
    unknown_bytes: IntGauge,
    /// `pkid_ocsp_cache_bytes{cache="forms"}`.
    forms_bytes: IntGauge,
    hit: IntCounter,
    miss: IntCounter,
    good: IntCounter,
    revoked: IntCounter,
    unknown: IntCounter,
    errors: prometheus::IntCounterVec,
}

/// Everything a responder is made of.
pub struct OcspParts {
    /// Issuers answered for, each with its responder; the first also signs `unknown` answers
    /// for CertIDs of issuers not served.
    pub issuers: Vec<ServedIssuer>,
    /// True for fast in-process keys; slow backends (PKCS#11) are signed on blocking threads.
    pub inline_signing: bool,
    /// The revocation index.
    pub index: Arc<RevocationIndex>,
    /// Settings.
    pub config: OcspConfig,
    /// Clock.
    pub clock: Arc<dyn Clock>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// The OCSP responder.
pub struct OcspService {
    /// Appended to only (an issuer added while the daemon runs), so a position — the issuer
    /// octet of cache keys — names the same issuer for the life of the process.
    served: ArcSwap<Vec<Arc<Served>>>,
    /// Serialises [`OcspService::add_issuer`].
    adding: Mutex<()>,
    index: Arc<RevocationIndex>,
    inline_signing: bool,
    /// Responses for issued certificates (good, revoked), bounded in bytes.
    cache: Cache<CacheKey, Arc<Cached>, ahash::RandomState>,
    /// `unknown` answers, apart and small: anyone can ask for any number of never-issued
    /// serials, and those answers must not push out the ones for issued certificates.
    unknown: Cache<CacheKey, Arc<Cached>, ahash::RandomState>,
    /// Exact request forms (kind octet + bytes) already answered from `cache`, and that
    /// answer: identical bytes always parse to the identical CertID, so a repeated request
    /// skips base64 and DER decoding and a second cache lookup. It is served under the same
    /// rule as `cache` (index status unchanged, not due for refresh); otherwise the request
    /// takes the full path and the entry is replaced. A form's weight includes its answer, so
    /// the answers forms keep alive after `cache` dropped them are within `forms_bytes`.
    /// `unknown` answers are never remembered.
    forms: Cache<Box<[u8]>, Arc<Cached>, ahash::RandomState>,
    config: OcspConfig,
    clock: Arc<dyn Clock>,
    counters: Counters,
    metrics: Arc<Metrics>,
    /// Malformed and refused requests, logged as a rate-limited summary.
    peer_faults: PeerFaults,
    /// `Cache-Control` for answers with at least `max_age_secs` left (nearly all of them).
    capped_cache_control: HeaderValue,
}

/// The cache key's algorithm code: the CertID hash and whether its parameters are absent
/// (the response echoes the CertID, so the two encodings are cached apart).
fn alg_code(hash: CertIdHash, params_absent: bool) -> u8 {
    let base = match hash {
        CertIdHash::Sha1 => 0,
        CertIdHash::Sha256 => 2,
    };
    base + u8::from(params_absent)
}

/// A byte count as a gauge value.
fn gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn http_date(unix: u64) -> HeaderValue {
    let s = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix));
    HeaderValue::from_str(&s)
        .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

fn status_of(p: Option<Packed>) -> (Status, u64) {
    match p {
        None => (Status::Unknown, UNKNOWN),
        Some(p) => match p.entry() {
            Entry::Good => (Status::Good, p.raw()),
            Entry::Revoked { at, reason } => (Status::Revoked { at, reason }, p.raw()),
        },
    }
}

impl OcspService {
    /// Builds the responder from its parts.
    pub fn new(parts: OcspParts) -> Result<Self, OcspError> {
        let OcspParts {
            issuers,
            inline_signing,
            index,
            config,
            clock,
            metrics,
        } = parts;
        if issuers.is_empty() {
            return Err(OcspError::Internal("no issuer to answer for".into()));
        }
        let served = issuers
            .into_iter()
            .map(|i| served(i, &index))
            .collect::<Result<Vec<_>, _>>()?;
        let capped_cache_control = HeaderValue::from_str(&format!(
            "max-age={}, public, no-transform, must-revalidate",
            config.max_age_secs
        ))
        .map_err(|e| OcspError::Internal(e.to_string()))?;
        // Entries are checked for freshness when read; the time-to-live only frees memory.
        // ahash: keyed per process like std's SipHash (clients choose the keys), and several
        // times faster on the ~100-byte request forms.
        // Weighed in bytes; every response counts at least cache_bytes / cache_capacity, so
        // both bounds hold.
        let ttl = Duration::from_secs(config.validity_secs - config.refresh_before_secs);
        let floor = config
            .cache_bytes
            .checked_div(config.cache_capacity)
            .unwrap_or(u64::MAX);
        let floor = u32::try_from(floor).unwrap_or(u32::MAX);
        let cache = Cache::builder()
            .max_capacity(config.cache_bytes)
            .weigher(move |_, c: &Arc<Cached>| response_weight(c, floor))
            .time_to_live(ttl)
            .build_with_hasher(ahash::RandomState::new());
        let unknown = Cache::builder()
            .max_capacity(config.unknown_cache_bytes)
            .weigher(|_, c: &Arc<Cached>| response_weight(c, 0))
            .time_to_live(ttl)
            .build_with_hasher(ahash::RandomState::new());
        let forms = Cache::builder()
            .max_capacity(config.forms_bytes)
            .weigher(form_weight)
            .time_to_live(ttl)
            .build_with_hasher(ahash::RandomState::new());
        let c = &metrics.ocsp_responses;
        let counters = Counters {
            responses_bytes: metrics.ocsp_cache_bytes.with_label_values(&["responses"]),
            unknown_bytes: metrics.ocsp_cache_bytes.with_label_values(&["unknown"]),
            forms_bytes: metrics.ocsp_cache_bytes.with_label_values(&["forms"]),
            hit: metrics.ocsp_cache.with_label_values(&["hit"]),
            miss: metrics.ocsp_cache.with_label_values(&["miss"]),
            good: c.with_label_values(&["good"]),
            revoked: c.with_label_values(&["revoked"]),
            unknown: c.with_label_values(&["unknown"]),
            errors: c.clone(),
        };
        Ok(Self {
            served: ArcSwap::from_pointee(served),
            adding: Mutex::new(()),
            index,
            inline_signing,
            cache,
            unknown,
            forms,
            config,
            clock,
            counters,
            metrics,
            peer_faults: PeerFaults::new("OCSP"),
            capped_cache_control,
        })
    }

    /// The responder's clock: Unix seconds.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Whether signing happens on the calling thread.
    pub fn signs_inline(&self) -> bool {
        self.inline_signing
    }

    /// The `Cache-Control` of a cached answer (RFC 5019 §6.2) when it differs from the one in
    /// its prebuilt headers: in the last `max_age_secs` before nextUpdate, max-age counts down
    /// to nextUpdate. `now`: Unix seconds ([`OcspService::now`]).
    pub fn shorter_max_age(&self, c: &Cached, now: u64) -> Option<HeaderValue> {
        let left = c.next_update.saturating_sub(now);
        if c.unknown || left >= self.config.max_age_secs {
            return None;
        }
        HeaderValue::from_str(&format!(
            "max-age={left}, public, no-transform, must-revalidate"
        ))
        .ok()
    }

    /// Answers for another issuer from now on (one added while the daemon runs). Its index
    /// must exist. Adding an issuer already served changes nothing.
    pub fn add_issuer(&self, issuer: ServedIssuer) -> Result<(), OcspError> {
        let _one_at_a_time = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.served.load_full();
        if current.iter().any(|s| s.name == issuer.name) {
            return Ok(());
        }
        if current.len() >= usize::from(u8::MAX) {
            return Err(OcspError::Internal(format!(
                "cannot answer for issuer {}: at most {} issuers are served",
                issuer.name,
                u8::MAX
            )));
        }
        let added = served(issuer, &self.index)?;
        tracing::info!(issuer = %added.name, "OCSP: answering for a new issuer");
        let mut next = Vec::clone(&current);
        next.push(added);
        self.served.store(Arc::new(next));
        Ok(())
    }

    /// The names of the issuers answered for.
    pub fn issuers(&self) -> Vec<String> {
        self.served.load().iter().map(|s| s.name.clone()).collect()
    }

    fn issuer_index(&self, served: &Served) -> Option<&IssuerIndex> {
        self.index.slot(served.index_slot)
    }

    fn count(&self, s: &Status) {
        match s {
            Status::Good => self.counters.good.inc(),
            Status::Revoked { .. } => self.counters.revoked.inc(),
            Status::Unknown => self.counters.unknown.inc(),
        }
    }

    fn error(&self, e: OcspError) -> Answer {
        let status = e.wire_status();
        let label = match status {
            OcspResponseStatus::MalformedRequest => "malformedRequest",
            OcspResponseStatus::Unauthorized => "unauthorized",
            OcspResponseStatus::TryLater => "tryLater",
            OcspResponseStatus::InternalError => "internalError",
            OcspResponseStatus::SigRequired => "sigRequired",
            OcspResponseStatus::Successful => "successful",
        };
        self.counters.errors.with_label_values(&[label]).inc();
        if e.is_peer_fault() {
            self.peer_faults.record(label, &e);
        } else {
            tracing::warn!(error = %e, "OCSP request failed");
        }
        Answer::Error(status, e)
    }

    /// Logs a request refused at the HTTP level for a fault of the client's (`kind`: a fixed
    /// name such as `unsupportedMediaType`), in the rate-limited summary of peer faults.
    pub fn peer_fault(&self, kind: &'static str, detail: &dyn std::fmt::Display) {
        self.peer_faults.record(kind, detail);
    }

    /// The answer to a GET whose path is not base64 (of anything): `malformedRequest`, counted
    /// and logged as every other malformed request.
    pub fn undecodable(&self) -> Answer {
        self.error(OcspError::Malformed("GET path is not base64".into()))
    }

    /// The cached answer for `key`, if it was signed for the index's current status `raw`
    /// and is not due for refresh.
    fn fresh_hit(&self, key: &CacheKey, raw: u64, now: u64) -> Option<Arc<Cached>> {
        let hit = self.cache_for(raw).get(key)?;
        self.is_current(&hit, raw, now).then_some(hit)
    }

    /// The cache an answer for index status `raw` lives in.
    fn cache_for(&self, raw: u64) -> &Cache<CacheKey, Arc<Cached>, ahash::RandomState> {
        if raw == UNKNOWN {
            &self.unknown
        } else {
            &self.cache
        }
    }

    /// Whether a cached answer was signed for the index's current status `raw` and is not yet
    /// due for refresh.
    fn is_current(&self, c: &Cached, raw: u64, now: u64) -> bool {
        c.status == raw && now + self.config.refresh_before_secs < c.next_update
    }

    /// The hot path: a request whose exact bytes were answered from the cache before, and
    /// whose cached answer is still current. `None` means: decode and [`prepare`] it.
    ///
    /// [`prepare`]: OcspService::prepare
    ///
    /// `now` (Unix seconds, [`OcspService::now`]) is read once by the caller, which also
    /// needs it for [`OcspService::shorter_max_age`]: a clock read is a measurable share of
    /// this path.
    pub fn answer_form(&self, form: Form, bytes: &[u8], now: u64) -> Option<Answer> {
        let hit = with_form_key(form, bytes, |k| self.forms.get(k)).flatten()?;
        let served = self.served.load();
        let index = self.issuer_index(served.get(usize::from(hit.key.issuer))?)?;
        let (status, raw) = status_of(index.lookup(hit.key.serial));
        if !self.is_current(&hit, raw, now) {
            return None;
        }
        self.counters.hit.inc();
        self.count(&status);
        Some(Answer::Cacheable(hit))
    }

    /// Remembers that `bytes` parsed into the cacheable `answer`, for [`answer_form`]; not for
    /// `unknown` answers (a flood of never-issued serials would fill the forms cache with
    /// entries nobody asks for again).
    ///
    /// [`answer_form`]: OcspService::answer_form
    pub fn remember_form(&self, form: Form, bytes: &[u8], answer: &Answer) {
        if let Answer::Cacheable(c) = answer {
            if !c.unknown {
                with_form_key(form, bytes, |k| self.forms.insert(k.into(), c.clone()));
                self.counters
                    .forms_bytes
                    .set(gauge(self.forms.weighted_size()));
            }
        }
    }

    /// Parses and decides a request; answers from the cache when it can.
    pub fn prepare(&self, der: &[u8]) -> Prepared {
        match ocsp::parse_request(der, self.config.max_cert_ids) {
            Ok(req) => self.decide(req),
            Err(e) => Prepared::Ready(self.error(e)),
        }
    }

    fn decide(&self, req: ParsedRequest) -> Prepared {
        let now = self.clock.now();
        let single = req.cert_ids.len() == 1 && req.nonce.is_none();
        let mut decisions = Vec::with_capacity(req.cert_ids.len());
        let mut cache_as = None;
        let served = self.served.load();
        // The responder of the first served issuer named signs; a CertID of another issuer in
        // the same request is answered `unknown` (that responder is not authorised for it).
        let mut by: Option<&Arc<Served>> = None;
        for cert_id in req.cert_ids {
            let found = served
                .iter()
                .enumerate()
                .find(|(_, s)| s.hashes.matches(&cert_id));
            if let (Some((_, issuer)), Some(b)) = (found, by) {
                if !Arc::ptr_eq(issuer, b) {
                    decisions.push((cert_id, Status::Unknown));
                    continue;
                }
            }
            let Some((slot, issuer)) = found else {
                match self.config.unknown_issuer {
                    UnknownIssuer::Unauthorized => {
                        return Prepared::Ready(self.error(OcspError::IssuerNotServed))
                    }
                    UnknownIssuer::Unknown => {
                        decisions.push((cert_id, Status::Unknown));
                        continue;
                    }
                }
            };
            by = Some(issuer);
            let key = serial_key(cert_id.serial_number.as_bytes());
            let packed = key.and_then(|k| self.issuer_index(issuer).and_then(|i| i.lookup(k)));
            let (status, raw) = status_of(packed);
            if single {
                if let (Some(serial), Some(hash)) = (key, CertIdHash::of(&cert_id)) {
                    let ck = CacheKey {
                        issuer: slot as u8,
                        alg: alg_code(hash, cert_id.hash_algorithm.parameters.is_none()),
                        serial,
                    };
                    if let Some(hit) = self.fresh_hit(&ck, raw, now) {
                        self.counters.hit.inc();
                        self.count(&status);
                        return Prepared::Ready(Answer::Cacheable(hit));
                    }
                    cache_as = Some((ck, raw));
                }
            }
            decisions.push((cert_id, status));
        }
        if single {
            self.counters.miss.inc();
        }
        let Some(by) = by.or_else(|| served.first()).cloned() else {
            return Prepared::Ready(self.error(OcspError::IssuerNotServed));
        };
        Prepared::Sign(SignJob {
            by,
            decisions,
            nonce: req.nonce,
            cache_as,
        })
    }

    /// Signs a prepared job (on a blocking thread for slow backends).
    pub fn sign(&self, job: SignJob) -> Answer {
        let now = self.clock.now();
        // thisUpdate a little in the past so relying parties whose clocks run slow still accept
        // a fresh response, but never before a revocation the response reports: thisUpdate is
        // when the status given was known to be correct (RFC 6960 §4.2.2.1), and a certificate
        // revoked a minute ago was not known revoked five minutes ago. nextUpdate keeps the full
        // configured window from thisUpdate.
        let newest_revocation = job
            .decisions
            .iter()
            .filter_map(|(_, s)| match s {
                Status::Revoked { at, .. } => Some(*at),
                Status::Good | Status::Unknown => None,
            })
            .max()
            .unwrap_or(0);
        let this_update = now
            .saturating_sub(THIS_UPDATE_BACKDATE_SECS)
            .max(newest_revocation)
            .min(now);
        let validity = Validity {
            produced_at: now,
            this_update,
            next_update: this_update + self.config.validity_secs,
        };
        for (_, s) in &job.decisions {
            self.count(s);
        }
        let signer = job.by.signer.as_ref();
        match ocsp::build_response(
            job.decisions,
            validity,
            job.nonce,
            &job.by.responder,
            signer.algorithm(),
        )
        .and_then(|unsigned| keys::sign(signer, unsigned))
        {
            Err(e) => self.error(e),
            Ok(der) => {
                let der = Bytes::from(der);
                match job.cache_as {
                    None => Answer::Fresh(der),
                    Some((key, status)) => {
                        let cached = Arc::new(self.cacheable(der, key, status, validity));
                        let cache = self.cache_for(status);
                        cache.insert(key, cached.clone());
                        let gauge_of = if status == UNKNOWN {
                            &self.counters.unknown_bytes
                        } else {
                            &self.counters.responses_bytes
                        };
                        gauge_of.set(gauge(cache.weighted_size()));
                        Answer::Cacheable(cached)
                    }
                }
            }
        }
    }

    /// A signed nonce-less response with its HTTP validators and header fields (RFC 5019 §6).
    fn cacheable(&self, der: Bytes, key: CacheKey, status: u64, validity: Validity) -> Cached {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        let etag = HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest.as_ref()[..16])))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        let unknown = status == UNKNOWN;
        let cache_control = if unknown {
            // The certificate may have been issued a moment ago by another process: shared
            // caches must revalidate, not keep it.
            HeaderValue::from_static("no-cache, public, no-transform")
        } else {
            self.capped_cache_control.clone()
        };
        let mut headers = HeaderMap::with_capacity(5);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(OCSP_RESPONSE));
        headers.insert(CACHE_CONTROL, cache_control);
        headers.insert(EXPIRES, http_date(validity.next_update));
        headers.insert(LAST_MODIFIED, http_date(validity.this_update));
        headers.insert(ETAG, etag.clone());
        Cached {
            der,
            key,
            status,
            unknown,
            headers,
            this_update: validity.this_update,
            next_update: validity.next_update,
            etag,
        }
    }

    /// Prepares and, if needed, signs on the calling thread.
    pub fn respond(&self, der: &[u8]) -> Answer {
        match self.prepare(der) {
            Prepared::Ready(a) => a,
            Prepared::Sign(job) => self.sign(job),
        }
    }

    /// Seconds until the first of the responder certificates expires (negative once expired).
    pub fn responder_expires_in(&self) -> i64 {
        let now = i64::try_from(self.clock.now()).unwrap_or(0);
        self.served
            .load()
            .iter()
            .map(|s| i64::try_from(s.responder.not_after()).unwrap_or(i64::MAX) - now)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Updates the expiry gauge (the soonest of all responders) and warns for each responder
    /// certificate close to expiry.
    pub fn check_responder_expiry(&self) {
        self.metrics
            .ocsp_responder_expiry
            .set(self.responder_expires_in());
        let now = i64::try_from(self.clock.now()).unwrap_or(0);
        for s in self.served.load().iter() {
            let left = i64::try_from(s.responder.not_after()).unwrap_or(i64::MAX) - now;
            if left <= 0 {
                tracing::error!(issuer = %s.name, "the OCSP responder certificate has expired: answering tryLater until it is replaced");
            } else if (left as u64) < self.config.expiry_warning_secs {
                tracing::warn!(
                    issuer = %s.name,
                    days_left = left / 86_400,
                    "the OCSP responder certificate expires soon; issue a new one"
                );
            }
        }
    }

    /// Signs and caches a response (SHA-1 CertID, the RFC 5019 default) for every certificate
    /// not already cached, until the cache holds `cache_capacity` responses or `cache_bytes`.
    /// Returns how many were signed.
    pub fn presign(&self) -> usize {
        let mut signed = 0usize;
        let mut bytes = 0u64;
        let all = self.served.load_full();
        for (slot, served) in all.iter().enumerate() {
            let Some(index) = self.issuer_index(served) else {
                continue;
            };
            let mut keys = Vec::new();
            index.for_each(|k, _| keys.push(k));
            for key in keys {
                if signed as u64 >= self.config.cache_capacity || bytes >= self.config.cache_bytes {
                    return signed;
                }
                let ck = CacheKey {
                    issuer: slot as u8,
                    alg: 0,
                    serial: key,
                };
                if self.cache.contains_key(&ck) {
                    continue;
                }
                let Ok(serial) = serial_number(key) else {
                    continue;
                };
                let Ok(cert_id) = served.hashes.cert_id(CertIdHash::Sha1, serial) else {
                    continue;
                };
                let (status, raw) = status_of(index.lookup(key));
                match self.sign(SignJob {
                    by: served.clone(),
                    decisions: vec![(cert_id, status)],
                    nonce: None,
                    cache_as: Some((ck, raw)),
                }) {
                    Answer::Error(..) => return signed,
                    Answer::Cacheable(c) => bytes += u64::from(response_weight(&c, 0)),
                    Answer::Fresh(_) => {}
                }
                signed += 1;
            }
        }
        signed
    }

    /// Cached responses for issued certificates.
    pub fn cached(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Bytes held by each cache, after moka has applied pending evictions.
    pub fn cache_use(&self) -> CacheUse {
        self.cache.run_pending_tasks();
        self.unknown.run_pending_tasks();
        self.forms.run_pending_tasks();
        let usage = CacheUse {
            responses: self.cache.weighted_size(),
            unknown: self.unknown.weighted_size(),
            forms: self.forms.weighted_size(),
        };
        let c = &self.counters;
        c.responses_bytes.set(gauge(usage.responses));
        c.unknown_bytes.set(gauge(usage.unknown));
        c.forms_bytes.set(gauge(usage.forms));
        usage
    }
}

/// Checks one issuer's parts and resolves its index slot and CertID hashes.
fn served(i: ServedIssuer, index: &RevocationIndex) -> Result<Arc<Served>, OcspError> {
    let index_slot = index
        .slot_of(&i.name)
        .ok_or_else(|| OcspError::Internal(format!("no revocation index for issuer {}", i.name)))?;
    if i.responder.tbs_certificate.subject_public_key_info != *i.signer.public_key() {
        return Err(OcspError::Internal(format!(
            "the OCSP key of issuer {} does not match its responder certificate",
            i.name
        )));
    }
    if i.responder.tbs_certificate.issuer != i.certificate.tbs_certificate.subject {
        return Err(OcspError::Internal(format!(
            "the OCSP responder certificate of issuer {} was not issued by it",
            i.name
        )));
    }
    Ok(Arc::new(Served {
        hashes: IssuerHashes::of(&i.certificate).map_err(|e| OcspError::Internal(e.to_string()))?,
        responder: Responder::new(i.responder)?,
        signer: i.signer,
        index_slot,
        name: i.name,
    }))
}

/// The minimal positive INTEGER for a serial key.
fn serial_number(key: u128) -> Result<x509_cert::serial_number::SerialNumber, der::Error> {
    let bytes = key.to_be_bytes();
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(15);
    let mut v = Vec::with_capacity(17);
    if bytes[start] & 0x80 != 0 {
        v.push(0);
    }
    v.extend_from_slice(&bytes[start..]);
    x509_cert::serial_number::SerialNumber::new(&v)
}

impl ChangeListener for OcspService {
    fn apply(&self, changes: &[Change]) {
        // Correctness does not depend on this (cached answers are checked against the index);
        // it frees memory and lets the next request sign the new status at once.
        for c in changes {
            let Some(serial) = serial_key_hex(&c.serial) else {
                continue;
            };
            let Some(issuer) = self.served.load().iter().position(|s| s.name == c.issuer) else {
                continue;
            };
            for alg in 0..4 {
                let key = CacheKey {
                    issuer: issuer as u8,
                    alg,
                    serial,
                };
                self.cache.invalidate(&key);
                self.unknown.invalidate(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_forms_are_keyed_by_kind_and_exact_bytes_up_to_the_limit() {
        let key = |form, bytes: &[u8]| with_form_key(form, bytes, <[u8]>::to_vec);
        let b = b"MFEwTzBNMEswSTAJBgUrDgMCGgUABBR";
        // The same bytes as a GET path and as a POST body are different forms.
        assert_ne!(key(Form::Get, b), key(Form::Post, b));
        assert_eq!(key(Form::Get, b), key(Form::Get, b));
        assert_ne!(key(Form::Get, b), key(Form::Get, &b[..b.len() - 1]));
        let longest = vec![b'A'; MAX_FORM_BYTES];
        assert_eq!(
            key(Form::Post, &longest).map(|k| k.len()),
            Some(MAX_FORM_BYTES + 1)
        );
        assert_eq!(
            key(Form::Post, &[b'A'; MAX_FORM_BYTES + 1]),
            None,
            "never remembered"
        );
    }

    #[test]
    fn serial_numbers_from_keys_are_minimal_and_positive() {
        assert_eq!(serial_number(0x80).expect("s").as_bytes(), &[0x00, 0x80]);
        assert_eq!(serial_number(0x7f).expect("s").as_bytes(), &[0x7f]);
        let k = 0x7fff_ffff_ffff_ffff_ffff_ffff_ffff_ffffu128;
        assert_eq!(serial_key(serial_number(k).expect("s").as_bytes()), Some(k));
    }
}
