//! The portal's pages: askama templates (`daemon/templates/portal/`, checked when the crate
//! compiles, every value HTML-escaped) and what they show, already in words.

use super::i18n::{message, Lang};
use askama::Template;
use fluent_bundle::FluentArgs;

/// What every page shows around its content: language, style sheet, who is signed in, the
/// form token.
pub(super) struct Chrome {
    /// The page's language.
    pub(super) lang: Lang,
    /// The style sheet's content-hashed path.
    pub(super) css: &'static str,
    /// The token every form carries.
    pub(super) csrf: String,
    /// The signed-in person's name (a subscriber's: the official email) and role, in words.
    pub(super) user: Option<(String, String)>,
    /// Whether the caller is an operator (the menu links the RA's pages), not a subscriber.
    pub(super) staff: bool,
    /// Whether the caller reads reports (the menu links them).
    pub(super) reports: bool,
    /// Whether the caller reads the audit log (the menu links it).
    pub(super) audit_log: bool,
    /// Whether the caller manages organisations and operators (the menu links them).
    pub(super) admin: bool,
    /// Whether the caller manages enrollment credentials (organisation officers, CA admins).
    pub(super) credentials: bool,
}

impl Chrome {
    /// A message in the page's language.
    pub(super) fn t(&self, key: &str) -> String {
        message(self.lang, key, None)
    }

    /// The `lang` attribute.
    pub(super) fn lang_tag(&self) -> &'static str {
        self.lang.tag()
    }

    /// The language the switch offers.
    pub(super) fn other_lang(&self) -> &'static str {
        self.lang.other().tag()
    }

    /// The switch's label, in the language it switches to.
    pub(super) fn other_lang_name(&self) -> String {
        message(self.lang.other(), "lang-name", None)
    }
}

/// A message with one numeric argument `n`.
pub(super) fn with_n(lang: Lang, key: &str, n: u64) -> String {
    let mut args = FluentArgs::new();
    args.set("n", n);
    message(lang, key, Some(&args))
}

/// An RFC 3339 instant as `dd/mm/yyyy HH:MM` in Asia/Ho_Chi_Minh; empty when absent.
pub(super) fn local_time(rfc3339: Option<&str>) -> String {
    use time::format_description::well_known::Rfc3339;
    let Some(t) = rfc3339.and_then(|s| time::OffsetDateTime::parse(s, &Rfc3339).ok()) else {
        return String::new();
    };
    unix_local_time(t.unix_timestamp())
}

