//! Revocation reasons (RFC 5280 §5.3.1), by the names operators type.

pub use x509_cert::ext::pkix::CrlReason;

/// Every reason an operator may give, with its CLI/config name.
pub const REASONS: [(CrlReason, &str); 9] = [
    (CrlReason::Unspecified, "unspecified"),
    (CrlReason::KeyCompromise, "keyCompromise"),
    (CrlReason::CaCompromise, "cACompromise"),
    (CrlReason::AffiliationChanged, "affiliationChanged"),
    (CrlReason::Superseded, "superseded"),
    (CrlReason::CessationOfOperation, "cessationOfOperation"),
    (CrlReason::CertificateHold, "certificateHold"),
    (CrlReason::PrivilegeWithdrawn, "privilegeWithdrawn"),
    (CrlReason::AaCompromise, "aACompromise"),
];

/// Parses a reason name (case-insensitive) or its numeric code. `removeFromCRL` (8) is not a
/// reason to revoke with and is refused, as is the unassigned code 7.
pub fn parse(input: &str) -> Option<CrlReason> {
    if let Ok(code) = input.parse::<u8>() {
        return from_code(code);
    }
    REASONS
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(input))
        .map(|(r, _)| *r)
}

/// The reason's name.
pub fn name(reason: CrlReason) -> &'static str {
    REASONS
        .iter()
        .find(|(r, _)| *r == reason)
        .map(|(_, n)| *n)
        .unwrap_or("removeFromCRL")
}

/// The reason's ENUMERATED value.
pub fn code(reason: CrlReason) -> u8 {
    reason as u8
}

/// The reason for an ENUMERATED value, for revocation (not removeFromCRL).
pub fn from_code(code: u8) -> Option<CrlReason> {
    REASONS
        .iter()
        .find(|(r, _)| *r as u8 == code)
        .map(|(r, _)| *r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for (r, n) in REASONS {
            assert_eq!(parse(n), Some(r));
            assert_eq!(from_code(code(r)), Some(r));
        }
        assert_eq!(parse("KEYCOMPROMISE"), Some(CrlReason::KeyCompromise));
        assert_eq!(parse("1"), Some(CrlReason::KeyCompromise));
        assert_eq!(parse("7"), None);
        assert_eq!(parse("8"), None);
        assert_eq!(parse("removeFromCRL"), None);
    }
}
