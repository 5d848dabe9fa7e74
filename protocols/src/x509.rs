//! Building, linting, signing and assembling X.509 certificates (RFC 5280).
//!
//! The daemon's issuance path is: [`build_tbs`] (pure) → [`lint`] (pure, before any key is
//! touched) → [`ToBeSigned::new`] (the DER to sign, encoded once) → store those bytes → the
//! daemon signs [`ToBeSigned::tbs`] → [`Unsigned::into_signed`] (checked with the issuer's
//! public key so a faulty HSM signature is never published, then encoded around the same
//! bytes) → store the certificate → hand it out.

use crate::algorithm::{self, KeyType, SignatureAlgorithm};
use crate::profile::Profile;
use crate::time::{unix_of, x509_time};
use crate::unsigned::{signed_sequence, Unsigned};
use const_oid::db::{rfc4519, rfc5280 as oids, rfc6960};
use const_oid::AssociatedOid;
use der::asn1::{Ia5String, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Tag, Tagged};
use std::collections::HashSet;
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints,
    CrlDistributionPoints, ExtendedKeyUsage, FreshestCrl, KeyUsage, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

/// Seconds a certificate's notBefore may lie before "now" (clock skew of relying parties is
/// handled by the daemon backdating by a small configured amount, never by more than this).
pub const MAX_BACKDATE_SECS: u64 = 24 * 3600;
/// Seconds a notBefore may lie after "now" (none is ever built; this only absorbs rounding).
pub const MAX_FUTURE_SECS: u64 = 300;
/// ub-common-name (RFC 5280 Appendix A.1), in characters.
pub const MAX_COMMON_NAME_CHARS: usize = 64;

/// What the issuer contributes to a certificate.
#[derive(Clone, Debug)]
pub struct IssuerInfo {
    /// The issuer's subject name.
    pub name: Name,
    /// The issuer's subject key identifier (becomes the authority key identifier).
    pub key_identifier: Vec<u8>,
    /// OCSP responder URL for AIA, if the issuer has one.
    pub ocsp_url: Option<String>,
    /// caIssuers URL for AIA (where the issuer certificate is published).
    pub ca_issuers_url: Option<String>,
    /// CRL distribution point URL.
    pub crl_url: Option<String>,
    /// Delta CRL URL for the freshestCRL extension (RFC 5280 §4.2.1.15), when deltas are
    /// published.
    pub freshest_crl_url: Option<String>,
}

/// The subject-specific content of a certificate to build.
#[derive(Clone, Debug)]
pub struct CertificateTemplate {
    /// A fresh random serial (see [`crate::serial`]).
    pub serial: SerialNumber,
    /// The subject name.
    pub subject: Name,
    /// The subject's key.
    pub public_key: spki::SubjectPublicKeyInfoOwned,
    /// notBefore, Unix seconds.
    pub not_before: u64,
    /// notAfter, Unix seconds (inclusive, RFC 5280 §4.1.2.5).
    pub not_after: u64,
    /// subjectAltName, used when the profile copies it.
    pub subject_alt_name: Option<SubjectAltName>,
}

/// Why a certificate could not be built or failed its lint.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateError {
    /// An encoding step failed (a value out of its ASN.1 range).
    #[error("encoding: {0}")]
    Encoding(String),
    /// The to-be-signed certificate breaks its profile or RFC 5280 through something we built
    /// (our fault); the key was not used.
    #[error("lint: {0}")]
    Lint(String),
    /// The request's own content breaks the profile (subject encodings, missing required
    /// attributes, a key type the profile does not allow): the requester's fault.
    #[error("{0}")]
    Refused(String),
    /// The key backend is temporarily unable to sign (token removed, session lost): retry.
    #[error("key backend unavailable: {0}")]
    SignerUnavailable(String),
    /// The key backend refused to sign (key missing, mechanism refused).
    #[error("signing failed: {0}")]
    SignerFailed(String),
    /// The signature does not verify with the issuer's public key.
    #[error("the key backend produced a signature that does not verify; nothing was published")]
    BadSignature,
}

