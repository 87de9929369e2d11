//! Executive reports (#16): metrics config, facts from a known history,
//! idempotence under re-fired ticks and two workers, both languages, API
//! scoping, the once-only delivery protocol, and a look at the HTML in
//! headless Chromium.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use kairos::{start, Config, Roles, Runtime};
use kairos_core::enqueue::NewJob;
use kairos_jobs::report::store::{self as reports, Claim, DeliveryKey};
use kairos_jobs::report::{Payload, Reporter};
use serde_json::{json, Value};

use crate::common::{spawn_app, wait_for, wait_settled, Deployment, TestApp};

const SECRET_ENV: &str = "KAIROS_TEST_REPORT_WEBHOOK_SECRET";

const METRICS: &str = r#"
[[reports.metrics]]
name = "tasks_completed"
count = "task.completed"
label = "Tasks completed"
label_es = "Tareas completadas"

[[reports.metrics]]
name = "tasks_created"
count = "task.created"

[[reports.metrics]]
name = "completion_rate"
ratio = ["tasks_completed", "tasks_created"]
format = "percent"

[[reports.metrics]]
name = "avg_response"
mean = "data.response_minutes"
over = "ticket.replied"
higher_is_better = false

[[reports.metrics]]
name = "revenue"
sum = "data.amount"
over = "payment.succeeded"
"#;

