//! Cron schedules as admins write them: standard 5-field cron (an optional
//! leading seconds field), an IANA time zone, and what to run.
//!
//! Parsing and evaluation use `croner`, which reads expressions the way
//! crontab(5) and Vixie cron do (day-of-week 0–7 with 0 and 7 = Sunday,
//! day-of-month OR day-of-week, `L`), and handles daylight saving the way
//! our admins expect: a fixed local time fires once on a spring-forward day
//! (shifted past the gap) and once on a fall-back day (first occurrence),
//! while `*` or a step in the hour field keeps firing every real hour.
//! `shared/notes/cron.md` lists the cases; the tests below check them.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
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

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: croner::Cron,
    tz: Tz,
    expr: String,
}

impl CronSchedule {
    /// Parses `expr` (5 fields, or 6 with leading seconds) in zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, String> {
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "`{expr}` has {fields} fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (with leading seconds)"
            ));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| format!("`{expr}` is not a valid cron expression: {e}"))?;
        let tz = Tz::from_str(tz).map_err(|_| format!("`{tz}` is not an IANA time zone (e.g. Europe/Madrid)"))?;
        Ok(Self {
            cron,
            tz,
            expr: expr.to_owned(),
        })
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
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

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }
}

impl ScheduleConfig {
    /// Checks the schedule; on error returns (key within it, reason).
    pub fn validate(&self, known_kinds: &[&str]) -> Result<(), (String, String)> {
        if self.name.is_empty() || self.name.contains(|c: char| c.is_whitespace() || c == '@' || c == '/') {
            return Err(("name".into(), "must be non-empty, without spaces, `@` or `/`".into()));
        }
        CronSchedule::parse(&self.cron, &self.timezone).map_err(|e| {
            let key = if e.contains("time zone") { "timezone" } else { "cron" };
            (key.to_owned(), e)
        })?;
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
            CronSchedule::parse(cron, tz).map_err(|e| (format!("overrides[{i}]"), e))?;
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

    #[test]
    fn upcoming_is_in_the_schedules_zone() {
        let s = CronSchedule::parse("0 8 * * *", "America/Bogota").unwrap();
        let next = s.upcoming(Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap(), 5);
        assert_eq!(next.len(), 5);
        assert_eq!(next[0].to_rfc3339(), "2026-11-21T08:00:00-05:00");
    }
}
