//! The registration authority's JSON API, `/api/v1/…` on the HTTPS listener (see `docs/ra.md`).
//!
//! ```text
//! request ─▶ Caller (bearer token or client certificate, checked before the body is read)
//!         ─▶ JSON body (application/json, unknown fields refused, the failing field named)
//!         ─▶ ra::desk::RequestDesk (authorisation, validation, the store, the CA)
//!         ─▶ JSON, or an RFC 9457 problem document
//! ```
//!
//! The OpenAPI 3.1 document at `/api/openapi.json` is generated from these handlers and the
//! desk's types (utoipa), so it cannot drift from the code. The plain-HTTP listener answers
//! every `/api/v1` path with 403 before looking at any header: a bearer token sent in clear
//! is never read, let alone accepted.

use super::body::{read_limited, BodyError};
use super::reply::{reply, Reply};
use super::tls::ClientIdentity;
use super::AppState;
use crate::ra::access::Principal;
use crate::ra::desk::*;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::http::request::Parts;
use hyper::{HeaderMap, StatusCode};
use serde::Serialize;
use std::sync::Arc;
use utoipa::OpenApi;

/// Media type of RFC 9457 problem documents.
const PROBLEM: &str = "application/problem+json";
/// Media type of the API's bodies.
const JSON: &str = "application/json";
/// Largest JSON body besides a request document: a bulk submission of 1,000 rows with CSRs.
const MAX_ROWS_BYTES: usize = 4 * 1024 * 1024;

/// The body limit of `/api/` paths: one document and its signature in base64, plus the rows.
pub fn body_limit(config: &crate::config::Config) -> usize {
    (config.ra.max_document_bytes * 2).div_ceil(3) * 4 + MAX_ROWS_BYTES
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary of the kind.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The fields that are wrong (validation problems).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Why an API call was refused, answered as a problem document.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The desk refused.
    Desk(DeskError),
    /// The body is not JSON, or not of the expected shape.
    Malformed {
        /// The JSON path of the failing value.
        field: String,
        /// What serde said.
        message: String,
    },
    /// Wrong or missing Content-Type.
    MediaType,
    /// The body could not be read.
    Body(BodyError),
    /// Reached over plain HTTP.
    PlainHttp,
    /// The RA is not set up in this process.
    NotServed,
}

impl From<DeskError> for ApiError {
    fn from(e: DeskError) -> Self {
        Self::Desk(e)
    }
}

fn problem(
    status: StatusCode,
    code: &str,
    title: &'static str,
    detail: String,
    errors: Vec<FieldError>,
) -> Reply {
    let body = Problem {
        kind: format!("urn:pkid:problem:{code}"),
        title,
        status: status.as_u16(),
        detail,
        errors,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    reply(status, PROBLEM, bytes)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Reply {
        match self {
            Self::Desk(e) => match e {
                DeskError::Unauthenticated => {
                    let mut r = problem(StatusCode::UNAUTHORIZED, "unauthenticated", "Authentication required",
                        "send a bearer token (Authorization: Bearer pkid_…) or a registered client certificate".into(), vec![]);
                    r.headers_mut().insert(WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer realm=\"pkid\""));
                    r
                }
                DeskError::Forbidden(m) => problem(StatusCode::FORBIDDEN, "forbidden", "Forbidden", m, vec![]),
                DeskError::NotFound(m) => problem(StatusCode::NOT_FOUND, "not-found", "Not found", m, vec![]),
                DeskError::Invalid(errors) => {
                    let detail = match errors.as_slice() {
                        [one] if one.field.is_empty() => one.message.clone(),
                        [one] => format!("{}: {}", one.field, one.message),
                        many => format!("{} fields are invalid", many.len()),
                    };
                    problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "Invalid request", detail, errors)
                }
                DeskError::Conflict(m) => problem(StatusCode::CONFLICT, "conflict", "Conflict", m, vec![]),
                DeskError::TooLarge(m) => problem(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Too large", m, vec![]),
                DeskError::Unavailable(m) => {
                    tracing::warn!(reason = %m, "RA call unavailable");
                    problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", "try again later".into(), vec![])
                }
                DeskError::Internal(m) => {
                    tracing::error!(reason = %m, "RA call failed");
                    problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", "internal error".into(), vec![])
                }
            },
            Self::Malformed { field, message } => problem(
                StatusCode::BAD_REQUEST,
                "malformed",
                "Malformed JSON",
                if field.is_empty() || field == "." { message.clone() } else { format!("{field}: {message}") },
                vec![FieldError { row: None, field, message }],
            ),
            Self::MediaType => problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "media-type", "Unsupported media type",
                "Content-Type must be application/json".into(), vec![]),
            Self::Body(e) => {
                let status = match e {
                    BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                    BodyError::Broken => StatusCode::BAD_REQUEST,
                    BodyError::TimedOut => StatusCode::REQUEST_TIMEOUT,
                };
                problem(status, "body", "Unreadable body", e.to_string(), vec![])
            }
            Self::PlainHttp => problem(StatusCode::FORBIDDEN, "https-required", "HTTPS required",
                "the RA API is served only on the HTTPS listener; credentials sent here were not read".into(), vec![]),
            Self::NotServed => problem(StatusCode::NOT_FOUND, "not-found", "Not found",
                "the registration authority is not served by this process".into(), vec![]),
        }
    }
}

