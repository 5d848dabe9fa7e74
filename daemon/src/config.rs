//! Configuration: `pkid.toml` parsed into a [`Config`] whose invariants hold.
//!
//! The documented file in `conf/pkid.toml` is compiled in and is the single source of defaults:
//! a user's file is merged over it (tables key by key; a user `[profiles]` table replaces the
//! default profiles as a whole), then deserialised strictly (`deny_unknown_fields`) and
//! converted with `TryFrom` into types that cannot hold a nonsensical value.

use crate::keys::Pkcs11Settings;
use const_oid::db::{rfc4519, rfc5280 as oids};
use der::asn1::ObjectIdentifier;
use pkid_protocols::algorithm::KeyType;
use pkid_protocols::profile::Profile;
use pkid_protocols::SignatureAlgorithm;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;
use x509_cert::ext::pkix::{KeyUsage, KeyUsages};
use x509_cert::name::Name;
use zeroize::Zeroizing;

mod crl;
pub use crl::CrlConfig;
mod notify;
mod portal;
pub use notify::{EmailConfig, NotifyConfig, Secret, WebhookConfig};
pub use portal::PortalConfig;
mod ra;
pub use ra::{RaConfig, MAX_BULK_REQUESTS};
mod cmp;
mod est;
pub use cmp::{CmpConfig, CmpLabel};
pub use est::{Approval, ChannelBinding, EstConfig, EstLabel};
mod csc;
pub use csc::CscConfig;

/// Name of the self-signed root CA `pkid init` makes.
pub const ROOT: &str = "root";
/// Name of the issuing CA `pkid init` makes, which issues subscriber certificates.
pub const ISSUING: &str = "issuing";

/// The documented configuration, compiled in: defaults and the file `pkid init` writes.
pub const TEMPLATE: &str = include_str!("../../conf/pkid.toml");

/// Name of the configuration file inside a data directory.
pub const CONFIG_FILE: &str = "pkid.toml";

/// A configuration that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("configuration {path}: {reason}")]
pub struct ConfigError {
    /// The file (or `<built-in>`).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    log: RawLog,
    store: RawStore,
    keys: RawKeys,
    ocsp: RawOcsp,
    crl: crl::RawCrl,
    ca: RawCa,
    profiles: BTreeMap<String, RawProfile>,
    tsa: RawTsa,
    #[serde(default)]
    ra: ra::RawRa,
    #[serde(default)]
    notify: notify::RawNotify,
    #[serde(default)]
    portal: portal::RawPortal,
    est: est::RawEst,
    #[serde(default)]
    cmp: cmp::RawCmp,
    csc: csc::RawCsc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    http: String,
    https: String,
    public_url: String,
    max_body_bytes: usize,
    header_timeout_secs: u64,
    idle_timeout_secs: u64,
    rate_limit_per_second: u32,
    rate_limit_burst: u32,
    shutdown_grace_secs: u64,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    request_timeout_secs: u64,
    client_trust: Vec<PathBuf>,
    body_timeout_secs: u64,
    max_connections: usize,
    max_connections_per_client: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: String,
    format: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: PathBuf,
    busy_timeout_ms: u64,
    follow_interval_ms: u64,
    gap_timeout_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOcsp {
    enabled: bool,
    validity_hours: u64,
    refresh_before_hours: u64,
    max_cert_ids: usize,
    unknown_issuer: String,
    cache_capacity: u64,
    cache_bytes: u64,
    unknown_cache_bytes: u64,
    forms_bytes: u64,
    max_age_secs: u64,
    presign: bool,
    expiry_warning_days: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    backend: String,
    algorithm: String,
    pkcs11: RawPkcs11,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPkcs11 {
    module: PathBuf,
    token_label: String,
    pin_file: String,
    pin_env: String,
    sessions: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    root_subject: String,
    issuing_subject: String,
    ocsp_subject: String,
    tsa_subject: String,
    tls_names: Vec<String>,
    root_validity_days: u32,
    issuing_validity_days: u32,
    responder_validity_days: u32,
    backdate_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTsa {
    enabled: bool,
    policy: String,
    accepted_policies: Vec<String>,
    hash_algorithms: Vec<String>,
    accuracy_ms: u32,
    include_tsa_name: bool,
    signing_time: bool,
    clock_sync: String,
    serial_block: u64,
    record_interval_ms: u64,
    record_backlog: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    key_usage: Vec<String>,
    extended_key_usage: Vec<String>,
    extended_key_usage_critical: bool,
    max_validity_days: u32,
    default_validity_days: u32,
    allowed_keys: Vec<String>,
    required_subject: Vec<String>,
    copy_subject_alt_name: bool,
    #[serde(default)]
    central_keys: bool,
}

/// Validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The data directory every relative path is resolved against.
    pub data_dir: PathBuf,
    /// Listeners and HTTP limits.
    pub server: ServerConfig,
    /// Logging.
    pub log: LogConfig,
    /// The durable store.
    pub store: StoreConfig,
    /// Key backend.
    pub keys: KeysConfig,
    /// The OCSP responder.
    pub ocsp: OcspConfig,
    /// CRL publication.
    pub crl: CrlConfig,
    /// The CA hierarchy `pkid init` makes.
    pub ca: CaConfig,
    /// Subscriber profiles by name.
    pub profiles: BTreeMap<String, SubscriberProfile>,
    /// The timestamp authority.
    pub tsa: TsaConfig,
    /// The registration authority.
    pub ra: RaConfig,
    /// The RA's notifications.
    pub notify: NotifyConfig,
    /// The registration portal (web interface).
    pub portal: PortalConfig,
    /// The EST enrollment server.
    pub est: EstConfig,
    /// The CMP server.
    pub cmp: CmpConfig,
    /// Centralised remote signing (CSC API v2).
    pub csc: CscConfig,
}

/// When the kernel's clock-synchronisation state stops issuance (`[tsa] clock_sync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockSyncMode {
    /// Refuse once synchronisation is lost after being seen while pkid runs, or when the
    /// kernel's maximum error exceeds the declared accuracy; a clock no daemon disciplines is
    /// only warned about.
    Auto,
    /// Refuse unless the kernel reports the clock synchronised within the declared accuracy.
    Require,
    /// Never consult the kernel.
    Ignore,
}

impl ClockSyncMode {
    /// Parses the configuration name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "require" => Some(Self::Require),
            "ignore" => Some(Self::Ignore),
            _ => None,
        }
    }
}

