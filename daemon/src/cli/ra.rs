//! `pkid org`, `pkid operator`, `pkid request`: the registration authority from the command
//! line, on the same data directory and through the same desk as the JSON API. The command
//! line acts as a `ca-admin` under `--actor`.

use super::{datadir_failure, out, read_file, Failure};
use crate::datadir;
use crate::ra::desk::{
    ActionInput, DeskError, ListQuery, OperatorInput, OrganisationInput, RequestDesk, RequestView,
};
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `pkid org …`
#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Registers an organisation.
    Add {
        /// Id (slug: lower-case letters, digits, '-').
        #[arg(long)]
        id: String,
        /// Legal name (Vietnamese, as registered).
        #[arg(long)]
        name: String,
        /// The organisation above it in the delegation tree.
        #[arg(long)]
        parent: Option<String>,
        /// Province code.
        #[arg(long)]
        province: Option<String>,
        /// Contact email.
        #[arg(long)]
        email: Option<String>,
        /// Registry or tax id.
        #[arg(long)]
        registry_id: Option<String>,
        /// Profiles it may request (comma-separated; default: all).
        #[arg(long, value_delimiter = ',')]
        profiles: Vec<String>,
        /// education, training, health or other.
        #[arg(long)]
        sector: Option<String>,
    },
    /// Lists organisations.
    List,
}

/// `pkid operator …`
#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Registers an operator.
    Add {
        /// Login id.
        #[arg(long)]
        id: String,
        /// Full name.
        #[arg(long)]
        name: String,
        /// org-officer, ra-officer, auditor or ca-admin.
        #[arg(long)]
        role: String,
        /// The organisation (org-officers).
        #[arg(long)]
        org: Option<String>,
        /// all, province:CODE or org:ID.
        #[arg(long)]
        scope: Option<String>,
        /// Email.
        #[arg(long)]
        email: Option<String>,
    },
    /// Lists operators.
    List,
    /// Prints a new bearer token, once, as the last line of stdout.
    Token {
        /// Operator id.
        #[arg(long)]
        id: String,
    },
    /// Revokes every bearer token of an operator.
    RevokeTokens {
        /// Operator id.
        #[arg(long)]
        id: String,
    },
    /// Sets the portal password, read from stdin (one line).
    Password {
        /// Operator id.
        #[arg(long)]
        id: String,
    },
    /// Sets a new TOTP second factor and prints its otpauth:// URI.
    Totp {
        /// Operator id.
        #[arg(long)]
        id: String,
    },
    /// Registers a certificate (PEM or DER) for TLS client authentication.
    AddCert {
        /// Operator id.
        #[arg(long)]
        id: String,
        /// The certificate file.
        #[arg(long)]
        cert: PathBuf,
    },
    /// Removes an operator: its tokens and certificates stop working at once.
    Remove {
        /// Operator id.
        #[arg(long)]
        id: String,
    },
}

/// `pkid issuance …`: pausing issuance, and the dual-control actions on issuers.
#[derive(Subcommand, Debug)]
pub enum IssuanceCommand {
    /// Pauses new issuance by an issuer at once.
    Pause {
        /// The issuer.
        #[arg(long)]
        issuer: String,
        /// Why (shown to every request refused meanwhile).
        #[arg(long)]
        reason: String,
    },
    /// Asks to resume a paused issuer (takes effect when a second CA admin confirms).
    Resume {
        /// The issuer.
        #[arg(long)]
        issuer: String,
    },
    /// Asks to revoke an issuer's CA certificate (takes effect when a second CA admin confirms).
    RevokeIssuer {
        /// The issuer.
        #[arg(long)]
        issuer: String,
        /// The revocation reason (cACompromise, keyCompromise, cessationOfOperation, …).
        #[arg(long)]
        reason: String,
    },
    /// Lists the pauses in force and the actions waiting for confirmation.
    List,
    /// Confirms a waiting action, as a CA admin other than the one who asked (`--actor`).
    Confirm {
        /// The action's id.
        id: i64,
    },
}

/// `pkid issuance …`.
pub(super) fn issuance(data: &Path, cmd: IssuanceCommand, who: &str) -> Result<(), Failure> {
    let needs_keys = matches!(cmd, IssuanceCommand::Confirm { .. });
    let desk = open_desk(data, needs_keys)?;
    let me = RequestDesk::console(who);
    match cmd {
        IssuanceCommand::Pause { issuer, reason } => {
            json(&desk.pause(&me, &issuer, &reason).map_err(desk_failure)?)
        }
        IssuanceCommand::Resume { issuer } => {
            json(&desk.propose_resume(&me, &issuer).map_err(desk_failure)?)
        }
        IssuanceCommand::RevokeIssuer { issuer, reason } => json(
            &desk
                .propose_issuer_revocation(&me, &issuer, &reason)
                .map_err(desk_failure)?,
        ),
        IssuanceCommand::List => json(&serde_json::json!({
            "pauses": desk.active_pauses(&me).map_err(desk_failure)?,
            "pending": desk.pending_confirmations(&me).map_err(desk_failure)?,
        })),
        IssuanceCommand::Confirm { id } => json(&desk.confirm(&me, id).map_err(desk_failure)?),
    }
}

