//! Cron schedules as admins write them: standard 5-field cron (an optional
//! leading seconds field), an IANA time zone, and what to run.
//!
//! Parsing and evaluation use `croner`, which reads expressions the way
//! crontab(5) and Vixie cron do (day-of-week 0–7 with 0 and 7 = Sunday,
//! day-of-month OR day-of-week, `L`); the `@daily`-style macros are expanded
//! here. Daylight saving is handled the way our admins expect: a fixed local
//! time fires once on a spring-forward day (shifted past the gap) and once
//! on a fall-back day (first occurrence), and every time an hour list or
//! range names is such a fixed time, while `*` or a step in the hour field
//! keeps firing every real hour. `shared/notes/cron.md` lists the cases; the
//! tests below check them, partly against `tests/fixtures/cron_dst.json`
//! (an independent Python reference). An expression no date satisfies is
//! refused.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

/// How a schedule's tick becomes jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FanOut {
    /// One job per tick.
    #[default]
    None,
    /// One job per tenant per tick.
    PerTenant,
    /// Jobs per tenant per tick, each covering a chunk of its accounts.
    PerAccount,
}

/// What to do about ticks missed while no scheduler was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Fire nothing for missed ticks.
    #[default]
    Skip,
    /// Fire one catch-up for all the missed ticks.
    RunOnce,
}

/// One `[[schedules]]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique name, used in CLI, API and logs.
    pub name: String,
    /// `MIN HOUR DOM MON DOW`, or with a leading seconds field.
    pub cron: String,
    /// IANA time zone the expression is read in.
    #[serde(default = "utc")]
    pub timezone: String,
    /// Job kind to run.
    pub job: String,
    /// Payload given to each job (merged with fan-out fields).
    #[serde(default)]
    pub payload: serde_json::Map<String, serde_json::Value>,
    /// `none`, `per_tenant` or `per_account`.
    #[serde(default)]
    pub fan_out: FanOut,
    /// Accounts per job with `per_account`.
    #[serde(default = "default_chunk")]
    pub chunk_size: usize,
    /// Jobs of a tick start within this random delay, so a thousand
    /// tenants' 09:00 reports do not all start in the same second.
    #[serde(default, with = "humantime_serde")]
    pub jitter: Duration,
    /// `skip` or `run_once`.
    #[serde(default)]
    pub misfire: Misfire,
    /// A disabled schedule is listed but never fires.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Per-tenant changes (another time, another zone, off).
    #[serde(default)]
    pub overrides: Vec<ScheduleOverride>,
}

/// A tenant's own version of a schedule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleOverride {
    /// Tenant name.
    pub tenant: String,
    /// Replaces the cron expression.
    pub cron: Option<String>,
    /// Replaces the time zone.
    pub timezone: Option<String>,
    /// Turns the schedule off (or on) for this tenant.
    pub enabled: Option<bool>,
}

fn utc() -> String {
    "UTC".into()
}
fn default_chunk() -> usize {
    500
}
fn yes() -> bool {
    true
}

/// Why a cron expression or its time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not 5 or 6 whitespace-separated fields.
    #[error(
        "`{expr}` has {fields} fields; expected 5 (minute hour day-of-month month day-of-week), 6 (with leading seconds) or a macro ({MACROS})"
    )]
    FieldCount {
        /// The expression as written.
        expr: String,
        /// How many fields it has.
        fields: usize,
    },
    /// A field croner does not accept, or an unknown `@` macro.
    #[error("`{expr}` is not a valid cron expression: {reason}")]
    Invalid {
        /// The expression as written.
        expr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Valid fields that no calendar date satisfies (`0 0 30 2 *`).
    #[error(
        "`{expr}` never fires: no date matches its day-of-month, month and day-of-week fields together (checked over a whole 400-year Gregorian cycle)"
    )]
    NeverFires {
        /// The expression as written.
        expr: String,
    },
    /// Not a zone of the IANA database.
    #[error("`{tz}` is not an IANA time zone (e.g. Europe/Madrid)")]
    UnknownZone {
        /// The zone as written.
        tz: String,
    },
}

