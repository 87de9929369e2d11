//! One ONNX model loaded into a small pool of ONNX Runtime sessions, with its token inputs discovered from the graph.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ort::ep;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};
use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};
use sha2::{Digest, Sha256};

use super::error::TextError;
use super::runtime::init_runtime;
use super::tokenize::TokenBatch;

/// How many sessions a model gets and how many threads each may use.
///
/// `Session::run` needs exclusive access, so concurrent callers need several sessions: up to `sessions` calls run
/// at once, each on `intra_threads` threads (so the model may use `sessions × intra_threads` cores). Every session
/// holds its own copy of the weights (~23 MB for MiniLM int8). Calls are synchronous and CPU-bound: an async caller
/// runs them in `spawn_blocking` or a dedicated pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceOptions {
    /// Sessions in the pool (≥ 1): the number of calls that can run at the same time.
    pub sessions: usize,
    /// Threads ONNX Runtime may use inside one call (≥ 1).
    pub intra_threads: usize,
    /// The ONNX Runtime library to load when none is loaded yet; `None` means `$ORT_DYLIB_PATH`.
    pub runtime_library: Option<PathBuf>,
    /// ONNX Runtime's CPU memory arena. On, freed activation buffers stay reserved for the next call (faster
    /// allocation, but the process keeps the largest batch's footprint for good); off, they go back to malloc.
    pub cpu_arena: bool,
    /// ONNX Runtime's memory pattern: plans one block per input shape seen. Our batches vary in shape, so it
    /// mostly grows memory.
    pub memory_pattern: bool,
    /// Sessions of one model share their prepacked weights (one copy of the packed matrices, not one per session).
    pub share_weights: bool,
}

impl Default for InferenceOptions {
    /// One session on one thread: the predictable choice on a shared 2-core machine. Raise `sessions` for
    /// throughput under concurrency, `intra_threads` for the latency of big batches.
    fn default() -> Self {
        InferenceOptions {
            sessions: 1,
            intra_threads: 1,
            runtime_library: None,
            cpu_arena: true,
            memory_pattern: true,
            share_weights: true,
        }
    }
}

/// Which tokenizer tensor feeds a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputRole {
    InputIds,
    AttentionMask,
    TokenTypeIds,
}

#[derive(Debug, Clone)]
pub(crate) struct ModelInput {
    pub(crate) name: String,
    pub(crate) role: InputRole,
    /// The input is int32 rather than the usual int64.
    pub(crate) int32: bool,
}

