//! The OpenAPI document, generated from the handlers and types themselves
//! so it cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    accounts, admin, alerts, churn, events, health, jobs, metrics, models, nudges, reports, sentiment,
    sentiment_analyze, tracking,
};

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
        models::monitor,
        churn::account_churn,
        churn::churn_overview,
        churn::score,
        sentiment::account_sentiment,
        sentiment_analyze::analyze,
        reports::list_reports,
        reports::get_report,
        nudges::feed,
        nudges::mark_read,
        nudges::account_nudges,
        nudges::stats,
        tracking::open,
        tracking::click,
        admin::run_schedule,
        health::healthz,
        health::readyz,
        metrics::scrape
    ),
    components(schemas(
        alerts::AlertView,
        kairos_jobs::monitor::MonitorReport,
        kairos_jobs::monitor::ChurnMonitor,
        kairos_jobs::monitor::ChurnWeek,
        kairos_jobs::monitor::SentimentWeek,
        kairos_jobs::churn::retrain::Evaluation,
        accounts::AccountInput,
        accounts::PersonInput,
        accounts::AccountBatch,
        accounts::TimeZone,
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
        churn::ChurnScoreRequest,
        churn::ChurnScoreResponse,
        churn::RowScore,
        churn::ScoreFactor,
        sentiment::SentimentScoreView,
        sentiment_analyze::AnalyzeRequest,
        sentiment_analyze::AnalyzeResponse,
        sentiment_analyze::TextAnalysis,
        sentiment_analyze::LabelProbabilities,
        sentiment::SentimentAverage,
        sentiment::AccountSentiment,
        reports::ReportView,
        reports::ReportLinks,
        reports::ReportPage,
        reports::ReportDetail,
        reports::DeliveryView,
        nudges::Feed,
        nudges::FeedItem,
        nudges::NudgeView,
        nudges::DeliveryView,
        nudges::AccountNudges,
        nudges::GroupStats,
        nudges::VariantStatsView,
        nudges::RuleStatsView,
        nudges::NudgeStats,
        kairos_jobs::nudge::store::FunnelRow,
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
    let texts = &mut schemas["AnalyzeRequest"]["properties"]["texts"]["items"];
    texts["minLength"] = 1.into();
    texts["maxLength"] = sentiment_analyze::MAX_TEXT_CHARS.into();
    texts["pattern"] = sentiment_analyze::TEXT_PATTERN.into();
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
        // Query parameters: enums and ranges (issue #12: `min_risk`, a
        // `limit` beyond int32).
        let param = |path: &str, name: &str| -> serde_json::Value {
            doc["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{path} has no `{name}`"))
        };
        let min_risk = param("/v1/churn", "min_risk");
        assert_eq!(min_risk["in"], "query");
        assert!(min_risk["schema"].to_string().contains("critical"), "{min_risk}");
        assert_eq!(param("/v1/alerts", "limit")["schema"]["maximum"], 1000);
        // Profiles: every rule from kairos_core::profile's constants.
        use kairos_core::profile;
        let person = &s["PersonInput"]["properties"];
        assert_eq!(person["email"]["pattern"], profile::EMAIL_PATTERN);
        assert_eq!(person["email"]["maxLength"], profile::MAX_EMAIL_CHARS);
        assert_eq!(person["phone"]["pattern"], profile::PHONE_PATTERN);
        assert_eq!(person["name"]["maxLength"], profile::MAX_TEXT_CHARS);
        assert_eq!(
            person["channels"]["items"]["enum"],
            serde_json::json!(profile::CHANNELS)
        );
        assert_eq!(person["role"]["enum"][0], profile::ROLES[0]);
        assert_eq!(s["PersonInput"]["additionalProperties"], false);
        assert_eq!(
            person["consent"]["propertyNames"]["enum"],
            serde_json::json!(profile::CHANNELS)
        );
        assert_eq!(
            person["consent"]["additionalProperties"]["required"],
            serde_json::json!(["granted", "given_at"])
        );
        let account = &s["AccountInput"]["properties"];
        assert_eq!(account["renewal_date"]["pattern"], profile::DATE_PATTERN);
        assert_eq!(account["time_zone"]["$ref"], "#/components/schemas/TimeZone");
        let zones = s["TimeZone"]["enum"].as_array().unwrap();
        assert!(
            zones.len() > 400 && zones.contains(&"Europe/Madrid".into()) && zones.contains(&serde_json::Value::Null)
        );
        let batch = &s["AccountBatch"]["properties"]["accounts"];
        assert_eq!(batch["maxItems"], crate::routes::accounts::MAX_BATCH);
        assert_eq!(batch["items"]["properties"]["id"]["pattern"], IDENT_PATTERN);
        let list = &doc["paths"]["/v1/accounts"]["get"]["parameters"];
        let limit = list.as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"]["maximum"], kairos_core::store::PAGE_MAX);
        let person_path = &doc["paths"]["/v1/accounts/{id}/people/{person_id}"]["put"];
        for p in person_path["parameters"].as_array().unwrap() {
            assert_eq!(p["in"], "path");
            assert_eq!(p["schema"]["maxLength"], MAX_IDENT_LEN, "{}", person_path["parameters"]);
        }
        for code in ["400", "401", "408", "413", "415", "503"] {
            assert!(person_path["responses"][code].is_object(), "PUT person lacks {code}");
        }
        let texts = &s["AnalyzeRequest"]["properties"]["texts"];
        assert_eq!(texts["maxItems"], crate::routes::sentiment_analyze::MAX_TEXTS);
        assert_eq!(
            texts["items"]["maxLength"],
            crate::routes::sentiment_analyze::MAX_TEXT_CHARS
        );
        assert_eq!(s["AnalyzeRequest"]["additionalProperties"], false);
        let cents = &s["EventData"]["properties"]["amount_cents"];
        assert_eq!(
            cents["maximum"].as_f64(),
            Some(kairos_core::event::MAX_AMOUNT_CENTS as f64)
        );
    }
}