/// Timestamp authority settings (`[tsa]`).
#[derive(Clone, Debug)]
pub struct TsaConfig {
    /// Whether `POST /tsa` is served.
    pub enabled: bool,
    /// What is accepted and what goes into tokens.
    pub settings: pkid_protocols::tsp::Settings,
    /// When the kernel's clock-synchronisation state stops issuance.
    pub clock_sync: ClockSyncMode,
    /// Serial numbers reserved (durably) per store write.
    pub serial_block: u64,
    /// Longest time an issued token's record waits before it is written to the store.
    pub record_interval: Duration,
    /// Records that may wait in memory; when full, requests are refused (systemFailure).
    pub record_backlog: usize,
    /// Threads that sign tokens; 0 means one per CPU. Not read from the file: the daemon sets
    /// it from `[keys]` (a PKCS#11 token signs in parallel on `sessions` sessions).
    pub signing_threads: usize,
}

/// What to answer for a CertID naming an issuer the responder does not serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownIssuer {
    /// The whole response is `unauthorized`.
    Unauthorized,
    /// A signed response with status `unknown` for that CertID.
    Unknown,
}

/// OCSP responder settings.
#[derive(Clone, Debug)]
pub struct OcspConfig {
    /// Whether /ocsp is served.
    pub enabled: bool,
    /// nextUpdate - thisUpdate, seconds.
    pub validity_secs: u64,
    /// Re-sign cached responses this long before nextUpdate, seconds.
    pub refresh_before_secs: u64,
    /// CertIDs per request.
    pub max_cert_ids: usize,
    /// Unserved issuers.
    pub unknown_issuer: UnknownIssuer,
    /// Most cached responses for issued certificates (kept from before the byte bound, so
    /// existing files load; both bounds hold).
    pub cache_capacity: u64,
    /// Bytes of cached responses for issued certificates (good, revoked), at most.
    pub cache_bytes: u64,
    /// Bytes of cached `unknown` answers, at most: kept apart so a flood of never-issued
    /// serials cannot push out answers for issued certificates.
    pub unknown_cache_bytes: u64,
    /// Bytes of remembered request forms, at most.
    pub forms_bytes: u64,
    /// Cache-Control max-age ceiling, seconds.
    pub max_age_secs: u64,
    /// Pre-sign at start.
    pub presign: bool,
    /// Responder-certificate expiry warning, seconds.
    pub expiry_warning_secs: u64,
}

