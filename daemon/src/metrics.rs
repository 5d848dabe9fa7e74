//! Prometheus metrics, and the decorators that count signer and store operations.

use crate::keys::{SignError, Signer};
use crate::store::crl::{CrlInfo, CrlQuery, CrlScopeChange, CrlVisitor, NewCrl, StoredCrl};
use crate::store::outbox::{ComposeOverdue, ComposeReminder};
use crate::store::ra::{
    DocumentRecord, Operator, Organisation, RaRequests, RequestEvent, RequestFilter, RequestRecord,
    Transition,
};
use crate::store::{
    AuditEntry, AuditLog, AuditStamp, CertificateRecord, Certificates, ChainHead, ChainVerdict,
    Change, CrlStore, IssuerRecord, IssuerRegistry, ListFilter, NewCertificate, Outbox,
    OutboxMessage, QueuedMessage, StatusChange, StatusFeed, StatusRow, Store, StoreError,
    TimestampLog, TimestampRecord,
};
use pkid_protocols::SignatureAlgorithm;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use spki::SubjectPublicKeyInfoOwned;
use std::sync::Arc;
use std::time::Instant;

/// Latency buckets in seconds: 50 µs (a cached OCSP answer) to 5 s (an HSM under load).
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

/// CRL generation buckets in seconds: a handful of entries (1 ms) to millions (60 s).
const CRL_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// All metrics the daemon exports.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route and status code.
    pub http_requests: IntCounterVec,
    /// HTTP request latency by route.
    pub http_duration: HistogramVec,
    /// Requests refused by the rate limiter.
    pub rate_limited: IntCounter,
    /// Signatures by key role and outcome.
    pub signer_operations: IntCounterVec,
    /// Signing latency by key role.
    pub signer_duration: HistogramVec,
    /// Store operations by operation and outcome.
    pub store_operations: IntCounterVec,
    /// Store latency by operation.
    pub store_duration: HistogramVec,
    /// The newest store change sequence number the daemon has applied.
    pub change_seq: IntGauge,
    /// Timestamp authority metrics.
    pub tsa: TsaMetrics,
    /// The RA's notifications: the outbox and its deliveries, overdue requests.
    pub notify: NotifyMetrics,
    /// OCSP answers by certificate status or error status.
    pub ocsp_responses: IntCounterVec,
    /// OCSP response cache lookups by result (hit, miss).
    pub ocsp_cache: IntCounterVec,
    /// Bytes held by each OCSP cache (`responses`, `unknown`, `forms`), as weighed against its
    /// configured bound: a flood of never-issued serials shows as `unknown` at its bound.
    pub ocsp_cache_bytes: IntGaugeVec,
    /// Seconds until the OCSP responder certificate expires.
    pub ocsp_responder_expiry: IntGauge,
    /// Certificates in the revocation index.
    pub index_entries: IntGauge,
    /// Approximate bytes held by the revocation index.
    pub index_bytes: IntGauge,
    /// CRL generations by issuer, kind (full, delta) and outcome.
    pub crl_generations: IntCounterVec,
    /// Seconds to generate one CRL (read, build, sign, store), by kind.
    pub crl_generation_seconds: HistogramVec,
    /// cRLNumber of each published CRL, by issuer, scope and kind.
    pub crl_number: IntGaugeVec,
    /// Entries of each published CRL.
    pub crl_entries: IntGaugeVec,
    /// Size in bytes of each published CRL.
    pub crl_bytes: IntGaugeVec,
    /// Connections closed at accept, by listener and reason (`listener`, `per_client`).
    pub connections_refused: IntCounterVec,
    /// Connections open, by listener.
    pub connections_open: IntGaugeVec,
    /// The last readiness verdict by part (`store`, `keys`): 1 ready, 0 not. Set by each
    /// `/readyz`, so an alert can name the part without scraping the probe's text.
    pub ready: IntGaugeVec,
    /// EST requests by operation and outcome (`issued`, `accepted`, or the refusal's reason:
    /// `unauthenticated`, `bad_base64`, `bad_csr`, `key_type`, `subject`, …).
    pub est_requests: IntCounterVec,
    /// CMP messages by body type and outcome (`answered`, or the failure bit sent:
    /// `badMessageCheck`, `badPOP`, `transactionIdInUse`, …).
    pub cmp_messages: IntCounterVec,
}

