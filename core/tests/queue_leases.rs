//! Leases on both queue backends: a heartbeat keeps a delivery, a dead
//! consumer's deliveries all come back at once, and (Redis) a queue that
//! lost its data — consumer group and epoch marker gone — carries on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kairos_core::config::{QueueBackendKind, QueueConfig};
use kairos_core::queue::{connect, Message, Queue};

const LEASE: Duration = Duration::from_millis(600);

fn redis_url() -> String {
    std::env::var("KAIROS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn msgs(kind: &str, n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| Message {
            id: format!("job-{i}"),
            kind: kind.into(),
            tenant_id: "t".into(),
            payload: "{}".into(),
        })
        .collect()
}

struct Backend {
    queue: Arc<dyn Queue>,
    prefix: String,
    _dir: tempfile::TempDir,
}

async fn backend(kind: QueueBackendKind) -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("kq-{}", uuid::Uuid::new_v4().simple());
    let config = QueueConfig {
        backend: kind,
        url: match kind {
            QueueBackendKind::Redis => redis_url(),
            QueueBackendKind::Sqlite => format!("sqlite://{}", dir.path().join("q.db").display()),
        },
        prefix: prefix.clone(),
        fetch_wait: Duration::from_millis(50),
        reclaim_interval: Duration::from_millis(50),
        lease: LEASE,
        ..QueueConfig::default()
    };
    Backend {
        queue: connect(&config).await.unwrap(),
        prefix,
        _dir: dir,
    }
}

async fn drop_keys(prefix: &str) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut c)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut c).await.unwrap();
    }
}

/// Fetches as `consumer` until `n` deliveries are in or `wait` passes.
async fn fetch_n(q: &dyn Queue, consumer: &str, n: usize, wait: Duration) -> Vec<kairos_core::Delivery> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(q.fetch("k", consumer, n - got.len(), LEASE).await.unwrap());
    }
    got
}

async fn heartbeat_keeps_and_death_returns_all(kind: QueueBackendKind) {
    let b = backend(kind).await;
    let q = b.queue.as_ref();
    q.push(&msgs("k", 300)).await.unwrap();
    let held = fetch_n(q, "alive", 100, Duration::from_secs(5)).await;
    let dead = fetch_n(q, "dead", 200, Duration::from_secs(5)).await;
    assert_eq!((held.len(), dead.len()), (100, 200));
    let held_tags: Vec<String> = held.iter().map(|d| d.tag.clone()).collect();

    // Over three leases: "alive" heartbeats, "dead" does not. A third
    // consumer with a single slot takes back everything "dead" held.
    let mut back = Vec::new();
    let start = Instant::now();
    while start.elapsed() < LEASE * 3 {
        q.heartbeat("k", "alive", &held_tags, LEASE).await.unwrap();
        q.reclaim("k", "rescuer", LEASE).await.unwrap();
        back.extend(q.fetch("k", "rescuer", 1000, LEASE).await.unwrap());
        tokio::time::sleep(LEASE / 4).await;
    }
    let back_ids: HashSet<String> = back.iter().map(|d| d.message.id.clone()).collect();
    let dead_ids: HashSet<String> = dead.iter().map(|d| d.message.id.clone()).collect();
    let held_ids: HashSet<String> = held.iter().map(|d| d.message.id.clone()).collect();
    assert_eq!(back_ids, dead_ids, "every expired delivery came back, and only those");
    assert!(back_ids.is_disjoint(&held_ids), "a renewed lease was taken");
    // Acknowledged with their tags, nothing is left.
    q.ack("k", &held_tags).await.unwrap();
    q.ack("k", &back.iter().map(|d| d.tag.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    let depth = q.depth("k").await.unwrap();
    assert_eq!((depth.ready, depth.in_flight), (0, 0), "{depth:?}");
    if kind == QueueBackendKind::Redis {
        drop_keys(&b.prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_heartbeat_keeps_leases_and_a_dead_consumers_come_back_in_bulk() {
    heartbeat_keeps_and_death_returns_all(QueueBackendKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_heartbeat_keeps_leases_and_a_dead_consumers_come_back_in_bulk() {
    heartbeat_keeps_and_death_returns_all(QueueBackendKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_lost_its_data_recreates_the_group_and_loses_its_epoch() {
    let b = backend(QueueBackendKind::Redis).await;
    let q = b.queue.as_ref();
    assert_eq!(q.epoch().await.unwrap(), None);
    assert!(q
        .claim_epoch("recovering:a", Some(Duration::from_secs(60)))
        .await
        .unwrap());
    assert!(
        !q.claim_epoch("recovering:b", None).await.unwrap(),
        "only one claim wins"
    );
    assert!(!q.confirm_epoch("recovering:b", "b").await.unwrap());
    assert!(q.confirm_epoch("recovering:a", "a").await.unwrap());
    assert_eq!(q.epoch().await.unwrap().as_deref(), Some("a"));

    q.push(&msgs("k", 3)).await.unwrap();
    assert_eq!(fetch_n(q, "c", 3, Duration::from_secs(5)).await.len(), 3);
    // Redis loses everything under this prefix (as after a restart
    // without its data): the process still believes the group exists.
    drop_keys(&b.prefix).await;
    assert_eq!(q.epoch().await.unwrap(), None, "the marker went with the data");
    assert_eq!(q.depth("k").await.unwrap().ready, 0);
    // A fetch meets NOGROUP, re-creates the group and carries on; what is
    // pushed afterwards is delivered.
    let _ = q.fetch("k", "c", 10, LEASE).await.unwrap();
    drop_keys(&b.prefix).await;
    let _ = q.fetch("k", "c", 10, LEASE).await.unwrap();
    q.push(&msgs("k", 2)).await.unwrap();
    let got = fetch_n(q, "c", 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    q.ack("k", &got.iter().map(|d| d.tag.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    drop_keys(&b.prefix).await;
    // Acknowledging into a vanished group is not an error: nothing is left.
    q.ack("k", &["1-0".to_owned()]).await.unwrap();
    drop_keys(&b.prefix).await;
}

#[tokio::test]
async fn sqlite_has_a_durable_epoch() {
    let b = backend(QueueBackendKind::Sqlite).await;
    assert!(b.queue.epoch().await.unwrap().is_some());
}