/// A Unix time as `dd/mm/yyyy HH:MM` in Asia/Ho_Chi_Minh.
pub(super) fn unix_local_time(unix: i64) -> String {
    let fmt = time::macros::format_description!("[day]/[month]/[year] [hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.to_offset(crate::ra::calendar::HO_CHI_MINH))
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

/// An X.509 time as `credentials/info` gives it (`YYYYMMDDHHMMSSZ`) as `dd/mm/yyyy HH:MM` in
/// Asia/Ho_Chi_Minh.
pub(super) fn generalized_local_time(t: &str) -> String {
    let fmt = time::macros::format_description!("[year][month][day][hour][minute][second]Z");
    time::PrimitiveDateTime::parse(t, &fmt)
        .map(|t| unix_local_time(t.assume_utc().unix_timestamp()))
        .unwrap_or_default()
}

/// The time left before `due` (Unix seconds) at `now`, in words: "còn 5 giờ", "quá hạn 2 giờ".
pub(super) fn time_left(lang: Lang, due: i64, now: i64) -> String {
    let (secs, overdue) = if due >= now {
        (due - now, false)
    } else {
        (now - due, true)
    };
    let secs = secs as u64;
    let (key, n) = match (overdue, secs) {
        (false, s) if s < 3600 => ("left-minutes", s.div_ceil(60)),
        (false, s) if s < 48 * 3600 => ("left-hours", s / 3600),
        (false, s) => ("left-days", s / 86400),
        (true, s) if s < 3600 => ("overdue-minutes", s.div_ceil(60).max(1)),
        (true, s) if s < 48 * 3600 => ("overdue-hours", s / 3600),
        (true, s) => ("overdue-days", s / 86400),
    };
    with_n(lang, key, n)
}

/// One request as a row of a list.
pub(super) struct Row {
    /// Its id.
    pub(super) id: i64,
    /// The kind, in words.
    pub(super) kind: String,
    /// The state, in words.
    pub(super) state: String,
    /// The state's code (a CSS class and a test hook).
    pub(super) state_code: &'static str,
    /// The subscriber's name.
    pub(super) subscriber: String,
    /// The organisation's id.
    pub(super) organisation: String,
    /// Submitted, local time.
    pub(super) submitted: String,
    /// Due, local time (empty before acceptance).
    pub(super) due: String,
    /// Time left in words (empty without a deadline or once closed).
    pub(super) left: String,
    /// Past due and still open.
    pub(super) overdue: bool,
}

/// The home page before login: the login form and the public search.
#[derive(Template)]
#[template(path = "portal/home.html")]
pub(super) struct HomePage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// The login failed (said once, without why).
    pub(super) failed: bool,
    /// The operator id typed, kept on a failed login.
    pub(super) username: String,
}

/// An organisation officer's dashboard, or an RA officer's queue.
#[derive(Template)]
#[template(path = "portal/requests.html")]
pub(super) struct RequestsPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// The heading's message key (`dashboard-title`, `queue-title`).
    pub(super) title: String,
    /// The rows.
    pub(super) rows: Vec<Row>,
    /// The state filters offered (code, in words, chosen); empty on the queue.
    pub(super) filters: Vec<(&'static str, String, bool)>,
    /// The next page's address (`?after=`), when there is one.
    pub(super) next: Option<String>,
    /// Whether the caller may file requests (the procedure links).
    pub(super) files: bool,
    /// Whether the caller may approve a selection at once.
    pub(super) bulk: bool,
}

impl RequestsPage<'_> {
    /// Whether no state filter is chosen (the dashboard shows every state).
    pub(super) fn all_chosen(&self) -> bool {
        !self.filters.iter().any(|f| f.2)
    }
}

/// The outcome of a bulk approval, request by request.
#[derive(Template)]
#[template(path = "portal/bulk.html")]
pub(super) struct BulkPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// (request id, its outcome in words).
    pub(super) rows: Vec<(i64, String)>,
}

/// One field of a form with the value typed and the problem found, if any.
#[derive(Default)]
pub(super) struct Field {
    /// The value typed.
    pub(super) value: String,
    /// The message shown next to the field.
    pub(super) error: String,
}

/// The form of one procedure.
#[derive(Template)]
#[template(path = "portal/form.html")]
pub(super) struct FormPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// `issue`, `renew`, `modify`, `revoke` or `recover`.
    pub(super) kind: &'static str,
    /// The profiles offered (issue).
    pub(super) profiles: Vec<String>,
    /// Fields by name: `organisation`, `profile`, `subscriber_name`, … .
    pub(super) fields: std::collections::BTreeMap<&'static str, Field>,
    /// A problem not tied to one field.
    pub(super) general: String,
    /// Whether the caller picks the organisation (RA officers and CA admins).
    pub(super) picks_organisation: bool,
    /// The draft keeping the files attached before a check.
    pub(super) draft: Option<String>,
    /// The kept files' names, by form field (`csr_file`, `document_file`, `signature_file`).
    pub(super) kept: std::collections::BTreeMap<String, String>,
    /// What checking the document found, when it was checked.
    pub(super) check: Option<DocumentVerdict>,
}

/// The verification of a document checked before sending.
pub(super) struct DocumentVerdict {
    /// Whether a request filed with it now would count it as valid evidence.
    pub(super) valid: bool,
    /// Its file name.
    pub(super) filename: String,
    /// The signer's subject (empty: none found).
    pub(super) signer: String,
    /// The signing time relied on, local time (empty: none).
    pub(super) signed_at: String,
    /// Why it is not valid evidence (empty: it is).
    pub(super) problem: String,
}

