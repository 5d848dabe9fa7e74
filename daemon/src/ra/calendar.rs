//! The working-day calendar and service deadlines, in `Asia/Ho_Chi_Minh`.
//!
//! ```text
//!  calendar-vn.toml ─parse─▶ Calendar ─┬─ is_working_day(date)
//!  (per year: days off,                ├─ due_working_days(accepted_at, n)   issue, renew, modify
//!   make-up working days)              ├─ due_hours(accepted_at, h)          revoke (24/7)
//!                                      └─ working_seconds_between(a, b, …)   turnaround reports
//! ```
//!
//! Pure: no clock, no I/O except [`Calendar::load`]; every instant is an argument.
//!
//! **Time zone.** Việt Nam has kept UTC+07:00 all year since 1975 and has no daylight saving
//! time, so a fixed offset ([`HO_CHI_MINH`]) is exactly `Asia/Ho_Chi_Minh` for every date a
//! request can carry; no time-zone database is needed.
//!
//! **Counting** (Civil Code 2015 art. 147–148): the day of acceptance is not counted; the period
//! runs from the next day and ends at 24:00 of the n-th working day, written as the following
//! day's `00:00:00+07:00`. When the last day of a period would be a day off, art. 148(5) moves
//! the end to the next working day; counting only working days already gives that.
//!
//! **Years the file does not cover.** The service runs 24/7 and must not stop accepting requests
//! on 1 January of a year nobody filled in. For such a year the calendar counts weekends and the
//! fixed solar-date holidays of Labour Code 2019 art. 112(1) — 1 January, 30 April, 1 May,
//! 2 September — each moved to the next working day when it falls on a weekend (art. 112(3)).
//! Tết and the Hùng Kings' day follow the lunar calendar and are not guessed, so in an
//! uncovered year a deadline may come a few days *earlier* than the Government's calendar would
//! put it: the service errs towards the subscriber. [`Calendar::covers`] lets the daemon warn
//! and raise a metric so that an operator adds the year.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};

/// `Asia/Ho_Chi_Minh`: UTC+07:00 all year, no daylight saving time since 1975.
pub const HO_CHI_MINH: UtcOffset = time::macros::offset!(+7);

/// The calendar shipped with pkid (`conf/calendar-vn.toml`), compiled in. `pkid init` writes
/// it into the data directory, where operators edit their copy.
pub const SHIPPED: &str = include_str!("../../../conf/calendar-vn.toml");

/// Longest run of days off one entry may give: Tết, the longest, is 9 or 10 days; a month
/// leaves room for an exceptional decision while catching a mistyped year or month.
const MAX_RANGE_DAYS: i64 = 31;
/// Largest calendar file read: the shipped one is about 10 KiB for three years.
const MAX_CALENDAR_BYTES: u64 = 1024 * 1024;
/// Years an entry may name: pkid's clock is in this range, and a year outside it is a typo.
const YEARS: std::ops::RangeInclusive<i32> = 1975..=9999;
/// The fixed solar-date holidays of Labour Code 2019 art. 112(1): (month, day).
const FIXED_HOLIDAYS: [(Month, u8); 4] = [
    (Month::January, 1),
    (Month::April, 30),
    (Month::May, 1),
    (Month::September, 2),
];

/// Why a calendar file was refused. Every message names the year and entry it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CalendarError {
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// What the operating system said.
        reason: String,
    },
    /// Not TOML, or a key or value of the wrong shape (an unknown field, a missing `name`).
    #[error("calendar is not valid: {0}")]
    Syntax(String),
    /// A top-level table whose name is not a year.
    #[error("calendar table [{0}] is not a year (expected e.g. [2026], between 1975 and 9999)")]
    NotAYear(String),
    /// A date that is not `YYYY-MM-DD`, or not a real day.
    #[error("{entry}: {field} = {value:?} is not a date (expected YYYY-MM-DD)")]
    BadDate {
        /// Which entry.
        entry: Entry,
        /// `date`, `from` or `to`.
        field: &'static str,
        /// What was written.
        value: String,
    },
    /// A date outside the year whose table holds it.
    #[error("{entry}: {date} is not in {year}")]
    WrongYear {
        /// Which entry.
        entry: Entry,
        /// The date.
        date: Date,
        /// The year of the table.
        year: i32,
    },
    /// An entry with neither or both of `date` and `from`/`to`, a range ending before it
    /// starts or longer than a month, or a make-up day given as a range.
    #[error("{entry}: {problem}")]
    Shape {
        /// Which entry.
        entry: Entry,
        /// What is wrong with it.
        problem: String,
    },
    /// A make-up working day on a Monday to Friday (those are working days already).
    #[error(
        "{entry}: {date} is a {weekday}; a make-up working day must be a Saturday or a Sunday"
    )]
    MakeUpOnWeekday {
        /// Which entry.
        entry: Entry,
        /// The date.
        date: Date,
        /// Its day of the week.
        weekday: Weekday,
    },
    /// The same date in two entries (twice off, twice a make-up day, or both).
    #[error("{second}: {date} is already given by {first}")]
    Duplicate {
        /// The entry that gave the date first.
        first: Entry,
        /// The entry that gave it again.
        second: Entry,
        /// The date.
        date: Date,
    },
    /// A name or source left empty: an operator reading the file must see what a day is and
    /// who decided it.
    #[error("{entry}: `{field}` must not be empty")]
    Empty {
        /// Which entry.
        entry: Entry,
        /// `name` or `source`.
        field: &'static str,
    },
}

