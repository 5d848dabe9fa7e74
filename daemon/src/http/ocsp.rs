//! HTTP binding of the OCSP responder (RFC 6960 Appendix A, RFC 5019 §5-6).
//!
//! * `POST /ocsp` with `application/ocsp-request`; `GET /ocsp/{url-escaped base64 of the DER}`.
//! * Protocol errors (malformed request, unserved issuer, signer unavailable) are OCSP error
//!   responses with HTTP 200, because OCSP clients (OpenSSL included) read the response status
//!   from the body and treat other HTTP statuses as transport failures. HTTP errors are kept for
//!   HTTP faults: 405 wrong method, 413 body too large, 415 wrong content type.
//! * Nonce-less single-certificate responses carry `Cache-Control`, `Expires` (= nextUpdate),
//!   `Last-Modified` (= thisUpdate) and `ETag`, and conditional GETs are answered 304.

use super::conditional::not_modified;
use super::error::{HttpError, OcspRefusal};
use super::reply::{reply, Reply};
use super::AppState;
use crate::ocsp::{Answer, Form, OcspService, Prepared, OCSP_RESPONSE};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use base64::Engine;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use pkid_protocols::ocsp::MAX_OCSP_REQUEST_BYTES;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Media type of OCSP requests (RFC 6960 Appendix C.1).
const OCSP_REQUEST: &str = "application/ocsp-request";
/// Longest GET path remainder: base64 of the largest request we parse, fully percent-escaped.
const MAX_GET_CHARS: usize = MAX_OCSP_REQUEST_BYTES / 3 * 4 * 3 + 16;

/// Base64 with either padding, in the standard and the URL-safe alphabet.
const B64_STANDARD: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);
const B64_URL_SAFE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Decodes the GET form: percent-escapes first (`%2F`, `%2B`, `%3D`), then base64 — standard
/// alphabet with or without padding, or the URL-safe one. A literal `+` stays a `+` (it is not
/// a space in a path), and `/` (also `//`) is part of the base64, never a separator.
pub(crate) fn decode_get_path(raw: &str) -> Option<Vec<u8>> {
    if raw.is_empty() || raw.len() > MAX_GET_CHARS {
        return None;
    }
    let b64 = unescape(raw.as_bytes())?;
    // The alphabets differ only in `+/` versus `-_`, so one look picks the alphabet.
    let engine = if b64.iter().any(|b| matches!(b, b'-' | b'_')) {
        &B64_URL_SAFE
    } else {
        &B64_STANDARD
    };
    engine.decode(&b64).ok()
}

/// Undoes percent-escapes (RFC 3986 §2.1): each `%` must be followed by exactly two hex
/// digits, anything else is refused. Borrows when there is nothing to undo.
fn unescape(bytes: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !bytes.contains(&b'%') {
        return Some(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Not `u8::from_str_radix`: it accepts a sign, so `%+f` would be byte 0x0f.
            let (hi, lo) = (bytes.get(i + 1)?, bytes.get(i + 2)?);
            out.push(hex_digit(*hi)? << 4 | hex_digit(*lo)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(Cow::Owned(out))
}

/// The value of one hex digit, either case.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn ocsp_body(status: StatusCode, der: impl Into<bytes::Bytes>) -> Reply {
    reply(status, OCSP_RESPONSE, der)
}

/// What a route answers when OCSP is switched off (`[ocsp] enabled = false`).
const DISABLED: HttpError = HttpError::NotFound("OCSP is not enabled");

/// Runs the responder, signing on a blocking thread when the key backend is slow.
async fn answer(service: &Arc<OcspService>, der: &[u8]) -> Answer {
    if service.signs_inline() {
        return service.respond(der);
    }
    match service.prepare(der) {
        Prepared::Ready(a) => a,
        Prepared::Sign(job) => {
            let svc = service.clone();
            match tokio::task::spawn_blocking(move || svc.sign(job)).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "OCSP signing task failed");
                    Answer::Error(
                        x509_ocsp::OcspResponseStatus::InternalError,
                        pkid_protocols::ocsp::OcspError::Internal("signing task failed".into()),
                    )
                }
            }
        }
    }
}

/// The reply to `answer`; `now` is the responder's clock ([`OcspService::now`]) when the
/// caller has read it already.
fn to_reply(
    service: &OcspService,
    answer: Answer,
    req_headers: &hyper::HeaderMap,
    now: Option<u64>,
) -> Reply {
    match answer {
        Answer::Error(status, _) => OcspRefusal(status).into_response(),
        Answer::Fresh(der) => {
            let mut r = ocsp_body(StatusCode::OK, der);
            // Signed for this request (nonce or several CertIDs): never reuse it.
            r.headers_mut().insert(
                CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store"),
            );
            r
        }
        Answer::Cacheable(c) => {
            let mut r;
            if not_modified(
                req_headers,
                c.etag.to_str().unwrap_or_default(),
                c.this_update,
            ) {
                r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                *r.headers_mut() = c.headers.clone();
                // RFC 9110 §15.4.5: no representation metadata beyond the validators.
                r.headers_mut().remove(CONTENT_TYPE);
            } else {
                r = Response::new(Body::from(c.der.clone()));
                *r.headers_mut() = c.headers.clone();
            }
            let now = now.unwrap_or_else(|| service.now());
            if let Some(cc) = service.shorter_max_age(&c, now) {
                r.headers_mut().insert(CACHE_CONTROL, cc);
            }
            r
        }
    }
}

