//! Churn scoring end to end on real SQLite and Postgres + Redis: features
//! from events as of a cutoff, the model registry, the `churn_score` job
//! (rule- and schedule-triggered), alerts, the API and the CLI.

use std::time::Duration;

use kairos_core::store::{JobFilter, JobState, StoredEvent};
use kairos_core::{Event, Store};
use kairos_jobs::churn::features::{self, DAY_MS};
use kairos_jobs::churn::{registry, scores, NO_MODEL};
use kairos_models::churn::synthetic::{self, SyntheticConfig};
use kairos_models::churn::ChurnModel;
use serde_json::{json, Value};

use crate::common::{job_ids, run_cli, spawn_app, synthetic_model, wait_for, Deployment, Env};

const HOUR_MS: i64 = 3_600_000;

fn ev(id: &str, kind: &str, account: &str, at: i64, data: Value) -> Event {
    Event {
        id: id.into(),
        event_type: kind.into(),
        account_id: account.into(),
        user_id: None,
        occurred_at_ms: at,
        data: data.as_object().cloned().unwrap_or_default(),
    }
}

async fn import(store: &Store, tenant_id: &str, events: Vec<Event>) {
    let batch: Vec<StoredEvent> = events
        .into_iter()
        .map(|e| StoredEvent {
            event: e,
            jobs: Vec::new(),
        })
        .collect();
    store.ingest(tenant_id, &batch).await.unwrap();
}

/// A model trained on the synthetic ground truth (account-feature schema).
fn trained(seed: u64, version: &str) -> ChurnModel {
    let accounts = synthetic::generate(&SyntheticConfig {
        accounts: 600,
        seed,
        missing_rate: 0.02,
    })
    .unwrap();
    synthetic_model(&accounts, version)
}

async fn features_from_known_history(deployment: Deployment) {
    let app = spawn_app(deployment, "").await;
    let cutoff = 1_800_000_000_000_i64; // fixed, far from "now": only the cutoff matters
    let d = |days: f64| cutoff - (days * DAY_MS as f64) as i64;
    let renews = kairos_core::time::to_rfc3339(cutoff + 45 * DAY_MS);
    let old_renewal = kairos_core::time::to_rfc3339(cutoff + 10 * DAY_MS);
    let a = "acct-a";
    let history = vec![
        ev("e1", "account.created", a, d(200.0), json!({})),
        ev("e2", "user.logged_in", a, d(40.0), json!({})), // outside the 30 d window
        ev("e3", "user.login", a, d(20.0), json!({})),
        ev("e4", "session.started", a, d(2.5), json!({})),
        ev("e5", "ticket.created", a, d(10.0), json!({})),
        ev("e6", "comment.created", a, d(9.0), json!({})),
        ev("e7", "ticket.comment", a, d(8.0), json!({})),
        ev("e8", "comment.created", a, d(31.0), json!({})), // outside
        ev("e9", "ticket.escalated", a, d(3.0), json!({})),
        ev("e10", "project.delayed", a, d(60.0), json!({})), // 90 d window
        ev("e11", "project.delayed", a, d(100.0), json!({})), // outside
        ev("e12", "deadline.missed", a, d(5.0), json!({})),
        ev("e13", "budget.overrun", a, d(80.0), json!({})),
        ev("e14", "payment.failed", a, d(85.0), json!({})),
        ev("e15", "payment.failed", a, d(15.0), json!({})),
        ev("e16", "payment.succeeded", a, d(50.0), json!({ "amount": 120.5 })),
        ev("e17", "invoice.paid", a, d(12.0), json!({ "amount_cents": 9950 })),
        ev(
            "e18",
            "subscription.created",
            a,
            d(150.0),
            json!({ "renews_at": old_renewal }),
        ),
        ev(
            "e19",
            "subscription.renewed",
            a,
            d(30.0),
            json!({ "renews_at": renews }),
        ),
        // Only an account.created: counts are zero, recencies missing.
        ev("b1", "account.created", "acct-b", d(7.0), json!({})),
    ];
    import(&app.store, &app.tenant_id, history).await;
    let ids = vec![a.to_string(), "acct-b".into(), "acct-none".into()];
    let before = features::account_features(&app.store, &app.tenant_id, &ids, cutoff)
        .await
        .unwrap();
    let f = &before[0];
    assert_eq!(f.logins_30d, Some(2.0));
    assert_eq!(f.days_since_last_login, Some(2.5));
    assert_eq!(f.tickets_30d, Some(1.0));
    assert_eq!(f.comments_30d, Some(2.0));
    assert_eq!(f.avg_sentiment, None, "no sentiment_results table yet");
    assert_eq!(f.negative_interactions, None);
    assert_eq!(f.support_escalations, Some(1.0));
    assert_eq!(f.project_delays, Some(1.0));
    assert_eq!(f.missed_deadlines, Some(1.0));
    assert_eq!(f.budget_overruns, Some(1.0));
    assert_eq!(f.payment_delays, Some(2.0));
    assert_eq!(f.days_since_last_payment, Some(12.0));
    assert_eq!(f.total_spent, Some(120.5 + 99.5));
    assert_eq!(f.account_age_days, Some(200.0));
    assert_eq!(f.days_to_renewal, Some(45.0));
    let b = &before[1];
    assert_eq!((b.logins_30d, b.days_since_last_login), (Some(0.0), None));
    assert_eq!((b.total_spent, b.days_since_last_payment), (Some(0.0), None));
    assert_eq!((b.account_age_days, b.days_to_renewal), (Some(7.0), None));
    assert_eq!(
        before[2],
        Default::default(),
        "an account without events is all missing"
    );

    // No leakage: events at or after the cutoff change nothing.
    let after = vec![
        ev("x1", "user.logged_in", a, cutoff, json!({})),
        ev("x2", "payment.failed", a, cutoff + HOUR_MS, json!({})),
        ev(
            "x3",
            "payment.succeeded",
            a,
            cutoff + 2 * HOUR_MS,
            json!({ "amount": 1000 }),
        ),
        ev(
            "x4",
            "subscription.renewed",
            a,
            cutoff + HOUR_MS,
            json!({ "renews_at": renews }),
        ),
        ev("x5", "account.churned", a, cutoff + 5 * DAY_MS, json!({})),
        ev("x6", "user.logged_in", "acct-none", cutoff + HOUR_MS, json!({})),
    ];
    import(&app.store, &app.tenant_id, after).await;
    let again = features::account_features(&app.store, &app.tenant_id, &ids, cutoff)
        .await
        .unwrap();
    assert_eq!(before, again);

    // Labels: churned within (cutoff, cutoff + horizon]; acct-none starts after the cutoff.
    let labelled = features::labelled_accounts(&app.store, &app.tenant_id, cutoff, 30 * DAY_MS)
        .await
        .unwrap();
    assert_eq!(labelled, vec![(a.to_string(), true), ("acct-b".to_string(), false)]);
    let short = features::labelled_accounts(&app.store, &app.tenant_id, cutoff, 2 * DAY_MS)
        .await
        .unwrap();
    assert_eq!(
        short[0],
        (a.to_string(), false),
        "the churn falls after a 2-day horizon"
    );
}

