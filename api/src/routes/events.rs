//! `POST /v1/events`: ingest one event or a batch.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use kairos_core::enqueue::{accept_events, Producer};
use kairos_core::event::{check_amounts, check_ident, valid_event_type, MAX_AMOUNT_CENTS};
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
    /// Client-chosen id, unique per tenant (1-128 characters, no control
    /// characters, not only spaces). Re-sending an id is safe: it is
    /// reported as a duplicate and triggers nothing new.
    // The limits here are literals (utoipa takes no constants); a test checks
    // them against kairos_core::event's rules.
    #[schema(
        example = "evt_01HZX3",
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub id: String,
    /// Dotted event type: dot-separated words of ASCII letters, digits,
    /// `_` or `-`.
    #[serde(rename = "type")]
    #[schema(
        example = "comment.created",
        min_length = 1,
        max_length = 128,
        pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
    )]
    pub event_type: String,
    /// Your customer account the event is about (same rules as `id`).
    #[schema(
        example = "acct_42",
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub account_id: String,
    /// The end user, when known (same rules as `id`).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub user_id: Option<String>,
    /// When it happened, RFC 3339 with offset.
    #[schema(example = "2026-11-21T09:30:00Z", format = DateTime)]
    pub occurred_at: String,
    /// A JSON object (not `null`); see [`EventData`].
    #[serde(default)]
    #[schema(value_type = EventData)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// `data` of an event: any JSON object. Two keys have a meaning and are
/// checked: a payment's `amount_cents` (integer cents) and `amount`
/// (currency units), bounded so that every total stays exact.
pub struct EventData;

impl utoipa::PartialSchema for EventData {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaType, Type};
        let max_cents = MAX_AMOUNT_CENTS as f64;
        let max_units = (MAX_AMOUNT_CENTS / 100) as f64;
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .description(Some(
                "Free-form JSON object. `amount_cents` (integer cents) and `amount` (currency units) are payment amounts, \
                 checked when present.",
            ))
            .property(
                "amount_cents",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .minimum(Some(-max_cents))
                    .maximum(Some(max_cents))
                    .description(Some("Payment amount in cents.")),
            )
            .property(
                "amount",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Number))
                    .minimum(Some(-max_units))
                    .maximum(Some(max_units))
                    .description(Some("Payment amount in currency units (used when `amount_cents` is absent).")),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for EventData {}

/// A batch: `{"events": [...]}`. A bare array or a single event object is
/// accepted too.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// The events, at most the configured batch size (`api.max_batch`,
    /// stated in the served document).
    #[schema(min_items = 1)]
    pub events: Vec<EventIn>,
}

/// What `POST /v1/events` takes: a batch, a bare array of events, or one
/// event. Only for the OpenAPI document (the parser reads raw JSON to name
/// the field at fault).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum IngestBody {
    /// `{"events": [...]}`.
    Batch(EventBatch),
    /// `[...]`.
    Events(Vec<EventIn>),
    /// One event.
    One(EventIn),
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
    request_body(content = IngestBody, description = "A batch `{\"events\": [...]}`, a bare array, or one event object"),
    responses(
        (status = 202, description = "Recorded; jobs triggered", body = IngestResponse),
        (status = 400, description = "Malformed JSON or an invalid field", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `api.body_read_timeout`", body = ErrorBody),
        (status = 413, description = "Body or batch too large", body = ErrorBody),
        (status = 415, description = "Not application/json, or a charset other than UTF-8", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the rate allows the batch"))),
        (status = 503, description = "Store or queue unavailable; nothing recorded", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn ingest(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    request: Request,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    require_json(request.headers())?;
    // Within `api.body_read_timeout` (the router's `body_deadline` layer).
    let body = Bytes::from_request(request, &state)
        .await
        .map_err(|e| body_error(e, state.config.api.max_body_bytes))?;
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
        let in_force = task_state.rules.current();
        let producer = Producer {
            store: &task_state.store,
            queue: &task_state.queue,
            rules: &in_force.rules,
            policies: &task_state.config.jobs,
        };
        accept_events(producer, &tenant_id, events).await
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("ingest interrupted: {e}")))??;

    let response = IngestResponse::new(ids, outcomes);
    kairos_core::metrics::events_ingested(response.accepted as u64, response.duplicates as u64);
    Ok((StatusCode::ACCEPTED, Json(response)))
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

/// 415 unless the body is declared JSON (`application/json` or `+json`)
/// in UTF-8: JSON is UTF-8 (RFC 8259), and a body declared in another
/// charset would be misread, so it is refused rather than guessed at.
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::UnsupportedMediaType(
            "content type must be application/json".into(),
        ));
    };
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if !(mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))) {
        return Err(ApiError::UnsupportedMediaType(
            "content type must be application/json".into(),
        ));
    }
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("charset") {
            let value = value.trim().trim_matches('"');
            if !(value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")) {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "charset `{value}` not supported: JSON bodies must be UTF-8"
                )));
            }
        }
    }
    Ok(())
}

