//! The delivery guarantees of nudges, on both deployments: caps hold under
//! concurrent deliveries (the check and the claim are one serialised
//! transaction), a worker SIGKILLed mid-send never leads to a second send
//! (at most once: the intent is committed before the send, a claim past its
//! lease becomes `unknown`), LLM personalisation with the template as
//! fallback, hot reload of the rules, and email open/click tracking.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kairos::{start, Roles, Runtime};
use kairos_jobs::nudge::store::{self as nudges, Planned};
use kairos_jobs::JobContext;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use super::{call, consent, put_person, settled_history, smtp_toml, WAIT};
use crate::common::{
    event, job_ids, kairos_cmd, spawn_app, spawn_app_on, wait_for, wait_settled, worker_proc, Deployment, Env, TestApp,
    NO_WORKER,
};
use crate::servers::{LlmServer, SmtpServer};

/// Polls `f` every 50 ms until it gives a value; panics after `WAIT`.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Plans a nudge of `rule` for `person` without its delivery job (the test
/// runs the deliveries itself, all at once).
async fn plan_bare(app: &TestApp, rule: &str, account: &str, person: &str, key: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let now = kairos_core::time::now_ms();
    let planned = Planned {
        id: id.clone(),
        rule: rule.into(),
        account_id: account.into(),
        person_id: person.into(),
        dedupe_key: key.into(),
        trigger: json!({"type": "event"}),
        status: "planned",
        variant: None,
        reason: String::new(),
        priority: 0,
        urgent: false,
        dry_run: false,
        run_after: now,
    };
    assert!(nudges::plan(&app.store, &app.tenant_id, &planned, None, now)
        .await
        .unwrap());
    id
}

