//! Words for account managers: each factor described in the tenant's
//! language (en / es), and the retention actions the config table
//! recommends for the factors that push an account towards churn.

use super::config::{ChurnAction, ChurnConfig, PRIORITIES};
use kairos_models::churn::Factor;
use serde_json::{json, Value};

/// (English, Spanish) label of each account feature.
fn label(feature: &str) -> (&'static str, &'static str) {
    match feature {
        "logins_30d" => ("Logins in the last 30 days", "Inicios de sesión en los últimos 30 días"),
        "days_since_last_login" => ("Days since the last login", "Días desde el último inicio de sesión"),
        "tickets_30d" => (
            "Support tickets in the last 30 days",
            "Tickets de soporte en los últimos 30 días",
        ),
        "comments_30d" => ("Comments in the last 30 days", "Comentarios en los últimos 30 días"),
        "avg_sentiment" => (
            "Average sentiment of recent messages",
            "Sentimiento medio de los mensajes recientes",
        ),
        "negative_interactions" => ("Negative interactions", "Interacciones negativas"),
        "support_escalations" => (
            "Support escalations in the last 30 days",
            "Escalados de soporte en los últimos 30 días",
        ),
        "project_delays" => (
            "Project delays in the last 90 days",
            "Retrasos de proyecto en los últimos 90 días",
        ),
        "missed_deadlines" => (
            "Missed deadlines in the last 30 days",
            "Plazos incumplidos en los últimos 30 días",
        ),
        "budget_overruns" => (
            "Budget overruns in the last 90 days",
            "Sobrecostes en los últimos 90 días",
        ),
        "payment_delays" => (
            "Failed payments in the last 90 days",
            "Pagos fallidos en los últimos 90 días",
        ),
        "days_since_last_payment" => ("Days since the last payment", "Días desde el último pago"),
        "total_spent" => ("Total spent", "Gasto total"),
        "account_age_days" => ("Account age in days", "Antigüedad de la cuenta en días"),
        "days_to_renewal" => ("Days to renewal", "Días hasta la renovación"),
        _ => ("Other signal", "Otra señal"),
    }
}

/// One sentence for a factor, e.g. "Failed payments in the last 90 days: 3 — raises the churn risk".
pub fn describe(factor: &Factor, language: &str) -> String {
    let (en, es) = label(&factor.feature);
    let value = if factor.missing {
        if language == "es" {
            "sin datos".to_string()
        } else {
            "no data".to_string()
        }
    } else {
        match factor.value.parse::<f64>() {
            Ok(v) if v.fract().abs() < 1e-9 => format!("{v:.0}"),
            Ok(v) => format!("{v:.1}"),
            Err(_) => factor.value.clone(),
        }
    };
    let up = factor.contribution > 0.0;
    match (language, up) {
        ("es", true) => format!("{es}: {value} — aumenta el riesgo de abandono"),
        ("es", false) => format!("{es}: {value} — reduce el riesgo de abandono"),
        (_, true) => format!("{en}: {value} — raises the churn risk"),
        (_, false) => format!("{en}: {value} — lowers the churn risk"),
    }
}

/// The factors as stored: feature, value, contribution, description.
pub fn factors_json(factors: &[Factor], language: &str) -> Value {
    Value::Array(
        factors
            .iter()
            .map(|f| {
                json!({
                    "feature": f.feature,
                    "value": f.value,
                    "missing": f.missing,
                    "contribution": f.contribution,
                    "description": describe(f, language),
                })
            })
            .collect(),
    )
}

/// Actions for the factors that push towards churn (positive contribution),
/// from `[churn.actions]`: one per distinct action, most urgent first
/// (priority, then estimated impact).
pub fn actions_json(factors: &[Factor], config: &ChurnConfig) -> Value {
    let mut chosen: Vec<(&str, &ChurnAction)> = Vec::new();
    for f in factors.iter().filter(|f| f.contribution > 0.0) {
        if let Some(a) = config.actions.get(&f.feature) {
            if !chosen.iter().any(|(_, c)| c.action == a.action) {
                chosen.push((&f.feature, a));
            }
        }
    }
    let rank = |p: &str| PRIORITIES.iter().position(|x| *x == p).unwrap_or(0);
    chosen.sort_by(|(_, a), (_, b)| {
        rank(&b.priority)
            .cmp(&rank(&a.priority))
            .then(b.impact.total_cmp(&a.impact))
    });
    Value::Array(
        chosen
            .into_iter()
            .map(|(factor, a)| {
                json!({ "action": a.action, "priority": a.priority, "estimated_impact": a.impact, "because": factor })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factor(feature: &str, value: &str, contribution: f64) -> Factor {
        Factor {
            feature: feature.into(),
            value: value.into(),
            missing: false,
            contribution,
        }
    }

    #[test]
    fn descriptions_in_both_languages() {
        let f = factor("payment_delays", "3", 0.8);
        assert_eq!(
            describe(&f, "en"),
            "Failed payments in the last 90 days: 3 — raises the churn risk"
        );
        assert_eq!(
            describe(&f, "es"),
            "Pagos fallidos en los últimos 90 días: 3 — aumenta el riesgo de abandono"
        );
        assert!(describe(&factor("logins_30d", "12.5", -0.3), "en").contains("12.5 — lowers"));
    }

    #[test]
    fn actions_follow_risk_factors_by_priority() {
        let c = ChurnConfig::default();
        let fs = [
            factor("logins_30d", "1", 0.5),
            factor("support_escalations", "3", 0.4),
            factor("days_since_last_login", "20", 0.3),
            factor("project_delays", "0", -0.2),
        ];
        let a = actions_json(&fs, &c);
        let names: Vec<&str> = a
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["action"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["executive escalation", "re-engagement campaign"]);
    }
}
