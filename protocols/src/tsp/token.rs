//! The granted `TimeStampResp` around one signature, written in one pass into one buffer of the
//! final size ([RFC 3161 §2.4.2](https://www.rfc-editor.org/rfc/rfc3161#section-2.4.2),
//! [RFC 5652 §5](https://www.rfc-editor.org/rfc/rfc5652#section-5)).
//!
//! ```text
//! TimeStampResp ::= SEQUENCE {
//!     status          PKIStatusInfo,                    -- granted
//!     timeStampToken  TimeStampToken OPTIONAL }
//! TimeStampToken ::= ContentInfo                        -- SEQUENCE { id-signedData, [0] EXPLICIT SignedData }
//! SignedData ::= SEQUENCE {
//!     version CMSVersion,                               -- 3
//!     digestAlgorithms SET OF DigestAlgorithmIdentifier,
//!     encapContentInfo EncapsulatedContentInfo,         -- SEQUENCE { id-ct-TSTInfo, [0] EXPLICIT OCTET STRING }
//!     certificates [0] IMPLICIT CertificateSet OPTIONAL,
//!     signerInfos SET OF SignerInfo }
//! SignerInfo ::= SEQUENCE {
//!     version CMSVersion,                               -- 1
//!     sid SignerIdentifier,                             -- issuerAndSerialNumber
//!     digestAlgorithm DigestAlgorithmIdentifier,
//!     signedAttrs [0] IMPLICIT SignedAttributes,        -- the signed SET OF, retagged
//!     signatureAlgorithm SignatureAlgorithmIdentifier,
//!     signature SignatureValue }                        -- OCTET STRING
//! ```
//!
//! Every part but the signature is already DER when the signature arrives: the TSTInfo and the
//! signed attributes (encoded once, before signing), the TSA certificate and its
//! issuerAndSerialNumber (encoded once per certificate). Decoding them into owned `cms` types to
//! encode them again would clone the certificate and re-encode the token twice per request; here
//! only the few headers whose lengths depend on the token are written. The tests decode every
//! token with the `cms` types and require the re-encoding to be identical, and the RSA vector
//! `testdata/tsp/pkid-granted.tsr` to match byte for byte.

use der::{Encode, Header, Length, Tag, TagNumber};

/// `PKIStatusInfo { status granted(0) }`: `SEQUENCE { INTEGER 0 }`.
pub(crate) const GRANTED_STATUS: [u8; 5] = [0x30, 0x03, 0x02, 0x01, 0x00];
/// `CMSVersion` 3 (SignedData whose eContentType is not id-data, RFC 5652 §5.1).
const VERSION_3: [u8; 3] = [0x02, 0x01, 0x03];
/// `CMSVersion` 1 (SignerInfo with issuerAndSerialNumber, RFC 5652 §5.3).
const VERSION_1: [u8; 3] = [0x02, 0x01, 0x01];
/// The SET OF tag of encoded signed attributes (what is signed, RFC 5652 §5.4).
const SET_TAG: u8 = 0x31;
/// `[0] IMPLICIT` constructed: the tag signedAttrs carry inside SignerInfo.
const CONTEXT_0_CONSTRUCTED: Tag = Tag::ContextSpecific {
    constructed: true,
    number: TagNumber::N0,
};

/// The already-encoded parts of one token.
pub(crate) struct TokenParts<'a> {
    /// DER `OBJECT IDENTIFIER` id-signedData.
    pub(crate) signed_data_oid: &'a [u8],
    /// DER `OBJECT IDENTIFIER` id-ct-TSTInfo.
    pub(crate) tst_info_oid: &'a [u8],
    /// DER digest `AlgorithmIdentifier`.
    pub(crate) digest_algorithm: &'a [u8],
    /// DER `TSTInfo` (the eContent).
    pub(crate) tst_info: &'a [u8],
    /// DER TSA certificate, when the request set certReq.
    pub(crate) certificate: Option<&'a [u8]>,
    /// DER `IssuerAndSerialNumber` of the TSA certificate.
    pub(crate) signer_id: &'a [u8],
    /// The signed attributes as signed: DER `SET OF Attribute`.
    pub(crate) signed_attributes: &'a [u8],
    /// DER signature `AlgorithmIdentifier`.
    pub(crate) signature_algorithm: &'a [u8],
    /// The signature.
    pub(crate) signature: &'a [u8],
}

