//! Typed configuration, read from one TOML file plus `KAIROS__SECTION__KEY`
//! environment overrides, and validated before any role starts.
//!
//! Why hand-rolled on top of `toml` rather than a layered-config crate: admins
//! need errors that name the file, the line and the key. `toml` reports the
//! line and column of a bad value or an unknown key; semantic checks
//! ([`Config::validate`]) name the dotted key path. Nothing starts until the
//! whole file is valid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The whole configuration of a Kairos process. Every role reads the same
/// file so that a deployment is described in one place.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listener of the `api` role.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where events, tenants, job runs and results live.
    #[serde(default)]
    pub store: StoreConfig,
    /// Where queued jobs wait for workers.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Ingest limits.
    #[serde(default)]
    pub api: ApiConfig,
    /// Worker process behaviour (shutdown grace, polling).
    #[serde(default)]
    pub worker: WorkerConfig,
    /// Scheduler behaviour (the dispatcher of stored jobs).
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    /// Per job kind execution policy; kinds not listed use [`JobPolicy::default`].
    #[serde(default)]
    pub jobs: BTreeMap<String, JobPolicy>,
    /// Which events trigger which job kinds.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Cron schedules.
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    /// Churn scoring: risk thresholds, languages, recommended actions.
    #[serde(default)]
    pub churn: crate::churn::ChurnConfig,
    /// Sentiment scoring of comments and tickets: model, batching, alerts.
    #[serde(default)]
    pub sentiment: crate::sentiment::SentimentConfig,
    /// Where each tenant's alerts are delivered (by tenant name or id).
    #[serde(default)]
    pub webhooks: crate::sentiment::Webhooks,
    /// Profile defaults: the language and time zone people and accounts
    /// fall back to.
    #[serde(default)]
    pub profiles: crate::profile::ProfilesConfig,
    /// The file this was read from, for error messages (not a config key).
    #[serde(skip)]
    pub source: String,
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
    /// How much longer than a job's timeout its lease lasts. A job whose
    /// worker died (SIGKILL, lost host) is re-delivered at most
    /// `timeout + lease_margin` after it was fetched.
    #[serde(with = "humantime_serde")]
    pub lease_margin: Duration,
    /// How often a worker looks for orphaned (expired-lease) jobs.
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
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            backend: QueueBackendKind::Sqlite,
            url: "sqlite://data/kairos.db".into(),
            prefix: "kairos".into(),
            lease_margin: Duration::from_secs(30),
            reclaim_interval: Duration::from_secs(5),
            fetch_batch: 128,
            fetch_wait: Duration::from_millis(500),
            response_timeout: Duration::from_secs(10),
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
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_batch: 1000,
            max_body_bytes: 4 * 1024 * 1024,
            rate_per_second: 2000,
            rate_burst: 4000,
            admin_token_env: "KAIROS_ADMIN_TOKEN".into(),
        }
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
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(30),
            kinds: Vec::new(),
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
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            misfire_threshold: Duration::from_secs(60),
            reload_interval: Duration::from_secs(2),
            dispatch_interval: Duration::from_secs(1),
            dispatch_after: Duration::from_secs(5),
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

impl Config {
    /// Reads `path`, applies `KAIROS__*` overrides from the process
    /// environment, and validates against the job kinds this binary knows.
    pub fn load(path: &Path, known_kinds: &[&str]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        Self::from_toml(&text, &path.display().to_string(), &env, known_kinds)
    }

