//! The dashboard's actions beyond the job lists, over plain HTTP against
//! every role running in-process: pausing one tenant (its jobs are held
//! back, the other tenant's run, and the held ones run after the resume),
//! switching a schedule off and on (the real ticker, and a second replica
//! started after the switch), intervening on a sentiment alert (a nudge
//! through the nudge kind, or the success manager; viewers get 403), the
//! reports and nudges pages, and `/dashboard/` with a trailing slash.

use std::time::Duration;

use kairos_api::dashboard::auth::{create_user, Role};
use kairos_core::store::{JobState, NewAlert};
use serde_json::{json, Value};

use super::dashboard::{client, Web, DASH, PASSWORD};
use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);

async fn users(app: &TestApp) {
    create_user(&app.store, "ops", PASSWORD, Role::Operator, None)
        .await
        .unwrap();
    create_user(&app.store, "view", PASSWORD, Role::Viewer, None)
        .await
        .unwrap();
}

async fn probe_job(app: &TestApp, key: &str, id: &str) -> String {
    let (s, body) = app
        .post_events_with_key(key, &event(id, "diagnostic.ok", "acc-1", json!({})))
        .await;
    assert_eq!(s, 202, "{body}");
    job_ids(&body)[0].clone()
}

async fn tenant_pause(deployment: Deployment) {
    let mut app = spawn_app(deployment, &format!("{DASH}\n[worker]\npause_poll = \"200ms\"\n")).await;
    users(&app).await;
    let other = app.store.create_tenant("tenant-b", None).await.unwrap();
    create_user(&app.store, "ops-b", PASSWORD, Role::Operator, Some(&other.tenant.id))
        .await
        .unwrap();
    let web = Web::login(&app.base, "ops", PASSWORD).await;
    let viewer = Web::login(&app.base, "view", PASSWORD).await;
    let scoped_b = Web::login(&app.base, "ops-b", PASSWORD).await;
    let form = [
        ("tenant", app.tenant_id.as_str()),
        ("kind", ""),
        ("reason", "tenant migration"),
    ];
    // A viewer and a forged POST are refused; a scoped operator cannot
    // reach another tenant.
    assert_eq!(
        viewer
            .post("/dashboard/tenant-pauses/pause", Some(&viewer.csrf), &form)
            .await
            .0,
        403
    );
    assert_eq!(web.post("/dashboard/tenant-pauses/pause", None, &form).await.0, 403);
    assert_eq!(
        scoped_b
            .post("/dashboard/tenant-pauses/pause", Some(&scoped_b.csrf), &form)
            .await
            .0,
        404
    );
    assert!(app.store.paused_tenants().await.unwrap().is_empty());

    let (s, location) = web.post("/dashboard/tenant-pauses/pause", Some(&web.csrf), &form).await;
    assert_eq!(s, 303, "{location}");
    // Workers see it within pause_poll; one more poll for margin.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let held = probe_job(&app, &app.key, "a1").await;
    let free = probe_job(&app, &other.secret, "b1").await;
    // The other tenant's job of the same kind runs.
    let done = app.wait_settled(std::slice::from_ref(&free), WAIT).await;
    assert_eq!(done[0].state, JobState::Succeeded);
    // The paused tenant's job is parked in the store, never started, and
    // stays so across dispatcher rounds (dispatch_after is 1 s here).
    let parked = wait_for(Duration::from_secs(10), || async {
        app.store.job(None, &held).await.unwrap().unwrap().state == JobState::Pending
    })
    .await;
    assert!(parked, "the held job was not parked");
    let started = wait_for(Duration::from_secs(3), || async {
        let j = app.store.job(None, &held).await.unwrap().unwrap();
        j.attempts > 0 || j.state != JobState::Pending
    })
    .await;
    assert!(!started, "a paused tenant's job was started or re-queued");
    let (_, html) = web.get("/dashboard/queues").await;
    assert!(html.contains("paused by dashboard:ops at"), "{html}");
    assert!(html.contains("tenant migration"));

    // Resume: the dispatcher queues it and it runs, once.
    let (s, _) = web
        .post(
            "/dashboard/tenant-pauses/resume",
            Some(&web.csrf),
            &[("tenant", app.tenant_id.as_str()), ("kind", "")],
        )
        .await;
    assert_eq!(s, 303);
    let done = app.wait_settled(std::slice::from_ref(&held), WAIT).await;
    assert_eq!(done[0].state, JobState::Succeeded);
    assert_eq!(done[0].attempts, 1);

    // A pause of one kind of the tenant: that kind is held, the audit log
    // has every change.
    let (s, _) = web
        .post(
            "/dashboard/tenant-pauses/pause",
            Some(&web.csrf),
            &[("tenant", app.tenant_id.as_str()), ("kind", "probe")],
        )
        .await;
    assert_eq!(s, 303);
    assert_eq!(
        web.post(
            "/dashboard/tenant-pauses/pause",
            Some(&web.csrf),
            &[("tenant", app.tenant_id.as_str()), ("kind", "nope")],
        )
        .await
        .0,
        404
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let held = probe_job(&app, &app.key, "a2").await;
    assert!(
        wait_for(Duration::from_secs(10), || async {
            app.store.job(None, &held).await.unwrap().unwrap().state == JobState::Pending
        })
        .await
    );
    let (s, _) = web
        .post(
            "/dashboard/tenant-pauses/resume",
            Some(&web.csrf),
            &[("tenant", app.tenant_id.as_str()), ("kind", "probe")],
        )
        .await;
    assert_eq!(s, 303);
    let done = app.wait_settled(std::slice::from_ref(&held), WAIT).await;
    assert_eq!(done[0].state, JobState::Succeeded);
    let audit = app.store.audit_log(None, 50).await.unwrap();
    for action in ["tenant.paused", "tenant.resumed"] {
        assert_eq!(
            audit
                .iter()
                .filter(|e| e.action == action && e.actor == "dashboard:ops")
                .count(),
            2,
            "{action}: {audit:?}"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn tenant_pause_holds_back_one_tenant_embedded() {
    tenant_pause(Deployment::Embedded).await;
}

#[tokio::test]
async fn tenant_pause_holds_back_one_tenant_distributed() {
    tenant_pause(Deployment::Distributed).await;
}

const EVERY_SECOND: &str = r#"
[[schedules]]
name = "every-second"
cron = "* * * * * *"
job = "probe"
misfire = "run_once"
"#;

/// Ticks of `key` recorded after `after_ms`: (tick, outcome, replica).
async fn ticks_after(store: &kairos_core::Store, key: &str, after_ms: i64) -> Vec<(i64, String, String)> {
    store
        .ticks_since(key, after_ms + 1)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.tick_at, t.outcome, t.replica))
        .collect()
}

#[tokio::test]
async fn dashboard_switches_a_schedule_off_and_on() {
    let mut app = spawn_app(Deployment::Embedded, &format!("{DASH}\n{EVERY_SECOND}")).await;
    users(&app).await;
    let web = Web::login(&app.base, "ops", PASSWORD).await;
    let viewer = Web::login(&app.base, "view", PASSWORD).await;
    let start = kairos_core::time::now_ms();
    assert!(
        wait_for(WAIT, || async {
            !ticks_after(&app.store, "every-second", start).await.is_empty()
        })
        .await,
        "the schedule never fired"
    );
    assert_eq!(
        viewer
            .post("/dashboard/schedules/every-second/disable", Some(&viewer.csrf), &[])
            .await
            .0,
        403
    );
    assert_eq!(
        web.post("/dashboard/schedules/nope/disable", Some(&web.csrf), &[])
            .await
            .0,
        404
    );
    let (s, location) = web
        .post("/dashboard/schedules/every-second/disable", Some(&web.csrf), &[])
        .await;
    assert_eq!(s, 303, "{location}");
    let off_at = app.store.schedule_switches().await.unwrap()[0].set_at;
    let (_, html) = web.get("/dashboard/schedules").await;
    assert!(html.contains("switched off by dashboard:ops"), "{html}");
    assert!(html.contains("/dashboard/schedules/every-second/enable"));

    // A second replica started after the switch (a restart) honours it too.
    let (_tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(app.config.scheduling()));
    let mut replica = kairos_scheduler::Ticker::new(
        kairos_scheduler::Firer {
            store: app.store.clone(),
            queue: app.queue.clone(),
            replica: "second-replica".into(),
        },
        rx,
    );
    // 3 s with both tickers running: nothing fires. A round in progress at
    // the switch may still record the tick of that second.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        replica.round().await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let late = ticks_after(&app.store, "every-second", off_at + 1_000).await;
    assert!(late.is_empty(), "a disabled schedule fired: {late:?}");

    // On again: it fires, from now — the seconds it was off are neither
    // caught up nor recorded as misfires.
    let (s, _) = web
        .post("/dashboard/schedules/every-second/enable", Some(&web.csrf), &[])
        .await;
    assert_eq!(s, 303);
    let on_at = app.store.schedule_switches().await.unwrap()[0].set_at;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        replica.round().await.unwrap();
        if !ticks_after(&app.store, "every-second", on_at).await.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the re-enabled schedule did not fire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after_off = ticks_after(&app.store, "every-second", off_at + 1_000).await;
    assert!(
        after_off
            .iter()
            .all(|(at, outcome, _)| *at >= on_at - 1_000 && outcome == "fired"),
        "{after_off:?}"
    );
    let audit = app.store.audit_log(None, 20).await.unwrap();
    for action in ["schedule.disabled", "schedule.enabled"] {
        assert!(
            audit.iter().any(|e| e.action == action && e.target == "every-second"),
            "{action}"
        );
    }
    app.shutdown().await;
}

const UPSET_RULE: &str = r#"
[[nudges.rules]]
name = "upset"
trigger = { sentiment_alert = true }
audience = { roles = ["executive"] }
channels = ["in_app"]
urgent = true
[nudges.rules.templates.en]
subject = "Upset customer ({{alert.severity}})"
body = "Raised by {{alert.intervened_by}}"
"#;

async fn call(app: &TestApp, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.key);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn raise(app: &TestApp, id: &str, account: &str) {
    raise_in(&app.store, &app.tenant_id, id, account).await;
}

async fn raise_in(store: &kairos_core::Store, tenant_id: &str, id: &str, account: &str) {
    let mut tx = store.pool().begin().await.unwrap();
    kairos_core::store::raise_alert(
        &mut tx,
        tenant_id,
        &NewAlert {
            id: id.into(),
            account_id: account.into(),
            kind: "client_dissatisfaction".into(),
            severity: "high".into(),
            reason: "negative ticket".into(),
            payload: json!({"text": "nothing works"}),
            dedup_key: id.into(),
            event_id: None,
            urgency: Some(80),
            created_at: kairos_core::time::now_ms(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Intervening on an alert, the nudges page fed by it, the reports pages
/// and the trailing-slash redirect.
#[tokio::test]
async fn dashboard_intervenes_on_an_alert_and_shows_reports_and_nudges() {
    let app = spawn_app(
        Deployment::Embedded,
        &crate::sentiment::sentiment_config_with("follow_up = [\"nudge\"]", &format!("{DASH}\n{UPSET_RULE}")),
    )
    .await;
    users(&app).await;
    let web = Web::login(&app.base, "ops", PASSWORD).await;
    let viewer = Web::login(&app.base, "view", PASSWORD).await;
    let (s, _) = call(
        &app,
        reqwest::Method::PUT,
        "/v1/accounts/acct-1",
        Some(&json!({"display_name": "Acme", "owner": "maria@vendor.test"})),
    )
    .await;
    assert!(s == 200 || s == 201, "{s}");
    let (s, _) = call(
        &app,
        reqwest::Method::PUT,
        "/v1/accounts/acct-1/people/boss",
        Some(&json!({"role": "executive", "language": "en",
            "consent": {"in_app": {"granted": true, "given_at": "2026-11-01T10:00:00Z"}}})),
    )
    .await;
    assert!(s == 200 || s == 201, "{s}");
    raise(&app, "alert-1", "acct-1").await;
    raise(&app, "alert-2", "acct-2").await;

    let (_, html) = web.get(&format!("/dashboard/alerts?tenant={}", app.tenant_id)).await;
    assert!(html.contains("/dashboard/alerts/alert-1/intervene"), "{html}");
    assert!(html.contains("upset"), "the page names the rules a nudge plans");
    let (_, html) = viewer.get("/dashboard/alerts").await;
    assert!(!html.contains("/intervene"), "a viewer has no intervene button");

    let path = "/dashboard/alerts/alert-1/intervene";
    let nudge = [("tenant", app.tenant_id.as_str()), ("action", "nudge")];
    // Viewer: 403 with its token; anyone: 403 without a token.
    assert_eq!(viewer.post(path, Some(&viewer.csrf), &nudge).await.0, 403);
    assert_eq!(web.post(path, None, &nudge).await.0, 403);
    let (s, location) = web.post(path, Some(&web.csrf), &nudge).await;
    assert_eq!(s, 303, "{location}");
    assert!(location.contains("done=nudged"), "{location}");
    // The nudge kind plans and delivers it to the account's executive.
    let deadline = std::time::Instant::now() + WAIT;
    let sent = loop {
        let (_, h) = call(&app, reqwest::Method::GET, "/v1/accounts/acct-1/nudges", None).await;
        let first = h["nudges"]
            .as_array()
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or(Value::Null);
        if first["status"] == "sent" {
            break first;
        }
        assert!(std::time::Instant::now() < deadline, "no nudge sent: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sent["person_id"], "boss");
    assert_eq!(sent["trigger"]["type"], "sentiment_alert");
    assert_eq!(sent["trigger"]["alert"]["intervened_by"], "dashboard:ops");
    assert_eq!(sent["body"], "Raised by dashboard:ops");

    // Assign: to the account's owner; an account without one is a 409.
    let assign = [("tenant", app.tenant_id.as_str()), ("action", "assign")];
    let (s, location) = web.post(path, Some(&web.csrf), &assign).await;
    assert_eq!(s, 303, "{location}");
    assert_eq!(
        web.post("/dashboard/alerts/alert-2/intervene", Some(&web.csrf), &assign)
            .await
            .0,
        409
    );
    assert_eq!(
        web.post("/dashboard/alerts/nope/intervene", Some(&web.csrf), &assign)
            .await
            .0,
        404
    );
    let audit = app.store.audit_log(Some(&app.tenant_id), 20).await.unwrap();
    let nudged = audit
        .iter()
        .find(|e| e.action == "alert.nudged")
        .expect("alert.nudged audited");
    assert_eq!(
        (nudged.actor.as_str(), nudged.target.as_str()),
        ("dashboard:ops", "alert-1")
    );
    let assigned = audit
        .iter()
        .find(|e| e.action == "alert.assigned")
        .expect("alert.assigned audited");
    assert_eq!(assigned.details["success_manager"], "maria@vendor.test");

    // The nudges page: the rule, its channel and the sent nudge.
    let (s, html) = web.get(&format!("/dashboard/nudges?tenant={}", app.tenant_id)).await;
    assert_eq!(s, 200);
    let row = html
        .split("<tr>")
        .find(|r| r.contains("upset") && r.contains("in_app"))
        .unwrap_or_else(|| panic!("no upset/in_app row: {html}"));
    assert!(
        row.contains("<td class=\"num\">1</td><td class=\"num\">1</td>"),
        "{row}"
    );
    assert_eq!(web.get("/dashboard/nudges?window_days=0").await.0, 400);

    // Reports: a stored one is listed, shown, and its HTML served sandboxed;
    // another tenant's user does not find it.
    let report = stored_report(&app.tenant_id, "acct-1");
    kairos_jobs::report::store::insert(&app.store, &report).await.unwrap();
    let (_, list) = web.get(&format!("/dashboard/reports?tenant={}", app.tenant_id)).await;
    assert!(
        list.contains(&format!("/dashboard/reports/{}?tenant=", report.id)),
        "{list}"
    );
    let (s, page) = web
        .get(&format!("/dashboard/reports/{}?tenant={}", report.id, app.tenant_id))
        .await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("<iframe") && page.contains("sandbox"), "{page}");
    let resp = client()
        .get(format!(
            "{}/dashboard/reports/{}/html?tenant={}",
            app.base, report.id, app.tenant_id
        ))
        .header("cookie", format!("kairos_session={}", web.session))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("sandbox"));
    assert!(resp.text().await.unwrap().contains("Weekly report"));
    let other = app.store.create_tenant("tenant-b", None).await.unwrap();
    create_user(&app.store, "view-b", PASSWORD, Role::Viewer, Some(&other.tenant.id))
        .await
        .unwrap();
    let view_b = Web::login(&app.base, "view-b", PASSWORD).await;
    assert_eq!(
        view_b
            .get(&format!("/dashboard/reports/{}?tenant={}", report.id, app.tenant_id))
            .await
            .0,
        404
    );
    let (_, list_b) = view_b.get("/dashboard/reports").await;
    assert!(!list_b.contains(&report.id));

    // `/dashboard/` (and any page with a trailing slash) goes to the page.
    for (from, to) in [
        ("/dashboard/", "/dashboard"),
        ("/dashboard/jobs/?kind=probe", "/dashboard/jobs?kind=probe"),
    ] {
        let resp = client().get(format!("{}{from}", app.base)).send().await.unwrap();
        assert_eq!(resp.status(), 308, "{from}");
        assert_eq!(resp.headers()["location"], to, "{from}");
    }
    assert_eq!(
        client()
            .get(format!("{}/dashboard/nowhere", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

pub fn stored_report(tenant_id: &str, account: &str) -> kairos_jobs::report::store::StoredReport {
    let now = kairos_core::time::now_ms();
    kairos_jobs::report::store::StoredReport {
        id: kairos_jobs::report::store::report_id(tenant_id, account, "2026-W48", 1),
        tenant_id: tenant_id.into(),
        account_id: account.into(),
        scope: "account".into(),
        period: "2026-W48".into(),
        version: 1,
        period_start: now - 7 * 86_400_000,
        period_end: now,
        time_zone: "Europe/Madrid".into(),
        language: "en".into(),
        narrative_source: "template".into(),
        llm_model: None,
        tokens_prompt: None,
        tokens_completion: None,
        generation_ms: 42,
        facts: "{}".into(),
        narrative: "{}".into(),
        html: "<!doctype html><html lang=\"en\"><head><title>Weekly report</title></head>\
               <body><h1>Weekly report</h1><p>Logins up 12 %.</p><script>parent.document.title='pwned'</script></body></html>"
            .into(),
        markdown: "# Weekly report\n\nLogins up 12 %.\n".into(),
        delivery_state: "none".into(),
        delivery_error: None,
        job_id: "job-1".into(),
        created_at: now,
    }
}

/// The dashboard offers "intervene → nudge" by the nudge rules in the config
/// file now, not at start: an admin who adds a sentiment-alert rule gets the
/// offer (and the action) without restarting the API.
#[tokio::test]
async fn the_intervene_nudge_offer_follows_config_edits() {
    let env = Env::new(Deployment::Embedded).await;
    let path = env.dir.path().join("live.toml");
    let write = |rule: &str| {
        let text = env
            .config_toml(&crate::sentiment::sentiment_config_with(
                "follow_up = [\"nudge\"]",
                DASH,
            ))
            .replace("[scheduler]\n", "[scheduler]\nreload_interval = \"100ms\"\n")
            + rule;
        std::fs::write(&path, text).unwrap();
    };
    write("");
    let rt = kairos::Runtime::open(kairos::Config::load(&path).unwrap())
        .await
        .unwrap();
    let store = rt.store.clone();
    let key = store.create_tenant("tenant-a", None).await.unwrap();
    let running = kairos::start(rt, NO_WORKER).await.unwrap();
    let base = format!("http://{}", running.addr.unwrap());
    create_user(&store, "ops", PASSWORD, Role::Operator, None)
        .await
        .unwrap();
    raise_in(&store, &key.tenant.id, "alert-1", "acct-1").await;
    let web = Web::login(&base, "ops", PASSWORD).await;
    let page = format!("/dashboard/alerts?tenant={}", key.tenant.id);
    let path_ = "/dashboard/alerts/alert-1/intervene";
    let nudge = [("tenant", key.tenant.id.as_str()), ("action", "nudge")];
    let (_, html) = web.get(&page).await;
    assert!(!html.contains("upset"), "no rule yet: {html}");
    assert_eq!(
        web.post(path_, Some(&web.csrf), &nudge).await.0,
        409,
        "no rule: nothing to nudge with"
    );

    write(UPSET_RULE);
    let offered = wait_for(WAIT, || {
        let (web, page) = (&web, &page);
        async move { web.get(page).await.1.contains("upset") }
    })
    .await;
    assert!(offered, "the dashboard never offered the rule added to the file");
    let (s, location) = web.post(path_, Some(&web.csrf), &nudge).await;
    assert_eq!(s, 303, "{location}");
    assert!(location.contains("done=nudged"), "{location}");
    running.shutdown().await;
}
