//! `pkid crl generate | show`.

use super::{out, Failure};
use crate::crl::{crl_url, CrlKey, CrlService, CrlServiceError};
use crate::datadir;
use clap::Subcommand;
use pkid_protocols::time::rfc3339;
use std::path::Path;
use std::sync::Arc;

/// `pkid crl …`
#[derive(Subcommand, Debug)]
pub enum CrlCommand {
    /// Generate, sign and store CRLs now: the complete CRL (and the delta, when enabled) of
    /// every scope. A running daemon serves them within seconds.
    Generate {
        /// Only this issuer (root, issuing).
        #[arg(long)]
        issuer: Option<String>,
    },
    /// List the stored CRLs, or print one as PEM.
    Show {
        /// Only this issuer (root, issuing).
        #[arg(long)]
        issuer: Option<String>,
        /// Only this partition.
        #[arg(long)]
        shard: Option<u32>,
        /// The delta CRL rather than the complete one (with --pem).
        #[arg(long)]
        delta: bool,
        /// Print the CRL as PEM (default: the issuing CA's complete CRL).
        #[arg(long)]
        pem: bool,
    },
}

fn failure(e: CrlServiceError) -> Failure {
    let code = match &e {
        CrlServiceError::UnknownIssuer(_) => 3,
        CrlServiceError::Store(_) | CrlServiceError::Build(_) | CrlServiceError::Internal(_) => 1,
    };
    Failure {
        message: e.to_string(),
        code,
    }
}

fn check_issuer(issuer: &Option<String>) -> Result<(), Failure> {
    match issuer.as_deref() {
        None | Some(crate::ca::ROOT) | Some(crate::ca::ISSUING) => Ok(()),
        Some(other) => Err(failure(CrlServiceError::UnknownIssuer(other.to_string()))),
    }
}

/// Runs a `pkid crl` command.
pub(super) fn run(data: &Path, cmd: CrlCommand, who: &str) -> Result<(), Failure> {
    match cmd {
        CrlCommand::Generate { issuer } => {
            check_issuer(&issuer)?;
            let opened = datadir::open(data, true)?;
            let authority = opened.authority.ok_or_else(|| Failure {
                message: "keys were not loaded".into(),
                code: 1,
            })?;
            let config = opened.config.clone();
            let service = Arc::new(CrlService::new(
                authority,
                config.crl.clone(),
                &config.server.public_url,
                who,
                None,
            ));
            let made = service.generate_all(issuer.as_deref()).map_err(failure)?;
            for (key, crl) in made {
                out(&format!(
                    "{:<18} number={:<6} entries={:<8} bytes={:<10} thisUpdate={} nextUpdate={}  {}\n",
                    key.label(),
                    crl.number,
                    crl.entries,
                    crl.der.len(),
                    rfc3339(crl.this_update),
                    rfc3339(crl.next_update),
                    crl_url(&config.server.public_url, &key.issuer, key.shard, key.delta)
                ))?;
            }
            Ok(())
        }
        CrlCommand::Show {
            issuer,
            shard,
            delta,
            pem,
        } => {
            check_issuer(&issuer)?;
            let opened = datadir::open(data, false)?;
            if pem {
                let name = issuer.as_deref().unwrap_or(crate::ca::ISSUING);
                let label = CrlKey::new(name, shard, delta).label();
                let stored = opened
                    .store
                    .stored_crl(name, shard, delta)?
                    .ok_or_else(|| Failure {
                        message: format!(
                            "no {label} CRL is stored; run `pkid crl generate` or start the daemon"
                        ),
                        code: 4,
                    })?;
                return out(&pkid_protocols::crl::crl_pem(&stored.der));
            }
            for i in opened.store.crl_infos()? {
                if issuer.as_deref().is_some_and(|n| n != i.issuer)
                    || shard.is_some_and(|s| i.shard != Some(s))
                    || (delta && !i.delta)
                {
                    continue;
                }
                out(&format!(
                    "{:<18} number={:<6} {}entries={:<8} bytes={:<10} thisUpdate={} nextUpdate={}\n",
                    CrlKey::new(&i.issuer, i.shard, i.delta).label(),
                    i.number,
                    i.base_number
                        .map(|b| format!("base={b:<6} "))
                        .unwrap_or_default(),
                    i.entries,
                    i.size,
                    rfc3339(i.this_update),
                    rfc3339(i.next_update)
                ))?;
            }
            Ok(())
        }
    }
}
