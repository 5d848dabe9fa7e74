//! Detached CMS SignedData (RFC 5652) over a request document: what `openssl cms -sign
//! -binary -outform DER` makes, and what a PDF's `/Contents` holds.
//!
//! ```text
//! ContentInfo { id-signedData, SignedData {
//!     encapContentInfo { id-data, (no eContent: detached) },
//!     certificates      (the signer's, perhaps its chain),
//!     signerInfos       { exactly one SignerInfo {
//!         sid, digestAlgorithm,
//!         signedAttrs? { content-type = id-data, message-digest = H(content), signingTime? },
//!         signatureAlgorithm, signature over DER(SET OF signedAttrs) or over the content } } } }
//! ```
//!
//! Exactly one signer: the RA must name the one person whose signature makes the document
//! evidence, and check that person against the organisation's officers. A second signature
//! would either be checked too (and the API would have to say which one counted) or be ignored
//! (and a document would look countersigned when one of its signatures is not checked); pkid
//! refuses the ambiguity. Encapsulated content (`-nodetach`) is refused as well: the bytes the
//! RA keeps are the file the organisation uploaded, never a copy taken out of the signature.

use super::signature::{self, digest_of};
use super::{DocumentError, SignedDocument};
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use const_oid::db::rfc5911::{
    ID_CONTENT_TYPE, ID_DATA, ID_MESSAGE_DIGEST, ID_SIGNED_DATA, ID_SIGNING_TIME,
};
use der::asn1::{AnyRef, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Reader, SliceReader, Tag, TagNumber, Tagged};
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::time::Time;
use x509_cert::Certificate;

/// Largest CMS signature accepted, bytes. A signature with a four-certificate RSA-4096 chain is
/// under 16 KiB and PDF signers reserve 8–32 KiB; 512 KiB refuses absurd input before parsing.
pub const MAX_CMS_BYTES: usize = 512 * 1024;
/// Most certificates a signature may carry: a chain is a handful; the bound keeps path
/// building (which tries each candidate) cheap on hostile input.
pub const MAX_CERTIFICATES: usize = 16;

fn malformed(what: &str) -> impl Fn(der::Error) -> DocumentError + '_ {
    move |e| DocumentError::MalformedCms(format!("{what}: {e}"))
}

/// Verifies a detached CMS signature (`signature`, DER) over `content`. The signer is not yet
/// trusted: pass [`SignedDocument::signer`] to [`super::verify_chain`].
pub fn verify_detached(content: &[u8], signature: &[u8]) -> Result<SignedDocument, DocumentError> {
    verify_parts(&[content], signature)
}

/// As [`verify_detached`], the content given as consecutive parts (a PDF's two signed ranges,
/// hashed without being copied together).
pub(crate) fn verify_parts(
    parts: &[&[u8]],
    signature: &[u8],
) -> Result<SignedDocument, DocumentError> {
    if signature.len() > MAX_CMS_BYTES {
        return Err(DocumentError::TooLarge {
            length: signature.len(),
            max: MAX_CMS_BYTES,
        });
    }
    let info = ContentInfo::from_der(signature).map_err(malformed("ContentInfo"))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(DocumentError::MalformedCms(format!(
            "content type {} is not id-signedData",
            info.content_type
        )));
    }
    let signed_data_der = info.content.to_der().map_err(malformed("SignedData"))?;
    let signed_data = SignedData::from_der(&signed_data_der).map_err(malformed("SignedData"))?;
    let encapsulated = &signed_data.encap_content_info;
    if encapsulated.econtent.is_some() {
        return Err(DocumentError::NotDetached);
    }
    if encapsulated.econtent_type != ID_DATA {
        return Err(DocumentError::ContentType(
            encapsulated.econtent_type.to_string(),
        ));
    }
    let signer_info = match signed_data.signer_infos.0.as_slice() {
        [one] => one,
        other => return Err(DocumentError::SignerCount(other.len())),
    };
    let digest_algorithm = digest_of(&signer_info.digest_alg)?;

    let mut certificates = Vec::new();
    for choice in signed_data.certificates.iter().flat_map(|set| set.0.iter()) {
        match choice {
            CertificateChoices::Certificate(c) => certificates.push(c.clone()),
            CertificateChoices::Other(_) => {} // attribute or other formats: not certificates
        }
    }
    if certificates.len() > MAX_CERTIFICATES {
        return Err(DocumentError::MalformedCms(format!(
            "{} certificates, over the limit of {MAX_CERTIFICATES}",
            certificates.len()
        )));
    }
    let signer_at = certificates
        .iter()
        .position(|c| identifies(&signer_info.sid, c))
        .ok_or(DocumentError::SignerCertificateMissing)?;
    let signer = certificates.remove(signer_at);

    let mut context = aws_lc_rs::digest::Context::new(digest_algorithm.aws_lc());
    parts.iter().for_each(|p| context.update(p));
    let content_digest = context.finish();

    let (message, signing_time) = match &signer_info.signed_attrs {
        Some(attributes) => {
            let content_type: ObjectIdentifier =
                single(attributes.as_slice(), ID_CONTENT_TYPE, "content-type")?
                    .ok_or(DocumentError::Attribute("content-type"))?;
            if content_type != encapsulated.econtent_type {
                return Err(DocumentError::ContentType(content_type.to_string()));
            }
            let digest: OctetString =
                single(attributes.as_slice(), ID_MESSAGE_DIGEST, "message-digest")?
                    .ok_or(DocumentError::Attribute("message-digest"))?;
            if digest.as_bytes() != content_digest.as_ref() {
                return Err(DocumentError::DigestMismatch);
            }
            let signing_time =
                single::<Time>(attributes.as_slice(), ID_SIGNING_TIME, "signing-time")?
                    .map(|t| t.to_unix_duration().as_secs());
            (signed_attributes_der(&signed_data_der)?, signing_time)
        }
        None => (parts.concat(), None),
    };
    signature::verify(
        &signer.tbs_certificate.subject_public_key_info,
        &signer_info.signature_algorithm,
        Some(digest_algorithm),
        &message,
        signer_info.signature.as_bytes(),
    )?;
    Ok(SignedDocument {
        signer,
        other_certs: certificates,
        signing_time,
        digest_algorithm,
    })
}