impl ScheduleError {
    /// The schedule key at fault: `timezone` for an unknown zone, else `cron`.
    pub fn key(&self) -> &'static str {
        match self {
            Self::UnknownZone { .. } => "timezone",
            _ => "cron",
        }
    }
}

/// The macros Vixie cron accepts, and the 5 fields each stands for.
/// `@reboot` is left out on purpose: it means "when cron starts", which a
/// schedule replicated over many schedulers has no single moment for.
const MACRO_FIELDS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];
const MACROS: &str = "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly";

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: croner::Cron,
    tz: Tz,
    expr: String,
    /// The hour field names hours (no `*`, no step): every time it matches
    /// is a fixed local time, which fires once on daylight-saving days.
    /// Otherwise the schedule fires at every real instant that matches.
    fixed_hours: bool,
}

impl CronSchedule {
    /// Parses `expr` (5 fields, 6 with leading seconds, or a macro such as
    /// `@daily`) in zone `tz`. An expression no date satisfies is refused.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, ScheduleError> {
        let fields = expand_macro(expr)?;
        let parts: Vec<&str> = fields.split_whitespace().collect();
        if !(5..=6).contains(&parts.len()) {
            return Err(ScheduleError::FieldCount {
                expr: expr.to_owned(),
                fields: parts.len(),
            });
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(fields)
            .map_err(|e| ScheduleError::Invalid {
                expr: expr.to_owned(),
                reason: e.to_string(),
            })?;
        // The hour is the fourth field from the end with or without seconds.
        let hour = parts[parts.len() - 4];
        let fixed_hours = !hour.contains(['*', '/', '?']);
        if !fires_ever(&cron) {
            return Err(ScheduleError::NeverFires { expr: expr.to_owned() });
        }
        let tz = Tz::from_str(tz).map_err(|_| ScheduleError::UnknownZone { tz: tz.to_owned() })?;
        Ok(Self {
            cron,
            tz,
            expr: expr.to_owned(),
            fixed_hours,
        })
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.fixed_hours {
            // croner walks real instants for a schedule with `*` or a step
            // in the hour: both passes through a repeated hour match, a
            // skipped hour has nothing to match.
            return self
                .cron
                .find_next_occurrence(&t.with_timezone(&self.tz), false)
                .ok()
                .map(|d| d.with_timezone(&Utc));
        }
        // croner treats a time as fixed only when seconds, minutes and hours
        // each hold one value, so `30 1-3 * * *` would lose its 02:30 on a
        // spring-forward day and run twice on fall-back. Instead the wall
        // clock is walked without a zone and each matching time is placed
        // with `fixed_time_instant`. That placement never goes backwards as
        // the wall clock goes forwards, so the first matching wall time
        // after `t`'s own whose instant is past `t` is the answer; the only
        // ones skipped are repeated times already fired at their first
        // occurrence (when `t` is in the second pass) and gap times already
        // fired at the gap's end.
        let mut wall = t.with_timezone(&self.tz).naive_local();
        loop {
            wall = self.cron.find_next_occurrence(&wall, false).ok()?;
            let at = self.fixed_time_instant(wall)?;
            if at > t {
                return Some(at);
            }
        }
    }

