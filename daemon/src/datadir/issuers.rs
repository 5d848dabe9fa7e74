//! Issuers beyond the two `pkid init` makes: `pkid ca add-issuer`, loading them, and the OCSP
//! responder of every issuer.
//!
//! ```text
//! add-issuer NAME ─▶ keys issuer-NAME, ocsp-NAME (configured backend)
//!                 ─▶ CA certificate, signed by the root          (stored, announced)
//!                 ─▶ responder certificate, signed by NAME ─┐
//!                 ─▶ registry row + that certificate, one commit ─▶ followers see NAME
//!                 ─▶ certs/NAME.crt, certs/NAME-ocsp.crt (for operators)
//!                 ─▶ its CMP responder: key cmp-NAME, certs/cmp-NAME.crt (datadir::cmp_responder)
//! ```
//!
//! The issuing CA `pkid init` made keeps its files (`certs/issuing.crt`, `certs/ocsp.crt`) and
//! role keys; every added issuer is a row of the store's issuer registry, its certificates rows
//! of the certificate store. A running daemon takes an added issuer on when the follower
//! delivers a change for an issuer it does not know (`app`'s issuer watcher).

use super::{certs_dir, read_cert, write_public, DataDirError, KeyRole, Opened, ISSUING, ROOT};
use crate::ca::{Authority, CaError, Issuance, Issued, Issuer};
use crate::keys::{KeyBackend, KeyError, Signer};
use crate::metrics::{MeteredSigner, Metrics};
use crate::ocsp::ServedIssuer;
use crate::store::{AuditEntry, IssuerRecord, Outcome, StatusChange, Store};
use der::Decode;
use pkid_protocols::profile::Profile;
use pkid_protocols::revocation::CrlReason;
use pkid_protocols::x509::certificate_pem;
use std::path::Path;
use std::sync::Arc;
use x509_cert::Certificate;

/// Longest issuer name: it is a URL path segment and part of key labels.
const MAX_NAME_LEN: usize = 32;
/// Names that would collide with a key role's file or label, or with the issuers `init` makes.
const RESERVED: [&str; 5] = [ROOT, ISSUING, "ocsp", "tsa", "tls"];

/// Whether `name` can name an issuer: 1 to 32 lowercase ASCII letters, digits and `-`, starting
/// with a letter, not ending with `-` or `-delta` (`/crl/NAME-delta.crl` is NAME's delta CRL),
/// and not a reserved name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let starts = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !ok_chars
        || !starts
        || name.ends_with('-')
        || name.ends_with("-delta")
    {
        return Err(format!(
            "issuer name {name:?}: use 1 to {MAX_NAME_LEN} lowercase letters, digits and '-', \
             starting with a letter (e.g. health, giao-duc), not ending with '-' or '-delta'"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!("issuer name {name:?} is reserved"));
    }
    Ok(())
}

/// The certificate files of an added issuer, for operators (the store is the record).
fn files(data: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = certs_dir(data);
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}-ocsp.crt")),
    )
}

/// What `pkid ca add-issuer` made.
#[derive(Debug)]
pub struct AddedIssuer {
    /// The issuer's CA certificate.
    pub certificate: Issued,
    /// Its delegated OCSP responder certificate.
    pub responder: Issued,
}

/// A key for `role`: generated, or the one an interrupted earlier attempt left behind (the name
/// was never registered, so no certificate of a registered issuer uses it).
fn fresh_or_left(
    backend: &dyn KeyBackend,
    role: &KeyRole,
    key_type: pkid_protocols::KeyType,
) -> Result<Arc<dyn Signer>, CaError> {
    match backend.generate(role, key_type) {
        Err(KeyError::Exists(_)) => {
            tracing::warn!(key = %role, "reusing the key an interrupted add-issuer left");
            backend.load(role)
        }
        other => other,
    }
    .map_err(|e| match e {
        KeyError::Unavailable(m) => CaError::Unavailable(m),
        other => CaError::Internal(other.to_string()),
    })
}

/// `pkid ca add-issuer`: a new issuing CA under the root, with its own OCSP responder.
pub fn add_issuer(
    data: &Path,
    name: &str,
    subject: &str,
    responder_subject: Option<&str>,
    days: Option<u32>,
    actor: &str,
) -> Result<AddedIssuer, DataDirError> {
    let opened = super::open(data, true)?;
    let (Some(authority), Some(backend)) = (opened.authority.clone(), opened.keys.clone()) else {
        return Err(DataDirError::State("keys were not loaded".into()));
    };
    let result = make_issuer(
        &opened,
        &authority,
        backend.as_ref(),
        name,
        subject,
        responder_subject,
        days,
        actor,
    );
    if let Err(e) = &result {
        let entry = AuditEntry {
            at: authority.now(),
            actor: actor.into(),
            action: "ca.add-issuer".into(),
            target: name.into(),
            outcome: e.outcome(),
            detail: e.to_string(),
        };
        if let Err(audit_err) = opened.store.audit(&entry) {
            tracing::error!(error = %audit_err, "could not write audit record");
        }
    }
    let added = result?;
    let (ca_file, responder_file) = files(data, name);
    write_public(&ca_file, &certificate_pem(&added.certificate.der))?;
    write_public(&responder_file, &certificate_pem(&added.responder.der))?;
    // Its CMP responder (certs/cmp-NAME.crt). Should this fail, the daemon makes it on start.
    let issuer = Issuer::new(
        name,
        added.certificate.der.clone(),
        backend.load(&KeyRole::Issuer(name.into()))?,
        &opened.config.server.public_url,
        true,
    )?;
    super::cmp_responder::cmp_responder(data, &authority, backend.as_ref(), &issuer, None, actor)?;
    Ok(added)
}

