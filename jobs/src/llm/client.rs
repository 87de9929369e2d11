//! [`Llm`]: chat completions against any OpenAI-compatible server, within
//! the account's shared quota, with typed failures a caller turns into its
//! template.
//!
//! The request and response bodies are `async-openai`'s chat-completions
//! types (the wire format); the HTTP call is made with the workspace's
//! `reqwest`. Why not `async_openai::Client`: its 0.35 client drops the
//! HTTP status of an error (a 429 from vLLM or llama.cpp, whose error bodies
//! differ from OpenAI's, cannot be told from a 400) and retries 429s on its
//! own for up to 15 minutes, behind the shared quota's back; 0.36+ moved to
//! reqwest 0.13 (a second HTTP and TLS stack in the binary).
//!
//! Failures: a connection error, a timeout or a 5xx is retried
//! `max_retries` times (backoff 250 ms doubling, at most 4 s) and then is
//! [`LlmError::Unavailable`]; a 429 is [`LlmError::OverQuota`] at once (and
//! empties the shared request bucket, so other workers back off too), as is
//! a shared quota that stays exhausted for `max_wait`; a reply that is not
//! what was asked for is [`LlmError::Invalid`]; another 4xx (bad key, unknown
//! model) is [`LlmError::Rejected`]. The API key is sent as a bearer token
//! and appears in no log, error or `Debug` output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequest, CreateChatCompletionResponse, ResponseFormat,
};
use kairos_core::config::QueueConfig;
use kairos_core::token_bucket::{BucketError, TokenBuckets};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::config::LlmConfig;
use super::limit::LlmLimiter;
use super::metrics::{LlmCounters, LlmCountersSnapshot};

/// Tokens a call used, as the server reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt (system + user messages).
    pub prompt_tokens: u32,
    /// Tokens of the reply.
    pub completion_tokens: u32,
}

impl Usage {
    /// Prompt plus completion.
    pub fn total(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.saturating_add(o.prompt_tokens),
            completion_tokens: self.completion_tokens.saturating_add(o.completion_tokens),
        }
    }
}

/// Why no usable text came back. Callers fall back to their template on
/// any of them; the variant says why (for the report, logs and metrics).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// No `[llm]` section, or `enabled = false`.
    #[error("llm: not configured")]
    NotConfigured,
    /// Connection refused, timeout or 5xx, still so after the retries (or
    /// the shared quota's Redis could not be reached).
    #[error("llm: unavailable after {attempts} attempt(s): {reason}")]
    Unavailable {
        /// HTTP attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The server answered 429, or the shared quota stayed exhausted for
    /// `max_wait`.
    #[error("llm: over quota: {reason}")]
    OverQuota {
        /// What said so.
        reason: String,
        /// When it may be worth trying again (`Retry-After`, or the bucket's wait).
        retry_after: Option<Duration>,
    },
    /// The server answered, but not with what was asked for (no content, not
    /// the chat-completions format, JSON that does not fit the type).
    #[error("llm: invalid reply: {reason}")]
    Invalid {
        /// What did not fit.
        reason: String,
        /// Tokens the useless reply cost (cost accounting still counts them).
        usage: Usage,
    },
    /// The server refused the request itself (401 bad key, 404 unknown
    /// model, 400): a configuration problem, not retried.
    #[error("llm: request refused with HTTP {status}: {reason}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        reason: String,
    },
}

impl LlmError {
    /// A short stable name for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::NotConfigured => "not_configured",
            LlmError::Unavailable { .. } => "unavailable",
            LlmError::OverQuota { .. } => "over_quota",
            LlmError::Invalid { .. } => "invalid",
            LlmError::Rejected { .. } => "rejected",
        }
    }

    /// Tokens spent on the failed call (only an invalid reply costs any).
    pub fn usage(&self) -> Usage {
        match self {
            LlmError::Invalid { usage, .. } => *usage,
            _ => Usage::default(),
        }
    }
}

