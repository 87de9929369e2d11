//! Report periods in a recipient's time zone: ISO weeks (`2026-W48`,
//! Monday 00:00 to the next Monday 00:00 local time) or calendar months
//! (`2026-11`). Bounds are real instants (epoch ms), so a week that
//! crosses a daylight-saving change is 167 or 169 hours long, as the
//! recipient lived it.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::config::PeriodKind;

/// UTC, for callers that only check a label.
pub const UTC: Tz = chrono_tz::UTC;

/// One period in one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    /// Weekly or monthly.
    pub kind: PeriodKind,
    /// `2026-W48` or `2026-11`.
    pub label: String,
    /// The local date it starts on.
    pub first_day: NaiveDate,
    /// Start, epoch ms (inclusive).
    pub start_ms: i64,
    /// End, epoch ms (exclusive).
    pub end_ms: i64,
    /// The zone, IANA name.
    pub time_zone: String,
}

/// Local midnight (or the first instant of the day where midnight is
/// skipped by a daylight-saving change) as epoch ms.
fn local_start(tz: Tz, day: NaiveDate, hour: u32) -> i64 {
    let t = NaiveTime::from_hms_opt(hour.min(23), 0, 0).unwrap_or(NaiveTime::MIN);
    let mut naive = NaiveDateTime::new(day, t);
    // A skipped local time (spring forward) moves to the end of the gap,
    // at most a few hours later.
    for _ in 0..6 {
        if let Some(dt) = tz.from_local_datetime(&naive).earliest() {
            return dt.timestamp_millis();
        }
        naive += Duration::hours(1);
    }
    Utc.from_utc_datetime(&NaiveDateTime::new(day, t)).timestamp_millis()
}

fn first_day(kind: PeriodKind, day: NaiveDate) -> NaiveDate {
    match kind {
        PeriodKind::Weekly => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        PeriodKind::Monthly => day.with_day(1).unwrap_or(day),
    }
}

fn next_first_day(kind: PeriodKind, first: NaiveDate) -> NaiveDate {
    match kind {
        PeriodKind::Weekly => first + Duration::days(7),
        PeriodKind::Monthly => first
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(first + Duration::days(31)),
    }
}

fn prev_first_day(kind: PeriodKind, first: NaiveDate) -> NaiveDate {
    match kind {
        PeriodKind::Weekly => first - Duration::days(7),
        PeriodKind::Monthly => first
            .checked_sub_months(chrono::Months::new(1))
            .unwrap_or(first - Duration::days(28)),
    }
}