/// `pkid report` options.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The subtree's root organisation (default: every organisation).
    #[arg(long)]
    pub org: Option<String>,
    /// First day, YYYY-MM-DD (Asia/Ho_Chi_Minh).
    #[arg(long)]
    pub from: String,
    /// Last day, inclusive.
    #[arg(long)]
    pub to: String,
    /// json or csv.
    #[arg(long, default_value = "json")]
    pub format: String,
}

/// `pkid report`.
pub(super) fn report(data: &Path, a: ReportArgs, who: &str) -> Result<(), Failure> {
    let desk = open_desk(data, false)?;
    let me = RequestDesk::console(who);
    let q = crate::ra::desk::ReportQuery {
        organisation: a.org,
        from: a.from,
        to: a.to,
        format: Some(a.format.clone()),
    };
    let report = desk.report(&me, &q).map_err(desk_failure)?;
    if a.format == "csv" {
        out(&report.to_csv())
    } else {
        json(&report)
    }
}

/// A request id and an optional reason.
#[derive(Args, Debug)]
pub struct RequestAction {
    /// Request id.
    pub id: i64,
    /// Why (required to return or reject).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `pkid request …`
#[derive(Subcommand, Debug)]
pub enum RequestCommand {
    /// Lists requests, newest first (JSON, one page).
    List {
        /// Only this state.
        #[arg(long)]
        state: Option<String>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only this organisation.
        #[arg(long)]
        org: Option<String>,
        /// Only overdue requests.
        #[arg(long)]
        overdue: bool,
        /// Page size.
        #[arg(long)]
        limit: Option<usize>,
        /// The `next` cursor of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Shows one request (JSON) with its history.
    Show {
        /// Request id.
        id: i64,
    },
    /// Accepts a submitted request (the deadline starts).
    Accept(RequestAction),
    /// Approves an accepted request and fulfils it through the CA.
    Approve(RequestAction),
    /// Returns a request for correction (stops the clock).
    Return(RequestAction),
    /// Rejects a request.
    Reject(RequestAction),
    /// Records that the paper original was handed in.
    OriginalReceived(RequestAction),
    /// Exports everything held about one subscriber (JSON), for a data subject's request.
    Export {
        /// The subscriber's official email.
        #[arg(long)]
        email: String,
    },
    /// Erases now the personal fields of requests closed longer than `[ra] retention_days`
    /// ago (the daemon does it every hour).
    EraseExpired,
}

pub(super) fn desk_failure(e: DeskError) -> Failure {
    // Exit codes as for certificates: 1 our side, 3 refused input, 4 not found, 5 conflict,
    // 7 forbidden (6 is a broken audit chain).
    let code = match &e {
        DeskError::Invalid(_) | DeskError::TooLarge(_) => 3,
        DeskError::NotFound(_) => 4,
        DeskError::Conflict(_) => 5,
        DeskError::Forbidden(_) | DeskError::Unauthenticated => 7,
        DeskError::Unavailable(_) | DeskError::Internal(_) => 1,
    };
    let message = match e {
        DeskError::Invalid(errors) => errors
            .iter()
            .map(|f| {
                let row = f.row.map(|r| format!("row {r}: ")).unwrap_or_default();
                if f.field.is_empty() {
                    format!("{row}{}", f.message)
                } else {
                    format!("{row}{}: {}", f.field, f.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        e => e.to_string(),
    };
    Failure { message, code }
}

/// Opens the desk on a data directory; `with_keys` loads the CA (to fulfil) and the data key.
pub(super) fn open_desk(data: &Path, with_keys: bool) -> Result<RequestDesk, Failure> {
    let opened = datadir::open(data, with_keys).map_err(datadir_failure)?;
    RequestDesk::open(
        &opened.config,
        opened.store.clone(),
        opened.authority.clone(),
        opened.keys.as_deref(),
        None,
        Arc::new(crate::clock::SystemClock),
    )
    .map_err(|e| Failure {
        message: e.to_string(),
        code: 1,
    })
}

fn json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let mut s = serde_json::to_string_pretty(value).map_err(|e| Failure {
        message: e.to_string(),
        code: 1,
    })?;
    s.push('\n');
    out(&s)
}

/// `pkid org …`.
pub(super) fn org(data: &Path, cmd: OrgCommand, who: &str) -> Result<(), Failure> {
    let desk = open_desk(data, false)?;
    let me = RequestDesk::console(who);
    match cmd {
        OrgCommand::Add {
            id,
            name,
            parent,
            province,
            email,
            registry_id,
            profiles,
            sector,
        } => {
            let view = desk
                .add_organisation(
                    &me,
                    OrganisationInput {
                        id,
                        name,
                        registry_id,
                        province,
                        parent,
                        email,
                        profiles,
                        sector,
                    },
                )
                .map_err(desk_failure)?;
            out(&format!("{}\t{}\n", view.id, view.name))
        }
        OrgCommand::List => {
            let mut text = String::new();
            for o in desk.organisations(&me).map_err(desk_failure)? {
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}\n",
                    o.id,
                    o.province.as_deref().unwrap_or("-"),
                    o.parent.as_deref().unwrap_or("-"),
                    o.name
                ));
            }
            out(&text)
        }
    }
}

/// `pkid operator …`.
pub(super) fn operator(data: &Path, cmd: OperatorCommand, who: &str) -> Result<(), Failure> {
    let needs_key = matches!(cmd, OperatorCommand::Totp { .. });
    let desk = open_desk(data, needs_key)?;
    let me = RequestDesk::console(who);
    match cmd {
        OperatorCommand::Add {
            id,
            name,
            role,
            org,
            scope,
            email,
        } => {
            let view = desk
                .add_operator(
                    &me,
                    OperatorInput {
                        id,
                        name,
                        role,
                        organisation: org,
                        scope,
                        email,
                    },
                )
                .map_err(desk_failure)?;
            out(&format!("{}\t{}\t{}\n", view.id, view.role, view.scope))
        }
        OperatorCommand::List => {
            let mut text = String::new();
            for o in desk.operators(&me).map_err(desk_failure)? {
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    o.id,
                    o.role,
                    o.scope,
                    o.organisation.as_deref().unwrap_or("-"),
                    o.name
                ));
            }
            out(&text)
        }
        OperatorCommand::Token { id } => {
            let token = desk.issue_token(&me, &id).map_err(desk_failure)?;
            out(&format!("{}\n", *token))
        }
        OperatorCommand::RevokeTokens { id } => desk.revoke_tokens(&me, &id).map_err(desk_failure),
        OperatorCommand::Password { id } => {
            let mut line = zeroize::Zeroizing::new(String::new());
            std::io::stdin()
                .lock()
                .take(4096)
                .read_to_string(&mut line)
                .map_err(|e| Failure {
                    message: format!("reading the password from stdin: {e}"),
                    code: 3,
                })?;
            let password = line.lines().next().unwrap_or_default();
            desk.set_password(&me, &id, password).map_err(desk_failure)
        }
        OperatorCommand::Totp { id } => {
            let uri = desk.set_totp(&me, &id).map_err(desk_failure)?;
            out(&format!("{}\n", *uri))
        }
        OperatorCommand::AddCert { id, cert } => {
            let bytes = read_file(&cert)?;
            let pem = rustls_pemfile::certs(&mut bytes.as_slice())
                .next()
                .and_then(Result::ok)
                .map(|c| c.to_vec());
            let der = pem.unwrap_or(bytes);
            let fingerprint = desk
                .add_operator_certificate(&me, &id, &der)
                .map_err(desk_failure)?;
            out(&format!("sha256:{fingerprint}\n"))
        }
        OperatorCommand::Remove { id } => desk.remove_operator(&me, &id).map_err(desk_failure),
    }
}

