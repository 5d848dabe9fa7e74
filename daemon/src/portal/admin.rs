//! The CA admin's and auditor's pages: the audit log with its chain verification, and the
//! organisations and operators, through the same desk calls as `pkid org` and `pkid operator`;
//! and organisations' enrollment credentials (`pkid credential`), for their officers too.

use super::views::{
    unix_local_time, AuditPage, AuditRow, CredentialsPage, OperatorsPage, OrganisationsPage,
};
use super::{blocking, desk_messages, i18n, see_other, Page, LIST_PAGE};
use crate::ra::desk::{
    CredentialInput, CredentialView, DeskError, OperatorInput, OrganisationInput,
};
use crate::store::audit::BreakKind;
use crate::store::ChainVerdict;
use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Default)]
pub(super) struct AuditParams {
    after: Option<String>,
    verify: Option<String>,
}

/// `GET /audit[?after=][&verify=1]`: the audit log, newest first, a page at a time; with
/// `verify=1` the whole chain is walked first (as `pkid audit verify`) and its verdict shown.
pub(super) async fn audit(
    page: Page,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let before = q
        .after
        .and_then(|a| a.parse::<i64>().ok())
        .filter(|a| *a > 0);
    let verify = q.verify.as_deref() == Some("1");
    let r = blocking(move || {
        let verdict = if verify {
            Some(desk.verify_audit(&who)?)
        } else {
            None
        };
        Ok((desk.audit_page(&who, before, LIST_PAGE + 1)?, verdict))
    })
    .await;
    let (mut rows, verdict) = match r {
        Ok(v) => v,
        Err(e) => return page.refusal(&e),
    };
    let next = (rows.len() > LIST_PAGE).then(|| {
        rows.truncate(LIST_PAGE);
        format!("/audit?after={}", rows.last().map_or(0, |r| r.0))
    });
    let chain = verdict.map(|v| match v {
        ChainVerdict::Intact(i) => {
            let mut args = fluent_bundle::FluentArgs::new();
            args.set("n", i.count);
            args.set("stamps", i.stamps);
            (true, i18n::message(page.lang, "audit-intact", Some(&args)))
        }
        ChainVerdict::Broken(b) => {
            let kind = match b.kind {
                BreakKind::Edited => "audit-break-edited",
                BreakKind::Moved { .. } => "audit-break-moved",
                BreakKind::Rewritten => "audit-break-rewritten",
                BreakKind::Deleted { .. } => "audit-break-deleted",
                BreakKind::Unchained => "audit-break-unchained",
                BreakKind::StampMismatch { .. } => "audit-break-stamp",
            };
            let mut args = fluent_bundle::FluentArgs::new();
            args.set("id", b.id);
            args.set("kind", page.t(kind));
            (false, i18n::message(page.lang, "audit-broken", Some(&args)))
        }
    });
    let rows = rows
        .into_iter()
        .map(|(id, e)| AuditRow {
            id,
            at: unix_local_time(e.at as i64),
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome_code: e.outcome.as_str(),
            outcome: page.t(&format!("outcome-{}", e.outcome.as_str())),
            detail: e.detail,
        })
        .collect();
    let c = page.chrome();
    page.html(
        StatusCode::OK,
        AuditPage {
            c: &c,
            rows,
            chain,
            next,
        }
        .render(),
    )
}

/// The fields of a desk refusal, in the page's language, by form field (`""`: the form's).
fn problems(page: &Page, e: Vec<crate::ra::desk::FieldError>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for f in e {
        let text = desk_messages::text(page.lang, &f.field, &f.message);
        out.entry(f.field).or_insert(text);
    }
    out
}

/// What the officer typed, by field, to show again beside the form's problems.
fn typed(fields: &[(&str, &Option<String>)]) -> BTreeMap<String, String> {
    fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_deref().unwrap_or_default().to_owned()))
        .collect()
}