fn must<T>(r: Result<T, prometheus::Error>) -> T {
    // Metric definitions are static; a failure here is a programming error caught by tests.
    r.unwrap_or_else(|e| panic!("metric definition: {e}"))
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("pkid".into()), None).unwrap_or_default();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = must(HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            ));
            must(registry.register(Box::new(h.clone())));
            h
        };
        let http_requests = counter(
            "http_requests_total",
            "HTTP requests by route and status.",
            &["route", "status"],
        );
        let http_duration = histogram(
            "http_request_duration_seconds",
            "HTTP request latency.",
            &["route"],
        );
        let signer_operations = counter(
            "signer_operations_total",
            "Signatures by key role and outcome.",
            &["role", "outcome"],
        );
        let signer_duration = histogram(
            "signer_duration_seconds",
            "Signing latency by key role.",
            &["role"],
        );
        let store_operations = counter(
            "store_operations_total",
            "Store operations by operation and outcome.",
            &["op", "outcome"],
        );
        let store_duration = histogram(
            "store_duration_seconds",
            "Store latency by operation.",
            &["op"],
        );
        let rate_limited = must(IntCounter::new(
            "http_rate_limited_total",
            "Requests answered 429.",
        ));
        must(registry.register(Box::new(rate_limited.clone())));
        let gauge = |name: &str, help: &str| {
            let g = must(IntGauge::new(name, help));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let change_seq = gauge(
            "store_change_seq",
            "Newest store change applied by this daemon.",
        );
        let ocsp_responses = counter(
            "ocsp_responses_total",
            "OCSP answers by certificate status or error status.",
            &["status"],
        );
        let ocsp_cache = counter(
            "ocsp_cache_lookups_total",
            "OCSP response cache lookups.",
            &["result"],
        );
        let ocsp_cache_bytes = must(IntGaugeVec::new(
            Opts::new(
                "ocsp_cache_bytes",
                "Bytes held by each OCSP cache, as weighed against its bound.",
            ),
            &["cache"],
        ));
        must(registry.register(Box::new(ocsp_cache_bytes.clone())));
        let ocsp_responder_expiry = gauge(
            "ocsp_responder_expiry_seconds",
            "Seconds until the OCSP responder certificate expires.",
        );
        let index_entries = gauge(
            "revocation_index_entries",
            "Certificates in the revocation index.",
        );
        let index_bytes = gauge(
            "revocation_index_bytes",
            "Approximate bytes held by the revocation index.",
        );
        let crl_generations = counter(
            "crl_generations_total",
            "CRL generations by issuer, kind and outcome.",
            &["issuer", "kind", "outcome"],
        );
        let crl_generation_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "crl_generation_seconds",
                "Seconds to read, build, sign and store one CRL.",
            )
            .buckets(CRL_BUCKETS.to_vec()),
            &["kind"],
        ));
        must(registry.register(Box::new(crl_generation_seconds.clone())));
        let crl_gauge = |name: &str, help: &str| {
            let g = must(IntGaugeVec::new(
                Opts::new(name, help),
                &["issuer", "scope", "kind"],
            ));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let crl_number = crl_gauge("crl_number", "cRLNumber of each published CRL.");
        let crl_entries = crl_gauge("crl_entries", "Entries of each published CRL.");
        let crl_bytes = crl_gauge("crl_bytes", "Size in bytes of each published CRL.");
        let ready = must(IntGaugeVec::new(
            Opts::new(
                "ready",
                "The last /readyz verdict by part (store, keys): 1 ready, 0 not.",
            ),
            &["part"],
        ));
        must(registry.register(Box::new(ready.clone())));
        let tsa = TsaMetrics::register(&registry);
        let notify = NotifyMetrics::register(&registry);
        let connections_refused = counter(
            "connections_refused_total",
            "Connections closed at accept because a connection cap was reached.",
            &["listener", "reason"],
        );
        let connections_open = must(IntGaugeVec::new(
            Opts::new("connections_open", "Connections open, by listener."),
            &["listener"],
        ));
        must(registry.register(Box::new(connections_open.clone())));
        let est_requests = counter(
            "est_requests_total",
            "EST requests by operation and outcome.",
            &["operation", "outcome"],
        );
        let cmp_messages = counter(
            "cmp_messages_total",
            "CMP messages by body type and outcome.",
            &["body", "outcome"],
        );
        Self {
            est_requests,
            cmp_messages,
            registry,
            http_requests,
            http_duration,
            rate_limited,
            signer_operations,
            signer_duration,
            store_operations,
            store_duration,
            change_seq,
            tsa,
            notify,
            ocsp_responses,
            ocsp_cache,
            ocsp_cache_bytes,
            ocsp_responder_expiry,
            index_entries,
            index_bytes,
            crl_generations,
            crl_generation_seconds,
            crl_number,
            crl_entries,
            crl_bytes,
            connections_refused,
            connections_open,
            ready,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `outcome` label values of `pkid_signer_operations_total` (as [`MeteredSigner::sign`] sets them).
const SIGN_OUTCOMES: [&str; 3] = ["ok", "error", "unavailable"];

/// A signer that counts and times its signatures.
pub struct MeteredSigner {
    inner: Arc<dyn Signer>,
    /// The role's series, resolved once (no label hashing per signature).
    duration: Histogram,
    ok: IntCounter,
    error: IntCounter,
    unavailable: IntCounter,
}

impl MeteredSigner {
    /// Wraps `inner`, labelling its metrics with `role`.
    ///
    /// The role's series are created here, at zero: a labelled Prometheus metric is exported
    /// only once a label set exists, so without this `/metrics` would show no `pkid_signer_*`
    /// line until the first signature, and `rate()` would miss the first one.
    pub fn wrap(inner: Arc<dyn Signer>, role: &str, metrics: Arc<Metrics>) -> Arc<dyn Signer> {
        let [ok, error, unavailable] =
            SIGN_OUTCOMES.map(|o| metrics.signer_operations.with_label_values(&[role, o]));
        Arc::new(Self {
            inner,
            duration: metrics.signer_duration.with_label_values(&[role]),
            ok,
            error,
            unavailable,
        })
    }

    fn record<T>(&self, start: Instant, r: &Result<T, SignError>) {
        self.duration.observe(start.elapsed().as_secs_f64());
        match r {
            Ok(_) => self.ok.inc(),
            Err(SignError::Unavailable(_)) => self.unavailable.inc(),
            Err(_) => self.error.inc(),
        }
    }
}

impl Signer for MeteredSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.inner.algorithm()
    }
    fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
        self.inner.public_key()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let start = Instant::now();
        let r = self.inner.sign(message);
        self.record(start, &r);
        r
    }
    fn sign_digest(
        &self,
        message: &[u8],
        digest: &aws_lc_rs::digest::Digest,
    ) -> Result<Vec<u8>, SignError> {
        let start = Instant::now();
        let r = self.inner.sign_digest(message, digest);
        self.record(start, &r);
        r
    }
}