/// The problem document for a body refused before it reached a handler (the body-limit
/// layer's 413 for a declared length over the API's limit).
pub(crate) fn refused_body(e: BodyError) -> Reply {
    ApiError::Body(e).into_response()
}

/// The authenticated caller of an API call.
pub(crate) struct Caller(pub(crate) Principal);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let desk = state.desk.clone().ok_or(ApiError::NotServed)?;
        let bearer = parts
            .headers
            .get(AUTHORIZATION)
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|s| s.strip_prefix("Bearer "))
                    .map(|t| zeroize::Zeroizing::new(t.trim().to_owned()))
                    .ok_or(ApiError::Desk(DeskError::Unauthenticated))
            })
            .transpose()?;
        let identity = parts.extensions.get::<ClientIdentity>().cloned();
        let principal = blocking(move || match (bearer, identity) {
            (Some(token), _) => desk.authenticate_token(&token),
            (None, Some(id)) => desk.authenticate_certificate(&id.leaf, &id.serial, &id.subject),
            (None, None) => Err(DeskError::Unauthenticated),
        })
        .await?;
        Ok(Caller(principal))
    }
}

/// Runs a desk call on a blocking thread (the store is synchronous).
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeskError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::Desk),
        Err(e) => Err(ApiError::Desk(DeskError::Internal(format!("task: {e}")))),
    }
}

fn desk(state: &AppState) -> Result<Arc<RequestDesk>, ApiError> {
    state.desk.clone().ok_or(ApiError::NotServed)
}

/// Reads a JSON body of type `T`: `application/json`, within the API's limit, unknown fields
/// refused, and the failing field's path named.
pub(super) async fn json_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: Request,
) -> Result<T, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::MediaType);
    }
    let limit = body_limit(&state.config.load());
    let (parts, body) = req.into_parts();
    let bytes = read_limited(&parts.headers, body, limit)
        .await
        .map_err(ApiError::Body)?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let message = e.inner().to_string();
        let mut field = e.path().to_string();
        // A missing field is reported at its parent: name the field itself.
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            field = if field == "." {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            };
        }
        ApiError::Malformed { field, message }
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(JSON))
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(b) => reply(status, JSON, b),
        Err(e) => ApiError::Desk(DeskError::Internal(e.to_string())).into_response(),
    }
}

pub(super) fn answer<T: Serialize>(status: StatusCode, r: Result<T, ApiError>) -> Reply {
    match r {
        Ok(v) => json(status, &v),
        Err(e) => e.into_response(),
    }
}

