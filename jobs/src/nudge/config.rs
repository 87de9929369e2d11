//! `[nudges]` and `[[nudges.rules]]`: what triggers a nudge, who gets it,
//! on which channels, with which words, and the guards around it.
//!
//! ```toml
//! [nudges]
//! kill_switch = []                                  # tenants (name or id) whose nudges all stop
//! quiet_hours = { start = "21:00", end = "08:00" }  # recipient's local time; delayed, never dropped
//! tenant_daily_cap = 500                            # nudges sent per tenant per UTC day
//! person_caps = [{ max = 1, per = "3d" }, { max = 3, per = "30d" }]
//! account_caps = [{ max = 5, per = "7d" }]
//! delivery_lease = "5m"                             # a claim older than this: its sender died, `unknown`
//!
//! [[nudges.rules]]
//! name = "payment-failed"
//! trigger = { event = "payment.failed", filter = { "reason" = "card_declined" } }
//! # or { sentiment_alert = true } | { churn_level = "HIGH" } | { inactive_days = 14 }
//! audience = { roles = ["admin", "executive"] }     # empty: everyone of the account
//! channels = ["email", "webhook", "in_app", "success_manager"] # in order; consent per channel
//! priority = 10
//! window = "1d"                                     # at most one per (person, rule, window)
//! dry_run = false                                   # record what would be sent, send nothing
//! urgent = false                                    # true: may be sent in quiet hours
//! personalise = false                               # true: the LLM rewrites the template (fallback: template)
//! [nudges.rules.templates.es]
//! subject = "Hola {{person.name}}: hubo un problema con tu pago"
//! body = "El pago de {{account.display_name}} fue rechazado ({{event.data.reason}})."
//! [nudges.rules.templates.en]
//! subject = "Hi {{person.name}}: your payment failed"
//! body = "The payment of {{account.display_name}} was declined ({{event.data.reason}})."
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveTime;
use kairos_core::config::KeyError;
use serde::Deserialize;

/// The channels a nudge can go out on: the profile's channels (consent is
/// given per channel in the person's profile).
pub const CHANNELS: &[&str] = kairos_core::profile::CHANNELS;
/// Email over `[smtp]`.
pub const EMAIL: &str = "email";
/// The tenant's signed webhook (`[webhooks.TENANT]`): how a product routes
/// to WhatsApp, SMS or its own push.
pub const WEBHOOK: &str = "webhook";
/// The in-app feed (`GET /v1/people/{id}/feed`).
pub const IN_APP: &str = "in_app";
/// A task for the account's success manager (`owner`) to reach out.
pub const TASK: &str = "success_manager";

/// The roots a template variable may start with.
pub const TEMPLATE_ROOTS: &[&str] = &["person", "account", "event", "alert", "score", "rule"];

/// `[nudges]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NudgesConfig {
    /// Tenants (name or id) whose nudges are all stopped at once: planned
    /// and delayed ones are skipped with the reason `kill switch`.
    pub kill_switch: Vec<String>,
    /// Hours in the recipient's time zone when nothing non-urgent is sent.
    pub quiet_hours: Option<QuietHours>,
    /// At most this many nudges sent per tenant per UTC day.
    pub tenant_daily_cap: Option<u32>,
    /// Per person: at most `max` sent per `per` (each cap checked).
    pub person_caps: Vec<Cap>,
    /// Per account: at most `max` sent per `per`.
    pub account_caps: Vec<Cap>,
    /// The rules.
    pub rules: Vec<NudgeRule>,
    /// How long a delivery's claim holds (default 5m; longer than the
    /// `nudge` kind's timeout): a nudge found still `sending` after it was
    /// being sent by an attempt that died, and becomes `unknown` — never
    /// sent twice.
    #[serde(with = "humantime_serde")]
    pub delivery_lease: Option<Duration>,
    /// Open and click tracking of emails (absent: off for everyone).
    pub tracking: Option<super::tracking::TrackingConfig>,
}

impl NudgesConfig {
    /// [`NudgesConfig::delivery_lease`] in ms.
    pub fn delivery_lease_ms(&self) -> i64 {
        self.delivery_lease
            .map_or(300_000, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4))
    }
}

