//! CRL scopes: which CRL a certificate belongs to and the URLs it carries for it.
//!
//! A *scope* is an issuer, or one partition ("shard") of it. The CA assigns a certificate its
//! partition when it signs it (the CRL distribution point goes into the certificate), and the
//! CRL service publishes one CRL per scope; both read the rules here, so neither needs the other.

use crate::config::{CrlConfig, ROOT};
use x509_cert::serial_number::SerialNumber;

/// Identifies one published CRL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CrlKey {
    /// Issuer name (`root`, `issuing`).
    pub issuer: String,
    /// Partition, or `None` for the issuer-wide CRL.
    pub shard: Option<u32>,
    /// A delta CRL.
    pub delta: bool,
}

impl CrlKey {
    /// The key of a full (`delta = false`) or delta CRL.
    pub fn new(issuer: &str, shard: Option<u32>, delta: bool) -> Self {
        Self {
            issuer: issuer.to_string(),
            shard,
            delta,
        }
    }

    /// `issuing`, `issuing/3`, `issuing-delta`, `issuing/3-delta`: the URL path without `.crl`.
    pub fn label(&self) -> String {
        let d = if self.delta { "-delta" } else { "" };
        match self.shard {
            None => format!("{}{d}", self.issuer),
            Some(n) => format!("{}/{n}{d}", self.issuer),
        }
    }
}

/// The URL of a scope's CRL.
pub fn crl_url(public_url: &str, issuer: &str, shard: Option<u32>, delta: bool) -> String {
    format!(
        "{public_url}/crl/{}.crl",
        CrlKey::new(issuer, shard, delta).label()
    )
}

/// Whether an issuer's certificates are partitioned. The root's CRL (CA certificates only)
/// never is.
pub fn partitioned(config: &CrlConfig, issuer: &str) -> bool {
    config.enabled && config.shards > 0 && issuer != ROOT
}

/// The partition a new certificate of `issuer` joins, if partitioning applies: serials are
/// random, so their low 64 bits spread certificates evenly.
pub fn shard_for(config: &CrlConfig, issuer: &str, serial: &SerialNumber) -> Option<u32> {
    if !partitioned(config, issuer) {
        return None;
    }
    let bytes = serial.as_bytes();
    let low = bytes[bytes.len().saturating_sub(8)..]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    u32::try_from(low % u64::from(config.shards)).ok()
}

/// The CRL distribution point and freshestCRL URLs a certificate in a scope carries.
pub fn certificate_urls(
    config: &CrlConfig,
    public_url: &str,
    issuer: &str,
    shard: Option<u32>,
) -> (String, Option<String>) {
    let cdp = crl_url(public_url, issuer, shard, false);
    let freshest =
        (config.enabled && config.deltas).then(|| crl_url(public_url, issuer, shard, true));
    (cdp, freshest)
}
