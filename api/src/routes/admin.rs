//! Admin endpoints, authenticated by the operator token from the
//! environment (`KAIROS_ADMIN_TOKEN` by default), never by a tenant key.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::Json;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Proof that the request carries the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(expected) = &state.admin_token_hash else {
            return Err(ApiError::Unauthorized(
                "admin API disabled: set the admin token in the environment",
            ));
        };
        let presented = crate::auth::bearer(parts)?;
        // Comparing digests keeps the comparison independent of the token's
        // content and length.
        if Sha256::digest(presented.trim().as_bytes()).as_slice() == expected.as_slice() {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized("invalid admin token"))
        }
    }
}

/// One fired schedule key.
#[derive(Debug, Serialize, ToSchema)]
pub struct FiredKey {
    /// Schedule key (`name` or `name@tenant`).
    pub key: String,
    /// Jobs created.
    pub jobs: usize,
}

/// Result of a manual run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunResponse {
    /// The schedule.
    pub schedule: String,
    /// What fired.
    pub fired: Vec<FiredKey>,
}

/// Fire a schedule now.
#[utoipa::path(
    post,
    path = "/v1/admin/schedules/{name}/run",
    tag = "admin",
    params(("name" = String, Path, description = "Schedule name")),
    responses(
        (status = 200, description = "Fired", body = RunResponse),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
pub async fn run_schedule(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<RunResponse>, ApiError> {
    let firer = kairos_scheduler::Firer {
        store: state.store.clone(),
        queue: state.queue.clone(),
        replica: format!("api-{}", std::process::id()),
    };
    match kairos_scheduler::run_now(&firer, &state.config.scheduling, &name).await {
        Ok(fired) => Ok(Json(RunResponse {
            schedule: name,
            fired: fired.into_iter().map(|(key, jobs)| FiredKey { key, jobs }).collect(),
        })),
        Err(kairos_scheduler::RunError::Unknown(n)) => Err(ApiError::NotFound(format!("no schedule named `{n}`"))),
        Err(kairos_scheduler::RunError::Store(e)) => Err(e.into()),
    }
}
