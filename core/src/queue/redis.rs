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
//! Fairness between tenants ([`super::fairness`]): a kind's queue is one
//! stream per tenant (`{prefix}:q:{kind}:{tenant}`, each with its consumer
//! group; with fairness off, the single stream `{prefix}:q:{kind}` — also
//! where a version without fairness left its jobs), a sorted set of the
//! sub-queues with ready work scored by virtual time (`{prefix}:qr:{kind}`),
//! the set of every sub-queue (`{prefix}:qa:{kind}`, for reclaim and
//! depth), the kind's virtual clock (`{prefix}:qc:{kind}`) and a one-entry
//! signal stream (`{prefix}:qs:{kind}`) that every push, release, promotion
//! and reclaim appends to. A fetch is one Lua script ([`FETCH_LUA`]: lowest
//! virtual time first, `XPENDING` for tenants with a limit, a non-blocking
//! `XREADGROUP` per tenant served); when it finds nothing, the consumer
//! blocks on the signal stream after the entry the script saw (`XREAD
//! BLOCK`), so no push is missed, then runs the script again. Scripts name
//! sub-queue keys they compute (one Redis, not Cluster).
//!
//! Blocking reads use a connection of their own per kind: a `BLOCK` on the
//! shared multiplexed connection would stall every other command behind it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::{Delivery, Depth, Message, Queue, QueueError};
use crate::config::QueueConfig;
use crate::time::now_ms;

const GROUP: &str = "kairos";
/// How often delayed retries are looked at, per kind and process.
const PROMOTE_EVERY: Duration = Duration::from_millis(200);

/// Moves due retries from the delayed set (KEYS[1]) back onto their
/// tenants' streams (fairness on: ARGV[3] = 1) or the kind's FIFO, marking
/// the sub-queues ready (KEYS[2], KEYS[3]) and signalling (KEYS[4]).
/// ARGV[4]: stream key prefix of sub-queues, ARGV[5]: the FIFO's key.
const PROMOTE_LUA: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local d = cjson.decode(m)
  local sub = ''
  if ARGV[3] == '1' then sub = d.t end
  local key = ARGV[5]
  if sub ~= '' then key = ARGV[4] .. sub end
  redis.call('XADD', key, '*', 'i', d.i, 't', d.t, 'p', d.p)
  redis.call('ZADD', KEYS[2], 'NX', 0, sub)
  redis.call('SADD', KEYS[3], sub)
  redis.call('ZREM', KEYS[1], m)
end
if #due > 0 then
  redis.call('XADD', KEYS[4], 'MAXLEN', 1, '*', 's', 1)
end
return #due
"#;

