//! The churn part of `kairos demo`: a synthetic event history with a known
//! churn process, a model trained from the store at a cutoff, and a daily
//! scoring run over every account, summarised in a table.
//!
//! The history is imported straight into the store (as a backfill would:
//! events recorded, no jobs triggered), because it describes the past; the
//! demo's live events still go through the HTTP API. Accounts and their
//! churn come from `kairos_models::churn::synthetic` (documented ground
//! truth); [`history_events`] turns each account's features into the events
//! that reproduce them, so training from the store recovers the process.

use std::time::{Duration, Instant};

use crate::Config;
use anyhow::Context;
use kairos_core::store::{StoredEvent, Tenant};
use kairos_core::{Event, Store};
use kairos_jobs::churn::features::{self, DAY_MS};
use kairos_jobs::churn::scores::{self, ScoreRow};
use kairos_models::churn::synthetic::{self, SyntheticAccount, SyntheticConfig};
use kairos_models::churn::ChurnModel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use crate::Runtime;

/// Past (labelled) accounts generated per tenant for training.
pub const PAST_ACCOUNTS: usize = 500;
/// The label horizon, and how far back the training cutoff is.
pub const HORIZON_MS: i64 = 30 * DAY_MS;

/// What [`prepare`] did, for the summary.
pub struct Prepared {
    /// The trained, active model.
    pub model: ChurnModel,
    /// Events imported.
    pub events: usize,
    /// Accounts given a history.
    pub accounts: usize,
    /// Seconds spent importing.
    pub import_s: f64,
    /// Seconds spent training.
    pub train_s: f64,
    /// The training cutoff.
    pub cutoff_ms: i64,
}

