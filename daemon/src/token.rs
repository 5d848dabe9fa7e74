//! Key devices: provisioning subscribers' tokens, handing them over, unlocking them, taking
//! them back and wiping them, over PKCS#11 ([`device`]) and through the RA's desk.
//!
//! ```text
//!  issue request (key_origin = token), approved
//!    └─ provision: C_InitToken (factory SO PIN) ─▶ C_InitPIN (fresh user PIN) ─▶ key pair on
//!       the token ─▶ PKCS#10 signed there ─▶ desk.issue_approved (certificate stored) ─▶
//!       certificate + chain written ─▶ C_SetPIN (fresh SO PIN, sealed) ─▶ device recorded ─▶
//!       desk.complete_approved ─▶ "PIN: <digits>"
//!  hand over ─▶ handed-over (receiver, when)
//!  recover request (key_origin = token), approved
//!    └─ unlock: SO login with the escrowed SO PIN ─▶ C_InitPIN ─▶ desk.complete_approved
//!  recover request (key_origin = central: a server-made key in escrow), approved
//!    └─ recover-key ([`escrow`]): the key opened, enveloped to the requester's certificate ─▶
//!       desk.complete_approved
//!  take back (certificate revoked or expired) ─▶ returned ─▶ wipe: C_InitToken, SO PIN back to
//!  the pool's ─▶ wiped (re-provisionable)
//! ```
//!
//! **Nothing half-recorded.** Until the device row is written, a failure (token removed, a
//! PIN refused, the store) revokes the certificate already issued (`desk.withdraw_issued`,
//! `cessationOfOperation`), leaves the request approved, and leaves the token with its factory
//! SO PIN (the SO PIN is changed only after the certificate is on the token), so the same
//! command provisions it again. The user PIN is printed once and never stored or logged; the
//! SO PIN is kept only sealed under the data key ([`crate::store::devices::so_pin_context`]).
//!
//! Every step, and every refusal, is audited (`device.provision`, `device.handover`,
//! `device.unlock`, `device.return`, `device.wipe`).

pub mod device;
pub mod escrow;

use crate::ca::Authority;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::DataSealer;
use crate::ra::access::Principal;
use crate::ra::calendar::local_rfc3339;
use crate::ra::desk::{DeskError, RequestDesk};
use crate::store::devices::{so_pin_context, DeviceEvent, DeviceRecord, DeviceState};
use crate::store::ra::{KeyOrigin, RequestKind, RequestState};
use crate::store::{AuditEntry, CertStatus, Outcome, Store, StoreError};
use device::{numeric_pin, DeviceError, Token};
use pkid_protocols::KeyType;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Digits of the user PIN given to the receiver (PKCS#11 tokens take 4–8 or more; 8 digits is
/// 10^8 guesses against a token that locks after a few), or the token's shortest PIN if longer.
pub const USER_PIN_DIGITS: usize = 8;
/// Fewest digits of a user PIN pkid gives out.
pub const MIN_USER_PIN_DIGITS: usize = 6;
/// Digits of the SO PIN pkid sets and escrows (never typed by a person), or the token's
/// longest PIN if shorter.
pub const SO_PIN_DIGITS: usize = 16;

/// Why a device operation did not happen. No message carries a PIN.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The desk refused (scope, state, not found).
    #[error(transparent)]
    Desk(#[from] DeskError),
    /// The token refused or went away.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The operation does not apply (already provisioned, wrong token, wrong state).
    #[error("{0}")]
    Conflict(String),
    /// No such device.
    #[error("{0}")]
    NotFound(String),
    /// Outside the caller's role or scope.
    #[error("{0}")]
    Forbidden(String),
    /// Our side: the store, the sealing key.
    #[error("{0}")]
    Internal(String),
}

impl From<TokenError> for DeskError {
    /// How a device refusal is answered by the API and the portal: the desk's own, or its
    /// kind.
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Desk(d) => d,
            TokenError::NotFound(m) => DeskError::NotFound(m),
            TokenError::Forbidden(m) => DeskError::Forbidden(m),
            TokenError::Conflict(m) => DeskError::Conflict(m),
            e @ (TokenError::Device(_) | TokenError::Internal(_)) => {
                DeskError::Internal(e.to_string())
            }
        }
    }
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// A device provisioned, with the initial user PIN to give to the receiver once.
pub struct Provisioned {
    /// The record.
    pub device: DeviceRecord,
    /// The user PIN (printed once, never stored).
    pub pin: Zeroizing<String>,
}

