//! Batch tokenisation with a Hugging Face `tokenizer.json`: padding to the longest text of the batch, truncation to a
//! configurable maximum, and the three integer tensors a BERT-style model takes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenizers::utils::padding::pad_encodings;
use tokenizers::{
    Encoding, NormalizedString, Normalizer, PaddingDirection, PaddingParams, PaddingStrategy, Token, Tokenizer,
    TruncationParams,
};

use super::error::TextError;
use super::unigram::{E5cUnigram, Segmenter, TokenizerSettings, METASPACE};

/// The smallest maximum length accepted: room for `[CLS]`, `[SEP]` and at least one token.
pub const MIN_MAX_LENGTH: usize = 3;

/// A tokenised batch in row-major `[batch, seq_len]` layout, ready to become ONNX tensors.
///
/// Rows are padded on the right to the longest row of the batch (not to `max_length`: padding to a fixed length
/// would make short texts pay for long ones); `attention_mask` is 1 on real tokens and 0 on padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Number of texts.
    pub batch: usize,
    /// Tokens per row, padding included (0 for an empty batch).
    pub seq_len: usize,
    /// Token ids, `batch * seq_len`.
    pub input_ids: Vec<i64>,
    /// 1 for a real token, 0 for padding, `batch * seq_len`.
    pub attention_mask: Vec<i64>,
    /// Segment ids (all 0 for single texts), `batch * seq_len`.
    pub token_type_ids: Vec<i64>,
}

impl TokenBatch {
    /// The number of real (unpadded) tokens of row `i`, special tokens included.
    pub fn tokens_in_row(&self, i: usize) -> usize {
        self.attention_mask[i * self.seq_len..(i + 1) * self.seq_len]
            .iter()
            .filter(|&&m| m != 0)
            .count()
    }
}