impl FormPage<'_> {
    /// The value typed into a field.
    pub(super) fn v(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", |f| f.value.as_str())
    }

    /// The problem of a field (empty: none).
    pub(super) fn e(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", |f| f.error.as_str())
    }

    /// The name of the file kept for a file input (empty: none kept).
    pub(super) fn kept_file(&self, field: &str) -> &str {
        self.kept.get(field).map_or("", String::as_str)
    }

    /// The procedure's name.
    pub(super) fn kind_name(&self) -> String {
        self.c.t(&format!("kind-{}", self.kind))
    }

    /// Whether a profile is the one chosen (`person` when none is).
    pub(super) fn profile_selected(&self, p: &str) -> bool {
        let v = self.v("profile");
        v == p || (v.is_empty() && p == "person")
    }

    /// Whether a revocation reason is the one chosen.
    pub(super) fn reason_selected(&self, r: &str) -> bool {
        self.v("reason") == r
    }

    /// Whether a recovery (key device, account unlock, account re-enrolment) is the one
    /// chosen (`token` when none is).
    pub(super) fn recovery_selected(&self, r: &str) -> bool {
        let v = self.v("recovery");
        v == r || (v.is_empty() && r == "token")
    }

    /// What a recover request may recover, with its label.
    pub(super) fn recoveries(&self) -> Vec<(&'static str, String)> {
        RECOVERIES
            .iter()
            .map(|r| (*r, self.c.t(&format!("recovery-{r}"))))
            .collect()
    }

    /// Whether the form has this field.
    pub(super) fn has(&self, name: &str) -> bool {
        let k = self.kind;
        match name {
            "profile" => k == "issue",
            "subscriber" => k == "issue" || k == "modify",
            "csr" => k == "issue" || k == "modify",
            "certificate" => k != "issue",
            "reason" => k == "revoke",
            "recovery" => k == "recover",
            _ => false,
        }
    }

    /// The revocation reasons offered.
    pub(super) fn reasons(&self) -> Vec<(&'static str, String)> {
        REASONS
            .iter()
            .map(|r| (*r, self.c.t(&format!("reason-{r}"))))
            .collect()
    }
}

/// What a recover request recovers from the portal: the subscriber's key device, or their
/// remote-signing account (unlocked, or enrolled again).
pub(super) const RECOVERIES: [&str; 3] = ["token", "unlock", "reenrol"];

/// The revocation reasons an organisation may give (RFC 5280 §5.3.1).
pub(super) const REASONS: [&str; 5] = [
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "unspecified",
];

/// One event of a request's history, in words.
pub(super) struct HistoryRow {
    /// When, local time.
    pub(super) at: String,
    /// Who.
    pub(super) actor: String,
    /// What, in words.
    pub(super) action: String,
    /// The state reached, in words.
    pub(super) to: String,
    /// Why (return, reject).
    pub(super) reason: String,
}

/// One request.
#[derive(Template)]
#[template(path = "portal/request.html")]
pub(super) struct RequestPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// The request as a row.
    pub(super) row: Row,
    /// The request as the desk shows it.
    pub(super) r: crate::ra::desk::RequestView,
    /// Its history.
    pub(super) history: Vec<HistoryRow>,
    /// The actions the caller may take now (codes), offered as a form.
    pub(super) actions: Vec<(&'static str, String)>,
    /// A refusal of the last action, in words.
    pub(super) notice: String,
    /// The serial of the key device provisioned for it (or holding its certificate).
    pub(super) device: Option<String>,
    /// The remote-signing credential it created.
    pub(super) credential: Option<String>,
}

impl RequestPage<'_> {
    /// The issuer of the request's certificate (the issuing CA unless the request named one).
    pub(super) fn issuer(&self) -> &str {
        self.r.issuer.as_deref().unwrap_or(crate::config::ISSUING)
    }

    /// An optional text.
    pub(super) fn o<'b>(&self, v: &'b Option<String>) -> &'b str {
        v.as_deref().unwrap_or("")
    }

    /// What a recover request of a remote-signing account does, in words (empty: not one).
    pub(super) fn recovery(&self) -> String {
        self.r
            .recovery
            .map(|r| self.c.t(&format!("recovery-{r}")))
            .unwrap_or_default()
    }
}

/// One certificate found by the public search.
pub(super) struct Found {
    /// Serial, hex.
    pub(super) serial: String,
    /// The holder (subject CN).
    pub(super) holder: String,
    /// The organisation (subject O).
    pub(super) organisation: String,
    /// Status in words (with date and reason when revoked).
    pub(super) status: String,
    /// The status code (`valid`, `revoked`, `expired`, `hold`).
    pub(super) status_code: &'static str,
    /// Valid from, local time.
    pub(super) not_before: String,
    /// Valid until, local time.
    pub(super) not_after: String,
    /// The issuer's name.
    pub(super) issuer: String,
}

