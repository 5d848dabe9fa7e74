//! Certificate profiles: the templates certificates are issued from.
//!
//! Subscriber profiles (`person`, `organization`, `tls-server`, `tls-client`, …) come from the
//! daemon's configuration; the CA's own certificates use the fixed profiles built here
//! ([`Profile::root_ca`], [`Profile::issuing_ca`], [`Profile::ocsp_responder`], [`Profile::cmp_responder`], [`Profile::tsa`]).

use crate::algorithm::KeyType;
use const_oid::db::{rfc4519, rfc5280 as oids};
use der::asn1::ObjectIdentifier;
use x509_cert::ext::pkix::{KeyUsage, KeyUsages};

/// id-kp-cmcCA (RFC 6402 §2.10): a CA's key that signs CMC/CMP messages.
pub const ID_KP_CMC_CA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.27");

/// Everything that decides what a certificate issued under a profile contains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name, as requests refer to it.
    pub name: String,
    /// keyUsage bits (the extension is always present and critical).
    pub key_usage: KeyUsage,
    /// extendedKeyUsage purposes; empty means the extension is omitted.
    pub extended_key_usage: Vec<ObjectIdentifier>,
    /// Whether extendedKeyUsage is marked critical (the TSA profile requires it, RFC 3161 §2.3).
    pub extended_key_usage_critical: bool,
    /// Longest validity a certificate may have, in days.
    pub max_validity_days: u32,
    /// Key types a subject may present.
    pub allowed_keys: Vec<KeyType>,
    /// Subject attributes that must be present (e.g. commonName, organizationName).
    pub required_subject: Vec<ObjectIdentifier>,
    /// `Some(path length)` for a CA certificate (`None` inside = no limit), `None` for an end entity.
    pub ca: Option<Option<u8>>,
    /// Adds id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1), for delegated OCSP responders.
    pub ocsp_nocheck: bool,
    /// Copies subjectAltName from the request (otherwise requested SANs are ignored).
    pub copy_subject_alt_name: bool,
    /// Adds AIA (OCSP, caIssuers) and CRL distribution point extensions when the issuer has URLs.
    pub revocation_pointers: bool,
}

/// Every key type pkid accepts from a subject.
pub fn all_key_types() -> Vec<KeyType> {
    vec![
        KeyType::EcP256,
        KeyType::EcP384,
        KeyType::Rsa(2048),
        KeyType::Rsa(3072),
        KeyType::Rsa(4096),
    ]
}

impl Profile {
    /// The keyUsage a certificate for a `key` key carries under this profile. The profile's
    /// keyEncipherment or keyAgreement means "may receive keys", given as the bit the key
    /// type can honour: keyEncipherment for RSA (RFC 3279 §2.3.1 does not list keyAgreement
    /// for RSA), keyAgreement for EC (RFC 5480 §3 permits neither keyEncipherment nor
    /// dataEncipherment for id-ecPublicKey). encipherOnly / decipherOnly go with keyAgreement,
    /// dataEncipherment with RSA; the other bits are kept as they are.
    pub fn key_usage_for(&self, key: KeyType) -> KeyUsage {
        use KeyUsages::{
            DataEncipherment, DecipherOnly, EncipherOnly, KeyAgreement, KeyEncipherment,
        };
        let bits = self.key_usage.0;
        let receives = bits.contains(KeyEncipherment) || bits.contains(KeyAgreement);
        let mut out = bits - KeyEncipherment - KeyAgreement;
        match key {
            KeyType::Rsa(_) => {
                out -= EncipherOnly | DecipherOnly;
                if receives {
                    out |= KeyEncipherment;
                }
            }
            KeyType::EcP256 | KeyType::EcP384 => {
                out -= DataEncipherment;
                if receives {
                    out |= KeyAgreement;
                } else {
                    out -= EncipherOnly | DecipherOnly;
                }
            }
        }
        KeyUsage(out)
    }

    /// Whether a subject key of this type may be certified under the profile. RSA keys match on
    /// their exact size (`rsa2048`, `rsa3072`, `rsa4096`).
    pub fn allows_key(&self, key: KeyType) -> bool {
        self.allowed_keys.contains(&key)
    }

    /// Self-signed root CA: keyCertSign + cRLSign, no path length limit.
    pub fn root_ca(max_validity_days: u32) -> Self {
        Self {
            name: "root-ca".into(),
            key_usage: KeyUsage(
                KeyUsages::KeyCertSign | KeyUsages::CRLSign | KeyUsages::DigitalSignature,
            ),
            extended_key_usage: vec![],
            extended_key_usage_critical: false,
            max_validity_days,
            allowed_keys: all_key_types(),
            required_subject: vec![rfc4519::CN],
            ca: Some(None),
            ocsp_nocheck: false,
            copy_subject_alt_name: false,
            revocation_pointers: false,
        }
    }

