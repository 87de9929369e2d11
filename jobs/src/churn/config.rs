//! The `[churn]` config section: how churn scores turn into risk levels,
//! in which language their reasons are written, and which retention action
//! each risk factor recommends.
//!
//! ```toml
//! [churn]
//! thresholds = { medium = 0.3, high = 0.5, critical = 0.7 }
//! language = "en"                       # es | en
//! tenant_languages = { "coachly" = "es" } # by tenant name or id
//! model_refresh = "5s"                  # how often a worker re-reads which model is active
//! [churn.actions.logins_30d]
//! action = "re-engagement campaign"
//! priority = "high"
//! impact = 0.15
//! [churn.retrain]                       # the weekly champion / challenger job
//! horizon = "30d"
//! margin = 0.01                         # AUC the challenger must gain
//! min_rows = 100
//! min_positives = 10
//! ```
//!
//! `kairos check-config` validates it with the rest of the file
//! ([`ChurnConfig::validate`] names the key under `churn.`).

use std::collections::BTreeMap;
use std::time::Duration;

use kairos_core::config::KeyError;
use kairos_models::churn::AccountFeatures;
use serde::Deserialize;

/// Languages a factor description can be written in.
pub const LANGUAGES: &[&str] = &["en", "es"];

/// Factor names an action can be keyed by: the `AccountFeatures` fields
/// the models score.
pub const FACTORS: &[&str] = &AccountFeatures::FEATURE_NAMES;

/// Priorities a recommended action can have, lowest first.
pub const PRIORITIES: &[&str] = &["low", "medium", "high", "critical"];

/// Probability thresholds between risk levels (a level applies strictly above its threshold).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChurnThresholds {
    /// Above this: at least MEDIUM.
    pub medium: f64,
    /// Above this: at least HIGH.
    pub high: f64,
    /// Above this: CRITICAL (raises an alert).
    pub critical: f64,
}

impl Default for ChurnThresholds {
    fn default() -> Self {
        Self {
            medium: 0.3,
            high: 0.5,
            critical: 0.7,
        }
    }
}

/// A retention action recommended when a factor pushes an account towards churn.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnAction {
    /// What to do, in words an account manager acts on.
    pub action: String,
    /// `low`, `medium`, `high` or `critical`.
    pub priority: String,
    /// Estimated reduction of the churn probability (0 … 1), for ranking.
    pub impact: f64,
}

/// `[churn]`: risk thresholds, description language and the action table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChurnConfig {
    /// Risk-level thresholds (default 0.3 / 0.5 / 0.7).
    pub thresholds: ChurnThresholds,
    /// Default language of factor descriptions: `en` or `es`.
    pub language: String,
    /// Per-tenant language, keyed by tenant name or id.
    pub tenant_languages: BTreeMap<String, String>,
    /// How often a worker re-checks which model version is active (so
    /// `kairos models activate` takes effect within this time).
    #[serde(with = "humantime_serde")]
    pub model_refresh: Duration,
    /// Recommended action per factor (an `AccountFeatures` field name).
    /// Replaces the built-in table when given.
    pub actions: BTreeMap<String, ChurnAction>,
    /// `[churn.retrain]`: champion / challenger retraining (the
    /// `churn_retrain` job).
    pub retrain: super::retrain::RetrainConfig,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        Self {
            thresholds: ChurnThresholds::default(),
            language: "en".into(),
            tenant_languages: BTreeMap::new(),
            model_refresh: Duration::from_secs(5),
            actions: default_actions(),
            retrain: super::retrain::RetrainConfig::default(),
        }
    }
}

/// The built-in factor → action table (what the product brief lists).
pub fn default_actions() -> BTreeMap<String, ChurnAction> {
    let a = |action: &str, priority: &str, impact: f64| ChurnAction {
        action: action.into(),
        priority: priority.into(),
        impact,
    };
    [
        ("logins_30d", a("re-engagement campaign", "high", 0.15)),
        ("days_since_last_login", a("re-engagement campaign", "high", 0.15)),
        ("comments_30d", a("re-engagement campaign", "medium", 0.10)),
        ("avg_sentiment", a("executive escalation", "critical", 0.25)),
        ("negative_interactions", a("executive escalation", "critical", 0.25)),
        ("tickets_30d", a("support review with the account", "medium", 0.10)),
        ("support_escalations", a("executive escalation", "critical", 0.25)),
        ("project_delays", a("timeline review", "high", 0.20)),
        ("missed_deadlines", a("timeline review", "high", 0.20)),
        ("budget_overruns", a("budget review", "high", 0.15)),
        ("payment_delays", a("billing outreach", "high", 0.15)),
        ("days_since_last_payment", a("billing outreach", "medium", 0.10)),
        ("total_spent", a("value review / upsell check", "low", 0.05)),
        ("account_age_days", a("onboarding check-in", "medium", 0.10)),
        ("days_to_renewal", a("renewal call", "high", 0.20)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl ChurnConfig {
    /// The language for a tenant (by name, then id; else the default).
    pub fn language_for(&self, tenant_name: &str, tenant_id: &str) -> &str {
        self.tenant_languages
            .get(tenant_name)
            .or_else(|| self.tenant_languages.get(tenant_id))
            .map(String::as_str)
            .unwrap_or(&self.language)
    }

    /// Checks values serde cannot; errors name the key under `churn.`.
    pub fn validate(&self) -> Result<(), KeyError> {
        let t = &self.thresholds;
        for (k, v) in [("medium", t.medium), ("high", t.high), ("critical", t.critical)] {
            if !(0.0..=1.0).contains(&v) {
                return Err((format!("thresholds.{k}"), format!("{v} is not in [0, 1]")));
            }
        }
        if !(t.medium <= t.high && t.high <= t.critical) {
            return Err((
                "thresholds".into(),
                format!(
                    "must satisfy medium <= high <= critical, got {} / {} / {}",
                    t.medium, t.high, t.critical
                ),
            ));
        }
        let lang_ok = |l: &str| LANGUAGES.contains(&l);
        if !lang_ok(&self.language) {
            return Err((
                "language".into(),
                format!("`{}` is not supported (use {})", self.language, LANGUAGES.join(" or ")),
            ));
        }
        for (tenant, l) in &self.tenant_languages {
            if !lang_ok(l) {
                return Err((
                    format!("tenant_languages.{tenant}"),
                    format!("`{l}` is not supported (use {})", LANGUAGES.join(" or ")),
                ));
            }
        }
        self.retrain.validate().map_err(|(k, m)| (format!("retrain.{k}"), m))?;
        if self.model_refresh.is_zero() {
            return Err(("model_refresh".into(), "must be longer than 0s".into()));
        }
        for (factor, a) in &self.actions {
            if !FACTORS.contains(&factor.as_str()) {
                return Err((
                    format!("actions.{factor}"),
                    format!("unknown factor (known: {})", FACTORS.join(", ")),
                ));
            }
            if a.action.trim().is_empty() {
                return Err((format!("actions.{factor}.action"), "must not be empty".into()));
            }
            if !PRIORITIES.contains(&a.priority.as_str()) {
                return Err((
                    format!("actions.{factor}.priority"),
                    format!("`{}` is not one of {}", a.priority, PRIORITIES.join(", ")),
                ));
            }
            if !(0.0..=1.0).contains(&a.impact) {
                return Err((
                    format!("actions.{factor}.impact"),
                    format!("{} is not in [0, 1]", a.impact),
                ));
            }
        }
        Ok(())
    }
}
