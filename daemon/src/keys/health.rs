//! Readiness of keys: can every key the daemon uses sign right now?
//!
//! ```text
//! KeyBackend::load / generate ─▶ LoadedKeys::register(role, signer)   (a weak reference)
//! /readyz ─▶ KeyBackend::check ─▶ LoadedKeys::probe ─▶ each live signer signs PROBE_MESSAGE
//!                                      └─ the verdict is kept for PROBE_TTL
//! ```
//!
//! One rule for both backends: a key that cannot be read or cannot sign makes the daemon not
//! ready. Probing by signing is the only check that sees every way a key can fail (a token
//! object deleted, a device gone, a key file moved away), and it covers every key loaded through
//! the backend, the issuers added with `pkid ca add-issuer` included. The probe signs through the
//! bare signer, so it is not counted in the signature metrics.

use super::{KeyError, KeyRole, Signer};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// How long a probe's verdict is reused. `/readyz` may be polled every second by a load
/// balancer; one signature per key every few seconds is negligible even on a network HSM,
/// and a key that stops working is noticed within this long.
pub const PROBE_TTL: Duration = Duration::from_secs(3);
/// What the probe signs: fixed, and never a structure anyone could take for a certificate,
/// CRL or response (it is not DER).
const PROBE_MESSAGE: &[u8] = b"pkid readiness probe";

/// The keys a backend handed out, probed together.
#[derive(Default)]
pub struct LoadedKeys {
    keys: Mutex<Vec<(KeyRole, Weak<dyn Signer>)>>,
    verdict: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl LoadedKeys {
    /// Remembers `signer` as the key of `role` (replacing an earlier one of the same role), and
    /// forgets keys nobody holds any more.
    pub fn register(&self, role: &KeyRole, signer: &Arc<dyn Signer>) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.retain(|(r, k)| r != role && k.strong_count() > 0);
        keys.push((role.clone(), Arc::downgrade(signer)));
    }

    /// Signs [`PROBE_MESSAGE`] with every live key, or reuses a verdict younger than
    /// [`PROBE_TTL`]. The first key that fails is [`KeyError::Unavailable`], naming its role.
    pub fn probe(&self) -> Result<(), KeyError> {
        let mut verdict = self.verdict.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, result)) = verdict.as_ref() {
            if at.elapsed() < PROBE_TTL {
                return result.clone().map_err(KeyError::Unavailable);
            }
        }
        let live: Vec<(KeyRole, Arc<dyn Signer>)> = self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|(r, k)| Some((r.clone(), k.upgrade()?)))
            .collect();
        let result = live.iter().try_for_each(|(role, key)| {
            key.sign(PROBE_MESSAGE)
                .map(drop)
                .map_err(|e| format!("the {role} key cannot sign: {e}"))
        });
        *verdict = Some((Instant::now(), result.clone()));
        result.map_err(KeyError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::super::SignError;
    use super::*;
    use pkid_protocols::SignatureAlgorithm;
    use spki::SubjectPublicKeyInfoOwned;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    struct Flaky {
        public_key: SubjectPublicKeyInfoOwned,
        broken: AtomicBool,
        calls: AtomicUsize,
    }

    impl Signer for Flaky {
        fn algorithm(&self) -> SignatureAlgorithm {
            SignatureAlgorithm::EcdsaSha256
        }
        fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
            &self.public_key
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, SignError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.broken.load(Ordering::SeqCst) {
                Err(SignError::Unavailable("gone".into()))
            } else {
                Ok(vec![1])
            }
        }
    }

    fn flaky() -> Arc<Flaky> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .expect("keygen");
        let der = kp.public_key().as_der().expect("der");
        Arc::new(Flaky {
            public_key: pkid_protocols::algorithm::parse_spki(der.as_ref()).expect("spki"),
            broken: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
        })
    }

    #[test]
    fn a_key_that_cannot_sign_makes_the_probe_fail_and_dropped_keys_are_not_probed() {
        let loaded = LoadedKeys::default();
        let good = flaky();
        let bad = flaky();
        bad.broken.store(true, Ordering::SeqCst);
        let good_dyn: Arc<dyn Signer> = good.clone();
        loaded.register(&KeyRole::Ocsp, &good_dyn);
        loaded.probe().expect("ready");
        {
            let bad_dyn: Arc<dyn Signer> = bad.clone();
            loaded.register(&KeyRole::Responder("sub".into()), &bad_dyn);
            *loaded.verdict.lock().expect("lock") = None;
            let e = loaded.probe().expect_err("not ready");
            assert!(e.to_string().contains("ocsp-sub key cannot sign"), "{e}");
            // Cached: the keys are not signed with again within the TTL.
            let calls = bad.calls.load(Ordering::SeqCst);
            assert!(loaded.probe().is_err());
            assert_eq!(bad.calls.load(Ordering::SeqCst), calls);
        }
        drop(bad);
        *loaded.verdict.lock().expect("lock") = None;
        loaded
            .probe()
            .expect("the dropped key is no longer the daemon's");
    }
}