/// The key-device desk: the RA's desk, the store, the data key and the CA's certificates.
pub struct KeyDevices {
    desk: RequestDesk,
    store: Arc<dyn Store>,
    sealer: Arc<dyn DataSealer>,
    authority: Arc<Authority>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
}

impl KeyDevices {
    /// Wraps the desk and what provisioning needs.
    pub fn new(
        desk: RequestDesk,
        store: Arc<dyn Store>,
        sealer: Arc<dyn DataSealer>,
        authority: Arc<Authority>,
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            desk,
            store,
            sealer,
            authority,
            config,
            clock,
        }
    }

    fn entry(
        &self,
        who: &Principal,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: String,
    ) -> AuditEntry {
        AuditEntry {
            at: self.clock.now(),
            actor: who.actor(),
            action: action.into(),
            target: target.into(),
            outcome,
            detail,
        }
    }

    /// Audits a refusal or failure (best effort: the error stands either way) and returns it.
    fn refuse(&self, who: &Principal, action: &str, target: &str, e: TokenError) -> TokenError {
        let outcome = match e {
            TokenError::Internal(_) | TokenError::Device(DeviceError::Removed { .. }) => {
                Outcome::Failed
            }
            _ => Outcome::Refused,
        };
        if let Err(err) = self
            .store
            .audit(&self.entry(who, action, target, outcome, e.to_string()))
        {
            tracing::error!(error = %err, action, "audit of a refused device operation");
        }
        e
    }

    fn event(&self, who: &Principal, action: &str, detail: String) -> DeviceEvent {
        DeviceEvent {
            at: self.clock.now(),
            actor: who.actor(),
            action: action.into(),
            detail,
        }
    }

    /// The key type the request's profile wants: P-256 where allowed (the default), else the
    /// profile's first allowed type.
    fn key_type(&self, profile: &str) -> Result<KeyType, TokenError> {
        let p = self.config.profile(profile).ok_or_else(|| {
            TokenError::Internal(format!("profile {profile:?} is not configured"))
        })?;
        let allowed = &p.profile.allowed_keys;
        Ok(
            if allowed.contains(&KeyType::EcP256) || allowed.is_empty() {
                KeyType::EcP256
            } else {
                allowed[0]
            },
        )
    }

    /// The CA certificates above a certificate of `issuer`, nearest first.
    fn chain(&self, issuer: Option<&str>) -> Vec<Vec<u8>> {
        let name = issuer.unwrap_or(crate::ca::ISSUING);
        let mut chain = Vec::new();
        if let Some(i) = self.authority.issuer(name) {
            chain.push(i.der.clone());
        }
        if name != crate::ca::ROOT {
            if let Some(root) = self.authority.issuer(crate::ca::ROOT) {
                chain.push(root.der.clone());
            }
        }
        chain
    }

    /// Whether `who` decides for organisation `org` (an RA officer in scope, a CA admin).
    fn may_act_for(&self, who: &Principal, org: &str) -> Result<bool, TokenError> {
        Ok(who.decides() && self.reaches(who, org)?)
    }

    fn reaches(&self, who: &Principal, org: &str) -> Result<bool, TokenError> {
        reaches(self.store.as_ref(), who, org)
    }

    // ---- provision -----------------------------------------------------------------------

    /// Provisions the token labelled `label` for the approved `issue` request `id` whose key
    /// origin is `token` (see the module documentation). `factory_so_pin` is the blank token's
    /// SO PIN.
    pub fn provision(
        &self,
        who: &Principal,
        id: i64,
        module: &Path,
        label: &str,
        factory_so_pin: &str,
    ) -> Result<Provisioned, TokenError> {
        const ACTION: &str = "device.provision";
        let target = id.to_string();
        let refuse = |e: TokenError| self.refuse(who, ACTION, &target, e);
        let r = self.desk.approved_for_fulfilment(who, id)?;
        if r.kind != RequestKind::Issue || r.key_origin != KeyOrigin::Token {
            return Err(refuse(TokenError::Conflict(format!(
                "request {id} is a {} {} request; a token is provisioned for an issue request \
                 whose key origin is token",
                r.key_origin.as_str(),
                r.kind.as_str()
            ))));
        }
        if let Some(d) = self
            .store
            .device_by_request(id)?
            .filter(|d| d.state.in_service())
        {
            return Err(refuse(TokenError::Conflict(format!(
                "request {id} already has device {} ({})",
                d.serial,
                d.state.as_str()
            ))));
        }
        let profile = r.profile.clone().unwrap_or_default();
        let key_type = self.key_type(&profile).map_err(refuse)?;
        let token = Token::find(module, label).map_err(|e| refuse(e.into()))?;
        let serial = token.info.serial.clone();
        let previous = self.store.device(&serial)?;
        if let Some(d) = previous.as_ref().filter(|d| d.state != DeviceState::Wiped) {
            return Err(refuse(TokenError::Conflict(format!(
                "token {serial} is already provisioned (device {}, request {}); take it back \
                 and wipe it first",
                d.state.as_str(),
                d.request
            ))));
        }
        if token.holds_certificate().map_err(|e| refuse(e.into()))? {
            return Err(refuse(TokenError::Conflict(format!(
                "token {serial} already holds certificates (provisioned elsewhere?); only a \
                 blank or wiped token is provisioned"
            ))));
        }
        let lengths = (
            token.info.pin_digits(USER_PIN_DIGITS, MIN_USER_PIN_DIGITS),
            token.info.pin_digits(SO_PIN_DIGITS, MIN_USER_PIN_DIGITS),
        );
        let (Some(user_digits), Some(so_digits)) = lengths else {
            return Err(refuse(TokenError::Conflict(format!(
                "token {serial} takes PINs of {} to {} characters; pkid sets numeric PINs of at \
                 least {MIN_USER_PIN_DIGITS} digits",
                token.info.min_pin_len, token.info.max_pin_len
            ))));
        };
        // Until the certificate is issued, a failure leaves nothing but a re-initialised
        // token that still has its factory SO PIN.
        token
            .initialise(factory_so_pin)
            .map_err(|e| refuse(e.into()))?;
        let pin = numeric_pin(user_digits)?;
        token
            .set_user_pin(factory_so_pin, &pin)
            .map_err(|e| refuse(e.into()))?;
        let user = token.user(&pin).map_err(|e| refuse(e.into()))?;
        let key = user.generate(key_type).map_err(|e| refuse(e.into()))?;
        let subject = x509_cert::name::Name::from_str(&format!("CN=token {serial}"))
            .map_err(|e| refuse(TokenError::Internal(format!("request subject: {e}"))))?;
        let csr = user.request(&key, subject).map_err(|e| refuse(e.into()))?;
        let issued = self.desk.issue_approved(who, id, &csr)?;
        // From here on the certificate exists: a failure withdraws it.
        let so_pin = numeric_pin(so_digits)?;
        let finish = || -> Result<DeviceRecord, TokenError> {
            user.write_certificates(&key.id, &issued.der, &self.chain(r.issuer.as_deref()))?;
            drop(user);
            let sealed = self
                .sealer
                .seal(so_pin.as_bytes(), so_pin_context(&serial).as_bytes())
                .map_err(|e| TokenError::Internal(format!("sealing the SO PIN: {e}")))?;
            token.change_so_pin(factory_so_pin, &so_pin)?;
            let now = self.clock.now();
            let record = DeviceRecord {
                serial: serial.clone(),
                model: token.info.model.clone(),
                manufacturer: token.info.manufacturer.clone(),
                label: token.info.label.clone(),
                organisation: r.organisation.clone(),
                request: id,
                certificate: issued.serial.clone(),
                so_pin_sealed: Some(sealed),
                state: DeviceState::Provisioned,
                receiver: None,
                handed_over_at: None,
                returned_at: None,
                provisioned_at: now,
                updated_at: now,
            };
            let detail = format!(
                "request {id}, certificate {}, {} key, token {} {}",
                issued.serial,
                key_type.name(),
                record.manufacturer,
                record.model
            );
            let written = self.store.put_device(
                &record,
                None,
                &self.event(who, "provisioned", detail.clone()),
                &self.entry(who, ACTION, &serial, Outcome::Success, detail),
            );
            if let Err(e) = written {
                // Give the token its factory SO PIN back, so it can be provisioned again.
                let _ = token.change_so_pin(&so_pin, factory_so_pin);
                return Err(e.into());
            }
            if let Err(e) = self.desk.complete_approved(who, id, Some(&issued.serial)) {
                let _ = token.change_so_pin(&so_pin, factory_so_pin);
                let undo = self.store.restore_device(
                    &serial,
                    previous.as_ref(),
                    &self.event(who, "provisioning-undone", e.to_string()),
                    &self.entry(who, ACTION, &serial, Outcome::Failed, e.to_string()),
                );
                if let Err(u) = undo {
                    tracing::error!(error = %u, device = %serial, "undoing a device record");
                }
                return Err(e.into());
            }
            Ok(record)
        };
        match finish() {
            Ok(device) => {
                tracing::info!(device = %serial, request = id, certificate = %issued.serial, "key device provisioned");
                Ok(Provisioned { device, pin })
            }
            Err(e) => {
                let e = refuse(e);
                if let Err(w) = self.desk.withdraw_issued(who, id, &issued.serial) {
                    tracing::error!(error = %w, certificate = %issued.serial, "withdrawing the certificate of an unfinished provisioning");
                }
                Err(e)
            }
        }
    }

    // ---- hand over, take back ------------------------------------------------------------

    /// Device `serial`, which `who` may change (an RA officer in scope, a CA admin); a refusal
    /// is audited as `action`.
    fn device_for(
        &self,
        who: &Principal,
        action: &str,
        serial: &str,
    ) -> Result<DeviceRecord, TokenError> {
        let d = self
            .store
            .device(serial)?
            .ok_or_else(|| TokenError::NotFound(format!("no device {serial}")))?;
        if !self.may_act_for(who, &d.organisation)? {
            return Err(self.refuse(
                who,
                action,
                serial,
                TokenError::Forbidden(format!("device {serial} is outside your scope or role")),
            ));
        }
        Ok(d)
    }

    /// Records that `receiver` received device `serial` for its subscriber (`note`: the paper
    /// original, a hand-over record number).
    pub fn hand_over(
        &self,
        who: &Principal,
        serial: &str,
        receiver: &str,
        note: Option<&str>,
    ) -> Result<DeviceRecord, TokenError> {
        const ACTION: &str = "device.handover";
        let mut d = self.device_for(who, ACTION, serial)?;
        let receiver = receiver.trim();
        if receiver.is_empty() || receiver.chars().count() > 200 {
            return Err(self.refuse(
                who,
                ACTION,
                serial,
                TokenError::Conflict(
                    "the receiver's name is required (at most 200 characters)".into(),
                ),
            ));
        }
        if d.state != DeviceState::Provisioned {
            return Err(self.refuse(
                who,
                ACTION,
                serial,
                TokenError::Conflict(format!(
                    "device {serial} is {}; only a provisioned device is handed over",
                    d.state.as_str()
                )),
            ));
        }
        let now = self.clock.now();
        d.state = DeviceState::HandedOver;
        d.receiver = Some(receiver.to_owned());
        d.handed_over_at = Some(now);
        d.updated_at = now;
        let detail = format!(
            "to {receiver} of {} for request {}; {}{}",
            d.organisation,
            d.request,
            self.paper_original(d.request)?,
            note.map(|n| format!("; {n}")).unwrap_or_default()
        );
        self.store.put_device(
            &d,
            Some(DeviceState::Provisioned),
            &self.event(who, "handed-over", detail.clone()),
            &self.entry(who, ACTION, serial, Outcome::Success, detail),
        )?;
        Ok(d)
    }

    /// What the hand-over record says of request `id`'s paper original: when and by whom it
    /// was received, where the request waited for one (an RA officer records it before the
    /// request can be approved), or that its signed document stood in for it.
    fn paper_original(&self, id: i64) -> Result<String, TokenError> {
        let events = self.store.request_events(id)?;
        let received = events.iter().find(|e| {
            e.action == "original-received" && e.from == Some(RequestState::AwaitingOriginal)
        });
        Ok(match received {
            Some(e) => format!(
                "paper original received {} by {}",
                local_rfc3339(e.at),
                e.actor
            ),
            None if events
                .iter()
                .any(|e| e.to == RequestState::AwaitingOriginal) =>
            {
                "paper original awaited".to_owned()
            }
            None => "no paper original needed (signed request document verified)".to_owned(),
        })
    }

    /// Records the return of device `serial`, whose certificate is revoked or expired.
    pub fn take_back(
        &self,
        who: &Principal,
        serial: &str,
        note: Option<&str>,
    ) -> Result<DeviceRecord, TokenError> {
        const ACTION: &str = "device.return";
        let mut d = self.device_for(who, ACTION, serial)?;
        if !d.state.in_service() {
            return Err(self.refuse(
                who,
                ACTION,
                serial,
                TokenError::Conflict(format!(
                    "device {serial} is {}; it is not out",
                    d.state.as_str()
                )),
            ));
        }
        let now = self.clock.now();
        let cert = self.store.certificate(&d.certificate)?;
        let why = match &cert {
            Some(c) if c.status == CertStatus::Revoked => "revoked",
            Some(c) if c.not_after < now => "expired",
            _ => {
                return Err(self.refuse(
                    who,
                    ACTION,
                    serial,
                    TokenError::Conflict(format!(
                        "the certificate {} on device {serial} is still valid; revoke it (or \
                         let it expire) before taking the device back",
                        d.certificate
                    )),
                ))
            }
        };
        let expected = d.state;
        d.state = DeviceState::Returned;
        d.returned_at = Some(now);
        d.updated_at = now;
        let detail = format!(
            "certificate {} {why}{}",
            d.certificate,
            note.map(|n| format!("; {n}")).unwrap_or_default()
        );
        self.store.put_device(
            &d,
            Some(expected),
            &self.event(who, "returned", detail.clone()),
            &self.entry(who, ACTION, serial, Outcome::Success, detail),
        )?;
        Ok(d)
    }

    // ---- unlock, wipe --------------------------------------------------------------------

    /// The token labelled `label`, held to the recorded serial of `d`.
    fn recorded_token(
        &self,
        who: &Principal,
        action: &str,
        d: &DeviceRecord,
        module: &Path,
        label: &str,
    ) -> Result<Token, TokenError> {
        let token = Token::find(module, label)
            .map_err(|e| self.refuse(who, action, &d.serial, e.into()))?;
        if token.info.serial != d.serial {
            return Err(self.refuse(
                who,
                action,
                &d.serial,
                TokenError::Conflict(format!(
                    "token {label:?} is device {}, not the recorded device {}",
                    token.info.serial, d.serial
                )),
            ));
        }
        Ok(token)
    }

    fn so_pin(&self, d: &DeviceRecord) -> Result<Zeroizing<String>, TokenError> {
        let sealed = d.so_pin_sealed.as_deref().ok_or_else(|| {
            TokenError::Conflict(format!("device {} has no escrowed SO PIN", d.serial))
        })?;
        let opened = self
            .sealer
            .open(sealed, so_pin_context(&d.serial).as_bytes())
            .map_err(|e| TokenError::Internal(format!("opening the escrowed SO PIN: {e}")))?;
        let text = std::str::from_utf8(&opened)
            .map_err(|_| TokenError::Internal("the escrowed SO PIN is not text".into()))?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    /// For the approved `recover` request `id` (key origin `token`): sets a new user PIN on
    /// the device holding the request's certificate, as its SO with the escrowed SO PIN.
    /// An RA officer may do it for the organisations in its scope (a provincial officer, the
    /// organisations of its province).
    pub fn unlock(
        &self,
        who: &Principal,
        id: i64,
        module: &Path,
        label: &str,
    ) -> Result<(DeviceRecord, Zeroizing<String>), TokenError> {
        const ACTION: &str = "device.unlock";
        let target = id.to_string();
        let r = self
            .desk
            .approved_for_fulfilment(who, id)
            .map_err(|e| match e {
                DeskError::Forbidden(m) => {
                    self.refuse(who, ACTION, &target, TokenError::Forbidden(m))
                }
                e => e.into(),
            })?;
        if r.kind != RequestKind::Recover || r.key_origin != KeyOrigin::Token {
            return Err(self.refuse(
                who,
                ACTION,
                &target,
                TokenError::Conflict(format!(
                    "request {id} is a {} request; a device is unlocked for a recover request",
                    r.kind.as_str()
                )),
            ));
        }
        let cert = r.certificate.clone().unwrap_or_default();
        let mut d = self
            .store
            .device_by_certificate(&cert)?
            .filter(|d| d.state.in_service())
            .ok_or_else(|| {
                self.refuse(
                    who,
                    ACTION,
                    &target,
                    TokenError::NotFound(format!("no device in service holds certificate {cert}")),
                )
            })?;
        let token = self.recorded_token(who, ACTION, &d, module, label)?;
        let so_pin = self
            .so_pin(&d)
            .map_err(|e| self.refuse(who, ACTION, &d.serial, e))?;
        let digits = token
            .info
            .pin_digits(USER_PIN_DIGITS, MIN_USER_PIN_DIGITS)
            .unwrap_or(USER_PIN_DIGITS);
        let pin = numeric_pin(digits)?;
        token
            .set_user_pin(&so_pin, &pin)
            .map_err(|e| self.refuse(who, ACTION, &d.serial, e.into()))?;
        let expected = d.state;
        d.updated_at = self.clock.now();
        let detail = format!("new user PIN for request {id}");
        self.store.put_device(
            &d,
            Some(expected),
            &self.event(who, "unlocked", detail.clone()),
            &self.entry(who, ACTION, &d.serial, Outcome::Success, detail),
        )?;
        self.desk.complete_approved(who, id, None)?;
        Ok((d, pin))
    }

    /// Re-initialises the returned device `serial` (every object destroyed) and gives it the
    /// pool's SO PIN `pool_so_pin` again, so it is provisioned like a blank token.
    pub fn wipe(
        &self,
        who: &Principal,
        serial: &str,
        module: &Path,
        label: &str,
        pool_so_pin: &str,
    ) -> Result<DeviceRecord, TokenError> {
        const ACTION: &str = "device.wipe";
        let mut d = self.device_for(who, ACTION, serial)?;
        if d.state != DeviceState::Returned {
            return Err(self.refuse(
                who,
                ACTION,
                serial,
                TokenError::Conflict(format!(
                    "device {serial} is {}; only a returned device is wiped",
                    d.state.as_str()
                )),
            ));
        }
        let token = self.recorded_token(who, ACTION, &d, module, label)?;
        let so_pin = self
            .so_pin(&d)
            .map_err(|e| self.refuse(who, ACTION, serial, e))?;
        token
            .initialise(&so_pin)
            .and_then(|()| token.change_so_pin(&so_pin, pool_so_pin))
            .map_err(|e| self.refuse(who, ACTION, serial, e.into()))?;
        d.state = DeviceState::Wiped;
        d.so_pin_sealed = None;
        d.updated_at = self.clock.now();
        let detail = format!(
            "objects destroyed; certificate {} no longer on it",
            d.certificate
        );
        self.store.put_device(
            &d,
            Some(DeviceState::Returned),
            &self.event(who, "wiped", detail.clone()),
            &self.entry(who, ACTION, serial, Outcome::Success, detail),
        )?;
        Ok(d)
    }

    // ---- reading -------------------------------------------------------------------------

    /// The devices `who` reaches.
    pub fn list(&self, who: &Principal) -> Result<Vec<DeviceRecord>, TokenError> {
        visible_devices(self.store.as_ref(), who)
    }

    /// One device and its history.
    pub fn show(
        &self,
        who: &Principal,
        serial: &str,
    ) -> Result<(DeviceRecord, Vec<DeviceEvent>), TokenError> {
        visible_device(self.store.as_ref(), who, serial)
    }

    /// Devices still out (provisioned or handed over) whose certificate has ended (expired or
    /// revoked): the ones to take back.
    pub fn outstanding(&self, who: &Principal) -> Result<Vec<(DeviceRecord, String)>, TokenError> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for d in self.list(who)? {
            if !d.state.in_service() {
                continue;
            }
            let why = match self.store.certificate(&d.certificate)? {
                Some(c) if c.status == CertStatus::Revoked => "revoked".to_owned(),
                Some(c) if c.not_after < now => "expired".to_owned(),
                Some(_) => continue,
                None => "certificate missing".to_owned(),
            };
            out.push((d, why));
        }
        Ok(out)
    }
}

