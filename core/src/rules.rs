//! Event rules: which job kinds an incoming event triggers.
//!
//! Rules are evaluated at ingest, inside the API, so the `202` response can
//! name the jobs an event triggered and those jobs are stored in the same
//! transaction as the event (nothing half-written).

use std::collections::BTreeMap;

use std::time::Duration;

use serde::Deserialize;

use crate::event::Event;

/// One `[[rules]]` table: `on` an event type, `run` these job kinds, when
/// every `filter` entry matches the event's `data`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// An event type (`comment.created`), a prefix pattern (`payment.*`), or
    /// `*` for every event.
    pub on: String,
    /// Job kinds to run, each once per matching event.
    pub run: Vec<String>,
    /// Equality filters on `data` fields, by dotted path:
    /// `filter = { "plan" = "pro", "ticket.priority" = "high" }`.
    #[serde(default)]
    pub filter: BTreeMap<String, serde_json::Value>,
    /// Run the jobs this long after the event arrives (e.g. `"10m"`).
    #[serde(default, with = "humantime_serde")]
    pub delay: Option<Duration>,
    /// At most one job of this rule per `debounce_key` value per window
    /// (e.g. `"1h"`: at most one churn rescore per account per hour).
    #[serde(default, with = "humantime_serde")]
    pub debounce: Option<Duration>,
    /// What debouncing is keyed on: `account_id` (default), `user_id`,
    /// `type`, or a data field as `data.PATH`.
    #[serde(default)]
    pub debounce_key: Option<String>,
    /// Stable name, used to key debounce windows (default: `on` and `run`).
    #[serde(default)]
    pub name: Option<String>,
}

/// A job an event triggers, with its timing constraints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// Job kind.
    pub kind: String,
    /// Start no earlier than this after ingest.
    pub delay: Option<Duration>,
    /// (rule id, key value, window): create the job only if the window is free.
    pub debounce: Option<(String, String, Duration)>,
}

impl RuleConfig {
    /// Checks the rule against the job kinds this binary can run; on error
    /// returns (key within the rule, reason).
    pub fn validate(&self, known_kinds: &[&str]) -> Result<(), (String, String)> {
        if !valid_pattern(&self.on) {
            return Err((
                "on".into(),
                format!(
                    "`{}` is not an event type (letters, digits, `_`, `-`, `.`), a prefix like `payment.*`, or `*`",
                    self.on
                ),
            ));
        }
        if self.run.is_empty() {
            return Err(("run".into(), "must name at least one job kind".into()));
        }
        for kind in &self.run {
            if !known_kinds.contains(&kind.as_str()) {
                return Err((
                    "run".into(),
                    format!("unknown job kind `{kind}` (known: {})", known_kinds.join(", ")),
                ));
            }
        }
        if let Some(key) = &self.debounce_key {
            let ok = matches!(key.as_str(), "account_id" | "user_id" | "type")
                || key
                    .strip_prefix("data.")
                    .is_some_and(|p| !p.is_empty() && !p.split('.').any(str::is_empty));
            if !ok {
                return Err((
                    "debounce_key".into(),
                    format!("`{key}` must be account_id, user_id, type or data.PATH"),
                ));
            }
            if self.debounce.is_none() {
                return Err((
                    "debounce_key".into(),
                    "set `debounce` (a window like \"1h\") too".into(),
                ));
            }
        }
        if self.debounce.is_some_and(|d| d.is_zero()) {
            return Err(("debounce".into(), "must be longer than 0s".into()));
        }
        for path in self.filter.keys() {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(("filter".into(), format!("`{path}` is not a dotted field path")));
            }
        }
        Ok(())
    }

    /// Whether this rule fires for `event`.
    pub fn matches(&self, event: &Event) -> bool {
        type_matches(&self.on, &event.event_type)
            && self
                .filter
                .iter()
                .all(|(path, expected)| data_field(event, path) == Some(expected))
    }

    /// The id debounce windows are keyed on.
    pub fn id(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}->{}", self.on, self.run.join(",")))
    }

    /// The debounce key's value for `event` (missing field → empty string).
    fn debounce_value(&self, event: &Event) -> String {
        match self.debounce_key.as_deref().unwrap_or("account_id") {
            "account_id" => event.account_id.clone(),
            "user_id" => event.user_id.clone().unwrap_or_default(),
            "type" => event.event_type.clone(),
            other => match data_field(event, other.trim_start_matches("data.")) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            },
        }
    }
}

/// The compiled rule set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    rules: Vec<RuleConfig>,
}

impl Rules {
    /// Wraps validated rules (see [`crate::config::validate_rules`]).
    pub fn new(rules: Vec<RuleConfig>) -> Self {
        Self { rules }
    }