fn enc(e: der::Error) -> CertificateError {
    CertificateError::Encoding(e.to_string())
}

fn lint_err(msg: impl Into<String>) -> CertificateError {
    CertificateError::Lint(msg.into())
}

fn refused(msg: impl Into<String>) -> CertificateError {
    CertificateError::Refused(msg.into())
}

/// Encodes `value` as an extension with the given criticality.
fn extension<T: AssociatedOid + Encode>(
    value: &T,
    critical: bool,
) -> Result<Extension, CertificateError> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der().map_err(enc)?).map_err(enc)?,
    })
}

fn uri(url: &str) -> Result<GeneralName, CertificateError> {
    Ok(GeneralName::UniformResourceIdentifier(
        Ia5String::new(url).map_err(enc)?,
    ))
}

/// The keyUsage of a certificate for `key` under `profile` ([`Profile::key_usage_for`]; the
/// profile's bits as written for a key type pkid does not know, which issuance refuses anyway).
fn key_usage(profile: &Profile, key: &spki::SubjectPublicKeyInfoOwned) -> KeyUsage {
    algorithm::KeyType::of(key).map_or(profile.key_usage, |k| profile.key_usage_for(k))
}

/// Builds the to-be-signed certificate. `issuer == None` makes it self-signed (a root).
pub fn build_tbs(
    profile: &Profile,
    issuer: Option<&IssuerInfo>,
    template: &CertificateTemplate,
    algorithm: SignatureAlgorithm,
) -> Result<TbsCertificate, CertificateError> {
    let ski = algorithm::key_identifier(&template.public_key);
    let mut exts = Vec::new();
    if let Some(path_len) = profile.ca {
        exts.push(extension(
            &BasicConstraints {
                ca: true,
                path_len_constraint: path_len,
            },
            true,
        )?);
    }
    exts.push(extension(&key_usage(profile, &template.public_key), true)?);
    if !profile.extended_key_usage.is_empty() {
        exts.push(extension(
            &ExtendedKeyUsage(profile.extended_key_usage.clone()),
            profile.extended_key_usage_critical,
        )?);
    }
    exts.push(extension(
        &SubjectKeyIdentifier(OctetString::new(ski.clone()).map_err(enc)?),
        false,
    )?);
    let aki = issuer
        .map(|i| i.key_identifier.clone())
        .unwrap_or_else(|| ski.clone());
    if issuer.is_some() {
        exts.push(extension(
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(aki).map_err(enc)?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            false,
        )?);
    }
    if profile.copy_subject_alt_name {
        if let Some(san) = &template.subject_alt_name {
            // RFC 5280 §4.2.1.6: critical when the subject is empty.
            exts.push(extension(san, template.subject.0.is_empty())?);
        }
    }
    if let (true, Some(issuer)) = (profile.revocation_pointers, issuer) {
        let mut aia = Vec::new();
        if let Some(url) = &issuer.ocsp_url {
            aia.push(AccessDescription {
                access_method: oids::ID_AD_OCSP,
                access_location: uri(url)?,
            });
        }
        if let Some(url) = &issuer.ca_issuers_url {
            aia.push(AccessDescription {
                access_method: oids::ID_AD_CA_ISSUERS,
                access_location: uri(url)?,
            });
        }
        if !aia.is_empty() {
            exts.push(extension(&AuthorityInfoAccessSyntax(aia), false)?);
        }
        if let Some(url) = &issuer.crl_url {
            exts.push(extension(
                &CrlDistributionPoints(vec![DistributionPoint {
                    distribution_point: Some(DistributionPointName::FullName(vec![uri(url)?])),
                    reasons: None,
                    crl_issuer: None,
                }]),
                false,
            )?);
        }
        if let Some(url) = &issuer.freshest_crl_url {
            exts.push(extension(
                &FreshestCrl(vec![DistributionPoint {
                    distribution_point: Some(DistributionPointName::FullName(vec![uri(url)?])),
                    reasons: None,
                    crl_issuer: None,
                }]),
                false,
            )?);
        }
    }
    if profile.ocsp_nocheck {
        exts.push(Extension {
            extn_id: rfc6960::ID_PKIX_OCSP_NOCHECK,
            critical: false,
            extn_value: OctetString::new(der::asn1::Null.to_der().map_err(enc)?).map_err(enc)?,
        });
    }
    Ok(TbsCertificate {
        version: Version::V3,
        serial_number: template.serial.clone(),
        signature: algorithm.identifier(),
        issuer: issuer
            .map(|i| i.name.clone())
            .unwrap_or_else(|| template.subject.clone()),
        validity: Validity {
            not_before: x509_time(template.not_before).map_err(enc)?,
            not_after: x509_time(template.not_after).map_err(enc)?,
        },
        subject: template.subject.clone(),
        subject_public_key_info: template.public_key.clone(),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(exts),
    })
}

