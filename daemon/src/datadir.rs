//! The data directory: initialising a CA hierarchy into it, and opening it.
//!
//! ```text
//! <data>/pkid.toml          configuration (written by init, edited by the operator)
//! <data>/calendar-vn.toml   working-day calendar (`[ra] calendar`; written by init or serve
//!                           when absent, edited by the operator, never overwritten)
//! <data>/pkid.db            SQLite store (WAL)
//! <data>/keys/<role>.p8     software keys, mode 0600 (only tls.p8 with the pkcs11 backend)
//! <data>/certs/<role>.crt   PEM certificates: root, issuing, ocsp, tsa, tls; tls-chain.pem
//! ```

pub mod cmp_responder;
pub mod issuers;

use crate::ca::{Authority, CaError, Issuance, Issuer, Predecessor, ISSUING, ROOT};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, KeyBackendConfig, CONFIG_FILE, TEMPLATE};
use crate::keys::software::SoftwareBackend;
use crate::keys::{pkcs11::Pkcs11Backend, KeyBackend, KeyError, KeyRole, Signer};
use crate::metrics::{MeteredSigner, MeteredStore, Metrics};
use crate::store::sqlite::SqliteStore;
use crate::store::{AuditEntry, Outcome, Store, StoreError};
use der::asn1::{Ia5String, OctetString};
use pkid_protocols::profile::Profile;
use pkid_protocols::x509::certificate_pem;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

/// Why the data directory could not be initialised or opened. One line each, for the CLI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Key backend problem (wrong PIN, missing module, missing key).
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Issuance of a CA certificate failed.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// Refused: already initialised, not initialised.
    #[error("{0}")]
    State(String),
    /// File-system problem.
    #[error("{0}")]
    Io(String),
}

fn io(what: &Path) -> impl Fn(std::io::Error) -> DataDirError + '_ {
    move |e| DataDirError::Io(format!("{}: {e}", what.display()))
}

/// Options for `pkid init` that override the configuration file's.
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// `software` or `pkcs11`.
    pub key_backend: Option<String>,
    /// `p256`, `p384`, `rsa2048`, `rsa3072`.
    pub algorithm: Option<String>,
    /// PKCS#11 module path.
    pub pkcs11_module: Option<String>,
    /// PKCS#11 token label.
    pub token_label: Option<String>,
    /// File holding the PIN.
    pub pin_file: Option<String>,
    /// Environment variable holding the PIN.
    pub pin_env: Option<String>,
}

/// Paths inside a data directory.
pub fn certs_dir(data: &Path) -> PathBuf {
    data.join("certs")
}

/// The PEM file holding a role's certificate.
pub fn cert_path(data: &Path, role: &KeyRole) -> PathBuf {
    certs_dir(data).join(format!("{}.crt", role.name()))
}

/// Whether `pkid init` has run in `data` (the store exists or CA certificates do).
///
/// A path that cannot be looked at (permission denied, a parent that is a file) is an error,
/// not "uninitialised": `pkid serve` initialises an empty directory, and must never try that
/// over a CA it merely cannot read.
pub fn is_initialised(data: &Path) -> Result<bool, DataDirError> {
    let exists = |path: &Path| {
        path.try_exists().map_err(|e| {
            DataDirError::Io(format!(
                "cannot read the data directory {} ({}: {e}); check its owner and permissions \
                 against the user pkid runs as",
                data.display(),
                path.display()
            ))
        })
    };
    Ok(exists(&cert_path(data, &KeyRole::Issuing))? || exists(&data.join("pkid.db"))?)
}

