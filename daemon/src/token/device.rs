//! One subscriber's key device over PKCS#11: initialising it, its PINs, the key pair, the
//! request signed by that key, the certificates written onto it.
//!
//! The module context comes from [`crate::keys::pkcs11::module`], so a CA whose own keys are
//! in the same PKCS#11 module shares the one `C_Initialize` of the process; the token is found
//! by label ([`crate::keys::pkcs11::find_token`]) and then held to its serial number. Each
//! operation opens one read-write session and closes it (the command line does one provisioning
//! at a time: no pool). ECDSA is hashed here and signed with `CKM_ECDSA` (SoftHSM 2.6.1 has no
//! `CKM_ECDSA_SHA256`), the raw `r‖s` re-encoded as DER, as the CA's own PKCS#11 signer does.
//!
//! PINs are zeroizing secrets; no message of [`DeviceError`] carries one.

use crate::keys::pkcs11::{
    describe, device_fault, ec_spki, ecdsa_sig_value, find_token, kept_in_token, module,
    named_curve, rsa_spki, KEY_ID_LEN, RSA_PUBLIC_EXPONENT,
};
use crate::keys::KeyError;
use const_oid::db::rfc5912 as oids;
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use der::{Decode, Encode};
use pkid_protocols::KeyType;
use spki::SubjectPublicKeyInfoOwned;
use std::path::Path;
use x509_cert::Certificate;
use zeroize::Zeroizing;

/// CKA_LABEL of the subscriber's key pair and certificate on a device pkid provisioned.
pub const KEY_LABEL: &str = "pkid-subscriber";
/// CKA_LABEL prefix of the CA certificates written beside it.
pub const CHAIN_LABEL: &str = "pkid-ca";

/// Why a device operation failed. No variant carries a PIN.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The module could not be loaded, or no single token has the label.
    #[error("{0}")]
    NotFound(String),
    /// The security officer's PIN was refused (or is locked).
    #[error("token {0:?} refused the SO PIN")]
    SoPinRejected(String),
    /// The token went away (removed, device error) during the operation.
    #[error("token {label:?} was removed or failed during {what}: {detail}")]
    Removed {
        /// The token's label.
        label: String,
        /// The step.
        what: &'static str,
        /// The PKCS#11 return value.
        detail: String,
    },
    /// Anything else the token refused.
    #[error("token {label:?}: {what}: {detail}")]
    Failed {
        /// The token's label.
        label: String,
        /// The step.
        what: &'static str,
        /// The PKCS#11 return value or our reason.
        detail: String,
    },
}

/// What `C_GetTokenInfo` says about a device (trimmed of PKCS#11's blank padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Serial number.
    pub serial: String,
    /// Model.
    pub model: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Label.
    pub label: String,
    /// Whether the user PIN is locked (too many wrong attempts), where the token says so.
    pub user_pin_locked: bool,
    /// Shortest PIN the token takes.
    pub min_pin_len: usize,
    /// Longest PIN the token takes.
    pub max_pin_len: usize,
}

impl TokenInfo {
    /// `wanted` digits, within what the token takes (`None` if it takes no PIN that long
    /// that is also at least `floor` digits).
    pub fn pin_digits(&self, wanted: usize, floor: usize) -> Option<usize> {
        let n = wanted.max(self.min_pin_len).min(self.max_pin_len);
        (n >= floor && n >= self.min_pin_len).then_some(n)
    }
}

/// A device found by label in a loaded module.
pub struct Token {
    ctx: Pkcs11,
    slot: Slot,
    /// What it said when it was found.
    pub info: TokenInfo,
}

impl Token {
    /// Loads `module` (once per process) and finds the one initialised token labelled `label`.
    pub fn find(module_path: &Path, label: &str) -> Result<Self, DeviceError> {
        let not_found = |e: KeyError| DeviceError::NotFound(e.to_string());
        let ctx = module(module_path).map_err(not_found)?;
        let slot = find_token(&ctx, label).map_err(not_found)?;
        let mut token = Self {
            ctx,
            slot,
            info: TokenInfo {
                serial: String::new(),
                model: String::new(),
                manufacturer: String::new(),
                label: label.to_owned(),
                user_pin_locked: false,
                min_pin_len: 0,
                max_pin_len: 0,
            },
        };
        token.info = token.read_info()?;
        Ok(token)
    }

