//! `GET /v1/alerts`: tenant-scoped, filtered, newest first.

use kairos_core::store::{raise_alert, NewAlert};
use kairos_core::time::now_ms;

use crate::common::*;

async fn insert_alert(app: &TestApp, tenant: &str, id: &str, kind: &str, at: i64) {
    let alert = NewAlert {
        id: id.into(),
        account_id: "acct-1".into(),
        kind: kind.into(),
        severity: "critical".into(),
        reason: "churn risk 0.91".into(),
        payload: serde_json::json!({"probability": 0.91}),
        dedup_key: id.into(),
        event_id: None,
        urgency: None,
        created_at: at,
    };
    let mut tx = app.store.pool().begin().await.unwrap();
    assert!(raise_alert(&mut tx, tenant, &alert).await.unwrap());
    assert!(
        !raise_alert(&mut tx, tenant, &alert).await.unwrap(),
        "raised once per dedup key"
    );
    tx.commit().await.unwrap();
}

async fn alerts_are_listed_per_tenant(deployment: Deployment) {
    let mut app = spawn_app(deployment, "").await;
    let other = app.store.create_tenant("tenant-b", None).await.unwrap();
    let now = now_ms();
    insert_alert(&app, &app.tenant_id, "a1", "churn_critical", now - 2000).await;
    insert_alert(&app, &app.tenant_id, "a2", "client_dissatisfaction", now - 1000).await;
    insert_alert(
        &app,
        &app.tenant_id,
        "old",
        "churn_critical",
        now - 30 * 24 * 3600 * 1000,
    )
    .await;
    insert_alert(&app, &other.tenant.id, "b1", "churn_critical", now).await;

    let (s, body) = app.get("/v1/alerts", Some(&app.key)).await;
    assert_eq!(s, 200, "{body}");
    let ids: Vec<_> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["a2", "a1"], "own alerts of the last 7 days, newest first");
    assert_eq!(body[1]["details"]["probability"], 0.91);

    let (_, body) = app
        .get(
            "/v1/alerts?kind=churn_critical&since=2000-01-01T00:00:00Z",
            Some(&app.key),
        )
        .await;
    let ids: Vec<_> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["a1", "old"]);

    let (s, body) = app.get("/v1/alerts?since=yesterday", Some(&app.key)).await;
    assert_eq!((s, body["field"].as_str()), (400, Some("since")), "{body}");
    let (s, body) = app.get("/v1/alerts?limit=0", Some(&app.key)).await;
    assert_eq!((s, body["field"].as_str()), (400, Some("limit")), "{body}");
    let (s, body) = app.get("/v1/alerts?limit=lots", Some(&app.key)).await;
    assert_eq!((s, body["field"].as_str()), (400, Some("query")), "{body}");
    let (s, _) = app.get("/v1/alerts", None).await;
    assert_eq!(s, 401);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_alerts_are_listed_per_tenant() {
    alerts_are_listed_per_tenant(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_alerts_are_listed_per_tenant() {
    alerts_are_listed_per_tenant(Deployment::Distributed).await;
}