/// Length of a TLV with `len` content octets.
fn tlv(tag: Tag, len: usize) -> der::Result<usize> {
    let header = Header::new(tag, Length::try_from(len)?)?;
    Ok(usize::try_from(header.encoded_len()?)? + len)
}

fn header(out: &mut Vec<u8>, tag: Tag, len: usize) -> der::Result<()> {
    Header::new(tag, Length::try_from(len)?)?.encode(out)
}

/// Encodes the granted `TimeStampResp`.
pub(crate) fn granted_response(p: &TokenParts<'_>) -> der::Result<Vec<u8>> {
    let attrs = p
        .signed_attributes
        .split_first()
        .filter(|(tag, _)| **tag == SET_TAG)
        .map(|(_, rest)| rest)
        .ok_or_else(|| der::Error::from(der::ErrorKind::Failed))?;
    let econtent = tlv(Tag::OctetString, p.tst_info.len())?;
    let encap_value = p.tst_info_oid.len() + tlv(CONTEXT_0_CONSTRUCTED, econtent)?;
    let certs = match p.certificate {
        Some(c) => tlv(CONTEXT_0_CONSTRUCTED, c.len())?,
        None => 0,
    };
    let signer_info_value = VERSION_1.len()
        + p.signer_id.len()
        + p.digest_algorithm.len()
        + p.signed_attributes.len()
        + p.signature_algorithm.len()
        + tlv(Tag::OctetString, p.signature.len())?;
    let signer_info = tlv(Tag::Sequence, signer_info_value)?;
    let signed_data_value = VERSION_3.len()
        + tlv(Tag::Set, p.digest_algorithm.len())?
        + tlv(Tag::Sequence, encap_value)?
        + certs
        + tlv(Tag::Set, signer_info)?;
    let signed_data = tlv(Tag::Sequence, signed_data_value)?;
    let content_info_value = p.signed_data_oid.len() + tlv(CONTEXT_0_CONSTRUCTED, signed_data)?;
    let response_value = GRANTED_STATUS.len() + tlv(Tag::Sequence, content_info_value)?;
    let total = tlv(Tag::Sequence, response_value)?;

    let mut out = Vec::with_capacity(total);
    header(&mut out, Tag::Sequence, response_value)?;
    out.extend_from_slice(&GRANTED_STATUS);
    header(&mut out, Tag::Sequence, content_info_value)?;
    out.extend_from_slice(p.signed_data_oid);
    header(&mut out, CONTEXT_0_CONSTRUCTED, signed_data)?;
    header(&mut out, Tag::Sequence, signed_data_value)?;
    out.extend_from_slice(&VERSION_3);
    header(&mut out, Tag::Set, p.digest_algorithm.len())?;
    out.extend_from_slice(p.digest_algorithm);
    header(&mut out, Tag::Sequence, encap_value)?;
    out.extend_from_slice(p.tst_info_oid);
    header(&mut out, CONTEXT_0_CONSTRUCTED, econtent)?;
    header(&mut out, Tag::OctetString, p.tst_info.len())?;
    out.extend_from_slice(p.tst_info);
    if let Some(c) = p.certificate {
        header(&mut out, CONTEXT_0_CONSTRUCTED, c.len())?;
        out.extend_from_slice(c);
    }
    header(&mut out, Tag::Set, signer_info)?;
    header(&mut out, Tag::Sequence, signer_info_value)?;
    out.extend_from_slice(&VERSION_1);
    out.extend_from_slice(p.signer_id);
    out.extend_from_slice(p.digest_algorithm);
    // Same length octets: only the tag changes from SET OF to [0] IMPLICIT (RFC 5652 §5.4).
    out.push(CONTEXT_0_CONSTRUCTED.octet());
    out.extend_from_slice(attrs);
    out.extend_from_slice(p.signature_algorithm);
    header(&mut out, Tag::OctetString, p.signature.len())?;
    out.extend_from_slice(p.signature);
    if out.len() != total {
        return Err(der::ErrorKind::Failed.into());
    }
    Ok(out)
}
