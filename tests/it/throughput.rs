//! The product path's defects of issue #17: a client that goes away
//! mid-request, jobs left `pending` with no scheduler running, the
//! dispatcher pushing jobs already on the queue, lock order under
//! thousands of concurrent batches — group commit at ingest (one bad
//! request fails alone; replays across concurrent requests), and the
//! worker's writes per job (a quick job's start written with its outcome,
//! a long one seen running).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kairos::{Roles, Runtime};
use kairos_core::config::JobPolicies;
use kairos_core::enqueue::{accept_events, dispatch_pending, enqueue_recorded, insert_jobs, NewJob, Producer};
use kairos_core::rules::Rules;
use kairos_core::store::{Finish, Finished, IngestOutcome, JobFilter, JobState};
use kairos_core::time::now_ms;
use kairos_core::{Event, Queue, Store};
use rand::seq::SliceRandom;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::common::*;

const PROBE_RULE: &str = "[[rules]]\non = \"*\"\nrun = [\"probe\"]\n";

async fn succeeded(store: &Store, tenant_id: &str) -> usize {
    let filter = JobFilter {
        tenant_id: Some(tenant_id.to_owned()),
        state: Some(JobState::Succeeded),
        kind: None,
        limit: 10_000,
    };
    store.jobs(&filter).await.map(|j| j.len()).unwrap_or(0)
}