/// Listener settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Plain-HTTP listener, if enabled.
    pub http: Option<SocketAddr>,
    /// HTTPS listener, if enabled.
    pub https: Option<SocketAddr>,
    /// Base URL written into certificates (no trailing slash).
    pub public_url: String,
    /// Body-size limit for every route.
    pub max_body_bytes: usize,
    /// Request-header read timeout, from the first byte of the headers.
    pub header_timeout: Duration,
    /// Longest a connection stays open with no request in progress and no byte moving: before
    /// its first byte (or TLS handshake record), between keep-alive requests, on HTTP/2 with no
    /// open stream.
    pub idle_timeout: Duration,
    /// Longest a request body may go without a byte arriving (408 after it).
    pub body_timeout: Duration,
    /// Concurrent connections one listener holds; more are closed at accept.
    pub max_connections: usize,
    /// Concurrent connections one client address holds on one listener; more are closed at
    /// accept.
    pub max_connections_per_client: usize,
    /// Per-client rate limit, if enabled.
    pub rate_limit: Option<RateLimit>,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// TLS certificate chain (PEM).
    pub tls_cert: PathBuf,
    /// TLS private key (PKCS#8).
    pub tls_key: PathBuf,
    /// Longest a request may take from its headers to its answer (503 after it).
    pub request_timeout: Duration,
    /// PEM files of the trust anchors HTTPS client certificates are verified against (default:
    /// pkid's own root). A client without a certificate is still served, anonymously.
    pub client_trust: Vec<PathBuf>,
}

/// Requests per second and burst per client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained rate.
    pub per_second: NonZeroU32,
    /// Burst size.
    pub burst: NonZeroU32,
}

/// Logging settings.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// tracing-subscriber filter directive.
    pub level: String,
    /// JSON lines instead of text.
    pub json: bool,
}

/// Store settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// SQLite file.
    pub path: PathBuf,
    /// Lock wait for concurrent writers.
    pub busy_timeout: Duration,
    /// Change-sequence poll interval.
    pub follow_interval: Duration,
    /// How long the change follower waits for a skipped sequence value to commit before it
    /// takes it as rolled back (longer than any write transaction; see `store::cursor`).
    pub gap_timeout: Duration,
}

/// Which key backend, and its settings.
#[derive(Clone, Debug)]
pub enum KeyBackendConfig {
    /// PKCS#8 files under `<data>/keys`.
    Software,
    /// A PKCS#11 token.
    Pkcs11(Pkcs11Config),
}

/// PKCS#11 settings before the PIN is read.
#[derive(Clone, Debug)]
pub struct Pkcs11Config {
    /// Module path.
    pub module: PathBuf,
    /// Token label.
    pub token_label: String,
    /// PIN file, if configured.
    pub pin_file: Option<PathBuf>,
    /// PIN environment variable, if configured.
    pub pin_env: Option<String>,
    /// Session pool size.
    pub sessions: usize,
}

impl Pkcs11Config {
    /// Reads the PIN (file first, then environment) and returns the backend settings.
    pub fn settings(&self) -> Result<Pkcs11Settings, ConfigError> {
        let err = |reason: String| ConfigError {
            path: "[keys.pkcs11]".into(),
            reason,
        };
        let pin = if let Some(file) = &self.pin_file {
            let text = Zeroizing::new(
                std::fs::read_to_string(file)
                    .map_err(|e| err(format!("cannot read pin_file {}: {e}", file.display())))?,
            );
            Zeroizing::new(
                text.lines()
                    .next()
                    .unwrap_or_default()
                    .trim_end()
                    .to_string(),
            )
        } else if let Some(var) = &self.pin_env {
            Zeroizing::new(
                std::env::var(var)
                    .map_err(|_| err(format!("the PIN variable {var} is not set")))?,
            )
        } else {
            return Err(err("no pin_file or pin_env configured".into()));
        };
        if pin.is_empty() {
            return Err(err("the PIN is empty".into()));
        }
        Ok(Pkcs11Settings {
            module: self.module.clone(),
            token_label: self.token_label.clone(),
            pin,
            sessions: self.sessions,
        })
    }
}

/// Key settings.
#[derive(Clone, Debug)]
pub struct KeysConfig {
    /// Backend.
    pub backend: KeyBackendConfig,
    /// Key type for `pkid init`.
    pub algorithm: KeyType,
}

/// The CA hierarchy's names and lifetimes.
#[derive(Clone, Debug)]
pub struct CaConfig {
    /// Root subject.
    pub root_subject: Name,
    /// Issuing CA subject.
    pub issuing_subject: Name,
    /// OCSP responder subject.
    pub ocsp_subject: Name,
    /// TSA subject.
    pub tsa_subject: Name,
    /// Names for the HTTPS certificate.
    pub tls_names: Vec<String>,
    /// Root validity, days.
    pub root_validity_days: u32,
    /// Issuing CA validity, days.
    pub issuing_validity_days: u32,
    /// OCSP/TSA/TLS certificate validity, days.
    pub responder_validity_days: u32,
    /// notBefore backdating, seconds.
    pub backdate_secs: u64,
}

