//! Proactive nudges end to end, on both deployments: an event fires a rule
//! through the ingest path, the audience is chosen by role, each person
//! gets the first channel they consented to (a real SMTP server for
//! email, the in-app feed), the history says why, a second trigger in the
//! window is deduplicated; quiet hours delay (never drop), an urgent rule
//! goes through, caps and the kill switch stop what they must.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{event, job_ids, run_cli, spawn_app, Deployment, TestApp};
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

/// The account's nudges once `cond` holds for them (polled every 50 ms;
/// panics after `WAIT` with the last history).
async fn history_when(app: &TestApp, account: &str, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, h) = call(
            app,
            reqwest::Method::GET,
            &format!("/v1/accounts/{account}/nudges"),
            None,
        )
        .await;
        let nudges = h["nudges"].as_array().cloned().unwrap_or_default();
        if cond(&nudges) {
            return nudges;
        }
        assert!(std::time::Instant::now() < deadline, "history of {account}: {nudges:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The account's history once it holds `expected` nudges, none of them
/// still `planned`, `delayed` or `sending`.
async fn settled_history(app: &TestApp, account: &str, expected: usize) -> Vec<Value> {
    history_when(app, account, |h| {
        h.len() == expected
            && h.iter()
                .all(|n| !matches!(n["status"].as_str(), Some("planned" | "delayed" | "sending")))
    })
    .await
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

    // Outcome events from the product: the first of each is kept; another
    // account's event cannot touch this nudge.
    let opened = |id: &str, account: &str, at: &str| {
        let mut e = event(id, "nudge.opened", account, json!({"nudge_id": ana_id}));
        e["occurred_at"] = json!(at);
        e
    };
    let (_, r) = app
        .post_events(&json!([
            opened("o1", "acme", "2026-11-20T10:00:00Z"),
            opened("o2", "other", "2026-11-19T10:00:00Z")
        ]))
        .await;
    app.wait_settled(&job_ids(&r), WAIT).await;
    let (_, r) = app
        .post_events(&json!([opened("o3", "acme", "2026-11-21T10:00:00Z")]))
        .await;
    app.wait_settled(&job_ids(&r), WAIT).await;
    let (_, h) = call(&app, reqwest::Method::GET, "/v1/accounts/acme/nudges", None).await;
    let ana_now = by_person(h["nudges"].as_array().unwrap(), "ana");
    assert_eq!(ana_now["opened_at"], "2026-11-20T10:00:00.000Z", "{ana_now}");
    assert_eq!(ana_now["clicked_at"], Value::Null);

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
    let history = history_when(&app, "acme", |h| {
        h.len() == 4 && h.iter().filter(|n| n["status"] == "sent").count() == 3
    })
    .await;
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

/// Stats from a constructed history with known answers: variant `a`
/// re-engages 60 of 100, `b` 45 of 100, the holdout 40 of 100 (7-day
/// window). `a` − holdout = 0.20, 95% interval [0.0642, 0.3358]: better.
/// `b` − holdout = 0.05, interval [−0.0868, 0.1868] includes zero: no
/// winner. Activity after the window and nudges younger than the window
/// do not count.
async fn stats_compare_variants_with_the_holdout(deployment: Deployment) {
    let app = spawn_app(deployment, "").await;
    let day = 86_400_000i64;
    let now = kairos_core::time::now_ms();
    let decided = now - 10 * day;
    let mut tx = app.store.pool().begin().await.unwrap();
    let mut rows: Vec<(String, &str, String, i64)> = Vec::new();
    for (variant, k) in [("a", 60), ("b", 45), ("holdout", 40)] {
        for i in 0..100 {
            let person = format!("{variant}-{i}");
            rows.push((format!("n-{person}"), variant, person.clone(), decided));
            // Re-engaged within the window, or active only after it.
            let at = if i < k { decided + day } else { decided + 8 * day };
            sqlx::query(
                "INSERT INTO events (tenant_id, event_id, type, account_id, user_id, occurred_at, received_at, data) \
                 VALUES ($1, $2, 'user.logged_in', 'acme', $3, $4, $4, '{}')",
            )
            .bind(&app.tenant_id)
            .bind(format!("ev-{person}"))
            .bind(&person)
            .bind(at)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    // Too recent to have had the whole window: left out.
    rows.push(("n-late".into(), "a", "late".into(), now - day));
    for (id, variant, person, created) in rows {
        sqlx::query(
            "INSERT INTO nudges (id, tenant_id, rule, account_id, person_id, dedupe_key, trigger_info, status, \
             variant, run_after, created_at, updated_at) \
             VALUES ($1, $2, 'exp', 'acme', $3, $1, '{}', $4, $5, $6, $6, $6)",
        )
        .bind(&id)
        .bind(&app.tenant_id)
        .bind(&person)
        .bind(if variant == "holdout" { "holdout" } else { "sent" })
        .bind(variant)
        .bind(created)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let (s, stats) = call(&app, reqwest::Method::GET, "/v1/nudges/stats?window_days=7", None).await;
    assert_eq!(s, 200, "{stats}");
    let rule = &stats["rules"][0];
    assert_eq!(rule["rule"], "exp", "{stats}");
    assert_eq!(rule["holdout"]["assigned"], 100);
    assert_eq!(rule["holdout"]["re_engaged"], 40);
    let close = |v: &Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-4;
    let a = &rule["variants"][0];
    assert_eq!(
        (a["variant"].as_str(), a["group"]["assigned"].as_u64()),
        (Some("a"), Some(100)),
        "{a}"
    );
    assert_eq!(a["group"]["re_engaged"], 60);
    assert!(
        close(&a["difference"], 0.2) && close(&a["ci_low"], 0.064210) && close(&a["ci_high"], 0.335790),
        "{a}"
    );
    assert_eq!(a["verdict"], "better");
    let b = &rule["variants"][1];
    assert_eq!(b["group"]["re_engaged"], 45, "{b}");
    assert!(close(&b["ci_low"], -0.086847) && close(&b["ci_high"], 0.186847), "{b}");
    assert_eq!(b["verdict"], "no difference shown");
    // A window longer than the history has: nothing old enough yet.
    let (_, none) = call(&app, reqwest::Method::GET, "/v1/nudges/stats?window_days=30", None).await;
    assert_eq!(none["rules"], json!([]), "{none}");

    // The CLI prints the same numbers.
    let config = app.env.config_file("");
    let (ok, out, err) = run_cli(&config, &["nudges", "stats", "--tenant", "tenant-a"]).await;
    assert!(ok, "{err}");
    let line = |v: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(v))
            .unwrap_or_else(|| panic!("no line for {v}: {out}"))
            .to_owned()
    };
    let a = line("a");
    assert!(
        a.contains("60/100 (60.0%)") && a.contains("+20.0 pp [+6.4, +33.6]") && a.ends_with("better"),
        "{a}"
    );
    assert!(line("b").ends_with("no difference shown"), "{out}");
}

#[tokio::test]
async fn stats_compare_variants_with_the_holdout_embedded() {
    stats_compare_variants_with_the_holdout(Deployment::Embedded).await;
}

#[tokio::test]
async fn stats_compare_variants_with_the_holdout_distributed() {
    stats_compare_variants_with_the_holdout(Deployment::Distributed).await;
}

/// The webhook channel: the tenant's endpoint gets the nudge as a signed
/// body (a 503 first: the `webhook` job retries it), once; the history
/// records the queued webhook job.
async fn the_webhook_channel_posts_a_signed_nudge(deployment: Deployment) {
    let (url, received) = crate::sentiment::receiver(1).await;
    let extra = format!(
        r#"{}
[[nudges.rules]]
name = "renewal"
trigger = {{ event = "renewal.upcoming" }}
channels = ["webhook", "in_app"]
urgent = true
[nudges.rules.templates.es]
subject = "Tu renovación, {{{{person.name}}}}"
body = "Renueva antes del {{{{event.data.date}}}}"
"#,
        crate::sentiment::webhook_config(&url)
    );
    let app = spawn_app(deployment, &extra).await;
    put_person(
        &app,
        "acme",
        "eva",
        json!({"name": "Eva", "role": "executive", "language": "es", "channels": ["webhook"],
               "consent": consent(&["webhook", "in_app"])}),
    )
    .await;
    let (_, r) = app
        .post_events(&json!([event(
            "r1",
            "renewal.upcoming",
            "acme",
            json!({"date": "2027-01-31"})
        )]))
        .await;
    app.wait_settled(&job_ids(&r), WAIT).await;
    let history = settled_history(&app, "acme", 1).await;
    assert_eq!(
        (history[0]["status"].as_str(), history[0]["channel"].as_str()),
        (Some("sent"), Some("webhook"))
    );
    assert_eq!(history[0]["deliveries"][0]["outcome"], "queued", "{history:?}");
    let deadline = std::time::Instant::now() + WAIT;
    while received.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no webhook received");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let body = crate::sentiment::verify(&got[0]);
    assert_eq!(body["type"], "nudge");
    assert_eq!(body["person_id"], "eva");
    assert_eq!(body["subject"], "Tu renovación, Eva");
    assert_eq!(body["body"], "Renueva antes del 2027-01-31");
    assert_eq!(body["id"], history[0]["id"]);
}

#[tokio::test]
async fn the_webhook_channel_posts_a_signed_nudge_embedded() {
    the_webhook_channel_posts_a_signed_nudge(Deployment::Embedded).await;
}

#[tokio::test]
async fn the_webhook_channel_posts_a_signed_nudge_distributed() {
    the_webhook_channel_posts_a_signed_nudge(Deployment::Distributed).await;
}

/// A sentiment alert (the real model scoring an upset ticket) reaches the
/// nudge kind through `follow_up = ["nudge"]` and nudges the account's
/// executive, with the alert's fields in the message.
#[tokio::test]
async fn an_upset_customer_alert_nudges_the_executive() {
    let rule = r#"
[[nudges.rules]]
name = "upset"
trigger = { sentiment_alert = true }
audience = { roles = ["executive"] }
channels = ["in_app"]
urgent = true
[nudges.rules.templates.es]
subject = "Cliente molesto ({{alert.severity}})"
body = "Urgencia {{alert.urgency}}"
"#;
    let app = spawn_app(
        Deployment::Embedded,
        &crate::sentiment::sentiment_config_with("follow_up = [\"nudge\"]", rule),
    )
    .await;
    put_person(
        &app,
        "acct-es",
        "boss",
        json!({"role": "executive", "language": "es", "consent": consent(&["in_app"])}),
    )
    .await;
    let ticket = event(
        "t1",
        "ticket.created",
        "acct-es",
        json!({"text": crate::sentiment::NEGATIVE_ES}),
    );
    let (s, r) = app.post_events(&json!([ticket])).await;
    assert_eq!(s, 202, "{r}");
    let history = settled_history(&app, "acct-es", 1).await;
    let n = &history[0];
    assert_eq!(
        (n["status"].as_str(), n["person_id"].as_str()),
        (Some("sent"), Some("boss")),
        "{n}"
    );
    assert_eq!(n["trigger"]["type"], "sentiment_alert");
    assert_eq!(n["trigger"]["alert"]["kind"], "client_dissatisfaction");
    let severity = n["trigger"]["alert"]["severity"].as_str().unwrap();
    assert!(!severity.is_empty(), "{n}");
    assert_eq!(n["subject"], format!("Cliente molesto ({severity})"), "{n}");
    assert!(n["body"].as_str().unwrap().starts_with("Urgencia "), "{n}");
    assert_ne!(n["body"], "Urgencia ", "the alert's urgency is filled in: {n}");
}

mod guarantees;