/// `POST /ocsp` (routed; the fast path in front of the router holds a [`Post`] itself).
pub(crate) async fn post(State(state): State<Arc<AppState>>, req: Request) -> Reply {
    // The body is axum's, already limited and timed by the listener's `BodyLimit`.
    match Post::new(&state, req, MAX_OCSP_REQUEST_BYTES) {
        Ok(answer) => answer.await,
        Err(refused) => refused,
    }
}

/// A `POST /ocsp` being answered, as a future with a name, so the fast path in front of the
/// router can hold it without boxing (and its body, `B`, as hyper's own, not axum's boxed
/// one). The media type and a declared length are checked when it is made; the body is read
/// as it is polled (within the limit it was made with); once the body is in, a remembered form
/// is answered in the same poll, and anything else (a new form, a nonce to sign) continues in
/// a boxed future.
pub(crate) struct Post<B = Body> {
    service: Arc<OcspService>,
    /// The request's header fields (its conditional fields decide 304).
    headers: hyper::HeaderMap,
    /// The most body bytes read: `MAX_OCSP_REQUEST_BYTES`, or the listener's smaller limit.
    limit: usize,
    stage: Stage<B>,
}

/// How far a [`Post`] has got.
enum Stage<B> {
    /// Reading the body: the bytes so far.
    Reading { body: B, got: bytes::Bytes },
    /// Deciding and signing.
    Answering(Pin<Box<dyn Future<Output = Reply> + Send>>),
}

/// Whether a Content-Type field names `application/ocsp-request` (parameters and the case of
/// the name aside, RFC 9110 §8.3.1).
fn is_ocsp_request(ct: &HeaderValue) -> bool {
    // What clients send, byte for byte: decided without splitting the field.
    if ct.as_bytes().eq_ignore_ascii_case(OCSP_REQUEST.as_bytes()) {
        return true;
    }
    let media = ct.to_str().unwrap_or_default().split(';').next();
    media.is_some_and(|m| m.trim().eq_ignore_ascii_case(OCSP_REQUEST))
}

impl<B> Post<B>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    /// Starts answering `req`, reading at most `limit` body bytes, or refuses it at once (OCSP
    /// off, another media type, a declared length over the limit).
    #[allow(clippy::result_large_err)] // the refusal is the response itself, returned as is
    pub(crate) fn new(
        state: &AppState,
        req: hyper::Request<B>,
        limit: usize,
    ) -> Result<Self, Reply> {
        let Some(service) = state.ocsp.clone() else {
            return Err(DISABLED.into_response());
        };
        let ct = req.headers().get(CONTENT_TYPE);
        if !ct.is_some_and(is_ocsp_request) {
            service.peer_fault(
                "unsupportedMediaType",
                &format_args!(
                    "POST with Content-Type {:?}",
                    ct.and_then(|v| v.to_str().ok()).unwrap_or_default()
                ),
            );
            return Err(HttpError::UnsupportedMediaType(OCSP_REQUEST).into_response());
        }
        let (parts, body) = req.into_parts();
        let limit = limit.min(MAX_OCSP_REQUEST_BYTES);
        // The declared Content-Length, as hyper's body reports it (the field was parsed once,
        // by hyper, and checked against the listener's limit already).
        if body.size_hint().lower() > limit as u64 {
            return Err(too_large(limit));
        }
        Ok(Self {
            service,
            headers: parts.headers,
            limit,
            stage: Stage::Reading {
                body,
                got: bytes::Bytes::new(),
            },
        })
    }
}

/// 413 for an OCSP request over `limit` bytes.
fn too_large(limit: usize) -> Reply {
    HttpError::TooLarge(format!("OCSP requests are limited to {limit} bytes")).into_response()
}

impl<B> Future for Post<B>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let this = self.get_mut();
        loop {
            match &mut this.stage {
                Stage::Answering(answer) => return answer.as_mut().poll(cx),
                Stage::Reading { body, got } => match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(frame))) => {
                        // Trailers carry nothing OCSP reads.
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        if got.len() + data.len() > this.limit {
                            return Poll::Ready(too_large(this.limit));
                        }
                        if got.is_empty() {
                            *got = data;
                        } else {
                            let mut joined = Vec::with_capacity(got.len() + data.len());
                            joined.extend_from_slice(got);
                            joined.extend_from_slice(&data);
                            *got = joined.into();
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        let e: axum::BoxError = e.into();
                        return Poll::Ready(match super::body::body_error(&*e, this.limit) {
                            super::body::BodyError::TooLarge(_) => too_large(this.limit),
                            other => other.into_response(),
                        });
                    }
                    Poll::Ready(None) => {
                        let der = std::mem::take(got);
                        let now = this.service.now();
                        if let Some(hit) = this.service.answer_form(Form::Post, &der, now) {
                            let reply = to_reply(&this.service, hit, &this.headers, Some(now));
                            return Poll::Ready(reply);
                        }
                        let service = this.service.clone();
                        let headers = std::mem::take(&mut this.headers);
                        this.stage = Stage::Answering(Box::pin(async move {
                            let a = answer(&service, &der).await;
                            service.remember_form(Form::Post, &der, &a);
                            to_reply(&service, a, &headers, None)
                        }));
                    }
                },
            }
        }
    }
}

