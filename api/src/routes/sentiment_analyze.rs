//! `POST /v1/sentiment:analyze`: score up to 100 texts on demand with the
//! tenant's active sentiment head, exactly as the `sentiment` job would
//! (chunks, calibration, urgency, alert decision), and store nothing.
//!
//! The texts go through the process's micro-batcher
//! (`kairos_jobs::sentiment::Scorer`): the worker's when both roles share
//! the process, else one loaded on the first request.

use axum::extract::State;
use axum::Json;
use kairos_jobs::sentiment::{chunks, ScoreError, TextScore};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthTenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Texts per request at most.
pub const MAX_TEXTS: usize = 100;
/// Characters per text at most.
pub const MAX_TEXT_CHARS: usize = 20_000;
/// A text must contain a character that is neither whitespace nor a
/// separator control. Validators disagree on `\s`: ECMAScript's includes
/// U+FEFF and not U+0085, Rust's `char::is_whitespace` (Unicode
/// `White_Space`) the other way round, Python's also U+001C–U+001F; all of
/// them are named here so the schema and the server refuse the same texts.
pub const TEXT_PATTERN: &str = r"[^\s\u001c-\u001f\u0085\ufeff]";

/// Texts to score.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    /// The texts, 1–100, each of 1–20,000 characters with at least one
    /// that is not whitespace. A text longer than the model's window is
    /// scored in chunks.
    // The items' limits are set on the document (`openapi::document`).
    #[schema(min_items = 1, max_items = 100)]
    pub texts: Vec<String>,
}

/// Calibrated probability of each label.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelProbabilities {
    /// P(negative).
    pub negative: f64,
    /// P(neutral) (0 for a head without a neutral class).
    pub neutral: f64,
    /// P(positive).
    pub positive: f64,
}

/// One text's score.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextAnalysis {
    /// `negative`, `neutral` or `positive` (the most probable).
    pub label: String,
    /// Its calibrated probability.
    pub score: f64,
    /// Calibrated probabilities (per language: they mean the same in
    /// Spanish and English).
    pub probabilities: LabelProbabilities,
    /// P(positive) − P(negative), in [−1, 1].
    pub polarity: f64,
    /// `es`, `en`, or `und` (neither, or no evidence: still scored).
    pub language: String,
    /// 0–100: calibrated P(negative) of the most negative chunk plus
    /// urgency keywords.
    pub urgency: i64,
    /// Urgency keywords found.
    pub keywords: Vec<String>,
    /// Whether the text was longer than the model's window and scored in
    /// chunks (probabilities: their word-weighted mean; alert and urgency:
    /// the most negative chunk).
    pub chunked: bool,
    /// Windows it was scored in.
    pub chunks: i64,
    /// Calibrated P(negative) of the most negative chunk.
    pub alert_probability: f64,
    /// Whether the `sentiment` job would raise a `client_dissatisfaction`
    /// alert for it (`alert_probability` ≥ the tenant's threshold).
    pub alert: bool,
}

/// The scores, in the order of the texts sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalyzeResponse {
    /// The head (or classifier) version used: the tenant's active one.
    pub model_version: String,
    /// The tenant's alert threshold on the calibrated P(negative).
    pub alert_threshold: f64,
    /// One per text.
    pub results: Vec<TextAnalysis>,
}

impl From<TextScore> for TextAnalysis {
    fn from(s: TextScore) -> Self {
        let p = |label: &str| {
            s.overall
                .probabilities
                .iter()
                .find(|(l, _)| l.as_str() == label)
                .map_or(0.0, |(_, p)| f64::from(*p))
        };
        Self {
            label: s.overall.label.as_str().to_owned(),
            score: f64::from(s.overall.score),
            probabilities: LabelProbabilities {
                negative: p("negative"),
                neutral: p("neutral"),
                positive: p("positive"),
            },
            polarity: f64::from(s.overall.polarity),
            language: s.language.map_or("und", |l| l.code()).to_owned(),
            urgency: i64::from(s.urgency.score),
            keywords: s.urgency.keywords,
            chunked: s.chunks > 1,
            chunks: i64::try_from(s.chunks).unwrap_or(i64::MAX),
            alert_probability: f64::from(s.alert_probability),
            alert: s.alert,
        }
    }
}

/// Whether `text` has something to score (see [`TEXT_PATTERN`]).
fn has_content(text: &str) -> bool {
    text.chars()
        .any(|c| !c.is_whitespace() && !('\u{1c}'..='\u{1f}').contains(&c) && c != '\u{feff}')
}

