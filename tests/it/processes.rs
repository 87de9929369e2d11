//! Real `kairos` processes: the distributed deployment, graceful shutdown,
//! and a worker killed with SIGKILL mid-job.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use kairos_core::store::JobState;
use kairos_core::Store;
use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_processes_complete_every_job_exactly_once() {
    let env = Env::new(Deployment::Distributed).await;
    // The rate limit is not what this test is about: its producers are
    // faster than the default 2,000 events/s.
    let config = env.config_file(
        "[api]\nrate_per_second = 1000000\nrate_burst = 1000000\n\
         [jobs.activity]\nconcurrency = 16\n[[rules]]\non = \"*\"\nrun = [\"activity\"]\n",
    );
    let (ok, _, err) = run_cli(&config, &["migrate"]).await;
    assert!(ok, "{err}");
    let key = cli_create_tenant(&config, "acme").await;

    let port = free_port();
    let mut procs = vec![
        spawn_proc_with(&config, &["api"], &[listen_on(port)]),
        spawn_proc(&config, &["scheduler"]),
        spawn_proc(&config, &["worker"]),
        spawn_proc(&config, &["worker"]),
    ];
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;

    const N: usize = 5000;
    let types = [
        "user.logged_in",
        "comment.created",
        "ticket.created",
        "payment.succeeded",
        "payment.failed",
    ];
    let mut expected: BTreeMap<String, [i64; 5]> = BTreeMap::new();
    let events: Vec<_> = (0..N)
        .map(|i| {
            let account = format!("acct-{}", i % 50);
            let t = types[(i * 7 + i / 50) % types.len()];
            expected.entry(account.clone()).or_default()[(i * 7 + i / 50) % types.len()] += 1;
            event(&format!("ev-{i}"), t, &account, json!({"amount": 10}))
        })
        .collect();
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for chunk in events.chunks(500) {
        let resp = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(&key)
            .json(&json!({ "events": chunk }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let body: serde_json::Value = resp.json().await.unwrap();
        ids.extend(job_ids(&body));
    }
    assert_eq!(ids.len(), N);

    let store = Store::connect(&env.store_url, 2).await.unwrap();
    let jobs = wait_settled(&store, &ids, Duration::from_secs(180)).await;
    assert!(jobs.iter().all(|j| j.state == JobState::Succeeded), "all succeeded");
    assert!(jobs.iter().all(|j| j.attempts == 1), "each job ran exactly once");
    let workers: HashSet<_> = jobs.iter().filter_map(|j| j.worker.clone()).collect();
    assert_eq!(workers.len(), 2, "both workers took part: {workers:?}");

    let tenant = store.find_tenant("acme").await.unwrap();
    let acts = kairos_jobs::activity::read_all(&store, &tenant.id).await.unwrap();
    assert_eq!(acts.len(), 50);
    for a in acts {
        let e = expected[&a.account_id];
        assert_eq!(
            [a.logins, a.comments, a.tickets, a.payments, a.failed_payments],
            e,
            "aggregates of {}",
            a.account_id
        );
        assert_eq!(a.amount_paid_cents, e[3] * 1000);
    }

    for p in &procs {
        p.signal("TERM");
    }
    for p in &mut procs {
        let status = p.wait(Duration::from_secs(30)).await;
        assert!(status.success(), "{} exited with {status}", p.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_jobs_and_exits_zero() {
    let env = Env::new(Deployment::Embedded).await;
    let config = env.config_file(
        "[worker]\nshutdown_grace = \"20s\"\n[jobs.probe]\nconcurrency = 4\ntimeout = \"30s\"\n[[rules]]\non = \"diagnostic.*\"\nrun = [\"probe\"]\n",
    );
    let key = cli_create_tenant(&config, "acme").await;
    let port = free_port();
    let mut serve = spawn_proc_with(&config, &["serve"], &[listen_on(port)]);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;
    let batch: Vec<_> = (0..4)
        .map(|i| {
            event(
                &format!("s{i}"),
                "diagnostic.slow",
                "a",
                json!({"probe": {"sleep_ms": 2000}}),
            )
        })
        .collect();
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(&key)
        .json(&json!(batch))
        .send()
        .await
        .unwrap();
    let ids = job_ids(&resp.json().await.unwrap());
    let store = Store::connect(&env.store_url, 2).await.unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || async {
            let jobs = store.jobs_by_ids(&ids).await.unwrap();
            jobs.iter().filter(|j| j.state == JobState::Running).count() == 4
        })
        .await,
        "jobs never all ran at once"
    );
    serve.signal("TERM");
    let status = serve.wait(Duration::from_secs(25)).await;
    assert!(status.success(), "serve exited with {status}");
    let jobs = store.jobs_by_ids(&ids).await.unwrap();
    assert!(
        jobs.iter().all(|j| j.state == JobState::Succeeded && j.attempts == 1),
        "in-flight jobs finished before exit: {jobs:?}"
    );
}

async fn sigkilled_worker_jobs_are_redelivered(deployment: Deployment) {
    // Env's config sets queue.lease = 3s and reclaim_interval = 300ms.
    let extra =
        "[jobs.probe]\ntimeout = \"4s\"\nmax_attempts = 3\n[[rules]]\non = \"diagnostic.*\"\nrun = [\"probe\"]\n";
    let env = Env::new(deployment).await;
    let config_path = env.config_file(extra);
    let mut app = spawn_app_on(env, extra, NO_WORKER).await;
    let (base, store) = (&app.base, &app.store);

    let mut victim = spawn_proc(&config_path, &["worker"]);
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(&app.key)
        .json(&event(
            "k1",
            "diagnostic.slow",
            "a",
            json!({"probe": {"sleep_ms": 2500}}),
        ))
        .send()
        .await
        .unwrap();
    let id = job_ids(&resp.json().await.unwrap())[0].clone();
    assert!(
        wait_for(Duration::from_secs(20), || async {
            let j = store.job(None, &id).await.unwrap().unwrap();
            j.state == JobState::Running && victim.ran(&j)
        })
        .await,
        "the first worker never started the job"
    );
    victim.kill().await;
    let killed_at = Instant::now();

    let mut rescuer = spawn_proc(&config_path, &["worker"]);
    let job = wait_settled(store, std::slice::from_ref(&id), Duration::from_secs(30))
        .await
        .remove(0);
    let took = killed_at.elapsed();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.attempts, 2, "the killed attempt counts, the second one finishes");
    assert!(job.worker.is_some() && !victim.ran(&job), "{job:?}");
    // Bound: lease (3s, renewed while the job ran) + reclaim interval + the 2.5s run.
    assert!(took < Duration::from_secs(15), "re-delivery took {took:?}");
    rescuer.signal("TERM");
    assert!(rescuer.wait(Duration::from_secs(20)).await.success());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_sigkilled_worker_jobs_are_redelivered() {
    sigkilled_worker_jobs_are_redelivered(Deployment::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sigkilled_worker_jobs_are_redelivered() {
    sigkilled_worker_jobs_are_redelivered(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_stops_every_role_before_it_starts() {
    let env = Env::new(Deployment::Embedded).await;
    let bad = env.dir.path().join("bad.toml");
    std::fs::write(&bad, "[queue]\nbackend = \"sqlite\"\nfetch_batchh = 3\n").unwrap();
    for role in ["serve", "api", "worker", "scheduler", "migrate"] {
        let (ok, _, err) = run_cli(&bad, &[role]).await;
        assert!(!ok, "{role} started on a bad config");
        assert!(
            err.contains("bad.toml") && err.contains("line 3") && err.contains("fetch_batchh"),
            "{err}"
        );
    }
    std::fs::write(&bad, "[[rules]]\non = \"comment.created\"\nrun = [\"sentimentt\"]\n").unwrap();
    let (ok, _, err) = run_cli(&bad, &["serve"]).await;
    assert!(
        !ok && err.contains("rules[0].run") && err.contains("sentimentt"),
        "{err}"
    );
    let mut cmd = kairos_cmd(&env.config_file(""), &["check-config"]);
    cmd.env("KAIROS__QUEUE__URL", "not a url");
    let out = cmd.output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("queue.url"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_key_revokes_the_old_one() {
    let mut app = spawn_app(Deployment::Embedded, "").await;
    let config = app.env.config_file("");
    let (ok, out, err) = run_cli(&config, &["tenants", "rotate-key", "tenant-a"]).await;
    assert!(ok, "{err}");
    let new_key = out
        .split_whitespace()
        .find(|w| w.starts_with("kairos_"))
        .unwrap()
        .to_string();
    let e = event("rk1", "user.logged_in", "a", json!({}));
    let (s, _) = app.post_events(&e).await;
    assert_eq!(s, 401, "the old key is revoked");
    let (s, _) = app.post_events_with_key(&new_key, &e).await;
    assert_eq!(s, 202);
    let (ok, out, _) = run_cli(&config, &["tenants", "list"]).await;
    assert!(ok && out.contains("tenant-a"));
    assert!(!out.contains(&new_key), "keys are never listed");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_scheduler_replicas_fire_each_tick_exactly_once() {
    let env = Env::new(Deployment::Distributed).await;
    let config = env.config_file(
        "[[schedules]]\nname = \"every-second\"\ncron = \"* * * * * *\"\njob = \"probe\"\nmisfire = \"run_once\"\n",
    );
    let (ok, _, err) = run_cli(&config, &["migrate"]).await;
    assert!(ok, "{err}");
    let store = Store::connect(&env.store_url, 2).await.unwrap();
    let mut replicas: Vec<Proc> = (0..3).map(|_| spawn_proc(&config, &["scheduler"])).collect();
    let started = kairos_core::time::now_ms();
    assert!(
        wait_for(Duration::from_secs(20), || async {
            !store.ticks_since("every-second", started).await.unwrap().is_empty()
        })
        .await,
        "no tick fired"
    );
    let first = store.ticks_since("every-second", started).await.unwrap()[0].tick_at;

    tokio::time::sleep(Duration::from_secs(10)).await;
    replicas[0].kill().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    replicas[0] = spawn_proc(&config, &["scheduler"]);
    tokio::time::sleep(Duration::from_secs(15)).await;
    for r in &replicas {
        r.signal("TERM");
    }
    for r in &mut replicas {
        assert!(r.wait(Duration::from_secs(20)).await.success());
    }

    let ticks = store.ticks_since("every-second", first).await.unwrap();
    let last = ticks.last().unwrap().tick_at;
    assert!(last - first >= 29_000, "ran for {} ms", last - first);
    let expected = ((last - first) / 1000 + 1) as usize;
    let missing: Vec<i64> = (0..expected as i64)
        .map(|i| first + i * 1000)
        .filter(|t| !ticks.iter().any(|k| k.tick_at == *t))
        .collect();
    assert!(missing.is_empty(), "missed ticks: {missing:?}");
    assert_eq!(ticks.len(), expected, "each tick recorded once");
    assert!(ticks.iter().all(|t| t.outcome == "fired" && t.jobs == 1), "{ticks:?}");
    let jobs = store
        .jobs(&kairos_core::store::JobFilter {
            kind: Some("probe".into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let all_ticks = store.ticks_since("every-second", 0).await.unwrap().len();
    assert_eq!(jobs.len(), all_ticks, "one job per tick, never two");
    let mut ids: Vec<_> = jobs.iter().map(|j| j.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), jobs.len());
    let replicas_seen: HashSet<_> = ticks.iter().map(|t| t.replica.clone()).collect();
    assert!(replicas_seen.len() >= 2, "ticks came from {replicas_seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_schedules() {
    let env = Env::new(Deployment::Embedded).await;
    let path = env.dir.path().join("hup.toml");
    // A reload interval of an hour: only SIGHUP can make the change visible.
    let base = env
        .config_toml("")
        .replace("[scheduler]\n", "[scheduler]\nreload_interval = \"1h\"\n");
    std::fs::write(&path, &base).unwrap();
    let (ok, _, err) = run_cli(&path, &["migrate"]).await;
    assert!(ok, "{err}");
    let mut sched = spawn_proc(&path, &["scheduler"]);
    let store = Store::connect(&env.store_url, 2).await.unwrap();
    // Wait for the first (unconditional) read, then change the file.
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(
        &path,
        format!("{base}\n[[schedules]]\nname = \"hup\"\ncron = \"* * * * * *\"\njob = \"probe\"\n"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        store.ticks_since("hup", 0).await.unwrap().is_empty(),
        "changed without SIGHUP"
    );
    sched.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(10), || async {
            !store.ticks_since("hup", 0).await.unwrap().is_empty()
        })
        .await,
        "SIGHUP did not reload"
    );
    sched.signal("TERM");
    assert!(sched.wait(Duration::from_secs(20)).await.success());
}

/// A command printing into a pipe whose reader has gone (`kairos jobs list
/// | head -1` once `head` has exited) ends as `cat` would, killed by
/// SIGPIPE, instead of panicking in `println!`. The reader's end is closed
/// before the command starts, so its first write meets the closed pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printing_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;

    let env = Env::new(Deployment::Embedded).await;
    let config = env.config_file("");
    let (ok, _, err) = run_cli(&config, &["migrate"]).await;
    assert!(ok, "{err}");
    for args in [&["check-config"][..], &["jobs", "list"], &["tenants", "list"]] {
        let (writer, reader) = tokio::net::unix::pipe::pipe().unwrap();
        drop(reader);
        // Not `output()`: it would replace stdout with a pipe of its own.
        let child = kairos_cmd(&config, args)
            .stdout(writer.into_blocking_fd().unwrap())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "kairos {args:?}: {stderr}");
        assert_eq!(
            out.status.signal(),
            Some(13),
            "kairos {args:?}: {} {stderr}",
            out.status
        );
    }
}