fn find(exts: &[Extension], oid: ObjectIdentifier) -> Option<&Extension> {
    exts.iter().find(|e| e.extn_id == oid)
}

/// Checks a to-be-signed certificate against its profile and RFC 5280 before any key is used.
pub fn lint(
    profile: &Profile,
    tbs: &TbsCertificate,
    signer_algorithm: SignatureAlgorithm,
    now: u64,
) -> Result<(), CertificateError> {
    if tbs.version != Version::V3 {
        return Err(lint_err("version must be v3"));
    }
    let serial = tbs.serial_number.as_bytes();
    if serial.len() > 20 || serial.first().is_none_or(|b| b & 0x80 != 0) {
        return Err(lint_err("serial must be positive and at most 20 octets"));
    }
    let significant = serial.iter().skip_while(|b| **b == 0).count();
    if significant < 8 {
        return Err(lint_err("serial must carry at least 64 bits"));
    }
    if tbs.signature != signer_algorithm.identifier() {
        return Err(lint_err(
            "signature algorithm does not match the signing key",
        ));
    }
    let key = KeyType::of(&tbs.subject_public_key_info).map_err(|e| refused(e.to_string()))?;
    if !profile.allows_key(key) {
        return Err(refused(format!(
            "profile {} does not allow {} keys",
            profile.name,
            key.name()
        )));
    }
    let nb = unix_of(&tbs.validity.not_before);
    let na = unix_of(&tbs.validity.not_after);
    if na <= nb {
        return Err(lint_err("notAfter must be after notBefore"));
    }
    if nb + MAX_BACKDATE_SECS < now || nb > now + MAX_FUTURE_SECS {
        return Err(lint_err("notBefore is too far from the current time"));
    }
    // +1 day tolerance covers backdating; validity is counted inclusively by RFC 5280.
    if na - nb > (u64::from(profile.max_validity_days) + 1) * 86_400 {
        return Err(lint_err(format!(
            "validity exceeds the profile's {} days",
            profile.max_validity_days
        )));
    }
    for (t, label) in [
        (&tbs.validity.not_before, "notBefore"),
        (&tbs.validity.not_after, "notAfter"),
    ] {
        let utc = matches!(t, x509_cert::time::Time::UtcTime(_));
        if utc != (unix_of(t) < 2_524_608_000) {
            return Err(lint_err(format!(
                "{label} must be UTCTime before 2050 and GeneralizedTime after"
            )));
        }
    }
    lint_name(&tbs.subject, &profile.required_subject)?;

    let exts = tbs.extensions.as_deref().unwrap_or_default();
    let mut seen = HashSet::new();
    for e in exts {
        if !seen.insert(e.extn_id) {
            return Err(lint_err(format!("duplicate extension {}", e.extn_id)));
        }
    }
    let ku = find(exts, KeyUsage::OID).ok_or_else(|| lint_err("keyUsage missing"))?;
    let ku_value =
        KeyUsage::from_der(ku.extn_value.as_bytes()).map_err(|e| lint_err(e.to_string()))?;
    if !ku.critical || ku_value != key_usage(profile, &tbs.subject_public_key_info) {
        return Err(lint_err(
            "keyUsage differs from the profile or is not critical",
        ));
    }
    match (profile.ca, find(exts, BasicConstraints::OID)) {
        (Some(path_len), Some(bc)) => {
            let v = BasicConstraints::from_der(bc.extn_value.as_bytes())
                .map_err(|e| lint_err(e.to_string()))?;
            if !bc.critical
                || !v.ca
                || v.path_len_constraint != path_len
                || !ku_value.key_cert_sign()
            {
                return Err(lint_err(
                    "CA basicConstraints/keyCertSign differ from the profile",
                ));
            }
        }
        (None, Some(bc)) => {
            let v = BasicConstraints::from_der(bc.extn_value.as_bytes())
                .map_err(|e| lint_err(e.to_string()))?;
            if v.ca {
                return Err(lint_err("end-entity profile produced a CA certificate"));
            }
        }
        (Some(_), None) => return Err(lint_err("CA certificate without basicConstraints")),
        (None, None) => {
            if ku_value.key_cert_sign() || ku_value.crl_sign() {
                return Err(lint_err("end-entity certificate with keyCertSign/cRLSign"));
            }
        }
    }
    let eku = find(exts, ExtendedKeyUsage::OID);
    match eku {
        None if profile.extended_key_usage.is_empty() => {}
        Some(e) => {
            let v = ExtendedKeyUsage::from_der(e.extn_value.as_bytes())
                .map_err(|e| lint_err(e.to_string()))?;
            if v.0 != profile.extended_key_usage
                || e.critical != profile.extended_key_usage_critical
            {
                return Err(lint_err("extendedKeyUsage differs from the profile"));
            }
        }
        None => return Err(lint_err("extendedKeyUsage missing")),
    }
    if find(exts, SubjectKeyIdentifier::OID).is_none() {
        return Err(lint_err("subjectKeyIdentifier missing"));
    }
    if tbs.issuer != tbs.subject && find(exts, AuthorityKeyIdentifier::OID).is_none() {
        return Err(lint_err("authorityKeyIdentifier missing"));
    }
    if profile.ocsp_nocheck != find(exts, rfc6960::ID_PKIX_OCSP_NOCHECK).is_some() {
        return Err(lint_err("id-pkix-ocsp-nocheck differs from the profile"));
    }
    Ok(())
}

