//! Queues: how a job travels from a producer (api, scheduler, CLI) to a
//! worker, with leases so that a dead worker's jobs come back.
//!
//! One trait, two backends chosen by config: [`sqlite::SqliteQueue`] for the
//! embedded default and [`redis::RedisQueue`] (Redis Streams with consumer
//! groups) for many workers on many hosts. Everything above this module —
//! the worker runtime, retries, dead letters — is written once against
//! [`Queue`]. ARCHITECTURE.md says why this is our own trait and backends.
//!
//! Tenants share a kind's queue fairly ([`fairness`]): one tenant's
//! backlog does not delay another tenant's jobs.
//!
//! Delivery is at least once: a job is acknowledged only after its outcome
//! is recorded in the store, and the store refuses to start a job that
//! already finished, so a re-delivered job is not run twice.

#[cfg(feature = "apalis")]
pub mod apalis;
pub mod fairness;
pub mod redis;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{QueueBackendKind, QueueConfig};

/// Why a queue operation failed. Producers map it to 503; workers log it and
/// retry with backoff.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis unreachable or a command failed.
    #[error("redis queue unavailable: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// SQLite queue failed.
    #[error("sqlite queue unavailable: {0}")]
    Sqlite(#[from] sqlx::Error),
    /// A stored message could not be read back (it is skipped and reported,
    /// never silently dropped).
    #[error("corrupt queue entry {tag}: {reason}")]
    Corrupt {
        /// Backend tag of the entry.
        tag: String,
        /// What was wrong.
        reason: String,
    },
    /// Bad connection settings.
    #[error("invalid queue url `{url}`: {reason}")]
    Url {
        /// URL from config.
        url: String,
        /// Why it is unusable.
        reason: String,
    },
}

/// What travels on a queue: enough to run the job without reading the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Job run id.
    pub id: String,
    /// Job kind (selects the queue).
    pub kind: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Job input, JSON text (kept as text: no parse on the queue's path).
    pub payload: String,
}

/// A message handed to one consumer under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// Backend handle to acknowledge or retry it (stream id, row id).
    pub tag: String,
}

/// How many jobs of a kind are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Waiting to be fetched.
    pub ready: u64,
    /// Fetched, not yet acknowledged.
    pub in_flight: u64,
    /// Waiting for a retry time.
    pub delayed: u64,
}

/// A job queue with leases. One logical queue per job kind.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Short backend name for logs and benchmarks.
    fn backend(&self) -> &'static str;

    /// Enqueues messages (any mix of kinds) for immediate delivery, in as
    /// few round trips as the backend allows.
    async fn push(&self, messages: &[Message]) -> Result<(), QueueError>;

    /// Enqueues messages to be delivered no earlier than `due_ms` (epoch
    /// ms): delayed rules, schedule jitter, dispatch of delayed jobs.
    async fn push_delayed(&self, messages: &[Message], due_ms: i64) -> Result<(), QueueError>;

    /// Takes up to `max` messages of `kind` for `consumer`, leased for
    /// `lease`; an unacknowledged message is re-delivered once its lease
    /// expires. Waits up to the configured fetch wait when none is ready.
    /// With `queue.fairness` on, the messages are shared between the
    /// tenants with ready jobs by weight, each tenant's oldest first, and a
    /// tenant at its `max_running` (leased, across all consumers) gets none
    /// ([`fairness`]); off, the kind's oldest messages whoever's they are.
    async fn fetch(&self, kind: &str, consumer: &str, max: usize, lease: Duration)
        -> Result<Vec<Delivery>, QueueError>;

    /// Removes finished messages.
    async fn ack(&self, kind: &str, tags: &[String]) -> Result<(), QueueError>;

    /// Acknowledges a delivery and re-enqueues its message after `delay`.
    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError>;

    /// Gives deliveries back for immediate re-delivery (graceful shutdown).
    async fn release(&self, deliveries: &[Delivery]) -> Result<(), QueueError>;

    /// Cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), QueueError>;

    /// Current depth of a kind's queue.
    async fn depth(&self, kind: &str) -> Result<Depth, QueueError>;

    /// Extends the leases of deliveries `consumer` still holds (a running
    /// job, or an outcome not yet acknowledged) to `lease` from now. A worker
    /// calls it every `lease / 3`, so leases can be short whatever a job's
    /// timeout: a dead worker's jobs come back one lease after its last
    /// heartbeat. A delivery another consumer has taken over meanwhile is
    /// left to that consumer.
    async fn heartbeat(&self, kind: &str, consumer: &str, tags: &[String], lease: Duration) -> Result<(), QueueError>;

    /// Makes every delivery of `kind` whose lease expired (its worker died)
    /// deliverable again, however many there are, and returns how many. A
    /// backend whose fetch already takes expired leases returns 0.
    async fn reclaim(&self, kind: &str, consumer: &str, lease: Duration) -> Result<u64, QueueError>;

    /// The marker of the queue's current contents, or `None` when it is
    /// missing — the queue lost its data (a Redis restarted without it) or
    /// was never marked. A durable backend that cannot lose messages apart
    /// from its store answers a constant.
    async fn epoch(&self) -> Result<Option<String>, QueueError> {
        Ok(Some(format!("{}:durable", self.backend())))
    }

    /// Sets the marker to `value` if it is missing (`ttl` bounds how long
    /// it lives; `None`: for good) and says whether this call set it. Only
    /// one of several concurrent callers wins, so only one reconciler
    /// re-queues after a loss.
    async fn claim_epoch(&self, _value: &str, _ttl: Option<Duration>) -> Result<bool, QueueError> {
        Ok(false)
    }

    /// Replaces the marker this process claimed (`claimed`) by `value`, for
    /// good: its re-queue is done. Says whether the claim was still held
    /// (false: it expired and another reconciler took over).
    async fn confirm_epoch(&self, _claimed: &str, _value: &str) -> Result<bool, QueueError> {
        Ok(true)
    }
}

/// Opens the backend named in config.
pub async fn connect(config: &QueueConfig) -> Result<Arc<dyn Queue>, QueueError> {
    Ok(match config.backend {
        QueueBackendKind::Sqlite => Arc::new(sqlite::SqliteQueue::connect(config).await?),
        QueueBackendKind::Redis => Arc::new(redis::RedisQueue::connect(config).await?),
    })
}
