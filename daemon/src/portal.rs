//! The registration portal: a Vietnamese web interface on the HTTPS listener, over the same
//! request desk as the JSON API (see `docs/portal.md`). It has no business logic of its own.
//!
//! ```text
//! browser ─▶ Page (cookies: session, pre-login form token, language; client certificate)
//!         ─▶ CSRF check on every POST ─▶ ra::desk::RequestDesk (the same calls as http::api)
//!         ─▶ askama template (escaped) ─▶ security headers (CSP, HSTS, nosniff, …)
//! ```
//!
//! Pages are server-rendered HTML and work without JavaScript (none is served). Sessions live
//! in memory ([`session`]); every form carries a token bound to the session (or, before
//! login, to a `__Host-` cookie) and a POST without it is refused with a 403 page. Text comes
//! from the Fluent catalogues in `daemon/locales/` ([`i18n`]).

mod activate;
mod admin;
mod assets;
mod desk_messages;
mod drafts;
mod i18n;
mod session;
mod views;

use crate::clock::LimiterClock;
use crate::config::Config;
use crate::http::tls::ClientIdentity;
use crate::http::AppState;
use crate::ra::access::{Principal, Via};
use crate::ra::desk::{
    ActionInput, DeskError, DocumentInput, FieldError, ListQuery, RequestDesk, RequestInput,
    SubscriberInput,
};
use crate::store::{AuditEntry, CertStatus, CertificateQuery, Outcome};
use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Multipart, Path, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use base64::Engine;
use governor::{Quota, RateLimiter};
use i18n::Lang;
use serde::Deserialize;
use session::{Holder, Sessions};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use views::*;

/// The session cookie (`__Host-`: Secure, Path=/, no Domain, so no other host sets it).
const SESSION_COOKIE: &str = "__Host-pkid-session";
/// The pre-login form token's cookie.
const PRE_COOKIE: &str = "__Host-pkid-form";
/// The language cookie.
const LANG_COOKIE: &str = "pkid-lang";
/// The Content-Security-Policy of every portal page: nothing but this origin's style sheet
/// and forms, no script at all, never framed.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";
/// Longest search query, characters.
const MAX_QUERY_CHARS: usize = 128;
/// Most certificates one search shows.
const SEARCH_LIMIT: usize = 50;
/// Longest login name a login attempt is counted under, characters: an operator id or a
/// subscriber's official email (RFC 5321's longest address); longer ones do not exist.
const MAX_LOGIN_ID_CHARS: usize = 254;
/// Most requests one bulk approval takes (each is one CA issuance).
const MAX_BULK_APPROVALS: usize = 100;
/// Longest text field of a form, bytes (the desk checks the real limits and says which).
const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Whether `path` takes file uploads, and so the RA's document-sized body limit.
pub fn takes_uploads(path: &str) -> bool {
    path == "/requests"
}

/// The portal's own state: sessions and the login limits.
struct Portal {
    sessions: Sessions,
    drafts: drafts::Drafts,
    by_id: LoginLimiter<String>,
    by_address: LoginLimiter<IpAddr>,
}

/// A per-key login limit, on the daemon's clock.
type LoginLimiter<K> = RateLimiter<
    K,
    governor::state::keyed::DefaultKeyedStateStore<K>,
    LimiterClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

/// The portal's routes, for the HTTPS listener only. The login limits run on the CA's clock.
pub fn router(config: &Config, clock: &Arc<dyn crate::clock::Clock>) -> Router<Arc<AppState>> {
    let per_minute =
        NonZeroU32::new(config.portal.login_attempts_per_minute).unwrap_or(NonZeroU32::MIN);
    let clock = LimiterClock(clock.clone());
    let portal = Arc::new(Portal {
        sessions: Sessions::new(config.portal.session_idle, config.portal.max_sessions),
        // Checked forms' files: a few documents' worth, for as long as a session lives.
        drafts: drafts::Drafts::new(
            config.portal.session_idle,
            config.ra.max_document_bytes.saturating_mul(8),
        ),
        by_id: RateLimiter::dashmap_with_clock(Quota::per_minute(per_minute), clock.clone()),
        by_address: RateLimiter::dashmap_with_clock(
            Quota::per_minute(per_minute.saturating_mul(NonZeroU32::MIN.saturating_add(3))),
            clock,
        ),
    });
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/login/certificate", post(login_certificate))
        .route("/logout", post(logout))
        .route("/lang", post(switch_language))
        .route("/search", get(search))
        .route("/requests/new", get(new_request))
        .route("/requests", post(submit))
        .route("/requests/{id}", get(show))
        .route("/requests/{id}/actions", post(act))
        .route("/requests/bulk", post(bulk_approve))
        .route("/reports", get(reports))
        .route("/subscribers", get(subscribers))
        .route("/devices", get(devices))
        .route("/devices/{serial}", get(device))
        .route("/signing/{credential}", get(signing_history))
        .route("/audit", get(admin::audit))
        .route(
            "/admin/organisations",
            get(admin::organisations).post(admin::add_organisation),
        )
        .route(
            "/admin/organisations/{id}/remove",
            post(admin::remove_organisation),
        )
        .route(
            "/admin/operators",
            get(admin::operators).post(admin::add_operator),
        )
        .route("/admin/operators/{id}/remove", post(admin::remove_operator))
        .route(
            "/credentials",
            get(admin::credentials).post(admin::add_credential),
        )
        .route(
            "/credentials/{kind}/{name}/remove",
            post(admin::remove_credential),
        )
        .route("/static/{file}", get(asset))
        .route(
            "/activate/{code}",
            get(activate::form).post(activate::submit),
        )
        .layer(Extension(portal))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    r
}

// ---- the caller of a page ----------------------------------------------------------------

/// Everything a page handler knows about its caller.
struct Page {
    portal: Arc<Portal>,
    desk: Option<Arc<RequestDesk>>,
    /// The store, for the records the desk does not serve (key devices, signing history).
    store: Arc<dyn crate::store::Store>,
    lang: Lang,
    session_cookie: Option<String>,
    session: Option<session::Session>,
    who: Option<Principal>,
    /// The remote-signing subscriber signed in with the official email, when it is one.
    signer: Option<crate::store::csc::AccountRecord>,
    /// The remote-signing service, for a signed-in subscriber's pages.
    csc: Option<Arc<crate::csc::Csc>>,
    pre: String,
    set_pre: bool,
    identity: Option<ClientIdentity>,
    address: Option<IpAddr>,
    public_url: String,
    profiles: Vec<String>,
}