/// Whether `certificate` is the one `sid` names (RFC 5652 §5.3).
fn identifies(sid: &SignerIdentifier, certificate: &Certificate) -> bool {
    let tbs = &certificate.tbs_certificate;
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(named) => {
            tbs.issuer == named.issuer && tbs.serial_number == named.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(wanted) => {
            matches!(tbs.get::<SubjectKeyIdentifier>(), Ok(Some((_, ski))) if ski == *wanted)
        }
    }
}

/// The value of the signed attribute `oid`, when present: once, with one value (RFC 5652
/// §11: content-type, message-digest and signing-time are single-valued and must not repeat).
fn single<T: for<'b> Decode<'b>>(
    attributes: &[Attribute],
    oid: ObjectIdentifier,
    name: &'static str,
) -> Result<Option<T>, DocumentError> {
    let mut found = attributes.iter().filter(|a| a.oid == oid);
    let Some(attribute) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(DocumentError::Attribute(name));
    }
    match attribute.values.as_slice() {
        [value] => value
            .to_der()
            .and_then(|der| T::from_der(&der))
            .map(Some)
            .map_err(malformed(name)),
        _ => Err(DocumentError::Attribute(name)),
    }
}

/// The bytes the signature covers when there are signed attributes (RFC 5652 §5.4): the
/// `signedAttrs` field exactly as received, its `[0] IMPLICIT` tag replaced by the `SET OF`
/// tag. Taken from the received encoding rather than re-encoded, so the order and the value
/// encodings are the signer's own.
fn signed_attributes_der(signed_data_der: &[u8]) -> Result<Vec<u8>, DocumentError> {
    let bad = malformed("signerInfos");
    let signed_data = AnyRef::from_der(signed_data_der).map_err(&bad)?;
    let signer_infos = elements(signed_data.value())
        .map_err(&bad)?
        .pop()
        .ok_or(DocumentError::MalformedCms("SignedData is empty".into()))?;
    let signer_info = elements(signer_infos.value())
        .map_err(&bad)?
        .pop()
        .ok_or(DocumentError::MalformedCms("signerInfos is empty".into()))?;
    let attributes_tag = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::N0,
    };
    let attributes = elements(signer_info.value())
        .map_err(&bad)?
        .into_iter()
        .find(|e| e.tag() == attributes_tag)
        .ok_or(DocumentError::MalformedCms("signedAttrs not found".into()))?;
    AnyRef::new(Tag::Set, attributes.value())
        .and_then(|set| set.to_der())
        .map_err(bad)
}

/// The TLV elements inside a constructed value.
fn elements(value: &[u8]) -> der::Result<Vec<AnyRef<'_>>> {
    let mut reader = SliceReader::new(value)?;
    let mut out = Vec::new();
    while !reader.is_finished() {
        out.push(AnyRef::decode(&mut reader)?);
    }
    Ok(out)
}