/// 413 for a body over the limit, 400 for one that could not be read.
pub(crate) fn body_error(e: BytesRejection, max_body_bytes: usize) -> ApiError {
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
                    key_name(&extra),
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
                // serde reports a missing or unknown field at its parent:
                // point at the field itself.
                let named = reason
                    .strip_prefix("missing field `")
                    .or_else(|| reason.strip_prefix("unknown field `"))
                    .and_then(|r| r.split('`').next());
                let path = match named {
                    Some(name) => join(&path, key_name(name)),
                    None => path,
                };
                ApiError::field(at(&path), reason)
            })?;
            let event = validate(raw).map_err(|(field, reason)| ApiError::field(at(&field), reason))?;
            // Profile events are checked now with the validator the `profile`
            // job uses, so a bad email is a 400 here rather than a dead job.
            if let Some(Err(e)) = kairos_core::profile::parse_profile_event(&event) {
                return Err(ApiError::field(at(&e.field), e.reason));
            }
            Ok(event)
        })
        .collect()
}

/// A key as a field path; the empty key is shown as `""` so that an error
/// always names something.
fn key_name(key: &str) -> &str {
    if key.is_empty() {
        "\"\""
    } else {
        key
    }
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

fn ident(field: &'static str, value: &str) -> Result<(), (String, String)> {
    check_ident(value).map_err(|reason| (field.to_owned(), reason))
}

fn validate(raw: EventIn) -> Result<Event, (String, String)> {
    ident("id", &raw.id)?;
    ident("account_id", &raw.account_id)?;
    if let Some(u) = &raw.user_id {
        ident("user_id", u)?;
    }
    check_amounts(&raw.data).map_err(|(field, reason)| (format!("data.{field}"), reason))?;
    if !valid_event_type(&raw.event_type) {
        return Err((
            "type".into(),
            "must be dot-separated words of letters, digits, `_` or `-`, at most 128 characters, e.g. `comment.created`".into(),
        ));
    }
    let occurred = chrono::DateTime::parse_from_rfc3339(&raw.occurred_at).map_err(|e| {
        (
            "occurred_at".into(),
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
        data: raw.data,
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
    fn data_must_be_an_object_not_null() {
        let (field, _) = err(&OK.replace("}", ",\"data\":null}"));
        assert_eq!(field, "data");
        assert_eq!(err(&OK.replace("\"a\"", "\"a\\u0000\"")).0, "account_id");
        assert_eq!(err(&OK.replace("}", ",\"data\":{\"amount\":1e308}}")).0, "data.amount");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Keys an event has, so generated objects get past the first field
        /// more often.
        const EVENT_KEYS: &[&str] = &[
            "id",
            "type",
            "account_id",
            "user_id",
            "occurred_at",
            "data",
            "events",
            "amount",
            "amount_cents",
        ];
        /// A few values an event has, as leaf strings.
        const EVENT_VALUES: &[&str] = &["2026-11-21T09:00:00Z", "payment.succeeded"];

        fn json() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(serde_json::Value::from),
                ".{0,12}".prop_map(serde_json::Value::from),
                prop_oneof![prop::sample::select(EVENT_KEYS), prop::sample::select(EVENT_VALUES)]
                    .prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                let key = prop_oneof![prop::sample::select(EVENT_KEYS).prop_map(String::from), ".{0,6}",];
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                    prop::collection::btree_map(key, inner, 0..7)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn ident() -> impl Strategy<Value = String> {
            "[^\\p{Cc}]{0,20}[^\\p{Cc}\\s][^\\p{Cc}]{0,20}"
        }

        fn valid_event() -> impl Strategy<Value = (serde_json::Value, i64)> {
            (
                ident(),
                "[a-z0-9_-]{1,10}(\\.[A-Za-z0-9_-]{1,10}){0,3}",
                ident(),
                proptest::option::of(ident()),
                // Years 1970 to 9999, whole milliseconds.
                0i64..253_402_300_799_999,
                -(kairos_core::event::MAX_AMOUNT_CENTS)..=kairos_core::event::MAX_AMOUNT_CENTS,
                ".{0,16}",
            )
                .prop_map(|(id, t, account, user, ms, cents, note)| {
                    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
                    let mut v = serde_json::json!({
                        "id": id, "type": t, "account_id": account,
                        "occurred_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "data": {"amount_cents": cents, "note": note},
                    });
                    if let Some(u) = user {
                        v["user_id"] = u.into();
                    }
                    (v, ms)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Any bytes: an answer, never a panic.
            #[test]
            fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
                let _ = parse_events(&body, 10);
            }

            /// Any JSON object or non-empty array: accepted, too large, or a
            /// 400 that names a field.
            #[test]
            fn errors_in_json_always_name_a_field(value in json()) {
                let structured = match &value {
                    serde_json::Value::Object(_) => true,
                    serde_json::Value::Array(a) => !a.is_empty(),
                    _ => false,
                };
                let body = serde_json::to_vec(&value).unwrap();
                match parse_events(&body, 10) {
                    Ok(events) => prop_assert!(!events.is_empty()),
                    Err(ApiError::InvalidField { field, reason }) => {
                        prop_assert!(!reason.is_empty());
                        if structured {
                            prop_assert!(!field.is_empty(), "no field for {} ({})", value, reason);
                        }
                    }
                    Err(ApiError::TooLarge(_)) => {}
                    Err(other) => prop_assert!(false, "unexpected {:?} for {}", other, value),
                }
            }

            /// Valid events, in any of the three shapes, come back as sent.
            #[test]
            fn valid_events_round_trip(events in prop::collection::vec(valid_event(), 1..5), shape in 0..3u8) {
                let values: Vec<_> = events.iter().map(|(v, _)| v.clone()).collect();
                let body = match shape {
                    0 => serde_json::json!({ "events": values }),
                    1 => serde_json::Value::from(values.clone()),
                    _ => values[0].clone(),
                };
                let parsed = parse_events(&serde_json::to_vec(&body).unwrap(), 10)
                    .map_err(|e| TestCaseError::fail(format!("{e:?} for {body}")))?;
                let sent = if shape == 2 { &events[..1] } else { &events[..] };
                prop_assert_eq!(parsed.len(), sent.len());
                for (e, (v, ms)) in parsed.iter().zip(sent) {
                    prop_assert_eq!(&e.id, v["id"].as_str().unwrap());
                    prop_assert_eq!(&e.event_type, v["type"].as_str().unwrap());
                    prop_assert_eq!(&e.account_id, v["account_id"].as_str().unwrap());
                    prop_assert_eq!(e.user_id.as_deref(), v["user_id"].as_str());
                    prop_assert_eq!(e.occurred_at_ms, *ms);
                    prop_assert_eq!(&serde_json::Value::Object(e.data.clone()), &v["data"]);
                    prop_assert_eq!(
                        kairos_core::event::amount_cents(&e.data),
                        v["data"]["amount_cents"].as_i64().unwrap()
                    );
                }
            }
        }
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