/// An ONNX model whose inputs are (a subset of) `input_ids`, `attention_mask`, `token_type_ids`.
pub(crate) struct OnnxModel {
    path: PathBuf,
    sha256: String,
    inputs: Vec<ModelInput>,
    output: String,
    /// The declared output shape (-1 where dynamic).
    output_shape: Vec<i64>,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    _prepacked: Option<PrepackedWeights>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("inputs", &self.inputs)
            .field("output", &self.output)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl OnnxModel {
    /// Loads `path` into `options.sessions` sessions. `preferred_outputs` are tried in order when `output` is not
    /// given; the first output of the graph is the fallback.
    pub(crate) fn load(
        path: &Path,
        options: &InferenceOptions,
        output: Option<&str>,
        preferred_outputs: &[&str],
    ) -> Result<Self, TextError> {
        if !path.is_file() {
            return Err(TextError::MissingFile {
                what: "ONNX model",
                path: path.to_path_buf(),
            });
        }
        if options.sessions == 0 || options.intra_threads == 0 {
            return Err(TextError::Config(format!(
                "sessions and intra_threads must be at least 1 (got {} and {})",
                options.sessions, options.intra_threads
            )));
        }
        let sha256 = sha256_file(path, "ONNX model")?;
        let runtime = init_runtime(options.runtime_library.as_deref())?;
        let load_error = |message: String| TextError::ModelLoad {
            path: path.to_path_buf(),
            message,
        };
        // Kept for the model's lifetime: the sessions point into it.
        let prepacked = (options.share_weights && options.sessions > 1).then(PrepackedWeights::new);
        let mut sessions = Vec::with_capacity(options.sessions);
        for _ in 0..options.sessions {
            let mut builder = Session::builder(runtime.environment())
                .map_err(|e| load_error(e.to_string()))?
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(|e| load_error(e.to_string()))?
                .with_intra_threads(options.intra_threads)
                .map_err(|e| load_error(e.to_string()))?
                .with_inter_threads(1)
                .map_err(|e| load_error(e.to_string()))?
                .with_memory_pattern(options.memory_pattern)
                .map_err(|e| load_error(e.to_string()))?
                .with_execution_providers([ep::CPU::default().with_arena_allocator(options.cpu_arena).build()])
                .map_err(|e| load_error(e.to_string()))?;
            if let Some(weights) = &prepacked {
                builder = builder
                    .with_prepacked_weights(weights)
                    .map_err(|e| load_error(e.to_string()))?;
            }
            let session = builder.commit_from_file(path).map_err(|e| load_error(e.to_string()))?;
            sessions.push(session);
        }
        let first = &sessions[0];
        let signature = |message: String| TextError::ModelSignature {
            path: path.to_path_buf(),
            message,
        };

        let mut inputs = Vec::new();
        for input in first.inputs() {
            let role = match input.name() {
                "input_ids" => InputRole::InputIds,
                "attention_mask" => InputRole::AttentionMask,
                "token_type_ids" => InputRole::TokenTypeIds,
                other => {
                    return Err(signature(format!(
                        "unsupported input {other:?} (supported: input_ids, attention_mask, token_type_ids)"
                    )))
                }
            };
            let int32 = match input.dtype() {
                ValueType::Tensor { ty, shape, .. } if shape.len() == 2 => match ty {
                    TensorElementType::Int64 => false,
                    TensorElementType::Int32 => true,
                    other => {
                        return Err(signature(format!(
                            "input {:?} is {other:?}, expected int64",
                            input.name()
                        )))
                    }
                },
                other => {
                    return Err(signature(format!(
                        "input {:?} is {other:?}, expected an int64 tensor [batch, sequence]",
                        input.name()
                    )))
                }
            };
            inputs.push(ModelInput {
                name: input.name().to_string(),
                role,
                int32,
            });
        }
        if !inputs.iter().any(|i| i.role == InputRole::InputIds) {
            return Err(signature("the model has no input_ids input".into()));
        }

        let outputs = first.outputs();
        let chosen = match output {
            Some(name) => outputs.iter().find(|o| o.name() == name).ok_or_else(|| {
                let names: Vec<&str> = outputs.iter().map(|o| o.name()).collect();
                signature(format!("no output named {name:?} (outputs: {names:?})"))
            })?,
            None => preferred_outputs
                .iter()
                .find_map(|p| outputs.iter().find(|o| o.name() == *p))
                .or_else(|| outputs.first())
                .ok_or_else(|| signature("the model has no outputs".into()))?,
        };
        let output_shape = match chosen.dtype() {
            ValueType::Tensor {
                ty: TensorElementType::Float32,
                shape,
                ..
            } => shape.to_vec(),
            other => {
                return Err(signature(format!(
                    "output {:?} is {other:?}, expected a float32 tensor",
                    chosen.name()
                )))
            }
        };
        let output = chosen.name().to_string();
        Ok(OnnxModel {
            path: path.to_path_buf(),
            sha256,
            inputs,
            output,
            output_shape,
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
            _prepacked: prepacked,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn sha256(&self) -> &str {
        &self.sha256
    }

    pub(crate) fn inputs(&self) -> &[ModelInput] {
        &self.inputs
    }

    pub(crate) fn output_name(&self) -> &str {
        &self.output
    }

    pub(crate) fn output_shape(&self) -> &[i64] {
        &self.output_shape
    }

    pub(crate) fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Runs the model on `batch` and hands the chosen output (shape, row-major data) to `f` while the session is
    /// still held, so that the output need not be copied.
    pub(crate) fn run<R>(
        &self,
        batch: &TokenBatch,
        f: impl FnOnce(&[i64], &[f32]) -> Result<R, TextError>,
    ) -> Result<R, TextError> {
        let failed = |message: String| TextError::Inference {
            path: self.path.clone(),
            message,
        };
        let shape = [batch.batch, batch.seq_len];
        let mut values: Vec<(String, ort::session::SessionInputValue<'_>)> = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            let data = match input.role {
                InputRole::InputIds => &batch.input_ids,
                InputRole::AttentionMask => &batch.attention_mask,
                InputRole::TokenTypeIds => &batch.token_type_ids,
            };
            let value: ort::session::SessionInputValue<'_> = if input.int32 {
                let narrowed: Vec<i32> = data
                    .iter()
                    .map(|&v| i32::try_from(v).map_err(|_| failed(format!("token id {v} does not fit int32"))))
                    .collect::<Result<_, _>>()?;
                Tensor::from_array((shape, narrowed))
                    .map_err(|e| failed(e.to_string()))?
                    .into()
            } else {
                Tensor::from_array((shape, data.clone()))
                    .map_err(|e| failed(e.to_string()))?
                    .into()
            };
            values.push((input.name.clone(), value));
        }

        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut guard = None;
        for k in 0..n {
            if let Ok(g) = self.sessions[(start + k) % n].try_lock() {
                guard = Some(g);
                break;
            }
        }
        let mut session = match guard {
            Some(g) => g,
            // All busy: queue on one of them. A poisoned lock only means another call panicked; the session is fine.
            None => self.sessions[start]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
        let outputs = session.run(values).map_err(|e| failed(e.to_string()))?;
        let value = outputs
            .get(&self.output)
            .ok_or_else(|| failed(format!("output {:?} missing from the results", self.output)))?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| failed(e.to_string()))?;
        f(shape, data)
    }
}

/// The lowercase hex sha256 of a file, streamed: identifies the exact encoder a sentiment head belongs to.
pub(crate) fn sha256_file(path: &Path, what: &'static str) -> Result<String, TextError> {
    let mut file = std::fs::File::open(path).map_err(|e| TextError::io(what, path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer).map_err(|e| TextError::io(what, path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}
