//! The demo's nudges: an inactive account and an upset customer get nudged
//! in-app, one delayed by quiet hours (its person lives where it is night
//! now), one skipped by the person cap (a second rule fires for the same
//! person), and the history says why each went the way it did.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Timelike;
use kairos_core::enqueue::{enqueue_recorded, insert_jobs, NewJob};
use kairos_core::store::Tenant;
use serde_json::{json, Value};

use crate::{Config, Runtime};

/// Zones without daylight saving, spread round the clock (no gap over
/// 5 hours), with their UTC offset in minutes.
const ZONES: &[(&str, i64)] = &[
    ("Pacific/Honolulu", -600),
    ("America/Bogota", -300),
    ("America/Sao_Paulo", -180),
    ("Africa/Lagos", 60),
    ("Asia/Dubai", 240),
    ("Asia/Kolkata", 330),
    ("Asia/Tokyo", 540),
    ("Pacific/Tarawa", 720),
];

const QUIET: (i64, i64) = (21 * 60, 8 * 60);

/// The demo's `[nudges]`, unless the config has nudge rules of its own.
pub fn configure(config: &mut Config) -> anyhow::Result<()> {
    if !config.nudges.rules.is_empty() {
        return Ok(());
    }
    let text = |subject_en: &str, body_en: &str, subject_es: &str, body_es: &str| json!({"en": {"subject": subject_en, "body": body_en}, "es": {"subject": subject_es, "body": body_es}});
    let nudges = json!({
        "quiet_hours": {"start": "21:00", "end": "08:00"},
        "person_caps": [{"max": 1, "per": "3d"}],
        "rules": [
            {
                "name": "inactive-account",
                "trigger": {"inactive_days": 30},
                "channels": ["in_app"],
                "templates": text(
                    "We miss you at {{account.display_name}}",
                    "{{person.name}}, your team has not been around for a while. Here is what is new.",
                    "Te echamos de menos en {{account.display_name}}",
                    "{{person.name}}, tu equipo lleva tiempo sin entrar. Esto es lo nuevo."),
            },
            {
                "name": "upset-customer",
                "trigger": {"event": "ticket.created", "filter": {"mood": "upset"}},
                "audience": {"roles": ["executive"]},
                "channels": ["in_app"],
                "priority": 10,
                "templates": text(
                    "We are on it, {{person.name}}",
                    "Your ticket \"{{event.data.subject}}\" is with a senior engineer now.",
                    "Nos ocupamos, {{person.name}}",
                    "Tu ticket \"{{event.data.subject}}\" ya lo tiene un ingeniero sénior."),
            },
            {
                "name": "nps-detractor",
                "trigger": {"event": "survey.answered", "filter": {"detractor": true}},
                "channels": ["in_app"],
                "templates": text(
                    "Thanks for the honest score",
                    "Tell us the one thing we should fix first.",
                    "Gracias por tu nota sincera",
                    "Dinos qué deberíamos arreglar primero."),
            },
        ],
    });
    config.nudges = serde_json::from_value(nudges).context("the demo's nudge rules")?;
    config
        .nudges
        .validate()
        .map_err(|(k, m)| anyhow::anyhow!("the demo's nudges.{k}: {m}"))?;
    Ok(())
}

/// A zone where it is quiet hours now (`true`) or not.
fn zone(quiet: bool) -> &'static str {
    let now = chrono::Utc::now();
    let utc = i64::from(now.hour() * 60 + now.minute());
    ZONES
        .iter()
        .find(|(_, off)| {
            let local = (utc + off).rem_euclid(24 * 60);
            let in_quiet = local >= QUIET.0 || local < QUIET.1;
            in_quiet == quiet
        })
        .map_or("UTC", |(z, _)| *z)
}

async fn put(http: &reqwest::Client, url: String, key: &str, body: Value) -> anyhow::Result<()> {
    let r = http.put(&url).bearer_auth(key).json(&body).send().await?;
    anyhow::ensure!(r.status().is_success(), "PUT {url}: {}", r.status());
    Ok(())
}

async fn history(http: &reqwest::Client, base: &str, key: &str, account: &str) -> anyhow::Result<Vec<Value>> {
    let h: Value = http
        .get(format!("{base}/v1/accounts/{account}/nudges"))
        .bearer_auth(key)
        .send()
        .await?
        .json()
        .await?;
    Ok(h["nudges"].as_array().cloned().unwrap_or_default())
}

/// Waits until `account` has `n` nudges, none still `planned`.
async fn settled(http: &reqwest::Client, base: &str, key: &str, account: &str, n: usize) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = history(http, base, key, account).await?;
        if h.len() >= n && h.iter().all(|x| x["status"] != "planned" && x["status"] != "sending") {
            return Ok(h);
        }
        anyhow::ensure!(Instant::now() < deadline, "nudges of {account} did not settle: {h:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post_events(http: &reqwest::Client, base: &str, key: &str, events: Value) -> anyhow::Result<Value> {
    let r = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(key)
        .json(&events)
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 202, "POST /v1/events: {}", r.status());
    Ok(r.json().await?)
}

