//! `[reports]`: the period, when reports go out, the metrics each tenant's
//! reports show (declared, not hard-coded: each product speaks its own
//! event vocabulary), branding and delivery per tenant.
//!
//! Metrics are checked while the file is read (serde `try_from`), so a
//! mistake is reported by `toml` with the file, the line and the key, like
//! an unknown key; the message names the metric (`reports.metrics[2]`) and
//! its field.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kairos_core::config::KeyError;
use serde::{Deserialize, Serialize};

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

/// A `[[reports.metrics]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    name: String,
    count: Option<String>,
    sum: Option<String>,
    mean: Option<String>,
    over: Option<String>,
    ratio: Option<Vec<String>>,
    label: Option<String>,
    label_es: Option<String>,
    #[serde(default)]
    format: Format,
    #[serde(default = "yes")]
    higher_is_better: bool,
}

fn yes() -> bool {
    true
}

/// The declared metrics, in the order written (the order reports show).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "Vec<RawMetric>")]
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

impl TryFrom<Vec<RawMetric>> for Metrics {
    type Error = String;

    fn try_from(raw: Vec<RawMetric>) -> Result<Self, String> {
        let mut out: Vec<MetricDef> = Vec::with_capacity(raw.len());
        for (i, m) in raw.iter().enumerate() {
            let at = |key: &str, reason: String| format!("reports.metrics[{i}].{key} (metric `{}`): {reason}", m.name);
            if !valid_name(&m.name) {
                return Err(at("name", "must be 1-64 letters, digits or `_`".into()));
            }
            if out.iter().any(|o| o.name == m.name) {
                return Err(at("name", "declared twice".into()));
            }
            let given: Vec<&str> = [
                ("count", m.count.is_some()),
                ("sum", m.sum.is_some()),
                ("mean", m.mean.is_some()),
                ("ratio", m.ratio.is_some()),
            ]
            .iter()
            .filter(|(_, set)| *set)
            .map(|(k, _)| *k)
            .collect();
            if given.len() != 1 {
                return Err(at(
                    "count",
                    format!(
                        "give exactly one of count, sum, mean or ratio (found {})",
                        if given.is_empty() {
                            "none".to_string()
                        } else {
                            given.join(", ")
                        }
                    ),
                ));
            }
            let event = |key: &str, e: &str| -> Result<String, String> {
                if valid_event_type(e) {
                    Ok(e.to_owned())
                } else {
                    Err(at(key, format!("`{e}` is not an event type (e.g. task.completed)")))
                }
            };
            let field = |key: &str, f: &str| -> Result<String, String> {
                match f.strip_prefix("data.") {
                    Some(name) if valid_name(name) => Ok(name.to_owned()),
                    _ => Err(at(
                        key,
                        format!("`{f}` must name a field of the event data: `data.<field>`"),
                    )),
                }
            };
            let over = |kind: &str| -> Result<String, String> {
                match &m.over {
                    Some(e) => event("over", e),
                    None => Err(at("over", format!("`{kind}` needs `over = \"<event type>\"`"))),
                }
            };
            let op = if let Some(e) = &m.count {
                if m.over.is_some() {
                    return Err(at(
                        "over",
                        "a count names its event type in `count`; remove `over`".into(),
                    ));
                }
                Op::Count {
                    event: event("count", e)?,
                }
            } else if let Some(f) = &m.sum {
                Op::Sum {
                    field: field("sum", f)?,
                    event: over("sum")?,
                }
            } else if let Some(f) = &m.mean {
                Op::Mean {
                    field: field("mean", f)?,
                    event: over("mean")?,
                }
            } else {
                let r = m.ratio.as_deref().unwrap_or_default();
                if m.over.is_some() {
                    return Err(at("over", "a ratio divides two metrics; remove `over`".into()));
                }
                let [num, den] = r else {
                    return Err(at(
                        "ratio",
                        "must name two metrics: [\"numerator\", \"denominator\"]".into(),
                    ));
                };
                for (j, n) in [num, den].iter().enumerate() {
                    match out.iter().find(|o| &o.name == *n) {
                        None => {
                            return Err(at(
                                &format!("ratio[{j}]"),
                                format!("unknown metric `{n}` (declare it before this one)"),
                            ))
                        }
                        Some(o) if matches!(o.op, Op::Ratio { .. }) => {
                            return Err(at(
                                &format!("ratio[{j}]"),
                                format!("`{n}` is a ratio itself; divide counts, sums or means"),
                            ))
                        }
                        Some(_) => {}
                    }
                }
                Op::Ratio {
                    numerator: num.clone(),
                    denominator: den.clone(),
                }
            };
            let label_en = m.label.clone().unwrap_or_else(|| m.name.replace('_', " "));
            out.push(MetricDef {
                name: m.name.clone(),
                label_es: m.label_es.clone().unwrap_or_else(|| label_en.clone()),
                label_en,
                op,
                format: m.format,
                higher_is_better: m.higher_is_better,
            });
        }
        Ok(Metrics(out))
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
            e.contains("line 2") && e.contains("reports.metrics[1].ratio[1]") && e.contains("`b`"),
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
    fn semantic_checks_name_their_key() {
        let c = parse("[reports]\nsend_hour = 24\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "send_hour");
        let c = parse("[reports.tenants.acme]\nprimary_color = \"blue\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "tenants.acme.primary_color");
        let c = parse("[reports.tenants.acme]\nteam = [\"ops@x.example\", \"nope\"]\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "tenants.acme.team[1]");
    }
}
