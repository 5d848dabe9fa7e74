//! Connection hygiene below HTTP: caps on concurrent connections, the idle timeout and the
//! request-header timeout.
//!
//! ```text
//!  accept ─▶ ConnectionLimits::admit(peer) ─┬─ refused: dropped at once, counted, logged ≤ 1/10 s
//!                                           └─ Admission (held for the connection's life)
//!  TcpStream ─▶ Watched (a read or write that moves bytes sets Activity's flags) ─▶ TLS? ─▶ hyper
//!  each request holds an InFlight; expired() looks at the flags four times per timeout (the
//!  shorter of the two) and resolves after a timeout's worth of quiet looks with no InFlight
//!  held (Expiry::Idle), or once bytes have been arriving for header_timeout without a request
//!  beginning (Expiry::Header); the connection task then drops the connection
//! ```
//!
//! The idle timeout closes a connection that sends nothing: a fresh one, a keep-alive one
//! between requests, an HTTP/2 connection with no stream; it covers the TLS handshake too (its
//! records are reads of the same stream). The header timeout closes one that trickles a
//! request's head (slow loris): bytes keep coming, so it is never idle, but no request begins.
//! Both are watched here, per connection and a few times per timeout, rather than by hyper's
//! `header_read_timeout`, which arms a timer (an allocation, a timer-wheel entry and its
//! removal, a clock read) on every request of every connection: on the status plane that cost
//! more than a cached OCSP answer itself (`docs/performance.md`). A connection busy with a
//! request is left to the request's own bounds (`body_timeout_secs`, `request_timeout_secs`).

use crate::metrics::Metrics;
use atomic_waker::AtomicWaker;
use hyper_util::server::graceful::GracefulConnection;
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
use tokio::sync::{watch, Notify};

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

/// Graceful shutdown of every connection of the listeners: [`Drain::shutdown`] asks each to
/// finish its requests in progress and close, and resolves when all have. Each connection's
/// watch task (not its serving task, which is polled on every request) holds a receiver for
/// the connection's life and passes the request on ([`Activity::drain`]).
pub struct Drain {
    tx: watch::Sender<()>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// No connection yet.
    pub fn new() -> Self {
        Self {
            tx: watch::channel(()).0,
        }
    }

    /// The receiver a new connection's watch task holds.
    pub(crate) fn watcher(&self) -> watch::Receiver<()> {
        self.tx.subscribe()
    }

    /// Asks every connection to finish and close; resolves once all are closed.
    pub async fn shutdown(&self) {
        // No receiver: no connection open, nothing to tell.
        let _ = self.tx.send(());
        self.tx.closed().await;
    }
}

/// In how many ticks a timeout is watched: the watch looks every `timeout / TICKS` (of the
/// shorter timeout), so a connection is closed between 1 and 1.25 × its timeout after the
/// last activity (idle) or the first byte of a head that never completes (header).
const TICKS: u32 = 4;

/// The two bounds [`Activity::expired`] watches (`[server] idle_timeout_secs`,
/// `header_timeout_secs`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// No request in progress and no byte moving either way for this long: closed.
    pub(crate) idle: Duration,
    /// Bytes arriving for this long without a request beginning (a head trickled in): closed.
    pub(crate) header: Duration,
}

/// Why [`Activity::expired`] resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Nothing moved and no request was in progress for the idle timeout.
    Idle,
    /// A request's head kept arriving for the header timeout without completing.
    Header,
}

/// What the timeouts of one connection watch: whether a byte moved since the last tick (and
/// whether one was read), how many requests have begun, and how many are in progress. Writes
/// count as well as reads for the idle timeout, so a large answer (a big CRL) going out to a
/// slow but reading client keeps its connection; a client that reads nothing stalls the writes
/// and is closed like a silent one. Moving bytes only sets flags (no clock read, no
/// read-modify-write): the clock is read by the watch, a few times per timeout, not by every
/// read and write of every request.
pub(crate) struct Activity {
    /// Set by every read or write that moved bytes and by every request that finished; taken
    /// by the watch at each tick.
    moved: AtomicBool,
    /// Set by every read that moved bytes; taken by the watch at each tick.
    read: AtomicBool,
    /// Requests begun (their head complete) on this connection.
    started: AtomicUsize,
    in_flight: AtomicUsize,
    finished: Notify,
    /// Set when the daemon stops: the connection finishes what it has in progress and closes.
    draining: AtomicBool,
    /// The connection task's waker, for the drain to wake it.
    task: AtomicWaker,
}

