//! The periodic report the service owes its supervisors: per organisation subtree and period,
//! requests by kind and outcome, turnaround in working hours, deadline breaches, and the
//! certificates the subtree holds.
//!
//! ```text
//! period      [from 00:00+07:00, to + 1 day 00:00+07:00)   (dates in Asia/Ho_Chi_Minh)
//! submitted   requests filed in the period
//! fulfilled   requests fulfilled in the period; their turnaround is the working time from
//!             acceptance to fulfilment (working hours of working days only)
//! breach      a deadline that fell in the period (and has passed) with the request fulfilled
//!             after it, or not at all
//! ```
//!
//! The rows are streamed from the store once; nothing is held per request but the turnaround
//! samples, so a year of a large subtree stays within a few megabytes.

use super::calendar::{local_rfc3339, Calendar, WorkingClock};
use crate::store::ra::{CertificateCounts, KeyOrigin, ReportRow, RequestKind, RequestState};
use serde::Serialize;
use std::collections::BTreeMap;

/// Counts of one kind of request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KindCounts {
    /// Filed in the period.
    pub submitted: u64,
    /// Fulfilled in the period.
    pub fulfilled: u64,
    /// Filed in the period and rejected.
    pub rejected: u64,
    /// Filed in the period and waiting for correction.
    pub returned: u64,
    /// Filed in the period and still open (submitted, awaiting the original, accepted,
    /// approved).
    pub open: u64,
}

/// Turnaround of the requests fulfilled in the period, in working hours.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Turnaround {
    /// How many fulfilled requests had an acceptance time.
    pub count: u64,
    /// Median, working hours.
    pub median_hours: Option<f64>,
    /// 95th percentile, working hours.
    pub p95_hours: Option<f64>,
}

/// Deadline breaches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Breaches {
    /// Deadlines in the period that were missed.
    pub total: u64,
    /// By organisation.
    pub by_organisation: BTreeMap<String, u64>,
}

/// Certificates issued through the subtree's requests, at the report's end.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CertificateSummary {
    /// Valid and not expired.
    pub valid: u64,
    /// Of those, expiring within 30 days of the end.
    pub expiring_30_days: u64,
    /// Revoked.
    pub revoked: u64,
}

/// Key devices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyDevices {
    /// Requests with key origin `token` fulfilled in the period (a device each).
    pub issued: u64,
}

/// A report.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// The subtree's root (absent: everything in the caller's reach).
    pub organisation: Option<String>,
    /// First day (YYYY-MM-DD, local).
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    /// When it was made (RFC 3339, +07:00).
    pub generated_at: String,
    /// Requests by kind.
    pub requests: BTreeMap<&'static str, KindCounts>,
    /// Turnaround.
    pub turnaround: Turnaround,
    /// Breaches.
    pub breaches: Breaches,
    /// Certificates.
    pub certificates: CertificateSummary,
    /// Key devices.
    pub key_devices: KeyDevices,
    /// Seconds of the period each paused issuer could not issue.
    pub paused_seconds: BTreeMap<String, u64>,
}

/// Accumulates a report from streamed rows.
pub(crate) struct Tally<'a> {
    clock: WorkingClock<'a>,
    from: u64,
    to: u64,
    now: u64,
    requests: BTreeMap<&'static str, KindCounts>,
    samples: Vec<u64>,
    breaches: Breaches,
    devices: u64,
}

/// How far before the period the working clock is tabulated: requests fulfilled in the period
/// were almost all accepted within this; older ones are counted day by day.
const CLOCK_LEAD: u64 = 120 * 86_400;

impl<'a> Tally<'a> {
    pub(crate) fn new(
        calendar: &'a Calendar,
        hours: (u8, u8),
        from: u64,
        to: u64,
        now: u64,
    ) -> Self {
        Self {
            clock: WorkingClock::new(calendar, from.saturating_sub(CLOCK_LEAD), to, hours),
            from,
            to,
            now,
            requests: RequestKind::ALL
                .iter()
                .map(|k| (k.as_str(), KindCounts::default()))
                .collect(),
            samples: Vec::new(),
            breaches: Breaches::default(),
            devices: 0,
        }
    }

    fn within(&self, t: Option<u64>) -> bool {
        t.is_some_and(|t| (self.from..self.to).contains(&t))
    }

    pub(crate) fn add(&mut self, r: &ReportRow<'_>) {
        let filed_in = self.within(Some(r.submitted_at));
        let fulfilled_in = self.within(r.fulfilled_at);
        let counts = self.requests.entry(r.kind.as_str()).or_default();
        if filed_in {
            counts.submitted += 1;
            match r.state {
                RequestState::Rejected => counts.rejected += 1,
                RequestState::Returned => counts.returned += 1,
                RequestState::Fulfilled => {}
                RequestState::Submitted
                | RequestState::AwaitingOriginal
                | RequestState::Accepted
                | RequestState::Approved => counts.open += 1,
            }
        }
        if fulfilled_in {
            counts.fulfilled += 1;
            if r.key_origin == KeyOrigin::Token {
                self.devices += 1;
            }
            if let (Some(a), Some(f)) = (r.accepted_at, r.fulfilled_at) {
                self.samples.push(self.clock.seconds_between(a, f));
            }
        }
        if let Some(due) = r.due_at.filter(|d| self.within(Some(*d)) && *d < self.now) {
            let missed = match r.fulfilled_at {
                Some(f) => f > due,
                None => !matches!(r.state, RequestState::Rejected | RequestState::Returned),
            };
            if missed {
                self.breaches.total += 1;
                match self.breaches.by_organisation.get_mut(r.organisation) {
                    Some(n) => *n += 1,
                    None => {
                        self.breaches
                            .by_organisation
                            .insert(r.organisation.to_owned(), 1);
                    }
                }
            }
        }
    }