fn opt(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

async fn organisations_page(
    page: &Page,
    status: StatusCode,
    form: BTreeMap<String, String>,
    errors: BTreeMap<String, String>,
    notice: String,
) -> Response {
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    // Only a CA admin manages them; the desk's list would show others what they reach.
    if !who.administers() {
        return page.refusal(&DeskError::Forbidden("ca-admin".into()));
    }
    let list = match blocking(move || desk.organisations(&who)).await {
        Ok(l) => l,
        Err(e) => return page.refusal(&e),
    };
    let c = page.chrome();
    page.html(
        status,
        OrganisationsPage {
            c: &c,
            rows: list,
            form,
            errors,
            notice,
        }
        .render(),
    )
}

#[derive(Deserialize, Default)]
pub(super) struct Done {
    added: Option<String>,
    removed: Option<String>,
}

/// `GET /admin/organisations`: the organisations, a form to add one, a button to disable each.
pub(super) async fn organisations(
    page: Page,
    q: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let notice = if q.added.is_some() {
        page.t("admin-added")
    } else if q.removed.is_some() {
        page.t("admin-removed")
    } else {
        String::new()
    };
    organisations_page(
        &page,
        StatusCode::OK,
        BTreeMap::new(),
        BTreeMap::new(),
        notice,
    )
    .await
}

#[derive(Deserialize)]
pub(super) struct OrganisationForm {
    csrf: Option<String>,
    id: Option<String>,
    name: Option<String>,
    province: Option<String>,
    parent: Option<String>,
    email: Option<String>,
    registry_id: Option<String>,
    sector: Option<String>,
}

/// `POST /admin/organisations`: adds an organisation, as `pkid org add`.
pub(super) async fn add_organisation(
    page: Page,
    form: Result<Form<OrganisationForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(Form(f)) = form.ok().filter(|Form(f)| page.csrf_ok(f.csrf.as_deref())) else {
        return page.csrf_refused();
    };
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let typed = typed(&[
        ("id", &f.id),
        ("name", &f.name),
        ("province", &f.province),
        ("parent", &f.parent),
        ("email", &f.email),
        ("registry_id", &f.registry_id),
        ("sector", &f.sector),
    ]);
    let input = OrganisationInput {
        id: opt(&f.id).unwrap_or_default(),
        name: opt(&f.name).unwrap_or_default(),
        registry_id: opt(&f.registry_id),
        province: opt(&f.province),
        parent: opt(&f.parent),
        email: opt(&f.email),
        profiles: Vec::new(),
        sector: opt(&f.sector),
    };
    match blocking(move || desk.add_organisation(&who, input)).await {
        Ok(_) => see_other("/admin/organisations?added=1"),
        Err(DeskError::Invalid(e)) => {
            let errors = problems(&page, e);
            organisations_page(
                &page,
                StatusCode::UNPROCESSABLE_ENTITY,
                typed,
                errors,
                String::new(),
            )
            .await
        }
        Err(DeskError::Conflict(_)) => {
            let mut errors = BTreeMap::new();
            errors.insert("id".to_owned(), page.t("conflict-title"));
            organisations_page(&page, StatusCode::CONFLICT, typed, errors, String::new()).await
        }
        Err(e) => page.refusal(&e),
    }
}

#[derive(Deserialize)]
pub(super) struct TokenOnly {
    csrf: Option<String>,
}

/// `POST /admin/organisations/{id}/remove`: disables an organisation (audited by the desk).
pub(super) async fn remove_organisation(
    page: Page,
    Path(id): Path<String>,
    form: Result<Form<TokenOnly>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !form.is_ok_and(|Form(f)| page.csrf_ok(f.csrf.as_deref())) {
        return page.csrf_refused();
    }
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    match blocking(move || desk.remove_organisation(&who, &id)).await {
        Ok(()) => see_other("/admin/organisations?removed=1"),
        Err(e) => page.refusal(&e),
    }
}

async fn operators_page(
    page: &Page,
    status: StatusCode,
    form: BTreeMap<String, String>,
    errors: BTreeMap<String, String>,
) -> Response {
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let list = match blocking(move || desk.operators(&who)).await {
        Ok(l) => l,
        Err(e) => return page.refusal(&e),
    };
    let rows = list
        .into_iter()
        .map(|o| {
            let role = page.t(&format!("role-{}", o.role));
            (o, role)
        })
        .collect();
    let c = page.chrome();
    page.html(
        status,
        OperatorsPage {
            c: &c,
            rows,
            form,
            errors,
        }
        .render(),
    )
}

/// `GET /admin/operators`: the operators (never their secrets), a form to add one, a button to
/// remove each.
pub(super) async fn operators(page: Page) -> Response {
    operators_page(&page, StatusCode::OK, BTreeMap::new(), BTreeMap::new()).await
}

#[derive(Deserialize)]
pub(super) struct OperatorForm {
    csrf: Option<String>,
    id: Option<String>,
    name: Option<String>,
    role: Option<String>,
    organisation: Option<String>,
    scope: Option<String>,
    email: Option<String>,
}

/// `POST /admin/operators`: adds an operator, as `pkid operator add` (its password and TOTP
/// are set with the CLI, from a file or stdin, never through a page).
pub(super) async fn add_operator(
    page: Page,
    form: Result<Form<OperatorForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(Form(f)) = form.ok().filter(|Form(f)| page.csrf_ok(f.csrf.as_deref())) else {
        return page.csrf_refused();
    };
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let typed = typed(&[
        ("id", &f.id),
        ("name", &f.name),
        ("role", &f.role),
        ("organisation", &f.organisation),
        ("scope", &f.scope),
        ("email", &f.email),
    ]);
    let input = OperatorInput {
        id: opt(&f.id).unwrap_or_default(),
        name: opt(&f.name).unwrap_or_default(),
        role: opt(&f.role).unwrap_or_default(),
        organisation: opt(&f.organisation),
        scope: opt(&f.scope),
        email: opt(&f.email),
    };
    match blocking(move || desk.add_operator(&who, input)).await {
        Ok(_) => see_other("/admin/operators"),
        Err(DeskError::Invalid(e)) => {
            let errors = problems(&page, e);
            operators_page(&page, StatusCode::UNPROCESSABLE_ENTITY, typed, errors).await
        }
        Err(DeskError::Conflict(_)) => {
            let mut errors = BTreeMap::new();
            errors.insert("id".to_owned(), page.t("conflict-title"));
            operators_page(&page, StatusCode::CONFLICT, typed, errors).await
        }
        Err(e) => page.refusal(&e),
    }
}

/// `POST /admin/operators/{id}/remove`: removes an operator; its sessions and tokens end at
/// once (audited by the desk).
pub(super) async fn remove_operator(
    page: Page,
    Path(id): Path<String>,
    form: Result<Form<TokenOnly>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !form.is_ok_and(|Form(f)| page.csrf_ok(f.csrf.as_deref())) {
        return page.csrf_refused();
    }
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    match blocking(move || desk.remove_operator(&who, &id)).await {
        Ok(()) => see_other("/admin/operators"),
        Err(e) => page.refusal(&e),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct CredentialsParams {
    org: Option<String>,
}

/// The organisation a credentials page is about: an organisation officer's own, whatever the
/// query says; for others the `org` asked (the desk decides whether they may see it).
fn credentials_organisation(page: &Page, asked: Option<String>) -> Option<String> {
    match page.who.as_ref().map(|w| w.reach()) {
        Some(crate::ra::access::Reach::Organisation(o)) => Some(o),
        _ => asked.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()),
    }
}

async fn credentials_page(
    page: &Page,
    status: StatusCode,
    org: Option<String>,
    form: BTreeMap<String, String>,
    errors: BTreeMap<String, String>,
    created: Option<(CredentialView, String)>,
) -> Response {
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let rows = match &org {
        Some(id) => {
            let id = id.clone();
            match blocking(move || desk.enrollment_credentials(&who, Some(&id))).await {
                Ok(l) => l,
                Err(e) => return page.refusal(&e),
            }
        }
        None if who.administers() => Vec::new(),
        None => return page.refusal(&DeskError::Forbidden("no organisation".into())),
    };
    let c = page.chrome();
    page.html(
        status,
        CredentialsPage {
            c: &c,
            org,
            rows,
            form,
            errors,
            created,
        }
        .render(),
    )
}

/// `GET /credentials[?org=ID]`: an organisation's EST users and CMP shared secrets (never the
/// secrets), a form to make one, a button to remove each. An organisation officer sees their
/// own organisation; a CA admin chooses one.
pub(super) async fn credentials(
    page: Page,
    q: Result<Query<CredentialsParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let asked = q.ok().and_then(|Query(q)| q.org);
    let org = credentials_organisation(&page, asked);
    credentials_page(
        &page,
        StatusCode::OK,
        org,
        BTreeMap::new(),
        BTreeMap::new(),
        None,
    )
    .await
}

#[derive(Deserialize)]
pub(super) struct CredentialForm {
    csrf: Option<String>,
    org: Option<String>,
    kind: Option<String>,
    name: Option<String>,
}

/// `POST /credentials`: makes a credential, as `pkid credential add`; the answer shows its
/// generated secret once (the page is `no-store`, as every portal page).
pub(super) async fn add_credential(
    page: Page,
    form: Result<Form<CredentialForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(Form(f)) = form.ok().filter(|Form(f)| page.csrf_ok(f.csrf.as_deref())) else {
        return page.csrf_refused();
    };
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let Some(org) = credentials_organisation(&page, f.org.clone()) else {
        return page.refusal(&DeskError::Forbidden("no organisation".into()));
    };
    let typed = typed(&[("kind", &f.kind), ("name", &f.name)]);
    let input = CredentialInput {
        kind: opt(&f.kind).unwrap_or_default(),
        name: opt(&f.name).unwrap_or_default(),
    };
    let id = org.clone();
    match blocking(move || desk.add_enrollment_credential(&who, &id, &input)).await {
        Ok((view, secret)) => {
            let created = Some((view, secret.to_string()));
            credentials_page(
                &page,
                StatusCode::CREATED,
                Some(org),
                BTreeMap::new(),
                BTreeMap::new(),
                created,
            )
            .await
        }
        Err(DeskError::Invalid(e)) => {
            let errors = problems(&page, e);
            credentials_page(
                &page,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(org),
                typed,
                errors,
                None,
            )
            .await
        }
        Err(DeskError::Conflict(_)) => {
            let mut errors = BTreeMap::new();
            errors.insert("name".to_owned(), page.t("conflict-title"));
            credentials_page(&page, StatusCode::CONFLICT, Some(org), typed, errors, None).await
        }
        Err(e) => page.refusal(&e),
    }
}

#[derive(Deserialize)]
pub(super) struct CredentialRemoveForm {
    csrf: Option<String>,
    org: Option<String>,
}

/// `POST /credentials/{kind}/{name}/remove`: removes a credential; it stops authenticating on
/// the next request (audited by the desk).
pub(super) async fn remove_credential(
    page: Page,
    Path((kind, name)): Path<(String, String)>,
    form: Result<Form<CredentialRemoveForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(Form(f)) = form.ok().filter(|Form(f)| page.csrf_ok(f.csrf.as_deref())) else {
        return page.csrf_refused();
    };
    let (desk, who) = match page.desk() {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let Some(org) = credentials_organisation(&page, f.org) else {
        return page.refusal(&DeskError::Forbidden("no organisation".into()));
    };
    let id = org.clone();
    match blocking(move || desk.remove_enrollment_credential(&who, &id, &kind, &name)).await {
        // Organisation ids are lower-case letters, digits and '-': nothing to escape.
        Ok(()) => see_other(&format!("/credentials?org={org}")),
        Err(e) => page.refusal(&e),
    }
}
