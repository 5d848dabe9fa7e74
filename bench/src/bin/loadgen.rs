//! Drives one loopback target with the benchmark load generator, for ad-hoc measurements.
//!
//! `loadgen --addr 127.0.0.1:8080 --path /ocsp --post FILE --content-type application/ocsp-request
//!          [--connections 64] [--seconds 5] [--close]` (without `--post`, it sends GETs).

use pkid_bench::load::{self, LoadSpec, RequestTemplate};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let addr = get("--addr")
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()
        .unwrap_or_else(|e| panic!("--addr: {e}"));
    let path = get("--path").unwrap_or_else(|| "/".into());
    let template = match get("--post") {
        Some(file) => {
            let body = std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
            let ct: &'static str = Box::leak(
                get("--content-type")
                    .unwrap_or_else(|| "application/octet-stream".into())
                    .into_boxed_str(),
            );
            RequestTemplate::post(path, ct, body)
        }
        None => RequestTemplate::get(path),
    };
    let spec = LoadSpec {
        addr,
        connections: get("--connections")
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        duration: Duration::from_secs(get("--seconds").and_then(|v| v.parse().ok()).unwrap_or(5)),
        warmup: Duration::from_secs(1),
        keep_alive: !argv.iter().any(|a| a == "--close"),
        max_requests: 50_000_000,
        requests: Arc::new(vec![template]),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let r = rt.block_on(load::run(spec));
    pkid_bench::report::header();
    pkid_bench::report::row(&addr.to_string(), &r, None);
}
