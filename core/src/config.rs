//! The config machinery and the sections core owns.
//!
//! One TOML file plus `KAIROS__SECTION__KEY` environment overrides
//! describes a deployment. The whole file's struct is composed by the
//! `kairos` binary crate (it knows every section: these, and the job kinds'
//! own in `kairos-jobs`); this module gives it the pieces: [`parse`] (TOML
//! with `toml`'s line, column and key in errors, then the overrides),
//! [`ConfigError`], and the core sections (`server`, `store`, `queue`,
//! `startup`, `api`, `worker`, `scheduler`, `jobs`), each with a `validate` for what
//! serde cannot check, returning the key within the section ([`KeyError`]).
//!
//! Why hand-rolled on top of `toml` rather than a layered-config crate: admins
//! need errors that name the file, the line and the key. Nothing starts until
//! the whole file is valid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::rules::RuleConfig;
use crate::schedule::ScheduleConfig;

/// The prefix of environment variables that override config keys:
/// `KAIROS__QUEUE__BACKEND=redis` sets `queue.backend`.
pub const ENV_PREFIX: &str = "KAIROS__";

/// Why a configuration could not be used. Every variant names where the
/// problem is, so an admin can fix it without reading code.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (unknown key,
    /// wrong type, bad duration); `toml` names line, column and key.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file that failed.
        path: String,
        /// `toml`'s message, with the line, column and offending key.
        message: String,
    },
    /// An environment override does not fit the schema.
    #[error("invalid environment override {var}: {message}")]
    Env {
        /// The variable name, e.g. `KAIROS__QUEUE__URL`.
        var: String,
        /// Why it was rejected.
        message: String,
    },
    /// A value parsed but makes no sense (bad URL, zero concurrency, a rule
    /// naming an unknown job kind...).
    #[error("invalid config {path}: key `{key}`: {reason}")]
    Invalid {
        /// The file (or `<env>` when the value came from the environment).
        path: String,
        /// The dotted key path, e.g. `jobs.activity.concurrency`.
        key: String,
        /// What is wrong and what is expected.
        reason: String,
    },
}

/// A value that parsed but makes no sense: (dotted key within its section,
/// what is wrong). The composer of the whole config prefixes the section
/// and names the file ([`ConfigError::Invalid`]).
pub type KeyError = (String, String);

/// Reads a config file's text.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The `KAIROS__*` variables of the process environment.
pub fn env_overrides() -> Vec<(String, String)> {
    std::env::vars().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect()
}

/// Parses config `text` (named `source` in errors) into `T`, then applies
/// the `KAIROS__*` overrides in `env`. Mistakes in the file are reported
/// with `toml`'s line, column and key; a bad override names its variable.
pub fn parse<T: DeserializeOwned>(text: &str, source: &str, env: &[(String, String)]) -> Result<T, ConfigError> {
    let parse_err = |e: toml::de::Error| ConfigError::Parse {
        path: source.to_owned(),
        message: e.to_string(),
    };
    // Deserialize straight from the text first: that is what gives
    // line/column information for mistakes in the file.
    let mut config: T = toml::from_str(text).map_err(parse_err)?;
    if !env.is_empty() {
        let mut table: toml::Table = toml::from_str(text).map_err(parse_err)?;
        for (var, value) in env {
            apply_env_override(&mut table, var, value)?;
            config = T::deserialize(table.clone()).map_err(|e| ConfigError::Env {
                var: var.clone(),
                message: e.to_string(),
            })?;
        }
    }
    Ok(config)
}

fn key_err(key: &str, reason: impl Into<String>) -> KeyError {
    (key.to_owned(), reason.into())
}

