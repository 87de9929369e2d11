//! The distributed queue: Redis Streams with one consumer group per kind.
//!
//! Why Streams and not apalis-redis 1.0.0's list + Lua design: its fetch
//! script fails with a backlog above ~8,000 jobs, its retry ceiling is fixed
//! at 25 and orphan recovery waits ~300 s keyed by worker name. Streams give
//! us the pieces directly:
//! - `XADD` (pipelined) to enqueue, `XREADGROUP ... COUNT n` to fetch a
//!   batch in one round trip, `XACK` + `XDEL` (pipelined) to acknowledge;
//! - the consumer group's pending list is the lease: a worker's heartbeat
//!   resets the idle time of the entries it holds (`XCLAIM ... JUSTID`, by
//!   their owner only), and every `reclaim_interval` a Lua script takes
//!   *all* entries idle longer than the lease (`XAUTOCLAIM`, in bulk, not
//!   limited by anyone's free slots) and puts them back on the stream, so a
//!   SIGKILLed worker's jobs come back within `lease + reclaim_interval`;
//! - a marker key (`{prefix}:epoch`) lives and dies with the data: when
//!   Redis comes back empty, the scheduler's reconciler finds it missing
//!   and re-queues what the store says is queued; a consumer group that
//!   vanished (`NOGROUP`) is created again by whoever meets the error;
//! - retries wait in a sorted set scored by due time and are moved back to
//!   the stream by a small Lua script, atomically, by whichever worker looks.
//!
//! Blocking reads use a connection of their own per kind: a `BLOCK` on the
//! shared multiplexed connection would stall every other command behind it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamId, StreamReadReply};
use redis::{AsyncCommands, Script};

use super::{Delivery, Depth, Message, Queue, QueueError};
use crate::config::QueueConfig;
use crate::time::now_ms;

const GROUP: &str = "kairos";
/// How often delayed retries are looked at, per kind and process.
const PROMOTE_EVERY: Duration = Duration::from_millis(200);

/// Moves due retries from the delayed set back onto the stream.
const PROMOTE_LUA: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local d = cjson.decode(m)
  redis.call('XADD', KEYS[2], '*', 'i', d.i, 't', d.t, 'p', d.p)
  redis.call('ZREM', KEYS[1], m)
end
return #due
"#;

/// Takes every pending entry idle longer than the lease (ARGV[3] ms) and
/// puts it back on the stream as a new entry, so whichever consumer has a
/// free slot gets it. Loops over XAUTOCLAIM's cursor up to ARGV[5] entries.
/// (Redis 7 drops entries deleted meanwhile from the pending list itself.)
const RECLAIM_LUA: &str = r#"
local cursor = '0-0'
local moved = 0
local seen = 0
repeat
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', ARGV[4])
  cursor = r[1]
  for _, e in ipairs(r[2]) do
    if type(e) == 'table' then
      if type(e[2]) == 'table' then
        redis.call('XADD', KEYS[1], '*', unpack(e[2]))
        moved = moved + 1
      end
      redis.call('XACK', KEYS[1], ARGV[1], e[1])
      redis.call('XDEL', KEYS[1], e[1])
    end
    seen = seen + 1
  end
until cursor == '0-0' or seen >= tonumber(ARGV[5])
return moved
"#;

/// Resets the idle time of the entries ARGV[3..] of group ARGV[1] that
/// consumer ARGV[2] still owns; an entry reclaimed by another consumer is
/// left alone (XCLAIM alone would take it back).
const HEARTBEAT_LUA: &str = r#"
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
"#;

/// Replaces the epoch marker by ARGV[2] only if it still holds ARGV[1].
const CONFIRM_EPOCH_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Most expired entries one reclaim round moves back (per kind).
const RECLAIM_MAX: u64 = 100_000;
/// Entries asked of XAUTOCLAIM per call within a reclaim round.
const RECLAIM_COUNT: u64 = 1000;

/// The stream or its consumer group is missing — also when the error comes
/// from one command of a pipeline.
fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
        || e.clone()
            .into_server_errors()
            .is_some_and(|errs| errs.iter().any(|(_, s)| s.code() == "NOGROUP"))
}