/// The public certificate search.
#[derive(Template)]
#[template(path = "portal/search.html")]
pub(super) struct SearchPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// What was searched for.
    pub(super) q: String,
    /// Whether a search was made.
    pub(super) searched: bool,
    /// The problem with the query, in words.
    pub(super) problem: String,
    /// What was found.
    pub(super) found: Vec<Found>,
    /// The next page's address, when there is one.
    pub(super) next: Option<String>,
    /// The service's public address (`[server] public_url`).
    pub(super) base: String,
}

/// A refusal or failure, as a page.
#[derive(Template)]
#[template(path = "portal/error.html")]
pub(super) struct ErrorPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// The heading.
    pub(super) title: String,
    /// What happened and what to do.
    pub(super) detail: String,
}

/// One bar of a server-drawn SVG bar chart, already laid out.
pub(super) struct Bar {
    /// What it counts.
    pub(super) label: String,
    /// The count.
    pub(super) value: u64,
    /// Its top, in SVG units.
    pub(super) y: u32,
    /// The label's baseline.
    pub(super) text_y: u32,
    /// Its length, in SVG units.
    pub(super) width: u32,
    /// Where the count is written.
    pub(super) value_x: u32,
}

/// A horizontal bar chart, drawn as SVG by the template (no script; the numbers are also in
/// the tables beside it).
#[derive(Default)]
pub(super) struct Chart {
    /// The bars, top to bottom.
    pub(super) bars: Vec<Bar>,
    /// The chart's height, SVG units.
    pub(super) height: u32,
}

/// Where bars start (the labels are left of it), and their longest length.
const BAR_X: u32 = 300;
const BAR_MAX: u32 = 260;
const BAR_STEP: u32 = 26;

impl Chart {
    /// Bars for (label, value) pairs, scaled to the largest value.
    pub(super) fn bars(values: Vec<(String, u64)>) -> Self {
        let max = values.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
        let bars: Vec<Bar> = values
            .into_iter()
            .enumerate()
            .map(|(i, (label, value))| {
                let y = i as u32 * BAR_STEP;
                let width = ((value as f64 / max as f64) * f64::from(BAR_MAX)).round() as u32;
                Bar {
                    label,
                    value,
                    y,
                    text_y: y + 15,
                    width,
                    value_x: BAR_X + width + 6,
                }
            })
            .collect();
        let height = bars.len() as u32 * BAR_STEP;
        Self { bars, height }
    }

    /// The x where bars start.
    pub(super) fn bar_x(&self) -> u32 {
        BAR_X
    }
}

/// One stacked part of a column.
pub(super) struct Segment {
    /// Its top, SVG units.
    pub(super) y: u32,
    /// Its height, SVG units.
    pub(super) height: u32,
    /// Its colour.
    pub(super) fill: &'static str,
    /// What it counts and how many, in words (the SVG `<title>`).
    pub(super) title: String,
}

/// One column of a stacked column chart: a period, its parts stacked from the baseline.
pub(super) struct Column {
    /// Its left edge, SVG units.
    pub(super) x: u32,
    /// Its width, SVG units.
    pub(super) width: u32,
    /// Its parts, bottom first.
    pub(super) segments: Vec<Segment>,
    /// The label written under it (empty where labels would crowd).
    pub(super) label: String,
    /// The label's centre.
    pub(super) label_x: u32,
}

/// One series of a stacked column chart, as its legend shows it.
pub(super) struct Series {
    /// Its colour.
    pub(super) fill: &'static str,
    /// Its name.
    pub(super) name: String,
    /// The legend swatch's left edge.
    pub(super) x: u32,
    /// The legend text's left edge.
    pub(super) text_x: u32,
    /// The legend row's top.
    pub(super) y: u32,
    /// The legend text's baseline.
    pub(super) text_y: u32,
}

/// A stacked column chart (one column per period, one colour per series), drawn as SVG by the
/// template; the numbers are also in the table beside it.
#[derive(Default)]
pub(super) struct Columns {
    /// The columns, left to right.
    pub(super) columns: Vec<Column>,
    /// The series, in stacking order.
    pub(super) legend: Vec<Series>,
    /// The baseline's y.
    pub(super) base: u32,
    /// Where the column labels are written.
    pub(super) label_y: u32,
    /// The largest column's total, written on the axis.
    pub(super) max: u64,
    /// The chart's height, SVG units.
    pub(super) height: u32,
}

