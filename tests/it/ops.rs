//! Operations: worker heartbeats in the store, pausing and resuming a job
//! kind (no worker fetches it; its jobs wait and complete after resume),
//! and the `kairos workers` / `kairos queues` commands.

use std::time::{Duration, Instant};

use kairos_core::store::{JobState, WorkerRegistration, WorkerStatus};
use serde_json::json;

use crate::common::*;

/// The bound the product promises: a paused kind is not fetched by any
/// worker this long after the pause is recorded.
const PAUSE_BOUND: Duration = Duration::from_secs(2);

const RULES: &str = r#"
[worker]
heartbeat_interval = "200ms"

[jobs.probe]
max_attempts = 2
backoff_initial = "100ms"
backoff_max = "200ms"

[[rules]]
on = "diagnostic.*"
run = ["probe"]

[[rules]]
on = "login"
run = ["activity"]
"#;

async fn paused_kind_waits_while_others_run_then_resumes(deployment: Deployment) {
    let mut app = spawn_app(deployment, RULES).await;
    assert!(app
        .store
        .pause_kind("probe", "test", Some("maintenance"))
        .await
        .unwrap());
    assert!(
        !app.store.pause_kind("probe", "test", None).await.unwrap(),
        "pausing twice is a no-op"
    );
    // The promised bound, not a guess: from here on no worker may fetch
    // `probe` (what the test checks), however its fetch loop was timed.
    tokio::time::sleep(PAUSE_BOUND).await;

    let mut events = Vec::new();
    for i in 0..20 {
        events.push(event(&format!("p{i}"), "diagnostic.ok", "acct", json!({})));
        events.push(event(&format!("l{i}"), "login", "acct", json!({})));
    }
    let (s, body) = app.post_events(&json!(events)).await;
    assert_eq!(s, 202, "{body}");
    let ids = job_ids(&body);
    let jobs = app.store.jobs_by_ids(&ids).await.unwrap();
    let probe: Vec<String> = jobs
        .iter()
        .filter(|j| j.kind == "probe")
        .map(|j| j.id.clone())
        .collect();
    let activity: Vec<String> = jobs
        .iter()
        .filter(|j| j.kind == "activity")
        .map(|j| j.id.clone())
        .collect();
    assert_eq!((probe.len(), activity.len()), (20, 20));

    // The other kind runs to completion meanwhile.
    let done = app.wait_settled(&activity, Duration::from_secs(20)).await;
    assert!(done.iter().all(|j| j.state == JobState::Succeeded));
    // And for a while longer, not one paused job is started: all stay
    // queued, none has an attempt, and they are on the queue, ready.
    let watch_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < watch_until {
        let held = app.store.jobs_by_ids(&probe).await.unwrap();
        assert!(
            held.iter().all(|j| j.state == JobState::Queued && j.attempts == 0),
            "a paused kind's job started: {:?}",
            held.iter().find(|j| j.state != JobState::Queued || j.attempts > 0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let depth = app.queue.depth("probe").await.unwrap();
    assert_eq!(depth.ready + depth.in_flight, 20, "{depth:?}");

    // The listing shows it paused, with who and why.
    let paused = app.store.paused_kinds().await.unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(
        (paused[0].kind.as_str(), paused[0].reason.as_deref()),
        ("probe", Some("maintenance"))
    );

    assert!(app.store.resume_kind("probe", "test").await.unwrap());
    assert!(!app.store.resume_kind("probe", "test").await.unwrap());
    let done = app.wait_settled(&probe, Duration::from_secs(20)).await;
    assert!(done.iter().all(|j| j.state == JobState::Succeeded && j.attempts == 1));

    // Both changes are in the audit log, by their actor.
    let audit = app.store.audit_log(None, 10).await.unwrap();
    let actions: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|e| (e.action.as_str(), e.target.as_str(), e.actor.as_str()))
        .collect();
    assert!(actions.contains(&("queue.paused", "probe", "test")), "{actions:?}");
    assert!(actions.contains(&("queue.resumed", "probe", "test")), "{actions:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_kind_waits_while_others_run_then_resumes_embedded() {
    paused_kind_waits_while_others_run_then_resumes(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_kind_waits_while_others_run_then_resumes_distributed() {
    paused_kind_waits_while_others_run_then_resumes(Deployment::Distributed).await;
}

async fn workers_heartbeat_and_stop(deployment: Deployment) {
    let mut app = spawn_app(deployment, RULES).await;
    let pid = std::process::id();
    // Registered at start, heartbeating every 200 ms: seen alive, then
    // seen again with a later heartbeat.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut first_beat = None;
    loop {
        let ws = app.store.workers().await.unwrap();
        match ws.iter().find(|w| w.pid == pid && w.status == WorkerStatus::Alive) {
            Some(w) if first_beat.is_some_and(|b| w.last_heartbeat > b) => break,
            Some(w) => first_beat = Some(w.last_heartbeat),
            None => {}
        }
        assert!(Instant::now() < deadline, "no heartbeating worker: {ws:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ws = app.store.workers().await.unwrap();
    assert_eq!(ws.len(), 1, "{ws:?}");
    let w = &ws[0];
    assert!(!w.host.is_empty() && w.kinds.contains(&"probe".to_string()) && w.heartbeat_ms == 200);
    assert_eq!(w.version, env!("CARGO_PKG_VERSION"));

    // A worker that went silent is shown dead after three beats, and
    // pruned once silent for longer than the retention asked.
    app.store
        .register_worker(&WorkerRegistration {
            id: "ghost".into(),
            host: "gone".into(),
            pid: 1,
            version: "0".into(),
            kinds: vec!["probe".into()],
            heartbeat: Duration::from_millis(100),
        })
        .await
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || async {
            let ws = app.store.workers().await.unwrap();
            ws.iter().any(|w| w.id == "ghost" && w.status == WorkerStatus::Dead)
        })
        .await
    );
    // Listed after the alive one.
    let ws = app.store.workers().await.unwrap();
    assert_eq!(ws.last().map(|w| w.id.as_str()), Some("ghost"));
    assert_eq!(app.store.prune_workers(Duration::from_millis(300)).await.unwrap(), 1);
    assert!(app.store.workers().await.unwrap().iter().all(|w| w.id != "ghost"));

    // A graceful shutdown says goodbye.
    app.shutdown().await;
    let ws = app.store.workers().await.unwrap();
    assert_eq!(ws.len(), 1);
    assert_eq!(ws[0].status, WorkerStatus::Stopped, "{ws:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_heartbeat_and_stop_embedded() {
    workers_heartbeat_and_stop(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_heartbeat_and_stop_distributed() {
    workers_heartbeat_and_stop(Deployment::Distributed).await;
}

/// The operator's commands, as a real `kairos` process runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_and_workers_commands() {
    let app = spawn_app(Deployment::Embedded, RULES).await;
    let config = app.env.config_file(RULES);
    assert!(
        wait_for(Duration::from_secs(10), || async {
            !app.store.workers().await.unwrap().is_empty()
        })
        .await
    );

    let (ok, out, err) = run_cli(&config, &["queues", "pause", "probe", "--reason", "deploy"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("paused probe"), "{out}");
    let (ok, out, err) = run_cli(&config, &["queues", "pause", "nope"]).await;
    assert!(!ok && err.contains("unknown job kind `nope`"), "{out}{err}");

    let (ok, out, err) = run_cli(&config, &["queues"]).await;
    assert!(ok, "{err}");
    let probe_line = out
        .lines()
        .find(|l| l.starts_with("probe "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(probe_line.contains("paused") && probe_line.contains("deploy"), "{out}");
    let activity = out
        .lines()
        .find(|l| l.starts_with("activity "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(activity.contains("active"), "{out}");

    let (ok, out, err) = run_cli(&config, &["queues", "resume", "probe"]).await;
    assert!(ok && out.contains("resumed probe"), "{out}{err}");
    assert!(app.store.paused_kinds().await.unwrap().is_empty());
    let (ok, out, _) = run_cli(&config, &["audit"]).await;
    assert!(
        ok && out.contains("queue.paused") && out.contains("queue.resumed"),
        "{out}"
    );

    let (ok, out, err) = run_cli(&config, &["workers"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("alive") && out.contains(&std::process::id().to_string()) && out.contains("1 alive of 1"),
        "{out}"
    );
}

/// Pausing while jobs of the kind keep arriving and running: none starts
/// later than [`PAUSE_BOUND`] after the pause (measured on the rows'
/// `started_at`), and the held jobs complete after resume.
async fn pause_takes_hold_under_load(deployment: Deployment) {
    let mut app = spawn_app(deployment, RULES).await;
    let mut ids = Vec::new();
    let mut paused_at = None;
    let started = Instant::now();
    let mut n = 0;
    // 3 s of steady arrivals (a batch every 50 ms), paused after the first.
    while started.elapsed() < Duration::from_secs(3) {
        if paused_at.is_none() && started.elapsed() >= Duration::from_secs(1) {
            assert!(app.store.pause_kind("probe", "test", None).await.unwrap());
            paused_at = Some(kairos_core::time::now_ms());
        }
        let batch: Vec<_> = (0..5)
            .map(|i| event(&format!("e{n}-{i}"), "diagnostic.ok", "acct", json!({})))
            .collect();
        n += 1;
        let (s, body) = app.post_events(&json!(batch)).await;
        assert_eq!(s, 202, "{body}");
        ids.extend(job_ids(&body));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let paused_at = paused_at.unwrap();
    let jobs = app.store.jobs_by_ids(&ids).await.unwrap();
    let last_start = jobs.iter().filter_map(|j| j.started_at).max().unwrap();
    let ran_before = jobs.iter().filter(|j| j.started_at.is_some()).count();
    let held = jobs.iter().filter(|j| j.state == JobState::Queued).count();
    eprintln!(
        "{deployment:?}: last start {} ms after the pause; {ran_before} started, {held} held of {}",
        last_start - paused_at,
        jobs.len()
    );
    assert!(
        last_start - paused_at <= PAUSE_BOUND.as_millis() as i64,
        "a probe job started {} ms after the pause",
        last_start - paused_at
    );
    assert!(ran_before > 0 && held > 0, "{ran_before} ran, {held} held");

    assert!(app.store.resume_kind("probe", "test").await.unwrap());
    let done = app.wait_settled(&ids, Duration::from_secs(30)).await;
    assert!(done.iter().all(|j| j.state == JobState::Succeeded));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_takes_hold_under_load_embedded() {
    pause_takes_hold_under_load(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_takes_hold_under_load_distributed() {
    pause_takes_hold_under_load(Deployment::Distributed).await;
}
