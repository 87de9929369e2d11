//! The guards between a rule firing and a person being contacted. Pure
//! functions over what the store returned, so each is tested on its own:
//!
//! - [`quiet_until`]: quiet hours in the recipient's zone move a nudge to
//!   the next allowed minute (never drop it), correct across DST;
//! - [`channel_order`]: the person's preferred channels first;
//! - [`consent_blocks`]: consent per channel;
//! - [`cap_reason`]: frequency caps per person, per account and per tenant
//!   per UTC day;
//! - [`dedupe_key`]: one nudge per (person, rule, window).
//!
//! The kill switch is [`super::config::NudgesConfig::killed`].

use chrono::{DateTime, Duration as ChronoDuration, LocalResult, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use kairos_core::profile::Person;

use super::config::Cap;

/// `None` when `now` is outside quiet hours `[start, end)` in `tz`;
/// otherwise the first instant (UTC) at or after `end` local time. A
/// window with `start > end` spans midnight. An `end` that falls in a DST
/// gap (the clock jumps over it) becomes the first minute after the jump;
/// one that happens twice (the clock goes back) is the first occurrence.
pub fn quiet_until(now: DateTime<Utc>, tz: Tz, start: NaiveTime, end: NaiveTime) -> Option<DateTime<Utc>> {
    let local = now.with_timezone(&tz);
    let t = local.time();
    let quiet = if start < end {
        t >= start && t < end
    } else {
        t >= start || t < end
    };
    if !quiet {
        return None;
    }
    // Past midnight already (t < end) the window ends today; before it, tomorrow.
    let date = if t < end {
        local.date_naive()
    } else {
        local.date_naive() + ChronoDuration::days(1)
    };
    let mut wanted = date.and_time(end);
    // A gap is at most a few hours (usually one); walk forward by minutes.
    for _ in 0..=24 * 60 {
        match tz.from_local_datetime(&wanted) {
            LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => return Some(first.with_timezone(&Utc)),
            LocalResult::None => wanted += ChronoDuration::minutes(1),
        }
    }
    Some(now + ChronoDuration::days(1))
}

/// The rule's channels with the ones the person prefers first (in the
/// person's order), then the rest in the rule's order. Only the rule's
/// channels are ever used.
pub fn channel_order<'a>(rule: &'a [String], preferred: &[String]) -> Vec<&'a str> {
    let mut out: Vec<&str> = preferred
        .iter()
        .filter_map(|p| rule.iter().find(|c| *c == p).map(String::as_str))
        .collect();
    out.dedup();
    for c in rule {
        if !out.contains(&c.as_str()) {
            out.push(c);
        }
    }
    out
}

/// Why `person` cannot be reached on `channel`, or `None` if they can:
/// every channel needs the person's granted consent for it in their
/// profile (`success_manager` included: the manager reaches out to them).
pub fn consent_blocks(person: &Person, channel: &str) -> Option<String> {
    if person.consents_to(channel) {
        None
    } else if person.consent.contains_key(channel) {
        Some(format!("consent for {channel} withdrawn"))
    } else {
        Some(format!("no consent for {channel}"))
    }
}

/// Sent-nudge counts a cap decision needs, read by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentCounts {
    /// For each person cap (same order): nudges sent to the person in its window.
    pub person: Vec<i64>,
    /// For each account cap: nudges sent to the account in its window.
    pub account: Vec<i64>,
    /// Nudges the tenant sent since the start of the UTC day.
    pub tenant_today: i64,
}

/// The first cap that is full, as the reason recorded; `None`: under every cap.
pub fn cap_reason(
    person_caps: &[Cap],
    account_caps: &[Cap],
    tenant_daily: Option<u32>,
    counts: &SentCounts,
) -> Option<String> {
    let full = |caps: &[Cap], sent: &[i64], who: &str| {
        caps.iter().zip(sent).find_map(|(c, n)| {
            (*n >= i64::from(c.max)).then(|| {
                format!(
                    "{who} cap: {n} sent in the last {} (max {})",
                    short_duration(c.per),
                    c.max
                )
            })
        })
    };
    full(person_caps, &counts.person, "person")
        .or_else(|| full(account_caps, &counts.account, "account"))
        .or_else(|| {
            tenant_daily
                .filter(|max| counts.tenant_today >= i64::from(*max))
                .map(|max| format!("tenant daily cap: {} sent today (UTC, max {max})", counts.tenant_today))
        })
}

/// `3d`, `12h`, `90s`: a cap's window as config writes it.
fn short_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3_600) {
        format!("{}h", s / 3_600)
    } else {
        format!("{s}s")
    }
}

/// Start of the UTC day of `now_ms` (the tenant cap's window).
pub fn utc_day_start(now_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(86_400_000)
}