/// A store that counts and times its operations. It implements each role by forwarding every
/// method, so a method added to a role does not compile until it is metered here too.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(Self { inner, metrics })
    }

    fn observe<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let r = f();
        self.metrics
            .store_duration
            .with_label_values(&[op])
            .observe(start.elapsed().as_secs_f64());
        self.metrics
            .store_operations
            .with_label_values(&[op, if r.is_ok() { "ok" } else { "error" }])
            .inc();
        r
    }
}

impl Certificates for MeteredStore {
    fn search(
        &self,
        query: &crate::store::CertificateQuery,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<crate::store::SearchHit>, StoreError> {
        self.observe("search", || self.inner.search(query, before, limit))
    }
    fn reserve(&self, cert: &NewCertificate) -> Result<(), StoreError> {
        self.observe("reserve", || self.inner.reserve(cert))
    }
    fn complete(&self, serial: &str, der: &[u8]) -> Result<(), StoreError> {
        self.observe("complete", || self.inner.complete(serial, der))
    }
    fn stale_pending(
        &self,
        created_before: u64,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        self.observe("stale_pending", || {
            self.inner.stale_pending(created_before, limit)
        })
    }
    fn complete_recovered(
        &self,
        serial: &str,
        der: &[u8],
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.observe("complete_recovered", || {
            self.inner.complete_recovered(serial, der, audit)
        })
    }
    fn abandon(&self, serial: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        self.observe("abandon", || self.inner.abandon(serial, audit))
    }
    fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        self.observe("certificate", || self.inner.certificate(serial))
    }
    fn list(&self, filter: &ListFilter) -> Result<Vec<CertificateRecord>, StoreError> {
        self.observe("list", || self.inner.list(filter))
    }
    fn change_status(
        &self,
        serial: &str,
        change: StatusChange,
        audit: &AuditEntry,
    ) -> Result<CertificateRecord, StoreError> {
        self.observe("change_status", || {
            self.inner.change_status(serial, change, audit)
        })
    }
    fn complete_superseding(
        &self,
        serial: &str,
        der: &[u8],
        predecessor: &str,
        change: StatusChange,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.observe("complete_superseding", || {
            self.inner
                .complete_superseding(serial, der, predecessor, change, audit)
        })
    }
}

impl AuditLog for MeteredStore {
    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.observe("audit", || self.inner.audit(entry))
    }
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.observe("audit_log", || self.inner.audit_log(limit))
    }
    fn audit_page(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        self.observe("audit_page", || self.inner.audit_page(before, limit))
    }
    fn audit_of_target(
        &self,
        target: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        self.observe("audit_of_target", || {
            self.inner.audit_of_target(target, before, limit)
        })
    }
    fn verify_audit_chain(&self) -> Result<ChainVerdict, StoreError> {
        self.observe("verify_audit_chain", || self.inner.verify_audit_chain())
    }
    fn audit_head(&self) -> Result<Option<ChainHead>, StoreError> {
        self.observe("audit_head", || self.inner.audit_head())
    }
    fn record_audit_stamp(&self, stamp: &AuditStamp) -> Result<(), StoreError> {
        self.observe("record_audit_stamp", || {
            self.inner.record_audit_stamp(stamp)
        })
    }
    fn audit_stamps(&self) -> Result<Vec<AuditStamp>, StoreError> {
        self.observe("audit_stamps", || self.inner.audit_stamps())
    }
    fn latest_audit_stamp(&self) -> Result<Option<AuditStamp>, StoreError> {
        self.observe("latest_audit_stamp", || self.inner.latest_audit_stamp())
    }
}