#[tokio::test]
async fn features_from_known_history_sqlite() {
    features_from_known_history(Deployment::Embedded).await;
}

#[tokio::test]
async fn features_from_known_history_postgres() {
    features_from_known_history(Deployment::Distributed).await;
}

const SCENARIO_CONFIG: &str = r#"
[[rules]]
on = "*"
run = ["activity"]

[[rules]]
on = "payment.failed"
run = ["churn_score"]

[jobs.churn_score]
max_attempts = 2
backoff_initial = "100ms"
backoff_max = "200ms"

[churn]
model_refresh = "1ms"
language = "es"

[[schedules]]
name = "daily-churn"
cron = "0 9 1 1 *"
job = "churn_score"
fan_out = "per_account"
chunk_size = 2
"#;

fn at(id: &str, kind: &str, account: &str, ms: i64, data: Value) -> Value {
    json!({
        "id": id, "type": kind, "account_id": account,
        "occurred_at": kairos_core::time::to_rfc3339(ms), "data": data,
    })
}

async fn post_and_settle(app: &crate::common::TestApp, events: Vec<Value>) -> Vec<kairos_core::store::JobRun> {
    let (status, body) = app.post_events(&json!({ "events": events })).await;
    assert_eq!(status, 202, "{body}");
    app.wait_settled(&job_ids(&body), Duration::from_secs(30)).await
}