/// Whether `who` reads organisation `org`'s records (its reach: a CA admin everything, an RA
/// officer or auditor its scope, an organisation officer its organisation).
fn reaches(store: &dyn Store, who: &Principal, org: &str) -> Result<bool, TokenError> {
    Ok(who.reaches_organisation(store, org)?)
}

/// The devices `who` reaches, by serial.
pub fn visible_devices(
    store: &dyn Store,
    who: &Principal,
) -> Result<Vec<DeviceRecord>, TokenError> {
    let mut out = Vec::new();
    for d in store.devices(None)? {
        if reaches(store, who, &d.organisation)? {
            out.push(d);
        }
    }
    Ok(out)
}

/// One device `who` reaches, and its history. Out of reach is [`TokenError::Forbidden`],
/// audited (`device.show`).
pub fn visible_device(
    store: &dyn Store,
    who: &Principal,
    serial: &str,
) -> Result<(DeviceRecord, Vec<DeviceEvent>), TokenError> {
    let d = store
        .device(serial)?
        .ok_or_else(|| TokenError::NotFound(format!("no device {serial}")))?;
    if !reaches(store, who, &d.organisation)? {
        let e = TokenError::Forbidden(format!("device {serial} is outside your scope"));
        let entry = AuditEntry {
            at: now_unix(),
            actor: who.actor(),
            action: "device.show".into(),
            target: serial.chars().take(64).collect(),
            outcome: Outcome::Refused,
            detail: e.to_string(),
        };
        if let Err(err) = store.audit(&entry) {
            tracing::error!(error = %err, "audit of a refused device read");
        }
        return Err(e);
    }
    let history = store.device_history(serial)?;
    Ok((d, history))
}

fn now_unix() -> u64 {
    crate::clock::SystemClock.now()
}

/// A device as the CLI and the API show it (no sealed SO PIN).
pub fn device_json(d: &DeviceRecord) -> serde_json::Value {
    serde_json::json!({
        "serial": d.serial,
        "model": d.model,
        "manufacturer": d.manufacturer,
        "label": d.label,
        "organisation": d.organisation,
        "request": d.request,
        "certificate": d.certificate,
        "state": d.state.as_str(),
        "so_pin_escrowed": d.so_pin_sealed.is_some(),
        "receiver": d.receiver,
        "handed_over_at": d.handed_over_at.map(rfc3339),
        "returned_at": d.returned_at.map(rfc3339),
        "provisioned_at": rfc3339(d.provisioned_at),
        "updated_at": rfc3339(d.updated_at),
    })
}

/// One history event as JSON.
pub fn event_json(e: &DeviceEvent) -> serde_json::Value {
    serde_json::json!({
        "at": rfc3339(e.at),
        "actor": e.actor,
        "action": e.action,
        "detail": e.detail,
    })
}

fn rfc3339(t: u64) -> String {
    pkid_protocols::time::rfc3339(t)
}
