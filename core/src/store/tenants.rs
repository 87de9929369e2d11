//! Tenants and their API keys.
//!
//! Keys are 32 random bytes (256 bits) shown once at creation; only their
//! SHA-256 is stored. A slow password hash buys nothing for keys of that
//! entropy and would cost every request.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, StoreError};
use crate::time::now_ms;

/// A customer of Kairos whose data is isolated from every other's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Stable id (UUID).
    pub id: String,
    /// Unique human name.
    pub name: String,
    /// Events per second allowed for this tenant; `None` = config default.
    pub rate_per_second: Option<u32>,
    /// Creation time, epoch ms.
    pub created_at: i64,
}

/// A freshly issued key: the only time its secret is available.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// The tenant it authenticates.
    pub tenant: Tenant,
    /// The secret, `kairos_` followed by 64 hex digits.
    pub secret: String,
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("kairos_{}", hex::encode(bytes))
}

/// SHA-256 of a key, as stored.
pub(crate) fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn tenant_from_row(row: &sqlx::any::AnyRow) -> Result<Tenant, sqlx::Error> {
    let rate: Option<i64> = row.try_get("rate_per_second")?;
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        rate_per_second: rate.and_then(|r| u32::try_from(r).ok()),
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Creates a tenant and its first key.
    pub async fn create_tenant(&self, name: &str, rate_per_second: Option<u32>) -> Result<ApiKey, StoreError> {
        if name.trim().is_empty() || name.len() > 100 {
            return Err(StoreError::Conflict("tenant name must be 1-100 characters".into()));
        }
        let tenant = Tenant {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            rate_per_second,
            created_at: now_ms(),
        };
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, name, rate_per_second, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&tenant.id)
        .bind(&tenant.name)
        .bind(rate_per_second.map(i64::from))
        .bind(tenant.created_at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("a tenant named `{name}` already exists")));
        }
        let secret = new_secret();
        insert_key(&mut tx, &tenant.id, &secret).await?;
        tx.commit().await?;
        Ok(ApiKey { tenant, secret })
    }

    /// Every tenant, by name.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT id, name, rate_per_second, created_at FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(tenant_from_row).collect::<Result<_, _>>()?)
    }

    /// A tenant by name or id.
    pub async fn find_tenant(&self, name_or_id: &str) -> Result<Tenant, StoreError> {
        let row = sqlx::query("SELECT id, name, rate_per_second, created_at FROM tenants WHERE name = $1 OR id = $1")
            .bind(name_or_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("tenant `{name_or_id}`")))?;
        Ok(tenant_from_row(&row)?)
    }

    /// Revokes every live key of the tenant and issues a new one.
    pub async fn rotate_key(&self, name_or_id: &str) -> Result<ApiKey, StoreError> {
        let tenant = self.find_tenant(name_or_id).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(&tenant.id)
            .execute(&mut *tx)
            .await?;
        let secret = new_secret();
        insert_key(&mut tx, &tenant.id, &secret).await?;
        tx.commit().await?;
        Ok(ApiKey { tenant, secret })
    }

    /// The tenant a presented key belongs to, if it is live.
    pub async fn tenant_by_key(&self, secret: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query(
            "SELECT t.id, t.name, t.rate_per_second, t.created_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(hash_key(secret))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(tenant_from_row).transpose()?)
    }
}

async fn insert_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    secret: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO api_keys (key_hash, tenant_id, prefix, created_at) VALUES ($1, $2, $3, $4)")
        .bind(hash_key(secret))
        .bind(tenant_id)
        .bind(&secret[..14])
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
