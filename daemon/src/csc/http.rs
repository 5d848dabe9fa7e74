//! The HTTP side of remote signing: the CSC API v2 under `/csc/v2/` and the activation call
//! `POST /api/v1/activation/{code}`, both on the HTTPS listener only.
//!
//! ```text
//! /csc/v2/info                    POST|GET  public
//! /csc/v2/auth/login              POST      Authorization: Basic (official email, password)
//! /csc/v2/auth/revoke             POST      Bearer
//! /csc/v2/credentials/list        POST      Bearer
//! /csc/v2/credentials/info        POST      Bearer
//! /csc/v2/credentials/authorize   POST      Bearer, OTP (TOTP), hashes → SAD
//! /csc/v2/credentials/extendTransaction  POST  Bearer, SAD → a new SAD, its lifetime renewed
//! /csc/v2/signatures/signHash     POST      Bearer, SAD, hashes → signatures
//! /api/v1/activation/{code}       POST      the one-time code in the path, {"password"}
//! /api/v1/csc/accounts/unlock     POST      an RA officer's token, {"email"} → 204
//! /api/v1/csc/accounts/reenrol    POST      an RA officer's token, {"email"} → 204, new activation mail
//! ```
//!
//! CSC errors are `{"error": …, "error_description": …}` (CSC API v2 §10.1) with the HTTP status
//! of their kind; the activation call answers RFC 9457 problem documents like the rest of
//! `/api/v1`. Handlers only adapt: [`super::Csc`] decides, on a blocking thread.

use super::{Csc, CscError, CscParts, Session, ECDSA_SHA256_OID, P256_OID, SPECS};
use crate::http::api::{ApiError, Caller, Problem};
use crate::http::body::{read_limited, BodyError};
use crate::http::AppState;
use axum::extract::{ConnectInfo, Path, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use base64::Engine;
use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

/// Largest CSC request body: 1,000 base64 SHA-256 hashes and the rest, with room.
const MAX_BODY: usize = 256 * 1024;

/// The service of a state, when remote signing is enabled and the RA and data key are loaded
/// (made once: `[csc]` changes need a restart).
pub fn service(state: &Arc<AppState>) -> Option<Arc<Csc>> {
    state.csc.get_or_init(|| build(state)).clone()
}

fn build(state: &Arc<AppState>) -> Option<Arc<Csc>> {
    let config = state.config.load();
    if !config.csc.enabled {
        return None;
    }
    let desk = state.desk.as_ref()?;
    let sealer = desk.sealer()?;
    match Csc::new(CscParts {
        store: state.store.clone(),
        sealer,
        authority: state.authority.clone(),
        config: config.csc.clone(),
        clock: desk.clock(),
    }) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            tracing::error!(error = %e, "remote signing is not served");
            None
        }
    }
}

/// The `/csc/v2/` routes (merged into the HTTPS listener's router).
pub fn router(csc: Option<Arc<Csc>>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/csc/v2/info", post(info).get(info))
        .route("/csc/v2/auth/login", post(login))
        .route("/csc/v2/auth/revoke", post(revoke))
        .route("/csc/v2/credentials/list", post(list))
        .route("/csc/v2/credentials/info", post(credential_info))
        .route("/csc/v2/credentials/authorize", post(authorize))
        .route(
            "/csc/v2/credentials/extendTransaction",
            post(extend_transaction),
        )
        .route("/csc/v2/signatures/signHash", post(sign_hash))
        .layer(Extension(Served(csc)))
}

/// `/activation/{code}` (nested under `/api/v1`).
pub fn activation_router(csc: Option<Arc<Csc>>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/activation/{code}", post(activate))
        .route("/csc/accounts/unlock", post(unlock))
        .route("/csc/accounts/reenrol", post(reenrol))
        .layer(Extension(Served(csc)))
}

#[derive(Clone)]
struct Served(Option<Arc<Csc>>);

impl Served {
    fn get(&self) -> Result<Arc<Csc>, CscError> {
        self.0.clone().ok_or_else(|| {
            CscError::NotFound("remote signing is not served by this process".into())
        })
    }
}