impl StatusFeed for MeteredStore {
    fn changes_since(&self, seq: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.observe("changes_since", || self.inner.changes_since(seq, limit))
    }
    fn changes_at(&self, seqs: &[u64]) -> Result<Vec<Change>, StoreError> {
        self.observe("changes_at", || self.inner.changes_at(seqs))
    }
    fn ping(&self) -> Result<(), StoreError> {
        self.observe("ping", || self.inner.ping())
    }
    fn scan_statuses(&self, visit: &mut dyn FnMut(StatusRow<'_>)) -> Result<u64, StoreError> {
        self.observe("scan_statuses", || self.inner.scan_statuses(visit))
    }
}

impl CrlStore for MeteredStore {
    fn set_crl_shard(&self, serial: &str, shard: u32) -> Result<(), StoreError> {
        self.observe("set_crl_shard", || self.inner.set_crl_shard(serial, shard))
    }
    fn scan_crl_entries(
        &self,
        query: &CrlQuery<'_>,
        visitor: &mut dyn CrlVisitor,
    ) -> Result<u64, StoreError> {
        self.observe("scan_crl_entries", || {
            self.inner.scan_crl_entries(query, visitor)
        })
    }
    fn crl_changes_since(&self, seq: u64) -> Result<(Vec<CrlScopeChange>, u64), StoreError> {
        self.observe("crl_changes_since", || self.inner.crl_changes_since(seq))
    }
    fn max_crl_shard(&self, issuer: &str) -> Result<Option<u32>, StoreError> {
        self.observe("max_crl_shard", || self.inner.max_crl_shard(issuer))
    }
    fn next_crl_number(&self, issuer: &str, shard: Option<u32>) -> Result<u64, StoreError> {
        self.observe("next_crl_number", || {
            self.inner.next_crl_number(issuer, shard)
        })
    }
    fn put_crl(&self, crl: &NewCrl<'_>) -> Result<bool, StoreError> {
        self.observe("put_crl", || self.inner.put_crl(crl))
    }
    fn crl_infos(&self) -> Result<Vec<CrlInfo>, StoreError> {
        self.observe("crl_infos", || self.inner.crl_infos())
    }
    fn stored_crl(
        &self,
        issuer: &str,
        shard: Option<u32>,
        delta: bool,
    ) -> Result<Option<StoredCrl>, StoreError> {
        self.observe("stored_crl", || self.inner.stored_crl(issuer, shard, delta))
    }
}

impl IssuerRegistry for MeteredStore {
    fn register_issuer(
        &self,
        issuer: &IssuerRecord,
        responder_der: &[u8],
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.observe("register_issuer", || {
            self.inner.register_issuer(issuer, responder_der, audit)
        })
    }
    fn issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        self.observe("issuers", || self.inner.issuers())
    }
}

