//! Sans-I/O PKI logic for pkid.
//!
//! ```text
//!  bytes ──parse──▶ typed request ──(daemon decides)──▶ to-be-signed bytes ──Signer──▶ signature
//!                                                                  │                      │
//!                                                                  └──── lint ────────────┴──▶ assemble ──▶ DER
//! ```
//!
//! Nothing in this crate opens a socket, a file or a database, reads the clock or draws random
//! numbers: the current time and random bytes are arguments, and keys are reached only through
//! the [`signer::Signer`] trait, which the daemon implements for software keys and PKCS#11 tokens.
#![forbid(unsafe_code)]

pub mod algorithm;
pub mod crl;
pub mod csr;
pub mod name;
pub mod ocsp;
pub mod profile;
pub mod revocation;
pub mod serial;
pub mod time;
pub mod tsp;
pub mod unsigned;
pub mod x509;

#[cfg(test)]
mod test_key;

pub use algorithm::{KeyType, SignatureAlgorithm};
pub use unsigned::Unsigned;
