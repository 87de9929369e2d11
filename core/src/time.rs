//! Wall-clock helpers. Timestamps are stored as milliseconds since the Unix
//! epoch (UTC) in every backend: portable across SQLite and Postgres and
//! cheap to compare.

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Formats epoch milliseconds as RFC 3339 (UTC) for humans and JSON.
pub fn to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}
