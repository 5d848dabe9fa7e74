//! pkid: a certificate-authority daemon.
//!
//! ```text
//! relying party ──OCSP/CRL──▶ http ─▶ ocsp / crl ─▶ index (memory) ◀── store::follow ◀── store
//! document system ──RFC 3161─▶ http ─▶ tsa ─▶ keys::sign ─▶ Signer (PKCS#11 | software)
//! operator ──CLI──▶ cli ─▶ ra (decides) ─▶ ca (signs) ─▶ store (durable) ─▶ change feed
//! pkid serve ──▶ cli ─▶ app (composition root: clock, store, keys, services, routers)
//! ```
//!
//! Protocol encoding and certificate logic live in the sans-I/O `pkid-protocols` crate; this
//! crate is the imperative shell. `app` wires it (the only place a clock, a store or a key
//! backend is built for the daemon); `cli` parses arguments and maps errors to exit codes;
//! `http` serves the routers; `ocsp`, `crl` and `tsa` are the services; `ra` decides lifecycle
//! requests and `ca` signs them; `store`, `keys`, `index`, `clock`, `config`, `metrics` and
//! `logging` are the foundations. Dependencies point one way (`daemon/tests/module_graph.rs`
//! fails on a cycle); `docs/architecture.md` has the map.

pub mod app;
pub mod audit_stamps;
pub mod ca;
pub mod cli;
pub mod clock;
pub mod cmp;
pub mod config;
pub mod crl;
pub mod csc;
pub mod datadir;
pub mod est;
pub mod http;
pub mod index;
pub mod keygen;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod ocsp;
pub mod peer_faults;
pub mod portal;
pub mod ra;
pub mod store;
pub mod token;
pub mod tsa;