/// `rule|account|person|window index`: the unique key that makes a second
/// trigger in the same window a no-op. Windows are aligned to the epoch,
/// so every worker computes the same key for the same instant.
pub fn dedupe_key(rule: &str, account_id: &str, person_id: &str, at_ms: i64, window_ms: i64) -> String {
    format!("{rule}|{account_id}|{person_id}|{}", at_ms.div_euclid(window_ms.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hm(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    #[test]
    fn quiet_hours_delay_to_the_local_end_in_each_zone() {
        let (s, e) = (hm("21:00"), hm("08:00"));
        // 22:30 in Madrid (UTC+1 in winter) → 08:00 Madrid next day = 07:00 UTC.
        let madrid: Tz = "Europe/Madrid".parse().unwrap();
        assert_eq!(
            quiet_until(utc("2026-01-14T21:30:00Z"), madrid, s, e),
            Some(utc("2026-01-15T07:00:00Z"))
        );
        // The same instant is 15:30 in Mexico City: allowed.
        let mexico: Tz = "America/Mexico_City".parse().unwrap();
        assert_eq!(quiet_until(utc("2026-01-14T21:30:00Z"), mexico, s, e), None);
        // 03:00 in Madrid, after midnight: ends the same day.
        assert_eq!(
            quiet_until(utc("2026-01-15T02:00:00Z"), madrid, s, e),
            Some(utc("2026-01-15T07:00:00Z"))
        );
        // 08:00 exactly is allowed; 20:59 too.
        assert_eq!(quiet_until(utc("2026-01-15T07:00:00Z"), madrid, s, e), None);
        assert_eq!(quiet_until(utc("2026-01-15T19:59:00Z"), madrid, s, e), None);
    }

    #[test]
    fn quiet_hours_are_right_across_dst() {
        let (s, e) = (hm("21:00"), hm("08:00"));
        let madrid: Tz = "Europe/Madrid".parse().unwrap();
        // Night of 28→29 March 2026: Madrid moves from UTC+1 to UTC+2, so
        // 08:00 local is 06:00 UTC, not 07:00.
        assert_eq!(
            quiet_until(utc("2026-03-28T22:00:00Z"), madrid, s, e),
            Some(utc("2026-03-29T06:00:00Z"))
        );
        // Night of 24→25 October 2026: back to UTC+1, 08:00 local = 07:00 UTC.
        assert_eq!(
            quiet_until(utc("2026-10-24T20:00:00Z"), madrid, s, e),
            Some(utc("2026-10-25T07:00:00Z"))
        );
        // New York springs forward on 8 March 2026 (02:00 → 03:00): a
        // window ending at 02:30 ends at 03:00 EDT = 07:00 UTC.
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            quiet_until(utc("2026-03-08T05:00:00Z"), ny, hm("22:00"), hm("02:30")),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        // And falls back on 1 November 2026: 01:30 happens twice; the first is used.
        assert_eq!(
            quiet_until(utc("2026-11-01T04:00:00Z"), ny, hm("22:00"), hm("01:30")),
            Some(utc("2026-11-01T05:30:00Z"))
        );
        // A daytime window (start < end).
        assert_eq!(
            quiet_until(utc("2026-06-01T12:00:00Z"), chrono_tz::UTC, hm("12:00"), hm("14:00")),
            Some(utc("2026-06-01T14:00:00Z"))
        );
    }

    #[test]
    fn the_persons_preferred_channels_go_first() {
        let rule: Vec<String> = ["email", "in_app", "success_manager"].map(String::from).to_vec();
        let pref: Vec<String> = ["webhook", "in_app"].map(String::from).to_vec();
        assert_eq!(channel_order(&rule, &pref), ["in_app", "email", "success_manager"]);
        assert_eq!(channel_order(&rule, &[]), ["email", "in_app", "success_manager"]);
    }

    #[test]
    fn consent_is_per_channel() {
        let mut p = Person::new("a", "p");
        assert_eq!(consent_blocks(&p, "email").as_deref(), Some("no consent for email"));
        assert_eq!(
            consent_blocks(&p, "success_manager").as_deref(),
            Some("no consent for success_manager")
        );
        p.consent.insert(
            "email".into(),
            kairos_core::profile::Consent {
                granted: true,
                given_at: "2026-01-01T00:00:00Z".into(),
            },
        );
        p.consent.insert(
            "in_app".into(),
            kairos_core::profile::Consent {
                granted: false,
                given_at: "2026-01-01T00:00:00Z".into(),
            },
        );
        assert_eq!(consent_blocks(&p, "email"), None);
        assert_eq!(
            consent_blocks(&p, "in_app").as_deref(),
            Some("consent for in_app withdrawn")
        );
    }

    #[test]
    fn caps_name_the_first_full_one() {
        let day = Duration::from_secs(86_400);
        let person = [Cap { max: 1, per: day * 3 }, Cap { max: 3, per: day * 30 }];
        let account = [Cap { max: 5, per: day * 7 }];
        let counts = |p: [i64; 2], a: i64, t: i64| SentCounts {
            person: p.to_vec(),
            account: vec![a],
            tenant_today: t,
        };
        assert_eq!(cap_reason(&person, &account, Some(10), &counts([0, 2], 4, 9)), None);
        assert_eq!(
            cap_reason(&person, &account, Some(10), &counts([1, 1], 0, 0)).as_deref(),
            Some("person cap: 1 sent in the last 3d (max 1)")
        );
        assert_eq!(
            cap_reason(&person, &account, Some(10), &counts([0, 3], 0, 0)).as_deref(),
            Some("person cap: 3 sent in the last 30d (max 3)")
        );
        assert_eq!(
            cap_reason(&person, &account, Some(10), &counts([0, 0], 5, 0)).as_deref(),
            Some("account cap: 5 sent in the last 7d (max 5)")
        );
        assert_eq!(
            cap_reason(&person, &account, Some(10), &counts([0, 0], 0, 10)).as_deref(),
            Some("tenant daily cap: 10 sent today (UTC, max 10)")
        );
    }

    #[test]
    fn dedupe_keys_share_a_window_and_change_with_the_next() {
        let day = 86_400_000;
        let k = |t| dedupe_key("r", "a", "p", t, day);
        assert_eq!(k(day * 100 + 1), k(day * 101 - 1));
        assert_ne!(k(day * 101 - 1), k(day * 101));
        assert_eq!(utc_day_start(day * 3 + 5), day * 3);
    }
}
