//! Mail through an SMTP relay (lettre's asynchronous transport on tokio, rustls for TLS).
//!
//! ```text
//! QueuedMessage ─▶ MIME (From, To, Subject RFC 2047-encoded, Message-ID from the key,
//!                  text/plain UTF-8) ─▶ SMTP (plain | STARTTLS required | implicit TLS) ─▶ 250
//! ```

use super::DeliveryError;
use crate::config::{EmailConfig, Secret};
use crate::store::QueuedMessage;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// Longest wait for the relay (connect, each reply): a stalled relay must not hold the worker.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the mail transport could not be set up from `[notify.email]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailSetupError {
    /// `smtp_url` is not a URL lettre accepts.
    #[error("notify.email.smtp_url: {0}")]
    Url(String),
    /// `from` is not a mailbox.
    #[error("notify.email.from is not a mailbox: {0}")]
    From(String),
    /// A credential's variable is unset or its file unreadable (the value is never shown).
    #[error("notify.email credential: {0}")]
    Credential(String),
}

/// The configured relay and sender.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The `Message-ID` right-hand side: the sender's domain.
    domain: String,
}

/// Reads a credential named in the configuration.
fn read_secret(s: &Secret) -> Result<String, MailSetupError> {
    match s {
        Secret::Env(name) => std::env::var(name)
            .map_err(|_| MailSetupError::Credential(format!("the variable {name} is not set"))),
        Secret::File(path) => std::fs::read_to_string(path)
            .map(|t| t.lines().next().unwrap_or("").to_string())
            .map_err(|e| MailSetupError::Credential(format!("{}: {e}", path.display()))),
    }
}

impl Mailer {
    /// Builds the transport (no connection is made until the first message).
    pub fn new(c: &EmailConfig) -> Result<Self, MailSetupError> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&c.smtp_url)
            .map_err(|e| MailSetupError::Url(e.to_string()))?
            .timeout(Some(SMTP_TIMEOUT));
        if let (Some(user), Some(password)) = (&c.username, &c.password) {
            builder =
                builder.credentials(Credentials::new(read_secret(user)?, read_secret(password)?));
        }
        let from: Mailbox = c
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| MailSetupError::From(e.to_string()))?;
        let domain = from.email.domain().to_string();
        Ok(Self {
            transport: builder.build(),
            from,
            domain,
        })
    }

    /// The `Message-ID` of a message: the same for every retry of it (a hash of the
    /// idempotency key, which names a recipient and so is not shown as such), so a mailbox
    /// that already holds it can drop the duplicate.
    pub fn message_id(&self, idempotency_key: &str) -> String {
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, idempotency_key.as_bytes());
        format!("<{}@{}>", hex::encode(&digest.as_ref()[..16]), self.domain)
    }

    /// Sends one message; `Ok` once the relay accepted it (250 after DATA).
    pub async fn send(&self, m: &QueuedMessage) -> Result<(), DeliveryError> {
        let to: Mailbox = m
            .message
            .recipient
            .parse()
            .map_err(|_| DeliveryError::BadRecipient)?;
        let mail = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.message.subject.clone())
            .message_id(Some(self.message_id(&m.message.idempotency_key)))
            .header(ContentType::TEXT_PLAIN)
            .body(m.message.body.clone())
            .map_err(|e| DeliveryError::Malformed(e.to_string()))?;
        self.transport
            .send(mail)
            .await
            .map(|_| ())
            .map_err(|e| smtp_error(&e))
    }
}

/// What a failed SMTP exchange is, without the server's text (it may quote the recipient).
fn smtp_error(e: &lettre::transport::smtp::Error) -> DeliveryError {
    if let Some(code) = e.status() {
        DeliveryError::Refused {
            code: code.to_string(),
            permanent: e.is_permanent(),
        }
    } else if e.is_timeout() {
        DeliveryError::Timeout
    } else if e.is_tls() {
        DeliveryError::Tls
    } else {
        // The transport's own cause (connection refused, name not resolved): it names the
        // relay, never the recipient.
        let cause = std::error::Error::source(e).map_or_else(|| e.to_string(), |c| c.to_string());
        DeliveryError::Unreachable(cause)
    }
}
