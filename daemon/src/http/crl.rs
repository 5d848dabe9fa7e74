//! HTTP binding of CRL publication (RFC 5280 §4.2.1.13 distribution points, RFC 2585 media
//! type).
//!
//! * `GET /crl/{issuer}.crl`, `/crl/{issuer}-delta.crl`, `/crl/{issuer}/{n}.crl`,
//!   `/crl/{issuer}/{n}-delta.crl`: DER, `application/pkix-crl`. The same with `.pem`, or
//!   `Accept: application/x-pem-file`, gives PEM.
//! * Served from memory: the newest signed CRL of the scope, replaced only after its successor
//!   is signed and stored.
//! * `ETag` (the CRL number), `Last-Modified` (thisUpdate), `Expires` (nextUpdate),
//!   `Cache-Control: max-age` = time left until nextUpdate, capped by `[crl] max_age_secs`;
//!   `If-None-Match` / `If-Modified-Since` → 304, by the rule OCSP uses too
//!   (`http::conditional`: a CRL re-signed in the second given is sent, not 304).
//! * Unknown issuer, partition or file name → 404; a scope that is published but whose first
//!   CRL is still being made → 503 with `Retry-After`.

use super::conditional::not_modified;
use super::error::HttpError;
use super::reply::{reply, text, Reply};
use super::AppState;
use crate::crl::{CrlKey, PublishedCrl};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use hyper::header::{
    HeaderValue, ACCEPT, CACHE_CONTROL, ETAG, EXPIRES, LAST_MODIFIED, RETRY_AFTER, VARY,
};
use hyper::{HeaderMap, Response, StatusCode};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Media type of DER CRLs (RFC 2585 §4.2).
const PKIX_CRL: &str = "application/pkix-crl";
/// Media type of PEM files.
const PEM: &str = "application/x-pem-file";
/// Longest path after `/crl/` we parse: issuer names are short, partitions are at most 4 digits.
const MAX_CRL_PATH: usize = 64;
/// Seconds a client should wait when the first CRL of a scope is still being made.
const RETRY_SECS: u32 = 5;

/// What a `/crl/` path asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CrlRequest {
    /// The CRL.
    pub(crate) key: CrlKey,
    /// PEM rather than DER.
    pub(crate) pem: bool,
}

/// Parses the path after `/crl/`. `is_issuer` tells issuer names apart (an issuer could end in
/// `-delta`). `None` for anything that is not a CRL file name.
pub(crate) fn parse_path(path: &str, is_issuer: impl Fn(&str) -> bool) -> Option<CrlRequest> {
    if path.len() > MAX_CRL_PATH {
        return None;
    }
    let (stem, pem) = match (path.strip_suffix(".crl"), path.strip_suffix(".pem")) {
        (Some(s), _) => (s, false),
        (_, Some(s)) => (s, true),
        _ => return None,
    };
    let (issuer, shard, delta) = match stem.split_once('/') {
        Some((issuer, part)) => {
            let (digits, delta) = match part.strip_suffix("-delta") {
                Some(d) => (d, true),
                None => (part, false),
            };
            // Canonical decimal only: one URL per partition.
            let canonical = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'));
            if !canonical {
                return None;
            }
            (issuer, Some(digits.parse::<u32>().ok()?), delta)
        }
        None if is_issuer(stem) => (stem, None, false),
        None => (stem.strip_suffix("-delta")?, None, true),
    };
    if !is_issuer(issuer) {
        return None;
    }
    Some(CrlRequest {
        key: CrlKey::new(issuer, shard, delta),
        pem,
    })
}

fn http_date(unix: u64) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(
        UNIX_EPOCH + Duration::from_secs(unix),
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

fn wants_pem(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(PEM) && !a.contains(PKIX_CRL))
}

fn respond(crl: &PublishedCrl, pem: bool, headers: &HeaderMap, now: u64, max_age: u64) -> Reply {
    let etag = crl.etag(pem);
    let mut r = if not_modified(headers, &etag, crl.this_update) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if pem {
        reply(StatusCode::OK, PEM, crl.pem())
    } else {
        reply(StatusCode::OK, PKIX_CRL, crl.der.clone())
    };
    let max_age = crl.next_update.saturating_sub(now).min(max_age);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    h.insert(LAST_MODIFIED, http_date(crl.this_update));
    h.insert(EXPIRES, http_date(crl.next_update));
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}, no-transform")) {
        h.insert(CACHE_CONTROL, v);
    }
    h.insert(VARY, HeaderValue::from_static("Accept"));
    r
}

/// `GET /crl/...`.
pub(crate) async fn get(State(state): State<Arc<AppState>>, req: Request) -> Reply {
    let path = req.uri().path().strip_prefix("/crl/").unwrap_or_default();
    let headers = req.headers();
    let Some(service) = state.crl.as_ref() else {
        return HttpError::NotFound("CRLs are not enabled").into_response();
    };
    let Some(req) = parse_path(path, |name| state.authority.has_issuer(name)) else {
        tracing::debug!(path, "no such CRL");
        return HttpError::NotFound("no such CRL").into_response();
    };
    match service.lookup(&req.key) {
        Some(crl) => {
            let pem = req.pem || wants_pem(headers);
            respond(
                &crl,
                pem,
                headers,
                state.authority.now(),
                service.config().max_age_secs,
            )
        }
        None if service.serves(&req.key) => {
            tracing::info!(crl = %req.key.label(), "CRL requested before its first generation");
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "this CRL is being generated",
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_SECS));
            r
        }
        None => {
            tracing::debug!(crl = %req.key.label(), "no such CRL scope");
            HttpError::NotFound("no such CRL").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH};

    fn parse(p: &str) -> Option<CrlRequest> {
        parse_path(p, |n| n == "root" || n == "issuing")
    }

    #[test]
    fn paths_name_issuer_partition_kind_and_form() {
        let k = |i: &str, s: Option<u32>, d: bool, pem: bool| {
            Some(CrlRequest {
                key: CrlKey::new(i, s, d),
                pem,
            })
        };
        assert_eq!(parse("issuing.crl"), k("issuing", None, false, false));
        assert_eq!(parse("root.pem"), k("root", None, false, true));
        assert_eq!(parse("issuing-delta.crl"), k("issuing", None, true, false));
        assert_eq!(parse("issuing/0.crl"), k("issuing", Some(0), false, false));
        assert_eq!(
            parse("issuing/17-delta.pem"),
            k("issuing", Some(17), true, true)
        );
        for bad in [
            "issuing",
            "nobody.crl",
            "nobody-delta.crl",
            "issuing/01.crl",
            "issuing/-1.crl",
            "issuing/x.crl",
            "issuing/.crl",
            "issuing/1/2.crl",
            "issuing/99999999999.crl",
            "issuing.der",
            "",
            "../issuing.crl",
            "issuing/1-delta-delta.crl",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse(&format!("{}.crl", "a".repeat(100))), None);
    }

    #[test]
    fn conditional_requests() {
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, "\"7\"", 100));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"6\", W/\"7\""));
        assert!(not_modified(&h, "\"7\"", 100));
        assert!(!not_modified(&h, "\"8\"", 100));
        let mut h = HeaderMap::new();
        h.insert(IF_MODIFIED_SINCE, http_date(100));
        assert!(not_modified(&h, "\"7\"", 99), "modified a second before");
        // A CRL re-signed (after a revocation) in the second the client's copy was made has
        // the same Last-Modified: it must be sent, not answered 304.
        assert!(!not_modified(&h, "\"7\"", 100), "the same second");
        assert!(!not_modified(&h, "\"7\"", 101));
    }
}