fn print(account: &str, h: &[Value]) {
    let mut h = h.to_vec();
    h.sort_by_key(|n| n["created_at"].as_str().unwrap_or_default().to_owned());
    for n in &h {
        let status = n["status"].as_str().unwrap_or("?");
        let why = match status {
            "sent" => format!(
                "on {}: \"{}\"",
                n["channel"].as_str().unwrap_or("?"),
                n["subject"].as_str().unwrap_or_default()
            ),
            _ => n["reason"].as_str().unwrap_or_default().to_owned(),
        };
        println!(
            "  {account} → {}: {} — {status}: {why}",
            n["person_id"].as_str().unwrap_or("?"),
            n["rule"].as_str().unwrap_or("?")
        );
    }
}

/// Seeds the two accounts, fires the triggers and prints each nudge with why.
pub async fn run(rt: &Runtime, base: &str, key: &str, tenant: &Tenant, nonce: i64) -> anyhow::Result<()> {
    if rt.config.nudges.rule("inactive-account").is_none() {
        return Ok(());
    }
    let http = reqwest::Client::new();
    let in_app = json!({"in_app": {"granted": true, "given_at": "2026-10-01T09:00:00Z"}});
    let (night, day) = (zone(true), zone(false));
    put(
        &http,
        format!("{base}/v1/accounts/acct-dormant"),
        key,
        json!({"display_name": "Dormant Ltd", "language": "en"}),
    )
    .await?;
    put(
        &http,
        format!("{base}/v1/accounts/acct-dormant/people/olga"),
        key,
        json!({"name": "Olga", "role": "admin", "time_zone": night, "consent": in_app}),
    )
    .await?;
    put(
        &http,
        format!("{base}/v1/accounts/acct-upset"),
        key,
        json!({"display_name": "Upset SA", "language": "es"}),
    )
    .await?;
    put(
        &http,
        format!("{base}/v1/accounts/acct-upset/people/pablo"),
        key,
        json!({"name": "Pablo", "role": "executive", "time_zone": day, "consent": in_app}),
    )
    .await?;

    // The dormant account's last event, 40 days ago: the sweep finds it inactive.
    let long_ago = chrono::Utc::now() - chrono::Duration::days(40);
    let r = post_events(
        &http,
        base,
        key,
        json!([{"id": format!("demo-{nonce}-dormant"), "type": "user.logged_in", "account_id": "acct-dormant",
                "user_id": "olga", "occurred_at": long_ago.to_rfc3339(), "data": {}}]),
    )
    .await?;
    let mut ids: Vec<String> = Vec::new();
    super::collect_job_ids(&r, &mut ids);
    wait_jobs(rt, &ids).await?;
    // What the `nudge-sweep` schedule does daily, once now.
    let sweep = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant.id.clone(),
        kind: kairos_jobs::nudge::KIND.to_owned(),
        event_id: None,
        payload: json!({"sweep": true}).to_string(),
        max_attempts: rt.config.jobs.get(kairos_jobs::nudge::KIND).max_attempts,
        run_after: None,
    };
    let mut tx = rt.store.pool().begin().await?;
    insert_jobs(&mut tx, std::slice::from_ref(&sweep), kairos_core::time::now_ms()).await?;
    tx.commit().await?;
    if let Err(e) = enqueue_recorded(&rt.store, rt.queue.as_ref(), std::slice::from_ref(&sweep)).await {
        tracing::warn!(error = %e, "the dispatcher will queue the sweep");
    }
    wait_jobs(rt, std::slice::from_ref(&sweep.id)).await?;

    // The upset customer: an angry ticket, then a detractor score the same day.
    let now = chrono::Utc::now().to_rfc3339();
    for (i, (kind, data)) in [
        (
            "ticket.created",
            json!({"mood": "upset", "subject": "Export broken again", "priority": "high"}),
        ),
        ("survey.answered", json!({"detractor": true, "score": 2})),
    ]
    .into_iter()
    .enumerate()
    {
        let r = post_events(
            &http,
            base,
            key,
            json!([{"id": format!("demo-{nonce}-upset-{i}"), "type": kind, "account_id": "acct-upset",
                    "user_id": "pablo", "occurred_at": now, "data": data}]),
        )
        .await?;
        let mut ids = Vec::new();
        super::collect_job_ids(&r, &mut ids);
        wait_jobs(rt, &ids).await?;
        settled(&http, base, key, "acct-upset", i + 1).await?;
    }

    println!("\nNudges ({} rules in [nudges]; quiet hours 21:00-08:00 in each person's zone; at most 1 per person per 3 days):", rt.config.nudges.rules.len());
    println!("  Olga lives in {night} (night there now), Pablo in {day} (daytime)");
    print("acct-dormant", &settled(&http, base, key, "acct-dormant", 1).await?);
    print("acct-upset", &settled(&http, base, key, "acct-upset", 2).await?);
    println!("  history: curl -s -H 'Authorization: Bearer {key}' {base}/v1/accounts/acct-upset/nudges · feed: {base}/v1/people/pablo/feed");
    Ok(())
}

async fn wait_jobs(rt: &Runtime, ids: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = rt.store.jobs_by_ids(ids).await?;
        if jobs.len() == ids.len()
            && jobs.iter().all(|j| {
                matches!(
                    j.state,
                    kairos_core::store::JobState::Succeeded | kairos_core::store::JobState::Dead
                )
            })
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "jobs {ids:?} did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