/// The chart's width, the plot's left edge, the plot's height, a legend row's height.
const COLS_WIDTH: u32 = 640;
const COLS_LEFT: u32 = 40;
const COLS_PLOT: u32 = 160;
const LEGEND_ROW: u32 = 20;
/// At most this many column labels are written (every n-th column is labelled).
const COLS_LABELS: usize = 12;

impl Columns {
    /// Columns of `(label, values per series)`, `series` naming and colouring the values.
    pub(super) fn stacked(
        series: &[(String, &'static str)],
        periods: Vec<(String, Vec<u64>)>,
    ) -> Self {
        if periods.is_empty() {
            return Self::default();
        }
        // The legend wraps: three series a row.
        let legend: Vec<Series> = series
            .iter()
            .enumerate()
            .map(|(i, (name, fill))| {
                let x = COLS_LEFT + (i as u32 % 3) * 200;
                Series {
                    fill,
                    name: name.clone(),
                    x,
                    text_x: x + 18,
                    y: (i as u32 / 3) * LEGEND_ROW,
                    text_y: (i as u32 / 3) * LEGEND_ROW + 11,
                }
            })
            .collect();
        let top = (series.len() as u32).div_ceil(3) * LEGEND_ROW + 16;
        let base = top + COLS_PLOT;
        let max = periods
            .iter()
            .map(|(_, v)| v.iter().sum::<u64>())
            .max()
            .unwrap_or(0);
        let scale = f64::from(COLS_PLOT) / max.max(1) as f64;
        let step = (COLS_WIDTH - COLS_LEFT) / periods.len() as u32;
        let width = (step * 3 / 4).max(1);
        let every = periods.len().div_ceil(COLS_LABELS);
        let columns = periods
            .into_iter()
            .enumerate()
            .map(|(i, (label, values))| {
                let x = COLS_LEFT + i as u32 * step;
                let mut y = base;
                let mut segments = Vec::new();
                for (v, (name, fill)) in values.iter().zip(series) {
                    if *v == 0 {
                        continue;
                    }
                    let h = ((*v as f64 * scale).round() as u32).max(1);
                    y -= h.min(y);
                    segments.push(Segment {
                        y,
                        height: h,
                        fill,
                        title: format!("{label} · {name}: {v}"),
                    });
                }
                Column {
                    x,
                    width,
                    segments,
                    label: if i % every == 0 { label } else { String::new() },
                    label_x: x + width / 2,
                }
            })
            .collect();
        Self {
            columns,
            legend,
            base,
            label_y: base + 16,
            max,
            height: base + 24,
        }
    }

    /// The left edge of the plot (the axis).
    pub(super) fn left(&self) -> u32 {
        COLS_LEFT
    }

    /// Where the largest total is written on the axis (at the plot's top).
    pub(super) fn max_y(&self) -> u32 {
        self.base.saturating_sub(COLS_PLOT) + 10
    }

    /// The right end of the baseline.
    pub(super) fn right(&self) -> u32 {
        COLS_WIDTH
    }
}

/// The auditor's report page.
#[derive(Template)]
#[template(path = "portal/report.html")]
pub(super) struct ReportPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// First day, YYYY-MM-DD.
    pub(super) from: String,
    /// Last day, YYYY-MM-DD.
    pub(super) to: String,
    /// The subtree's organisation (empty: the caller's whole reach).
    pub(super) organisation: String,
    /// Why the period was refused.
    pub(super) problem: String,
    /// The report.
    pub(super) report: Option<crate::ra::report::Report>,
    /// Requests by kind: submitted and fulfilled.
    pub(super) kinds: Chart,
    /// Deadline breaches per organisation.
    pub(super) breaches: Chart,
    /// Requests filed per week, by kind.
    pub(super) weekly: Columns,
    /// Requests fulfilled per week: on time and late.
    pub(super) punctuality: Columns,
    /// How much of the allowed time the fulfilled requests used.
    pub(super) deadline_use: Chart,
    /// Certificates expiring per month.
    pub(super) expiring: Chart,
}

impl ReportPage<'_> {
    /// The CSV download's address.
    pub(super) fn csv_href(&self) -> String {
        let mut s = format!(
            "/reports?format=csv&from={}&to={}",
            enc(&self.from),
            enc(&self.to)
        );
        if !self.organisation.is_empty() {
            s.push_str(&format!("&organisation={}", enc(&self.organisation)));
        }
        s
    }

