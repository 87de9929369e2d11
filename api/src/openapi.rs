//! The OpenAPI document, generated from the handlers and types themselves
//! so it cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{accounts, admin, alerts, churn, events, health, jobs, nudges, sentiment};

/// The Kairos HTTP API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Kairos API", description = "Event ingest and job status for Kairos, the job engine for AI automation."),
    paths(
        events::ingest,
        jobs::get_job,
        accounts::list_accounts,
        accounts::batch_accounts,
        accounts::get_account,
        accounts::put_account,
        accounts::patch_account,
        accounts::delete_account,
        accounts::list_people,
        accounts::get_person,
        accounts::put_person,
        accounts::patch_person,
        accounts::delete_person,
        alerts::list_alerts,
        churn::account_churn,
        churn::churn_overview,
        sentiment::account_sentiment,
        nudges::feed,
        nudges::mark_read,
        nudges::account_nudges,
        nudges::stats,
        admin::run_schedule,
        health::healthz,
        health::readyz
    ),
    components(schemas(
        alerts::AlertView,
        accounts::AccountInput,
        accounts::PersonInput,
        accounts::AccountBatch,
        accounts::AccountView,
        accounts::PersonView,
        accounts::ConsentView,
        accounts::Resolved,
        accounts::AccountPage,
        accounts::PersonPage,
        accounts::BatchItemResult,
        accounts::BatchResponse,
        accounts::ErasureView,
        events::EventIn,
        events::EventData,
        events::EventBatch,
        events::IngestBody,
        events::EventResult,
        events::IngestResponse,
        jobs::JobView,
        health::Readiness,
        admin::RunResponse,
        admin::FiredKey,
        churn::ChurnScoreView,
        churn::AccountChurn,
        churn::RiskGroup,
        churn::ChurnOverview,
        sentiment::SentimentScoreView,
        sentiment::SentimentAverage,
        sentiment::AccountSentiment,
        nudges::Feed,
        nudges::FeedItem,
        nudges::NudgeView,
        nudges::DeliveryView,
        nudges::AccountNudges,
        nudges::GroupStats,
        nudges::VariantStatsView,
        nudges::RuleStatsView,
        nudges::NudgeStats,
        crate::error::ErrorBody
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The document as this process serves it: [`ApiDoc`] plus the limits that
/// come from the config (the batch size), so every limit the server
/// enforces is stated where clients and schema-driven tests read it.
pub fn document(api: &kairos_core::config::ApiConfig) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let max_batch = serde_json::Value::from(api.max_batch);
    let schemas = &mut doc["components"]["schemas"];
    let batch = &mut schemas["EventBatch"]["properties"]["events"];
    batch["maxItems"] = max_batch.clone();
    batch["minItems"] = 1.into();
    // IngestBody is oneOf [EventBatch, [EventIn], EventIn]: the bare array.
    if let Some(variants) = schemas["IngestBody"]["oneOf"].as_array_mut() {
        for v in variants.iter_mut().filter(|v| v["type"] == "array") {
            v["maxItems"] = max_batch.clone();
            v["minItems"] = 1.into();
        }
    }
    doc
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::event::{EVENT_TYPE_PATTERN, IDENT_PATTERN, MAX_IDENT_LEN};

    #[test]
    fn the_document_states_the_limits_the_server_enforces() {
        let api = kairos_core::config::ApiConfig {
            max_batch: 7,
            ..Default::default()
        };
        let doc = document(&api);
        let s = &doc["components"]["schemas"];
        let event = &s["EventIn"]["properties"];
        for field in ["id", "account_id", "user_id"] {
            assert_eq!(event[field]["pattern"], IDENT_PATTERN, "{field}");
            assert_eq!(event[field]["maxLength"], MAX_IDENT_LEN, "{field}");
            assert_eq!(event[field]["minLength"], 1, "{field}");
        }
        assert_eq!(event["type"]["pattern"], EVENT_TYPE_PATTERN);
        assert_eq!(event["type"]["maxLength"], MAX_IDENT_LEN);
        assert_eq!(s["EventIn"]["additionalProperties"], false);
        assert_eq!(s["EventBatch"]["properties"]["events"]["maxItems"], 7);
        let arrays: Vec<_> = s["IngestBody"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["type"] == "array")
            .collect();
        assert_eq!(arrays.len(), 1, "{}", s["IngestBody"]);
        assert_eq!(arrays[0]["maxItems"], 7);
        let cents = &s["EventData"]["properties"]["amount_cents"];
        assert_eq!(
            cents["maximum"].as_f64(),
            Some(kairos_core::event::MAX_AMOUNT_CENTS as f64)
        );
    }
}
