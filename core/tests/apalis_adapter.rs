//! `kairos_core::queue::apalis`: an apalis 1.0 `Worker` consuming Kairos
//! queues, against real Redis (`KAIROS_TEST_REDIS`, default
//! redis://127.0.0.1:6379, one key prefix per test, deleted at the end) and
//! a real SQLite file.
//!
//! Each test pushes through the Kairos `Queue`, runs a worker built with
//! apalis's `WorkerBuilder` over `ApalisQueue`, waits for a condition (with
//! a timeout, woken by the handler), stops the worker gracefully and checks
//! what was handled and that the Kairos queue is empty.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::layers::WorkerBuilderExt;
use apalis_core::error::{AbortError, BoxDynError, RetryAfterError};
use apalis_core::task::data::Data;
use apalis_core::task::task_id::TaskId;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_core::worker::context::WorkerContext;
use async_trait::async_trait;
use futures::FutureExt;
use kairos_core::config::{QueueBackendKind, QueueConfig};
use kairos_core::queue::apalis::{ApalisQueue, ApalisQueueConfig};
use kairos_core::queue::{connect, Delivery, Depth, Message, Queue, QueueError};
use serde_json::json;
use tokio::sync::{oneshot, Notify};

const WAIT: Duration = Duration::from_secs(30);
const FETCH_WAIT: Duration = Duration::from_millis(200);

fn redis_url() -> String {
    std::env::var("KAIROS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Counts the calls the adapter makes, to check batching and idle cost,
/// and fails the next `fail_*` calls of a kind, to check error handling.
#[derive(Default)]
struct Counting {
    inner: Option<Arc<dyn Queue>>,
    fetches: AtomicUsize,
    acks: AtomicUsize,
    retries: AtomicUsize,
    fail_fetches: AtomicUsize,
    fail_acks: AtomicUsize,
    fail_retries: AtomicUsize,
    fail_releases: AtomicUsize,
}

impl Counting {
    fn inner(&self) -> &dyn Queue {
        self.inner.as_deref().expect("inner queue")
    }
}

/// Fails (and counts down) while `budget` is above zero.
fn injected(budget: &AtomicUsize, what: &str) -> Result<(), QueueError> {
    match budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
        Ok(_) => Err(QueueError::Corrupt {
            tag: "injected".into(),
            reason: format!("injected {what} failure"),
        }),
        Err(_) => Ok(()),
    }
}

#[async_trait]
impl Queue for Counting {
    fn backend(&self) -> &'static str {
        self.inner().backend()
    }
    async fn push(&self, messages: &[Message]) -> Result<(), QueueError> {
        self.inner().push(messages).await
    }
    async fn push_delayed(&self, messages: &[Message], due_ms: i64) -> Result<(), QueueError> {
        self.inner().push_delayed(messages, due_ms).await
    }
    async fn fetch(
        &self,
        kind: &str,
        consumer: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        injected(&self.fail_fetches, "fetch")?;
        self.inner().fetch(kind, consumer, max, lease).await
    }
    async fn ack(&self, kind: &str, tags: &[String]) -> Result<(), QueueError> {
        self.acks.fetch_add(1, Ordering::SeqCst);
        injected(&self.fail_acks, "ack")?;
        self.inner().ack(kind, tags).await
    }
    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        self.retries.fetch_add(1, Ordering::SeqCst);
        injected(&self.fail_retries, "retry")?;
        self.inner().retry(delivery, delay).await
    }
    async fn release(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        injected(&self.fail_releases, "release")?;
        self.inner().release(deliveries).await
    }
    async fn ping(&self) -> Result<(), QueueError> {
        self.inner().ping().await
    }
    async fn depth(&self, kind: &str) -> Result<Depth, QueueError> {
        self.inner().depth(kind).await
    }
    async fn heartbeat(&self, kind: &str, consumer: &str, tags: &[String], lease: Duration) -> Result<(), QueueError> {
        self.inner().heartbeat(kind, consumer, tags, lease).await
    }
    async fn reclaim(&self, kind: &str, consumer: &str, lease: Duration) -> Result<u64, QueueError> {
        self.inner().reclaim(kind, consumer, lease).await
    }
}

/// What the handler saw: job id → (payload, consumer tag) per delivery.
#[derive(Clone, Default)]
struct Seen {
    handled: Arc<Mutex<HashMap<String, Vec<serde_json::Value>>>>,
    progress: Arc<Notify>,
}

impl Seen {
    fn snapshot(&self) -> HashMap<String, Vec<serde_json::Value>> {
        self.handled.lock().unwrap().clone()
    }

