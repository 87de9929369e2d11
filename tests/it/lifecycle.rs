//! The model lifecycle on real SQLite and Postgres: champion / challenger
//! retraining from the store (the challenger replaces the active model only
//! when it scores better on the same recent held-out window, and the
//! decision is recorded either way), and weekly monitoring with input drift
//! (PSI against the training rows) and its alert, through the functions the
//! jobs run, the CLI and the API.

use kairos_core::store::{AlertFilter, StoredEvent};
use kairos_core::time::now_ms;
use kairos_core::{Event, Store};
use kairos_jobs::churn::features::DAY_MS;
use kairos_jobs::churn::retrain::{self, RetrainConfig};
use kairos_jobs::churn::{registry, training};
use kairos_jobs::monitor::{self, MonitorConfig};
use kairos_models::churn::synthetic::{self, SyntheticAccount, SyntheticConfig};
use kairos_models::churn::{AccountFeatures, ChurnModel};
use rand::SeedableRng;
use serde_json::json;

use crate::common::{run_cli, spawn_app, synthetic_model, Deployment, Env};

const HORIZON_MS: i64 = 30 * DAY_MS;

fn accounts(n: usize, seed: u64) -> Vec<SyntheticAccount> {
    synthetic::generate(&SyntheticConfig {
        accounts: n,
        seed,
        missing_rate: 0.0,
    })
    .unwrap()
}

/// The same accounts with every label flipped: a history whose lesson is
/// backwards.
fn inverted(a: &[SyntheticAccount]) -> Vec<SyntheticAccount> {
    a.iter()
        .cloned()
        .map(|mut a| {
            a.churned = !a.churned;
            a
        })
        .collect()
}

/// A model fitted on synthetic accounts (inverted: it ranks backwards).
fn model(version: &str, seed: u64, invert: bool) -> ChurnModel {
    let mut a = accounts(600, seed);
    if invert {
        a = inverted(&a);
    }
    synthetic_model(&a, version)
}

/// Histories of `accounts` as of `cutoff`, with what happened in the horizon after it.
async fn import(store: &Store, tenant_id: &str, accounts: &[SyntheticAccount], prefix: &str, cutoff: i64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut events: Vec<Event> = Vec::new();
    for (i, a) in accounts.iter().enumerate() {
        events.extend(kairos::cli::demo::churn::history_events(
            a,
            &format!("{prefix}{i}"),
            prefix,
            cutoff,
            true,
            &mut rng,
        ));
    }
    for chunk in events.chunks(2_000) {
        let batch: Vec<StoredEvent> = chunk
            .iter()
            .cloned()
            .map(|event| StoredEvent {
                event,
                jobs: Vec::new(),
            })
            .collect();
        store.ingest(tenant_id, &batch).await.unwrap();
    }
}

