//! Language identification measured on labelled texts: the function-word
//! heuristic (`language_scores`), whatlang alone, and what
//! `detect_language` ships (whatlang for "neither Spanish nor English", the
//! heuristic between the two). Prints accuracy per true language; for texts
//! in other languages, the share answered `und`.
//!
//! ```text
//! cargo run -p kairos-models --example lang_eval -- \
//!   .cache/models/data/uci-sentiment-en.jsonl .cache/models/data/tass-tweets-es.jsonl \
//!   models/tests/fixtures/text/other-languages.jsonl
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use kairos_models::text::{detect_language, language_code, language_scores, Language};

fn whatlang_only(text: &str) -> &'static str {
    match whatlang::detect(text) {
        Some(info) if info.lang() == whatlang::Lang::Spa => "es",
        Some(info) if info.lang() == whatlang::Lang::Eng => "en",
        _ => "und",
    }
}

fn main() {
    // true language → (texts, heuristic right, whatlang right, shipped right)
    let mut counts: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    let mut short: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    for path in std::env::args().skip(1) {
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = v["text"].as_str().unwrap();
            let truth = v["lang"].as_str().unwrap();
            let expected = if truth == "es" || truth == "en" { truth } else { "und" };
            let heuristic = language_scores(text).best().map_or("und", Language::code);
            let row = [
                1,
                usize::from(heuristic == expected),
                usize::from(whatlang_only(text) == expected),
                usize::from(language_code(text) == expected),
            ];
            debug_assert_eq!(detect_language(text).map_or("und", Language::code), language_code(text));
            let group = if expected == "und" {
                "other (fr/pt/it/de)".to_string()
            } else {
                truth.to_string()
            };
            let add = |m: &mut BTreeMap<String, [usize; 4]>| {
                let e = m.entry(group.clone()).or_default();
                for (a, b) in e.iter_mut().zip(row) {
                    *a += b;
                }
            };
            add(&mut counts);
            if text.split_whitespace().count() <= 6 {
                add(&mut short);
            }
        }
    }
    for (title, m) in [("all texts", &counts), ("texts of at most 6 words", &short)] {
        println!("{title}:");
        println!(
            "  {:<22} {:>6} {:>10} {:>10} {:>10}",
            "true language", "texts", "heuristic", "whatlang", "shipped"
        );
        for (lang, [n, h, w, s]) in m {
            let pct = |k: &usize| format!("{:.3}", *k as f64 / *n as f64);
            println!("  {lang:<22} {n:>6} {:>10} {:>10} {:>10}", pct(h), pct(w), pct(s));
        }
    }
}