/// Queue backend on Redis Streams.
pub struct RedisQueue {
    client: redis::Client,
    conn: ConnectionManager,
    config: QueueConfig,
    promote: Script,
    reclaim: Script,
    heartbeat: Script,
    confirm_epoch: Script,
    /// Dedicated connection per kind for blocking reads.
    readers: tokio::sync::Mutex<HashMap<String, ConnectionManager>>,
    groups: Mutex<HashSet<String>>,
    last_promote: Mutex<HashMap<String, Instant>>,
    last_reclaim: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.config.prefix)
            .finish()
    }
}

fn due(map: &Mutex<HashMap<String, Instant>>, kind: &str, every: Duration) -> bool {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    match map.get(kind) {
        Some(t) if now.duration_since(*t) < every => false,
        _ => {
            map.insert(kind.to_owned(), now);
            true
        }
    }
}

impl RedisQueue {
    /// Connects and checks the server answers.
    pub async fn connect(config: &QueueConfig) -> Result<Self, QueueError> {
        let client = redis::Client::open(config.url.as_str()).map_err(|e| QueueError::Url {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
        let conn = client
            .get_connection_manager_with_config(manager_config(config.response_timeout))
            .await?;
        Ok(Self {
            client,
            conn,
            config: config.clone(),
            promote: Script::new(PROMOTE_LUA),
            reclaim: Script::new(RECLAIM_LUA),
            heartbeat: Script::new(HEARTBEAT_LUA),
            confirm_epoch: Script::new(CONFIRM_EPOCH_LUA),
            readers: tokio::sync::Mutex::new(HashMap::new()),
            groups: Mutex::new(HashSet::new()),
            last_promote: Mutex::new(HashMap::new()),
            last_reclaim: Mutex::new(HashMap::new()),
        })
    }

    fn stream(&self, kind: &str) -> String {
        format!("{}:q:{kind}", self.config.prefix)
    }

    fn delayed(&self, kind: &str) -> String {
        format!("{}:d:{kind}", self.config.prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{}:epoch", self.config.prefix)
    }

    /// Forgets that `kind`'s group exists: Redis answered `NOGROUP` (it
    /// restarted without its data), so the next [`Self::ensure_group`]
    /// creates it again.
    fn lost_group(&self, kind: &str) {
        let removed = self.groups.lock().unwrap_or_else(|e| e.into_inner()).remove(kind);
        if removed {
            tracing::warn!(kind, "consumer group missing (redis lost its data?); creating it again");
        }
    }

    /// Moves every entry of `kind` idle longer than `lease` back onto the
    /// stream (see [`RECLAIM_LUA`]).
    async fn reclaim_expired(&self, kind: &str, consumer: &str, lease: Duration) -> Result<u64, QueueError> {
        self.ensure_group(kind).await?;
        let mut conn = self.conn.clone();
        let moved: Result<u64, redis::RedisError> = self
            .reclaim
            .key(self.stream(kind))
            .arg(GROUP)
            .arg(consumer)
            .arg(millis(lease))
            .arg(RECLAIM_COUNT)
            .arg(RECLAIM_MAX)
            .invoke_async(&mut conn)
            .await;
        let moved = match moved {
            Err(e) if is_nogroup(&e) => {
                self.lost_group(kind);
                return Ok(0);
            }
            other => other?,
        };
        if moved > 0 {
            tracing::warn!(
                kind,
                count = moved,
                "re-queued jobs whose lease expired (their worker died)"
            );
        }
        Ok(moved)
    }

    /// Creates the consumer group (from the start of the stream, so nothing
    /// pushed before the first worker is skipped).
    async fn ensure_group(&self, kind: &str) -> Result<(), QueueError> {
        if self.groups.lock().unwrap_or_else(|e| e.into_inner()).contains(kind) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let created: Result<(), redis::RedisError> = conn.xgroup_create_mkstream(self.stream(kind), GROUP, "0").await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kind.to_owned());
        Ok(())
    }

    async fn reader(&self, kind: &str) -> Result<ConnectionManager, QueueError> {
        let mut readers = self.readers.lock().await;
        if let Some(c) = readers.get(kind) {
            return Ok(c.clone());
        }
        let conn = self
            .client
            .get_connection_manager_with_config(manager_config(self.config.fetch_wait + self.config.response_timeout))
            .await?;
        readers.insert(kind.to_owned(), conn.clone());
        Ok(conn)
    }

    fn delivery(&self, kind: &str, entry: &StreamId) -> Result<Delivery, QueueError> {
        let field = |name: &str| -> Result<String, QueueError> {
            entry.get::<String>(name).ok_or_else(|| QueueError::Corrupt {
                tag: entry.id.clone(),
                reason: format!("missing field `{name}`"),
            })
        };
        Ok(Delivery {
            tag: entry.id.clone(),
            message: Message {
                id: field("i")?,
                kind: kind.to_owned(),
                tenant_id: field("t")?,
                payload: field("p")?,
            },
        })
    }

    fn collect(&self, kind: &str, entries: &[StreamId], out: &mut Vec<Delivery>) {
        for entry in entries {
            match self.delivery(kind, entry) {
                Ok(d) => out.push(d),
                // Left pending (not acked): visible in XPENDING for ops.
                Err(e) => tracing::error!(kind, error = %e, "skipping unreadable queue entry"),
            }
        }
    }
}

fn manager_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(2))
}