impl Period {
    fn starting(kind: PeriodKind, first: NaiveDate, tz: Tz) -> Self {
        let label = match kind {
            PeriodKind::Weekly => {
                let w = first.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            PeriodKind::Monthly => format!("{}-{:02}", first.year(), first.month()),
        };
        Self {
            kind,
            label,
            first_day: first,
            start_ms: local_start(tz, first, 0),
            end_ms: local_start(tz, next_first_day(kind, first), 0),
            time_zone: tz.name().to_owned(),
        }
    }

    fn tz(&self) -> Tz {
        self.time_zone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// The period containing the instant `at_ms` in `tz`.
    pub fn containing(kind: PeriodKind, at_ms: i64, tz: Tz) -> Self {
        let local = DateTime::<Utc>::from_timestamp_millis(at_ms)
            .unwrap_or_default()
            .with_timezone(&tz)
            .date_naive();
        Self::starting(kind, first_day(kind, local), tz)
    }

    /// The last complete period before `at_ms` in `tz` (what a report
    /// sent at `at_ms` covers).
    pub fn previous_complete(kind: PeriodKind, at_ms: i64, tz: Tz) -> Self {
        Self::containing(kind, at_ms, tz).previous()
    }

    /// The period before this one.
    pub fn previous(&self) -> Self {
        Self::starting(self.kind, prev_first_day(self.kind, self.first_day), self.tz())
    }

    /// This period and the `n - 1` before it, oldest first.
    pub fn trend(&self, n: usize) -> Vec<Self> {
        let mut out = vec![self.clone()];
        for _ in 1..n {
            let p = out.last().map(Self::previous).unwrap_or_else(|| self.clone());
            out.push(p);
        }
        out.reverse();
        out
    }

    /// Parses `2026-W48` (weekly) or `2026-11` (monthly) in `tz`.
    pub fn parse(label: &str, tz: Tz) -> Result<Self, String> {
        let bad = || format!("`{label}` is not a period: use an ISO week (2026-W48) or a month (2026-11)");
        if let Some((y, w)) = label.split_once("-W") {
            let y: i32 = y.parse().map_err(|_| bad())?;
            let w: u32 = w.parse().map_err(|_| bad())?;
            let monday = NaiveDate::from_isoywd_opt(y, w, chrono::Weekday::Mon).ok_or_else(bad)?;
            return Ok(Self::starting(PeriodKind::Weekly, monday, tz));
        }
        let (y, m) = label.split_once('-').ok_or_else(bad)?;
        let y: i32 = y.parse().map_err(|_| bad())?;
        let m: u32 = m.parse().map_err(|_| bad())?;
        let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
        Ok(Self::starting(PeriodKind::Monthly, first, tz))
    }

    /// RFC 3339 local date of the first and the last day, for people.
    pub fn days(&self) -> (String, String) {
        let last = next_first_day(self.kind, self.first_day) - Duration::days(1);
        (self.first_day.to_string(), last.to_string())
    }
}

/// Whether the report of the previous period is due at `now_ms` in `tz`:
/// the current period's send time (its first day at `send_hour` local) has
/// passed, by less than `catch_up_ms`. Returns that previous period.
pub fn due(kind: PeriodKind, send_hour: u32, catch_up_ms: i64, now_ms: i64, tz: Tz) -> Option<Period> {
    let current = Period::containing(kind, now_ms, tz);
    let send_at = local_start(tz, current.first_day, send_hour);
    (now_ms >= send_at && now_ms < send_at + catch_up_ms).then(|| current.previous())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn the_previous_iso_week_in_the_recipients_zone() {
        // Monday 2026-11-30 09:00 in Madrid is 08:00 UTC.
        let madrid: Tz = "Europe/Madrid".parse().unwrap();
        let p = Period::previous_complete(PeriodKind::Weekly, ms("2026-11-30T08:00:00Z"), madrid);
        assert_eq!(p.label, "2026-W48");
        assert_eq!(p.start_ms, ms("2026-11-23T00:00:00+01:00"));
        assert_eq!(p.end_ms, ms("2026-11-30T00:00:00+01:00"));
        // At the same instant it is still Sunday evening in Bogotá: the week
        // before is W47 there.
        let bogota: Tz = "America/Bogota".parse().unwrap();
        assert_eq!(
            Period::previous_complete(PeriodKind::Weekly, ms("2026-11-30T03:00:00Z"), bogota).label,
            "2026-W47"
        );
        assert_eq!(Period::parse("2026-W48", madrid).unwrap(), p);
        assert_eq!(p.trend(8).len(), 8);
        assert_eq!(p.trend(8)[0].label, "2026-W41");
        assert_eq!(p.previous().label, "2026-W47");
    }

    #[test]
    fn a_week_across_the_autumn_change_is_169_hours() {
        let madrid: Tz = "Europe/Madrid".parse().unwrap();
        let p = Period::parse("2026-W43", madrid).unwrap(); // 19-26 Oct; clocks go back on the 25th
        assert_eq!(p.end_ms - p.start_ms, 169 * 3600 * 1000);
    }

    #[test]
    fn months_and_bad_labels() {
        let p = Period::parse("2026-02", chrono_tz::UTC).unwrap();
        assert_eq!(p.days(), ("2026-02-01".into(), "2026-02-28".into()));
        assert_eq!(p.previous().label, "2026-01");
        assert!(Period::parse("2026-W54", chrono_tz::UTC).is_err());
        assert!(Period::parse("last week", chrono_tz::UTC).is_err());
    }

    #[test]
    fn due_from_monday_send_hour_for_the_catch_up_window() {
        let madrid: Tz = "Europe/Madrid".parse().unwrap();
        let day = 24 * 3600 * 1000;
        assert!(due(PeriodKind::Weekly, 9, day, ms("2026-11-30T07:00:00Z"), madrid).is_none());
        assert_eq!(
            due(PeriodKind::Weekly, 9, day, ms("2026-11-30T08:00:00Z"), madrid)
                .unwrap()
                .label,
            "2026-W48"
        );
        assert!(due(PeriodKind::Weekly, 9, day, ms("2026-11-30T20:00:00Z"), madrid).is_some());
        assert!(due(PeriodKind::Weekly, 9, day, ms("2026-12-01T08:00:00Z"), madrid).is_none());
        // India is UTC+5:30: the 03:30 UTC tick is 09:00 local.
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        assert!(due(PeriodKind::Weekly, 9, 3600 * 1000, ms("2026-11-30T03:00:00Z"), kolkata).is_none());
        assert!(due(PeriodKind::Weekly, 9, 3600 * 1000, ms("2026-11-30T04:00:00Z"), kolkata).is_some());
    }
}