    /// `C_GetTokenInfo` now.
    pub fn read_info(&self) -> Result<TokenInfo, DeviceError> {
        let info = self
            .ctx
            .get_token_info(self.slot)
            .map_err(|e| self.fault("reading the token information", e))?;
        Ok(TokenInfo {
            serial: info.serial_number().trim().to_owned(),
            model: info.model().trim().to_owned(),
            manufacturer: info.manufacturer_id().trim().to_owned(),
            label: info.label().trim().to_owned(),
            user_pin_locked: info.user_pin_locked(),
            min_pin_len: info.min_pin_length(),
            max_pin_len: info.max_pin_length(),
        })
    }

    fn fault(&self, what: &'static str, e: CkError) -> DeviceError {
        let label = self.info.label.clone();
        let detail = describe(&e);
        if device_fault(&e) {
            DeviceError::Removed {
                label,
                what,
                detail,
            }
        } else {
            DeviceError::Failed {
                label,
                what,
                detail,
            }
        }
    }

    fn failed(&self, what: &'static str, detail: impl Into<String>) -> DeviceError {
        DeviceError::Failed {
            label: self.info.label.clone(),
            what,
            detail: detail.into(),
        }
    }

    fn session(&self, what: &'static str) -> Result<Session, DeviceError> {
        self.ctx
            .open_rw_session(self.slot)
            .map_err(|e| self.fault(what, e))
    }

    /// Logs the security officer in on `session`; a refused PIN is
    /// [`DeviceError::SoPinRejected`].
    fn so_login(&self, session: &Session, so_pin: &str) -> Result<(), DeviceError> {
        match session.login(UserType::So, Some(&AuthPin::new(so_pin.to_owned()))) {
            Ok(()) => Ok(()),
            Err(CkError::Pkcs11(
                RvError::PinIncorrect
                | RvError::PinLocked
                | RvError::PinInvalid
                | RvError::PinLenRange,
                _,
            )) => Err(DeviceError::SoPinRejected(self.info.label.clone())),
            Err(e) => Err(self.fault("logging in as SO", e)),
        }
    }

    /// Whether a certificate object (public: readable without a login) is on the token.
    pub fn holds_certificate(&self) -> Result<bool, DeviceError> {
        let session = self.session("looking for certificates")?;
        let found = session
            .find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE)])
            .map_err(|e| self.fault("looking for certificates", e))?;
        Ok(!found.is_empty())
    }

    /// `C_InitToken` with the current SO PIN, keeping the label: every object is destroyed
    /// and the user PIN is unset. The SO PIN stays what it was.
    pub fn initialise(&self, so_pin: &str) -> Result<(), DeviceError> {
        match self.ctx.init_token(
            self.slot,
            &AuthPin::new(so_pin.to_owned()),
            &self.info.label,
        ) {
            Ok(()) => Ok(()),
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLocked, _)) => {
                Err(DeviceError::SoPinRejected(self.info.label.clone()))
            }
            Err(e) => Err(self.fault("initialising the token", e)),
        }
    }

    /// As the SO: sets a new user PIN (`C_InitPIN`), which also unblocks a locked one.
    pub fn set_user_pin(&self, so_pin: &str, user_pin: &str) -> Result<(), DeviceError> {
        let session = self.session("setting the user PIN")?;
        self.so_login(&session, so_pin)?;
        session
            .init_pin(&AuthPin::new(user_pin.to_owned()))
            .map_err(|e| self.fault("setting the user PIN", e))?;
        let _ = session.logout();
        Ok(())
    }

    /// As the SO: replaces the SO PIN (`C_SetPIN`).
    pub fn change_so_pin(&self, old: &str, new: &str) -> Result<(), DeviceError> {
        let session = self.session("changing the SO PIN")?;
        self.so_login(&session, old)?;
        session
            .set_pin(&AuthPin::new(old.to_owned()), &AuthPin::new(new.to_owned()))
            .map_err(|e| self.fault("changing the SO PIN", e))?;
        let _ = session.logout();
        Ok(())
    }

    /// A session logged in as the user with `pin`.
    pub fn user(&self, pin: &str) -> Result<UserSession<'_>, DeviceError> {
        let session = self.session("logging in as the user")?;
        match session.login(UserType::User, Some(&AuthPin::new(pin.to_owned()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(self.fault("logging in as the user", e)),
        }
        Ok(UserSession {
            token: self,
            session,
        })
    }
}

/// A session on a device logged in as its user.
pub struct UserSession<'t> {
    token: &'t Token,
    session: Session,
}

