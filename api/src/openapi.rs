//! The OpenAPI document, generated from the handlers and types themselves
//! so it cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{accounts, admin, alerts, churn, events, health, jobs, sentiment};

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
        events::EventBatch,
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
        crate::error::ErrorBody
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

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
