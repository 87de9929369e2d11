//! Texts longer than the encoder's window (256 tokens) are scored in
//! chunks, not silently truncated: a review that praises for three
//! paragraphs and ends "UPDATE: broken, I want a refund" must still raise its
//! alert.
//!
//! Chunks are cut at sentence ends (or, for a run-on sentence, between
//! words) so that each holds at most [`MAX_CHUNK_WORDS`] words — 256 tokens
//! hold ~150 words of Spanish or English with e5's vocabulary, and a margin
//! keeps rare-word-heavy text inside the window. Each chunk is scored like
//! any text (they share inference batches), then:
//! * the stored probabilities are the word-weighted mean over chunks (the
//!   text's overall tone), and
//! * alerting and urgency use the **most negative chunk** — one angry
//!   paragraph is a complaint, however polite the rest.

use kairos_models::text::{Sentiment, SentimentResult};

/// Most words per chunk.
pub const MAX_CHUNK_WORDS: usize = 120;

/// Splits `text` into chunks of at most `max_words` words, at sentence ends
/// where possible. A text within the limit is one chunk, itself.
pub fn split(text: &str, max_words: usize) -> Vec<String> {
    let max_words = max_words.max(1);
    if text.split_whitespace().count() <= max_words {
        return vec![text.to_string()];
    }
    let mut chunks = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for sentence in sentences(text) {
        let words: Vec<&str> = sentence.split_whitespace().collect();
        if !current.is_empty() && current.len() + words.len() > max_words {
            chunks.push(current.join(" "));
            current.clear();
        }
        for piece in words.chunks(max_words) {
            if current.len() + piece.len() > max_words {
                chunks.push(current.join(" "));
                current.clear();
            }
            current.extend_from_slice(piece);
        }
    }
    if !current.is_empty() {
        chunks.push(current.join(" "));
    }
    chunks
}

/// Sentences: text up to and including `.`, `!`, `?` or a line break.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?' | '\n') {
            let end = i + c.len_utf8();
            if !text[start..end].trim().is_empty() {
                out.push(&text[start..end]);
            }
            start = end;
        }
    }
    if !text[start..].trim().is_empty() {
        out.push(&text[start..]);
    }
    out
}

/// The scores of a chunked text, combined.
#[derive(Debug, Clone)]
pub struct Combined {
    /// Word-weighted mean of the chunks' probabilities (what is stored).
    pub overall: SentimentResult,
    /// The chunk with the highest P(negative) (what alerting and urgency use).
    pub most_negative: SentimentResult,
}

fn negative(r: &SentimentResult) -> f32 {
    r.probabilities
        .iter()
        .find(|(s, _)| *s == Sentiment::Negative)
        .map_or(0.0, |(_, p)| *p)
}

/// Combines chunk results (each with its word count). `language` is the
/// whole text's. `None` for no chunks.
pub fn combine(parts: &[(SentimentResult, usize)]) -> Option<Combined> {
    let most_negative = parts
        .iter()
        .max_by(|a, b| negative(&a.0).total_cmp(&negative(&b.0)))?
        .0
        .clone();
    let total: f32 = parts.iter().map(|(_, w)| *w.max(&1) as f32).sum();
    let mut probabilities: Vec<(Sentiment, f32)> = parts[0].0.probabilities.iter().map(|(s, _)| (*s, 0.0)).collect();
    for (result, words) in parts {
        let weight = *words.max(&1) as f32 / total;
        for (label, p) in probabilities.iter_mut() {
            let q = result
                .probabilities
                .iter()
                .find(|(s, _)| s == label)
                .map_or(0.0, |(_, q)| *q);
            *p += weight * q;
        }
    }
    let (label, score) = probabilities
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((Sentiment::Neutral, 0.0));
    let p = |s: Sentiment| probabilities.iter().find(|(l, _)| *l == s).map_or(0.0, |(_, p)| *p);
    let overall = SentimentResult {
        label,
        score,
        polarity: p(Sentiment::Positive) - p(Sentiment::Negative),
        probabilities,
        language: parts[0].0.language,
    };
    Some(Combined { overall, most_negative })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(neg: f32, pos: f32) -> SentimentResult {
        let neu = 1.0 - neg - pos;
        let probabilities = vec![
            (Sentiment::Negative, neg),
            (Sentiment::Neutral, neu),
            (Sentiment::Positive, pos),
        ];
        let (label, score) = probabilities
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        SentimentResult {
            label,
            score,
            polarity: pos - neg,
            probabilities,
            language: None,
        }
    }

    #[test]
    fn short_texts_are_one_chunk_and_long_ones_split_at_sentences_within_the_limit() {
        assert_eq!(split("Hola. Todo bien.", 5), vec!["Hola. Todo bien."]);
        let text = "One two three. Four five six seven. Eight nine. Ten";
        let chunks = split(text, 5);
        assert_eq!(
            chunks,
            vec!["One two three.", "Four five six seven.", "Eight nine. Ten"]
        );
        // A run-on sentence is cut between words; nothing is lost.
        let long = (0..23).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let chunks = split(&long, 10);
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.split_whitespace().count() <= 10));
        assert_eq!(chunks.join(" "), long);
    }

    #[test]
    fn the_most_negative_chunk_decides_alerting_and_the_mean_is_stored() {
        let praise = result(0.05, 0.9);
        let complaint = result(0.92, 0.03);
        let c = combine(&[(praise.clone(), 300), (complaint.clone(), 100)]).unwrap();
        assert_eq!(c.most_negative.label, Sentiment::Negative);
        assert!((c.most_negative.score - 0.92).abs() < 1e-6);
        assert_eq!(c.overall.label, Sentiment::Positive);
        let neg = c.overall.probabilities[0].1;
        assert!((neg - (0.05 * 0.75 + 0.92 * 0.25)).abs() < 1e-6, "{neg}");
        assert!(combine(&[]).is_none());
    }
}