/// Which entry of a calendar file an error is about: `2026 day_off #3 "Tết Nguyên đán …"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The year's table.
    pub year: i32,
    /// Day off or make-up day.
    pub kind: DayKind,
    /// Position in its list, from 1.
    pub index: usize,
    /// The entry's name.
    pub name: String,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} #{} {:?}",
            self.year,
            self.kind.key(),
            self.index,
            self.name
        )
    }
}

/// What a calendar entry makes of its days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    /// Nobody works: a public holiday, a Tết day, a compensatory or swapped day off.
    DayOff,
    /// A Saturday or Sunday worked in exchange for a swapped day off.
    MakeUp,
}

impl DayKind {
    /// The key of this kind's list in the file.
    fn key(self) -> &'static str {
        match self {
            Self::DayOff => "day_off",
            Self::MakeUp => "makeup_day",
        }
    }
}

/// One dated entry of the calendar: what the day is and who decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    /// Day off or make-up working day.
    pub kind: DayKind,
    /// Its name (Vietnamese).
    pub name: String,
    /// The Labour Code article and the notice that decided it.
    pub source: String,
}

/// One year's counts, for `pkid calendar check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YearSummary {
    /// The year.
    pub year: i32,
    /// Dates off (weekend days inside a range included).
    pub days_off: usize,
    /// Of those, Monday to Friday: the working days the year loses.
    pub weekdays_off: usize,
    /// Make-up working days.
    pub makeup_days: usize,
}

/// The working days of the years a calendar file covers, and the rule for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// Every dated entry, by date.
    days: BTreeMap<Date, Day>,
    /// The years the file has a table for.
    years: Vec<i32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYear {
    #[serde(default)]
    day_off: Vec<RawEntry>,
    #[serde(default)]
    makeup_day: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    date: Option<String>,
    from: Option<String>,
    to: Option<String>,
    name: String,
    source: String,
}

/// A `YYYY-MM-DD` date, strictly: four-digit year, two-digit month and day, a real day.
fn parse_date(entry: &Entry, field: &'static str, value: &str) -> Result<Date, CalendarError> {
    let bad = || CalendarError::BadDate {
        entry: entry.clone(),
        field,
        value: value.to_string(),
    };
    let b = value.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| value[range].parse::<u16>().map_err(|_| bad());
    let year = i32::from(number(0..4)?);
    let month =
        Month::try_from(u8::try_from(number(5..7)?).map_err(|_| bad())?).map_err(|_| bad())?;
    let day = u8::try_from(number(8..10)?).map_err(|_| bad())?;
    Date::from_calendar_date(year, month, day).map_err(|_| bad())
}

fn is_weekend(date: Date) -> bool {
    matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
}