#[test]
fn metric_mistakes_are_refused_at_load_with_file_line_and_key() {
    let bad = "[reports]\nsend_hour = 9\n\n[[reports.metrics]]\nname = \"done\"\ncount = \"task.completed\"\n\n[[reports.metrics]]\nname = \"rate\"\nratio = [\"done\", \"created\"]\n";
    let e = Config::from_toml(bad, "kairos.toml", &[]).unwrap_err().to_string();
    assert!(
        // The line of the faulty table's `ratio`, not the first table's.
        e.contains("kairos.toml")
            && e.contains("line 10")
            && e.contains("reports.metrics[1].ratio[1]")
            && e.contains("`created`"),
        "{e}"
    );
    // A later table's mistake: its own key's line (line 12: `sum`), or its
    // header's (line 10) for what only the whole table shows.
    let two = "[[reports.metrics]]\nname = \"done\"\ncount = \"task.completed\"\n\n\
               [[reports.metrics]]\nname = \"created\"\ncount = \"task.created\"\n\n\n";
    let e = Config::from_toml(
        &format!("{two}[[reports.metrics]]\nname = \"rev\"\nsum = \"amount\"\nover = \"paid\"\n"),
        "k.toml",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 12") && e.contains("reports.metrics[2].sum"), "{e}");
    let e = Config::from_toml(
        &format!("{two}[[reports.metrics]]\nname = \"rev\"\nsum = \"data.amount\"\n"),
        "k.toml",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 10") && e.contains("reports.metrics[2].over"), "{e}");
    let e = Config::from_toml("[[reports.metrics]]\nname = \"x\"\nmean = \"data.m\"\n", "k.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1") && e.contains("reports.metrics[0].over"), "{e}");
    let e = Config::from_toml(
        "[[reports.metrics]]\nname = \"x\"\ncount = \"a\"\nlabels = \"X\"\n",
        "k.toml",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 4") && e.contains("labels"), "{e}");
    let e = Config::from_toml("[reports.tenants.acme]\naccent_color = \"orange\"\n", "k.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("k.toml") && e.contains("reports.tenants.acme.accent_color"),
        "{e}"
    );
    // A schedule may now name the kind.
    Config::from_toml(
        "[[schedules]]\nname = \"weekly-reports\"\ncron = \"0 * * * *\"\njob = \"report\"\nfan_out = \"per_tenant\"\n",
        "k.toml",
        &[],
    )
    .unwrap();
}

async fn profile(app: &TestApp, key: &str, id: &str, tz: &str, lang: &str) {
    let resp = app
        .http
        .put(format!("{}/v1/accounts/{id}", app.base))
        .bearer_auth(key)
        .json(&json!({ "display_name": format!("{id} Corp"), "time_zone": tz, "language": lang }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
}

async fn executive(app: &TestApp, account: &str, person: &str, email: &str, lang: Option<&str>) {
    let resp = app
        .http
        .put(format!("{}/v1/accounts/{account}/people/{person}", app.base))
        .bearer_auth(&app.key)
        .json(&json!({ "name": person, "email": email, "role": "executive", "language": lang }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
}

fn ev(id: &str, kind: &str, account: &str, at: &str, data: Value) -> Value {
    json!({ "id": id, "type": kind, "account_id": account, "occurred_at": at, "data": data })
}

async fn post(app: &TestApp, key: &str, events: Vec<Value>) {
    let (status, body) = app.post_events_with_key(key, &json!({ "events": events })).await;
    assert_eq!(status, 202, "{body}");
}

/// A known history for `acme-1` (Europe/Madrid): W48 = 2026-11-23T00:00+01
/// .. 2026-11-30T00:00+01, W47 the week before.
async fn seed_history(app: &TestApp) {
    profile(app, &app.key, "acme-1", "Europe/Madrid", "es").await;
    let mut events = vec![
        // W48: 3 completed (one at 00:30 Monday Madrid, still Sunday in UTC),
        // 4 created, replies of 10 and 20 minutes (and one without the field),
        // 150.5 of revenue.
        ev("c1", "task.completed", "acme-1", "2026-11-22T23:30:00Z", json!({})),
        ev("c2", "task.completed", "acme-1", "2026-11-24T10:00:00Z", json!({})),
        ev("c3", "task.completed", "acme-1", "2026-11-27T10:00:00Z", json!({})),
        // 00:30 on Monday 30th in Madrid: the next week there.
        ev("c4", "task.completed", "acme-1", "2026-11-29T23:30:00Z", json!({})),
        ev(
            "r1",
            "ticket.replied",
            "acme-1",
            "2026-11-24T11:00:00Z",
            json!({ "response_minutes": 10 }),
        ),
        ev(
            "r2",
            "ticket.replied",
            "acme-1",
            "2026-11-25T11:00:00Z",
            json!({ "response_minutes": 20 }),
        ),
        ev(
            "r3",
            "ticket.replied",
            "acme-1",
            "2026-11-25T12:00:00Z",
            json!({ "note": "no timing" }),
        ),
        ev(
            "p1",
            "payment.succeeded",
            "acme-1",
            "2026-11-26T09:00:00Z",
            json!({ "amount": 100 }),
        ),
        ev(
            "p2",
            "payment.succeeded",
            "acme-1",
            "2026-11-26T10:00:00Z",
            json!({ "amount": 50.5 }),
        ),
        // W47: 2 completed, 2 created, a 30-minute reply.
        ev("o1", "task.completed", "acme-1", "2026-11-17T10:00:00Z", json!({})),
        ev("o2", "task.completed", "acme-1", "2026-11-18T10:00:00Z", json!({})),
        ev("o3", "task.created", "acme-1", "2026-11-17T09:00:00Z", json!({})),
        ev("o4", "task.created", "acme-1", "2026-11-17T09:30:00Z", json!({})),
        ev(
            "o5",
            "ticket.replied",
            "acme-1",
            "2026-11-19T11:00:00Z",
            json!({ "response_minutes": 30 }),
        ),
        // Comments (scored below).
        ev(
            "m1",
            "comment.created",
            "acme-1",
            "2026-11-24T08:00:00Z",
            json!({ "text": "No funciona nada, es urgente" }),
        ),
        ev(
            "m2",
            "comment.created",
            "acme-1",
            "2026-11-25T08:00:00Z",
            json!({ "text": "Bastante lento hoy" }),
        ),
        ev(
            "m3",
            "comment.created",
            "acme-1",
            "2026-11-26T08:00:00Z",
            json!({ "text": "Gracias por la ayuda" }),
        ),
        ev(
            "m4",
            "comment.created",
            "acme-1",
            "2026-11-18T08:00:00Z",
            json!({ "text": "Todo perfecto" }),
        ),
    ];
    for i in 0..4 {
        events.push(ev(
            &format!("n{i}"),
            "task.created",
            "acme-1",
            &format!("2026-11-2{}T09:00:00Z", 4 + i),
            json!({}),
        ));
    }
    post(app, &app.key, events).await;
    // Another tenant's events for an account with the same id never count.
    let other = app.store.create_tenant("tenant-b", None).await.unwrap();
    post(
        app,
        &other.secret,
        vec![ev("x1", "task.completed", "acme-1", "2026-11-24T10:00:00Z", json!({}))],
    )
    .await;
    let pool = app.store.pool();
    for (id, event, label, score, polarity, urgency) in [
        ("s1", "m1", "negative", 0.93, -0.8, 80i64),
        ("s2", "m2", "negative", 0.81, -0.6, 50),
        ("s3", "m3", "positive", 0.9, 0.7, 0),
        ("s4", "m4", "positive", 0.95, 0.9, 0),
    ] {
        sqlx::query(
            "INSERT INTO sentiment_scores (id, tenant_id, account_id, event_id, event_type, label, score, polarity, \
             probabilities, language, urgency, keywords, model_version, job_id, scored_at) \
             VALUES ($1, $2, 'acme-1', $3, 'comment.created', $4, $5, $6, '{}', 'es', $7, '[]', 'v', 'j', 0)",
        )
        .bind(id)
        .bind(&app.tenant_id)
        .bind(event)
        .bind(label)
        .bind(score)
        .bind(polarity)
        .bind(urgency)
        .execute(pool)
        .await
        .unwrap();
    }
    let ms = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
    for (id, kind, sev, at) in [
        ("a1", "client_dissatisfaction", "high", "2026-11-24T08:01:00Z"),
        ("a2", "churn_critical", "critical", "2026-11-25T09:00:00Z"),
        ("a3", "client_dissatisfaction", "high", "2026-11-18T08:01:00Z"),
    ] {
        sqlx::query(
            "INSERT INTO alerts (id, tenant_id, account_id, kind, severity, reason, payload, dedup_key, created_at) \
             VALUES ($1, $2, 'acme-1', $3, $4, 'why', '{}', $1, $5)",
        )
        .bind(id)
        .bind(&app.tenant_id)
        .bind(kind)
        .bind(sev)
        .bind(ms(at))
        .execute(pool)
        .await
        .unwrap();
    }
    for (id, level, p, at) in [
        ("k1", "LOW", 0.2, "2026-11-18T09:00:00Z"),
        ("k2", "HIGH", 0.62, "2026-11-25T09:00:00Z"),
    ] {
        sqlx::query(
            "INSERT INTO churn_scores (id, tenant_id, account_id, probability, risk_level, factors, actions, features, \
             model_version, trigger_kind, trigger_ref, job_id, scored_at) VALUES ($1, $2, 'acme-1', $3, $4, \
             '[{\"description\": \"Pagos fallidos: 3\"}]', '[{\"action\": \"timeline review\"}]', '{}', 'v', 'schedule', 't', 'j', $5)",
        )
        .bind(id)
        .bind(&app.tenant_id)
        .bind(p)
        .bind(level)
        .bind(ms(at))
        .execute(pool)
        .await
        .unwrap();
    }
    // Wait for ingest's activity jobs to settle (they are not what we test).
    let _ = wait_for(Duration::from_secs(20), || async {
        app.store
            .job_counts(Some(&app.tenant_id))
            .await
            .unwrap()
            .iter()
            .all(|(_, s, _)| {
                matches!(
                    s,
                    kairos_core::store::JobState::Succeeded | kairos_core::store::JobState::Dead
                )
            })
    })
    .await;
}

async fn facts_are_computed_from_a_known_history(deployment: Deployment) {
    let app = spawn_app(
        deployment,
        &format!("[[rules]]\non = \"*\"\nrun = [\"activity\"]\n{METRICS}"),
    )
    .await;
    seed_history(&app).await;
    let reporter = Reporter::from_jobs_config(&app.config.kinds()).await.unwrap();
    let tenant = app.store.find_tenant(&app.tenant_id).await.unwrap();
    let account = app.store.account(&app.tenant_id, "acme-1").await.unwrap().unwrap();
    let tz = "Europe/Madrid".parse().unwrap();
    let period = kairos_jobs::report::period::Period::parse("2026-W48", tz).unwrap();
    let f = reporter
        .facts(&app.store, &tenant, Some(&account), &period, "es")
        .await
        .unwrap();
    let m = |name: &str| f.metrics.iter().find(|m| m.name == name).unwrap().clone();
    let done = m("tasks_completed");
    assert_eq!(
        (done.current, done.previous, done.change_pct),
        (Some(3.0), Some(2.0), Some(50.0))
    );
    assert_eq!(done.label, "Tareas completadas");
    assert_eq!(done.trend.len(), 8);
    assert_eq!(done.trend[..6], [Some(0.0); 6]);
    let created = m("tasks_created");
    assert_eq!((created.current, created.previous), (Some(4.0), Some(2.0)));
    let rate = m("completion_rate");
    assert_eq!(
        (rate.current, rate.previous, rate.change_pct),
        (Some(75.0), Some(100.0), Some(-25.0))
    );
    let resp = m("avg_response");
    assert_eq!(
        (resp.current, resp.previous, resp.change_pct),
        (Some(15.0), Some(30.0), Some(-50.0))
    );
    assert_eq!(resp.trend[0], None, "a mean of nothing is no data, not 0");
    let revenue = m("revenue");
    assert_eq!(
        (revenue.current, revenue.previous, revenue.change_pct),
        (Some(150.5), Some(0.0), None)
    );
    // Sentiment: 2 negative, 1 positive; the most urgent first, with its text.
    let s = &f.sentiment;
    assert_eq!((s.scored, s.negative, s.neutral, s.positive), (3, 2, 0, 1));
    assert_eq!(s.average_polarity, Some(-0.23));
    assert_eq!(s.previous_average_polarity, Some(0.9));
    assert_eq!(s.most_negative[0].event_id, "m1");
    assert_eq!(s.most_negative[0].urgency, 80);
    assert_eq!(s.most_negative[0].excerpt, "No funciona nada, es urgente");
    // Alerts: 2 this week, 1 before; the critical one first.
    assert_eq!((f.alerts.total, f.alerts.previous_total), (2, 1));
    assert_eq!(f.alerts.items[0].severity, "critical");
    // Churn: LOW at the end of W47, HIGH now.
    assert_eq!(f.churn.moved_up.len(), 1);
    assert_eq!(
        (f.churn.moved_up[0].from.as_str(), f.churn.moved_up[0].to.as_str()),
        ("LOW", "HIGH")
    );
    assert_eq!(f.churn.top_at_risk[0].actions, ["timeline review"]);
    assert_eq!(f.churn.top_at_risk[0].factors, ["Pagos fallidos: 3"]);
    // Activity excludes the other tenant's event and the next week's.
    assert_eq!(f.activity.events, 3 + 3 + 2 + 3 + 4);
    assert_eq!(f.activity.previous_events, 6);

    // The narrative in both languages says it is a template.
    let n = reporter.narrative(&f);
    assert!(n.summary.len() >= 2 && n.summary.len() <= 3);
    assert!(n.summary[0].contains("registró"), "{}", n.summary[0]);
    assert!(n.summary.last().unwrap().contains("plantilla"));
    let mut en = f.clone();
    en.language = "en".into();
    let n_en = reporter.narrative(&en);
    assert!(n_en.summary[0].contains("recorded"), "{}", n_en.summary[0]);
    assert!(n_en.summary.last().unwrap().contains("template"));
    assert!(n_en.attention.iter().any(|a| a.contains("LOW") || a.contains("low")));
}

#[tokio::test]
async fn embedded_facts_are_computed_from_a_known_history() {
    facts_are_computed_from_a_known_history(Deployment::Embedded).await;
}

#[tokio::test]
async fn distributed_facts_are_computed_from_a_known_history() {
    facts_are_computed_from_a_known_history(Deployment::Distributed).await;
}

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Value,
}

async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    type Log = Arc<Mutex<Vec<Received>>>;
    async fn hook(State(log): State<Log>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        log.lock().unwrap().push(Received { headers, body });
        StatusCode::OK
    }
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), log)
}

fn webhook_extra(url: &str) -> String {
    // nextest runs each test in its own process, so this does not leak.
    std::env::set_var(SECRET_ENV, "report-secret");
    format!(
        "[reports]\nchannels = [\"webhook\"]\n{METRICS}\n[webhooks.tenant-a]\nurl = \"{url}\"\nsecret_env = \"{SECRET_ENV}\"\n\n\
         [jobs.report]\nbackoff_initial = \"100ms\"\nbackoff_max = \"200ms\"\nmax_attempts = 5\n"
    )
}

fn tick_job(app: &TestApp, n: usize, tick: &str) -> NewJob {
    NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: app.tenant_id.clone(),
        kind: "report".into(),
        event_id: None,
        payload: serde_json::to_string(&Payload {
            tick: Some(tick.into()),
            schedule: Some(format!("weekly-reports#{n}")),
            ..Default::default()
        })
        .unwrap(),
        max_attempts: 5,
        run_after: None,
    }
}

async fn refired_ticks_and_two_workers_make_and_send_each_report_once(deployment: Deployment) {
    let (url, log) = receiver().await;
    let extra = webhook_extra(&url);
    let mut app = spawn_app(deployment, &extra).await;
    // A second worker process's roles on the same store and queue.
    let second = start(
        Runtime::open(app.config.clone()).await.unwrap(),
        Roles {
            api: false,
            scheduler: false,
            worker: true,
        },
    )
    .await
    .unwrap();
    profile(&app, &app.key, "acme-1", "Europe/Madrid", "es").await;
    profile(&app, &app.key, "beta-2", "Europe/London", "en").await;
    // Bogotá is at 04:05 on Monday then: not due yet.
    profile(&app, &app.key, "late-3", "America/Bogota", "es").await;
    post(
        &app,
        &app.key,
        vec![
            ev("e1", "task.completed", "acme-1", "2026-11-24T10:00:00Z", json!({})),
            ev("e2", "task.completed", "beta-2", "2026-11-24T10:00:00Z", json!({})),
        ],
    )
    .await;
    // The 09:05 UTC tick of Monday 30 Nov (10:05 Madrid, 09:05 London,
    // within the 24 h catch-up), fired three times (a manual re-fire and
    // two replicas' catch-ups), run by two workers.
    let reporter = Reporter::from_jobs_config(&app.config.kinds()).await.unwrap();
    let ticks: Vec<NewJob> = (0..3).map(|n| tick_job(&app, n, "2026-11-30T09:05:00Z")).collect();
    let ids: Vec<String> = ticks.iter().map(|j| j.id.clone()).collect();
    reporter
        .record_jobs(&app.store, app.queue.as_ref(), ticks)
        .await
        .unwrap();
    let done = wait_settled(&app.store, &ids, Duration::from_secs(30)).await;
    assert!(
        done.iter().all(|j| j.state == kairos_core::store::JobState::Succeeded),
        "{done:?}"
    );
    // A duplicate of one report job with another id (a retried producer).
    let tenant = app.store.find_tenant(&app.tenant_id).await.unwrap();
    let mut dup = reporter.job(&tenant, Some("acme-1"), "2026-W48", false);
    dup.id = uuid::Uuid::now_v7().to_string();
    let dup_id = dup.id.clone();
    reporter
        .record_jobs(&app.store, app.queue.as_ref(), vec![dup])
        .await
        .unwrap();
    // acme-1, beta-2 and the portfolio (UTC, 09:05 ≥ 09:00).
    assert!(
        wait_for(Duration::from_secs(30), || async { log.lock().unwrap().len() >= 3 }).await,
        "deliveries: {}",
        log.lock().unwrap().len()
    );
    wait_settled(&app.store, &[dup_id], Duration::from_secs(30)).await;
    // Give any duplicate a chance to show up before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (items, _) = reports::list(
        &app.store,
        &app.tenant_id,
        &reports::ReportFilter {
            limit: 50,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut keys: Vec<(String, String, i64)> = items
        .iter()
        .map(|r| (r.account_id.clone(), r.period.clone(), r.version))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            (String::new(), "2026-W48".into(), 1),
            ("acme-1".into(), "2026-W48".into(), 1),
            ("beta-2".into(), "2026-W48".into(), 1),
        ]
    );
    let got = log.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "each report delivered once");
    let mut delivery_ids: Vec<&str> = got
        .iter()
        .map(|r| r.headers["x-kairos-delivery"].to_str().unwrap())
        .collect();
    delivery_ids.sort_unstable();
    delivery_ids.dedup();
    assert_eq!(delivery_ids.len(), 3);
    // Each in its account's language, executive summary first.
    let by_account = |a: &str| got.iter().find(|r| r.body["report"]["account_id"] == a).unwrap().body["report"].clone();
    let es = by_account("acme-1");
    assert_eq!(es["language"], "es");
    assert!(
        es["summary"]
            .as_str()
            .unwrap()
            .starts_with("Del 2026-11-23 al 2026-11-29"),
        "{}",
        es["summary"]
    );
    let en = by_account("beta-2");
    assert_eq!(en["language"], "en");
    assert!(
        en["summary"]
            .as_str()
            .unwrap()
            .starts_with("From 2026-11-23 to 2026-11-29"),
        "{}",
        en["summary"]
    );
    for r in &items {
        assert_eq!(r.delivery_state, "delivered", "{}", r.id);
    }
    let html = &items.iter().find(|r| r.account_id == "acme-1").unwrap().html;
    assert!(html.contains("Resumen ejecutivo") && html.contains("<svg"));

    // An explicit re-run adds version 2 and sends it.
    let rerun = reporter.job(&tenant, Some("acme-1"), "2026-W48", true);
    let rerun_id = rerun.id.clone();
    reporter
        .record_jobs(&app.store, app.queue.as_ref(), vec![rerun])
        .await
        .unwrap();
    wait_settled(&app.store, &[rerun_id], Duration::from_secs(30)).await;
    assert_eq!(
        reports::latest_version(&app.store, &app.tenant_id, "acme-1", "2026-W48")
            .await
            .unwrap(),
        2
    );
    assert_eq!(log.lock().unwrap().len(), 4);

    second.shutdown().await;
    app.shutdown().await;
}

