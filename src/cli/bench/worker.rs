//! `kairos bench-worker` (hidden): one benchmark consumer process, started
//! by `kairos bench` so throughput includes real cross-process contention.
//!
//! It talks to its parent over pipes: it prints `ready` once connected,
//! starts on a `go` line, stops at end of input (so a worker whose parent
//! died stops too), and prints its counts ([`WorkerReport`]) as its last
//! line.

use std::io::{BufRead, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Config;
use anyhow::Context;
use kairos_core::config::QueueBackendKind;
use kairos_core::queue::Queue;
use redis::aio::MultiplexedConnection;

use super::{micros, naive, redis_conn, LEASE};

/// A worker gives up after this many failed queue calls.
const MAX_WORKER_ERRORS: u64 = 20;

/// Queue backend of a `bench-worker` process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkerBackend {
    /// Kairos SQLite queue.
    Sqlite,
    /// Kairos Redis Streams queue (or the naive lists with `--naive`).
    Redis,
}

/// Options of the hidden `kairos bench-worker`: everything a worker process
/// needs to find the queue its parent pushes to.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchWorkerArgs {
    /// Queue backend.
    #[arg(long, value_enum)]
    pub backend: WorkerBackend,
    /// Consume the naive Redis list baseline instead of a Kairos queue.
    #[arg(long)]
    pub naive: bool,
    /// Queue URL (`sqlite://FILE` or `redis://HOST:PORT`).
    #[arg(long)]
    pub url: String,
    /// Redis key prefix of this run.
    #[arg(long)]
    pub prefix: String,
    /// Job kind to consume.
    #[arg(long, default_value = super::KIND)]
    pub kind: String,
    /// Most jobs per fetch.
    #[arg(long)]
    pub batch: usize,
    /// Consumer name (unique per process).
    #[arg(long)]
    pub consumer: String,
}

/// What a worker process did, printed as its last stdout line.
#[derive(Debug, Clone, Default)]
pub(super) struct WorkerReport {
    pub(super) consumed: u64,
    pub(super) fetches: u64,
    pub(super) empty: u64,
    pub(super) errors: u64,
    /// Time in fetches that returned jobs.
    pub(super) fetch_us: u64,
    /// Time in fetches that returned nothing (idle, waiting for work).
    pub(super) wait_us: u64,
    pub(super) ack_us: u64,
}

impl WorkerReport {
    /// The protocol line.
    fn line(&self) -> String {
        format!(
            "done consumed={} fetches={} empty={} errors={} fetch_us={} wait_us={} ack_us={}",
            self.consumed, self.fetches, self.empty, self.errors, self.fetch_us, self.wait_us, self.ack_us
        )
    }

    /// Reads a [`Self::line`] back; `None` for any other line.
    pub(super) fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("done ")?;
        let mut r = Self::default();
        for pair in rest.split_whitespace() {
            let (k, v) = pair.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "consumed" => r.consumed = v,
                "fetches" => r.fetches = v,
                "empty" => r.empty = v,
                "errors" => r.errors = v,
                "fetch_us" => r.fetch_us = v,
                "wait_us" => r.wait_us = v,
                "ack_us" => r.ack_us = v,
                _ => return None,
            }
        }
        Some(r)
    }
}

/// Where a worker takes jobs from.
enum Source {
    Kairos {
        queue: Arc<dyn Queue>,
        kind: String,
        consumer: String,
    },
    Naive {
        conn: MultiplexedConnection,
        main: String,
        processing: String,
    },
}

