//! `[reports]`: the period, when reports go out, the metrics each tenant's
//! reports show (declared, not hard-coded: each product speaks its own
//! event vocabulary), branding and delivery per tenant.
//!
//! Metrics are checked while the file is read, each value as its key is
//! read, so a mistake is reported by `toml` with the file, the line of the
//! faulty key (of the faulty table's header for what only the whole table
//! shows, e.g. a missing `over`) and the key, like an unknown key; the
//! message names the metric (`reports.metrics[2]`) and its field.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::time::Duration;

use kairos_core::config::KeyError;
use serde::{de, Deserialize, Serialize};

/// How long a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    /// An ISO week, Monday to Monday in the recipient's zone (`2026-W48`).
    #[default]
    Weekly,
    /// A calendar month in the recipient's zone (`2026-11`).
    Monthly,
}

/// Where a report is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// To the account's executives (the tenant's `team` for the portfolio
    /// report), in each person's language.
    Email,
    /// The tenant's signed webhook (`[webhooks.TENANT]`).
    Webhook,
}

impl Channel {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

/// How a metric's value is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A plain number (at most one decimal).
    #[default]
    Number,
    /// A ratio shown as a percentage.
    Percent,
}

/// What a metric computes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    /// Events of a type in the period.
    Count {
        /// Event type.
        event: String,
    },
    /// Sum of a numeric `data` field over events of a type.
    Sum {
        /// Field name inside `data`.
        field: String,
        /// Event type.
        event: String,
    },
    /// Mean of a numeric `data` field over events of a type (events
    /// without the field are left out).
    Mean {
        /// Field name inside `data`.
        field: String,
        /// Event type.
        event: String,
    },
    /// One metric divided by another (undefined when the divisor is 0).
    Ratio {
        /// Numerator metric.
        numerator: String,
        /// Denominator metric.
        denominator: String,
    },
}

/// One declared metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDef {
    /// Name (`tasks_completed`), unique.
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Label in English.
    pub label_en: String,
    /// Label in Spanish.
    pub label_es: String,
    /// How it is shown.
    pub format: Format,
    /// Whether a rise is good news (false for bugs, response times).
    pub higher_is_better: bool,
}

impl MetricDef {
    /// The label in `language` (`es` or anything else = English).
    pub fn label(&self, language: &str) -> &str {
        if language == "es" {
            &self.label_es
        } else {
            &self.label_en
        }
    }
}

/// The declared metrics, in the order written (the order reports show).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics(pub Vec<MetricDef>);

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_event_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'))
}

// Metrics are checked while they are read, one table at a time and each
// value as its key is read: `toml` gives an error raised inside a value's
// deserializer that value's line, and one raised by a table's visitor the
// table's header line. (A `try_from` over the whole list would point every
// mistake at the first `[[reports.metrics]]`.)
impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> de::Visitor<'de> for List {
            type Value = Metrics;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of [[reports.metrics]] tables")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Metrics, A::Error> {
                let mut out: Vec<MetricDef> = Vec::new();
                while let Some(m) = seq.next_element_seed(MetricSeed { earlier: &out })? {
                    out.push(m);
                }
                Ok(Metrics(out))
            }
        }
        d.deserialize_seq(List)
    }
}

/// A value checked as it is read (so the error carries its key's line).
struct Check<T, F>(F, PhantomData<T>);

impl<T, F> Check<T, F> {
    fn new(f: F) -> Self {
        Self(f, PhantomData)
    }
}

