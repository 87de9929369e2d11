//! The parent's side of the worker processes: what they consume
//! ([`Target`]), starting them and waiting until they are connected,
//! watching the queue drain ([`Probe`]) while checking they stay alive, and
//! stopping them to collect and check their counts.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kairos_core::config::{QueueBackendKind, QueueConfig};
use kairos_core::queue::Queue;
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::worker::WorkerReport;
use super::{naive, Ctx, KIND};

/// How long a worker process may take to connect.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a throughput run measures against.
pub(super) enum Target {
    Kairos(QueueConfig),
    Naive { url: String, prefix: String },
}

impl Target {
    /// How a `bench-worker` finds this target.
    fn worker_args(&self) -> Vec<String> {
        match self {
            Target::Kairos(qc) => {
                let backend = match qc.backend {
                    QueueBackendKind::Sqlite => "sqlite",
                    QueueBackendKind::Redis => "redis",
                };
                vec![
                    "--backend".into(),
                    backend.into(),
                    "--url".into(),
                    qc.url.clone(),
                    "--prefix".into(),
                    qc.prefix.clone(),
                ]
            }
            Target::Naive { url, prefix } => vec![
                "--backend".into(),
                "redis".into(),
                "--naive".into(),
                "--url".into(),
                url.clone(),
                "--prefix".into(),
                prefix.clone(),
            ],
        }
    }
}

/// A running `bench-worker` child and its pipes.
pub(super) struct WorkerProc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl WorkerProc {
    async fn spawn(ctx: &Ctx, target: &Target, name: &str) -> anyhow::Result<Self> {
        let mut cmd = Command::new(&ctx.exe);
        if let Some(p) = &ctx.config_path {
            cmd.arg("--config").arg(p);
        }
        cmd.arg("bench-worker")
            .args(target.worker_args())
            .args(["--kind", KIND, "--batch"])
            .arg(ctx.batch.to_string())
            .args(["--consumer", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} bench-worker", ctx.exe.display()))?;
        let stdin = child.stdin.take().context("worker stdin not piped")?;
        let stdout = child.stdout.take().context("worker stdout not piped")?;
        let mut me = Self {
            name: name.to_owned(),
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout).lines(),
        };
        let line = tokio::time::timeout(READY_TIMEOUT, me.stdout.next_line())
            .await
            .with_context(|| format!("worker {name} did not connect within {READY_TIMEOUT:?}"))?
            .with_context(|| format!("reading from worker {name}"))?;
        if line.as_deref() != Some("ready") {
            let status = me.child.try_wait().ok().flatten();
            bail!("worker {name} failed to start (said {line:?}, exit {status:?}); see its stderr above");
        }
        Ok(me)
    }

    /// Tells the worker to start consuming.
    pub(super) async fn go(&mut self) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("worker already stopped")?;
        stdin
            .write_all(b"go\n")
            .await
            .with_context(|| format!("starting worker {}", self.name))?;
        stdin
            .flush()
            .await
            .with_context(|| format!("starting worker {}", self.name))?;
        Ok(())
    }

    /// An error when the worker has exited.
    pub(super) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("checking a worker")? {
            bail!("worker {} exited early ({status}); see its stderr above", self.name);
        }
        Ok(())
    }

    /// Closes stdin (the stop signal) and reads the final report. A worker
    /// that exited non-zero still has its report returned, with `ok = false`.
    async fn finish(mut self, wait: Duration) -> anyhow::Result<(WorkerReport, bool)> {
        drop(self.stdin.take());
        let mut last = None;
        let stdout = &mut self.stdout;
        let read = async {
            while let Some(l) = stdout.next_line().await? {
                last = Some(l);
            }
            Ok::<_, std::io::Error>(())
        };
        tokio::time::timeout(wait, read)
            .await
            .with_context(|| format!("worker {} did not stop within {wait:?}", self.name))?
            .with_context(|| format!("reading from worker {}", self.name))?;
        let status = tokio::time::timeout(wait, self.child.wait())
            .await
            .with_context(|| format!("worker {} did not exit within {wait:?}", self.name))?
            .with_context(|| format!("waiting for worker {}", self.name))?;
        let report = last
            .as_deref()
            .and_then(WorkerReport::parse)
            .with_context(|| format!("worker {} printed no final count (exit {status})", self.name))?;
        Ok((report, status.success()))
    }
}

/// How the parent sees how many jobs are left.
pub(super) enum Probe {
    Kairos(Arc<dyn Queue>),
    Naive {
        conn: MultiplexedConnection,
        keys: Vec<String>,
    },
}

impl Probe {
    /// Jobs queued or in flight.
    async fn remaining(&mut self) -> anyhow::Result<u64> {
        match self {
            Probe::Kairos(q) => {
                let d = q.depth(KIND).await.context("queue depth")?;
                Ok(d.ready + d.in_flight + d.delayed)
            }
            Probe::Naive { conn, keys } => naive::remaining(conn, keys).await,
        }
    }
}

/// Starts `n` workers and waits until all are connected.
pub(super) async fn start_workers(ctx: &Ctx, target: &Target, run: &str, n: usize) -> anyhow::Result<Vec<WorkerProc>> {
    let mut procs = Vec::with_capacity(n);
    for i in 1..=n {
        procs.push(WorkerProc::spawn(ctx, target, &format!("{run}-w{i}")).await?);
    }
    Ok(procs)
}

/// Stops the workers and checks their counts add up to `jobs`.
pub(super) async fn stop_workers(
    procs: Vec<WorkerProc>,
    ctx: &Ctx,
    jobs: u64,
) -> anyhow::Result<(Vec<WorkerReport>, Vec<String>, Vec<String>)> {
    let wait = ctx.config.queue.fetch_wait + Duration::from_secs(15);
    let mut reports = Vec::new();
    let mut problems = Vec::new();
    for p in procs {
        let name = p.name.clone();
        let (r, ok) = p.finish(wait).await?;
        if !ok {
            problems.push(format!("{name} exited with an error"));
        }
        reports.push(r);
    }
    let sum: u64 = reports.iter().map(|r| r.consumed).sum();
    if sum != jobs {
        problems.push(format!("consumed {sum} != pushed {jobs}"));
    }
    let errors: u64 = reports.iter().map(|r| r.errors).sum();
    if errors > 0 {
        problems.push(format!("{errors} queue errors"));
    }
    // Counted as a warning: the jobs were all processed exactly once, but
    // the row does not measure the process count it claims.
    let mut warnings = Vec::new();
    if reports.len() > 1 && reports.iter().any(|r| r.consumed == 0) {
        warnings.push("a worker consumed nothing".into());
    }
    Ok((reports, problems, warnings))
}

/// Waits until the queue is empty, checking the workers stay alive.
pub(super) async fn wait_drained(
    probe: &mut Probe,
    procs: &mut [WorkerProc],
    deadline: Instant,
    poll: Duration,
) -> anyhow::Result<()> {
    loop {
        if probe.remaining().await? == 0 {
            return Ok(());
        }
        for p in procs.iter_mut() {
            p.check_alive()?;
        }
        if Instant::now() >= deadline {
            let left = probe.remaining().await?;
            bail!("stalled: {left} jobs still queued or in flight at the deadline");
        }
        tokio::time::sleep(poll).await;
    }
}
