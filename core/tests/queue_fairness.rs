//! Fairness between tenants on both queue backends: a tenant's job is
//! fetched ahead of another tenant's backlog, weights share the fetches,
//! and a tenant's `max_running` holds across consumers. With fairness off
//! the same first test sees the old first-in first-out order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kairos_core::config::{QueueBackendKind, QueueConfig};
use kairos_core::queue::fairness::{FairnessConfig, TenantShare};
use kairos_core::queue::{connect, Delivery, Message, Queue};

const LEASE: Duration = Duration::from_secs(30);

fn redis_url() -> String {
    std::env::var("KAIROS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn msgs(tenant: &str, from: usize, n: usize) -> Vec<Message> {
    (from..from + n)
        .map(|i| Message {
            id: format!("{tenant}-{i}"),
            kind: "k".into(),
            tenant_id: tenant.into(),
            payload: "{}".into(),
        })
        .collect()
}

struct Backend {
    kind: QueueBackendKind,
    prefix: String,
    dir: tempfile::TempDir,
}

impl Backend {
    fn new(kind: QueueBackendKind) -> Self {
        Self {
            kind,
            prefix: format!("kf-{}", uuid::Uuid::new_v4().simple()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A connection of its own (another worker process, as far as the
    /// queue can tell), with this fairness policy.
    async fn open(&self, fairness: FairnessConfig) -> Arc<dyn Queue> {
        let config = QueueConfig {
            backend: self.kind,
            url: match self.kind {
                QueueBackendKind::Redis => redis_url(),
                QueueBackendKind::Sqlite => format!("sqlite://{}", self.dir.path().join("q.db").display()),
            },
            prefix: self.prefix.clone(),
            fetch_wait: Duration::from_millis(50),
            reclaim_interval: Duration::from_millis(100),
            fairness,
            ..QueueConfig::default()
        };
        connect(&config).await.unwrap()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if self.kind != QueueBackendKind::Redis {
            return;
        }
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let client = redis::Client::open(redis_url()).unwrap();
            let mut c = client.get_connection().unwrap();
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query(&mut c).unwrap();
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL").arg(keys).query(&mut c).unwrap();
            }
        })
        .join();
    }
}

fn share(weight: u32, max_running: u32) -> TenantShare {
    TenantShare {
        weight: NonZeroU32::new(weight),
        max_running: Some(max_running),
    }
}

fn tags(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| d.tag.clone()).collect()
}

/// A's backlog of 5,000 is queued first; B's one job is fetched by the
/// very next fetch (of 10). Fairness off: it is the 5,001st.
async fn newcomer_overtakes_backlog(kind: QueueBackendKind) {
    for enabled in [true, false] {
        let b = Backend::new(kind);
        let q = b
            .open(FairnessConfig {
                enabled,
                ..FairnessConfig::default()
            })
            .await;
        // A is already being served (its virtual time is ahead).
        q.push(&msgs("a", 0, 5000)).await.unwrap();
        let first = q.fetch("k", "w", 10, LEASE).await.unwrap();
        assert_eq!(first.len(), 10);
        q.ack("k", &tags(&first)).await.unwrap();
        q.push(&msgs("b", 0, 1)).await.unwrap();
        let mut rounds = 0;
        let mut a_before_b = 0;
        loop {
            let got = q.fetch("k", "w", 10, LEASE).await.unwrap();
            assert!(!got.is_empty(), "b's job never came (fairness {enabled})");
            rounds += 1;
            let pos = got.iter().position(|d| d.message.tenant_id == "b");
            a_before_b += pos.unwrap_or(got.len());
            q.ack("k", &tags(&got)).await.unwrap();
            if pos.is_some() {
                break;
            }
        }
        if enabled {
            // In the first fetch (after a's share of it, at most).
            assert!(
                rounds == 1 && a_before_b < 10,
                "b waited behind a's backlog: {a_before_b}"
            );
        } else {
            assert_eq!(a_before_b, 4990, "fairness off is first-in first-out");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_tenants_job_is_fetched_ahead_of_another_tenants_backlog() {
    newcomer_overtakes_backlog(QueueBackendKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_tenants_job_is_fetched_ahead_of_another_tenants_backlog() {
    newcomer_overtakes_backlog(QueueBackendKind::Sqlite).await;
}

/// Weights 2:1 with both backlogged: 2:1 of what is fetched, across two
/// consumers with different batch sizes.
async fn weights_share_throughput(kind: QueueBackendKind) {
    let b = Backend::new(kind);
    let mut fairness = FairnessConfig::default();
    fairness.tenants.insert("heavy".into(), share(2, 0));
    let q1 = b.open(fairness.clone()).await;
    let q2 = b.open(fairness).await;
    q1.push(&msgs("heavy", 0, 1000)).await.unwrap();
    q1.push(&msgs("light", 0, 1000)).await.unwrap();
    let mut count: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    while total < 900 {
        for (q, n) in [(&q1, 7), (&q2, 16)] {
            let got = q.fetch("k", "w", n, LEASE).await.unwrap();
            total += got.len();
            for d in &got {
                *count.entry(d.message.tenant_id.clone()).or_default() += 1;
            }
            q.ack("k", &tags(&got)).await.unwrap();
        }
    }
    let ratio = count["heavy"] as f64 / count["light"] as f64;
    assert!((1.8..=2.2).contains(&ratio), "{count:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_weights_share_fetches() {
    weights_share_throughput(QueueBackendKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_weights_share_fetches() {
    weights_share_throughput(QueueBackendKind::Sqlite).await;
}

/// `max_running = 3` for "capped": two consumers asking for 50 each hold 3
/// of its jobs in all; the uncapped tenant fills the rest. An ack frees a
/// slot; so does an expired lease (a dead worker's), and only one.
async fn limit_holds_across_consumers(kind: QueueBackendKind) {
    let b = Backend::new(kind);
    let mut fairness = FairnessConfig::default();
    fairness.tenants.insert("capped".into(), share(1, 3));
    fairness.tenants.insert("brief".into(), share(1, 1));
    let q1 = b.open(fairness.clone()).await;
    let q2 = b.open(fairness).await;
    q1.push(&msgs("capped", 0, 100)).await.unwrap();
    q1.push(&msgs("free", 0, 100)).await.unwrap();
    let (a, c) = tokio::join!(q1.fetch("k", "w1", 50, LEASE), q2.fetch("k", "w2", 50, LEASE));
    let held: Vec<Delivery> = a.unwrap().into_iter().chain(c.unwrap()).collect();
    let capped: Vec<&Delivery> = held.iter().filter(|d| d.message.tenant_id == "capped").collect();
    assert_eq!((capped.len(), held.len()), (3, 100), "the other tenant fills the rest");
    let more = q1.fetch("k", "w1", 50, LEASE).await.unwrap();
    assert_eq!(more.len(), 3);
    assert!(more.iter().all(|d| d.message.tenant_id == "free"));
    assert!(
        q2.fetch("k", "w2", 50, LEASE).await.unwrap().is_empty(),
        "capped is at its limit"
    );
    q1.ack("k", &[capped[0].tag.clone()]).await.unwrap();
    let after_ack = q2.fetch("k", "w2", 50, LEASE).await.unwrap();
    let n = after_ack.iter().filter(|d| d.message.tenant_id == "capped").count();
    assert_eq!((n, after_ack.len()), (1, 1), "one ack frees one slot");

    // A dead worker's slot: a queue of its own, where every fetch uses the
    // one short lease (Redis reclaims what is idle longer than the
    // fetcher's lease: a deployment's workers share one).
    let b2 = Backend::new(kind);
    let mut fairness = FairnessConfig::default();
    fairness.tenants.insert("brief".into(), share(1, 1));
    let (q1, q2) = (b2.open(fairness.clone()).await, b2.open(fairness).await);
    q1.push(&msgs("brief", 0, 5)).await.unwrap();
    let short = Duration::from_millis(300);
    let dead = q1.fetch("k", "dead", 10, short).await.unwrap();
    assert_eq!(dead.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut back = Vec::new();
    while back.is_empty() && Instant::now() < deadline {
        back = q2.fetch("k", "rescuer", 10, short).await.unwrap();
    }
    assert_eq!(back.len(), 1, "the expired lease freed its one slot");
    assert_eq!(back[0].message.tenant_id, "brief");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_max_running_holds_across_consumers() {
    limit_holds_across_consumers(QueueBackendKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_max_running_holds_across_consumers() {
    limit_holds_across_consumers(QueueBackendKind::Sqlite).await;
}