fn cookies(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl FromRequestParts<Arc<AppState>> for Page {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Response> {
        let Some(portal) = parts.extensions.get::<Arc<Portal>>().cloned() else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        let jar = cookies(&parts.headers);
        let lang = jar
            .get(LANG_COOKIE)
            .and_then(|l| Lang::parse(l))
            .unwrap_or_else(|| {
                Lang::negotiate(
                    parts
                        .headers
                        .get(header::ACCEPT_LANGUAGE)
                        .and_then(|v| v.to_str().ok()),
                )
            });
        let (pre, set_pre) = match jar.get(PRE_COOKIE).filter(|v| v.len() == 43) {
            Some(v) => (v.clone(), false),
            None => (session::random_token().unwrap_or_default(), true),
        };
        let session_cookie = jar.get(SESSION_COOKIE).cloned();
        let session = session_cookie
            .as_deref()
            .and_then(|c| portal.sessions.touch(c));
        let desk = state.desk.clone();
        let end = || {
            if let Some(c) = &session_cookie {
                portal.sessions.end(c);
            }
        };
        let (mut who, mut signer, mut csc) = (None, None, None);
        match (session.as_ref().map(|s| (&s.holder, s.via)), &desk) {
            (Some((Holder::Operator(id), via)), Some(d)) => {
                let (d, id) = (d.clone(), id.clone());
                match tokio::task::spawn_blocking(move || d.session_principal(&id, via)).await {
                    Ok(Ok(p)) => who = Some(p),
                    Ok(Err(DeskError::Unauthenticated)) => end(),
                    _ => {}
                }
            }
            (Some((Holder::Signer(account), _)), _) => {
                let account = *account;
                if let Some(service) = crate::csc::http::service(state) {
                    let s = service.clone();
                    match tokio::task::spawn_blocking(move || s.portal_account(account)).await {
                        Ok(Ok(Some(a))) => {
                            signer = Some(a);
                            csc = Some(service);
                        }
                        Ok(Ok(None)) => end(),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        let session = if who.is_some() || signer.is_some() {
            session
        } else {
            None
        };
        let config = state.config.load();
        Ok(Page {
            portal,
            desk,
            store: state.store.clone(),
            lang,
            session_cookie,
            session,
            who,
            signer,
            csc,
            pre,
            set_pre,
            identity: parts.extensions.get::<ClientIdentity>().cloned(),
            address: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
            public_url: config.server.public_url.trim_end_matches('/').to_owned(),
            profiles: config.profiles.keys().cloned().collect(),
        })
    }
}

impl Page {
    fn chrome(&self) -> Chrome {
        let user = match &self.who {
            Some(Principal::Operator { operator, .. }) => Some((
                operator.name.clone(),
                i18n::message(self.lang, &format!("role-{}", operator.role.as_str()), None),
            )),
            _ => self
                .signer
                .as_ref()
                .map(|a| (a.email.clone(), self.t("role-signer"))),
        };
        Chrome {
            lang: self.lang,
            css: assets::css_path(),
            csrf: self.csrf().to_owned(),
            user,
            staff: self.who.is_some(),
            reports: self.who.as_ref().is_some_and(|w| w.audits()),
            audit_log: self.who.as_ref().is_some_and(|w| w.reads_audit_log()),
            admin: self.who.as_ref().is_some_and(|w| w.administers()),
            credentials: self.who.as_ref().is_some_and(|w| {
                matches!(
                    w.role(),
                    Some(crate::store::ra::Role::OrgOfficer | crate::store::ra::Role::CaAdmin)
                )
            }),
        }
    }

    fn csrf(&self) -> &str {
        self.session
            .as_ref()
            .map_or(self.pre.as_str(), |s| s.csrf.as_str())
    }

    /// Whether a posted form token is this page's (compared in constant time).
    fn csrf_ok(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| {
            !t.is_empty()
                && aws_lc_rs::constant_time::verify_slices_are_equal(
                    t.as_bytes(),
                    self.csrf().as_bytes(),
                )
                .is_ok()
        })
    }

    fn t(&self, key: &str) -> String {
        i18n::message(self.lang, key, None)
    }

    /// A rendered page with the pre-login cookie set when it was missing.
    fn html(&self, status: StatusCode, body: Result<String, askama::Error>) -> Response {
        let mut r = match body {
            Ok(html) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, "portal template");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        };
        if self.set_pre && !self.pre.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{PRE_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict",
                self.pre
            )) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        r
    }

    fn error(&self, status: StatusCode, title: &str, detail: &str) -> Response {
        let c = self.chrome();
        self.html(
            status,
            ErrorPage {
                c: &c,
                title: self.t(title),
                detail: self.t(detail),
            }
            .render(),
        )
    }

    fn csrf_refused(&self) -> Response {
        self.error(StatusCode::FORBIDDEN, "csrf-title", "csrf-detail")
    }

    fn desk(&self) -> Result<(Arc<RequestDesk>, Principal), Box<Response>> {
        match (&self.desk, &self.who) {
            (Some(d), Some(w)) => Ok((d.clone(), w.clone())),
            (None, _) => Err(Box::new(self.error(
                StatusCode::NOT_FOUND,
                "not-served-title",
                "not-served-detail",
            ))),
            (_, None) => Err(Box::new(see_other("/"))),
        }
    }

    /// A desk refusal as a page (field problems are shown on their form instead).
    fn refusal(&self, e: &DeskError) -> Response {
        match e {
            DeskError::Unauthenticated => see_other("/"),
            DeskError::Forbidden(_) => {
                self.error(StatusCode::FORBIDDEN, "forbidden-title", "forbidden-detail")
            }
            DeskError::NotFound(_) => {
                self.error(StatusCode::NOT_FOUND, "not-found-title", "not-found-detail")
            }
            DeskError::Invalid(_) => self.error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-title",
                "invalid-detail",
            ),
            DeskError::Conflict(_) => {
                self.error(StatusCode::CONFLICT, "conflict-title", "conflict-detail")
            }
            DeskError::TooLarge(_) => self.error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large-title",
                "too-large-detail",
            ),
            DeskError::Unavailable(m) => {
                tracing::warn!(reason = %m, "portal: RA call unavailable");
                self.error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable-title",
                    "unavailable-detail",
                )
            }
            DeskError::Internal(m) => {
                tracing::error!(reason = %m, "portal: RA call failed");
                self.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal-title",
                    "internal-detail",
                )
            }
        }
    }

    fn audit(&self, state: &AppState, actor: &str, action: &str, outcome: Outcome, detail: &str) {
        let entry = AuditEntry {
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            actor: actor.into(),
            action: action.into(),
            target: "portal".into(),
            outcome,
            detail: detail.into(),
        };
        if let Err(e) = state.store.audit(&entry) {
            tracing::error!(error = %e, "audit of a portal login");
        }
    }

    fn row(&self, r: &crate::ra::desk::RequestView, now: i64) -> Row {
        let open = !matches!(r.state, "fulfilled" | "rejected");
        let due_unix = r.due_at.as_deref().and_then(|d| {
            time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).ok()
        });
        Row {
            id: r.id,
            kind: self.t(&format!("kind-{}", r.kind)),
            state: self.t(&format!("state-{}", r.state)),
            state_code: r.state,
            subscriber: r.subscriber.name.clone().unwrap_or_default(),
            organisation: r.organisation.clone(),
            submitted: local_time(Some(&r.submitted_at)),
            due: local_time(r.due_at.as_deref()),
            left: match due_unix {
                Some(d) if open => time_left(self.lang, d.unix_timestamp(), now),
                _ => String::new(),
            },
            overdue: r.overdue,
        }
    }
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeskError> + Send + 'static,
) -> Result<T, DeskError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(DeskError::Internal(format!("task: {e}"))))
}

// ---- pages ---------------------------------------------------------------------------------

