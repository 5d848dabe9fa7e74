//! The `[est]` section and its `[[est.labels]]`: the EST enrollment server (RFC 7030, see
//! `docs/est.md`). A label is a path segment (`/.well-known/est/{label}/…`) that selects the
//! issuer, the profile, the organisation the clients belong to and the approval policy.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The EST operation names: a label may not take one of them (the path would be ambiguous).
const OPERATIONS: [&str; 5] = [
    "cacerts",
    "simpleenroll",
    "simplereenroll",
    "csrattrs",
    "serverkeygen",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawEst {
    default_label: String,
    credential_cache_secs: u64,
    retry_after_secs: u64,
    labels: Vec<RawLabel>,
}

impl Default for RawEst {
    fn default() -> Self {
        Self {
            default_label: String::new(),
            credential_cache_secs: 60,
            retry_after_secs: 60,
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
    #[serde(default)]
    allow_subject_change: bool,
    #[serde(default)]
    escrow: bool,
    #[serde(default = "optional")]
    channel_binding: String,
}

fn optional() -> String {
    "optional".into()
}

fn auto() -> String {
    "auto".into()
}

/// 1 to 32 lower-case letters, digits and '-': label, organisation and issuer names.
pub(super) fn slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What an enrollment label (`[[est.labels]]`, `[[cmp.labels]]`) names, checked: its profile is
/// configured, its organisation is an id, its issuer (default: the issuing CA made by `init`)
/// is not the root. `at` names the label in errors. The issuer and the approval.
pub(super) fn label_target(
    at: &str,
    profile: &str,
    organisation: &str,
    issuer: Option<String>,
    approval: &str,
    profiles: &BTreeMap<String, crate::config::SubscriberProfile>,
) -> Result<(String, Approval), String> {
    if !profiles.contains_key(profile) {
        let known: Vec<_> = profiles.keys().cloned().collect();
        return Err(format!(
            "{at}.profile {profile:?} is not configured (profiles: {})",
            known.join(", ")
        ));
    }
    if !slug(organisation) {
        return Err(format!(
            "{at}.organisation {organisation:?} is not an organisation id"
        ));
    }
    let issuer = issuer.unwrap_or_else(|| crate::config::ISSUING.into());
    if issuer == crate::config::ROOT || !slug(&issuer) {
        return Err(format!(
            "{at}.issuer {issuer:?}: name an issuing CA (the root signs only CA certificates)"
        ));
    }
    let approval = match approval {
        "auto" => Approval::Auto,
        "operator" => Approval::Operator,
        other => return Err(format!("{at}.approval {other:?}: auto or operator")),
    };
    Ok((issuer, approval))
}

/// Who decides an enrollment of a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approval {
    /// Issued at once to an authenticated client.
    Auto,
    /// Each new CSR becomes an RA request; the client polls until an officer decides.
    Operator,
}

impl Approval {
    /// `auto` or `operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Operator => "operator",
        }
    }
}

/// Whether a CSR must carry the TLS connection's channel binding (RFC 9266 tls-exporter) in
/// its challengePassword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelBinding {
    /// Checked when the CSR carries a challengePassword; a CSR without one is accepted.
    Optional,
    /// Every CSR must carry it, over TLS 1.3.
    Required,
}

/// One `[[est.labels]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EstLabel {
    /// The path segment.
    pub name: String,
    /// The issuer that signs (default: the issuing CA `pkid init` made).
    pub issuer: String,
    /// The subscriber profile.
    pub profile: String,
    /// The organisation (RA id) whose clients enroll under this label.
    pub organisation: String,
    /// Auto or operator approval.
    pub approval: Approval,
    /// Whether `simplereenroll` may change the subject or subjectAltName.
    pub allow_subject_change: bool,
    /// Whether `serverkeygen` keeps the generated private key sealed in escrow (never for a
    /// profile whose keys sign with non-repudiation).
    pub escrow: bool,
    /// Whether CSRs must carry the tls-exporter channel binding.
    pub channel_binding: ChannelBinding,
}

/// EST settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EstConfig {
    /// The label served at `/.well-known/est/{operation}` (none: those paths answer 404).
    pub default_label: Option<String>,
    /// Seconds a verified Basic password is remembered (0: Argon2 on every request).
    pub credential_cache_secs: u64,
    /// `Retry-After` of a 202 answer (operator approval), seconds.
    pub retry_after_secs: u64,
    /// The labels by name.
    pub labels: BTreeMap<String, EstLabel>,
}

impl EstConfig {
    /// The label a request names, or the default label for the label-less path.
    pub fn label(&self, name: Option<&str>) -> Option<&EstLabel> {
        match name {
            Some(n) => self.labels.get(n),
            None => self
                .default_label
                .as_deref()
                .and_then(|n| self.labels.get(n)),
        }
    }