/// The API's routes (nested under `/api/v1` on the HTTPS listener).
pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/me", get(me))
        .route("/requests", post(submit).get(list))
        .route("/batches", post(submit_batch))
        .route("/revocations", post(revoke_with_code))
        .route("/requests/{id}", get(show))
        .route("/requests/{id}/events", get(history))
        .route("/requests/{id}/transitions", post(act))
        .route("/documents/check", post(check_document))
        .route("/documents/{id}", get(document))
        .route("/documents/{id}/signature", get(document_signature))
        .route("/reports", get(report))
        .route("/subscribers/export", get(export_subscriber))
        .route("/issuance/pauses", get(pauses))
        .route("/issuers/{name}/pause", post(pause))
        .route("/issuers/{name}/resume", post(resume))
        .route("/issuers/{name}/revoke", post(revoke_issuer))
        .route("/confirmations", get(confirmations))
        .route("/confirmations/{id}/confirm", post(confirm))
        .route("/organisations", post(add_organisation).get(organisations))
        .route("/organisations/{id}", get(organisation))
        .route("/operators", post(add_operator).get(operators))
        .route("/operators/{id}", axum::routing::delete(remove_operator))
        .route("/operators/{id}/tokens", post(issue_token))
        .fallback(|| async {
            ApiError::Desk(DeskError::NotFound("no such API path".into())).into_response()
        })
}

/// The plain-HTTP listener's `/api` answer.
pub(crate) async fn plain_http() -> Reply {
    ApiError::PlainHttp.into_response()
}

/// Who the caller is.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    /// Operator id, or `subscriber:SERIAL`.
    pub id: String,
    /// Role (absent for a subscriber).
    pub role: Option<&'static str>,
}

/// The caller, as the server sees it.
#[utoipa::path(get, path = "/api/v1/me", responses((status = 200, body = Me), (status = 401, body = Problem)), security(("bearer" = [])))]
async fn me(Caller(who): Caller) -> Reply {
    json(
        StatusCode::OK,
        &Me {
            id: who.actor(),
            role: who.role().map(|r| r.as_str()),
        },
    )
}

