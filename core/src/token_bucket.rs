//! Token buckets shared by every process of a deployment: in Redis (one
//! atomic Lua script, Redis's own clock) when the deployment's queue is
//! Redis, in this process's memory when it is embedded (one process).
//!
//! Why not per process like the API's ingest limit: some quotas belong to an
//! outside account (an LLM provider's requests and tokens per minute), and N
//! workers each allowed the whole rate would overrun it N times.
//!
//! A bucket holds up to `capacity` tokens and refills at `per_second`. A take
//! may span several buckets (requests and tokens of one account) and is all
//! or nothing. A take larger than a bucket's capacity passes when that bucket
//! is full and leaves it in debt (so it is slowed to the rate, never refused
//! forever). Guarantee: over any window of `w` seconds a bucket grants at
//! most `capacity + per_second × w`. Bucket names are generic: callers
//! choose them (`llm:<account>:requests`); nothing here names a job kind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use crate::config::{QueueBackendKind, QueueConfig};

/// Checks every bucket against Redis's clock, then takes from all of them or
/// from none. Returns 0 when taken, otherwise the milliseconds until the
/// slowest bucket would allow it. `ARGV[1]` = 1 forces the take (a charge
/// after the fact, which may leave buckets in debt down to -capacity).
const TAKE_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local force = ARGV[1] == '1'
local levels = {}
local wait = 0
for i = 1, #KEYS do
  local cap = tonumber(ARGV[i * 3 - 1])
  local rate = tonumber(ARGV[i * 3])
  local amount = tonumber(ARGV[i * 3 + 1])
  local s = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens = tonumber(s[1]) or cap
  local ts = tonumber(s[2]) or now
  if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate) end
  levels[i] = tokens
  local needed = math.min(amount, cap)
  if tokens < needed then
    local w = math.ceil((needed - tokens) / rate)
    if w > wait then wait = w end
  end
end
if wait > 0 and not force then return wait end
for i = 1, #KEYS do
  local cap = tonumber(ARGV[i * 3 - 1])
  local rate = tonumber(ARGV[i * 3])
  local amount = tonumber(ARGV[i * 3 + 1])
  local tokens = math.min(cap, math.max(levels[i] - amount, -cap))
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(2 * cap / rate) + 1000)
end
return 0
"#;

/// One bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Most tokens the bucket holds (the burst).
    pub capacity: f64,
    /// Tokens added per second.
    pub per_second: f64,
}

impl Limit {
    /// `per_minute` tokens a minute, at most `capacity` at once.
    pub fn per_minute(per_minute: f64, capacity: f64) -> Self {
        Self {
            capacity: capacity.max(1.0),
            per_second: (per_minute / 60.0).max(f64::MIN_POSITIVE),
        }
    }
}

/// One bucket of a take: its name, its shape, how many tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Take {
    /// The bucket's name (namespaced under the deployment's queue prefix in Redis).
    pub bucket: String,
    /// Its shape; every user of a bucket must pass the same.
    pub limit: Limit,
    /// Tokens to take.
    pub amount: f64,
}

/// The answer to a take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granted {
    /// Taken from every bucket.
    Yes,
    /// Nothing taken; the buckets allow it in about this long.
    Wait(Duration),
}

/// Why a bucket could not be consulted.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The Redis URL is not usable.
    #[error("token buckets: invalid Redis URL: {0}")]
    Url(String),
    /// Redis did not answer (callers treat the limited resource as unavailable).
    #[error("token buckets: redis: {0}")]
    Redis(#[from] redis::RedisError),
}

struct LocalBucket {
    tokens: f64,
    last: Instant,
}

/// Buckets of this process, shared by every [`TokenBuckets::local`] handle:
/// two users of one outside account in one embedded process share its quota.
fn local_buckets() -> &'static Mutex<HashMap<String, LocalBucket>> {
    static BUCKETS: OnceLock<Mutex<HashMap<String, LocalBucket>>> = OnceLock::new();
    BUCKETS.get_or_init(|| Mutex::new(HashMap::new()))
}

enum Backend {
    Local,
    Redis {
        conn: ConnectionManager,
        prefix: String,
        script: Script,
    },
}

/// Handle to the deployment's shared token buckets. Cheap to clone.
#[derive(Clone)]
pub struct TokenBuckets {
    backend: Arc<Backend>,
}