    /// A kind's name.
    pub(super) fn kind(&self, k: &str) -> String {
        self.c.t(&format!("kind-{k}"))
    }

    /// The kinds, in the order reports list them (the weekly table's columns).
    pub(super) fn kinds(&self) -> Vec<(&'static str, String)> {
        crate::store::ra::RequestKind::ALL
            .iter()
            .map(|k| (k.as_str(), self.kind(k.as_str())))
            .collect()
    }

    /// A week's count of a kind.
    pub(super) fn filed(&self, w: &crate::ra::report::Week, kind: &str) -> u64 {
        w.submitted.get(kind).copied().unwrap_or(0)
    }

    /// A date `YYYY-MM-DD` as `dd/mm/yyyy`.
    pub(super) fn day(&self, iso: &str) -> String {
        local_day(iso)
    }

    /// A month `YYYY-MM` as `mm/yyyy`.
    pub(super) fn month(&self, iso: &str) -> String {
        local_month(iso)
    }

    /// A deadline-use bucket in words.
    pub(super) fn bucket(&self, code: &str) -> String {
        bucket_words(self.c.lang, code)
    }
}

/// A deadline-use bucket (`up_to_25_percent`, …) in words.
pub(super) fn bucket_words(lang: Lang, code: &str) -> String {
    message(
        lang,
        &format!("report-use-{}", code.replace('_', "-")),
        None,
    )
}

/// A date `YYYY-MM-DD` as `dd/mm/yyyy`; anything else as it is.
pub(super) fn local_day(iso: &str) -> String {
    match (iso.get(..4), iso.get(5..7), iso.get(8..10)) {
        (Some(y), Some(m), Some(d)) if iso.len() == 10 => format!("{d}/{m}/{y}"),
        _ => iso.to_owned(),
    }
}

/// A month `YYYY-MM` as `mm/yyyy`; anything else as it is.
pub(super) fn local_month(iso: &str) -> String {
    match (iso.get(..4), iso.get(5..7)) {
        (Some(y), Some(m)) if iso.len() == 7 => format!("{m}/{y}"),
        _ => iso.to_owned(),
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One subscriber's certificate.
pub(super) struct SubscriberRow {
    /// The request that issued it.
    pub(super) request: i64,
    /// The subscriber's name.
    pub(super) name: String,
    /// The subscriber's official email.
    pub(super) email: String,
    /// The organisation.
    pub(super) organisation: String,
    /// The certificate's serial.
    pub(super) serial: String,
    /// Its status, in words.
    pub(super) status: String,
    /// notAfter, local time.
    pub(super) until: String,
    /// Time to expiry, in words (valid certificates).
    pub(super) left: String,
}

/// The subscribers of the caller's fulfilled requests.
#[derive(Template)]
#[template(path = "portal/subscribers.html")]
pub(super) struct SubscribersPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// The rows.
    pub(super) rows: Vec<SubscriberRow>,
    /// The next page's address (`?after=`), when there is one.
    pub(super) next: Option<String>,
}

/// One key device.
pub(super) struct DeviceRow {
    /// The token's serial number.
    pub(super) serial: String,
    /// The token's model.
    pub(super) model: String,
    /// The organisation.
    pub(super) organisation: String,
    /// The request it was provisioned for.
    pub(super) request: i64,
    /// The serial of the certificate on it.
    pub(super) certificate: String,
    /// Where it is, in words.
    pub(super) state: String,
    /// Who received it.
    pub(super) receiver: String,
    /// When it was handed over, local time.
    pub(super) handed_over: String,
}

/// The key devices the caller reaches.
#[derive(Template)]
#[template(path = "portal/devices.html")]
pub(super) struct DevicesPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// The rows.
    pub(super) rows: Vec<DeviceRow>,
}

