//! Ingest alone under a real load generator: `wrk` with a Lua script that
//! gives every event a unique id (per thread and request), 1 or 100 events
//! per request, reporting through its `done` hook as one JSON line.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// What the `done` hook prints (times in microseconds).
#[derive(Debug, Deserialize)]
pub(super) struct WrkResult {
    pub requests: u64,
    pub duration_us: u64,
    pub errors_status: u64,
    pub errors_connect: u64,
    pub errors_read: u64,
    pub errors_write: u64,
    pub errors_timeout: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

fn script(key: &str, prefix: &str, batch: usize) -> String {
    format!(
        r#"-- Written by `kairos bench-product`.
local key, prefix, batch = "{key}", "{prefix}", {batch}
local threads, counter = {{}}, 0
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
end
local function event(id, n)
  return '{{"id":"' .. id .. '","type":"user.logged_in","account_id":"a' .. (n % 100) ..
         '","occurred_at":"2026-11-20T10:00:00Z","data":{{}}}}'
end
function request()
  counter = counter + 1
  local base = prefix .. "-" .. tid .. "-" .. counter
  local body
  if batch == 1 then
    body = event(base, counter)
  else
    local parts = {{}}
    for j = 1, batch do parts[j] = event(base .. "-" .. j, counter + j) end
    body = '{{"events":[' .. table.concat(parts, ",") .. ']}}'
  end
  return wrk.format(nil, nil, nil, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {{"requests":%d,"duration_us":%d,"errors_status":%d,"errors_connect":%d,' ..
    '"errors_read":%d,"errors_write":%d,"errors_timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"#
    )
}

/// Runs `wrk -t THREADS -c CONNS -d DURATION` against `POST /v1/events`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    wrk: &Path,
    dir: &Path,
    base: &str,
    key: &str,
    prefix: &str,
    batch: usize,
    threads: usize,
    conns: usize,
    duration: Duration,
) -> anyhow::Result<WrkResult> {
    let path = dir.join(format!("{prefix}.lua"));
    std::fs::write(&path, script(key, prefix, batch))?;
    let out = tokio::process::Command::new(wrk)
        .arg(format!("-t{threads}"))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .args(["--timeout", "30s", "-s"])
        .arg(&path)
        .arg(format!("{base}/v1/events"))
        .output()
        .await
        .with_context(|| format!("running {}", wrk.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "wrk failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRKJSON "))
        .with_context(|| format!("no result line in wrk's output: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}