#[allow(clippy::too_many_arguments)]
fn make_issuer(
    opened: &Opened,
    authority: &Authority,
    backend: &dyn KeyBackend,
    name: &str,
    subject: &str,
    responder_subject: Option<&str>,
    days: Option<u32>,
    actor: &str,
) -> Result<AddedIssuer, CaError> {
    check_name(name).map_err(CaError::Refused)?;
    if authority.has_issuer(name) {
        return Err(CaError::Conflict(format!("issuer {name:?} already exists")));
    }
    let config = &opened.config;
    let subject =
        pkid_protocols::name::parse(subject).map_err(|e| CaError::Refused(e.to_string()))?;
    let responder_subject = match responder_subject {
        Some(s) => pkid_protocols::name::parse(s),
        None => {
            let cn = pkid_protocols::name::common_name(&subject).unwrap_or_else(|| name.into());
            pkid_protocols::name::with_common_name(&subject, &format!("{cn} OCSP Responder"))
        }
    }
    .map_err(|e| CaError::Refused(e.to_string()))?;
    let days = days.unwrap_or(config.ca.issuing_validity_days);
    let root = authority
        .issuer(ROOT)
        .ok_or_else(|| CaError::Internal("the root CA is not loaded".into()))?;
    let kt = config.keys.algorithm;
    let ca_role = KeyRole::Issuer(name.into());
    let responder_role = KeyRole::Responder(name.into());
    let ca_key = fresh_or_left(backend, &ca_role, kt)?;
    let responder_key = fresh_or_left(backend, &responder_role, kt)?;

    let ca_profile = Profile::issuing_ca(days);
    let certificate = authority.sign_certificate(
        root.signing(),
        Issuance {
            profile: &ca_profile,
            profile_name: &ca_profile.name,
            subject,
            public_key: ca_key.public_key().clone(),
            days,
            subject_alt_name: None,
            replaces: None,
        },
    )?;
    let issuer = Issuer::new(
        name,
        certificate.der.clone(),
        ca_key,
        &config.server.public_url,
        true,
    )?;
    let rdays = config.ca.responder_validity_days;
    let responder_profile = Profile::ocsp_responder(rdays);
    let now = authority.now();
    let store = opened.store.clone();
    let mut register = |serial: &str, der: &[u8]| {
        let record = IssuerRecord {
            name: name.into(),
            certificate_serial: certificate.serial.clone(),
            responder_serial: serial.into(),
            key_name: ca_role.name().into_owned(),
            responder_key_name: responder_role.name().into_owned(),
            created_at: now,
        };
        let entry = AuditEntry {
            at: now,
            actor: actor.into(),
            action: "ca.add-issuer".into(),
            target: name.into(),
            outcome: Outcome::Success,
            detail: format!(
                "certificate={} responder={serial} backend={}",
                certificate.serial,
                backend.describe()
            ),
        };
        store.register_issuer(&record, der, &entry)
    };
    let responder = authority.sign_certificate_stored_by(
        issuer.signing(),
        Issuance {
            profile: &responder_profile,
            profile_name: &responder_profile.name,
            subject: responder_subject,
            public_key: responder_key.public_key().clone(),
            days: rdays,
            subject_alt_name: None,
            replaces: None,
        },
        &mut register,
    );
    let responder = match responder {
        Ok(r) => r,
        Err(e) => {
            // The CA certificate exists but the issuer was not registered: end it, so no
            // unregistered CA stays valid. The keys stay; a retry with this name reuses them.
            let change = StatusChange::Revoke {
                reason: CrlReason::CessationOfOperation,
                at: now,
                invalidity_date: None,
            };
            let entry = AuditEntry {
                at: now,
                actor: actor.into(),
                action: "cert.revoke".into(),
                target: certificate.serial.clone(),
                outcome: Outcome::Success,
                detail: format!("reason=cessationOfOperation (issuer {name} not registered: {e})"),
            };
            if let Err(revoke_err) = opened
                .store
                .change_status(&certificate.serial, change, &entry)
            {
                tracing::error!(error = %revoke_err, serial = %certificate.serial, "could not revoke the unregistered CA certificate");
            }
            return Err(e);
        }
    };
    Ok(AddedIssuer {
        certificate,
        responder,
    })
}