/// The effective user id of this process: `/proc/self` belongs to it (proc(5)). `None` where
/// there is no `/proc`.
fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Warns when the data directory belongs to another user than the one pkid runs as: whatever
/// pkid writes there (CRLs, the database and its journal) would belong to the wrong user, and
/// root would make files the real owner can no longer replace.
fn warn_on_foreign_owner(data: &Path) {
    use std::os::unix::fs::MetadataExt;
    let (Ok(meta), Some(euid)) = (fs::metadata(data), effective_uid()) else {
        return;
    };
    if meta.uid() != euid {
        tracing::warn!(
            "{} is owned by uid {} but pkid is running as uid {euid}: the files it writes there \
             will belong to uid {euid}; run pkid as the directory's owner",
            data.display(),
            meta.uid()
        );
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The configuration text `init` writes: the documented template with the chosen options.
fn config_text(opts: &InitOptions) -> String {
    let mut text = TEMPLATE.to_string();
    let mut set = |key: &str, default: &str, value: &Option<String>| {
        if let Some(v) = value {
            text = text.replacen(
                &format!("\n{key} = {default}\n"),
                &format!("\n{key} = {}\n", toml_string(v)),
                1,
            );
        }
    };
    set("backend", "\"software\"", &opts.key_backend);
    set("algorithm", "\"p256\"", &opts.algorithm);
    set(
        "module",
        "\"/usr/lib/softhsm/libsofthsm2.so\"",
        &opts.pkcs11_module,
    );
    set("token_label", "\"pkid\"", &opts.token_label);
    set("pin_file", "\"\"", &opts.pin_file);
    set("pin_env", "\"PKID_PKCS11_PIN\"", &opts.pin_env);
    text
}

/// Opens the configured key backend.
pub fn key_backend(config: &Config) -> Result<Arc<dyn KeyBackend>, DataDirError> {
    Ok(match &config.keys.backend {
        KeyBackendConfig::Software => Arc::new(SoftwareBackend::new(config.data_dir.join("keys"))),
        KeyBackendConfig::Pkcs11(p) => Arc::new(Pkcs11Backend::open(&p.settings()?)?),
    })
}

/// Opens the store.
pub fn store(config: &Config) -> Result<Arc<dyn Store>, DataDirError> {
    Ok(Arc::new(SqliteStore::open(
        &config.store.path,
        config.store.busy_timeout,
    )?))
}

fn read_cert(data: &Path, role: &KeyRole) -> Result<Vec<u8>, DataDirError> {
    let path = cert_path(data, role);
    let pem = fs::read(&path).map_err(io(&path))?;
    pkid_protocols::x509::pem_or_der(&pem, &["CERTIFICATE"])
        .map_err(|e| DataDirError::Io(format!("{}: {e}", path.display())))
}

fn write_public(path: &Path, text: &str) -> Result<(), DataDirError> {
    fs::write(path, text).map_err(io(path))?;
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

fn tls_names(names: &[String]) -> Result<SubjectAltName, DataDirError> {
    let mut out = Vec::new();
    for n in names {
        let bad = |e: der::Error| DataDirError::Io(format!("ca.tls_names {n:?}: {e}"));
        out.push(match n.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => {
                GeneralName::IpAddress(OctetString::new(ip.octets().to_vec()).map_err(bad)?)
            }
            Ok(IpAddr::V6(ip)) => {
                GeneralName::IpAddress(OctetString::new(ip.octets().to_vec()).map_err(bad)?)
            }
            Err(_) => GeneralName::DnsName(Ia5String::new(n).map_err(bad)?),
        });
    }
    Ok(SubjectAltName(out))
}

/// Creates the CA hierarchy in `data`: configuration, store, keys (in the configured backend),
/// root CA, issuing CA, OCSP responder, TSA and HTTPS certificates. Refuses an initialised
/// directory. A `pkid.toml` already in an uninitialised directory is used as it is (that is how
/// a PKCS#11 token is named before init); otherwise the documented template is written.
pub fn init(data: &Path, opts: &InitOptions, actor: &str) -> Result<Arc<Authority>, DataDirError> {
    if is_initialised(data)? {
        return Err(DataDirError::State(format!(
            "{} is already initialised; refusing to overwrite it",
            data.display()
        )));
    }
    fs::create_dir_all(data).map_err(io(data))?;
    let config_path = data.join(CONFIG_FILE);
    let wrote_config = !config_path.exists();
    if wrote_config {
        write_public(&config_path, &config_text(opts))?;
    } else if opts.key_backend.is_some()
        || opts.algorithm.is_some()
        || opts.pkcs11_module.is_some()
        || opts.token_label.is_some()
        || opts.pin_file.is_some()
        || opts.pin_env.is_some()
    {
        tracing::warn!(
            "{} exists; init options that it also sets are ignored",
            config_path.display()
        );
    }
    // What init may create besides the configuration; whatever did not exist before is removed
    // again if init fails, so a corrected retry starts from a clean directory.
    let loaded = Config::load(data).ok();
    let store_path = loaded
        .as_ref()
        .map(|c| c.store.path.clone())
        .unwrap_or_else(|| data.join("pkid.db"));
    let calendar_path = loaded.map(|c| c.ra.calendar);
    let mut created: Vec<PathBuf> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", store_path.display())))
        .chain([certs_dir(data), data.join("keys")])
        .chain(calendar_path)
        .filter(|p| !p.exists())
        .collect();
    if wrote_config {
        created.push(config_path.clone());
    }
    let result = create_hierarchy(data, actor);
    if let Err(e) = &result {
        for path in &created {
            let removed = if path.is_dir() {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            };
            if let Err(err) = removed.or_else(|err| {
                if err.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(err)
                }
            }) {
                tracing::warn!(error = %err, "could not remove {} after the failed init", path.display());
            }
        }
        // debug, not warn: the caller prints the one error line; this only explains the cleanup.
        tracing::debug!(error = %e, "init failed; removed what it had created (keys generated in a PKCS#11 token stay there)");
    }
    result
}

/// Writes the calendar shipped with pkid to `ra.calendar` unless a file is already there: an
/// operator's edits are never overwritten. Returns whether it wrote the file.
pub fn write_calendar_if_absent(config: &Config) -> Result<bool, DataDirError> {
    use std::io::Write;
    let path = &config.ra.calendar;
    let mut file = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io(path)(e)),
    };
    file.write_all(crate::ra::calendar::SHIPPED.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(path))?;
    tracing::info!(path = %path.display(), "wrote the shipped working-day calendar");
    Ok(true)
}