/// Checks subject attribute encodings and the profile's required attributes.
fn lint_name(name: &Name, required: &[ObjectIdentifier]) -> Result<(), CertificateError> {
    if name.0.is_empty() {
        return Err(refused("empty subject"));
    }
    for atv in name.0.iter().flat_map(|rdn| rdn.0.iter()) {
        let tag = atv.value.tag();
        let text = std::str::from_utf8(atv.value.value())
            .map_err(|_| refused("subject attribute is not text"))?;
        match atv.oid {
            rfc4519::C => {
                if tag != Tag::PrintableString
                    || text.len() != 2
                    || !text.bytes().all(|b| b.is_ascii_uppercase())
                {
                    return Err(refused(
                        "countryName must be a two-letter upper-case PrintableString",
                    ));
                }
            }
            rfc4519::SERIAL_NUMBER => {
                if tag != Tag::PrintableString {
                    return Err(refused("serialNumber must be a PrintableString"));
                }
            }
            _ => {
                if !matches!(tag, Tag::Utf8String | Tag::PrintableString | Tag::Ia5String) {
                    return Err(refused(format!(
                        "attribute {} uses a legacy string type",
                        atv.oid
                    )));
                }
                if text.is_empty() {
                    return Err(refused(format!("attribute {} is empty", atv.oid)));
                }
                if atv.oid == rfc4519::CN && text.chars().count() > MAX_COMMON_NAME_CHARS {
                    return Err(refused("commonName is longer than 64 characters"));
                }
            }
        }
    }
    for oid in required {
        if !name
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .any(|atv| atv.oid == *oid)
        {
            let label = const_oid::db::DB.by_oid(oid).unwrap_or("attribute");
            return Err(refused(format!("subject lacks required {label} ({oid})")));
        }
    }
    Ok(())
}