/// A subscriber profile with its default validity.
#[derive(Clone, Debug)]
pub struct SubscriberProfile {
    /// What the certificate contains.
    pub profile: Profile,
    /// Validity when the request names none, days.
    pub default_validity_days: u32,
    /// Whether subscribers of this profile may have their key kept centrally (`central_keys`).
    pub central_keys: bool,
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) if k != "profiles" => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl Config {
    /// Loads `<data_dir>/pkid.toml` (or only the defaults if the file does not exist).
    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(ConfigError {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        Self::parse(data_dir, text.as_deref(), &path.display().to_string())
    }

    /// Parses configuration text merged over the defaults.
    pub fn parse(data_dir: &Path, text: Option<&str>, origin: &str) -> Result<Self, ConfigError> {
        let err = |reason: String| ConfigError {
            path: origin.to_string(),
            reason,
        };
        let mut table: toml::Table = TEMPLATE
            .parse()
            .map_err(|e| err(format!("built-in template: {e}")))?;
        if let Some(text) = text {
            let user: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| err(e.to_string()))?;
            merge(&mut table, user);
        }
        let raw: RawConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| err(e.to_string()))?;
        Self::validate(data_dir, raw).map_err(err)
    }

    fn validate(data_dir: &Path, raw: RawConfig) -> Result<Self, String> {
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                data_dir.join(p)
            }
        };
        let addr = |s: &str, what: &str| -> Result<Option<SocketAddr>, String> {
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse()
                    .map(Some)
                    .map_err(|e| format!("server.{what} {s:?}: {e}"))
            }
        };
        let s = raw.server;
        if !(s.public_url.starts_with("http://") || s.public_url.starts_with("https://"))
            || !s.public_url.is_ascii()
        {
            return Err(format!(
                "server.public_url {:?} must be an ASCII http:// or https:// URL",
                s.public_url
            ));
        }
        if s.max_body_bytes < 1024 {
            return Err("server.max_body_bytes must be at least 1024".into());
        }
        if s.header_timeout_secs == 0
            || s.idle_timeout_secs == 0
            || s.request_timeout_secs == 0
            || s.body_timeout_secs == 0
        {
            return Err("server timeouts must be at least one second".into());
        }
        if s.max_connections == 0 || s.max_connections_per_client == 0 {
            return Err(
                "server.max_connections and max_connections_per_client must be at least 1".into(),
            );
        }
        let rate_limit = match (
            NonZeroU32::new(s.rate_limit_per_second),
            NonZeroU32::new(s.rate_limit_burst),
        ) {
            (None, _) => None,
            (Some(per_second), Some(burst)) => Some(RateLimit { per_second, burst }),
            (Some(_), None) => {
                return Err(
                    "server.rate_limit_burst must be at least 1 when rate limiting is on".into(),
                )
            }
        };
        let server = ServerConfig {
            http: addr(&s.http, "http")?,
            https: addr(&s.https, "https")?,
            public_url: s.public_url.trim_end_matches('/').to_string(),
            max_body_bytes: s.max_body_bytes,
            header_timeout: Duration::from_secs(s.header_timeout_secs),
            idle_timeout: Duration::from_secs(s.idle_timeout_secs),
            rate_limit,
            shutdown_grace: Duration::from_secs(s.shutdown_grace_secs),
            tls_cert: resolve(&s.tls_cert),
            tls_key: resolve(&s.tls_key),
            request_timeout: Duration::from_secs(s.request_timeout_secs),
            client_trust: s.client_trust.iter().map(|p| resolve(p)).collect(),
            body_timeout: Duration::from_secs(s.body_timeout_secs),
            max_connections: s.max_connections,
            max_connections_per_client: s.max_connections_per_client,
        };
        let json = match raw.log.format.as_str() {
            "text" => false,
            "json" => true,
            other => return Err(format!("log.format {other:?} must be \"text\" or \"json\"")),
        };
        if raw.store.follow_interval_ms == 0 || raw.store.follow_interval_ms >= 1000 {
            return Err("store.follow_interval_ms must be between 1 and 999 (revocations propagate within a second)".into());
        }
        let gap_timeout = Duration::from_secs(raw.store.gap_timeout_secs);
        if gap_timeout <= Duration::from_millis(raw.store.busy_timeout_ms)
            || raw.store.gap_timeout_secs > MAX_GAP_TIMEOUT_SECS
        {
            return Err(format!(
                "store.gap_timeout_secs must be longer than store.busy_timeout_ms and at most {MAX_GAP_TIMEOUT_SECS} (a skipped change is waited for that long)"
            ));
        }
        let store = StoreConfig {
            path: resolve(&raw.store.path),
            busy_timeout: Duration::from_millis(raw.store.busy_timeout_ms),
            follow_interval: Duration::from_millis(raw.store.follow_interval_ms),
            gap_timeout,
        };
        let algorithm = SignatureAlgorithm::key_type_for(&raw.keys.algorithm).ok_or_else(|| {
            format!(
                "keys.algorithm {:?}: use p256, p384, rsa2048, rsa3072 or rsa4096",
                raw.keys.algorithm
            )
        })?;
        let backend = match raw.keys.backend.as_str() {
            "software" => KeyBackendConfig::Software,
            "pkcs11" => {
                let p = raw.keys.pkcs11;
                if p.sessions == 0 || p.sessions > 256 {
                    return Err("keys.pkcs11.sessions must be between 1 and 256".into());
                }
                if p.token_label.is_empty() || p.token_label.len() > 32 {
                    return Err(
                        "keys.pkcs11.token_label must be 1 to 32 bytes (CK_TOKEN_INFO label)"
                            .into(),
                    );
                }
                KeyBackendConfig::Pkcs11(Pkcs11Config {
                    module: p.module,
                    token_label: p.token_label,
                    pin_file: (!p.pin_file.is_empty()).then(|| resolve(Path::new(&p.pin_file))),
                    pin_env: (!p.pin_env.is_empty()).then_some(p.pin_env),
                    sessions: p.sessions,
                })
            }
            other => {
                return Err(format!(
                    "keys.backend {other:?} must be \"software\" or \"pkcs11\""
                ))
            }
        };
        let o = raw.ocsp;
        if !(8..=240).contains(&o.validity_hours) {
            return Err(
                "ocsp.validity_hours must be between 8 and 240 (CA/Browser Forum BR 4.9.10)".into(),
            );
        }
        if o.refresh_before_hours < 8 || o.refresh_before_hours >= o.validity_hours {
            return Err(
                "ocsp.refresh_before_hours must be at least 8 and less than validity_hours".into(),
            );
        }
        if o.max_cert_ids == 0 || o.max_cert_ids > 1000 {
            return Err("ocsp.max_cert_ids must be between 1 and 1000".into());
        }
        let ocsp = OcspConfig {
            enabled: o.enabled,
            validity_secs: o.validity_hours * 3600,
            refresh_before_secs: o.refresh_before_hours * 3600,
            max_cert_ids: o.max_cert_ids,
            unknown_issuer: match o.unknown_issuer.as_str() {
                "unauthorized" => UnknownIssuer::Unauthorized,
                "unknown" => UnknownIssuer::Unknown,
                other => {
                    return Err(format!(
                        "ocsp.unknown_issuer {other:?} must be \"unauthorized\" or \"unknown\""
                    ))
                }
            },
            cache_capacity: o.cache_capacity,
            cache_bytes: o.cache_bytes,
            unknown_cache_bytes: o.unknown_cache_bytes,
            forms_bytes: o.forms_bytes,
            max_age_secs: o.max_age_secs,
            presign: o.presign,
            expiry_warning_secs: o.expiry_warning_days * 86_400,
        };
        let crl = CrlConfig::try_from(raw.crl)?;
        let c = raw.ca;
        let name = |s: &str, what: &str| {
            pkid_protocols::name::parse(s).map_err(|e| format!("ca.{what}: {e}"))
        };
        if c.backdate_secs > pkid_protocols::x509::MAX_BACKDATE_SECS {
            return Err("ca.backdate_secs must be at most 86400".into());
        }
        if c.responder_validity_days == 0
            || c.issuing_validity_days == 0
            || c.root_validity_days == 0
        {
            return Err("ca validity periods must be at least one day".into());
        }
        if c.issuing_validity_days > c.root_validity_days
            || c.responder_validity_days > c.issuing_validity_days
        {
            return Err("ca validity periods must nest: responder <= issuing <= root".into());
        }
        let ca = CaConfig {
            root_subject: name(&c.root_subject, "root_subject")?,
            issuing_subject: name(&c.issuing_subject, "issuing_subject")?,
            ocsp_subject: name(&c.ocsp_subject, "ocsp_subject")?,
            tsa_subject: name(&c.tsa_subject, "tsa_subject")?,
            tls_names: c.tls_names,
            root_validity_days: c.root_validity_days,
            issuing_validity_days: c.issuing_validity_days,
            responder_validity_days: c.responder_validity_days,
            backdate_secs: c.backdate_secs,
        };
        if raw.profiles.is_empty() {
            return Err("at least one [profiles.NAME] is required".into());
        }
        let mut profiles = BTreeMap::new();
        for (pname, p) in raw.profiles {
            let profile = profile(&pname, p).map_err(|e| format!("profiles.{pname}: {e}"))?;
            profiles.insert(pname, profile);
        }
        let tsa = tsa_config(raw.tsa).map_err(|e| format!("tsa.{e}"))?;
        let ra = RaConfig::from_raw(raw.ra, data_dir)?;
        let notify = NotifyConfig::from_raw(raw.notify, data_dir)?;
        let portal = PortalConfig::from_raw(raw.portal)?;
        let est = EstConfig::from_raw(raw.est, &profiles)?;
        let cmp = CmpConfig::from_raw(raw.cmp, &profiles)?;
        let csc = CscConfig::from_raw(raw.csc, &server.public_url)?;
        Ok(Config {
            cmp,
            csc,
            portal,
            est,
            ra,
            notify,
            tsa,
            data_dir: data_dir.to_path_buf(),
            server,
            log: LogConfig {
                level: raw.log.level,
                json,
            },
            store,
            keys: KeysConfig { backend, algorithm },
            ocsp,
            crl,
            ca,
            profiles,
        })
    }

    /// The subscriber profile called `name`.
    pub fn profile(&self, name: &str) -> Option<&SubscriberProfile> {
        self.profiles.get(name)
    }
}