async fn scoring_scenario(deployment: Deployment) {
    let mut app = spawn_app(deployment, SCENARIO_CONFIG).await;
    let now = kairos_core::time::now_ms();

    // No active model: the job dead-letters at once with the clear message.
    let jobs = post_and_settle(
        &app,
        vec![at("p0", "payment.failed", "acct-1", now - HOUR_MS, json!({}))],
    )
    .await;
    let churn_job = jobs.iter().find(|j| j.kind == "churn_score").unwrap();
    assert_eq!(churn_job.state, JobState::Dead);
    assert_eq!(churn_job.attempts, 1, "permanent: no retry");
    assert!(
        churn_job.last_error.as_deref().unwrap_or("").contains(NO_MODEL),
        "{churn_job:?}"
    );

    // Two versions registered; A active.
    let (a, b) = tokio::task::spawn_blocking(|| (trained(1, "churn-test-a"), trained(2, "churn-test-b")))
        .await
        .unwrap();
    registry::register(&app.store, &a, None, "test").await.unwrap();
    registry::register(&app.store, &b, None, "test").await.unwrap();
    registry::activate(&app.store, "churn-test-a", None).await.unwrap();

    // Five accounts with activity; acct-risky looks like a churner.
    let mut events = Vec::new();
    for k in 1..=4 {
        for i in 0..15 {
            events.push(at(
                &format!("l{k}-{i}"),
                "user.logged_in",
                &format!("acct-{k}"),
                now - (i + 1) * DAY_MS,
                json!({}),
            ));
        }
    }
    let r = "acct-risky";
    events.push(at("r-login", "user.logged_in", r, now - 80 * DAY_MS, json!({})));
    for i in 0..6 {
        events.push(at(
            &format!("r-esc{i}"),
            "ticket.escalated",
            r,
            now - (i + 1) * DAY_MS,
            json!({}),
        ));
        events.push(at(
            &format!("r-delay{i}"),
            "project.delayed",
            r,
            now - (i + 1) * DAY_MS,
            json!({}),
        ));
    }
    let renews = kairos_core::time::to_rfc3339(now + 2 * DAY_MS);
    events.push(at(
        "r-sub",
        "subscription.renewed",
        r,
        now - 300 * DAY_MS,
        json!({ "renews_at": renews }),
    ));
    for i in 0..5 {
        events.push(at(
            &format!("r-fail{i}"),
            "payment.failed",
            r,
            now - (i + 1) * HOUR_MS,
            json!({}),
        ));
    }
    let jobs = post_and_settle(&app, events).await;
    let churn_jobs: Vec<_> = jobs.iter().filter(|j| j.kind == "churn_score").collect();
    assert_eq!(churn_jobs.len(), 5);
    assert!(
        churn_jobs.iter().all(|j| j.state == JobState::Succeeded),
        "{churn_jobs:?}"
    );

    let history = scores::history(&app.store, &app.tenant_id, r, 100).await.unwrap();
    assert_eq!(history.len(), 5);
    assert!(history
        .iter()
        .all(|s| s.model_version == "churn-test-a" && s.trigger_kind == "event"));
    let latest = &history[0];
    assert_eq!(latest.risk_level, "CRITICAL", "{latest:?}");
    assert!(latest.probability > 0.7);
    let factors = latest.factors.as_array().unwrap();
    assert_eq!(factors.len(), 5);
    assert!(
        factors[0]["description"].as_str().unwrap().contains("riesgo"),
        "Spanish: {factors:?}"
    );
    assert!(!latest.actions.as_array().unwrap().is_empty());
    // Five CRITICAL scores today, one alert.
    let alerts = app
        .store
        .alerts(
            &app.tenant_id,
            &kairos_core::store::AlertFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        (alerts[0].account_id.as_str(), alerts[0].kind.as_str()),
        (r, "churn_critical")
    );

    // Activating B changes the version the next score uses.
    registry::activate(&app.store, "churn-test-b", None).await.unwrap();
    let jobs = post_and_settle(
        &app,
        vec![at("p-next", "payment.failed", "acct-1", now - HOUR_MS, json!({}))],
    )
    .await;
    assert!(jobs.iter().all(|j| j.state == JobState::Succeeded), "{jobs:?}");
    let h = scores::history(&app.store, &app.tenant_id, "acct-1", 10).await.unwrap();
    assert_eq!(h[0].model_version, "churn-test-b");

    // The daily per-account fan-out scores every account exactly once.
    let firer = kairos_scheduler::Firer {
        store: app.store.clone(),
        queue: kairos_core::queue::connect(&app.config.queue).await.unwrap(),
        replica: "test".into(),
    };
    let fired = kairos_scheduler::run_now(&firer, &app.config.scheduling(), "daily-churn")
        .await
        .unwrap();
    assert_eq!(
        fired.iter().map(|(_, n)| n).sum::<usize>(),
        3,
        "5 accounts in chunks of 2"
    );
    let filter = JobFilter {
        tenant_id: Some(app.tenant_id.clone()),
        state: None,
        kind: Some("churn_score".into()),
        limit: 100,
    };
    let settled = wait_for(Duration::from_secs(30), || async {
        let jobs = app.store.jobs(&filter).await.unwrap();
        jobs.len() == 10
            && jobs
                .iter()
                .all(|j| matches!(j.state, JobState::Succeeded | JobState::Dead))
    })
    .await;
    assert!(settled, "{:?}", app.store.jobs(&filter).await.unwrap());
    let latest = scores::latest(&app.store, &app.tenant_id).await.unwrap();
    let mut scheduled: Vec<&str> = latest
        .iter()
        .filter(|s| s.trigger_ref.starts_with("daily-churn@"))
        .map(|s| s.account_id.as_str())
        .collect();
    scheduled.sort();
    assert_eq!(scheduled, ["acct-1", "acct-2", "acct-3", "acct-4", r]);
    for acct in ["acct-1", "acct-2", "acct-3", "acct-4", r] {
        let h = scores::history(&app.store, &app.tenant_id, acct, 100).await.unwrap();
        let n = h.iter().filter(|s| s.trigger_ref.starts_with("daily-churn@")).count();
        assert_eq!(n, 1, "{acct} scored {n} times by the tick");
        assert_eq!(h[0].model_version, "churn-test-b");
    }

    // API: tenant-scoped, typed query.
    let (status, body) = app.get(&format!("/v1/accounts/{r}/churn"), Some(&app.key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["latest"]["risk_level"], "CRITICAL");
    assert_eq!(body["latest"]["model_version"], "churn-test-b");
    assert_eq!(body["history"].as_array().unwrap().len(), 6);
    let (status, body) = app.get("/v1/churn?min_risk=high", Some(&app.key)).await;
    assert_eq!(status, 200, "{body}");
    let groups = body["groups"].as_array().unwrap();
    assert_eq!(groups[0]["risk_level"], "CRITICAL");
    assert_eq!(groups.len(), 2);
    assert!(groups[0]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["account_id"] == r));
    let (status, body) = app.get("/v1/churn?min_risk=severe", Some(&app.key)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "min_risk");
    let (status, _) = app.get("/v1/churn", None).await;
    assert_eq!(status, 401);
    let other = app.store.create_tenant("tenant-b", None).await.unwrap();
    let (status, _) = app.get(&format!("/v1/accounts/{r}/churn"), Some(&other.secret)).await;
    assert_eq!(status, 404);
    let (status, body) = app.get("/v1/churn", Some(&other.secret)).await;
    assert_eq!(status, 200);
    assert!(
        body["groups"].as_array().unwrap().iter().all(|g| g["count"] == 0),
        "{body}"
    );
    let (_, spec) = app.get("/openapi.json", None).await;
    assert!(spec["paths"]["/v1/churn"].is_object() && spec["paths"]["/v1/accounts/{id}/churn"].is_object());

    app.shutdown().await;
}

