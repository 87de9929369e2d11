//! The ops dashboard over plain HTTP (no browser): login, sessions, the
//! login rate limit, CSRF, roles (403) and tenant scoping, on both
//! deployments. The browser tests are in `dashboard_browser.rs`.

use std::time::Duration;

use kairos_api::dashboard::auth::{create_user, Role};
use kairos_core::store::JobState;
use serde_json::json;

use crate::common::*;

pub const DASH: &str = r#"
[jobs.probe]
max_attempts = 1
timeout = "10s"

[[rules]]
on = "diagnostic.*"
run = ["probe"]
"#;

pub const PASSWORD: &str = "a-long-test-password";

/// A dashboard client: the session cookie and CSRF token of one login.
pub struct Web {
    pub base: String,
    pub http: reqwest::Client,
    pub session: String,
    pub csrf: String,
}

/// The value of the hidden `csrf` input in a page.
pub fn hidden_csrf(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_owned())
}

/// The `Set-Cookie` header for cookie `name`, whole.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Posts the login form; returns the response (303 on success).
pub async fn post_login(http: &reqwest::Client, base: &str, name: &str, password: &str) -> reqwest::Response {
    let form = http.get(format!("{base}/dashboard/login")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let login_cookie = cookie_value(&set_cookie(&form, "kairos_login_csrf").expect("login CSRF cookie"));
    let html = form.text().await.unwrap();
    let csrf = hidden_csrf(&html).expect("csrf field");
    assert_eq!(csrf, login_cookie);
    http.post(format!("{base}/dashboard/login"))
        .header("cookie", format!("kairos_login_csrf={login_cookie}"))
        .form(&[("csrf", csrf.as_str()), ("name", name), ("password", password)])
        .send()
        .await
        .unwrap()
}

impl Web {
    pub async fn login(base: &str, name: &str, password: &str) -> Web {
        let http = client();
        let resp = post_login(&http, base, name, password).await;
        assert_eq!(resp.status(), 303, "login of {name} failed");
        let session = cookie_value(&set_cookie(&resp, "kairos_session").expect("session cookie"));
        let mut web = Web {
            base: base.to_owned(),
            http,
            session,
            csrf: String::new(),
        };
        let (s, html) = web.get("/dashboard").await;
        assert_eq!(s, 200);
        web.csrf = hidden_csrf(&html).expect("logout form carries the CSRF token");
        web
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("kairos_session={}", self.session))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// POSTs a form, with the session's CSRF token unless `csrf` is `None`.
    pub async fn post(&self, path: &str, csrf: Option<&str>, fields: &[(&str, &str)]) -> (u16, String) {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        if let Some(c) = csrf {
            form.push(("csrf", c));
        }
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", format!("kairos_session={}", self.session))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.text().await.unwrap();
        (status, if status == 303 { location } else { body })
    }
}

/// A dead probe job of `key`'s tenant.
pub async fn dead_job(app: &TestApp, key: &str, event_id: &str) -> String {
    let (s, body) = app
        .post_events_with_key(
            key,
            &event(
                event_id,
                "diagnostic.bad",
                "acc-1",
                json!({"probe": {"permanent": true}}),
            ),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    let id = job_ids(&body)[0].clone();
    let jobs = app
        .wait_settled(std::slice::from_ref(&id), Duration::from_secs(20))
        .await;
    assert_eq!(jobs[0].state, JobState::Dead);
    id
}

async fn login_session_csrf_and_logout(deployment: Deployment) {
    let mut app = spawn_app(deployment, &format!("{DASH}\n[dashboard]\nsecure_cookie = true\n")).await;
    create_user(&app.store, "ops", PASSWORD, Role::Operator, None)
        .await
        .unwrap();
    let http = client();

    // Not logged in: every page sends to the login form; actions too.
    let resp = http.get(format!("{}/dashboard/jobs", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/dashboard/login");

    // A wrong password shows the form again, with an error.
    let resp = post_login(&http, &app.base, "ops", "not-the-password").await;
    assert_eq!(resp.status(), 200);
    assert!(set_cookie(&resp, "kairos_session").is_none());
    assert!(resp.text().await.unwrap().contains("Wrong user name or password"));

    // A login POST without the form's CSRF token is refused.
    let resp = http
        .post(format!("{}/dashboard/login", app.base))
        .form(&[("name", "ops"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // The right password: a session cookie, HttpOnly, SameSite=Strict, Secure (configured).
    let resp = post_login(&http, &app.base, "ops", PASSWORD).await;
    assert_eq!(resp.status(), 303);
    let cookie = set_cookie(&resp, "kairos_session").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/dashboard"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    // Only the token's hash is stored.
    let token = cookie_value(&cookie);
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM dashboard_sessions")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token);

    let web = Web::login(&app.base, "ops", PASSWORD).await;
    let id = dead_job(&app, &app.key, "d1").await;
    let (s, html) = web.get("/dashboard/dead").await;
    assert_eq!(s, 200);
    assert!(html.contains(&id), "the dead job is listed");
    assert!(
        html.contains(&format!("/dashboard/dead/{id}/retry")),
        "operators get a retry button"
    );

    // Actions without the CSRF token, or with a wrong one, are refused.
    let (s, _) = web.post(&format!("/dashboard/dead/{id}/retry"), None, &[]).await;
    assert_eq!(s, 403);
    let (s, _) = web
        .post(
            &format!("/dashboard/dead/{id}/retry"),
            Some("0".repeat(64).as_str()),
            &[],
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(app.store.job(None, &id).await.unwrap().unwrap().state, JobState::Dead);

    // With it: retried through the one retry path, audited with the user.
    let (s, location) = web
        .post(
            &format!("/dashboard/dead/{id}/retry"),
            Some(&web.csrf),
            &[("back", "/dashboard/dead")],
        )
        .await;
    assert_eq!(s, 303, "{location}");
    assert!(location.starts_with("/dashboard/dead?done=retried"), "{location}");
    // It runs again (and, a permanent failure, dies again): a second attempt.
    assert!(
        wait_for(Duration::from_secs(20), || async {
            app.store.attempts(&id).await.unwrap().len() == 2
        })
        .await,
        "the retried job ran again"
    );
    let job = app.store.job(None, &id).await.unwrap().unwrap();
    assert_eq!(job.max_attempts, 2, "retry_dead grants one more attempt");
    let audit = app.store.audit_log(None, 50).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "job.retried" && e.target == id && e.actor == "dashboard:ops"),
        "{audit:?}"
    );

    // Every page renders for the operator.
    for page in [
        "/dashboard",
        "/dashboard/jobs",
        "/dashboard/jobs?state=dead&kind=probe",
        &format!("/dashboard/jobs/{id}"),
        "/dashboard/dead",
        "/dashboard/queues",
        "/dashboard/schedules",
        "/dashboard/rules",
        "/dashboard/models",
        "/dashboard/risk",
        "/dashboard/alerts",
        "/dashboard/audit",
    ] {
        let (s, html) = web.get(page).await;
        assert_eq!(s, 200, "{page}: {html}");
        assert!(html.contains("<main id=\"main\">"), "{page}");
    }
    // Assets come with long cache headers.
    let resp = http
        .get(format!("{}/dashboard/assets/htmx-2.0.11.min.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["cache-control"].to_str().unwrap().contains("immutable"));

    // Logout ends the session for good.
    let (s, location) = web.post("/dashboard/logout", Some(&web.csrf), &[]).await;
    assert_eq!((s, location.as_str()), (303, "/dashboard/login"));
    let (s, _) = web.get("/dashboard").await;
    assert_eq!(s, 303);
    app.shutdown().await;
}

#[tokio::test]
async fn login_session_csrf_and_logout_embedded() {
    login_session_csrf_and_logout(Deployment::Embedded).await;
}

#[tokio::test]
async fn login_session_csrf_and_logout_distributed() {
    login_session_csrf_and_logout(Deployment::Distributed).await;
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_user_name() {
    let mut app = spawn_app(
        Deployment::Embedded,
        "[dashboard]\nlogin_attempts = 3\nlogin_window = \"1m\"\n",
    )
    .await;
    create_user(&app.store, "ops", PASSWORD, Role::Viewer, None)
        .await
        .unwrap();
    let http = client();
    for _ in 0..3 {
        assert_eq!(
            post_login(&http, &app.base, "ops", "wrong-password").await.status(),
            200
        );
    }
    // Even the right password is refused now, for this name and this address.
    assert_eq!(post_login(&http, &app.base, "ops", PASSWORD).await.status(), 429);
    assert_eq!(
        post_login(&http, &app.base, "someone-else", PASSWORD).await.status(),
        429
    );
    app.shutdown().await;
}

async fn viewers_and_tenant_scope(deployment: Deployment) {
    let mut app = spawn_app(deployment, DASH).await;
    let other = app.store.create_tenant("tenant-b", None).await.unwrap();
    let mine = dead_job(&app, &app.key, "a1").await;
    let theirs = dead_job(&app, &other.secret, "b1").await;
    create_user(&app.store, "view-a", PASSWORD, Role::Viewer, Some(&app.tenant_id))
        .await
        .unwrap();
    create_user(&app.store, "ops-a", PASSWORD, Role::Operator, Some(&app.tenant_id))
        .await
        .unwrap();
    create_user(&app.store, "root", PASSWORD, Role::Admin, None)
        .await
        .unwrap();

    // A tenant-scoped viewer sees its tenant's jobs only, and no action button.
    let viewer = Web::login(&app.base, "view-a", PASSWORD).await;
    for page in [
        "/dashboard/jobs",
        "/dashboard/dead",
        "/dashboard/jobs?tenant=".to_owned().as_str(),
    ] {
        let (s, html) = viewer.get(page).await;
        assert_eq!(s, 200);
        assert!(html.contains(&mine), "{page}");
        assert!(!html.contains(&theirs), "{page} leaks the other tenant's job");
        assert!(!html.contains("/retry\""), "{page} shows a retry button to a viewer");
        assert!(!html.contains("Retry"), "{page} shows a retry button to a viewer");
    }
    // Asking for the other tenant changes nothing; its job is not found.
    let (_, html) = viewer.get(&format!("/dashboard/jobs?tenant={}", other.tenant.id)).await;
    assert!(!html.contains(&theirs));
    assert_eq!(viewer.get(&format!("/dashboard/jobs/{theirs}")).await.0, 404);
    // A forged POST with the viewer's valid CSRF token: 403, nothing done.
    let (s, _) = viewer
        .post(&format!("/dashboard/dead/{mine}/retry"), Some(&viewer.csrf), &[])
        .await;
    assert_eq!(s, 403);
    let (s, _) = viewer
        .post("/dashboard/dead/bulk", Some(&viewer.csrf), &[("action", "discard")])
        .await;
    assert_eq!(s, 403);
    assert_eq!(app.store.job(None, &mine).await.unwrap().unwrap().state, JobState::Dead);

    // A tenant-scoped operator cannot reach the other tenant's job either.
    let ops = Web::login(&app.base, "ops-a", PASSWORD).await;
    let (s, _) = ops
        .post(&format!("/dashboard/dead/{theirs}/retry"), Some(&ops.csrf), &[])
        .await;
    assert_eq!(s, 404);
    let (s, _) = ops
        .post(&format!("/dashboard/dead/{theirs}/discard"), Some(&ops.csrf), &[])
        .await;
    assert_eq!(s, 404);
    // Bulk discard with no filter touches only its own tenant.
    let (s, location) = ops
        .post(
            "/dashboard/dead/bulk",
            Some(&ops.csrf),
            &[("action", "discard"), ("back", "/dashboard/dead")],
        )
        .await;
    assert_eq!(s, 303);
    assert!(location.contains("done=discarded&n=1"), "{location}");
    assert!(app.store.job(None, &mine).await.unwrap().is_none(), "discarded");
    assert_eq!(
        app.store.job(None, &theirs).await.unwrap().unwrap().state,
        JobState::Dead
    );
    // Schedules fan out to every tenant: a scoped operator cannot fire one.
    assert_eq!(
        ops.post("/dashboard/schedules/any/run", Some(&ops.csrf), &[]).await.0,
        403
    );

    // The unscoped admin sees both tenants' audit entries.
    let admin = Web::login(&app.base, "root", PASSWORD).await;
    let (_, html) = admin.get(&format!("/dashboard/jobs/{theirs}")).await;
    assert!(html.contains(&theirs));
    let (_, audit) = admin.get("/dashboard/audit").await;
    assert!(audit.contains("job.discarded") && audit.contains("dashboard:ops-a"));
    app.shutdown().await;
}

#[tokio::test]
async fn viewers_and_tenant_scope_embedded() {
    viewers_and_tenant_scope(Deployment::Embedded).await;
}

#[tokio::test]
async fn viewers_and_tenant_scope_distributed() {
    viewers_and_tenant_scope(Deployment::Distributed).await;
}

#[tokio::test]
async fn job_list_pages_by_cursor_and_filters() {
    let mut app = spawn_app(Deployment::Embedded, DASH).await;
    let events: Vec<serde_json::Value> = (0..60)
        .map(|i| event(&format!("e{i}"), "diagnostic.ok", "acc", json!({})))
        .collect();
    let (s, body) = app.post_events(&json!({ "events": events })).await;
    assert_eq!(s, 202, "{body}");
    let ids = job_ids(&body);
    app.wait_settled(&ids, Duration::from_secs(30)).await;
    create_user(&app.store, "v", PASSWORD, Role::Viewer, None)
        .await
        .unwrap();
    let web = Web::login(&app.base, "v", PASSWORD).await;
    let (_, first) = web.get("/dashboard/jobs?kind=probe&state=succeeded").await;
    let next = first
        .split("href=\"")
        .find_map(|s| s.split('"').next().filter(|h| h.contains("before=")))
        .expect("a next-page link")
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    let (_, second) = web.get(&next).await;
    let shown = |html: &str| {
        ids.iter()
            .filter(|id| html.contains(&format!("id=\"job-{id}\"")))
            .count()
    };
    assert_eq!(shown(&first), 50);
    assert_eq!(shown(&second), 10);
    let row = |id: &String| format!("id=\"job-{id}\"");
    assert!(ids
        .iter()
        .all(|id| first.contains(&row(id)) != second.contains(&row(id))));
    // Search by id goes to the job; a bad filter is a 400 page, not a 500.
    let resp = client()
        .get(format!("{}/dashboard/jobs?id={}", app.base, ids[0]))
        .header("cookie", format!("kairos_session={}", web.session))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["location"],
        format!("/dashboard/jobs/{}", ids[0]).as_str()
    );
    assert_eq!(web.get("/dashboard/jobs?state=bogus").await.0, 400);
    assert_eq!(web.get("/dashboard/jobs?from=yesterday").await.0, 400);
    app.shutdown().await;
}

#[tokio::test]
async fn operators_pause_and_resume_a_kind() {
    let mut app = spawn_app(
        Deployment::Embedded,
        &format!("{DASH}\n[worker]\npause_poll = \"200ms\"\n"),
    )
    .await;
    create_user(&app.store, "ops", PASSWORD, Role::Operator, None)
        .await
        .unwrap();
    create_user(&app.store, "ops-a", PASSWORD, Role::Operator, Some(&app.tenant_id))
        .await
        .unwrap();
    // A pause stops the kind for every tenant: not for a tenant-scoped user.
    let scoped = Web::login(&app.base, "ops-a", PASSWORD).await;
    assert_eq!(
        scoped
            .post("/dashboard/queues/probe/pause", Some(&scoped.csrf), &[])
            .await
            .0,
        403
    );
    let web = Web::login(&app.base, "ops", PASSWORD).await;
    assert_eq!(web.post("/dashboard/queues/probe/pause", None, &[]).await.0, 403);
    assert_eq!(
        web.post("/dashboard/queues/nope/pause", Some(&web.csrf), &[]).await.0,
        404
    );
    let (s, location) = web
        .post(
            "/dashboard/queues/probe/pause",
            Some(&web.csrf),
            &[("reason", "maintenance")],
        )
        .await;
    assert_eq!(s, 303, "{location}");
    let (_, html) = web.get("/dashboard/queues").await;
    assert!(html.contains("paused by dashboard:ops"), "{html}");
    assert!(html.contains("/dashboard/queues/probe/resume"));
    // Workers honour the pause within pause_poll plus one fetch (the bound
    // the worker documents): a job posted after that is not started.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (s, body) = app.post_events(&event("p1", "diagnostic.ok", "acc", json!({}))).await;
    assert_eq!(s, 202, "{body}");
    let id = job_ids(&body)[0].clone();
    let started = wait_for(Duration::from_secs(2), || async {
        app.store.job(None, &id).await.unwrap().unwrap().attempts > 0
    })
    .await;
    assert!(!started, "a paused kind's job was started");
    let (s, _) = web.post("/dashboard/queues/probe/resume", Some(&web.csrf), &[]).await;
    assert_eq!(s, 303);
    let jobs = app
        .wait_settled(std::slice::from_ref(&id), Duration::from_secs(20))
        .await;
    assert_eq!(jobs[0].state, JobState::Succeeded);
    let audit = app.store.audit_log(None, 20).await.unwrap();
    for action in ["queue.paused", "queue.resumed"] {
        assert!(
            audit.iter().any(|e| e.action == action && e.actor == "dashboard:ops"),
            "{action}: {audit:?}"
        );
    }
    app.shutdown().await;
}
