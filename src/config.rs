//! The whole configuration file, composed of each crate's sections: core's
//! (`server`, `store`, `queue`, `startup`, `api`, `worker`, `scheduler`, `jobs`,
//! `rules`, `schedules`) and the job kinds' (`churn`, `sentiment`,
//! `webhooks`, `llm`, `smtp`, from `kairos-jobs`). Only this crate sees them all: it
//! validates each section (naming the file and the full dotted key), checks
//! what spans sections, and hands each role and the job kinds their own
//! part ([`Config::api`], [`Config::worker`], [`Config::scheduling`],
//! [`Config::kinds`]).

use std::path::Path;

use kairos_core::config::{
    self, ApiConfig, ConfigError, JobPolicies, JobPolicy, KeyError, QueueConfig, SchedulerConfig, ServerConfig,
    StartupConfig, StoreConfig, WorkerConfig,
};
use kairos_core::rules::RuleConfig;
use kairos_core::schedule::ScheduleConfig;
use kairos_jobs::churn::ChurnConfig;
use kairos_jobs::llm::LlmConfig;
use kairos_jobs::mail::SmtpConfig;
use kairos_jobs::nudge::NudgesConfig;
use kairos_jobs::sentiment::SentimentConfig;
use kairos_jobs::webhook::Webhooks;
use serde::Deserialize;

/// The whole configuration of a Kairos process. Every role reads the same
/// file so that a deployment is described in one place; unknown keys are
/// refused with their file, line and key.
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
    /// How long a role waits for the store and queue when it starts.
    #[serde(default)]
    pub startup: StartupConfig,
    /// Ingest limits.
    #[serde(default)]
    pub api: ApiConfig,
    /// Worker process behaviour (shutdown grace, kinds).
    #[serde(default)]
    pub worker: WorkerConfig,
    /// Scheduler behaviour (the dispatcher of stored jobs, reload).
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    /// Per job kind execution policy; kinds not listed use [`JobPolicy::default`].
    #[serde(default)]
    pub jobs: JobPolicies,
    /// Which events trigger which job kinds.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Cron schedules.
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    /// Churn scoring: risk thresholds, languages, recommended actions.
    #[serde(default)]
    pub churn: ChurnConfig,
    /// Sentiment scoring of comments and tickets: model, batching, alerts.
    #[serde(default)]
    pub sentiment: SentimentConfig,
    /// Where each tenant's alerts are delivered (by tenant name or id).
    #[serde(default)]
    pub webhooks: Webhooks,
    /// Executive reports: period, metrics, branding and delivery per tenant.
    #[serde(default)]
    pub reports: kairos_jobs::report::ReportsConfig,
    /// Profile defaults: the language and time zone people and accounts
    /// fall back to.
    #[serde(default)]
    pub profiles: kairos_core::profile::ProfilesConfig,
    /// The LLM that writes narratives and messages; none: templates.
    #[serde(default)]
    pub llm: Option<LlmConfig>,
    /// The SMTP relay for email; none: no email.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// The ops dashboard at `/dashboard` (served by the API role).
    #[serde(default)]
    pub dashboard: kairos_api::dashboard::DashboardConfig,
    /// The Prometheus `/metrics` endpoint: on or off, its own listener,
    /// its bearer token's variable.
    #[serde(default)]
    pub metrics: kairos_api::metrics::MetricsConfig,
    /// Proactive nudges: rules, caps, quiet hours, kill switch.
    #[serde(default)]
    pub nudges: NudgesConfig,
    /// Model monitoring: weeks shown, the drift alert's PSI threshold.
    #[serde(default)]
    pub monitor: kairos_jobs::monitor::MonitorConfig,
    /// The file this was read from, for error messages (not a config key).
    #[serde(skip)]
    pub source: String,
}