/// The part of [`init`] after the configuration file is in place.
fn create_hierarchy(data: &Path, actor: &str) -> Result<Arc<Authority>, DataDirError> {
    let config = Arc::new(Config::load(data)?);
    write_calendar_if_absent(&config)?;
    let backend = key_backend(&config)?;
    let certs = certs_dir(data);
    fs::create_dir_all(&certs).map_err(io(&certs))?;
    let store = store(&config)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let authority = Authority::new(config.clone(), store.clone(), clock.clone(), vec![]);

    let kt = config.keys.algorithm;
    let mut signers = std::collections::HashMap::new();
    for role in KeyRole::CA_ROLES {
        signers.insert(role.clone(), backend.generate(&role, kt)?);
        tracing::info!(role = %role, key = %kt.name(), backend = %backend.describe(), "generated key");
    }
    let tls_backend = SoftwareBackend::new(data.join("keys"));
    let tls_key = tls_backend.generate(&KeyRole::Tls, pkid_protocols::KeyType::EcP256)?;
    let key = |role: KeyRole| {
        signers
            .get(&role)
            .cloned()
            .ok_or(DataDirError::State(format!("no {role} key")))
    };
    let ca = &config.ca;
    let url = &config.server.public_url;

    let issue = |issuer: crate::ca::SigningIssuer<'_>,
                 profile: &Profile,
                 subject: x509_cert::name::Name,
                 public_key: &dyn Signer,
                 days: u32,
                 san: Option<SubjectAltName>| {
        authority.sign_certificate(
            issuer,
            Issuance {
                profile,
                profile_name: &profile.name,
                subject,
                public_key: public_key.public_key().clone(),
                days,
                subject_alt_name: san,
                replaces: None,
            },
        )
    };

    let root_key = key(KeyRole::Root)?;
    let root_profile = Profile::root_ca(ca.root_validity_days);
    let root = issue(
        crate::ca::SigningIssuer {
            name: ROOT,
            info: None,
            signer: root_key.as_ref(),
            not_after: None,
        },
        &root_profile,
        ca.root_subject.clone(),
        root_key.as_ref(),
        ca.root_validity_days,
        None,
    )?;
    let root = Issuer::new(ROOT, root.der, root_key, url, false)?;
    let issuing_key = key(KeyRole::Issuing)?;
    let issuing = issue(
        root.signing(),
        &Profile::issuing_ca(ca.issuing_validity_days),
        ca.issuing_subject.clone(),
        issuing_key.as_ref(),
        ca.issuing_validity_days,
        None,
    )?;
    let issuing = Issuer::new(ISSUING, issuing.der, issuing_key, url, true)?;
    let days = ca.responder_validity_days;
    let ocsp = issue(
        issuing.signing(),
        &Profile::ocsp_responder(days),
        ca.ocsp_subject.clone(),
        key(KeyRole::Ocsp)?.as_ref(),
        days,
        None,
    )?;
    let tsa = issue(
        issuing.signing(),
        &Profile::tsa(days),
        ca.tsa_subject.clone(),
        key(KeyRole::Tsa)?.as_ref(),
        days,
        None,
    )?;
    let tls_subject = pkid_protocols::name::parse(&format!(
        "CN={}",
        ca.tls_names
            .first()
            .map(String::as_str)
            .unwrap_or("localhost")
    ))
    .map_err(|e| DataDirError::Io(e.to_string()))?;
    let tls = issue(
        issuing.signing(),
        &Profile::tls_server(days),
        tls_subject,
        tls_key.as_ref(),
        days,
        Some(tls_names(&ca.tls_names)?),
    )?;

    for (role, der) in [
        (KeyRole::Root, &root.der),
        (KeyRole::Issuing, &issuing.der),
        (KeyRole::Ocsp, &ocsp.der),
        (KeyRole::Tsa, &tsa.der),
        (KeyRole::Tls, &tls.der),
    ] {
        write_public(&cert_path(data, &role), &certificate_pem(der))?;
    }
    write_public(
        &certs.join("tls-chain.pem"),
        &format!(
            "{}{}",
            certificate_pem(&tls.der),
            certificate_pem(&issuing.der)
        ),
    )?;
    fs::set_permissions(data, fs::Permissions::from_mode(0o700)).map_err(io(data))?;
    store.audit(&AuditEntry {
        at: clock.now(),
        actor: actor.into(),
        action: "ca.init".into(),
        target: data.display().to_string(),
        outcome: Outcome::Success,
        detail: format!(
            "backend={} algorithm={} root={} issuing={}",
            backend.describe(),
            kt.name(),
            hex_serial(&root),
            hex_serial(&issuing)
        ),
    })?;
    let authority = Arc::new(Authority::new(config, store, clock, vec![root, issuing]));
    if let Some(issuing) = authority.issuer(ISSUING) {
        cmp_responder::cmp_responder(data, &authority, backend.as_ref(), &issuing, None, actor)?;
    }
    Ok(authority)
}

