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
//! week        Monday 00:00+07:00 to the next Monday; the first week holds `from`. A week
//!             counts the requests filed in it (within the period), by kind, and the requests
//!             fulfilled in it that had a deadline: on time (at or before it) or late
//! deadline    of a request fulfilled in the period with a deadline, the working time from
//!   use       acceptance to fulfilment as a share of the working time from acceptance to
//!             the deadline: up to 25 %, 50 %, 75 %, 100 %, or over (late)
//! expiring    certificates of the subtree valid at the report's end (or now, if earlier),
//!             by the local month their notAfter falls in, for that month and the next 11
//! ```
//!
//! The rows are streamed from the store once; nothing is held per request but the turnaround
//! samples, so a year of a large subtree stays within a few megabytes. The months of expiring
//! certificates are one grouped query of the store.

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

/// One week of the period (Monday 00:00+07:00 to the next Monday).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Week {
    /// Its Monday, YYYY-MM-DD (local; the first week's Monday may be before `from`).
    pub starts: String,
    /// Requests filed in the week (and in the period), by kind; every kind is present.
    pub submitted: BTreeMap<&'static str, u64>,
    /// Requests fulfilled in the week (and in the period) at or before their deadline.
    pub on_time: u64,
    /// Requests fulfilled in the week (and in the period) after their deadline.
    pub late: u64,
}

/// How much of the working time allowed (acceptance to deadline) the requests fulfilled in
/// the period used (acceptance to fulfilment), in quarters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeadlineUse {
    /// At most a quarter of the allowed time.
    pub up_to_25_percent: u64,
    /// Over a quarter, at most half.
    pub up_to_50_percent: u64,
    /// Over half, at most three quarters.
    pub up_to_75_percent: u64,
    /// Over three quarters, by the deadline.
    pub up_to_100_percent: u64,
    /// After the deadline.
    pub over_100_percent: u64,
}

impl DeadlineUse {
    /// The buckets as (code, count), in order.
    pub fn buckets(&self) -> [(&'static str, u64); 5] {
        [
            ("up_to_25_percent", self.up_to_25_percent),
            ("up_to_50_percent", self.up_to_50_percent),
            ("up_to_75_percent", self.up_to_75_percent),
            ("up_to_100_percent", self.up_to_100_percent),
            ("over_100_percent", self.over_100_percent),
        ]
    }

    fn add(&mut self, used: u64, allowed: u64, late: bool) {
        // Compared in integers: used/allowed <= q/4 is 4·used <= q·allowed.
        let b = if late {
            &mut self.over_100_percent
        } else if 4 * u128::from(used) <= u128::from(allowed) {
            &mut self.up_to_25_percent
        } else if 2 * u128::from(used) <= u128::from(allowed) {
            &mut self.up_to_50_percent
        } else if 4 * u128::from(used) <= 3 * u128::from(allowed) {
            &mut self.up_to_75_percent
        } else {
            &mut self.up_to_100_percent
        };
        *b += 1;
    }
}

/// Certificates expiring in one month.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MonthCount {
    /// The month, YYYY-MM (local).
    pub month: String,
    /// How many of the subtree's certificates valid at the report's end expire in it.
    pub certificates: u64,
}

/// How many months of expiring certificates a report gives (this one and the next 11).
pub const EXPIRY_MONTHS: u32 = 12;

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
    /// Week by week, the first holding `from`, the last holding `to` (none for a period of
    /// more than [`MAX_WEEKS`] weeks).
    pub weeks: Vec<Week>,
    /// How much of the allowed time the requests fulfilled in the period used.
    pub deadline_use: DeadlineUse,
    /// Certificates valid at the report's end (or now) expiring in each of [`EXPIRY_MONTHS`]
    /// months, the first being the month of that instant.
    pub expiring_by_month: Vec<MonthCount>,
}

/// Seconds in a week.
const WEEK: u64 = 7 * 86_400;
/// The longest period given week by week (ten years): a longer one's report has no `weeks`,
/// so that a period typed as centuries costs neither memory nor a page of 100,000 rows.
pub const MAX_WEEKS: u64 = 522;

/// Counts of one week, while streaming.
#[derive(Clone, Copy, Default)]
struct WeekTally {
    submitted: [u64; RequestKind::ALL.len()],
    on_time: u64,
    late: u64,
}