/// The answer to `GET /ocsp/…` when it needs no waiting: the cached answer of a remembered
/// form that is still current, or the refusal when OCSP is off. `None`: [`get`] answers it.
pub(crate) fn get_at_once<B>(state: &AppState, req: &hyper::Request<B>) -> Option<Reply> {
    let Some(service) = state.ocsp.as_ref() else {
        return Some(DISABLED.into_response());
    };
    let encoded = req.uri().path().strip_prefix("/ocsp/").unwrap_or_default();
    let now = service.now();
    let hit = service.answer_form(Form::Get, encoded.as_bytes(), now)?;
    Some(to_reply(service, hit, req.headers(), Some(now)))
}

/// `GET /ocsp/{base64}`. The path is taken exactly as sent (not percent-decoded by the router):
/// the remembered-forms cache is keyed by those bytes, and `/` or `%2F` in it is base64.
pub(crate) async fn get(State(state): State<Arc<AppState>>, req: Request) -> Reply {
    match get_at_once(&state, &req) {
        Some(at_once) => at_once,
        None => get_decoded(state, req).await,
    }
}

/// `GET /ocsp/{base64}` whose form is not remembered (see [`get_at_once`]): decoded, decided,
/// signed if need be.
pub(crate) async fn get_decoded(state: Arc<AppState>, req: Request) -> Reply {
    let Some(service) = state.ocsp.clone() else {
        return DISABLED.into_response();
    };
    let encoded = req.uri().path().strip_prefix("/ocsp/").unwrap_or_default();
    let a = match decode_get_path(encoded) {
        Some(der) => {
            let a = answer(&service, &der).await;
            service.remember_form(Form::Get, encoded.as_bytes(), &a);
            a
        }
        None => service.undecodable(),
    };
    to_reply(&service, a, req.headers(), None)
}

#[cfg(test)]
mod tests {
    use super::{decode_get_path, unescape};
    use base64::Engine;

    #[test]
    fn get_paths_decode_slashes_pluses_and_escapes() {
        // Bytes whose base64 contains '+', '/', '//' and '=' padding.
        let der: Vec<u8> = vec![0xfb, 0xff, 0xbf, 0xff, 0xfe, 0x3e, 0x01];
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        assert!(
            b64.contains('+') && b64.contains("//") && b64.ends_with('='),
            "{b64}"
        );
        assert_eq!(
            decode_get_path(&b64).as_deref(),
            Some(der.as_slice()),
            "raw"
        );
        let escaped = b64
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        assert_eq!(
            decode_get_path(&escaped).as_deref(),
            Some(der.as_slice()),
            "escaped"
        );
        let lower = b64.replace('+', "%2b").replace('/', "%2f");
        assert_eq!(
            decode_get_path(&lower).as_deref(),
            Some(der.as_slice()),
            "lower-case escapes"
        );
        assert_eq!(
            decode_get_path(b64.trim_end_matches('=')).as_deref(),
            Some(der.as_slice()),
            "unpadded"
        );
        let url_safe = base64::engine::general_purpose::URL_SAFE.encode(&der);
        assert_eq!(
            decode_get_path(&url_safe).as_deref(),
            Some(der.as_slice()),
            "url-safe"
        );
        assert_eq!(decode_get_path(""), None);
        assert_eq!(decode_get_path("%zz"), None);
        assert_eq!(decode_get_path("not base64!"), None);
        assert_eq!(decode_get_path(&"A".repeat(100_000)), None);
    }

    #[test]
    fn percent_escapes_are_exactly_two_hex_digits() {
        // from_str_radix alone accepts a sign: "%+f" would be byte 0x0f.
        for bad in ["%+f", "%-1", "%2", "%", "%ZZ", "%g0", "AB%+fCD", "AB%2"] {
            assert_eq!(unescape(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(unescape(b"%2F").as_deref(), Some(&b"/"[..]));
        assert_eq!(unescape(b"%2f").as_deref(), Some(&b"/"[..]));
        assert_eq!(unescape(b"MF%2BwT%3D%3D").as_deref(), Some(&b"MF+wT=="[..]));
        assert_eq!(
            unescape(b"MFEw").as_deref(),
            Some(&b"MFEw"[..]),
            "no escape"
        );
    }
}
