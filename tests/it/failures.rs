//! Failure handling inside one process: retries, dead letters, panics,
//! timeouts, and a Redis connection killed under a running worker.

use std::time::Duration;

use kairos_core::store::JobState;
use serde_json::json;

use crate::common::*;

const PROBE: &str = r#"
[jobs.probe]
max_attempts = 2
backoff_initial = "100ms"
backoff_max = "200ms"
timeout = "1s"

[[rules]]
on = "diagnostic.*"
run = ["probe"]
"#;

async fn retry_dead_letter_and_retry_from_dead(deployment: Deployment) {
    let mut app = spawn_app(deployment, PROBE).await;
    let (s, body) = app
        .post_events(&event(
            "f1",
            "diagnostic.flaky",
            "a",
            json!({"probe": {"fail_attempts": 2}}),
        ))
        .await;
    assert_eq!(s, 202, "{body}");
    let id = job_ids(&body)[0].clone();
    let jobs = app
        .wait_settled(std::slice::from_ref(&id), Duration::from_secs(20))
        .await;
    assert_eq!(jobs[0].state, JobState::Dead);
    assert_eq!(jobs[0].attempts, 2);
    assert!(
        jobs[0].last_error.as_deref().unwrap_or("").contains("fail attempt 2"),
        "{:?}",
        jobs[0]
    );

    let config = app.env.config_file(PROBE);
    let (ok, out, err) = run_cli(&config, &["jobs", "dead"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("fail attempt 2"), "{out}");

    let (ok, out, err) = run_cli(&config, &["jobs", "retry", &id]).await;
    assert!(ok, "{out}{err}");
    assert!(
        wait_for(Duration::from_secs(20), || async {
            app.store.job(None, &id).await.unwrap().map(|j| j.state) == Some(JobState::Succeeded)
        })
        .await
    );
    let job = app.store.job(None, &id).await.unwrap().unwrap();
    assert_eq!(job.attempts, 3, "the retry from dead is the third attempt");

    // Retrying a job that is not dead is refused with a reason.
    let (ok, _, err) = run_cli(&config, &["jobs", "retry", &id]).await;
    assert!(!ok && err.contains("not dead"), "{err}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_retry_dead_letter_and_retry_from_dead() {
    retry_dead_letter_and_retry_from_dead(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_retry_dead_letter_and_retry_from_dead() {
    retry_dead_letter_and_retry_from_dead(Deployment::Distributed).await;
}

const THREE_ATTEMPTS: &str = r#"
[jobs.probe]
max_attempts = 3
backoff_initial = "50ms"
backoff_max = "100ms"
timeout = "2s"

[[rules]]
on = "diagnostic.*"
run = ["probe"]
"#;

/// The stored row decides: `jobs retry --attempts 2` grants exactly two
/// more attempts, though the kind's config says three in all.
async fn retried_job_gets_exactly_the_attempts_granted(deployment: Deployment) {
    let mut app = spawn_app(deployment, THREE_ATTEMPTS).await;
    let (s, body) = app
        .post_events(&event(
            "r1",
            "diagnostic.broken",
            "a",
            json!({"probe": {"fail_attempts": 100}}),
        ))
        .await;
    assert_eq!(s, 202, "{body}");
    let id = job_ids(&body)[0].clone();
    let jobs = app
        .wait_settled(std::slice::from_ref(&id), Duration::from_secs(20))
        .await;
    assert_eq!((jobs[0].state, jobs[0].attempts), (JobState::Dead, 3));

    let config = app.env.config_file(THREE_ATTEMPTS);
    let (ok, out, err) = run_cli(&config, &["jobs", "retry", &id, "--attempts", "2"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("2 more allowed"), "{out}");
    // Dead again — after exactly two more attempts, the first of which was
    // retried (under the config's policy alone it would be dead at once).
    assert!(
        wait_for(Duration::from_secs(20), || async {
            app.store
                .job(None, &id)
                .await
                .unwrap()
                .is_some_and(|j| j.state == JobState::Dead && j.attempts > 3)
        })
        .await,
        "the retried job never settled"
    );
    let job = app.store.job(None, &id).await.unwrap().unwrap();
    assert_eq!((job.attempts, job.max_attempts), (5, 5), "{job:?}");

    let history = app.store.attempts(&id).await.unwrap();
    let outcomes: Vec<(u32, JobState)> = history.iter().map(|a| (a.attempt, a.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![
            (1, JobState::Retrying),
            (2, JobState::Retrying),
            (3, JobState::Dead),
            (4, JobState::Retrying),
            (5, JobState::Dead),
        ]
    );
    assert!(history
        .iter()
        .all(|a| a.error.as_deref().unwrap_or("").contains("fail attempt")));
    let (ok, out, err) = run_cli(&config, &["jobs", "show", &id]).await;
    assert!(ok, "{err}");
    assert!(out.contains("#5") && out.contains("dead"), "{out}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_retried_job_gets_exactly_the_attempts_granted() {
    retried_job_gets_exactly_the_attempts_granted(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_retried_job_gets_exactly_the_attempts_granted() {
    retried_job_gets_exactly_the_attempts_granted(Deployment::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_and_timeouts_are_failed_attempts_not_dead_workers() {
    let mut app = spawn_app(Deployment::Distributed, PROBE).await;
    let (_, body) = app
        .post_events(&json!([
            event("p1", "diagnostic.panic", "a", json!({"probe": {"panic": true}})),
            event("p2", "diagnostic.slow", "a", json!({"probe": {"sleep_ms": 5000}})),
            event("p3", "diagnostic.bad", "a", json!({"probe": {"permanent": true}})),
        ]))
        .await;
    let ids = job_ids(&body);
    let jobs = app.wait_settled(&ids, Duration::from_secs(30)).await;
    let by_id = |id: &str| jobs.iter().find(|j| j.id == id).unwrap().clone();
    let panicked = by_id(&ids[0]);
    assert_eq!((panicked.state, panicked.attempts), (JobState::Dead, 2));
    assert!(panicked.last_error.unwrap().contains("panicked"));
    let slow = by_id(&ids[1]);
    assert_eq!((slow.state, slow.attempts), (JobState::Dead, 2));
    assert!(slow.last_error.unwrap().contains("timed out"));
    let permanent = by_id(&ids[2]);
    assert_eq!(
        (permanent.state, permanent.attempts),
        (JobState::Dead, 1),
        "permanent errors are not retried"
    );

    // The worker is alive and well.
    let (_, body) = app.post_events(&event("p4", "diagnostic.ok", "a", json!({}))).await;
    let ok = app.wait_settled(&job_ids(&body), Duration::from_secs(10)).await;
    assert_eq!(ok[0].state, JobState::Succeeded);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_carries_on_when_its_redis_connections_are_killed() {
    let mut app = spawn_app(Deployment::Distributed, "[[rules]]\non = \"*\"\nrun = [\"activity\"]\n").await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let mut ids = Vec::new();
    for round in 0..5 {
        let batch: Vec<_> = (0..100)
            .map(|i| {
                event(
                    &format!("k{round}-{i}"),
                    "user.logged_in",
                    &format!("acct-{}", i % 7),
                    json!({}),
                )
            })
            .collect();
        let (s, body) = app.post_events(&json!(batch)).await;
        assert_eq!(s, 202, "{body}");
        ids.extend(job_ids(&body));
        // Kill every other client connection (the worker's, the API's).
        let killed: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(killed >= 1, "expected the worker's connections to be killed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let jobs = app.wait_settled(&ids, Duration::from_secs(60)).await;
    assert!(
        jobs.iter().all(|j| j.state == JobState::Succeeded),
        "every job completes after reconnects"
    );
    let acts = kairos_jobs::activity::read_all(&app.store, &app.tenant_id)
        .await
        .unwrap();
    assert_eq!(acts.iter().map(|a| a.logins).sum::<i64>(), 500);
    app.shutdown().await;
}