/// An issuer's certificate from the store, by serial.
fn stored_certificate(store: &dyn Store, serial: &str) -> Result<Vec<u8>, DataDirError> {
    store
        .certificate(serial)?
        .and_then(|r| r.der)
        .ok_or_else(|| DataDirError::State(format!("certificate {serial} is not stored")))
}

/// A loaded issuer's key, counted in `metrics` when given.
fn load_key(
    backend: &dyn KeyBackend,
    role: &KeyRole,
    metrics: Option<&Arc<Metrics>>,
) -> Result<Arc<dyn Signer>, DataDirError> {
    let signer = backend.load(role)?;
    Ok(match metrics {
        Some(m) => MeteredSigner::wrap(signer, &role.name(), m.clone()),
        None => signer,
    })
}

/// The registered issuers, loaded (certificate from the store, key from the backend).
pub fn registered(
    store: &dyn Store,
    backend: &dyn KeyBackend,
    public_url: &str,
    metrics: Option<&Arc<Metrics>>,
    records: &[IssuerRecord],
) -> Result<Vec<Issuer>, DataDirError> {
    records
        .iter()
        .map(|r| {
            let der = stored_certificate(store, &r.certificate_serial)?;
            let key = load_key(backend, &KeyRole::Issuer(r.name.clone()), metrics)?;
            Ok(Issuer::new(&r.name, der, key, public_url, true)?)
        })
        .collect()
}

/// The OCSP responder of one issuer: the init-made issuing CA's is `certs/ocsp.crt` with the
/// `ocsp` key; an added issuer's is in the registry.
pub fn responder(
    data: &Path,
    store: &dyn Store,
    backend: &dyn KeyBackend,
    issuer: &Issuer,
    metrics: Option<&Arc<Metrics>>,
) -> Result<ServedIssuer, DataDirError> {
    let (der, role) = if issuer.name == ISSUING {
        (read_cert(data, &KeyRole::Ocsp)?, KeyRole::Ocsp)
    } else {
        let record = store
            .issuers()?
            .into_iter()
            .find(|r| r.name == issuer.name)
            .ok_or_else(|| {
                DataDirError::State(format!("issuer {} is not registered", issuer.name))
            })?;
        (
            stored_certificate(store, &record.responder_serial)?,
            KeyRole::Responder(issuer.name.clone()),
        )
    };
    let responder = Certificate::from_der(&der).map_err(|e| {
        DataDirError::State(format!("{} OCSP responder certificate: {e}", issuer.name))
    })?;
    Ok(ServedIssuer {
        name: issuer.name.clone(),
        certificate: issuer.certificate.clone(),
        responder,
        signer: load_key(backend, &role, metrics)?,
    })
}

/// One row of `pkid ca list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerRow {
    /// Name.
    pub name: String,
    /// The issuer that signed its certificate (`None` for the self-signed root).
    pub parent: Option<String>,
    /// Its CA certificate's status (`valid`, `revoked`, …; `expired` past notAfter).
    pub status: String,
    /// notAfter, Unix seconds.
    pub not_after: u64,
    /// Subject, RFC 4514.
    pub subject: String,
}

/// Every issuer of the data directory, the root first, without loading any key.
pub fn list(data: &Path) -> Result<Vec<IssuerRow>, DataDirError> {
    let opened = super::open(data, false)?;
    let store = opened.store.as_ref();
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    let mut certs = vec![
        (ROOT.to_string(), read_cert(data, &KeyRole::Root)?),
        (ISSUING.to_string(), read_cert(data, &KeyRole::Issuing)?),
    ];
    for r in store.issuers()? {
        certs.push((
            r.name.clone(),
            stored_certificate(store, &r.certificate_serial)?,
        ));
    }
    certs
        .into_iter()
        .map(|(name, der)| {
            let cert = Certificate::from_der(&der)
                .map_err(|e| DataDirError::State(format!("{name} certificate: {e}")))?;
            let tbs = &cert.tbs_certificate;
            let serial = pkid_protocols::serial::to_hex(&tbs.serial_number);
            let not_after = pkid_protocols::time::unix_of(&tbs.validity.not_after);
            let status = match store.certificate(&serial)? {
                _ if not_after < now => "expired".to_string(),
                Some(rec) => rec.status.as_str().to_string(),
                None => "unknown".to_string(),
            };
            Ok(IssuerRow {
                parent: (name != ROOT).then(|| ROOT.to_string()),
                name,
                status,
                not_after,
                subject: tbs.subject.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn issuer_names_are_path_and_label_safe() {
        for ok in ["health", "giao-duc", "edu2027", "a"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Health",
            "y-tế",
            "a/b",
            "a.b",
            "-x",
            "x-",
            "9x",
            "x-delta",
            "root",
            "issuing",
            "ocsp",
            "tsa",
            "tls",
            &"x".repeat(33),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