fn event(id: String, kind: &str, account: &str, at: i64, data: Value) -> Event {
    let data = match data {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Event {
        id,
        event_type: kind.into(),
        account_id: account.into(),
        user_id: Some(format!("{account}-u1")),
        occurred_at_ms: at,
        data,
    }
}

/// Events (before `cutoff_ms`) that reproduce `a`'s features as of the
/// cutoff, plus, when `emit_outcome`, what happens after it: an
/// `account.churned` within the horizon for churners, a couple of logins
/// for the others.
pub fn history_events(
    a: &SyntheticAccount,
    account: &str,
    prefix: &str,
    cutoff_ms: i64,
    emit_outcome: bool,
    rng: &mut StdRng,
) -> Vec<Event> {
    let f = &a.features;
    let mut out = Vec::new();
    let mut push = |kind: &str, at: i64, data: Value| {
        let id = format!("{prefix}-{account}-{}", out.len());
        out.push(event(id, kind, account, at, data));
    };
    let day = |d: f64| (d * DAY_MS as f64) as i64;
    let within = |rng: &mut StdRng, days: f64| cutoff_ms - 1 - rng.random_range(0..day(days).max(1));
    let n = |v: Option<f64>| v.unwrap_or(0.0).max(0.0) as usize;
    let age = f.account_age_days.unwrap_or(365.0);
    push("account.created", cutoff_ms - day(age), json!({}));
    if let Some(ds) = f.days_since_last_login {
        let logins = n(f.logins_30d);
        if logins > 0 && ds < 30.0 {
            push("user.logged_in", cutoff_ms - day(ds) - 1, json!({}));
            for _ in 1..logins {
                let at = cutoff_ms - day(ds) - 1 - rng.random_range(0..day(30.0 - ds).max(1));
                push("user.logged_in", at, json!({}));
            }
        } else {
            push("user.logged_in", cutoff_ms - day(ds.max(31.0)), json!({}));
        }
    }
    for (kind, v, days) in [
        ("ticket.created", f.tickets_30d, 30.0),
        ("comment.created", f.comments_30d, 30.0),
        ("ticket.escalated", f.support_escalations, 30.0),
        ("project.delayed", f.project_delays, 90.0),
        ("deadline.missed", f.missed_deadlines, 30.0),
        ("budget.overrun", f.budget_overruns, 90.0),
        ("payment.failed", f.payment_delays, 90.0),
    ] {
        for _ in 0..n(v) {
            let at = within(rng, days);
            push(kind, at, json!({}));
        }
    }
    if let Some(dslp) = f.days_since_last_payment {
        let total = f.total_spent.unwrap_or(0.0);
        let payments = ((age - dslp) / 30.0).clamp(1.0, 3.0) as i64;
        for k in 0..payments {
            let at = cutoff_ms - day(dslp) - k * 30 * DAY_MS - 1;
            push(
                "payment.succeeded",
                at,
                json!({ "amount": (total / payments as f64).round(), "currency": "EUR" }),
            );
        }
    }
    if let Some(dtr) = f.days_to_renewal {
        let renews_at = cutoff_ms + day(dtr);
        let at = cutoff_ms - day((365.0 - dtr).min(age - 1.0).max(1.0));
        let renews = kairos_core::time::to_rfc3339(renews_at);
        push("subscription.renewed", at, json!({ "renews_at": renews }));
    }
    if emit_outcome {
        if a.churned {
            let at = cutoff_ms + rng.random_range(DAY_MS..HORIZON_MS - DAY_MS);
            push("account.churned", at, json!({ "reason": "synthetic" }));
        } else {
            for _ in 0..2 {
                let at = cutoff_ms + rng.random_range(0..HORIZON_MS - DAY_MS);
                push("user.logged_in", at, json!({}));
            }
        }
    }
    out
}

async fn import(store: &Store, tenant_id: &str, events: Vec<Event>) -> anyhow::Result<()> {
    let batch: Vec<StoredEvent> = events
        .into_iter()
        .map(|event| StoredEvent {
            event,
            jobs: Vec::new(),
        })
        .collect();
    for chunk in batch.chunks(1000) {
        store.ingest(tenant_id, chunk).await?;
    }
    Ok(())
}

/// Imports the history (past accounts with outcomes, and the live
/// `acct-NNN` accounts' pasts), trains a global model at `now − 30 d` from
/// the store and activates it. Runs before the live events are posted, so
/// the `payment.failed → churn_score` rule finds a model.
pub async fn prepare(store: &Store, tenants: &[Tenant], live_accounts: usize, nonce: i64) -> anyhow::Result<Prepared> {
    let started = Instant::now();
    let now = kairos_core::time::now_ms();
    let cutoff_ms = now - HORIZON_MS;
    let mut rng = StdRng::seed_from_u64(nonce as u64);
    let (mut events, mut accounts) = (0, 0);
    for (i, t) in tenants.iter().enumerate() {
        let past = synthetic::generate(&SyntheticConfig {
            accounts: PAST_ACCOUNTS + live_accounts,
            seed: nonce as u64 + i as u64,
            missing_rate: 0.0,
        })?;
        let mut batch = Vec::new();
        for (k, a) in past[..PAST_ACCOUNTS].iter().enumerate() {
            let account = format!("past-{}-{k:04}", nonce % 1_000_000);
            batch.extend(history_events(a, &account, "hist", cutoff_ms, true, &mut rng));
            accounts += 1;
        }
        // The live accounts' own past, once (a re-run of the demo keeps it).
        let live: Vec<String> = (0..live_accounts).map(|k| format!("acct-{k:03}")).collect();
        let known = features::account_features(store, &t.id, &live, now).await?;
        for ((a, account), f) in past[PAST_ACCOUNTS..].iter().zip(&live).zip(&known) {
            if f.account_age_days.is_none() {
                batch.extend(history_events(
                    a,
                    account,
                    &format!("hist-{nonce}"),
                    now,
                    false,
                    &mut rng,
                ));
                accounts += 1;
            }
        }
        events += batch.len();
        import(store, &t.id, batch).await?;
    }
    let import_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let model = crate::cli::train::churn::train_from_store(store, None, cutoff_ms, HORIZON_MS, 42, true, false)
        .await
        .context("training the demo churn model")?;
    Ok(Prepared {
        model,
        events,
        accounts,
        import_s,
        train_s: started.elapsed().as_secs_f64(),
        cutoff_ms,
    })
}

/// Fires the daily churn schedule now (adding it to the config if the file
/// has none), waits until every live account of every tenant has a fresh
/// score, and prints the summary.
pub async fn score_and_report(
    rt: &Runtime,
    config: &Config,
    tenants: &[Tenant],
    prepared: &Prepared,
) -> anyhow::Result<()> {
    let mut config = config.clone();
    if !config.schedules.iter().any(|s| s.name == "daily-churn") {
        config.schedules.push(
            serde_json::from_value(json!({
                "name": "daily-churn", "cron": "0 9 * * *", "job": "churn_score",
                "fan_out": "per_account", "chunk_size": 500
            }))
            .context("building the daily-churn schedule")?,
        );
    }
    let firer = kairos_scheduler::Firer {
        store: rt.store.clone(),
        queue: rt.queue.clone(),
        replica: "demo".into(),
    };
    let started = Instant::now();
    let t0 = kairos_core::time::now_ms();
    kairos_scheduler::run_now(&firer, &config.scheduling(), "daily-churn").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut latest: Vec<(String, Vec<ScoreRow>)> = Vec::new();
    loop {
        latest.clear();
        let mut done = true;
        for t in tenants {
            let expected = rt.store.account_ids(&t.id).await?.len();
            let rows: Vec<ScoreRow> = scores::latest(&rt.store, &t.id)
                .await?
                .into_iter()
                .filter(|s| s.trigger_kind == "schedule" && s.scored_at >= t0)
                .collect();
            done &= rows.len() >= expected;
            latest.push((t.name.clone(), rows));
        }
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scored: usize = latest.iter().map(|(_, r)| r.len()).sum();
    let m = prepared.model.metrics();
    println!("\nChurn prediction");
    println!(
        "  history: {} events for {} accounts imported in {:.1} s (synthetic, known churn process; past accounts churn after the cutoff {})",
        prepared.events,
        prepared.accounts,
        prepared.import_s,
        kairos_core::time::to_rfc3339(prepared.cutoff_ms)
    );
    println!(
        "  model:   {} trained from the store in {:.1} s on {} accounts; held-out AUC {:.3} ({} test rows, {} churned), Brier {:.3}; active",
        prepared.model.version(),
        prepared.train_s,
        prepared.model.training().rows,
        m.auc,
        m.rows,
        m.positives,
        m.brier
    );
    println!(
        "  scoring: daily-churn fired now; {scored} accounts scored in {:.0} ms (every account, chunks of 500 per job)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    for (name, rows) in &mut latest {
        let count = |l: &str| rows.iter().filter(|r| r.risk_level == l).count();
        println!(
            "\n  {name}: CRITICAL {} · HIGH {} · MEDIUM {} · LOW {}",
            count("CRITICAL"),
            count("HIGH"),
            count("MEDIUM"),
            count("LOW")
        );
        rows.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        for r in rows.iter().take(3) {
            println!(
                "    {:<10} {:>5.1}%  {}",
                r.account_id,
                r.probability * 100.0,
                r.risk_level
            );
            for f in r.factors.as_array().into_iter().flatten().take(3) {
                println!("        · {}", f["description"].as_str().unwrap_or_default());
            }
            let actions: Vec<String> = r
                .actions
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    format!(
                        "{} ({})",
                        a["action"].as_str().unwrap_or_default(),
                        a["priority"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            if !actions.is_empty() {
                println!("        → {}", actions.join(", "));
            }
        }
    }
    Ok(())
}
