//! The process-wide ONNX Runtime: which shared library is loaded, and the one `ort` environment.
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`), never downloaded at build time: air-gapped servers
//! build fine and point the binary at a library they ship. ONNX Runtime allows one environment per process (a second
//! one is refused even after the first is dropped), so it lives in a [`OnceLock`] here and every session is built
//! from it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use super::error::TextError;

/// The environment variable naming the ONNX Runtime shared library when no path is configured explicitly.
///
/// `.cargo/config.toml` sets it for `cargo run`/`test`/`nextest` to the library `scripts/fetch-models` fetched.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The loaded ONNX Runtime: kept for the life of the process.
pub struct Runtime {
    library: PathBuf,
    env: Environment,
}

impl Runtime {
    /// The absolute path of the shared library in use, for start-up logs and diagnostics.
    pub fn library(&self) -> &Path {
        &self.library
    }

    pub(crate) fn environment(&self) -> &Environment {
        &self.env
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .finish_non_exhaustive()
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime once per process and returns it; later calls return the same runtime.
///
/// `library` is the shared library (`libonnxruntime.so.1.31.1`); `None` means "the one already loaded, else
/// `$ORT_DYLIB_PATH`". Errors name the path: a missing file is [`TextError::MissingFile`], a file the dynamic loader
/// or ONNX Runtime rejects (wrong architecture, version older than 1.31) is [`TextError::RuntimeLoad`], and asking
/// for a different library once one is loaded is [`TextError::RuntimeConflict`]. A failed load can be retried
/// (with another path) in the same process.
///
/// Call it at start-up to fail fast; model constructors ([`super::Encoder::new`], …) call it too.
pub fn init_runtime(library: Option<&Path>) -> Result<&'static Runtime, TextError> {
    if let Some(runtime) = RUNTIME.get() {
        return check_same(runtime, library);
    }
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(runtime) = RUNTIME.get() {
        return check_same(runtime, library);
    }
    let requested = match library {
        Some(path) => path.to_path_buf(),
        None => match std::env::var_os(ORT_DYLIB_ENV) {
            Some(value) if !value.is_empty() => PathBuf::from(value),
            _ => return Err(TextError::RuntimeNotConfigured),
        },
    };
    if !requested.is_file() {
        return Err(TextError::MissingFile {
            what: "ONNX Runtime library",
            path: requested,
        });
    }
    // ort resolves a relative path against the executable's directory; we mean the working directory.
    let absolute = requested
        .canonicalize()
        .map_err(|e| TextError::io("ONNX Runtime library", &requested, e))?;
    let load_error = |message: String| TextError::RuntimeLoad {
        path: absolute.clone(),
        message,
    };
    let builder = ort::init_from(&absolute).map_err(|e| load_error(e.to_string()))?;
    let env = builder
        .with_name("kairos")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    Ok(RUNTIME.get_or_init(|| Runtime { library: absolute, env }))
}

/// The runtime if [`init_runtime`] has succeeded in this process.
pub fn runtime() -> Option<&'static Runtime> {
    RUNTIME.get()
}

fn check_same(runtime: &'static Runtime, library: Option<&Path>) -> Result<&'static Runtime, TextError> {
    let Some(requested) = library else {
        return Ok(runtime);
    };
    let same = requested.canonicalize().map(|p| p == runtime.library).unwrap_or(false);
    if same {
        Ok(runtime)
    } else {
        Err(TextError::RuntimeConflict {
            active: runtime.library.clone(),
            requested: requested.to_path_buf(),
        })
    }
}