/// A frequency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    /// Nudges allowed in the window.
    pub max: u32,
    /// The sliding window (`"3d"`, `"30d"`).
    #[serde(with = "humantime_serde")]
    pub per: Duration,
}

/// Quiet hours, `HH:MM` local time; `start > end` spans midnight.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// First quiet minute, e.g. `21:00`.
    pub start: String,
    /// First allowed minute again, e.g. `08:00`.
    pub end: String,
}

impl QuietHours {
    /// `(start, end)` parsed (validated at load, so `None` only for an unvalidated config).
    pub fn times(&self) -> Option<(NaiveTime, NaiveTime)> {
        Some((parse_hhmm(&self.start)?, parse_hhmm(&self.end)?))
    }
}

fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

/// One `[[nudges.rules]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NudgeRule {
    /// Unique, stable name (history, dedupe keys and stats use it).
    pub name: String,
    /// What fires the rule.
    pub trigger: TriggerConfig,
    /// Who of the account gets it.
    #[serde(default)]
    pub audience: Audience,
    /// Channels in order of preference; the first one the person consents
    /// to and that can deliver is used.
    pub channels: Vec<String>,
    /// `language → template`; `en` or `es`. A person whose language has no
    /// template gets the first one (by language code).
    pub templates: BTreeMap<String, Template>,
    /// Higher first when several are due (recorded; shown in history).
    #[serde(default)]
    pub priority: i64,
    /// Dedupe window: at most one nudge per (person, rule, window).
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// Record what would be sent; send nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// May be sent during quiet hours.
    #[serde(default)]
    pub urgent: bool,
    /// Let the LLM (`[llm]`) rewrite the rendered template for the person;
    /// the template is sent instead when the LLM is down, over quota, or
    /// writes a number that is not in the facts (the reason is recorded).
    #[serde(default)]
    pub personalise: bool,
    /// Track opens (pixel) and clicks of this rule's emails, for tenants
    /// listed in `[nudges.tracking] tenants`; off by default.
    #[serde(default)]
    pub track: bool,
    /// A link appended to the message (`https://…`); tracked as a click
    /// when tracking is on.
    #[serde(default)]
    pub link: Option<String>,
    /// A/B variants, each with its own templates (none: the rule's); a
    /// person's variant is a stable hash of rule and person, recorded.
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// Percent of the audience (0–50) held out: recorded as `holdout`, sent
    /// nothing, the baseline each variant is compared with.
    #[serde(default)]
    pub holdout_percent: u32,
}

/// One A/B variant of a rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Name (unique in the rule), recorded on each nudge.
    pub name: String,
    /// Relative share of the non-holdout audience (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// `language → template`; empty: the rule's templates.
    #[serde(default)]
    pub templates: BTreeMap<String, Template>,
}

fn one() -> u32 {
    1
}

impl NudgeRule {
    /// Whether the rule measures itself (variants or a holdout).
    pub fn is_experiment(&self) -> bool {
        !self.variants.is_empty() || self.holdout_percent > 0
    }

    /// `(name, weight)` of each variant.
    pub fn variant_weights(&self) -> Vec<(&str, u32)> {
        self.variants.iter().map(|v| (v.name.as_str(), v.weight)).collect()
    }

    /// The templates for `variant` (its own, else the rule's).
    pub fn templates_for(&self, variant: Option<&str>) -> &BTreeMap<String, Template> {
        self.variants
            .iter()
            .find(|v| Some(v.name.as_str()) == variant && !v.templates.is_empty())
            .map_or(&self.templates, |v| &v.templates)
    }
}

fn default_window() -> Duration {
    Duration::from_secs(86_400)
}

/// What fires a rule: exactly one of the fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// An event type or pattern (as `[[rules]] on`): evaluated at ingest
    /// through a derived `[[rules]]` entry that runs the `nudge` kind.
    pub event: Option<String>,
    /// Equality filters on the event's `data` (with `event` only).
    #[serde(default)]
    pub filter: BTreeMap<String, serde_json::Value>,
    /// A sentiment `client_dissatisfaction` alert (through
    /// `sentiment.follow_up = ["nudge"]`).
    #[serde(default)]
    pub sentiment_alert: bool,
    /// The account's latest churn risk is at least this level (`HIGH` or
    /// `CRITICAL`); evaluated by a schedule running `nudge` with
    /// `payload = { sweep = true }`.
    pub churn_level: Option<String>,
    /// The account has had no event for this many days; evaluated by the
    /// same schedule.
    pub inactive_days: Option<u32>,
}