/// One key device, in words.
pub(super) struct DeviceView {
    /// The token's serial number.
    pub(super) serial: String,
    /// The token's model.
    pub(super) model: String,
    /// The token's manufacturer.
    pub(super) manufacturer: String,
    /// The token's label.
    pub(super) label: String,
    /// The organisation.
    pub(super) organisation: String,
    /// The request it was provisioned for.
    pub(super) request: i64,
    /// The serial of the certificate on it.
    pub(super) certificate: String,
    /// Where it is, in words.
    pub(super) state: String,
    /// Where it is, as a code (a test hook).
    pub(super) state_code: &'static str,
    /// Who received it.
    pub(super) receiver: String,
    /// When it was handed over, local time.
    pub(super) handed_over: String,
    /// When it was taken back, local time.
    pub(super) returned: String,
    /// When it was provisioned, local time.
    pub(super) provisioned: String,
    /// Whether its SO PIN is held in escrow (never the PIN itself).
    pub(super) so_pin_escrowed: bool,
}

/// One step of a device's history.
pub(super) struct DeviceHistoryRow {
    /// When, local time.
    pub(super) at: String,
    /// Who.
    pub(super) actor: String,
    /// What, in words.
    pub(super) action: String,
    /// What, as a code (a test hook).
    pub(super) action_code: String,
    /// The recorded detail (the receiver, the request, a note; never a PIN).
    pub(super) detail: String,
}

/// One key device and its history.
#[derive(Template)]
#[template(path = "portal/device.html")]
pub(super) struct DevicePage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// The device.
    pub(super) d: DeviceView,
    /// Its history, oldest first.
    pub(super) history: Vec<DeviceHistoryRow>,
}

/// One authorisation or signature of a credential, in words.
pub(super) struct SigningRow {
    /// When, local time.
    pub(super) at: String,
    /// What, in words.
    pub(super) action: String,
    /// The outcome's code (a CSS class and a test hook).
    pub(super) outcome_code: &'static str,
    /// The outcome, in words.
    pub(super) outcome: String,
    /// How many hashes it named.
    pub(super) hashes: usize,
}

/// A remote-signing credential's signing history.
#[derive(Template)]
#[template(path = "portal/signing.html")]
pub(super) struct SigningPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// Whether the reader is the credential's own subscriber (who has no request pages).
    pub(super) own: bool,
    /// The credential and its page of events.
    pub(super) h: crate::csc::history::SigningHistory,
    /// Whether it signs, in words.
    pub(super) state: String,
    /// The events, newest first.
    pub(super) rows: Vec<SigningRow>,
    /// The next (older) page's address.
    pub(super) next: Option<String>,
    /// The hash algorithm it signs.
    pub(super) hash_algorithm: &'static str,
    /// Its signature algorithm.
    pub(super) signature_algorithm: &'static str,
}

/// A signed-in remote-signing subscriber's home page.
#[derive(Template)]
#[template(path = "portal/signer.html")]
pub(super) struct SignerPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// The account's official email.
    pub(super) email: String,
    /// Its organisation's id.
    pub(super) organisation: String,
    /// Its credentials.
    pub(super) rows: Vec<SignerCredentialRow>,
}

/// One of a subscriber's own credentials.
pub(super) struct SignerCredentialRow {
    /// The credential id.
    pub(super) credential: String,
    /// Its certificate's serial (hex).
    pub(super) serial: String,
    /// The certificate's subject DN, as issued.
    pub(super) subject: String,
    /// The certificate's notAfter, local time.
    pub(super) valid_to: String,
    /// The certificate's status, in words.
    pub(super) status: String,
    /// `valid`, `expired`, `suspended`, `revoked` (a style hook).
    pub(super) status_code: &'static str,
    /// Whether the key still signs, in words.
    pub(super) enabled: String,
}

/// One audit record, in words.
pub(super) struct AuditRow {
    /// Its id in the chain.
    pub(super) id: i64,
    /// When, local time.
    pub(super) at: String,
    /// Who.
    pub(super) actor: String,
    /// What (the action's code, as `pkid audit list` shows it).
    pub(super) action: String,
    /// On what.
    pub(super) target: String,
    /// The outcome's code (a CSS class and a test hook).
    pub(super) outcome_code: &'static str,
    /// The outcome, in words.
    pub(super) outcome: String,
    /// Detail.
    pub(super) detail: String,
}

