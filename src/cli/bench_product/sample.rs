//! What the benchmark reads from the machine and the servers: CPU seconds
//! and RSS per process from `/proc`, statements and transactions from the
//! own Postgres cluster's `pg_stat_statements` / `pg_stat_database`, and
//! commands executed from the own Redis's `INFO`.

use std::collections::BTreeMap;

use kairos_core::Store;

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on
/// every Linux architecture this runs on).
const TICKS_PER_S: f64 = 100.0;

/// A marker in the benchmark's own queries, so statement counts leave them out.
pub(super) const PROBE: &str = "/* kbench-probe */";

/// `(utime + stime, cutime + cstime)` of a process, in seconds.
fn proc_times(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: fields count from its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // rest[0] is field 3 (state); utime is field 14, so index 11.
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    Some(((t(11)? + t(12)?) / TICKS_PER_S, (t(13)? + t(14)?) / TICKS_PER_S))
}

/// CPU seconds a process has used (its own threads).
pub(super) fn cpu_s(pid: u32) -> Option<f64> {
    proc_times(pid).map(|(own, _)| own)
}

/// The parent pid of a process.
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// CPU seconds of a whole Postgres cluster: the postmaster with the
/// children it has reaped (backends that exited) plus every live child.
pub(super) fn cluster_cpu_s(postmaster: u32) -> Option<f64> {
    let (own, reaped) = proc_times(postmaster)?;
    let mut total = own + reaped;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if ppid(pid) == Some(postmaster) {
            total += cpu_s(pid).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
pub(super) fn rss_mb(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

pub(super) use crate::cli::stats::load1;

/// Counters read at the start and the end of a case.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot {
    /// CPU seconds by process name (api, worker-1, ..., postgres, redis, producer).
    pub cpu: BTreeMap<String, f64>,
    /// Postgres: statements executed in the benchmark database (not ours).
    pub pg_statements: Option<f64>,
    /// Postgres: transactions committed or rolled back in it.
    pub pg_xacts: Option<f64>,
    /// Postgres: rows inserted + updated + deleted in it.
    pub pg_rows_written: Option<f64>,
    /// Redis: commands processed (including those inside Lua scripts).
    pub redis_ops: Option<f64>,
}

impl Snapshot {
    /// `end - start`, per key.
    pub fn delta(start: &Snapshot, end: &Snapshot) -> Snapshot {
        let d = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        Snapshot {
            cpu: end
                .cpu
                .iter()
                .map(|(k, v)| (k.clone(), v - start.cpu.get(k).copied().unwrap_or(0.0)))
                .collect(),
            pg_statements: d(start.pg_statements, end.pg_statements),
            pg_xacts: d(start.pg_xacts, end.pg_xacts),
            pg_rows_written: d(start.pg_rows_written, end.pg_rows_written),
            redis_ops: d(start.redis_ops, end.redis_ops),
        }
    }
}

/// Postgres counters of the benchmark database, leaving out the
/// benchmark's own probes (marked with [`PROBE`]).
pub(super) async fn pg_counters(store: &Store) -> (Option<f64>, Option<f64>, Option<f64>) {
    let statements: Option<(f64,)> = sqlx::query_as(&format!(
        "{PROBE} SELECT COALESCE(SUM(calls), 0)::float8 FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND query NOT LIKE '%kbench-probe%'"
    ))
    .fetch_one(store.pool())
    .await
    .ok();
    let db: Option<(f64, f64)> = sqlx::query_as(&format!(
        "{PROBE} SELECT (xact_commit + xact_rollback)::float8, \
         (tup_inserted + tup_updated + tup_deleted)::float8 \
         FROM pg_stat_database WHERE datname = current_database()"
    ))
    .fetch_one(store.pool())
    .await
    .ok();
    (statements.map(|s| s.0), db.map(|d| d.0), db.map(|d| d.1))
}

/// Redis's `total_commands_processed`.
pub(super) async fn redis_ops(conn: &mut redis::aio::MultiplexedConnection) -> Option<f64> {
    let info: String = redis::cmd("INFO").arg("stats").query_async(conn).await.ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
}
