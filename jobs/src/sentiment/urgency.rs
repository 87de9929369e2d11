//! Urgency 0–100 of a scored text: how sure the model is that the customer
//! is unhappy, plus points for urgency keywords ("urgente", "no funciona",
//! "blocking", ...). Ops sort alerts by it, so a calm complaint ranks below
//! "¡URGENTE! el sistema está caído".

use kairos_models::text::{Sentiment, SentimentResult};
use serde::Deserialize;

/// How urgent a negative text is, 0–100: the negative confidence plus
/// points for urgency keywords.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UrgencyConfig {
    /// Words and phrases (Spanish and English) that make a text more urgent;
    /// matched case- and accent-insensitively on word boundaries.
    pub keywords: Vec<String>,
    /// Points the negative confidence contributes at most (confidence × this).
    pub negative_weight: f64,
    /// Points per keyword found.
    pub keyword_points: f64,
    /// Cap on the keyword points.
    pub keyword_max: f64,
}

impl Default for UrgencyConfig {
    fn default() -> Self {
        Self {
            keywords: default_keywords(),
            negative_weight: 70.0,
            keyword_points: 15.0,
            keyword_max: 30.0,
        }
    }
}

/// The built-in bilingual urgency keywords.
pub fn default_keywords() -> Vec<String> {
    [
        "urgente",
        "urgencia",
        "bloqueado",
        "bloqueada",
        "bloqueante",
        "no funciona",
        "caído",
        "caída",
        "roto",
        "inaceptable",
        "cancelar",
        "reembolso",
        "ya mismo",
        "urgent",
        "urgently",
        "asap",
        "critical",
        "blocking",
        "blocked",
        "broken",
        "down",
        "not working",
        "doesn't work",
        "unacceptable",
        "cancel",
        "refund",
        "outage",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// A text's urgency and the keywords that raised it.
#[derive(Debug, Clone, PartialEq)]
pub struct Urgency {
    /// 0–100.
    pub score: u8,
    /// Configured keywords found in the text (as configured).
    pub keywords: Vec<String>,
}

/// Lower-cases and strips Spanish accents, and turns apostrophe variants
/// into one, so "CAÍDO", "caido" and "caído" match the same keyword.
fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'ä' | 'â' => 'a',
            'é' | 'è' | 'ë' | 'ê' => 'e',
            'í' | 'ì' | 'ï' | 'î' => 'i',
            'ó' | 'ò' | 'ö' | 'ô' => 'o',
            'ú' | 'ù' | 'ü' | 'û' => 'u',
            '’' | '‘' | '`' => '\'',
            c => c,
        })
        .collect()
}

/// Whether `needle` occurs in `haystack` on word boundaries (so "down" does
/// not match "download", nor "roto" "protocolo").
fn contains_word(haystack: &str, needle: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '\'';
    haystack.match_indices(needle).any(|(i, _)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + needle.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// Scores `text` scored as `result`: `negative_weight × P(negative)` plus
/// `keyword_points` per keyword found, capped at `keyword_max`; 0–100.
pub fn urgency(text: &str, result: &SentimentResult, config: &UrgencyConfig) -> Urgency {
    let folded = fold(text);
    let keywords: Vec<String> = config
        .keywords
        .iter()
        .filter(|k| contains_word(&folded, &fold(k.trim())))
        .cloned()
        .collect();
    let negative = result
        .probabilities
        .iter()
        .find(|(s, _)| *s == Sentiment::Negative)
        .map_or(0.0, |(_, p)| f64::from(*p));
    let points = (keywords.len() as f64 * config.keyword_points).min(config.keyword_max);
    let score = (negative * config.negative_weight + points).round().clamp(0.0, 100.0) as u8;
    Urgency { score, keywords }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(negative: f32) -> SentimentResult {
        SentimentResult {
            label: if negative >= 0.5 {
                Sentiment::Negative
            } else {
                Sentiment::Positive
            },
            score: negative.max(1.0 - negative),
            polarity: 1.0 - 2.0 * negative,
            probabilities: vec![(Sentiment::Negative, negative), (Sentiment::Positive, 1.0 - negative)],
            language: None,
        }
    }

    #[test]
    fn keywords_match_across_case_accents_and_languages_on_word_boundaries() {
        let c = UrgencyConfig::default();
        let u = urgency("¡URGENTE! El sistema está CAIDO y no funciona", &result(0.9), &c);
        assert_eq!(u.keywords, vec!["urgente", "no funciona", "caído"]);
        assert_eq!(u.score, (0.9f64 * 70.0 + 30.0).round() as u8, "capped keyword points");
        let u = urgency("The download page is fine", &result(0.9), &c);
        assert!(
            u.keywords.is_empty(),
            "`down` must not match `download`: {:?}",
            u.keywords
        );
        let u = urgency("Checkout is BROKEN, this is blocking us", &result(1.0), &c);
        assert_eq!(u.keywords, vec!["blocking", "broken"]);
        assert_eq!(u.score, 100);
    }

    #[test]
    fn a_positive_text_without_keywords_is_not_urgent() {
        let u = urgency("Gracias, todo va genial", &result(0.02), &UrgencyConfig::default());
        assert!(u.score <= 2, "{u:?}");
    }
}