fn hex_serial(i: &Issuer) -> String {
    pkid_protocols::serial::to_hex(&i.certificate.tbs_certificate.serial_number)
}

/// An opened data directory.
pub struct Opened {
    /// The configuration.
    pub config: Arc<Config>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The key backend, when keys were requested.
    pub keys: Option<Arc<dyn KeyBackend>>,
    /// The authority, when keys were requested.
    pub authority: Option<Arc<Authority>>,
}

/// Opens an initialised data directory. With `with_keys` the root and issuing CA keys are
/// loaded from the backend and checked against their certificates.
pub fn open(data: &Path, with_keys: bool) -> Result<Opened, DataDirError> {
    open_with(data, with_keys, None, Arc::new(SystemClock))
}

/// Opens the data directory for the daemon: keys loaded, the store and every signer counted
/// in `metrics`, and the authority on `clock`.
pub fn open_metered(
    data: &Path,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
) -> Result<Opened, DataDirError> {
    let opened = open_with(data, true, Some(metrics), clock)?;
    // A data directory made before the RA existed gets the calendar on its first start.
    write_calendar_if_absent(&opened.config)?;
    Ok(opened)
}

fn open_with(
    data: &Path,
    with_keys: bool,
    metrics: Option<Arc<Metrics>>,
    clock: Arc<dyn Clock>,
) -> Result<Opened, DataDirError> {
    if !is_initialised(data)? {
        return Err(DataDirError::State(format!(
            "{} is not initialised; run `pkid init --data {}` first",
            data.display(),
            data.display()
        )));
    }
    warn_on_foreign_owner(data);
    let config = Arc::new(Config::load(data)?);
    let mut store = store(&config)?;
    if let Some(m) = &metrics {
        store = MeteredStore::wrap(store, m.clone());
    }
    if !with_keys {
        return Ok(Opened {
            config,
            store,
            keys: None,
            authority: None,
        });
    }
    let backend = key_backend(&config)?;
    let url = &config.server.public_url;
    let load = |role: KeyRole| -> Result<Arc<dyn Signer>, DataDirError> {
        let signer = backend.load(&role)?;
        Ok(match &metrics {
            Some(m) => MeteredSigner::wrap(signer, &role.name(), m.clone()),
            None => signer,
        })
    };
    let root = Issuer::new(
        ROOT,
        read_cert(data, &KeyRole::Root)?,
        load(KeyRole::Root)?,
        url,
        false,
    )?;
    let issuing = Issuer::new(
        ISSUING,
        read_cert(data, &KeyRole::Issuing)?,
        load(KeyRole::Issuing)?,
        url,
        true,
    )?;
    let mut loaded = vec![root, issuing];
    loaded.extend(issuers::registered(
        store.as_ref(),
        backend.as_ref(),
        url,
        metrics.as_ref(),
        &store.issuers()?,
    )?);
    let authority = Arc::new(Authority::new(config.clone(), store.clone(), clock, loaded));
    Ok(Opened {
        config,
        store,
        keys: Some(backend),
        authority: Some(authority),
    })
}

