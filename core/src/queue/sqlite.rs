//! The embedded queue: one table in an SQLite file.
//!
//! A fetch leases rows with `UPDATE ... RETURNING`, so concurrent consumers
//! (threads or processes) never take the same row. Waiting consumers in the
//! same process are woken by a `Notify` when something is pushed; other
//! processes are noticed by polling.
//!
//! Fairness between tenants ([`super::fairness`]): `kairos_queue_tenants`
//! holds, per kind, each tenant that has rows and its virtual time (a row
//! per kind with the empty tenant holds the kind's clock); a fetch runs in
//! one `BEGIN IMMEDIATE` transaction — read the tenants with the lowest
//! virtual times, count the leased rows of those with a limit, lease each
//! one's oldest ready rows (in `seq` order, through the `(kind, tenant_id,
//! lease_until)` index, so the cost follows the batch, not the backlog),
//! write the new virtual times — so two consumers never
//! plan on the same counts. With fairness off, or while a single tenant
//! without a limit has rows of the kind, it is the one `UPDATE` over the
//! kind's oldest rows, as before fairness.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::Notify;

use super::fairness::{self, Candidate, FairnessConfig};
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
    fairness: Arc<FairnessConfig>,
}

/// The tenant key of the row that holds a kind's virtual clock (tenant ids
/// are never empty).
const CLOCK: &str = "";
/// Tenants with the lowest virtual times a fetch considers, at least.
const WINDOW: usize = 64;

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
        // Equality on all three columns lists a tenant's rows in `seq`
        // order: a fair fetch reads its oldest unleased rows without
        // sorting its backlog, and counts its leased rows by range.
        sqlx::query("CREATE INDEX IF NOT EXISTS kairos_queue_tenant ON kairos_queue (kind, tenant_id, lease_until)")
            .execute(&pool)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS kairos_queue_tenants (
                kind TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                vtime REAL NOT NULL DEFAULT 0,
                PRIMARY KEY (kind, tenant_id)
            )",
        )
        .execute(&pool)
        .await?;
        // Rows queued by a version without fairness get their tenants.
        sqlx::query(
            "INSERT OR IGNORE INTO kairos_queue_tenants (kind, tenant_id) SELECT DISTINCT kind, tenant_id FROM kairos_queue",
        )
        .execute(&pool)
        .await?;
        Ok(Self {
            pool,
            pushed: Arc::new(Notify::new()),
            wait: config.fetch_wait,
            fairness: Arc::new(config.fairness.clone()),
        })
    }

    async fn insert(&self, messages: &[Message], run_at: i64) -> Result<(), QueueError> {
        let mut tx = self.pool.begin().await?;
        // One multi-row insert per chunk, not one statement per message:
        // the push holds the file's one write lock for less.
        for chunk in messages.chunks(crate::store::IN_LIST_MAX) {
            let sql = format!(
                "INSERT INTO kairos_queue (kind, id, tenant_id, payload, run_at) VALUES {}",
                crate::store::value_rows(chunk.len(), 5, "")
            );
            let mut q = sqlx::query(&sql);
            for m in chunk {
                q = q
                    .bind(&m.kind)
                    .bind(&m.id)
                    .bind(&m.tenant_id)
                    .bind(&m.payload)
                    .bind(run_at);
            }
            q.execute(&mut *tx).await?;
        }
        let mut tenants: Vec<(&str, &str)> = messages
            .iter()
            .map(|m| (m.kind.as_str(), m.tenant_id.as_str()))
            .collect();
        tenants.sort_unstable();
        tenants.dedup();
        for (kind, tenant) in tenants {
            // At virtual time 0: the next fetch lifts it to the clock.
            sqlx::query("INSERT OR IGNORE INTO kairos_queue_tenants (kind, tenant_id) VALUES ($1, $2)")
                .bind(kind)
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.pushed.notify_waiters();
        Ok(())
    }

    /// Whether at most one tenant (without a limit) has rows of `kind`:
    /// then there is no one to be fair to, and the one-statement fetch
    /// spares the write transaction (a read without the lock; a tenant
    /// arriving meanwhile is served fairly from the next fetch on).
    async fn sole_tenant(&self, kind: &str) -> Result<bool, QueueError> {
        let tenants: Vec<String> = sqlx::query_scalar(
            "SELECT tenant_id FROM kairos_queue_tenants WHERE kind = $1 AND tenant_id <> $2 LIMIT 2",
        )
        .bind(kind)
        .bind(CLOCK)
        .fetch_all(&self.pool)
        .await?;
        Ok(match tenants.as_slice() {
            [] => true,
            [one] => self.fairness.share(one).1 == 0,
            _ => false,
        })
    }

    /// A fair fetch: see the module doc and [`fairness`].
    async fn take_fair(
        &self,
        kind: &str,
        consumer: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let now = now_ms();
        let lease_until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Expired leases (dead workers) become plain unleased rows, so the
        // take below needs only `lease_until = 0` (its index order).
        sqlx::query(
            "UPDATE kairos_queue SET lease_until = 0, consumer = NULL
             WHERE kind = $1 AND lease_until > 0 AND lease_until <= $2",
        )
        .bind(kind)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "SELECT tenant_id, vtime FROM kairos_queue_tenants WHERE kind = $1 ORDER BY vtime, tenant_id LIMIT $2",
        )
        .bind(kind)
        .bind(i64::try_from(WINDOW.max(max) + 1).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        let clock_row: Option<f64> =
            sqlx::query_scalar("SELECT vtime FROM kairos_queue_tenants WHERE kind = $1 AND tenant_id = $2")
                .bind(kind)
                .bind(CLOCK)
                .fetch_optional(&mut *tx)
                .await?;
        let mut clock = clock_row.unwrap_or(0.0);
        let mut candidates = Vec::with_capacity(rows.len());
        for row in rows {
            let tenant: String = row.try_get("tenant_id")?;
            if tenant == CLOCK {
                continue;
            }
            let vtime: f64 = row.try_get("vtime")?;
            let (weight, limit) = self.fairness.share(&tenant);
            let room = if limit == 0 {
                max
            } else {
                let leased: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM kairos_queue WHERE kind = $1 AND tenant_id = $2 AND lease_until > $3",
                )
                .bind(kind)
                .bind(&tenant)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                usize::try_from(i64::from(limit) - leased).unwrap_or(0)
            };
            candidates.push((
                Candidate {
                    tenant,
                    vtime: vtime.max(clock),
                    weight,
                    room,
                    exhausted: false,
                },
                vtime,
            ));
        }
        let (mut cands, old): (Vec<Candidate>, Vec<f64>) = candidates.into_iter().unzip();
        let mut out = Vec::new();
        let mut left = max;
        while left > 0 {
            let Some((i, want)) = fairness::next(&cands, max, left) else {
                break;
            };
            let rows = sqlx::query(
                "UPDATE kairos_queue SET lease_until = $1, consumer = $2 WHERE seq IN (
                    SELECT seq FROM kairos_queue INDEXED BY kairos_queue_tenant
                    WHERE kind = $3 AND tenant_id = $4 AND lease_until = 0 AND run_at <= $5
                    ORDER BY seq LIMIT $6)
                 RETURNING seq, id, tenant_id, payload",
            )
            .bind(lease_until)
            .bind(consumer)
            .bind(kind)
            .bind(&cands[i].tenant)
            .bind(now)
            .bind(i64::try_from(want).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
            let got = rows.len();
            let mut batch = deliveries(kind, rows)?;
            batch.sort_by_key(|d| d.tag.parse::<i64>().unwrap_or(i64::MAX));
            out.append(&mut batch);
            fairness::served(&mut cands, &mut clock, i, want, got);
            left -= got.min(left);
        }
        for (c, old) in cands.iter().zip(old) {
            if c.exhausted {
                // Gone only with its last row (leased or delayed rows come
                // back to it).
                sqlx::query(
                    "DELETE FROM kairos_queue_tenants WHERE kind = $1 AND tenant_id = $2
                     AND NOT EXISTS (SELECT 1 FROM kairos_queue WHERE kind = $1 AND tenant_id = $2)",
                )
                .bind(kind)
                .bind(&c.tenant)
                .execute(&mut *tx)
                .await?;
            }
            // Written back lifted too: an idle or blocked tenant saves no credit.
            if c.vtime != old {
                sqlx::query("UPDATE kairos_queue_tenants SET vtime = $3 WHERE kind = $1 AND tenant_id = $2")
                    .bind(kind)
                    .bind(&c.tenant)
                    .bind(c.vtime)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if clock_row != Some(clock) {
            sqlx::query(
                "INSERT INTO kairos_queue_tenants (kind, tenant_id, vtime) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, tenant_id) DO UPDATE SET vtime = excluded.vtime",
            )
            .bind(kind)
            .bind(CLOCK)
            .bind(clock)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn take(&self, kind: &str, consumer: &str, max: usize, lease: Duration) -> Result<Vec<Delivery>, QueueError> {
        if self.fairness.enabled && !self.sole_tenant(kind).await? {
            return self.take_fair(kind, consumer, max, lease).await;
        }
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
        deliveries(kind, rows)
    }
}

fn deliveries(kind: &str, rows: Vec<sqlx::sqlite::SqliteRow>) -> Result<Vec<Delivery>, QueueError> {
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