    /// Waits (woken by the handler) until `done` holds, or `WAIT` passes.
    async fn wait_until(&self, done: impl Fn(&HashMap<String, Vec<serde_json::Value>>) -> bool) {
        let waited = tokio::time::timeout(WAIT, async {
            loop {
                if done(&self.snapshot()) {
                    return;
                }
                self.progress.notified().await;
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out; handled so far: {:?}", self.snapshot());
    }
}

/// The apalis handler: args are the payload text, the id is the Kairos job
/// id, the delivery is in the task data. `mode` in the payload picks the
/// outcome of the first delivery.
async fn handle(
    payload: String,
    id: TaskId,
    delivery: Data<Delivery>,
    seen: Data<Seen>,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    let value: serde_json::Value = serde_json::from_str(&payload)?;
    assert_eq!(id.to_string(), delivery.message.id, "task id is the Kairos job id");
    let attempt = {
        let mut handled = seen.handled.lock().unwrap();
        let runs = handled.entry(delivery.message.id.clone()).or_default();
        runs.push(value.clone());
        runs.len()
    };
    seen.progress.notify_one();
    match (value["mode"].as_str(), attempt) {
        (Some("fail_once"), 1) => Err("first delivery fails".into()),
        (Some("retry_after_once"), 1) => Err(RetryAfterError::new("not yet", Duration::from_millis(50)).into()),
        (Some("abort"), _) => Err(AbortError::new("give up").into()),
        (Some("stop"), _) => Ok(worker.stop()?),
        _ => Ok(()),
    }
}

fn messages(kind: &str, modes: &[&str]) -> Vec<Message> {
    modes
        .iter()
        .enumerate()
        .map(|(n, mode)| Message {
            id: uuid::Uuid::new_v4().to_string(),
            kind: kind.into(),
            tenant_id: "t1".into(),
            payload: json!({ "n": n, "mode": mode }).to_string(),
        })
        .collect()
}

struct Run {
    stop: oneshot::Sender<()>,
    worker: tokio::task::JoinHandle<Result<(), apalis_core::error::WorkerError>>,
}

/// Starts an apalis worker over the adapter, at most `concurrency` tasks at
/// a time (apalis's `concurrency` layer); `stop` ends it gracefully.
fn start_worker(queue: Arc<dyn Queue>, config: ApalisQueueConfig, seen: &Seen, concurrency: usize) -> Run {
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = WorkerBuilder::new(format!("apalis-{}", config.consumer))
        .backend(ApalisQueue::new(queue, config))
        .data(seen.clone())
        .concurrency(concurrency)
        .build(handle);
    let worker = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
        Ok::<(), std::io::Error>(())
    }));
    Run { stop, worker }
}

impl Run {
    /// Stops the worker and returns how its run ended.
    async fn stop_result(self) -> Result<(), apalis_core::error::WorkerError> {
        let _ = self.stop.send(());
        let ended = tokio::time::timeout(WAIT, self.worker).await;
        ended
            .expect("worker did not stop in time")
            .expect("worker task panicked")
    }

    async fn stop(self) {
        let ended = self.stop_result().await;
        assert!(ended.is_ok(), "worker ended with an error: {ended:?}");
    }
}

fn counting(inner: Arc<dyn Queue>) -> Arc<Counting> {
    Arc::new(Counting {
        inner: Some(inner),
        ..Default::default()
    })
}

/// N messages, all succeed: each handled exactly once, acked in batches,
/// queue empty after stop.
async fn all_handled_once(inner: Arc<dyn Queue>, kind: &str, check_idle: bool) {
    const N: usize = 50;
    let queue = counting(inner);
    let msgs = messages(kind, &["ok"; N]);
    queue.push(&msgs).await.unwrap();

    let seen = Seen::default();
    let config = ApalisQueueConfig::new(kind, format!("c-{}", uuid::Uuid::new_v4()))
        .batch(16)
        .lease(Duration::from_secs(30));
    let run = start_worker(queue.clone(), config, &seen, 64);
    seen.wait_until(|h| h.len() == N).await;

    if check_idle {
        // Idle cost: a fetch waits `fetch_wait` for work, so one second
        // idle is about 1s / 200ms fetches, not a spin.
        let before = queue.fetches.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = queue.fetches.load(Ordering::SeqCst) - before;
        assert!(idle <= 8, "{idle} fetches in 1 s idle: busy polling");
    }
    run.stop().await;

    let handled = seen.snapshot();
    assert_eq!(handled.len(), N);
    for m in &msgs {
        let runs = &handled[&m.id];
        assert_eq!(runs.len(), 1, "job {} handled {} times", m.id, runs.len());
        assert_eq!(runs[0].to_string(), m.payload);
    }
    assert_eq!(queue.depth(kind).await.unwrap(), Depth::default(), "all acked");
    let fetches = queue.fetches.load(Ordering::SeqCst);
    let acks = queue.acks.load(Ordering::SeqCst);
    assert!(
        fetches >= N.div_ceil(16),
        "batch of 16: at least 4 fetches, got {fetches}"
    );
    assert!(acks < N, "acks are batched: {acks} ack calls for {N} jobs");
    assert_eq!(queue.retries.load(Ordering::SeqCst), 0);
}

