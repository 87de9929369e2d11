//! Micro-batching: texts from many concurrent `sentiment` jobs are gathered
//! into one inference batch (up to `batch_max` texts, or whatever arrived
//! within `batch_wait` of the first), run on a dedicated inference thread
//! pool, and each job gets its own result back.
//!
//! Why: an encoder run costs nearly the same for 1 text as for 8, so under
//! load batching multiplies throughput; when idle, a lone text waits at most
//! `batch_wait`. The model runs on its own threads (one ONNX session each)
//! so CPU-bound inference never blocks the async runtime that fetches,
//! acks and records jobs. While every inference thread is busy, requests
//! keep queueing and the next batch is simply larger.
//!
//! One bad text must fail only its own job: if a batch fails as a whole,
//! its texts are run again one by one.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use kairos_models::text::{
    analyze_embeddings_in, detect_language, Embeddings, Encoder, Language, SentimentAnalyzer, SentimentHead,
    SentimentResult,
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// What scores the texts.
#[derive(Clone)]
pub enum TextModel {
    /// An encoder; each request brings the head (its tenant's active
    /// version) applied to its embedding.
    Encoder(Arc<Encoder>),
    /// A drop-in classifier (labels from config); requests bring no head.
    Classifier(Arc<SentimentAnalyzer>),
}

/// Batching and pool sizes (from `[sentiment]`).
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Texts per batch at most.
    pub max: usize,
    /// Longest the first text of a batch waits for others.
    pub wait: Duration,
    /// Texts per encoder call inside a batch (sorted by length first).
    pub encode: usize,
    /// Inference threads.
    pub threads: usize,
}

/// Why a text could not be scored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InferenceError {
    /// The model refused this text (or its head is unusable): retrying
    /// will not help.
    #[error("inference failed: {0}")]
    Model(String),
    /// The pool is gone (shutting down) or a model call panicked.
    #[error("inference unavailable: {0}")]
    Unavailable(String),
}

struct Request {
    text: String,
    /// The language recorded and calibrated for (a chunk carries its whole text's).
    language: Option<Language>,
    head: Option<Arc<SentimentHead>>,
    reply: oneshot::Sender<Result<SentimentResult, InferenceError>>,
}

/// Counters for tests, the bench and logs: how well batching works.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Batches run.
    pub batches: AtomicU64,
    /// Texts scored.
    pub texts: AtomicU64,
    /// Largest batch seen.
    pub largest: AtomicU64,
}

/// Handle to the batcher; cheap to clone, shared by every `sentiment` job
/// of a process.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Request>,
    stats: Arc<BatchStats>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("stats", &self.stats).finish()
    }
}

type Task = Box<dyn FnOnce() + Send>;

impl Batcher {
    /// Starts the gathering task (on the current tokio runtime) and
    /// `config.threads` inference threads. They stop once every clone of
    /// the handle is dropped.
    pub fn start(model: TextModel, config: BatchConfig) -> Self {
        let threads = config.threads.max(1);
        let (task_tx, task_rx) = std_mpsc::channel::<Task>();
        let task_rx = Arc::new(Mutex::new(task_rx));
        for i in 0..threads {
            let rx = task_rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("kairos-inference-{i}"))
                .spawn(move || loop {
                    let next = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    match next {
                        // A panic drops the batch's reply senders: its jobs see `Unavailable` and retry.
                        Ok(task) => {
                            if std::panic::catch_unwind(AssertUnwindSafe(task)).is_err() {
                                tracing::error!("inference panicked; its batch's jobs will be retried");
                            }
                        }
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start an inference thread");
            }
        }
        let (tx, rx) = mpsc::channel(config.max.max(1) * threads * 4);
        let stats = Arc::new(BatchStats::default());
        tokio::spawn(gather(
            rx,
            task_tx,
            Arc::new(Semaphore::new(threads)),
            model,
            config,
            stats.clone(),
        ));
        Self { tx, stats }
    }

    /// Scores one text (with `head` for an encoder model), batched with
    /// whatever other texts are waiting.
    pub async fn analyze(
        &self,
        text: String,
        head: Option<Arc<SentimentHead>>,
    ) -> Result<SentimentResult, InferenceError> {
        let language = detect_language(&text);
        self.analyze_in(text, language, head).await
    }

    /// [`Batcher::analyze`] for a text whose language is known (a chunk of a longer text: the whole text's
    /// language is recorded and its calibration applied).
    pub async fn analyze_in(
        &self,
        text: String,
        language: Option<Language>,
        head: Option<Arc<SentimentHead>>,
    ) -> Result<SentimentResult, InferenceError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                text,
                language,
                head,
                reply,
            })
            .await
            .map_err(|_| InferenceError::Unavailable("the inference batcher has stopped".into()))?;
        rx.await
            .map_err(|_| InferenceError::Unavailable("the inference thread dropped this text (panic)".into()))?
    }

    /// Batching counters so far.
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }
}

