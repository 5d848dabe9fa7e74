//! `pkid audit verify | stamp | stamps`: the hash chain and the timestamps of its head (see
//! `docs/audit.md`).

use super::{datadir_failure, out, Failure};
use crate::audit_stamps::{self, LogVerdict, StampOutcome};
use crate::clock::{Clock, SystemClock};
use crate::datadir;
use crate::keys::KeyRole;
use der::Decode;
use pkid_protocols::time::rfc3339;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use x509_cert::Certificate;

/// Exit code of `pkid audit verify` when the chain or a stored timestamp of it is not intact:
/// distinct from every failure to run the check (1), so a monitor can tell "tampered" from
/// "could not look".
pub const EXIT_AUDIT_BROKEN: u8 = 6;

/// `pkid audit verify`: walks the chain, then checks every stored timestamp.
pub(super) fn verify(data: &Path) -> Result<(), Failure> {
    let opened = datadir::open(data, false).map_err(datadir_failure)?;
    let log = match audit_stamps::verify_log(opened.store.as_ref(), &tsa_certificate(data)?)? {
        LogVerdict::Broken(fault) => {
            return Err(Failure {
                message: fault.to_string(),
                code: EXIT_AUDIT_BROKEN,
            })
        }
        LogVerdict::Intact(log) => log,
    };
    match log.chain.head {
        Some(head) => out(&format!(
            "audit chain intact: {} entries, head #{} {}\n",
            log.chain.count, head.id, head.hash
        ))?,
        None => out("audit chain intact: 0 entries\n")?,
    }
    if let Some((id, gen_time)) = log.newest_stamp {
        out(&format!(
            "{} timestamps verified; the newest covers #{id} at {}\n",
            log.stamps,
            rfc3339(gen_time)
        ))?;
    }
    Ok(())
}

/// pkid's TSA certificate, `certs/tsa.crt`.
fn tsa_certificate(data: &Path) -> Result<Certificate, Failure> {
    let der = datadir::role_certificate(data, &KeyRole::Tsa).map_err(datadir_failure)?;
    Certificate::from_der(&der).map_err(|e| Failure {
        message: format!("certs/tsa.crt: {e}"),
        code: 1,
    })
}

/// `pkid audit stamp`: what the daemon does every `ra.audit_stamp_minutes`, now.
pub(super) fn stamp(data: &Path) -> Result<(), Failure> {
    let opened = datadir::open(data, true).map_err(datadir_failure)?;
    let keys = opened.keys.ok_or_else(|| Failure {
        message: "keys were not loaded".into(),
        code: 1,
    })?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tsa = crate::tsa::Tsa::open(
        &opened.config,
        keys.as_ref(),
        opened.store.clone(),
        clock.clone(),
        Arc::new(crate::metrics::Metrics::new()),
    )
    .map_err(|e| Failure {
        message: format!("timestamp authority: {e}"),
        code: 1,
    })?
    .ok_or_else(|| Failure {
        message: "the timestamp authority is disabled ([tsa] enabled = false)".into(),
        code: 3,
    })?;
    match audit_stamps::stamp_head(opened.store.as_ref(), &tsa, clock.now())? {
        StampOutcome::Stamped(s) => out(&format!(
            "stamped audit entry #{} {}\n",
            s.audit_id, s.head_hash
        )),
        StampOutcome::Unmoved(head) => out(&format!(
            "audit entry #{} {} is already stamped\n",
            head.id, head.hash
        )),
        StampOutcome::EmptyLog => out("the audit log is empty; nothing to stamp\n"),
    }
}

/// `pkid audit stamps`: lists the stamps, or writes one token to `out_file`.
pub(super) fn stamps(
    data: &Path,
    id: Option<u64>,
    out_file: Option<PathBuf>,
) -> Result<(), Failure> {
    let opened = datadir::open(data, false).map_err(datadir_failure)?;
    let stamps = opened.store.audit_stamps()?;
    let Some(path) = out_file else {
        for s in stamps
            .iter()
            .filter(|s| id.is_none_or(|id| s.audit_id == id))
        {
            out(&format!(
                "#{:<8} {}  head {}  digest {}\n",
                s.audit_id,
                rfc3339(s.at),
                s.head_hash,
                hex::encode(audit_stamps::imprint_of(&s.head_hash))
            ))?;
        }
        return Ok(());
    };
    let chosen = match id {
        Some(id) => stamps.iter().find(|s| s.audit_id == id),
        None => stamps.last(),
    }
    .ok_or_else(|| Failure {
        message: match id {
            Some(id) => format!("no timestamp of audit entry #{id}"),
            None => "no timestamp of the audit chain yet (pkid audit stamp)".into(),
        },
        code: 4,
    })?;
    std::fs::write(&path, &chosen.token).map_err(|e| Failure {
        message: format!("{}: {e}", path.display()),
        code: 1,
    })?;
    out(&format!(
        "wrote the timestamp of audit entry #{} to {}; digest {}\n",
        chosen.audit_id,
        path.display(),
        hex::encode(audit_stamps::imprint_of(&chosen.head_hash))
    ))
}