fn check_url(key: &str, value: &str, schemes: &[&str]) -> Result<(), KeyError> {
    let url = url::Url::parse(value).map_err(|e| key_err(key, format!("`{value}` is not a URL: {e}")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(key_err(
            key,
            format!(
                "scheme `{}` not supported here (expected {})",
                url.scheme(),
                schemes.join(" or ")
            ),
        ));
    }
    Ok(())
}

/// HTTP listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind, e.g. `127.0.0.1:8080`; port 0 picks a free port.
    pub listen: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

/// The relational store: SQLite for the embedded default, Postgres when
/// distributed. One schema, one code path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://data/kairos.db` or `postgres://user@host/db`.
    pub url: String,
    /// Pool size per process.
    pub max_connections: u32,
    /// Apply migrations when a role starts (on by default for the embedded
    /// store; distributed deployments usually run `kairos migrate` once).
    pub migrate_on_start: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/kairos.db".into(),
            max_connections: 8,
            migrate_on_start: true,
        }
    }
}

/// Which queue backend carries jobs from producers to workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackendKind {
    /// A table in an SQLite file: no services needed.
    Sqlite,
    /// Redis Streams with consumer groups: many workers on many hosts.
    Redis,
}

/// Queue settings shared by producers (api, scheduler) and workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// `sqlite` or `redis`.
    pub backend: QueueBackendKind,
    /// `sqlite://data/kairos.db` or `redis://127.0.0.1:6379`.
    pub url: String,
    /// Namespace for every Redis key, so several deployments (or tests) can
    /// share one Redis.
    pub prefix: String,
    /// How long a fetched job stays leased without a heartbeat. A live
    /// worker renews the leases of the jobs it holds every `lease / 3`, so a
    /// job may run as long as its timeout allows, while a worker that died
    /// (SIGKILL, lost host) has its jobs re-delivered within
    /// `lease + reclaim_interval` — 15 s with the defaults.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Deprecated: leases used to be `timeout + lease_margin`; they are now
    /// renewed by heartbeats (see `lease`). Still accepted so that existing
    /// files load; ignored, with a warning at start.
    #[serde(with = "humantime_serde")]
    pub lease_margin: Option<Duration>,
    /// How often each worker moves jobs whose lease expired (all of them,
    /// not only as many as it has free slots) back onto the queue.
    #[serde(with = "humantime_serde")]
    pub reclaim_interval: Duration,
    /// Most jobs fetched (and acknowledged) per round trip.
    pub fetch_batch: usize,
    /// How long a fetch waits for work before returning empty.
    #[serde(with = "humantime_serde")]
    pub fetch_wait: Duration,
    /// Redis response timeout for non-blocking commands. redis-rs's default
    /// (500 ms) turned load stalls into fatal errors; ours is generous and
    /// errors are retried anyway.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// `[queue.fairness]`: how a kind's queue is shared between tenants
    /// (weights, per-tenant limits).
    pub fairness: crate::queue::fairness::FairnessConfig,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            backend: QueueBackendKind::Sqlite,
            url: "sqlite://data/kairos.db".into(),
            prefix: "kairos".into(),
            lease: Duration::from_secs(10),
            lease_margin: None,
            reclaim_interval: Duration::from_secs(5),
            fetch_batch: 128,
            fetch_wait: Duration::from_millis(500),
            response_timeout: Duration::from_secs(10),
            fairness: crate::queue::fairness::FairnessConfig::default(),
        }
    }
}

/// Limits on what clients may send.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Most events in one `POST /v1/events` batch.
    pub max_batch: usize,
    /// Largest request body accepted, in bytes (larger → 413).
    pub max_body_bytes: usize,
    /// Default sustained events per second per tenant (a tenant row may
    /// override it). Enforced per API process.
    pub rate_per_second: u32,
    /// Burst allowance on top of the rate, in events.
    pub rate_burst: u32,
    /// Name of the environment variable holding the admin token (admin
    /// endpoints are off when it is unset). The token itself never goes in
    /// a file.
    pub admin_token_env: String,
    /// A connection whose request line and headers have not all arrived
    /// this long after it opened (or after its previous response) is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A request body not fully received this long after the request's
    /// headers (on any route) gets 408 and the connection is closed.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_batch: 1000,
            max_body_bytes: 4 * 1024 * 1024,
            rate_per_second: 2000,
            rate_burst: 4000,
            admin_token_env: "KAIROS_ADMIN_TOKEN".into(),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// How a role waits, when it starts, for a store or queue that does not