#[tokio::test]
async fn embedded_refired_ticks_and_two_workers_make_and_send_each_report_once() {
    refired_ticks_and_two_workers_make_and_send_each_report_once(Deployment::Embedded).await;
}

#[tokio::test]
async fn distributed_refired_ticks_and_two_workers_make_and_send_each_report_once() {
    refired_ticks_and_two_workers_make_and_send_each_report_once(Deployment::Distributed).await;
}

async fn a_crash_between_send_and_record_never_sends_twice(deployment: Deployment) {
    let (url, log) = receiver().await;
    let mut app = spawn_app(deployment, &webhook_extra(&url)).await;
    profile(&app, &app.key, "acme-1", "Europe/Madrid", "es").await;
    let reporter = Reporter::from_jobs_config(&app.config.kinds()).await.unwrap();
    let tenant = app.store.find_tenant(&app.tenant_id).await.unwrap();
    let g = reporter
        .generate(&app.store, &tenant, Some("acme-1"), Some("2026-W48"), false, "test")
        .await
        .unwrap();
    // An attempt claimed the delivery (intent committed), sent it, and died
    // before recording the outcome: the row stays `sending` with its lease,
    // which has run out by now.
    let key = DeliveryKey {
        report_id: &g.report.id,
        channel: "webhook",
        recipient: "tenant",
    };
    let message_id =
        kairos_jobs::report::deliver::message_id(&g.report.id, kairos_jobs::report::config::Channel::Webhook, "tenant");
    let long_ago = kairos_core::time::now_ms() - 3_600_000;
    assert_eq!(
        reports::claim(&app.store, key, "es", &message_id, 300_000, long_ago)
            .await
            .unwrap(),
        Claim::Claimed
    );
    // The retry of the job delivers: nothing is sent again, and the report
    // says the delivery is unknown.
    let out = reporter.deliver(&app.store, &tenant, &g.report).await.unwrap();
    assert!(out.ends_with("unknown"), "{out}");
    assert!(log.lock().unwrap().is_empty(), "re-sent after a crash");
    let stored = reports::get(&app.store, &app.tenant_id, &g.report.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.delivery_state, "unknown");
    assert!(stored.delivery_error.unwrap().contains("not re-sent"));
    // A claim still within its lease belongs to a live attempt: left alone
    // (retried later), not sent by a second attempt either.
    let g2 = reporter
        .generate(&app.store, &tenant, Some("acme-1"), Some("2026-W47"), false, "test")
        .await
        .unwrap();
    let key2 = DeliveryKey {
        report_id: &g2.report.id,
        ..key
    };
    assert_eq!(
        reports::claim(&app.store, key2, "es", "<m>", 300_000, kairos_core::time::now_ms())
            .await
            .unwrap(),
        Claim::Claimed
    );
    assert!(reporter.deliver(&app.store, &tenant, &g2.report).await.is_err());
    assert!(log.lock().unwrap().is_empty());
    // Without a crash, the delivery goes out once, and a second attempt
    // finds it sent.
    let g3 = reporter
        .generate(&app.store, &tenant, Some("acme-1"), Some("2026-W46"), false, "test")
        .await
        .unwrap();
    reporter.deliver(&app.store, &tenant, &g3.report).await.unwrap();
    reporter.deliver(&app.store, &tenant, &g3.report).await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn embedded_a_crash_between_send_and_record_never_sends_twice() {
    a_crash_between_send_and_record_never_sends_twice(Deployment::Embedded).await;
}

#[tokio::test]
async fn distributed_a_crash_between_send_and_record_never_sends_twice() {
    a_crash_between_send_and_record_never_sends_twice(Deployment::Distributed).await;
}

#[tokio::test]
async fn reports_are_listed_and_served_to_their_tenant_only() {
    let mut app = spawn_app(Deployment::Embedded, METRICS).await;
    profile(&app, &app.key, "acme-1", "Europe/Madrid", "es").await;
    executive(&app, "acme-1", "ana", "ana@acme.example", None).await;
    let reporter = Reporter::from_jobs_config(&app.config.kinds()).await.unwrap();
    let tenant = app.store.find_tenant(&app.tenant_id).await.unwrap();
    let mut ids = Vec::new();
    for p in ["2026-W46", "2026-W47", "2026-W48"] {
        let g = reporter
            .generate(&app.store, &tenant, Some("acme-1"), Some(p), false, "test")
            .await
            .unwrap();
        ids.push(g.report.id);
    }
    // Newest first, a page at a time.
    let (status, page) = app.get("/v1/reports?limit=2", Some(&app.key)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = app
        .get(&format!("/v1/reports?limit=2&cursor={cursor}"), Some(&app.key))
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest.get("next_cursor").is_none());
    let mut seen: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);
    let (status, _) = app.get("/v1/reports?cursor=zz", Some(&app.key)).await;
    assert_eq!(status, 400);
    let (_, w48) = app.get("/v1/reports?period=2026-W48", Some(&app.key)).await;
    assert_eq!(w48["items"][0]["id"], ids[2].as_str());
    // One report in each form.
    let (status, detail) = app.get(&format!("/v1/reports/{}", ids[2]), Some(&app.key)).await;
    assert_eq!(status, 200);
    assert_eq!(detail["facts"]["period"]["label"], "2026-W48");
    assert_eq!(detail["narrative"]["source"], "template");
    assert_eq!(detail["language"], "es");
    for (ext, ctype, needle) in [
        ("html", "text/html", "<svg"),
        ("md", "text/markdown", "## Resumen ejecutivo"),
        ("json", "application/json", "\"facts\""),
    ] {
        let resp = app
            .http
            .get(format!("{}/v1/reports/{}.{ext}", app.base, ids[2]))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with(ctype));
        assert!(resp.text().await.unwrap().contains(needle), "{ext}");
    }
    // Another tenant sees none of it.
    let other = app.store.create_tenant("tenant-b", None).await.unwrap();
    let (status, _) = app.get(&format!("/v1/reports/{}", ids[2]), Some(&other.secret)).await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get(&format!("/v1/reports/{}.html", ids[2]), Some(&other.secret))
        .await;
    assert_eq!(status, 404);
    let (_, list) = app.get("/v1/reports", Some(&other.secret)).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let (status, _) = app.get("/v1/reports", None).await;
    assert_eq!(status, 401);
    // Documented.
    let (_, doc) = app.get("/openapi.json", None).await;
    assert!(doc["paths"]["/v1/reports"]["get"].is_object());
    assert!(doc["paths"]["/v1/reports/{id}"]["get"]["responses"]["200"]["content"]["text/html"].is_object());
    app.shutdown().await;
}

