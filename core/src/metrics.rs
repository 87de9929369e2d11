//! The metrics every role records, by name, and the one function (or, for
//! the per-job ones, [`KindMetrics`]) that records each: callers never
//! spell a metric name or a label.
//!
//! Recording goes through the `metrics` facade (an atomic add or a bucket
//! increment in this process; no store round trip, no lock held across a
//! job). Nothing is kept when no recorder is installed (tests, CLI
//! commands). The `kairos` binary installs the Prometheus recorder
//! (`kairos_api::metrics::install`) and `/metrics` renders it; the gauges
//! that describe the whole deployment (queue depth, oldest ready job, jobs
//! running, workers alive, paused kinds) are not recorded here but computed
//! from the store and queue when `/metrics` is scraped, so they are true
//! across processes.
//!
//! Counters and histograms are per process: sum them across instances
//! (`sum by (kind) (rate(kairos_jobs_succeeded_total[5m]))`).
//!
//! The names are part of the operator's interface (dashboards, alerts):
//! ARCHITECTURE.md and README.md list them; `ops/grafana/kairos.json` uses
//! them. Rename one only with a note in both.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

/// Metric names, as exposed to Prometheus.
pub mod names {
    /// Counter `{method, route, status}`: HTTP requests answered by the API
    /// (`route` is the matched route template, `unmatched` otherwise).
    pub const HTTP_REQUESTS: &str = "kairos_http_requests_total";
    /// Histogram `{method, route}`: HTTP request handling time, seconds.
    pub const HTTP_REQUEST_SECONDS: &str = "kairos_http_request_duration_seconds";
    /// Counter: events stored by ingest (new, not replays).
    pub const EVENTS_ACCEPTED: &str = "kairos_events_accepted_total";
    /// Counter: events ingest recognised as replays of stored ones.
    pub const EVENTS_DUPLICATE: &str = "kairos_events_duplicate_total";
    /// Counter `{kind}`: attempts started by workers.
    pub const JOB_ATTEMPTS: &str = "kairos_job_attempts_total";
    /// Counter `{kind}`: jobs that succeeded.
    pub const JOBS_SUCCEEDED: &str = "kairos_jobs_succeeded_total";
    /// Counter `{kind}`: failed attempts that will be retried.
    pub const JOBS_RETRIED: &str = "kairos_jobs_retried_total";
    /// Counter `{kind}`: jobs dead-lettered (a permanent error or their last attempt).
    pub const JOBS_DEAD: &str = "kairos_jobs_dead_total";
    /// Histogram `{kind}`: run time of one attempt, seconds.
    pub const JOB_DURATION_SECONDS: &str = "kairos_job_duration_seconds";
    /// Histogram `{kind}`: from ready to the start of an attempt, seconds,
    /// every attempt: a first from queued (or its `run_after`), a retry
    /// from the end of its backoff (recorded on the row as `run_after`).
    pub const JOB_WAIT_SECONDS: &str = "kairos_job_wait_seconds";
    /// Gauge `{kind}` (on scrape, from the store): jobs running now, all workers.
    pub const JOBS_IN_FLIGHT: &str = "kairos_jobs_in_flight";
    /// Gauge `{kind, state}` (on scrape, from the queue): jobs on the
    /// queue, `state` = `ready` | `leased` | `delayed`.
    pub const QUEUE_DEPTH: &str = "kairos_queue_depth";
    /// Gauge `{kind}` (on scrape, from the store): age of the oldest job
    /// queued and due but not started, seconds (0 when none waits).
    pub const QUEUE_OLDEST_READY_AGE: &str = "kairos_queue_oldest_ready_age_seconds";
    /// Gauge `{kind}` (on scrape, from the store): 1 while the kind is paused.
    pub const QUEUE_PAUSED: &str = "kairos_queue_paused";
    /// Gauge (on scrape, from the store): worker processes heartbeating.
    pub const WORKERS_ALIVE: &str = "kairos_workers_alive";
    /// Gauge (on scrape): 1 when the last scrape could not read the store
    /// or queue (the deployment gauges above are then stale or absent).
    pub const SCRAPE_ERROR: &str = "kairos_scrape_error";
    /// Histogram `{model}`: one model inference call (a whole batch), seconds.
    pub const MODEL_INFERENCE_SECONDS: &str = "kairos_model_inference_seconds";
    /// Histogram `{model}`: texts per inference batch.
    pub const MODEL_BATCH_SIZE: &str = "kairos_model_batch_size";
    /// Counter `{provider, model, outcome}`: LLM calls; `outcome` = `ok` | `error` | `timeout`.
    pub const LLM_CALLS: &str = "kairos_llm_calls_total";
    /// Histogram `{provider, model}`: LLM call time, seconds.
    pub const LLM_CALL_SECONDS: &str = "kairos_llm_call_duration_seconds";
    /// Counter `{provider, model, direction}`: LLM tokens; `direction` = `prompt` | `completion`.
    pub const LLM_TOKENS: &str = "kairos_llm_tokens_total";
    /// Counter `{from, to, reason}`: LLM fallbacks (`to` may be `template`).
    pub const LLM_FALLBACKS: &str = "kairos_llm_fallbacks_total";
    /// Counter `{schedule, outcome}`: schedule ticks recorded;
    /// `outcome` = `fired` | `skipped` | `catch_up`.
    pub const SCHEDULER_TICKS: &str = "kairos_scheduler_ticks_total";
    /// Counter `{schedule}`: ticks found later than `scheduler.misfire_threshold`.
    pub const SCHEDULER_MISFIRES: &str = "kairos_scheduler_misfires_total";
    /// Counter: jobs the dispatcher queued after their producer did not.
    pub const DISPATCHED: &str = "kairos_dispatcher_dispatched_total";
    /// Gauge `{version}`: always 1; the running version.
    pub const BUILD_INFO: &str = "kairos_build_info";

