//! Benchmark support for pkid: a closed-loop HTTP/1.1 load generator for loopback targets, a
//! launcher for the real daemon, ratio reports, and the DER mutations the fuzzers share.
//!
//! Every figure a benchmark prints is measured in the same invocation as its baseline and
//! reported as a ratio, so machine speed cancels out. Nothing here runs in CI as a pass/fail
//! timing check.

pub mod daemon;
pub mod load;
pub mod mutate;
pub mod populate;
pub mod report;
pub mod requests;
pub mod softhsm;
pub mod wrk;