impl RaRequests for MeteredStore {
    fn erase_personal_data(
        &self,
        closed_before: u64,
        at: u64,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        self.observe("erase_personal_data", || {
            self.inner.erase_personal_data(closed_before, at, audit)
        })
    }
    fn spend_revocation_code(
        &self,
        serial: &str,
        sha256: &[u8],
        at: u64,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.observe("spend_revocation_code", || {
            self.inner.spend_revocation_code(serial, sha256, at, audit)
        })
    }
    fn restore_revocation_code(&self, serial: &str) -> Result<(), StoreError> {
        self.observe("restore_revocation_code", || {
            self.inner.restore_revocation_code(serial)
        })
    }
    fn requests_of_subscriber(&self, email: &str) -> Result<Vec<RequestRecord>, StoreError> {
        self.observe("requests_of_subscriber", || {
            self.inner.requests_of_subscriber(email)
        })
    }
    fn pause_issuance(
        &self,
        pause: &crate::store::ra::IssuancePause,
        audit: &AuditEntry,
    ) -> Result<i64, StoreError> {
        self.observe("pause_issuance", || self.inner.pause_issuance(pause, audit))
    }
    fn active_pause(
        &self,
        issuer: &str,
    ) -> Result<Option<crate::store::ra::IssuancePause>, StoreError> {
        self.observe("active_pause", || self.inner.active_pause(issuer))
    }
    fn pauses(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<crate::store::ra::IssuancePause>, StoreError> {
        self.observe("pauses", || self.inner.pauses(from, to))
    }
    fn propose(
        &self,
        c: &crate::store::ra::Confirmation,
        audit: &AuditEntry,
    ) -> Result<i64, StoreError> {
        self.observe("propose", || self.inner.propose(c, audit))
    }
    fn confirmation(&self, id: i64) -> Result<Option<crate::store::ra::Confirmation>, StoreError> {
        self.observe("confirmation", || self.inner.confirmation(id))
    }
    fn pending_confirmations(&self) -> Result<Vec<crate::store::ra::Confirmation>, StoreError> {
        self.observe("pending_confirmations", || {
            self.inner.pending_confirmations()
        })
    }
    fn confirm(
        &self,
        id: i64,
        by: &str,
        at: u64,
        audit: &AuditEntry,
    ) -> Result<crate::store::ra::Confirmation, StoreError> {
        self.observe("confirm", || self.inner.confirm(id, by, at, audit))
    }
    fn report_rows(
        &self,
        scope: &RequestFilter,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(&crate::store::ra::ReportRow<'_>),
    ) -> Result<(), StoreError> {
        self.observe("report_rows", || {
            self.inner.report_rows(scope, from, to, visit)
        })
    }
    fn request_counts_by_state(
        &self,
        scope: &RequestFilter,
    ) -> Result<Vec<(crate::store::ra::RequestState, u64)>, StoreError> {
        self.observe("request_counts_by_state", || {
            self.inner.request_counts_by_state(scope)
        })
    }
    fn certificate_counts(
        &self,
        scope: &RequestFilter,
        at: u64,
        horizon: u64,
    ) -> Result<crate::store::ra::CertificateCounts, StoreError> {
        self.observe("certificate_counts", || {
            self.inner.certificate_counts(scope, at, horizon)
        })
    }
    fn certificates_expiring_by_month(
        &self,
        scope: &RequestFilter,
        at: u64,
        until: u64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.observe("certificates_expiring_by_month", || {
            self.inner.certificates_expiring_by_month(scope, at, until)
        })
    }
    fn add_organisation(&self, org: &Organisation, audit: &AuditEntry) -> Result<(), StoreError> {
        self.observe("add_organisation", || {
            self.inner.add_organisation(org, audit)
        })
    }
    fn organisation(&self, id: &str) -> Result<Option<Organisation>, StoreError> {
        self.observe("organisation", || self.inner.organisation(id))
    }
    fn organisations(&self) -> Result<Vec<Organisation>, StoreError> {
        self.observe("organisations", || self.inner.organisations())
    }
    fn remove_organisation(&self, id: &str, at: u64, audit: &AuditEntry) -> Result<(), StoreError> {
        self.observe("remove_organisation", || {
            self.inner.remove_organisation(id, at, audit)
        })
    }
    fn add_operator(&self, op: &Operator, audit: &AuditEntry) -> Result<(), StoreError> {
        self.observe("add_operator", || self.inner.add_operator(op, audit))
    }
    fn operator(&self, id: &str) -> Result<Option<Operator>, StoreError> {
        self.observe("operator", || self.inner.operator(id))
    }
    fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        self.observe("operators", || self.inner.operators())
    }
    fn update_operator(&self, op: &Operator, audit: &AuditEntry) -> Result<(), StoreError> {
        self.observe("update_operator", || self.inner.update_operator(op, audit))
    }
    fn spend_operator_totp_step(&self, id: &str, step: u64) -> Result<bool, StoreError> {
        self.observe("spend_operator_totp_step", || {
            self.inner.spend_operator_totp_step(id, step)
        })
    }
    fn remove_operator(&self, id: &str, at: u64, audit: &AuditEntry) -> Result<(), StoreError> {
        self.observe("remove_operator", || {
            self.inner.remove_operator(id, at, audit)
        })
    }
    fn add_operator_certificate(
        &self,
        fingerprint: &[u8],
        operator: &str,
        serial: &str,
        issuer: &str,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.observe("add_operator_certificate", || {
            self.inner
                .add_operator_certificate(fingerprint, operator, serial, issuer, audit)
        })
    }
    fn operator_by_certificate(&self, fingerprint: &[u8]) -> Result<Option<Operator>, StoreError> {
        self.observe("operator_by_certificate", || {
            self.inner.operator_by_certificate(fingerprint)
        })
    }
    fn add_token(
        &self,
        hash: &[u8],
        operator: &str,
        at: u64,
        expires_at: u64,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.observe("add_token", || {
            self.inner.add_token(hash, operator, at, expires_at, audit)
        })
    }
    fn operator_by_token(&self, hash: &[u8], now: u64) -> Result<Option<Operator>, StoreError> {
        self.observe("operator_by_token", || {
            self.inner.operator_by_token(hash, now)
        })
    }
    fn revoke_tokens(&self, operator: &str, at: u64, audit: &AuditEntry) -> Result<(), StoreError> {
        self.observe("revoke_tokens", || {
            self.inner.revoke_tokens(operator, at, audit)
        })
    }
    fn submit_requests(
        &self,
        document: Option<&DocumentRecord>,
        requests: &[RequestRecord],
        audit: &AuditEntry,
        notices: &dyn Fn(&RequestRecord) -> Vec<crate::store::OutboxMessage>,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        self.observe("submit_requests", || {
            self.inner
                .submit_requests(document, requests, audit, notices)
        })
    }
    fn request(&self, id: i64) -> Result<Option<RequestRecord>, StoreError> {
        self.observe("request", || self.inner.request(id))
    }
    fn requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRecord>, StoreError> {
        self.observe("requests", || self.inner.requests(filter))
    }
    fn transition(&self, t: &Transition) -> Result<RequestRecord, StoreError> {
        self.observe("transition", || self.inner.transition(t))
    }
    fn request_events(&self, id: i64) -> Result<Vec<RequestEvent>, StoreError> {
        self.observe("request_events", || self.inner.request_events(id))
    }
    fn document(&self, id: i64) -> Result<Option<DocumentRecord>, StoreError> {
        self.observe("document", || self.inner.document(id))
    }
}

impl TimestampLog for MeteredStore {
    fn reserve_timestamp_serials(&self, count: u64) -> Result<std::ops::Range<u64>, StoreError> {
        self.observe("reserve_timestamp_serials", || {
            self.inner.reserve_timestamp_serials(count)
        })
    }
    fn record_timestamps(&self, records: &[TimestampRecord]) -> Result<(), StoreError> {
        self.observe("record_timestamps", || {
            self.inner.record_timestamps(records)
        })
    }
    fn timestamp(&self, serial: u64) -> Result<Option<TimestampRecord>, StoreError> {
        self.observe("timestamp", || self.inner.timestamp(serial))
    }
}

impl Outbox for MeteredStore {
    fn enqueue(&self, messages: &[OutboxMessage], now: u64) -> Result<usize, StoreError> {
        self.observe("outbox_enqueue", || self.inner.enqueue(messages, now))
    }
    fn due(&self, now: u64, limit: usize) -> Result<Vec<QueuedMessage>, StoreError> {
        self.observe("outbox_due", || self.inner.due(now, limit))
    }
    fn mark_delivered(&self, id: i64, now: u64) -> Result<(), StoreError> {
        self.observe("outbox_mark_delivered", || {
            self.inner.mark_delivered(id, now)
        })
    }
    fn mark_failed(
        &self,
        id: i64,
        now: u64,
        next_attempt_at: u64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.observe("outbox_mark_failed", || {
            self.inner.mark_failed(id, now, next_attempt_at, error)
        })
    }
    fn pending_count(&self) -> Result<u64, StoreError> {
        self.observe("outbox_pending_count", || self.inner.pending_count())
    }
    fn queued(&self, id: i64) -> Result<Option<QueuedMessage>, StoreError> {
        self.observe("outbox_queued", || self.inner.queued(id))
    }
    fn overdue_count(&self, now: u64) -> Result<u64, StoreError> {
        self.observe("ra_overdue_count", || self.inner.overdue_count(now))
    }
    fn scan_breaches(
        &self,
        now: u64,
        limit: usize,
        compose: &mut ComposeOverdue<'_>,
    ) -> Result<usize, StoreError> {
        self.observe("ra_scan_breaches", || {
            self.inner.scan_breaches(now, limit, compose)
        })
    }
    fn scan_expiring(
        &self,
        now: u64,
        until: u64,
        limit: usize,
        compose: &mut ComposeReminder<'_>,
    ) -> Result<usize, StoreError> {
        self.observe("ra_scan_expiring", || {
            self.inner.scan_expiring(now, until, limit, compose)
        })
    }
}

/// Notification metrics (see `crate::notify`).
pub struct NotifyMetrics {
    /// Outbox messages not delivered yet, as last counted by the worker.
    pub outbox_pending: IntGauge,
    /// Messages the server accepted, by channel.
    pub delivered: IntCounterVec,
    /// Failed delivery attempts (each retried later), by channel.
    pub failed: IntCounterVec,
    /// RA requests past their deadline while still accepted or approved.
    pub overdue_requests: IntGauge,
}

impl NotifyMetrics {
    fn register(registry: &Registry) -> Self {
        let gauge = |name: &str, help: &str| {
            let g = must(IntGauge::new(name, help));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = must(IntCounterVec::new(Opts::new(name, help), &["channel"]));
            must(registry.register(Box::new(c.clone())));
            // Both channels exported at zero from the start, so rate() sees the first one.
            for channel in ["email", "webhook"] {
                c.with_label_values(&[channel]);
            }
            c
        };
        Self {
            outbox_pending: gauge("outbox_pending", "Outbox messages not delivered yet."),
            delivered: counter(
                "notifications_delivered_total",
                "Notifications the server accepted, by channel.",
            ),
            failed: counter(
                "notifications_failed_total",
                "Failed notification delivery attempts (retried), by channel.",
            ),
            overdue_requests: gauge(
                "ra_overdue_requests",
                "RA requests past their deadline while still accepted or approved.",
            ),
        }
    }
}

/// Timestamp authority metrics. Signing latency is `pkid_signer_duration_seconds{role="tsa"}`
/// (the TSA signer is a [`MeteredSigner`]).
pub struct TsaMetrics {
    /// Tokens issued (granted responses sent).
    pub tokens_issued: IntCounter,
    /// Rejections by PKIFailureInfo name (`badAlg`, `unacceptedPolicy`, …).
    pub rejections: IntCounterVec,
    /// Token records waiting to be written to the store.
    pub records_pending: IntGauge,
    /// Kernel clock state as last read: 1 synchronised, 0 unsynchronised, -1 unknown or not checked.
    pub clock_synchronised: IntGauge,
}

impl TsaMetrics {
    fn register(registry: &Registry) -> Self {
        let tokens_issued = must(IntCounter::new(
            "tsa_tokens_issued_total",
            "Timestamp tokens issued.",
        ));
        let rejections = must(IntCounterVec::new(
            Opts::new(
                "tsa_rejections_total",
                "Timestamp requests rejected, by PKIFailureInfo.",
            ),
            &["fail_info"],
        ));
        let records_pending = must(IntGauge::new(
            "tsa_records_pending",
            "Issued-token records not yet written to the store.",
        ));
        let clock_synchronised = must(IntGauge::new(
            "tsa_clock_synchronised",
            "Kernel clock synchronised (1), not (0), unknown (-1).",
        ));
        must(registry.register(Box::new(tokens_issued.clone())));
        must(registry.register(Box::new(rejections.clone())));
        must(registry.register(Box::new(records_pending.clone())));
        must(registry.register(Box::new(clock_synchronised.clone())));
        clock_synchronised.set(-1);
        Self {
            tokens_issued,
            rejections,
            records_pending,
            clock_synchronised,
        }
    }
}

impl crate::store::CmpTransactions for MeteredStore {
    fn begin_cmp_transaction(&self, t: &crate::store::CmpTransaction) -> Result<bool, StoreError> {
        self.observe("begin_cmp_transaction", || {
            self.inner.begin_cmp_transaction(t)
        })
    }
    fn cmp_transaction(
        &self,
        transaction_id: &[u8],
    ) -> Result<Option<crate::store::CmpTransaction>, StoreError> {
        self.observe("cmp_transaction", || {
            self.inner.cmp_transaction(transaction_id)
        })
    }
    fn advance_cmp_transaction(
        &self,
        t: &crate::store::CmpTransaction,
        from: crate::store::CmpState,
        previous_client_nonce: &[u8],
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.observe("advance_cmp_transaction", || {
            self.inner
                .advance_cmp_transaction(t, from, previous_client_nonce, audit)
        })
    }
    fn unconfirmed_cmp_transactions(
        &self,
        before: u64,
    ) -> Result<Vec<crate::store::CmpTransaction>, StoreError> {
        self.observe("unconfirmed_cmp_transactions", || {
            self.inner.unconfirmed_cmp_transactions(before)
        })
    }
}

impl crate::store::Credentials for MeteredStore {
    fn add_credential(
        &self,
        c: &crate::store::CredentialRecord,
        audit: &AuditEntry,
    ) -> Result<i64, StoreError> {
        self.observe("add_credential", || self.inner.add_credential(c, audit))
    }
    fn credentials(
        &self,
        organisation: Option<&str>,
    ) -> Result<Vec<crate::store::CredentialRecord>, StoreError> {
        self.observe("credentials", || self.inner.credentials(organisation))
    }
    fn credential(
        &self,
        organisation: &str,
        kind: crate::store::CredentialKind,
        name: &str,
    ) -> Result<Option<crate::store::CredentialRecord>, StoreError> {
        self.observe("credential", || {
            self.inner.credential(organisation, kind, name)
        })
    }
    fn remove_credential(
        &self,
        organisation: &str,
        kind: crate::store::CredentialKind,
        name: &str,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.observe("remove_credential", || {
            self.inner
                .remove_credential(organisation, kind, name, audit)
        })
    }
    fn record_est_request(&self, r: &crate::store::EstRequest) -> Result<(), StoreError> {
        self.observe("record_est_request", || self.inner.record_est_request(r))
    }
    fn est_request(
        &self,
        csr_sha256: &[u8],
    ) -> Result<Option<crate::store::EstRequest>, StoreError> {
        self.observe("est_request", || self.inner.est_request(csr_sha256))
    }
}

impl crate::store::KeyDevices for MeteredStore {
    fn put_escrowed_key(
        &self,
        key: &crate::store::devices::EscrowedKey,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.observe("put_escrowed_key", || {
            self.inner.put_escrowed_key(key, audit)
        })
    }
    fn escrowed_key(
        &self,
        serial: &str,
    ) -> Result<Option<crate::store::devices::EscrowedKey>, StoreError> {
        self.observe("escrowed_key", || self.inner.escrowed_key(serial))
    }
    fn record_key_release(
        &self,
        serial: &str,
        at: u64,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.observe("record_key_release", || {
            self.inner.record_key_release(serial, at, audit)
        })
    }
    fn put_device(
        &self,
        device: &crate::store::devices::DeviceRecord,
        expected: Option<crate::store::devices::DeviceState>,
        event: &crate::store::devices::DeviceEvent,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.observe("put_device", || {
            self.inner.put_device(device, expected, event, audit)
        })
    }
    fn restore_device(
        &self,
        serial: &str,
        previous: Option<&crate::store::devices::DeviceRecord>,
        event: &crate::store::devices::DeviceEvent,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.observe("restore_device", || {
            self.inner.restore_device(serial, previous, event, audit)
        })
    }
    fn device(
        &self,
        serial: &str,
    ) -> Result<Option<crate::store::devices::DeviceRecord>, StoreError> {
        self.observe("device", || self.inner.device(serial))
    }
    fn device_by_certificate(
        &self,
        serial: &str,
    ) -> Result<Option<crate::store::devices::DeviceRecord>, StoreError> {
        self.observe("device_by_certificate", || {
            self.inner.device_by_certificate(serial)
        })
    }
    fn device_by_request(
        &self,
        id: i64,
    ) -> Result<Option<crate::store::devices::DeviceRecord>, StoreError> {
        self.observe("device_by_request", || self.inner.device_by_request(id))
    }
    fn devices(
        &self,
        organisations: Option<&[String]>,
    ) -> Result<Vec<crate::store::devices::DeviceRecord>, StoreError> {
        self.observe("devices", || self.inner.devices(organisations))
    }
    fn device_history(
        &self,
        serial: &str,
    ) -> Result<Vec<crate::store::devices::DeviceEvent>, StoreError> {
        self.observe("device_history", || self.inner.device_history(serial))
    }
}

impl crate::store::CscAccounts for MeteredStore {
    fn provision(
        &self,
        p: &crate::store::csc::Provision,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.observe("csc_provision", || self.inner.provision(p, audit))
    }
    fn credential_for_request(
        &self,
        request: i64,
    ) -> Result<Option<crate::store::csc::CredentialRecord>, StoreError> {
        self.observe("csc_credential", || {
            self.inner.credential_for_request(request)
        })
    }
    fn credential_by_serial(
        &self,
        serial: &str,
    ) -> Result<Option<crate::store::csc::CredentialRecord>, StoreError> {
        self.observe("credential_by_serial", || {
            self.inner.credential_by_serial(serial)
        })
    }
    fn csc_credential(
        &self,
        id: &str,
    ) -> Result<Option<crate::store::csc::CredentialRecord>, StoreError> {
        self.observe("csc_credential", || self.inner.csc_credential(id))
    }
    fn csc_credentials(
        &self,
        account: i64,
    ) -> Result<Vec<crate::store::csc::CredentialRecord>, StoreError> {
        self.observe("csc_credentials", || self.inner.csc_credentials(account))
    }
    fn csc_account(&self, id: i64) -> Result<Option<crate::store::csc::AccountRecord>, StoreError> {
        self.observe("csc_account", || self.inner.csc_account(id))
    }
    fn account_by_email(
        &self,
        email: &str,
    ) -> Result<Option<crate::store::csc::AccountRecord>, StoreError> {
        self.observe("csc_account", || self.inner.account_by_email(email))
    }
    fn account_by_activation(
        &self,
        sha256: &[u8],
    ) -> Result<Option<crate::store::csc::AccountRecord>, StoreError> {
        self.observe("csc_account", || self.inner.account_by_activation(sha256))
    }
    fn activate(
        &self,
        account: i64,
        sha256: &[u8],
        password_phc: &str,
        totp_sealed: &[u8],
        now: u64,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.observe("csc_activate", || {
            self.inner
                .activate(account, sha256, password_phc, totp_sealed, now, audit)
        })
    }
    fn record_failure(
        &self,
        account: i64,
        max: u32,
        audit: &AuditEntry,
    ) -> Result<crate::store::csc::AccountState, StoreError> {
        self.observe("csc_failure", || {
            self.inner.record_failure(account, max, audit)
        })
    }
    fn record_otp(&self, account: i64, step: u64, audit: &AuditEntry) -> Result<bool, StoreError> {
        self.observe("csc_otp", || self.inner.record_otp(account, step, audit))
    }
    fn reset_failures(&self, account: i64) -> Result<(), StoreError> {
        self.observe("csc_failure", || self.inner.reset_failures(account))
    }
    fn set_account_state(
        &self,
        account: i64,
        state: crate::store::csc::AccountState,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.observe("csc_account_state", || {
            self.inner.set_account_state(account, state, audit)
        })
    }
    fn reenrol(
        &self,
        account: i64,
        activation: (&[u8], u64),
        mail: &[OutboxMessage],
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.observe("csc_reenrol", || {
            self.inner.reenrol(account, activation, mail, audit)
        })
    }
    fn disable_credential(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        self.observe("csc_disable", || self.inner.disable_credential(id, audit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_series_are_exported_before_the_first_signature() {
        struct Idle(SubjectPublicKeyInfoOwned);
        impl Signer for Idle {
            fn algorithm(&self) -> SignatureAlgorithm {
                SignatureAlgorithm::EcdsaSha256
            }
            fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
                &self.0
            }
            fn sign(&self, _: &[u8]) -> Result<Vec<u8>, SignError> {
                Err(SignError::Failed("not used".into()))
            }
        }
        let metrics = Arc::new(Metrics::new());
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: spki::AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
                parameters: None,
            },
            subject_public_key: der::asn1::BitString::from_bytes(&[4]).expect("bits"),
        };
        let _signer = MeteredSigner::wrap(Arc::new(Idle(spki)), "issuing", metrics.clone());
        let text = String::from_utf8(metrics.render()).expect("utf8");
        let ok_line = |l: &&str| {
            l.starts_with("pkid_signer_operations_total{")
                && l.contains("role=\"issuing\"")
                && l.contains("outcome=\"ok\"")
        };
        assert!(
            text.lines().filter(ok_line).any(|l| l.ends_with("} 0")),
            "{text}"
        );
        assert!(
            text.contains("pkid_signer_duration_seconds_count{role=\"issuing\"} 0"),
            "{text}"
        );
    }
}