/// The key pair made on a device.
pub struct DeviceKey {
    /// CKA_ID shared by the private key, the public key and the certificate.
    pub id: Vec<u8>,
    /// Its public key.
    pub public_key: SubjectPublicKeyInfoOwned,
    /// Its type.
    pub key_type: KeyType,
    private: ObjectHandle,
}

impl UserSession<'_> {
    /// Generates a key pair of `key_type` on the token: a token object, private, sensitive,
    /// never extractable, signing only, labelled [`KEY_LABEL`] with a fresh random CKA_ID.
    pub fn generate(&self, key_type: KeyType) -> Result<DeviceKey, DeviceError> {
        let t = self.token;
        let what = "generating the key pair";
        let curve = |oid| named_curve(oid).map_err(|e| t.failed(what, e.to_string()));
        let (mechanism, mut public) = match key_type {
            KeyType::EcP256 => (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(curve(oids::SECP_256_R_1)?)],
            ),
            KeyType::EcP384 => (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(curve(oids::SECP_384_R_1)?)],
            ),
            KeyType::Rsa(bits @ (2048 | 3072 | 4096)) => (
                Mechanism::RsaPkcsKeyPairGen,
                vec![
                    Attribute::ModulusBits((bits as u64).into()),
                    Attribute::PublicExponent(RSA_PUBLIC_EXPONENT.to_vec()),
                ],
            ),
            KeyType::Rsa(bits) => {
                return Err(t.failed(what, format!("RSA {bits} bits is not generated")))
            }
        };
        let mut id = vec![0u8; KEY_ID_LEN];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| t.failed(what, "no randomness"))?;
        public.extend([
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Label(KEY_LABEL.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ]);
        let mut private = kept_in_token(KEY_LABEL, id.clone());
        private.extend([
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ]);
        let (public, private) = self
            .session
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(|e| t.fault(what, e))?;
        let public_key = self.public_key(public, key_type)?;
        Ok(DeviceKey {
            id,
            public_key,
            key_type,
            private,
        })
    }

    fn public_key(
        &self,
        public: ObjectHandle,
        key_type: KeyType,
    ) -> Result<SubjectPublicKeyInfoOwned, DeviceError> {
        let t = self.token;
        let what = "reading the public key";
        let kinds: &[AttributeType] = match key_type {
            KeyType::Rsa(_) => &[AttributeType::Modulus, AttributeType::PublicExponent],
            _ => &[AttributeType::EcParams, AttributeType::EcPoint],
        };
        let values = self
            .session
            .get_attributes(public, kinds)
            .map_err(|e| t.fault(what, e))?;
        let (mut a, mut b) = (None, None);
        for v in values {
            match v {
                Attribute::Modulus(x) | Attribute::EcParams(x) => a = Some(x),
                Attribute::PublicExponent(x) | Attribute::EcPoint(x) => b = Some(x),
                _ => {}
            }
        }
        let (Some(a), Some(b)) = (a, b) else {
            return Err(t.failed(what, "the public key's attributes are missing"));
        };
        match key_type {
            KeyType::Rsa(_) => rsa_spki(&a, &b),
            _ => ec_spki(&a, &b),
        }
        .map_err(|e| t.failed(what, e.to_string()))
    }

    /// A PKCS#10 request for `key` with `subject`, signed by the key on the token (the proof
    /// of possession the CA checks).
    pub fn request(
        &self,
        key: &DeviceKey,
        subject: x509_cert::name::Name,
    ) -> Result<Vec<u8>, DeviceError> {
        let t = self.token;
        let what = "signing the certificate request";
        let bad = |e: der::Error| t.failed(what, e.to_string());
        let info = x509_cert::request::CertReqInfo {
            version: x509_cert::request::Version::V1,
            subject,
            public_key: key.public_key.clone(),
            attributes: Default::default(),
        };
        let tbs = info.to_der().map_err(bad)?;
        let algorithm = key.key_type.signature_algorithm();
        let signature = match key.key_type {
            KeyType::EcP256 | KeyType::EcP384 => {
                let digest = aws_lc_rs::digest::digest(algorithm.digest(), &tbs);
                let raw = self
                    .session
                    .sign(&Mechanism::Ecdsa, key.private, digest.as_ref())
                    .map_err(|e| t.fault(what, e))?;
                let len = if key.key_type == KeyType::EcP256 {
                    32
                } else {
                    48
                };
                ecdsa_sig_value(&raw, len).map_err(|e| t.failed(what, e.to_string()))?
            }
            KeyType::Rsa(_) => self
                .session
                .sign(&Mechanism::Sha256RsaPkcs, key.private, &tbs)
                .map_err(|e| t.fault(what, e))?,
        };
        x509_cert::request::CertReq {
            info,
            algorithm: algorithm.identifier(),
            signature: der::asn1::BitString::from_bytes(&signature).map_err(bad)?,
        }
        .to_der()
        .map_err(bad)
    }

    /// Writes the subscriber's certificate (public, with the key's CKA_ID and label) and the
    /// CA certificates above it (public, each with its own subject key identifier as CKA_ID,
    /// so that the key pairs with exactly one certificate).
    pub fn write_certificates(
        &self,
        key_id: &[u8],
        leaf: &[u8],
        chain: &[Vec<u8>],
    ) -> Result<(), DeviceError> {
        let t = self.token;
        let what = "writing the certificates";
        let mut objects = vec![(leaf, key_id.to_vec(), KEY_LABEL.to_owned())];
        for (i, ca) in chain.iter().enumerate() {
            let cert = Certificate::from_der(ca).map_err(|e| t.failed(what, e.to_string()))?;
            let id = pkid_protocols::algorithm::key_identifier(
                &cert.tbs_certificate.subject_public_key_info,
            );
            objects.push((ca.as_slice(), id, format!("{CHAIN_LABEL}-{i}")));
        }
        for (der, id, label) in objects {
            let cert = Certificate::from_der(der).map_err(|e| t.failed(what, e.to_string()))?;
            let tbs = &cert.tbs_certificate;
            let bad = |e: der::Error| t.failed(what, e.to_string());
            let template = vec![
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Modifiable(false),
                Attribute::Label(label.into_bytes()),
                Attribute::Id(id),
                Attribute::Subject(tbs.subject.to_der().map_err(bad)?),
                Attribute::Issuer(tbs.issuer.to_der().map_err(bad)?),
                Attribute::SerialNumber(tbs.serial_number.to_der().map_err(bad)?),
                Attribute::Value(der.to_vec()),
            ];
            self.session
                .create_object(&template)
                .map_err(|e| t.fault(what, e))?;
        }
        Ok(())
    }
}

