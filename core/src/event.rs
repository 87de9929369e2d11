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

/// Longest accepted event type, id or account id, in characters.
pub const MAX_IDENT_LEN: usize = 128;

/// The rule for identifiers (ids, account and user ids) as a regular
/// expression (ECMA-262 and Python `re` alike), for the OpenAPI document:
/// no control character anywhere, and at least one character that is not
/// whitespace. Kept next to [`check_ident`], which enforces the same rule.
pub const IDENT_PATTERN: &str =
    r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";

/// The rule for event types as a regular expression, for the OpenAPI
/// document; [`valid_event_type`] enforces it.
pub const EVENT_TYPE_PATTERN: &str = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$";

/// Why an identifier is refused: a sentence for the client.
///
/// Control characters (NUL above all, which PostgreSQL cannot store in
/// text) are the client's bad data, so they are refused here, the same on
/// every store, rather than failing in the store as if it were down.
pub fn check_ident(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    let chars = value.chars().count();
    if chars > MAX_IDENT_LEN {
        return Err(format!("must be at most {MAX_IDENT_LEN} characters (got {chars})"));
    }
    if let Some((i, c)) = value.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(format!(
            "must not contain control characters (U+{:04X} at character {i})",
            u32::from(c)
        ));
    }
    Ok(())
}

/// Largest payment amount accepted in one event, in cents: 2^53 − 1, the
/// largest integer a JSON number keeps exactly in every client language
/// (and in `data.amount`, a double, after ×100). About 90 trillion currency
/// units: no real payment comes near it, so anything above is bad data.
pub const MAX_AMOUNT_CENTS: i64 = (1 << 53) - 1;

/// The event data fields with a meaning to Kairos: a payment's amount, as
/// `amount_cents` (integer cents) or `amount` (currency units).
pub const AMOUNT_FIELDS: [&str; 2] = ["amount_cents", "amount"];

/// Checks `data.amount_cents` and `data.amount` when present: numbers, the
/// cents integral, both within ±[`MAX_AMOUNT_CENTS`] cents. Returns the
/// field at fault and why. Checked at ingest so an amount the aggregates
/// cannot hold is the client's 400, not a failed job later.
pub fn check_amounts(data: &serde_json::Map<String, serde_json::Value>) -> Result<(), (&'static str, String)> {
    let max = MAX_AMOUNT_CENTS as f64;
    if let Some(v) = data.get("amount_cents") {
        let ok = match v {
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(c), _) => c.abs() <= MAX_AMOUNT_CENTS,
                // JSON Schema counts 1000.0 as an integer; so do we.
                (None, Some(f)) => f.fract() == 0.0 && f.abs() <= max,
                (None, None) => false,
            },
            _ => false,
        };
        if !ok {
            return Err((
                "amount_cents",
                format!(
                    "must be an integer number of cents between -{MAX_AMOUNT_CENTS} and {MAX_AMOUNT_CENTS} (got {v})"
                ),
            ));
        }
    }
    if let Some(v) = data.get("amount") {
        let ok = v
            .as_f64()
            .is_some_and(|a| a.is_finite() && (a * 100.0).round().abs() <= max);
        if !ok {
            return Err((
                "amount",
                format!(
                    "must be a number of currency units between -{0} and {0} (got {v})",
                    MAX_AMOUNT_CENTS as f64 / 100.0
                ),
            ));
        }
    }
    Ok(())
}

/// A payment's amount in cents: `data.amount_cents`, else `data.amount` ×
/// 100 rounded, else 0. Exact for data that passed [`check_amounts`].
pub fn amount_cents(data: &serde_json::Map<String, serde_json::Value>) -> i64 {
    if let Some(c) = data
        .get("amount_cents")
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
    {
        return c;
    }
    data.get("amount")
        .and_then(|v| v.as_f64())
        .map(|a| (a * 100.0).round() as i64)
        .unwrap_or(0)
}

/// Whether `t` is a well-formed event type: dot-separated segments of ASCII
/// letters, digits, `_` and `-`.
pub fn valid_event_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_IDENT_LEN
        && t.split('.')
            .all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_refuse_control_characters_and_blanks() {
        assert!(check_ident("acct_42").is_ok());
        assert!(check_ident(" spaced id ").is_ok());
        assert!(check_ident(&"é".repeat(MAX_IDENT_LEN)).is_ok());
        assert!(check_ident(&"é".repeat(MAX_IDENT_LEN + 1)).is_err());
        assert!(check_ident(" \t").unwrap_err().contains("empty"));
        let nul = check_ident("a\u{0}b").unwrap_err();
        assert!(nul.contains("U+0000"), "{nul}");
        assert!(check_ident("a\u{85}").is_err());
        assert!(check_ident("a\u{7f}").is_err());
    }

    fn data(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn amounts_within_range_pass_and_convert_exactly() {
        use serde_json::json;
        assert_eq!(amount_cents(&data(json!({"amount": 49.5}))), 4950);
        assert_eq!(amount_cents(&data(json!({"amount_cents": 1000.0}))), 1000);
        let max = data(json!({ "amount_cents": MAX_AMOUNT_CENTS }));
        assert!(check_amounts(&max).is_ok());
        assert_eq!(amount_cents(&max), MAX_AMOUNT_CENTS);
        assert!(check_amounts(&data(json!({"amount": -12.34, "other": "x"}))).is_ok());
        for (bad, field) in [
            (json!({"amount": 1e308}), "amount"),
            (json!({"amount": "12"}), "amount"),
            (json!({"amount": null}), "amount"),
            (json!({"amount_cents": i64::MAX}), "amount_cents"),
            (json!({"amount_cents": 12.5}), "amount_cents"),
            (json!({"amount_cents": u64::MAX}), "amount_cents"),
            (json!({ "amount_cents": MAX_AMOUNT_CENTS + 1 }), "amount_cents"),
        ] {
            let (f, reason) = check_amounts(&data(bad.clone())).unwrap_err();
            assert_eq!(f, field, "{bad}: {reason}");
        }
    }
}
