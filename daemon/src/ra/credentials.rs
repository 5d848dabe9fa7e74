//! Operators' secrets: bearer tokens (random, stored as SHA-256), portal passwords (Argon2id)
//! and TOTP second factors (RFC 6238, the secret sealed under the data key); and the
//! generated secrets of organisations' enrollment credentials (EST passwords, CMP shared
//! secrets: `RequestDesk::add_enrollment_credential`).
//!
//! A token is 32 bytes from the system's CSPRNG, shown once as `pkid_` + base64url. Only its
//! SHA-256 is stored: a token has 256 bits of entropy, so a fast hash is enough (a password,
//! with far less, gets Argon2id). Lookups compare hashes in the database's index, so no
//! timing of a string comparison reveals a prefix.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use aws_lc_rs::digest;
use base64::Engine;
use zeroize::Zeroizing;

/// The prefix of every bearer token, so a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "pkid_";
/// Shortest portal password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password hashed: Argon2 over megabytes is a denial of service.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// TOTP step, seconds (RFC 6238 default; every authenticator app uses it).
const TOTP_STEP: u64 = 30;
/// TOTP digits.
const TOTP_DIGITS: usize = 6;
/// Steps of clock skew accepted either side.
const TOTP_SKEW: u8 = 1;

/// Secret-handling failures. None carries the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The system's random generator failed.
    #[error("random generator unavailable")]
    Random,
    /// The password is too short or too long.
    #[error("the password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes")]
    PasswordLength,
    /// Hashing failed (parameters).
    #[error("password hashing failed")]
    Hash,
    /// The stored TOTP secret is unusable.
    #[error("the TOTP secret is unusable")]
    Totp,
}

/// A new bearer token: what is shown once, and what is stored.
pub struct NewToken {
    /// `pkid_…`: shown to the operator once, never stored.
    pub secret: Zeroizing<String>,
    /// SHA-256 of the secret: stored.
    pub hash: Vec<u8>,
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, CredentialError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| CredentialError::Random)?;
    Ok(bytes)
}

/// Makes a bearer token.
pub fn new_token() -> Result<NewToken, CredentialError> {
    let bytes = random::<32>()?;
    let secret = Zeroizing::new(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
    ));
    let hash = token_hash(&secret);
    Ok(NewToken { secret, hash })
}

/// Longest name of an enrollment credential (an EST user name, a CMP senderKID).
pub const MAX_ENROLLMENT_NAME: usize = 64;

/// Whether `name` may name an enrollment credential: an HTTP Basic user-id (no ':', RFC 7617)
/// and a CMP senderKID, kept to 1 to [`MAX_ENROLLMENT_NAME`] letters, digits, '.', '_', '-'.
pub fn valid_enrollment_name(name: &str) -> bool {
    (1..=MAX_ENROLLMENT_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A generated enrollment secret: 24 random bytes as base64url (32 characters, 192 bits),
/// shown once.
pub fn new_enrollment_secret() -> Result<Zeroizing<String>, CredentialError> {
    let bytes = random::<24>()?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
    ))
}

/// A subscriber's one-time revocation code, as made: shown once, stored as `sha256`.
pub struct NewRevocationCode {
    /// `XXXX-XXXX-XXXX-XXXX-XXXX-XXXX`: 120 random bits in Crockford's base32 (no I, L, O or
    /// U, so it survives being read aloud or copied by hand).
    pub code: Zeroizing<String>,
    /// What the store keeps: [`revocation_code_hash`] of the code.
    pub sha256: Vec<u8>,
}

/// Makes a revocation code.
pub fn new_revocation_code() -> Result<NewRevocationCode, CredentialError> {
    let bytes = random::<15>()?;
    let plain = Zeroizing::new(base32::encode(base32::Alphabet::Crockford, bytes.as_ref()));
    let grouped: Vec<&str> = plain
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    let code = Zeroizing::new(grouped.join("-"));
    let sha256 = revocation_code_hash(&code);
    Ok(NewRevocationCode { code, sha256 })
}

/// The stored form of a presented revocation code: case, spaces and dashes do not matter, and
/// the letters people mistake for digits (O, I, L) read as those digits, as Crockford's base32
/// defines.
pub fn revocation_code_hash(presented: &str) -> Vec<u8> {
    let normal: Zeroizing<String> = Zeroizing::new(
        presented
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            })
            .collect(),
    );
    token_hash(&normal)
}

/// The stored form of a presented token.
pub fn token_hash(token: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// Hashes a portal password with Argon2id (the crate's defaults: 19 MiB, 2 passes, as OWASP
/// recommends) into a PHC string.
pub fn hash_password(password: &str) -> Result<String, CredentialError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(CredentialError::PasswordLength);
    }
    let salt = random::<16>()?;
    let salt = SaltString::encode_b64(salt.as_ref()).map_err(|_| CredentialError::Hash)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| CredentialError::Hash)
}