/// Which people of the account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audience {
    /// Roles (`executive`, `admin`, `member`); empty: every person.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A message in one language; `{{root.path}}` is replaced by the value
/// at that path (roots: [`TEMPLATE_ROOTS`]; a missing value is empty).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Subject (email, feed title, task title).
    pub subject: String,
    /// Body, plain text.
    pub body: String,
}

/// The kind of trigger a rule has, once validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    /// An event.
    Event,
    /// A sentiment alert.
    SentimentAlert,
    /// Churn level at or above.
    ChurnLevel,
    /// Inactivity.
    Inactivity,
}

impl TriggerConfig {
    /// Which one trigger is set (validated: exactly one).
    pub fn kind(&self) -> Option<TriggerKind> {
        let set = [
            self.event.is_some().then_some(TriggerKind::Event),
            self.sentiment_alert.then_some(TriggerKind::SentimentAlert),
            self.churn_level.is_some().then_some(TriggerKind::ChurnLevel),
            self.inactive_days.is_some().then_some(TriggerKind::Inactivity),
        ];
        let mut it = set.into_iter().flatten();
        match (it.next(), it.next()) {
            (Some(k), None) => Some(k),
            _ => None,
        }
    }
}

/// The derived rule that brings outcome events to the kind.
pub const OUTCOME_RULE: &str = "nudge-outcomes";

/// Outcome event types and the column each sets.
pub const OUTCOMES: &[(&str, &str)] = &[
    ("nudge.opened", "opened_at"),
    ("nudge.clicked", "clicked_at"),
    ("nudge.replied", "replied_at"),
];

/// Churn risk levels in order.
pub const CHURN_LEVELS: &[&str] = &["LOW", "MEDIUM", "HIGH", "CRITICAL"];

