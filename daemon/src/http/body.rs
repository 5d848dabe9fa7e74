//! Reading request bodies within a limit.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

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

/// Reads the whole body, refusing more than `limit` bytes (checked against Content-Length
/// first, then while reading, so a lying or chunked client cannot get past it).
pub async fn read_limited(
    headers: &hyper::HeaderMap,
    body: Incoming,
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
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Err(_) => Err(BodyError::Broken),
    }
}
