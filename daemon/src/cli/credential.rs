//! `pkid credential add|list|remove`: an organisation's credentials for the enrollment
//! protocols. `est` is an HTTP Basic user whose generated password is kept only as Argon2id;
//! `cmp` is a generated shared secret sealed under the data key (the CMP server recomputes
//! the MAC, so it needs the secret itself). The secret is printed once, as the last line of
//! stdout. Every change is audited; a removal takes effect on the daemon's next request.

use super::out;
use super::ra::{desk_failure, open_desk};
use super::Failure;
use crate::ra::desk::{CredentialInput, RequestDesk};
use clap::Subcommand;
use std::path::Path;

/// `pkid credential …`
#[derive(Subcommand, Debug)]
pub enum CredentialCommand {
    /// Creates a credential and prints its secret once, as the last line of stdout.
    Add {
        /// The organisation (pkid org add).
        #[arg(long)]
        org: String,
        /// est (HTTP Basic on EST) or cmp (a CMP shared secret).
        #[arg(long, value_parser = ["est", "cmp"])]
        kind: String,
        /// The user name (est) or sender reference (cmp): 1 to 64 letters, digits, '.', '_', '-'.
        #[arg(long)]
        name: String,
    },
    /// Lists credentials (never their secrets).
    List {
        /// Only this organisation's.
        #[arg(long)]
        org: Option<String>,
    },
    /// Removes a credential: it stops authenticating at once.
    Remove {
        /// The organisation.
        #[arg(long)]
        org: String,
        /// est or cmp.
        #[arg(long, value_parser = ["est", "cmp"])]
        kind: String,
        /// The name.
        #[arg(long)]
        name: String,
    },
}

/// Runs one `pkid credential` command, through the desk the JSON API uses (as the console: a
/// CA admin under `--actor`).
pub(super) fn run(data: &Path, cmd: CredentialCommand, who: &str) -> Result<(), Failure> {
    let me = RequestDesk::console(who);
    match cmd {
        CredentialCommand::Add { org, kind, name } => {
            // CMP needs the data key to seal its secret; EST stores only a hash.
            let desk = open_desk(data, kind == "cmp")?;
            let (view, secret) = desk
                .add_enrollment_credential(&me, &org, &CredentialInput { kind, name })
                .map_err(desk_failure)?;
            let what = match view.kind {
                "est" => "EST user (HTTP Basic); password",
                _ => "CMP shared secret (senderKID = name)",
            };
            out(&format!(
                "{org}: {} credential {:?} created; shown once, not stored in clear:\n{what} follows\n{}\n",
                view.kind,
                view.name,
                secret.as_str()
            ))
        }
        CredentialCommand::List { org } => {
            let desk = open_desk(data, false)?;
            let mut text = String::new();
            for r in desk
                .enrollment_credentials(&me, org.as_deref())
                .map_err(desk_failure)?
            {
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    r.organisation, r.kind, r.name, r.created, r.created_by
                ));
            }
            out(&text)
        }
        CredentialCommand::Remove { org, kind, name } => {
            let desk = open_desk(data, false)?;
            desk.remove_enrollment_credential(&me, &org, &kind, &name)
                .map_err(desk_failure)?;
            out(&format!("{org}: {kind} credential {name:?} removed\n"))
        }
    }
}
