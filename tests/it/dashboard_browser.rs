//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (`/usr/bin/chromedriver`) against a real `kairos serve` process on the
//! embedded store. Logs in with the keyboard, sees a dead job, retries it and
//! sees it succeed without a reload; a viewer has no retry button and its
//! forged POSTs get 403. Pauses a queue and a tenant, switches a schedule
//! off and on, assigns a sentiment alert. Every page is checked by axe-core
//! (WCAG 2 A/AA: contrast as rendered, labels, names; injected from
//! `tests/fixtures/axe-core`), and the navigation is walked with the
//! keyboard. Screenshots of every page are saved under
//! `target/artifacts/dashboard/` (paths printed).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::common::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

fn artifacts() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("artifacts").join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let path = artifacts().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

/// Waits until `cond` holds, polling every 100 ms.
async fn until<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Logs in with the keyboard only: type the name (the field has focus),
/// Tab to the password, Enter to submit.
async fn keyboard_login(c: &Client, base: &str, name: &str, password: &str) {
    c.goto(&format!("{base}/dashboard")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/dashboard/login"));
    let focused = c.active_element().await.unwrap();
    assert_eq!(
        focused.attr("id").await.unwrap().as_deref(),
        Some("name"),
        "the name field has focus"
    );
    focused.send_keys(name).await.unwrap();
    focused.send_keys(&String::from(char::from(Key::Tab))).await.unwrap();
    let password_field = c.active_element().await.unwrap();
    assert_eq!(password_field.attr("id").await.unwrap().as_deref(), Some("password"));
    password_field
        .send_keys(&format!("{password}{}", char::from(Key::Enter)))
        .await
        .unwrap();
    until("the overview after login", Duration::from_secs(10), || async {
        c.current_url().await.map(|u| u.path() == "/dashboard").unwrap_or(false)
    })
    .await;
}

/// axe-core, the accessibility engine (MPL-2.0, see its README).
const AXE: &str = include_str!("../fixtures/axe-core/axe.min.js");

/// Runs axe-core's WCAG 2 A and AA rules on the current page and fails
/// with every violation (rule, impact, the elements and why).
async fn axe_check(c: &Client, page: &str) {
    c.execute(AXE, vec![]).await.unwrap();
    let result = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}) \
               .then(r => done({ran: r.passes.length + r.violations.length + r.incomplete.length, \
                 contrast: r.passes.filter(p => p.id === 'color-contrast').map(p => p.nodes.length), \
                 violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, \
                   nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)}))}), \
                 e => done({error: String(e)}));",
            vec![],
        )
        .await
        .unwrap();
    assert!(result.get("error").is_none(), "{page}: axe failed: {result}");
    let violations = result["violations"].as_array().cloned().unwrap_or_default();
    assert!(
        violations.is_empty(),
        "{page}: accessibility violations: {}",
        serde_json::to_string_pretty(&violations).unwrap()
    );
    assert!(
        result["ran"].as_u64().unwrap_or(0) > 10,
        "{page}: axe ran too few rules: {result}"
    );
    println!(
        "axe: {page}: no violations ({} rules; colour contrast checked on {} elements)",
        result["ran"], result["contrast"]
    );
}

/// Presses `key` once, wherever the focus is.
async fn press(c: &Client, key: Key) {
    let k = char::from(key);
    let actions = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: k })
        .then(KeyAction::Up { value: k });
    c.perform_actions(actions).await.unwrap();
}

/// The focused element's tag and text.
async fn focused(c: &Client) -> (String, String) {
    let e = c.active_element().await.unwrap();
    (
        e.tag_name().await.unwrap_or_default(),
        e.text().await.unwrap_or_default(),
    )
}

/// A status of a `fetch` POST made by the page itself (a forged request
/// from the user's own browser, cookies included).
async fn page_post(c: &Client, path: &str, body: &str) -> u64 {
    let status = c
        .execute_async(
            "const [path, body, done] = arguments; \
             fetch(path, {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'}, body}) \
               .then(r => done(r.status), e => done(String(e)));",
            vec![json!(path), json!(body)],
        )
        .await
        .unwrap();
    status.as_u64().unwrap_or_else(|| panic!("fetch failed: {status}"))
}

