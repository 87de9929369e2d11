//! Email tracking of nudges (off unless `[nudges.tracking]` is set, the
//! tenant listed and the rule has `track = true`): `GET /t/o/{token}` (the
//! open pixel: a 1x1 GIF, and a `nudge.opened` event) and `GET
//! /t/c/{token}` (a 302 to the link, and a `nudge.clicked` event). No
//! tenant key — mail clients fetch them — so the token is the credential:
//! HMAC-signed by `kairos_jobs::nudge::tracking::Tracker`, naming its
//! tenant, account, nudge and target. Anything else is a 404, including a
//! valid token for a nudge that is gone (erased). The events go through
//! the one ingest path with ids derived from the nudge, so a second open
//! is a duplicate and the first one counts.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kairos_core::enqueue::{accept_events, Producer};
use kairos_core::time::now_ms;
use kairos_core::Event;
use kairos_jobs::nudge::store;
use kairos_jobs::nudge::tracking::{Claims, PIXEL_GIF};

use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// The claims of a valid token of `kind` whose nudge exists, else 404.
async fn check(state: &AppState, token: &str, kind: &str) -> Result<Claims, ApiError> {
    let not_found = || ApiError::NotFound("no such tracking token".into());
    let claims = state
        .tracker
        .as_ref()
        .and_then(|t| t.verify(token))
        .filter(|c| c.kind == kind)
        .ok_or_else(not_found)?;
    let known = store::tracked(&state.store, &claims.tenant_id, &claims.account_id, &claims.nudge_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "tracking: reading the nudge");
            ApiError::Unavailable("store unavailable".into())
        })?;
    if known {
        Ok(claims)
    } else {
        Err(not_found())
    }
}

/// Records the outcome event (once: its id is derived from the nudge).
async fn record(state: &AppState, claims: &Claims, event_type: &str) -> Result<(), ApiError> {
    let mut data = serde_json::Map::new();
    data.insert("nudge_id".into(), claims.nudge_id.clone().into());
    data.insert("source".into(), "tracking".into());
    let event = Event {
        id: format!("{event_type}:{}", claims.nudge_id),
        event_type: event_type.to_owned(),
        account_id: claims.account_id.clone(),
        // Not the person: an open is not the person being active in the product.
        user_id: None,
        occurred_at_ms: now_ms(),
        data,
    };
    let task_state = state.clone();
    let tenant_id = claims.tenant_id.clone();
    // Detached, like ingest: a mail client that goes away must not cut the work in half.
    tokio::spawn(async move {
        let in_force = task_state.rules.current();
        let producer = Producer {
            store: &task_state.store,
            queue: &task_state.queue,
            rules: &in_force.rules,
            policies: &task_state.config.jobs,
        };
        accept_events(producer, &tenant_id, vec![event]).await
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("ingest interrupted: {e}")))??;
    Ok(())
}

/// The open pixel of a tracked email nudge.
#[utoipa::path(
    get,
    path = "/t/o/{token}",
    tag = "nudges",
    params(("token" = String, Path, description = "The signed token from the email (no tenant key needed)")),
    responses(
        (status = 200, description = "A transparent 1x1 GIF; the nudge's first `nudge.opened` is recorded",
            content_type = "image/gif"),
        (status = 404, description = "Not a valid token, or its nudge is gone", body = ErrorBody),
        (status = 503, description = "Store or queue unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn open(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, ApiError> {
    let claims = check(&state, &token, "o").await?;
    record(&state, &claims, "nudge.opened").await?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store, private")),
        ],
        PIXEL_GIF,
    )
        .into_response())
}

/// A tracked link of an email nudge.
#[utoipa::path(
    get,
    path = "/t/c/{token}",
    tag = "nudges",
    params(("token" = String, Path, description = "The signed token from the email's link (no tenant key needed)")),
    responses(
        (status = 302, description = "To the link's target; the nudge's first `nudge.clicked` is recorded",
            headers(("Location" = String, description = "The target"))),
        (status = 404, description = "Not a valid token, or its nudge is gone", body = ErrorBody),
        (status = 503, description = "Store or queue unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn click(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, ApiError> {
    let claims = check(&state, &token, "c").await?;
    let target = claims
        .target
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
        .ok_or_else(|| ApiError::NotFound("no such tracking token".into()))?;
    record(&state, &claims, "nudge.clicked").await?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, target),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store, private")),
        ],
    )
        .into_response())
}
