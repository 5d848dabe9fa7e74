//! The `[notify]` section: how the RA's notifications leave (see `docs/notify.md`).

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest poll interval, seconds: a queued notice waits at most this long when no transition
/// wakes the worker (a wake-up is immediate).
const MAX_POLL_SECS: u64 = 3600;
/// Longest reminder lead, days: certificates live a few years at most.
const MAX_REMINDER_DAYS: u32 = 365;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNotify {
    poll_secs: u64,
    expiry_reminder_days: u32,
    language: String,
    english: bool,
    email: Option<RawEmail>,
    webhook: Option<RawWebhook>,
}

impl Default for RawNotify {
    fn default() -> Self {
        Self {
            poll_secs: 30,
            expiry_reminder_days: 30,
            language: "vi".into(),
            english: true,
            email: None,
            webhook: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    smtp_url: String,
    from: String,
    #[serde(default)]
    username_env: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
}

/// Notification settings. With neither `email` nor `webhook` set, notices are still queued
/// (nothing is lost) but none leaves; the worker reports them pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyConfig {
    /// How often the worker looks for due messages when not woken (30 s).
    pub poll: Duration,
    /// Days before a certificate's notAfter its renewal reminder is queued (30).
    pub expiry_reminder_days: u32,
    /// The language bodies are written in first (`vi`, the only one shipped).
    pub language: String,
    /// Whether an English translation follows the Vietnamese text (true).
    pub english: bool,
    /// Mail through an SMTP relay.
    pub email: Option<EmailConfig>,
    /// A JSON webhook (an SMS gateway).
    pub webhook: Option<WebhookConfig>,
}

/// Where mail leaves (`[notify.email]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailConfig {
    /// `smtp://host:port` (plain, a local relay), `smtp://host:port?tls=required` (STARTTLS),
    /// `smtps://host:port` (implicit TLS). Never carries credentials.
    pub smtp_url: String,
    /// The `From:` mailbox (`Tên <addr>` or `addr`).
    pub from: String,
    /// Where the SMTP user name comes from, if the relay needs one.
    pub username: Option<Secret>,
    /// Where the SMTP password comes from.
    pub password: Option<Secret>,
}

/// Where a credential is read from at start-up: never the configuration file itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secret {
    /// An environment variable's name.
    Env(String),
    /// A file (relative to the data directory), its first line.
    File(PathBuf),
}

/// Where webhook notices are POSTed (`[notify.webhook]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: String,
}

impl NotifyConfig {
    pub(super) fn from_raw(r: RawNotify, data_dir: &Path) -> Result<Self, String> {
        if !(1..=MAX_POLL_SECS).contains(&r.poll_secs) {
            return Err(format!(
                "notify.poll_secs must be between 1 and {MAX_POLL_SECS}"
            ));
        }
        if !(1..=MAX_REMINDER_DAYS).contains(&r.expiry_reminder_days) {
            return Err(format!(
                "notify.expiry_reminder_days must be between 1 and {MAX_REMINDER_DAYS}"
            ));
        }
        if r.language != "vi" {
            return Err(format!(
                "notify.language {:?} is not shipped (only \"vi\")",
                r.language
            ));
        }
        let email = r.email.map(|e| email(e, data_dir)).transpose()?;
        let webhook = r
            .webhook
            .map(|w| {
                if w.url.starts_with("http://") || w.url.starts_with("https://") {
                    w.url
                        .parse::<hyper::Uri>()
                        .map_err(|e| format!("notify.webhook.url: {e}"))?;
                    Ok(WebhookConfig { url: w.url })
                } else {
                    Err("notify.webhook.url must start with http:// or https://".to_string())
                }
            })
            .transpose()?;
        Ok(Self {
            poll: Duration::from_secs(r.poll_secs),
            expiry_reminder_days: r.expiry_reminder_days,
            language: r.language,
            english: r.english,
            email,
            webhook,
        })
    }
}

fn email(e: RawEmail, data_dir: &Path) -> Result<EmailConfig, String> {
    let scheme_ok = ["smtp://", "smtps://"]
        .iter()
        .any(|s| e.smtp_url.starts_with(s));
    if !scheme_ok {
        return Err("notify.email.smtp_url must start with smtp:// or smtps://".into());
    }
    // user:password@ in the URL would put the secret in the configuration (and its examples):
    // credentials come only from username_env / password_file / password_env.
    let authority = e.smtp_url.split("://").nth(1).unwrap_or("");
    let authority = authority.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("notify.email.smtp_url must not carry credentials; use \
                    username_env and password_file/password_env"
            .into());
    }
    if e.from.trim().is_empty() {
        return Err("notify.email.from is required".into());
    }
    let username = e.username_env.map(Secret::Env);
    let password = match (e.password_env, e.password_file) {
        (Some(_), Some(_)) => {
            return Err("notify.email: set password_env or password_file, not both".into())
        }
        (Some(v), None) => Some(Secret::Env(v)),
        (None, Some(f)) => Some(Secret::File(data_dir.join(f))),
        (None, None) => None,
    };
    if username.is_some() != password.is_some() {
        return Err("notify.email: a user name needs a password and a password a user name".into());
    }
    Ok(EmailConfig {
        smtp_url: e.smtp_url,
        from: e.from,
        username,
        password,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<super::NotifyConfig, String> {
        Config::parse(Path::new("/data"), Some(text), "test")
            .map(|c| c.notify)
            .map_err(|e| e.reason)
    }

    #[test]
    fn absent_section_gives_defaults_and_no_channel() {
        let n = parse("").expect("defaults");
        assert_eq!(n.poll.as_secs(), 30);
        assert_eq!(n.expiry_reminder_days, 30);
        assert_eq!(n.language, "vi");
        assert!(n.english);
        assert!(n.email.is_none() && n.webhook.is_none());
    }

    #[test]
    fn channels_parse_and_credentials_stay_out_of_the_url() {
        let n = parse(
            "[notify.email]\nsmtp_url = \"smtps://mail.example.vn:465\"\nfrom = \"pkid <ca@example.vn>\"\n\
             username_env = \"PKID_SMTP_USER\"\npassword_file = \"smtp.pass\"\n\
             [notify.webhook]\nurl = \"https://sms.example.vn/hook\"\n",
        )
        .expect("parsed");
        let e = n.email.expect("email");
        assert_eq!(
            e.password,
            Some(super::Secret::File("/data/smtp.pass".into()))
        );
        assert_eq!(
            n.webhook.expect("webhook").url,
            "https://sms.example.vn/hook"
        );
        let refused =
            parse("[notify.email]\nsmtp_url = \"smtp://u:p@relay:25\"\nfrom = \"a@b.vn\"\n")
                .expect_err("credentials in the URL");
        assert!(refused.contains("must not carry credentials"), "{refused}");
        assert!(
            !refused.contains("u:p"),
            "the secret is not echoed: {refused}"
        );
        for bad in [
            "[notify.email]\nsmtp_url = \"http://relay\"\nfrom = \"a@b.vn\"\n",
            "[notify.webhook]\nurl = \"ftp://x\"\n",
            "[notify]\npoll_secs = 0\n",
            "[notify]\nlanguage = \"fr\"\n",
            "[notify]\nunknown = 1\n",
        ] {
            assert!(parse(bad).is_err(), "accepted: {bad}");
        }
    }
}
