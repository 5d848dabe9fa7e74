//! The `[cmp]` section and its `[[cmp.labels]]`: the CMP server (RFC 9810, lightweight profile
//! RFC 9483, HTTP transfer RFC 9811; see `docs/cmp.md`). A label is a path segment
//! (`/.well-known/cmp/p/{label}`) that selects the issuer, the profile, the organisation whose
//! shared secrets protect the requests, the approval policy and what the clients may use.

use super::est::{label_target, slug};
use super::Approval;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCmp {
    default_label: String,
    message_time_window_secs: u64,
    confirm_timeout_secs: u64,
    check_after_secs: u64,
    labels: Vec<RawLabel>,
}

impl Default for RawCmp {
    fn default() -> Self {
        Self {
            default_label: String::new(),
            message_time_window_secs: 300,
            confirm_timeout_secs: 300,
            check_after_secs: 60,
            labels: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    name: String,
    #[serde(default)]
    issuer: Option<String>,
    profile: String,
    organisation: String,
    #[serde(default = "auto")]
    approval: String,
    #[serde(default = "both")]
    protection: Vec<String>,
    #[serde(default = "yes")]
    implicit_confirm: bool,
    #[serde(default)]
    central_keygen: bool,
    #[serde(default)]
    escrow: bool,
    #[serde(default)]
    trusted_ras: Vec<String>,
}

fn auto() -> String {
    "auto".into()
}

fn both() -> Vec<String> {
    vec!["mac".into(), "signature".into()]
}

fn yes() -> bool {
    true
}

/// One `[[cmp.labels]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmpLabel {
    /// The path segment.
    pub name: String,
    /// The issuer that signs (default: the issuing CA `pkid init` made).
    pub issuer: String,
    /// The subscriber profile.
    pub profile: String,
    /// The organisation (RA id) whose CMP credentials protect requests under this label.
    pub organisation: String,
    /// Auto or operator approval.
    pub approval: Approval,
    /// Whether MAC (shared-secret) protection is accepted.
    pub mac: bool,
    /// Whether signature protection is accepted.
    pub signature: bool,
    /// Whether implicit confirmation is granted when a client asks for it.
    pub implicit_confirm: bool,
    /// Whether an ir / cr without a key gets one the server generates (RFC 9483 §4.1.6).
    pub central_keygen: bool,
    /// Whether centrally generated keys are kept sealed under the data key (escrow).
    pub escrow: bool,
    /// The SHA-256 fingerprints of the RA certificates this label trusts (RFC 9483 §5.2):
    /// a message signed with one of them (at `extraCerts[0]`) may carry nested messages and
    /// raVerified proof of possession.
    pub trusted_ras: Vec<[u8; 32]>,
}

/// The SHA-256 fingerprint of a certificate as `openssl x509 -fingerprint -sha256` prints it
/// (`AB:CD:…`, with or without the `sha256 Fingerprint=` prefix and the colons, any case).
fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let t = text.trim();
    let t = t
        .split_once('=')
        .filter(|(k, _)| k.to_ascii_lowercase().contains("fingerprint"))
        .map_or(t, |(_, v)| v.trim());
    let t = t.strip_prefix("sha256:").unwrap_or(t);
    let hex_digits: String = t.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(hex_digits).ok()?;
    bytes.try_into().ok()
}

/// CMP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmpConfig {
    /// The label served at `/.well-known/cmp` (none: that path answers with an error message).
    pub default_label: Option<String>,
    /// How far a request's messageTime may be from the server's clock, seconds.
    pub message_time_window_secs: u64,
    /// Seconds an issued certificate waits for its certConf before the transaction is failed
    /// and the certificate revoked.
    pub confirm_timeout_secs: u64,
    /// checkAfter of a pollRep while an operator has not decided, seconds.
    pub check_after_secs: u64,
    /// The labels by name.
    pub labels: BTreeMap<String, CmpLabel>,
}