/// A failing handler leads to a retry (delivered again, same job id); an
/// aborted job is acknowledged, not retried.
async fn failures_are_retried(inner: Arc<dyn Queue>, kind: &str) {
    let queue = counting(inner);
    let msgs = messages(kind, &["ok", "fail_once", "retry_after_once", "abort"]);
    queue.push(&msgs).await.unwrap();

    let seen = Seen::default();
    let config =
        ApalisQueueConfig::new(kind, format!("c-{}", uuid::Uuid::new_v4())).retry_delay(Duration::from_millis(100));
    let run = start_worker(queue.clone(), config, &seen, 64);
    let (fail, retry_after) = (msgs[1].id.clone(), msgs[2].id.clone());
    seen.wait_until(|h| {
        h.len() == 4 && h.get(&fail).is_some_and(|r| r.len() == 2) && h.get(&retry_after).is_some_and(|r| r.len() == 2)
    })
    .await;
    run.stop().await;

    let handled = seen.snapshot();
    let runs = |i: usize| handled[&msgs[i].id].len();
    assert_eq!((runs(0), runs(1), runs(2), runs(3)), (1, 2, 2, 1), "{handled:?}");
    assert_eq!(queue.retries.load(Ordering::SeqCst), 2);
    assert_eq!(
        queue.depth(kind).await.unwrap(),
        Depth::default(),
        "retried jobs acked, abort acked"
    );
}

/// Jobs fetched into the adapter's buffer but not started when the worker
/// stops are released (ready again at once), not left to their lease. One
/// task at a time, one batch of 10; the first job stops the worker.
async fn buffered_jobs_released_on_stop(inner: Arc<dyn Queue>, kind: &str) {
    let queue = counting(inner);
    let mut modes = vec!["stop"];
    modes.extend(["ok"; 9]);
    let msgs = messages(kind, &modes);
    queue.push(&msgs).await.unwrap();
    let seen = Seen::default();
    let config = ApalisQueueConfig::new(kind, format!("c-{}", uuid::Uuid::new_v4())).batch(10);
    // The first release fails; closing tries again.
    queue.fail_releases.store(1, Ordering::SeqCst);
    let run = start_worker(queue.clone(), config, &seen, 1);
    seen.wait_until(|h| !h.is_empty()).await;
    run.stop().await;

    let handled = seen.snapshot();
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert!(handled.contains_key(&msgs[0].id));
    assert_eq!(
        queue.fetches.load(Ordering::SeqCst),
        1,
        "one fetch took the whole batch"
    );
    let depth = queue.depth(kind).await.unwrap();
    assert_eq!(
        depth,
        Depth {
            ready: 9,
            in_flight: 0,
            delayed: 0
        },
        "buffered jobs released"
    );
    assert_eq!(
        queue.fail_releases.load(Ordering::SeqCst),
        0,
        "the injected failure was hit"
    );
}