/// Renders a report with every section filled in headless Chromium at a
/// phone's and a desktop's width; the screenshots are kept as artefacts.
#[tokio::test]
async fn the_report_html_renders_in_chromium_at_375_and_1280_px() {
    let mut app = spawn_app(
        Deployment::Embedded,
        &format!("[[rules]]\non = \"*\"\nrun = [\"activity\"]\n{METRICS}"),
    )
    .await;
    seed_history(&app).await;
    let reporter = Reporter::from_jobs_config(&app.config.kinds()).await.unwrap();
    let tenant = app.store.find_tenant(&app.tenant_id).await.unwrap();
    let g = reporter
        .generate(&app.store, &tenant, Some("acme-1"), Some("2026-W48"), false, "test")
        .await
        .unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts/reports");
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("report-acme-1-2026-W48.html");
    std::fs::write(&html, &g.report.html).unwrap();
    for width in [375, 1280] {
        let png = dir.join(format!("report-{width}.png"));
        let _ = std::fs::remove_file(&png);
        let profile = tempfile::tempdir().unwrap();
        let out = tokio::process::Command::new("/usr/bin/chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("--window-size={width},2400"),
                &format!("--screenshot={}", png.display()),
            ])
            .arg(format!("file://{}", html.display()))
            .output()
            .await
            .expect("chromium runs (Debian package `chromium`)");
        assert!(png.is_file(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // Width is in the IHDR chunk: the page was laid out at that width.
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        assert_eq!(w, width);
        assert!(bytes.len() > 20_000, "a blank page? {} bytes", bytes.len());
        println!("report screenshot: {}", png.display());
    }
    println!("report html: {}", html.display());
    // The PDF a tenant with `pdf = true` gets attached.
    let pdf = kairos_jobs::report::render::pdf("/usr/bin/chromium", &g.report.html)
        .await
        .unwrap();
    assert!(pdf.starts_with(b"%PDF-") && pdf.len() > 10_000, "{} bytes", pdf.len());
    std::fs::write(dir.join("report-acme-1-2026-W48.pdf"), &pdf).unwrap();
    app.shutdown().await;
}

fn smtp_extra(port: u16, pdf: bool) -> String {
    format!(
        "[reports]\nchannels = [\"email\"]\n{METRICS}\n[reports.tenants.tenant-a]\nsender_name = \"Acme Success\"\npdf = {pdf}\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"reports@kairos.test\"\n\n\
         [jobs.report]\nbackoff_initial = \"100ms\"\nbackoff_max = \"200ms\"\nmax_attempts = 5\n"
    )
}

/// Emails read back from a real SMTP server (aiosmtpd): each executive
/// once, in their language, HTML and text parts with the executive summary
/// first, the PDF attached; a bounce recorded on the report; a crash
/// between send and record never sends twice.
#[tokio::test]
async fn executives_get_the_report_by_email_once_in_their_language() {
    let smtp = crate::servers::SmtpServer::start().await;
    let mut app = spawn_app(Deployment::Embedded, &smtp_extra(smtp.port, true)).await;
    profile(&app, &app.key, "acme-1", "Europe/Madrid", "es").await;
    executive(&app, "acme-1", "ana", "ana@acme.example", None).await;
    executive(&app, "acme-1", "bob", "bob@acme.example", Some("en")).await;
    executive(&app, "acme-1", "carol", "bounce-carol@acme.example", None).await;
    post(
        &app,
        &app.key,
        vec![
            ev("e1", "task.completed", "acme-1", "2026-11-24T10:00:00Z", json!({})),
            ev("e2", "task.completed", "acme-1", "2026-11-17T10:00:00Z", json!({})),
        ],
    )
    .await;
    let reporter = Reporter::from_jobs_config(&app.config.kinds()).await.unwrap();
    let tenant = app.store.find_tenant(&app.tenant_id).await.unwrap();
    let job = reporter.job(&tenant, Some("acme-1"), "2026-W48", false);
    let job_id = job.id.clone();
    reporter
        .record_jobs(&app.store, app.queue.as_ref(), vec![job])
        .await
        .unwrap();
    let done = wait_settled(&app.store, &[job_id], Duration::from_secs(60)).await;
    assert_eq!(
        done[0].state,
        kairos_core::store::JobState::Succeeded,
        "{:?}",
        done[0].last_error
    );
    let got = smtp.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let report = reports::find(&app.store, &app.tenant_id, "acme-1", "2026-W48", 1)
        .await
        .unwrap()
        .unwrap();
    let to = |addr: &str| got.iter().find(|m| m["rcpt_tos"][0] == addr).unwrap().clone();
    let ana = to("ana@acme.example");
    assert!(
        ana["subject"].as_str().unwrap().starts_with("Informe semanal"),
        "{}",
        ana["subject"]
    );
    assert!(ana["from"].as_str().unwrap().contains("Acme Success"));
    let text = ana["text"].as_str().unwrap();
    // The subject line, then the executive summary's first paragraph.
    let first_paragraph = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .nth(1)
        .unwrap_or_default();
    assert!(first_paragraph.starts_with("Del 2026-11-23 al 2026-11-29"), "{text}");
    assert!(ana["html"].as_str().unwrap().contains("Resumen ejecutivo"));
    assert_eq!(
        ana["message_id"].as_str().unwrap(),
        kairos_jobs::report::deliver::message_id(
            &report.id,
            kairos_jobs::report::config::Channel::Email,
            "ana@acme.example"
        )
    );
    // Charts: the email's HTML shows PNGs by `cid:` (Gmail and Outlook do
    // not render inline SVG), each an inline part that decodes as a PNG;
    // the stored HTML keeps its SVG.
    let mail_html = ana["html"].as_str().unwrap();
    assert!(!mail_html.contains("<svg"), "inline SVG left in the email");
    let cids: Vec<&str> = mail_html
        .split("src=\"cid:")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert!(cids.len() >= 5, "{} charts in the email", cids.len());
    let inline = ana["inline"].as_array().unwrap();
    assert_eq!(inline.len(), cids.len(), "{inline:?}");
    for cid in &cids {
        let part = inline
            .iter()
            .find(|p| p["content_id"] == *cid)
            .unwrap_or_else(|| panic!("no part for cid:{cid}"));
        assert_eq!(part["content_type"], "image/png");
        assert_eq!(part["disposition"], "inline");
        assert_eq!(part["png"], json!({ "width": 1120, "height": 440 }), "{cid}");
    }
    assert_eq!(report.html.matches("<svg").count(), cids.len());
    assert_eq!(ana["attachments"][0]["content_type"], "application/pdf");
    assert!(ana["attachments"][0]["size"].as_u64().unwrap() > 10_000);
    let bob = to("bob@acme.example");
    assert!(
        bob["subject"].as_str().unwrap().starts_with("Weekly report"),
        "{}",
        bob["subject"]
    );
    assert!(bob["text"].as_str().unwrap().contains("From 2026-11-23 to 2026-11-29"));
    assert!(bob["html"].as_str().unwrap().contains("Executive summary"));
    // The bounce is recorded on the report, for good.
    assert_eq!(report.delivery_state, "partial");
    assert!(
        report.delivery_error.as_deref().unwrap().contains("bounce-carol"),
        "{:?}",
        report.delivery_error
    );
    let ds = reports::deliveries(&app.store, &report.id).await.unwrap();
    let carol = ds.iter().find(|d| d.recipient.starts_with("bounce")).unwrap();
    assert_eq!(carol.state, "rejected");
    assert!(carol.error.as_deref().unwrap().contains("550"));
    // A retried job (or a second worker) sends nothing again.
    reporter.deliver(&app.store, &tenant, &report).await.unwrap();
    assert_eq!(smtp.messages().len(), 2);

    // A crash between send and record for ana on W47: her email is not
    // sent again; bob's goes out.
    let g = reporter
        .generate(&app.store, &tenant, Some("acme-1"), Some("2026-W47"), false, "test")
        .await
        .unwrap();
    let key = DeliveryKey {
        report_id: &g.report.id,
        channel: "email",
        recipient: "ana@acme.example",
    };
    let stale = kairos_core::time::now_ms() - 3_600_000;
    assert_eq!(
        reports::claim(&app.store, key, "es", "<m@x>", 300_000, stale)
            .await
            .unwrap(),
        Claim::Claimed
    );
    reporter.deliver(&app.store, &tenant, &g.report).await.unwrap();
    let all = smtp.messages();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2]["rcpt_tos"][0], "bob@acme.example");
    let stored = reports::get(&app.store, &app.tenant_id, &g.report.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.delivery_state, "unknown");
    app.shutdown().await;
}

