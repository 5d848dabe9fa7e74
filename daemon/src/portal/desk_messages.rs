//! The desk's field problems in the page's language. The desk answers in English for the JSON
//! API (`FieldError::message`); the portal shows each known problem from its catalogue entry,
//! and one it does not know as the field's generic "not valid", never as English text.

use super::i18n::{message, Lang};

/// How a desk message is recognised.
enum Match {
    /// The whole message.
    Exact(&'static str),
    /// Its beginning (messages that name a value: "no organisation \"x\"").
    Prefix(&'static str),
    /// A part of it (messages that begin with a value: "certificate 1f… has no …").
    Contains(&'static str),
}

use Match::{Contains, Exact, Prefix};

/// The desk's messages (`ra::desk`, `FieldError::new`) and their catalogue keys, most
/// specific first.
const MESSAGES: &[(Match, &str)] = &[
    (Exact("required"), "desk-required"),
    (Exact("required to issue"), "desk-required"),
    (Exact("required with key origin csr"), "desk-csr-required"),
    (Exact("required (serial, hex)"), "desk-serial"),
    (
        Exact("required, at most 512 characters"),
        "desk-reason-required",
    ),
    (Prefix("required to "), "desk-reason-required"),
    (Exact("not an email address"), "desk-email"),
    (Prefix("at most "), "desk-too-long"),
    (Prefix("1 to 64 lower-case letters"), "desk-slug"),
    (Exact("1 to 255 characters, no path"), "desk-filename"),
    (Prefix("1 to "), "desk-out-of-range"),
    (Exact("education, training, health or other"), "desk-sector"),
    (Prefix("unknown profile"), "desk-unknown-profile"),
    (
        Prefix("the organisation may not request"),
        "desk-profile-not-allowed",
    ),
    (Prefix("no organisation"), "desk-no-organisation"),
    (
        Exact("org-officer, ra-officer, auditor or ca-admin"),
        "desk-role",
    ),
    (Exact("all, province:CODE or org:ID"), "desk-scope"),
    (
        Exact("an org-officer needs one"),
        "desk-organisation-needed",
    ),
    (Prefix("not a DER certificate"), "desk-not-certificate"),
    (Exact("empty"), "desk-empty"),
    (Prefix("not base64"), "desk-not-base64"),
    (Prefix("over the "), "desk-too-large"),
    (Exact("too large"), "desk-too-large"),
    (Exact("a serial number, hex"), "desk-serial"),
    (Exact("not a serial number (hex)"), "desk-serial"),
    (Exact("no such certificate"), "desk-no-certificate"),
    (
        Exact("not a certificate of this organisation"),
        "desk-not-our-certificate",
    ),
    (Exact("the revocation code from the mail"), "desk-code"),
    (
        Exact("issue, renew, modify, revoke or recover"),
        "desk-kind",
    ),
    (Exact("csr, token or central"), "desk-key-origin"),
    (
        Exact("a key device is recovered: token"),
        "desk-recover-token",
    ),
    (Exact("digits, spaces and + - . ( ) only"), "desk-phone"),
    (
        Exact("9 to 12 digits (CMND or CCCD number)"),
        "desk-id-number",
    ),
    (Exact("only with key origin csr"), "desk-not-for-this"),
    (Exact("only for issue and modify"), "desk-not-for-this"),
    (Exact("only for revoke"), "desk-not-for-this"),
    (Exact("only with resubmit"), "desk-not-for-this"),
    (Exact("only for recover"), "desk-not-for-this"),
    (Exact("unlock or reenrol"), "desk-recovery"),
    (
        Prefix("a remote-signing account is recovered by"),
        "desk-recovery",
    ),
    (
        Prefix("only for a remote-signing account"),
        "desk-recovery-not-account",
    ),
    (
        Contains("has no escrowed key and no remote-signing account"),
        "desk-recovery-no-account",
    ),
    (
        Prefix("a key device (token), or a remote-signing account"),
        "desk-recover-token",
    ),
    (
        Exact("the new information is required to modify"),
        "desk-modify-needs-information",
    ),
    (Prefix("not an issuing CA"), "desk-issuer"),
    (Prefix("the profile does not allow"), "desk-key-type"),
    (Prefix("a revocation reason"), "desk-revocation-reason"),
    (Exact("a date, YYYY-MM-DD"), "desk-date"),
    (Exact("before from"), "desk-date-order"),
    (Exact("not a cursor from a previous page"), "desk-cursor"),
    (Prefix("accept, approve, return"), "desk-action"),
];

/// Problems recognised by the field they are on (their text comes from a parser or checker
/// whose words vary: the CSR's, the password policy's).
const FIELDS: &[(&str, &str)] = &[("csr", "desk-csr-invalid"), ("password", "desk-password")];

/// The catalogue key of a desk problem (`field-invalid` when it is not catalogued).
pub(super) fn key(field: &str, text: &str) -> &'static str {
    MESSAGES
        .iter()
        .find(|(m, _)| match m {
            Exact(s) => text == *s,
            Prefix(p) => text.starts_with(p),
            Contains(p) => text.contains(p),
        })
        .map(|(_, k)| *k)
        .or_else(|| FIELDS.iter().find(|(f, _)| field == *f).map(|(_, k)| *k))
        .unwrap_or("field-invalid")
}

/// A desk problem in the page's language.
pub(super) fn text(lang: Lang, field: &str, problem: &str) -> String {
    message(lang, key(field, problem), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desk_problems_read_in_the_pages_language_without_english() {
        assert_eq!(
            text(Lang::Vi, "subscriber.email", "not an email address"),
            "Địa chỉ thư điện tử không hợp lệ"
        );
        assert_eq!(
            text(Lang::En, "subscriber.email", "not an email address"),
            "Not an email address"
        );
        assert_eq!(
            key("parent", "no organisation \"so-gd\""),
            "desk-no-organisation"
        );
        assert_eq!(key("csr", "signature does not verify"), "desk-csr-invalid");
        assert_eq!(key("x", "something new"), "field-invalid");
        // Every key named here is in both catalogues (the i18n test keeps them equal).
        for k in MESSAGES
            .iter()
            .map(|(_, k)| *k)
            .chain(FIELDS.iter().map(|f| f.1))
        {
            assert_ne!(message(Lang::Vi, k, None), k, "{k} is not catalogued");
        }
    }
}