/// Queue errors while running are logged and retried with backoff; the
/// worker keeps going and every job is still handled once and settled.
async fn queue_errors_are_retried(inner: Arc<dyn Queue>, kind: &str) {
    let queue = counting(inner);
    let msgs = messages(kind, &["ok", "ok", "ok", "ok", "ok", "fail_once"]);
    queue.push(&msgs).await.unwrap();
    queue.fail_fetches.store(2, Ordering::SeqCst);
    queue.fail_acks.store(1, Ordering::SeqCst);
    queue.fail_retries.store(1, Ordering::SeqCst);

    let seen = Seen::default();
    let config =
        ApalisQueueConfig::new(kind, format!("c-{}", uuid::Uuid::new_v4())).retry_delay(Duration::from_millis(100));
    let run = start_worker(queue.clone(), config, &seen, 64);
    let fail = msgs[5].id.clone();
    seen.wait_until(|h| h.len() == 6 && h.get(&fail).is_some_and(|r| r.len() == 2))
        .await;
    // The handler has run; wait until the settles (failed ones included)
    // reached the queue before stopping, so the run, not the close, did it.
    let settled = tokio::time::timeout(WAIT, async {
        while queue.depth(kind).await.unwrap() != Depth::default() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "not settled: {:?}", queue.depth(kind).await);
    run.stop().await;

    let handled = seen.snapshot();
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(handled[&m.id].len(), if i == 5 { 2 } else { 1 }, "{handled:?}");
    }
    for budget in [&queue.fail_fetches, &queue.fail_acks, &queue.fail_retries] {
        assert_eq!(budget.load(Ordering::SeqCst), 0, "every injected failure was hit");
    }
    assert_eq!(queue.depth(kind).await.unwrap(), Depth::default());
}

/// Closing does not hang on a queue that keeps failing: after a few
/// attempts the run ends with the error and the jobs stay leased (they come
/// back when the lease expires).
async fn close_gives_up_on_failing_queue(inner: Arc<dyn Queue>, kind: &str) {
    let queue = counting(inner);
    let mut modes = vec!["stop"];
    modes.extend(["ok"; 4]);
    let msgs = messages(kind, &modes);
    queue.push(&msgs).await.unwrap();
    queue.fail_releases.store(usize::MAX, Ordering::SeqCst);

    let seen = Seen::default();
    let config = ApalisQueueConfig::new(kind, format!("c-{}", uuid::Uuid::new_v4())).batch(5);
    let run = start_worker(queue.clone(), config, &seen, 1);
    seen.wait_until(|h| !h.is_empty()).await;
    let ended = run.stop_result().await;
    let error = ended.expect_err("the release never succeeds").to_string();
    assert!(error.contains("releasing 4 buffered `probe` jobs failed"), "{error}");
    let depth = queue.depth(kind).await.unwrap();
    assert_eq!(depth.in_flight, 4, "left to their lease: {depth:?}");
}

// --- SQLite ---------------------------------------------------------------

async fn sqlite() -> (Arc<dyn Queue>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = QueueConfig {
        backend: QueueBackendKind::Sqlite,
        url: format!("sqlite://{}", dir.path().join("queue.db").display()),
        fetch_wait: FETCH_WAIT,
        ..Default::default()
    };
    (connect(&config).await.unwrap(), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_sqlite_all_handled_once() {
    let (queue, _dir) = sqlite().await;
    all_handled_once(queue, "probe", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_sqlite_failures_are_retried() {
    let (queue, _dir) = sqlite().await;
    failures_are_retried(queue, "probe").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_sqlite_buffered_jobs_released_on_stop() {
    let (queue, _dir) = sqlite().await;
    buffered_jobs_released_on_stop(queue, "probe").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_sqlite_queue_errors_are_retried() {
    let (queue, _dir) = sqlite().await;
    queue_errors_are_retried(queue, "probe").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_sqlite_close_gives_up_on_failing_queue() {
    let (queue, _dir) = sqlite().await;
    close_gives_up_on_failing_queue(queue, "probe").await;
}

// --- Redis ----------------------------------------------------------------

/// Runs `body` against a Redis queue under a fresh prefix and deletes the
/// prefix's keys afterwards, whether or not `body` panicked.
async fn with_redis<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn Queue>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let prefix = format!("kt-apalis-{}", uuid::Uuid::new_v4());
    let config = QueueConfig {
        backend: QueueBackendKind::Redis,
        url: redis_url(),
        prefix: prefix.clone(),
        fetch_wait: FETCH_WAIT,
        ..Default::default()
    };
    let queue = connect(&config).await.unwrap();
    let outcome = AssertUnwindSafe(body(queue)).catch_unwind().await;

    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_redis_all_handled_once() {
    with_redis(|queue| async move { all_handled_once(queue, "probe", false).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_redis_failures_are_retried() {
    with_redis(|queue| async move { failures_are_retried(queue, "probe").await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_redis_buffered_jobs_released_on_stop() {
    with_redis(|queue| async move { buffered_jobs_released_on_stop(queue, "probe").await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_redis_queue_errors_are_retried() {
    with_redis(|queue| async move { queue_errors_are_retried(queue, "probe").await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_redis_close_gives_up_on_failing_queue() {
    with_redis(|queue| async move { close_gives_up_on_failing_queue(queue, "probe").await }).await;
}
