//! HTTP handlers, one module per resource. Handlers stay thin: extract,
//! call the store or queue, map the outcome.

pub mod accounts;
pub mod admin;
pub mod alerts;
pub mod churn;
pub mod events;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod models;
pub mod nudges;
pub mod reports;
pub mod sentiment;
pub mod sentiment_analyze;
pub mod tracking;
