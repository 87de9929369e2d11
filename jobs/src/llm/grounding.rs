//! Grounding: every number an LLM writes must come from the facts it was
//! given. [`ungrounded_numbers`] lists the numbers of a text that do not.
//!
//! The rule, as implemented:
//! - **A number in the text** is a run of digits with `.`/`,` between digits
//!   and no-break spaces before groups of three (`1,234`, `1.234,5`,
//!   `1 234`), read both the English way (`,` groups, `.` decimals) and
//!   the Spanish way (`.` groups, `,` decimals) where the grouping allows;
//!   it is grounded if either reading matches. Its sign is ignored ("fell
//!   12%" for a change of -0.12). A `k`/`K`/`M` suffix or the word `mil`,
//!   `million(s)`, `millón`/`millones` after it scales it.
//! - **Matching allows rounding**: a text number with `d` decimals matches a
//!   fact `v` when it is `|v|` rounded to `d` decimals (`83%` matches 83.33).
//! - **Percentages** (`%`, `percent`, `per cent`, `por ciento`,
//!   `percentage points`, `puntos porcentuales`, `pp`) match a fact as
//!   written (`12.5` for 12.5%) or a ratio (`0.125`).
//! - **Derived numbers**: within one JSON object, the difference and the
//!   percent change between any two sibling numbers (`current`/`previous`)
//!   are facts too; in an array of numbers (a trend), those of consecutive
//!   items. Nothing else is computed (no sums, no averages).
//! - **Numbers inside fact strings count** (`"2026-W48"` gives 2026 and 48,
//!   `"12.5%"` gives 12.5 and 0.125), so a year, a week label (`W48`) or an
//!   ordinal (`3rd`, `3.º`) in the text is grounded only if the facts
//!   contain it; nothing is exempt by its shape.
//! - **Not numbers**: digits glued after letters (identifiers: `B2B`,
//!   `mp3`) except an ISO week label `W48`; Markdown list markers at the start
//!   of a line (`1. `, `2) `). Numbers written in words ("three") are not
//!   checked.

use serde_json::Value;

/// One reading of a number: its value and how far rounding may move it.
#[derive(Debug, Clone, Copy)]
struct Reading {
    value: f64,
    tolerance: f64,
}

impl Reading {
    fn matches(&self, fact: f64) -> bool {
        (fact.abs() - self.value.abs()).abs() <= self.tolerance + 1e-9 * fact.abs().max(1.0)
    }
}

/// A number found in a text, as written there, with its readings.
#[derive(Debug, Clone)]
struct Found {
    text: String,
    readings: Vec<Reading>,
}

/// The numbers of `text` that none of `facts` (numbers, numbers in
/// strings, and the derived values of the module rule) accounts for, as
/// written in the text (with a trailing `%` when there is one), each once,
/// in order. Empty means grounded.
pub fn ungrounded_numbers(text: &str, facts: &Value) -> Vec<String> {
    let mut allowed = Vec::new();
    collect_facts(facts, &mut allowed);
    let mut out: Vec<String> = Vec::new();
    for n in numbers_in(text, true) {
        let grounded = n.readings.iter().any(|r| allowed.iter().any(|&v| r.matches(v)));
        if !grounded && !out.contains(&n.text) {
            out.push(n.text);
        }
    }
    out
}

fn collect_facts(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.push(f);
            }
        }
        Value::String(s) => {
            for n in numbers_in(s, false) {
                out.extend(n.readings.iter().map(|r| r.value));
            }
        }
        Value::Array(items) => {
            let nums: Vec<f64> = items.iter().filter_map(Value::as_f64).collect();
            for w in nums.windows(2) {
                derived(w[1], w[0], out);
            }
            for item in items {
                collect_facts(item, out);
            }
        }
        Value::Object(map) => {
            let nums: Vec<f64> = map.values().filter_map(Value::as_f64).collect();
            for (i, &a) in nums.iter().enumerate() {
                for (j, &b) in nums.iter().enumerate() {
                    if i != j {
                        derived(a, b, out);
                    }
                }
            }
            for item in map.values() {
                collect_facts(item, out);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// The difference and the percent change from `before` to `after`.
fn derived(after: f64, before: f64, out: &mut Vec<f64>) {
    out.push(after - before);
    if before != 0.0 {
        out.push((after - before) / before * 100.0);
    }
}

fn is_group_space(c: char) -> bool {
    matches!(c, '\u{00A0}' | '\u{202F}' | '\u{2009}')
}

fn numbers_in(text: &str, skip_list_markers: bool) -> Vec<Found> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let digit_at = |i: usize| at(i).is_some_and(|c| c.is_ascii_digit());
    let byte = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !digit_at(i) {
            i += 1;
            continue;
        }
        let start = i;
        let prev = i.checked_sub(1).and_then(at);
        let week_label =
            matches!(prev, Some('W' | 'w')) && i.checked_sub(2).and_then(at).is_none_or(|c| !c.is_alphanumeric());
        let glued = prev.is_some_and(char::is_alphabetic) && !week_label;
        let mut body = String::new();
        while i < chars.len() {
            let c = chars[i].1;
            if c.is_ascii_digit() || ((c == '.' || c == ',') && digit_at(i + 1)) {
                body.push(c);
                i += 1;
            } else if is_group_space(c)
                && digit_at(i + 1)
                && digit_at(i + 2)
                && digit_at(i + 3)
                && !digit_at(i + 4)
                && !body.contains(['.', ','])
            {
                i += 1;
            } else {
                break;
            }
        }
        let end = i;
        if glued {
            continue;
        }
        if skip_list_markers && is_list_marker(&chars, start, end) {
            continue;
        }
        let rest = &text[byte(end)..];
        let percent = percent_after(rest);
        let scale = scale_after(rest);
        let mut readings = readings_of(&body);
        if let Some(s) = scale {
            readings.extend(readings_of(&body).into_iter().map(|r| Reading {
                value: r.value * s,
                tolerance: r.tolerance * s,
            }));
        }
        if percent != Percent::No {
            let ratios: Vec<Reading> = readings
                .iter()
                .map(|r| Reading {
                    value: r.value / 100.0,
                    tolerance: r.tolerance / 100.0,
                })
                .collect();
            readings.extend(ratios);
        }
        let mut written = text[byte(start)..byte(end)].to_owned();
        if percent == Percent::Sign {
            written.push('%');
        }
        out.push(Found {
            text: written,
            readings,
        });
    }
    out
}

