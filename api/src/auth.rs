//! Bearer-key authentication: resolves the calling tenant, so every handler
//! that takes [`AuthTenant`] is tenant-scoped by construction.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use kairos_core::store::Tenant;

use crate::error::ApiError;
use crate::AppState;

/// The token of an `Authorization: Bearer <token>` header: the one place
/// both tenant keys and the admin token are read from a request.
pub(crate) fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("missing Authorization: Bearer <token> header"))?;
    // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` is `Bearer`.
    header
        .to_str()
        .ok()
        .and_then(|h| h.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|k| !k.is_empty())
        .ok_or(ApiError::Unauthorized("Authorization header must be `Bearer <token>`"))
}

/// The authenticated tenant of a request.
#[derive(Debug, Clone)]
pub struct AuthTenant(pub Tenant);

impl FromRequestParts<AppState> for AuthTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = bearer(parts)?;
        // Keys are fixed-format; anything else cannot match, skip the lookup.
        if key.len() != 71 || !key.starts_with("kairos_") {
            return Err(ApiError::Unauthorized("invalid API key"));
        }
        match state.store.tenant_by_key(key).await? {
            Some(t) => Ok(AuthTenant(t)),
            None => Err(ApiError::Unauthorized("invalid API key")),
        }
    }
}
