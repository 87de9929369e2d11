//! Proactive nudges end to end, on both deployments: an event fires a rule
//! through the ingest path, the audience is chosen by role, each person
//! gets the first channel they consented to (a real SMTP server for
//! email, the in-app feed), the history says why, a second trigger in the
//! window is deduplicated; quiet hours delay (never drop), an urgent rule
//! goes through, caps and the kill switch stop what they must.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{event, job_ids, spawn_app, wait_for, Deployment, TestApp};
use crate::servers::SmtpServer;

const WAIT: Duration = Duration::from_secs(30);

async fn call(app: &TestApp, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.key);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn put_person(app: &TestApp, account: &str, id: &str, body: Value) {
    let (status, resp) = call(
        app,
        reqwest::Method::PUT,
        &format!("/v1/accounts/{account}/people/{id}"),
        Some(&body),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {resp}");
}

fn consent(channels: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for c in channels {
        m.insert(
            (*c).into(),
            json!({"granted": true, "given_at": "2026-11-01T10:00:00Z"}),
        );
    }
    Value::Object(m)
}

fn smtp_toml(server: &SmtpServer) -> String {
    format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"Kairos <nudges@kairos.test>\"\n",
        server.port
    )
}

const PAYMENT_RULE: &str = r#"
[[nudges.rules]]
name = "payment-failed"
trigger = { event = "payment.failed", filter = { "reason" = "card" } }
audience = { roles = ["admin"] }
channels = ["email", "in_app"]
priority = 5
[nudges.rules.templates.es]
subject = "Hola {{person.name}}: el pago de {{account.display_name}} falló"
body = "Motivo: {{event.data.reason}}."
[nudges.rules.templates.en]
subject = "Hi {{person.name}}: the payment of {{account.display_name}} failed"
body = "Reason: {{event.data.reason}}."
"#;

/// The account's history once every nudge has left `planned`/`delayed`
/// (or after `WAIT`, whatever it is then).
async fn settled_history(app: &TestApp, account: &str, expected: usize) -> Vec<Value> {
    let mut last = Vec::new();
    wait_for(WAIT, || async {
        let (_, h) = call(
            app,
            reqwest::Method::GET,
            &format!("/v1/accounts/{account}/nudges"),
            None,
        )
        .await;
        last = h["nudges"].as_array().cloned().unwrap_or_default();
        last.len() == expected
            && last
                .iter()
                .all(|n| !matches!(n["status"].as_str(), Some("planned" | "delayed")))
    })
    .await;
    last
}

fn by_person<'a>(history: &'a [Value], person: &str) -> &'a Value {
    history
        .iter()
        .find(|n| n["person_id"] == person)
        .unwrap_or_else(|| panic!("no nudge for {person} in {history:?}"))
}

