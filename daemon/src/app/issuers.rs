//! Taking on an issuer added by the CLI while the daemon runs.
//!
//! ```text
//! pkid ca add-issuer NAME (another process) ─▶ store: CA cert, responder cert + registry row
//! follower ─▶ IssuerWatcher::apply: a change for an issuer not served ─▶ read the registry
//!   ─▶ for each new issuer: key from the backend ─▶ Authority (CRLs, /ca/NAME.crt, --issuer)
//!                                                ─▶ RevocationIndex (read from the store)
//!                                                ─▶ OcspService (its own responder)
//! ```
//!
//! The watcher is the first listener, so an issuer is served before the index and the OCSP
//! cache see the same batch; the CRL service publishes for it on its next tick.

use crate::ca::Authority;
use crate::datadir;
use crate::index::RevocationIndex;
use crate::keys::KeyBackend;
use crate::metrics::Metrics;
use crate::ocsp::OcspService;
use crate::store::follow::ChangeListener;
use crate::store::{Change, Store};
use std::path::PathBuf;
use std::sync::Arc;

/// Watches the change feed for issuers the daemon does not serve yet.
pub struct IssuerWatcher {
    /// The data directory (the init-made issuer's responder files).
    pub data: PathBuf,
    /// The store (registry, certificates).
    pub store: Arc<dyn Store>,
    /// Where the new issuers' keys are.
    pub keys: Arc<dyn KeyBackend>,
    /// The CA, which takes the issuer on.
    pub authority: Arc<Authority>,
    /// The revocation index.
    pub index: Arc<RevocationIndex>,
    /// The OCSP responder, when enabled.
    pub ocsp: Option<Arc<OcspService>>,
    /// Signer metrics.
    pub metrics: Arc<Metrics>,
}

impl IssuerWatcher {
    /// Loads and serves every registered issuer not served yet; returns their names. An issuer
    /// that cannot be loaded (its key missing from the backend) is logged and tried again on
    /// the next change that names it.
    pub fn take_on_new(&self) -> Vec<String> {
        let records = match self.store.issuers() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading the issuer registry");
                return Vec::new();
            }
        };
        let new: Vec<_> = records
            .into_iter()
            .filter(|r| !self.authority.has_issuer(&r.name))
            .collect();
        let url = self.authority.config().server.public_url.clone();
        let mut added = Vec::new();
        for record in new {
            let loaded = datadir::issuers::registered(
                self.store.as_ref(),
                self.keys.as_ref(),
                &url,
                Some(&self.metrics),
                std::slice::from_ref(&record),
            );
            let issuer = match loaded.map(|mut v| v.pop()) {
                Ok(Some(i)) => i,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(issuer = %record.name, error = %e, "cannot take on the new issuer");
                    continue;
                }
            };
            if let Err(e) = self.serve(issuer) {
                tracing::error!(issuer = %record.name, error = %e, "cannot take on the new issuer");
                continue;
            }
            tracing::info!(issuer = %record.name, "serving a new issuer");
            added.push(record.name);
        }
        added
    }

    fn serve(&self, issuer: crate::ca::Issuer) -> Result<(), String> {
        // The index first: the OCSP responder refuses an issuer without one.
        self.index
            .add_issuer(self.store.as_ref(), &issuer.name)
            .map_err(|e| e.to_string())?;
        if let Some(ocsp) = &self.ocsp {
            let served = datadir::issuers::responder(
                &self.data,
                self.store.as_ref(),
                self.keys.as_ref(),
                &issuer,
                Some(&self.metrics),
            )
            .map_err(|e| e.to_string())?;
            ocsp.add_issuer(served).map_err(|e| e.to_string())?;
        }
        self.authority.add_issuer(issuer);
        Ok(())
    }
}

impl ChangeListener for IssuerWatcher {
    fn apply(&self, changes: &[Change]) {
        if changes
            .iter()
            .any(|c| !self.authority.has_issuer(&c.issuer))
        {
            self.take_on_new();
        }
    }
}
