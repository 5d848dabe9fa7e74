//! The subscriber's activation page, `/activate/{code}` (remote signing,
//! `docs/remote-signing.md`): the link of the activation mail opens a form for the account
//! password; submitting it activates the account (the same call as
//! `POST /api/v1/activation/{code}`) and shows the authenticator's QR code (SVG, inline) and
//! its `otpauth://` URI. No session: the one-time code in the path is the credential, and the
//! form carries the pre-login token like the login form.

use super::{Page, StatusCode};
use crate::csc::CscError;
use crate::http::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use std::sync::Arc;

/// Longest code in the path (a code is 43 characters).
const MAX_CODE: usize = 128;

/// The form, and what activation answered.
#[derive(Template)]
#[template(path = "portal/activate.html")]
struct ActivatePage<'a> {
    c: &'a super::views::Chrome,
    code: String,
    problem: String,
    /// After activation: the URI and its QR code (an SVG element made by the `qrcode` crate
    /// from the URI alone, so it holds no text anyone else supplied).
    otpauth: Option<(String, String)>,
}

#[derive(Deserialize)]
pub(super) struct ActivateForm {
    csrf: Option<String>,
    password: String,
    confirm: String,
}

fn render(
    page: &Page,
    status: StatusCode,
    code: String,
    problem: String,
    otpauth: Option<(String, String)>,
) -> Response {
    let c = page.chrome();
    page.html(
        status,
        ActivatePage {
            c: &c,
            code,
            problem,
            otpauth,
        }
        .render(),
    )
}

/// `GET /activate/{code}`: the password form.
pub(super) async fn form(page: Page, Path(code): Path<String>) -> Response {
    if code.len() > MAX_CODE {
        return page.error(
            StatusCode::NOT_FOUND,
            "activate-gone-title",
            "activate-gone-detail",
        );
    }
    render(&page, StatusCode::OK, code, String::new(), None)
}

/// `POST /activate/{code}`: activates and shows the QR code.
pub(super) async fn submit(
    page: Page,
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    form: Result<Form<ActivateForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return page.csrf_refused();
    };
    if !page.csrf_ok(form.csrf.as_deref()) {
        return page.csrf_refused();
    }
    if code.len() > MAX_CODE {
        return page.error(
            StatusCode::NOT_FOUND,
            "activate-gone-title",
            "activate-gone-detail",
        );
    }
    if form.password != form.confirm {
        let problem = page.t("activate-mismatch");
        return render(&page, StatusCode::UNPROCESSABLE_ENTITY, code, problem, None);
    }
    let Some(csc) = crate::csc::http::service(&state) else {
        return page.error(
            StatusCode::NOT_FOUND,
            "not-served-title",
            "not-served-detail",
        );
    };
    let client = page
        .address
        .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    let password = zeroize::Zeroizing::new(form.password);
    let c2 = code.clone();
    let done = tokio::task::spawn_blocking(move || csc.activate(&c2, &password, &client)).await;
    match done {
        Ok(Ok(uri)) => {
            let svg = match qrcode::QrCode::new(uri.as_bytes()) {
                Ok(q) => {
                    let s = q
                        .render::<qrcode::render::svg::Color<'_>>()
                        .min_dimensions(240, 240)
                        .build();
                    // The element only, without the XML declaration.
                    s.find("<svg")
                        .map(|at| s[at..].to_owned())
                        .unwrap_or_default()
                }
                Err(_) => String::new(),
            };
            render(
                &page,
                StatusCode::OK,
                String::new(),
                String::new(),
                Some((uri.to_string(), svg)),
            )
        }
        Ok(Err(CscError::InvalidRequest(_))) => {
            let problem = page.t("activate-short");
            render(&page, StatusCode::UNPROCESSABLE_ENTITY, code, problem, None)
        }
        Ok(Err(CscError::NotFound(_))) => page.error(
            StatusCode::NOT_FOUND,
            "activate-gone-title",
            "activate-gone-detail",
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "portal activation");
            page.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable-title",
                "unavailable-detail",
            )
        }
        Err(_) => page.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-title",
            "internal-detail",
        ),
    }
}