async fn asset(Path(file): Path<String>) -> Response {
    match assets::asset(&format!("/static/{file}")) {
        Some((media, bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, media),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `?after=` (the desk's cursor of the previous page) and `?state=` of a list page.
#[derive(Deserialize, Default)]
struct ListParams {
    after: Option<String>,
    state: Option<String>,
}

/// How many rows a list page shows (the desk's default page).
const LIST_PAGE: usize = crate::ra::desk::DEFAULT_PAGE;

/// The states the dashboard filters by, in the order shown.
const STATES: [&str; 7] = [
    "submitted",
    "awaiting-original",
    "accepted",
    "approved",
    "returned",
    "fulfilled",
    "rejected",
];

/// The link to the page after this one, keeping the filter (`None` on the last page).
fn next_href(path: &str, next: Option<String>, state: Option<&str>) -> Option<String> {
    let next = next?;
    let mut s = form_urlencoded::Serializer::new(String::new());
    if let Some(st) = state {
        s.append_pair("state", st);
    }
    s.append_pair("after", &next);
    Some(format!("{path}?{}", s.finish()))
}

/// `GET /[?after=&state=]`: the login form and the search before login; after login the
/// dashboard (an organisation officer's requests, newest first) or the queue (an RA officer's
/// open requests in scope, overdue first), a page at a time, as `GET /api/v1/requests`.
async fn home(
    page: Page,
    q: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(account) = page.signer.clone() {
        return signer_home(&page, account).await;
    }
    let Some(who) = page.who.clone() else {
        let c = page.chrome();
        return page.html(
            StatusCode::OK,
            HomePage {
                c: &c,
                failed: false,
                username: String::new(),
            }
            .render(),
        );
    };
    let Ok((desk, _)) = page.desk() else {
        return see_other("/search");
    };
    let params = q.map(|Query(q)| q).unwrap_or_default();
    let queue = who.decides() || who.role() == Some(crate::store::ra::Role::Auditor);
    // The dashboard filters by state; the queue is every open request.
    let state = params
        .state
        .filter(|s| !queue && STATES.contains(&s.as_str()));
    let q = ListQuery {
        limit: Some(LIST_PAGE),
        cursor: params.after.filter(|a| !a.is_empty()),
        order: queue.then(|| "queue".to_owned()),
        state: state.clone(),
        ..Default::default()
    };
    let w = who.clone();
    let (list, counts) = match blocking(move || {
        let list = desk.list(&w, &q)?;
        // The filters' counts, over the whole reach (the queue has no filters).
        let counts = if queue {
            Vec::new()
        } else {
            desk.state_counts(&w)?
        };
        Ok((list, counts))
    })
    .await
    {
        Ok(l) => l,
        Err(e) => return page.refusal(&e),
    };
    let now = now();
    let rows = list.items.iter().map(|r| page.row(r, now)).collect();
    let filters = if queue {
        Vec::new()
    } else {
        let count = |code: &str| {
            counts
                .iter()
                .find(|(s, _)| s.as_str() == code)
                .map_or(0, |(_, n)| *n)
        };
        STATES
            .iter()
            .map(|s| {
                (
                    *s,
                    format!("{} ({})", page.t(&format!("state-{s}")), count(s)),
                    state.as_deref() == Some(*s),
                )
            })
            .collect()
    };
    let c = page.chrome();
    page.html(
        StatusCode::OK,
        RequestsPage {
            c: &c,
            title: page.t(if queue {
                "queue-title"
            } else {
                "dashboard-title"
            }),
            rows,
            filters,
            next: next_href("/", list.next, state.as_deref()),
            files: who.files(),
            bulk: who.decides(),
        }
        .render(),
    )
}

/// The home page of a signed-in remote-signing subscriber: its credentials, each with its
/// certificate's status and a link to its signing history.
async fn signer_home(page: &Page, account: crate::store::csc::AccountRecord) -> Response {
    let Some(csc) = page.csc.clone() else {
        return see_other("/search");
    };
    let id = account.id;
    let views = match tokio::task::spawn_blocking(move || csc.own_credentials(id)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "portal: a subscriber's credentials");
            return page.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable-title",
                "unavailable-detail",
            );
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let rows = views
        .into_iter()
        .map(|v| SignerCredentialRow {
            status: page.t(match v.cert_status {
                "valid" => "status-valid",
                "expired" => "status-expired",
                "suspended" => "status-hold",
                _ => "signer-revoked",
            }),
            status_code: v.cert_status,
            enabled: page.t(if v.credential.enabled {
                "signing-enabled"
            } else {
                "signing-disabled"
            }),
            valid_to: generalized_local_time(&v.valid_to),
            subject: v.subject,
            serial: v.credential.serial,
            credential: v.credential.id,
        })
        .collect();
    let c = page.chrome();
    page.html(
        StatusCode::OK,
        SignerPage {
            c: &c,
            email: account.email,
            organisation: account.organisation,
            rows,
        }
        .render(),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: Option<String>,
    username: String,
    password: String,
    totp: String,
}

/// `POST /login`: operator id, password and TOTP code on one form.
async fn login(
    page: Page,
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return page.csrf_refused();
    };
    if !page.csrf_ok(form.csrf.as_deref()) {
        return page.csrf_refused();
    }
    let Some(desk) = page.desk.clone() else {
        return page.error(
            StatusCode::NOT_FOUND,
            "not-served-title",
            "not-served-detail",
        );
    };
    let id: String = form
        .username
        .trim()
        .chars()
        .take(MAX_LOGIN_ID_CHARS)
        .collect();
    let limited = page.portal.by_id.check_key(&id).is_err()
        || page
            .address
            .is_some_and(|a| page.portal.by_address.check_key(&a).is_err());
    // Forget limiter entries of ids and addresses that have not tried lately (memory bound).
    if page.portal.by_id.len() > 100_000 {
        page.portal.by_id.retain_recent();
    }
    if page.portal.by_address.len() > 100_000 {
        page.portal.by_address.retain_recent();
    }
    if limited {
        page.audit(
            &state,
            &id,
            "portal.login",
            Outcome::Refused,
            "too many attempts",
        );
        return page.error(
            StatusCode::TOO_MANY_REQUESTS,
            "login-limited-title",
            "login-limited-detail",
        );
    }
    let (who_id, password, code) = (
        id.clone(),
        zeroize::Zeroizing::new(form.password),
        zeroize::Zeroizing::new(form.totp),
    );
    if id.contains('@') {
        return signer_login(&page, &state, id, password, code).await;
    }
    let r = blocking(move || desk.authenticate_password(&who_id, &password, &code)).await;
    match r {
        Ok(Principal::Operator { operator, .. }) => start_session(
            &page,
            &state,
            Holder::Operator(operator.id.clone()),
            &operator.id,
            Via::Password,
        ),
        Ok(Principal::Subscriber { .. }) | Err(DeskError::Unauthenticated) => {
            page.audit(
                &state,
                &id,
                "portal.login",
                Outcome::Refused,
                "wrong password or code",
            );
            login_failed(&page, id)
        }
        Err(e) => page.refusal(&e),
    }
}

/// The login form again, saying only that the login failed.
fn login_failed(page: &Page, username: String) -> Response {
    let c = page.chrome();
    page.html(
        StatusCode::UNAUTHORIZED,
        HomePage {
            c: &c,
            failed: true,
            username,
        }
        .render(),
    )
}

/// The login of a remote-signing subscriber (a login name with `@`: the official email),
/// with the account's password and a code of its authenticator. The signing service audits
/// it and counts a wrong password or code towards the account's lock.
async fn signer_login(
    page: &Page,
    state: &Arc<AppState>,
    email: String,
    password: zeroize::Zeroizing<String>,
    code: zeroize::Zeroizing<String>,
) -> Response {
    let Some(csc) = crate::csc::http::service(state) else {
        return login_failed(page, email);
    };
    let client = page.address.map(|a| a.to_string()).unwrap_or_default();
    let who = email.clone();
    let r = tokio::task::spawn_blocking(move || csc.portal_login(&who, &password, &code, &client))
        .await;
    match r {
        Ok(Ok(account)) => start_session(
            page,
            state,
            Holder::Signer(account),
            &format!("csc-account:{account}"),
            Via::Password,
        ),
        Ok(Err(crate::csc::CscError::Unavailable(m))) => {
            tracing::warn!(reason = %m, "portal: subscriber login unavailable");
            page.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable-title",
                "unavailable-detail",
            )
        }
        Ok(Err(crate::csc::CscError::Internal(m))) => {
            tracing::error!(reason = %m, "portal: subscriber login failed");
            page.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-title",
                "internal-detail",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "portal: subscriber login task");
            page.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-title",
                "internal-detail",
            )
        }
        Ok(Err(_)) => login_failed(page, email),
    }
}

