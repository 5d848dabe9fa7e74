//! The webhook channel: each notice POSTed as JSON, with an `Idempotency-Key` header, over
//! HTTP/1.1 (hyper's client connection on tokio; rustls with the system's roots for https).
//!
//! ```text
//! QueuedMessage ─▶ POST url, Content-Type: application/json, Idempotency-Key: <key>
//!               ─▶ 2xx delivered │ anything else, or no answer, failed (retried)
//! ```
//!
//! One connection per notice: notices are rare (a few per request), and a fresh connection
//! after a failure needs no pool health logic.

use super::DeliveryError;
use crate::config::WebhookConfig;
use crate::store::QueuedMessage;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for the gateway: connect, TLS, request and answer together.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// The header a receiver de-duplicates retries by.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Why the webhook client could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookSetupError {
    /// The URL has no host.
    #[error("notify.webhook.url: {0}")]
    Url(String),
    /// The TLS client could not be built.
    #[error("notify.webhook TLS: {0}")]
    Tls(String),
}

/// The configured gateway.
pub struct WebhookSender {
    uri: Uri,
    host: String,
    port: u16,
    /// The TLS client for `https://`; `None` for `http://`.
    tls: Option<tokio_rustls::TlsConnector>,
}

impl WebhookSender {
    /// Checks the URL and, for https, loads the system's trust roots.
    pub fn new(c: &WebhookConfig) -> Result<Self, WebhookSetupError> {
        let uri: Uri = c
            .url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| WebhookSetupError::Url(e.to_string()))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| WebhookSetupError::Url("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot parse is skipped, as browsers do.
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| WebhookSetupError::Tls(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Self {
            uri,
            host,
            port,
            tls,
        })
    }

    /// POSTs one notice; `Ok` on a 2xx answer.
    pub async fn send(&self, m: &QueuedMessage) -> Result<(), DeliveryError> {
        match tokio::time::timeout(WEBHOOK_TIMEOUT, self.post(m)).await {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::Timeout),
        }
    }

    async fn post(&self, m: &QueuedMessage) -> Result<(), DeliveryError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| DeliveryError::Unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| DeliveryError::Malformed(e.to_string()))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|_| DeliveryError::Tls)?;
                self.exchange(TokioIo::new(stream), m).await
            }
            None => self.exchange(TokioIo::new(tcp), m).await,
        }
    }

    async fn exchange<T>(&self, io: T, m: &QueuedMessage) -> Result<(), DeliveryError>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let unreachable = |e: hyper::Error| DeliveryError::Unreachable(e.to_string());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(unreachable)?;
        tokio::spawn(async move {
            // The connection ends with the exchange; its error, if any, is the request's.
            let _ = connection.await;
        });
        let authority = self
            .uri
            .authority()
            .map_or_else(|| self.host.clone(), |a| a.to_string());
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_KEY, m.message.idempotency_key.as_str())
            .header(hyper::header::USER_AGENT, "pkid")
            .body(Full::new(Bytes::from(m.message.body.clone())))
            .map_err(|e| DeliveryError::Malformed(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(unreachable)?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status.as_u16()))
        }
    }
}
