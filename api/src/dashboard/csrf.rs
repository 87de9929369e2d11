//! CSRF protection: every POST form carries the session's token in a
//! `csrf` field, compared in constant time. [`Posted`] is the only way a
//! dashboard handler reads a form, so no action skips the check (the login
//! form, before any session, uses a double-submit cookie instead).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::auth::Role;
use super::session::CurrentUser;
use super::{DashError, DashState};

/// Largest form accepted (bulk actions carry filters, not id lists).
const MAX_FORM_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// Whether `presented` equals `expected`, in time independent of where
/// they differ.
pub fn tokens_match(presented: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// A form POSTed by a logged-in user with the right CSRF token.
pub struct Posted<T> {
    /// Who posted it.
    pub user: CurrentUser,
    form: T,
}

impl<T> Posted<T> {
    /// The form, if the user's role is at least `role` (else 403).
    pub fn require(self, role: Role) -> Result<(CurrentUser, T), DashError> {
        if self.user.role < role {
            return Err(DashError::Forbidden("your role does not allow this action"));
        }
        Ok((self.user, self.form))
    }
}

/// Parses a urlencoded form body.
pub(crate) fn parse_form<T: DeserializeOwned>(body: &[u8]) -> Result<T, DashError> {
    serde_urlencoded::from_bytes(body).map_err(|e| DashError::BadRequest(format!("invalid form: {e}")))
}

impl<T: DeserializeOwned> FromRequest<DashState> for Posted<T> {
    type Rejection = DashError;

    async fn from_request(req: Request, state: &DashState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let user = CurrentUser::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| DashError::BadRequest("form too large or unreadable".into()))?;
        let field: CsrfField = parse_form(&bytes)?;
        if !tokens_match(&field.csrf, &user.csrf) {
            return Err(DashError::Forbidden("missing or invalid CSRF token"));
        }
        let form = parse_form(&bytes)?;
        Ok(Posted { user, form })
    }
}

/// The raw body of a form POST, for the login (which has no session yet).
pub(crate) async fn body_bytes(req: Request) -> Result<Bytes, DashError> {
    axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
        .await
        .map_err(|_| DashError::BadRequest("form too large or unreadable".into()))
}
