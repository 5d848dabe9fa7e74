//! Sealing personal data and secrets at rest: AES-256-GCM under a key in the key backend.
//!
//! ```text
//!  RA (national id, phone), later CMP shared secrets, SO PINs
//!     │ seal(plaintext, context = b"request:42:phone")          open(sealed, same context)
//!     ▼                                                           ▲
//!  DataSealer ── software: <data>/keys/seal.key (32 bytes, 0600), aws-lc-rs
//!             └─ pkcs11:   CKK_AES secret key "pkid-seal" in the token, CKM_AES_GCM
//! ```
//!
//! Decree 13/2023 on personal data protection asks that personal data be protected at rest; a
//! copy of the database (a backup, a stolen disk) then shows no national id or phone number
//! without the key, and with the PKCS#11 backend the key never leaves the token.
//!
//! **Format** (version 1), one byte string stored as a BLOB:
//!
//! ```text
//!  0x01 ‖ nonce (12 bytes, random per seal) ‖ ciphertext (as long as the plaintext) ‖ tag (16)
//! ```
//!
//! The additional authenticated data is the version byte followed by the caller's `context`,
//! which binds a sealed value to the field and row it belongs to: a value copied to another row
//! or column does not open. A random 96-bit nonce per seal stays far below the 2^32 seals per
//! key that NIST SP 800-38D §8.3 allows for random nonces.
//!
//! This module holds the trait, the format and the errors; the backends implement it in
//! [`super::software::SoftwareSealer`] and [`super::pkcs11::Pkcs11Sealer`].
//!
//! Errors never carry the plaintext, the context or the key.

use super::KeyError;
use zeroize::Zeroizing;

/// The format version written by this code: AES-256-GCM, 96-bit nonce, 128-bit tag.
pub const VERSION: u8 = 1;
/// Length of the random nonce (GCM's native IV length).
pub const NONCE_LEN: usize = 12;
/// Length of the GCM authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of the AES-256 key.
pub const KEY_LEN: usize = 32;
/// Largest plaintext sealed: the fields sealed are national id numbers, phone numbers, TOTP
/// secrets, shared secrets and PINs, all well under a kilobyte; anything larger is a mistake.
pub const MAX_PLAINTEXT: usize = 64 * 1024;
/// The key's name: the software key file `<keys>/seal.key`, the PKCS#11 label `pkid-seal`.
/// No signing key role has this name (`KeyRole::name`), so neither can collide with it.
pub const SEAL_KEY_NAME: &str = "seal";

/// Why sealing or opening failed. No variant carries the plaintext, the context or the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Not a sealed value: shorter than a header and a tag, or an unknown version byte.
    #[error("not a sealed value: {0}")]
    Malformed(String),
    /// The tag did not verify: the value was changed, belongs to another row or field (another
    /// context), or was sealed under another key.
    #[error("the sealed value does not open with this key and context (tampered, moved or from another key)")]
    Unauthentic,
    /// The plaintext is larger than [`MAX_PLAINTEXT`].
    #[error("{0} bytes is more than a sealed field may hold ({MAX_PLAINTEXT})")]
    TooLarge(usize),
    /// The backend is temporarily unreachable (token removed, session lost): try later.
    #[error("sealing key unavailable: {0}")]
    Unavailable(String),
    /// Anything else on our side (no randomness, a token refusing the mechanism).
    #[error("sealing failed: {0}")]
    Failed(String),
}

impl From<KeyError> for SealError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Unavailable(m) => Self::Unavailable(m),
            KeyError::Config(m) | KeyError::Failed(m) => Self::Failed(m),
            e @ (KeyError::NotFound(_) | KeyError::Exists(_)) => Self::Failed(e.to_string()),
        }
    }
}

/// Encrypts and decrypts small values under the installation's sealing key.
pub trait DataSealer: Send + Sync {
    /// Seals `plaintext`, bound to `context` (e.g. `b"request:42:phone"`), in the format of
    /// the module documentation. Each call draws a fresh nonce.
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError>;
    /// Opens a value [`DataSealer::seal`] made with the same `context`; the plaintext is wiped
    /// from memory when dropped.
    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError>;
}

/// A sealed value split into its parts.
pub(super) struct Parts<'a> {
    /// The nonce.
    pub(super) nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    pub(super) ciphertext_and_tag: &'a [u8],
}