/// The client sends its whole request and closes the connection before the
/// answer: the events it sent are recorded and their jobs run all the same.
async fn a_client_that_disconnects_still_gets_its_jobs_run(deployment: Deployment) {
    let mut app = spawn_app(deployment, PROBE_RULE).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    const REQUESTS: usize = 20;
    const EVENTS: usize = 50;
    for r in 0..REQUESTS {
        let events: Vec<Value> = (0..EVENTS)
            .map(|i| event(&format!("gone-{r}-{i}"), "user.logged_in", "acct-1", json!({})))
            .collect();
        let body = json!({ "events": events }).to_string();
        let request = format!(
            "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            app.key,
            body.len()
        );
        let mut socket = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        socket.write_all(request.as_bytes()).await.expect("send");
        // Gone before the answer: the handler's future is dropped.
        drop(socket);
    }
    let all = REQUESTS * EVENTS;
    let done = wait_for(Duration::from_secs(60), || async {
        succeeded(&app.store, &app.tenant_id).await == all
    })
    .await;
    let counts = app.store.job_counts(Some(&app.tenant_id)).await.unwrap();
    assert!(done, "jobs of the disconnected requests: {counts:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_client_that_disconnects_still_gets_its_jobs_run() {
    a_client_that_disconnects_still_gets_its_jobs_run(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_a_client_that_disconnects_still_gets_its_jobs_run() {
    a_client_that_disconnects_still_gets_its_jobs_run(Deployment::Distributed).await;
}

fn probe_jobs(tenant_id: &str, n: usize, tag: &str) -> Vec<NewJob> {
    (0..n)
        .map(|i| NewJob {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: tenant_id.to_owned(),
            kind: "probe".into(),
            event_id: Some(format!("{tag}-{i}")),
            payload: "{}".into(),
            max_attempts: 3,
            run_after: None,
        })
        .collect()
}

/// Jobs left `pending` (their producer died after its commit) are queued
/// and run by a process that only serves the API and runs workers — no
/// scheduler anywhere.
async fn pending_jobs_are_dispatched_without_a_scheduler(deployment: Deployment) {
    let roles = Roles {
        api: true,
        scheduler: false,
        worker: true,
    };
    let mut app = spawn_app_with_roles(deployment, PROBE_RULE, roles).await;
    let jobs = probe_jobs(&app.tenant_id, 40, "orphan");
    let mut tx = app.store.pool().begin().await.unwrap();
    insert_jobs(&mut tx, &jobs, now_ms() - 60_000).await.unwrap();
    tx.commit().await.unwrap();
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let settled = app.wait_settled(&ids, Duration::from_secs(30)).await;
    assert!(
        settled.len() == ids.len() && settled.iter().all(|j| j.state == JobState::Succeeded),
        "{:?}",
        settled.iter().map(|j| j.state).collect::<Vec<_>>()
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_pending_jobs_are_dispatched_without_a_scheduler() {
    pending_jobs_are_dispatched_without_a_scheduler(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_pending_jobs_are_dispatched_without_a_scheduler() {
    pending_jobs_are_dispatched_without_a_scheduler(Deployment::Distributed).await;
}

fn events(tag: &str, n: usize, user: Option<&str>) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            id: format!("{tag}-{i}"),
            event_type: "user.logged_in".into(),
            account_id: "acct-1".into(),
            user_id: user.map(str::to_owned),
            occurred_at_ms: now_ms(),
            data: serde_json::Map::new(),
        })
        .collect()
}

async fn depth(queue: &Arc<dyn Queue>) -> u64 {
    let d = queue.depth("probe").await.expect("depth");
    d.ready + d.in_flight + d.delayed
}

/// A dispatcher that treats every `pending` row as stale, racing the API's
/// ingest and another producer's `enqueue_recorded` round after round:
/// every job is on the queue exactly once.
async fn the_dispatcher_never_pushes_a_job_already_on_the_queue(deployment: Deployment) {
    let env = Env::new(deployment).await;
    let config = env.config(PROBE_RULE);
    let rt = Runtime::open(config.clone()).await.unwrap();
    let (store, queue) = (rt.store.clone(), rt.queue.clone());
    let key = store.create_tenant("t", None).await.unwrap();
    let tenant = key.tenant.id;
    let rules = Rules::new(config.all_rules());
    let policies = JobPolicies::default();
    const ROUNDS: usize = 30;
    let mut expected = 0u64;
    for round in 0..ROUNDS {
        let producer = Producer {
            store: &store,
            queue: &queue,
            rules: &rules,
            policies: &policies,
        };
        let recorded = probe_jobs(&tenant, 20, &format!("tick-{round}"));
        let (ingest, other, dispatched) = tokio::join!(
            accept_events(producer, &tenant, events(&format!("r{round}"), 20, None)),
            async {
                let mut tx = store.pool().begin().await.unwrap();
                insert_jobs(&mut tx, &recorded, now_ms()).await.unwrap();
                tx.commit().await.unwrap();
                enqueue_recorded(&store, queue.as_ref(), &recorded).await
            },
            async {
                let mut n = 0;
                for _ in 0..5 {
                    n += dispatch_pending(&store, queue.as_ref(), i64::MAX, 500).await.unwrap();
                    tokio::task::yield_now().await;
                }
                n
            },
        );
        ingest.unwrap();
        other.unwrap();
        let _ = dispatched;
        expected += 40;
        assert_eq!(
            depth(&queue).await,
            expected,
            "round {round}: the queue holds a job twice"
        );
    }
    let counts = store.job_counts(None).await.unwrap();
    assert_eq!(counts, vec![("probe".to_owned(), JobState::Queued, expected as i64)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_the_dispatcher_never_pushes_a_job_already_on_the_queue() {
    the_dispatcher_never_pushes_a_job_already_on_the_queue(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distributed_the_dispatcher_never_pushes_a_job_already_on_the_queue() {
    the_dispatcher_never_pushes_a_job_already_on_the_queue(Deployment::Distributed).await;
}

/// Concurrent ingests are committed together; each still gets its own
/// answer, a replayed id across concurrent requests is recorded once, and
/// a request the store refuses (Postgres takes no NUL byte in text) fails alone.
async fn group_commit_answers_each_request(deployment: Deployment) {
    let env = Env::new(deployment).await;
    let config = env.config(PROBE_RULE);
    let rt = Runtime::open(config.clone()).await.unwrap();
    let (store, queue) = (rt.store.clone(), rt.queue.clone());
    let tenant = store.create_tenant("t", None).await.unwrap().tenant.id;
    let rules = Arc::new(Rules::new(config.all_rules()));
    const REQUESTS: usize = 40;
    let bad = deployment == Deployment::Distributed;
    let mut calls = tokio::task::JoinSet::new();
    for r in 0..REQUESTS {
        let mut batch = events(&format!("g{r}"), 5, None);
        // Every request also carries the same shared event id.
        batch.extend(events("shared", 1, None));
        if bad && r == 7 {
            // The API refuses control characters; past it, Postgres does.
            batch.extend(events("bad", 1, Some("nul \u{0000} byte")));
        }
        let (store, queue, rules, tenant) = (store.clone(), queue.clone(), rules.clone(), tenant.clone());
        calls.spawn(async move {
            let policies = JobPolicies::default();
            let producer = Producer {
                store: &store,
                queue: &queue,
                rules: &rules,
                policies: &policies,
            };
            (r, accept_events(producer, &tenant, batch).await)
        });
    }
    let answers = calls.join_all().await;
    let mut shared_jobs = HashSet::new();
    let mut shared_accepted = 0;
    for (r, answer) in answers {
        if bad && r == 7 {
            assert!(answer.is_err(), "the request with a NUL byte was accepted");
            continue;
        }
        let outcomes = answer.unwrap_or_else(|e| panic!("request {r} failed with its neighbour: {e}"));
        assert_eq!(outcomes.len(), 6);
        for o in &outcomes[..5] {
            assert!(
                matches!(o, IngestOutcome::Accepted { job_ids } if job_ids.len() == 1),
                "{o:?}"
            );
        }
        match &outcomes[5] {
            IngestOutcome::Accepted { job_ids } => {
                shared_accepted += 1;
                shared_jobs.insert(job_ids.clone());
            }
            IngestOutcome::Duplicate { job_ids } => {
                shared_jobs.insert(job_ids.clone());
            }
        }
    }
    assert_eq!(shared_accepted, 1, "the shared event was accepted more than once");
    assert_eq!(shared_jobs.len(), 1, "copies report different jobs: {shared_jobs:?}");
    let good = if bad { REQUESTS - 1 } else { REQUESTS };
    let expected = (good * 5 + 1) as i64;
    let counts = store.job_counts(Some(&tenant)).await.unwrap();
    assert_eq!(counts, vec![("probe".to_owned(), JobState::Queued, expected)]);
    assert_eq!(depth(&queue).await, expected as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_group_commit_answers_each_request() {
    group_commit_answers_each_request(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distributed_group_commit_answers_each_request() {
    group_commit_answers_each_request(Deployment::Distributed).await;
}

/// A producer claiming jobs (`pending` → `queued`), a worker starting them
/// and two completers recording every kind of outcome, on the same jobs at
/// once, 2,000 times (four streams of rounds side by side), against
/// Postgres: no deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claiming_starting_and_finishing_the_same_jobs_thousands_of_times_never_deadlocks() {
    let env = Env::new(Deployment::Distributed).await;
    let rt = Runtime::open(env.config("")).await.unwrap();
    const STREAMS: usize = 4;
    const ROUNDS: usize = 500;
    let mut streams = tokio::task::JoinSet::new();
    for stream in 0..STREAMS {
        let store = rt.store.clone();
        streams.spawn(async move {
            for round in 0..ROUNDS {
                contend(&store, &format!("lock-{stream}-{round}")).await;
            }
        });
    }
    streams.join_all().await;
}

async fn contend(store: &Store, tag: &str) {
    const JOBS: usize = 12;
    let jobs = probe_jobs("t", JOBS, tag);
    let mut tx = store.pool().begin().await.unwrap();
    insert_jobs(&mut tx, &jobs, now_ms()).await.unwrap();
    tx.commit().await.unwrap();
    let mut ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    ids.shuffle(&mut rand::rng());
    let finished: Vec<Finished> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Finished {
            id: id.clone(),
            attempt: 1,
            worker: "w".into(),
            started_at: now_ms(),
            finish: match i % 3 {
                0 => Finish::Succeeded {
                    result_ref: Some(format!("r/{i}")),
                },
                1 => Finish::Retrying {
                    error: "later".into(),
                    retry_at: kairos_core::time::now_ms() + 60_000,
                },
                _ => Finish::Dead { error: "never".into() },
            },
        })
        .collect();
    let (fa, fb) = finished.split_at(JOBS / 2);
    let (fa, fb) = (fa.to_vec(), fb.to_vec());
    let mut rev = ids.clone();
    rev.reverse();
    let (s1, s2, s3, s4) = (store.clone(), store.clone(), store.clone(), store.clone());
    let (r1, r2, r3, r4) = tokio::join!(
        tokio::spawn(async move { s1.claim(&ids).await.map(|_| ()) }),
        tokio::spawn(async move { s2.start(&rev, "w2").await.map(|_| ()) }),
        tokio::spawn(async move { s3.finish(&fa).await }),
        tokio::spawn(async move { s4.finish(&fb).await }),
    );
    for (what, r) in [("claim", r1), ("start", r2), ("finish a", r3), ("finish b", r4)] {
        if let Err(e) = r.expect("task") {
            panic!("{tag}: {what} failed: {e}");
        }
    }
}

fn finished(id: &str, attempt: u32, started_at: i64, finish: Finish) -> Finished {
    Finished {
        id: id.to_owned(),
        attempt,
        worker: "w1".into(),
        started_at,
        finish,
    }
}

/// A quick attempt costs one write: the worker only reads that the job is
/// not finished (`startable`), and the outcome write records the start
/// with it. That write is conditional: a finished job is never started or
/// changed again (a duplicate's outcome, a late `running` mark), and the
/// stored row keeps counting attempts for retries and dead letters.
async fn a_quick_job_is_recorded_with_one_write_and_never_re_run(deployment: Deployment) {
    let env = Env::new(deployment).await;
    let rt = Runtime::open(env.config("")).await.unwrap();
    let store = rt.store.clone();
    let jobs = probe_jobs("t", 2, "quick");
    let mut tx = store.pool().begin().await.unwrap();
    insert_jobs(&mut tx, &jobs, now_ms()).await.unwrap();
    tx.commit().await.unwrap();
    let (quick, flaky) = (jobs[0].id.clone(), jobs[1].id.clone());
    let ids = vec![quick.clone(), flaky.clone()];

    // Checking costs no write: the rows stay as they were.
    let started = store.startable(&ids).await.unwrap();
    assert_eq!(started.len(), 2);
    assert!(started.iter().all(|s| s.attempt == 1 && s.max_attempts == 3));
    let rows = store.jobs_by_ids(&ids).await.unwrap();
    assert!(rows
        .iter()
        .all(|j| j.state == JobState::Pending && j.attempts == 0 && j.started_at.is_none()));

    // The outcome records the start with it.
    let t0 = now_ms() - 5;
    let ok = Finish::Succeeded {
        result_ref: Some("r/1".into()),
    };
    store.finish(&[finished(&quick, 1, t0, ok.clone())]).await.unwrap();
    let row = store.job(None, &quick).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.attempts, row.started_at, row.worker.as_deref()),
        (JobState::Succeeded, 1, Some(t0), Some("w1"))
    );
    assert!(row.queued_at.is_some() && row.finished_at.is_some());
    assert_eq!(store.attempts(&quick).await.unwrap().len(), 1);

    // Never re-run, never changed again.
    assert!(store.startable(std::slice::from_ref(&quick)).await.unwrap().is_empty());
    store.mark_running(&[(quick.clone(), 2)], "w2", now_ms()).await.unwrap();
    store
        .finish(&[finished(&quick, 2, now_ms(), Finish::Dead { error: "dup".into() })])
        .await
        .unwrap();
    let again = store.job(None, &quick).await.unwrap().unwrap();
    assert_eq!(again, row, "a finished job's row changed");

    // A failing job: the stored row counts its attempts; a late mark of an
    // attempt whose outcome is recorded changes nothing.
    let fail = |error: &str| Finish::Retrying {
        error: error.into(),
        retry_at: now_ms(),
    };
    store
        .finish(&[finished(&flaky, 1, now_ms(), fail("first"))])
        .await
        .unwrap();
    store.mark_running(&[(flaky.clone(), 1)], "w1", now_ms()).await.unwrap();
    let row = store.job(None, &flaky).await.unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (JobState::Retrying, 1));
    let next = store.startable(std::slice::from_ref(&flaky)).await.unwrap();
    assert_eq!(next[0].attempt, 2);
    // A long second attempt is marked running, then recorded dead.
    store.mark_running(&[(flaky.clone(), 2)], "w1", now_ms()).await.unwrap();
    let row = store.job(None, &flaky).await.unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (JobState::Running, 2));
    store
        .finish(&[finished(&flaky, 2, now_ms(), Finish::Dead { error: "gone".into() })])
        .await
        .unwrap();
    let row = store.job(None, &flaky).await.unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (JobState::Dead, 2));
    assert_eq!(store.attempts(&flaky).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_quick_job_is_recorded_with_one_write_and_never_re_run() {
    a_quick_job_is_recorded_with_one_write_and_never_re_run(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_a_quick_job_is_recorded_with_one_write_and_never_re_run() {
    a_quick_job_is_recorded_with_one_write_and_never_re_run(Deployment::Distributed).await;
}

/// Through the real worker: a long job is seen `running` (its start is
/// written once it has run for a moment), a quick one goes from `queued`
/// to `succeeded`; both end with one attempt recorded.
async fn a_long_job_is_seen_running(deployment: Deployment) {
    let mut app = spawn_app(deployment, PROBE_RULE).await;
    let (status, resp) = app
        .post_events(&json!({ "events": [
            event("slow-1", "diagnostic.slow", "a", json!({"probe": {"sleep_ms": 2500}})),
            event("quick-1", "diagnostic.quick", "a", json!({})),
        ]}))
        .await;
    assert_eq!(status, 202, "{resp}");
    let ids = job_ids(&resp);
    let slow = ids[0].clone();
    assert!(
        wait_for(Duration::from_secs(20), || async {
            let j = app.store.job(None, &slow).await.unwrap().unwrap();
            j.state == JobState::Running && j.attempts == 1 && j.worker.is_some() && j.started_at.is_some()
        })
        .await,
        "the slow job was never seen running"
    );
    let jobs = app.wait_settled(&ids, Duration::from_secs(30)).await;
    for j in &jobs {
        assert_eq!((j.state, j.attempts), (JobState::Succeeded, 1), "{j:?}");
        assert!(j.started_at.is_some() && j.started_at <= j.finished_at, "{j:?}");
        assert_eq!(app.store.attempts(&j.id).await.unwrap().len(), 1);
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_long_job_is_seen_running() {
    a_long_job_is_seen_running(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_a_long_job_is_seen_running() {
    a_long_job_is_seen_running(Deployment::Distributed).await;
}
