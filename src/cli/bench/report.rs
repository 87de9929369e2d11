//! What `kairos bench` measured ([`Report`]) and its printout: one table
//! per measurement, the machine it ran on, and the command that reproduces it.

use super::backlog::BacklogRow;
use super::latency::LatencyRow;
use super::throughput::ThroughputRow;
use super::worker::WorkerReport;
use super::{naive, Ctx, PUSH_CHUNK};
use crate::cli::stats::percentile;
use crate::cli::table::{left, right, Table};

/// Everything measured, for printing.
#[derive(Default)]
pub(super) struct Report {
    pub(super) redis_version: Option<String>,
    /// 1-minute load average before the first run: other work on the
    /// machine skews every number, and this shows whether there was any.
    pub(super) load_at_start: Option<String>,
    pub(super) throughput: Vec<ThroughputRow>,
    pub(super) latency: Vec<LatencyRow>,
    pub(super) backlog: Option<BacklogRow>,
    /// Runs that failed outright: (what, error).
    pub(super) failures: Vec<(String, String)>,
}

impl Report {
    /// Jobs/s of the naive baseline with `workers` processes, when it ran cleanly.
    fn naive_rate(&self, workers: usize) -> Option<f64> {
        self.throughput
            .iter()
            .find(|r| r.backend == naive::NAIVE && r.workers == workers && r.problems.is_empty())
            .map(ThroughputRow::rate)
    }

    /// Every failed check, one line each.
    pub(super) fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.failures.iter().map(|(w, e)| format!("{w}: {e}")).collect();
        for r in &self.throughput {
            for p in &r.problems {
                out.push(format!("{} x{}: {p}", r.backend, r.workers));
            }
        }
        for r in &self.latency {
            for p in &r.problems {
                out.push(format!("{} latency: {p}", r.backend));
            }
        }
        if let Some(b) = &self.backlog {
            for p in &b.problems {
                out.push(format!("backlog: {p}"));
            }
        }
        out
    }
}

