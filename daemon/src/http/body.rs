//! Reading request bodies within a limit of size ([`read_limited`]) and of time ([`TimedBody`]).

use super::deferred::DeferredTimeout;
use axum::body::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// Over the route's limit: answer 413.
    #[error("request body is over the {0}-byte limit")]
    TooLarge(usize),
    /// The connection failed mid-body: answer 400.
    #[error("request body could not be read")]
    Broken,
    /// The client stopped sending mid-body for `[server] body_timeout_secs`: answer 408.
    #[error("request body timed out")]
    TimedOut,
}

/// The error a [`TimedBody`] ends with when no byte arrived for its timeout.
#[derive(Debug, thiserror::Error)]
#[error("no request body data for {0:?}")]
pub struct BodyTimedOut(Duration);

/// A request body that fails with [`BodyTimedOut`] when the client sends nothing for
/// `timeout` while the handler waits for more: a client that stops mid-body is answered 408
/// instead of holding its connection and task for ever. The clock restarts at every frame, so
/// a slow but steady upload is not cut off; only silence is.
///
/// The timer is armed only when the body is still pending at the second poll of a wait
/// ([`DeferredTimeout`]): a body that arrives with its head, as almost every small one does,
/// never arms one.
pub struct TimedBody<B> {
    inner: B,
    timeout: Duration,
    silence: DeferredTimeout,
}

impl<B> TimedBody<B> {
    /// `inner`, failing after `timeout` without data.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            silence: DeferredTimeout::new(timeout),
        }
    }
}

impl<B> hyper::body::Body for TimedBody<B>
where
    B: hyper::body::Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.silence.progressed();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.silence.poll_expired(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut(this.timeout).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `e`, or an error it wraps, is a body over its limit (the listener's body-limit
/// layer wraps every body in a `Limited`, and axum boxes that error once more).
pub(crate) fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<LengthLimitError>(e)
}

/// Whether `e`, or an error it wraps, is an `E`.
fn caused_by<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.is::<E>() {
            return true;
        }
        next = err.source();
    }
    false
}

/// The Content-Length a request declares, when it declares a readable one.
pub(crate) fn declared_length(headers: &hyper::HeaderMap) -> Option<u64> {
    headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Why reading a body failed with `e`, for a reader whose limit is `limit`.
pub(crate) fn body_error(e: &(dyn std::error::Error + 'static), limit: usize) -> BodyError {
    if is_length_limit(e) {
        BodyError::TooLarge(limit)
    } else if caused_by::<BodyTimedOut>(e) {
        BodyError::TimedOut
    } else {
        BodyError::Broken
    }
}

/// Reads the whole body, refusing more than `limit` bytes (checked against Content-Length
/// first, then while reading, so a lying or chunked client cannot get past it).
pub async fn read_limited(
    headers: &hyper::HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if declared_length(headers).is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(body_error(e.as_ref(), limit)),
    }
}
