//! `pkid calendar due | check`: anyone can check the deadline arithmetic and an edited calendar.

use super::{out, Failure};
use crate::config::Config;
use crate::ra::calendar::{Calendar, CalendarError};
use clap::{ArgGroup, Subcommand};
use std::path::{Path, PathBuf};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `pkid calendar …`
#[derive(Subcommand, Debug)]
pub enum CalendarCommand {
    /// Print when a request accepted at --from is due (RFC 3339, +07:00): within N working days
    /// (the day of acceptance not counted, the period ending at 24:00 of the last one), or N
    /// clock hours (holidays included).
    #[command(group(ArgGroup::new("period").required(true).args(["working_days", "hours"])))]
    Due {
        /// When the request was accepted, RFC 3339 (e.g. 2026-02-13T10:00:00+07:00).
        #[arg(long)]
        from: String,
        /// Working days to fulfil it (issue, renew, modify: 3).
        #[arg(long)]
        working_days: Option<u32>,
        /// Clock hours to fulfil it (revoke: 12).
        #[arg(long)]
        hours: Option<u32>,
        /// Calendar file (default: the data directory's, else the one shipped with pkid).
        #[arg(long)]
        calendar: Option<PathBuf>,
    },
    /// Validate a calendar file and print each year's days off and make-up working days.
    Check {
        /// Calendar file (default: the data directory's, else the one shipped with pkid).
        #[arg(long)]
        calendar: Option<PathBuf>,
    },
}

/// Longest period `calendar due` computes: a deadline years away is a typo, and bounding it
/// keeps the day-by-day count short.
const MAX_PERIOD_WORKING_DAYS: u32 = 3650;
/// Longest period in hours (ten years).
const MAX_PERIOD_HOURS: u32 = 87_600;

fn calendar_failure(e: CalendarError) -> Failure {
    // Like an unreadable `--csr`: input the operator must fix.
    let code = match &e {
        CalendarError::Read { .. }
        | CalendarError::Syntax(_)
        | CalendarError::NotAYear(_)
        | CalendarError::BadDate { .. }
        | CalendarError::WrongYear { .. }
        | CalendarError::Shape { .. }
        | CalendarError::MakeUpOnWeekday { .. }
        | CalendarError::Duplicate { .. }
        | CalendarError::Empty { .. } => 3,
    };
    Failure {
        message: e.to_string(),
        code,
    }
}

/// The calendar a command uses, and where it came from (for `check`'s first line).
fn calendar(data: &Path, file: Option<PathBuf>) -> Result<(Calendar, String), Failure> {
    let with_path = |path: &Path| {
        Calendar::load(path)
            .map(|c| (c, path.display().to_string()))
            .map_err(|e| {
                let mut f = calendar_failure(e);
                if !f.message.starts_with(&path.display().to_string()) {
                    f.message = format!("{}: {}", path.display(), f.message);
                }
                f
            })
    };
    if let Some(path) = file {
        return with_path(&path);
    }
    if data.is_dir() {
        let config = Config::load(data).map_err(|e| Failure {
            message: e.to_string(),
            code: 3,
        })?;
        if config.ra.calendar.exists() {
            return with_path(&config.ra.calendar);
        }
        eprintln!(
            "pkid: note: {} does not exist (pkid init and pkid serve write it); using the calendar shipped with pkid",
            config.ra.calendar.display()
        );
    }
    Ok((Calendar::shipped(), "the calendar shipped with pkid".into()))
}

/// Runs a `pkid calendar` command.
pub(super) fn run(data: &Path, cmd: CalendarCommand) -> Result<(), Failure> {
    match cmd {
        CalendarCommand::Due {
            from,
            working_days,
            hours,
            calendar: file,
        } => {
            let accepted = OffsetDateTime::parse(&from, &Rfc3339).map_err(|e| Failure {
                message: format!(
                    "--from {from:?}: {e} (use RFC 3339, e.g. 2026-02-13T10:00:00+07:00)"
                ),
                code: 3,
            })?;
            let (calendar, _) = calendar(data, file)?;
            let due = match (working_days, hours) {
                (Some(n), None) if n <= MAX_PERIOD_WORKING_DAYS => {
                    calendar.due_working_days(accepted, n)
                }
                (None, Some(h)) if h <= MAX_PERIOD_HOURS => calendar.due_hours(accepted, h),
                (Some(_), None) | (None, Some(_)) => {
                    return Err(Failure {
                        message: format!(
                            "a period longer than {MAX_PERIOD_WORKING_DAYS} working days or \
                             {MAX_PERIOD_HOURS} hours is refused"
                        ),
                        code: 3,
                    })
                }
                // clap's required, exclusive group: exactly one is given.
                (Some(_), Some(_)) | (None, None) => {
                    return Err(Failure {
                        message: "give exactly one of --working-days and --hours".into(),
                        code: 2,
                    })
                }
            };
            let start = accepted.to_offset(crate::ra::calendar::HO_CHI_MINH).year();
            for year in start..=due.year() {
                if working_days.is_some() && !calendar.covers(year) {
                    eprintln!(
                        "pkid: warning: the calendar does not cover {year}: only weekends and the \
                         fixed holidays of Labour Code art. 112 are counted"
                    );
                }
            }
            let text = due.format(&Rfc3339).map_err(|e| Failure {
                message: format!("formatting the due instant: {e}"),
                code: 1,
            })?;
            out(&format!("{text}\n"))
        }
        CalendarCommand::Check { calendar: file } => {
            let (calendar, origin) = calendar(data, file)?;
            let mut text = format!("{origin}: valid\n");
            for y in calendar.summary() {
                text.push_str(&format!(
                    "{}: {} days off ({} of them Monday to Friday), {} make-up working days\n",
                    y.year, y.days_off, y.weekdays_off, y.makeup_days
                ));
            }
            out(&text)
        }
    }
}