    /// The rules, in order (what the dashboard lists).
    pub fn configs(&self) -> &[RuleConfig] {
        &self.rules
    }

    /// The job kinds `event` triggers, each once, in rule order.
    pub fn kinds_for(&self, event: &Event) -> Vec<String> {
        self.triggers_for(event).into_iter().map(|t| t.kind).collect()
    }

    /// What `event` triggers: each kind once (the first matching rule wins),
    /// with that rule's delay and debounce.
    pub fn triggers_for(&self, event: &Event) -> Vec<Trigger> {
        let mut out: Vec<Trigger> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches(event)) {
            for kind in &rule.run {
                if out.iter().any(|t| &t.kind == kind) {
                    continue;
                }
                out.push(Trigger {
                    kind: kind.clone(),
                    delay: rule.delay,
                    debounce: rule
                        .debounce
                        .map(|window| (format!("{}#{kind}", rule.id()), rule.debounce_value(event), window)),
                });
            }
        }
        out
    }
}

fn data_field<'a>(event: &'a Event, path: &str) -> Option<&'a serde_json::Value> {
    let mut parts = path.split('.');
    let mut value = event.data.get(parts.next().unwrap_or_default());
    for part in parts {
        value = value.and_then(|v| v.get(part));
    }
    value
}

fn valid_pattern(on: &str) -> bool {
    if on == "*" {
        return true;
    }
    let body = on.strip_suffix(".*").unwrap_or(on);
    crate::event::valid_event_type(body)
}

fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(t: &str, data: serde_json::Value) -> Event {
        Event {
            id: "e1".into(),
            event_type: t.into(),
            account_id: "a1".into(),
            user_id: None,
            occurred_at_ms: 0,
            data: data.as_object().cloned().unwrap_or_default(),
        }
    }

    fn rule(on: &str, run: &[&str], filter: serde_json::Value) -> RuleConfig {
        RuleConfig {
            on: on.into(),
            run: run.iter().map(|s| s.to_string()).collect(),
            filter: serde_json::from_value(filter).unwrap(),
            delay: None,
            debounce: None,
            debounce_key: None,
            name: None,
        }
    }

    #[test]
    fn exact_prefix_and_star_patterns() {
        let rules = Rules::new(vec![
            rule("*", &["activity"], json!({})),
            rule("payment.*", &["probe"], json!({})),
            rule("comment.created", &["probe", "activity"], json!({})),
        ]);
        assert_eq!(rules.kinds_for(&event("user.login", json!({}))), vec!["activity"]);
        assert_eq!(
            rules.kinds_for(&event("payment.failed", json!({}))),
            vec!["activity", "probe"]
        );
        assert_eq!(
            rules.kinds_for(&event("comment.created", json!({}))),
            vec!["activity", "probe"]
        );
    }

    #[test]
    fn filters_compare_nested_data_fields() {
        let r = rule(
            "ticket.created",
            &["probe"],
            json!({"ticket.priority": "high", "plan": "pro"}),
        );
        assert!(r.matches(&event(
            "ticket.created",
            json!({"plan": "pro", "ticket": {"priority": "high"}})
        )));
        assert!(!r.matches(&event(
            "ticket.created",
            json!({"plan": "pro", "ticket": {"priority": "low"}})
        )));
        assert!(!r.matches(&event("ticket.created", json!({"ticket": {"priority": "high"}}))));
    }

    #[test]
    fn debounce_and_delay_travel_with_the_trigger() {
        let mut r = rule("payment.failed", &["probe"], json!({}));
        r.debounce = Some(Duration::from_secs(3600));
        r.delay = Some(Duration::from_secs(60));
        let rules = Rules::new(vec![r.clone()]);
        let t = &rules.triggers_for(&event("payment.failed", json!({})))[0];
        assert_eq!(t.delay, Some(Duration::from_secs(60)));
        assert_eq!(t.debounce.as_ref().unwrap().1, "a1");
        r.debounce_key = Some("data.plan".into());
        let rules = Rules::new(vec![r.clone()]);
        let t = &rules.triggers_for(&event("payment.failed", json!({"plan": "pro"})))[0];
        assert_eq!(t.debounce.as_ref().unwrap().1, "pro");
        r.debounce_key = Some("plan".into());
        assert!(r.validate(&["probe"]).is_err());
    }

    #[test]
    fn validation_rejects_bad_patterns_and_kinds() {
        assert!(rule("comment created", &["probe"], json!({}))
            .validate(&["probe"])
            .is_err());
        assert!(rule("comment.*", &["nope"], json!({})).validate(&["probe"]).is_err());
        assert!(rule("comment.*", &[], json!({})).validate(&["probe"]).is_err());
        assert!(rule("comment.*", &["probe"], json!({})).validate(&["probe"]).is_ok());
    }
}