/// Prints the tables, with what the numbers mean and how to reproduce them.
pub(super) fn print_report(ctx: &Ctx, report: &Report, started: chrono::DateTime<chrono::Utc>) {
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, m)| m.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "this machine".into());
    println!();
    println!(
        "Kairos queue benchmark — kairos {} on {host}: {nproc} CPUs ({cpu}){}",
        env!("CARGO_PKG_VERSION"),
        match &report.redis_version {
            Some(v) => format!(", Redis {v}"),
            None => String::new(),
        }
    );
    println!(
        "started {} (load average {}); fetch batch {}, push batch {PUSH_CHUNK}, queue.fetch_wait {:?}",
        started.format("%Y-%m-%d %H:%M:%S UTC"),
        report.load_at_start.as_deref().unwrap_or("unknown"),
        ctx.batch,
        ctx.config.queue.fetch_wait
    );

    let repeated = ctx.args.repeat > 1;
    if repeated {
        println!(
            "each throughput row is the median of {} runs (by jobs/s); the range is slowest-fastest",
            ctx.args.repeat
        );
    }
    if !report.throughput.is_empty() {
        println!();
        println!("Throughput: no-op jobs; this process pushes while N worker processes fetch+ack, concurrently.");
        println!(
            "seconds = first push until the queue is empty; vs naive = jobs/s over naive-redis jobs/s with the same N."
        );
        let mut columns = vec![
            left("backend"),
            right("workers"),
            right("jobs"),
            right("seconds"),
            right("jobs/s"),
        ];
        if repeated {
            columns.push(right("jobs/s range"));
        }
        columns.extend([right("vs naive"), left("consumed per process"), left("check")]);
        let mut table = Table::new(columns);
        for r in &report.throughput {
            let vs = match report.naive_rate(r.workers) {
                Some(n) if n > 0.0 => format!("{:.1}x", r.rate() / n),
                _ => "-".into(),
            };
            let per: Vec<String> = r.reports.iter().map(|w| w.consumed.to_string()).collect();
            let mut row = vec![
                r.backend.clone(),
                r.workers.to_string(),
                r.jobs.to_string(),
                format!("{:.2}", r.secs),
                format!("{:.0}", r.rate()),
            ];
            if repeated {
                row.push(match r.range {
                    Some((lo, hi)) => format!("{lo:.0}-{hi:.0}"),
                    None => "-".into(),
                });
            }
            row.extend([vs, per.join(" + "), check(&r.problems, &r.warnings)]);
            table.row(row);
        }
        print!("{table}");
        println!("naive-redis: Redis lists, one round trip per job: LPUSH to enqueue; BLMOVE to a processing list");
        println!("then LREM to fetch and ack (per-job Sidekiq/BullMQ-style usage). Kairos: batched pushes (XADD");
        println!(
            "pipelines), XREADGROUP COUNT {} fetches, pipelined XACK+XDEL acks / one SQL statement per batch.",
            ctx.batch
        );

        println!();
        println!("Worker processes: where their time went (fetch = fetches that returned jobs; idle = empty fetches,");
        println!("waiting for work, including the last one after the queue drained).");
        let mut table = worker_table();
        for r in &report.throughput {
            for (i, w) in r.reports.iter().enumerate() {
                table.row(worker_row(&format!("{} x{}", r.backend, r.workers), i + 1, w));
            }
        }
        print!("{table}");
    }

    if !report.latency.is_empty() {
        println!();
        println!("Latency: one producer at a fixed rate, one consumer in the same process; enqueue -> fetched.");
        let mut table = Table::new([
            left("backend"),
            right("rate/s"),
            right("secs"),
            right("jobs"),
            right("p50 ms"),
            right("p99 ms"),
            right("max ms"),
            left("check"),
        ]);
        for r in &report.latency {
            table.row([
                r.backend.clone(),
                r.rate.to_string(),
                r.secs.to_string(),
                r.sent.to_string(),
                ms(percentile(&r.lat_us, 50.0)),
                ms(percentile(&r.lat_us, 99.0)),
                ms(r.lat_us.last().copied()),
                check(&r.problems, &[]),
            ]);
        }
        print!("{table}");
    }

    if let Some(b) = &report.backlog {
        println!();
        println!(
            "Backlog: {} jobs queued on Redis first, then drained by {} worker processes.",
            b.jobs, b.workers
        );
        let per: Vec<String> = b.reports.iter().map(|w| w.consumed.to_string()).collect();
        let mut table = Table::new([
            left("backend"),
            right("jobs"),
            right("push s"),
            right("push jobs/s"),
            right("workers"),
            right("drain s"),
            right("drain jobs/s"),
            left("consumed per process"),
            left("check"),
        ]);
        table.row([
            "kairos-redis".to_owned(),
            b.jobs.to_string(),
            format!("{:.2}", b.push_secs),
            format!("{:.0}", b.jobs as f64 / b.push_secs.max(1e-9)),
            b.workers.to_string(),
            format!("{:.2}", b.drain_secs),
            format!("{:.0}", b.jobs as f64 / b.drain_secs.max(1e-9)),
            per.join(" + "),
            check(&b.problems, &b.warnings),
        ]);
        print!("{table}");
        let mut table = worker_table();
        for (i, w) in b.reports.iter().enumerate() {
            table.row(worker_row("backlog", i + 1, w));
        }
        print!("{table}");
    }

    if !report.failures.is_empty() {
        println!();
        println!("Failed runs:");
        for (what, e) in &report.failures {
            println!("  {what}: {e}");
        }
    }
    println!();
    let argv: Vec<String> = std::env::args().map(|a| shell_quote(&a)).collect();
    println!("Reproduce: {}", argv.join(" "));
}

/// Where each worker process's time went.
fn worker_table() -> Table {
    Table::new([
        left("run"),
        right("process"),
        right("consumed"),
        right("fetches"),
        right("empty"),
        right("fetch ms"),
        right("ack ms"),
        right("idle ms"),
        right("errors"),
    ])
}

fn worker_row(run: &str, i: usize, w: &WorkerReport) -> Vec<String> {
    vec![
        run.to_owned(),
        i.to_string(),
        w.consumed.to_string(),
        w.fetches.to_string(),
        w.empty.to_string(),
        (w.fetch_us / 1000).to_string(),
        (w.ack_us / 1000).to_string(),
        (w.wait_us / 1000).to_string(),
        w.errors.to_string(),
    ]
}

fn check(problems: &[String], warnings: &[String]) -> String {
    if !problems.is_empty() {
        format!("FAIL: {}", problems.join("; "))
    } else if !warnings.is_empty() {
        format!("ok, WARN: {}", warnings.join("; "))
    } else {
        "ok".into()
    }
}

/// Microseconds as milliseconds; `-` when there is no value.
fn ms(us: Option<u64>) -> String {
    us.map_or_else(|| "-".into(), |us| format!("{:.2}", us as f64 / 1000.0))
}

/// Quotes an argument for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_the_shell_would_split() {
        assert_eq!(shell_quote("--workers=1,2"), "--workers=1,2");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn milliseconds_with_two_decimals() {
        assert_eq!(ms(Some(1234)), "1.23");
        assert_eq!(ms(None), "-");
    }
}
