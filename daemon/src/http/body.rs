//! Reading request bodies within a limit.

use axum::body::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// Over the route's limit: answer 413.
    #[error("request body is over the {0}-byte limit")]
    TooLarge(usize),
    /// The connection failed mid-body: answer 400.
    #[error("request body could not be read")]
    Broken,
}

/// Whether `e`, or an error it wraps, is a body over its limit (the listener's body-limit
/// layer wraps every body in a `Limited`, and axum boxes that error once more).
pub(crate) fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.is::<LengthLimitError>() {
            return true;
        }
        next = err.source();
    }
    false
}

/// Reads the whole body, refusing more than `limit` bytes (checked against Content-Length
/// first, then while reading, so a lying or chunked client cannot get past it).
pub async fn read_limited(
    headers: &hyper::HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if let Some(len) = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(BodyError::TooLarge(limit));
        }
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if is_length_limit(e.as_ref()) => Err(BodyError::TooLarge(limit)),
        Err(_) => Err(BodyError::Broken),
    }
}
