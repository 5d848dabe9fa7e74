//! Who may have a central key (Công văn 293/BCY-CTSBMTT): checked when a request is filed, by
//! the desk's draft and submission paths.
//!
//! ```text
//! key_origin = central ─▶ remote signing enabled ([csc] enabled)
//!                      ─▶ kind issue only
//!                      ─▶ the profile has central_keys = true
//!                      ─▶ the organisation's sector is education, training or health
//!                      ─▶ the subscriber is no authorised signatory and has no finance role
//!                      ─▶ the request document is validly signed (no paper path)
//! recover of a remote-signing account (unlock, re-enrol) ─▶ validly signed document too
//! ```
//!
//! Each refusal is a field error naming the rule, so the organisation knows what to change.
//! The checks know nothing of the desk: they push `(field, message)` pairs, which the desk
//! turns into its field errors (so this module does not import the desk that calls it).

/// A refused field: its JSON path and what is wrong.
pub type Refusal = (&'static str, String);

use crate::config::Config;
use crate::store::ra::{DocumentRecord, KeyOrigin, Organisation, RequestKind, RequestRecord};

/// The sectors whose individual subscribers may have central keys.
pub const CENTRAL_SECTORS: [&str; 3] = ["education", "training", "health"];
/// A subscriber who signs for the organisation (its legal representative or someone it
/// authorised): refused a central key.
pub const AUTHORISED_SIGNATORY: &str = "authorised-signatory";
/// A subscriber who makes financial or state-budget transactions: refused a central key.
pub const FINANCE: &str = "finance";

/// Checks a central-key request being drafted: its kind, its profile, its organisation's
/// sector and the subscriber's roles. `roles` are the subscriber's declared roles (any value
/// is checked, so a misspelt role is not silently ignored).
pub fn check_draft(
    config: &Config,
    org: &Organisation,
    kind: RequestKind,
    key_origin: KeyOrigin,
    profile: Option<&str>,
    roles: &[String],
    errors: &mut Vec<Refusal>,
) {
    for r in roles {
        if r != AUTHORISED_SIGNATORY && r != FINANCE {
            push(
                errors,
                (
                    "subscriber.roles",
                    format!("unknown role {r:?}: {AUTHORISED_SIGNATORY} or {FINANCE}"),
                ),
            );
        }
    }
    // A recover request with key origin central names a key the server generated and holds in
    // escrow (EST serverkeygen), not a remote-signing key: the rules below are for those.
    if key_origin != KeyOrigin::Central || kind == RequestKind::Recover {
        return;
    }
    if !config.csc.enabled {
        push(
            errors,
            (
                "key_origin",
                "this CA does not offer central keys ([csc] enabled = false) (rule: central-disabled)",
            ),
        );
        return;
    }
    if kind != RequestKind::Issue {
        push(
            errors,
            (
                "key_origin",
                "central keys are made by an issue request (rule: central-issue-only)",
            ),
        );
        return;
    }
    if let Some(p) = profile {
        if config.profile(p).is_some_and(|p| !p.central_keys) {
            push(
                errors,
                (
                    "profile",
                    format!("profile {p:?} does not allow central keys (rule: central-profile)"),
                ),
            );
        }
    }
    if !CENTRAL_SECTORS.contains(&org.sector.as_str()) {
        push(
            errors,
            (
                "key_origin",
                format!(
                    "central keys are for subscribers of education, training and health \
                 organisations; this organisation's sector is {} (rule: central-sector)",
                    org.sector
                ),
            ),
        );
    }
    if roles.iter().any(|r| r == AUTHORISED_SIGNATORY) {
        push(
            errors,
            (
                "subscriber.roles",
                "an organisation's authorised signatory may not have a central key \
             (rule: central-no-authorised-signatory)",
            ),
        );
    }
    if roles.iter().any(|r| r == FINANCE) {
        push(
            errors,
            (
                "subscriber.roles",
                "a subscriber doing financial or state-budget transactions may not have a central \
             key (rule: central-no-finance)",
            ),
        );
    }
}

/// Central requests go entirely through the online system: a filing with a central-key request
/// needs a validly signed request document (no paper original is waited for).
pub fn check_document(
    drafts: &[RequestRecord],
    document: Option<&DocumentRecord>,
    errors: &mut Vec<Refusal>,
) {
    // Central keys made for remote signing and their accounts' recovery (unlock, re-enrol); a
    // recover request of an escrowed key (also key origin central) takes the paper path like
    // any other.
    if !drafts.iter().any(|d| {
        d.key_origin == KeyOrigin::Central && (d.kind == RequestKind::Issue || d.recovery.is_some())
    }) {
        return;
    }
    match document {
        Some(d) if d.valid => {}
        Some(d) => push(
            errors,
            (
                "document",
                format!(
                    "a central-key request needs a validly signed request document, and this one \
                 is not valid evidence ({}) (rule: central-signed-document)",
                    d.problem.as_deref().unwrap_or("invalid")
                ),
            ),
        ),
        None => push(
            errors,
            (
                "document",
                "a central-key request needs a validly signed request document; there is no paper \
             path (rule: central-signed-document)",
            ),
        ),
    }
}

fn push<M: Into<String>>(errors: &mut Vec<Refusal>, (field, message): (&'static str, M)) {
    errors.push((field, message.into()));
}
