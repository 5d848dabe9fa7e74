//! The fulfilment worker: approved central requests become a key, a certificate and a signing
//! account.
//!
//! ```text
//! every [csc] fulfil_interval (and at start):
//!   desk.approved_central ─▶ for each request (oldest first):
//!     credential already stored (a crash after it)? ─▶ desk.complete_approved
//!     P-256 key generated ─▶ CSR signed by it ─▶ desk.issue_approved (stored, audited)
//!     key sealed under the data key ─▶ store.provision: account (if new), credential,
//!       activation code (SHA-256), activation mail, audit — one transaction
//!       └─ fails: desk.withdraw_issued (revoked cessationOfOperation), retried next round
//!     desk.complete_approved ─▶ fulfilled, the RA's fulfilment notices queued
//!   approved recover requests of remote-signing accounts:
//!     csc.recover: unlock (when still locked) or re-enrol (unless already done for this
//!       request: new activation code and mail, sessions ended) ─▶ desk.complete_approved
//! ```
//!
//! A background worker rather than the desk's after-commit hook: approval answers at once
//! whatever the key backend's state, a failure (token unplugged, store busy) is retried on the
//! next round without anyone acting, and a restart picks up what was approved meanwhile
//! (`docs/decisions.md`, "Central keys are fulfilled by a worker").

use super::CscError;
use crate::config::CscConfig;
use crate::keys::seal::DataSealer;
use crate::ra::desk::RequestDesk;
use crate::store::csc::{key_context, CredentialRecord, Provision};
use crate::store::ra::{RequestKind, RequestRecord};
use crate::store::{AuditEntry, Channel, OutboxMessage, Outcome, Store};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use der::{Decode, Encode};
use std::sync::Arc;
use tokio::sync::watch;

/// The actor the worker's RA calls are recorded under.
pub const ACTOR: &str = "pkid-csc";
/// Requests fulfilled per round at most (the next round continues).
const BATCH: usize = 100;

/// The worker.
pub struct Fulfiller {
    desk: Arc<RequestDesk>,
    store: Arc<dyn Store>,
    sealer: Arc<dyn DataSealer>,
    config: CscConfig,
    csc: Arc<super::Csc>,
}

/// A one-time activation code as made: the code for the link, and what the store keeps.
pub struct ActivationCode {
    /// 256 random bits, base64url: the last path segment of the link.
    pub code: zeroize::Zeroizing<String>,
    /// SHA-256 of the code.
    pub sha256: Vec<u8>,
}

/// Makes an activation code.
pub fn activation_code() -> Result<ActivationCode, CscError> {
    let (code, sha256) = super::random_secret("")?;
    Ok(ActivationCode { code, sha256 })
}

impl Fulfiller {
    /// The worker over the desk, when remote signing is served (enabled, the data key loaded).
    pub fn new(
        desk: Arc<RequestDesk>,
        store: Arc<dyn Store>,
        config: &CscConfig,
        csc: Option<Arc<super::Csc>>,
    ) -> Option<Self> {
        let sealer = desk.sealer()?;
        let csc = csc?;
        config.enabled.then(|| Self {
            desk,
            store,
            sealer,
            config: config.clone(),
            csc,
        })
    }

    /// Runs rounds until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.round()).await {
                Ok(n) if n > 0 => tracing::info!(fulfilled = n, "central requests fulfilled"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "the central fulfilment round failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.fulfil_interval) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One round: fulfils every approved central request it can; returns how many.
    pub fn round(&self) -> usize {
        let due = match self.desk.approved_central(BATCH) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "listing approved central requests; retrying next round");
                return 0;
            }
        };
        let mut done = 0;
        // One failure is logged once per round, not once per request: a key backend that is
        // down fails every request the same way.
        let mut failed = 0usize;
        let mut first_error = None;
        for r in due {
            match self.fulfil(&r) {
                Ok(()) => done += 1,
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert((r.id, e.to_string()));
                }
            }
        }
        if let Some((request, error)) = first_error {
            tracing::warn!(request, failed, error = %error, "central requests not fulfilled; retrying next round");
        }
        done
    }

    /// Fulfils one approved central request.
    pub fn fulfil(&self, r: &RequestRecord) -> Result<(), CscError> {
        let who = RequestDesk::console(ACTOR);
        if r.kind == RequestKind::Recover {
            // The account unlocked or enrolled again, then the request completed (the
            // organisation and the subscriber told).
            self.csc.recover(r, ACTOR)?;
            self.desk
                .complete_approved(&who, r.id, None)
                .map_err(desk_error)?;
            return Ok(());
        }
        if let Some(c) = self.store.credential_for_request(r.id)? {
            self.desk
                .complete_approved(&who, r.id, Some(&c.serial))
                .map_err(desk_error)?;
            return Ok(());
        }
        let email = r.subscriber.email.clone().ok_or_else(|| {
            CscError::InvalidRequest(format!("request {} has no subscriber email", r.id))
        })?;
        let pkcs8 = crate::keys::software::generate_pkcs8(pkid_protocols::KeyType::EcP256)
            .map_err(|e| CscError::Internal(e.to_string()))?;
        let csr = csr_for(&pkcs8)?;
        let issued = self
            .desk
            .issue_approved(&who, r.id, &csr)
            .map_err(desk_error)?;
        let stored = self.provision(r, &email, &pkcs8, &issued.serial);
        if let Err(e) = stored {
            if let Err(w) = self.desk.withdraw_issued(&who, r.id, &issued.serial) {
                tracing::error!(request = r.id, serial = %issued.serial, error = %w, "a central certificate whose account could not be stored could not be withdrawn");
            }
            return Err(e);
        }
        self.desk
            .complete_approved(&who, r.id, Some(&issued.serial))
            .map_err(desk_error)?;
        Ok(())
    }

    fn provision(
        &self,
        r: &RequestRecord,
        email: &str,
        pkcs8: &[u8],
        serial: &str,
    ) -> Result<(), CscError> {
        let id = {
            let mut b = [0u8; 16];
            aws_lc_rs::rand::fill(&mut b).map_err(|_| CscError::Internal("random".into()))?;
            hex::encode(b)
        };
        let sealed = self
            .sealer
            .seal(pkcs8, key_context(&id).as_bytes())
            .map_err(|e| CscError::Unavailable(e.to_string()))?;
        let code = activation_code()?;
        let now = self.desk.clock().now();
        let expires = now + self.config.activation.as_secs();
        let link = format!("{}/activate/{}", self.config.portal_url, code.code.as_str());
        let mail = activation_mail(
            r,
            email,
            &id,
            &link,
            self.config.activation.as_secs() / 3600,
        );
        let audit = AuditEntry {
            at: now,
            actor: ACTOR.into(),
            action: "csc.account.provision".into(),
            target: r.id.to_string(),
            outcome: Outcome::Success,
            detail: format!("credential={id} serial={serial}"),
        };
        self.store.provision(
            &Provision {
                email: email.to_owned(),
                organisation: r.organisation.clone(),
                credential: CredentialRecord {
                    id,
                    account: 0,
                    request: r.id,
                    serial: serial.to_owned(),
                    key_sealed: sealed,
                    enabled: true,
                    created_at: now,
                },
                activation: (code.sha256, expires),
                mail: vec![mail],
                at: now,
            },
            &audit,
        )?;
        Ok(())
    }
}

