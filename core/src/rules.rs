//! Event rules: which job kinds an incoming event triggers.
//!
//! Rules are evaluated at ingest, inside the API, so the `202` response can
//! name the jobs an event triggered and those jobs are stored in the same
//! transaction as the event (nothing half-written).

use std::collections::BTreeMap;

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
            && self.filter.iter().all(|(path, expected)| {
                let mut value = event.data.get(path.split('.').next().unwrap_or_default());
                for part in path.split('.').skip(1) {
                    value = value.and_then(|v| v.get(part));
                }
                value == Some(expected)
            })
    }
}

/// The compiled rule set.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<RuleConfig>,
}

impl Rules {
    /// Wraps validated rules (see [`crate::config::Config::validate`]).
    pub fn new(rules: Vec<RuleConfig>) -> Self {
        Self { rules }
    }

    /// The job kinds `event` triggers, each once, in rule order.
    pub fn kinds_for(&self, event: &Event) -> Vec<String> {
        let mut kinds: Vec<String> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches(event)) {
            for kind in &rule.run {
                if !kinds.contains(kind) {
                    kinds.push(kind.clone());
                }
            }
        }
        kinds
    }
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
    fn validation_rejects_bad_patterns_and_kinds() {
        assert!(rule("comment created", &["probe"], json!({}))
            .validate(&["probe"])
            .is_err());
        assert!(rule("comment.*", &["nope"], json!({})).validate(&["probe"]).is_err());
        assert!(rule("comment.*", &[], json!({})).validate(&["probe"]).is_err());
        assert!(rule("comment.*", &["probe"], json!({})).validate(&["probe"]).is_ok());
    }
}
