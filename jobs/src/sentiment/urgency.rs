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
    /// matched as whole words, case- and accent-insensitively, in any
    /// inflection (Snowball stems in Spanish and English: "bloqueado" finds
    /// "bloqueadas", "blocked" finds "blocking").
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
        "emergencia",
        "crítico",
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
        "emergency",
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

/// Words of a folded text: runs of letters, digits and apostrophes (so
/// "doesn't" stays one word and "down" is never found inside "download").
fn words(folded: &str) -> Vec<&str> {
    folded
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect()
}

/// A word's stems under both languages' Snowball stemmers: "bloqueados" and
/// "bloqueado" share `bloqu`, "blocked" and "blocking" share `block`, so a
/// keyword matches its plural, gender and tense forms. Customers mix
/// languages, so a word matches a keyword if either stemmer relates them.
struct Stems {
    es: String,
    en: String,
}

impl Stems {
    fn of(word: &str, stemmers: &Stemmers) -> Self {
        Stems {
            es: stemmers.es.stem(word).into_owned(),
            en: stemmers.en.stem(word).into_owned(),
        }
    }

    fn matches(&self, other: &Stems) -> bool {
        self.es == other.es || self.en == other.en
    }
}

struct Stemmers {
    es: rust_stemmers::Stemmer,
    en: rust_stemmers::Stemmer,
}

impl Stemmers {
    fn new() -> Self {
        Stemmers {
            es: rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::Spanish),
            en: rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English),
        }
    }
}

/// Whether the word sequence `phrase` occurs in `text` (both as stems).
fn contains_phrase(text: &[Stems], phrase: &[Stems]) -> bool {
    !phrase.is_empty()
        && text
            .windows(phrase.len())
            .any(|w| w.iter().zip(phrase).all(|(a, b)| a.matches(b)))
}

/// Scores `text` scored as `result`: `negative_weight × P(negative)` plus
/// `keyword_points` per keyword found, capped at `keyword_max`; 0–100.
/// Keywords are matched as whole words, accent- and case-insensitively, in
/// any inflection; keywords of the same stem ("bloqueado", "bloqueada")
/// count once, as the first one configured.
pub fn urgency(text: &str, result: &SentimentResult, config: &UrgencyConfig) -> Urgency {
    let stemmers = Stemmers::new();
    let folded = fold(text);
    let text_words = words(&folded);
    let text_stems: Vec<Stems> = text_words.iter().map(|w| Stems::of(w, &stemmers)).collect();
    // (config index, phrase stems, written exactly as in the text)
    let mut found: Vec<(usize, Vec<Stems>, bool)> = Vec::new();
    for (i, k) in config.keywords.iter().enumerate() {
        let folded_k = fold(k.trim());
        let k_words = words(&folded_k);
        let phrase: Vec<Stems> = k_words.iter().map(|w| Stems::of(w, &stemmers)).collect();
        if contains_phrase(&text_stems, &phrase) {
            let exact = !k_words.is_empty() && text_words.windows(k_words.len()).any(|w| w == k_words.as_slice());
            found.push((i, phrase, exact));
        }
    }
    // Keywords of one stem count once: the one written as in the text, else the first configured.
    found.sort_by_key(|(i, _, exact)| (!exact, *i));
    let mut accepted: Vec<(usize, Vec<Stems>)> = Vec::new();
    for (i, phrase, _) in found {
        let same =
            |other: &Vec<Stems>| other.len() == phrase.len() && other.iter().zip(&phrase).all(|(a, b)| a.matches(b));
        if !accepted.iter().any(|(_, p)| same(p)) {
            accepted.push((i, phrase));
        }
    }
    accepted.sort_by_key(|(i, _)| *i);
    let keywords: Vec<String> = accepted.into_iter().map(|(i, _)| config.keywords[i].clone()).collect();
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
    fn keywords_match_their_plural_gender_and_tense_forms() {
        let c = UrgencyConfig::default();
        let found = |t: &str| urgency(t, &result(0.9), &c).keywords;
        assert_eq!(found("Estamos BLOQUEADOS desde ayer"), vec!["bloqueado"]);
        assert_eq!(found("las cuentas están bloqueadas"), vec!["bloqueado"]);
        assert_eq!(found("los servidores están caídos"), vec!["caído"]);
        assert_eq!(found("las integraciones no funcionan"), vec!["no funciona"]);
        assert_eq!(found("es un problema crítico, críticos todos"), vec!["crítico"]);
        assert_eq!(found("We are blocked by this"), vec!["blocked"]);
        assert_eq!(found("it broke again, refunds please"), vec!["broken", "refund"]);
        assert_eq!(found("Situación de emergencia"), vec!["emergencia"]);
        // Still whole words only.
        assert!(found("the protocol download page").is_empty());
        assert!(found("un protocolo nuevo").is_empty());
    }

    #[test]
    fn a_positive_text_without_keywords_is_not_urgent() {
        let u = urgency("Gracias, todo va genial", &result(0.02), &UrgencyConfig::default());
        assert!(u.score <= 2, "{u:?}");
    }
}
