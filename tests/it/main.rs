//! Integration tests: real SQLite, real Redis (127.0.0.1:6379) and real
//! Postgres (127.0.0.1:5432, database `test`). Each test gets its own SQLite
//! file, Postgres database and Redis key prefix, so they run in parallel.
//! Override the servers with KAIROS_TEST_PG and KAIROS_TEST_REDIS.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

mod alerts;
mod churn;
mod churn_scoring;
mod common;
mod dashboard;
mod dashboard_actions;
mod dashboard_browser;
mod errors;
mod failures;
mod fairness;
mod ingest;
mod lifecycle;
mod llm;
mod lock_order;
mod mail;
mod metrics;
mod nudges;
mod ops;
mod people;
mod processes;
mod reliability;
mod reports;
mod scheduler;
mod sentiment;
mod sentiment_analyze;
mod servers;
mod startup;
mod throughput;
mod worker_kinds;