/// `digits` decimal digits from the CSPRNG, each uniform (bytes of 250 or more are drawn
/// again, so no digit is more likely than another).
pub fn numeric_pin(digits: usize) -> Result<Zeroizing<String>, DeviceError> {
    let mut pin = Zeroizing::new(String::with_capacity(digits));
    let mut buf = Zeroizing::new([0u8; 32]);
    while pin.len() < digits {
        aws_lc_rs::rand::fill(buf.as_mut()).map_err(|_| DeviceError::Failed {
            label: String::new(),
            what: "drawing a PIN",
            detail: "no randomness".into(),
        })?;
        for b in buf.iter().filter(|b| **b < 250) {
            if pin.len() == digits {
                break;
            }
            pin.push(char::from(b'0' + b % 10));
        }
    }
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(min: usize, max: usize) -> TokenInfo {
        TokenInfo {
            serial: "s".into(),
            model: "m".into(),
            manufacturer: "v".into(),
            label: "l".into(),
            user_pin_locked: false,
            min_pin_len: min,
            max_pin_len: max,
        }
    }

    #[test]
    fn pins_are_numeric_of_the_length_asked_and_differ() {
        let a = numeric_pin(8).expect("pin");
        let b = numeric_pin(8).expect("pin");
        assert_eq!(a.len(), 8);
        assert!(a.chars().all(|c| c.is_ascii_digit()));
        assert_ne!(*a, *b, "two draws of 10^8 collide with probability 1e-8");
        // Every digit turns up, about equally, over many draws.
        let many = numeric_pin(20_000).expect("pin");
        for d in '0'..='9' {
            let n = many.chars().filter(|c| *c == d).count();
            assert!((1_600..2_400).contains(&n), "{d}: {n} of 20000");
        }
    }

    #[test]
    fn pin_lengths_follow_what_the_token_takes() {
        assert_eq!(info(4, 255).pin_digits(8, 6), Some(8));
        assert_eq!(info(4, 255).pin_digits(16, 6), Some(16));
        assert_eq!(
            info(4, 12).pin_digits(16, 6),
            Some(12),
            "clamped to the longest"
        );
        assert_eq!(
            info(10, 16).pin_digits(8, 6),
            Some(10),
            "raised to the shortest"
        );
        assert_eq!(info(4, 5).pin_digits(8, 6), None, "too short to give out");
    }
}