/// The Unix instant of the local (Asia/Ho_Chi_Minh) midnight starting the Monday of the week
/// holding `t`.
fn monday_of(t: u64) -> u64 {
    let local = time::OffsetDateTime::from_unix_timestamp(t.min(i64::MAX as u64) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(super::calendar::HO_CHI_MINH);
    let back = u64::from(local.weekday().number_days_from_monday()) * 86_400
        + u64::from(local.hour()) * 3600
        + u64::from(local.minute()) * 60
        + u64::from(local.second());
    t.saturating_sub(back)
}

/// A Unix instant's local date, YYYY-MM-DD.
fn local_day(t: u64) -> String {
    local_rfc3339(t).get(..10).unwrap_or_default().to_owned()
}

/// The [`EXPIRY_MONTHS`] local months starting with the month holding `at`, as `YYYY-MM`,
/// and the Unix instant where the last one ends.
pub fn expiry_months(at: u64) -> (Vec<String>, u64) {
    let local = time::OffsetDateTime::from_unix_timestamp(at.min(i64::MAX as u64) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(super::calendar::HO_CHI_MINH);
    let (mut year, mut month) = (local.year(), u8::from(local.month()));
    let mut months = Vec::with_capacity(EXPIRY_MONTHS as usize);
    for _ in 0..EXPIRY_MONTHS {
        months.push(format!("{year:04}-{month:02}"));
        (year, month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
    }
    let end = time::Month::try_from(month)
        .ok()
        .and_then(|m| time::Date::from_calendar_date(year, m, 1).ok())
        .map(|d| {
            d.midnight()
                .assume_offset(super::calendar::HO_CHI_MINH)
                .unix_timestamp()
                .max(0) as u64
        })
        .unwrap_or(u64::MAX);
    (months, end)
}

/// Every month of `months` with its count from `counted` (`YYYY-MM`, count) or zero.
pub fn fill_months(months: Vec<String>, counted: &[(String, u64)]) -> Vec<MonthCount> {
    months
        .into_iter()
        .map(|m| MonthCount {
            certificates: counted.iter().find(|(c, _)| *c == m).map_or(0, |(_, n)| *n),
            month: m,
        })
        .collect()
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
    /// The Monday the first week starts on.
    first_monday: u64,
    weeks: Vec<WeekTally>,
    deadline_use: DeadlineUse,
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
            first_monday: monday_of(from),
            weeks: match (to.saturating_sub(monday_of(from))).div_ceil(WEEK) {
                n if n <= MAX_WEEKS => vec![WeekTally::default(); n as usize],
                _ => Vec::new(),
            },
            deadline_use: DeadlineUse::default(),
        }
    }

    /// The week of an instant inside the period.
    fn week(&mut self, t: u64) -> Option<&mut WeekTally> {
        let i = t.checked_sub(self.first_monday)? / WEEK;
        self.weeks.get_mut(usize::try_from(i).ok()?)
    }

    fn within(&self, t: Option<u64>) -> bool {
        t.is_some_and(|t| (self.from..self.to).contains(&t))
    }

    pub(crate) fn add(&mut self, r: &ReportRow<'_>) {
        let filed_in = self.within(Some(r.submitted_at));
        let fulfilled_in = self.within(r.fulfilled_at);
        if filed_in {
            if let Some(w) = self.week(r.submitted_at) {
                w.submitted[r.kind as usize] += 1;
            }
            let counts = self.requests.entry(r.kind.as_str()).or_default();
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
            self.requests.entry(r.kind.as_str()).or_default().fulfilled += 1;
            if r.key_origin == KeyOrigin::Token {
                self.devices += 1;
            }
            if let (Some(a), Some(f)) = (r.accepted_at, r.fulfilled_at) {
                let used = self.clock.seconds_between(a, f);
                self.samples.push(used);
                if let Some(due) = r.due_at {
                    let allowed = self.clock.seconds_between(a, due);
                    self.deadline_use.add(used, allowed, f > due);
                }
            }
            if let (Some(f), Some(due)) = (r.fulfilled_at, r.due_at) {
                if let Some(w) = self.week(f) {
                    if f > due {
                        w.late += 1;
                    } else {
                        w.on_time += 1;
                    }
                }
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
        expiring_by_month: Vec<MonthCount>,
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
            weeks: self
                .weeks
                .iter()
                .enumerate()
                .map(|(i, w)| Week {
                    starts: local_day(self.first_monday + i as u64 * WEEK),
                    submitted: RequestKind::ALL
                        .iter()
                        .map(|k| (k.as_str(), w.submitted[*k as usize]))
                        .collect(),
                    on_time: w.on_time,
                    late: w.late,
                })
                .collect(),
            deadline_use: self.deadline_use,
            expiring_by_month,
        }
    }
}

impl Report {
    /// The report as CSV: one line per kind, then the totals of turnaround, breaches (and
    /// per organisation), certificates, key devices, pauses, the deadline use, the months of
    /// expiring certificates, then one line per week (filed by kind, on time, late).
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
        for (bucket, n) in self.deadline_use.buckets() {
            out.push_str(&format!("deadline_use,{bucket},{n}\n"));
        }
        for m in &self.expiring_by_month {
            out.push_str(&format!("expiring,{},{}\n", m.month, m.certificates));
        }
        out.push_str("section,week_starting");
        for k in RequestKind::ALL {
            out.push_str(&format!(",{}", k.as_str()));
        }
        out.push_str(",on_time,late\n");
        for w in &self.weeks {
            out.push_str(&format!("weeks,{}", w.starts));
            for k in RequestKind::ALL {
                let n = w.submitted.get(k.as_str()).copied().unwrap_or(0);
                out.push_str(&format!(",{n}"));
            }
            out.push_str(&format!(",{},{}\n", w.on_time, w.late));
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
            Vec::new(),
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

    /// Unix seconds of a local (+07:00) date and time.
    fn local(y: i32, m: u8, d: u8, h: u8) -> u64 {
        time::Date::from_calendar_date(y, time::Month::try_from(m).expect("month"), d)
            .expect("date")
            .with_hms(h, 0, 0)
            .expect("time")
            .assume_offset(crate::ra::calendar::HO_CHI_MINH)
            .unix_timestamp() as u64
    }

    #[test]
    fn weeks_start_on_local_mondays_and_count_filings_by_kind_and_deadlines_met() {
        let cal = Calendar::shipped();
        // Wednesday 2 December 2026 to Sunday 13 December: the weeks of Monday 30 November
        // and Monday 7 December.
        let (from, to) = (local(2026, 12, 2, 0), local(2026, 12, 14, 0));
        let mut t = Tally::new(&cal, (8, 17), from, to, local(2027, 1, 1, 0));
        // Monday 7 December 06:30 local is Sunday 23:30 UTC: the second week.
        t.add(&row(
            RequestKind::Renew,
            RequestState::Submitted,
            local(2026, 12, 6, 23) + 7 * 3600 + 1800,
        ));
        t.add(&row(
            RequestKind::Issue,
            RequestState::Submitted,
            local(2026, 12, 2, 9),
        ));
        t.add(&row(
            RequestKind::Issue,
            RequestState::Submitted,
            local(2026, 12, 6, 23),
        ));
        // Filed before the period: not in a week, but fulfilled in it, on time and late.
        let accepted = local(2026, 11, 30, 8);
        let due = local(2026, 12, 3, 17); // Thursday: 4 working days of 9 hours allowed
        let fulfilled = |at: u64| ReportRow {
            accepted_at: Some(accepted),
            due_at: Some(due),
            fulfilled_at: Some(at),
            ..row(RequestKind::Issue, RequestState::Fulfilled, accepted)
        };
        t.add(&fulfilled(local(2026, 12, 2, 10))); // 2 days 2 h of 4 days: 55 %
        t.add(&fulfilled(local(2026, 12, 3, 17))); // at the deadline: 100 %, on time
        t.add(&fulfilled(local(2026, 12, 8, 9))); // late, in the second week
        let (months, end) = expiry_months(local(2026, 12, 14, 0));
        assert_eq!(months.len(), 12);
        assert_eq!(
            (months[0].as_str(), months[11].as_str()),
            ("2026-12", "2027-11")
        );
        assert_eq!(end, local(2027, 12, 1, 0));
        let r = t.finish(
            None,
            "2026-12-02".into(),
            "2026-12-13".into(),
            CertificateCounts::default(),
            &[],
            fill_months(months, &[("2027-01".into(), 3)]),
        );
        let starts: Vec<&str> = r.weeks.iter().map(|w| w.starts.as_str()).collect();
        assert_eq!(starts, ["2026-11-30", "2026-12-07"]);
        assert_eq!(r.weeks[0].submitted["issue"], 2);
        assert_eq!(r.weeks[0].submitted["renew"], 0);
        assert_eq!(r.weeks[1].submitted["renew"], 1);
        assert_eq!((r.weeks[0].on_time, r.weeks[0].late), (2, 0));
        assert_eq!((r.weeks[1].on_time, r.weeks[1].late), (0, 1));
        assert_eq!(
            r.deadline_use.buckets().map(|(_, n)| n),
            [0, 0, 1, 1, 1],
            "{:?}",
            r.deadline_use
        );
        assert_eq!(r.expiring_by_month[1].month, "2027-01");
        assert_eq!(r.expiring_by_month[1].certificates, 3);
        assert_eq!(r.expiring_by_month[0].certificates, 0);
        let csv = r.to_csv();
        assert!(
            csv.contains("section,week_starting,issue,renew,modify,revoke,recover,on_time,late\n"),
            "{csv}"
        );
        assert!(csv.contains("weeks,2026-11-30,2,0,0,0,0,2,0\n"), "{csv}");
        assert!(csv.contains("weeks,2026-12-07,0,1,0,0,0,0,1\n"), "{csv}");
        assert!(csv.contains("deadline_use,up_to_75_percent,1\n"), "{csv}");
        assert!(csv.contains("expiring,2027-01,3\n"), "{csv}");
        // Centuries are not given week by week.
        let long = Tally::new(&cal, (8, 17), 0, 400 * 365 * 86_400, 1);
        assert!(long.weeks.is_empty());
    }
}
