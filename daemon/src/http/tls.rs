//! TLS on the HTTPS listener: the server certificate, and client certificates asked for but
//! not required.
//!
//! ```text
//! ClientHello ─▶ CertificateRequest (optional) ─▶ client chain (often the leaf alone)
//!   ─▶ ClientTrust::verify_client_cert: + pkid's CA certificates ─▶ webpki path validation
//!      against [server] client_trust (clientAuth EKU, validity, signatures)
//!   ─▶ leaf of a pkid issuer: must be `good` in the revocation index (revoked, on hold or
//!      unknown serial ─▶ handshake refused)
//!   ─▶ ClientIdentity, once per connection ─▶ an extension on every request of it
//! ```
//!
//! TLS 1.3 has no renegotiation, so a route cannot ask for a certificate later: the listener
//! asks every client, and a client that sends none is served anonymously (its requests carry
//! no [`ClientIdentity`]). Path validation is rustls's webpki verifier; this module only adds
//! the chain completion and the revocation check around it.

use crate::ca::Authority;
use crate::config::Config;
use crate::index::{serial_key, Entry, RevocationIndex};
use arc_swap::ArcSwap;
use der::{Decode, Encode};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Longest chain followed when completing one (leaf, intermediates, root).
const MAX_CHAIN: usize = 8;

/// The verified client certificate of an HTTPS connection, as handlers see it (an axum
/// extension: `Option<Extension<ClientIdentity>>`). Cheap to clone: one per request.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    /// The client's certificate, DER.
    pub leaf: CertificateDer<'static>,
    /// The chain, leaf first, completed from pkid's CA certificates up to the trust anchor.
    pub chain: Arc<[CertificateDer<'static>]>,
    /// The pkid issuer's name (`issuing`) when pkid issued the leaf, else the issuer's DN.
    pub issuer: Arc<str>,
    /// The leaf's serial number, canonical lower-case hex.
    pub serial: Arc<str>,
    /// The leaf's subject DN (RFC 4514 string).
    pub subject: Arc<str>,
}

/// The connection's tls-exporter channel binding (RFC 9266): 32 bytes exported under the label
/// `EXPORTER-Channel-Binding` with no context, computed once at the handshake of a TLS 1.3
/// connection and put beside [`ClientIdentity`] on every request of it (TLS 1.2 connections
/// have none: RFC 9266 defines it for TLS 1.3, and tls-unique is not offered, docs/est.md).
#[derive(Clone, Copy)]
pub struct TlsExporter(pub [u8; TLS_EXPORTER_LEN]);

/// Bytes of the tls-exporter value (RFC 9266 §2).
pub const TLS_EXPORTER_LEN: usize = 32;

/// The exporter label of RFC 9266 §2.
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

impl std::fmt::Debug for TlsExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsExporter(..)")
    }
}

impl TlsExporter {
    /// The value of a TLS 1.3 connection; `None` for an earlier version.
    pub fn of(conn: &rustls::ServerConnection) -> Option<Self> {
        if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return None;
        }
        conn.export_keying_material([0u8; TLS_EXPORTER_LEN], TLS_EXPORTER_LABEL, None)
            .ok()
            .map(Self)
    }
}

/// A CA certificate pkid signs with: its name, certificate and subject (DER, for matching).
#[derive(Debug)]
struct PkidIssuer {
    name: String,
    der: CertificateDer<'static>,
    subject: Vec<u8>,
    issuer: Vec<u8>,
}

/// The HTTPS listener's client-certificate policy: webpki validation against the configured
/// anchors, chains completed from pkid's issuers, and the revocation index.
pub struct ClientTrust {
    webpki: Arc<dyn ClientCertVerifier>,
    authority: Arc<Authority>,
    /// pkid's issuers as chain-completion candidates, rebuilt when the authority has taken on
    /// another issuer (issuers are only ever added).
    issuers: ArcSwap<Vec<PkidIssuer>>,
    index: Arc<RevocationIndex>,
}

fn pkid_issuers(authority: &Authority) -> Vec<PkidIssuer> {
    authority
        .issuers()
        .iter()
        .map(|i| {
            let tbs = &i.certificate.tbs_certificate;
            PkidIssuer {
                name: i.name.clone(),
                der: CertificateDer::from(i.der.clone()),
                subject: tbs.subject.to_der().unwrap_or_default(),
                issuer: tbs.issuer.to_der().unwrap_or_default(),
            }
        })
        .collect()
}

/// Why the TLS set-up cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A configured file cannot be read or holds no certificate.
    #[error("{0}")]
    File(String),
    /// rustls refused the configuration.
    #[error("{0}")]
    Rustls(String),
}

/// Reads PEM (one or more certificates) or, failing that, one DER certificate.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes =
        std::fs::read(path).map_err(|e| TlsSetupError::File(format!("{}: {e}", path.display())))?;
    let pem: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsSetupError::File(format!("{}: {e}", path.display())))?;
    if !pem.is_empty() {
        return Ok(pem);
    }
    x509_cert::Certificate::from_der(&bytes)
        .map(|_| vec![CertificateDer::from(bytes)])
        .map_err(|_| TlsSetupError::File(format!("{}: no certificate in it", path.display())))
}