/// Sets `flag` unless it is set: a plain store, not a read-modify-write, since the flag only
/// needs to be seen at the next tick.
fn raise(flag: &AtomicBool) {
    if !flag.load(Ordering::Relaxed) {
        flag.store(true, Ordering::Relaxed);
    }
}

impl Activity {
    /// A connection accepted now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            moved: AtomicBool::new(false),
            read: AtomicBool::new(false),
            started: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            finished: Notify::new(),
            draining: AtomicBool::new(false),
            task: AtomicWaker::new(),
        })
    }

    /// Asks the connection to finish its requests in progress and close (graceful shutdown).
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.task.wake();
    }

    /// Serves `connection` until it ends; once [`Activity::drain`] is called, it is shut
    /// down gracefully (hyper answers the requests in progress, then closes; an idle
    /// keep-alive connection closes at once). Costs the connection one waker registration and
    /// one flag load per poll: hyper-util's graceful watcher polled a `watch` channel's
    /// `changed()` on every poll instead, several hundred instructions per request
    /// (`docs/performance.md`).
    pub(crate) async fn serve<C: GracefulConnection>(&self, connection: C) -> Result<(), C::Error> {
        let mut connection = std::pin::pin!(connection);
        let mut shutting = false;
        std::future::poll_fn(|cx| {
            if !shutting {
                // Registered before the flag is read, so a drain in between still wakes us.
                self.task.register(cx.waker());
                if self.draining.load(Ordering::Acquire) {
                    connection.as_mut().graceful_shutdown();
                    shutting = true;
                }
            }
            connection.as_mut().poll(cx)
        })
        .await
    }

    /// Marks a request in progress until the guard is dropped (its answer is ready).
    pub(crate) fn request(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Forgets the bytes read so far as the start of a request's head: called when the TLS
    /// handshake is done, whose records are reads too, so that the header timeout counts from
    /// the first byte of HTTP.
    pub(crate) fn handshake_done(&self) {
        self.read.store(false, Ordering::Relaxed);
    }

    /// Resolves once the connection has had no request in progress and no byte moving for
    /// `t.idle`, or has been receiving bytes without a request beginning for `t.header`
    /// (each to within a quarter of the shorter timeout, see [`TICKS`]); the caller then
    /// drops the connection.
    ///
    /// A head is taken to begin at the first tick that sees bytes read with no request begun
    /// since the previous tick; bytes that arrive in the same tick as a request that began and
    /// ended are taken for that request's, so a head that arrives in one burst just after an
    /// answer and then stalls is left to the idle timeout.
    pub(crate) async fn expired(&self, t: Timeouts) -> Expiry {
        let tick = (t.idle.min(t.header) / TICKS).max(Duration::from_millis(1));
        let mut quiet = Duration::ZERO;
        let mut head: Option<Duration> = None;
        let mut started = self.started.load(Ordering::Acquire);
        let mut next = tokio::time::Instant::now() + tick;
        loop {
            tokio::time::sleep_until(next).await;
            next += tick;
            if self.in_flight.load(Ordering::Acquire) > 0 {
                // Busy: the request's own timeouts bound it. Wait until it is answered (a
                // stored permit covers a request that finished just now); the idle time
                // counts from then, and the request's own bytes are no next head.
                self.finished.notified().await;
                quiet = Duration::ZERO;
                head = None;
                self.read.store(false, Ordering::Relaxed);
                started = self.started.load(Ordering::Acquire);
                next = tokio::time::Instant::now() + tick;
                continue;
            }
            // The read flag before the count, so that bytes of a request that began since the
            // last tick are not taken for the start of another head.
            let read = self.read.swap(false, Ordering::Relaxed);
            let moved = self.moved.swap(false, Ordering::Relaxed);
            let begun = self.started.load(Ordering::Acquire);
            if begun != started {
                started = begun;
                head = None;
            } else if let Some(waited) = &mut head {
                *waited += tick;
                if *waited >= t.header {
                    return Expiry::Header;
                }
            } else if read {
                head = Some(Duration::ZERO);
            }
            if moved {
                quiet = Duration::ZERO;
            } else {
                quiet += tick;
                if quiet >= t.idle {
                    return Expiry::Idle;
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
        raise(&self.0.moved);
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
            raise(&self.activity.moved);
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
            raise(&self.activity.moved);
            raise(&self.activity.read);
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
        // Each read below is a request's whole head (its request begins at once).
        let idle = activity.expired(Timeouts {
            idle: timeout,
            header: timeout,
        });
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
                drop(activity.request());
            }
        }
        let last = tokio::time::Instant::now();
        let why = tokio::time::timeout(timeout * 10, idle)
            .await
            .expect("closed once nothing moves");
        assert_eq!(why, Expiry::Idle);
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
        let idle = activity.expired(Timeouts {
            idle: timeout,
            header: timeout,
        });
        tokio::pin!(idle);
        // Busy for several timeouts: never idle, however slow the machine.
        let busy = tokio::time::timeout(timeout * 6, &mut idle).await;
        assert!(busy.is_err(), "expired while a request was in progress");
        drop(request);
        let finished = tokio::time::Instant::now();
        let why = tokio::time::timeout(Duration::from_secs(30), idle)
            .await
            .expect("idle once the request is answered");
        assert_eq!(why, Expiry::Idle);
        assert!(
            finished.elapsed() >= timeout,
            "counted from the request's end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_is_closed_after_the_header_timeout_and_requests_reset_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let t = Timeouts {
            idle: Duration::from_secs(10),
            header: Duration::from_secs(8),
        };
        let activity = Activity::new();
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut watched = Watched::new(ours, activity.clone());
        let watch = activity.expired(t);
        tokio::pin!(watch);
        let mut byte = [0u8; 1];
        // A byte a second for 40 s, a request beginning (and answered) every fourth byte: the
        // bytes keep it from being idle, the requests from being a head that never ends.
        for step in 0..40 {
            let waited = tokio::time::timeout(Duration::from_secs(1), &mut watch).await;
            assert!(waited.is_err(), "closed at step {step}");
            theirs.write_all(b"G").await.expect("peer write");
            watched.read_exact(&mut byte).await.expect("read");
            if step % 4 == 3 {
                drop(activity.request());
            }
        }
        // Now a byte a second and no request: a head that never completes.
        let first = tokio::time::Instant::now();
        let why = loop {
            theirs.write_all(b"E").await.expect("peer write");
            watched.read_exact(&mut byte).await.expect("read");
            if let Ok(why) = tokio::time::timeout(Duration::from_secs(1), &mut watch).await {
                break why;
            }
            assert!(first.elapsed() < Duration::from_secs(60), "never closed");
        };
        assert_eq!(why, Expiry::Header);
        let waited = first.elapsed();
        // Counted from the tick that saw the head's first byte: at most a tick early.
        assert!(
            waited >= t.header - Duration::from_secs(2)
                && waited <= t.header * 5 / 4 + Duration::from_secs(2),
            "closed {waited:?} after the head's first byte"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_tls_handshake_silence_is_idle_not_a_stalled_head() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let t = Timeouts {
            idle: Duration::from_secs(20),
            header: Duration::from_secs(4),
        };
        let activity = Activity::new();
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut watched = Watched::new(ours, activity.clone());
        let watch = activity.expired(t);
        tokio::pin!(watch);
        theirs
            .write_all(b"\x16\x03\x01")
            .await
            .expect("a ClientHello's start");
        let mut hello = [0u8; 3];
        watched.read_exact(&mut hello).await.expect("read");
        activity.handshake_done();
        let done = tokio::time::Instant::now();
        let why = tokio::time::timeout(Duration::from_secs(60), &mut watch)
            .await
            .expect("closed");
        assert_eq!(why, Expiry::Idle);
        assert!(
            done.elapsed() >= t.idle,
            "closed after {:?}",
            done.elapsed()
        );
    }
}