impl Default for CmpConfig {
    fn default() -> Self {
        Self {
            default_label: None,
            message_time_window_secs: 300,
            confirm_timeout_secs: 300,
            check_after_secs: 60,
            labels: BTreeMap::new(),
        }
    }
}

impl CmpConfig {
    /// The label a request names, or the default label for the label-less path.
    pub fn label(&self, name: Option<&str>) -> Option<&CmpLabel> {
        match name {
            Some(n) => self.labels.get(n),
            None => self
                .default_label
                .as_deref()
                .and_then(|n| self.labels.get(n)),
        }
    }

    pub(super) fn from_raw(
        r: RawCmp,
        profiles: &BTreeMap<String, crate::config::SubscriberProfile>,
    ) -> Result<Self, String> {
        if !(10..=3600).contains(&r.message_time_window_secs) {
            return Err("cmp.message_time_window_secs must be between 10 and 3600".into());
        }
        if !(10..=86_400).contains(&r.confirm_timeout_secs) {
            return Err("cmp.confirm_timeout_secs must be between 10 and 86400".into());
        }
        if !(1..=86_400).contains(&r.check_after_secs) {
            return Err("cmp.check_after_secs must be between 1 and 86400".into());
        }
        let mut labels = BTreeMap::new();
        for (i, mut l) in r.labels.into_iter().enumerate() {
            let at = format!("cmp.labels[{i}]");
            if !slug(&l.name) {
                return Err(format!(
                    "{at}.name {:?}: 1 to 32 lower-case letters, digits and '-'",
                    l.name
                ));
            }
            let (issuer, approval) = label_target(
                &at,
                &l.profile,
                &l.organisation,
                l.issuer.take(),
                &l.approval,
                profiles,
            )?;
            let (mut mac, mut signature) = (false, false);
            for p in &l.protection {
                match p.as_str() {
                    "mac" => mac = true,
                    "signature" => signature = true,
                    other => {
                        return Err(format!(
                            "{at}.protection {other:?}: \"mac\" or \"signature\""
                        ))
                    }
                }
            }
            if !(mac || signature) {
                return Err(format!(
                    "{at}.protection: name \"mac\", \"signature\" or both"
                ));
            }
            if l.escrow && !l.central_keygen {
                return Err(format!(
                    "{at}.escrow: only centrally generated keys are escrowed; set central_keygen = true"
                ));
            }
            if l.central_keygen {
                let signs = profiles
                    .get(&l.profile)
                    .is_some_and(|p| p.profile.key_usage.non_repudiation());
                if signs {
                    return Err(format!(
                        "{at}.central_keygen: profile {:?} signs with non-repudiation, whose keys only their holder generates",
                        l.profile
                    ));
                }
                if approval == Approval::Operator {
                    return Err(format!(
                        "{at}.central_keygen: not offered with approval = \"operator\" (the key would wait in the server)"
                    ));
                }
            }
            let mut trusted_ras = Vec::new();
            for (j, f) in l.trusted_ras.iter().enumerate() {
                let fp = parse_fingerprint(f).ok_or_else(|| {
                    format!(
                        "{at}.trusted_ras[{j}] {f:?}: the RA certificate's SHA-256 fingerprint (openssl x509 -noout -fingerprint -sha256 -in ra.crt)"
                    )
                })?;
                if trusted_ras.contains(&fp) {
                    return Err(format!("{at}.trusted_ras[{j}] is given twice"));
                }
                trusted_ras.push(fp);
            }
            let label = CmpLabel {
                name: l.name.clone(),
                issuer,
                profile: l.profile,
                organisation: l.organisation,
                approval,
                mac,
                signature,
                implicit_confirm: l.implicit_confirm,
                central_keygen: l.central_keygen,
                escrow: l.escrow,
                trusted_ras,
            };
            if labels.insert(l.name.clone(), label).is_some() {
                return Err(format!("{at}.name {:?} is given twice", l.name));
            }
        }
        let default_label = match r.default_label.as_str() {
            "" => None,
            d if labels.contains_key(d) => Some(d.to_owned()),
            d => return Err(format!("cmp.default_label {d:?} is not one of cmp.labels")),
        };
        Ok(Self {
            default_label,
            message_time_window_secs: r.message_time_window_secs,
            confirm_timeout_secs: r.confirm_timeout_secs,
            check_after_secs: r.check_after_secs,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Approval, Config};
    use std::path::Path;

    fn parse(cmp: &str) -> Result<Config, String> {
        Config::parse(Path::new("/data"), Some(cmp), "test").map_err(|e| e.to_string())
    }

    const LABEL: &str = "[[cmp.labels]]\nname = \"devices\"\nprofile = \"tls-client\"\norganisation = \"so-gd-dn\"\n";

    const FP: &str = "9F:86:D0:81:88:4C:7D:65:9A:2F:EA:A0:C5:5A:D0:15:A3:BF:4F:1B:2B:0B:82:2C:D1:5D:6C:15:B0:F0:0A:08";

    #[test]
    fn trusted_ras_are_fingerprints_as_openssl_prints_them() {
        let c = parse(&format!(
            "{LABEL}trusted_ras = [\"sha256 Fingerprint={FP}\"]\n"
        ))
        .expect("valid");
        let l = c.cmp.label(Some("devices")).expect("label");
        assert_eq!(l.trusted_ras.len(), 1);
        assert_eq!(l.trusted_ras[0][0], 0x9f);
        assert_eq!(
            super::parse_fingerprint(&FP.to_lowercase()),
            Some(l.trusted_ras[0])
        );
        assert!(parse(LABEL).expect("valid").cmp.labels["devices"]
            .trusted_ras
            .is_empty());
    }

    #[test]
    fn labels_parse_with_their_defaults() {
        let c = parse(&format!("[cmp]\ndefault_label = \"devices\"\n{LABEL}")).expect("valid");
        let l = c.cmp.label(None).expect("the default label");
        assert_eq!(l.issuer, "issuing");
        assert_eq!(l.approval, Approval::Auto);
        assert!(l.mac && l.signature && l.implicit_confirm);
        assert_eq!(c.cmp.label(Some("devices")), Some(l));
        assert_eq!(c.cmp.message_time_window_secs, 300);
        let none = parse("").expect("defaults");
        assert!(none.cmp.labels.is_empty() && none.cmp.label(None).is_none());
    }

    #[test]
    fn each_mistake_is_named() {
        for (text, says) in [
            (LABEL.replace("devices", "Thiết bị"), "lower-case"),
            (LABEL.replace("tls-client", "nosuch"), "is not configured"),
            (format!("{LABEL}issuer = \"root\"\n"), "name an issuing CA"),
            (format!("{LABEL}approval = \"maybe\"\n"), "auto or operator"),
            (format!("{LABEL}protection = [\"pin\"]\n"), "\"mac\" or"),
            (format!("{LABEL}protection = []\n"), "or both"),
            (format!("{LABEL}escrow = true\n"), "set central_keygen"),
            (
                format!("{LABEL}central_keygen = true\napproval = \"operator\"\n"),
                "approval",
            ),
            (format!("{LABEL}{LABEL}"), "given twice"),
            (
                "[cmp]\ndefault_label = \"other\"\n".to_owned(),
                "not one of cmp.labels",
            ),
            (
                "[cmp]\nmessage_time_window_secs = 0\n".to_owned(),
                "message_time_window_secs",
            ),
            (format!("{LABEL}colour = \"red\"\n"), "colour"),
            (
                format!("{LABEL}trusted_ras = [\"not hex\"]\n"),
                "SHA-256 fingerprint",
            ),
            (
                format!(
                    "{LABEL}trusted_ras = [\"{FP}\", \"{}\"]\n",
                    FP.replace(':', "")
                ),
                "given twice",
            ),
        ] {
            let e = parse(&text).expect_err(&text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