async fn event_nudges_with_consent_fallback_and_dedupe(deployment: Deployment) {
    let smtp = SmtpServer::start().await;
    let app = spawn_app(deployment, &format!("{}{PAYMENT_RULE}", smtp_toml(&smtp))).await;
    let (s, _) = call(
        &app,
        reqwest::Method::PUT,
        "/v1/accounts/acme",
        Some(&json!({"display_name": "Acme", "language": "en"})),
    )
    .await;
    assert!(s == 200 || s == 201);
    put_person(
        &app,
        "acme",
        "ana",
        json!({"name": "Ana", "email": "ana@acme.test", "role": "admin", "language": "es",
               "consent": consent(&["email", "in_app"])}),
    )
    .await;
    put_person(
        &app,
        "acme",
        "bob",
        json!({"name": "Bob", "email": "bob@acme.test", "role": "admin", "consent": consent(&["in_app"])}),
    )
    .await;
    put_person(&app, "acme", "dan", json!({"name": "Dan", "role": "admin"})).await;
    put_person(
        &app,
        "acme",
        "cy",
        json!({"name": "Cy", "email": "cy@acme.test", "role": "member", "consent": consent(&["email"])}),
    )
    .await;

    // A payment failing for another reason fires nothing.
    let (s, r) = app
        .post_events(&json!([event(
            "e0",
            "payment.failed",
            "acme",
            json!({"reason": "limit"})
        )]))
        .await;
    assert_eq!(s, 202, "{r}");
    assert!(job_ids(&r).is_empty(), "{r}");

    let (s, r) = app
        .post_events(&json!([event(
            "e1",
            "payment.failed",
            "acme",
            json!({"reason": "card"})
        )]))
        .await;
    assert_eq!(s, 202, "{r}");
    let planners = job_ids(&r);
    assert_eq!(planners.len(), 1, "{r}");
    app.wait_settled(&planners, WAIT).await;

    let history = settled_history(&app, "acme", 3).await;
    assert_eq!(history.len(), 3, "admins only: {history:?}");
    let ana = by_person(&history, "ana");
    assert_eq!(ana["status"], "sent", "{ana}");
    assert_eq!(ana["channel"], "email");
    assert_eq!(ana["language"], "es");
    assert_eq!(ana["subject"], "Hola Ana: el pago de Acme falló");
    assert_eq!(ana["trigger"]["type"], "event");
    let bob = by_person(&history, "bob");
    assert_eq!(bob["status"], "sent", "{bob}");
    assert_eq!(bob["channel"], "in_app");
    let outcomes: Vec<(&str, &str)> = bob["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["channel"].as_str().unwrap(), d["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [("email", "no_consent"), ("in_app", "sent")]);
    let dan = by_person(&history, "dan");
    assert_eq!(dan["status"], "skipped", "{dan}");
    assert!(
        dan["reason"].as_str().unwrap().contains("no consent for email"),
        "{dan}"
    );

    // The email, as the recipient's server got it.
    let mail = smtp.wait_for(1, WAIT).await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["rcpt_tos"], json!(["ana@acme.test"]));
    assert_eq!(mail[0]["subject"], "Hola Ana: el pago de Acme falló");
    assert_eq!(
        mail[0]["message_id"],
        format!("<nudge-{}@kairos>", ana["id"].as_str().unwrap())
    );

    // Bob's feed; marking read is idempotent; someone else's nudge is not his.
    let (s, feed) = call(&app, reqwest::Method::GET, "/v1/people/bob/feed", None).await;
    assert_eq!(s, 200, "{feed}");
    assert_eq!(feed["items"].as_array().unwrap().len(), 1, "{feed}");
    assert_eq!(feed["items"][0]["subject"], "Hi Bob: the payment of Acme failed");
    let id = feed["items"][0]["id"].as_str().unwrap().to_owned();
    let read = format!("/v1/people/bob/feed/{id}/read");
    assert_eq!(call(&app, reqwest::Method::POST, &read, None).await.0, 204);
    assert_eq!(call(&app, reqwest::Method::POST, &read, None).await.0, 204);
    let (_, unread) = call(&app, reqwest::Method::GET, "/v1/people/bob/feed?unread=true", None).await;
    assert_eq!(unread["items"], json!([]), "{unread}");
    let ana_id = ana["id"].as_str().unwrap();
    let (s, _) = call(
        &app,
        reqwest::Method::POST,
        &format!("/v1/people/bob/feed/{ana_id}/read"),
        None,
    )
    .await;
    assert_eq!(s, 404);

    // A second failure in the same window: deduplicated, nothing new.
    let (_, r) = app
        .post_events(&json!([event(
            "e2",
            "payment.failed",
            "acme",
            json!({"reason": "card"})
        )]))
        .await;
    app.wait_settled(&job_ids(&r), WAIT).await;
    let (_, h) = call(&app, reqwest::Method::GET, "/v1/accounts/acme/nudges", None).await;
    assert_eq!(h["nudges"].as_array().unwrap().len(), 3, "{h}");
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test]
async fn event_nudges_with_consent_fallback_and_dedupe_embedded() {
    event_nudges_with_consent_fallback_and_dedupe(Deployment::Embedded).await;
}

#[tokio::test]
async fn event_nudges_with_consent_fallback_and_dedupe_distributed() {
    event_nudges_with_consent_fallback_and_dedupe(Deployment::Distributed).await;
}

