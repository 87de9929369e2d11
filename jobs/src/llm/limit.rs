//! The LLM account's quota, shared by every worker: a request bucket and a
//! token bucket in the deployment's [`TokenBuckets`] (Redis when the queue is
//! Redis, this process otherwise), keyed by the account — a hash of the base
//! URL and the API key, so two configs naming the same account share it and
//! the key never appears in Redis.

use std::time::{Duration, Instant};

use kairos_core::token_bucket::{Granted, Limit, Take, TokenBuckets};
use sha2::{Digest, Sha256};

use super::client::LlmError;
use super::config::LlmConfig;

/// One account's shared quota.
#[derive(Debug, Clone)]
pub struct LlmLimiter {
    buckets: TokenBuckets,
    account: String,
    requests: Limit,
    tokens: Limit,
    max_wait: Duration,
}

impl LlmLimiter {
    /// The quota of `config`'s account (`api_key` is only hashed).
    pub fn new(buckets: TokenBuckets, config: &LlmConfig, api_key: Option<&str>) -> Self {
        let mut h = Sha256::new();
        h.update(config.base_url.trim_end_matches('/').as_bytes());
        h.update([0]);
        h.update(api_key.unwrap_or_default().as_bytes());
        let account = hex::encode(&h.finalize()[..8]);
        Self {
            buckets,
            account,
            requests: Limit::per_minute(f64::from(config.requests_per_minute), f64::from(config.burst())),
            tokens: Limit::per_minute(f64::from(config.tokens_per_minute), f64::from(config.tokens_per_minute)),
            max_wait: config.max_wait,
        }
    }

    /// The account's id in bucket names (`llm:<account>:requests`).
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Whether the quota is shared through Redis (distributed) or held in
    /// this process (embedded).
    pub fn is_shared(&self) -> bool {
        self.buckets.is_shared()
    }

    fn takes(&self, requests: f64, tokens: f64) -> Vec<Take> {
        let mut takes = Vec::with_capacity(2);
        if requests != 0.0 {
            takes.push(Take {
                bucket: format!("llm:{}:requests", self.account),
                limit: self.requests,
                amount: requests,
            });
        }
        if tokens != 0.0 {
            takes.push(Take {
                bucket: format!("llm:{}:tokens", self.account),
                limit: self.tokens,
                amount: tokens,
            });
        }
        takes
    }

    /// Takes one request and `estimated_tokens` from the account, waiting
    /// up to `max_wait` for them; beyond that, `OverQuota`. A bucket that
    /// cannot be reached (Redis down) is `Unavailable`.
    pub async fn acquire(&self, estimated_tokens: u32) -> Result<(), LlmError> {
        let deadline = Instant::now() + self.max_wait;
        let takes = self.takes(1.0, f64::from(estimated_tokens));
        loop {
            match self.buckets.try_take(&takes).await {
                Ok(Granted::Yes) => return Ok(()),
                Ok(Granted::Wait(d)) => {
                    if Instant::now() + d > deadline {
                        return Err(LlmError::OverQuota {
                            reason: format!(
                                "the account's shared quota allows the next call in {} ms, beyond max_wait ({} ms)",
                                d.as_millis(),
                                self.max_wait.as_millis()
                            ),
                            retry_after: Some(d),
                        });
                    }
                    tokio::time::sleep(d).await;
                }
                Err(e) => {
                    return Err(LlmError::Unavailable {
                        attempts: 0,
                        reason: format!("rate limit: {e}"),
                    })
                }
            }
        }
    }

    /// Corrects the token bucket once the server has said what a call used
    /// (`actual`) against what was reserved (`estimated`).
    pub async fn settle(&self, estimated: u32, actual: u32) {
        let delta = f64::from(actual) - f64::from(estimated);
        if delta == 0.0 {
            return;
        }
        if let Err(e) = self.buckets.charge(&self.takes(0.0, delta)).await {
            tracing::warn!(target: "kairos::llm", error = %e, "could not settle the LLM token quota");
        }
    }

    /// The server answered 429: empties the account's request bucket so every
    /// worker backs off, not only this one.
    pub async fn exhausted(&self) {
        if let Err(e) = self.buckets.charge(&self.takes(self.requests.capacity, 0.0)).await {
            tracing::warn!(target: "kairos::llm", error = %e, "could not record the LLM server's 429");
        }
    }
}
