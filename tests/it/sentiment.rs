//! Sentiment end to end with the real model (MiniLM int8 + the shipped
//! head, fetched by `scripts/fetch-models`): tickets in, scores stored,
//! upset customers alerted and their tenant's webhook called with a valid
//! signature by a real HTTP server in the test.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::*;

const SECRET_ENV: &str = "KAIROS_TEST_WEBHOOK_SECRET";
const SECRET: &str = "whsec-test-4f1c0e";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The encoder directory and head the shipped config uses (so these tests
/// exercise what ships), checked to be there: a clear failure, not a skip.
fn shipped_model() -> (PathBuf, PathBuf) {
    let config = kairos::Config::load(&repo("config/default.toml")).unwrap();
    let dir = repo(config.sentiment.encoder.to_str().unwrap());
    assert!(
        dir.join("model.onnx").is_file() && dir.join("tokenizer.json").is_file(),
        "{} is missing model.onnx / tokenizer.json: run scripts/fetch-models and scripts/fetch-e5",
        dir.display()
    );
    let head = repo(config.sentiment.head.unwrap().to_str().unwrap());
    (dir, head)
}

fn model_dir() -> PathBuf {
    shipped_model().0
}

/// The shipped head's version.
fn shipped_version() -> String {
    kairos_models::text::SentimentHead::load(&shipped_model().1)
        .unwrap()
        .version()
        .to_owned()
}

/// `[sentiment]` with the real model; `extra` is appended.
fn sentiment_config(extra: &str) -> String {
    sentiment_config_with("", extra)
}

/// As [`sentiment_config`], with more `[sentiment]` keys.
pub(crate) fn sentiment_config_with(keys: &str, extra: &str) -> String {
    let (encoder, head) = shipped_model();
    format!(
        "[sentiment]\nenabled = true\nencoder = \"{}\"\nhead = \"{}\"\nbatch_wait = \"20ms\"\n{keys}\n\n\
         [[rules]]\non = \"ticket.*\"\nrun = [\"sentiment\"]\n\n\
         [[rules]]\non = \"comment.created\"\nrun = [\"sentiment\"]\n\n{extra}",
        encoder.display(),
        head.display(),
    )
}

#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// A webhook receiver on a free port; answers 503 to the first `fail_first`
/// requests (to exercise retries), then 200.
pub(crate) async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    type Log = (Arc<Mutex<Vec<Received>>>, Arc<Mutex<usize>>, usize);
    async fn hook(State((log, seen, fail_first)): State<Log>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let mut n = seen.lock().unwrap();
        *n += 1;
        if *n <= fail_first {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        log.lock().unwrap().push(Received { headers, body });
        StatusCode::OK
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state((log.clone(), Arc::new(Mutex::new(0)), fail_first));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), log)
}

pub(crate) fn webhook_config(url: &str) -> String {
    // nextest runs each test in its own process, so this does not leak into others.
    std::env::set_var(SECRET_ENV, SECRET);
    format!("[webhooks.tenant-a]\nurl = \"{url}\"\nsecret_env = \"{SECRET_ENV}\"\n\n[jobs.webhook]\nbackoff_initial = \"100ms\"\nbackoff_max = \"200ms\"\nmax_attempts = 5\n")
}

/// Checks the signature as a receiver would, with its own HMAC code.
pub(crate) fn verify(r: &Received) -> Value {
    let ts = r.headers["x-kairos-timestamp"].to_str().unwrap();
    let sig = r.headers["x-kairos-signature"].to_str().unwrap();
    let age = kairos_core::time::now_ms() / 1000 - ts.parse::<i64>().unwrap();
    assert!((0..300).contains(&age), "stale or future timestamp {ts}");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(sig, expected, "signature does not verify");
    assert!(r.headers.contains_key("x-kairos-delivery"));
    serde_json::from_slice(&r.body).unwrap()
}

pub(crate) const NEGATIVE_ES: &str = "Estoy muy molesto: el sistema no funciona desde ayer, estamos bloqueados y nadie responde. ¡Es urgente, esto es inaceptable!";
const NEGATIVE_EN: &str =
    "This is terrible. The app is broken again, it is blocking my whole team and support never answers. Awful service.";
const POSITIVE_ES: &str =
    "¡Muchas gracias! El equipo de soporte fue excelente y ahora todo funciona perfecto. Estamos muy contentos.";
const POSITIVE_EN: &str = "Thank you so much, the new dashboard is great and works perfectly. Excellent support!";

