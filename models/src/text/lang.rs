//! Spanish / English language identification: whatlang for "neither" (`und`), function words and spelling
//! between the two.
//!
//! The product's users write in Spanish and English; the language decides which metrics a text counts towards, and
//! later which model or keyword list applies. Function words ("de", "que", "the", "and") are the most reliable cue
//! in short, noisy text, and Spanish spelling (ñ, accents, ¿ ¡) and English contractions break most ties. The word
//! lists are disjoint: words common in both languages ("a", "no", "me", "he", "son", "era") are left out.
//!
//! Measured on the labelled data `scripts/fetch-models` fetches (see `models/MODELS.md` for the numbers and the
//! command): it is a heuristic, it abstains (`None`) on texts without evidence (URLs, emoji, names), and it is not
//! meant for any other pair of languages.

use serde::{Deserialize, Serialize};

/// A language the detector can tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Language {
    /// English.
    #[serde(rename = "en")]
    English,
    /// Spanish.
    #[serde(rename = "es")]
    Spanish,
}

impl Language {
    /// The ISO 639-1 code: `en` or `es`.
    pub fn code(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::Spanish => "es",
        }
    }

    /// Parses an ISO 639-1 code or a region-qualified one (`es`, `ES`, `es-MX`, `en_US`).
    pub fn from_code(code: &str) -> Option<Language> {
        let base = code.trim().split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        match base.as_str() {
            "en" | "eng" => Some(Language::English),
            "es" | "spa" => Some(Language::Spanish),
            _ => None,
        }
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// The evidence for each language in a text (function words count 1, spelling cues 0.5–1).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LanguageScores {
    /// Evidence for English.
    pub english: f32,
    /// Evidence for Spanish.
    pub spanish: f32,
}

impl LanguageScores {
    /// The language with more evidence; `None` on a tie (including no evidence at all).
    pub fn best(&self) -> Option<Language> {
        if self.english > self.spanish {
            Some(Language::English)
        } else if self.spanish > self.english {
            Some(Language::Spanish)
        } else {
            None
        }
    }
}

/// Detects whether `text` is Spanish or English; `None` when it is neither (`und`).
///
/// Two detectors, each where it is strong (measured by `examples/lang_eval.rs`, figures in
/// `models/MODELS.md`): whatlang (trigram profiles of ~70 languages) decides whether a text is in a
/// third language at all — the heuristic below only knows two, so it called French Spanish — and the
/// function-word heuristic decides between Spanish and English, where it is more accurate on short,
/// noisy texts. When the heuristic has no evidence, whatlang's Spanish or English stands.
pub fn detect_language(text: &str) -> Option<Language> {
    let guess = whatlang::detect(text);
    let third = guess.as_ref().is_some_and(|info| {
        info.confidence() >= 0.5 && !matches!(info.lang(), whatlang::Lang::Spa | whatlang::Lang::Eng)
    });
    if third {
        return None;
    }
    language_scores(text).best().or_else(|| match guess.map(|i| i.lang()) {
        Some(whatlang::Lang::Spa) => Some(Language::Spanish),
        Some(whatlang::Lang::Eng) => Some(Language::English),
        _ => None,
    })
}

/// [`detect_language`] as the code stored with a score: `es`, `en`, or `und` (BCP 47's
/// "undetermined") for a text in neither language or without evidence. Such texts are still scored: the
/// encoder is multilingual.
pub fn language_code(text: &str) -> &'static str {
    detect_language(text).map_or("und", Language::code)
}

const ENGLISH: &[&str] = &[
    "the",
    "and",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "have",
    "had",
    "having",
    "it",
    "its",
    "this",
    "that",
    "these",
    "those",
    "with",
    "for",
    "not",
    "you",
    "your",
    "yours",
    "they",
    "them",
    "their",
    "we",
    "our",
    "us",
    "my",
    "i",
    "she",
    "his",
    "her",
    "him",
    "what",
    "which",
    "who",
    "whom",
    "would",
    "could",
    "should",
    "will",
    "just",
    "very",
    "but",
    "if",
    "or",
    "of",
    "to",
    "in",
    "on",
    "at",
    "from",
    "by",
    "about",
    "there",
    "here",
    "all",
    "one",
    "an",
    "do",
    "does",
    "did",
    "can",
    "get",
    "got",
    "really",
    "great",
    "good",
    "bad",
    "love",
    "like",
    "than",
    "then",
    "when",
    "how",
    "out",
    "up",
    "more",
    "as",
    "too",
    "only",
    "after",
    "because",
    "into",
    "over",
    "also",
    "any",
    "some",
    "well",
    "much",
    "even",
    "ever",
    "never",
    "again",
    "time",
    "so",
    "it's",
    "don't",
    "i'm",
    "i've",
    "didn't",
    "doesn't",
    "isn't",
    "wasn't",
    "can't",
    "won't",
    "thanks",
    "thank",
    "please",
    "why",
    "where",
    "every",
    "other",
    "off",
    "back",
    "now",
    "way",
    "made",
    "make",
    "see",
    "think",
    "know",
    "want",
    "need",
    "work",
    "works",
    "working",
    "broken",
    "service",
    "nice",
    "best",
    "worst",
    "definitely",
    "would've",
    "everything",
    "nothing",
    "something",
    "anyone",
    "recommend",
    "waste",
    "money",
    "quality",
];