/// One fair fetch (see the module doc and [`super::fairness`]; the same
/// rule as `fairness::next` / `fairness::served`).
/// KEYS: ready zset, clock, signal stream, all-sub-queues set.
/// ARGV: sub-queue key prefix, FIFO key, group, consumer, max, window,
/// default weight, default limit, then (tenant, weight, limit) triples.
/// Returns { signal id seen (when nothing was taken), then per entry:
/// sub-queue, entry id, fields }.
const FETCH_LUA: &str = r#"
local function skey(t) if t == '' then return ARGV[2] end return ARGV[1] .. t end
local group, consumer = ARGV[3], ARGV[4]
local max = tonumber(ARGV[5])
local dw, dl = tonumber(ARGV[7]), tonumber(ARGV[8])
local policy = {}
for i = 9, #ARGV, 3 do policy[ARGV[i]] = {tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])} end
local clock = tonumber(redis.call('GET', KEYS[2]) or '0')
local clock0 = clock
local cand = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[6]) - 1, 'WITHSCORES')
local ts = {}
local wsum = 0
for i = 1, #cand, 2 do
  local t = cand[i]
  local w, l = dw, dl
  local p = policy[t]
  if p then w, l = p[1], p[2] end
  if t == '' then w, l = dw, 0 end
  local old = tonumber(cand[i + 1])
  local vt = old
  if vt < clock then vt = clock end
  local room = max
  if l > 0 then
    local pend = redis.pcall('XPENDING', skey(t), group)
    local n = 0
    if type(pend) == 'table' and pend[1] then n = tonumber(pend[1]) end
    room = l - n
  end
  ts[#ts + 1] = {t = t, w = w, vt = vt, old = old, room = room, done = false}
  if room > 0 then wsum = wsum + w end
end
local out = {''}
local left = max
local guard = 4 * #ts + 4
while left > 0 and guard > 0 do
  guard = guard - 1
  local best = nil
  for _, e in ipairs(ts) do
    if not e.done and e.room > 0 and (best == nil or e.vt < best.vt) then best = e end
  end
  if best == nil then break end
  local want = math.min(left, best.room, math.max(1, math.ceil(max * best.w / wsum)))
  local key = skey(best.t)
  local r = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want, 'STREAMS', key, '>')
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'NOGROUP', 1, true) then
      redis.call('XGROUP', 'CREATE', key, group, '0', 'MKSTREAM')
      r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want, 'STREAMS', key, '>')
    else
      return redis.error_reply(r.err)
    end
  end
  local got = 0
  if r and r[1] then
    for _, e in ipairs(r[1][2]) do
      out[#out + 1] = best.t
      out[#out + 1] = e[1]
      out[#out + 1] = e[2]
      got = got + 1
    end
  end
  if clock < best.vt then clock = best.vt end
  best.vt = best.vt + got / best.w
  best.room = best.room - got
  left = left - got
  if got < want then best.done = true end
end
for _, e in ipairs(ts) do
  if e.done then
    redis.call('ZREM', KEYS[1], e.t)
  elseif e.vt ~= e.old then
    redis.call('ZADD', KEYS[1], 'XX', e.vt, e.t)
  end
end
if clock ~= clock0 then redis.call('SET', KEYS[2], tostring(clock)) end
if #out == 1 then
  local sig = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
  if sig[1] then out[1] = sig[1][1] else out[1] = '0-0' end
end
return out
"#;

/// Registers the kind's FIFO stream (KEYS[1], left by a version without
/// fairness or by fairness off) as a sub-queue, so its entries are fetched.
/// KEYS[2]: ready zset, KEYS[3]: all-sub-queues set.
const ADOPT_FIFO_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SADD', KEYS[3], '')
  if redis.call('XLEN', KEYS[1]) > 0 then
    redis.call('ZADD', KEYS[2], 'NX', 0, '')
  end
  return 1
end
return 0
"#;

/// A kind's depth summed over its sub-queues (KEYS[1]: all-sub-queues set,
/// KEYS[2]: delayed set; ARGV: key prefix, FIFO key, group).
const DEPTH_LUA: &str = r#"
local len, pending = 0, 0
for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2]
  if t ~= '' then key = ARGV[1] .. t end
  len = len + redis.call('XLEN', key)
  local p = redis.pcall('XPENDING', key, ARGV[3])
  if type(p) == 'table' and p[1] then pending = pending + tonumber(p[1]) end
end
return {len, pending, redis.call('ZCARD', KEYS[2])}
"#;

/// Takes every pending entry idle longer than the lease (ARGV[3] ms), in
/// every sub-queue of the kind (KEYS[1]: all-sub-queues set), and puts it
/// back on its stream as a new entry, so whichever consumer has a free slot
/// gets it; the sub-queue is marked ready (KEYS[2]) and waiting consumers
/// signalled (KEYS[3]). Loops over XAUTOCLAIM's cursor up to ARGV[5]
/// entries in all. ARGV[6]: sub-queue key prefix, ARGV[7]: the FIFO's key.
/// (Redis 7 drops entries deleted meanwhile from the pending list itself.)
const RECLAIM_LUA: &str = r#"
local moved = 0
local seen = 0
for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[7]
  if t ~= '' then key = ARGV[6] .. t end
  local cursor = '0-0'
  local here = 0
  repeat
    local r = redis.pcall('XAUTOCLAIM', key, ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', ARGV[4])
    if type(r) ~= 'table' or r.err then break end
    cursor = r[1]
    for _, e in ipairs(r[2]) do
      if type(e) == 'table' then
        if type(e[2]) == 'table' then
          redis.call('XADD', key, '*', unpack(e[2]))
          here = here + 1
        end
        redis.call('XACK', key, ARGV[1], e[1])
        redis.call('XDEL', key, e[1])
      end
      seen = seen + 1
    end
  until cursor == '0-0' or seen >= tonumber(ARGV[5])
  if here > 0 then
    redis.call('ZADD', KEYS[2], 'NX', 0, t)
    moved = moved + here
  end
  if seen >= tonumber(ARGV[5]) then break end
end
if moved > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', 1, '*', 's', 1)
end
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
    fetch: Script,
    adopt_fifo: Script,
    depth: Script,
    reclaim: Script,
    heartbeat: Script,
    confirm_epoch: Script,
    /// The fairness policy as script arguments: default weight, default
    /// limit, then (tenant, weight, limit) for each listed tenant.
    policy_args: Vec<String>,
    /// Dedicated connection per kind for blocking reads.
    readers: tokio::sync::Mutex<HashMap<String, ConnectionManager>>,
    /// Kinds whose FIFO stream this process has looked for.
    adopted: Mutex<HashSet<String>>,
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

/// A delivery's tag: the stream entry id and its sub-queue (an entry id
/// never holds `@`).
fn tag(entry: &str, sub: &str) -> String {
    format!("{entry}@{sub}")
}

/// (entry id, sub-queue); a bare entry id (a tag from before fairness) is
/// on the kind's FIFO stream.
fn parse_tag(tag: &str) -> Result<(&str, &str), QueueError> {
    Ok(tag.split_once('@').unwrap_or((tag, "")))
}

/// Tags grouped by sub-queue, in first-seen order.
fn by_sub<'a>(tags: impl IntoIterator<Item = &'a str>) -> Result<Vec<(&'a str, Vec<&'a str>)>, QueueError> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for t in tags {
        let (entry, sub) = parse_tag(t)?;
        match groups.iter_mut().find(|(s, _)| *s == sub) {
            Some((_, v)) => v.push(entry),
            None => groups.push((sub, vec![entry])),
        }
    }
    Ok(groups)
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
        let f = &config.fairness;
        let mut policy_args = vec![f.weight.to_string(), f.max_running.to_string()];
        for tenant in f.tenants.keys() {
            let (w, l) = f.share(tenant);
            policy_args.extend([tenant.clone(), w.to_string(), l.to_string()]);
        }
        Ok(Self {
            client,
            conn,
            config: config.clone(),
            promote: Script::new(PROMOTE_LUA),
            fetch: Script::new(FETCH_LUA),
            adopt_fifo: Script::new(ADOPT_FIFO_LUA),
            depth: Script::new(DEPTH_LUA),
            reclaim: Script::new(RECLAIM_LUA),
            heartbeat: Script::new(HEARTBEAT_LUA),
            confirm_epoch: Script::new(CONFIRM_EPOCH_LUA),
            policy_args,
            readers: tokio::sync::Mutex::new(HashMap::new()),
            adopted: Mutex::new(HashSet::new()),
            last_promote: Mutex::new(HashMap::new()),
            last_reclaim: Mutex::new(HashMap::new()),
        })
    }

    /// The kind's FIFO stream: the one sub-queue with fairness off.
    fn fifo(&self, kind: &str) -> String {
        format!("{}:q:{kind}", self.config.prefix)
    }

    /// Where a sub-queue's key starts (the tenant id follows).
    fn sub_prefix(&self, kind: &str) -> String {
        format!("{}:q:{kind}:", self.config.prefix)
    }

    /// The stream of sub-queue `sub` of `kind`.
    fn stream(&self, kind: &str, sub: &str) -> String {
        if sub.is_empty() {
            self.fifo(kind)
        } else {
            format!("{}:q:{kind}:{sub}", self.config.prefix)
        }
    }

    fn ready(&self, kind: &str) -> String {
        format!("{}:qr:{kind}", self.config.prefix)
    }

    fn all_subs(&self, kind: &str) -> String {
        format!("{}:qa:{kind}", self.config.prefix)
    }

    fn clock(&self, kind: &str) -> String {
        format!("{}:qc:{kind}", self.config.prefix)
    }

    fn signal(&self, kind: &str) -> String {
        format!("{}:qs:{kind}", self.config.prefix)
    }

    fn delayed(&self, kind: &str) -> String {
        format!("{}:d:{kind}", self.config.prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{}:epoch", self.config.prefix)
    }

    /// Marks sub-queue `sub` of `kind` ready and known (after its entries).
    fn mark_ready(&self, pipe: &mut redis::Pipeline, kind: &str, sub: &str) {
        // At virtual time 0: the next fetch lifts it to the kind's clock.
        pipe.cmd("ZADD")
            .arg(self.ready(kind))
            .arg("NX")
            .arg(0)
            .arg(sub)
            .ignore();
        pipe.cmd("SADD").arg(self.all_subs(kind)).arg(sub).ignore();
    }

    /// Wakes the consumers of `kind` blocked on its signal stream.
    fn signal_cmd(&self, pipe: &mut redis::Pipeline, kind: &str) {
        pipe.cmd("XADD")
            .arg(self.signal(kind))
            .arg("MAXLEN")
            .arg(1)
            .arg("*")
            .arg("s")
            .arg(1)
            .ignore();
    }

    /// Once per process and kind: entries on the kind's FIFO stream (left
    /// by a version without fairness) are made fetchable.
    async fn adopt_fifo(&self, kind: &str) -> Result<(), QueueError> {
        if self.adopted.lock().unwrap_or_else(|e| e.into_inner()).contains(kind) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: i64 = self
            .adopt_fifo
            .key(self.fifo(kind))
            .key(self.ready(kind))
            .key(self.all_subs(kind))
            .invoke_async(&mut conn)
            .await?;
        self.adopted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kind.to_owned());
        Ok(())
    }

    /// Moves every entry of `kind` idle longer than `lease` back onto its
    /// stream (see [`RECLAIM_LUA`]).
    async fn reclaim_expired(&self, kind: &str, consumer: &str, lease: Duration) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let moved: u64 = self
            .reclaim
            .key(self.all_subs(kind))
            .key(self.ready(kind))
            .key(self.signal(kind))
            .arg(GROUP)
            .arg(consumer)
            .arg(millis(lease))
            .arg(RECLAIM_COUNT)
            .arg(RECLAIM_MAX)
            .arg(self.sub_prefix(kind))
            .arg(self.fifo(kind))
            .invoke_async(&mut conn)
            .await?;
        if moved > 0 {
            tracing::warn!(
                kind,
                count = moved,
                "re-queued jobs whose lease expired (their worker died)"
            );
        }
        Ok(moved)
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

    /// Runs [`FETCH_LUA`] once: the deliveries, or the signal stream's last
    /// entry id to block after when there were none.
    async fn fetch_once(&self, kind: &str, consumer: &str, max: usize) -> Result<(Vec<Delivery>, String), QueueError> {
        let mut conn = self.conn.clone();
        let mut call = self.fetch.key(self.ready(kind));
        call.key(self.clock(kind))
            .key(self.signal(kind))
            .key(self.all_subs(kind))
            .arg(self.sub_prefix(kind))
            .arg(self.fifo(kind))
            .arg(GROUP)
            .arg(consumer)
            .arg(max)
            .arg(FETCH_WINDOW.max(max))
            .arg(&self.policy_args);
        let reply: Vec<redis::Value> = call.invoke_async(&mut conn).await?;
        let mut items = reply.into_iter();
        let signal: String = match items.next() {
            Some(v) => text(v)?,
            None => String::new(),
        };
        let mut out = Vec::new();
        while let (Some(sub), Some(id), Some(fields)) = (items.next(), items.next(), items.next()) {
            let sub = text(sub)?;
            let id = text(id)?;
            let fields: HashMap<String, String> = match redis::from_redis_value(fields) {
                Ok(f) => f,
                Err(e) => {
                    // Left pending (not acked): visible in XPENDING for ops.
                    tracing::error!(kind, entry = %id, error = %e, "skipping unreadable queue entry");
                    continue;
                }
            };
            match delivery(kind, &tag(&id, &sub), &fields) {
                Ok(d) => out.push(d),
                Err(e) => tracing::error!(kind, error = %e, "skipping unreadable queue entry"),
            }
        }
        Ok((out, signal))
    }
}

