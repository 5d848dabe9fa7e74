//! Printing results as ratios against baselines measured in the same run.

use crate::load::LoadReport;

/// Prints the header of a results table.
pub fn header() {
    println!(
        "{:<44} {:>11} {:>9} {:>9} {:>7}  ratio",
        "scenario", "req/s", "p50 µs", "p99 µs", "errors"
    );
}

/// Prints one row; `baseline` names and measures what the ratio is taken against.
pub fn row(name: &str, r: &LoadReport, baseline: Option<(&str, &LoadReport)>) {
    let ratio = baseline
        .map(|(n, b)| format!("{:.2}x {n}", r.rps() / b.rps().max(1e-9)))
        .unwrap_or_default();
    println!(
        "{:<44} {:>11.0} {:>9} {:>9} {:>7}  {}",
        name,
        r.rps(),
        r.p50.as_micros(),
        r.p99.as_micros(),
        r.errors,
        ratio
    );
}

/// Prints a ratio of two plain rates (e.g. signatures per second).
pub fn ratio_line(name: &str, value: f64, unit: &str, baseline_name: &str, baseline: f64) {
    println!(
        "{:<44} {:>11.0} {unit:<8} {:.2}x {baseline_name}",
        name,
        value,
        value / baseline.max(1e-9)
    );
}