/// A linted `TBSCertificate`, encoded once, waiting for the issuer's signature.
///
/// The daemon stores [`ToBeSigned::tbs`] before signing (so a signed certificate is never lost),
/// signs exactly those bytes and hands the signature to [`Unsigned::into_signed`].
#[derive(Debug)]
pub struct ToBeSigned<'k> {
    der: Vec<u8>,
    algorithm: SignatureAlgorithm,
    issuer_key: &'k spki::SubjectPublicKeyInfoOwned,
}

impl<'k> ToBeSigned<'k> {
    /// Encodes `tbs` for signing by `algorithm`; the signature will be checked against
    /// `issuer_key` (the subject's own key for a self-signed root). Refuses (lint) a `tbs` whose
    /// signature field names another algorithm, which no relying party could verify.
    pub fn new(
        tbs: &TbsCertificate,
        algorithm: SignatureAlgorithm,
        issuer_key: &'k spki::SubjectPublicKeyInfoOwned,
    ) -> Result<Self, CertificateError> {
        if tbs.signature != algorithm.identifier() {
            return Err(lint_err(
                "signature algorithm does not match the signing key",
            ));
        }
        Ok(Self {
            der: tbs.to_der().map_err(enc)?,
            algorithm,
            issuer_key,
        })
    }

    /// The DER `TBSCertificate`: what is stored before signing and what gets signed.
    pub fn tbs(&self) -> &[u8] {
        &self.der
    }
}

impl Unsigned for ToBeSigned<'_> {
    /// The DER `Certificate`.
    type Signed = Vec<u8>;
    type Error = CertificateError;

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn message(&self) -> &[u8] {
        &self.der
    }

    /// Verifies `signature` over the TBS with the issuer's key (a faulty token's signature is
    /// never published) and encodes the certificate around the same TBS bytes.
    fn into_signed(self, signature: &[u8]) -> Result<Vec<u8>, CertificateError> {
        algorithm::verify(
            self.issuer_key,
            &self.algorithm.identifier(),
            &self.der,
            signature,
        )
        .map_err(|_| CertificateError::BadSignature)?;
        signed_sequence(&self.der, self.algorithm, signature).map_err(enc)
    }
}

/// Decodes PEM with one of `labels`, or passes DER through. Whitespace around PEM is ignored.
pub fn pem_or_der(input: &[u8], labels: &[&str]) -> Result<Vec<u8>, der::Error> {
    let trimmed = input.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let (label, der) = pem_rfc7468_decode(trimmed)?;
        if labels.contains(&label.as_str()) {
            Ok(der)
        } else {
            Err(der::Error::from(der::ErrorKind::Failed))
        }
    } else {
        Ok(input.to_vec())
    }
}

fn pem_rfc7468_decode(input: &[u8]) -> Result<(String, Vec<u8>), der::Error> {
    let (label, der) = der::pem::decode_vec(input).map_err(der::Error::from)?;
    Ok((label.to_string(), der))
}

/// PEM-encodes a DER certificate.
pub fn certificate_pem(der: &[u8]) -> String {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).unwrap_or_default()
}