/// A tenant whose last two horizons are filled: the training window's
/// accounts (labels flipped when `invert_training`) and the evaluation
/// window's (true labels).
async fn history(env: &Env, invert_training: bool) -> (Store, kairos_core::store::Tenant, i64) {
    let store = Store::connect(&env.store_url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("acme", None).await.unwrap().tenant;
    let now = now_ms();
    let train = accounts(300, 11);
    let train = if invert_training { inverted(&train) } else { train };
    import(&store, &tenant.id, &train, "t", now - 2 * HORIZON_MS).await;
    import(&store, &tenant.id, &accounts(300, 12), "e", now - HORIZON_MS).await;
    (store, tenant, now)
}

async fn register_active(store: &Store, tenant_id: &str, m: ChurnModel) {
    registry::register(store, &m, Some(tenant_id), "test").await.unwrap();
    registry::activate(store, m.version(), Some(tenant_id)).await.unwrap();
}

async fn champion_stays_when_the_challenger_is_worse(deployment: Deployment) {
    let env = Env::new(deployment).await;
    let (store, tenant, now) = history(&env, true).await;
    let champion = tokio::task::spawn_blocking(|| model("champion-good", 1, false))
        .await
        .unwrap();
    register_active(&store, &tenant.id, champion).await;

    let e = retrain::retrain(&store, &tenant, &RetrainConfig::default(), now, "job-1")
        .await
        .unwrap();
    assert_eq!(e.decision, "kept", "{e:?}");
    let (ch, champ) = (e.challenger_value.unwrap(), e.champion_value.unwrap());
    assert!(champ > 0.6 && ch < 0.5, "champion {champ} vs challenger {ch}");
    assert!(e.reason.contains("champion stays"), "{}", e.reason);
    assert_eq!(e.champion.as_deref(), Some("champion-good"));
    assert_eq!(e.window_start, now - HORIZON_MS);
    assert!(e.rows_evaluated >= 300 && e.positives > 10, "{e:?}");
    assert_eq!(
        registry::active_version(&store, &tenant.id).await.unwrap().as_deref(),
        Some("champion-good"),
        "the worse challenger must not be activated"
    );
    // The challenger is registered (inactive) with its training rows' baseline.
    let version = e.challenger.clone().unwrap();
    let info = registry::list(&store).await.unwrap();
    let c = info
        .iter()
        .find(|m| m.version == version)
        .expect("challenger registered");
    assert!(c.active_in.is_empty());
    assert!(monitor::baselines::load(&store, &version).await.unwrap().is_some());

    // A retried job finishes the same decision: no second challenger, one record.
    let again = retrain::retrain(&store, &tenant, &RetrainConfig::default(), now + 1000, "job-1")
        .await
        .unwrap();
    assert_eq!(again, e);
    assert_eq!(registry::list(&store).await.unwrap().len(), 2);
    assert_eq!(retrain::evaluations(&store, &tenant.id, 10).await.unwrap(), vec![e]);
}

async fn a_better_challenger_replaces_the_champion(deployment: Deployment) {
    let env = Env::new(deployment).await;
    let (store, tenant, now) = history(&env, false).await;
    let champion = tokio::task::spawn_blocking(|| model("champion-backwards", 1, true))
        .await
        .unwrap();
    register_active(&store, &tenant.id, champion).await;

    let e = retrain::retrain(&store, &tenant, &RetrainConfig::default(), now, "job-2")
        .await
        .unwrap();
    assert_eq!(e.decision, "promoted", "{e:?}");
    let (ch, champ) = (e.challenger_value.unwrap(), e.champion_value.unwrap());
    assert!(ch > 0.6 && champ < 0.5, "challenger {ch} vs champion {champ}");
    assert_eq!(
        registry::active_version(&store, &tenant.id).await.unwrap(),
        e.challenger,
        "the better challenger is active"
    );
}

#[tokio::test]
async fn champion_stays_when_the_challenger_is_worse_sqlite() {
    champion_stays_when_the_challenger_is_worse(Deployment::Embedded).await;
}

#[tokio::test]
async fn champion_stays_when_the_challenger_is_worse_postgres() {
    champion_stays_when_the_challenger_is_worse(Deployment::Distributed).await;
}

#[tokio::test]
async fn a_better_challenger_replaces_the_champion_sqlite() {
    a_better_challenger_replaces_the_champion(Deployment::Embedded).await;
}

#[tokio::test]
async fn a_better_challenger_replaces_the_champion_postgres() {
    a_better_challenger_replaces_the_champion(Deployment::Distributed).await;
}

#[tokio::test]
async fn too_little_history_is_skipped_and_says_why() {
    let env = Env::new(Deployment::Embedded).await;
    let store = Store::connect(&env.store_url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("tiny", None).await.unwrap().tenant;
    let now = now_ms();
    import(&store, &tenant.id, &accounts(20, 3), "e", now - HORIZON_MS).await;
    let e = retrain::retrain(&store, &tenant, &RetrainConfig::default(), now, "job-3")
        .await
        .unwrap();
    assert_eq!(e.decision, "skipped");
    assert!(e.reason.contains("min_rows"), "{}", e.reason);
    assert!(e.challenger.is_none());
    assert!(registry::list(&store).await.unwrap().is_empty(), "nothing trained");
    assert_eq!(retrain::evaluations(&store, &tenant.id, 10).await.unwrap().len(), 1);
}

/// Stores `rows` as churn scorings by `version` at `at`.
async fn scorings(store: &Store, tenant_id: &str, version: &str, rows: &[AccountFeatures], at: i64, tag: &str) {
    for (i, f) in rows.iter().enumerate() {
        sqlx::query(
            "INSERT INTO churn_scores (id, tenant_id, account_id, probability, risk_level, factors, actions, \
             features, model_version, trigger_kind, trigger_ref, job_id, scored_at) \
             VALUES ($1, $2, $3, $4, $5, '[]', '[]', $6, $7, 'schedule', 'test', 'job', $8)",
        )
        .bind(format!("{tag}-{i}"))
        .bind(tenant_id)
        .bind(format!("acct-{i}"))
        .bind(0.2)
        .bind("LOW")
        .bind(serde_json::to_string(f).unwrap())
        .bind(version)
        .bind(at + i as i64)
        .execute(store.pool())
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn drift_is_measured_against_the_training_rows_and_alerted_once() {
    let env = Env::new(Deployment::Distributed).await;
    let store = Store::connect(&env.store_url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("acme", None).await.unwrap().tenant;
    let now = now_ms();
    let train: Vec<AccountFeatures> = accounts(400, 21).into_iter().map(|a| a.features).collect();
    let m = tokio::task::spawn_blocking(|| model("monitored", 2, false))
        .await
        .unwrap();
    training::register(&store, &m, Some(&tenant.id), "test", &train)
        .await
        .unwrap();
    registry::activate(&store, "monitored", Some(&tenant.id)).await.unwrap();

    // Two weeks ago: the same population. This week: logins collapsed and
    // last logins much older.
    let same: Vec<AccountFeatures> = accounts(200, 22).into_iter().map(|a| a.features).collect();
    let shifted: Vec<AccountFeatures> = accounts(200, 23)
        .into_iter()
        .map(|a| AccountFeatures {
            logins_30d: a.features.logins_30d.map(|v| (v / 10.0).floor()),
            days_since_last_login: a.features.days_since_last_login.map(|v| v + 45.0),
            ..a.features
        })
        .collect();
    scorings(&store, &tenant.id, "monitored", &same, now - 14 * DAY_MS, "old").await;
    scorings(&store, &tenant.id, "monitored", &shifted, now - 1000 - 200, "new").await;

    let config = MonitorConfig::default();
    let r = monitor::report(&store, &tenant.id, &config, 4, now).await.unwrap();
    let churn = r.churn.as_ref().expect("an active churn model");
    assert_eq!(churn.reference, "training rows");
    assert_eq!(churn.weeks.len(), 2, "{:?}", churn.weeks);
    let (old, new) = (&churn.weeks[0], &churn.weeks[1]);
    assert_eq!((old.scored, new.scored), (200, 200));
    assert!(
        old.drifted.is_empty(),
        "the same population did not drift: {:?}",
        old.psi
    );
    assert!(old.psi["logins_30d"] < 0.1, "{:?}", old.psi);
    assert!(new.drifted.contains(&"logins_30d".to_owned()), "{:?}", new.psi);
    assert!(
        new.drifted.contains(&"days_since_last_login".to_owned()),
        "{:?}",
        new.psi
    );
    assert!(
        !new.drifted.contains(&"total_spent".to_owned()),
        "untouched feature: {:?}",
        new.psi
    );

    assert!(monitor::raise_drift_alert(&store, &r, now).await.unwrap());
    assert!(
        !monitor::raise_drift_alert(&store, &r, now).await.unwrap(),
        "once per model and week"
    );
    let alerts = store
        .alerts(
            &tenant.id,
            &AlertFilter {
                kind: Some(monitor::DRIFT_ALERT.into()),
                limit: 10,
                ..AlertFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].reason.contains("monitored"), "{}", alerts[0].reason);

    // The CLI prints the same report, and raises nothing new.
    let config_file = env.config_file("");
    let (ok, out, err) = run_cli(&config_file, &["models", "monitor", "--tenant", "acme", "--weeks", "4"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("monitored") && out.contains("logins_30d"), "{out}");
}

#[tokio::test]
async fn the_api_serves_the_report_to_its_tenant_only() {
    let app = spawn_app(Deployment::Embedded, "").await;
    let other = app.store.create_tenant("other", None).await.unwrap();
    let m = tokio::task::spawn_blocking(|| model("api-model", 3, false))
        .await
        .unwrap();
    register_active(&app.store, &app.tenant_id, m).await;
    sqlx::query(
        "INSERT INTO sentiment_scores (id, tenant_id, account_id, event_id, event_type, label, score, polarity, \
         probabilities, language, urgency, keywords, model_version, job_id, scored_at) \
         VALUES ('s1', $1, 'a', 'e1', 'comment.created', 'negative', 0.9, -0.8, '{}', 'es', 0, '[]', 'h', 'j', $2), \
                ('s2', $1, 'a', 'e2', 'comment.created', 'neutral', 0.4, 0.0, '{}', 'en', 0, '[]', 'h', 'j', $2)",
    )
    .bind(&app.tenant_id)
    .bind(now_ms())
    .execute(app.store.pool())
    .await
    .unwrap();

    let (status, body) = app.get("/v1/models/monitor?weeks=2", Some(&app.key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["churn"]["model_version"], "api-model");
    assert_eq!(body["sentiment"][0]["scored"], 2);
    assert_eq!(body["sentiment"][0]["low_confidence_rate"], 0.5);
    assert!(body["since"].as_str().unwrap().ends_with('Z') || body["since"].as_str().unwrap().contains('T'));

    let (status, body) = app.get("/v1/models/monitor", Some(&other.secret)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["churn"].is_null() && body["sentiment"] == json!([]), "{body}");
    let (status, _) = app.get("/v1/models/monitor?weeks=0", Some(&app.key)).await;
    assert_eq!(status, 400);
    let (status, _) = app.get("/v1/models/monitor", None).await;
    assert_eq!(status, 401);
}
