//! `pkid credential add|list|remove`: an organisation's credentials for the enrollment
//! protocols. `est` is an HTTP Basic user whose generated password is kept only as Argon2id;
//! `cmp` is a generated shared secret sealed under the data key (the CMP server recomputes
//! the MAC, so it needs the secret itself). The secret is printed once, as the last line of
//! stdout. Every change is audited; a removal takes effect on the daemon's next request.

use super::{datadir_failure, out, Failure};
use crate::datadir;
use crate::ra::credentials;
use crate::store::credentials::cmp_seal_context;
use crate::store::{AuditEntry, CredentialKind, CredentialRecord, Outcome, StoreError};
use base64::Engine;
use clap::Subcommand;
use std::path::Path;
use zeroize::Zeroizing;

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

fn store_failure(e: StoreError) -> Failure {
    let code = match e {
        StoreError::NotFound(_) => 4,
        StoreError::DuplicateName(_) | StoreError::Changed(_) | StoreError::Conflict { .. } => 5,
        _ => 1,
    };
    Failure {
        message: e.to_string(),
        code,
    }
}

fn refused(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        code: 3,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A user name is a Basic user-id (no ':', RFC 7617) and a CMP senderKID: kept plain.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A generated secret: 24 random bytes as base64url (32 characters, 192 bits).
fn generate() -> Result<Zeroizing<String>, Failure> {
    let mut bytes = Zeroizing::new([0u8; 24]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| Failure {
        message: "random generator unavailable".into(),
        code: 1,
    })?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
    ))
}

/// Runs one `pkid credential` command.
pub(super) fn run(data: &Path, cmd: CredentialCommand, who: &str) -> Result<(), Failure> {
    match cmd {
        CredentialCommand::Add { org, kind, name } => {
            let kind = CredentialKind::parse(&kind).ok_or_else(|| refused("kind: est or cmp"))?;
            if !valid_name(&name) {
                return Err(refused(
                    "name: 1 to 64 letters, digits, '.', '_' or '-' (no ':')",
                ));
            }
            // CMP needs the data key to seal its secret; EST stores only a hash.
            let opened =
                datadir::open(data, kind == CredentialKind::Cmp).map_err(datadir_failure)?;
            let store = opened.store.clone();
            match store.organisation(&org).map_err(store_failure)? {
                Some(o) if o.deleted_at.is_none() => {}
                _ => {
                    return Err(Failure {
                        message: format!("no organisation {org:?}"),
                        code: 4,
                    })
                }
            }
            let secret = generate()?;
            let stored = match kind {
                CredentialKind::Est => credentials::hash_password(&secret)
                    .map_err(|e| Failure {
                        message: e.to_string(),
                        code: 1,
                    })?
                    .into_bytes(),
                CredentialKind::Cmp => {
                    let keys = opened.keys.as_ref().ok_or_else(|| Failure {
                        message: "the key backend is not loaded".into(),
                        code: 1,
                    })?;
                    let sealer = keys.sealer().map_err(|e| Failure {
                        message: format!("the data key: {e}"),
                        code: 1,
                    })?;
                    sealer
                        .seal(secret.as_bytes(), cmp_seal_context(&org, &name).as_bytes())
                        .map_err(|e| Failure {
                            message: format!("sealing the secret: {e}"),
                            code: 1,
                        })?
                }
            };
            let at = now();
            let record = CredentialRecord {
                id: 0,
                organisation: org.clone(),
                kind,
                name: name.clone(),
                secret: stored,
                created_at: at,
                created_by: who.into(),
            };
            let audit = AuditEntry {
                at,
                actor: who.into(),
                action: "credential.add".into(),
                target: format!("{org}/{}/{name}", kind.as_str()),
                outcome: Outcome::Success,
                detail: format!("kind={}", kind.as_str()),
            };
            store
                .add_credential(&record, &audit)
                .map_err(store_failure)?;
            let what = match kind {
                CredentialKind::Est => "EST user (HTTP Basic); password",
                CredentialKind::Cmp => "CMP shared secret (senderKID = name)",
            };
            out(&format!(
                "{org}: {} credential {name:?} created; shown once, not stored in clear:\n{what} follows\n{}\n",
                kind.as_str(),
                secret.as_str()
            ))
        }
        CredentialCommand::List { org } => {
            let opened = datadir::open(data, false).map_err(datadir_failure)?;
            let rows = opened
                .store
                .credentials(org.as_deref())
                .map_err(store_failure)?;
            let mut text = String::new();
            for r in rows {
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    r.organisation,
                    r.kind.as_str(),
                    r.name,
                    pkid_protocols::time::rfc3339(r.created_at),
                    r.created_by
                ));
            }
            out(&text)
        }
        CredentialCommand::Remove { org, kind, name } => {
            let kind = CredentialKind::parse(&kind).ok_or_else(|| refused("kind: est or cmp"))?;
            let opened = datadir::open(data, false).map_err(datadir_failure)?;
            let audit = AuditEntry {
                at: now(),
                actor: who.into(),
                action: "credential.remove".into(),
                target: format!("{org}/{}/{name}", kind.as_str()),
                outcome: Outcome::Success,
                detail: String::new(),
            };
            opened
                .store
                .remove_credential(&org, kind, &name, &audit)
                .map_err(store_failure)?;
            out(&format!(
                "{org}: {} credential {name:?} removed\n",
                kind.as_str()
            ))
        }
    }
}