/// A loaded `tokenizer.json`, configured for batch inference.
///
/// Whatever padding and truncation the file itself specifies (MiniLM's pads every text to 128 tokens) is replaced by
/// "pad to the longest in the batch, truncate to `max_length`", so that results do not depend on the file's choice.
///
/// A `tokenizer.kairos.json` beside the file can swap the Unigram segmentation for e5.c's (see [`Segmenter`]);
/// normalisation, special tokens, truncation and padding stay the file's either way.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    max_length: usize,
    /// `Some` when pieces come from e5.c's Viterbi rather than the file's model (shared: the table is ~250k pieces).
    e5c: Option<Arc<E5cUnigram>>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .field("max_length", &self.max_length)
            .field("segmenter", &self.segmenter())
            .finish_non_exhaustive()
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from `path`, truncating every text to `max_length` tokens (special tokens included),
    /// with the segmenter its `tokenizer.kairos.json` names, if any.
    ///
    /// Fails at once, naming the path, if the file is missing or is not a tokenizer, so that a misconfigured path is
    /// reported at start-up rather than at the first request.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self, TextError> {
        let settings = TokenizerSettings::for_tokenizer(path)?;
        Self::from_file_with(path, max_length, &settings)
    }

    /// Like [`TextTokenizer::from_file`], with the settings given explicitly (any settings file is ignored).
    pub fn from_file_with(path: &Path, max_length: usize, settings: &TokenizerSettings) -> Result<Self, TextError> {
        if !path.is_file() {
            return Err(TextError::MissingFile {
                what: "tokenizer",
                path: path.to_path_buf(),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| TextError::io("tokenizer", path, e))?;
        let inner = Tokenizer::from_bytes(&bytes).map_err(|e| TextError::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut tokenizer = Self::from_tokenizer(inner, path, max_length)?;
        if settings.unigram == Segmenter::E5c {
            let unigram = E5cUnigram::from_tokenizer_json(path, &bytes)?;
            let start_score = match &settings.prefix {
                Some(prefix) => {
                    // e5.c's running sum where the text begins: the prefix's best score, its trailing space being
                    // the text's leading "▁" (no piece spans a "▁" inside it, so the two segment independently).
                    let form = tokenizer.metaspace_form(prefix).map_err(|e| TextError::Tokenizer {
                        path: path.to_path_buf(),
                        message: format!("cannot normalise the prefix {prefix:?}: {e}"),
                    })?;
                    let form = form.strip_suffix(METASPACE).unwrap_or(&form);
                    unigram.segment_after(form, 0.0).1
                }
                None => 0.0,
            };
            tokenizer.e5c = Some(Arc::new(unigram.with_start_score(start_score)));
        }
        Ok(tokenizer)
    }

    /// Wraps an already parsed tokenizer; `path` is only used in error messages.
    pub fn from_tokenizer(mut inner: Tokenizer, path: &Path, max_length: usize) -> Result<Self, TextError> {
        if max_length < MIN_MAX_LENGTH {
            return Err(TextError::Config(format!(
                "max_length must be at least {MIN_MAX_LENGTH} tokens, got {max_length}"
            )));
        }
        let bad = |message: String| TextError::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        // Keep the file's pad token if it has one; else look the usual names up in the vocabulary.
        let (pad_id, pad_type_id, pad_token) = match inner.get_padding() {
            Some(p) => (p.pad_id, p.pad_type_id, p.pad_token.clone()),
            None => ["[PAD]", "<pad>"]
                .iter()
                .find_map(|t| inner.token_to_id(t).map(|id| (id, 0, (*t).to_string())))
                .ok_or_else(|| bad("no padding token ([PAD] or <pad>) in the vocabulary".into()))?,
        };
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id,
            pad_token,
        }));
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| bad(e.to_string()))?;
        Ok(TextTokenizer {
            inner,
            path: path.to_path_buf(),
            max_length,
            e5c: None,
        })
    }

    /// The file this tokenizer was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The maximum number of tokens per text, special tokens included.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Which Unigram segmentation this tokenizer uses.
    pub fn segmenter(&self) -> Segmenter {
        if self.e5c.is_some() {
            Segmenter::E5c
        } else {
            Segmenter::Tokenizers
        }
    }

    /// Tokenises `texts` as one padded batch.
    ///
    /// Runs on the calling thread plus the `tokenizers` crate's rayon pool (set `TOKENIZERS_PARALLELISM=false` to
    /// keep it on the calling thread).
    pub fn encode_batch(&self, texts: &[&str]) -> Result<TokenBatch, TextError> {
        if texts.is_empty() {
            return Ok(TokenBatch {
                batch: 0,
                seq_len: 0,
                input_ids: Vec::new(),
                attention_mask: Vec::new(),
                token_type_ids: Vec::new(),
            });
        }
        let encodings = match &self.e5c {
            None => self.inner.encode_batch_fast(texts.to_vec(), true),
            Some(unigram) => self.encode_batch_e5c(unigram, texts),
        }
        .map_err(|e| TextError::Tokenize {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let seq_len = encodings.first().map(|e| e.get_ids().len()).unwrap_or(0);
        let n = texts.len() * seq_len;
        let mut batch = TokenBatch {
            batch: texts.len(),
            seq_len,
            input_ids: Vec::with_capacity(n),
            attention_mask: Vec::with_capacity(n),
            token_type_ids: Vec::with_capacity(n),
        };
        for encoding in &encodings {
            if encoding.get_ids().len() != seq_len {
                return Err(TextError::Tokenize {
                    path: self.path.clone(),
                    message: "the tokenizer returned rows of different lengths despite padding".into(),
                });
            }
            batch.input_ids.extend(encoding.get_ids().iter().map(|&v| i64::from(v)));
            batch
                .attention_mask
                .extend(encoding.get_attention_mask().iter().map(|&v| i64::from(v)));
            batch
                .token_type_ids
                .extend(encoding.get_type_ids().iter().map(|&v| i64::from(v)));
        }
        Ok(batch)
    }

    /// The file's normaliser, e5.c's segmentation, then the file's truncation, post-processor and padding: the same
    /// steps `Tokenizer::encode_batch` takes, with the model swapped.
    fn encode_batch_e5c(&self, unigram: &E5cUnigram, texts: &[&str]) -> tokenizers::Result<Vec<Encoding>> {
        let mut encodings = Vec::with_capacity(texts.len());
        for text in texts {
            let pieces = self.metaspace_form(text)?;
            let tokens = unigram
                .segment(&pieces)
                .into_iter()
                .map(|(id, range)| Token::new(id, pieces[range.clone()].to_string(), (range.start, range.end)))
                .collect();
            encodings.push(self.inner.post_process(Encoding::from_tokens(tokens, 0), None, true)?);
        }
        if let Some(padding) = self.inner.get_padding() {
            pad_encodings(&mut encodings, padding)?;
        }
        Ok(encodings)
    }

    /// `text` through the file's normaliser, then in e5.c's metaspace form.
    fn metaspace_form(&self, text: &str) -> tokenizers::Result<String> {
        let mut normalized = NormalizedString::from(text);
        if let Some(normalizer) = self.inner.get_normalizer() {
            normalizer.normalize(&mut normalized)?;
        }
        Ok(E5cUnigram::metaspace(normalized.get()))
    }

    /// A cheap proxy for the token count of `text` (its whitespace-separated words, plus its length in bytes as a
    /// tie-break), used to sort texts by length so that batches waste little padding; tokenising twice would cost
    /// more than the padding saved.
    pub(crate) fn approx_len(text: &str) -> (usize, usize) {
        (text.split_whitespace().count(), text.len())
    }
}
