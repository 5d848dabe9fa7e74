//! Load from `wrk` (Debian package `wrk`): an epoll load generator in C, light enough that on a
//! 2-core machine the server under test gets most of the CPU. A Lua script replays a list of
//! pre-formatted requests (binary bodies carried as hex), so the generator does no per-request
//! work beyond sending bytes.

use crate::load::{LoadReport, RequestTemplate};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const SCRIPT: &str = r#"
local reqs, n, i = {}, 0, 0
init = function(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    local m, p, ct, hex = line:match("^(%S+)\t(%S+)\t(%S*)\t(%x*)$")
    local headers, body = {}, nil
    if hex ~= "" then
      body = hex:gsub("%x%x", function(c) return string.char(tonumber(c, 16)) end)
      headers["Content-Type"] = ct
    end
    n = n + 1
    reqs[n] = wrk.format(m, p, headers, body)
  end
  f:close()
end
request = function()
  i = i % n + 1
  return reqs[i]
end
"#;

/// What to run with wrk.
pub struct WrkSpec<'a> {
    /// Target (loopback only).
    pub addr: SocketAddr,
    /// Open connections.
    pub connections: usize,
    /// wrk threads (1: leave the other core to the server).
    pub threads: usize,
    /// Measured duration.
    pub duration: Duration,
    /// Reuse connections (otherwise `Connection: close` on every request).
    pub keep_alive: bool,
    /// Requests, cycled.
    pub requests: &'a [RequestTemplate],
}

fn duration_of(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Whether wrk is installed.
pub fn available() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

/// Runs wrk and parses its report.
pub fn run(spec: &WrkSpec<'_>) -> LoadReport {
    assert!(
        spec.addr.ip().is_loopback(),
        "load is only ever sent to loopback addresses"
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let script = dir.path().join("replay.lua");
    let data = dir.path().join("requests.tsv");
    std::fs::write(&script, SCRIPT).unwrap_or_else(|e| panic!("{e}"));
    let mut lines = String::new();
    for r in spec.requests {
        let hex: String =
            r.body
                .iter()
                .fold(String::with_capacity(r.body.len() * 2), |mut acc, b| {
                    let _ = write!(acc, "{b:02x}");
                    acc
                });
        let _ = writeln!(
            lines,
            "{}\t{}\t{}\t{}",
            r.method,
            r.path,
            r.content_type.unwrap_or(""),
            hex
        );
    }
    std::fs::write(&data, lines).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        &spec.threads.to_string(),
        "-c",
        &spec.connections.to_string(),
    ])
    .args([
        "-d",
        &format!("{}s", spec.duration.as_secs().max(1)),
        "--latency",
        "--timeout",
        "5s",
        "-s",
    ])
    .arg(&script);
    if !spec.keep_alive {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(format!("http://{}/", spec.addr))
        .arg("--")
        .arg(&data);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("wrk: {e} (apt-get install wrk)"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&text, spec.duration)
}

/// Parses wrk's `--latency` report.
pub fn parse(text: &str, duration: Duration) -> LoadReport {
    let mut requests = 0u64;
    let mut elapsed = duration;
    let mut non_2xx = 0u64;
    let mut socket_errors = 0u64;
    let mut p50 = Duration::ZERO;
    let mut p99 = Duration::ZERO;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("50%") {
            p50 = duration_of(rest).unwrap_or_default();
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = duration_of(rest).unwrap_or_default();
        } else if line.contains(" requests in ") {
            let mut parts = line.split_whitespace();
            requests = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            elapsed = parts
                .nth(2)
                .map(|v| v.trim_end_matches(','))
                .and_then(duration_of)
                .unwrap_or(duration);
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = rest.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            socket_errors = rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    LoadReport {
        ok: requests.saturating_sub(non_2xx),
        errors: non_2xx + socket_errors,
        elapsed,
        p50,
        p99,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_wrk_report() {
        let text = "Running 2s test @ http://127.0.0.1:1/\n  1 threads and 64 connections\n  Latency Distribution\n     50%  512.00us\n     75%    1.00ms\n     90%    2.00ms\n     99%    3.50ms\n  120000 requests in 2.00s, 90.00MB read\n  Socket errors: connect 0, read 3, write 0, timeout 1\n  Non-2xx or 3xx responses: 10\nRequests/sec:  60000.00\n";
        let r = parse(text, Duration::from_secs(2));
        assert_eq!((r.ok, r.errors), (119_990, 14));
        assert_eq!(r.p50, Duration::from_micros(512));
        assert_eq!(r.p99, Duration::from_micros(3500));
        assert!((r.rps() - 59_995.0).abs() < 1.0);
    }
}