fn start_session(page: &Page, state: &AppState, holder: Holder, actor: &str, via: Via) -> Response {
    if let Some(old) = &page.session_cookie {
        page.portal.sessions.end(old);
    }
    let Some((cookie, _csrf)) = page.portal.sessions.start(holder, via) else {
        return page.error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable-title",
            "sessions-full-detail",
        );
    };
    let how = match via {
        Via::Certificate => "client certificate",
        _ => "password and TOTP",
    };
    page.audit(state, actor, "portal.login", Outcome::Success, how);
    let mut r = see_other("/");
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={cookie}; Path=/; Secure; HttpOnly; SameSite=Strict"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct TokenForm {
    csrf: Option<String>,
}

/// `POST /login/certificate`: the client certificate this connection showed, registered to an
/// operator.
async fn login_certificate(
    page: Page,
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !form.is_ok_and(|Form(f)| page.csrf_ok(f.csrf.as_deref())) {
        return page.csrf_refused();
    }
    let (Some(desk), Some(id)) = (page.desk.clone(), page.identity.clone()) else {
        return page.error(
            StatusCode::UNAUTHORIZED,
            "login-cert-title",
            "login-cert-detail",
        );
    };
    let serial = id.serial.to_string();
    match blocking(move || desk.authenticate_certificate(&id.leaf, &id.serial, &id.subject)).await {
        Ok(Principal::Operator { operator, .. }) => start_session(
            &page,
            &state,
            Holder::Operator(operator.id.clone()),
            &operator.id,
            Via::Certificate,
        ),
        Ok(_) | Err(DeskError::Unauthenticated) => {
            page.audit(
                &state,
                &format!("certificate:{serial}"),
                "portal.login",
                Outcome::Refused,
                "certificate not registered to an operator",
            );
            page.error(
                StatusCode::UNAUTHORIZED,
                "login-cert-title",
                "login-cert-detail",
            )
        }
        Err(e) => page.refusal(&e),
    }
}

/// `POST /logout`.
async fn logout(
    page: Page,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !form.is_ok_and(|Form(f)| page.csrf_ok(f.csrf.as_deref())) {
        return page.csrf_refused();
    }
    if let Some(c) = &page.session_cookie {
        page.portal.sessions.end(c);
    }
    let mut r = see_other("/");
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-pkid-session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

#[derive(Deserialize)]
struct LangForm {
    csrf: Option<String>,
    lang: String,
}

/// `POST /lang`: the language switch (a cookie, then back to the home page).
async fn switch_language(
    page: Page,
    form: Result<Form<LangForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return page.csrf_refused();
    };
    if !page.csrf_ok(f.csrf.as_deref()) {
        return page.csrf_refused();
    }
    let lang = Lang::parse(&f.lang).unwrap_or(Lang::Vi);
    let mut r = see_other("/");
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={}; Path=/; Secure; SameSite=Strict; Max-Age=31536000",
        lang.tag()
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
    after: Option<String>,
}

/// The CN and O of a certificate's subject, as its DER spells them.
fn holder(der: &[u8]) -> (String, String) {
    use der::Decode;
    let Ok(cert) = x509_cert::Certificate::from_der(der) else {
        return (String::new(), String::new());
    };
    let (mut cn, mut o) = (String::new(), String::new());
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            let text = std::str::from_utf8(atv.value.value()).unwrap_or_default();
            if atv.oid == const_oid::db::rfc4519::CN {
                cn = text.to_owned();
            } else if atv.oid == const_oid::db::rfc4519::O {
                o = text.to_owned();
            }
        }
    }
    (cn, o)
}

/// `GET /search?q=`: the public certificate search, by holder name, organisation or serial.
async fn search(
    page: Page,
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (q, after) = q
        .ok()
        .map(|Query(q)| (q.q.unwrap_or_default(), q.after))
        .unwrap_or_default();
    let q = q.trim().to_owned();
    // A cursor that is not a number is a first page (it came from no page of ours).
    let after = after.and_then(|a| a.parse::<i64>().ok());
    let searched = !q.is_empty();
    let mut problem = String::new();
    let mut found = Vec::new();
    let mut next = None;
    if searched && (q.chars().count() < 2 || q.chars().count() > MAX_QUERY_CHARS) {
        problem = page.t("search-length");
    } else if searched {
        let store = state.store.clone();
        let needle = q.clone();
        let rows = tokio::task::spawn_blocking(move || {
            let mut rows = Vec::new();
            // A serial (hex, colons or spaces allowed) is one exact lookup, on the first page.
            let serial = pkid_protocols::serial::canonical_hex(&needle.replace([':', ' '], ""));
            if let (Some(serial), None) = (serial, after) {
                rows.extend(store.certificate(&serial)?);
            }
            let query = if needle.contains('@') {
                CertificateQuery::Email(needle)
            } else {
                CertificateQuery::Words(needle.split_whitespace().map(str::to_owned).collect())
            };
            let hits = store.search(&query, after, SEARCH_LIMIT + 1)?;
            let next = (hits.len() > SEARCH_LIMIT)
                .then(|| hits.get(SEARCH_LIMIT - 1).map(|h| h.key))
                .flatten();
            rows.extend(hits.into_iter().take(SEARCH_LIMIT).map(|h| h.certificate));
            Ok::<_, crate::store::StoreError>((rows, next))
        })
        .await;
        match rows {
            Ok(Ok((rows, more))) => {
                next = more.map(|k| {
                    let mut s = form_urlencoded::Serializer::new(String::new());
                    s.append_pair("q", &q);
                    s.append_pair("after", &k.to_string());
                    format!("/search?{}", s.finish())
                });
                let now = now();
                let mut seen = std::collections::BTreeSet::new();
                for rec in rows.into_iter().filter(|r| r.der.is_some()) {
                    if !seen.insert(rec.serial.clone()) {
                        continue;
                    }
                    let (holder, organisation) = holder(rec.der.as_deref().unwrap_or_default());
                    let (code, status) = match rec.status {
                        CertStatus::Revoked => {
                            let mut args = fluent_bundle::FluentArgs::new();
                            args.set("date", unix_local_time(rec.revoked_at.unwrap_or(0) as i64));
                            let reason = rec
                                .reason
                                .map(|r| {
                                    page.t(&format!(
                                        "reason-{}",
                                        pkid_protocols::revocation::name(r)
                                    ))
                                })
                                .unwrap_or_default();
                            args.set("reason", reason);
                            (
                                "revoked",
                                i18n::message(page.lang, "status-revoked", Some(&args)),
                            )
                        }
                        CertStatus::Hold => ("hold", page.t("status-hold")),
                        _ if (rec.not_after as i64) < now => ("expired", page.t("status-expired")),
                        _ => ("valid", page.t("status-valid")),
                    };
                    found.push(Found {
                        serial: rec.serial.clone(),
                        holder,
                        organisation,
                        status,
                        status_code: code,
                        not_before: unix_local_time(rec.not_before as i64),
                        not_after: unix_local_time(rec.not_after as i64),
                        issuer: rec.issuer.clone(),
                    });
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "portal search");
                return page.error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable-title",
                    "unavailable-detail",
                );
            }
            Err(_) => {
                return page.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal-title",
                    "internal-detail",
                )
            }
        }
    }
    let c = page.chrome();
    page.html(
        StatusCode::OK,
        SearchPage {
            c: &c,
            q,
            searched,
            problem,
            found,
            next,
            base: page.public_url.clone(),
        }
        .render(),
    )
}

#[derive(Deserialize)]
struct KindQuery {
    kind: Option<String>,
}