/// answer yet (a database restarting, services started in any order):
/// retries with exponential backoff, a log line each time, up to `wait`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StartupConfig {
    /// Longest wait for the store and the queue together; `0s` fails at the
    /// first refused connection.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
    /// First delay between attempts; doubles each time.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Cap on the delay between attempts.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
}

impl Default for StartupConfig {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(120),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
        }
    }
}

impl StartupConfig {
    /// Checks the backoff.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.backoff_initial.is_zero() {
            return Err(key_err("backoff_initial", "must be longer than 0s"));
        }
        if self.backoff_max < self.backoff_initial {
            return Err(key_err("backoff_max", "must not be below backoff_initial"));
        }
        Ok(())
    }

    /// The delay after failed attempt `attempt` (1-based): doubling from
    /// `backoff_initial`, capped at `backoff_max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.backoff_initial.saturating_mul(factor).min(self.backoff_max)
    }
}

/// Worker process settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// On SIGTERM/SIGINT, how long in-flight jobs may run before they are
    /// handed back to the queue.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Only these kinds are consumed by this process (empty = all kinds).
    pub kinds: Vec<String>,
    /// How often the worker records its heartbeat in the store (`workers`
    /// table; `kairos workers`). It is shown as dead after three missed.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How often the worker reads the paused kinds from the store
    /// (`kairos queues pause`): a pause takes hold within this plus one
    /// `queue.fetch_wait`.
    #[serde(with = "humantime_serde")]
    pub pause_poll: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(30),
            kinds: Vec::new(),
            heartbeat_interval: Duration::from_secs(5),
            pause_poll: Duration::from_millis(500),
        }
    }
}

/// Scheduler settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// A tick later than this when a scheduler gets to it (the schedulers
    /// were down) is a misfire, handled by the schedule's `misfire` policy.
    #[serde(with = "humantime_serde")]
    pub misfire_threshold: Duration,
    /// How often the config file is checked for changes (it is also
    /// re-read on SIGHUP).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// How often stored-but-unqueued jobs are looked for.
    #[serde(with = "humantime_serde")]
    pub dispatch_interval: Duration,
    /// A job still `pending` this long after it was stored is dispatched by
    /// the scheduler (the API normally queues it within milliseconds).
    #[serde(with = "humantime_serde")]
    pub dispatch_after: Duration,
    /// Jobs an ingest stored `queued` but has not confirmed pushed this
    /// long after its commit (its process died in between) are handed back
    /// to the dispatcher. Keep it well above the queue's slowest push: a
    /// push that outlasts it leaves its jobs with two messages (harmless,
    /// the second is acknowledged without running).
    #[serde(with = "humantime_serde")]
    pub push_deadline: Duration,
    /// How often the queue is checked against the store: after the queue
    /// comes back without its data (a Redis restarted empty), every job
    /// the store holds `queued` or `retrying` is pushed again within this
    /// interval (plus the time the push takes).
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// How long schedule tick records are kept (each schedule's latest is
    /// always kept). Pruned hourly by every scheduler replica.
    #[serde(with = "humantime_serde")]
    pub tick_retention: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            misfire_threshold: Duration::from_secs(60),
            reload_interval: Duration::from_secs(2),
            dispatch_interval: Duration::from_secs(1),
            dispatch_after: Duration::from_secs(5),
            push_deadline: Duration::from_secs(30),
            reconcile_interval: Duration::from_secs(5),
            tick_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Execution policy of one job kind.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobPolicy {
    /// Jobs of this kind run at once per worker process.
    pub concurrency: usize,
    /// Attempts before the job is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with full jitter.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Cap on the retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// An attempt running longer than this fails.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for JobPolicy {
    fn default() -> Self {
        Self {
            concurrency: 8,
            max_attempts: 5,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            timeout: Duration::from_secs(60),
        }
    }
}

