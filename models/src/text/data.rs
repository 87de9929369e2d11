//! Labelled training data: CSV or JSON Lines with `text`, `label` and optionally `lang`.
//!
//! * CSV: a header row naming the columns (any order, any case; other columns are ignored), RFC 4180 quoting.
//! * JSON Lines (`.jsonl`, `.ndjson`): one object per line, `{"text": "...", "label": "negative", "lang": "es"}`;
//!   other fields are ignored, blank lines skipped.
//!
//! `label` is `negative`, `neutral` or `positive` (or `neg`/`neu`/`pos`, any case). Numeric labels are refused
//! because `0` means negative in binary data sets and neutral in ternary ones. `lang` is an ISO 639 code (`es`,
//! `en`, `es-MX`, …); when absent or blank, training detects it. Every bad row is an error naming the line and
//! column, so that a file can be fixed instead of being silently half-used.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::error::TextError;
use super::head::Sentiment;
use super::lang::Language;

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledText {
    /// The text (trimmed, non-empty).
    pub text: String,
    /// Its sentiment.
    pub label: Sentiment,
    /// Its language code (`en`, `es`, or another lowercase code) when the data gave one.
    pub lang: Option<String>,
    /// The 1-based line it came from (0 for examples built in memory).
    pub line: u64,
}

/// A named set of labelled texts, e.g. one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledDataset {
    /// Its name in reports and in the head's training record (the file name for files).
    pub name: String,
    /// The examples, in file order.
    pub examples: Vec<LabeledText>,
}

impl LabeledDataset {
    /// A data set built in memory.
    pub fn new(name: impl Into<String>, examples: Vec<LabeledText>) -> Self {
        LabeledDataset {
            name: name.into(),
            examples,
        }
    }

    /// Reads a `.csv`, `.jsonl` or `.ndjson` file (chosen by extension).
    pub fn from_path(path: &Path) -> Result<Self, TextError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if !matches!(extension.as_str(), "csv" | "jsonl" | "ndjson") {
            return Err(TextError::Dataset {
                source_name: path.display().to_string(),
                message: "unknown file type: expected .csv, .jsonl or .ndjson".into(),
            });
        }
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TextError::MissingFile {
                what: "labelled data file",
                path: path.to_path_buf(),
            },
            _ => TextError::io("labelled data file", path, e),
        })?;
        let mut dataset = if extension == "csv" {
            Self::from_csv_reader(file, &path.display().to_string())?
        } else {
            Self::from_jsonl_reader(BufReader::new(file), &path.display().to_string())?
        };
        dataset.name = name;
        Ok(dataset)
    }

    /// Reads CSV with a header row; `source_name` names the input in errors and becomes the data set's name.
    pub fn from_csv_reader(reader: impl Read, source_name: &str) -> Result<Self, TextError> {
        let mut csv = csv::ReaderBuilder::new().has_headers(true).from_reader(reader);
        let dataset_error = |message: String| TextError::Dataset {
            source_name: source_name.to_string(),
            message,
        };
        let headers = csv
            .headers()
            .map_err(|e| dataset_error(format!("cannot read the header row: {e}")))?
            .clone();
        let names: Vec<String> = headers
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
            .collect();
        let find = |wanted: &[&str]| names.iter().position(|n| wanted.contains(&n.as_str()));
        let text_col =
            find(&["text"]).ok_or_else(|| dataset_error(format!("no `text` column in the header {names:?}")))?;
        let label_col =
            find(&["label"]).ok_or_else(|| dataset_error(format!("no `label` column in the header {names:?}")))?;
        let lang_col = find(&["lang", "language"]);

        let mut examples = Vec::new();
        for record in csv.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                TextError::Data {
                    source_name: source_name.to_string(),
                    line,
                    column: "-".into(),
                    message: e.to_string(),
                }
            })?;
            let line = record.position().map_or(0, |p| p.line());
            let cell = |col: usize| record.get(col).unwrap_or("");
            let row_error = |col: usize, message: String| TextError::Data {
                source_name: source_name.to_string(),
                line,
                column: format!("{} ({})", names[col], col + 1),
                message,
            };
            let text = parse_text(cell(text_col)).map_err(|m| row_error(text_col, m))?;
            let label = parse_label(cell(label_col)).map_err(|m| row_error(label_col, m))?;
            let lang = match lang_col {
                Some(col) => parse_lang(cell(col)).map_err(|m| row_error(col, m))?,
                None => None,
            };
            examples.push(LabeledText {
                text,
                label,
                lang,
                line,
            });
        }
        finish(source_name, examples)
    }

    /// Reads JSON Lines; `source_name` names the input in errors and becomes the data set's name.
    pub fn from_jsonl_reader(reader: impl BufRead, source_name: &str) -> Result<Self, TextError> {
        let mut examples = Vec::new();
        for (index, line) in reader.lines().enumerate() {
            let line_no = index as u64 + 1;
            let row_error = |column: &str, message: String| TextError::Data {
                source_name: source_name.to_string(),
                line: line_no,
                column: column.to_string(),
                message,
            };
            let line = line.map_err(|e| row_error("-", format!("cannot read: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(&line)
                .map_err(|e| row_error(&format!("char {}", e.column()), format!("invalid JSON: {e}")))?;
            let object = value
                .as_object()
                .ok_or_else(|| row_error("-", "expected a JSON object".into()))?;
            let string_field = |name: &str, required: bool| -> Result<Option<&str>, TextError> {
                match object.get(name) {
                    Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
                    None | Some(serde_json::Value::Null) if !required => Ok(None),
                    None => Err(row_error(name, "missing".into())),
                    Some(other) => Err(row_error(name, format!("expected a string, got {other}"))),
                }
            };
            let text = parse_text(string_field("text", true)?.unwrap_or("")).map_err(|m| row_error("text", m))?;
            let label = parse_label(string_field("label", true)?.unwrap_or("")).map_err(|m| row_error("label", m))?;
            let lang = parse_lang(string_field("lang", false)?.unwrap_or("")).map_err(|m| row_error("lang", m))?;
            examples.push(LabeledText {
                text,
                label,
                lang,
                line: line_no,
            });
        }
        finish(source_name, examples)
    }
}

fn finish(source_name: &str, examples: Vec<LabeledText>) -> Result<LabeledDataset, TextError> {
    if examples.is_empty() {
        return Err(TextError::Dataset {
            source_name: source_name.to_string(),
            message: "no examples".into(),
        });
    }
    Ok(LabeledDataset::new(source_name, examples))
}

fn parse_text(raw: &str) -> Result<String, String> {
    let text = raw.trim();
    if text.is_empty() {
        Err("empty text".into())
    } else {
        Ok(text.to_string())
    }
}

fn parse_label(raw: &str) -> Result<Sentiment, String> {
    Sentiment::parse(raw).ok_or_else(|| format!("unknown label {raw:?} (expected negative, neutral or positive)"))
}

/// A blank language is "unknown"; `es`/`en` variants are normalised; other codes are kept, lowercased.
fn parse_lang(raw: &str) -> Result<Option<String>, String> {
    let code = raw.trim();
    if code.is_empty() {
        return Ok(None);
    }
    if let Some(language) = Language::from_code(code) {
        return Ok(Some(language.code().to_string()));
    }
    let valid = code.len() <= 16
        && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && code.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if valid {
        Ok(Some(code.to_ascii_lowercase()))
    } else {
        Err(format!("{raw:?} is not a language code (e.g. es, en, es-MX)"))
    }
}
