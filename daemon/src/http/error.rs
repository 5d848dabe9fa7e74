//! What goes on the wire when a request is refused, one type per kind of refusal.
//!
//! Each type implements axum's `IntoResponse` by a total `match` (no `_` arm), so a new variant
//! does not compile until someone decides how it is answered. Protocol refusals keep their RFC
//! status: an OCSP refusal is an `OCSPResponse` with its `OCSPResponseStatus` and HTTP 200 (see
//! `docs/decisions.md`), a timestamp refusal a `TimeStampResp` with its `PKIFailureInfo` (in
//! `http::tsa`). Plain HTTP faults (wrong method, media type, size, rate) are short text bodies.

use super::body::BodyError;
use super::reply::{reply, text, Reply};
use axum::response::IntoResponse;
use hyper::header::{HeaderValue, ALLOW, RETRY_AFTER};
use hyper::StatusCode;
use x509_ocsp::OcspResponseStatus;

/// A refusal at the HTTP level, before (or instead of) any protocol module deciding.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// No such resource; the text says which kind (`"no such CA"`, `"not found"`).
    NotFound(&'static str),
    /// The route exists but not for this method: 405 with `Allow`.
    MethodNotAllowed {
        /// The methods the route answers, as the `Allow` header lists them.
        allow: &'static str,
        /// The body text.
        message: &'static str,
    },
    /// The body's media type is not the protocol's: 415.
    UnsupportedMediaType(&'static str),
    /// The body is over a limit: 413.
    TooLarge(String),
    /// The request cannot be read (a broken body, an invalid Content-Length): 400.
    BadRequest(&'static str),
    /// The client is over its rate: 429 with `Retry-After` in whole seconds.
    RateLimited {
        /// Seconds until the next request would be admitted (at least 1).
        retry_after_secs: u64,
    },
    /// A dependency (the store) is down: 503.
    Unavailable(String),
    /// The request took longer than `[server] request_timeout_secs`: 503.
    TimedOut,
    /// The client stopped sending its body for `[server] body_timeout_secs`: 408.
    BodyTimedOut,
    /// Our fault (a task panicked): 500.
    Internal,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Reply {
        match self {
            Self::NotFound(what) => text(StatusCode::NOT_FOUND, what),
            Self::MethodNotAllowed { allow, message } => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, message);
                r.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
                r
            }
            Self::UnsupportedMediaType(expected) => text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type must be {expected}"),
            ),
            Self::TooLarge(message) => text(StatusCode::PAYLOAD_TOO_LARGE, message),
            Self::BadRequest(message) => text(StatusCode::BAD_REQUEST, message),
            Self::RateLimited { retry_after_secs } => {
                let mut r = text(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
                r
            }
            Self::Unavailable(message) => text(StatusCode::SERVICE_UNAVAILABLE, message),
            Self::TimedOut => text(StatusCode::SERVICE_UNAVAILABLE, "request timed out"),
            Self::BodyTimedOut => text(StatusCode::REQUEST_TIMEOUT, "request body timed out"),
            Self::Internal => text(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        }
    }
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Reply {
        match self {
            Self::TooLarge(_) => HttpError::TooLarge(self.to_string()).into_response(),
            Self::Broken => HttpError::BadRequest("request body could not be read").into_response(),
            Self::TimedOut => HttpError::BodyTimedOut.into_response(),
        }
    }
}

/// An OCSP request answered with an error `OCSPResponse` (no `responseBytes`), HTTP 200: OCSP
/// clients read the status from the body and treat other HTTP statuses as transport failures.
/// The status comes from `OcspError::wire_status`, the protocol's own total mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OcspRefusal(pub(crate) OcspResponseStatus);

impl IntoResponse for OcspRefusal {
    fn into_response(self) -> Reply {
        reply(
            StatusCode::OK,
            crate::ocsp::OCSP_RESPONSE,
            pkid_protocols::ocsp::error_response(self.0),
        )
    }
}