    /// Every name above (for the checks that docs and dashboards use only these).
    pub const ALL: &[&str] = &[
        HTTP_REQUESTS,
        HTTP_REQUEST_SECONDS,
        EVENTS_ACCEPTED,
        EVENTS_DUPLICATE,
        JOB_ATTEMPTS,
        JOBS_SUCCEEDED,
        JOBS_RETRIED,
        JOBS_DEAD,
        JOB_DURATION_SECONDS,
        JOB_WAIT_SECONDS,
        JOBS_IN_FLIGHT,
        QUEUE_DEPTH,
        QUEUE_OLDEST_READY_AGE,
        QUEUE_PAUSED,
        WORKERS_ALIVE,
        SCRAPE_ERROR,
        MODEL_INFERENCE_SECONDS,
        MODEL_BATCH_SIZE,
        LLM_CALLS,
        LLM_CALL_SECONDS,
        LLM_TOKENS,
        LLM_FALLBACKS,
        SCHEDULER_TICKS,
        SCHEDULER_MISFIRES,
        DISPATCHED,
        BUILD_INFO,
    ];
}

/// Buckets of the `*_seconds` histograms: 1 ms to 5 min.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Buckets of [`names::MODEL_BATCH_SIZE`].
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// How an attempt ended, for the outcome counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// It succeeded.
    Succeeded,
    /// It failed and will be retried.
    Retried,
    /// It failed for good.
    Dead,
}

/// An HTTP request was answered.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    counter!(names::HTTP_REQUESTS, "method" => method.to_owned(), "route" => route.to_owned(), "status" => status.to_string())
        .increment(1);
    histogram!(names::HTTP_REQUEST_SECONDS, "method" => method.to_owned(), "route" => route.to_owned())
        .record(elapsed.as_secs_f64());
}

/// Ingest stored `accepted` new events and recognised `duplicate` replays.
pub fn events_ingested(accepted: u64, duplicate: u64) {
    counter!(names::EVENTS_ACCEPTED).increment(accepted);
    counter!(names::EVENTS_DUPLICATE).increment(duplicate);
}

/// The job metrics of one kind, resolved once (a worker builds one per kind
/// at start): recording is then an atomic add or a bucket push, with no
/// label allocation or registry lookup per job.
#[derive(Clone)]
pub struct KindMetrics {
    attempts: metrics::Counter,
    wait: metrics::Histogram,
    duration: metrics::Histogram,
    succeeded: metrics::Counter,
    retried: metrics::Counter,
    dead: metrics::Counter,
}

impl KindMetrics {
    /// The handles of `kind`'s series in the installed recorder (no-ops
    /// when none is installed, so build them after installing it).
    pub fn new(kind: &str) -> Self {
        let kind = kind.to_owned();
        Self {
            attempts: counter!(names::JOB_ATTEMPTS, "kind" => kind.clone()),
            wait: histogram!(names::JOB_WAIT_SECONDS, "kind" => kind.clone()),
            duration: histogram!(names::JOB_DURATION_SECONDS, "kind" => kind.clone()),
            succeeded: counter!(names::JOBS_SUCCEEDED, "kind" => kind.clone()),
            retried: counter!(names::JOBS_RETRIED, "kind" => kind.clone()),
            dead: counter!(names::JOBS_DEAD, "kind" => kind),
        }
    }

    /// An attempt started; `wait` is the time since it became ready (when
    /// the row knows it).
    pub fn started(&self, wait: Option<Duration>) {
        self.attempts.increment(1);
        if let Some(w) = wait {
            self.wait.record(w.as_secs_f64());
        }
    }

