//! Organisations' enrollment credentials in the RA's JSON API
//! (`/api/v1/organisations/{id}/credentials`, see `docs/est.md`): the EST HTTP Basic users and
//! CMP shared secrets `pkid credential` manages, through the same desk calls. Listing never
//! shows a secret; a new credential's secret is in the `201` answer only (`no-store`).

use super::api::{answer, blocking, json_body, ApiError, Caller, Problem};
use super::reply::Reply;
use super::AppState;
use crate::ra::desk::{CredentialInput, CredentialView};
use axum::extract::{Path, Request, State};
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use axum::Router;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::StatusCode;
use serde::Serialize;
use std::sync::Arc;

/// The credential routes, merged with the API router under `/api/v1` (`http::routes`).
pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/organisations/{id}/credentials", get(list).post(add))
        .route(
            "/organisations/{id}/credentials/{kind}/{name}",
            delete(remove),
        )
}

/// A new credential with its secret, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct NewCredentialView {
    /// The credential.
    #[serde(flatten)]
    pub(super) credential: CredentialView,
    /// The generated password (EST: `curl --user NAME:SECRET`) or shared secret (CMP). Only
    /// its Argon2id hash (EST) or a sealed copy (CMP) is stored.
    pub(super) secret: String,
}

/// The enrollment credentials of an organisation (never their secrets).
#[utoipa::path(get, path = "/api/v1/organisations/{id}/credentials", params(("id" = String, Path)),
    responses((status = 200, body = [CredentialView]), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn list(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply {
    let r = async {
        let desk = state.desk.clone().ok_or(ApiError::NotServed)?;
        blocking(move || desk.enrollment_credentials(&who, Some(&id))).await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// Makes an enrollment credential (a ca-admin, or an officer of the organisation); the
/// generated secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/organisations/{id}/credentials", params(("id" = String, Path)),
    request_body = CredentialInput,
    responses((status = 201, body = NewCredentialView), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 415, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn add(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    Path(id): Path<String>,
    req: Request,
) -> Reply {
    let r = async {
        let input: CredentialInput = json_body(&state, req).await?;
        let desk = state.desk.clone().ok_or(ApiError::NotServed)?;
        let (credential, secret) =
            blocking(move || desk.add_enrollment_credential(&who, &id, &input)).await?;
        Ok::<_, ApiError>(NewCredentialView {
            credential,
            secret: secret.to_string(),
        })
    }
    .await;
    let mut resp = answer(StatusCode::CREATED, r);
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Removes an enrollment credential (a ca-admin, or an officer of the organisation): it stops
/// authenticating on the next request.
#[utoipa::path(delete, path = "/api/v1/organisations/{id}/credentials/{kind}/{name}",
    params(("id" = String, Path), ("kind" = String, Path, description = "est or cmp"), ("name" = String, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn remove(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    Path((id, kind, name)): Path<(String, String, String)>,
) -> Reply {
    let r = async {
        let desk = state.desk.clone().ok_or(ApiError::NotServed)?;
        blocking(move || desk.remove_enrollment_credential(&who, &id, &kind, &name)).await
    }
    .await;
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// The credential paths of the OpenAPI document (merged into the API's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, add, remove),
    components(schemas(CredentialInput, CredentialView, NewCredentialView))
)]
pub(super) struct CredentialsDoc;
