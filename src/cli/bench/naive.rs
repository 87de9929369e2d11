//! The yardstick: a naive Redis queue, one round trip per job, the way
//! plain Sidekiq/BullMQ-style code uses Redis lists: LPUSH to enqueue,
//! BLMOVE to a per-consumer processing list to fetch, LREM to acknowledge.
//! Every Kairos throughput row is reported as a ratio of this one.

use std::time::Instant;

use anyhow::Context;
use redis::aio::MultiplexedConnection;

use super::micros;
use super::worker::WorkerReport;

/// The baseline's backend label in the report.
pub(super) const NAIVE: &str = "naive-redis";
/// BLMOVE timeout of the naive consumer, in seconds.
pub(super) const BLOCK_SECS: f64 = 0.5;

/// List keys of the naive baseline: the queue and one consumer's
/// processing list (where a job sits between fetch and ack).
pub(super) fn keys(prefix: &str, kind: &str, consumer: &str) -> (String, String) {
    (
        format!("{prefix}:naive:{kind}"),
        format!("{prefix}:naive:{kind}:processing:{consumer}"),
    )
}

/// One LPUSH per job, each awaited: the per-job round trip that makes the
/// baseline naive.
pub(super) async fn push(conn: &mut MultiplexedConnection, main: &str, jobs: u64) -> anyhow::Result<()> {
    for i in 0..jobs {
        let _: i64 = redis::cmd("LPUSH")
            .arg(main)
            .arg(format!("n{i}"))
            .query_async(conn)
            .await
            .context("LPUSH")?;
    }
    Ok(())
}

/// One fetch (BLMOVE) and its ack (LREM), counted in `report`.
pub(super) async fn fetch_ack(
    conn: &mut MultiplexedConnection,
    main: &str,
    processing: &str,
    report: &mut WorkerReport,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let got: Option<String> = redis::cmd("BLMOVE")
        .arg(main)
        .arg(processing)
        .arg("RIGHT")
        .arg("LEFT")
        .arg(BLOCK_SECS)
        .query_async(conn)
        .await
        .context("BLMOVE")?;
    report.fetches += 1;
    let Some(job) = got else {
        report.empty += 1;
        report.wait_us += micros(t.elapsed());
        return Ok(());
    };
    report.fetch_us += micros(t.elapsed());
    let t = Instant::now();
    let _: i64 = redis::cmd("LREM")
        .arg(processing)
        .arg(1)
        .arg(&job)
        .query_async(conn)
        .await
        .context("LREM")?;
    report.ack_us += micros(t.elapsed());
    report.consumed += 1;
    Ok(())
}

/// Jobs still in `keys` (the queue and every processing list).
pub(super) async fn remaining(conn: &mut MultiplexedConnection, keys: &[String]) -> anyhow::Result<u64> {
    let mut pipe = redis::pipe();
    for k in keys {
        pipe.cmd("LLEN").arg(k);
    }
    let lens: Vec<u64> = pipe.query_async(conn).await.context("LLEN")?;
    Ok(lens.iter().sum())
}