/// The audit log, a page at a time.
#[derive(Template)]
#[template(path = "portal/audit.html")]
pub(super) struct AuditPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// The records, newest first.
    pub(super) rows: Vec<AuditRow>,
    /// The chain's verdict when it was asked for: (intact, in words).
    pub(super) chain: Option<(bool, String)>,
    /// The next page's address.
    pub(super) next: Option<String>,
}

/// The organisations, for a CA admin.
#[derive(Template)]
#[template(path = "portal/organisations.html")]
pub(super) struct OrganisationsPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// The live organisations.
    pub(super) rows: Vec<crate::ra::desk::OrganisationView>,
    /// What was typed into the add form.
    pub(super) form: std::collections::BTreeMap<String, String>,
    /// Problems by field, in words.
    pub(super) errors: std::collections::BTreeMap<String, String>,
    /// What was just done, in words.
    pub(super) notice: String,
}

/// The operators, for a CA admin.
#[derive(Template)]
#[template(path = "portal/operators.html")]
pub(super) struct OperatorsPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// The live operators and their roles in words.
    pub(super) rows: Vec<(crate::ra::desk::OperatorView, String)>,
    /// What was typed into the add form.
    pub(super) form: std::collections::BTreeMap<String, String>,
    /// Problems by field, in words.
    pub(super) errors: std::collections::BTreeMap<String, String>,
}

/// An organisation's enrollment credentials, for its officers and CA admins.
#[derive(Template)]
#[template(path = "portal/credentials.html")]
pub(super) struct CredentialsPage<'a> {
    /// Around the page.
    pub(super) c: &'a Chrome,
    /// The organisation shown (none: a CA admin has not chosen one).
    pub(super) org: Option<String>,
    /// Its credentials (never their secrets).
    pub(super) rows: Vec<crate::ra::desk::CredentialView>,
    /// What was typed into the add form.
    pub(super) form: std::collections::BTreeMap<String, String>,
    /// Problems by field, in words.
    pub(super) errors: std::collections::BTreeMap<String, String>,
    /// The credential just made and its secret, shown this once.
    pub(super) created: Option<(crate::ra::desk::CredentialView, String)>,
}

impl CredentialsPage<'_> {
    /// The value typed.
    pub(super) fn v(&self, k: &str) -> &str {
        typed(&self.form, k)
    }

    /// The problem of a field (empty: none).
    pub(super) fn e(&self, k: &str) -> &str {
        typed(&self.errors, k)
    }

    /// The organisation's id, or empty.
    pub(super) fn org_id(&self) -> &str {
        self.org.as_deref().unwrap_or("")
    }
}

/// The value typed into a field of an admin form.
pub(super) fn typed<'a>(form: &'a std::collections::BTreeMap<String, String>, k: &str) -> &'a str {
    form.get(k).map_or("", String::as_str)
}

impl OrganisationsPage<'_> {
    /// The value typed.
    pub(super) fn v(&self, k: &str) -> &str {
        typed(&self.form, k)
    }

    /// The problem of a field (empty: none).
    pub(super) fn e(&self, k: &str) -> &str {
        typed(&self.errors, k)
    }

    /// The sectors offered.
    pub(super) fn sectors(&self) -> Vec<(&'static str, String)> {
        ["other", "education", "training", "health"]
            .iter()
            .map(|s| (*s, self.c.t(&format!("sector-{s}"))))
            .collect()
    }

    /// A sector in words.
    pub(super) fn sector(&self, s: &str) -> String {
        self.c.t(&format!("sector-{s}"))
    }

    /// An optional text.
    pub(super) fn o<'b>(&self, v: &'b Option<String>) -> &'b str {
        v.as_deref().unwrap_or("")
    }
}

impl OperatorsPage<'_> {
    /// The value typed.
    pub(super) fn v(&self, k: &str) -> &str {
        typed(&self.form, k)
    }

    /// The problem of a field (empty: none).
    pub(super) fn e(&self, k: &str) -> &str {
        typed(&self.errors, k)
    }

    /// The roles offered.
    pub(super) fn roles(&self) -> Vec<(&'static str, String)> {
        ["org-officer", "ra-officer", "auditor", "ca-admin"]
            .iter()
            .map(|r| (*r, self.c.t(&format!("role-{r}"))))
            .collect()
    }

    /// An optional text.
    pub(super) fn o<'b>(&self, v: &'b Option<String>) -> &'b str {
        v.as_deref().unwrap_or("")
    }
}