fn profile(name: &str, p: RawProfile) -> Result<SubscriberProfile, String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("profile names use letters, digits, '-' and '_'".into());
    }
    let mut ku = flagset::FlagSet::<KeyUsages>::default();
    for u in &p.key_usage {
        ku |= match u.as_str() {
            "digitalSignature" => KeyUsages::DigitalSignature,
            "nonRepudiation" | "contentCommitment" => KeyUsages::NonRepudiation,
            "keyEncipherment" => KeyUsages::KeyEncipherment,
            "dataEncipherment" => KeyUsages::DataEncipherment,
            "keyAgreement" => KeyUsages::KeyAgreement,
            other => {
                return Err(format!(
                    "key_usage {other:?} is not allowed in a subscriber profile"
                ))
            }
        };
    }
    if ku.is_empty() {
        return Err("key_usage must name at least one usage".into());
    }
    let mut eku = Vec::new();
    for e in &p.extended_key_usage {
        eku.push(match e.as_str() {
            "serverAuth" => oids::ID_KP_SERVER_AUTH,
            "clientAuth" => oids::ID_KP_CLIENT_AUTH,
            "codeSigning" => oids::ID_KP_CODE_SIGNING,
            "emailProtection" => oids::ID_KP_EMAIL_PROTECTION,
            "timeStamping" => oids::ID_KP_TIME_STAMPING,
            "OCSPSigning" => oids::ID_KP_OCSP_SIGNING,
            dotted => ObjectIdentifier::new(dotted)
                .map_err(|_| format!("extended_key_usage {dotted:?} is unknown"))?,
        });
    }
    let mut allowed = Vec::new();
    for k in &p.allowed_keys {
        allowed.push(
            SignatureAlgorithm::key_type_for(k)
                .ok_or_else(|| format!("allowed_keys {k:?} is unknown"))?,
        );
    }
    if allowed.is_empty() {
        return Err("allowed_keys must not be empty".into());
    }
    let mut required = Vec::new();
    for a in &p.required_subject {
        required.push(
            subject_attribute(a).ok_or_else(|| format!("required_subject {a:?} is unknown"))?,
        );
    }
    if p.max_validity_days == 0
        || p.default_validity_days == 0
        || p.default_validity_days > p.max_validity_days
    {
        return Err("validity: 0 < default_validity_days <= max_validity_days".into());
    }
    Ok(SubscriberProfile {
        profile: Profile {
            name: name.to_string(),
            key_usage: KeyUsage(ku),
            extended_key_usage: eku,
            extended_key_usage_critical: p.extended_key_usage_critical,
            max_validity_days: p.max_validity_days,
            allowed_keys: allowed,
            required_subject: required,
            ca: None,
            ocsp_nocheck: false,
            copy_subject_alt_name: p.copy_subject_alt_name,
            revocation_pointers: true,
        },
        default_validity_days: p.default_validity_days,
        central_keys: p.central_keys,
    })
}

