//! The session cookie: a random 256-bit token, HttpOnly and
//! SameSite=Strict (and Secure when `dashboard.secure_cookie`); the store
//! keeps only its SHA-256, with the session's CSRF token and expiry.
//! [`CurrentUser`] resolves it on every request, so every handler that
//! takes it is behind the login and knows the user's tenant scope.

use axum::extract::FromRequestParts;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::auth::Role;
use super::{DashError, DashState};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kairos_session";
/// Name of the cookie that carries the login form's CSRF token.
pub const LOGIN_CSRF_COOKIE: &str = "kairos_login_csrf";

/// A random token (256 bits, hex).
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the store keeps of a session token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The value of cookie `name` in the request, if present.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value for the dashboard's path; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The logged-in user of a request, with the session's CSRF token.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// Login name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// When set, everything the user sees and does is this tenant's.
    pub tenant_id: Option<String>,
    /// The session's CSRF token.
    pub csrf: String,
    /// The session token's hash (for logout).
    pub session_hash: String,
}

impl CurrentUser {
    /// Whether the user may act (retry, discard, run now, pause).
    pub fn can_act(&self) -> bool {
        self.role >= Role::Operator
    }

    /// The audit log's actor for this user.
    pub fn actor(&self) -> String {
        format!("dashboard:{}", self.name)
    }

    /// The tenant a page shows: the user's own when scoped, else the
    /// requested one (`None`: every tenant).
    pub fn scope(&self, requested: Option<String>) -> Option<String> {
        match &self.tenant_id {
            Some(own) => Some(own.clone()),
            None => requested.filter(|t| !t.is_empty()),
        }
    }

    /// Whether a row of `tenant_id` is visible to this user.
    pub fn sees(&self, tenant_id: &str) -> bool {
        self.tenant_id.as_deref().is_none_or(|own| own == tenant_id)
    }
}

impl FromRequestParts<DashState> for CurrentUser {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, state: &DashState) -> Result<Self, Self::Rejection> {
        let token = cookie(parts, SESSION_COOKIE).ok_or(DashError::LoginRequired)?;
        // Tokens are 64 hex digits; anything else cannot match.
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DashError::LoginRequired);
        }
        let hash = token_hash(token);
        let session = state
            .app
            .store
            .dashboard_session(&hash)
            .await?
            .ok_or(DashError::LoginRequired)?;
        let role = session
            .user
            .role
            .parse()
            .map_err(|_| DashError::Forbidden("unknown role"))?;
        Ok(CurrentUser {
            name: session.user.name,
            role,
            tenant_id: session.user.tenant_id,
            csrf: session.csrf,
            session_hash: hash,
        })
    }
}
