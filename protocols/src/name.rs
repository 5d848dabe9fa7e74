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
    fn garbage_is_refused() {
        assert!(parse("not a name").is_err());
        assert!(parse("").is_err());
        assert!(parse(&"CN=a,".repeat(1000)).is_err());
    }
}