/// `1. ` / `2) ` at the start of a line.
fn is_list_marker(chars: &[(usize, char)], start: usize, end: usize) -> bool {
    let line_start = chars[..start]
        .iter()
        .rev()
        .take_while(|&&(_, c)| c != '\n')
        .all(|&(_, c)| c == ' ' || c == '\t');
    let marker = chars.get(end).is_some_and(|&(_, c)| c == '.' || c == ')');
    let space = chars.get(end + 1).is_none_or(|&(_, c)| c.is_whitespace());
    line_start && marker && space
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Percent {
    No,
    Sign,
    Word,
}

/// Whether a percent sign or word follows.
fn percent_after(rest: &str) -> Percent {
    let trimmed = rest.trim_start_matches(|c: char| c == ' ' || is_group_space(c));
    if trimmed.starts_with('%') {
        return Percent::Sign;
    }
    let lower = trimmed.to_lowercase();
    for word in [
        "percent",
        "per cent",
        "por ciento",
        "porciento",
        "percentage point",
        "puntos porcentuales",
        "pp",
        "p.p.",
    ] {
        if lower.starts_with(word) && !lower[word.len()..].starts_with(|c: char| c.is_alphanumeric()) {
            return Percent::Word;
        }
    }
    Percent::No
}

/// The factor of a `k`/`M` suffix or a `mil`/`million` word after a number.
fn scale_after(rest: &str) -> Option<f64> {
    let word_end = |s: &str, w: &str| s.starts_with(w) && !s[w.len()..].starts_with(|c: char| c.is_alphanumeric());
    if word_end(rest, "k") || word_end(rest, "K") {
        return Some(1e3);
    }
    if word_end(rest, "M") {
        return Some(1e6);
    }
    let trimmed = rest.trim_start_matches(|c: char| c == ' ' || is_group_space(c));
    let lower = trimmed.to_lowercase();
    if word_end(&lower, "mil") {
        return Some(1e3);
    }
    for w in ["million", "millions", "millón", "millon", "millones"] {
        if word_end(&lower, w) {
            return Some(1e6);
        }
    }
    None
}

/// The English and the Spanish reading of `1,234.5` / `1.234,5`, when the
/// grouping allows each.
fn readings_of(body: &str) -> Vec<Reading> {
    let mut out = Vec::new();
    for (group, decimal) in [(',', '.'), ('.', ',')] {
        if let Some(r) = read_as(body, group, decimal) {
            if !out
                .iter()
                .any(|o: &Reading| o.value == r.value && o.tolerance == r.tolerance)
            {
                out.push(r);
            }
        }
    }
    out
}

fn read_as(body: &str, group: char, decimal: char) -> Option<Reading> {
    let (int, frac) = match body.split_once(decimal) {
        Some((i, f)) if !f.contains([group, decimal]) => (i, Some(f)),
        Some(_) => return None,
        None => (body, None),
    };
    let mut groups = int.split(group);
    let first = groups.next()?;
    if first.is_empty() {
        return None;
    }
    let mut digits = first.to_owned();
    for g in groups {
        if g.len() != 3 || first.len() > 3 {
            return None;
        }
        digits.push_str(g);
    }
    let decimals = frac.map_or(0, str::len);
    let text = match frac {
        Some(f) => format!("{digits}.{f}"),
        None => digits,
    };
    let value: f64 = text.parse().ok()?;
    Some(Reading {
        value,
        tolerance: 0.5 * 10f64.powi(-(decimals as i32)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> Value {
        json!({
            "period": "2026-W48",
            "tenant": "Acme",
            "metrics": {
                "tasks_completed": { "current": 1234, "previous": 1097 },
                "revenue": { "current": 1234.5, "previous": 1500.0 },
                "completion_rate": { "current": 0.8333, "previous": 0.8 },
            },
            "sentiment": { "negative_share": "12.5%" },
            "accounts_at_risk": 3,
            "trend": [100, 120, 150],
        })
    }

    #[test]
    fn an_english_text_from_the_facts_is_grounded() {
        let text = "In 2026-W48 the team completed 1,234 tasks, up 12.5% on the previous week's 1,097 \
                    (137 more). Revenue was $1,234.50, down 17.7%. The completion rate reached 83% (83.3 percent), \
                    3 accounts are at risk, and 12.5% of comments were negative. Usage grew 25% to 150 (1.2k tasks).";
        assert_eq!(ungrounded_numbers(text, &facts()), Vec::<String>::new());
    }

    #[test]
    fn a_spanish_text_from_the_facts_is_grounded() {
        let text = "En la semana 48 de 2026 el equipo completó 1.234 tareas, un 12,5 % más que las 1.097 de la \
                    semana anterior. Los ingresos fueron 1.234,5 €, un 17,7 % menos. La tasa de finalización llegó \
                    al 83,3 por ciento; hay 3 cuentas en riesgo. Casi 1,2 mil tareas.";
        assert_eq!(ungrounded_numbers(text, &facts()), Vec::<String>::new());
    }

    #[test]
    fn invented_numbers_are_listed_once_as_written() {
        let text = "Churn fell to 3.7% and revenue reached 2,000; churn at 3.7% again since 2019 (W47).";
        assert_eq!(ungrounded_numbers(text, &facts()), ["3.7%", "2,000", "2019", "47"]);
        let es = "La tasa subió al 84 % y se cerraron 1.500,5 tickets.";
        assert_eq!(ungrounded_numbers(es, &facts()), ["84%", "1.500,5"]);
    }

    #[test]
    fn rounding_is_allowed_but_not_beyond_the_written_precision() {
        let f = json!({ "rate": 0.8333, "amount": 1234.56 });
        assert!(ungrounded_numbers("83% and 83.33% and 1,235 and 1.234,6", &f).is_empty());
        assert_eq!(ungrounded_numbers("83.4% and 1,234.0", &f), ["83.4%", "1,234.0"]);
    }

    #[test]
    fn list_markers_identifiers_and_week_labels_follow_the_rule() {
        let f = json!({ "period": "2026-W48", "count": 7 });
        let text = "1. Highlights: 7 new B2B clients\n2) Risks\n  3. Next steps in W48 of 2026";
        assert!(
            ungrounded_numbers(text, &f).is_empty(),
            "{:?}",
            ungrounded_numbers(text, &f)
        );
        assert_eq!(ungrounded_numbers("Week W49 brought 7, the 2nd best", &f), ["49", "2"]);
    }

    /// `value` (≥ 0) with `decimals` decimals, grouped by thousands, the
    /// English (`1,234.5`) or Spanish (`1.234,5`) way.
    fn format(value: f64, decimals: usize, spanish: bool) -> String {
        let text = format!("{value:.decimals$}");
        let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
        let (group, point) = if spanish { ('.', ',') } else { (',', '.') };
        let mut out = String::new();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                out.push(group);
            }
            out.push(c);
        }
        if !frac.is_empty() {
            out.push(point);
            out.push_str(frac);
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn every_fact_written_either_way_and_rounded_is_grounded(
            value in 0.0f64..10_000_000.0,
            decimals in 0usize..3,
            spanish: bool,
            percent: bool,
        ) {
            let facts = json!({ "metric": { "value": value } });
            let (shown, suffix) = if percent { (value * 100.0, " %") } else { (value, "") };
            let facts = if percent { json!({ "metric": { "ratio": value } }) } else { facts };
            let text = format!("The metric was {}{suffix} this week.", format(shown, decimals, spanish));
            proptest::prop_assert!(ungrounded_numbers(&text, &facts).is_empty(), "{text} {facts}");
        }

        #[test]
        fn a_number_off_by_more_than_its_rounding_is_flagged(
            value in 1.0f64..1_000_000.0,
            spanish: bool,
        ) {
            let facts = json!({ "value": value });
            // Two decimals written, the fact moved by 0.02: beyond ±0.005.
            let text = format!("Total: {}.", format(value + 0.02, 2, spanish));
            proptest::prop_assert_eq!(ungrounded_numbers(&text, &facts).len(), 1, "{}", text);
        }
    }

    #[test]
    fn no_break_space_groups_are_one_number() {
        let f = json!({ "total": 1234567 });
        assert!(ungrounded_numbers("un total de 1\u{202F}234\u{202F}567 eventos", &f).is_empty());
        assert!(ungrounded_numbers("1.2M events, 1,2 millones", &f).is_empty());
    }
}