/// `[jobs.KIND]`: each kind's execution policy, by kind name.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct JobPolicies(pub BTreeMap<String, JobPolicy>);

impl JobPolicies {
    /// The policy for `kind`: its `[jobs.KIND]` table or the defaults.
    pub fn get(&self, kind: &str) -> JobPolicy {
        self.0.get(kind).cloned().unwrap_or_default()
    }

    /// The configured policies, by kind.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &JobPolicy)> {
        self.0.iter()
    }
}

impl ServerConfig {
    /// Checks the listen address.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(key_err(
                "listen",
                format!("`{}` is not an address like 127.0.0.1:8080", self.listen),
            ));
        }
        Ok(())
    }
}

impl StoreConfig {
    /// Checks the URL and pool size.
    pub fn validate(&self) -> Result<(), KeyError> {
        check_url("url", &self.url, &["sqlite", "postgres", "postgresql"])?;
        if self.max_connections == 0 {
            return Err(key_err("max_connections", "must be at least 1"));
        }
        Ok(())
    }
}

impl QueueConfig {
    /// Checks the URL against the backend, the prefix and the batch size.
    pub fn validate(&self) -> Result<(), KeyError> {
        let schemes: &[&str] = match self.backend {
            QueueBackendKind::Sqlite => &["sqlite"],
            QueueBackendKind::Redis => &["redis", "rediss"],
        };
        check_url("url", &self.url, schemes)?;
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return Err(key_err("prefix", "must be non-empty, without spaces"));
        }
        if self.fetch_batch == 0 || self.fetch_batch > 10_000 {
            return Err(key_err("fetch_batch", "must be between 1 and 10000"));
        }
        if self.lease < Duration::from_millis(300) || self.lease > Duration::from_secs(3600) {
            return Err(key_err("lease", "must be between 300ms and 1h"));
        }
        if self.reclaim_interval < Duration::from_millis(50) || self.reclaim_interval > self.lease {
            return Err(key_err("reclaim_interval", "must be between 50ms and `lease`"));
        }
        self.fairness.validate()?;
        Ok(())
    }
}

impl ApiConfig {
    /// Checks the limits.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.max_batch == 0 {
            return Err(key_err("max_batch", "must be at least 1"));
        }
        if self.max_body_bytes < 1024 {
            return Err(key_err("max_body_bytes", "must be at least 1024"));
        }
        if self.rate_per_second == 0 {
            return Err(key_err("rate_per_second", "must be at least 1"));
        }
        for (key, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
        ] {
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                return Err(key_err(key, "must be between 100ms and 1h"));
            }
        }
        Ok(())
    }
}