impl Calendar {
    /// Parses a calendar file (see the header of `conf/calendar-vn.toml`): strict, every
    /// problem refused with the entry it is in.
    pub fn parse(text: &str) -> Result<Self, CalendarError> {
        let raw: BTreeMap<String, RawYear> =
            toml::from_str(text).map_err(|e| CalendarError::Syntax(one_line(&e.to_string())))?;
        let mut days: BTreeMap<Date, (Entry, Day)> = BTreeMap::new();
        let mut years = Vec::with_capacity(raw.len());
        for (key, year_table) in raw {
            let year = key
                .parse::<i32>()
                .ok()
                .filter(|y| YEARS.contains(y) && key.len() == 4)
                .ok_or_else(|| CalendarError::NotAYear(key.clone()))?;
            years.push(year);
            for (kind, list) in [
                (DayKind::DayOff, year_table.day_off),
                (DayKind::MakeUp, year_table.makeup_day),
            ] {
                for (i, raw) in list.into_iter().enumerate() {
                    let entry = Entry {
                        year,
                        kind,
                        index: i + 1,
                        name: raw.name.clone(),
                    };
                    for (field, value) in [("name", &raw.name), ("source", &raw.source)] {
                        if value.trim().is_empty() {
                            return Err(CalendarError::Empty {
                                entry: entry.clone(),
                                field,
                            });
                        }
                    }
                    let shape = |problem: &str| CalendarError::Shape {
                        entry: entry.clone(),
                        problem: problem.to_string(),
                    };
                    let (first, last) = match (&raw.date, &raw.from, &raw.to, kind) {
                        (Some(d), None, None, _) => {
                            let d = parse_date(&entry, "date", d)?;
                            (d, d)
                        }
                        (None, Some(f), Some(t), DayKind::DayOff) => {
                            (parse_date(&entry, "from", f)?, parse_date(&entry, "to", t)?)
                        }
                        (None, Some(_), Some(_), DayKind::MakeUp) => {
                            return Err(shape(
                                "a make-up working day is one `date`, not a `from`/`to` range",
                            ))
                        }
                        (Some(_), _, _, _) => {
                            return Err(shape("give either `date` or `from` and `to`, not both"))
                        }
                        (None, Some(_), None, _) | (None, None, Some(_), _) => {
                            return Err(shape("a range needs both `from` and `to`"))
                        }
                        (None, None, None, _) => {
                            return Err(shape(
                                "give `date` (or `from` and `to` for a run of days off)",
                            ))
                        }
                    };
                    if last < first {
                        return Err(shape(&format!("`to` {last} is before `from` {first}")));
                    }
                    if (last - first).whole_days() >= MAX_RANGE_DAYS {
                        return Err(shape(&format!(
                            "{first} to {last} is longer than {MAX_RANGE_DAYS} days"
                        )));
                    }
                    for date in [first, last] {
                        if date.year() != year {
                            return Err(CalendarError::WrongYear {
                                entry: entry.clone(),
                                date,
                                year,
                            });
                        }
                    }
                    let mut date = first;
                    loop {
                        if kind == DayKind::MakeUp && !is_weekend(date) {
                            return Err(CalendarError::MakeUpOnWeekday {
                                entry: entry.clone(),
                                date,
                                weekday: date.weekday(),
                            });
                        }
                        if let Some((first, _)) = days.get(&date) {
                            return Err(CalendarError::Duplicate {
                                first: first.clone(),
                                second: entry.clone(),
                                date,
                            });
                        }
                        let day = Day {
                            kind,
                            name: raw.name.clone(),
                            source: raw.source.clone(),
                        };
                        days.insert(date, (entry.clone(), day));
                        match date.next_day() {
                            Some(next) if date < last => date = next,
                            _ => break,
                        }
                    }
                }
            }
        }
        years.sort_unstable();
        Ok(Self {
            days: days.into_iter().map(|(d, (_, day))| (d, day)).collect(),
            years,
        })
    }

    /// The calendar shipped with pkid ([`SHIPPED`]).
    pub fn shipped() -> Self {
        // The shipped file is parsed by a unit test, so this cannot fail in a build that passed.
        #[allow(clippy::expect_used)]
        Self::parse(SHIPPED).expect("conf/calendar-vn.toml parses (tested)")
    }