/// Decodes a DER certificate, refusing trailing data.
pub fn parse_certificate(der: &[u8]) -> Result<Certificate, der::Error> {
    Certificate::from_der(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial;
    use crate::test_key::{corrupt, TestKey};

    const NOW: u64 = 1_800_000_000;

    fn root_tbs(k: &TestKey, days: u64) -> (Profile, TbsCertificate) {
        let profile = Profile::root_ca(3650);
        let t = CertificateTemplate {
            serial: serial::from_random([7; 16]),
            subject: crate::name::parse("CN=Test Root,O=Ban Cơ yếu,C=VN").expect("name"),
            public_key: k.spki.clone(),
            not_before: NOW,
            not_after: NOW + days * 86_400,
            subject_alt_name: None,
        };
        let tbs = build_tbs(&profile, None, &t, SignatureAlgorithm::EcdsaSha256).expect("tbs");
        (profile, tbs)
    }

    #[test]
    fn self_signed_root_builds_lints_and_verifies() {
        let k = TestKey::p256();
        let (profile, tbs) = root_tbs(&k, 3650);
        lint(&profile, &tbs, SignatureAlgorithm::EcdsaSha256, NOW).expect("lint");
        let unsigned =
            ToBeSigned::new(&tbs, SignatureAlgorithm::EcdsaSha256, &k.spki).expect("tbs");
        // The bytes to sign are the crate's DER of the TBSCertificate, unchanged.
        assert_eq!(unsigned.tbs(), tbs.to_der().expect("der"));
        assert_eq!(unsigned.message(), unsigned.tbs());
        let bytes = k.sign_into(unsigned).expect("sign");
        let back = Certificate::from_der(&bytes).expect("decode");
        assert_eq!(back.tbs_certificate, tbs);
        assert_eq!(
            back.signature_algorithm,
            SignatureAlgorithm::EcdsaSha256.identifier()
        );
        // Assembled by hand, yet exactly the crate's encoding of the same certificate.
        assert_eq!(back.to_der().expect("re-encode"), bytes);
        algorithm::verify(
            &k.spki,
            &back.signature_algorithm,
            &tbs.to_der().expect("der"),
            back.signature.raw_bytes(),
        )
        .expect("verifies");
    }

    #[test]
    fn lint_refuses_overlong_validity_and_wrong_algorithm() {
        let k = TestKey::p256();
        let (profile, tbs) = root_tbs(&k, 4000);
        assert!(matches!(
            lint(&profile, &tbs, SignatureAlgorithm::EcdsaSha256, NOW),
            Err(CertificateError::Lint(_))
        ));
        let (profile, tbs) = root_tbs(&k, 10);
        assert!(matches!(
            lint(&profile, &tbs, SignatureAlgorithm::EcdsaSha384, NOW),
            Err(CertificateError::Lint(_))
        ));
        assert!(matches!(
            lint(
                &profile,
                &tbs,
                SignatureAlgorithm::EcdsaSha256,
                NOW + 3 * 86_400
            ),
            Err(CertificateError::Lint(_))
        ));
        assert!(matches!(
            ToBeSigned::new(&tbs, SignatureAlgorithm::EcdsaSha384, &k.spki),
            Err(CertificateError::Lint(_))
        ));
    }

    #[test]
    fn lint_refuses_missing_required_subject_attribute() {
        let k = TestKey::p256();
        let (mut profile, tbs) = root_tbs(&k, 10);
        profile
            .required_subject
            .push(const_oid::db::rfc4519::ORGANIZATIONAL_UNIT_NAME);
        let err =
            lint(&profile, &tbs, SignatureAlgorithm::EcdsaSha256, NOW).expect_err("must fail");
        assert!(err.to_string().contains("ou"), "{err}");
    }

    #[test]
    fn faulty_signature_is_caught_before_publication() {
        let k = TestKey::p256();
        let (_, tbs) = root_tbs(&k, 10);
        let unsigned = || ToBeSigned::new(&tbs, SignatureAlgorithm::EcdsaSha256, &k.spki);
        let flipped = corrupt(k.sign(unsigned().expect("tbs").tbs()));
        assert_eq!(
            unsigned().expect("tbs").into_signed(&flipped),
            Err(CertificateError::BadSignature)
        );
    }

    #[test]
    fn signatures_over_other_bytes_or_by_another_key_are_refused() {
        let k = TestKey::p256();
        let other = TestKey::p256();
        let (_, tbs) = root_tbs(&k, 10);
        let unsigned = || ToBeSigned::new(&tbs, SignatureAlgorithm::EcdsaSha256, &k.spki);
        let mut elsewhere = unsigned().expect("tbs").tbs().to_vec();
        elsewhere.push(0);
        assert_eq!(
            unsigned().expect("tbs").into_signed(&k.sign(&elsewhere)),
            Err(CertificateError::BadSignature)
        );
        let by_other = other.sign(unsigned().expect("tbs").tbs());
        assert_eq!(
            unsigned().expect("tbs").into_signed(&by_other),
            Err(CertificateError::BadSignature)
        );
    }
}
