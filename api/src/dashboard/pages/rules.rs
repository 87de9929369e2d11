//! Rules: which events make which jobs, read-only from the config.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::Layout;
use crate::dashboard::session::CurrentUser;
use crate::dashboard::{render, DashError, DashState};

/// One rule.
pub struct RuleRow {
    name: String,
    on: String,
    run: String,
    filter: String,
    delay: String,
    debounce: String,
}

/// The rules page.
#[derive(Template)]
#[template(path = "rules.html")]
pub struct RulesPage {
    l: Layout,
    rules: Vec<RuleRow>,
}

/// `GET /dashboard/rules`.
pub async fn page(State(state): State<DashState>, user: CurrentUser) -> Result<Response, DashError> {
    let rules = state
        .app
        .rules
        .current()
        .rules
        .configs()
        .iter()
        .map(|r| RuleRow {
            name: r.name.clone().unwrap_or_default(),
            on: r.on.clone(),
            run: r.run.join(", "),
            filter: if r.filter.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&r.filter).unwrap_or_default()
            },
            delay: r
                .delay
                .map(|d| humantime::format_duration(d).to_string())
                .unwrap_or_default(),
            debounce: r
                .debounce
                .map(|d| {
                    format!(
                        "{} per {}",
                        humantime::format_duration(d),
                        r.debounce_key.as_deref().unwrap_or("account_id")
                    )
                })
                .unwrap_or_default(),
        })
        .collect();
    render(&RulesPage {
        l: Layout::new(&user, "Rules", "/dashboard/rules", None),
        rules,
    })
}