impl Config {
    /// Reads `path`, applies `KAIROS__*` overrides from the process
    /// environment, and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = config::read(path)?;
        Self::from_toml(&text, &path.display().to_string(), &config::env_overrides())
    }

    /// Parses config text (named `source` in errors) with the given
    /// overrides, and validates. Split from [`Config::load`] so tests need
    /// no files or process-wide environment.
    pub fn from_toml(text: &str, source: &str, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut c: Config = config::parse(text, source, env)?;
        c.source = source.to_owned();
        c.validate()?;
        Ok(c)
    }

    /// Semantic checks that serde cannot express, section by section, then
    /// across sections. Job kinds are checked against [`kairos_jobs::KINDS`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let kinds = kairos_jobs::KINDS;
        let at = |section: &'static str| move |e: KeyError| self.invalid_at(section, e);
        self.server.validate().map_err(at("server"))?;
        self.store.validate().map_err(at("store"))?;
        self.queue.validate().map_err(at("queue"))?;
        self.startup.validate().map_err(at("startup"))?;
        self.api.validate().map_err(at("api"))?;
        self.worker.validate(kinds).map_err(at("worker"))?;
        self.jobs.validate(kinds).map_err(at("jobs"))?;
        config::validate_schedules(&self.schedules, kinds).map_err(at("schedules"))?;
        config::validate_rules(&self.rules, kinds).map_err(at("rules"))?;
        self.churn.validate().map_err(at("churn"))?;
        self.sentiment.validate(kinds).map_err(at("sentiment"))?;
        for (tenant, w) in &self.webhooks {
            kairos_jobs::webhook::validate_webhook(w).map_err(|e| self.invalid_at(&format!("webhooks.{tenant}"), e))?;
        }
        self.profiles.validate().map_err(at("profiles"))?;
        self.reports.validate().map_err(at("reports"))?;
        if let Some(llm) = &self.llm {
            llm.validate().map_err(at("llm"))?;
        }
        if let Some(smtp) = &self.smtp {
            smtp.validate().map_err(at("smtp"))?;
        }
        self.dashboard.validate().map_err(at("dashboard"))?;
        self.metrics.validate().map_err(at("metrics"))?;
        self.nudges.validate().map_err(at("nudges"))?;
        self.monitor.validate().map_err(at("monitor"))?;
        if let Some(i) = self.nudges.rules.iter().position(|r| r.trigger.sentiment_alert) {
            let nudge = kairos_jobs::nudge::KIND;
            if !self.sentiment.follow_up.iter().any(|k| k == nudge) {
                return Err(self.invalid(
                    format!("nudges.rules[{i}].trigger.sentiment_alert"),
                    format!("sentiment alerts reach nudges through `follow_up = [\"{nudge}\"]` under [sentiment]"),
                ));
            }
        }
        if !self.sentiment.enabled {
            let sentiment = kairos_jobs::sentiment::KIND;
            if let Some(i) = self.worker.kinds.iter().position(|k| k == sentiment) {
                return Err(self.invalid(
                    format!("worker.kinds[{i}]"),
                    format!("job kind `{sentiment}` is disabled: set `enabled = true` under [sentiment] (it loads the text model)"),
                ));
            }
            for (i, rule) in self.rules.iter().enumerate() {
                if let Some(j) = rule.run.iter().position(|k| k == sentiment) {
                    return Err(self.invalid(
                        format!("rules[{i}].run[{j}]"),
                        format!("job kind `{sentiment}` is disabled: set `enabled = true` under [sentiment] (it loads the text model)"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `(key, reason)` within `section`, as an error naming the file and the full key.
    fn invalid_at(&self, section: &str, (key, reason): KeyError) -> ConfigError {
        let sep = if key.starts_with('[') { "" } else { "." };
        self.invalid(format!("{section}{sep}{key}"), reason)
    }

    fn invalid(&self, key: String, reason: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.source.clone(),
            key,
            reason,
        }
    }

    /// The policy for `kind`: its `[jobs.KIND]` table or the defaults.
    pub fn policy(&self, kind: &str) -> JobPolicy {
        self.jobs.get(kind)
    }

    /// `[[rules]]` with the ones nudge event triggers derive (`nudge:RULE`).
    pub fn all_rules(&self) -> Vec<RuleConfig> {
        let mut rules = self.rules.clone();
        rules.extend(self.nudges.event_rules());
        rules
    }

    /// The API role's part.
    pub fn api(&self) -> kairos_api::Settings {
        kairos_api::Settings {
            api: self.api.clone(),
            rules: self.all_rules(),
            jobs: self.jobs.clone(),
            scheduling: self.scheduling(),
            profiles: self.profiles.clone(),
            text_fields: self.sentiment.text_fields.clone(),
            dashboard: self.dashboard.clone(),
            nudge_tracking: self.nudges.tracking.clone(),
            monitor: self.monitor.clone(),
            alert_nudge_rules: self.alert_nudge_rules(),
        }
    }

    /// Names of the nudge rules sentiment alerts trigger.
    pub fn alert_nudge_rules(&self) -> Vec<String> {
        self.nudges
            .rules
            .iter()
            .filter(|r| r.trigger.sentiment_alert)
            .map(|r| r.name.clone())
            .collect()
    }

    /// The worker role's part.
    pub fn worker(&self) -> kairos_worker::Settings {
        kairos_worker::Settings {
            worker: self.worker.clone(),
            queue: self.queue.clone(),
            jobs: self.jobs.clone(),
        }
    }

    /// The scheduler role's part.
    pub fn scheduling(&self) -> kairos_scheduler::Settings {
        kairos_scheduler::Settings {
            scheduler: self.scheduler.clone(),
            schedules: self.schedules.clone(),
            jobs: self.jobs.clone(),
        }
    }

    /// The job kinds' part.
    pub fn kinds(&self) -> kairos_jobs::JobsConfig {
        kairos_jobs::JobsConfig {
            churn: self.churn.clone(),
            sentiment: self.sentiment.clone(),
            webhooks: self.webhooks.clone(),
            reports: self.reports.clone(),
            profiles: self.profiles.clone(),
            policies: self.jobs.clone(),
            llm: self.llm.clone(),
            smtp: self.smtp.clone(),
            queue: self.queue.clone(),
            nudges: self.nudges.clone(),
            monitor: self.monitor.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::config::QueueBackendKind;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "test.toml", &[])
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_file_gives_embedded_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.queue.backend, QueueBackendKind::Sqlite);
        assert!(c.store.url.starts_with("sqlite:"));
        assert!(!c.sentiment.enabled);
    }

    #[test]
    fn unknown_keys_name_file_line_and_key_in_every_section() {
        let e = err("[queue]\nbackend = \"redis\"\nurl = \"redis://x\"\nconcurency = 3\n");
        assert!(
            e.contains("test.toml") && e.contains("line 4") && e.contains("concurency"),
            "{e}"
        );
        let e = err("[churn]\nlanguag = \"es\"\n");
        assert!(e.contains("line 2") && e.contains("languag"), "{e}");
        let e = err("\n[sentiment.urgency]\nkeyword = [\"x\"]\n");
        assert!(e.contains("line 3") && e.contains("keyword"), "{e}");
        let e = err("[webhooks.acme]\nurl = \"https://x\"\nsecret_env = \"S\"\nsecret = \"k\"\n");
        assert!(e.contains("line 4") && e.contains("secret"), "{e}");
    }

    #[test]
    fn semantic_errors_name_file_and_full_key() {
        let e = err("[store]\nurl = \"not a url\"\n");
        assert!(e.contains("test.toml") && e.contains("store.url"), "{e}");
        let e = err("[queue]\nbackend = \"redis\"\nurl = \"sqlite://x.db\"\n");
        assert!(e.contains("queue.url") && e.contains("redis"), "{e}");
        let e = err("[jobs.activity]\nconcurrency = 0\n");
        assert!(e.contains("jobs.activity.concurrency"), "{e}");
        let e = err("[jobs.activty]\n");
        assert!(e.contains("`jobs.activty`"), "{e}");
        let e = err("[worker]\nkinds = [\"nope\"]\n");
        assert!(e.contains("worker.kinds") && e.contains("nope"), "{e}");
        let e = err("[worker]\nkinds = [\"probe\", \"sentiment\"]\n");
        assert!(e.contains("worker.kinds[1]") && e.contains("disabled"), "{e}");
        let e = err("[[rules]]\non = \"comment.created\"\nrun = [\"sentimnt\"]\n");
        assert!(e.contains("rules[0].run") && e.contains("sentimnt"), "{e}");
        let e = err("[sentiment]\nbatch_max = 0\n");
        assert!(e.contains("sentiment.batch_max"), "{e}");
        let e = err("[sentiment]\nfollow_up = [\"nudger\"]\n");
        assert!(e.contains("sentiment.follow_up[0]") && e.contains("nudger"), "{e}");
        let e = err("[webhooks.acme]\nurl = \"ftp://x\"\nsecret_env = \"S\"\n");
        assert!(e.contains("webhooks.acme.url"), "{e}");
        let e = err("[metrics]\nlisten = \"9187\"\n");
        assert!(e.contains("metrics.listen"), "{e}");
        let e = err("[worker]\npause_poll = \"3s\"\n");
        assert!(e.contains("worker.pause_poll"), "{e}");
    }

    #[test]
    fn schedules_are_validated_with_their_key() {
        let ok = "[[schedules]]\nname = \"weekly\"\ncron = \"0 9 * * MON\"\ntimezone = \"Europe/Madrid\"\njob = \"probe\"\nfan_out = \"per_tenant\"\n[[schedules.overrides]]\ntenant = \"coachly\"\ncron = \"0 8 * * MON\"\ntimezone = \"America/Bogota\"\n";
        let c = parse(ok).unwrap();
        assert_eq!(c.schedules[0].overrides[0].tenant, "coachly");
        assert!(err(&ok.replace("Europe/Madrid", "Europe/Madird")).contains("schedules[0].timezone"));
        assert!(err(&ok.replace("0 9 * * MON", "0 25 * * MON")).contains("schedules[0].cron"));
        let e = err(&ok.replace("0 9 * * MON", "0 0 30 2 *"));
        assert!(e.contains("schedules[0].cron") && e.contains("never fires"), "{e}");
        let e = err(&ok.replace("0 8 * * MON", "0 0 31 4 *"));
        assert!(
            e.contains("schedules[0].overrides[0].cron") && e.contains("never fires"),
            "{e}"
        );
        assert!(parse(&ok.replace("0 9 * * MON", "@daily")).is_ok());
        let twice = format!("{ok}{}", ok.split("[[schedules.overrides]]").next().unwrap());
        assert!(err(&twice).contains("schedules[1].name"));
        let e = err("[[schedules]]\nname = \"x\"\ncron = \"* * * * *\"\njob = \"probe\"\nmisfire = \"later\"\n");
        assert!(e.contains("line 5"), "{e}");
    }

    #[test]
    fn churn_section_is_validated_with_its_key() {
        let c = parse("").unwrap();
        assert_eq!(c.churn.thresholds.critical, 0.7);
        assert_eq!(c.churn.language, "en");
        let c = parse("[churn]\nlanguage = \"es\"\n[churn.actions.payment_delays]\naction = \"call\"\npriority = \"high\"\nimpact = 0.1\n").unwrap();
        assert_eq!(c.churn.actions.len(), 1);
        assert!(
            err("[churn]\nthresholds = { medium = 0.6, high = 0.5, critical = 0.7 }\n").contains("churn.thresholds")
        );
        assert!(err("[churn]\nlanguage = \"fr\"\n").contains("churn.language"));
        assert!(
            err("[churn.actions.logins]\naction = \"x\"\npriority = \"high\"\nimpact = 0.1\n")
                .contains("churn.actions.logins")
        );
        assert!(
            err("[churn.actions.logins_30d]\naction = \"x\"\npriority = \"urgent\"\nimpact = 0.1\n")
                .contains("churn.actions.logins_30d.priority")
        );
    }

    #[test]
    fn a_rule_naming_disabled_sentiment_is_refused_at_its_index() {
        let e = err("[[rules]]\non = \"comment.created\"\nrun = [\"activity\", \"sentiment\"]\n");
        assert!(e.contains("rules[0].run[1]") && e.contains("disabled"), "{e}");
        parse("[sentiment]\nenabled = true\n[[rules]]\non = \"comment.created\"\nrun = [\"sentiment\"]\n").unwrap();
    }

    #[test]
    fn llm_and_smtp_sections_are_optional_and_validated_with_their_key() {
        let c = parse("").unwrap();
        assert!(c.llm.is_none() && c.smtp.is_none());
        let c = parse("[llm]\nbase_url = \"http://127.0.0.1:8080/v1\"\nmodel = \"m\"\napi_key_env = \"K\"\n[smtp]\nhost = \"smtp.example.com\"\nfrom = \"Kairos <r@example.com>\"\n").unwrap();
        let kinds = c.kinds();
        assert_eq!(kinds.llm.as_ref().map(|l| l.model.as_str()), Some("m"));
        assert_eq!(kinds.smtp.as_ref().map(|s| s.port()), Some(587));
        let e = err("[llm]\nbase_url = \"http://x/v1\"\nmodel = \"m\"\napi_key = \"sk-1\"\n");
        assert!(
            e.contains("test.toml") && e.contains("line 4") && e.contains("api_key"),
            "{e}"
        );
        let e = err("[llm]\nbase_url = \"x\"\nmodel = \"m\"\n");
        assert!(e.contains("llm.base_url"), "{e}");
        let e = err("[llm]\nbase_url = \"http://x/v1\"\nmodel = \"m\"\nrequests_per_minute = 0\n");
        assert!(e.contains("llm.requests_per_minute"), "{e}");
        let e = err("[smtp]\nhost = \"h\"\nfrom = \"nobody\"\n");
        assert!(e.contains("smtp.from"), "{e}");
        let e = err("[smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\ntls = \"ssl\"\n");
        assert!(e.contains("line 4") && e.contains("ssl"), "{e}");
    }

    #[test]
    fn env_overrides_apply_and_are_validated() {
        let env = vec![
            ("KAIROS__QUEUE__BACKEND".to_string(), "redis".to_string()),
            ("KAIROS__QUEUE__URL".to_string(), "redis://127.0.0.1:6379".to_string()),
            ("KAIROS__JOBS__ACTIVITY__CONCURRENCY".to_string(), "3".to_string()),
            ("KAIROS__SENTIMENT__BATCH_MAX".to_string(), "7".to_string()),
        ];
        let c = Config::from_toml("", "t.toml", &env).unwrap();
        assert_eq!(c.queue.backend, QueueBackendKind::Redis);
        assert_eq!(c.policy("activity").concurrency, 3);
        assert_eq!(c.worker().policy("activity").concurrency, 3);
        assert_eq!(c.sentiment.batch_max, 7);
        let bad = vec![("KAIROS__SENTIMENT__BATCH_MAX".to_string(), "0".to_string())];
        let e = Config::from_toml("", "t.toml", &bad).unwrap_err().to_string();
        assert!(e.contains("sentiment.batch_max"), "{e}");
    }

    #[test]
    fn nudge_rules_add_their_event_rules_and_name_their_keys() {
        let rule = "[[nudges.rules]]\nname = \"pay\"\ntrigger = { event = \"payment.failed\" }\n\
                    channels = [\"in_app\"]\n[nudges.rules.templates.en]\nsubject = \"s\"\nbody = \"b\"\n";
        let c = parse(rule).unwrap();
        let rules = c.api().rules;
        assert_eq!(rules.len(), 2, "the rule's and the outcome events'");
        assert_eq!(
            (rules[0].on.as_str(), rules[0].run.as_slice()),
            ("payment.failed", &["nudge".to_string()][..])
        );
        let e = err(&rule.replace("in_app", "fax"));
        assert!(
            e.contains("test.toml") && e.contains("nudges.rules[0].channels[0]"),
            "{e}"
        );
        let e = err(&rule.replace("event = \"payment.failed\"", "sentiment_alert = true"));
        assert!(
            e.contains("nudges.rules[0].trigger.sentiment_alert") && e.contains("follow_up"),
            "{e}"
        );
        let e = err(&rule.replace("channels", "chanels"));
        assert!(e.contains("line 4") && e.contains("chanels"), "{e}");
    }

    #[test]
    fn the_shipped_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in ["config/default.toml", "config/distributed.example.toml"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            Config::from_toml(&text, file, &[]).unwrap_or_else(|e| panic!("{e}"));
        }
        // The built-in sentiment default is the shipped encoder.
        let shipped = Config::from_toml(
            &std::fs::read_to_string(root.join("config/default.toml")).unwrap(),
            "default.toml",
            &[],
        )
        .unwrap();
        assert_eq!(SentimentConfig::default().encoder, shipped.sentiment.encoder);
    }
}