/// Longest accuracy a token may declare, in milliseconds: beyond a minute a timestamp says little.
const MAX_TSA_ACCURACY_MS: u32 = 60_000;
/// Largest serial block: bounds the serials skipped by a crash or restart.
const MAX_TSA_SERIAL_BLOCK: u64 = 1_000_000;
/// Longest wait for a skipped change-sequence value: an hour-long write transaction is a fault,
/// and a gap left open that long delays nothing but costs a re-read per poll.
const MAX_GAP_TIMEOUT_SECS: u64 = 3600;

fn tsa_config(t: RawTsa) -> Result<TsaConfig, String> {
    let oid = |s: &str, what: &str| {
        ObjectIdentifier::new(s).map_err(|_| format!("{what} {s:?} is not a dotted OID"))
    };
    let policy = oid(&t.policy, "policy")?;
    let mut accepted_policies = Vec::new();
    for p in &t.accepted_policies {
        accepted_policies.push(oid(p, "accepted_policies")?);
    }
    let mut hash_algorithms = Vec::new();
    for h in &t.hash_algorithms {
        let alg = pkid_protocols::tsp::HashAlgorithm::from_name(h).ok_or_else(|| {
            format!("hash_algorithms {h:?}: use sha256, sha384, sha512 (or sha1)")
        })?;
        if !hash_algorithms.contains(&alg) {
            hash_algorithms.push(alg);
        }
    }
    if hash_algorithms.is_empty() {
        return Err("hash_algorithms must name at least one algorithm".into());
    }
    // genTime is encoded in whole seconds (truncated), so no honest accuracy is under one second.
    if !(1000..=MAX_TSA_ACCURACY_MS).contains(&t.accuracy_ms) {
        return Err(format!("accuracy_ms must be between 1000 and {MAX_TSA_ACCURACY_MS} (genTime has whole seconds)"));
    }
    let clock_sync = ClockSyncMode::parse(&t.clock_sync).ok_or_else(|| {
        format!(
            "clock_sync {:?} must be \"auto\", \"require\" or \"ignore\"",
            t.clock_sync
        )
    })?;
    if t.serial_block == 0 || t.serial_block > MAX_TSA_SERIAL_BLOCK {
        return Err(format!(
            "serial_block must be between 1 and {MAX_TSA_SERIAL_BLOCK}"
        ));
    }
    if !(1..=10_000).contains(&t.record_interval_ms) {
        return Err("record_interval_ms must be between 1 and 10000".into());
    }
    if t.record_backlog == 0 || t.record_backlog > 10_000_000 {
        return Err("record_backlog must be between 1 and 10000000".into());
    }
    Ok(TsaConfig {
        enabled: t.enabled,
        settings: pkid_protocols::tsp::Settings {
            policy,
            accepted_policies,
            hash_algorithms,
            accuracy_ms: t.accuracy_ms,
            include_tsa_name: t.include_tsa_name,
            signing_time: t.signing_time,
        },
        clock_sync,
        serial_block: t.serial_block,
        record_interval: Duration::from_millis(t.record_interval_ms),
        record_backlog: t.record_backlog,
        signing_threads: 0,
    })
}

