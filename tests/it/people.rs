//! Accounts and people: profiles by API and by event, tenant isolation,
//! validation, pagination, erasure (every table that held the data, and a
//! job finishing after the erasure), the audit log — on both deployments.

use std::time::Duration;

use kairos_core::enqueue::NewJob;
use kairos_core::profile::REDACTED;
use kairos_core::store::NewAlert;
use kairos_jobs::sentiment::scores::{self, ScoreRow};
use serde_json::{json, Value};
use sqlx::Row;

use crate::common::*;

const RULES: &str = r#"
[[rules]]
on = "*"
run = ["activity"]

[[rules]]
on = "account.updated"
run = ["profile"]

[[rules]]
on = "person.updated"
run = ["profile"]

[[rules]]
on = "diagnostic.*"
run = ["probe"]

[jobs.probe]
max_attempts = 1
"#;

const SETTLE: Duration = Duration::from_secs(30);

async fn call(app: &TestApp, method: reqwest::Method, path: &str, key: &str, body: Option<&Value>) -> (u16, Value) {
    let mut req = app.http.request(method, format!("{}{path}", app.base)).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn put(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    call(app, reqwest::Method::PUT, path, &app.key, Some(body)).await
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    call(app, reqwest::Method::GET, path, &app.key, None).await
}

async fn delete(app: &TestApp, path: &str) -> (u16, Value) {
    call(app, reqwest::Method::DELETE, path, &app.key, None).await
}

fn account_body() -> Value {
    json!({
        "display_name": "Clínica Norte",
        "language": "es",
        "time_zone": "America/Bogota",
        "plan": "pro",
        "renewal_date": "2027-03-31",
        "owner": "csm@tenant.example",
        "attributes": {"seats": 40, "segment": "health"},
        "reports_enabled": false,
    })
}

fn person_body() -> Value {
    json!({
        "name": "Ana Gómez",
        "email": "ana@clinicanorte.co",
        "phone": "+57 300 123 4567",
        "role": "executive",
        "time_zone": "Europe/Madrid",
        "channels": ["email", "in_app"],
        "consent": {"email": {"granted": true, "given_at": "2026-11-01T10:00:00+01:00"}},
        "attributes": {"title": "CEO"},
    })
}

/// A profile without what differs between two copies (ids, timestamps).
fn comparable(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in ["id", "account_id", "created_at", "updated_at"] {
            o.remove(k);
        }
    }
    v
}

fn profile_event(id: &str, kind: &str, account: &str, user: Option<&str>, data: Value) -> Value {
    let mut e = event(id, kind, account, data);
    if let Some(u) = user {
        e["user_id"] = json!(u);
    }
    e
}

// ---------------------------------------------------------------------------

