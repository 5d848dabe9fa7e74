//! The timestamp authority (RFC 3161 with RFC 5816): `POST /tsa`.
//!
//! ```text
//! POST /tsa ─▶ http::tsa: 405 / 415 / 413 ─▶ Tsa::answer
//!   parse + decide (pkid_protocols::tsp, pure) ─▶ clock check ─▶ record slot reserved
//!   ─▶ signing thread (pool): serial from a durably reserved block
//!   ─▶ tsp::issue (TSTInfo, lint, signed attributes) ─▶ keys::sign (Signer, assemble) ─▶ 200
//!   └─▶ record queued ─▶ writer task ─▶ Store::record_timestamps (one transaction per interval)
//! ```
//!
//! Serial numbers: [`SerialAllocator`] hands out sequential serials from blocks reserved with
//! [`TimestampLog::reserve_timestamp_serials`](crate::store::TimestampLog::reserve_timestamp_serials), which commits (and syncs) the new high-water mark
//! before any serial of the block is used. A restart or crash therefore skips the unused rest
//! of a block and never repeats a serial, and no request waits for a disk sync except the rare
//! one that finds both the current and the prefetched block used up.
//!
//! Records: every granted token's record is queued before the reply is sent and written by a
//! background task in one transaction per `record_interval`. A crash loses at most the records
//! still queued (their tokens may have been delivered); the serials stay reserved. When the
//! queue is full (store down), requests are refused with `systemFailure` rather than issuing
//! unrecorded tokens.

mod pool;

use crate::clock::sync::{ClockGuard, ClockSyncSource, KernelSyncSource};
use crate::clock::Clock;
use crate::config::{ClockSyncMode, Config, TsaConfig};
use crate::datadir;
use crate::keys::{self, KeyBackend, KeyRole, Signer};
use crate::metrics::{MeteredSigner, Metrics};
use crate::peer_faults::PeerFaults;
use crate::store::{Store, StoreError, TimestampRecord};
use pkid_protocols::tsp::{
    self, Accepted, Issuance, TsaCertificate, TsaCertificateError, TspError,
};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Largest `POST /tsa` body read, in bytes (413 above it): the protocol's own parse bound.
pub const MAX_TIMESTAMP_QUERY_BYTES: usize = tsp::MAX_REQUEST_BYTES;
/// Media type of a request (RFC 3161 §3.4).
pub const QUERY_CONTENT_TYPE: &str = "application/timestamp-query";
/// Media type of a response (RFC 3161 §3.4).
pub const REPLY_CONTENT_TYPE: &str = "application/timestamp-reply";
/// Attempts to write the last records at shutdown before giving up on them.
const SHUTDOWN_WRITE_ATTEMPTS: u32 = 3;

/// Hands out timestamp serial numbers from durably reserved blocks, prefetching the next block
/// when half of the current one is used.
pub struct SerialAllocator {
    state: Mutex<SerialState>,
    store: Arc<dyn Store>,
    block: u64,
}

struct SerialState {
    current: Range<u64>,
    spare: Option<Range<u64>>,
    fetching: bool,
}

impl SerialAllocator {
    /// Reserves the first block.
    pub fn open(store: Arc<dyn Store>, block: u64) -> Result<Self, StoreError> {
        let current = store.reserve_timestamp_serials(block)?;
        tracing::info!(
            first = current.start,
            block,
            "reserved timestamp serial numbers"
        );
        Ok(Self {
            state: Mutex::new(SerialState {
                current,
                spare: None,
                fetching: false,
            }),
            store,
            block,
        })
    }

    /// The next serial number. Blocks (on the store) only when the current block and the
    /// prefetched one are both used up; call it from a signing thread, not an async task.
    pub fn next(&self) -> Result<u64, StoreError> {
        let lock_err = || StoreError::Unavailable("serial allocator lock poisoned".into());
        let (serial, prefetch) = {
            let mut s = self.state.lock().map_err(|_| lock_err())?;
            if s.current.is_empty() {
                s.current = match s.spare.take() {
                    Some(r) => r,
                    // Held under the lock on purpose: nobody may hand out serials meanwhile.
                    None => self.store.reserve_timestamp_serials(self.block)?,
                };
            }
            let serial = s.current.start;
            s.current.start += 1;
            let prefetch = s.spare.is_none()
                && !s.fetching
                && s.current.end - s.current.start <= self.block / 2;
            s.fetching |= prefetch;
            (serial, prefetch)
        };
        if prefetch {
            // Outside the lock: other requests keep drawing from the current block meanwhile.
            let reserved = self.store.reserve_timestamp_serials(self.block);
            let mut s = self.state.lock().map_err(|_| lock_err())?;
            s.fetching = false;
            match reserved {
                Ok(r) => s.spare = Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "prefetching timestamp serial numbers failed; will retry")
                }
            }
        }
        Ok(serial)
    }
}