impl WorkerConfig {
    /// Checks that `kinds` names job kinds this binary runs, and the
    /// heartbeat and pause poll intervals.
    pub fn validate(&self, known_kinds: &[&str]) -> Result<(), KeyError> {
        if self.heartbeat_interval < Duration::from_millis(100) || self.heartbeat_interval > Duration::from_secs(600) {
            return Err(key_err("heartbeat_interval", "must be between 100ms and 10m"));
        }
        if self.pause_poll < Duration::from_millis(50) || self.pause_poll > Duration::from_secs(1) {
            return Err(key_err(
                "pause_poll",
                "must be between 50ms and 1s (a pause must take hold within 2s)",
            ));
        }
        for kind in &self.kinds {
            if !known_kinds.contains(&kind.as_str()) {
                return Err(key_err(
                    "kinds",
                    format!("unknown job kind `{kind}` (known: {})", known_kinds.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

impl JobPolicies {
    /// Checks each policy; keys are `KIND.field`.
    pub fn validate(&self, known_kinds: &[&str]) -> Result<(), KeyError> {
        for (kind, policy) in self.iter() {
            let key = |k: &str| format!("{kind}.{k}");
            if !known_kinds.contains(&kind.as_str()) {
                return Err((
                    kind.clone(),
                    format!("unknown job kind (known: {})", known_kinds.join(", ")),
                ));
            }
            if policy.concurrency == 0 {
                return Err((key("concurrency"), "must be at least 1".into()));
            }
            if policy.max_attempts == 0 {
                return Err((key("max_attempts"), "must be at least 1".into()));
            }
            if policy.timeout.is_zero() {
                return Err((key("timeout"), "must be longer than 0s".into()));
            }
            if policy.backoff_max < policy.backoff_initial {
                return Err((key("backoff_max"), "must not be below backoff_initial".into()));
            }
        }
        Ok(())
    }
}

/// Checks `[[rules]]`; keys are `[i].field`.
pub fn validate_rules(rules: &[RuleConfig], known_kinds: &[&str]) -> Result<(), KeyError> {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate(known_kinds)
            .map_err(|(key, reason)| (format!("[{i}].{key}"), reason))?;
    }
    Ok(())
}

/// Checks `[[schedules]]` (each one, and that names are unique); keys are `[i].field`.
pub fn validate_schedules(schedules: &[ScheduleConfig], known_kinds: &[&str]) -> Result<(), KeyError> {
    let mut names = std::collections::HashSet::new();
    for (i, schedule) in schedules.iter().enumerate() {
        schedule
            .validate(known_kinds)
            .map_err(|(key, reason)| (format!("[{i}].{key}"), reason))?;
        if !names.insert(schedule.name.as_str()) {
            return Err((
                format!("[{i}].name"),
                format!("`{}` is used by another schedule", schedule.name),
            ));
        }
    }
    Ok(())
}

/// Sets `KAIROS__A__B=value` at `a.b` in `table`. The value is read as a TOML
/// value when it is one (`8`, `true`, `["a"]`) and as a string otherwise, so
/// `KAIROS__QUEUE__URL=redis://...` needs no quoting.
fn apply_env_override(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            var: var.into(),
            message: "expected KAIROS__SECTION__KEY".into(),
        });
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, parents) = path.split_last().ok_or_else(|| ConfigError::Env {
        var: var.into(),
        message: "expected KAIROS__SECTION__KEY".into(),
    })?;
    let mut cursor = table;
    for part in parents {
        let entry = cursor
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.into(),
            message: format!("`{part}` is not a table"),
        })?;
    }
    cursor.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config composed as the binary composes the whole file.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        queue: QueueConfig,
        #[serde(default)]
        api: ApiConfig,
        #[serde(default)]
        jobs: JobPolicies,
    }