/// Whether `password` matches the stored PHC string (constant-time inside argon2).
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A new TOTP secret (160 bits, as RFC 4226 recommends).
pub fn new_totp_secret() -> Result<Zeroizing<Vec<u8>>, CredentialError> {
    Ok(Zeroizing::new(random::<20>()?.to_vec()))
}

fn totp(secret: &[u8], account: &str) -> Result<totp_rs::TOTP, CredentialError> {
    totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        TOTP_DIGITS,
        TOTP_SKEW,
        TOTP_STEP,
        secret.to_vec(),
        Some("pkid".into()),
        account.into(),
    )
    .map_err(|_| CredentialError::Totp)
}

/// The `otpauth://totp/…` URI an authenticator app scans.
pub fn totp_uri(secret: &[u8], account: &str) -> Result<Zeroizing<String>, CredentialError> {
    Ok(Zeroizing::new(totp(secret, account)?.get_url()))
}

/// Whether `code` is the TOTP code at `now` (± one step).
pub fn verify_totp(secret: &[u8], account: &str, code: &str, now: u64) -> bool {
    totp_step(secret, account, code, now).is_some()
}

/// The time step (Unix seconds ÷ 30) whose code `code` is, within the allowed skew of `now`;
/// `None` when it is none of them. Compared in constant time. A verifier spends the step, so
/// that the same code is never accepted twice (RFC 6238 §5.2).
pub fn totp_step(secret: &[u8], account: &str, code: &str, now: u64) -> Option<u64> {
    let t = totp(secret, account).ok()?;
    let code = code.trim();
    let here = now / TOTP_STEP;
    let skew = u64::from(TOTP_SKEW);
    (here.saturating_sub(skew)..=here.saturating_add(skew)).find(|step| {
        let expected = t.generate(step.saturating_mul(TOTP_STEP));
        expected.len() == code.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                expected.as_bytes(),
                code.as_bytes(),
            )
            .is_ok()
    })
}

/// The current code (tests and the portal's enrolment check).
pub fn totp_code(secret: &[u8], account: &str, now: u64) -> Result<String, CredentialError> {
    Ok(totp(secret, account)?.generate(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_code_is_grouped_random_and_matches_however_it_is_typed() {
        let a = new_revocation_code().expect("code");
        let b = new_revocation_code().expect("code");
        assert_ne!(*a.code, *b.code);
        assert_eq!(a.code.len(), 29, "{}", *a.code);
        assert!(a.code.split('-').all(|g| g.len() == 4));
        assert!(!a.code.contains(['I', 'L', 'O', 'U']));
        let typed = a
            .code
            .to_lowercase()
            .replace('-', " ")
            .replace('1', "l")
            .replace('0', "o");
        assert_eq!(revocation_code_hash(&typed), a.sha256);
        assert_ne!(revocation_code_hash(&b.code), a.sha256);
    }

    #[test]
    fn enrollment_secrets_are_random_and_names_are_basic_user_ids() {
        let a = new_enrollment_secret().expect("secret");
        let b = new_enrollment_secret().expect("secret");
        assert_eq!(a.len(), 32);
        assert_ne!(*a, *b);
        assert!(hash_password(&a).is_ok(), "long enough to hash");
        assert!(valid_enrollment_name("may-in_01.a"));
        for bad in ["", "a:b", "tên", "a b", &"x".repeat(65)] {
            assert!(!valid_enrollment_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_unique_prefixed_and_only_their_hash_matches() {
        let a = new_token().expect("token");
        let b = new_token().expect("token");
        assert!(a.secret.starts_with(TOKEN_PREFIX));
        assert_ne!(*a.secret, *b.secret);
        assert_eq!(token_hash(&a.secret), a.hash);
        assert_ne!(token_hash(&b.secret), a.hash);
    }

    #[test]
    fn passwords_verify_only_themselves_and_short_ones_are_refused() {
        let phc = hash_password("mật khẩu dài đủ 12").expect("hash");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("mật khẩu dài đủ 12", &phc));
        assert!(!verify_password("mật khẩu dài đủ 13", &phc));
        assert!(matches!(
            hash_password("short"),
            Err(CredentialError::PasswordLength)
        ));
    }

    #[test]
    fn totp_codes_follow_rfc_6238_and_the_step() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", T = 59 → 94287082 (8
        // digits); the 6-digit code is its last six digits.
        let secret = b"12345678901234567890";
        assert_eq!(totp_code(secret, "a", 59).expect("code"), "287082");
        assert!(verify_totp(secret, "a", "287082", 59));
        assert!(
            verify_totp(secret, "a", "287082", 59 + 30),
            "one step of skew"
        );
        assert!(!verify_totp(secret, "a", "287082", 59 + 90));
        assert_eq!(totp_step(secret, "a", " 287082 ", 59 + 30), Some(1));
        assert_eq!(totp_step(secret, "a", "287083", 59), None);
        let uri = totp_uri(secret, "cán-bộ").expect("uri");
        assert!(uri.starts_with("otpauth://totp/pkid:"), "{}", *uri);
    }
}