/// Why the TSA cannot start. The daemon refuses to start while `[tsa] enabled = true`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TsaStartError {
    /// The TSA certificate is unusable (RFC 3161 §2.3).
    #[error("{0}")]
    Certificate(#[from] TsaCertificateError),
    /// The certificate is expired or not yet valid.
    #[error("the TSA certificate is not valid now (notAfter {0})")]
    Validity(String),
    /// The certificate or key could not be read.
    #[error("{0}")]
    Load(String),
    /// The signing threads could not be started.
    #[error("starting TSA signing threads: {0}")]
    Threads(String),
    /// Serial numbers could not be reserved.
    #[error("reserving timestamp serial numbers: {0}")]
    Store(#[from] StoreError),
    /// A probe token signed at start did not verify (key backend fault).
    #[error("TSA self-test failed: {0}")]
    SelfTest(String),
}

/// The timestamp authority.
pub struct Tsa {
    config: TsaConfig,
    certificate: TsaCertificate,
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
    guard: ClockGuard,
    serials: SerialAllocator,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    pool: pool::SigningPool,
    records: mpsc::Sender<TimestampRecord>,
    pending: Mutex<Option<mpsc::Receiver<TimestampRecord>>>,
    stop: watch::Sender<bool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Rejected requests, logged as a rate-limited summary.
    peer_faults: PeerFaults,
}

impl Tsa {
    /// The daemon's TSA: `None` when disabled; otherwise the TSA key from the backend (metered
    /// as role `tsa`), `certs/tsa.crt`, `clock` and the kernel's sync state.
    pub fn open(
        config: &Config,
        keys: &dyn KeyBackend,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Self>>, TsaStartError> {
        if !config.tsa.enabled {
            tracing::info!("timestamp authority disabled ([tsa] enabled = false)");
            return Ok(None);
        }
        let signer = keys
            .load(&KeyRole::Tsa)
            .map_err(|e| TsaStartError::Load(e.to_string()))?;
        let signer = MeteredSigner::wrap(signer, &KeyRole::Tsa.name(), metrics.clone());
        let der = datadir::role_certificate(&config.data_dir, &KeyRole::Tsa)
            .map_err(|e| TsaStartError::Load(e.to_string()))?;
        let mut tsa_config = config.tsa.clone();
        tsa_config.signing_threads = match &config.keys.backend {
            crate::config::KeyBackendConfig::Pkcs11(p) => p.sessions,
            crate::config::KeyBackendConfig::Software => 0,
        };
        let tsa = Self::new(
            &tsa_config,
            &der,
            signer,
            store,
            clock,
            Box::new(KernelSyncSource),
            metrics,
        )?;
        Ok(Some(Arc::new(tsa)))
    }

    /// A TSA from its parts. Checks the certificate (critical timeStamping-only EKU, key match,
    /// valid now), reserves the first serial block and signs and verifies a probe token.
    pub fn new(
        config: &TsaConfig,
        certificate_der: &[u8],
        signer: Arc<dyn Signer>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        sync: Box<dyn ClockSyncSource>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TsaStartError> {
        let certificate = TsaCertificate::new(certificate_der, signer.public_key())?;
        let now = clock.now();
        if !certificate.valid_at(now) {
            return Err(TsaStartError::Validity(pkid_protocols::time::rfc3339(
                certificate.not_after(),
            )));
        }
        let serials = SerialAllocator::open(store.clone(), config.serial_block)?;
        let guard = ClockGuard::new(
            config.clock_sync,
            sync,
            i64::from(config.settings.accuracy_ms) * 1000,
            metrics.tsa.clock_synchronised.clone(),
        );
        let signing_threads = match config.signing_threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let pool = pool::SigningPool::start(signing_threads)
            .map_err(|e| TsaStartError::Threads(e.to_string()))?;
        let (records, pending) = mpsc::channel(config.record_backlog);
        let (stop, _) = watch::channel(false);
        let tsa = Self {
            config: config.clone(),
            certificate,
            signer,
            clock,
            guard,
            serials,
            store,
            metrics,
            pool,
            records,
            pending: Mutex::new(Some(pending)),
            stop,
            writer: Mutex::new(None),
            peer_faults: PeerFaults::new("TSA"),
        };
        tsa.self_test()?;
        tsa.report_clock();
        Ok(tsa)
    }

    /// Signs a probe token (never sent anywhere; its serial is skipped) and verifies it with
    /// the certificate, so a key backend that signs wrongly is caught before any client is.
    fn self_test(&self) -> Result<(), TsaStartError> {
        let probe = Accepted::probe(self.config.settings.policy);
        let der = self
            .issue(&probe)
            .map_err(|e| TsaStartError::SelfTest(e.to_string()))?
            .0;
        tsp::verify_response(&der, self.certificate.certificate())
            .map_err(|e| TsaStartError::SelfTest(e.to_string()))?;
        Ok(())
    }

    fn report_clock(&self) {
        let state = self.guard.read();
        match (self.config.clock_sync, state) {
            (ClockSyncMode::Ignore, _) => tracing::warn!(
                "TSA clock synchronisation is not checked ([tsa] clock_sync = \"ignore\")"
            ),
            (_, None) => tracing::warn!("the platform does not report clock synchronisation"),
            (mode, Some(k)) if k.unsynchronised => tracing::warn!(
                ?mode,
                "the kernel reports the clock unsynchronised (no NTP daemon disciplines it); {}",
                if mode == ClockSyncMode::Require {
                    "timestamps are refused until it is"
                } else {
                    "issuing anyway (clock_sync = \"auto\")"
                }
            ),
            (_, Some(k)) => {
                tracing::info!(max_error_us = k.max_error_us, "kernel clock synchronised")
            }
        }
        let _ = self.guard.check();
    }

    /// Starts the record writer. Call once, inside the runtime.
    pub fn start(&self) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let Some(rx) = pending.take() else { return };
        let handle = tokio::spawn(write_records(
            self.store.clone(),
            rx,
            self.config.record_interval,
            self.stop.subscribe(),
            self.metrics.clone(),
        ));
        if let Ok(mut w) = self.writer.lock() {
            *w = Some(handle);
        }
    }

    /// Writes the records still queued and stops the writer (after in-flight requests ended).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            if let Err(e) = h.await {
                tracing::error!(error = %e, "TSA record writer failed");
            }
        }
    }

    /// Logs a request refused at the HTTP level for a fault of the client's (`kind`: a fixed
    /// name such as `unsupportedMediaType`), in the rate-limited summary of peer faults.
    pub fn peer_fault(&self, kind: &'static str, detail: &dyn std::fmt::Display) {
        self.peer_faults.record(kind, detail);
    }

    /// Answers one DER `TimeStampReq` with a DER `TimeStampResp` (granted or rejection). Never
    /// fails: every error becomes a rejection with its failInfo, and a log line.
    pub async fn respond(self: &Arc<Self>, body: &[u8]) -> Vec<u8> {
        self.answer(body)
            .await
            .unwrap_or_else(|e| tsp::rejection(&e))
    }

    /// Answers one DER `TimeStampReq`: the granted `TimeStampResp`, or the error that refuses
    /// it (already counted and logged) for the caller to encode as a rejection.
    pub async fn answer(self: &Arc<Self>, body: &[u8]) -> Result<Vec<u8>, TspError> {
        match self.try_respond(body).await {
            Ok((der, serial)) => {
                self.metrics.tsa.tokens_issued.inc();
                tracing::debug!(serial, "timestamp token issued");
                Ok(der)
            }
            Err(e) => {
                let fail_info = e.failure_info().name();
                self.metrics
                    .tsa
                    .rejections
                    .with_label_values(&[fail_info])
                    .inc();
                if e.is_peer_fault() {
                    self.peer_faults.record(fail_info, &e);
                } else {
                    tracing::error!(fail_info, reason = %e, "timestamp request refused");
                }
                Err(e)
            }
        }
    }

    async fn try_respond(self: &Arc<Self>, body: &[u8]) -> Result<(Vec<u8>, u64), TspError> {
        let accepted = tsp::decide(tsp::parse_request(body)?, &self.config.settings)?;
        self.guard
            .check()
            .map_err(|e| TspError::TimeNotAvailable(e.0))?;
        // A queue slot first: a token is only issued if its record can be kept.
        let slot = self.records.try_reserve().map_err(|_| {
            TspError::Unavailable("the record queue is full (store not keeping up)".into())
        })?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let queued = self.pool.submit(Box::new(move || {
            let _ = tx.send(this.issue(&accepted));
        }));
        if !queued {
            return Err(TspError::Internal(
                "the signing threads have stopped".into(),
            ));
        }
        let (der, record) = rx
            .await
            .map_err(|_| TspError::Internal("a signing thread ended mid-token".into()))??;
        let serial = record.serial;
        slot.send(record);
        Ok((der, serial))
    }

    /// A token over the SHA-256 digest `imprint`, issued in-process (no HTTP) with the TSA
    /// certificate included, and its record written before this returns: what the audit
    /// chain's head is stamped with (`crate::audit_stamps`). Refused like a network request
    /// when the clock is known to be unsynchronised; not counted as a token sent. Blocks on
    /// the key backend and the store: call it from a blocking thread.
    pub fn stamp(&self, imprint: &[u8; 32]) -> Result<Vec<u8>, TspError> {
        self.guard
            .check()
            .map_err(|e| TspError::TimeNotAvailable(e.0))?;
        let mut accepted = Accepted::probe(self.config.settings.policy);
        accepted.message_imprint.hashed_message = der::asn1::OctetString::new(imprint.to_vec())
            .map_err(|e| TspError::Internal(e.to_string()))?;
        let (der, record) = self.issue(&accepted)?;
        self.store
            .record_timestamps(std::slice::from_ref(&record))
            .map_err(|e| TspError::Unavailable(format!("recording the token: {e}")))?;
        // Not counted in `tokens_issued`, which counts granted responses sent to clients; the
        // store counts `record_audit_stamp`.
        Ok(der)
    }

    /// Draws a serial, reads the clock and issues. Runs on a signing thread: it may wait for the
    /// key backend or, once per serial block, for the store.
    fn issue(&self, accepted: &Accepted) -> Result<(Vec<u8>, TimestampRecord), TspError> {
        let serial = self
            .serials
            .next()
            .map_err(|e| TspError::Unavailable(format!("serial numbers: {e}")))?;
        let now = self.clock.now();
        let issuance = Issuance {
            settings: &self.config.settings,
            certificate: &self.certificate,
            algorithm: self.signer.algorithm(),
            serial,
            now,
        };
        let der = keys::sign(self.signer.as_ref(), tsp::issue(accepted, &issuance)?)?;
        let record = TimestampRecord {
            serial,
            gen_time: now,
            policy: accepted.policy.to_string(),
            hash_algorithm: accepted.hash_algorithm.name().to_string(),
            imprint: accepted.message_imprint.hashed_message.as_bytes().to_vec(),
        };
        Ok((der, record))
    }
}