fn json_reply(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, serde_json::to_vec(v).unwrap_or_default()).into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The CSC error form.
fn csc_error(e: CscError) -> Response {
    let (status, code) = match &e {
        CscError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        CscError::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
        CscError::Authentication => (StatusCode::UNAUTHORIZED, "authentication_error"),
        CscError::InvalidOtp => (StatusCode::BAD_REQUEST, "invalid_otp"),
        CscError::InvalidPin => (StatusCode::BAD_REQUEST, "invalid_pin"),
        CscError::Denied(_) => (StatusCode::FORBIDDEN, "access_denied"),
        CscError::NotFound(_) => (StatusCode::NOT_FOUND, "invalid_request"),
        CscError::Conflict(_) => (StatusCode::CONFLICT, "invalid_request"),
        CscError::Unavailable(m) => {
            tracing::warn!(reason = %m, "remote-signing call unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        CscError::Internal(m) => {
            tracing::error!(reason = %m, "remote-signing call failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        }
    };
    let description = match &e {
        CscError::Unavailable(_) => "try again later".to_owned(),
        CscError::Internal(_) => "internal error".to_owned(),
        e => e.to_string(),
    };
    let mut r = json_reply(
        status,
        &json!({"error": code, "error_description": description}),
    );
    match &e {
        CscError::InvalidToken(_) => {
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pkid-csc\", error=\"invalid_token\""),
            );
        }
        CscError::Authentication => {
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"pkid-csc\", charset=\"UTF-8\""),
            );
        }
        _ => {}
    }
    r
}

fn client(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// Reads a JSON body (an empty body is `{}`): `application/json`, unknown fields refused.
async fn body<T: serde::de::DeserializeOwned>(req: Request) -> Result<T, CscError> {
    let (parts, body) = req.into_parts();
    let bytes = read_limited(&parts.headers, body, MAX_BODY)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(_) => CscError::InvalidRequest(format!("{e}")),
            e => CscError::InvalidRequest(e.to_string()),
        })?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    let is_json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !is_json && bytes != b"{}" {
        return Err(CscError::InvalidRequest(
            "Content-Type must be application/json".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        CscError::InvalidRequest(format!("Invalid parameter {}: {}", e.path(), e.inner()))
    })
}

fn bearer(req: &Request) -> Result<zeroize::Zeroizing<String>, CscError> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.strip_prefix("Bearer "))
        .map(|t| zeroize::Zeroizing::new(t.trim().to_owned()))
        .ok_or_else(|| {
            CscError::InvalidToken(
                "send the access token from auth/login (Authorization: Bearer …)".into(),
            )
        })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CscError> + Send + 'static,
) -> Result<T, CscError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CscError::Internal(format!("task: {e}")))?
}

/// Authenticates the bearer token and reads the body, then runs `f` on a blocking thread.
async fn authed<I, T>(
    served: Served,
    req: Request,
    f: impl FnOnce(&Csc, Session, I, &str) -> Result<T, CscError> + Send + 'static,
) -> Result<T, CscError>
where
    I: serde::de::DeserializeOwned + Send + 'static,
    T: Send + 'static,
{
    let csc = served.get()?;
    let token = bearer(&req)?;
    let client = client(&req);
    let session = {
        let csc = csc.clone();
        let client = client.clone();
        blocking(move || csc.session(&token, &client)).await?
    };
    let input: I = body(req).await?;
    blocking(move || f(&csc, session, input, &client)).await
}