const KINDS: [&str; 5] = ["issue", "renew", "modify", "revoke", "recover"];

fn kind_of(s: &str) -> Option<&'static str> {
    KINDS.iter().copied().find(|k| *k == s)
}

fn form_page<'a>(
    page: &Page,
    c: &'a Chrome,
    kind: &'static str,
    fields: BTreeMap<&'static str, Field>,
    general: String,
) -> FormPage<'a> {
    FormPage {
        c,
        kind,
        profiles: page.profiles.clone(),
        fields,
        general,
        picks_organisation: page.who.as_ref().is_some_and(|w| w.decides()),
        draft: None,
        kept: BTreeMap::new(),
        check: None,
    }
}

/// `GET /requests/new?kind=issue`: the form of one procedure.
async fn new_request(
    page: Page,
    q: Result<Query<KindQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = page.desk() {
        return *r;
    }
    let kind = q
        .ok()
        .and_then(|Query(q)| q.kind)
        .and_then(|k| kind_of(&k))
        .unwrap_or("issue");
    let c = page.chrome();
    page.html(
        StatusCode::OK,
        form_page(&page, &c, kind, BTreeMap::new(), String::new()).render(),
    )
}

/// The form field a desk field path is shown next to.
fn form_field(desk_field: &str) -> &'static str {
    match desk_field {
        "organisation" => "organisation",
        "profile" => "profile",
        "subscriber.name" => "subscriber_name",
        "subscriber.email" => "subscriber_email",
        "subscriber.phone" => "subscriber_phone",
        "subscriber.title" => "subscriber_title",
        "subscriber.unit" => "subscriber_unit",
        "subscriber.id_number" => "subscriber_id_number",
        "csr" => "csr",
        "certificate" => "certificate",
        "reason" => "reason",
        "recovery" | "key_origin" => "recovery",
        f if f.starts_with("document") => "document",
        _ => "",
    }
}

/// `POST /requests` (multipart): files a request through the desk, as `POST /api/v1/requests`.
async fn submit(page: Page, mut form: Multipart) -> Response {
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let mut text: BTreeMap<String, String> = BTreeMap::new();
    let mut files: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                let filename = field.file_name().map(str::to_owned);
                let Ok(bytes) = field.bytes().await else {
                    return page.error(
                        StatusCode::BAD_REQUEST,
                        "invalid-title",
                        "upload-broken-detail",
                    );
                };
                match filename {
                    Some(f) if !bytes.is_empty() => {
                        files.insert(name, (f, bytes.to_vec()));
                    }
                    Some(_) => {}
                    None if bytes.len() <= MAX_FIELD_BYTES => {
                        text.insert(name, String::from_utf8_lossy(&bytes).into_owned());
                    }
                    None => {
                        return page.error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "too-large-title",
                            "too-large-detail",
                        )
                    }
                }
            }
            Ok(None) => break,
            Err(_) => {
                return page.error(
                    StatusCode::BAD_REQUEST,
                    "invalid-title",
                    "upload-broken-detail",
                )
            }
        }
    }
    if !page.csrf_ok(text.get("csrf").map(String::as_str)) {
        return page.csrf_refused();
    }
    let Some(kind) = text.get("kind").and_then(|k| kind_of(k)) else {
        return page.error(StatusCode::BAD_REQUEST, "invalid-title", "invalid-detail");
    };
    // Files kept by a check of this form, unless chosen again.
    let draft = text.get("draft").filter(|d| !d.is_empty()).cloned();
    let owner = page.csrf().to_owned();
    if let Some(id) = &draft {
        for (field, file) in page.portal.drafts.get(&owner, id).unwrap_or_default() {
            files.entry(field).or_insert(file);
        }
    }
    if text.contains_key("check") {
        return check_document(&page, desk, who, kind, &text, files, draft.as_deref()).await;
    }
    let get = |k: &str| {
        text.get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let csr = match files.get("csr_file") {
        Some((_, bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        None => get("csr_text"),
    };
    let document = files
        .get("document_file")
        .map(|(name, bytes)| DocumentInput {
            filename: name.clone(),
            content_base64: b64(bytes),
            signature_base64: files.get("signature_file").map(|(_, s)| b64(s)),
        });
    let has_subscriber = kind == "issue" || kind == "modify";
    let recovery = if kind == "recover" {
        get("recovery")
    } else {
        None
    };
    let input = RequestInput {
        kind: kind.to_owned(),
        organisation: get("organisation"),
        profile: if kind == "issue" {
            get("profile")
        } else {
            None
        },
        issuer: None,
        subscriber: has_subscriber.then(|| SubscriberInput {
            name: get("subscriber_name"),
            email: get("subscriber_email"),
            phone: get("subscriber_phone"),
            title: get("subscriber_title"),
            unit: get("subscriber_unit"),
            id_number: get("subscriber_id_number"),
            roles: None,
        }),
        csr: if has_subscriber { csr } else { None },
        // A key device, or a remote-signing account (key origin central) unlocked or
        // enrolled again.
        key_origin: (kind == "recover").then(|| {
            match recovery.as_deref() {
                Some("token") | None => "token",
                Some(_) => "central",
            }
            .to_owned()
        }),
        certificate: if kind == "issue" {
            None
        } else {
            get("certificate")
        },
        reason: if kind == "revoke" {
            get("reason")
        } else {
            None
        },
        recovery: recovery.filter(|r| r != "token"),
        document,
    };
    match blocking(move || desk.submit(&who, input)).await {
        Ok(view) => {
            if let Some(id) = &draft {
                page.portal.drafts.remove(&owner, id);
            }
            see_other(&format!("/requests/{}", view.id))
        }
        Err(DeskError::Invalid(errors)) => {
            let mut fields = typed_fields(&text);
            let mut general = Vec::new();
            for FieldError { field, message, .. } in errors {
                let shown = desk_messages::text(page.lang, &field, &message);
                match form_field(&field) {
                    "" => general.push(shown),
                    f => {
                        let e = &mut fields.entry(f).or_default().error;
                        if e.is_empty() {
                            *e = shown;
                        }
                    }
                }
            }
            let c = page.chrome();
            let mut form = form_page(&page, &c, kind, fields, general.join("; "));
            // The attached files are kept for the corrected form, as a check keeps them.
            if !files.is_empty() {
                form.kept = file_names(&files);
                form.draft = page.portal.drafts.put(&owner, draft.as_deref(), files);
                if form.draft.is_none() {
                    form.kept.clear();
                }
            }
            page.html(StatusCode::UNPROCESSABLE_ENTITY, form.render())
        }
        Err(e) => page.refusal(&e),
    }
}

/// The values typed into a procedure form, to show it again.
fn typed_fields(text: &BTreeMap<String, String>) -> BTreeMap<&'static str, Field> {
    let mut fields: BTreeMap<&'static str, Field> = BTreeMap::new();
    for name in [
        "organisation",
        "profile",
        "subscriber_name",
        "subscriber_email",
        "subscriber_phone",
        "subscriber_title",
        "subscriber_unit",
        "subscriber_id_number",
        "certificate",
        "reason",
        "recovery",
    ] {
        fields.insert(
            name,
            Field {
                value: text.get(name).cloned().unwrap_or_default(),
                error: String::new(),
            },
        );
    }
    fields.insert(
        "csr",
        Field {
            value: text.get("csr_text").cloned().unwrap_or_default(),
            error: String::new(),
        },
    );
    fields
}

/// The names of attached files, by form field.
fn file_names(files: &drafts::Files) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(field, (name, _))| (field.clone(), name.clone()))
        .collect()
}