impl std::fmt::Debug for TokenBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.backend {
            Backend::Local => f.write_str("TokenBuckets(local)"),
            Backend::Redis { prefix, .. } => write!(f, "TokenBuckets(redis, prefix {prefix})"),
        }
    }
}

impl TokenBuckets {
    /// This process's buckets (the embedded deployment: one process).
    pub fn local() -> Self {
        Self {
            backend: Arc::new(Backend::Local),
        }
    }

    /// Buckets in Redis at `url`, keys under `<prefix>:bucket:`, shared by
    /// every process that uses the same Redis and prefix.
    pub async fn redis(url: &str, prefix: &str, response_timeout: Duration) -> Result<Self, BucketError> {
        let client = redis::Client::open(url).map_err(|e| BucketError::Url(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let conn = client.get_connection_manager_with_config(config).await?;
        Ok(Self {
            backend: Arc::new(Backend::Redis {
                conn,
                prefix: prefix.to_owned(),
                script: Script::new(TAKE_LUA),
            }),
        })
    }

    /// The deployment's buckets, chosen as the worker chooses its queue:
    /// Redis (same URL and prefix) in the distributed deployment, this
    /// process otherwise.
    pub async fn for_queue(queue: &QueueConfig) -> Result<Self, BucketError> {
        match queue.backend {
            QueueBackendKind::Redis => Self::redis(&queue.url, &queue.prefix, queue.response_timeout).await,
            QueueBackendKind::Sqlite => Ok(Self::local()),
        }
    }

    /// Whether the buckets are shared through Redis.
    pub fn is_shared(&self) -> bool {
        matches!(*self.backend, Backend::Redis { .. })
    }

    /// Takes every amount of `takes`, or none and says how long to wait.
    pub async fn try_take(&self, takes: &[Take]) -> Result<Granted, BucketError> {
        self.apply(takes, false).await
    }

    /// Takes unconditionally (a correction after the fact, e.g. tokens
    /// actually used beyond an estimate); a bucket may go into debt down to
    /// `-capacity`. A negative amount gives tokens back (never beyond
    /// `capacity`).
    pub async fn charge(&self, takes: &[Take]) -> Result<(), BucketError> {
        self.apply(takes, true).await.map(|_| ())
    }

    async fn apply(&self, takes: &[Take], force: bool) -> Result<Granted, BucketError> {
        if takes.is_empty() {
            return Ok(Granted::Yes);
        }
        match &*self.backend {
            Backend::Local => Ok(take_local(takes, force)),
            Backend::Redis { conn, prefix, script } => {
                let mut inv = script.prepare_invoke();
                for t in takes {
                    inv.key(format!("{prefix}:bucket:{}", t.bucket));
                }
                inv.arg(if force { "1" } else { "0" });
                for t in takes {
                    inv.arg(t.limit.capacity).arg(t.limit.per_second / 1000.0).arg(t.amount);
                }
                let mut conn = conn.clone();
                let wait_ms: u64 = inv.invoke_async(&mut conn).await?;
                Ok(if wait_ms == 0 {
                    Granted::Yes
                } else {
                    Granted::Wait(Duration::from_millis(wait_ms))
                })
            }
        }
    }
}

fn take_local(takes: &[Take], force: bool) -> Granted {
    let now = Instant::now();
    let mut buckets = local_buckets().lock().unwrap_or_else(|e| e.into_inner());
    let mut wait = Duration::ZERO;
    let mut levels = Vec::with_capacity(takes.len());
    for t in takes {
        let tokens = match buckets.get(&t.bucket) {
            Some(b) => (b.tokens + now.duration_since(b.last).as_secs_f64() * t.limit.per_second).min(t.limit.capacity),
            None => t.limit.capacity,
        };
        levels.push(tokens);
        let needed = t.amount.min(t.limit.capacity);
        if tokens < needed {
            wait = wait.max(Duration::from_secs_f64((needed - tokens) / t.limit.per_second));
        }
    }
    if !wait.is_zero() && !force {
        return Granted::Wait(wait.max(Duration::from_millis(1)));
    }
    for (t, level) in takes.iter().zip(levels) {
        buckets.insert(
            t.bucket.clone(),
            LocalBucket {
                tokens: (level - t.amount).clamp(-t.limit.capacity, t.limit.capacity),
                last: now,
            },
        );
    }
    Granted::Yes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(bucket: &str, capacity: f64, per_second: f64, amount: f64) -> Take {
        Take {
            bucket: bucket.into(),
            limit: Limit { capacity, per_second },
            amount,
        }
    }

    /// Both backends: this process's, and Redis (KAIROS_TEST_REDIS or the
    /// local one) under a fresh prefix.
    async fn backends() -> Vec<TokenBuckets> {
        let url = std::env::var("KAIROS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("kt-bucket-{}", uuid::Uuid::new_v4().simple());
        let redis = TokenBuckets::redis(&url, &prefix, Duration::from_secs(5))
            .await
            .expect("redis reachable");
        assert!(redis.is_shared());
        vec![TokenBuckets::local(), redis]
    }

    #[tokio::test]
    async fn buckets_grant_the_burst_then_the_rate_and_are_all_or_nothing() {
        for b in backends().await {
            let name = format!("t-{}", uuid::Uuid::new_v4());
            for _ in 0..3 {
                assert_eq!(
                    b.try_take(&[take(&name, 3.0, 1.0, 1.0)]).await.unwrap(),
                    Granted::Yes,
                    "{b:?}"
                );
            }
            match b.try_take(&[take(&name, 3.0, 1.0, 1.0)]).await.unwrap() {
                Granted::Wait(d) => assert!(
                    d > Duration::from_millis(500) && d <= Duration::from_secs(1),
                    "{b:?} {d:?}"
                ),
                Granted::Yes => panic!("{b:?}: a fourth take within the burst of 3"),
            }
            // A second bucket with room does not take when the first refuses.
            let other = format!("o-{}", uuid::Uuid::new_v4());
            let both = [take(&other, 5.0, 1.0, 1.0), take(&name, 3.0, 1.0, 1.0)];
            assert!(matches!(b.try_take(&both).await.unwrap(), Granted::Wait(_)), "{b:?}");
            for _ in 0..5 {
                assert_eq!(
                    b.try_take(&[take(&other, 5.0, 1.0, 1.0)]).await.unwrap(),
                    Granted::Yes,
                    "{b:?}"
                );
            }
            assert!(matches!(
                b.try_take(&[take(&other, 5.0, 1.0, 1.0)]).await.unwrap(),
                Granted::Wait(_)
            ));
        }
    }

    #[tokio::test]
    async fn local_handles_share_the_process_buckets() {
        let name = format!("s-{}", uuid::Uuid::new_v4());
        assert_eq!(
            TokenBuckets::local()
                .try_take(&[take(&name, 1.0, 0.1, 1.0)])
                .await
                .unwrap(),
            Granted::Yes
        );
        assert!(matches!(
            TokenBuckets::local()
                .try_take(&[take(&name, 1.0, 0.1, 1.0)])
                .await
                .unwrap(),
            Granted::Wait(_)
        ));
    }

    #[tokio::test]
    async fn a_take_larger_than_the_bucket_passes_when_full_and_leaves_debt() {
        for b in backends().await {
            let name = format!("big-{}", uuid::Uuid::new_v4());
            assert_eq!(
                b.try_take(&[take(&name, 10.0, 10.0, 25.0)]).await.unwrap(),
                Granted::Yes
            );
            match b.try_take(&[take(&name, 10.0, 10.0, 1.0)]).await.unwrap() {
                // In debt by 10 (clamped at -capacity): 1.1 s at 10 per second.
                Granted::Wait(d) => assert!(d > Duration::from_millis(900), "{b:?} {d:?}"),
                Granted::Yes => panic!("{b:?}: granted while in debt"),
            }
        }
    }

    #[tokio::test]
    async fn charges_take_unconditionally_and_refunds_stop_at_capacity() {
        for b in backends().await {
            let name = format!("c-{}", uuid::Uuid::new_v4());
            let t = |amount| take(&name, 4.0, 0.01, amount);
            b.charge(&[t(3.0)]).await.unwrap();
            b.charge(&[t(3.0)]).await.unwrap(); // -2: in debt
            assert!(
                matches!(b.try_take(&[t(1.0)]).await.unwrap(), Granted::Wait(_)),
                "{b:?}"
            );
            b.charge(&[t(-100.0)]).await.unwrap(); // refunded, but only up to 4
            for _ in 0..4 {
                assert_eq!(b.try_take(&[t(1.0)]).await.unwrap(), Granted::Yes, "{b:?}");
            }
            assert!(
                matches!(b.try_take(&[t(1.0)]).await.unwrap(), Granted::Wait(_)),
                "{b:?}"
            );
        }
    }
}