/// Quiet hours around now in UTC: a person in UTC is delayed to the end of
/// the window (the job's `run_after`), a person in Tokyo (9 h ahead, out
/// of the window) is not, and an urgent rule reaches the UTC person now.
async fn quiet_hours_delay_unless_urgent(deployment: Deployment) {
    let now = chrono::Utc::now();
    let hhmm = |d: chrono::DateTime<chrono::Utc>| d.format("%H:%M").to_string();
    let start = hhmm(now - chrono::Duration::hours(1));
    let end = hhmm(now + chrono::Duration::hours(2));
    let extra = format!(
        r#"
[nudges]
quiet_hours = {{ start = "{start}", end = "{end}" }}

[[nudges.rules]]
name = "welcome"
trigger = {{ event = "signup.completed" }}
channels = ["in_app"]
[nudges.rules.templates.en]
subject = "Welcome"
body = "Hi"

[[nudges.rules]]
name = "outage"
trigger = {{ event = "outage.started" }}
channels = ["in_app"]
urgent = true
[nudges.rules.templates.en]
subject = "We are down"
body = "Sorry"
"#
    );
    let app = spawn_app(deployment, &extra).await;
    put_person(
        &app,
        "acme",
        "utc",
        json!({"role": "member", "time_zone": "UTC", "consent": consent(&["in_app"])}),
    )
    .await;
    put_person(
        &app,
        "acme",
        "tokyo",
        json!({"role": "member", "time_zone": "Asia/Tokyo", "consent": consent(&["in_app"])}),
    )
    .await;
    let (_, r) = app
        .post_events(&json!([
            event("s1", "signup.completed", "acme", json!({})),
            event("o1", "outage.started", "acme", json!({}))
        ]))
        .await;
    app.wait_settled(&job_ids(&r), WAIT).await;
    // Three go out now (welcome to Tokyo, outage to both); welcome to UTC waits.
    let mut history = Vec::new();
    assert!(
        wait_for(WAIT, || async {
            let (_, h) = call(&app, reqwest::Method::GET, "/v1/accounts/acme/nudges", None).await;
            history = h["nudges"].as_array().cloned().unwrap_or_default();
            history.iter().filter(|n| n["status"] == "sent").count() == 3
        })
        .await,
        "{history:?}"
    );
    let delayed: Vec<&Value> = history.iter().filter(|n| n["status"] != "sent").collect();
    assert_eq!(delayed.len(), 1, "{history:?}");
    let d = delayed[0];
    assert_eq!(
        (d["rule"].as_str(), d["person_id"].as_str()),
        (Some("welcome"), Some("utc"))
    );
    assert_eq!(d["status"], "delayed");
    assert!(d["reason"].as_str().unwrap().starts_with("quiet hours in UTC"), "{d}");
    let run_after = chrono::DateTime::parse_from_rfc3339(d["run_after"].as_str().unwrap()).unwrap();
    assert_eq!(hhmm(run_after.with_timezone(&chrono::Utc)), end, "{d}");
    // Its delivery job waits for the window's end, recorded on the job row.
    let pending = app
        .store
        .jobs_by_ids(&[uuid::Uuid::new_v5(
            &uuid::Uuid::from_u128(0x6b61_6972_6f73_6e75_6467_6500_0000_0001),
            format!("deliver|{}", d["id"].as_str().unwrap()).as_bytes(),
        )
        .to_string()])
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].run_after, Some(run_after.timestamp_millis()));
}

#[tokio::test]
async fn quiet_hours_delay_unless_urgent_embedded() {
    quiet_hours_delay_unless_urgent(Deployment::Embedded).await;
}

#[tokio::test]
async fn quiet_hours_delay_unless_urgent_distributed() {
    quiet_hours_delay_unless_urgent(Deployment::Distributed).await;
}

/// A person cap of one per three days: the second rule's nudge (fired
/// after the first was sent) is capped, with the cap named. The kill
/// switch then skips everything for the tenant.
#[tokio::test]
async fn caps_and_the_kill_switch_stop_nudges_with_the_reason() {
    let rules = |killed: &str| {
        format!(
            r#"
[nudges]
kill_switch = [{killed}]
person_caps = [{{ max = 1, per = "3d" }}]

[[nudges.rules]]
name = "first"
trigger = {{ event = "a.happened" }}
channels = ["in_app"]
[nudges.rules.templates.en]
subject = "A"
body = "a"

[[nudges.rules]]
name = "second"
trigger = {{ event = "b.happened" }}
channels = ["in_app"]
[nudges.rules.templates.en]
subject = "B"
body = "b"
"#
        )
    };
    for (killed, expected) in [("", ["sent", "capped"]), ("\"tenant-a\"", ["skipped", "skipped"])] {
        let app = spawn_app(Deployment::Embedded, &rules(killed)).await;
        put_person(
            &app,
            "acme",
            "p1",
            json!({"role": "member", "consent": consent(&["in_app"])}),
        )
        .await;
        for (i, t) in ["a.happened", "b.happened"].iter().enumerate() {
            let (_, r) = app
                .post_events(&json!([event(&format!("e{i}"), t, "acme", json!({}))]))
                .await;
            app.wait_settled(&job_ids(&r), WAIT).await;
            settled_history(&app, "acme", i + 1).await;
        }
        let history = settled_history(&app, "acme", 2).await;
        let status = |rule: &str| {
            history
                .iter()
                .find(|n| n["rule"] == rule)
                .map(|n| {
                    (
                        n["status"].as_str().unwrap().to_owned(),
                        n["reason"].as_str().unwrap().to_owned(),
                    )
                })
                .unwrap()
        };
        assert_eq!(status("first").0, expected[0], "{history:?}");
        assert_eq!(status("second").0, expected[1], "{history:?}");
        let reason = status("second").1;
        if killed.is_empty() {
            assert_eq!(reason, "person cap: 1 sent in the last 3d (max 1)");
        } else {
            assert_eq!(reason, "kill switch");
        }
    }
}

