//! Connection hygiene below HTTP: caps on concurrent connections, and the idle timeout.
//!
//! ```text
//!  accept ─▶ ConnectionLimits::admit(peer) ─┬─ refused: dropped at once, counted, logged ≤ 1/10 s
//!                                           └─ Admission (held for the connection's life)
//!  TcpStream ─▶ Watched (a read or write that moves bytes sets Activity's flag) ─▶ TLS? ─▶ hyper
//!  each request holds an InFlight; idle_expired() looks at the flag four times per
//!  idle_timeout, and after four quiet looks with no InFlight held it resolves and the
//!  connection task drops the connection
//! ```
//!
//! hyper's own header timeout starts at a request's first byte, so on its own it never closes
//! a connection that sends nothing, neither a fresh one nor a keep-alive one between requests,
//! nor an HTTP/2 connection with no stream. The idle timeout here covers all three, and the TLS
//! handshake too (its records are reads of the same stream). A connection busy with a request
//! is left to the request's own bounds (`body_timeout_secs`, `request_timeout_secs`).

use crate::metrics::Metrics;
use prometheus::{IntCounter, IntGauge};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Refusals are logged at most this often (with the count since the last line), so a flood of
/// connections cannot become a flood of log lines.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Why a connection was closed at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The listener holds `max_connections`.
    Listener,
    /// The client address holds `max_connections_per_client` on this listener.
    PerClient,
}

impl Refusal {
    /// The `reason` label of `pkid_connections_refused_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Listener => "listener",
            Self::PerClient => "per_client",
        }
    }
}

/// The connections one listener holds, in total and per client address.
pub(crate) struct ConnectionLimits {
    listener: &'static str,
    max: usize,
    max_per_client: usize,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    open_gauge: IntGauge,
    refused: [IntCounter; 2],
    log: Mutex<RefusalLog>,
}

/// What has been refused since the last log line.
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl ConnectionLimits {
    /// Limits for the listener named `listener` (`http`, `https`: the metrics' label).
    pub(crate) fn new(
        listener: &'static str,
        max: usize,
        max_per_client: usize,
        metrics: &Metrics,
    ) -> Arc<Self> {
        let refused = [Refusal::Listener, Refusal::PerClient].map(|r| {
            metrics
                .connections_refused
                .with_label_values(&[listener, r.label()])
        });
        Arc::new(Self {
            listener,
            max,
            max_per_client,
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            open_gauge: metrics.connections_open.with_label_values(&[listener]),
            refused,
            log: Mutex::new(RefusalLog {
                last: None,
                unlogged: 0,
            }),
        })
    }

    /// Counts a new connection from `peer`, or refuses it (counted and logged, rate-limited)
    /// when either cap is reached. The place is freed when the [`Admission`] is dropped.
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Admission, Refusal> {
        let ip = peer.ip();
        let refusal = {
            let mut per_client = self
                .per_client
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let held = per_client.get(&ip).copied().unwrap_or(0);
            if self.open.load(Ordering::Relaxed) >= self.max {
                Some(Refusal::Listener)
            } else if held >= self.max_per_client {
                Some(Refusal::PerClient)
            } else {
                per_client.insert(ip, held + 1);
                self.open.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        match refusal {
            None => {
                self.open_gauge.inc();
                Ok(Admission {
                    limits: self.clone(),
                    ip,
                })
            }
            Some(r) => {
                self.refused[r as usize].inc();
                self.log_refusal(r, peer);
                Err(r)
            }
        }
    }

    fn log_refusal(&self, reason: Refusal, peer: SocketAddr) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.unlogged += 1;
        let now = Instant::now();
        if log
            .last
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_PERIOD)
        {
            tracing::warn!(
                listener = self.listener,
                reason = reason.label(),
                %peer,
                refused = log.unlogged,
                max_connections = self.max,
                max_connections_per_client = self.max_per_client,
                "connections refused at accept (connection cap reached; logged at most every 10 s)"
            );
            log.last = Some(now);
            log.unlogged = 0;
        }
    }

    fn release(&self, ip: IpAddr) {
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = per_client.get_mut(&ip) {
            *held -= 1;
            if *held == 0 {
                per_client.remove(&ip);
            }
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.open_gauge.dec();
    }

    /// Connections open on this listener.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One admitted connection's place under its listener's caps, freed on drop.
pub(crate) struct Admission {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.limits.release(self.ip);
    }
}

/// In how many ticks the idle timeout is watched: a connection is closed after this many
/// consecutive ticks (of `idle_timeout / IDLE_TICKS` each) in which no byte moved and no
/// request was in progress, so between `idle_timeout` and 1.25 × `idle_timeout` after its last
/// activity.
const IDLE_TICKS: u32 = 4;

/// What the idle timeout of one connection watches: whether a byte moved since the last tick,
/// and how many requests are in progress. Writes count as well as reads, so a large answer (a
/// big CRL) going out to a slow but reading client keeps its connection; a client that reads
/// nothing stalls the writes and is closed like a silent one. Moving bytes only sets a flag
/// (no clock read, no read-modify-write): the clock is read by the idle watch, a few times per
/// timeout, not by every read and write of every request.
pub(crate) struct Activity {
    /// Set by every read or write that moved bytes and by every request that finished; taken
    /// by the idle watch at each tick.
    moved: AtomicBool,
    in_flight: AtomicUsize,
    finished: Notify,
}

impl Activity {
    /// A connection accepted now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            moved: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            finished: Notify::new(),
        })
    }

    fn touch(&self) {
        // A plain store, not a read-modify-write: the flag only needs to be seen at the tick.
        if !self.moved.load(Ordering::Relaxed) {
            self.moved.store(true, Ordering::Relaxed);
        }
    }

    /// Marks a request in progress until the guard is dropped (its answer is ready).
    pub(crate) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves once the connection has had no request in progress and no byte moving for
    /// `timeout` (to within a quarter of it, see [`IDLE_TICKS`]); the caller then drops the
    /// connection.
    pub(crate) async fn idle_expired(&self, timeout: Duration) {
        let tick = (timeout / IDLE_TICKS).max(Duration::from_millis(1));
        let mut quiet = 0;
        let mut next = tokio::time::Instant::now() + tick;
        loop {
            tokio::time::sleep_until(next).await;
            next += tick;
            if self.in_flight.load(Ordering::Acquire) > 0 {
                // Busy: the request's own timeouts bound it. Wait until it is answered (a
                // stored permit covers a request that finished just now); the idle time
                // counts from then.
                self.finished.notified().await;
                quiet = 0;
                next = tokio::time::Instant::now() + tick;
                continue;
            }
            if self.moved.swap(false, Ordering::Relaxed) {
                quiet = 0;
            } else {
                quiet += 1;
                if quiet >= IDLE_TICKS {
                    return;
                }
            }
        }
    }
}