const SPANISH: &[&str] = &[
    "de",
    "la",
    "que",
    "el",
    "en",
    "y",
    "los",
    "las",
    "del",
    "se",
    "por",
    "un",
    "una",
    "para",
    "con",
    "es",
    "lo",
    "como",
    "más",
    "mas",
    "pero",
    "sus",
    "le",
    "ya",
    "o",
    "este",
    "esta",
    "sí",
    "si",
    "porque",
    "muy",
    "sin",
    "sobre",
    "también",
    "tambien",
    "hasta",
    "hay",
    "donde",
    "dónde",
    "quien",
    "quién",
    "desde",
    "todo",
    "nos",
    "durante",
    "todos",
    "uno",
    "les",
    "ni",
    "contra",
    "otros",
    "ese",
    "eso",
    "ante",
    "ellos",
    "e",
    "esto",
    "mí",
    "antes",
    "algunos",
    "qué",
    "unos",
    "yo",
    "otro",
    "otras",
    "otra",
    "él",
    "tanto",
    "esa",
    "estos",
    "mucho",
    "quienes",
    "nada",
    "muchos",
    "cual",
    "cuál",
    "poco",
    "ella",
    "estar",
    "estas",
    "algunas",
    "algo",
    "nosotros",
    "mi",
    "mis",
    "tú",
    "te",
    "ti",
    "tu",
    "tus",
    "ellas",
    "os",
    "está",
    "están",
    "estoy",
    "fue",
    "ser",
    "tiene",
    "tengo",
    "hace",
    "bien",
    "gracias",
    "hola",
    "buenos",
    "buenas",
    "día",
    "dia",
    "hoy",
    "así",
    "asi",
    "cuando",
    "pues",
    "al",
    "su",
    "ha",
    "han",
    "eres",
    "soy",
    "va",
    "vamos",
    "voy",
    "aquí",
    "aqui",
    "ahora",
    "siempre",
    "nunca",
    "hacer",
    "puede",
    "solo",
    "sólo",
    "mejor",
    "peor",
    "vez",
    "ver",
    "creo",
    "quiero",
    "gusta",
    "jaja",
    "jajaja",
    "jajajaja",
    "usted",
    "ustedes",
    "estamos",
    "estaba",
    "fueron",
    "será",
    "sería",
    "tienen",
    "todavía",
    "aún",
    "mañana",
    "noche",
    "favor",
    "funciona",
    "problema",
    "servicio",
    "urgente",
    "bloqueado",
    "gente",
    "vida",
    "años",
    "cosas",
    "nadie",
    "mismo",
    "entonces",
    "ahí",
    "allí",
    "cómo",
    "porqué",
];

fn is_word_char(c: char) -> bool {
    c.is_alphabetic() || c == '\'' || c == '’'
}

/// The evidence for each language in `text`; see the module documentation for the cues.
pub fn language_scores(text: &str) -> LanguageScores {
    let mut scores = LanguageScores::default();
    for raw in text.split_whitespace() {
        // URLs, mentions and hashtags carry no language (or a borrowed one).
        if raw.starts_with('@') || raw.starts_with('#') || raw.starts_with("http") || raw.starts_with("www.") {
            continue;
        }
        let lower = raw.to_lowercase();
        for c in lower.chars() {
            match c {
                'ñ' | '¿' | '¡' => scores.spanish += 1.0,
                'á' | 'é' | 'í' | 'ó' | 'ú' => scores.spanish += 0.5,
                _ => {}
            }
        }
        for word in lower.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty()) {
            let word = word.trim_matches(|c| c == '\'' || c == '’');
            let normalized = word.replace('’', "'");
            if ENGLISH.contains(&normalized.as_str()) {
                scores.english += 1.0;
            } else if SPANISH.contains(&normalized.as_str()) {
                scores.spanish += 1.0;
            } else if normalized.ends_with("n't")
                || normalized.ends_with("'s")
                || normalized.ends_with("'re")
                || normalized.ends_with("'ll")
                || normalized.ends_with("'ve")
            {
                scores.english += 1.0;
            } else if normalized.len() > 5 && normalized.ends_with("ing") {
                scores.english += 0.5;
            } else if (normalized.len() > 7 && normalized.ends_with("mente")) || normalized.ends_with("ción") {
                scores.spanish += 0.5;
            }
        }
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_third_language_is_und_and_spanish_and_english_stay_themselves() {
        for text in [
            "Bonjour, je n'arrive pas à me connecter à mon compte depuis ce matin.",
            "Olá, não consigo acessar a minha conta desde ontem.",
            "Hallo, ich kann mich seit heute Morgen nicht mehr anmelden.",
        ] {
            assert_eq!(detect_language(text), None, "{text}");
            assert_eq!(language_code(text), "und", "{text}");
        }
        assert_eq!(language_code("El panel no carga desde ayer, ¿pueden revisarlo?"), "es");
        assert_eq!(language_code("The dashboard has not loaded since yesterday."), "en");
        assert_eq!(language_code("🙂 https://t.co/x"), "und");
    }
}