/// Writes queued records in one transaction per `interval`. A failed write keeps its batch and
/// retries it before taking more from the queue, so a store outage fills the queue (and the
/// TSA refuses) instead of growing memory.
async fn write_records(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<TimestampRecord>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let mut batch: Vec<TimestampRecord> = Vec::new();
    let mut final_attempts = 0;
    loop {
        let stopping = *stop.borrow()
            || tokio::select! {
                _ = tokio::time::sleep(interval) => false,
                // A change or a dropped sender: either way, time to stop.
                _ = stop.changed() => true,
            };
        if batch.is_empty() {
            while let Ok(r) = rx.try_recv() {
                batch.push(r);
            }
        }
        if !batch.is_empty() {
            let st = store.clone();
            let taken = std::mem::take(&mut batch);
            let n = taken.len();
            match tokio::task::spawn_blocking(move || {
                let r = st.record_timestamps(&taken);
                (taken, r)
            })
            .await
            {
                Ok((_, Ok(()))) => tracing::trace!(records = n, "timestamp records written"),
                Ok((kept, Err(e))) => {
                    tracing::error!(error = %e, records = n, "writing timestamp records failed; retrying");
                    batch = kept;
                }
                Err(e) => {
                    tracing::error!(error = %e, records = n, "timestamp record writer task failed; these records are lost")
                }
            }
        }
        metrics
            .tsa
            .records_pending
            .set(i64::try_from(rx.len() + batch.len()).unwrap_or(i64::MAX));
        if stopping {
            final_attempts += 1;
            if rx.is_empty() && batch.is_empty() {
                return;
            }
            if final_attempts >= SHUTDOWN_WRITE_ATTEMPTS {
                tracing::error!(
                    records = rx.len() + batch.len(),
                    "stopping with timestamp records unwritten (their serials stay reserved)"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests;
