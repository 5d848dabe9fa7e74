//! Sans-I/O PKI logic for pkid.
//!
//! ```text
//!  bytes ─parse─▶ typed request ─(daemon decides)─▶ build + lint ─▶ impl Unsigned
//!                                                                    │ message(), digest()
//!                                                                    ▼
//!                                                        daemon: its key signs them
//!                                                                    │ signature
//!                                                                    ▼
//!                                 DER ◀─encode─ verify ◀─ Unsigned::into_signed
//! ```
//!
//! Nothing in this crate opens a socket, a file or a database, reads the clock, draws random
//! numbers or holds a key: the current time and random bytes are arguments, and every signed
//! structure is built as an [`unsigned::Unsigned`] value ([`x509::ToBeSigned`],
//! [`crl::UnsignedCrl`], [`ocsp::UnsignedResponse`], [`tsp::UnsignedToken`]) whose bytes the
//! daemon signs with whatever key backend it has, synchronous or not, before handing the
//! signature back to be checked and encoded.
#![forbid(unsafe_code)]

pub mod algorithm;
pub mod cmp;
pub mod crl;
pub mod csr;
pub mod document;
pub mod est;
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
