//! Latency: one producer pushes at a fixed rate with the enqueue time in
//! each payload; one consumer in the same process records
//! `fetched - enqueued`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kairos_core::queue::{Message, Queue};
use tokio::task::JoinHandle;

use super::{bench_message, epoch_micros, KIND, LEASE};

/// One latency measurement.
pub(super) struct LatencyRow {
    pub(super) backend: String,
    pub(super) rate: u64,
    pub(super) secs: u64,
    pub(super) sent: u64,
    /// Sorted, microseconds.
    pub(super) lat_us: Vec<u64>,
    pub(super) problems: Vec<String>,
}

/// Pushes at `rate` jobs/s for `secs` s (each message carries its enqueue
/// time) while one consumer fetches, records `now - enqueued` and acks.
pub(super) async fn latency(
    label: &str,
    queue: Arc<dyn Queue>,
    rate: u64,
    secs: u64,
    batch: usize,
) -> anyhow::Result<LatencyRow> {
    eprintln!("bench: {label} latency at {rate} jobs/s for {secs} s ...");
    let total = rate.saturating_mul(secs);
    let pq = queue.clone();
    let mut producer: JoinHandle<anyhow::Result<()>> = tokio::spawn(async move {
        // One tick per millisecond; the number due is computed from the
        // elapsed time, so late ticks catch up and the rate stays exact.
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            tick.tick().await;
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            if due <= sent {
                continue;
            }
            let t = epoch_micros().to_string();
            let msgs: Vec<Message> = (sent..due).map(|i| bench_message(format!("l{i}"), t.clone())).collect();
            pq.push(&msgs).await.context("latency push")?;
            sent = due;
        }
        Ok(())
    });
    let deadline = Instant::now() + Duration::from_secs(secs + 60);
    let mut lat_us = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut producer_done = false;
    let mut problems = Vec::new();
    while (lat_us.len() as u64) < total {
        if !producer_done && producer.is_finished() {
            (&mut producer).await.context("latency producer task")??;
            producer_done = true;
        }
        if Instant::now() >= deadline {
            producer.abort();
            bail!("stalled: received {} of {total} jobs at the deadline", lat_us.len());
        }
        let got = queue
            .fetch(KIND, "latency", batch, LEASE)
            .await
            .context("latency fetch")?;
        let now = epoch_micros();
        for d in &got {
            let t: i64 = d
                .message
                .payload
                .parse()
                .with_context(|| format!("latency payload {:?}", d.message.payload))?;
            lat_us.push(u64::try_from(now - t).unwrap_or(0));
        }
        let tags: Vec<String> = got.into_iter().map(|d| d.tag).collect();
        queue.ack(KIND, &tags).await.context("latency ack")?;
    }
    if !producer_done {
        producer.await.context("latency producer task")??;
    }
    let left = queue.depth(KIND).await.context("queue depth")?;
    if left.ready + left.in_flight + left.delayed != 0 || lat_us.len() as u64 != total {
        problems.push(format!("received {} of {total}, {left:?} left", lat_us.len()));
    }
    lat_us.sort_unstable();
    Ok(LatencyRow {
        backend: label.to_owned(),
        rate,
        secs,
        sent: total,
        lat_us,
        problems,
    })
}