/// *Check the document*: the form again with what filing it now would record about its
/// signed document (the desk's check; nothing filed), its files kept in a draft.
async fn check_document(
    page: &Page,
    desk: Arc<RequestDesk>,
    who: Principal,
    kind: &'static str,
    text: &BTreeMap<String, String>,
    files: drafts::Files,
    draft: Option<&str>,
) -> Response {
    let mut fields = typed_fields(text);
    let c = page.chrome();
    let Some((name, bytes)) = files.get("document_file").cloned() else {
        fields.entry("document").or_default().error = page.t("check-no-document");
        let form = form_page(page, &c, kind, fields, String::new());
        return page.html(StatusCode::UNPROCESSABLE_ENTITY, form.render());
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let input = crate::ra::desk::DocumentCheckInput {
        organisation: text
            .get("organisation")
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty()),
        document: DocumentInput {
            filename: name,
            content_base64: b64(&bytes),
            signature_base64: files.get("signature_file").map(|(_, s)| b64(s)),
        },
    };
    let checked = blocking(move || desk.check_document(&who, &input)).await;
    let mut general = String::new();
    let verdict = match checked {
        Ok(v) => Some(v),
        Err(DeskError::Invalid(errors)) => {
            for FieldError { field, message, .. } in errors {
                let shown = desk_messages::text(page.lang, &field, &message);
                match form_field(&field) {
                    "" => general = shown,
                    f => fields.entry(f).or_default().error = shown,
                }
            }
            None
        }
        Err(e) => return page.refusal(&e),
    };
    let owner = page.csrf().to_owned();
    let names = file_names(&files);
    let id = page.portal.drafts.put(&owner, draft, files);
    let mut form = form_page(page, &c, kind, fields, general);
    form.kept = if id.is_some() { names } else { BTreeMap::new() };
    form.draft = id;
    form.check = verdict.map(|v| DocumentVerdict {
        valid: v.valid,
        filename: v.filename,
        signer: v.signer_subject.unwrap_or_default(),
        signed_at: local_time(v.signed_at.as_deref()),
        problem: v.problem.unwrap_or_default(),
    });
    let status = if form.check.is_some() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    page.html(status, form.render())
}

fn request_id(p: Result<Path<i64>, axum::extract::rejection::PathRejection>) -> Option<i64> {
    p.ok().map(|Path(id)| id).filter(|id| *id > 0)
}

/// The actions offered on a request in a state, to a caller who decides.
fn actions_for(state: &str) -> &'static [&'static str] {
    match state {
        "submitted" => &["accept", "return", "reject"],
        "accepted" => &["approve", "return", "reject"],
        "approved" => &["approve", "reject"],
        "awaiting-original" => &["original-received", "reject"],
        _ => &[],
    }
}

async fn request_page(page: &Page, id: i64, status: StatusCode, notice: String) -> Response {
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let w = who.clone();
    let store = page.store.clone();
    let r = blocking(move || {
        let view = desk.show(&w, id)?;
        let events = desk.history(&w, id)?;
        // The device and the signing credential of a request the caller reads are its
        // organisation's, so the caller reaches them too.
        let device = match store.device_by_request(id)? {
            Some(d) => Some(d),
            None => match &view.certificate {
                Some(serial) => store.device_by_certificate(serial)?,
                None => None,
            },
        };
        let credential = store.credential_for_request(id)?;
        Ok((
            view,
            events,
            device.map(|d| d.serial),
            credential.map(|c| c.id),
        ))
    })
    .await;
    let (view, events, device, credential) = match r {
        Ok(v) => v,
        Err(e) => return page.refusal(&e),
    };
    let mut actions: Vec<(&'static str, String)> = Vec::new();
    if who.decides() {
        actions.extend(
            actions_for(view.state)
                .iter()
                .map(|a| (*a, page.t(&format!("action-{a}")))),
        );
    } else if view.state == "returned" && who.files() {
        actions.push(("resubmit", page.t("action-resubmit")));
    }
    let history = events
        .into_iter()
        .map(|e| HistoryRow {
            at: local_time(Some(&e.at)),
            actor: e.actor,
            action: page.t(&format!("event-{}", e.action)),
            to: page.t(&format!("state-{}", e.to)),
            reason: e.reason.unwrap_or_default(),
        })
        .collect();
    let row = page.row(&view, now());
    let c = page.chrome();
    page.html(
        status,
        RequestPage {
            c: &c,
            row,
            r: view,
            history,
            actions,
            notice,
            device,
            credential,
        }
        .render(),
    )
}

/// `GET /requests/{id}`: the request, its document's verification, its history, its actions.
async fn show(
    page: Page,
    p: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Response {
    match request_id(p) {
        Some(id) => request_page(&page, id, StatusCode::OK, String::new()).await,
        None => page.error(StatusCode::NOT_FOUND, "not-found-title", "not-found-detail"),
    }
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: Option<String>,
    action: Option<String>,
    reason: Option<String>,
}

/// `POST /requests/{id}/actions`: accept, approve, return, reject, original-received or
/// resubmit, as `POST /api/v1/requests/{id}/transitions`.
async fn act(
    page: Page,
    p: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return page.csrf_refused();
    };
    if !page.csrf_ok(f.csrf.as_deref()) {
        return page.csrf_refused();
    }
    let Some(id) = request_id(p) else {
        return page.error(StatusCode::NOT_FOUND, "not-found-title", "not-found-detail");
    };
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let Some(action) = f.action.filter(|a| !a.is_empty()) else {
        return request_page(
            &page,
            id,
            StatusCode::UNPROCESSABLE_ENTITY,
            page.t("action-missing"),
        )
        .await;
    };
    let input = ActionInput {
        corrected: None,
        action,
        reason: f
            .reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty()),
    };
    match blocking(move || desk.act(&who, id, &input)).await {
        Ok(_) => see_other(&format!("/requests/{id}")),
        Err(DeskError::Invalid(errors)) => {
            let detail = errors
                .into_iter()
                .map(|e| desk_messages::text(page.lang, &e.field, &e.message))
                .collect::<Vec<_>>()
                .join("; ");
            let notice = format!("{}: {detail}", page.t("action-invalid"));
            request_page(&page, id, StatusCode::UNPROCESSABLE_ENTITY, notice).await
        }
        Err(DeskError::Conflict(_)) => {
            request_page(&page, id, StatusCode::CONFLICT, page.t("conflict-detail")).await
        }
        Err(e) => page.refusal(&e),
    }
}

