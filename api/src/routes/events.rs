//! `POST /v1/events`: ingest one event or a batch.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use kairos_core::enqueue::{accept_events, Producer};
use kairos_core::event::{valid_event_type, MAX_IDENT_LEN};
use kairos_core::store::IngestOutcome;
use kairos_core::Event;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthTenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// One event as a client sends it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// Client-chosen id, unique per tenant (1-128 chars). Re-sending an id
    /// is safe: it is reported as a duplicate and triggers nothing new.
    #[schema(example = "evt_01HZX3")]
    pub id: String,
    /// Dotted event type.
    #[serde(rename = "type")]
    #[schema(example = "comment.created")]
    pub event_type: String,
    /// Your customer account the event is about.
    #[schema(example = "acct_42")]
    pub account_id: String,
    /// The end user, when known.
    #[serde(default)]
    pub user_id: Option<String>,
    /// When it happened, RFC 3339 with offset.
    #[schema(example = "2026-11-21T09:30:00Z")]
    pub occurred_at: String,
    /// Free-form JSON object.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A batch: `{"events": [...]}`. A bare array or a single event object is
/// accepted too.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// The events, at most the configured batch size.
    pub events: Vec<EventIn>,
}

/// What happened to one event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventResult {
    /// The event id sent.
    pub id: String,
    /// `accepted` (new) or `duplicate` (seen before; nothing new triggered).
    #[schema(example = "accepted")]
    pub status: &'static str,
    /// Job runs the event triggered (for a duplicate: those of its first
    /// delivery).
    pub job_ids: Vec<String>,
}

/// Response to an ingest.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    /// Events newly recorded.
    pub accepted: usize,
    /// Events already recorded before.
    pub duplicates: usize,
    /// Per-event results, in request order.
    pub results: Vec<EventResult>,
}

/// Ingest one event or a batch.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "ingest",
    request_body(content = EventBatch, description = "A batch `{\"events\": [...]}`, a bare array, or one event object"),
    responses(
        (status = 202, description = "Recorded; jobs triggered", body = IngestResponse),
        (status = 400, description = "Malformed JSON or an invalid field", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 413, description = "Body or batch too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate; see Retry-After", body = ErrorBody),
        (status = 503, description = "Store or queue unavailable; nothing recorded", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn ingest(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    require_json(&headers)?;
    let body = body.map_err(|e| body_error(e, state.config.api.max_body_bytes))?;
    let events = parse_events(&body, state.config.api.max_batch)?;
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();

    if let Err(wait) = state.limiter.check(&tenant.id, tenant.rate_per_second, events.len()) {
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        });
    }

    // Detached from the connection: a client that goes away mid-request
    // must not cancel the work between the commit and the push.
    let task_state = state.clone();
    let tenant_id = tenant.id.clone();
    let outcomes = tokio::spawn(async move {
        let producer = Producer {
            store: &task_state.store,
            queue: task_state.queue.as_ref(),
            rules: &task_state.rules,
            policies: &task_state.config.jobs,
        };
        accept_events(producer, &tenant_id, events).await
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("ingest interrupted: {e}")))??;

    Ok((StatusCode::ACCEPTED, Json(IngestResponse::new(ids, outcomes))))
}

impl IngestResponse {
    /// The answer for the events `ids` (in request order) and their outcomes.
    fn new(ids: Vec<String>, outcomes: Vec<IngestOutcome>) -> Self {
        let results: Vec<EventResult> = ids
            .into_iter()
            .zip(outcomes)
            .map(|(id, outcome)| match outcome {
                IngestOutcome::Accepted { job_ids } => EventResult {
                    id,
                    status: "accepted",
                    job_ids,
                },
                IngestOutcome::Duplicate { job_ids } => EventResult {
                    id,
                    status: "duplicate",
                    job_ids,
                },
            })
            .collect();
        let accepted = results.iter().filter(|r| r.status == "accepted").count();
        Self {
            accepted,
            duplicates: results.len() - accepted,
            results,
        }
    }
}

/// 415 unless the body is declared JSON (`application/json` or `+json`).
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false);
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// 413 for a body over the limit, 400 for one that could not be read.
fn body_error(e: BytesRejection, max_body_bytes: usize) -> ApiError {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!("request body over {max_body_bytes} bytes")),
        _ => ApiError::MalformedJson(e.body_text()),
    }
}

