//! Cron schedules, misfires, fan-out, hot reload, and event rules with
//! debounce and delay.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kairos::{start, Roles, Runtime};
use kairos_core::enqueue::NewJob;
use kairos_core::store::JobFilter;
use kairos_core::time::now_ms;
use kairos_scheduler::{Firer, Ticker};
use serde_json::json;

use crate::common::*;

fn daily_midnight(misfire: &str) -> String {
    format!("[[schedules]]\nname = \"nightly\"\ncron = \"0 0 * * *\"\njob = \"probe\"\nmisfire = \"{misfire}\"\n")
}

async fn misfire_after_downtime(policy: &str) -> (Vec<kairos_core::store::TickRecord>, usize) {
    let env = Env::new(Deployment::Embedded).await;
    let config = env.config(&daily_midnight(policy));
    let rt = Runtime::open(config.clone()).await.unwrap();
    // The schedulers were last up three days ago.
    let last = (Utc::now() - chrono::Duration::days(3)).timestamp_millis();
    assert!(rt
        .store
        .record_tick("nightly", last, "fired", "old-replica", &[])
        .await
        .unwrap());
    let firer = Firer {
        store: rt.store.clone(),
        queue: rt.queue.clone(),
        replica: "r1".into(),
    };
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(config.scheduling()));
    Ticker::new(firer.clone(), rx.clone()).round().await.unwrap();
    // A restarted replica re-reads the last tick and fires nothing again.
    Ticker::new(firer, rx).round().await.unwrap();
    let ticks = rt.store.ticks_since("nightly", last + 1).await.unwrap();
    let jobs = rt
        .store
        .jobs(&JobFilter {
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    (ticks, jobs.len())
}

fn last_midnight() -> i64 {
    let today = Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap();
    DateTime::<Utc>::from_naive_utc_and_offset(today, Utc).timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misfire_skip_fires_nothing_for_missed_ticks() {
    let (ticks, jobs) = misfire_after_downtime("skip").await;
    assert_eq!(ticks.len(), 1, "{ticks:?}");
    assert_eq!((ticks[0].outcome.as_str(), ticks[0].jobs), ("skipped", 0));
    assert_eq!(ticks[0].tick_at, last_midnight());
    assert_eq!(jobs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misfire_run_once_fires_one_catch_up() {
    let (ticks, jobs) = misfire_after_downtime("run_once").await;
    assert_eq!(ticks.len(), 1, "three missed nights, one catch-up: {ticks:?}");
    assert_eq!((ticks[0].outcome.as_str(), ticks[0].jobs), ("catch_up", 1));
    assert_eq!(jobs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_per_tenant_and_account_with_overrides() {
    let schedules = r#"
[[schedules]]
name = "weekly"
cron = "0 9 * * MON"
timezone = "Europe/Madrid"
job = "probe"
fan_out = "per_tenant"
payload = { report = "weekly" }
[[schedules.overrides]]
tenant = "tenant-b"
cron = "0 8 * * MON"
timezone = "America/Bogota"

[[schedules]]
name = "churn"
cron = "0 9 * * *"
job = "probe"
fan_out = "per_account"
chunk_size = 2
"#;
    let mut app = spawn_app(
        Deployment::Distributed,
        &format!("{schedules}\n[[rules]]\non = \"*\"\nrun = [\"activity\"]\n"),
    )
    .await;
    let b = app.store.create_tenant("tenant-b", None).await.unwrap();
    // Five accounts known for tenant-a.
    let events: Vec<_> = (0..5)
        .map(|i| event(&format!("a{i}"), "user.logged_in", &format!("acct-{i}"), json!({})))
        .collect();
    let (_, body) = app.post_events(&json!(events)).await;
    app.wait_settled(&job_ids(&body), Duration::from_secs(20)).await;

    let firer = Firer {
        store: app.store.clone(),
        queue: Arc::clone(&Runtime::open(app.config.clone()).await.unwrap().queue),
        replica: "test".into(),
    };
    let fired = kairos_scheduler::run_now(&firer, &app.config.scheduling(), "weekly")
        .await
        .unwrap();
    assert_eq!(
        fired,
        vec![("weekly".to_string(), 1), ("weekly@tenant-b".to_string(), 1)]
    );
    let fired = kairos_scheduler::run_now(&firer, &app.config.scheduling(), "churn")
        .await
        .unwrap();
    assert_eq!(
        fired,
        vec![("churn".to_string(), 3)],
        "5 accounts of tenant-a in chunks of 2; tenant-b has none"
    );
    assert!(kairos_scheduler::run_now(&firer, &app.config.scheduling(), "nope")
        .await
        .is_err());

    let probe = |tenant: &str| JobFilter {
        tenant_id: Some(tenant.to_string()),
        kind: Some("probe".into()),
        limit: 100,
        ..JobFilter::default()
    };
    let a_jobs = app.store.jobs(&probe(&app.tenant_id)).await.unwrap();
    let b_jobs = app.store.jobs(&probe(&b.tenant.id)).await.unwrap();
    assert_eq!((a_jobs.len(), b_jobs.len()), (4, 1));
    let weekly_a = a_jobs
        .iter()
        .find(|j| j.payload.contains("\"report\":\"weekly\""))
        .unwrap();
    assert!(weekly_a.payload.contains("\"schedule\":\"weekly\""));
    let mut chunks: Vec<_> = a_jobs
        .iter()
        .filter_map(|j| serde_json::from_str::<serde_json::Value>(&j.payload).ok())
        .filter_map(|p| p["account_ids"].as_array().map(|a| a.len()))
        .collect();
    chunks.sort();
    assert_eq!(chunks, vec![1, 2, 2]);
    app.wait_settled(
        &a_jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        Duration::from_secs(20),
    )
    .await;

    // The admin API fires the same way, behind the operator token.
    let (s, _) = app.get("/v1/admin/schedules/weekly/run", None).await;
    assert_eq!(s, 405);
    let r = app
        .http
        .post(format!("{}/v1/admin/schedules/weekly/run", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "a tenant key is not an admin token");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_records_once_and_its_jobs_only_with_it() {
    let env = Env::new(Deployment::Distributed).await;
    let rt = Runtime::open(env.config("")).await.unwrap();
    let job = |id: &str| NewJob {
        id: id.into(),
        tenant_id: "_system".into(),
        kind: "probe".into(),
        event_id: None,
        payload: "{}".into(),
        max_attempts: 3,
        run_after: None,
    };
    let t = now_ms();
    // Two replicas race for the same tick: exactly one records it.
    let (j1, j2) = (
        [job("00000000-0000-0000-0000-000000000001")],
        [job("00000000-0000-0000-0000-000000000002")],
    );
    let (a, b) = tokio::join!(
        rt.store.record_tick("race", t, "fired", "r1", &j1),
        rt.store.record_tick("race", t, "fired", "r2", &j2),
    );
    assert!(a.unwrap() ^ b.unwrap(), "exactly one replica wins the tick");
    let jobs = rt
        .store
        .jobs(&JobFilter {
            limit: 10,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "the loser's jobs were never written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_applies_good_files_and_rejects_bad_ones() {
    let env = Env::new(Deployment::Embedded).await;
    let path = env.dir.path().join("live.toml");
    let write = |extra: &str| {
        // Env's config already has a [scheduler] table: splice ours in.
        let text = env.config_toml("").replace(
            "[scheduler]\n",
            "[scheduler]\nreload_interval = \"100ms\"\nmisfire_threshold = \"5s\"\n",
        ) + extra;
        std::fs::write(&path, text).unwrap();
    };
    write("");
    let config = kairos::Config::load(&path).unwrap();
    let rt = Runtime::open(config).await.unwrap();
    let store = rt.store.clone();
    let running = start(
        rt,
        Roles {
            api: false,
            scheduler: true,
            worker: false,
        },
    )
    .await
    .unwrap();

    let ticks = |key: &'static str| {
        let store = store.clone();
        async move { store.ticks_since(key, 0).await.unwrap().len() }
    };
    // A good change takes effect without a restart.
    write("[[schedules]]\nname = \"alpha\"\ncron = \"* * * * * *\"\njob = \"probe\"\n");
    assert!(
        wait_for(Duration::from_secs(10), || async { ticks("alpha").await >= 2 }).await,
        "alpha never ticked"
    );

    // A bad file is rejected and alpha keeps running.
    write("[[schedules]]\nname = \"alpha\"\ncron = \"* * * * * *\"\njob = \"probe\"\ntimezon = \"UTC\"\n");
    let before = ticks("alpha").await;
    assert!(wait_for(Duration::from_secs(10), || async { ticks("alpha").await >= before + 2 }).await);

    // The next good file replaces alpha by beta.
    write("[[schedules]]\nname = \"beta\"\ncron = \"* * * * * *\"\njob = \"probe\"\n");
    assert!(
        wait_for(Duration::from_secs(10), || async { ticks("beta").await >= 2 }).await,
        "beta never ticked"
    );
    let alpha_after = ticks("alpha").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        ticks("alpha").await <= alpha_after + 1,
        "alpha stopped after its removal"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_debounce_per_account_and_delay() {
    let rules = r#"
[[rules]]
on = "payment.failed"
run = ["probe"]
debounce = "1h"

[[rules]]
on = "ticket.created"
run = ["activity"]
delay = "2s"
"#;
    let mut app = spawn_app(Deployment::Distributed, rules).await;
    let batch = json!([
        event("p1", "payment.failed", "acct-1", json!({})),
        event("p2", "payment.failed", "acct-1", json!({})),
        event("p3", "payment.failed", "acct-2", json!({})),
    ]);
    let (s, body) = app.post_events(&batch).await;
    assert_eq!(s, 202, "{body}");
    let per_event: Vec<usize> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job_ids"].as_array().unwrap().len())
        .collect();
    assert_eq!(
        per_event,
        vec![1, 0, 1],
        "the second failure of acct-1 within the hour is debounced"
    );
    let (_, body) = app
        .post_events(&event("p4", "payment.failed", "acct-1", json!({})))
        .await;
    assert_eq!(job_ids(&body).len(), 0, "still within the window");

    let (_, body) = app
        .post_events(&event("d1", "ticket.created", "acct-3", json!({})))
        .await;
    let ids = job_ids(&body);
    let job = app.wait_settled(&ids, Duration::from_secs(20)).await.remove(0);
    let waited = job.started_at.unwrap() - job.created_at;
    assert!(waited >= 2000, "delayed job started after {waited} ms");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_cli_and_admin_api_fire_now() {
    // nextest runs each test in its own process, so this variable is ours.
    std::env::set_var("KAIROS_TEST_ADMIN_TOKEN", "s3cret-admin-token");
    let schedules = r#"
[api]
admin_token_env = "KAIROS_TEST_ADMIN_TOKEN"

[[schedules]]
name = "weekly"
cron = "0 9 * * MON"
timezone = "Europe/Madrid"
job = "probe"
fan_out = "per_tenant"
"#;
    let mut app = spawn_app(Deployment::Embedded, schedules).await;
    let config = app.env.config_file(schedules);
    let (ok, out, err) = run_cli(&config, &["schedules"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("weekly") && out.contains("Europe/Madrid") && out.contains("last run: never"),
        "{out}"
    );
    let next_line = out.lines().find(|l| l.trim_start().starts_with("next:")).unwrap();
    assert_eq!(
        next_line.matches("T09:00:00+0").count(),
        5,
        "five Monday 09:00 Madrid times: {next_line}"
    );

    let url = format!("{}/v1/admin/schedules/weekly/run", app.base);
    let r = app.http.post(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = app
        .http
        .post(&url)
        .bearer_auth("s3cret-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["fired"][0]["jobs"], 1, "{body}");
    let r = app
        .http
        .post(format!("{}/v1/admin/schedules/nope/run", app.base))
        .bearer_auth("s3cret-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    let (ok, out, err) = run_cli(&config, &["schedules", "run", "weekly"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("weekly: fired now, 1 jobs"), "{out}");
    let (_, out, _) = run_cli(&config, &["schedules"]).await;
    assert!(out.contains("(manual, 1 jobs"), "{out}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_ticks_are_pruned_but_each_schedules_latest_is_kept() {
    let env = Env::new(Deployment::Embedded).await;
    let rt = Runtime::open(env.config("")).await.unwrap();
    let day = 24 * 3600 * 1000;
    let now = now_ms();
    for (key, at) in [
        ("a", now - 40 * day),
        ("a", now - 35 * day),
        ("a", now - day),
        ("b", now - 50 * day),
    ] {
        assert!(rt.store.record_tick(key, at, "fired", "r1", &[]).await.unwrap());
    }
    let deleted = rt.store.prune_ticks(now - 30 * day).await.unwrap();
    assert_eq!(deleted, 2, "a's two old ticks go; b's only (and latest) tick stays");
    assert_eq!(rt.store.last_tick("a").await.unwrap().unwrap().tick_at, now - day);
    assert_eq!(rt.store.last_tick("b").await.unwrap().unwrap().tick_at, now - 50 * day);
    assert_eq!(rt.store.ticks_since("a", 0).await.unwrap().len(), 1);
}