/// `POST /requests/bulk`: approves each selected request (`id=…&id=…`), one desk call each,
/// as `POST /api/v1/requests/{id}/transitions` would; every outcome is shown.
async fn bulk_approve(page: Page, body: axum::body::Bytes) -> Response {
    let mut csrf = None;
    let mut ids = Vec::new();
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "csrf" => csrf = Some(v.into_owned()),
            "id" => ids.push(v.parse::<i64>().ok()),
            _ => {}
        }
    }
    if !page.csrf_ok(csrf.as_deref()) {
        return page.csrf_refused();
    }
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if ids.is_empty()
        || ids.len() > MAX_BULK_APPROVALS
        || ids.iter().any(|i| i.is_none_or(|i| i <= 0))
    {
        return page.error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bulk-title",
            "bulk-selection",
        );
    }
    let ids: Vec<i64> = ids.into_iter().flatten().collect();
    let outcomes = blocking(move || {
        Ok(ids
            .into_iter()
            .map(|id| {
                let input = ActionInput {
                    action: "approve".into(),
                    reason: None,
                    corrected: None,
                };
                (id, desk.act(&who, id, &input))
            })
            .collect::<Vec<_>>())
    })
    .await;
    let outcomes = match outcomes {
        Ok(o) => o,
        Err(e) => return page.refusal(&e),
    };
    let rows = outcomes
        .into_iter()
        .map(|(id, r)| {
            let outcome = match r {
                Ok(v) => page.t(&format!("state-{}", v.state)),
                Err(DeskError::Forbidden(_)) => page.t("forbidden-title"),
                Err(DeskError::NotFound(_)) => page.t("not-found-title"),
                Err(DeskError::Conflict(_)) => page.t("conflict-title"),
                Err(DeskError::Invalid(e)) => format!(
                    "{}: {}",
                    page.t("action-invalid"),
                    e.into_iter()
                        .map(|e| desk_messages::text(page.lang, &e.field, &e.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                Err(_) => page.t("unavailable-title"),
            };
            (id, outcome)
        })
        .collect();
    let c = page.chrome();
    page.html(StatusCode::OK, BulkPage { c: &c, rows }.render())
}

#[derive(Deserialize)]
struct ReportForm {
    organisation: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// `GET /reports?from=YYYY-MM-DD&to=YYYY-MM-DD[&organisation=ID][&format=csv]`: the desk's
/// report of a subtree and period, with its charts drawn as SVG on the server, or its CSV.
async fn reports(
    page: Page,
    q: Result<Query<ReportForm>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let q = q.map(|Query(q)| q).unwrap_or(ReportForm {
        organisation: None,
        from: None,
        to: None,
        format: None,
    });
    let today = time::OffsetDateTime::now_utc()
        .to_offset(crate::ra::calendar::HO_CHI_MINH)
        .date();
    let iso = time::macros::format_description!("[year]-[month]-[day]");
    let from = q.from.filter(|s| !s.is_empty()).unwrap_or_else(|| {
        time::Date::from_calendar_date(today.year(), time::Month::January, 1)
            .ok()
            .and_then(|d| d.format(&iso).ok())
            .unwrap_or_default()
    });
    let to =
        q.to.filter(|s| !s.is_empty())
            .unwrap_or_else(|| today.format(&iso).unwrap_or_default());
    let organisation = q.organisation.filter(|s| !s.is_empty());
    let csv = q.format.as_deref() == Some("csv");
    let query = crate::ra::desk::ReportQuery {
        organisation: organisation.clone(),
        from: from.clone(),
        to: to.clone(),
        format: None,
    };
    let report = match blocking(move || desk.report(&who, &query)).await {
        Ok(r) => r,
        Err(DeskError::Invalid(errors)) => {
            let c = page.chrome();
            let problem = errors
                .into_iter()
                .map(|e| {
                    let field = page.t(&format!("report-{}", e.field));
                    let text = desk_messages::text(page.lang, &e.field, &e.message);
                    format!("{field}: {text}")
                })
                .collect::<Vec<_>>()
                .join("; ");
            return page.html(
                StatusCode::UNPROCESSABLE_ENTITY,
                ReportPage {
                    c: &c,
                    from,
                    to,
                    organisation: organisation.unwrap_or_default(),
                    problem,
                    report: None,
                    kinds: Chart::default(),
                    breaches: Chart::default(),
                    weekly: Columns::default(),
                    punctuality: Columns::default(),
                    deadline_use: Chart::default(),
                    expiring: Chart::default(),
                }
                .render(),
            );
        }
        Err(e) => return page.refusal(&e),
    };
    if csv {
        return (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"pkid-report.csv\"",
                ),
            ],
            report.to_csv(),
        )
            .into_response();
    }
    let kinds = Chart::bars(
        report
            .requests
            .iter()
            .flat_map(|(kind, n)| {
                let name = page.t(&format!("kind-{kind}"));
                [
                    (
                        format!("{name}: {}", page.t("report-submitted")),
                        n.submitted,
                    ),
                    (
                        format!("{name}: {}", page.t("state-fulfilled")),
                        n.fulfilled,
                    ),
                ]
            })
            .collect(),
    );
    let breaches = Chart::bars(
        report
            .breaches
            .by_organisation
            .iter()
            .map(|(o, n)| (o.clone(), *n))
            .collect(),
    );
    let charts = report_charts(&page, &report);
    let c = page.chrome();
    page.html(
        StatusCode::OK,
        ReportPage {
            c: &c,
            from,
            to,
            organisation: organisation.unwrap_or_default(),
            problem: String::new(),
            report: Some(report),
            kinds,
            breaches,
            weekly: charts.0,
            punctuality: charts.1,
            deadline_use: charts.2,
            expiring: charts.3,
        }
        .render(),
    )
}

/// The colours of the kinds in the weekly chart (the order of `RequestKind::ALL`), and of on
/// time and late. Each is at least 4.5:1 against white.
const KIND_COLOURS: [&str; 5] = ["#0b4f9c", "#0a6b2d", "#8a4b00", "#a40e26", "#5b2c8a"];
const ON_TIME: &str = "#0a6b2d";
const LATE: &str = "#a40e26";

/// The report's weekly columns (filed by kind; on time and late), its deadline-use bars and its
/// months of expiring certificates, laid out from the desk's figures.
fn report_charts(
    page: &Page,
    report: &crate::ra::report::Report,
) -> (Columns, Columns, Chart, Chart) {
    let kinds: Vec<(String, &'static str)> = crate::store::ra::RequestKind::ALL
        .iter()
        .zip(KIND_COLOURS)
        .map(|(k, colour)| (page.t(&format!("kind-{}", k.as_str())), colour))
        .collect();
    let short = |iso: &str| local_day(iso).get(..5).unwrap_or_default().to_owned();
    let weekly = Columns::stacked(
        &kinds,
        report
            .weeks
            .iter()
            .map(|w| {
                let values = crate::store::ra::RequestKind::ALL
                    .iter()
                    .map(|k| w.submitted.get(k.as_str()).copied().unwrap_or(0))
                    .collect();
                (short(&w.starts), values)
            })
            .collect(),
    );
    let punctuality = Columns::stacked(
        &[
            (page.t("report-on-time"), ON_TIME),
            (page.t("report-late"), LATE),
        ],
        report
            .weeks
            .iter()
            .map(|w| (short(&w.starts), vec![w.on_time, w.late]))
            .collect(),
    );
    let deadline_use = Chart::bars(
        report
            .deadline_use
            .buckets()
            .iter()
            .map(|(code, n)| (bucket_words(page.lang, code), *n))
            .collect(),
    );
    let expiring = Chart::bars(
        report
            .expiring_by_month
            .iter()
            .map(|m| (local_month(&m.month), m.certificates))
            .collect(),
    );
    (weekly, punctuality, deadline_use, expiring)
}

/// `GET /subscribers[?after=]`: the subscribers of the caller's fulfilled requests, newest
/// first, a page at a time, with their certificates' status and expiry (the desk's list, then
/// each certificate's record).
async fn subscribers(
    page: Page,
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    q: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let store = state.store.clone();
    let params = q.map(|Query(q)| q).unwrap_or_default();
    let q = ListQuery {
        state: Some("fulfilled".into()),
        limit: Some(LIST_PAGE),
        cursor: params.after.filter(|a| !a.is_empty()),
        ..Default::default()
    };
    let rows = blocking(move || {
        let list = desk.list(&who, &q)?;
        let mut rows = Vec::new();
        for r in list.items {
            let Some(serial) = r.issued_certificate.clone() else {
                continue;
            };
            let cert = store.certificate(&serial)?;
            rows.push((r, serial, cert));
        }
        Ok((rows, list.next))
    })
    .await;
    let (rows, next) = match rows {
        Ok(r) => r,
        Err(e) => return page.refusal(&e),
    };
    let now = now();
    let rows = rows
        .into_iter()
        .map(|(r, serial, cert)| {
            let (status, until, left) = match cert {
                Some(c) => {
                    let status = match c.status {
                        CertStatus::Revoked => page.t("report-revoked"),
                        CertStatus::Hold => page.t("status-hold"),
                        _ if (c.not_after as i64) < now => page.t("status-expired"),
                        _ => page.t("status-valid"),
                    };
                    let left = if c.status == CertStatus::Valid && (c.not_after as i64) >= now {
                        time_left(page.lang, c.not_after as i64, now)
                    } else {
                        String::new()
                    };
                    (status, unix_local_time(c.not_after as i64), left)
                }
                None => (String::new(), String::new(), String::new()),
            };
            SubscriberRow {
                request: r.id,
                name: r.subscriber.name.unwrap_or_default(),
                email: r.subscriber.email.unwrap_or_default(),
                organisation: r.organisation,
                serial,
                status,
                until,
                left,
            }
        })
        .collect();
    let c = page.chrome();
    page.html(
        StatusCode::OK,
        SubscribersPage {
            c: &c,
            rows,
            next: next_href("/subscribers", next, None),
        }
        .render(),
    )
}

/// `GET /devices`: the key devices of the organisations the caller reaches (docs/key-devices.md),
/// with where each is.
async fn devices(
    page: Page,
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> Response {
    let (_desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let store = state.store.clone();
    let found = blocking(move || {
        crate::token::visible_devices(store.as_ref(), &who).map_err(DeskError::from)
    })
    .await;
    let found = match found {
        Ok(d) => d,
        Err(e) => return page.refusal(&e),
    };
    let rows = found
        .into_iter()
        .map(|d| DeviceRow {
            state: page.t(&format!("device-state-{}", d.state.as_str())),
            handed_over: d
                .handed_over_at
                .map(|t| unix_local_time(t as i64))
                .unwrap_or_default(),
            receiver: d.receiver.unwrap_or_default(),
            serial: d.serial,
            model: d.model,
            organisation: d.organisation,
            request: d.request,
            certificate: d.certificate,
        })
        .collect();
    let c = page.chrome();
    page.html(StatusCode::OK, DevicesPage { c: &c, rows }.render())
}

/// Longest device serial looked up (PKCS#11 serial numbers are 16 characters).
const MAX_DEVICE_SERIAL: usize = 64;

/// `GET /devices/{serial}`: one key device and its history (provisioned, handed over,
/// unlocked, returned, wiped), for the callers who reach its organisation; out of reach is a
/// 403 page and an audit record, as `GET /api/v1/devices/{serial}`.
async fn device(
    page: Page,
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let (_desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let serial = match p {
        Ok(Path(s)) if !s.is_empty() && s.len() <= MAX_DEVICE_SERIAL => s,
        _ => return page.error(StatusCode::NOT_FOUND, "not-found-title", "not-found-detail"),
    };
    let store = state.store.clone();
    let found = blocking(move || {
        crate::token::visible_device(store.as_ref(), &who, &serial).map_err(DeskError::from)
    })
    .await;
    let (d, history) = match found {
        Ok(d) => d,
        Err(e) => return page.refusal(&e),
    };
    let at = |t: Option<u64>| t.map(|t| unix_local_time(t as i64)).unwrap_or_default();
    let history = history
        .into_iter()
        .map(|e| DeviceHistoryRow {
            at: unix_local_time(e.at as i64),
            actor: e.actor,
            action: page.t(&format!("device-event-{}", e.action)),
            action_code: e.action,
            detail: e.detail,
        })
        .collect();
    let view = DeviceView {
        state: page.t(&format!("device-state-{}", d.state.as_str())),
        state_code: d.state.as_str(),
        receiver: d.receiver.clone().unwrap_or_default(),
        handed_over: at(d.handed_over_at),
        returned: at(d.returned_at),
        provisioned: at(Some(d.provisioned_at)),
        so_pin_escrowed: d.so_pin_sealed.is_some(),
        serial: d.serial,
        model: d.model,
        manufacturer: d.manufacturer,
        label: d.label,
        organisation: d.organisation,
        request: d.request,
        certificate: d.certificate,
    };
    let c = page.chrome();
    page.html(
        StatusCode::OK,
        DevicePage {
            c: &c,
            d: view,
            history,
        }
        .render(),
    )
}

/// Longest credential id looked up (ids are 32 hex digits).
const MAX_CREDENTIAL_ID: usize = 64;

/// `GET /signing/{credential}[?after=]`: a remote-signing credential's authorisations and
/// signatures, newest first, a page at a time, for the callers who reach the organisation
/// that filed for it (docs/remote-signing.md). Unknown and out of reach are both "not found";
/// the second is audited.
async fn signing_history(
    page: Page,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
    q: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let signer = page.signer.as_ref().map(|a| a.id);
    let who = match (signer, page.desk()) {
        (Some(_), _) => None,
        (None, Ok((_, who))) => Some(who),
        (None, Err(r)) => return *r,
    };
    let id = match p {
        Ok(Path(s)) if !s.is_empty() && s.len() <= MAX_CREDENTIAL_ID => s,
        _ => return page.error(StatusCode::NOT_FOUND, "not-found-title", "not-found-detail"),
    };
    let before = match q.map(|Query(q)| q).unwrap_or_default().after {
        None => None,
        Some(a) if a.is_empty() => None,
        Some(a) => match a.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return page.error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-title",
                    "invalid-detail",
                )
            }
        },
    };
    let store = page.store.clone();
    let found = blocking(move || match (&who, signer) {
        (Some(who), _) => {
            crate::csc::history::signing_history(store.as_ref(), who, &id, before, LIST_PAGE)
        }
        (None, Some(account)) => crate::csc::history::own_signing_history(
            store.as_ref(),
            account,
            &id,
            before,
            LIST_PAGE,
        ),
        (None, None) => Err(DeskError::Unauthenticated),
    })
    .await;
    let h = match found {
        Ok(h) => h,
        Err(e) => return page.refusal(&e),
    };
    let rows = h
        .events
        .iter()
        .map(|e| SigningRow {
            at: unix_local_time(e.at as i64),
            action: page.t(match e.action.as_str() {
                "csc.credentials.authorize" => "signing-authorize",
                "csc.signatures.signHash" => "signing-sign",
                "csc.credential.disable" => "signing-disable",
                _ => "signing-other",
            }),
            outcome_code: e.outcome.as_str(),
            outcome: page.t(&format!("outcome-{}", e.outcome.as_str())),
            hashes: e.hashes,
        })
        .collect();
    let next = next_href(
        &format!("/signing/{}", h.credential),
        h.next.map(|n| n.to_string()),
        None,
    );
    let c = page.chrome();
    page.html(
        StatusCode::OK,
        SigningPage {
            c: &c,
            own: signer.is_some(),
            state: page.t(if h.enabled {
                "signing-enabled"
            } else {
                "signing-disabled"
            }),
            h,
            rows,
            next,
            hash_algorithm: crate::csc::history::HASH_ALGORITHM,
            signature_algorithm: crate::csc::history::SIGNATURE_ALGORITHM,
        }
        .render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desk_fields_land_next_to_their_form_controls() {
        assert_eq!(form_field("subscriber.email"), "subscriber_email");
        assert_eq!(form_field("document.signature_base64"), "document");
        assert_eq!(form_field("something else"), "");
    }

    #[test]
    fn time_left_reads_as_words() {
        assert_eq!(time_left(Lang::Vi, 5 * 3600 + 59, 0), "còn 5 giờ");
        assert_eq!(time_left(Lang::En, 0, 2 * 3600), "2 hours overdue");
        assert_eq!(time_left(Lang::Vi, 3 * 86400, 0), "còn 3 ngày");
        assert_eq!(local_time(Some("2026-12-01T18:16:20Z")), "02/12/2026 01:16");
    }
}