/// Runs the delivery of every nudge in `ids` at the same instant (a
/// barrier), each as its own `nudge` job attempt on the multi-threaded
/// runtime: the race two workers would run.
async fn deliver_all_at_once(app: &TestApp, ids: &[String]) {
    let registry = kairos_jobs::Registry::from_config(&app.config.kinds(), &["nudge".into()], &app.store)
        .await
        .unwrap();
    let job = registry.get("nudge").unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(ids.len()));
    let mut set = tokio::task::JoinSet::new();
    for id in ids {
        let (job, barrier) = (job.clone(), barrier.clone());
        let ctx = JobContext {
            job_id: uuid::Uuid::new_v4().to_string(),
            tenant_id: app.tenant_id.clone(),
            attempt: 1,
            max_attempts: 3,
            store: app.store.clone(),
            queue: app.queue.clone(),
        };
        let payload = json!({ "nudge_id": id }).to_string();
        set.spawn(async move {
            barrier.wait().await;
            job.run(&ctx, &payload).await
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
}

async fn statuses(app: &TestApp, ids: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for id in ids {
        let n = nudges::get(&app.store, &app.tenant_id, id).await.unwrap().unwrap();
        out.push((n.status, n.reason));
    }
    out
}

fn count(s: &[(String, String)], status: &str) -> usize {
    s.iter().filter(|(st, _)| st == status).count()
}

const CAPPED_RULE: &str = r#"
[nudges]
person_caps = [{ max = 2, per = "1d" }]
tenant_daily_cap = 5

[[nudges.rules]]
name = "r"
trigger = { event = "a.happened" }
channels = ["in_app"]
[nudges.rules.templates.en]
subject = "Hi"
body = "b"
"#;

/// Twelve deliveries to one person at the same instant under a person cap
/// of 2: exactly 2 are sent and 10 capped, naming the cap. Then twelve to
/// twelve people under what is left of the tenant's daily cap of 5: exactly
/// 3 more. Without the serialised claim, each delivery counts the others'
/// sends before any commits and all pass.
async fn caps_hold_under_concurrent_deliveries(deployment: Deployment) {
    let app = spawn_app(deployment, CAPPED_RULE).await;
    put_person(&app, "acme", "p1", json!({"consent": consent(&["in_app"])})).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(plan_bare(&app, "r", "acme", "p1", &format!("k{i}")).await);
    }
    deliver_all_at_once(&app, &ids).await;
    let s = statuses(&app, &ids).await;
    assert_eq!(count(&s, "sent"), 2, "{s:?}");
    assert_eq!(count(&s, "capped"), 10, "{s:?}");
    assert!(
        s.iter()
            .filter(|(st, _)| st == "capped")
            .all(|(_, r)| r == "person cap: 2 sent in the last 1d (max 2)"),
        "{s:?}"
    );

    let mut ids = Vec::new();
    for i in 0..12 {
        let (account, person) = (format!("acct-{i}"), format!("q{i}"));
        put_person(&app, &account, &person, json!({"consent": consent(&["in_app"])})).await;
        ids.push(plan_bare(&app, "r", &account, &person, &format!("t{i}")).await);
    }
    deliver_all_at_once(&app, &ids).await;
    let s = statuses(&app, &ids).await;
    assert_eq!(count(&s, "sent"), 3, "the tenant's 5 per day, 2 already sent: {s:?}");
    assert_eq!(count(&s, "capped"), 9, "{s:?}");
    assert!(
        s.iter()
            .filter(|(st, _)| st == "capped")
            .all(|(_, r)| r.starts_with("tenant daily cap: 5 sent today")),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caps_hold_under_concurrent_deliveries_embedded() {
    caps_hold_under_concurrent_deliveries(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caps_hold_under_concurrent_deliveries_distributed() {
    caps_hold_under_concurrent_deliveries(Deployment::Distributed).await;
}

/// Two `kairos worker` processes; the one sending a nudge's email is
/// SIGKILLed while the SMTP server holds the message (received, not yet
/// answered: the worst case, it may count as delivered). The nudge was
/// claimed (`sending`) before the send; the job comes back to the other
/// worker after the queue lease, which finds the claim past its lease and
/// records `unknown` instead of sending again. Exactly one message reached
/// the server.
async fn a_worker_killed_mid_send_never_sends_twice(deployment: Deployment) {
    let smtp = SmtpServer::start().await;
    let env = Env::new(deployment).await;
    let extra = format!(
        r#"{smtp}
[nudges]
delivery_lease = "1s"

[jobs.nudge]
max_attempts = 5
backoff_initial = "200ms"
backoff_max = "1s"

[[nudges.rules]]
name = "payment-failed"
trigger = {{ event = "payment.failed" }}
channels = ["email"]
[nudges.rules.templates.en]
subject = "Your payment failed"
body = "Please check your card."
"#,
        smtp = smtp_toml(&smtp)
    );
    let config_path = env.config_file(&extra);
    let mut app = spawn_app_on(env, &extra, NO_WORKER).await;
    let (base, store) = (app.base.clone(), app.store.clone());
    let http = reqwest::Client::new();
    let resp = http
        .put(format!("{base}/v1/accounts/acme/people/ana"))
        .bearer_auth(&app.key)
        .json(&json!({"name": "Ana", "email": "hold-ana@acme.test", "consent": consent(&["email"])}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut workers = vec![worker_proc(&config_path), worker_proc(&config_path)];
    let alive = || {
        let store = store.clone();
        async move {
            store
                .workers()
                .await
                .unwrap()
                .iter()
                .filter(|w| w.stopped_at.is_none())
                .count()
                >= 2
        }
    };
    assert!(wait_for(WAIT, alive).await, "two workers never registered");

    let resp = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(&app.key)
        .json(&json!([event("e1", "payment.failed", "acme", json!({}))]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    // The email is on the server and its sender is blocked waiting for the answer.
    until("the email to be held", || {
        let held = smtp.held(1);
        async move { held.then_some(()) }
    })
    .await;
    let nudge = nudges::for_account(&store, &app.tenant_id, "acme", 10).await.unwrap();
    assert_eq!(nudge.len(), 1);
    let nudge = nudge[0].0.clone();
    assert_eq!(nudge.status, "sending", "the intent is committed before the send");
    // The delivery job (the only `nudge` job naming this nudge) and the
    // worker running it (worker ids carry `-PID-`).
    let job_id: String = sqlx::query_scalar("SELECT id FROM job_runs WHERE kind = 'nudge' AND payload LIKE $1")
        .bind(format!("%{}%", nudge.id))
        .fetch_one(store.pool())
        .await
        .unwrap();
    // A job's start is written once it has run for half a second (a quick
    // one's with its outcome).
    let running = || async {
        let job = store.job(None, &job_id).await.unwrap().unwrap();
        job.state == kairos_core::store::JobState::Running
    };
    let seen = wait_for(WAIT, running).await;
    let job = store.job(None, &job_id).await.unwrap().unwrap();
    assert!(seen, "{job:?}");
    let holder = job.worker.clone().unwrap_or_default();
    let victim = workers
        .iter()
        .position(|w| w.ran(&job))
        .unwrap_or_else(|| panic!("the sender {holder} is one of our workers"));
    let mut killed = workers.remove(victim);
    killed.kill().await;

    // The other worker gets the job back after the queue's lease and
    // settles it without sending.
    let jobs = wait_settled(&store, std::slice::from_ref(&job_id), Duration::from_secs(60)).await;
    assert_eq!(jobs[0].state, kairos_core::store::JobState::Succeeded, "{jobs:?}");
    assert!(jobs[0].attempts >= 2, "{jobs:?}");
    assert!(
        !jobs[0].worker.clone().unwrap_or_default().contains(&holder),
        "{jobs:?}"
    );
    let n = nudges::get(&store, &app.tenant_id, &nudge.id).await.unwrap().unwrap();
    assert_eq!(n.status, "unknown", "{n:?}");
    assert_eq!(n.reason, nudges::UNKNOWN_REASON);
    assert_eq!(smtp.messages().len(), 1, "a second copy reached the server");
    assert!(!smtp.held(2));
    smtp.release();
    for w in &workers {
        w.signal("TERM");
    }
    for w in &mut workers {
        assert!(w.wait(Duration::from_secs(30)).await.success());
    }
    app.shutdown().await;
    // Nothing was sent after the release either (the survivor had nothing to send).
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_send_never_sends_twice_embedded() {
    a_worker_killed_mid_send_never_sends_twice(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_send_never_sends_twice_distributed() {
    a_worker_killed_mid_send_never_sends_twice(Deployment::Distributed).await;
}

/// The relay takes the nudge's email and does not answer within `[smtp]
/// timeout`: the message may have been delivered, so the nudge is recorded
/// `unknown` at once — not retried, not tried on the next channel — and the
/// server never gets a second copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_silent_after_the_message_gets_it_once() {
    let smtp = SmtpServer::start().await;
    let extra = format!(
        r#"{smtp}timeout = "2s"

[jobs.nudge]
max_attempts = 5
backoff_initial = "200ms"
backoff_max = "1s"

[[nudges.rules]]
name = "payment-failed"
trigger = {{ event = "payment.failed" }}
channels = ["email", "in_app"]
[nudges.rules.templates.en]
subject = "Your payment failed"
body = "Please check your card."
"#,
        smtp = smtp_toml(&smtp)
    );
    let mut app = spawn_app(Deployment::Embedded, &extra).await;
    put_person(
        &app,
        "acme",
        "ana",
        json!({"name": "Ana", "email": "hold-ana@acme.test", "consent": consent(&["email", "in_app"])}),
    )
    .await;
    let (s, r) = app
        .post_events(&json!([event("e1", "payment.failed", "acme", json!({}))]))
        .await;
    assert_eq!(s, 202, "{r}");
    let history = settled_history(&app, "acme", 1).await;
    let n = &history[0];
    assert_eq!(n["status"], "unknown", "{n}");
    assert_eq!(n["channel"], "email", "{n}");
    assert!(n["reason"].as_str().unwrap_or_default().contains("not re-sent"), "{n}");
    assert!(smtp.held(1));
    let nudge_jobs = app
        .store
        .jobs(&kairos_core::store::JobFilter {
            tenant_id: Some(app.tenant_id.clone()),
            kind: Some("nudge".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let job_ids: Vec<String> = nudge_jobs.iter().map(|j| j.id.clone()).collect();
    let jobs = wait_settled(&app.store, &job_ids, WAIT).await;
    assert!(
        jobs.iter().all(|j| j.state == kairos_core::store::JobState::Succeeded),
        "{jobs:?}"
    );
    smtp.release();
    assert_eq!(smtp.messages().len(), 1, "a second copy reached the server");
    app.shutdown().await;
}

fn llm_toml(llm: &LlmServer) -> String {
    format!(
        "[llm]\nbase_url = \"{}\"\nmodel = \"fixture-model\"\ntimeout = \"5s\"\nmax_retries = 0\n\
         requests_per_minute = 60000\ntokens_per_minute = 10000000\n",
        llm.base_url()
    )
}

const PERSONALISED_RULE: &str = r#"
[[nudges.rules]]
name = "pay"
trigger = { event = "payment.failed" }
channels = ["in_app"]
personalise = true
[nudges.rules.templates.en]
subject = "Your payment of {{event.data.amount}} failed"
body = "Please update your card."
"#;

/// A personalised rule: the LLM's text when it is grounded; the template
/// with the reason when it writes a number that is not in the facts, and
/// when the LLM is down. The person's email never reaches the prompt.
async fn llm_personalises_with_the_template_as_fallback(deployment: Deployment) {
    let llm = LlmServer::start().await;
    let app = spawn_app(deployment, &format!("{}{PERSONALISED_RULE}", llm_toml(&llm))).await;
    let cases = [
        (
            "good",
            json!({"status": 200, "content":
                json!({"subject": "Ana, your 49 payment did not go through",
                       "body": "Update your card and you are set."}).to_string()}),
        ),
        (
            "invented",
            json!({"status": 200, "content":
                json!({"subject": "Ana, pay 4321 now", "body": "Update your card."}).to_string()}),
        ),
        ("down", json!({"status": 503, "content": "overloaded"})),
    ];
    for (i, (account, answer)) in cases.iter().enumerate() {
        llm.script(answer.clone(), vec![]).await;
        put_person(
            &app,
            account,
            "ana",
            json!({"name": "Ana", "email": "ana@acme.test", "language": "en", "consent": consent(&["in_app"])}),
        )
        .await;
        let (s, r) = app
            .post_events(&json!([event(
                &format!("e{i}"),
                "payment.failed",
                account,
                json!({"amount": 49})
            )]))
            .await;
        assert_eq!(s, 202, "{r}");
        app.wait_settled(&job_ids(&r), WAIT).await;
        settled_history(&app, account, 1).await;
    }
    let app = &app;
    let one = |account: &'static str| async move { settled_history(app, account, 1).await[0].clone() };
    let good = one("good").await;
    assert_eq!(good["status"], "sent", "{good}");
    assert_eq!(good["text_source"], "llm", "{good}");
    assert_eq!(good["subject"], "Ana, your 49 payment did not go through");
    assert_eq!(good["text_note"], Value::Null);

    let invented = one("invented").await;
    assert_eq!(invented["status"], "sent", "{invented}");
    assert_eq!(invented["text_source"], "template", "{invented}");
    assert_eq!(invented["subject"], "Your payment of 49 failed");
    let note = invented["text_note"].as_str().unwrap();
    assert!(note.contains("grounding") && note.contains("4321"), "{note}");

    let down = one("down").await;
    assert_eq!(down["status"], "sent", "{down}");
    assert_eq!(down["text_source"], "template");
    assert_eq!(down["subject"], "Your payment of 49 failed");
    assert!(down["text_note"].as_str().unwrap().contains("unavailable"), "{down}");

    let requests = llm.requests().await;
    assert_eq!(requests.len(), 3, "one call per nudge: {requests:?}");
    for r in &requests {
        let text = r["body"].to_string();
        assert!(!text.contains("ana@acme.test"), "contact details in the prompt: {text}");
        assert!(
            text.contains("Your payment of 49 failed"),
            "the draft is in the prompt: {text}"
        );
    }
}

#[tokio::test]
async fn llm_personalises_with_the_template_as_fallback_embedded() {
    llm_personalises_with_the_template_as_fallback(Deployment::Embedded).await;
}

#[tokio::test]
async fn llm_personalises_with_the_template_as_fallback_distributed() {
    llm_personalises_with_the_template_as_fallback(Deployment::Distributed).await;
}

fn reload_rule(subject: &str, extra_key: &str) -> String {
    format!(
        r#"
[[nudges.rules]]
name = "hello"
trigger = {{ event = "a.happened" }}
channels = ["in_app"]
{extra_key}
[nudges.rules.templates.en]
subject = "{subject}"
body = "b"
"#
    )
}

/// A worker process follows edits of its config file: a new template
/// applies to the next nudge without a restart, and a new rule on an event
/// type nothing handled before is matched by the running API and sent by
/// the worker; an edit with an unknown key is refused with the file, line
/// and key on stderr, and the rules in force stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nudge_rules_hot_reload_and_a_bad_edit_keeps_them() {
    let env = Env::new(Deployment::Embedded).await;
    let path = env.dir.path().join("live.toml");
    let write = |rule: &str| {
        let text = env
            .config_toml("")
            .replace("[scheduler]\n", "[scheduler]\nreload_interval = \"100ms\"\n")
            + rule;
        std::fs::write(&path, text).unwrap();
    };
    write(&reload_rule("Old", ""));
    let rt = Runtime::open(kairos::Config::load(&path).unwrap()).await.unwrap();
    let store = rt.store.clone();
    let key = store.create_tenant("tenant-a", None).await.unwrap();
    let app = start(
        rt,
        Roles {
            api: true,
            scheduler: true,
            worker: false,
        },
    )
    .await
    .unwrap();
    let base = format!("http://{}", app.addr.unwrap());
    let mut cmd = kairos_cmd(&path, &["worker"]);
    // Errors, and the line that says the worker took a new [nudges].
    cmd.env("KAIROS_LOG", "error,kairos_jobs::nudge::reload=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = stderr.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            sink.lock().unwrap().push_str(&format!("{l}\n"));
        }
    });
    let http = reqwest::Client::new();
    let resp = http
        .put(format!("{base}/v1/accounts/acme/people/p1"))
        .bearer_auth(&key.secret)
        .json(&json!({"consent": consent(&["in_app"])}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    // Posts one event of person p1; the ids of the jobs it made.
    let post = |id: String, kind: &'static str, day: String| {
        let (http, base, secret) = (&http, &base, &key.secret);
        async move {
            let e = json!([{"id": id, "type": kind, "account_id": "acme", "user_id": "p1",
                "occurred_at": format!("{day}T10:00:00Z"), "data": {}}]);
            let r: Value = http
                .post(format!("{base}/v1/events"))
                .bearer_auth(secret)
                .json(&e)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            job_ids(&r)
        }
    };
    // Each event on its own day: its own dedupe window.
    let day = std::cell::Cell::new(0);
    let nudge_subject = || {
        day.set(day.get() + 1);
        let d = day.get();
        let (post, store, tenant) = (&post, &store, &key.tenant.id);
        async move {
            let jobs = post(format!("e{d}"), "a.happened", format!("2026-10-{d:02}")).await;
            wait_settled(store, &jobs, WAIT).await;
            until(&format!("the nudge of e{d}"), || {
                let (store, tenant) = (store.clone(), tenant.clone());
                async move {
                    let h = nudges::for_account(&store, &tenant, "acme", 100).await.unwrap();
                    h.into_iter()
                        .find(|(n, _)| n.trigger.to_string().contains(&format!("\"e{d}\"")) && n.status == "sent")
                        .and_then(|(n, _)| n.subject)
                }
            })
            .await
        }
    };
    assert_eq!(nudge_subject().await, "Old");

    // A good edit: the next nudge has the new template (the file is
    // re-read within reload_interval; keep nudging until it shows).
    write(&reload_rule("New", ""));
    let mut seen = Vec::new();
    for _ in 0..20 {
        let s = nudge_subject().await;
        seen.push(s.clone());
        if s == "New" {
            break;
        }
    }
    assert_eq!(seen.last().map(String::as_str), Some("New"), "{seen:?}");

    // A rule on an event type no rule named before: the API process, not
    // restarted, starts making nudge jobs for it (its event rules follow
    // the file too), and the worker sends them.
    let other = "\n[[nudges.rules]]\nname = \"other\"\ntrigger = { event = \"b.happened\" }\n\
                 channels = [\"in_app\"]\n[nudges.rules.templates.en]\nsubject = \"Other\"\nbody = \"b\"\n";
    write(&(reload_rule("New", "") + other));
    // The worker too (it re-checks each event against its own rules): the
    // second reload it logs, after the "New" one.
    until("the worker to take the new rule", || {
        let n = stderr.lock().unwrap().matches("nudge rules reloaded").count();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    let tries = std::cell::Cell::new(0);
    let (event_id, jobs) = until("the API to make a job for b.happened", || {
        tries.set(tries.get() + 1);
        let n = tries.get();
        let post = &post;
        async move {
            let id = format!("b{n}");
            let jobs = post(id.clone(), "b.happened", "2026-11-01".into()).await;
            (!jobs.is_empty()).then_some((id, jobs))
        }
    })
    .await;
    wait_settled(&store, &jobs, WAIT).await;
    let sent = until("the nudge of the new rule", || {
        let (store, tenant, event_id) = (store.clone(), key.tenant.id.clone(), event_id.clone());
        async move {
            let h = nudges::for_account(&store, &tenant, "acme", 100).await.unwrap();
            h.into_iter()
                .find(|(n, _)| n.trigger.to_string().contains(&format!("\"{event_id}\"")) && n.status == "sent")
                .map(|(n, _)| (n.rule, n.subject))
        }
    })
    .await;
    assert_eq!(sent, ("other".to_string(), Some("Other".to_string())));

    // A bad edit (a misspelt key, and a new subject): refused, named, and
    // the rules in force stay.
    write(&reload_rule("Broken", "chanels = [\"email\"]"));
    let file = path.display().to_string();
    until("the reload error on stderr", || {
        let e = stderr.lock().unwrap().clone();
        let named =
            e.contains("config reload rejected") && e.contains(&file) && e.contains("line") && e.contains("chanels");
        async move { named.then_some(()) }
    })
    .await;
    assert_eq!(nudge_subject().await, "New");
    child.start_kill().unwrap();
    let _ = child.wait().await;
    app.shutdown().await;
}

const TRACKING_KEY_ENV: &str = "KAIROS_TEST_NUDGE_TRACKING_KEY";

/// Tracking on for one rule (and the tenant): the email has an HTML part
/// with the pixel and a tracked link; the pixel answers a GIF and records
/// `nudge.opened`, the link a 302 to the target and `nudge.clicked`, both
/// without a tenant key; a forged or mismatched token is a 404. A rule
/// without `track` gets the plain link and no pixel. The stats show the
/// funnel per rule, variant and channel; the OpenAPI document lists both
/// routes.
async fn email_tracking_opens_and_clicks(deployment: Deployment) {
    std::env::set_var(TRACKING_KEY_ENV, "a-test-key-of-at-least-32-bytes!!");
    let smtp = SmtpServer::start().await;
    let rules = format!(
        r#"{smtp}
[nudges.tracking]
base_url = "http://tracking.invalid"
secret_env = "{TRACKING_KEY_ENV}"
tenants = ["tenant-a"]

[[nudges.rules]]
name = "tracked"
trigger = {{ event = "a.happened" }}
channels = ["email"]
track = true
link = "https://app.example/billing?from=nudge"
[nudges.rules.templates.en]
subject = "Tracked"
body = "Hello <you>."

[[nudges.rules]]
name = "plain"
trigger = {{ event = "b.happened" }}
channels = ["email"]
link = "https://app.example/plain"
[nudges.rules.templates.en]
subject = "Plain"
body = "Hello."
"#,
        smtp = smtp_toml(&smtp)
    );
    let app = spawn_app(deployment, &rules).await;
    put_person(
        &app,
        "acme",
        "ana",
        json!({"email": "ana@acme.test", "consent": consent(&["email"])}),
    )
    .await;
    for (i, t) in ["a.happened", "b.happened"].iter().enumerate() {
        let (_, r) = app
            .post_events(&json!([event(&format!("e{i}"), t, "acme", json!({}))]))
            .await;
        app.wait_settled(&job_ids(&r), WAIT).await;
    }
    let mail = smtp.wait_for(2, WAIT).await;
    let by_subject = |s: &str| mail.iter().find(|m| m["subject"] == s).unwrap().clone();
    let plain = by_subject("Plain");
    assert_eq!(plain["html"], Value::Null, "tracking is off by default: {plain}");
    assert!(plain["text"].as_str().unwrap().contains("https://app.example/plain"));
    let tracked = by_subject("Tracked");
    let html = tracked["html"].as_str().expect("an HTML part with the pixel");
    assert!(html.contains("Hello &lt;you&gt;."), "{html}");
    let token_after = |text: &str, prefix: &str| -> String {
        let start = text.find(prefix).unwrap_or_else(|| panic!("no {prefix} in {text}")) + prefix.len();
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == '.')
            .collect()
    };
    let open = token_after(html, "http://tracking.invalid/t/o/");
    let click = token_after(tracked["text"].as_str().unwrap(), "http://tracking.invalid/t/c/");
    assert!(!tracked["text"]
        .as_str()
        .unwrap()
        .contains("https://app.example/billing"));

    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = anonymous.get(format!("{}/t/o/{open}", app.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert_eq!(r.bytes().await.unwrap().len(), 43);
    let r = anonymous.get(format!("{}/t/c/{click}", app.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(r.headers()["location"], "https://app.example/billing?from=nudge");
    // Forged, swapped or foreign tokens: nothing.
    let mut forged = open.clone().into_bytes();
    forged[2] = if forged[2] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    for path in [
        format!("/t/o/{forged}"),
        format!("/t/c/{open}"),
        format!("/t/o/{click}"),
        "/t/o/00.00".to_owned(),
    ] {
        let r = anonymous.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }

    let history = history_with_outcomes(&app).await;
    let t = history.iter().find(|n| n["rule"] == "tracked").unwrap();
    assert!(t["opened_at"].is_string() && t["clicked_at"].is_string(), "{t}");
    // A second open is the same event: still the first time.
    let first_open = t["opened_at"].clone();
    anonymous.get(format!("{}/t/o/{open}", app.base)).send().await.unwrap();

    // The funnel counts nudges at least a window old: age these two by 2 days.
    sqlx::query("UPDATE nudges SET created_at = created_at - 172800000 WHERE tenant_id = $1")
        .bind(&app.tenant_id)
        .execute(app.store.pool())
        .await
        .unwrap();
    let (s, stats) = call(&app, reqwest::Method::GET, "/v1/nudges/stats?window_days=1", None).await;
    assert_eq!(s, 200, "{stats}");
    let line = |rule: &str| {
        stats["funnel"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == rule)
            .unwrap_or_else(|| panic!("no {rule} in {stats}"))
            .clone()
    };
    let t = line("tracked");
    assert_eq!(
        (&t["channel"], &t["decided"], &t["sent"], &t["opened"], &t["clicked"]),
        (&json!("email"), &json!(1), &json!(1), &json!(1), &json!(1)),
        "{t}"
    );
    let p = line("plain");
    assert_eq!(
        (&p["sent"], &p["opened"], &p["clicked"]),
        (&json!(1), &json!(0), &json!(0)),
        "{p}"
    );
    let again = history_with_outcomes(&app).await;
    let t = again.iter().find(|n| n["rule"] == "tracked").unwrap();
    assert_eq!(t["opened_at"], first_open);

    let (_, doc) = app.get("/openapi.json", None).await;
    assert!(
        doc["paths"]["/t/o/{token}"]["get"].is_object(),
        "pixel not in the OpenAPI document"
    );
    assert!(doc["paths"]["/t/c/{token}"]["get"].is_object());
    assert!(
        doc["paths"]["/t/o/{token}"]["get"]["security"].is_null(),
        "no tenant key"
    );
}

/// The history once the tracked nudge has both outcomes.
async fn history_with_outcomes(app: &TestApp) -> Vec<Value> {
    until("the open and the click to be recorded", || async move {
        let (_, h) = call(app, reqwest::Method::GET, "/v1/accounts/acme/nudges", None).await;
        let h = h["nudges"].as_array().cloned().unwrap_or_default();
        h.iter()
            .any(|n| n["rule"] == "tracked" && n["opened_at"].is_string() && n["clicked_at"].is_string())
            .then_some(h)
    })
    .await
}

#[tokio::test]
async fn email_tracking_opens_and_clicks_embedded() {
    email_tracking_opens_and_clicks(Deployment::Embedded).await;
}

#[tokio::test]
async fn email_tracking_opens_and_clicks_distributed() {
    email_tracking_opens_and_clicks(Deployment::Distributed).await;
}
