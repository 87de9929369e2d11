//! `webhook`: delivers an alert to the tenant's HTTPS endpoint
//! (`[webhooks.TENANT]`), signed so the receiver can trust it.
//!
//! Signing (same idea as Stripe's and GitHub's): headers
//! `X-Kairos-Timestamp: <unix seconds>` and
//! `X-Kairos-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! The receiver recomputes the HMAC over the raw body and rejects stale
//! timestamps, which stops replays. `X-Kairos-Delivery` carries the job id:
//! the same alert keeps the same id across retries, so receivers can drop
//! duplicates.
//!
//! Retries are the job system's: a network error, a timeout, a 5xx, 408 or
//! 429 fails the attempt (retried with the `[jobs.webhook]` backoff); other
//! 4xx answers mean the request itself is refused and dead-letter at once.
//! Secrets are read from the environment at start-up and never logged.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use kairos_core::config::KeyError;
use serde::Deserialize;
use sha2::Sha256;

use crate::{Job, JobContext, JobError, JobOutput};

/// The job kind.
pub const KIND: &str = "webhook";
/// Header with the signing time (unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-kairos-timestamp";
/// Header with `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-kairos-signature";
/// Header with the delivery (job) id.
pub const DELIVERY_HEADER: &str = "x-kairos-delivery";

/// Where a tenant's alerts are delivered.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://...` (or `http://` for local receivers).
    pub url: String,
    /// Environment variable holding the HMAC-SHA256 key; never the key itself,
    /// so secrets stay out of config files and repos.
    pub secret_env: String,
    /// Per-request timeout.
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `[webhooks.TENANT]`, by tenant name or id.
pub type Webhooks = BTreeMap<String, WebhookConfig>;

/// Checks one webhook; errors name the key under `webhooks.TENANT.`.
pub fn validate_webhook(w: &WebhookConfig) -> Result<(), KeyError> {
    let url = url::Url::parse(&w.url).map_err(|e| ("url".to_string(), format!("`{}` is not a URL: {e}", w.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err((
            "url".into(),
            format!("scheme `{}` not supported (use https)", url.scheme()),
        ));
    }
    if w.secret_env.trim().is_empty() {
        return Err((
            "secret_env".into(),
            "must name the environment variable holding the key".into(),
        ));
    }
    if w.timeout.is_zero() {
        return Err(("timeout".into(), "must be longer than 0s".into()));
    }
    Ok(())
}

/// Why webhooks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookSetupError {
    /// The secret's environment variable is not set.
    #[error("webhooks.{tenant}.secret_env: environment variable {var} is not set (it holds the signing key)")]
    MissingSecret {
        /// Config key.
        tenant: String,
        /// The variable.
        var: String,
    },
    /// The HTTP client could not be built.
    #[error("webhook HTTP client: {0}")]
    Client(String),
}

struct Target {
    url: String,
    secret: Vec<u8>,
    timeout: Duration,
}

/// The webhook job with each tenant's endpoint and key.
pub struct Webhook {
    /// By tenant name or id, as configured.
    targets: BTreeMap<String, Target>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    // Secrets stay out of debug output and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("tenants", &self.targets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `sha256=<hex>` of `"<timestamp>.<body>"` under `secret`. (HMAC takes
/// keys of any length, so the error is only there to avoid a panic path.)
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> Result<String, hmac::digest::InvalidLength> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("sha256={}", hex::encode(mac.finalize().into_bytes())))
}

impl Webhook {
    /// Reads each tenant's secret from the environment named in config;
    /// a missing variable is an error at start-up, not at the first alert.
    pub fn from_config(webhooks: &Webhooks) -> Result<Self, WebhookSetupError> {
        Self::from_config_with(webhooks, |var| std::env::var(var).ok())
    }

