//! The event as Kairos stores it and hands it to jobs.

use serde::{Deserialize, Serialize};

/// A validated event. The API turns client JSON into this; jobs receive it
/// (serialized) as their payload, so they need not read it back from the
/// store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Client-supplied id, unique per tenant: the idempotency key.
    pub id: String,
    /// Dotted type such as `comment.created`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The tenant's customer account the event is about.
    pub account_id: String,
    /// The end user within the account, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// When it happened, milliseconds since the Unix epoch (UTC).
    pub occurred_at_ms: i64,
    /// Free-form event data.
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// Longest accepted event type, id or account id.
pub const MAX_IDENT_LEN: usize = 128;

/// Whether `t` is a well-formed event type: dot-separated segments of ASCII
/// letters, digits, `_` and `-`.
pub fn valid_event_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_IDENT_LEN
        && t.split('.')
            .all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}