    pub(crate) fn finish(
        mut self,
        organisation: Option<String>,
        from: String,
        to: String,
        certificates: CertificateCounts,
        pauses: &[crate::store::ra::IssuancePause],
    ) -> Report {
        let mut paused_seconds = BTreeMap::new();
        for p in pauses {
            let start = p.paused_at.max(self.from);
            let end = p.resumed_at.unwrap_or(self.now).min(self.to).min(self.now);
            if end > start {
                *paused_seconds.entry(p.issuer.clone()).or_insert(0) += end - start;
            }
        }
        self.samples.sort_unstable();
        let pick = |q: f64| -> Option<f64> {
            if self.samples.is_empty() {
                return None;
            }
            // Nearest rank: the smallest sample with at least q of the samples at or below it.
            let rank =
                ((q * self.samples.len() as f64).ceil() as usize).clamp(1, self.samples.len());
            Some((self.samples[rank - 1] as f64 / 3600.0 * 100.0).round() / 100.0)
        };
        Report {
            organisation,
            from,
            to,
            generated_at: local_rfc3339(self.now),
            requests: self.requests,
            turnaround: Turnaround {
                count: self.samples.len() as u64,
                median_hours: pick(0.5),
                p95_hours: pick(0.95),
            },
            breaches: self.breaches,
            certificates: CertificateSummary {
                valid: certificates.valid,
                expiring_30_days: certificates.expiring,
                revoked: certificates.revoked,
            },
            key_devices: KeyDevices {
                issued: self.devices,
            },
            paused_seconds,
        }
    }
}

impl Report {
    /// The report as CSV: one line per kind, then the totals of turnaround, breaches and
    /// certificates, then breaches per organisation.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("section,key,submitted,fulfilled,rejected,returned,open\n");
        for (kind, c) in &self.requests {
            out.push_str(&format!(
                "requests,{kind},{},{},{},{},{}\n",
                c.submitted, c.fulfilled, c.rejected, c.returned, c.open
            ));
        }
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        out.push_str("section,key,value\n");
        out.push_str(&format!("turnaround,count,{}\n", self.turnaround.count));
        out.push_str(&format!(
            "turnaround,median_hours,{}\n",
            opt(self.turnaround.median_hours)
        ));
        out.push_str(&format!(
            "turnaround,p95_hours,{}\n",
            opt(self.turnaround.p95_hours)
        ));
        out.push_str(&format!("breaches,total,{}\n", self.breaches.total));
        for (org, n) in &self.breaches.by_organisation {
            out.push_str(&format!("breaches,{},{n}\n", csv_field(org)));
        }
        out.push_str(&format!("certificates,valid,{}\n", self.certificates.valid));
        out.push_str(&format!(
            "certificates,expiring_30_days,{}\n",
            self.certificates.expiring_30_days
        ));
        out.push_str(&format!(
            "certificates,revoked,{}\n",
            self.certificates.revoked
        ));
        out.push_str(&format!("key_devices,issued,{}\n", self.key_devices.issued));
        for (issuer, secs) in &self.paused_seconds {
            out.push_str(&format!("paused_seconds,{},{secs}\n", csv_field(issuer)));
        }
        out
    }
}

/// RFC 4180 quoting where needed.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: RequestKind, state: RequestState, submitted: u64) -> ReportRow<'static> {
        ReportRow {
            kind,
            state,
            organisation: "a",
            key_origin: KeyOrigin::Csr,
            submitted_at: submitted,
            accepted_at: None,
            due_at: None,
            fulfilled_at: None,
            closed_at: None,
        }
    }

    #[test]
    fn counts_outcomes_breaches_and_percentiles() {
        let cal = Calendar::shipped();
        let (from, to, now) = (1_000, 1_000_000, 2_000_000);
        let mut t = Tally::new(&cal, (8, 17), from, to, now);
        t.add(&row(RequestKind::Issue, RequestState::Rejected, 2_000));
        t.add(&row(
            RequestKind::Issue,
            RequestState::AwaitingOriginal,
            3_000,
        ));
        // Fulfilled late: a breach.
        t.add(&ReportRow {
            accepted_at: Some(4_000),
            due_at: Some(10_000),
            fulfilled_at: Some(20_000),
            state: RequestState::Fulfilled,
            ..row(RequestKind::Revoke, RequestState::Fulfilled, 4_000)
        });
        // Outside the period entirely: not counted.
        t.add(&row(RequestKind::Issue, RequestState::Fulfilled, 5_000_000));
        let r = t.finish(
            None,
            "a".into(),
            "b".into(),
            CertificateCounts::default(),
            &[],
        );
        assert_eq!(r.requests["issue"].submitted, 2);
        assert_eq!(r.requests["issue"].rejected, 1);
        assert_eq!(r.requests["issue"].open, 1);
        assert_eq!(r.requests["revoke"].fulfilled, 1);
        assert_eq!(r.breaches.total, 1);
        assert_eq!(r.breaches.by_organisation["a"], 1);
        assert_eq!(r.turnaround.count, 1);
        assert!(r.to_csv().contains("requests,issue,2,0,1,0,1\n"));
    }
}