async fn api_and_event_upserts_agree(deployment: Deployment) {
    let app = spawn_app(deployment, RULES).await;
    assert_eq!(put(&app, "/v1/accounts/acct-api", &account_body()).await.0, 201);
    assert_eq!(
        put(&app, "/v1/accounts/acct-api/people/p1", &person_body()).await.0,
        201
    );
    assert_eq!(
        put(&app, "/v1/accounts/acct-api", &account_body()).await.0,
        200,
        "replace"
    );

    let (status, resp) = app
        .post_events(&json!([
            profile_event("pe-1", "account.updated", "acct-evt", None, account_body()),
            profile_event("pe-2", "person.updated", "acct-evt", Some("p1"), person_body()),
        ]))
        .await;
    assert_eq!(status, 202, "{resp}");
    let jobs = app.wait_settled(&job_ids(&resp), SETTLE).await;
    for j in jobs.iter().filter(|j| j.kind == "profile") {
        assert_eq!(j.state, kairos_core::store::JobState::Succeeded, "{j:?}");
    }
    let (_, a_api) = get(&app, "/v1/accounts/acct-api").await;
    let (_, a_evt) = get(&app, "/v1/accounts/acct-evt").await;
    assert_eq!(comparable(a_api.clone()), comparable(a_evt));
    assert_eq!(
        a_api["resolved"],
        json!({"language": "es", "time_zone": "America/Bogota"})
    );
    let (_, p_api) = get(&app, "/v1/accounts/acct-api/people/p1").await;
    let (_, p_evt) = get(&app, "/v1/accounts/acct-evt/people/p1").await;
    assert_eq!(comparable(p_api.clone()), comparable(p_evt));
    assert_eq!(p_api["consent"]["email"]["given_at"], "2026-11-01T09:00:00.000Z");
    // Language from the account, zone the person's own.
    assert_eq!(
        p_api["resolved"],
        json!({"language": "es", "time_zone": "Europe/Madrid"})
    );

    // An event merges like a PATCH: only what it carries changes.
    let (_, resp) = app
        .post_events(&json!(profile_event(
            "pe-3",
            "person.updated",
            "acct-evt",
            Some("p1"),
            json!({"role": "admin", "phone": null})
        )))
        .await;
    app.wait_settled(&job_ids(&resp), SETTLE).await;
    let (status, patched) = call(
        &app,
        reqwest::Method::PATCH,
        "/v1/accounts/acct-api/people/p1",
        &app.key,
        Some(&json!({"role": "admin", "phone": null})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, p_evt) = get(&app, "/v1/accounts/acct-evt/people/p1").await;
    assert_eq!(comparable(patched.clone()), comparable(p_evt));
    assert_eq!(patched["email"], "ana@clinicanorte.co");
    assert_eq!(patched["phone"], Value::Null);

    // Profile events are validated at ingest with the same function.
    let (status, err) = app
        .post_events(&json!({"events": [profile_event(
            "pe-4",
            "person.updated",
            "acct-evt",
            Some("p1"),
            json!({"email": "not-an-email"})
        )]}))
        .await;
    assert_eq!(
        (status, err["field"].as_str()),
        (400, Some("events[0].data.email")),
        "{err}"
    );
    let (status, err) = app
        .post_events(&json!(profile_event(
            "pe-5",
            "person.updated",
            "acct-evt",
            None,
            json!({})
        )))
        .await;
    assert_eq!((status, err["field"].as_str()), (400, Some("user_id")), "{err}");
    // Profile events are not customer activity.
    let activity = sqlx::query("SELECT COUNT(*) AS n FROM account_activity WHERE tenant_id = $1 AND account_id = $2")
        .bind(&app.tenant_id)
        .bind("acct-evt")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(activity.get::<i64, _>("n"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_people_api_and_event_upserts_agree() {
    api_and_event_upserts_agree(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_people_api_and_event_upserts_agree() {
    api_and_event_upserts_agree(Deployment::Distributed).await;
}

// ---------------------------------------------------------------------------

async fn tenants_are_isolated(deployment: Deployment) {
    let app = spawn_app(deployment, RULES).await;
    let b = app.store.create_tenant("tenant-b", None).await.unwrap().secret;
    put(&app, "/v1/accounts/acct-1", &account_body()).await;
    put(&app, "/v1/accounts/acct-1/people/p1", &person_body()).await;
    use reqwest::Method as M;
    for (method, path, body) in [
        (M::GET, "/v1/accounts/acct-1", None),
        (M::PATCH, "/v1/accounts/acct-1", Some(json!({"plan": "free"}))),
        (M::DELETE, "/v1/accounts/acct-1", None),
        (M::DELETE, "/v1/accounts/acct-1?erase=true", None),
        (M::GET, "/v1/accounts/acct-1/people/p1", None),
        (
            M::PATCH,
            "/v1/accounts/acct-1/people/p1",
            Some(json!({"name": "Mallory"})),
        ),
        (M::DELETE, "/v1/accounts/acct-1/people/p1", None),
    ] {
        let (status, _) = call(&app, method.clone(), path, &b, body.as_ref()).await;
        assert_eq!(status, 404, "tenant B: {method} {path}");
    }
    let (_, list) = call(&app, M::GET, "/v1/accounts", &b, None).await;
    assert_eq!(list["items"], json!([]));
    let (status, _) = call(&app, M::GET, "/v1/accounts/acct-1/people", &b, None).await;
    assert_eq!(status, 404, "tenant B lists A's account's people");
    // B's own acct-1 is a different profile; A's is untouched.
    let (status, _) = call(&app, M::PUT, "/v1/accounts/acct-1", &b, Some(&json!({"plan": "free"}))).await;
    assert_eq!(status, 201);
    let (_, a) = get(&app, "/v1/accounts/acct-1").await;
    assert_eq!(a["plan"], "pro");
    let (_, p) = get(&app, "/v1/accounts/acct-1/people/p1").await;
    assert_eq!(p["name"], "Ana Gómez");
    assert_eq!(get(&app, "/v1/accounts/acct-1/people/p1").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_people_tenants_are_isolated() {
    tenants_are_isolated(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_people_tenants_are_isolated() {
    tenants_are_isolated(Deployment::Distributed).await;
}

// ---------------------------------------------------------------------------

async fn validation_names_each_field(deployment: Deployment) {
    let app = spawn_app(deployment, RULES).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/v1/accounts/a1/people/p1", json!({"email": "ana@"}), "email"),
        (
            "/v1/accounts/a1/people/p1",
            json!({"email": "ana example.com"}),
            "email",
        ),
        (
            "/v1/accounts/a1/people/p1",
            json!({"time_zone": "Europe/Atlantis"}),
            "time_zone",
        ),
        ("/v1/accounts/a1/people/p1", json!({"language": "fr"}), "language"),
        ("/v1/accounts/a1/people/p1", json!({"role": "overlord"}), "role"),
        ("/v1/accounts/a1/people/p1", json!({"phone": "ring ring"}), "phone"),
        (
            "/v1/accounts/a1/people/p1",
            json!({"channels": ["email", "carrier_pigeon"]}),
            "channels[1]",
        ),
        (
            "/v1/accounts/a1/people/p1",
            json!({"consent": {"email": {"granted": true, "given_at": "last tuesday"}}}),
            "consent.email.given_at",
        ),
        (
            "/v1/accounts/a1/people/p1",
            json!({"consent": {"sms": {"granted": true, "given_at": "2026-01-01T00:00:00Z"}}}),
            "consent.sms",
        ),
        ("/v1/accounts/a1/people/p1", json!({"nickname": "A"}), "nickname"),
        ("/v1/accounts/a1/people/p1", json!({"attributes": "x"}), "attributes"),
        ("/v1/accounts/a1", json!({"language": "de"}), "language"),
        ("/v1/accounts/a1", json!({"time_zone": "GMT+25"}), "time_zone"),
        ("/v1/accounts/a1", json!({"renewal_date": "31/03/2027"}), "renewal_date"),
        ("/v1/accounts/a1", json!({"reports_enabled": "yes"}), "reports_enabled"),
        ("/v1/accounts/a1", json!({"display_name": ""}), "display_name"),
        ("/v1/accounts/a1", json!([1, 2]), ""),
    ];
    for (path, body, field) in cases {
        let (status, err) = put(&app, path, &body).await;
        assert_eq!(status, 400, "{path} {body}: {err}");
        assert_eq!(err["code"], "invalid_field", "{err}");
        assert_eq!(err["field"].as_str().unwrap_or(""), field, "{path} {body}: {err}");
        assert!(!err["message"].as_str().unwrap_or("").is_empty());
    }
    let long = "x".repeat(129);
    let (status, err) = put(&app, &format!("/v1/accounts/{long}"), &json!({})).await;
    assert_eq!((status, err["field"].as_str()), (400, Some("id")), "{err}");
    let (status, err) = put(&app, &format!("/v1/accounts/a1/people/{long}"), &json!({})).await;
    assert_eq!((status, err["field"].as_str()), (400, Some("person_id")), "{err}");
    // Not JSON, wrong content type, bad paging.
    let resp = app
        .http
        .put(format!("{}/v1/accounts/a1", app.base))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = app
        .http
        .put(format!("{}/v1/accounts/a1", app.base))
        .bearer_auth(&app.key)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let (status, err) = get(&app, "/v1/accounts?cursor=zz-not-hex").await;
    assert_eq!((status, err["field"].as_str()), (400, Some("cursor")), "{err}");
    let (status, err) = get(&app, "/v1/accounts?limit=0").await;
    assert_eq!((status, err["field"].as_str()), (400, Some("limit")), "{err}");
    let (status, err) = get(&app, "/v1/accounts/a1/people?role=king").await;
    assert_eq!((status, err["field"].as_str()), (400, Some("role")), "{err}");
    // PATCH of a missing profile is a 404, never an implicit create.
    let (status, _) = call(
        &app,
        reqwest::Method::PATCH,
        "/v1/accounts/none",
        &app.key,
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 404);
    // Nothing was written by any of the rejected requests.
    assert_eq!(get(&app, "/v1/accounts").await.1["items"], json!([]));
    // The endpoints are documented.
    let (_, doc) = app.get("/openapi.json", None).await;
    for path in [
        "/v1/accounts",
        "/v1/accounts:batch",
        "/v1/accounts/{id}",
        "/v1/accounts/{id}/people",
        "/v1/accounts/{id}/people/{person_id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing from /openapi.json");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_people_validation_names_each_field() {
    validation_names_each_field(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_people_validation_names_each_field() {
    validation_names_each_field(Deployment::Distributed).await;
}

// ---------------------------------------------------------------------------

async fn batch_and_pagination(deployment: Deployment) {
    let app = spawn_app(deployment, RULES).await;
    let items: Vec<Value> = (0..250)
        .map(|i| json!({"id": format!("acct-{i:04}"), "plan": if i % 5 == 0 { "enterprise" } else { "pro" }}))
        .collect();
    let (status, resp) = call(
        &app,
        reqwest::Method::POST,
        "/v1/accounts:batch",
        &app.key,
        Some(&json!({"accounts": items})),
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(
        (resp["created"].as_u64(), resp["updated"].as_u64()),
        (Some(250), Some(0))
    );
    // Merge: a second batch changes only what it sends.
    let (_, resp) = call(
        &app,
        reqwest::Method::POST,
        "/v1/accounts:batch",
        &app.key,
        Some(&json!({"accounts": [{"id": "acct-0001", "display_name": "One"}]})),
    )
    .await;
    assert_eq!(resp["results"][0]["status"], "updated");
    let (_, one) = get(&app, "/v1/accounts/acct-0001").await;
    assert_eq!(
        (one["plan"].as_str(), one["display_name"].as_str()),
        (Some("pro"), Some("One"))
    );

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/accounts?limit=100&cursor={c}"),
            None => "/v1/accounts?limit=100".into(),
        };
        let (status, page) = get(&app, &path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..250).map(|i| format!("acct-{i:04}")).collect();
    assert_eq!(seen, expected, "every account once, in id order");
    let (_, ent) = get(&app, "/v1/accounts?plan=enterprise&limit=200").await;
    assert_eq!(ent["items"].as_array().unwrap().len(), 50);
    let (_, off) = get(&app, "/v1/accounts?reports_enabled=false").await;
    assert_eq!(off["items"], json!([]));

    // People list: role filter and cursor.
    for i in 0..5 {
        let role = if i < 2 { "executive" } else { "member" };
        put(
            &app,
            &format!("/v1/accounts/acct-0001/people/p{i}"),
            &json!({"role": role}),
        )
        .await;
    }
    let (_, first) = get(&app, "/v1/accounts/acct-0001/people?limit=3").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let c = first["next_cursor"].as_str().unwrap();
    let (_, rest) = get(&app, &format!("/v1/accounts/acct-0001/people?limit=3&cursor={c}")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert!(rest.get("next_cursor").is_none());
    let (_, execs) = get(&app, "/v1/accounts/acct-0001/people?role=executive").await;
    let ids: Vec<&str> = execs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["p0", "p1"]);

    // Limits: 1,001 accounts is too many; one bad item rejects the batch, named.
    let too_many: Vec<Value> = (0..1001).map(|i| json!({"id": format!("x-{i}")})).collect();
    let (status, err) = call(
        &app,
        reqwest::Method::POST,
        "/v1/accounts:batch",
        &app.key,
        Some(&json!({"accounts": too_many})),
    )
    .await;
    assert_eq!(status, 413, "{err}");
    assert!(err["message"].as_str().unwrap().contains("at most 1000"), "{err}");
    let (status, err) = call(
        &app,
        reqwest::Method::POST,
        "/v1/accounts:batch",
        &app.key,
        Some(&json!({"accounts": [{"id": "new-1"}, {"id": "new-2", "time_zone": "Nowhere"}]})),
    )
    .await;
    assert_eq!(
        (status, err["field"].as_str()),
        (400, Some("accounts[1].time_zone")),
        "{err}"
    );
    assert_eq!(
        get(&app, "/v1/accounts/new-1").await.0,
        404,
        "nothing of a rejected batch is written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_people_batch_and_pagination() {
    batch_and_pagination(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_people_batch_and_pagination() {
    batch_and_pagination(Deployment::Distributed).await;
}

// ---------------------------------------------------------------------------

/// Every table that held personal data, with the text columns to search.
const PII_TABLES: &[(&str, &str)] = &[
    (
        "people",
        "COALESCE(name, '') || ' ' || COALESCE(email, '') || ' ' || COALESCE(phone, '') || ' ' || attributes",
    ),
    (
        "accounts",
        "COALESCE(display_name, '') || ' ' || COALESCE(owner, '') || ' ' || attributes",
    ),
    ("events", "data"),
    (
        "job_runs",
        "payload || ' ' || COALESCE(last_error, '') || ' ' || COALESCE(result_ref, '')",
    ),
    ("alerts", "payload || ' ' || reason"),
    (
        "nudges",
        "COALESCE(subject, '') || ' ' || COALESCE(body, '') || ' ' || trigger_info",
    ),
    ("nudge_deliveries", "detail"),
];

/// A nudge to `person` as the `nudge` kind writes it, with one delivery attempt.
async fn store_nudge(app: &TestApp, account: &str, person: &str, name: &str, email: &str) {
    let id = uuid::Uuid::now_v7().to_string();
    let now = kairos_core::time::now_ms();
    sqlx::query(
        "INSERT INTO nudges (id, tenant_id, rule, account_id, person_id, dedupe_key, trigger_info, status, \
         subject, body, run_after, created_at, updated_at) \
         VALUES ($1, $2, 'welcome-back', $3, $4, $5, $6, 'sent', $7, $8, $9, $9, $9)",
    )
    .bind(&id)
    .bind(&app.tenant_id)
    .bind(account)
    .bind(person)
    .bind(format!("welcome-back|{account}|{person}|w1"))
    .bind(json!({"event": {"data": {"text": format!("{name} wrote this")}}}).to_string())
    .bind(format!("Hola {name}"))
    .bind(format!("{name}, te echamos de menos"))
    .bind(now)
    .execute(app.store.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO nudge_deliveries (id, tenant_id, nudge_id, attempt, channel, outcome, detail, at) \
         VALUES ($1, $2, $3, 1, 'email', 'sent', $4, $5)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&app.tenant_id)
    .bind(&id)
    .bind(format!("sent to {name} <{email}>"))
    .bind(now)
    .execute(app.store.pool())
    .await
    .unwrap();
}

/// How many rows of `table` (this tenant's) contain `needle` in the columns listed.
async fn rows_containing(app: &TestApp, table: &str, needle: &str) -> i64 {
    let cols = PII_TABLES.iter().find(|(t, _)| *t == table).unwrap().1;
    let rows = sqlx::query(&format!("SELECT {cols} AS t FROM {table} WHERE tenant_id = $1"))
        .bind(&app.tenant_id)
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    rows.iter().filter(|r| r.get::<String, _>("t").contains(needle)).count() as i64
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query(sql)
        .bind(&app.tenant_id)
        .fetch_one(app.store.pool())
        .await
        .unwrap()
        .get::<i64, _>("n")
}

/// Stores a sentiment result with an upset-customer alert and its webhook
/// job through the sentiment job's own write path.
async fn store_alert(app: &TestApp, event_id: &str, account: &str, user: &str, text: &str) -> Vec<NewJob> {
    let job_id = uuid::Uuid::now_v7().to_string();
    let row = ScoreRow {
        job_id: job_id.clone(),
        account_id: account.into(),
        event_id: event_id.into(),
        event_type: "comment.created".into(),
        label: "negative".into(),
        score: 0.93,
        polarity: -0.9,
        probabilities: json!({"negative": 0.93, "neutral": 0.05, "positive": 0.02}),
        language: Some("es".into()),
        urgency: 88,
        keywords: json!(["no funciona"]),
        model_version: "test-head".into(),
        scored_at: kairos_core::time::now_ms(),
        chunks: 1,
    };
    let details = json!({"event_type": "comment.created", "text": text, "label": "negative"});
    let alert = NewAlert {
        id: format!("{job_id}|a"),
        kind: "client_dissatisfaction".into(),
        severity: "critical".into(),
        reason: format!("negative comment.created from account {account}"),
        payload: details.clone(),
        dedup_key: format!("client_dissatisfaction|{event_id}"),
        account_id: account.into(),
        event_id: Some(event_id.into()),
        urgency: Some(row.urgency),
        created_at: row.scored_at,
    };
    let mut jobs = vec![NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: app.tenant_id.clone(),
        kind: "webhook".into(),
        event_id: None,
        payload: json!({"id": alert.id, "account_id": account, "event_id": event_id, "details": details}).to_string(),
        max_attempts: 3,
        run_after: Some(i64::MAX / 4),
    }];
    scores::store(&app.store, &app.tenant_id, Some(user), &row, Some(&alert), &mut jobs)
        .await
        .unwrap();
    jobs
}

async fn erasure_removes_personal_data(deployment: Deployment) {
    let app = spawn_app(deployment, RULES).await;
    let secret1 = "No funciona el login de Ana-7731, es urgente";
    let secret2 = "Luis-5512 says the export is broken";
    put(
        &app,
        "/v1/accounts/acct-1",
        &json!({"display_name": "Norte-3391 Clinic", "owner": "csm@x.io"}),
    )
    .await;
    put(
        &app,
        "/v1/accounts/acct-1/people/p2",
        &json!({"name": "Luis-5512", "email": "luis5512@x.io"}),
    )
    .await;
    let mut comment = event(
        "c1",
        "comment.created",
        "acct-1",
        json!({"text": secret1, "source": "web"}),
    );
    comment["user_id"] = json!("p1");
    let mut other = event(
        "c2",
        "ticket.created",
        "acct-1",
        json!({"subject": secret2, "priority": "high"}),
    );
    other["user_id"] = json!("p2");
    let (status, resp) = app
        .post_events(&json!([
            profile_event(
                "pp1",
                "person.updated",
                "acct-1",
                Some("p1"),
                json!({"name": "Ana-7731", "email": "ana7731@x.io", "role": "executive"})
            ),
            comment,
            other,
        ]))
        .await;
    assert_eq!(status, 202, "{resp}");
    app.wait_settled(&job_ids(&resp), SETTLE).await;
    assert_eq!(
        get(&app, "/v1/accounts/acct-1/people/p1").await.0,
        200,
        "created by the event"
    );
    store_alert(&app, "c1", "acct-1", "p1", secret1).await;
    store_alert(&app, "c2", "acct-1", "p2", secret2).await;
    store_nudge(&app, "acct-1", "p1", "Ana-7731", "ana7731@x.io").await;
    store_nudge(&app, "acct-1", "p2", "Luis-5512", "luis5512@x.io").await;

    for needle in ["Ana-7731", "ana7731@x.io"] {
        let held: i64 = {
            let mut n = 0;
            for (table, _) in PII_TABLES {
                n += rows_containing(&app, table, needle).await;
            }
            n
        };
        assert!(held >= 4, "{needle} should be stored before the erasure ({held} rows)");
    }

    // Erase p1.
    let (status, erasure) = delete(&app, "/v1/accounts/acct-1/people/p1").await;
    assert_eq!(status, 200, "{erasure}");
    assert_eq!(erasure["repeated"], false);
    assert_eq!(erasure["actor"], "tenant:tenant-a");
    assert_eq!(erasure["counts"]["people"], 1);
    assert_eq!(erasure["counts"]["events"], 2, "the comment and the profile event");
    assert_eq!(erasure["counts"]["alerts"], 1);
    assert!(erasure["counts"]["job_runs"].as_u64().unwrap() >= 4, "{erasure}");
    for (table, _) in PII_TABLES {
        for needle in ["Ana-7731", "ana7731@x.io"] {
            assert_eq!(
                rows_containing(&app, table, needle).await,
                0,
                "{needle} left in {table}"
            );
        }
        // The other person's data is untouched.
        if matches!(*table, "events" | "alerts" | "people" | "nudges" | "nudge_deliveries") {
            assert!(
                rows_containing(&app, table, "Luis-5512").await > 0,
                "p2's data lost from {table}"
            );
        }
    }
    let data: String = sqlx::query("SELECT data FROM events WHERE tenant_id = $1 AND event_id = 'c1'")
        .bind(&app.tenant_id)
        .fetch_one(app.store.pool())
        .await
        .unwrap()
        .get("data");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap(),
        json!({"text": REDACTED, "source": "web"})
    );
    // Anonymous aggregates stay.
    assert_eq!(
        count(&app, "SELECT COUNT(*) AS n FROM sentiment_scores WHERE tenant_id = $1").await,
        2
    );
    assert_eq!(
        count(
            &app,
            "SELECT comments AS n FROM account_activity WHERE tenant_id = $1 AND account_id = 'acct-1'"
        )
        .await,
        1
    );
    assert_eq!(get(&app, "/v1/accounts/acct-1/people/p1").await.0, 404);
    let (_, alerts) = app.get("/v1/alerts", Some(&app.key)).await;
    assert_eq!(
        alerts.as_array().unwrap().len(),
        2,
        "alerts kept, only their excerpt redacted"
    );

    // Idempotent: the same record again, nothing new written.
    let (status, again) = delete(&app, "/v1/accounts/acct-1/people/p1").await;
    assert_eq!(status, 200);
    assert_eq!(
        (again["id"].clone(), again["repeated"].clone()),
        (erasure["id"].clone(), json!(true))
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) AS n FROM erasures WHERE tenant_id = $1").await,
        1
    );
    // Unknown subjects are 404.
    assert_eq!(delete(&app, "/v1/accounts/acct-1/people/nobody").await.0, 404);
    assert_eq!(delete(&app, "/v1/accounts/nothing?erase=true").await.0, 404);

    // Erase the whole account: p2, the profile, every text.
    let (status, acct) = delete(&app, "/v1/accounts/acct-1?erase=true").await;
    assert_eq!(status, 200, "{acct}");
    assert_eq!(
        (acct["counts"]["accounts"].as_u64(), acct["counts"]["people"].as_u64()),
        (Some(1), Some(1))
    );
    for (table, _) in PII_TABLES {
        for needle in ["Luis-5512", "luis5512@x.io", "Norte-3391", "csm@x.io"] {
            assert_eq!(
                rows_containing(&app, table, needle).await,
                0,
                "{needle} left in {table}"
            );
        }
    }
    assert_eq!(get(&app, "/v1/accounts/acct-1").await.0, 404);
    assert_eq!(
        count(&app, "SELECT COUNT(*) AS n FROM erasures WHERE tenant_id = $1").await,
        2
    );
    assert_eq!(delete(&app, "/v1/accounts/acct-1?erase=true").await.1["repeated"], true);
    assert_eq!(
        count(
            &app,
            "SELECT events AS n FROM account_activity WHERE tenant_id = $1 AND account_id = 'acct-1'"
        )
        .await,
        2,
        "aggregates kept"
    );
    // Recorded in the audit log, by the API key's tenant.
    let log = app.store.audit_log(Some(&app.tenant_id), 10).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["account.erased", "person.erased"]);
    assert!(log.iter().all(|e| e.actor == "tenant:tenant-a"));
    assert_eq!(log[1].target, "acct-1/p1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_people_erasure_removes_personal_data() {
    erasure_removes_personal_data(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_people_erasure_removes_personal_data() {
    erasure_removes_personal_data(Deployment::Distributed).await;
}

// ---------------------------------------------------------------------------

/// A worker that fetched a job before the erasure finishes it after: its
/// payload still has the text (the queue message was taken before), yet
/// nothing personal lands. Deterministic: the erasure runs first, then the
/// jobs' result-writing paths with the pre-erasure payloads.
async fn jobs_finishing_after_erasure_write_nothing_personal(deployment: Deployment) {
    let app = spawn_app(deployment, RULES).await;
    let text = "Mi contraseña de Eva-4410 no funciona";
    let mut comment = event("c1", "comment.created", "acct-1", json!({"text": text}));
    comment["user_id"] = json!("p1");
    let (_, resp) = app.post_events(&json!([comment])).await;
    app.wait_settled(&job_ids(&resp), SETTLE).await;
    put(&app, "/v1/accounts/acct-1/people/p1", &json!({"name": "Eva-4410"})).await;
    assert_eq!(delete(&app, "/v1/accounts/acct-1/people/p1").await.0, 200);

    // The sentiment job's write: alert excerpt and the webhook payload it
    // queues come out redacted.
    let queued = store_alert(&app, "c1", "acct-1", "p1", text).await;
    assert!(!queued[0].payload.contains("Eva-4410"), "{}", queued[0].payload);
    for (table, _) in PII_TABLES {
        assert_eq!(
            rows_containing(&app, table, "Eva-4410").await,
            0,
            "written back into {table}"
        );
    }
    assert_eq!(
        count(&app, "SELECT COUNT(*) AS n FROM alerts WHERE tenant_id = $1").await,
        1
    );

    // A profile event queued before the erasure does not re-create the person.
    let stale = json!({
        "id": "pp-stale", "type": "person.updated", "account_id": "acct-1", "user_id": "p1",
        "occurred_at_ms": 0, "data": {"name": "Eva-4410", "email": "eva@x.io"}
    });
    let ctx = kairos_jobs::JobContext {
        job_id: "stale-job".into(),
        tenant_id: app.tenant_id.clone(),
        attempt: 1,
        max_attempts: 5,
        store: app.store.clone(),
        queue: app.queue.clone(),
    };
    let registry = kairos_jobs::Registry::from_config(&Default::default(), &["profile".into()], &app.store)
        .await
        .unwrap();
    let profile = registry.get("profile").unwrap();
    let out = profile.run(&ctx, &stale.to_string()).await.unwrap();
    assert!(out.result_ref.unwrap().contains("erased"));
    assert_eq!(get(&app, "/v1/accounts/acct-1/people/p1").await.0, 404);
    // The tenant re-creating the person through the API is explicit: allowed.
    assert_eq!(
        put(&app, "/v1/accounts/acct-1/people/p1", &json!({"role": "admin"}))
            .await
            .0,
        201
    );
    let out = profile.run(&ctx, &stale.to_string()).await.unwrap();
    assert!(!out.result_ref.unwrap().contains("erased"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_people_jobs_finishing_after_erasure_write_nothing_personal() {
    jobs_finishing_after_erasure_write_nothing_personal(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_people_jobs_finishing_after_erasure_write_nothing_personal() {
    jobs_finishing_after_erasure_write_nothing_personal(Deployment::Distributed).await;
}

// ---------------------------------------------------------------------------

async fn cli_audit_and_accounts(deployment: Deployment) {
    let app = spawn_app(deployment, RULES).await;
    let config = app.env.config_file(RULES);
    let (ok, out, err) = run_cli(&config, &["tenants", "create", "audited"]).await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run_cli(&config, &["tenants", "rotate-key", "audited"]).await;
    assert!(ok, "{out}{err}");
    // A dead job to retry.
    let (_, resp) = app
        .post_events(&json!(event(
            "d1",
            "diagnostic.fail",
            "acct-1",
            json!({"probe": {"permanent": true}})
        )))
        .await;
    let dead = app
        .wait_settled(&job_ids(&resp), SETTLE)
        .await
        .into_iter()
        .find(|j| j.kind == "probe")
        .unwrap();
    assert_eq!(dead.state, kairos_core::store::JobState::Dead);
    let (ok, out, err) = run_cli(&config, &["jobs", "retry", &dead.id]).await;
    assert!(ok, "{out}{err}");

    let log = app.store.audit_log(None, 50).await.unwrap();
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or("unknown".into());
    let find = |action: &str| {
        log.iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("no {action} in {log:?}"))
    };
    let created = find("tenant.created");
    assert_eq!(
        (created.target.as_str(), created.actor.clone()),
        ("audited", format!("cli:{user}"))
    );
    assert!(created.tenant_id.is_some());
    assert_eq!(find("key.rotated").target, "audited");
    let retried = find("job.retried");
    assert_eq!(
        (retried.target.as_str(), retried.tenant_id.as_deref()),
        (dead.id.as_str(), Some(app.tenant_id.as_str()))
    );
    let (ok, out, err) = run_cli(&config, &["audit", "--tenant", "audited"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("tenant.created") && out.contains("key.rotated") && !out.contains("job.retried"),
        "{out}"
    );

    // Operators' view of profiles.
    put(&app, "/v1/accounts/acct-1", &account_body()).await;
    put(&app, "/v1/accounts/acct-1/people/p1", &person_body()).await;
    let (ok, out, err) = run_cli(&config, &["accounts", "list", "--tenant", "tenant-a"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("acct-1") && out.contains("Clínica Norte") && out.contains("America/Bogota"),
        "{out}"
    );
    let (ok, out, err) = run_cli(&config, &["accounts", "show", "--tenant", "tenant-a", "acct-1"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("Ana Gómez") && out.contains("executive") && out.contains("consented: email"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_people_cli_audit_and_accounts() {
    cli_audit_and_accounts(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_people_cli_audit_and_accounts() {
    cli_audit_and_accounts(Deployment::Distributed).await;
}