impl<'de, T: Deserialize<'de>, U, F: FnOnce(T) -> Result<U, String>> de::DeserializeSeed<'de> for Check<T, F> {
    type Value = U;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<U, D::Error> {
        (self.0)(T::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// The keys of a `[[reports.metrics]]` table (an unknown one is refused at
/// its line).
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum MetricKey {
    Name,
    Count,
    Sum,
    Mean,
    Over,
    Ratio,
    Label,
    LabelEs,
    Format,
    HigherIsBetter,
}

/// One `[[reports.metrics]]` table, read with the metrics declared before
/// it (names are unique; a ratio divides earlier metrics).
struct MetricSeed<'a> {
    earlier: &'a [MetricDef],
}

impl<'de> de::DeserializeSeed<'de> for MetricSeed<'_> {
    type Value = MetricDef;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<MetricDef, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> de::Visitor<'de> for MetricSeed<'_> {
    type Value = MetricDef;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a [[reports.metrics]] table")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<MetricDef, A::Error> {
        let i = self.earlier.len();
        let earlier = self.earlier;
        let at = |name: &Option<String>, key: &str, reason: String| match name {
            Some(n) => format!("reports.metrics[{i}].{key} (metric `{n}`): {reason}"),
            None => format!("reports.metrics[{i}].{key}: {reason}"),
        };
        let event = |name: &Option<String>, key: &str, e: String| {
            if valid_event_type(&e) {
                Ok(e)
            } else {
                Err(at(
                    name,
                    key,
                    format!("`{e}` is not an event type (e.g. task.completed)"),
                ))
            }
        };
        let field = |name: &Option<String>, key: &str, f: String| match f.strip_prefix("data.") {
            Some(n) if valid_name(n) => Ok(n.to_owned()),
            _ => Err(at(
                name,
                key,
                format!("`{f}` must name a field of the event data: `data.<field>`"),
            )),
        };
        let mut name: Option<String> = None;
        let (mut count, mut sum, mut mean, mut over, mut ratio) = (None, None, None, None, None);
        let (mut label, mut label_es): (Option<String>, Option<String>) = (None, None);
        let (mut format, mut higher_is_better) = (Format::default(), true);
        while let Some(key) = map.next_key::<MetricKey>()? {
            match key {
                MetricKey::Name => {
                    name = Some(map.next_value_seed(Check::new(|n: String| {
                        let named = Some(n.clone());
                        if !valid_name(&n) {
                            Err(at(&named, "name", "must be 1-64 letters, digits or `_`".into()))
                        } else if earlier.iter().any(|o| o.name == n) {
                            Err(at(&named, "name", "declared twice".into()))
                        } else {
                            Ok(n)
                        }
                    }))?)
                }
                MetricKey::Count => count = Some(map.next_value_seed(Check::new(|e| event(&name, "count", e)))?),
                MetricKey::Over => over = Some(map.next_value_seed(Check::new(|e| event(&name, "over", e)))?),
                MetricKey::Sum => sum = Some(map.next_value_seed(Check::new(|f| field(&name, "sum", f)))?),
                MetricKey::Mean => mean = Some(map.next_value_seed(Check::new(|f| field(&name, "mean", f)))?),
                MetricKey::Ratio => {
                    ratio = Some(map.next_value_seed(Check::new(|r: Vec<String>| {
                        let [num, den] = &r[..] else {
                            return Err(at(
                                &name,
                                "ratio",
                                "must name two metrics: [\"numerator\", \"denominator\"]".into(),
                            ));
                        };
                        for (j, n) in [num, den].iter().enumerate() {
                            match earlier.iter().find(|o| &o.name == *n) {
                                None => {
                                    return Err(at(
                                        &name,
                                        &format!("ratio[{j}]"),
                                        format!("unknown metric `{n}` (declare it before this one)"),
                                    ))
                                }
                                Some(o) if matches!(o.op, Op::Ratio { .. }) => {
                                    return Err(at(
                                        &name,
                                        &format!("ratio[{j}]"),
                                        format!("`{n}` is a ratio itself; divide counts, sums or means"),
                                    ))
                                }
                                Some(_) => {}
                            }
                        }
                        Ok((num.clone(), den.clone()))
                    }))?)
                }
                MetricKey::Label => label = Some(map.next_value()?),
                MetricKey::LabelEs => label_es = Some(map.next_value()?),
                MetricKey::Format => format = map.next_value()?,
                MetricKey::HigherIsBetter => higher_is_better = map.next_value()?,
            }
        }
        // What only the whole table shows: reported at its header's line.
        let Some(metric) = name.clone() else {
            return Err(de::Error::custom(at(
                &None,
                "name",
                "missing: every metric needs a `name`".into(),
            )));
        };
        let given: Vec<&str> = [
            ("count", count.is_some()),
            ("sum", sum.is_some()),
            ("mean", mean.is_some()),
            ("ratio", ratio.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| *k)
        .collect();
        if given.len() != 1 {
            return Err(de::Error::custom(at(
                &name,
                "count",
                format!(
                    "give exactly one of count, sum, mean or ratio (found {})",
                    if given.is_empty() {
                        "none".to_string()
                    } else {
                        given.join(", ")
                    }
                ),
            )));
        }
        let needs_over = |kind: &str| {
            over.clone().ok_or_else(|| {
                <A::Error as de::Error>::custom(at(&name, "over", format!("`{kind}` needs `over = \"<event type>\"`")))
            })
        };
        let op = if let Some(event) = count {
            if over.is_some() {
                return Err(de::Error::custom(at(
                    &name,
                    "over",
                    "a count names its event type in `count`; remove `over`".into(),
                )));
            }
            Op::Count { event }
        } else if let Some(field) = sum {
            Op::Sum {
                field,
                event: needs_over("sum")?,
            }
        } else if let Some(field) = mean {
            Op::Mean {
                field,
                event: needs_over("mean")?,
            }
        } else {
            if over.is_some() {
                return Err(de::Error::custom(at(
                    &name,
                    "over",
                    "a ratio divides two metrics; remove `over`".into(),
                )));
            }
            let (numerator, denominator) = ratio.unwrap_or_default();
            Op::Ratio { numerator, denominator }
        };
        let label_en = label.unwrap_or_else(|| metric.replace('_', " "));
        Ok(MetricDef {
            name: metric,
            label_es: label_es.unwrap_or_else(|| label_en.clone()),
            label_en,
            op,
            format,
            higher_is_better,
        })
    }
}

/// A tenant's own settings (`[reports.tenants.NAME]`, by name or id).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantReports {
    /// Reports off for this tenant.
    pub enabled: bool,
    /// Name shown as the sender and in the header.
    pub sender_name: Option<String>,
    /// Logo shown in the header (an `https://` URL the mail client loads).
    pub logo_url: Option<String>,
    /// Header colour (`#rrggbb`).
    pub primary_color: Option<String>,
    /// Accent colour of charts and highlights (`#rrggbb`).
    pub accent_color: Option<String>,
    /// Attach a PDF (headless Chromium) to each email.
    pub pdf: bool,
    /// Where reports go; replaces `reports.channels`.
    pub channels: Option<Vec<Channel>>,
    /// Who receives the tenant's portfolio report by email.
    pub team: Vec<String>,
}