/// A string of the fetch script's reply.
fn text(v: redis::Value) -> Result<String, QueueError> {
    redis::from_redis_value(v).map_err(|e| QueueError::Corrupt {
        tag: "fetch reply".into(),
        reason: e.to_string(),
    })
}

/// Tenants with the lowest virtual times a fetch considers, at least.
const FETCH_WINDOW: usize = 64;

fn delivery(kind: &str, tag: &str, fields: &HashMap<String, String>) -> Result<Delivery, QueueError> {
    let field = |name: &str| -> Result<String, QueueError> {
        fields.get(name).cloned().ok_or_else(|| QueueError::Corrupt {
            tag: tag.to_owned(),
            reason: format!("missing field `{name}`"),
        })
    };
    Ok(Delivery {
        tag: tag.to_owned(),
        message: Message {
            id: field("i")?,
            kind: kind.to_owned(),
            tenant_id: field("t")?,
            payload: field("p")?,
        },
    })
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
        let fairness = &self.config.fairness;
        let mut pipe = redis::pipe();
        let mut subs: Vec<(&str, &str)> = Vec::new();
        for m in messages {
            let sub = fairness.sub_queue(&m.tenant_id);
            pipe.cmd("XADD")
                .arg(self.stream(&m.kind, sub))
                .arg("*")
                .arg("i")
                .arg(&m.id)
                .arg("t")
                .arg(&m.tenant_id)
                .arg("p")
                .arg(&m.payload)
                .ignore();
            if !subs.contains(&(m.kind.as_str(), sub)) {
                subs.push((m.kind.as_str(), sub));
            }
        }
        // After the entries: a fetch that drops a sub-queue it found empty
        // cannot miss these.
        for (kind, sub) in &subs {
            self.mark_ready(&mut pipe, kind, sub);
        }
        let mut kinds: Vec<&str> = subs.iter().map(|(k, _)| *k).collect();
        kinds.sort_unstable();
        kinds.dedup();
        for kind in kinds {
            self.signal_cmd(&mut pipe, kind);
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
        self.adopt_fifo(kind).await?;
        let mut conn = self.conn.clone();
        if due(&self.last_promote, kind, PROMOTE_EVERY) {
            let _: i64 = self
                .promote
                .key(self.delayed(kind))
                .key(self.ready(kind))
                .key(self.all_subs(kind))
                .key(self.signal(kind))
                .arg(now_ms())
                .arg(1000)
                .arg(if self.config.fairness.enabled { "1" } else { "0" })
                .arg(self.sub_prefix(kind))
                .arg(self.fifo(kind))
                .invoke_async(&mut conn)
                .await?;
        }
        if due(&self.last_reclaim, kind, self.config.reclaim_interval) {
            self.reclaim_expired(kind, consumer, lease).await?;
        }
        let deadline = Instant::now() + self.config.fetch_wait;
        loop {
            let (got, signal) = self.fetch_once(kind, consumer, max).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !got.is_empty() || left.is_zero() {
                return Ok(got);
            }
            // Blocks until anything is pushed after the signal entry the
            // script saw (none missed between the two), or the wait ends.
            let mut reader = self.reader(kind).await?;
            let _: Option<redis::Value> = redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(millis(left).max(1))
                .arg("STREAMS")
                .arg(self.signal(kind))
                .arg(&signal)
                .query_async(&mut reader)
                .await?;
            if Instant::now() >= deadline {
                return Ok(self.fetch_once(kind, consumer, max).await?.0);
            }
        }
    }

    async fn ack(&self, kind: &str, tags: &[String]) -> Result<(), QueueError> {
        if tags.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (sub, entries) in by_sub(tags.iter().map(String::as_str))? {
            let stream = self.stream(kind, sub);
            pipe.cmd("XACK").arg(&stream).arg(GROUP).arg(&entries).ignore();
            pipe.cmd("XDEL").arg(&stream).arg(&entries).ignore();
        }
        let mut conn = self.conn.clone();
        match pipe.query_async::<()>(&mut conn).await {
            // The group (and these entries with it) went with Redis's data:
            // nothing is left to acknowledge.
            Err(e) if is_nogroup(&e) => Ok(()),
            other => Ok(other?),
        }
    }

    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        let kind = &delivery.message.kind;
        let (entry, sub) = parse_tag(&delivery.tag)?;
        let stream = self.stream(kind, sub);
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
            .arg(entry)
            .ignore()
            .cmd("XDEL")
            .arg(&stream)
            .arg(entry)
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
        let mut subs: Vec<(&str, &str)> = Vec::new();
        for d in deliveries {
            let (entry, sub) = parse_tag(&d.tag)?;
            let kind = d.message.kind.as_str();
            let stream = self.stream(kind, sub);
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
            pipe.cmd("XACK").arg(&stream).arg(GROUP).arg(entry).ignore();
            pipe.cmd("XDEL").arg(&stream).arg(entry).ignore();
            if !subs.contains(&(kind, sub)) {
                subs.push((kind, sub));
            }
        }
        for (kind, sub) in &subs {
            self.mark_ready(&mut pipe, kind, sub);
        }
        let mut kinds: Vec<&str> = subs.iter().map(|(k, _)| *k).collect();
        kinds.sort_unstable();
        kinds.dedup();
        for kind in kinds {
            self.signal_cmd(&mut pipe, kind);
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
        self.adopt_fifo(kind).await?;
        let mut conn = self.conn.clone();
        let (len, in_flight, delayed): (u64, u64, u64) = self
            .depth
            .key(self.all_subs(kind))
            .key(self.delayed(kind))
            .arg(self.sub_prefix(kind))
            .arg(self.fifo(kind))
            .arg(GROUP)
            .invoke_async(&mut conn)
            .await?;
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
        for (sub, entries) in by_sub(tags.iter().map(String::as_str))? {
            for chunk in entries.chunks(1000) {
                let mut call = self.heartbeat.key(self.stream(kind, sub));
                call.arg(GROUP).arg(consumer);
                for t in chunk {
                    call.arg(*t);
                }
                let renewed: Result<u64, redis::RedisError> = call.invoke_async(&mut conn).await;
                match renewed {
                    // Redis lost the group with its data: nothing to renew.
                    Err(e) if is_nogroup(&e) => break,
                    other => {
                        other?;
                    }
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