/// Checks the version and length of a sealed value and splits it.
pub(super) fn split(sealed: &[u8]) -> Result<Parts<'_>, SealError> {
    let Some((&version, rest)) = sealed.split_first() else {
        return Err(SealError::Malformed("empty".into()));
    };
    if version != VERSION {
        return Err(SealError::Malformed(format!(
            "version {version} (this pkid reads version {VERSION})"
        )));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Malformed(format!(
            "{} bytes is shorter than a header and a tag ({})",
            sealed.len(),
            1 + NONCE_LEN + TAG_LEN
        )));
    }
    let (nonce, ciphertext_and_tag) = rest.split_at(NONCE_LEN);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    Ok(Parts {
        nonce: n,
        ciphertext_and_tag,
    })
}

/// The additional authenticated data: the version byte, then the caller's context.
pub(super) fn aad(context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + context.len());
    aad.push(VERSION);
    aad.extend_from_slice(context);
    aad
}

/// A fresh random nonce, and the plaintext size check every backend makes first.
pub(super) fn prepare(plaintext: &[u8]) -> Result<[u8; NONCE_LEN], SealError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(SealError::TooLarge(plaintext.len()));
    }
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce)
        .map_err(|_| SealError::Failed("no randomness for the nonce".into()))?;
    Ok(nonce)
}

/// `VERSION ‖ nonce ‖ ciphertext ‖ tag`.
pub(super) fn assemble(nonce: &[u8; NONCE_LEN], ciphertext_and_tag: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext_and_tag.len());
    out.push(VERSION);
    out.extend_from_slice(nonce);
    out.extend_from_slice(ciphertext_and_tag);
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The behaviour every backend must show: a round trip (Vietnamese text exactly), a fresh
    /// nonce each time, and refusal of another context, any changed byte, a truncated value
    /// and another version.
    pub(in crate::keys) fn behaves_as_a_sealer(sealer: &dyn DataSealer) {
        let phone = "+84 912 345 678 — Nguyễn Thị Hồng Nhung".as_bytes();
        let context = b"request:42:phone";
        let sealed = sealer.seal(phone, context).expect("seal");
        assert_eq!(sealed.len(), 1 + NONCE_LEN + phone.len() + TAG_LEN);
        assert_eq!(sealed[0], VERSION);
        assert!(
            !sealed.windows(4).any(|w| phone.windows(4).any(|p| p == w)),
            "the plaintext shows through"
        );
        assert_eq!(
            sealer.open(&sealed, context).expect("open").as_slice(),
            phone
        );
        let again = sealer.seal(phone, context).expect("seal again");
        assert_ne!(
            again[1..1 + NONCE_LEN],
            sealed[1..1 + NONCE_LEN],
            "fresh nonce"
        );
        assert_ne!(again, sealed);

        assert_eq!(
            sealer.open(&sealed, b"request:43:phone"),
            Err(SealError::Unauthentic),
            "a value moved to another row does not open"
        );
        assert_eq!(sealer.open(&sealed, b""), Err(SealError::Unauthentic));
        for i in 1..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert_eq!(
                sealer.open(&tampered, context),
                Err(SealError::Unauthentic),
                "byte {i} changed"
            );
        }
        let mut other_version = sealed.clone();
        other_version[0] = 2;
        assert!(matches!(
            sealer.open(&other_version, context),
            Err(SealError::Malformed(m)) if m.contains("version 2")
        ));
        assert!(matches!(
            sealer.open(&sealed[..1 + NONCE_LEN + TAG_LEN - 1], context),
            Err(SealError::Malformed(_))
        ));
        assert!(matches!(
            sealer.open(&[], context),
            Err(SealError::Malformed(_))
        ));
        // The empty plaintext seals and opens (an erased field is NULL, not this, but it works).
        let empty = sealer.seal(b"", context).expect("seal empty");
        assert!(sealer.open(&empty, context).expect("open empty").is_empty());
        assert_eq!(
            sealer.seal(&vec![0u8; MAX_PLAINTEXT + 1], context),
            Err(SealError::TooLarge(MAX_PLAINTEXT + 1))
        );
        // No message shows the context or the plaintext.
        for e in [SealError::Unauthentic, SealError::TooLarge(1)] {
            let text = format!("{e} {e:?}");
            assert!(
                !text.contains("request:42") && !text.contains("912"),
                "{text}"
            );
        }
    }
}