/// Score texts for sentiment (nothing is stored).
///
/// Each text is scored as the `sentiment` job scores an event's text, with
/// the tenant's active head: the answer equals what the job would store
/// (label, calibrated probabilities, language, urgency, chunks) and whether
/// it would raise an alert. Rate-limited like ingest: each scored window
/// (one per text, more for a chunked text) costs one event.
#[utoipa::path(
    post,
    path = "/v1/sentiment:analyze",
    tag = "sentiment",
    request_body = AnalyzeRequest,
    responses(
        (status = 200, description = "One score per text, in order", body = AnalyzeResponse),
        (status = 400, description = "Malformed body, no texts, more than 100, or a text that is empty, blank or longer than 20,000 characters", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 404, description = "Sentiment scoring is not enabled on this server", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "Not `application/json` in UTF-8", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "The model or the store is unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn analyze(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<AnalyzeResponse>, ApiError> {
    super::events::require_json(&headers)?;
    let body = body.map_err(|e| super::events::body_error(e, state.config.api.max_body_bytes))?;
    let request: AnalyzeRequest = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::field("body", e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })?;
    if request.texts.is_empty() {
        return Err(ApiError::field("texts", "no texts sent"));
    }
    if request.texts.len() > MAX_TEXTS {
        return Err(ApiError::field(
            "texts",
            format!("{} texts in one request; at most {MAX_TEXTS}", request.texts.len()),
        ));
    }
    for (i, text) in request.texts.iter().enumerate() {
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(ApiError::field(
                format!("texts[{i}]"),
                format!("{chars} characters; at most {MAX_TEXT_CHARS}"),
            ));
        }
        if !has_content(text) {
            return Err(ApiError::field(format!("texts[{i}]"), "is empty or blank"));
        }
    }
    let Some(on_demand) = state.sentiment.as_ref().filter(|s| s.enabled()) else {
        return Err(ApiError::NotFound(
            "sentiment scoring is not enabled on this server".into(),
        ));
    };
    // What the texts cost the encoder: one window each, more for long ones.
    let cost: usize = request
        .texts
        .iter()
        .map(|t| chunks::split(t, chunks::MAX_CHUNK_WORDS).len())
        .sum();
    if let Err(wait) = state.limiter.check(&tenant.id, tenant.rate_per_second, cost) {
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let scorer = on_demand.scorer().await.map_err(|e| {
        tracing::error!(error = %e, "sentiment model could not be loaded");
        ApiError::Unavailable("the sentiment model is unavailable".into())
    })?;
    let scores = futures::future::join_all(
        request
            .texts
            .iter()
            .map(|t| scorer.score(&state.store, &tenant.id, Some(&tenant.name), t)),
    )
    .await;
    let mut results = Vec::with_capacity(scores.len());
    let mut model_version = String::new();
    for (i, score) in scores.into_iter().enumerate() {
        let score = score.map_err(|e| match e {
            ScoreError::Store(m) => {
                tracing::error!(error = %m, "sentiment store error");
                ApiError::Unavailable("store unavailable".into())
            }
            other => {
                tracing::error!(error = %other, text = i, "sentiment scoring failed");
                ApiError::Unavailable(format!("sentiment scoring failed: {other}"))
            }
        })?;
        model_version.clone_from(&score.model_version);
        results.push(TextAnalysis::from(score));
    }
    Ok(Json(AnalyzeResponse {
        model_version,
        alert_threshold: state
            .sentiment
            .as_ref()
            .map_or(0.0, |s| s.alert_threshold_for(&tenant.id, Some(&tenant.name))),
        results,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_texts_are_refused_as_the_schema_pattern_says() {
        assert!(!has_content(" \t\n\u{a0}\u{3000}\u{1c}"));
        // The two a JSON Schema validator and Rust read differently (schemathesis found U+0085).
        assert!(!has_content("\u{85}"));
        assert!(!has_content("\u{feff}"));
        let pattern = regex::Regex::new(TEXT_PATTERN).unwrap();
        for blank in ["\u{85}", "\u{feff}", " \u{1c}\u{a0}"] {
            assert!(!pattern.is_match(blank), "{blank:?}");
        }
        assert!(pattern.is_match(" ok "));
        assert!(has_content(" ok "));
        assert!(
            has_content("\u{200b}"),
            "a zero-width space is not whitespace to either side"
        );
    }
}
