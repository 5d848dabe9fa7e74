//! The one response shape every handler returns, and its two constructors.

use axum::body::Body;
use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// What every handler returns.
pub(crate) type Reply = axum::response::Response;

/// A response with a body and its media type.
pub(crate) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Reply {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A plain-text response (a line, newline-terminated).
pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> Reply {
    let mut m = msg.into();
    m.push('\n');
    reply(status, "text/plain; charset=utf-8", m)
}
