//! Every client error gets its status and a JSON body naming the field;
//! nothing is half-written.

use serde_json::json;

use crate::common::*;

const RULES: &str = "[[rules]]\non = \"*\"\nrun = [\"activity\"]\n";

async fn raw_post(app: &TestApp, key: Option<&str>, content_type: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let mut req = app
        .http
        .post(format!("{}/v1/events", app.base))
        .header("content-type", content_type)
        .body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

async fn event_count(app: &TestApp) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM events")
        .fetch_one(app.store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field() {
    let mut app = spawn_app(
        Deployment::Embedded,
        &format!("[api]\nmax_batch = 3\nmax_body_bytes = 2048\n{RULES}"),
    )
    .await;
    let key = app.key.clone();
    let json_ct = "application/json";

    let (s, b) = raw_post(&app, Some(&key), json_ct, b"{\"id\": ".to_vec()).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("malformed_json")), "{b}");

    let mut missing = event("m1", "user.logged_in", "a", json!({}));
    missing.as_object_mut().unwrap().remove("account_id");
    let (s, b) = app.post_events(&missing).await;
    assert_eq!((s, b["field"].as_str()), (400, Some("account_id")), "{b}");

    let wrong_type = json!({"events": [event("w0", "user.logged_in", "a", json!({})), {"id": 7, "type": "x", "account_id": "a", "occurred_at": "2026-11-20T10:00:00Z"}]});
    let (s, b) = app.post_events(&wrong_type).await;
    assert_eq!((s, b["field"].as_str()), (400, Some("events[1].id")), "{b}");

    let mut bad_ts = event("b1", "user.logged_in", "a", json!({}));
    bad_ts["occurred_at"] = json!("21/11/2026 10:00");
    let (s, b) = app.post_events(&json!([bad_ts])).await;
    assert_eq!((s, b["field"].as_str()), (400, Some("[0].occurred_at")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("RFC 3339"), "{b}");

    let mut bad_data = event("d1", "user.logged_in", "a", json!({}));
    bad_data["data"] = json!("not an object");
    let (s, b) = app.post_events(&bad_data).await;
    assert_eq!((s, b["field"].as_str()), (400, Some("data")), "{b}");

    let (s, b) = raw_post(&app, None, json_ct, b"{}".to_vec()).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("unauthorized")), "{b}");
    let fake = format!("kairos_{}", "0".repeat(64));
    let (s, _) = raw_post(&app, Some(&fake), json_ct, b"{}".to_vec()).await;
    assert_eq!(s, 401);

    let (s, b) = raw_post(&app, Some(&key), "text/plain", b"{}".to_vec()).await;
    assert_eq!((s, b["code"].as_str()), (415, Some("unsupported_media_type")), "{b}");

    let big = json!({"events": [event("big", "x.y", "a", json!({"blob": "x".repeat(4096)}))]});
    let (s, b) = app.post_events(&big).await;
    assert_eq!((s, b["code"].as_str()), (413, Some("too_large")), "{b}");

    let many: Vec<_> = (0..4)
        .map(|i| event(&format!("n{i}"), "user.logged_in", "a", json!({})))
        .collect();
    let (s, b) = app.post_events(&json!(many)).await;
    assert_eq!((s, b["code"].as_str()), (413, Some("too_large")), "{b}");

    // None of the rejected requests recorded anything.
    assert_eq!(event_count(&app).await, 0);

    // Unknown routes and unknown jobs are JSON 404s.
    let (s, _) = app.get("/v1/nope", Some(&key)).await;
    assert_eq!(s, 404);
    let (s, b) = app.get("/v1/jobs/does-not-exist", Some(&key)).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_over_its_rate_gets_429() {
    let mut app = spawn_app(
        Deployment::Embedded,
        &format!("[api]\nrate_per_second = 5\nrate_burst = 5\n{RULES}"),
    )
    .await;
    let five: Vec<_> = (0..5)
        .map(|i| event(&format!("r{i}"), "user.logged_in", "a", json!({})))
        .collect();
    let (s, b) = app.post_events(&json!(five)).await;
    assert_eq!(s, 202, "{b}");
    let (s, b) = app.post_events(&event("r5", "user.logged_in", "a", json!({}))).await;
    assert_eq!((s, b["code"].as_str()), (429, Some("rate_limited")), "{b}");
    assert_eq!(event_count(&app).await, 5);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_is_503_and_nothing_is_acknowledged() {
    let mut app = spawn_app(Deployment::Distributed, RULES).await;
    // Authenticate once while the store is up, then take the store away.
    let (s, _) = app.post_events(&event("ok1", "user.logged_in", "a", json!({}))).await;
    assert_eq!(s, 202);
    app.store.close().await;
    let (s, b) = app.post_events(&event("down1", "user.logged_in", "a", json!({}))).await;
    assert_eq!((s, b["code"].as_str()), (503, Some("unavailable")), "{b}");
    let (s, _) = app.get("/readyz", None).await;
    assert_eq!(s, 503);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_down_is_503_and_the_ingest_is_undone() {
    let mut app = spawn_app(Deployment::Embedded, RULES).await;
    // Break the embedded queue underneath the running process.
    sqlx::query("DROP TABLE kairos_queue")
        .execute(app.store.pool())
        .await
        .unwrap();
    let (s, b) = app.post_events(&event("q1", "user.logged_in", "a", json!({}))).await;
    assert_eq!((s, b["code"].as_str()), (503, Some("unavailable")), "{b}");
    assert_eq!(event_count(&app).await, 0, "a 503 leaves nothing recorded");
    let counts = app.store.job_counts(None).await.unwrap();
    assert!(counts.is_empty(), "{counts:?}");
    app.shutdown().await;
}