fn subject_attribute(name: &str) -> Option<ObjectIdentifier> {
    Some(match name {
        "CN" => rfc4519::CN,
        "O" => rfc4519::O,
        "OU" => rfc4519::OU,
        "C" => rfc4519::C,
        "L" => rfc4519::L,
        "ST" => rfc4519::ST,
        "serialNumber" => rfc4519::SERIAL_NUMBER,
        "UID" => rfc4519::UID,
        "emailAddress" => const_oid::db::rfc3280::EMAIL_ADDRESS,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_conf_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("conf/") {
            let path = entry.expect("entry").path();
            // calendar-vn.toml is the working-day calendar, not a configuration: its own
            // parser's tests load it (`ra::calendar`).
            let calendar = path.file_name().is_some_and(|n| n == "calendar-vn.toml");
            if path.extension().is_some_and(|e| e == "toml") && !calendar {
                let text = std::fs::read_to_string(&path).expect("read");
                Config::parse(Path::new("/data"), Some(&text), &path.display().to_string())
                    .expect("valid config");
                n += 1;
            }
        }
        assert!(n >= 1);
    }

    #[test]
    fn defaults_match_the_documented_template() {
        let c = Config::parse(Path::new("/data"), None, "defaults").expect("defaults");
        assert_eq!(c.server.http, Some("127.0.0.1:8080".parse().expect("addr")));
        assert_eq!(c.store.path, Path::new("/data/pkid.db"));
        assert!(matches!(c.keys.backend, KeyBackendConfig::Software));
        assert_eq!(c.keys.algorithm, KeyType::EcP256);
        let names: Vec<_> = c.profiles.keys().cloned().collect();
        assert_eq!(
            names,
            ["organization", "person", "tls-client", "tls-server"]
        );
        use pkid_protocols::tsp::HashAlgorithm;
        assert!(c.tsa.enabled);
        assert_eq!(
            c.tsa.settings.hash_algorithms,
            [
                HashAlgorithm::Sha256,
                HashAlgorithm::Sha384,
                HashAlgorithm::Sha512
            ],
            "SHA-1 refused by default"
        );
        assert_eq!(c.tsa.clock_sync, ClockSyncMode::Auto);
        assert_eq!(c.tsa.settings.accuracy_ms, 1000);
    }

    #[test]
    fn connection_timeouts_and_caps_default_within_thirty_seconds_and_refuse_zero() {
        let c = Config::parse(Path::new("/d"), None, "t").expect("defaults");
        for t in [
            c.server.idle_timeout,
            c.server.body_timeout,
            c.server.header_timeout,
        ] {
            assert!(t > Duration::ZERO && t <= Duration::from_secs(30), "{t:?}");
        }
        assert!(c.server.max_connections_per_client <= c.server.max_connections);
        for zero in [
            "idle_timeout_secs = 0",
            "body_timeout_secs = 0",
            "max_connections = 0",
            "max_connections_per_client = 0",
        ] {
            let text = format!("[server]\n{zero}\n");
            Config::parse(Path::new("/d"), Some(&text), "t").expect_err(zero);
        }
    }

    #[test]
    fn user_values_override_and_unknown_keys_are_refused() {
        let c = Config::parse(
            Path::new("/d"),
            Some("[server]\nhttp = \"127.0.0.1:9\"\n"),
            "t",
        )
        .expect("ok");
        assert_eq!(c.server.http, Some("127.0.0.1:9".parse().expect("addr")));
        assert_eq!(
            c.server.https,
            Some("127.0.0.1:8443".parse().expect("addr"))
        );
        let e =
            Config::parse(Path::new("/d"), Some("[server]\nhtp = \"x\"\n"), "t").expect_err("typo");
        assert!(e.to_string().contains("htp"), "{e}");
    }

    #[test]
    fn ocsp_cache_bounds_are_in_bytes_and_old_files_still_load() {
        let c = Config::parse(Path::new("/d"), None, "defaults").expect("defaults");
        assert_eq!(c.ocsp.cache_bytes, 256 << 20);
        assert_eq!(c.ocsp.unknown_cache_bytes, 4 << 20);
        assert_eq!(c.ocsp.forms_bytes, 64 << 20);
        // A file written before the byte bounds existed names only cache_capacity.
        let old = "[ocsp]\ncache_capacity = 5000\n";
        let c = Config::parse(Path::new("/d"), Some(old), "old").expect("old file");
        assert_eq!(c.ocsp.cache_capacity, 5000);
        assert_eq!(c.ocsp.cache_bytes, 256 << 20);
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        for (text, needle) in [
            ("[keys]\nalgorithm = \"p521\"\n", "keys.algorithm"),
            ("[keys]\nbackend = \"tpm\"\n", "keys.backend"),
            ("[store]\nfollow_interval_ms = 5000\n", "follow_interval_ms"),
            ("[store]\ngap_timeout_secs = 5\n", "gap_timeout_secs"),
            ("[store]\ngap_timeout_secs = 3601\n", "gap_timeout_secs"),
            ("[ca]\nroot_subject = \"nonsense\"\n", "root_subject"),
            ("[tsa]\npolicy = \"not.an.oid\"\n", "tsa.policy"),
            ("[tsa]\nhash_algorithms = [\"md5\"]\n", "tsa.hash_algorithms"),
            ("[tsa]\nhash_algorithms = []\n", "tsa.hash_algorithms"),
            ("[tsa]\naccuracy_ms = 500\n", "tsa.accuracy_ms"),
            ("[tsa]\nclock_sync = \"maybe\"\n", "tsa.clock_sync"),
            ("[tsa]\nserial_block = 0\n", "tsa.serial_block"),
            ("[ocsp]\nvalidity_hours = 241\n", "validity_hours"),
            ("[ocsp]\nvalidity_hours = 24\nrefresh_before_hours = 24\n", "refresh_before_hours"),
            ("[ocsp]\nunknown_issuer = \"good\"\n", "unknown_issuer"),
            ("[crl]\nnext_update_hours = 0\n", "crl.next_update_hours"),
            ("[crl]\ndelta_next_update_hours = 999\n", "delta_next_update_hours"),
            ("[crl]\nshards = 5000\n", "crl.shards"),
            ("[crl]\ndebounce_ms = 60001\n", "debounce_ms"),
            ("[crl]\nexpired_grace_hours = 1\n", "RFC 5280"),
            ("[profiles.x]\nkey_usage=[\"keyCertSign\"]\nextended_key_usage=[]\nextended_key_usage_critical=false\nmax_validity_days=1\ndefault_validity_days=1\nallowed_keys=[\"p256\"]\nrequired_subject=[]\ncopy_subject_alt_name=false\n", "keyCertSign"),
        ] {
            let e = Config::parse(Path::new("/d"), Some(text), "t").expect_err(text);
            assert!(e.to_string().contains(needle), "{e} should mention {needle}");
        }
    }

    #[test]
    fn pin_comes_from_file_and_is_not_printed() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("pin"), "4321\n").expect("write");
        let text = "[keys]\nbackend = \"pkcs11\"\n[keys.pkcs11]\npin_file = \"pin\"\n";
        let c = Config::parse(dir.path(), Some(text), "t").expect("ok");
        let KeyBackendConfig::Pkcs11(p) = &c.keys.backend else {
            panic!("pkcs11 expected")
        };
        let s = p.settings().expect("pin");
        assert_eq!(s.pin.as_str(), "4321");
        assert!(!format!("{s:?}").contains("4321"));
    }
}