    /// Issuing CA under the root: keyCertSign + cRLSign, path length 0 (issues end entities only).
    pub fn issuing_ca(max_validity_days: u32) -> Self {
        Self {
            name: "issuing-ca".into(),
            ca: Some(Some(0)),
            revocation_pointers: true,
            ..Self::root_ca(max_validity_days)
        }
    }

    /// Delegated OCSP responder: digitalSignature, EKU OCSPSigning, id-pkix-ocsp-nocheck.
    pub fn ocsp_responder(max_validity_days: u32) -> Self {
        Self {
            name: "ocsp-responder".into(),
            key_usage: KeyUsage(KeyUsages::DigitalSignature.into()),
            extended_key_usage: vec![oids::ID_KP_OCSP_SIGNING],
            extended_key_usage_critical: false,
            max_validity_days,
            allowed_keys: all_key_types(),
            required_subject: vec![rfc4519::CN],
            ca: None,
            ocsp_nocheck: true,
            copy_subject_alt_name: false,
            revocation_pointers: false,
        }
    }

    /// CMP responder (RFC 9483 §3.1, RFC 9810 §5.1.3.3): the certificate a CA's CMP answers
    /// to signed requests are signed with. digitalSignature (OpenSSL refuses response signers
    /// without it) and EKU id-kp-cmcCA (RFC 6402 §2.10), non-critical; CRL and OCSP pointers so
    /// that a client can check it.
    pub fn cmp_responder(max_validity_days: u32) -> Self {
        Self {
            name: "cmp-responder".into(),
            extended_key_usage: vec![ID_KP_CMC_CA],
            ocsp_nocheck: false,
            revocation_pointers: true,
            ..Self::ocsp_responder(max_validity_days)
        }
    }

    /// Timestamp authority: digitalSignature (+ nonRepudiation), EKU timeStamping only, critical
    /// (RFC 3161 §2.3).
    pub fn tsa(max_validity_days: u32) -> Self {
        Self {
            name: "tsa".into(),
            key_usage: KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation),
            extended_key_usage: vec![oids::ID_KP_TIME_STAMPING],
            extended_key_usage_critical: true,
            ocsp_nocheck: false,
            revocation_pointers: true,
            ..Self::ocsp_responder(max_validity_days)
        }
    }

    /// The HTTPS listener's own certificate: serverAuth, names copied from the request.
    pub fn tls_server(max_validity_days: u32) -> Self {
        Self {
            name: "tls-server".into(),
            key_usage: KeyUsage(KeyUsages::DigitalSignature.into()),
            extended_key_usage: vec![oids::ID_KP_SERVER_AUTH],
            copy_subject_alt_name: true,
            revocation_pointers: true,
            ocsp_nocheck: false,
            ..Self::ocsp_responder(max_validity_days)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(bits: &[KeyUsages]) -> Profile {
        let mut p = Profile::ocsp_responder(365);
        p.key_usage = KeyUsage(bits.iter().fold(Default::default(), |acc, b| acc | *b));
        p
    }

    fn bits(ku: KeyUsage) -> Vec<KeyUsages> {
        ku.0.into_iter().collect()
    }

    #[test]
    fn key_usage_gives_each_key_type_the_bits_it_can_honour() {
        use KeyUsages::*;
        let tls = with(&[DigitalSignature, KeyEncipherment]);
        // RFC 5480 §3: no keyEncipherment on an EC key; "may receive keys" is keyAgreement.
        for ec in [KeyType::EcP256, KeyType::EcP384] {
            assert_eq!(
                bits(tls.key_usage_for(ec)),
                [DigitalSignature, KeyAgreement]
            );
        }
        assert_eq!(
            bits(tls.key_usage_for(KeyType::Rsa(2048))),
            [DigitalSignature, KeyEncipherment]
        );
        // RFC 3279 §2.3.1: no keyAgreement (nor encipherOnly) on an RSA key.
        let ka = with(&[DigitalSignature, KeyAgreement, EncipherOnly]);
        assert_eq!(
            bits(ka.key_usage_for(KeyType::Rsa(3072))),
            [DigitalSignature, KeyEncipherment]
        );
        assert_eq!(
            bits(ka.key_usage_for(KeyType::EcP256)),
            [DigitalSignature, KeyAgreement, EncipherOnly]
        );
        // dataEncipherment is RSA's alone; signing-only profiles are untouched.
        let data = with(&[DigitalSignature, DataEncipherment]);
        assert_eq!(
            bits(data.key_usage_for(KeyType::EcP256)),
            [DigitalSignature]
        );
        assert_eq!(
            bits(data.key_usage_for(KeyType::Rsa(2048))),
            [DigitalSignature, DataEncipherment]
        );
        let sign = with(&[DigitalSignature, NonRepudiation]);
        for k in all_key_types() {
            assert_eq!(sign.key_usage_for(k), sign.key_usage, "{k:?}");
        }
        let ca = Profile::issuing_ca(3650);
        assert_eq!(ca.key_usage_for(KeyType::EcP384), ca.key_usage);
    }
}
