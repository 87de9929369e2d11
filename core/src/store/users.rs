//! Dashboard users and their sessions. The store keeps what it is given:
//! password hashing (argon2id) and token generation happen in the API
//! crate; a session is found by the SHA-256 of its cookie token, so a
//! leaked table does not leak live sessions.

use sqlx::Row;

use super::{Store, StoreError};
use crate::time::now_ms;

/// A dashboard user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardUser {
    /// Login name (unique).
    pub name: String,
    /// PHC string of the password hash.
    pub password_hash: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// When set, the user sees only this tenant's data.
    pub tenant_id: Option<String>,
    /// Created at (epoch ms).
    pub created_at: i64,
}

/// A live session with its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSession {
    /// The user it belongs to.
    pub user: DashboardUser,
    /// The session's CSRF token (every POST must carry it).
    pub csrf: String,
    /// Expires at (epoch ms).
    pub expires_at: i64,
}

fn user_from_row(r: &sqlx::any::AnyRow) -> Result<DashboardUser, sqlx::Error> {
    Ok(DashboardUser {
        name: r.try_get("name")?,
        password_hash: r.try_get("password_hash")?,
        role: r.try_get("role")?,
        tenant_id: r.try_get("tenant_id")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// Creates a user; a taken name is a [`StoreError::Conflict`].
    pub async fn create_dashboard_user(
        &self,
        name: &str,
        password_hash: &str,
        role: &str,
        tenant_id: Option<&str>,
    ) -> Result<DashboardUser, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO dashboard_users (name, password_hash, role, tenant_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(password_hash)
        .bind(role)
        .bind(tenant_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("a dashboard user named `{name}` exists")));
        }
        Ok(DashboardUser {
            name: name.into(),
            password_hash: password_hash.into(),
            role: role.into(),
            tenant_id: tenant_id.map(str::to_owned),
            created_at: now,
        })
    }

    /// The user named `name`, if any.
    pub async fn dashboard_user(&self, name: &str) -> Result<Option<DashboardUser>, StoreError> {
        let row =
            sqlx::query("SELECT name, password_hash, role, tenant_id, created_at FROM dashboard_users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    /// Stores a session (by the hash of its token) until `expires_at`, and
    /// drops expired sessions on the way (cheap: indexed by expiry).
    pub async fn create_dashboard_session(
        &self,
        token_hash: &str,
        user: &str,
        csrf: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (token_hash, user_name, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user)
        .bind(csrf)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The unexpired session whose token hashes to `token_hash`, with its user.
    pub async fn dashboard_session(&self, token_hash: &str) -> Result<Option<DashboardSession>, StoreError> {
        let row = sqlx::query(
            "SELECT u.name, u.password_hash, u.role, u.tenant_id, u.created_at, s.csrf, s.expires_at \
             FROM dashboard_sessions s JOIN dashboard_users u ON u.name = s.user_name \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(DashboardSession {
            user: user_from_row(&r)?,
            csrf: r.try_get("csrf")?,
            expires_at: r.try_get("expires_at")?,
        }))
    }

    /// Ends a session (logout).
    pub async fn delete_dashboard_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