    pub(super) fn from_raw(
        r: RawEst,
        profiles: &BTreeMap<String, crate::config::SubscriberProfile>,
    ) -> Result<Self, String> {
        if r.credential_cache_secs > 3600 {
            return Err("est.credential_cache_secs must be at most 3600".into());
        }
        if !(1..=86_400).contains(&r.retry_after_secs) {
            return Err("est.retry_after_secs must be between 1 and 86400".into());
        }
        let mut labels = BTreeMap::new();
        for (i, mut l) in r.labels.into_iter().enumerate() {
            let at = format!("est.labels[{i}]");
            if !slug(&l.name) || OPERATIONS.contains(&l.name.as_str()) {
                return Err(format!(
                    "{at}.name {:?}: 1 to 32 lower-case letters, digits and '-', not an EST operation name",
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
            let non_repudiation = profiles
                .get(&l.profile)
                .is_some_and(|p| p.profile.key_usage.non_repudiation());
            if l.escrow && non_repudiation {
                return Err(format!(
                    "{at}.escrow: profile {:?} signs with non-repudiation; its keys must exist only with their holder and are never escrowed",
                    l.profile
                ));
            }
            let channel_binding = match l.channel_binding.as_str() {
                "optional" => ChannelBinding::Optional,
                "required" => ChannelBinding::Required,
                other => {
                    return Err(format!(
                        "{at}.channel_binding {other:?}: optional or required"
                    ))
                }
            };
            let label = EstLabel {
                name: l.name.clone(),
                issuer,
                profile: l.profile,
                organisation: l.organisation,
                approval,
                allow_subject_change: l.allow_subject_change,
                escrow: l.escrow,
                channel_binding,
            };
            if labels.insert(l.name.clone(), label).is_some() {
                return Err(format!("{at}.name {:?} is given twice", l.name));
            }
        }
        let default_label = match r.default_label.as_str() {
            "" => None,
            d if labels.contains_key(d) => Some(d.to_owned()),
            d => return Err(format!("est.default_label {d:?} is not one of est.labels")),
        };
        Ok(Self {
            default_label,
            credential_cache_secs: r.credential_cache_secs,
            retry_after_secs: r.retry_after_secs,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn parse(est: &str) -> Result<Config, String> {
        Config::parse(Path::new("/data"), Some(est), "test").map_err(|e| e.to_string())
    }

    const LABEL: &str = "[[est.labels]]\nname = \"devices\"\nprofile = \"tls-client\"\norganisation = \"so-gd-dn\"\n";

    #[test]
    fn labels_parse_with_their_defaults() {
        let c = parse(&format!("[est]\ndefault_label = \"devices\"\n{LABEL}")).expect("valid");
        let l = c.est.label(None).expect("the default label");
        assert_eq!(l.issuer, "issuing");
        assert_eq!(l.approval, super::Approval::Auto);
        assert!(!l.allow_subject_change && !l.escrow);
        assert_eq!(l.channel_binding, super::ChannelBinding::Optional);
        assert_eq!(c.est.label(Some("devices")), Some(l));
        assert_eq!(c.est.credential_cache_secs, 60);
        let c = parse(&format!(
            "{LABEL}escrow = true\nchannel_binding = \"required\"\n"
        ))
        .expect("escrow on a profile without non-repudiation");
        let l = c.est.label(Some("devices")).expect("label");
        assert!(l.escrow);
        assert_eq!(l.channel_binding, super::ChannelBinding::Required);
        let none = parse("").expect("defaults");
        assert!(none.est.labels.is_empty() && none.est.label(None).is_none());
    }

    #[test]
    fn each_mistake_is_named() {
        for (text, says) in [
            (
                LABEL.replace("devices", "cacerts"),
                "not an EST operation name",
            ),
            (LABEL.replace("devices", "Thiết bị"), "lower-case"),
            (LABEL.replace("tls-client", "nosuch"), "is not configured"),
            (format!("{LABEL}issuer = \"root\"\n"), "name an issuing CA"),
            (format!("{LABEL}approval = \"maybe\"\n"), "auto or operator"),
            (format!("{LABEL}{LABEL}"), "given twice"),
            (
                "[est]\ndefault_label = \"other\"\n".to_owned(),
                "not one of est.labels",
            ),
            (
                "[est]\nretry_after_secs = 0\n".to_owned(),
                "retry_after_secs",
            ),
            (format!("{LABEL}colour = \"red\"\n"), "colour"),
            (
                LABEL.replace("tls-client", "person") + "escrow = true\n",
                "never escrowed",
            ),
            (
                format!("{LABEL}channel_binding = \"tls-unique\"\n"),
                "optional or required",
            ),
        ] {
            let e = parse(&text).expect_err(&text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