fn desk_error(e: crate::ra::desk::DeskError) -> CscError {
    CscError::Unavailable(e.to_string())
}

/// A PKCS#10 request for the key, signed by it (the CA's one issuance path checks it; the
/// subject comes from the RA request).
fn csr_for(pkcs8: &[u8]) -> Result<Vec<u8>, CscError> {
    let internal = |e: &dyn std::fmt::Display| CscError::Internal(format!("building the CSR: {e}"));
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
        .map_err(|_| internal(&"the new key does not load"))?;
    let curve = const_oid::db::rfc5912::SECP_256_R_1;
    let spki = spki::SubjectPublicKeyInfoOwned {
        algorithm: spki::AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
            parameters: Some(der::Any::encode_from(&curve).map_err(|e| internal(&e))?),
        },
        subject_public_key: der::asn1::BitString::from_bytes(pair.public_key().as_ref())
            .map_err(|e| internal(&e))?,
    };
    let info = x509_cert::request::CertReqInfo {
        version: x509_cert::request::Version::V1,
        subject: x509_cert::name::Name::default(),
        public_key: spki,
        attributes: Default::default(),
    };
    let tbs = info.to_der().map_err(|e| internal(&e))?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signature = pair
        .sign(&rng, &tbs)
        .map_err(|_| internal(&"signing the request failed"))?;
    let req = x509_cert::request::CertReq {
        info,
        algorithm: spki::AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        },
        signature: der::asn1::BitString::from_bytes(signature.as_ref())
            .map_err(|e| internal(&e))?,
    };
    let der = req.to_der().map_err(|e| internal(&e))?;
    // Round-trip: what the CA will parse.
    x509_cert::request::CertReq::from_der(&der).map_err(|e| internal(&e))?;
    Ok(der)
}

/// The activation mail to the subscriber's official address (Vietnamese, then English). Its body
/// carries the one-time link: the outbox empties it once delivered (`secret`).
pub fn activation_mail(
    r: &RequestRecord,
    email: &str,
    credential: &str,
    link: &str,
    hours: u64,
) -> OutboxMessage {
    let vi = format!(
        "Yêu cầu số {id} đã được xử lý: khóa ký số của ông/bà được tạo và lưu giữ tập trung tại \
         hệ thống của tổ chức cung cấp dịch vụ, chứng thư số đã được cấp và tài khoản ký số từ \
         xa đã được tạo cho địa chỉ {email}.",
        id = r.id
    );
    let en = format!(
        "Request {id} has been fulfilled: your signing key was created and is kept centrally by \
         the certification service, your certificate was issued and a remote-signing account \
         was created for {email}.",
        id = r.id
    );
    account_mail(
        r.subscriber.name.as_deref().unwrap_or(""),
        email,
        (&vi, &en),
        &format!("csc-activation:{credential}:{email}:email"),
        Some(r.id),
        link,
        hours,
    )
}

/// A mail with a one-time activation link: `intro` (Vietnamese, English) says why.
pub fn account_mail(
    name: &str,
    email: &str,
    intro: (&str, &str),
    idempotency_key: &str,
    request: Option<i64>,
    link: &str,
    hours: u64,
) -> OutboxMessage {
    let (vi, en) = intro;
    let body = format!(
        "Kính gửi {name},\n\n{vi}\n\n\
         Để kích hoạt tài khoản (đặt mật khẩu và đăng ký ứng dụng xác thực trên điện thoại), mở \
         liên kết sau trong vòng {hours} giờ. Liên kết chỉ dùng được một lần; không chuyển thư \
         này cho người khác.\n\n{link}\n\n\
         ---\n\n\
         Dear {name},\n\n{en}\n\n\
         To activate the account (set its password and enrol an authenticator app on your \
         phone), open this link within {hours} hours. It works once; do not forward this \
         mail.\n\n{link}\n",
    );
    OutboxMessage {
        idempotency_key: idempotency_key.to_owned(),
        channel: Channel::Email,
        recipient: email.to_owned(),
        subject: "Kích hoạt tài khoản ký số từ xa / Activate your remote-signing account".into(),
        body,
        event: "csc-activation".into(),
        request,
        secret: true,
    }
}