impl Source {
    /// One fetch and its ack.
    async fn round(&mut self, batch: usize, report: &mut WorkerReport) -> anyhow::Result<()> {
        match self {
            Source::Kairos { queue, kind, consumer } => {
                let t = Instant::now();
                let got = queue.fetch(kind, consumer, batch, LEASE).await.context("fetch")?;
                report.fetches += 1;
                if got.is_empty() {
                    report.empty += 1;
                    report.wait_us += micros(t.elapsed());
                    return Ok(());
                }
                report.fetch_us += micros(t.elapsed());
                let tags: Vec<String> = got.into_iter().map(|d| d.tag).collect();
                let t = Instant::now();
                // The fetched jobs stay leased until acknowledged: retry the
                // ack rather than leave them to stall the drain.
                let mut attempt = 0;
                loop {
                    match queue.ack(kind, &tags).await {
                        Ok(()) => break,
                        Err(e) if attempt < 4 => {
                            attempt += 1;
                            report.errors += 1;
                            eprintln!("bench-worker {consumer}: ack failed, retrying: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => return Err(anyhow::Error::new(e).context("ack")),
                    }
                }
                report.ack_us += micros(t.elapsed());
                report.consumed += tags.len() as u64;
            }
            Source::Naive { conn, main, processing } => naive::fetch_ack(conn, main, processing, report).await?,
        }
        Ok(())
    }
}

/// Runs one benchmark consumer process: connects, says `ready`, waits for
/// `go`, then fetches and acknowledges until its stdin closes, and prints
/// its counts as the last stdout line.
pub async fn run(config: Config, args: BenchWorkerArgs) -> anyhow::Result<()> {
    let batch = args.batch.max(1);
    let mut source = if args.naive {
        let (main, processing) = naive::keys(&args.prefix, &args.kind, &args.consumer);
        Source::Naive {
            conn: redis_conn(&args.url).await?,
            main,
            processing,
        }
    } else {
        let mut qc = config.queue.clone();
        qc.backend = match args.backend {
            WorkerBackend::Sqlite => QueueBackendKind::Sqlite,
            WorkerBackend::Redis => QueueBackendKind::Redis,
        };
        qc.url = args.url.clone();
        qc.prefix = args.prefix.clone();
        let queue = kairos_core::queue::connect(&qc)
            .await
            .with_context(|| format!("connecting to the queue at {}", crate::redact(&qc.url)))?;
        queue.ping().await.context("queue ping")?;
        Source::Kairos {
            queue,
            kind: args.kind.clone(),
            consumer: args.consumer.clone(),
        }
    };

    // Stdin is read on a plain thread: a blocking read cannot be cancelled,
    // and a runtime-owned one would hold up the exit of this process.
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<bool>();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        let go = matches!(lines.next(), Some(Ok(l)) if l.trim() == "go");
        let _ = go_tx.send(go);
        while let Some(Ok(_)) = lines.next() {}
        stop_flag.store(true, Ordering::SeqCst);
    });
    say("ready")?;
    if !go_rx.await.unwrap_or(false) {
        // The parent gave up before starting us: nothing to do.
        say(&WorkerReport::default().line())?;
        return Ok(());
    }

    let mut report = WorkerReport::default();
    let mut failure = None;
    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = source.round(batch, &mut report).await {
            report.errors += 1;
            eprintln!("bench-worker {}: {e:#}", args.consumer);
            if report.errors >= MAX_WORKER_ERRORS {
                failure = Some(e);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    say(&report.line())?;
    match failure {
        Some(e) => Err(e.context(format!(
            "bench-worker {} gave up after {} errors",
            args.consumer, report.errors
        ))),
        None => Ok(()),
    }
}

/// Prints one protocol line to stdout, flushed.
fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing to stdout")?;
    out.flush().context("flushing stdout")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_report_round_trips() {
        let r = WorkerReport {
            consumed: 5,
            fetches: 3,
            empty: 1,
            errors: 0,
            fetch_us: 1200,
            wait_us: 7,
            ack_us: 300,
        };
        let back = WorkerReport::parse(&r.line()).expect("parses");
        assert_eq!(
            (back.consumed, back.fetches, back.empty, back.fetch_us, back.ack_us),
            (5, 3, 1, 1200, 300)
        );
        assert!(WorkerReport::parse("ready").is_none());
    }
}