/// The sweep a schedule runs: an account without events for 14 days and an
/// account whose latest churn score is HIGH get nudged (the `{{score.*}}`
/// of the score in the message); an active, low-risk account does not.
async fn the_sweep_nudges_inactive_and_risky_accounts(deployment: Deployment) {
    let extra = r#"
[[rules]]
on = "*"
run = ["activity"]

[[schedules]]
name = "nudge-sweep"
cron = "0 9 * * *"
job = "nudge"
fan_out = "per_tenant"
payload = { sweep = true }

[[nudges.rules]]
name = "come-back"
trigger = { inactive_days = 14 }
channels = ["in_app"]
[nudges.rules.templates.en]
subject = "We miss you"
body = "Come back"

[[nudges.rules]]
name = "at-risk"
trigger = { churn_level = "HIGH" }
channels = ["success_manager"]
[nudges.rules.templates.en]
subject = "Call {{account.display_name}}"
body = "Churn risk {{score.risk_level}}"
"#;
    let app = spawn_app(deployment, extra).await;
    let now = chrono::Utc::now();
    let at = |days: i64| (now - chrono::Duration::days(days)).to_rfc3339();
    let mut events = Vec::new();
    for (account, days) in [("old", 20), ("fresh", 1), ("risky", 2)] {
        let mut e = event(&format!("ev-{account}"), "user.logged_in", account, json!({}));
        e["occurred_at"] = json!(at(days));
        events.push(e);
        let body = json!({"display_name": account.to_uppercase(), "owner": "csm@tenant.test"});
        let (s, _) = call(
            &app,
            reqwest::Method::PUT,
            &format!("/v1/accounts/{account}"),
            Some(&body),
        )
        .await;
        assert!(s == 200 || s == 201);
        put_person(
            &app,
            account,
            "p",
            json!({"role": "admin", "consent": consent(&["in_app", "success_manager"])}),
        )
        .await;
    }
    let (_, r) = app.post_events(&json!(events)).await;
    app.wait_settled(&job_ids(&r), WAIT).await;
    for (id, account, level) in [("s1", "risky", "HIGH"), ("s2", "fresh", "LOW")] {
        sqlx::query(
            "INSERT INTO churn_scores (id, tenant_id, account_id, probability, risk_level, factors, actions, \
             features, model_version, trigger_kind, trigger_ref, job_id, scored_at) \
             VALUES ($1, $2, $3, 0.7, $4, '[]', '[]', '{}', 'v1', 'schedule', 'x', 'j', $5)",
        )
        .bind(id)
        .bind(&app.tenant_id)
        .bind(account)
        .bind(level)
        .bind(now.timestamp_millis())
        .execute(app.store.pool())
        .await
        .unwrap();
    }
    let firer = kairos_scheduler::Firer {
        store: app.store.clone(),
        queue: std::sync::Arc::clone(&app.queue),
        replica: "test".into(),
    };
    let fired = kairos_scheduler::run_now(&firer, &app.config.scheduling(), "nudge-sweep")
        .await
        .unwrap();
    assert_eq!(fired.len(), 1, "{fired:?}");
    let old = settled_history(&app, "old", 1).await;
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(
        (old[0]["rule"].as_str(), old[0]["status"].as_str()),
        (Some("come-back"), Some("sent"))
    );
    assert_eq!(old[0]["trigger"]["inactive_days"], 14);
    let risky = settled_history(&app, "risky", 1).await;
    assert_eq!(risky.len(), 1, "{risky:?}");
    assert_eq!(risky[0]["channel"], "success_manager", "{risky:?}");
    assert_eq!(risky[0]["subject"], "Call RISKY");
    assert_eq!(risky[0]["body"], "Churn risk HIGH");
    assert_eq!(risky[0]["reason"], "task for csm@tenant.test");
    // Neither rule fires for the active, low-risk account.
    let (_, fresh) = call(&app, reqwest::Method::GET, "/v1/accounts/fresh/nudges", None).await;
    assert_eq!(fresh["nudges"], json!([]), "{fresh}");
}

#[tokio::test]
async fn the_sweep_nudges_inactive_and_risky_accounts_embedded() {
    the_sweep_nudges_inactive_and_risky_accounts(Deployment::Embedded).await;
}

#[tokio::test]
async fn the_sweep_nudges_inactive_and_risky_accounts_distributed() {
    the_sweep_nudges_inactive_and_risky_accounts(Deployment::Distributed).await;
}