fn delayed_member(m: &Message) -> String {
    serde_json::json!({ "i": m.id, "t": m.tenant_id, "p": m.payload }).to_string()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl Queue for RedisQueue {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn push(&self, messages: &[Message]) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for m in messages {
            self.ensure_group(&m.kind).await?;
            pipe.cmd("XADD")
                .arg(self.stream(&m.kind))
                .arg("*")
                .arg("i")
                .arg(&m.id)
                .arg("t")
                .arg(&m.tenant_id)
                .arg("p")
                .arg(&m.payload)
                .ignore();
        }
        let mut conn = self.conn.clone();
        match pipe.query_async::<()>(&mut conn).await {
            // The connection manager reconnects on the next command: one
            // retry turns a dropped connection into a blip, not a 503. (If
            // the first try did land, the job is delivered twice; the store
            // and idempotent jobs absorb that.)
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                tracing::warn!(error = %e, "redis push failed on a dropped connection; retrying once");
                pipe.query_async::<()>(&mut conn).await?;
            }
            other => other?,
        }
        Ok(())
    }

    async fn push_delayed(&self, messages: &[Message], due_ms: i64) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for m in messages {
            self.ensure_group(&m.kind).await?;
            pipe.cmd("ZADD")
                .arg(self.delayed(&m.kind))
                .arg(due_ms)
                .arg(delayed_member(m))
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn fetch(
        &self,
        kind: &str,
        consumer: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        self.ensure_group(kind).await?;
        let mut conn = self.conn.clone();
        if due(&self.last_promote, kind, PROMOTE_EVERY) {
            let _: i64 = self
                .promote
                .key(self.delayed(kind))
                .key(self.stream(kind))
                .arg(now_ms())
                .arg(1000)
                .invoke_async(&mut conn)
                .await?;
        }
        if due(&self.last_reclaim, kind, self.config.reclaim_interval) {
            self.reclaim_expired(kind, consumer, lease).await?;
        }
        let mut reader = self.reader(kind).await?;
        let reply: Result<Option<StreamReadReply>, redis::RedisError> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(millis(self.config.fetch_wait).max(1))
            .arg("STREAMS")
            .arg(self.stream(kind))
            .arg(">")
            .query_async(&mut reader)
            .await;
        let reply = match reply {
            // Redis restarted without its data: create the group again and
            // carry on (the next fetch reads what was pushed meanwhile).
            Err(e) if is_nogroup(&e) => {
                self.lost_group(kind);
                self.ensure_group(kind).await?;
                return Ok(Vec::new());
            }
            other => other?,
        };
        let mut out = Vec::new();
        if let Some(reply) = reply {
            for key in &reply.keys {
                self.collect(kind, &key.ids, &mut out);
            }
        }
        Ok(out)
    }

    async fn ack(&self, kind: &str, tags: &[String]) -> Result<(), QueueError> {
        if tags.is_empty() {
            return Ok(());
        }
        let stream = self.stream(kind);
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(&stream).arg(GROUP).arg(tags).ignore();
        pipe.cmd("XDEL").arg(&stream).arg(tags).ignore();
        let mut conn = self.conn.clone();
        match pipe.query_async::<()>(&mut conn).await {
            // The group (and these entries with it) went with Redis's data:
            // nothing is left to acknowledge.
            Err(e) if is_nogroup(&e) => {
                self.lost_group(kind);
                Ok(())
            }
            other => Ok(other?),
        }
    }

    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        let kind = &delivery.message.kind;
        let stream = self.stream(kind);
        let due_at = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(self.delayed(kind))
            .arg(due_at)
            .arg(delayed_member(&delivery.message))
            .ignore()
            .cmd("XACK")
            .arg(&stream)
            .arg(GROUP)
            .arg(&delivery.tag)
            .ignore()
            .cmd("XDEL")
            .arg(&stream)
            .arg(&delivery.tag)
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn release(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for d in deliveries {
            let stream = self.stream(&d.message.kind);
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("i")
                .arg(&d.message.id)
                .arg("t")
                .arg(&d.message.tenant_id)
                .arg("p")
                .arg(&d.message.payload)
                .ignore();
            pipe.cmd("XACK").arg(&stream).arg(GROUP).arg(&d.tag).ignore();
            pipe.cmd("XDEL").arg(&stream).arg(&d.tag).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn depth(&self, kind: &str) -> Result<Depth, QueueError> {
        let mut conn = self.conn.clone();
        let mut tries = 0;
        let (len, pending, delayed): (u64, redis::Value, u64) = loop {
            self.ensure_group(kind).await?;
            let got = redis::pipe()
                .cmd("XLEN")
                .arg(self.stream(kind))
                .cmd("XPENDING")
                .arg(self.stream(kind))
                .arg(GROUP)
                .cmd("ZCARD")
                .arg(self.delayed(kind))
                .query_async(&mut conn)
                .await;
            match got {
                // The stream went with Redis's data: create it again.
                Err(e) if is_nogroup(&e) && tries == 0 => {
                    self.lost_group(kind);
                    tries += 1;
                }
                other => break other?,
            }
        };
        // XPENDING's summary starts with the count of pending entries.
        let in_flight = match &pending {
            redis::Value::Array(items) => items
                .first()
                .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
                .unwrap_or(0),
            _ => 0,
        };
        Ok(Depth {
            ready: len.saturating_sub(in_flight),
            in_flight,
            delayed,
        })
    }

    async fn heartbeat(&self, kind: &str, consumer: &str, tags: &[String], lease: Duration) -> Result<(), QueueError> {
        // Redis keeps no deadline per entry: the lease is the idle time the
        // reclaimer tolerates, so resetting it to 0 is the renewal.
        let _ = lease;
        if tags.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        for chunk in tags.chunks(1000) {
            let mut call = self.heartbeat.key(self.stream(kind));
            call.arg(GROUP).arg(consumer);
            for t in chunk {
                call.arg(t);
            }
            let renewed: Result<u64, redis::RedisError> = call.invoke_async(&mut conn).await;
            match renewed {
                Err(e) if is_nogroup(&e) => {
                    self.lost_group(kind);
                    return Ok(());
                }
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    async fn reclaim(&self, kind: &str, consumer: &str, lease: Duration) -> Result<u64, QueueError> {
        // Shares fetch's clock, so fetch does not run it again right after.
        due(&self.last_reclaim, kind, Duration::ZERO);
        self.reclaim_expired(kind, consumer, lease).await
    }

    async fn epoch(&self) -> Result<Option<String>, QueueError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(self.epoch_key()).await?)
    }

    async fn claim_epoch(&self, value: &str, ttl: Option<Duration>) -> Result<bool, QueueError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.epoch_key()).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl).max(1));
        }
        let mut conn = self.conn.clone();
        let set: Option<String> = cmd.query_async(&mut conn).await?;
        Ok(set.is_some())
    }

    async fn confirm_epoch(&self, claimed: &str, value: &str) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let done: i64 = self
            .confirm_epoch
            .key(self.epoch_key())
            .arg(claimed)
            .arg(value)
            .invoke_async(&mut conn)
            .await?;
        Ok(done == 1)
    }
}
