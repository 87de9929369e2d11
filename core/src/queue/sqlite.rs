//! The embedded queue: one table in an SQLite file.
//!
//! A fetch is a single `UPDATE ... RETURNING` that leases the oldest ready
//! rows, so concurrent consumers (threads or processes) never take the same
//! row. Waiting consumers in the same process are woken by a `Notify` when
//! something is pushed; other processes are noticed by polling.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::Notify;

use super::{Delivery, Depth, Message, Queue, QueueError};
use crate::config::QueueConfig;
use crate::time::now_ms;

const POLL: Duration = Duration::from_millis(100);

/// Queue backend on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    pool: SqlitePool,
    pushed: Arc<Notify>,
    wait: Duration,
}

impl SqliteQueue {
    /// Opens (creating if needed) the queue table in the configured file.
    pub async fn connect(config: &QueueConfig) -> Result<Self, QueueError> {
        let url_err = |reason: String| QueueError::Url {
            url: config.url.clone(),
            reason,
        };
        let options = SqliteConnectOptions::from_str(&config.url)
            .map_err(|e| url_err(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| url_err(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS kairos_queue (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL,
                id TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                payload TEXT NOT NULL,
                run_at INTEGER NOT NULL,
                lease_until INTEGER NOT NULL DEFAULT 0,
                consumer TEXT
            )",
        )
        .execute(&pool)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS kairos_queue_ready ON kairos_queue (kind, lease_until, run_at)")
            .execute(&pool)
            .await?;
        Ok(Self {
            pool,
            pushed: Arc::new(Notify::new()),
            wait: config.fetch_wait,
        })
    }

    async fn insert(&self, messages: &[Message], run_at: i64) -> Result<(), QueueError> {
        let mut tx = self.pool.begin().await?;
        for m in messages {
            sqlx::query("INSERT INTO kairos_queue (kind, id, tenant_id, payload, run_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&m.kind)
                .bind(&m.id)
                .bind(&m.tenant_id)
                .bind(&m.payload)
                .bind(run_at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.pushed.notify_waiters();
        Ok(())
    }

    async fn take(&self, kind: &str, consumer: &str, max: usize, lease: Duration) -> Result<Vec<Delivery>, QueueError> {
        let now = now_ms();
        let lease_until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let rows = sqlx::query(
            "UPDATE kairos_queue SET lease_until = $1, consumer = $2 WHERE seq IN (
                SELECT seq FROM kairos_queue WHERE kind = $3 AND lease_until <= $4 AND run_at <= $4
                ORDER BY run_at, seq LIMIT $5)
             RETURNING seq, id, tenant_id, payload",
        )
        .bind(lease_until)
        .bind(consumer)
        .bind(kind)
        .bind(now)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get("seq")?;
            out.push(Delivery {
                tag: seq.to_string(),
                message: Message {
                    id: row.try_get("id")?,
                    kind: kind.to_owned(),
                    tenant_id: row.try_get("tenant_id")?,
                    payload: row.try_get("payload")?,
                },
            });
        }
        Ok(out)
    }
}

fn parse_tags(tags: &[String]) -> Result<Vec<i64>, QueueError> {
    tags.iter()
        .map(|t| {
            t.parse::<i64>().map_err(|_| QueueError::Corrupt {
                tag: t.clone(),
                reason: "not an sqlite queue tag".into(),
            })
        })
        .collect()
}

#[async_trait]
impl Queue for SqliteQueue {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn push(&self, messages: &[Message]) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.insert(messages, now_ms()).await
    }

    async fn push_delayed(&self, messages: &[Message], due_ms: i64) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.insert(messages, due_ms).await
    }

    async fn fetch(
        &self,
        kind: &str,
        consumer: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            // Register interest before looking, so a push between the look
            // and the wait is not missed.
            let notified = self.pushed.notified();
            let got = self.take(kind, consumer, max, lease).await?;
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            let nap = POLL.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn ack(&self, _kind: &str, tags: &[String]) -> Result<(), QueueError> {
        let seqs = parse_tags(tags)?;
        for (sql, chunk) in crate::store::chunked_in("DELETE FROM kairos_queue WHERE seq IN ({ids})", 0, &seqs) {
            let mut q = sqlx::query(&sql);
            for s in chunk {
                q = q.bind(s);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        let seq = parse_tags(std::slice::from_ref(&delivery.tag))?[0];
        let run_at = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
        sqlx::query("UPDATE kairos_queue SET run_at = $1, lease_until = 0, consumer = NULL WHERE seq = $2")
            .bind(run_at)
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        for d in deliveries {
            let seq = parse_tags(std::slice::from_ref(&d.tag))?[0];
            sqlx::query("UPDATE kairos_queue SET lease_until = 0, consumer = NULL WHERE seq = $1")
                .bind(seq)
                .execute(&self.pool)
                .await?;
        }
        self.pushed.notify_waiters();
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn depth(&self, kind: &str) -> Result<Depth, QueueError> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT
               COALESCE(SUM(CASE WHEN lease_until <= $2 AND run_at <= $2 THEN 1 ELSE 0 END), 0) AS ready,
               COALESCE(SUM(CASE WHEN lease_until > $2 THEN 1 ELSE 0 END), 0) AS in_flight,
               COALESCE(SUM(CASE WHEN lease_until <= $2 AND run_at > $2 THEN 1 ELSE 0 END), 0) AS delayed
             FROM kairos_queue WHERE kind = $1",
        )
        .bind(kind)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let get = |c: &str| -> Result<u64, QueueError> { Ok(u64::try_from(row.try_get::<i64, _>(c)?).unwrap_or(0)) };
        Ok(Depth {
            ready: get("ready")?,
            in_flight: get("in_flight")?,
            delayed: get("delayed")?,
        })
    }

    async fn heartbeat(&self, _kind: &str, consumer: &str, tags: &[String], lease: Duration) -> Result<(), QueueError> {
        let seqs = parse_tags(tags)?;
        let lease_until = now_ms() + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        // Only rows this consumer still holds: one whose lease expired and
        // that another consumer took is left to it.
        for (sql, chunk) in crate::store::chunked_in(
            "UPDATE kairos_queue SET lease_until = $1 WHERE consumer = $2 AND seq IN ({ids})",
            2,
            &seqs,
        ) {
            let mut q = sqlx::query(&sql).bind(lease_until).bind(consumer);
            for s in chunk {
                q = q.bind(s);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn reclaim(&self, _kind: &str, _consumer: &str, _lease: Duration) -> Result<u64, QueueError> {
        // A fetch takes rows whose lease expired like any ready row.
        Ok(0)
    }
}
