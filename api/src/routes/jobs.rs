//! `GET /v1/jobs/{id}`: where a job stands, for the tenant that owns it.

use axum::extract::{Path, State};
use axum::Json;
use kairos_core::store::JobRun;
use kairos_core::time::to_rfc3339;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthTenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// A job run as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// Job run id.
    pub id: String,
    /// Job kind.
    pub kind: String,
    /// `pending`, `queued`, `running`, `retrying`, `succeeded` or `dead`.
    pub state: String,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The event that triggered it.
    pub event_id: Option<String>,
    /// RFC 3339 timestamps.
    pub created_at: String,
    /// When it was put on a queue.
    pub queued_at: Option<String>,
    /// When its last attempt started.
    pub started_at: Option<String>,
    /// When it finished (succeeded or dead).
    pub finished_at: Option<String>,
    /// Milliseconds from creation to the start of the last attempt.
    pub wait_ms: Option<i64>,
    /// Milliseconds the last (finished) attempt ran.
    pub run_ms: Option<i64>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Where the result is stored.
    pub result_ref: Option<String>,
}

impl From<JobRun> for JobView {
    fn from(j: JobRun) -> Self {
        Self {
            wait_ms: j.started_at.map(|s| s - j.created_at),
            run_ms: j.started_at.zip(j.finished_at).map(|(s, f)| f - s),
            id: j.id,
            kind: j.kind,
            state: j.state.to_string(),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            event_id: j.event_id,
            created_at: to_rfc3339(j.created_at),
            queued_at: j.queued_at.map(to_rfc3339),
            started_at: j.started_at.map(to_rfc3339),
            finished_at: j.finished_at.map(to_rfc3339),
            last_error: j.last_error,
            result_ref: j.result_ref,
        }
    }
}

/// One job of the calling tenant.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "Job run id", min_length = 1, max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 400, description = "An id no job can have (control characters, too long)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 404, description = "No such job for this tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn get_job(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    ApiError::check_ident("id", &id)?;
    state
        .store
        .job(Some(&tenant.id), &id)
        .await?
        .map(|j| Json(j.into()))
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}