impl NudgesConfig {
    /// Checks what serde cannot; the key is under `nudges.`.
    pub fn validate(&self) -> Result<(), KeyError> {
        if let Some(q) = &self.quiet_hours {
            for (key, v) in [("start", &q.start), ("end", &q.end)] {
                if parse_hhmm(v).is_none() {
                    return Err((format!("quiet_hours.{key}"), format!("`{v}` is not a time HH:MM")));
                }
            }
            if q.start == q.end {
                return Err(("quiet_hours.end".into(), "must differ from `start`".into()));
            }
        }
        if let Some(t) = &self.tracking {
            t.validate().map_err(|(k, m)| (format!("tracking.{k}"), m))?;
        }
        if self.delivery_lease.is_some_and(|d| d.is_zero()) {
            return Err(("delivery_lease".into(), "must be longer than 0s".into()));
        }
        if self.tenant_daily_cap == Some(0) {
            return Err((
                "tenant_daily_cap".into(),
                "must be at least 1 (use kill_switch to stop)".into(),
            ));
        }
        for (name, caps) in [("person_caps", &self.person_caps), ("account_caps", &self.account_caps)] {
            for (i, c) in caps.iter().enumerate() {
                if c.max == 0 {
                    return Err((format!("{name}[{i}].max"), "must be at least 1".into()));
                }
                if c.per.is_zero() {
                    return Err((format!("{name}[{i}].per"), "must be longer than 0s".into()));
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            r.validate().map_err(|(k, m)| (format!("rules[{i}].{k}"), m))?;
            if !names.insert(r.name.as_str()) {
                return Err((
                    format!("rules[{i}].name"),
                    format!("`{}` is used by another rule", r.name),
                ));
            }
        }
        Ok(())
    }

    /// The rule named `name`.
    pub fn rule(&self, name: &str) -> Option<&NudgeRule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Whether `tenant` (name or id) has its nudges stopped.
    pub fn killed(&self, tenant: &kairos_core::store::Tenant) -> bool {
        self.kill_switch.iter().any(|t| *t == tenant.name || *t == tenant.id)
    }

    /// The `[[rules]]` entries event triggers need (one per rule, named
    /// `nudge:RULE`, running the `nudge` kind on the event), and with any
    /// rule one more for the outcome events (`nudge.*`, named
    /// `nudge-outcomes`); `src/config.rs` adds them to the configured rules.
    pub fn event_rules(&self) -> Vec<kairos_core::rules::RuleConfig> {
        let outcomes = (!self.rules.is_empty()).then(|| kairos_core::rules::RuleConfig {
            on: "nudge.*".into(),
            run: vec![super::KIND.to_owned()],
            filter: BTreeMap::new(),
            delay: None,
            debounce: None,
            debounce_key: None,
            name: Some(OUTCOME_RULE.into()),
        });
        self.rules
            .iter()
            .filter_map(|r| {
                Some(kairos_core::rules::RuleConfig {
                    on: r.trigger.event.clone()?,
                    run: vec![super::KIND.to_owned()],
                    filter: r.trigger.filter.clone(),
                    delay: None,
                    debounce: None,
                    debounce_key: None,
                    name: Some(format!("nudge:{}", r.name)),
                })
            })
            .chain(outcomes)
            .collect()
    }

    /// Whether any rule fires on sentiment alerts.
    pub fn wants_sentiment_alerts(&self) -> bool {
        self.rules.iter().any(|r| r.trigger.sentiment_alert)
    }
}

impl NudgeRule {
    fn validate(&self) -> Result<(), KeyError> {
        if self.name.trim().is_empty() || self.name.contains('|') {
            return Err(("name".into(), "must be a non-empty name without `|`".into()));
        }
        let Some(kind) = self.trigger.kind() else {
            return Err((
                "trigger".into(),
                "set exactly one of `event`, `sentiment_alert`, `churn_level`, `inactive_days`".into(),
            ));
        };
        match kind {
            TriggerKind::Event => {
                // The same checks as a `[[rules]]` entry.
                let as_rule = kairos_core::rules::RuleConfig {
                    on: self.trigger.event.clone().unwrap_or_default(),
                    run: vec![super::KIND.to_owned()],
                    filter: self.trigger.filter.clone(),
                    delay: None,
                    debounce: None,
                    debounce_key: None,
                    name: None,
                };
                as_rule
                    .validate(&[super::KIND])
                    .map_err(|(k, m)| (format!("trigger.{}", if k == "on" { "event" } else { &k }), m))?;
            }
            _ if !self.trigger.filter.is_empty() => {
                return Err(("trigger.filter".into(), "only applies to `event` triggers".into()));
            }
            TriggerKind::ChurnLevel => {
                let level = self.trigger.churn_level.as_deref().unwrap_or_default();
                if !matches!(level, "HIGH" | "CRITICAL") {
                    return Err((
                        "trigger.churn_level".into(),
                        format!("`{level}` must be HIGH or CRITICAL"),
                    ));
                }
            }
            TriggerKind::Inactivity => {
                if self.trigger.inactive_days == Some(0) {
                    return Err(("trigger.inactive_days".into(), "must be at least 1".into()));
                }
            }
            TriggerKind::SentimentAlert => {}
        }
        for (i, r) in self.audience.roles.iter().enumerate() {
            if !matches!(r.as_str(), "executive" | "admin" | "member") {
                return Err((
                    format!("audience.roles[{i}]"),
                    format!("unknown role `{r}` (executive, admin or member)"),
                ));
            }
        }
        if let Some(link) = &self.link {
            if !url::Url::parse(link).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                return Err(("link".into(), format!("`{link}` is not an http(s) URL")));
            }
        }
        if self.channels.is_empty() {
            return Err(("channels".into(), "must name at least one channel".into()));
        }
        for (i, c) in self.channels.iter().enumerate() {
            if !CHANNELS.contains(&c.as_str()) {
                return Err((
                    format!("channels[{i}]"),
                    format!("unknown channel `{c}` (known: {})", CHANNELS.join(", ")),
                ));
            }
        }
        if self.templates.is_empty() {
            return Err(("templates".into(), "must have a template for `es` or `en`".into()));
        }
        for (lang, t) in &self.templates {
            if !kairos_core::profile::valid_language(lang) {
                return Err((
                    format!("templates.{lang}"),
                    format!("unknown language `{lang}` (es or en)"),
                ));
            }
            for (field, text) in [("subject", &t.subject), ("body", &t.body)] {
                check_template(text).map_err(|m| (format!("templates.{lang}.{field}"), m))?;
            }
        }
        if self.window.is_zero() {
            return Err(("window".into(), "must be longer than 0s".into()));
        }
        if self.holdout_percent > 50 {
            return Err(("holdout_percent".into(), "must be between 0 and 50".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, v) in self.variants.iter().enumerate() {
            if v.name.trim().is_empty() || v.name == "holdout" || !names.insert(v.name.as_str()) {
                return Err((
                    format!("variants[{i}].name"),
                    "must be a unique name other than `holdout`".into(),
                ));
            }
            if v.weight == 0 {
                return Err((format!("variants[{i}].weight"), "must be at least 1".into()));
            }
            for (lang, t) in &v.templates {
                if !kairos_core::profile::valid_language(lang) {
                    return Err((
                        format!("variants[{i}].templates.{lang}"),
                        format!("unknown language `{lang}` (es or en)"),
                    ));
                }
                for (field, text) in [("subject", &t.subject), ("body", &t.body)] {
                    check_template(text).map_err(|m| (format!("variants[{i}].templates.{lang}.{field}"), m))?;
                }
            }
        }
        Ok(())
    }
}

/// Checks that every `{{…}}` is closed and starts with a known root.
fn check_template(text: &str) -> Result<(), String> {
    for var in super::template::variables(text)? {
        let root = var.split('.').next().unwrap_or_default();
        if !TEMPLATE_ROOTS.contains(&root) {
            return Err(format!(
                "`{{{{{var}}}}}`: a variable starts with one of {}",
                TEMPLATE_ROOTS.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NudgesConfig, String> {
        let c: NudgesConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|(k, m)| format!("{k}: {m}"))?;
        Ok(c)
    }

    const RULE: &str = r#"
[[rules]]
name = "pay"
trigger = { event = "payment.failed", filter = { "reason" = "card" } }
channels = ["email", "in_app"]
[rules.templates.en]
subject = "Hi {{person.name}}"
body = "{{account.display_name}}: {{event.data.reason}}"
"#;

    #[test]
    fn a_full_rule_parses_and_derives_its_event_rule() {
        let c = parse(RULE).unwrap();
        assert_eq!(c.rules[0].window, Duration::from_secs(86_400));
        let rules = c.event_rules();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            (rules[1].on.as_str(), rules[1].name.as_deref()),
            ("nudge.*", Some(OUTCOME_RULE))
        );
        assert_eq!(rules[0].on, "payment.failed");
        assert_eq!(rules[0].run, ["nudge"]);
        assert_eq!(rules[0].name.as_deref(), Some("nudge:pay"));
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            (
                RULE.replace("\"email\"", "\"fax\""),
                "rules[0].channels[0]: unknown channel `fax`",
            ),
            (
                RULE.replace("event = \"payment.failed\", ", "inactive_days = 3, event = \"x\", "),
                "rules[0].trigger: set exactly one",
            ),
            (RULE.replace("payment.failed", "pay ment"), "rules[0].trigger.event:"),
            (
                RULE.replace("{{person.name}}", "{{who}}"),
                "rules[0].templates.en.subject:",
            ),
            (
                RULE.replace("{{person.name}}", "{{person.name"),
                "rules[0].templates.en.subject:",
            ),
            (RULE.replace("templates.en", "templates.fr"), "rules[0].templates.fr:"),
            (format!("{RULE}{}", RULE), "rules[1].name: `pay` is used"),
            (
                format!("quiet_hours = {{ start = \"25:00\", end = \"08:00\" }}\n{RULE}"),
                "quiet_hours.start:",
            ),
            (
                format!("person_caps = [{{ max = 0, per = \"1d\" }}]\n{RULE}"),
                "person_caps[0].max:",
            ),
            (
                RULE.replace(
                    "event = \"payment.failed\", filter = { \"reason\" = \"card\" }",
                    "churn_level = \"LOW\"",
                ),
                "rules[0].trigger.churn_level:",
            ),
            (
                RULE.replace("channels =", "holdout_percent = 60\nchannels ="),
                "rules[0].holdout_percent:",
            ),
            (
                RULE.replace(
                    "channels =",
                    "variants = [{ name = \"a\" }, { name = \"a\" }]\nchannels =",
                ),
                "rules[0].variants[1].name:",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.starts_with(want), "{e} (wanted {want})");
        }
    }
}