/// Parses and validates the whole request before anything is written: one
/// bad event rejects the batch, with the path of the bad field.
fn parse_events(body: &[u8], max_batch: usize) -> Result<Vec<Event>, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let (items, prefix): (Vec<serde_json::Value>, &str) = match value {
        serde_json::Value::Array(items) => (items, ""),
        serde_json::Value::Object(mut obj) if obj.contains_key("events") => {
            if obj.len() > 1 {
                let extra = obj.keys().find(|k| *k != "events").cloned().unwrap_or_default();
                return Err(ApiError::field(
                    extra,
                    "unknown field in a batch (expected only `events`)",
                ));
            }
            match obj.remove("events") {
                Some(serde_json::Value::Array(items)) => (items, "events"),
                _ => return Err(ApiError::field("events", "must be an array of events")),
            }
        }
        obj @ serde_json::Value::Object(_) => (vec![obj], "-"),
        _ => {
            return Err(ApiError::field(
                "",
                "expected an event object, an array of events, or {\"events\": [...]}",
            ))
        }
    };
    if items.is_empty() {
        return Err(ApiError::field(
            if prefix == "-" { "" } else { prefix },
            "no events sent",
        ));
    }
    if items.len() > max_batch {
        return Err(ApiError::TooLarge(format!(
            "{} events in one request; at most {max_batch} allowed",
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |field: &str| match prefix {
                "-" => field.to_owned(),
                "" => join(&format!("[{i}]"), field),
                p => join(&format!("{p}[{i}]"), field),
            };
            let raw: EventIn = serde_path_to_error::deserialize(item).map_err(|e| {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let reason = e.into_inner().to_string();
                // serde reports a missing field at its parent: point at the field.
                let path = match reason.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
                    Some(name) => join(&path, name),
                    None => path,
                };
                ApiError::field(at(&path), reason)
            })?;
            let event = validate(raw).map_err(|(field, reason)| ApiError::field(at(field), reason))?;
            // Profile events are checked now with the validator the `profile`
            // job uses, so a bad email is a 400 here rather than a dead job.
            if let Some(Err(e)) = kairos_core::profile::parse_profile_event(&event) {
                return Err(ApiError::field(at(&e.field), e.reason));
            }
            Ok(event)
        })
        .collect()
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else if field.is_empty() {
        prefix.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

fn ident(field: &'static str, value: &str) -> Result<(), (&'static str, String)> {
    if value.trim().is_empty() {
        return Err((field, "must not be empty".into()));
    }
    if value.len() > MAX_IDENT_LEN {
        return Err((field, format!("must be at most {MAX_IDENT_LEN} bytes")));
    }
    Ok(())
}

fn validate(raw: EventIn) -> Result<Event, (&'static str, String)> {
    ident("id", &raw.id)?;
    ident("account_id", &raw.account_id)?;
    if let Some(u) = &raw.user_id {
        ident("user_id", u)?;
    }
    if !valid_event_type(&raw.event_type) {
        return Err((
            "type",
            "must be dot-separated words of letters, digits, `_` or `-`, e.g. `comment.created`".into(),
        ));
    }
    let occurred = chrono::DateTime::parse_from_rfc3339(&raw.occurred_at).map_err(|e| {
        (
            "occurred_at",
            format!(
                "`{}` is not an RFC 3339 timestamp like 2026-11-21T09:30:00Z ({e})",
                raw.occurred_at
            ),
        )
    })?;
    Ok(Event {
        id: raw.id,
        event_type: raw.event_type,
        account_id: raw.account_id,
        user_id: raw.user_id,
        occurred_at_ms: occurred.timestamp_millis(),
        data: raw.data.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> (String, String) {
        match parse_events(body.as_bytes(), 3) {
            Err(ApiError::InvalidField { field, reason }) => (field, reason),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    const OK: &str = r#"{"id":"e1","type":"user.login","account_id":"a","occurred_at":"2026-11-21T09:00:00+01:00"}"#;

    #[test]
    fn accepts_single_array_and_batch() {
        assert_eq!(
            parse_events(OK.as_bytes(), 3).unwrap()[0].occurred_at_ms,
            1_795_248_000_000
        );
        assert_eq!(parse_events(format!("[{OK},{OK}]").as_bytes(), 3).unwrap().len(), 2);
        assert_eq!(
            parse_events(format!("{{\"events\":[{OK}]}}").as_bytes(), 3)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn field_errors_carry_their_path() {
        let bad_ts = OK.replace("2026-11-21T09:00:00+01:00", "yesterday");
        assert_eq!(
            err(&format!("{{\"events\":[{OK},{bad_ts}]}}")).0,
            "events[1].occurred_at"
        );
        let (field, reason) = err(&OK.replace("\"account_id\":\"a\",", ""));
        assert_eq!(field, "account_id");
        assert!(reason.contains("account_id"), "{reason}");
        assert_eq!(err(&OK.replace("\"e1\"", "42")).0, "id");
        assert_eq!(err(&OK.replace("user.login", "user login")).0, "type");
        assert_eq!(
            err(&format!("[{OK},{}]", OK.replace("}", ",\"data\":[1]}"))).0,
            "[1].data"
        );
    }

    #[test]
    fn malformed_and_oversized() {
        assert!(matches!(parse_events(b"{nope", 3), Err(ApiError::MalformedJson(_))));
        assert!(matches!(
            parse_events(format!("[{OK},{OK},{OK},{OK}]").as_bytes(), 3),
            Err(ApiError::TooLarge(_))
        ));
    }
}