#[tokio::test]
async fn scoring_scenario_sqlite() {
    scoring_scenario(Deployment::Embedded).await;
}

#[tokio::test]
async fn scoring_scenario_postgres() {
    scoring_scenario(Deployment::Distributed).await;
}

#[tokio::test]
async fn cli_trains_from_the_store_and_rejects_bad_csvs() {
    let env = Env::new(Deployment::Embedded).await;
    let config = env.config_file("");
    let store = Store::connect(&env.store_url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("acme", None).await.unwrap().tenant;
    let now = kairos_core::time::now_ms();
    let cutoff = now - 30 * DAY_MS;
    let accounts = synthetic::generate(&SyntheticConfig {
        accounts: 300,
        seed: 5,
        missing_rate: 0.0,
    })
    .unwrap();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let mut events = Vec::new();
    for (i, a) in accounts.iter().enumerate() {
        events.extend(kairos::cli::demo::churn::history_events(
            a,
            &format!("a{i}"),
            "h",
            cutoff,
            true,
            &mut rng,
        ));
    }
    import(&store, &tenant.id, events).await;

    let cutoff_arg = kairos_core::time::to_rfc3339(cutoff);
    let (ok, out, err) = run_cli(
        &config,
        &[
            "train",
            "churn",
            "--tenant",
            "acme",
            "--cutoff",
            &cutoff_arg,
            "--horizon",
            "30d",
            "--activate",
        ],
    )
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("held-out") && out.contains("AUC"), "{out}");
    let models = registry::list(&store).await.unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].active_in, vec![tenant.id.clone()]);
    assert!(
        models[0].metrics["auc"].as_f64().unwrap() > 0.6,
        "{:?}",
        models[0].metrics
    );
    assert_eq!(
        registry::active_version(&store, &tenant.id).await.unwrap(),
        Some(models[0].version.clone())
    );
    let (ok, out, _) = run_cli(&config, &["models", "list"]).await;
    assert!(ok && out.contains(&models[0].version), "{out}");

    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tests/fixtures");
    let bad = fixtures.join("bad_label.csv");
    let (ok, _, err) = run_cli(
        &config,
        &["train", "churn", "--csv", bad.to_str().unwrap(), "--label", "churned"],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("line 5") && err.contains("`churned`"), "{err}");
    let (ok, _, err) = run_cli(&config, &["models", "activate", "nope"]).await;
    assert!(!ok && err.contains("nope"), "{err}");
    store.close().await;
}