impl Default for TenantReports {
    fn default() -> Self {
        Self {
            enabled: true,
            sender_name: None,
            logo_url: None,
            primary_color: None,
            accent_color: None,
            pdf: false,
            channels: None,
            team: Vec::new(),
        }
    }
}

/// The branding a report is rendered with (tenant's, else the defaults).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Branding {
    /// Sender and header name.
    pub sender_name: String,
    /// Logo URL.
    pub logo_url: Option<String>,
    /// Header colour.
    pub primary_color: String,
    /// Accent colour.
    pub accent_color: String,
}

/// `[reports]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// `weekly` (default) or `monthly`.
    pub period: PeriodKind,
    /// Local hour (0-23) on Monday (weekly) or the 1st (monthly) from which
    /// a period's reports are due in each account's zone.
    pub send_hour: u32,
    /// How long after that local time a tick still starts a missing report
    /// (a scheduler down for the hour catches up; a report never starts days late).
    #[serde(with = "humantime_serde")]
    pub catch_up: Duration,
    /// Metrics every report shows, in this order.
    pub metrics: Metrics,
    /// The most negative comments listed.
    pub top_comments: usize,
    /// The accounts at risk listed (portfolio report).
    pub top_accounts: usize,
    /// Where reports go unless a tenant says otherwise (empty: stored only).
    pub channels: Vec<Channel>,
    /// Default sender / header name.
    pub sender_name: String,
    /// Default logo URL.
    pub logo_url: Option<String>,
    /// Default header colour.
    pub primary_color: String,
    /// Default accent colour.
    pub accent_color: String,
    /// Headless Chromium, for PDFs.
    pub chromium: String,
    /// How long a delivery claim is held before another attempt may judge
    /// it crashed (longer than any send takes).
    #[serde(with = "humantime_serde")]
    pub delivery_lease: Duration,
    /// Per tenant, by name or id.
    pub tenants: BTreeMap<String, TenantReports>,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            period: PeriodKind::Weekly,
            send_hour: 9,
            catch_up: Duration::from_secs(24 * 3600),
            metrics: Metrics::default(),
            top_comments: 5,
            top_accounts: 5,
            channels: Vec::new(),
            sender_name: "Kairos".into(),
            logo_url: None,
            primary_color: "#1f3a5f".into(),
            accent_color: "#e07a1f".into(),
            chromium: "/usr/bin/chromium".into(),
            delivery_lease: Duration::from_secs(300),
            tenants: BTreeMap::new(),
        }
    }
}