    /// When the fixed local time `wall` fires: its first occurrence if the
    /// clock repeats it, the first real instant after the gap if the clock
    /// skips it.
    fn fixed_time_instant(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        if let Some(at) = self.earliest(wall) {
            return Some(at);
        }
        // Widen until a real time is found (gaps are an hour or so; a day
        // covers any zone's), then halve down to the second: the walls in
        // between are all in the one gap.
        let mut lo = wall;
        let mut step = TimeDelta::minutes(1);
        let mut hi = wall + step;
        while self.earliest(hi).is_none() {
            if step > TimeDelta::days(1) {
                return None;
            }
            lo = hi;
            step = step * 2;
            hi = wall + step;
        }
        while (hi - lo).num_seconds() > 1 {
            let mid = lo + TimeDelta::seconds((hi - lo).num_seconds() / 2);
            if self.earliest(mid).is_some() {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        self.earliest(hi)
    }

    /// The first instant the zone's clock shows `wall`, if it ever does.
    fn earliest(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        self.tz
            .from_local_datetime(&wall)
            .earliest()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The next `n` fire times after `t`, in the schedule's zone.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = t;
        while out.len() < n {
            match self.next_after(cursor) {
                Some(next) => {
                    out.push(next.with_timezone(&self.tz));
                    cursor = next;
                }
                None => break,
            }
        }
        out
    }

    /// The time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The expression as written (a macro stays a macro).
    pub fn expr(&self) -> &str {
        &self.expr
    }
}

/// `expr` with a macro replaced by its 5 fields.
fn expand_macro(expr: &str) -> Result<&str, ScheduleError> {
    let trimmed = expr.trim();
    if !trimmed.starts_with('@') {
        return Ok(expr);
    }
    MACRO_FIELDS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(trimmed))
        .map(|(_, fields)| *fields)
        .ok_or_else(|| ScheduleError::Invalid {
            expr: expr.to_owned(),
            reason: if trimmed.eq_ignore_ascii_case("@reboot") {
                "@reboot (run when cron starts) has no meaning for replicated schedulers".to_owned()
            } else {
                format!("unknown macro; known: {MACROS}")
            },
        })
}

/// Whether any date satisfies the day-of-month, month and day-of-week
/// fields together (the time-of-day fields always hold a value once parsed).
///
/// The Gregorian calendar repeats every 400 years: 146,097 days, exactly
/// 20,871 weeks, so dates, weekdays, leap days and the `L`, `W` and `#`
/// forms line up the same way in every 400-year span. A pattern that
/// matches any date matches one within 400 years of any start; 8 years
/// would cover Feb 29 but not e.g. the fifth Monday of February (`1#5`),
/// which can be 40 years apart. The search runs on the wall clock (no zone),
/// where a fixed local time never disappears.
fn fires_ever(cron: &croner::Cron) -> bool {
    let start = NaiveDateTime::default(); // 1970-01-01T00:00:00
    cron.find_next_occurrence(&start, true)
        .is_ok_and(|at| at.year() < start.year() + 400)
}

impl ScheduleConfig {
    /// Checks the schedule; on error returns (key within it, reason).
    pub fn validate(&self, known_kinds: &[&str]) -> Result<(), (String, String)> {
        if self.name.is_empty() || self.name.contains(|c: char| c.is_whitespace() || c == '@' || c == '/') {
            return Err(("name".into(), "must be non-empty, without spaces, `@` or `/`".into()));
        }
        CronSchedule::parse(&self.cron, &self.timezone).map_err(|e| (e.key().to_owned(), e.to_string()))?;
        if !known_kinds.contains(&self.job.as_str()) {
            return Err((
                "job".into(),
                format!("unknown job kind `{}` (known: {})", self.job, known_kinds.join(", ")),
            ));
        }
        if self.chunk_size == 0 {
            return Err(("chunk_size".into(), "must be at least 1".into()));
        }
        if self.fan_out == FanOut::None && !self.overrides.is_empty() {
            return Err((
                "overrides".into(),
                "per-tenant overrides need fan_out = \"per_tenant\" or \"per_account\"".into(),
            ));
        }
        for (i, o) in self.overrides.iter().enumerate() {
            if o.tenant.is_empty() {
                return Err((format!("overrides[{i}].tenant"), "must name a tenant".into()));
            }
            let cron = o.cron.as_deref().unwrap_or(&self.cron);
            let tz = o.timezone.as_deref().unwrap_or(&self.timezone);
            CronSchedule::parse(cron, tz).map_err(|e| (format!("overrides[{i}].{}", e.key()), e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Fire times (UTC, RFC 3339) strictly after `from` and before `to`.
    fn fires(expr: &str, tz: &str, from: &str, to: &str) -> Vec<String> {
        let s = CronSchedule::parse(expr, tz).unwrap();
        let (mut t, end) = (utc(from), utc(to));
        let mut out = Vec::new();
        while let Some(next) = s.next_after(t) {
            if next >= end {
                break;
            }
            out.push(next.to_rfc3339());
            t = next;
        }
        out
    }

    #[test]
    fn five_fields_standard_weekdays_and_or_semantics() {
        // 1-5 is Monday to Friday; 0 and 7 are Sunday.
        let s = CronSchedule::parse("0 9 * * 1-5", "UTC").unwrap();
        let next = s.next_after(utc("2026-11-21T00:00:00Z")).unwrap(); // a Saturday
        assert_eq!(next, utc("2026-11-23T09:00:00Z"));
        let sun0 = CronSchedule::parse("0 9 * * 0", "UTC").unwrap();
        let sun7 = CronSchedule::parse("0 9 * * 7", "UTC").unwrap();
        assert_eq!(
            sun0.next_after(utc("2026-11-21T00:00:00Z")),
            Some(utc("2026-11-22T09:00:00Z"))
        );
        assert_eq!(
            sun7.next_after(utc("2026-11-21T00:00:00Z")),
            Some(utc("2026-11-22T09:00:00Z"))
        );
        // Day-of-month OR day-of-week: the 1st-7th and every Monday.
        let got = fires("0 9 1-7 * MON", "UTC", "2026-12-01T00:00:00Z", "2026-12-20T00:00:00Z");
        // Dec 1-7, plus Monday the 14th (Monday the 7th is already in 1-7).
        assert_eq!(got.len(), 8, "{got:?}");
        assert_eq!(got[7], "2026-12-14T09:00:00+00:00");
        // L = last day of the month.
        let l = CronSchedule::parse("0 0 L * *", "UTC").unwrap();
        assert_eq!(
            l.next_after(utc("2026-02-10T00:00:00Z")),
            Some(utc("2026-02-28T00:00:00Z"))
        );
        // Optional seconds.
        let every5 = CronSchedule::parse("*/5 * * * * *", "UTC").unwrap();
        assert_eq!(
            every5.next_after(utc("2026-01-01T00:00:01Z")),
            Some(utc("2026-01-01T00:00:05Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_rejected() {
        assert!(CronSchedule::parse("0 9 * *", "UTC").is_err());
        assert!(CronSchedule::parse("0 9 * * * * 2026", "UTC").is_err());
        assert!(CronSchedule::parse("61 9 * * *", "UTC").is_err());
        assert!(CronSchedule::parse("0 9 * * *", "Europe/Madird")
            .unwrap_err()
            .to_string()
            .contains("IANA"));
    }

    #[test]
    fn weekly_report_in_madrid_time() {
        let s = CronSchedule::parse("0 9 * * MON", "Europe/Madrid").unwrap();
        // Winter: 09:00 CET = 08:00 UTC.
        assert_eq!(
            s.next_after(utc("2026-11-21T00:00:00Z")),
            Some(utc("2026-11-23T08:00:00Z"))
        );
        // Summer: 09:00 CEST = 07:00 UTC.
        assert_eq!(
            s.next_after(utc("2026-06-01T08:00:00Z")),
            Some(utc("2026-06-08T07:00:00Z"))
        );
    }

    /// (expr, zone, window start, window end, expected fire times in UTC)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static [&'static str],
    );

    const DST: &[Case] = &[
        // Madrid spring forward 2026-03-29 02:00 → 03:00: 02:30 runs once at 03:00 local (01:00Z).
        (
            "30 2 * * *",
            "Europe/Madrid",
            "2026-03-28T12:00:00Z",
            "2026-03-30T12:00:00Z",
            &["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"],
        ),
        // Madrid fall back 2026-10-25 03:00 → 02:00: 02:30 happens twice, runs once (first).
        (
            "30 2 * * *",
            "Europe/Madrid",
            "2026-10-24T12:00:00Z",
            "2026-10-26T12:00:00Z",
            &["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"],
        ),
        // New York spring forward 2026-03-08 02:00 → 03:00.
        (
            "30 2 * * *",
            "America/New_York",
            "2026-03-07T12:00:00Z",
            "2026-03-09T12:00:00Z",
            &["2026-03-08T07:00:00+00:00", "2026-03-09T06:30:00+00:00"],
        ),
        // New York fall back 2026-11-01 02:00 → 01:00: 01:30 happens twice, runs once.
        (
            "30 1 * * *",
            "America/New_York",
            "2026-10-31T12:00:00Z",
            "2026-11-02T12:00:00Z",
            &["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"],
        ),
        // Hourly keeps firing every real hour through the fall-back repeat (NY).
        (
            "0 * * * *",
            "America/New_York",
            "2026-11-01T04:30:00Z",
            "2026-11-01T07:30:00Z",
            &[
                "2026-11-01T05:00:00+00:00",
                "2026-11-01T06:00:00+00:00",
                "2026-11-01T07:00:00+00:00",
            ],
        ),
        // Lord Howe: 30-minute shift, spring forward 2026-10-04 02:00 → 02:30 local (+10:30 → +11);
        // 02:15 falls in the gap and runs at 02:30 (+11) = 15:30Z.
        (
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-03T00:00:00Z",
            "2026-10-04T12:00:00Z",
            &["2026-10-03T15:30:00+00:00"],
        ),
        // Santiago: DST starts at midnight 2026-09-06 (00:00 → 01:00); 00:30 shifts to 01:00.
        (
            "30 0 * * *",
            "America/Santiago",
            "2026-09-05T12:00:00Z",
            "2026-09-07T12:00:00Z",
            &["2026-09-06T04:00:00+00:00", "2026-09-07T03:30:00+00:00"],
        ),
    ];

    #[test]
    fn daylight_saving_transitions_fire_fixed_times_once() {
        for (expr, tz, from, to, want) in DST {
            let got = fires(expr, tz, from, to);
            assert_eq!(&got, want, "{expr} in {tz}");
        }
    }

    /// The DST cases of `tests/fixtures/cron_dst.json`, computed by
    /// `tests/fixtures/cron_dst.py` with Python's zoneinfo from the rule the
    /// README states, sharing no code with this module: hour lists, ranges
    /// and single hours fire each time once (02:30 in a gap at the gap's end,
    /// a repeated time at its first occurrence); `*` or a step in the hour
    /// fires every real matching instant.
    #[test]
    fn daylight_saving_matches_the_independent_reference() {
        #[derive(Deserialize)]
        struct Case {
            cron: String,
            timezone: String,
            after: String,
            before: String,
            fires: Vec<String>,
        }
        let cases: Vec<Case> = serde_json::from_str(include_str!("../tests/fixtures/cron_dst.json")).unwrap();
        assert!(cases.len() >= 40, "{} cases", cases.len());
        for c in &cases {
            let got = fires(&c.cron, &c.timezone, &c.after, &c.before);
            assert_eq!(got, c.fires, "`{}` in {} after {}", c.cron, c.timezone, c.after);
        }
    }

    #[test]
    fn hour_lists_fire_each_listed_time_once_on_dst_days() {
        // Madrid, 2026-03-29 02:00 CET → 03:00 CEST: 01:30 CET, 02:30 shifted to
        // 03:00 CEST (01:00Z), 03:30 CEST.
        assert_eq!(
            fires(
                "30 1-3 * * *",
                "Europe/Madrid",
                "2026-03-28T23:00:00Z",
                "2026-03-29T12:00:00Z"
            ),
            [
                "2026-03-29T00:30:00+00:00",
                "2026-03-29T01:00:00+00:00",
                "2026-03-29T01:30:00+00:00"
            ]
        );
        // Madrid, 2026-10-25 03:00 CEST → 02:00 CET: 02:30 only in CEST (00:30Z),
        // not again at 02:30 CET (01:30Z).
        assert_eq!(
            fires(
                "30 1-3 * * *",
                "Europe/Madrid",
                "2026-10-24T23:00:00Z",
                "2026-10-25T12:00:00Z"
            ),
            [
                "2026-10-24T23:30:00+00:00",
                "2026-10-25T00:30:00+00:00",
                "2026-10-25T02:30:00+00:00"
            ]
        );
        // Two listed times in the gap land on its end and fire once there.
        assert_eq!(
            fires(
                "0,30 2 * * *",
                "America/New_York",
                "2026-03-08T05:00:00Z",
                "2026-03-08T12:00:00Z"
            ),
            ["2026-03-08T07:00:00+00:00"]
        );
        // A step keeps firing every real hour: both 01:00s of the New York fall-back.
        assert_eq!(
            fires(
                "0 */1 * * *",
                "America/New_York",
                "2026-11-01T04:30:00Z",
                "2026-11-01T07:30:00Z"
            ),
            [
                "2026-11-01T05:00:00+00:00",
                "2026-11-01T06:00:00+00:00",
                "2026-11-01T07:00:00+00:00"
            ]
        );
    }

    #[test]
    fn next_after_a_second_pass_time_skips_the_repeated_hour() {
        // From inside the second 01:xx of New York's fall-back (06:10Z = 01:10 EST),
        // `*/20 1-2` next fires at 02:00 EST: 01:20 and 01:40 already fired in EDT.
        let s = CronSchedule::parse("*/20 1-2 * * *", "America/New_York").unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-01T06:10:00Z")),
            Some(utc("2026-11-01T07:00:00Z"))
        );
        // From the shifted 02:30 (03:00 CEST), the next is 03:30 CEST, not 03:00 again.
        let s = CronSchedule::parse("0,30 2-3 * * *", "Europe/Madrid").unwrap();
        assert_eq!(
            s.next_after(utc("2026-03-29T01:00:00Z")),
            Some(utc("2026-03-29T01:30:00Z"))
        );
    }

    #[test]
    fn schedules_that_never_fire_are_refused() {
        for expr in ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *", "0 0 0 30 2 *"] {
            let err = CronSchedule::parse(expr, "UTC").unwrap_err();
            assert!(matches!(err, ScheduleError::NeverFires { .. }), "{expr}: {err}");
            assert_eq!(err.key(), "cron");
            assert!(err.to_string().contains("never fires"), "{err}");
        }
        // Rare is not never: Feb 29 every 4 (at most 8) years, and with
        // day-of-month OR day-of-week, Feb 30 or any Monday in February.
        let leap = CronSchedule::parse("0 0 29 2 *", "UTC").unwrap();
        assert_eq!(
            leap.next_after(utc("2096-03-01T00:00:00Z")),
            Some(utc("2104-02-29T00:00:00Z"))
        );
        assert!(CronSchedule::parse("0 0 30 2 MON", "UTC").is_ok());
        // The fifth Monday of February (a leap February starting on Monday):
        // 2072, then not until 2112, past any 8-year horizon.
        let fifth = CronSchedule::parse("0 0 * 2 1#5", "UTC").unwrap();
        assert_eq!(
            fifth.next_after(utc("2073-01-01T00:00:00Z")),
            Some(utc("2112-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn macros_read_like_vixie_cron() {
        let from = utc("2026-11-21T10:20:00Z"); // a Saturday
        for (name, fields) in [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
            ("@Daily", "0 0 * * *"),
        ] {
            let m = CronSchedule::parse(name, "Europe/Madrid").unwrap();
            let f = CronSchedule::parse(fields, "Europe/Madrid").unwrap();
            assert_eq!(m.upcoming(from, 3), f.upcoming(from, 3), "{name}");
            assert_eq!(m.expr(), name);
        }
        let weekly = CronSchedule::parse("@weekly", "UTC").unwrap();
        assert_eq!(weekly.next_after(from), Some(utc("2026-11-22T00:00:00Z")));
        // @daily is a fixed local time: Santiago's midnight gap (2026-09-06
        // 00:00 → 01:00) shifts it to 01:00 -03 once.
        let daily = CronSchedule::parse("@daily", "America/Santiago").unwrap();
        assert_eq!(
            daily.next_after(utc("2026-09-05T12:00:00Z")),
            Some(utc("2026-09-06T04:00:00Z"))
        );
        for bad in ["@reboot", "@often", "@daily 5"] {
            let err = CronSchedule::parse(bad, "UTC").unwrap_err();
            assert!(matches!(err, ScheduleError::Invalid { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn upcoming_is_in_the_schedules_zone() {
        let s = CronSchedule::parse("0 8 * * *", "America/Bogota").unwrap();
        let next = s.upcoming(Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap(), 5);
        assert_eq!(next.len(), 5);
        assert_eq!(next[0].to_rfc3339(), "2026-11-21T08:00:00-05:00");
    }
}