    fn sample(text: &str, env: &[(String, String)]) -> Result<Sample, ConfigError> {
        parse(text, "test.toml", env)
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = sample(
            "[queue]\nbackend = \"redis\"\nurl = \"redis://x\"\nconcurency = 3\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("concurency"), "{err}");
    }

    #[test]
    fn bad_duration_is_rejected_with_its_line() {
        let err = sample("[jobs.activity]\ntimeout = \"ten seconds\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn leases_are_bounded_and_the_old_margin_still_loads() {
        let q = QueueConfig {
            lease: Duration::from_millis(100),
            ..QueueConfig::default()
        };
        assert_eq!(q.validate().unwrap_err().0, "lease");
        let q = QueueConfig {
            reclaim_interval: Duration::from_secs(20),
            ..QueueConfig::default()
        };
        assert_eq!(q.validate().unwrap_err().0, "reclaim_interval");
        assert!(QueueConfig::default().validate().is_ok());
        let s = sample("[queue]\nlease_margin = \"30s\"\nlease = \"5s\"\n", &[]).unwrap();
        assert_eq!(s.queue.lease_margin, Some(Duration::from_secs(30)));
        assert_eq!(s.queue.lease, Duration::from_secs(5));
    }

    #[test]
    fn sections_name_the_key_at_fault() {
        let q = QueueConfig {
            backend: QueueBackendKind::Redis,
            url: "sqlite://x.db".into(),
            ..QueueConfig::default()
        };
        let (key, reason) = q.validate().unwrap_err();
        assert_eq!(key, "url");
        assert!(reason.contains("redis"), "{reason}");
        let s = StoreConfig {
            url: "not a url".into(),
            ..StoreConfig::default()
        };
        assert_eq!(s.validate().unwrap_err().0, "url");
        let jobs = sample("[jobs.activity]\nconcurrency = 0\n", &[]).unwrap().jobs;
        assert_eq!(jobs.validate(&["activity"]).unwrap_err().0, "activity.concurrency");
        assert_eq!(jobs.validate(&["probe"]).unwrap_err().0, "activity");
    }

    #[test]
    fn env_overrides_apply_and_name_the_variable() {
        let env = vec![
            ("KAIROS__QUEUE__BACKEND".to_string(), "redis".to_string()),
            ("KAIROS__QUEUE__URL".to_string(), "redis://127.0.0.1:6379".to_string()),
            ("KAIROS__JOBS__ACTIVITY__CONCURRENCY".to_string(), "3".to_string()),
        ];
        let c = sample("", &env).unwrap();
        assert_eq!(c.queue.backend, QueueBackendKind::Redis);
        assert_eq!(c.jobs.get("activity").concurrency, 3);
        assert_eq!(c.api.max_batch, ApiConfig::default().max_batch);

        let bad = vec![("KAIROS__API__MAX_BATCH".to_string(), "lots".to_string())];
        let err = sample("", &bad).unwrap_err().to_string();
        assert!(err.contains("KAIROS__API__MAX_BATCH"), "{err}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn keys() -> impl Strategy<Value = String> {
            "[a-z_]{1,16}"
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Any text: a config or an error, never a panic.
            #[test]
            fn arbitrary_text_never_panics(text in "(?s).{0,200}", env_val in ".{0,20}") {
                let _ = sample(&text, &[]);
                let _ = sample("", &[("KAIROS__API__MAX_BATCH".into(), env_val)]);
            }

            /// An unknown key in a section is refused with its name and line.
            #[test]
            fn unknown_keys_are_named(section in prop_oneof![Just("api"), Just("queue")], key in keys(), line in 0usize..4) {
                let known = ["max_batch", "max_body_bytes", "rate_per_second", "rate_burst", "admin_token_env",
                    "header_read_timeout", "body_read_timeout", "backend", "url", "prefix", "lease_margin",
                    "reclaim_interval", "fetch_batch", "fetch_wait", "response_timeout"];
                prop_assume!(!known.contains(&key.as_str()));
                let text = format!("{}[{section}]\n{key} = 1\n", "\n".repeat(line));
                let err = sample(&text, &[]).unwrap_err().to_string();
                prop_assert!(err.contains(&key), "{}", err);
                let line_no = format!("line {}", line + 2);
                prop_assert!(err.contains(&line_no), "{}", err);
            }

            /// Values written to a file come back as written, and the
            /// section's checks name the key at fault.
            #[test]
            fn api_values_round_trip(max_batch in 0usize..100_000, body in 0usize..10_000_000,
                                     rate in 0u32..100_000, header_ms in 1u64..7_200_000) {
                let text = format!(
                    "[api]\nmax_batch = {max_batch}\nmax_body_bytes = {body}\nrate_per_second = {rate}\nheader_read_timeout = \"{header_ms}ms\"\n"
                );
                let api = sample(&text, &[]).unwrap().api;
                prop_assert_eq!(api.max_batch, max_batch);
                prop_assert_eq!(api.max_body_bytes, body);
                prop_assert_eq!(api.rate_per_second, rate);
                prop_assert_eq!(api.header_read_timeout, Duration::from_millis(header_ms));
                match api.validate() {
                    Ok(()) => {
                        prop_assert!(max_batch > 0 && body >= 1024 && rate > 0);
                        prop_assert!((100..=3_600_000).contains(&header_ms));
                    }
                    Err((key, reason)) => {
                        prop_assert!(["max_batch", "max_body_bytes", "rate_per_second", "header_read_timeout"]
                            .contains(&key.as_str()), "{} {}", key, reason);
                    }
                }
            }
        }
    }
}