    /// Reads and parses a calendar file.
    pub fn load(path: &Path) -> Result<Self, CalendarError> {
        let read = |reason: String| CalendarError::Read {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| read(e.to_string()))?;
        if meta.len() > MAX_CALENDAR_BYTES {
            return Err(read(format!(
                "{} bytes is larger than a calendar can be ({MAX_CALENDAR_BYTES})",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
        Self::parse(&text)
    }

    /// Whether the file has a table for `year`. For a year it does not cover, working days are
    /// weekdays minus the fixed solar-date holidays (see the module documentation); the daemon
    /// warns and raises a metric.
    pub fn covers(&self, year: i32) -> bool {
        self.years.binary_search(&year).is_ok()
    }

    /// The years the file covers, oldest first.
    pub fn years(&self) -> &[i32] {
        &self.years
    }

    /// What the file says about `date`, if anything.
    pub fn day(&self, date: Date) -> Option<&Day> {
        self.days.get(&date)
    }

    /// Each covered year's counts of days off and make-up days.
    pub fn summary(&self) -> Vec<YearSummary> {
        self.years
            .iter()
            .map(|&year| {
                let mut s = YearSummary {
                    year,
                    days_off: 0,
                    weekdays_off: 0,
                    makeup_days: 0,
                };
                for (date, day) in self.days.range(year_range(year)) {
                    match day.kind {
                        DayKind::DayOff => {
                            s.days_off += 1;
                            s.weekdays_off += usize::from(!is_weekend(*date));
                        }
                        DayKind::MakeUp => s.makeup_days += 1,
                    }
                }
                s
            })
            .collect()
    }

    /// Whether `date` (a local date in `Asia/Ho_Chi_Minh`) is a working day: Monday to Friday
    /// unless the calendar gives it off, and the make-up days it lists. In a year the file does
    /// not cover: weekdays minus the fixed solar-date holidays of art. 112 and their
    /// compensatory days.
    pub fn is_working_day(&self, date: Date) -> bool {
        if self.covers(date.year()) {
            return match self.days.get(&date).map(|d| d.kind) {
                Some(DayKind::DayOff) => false,
                Some(DayKind::MakeUp) => true,
                None => !is_weekend(date),
            };
        }
        !is_weekend(date) && !fixed_days_off(date.year()).contains(&date)
    }

    /// When a request accepted at `accepted_at` is due if it must be fulfilled within `n`
    /// working days: the end (24:00, written as the next day's `00:00:00+07:00`) of the n-th
    /// working day after the day of acceptance, which itself is not counted (Civil Code 2015
    /// art. 147–148). `n = 0` is the end of the day of acceptance.
    pub fn due_working_days(&self, accepted_at: OffsetDateTime, n: u32) -> OffsetDateTime {
        let mut day = accepted_at.to_offset(HO_CHI_MINH).date();
        let mut counted = 0;
        while counted < n {
            match day.next_day() {
                Some(next) => day = next,
                None => break,
            }
            if self.is_working_day(day) {
                counted += 1;
            }
        }
        end_of(day)
    }

    /// When a request accepted at `accepted_at` is due if it must be fulfilled within `hours`
    /// clock hours, nights, weekends and holidays included (revocation: the service runs
    /// 24/7). In `+07:00`.
    pub fn due_hours(&self, accepted_at: OffsetDateTime, hours: u32) -> OffsetDateTime {
        accepted_at
            .saturating_add(Duration::hours(i64::from(hours)))
            .to_offset(HO_CHI_MINH)
    }

    /// Turnaround in working hours: the seconds between `from` and `to` that fall inside
    /// `[start_hour, end_hour)` local time on working days. Zero when `to` is not after `from`.
    /// `end_hour` may be 24 (the whole day up to midnight).
    pub fn working_seconds_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        (start_hour, end_hour): (u8, u8),
    ) -> u64 {
        if to <= from || start_hour >= end_hour {
            return 0;
        }
        let (from, to) = (from.to_offset(HO_CHI_MINH), to.to_offset(HO_CHI_MINH));
        let mut total: i64 = 0;
        let mut day = from.date();
        while day <= to.date() {
            if self.is_working_day(day) {
                let open = at_hour(day, start_hour);
                let close = at_hour(day, end_hour);
                let (a, b) = (open.max(from), close.min(to));
                if b > a {
                    total += (b - a).whole_seconds();
                }
            }
            match day.next_day() {
                Some(next) => day = next,
                None => break,
            }
        }
        u64::try_from(total).unwrap_or(0)
    }
}

/// [`Calendar::working_seconds_between`] for many pairs: the working seconds from a fixed
/// local midnight to the start of each day of a span, tabulated once, so that a turnaround is
/// two lookups and a subtraction. Vietnam keeps +07:00 all year, so every local day is 86,400 s.
/// Instants outside the span fall back to the day-by-day count.
pub struct WorkingClock<'a> {
    calendar: &'a Calendar,
    hours: (u8, u8),
    /// Unix seconds of the first day's local midnight.
    base: i64,
    /// Working seconds before each day of the span (one more entry than days).
    before: Vec<u64>,
    /// Whether each day is a working day.
    working: Vec<bool>,
}

impl<'a> WorkingClock<'a> {
    /// Tabulates the days from `from`'s local date to `to`'s, inclusive.
    pub fn new(
        calendar: &'a Calendar,
        from: u64,
        to: u64,
        (start_hour, end_hour): (u8, u8),
    ) -> Self {
        let local = |unix: u64| {
            OffsetDateTime::from_unix_timestamp(unix.min(i64::MAX as u64) as i64)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
                .to_offset(HO_CHI_MINH)
                .date()
        };
        let (first, last) = (local(from), local(to.max(from)));
        let base = PrimitiveDateTime::new(first, Time::MIDNIGHT)
            .assume_offset(HO_CHI_MINH)
            .unix_timestamp();
        let open = u64::from(start_hour.min(24)) * 3600;
        let close = u64::from(end_hour.min(24)) * 3600;
        let per_day = close.saturating_sub(open);
        let mut before = vec![0];
        let mut working = Vec::new();
        let mut day = first;
        while day <= last {
            let w = calendar.is_working_day(day);
            working.push(w);
            before.push(before[before.len() - 1] + if w { per_day } else { 0 });
            match day.next_day() {
                Some(next) => day = next,
                None => break,
            }
        }
        Self {
            calendar,
            hours: (start_hour, end_hour),
            base,
            before,
            working,
        }
    }

    /// Working seconds from the span's start to `t`, when `t` is inside the span.
    fn at(&self, t: u64) -> Option<u64> {
        let offset = i64::try_from(t).ok()?.checked_sub(self.base)?;
        if offset < 0 {
            return None;
        }
        let (day, second) = ((offset / 86_400) as usize, (offset % 86_400) as u64);
        if day >= self.working.len() {
            return None;
        }
        let mut w = self.before[day];
        if self.working[day] {
            let open = u64::from(self.hours.0.min(24)) * 3600;
            let close = u64::from(self.hours.1.min(24)) * 3600;
            w += second.clamp(open, close.max(open)) - open;
        }
        Some(w)
    }

    /// The same as [`Calendar::working_seconds_between`] for unix instants.
    pub fn seconds_between(&self, from: u64, to: u64) -> u64 {
        if to <= from || self.hours.0 >= self.hours.1 {
            return 0;
        }
        match (self.at(from), self.at(to)) {
            (Some(a), Some(b)) => b - a,
            _ => {
                let instant = |u: u64| {
                    OffsetDateTime::from_unix_timestamp(u.min(i64::MAX as u64) as i64)
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
                };
                self.calendar
                    .working_seconds_between(instant(from), instant(to), self.hours)
            }
        }
    }
}

/// The dates of `year`, for a range over the calendar's map.
fn year_range(year: i32) -> std::ops::RangeInclusive<Date> {
    let first = Date::from_ordinal_date(year, 1).unwrap_or(Date::MIN);
    let last = Date::from_calendar_date(year, Month::December, 31).unwrap_or(Date::MAX);
    first..=last
}

/// `hour:00` local on `date` (24 is the next day's midnight).
fn at_hour(date: Date, hour: u8) -> OffsetDateTime {
    if hour >= 24 {
        return end_of(date);
    }
    let time = Time::from_hms(hour, 0, 0).unwrap_or(Time::MIDNIGHT);
    PrimitiveDateTime::new(date, time).assume_offset(HO_CHI_MINH)
}

/// 24:00 of `date`, written as the next day's `00:00:00+07:00`.
fn end_of(date: Date) -> OffsetDateTime {
    PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_offset(HO_CHI_MINH) + Duration::DAY
}

/// For a year the file does not cover: the fixed solar-date holidays of art. 112(1), and for
/// each that falls on a weekend a compensatory day on the next weekday that is not itself a
/// holiday or already a compensatory day (art. 112(3)).
fn fixed_days_off(year: i32) -> Vec<Date> {
    let holidays: Vec<Date> = FIXED_HOLIDAYS
        .iter()
        .filter_map(|&(month, day)| Date::from_calendar_date(year, month, day).ok())
        .collect();
    let mut off = holidays.clone();
    for holiday in holidays.iter().filter(|d| is_weekend(**d)) {
        let mut day = *holiday;
        while let Some(next) = day.next_day() {
            day = next;
            if !is_weekend(day) && !off.contains(&day) {
                off.push(day);
                break;
            }
        }
    }
    off
}

/// A TOML error is several lines (the offending line quoted, a caret); the CLI prints one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| c == '^'))
        .collect::<Vec<_>>()
        .join("; ")
}

/// RFC 3339 in `Asia/Ho_Chi_Minh` time.
pub fn local_rfc3339(unix: u64) -> String {
    OffsetDateTime::from_unix_timestamp(unix as i64)
        .map(|t| t.to_offset(HO_CHI_MINH))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;
    use time::macros::{date, datetime};

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).expect("RFC 3339")
    }

    fn rfc3339(t: OffsetDateTime) -> String {
        t.format(&Rfc3339).expect("format")
    }

    fn due(accepted: &str, n: u32) -> String {
        rfc3339(Calendar::shipped().due_working_days(at(accepted), n))
    }

    #[test]
    fn the_shipped_calendar_covers_2025_to_2027_and_tet_2026_is_off_from_14_to_22_february() {
        let c = Calendar::shipped();
        assert_eq!(c.years(), [2025, 2026, 2027]);
        assert!(!c.covers(2024) && !c.covers(2028));
        for day in 14..=22 {
            let d = Date::from_calendar_date(2026, Month::February, day).expect("date");
            assert!(!c.is_working_day(d), "{d} is Tết");
        }
        assert!(c.is_working_day(date!(2026 - 02 - 13)));
        assert!(c.is_working_day(date!(2026 - 02 - 23)));
        assert_eq!(
            c.day(date!(2026 - 02 - 17)).map(|d| d.name.as_str()),
            Some("Tết Nguyên đán Bính Ngọ (27 tháng Chạp năm Ất Tỵ đến mùng 6 tháng Giêng; 5 ngày Tết và 4 ngày nghỉ cuối tuần)"),
            "Vietnamese names round-trip exactly"
        );
        // Every 2027 entry is honest about being derived.
        for (date, day) in c.days.range(year_range(2027)) {
            assert!(
                day.source.contains("derived from Labour Code art. 112"),
                "{date}"
            );
        }
        let summary = c.summary();
        assert_eq!(
            summary[1],
            YearSummary {
                year: 2026,
                days_off: 17,
                weekdays_off: 13,
                makeup_days: 2
            }
        );
    }

    #[test]
    fn acceptance_on_a_friday_afternoon_is_due_the_next_thursday_at_midnight() {
        // Friday 6 March 2026: Monday, Tuesday, Wednesday; the period ends at 24:00 Wednesday.
        assert_eq!(
            due("2026-03-06T15:30:00+07:00", 3),
            "2026-03-12T00:00:00+07:00"
        );
    }

    #[test]
    fn tet_2026_is_skipped() {
        // Friday 13 February: the nine days of Tết, then 23, 24, 25 February.
        assert_eq!(
            due("2026-02-13T10:00:00+07:00", 3),
            "2026-02-26T00:00:00+07:00"
        );
        // Wednesday 11 February: 12, 13, then after Tết 23 February.
        assert_eq!(
            due("2026-02-11T09:00:00+07:00", 3),
            "2026-02-24T00:00:00+07:00"
        );
        // Accepted during Tết (a 24/7 channel): the first working day after it counts first.
        assert_eq!(
            due("2026-02-17T11:00:00+07:00", 3),
            "2026-02-26T00:00:00+07:00"
        );
    }

    #[test]
    fn a_make_up_saturday_counts_and_the_swapped_friday_does_not() {
        // Thursday 8 January 2026: Friday 9, Saturday 10 (make-up for 2 January), Monday 12.
        assert_eq!(
            due("2026-01-08T14:00:00+07:00", 3),
            "2026-01-13T00:00:00+07:00"
        );
        // Wednesday 31 December 2025: 1 and 2 January off, then 5, 6, 7 January.
        assert_eq!(
            due("2025-12-31T16:00:00+07:00", 3),
            "2026-01-08T00:00:00+07:00"
        );
        let c = Calendar::shipped();
        assert!(c.is_working_day(date!(2026 - 01 - 10)));
        assert!(!c.is_working_day(date!(2026 - 01 - 02)));
        assert!(
            !c.is_working_day(date!(2026 - 01 - 11)),
            "an ordinary Sunday"
        );
    }

    #[test]
    fn the_day_of_acceptance_is_the_local_day_2359_and_0000_differ_by_a_working_day() {
        // 23:59:59 on Monday 2 March 2026 in Hà Nội, given in UTC: Monday is not counted.
        assert_eq!(due("2026-03-02T16:59:59Z", 3), "2026-03-06T00:00:00+07:00");
        // One second later it is Tuesday 00:00 local: Tuesday is the day of acceptance.
        assert_eq!(due("2026-03-02T17:00:00Z", 3), "2026-03-07T00:00:00+07:00");
        // The last day a Friday: the period ends at 24:00 Friday, not on Monday.
        assert_eq!(
            due("2026-03-04T00:00:00+07:00", 2),
            "2026-03-07T00:00:00+07:00"
        );
    }

    #[test]
    fn a_period_whose_last_day_would_be_a_holiday_ends_on_the_next_working_day() {
        // Tuesday 28 April 2026 + 2: Wednesday 29, then 30 April, 1 May and the weekend are
        // off, so the second working day is Monday 4 May.
        assert_eq!(
            due("2026-04-28T10:00:00+07:00", 2),
            "2026-05-05T00:00:00+07:00"
        );
    }

    #[test]
    fn the_hours_deadline_runs_through_holidays_and_is_written_in_plus_seven() {
        let c = Calendar::shipped();
        // Accepted 20:00 on the last working day before Tết (16 Feb is off, but the clock runs).
        let due = c.due_hours(at("2026-02-16T20:00:00+07:00"), 12);
        assert_eq!(rfc3339(due), "2026-02-17T08:00:00+07:00");
        let due = c.due_hours(datetime!(2026-04-30 03:00 UTC), 12);
        assert_eq!(rfc3339(due), "2026-04-30T22:00:00+07:00");
    }

    #[test]
    fn the_working_clock_agrees_with_the_day_by_day_count_inside_and_outside_its_span() {
        let c = Calendar::shipped();
        // The span: December 2025 to March 2026 (Tết inside); pairs start before it too.
        let from = at("2025-12-01T00:00:00+07:00").unix_timestamp() as u64;
        let to = at("2026-03-31T00:00:00+07:00").unix_timestamp() as u64;
        for hours in [(8, 17), (0, 24), (7, 11)] {
            let clock = WorkingClock::new(&c, from, to, hours);
            // A simple LCG: reproducible pairs with odd seconds, across day boundaries.
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            let mut next = || {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                x >> 33
            };
            for _ in 0..2_000 {
                let a = from - 20 * 86_400 + next() % (140 * 86_400);
                let b = a + next() % (30 * 86_400);
                let instant =
                    |u: u64| OffsetDateTime::from_unix_timestamp(u as i64).expect("in range");
                assert_eq!(
                    clock.seconds_between(a, b),
                    c.working_seconds_between(instant(a), instant(b), hours),
                    "{a}..{b} with hours {hours:?}"
                );
            }
        }
    }

    #[test]
    fn working_seconds_count_only_working_hours_of_working_days() {
        let c = Calendar::shipped();
        let hours = (8, 17);
        let secs = |a: &str, b: &str| c.working_seconds_between(at(a), at(b), hours);
        // Friday 16:00 to Monday 09:00: one hour each side of the weekend.
        assert_eq!(
            secs("2026-03-06T16:00:00+07:00", "2026-03-09T09:00:00+07:00"),
            7200
        );
        // Wednesday 29 April 16:00 to Monday 4 May 09:00: 30 April, 1 May and the weekend off.
        assert_eq!(
            secs("2026-04-29T16:00:00+07:00", "2026-05-04T09:00:00+07:00"),
            7200
        );
        // The whole of Tết: nothing.
        assert_eq!(
            secs("2026-02-13T17:00:00+07:00", "2026-02-23T08:00:00+07:00"),
            0
        );
        // 07:00 to 19:00 local given in UTC: clipped to 08:00-17:00; 09:30 to 10:00 inside.
        assert_eq!(
            secs("2026-03-03T00:00:00Z", "2026-03-03T12:00:00Z"),
            9 * 3600
        );
        assert_eq!(secs("2026-03-03T02:30:00Z", "2026-03-03T03:00:00Z"), 1800);
        // The make-up Saturday counts.
        assert_eq!(
            secs("2026-01-10T00:00:00+07:00", "2026-01-11T00:00:00+07:00"),
            9 * 3600
        );
        // Reversed or empty intervals are zero.
        assert_eq!(
            secs("2026-03-09T09:00:00+07:00", "2026-03-06T16:00:00+07:00"),
            0
        );
        assert_eq!(
            c.working_seconds_between(
                at("2026-03-09T00:00:00+07:00"),
                at("2026-03-10T00:00:00+07:00"),
                (0, 24)
            ),
            86400
        );
    }

    #[test]
    fn a_year_the_file_does_not_cover_keeps_weekends_and_the_fixed_holidays() {
        let c = Calendar::shipped();
        assert!(!c.covers(2028));
        // 1 January 2028 is a Saturday: Monday 3 January is the compensatory day.
        assert!(!c.is_working_day(date!(2028 - 01 - 03)));
        assert!(c.is_working_day(date!(2028 - 01 - 04)));
        // 30 April is a Sunday and 1 May a Monday: the compensatory day is Tuesday 2 May.
        assert!(!c.is_working_day(date!(2028 - 05 - 01)));
        assert!(!c.is_working_day(date!(2028 - 05 - 02)));
        assert!(c.is_working_day(date!(2028 - 05 - 03)));
        // 2 September is a Saturday: Monday 4 September.
        assert!(!c.is_working_day(date!(2028 - 09 - 04)));
        // Requests accepted on the last working day of 2027 still get a deadline.
        assert_eq!(
            due("2027-12-31T10:00:00+07:00", 3),
            "2028-01-07T00:00:00+07:00"
        );
    }

    fn refused(text: &str) -> String {
        Calendar::parse(text).expect_err("refused").to_string()
    }

    #[test]
    fn parse_errors_name_the_entry_and_the_problem() {
        let ok = "[[2026.day_off]]\ndate = \"2026-01-01\"\nname = \"Tết Dương lịch\"\nsource = \"Đ112\"\n";
        Calendar::parse(ok).expect("valid");
        let cases = [
            (
                "[[2026.day_off]]\ndate = \"2026-01-01\"\nname = \"x\"\nsource = \"s\"\nnote = \"?\"\n",
                "unknown field `note`",
            ),
            (
                "[[2026.day_off]]\ndate = \"2026-1-01\"\nname = \"Tết\"\nsource = \"s\"\n",
                "2026 day_off #1 \"Tết\": date = \"2026-1-01\" is not a date",
            ),
            (
                "[[2026.day_off]]\ndate = \"2026-02-30\"\nname = \"x\"\nsource = \"s\"\n",
                "is not a date",
            ),
            (
                "[[2026.day_off]]\ndate = \"2027-01-01\"\nname = \"x\"\nsource = \"s\"\n",
                "2026 day_off #1 \"x\": 2027-01-01 is not in 2026",
            ),
            (
                "[[2026.makeup_day]]\ndate = \"2026-01-09\"\nname = \"bù\"\nsource = \"s\"\n",
                "2026 makeup_day #1 \"bù\": 2026-01-09 is a Friday",
            ),
            (
                "[[2026.day_off]]\nfrom = \"2026-02-14\"\nto = \"2026-02-22\"\nname = \"Tết\"\nsource = \"s\"\n\
                 [[2026.day_off]]\ndate = \"2026-02-20\"\nname = \"again\"\nsource = \"s\"\n",
                "2026 day_off #2 \"again\": 2026-02-20 is already given by 2026 day_off #1 \"Tết\"",
            ),
            (
                "[[2026.day_off]]\ndate = \"2026-01-10\"\nname = \"off\"\nsource = \"s\"\n\
                 [[2026.makeup_day]]\ndate = \"2026-01-10\"\nname = \"work\"\nsource = \"s\"\n",
                "2026 makeup_day #1 \"work\": 2026-01-10 is already given by 2026 day_off #1 \"off\"",
            ),
            (
                "[[2026.day_off]]\ndate = \"2026-01-01\"\nfrom = \"2026-01-01\"\nto = \"2026-01-02\"\nname = \"x\"\nsource = \"s\"\n",
                "not both",
            ),
            (
                "[[2026.day_off]]\nfrom = \"2026-02-22\"\nto = \"2026-02-14\"\nname = \"x\"\nsource = \"s\"\n",
                "`to` 2026-02-14 is before `from` 2026-02-22",
            ),
            (
                "[[2026.day_off]]\nfrom = \"2026-01-01\"\nto = \"2026-03-01\"\nname = \"x\"\nsource = \"s\"\n",
                "longer than 31 days",
            ),
            (
                "[[2026.makeup_day]]\nfrom = \"2026-01-10\"\nto = \"2026-01-11\"\nname = \"x\"\nsource = \"s\"\n",
                "not a `from`/`to` range",
            ),
            (
                "[[2026.day_off]]\nname = \"x\"\nsource = \"s\"\n",
                "give `date`",
            ),
            (
                "[[2026.day_off]]\ndate = \"2026-01-01\"\nname = \"x\"\nsource = \" \"\n",
                "`source` must not be empty",
            ),
            (
                "[[2026.day_off]]\ndate = \"2026-01-01\"\nname = \"x\"\n",
                "missing field `source`",
            ),
            (
                "[[twenty.day_off]]\ndate = \"2026-01-01\"\nname = \"x\"\nsource = \"s\"\n",
                "[twenty] is not a year",
            ),
            ("[2026]\nholidays = []\n", "unknown field `holidays`"),
            ("[[2026.day_off]\n", "calendar is not valid"),
        ];
        for (text, expected) in cases {
            let message = refused(text);
            assert!(
                message.contains(expected),
                "{message:?} should contain {expected:?}"
            );
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }

    #[test]
    fn load_reads_a_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("calendar-vn.toml");
        std::fs::write(&path, SHIPPED).expect("write");
        assert_eq!(Calendar::load(&path).expect("load"), Calendar::shipped());
        let missing = dir.path().join("nope.toml");
        let e = Calendar::load(&missing).expect_err("missing");
        assert!(e.to_string().contains("nope.toml"), "{e}");
    }
}