/// The CA certificates as PEM, issuing CA first (the order a chain file wants).
pub fn chain_pem(data: &Path) -> Result<String, DataDirError> {
    let mut out = String::new();
    for role in [KeyRole::Issuing, KeyRole::Root] {
        out.push_str(&certificate_pem(&read_cert(data, &role)?));
    }
    Ok(out)
}

/// DER of a role's certificate.
pub fn role_certificate(data: &Path, role: &KeyRole) -> Result<Vec<u8>, DataDirError> {
    read_cert(data, role)
}

/// Writes `text` to `path` atomically: a synced temporary file renamed over it, so a reader (a
/// starting daemon) sees the old file or the new one, never half of one.
fn replace_public(path: &Path, text: &str) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    write_public(&tmp, text)?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// Issues a new certificate for the OCSP responder, TSA or HTTPS key (same key, same subject
/// and names, a fresh validity from the issuing CA) and installs it in `certs/`. The running
/// daemon uses it after a restart. The previous certificate stays valid until it expires.
pub fn reissue(
    data: &Path,
    role: KeyRole,
    days: Option<u32>,
    actor: &str,
) -> Result<crate::ca::Issued, DataDirError> {
    let opened = open(data, true)?;
    let (Some(authority), Some(backend)) = (opened.authority, opened.keys) else {
        return Err(DataDirError::State("keys were not loaded".into()));
    };
    let days = days.unwrap_or(opened.config.ca.responder_validity_days);
    let issued = authority.audited(
        actor,
        "ca.reissue",
        &role.name(),
        || {
            let profile = match &role {
                KeyRole::Ocsp => Profile::ocsp_responder(days),
                KeyRole::Tsa => Profile::tsa(days),
                KeyRole::Tls => Profile::tls_server(days),
                KeyRole::Root
                | KeyRole::Issuing
                | KeyRole::Issuer(_)
                | KeyRole::Responder(_)
                | KeyRole::CmpResponder(_) => {
                    return Err(CaError::Refused(format!(
                        "the {role} certificate is not reissued with this command"
                    )))
                }
            };
            let key = match &role {
                KeyRole::Tls => SoftwareBackend::new(data.join("keys")).load(&KeyRole::Tls),
                other => backend.load(other),
            }
            .map_err(|e| CaError::Unavailable(e.to_string()))?;
            let current = read_cert(data, &role).map_err(|e| CaError::Internal(e.to_string()))?;
            let current = <x509_cert::Certificate as der::Decode>::from_der(&current)
                .map_err(|e| CaError::Internal(e.to_string()))?;
            if current.tbs_certificate.subject_public_key_info != *key.public_key() {
                return Err(CaError::Internal(format!(
                    "certs/{role}.crt does not belong to the {role} key"
                )));
            }
            let san = current
                .tbs_certificate
                .get::<SubjectAltName>()
                .ok()
                .flatten()
                .map(|(_, san)| san);
            let issuing = authority
                .issuer(ISSUING)
                .ok_or_else(|| CaError::Internal("issuing CA not loaded".into()))?;
            authority.sign_certificate(
                issuing.signing(),
                Issuance {
                    profile: &profile,
                    profile_name: &profile.name,
                    subject: current.tbs_certificate.subject.clone(),
                    public_key: key.public_key().clone(),
                    days,
                    subject_alt_name: san,
                    replaces: Some(Predecessor::Kept(pkid_protocols::serial::to_hex(
                        &current.tbs_certificate.serial_number,
                    ))),
                },
            )
        },
        |i| format!("serial={}", i.serial),
    )?;
    replace_public(&cert_path(data, &role), &certificate_pem(&issued.der))?;
    if role == KeyRole::Tls {
        let issuing = read_cert(data, &KeyRole::Issuing)?;
        replace_public(
            &certs_dir(data).join("tls-chain.pem"),
            &format!(
                "{}{}",
                certificate_pem(&issued.der),
                certificate_pem(&issuing)
            ),
        )?;
    }
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_init_leaves_no_configuration_behind() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().join("d");
        let opts = InitOptions {
            key_backend: Some("pkcs11".into()),
            pin_env: Some("PKID_TEST_PIN_VARIABLE_THAT_IS_NEVER_SET".into()),
            ..Default::default()
        };
        let err = init(&data, &opts, "test")
            .err()
            .expect("no PIN: init fails");
        assert!(
            err.to_string()
                .contains("PKID_TEST_PIN_VARIABLE_THAT_IS_NEVER_SET"),
            "{err}"
        );
        assert!(
            !data.join(CONFIG_FILE).exists(),
            "a retry must not inherit the failed options"
        );
        assert!(!is_initialised(&data).expect("readable"));
    }

    #[test]
    fn a_path_that_cannot_be_read_is_an_error_not_uninitialised() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("file");
        fs::write(&file, b"").expect("file");
        let data = file.join("data");
        let e = is_initialised(&data).expect_err("ENOTDIR is not \"absent\"");
        assert!(
            e.to_string().contains("cannot read the data directory"),
            "{e}"
        );
        let e = open(&data, false).err().expect("refused");
        assert!(!e.to_string().contains("not initialised"), "{e}");
        assert!(!is_initialised(dir.path()).expect("readable and empty"));
    }

    #[test]
    fn the_calendar_is_written_once_and_an_edited_one_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = Config::parse(dir.path(), None, "t").expect("defaults");
        assert!(write_calendar_if_absent(&config).expect("write"));
        let path = &config.ra.calendar;
        assert_eq!(
            fs::read_to_string(path).expect("read"),
            crate::ra::calendar::SHIPPED
        );
        fs::write(path, "# edited\n").expect("edit");
        assert!(!write_calendar_if_absent(&config).expect("no-op"));
        assert_eq!(fs::read_to_string(path).expect("read"), "# edited\n");
    }

    #[test]
    fn config_text_sets_chosen_options_and_stays_valid() {
        let opts = InitOptions {
            key_backend: Some("pkcs11".into()),
            algorithm: Some("p384".into()),
            token_label: Some("tok \"1\"".into()),
            pin_env: Some("MY_PIN".into()),
            ..Default::default()
        };
        let text = config_text(&opts);
        let c = Config::parse(Path::new("/d"), Some(&text), "t").expect("valid");
        assert_eq!(c.keys.algorithm, pkid_protocols::KeyType::EcP384);
        let KeyBackendConfig::Pkcs11(p) = c.keys.backend else {
            panic!("pkcs11")
        };
        assert_eq!(
            (p.token_label.as_str(), p.pin_env.as_deref()),
            ("tok \"1\"", Some("MY_PIN"))
        );
    }
}
