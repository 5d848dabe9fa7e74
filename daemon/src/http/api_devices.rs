//! Key devices in the RA's JSON API (`/api/v1/devices`, see `docs/key-devices.md`): the list
//! and one device's history, scoped like requests (a CA admin sees every device, an RA officer
//! or auditor those of its scope, an organisation officer its organisation's). Reading only:
//! provisioning, unlocking and wiping need the token plugged into the CA host (`pkid token`).

use super::api::{answer, blocking, ApiError, Caller, Problem};
use super::AppState;
use crate::ra::desk::DeskError;
use crate::token::{device_json, event_json, visible_device, visible_devices, TokenError};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use hyper::StatusCode;
use std::sync::Arc;

/// Longest device serial looked up (PKCS#11 serial numbers are 16 characters).
const MAX_SERIAL: usize = 64;

/// The device routes, merged with the API router under `/api/v1` (`http::routes`).
pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/devices", get(list))
        .route("/devices/{serial}", get(show))
}

fn desk_error(e: TokenError) -> DeskError {
    e.into()
}

/// The key devices the caller reaches, by serial.
#[utoipa::path(get, path = "/api/v1/devices",
    responses((status = 200, description = "The devices (serial, model, organisation, request, certificate, state, receiver, times)"),
              (status = 401, body = Problem)), security(("bearer" = [])))]
async fn list(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
) -> crate::http::reply::Reply {
    let store = state.store.clone();
    let r = blocking(move || {
        visible_devices(store.as_ref(), &who)
            .map(|v| v.iter().map(device_json).collect::<Vec<_>>())
            .map_err(desk_error)
    })
    .await;
    answer(StatusCode::OK, r)
}

/// One key device and its history (provisioned, handed over, unlocked, returned, wiped).
#[utoipa::path(get, path = "/api/v1/devices/{serial}", params(("serial" = String, Path)),
    responses((status = 200, description = "The device and its history"), (status = 403, body = Problem),
              (status = 404, body = Problem)), security(("bearer" = [])))]
async fn show(
    State(state): State<Arc<AppState>>,
    Caller(who): Caller,
    serial: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> crate::http::reply::Reply {
    let r = async {
        let serial = match serial {
            Ok(Path(s)) if !s.is_empty() && s.len() <= MAX_SERIAL => s,
            _ => return Err(ApiError::Desk(DeskError::NotFound("no such device".into()))),
        };
        let store = state.store.clone();
        blocking(move || {
            visible_device(store.as_ref(), &who, &serial)
                .map(|(d, history)| {
                    serde_json::json!({
                        "device": device_json(&d),
                        "history": history.iter().map(event_json).collect::<Vec<_>>(),
                    })
                })
                .map_err(desk_error)
        })
        .await
    }
    .await;
    answer(StatusCode::OK, r)
}

/// `GET /api/openapi.json`: the API's document with the device, credential and signing-account paths
/// merged in (served from here so that `api` does not import this module back).
pub(crate) async fn openapi() -> crate::http::reply::Reply {
    use utoipa::OpenApi;
    let mut doc = super::api::ApiDoc::openapi();
    doc.merge(DevicesDoc::openapi());
    doc.merge(super::api_credentials::CredentialsDoc::openapi());
    doc.merge(crate::csc::http::CscDoc::openapi());
    match doc.to_json() {
        Ok(s) => crate::http::reply::reply(StatusCode::OK, "application/json", s),
        Err(e) => axum::response::IntoResponse::into_response(ApiError::Desk(DeskError::Internal(
            e.to_string(),
        ))),
    }
}

/// The device paths of the OpenAPI document (merged into the API's).
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, show))]
pub(super) struct DevicesDoc;