    /// An attempt ran for `elapsed`.
    pub fn ran(&self, elapsed: Duration) {
        self.duration.record(elapsed.as_secs_f64());
    }

    /// An attempt's outcome was recorded in the store.
    pub fn settled(&self, outcome: JobOutcome) {
        match outcome {
            JobOutcome::Succeeded => &self.succeeded,
            JobOutcome::Retried => &self.retried,
            JobOutcome::Dead => &self.dead,
        }
        .increment(1);
    }
}

/// One inference call of `model` over `batch` inputs took `elapsed`.
pub fn model_inference(model: &str, batch: usize, elapsed: Duration) {
    histogram!(names::MODEL_INFERENCE_SECONDS, "model" => model.to_owned()).record(elapsed.as_secs_f64());
    histogram!(names::MODEL_BATCH_SIZE, "model" => model.to_owned()).record(batch as f64);
}

/// One LLM call: `outcome` is `ok`, `error` or `timeout`; tokens as the
/// provider reported them (0 when unknown).
pub fn llm_call(
    provider: &str,
    model: &str,
    outcome: &str,
    elapsed: Duration,
    prompt_tokens: u64,
    completion_tokens: u64,
) {
    counter!(names::LLM_CALLS, "provider" => provider.to_owned(), "model" => model.to_owned(), "outcome" => outcome.to_owned())
        .increment(1);
    histogram!(names::LLM_CALL_SECONDS, "provider" => provider.to_owned(), "model" => model.to_owned())
        .record(elapsed.as_secs_f64());
    for (direction, n) in [("prompt", prompt_tokens), ("completion", completion_tokens)] {
        if n > 0 {
            counter!(names::LLM_TOKENS, "provider" => provider.to_owned(), "model" => model.to_owned(), "direction" => direction)
                .increment(n);
        }
    }
}

/// An LLM call fell back from `from` to `to` (another model, or
/// `template`) because of `reason` (e.g. `timeout`, `error`, `invalid_output`).
pub fn llm_fallback(from: &str, to: &str, reason: &str) {
    counter!(names::LLM_FALLBACKS, "from" => from.to_owned(), "to" => to.to_owned(), "reason" => reason.to_owned())
        .increment(1);
}

/// A schedule tick was recorded: `outcome` is `fired`, `skipped` or `catch_up`.
pub fn schedule_tick(schedule: &str, outcome: &str) {
    counter!(names::SCHEDULER_TICKS, "schedule" => schedule.to_owned(), "outcome" => outcome.to_owned()).increment(1);
}

/// A schedule's tick was found late (a misfire).
pub fn schedule_misfire(schedule: &str) {
    counter!(names::SCHEDULER_MISFIRES, "schedule" => schedule.to_owned()).increment(1);
}

/// The dispatcher queued `n` jobs left pending.
pub fn dispatched(n: u64) {
    counter!(names::DISPATCHED).increment(n);
}

/// The deployment gauges, as read at a scrape.
pub mod gauges {
    use super::{gauge, names};

    /// Jobs of `kind` running now (all workers).
    pub fn in_flight(kind: &str, n: u64) {
        gauge!(names::JOBS_IN_FLIGHT, "kind" => kind.to_owned()).set(n as f64);
    }

    /// Jobs of `kind` on the queue, by `state` (`ready`, `leased`, `delayed`).
    pub fn queue_depth(kind: &str, state: &'static str, n: u64) {
        gauge!(names::QUEUE_DEPTH, "kind" => kind.to_owned(), "state" => state).set(n as f64);
    }

    /// Age of `kind`'s oldest ready job, seconds.
    pub fn oldest_ready_age(kind: &str, seconds: f64) {
        gauge!(names::QUEUE_OLDEST_READY_AGE, "kind" => kind.to_owned()).set(seconds);
    }

    /// Whether `kind` is paused.
    pub fn paused(kind: &str, paused: bool) {
        gauge!(names::QUEUE_PAUSED, "kind" => kind.to_owned()).set(if paused { 1.0 } else { 0.0 });
    }

    /// Worker processes alive.
    pub fn workers_alive(n: u64) {
        gauge!(names::WORKERS_ALIVE).set(n as f64);
    }

    /// Whether the scrape failed to read the store or queue.
    pub fn scrape_error(failed: bool) {
        gauge!(names::SCRAPE_ERROR).set(if failed { 1.0 } else { 0.0 });
    }

    /// The running version.
    pub fn build_info(version: &'static str) {
        gauge!(names::BUILD_INFO, "version" => version).set(1.0);
    }
}