/// Why the LLM client could not be built (at process start).
#[derive(Debug, thiserror::Error)]
pub enum LlmSetupError {
    /// `api_key_env` names a variable that is not set.
    #[error("llm.api_key_env: environment variable {var} is not set (it holds the API key)")]
    MissingKey {
        /// The variable.
        var: String,
    },
    /// The shared quota's buckets (Redis) could not be reached.
    #[error("llm rate limit: {0}")]
    Buckets(#[from] BucketError),
    /// The HTTP client could not be built.
    #[error("llm HTTP client: {0}")]
    Client(String),
}

struct Inner {
    config: LlmConfig,
    url: String,
    api_key: Option<String>,
    http: reqwest::Client,
    limiter: LlmLimiter,
}

/// A chat-completions client, or the absence of one. Cheap to clone; every
/// clone shares the quota and the counters.
#[derive(Clone)]
pub struct Llm {
    inner: Option<Arc<Inner>>,
    counters: Arc<LlmCounters>,
}

impl std::fmt::Debug for Llm {
    // The key stays out of debug output and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("Llm(not configured)"),
            Some(i) => f
                .debug_struct("Llm")
                .field("url", &i.url)
                .field("model", &i.config.model)
                .field("key", &i.api_key.as_ref().map(|_| "<from env>"))
                .field("limiter", &i.limiter)
                .finish(),
        }
    }
}

/// What the server's 2xx body is, as far as we read it.
struct Reply {
    content: String,
    usage: Usage,
}

/// One attempt's failure: worth another attempt or final.
enum AttemptError {
    Retry(String),
    Final(LlmError),
}

impl Llm {
    /// No LLM: every call is [`LlmError::NotConfigured`].
    pub fn disabled() -> Self {
        Self {
            inner: None,
            counters: Arc::default(),
        }
    }

    /// The client for `[llm]` (None or `enabled = false`: [`Llm::disabled`]),
    /// its key read from the environment, its quota shared through the
    /// deployment's queue backend (Redis: every worker; SQLite: this process).
    pub async fn from_config(config: Option<&LlmConfig>, queue: &QueueConfig) -> Result<Self, LlmSetupError> {
        Self::from_config_with(config, queue, |var| std::env::var(var).ok()).await
    }

    /// The client for the job kinds' config (`[llm]`, its quota shared
    /// through `[queue]`).
    pub async fn from_jobs_config(config: &crate::JobsConfig) -> Result<Self, LlmSetupError> {
        Self::from_config(config.llm.as_ref(), &config.queue).await
    }