impl ClientTrust {
    /// The policy for `config.server.client_trust`, completing chains from `authority`'s
    /// issuers and checking their leaves against `index`.
    pub fn new(
        config: &Config,
        authority: Arc<Authority>,
        index: Arc<RevocationIndex>,
    ) -> Result<Self, TlsSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        for path in &config.server.client_trust {
            for cert in read_certificates(path)? {
                roots.add(cert).map_err(|e| {
                    TlsSetupError::File(format!("{}: not a trust anchor: {e}", path.display()))
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsSetupError::Rustls(format!("server.client_trust: {e}")))?;
        Ok(Self {
            webpki,
            issuers: ArcSwap::from_pointee(pkid_issuers(&authority)),
            authority,
            index,
        })
    }

    /// pkid's issuers, including any the authority took on since the last call.
    fn issuers(&self) -> Arc<Vec<PkidIssuer>> {
        let current = self.issuers.load_full();
        if current.len() == self.authority.issuer_count() {
            return current;
        }
        let fresh = Arc::new(pkid_issuers(&self.authority));
        self.issuers.store(fresh.clone());
        fresh
    }

    /// The leaf's chain: the leaf, then whichever of `sent` and pkid's CA certificates issued
    /// the previous one, until a self-issued certificate or no issuer is found.
    fn complete(
        &self,
        leaf: &CertificateDer<'_>,
        sent: &[CertificateDer<'_>],
    ) -> Vec<CertificateDer<'static>> {
        let names = |der: &[u8]| {
            x509_cert::Certificate::from_der(der).ok().map(|c| {
                (
                    c.tbs_certificate.subject.to_der().unwrap_or_default(),
                    c.tbs_certificate.issuer.to_der().unwrap_or_default(),
                )
            })
        };
        let issuers = self.issuers();
        let mut chain = vec![leaf.clone().into_owned()];
        let Some((_, mut wanted)) = names(leaf) else {
            return chain;
        };
        while chain.len() < MAX_CHAIN {
            let from_sent = sent.iter().find_map(|c| {
                let (s, i) = names(c)?;
                (s == wanted).then(|| (c.clone().into_owned(), s, i))
            });
            let found = from_sent.or_else(|| {
                issuers
                    .iter()
                    .find(|p| p.subject == wanted)
                    .map(|p| (p.der.clone(), p.subject.clone(), p.issuer.clone()))
            });
            let Some((der, subject, issuer)) = found else {
                break;
            };
            if chain.contains(&der) {
                break;
            }
            chain.push(der);
            if subject == issuer {
                break;
            }
            wanted = issuer;
        }
        chain
    }

    /// Refuses a leaf of a pkid issuer that the index does not hold as `good`.
    fn check_revocation(&self, leaf: &x509_cert::Certificate) -> Result<(), rustls::Error> {
        let issuer = leaf.tbs_certificate.issuer.to_der().unwrap_or_default();
        let issuers = self.issuers();
        let Some(pkid) = issuers.iter().find(|p| p.subject == issuer) else {
            return Ok(()); // another CA's certificate: its own revocation is its anchor's business
        };
        let refuse = |e| Err(rustls::Error::InvalidCertificate(e));
        let key = serial_key(leaf.tbs_certificate.serial_number.as_bytes());
        let entry = key.and_then(|k| self.index.issuer(&pkid.name)?.lookup(k));
        match entry.map(|p| p.entry()) {
            Some(Entry::Good) => Ok(()),
            Some(Entry::Revoked { .. }) => refuse(CertificateError::Revoked),
            None => refuse(CertificateError::UnknownRevocationStatus),
        }
    }

    /// The identity of a connection whose handshake this policy accepted, from the
    /// certificates the client presented (`None` for an anonymous client).
    pub fn identity(&self, presented: Option<&[CertificateDer<'_>]>) -> Option<ClientIdentity> {
        let (leaf, sent) = presented?.split_first()?;
        let cert = x509_cert::Certificate::from_der(leaf).ok()?;
        let tbs = &cert.tbs_certificate;
        let issuer_der = tbs.issuer.to_der().unwrap_or_default();
        let issuer = self
            .issuers()
            .iter()
            .find(|p| p.subject == issuer_der)
            .map_or_else(|| tbs.issuer.to_string(), |p| p.name.clone());
        Some(ClientIdentity {
            leaf: leaf.clone().into_owned(),
            chain: self.complete(leaf, sent).into(),
            issuer: issuer.into(),
            serial: pkid_protocols::serial::to_hex(&tbs.serial_number).into(),
            subject: tbs.subject.to_string().into(),
        })
    }
}

impl std::fmt::Debug for ClientTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTrust")
            .field("issuers", &self.issuers.load())
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for ClientTrust {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Clients often send the leaf alone: offer webpki pkid's own CA certificates too.
        let mut pool: Vec<CertificateDer<'_>> = intermediates.to_vec();
        for p in self.issuers().iter() {
            if p.subject != p.issuer && !pool.contains(&p.der) {
                pool.push(p.der.clone());
            }
        }
        let verified = self.webpki.verify_client_cert(end_entity, &pool, now)?;
        let leaf = x509_cert::Certificate::from_der(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        self.check_revocation(&leaf)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The HTTPS listener's TLS acceptor: `[server] tls_cert`/`tls_key`, ALPN h2 and HTTP/1.1,
/// client certificates asked for and checked by `trust`.
pub fn acceptor(
    config: &Config,
    trust: Arc<ClientTrust>,
) -> Result<tokio_rustls::TlsAcceptor, TlsSetupError> {
    let file =
        |p: &Path, e: &dyn std::fmt::Display| TlsSetupError::File(format!("{}: {e}", p.display()));
    let chain = read_certificates(&config.server.tls_cert)?;
    let key_der =
        std::fs::read(&config.server.tls_key).map_err(|e| file(&config.server.tls_key, &e))?;
    let key = PrivateKeyDer::Pkcs8(key_der.into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .with_client_cert_verifier(trust)
        .with_single_cert(chain, key)
        .map_err(|e| TlsSetupError::Rustls(format!("TLS certificate/key: {e}")))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))
}
