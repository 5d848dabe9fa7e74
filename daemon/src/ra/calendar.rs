//! Working days (placeholder until the calendar lands: weekends only).

use time::{Duration, OffsetDateTime, UtcOffset, Weekday};

/// The working-day calendar.
pub struct Calendar;

const VN: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

impl Calendar {
    /// The shipped calendar.
    pub fn shipped() -> Self {
        Self
    }
    /// Loads a calendar file.
    pub fn load(_path: &std::path::Path) -> Result<Self, String> {
        Ok(Self)
    }
    /// The end of the `n`-th working day after `from`'s day.
    pub fn due_working_days(&self, from: OffsetDateTime, n: u32) -> OffsetDateTime {
        let mut d = from.to_offset(VN).date();
        let mut left = n;
        while left > 0 {
            d = d.next_day().unwrap_or(d);
            if !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
                left -= 1;
            }
        }
        d.next_day().unwrap_or(d).midnight().assume_offset(VN)
    }
    /// `h` clock hours after `from`.
    pub fn due_hours(&self, from: OffsetDateTime, h: u32) -> OffsetDateTime {
        from + Duration::hours(i64::from(h))
    }
    /// Working seconds between two instants.
    pub fn working_seconds_between(
        &self,
        a: OffsetDateTime,
        b: OffsetDateTime,
        _hours: (u8, u8),
    ) -> u64 {
        (b - a).whole_seconds().max(0) as u64
    }
}