fn valid_color(c: &str) -> bool {
    c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|ch| ch.is_ascii_hexdigit())
}

fn check_logo(key: String, url: &str) -> Result<(), KeyError> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => Ok(()),
        _ => Err((key, format!("`{url}` is not an http(s) URL"))),
    }
}

impl ReportsConfig {
    /// What serde cannot check; the key is under `reports.`.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.send_hour > 23 {
            return Err(("send_hour".into(), "must be an hour, 0-23".into()));
        }
        if self.catch_up < Duration::from_secs(3600) {
            return Err((
                "catch_up".into(),
                "must be at least 1h (the schedule ticks hourly)".into(),
            ));
        }
        if self.top_comments > 50 || self.top_accounts > 50 {
            return Err((
                "top_comments".into(),
                "top_comments and top_accounts are at most 50".into(),
            ));
        }
        for (key, c) in [
            ("primary_color", &self.primary_color),
            ("accent_color", &self.accent_color),
        ] {
            if !valid_color(c) {
                return Err((key.into(), format!("`{c}` is not a #rrggbb colour")));
            }
        }
        if let Some(l) = &self.logo_url {
            check_logo("logo_url".into(), l)?;
        }
        if self.chromium.trim().is_empty() {
            return Err(("chromium".into(), "must name the Chromium binary".into()));
        }
        if self.delivery_lease < Duration::from_secs(10) {
            return Err(("delivery_lease".into(), "must be at least 10s".into()));
        }
        for (t, r) in &self.tenants {
            for (key, c) in [("primary_color", &r.primary_color), ("accent_color", &r.accent_color)] {
                if let Some(c) = c {
                    if !valid_color(c) {
                        return Err((format!("tenants.{t}.{key}"), format!("`{c}` is not a #rrggbb colour")));
                    }
                }
            }
            if let Some(l) = &r.logo_url {
                check_logo(format!("tenants.{t}.logo_url"), l)?;
            }
            for (i, e) in r.team.iter().enumerate() {
                if !kairos_core::profile::valid_email(e) {
                    return Err((
                        format!("tenants.{t}.team[{i}]"),
                        format!("`{e}` is not an email address"),
                    ));
                }
            }
            let dup: BTreeSet<_> = r.channels.iter().flatten().collect();
            if dup.len() != r.channels.as_ref().map_or(0, Vec::len) {
                return Err((format!("tenants.{t}.channels"), "a channel is listed twice".into()));
            }
        }
        Ok(())
    }

    /// A tenant's settings (by name, then id); the defaults when it has none.
    pub fn tenant(&self, name: &str, id: &str) -> TenantReports {
        self.tenants
            .get(name)
            .or_else(|| self.tenants.get(id))
            .cloned()
            .unwrap_or_default()
    }

    /// The branding for a tenant.
    pub fn branding(&self, t: &TenantReports) -> Branding {
        Branding {
            sender_name: t.sender_name.clone().unwrap_or_else(|| self.sender_name.clone()),
            logo_url: t.logo_url.clone().or_else(|| self.logo_url.clone()),
            primary_color: t.primary_color.clone().unwrap_or_else(|| self.primary_color.clone()),
            accent_color: t.accent_color.clone().unwrap_or_else(|| self.accent_color.clone()),
        }
    }

    /// The channels for a tenant.
    pub fn channels(&self, t: &TenantReports) -> Vec<Channel> {
        t.channels.clone().unwrap_or_else(|| self.channels.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        reports: ReportsConfig,
    }

    fn parse(t: &str) -> Result<ReportsConfig, String> {
        toml::from_str::<File>(t).map(|f| f.reports).map_err(|e| e.to_string())
    }

    #[test]
    fn metrics_of_every_kind_parse_in_order() {
        let c = parse(
            "[reports]\n[[reports.metrics]]\nname = \"done\"\ncount = \"task.completed\"\n\
             [[reports.metrics]]\nname = \"created\"\ncount = \"task.created\"\n\
             [[reports.metrics]]\nname = \"rate\"\nratio = [\"done\", \"created\"]\nformat = \"percent\"\n\
             [[reports.metrics]]\nname = \"resp\"\nmean = \"data.minutes\"\nover = \"ticket.replied\"\nhigher_is_better = false\n",
        )
        .unwrap();
        let names: Vec<_> = c.metrics.0.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["done", "created", "rate", "resp"]);
        assert_eq!(
            c.metrics.0[3].op,
            Op::Mean {
                field: "minutes".into(),
                event: "ticket.replied".into()
            }
        );
    }

    #[test]
    fn metric_mistakes_name_line_and_key() {
        let e = parse("[reports]\n[[reports.metrics]]\nname = \"a\"\ncount = \"x\"\n[[reports.metrics]]\nname = \"r\"\nratio = [\"a\", \"b\"]\n").unwrap_err();
        assert!(
            e.contains("line 7") && e.contains("reports.metrics[1].ratio[1]") && e.contains("`b`"),
            "{e}"
        );
        let e = parse("[reports]\n[[reports.metrics]]\nname = \"s\"\nsum = \"amount\"\nover = \"p\"\n").unwrap_err();
        assert!(
            e.contains("reports.metrics[0].sum") && e.contains("data.<field>"),
            "{e}"
        );
        let e = parse("[reports]\n[[reports.metrics]]\nname = \"s\"\nsum = \"data.amount\"\n").unwrap_err();
        assert!(e.contains("reports.metrics[0].over"), "{e}");
        let e = parse("[reports]\n[[reports.metrics]]\nname = \"s\"\ncount = \"a\"\nmean = \"data.x\"\n").unwrap_err();
        assert!(e.contains("exactly one") && e.contains("count, mean"), "{e}");
        let e = parse("[reports]\n[[reports.metrics]]\nname = \"s\"\ncount = \"a\"\ncolour = 1\n").unwrap_err();
        assert!(e.contains("line 5") && e.contains("colour"), "{e}");
    }

    #[test]
    fn a_mistake_in_a_later_metric_points_at_its_own_line() {
        let ok = "[reports]\n\n[[reports.metrics]]\nname = \"done\"\ncount = \"task.completed\"\n\n\
                  [[reports.metrics]]\nname = \"created\"\ncount = \"task.created\"\n";
        // Lines 1-9 are fine; the third table starts at line 10.
        let e = parse(&format!(
            "{ok}[[reports.metrics]]\nname = \"rev\"\nsum = \"amount\"\nover = \"paid\"\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("line 12") && e.contains("reports.metrics[2].sum (metric `rev`)"),
            "{e}"
        );
        let e = parse(&format!("{ok}[[reports.metrics]]\nname = \"done\"\ncount = \"x\"\n")).unwrap_err();
        assert!(
            e.contains("line 11") && e.contains("reports.metrics[2].name") && e.contains("twice"),
            "{e}"
        );
        let e = parse(&format!(
            "{ok}[[reports.metrics]]\nname = \"r\"\nlabel = \"R\"\nratio = [\"done\", \"nope\"]\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("line 13") && e.contains("reports.metrics[2].ratio[1]"),
            "{e}"
        );
        let e = parse(&format!(
            "{ok}[[reports.metrics]]\nname = \"m\"\ncount = \"bad type!\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("line 12") && e.contains("reports.metrics[2].count"), "{e}");
        // What only the whole table shows: that table's header line.
        let e = parse(&format!("{ok}[[reports.metrics]]\nname = \"m\"\nmean = \"data.x\"\n")).unwrap_err();
        assert!(e.contains("line 10") && e.contains("reports.metrics[2].over"), "{e}");
        let e = parse(&format!("{ok}[[reports.metrics]]\ncount = \"x\"\n")).unwrap_err();
        assert!(e.contains("line 10") && e.contains("reports.metrics[2].name"), "{e}");
        let e = parse(&format!(
            "{ok}[[reports.metrics]]\nname = \"m\"\ncount = \"x\"\nlable = \"M\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("line 13") && e.contains("lable"), "{e}");
        // Read from a table (the path of environment overrides), too.
        let table: toml::Table = toml::from_str(&format!(
            "{ok}[[reports.metrics]]\nname = \"r\"\nratio = [\"done\", \"created\"]\n"
        ))
        .unwrap();
        let f = File::deserialize(table).unwrap();
        assert_eq!(f.reports.metrics.0.len(), 3);
    }

    #[test]
    fn semantic_checks_name_their_key() {
        let c = parse("[reports]\nsend_hour = 24\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "send_hour");
        let c = parse("[reports.tenants.acme]\nprimary_color = \"blue\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "tenants.acme.primary_color");
        let c = parse("[reports.tenants.acme]\nteam = [\"ops@x.example\", \"nope\"]\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "tenants.acme.team[1]");
    }
}