fn answer<T: Serialize>(r: Result<T, CscError>) -> Response {
    match r {
        Ok(v) => json_reply(
            StatusCode::OK,
            &serde_json::to_value(v).unwrap_or(Value::Null),
        ),
        Err(e) => csc_error(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
// Every parameter the CSC API defines is accepted; those this service does not use are read
// and ignored.
#[allow(dead_code)]
struct InfoInput {
    lang: Option<String>,
}

/// `info`: what this service is and does.
async fn info(Extension(served): Extension<Served>, req: Request) -> Response {
    if let Err(e) = served.get() {
        return csc_error(e);
    }
    let _: InfoInput = if req.method() == hyper::Method::POST {
        match body(req).await {
            Ok(i) => i,
            Err(e) => return csc_error(e),
        }
    } else {
        InfoInput::default()
    };
    json_reply(
        StatusCode::OK,
        &json!({
            "specs": SPECS,
            "name": "pkid",
            // No logo is published; the field is required, so it is empty.
            "logo": "",
            "region": "VN",
            "lang": "vi",
            "description": "Ký số từ xa: khóa của thuê bao lưu giữ tập trung trong hệ thống của CA / Remote signing with subscriber keys kept centrally by the CA",
            "authType": ["basic"],
            "oauth2": "",
            "methods": ["auth/login", "auth/revoke", "credentials/list", "credentials/info", "credentials/authorize", "credentials/extendTransaction", "signatures/signHash"],
            "signAlgorithms": {"algos": [ECDSA_SHA256_OID]},
        }),
    )
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
// Every parameter the CSC API defines is accepted; those this service does not use are read
// and ignored.
#[allow(dead_code)]
struct LoginInput {
    #[serde(rename = "rememberMe")]
    remember_me: Option<bool>,
    #[serde(rename = "clientData")]
    client_data: Option<String>,
}

/// `auth/login`: HTTP Basic with the official email and the account password.
async fn login(Extension(served): Extension<Served>, req: Request) -> Response {
    let r = async {
        let csc = served.get()?;
        let basic = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .map(zeroize::Zeroizing::new);
        let Some(basic) = basic else {
            return Err(CscError::Authentication);
        };
        let Some((email, password)) = basic.split_once(':') else {
            return Err(CscError::Authentication);
        };
        let (email, password) = (
            email.to_owned(),
            zeroize::Zeroizing::new(password.to_owned()),
        );
        let client = client(&req);
        let _: LoginInput = body(req).await?;
        let (token, expires_in) = blocking(move || csc.login(&email, &password, &client)).await?;
        Ok(json!({"access_token": token.as_str(), "expires_in": expires_in}))
    }
    .await;
    answer(r)
}

#[derive(Deserialize, Default)]
#[serde(default)]
// Every parameter the CSC API defines is accepted; those this service does not use are read
// and ignored.
#[allow(dead_code)]
struct RevokeInput {
    token: Option<String>,
    token_type_hint: Option<String>,
    #[serde(rename = "clientData")]
    client_data: Option<String>,
}

/// `auth/revoke`: ends the session of the bearer token (204).
async fn revoke(Extension(served): Extension<Served>, req: Request) -> Response {
    let r = async {
        let csc = served.get()?;
        let token = bearer(&req)?;
        let client = client(&req);
        {
            let csc = csc.clone();
            let token = token.clone();
            blocking(move || csc.session(&token, &client)).await?;
        }
        let _: RevokeInput = body(req).await?;
        csc.logout(&token);
        Ok(())
    }
    .await;
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => csc_error(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
// Every parameter the CSC API defines is accepted; those this service does not use are read
// and ignored.
#[allow(dead_code)]
struct ListInput {
    #[serde(rename = "userID")]
    user_id: Option<String>,
    #[serde(rename = "credentialInfo")]
    credential_info: bool,
    certificates: Option<String>,
    #[serde(rename = "certInfo")]
    cert_info: bool,
    #[serde(rename = "authInfo")]
    auth_info: bool,
    #[serde(rename = "onlyValid")]
    only_valid: bool,
    lang: Option<String>,
    #[serde(rename = "clientData")]
    client_data: Option<String>,
    #[serde(rename = "maxResults")]
    max_results: Option<u32>,
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
// Every parameter the CSC API defines is accepted; those this service does not use are read
// and ignored.
#[allow(dead_code)]
struct InfoRequest {
    #[serde(rename = "credentialID")]
    credential_id: String,
    certificates: Option<String>,
    #[serde(rename = "certInfo")]
    cert_info: bool,
    #[serde(rename = "authInfo")]
    auth_info: bool,
    lang: Option<String>,
    #[serde(rename = "clientData")]
    client_data: Option<String>,
}

/// The `credentials/info` answer for one credential.
fn describe(
    csc: &Csc,
    v: &super::CredentialView,
    certificates: Option<&str>,
    cert_info: bool,
    auth_info: bool,
) -> Result<Value, CscError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let certs: Vec<String> = match certificates.unwrap_or("single") {
        "none" => Vec::new(),
        "single" => v.chain.iter().take(1).map(|c| b64.encode(c)).collect(),
        "chain" => v.chain.iter().map(|c| b64.encode(c)).collect(),
        _ => {
            return Err(CscError::InvalidRequest(
                "Invalid parameter certificates: none, single or chain".into(),
            ))
        }
    };
    let enabled = v.credential.enabled && v.cert_status == "valid";
    let mut cert = json!({"status": v.cert_status, "certificates": certs});
    if cert_info {
        cert["issuerDN"] = json!(v.issuer);
        cert["serialNumber"] = json!(v.credential.serial);
        cert["subjectDN"] = json!(v.subject);
        cert["validFrom"] = json!(v.valid_from);
        cert["validTo"] = json!(v.valid_to);
    }
    let mut out = json!({
        "credentialID": v.credential.id,
        "description": "Khóa ký số tập trung / Central signing key",
        "signatureQualifier": "eu_eidas_aes",
        "key": {
            "status": if enabled { "enabled" } else { "disabled" },
            "algo": [ECDSA_SHA256_OID],
            "len": 256,
            "curve": P256_OID,
        },
        "cert": cert,
        "authMode": "explicit",
        "SCAL": "2",
        "multisign": csc.config().max_signatures,
        "lang": "vi",
    });
    if auth_info {
        out["auth"] = json!({
            "mode": "explicit",
            "expression": "OTP",
            "objects": [
                {"type": "Password", "id": "OTP", "format": "N", "label": "OTP",
                 "description": "Mã 6 chữ số của ứng dụng xác thực (TOTP) / the 6-digit code of your authenticator app",
                 "generator": "totp"},
                {"type": "Password", "id": "PIN", "format": "A", "label": "PIN",
                 "description": "Mật khẩu tài khoản (tùy chọn) / the account password (optional)"}
            ]
        });
    }
    Ok(out)
}

/// `credentials/list`.
async fn list(Extension(served): Extension<Served>, req: Request) -> Response {
    answer(
        authed(served, req, |csc, s, input: ListInput, client| {
            if input.user_id.is_some() {
                return Err(CscError::InvalidRequest(
                    "Invalid parameter userID: the access token names the user".into(),
                ));
            }
            let creds = csc.list(&s, client)?;
            let ids: Vec<&str> = creds.iter().map(|c| c.id.as_str()).collect();
            let mut out = json!({"credentialIDs": ids, "onlyValid": input.only_valid});
            if input.credential_info {
                let mut infos = Vec::new();
                for c in creds.iter().cloned() {
                    let v = csc.view(c)?;
                    infos.push(describe(
                        csc,
                        &v,
                        input.certificates.as_deref(),
                        input.cert_info,
                        input.auth_info,
                    )?);
                }
                out["credentialInfos"] = Value::Array(infos);
            }
            Ok(out)
        })
        .await,
    )
}

/// `credentials/info`.
async fn credential_info(Extension(served): Extension<Served>, req: Request) -> Response {
    answer(
        authed(served, req, |csc, s, input: InfoRequest, client| {
            require(&input.credential_id, "credentialID")?;
            let v = csc.info(&s, &input.credential_id, client)?;
            let mut out = describe(
                csc,
                &v,
                input.certificates.as_deref(),
                input.cert_info,
                input.auth_info,
            )?;
            if let Some(o) = out.as_object_mut() {
                o.remove("credentialID");
            }
            Ok(out)
        })
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
// Every parameter the CSC API defines is accepted; those this service does not use are read
// and ignored.
#[allow(dead_code)]
struct AuthorizeInput {
    #[serde(rename = "credentialID")]
    credential_id: String,
    #[serde(rename = "numSignatures")]
    num_signatures: u32,
    hashes: Vec<String>,
    #[serde(rename = "hashAlgorithmOID", alias = "hashAlgo")]
    hash_algorithm: Option<String>,
    #[serde(rename = "OTP")]
    otp: Option<String>,
    #[serde(rename = "PIN")]
    pin: Option<String>,
    description: Option<String>,
    #[serde(rename = "clientData")]
    client_data: Option<String>,
}

/// `credentials/authorize`.
async fn authorize(Extension(served): Extension<Served>, req: Request) -> Response {
    answer(
        authed(served, req, |csc, s, input: AuthorizeInput, client| {
            require(&input.credential_id, "credentialID")?;
            let (sad, expires_in) = csc.authorize(
                &s,
                &input.credential_id,
                input.num_signatures,
                &input.hashes,
                input.hash_algorithm.as_deref(),
                input.otp.as_deref(),
                input.pin.as_deref(),
                client,
            )?;
            Ok(json!({"SAD": sad.as_str(), "expiresIn": expires_in}))
        })
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
// Every parameter the CSC API defines is accepted; those this service does not use are read
// and ignored.
#[allow(dead_code)]
struct ExtendInput {
    #[serde(rename = "credentialID")]
    credential_id: String,
    #[serde(rename = "SAD")]
    sad: String,
    hashes: Vec<String>,
    #[serde(rename = "hashAlgorithmOID", alias = "hashAlgo")]
    hash_algorithm: Option<String>,
    #[serde(rename = "clientData")]
    client_data: Option<String>,
}

/// A parameter the call cannot go without: `Missing parameter NAME` when it is empty.
fn require(value: &str, name: &str) -> Result<(), CscError> {
    if value.is_empty() {
        return Err(CscError::InvalidRequest(format!(
            "Missing parameter {name}"
        )));
    }
    Ok(())
}

/// `credentials/extendTransaction`.
async fn extend_transaction(Extension(served): Extension<Served>, req: Request) -> Response {
    answer(
        authed(served, req, |csc, s, input: ExtendInput, client| {
            require(&input.credential_id, "credentialID")?;
            require(&input.sad, "SAD")?;
            let (sad, expires_in) = csc.extend_transaction(
                &s,
                &input.credential_id,
                &input.sad,
                &input.hashes,
                input.hash_algorithm.as_deref(),
                client,
            )?;
            Ok(json!({"SAD": sad.as_str(), "expiresIn": expires_in}))
        })
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
// Every parameter the CSC API defines is accepted; those this service does not use are read
// and ignored.
#[allow(dead_code)]
struct SignHashInput {
    #[serde(rename = "credentialID")]
    credential_id: String,
    #[serde(rename = "SAD")]
    sad: String,
    hashes: Vec<String>,
    #[serde(rename = "hashAlgorithmOID", alias = "hashAlgo")]
    hash_algorithm: Option<String>,
    #[serde(rename = "signAlgo")]
    sign_algorithm: String,
    #[serde(rename = "signAlgoParams")]
    sign_algorithm_params: Option<String>,
    #[serde(rename = "operationMode")]
    operation_mode: Option<String>,
    #[serde(rename = "clientData")]
    client_data: Option<String>,
}

/// `signatures/signHash`.
async fn sign_hash(Extension(served): Extension<Served>, req: Request) -> Response {
    answer(
        authed(served, req, |csc, s, input: SignHashInput, client| {
            require(&input.credential_id, "credentialID")?;
            require(&input.sad, "SAD")?;
            require(&input.sign_algorithm, "signAlgo")?;
            if input.operation_mode.as_deref().is_some_and(|m| m != "S") {
                return Err(CscError::InvalidRequest(
                    "Invalid parameter operationMode: only synchronous (S)".into(),
                ));
            }
            let sigs = csc.sign_hash(
                &s,
                &input.credential_id,
                &input.sad,
                &input.hashes,
                input.hash_algorithm.as_deref(),
                &input.sign_algorithm,
                client,
            )?;
            let b64 = base64::engine::general_purpose::STANDARD;
            let sigs: Vec<String> = sigs.iter().map(|s| b64.encode(s)).collect();
            Ok(json!({"signatures": sigs}))
        })
        .await,
    )
}

// ---- activation (RFC 9457 problem documents, like the rest of /api/v1) --------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivationInput {
    password: String,
}

fn problem(status: StatusCode, code: &str, title: &str, detail: String) -> Response {
    let mut r = (
        status,
        serde_json::to_vec(&json!({
            "type": format!("urn:pkid:problem:{code}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        }))
        .unwrap_or_default(),
    )
        .into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /api/v1/activation/{code}` `{"password": …}` → `{"otpauth_uri": …}`.
#[utoipa::path(post, path = "/api/v1/activation/{code}", params(("code" = String, Path, description = "The one-time activation code from the subscriber's mail")),
    request_body(content = inline(ActivationDoc), content_type = "application/json"),
    responses((status = 200, description = "The account's password is set; `otpauth_uri` enrols the authenticator app (shown once)"),
              (status = 404, body = Problem, description = "No such code, or it was used or has expired"),
              (status = 415, body = Problem), (status = 422, body = Problem, description = "The password is too short or too long")))]
async fn activate(
    Extension(served): Extension<Served>,
    Path(code): Path<String>,
    req: Request,
) -> Response {
    let Ok(csc) = served.get() else {
        return problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            "remote signing is not served by this process".into(),
        );
    };
    let client = client(&req);
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "media-type",
            "Unsupported media type",
            "Content-Type must be application/json".into(),
        );
    }
    let (parts, body) = req.into_parts();
    let bytes = match read_limited(&parts.headers, body, 16 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            let status = match e {
                BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::Broken => StatusCode::BAD_REQUEST,
                BodyError::TimedOut => StatusCode::REQUEST_TIMEOUT,
            };
            return problem(status, "body", "Unreadable body", e.to_string());
        }
    };
    let input: ActivationInput = match serde_json::from_slice(&bytes) {
        Ok(i) => i,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "malformed",
                "Malformed JSON",
                e.to_string(),
            )
        }
    };
    let password = zeroize::Zeroizing::new(input.password);
    match blocking(move || csc.activate(&code, &password, &client)).await {
        Ok(uri) => json_reply(StatusCode::OK, &json!({"otpauth_uri": uri.as_str()})),
        Err(e) => problem_of(e),
    }
}

/// A refusal of an `/api/v1` call as an RFC 9457 problem document.
fn problem_of(e: CscError) -> Response {
    match e {
        CscError::NotFound(m) => problem(StatusCode::NOT_FOUND, "not-found", "Not found", m),
        CscError::InvalidRequest(m) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "Invalid request",
            m,
        ),
        CscError::Denied(m) => problem(StatusCode::FORBIDDEN, "forbidden", "Forbidden", m),
        CscError::Conflict(m) => problem(StatusCode::CONFLICT, "conflict", "Conflict", m),
        CscError::Unavailable(m) => {
            tracing::warn!(reason = %m, "remote-signing account call unavailable");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "try again later".into(),
            )
        }
        e => {
            tracing::error!(reason = %e, "remote-signing account call failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "internal error".into(),
            )
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountInput {
    email: String,
}

/// Runs an RA officer's action on a signing account: the caller authenticated like every
/// `/api/v1` call (bearer token or registered client certificate), `{"email": …}`, 204.
async fn account_action(
    served: Served,
    caller: Result<Caller, ApiError>,
    req: Request,
    act: fn(&Csc, &crate::ra::access::Principal, &str, &str) -> Result<(), CscError>,
) -> Response {
    // Who is asking comes first: an unauthenticated caller learns nothing, not even whether
    // this process serves remote signing.
    let who = match caller {
        Ok(Caller(who)) => who,
        Err(e) => return e.into_response(),
    };
    let csc = match served.get() {
        Ok(c) => c,
        Err(e) => return problem_of(e),
    };
    let client = client(&req);
    let input: AccountInput = match body(req).await {
        Ok(i) => i,
        Err(CscError::InvalidRequest(m)) => {
            return problem(StatusCode::BAD_REQUEST, "malformed", "Malformed JSON", m)
        }
        Err(e) => return problem_of(e),
    };
    match blocking(move || act(&csc, &who, &input.email, &client)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem_of(e),
    }
}

/// `POST /api/v1/csc/accounts/unlock` `{"email": …}`: an RA officer unlocks a locked account.
#[utoipa::path(post, path = "/api/v1/csc/accounts/unlock",
    request_body(content = inline(AccountDoc), content_type = "application/json"),
    responses((status = 204, description = "The account is unlocked"), (status = 401, body = Problem),
              (status = 403, body = Problem, description = "Not an RA officer in the account's scope"),
              (status = 404, body = Problem)), security(("bearer" = [])))]
async fn unlock(
    Extension(served): Extension<Served>,
    caller: Result<Caller, ApiError>,
    req: Request,
) -> Response {
    account_action(served, caller, req, Csc::unlock).await
}

/// `POST /api/v1/csc/accounts/reenrol` `{"email": …}`: an RA officer re-enrols an account (new
/// activation mail; the old password and authenticator stop working).
#[utoipa::path(post, path = "/api/v1/csc/accounts/reenrol",
    request_body(content = inline(AccountDoc), content_type = "application/json"),
    responses((status = 204, description = "A new activation mail is queued; the old password and authenticator stop working"),
              (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn reenrol(
    Extension(served): Extension<Served>,
    caller: Result<Caller, ApiError>,
    req: Request,
) -> Response {
    account_action(served, caller, req, Csc::reenrol).await
}

/// `POST /api/v1/activation/{code}`'s body, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // read by serde through `ActivationInput`; this type only documents it
struct ActivationDoc {
    /// The account's new password (12 characters to 1,024 bytes).
    password: String,
}

/// The body of the RA officers' account actions, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // read by serde through `AccountInput`; this type only documents it
struct AccountDoc {
    /// The subscriber's official email address (the signing account's name).
    email: String,
}

/// The signing-account paths of the OpenAPI document (merged into the API's).
#[derive(utoipa::OpenApi)]
#[openapi(paths(activate, unlock, reenrol))]
pub(crate) struct CscDoc;