/// `pkid request …`.
pub(super) fn request(data: &Path, cmd: RequestCommand, who: &str) -> Result<(), Failure> {
    // Approving fulfils (the CA key); showing and exporting open sealed fields (the data key).
    let needs_keys = matches!(
        cmd,
        RequestCommand::Approve(_) | RequestCommand::Show { .. } | RequestCommand::Export { .. }
    );
    let desk = open_desk(data, needs_keys)?;
    let me = RequestDesk::console(who);
    let act = |a: RequestAction, action: &str| -> Result<RequestView, Failure> {
        desk.act(
            &me,
            a.id,
            &ActionInput {
                action: action.into(),
                reason: a.reason,
                corrected: None,
            },
        )
        .map_err(desk_failure)
    };
    match cmd {
        RequestCommand::List {
            state,
            kind,
            org,
            overdue,
            limit,
            cursor,
        } => json(
            &desk
                .list(
                    &me,
                    &ListQuery {
                        state,
                        kind,
                        organisation: org,
                        overdue: overdue.then_some(true),
                        cursor,
                        limit,
                        order: None,
                    },
                )
                .map_err(desk_failure)?,
        ),
        RequestCommand::Show { id } => {
            let view = desk.show(&me, id).map_err(desk_failure)?;
            let events = desk.history(&me, id).map_err(desk_failure)?;
            json(&serde_json::json!({ "request": view, "events": events }))
        }
        RequestCommand::Accept(a) => json(&act(a, "accept")?),
        RequestCommand::Approve(a) => json(&act(a, "approve")?),
        RequestCommand::Return(a) => json(&act(a, "return")?),
        RequestCommand::Reject(a) => json(&act(a, "reject")?),
        RequestCommand::OriginalReceived(a) => json(&act(a, "original-received")?),
        RequestCommand::Export { email } => {
            let rows = desk.export_subscriber(&me, &email).map_err(desk_failure)?;
            let rows: Vec<_> = rows
                .into_iter()
                .map(
                    |(request, events)| serde_json::json!({ "request": request, "events": events }),
                )
                .collect();
            json(&rows)
        }
        RequestCommand::EraseExpired => {
            let n = desk.erase_expired(&me).map_err(desk_failure)?;
            out(&format!("{n} requests erased\n"))
        }
    }
}
