//! pkid: a certificate-authority daemon.
//!
//! ```text
//! relying party ──OCSP/CRL──▶ http ─▶ status ─▶ revocation index (memory) ◀── store (durable)
//! document system ──RFC 3161─▶ http ─▶ tsa ───▶ signer (PKCS#11 | software)
//! PKI client ──EST/CMP──────▶ https ─▶ enroll ─▶ ca (issue) ─▶ store
//! operator ──CLI─────────────────────▶ ca ─▶ store ─▶ change sequence ─▶ running daemon
//! ```
//!
//! Protocol encoding and certificate logic live in the sans-I/O `pkid-protocols` crate; this
//! crate is the imperative shell: configuration, CLI, HTTP, the store, key backends and the CA.

pub mod app;
pub mod ca;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crl;
pub mod datadir;
pub mod http;
pub mod index;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod ocsp;
pub mod peer_faults;
pub mod ra;
pub mod store;
pub mod tsa;
