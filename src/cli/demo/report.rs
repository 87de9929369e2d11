//! The demo's executive report: eight weeks of work events (tasks, bugs,
//! ticket replies) for one account, then that account's weekly report for
//! the last complete week — generated in-process with the template
//! narrative (no LLM needed), printed as Markdown and written as HTML to
//! `data/`.

use std::time::Instant;

use anyhow::Context;
use kairos_core::store::Tenant;
use kairos_jobs::report::Reporter;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::Config;

/// Posts the work history of `account` through the API.
pub async fn seed(base: &str, key: &str, tenant: &str, account: &str, nonce: i64) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(nonce as u64 ^ 0x5eed);
    let now = chrono::Utc::now();
    let mut events: Vec<Value> = Vec::new();
    for week in 0..8i64 {
        // A team that speeds up, then has a rough last week.
        let created = 10 + week;
        let done = if week == 7 { 6 } else { 6 + week };
        let bugs = if week == 7 { 5 } else { 1 + week % 2 };
        let mut push = |i: usize, kind: &str, data: Value| {
            let at = now - chrono::Duration::days(7 * (8 - week))
                + chrono::Duration::minutes(rng.random_range(0..7 * 24 * 60));
            events.push(json!({
                "id": format!("{tenant}-{nonce}-work-{week}-{kind}-{i}"),
                "type": kind,
                "account_id": account,
                "occurred_at": at.to_rfc3339(),
                "data": data,
            }));
        };
        for i in 0..created {
            push(i as usize, "task.created", json!({}));
        }
        for i in 0..done {
            push(i as usize, "task.completed", json!({}));
        }
        for i in 0..bugs {
            push(i as usize, "bug.reported", json!({}));
        }
        for i in 0..4 {
            push(
                i,
                "ticket.replied",
                json!({ "response_minutes": 30 + 10 * week + 5 * i as i64 }),
            );
        }
    }
    for chunk in events.chunks(100) {
        let resp = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(key)
            .json(&json!({ "events": chunk }))
            .send()
            .await
            .context("posting work events")?;
        if !resp.status().is_success() {
            anyhow::bail!("ingest answered {}", resp.status());
        }
    }
    Ok(())
}

/// Generates and prints the account's report; writes its HTML to `data/`.
pub async fn show(config: &Config, store: &kairos_core::Store, tenant: &Tenant, account: &str) -> anyhow::Result<()> {
    // With an [llm] section the narrative is the model's; without, the template.
    let reporter = Reporter::from_jobs_config(&config.kinds()).await?;
    let started = Instant::now();
    let g = reporter
        .generate(store, tenant, Some(account), None, true, "demo")
        .await?;
    let r = &g.report;
    let path = std::path::Path::new("data").join(format!("report-{}-{}-{}.html", tenant.name, account, r.period));
    std::fs::create_dir_all("data").context("creating data/")?;
    std::fs::write(&path, &r.html).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "\nWeekly executive report of {account} ({}), {} narrative, {} ms:\n",
        tenant.name,
        r.narrative_source,
        started.elapsed().as_millis()
    );
    println!("{}", r.markdown);
    println!("HTML (inline SVG charts, tenant branding): {}", path.display());
    Ok(())
}