async fn upset_customers_are_alerted(deployment: Deployment) {
    let (url, received) = receiver(1).await;
    let app = spawn_app(
        deployment,
        &sentiment_config_with("follow_up = [\"probe\"]", &webhook_config(&url)),
    )
    .await;
    let events = json!([
        event("t-es-neg", "ticket.created", "acct-es", json!({"text": NEGATIVE_ES})),
        event("t-en-neg", "ticket.created", "acct-en", json!({"text": NEGATIVE_EN})),
        event("c-es-pos", "comment.created", "acct-es2", json!({"body": POSITIVE_ES})),
        event("c-en-pos", "ticket.comment", "acct-en2", json!({"text": POSITIVE_EN})),
    ]);
    let (status, body) = app.post_events(&events).await;
    assert_eq!(status, 202, "{body}");
    let ids = job_ids(&body);
    // activity is not configured here: one sentiment job per event.
    assert_eq!(ids.len(), 4, "{body}");
    let jobs = app.wait_settled(&ids, Duration::from_secs(60)).await;
    for j in &jobs {
        assert_eq!(j.state, kairos_core::store::JobState::Succeeded, "{j:?}");
    }

    // Stored scores: label, confidence, language, model version.
    for (account, label, lang) in [
        ("acct-es", "negative", "es"),
        ("acct-en", "negative", "en"),
        ("acct-es2", "positive", "es"),
        ("acct-en2", "positive", "en"),
    ] {
        let (status, s) = app
            .get(&format!("/v1/accounts/{account}/sentiment"), Some(&app.key))
            .await;
        assert_eq!(status, 200, "{s}");
        let latest = &s["recent"][0];
        assert_eq!(latest["label"], label, "{account}: {s}");
        assert_eq!(latest["language"], lang, "{account}: {s}");
        assert_eq!(latest["model_version"], shipped_version().as_str());
        if label == "negative" {
            assert!(latest["score"].as_f64().unwrap() >= 0.75, "{account}: {s}");
            assert!(latest["urgency"].as_i64().unwrap() >= 70, "{account}: {s}");
            assert!(s["rolling"]["polarity"].as_f64().unwrap() < 0.0, "{s}");
        } else {
            assert!(latest["urgency"].as_i64().unwrap() < 30, "{account}: {s}");
        }
    }

    // Exactly the two negative tickets raised alerts, with event and urgency.
    let (status, alerts) = app.get("/v1/alerts?kind=client_dissatisfaction", Some(&app.key)).await;
    assert_eq!(status, 200, "{alerts}");
    let alerts = alerts.as_array().unwrap().clone();
    let mut events: Vec<&str> = alerts.iter().map(|a| a["event_id"].as_str().unwrap()).collect();
    events.sort();
    assert_eq!(events, ["t-en-neg", "t-es-neg"], "{alerts:?}");
    let (_, urgent) = app.get("/v1/alerts?min_urgency=101", Some(&app.key)).await;
    assert_eq!(urgent["field"], "min_urgency", "{urgent}");
    let max = alerts.iter().map(|a| a["urgency"].as_i64().unwrap()).max().unwrap();
    let (_, top) = app.get(&format!("/v1/alerts?min_urgency={max}"), Some(&app.key)).await;
    let top = top.as_array().unwrap();
    assert!(
        !top.is_empty() && top.iter().all(|a| a["urgency"].as_i64().unwrap() >= max),
        "{top:?}"
    );
    if max < 100 {
        let (_, none) = app
            .get(&format!("/v1/alerts?min_urgency={}", max + 1), Some(&app.key))
            .await;
        assert_eq!(none.as_array().unwrap().len(), 0, "{none}");
    }

    // One signed webhook per alert (the first attempt got a 503 and was retried).
    assert!(
        wait_for(Duration::from_secs(30), || async {
            received.lock().unwrap().len() >= 2
        })
        .await,
        "webhooks not received: {:?}",
        received.lock().unwrap().len()
    );
    let got: Vec<Value> = received.lock().unwrap().iter().map(verify).collect();
    let mut hooked: Vec<&str> = got.iter().map(|b| b["event_id"].as_str().unwrap()).collect();
    hooked.sort();
    assert_eq!(hooked, ["t-en-neg", "t-es-neg"]);
    for b in &got {
        assert_eq!(b["kind"], "client_dissatisfaction");
        assert_eq!(b["tenant_id"], app.tenant_id.as_str());
        assert!(b["urgency"].as_i64().unwrap() >= 70, "{b}");
        assert!(b["details"]["text"].as_str().unwrap().len() > 20, "{b}");
    }
    // The follow-up kind got one job per alert, with the alert as payload.
    let follow_ups = app
        .store
        .jobs(&kairos_core::store::JobFilter {
            kind: Some("probe".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(follow_ups.len(), 2, "{follow_ups:?}");
    for j in &follow_ups {
        let p: Value = serde_json::from_str(&j.payload).unwrap();
        assert_eq!(p["kind"], "client_dissatisfaction", "{p}");
    }
    // No duplicate deliveries once everything settled.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received.lock().unwrap().len(), 2);

    // Tenants see only their own scores and alerts.
    let other = app.store.create_tenant("tenant-b", None).await.unwrap();
    let (status, _) = app.get("/v1/accounts/acct-es/sentiment", Some(&other.secret)).await;
    assert_eq!(status, 404);
    let (status, theirs) = app.get("/v1/alerts", Some(&other.secret)).await;
    assert_eq!(status, 200);
    assert_eq!(theirs.as_array().unwrap().len(), 0, "{theirs}");
    let (status, _) = app.get("/v1/accounts/acct-es/sentiment", None).await;
    assert_eq!(status, 401);
    let (_, spec) = app.get("/openapi.json", None).await;
    assert!(
        spec["paths"]["/v1/accounts/{id}/sentiment"]["get"].is_object(),
        "sentiment path in the spec"
    );
    let params = spec["paths"]["/v1/alerts"]["get"]["parameters"].to_string();
    assert!(params.contains("min_urgency"), "{params}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_upset_customers_in_spanish_and_english_are_alerted_with_signed_webhooks() {
    upset_customers_are_alerted(Deployment::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_upset_customers_in_spanish_and_english_are_alerted_with_signed_webhooks() {
    upset_customers_are_alerted(Deployment::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_without_text_is_skipped_and_a_text_too_long_fails_alone_and_clearly() {
    let app = spawn_app(Deployment::Embedded, &sentiment_config_with("max_text_chars = 50", "")).await;
    let (_, body) = app
        .post_events(&json!([
            event(
                "ok-1",
                "comment.created",
                "a1",
                json!({"text": "Todo perfecto, gracias"})
            ),
            event("no-text", "comment.created", "a2", json!({"rating": 3})),
            event("too-long", "comment.created", "a3", json!({"text": "x".repeat(51)})),
            event(
                "ok-2",
                "comment.created",
                "a4",
                json!({"text": "Broken again. Refund now."})
            ),
        ]))
        .await;
    let ids = job_ids(&body);
    let jobs = app.wait_settled(&ids, Duration::from_secs(60)).await;
    let by_event = |e: &str| jobs.iter().find(|j| j.event_id.as_deref() == Some(e)).unwrap();
    assert_eq!(by_event("ok-1").state, kairos_core::store::JobState::Succeeded);
    assert_eq!(by_event("ok-2").state, kairos_core::store::JobState::Succeeded);
    // No text: succeeded as skipped (no dead letter, no score).
    let skipped = by_event("no-text");
    assert_eq!(skipped.state, kairos_core::store::JobState::Succeeded);
    let result = skipped.result_ref.clone().unwrap_or_default();
    assert!(
        result.starts_with("skipped: no text") && result.contains("data.text"),
        "{result}"
    );
    let scored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sentiment_scores")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(scored, 2, "only the two texts are scored");
    // Too long: a permanent, clear error, without retries, and alone.
    let bad = by_event("too-long");
    assert_eq!(
        bad.state,
        kairos_core::store::JobState::Dead,
        "no retries for bad input"
    );
    assert_eq!(bad.attempts, 1);
    let err = bad.last_error.clone().unwrap_or_default();
    assert!(err.contains("51 characters") && err.contains("max_text_chars"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trained_head_registered_with_activate_is_used_by_the_next_job() {
    let env = Env::new(Deployment::Embedded).await;
    let config = env.config_file(&sentiment_config(""));
    // A small bilingual fixture (tests/fixtures/sentiment-small.jsonl).
    let data = repo("tests/fixtures/sentiment-small.jsonl");
    let (ok, out, err) = run_cli(
        &config,
        &["train", "sentiment", "--data", data.to_str().unwrap(), "--activate"],
    )
    .await;
    assert!(ok, "train failed: {out}\n{err}");
    assert!(out.contains("held-out"), "metrics are reported: {out}");
    let version = out
        .lines()
        .find_map(|l| l.strip_prefix("registered sentiment head "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no version in: {out}"))
        .to_owned();
    let (ok, list, _) = run_cli(&config, &["models", "list"]).await;
    assert!(ok && list.contains(&version) && list.contains("global"), "{list}");

    // The next job (in a worker started afterwards, which also registers the
    // shipped default head but must not displace the active one) uses it.
    let rt = kairos::Runtime::open(env.config(&sentiment_config(""))).await.unwrap();
    let store = rt.store.clone();
    let key = store.create_tenant("t-train", None).await.unwrap();
    let running = kairos::start(rt, kairos::Roles::ALL).await.unwrap();
    let score = score_one_comment(&running, &store, &key).await;
    assert_eq!(score.model_version, version);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_calibrated_on_texts_kept_apart_uses_the_method_that_cross_fits_best() {
    let env = Env::new(Deployment::Embedded).await;
    let config = env.config_file(&sentiment_config(""));
    let data = repo("tests/fixtures/sentiment-small.jsonl");
    let calibration = repo("tests/fixtures/sentiment-calibration-small.jsonl");
    let out_file = env.dir.path().join("calibrated-head.json");
    let (ok, out, err) = run_cli(
        &config,
        &[
            "train",
            "sentiment",
            "--data",
            data.to_str().unwrap(),
            "--calibration-data",
            calibration.to_str().unwrap(),
            "--out",
            out_file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "train failed: {out}\n{err}");
    // The three methods' cross-fitted log-loss is printed; the artifact carries the best one (or no map).
    let means: Vec<(String, f64)> = err
        .lines()
        .filter(|l| l.contains("; mean "))
        .map(|l| {
            let method = l.split_whitespace().next().unwrap().to_string();
            let mean: f64 = l.rsplit("; mean ").next().unwrap().trim().parse().unwrap();
            (method, mean)
        })
        .collect();
    assert_eq!(means.len(), 3, "none, temperature, temperature + bias: {err}");
    let best = means.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0.clone();
    let head = kairos_models::text::SentimentHead::load(&out_file).unwrap();
    match head.calibration() {
        None => assert_eq!(best, "none", "{err}"),
        Some(c) => {
            assert_eq!(format!("{:?}", c.method), best, "{err}");
            assert!(
                c.fitted_on.contains("sentiment-calibration-small") && c.fitted_on.contains("24 examples"),
                "{}",
                c.fitted_on
            );
        }
    }
    let (ok, list, _) = run_cli(&config, &["models", "list"]).await;
    assert!(ok && list.contains(head.version()), "registered: {list}");

    // A calibration set that shares texts with the training data is refused, and nothing is registered.
    let (ok, out, err) = run_cli(
        &config,
        &[
            "train",
            "sentiment",
            "--data",
            data.to_str().unwrap(),
            "--calibration-data",
            data.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!ok, "must refuse: {out}");
    assert!(err.contains("48 calibration texts are also training texts"), "{err}");
    assert!(!out.contains("registered sentiment head"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_model_or_head_path_stops_the_worker_at_start_naming_the_path() {
    let env = Env::new(Deployment::Embedded).await;
    let missing = "/nonexistent/kairos-models/encoder";
    let config = env.config_file(&format!("[sentiment]\nenabled = true\nencoder = \"{missing}\"\n"));
    let (ok, _, err) = run_cli(&config, &["worker"]).await;
    assert!(!ok, "must not start");
    assert!(err.contains(missing) && err.contains("scripts/fetch-models"), "{err}");

    let bad_head = "/nonexistent/head.json";
    let config = env.config_file(&format!(
        "[sentiment]\nenabled = true\nencoder = \"{}\"\nhead = \"{bad_head}\"\n",
        model_dir().display()
    ));
    let (ok, _, err) = run_cli(&config, &["serve"]).await;
    assert!(!ok, "must not start");
    assert!(err.contains(bad_head), "{err}");

    // And a rule naming the kind while it is disabled is a config error.
    let config = env.config_file("[[rules]]\non = \"ticket.*\"\nrun = [\"sentiment\"]\n");
    let (ok, _, err) = run_cli(&config, &["check-config"]).await;
    assert!(
        !ok && err.contains("rules[0].run[0]") && err.contains("[sentiment]"),
        "{err}"
    );
}

#[test]
fn the_shipped_config_files_are_valid() {
    for file in ["config/default.toml", "config/distributed.example.toml"] {
        let config = kairos::Config::load(&repo(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(config.sentiment.enabled, "{file}: sentiment is on");
        let head = config.sentiment.head.expect("a default head");
        assert!(
            repo(head.to_str().unwrap()).is_file(),
            "{file}: {} is in the repo",
            head.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_text_is_scored_in_chunks_and_its_angry_ending_raises_the_alert() {
    let app = spawn_app(Deployment::Embedded, &sentiment_config("")).await;
    // ~330 words of praise (well past the encoder's 256-token window), then the complaint that truncation
    // used to cut off.
    let praise = [
        "I have used this product for two years and it has been wonderful for our whole team.",
        "The onboarding was smooth, the documentation is clear and the support staff were friendly.",
        "Every release brought features we actually needed, and the dashboards look great.",
        "Our managers love the weekly summaries and the mobile app is fast and pleasant to use.",
        "Honestly it is one of the best tools we pay for, and I recommended it to three other companies.",
    ]
    .join(" ");
    let complaint = "UPDATE: since yesterday the whole system is broken, nothing works, support ignores my \
                     tickets and I want a full refund. This is unacceptable and I am furious.";
    let text = format!("{} {complaint}", [praise.as_str(); 4].join(" "));
    assert!(text.split_whitespace().count() > 300);
    let (status, body) = app
        .post_events(&json!([event(
            "long-1",
            "comment.created",
            "acct-long",
            json!({"text": text})
        )]))
        .await;
    assert_eq!(status, 202, "{body}");
    let jobs = app.wait_settled(&job_ids(&body), Duration::from_secs(90)).await;
    assert_eq!(
        jobs[0].state,
        kairos_core::store::JobState::Succeeded,
        "{:?}",
        jobs[0].last_error
    );
    let (chunks, label): (i64, String) =
        sqlx::query_as("SELECT chunks, label FROM sentiment_scores WHERE event_id = 'long-1'")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert!(chunks >= 3, "scored in {chunks} chunk(s)");
    let reason: String = sqlx::query_scalar("SELECT reason FROM alerts WHERE account_id = 'acct-long'")
        .fetch_one(app.store.pool())
        .await
        .unwrap_or_else(|e| panic!("no alert for the angry ending (stored label {label}): {e}"));
    assert!(reason.contains("most negative part"), "{reason}");
}

/// Posts one English complaint as `comment.created` event "e1" and returns
/// its stored score once the job succeeded.
async fn score_one_comment(
    running: &kairos::Running,
    store: &kairos_core::Store,
    key: &kairos_core::store::ApiKey,
) -> kairos_jobs::sentiment::scores::ScoreRow {
    score_comment(running, store, key, "e1").await
}

/// Posts a complaint as event `event_id` and returns its stored score.
async fn score_comment(
    running: &kairos::Running,
    store: &kairos_core::Store,
    key: &kairos_core::store::ApiKey,
    event_id: &str,
) -> kairos_jobs::sentiment::scores::ScoreRow {
    let base = format!("http://{}", running.addr.unwrap());
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(&key.secret)
        .json(&event(event_id, "comment.created", "a1", json!({"text": NEGATIVE_EN})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let ids = job_ids(&resp.json().await.unwrap());
    let jobs = wait_settled(store, &ids, Duration::from_secs(60)).await;
    assert_eq!(jobs[0].state, kairos_core::store::JobState::Succeeded, "{:?}", jobs[0]);
    kairos_jobs::sentiment::scores::for_event(store, &key.tenant.id, event_id)
        .await
        .unwrap()
        .expect("scored")
}

/// Every sentiment head version in the registry.
async fn registered_versions(store: &kairos_core::Store) -> Vec<String> {
    kairos_jobs::sentiment::registry::list(store)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.version)
        .collect()
}

/// Registers `head` and makes it active (for `tenant`, or globally): what a
/// store upgraded from an earlier release has.
async fn register_active(store: &kairos_core::Store, head: &kairos_models::text::SentimentHead, tenant: Option<&str>) {
    kairos_jobs::sentiment::registry::register(store, head, tenant, "test")
        .await
        .unwrap();
    kairos_jobs::sentiment::registry::activate(store, head.version(), tenant)
        .await
        .unwrap();
}

/// The head shipped before the adapted encoder (plain int8 e5): what a store
/// upgraded from then still has active.
fn head_of_another_encoder() -> kairos_models::text::SentimentHead {
    let old = kairos_models::text::SentimentHead::load(&repo("models/heads/sentiment-e5-int8-support-2.json")).unwrap();
    let shipped = kairos_models::text::SentimentHead::load(&shipped_model().1).unwrap();
    assert!(
        old.check_encoder(shipped.encoder()).is_err(),
        "the test needs a head of another encoder"
    );
    old
}

/// An upgrade that ships a new encoder with its head: the global head still
/// active from before (trained on the previous encoder) cannot score with the
/// new one, so the worker activates the configured head at start instead of
/// failing every job; the old head stays registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_head_of_another_encoder_gives_way_to_the_configured_one() {
    let env = Env::new(Deployment::Embedded).await;
    let rt = kairos::Runtime::open(env.config(&sentiment_config(""))).await.unwrap();
    let store = rt.store.clone();
    let old = head_of_another_encoder();
    register_active(&store, &old, None).await;

    let key = store.create_tenant("t-upgrade", None).await.unwrap();
    let running = kairos::start(rt, kairos::Roles::ALL).await.unwrap();
    let active = kairos_jobs::sentiment::registry::active_version(&store, "")
        .await
        .unwrap();
    assert_eq!(active.as_deref(), Some(shipped_version().as_str()));
    let score = score_one_comment(&running, &store, &key).await;
    assert_eq!(score.model_version, shipped_version());
    let versions = registered_versions(&store).await;
    assert!(
        versions.contains(&old.version().to_owned()),
        "the old head stays registered: {versions:?}"
    );
    running.shutdown().await;
}

/// An upgrade that ships new maps for the same encoder (a new head version):
/// the head already active stays active — an admin may have chosen it — the
/// configured one is registered beside it, and activating it switches the
/// scores to it without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_configured_head_of_the_same_encoder_is_registered_and_left_to_activate() {
    let env = Env::new(Deployment::Embedded).await;
    let rt = kairos::Runtime::open(env.config(&sentiment_config(""))).await.unwrap();
    let store = rt.store.clone();
    // A head shipped before the maps were re-fitted: same encoder, same
    // weights, another version (as lora-6 and lora-6-maps-2 were).
    let shipped = kairos_models::text::SentimentHead::load(&shipped_model().1).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&shipped.to_json().unwrap()).unwrap();
    json["version"] = serde_json::json!("sentiment-previous-maps");
    let previous = kairos_models::text::SentimentHead::from_json(&json.to_string()).unwrap();
    assert!(previous.check_encoder(shipped.encoder()).is_ok() && previous.version() != shipped.version());
    register_active(&store, &previous, None).await;

    let key = store.create_tenant("t-maps", None).await.unwrap();
    let running = kairos::start(rt, kairos::Roles::ALL).await.unwrap();
    let score = score_one_comment(&running, &store, &key).await;
    assert_eq!(score.model_version, previous.version(), "the active head stays active");
    let versions = registered_versions(&store).await;
    assert!(versions.contains(&shipped_version()), "registered: {versions:?}");
    kairos_jobs::sentiment::registry::activate(&store, &shipped_version(), None)
        .await
        .unwrap();
    // Workers see an activation within `model_refresh`: each try is a new event.
    let tries = std::sync::atomic::AtomicUsize::new(0);
    assert!(
        wait_for(Duration::from_secs(30), || async {
            let n = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            score_comment(&running, &store, &key, &format!("after-{n}"))
                .await
                .model_version
                == shipped_version()
        })
        .await,
        "scores never switched to the activated head"
    );
    running.shutdown().await;
}

/// The same upgrade for a tenant that trained its own head: that head cannot
/// score with the new encoder, so the tenant's texts are scored by the global
/// head (the stored score says which) instead of dead-lettering every job,
/// and the tenant's head stays active for it until retrained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_head_of_another_encoder_gives_way_to_the_global_head() {
    let env = Env::new(Deployment::Embedded).await;
    let rt = kairos::Runtime::open(env.config(&sentiment_config(""))).await.unwrap();
    let store = rt.store.clone();
    let old = head_of_another_encoder();
    let key = store.create_tenant("t-own-head", None).await.unwrap();
    let tenant = key.tenant.id.as_str();
    register_active(&store, &old, Some(tenant)).await;

    let running = kairos::start(rt, kairos::Roles::ALL).await.unwrap();
    let score = score_one_comment(&running, &store, &key).await;
    assert_eq!(score.model_version, shipped_version());
    assert_eq!(score.label, "negative", "{score:?}");
    let active = kairos_jobs::sentiment::registry::active_version(&store, tenant)
        .await
        .unwrap();
    assert_eq!(
        active.as_deref(),
        Some(old.version()),
        "the tenant's own head stays active (retraining replaces it)"
    );
    running.shutdown().await;
}