    /// Parses config text (named `source` in errors) with the given
    /// overrides. Split from [`Config::load`] so tests need no files or
    /// process-wide environment.
    pub fn from_toml(
        text: &str,
        source: &str,
        env: &[(String, String)],
        known_kinds: &[&str],
    ) -> Result<Self, ConfigError> {
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            path: source.to_owned(),
            message: e.to_string(),
        };
        // Deserialize straight from the text first: that is what gives
        // line/column information for mistakes in the file.
        let mut config: Config = toml::from_str(text).map_err(parse_err)?;
        if !env.is_empty() {
            let mut table: toml::Table = toml::from_str(text).map_err(parse_err)?;
            for (var, value) in env {
                apply_env_override(&mut table, var, value)?;
                config = Config::deserialize(table.clone()).map_err(|e| ConfigError::Env {
                    var: var.clone(),
                    message: e.to_string(),
                })?;
            }
        }
        config.source = source.to_owned();
        config.validate(known_kinds)?;
        Ok(config)
    }

    /// The policy for `kind`: its `[jobs.KIND]` table or the defaults.
    pub fn policy(&self, kind: &str) -> JobPolicy {
        self.jobs.get(kind).cloned().unwrap_or_default()
    }

    fn invalid(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.source.clone(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Semantic checks that serde cannot express.
    pub fn validate(&self, known_kinds: &[&str]) -> Result<(), ConfigError> {
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(self.invalid(
                "server.listen",
                format!("`{}` is not an address like 127.0.0.1:8080", self.server.listen),
            ));
        }
        check_url(
            self,
            "store.url",
            &self.store.url,
            &["sqlite", "postgres", "postgresql"],
        )?;
        if self.store.max_connections == 0 {
            return Err(self.invalid("store.max_connections", "must be at least 1"));
        }
        let schemes: &[&str] = match self.queue.backend {
            QueueBackendKind::Sqlite => &["sqlite"],
            QueueBackendKind::Redis => &["redis", "rediss"],
        };
        check_url(self, "queue.url", &self.queue.url, schemes)?;
        if self.queue.prefix.is_empty() || self.queue.prefix.contains(char::is_whitespace) {
            return Err(self.invalid("queue.prefix", "must be non-empty, without spaces"));
        }
        if self.queue.fetch_batch == 0 || self.queue.fetch_batch > 10_000 {
            return Err(self.invalid("queue.fetch_batch", "must be between 1 and 10000"));
        }
        if self.api.max_batch == 0 {
            return Err(self.invalid("api.max_batch", "must be at least 1"));
        }
        if self.api.max_body_bytes < 1024 {
            return Err(self.invalid("api.max_body_bytes", "must be at least 1024"));
        }
        if self.api.rate_per_second == 0 {
            return Err(self.invalid("api.rate_per_second", "must be at least 1"));
        }
        for kind in &self.worker.kinds {
            if !known_kinds.contains(&kind.as_str()) {
                return Err(self.invalid(
                    "worker.kinds",
                    format!("unknown job kind `{kind}` (known: {})", known_kinds.join(", ")),
                ));
            }
        }
        for (kind, policy) in &self.jobs {
            let key = |k: &str| format!("jobs.{kind}.{k}");
            if !known_kinds.contains(&kind.as_str()) {
                return Err(self.invalid(
                    format!("jobs.{kind}"),
                    format!("unknown job kind (known: {})", known_kinds.join(", ")),
                ));
            }
            if policy.concurrency == 0 {
                return Err(self.invalid(key("concurrency"), "must be at least 1"));
            }
            if policy.max_attempts == 0 {
                return Err(self.invalid(key("max_attempts"), "must be at least 1"));
            }
            if policy.timeout.is_zero() {
                return Err(self.invalid(key("timeout"), "must be longer than 0s"));
            }
            if policy.backoff_max < policy.backoff_initial {
                return Err(self.invalid(key("backoff_max"), "must not be below backoff_initial"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, schedule) in self.schedules.iter().enumerate() {
            schedule
                .validate(known_kinds)
                .map_err(|(key, reason)| self.invalid(format!("schedules[{i}].{key}"), reason))?;
            if !names.insert(schedule.name.as_str()) {
                return Err(self.invalid(
                    format!("schedules[{i}].name"),
                    format!("`{}` is used by another schedule", schedule.name),
                ));
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate(known_kinds)
                .map_err(|(key, reason)| self.invalid(format!("rules[{i}].{key}"), reason))?;
            if !self.sentiment.enabled {
                if let Some(j) = rule.run.iter().position(|k| k == "sentiment") {
                    return Err(self.invalid(
                        format!("rules[{i}].run[{j}]"),
                        "job kind `sentiment` is disabled: set `enabled = true` under [sentiment] (it loads the text model)",
                    ));
                }
            }
        }
        self.churn
            .validate()
            .map_err(|(key, reason)| self.invalid(format!("churn.{key}"), reason))?;
        self.sentiment
            .validate(known_kinds)
            .map_err(|(key, reason)| self.invalid(format!("sentiment.{key}"), reason))?;
        for (tenant, w) in &self.webhooks {
            crate::sentiment::validate_webhook(w)
                .map_err(|(key, reason)| self.invalid(format!("webhooks.{tenant}.{key}"), reason))?;
        }
        self.profiles
            .validate()
            .map_err(|(key, reason)| self.invalid(format!("profiles.{key}"), reason))?;
        Ok(())
    }
}

fn check_url(config: &Config, key: &str, value: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let url = url::Url::parse(value).map_err(|e| config.invalid(key, format!("`{value}` is not a URL: {e}")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(config.invalid(
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

    const KINDS: &[&str] = &["activity", "probe"];

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "test.toml", &[], KINDS)
    }

    #[test]
    fn empty_file_gives_embedded_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.queue.backend, QueueBackendKind::Sqlite);
        assert!(c.store.url.starts_with("sqlite:"));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = parse("[queue]\nbackend = \"redis\"\nurl = \"redis://x\"\nconcurency = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("concurency"), "{err}");
    }

    #[test]
    fn bad_duration_is_rejected_with_its_line() {
        let err = parse("[jobs.activity]\ntimeout = \"ten seconds\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn bad_url_names_the_key() {
        let err = parse("[store]\nurl = \"not a url\"\n").unwrap_err().to_string();
        assert!(err.contains("store.url"), "{err}");
        let err = parse("[queue]\nbackend = \"redis\"\nurl = \"sqlite://x.db\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("queue.url") && err.contains("redis"), "{err}");
    }

    #[test]
    fn rule_with_unknown_kind_is_rejected() {
        let err = parse("[[rules]]\non = \"comment.created\"\nrun = [\"sentimnt\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rules[0].run") && err.contains("sentimnt"), "{err}");
    }

    #[test]
    fn schedules_are_validated_with_their_key() {
        let ok = "[[schedules]]\nname = \"weekly\"\ncron = \"0 9 * * MON\"\ntimezone = \"Europe/Madrid\"\njob = \"probe\"\nfan_out = \"per_tenant\"\n[[schedules.overrides]]\ntenant = \"coachly\"\ncron = \"0 8 * * MON\"\ntimezone = \"America/Bogota\"\n";
        let c = parse(ok).unwrap();
        assert_eq!(c.schedules[0].overrides[0].tenant, "coachly");
        let err = parse(&ok.replace("Europe/Madrid", "Europe/Madird"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("schedules[0].timezone"), "{err}");
        let err = parse(&ok.replace("0 9 * * MON", "0 25 * * MON"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("schedules[0].cron"), "{err}");
        let err = parse(&format!("{ok}{}", ok.split("[[schedules.overrides]]").next().unwrap()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("schedules[1].name"), "{err}");
        let err = parse("[[schedules]]\nname = \"x\"\ncron = \"* * * * *\"\njob = \"probe\"\nmisfire = \"later\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn churn_section_is_validated_with_its_key() {
        let c = parse("").unwrap();
        assert_eq!(c.churn.thresholds.critical, 0.7);
        assert_eq!(c.churn.language, "en");
        let c = parse("[churn]\nlanguage = \"es\"\n[churn.actions.payment_delays]\naction = \"call\"\npriority = \"high\"\nimpact = 0.1\n").unwrap();
        assert_eq!(c.churn.actions.len(), 1);
        let err = parse("[churn]\nthresholds = { medium = 0.6, high = 0.5, critical = 0.7 }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("churn.thresholds"), "{err}");
        let err = parse("[churn]\nlanguage = \"fr\"\n").unwrap_err().to_string();
        assert!(err.contains("churn.language"), "{err}");
        let err = parse("[churn.actions.logins]\naction = \"x\"\npriority = \"high\"\nimpact = 0.1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("churn.actions.logins"), "{err}");
        let err = parse("[churn.actions.logins_30d]\naction = \"x\"\npriority = \"urgent\"\nimpact = 0.1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("churn.actions.logins_30d.priority"), "{err}");
        let err = parse("[churn]\nlanguag = \"es\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("languag"), "{err}");
    }

    #[test]
    fn env_overrides_apply_and_are_validated() {
        let env = vec![
            ("KAIROS__QUEUE__BACKEND".to_string(), "redis".to_string()),
            ("KAIROS__QUEUE__URL".to_string(), "redis://127.0.0.1:6379".to_string()),
            ("KAIROS__JOBS__ACTIVITY__CONCURRENCY".to_string(), "3".to_string()),
        ];
        let c = Config::from_toml("", "t.toml", &env, KINDS).unwrap();
        assert_eq!(c.queue.backend, QueueBackendKind::Redis);
        assert_eq!(c.policy("activity").concurrency, 3);

        let bad = vec![("KAIROS__API__MAX_BATCH".to_string(), "lots".to_string())];
        let err = Config::from_toml("", "t.toml", &bad, KINDS).unwrap_err().to_string();
        assert!(err.contains("KAIROS__API__MAX_BATCH"), "{err}");
    }
}
