//! Workers that carry only what they run: `kairos worker --kinds` (and
//! `[worker] kinds`) choose the queues a worker consumes, and a worker
//! that does not run `sentiment` never loads its model.

use std::path::Path;
use std::time::Duration;

use kairos_core::store::{JobState, WorkerStatus};
use serde_json::json;

use crate::common::*;

/// Sentiment on, with a model that does not exist: only a worker that runs
/// `sentiment` would try to load it.
fn config_with_missing_model(dir: &Path) -> String {
    let missing = dir.join("no-model");
    format!(
        r#"
[sentiment]
enabled = true
encoder = "{encoder}"
runtime_library = "{lib}"

[[rules]]
on = "*"
run = ["activity"]

[[rules]]
on = "comment.created"
run = ["sentiment"]

[[rules]]
on = "diagnostic.*"
run = ["probe"]
"#,
        encoder = missing.join("encoder").display(),
        lib = missing.join("libonnxruntime.so").display(),
    )
}

/// A real `kairos worker --kinds activity,probe` beside an in-process API:
/// it starts although the sentiment model is missing, runs the activity and
/// probe jobs, heartbeats its two kinds, and leaves the sentiment job queued.
async fn worker_with_kinds_leaves_other_kinds_queued(deployment: Deployment) {
    let env = Env::new(deployment).await;
    let extra = config_with_missing_model(env.dir.path());
    let config_path = env.config_file(&extra);
    let mut app = spawn_app_on(env, &extra, NO_WORKER).await;
    let (base, store) = (&app.base, &app.store);
    let mut worker = spawn_proc(&config_path, &["worker", "--kinds", "activity,probe"]);
    let pid = u32::try_from(worker.pid()).unwrap();

    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        let req = http.post(format!("{base}/v1/events")).bearer_auth(&app.key).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 202);
            job_ids(&resp.json().await.unwrap())
        }
    };
    // The sentiment job is queued first, so the worker has had every chance
    // to take it by the time the later jobs are done.
    let first = post(event("c1", "comment.created", "a1", json!({"text": "todo roto"}))).await;
    let mut others = Vec::new();
    for i in 0..20 {
        others.extend(post(event(&format!("d{i}"), "diagnostic.ping", "a1", json!({}))).await);
    }
    let mut sentiment = None;
    for id in first {
        let job = store.job(None, &id).await.unwrap().unwrap();
        if job.kind == "sentiment" {
            sentiment = Some(id);
        } else {
            others.push(id);
        }
    }
    let sentiment = sentiment.expect("a comment makes a sentiment job");
    assert_eq!(others.len(), 41, "20 probe + 21 activity jobs");

    let done = wait_settled(store, &others, Duration::from_secs(60)).await;
    assert!(
        done.iter()
            .all(|j| j.state == JobState::Succeeded && j.kind != "sentiment"),
        "{done:?}"
    );
    let job = store.job(None, &sentiment).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued, "{job:?}");
    assert_eq!(job.attempts, 0, "{job:?}");
    assert!(job.worker.is_none(), "{job:?}");

    let ws = store.workers().await.unwrap();
    let me = ws.iter().find(|w| w.pid == pid).unwrap_or_else(|| panic!("{ws:?}"));
    assert_eq!(me.status, WorkerStatus::Alive);
    assert_eq!(me.kinds, ["activity", "probe"]);
    let (ok, out, err) = run_cli(&config_path, &["workers"]).await;
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains(&pid.to_string()))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("activity,probe") && !line.contains("sentiment"), "{out}");

    worker.signal("TERM");
    assert!(worker.wait(Duration::from_secs(20)).await.success());
    let job = store.job(None, &sentiment).await.unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Queued,
        "still waiting for a sentiment worker: {job:?}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_with_kinds_leaves_other_kinds_queued_embedded() {
    worker_with_kinds_leaves_other_kinds_queued(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_with_kinds_leaves_other_kinds_queued_distributed() {
    worker_with_kinds_leaves_other_kinds_queued(Deployment::Distributed).await;
}

/// `kairos serve` with `[worker] kinds` in its config: the embedded process
/// starts without the model and its worker runs only the listed kinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_kinds_in_config_serve_without_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[worker]\nkinds = [\"activity\"]\nheartbeat_interval = \"200ms\"\n{}",
        config_with_missing_model(dir.path())
    );
    let mut app = spawn_app(Deployment::Embedded, &extra).await;
    let (s, body) = app
        .post_events(&event("c1", "comment.created", "a1", json!({"text": "hola"})))
        .await;
    assert_eq!(s, 202, "{body}");
    let ids = job_ids(&body);
    let mut kinds = Vec::new();
    for id in &ids {
        kinds.push(app.store.job(None, id).await.unwrap().unwrap().kind);
    }
    let activity: Vec<String> = ids
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| *k == "activity")
        .map(|(id, _)| id.clone())
        .collect();
    let sentiment = ids
        .iter()
        .zip(&kinds)
        .find(|(_, k)| *k == "sentiment")
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| panic!("{kinds:?}"));
    let done = app.wait_settled(&activity, Duration::from_secs(30)).await;
    assert!(done.iter().all(|j| j.state == JobState::Succeeded), "{done:?}");
    assert_eq!(
        app.store.job(None, &sentiment).await.unwrap().unwrap().state,
        JobState::Queued
    );
    let ws = app.store.workers().await.unwrap();
    assert_eq!(ws.len(), 1, "{ws:?}");
    assert_eq!(ws[0].kinds, ["activity"]);
    app.shutdown().await;
}

/// The other side: a worker that runs `sentiment` loads the model at start
/// and stops there, naming the missing path; `--kinds` refuses unknown and
/// disabled kinds before anything starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_kinds_flag_errors() {
    let env = Env::new(Deployment::Embedded).await;
    let with_model = env.config_file(&config_with_missing_model(env.dir.path()));
    for args in [&["worker"][..], &["worker", "--kinds", "probe,sentiment"]] {
        let out = tokio::time::timeout(Duration::from_secs(60), kairos_cmd(&with_model, args).output())
            .await
            .expect("the worker stops at start-up")
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("no-model"), "{args:?}: {err}");
    }

    let (ok, _, err) = run_cli(&with_model, &["worker", "--kinds", "activity,nope"]).await;
    assert!(!ok, "{err}");
    assert!(
        err.contains("nope") && err.contains("activity") && err.contains("sentiment"),
        "{err}"
    );

    let disabled = env.config_file("[[rules]]\non = \"*\"\nrun = [\"activity\"]\n");
    let (ok, _, err) = run_cli(&disabled, &["worker", "--kinds", "sentiment"]).await;
    assert!(!ok, "{err}");
    assert!(err.contains("--kinds") && err.contains("disabled"), "{err}");
}
