//! Distinguished names: parsing the operator's RFC 4514 strings, and display.
//!
//! Attribute values are encoded as UTF8String (so Vietnamese names round-trip), except
//! countryName and serialNumber (PrintableString, RFC 5280 Appendix A) and domainComponent
//! (IA5String) — x509-cert's RFC 4514 parser applies exactly these rules.

use der::Encode;
use std::str::FromStr;
use x509_cert::name::Name;

/// Longest subject string we accept from an operator or config (bounds a hostile input).
pub const MAX_NAME_CHARS: usize = 2048;

/// Why a name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid distinguished name {input:?}: {reason}")]
pub struct NameError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses an RFC 4514 string (`CN=Nguyễn Văn A,O=Ban Cơ yếu Chính phủ,C=VN`) into a Name.
/// An OpenSSL-style `/C=VN/O=…/CN=…` is accepted too.
pub fn parse(input: &str) -> Result<Name, NameError> {
    let err = |reason: &str| NameError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    if input.chars().count() > MAX_NAME_CHARS {
        return Err(err("too long"));
    }
    let rfc4514 = if let Some(rest) = input.strip_prefix('/') {
        // OpenSSL order is most-significant first; RFC 4514 is least-significant first.
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        parts.into_iter().rev().collect::<Vec<_>>().join(",")
    } else {
        input.to_string()
    };
    let name = Name::from_str(&rfc4514).map_err(|e| err(&e.to_string()))?;
    if name.0.is_empty() {
        return Err(err("empty"));
    }
    if name.0.iter().any(|rdn| rdn.0.is_empty()) {
        return Err(err("empty relative distinguished name"));
    }
    name.to_der().map_err(|e| err(&e.to_string()))?;
    Ok(name)
}

/// `name` with its commonName set to `common_name` (UTF8String), in the same place; appended as
/// the most specific attribute when `name` has none. Used to name a CA's OCSP responder after
/// the CA ("CN=Health CA,O=…" → "CN=Health CA OCSP Responder,O=…").
pub fn with_common_name(name: &Name, common_name: &str) -> Result<Name, NameError> {
    let err = |reason: String| NameError {
        input: common_name.to_string(),
        reason,
    };
    let value = der::asn1::Utf8StringRef::new(common_name)
        .and_then(|v| der::Any::encode_from(&v))
        .map_err(|e| err(e.to_string()))?;
    let mut out = name.clone();
    let mut found = false;
    for rdn in out.0.iter_mut() {
        let mut attrs: Vec<_> = rdn.0.iter().cloned().collect();
        for a in attrs
            .iter_mut()
            .filter(|a| a.oid == const_oid::db::rfc4519::CN)
        {
            a.value = value.clone();
            found = true;
        }
        rdn.0 = der::asn1::SetOfVec::try_from(attrs).map_err(|e| err(e.to_string()))?;
    }
    if !found {
        let cn = x509_cert::attr::AttributeTypeAndValue {
            oid: const_oid::db::rfc4519::CN,
            value,
        };
        let rdn = der::asn1::SetOfVec::try_from(vec![cn]).map_err(|e| err(e.to_string()))?;
        out.0.push(x509_cert::name::RelativeDistinguishedName(rdn));
    }
    out.to_der().map_err(|e| err(e.to_string()))?;
    Ok(out)
}

/// The first commonName of `name`, if it has one that is a string.
pub fn common_name(name: &Name) -> Option<String> {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|a| a.oid == const_oid::db::rfc4519::CN)
        .and_then(|a| {
            der::asn1::Utf8StringRef::try_from(&a.value)
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    der::asn1::PrintableStringRef::try_from(&a.value)
                        .map(|s| s.as_str().to_string())
                })
                .ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::{Decode, Tag, Tagged};

    #[test]
    fn vietnamese_names_round_trip_as_utf8string() {
        let name = parse("CN=Nguyễn Văn Ánh,O=Ban Cơ yếu Chính phủ,C=VN").expect("parse");
        let der = name.to_der().expect("der");
        let back = Name::from_der(&der).expect("decode");
        assert_eq!(
            back.to_string(),
            "CN=Nguyễn Văn Ánh,O=Ban Cơ yếu Chính phủ,C=VN"
        );
        let country = &back.0[0].0.get(0).expect("C").value;
        assert_eq!(country.tag(), Tag::PrintableString);
        let cn = &back.0[2].0.get(0).expect("CN").value;
        assert_eq!(cn.tag(), Tag::Utf8String);
    }

    #[test]
    fn openssl_slash_form_is_accepted() {
        let a = parse("/C=VN/O=Org/CN=x").expect("slash");
        let b = parse("CN=x,O=Org,C=VN").expect("rfc4514");
        assert_eq!(a, b);
    }

    #[test]
    fn the_common_name_is_replaced_in_place_or_appended() {
        let ca = parse("CN=Cơ quan Y tế CA,O=Bộ Y tế,C=VN").expect("parse");
        assert_eq!(common_name(&ca).as_deref(), Some("Cơ quan Y tế CA"));
        let responder = with_common_name(&ca, "Cơ quan Y tế CA OCSP Responder").expect("cn");
        assert_eq!(
            responder.to_string(),
            "CN=Cơ quan Y tế CA OCSP Responder,O=Bộ Y tế,C=VN"
        );
        let no_cn = parse("O=Bộ Y tế,C=VN").expect("parse");
        assert_eq!(common_name(&no_cn), None);
        let added = with_common_name(&no_cn, "Responder").expect("cn");
        assert_eq!(added.to_string(), "CN=Responder,O=Bộ Y tế,C=VN");
        let back = Name::from_der(&added.to_der().expect("der")).expect("decode");
        assert_eq!(back, added);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse("not a name").is_err());
        assert!(parse("").is_err());
        assert!(parse(&"CN=a,".repeat(1000)).is_err());
    }
}