/// Files a request. A complete request with a validly signed document is accepted at once.
#[utoipa::path(post, path = "/api/v1/requests", request_body = RequestInput,
    responses((status = 201, body = RequestView), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn submit(State(state): State<Arc<AppState>>, Caller(who): Caller, req: Request) -> Reply {
    let r = async {
        let input: RequestInput = json_body(&state, req).await?;
        let desk = desk(&state)?;
        blocking(move || desk.submit(&who, input)).await
    }
    .await;
    answer(StatusCode::CREATED, r)
}

/// Checks a request document before filing: the signature verification and signer check a
/// request filed with it now would record, nothing stored.
#[utoipa::path(post, path = "/api/v1/documents/check", request_body = DocumentCheckInput,
    responses((status = 200, body = DocumentCheckView), (status = 403, body = Problem),
              (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn check_document(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    req: Request,
) -> Reply {
    let r = async {
        let input: DocumentCheckInput = json_body(&state, req).await?;
        let desk = desk(&state)?;
        blocking(move || desk.check_document(&who, &input)).await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// Reports a key compromised with the subscriber's one-time revocation code: no token, no
/// certificate, no key. Accepted at once with the 12-hour deadline; the code is spent.
#[utoipa::path(post, path = "/api/v1/revocations", request_body = CodeRevocationInput,
    responses((status = 201, body = CodeRevocationView), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn revoke_with_code(State(state): State<Arc<AppState>>, req: Request) -> Reply {
    let r = async {
        let input: CodeRevocationInput = json_body(&state, req).await?;
        let desk = desk(&state)?;
        blocking(move || desk.revoke_with_code(&input)).await
    }
    .await;
    answer(StatusCode::CREATED, r)
}

/// A bulk submission's answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchView {
    /// The batch id.
    pub batch: Option<String>,
    /// The stored requests.
    pub requests: Vec<RequestView>,
}

/// Files up to 1,000 requests of one organisation under one document, all or nothing.
#[utoipa::path(post, path = "/api/v1/batches", request_body = BatchInput,
    responses((status = 201, body = BatchView), (status = 413, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn submit_batch(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    req: Request,
) -> Reply {
    let r = async {
        let input: BatchInput = json_body(&state, req).await?;
        let desk = desk(&state)?;
        let requests = blocking(move || desk.submit_batch(&who, input)).await?;
        Ok(BatchView {
            batch: requests.first().and_then(|r| r.batch.clone()),
            requests,
        })
    }
    .await;
    answer(StatusCode::CREATED, r)
}

fn query<T: serde::de::DeserializeOwned>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::Malformed {
        field: "query".into(),
        message: e.body_text(),
    })
}

/// Requests within the caller's scope, newest first.
#[utoipa::path(get, path = "/api/v1/requests", params(ListQuery),
    responses((status = 200, body = RequestPage), (status = 401, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn list(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
    let r = async {
        let q = query(q)?;
        let desk = desk(&state)?;
        blocking(move || desk.list(&who, &q)).await
    }
    .await;
    answer(StatusCode::OK, r)
}

fn id(p: Result<Path<i64>, axum::extract::rejection::PathRejection>) -> Result<i64, ApiError> {
    match p {
        Ok(Path(id)) if id > 0 => Ok(id),
        _ => Err(ApiError::Desk(DeskError::NotFound(
            "no such request".into(),
        ))),
    }
}

type IdPath = Result<Path<i64>, axum::extract::rejection::PathRejection>;

/// One request.
#[utoipa::path(get, path = "/api/v1/requests/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = RequestView), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn show(State(state): State<Arc<AppState>>, Caller(who): Caller, p: IdPath) -> Reply {
    let r = async {
        let id = id(p)?;
        let desk = desk(&state)?;
        blocking(move || desk.show(&who, id)).await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// A request's history.
#[utoipa::path(get, path = "/api/v1/requests/{id}/events", params(("id" = i64, Path)),
    responses((status = 200, body = [EventView]), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn history(State(state): State<Arc<AppState>>, Caller(who): Caller, p: IdPath) -> Reply {
    let r = async {
        let id = id(p)?;
        let desk = desk(&state)?;
        blocking(move || desk.history(&who, id)).await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// Moves a request: accept, approve (which fulfils it), return, reject, resubmit,
/// original-received.
#[utoipa::path(post, path = "/api/v1/requests/{id}/transitions", params(("id" = i64, Path)), request_body = ActionInput,
    responses((status = 200, body = RequestView), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn act(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    p: IdPath,
    req: Request,
) -> Reply {
    let r = async {
        let id = id(p)?;
        let input: ActionInput = json_body(&state, req).await?;
        let desk = desk(&state)?;
        blocking(move || desk.act(&who, id, &input)).await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// A request document, byte-exact.
#[utoipa::path(get, path = "/api/v1/documents/{id}", params(("id" = i64, Path)),
    responses((status = 200, content_type = "application/octet-stream"), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn document(State(state): State<Arc<AppState>>, Caller(who): Caller, p: IdPath) -> Reply {
    let r = async {
        let id = id(p)?;
        let desk = desk(&state)?;
        blocking(move || desk.document(&who, id)).await
    }
    .await;
    match r {
        Ok(d) => {
            let pdf = d.content.starts_with(b"%PDF-");
            reply(
                StatusCode::OK,
                if pdf {
                    "application/pdf"
                } else {
                    "application/octet-stream"
                },
                d.content,
            )
        }
        Err(e) => e.into_response(),
    }
}

/// A request document's detached signature (`.p7s`).
#[utoipa::path(get, path = "/api/v1/documents/{id}/signature", params(("id" = i64, Path)),
    responses((status = 200, content_type = "application/pkcs7-signature"), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn document_signature(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    p: IdPath,
) -> Reply {
    let r = async {
        let id = id(p)?;
        let desk = desk(&state)?;
        blocking(move || desk.document(&who, id)).await
    }
    .await;
    match r.map(|d| d.signature) {
        Ok(Some(sig)) => reply(StatusCode::OK, "application/pkcs7-signature", sig),
        Ok(None) => ApiError::Desk(DeskError::NotFound(
            "the document has no detached signature".into(),
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The periodic report of a subtree: JSON, or CSV with `format=csv`.
#[utoipa::path(get, path = "/api/v1/reports", params(ReportQuery),
    responses((status = 200, body = crate::ra::report::Report), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn report(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
    let r = async {
        let q = query(q)?;
        let csv = q.format.as_deref() == Some("csv");
        let desk = desk(&state)?;
        Ok::<_, ApiError>((blocking(move || desk.report(&who, &q)).await?, csv))
    }
    .await;
    match r {
        Ok((report, true)) => reply(StatusCode::OK, "text/csv; charset=utf-8", report.to_csv()),
        Ok((report, false)) => json(StatusCode::OK, &report),
        Err(e) => e.into_response(),
    }
}

/// The subscriber whose data is exported.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// The subscriber's official email.
    pub email: String,
}

/// One request of a subscriber's export, with its history.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExportedRequest {
    /// The request, personal fields opened.
    pub request: RequestView,
    /// Its history.
    pub events: Vec<EventView>,
}

/// Everything the RA holds about one subscriber, within the caller's reach (Decree 13/2023).
#[utoipa::path(get, path = "/api/v1/subscribers/export", params(ExportQuery),
    responses((status = 200, body = [ExportedRequest]), (status = 403, body = Problem)), security(("bearer" = [])))]
async fn export_subscriber(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
    let r = async {
        let q = query(q)?;
        let desk = desk(&state)?;
        let rows = blocking(move || desk.export_subscriber(&who, &q.email)).await?;
        Ok::<_, ApiError>(
            rows.into_iter()
                .map(|(request, events)| ExportedRequest { request, events })
                .collect::<Vec<_>>(),
        )
    }
    .await;
    match r {
        Ok(v) => {
            let mut resp = json(StatusCode::OK, &v);
            resp.headers_mut().insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// Issuance pauses in force.
#[utoipa::path(get, path = "/api/v1/issuance/pauses", responses((status = 200, body = [PauseView])), security(("bearer" = [])))]
async fn pauses(State(state): State<Arc<AppState>>, Caller(who): Caller) -> Reply {
    let r = async {
        let desk = desk(&state)?;
        blocking(move || desk.active_pauses(&who)).await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// Pauses new issuance by an issuer at once (ca-admin; no second confirmation: it is urgent).
#[utoipa::path(post, path = "/api/v1/issuers/{name}/pause", params(("name" = String, Path)), request_body = ReasonInput,
    responses((status = 200, body = PauseView), (status = 403, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn pause(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    Path(name): Path<String>,
    req: Request,
) -> Reply {
    let r = async {
        let input: ReasonInput = json_body(&state, req).await?;
        let desk = desk(&state)?;
        blocking(move || desk.pause(&who, &name, &input.reason)).await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// Asks to resume a paused issuer; a second, different ca-admin confirms.
#[utoipa::path(post, path = "/api/v1/issuers/{name}/resume", params(("name" = String, Path)),
    responses((status = 202, body = ConfirmationView), (status = 403, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn resume(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    Path(name): Path<String>,
) -> Reply {
    let r = async {
        let desk = desk(&state)?;
        blocking(move || desk.propose_resume(&who, &name)).await
    }
    .await;
    answer(StatusCode::ACCEPTED, r)
}

/// Asks to revoke an issuer's CA certificate; a second, different ca-admin confirms.
#[utoipa::path(post, path = "/api/v1/issuers/{name}/revoke", params(("name" = String, Path)), request_body = ReasonInput,
    responses((status = 202, body = ConfirmationView), (status = 403, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn revoke_issuer(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    Path(name): Path<String>,
    req: Request,
) -> Reply {
    let r = async {
        let input: ReasonInput = json_body(&state, req).await?;
        let desk = desk(&state)?;
        blocking(move || desk.propose_issuer_revocation(&who, &name, &input.reason)).await
    }
    .await;
    answer(StatusCode::ACCEPTED, r)
}

/// Dual-control actions waiting for a second ca-admin.
#[utoipa::path(get, path = "/api/v1/confirmations", responses((status = 200, body = [ConfirmationView]), (status = 403, body = Problem)), security(("bearer" = [])))]
async fn confirmations(State(state): State<Arc<AppState>>, Caller(who): Caller) -> Reply {
    let r = async {
        let desk = desk(&state)?;
        blocking(move || desk.pending_confirmations(&who)).await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// Confirms a dual-control action (a ca-admin other than the one who asked); it takes effect now.
#[utoipa::path(post, path = "/api/v1/confirmations/{id}/confirm", params(("id" = i64, Path)),
    responses((status = 200, body = ConfirmationView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn confirm(State(state): State<Arc<AppState>>, Caller(who): Caller, p: IdPath) -> Reply {
    let r = async {
        let id = id(p)?;
        let desk = desk(&state)?;
        blocking(move || desk.confirm(&who, id)).await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// Adds an organisation (ca-admin).
#[utoipa::path(post, path = "/api/v1/organisations", request_body = OrganisationInput,
    responses((status = 201, body = OrganisationView), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn add_organisation(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    req: Request,
) -> Reply {
    let r = async {
        let input: OrganisationInput = json_body(&state, req).await?;
        let desk = desk(&state)?;
        blocking(move || desk.add_organisation(&who, input)).await
    }
    .await;
    answer(StatusCode::CREATED, r)
}

/// Organisations within the caller's scope.
#[utoipa::path(get, path = "/api/v1/organisations", responses((status = 200, body = [OrganisationView])), security(("bearer" = [])))]
async fn organisations(State(state): State<Arc<AppState>>, Caller(who): Caller) -> Reply {
    let r = async {
        let desk = desk(&state)?;
        blocking(move || desk.organisations(&who)).await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// One organisation.
#[utoipa::path(get, path = "/api/v1/organisations/{id}", params(("id" = String, Path)),
    responses((status = 200, body = OrganisationView), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn organisation(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply {
    let r = async {
        let desk = desk(&state)?;
        blocking(move || desk.organisation(&who, &id)).await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// Adds an operator (ca-admin).
#[utoipa::path(post, path = "/api/v1/operators", request_body = OperatorInput,
    responses((status = 201, body = OperatorView), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn add_operator(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    req: Request,
) -> Reply {
    let r = async {
        let input: OperatorInput = json_body(&state, req).await?;
        let desk = desk(&state)?;
        blocking(move || desk.add_operator(&who, input)).await
    }
    .await;
    answer(StatusCode::CREATED, r)
}

/// Operators (ca-admin).
#[utoipa::path(get, path = "/api/v1/operators", responses((status = 200, body = [OperatorView]), (status = 403, body = Problem)), security(("bearer" = [])))]
async fn operators(State(state): State<Arc<AppState>>, Caller(who): Caller) -> Reply {
    let r = async {
        let desk = desk(&state)?;
        blocking(move || desk.operators(&who)).await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// Removes an operator (ca-admin): its tokens stop working at once.
#[utoipa::path(delete, path = "/api/v1/operators/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn remove_operator(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply {
    let r = async {
        let desk = desk(&state)?;
        blocking(move || desk.remove_operator(&who, &id)).await
    }
    .await;
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// A new bearer token, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// The token (`pkid_…`); only its hash is stored.
    pub token: String,
}

/// Makes a bearer token for an operator (ca-admin).
#[utoipa::path(post, path = "/api/v1/operators/{id}/tokens", params(("id" = String, Path)),
    responses((status = 201, body = TokenView), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn issue_token(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply {
    let r = async {
        let desk = desk(&state)?;
        blocking(move || desk.issue_token(&who, &id)).await
    }
    .await;
    match r {
        Ok(t) => {
            let mut resp = json(
                StatusCode::CREATED,
                &TokenView {
                    token: t.to_string(),
                },
            );
            resp.headers_mut().insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Err(e) => e.into_response(),
    }
}

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "pkid registration authority", description = "Organisations file certification requests; RA officers fulfil them within service deadlines. Errors are RFC 9457 problem documents."),
    paths(me, submit, submit_batch, revoke_with_code, list, show, history, act, check_document, document, document_signature,
          report, export_subscriber, pauses, pause, resume, revoke_issuer, confirmations, confirm, add_organisation, organisations, organisation, add_operator, operators, remove_operator, issue_token),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;
