//! API errors: every failure a client can cause becomes a status code and a
//! JSON body naming the field and the reason — never a 500 or a panic.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// `Retry-After` of a 503: long enough for a pool to reconnect or a
/// failover to finish, short enough that a blip costs clients little.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `invalid_field`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Path of the offending field, e.g. `events[3].occurred_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 400: a field is missing, of the wrong type, or invalid.
    #[error("{field}: {reason}")]
    InvalidField {
        /// Field path.
        field: String,
        /// Why.
        reason: String,
    },
    /// 401: no key, or a key that is unknown or revoked.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 413: body or batch too large.
    #[error("{0}")]
    TooLarge(String),
    /// 408: the request body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// 415: not `application/json`, or not UTF-8.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: the tenant is over its rate; retry after the given seconds.
    #[error("rate limit exceeded; retry in {retry_after_secs}s")]
    RateLimited {
        /// Seconds until enough capacity is back.
        retry_after_secs: u64,
    },
    /// 503: the store or the queue cannot be reached; nothing was recorded.
    #[error("{0}; nothing was recorded, retry later")]
    Unavailable(String),
}

impl ApiError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }

    /// 400 unless `value` (a path or query parameter) follows the
    /// identifier rules of events: a NUL or an over-long id is the client's
    /// error, never a store failure reported as 503.
    pub fn check_ident(field: &str, value: &str) -> Result<(), Self> {
        kairos_core::event::check_ident(value).map_err(|reason| ApiError::field(field, reason))
    }

    /// A field error.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<kairos_core::StoreError> for ApiError {
    fn from(e: kairos_core::StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::Unavailable("store unavailable".into())
    }
}

impl From<kairos_core::enqueue::EnqueueError> for ApiError {
    fn from(e: kairos_core::enqueue::EnqueueError) -> Self {
        use kairos_core::enqueue::EnqueueError;
        match e {
            EnqueueError::Store(e) => e.into(),
            EnqueueError::Queue(e) => {
                tracing::error!(error = %e, "queue error");
                ApiError::Unavailable("queue unavailable".into())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        let field = match &self {
            ApiError::InvalidField { field, .. } => Some(field.clone()),
            _ => None,
        };
        let message = match &self {
            ApiError::InvalidField { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        let mut resp = (status, Json(ErrorBody { code, message, field })).into_response();
        match &self {
            ApiError::RateLimited { retry_after_secs } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            ApiError::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS));
            }
            ApiError::RequestTimeout(_) => {
                // The rest of the body may still be on its way: do not read it.
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::Unauthorized(_) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}

/// Gives every error response a JSON [`ErrorBody`]: the ones axum and hyper
/// make themselves (405, a path or query that does not parse, 413 from the
/// body limit) come with an empty or plain-text body otherwise. Headers
/// (`Allow` on a 405) are kept.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // These bodies are short sentences; a longer one is cut, not awaited.
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "client_error",
    };
    let body = serde_json::to_vec(&ErrorBody {
        code,
        message,
        field: None,
    })
    .unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(body))
}