/// Waits for a free inference thread, then gathers a batch and hands it over.
async fn gather(
    mut rx: mpsc::Receiver<Request>,
    pool: std_mpsc::Sender<Task>,
    free: Arc<Semaphore>,
    model: TextModel,
    config: BatchConfig,
    stats: Arc<BatchStats>,
) {
    loop {
        let Ok(permit) = free.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + config.wait;
        while batch.len() < config.max {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => batch.push(r),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.texts.fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.largest.fetch_max(batch.len() as u64, Ordering::Relaxed);
        let model = model.clone();
        let encode = config.encode;
        let task: Task = Box::new(move || run_batch(&model, batch, encode, permit));
        if pool.send(task).is_err() {
            tracing::error!("no inference thread is running; sentiment jobs will fail until restart");
            return;
        }
    }
}

/// Runs a batch and replies to each request; on a batch-wide failure,
/// retries each text alone so only the bad one fails.
fn run_batch(model: &TextModel, batch: Vec<Request>, encode: usize, permit: OwnedSemaphorePermit) {
    let started = std::time::Instant::now();
    let inferred = infer(model, &batch, encode);
    kairos_core::metrics::model_inference(super::KIND, batch.len(), started.elapsed());
    let results = match inferred {
        Ok(results) => results.into_iter().map(Ok).collect(),
        Err(e) if batch.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(error = %e, texts = batch.len(), "batch failed; scoring its texts one by one");
            batch
                .iter()
                .map(|r| infer(model, std::slice::from_ref(r), 1).map(|mut v| v.remove(0)))
                .collect::<Vec<_>>()
        }
    };
    drop(permit);
    for (request, result) in batch.into_iter().zip(results) {
        // The job may have timed out and gone; nothing to do then.
        let _ = request.reply.send(result);
    }
}

fn infer(model: &TextModel, batch: &[Request], encode: usize) -> Result<Vec<SentimentResult>, InferenceError> {
    let texts: Vec<&str> = batch.iter().map(|r| r.text.as_str()).collect();
    let model_err = |e: kairos_models::text::TextError| InferenceError::Model(e.to_string());
    match model {
        TextModel::Classifier(analyzer) => {
            let mut results = analyzer.analyze(&texts).map_err(model_err)?;
            for (r, request) in results.iter_mut().zip(batch) {
                r.language = request.language;
            }
            Ok(results)
        }
        TextModel::Encoder(encoder) => {
            // Sorted by length into sub-batches of similar texts: padding every
            // text to the longest of a mixed batch costs more than the batch saves
            // (models/MODELS.md, "Speed").
            let embeddings = encoder
                .embed_batched(&texts, encode.max(1), &mut |_, _| {})
                .map_err(model_err)?;
            let mut out = Vec::with_capacity(batch.len());
            for (i, request) in batch.iter().enumerate() {
                let head = request
                    .head
                    .as_ref()
                    .ok_or_else(|| InferenceError::Model("no sentiment head for an encoder model".into()))?;
                let row = embeddings
                    .get(i)
                    .ok_or_else(|| InferenceError::Model(format!("no embedding for text {i}")))?;
                let one = Embeddings::from_vec(embeddings.dim(), row.to_vec()).map_err(model_err)?;
                let mut r = analyze_embeddings_in(head, &one, &texts[i..=i], &[request.language]).map_err(model_err)?;
                out.push(r.remove(0));
            }
            Ok(out)
        }
    }
}
