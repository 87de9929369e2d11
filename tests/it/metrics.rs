//! `/metrics` after a run, checked against the job table: real `kairos`
//! processes (so each has counters of its own), events posted over HTTP,
//! the exposition text parsed.
//!
//! Embedded: one `kairos serve`. Distributed: `kairos api` and a
//! `kairos worker` scraped on its own `[metrics] listen` endpoint, behind a
//! bearer token.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kairos_core::store::JobState;
use kairos_core::Store;
use serde_json::json;

use crate::common::*;

const CONFIG: &str = r#"
[worker]
heartbeat_interval = "200ms"

[jobs.probe]
max_attempts = 2
backoff_initial = "50ms"
backoff_max = "100ms"

[[rules]]
on = "diagnostic.*"
run = ["probe"]

[[rules]]
on = "login"
run = ["activity"]
"#;

/// One sample: name and labels → value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// Parses the Prometheus text format (what a scraper does).
fn parse(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').unwrap();
                let labels = body
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (n.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.insert((name, labels), value);
    }
    out
}

/// The value of `name` with exactly `labels` (0 when absent: a counter
/// never incremented is not exported).
fn get(s: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    s.get(&(name.to_string(), want)).copied().unwrap_or(0.0)
}

/// Kills the processes and waits for them, so none outlives its test.
async fn stop(procs: impl IntoIterator<Item = Proc>) {
    for mut p in procs {
        let _ = p.child.kill().await;
    }
}