#[tokio::test]
async fn dashboard_in_a_browser() {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "needs chromium and chromium-driver (scripts/test installs them)"
    );
    let env = Env::new(Deployment::Embedded).await;
    let port = free_port();
    let config = env.config_file(&format!(
        "{}\n[dashboard]\nrefresh = \"300ms\"\n\n[worker]\npause_poll = \"200ms\"\n\n\
         [[schedules]]\nname = \"nightly-probe\"\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Madrid\"\njob = \"probe\"\n",
        super::dashboard::DASH.replace("[jobs.probe]", "[jobs.probe]\nbackoff_initial = \"100ms\"")
    ));
    let config_text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    std::fs::write(&config, config_text).unwrap();
    let base = format!("http://127.0.0.1:{port}");

    // Users and a tenant through the CLI, as an operator would.
    let (ok, out, err) = run_cli(&config, &["tenants", "create", "acme"]).await;
    assert!(ok, "{err}");
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("kairos_"))
        .expect("API key printed")
        .to_owned();
    let (ok, out, err) = run_cli(&config, &["users", "create", "ops", "--role", "operator", "--generate"]).await;
    assert!(ok, "{err}");
    let ops_password = out.split_whitespace().last().unwrap().to_owned();
    let mut viewer = kairos_cmd(
        &config,
        &["users", "create", "viewer", "--role", "viewer", "--tenant", "acme"],
    );
    viewer
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = viewer.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"viewer-password-123\n").await.unwrap();
    }
    assert!(child.wait().await.unwrap().success());

    // Domain data the pages show: a stored report, a sentiment alert on an
    // account with a success manager.
    let tenant_id = {
        let store = kairos_core::Store::connect(&env.store_url, 1).await.unwrap();
        let tenant = store.find_tenant("acme").await.unwrap();
        let report = super::dashboard_actions::stored_report(&tenant.id, "acc-1");
        kairos_jobs::report::store::insert(&store, &report).await.unwrap();
        let mut tx = store.pool().begin().await.unwrap();
        kairos_core::store::raise_alert(
            &mut tx,
            &tenant.id,
            &kairos_core::store::NewAlert {
                id: "alert-1".into(),
                account_id: "acc-1".into(),
                kind: "client_dissatisfaction".into(),
                severity: "high".into(),
                reason: "negative ticket, urgent words".into(),
                payload: json!({"text": "Nothing works since yesterday, this is urgent!"}),
                dedup_key: "alert-1".into(),
                event_id: None,
                urgency: Some(85),
                created_at: kairos_core::time::now_ms(),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        tenant.id
    };
    let report_id = kairos_jobs::report::store::report_id(&tenant_id, "acc-1", "2026-W48", 1);

    let mut server = spawn_proc(&config, &["serve"]);
    let http = reqwest::Client::new();
    until("kairos serve ready", Duration::from_secs(30), || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    // Two jobs that die: one fails its only attempt (and will succeed when
    // retried, slowly enough to watch), one fails for good.
    let post = |id: &'static str, probe: serde_json::Value| {
        let http = http.clone();
        let base = base.clone();
        let key = key.clone();
        async move {
            let resp = http
                .post(format!("{base}/v1/events"))
                .bearer_auth(&key)
                .json(&event(id, "diagnostic.run", "acc-1", json!({ "probe": probe })))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202);
            job_ids(&resp.json().await.unwrap())[0].clone()
        }
    };
    let resp = http
        .put(format!("{base}/v1/accounts/acc-1"))
        .bearer_auth(&key)
        .json(&json!({"display_name": "Acme Iberia", "owner": "maria@vendor.test"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let flaky = post("flaky", json!({"fail_attempts": 1, "sleep_ms": 2500})).await;
    let doomed = post("doomed", json!({"permanent": true})).await;

    let driver_port = free_port();
    let mut driver = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={driver_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let driver_url = format!("http://127.0.0.1:{driver_port}");
    until("chromedriver ready", Duration::from_secs(20), || async {
        http.get(format!("{driver_url}/status"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let c = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .expect("a WebDriver session");

    // Log in with the keyboard.
    c.goto(&format!("{base}/dashboard/login")).await.unwrap();
    screenshot(&c, "login").await;
    keyboard_login(&c, &base, "ops", &ops_password).await;

    // The failed job shows up as dead (live: no reload needed).
    c.goto(&format!("{base}/dashboard/jobs?kind=probe")).await.unwrap();
    let flaky_state = format!("#job-{flaky} td.state");
    let deadline = Instant::now() + Duration::from_secs(30);
    while text_of(&c, &flaky_state).await.as_deref() != Some("dead") {
        if Instant::now() > deadline {
            screenshot(&c, "failed-waiting-for-dead").await;
            panic!("the flaky job never showed dead: {}", c.source().await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    screenshot(&c, "overview-jobs-dead").await;

    // Retry it from the list; the page (after the form's redirect) then
    // follows it to `succeeded` without reloading.
    c.find(Locator::Css(&format!("#job-{flaky} button")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the list after the retry", Duration::from_secs(10), || async {
        c.current_url()
            .await
            .is_ok_and(|u| u.query().unwrap_or_default().contains("done=retried"))
    })
    .await;
    c.execute("window.kairosMarker = 42;", vec![]).await.unwrap();
    let state_now = text_of(&c, &flaky_state).await.unwrap_or_default();
    assert!(
        ["queued", "running", "pending"].contains(&state_now.as_str()),
        "the retried job should still be on its way, was {state_now}"
    );
    until("the retried job succeeded, live", Duration::from_secs(30), || async {
        text_of(&c, &flaky_state).await.as_deref() == Some("succeeded")
    })
    .await;
    let marker = c.execute("return window.kairosMarker;", vec![]).await.unwrap();
    assert_eq!(marker, json!(42), "the page was not reloaded");
    screenshot(&c, "jobs").await;

    // Keyboard navigation: from the top of a page, Tab reaches the skip
    // link first (Enter jumps to the content), then the navigation, whose
    // links Enter follows.
    c.goto(&format!("{base}/dashboard")).await.unwrap();
    press(&c, Key::Tab).await;
    assert_eq!(focused(&c).await, ("a".to_owned(), "Skip to content".to_owned()));
    screenshot(&c, "keyboard-skip-link").await;
    press(&c, Key::Enter).await;
    until(
        "the skip link to move to the content",
        Duration::from_secs(5),
        || async { c.current_url().await.is_ok_and(|u| u.fragment() == Some("main")) },
    )
    .await;
    c.goto(&format!("{base}/dashboard")).await.unwrap();
    let mut reached = Vec::new();
    for _ in 0..30 {
        press(&c, Key::Tab).await;
        let (tag, text) = focused(&c).await;
        reached.push(format!("{tag}:{text}"));
        if text == "Reports" {
            break;
        }
    }
    assert!(reached.iter().any(|r| r == "a:Jobs"), "Tab order: {reached:?}");
    assert_eq!(
        reached.last().map(String::as_str),
        Some("a:Reports"),
        "Tab order: {reached:?}"
    );
    press(&c, Key::Enter).await;
    until(
        "Enter on a focused nav link to open its page",
        Duration::from_secs(10),
        || async { c.current_url().await.is_ok_and(|u| u.path() == "/dashboard/reports") },
    )
    .await;

    // Every page, with a screenshot and axe-core's verdict.
    for (name, path) in [
        ("overview", "/dashboard".to_owned()),
        ("jobs-list", "/dashboard/jobs".to_owned()),
        ("job-detail", format!("/dashboard/jobs/{flaky}")),
        ("dead-letters", "/dashboard/dead".to_owned()),
        ("queues", "/dashboard/queues".to_owned()),
        ("schedules", "/dashboard/schedules".to_owned()),
        ("rules", "/dashboard/rules".to_owned()),
        ("models", "/dashboard/models".to_owned()),
        ("accounts-at-risk", "/dashboard/risk".to_owned()),
        ("sentiment-alerts", "/dashboard/alerts".to_owned()),
        ("reports", "/dashboard/reports".to_owned()),
        ("report", format!("/dashboard/reports/{report_id}?tenant={tenant_id}")),
        ("nudges", "/dashboard/nudges".to_owned()),
        ("audit-log", "/dashboard/audit".to_owned()),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        let h1 = c.find(Locator::Css("main h1")).await.unwrap().text().await.unwrap();
        assert!(
            !h1.is_empty() && !h1.starts_with('4') && !h1.starts_with('5'),
            "{path}: {h1}"
        );
        axe_check(&c, path.as_str()).await;
        screenshot(&c, name).await;
    }
    // The login page too (a fresh, cookie-less look is the same page).
    c.goto(&format!("{base}/dashboard/login")).await.unwrap();
    axe_check(&c, "/dashboard/login").await;
    // The stored report's own script did not run (sandboxed frame).
    c.goto(&format!("{base}/dashboard/reports/{report_id}?tenant={tenant_id}"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let title = c.title().await.unwrap();
    assert!(!title.contains("pwned"), "the report's script ran: {title}");

    // Switch the schedule off and on.
    c.goto(&format!("{base}/dashboard/schedules")).await.unwrap();
    c.find(Locator::Css("#schedule-nightly-probe button.danger"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the schedule shown off", Duration::from_secs(10), || async {
        text_of(&c, "#schedule-nightly-probe .schedule-state")
            .await
            .is_some_and(|t| t.contains("switched off by dashboard:ops"))
    })
    .await;
    axe_check(&c, "/dashboard/schedules (switched off)").await;
    screenshot(&c, "schedules-disabled").await;
    c.find(Locator::Css("#schedule-nightly-probe button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the schedule shown on", Duration::from_secs(10), || async {
        text_of(&c, "#schedule-nightly-probe .schedule-state")
            .await
            .is_some_and(|t| t.starts_with("on"))
    })
    .await;

    // Assign the alert to the account's success manager.
    c.goto(&format!("{base}/dashboard/alerts")).await.unwrap();
    c.find(Locator::Css("#alert-alert-1 button[value=assign]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the assignment confirmed", Duration::from_secs(10), || async {
        text_of(&c, "main .flash")
            .await
            .is_some_and(|t| t.contains("success manager"))
    })
    .await;
    screenshot(&c, "sentiment-alerts-assigned").await;

    // Pause the tenant from the queues page (all kinds), then resume it.
    c.goto(&format!("{base}/dashboard/queues")).await.unwrap();
    c.find(Locator::Css("#tp-reason"))
        .await
        .unwrap()
        .send_keys("migration")
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/dashboard/tenant-pauses/pause'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the tenant shown paused", Duration::from_secs(10), || async {
        text_of(&c, "#tenant-pause-acme-all")
            .await
            .is_some_and(|t| t.contains("paused by dashboard:ops") && t.contains("migration"))
    })
    .await;
    axe_check(&c, "/dashboard/queues (tenant paused)").await;
    screenshot(&c, "queues-tenant-paused").await;
    c.find(Locator::Css("#tenant-pause-acme-all button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the tenant resumed", Duration::from_secs(10), || async {
        text_of(&c, "#tenant-pauses")
            .await
            .is_some_and(|t| t.contains("No tenant is paused"))
    })
    .await;
    // Pause a kind from the queues page, then resume it.
    c.goto(&format!("{base}/dashboard/queues")).await.unwrap();
    c.find(Locator::Css("#queue-probe button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("probe shown paused", Duration::from_secs(10), || async {
        text_of(&c, "#queue-probe .queue-state")
            .await
            .is_some_and(|t| t.contains("paused by dashboard:ops"))
    })
    .await;
    screenshot(&c, "queues-paused").await;
    c.find(Locator::Css("#queue-probe button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("probe active again", Duration::from_secs(10), || async {
        text_of(&c, "#queue-probe .queue-state").await.as_deref() == Some("active")
    })
    .await;

    // The overview's table is swapped live: read it until it holds both.
    c.goto(&format!("{base}/dashboard")).await.unwrap();
    until(
        "the probe kind and an alive worker on the overview",
        Duration::from_secs(10),
        || async {
            let kinds = text_of(&c, "#kind-probe").await.unwrap_or_default();
            let workers = text_of(&c, "[id^=worker-]").await.unwrap_or_default();
            kinds.contains("probe") && workers.contains("alive")
        },
    )
    .await;
    let audit = {
        c.goto(&format!("{base}/dashboard/audit")).await.unwrap();
        c.find(Locator::Css("main")).await.unwrap().text().await.unwrap()
    };
    assert!(
        audit.contains("job.retried") && audit.contains("dashboard:ops"),
        "{audit}"
    );

    // Log out (a form POST with the CSRF token), then in as the viewer.
    c.find(Locator::Css("header form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the login form after logout", Duration::from_secs(10), || async {
        c.current_url().await.is_ok_and(|u| u.path() == "/dashboard/login")
    })
    .await;
    keyboard_login(&c, &base, "viewer", "viewer-password-123").await;
    c.goto(&format!("{base}/dashboard/dead")).await.unwrap();
    let main = c.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(main.contains(&doomed), "the viewer sees the dead job");
    assert!(
        c.find_all(Locator::Css("main form[method=post] button"))
            .await
            .unwrap()
            .is_empty(),
        "a viewer has no action buttons"
    );
    axe_check(&c, "/dashboard/dead (viewer)").await;
    screenshot(&c, "dead-letters-viewer").await;
    // Forged POSTs from the viewer's own browser: with its CSRF token, 403
    // (role); without a token, 403 (CSRF). The job stays dead.
    let csrf = c
        .find(Locator::Css("header input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let retry = format!("/dashboard/dead/{doomed}/retry");
    assert_eq!(page_post(&c, &retry, &format!("csrf={csrf}")).await, 403);
    assert_eq!(page_post(&c, &retry, "").await, 403);

    c.close().await.unwrap();
    driver.kill().await.ok();
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(20)).await.success());
    let store = kairos_core::Store::connect(&env.store_url, 1).await.unwrap();
    let doomed_row = store.job(None, &doomed).await.unwrap().unwrap();
    assert_eq!(doomed_row.state, kairos_core::store::JobState::Dead);
}