    /// As [`Llm::from_config`], with the environment given.
    pub async fn from_config_with(
        config: Option<&LlmConfig>,
        queue: &QueueConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LlmSetupError> {
        let Some(config) = config.filter(|c| c.enabled) else {
            return Ok(Self::disabled());
        };
        let api_key = read_key(config, env)?;
        let buckets = TokenBuckets::for_queue(queue).await?;
        Self::with_buckets(config, api_key, buckets)
    }

    /// The client for `config` with its key given and its quota in `buckets`.
    pub fn with_buckets(
        config: &LlmConfig,
        api_key: Option<String>,
        buckets: TokenBuckets,
    ) -> Result<Self, LlmSetupError> {
        if !config.enabled {
            return Ok(Self::disabled());
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| LlmSetupError::Client(e.to_string()))?;
        let limiter = LlmLimiter::new(buckets, config, api_key.as_deref());
        Ok(Self {
            inner: Some(Arc::new(Inner {
                url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
                config: config.clone(),
                api_key,
                http,
                limiter,
            })),
            counters: Arc::default(),
        })
    }

    /// Whether calls can reach a server (false: use the template).
    pub fn is_configured(&self) -> bool {
        self.inner.is_some()
    }

    /// The configured model, to record which model wrote a text.
    pub fn model(&self) -> Option<&str> {
        self.inner.as_deref().map(|i| i.config.model.as_str())
    }

    /// The account's shared quota.
    pub fn limiter(&self) -> Option<&LlmLimiter> {
        self.inner.as_deref().map(|i| &i.limiter)
    }

    /// Calls, tokens and fallbacks so far (this client and its clones).
    pub fn counters(&self) -> LlmCountersSnapshot {
        self.counters.snapshot()
    }

    /// Records that a caller used its template instead of an LLM text
    /// (`why`: the error, or a grounding failure) — counted and logged.
    pub fn record_fallback(&self, caller: &str, why: &str) {
        self.counters.fallback();
        tracing::info!(target: "kairos::llm", event = "llm.fallback", caller, why, "LLM text replaced by the template");
    }

    /// Asks for a JSON object and parses it into `T` (the server is asked
    /// for `response_format: json_object`; a reply wrapped in a Markdown
    /// code fence is accepted). A reply that does not parse into `T` is
    /// [`LlmError::Invalid`].
    pub async fn chat_json<T: DeserializeOwned>(&self, system: &str, user: &str) -> Result<(T, Usage), LlmError> {
        // OpenAI refuses json_object mode unless a message mentions JSON.
        let system = if system.to_ascii_lowercase().contains("json") {
            system.to_owned()
        } else {
            format!("{system}\n\nAnswer with one JSON object.")
        };
        self.chat(&system, user, true, |text| {
            serde_json::from_str::<T>(strip_code_fence(&text))
                .map_err(|e| format!("the reply does not fit the expected JSON: {e}"))
        })
        .await
    }

    /// Asks for plain text.
    pub async fn chat_text(&self, system: &str, user: &str) -> Result<(String, Usage), LlmError> {
        self.chat(system, user, false, Ok).await
    }

    /// One call, its reply turned into `R` by `parse`, counted and logged.
    async fn chat<R>(
        &self,
        system: &str,
        user: &str,
        json: bool,
        parse: impl FnOnce(String) -> Result<R, String>,
    ) -> Result<(R, Usage), LlmError> {
        let Some(inner) = self.inner.as_deref() else {
            self.counters.failed(&LlmError::NotConfigured);
            return Err(LlmError::NotConfigured);
        };
        let started = Instant::now();
        let result = self
            .call(inner, system, user, json)
            .await
            .and_then(|(reply, attempts)| match parse(reply.content) {
                Ok(v) => Ok((v, reply.usage, attempts)),
                Err(reason) => Err(LlmError::Invalid {
                    reason,
                    usage: reply.usage,
                }),
            });
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((v, usage, attempts)) => {
                self.counters.succeeded(usage);
                tracing::info!(
                    target: "kairos::llm",
                    event = "llm.call",
                    model = %inner.config.model,
                    attempts,
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    elapsed_ms,
                    "LLM call"
                );
                Ok((v, usage))
            }
            Err(e) => {
                self.counters.failed(&e);
                tracing::warn!(
                    target: "kairos::llm",
                    event = "llm.call",
                    model = %inner.config.model,
                    error = e.kind(),
                    reason = %e,
                    elapsed_ms,
                    "LLM call failed"
                );
                Err(e)
            }
        }
    }

    async fn call(&self, inner: &Inner, system: &str, user: &str, json: bool) -> Result<(Reply, u32), LlmError> {
        let request = chat_request(&inner.config, system, user, json);
        // A rough reservation (about 4 bytes a token, plus the most the reply
        // may use), corrected once the server reports the real count.
        let estimate = u32::try_from((system.len() + user.len()) / 4)
            .unwrap_or(u32::MAX)
            .saturating_add(inner.config.max_tokens);
        let mut attempts = 0;
        loop {
            inner.limiter.acquire(estimate).await?;
            attempts += 1;
            match self.attempt(inner, &request).await {
                Ok(reply) => {
                    inner.limiter.settle(estimate, reply.usage.total()).await;
                    return Ok((reply, attempts));
                }
                Err(AttemptError::Final(e)) => {
                    if matches!(e, LlmError::OverQuota { .. }) {
                        inner.limiter.exhausted().await;
                    }
                    // Nothing or little was generated; give the reservation back.
                    inner.limiter.settle(estimate, e.usage().total()).await;
                    return Err(e);
                }
                Err(AttemptError::Retry(reason)) => {
                    inner.limiter.settle(estimate, 0).await;
                    if attempts > inner.config.max_retries {
                        return Err(LlmError::Unavailable { attempts, reason });
                    }
                    self.counters.retried();
                    tracing::debug!(target: "kairos::llm", attempts, reason, "LLM call retried");
                    tokio::time::sleep(backoff(attempts)).await;
                }
            }
        }
    }