async fn scrape(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

async fn metrics_match_the_job_table(deployment: Deployment) {
    let env = Env::new(deployment).await;
    let config = env.config_file(CONFIG);
    let key = cli_create_tenant(&config, "acme").await;

    let api_port = free_port();
    // Where the job counters are scraped: the one process (embedded), or
    // the worker's own endpoint (distributed), behind a token.
    let (procs, worker_metrics, token) = match deployment {
        Deployment::Embedded => {
            let serve = spawn_proc_with(&config, &["serve"], &[listen_on(api_port)]);
            (vec![serve], format!("http://127.0.0.1:{api_port}/metrics"), None)
        }
        Deployment::Distributed => {
            let metrics_port = free_port();
            let api = spawn_proc_with(&config, &["api"], &[listen_on(api_port)]);
            let worker = spawn_proc_with(
                &config,
                &["worker"],
                &[
                    ("KAIROS__METRICS__LISTEN", format!("127.0.0.1:{metrics_port}")),
                    ("KAIROS_METRICS_TOKEN", "s3cret".into()),
                ],
            );
            (
                vec![api, worker],
                format!("http://127.0.0.1:{metrics_port}/metrics"),
                Some("s3cret"),
            )
        }
    };
    let base = format!("http://127.0.0.1:{api_port}");
    let api_metrics = format!("{base}/metrics");
    assert!(
        wait_for(Duration::from_secs(30), || async {
            scrape(&api_metrics, None).await.0 == 200
        })
        .await,
        "API did not come up"
    );
    assert!(
        wait_for(Duration::from_secs(30), || async {
            scrape(&worker_metrics, token).await.0 == 200
        })
        .await,
        "worker metrics did not come up"
    );
    if token.is_some() {
        assert_eq!(scrape(&worker_metrics, None).await.0, 401, "the token is required");
        assert_eq!(scrape(&worker_metrics, Some("wrong")).await.0, 401);
    }

    // 10 succeed, 3 fail permanently (dead), 2 fail once then succeed, 5 logins.
    let mut events = Vec::new();
    for i in 0..10 {
        events.push(event(&format!("ok{i}"), "diagnostic.ok", "a", json!({})));
    }
    for i in 0..3 {
        events.push(event(
            &format!("bad{i}"),
            "diagnostic.bad",
            "a",
            json!({"probe": {"permanent": true}}),
        ));
    }
    for i in 0..2 {
        events.push(event(
            &format!("flaky{i}"),
            "diagnostic.flaky",
            "a",
            json!({"probe": {"fail_attempts": 1}}),
        ));
    }
    for i in 0..5 {
        events.push(event(&format!("login{i}"), "login", "a", json!({})));
    }
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    // Two batches, then one replay (202, duplicate) and one bad key (401).
    for batch in [&events[..10], &events[10..]] {
        let resp = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(&key)
            .json(&json!(batch))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        ids.extend(job_ids(&resp.json().await.unwrap()));
    }
    let resp = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(&key)
        .json(&events[0])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let resp = http
        .post(format!("{base}/v1/events"))
        .bearer_auth("kairos_nope")
        .json(&events[0])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(ids.len(), 20);

    let store = Store::connect(&env.store_url, 2).await.unwrap();
    let jobs = wait_settled(&store, &ids, Duration::from_secs(30)).await;
    let count = |kind: &str, state: JobState| jobs.iter().filter(|j| j.kind == kind && j.state == state).count() as f64;
    let attempts = |kind: &str| jobs.iter().filter(|j| j.kind == kind).map(|j| j.attempts).sum::<u32>() as f64;
    assert_eq!(count("probe", JobState::Succeeded), 12.0);
    assert_eq!(count("probe", JobState::Dead), 3.0);

    // Outcome counters follow the store commit by microseconds: wait until
    // every settled job is counted, then compare everything.
    let deadline = Instant::now() + Duration::from_secs(10);
    let w = loop {
        let (status, text) = scrape(&worker_metrics, token).await;
        let w = parse(&text);
        if status == 200
            && get(&w, "kairos_jobs_succeeded_total", &[("kind", "probe")]) == count("probe", JobState::Succeeded)
            && get(&w, "kairos_jobs_succeeded_total", &[("kind", "activity")]) == count("activity", JobState::Succeeded)
            && get(&w, "kairos_jobs_dead_total", &[("kind", "probe")]) == count("probe", JobState::Dead)
        {
            break w;
        }
        assert!(Instant::now() < deadline, "counters never matched the job table: {w:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(get(&w, "kairos_jobs_retried_total", &[("kind", "probe")]), 2.0);
    assert_eq!(
        get(&w, "kairos_job_attempts_total", &[("kind", "probe")]),
        attempts("probe")
    );
    assert_eq!(
        get(&w, "kairos_job_attempts_total", &[("kind", "activity")]),
        attempts("activity")
    );
    // One duration sample and one wait sample per attempt (a retry's wait
    // runs from the time it came due).
    assert_eq!(
        get(&w, "kairos_job_duration_seconds_count", &[("kind", "probe")]),
        attempts("probe")
    );
    assert_eq!(
        get(&w, "kairos_job_wait_seconds_count", &[("kind", "probe")]),
        attempts("probe")
    );
    assert_eq!(
        get(
            &w,
            "kairos_job_duration_seconds_bucket",
            &[("kind", "probe"), ("le", "+Inf")]
        ),
        attempts("probe")
    );

    // The API's: ingest by route and status, events, and the deployment
    // gauges (true across processes: read from the store and queue).
    let (status, text) = scrape(&api_metrics, None).await;
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE kairos_job_duration_seconds histogram") || deployment == Deployment::Distributed);
    let a = parse(&text);
    let route = |status: &str| {
        get(
            &a,
            "kairos_http_requests_total",
            &[("method", "POST"), ("route", "/v1/events"), ("status", status)],
        )
    };
    assert_eq!(route("202"), 3.0, "{a:?}");
    assert_eq!(route("401"), 1.0);
    assert_eq!(get(&a, "kairos_events_accepted_total", &[]), 20.0);
    assert_eq!(get(&a, "kairos_events_duplicate_total", &[]), 1.0);
    for &kind in kairos_jobs::KINDS {
        for state in ["ready", "leased", "delayed"] {
            assert_eq!(
                get(&a, "kairos_queue_depth", &[("kind", kind), ("state", state)]),
                0.0,
                "{kind} {state}"
            );
        }
        assert_eq!(get(&a, "kairos_jobs_in_flight", &[("kind", kind)]), 0.0);
        assert_eq!(get(&a, "kairos_queue_oldest_ready_age_seconds", &[("kind", kind)]), 0.0);
        assert_eq!(get(&a, "kairos_queue_paused", &[("kind", kind)]), 0.0);
        assert!(
            a.contains_key(&(
                "kairos_queue_depth".into(),
                [("kind".to_string(), kind.to_string()), ("state".into(), "ready".into())].into()
            )),
            "no depth gauge for {kind}"
        );
    }
    assert_eq!(get(&a, "kairos_workers_alive", &[]), 1.0);
    assert_eq!(get(&a, "kairos_scrape_error", &[]), 0.0);
    if deployment == Deployment::Distributed {
        // A worker's endpoint serves its own counters, not the deployment
        // gauges (the API does, once).
        assert!(!w.keys().any(|(n, _)| n == "kairos_queue_depth"));
        assert_eq!(route("202"), 3.0);
        assert!(!a.keys().any(|(n, _)| n == "kairos_jobs_succeeded_total"));
    } else {
        assert_eq!(
            get(&a, "kairos_jobs_succeeded_total", &[("kind", "probe")]),
            count("probe", JobState::Succeeded)
        );
    }

    // A backlog shows in the gauges: pause probe, post, scrape.
    assert!(store.pause_kind("probe", "test", None).await.unwrap());
    // The bound a pause is promised to hold within (see ops.rs).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resp = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(&key)
        .json(&json!([event("later", "diagnostic.ok", "a", json!({}))]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = parse(&scrape(&api_metrics, None).await.1);
        if get(&a, "kairos_queue_paused", &[("kind", "probe")]) == 1.0
            && get(&a, "kairos_queue_depth", &[("kind", "probe"), ("state", "ready")]) == 1.0
            && get(&a, "kairos_queue_oldest_ready_age_seconds", &[("kind", "probe")]) > 0.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "the paused backlog never showed: {a:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(procs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_job_table_embedded() {
    metrics_match_the_job_table(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_job_table_distributed() {
    metrics_match_the_job_table(Deployment::Distributed).await;
}

/// The Grafana dashboard, README and ARCHITECTURE name only metrics that
/// exist, and README lists every one.
#[test]
fn dashboards_and_docs_use_the_real_names() {
    use kairos_core::metrics::names::ALL;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap();
    let used = |text: &str| -> Vec<String> {
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(at) = text[i..].find("kairos_") {
            let start = i + at;
            let end = start
                + bytes[start..]
                    .iter()
                    .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'_')
                    .count();
            // Only metric-looking names (crate paths like kairos_core:: are not).
            if !text[end..].starts_with("::") {
                out.push(text[start..end].to_string());
            }
            i = end.max(start + 1);
        }
        out
    };
    let grafana = read("ops/grafana/kairos.json");
    let known = |name: &str| {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| ALL.contains(b)))
            .unwrap_or(name);
        ALL.contains(&base)
    };
    let grafana_names = used(&grafana);
    assert!(grafana_names.len() > 20);
    for n in &grafana_names {
        assert!(known(n), "ops/grafana/kairos.json uses unknown metric {n}");
    }
    let readme = read("README.md");
    for n in ALL {
        assert!(readme.contains(&format!("`{n}`")), "README.md does not list {n}");
    }
    for n in used(&readme)
        .iter()
        .filter(|n| n.ends_with("_total") || n.ends_with("_seconds"))
    {
        assert!(known(n), "README.md names unknown metric {n}");
    }
}

/// The sentiment batcher's inference time and batch size, with the real
/// model: every text scored is in exactly one recorded batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_inference_and_batch_size_are_recorded() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = kairos::Config::load(&root.join("config/default.toml")).unwrap();
    let encoder = root.join(&shipped.sentiment.encoder);
    let head = root.join(shipped.sentiment.head.unwrap());
    assert!(
        encoder.join("model.onnx").is_file(),
        "{} missing: run scripts/fetch-models",
        encoder.display()
    );
    let env = Env::new(Deployment::Embedded).await;
    let config = env.config_file(&format!(
        "[sentiment]\nenabled = true\nencoder = \"{}\"\nhead = \"{}\"\nbatch_wait = \"50ms\"\n\n\
         [[rules]]\non = \"ticket.*\"\nrun = [\"sentiment\"]\n",
        encoder.display(),
        head.display()
    ));
    let key = cli_create_tenant(&config, "acme").await;
    let port = free_port();
    let serve = spawn_proc_with(&config, &["serve"], &[listen_on(port)]);
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        wait_for(Duration::from_secs(60), || async {
            scrape(&format!("{base}/metrics"), None).await.0 == 200
        })
        .await,
        "serve did not come up"
    );
    let texts = 12;
    let events: Vec<_> = (0..texts)
        .map(|i| {
            event(
                &format!("t{i}"),
                "ticket.created",
                "a",
                json!({"text": format!("The export broke again, ticket {i}")}),
            )
        })
        .collect();
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(&key)
        .json(&json!(events))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let ids = job_ids(&resp.json().await.unwrap());
    let store = Store::connect(&env.store_url, 2).await.unwrap();
    let jobs = wait_settled(&store, &ids, Duration::from_secs(60)).await;
    assert!(jobs.iter().all(|j| j.state == JobState::Succeeded), "{jobs:?}");

    let m = parse(&scrape(&format!("{base}/metrics"), None).await.1);
    let model = [("model", "sentiment")];
    let batches = get(&m, "kairos_model_batch_size_count", &model);
    assert_eq!(get(&m, "kairos_model_batch_size_sum", &model), texts as f64, "{m:?}");
    assert!((1.0..=texts as f64).contains(&batches), "{batches} batches");
    assert_eq!(get(&m, "kairos_model_inference_seconds_count", &model), batches);
    assert!(get(&m, "kairos_model_inference_seconds_sum", &model) > 0.0);
    eprintln!(
        "{texts} texts in {batches} batches, {:.1} ms per batch",
        1000.0 * get(&m, "kairos_model_inference_seconds_sum", &model) / batches
    );
    stop([serve]).await;
}

/// Scheduler ticks and misfires, against the store's tick records: a
/// schedule last fired ten minutes ago (a misfire, `skip`), then firing
/// every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_ticks_and_misfires_match_the_tick_records() {
    let env = Env::new(Deployment::Embedded).await;
    let config = env
        .config_file("[[schedules]]\nname = \"every\"\ncron = \"* * * * * *\"\njob = \"probe\"\nmisfire = \"skip\"\n");
    let (ok, _, err) = run_cli(&config, &["migrate"]).await;
    assert!(ok, "{err}");
    let store = Store::connect(&env.store_url, 2).await.unwrap();
    let long_ago = kairos_core::time::now_ms() - 600_000;
    assert!(store.record_tick("every", long_ago, "fired", "old", &[]).await.unwrap());
    let port = free_port();
    let serve = spawn_proc_with(&config, &["serve"], &[listen_on(port)]);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let ticks = |m: &Samples, outcome: &str| {
        get(
            m,
            "kairos_scheduler_ticks_total",
            &[("schedule", "every"), ("outcome", outcome)],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let m = loop {
        let m = parse(&scrape(&url, None).await.1);
        if ticks(&m, "fired") >= 2.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "no ticks: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recorded = store.ticks_since("every", long_ago + 1).await.unwrap();
    let count = |outcome: &str| recorded.iter().filter(|t| t.outcome == outcome).count() as f64;
    assert_eq!(ticks(&m, "skipped"), 1.0, "{recorded:?}");
    assert_eq!(count("skipped"), 1.0);
    assert_eq!(
        get(&m, "kairos_scheduler_misfires_total", &[("schedule", "every")]),
        1.0
    );
    // Ticks keep coming (every second, after a catch-up burst): compare at
    // a moment none lands — the counter the same before and after reading
    // the records...
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = ticks(&parse(&scrape(&url, None).await.1), "fired");
        let recorded = store.ticks_since("every", long_ago + 1).await.unwrap();
        let after = ticks(&parse(&scrape(&url, None).await.1), "fired");
        let fired = recorded.iter().filter(|t| t.outcome == "fired").count() as f64;
        // ...and the newest record is not so fresh that its increment (just
        // after the commit, on a busy runtime) may still be on its way.
        let newest = recorded.iter().map(|t| t.fired_at).max().unwrap_or(0);
        let settled = kairos_core::time::now_ms() - newest > 300;
        if before == after && settled {
            assert_eq!(after, fired, "counted vs recorded fired ticks");
            break;
        }
        assert!(Instant::now() < deadline, "never a quiet moment to compare");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop([serve]).await;
}
