//! Conditional GET (RFC 9110 §13.1): the one rule OCSP and CRL responses are answered 304 by.

use hyper::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH};
use hyper::HeaderMap;
use std::time::UNIX_EPOCH;

/// Whether a GET with these request headers may be answered 304 for a representation with
/// strong validator `etag` (quoted, as sent in `ETag`) and `Last-Modified` at
/// `last_modified_unix` (Unix seconds).
///
/// `If-None-Match`, when present, decides alone (RFC 9110 §13.2.2), by weak comparison of each
/// listed tag, `*` matching anything.
///
/// `If-Modified-Since` needs the representation to be strictly older than the date, not "older
/// or equal": HTTP dates have one-second resolution, and an OCSP response or CRL re-signed after
/// a revocation can carry the same second as the one it replaces. Answering 304 to
/// `If-Modified-Since: <that second>` would let a cache keep serving the copy made before the
/// revocation. A client that holds the current copy and sends its `Last-Modified` gets a 200
/// instead (its `ETag` still gets a 304).
///
/// The two fields are found in one pass over the request's few fields (the first of each
/// counts, as `HeaderMap::get` would give): two hashed lookups cost more, on the cached OCSP
/// path, than the scan of an OCSP client's three or four fields.
pub(crate) fn not_modified(headers: &HeaderMap, etag: &str, last_modified_unix: u64) -> bool {
    let (mut inm, mut ims) = (None, None);
    for (name, value) in headers {
        if *name == IF_NONE_MATCH {
            inm = inm.or(Some(value));
        } else if *name == IF_MODIFIED_SINCE {
            ims = ims.or(Some(value));
        }
    }
    if let Some(inm) = inm.and_then(|v| v.to_str().ok()) {
        return inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag));
    }
    ims.and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .is_some_and(|since| last_modified_unix < since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::not_modified;
    use hyper::header::{HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH};

    #[test]
    fn if_modified_since_needs_a_later_second_and_if_none_match_wins() {
        let etag = "\"abc\"";
        let at = 1_800_000_000u64;
        let date = |unix: u64| {
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
        };
        let ims = |unix: u64| {
            let mut h = hyper::HeaderMap::new();
            h.insert(
                IF_MODIFIED_SINCE,
                HeaderValue::from_str(&date(unix)).expect("date"),
            );
            h
        };
        assert!(
            !not_modified(&hyper::HeaderMap::new(), etag, at),
            "no validator"
        );
        assert!(not_modified(&ims(at + 1), etag, at), "a later second");
        // The same second may hold a different response (re-signed after a revocation).
        assert!(!not_modified(&ims(at), etag, at), "the same second");
        assert!(!not_modified(&ims(at - 1), etag, at), "an earlier second");
        let mut h = ims(at + 10);
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(
            !not_modified(&h, etag, at),
            "If-None-Match takes precedence"
        );
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"x\", W/\"abc\""));
        assert!(not_modified(&h, etag, at), "weak comparison of a list");
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, etag, at), "any");
        // Repeated: the first field counts, as for `HeaderMap::get`.
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        h.append(IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(!not_modified(&h, etag, at), "the first If-None-Match");
    }
}