    async fn attempt(&self, inner: &Inner, request: &CreateChatCompletionRequest) -> Result<Reply, AttemptError> {
        let mut req = inner.http.post(&inner.url).json(request);
        if let Some(key) = &inner.api_key {
            req = req.bearer_auth(key);
        }
        let response = req.send().await.map_err(|e| AttemptError::Retry(describe(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.map_err(|e| AttemptError::Retry(describe(&e)))?;
        if status.as_u16() == 429 {
            return Err(AttemptError::Final(LlmError::OverQuota {
                reason: format!("the server answered 429: {}", excerpt(&body)),
                retry_after,
            }));
        }
        if status.is_server_error() {
            return Err(AttemptError::Retry(format!("HTTP {status}: {}", excerpt(&body))));
        }
        if !status.is_success() {
            return Err(AttemptError::Final(LlmError::Rejected {
                status: status.as_u16(),
                reason: excerpt(&body),
            }));
        }
        let parsed: CreateChatCompletionResponse = serde_json::from_slice(&body).map_err(|e| {
            AttemptError::Final(LlmError::Invalid {
                reason: format!("not a chat completion: {e}"),
                usage: Usage::default(),
            })
        })?;
        let usage = parsed
            .usage
            .as_ref()
            .map(|u| Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
            })
            .unwrap_or_default();
        let content = parsed
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                AttemptError::Final(LlmError::Invalid {
                    reason: "the reply has no text".into(),
                    usage,
                })
            })?;
        Ok(Reply { content, usage })
    }
}

// `max_tokens` is deprecated by OpenAI in favour of `max_completion_tokens`,
// but it is the one every OpenAI-compatible server (vLLM, llama.cpp, Ollama) reads.
#[allow(deprecated)]
fn chat_request(config: &LlmConfig, system: &str, user: &str, json: bool) -> CreateChatCompletionRequest {
    CreateChatCompletionRequest {
        model: config.model.clone(),
        messages: vec![
            ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage::from(system)),
            ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from(user)),
        ],
        response_format: json.then_some(ResponseFormat::JsonObject),
        temperature: config.temperature,
        max_tokens: Some(config.max_tokens),
        ..Default::default()
    }
}

fn read_key(config: &LlmConfig, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, LlmSetupError> {
    match &config.api_key_env {
        None => Ok(None),
        Some(var) => env(var)
            .filter(|k| !k.is_empty())
            .map(Some)
            .ok_or_else(|| LlmSetupError::MissingKey { var: var.clone() }),
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.saturating_sub(1).min(4))).min(Duration::from_secs(4))
}

/// A reqwest error without its source chain's noise, and never a header.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!(
            "cannot connect: {}",
            std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string())
        )
    } else {
        e.to_string()
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// The text inside a Markdown code fence (```json … ```), or the text itself.
fn strip_code_fence(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_fences_are_stripped() {
        assert_eq!(strip_code_fence("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_code_fence(" {\"a\":1} "), "{\"a\":1}");
        assert_eq!(strip_code_fence("```\n{}\n```"), "{}");
    }

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(9), Duration::from_secs(4));
    }

    #[test]
    fn a_missing_key_variable_is_a_setup_error_naming_it() {
        let mut c = LlmConfig::new("http://127.0.0.1:1/v1", "m");
        c.api_key_env = Some("KAIROS_TEST_NO_SUCH_KEY".into());
        match read_key(&c, |_| None) {
            Err(LlmSetupError::MissingKey { var }) => assert_eq!(var, "KAIROS_TEST_NO_SUCH_KEY"),
            other => panic!("{other:?}"),
        }
        assert_eq!(read_key(&c, |_| Some("sk-1".into())).unwrap().as_deref(), Some("sk-1"));
    }

    #[tokio::test]
    async fn a_disabled_client_says_not_configured() {
        let llm = Llm::disabled();
        assert!(matches!(llm.chat_text("s", "u").await, Err(LlmError::NotConfigured)));
        let mut c = LlmConfig::new("http://127.0.0.1:1/v1", "m");
        c.enabled = false;
        let llm = Llm::from_config(Some(&c), &QueueConfig::default()).await.unwrap();
        assert!(!llm.is_configured());
        let llm = Llm::from_config(None, &QueueConfig::default()).await.unwrap();
        assert!(matches!(
            llm.chat_json::<serde_json::Value>("s", "u").await,
            Err(LlmError::NotConfigured)
        ));
    }
}