fn llm_reply(summary: &[&str]) -> Value {
    json!({
        "status": 200,
        "content": json!({
            "summary": summary,
            "highlights": ["Más tareas completadas que la semana anterior."],
            "attention": ["Vigilar el ritmo de entrega."],
            "next_steps": ["Revisar el plan con el equipo."],
        }).to_string(),
    })
}

/// The narrative by an LLM (the OpenAI-compatible fixture server):
/// grounded text is used and its tokens recorded; a hallucinated number is
/// asked for once more, then the template; a server that is down gives the
/// template; the prompt is in the recipient's language.
#[tokio::test]
async fn the_llm_narrative_is_grounded_or_replaced_by_the_template() {
    let llm = crate::servers::LlmServer::start().await;
    let extra = format!(
        "[llm]\nbase_url = \"{}\"\nmodel = \"fixture-model\"\ntimeout = \"5s\"\nmax_retries = 0\n\
         requests_per_minute = 60000\ntokens_per_minute = 10000000\n{METRICS}",
        llm.base_url()
    );
    let mut app = spawn_app(Deployment::Embedded, &extra).await;
    profile(&app, &app.key, "acme-1", "Europe/Madrid", "es").await;
    profile(&app, &app.key, "beta-2", "Europe/London", "en").await;
    let mut events = Vec::new();
    for (i, at) in ["2026-11-24T10:00:00Z", "2026-11-25T10:00:00Z", "2026-11-26T10:00:00Z"]
        .iter()
        .enumerate()
    {
        events.push(ev(&format!("w48-{i}"), "task.completed", "acme-1", at, json!({})));
    }
    for (i, at) in ["2026-11-17T10:00:00Z", "2026-11-18T10:00:00Z"].iter().enumerate() {
        events.push(ev(&format!("w47-{i}"), "task.completed", "acme-1", at, json!({})));
    }
    post(&app, &app.key, events).await;
    let reporter = Reporter::from_jobs_config(&app.config.kinds()).await.unwrap();
    let tenant = app.store.find_tenant(&app.tenant_id).await.unwrap();
    let grounded = [
        "Del 2026-11-23 al 2026-11-29 se completaron 3 tareas, frente a 2 la semana anterior (+50%).",
        "El equipo gana ritmo, lo que acerca los hitos del trimestre.",
    ];
    let invented = [
        "Del 2026-11-23 al 2026-11-29 se completaron 9999 tareas.",
        "El equipo gana ritmo.",
    ];
    // A hallucinated number, then a grounded text: the second is used.
    llm.script(llm_reply(&invented), vec![llm_reply(&invented), llm_reply(&grounded)])
        .await;
    let g = reporter
        .generate(&app.store, &tenant, Some("acme-1"), Some("2026-W48"), false, "test")
        .await
        .unwrap();
    let r = &g.report;
    assert_eq!(r.narrative_source, "llm", "{}", r.narrative);
    assert_eq!(r.llm_model.as_deref(), Some("fixture-model"));
    assert!(r.tokens_prompt.unwrap() > 0 && r.tokens_completion.unwrap() > 0);
    assert!(r.html.contains("se completaron 3 tareas"));
    let reqs = llm.requests().await;
    assert_eq!(reqs.len(), 2);
    let system = reqs[0]["body"]["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("Escribe en español"), "{system}");
    let retry = reqs[1]["body"]["messages"][1]["content"].as_str().unwrap();
    assert!(retry.contains("9999"), "the retry says which number was refused");
    println!(
        "generation with the LLM (fixture server, 2 calls): {} ms",
        r.generation_ms
    );

    // Invented twice: the template, saying why; the tokens still counted.
    let g = reporter
        .generate(&app.store, &tenant, Some("acme-1"), Some("2026-W47"), false, "test")
        .await
        .unwrap();
    assert_eq!(g.report.narrative_source, "template");
    let n: Value = serde_json::from_str(&g.report.narrative).unwrap();
    assert!(n["fallback_reason"].as_str().unwrap().contains("grounding"), "{n}");
    assert!(n["summary"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .contains("plantilla"));
    assert!(g.report.tokens_prompt.unwrap() > 0);
    assert_eq!(llm.requests().await.len(), 4);

    // English for an English account.
    let _ = reporter
        .generate(&app.store, &tenant, Some("beta-2"), Some("2026-W48"), false, "test")
        .await
        .unwrap();
    let reqs = llm.requests().await;
    let system = reqs[4]["body"]["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("Write in English"), "{system}");

    // The server down: the template at once.
    let mut down = llm.config();
    down.base_url = format!("http://127.0.0.1:{}/v1", crate::servers::closed_port());
    down.max_retries = 0;
    let offline = Reporter::new(
        app.config.reports.clone(),
        app.config.profiles.clone(),
        vec!["text".into()],
        &app.config.jobs,
    )
    .with_llm(
        kairos_jobs::llm::Llm::from_config(Some(&down), &app.config.queue)
            .await
            .unwrap(),
    );
    let g = offline
        .generate(&app.store, &tenant, Some("acme-1"), Some("2026-W46"), false, "test")
        .await
        .unwrap();
    assert_eq!(g.report.narrative_source, "template");
    let n: Value = serde_json::from_str(&g.report.narrative).unwrap();
    assert!(n["fallback_reason"].as_str().unwrap().contains("unavailable"), "{n}");
    // Without an LLM at all.
    let plain = Reporter::new(
        app.config.reports.clone(),
        app.config.profiles.clone(),
        vec!["text".into()],
        &app.config.jobs,
    );
    let g = plain
        .generate(&app.store, &tenant, Some("acme-1"), Some("2026-W45"), false, "test")
        .await
        .unwrap();
    assert_eq!(g.report.narrative_source, "template");
    println!("generation with the template: {} ms", g.report.generation_ms);
    app.shutdown().await;
}

/// "No duplicate email with three scheduler replicas and a worker killed
/// mid-send", with real processes: three `kairos scheduler` replicas tick
/// the `weekly-reports` schedule every second, a `kairos worker` makes the
/// report and emails it through a real SMTP server (aiosmtpd), and is
/// killed (SIGKILL) after the server received an executive's message but
/// before its answer reached the worker — the window where a sender cannot
/// know whether the email left. A second worker takes the job over once the
/// queue lease runs out. The report exists once; the held email is not sent
/// again (its delivery is `unknown`, on the report); the other executive's
/// email goes out once; the ticks that keep firing record nothing new.
async fn sigkilled_mid_send_with_three_scheduler_replicas_never_sends_twice(deployment: Deployment) {
    use kairos_core::store::{JobFilter, JobState};
    use kairos_jobs::report::config::{Channel, PeriodKind};
    use kairos_jobs::report::period::Period;

    use crate::common::{spawn_app_with_roles, spawn_proc};

    let smtp = crate::servers::SmtpServer::start().await;
    // Due all week (from Monday 00:00, for 7 days) so the test does not
    // depend on the day it runs; the delivery lease is the shortest allowed.
    let extra = format!(
        "[reports]\nchannels = [\"email\"]\nsend_hour = 0\ncatch_up = \"7days\"\ndelivery_lease = \"10s\"\n{METRICS}\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"reports@kairos.test\"\ntimeout = \"60s\"\n\n\
         [jobs.report]\nbackoff_initial = \"500ms\"\nbackoff_max = \"1s\"\nmax_attempts = 60\ntimeout = \"120s\"\n\n\
         [[schedules]]\nname = \"weekly-reports\"\ncron = \"* * * * * *\"\njob = \"report\"\nfan_out = \"per_tenant\"\n",
        smtp.port
    );
    let mut app = spawn_app_with_roles(
        deployment,
        &extra,
        Roles {
            api: true,
            scheduler: false,
            worker: false,
        },
    )
    .await;
    profile(&app, &app.key, "acme-1", "UTC", "es").await;
    // People are sent to in id order: ana's message is the one held.
    executive(&app, "acme-1", "ana", "hold-ana@acme.example", None).await;
    executive(&app, "acme-1", "bob", "bob@acme.example", Some("en")).await;
    post(
        &app,
        &app.key,
        vec![ev("e1", "task.completed", "acme-1", "2026-11-24T10:00:00Z", json!({}))],
    )
    .await;
    let config = app.env.config_file(&extra);
    let started = kairos_core::time::now_ms();
    let period = Period::previous_complete(PeriodKind::Weekly, started, kairos_jobs::report::period::UTC).label;

    let mut victim = spawn_proc(&config, &["worker"]);
    let mut replicas: Vec<_> = (0..3).map(|_| spawn_proc(&config, &["scheduler"])).collect();
    let ana = "hold-ana@acme.example";
    assert!(
        wait_for(Duration::from_secs(60), || async {
            smtp.messages().iter().any(|m| m["rcpt_tos"][0] == ana)
        })
        .await,
        "the worker never sent the report to {ana}"
    );
    // The server has the message and withholds its answer; the intent row
    // says `sending`; bob's turn has not come.
    let report = reports::find(&app.store, &app.tenant_id, "acme-1", &period, 1)
        .await
        .unwrap()
        .expect("the report is stored before it is sent");
    let ds = reports::deliveries(&app.store, &report.id).await.unwrap();
    assert_eq!(ds.len(), 1, "{ds:?}");
    assert_eq!((ds[0].recipient.as_str(), ds[0].state.as_str()), (ana, "sending"));
    victim.kill().await;
    smtp.release();

    let mut rescuer = spawn_proc(&config, &["worker"]);
    assert!(
        wait_for(Duration::from_secs(60), || async {
            let r = reports::get(&app.store, &app.tenant_id, &report.id)
                .await
                .unwrap()
                .unwrap();
            r.delivery_state != "pending"
        })
        .await,
        "the second worker never settled the deliveries"
    );
    let settled_at = kairos_core::time::now_ms();
    smtp.wait_for(2, Duration::from_secs(30)).await;
    // Ticks keep firing and being run after the report was sent: they find
    // its job recorded and record nothing.
    let runs = || async {
        app.store
            .jobs(&JobFilter {
                tenant_id: Some(app.tenant_id.clone()),
                kind: Some("report".into()),
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap()
    };
    assert!(
        wait_for(Duration::from_secs(30), || async {
            runs()
                .await
                .iter()
                .filter(|j| j.payload.contains("\"tick\"") && j.finished_at.is_some_and(|t| t > settled_at))
                .count()
                >= 3
        })
        .await,
        "ticks stopped being run"
    );
    for r in &replicas {
        r.signal("TERM");
    }
    for r in &mut replicas {
        assert!(r.wait(Duration::from_secs(20)).await.success());
    }
    rescuer.signal("TERM");
    assert!(rescuer.wait(Duration::from_secs(20)).await.success());

    // One message per recipient, the ids of this report version.
    let got = smtp.messages();
    let to = |addr: &str| {
        got.iter()
            .filter(|m| m["rcpt_tos"][0] == addr)
            .cloned()
            .collect::<Vec<_>>()
    };
    for addr in [ana, "bob@acme.example"] {
        let m = to(addr);
        assert_eq!(m.len(), 1, "{addr} got {} emails", m.len());
        assert_eq!(
            m[0]["message_id"].as_str().unwrap(),
            kairos_jobs::report::deliver::message_id(&report.id, Channel::Email, addr)
        );
    }
    assert_eq!(got.len(), 2, "{got:?}");
    // The report says what happened to ana's email.
    let stored = reports::get(&app.store, &app.tenant_id, &report.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.delivery_state, "unknown");
    let error = stored.delivery_error.unwrap_or_default();
    assert!(error.contains(ana) && error.contains("not re-sent"), "{error}");
    let ds = reports::deliveries(&app.store, &report.id).await.unwrap();
    let state = |addr: &str| {
        ds.iter()
            .find(|d| d.recipient == addr)
            .map(|d| (d.state.clone(), d.attempts))
    };
    assert_eq!(state(ana), Some(("unknown".into(), 1)));
    assert_eq!(state("bob@acme.example"), Some(("sent".into(), 1)));
    // One report per (account, period): the account's and the portfolio.
    let (items, _) = reports::list(
        &app.store,
        &app.tenant_id,
        &reports::ReportFilter {
            limit: 50,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut keys: Vec<(String, i64)> = items.iter().map(|r| (r.account_id.clone(), r.version)).collect();
    keys.sort();
    assert_eq!(keys, [(String::new(), 1), ("acme-1".into(), 1)]);
    // Many ticks, each recorded by one replica, planned the two report jobs
    // once between them.
    let ticks = app.store.ticks_since("weekly-reports", started - 2_000).await.unwrap();
    let mut at: Vec<i64> = ticks.iter().map(|t| t.tick_at).collect();
    at.dedup();
    assert_eq!(at.len(), ticks.len(), "a tick recorded twice");
    let all = runs().await;
    let (tick_jobs, report_jobs): (Vec<_>, Vec<_>) = all.iter().partition(|j| j.payload.contains("\"tick\""));
    assert!(tick_jobs.len() >= 5, "{} ticks run", tick_jobs.len());
    for j in tick_jobs
        .iter()
        .filter(|j| j.finished_at.is_some_and(|t| t > settled_at))
    {
        assert_eq!(j.state, JobState::Succeeded, "{:?}", j.last_error);
        assert!(
            j.result_ref.as_deref().unwrap_or("").ends_with("new 0"),
            "{:?}",
            j.result_ref
        );
    }
    assert_eq!(report_jobs.len(), 2, "{report_jobs:?}");
    let job = report_jobs.iter().find(|j| j.payload.contains("acme-1")).unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.last_error);
    assert!(job.attempts >= 2, "the killed attempt counts: {}", job.attempts);
    assert!(!victim.ran(job));
    let replicas_seen: std::collections::BTreeSet<_> = ticks.iter().map(|t| t.replica.clone()).collect();
    println!(
        "{} ticks by {} replica(s); report job attempts {}",
        ticks.len(),
        replicas_seen.len(),
        job.attempts
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_sigkilled_mid_send_with_three_scheduler_replicas_never_sends_twice() {
    sigkilled_mid_send_with_three_scheduler_replicas_never_sends_twice(Deployment::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sigkilled_mid_send_with_three_scheduler_replicas_never_sends_twice() {
    sigkilled_mid_send_with_three_scheduler_replicas_never_sends_twice(Deployment::Embedded).await;
}

/// `kairos reports run` shows a progress bar over the fan-out on a
/// terminal (a pseudo-terminal from `script`), and none when stderr is not
/// one (logs, CI).
#[tokio::test]
async fn reports_run_shows_a_progress_bar_only_on_a_terminal() {
    use crate::common::{run_cli, spawn_app_with_roles};

    // No worker: the jobs stay queued and the command gives up after 1 s.
    let mut app = spawn_app_with_roles(
        Deployment::Embedded,
        METRICS,
        Roles {
            api: true,
            scheduler: false,
            worker: false,
        },
    )
    .await;
    for a in ["acme-1", "beta-2", "gamma-3"] {
        profile(&app, &app.key, a, "Europe/Madrid", "es").await;
    }
    let config = app.env.config_file(METRICS);
    let args = [
        "reports",
        "run",
        "--tenant",
        "tenant-a",
        "--period",
        "2026-W48",
        "--timeout",
        "1s",
    ];
    let (ok, out, err) = run_cli(&config, &args).await;
    assert!(!ok, "no worker, yet it finished: {out}");
    assert!(out.contains("4 report jobs"), "{out}");
    assert!(err.contains("4 of 4 report jobs not finished"), "{err}");
    assert!(!err.contains("/4 reports"), "a bar drawn on a pipe: {err}");

    let line = format!(
        "{} --config {} {}",
        env!("CARGO_BIN_EXE_kairos"),
        config.display(),
        args.join(" ")
    );
    let tty = tokio::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("KAIROS_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run `script` (util-linux)");
    let seen = String::from_utf8_lossy(&tty.stdout);
    assert!(!tty.status.success());
    assert!(seen.contains("0/4 reports"), "no bar on a terminal: {seen}");
    app.shutdown().await;
}