    /// As [`Webhook::from_config`], with the environment given.
    pub fn from_config_with(
        webhooks: &Webhooks,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, WebhookSetupError> {
        let mut targets = BTreeMap::new();
        for (tenant, w) in webhooks {
            let secret =
                env(&w.secret_env)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| WebhookSetupError::MissingSecret {
                        tenant: tenant.clone(),
                        var: w.secret_env.clone(),
                    })?;
            targets.insert(
                tenant.clone(),
                Target {
                    url: w.url.clone(),
                    secret: secret.into_bytes(),
                    timeout: w.timeout,
                },
            );
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("kairos-webhook/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WebhookSetupError::Client(e.to_string()))?;
        Ok(Self { targets, client })
    }
}

#[async_trait]
impl Job for Webhook {
    const KIND: &'static str = KIND;
    /// The alert as JSON: checked to be JSON, then posted unchanged.
    type Payload = Box<serde_json::value::RawValue>;

    async fn run(&self, ctx: &JobContext, payload: Self::Payload) -> Result<JobOutput, JobError> {
        let tenant = ctx
            .store
            .find_tenant(&ctx.tenant_id)
            .await
            .map_err(|e| JobError::Retryable(format!("webhook: reading tenant: {e}")))?;
        let sent = self
            .post_signed(&tenant, &ctx.job_id, payload.get().as_bytes().to_vec())
            .await?;
        Ok(JobOutput { result_ref: Some(sent) })
    }
}

impl Webhook {
    /// Whether `tenant` has an endpoint.
    pub fn has_target(&self, tenant: &kairos_core::store::Tenant) -> bool {
        self.targets.contains_key(&tenant.id) || self.targets.contains_key(&tenant.name)
    }

    /// Signs `body` and POSTs it to the tenant's endpoint with `delivery_id`
    /// in `X-Kairos-Delivery` (stable across retries, so receivers drop
    /// duplicates). Returns `"<url> → <status>"`. The one outgoing POST of
    /// every kind that notifies a tenant (alerts, reports).
    pub async fn post_signed(
        &self,
        tenant: &kairos_core::store::Tenant,
        delivery_id: &str,
        body: Vec<u8>,
    ) -> Result<String, JobError> {
        let target = self
            .targets
            .get(&tenant.id)
            .or_else(|| self.targets.get(&tenant.name))
            .ok_or_else(|| {
                JobError::Permanent(format!(
                    "webhook: no [webhooks.{}] endpoint configured for tenant {}",
                    tenant.name, tenant.id
                ))
            })?;
        let timestamp = kairos_core::time::now_ms() / 1000;
        let signature = sign(&target.secret, timestamp, &body)
            .map_err(|e| JobError::Permanent(format!("webhook: signing key for tenant {}: {e}", tenant.name)))?;
        let response = self
            .client
            .post(&target.url)
            .timeout(target.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .header(DELIVERY_HEADER, delivery_id)
            .body(body)
            .send()
            .await
            .map_err(|e| JobError::Retryable(format!("webhook: POST {} failed: {e}", target.url)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(format!("{} → {}", target.url, status.as_u16()));
        }
        let message = format!("webhook: POST {} answered {status}", target.url);
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(JobError::Retryable(message))
        } else {
            Err(JobError::Permanent(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Checked against an independently computed value
        // (python3 -c "import hmac,hashlib;print(hmac.new(b'key',b'1700000000.{}',hashlib.sha256).hexdigest())").
        assert_eq!(
            sign(b"key", 1_700_000_000, b"{}").unwrap(),
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }

    #[test]
    fn a_missing_secret_names_the_variable() {
        let mut hooks = Webhooks::new();
        hooks.insert(
            "acme".into(),
            WebhookConfig {
                url: "https://x".into(),
                secret_env: "NOPE_SECRET".into(),
                timeout: Duration::from_secs(1),
            },
        );
        let err = Webhook::from_config_with(&hooks, |_| None).unwrap_err().to_string();
        assert!(err.contains("NOPE_SECRET") && err.contains("webhooks.acme"), "{err}");
    }

    #[test]
    fn webhook_url_must_be_http() {
        let w = WebhookConfig {
            url: "ftp://x".into(),
            secret_env: "S".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(validate_webhook(&w).unwrap_err().0, "url");
    }
}
