//! `[llm]`: which OpenAI-compatible server writes text, and the account's
//! quota. No `[llm]` section (or `enabled = false`) means no LLM: callers
//! use their templates.

use std::time::Duration;

use kairos_core::config::KeyError;
use serde::Deserialize;

/// `[llm]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// Off switch that keeps the section (callers use their templates).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The API root of any OpenAI-compatible server, up to and including the
    /// version: `https://api.openai.com/v1`, `http://127.0.0.1:8080/v1`
    /// (llama.cpp, vLLM, Ollama). `/chat/completions` is appended.
    pub base_url: String,
    /// The model name the server expects.
    pub model: String,
    /// Name of the environment variable holding the API key (sent as
    /// `Authorization: Bearer`). Never the key itself: keys stay out of
    /// config files and logs. Leave out for local servers without keys.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Limit on one HTTP request (connect, send, full answer).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Further attempts after a connection error, a timeout or a 5xx (with
    /// backoff). A 429 is not retried here: the caller falls back.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Most completion tokens asked for per call (`max_tokens`).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature; the server's default when left out.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// The account's request quota, shared by every worker of the
    /// deployment (Redis when the queue is Redis, in-process otherwise).
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,
    /// The account's token quota (prompt + completion), shared likewise
    /// (a bucket of one minute's tokens, refilled continuously). Each call
    /// reserves its estimate (prompt bytes / 4 + `max_tokens`) and is
    /// charged what the server reports after.
    #[serde(default = "default_tokens_per_minute")]
    pub tokens_per_minute: u32,
    /// Requests allowed at once before the per-minute rate applies
    /// (the bucket's size). Default: one second's worth, rounded up —
    /// providers enforce per-minute quotas over shorter periods.
    #[serde(default)]
    pub burst_requests: Option<u32>,
    /// How long a call may wait for the shared quota before it gives up
    /// with `OverQuota` (the caller falls back to its template).
    #[serde(default = "default_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
}

fn default_enabled() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_retries() -> u32 {
    2
}
fn default_max_tokens() -> u32 {
    1500
}
fn default_requests_per_minute() -> u32 {
    60
}
fn default_tokens_per_minute() -> u32 {
    200_000
}
fn default_max_wait() -> Duration {
    Duration::from_secs(30)
}

impl LlmConfig {
    /// A config for `base_url` and `model` with every other key at its default.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            enabled: true,
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            timeout: default_timeout(),
            max_retries: default_max_retries(),
            max_tokens: default_max_tokens(),
            temperature: None,
            requests_per_minute: default_requests_per_minute(),
            tokens_per_minute: default_tokens_per_minute(),
            burst_requests: None,
            max_wait: default_max_wait(),
        }
    }

    /// The request bucket's size.
    pub fn burst(&self) -> u32 {
        self.burst_requests
            .unwrap_or_else(|| self.requests_per_minute.div_ceil(60))
            .max(1)
    }

    /// Checks what serde cannot; errors name the key under `llm.`.
    pub fn validate(&self) -> Result<(), KeyError> {
        let url = url::Url::parse(&self.base_url)
            .map_err(|e| ("base_url".to_string(), format!("`{}` is not a URL: {e}", self.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err((
                "base_url".into(),
                format!(
                    "scheme `{}` not supported (use https, or http for a local server)",
                    url.scheme()
                ),
            ));
        }
        if self.model.trim().is_empty() {
            return Err(("model".into(), "must name the model".into()));
        }
        if let Some(var) = &self.api_key_env {
            if var.trim().is_empty() || var.contains(char::is_whitespace) {
                return Err((
                    "api_key_env".into(),
                    "must name the environment variable holding the key (not the key itself)".into(),
                ));
            }
        }
        if self.timeout.is_zero() {
            return Err(("timeout".into(), "must be longer than 0s".into()));
        }
        if self.max_retries > 10 {
            return Err(("max_retries".into(), "must be at most 10".into()));
        }
        if self.max_tokens == 0 {
            return Err(("max_tokens".into(), "must be at least 1".into()));
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(("temperature".into(), "must be between 0 and 2".into()));
            }
        }
        if self.requests_per_minute == 0 {
            return Err(("requests_per_minute".into(), "must be at least 1".into()));
        }
        if self.tokens_per_minute == 0 {
            return Err(("tokens_per_minute".into(), "must be at least 1".into()));
        }
        if self.burst_requests == Some(0) {
            return Err(("burst_requests".into(), "must be at least 1".into()));
        }
        if self.max_wait > Duration::from_secs(600) {
            return Err(("max_wait".into(), "must be at most 10m".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> LlmConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_and_validation_name_the_key() {
        let c = parse("base_url = \"http://127.0.0.1:8080/v1\"\nmodel = \"m\"\n");
        assert!(c.enabled);
        assert_eq!(c.burst(), 1);
        assert_eq!(c.validate(), Ok(()));
        let bad = |text: &str| parse(text).validate().unwrap_err().0;
        assert_eq!(bad("base_url = \"ftp://x\"\nmodel = \"m\"\n"), "base_url");
        assert_eq!(bad("base_url = \"http://x/v1\"\nmodel = \" \"\n"), "model");
        assert_eq!(
            bad("base_url = \"http://x/v1\"\nmodel = \"m\"\napi_key_env = \"sk-abc def\"\n"),
            "api_key_env"
        );
        assert_eq!(
            bad("base_url = \"http://x/v1\"\nmodel = \"m\"\nrequests_per_minute = 0\n"),
            "requests_per_minute"
        );
        assert_eq!(
            bad("base_url = \"http://x/v1\"\nmodel = \"m\"\ntimeout = \"0s\"\n"),
            "timeout"
        );
        assert!(toml::from_str::<LlmConfig>("base_url = \"http://x\"\nmodel = \"m\"\napi_key = \"sk\"\n").is_err());
    }
}
