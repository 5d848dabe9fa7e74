//! Recovery of escrowed keys: for an approved `recover` request with key origin `central`
//! naming a certificate whose private key pkid generated and keeps in escrow (EST
//! `serverkeygen` on a label with `escrow = true`), the key is opened under the data key and
//! released to the approved requester, encrypted to a certificate they name (CMS
//! EnvelopedData, [`crate::keygen::envelope`]); the request is fulfilled and both are audited.
//!
//! ```text
//!  recover request (key_origin central, certificate S), approved
//!    └─ recover-key: escrowed key of S? profile without non-repudiation? same organisation?
//!       ─▶ open (data key, context certificate:S:escrowed-key) ─▶ EnvelopedData to the
//!       recipient certificate ─▶ key.recover audited (release counted) ─▶ request fulfilled
//! ```
//!
//! The key is in clear only in this process's memory, wiped when dropped; it is never written
//! or logged unencrypted.

use super::{KeyDevices, TokenError};
use crate::keygen::envelope;
use crate::ra::access::Principal;
use crate::ra::desk::DeskError;
use crate::store::devices::escrow_context;
use crate::store::ra::{KeyOrigin, RequestKind};
use crate::store::Outcome;
use der::Decode;
use x509_cert::Certificate;

/// An escrowed key released.
pub struct Released {
    /// The certificate whose key it is (serial hex).
    pub certificate: String,
    /// `ContentInfo(EnvelopedData)`, DER, readable only with the recipient's private key.
    pub enveloped: Vec<u8>,
}

impl KeyDevices {
    /// For the approved `recover` request `id`: the escrowed private key of the request's
    /// certificate, encrypted to `recipient` (a certificate, PEM or DER). Refused when the
    /// request is not an approved recover request with key origin `central`, the certificate
    /// has no escrowed key, or its profile signs with non-repudiation.
    pub fn recover_key(
        &self,
        who: &Principal,
        id: i64,
        recipient: &[u8],
    ) -> Result<Released, TokenError> {
        const ACTION: &str = "key.recover";
        let target = id.to_string();
        let refuse = |e: TokenError| self.refuse(who, ACTION, &target, e);
        let recipient = pkid_protocols::x509::pem_or_der(recipient, &["CERTIFICATE"])
            .ok()
            .and_then(|der| Certificate::from_der(&der).ok())
            .ok_or_else(|| {
                refuse(TokenError::Conflict(
                    "the recipient certificate is neither a PEM nor a DER certificate".into(),
                ))
            })?;
        let r = self
            .desk
            .approved_for_fulfilment(who, id)
            .map_err(|e| match e {
                DeskError::Forbidden(m) => refuse(TokenError::Forbidden(m)),
                e => e.into(),
            })?;
        if r.kind != RequestKind::Recover || r.key_origin != KeyOrigin::Central {
            return Err(refuse(TokenError::Conflict(format!(
                "request {id} is a {} {} request; an escrowed key is released for a recover request with key origin central",
                r.key_origin.as_str(),
                r.kind.as_str()
            ))));
        }
        let serial = r.certificate.clone().unwrap_or_default();
        let escrowed = self.store.escrowed_key(&serial)?.ok_or_else(|| {
            refuse(TokenError::NotFound(format!(
                "certificate {serial} has no escrowed key"
            )))
        })?;
        let cert = self
            .store
            .certificate(&serial)?
            .ok_or_else(|| refuse(TokenError::NotFound(format!("no certificate {serial}"))))?;
        let non_repudiation = self
            .config
            .profile(&cert.profile)
            .is_none_or(|p| p.profile.key_usage.non_repudiation());
        if non_repudiation {
            return Err(refuse(TokenError::Forbidden(format!(
                "certificate {serial} is of profile {:?}, whose keys sign with non-repudiation: such a key is never released",
                cert.profile
            ))));
        }
        if escrowed.organisation != r.organisation {
            return Err(refuse(TokenError::Forbidden(format!(
                "the escrowed key of certificate {serial} is not organisation {:?}'s",
                r.organisation
            ))));
        }
        let pkcs8 = self
            .sealer
            .open(&escrowed.sealed, escrow_context(&serial).as_bytes())
            .map_err(|e| {
                refuse(TokenError::Internal(format!(
                    "opening the escrowed key: {e}"
                )))
            })?;
        let enveloped = envelope::key_package_for(&recipient, &pkcs8).map_err(|e| match e {
            envelope::EnvelopeError::UnsupportedRecipient(m) => refuse(TokenError::Conflict(m)),
            e => refuse(TokenError::Internal(e.to_string())),
        })?;
        let tbs = &recipient.tbs_certificate;
        let detail = format!(
            "the escrowed key of certificate {serial} released for request {id}, encrypted to certificate {} of {}",
            hex::encode(tbs.serial_number.as_bytes()),
            tbs.subject
        );
        self.store.record_key_release(
            &serial,
            self.clock.now(),
            &self.entry(who, ACTION, &serial, Outcome::Success, detail),
        )?;
        self.desk.complete_approved(who, id, None)?;
        Ok(Released {
            certificate: serial,
            enveloped,
        })
    }
}
