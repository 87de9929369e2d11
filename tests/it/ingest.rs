//! The main path: event → rules → job → worker → aggregates, on both
//! deployments.

use std::collections::BTreeMap;
use std::time::Duration;

use kairos_core::store::JobState;
use serde_json::json;

use crate::common::*;

async fn ingest_updates_aggregates(deployment: Deployment) {
    let mut app = spawn_app(deployment, "[[rules]]\non = \"*\"\nrun = [\"activity\"]\n").await;
    let events = json!({"events": [
        event("e1", "user.logged_in", "acct-1", json!({})),
        event("e2", "user.logged_in", "acct-1", json!({})),
        event("e3", "comment.created", "acct-1", json!({"text": "¡Muy útil!"})),
        event("e4", "ticket.created", "acct-2", json!({"subject": "broken export"})),
        event("e5", "payment.succeeded", "acct-2", json!({"amount": 49.5})),
        event("e6", "payment.failed", "acct-2", json!({})),
        event("e7", "payment.succeeded", "acct-2", json!({"amount_cents": 1000})),
    ]});
    let (status, body) = app.post_events(&events).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 7);
    let ids = job_ids(&body);
    assert_eq!(ids.len(), 7, "one activity job per event: {body}");

    let jobs = app.wait_settled(&ids, Duration::from_secs(30)).await;
    assert!(
        jobs.iter().all(|j| j.state == JobState::Succeeded && j.attempts == 1),
        "{jobs:?}"
    );

    let acts: BTreeMap<String, _> = kairos_jobs::activity::read_all(&app.store, &app.tenant_id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.account_id.clone(), a))
        .collect();
    let a1 = &acts["acct-1"];
    assert_eq!((a1.events, a1.logins, a1.comments, a1.tickets), (3, 2, 1, 0));
    let a2 = &acts["acct-2"];
    assert_eq!((a2.events, a2.tickets, a2.payments, a2.failed_payments), (4, 1, 2, 1));
    assert_eq!(a2.amount_paid_cents, 4950 + 1000);

    // The job is visible to its tenant with its result reference.
    let (status, job) = app.get(&format!("/v1/jobs/{}", ids[0]), Some(&app.key)).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["kind"], "activity");
    assert_eq!(job["result_ref"], "account_activity/acct-1");
    assert!(job["started_at"].is_string() && job["finished_at"].is_string(), "{job}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_ingest_updates_aggregates() {
    ingest_updates_aggregates(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_ingest_updates_aggregates() {
    ingest_updates_aggregates(Deployment::Distributed).await;
}

async fn replay_triggers_nothing_new(deployment: Deployment) {
    let mut app = spawn_app(
        deployment,
        "[[rules]]\non = \"*\"\nrun = [\"activity\"]\n[[rules]]\non = \"comment.*\"\nrun = [\"probe\"]\n",
    )
    .await;
    let batch = json!([
        event("r1", "comment.created", "acct-1", json!({})),
        event("r2", "user.logged_in", "acct-1", json!({})),
    ]);
    let (status, first) = app.post_events(&batch).await;
    assert_eq!(status, 202, "{first}");
    let ids = job_ids(&first);
    assert_eq!(ids.len(), 3, "comment → activity + probe, login → activity: {first}");
    app.wait_settled(&ids, Duration::from_secs(30)).await;

    let (status, second) = app.post_events(&batch).await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["accepted"], 0);
    assert_eq!(second["duplicates"], 2);
    assert_eq!(second["results"][0]["status"], "duplicate");
    let mut again = job_ids(&second);
    let mut orig = ids.clone();
    again.sort();
    orig.sort();
    assert_eq!(again, orig, "a duplicate reports the jobs of its first delivery");

    // Nothing new ran: still exactly the three jobs, aggregates unchanged.
    let counts = app.store.job_counts(Some(&app.tenant_id)).await.unwrap();
    let total: i64 = counts.iter().map(|c| c.2).sum();
    assert_eq!(total, 3, "{counts:?}");
    let acts = kairos_jobs::activity::read_all(&app.store, &app.tenant_id)
        .await
        .unwrap();
    assert_eq!(acts[0].events, 2);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_replay_triggers_nothing_new() {
    replay_triggers_nothing_new(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_replay_triggers_nothing_new() {
    replay_triggers_nothing_new(Deployment::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_job_is_idempotent_when_redelivered() {
    let mut app = spawn_app(Deployment::Embedded, "[[rules]]\non = \"*\"\nrun = [\"activity\"]\n").await;
    let (_, body) = app
        .post_events(&json!(event("i1", "user.logged_in", "acct-9", json!({}))))
        .await;
    let ids = job_ids(&body);
    app.wait_settled(&ids, Duration::from_secs(30)).await;
    let before = kairos_jobs::activity::read_all(&app.store, &app.tenant_id)
        .await
        .unwrap();

    // Run the same job again, as a re-delivery after a lost ack would.
    let job = app.store.job(None, &ids[0]).await.unwrap().unwrap();
    let ctx = kairos_jobs::JobContext {
        job_id: job.id.clone(),
        tenant_id: app.tenant_id.clone(),
        attempt: 2,
        max_attempts: 5,
        store: app.store.clone(),
        queue: app.queue.clone(),
    };
    let activity: &dyn kairos_jobs::DynJob = &kairos_jobs::activity::Activity;
    activity.run(&ctx, &job.payload).await.unwrap();
    let after = kairos_jobs::activity::read_all(&app.store, &app.tenant_id)
        .await
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(after[0].logins, 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_see_each_others_jobs() {
    let mut app = spawn_app(Deployment::Embedded, "[[rules]]\non = \"*\"\nrun = [\"activity\"]\n").await;
    let other = app.store.create_tenant("tenant-b", None).await.unwrap();
    let (_, body) = app
        .post_events(&json!(event("t1", "user.logged_in", "acct-1", json!({}))))
        .await;
    let id = &job_ids(&body)[0];
    let (status, _) = app.get(&format!("/v1/jobs/{id}"), Some(&other.secret)).await;
    assert_eq!(status, 404);
    // The same event id is a different event for another tenant.
    let (status, body) = app
        .post_events_with_key(
            &other.secret,
            &json!(event("t1", "user.logged_in", "acct-1", json!({}))),
        )
        .await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(1)), "{body}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_openapi() {
    let mut app = spawn_app(Deployment::Distributed, "").await;
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200);
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(
        (status, ready["store"].as_str(), ready["queue"].as_str()),
        (200, Some("ok"), Some("ok"))
    );
    let (status, doc) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/v1/events"]["post"].is_object(), "{doc}");
    assert!(doc["paths"]["/v1/jobs/{id}"]["get"].is_object());
    assert!(doc["components"]["schemas"]["EventIn"].is_object());
    app.shutdown().await;
}
