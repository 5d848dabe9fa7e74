//! HTTP binding of the timestamp authority (RFC 3161 §3.4): `POST /tsa`.
//!
//! * Only `POST` (405 with `Allow: POST` otherwise, from the router), only
//!   `application/timestamp-query` (415), at most [`MAX_TIMESTAMP_QUERY_BYTES`] (413), 404 when
//!   `[tsa] enabled = false`.
//! * Everything past the HTTP checks is the TSA's decision: a granted token, or a
//!   `TimeStampResp` rejection whose `PKIFailureInfo` comes from `TspError::failure_info` (the
//!   protocol's total mapping), always with HTTP 200 and `application/timestamp-reply`.

use super::error::HttpError;
use super::reply::{reply, Reply};
use super::AppState;
use crate::tsa::{MAX_TIMESTAMP_QUERY_BYTES, QUERY_CONTENT_TYPE, REPLY_CONTENT_TYPE};
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use hyper::header::CONTENT_TYPE;
use hyper::StatusCode;
use pkid_protocols::tsp::{self, TspError};
use std::sync::Arc;

/// A timestamp request the TSA refused, answered as a `TimeStampResp` with status `rejection`
/// and the error's `PKIFailureInfo`.
#[derive(Debug)]
pub(crate) struct TsaRefusal(pub(crate) TspError);

impl IntoResponse for TsaRefusal {
    fn into_response(self) -> Reply {
        reply(StatusCode::OK, REPLY_CONTENT_TYPE, tsp::rejection(&self.0))
    }
}

/// The body of a 405 on `/tsa`: says what to send instead.
pub(crate) const WRONG_METHOD: HttpError = HttpError::MethodNotAllowed {
    allow: "POST",
    message: "use POST with Content-Type application/timestamp-query",
};

fn is_query(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(QUERY_CONTENT_TYPE))
}

/// `POST /tsa`.
pub(crate) async fn post(State(state): State<Arc<AppState>>, req: Request) -> Reply {
    let Some(tsa) = state.tsa.clone() else {
        return HttpError::NotFound("the timestamp authority is not enabled").into_response();
    };
    if !is_query(req.headers()) {
        tsa.peer_fault(
            "unsupportedMediaType",
            &format_args!(
                "POST with Content-Type {:?}",
                req.headers().get(CONTENT_TYPE)
            ),
        );
        return HttpError::UnsupportedMediaType(QUERY_CONTENT_TYPE).into_response();
    }
    let (parts, body) = req.into_parts();
    let body =
        match super::body::read_limited(&parts.headers, body, MAX_TIMESTAMP_QUERY_BYTES).await {
            Ok(b) => b,
            Err(e) => {
                tsa.peer_fault("body", &e);
                return e.into_response();
            }
        };
    match tsa.answer(&body).await {
        Ok(der) => reply(StatusCode::OK, REPLY_CONTENT_TYPE, der),
        Err(e) => TsaRefusal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::is_query;
    use hyper::header::CONTENT_TYPE;

    #[test]
    fn media_type_matching_ignores_case_and_parameters() {
        let mut h = hyper::HeaderMap::new();
        assert!(!is_query(&h));
        for (v, ok) in [
            ("application/timestamp-query", true),
            ("Application/Timestamp-Query; charset=binary", true),
            ("application/ocsp-request", false),
            ("application/timestamp-reply", false),
        ] {
            h.insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(v));
            assert_eq!(is_query(&h), ok, "{v}");
        }
    }
}