/// A request in progress on a connection (see [`Activity::request`]).
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // The idle time counts from the end of the last request.
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.finished.notify_one();
    }
}

/// A stream whose reads and writes are recorded in an [`Activity`].
pub(crate) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S> Watched<S> {
    fn moved(&self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.touch();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.moved(&polled);
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.moved(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], port))
    }

    #[test]
    fn the_per_client_cap_refuses_one_address_and_not_another_and_frees_on_drop() {
        let metrics = Metrics::new();
        let limits = ConnectionLimits::new("http", 10, 2, &metrics);
        let a = limits.admit(addr(1, 1)).expect("first");
        let _b = limits.admit(addr(1, 2)).expect("second");
        assert_eq!(limits.admit(addr(1, 3)).err(), Some(Refusal::PerClient));
        let _other = limits.admit(addr(2, 1)).expect("another address");
        drop(a);
        let _again = limits.admit(addr(1, 4)).expect("a freed place");
        assert_eq!(limits.open(), 3);
        assert_eq!(
            metrics
                .connections_refused
                .with_label_values(&["http", "per_client"])
                .get(),
            1
        );
    }

    #[test]
    fn the_listener_cap_refuses_every_address_once_reached() {
        let metrics = Metrics::new();
        let limits = ConnectionLimits::new("https", 2, 2, &metrics);
        let held: Vec<_> = (1..=2)
            .map(|i| limits.admit(addr(i, 1)).expect("admitted"))
            .collect();
        assert_eq!(limits.admit(addr(9, 1)).err(), Some(Refusal::Listener));
        drop(held);
        assert_eq!(limits.open(), 0);
        assert!(limits.admit(addr(9, 1)).is_ok());
        let open = metrics.connections_open.with_label_values(&["https"]).get();
        assert_eq!(open, 0, "the admission above was dropped at once");
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_moving_either_way_keep_a_connection_and_silence_closes_it_within_a_tick() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let timeout = Duration::from_secs(60);
        let activity = Activity::new();
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut watched = Watched::new(ours, activity.clone());
        let idle = activity.idle_expired(timeout);
        tokio::pin!(idle);
        let mut buf = [0u8; 6];
        // A few bytes every 20 s for five timeouts, written and read in turn: never idle.
        for step in 0..15 {
            let waited = tokio::time::timeout(Duration::from_secs(20), &mut idle).await;
            assert!(
                waited.is_err(),
                "closed at step {step} although bytes moved"
            );
            if step % 2 == 0 {
                watched.write_all(b"answer").await.expect("write");
                theirs.read_exact(&mut buf).await.expect("peer read");
            } else {
                theirs.write_all(b"reqest").await.expect("peer write");
                watched.read_exact(&mut buf).await.expect("read");
            }
        }
        let last = tokio::time::Instant::now();
        tokio::time::timeout(timeout * 10, idle)
            .await
            .expect("closed once nothing moves");
        let quiet = last.elapsed();
        assert!(
            quiet >= timeout && quiet <= timeout * 5 / 4,
            "closed {quiet:?} after the last byte"
        );
    }

    #[tokio::test]
    async fn idle_expires_only_with_no_request_in_progress_and_counts_from_its_end() {
        let timeout = Duration::from_millis(50);
        let activity = Activity::new();
        let request = activity.request();
        let idle = activity.idle_expired(timeout);
        tokio::pin!(idle);
        // Busy for several timeouts: never idle, however slow the machine.
        let busy = tokio::time::timeout(timeout * 6, &mut idle).await;
        assert!(busy.is_err(), "expired while a request was in progress");
        drop(request);
        let finished = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(30), idle)
            .await
            .expect("idle once the request is answered");
        assert!(
            finished.elapsed() >= timeout,
            "counted from the request's end"
        );
    }
}
