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
    let resp = app
        .http
        .get(format!("{}/v1/jobs/any", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("5")
    );
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

/// A NUL (or any control character) in an identifier is the client's 400,
/// naming the field, on both stores — never a 503 that clients retry.
async fn control_characters_are_400(deployment: Deployment) {
    let mut app = spawn_app(deployment, RULES).await;
    for (field, mut ev) in [
        ("id", event("a\u{0}b", "user.logged_in", "a", json!({}))),
        ("account_id", event("n2", "user.logged_in", "a\u{0}", json!({}))),
        ("user_id", event("n3", "user.logged_in", "a", json!({}))),
        ("account_id", event("n4", "user.logged_in", "tab\there", json!({}))),
    ] {
        if field == "user_id" {
            ev["user_id"] = json!("u\u{1b}");
        }
        let (s, b) = app.post_events(&ev).await;
        assert_eq!((s, b["field"].as_str()), (400, Some(field)), "{deployment:?} {ev}: {b}");
        assert!(b["message"].as_str().unwrap().contains("control"), "{b}");
    }
    let key = app.key.clone();
    for path in [
        "/v1/jobs/%00",
        "/v1/accounts/a%00/churn",
        "/v1/accounts/a%00/sentiment",
        "/v1/alerts?kind=x%00",
    ] {
        let (s, b) = app.get(path, Some(&key)).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (400, Some("invalid_field")),
            "{deployment:?} {path}: {b}"
        );
    }
    assert_eq!(event_count(&app).await, 0);
    println!("control characters: 4 bodies and 4 paths refused with 400 on {deployment:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_control_characters_are_400() {
    control_characters_are_400(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_control_characters_are_400() {
    control_characters_are_400(Deployment::Distributed).await;
}

/// Amounts the aggregates cannot hold exactly are refused at ingest; a
/// total that would overflow fails its job at once, naming field and value,
/// and leaves the total an exact integer — the same on both stores.
async fn amounts_never_overflow(deployment: Deployment) {
    use sqlx::Row;
    let mut app = spawn_app(deployment, RULES).await;
    let (s, b) = app
        .post_events(&event("p1", "payment.succeeded", "acct", json!({"amount": 1e308})))
        .await;
    assert_eq!((s, b["field"].as_str()), (400, Some("data.amount")), "{b}");
    let (s, b) = app
        .post_events(&json!([event(
            "p2",
            "payment.succeeded",
            "acct",
            json!({"amount_cents": i64::MAX})
        )]))
        .await;
    assert_eq!((s, b["field"].as_str()), (400, Some("[0].data.amount_cents")), "{b}");

    // A total already near the limit (as after many huge payments).
    let (s, b) = app
        .post_events(&event("p3", "payment.succeeded", "acct", json!({"amount_cents": 100})))
        .await;
    assert_eq!(s, 202, "{b}");
    app.wait_settled(&job_ids(&b), std::time::Duration::from_secs(20)).await;
    sqlx::query("UPDATE account_activity SET amount_paid_cents = $1 WHERE account_id = 'acct'")
        .bind(i64::MAX - 50)
        .execute(app.store.pool())
        .await
        .unwrap();
    let (s, b) = app
        .post_events(&event(
            "p4",
            "payment.succeeded",
            "acct",
            json!({"amount_cents": 9_007_199_254_740_991_i64}),
        ))
        .await;
    assert_eq!(s, 202, "a valid amount is accepted: {b}");
    let jobs = app.wait_settled(&job_ids(&b), std::time::Duration::from_secs(20)).await;
    let job = &jobs[0];
    let err = job.last_error.clone().unwrap_or_default();
    assert_eq!(job.attempts, 1, "a permanent error is not retried: {job:?}");
    assert!(
        err.contains("amount_paid_cents") && err.contains("9007199254740991"),
        "{err}"
    );
    let row = sqlx::query("SELECT amount_paid_cents, payments FROM account_activity WHERE account_id = 'acct'")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    let total: i64 = row.try_get("amount_paid_cents").expect("still an integer");
    assert_eq!(total, i64::MAX - 50);
    println!(
        "overflow on {deployment:?}: 1e308 and i64::MAX refused (400); overflowing total -> {}: {err}",
        job.state
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_amounts_never_overflow() {
    amounts_never_overflow(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_amounts_never_overflow() {
    amounts_never_overflow(Deployment::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_hygiene() {
    let mut app = spawn_app(Deployment::Embedded, RULES).await;
    let key = app.key.clone();
    let body = |id: &str| serde_json::to_vec(&event(id, "user.logged_in", "a", json!({}))).unwrap();

    // 405 with a JSON body and the Allow header.
    let resp = app.http.delete(format!("{}/v1/events", app.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert!(resp.headers().get("allow").is_some(), "{:?}", resp.headers());
    let b: serde_json::Value = resp.json().await.expect("405 body is JSON");
    assert_eq!(b["code"], "method_not_allowed", "{b}");
    // A path that does not parse: JSON too.
    let (s, b) = app.get("/v1/churn?min_risk=a&min_risk=b", Some(&key)).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["message"].is_string(), "{b}");

    // `bearer` in lower case is the same scheme.
    let resp = app
        .http
        .post(format!("{}/v1/events", app.base))
        .header("authorization", format!("bearer {key}"))
        .header("content-type", "application/json")
        .body(body("lc1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);

    // Only UTF-8 JSON.
    let (s, b) = raw_post(&app, Some(&key), "application/json; charset=latin1", body("cs1")).await;
    assert_eq!((s, b["code"].as_str()), (415, Some("unsupported_media_type")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("latin1"), "{b}");
    let (s, b) = raw_post(&app, Some(&key), "application/json; charset=\"UTF-8\"", body("cs2")).await;
    assert_eq!(s, 202, "{b}");

    // `data` is an object, never null.
    let mut null_data = event("dn1", "user.logged_in", "a", json!({}));
    null_data["data"] = serde_json::Value::Null;
    let (s, b) = app.post_events(&null_data).await;
    assert_eq!((s, b["field"].as_str()), (400, Some("data")), "{b}");
    println!("hygiene: 405 JSON + Allow, lower-case bearer 202, latin1 415, data:null 400");
    app.shutdown().await;
}

/// A client that stalls in its headers is dropped after the header
/// timeout; one that stalls in its body gets 408 after the body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut app = spawn_app(
        Deployment::Embedded,
        &format!("[api]\nheader_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\n{RULES}"),
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let slack = Duration::from_secs(2);

    // Half the headers, then nothing.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1) + slack, s.read_to_end(&mut buf)).await;
    let header_cut = start.elapsed();
    assert!(read.is_ok(), "connection still open after {header_cut:?}");
    assert!(header_cut >= Duration::from_millis(900), "{header_cut:?}");

    // Full headers, part of the body, then nothing.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\":",
        app.key
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1) + slack, s.read_to_end(&mut buf)).await;
    let body_cut = start.elapsed();
    assert!(read.is_ok(), "connection still open after {body_cut:?}");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");

    // The same on a route that is not ingest: a profile PUT's body stalls.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /v1/accounts/acct-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"plan\":",
        app.key
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1) + slack, s.read_to_end(&mut buf)).await;
    let profile_cut = start.elapsed();
    assert!(read.is_ok(), "connection still open after {profile_cut:?}");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    let (status, _) = app.get("/v1/accounts/acct-1", Some(&app.key)).await;
    assert_eq!(status, 404, "a timed-out write wrote nothing");

    // A kept-alive connection: one full request, then the next one's
    // headers stall — cut off as well, whatever the route.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/alerts HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1) + slack, s.read_to_end(&mut buf)).await;
    let keepalive_cut = start.elapsed();
    assert!(read.is_ok(), "kept-alive connection still open after {keepalive_cut:?}");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    println!(
        "slow clients (timeouts 1s): stalled headers closed after {header_cut:?}; stalled body got 408 after {body_cut:?} \
         (ingest), {profile_cut:?} (profile PUT); kept-alive connection with stalled headers closed after {keepalive_cut:?}"
    );
    assert_eq!(event_count(&app).await, 0);
    app.shutdown().await;
}
