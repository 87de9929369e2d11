//! The producer (events posted over HTTP, one per request or in batches, by
//! a fixed number of concurrent connections) and the store-side reads: how
//! many jobs are recorded, and each job's latency from its row.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kairos_core::Store;
use serde_json::{json, Value};

use super::sample::PROBE;

/// One event of the benchmark: a type only the catch-all rule matches, so
/// it makes exactly one `activity` job.
pub(super) fn event(id: &str, n: usize) -> Value {
    json!({"id": id, "type": "user.logged_in", "account_id": format!("a{}", n % 100),
           "occurred_at": "2026-11-20T10:00:00Z", "data": {}})
}

/// What the producer saw.
#[derive(Debug, Default)]
pub(super) struct Produced {
    /// Epoch ms of the first request sent and of the last answer.
    pub first_ms: i64,
    pub last_ms: i64,
    /// Request round trips, ms, sorted.
    pub request_ms: Vec<f64>,
}

/// Posts `n` events with ids `PREFIX-i`, `batch` per request (1: the event
/// itself as the body; more: `{"events": [...]}`), over `conns` concurrent
/// connections. `accepted` counts events answered 202 as they are.
#[allow(clippy::too_many_arguments)]
pub(super) async fn produce(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    prefix: &str,
    n: usize,
    batch: usize,
    conns: usize,
    accepted: Arc<AtomicUsize>,
) -> anyhow::Result<Produced> {
    let next = Arc::new(AtomicUsize::new(0));
    let requests = n.div_ceil(batch);
    let first_ms = kairos_core::time::now_ms();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns.max(1) {
        let (http, next, accepted) = (http.clone(), next.clone(), accepted.clone());
        let url = format!("{base}/v1/events");
        let (key, prefix) = (key.to_string(), prefix.to_string());
        tasks.spawn(async move {
            let mut times = Vec::new();
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed);
                if r >= requests {
                    return Ok::<_, anyhow::Error>(times);
                }
                let range = r * batch..((r + 1) * batch).min(n);
                let count = range.len();
                let body = if batch == 1 {
                    event(&format!("{prefix}-{r}"), r)
                } else {
                    json!({"events": range.map(|i| event(&format!("{prefix}-{i}"), i)).collect::<Vec<_>>()})
                };
                let sent = Instant::now();
                let resp = http.post(&url).bearer_auth(&key).json(&body).send().await?;
                let status = resp.status();
                let text = resp.text().await?;
                anyhow::ensure!(status.as_u16() == 202, "ingest answered {status}: {text}");
                times.push(sent.elapsed().as_secs_f64() * 1000.0);
                accepted.fetch_add(count, Ordering::Relaxed);
            }
        });
    }
    let mut request_ms = Vec::with_capacity(requests);
    while let Some(r) = tasks.join_next().await {
        request_ms.extend(r.context("a producer task panicked")??);
    }
    request_ms.sort_by(f64::total_cmp);
    Ok(Produced {
        first_ms,
        last_ms: kairos_core::time::now_ms(),
        request_ms,
    })
}

/// Jobs of `tenant` by state: (succeeded, dead).
async fn counts(store: &Store, tenant: &str) -> anyhow::Result<(i64, i64)> {
    let row: (i64, i64) = sqlx::query_as(&format!(
        "{PROBE} SELECT COALESCE(SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) FROM job_runs WHERE tenant_id = $1"
    ))
    .bind(tenant)
    .fetch_one(store.pool())
    .await?;
    Ok(row)
}

/// Waits until `n` jobs of `tenant` have succeeded; fails on a dead job or
/// after `timeout`. Returns how many store probes it made.
pub(super) async fn wait_succeeded(
    store: &Store,
    tenant: &str,
    n: usize,
    timeout: Duration,
    check: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + timeout;
    let mut probes = 0;
    loop {
        let (ok, dead) = counts(store, tenant).await?;
        probes += 1;
        anyhow::ensure!(dead == 0, "{dead} jobs dead-lettered");
        if ok as usize >= n {
            return Ok(probes);
        }
        check()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {ok} of {n} jobs succeeded within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every succeeded job of `tenant`: (event id, created_at, finished_at).
pub(super) async fn jobs(store: &Store, tenant: &str) -> anyhow::Result<Vec<(String, i64, i64)>> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
        "{PROBE} SELECT COALESCE(event_id, ''), created_at, finished_at FROM job_runs \
         WHERE tenant_id = $1 AND state = 'succeeded'"
    ))
    .bind(tenant)
    .fetch_all(store.pool())
    .await?;
    Ok(rows)
}
