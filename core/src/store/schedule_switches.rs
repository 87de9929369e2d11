//! Schedule switches: an operator's enable / disable of a schedule (a base
//! schedule's name or `name@tenant`), stored rather than written to the
//! config file, so it holds across restarts and for every scheduler
//! replica. A switch wins over the config's `enabled`; every replica reads
//! the switches each round before deciding what is due.

use sqlx::Row;

use super::audit::{record_audit_in, NewAudit};
use super::{Store, StoreError};
use crate::time::now_ms;

/// Audit action of enabling a schedule.
pub const AUDIT_SCHEDULE_ENABLED: &str = "schedule.enabled";
/// Audit action of disabling a schedule.
pub const AUDIT_SCHEDULE_DISABLED: &str = "schedule.disabled";

/// A stored enable / disable of one schedule key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSwitch {
    /// The schedule's key (`name` or `name@tenant`).
    pub key: String,
    /// Whether it fires.
    pub enabled: bool,
    /// When it was set (epoch ms): an enabled schedule starts from here,
    /// so ticks missed while it was off are neither fired nor misfires.
    pub set_at: i64,
    /// Who set it (an audit actor).
    pub set_by: String,
}

impl Store {
    /// Enables or disables schedule `key` for every scheduler replica;
    /// recorded in the audit log by `actor` in the same transaction. The
    /// caller checks the key names a schedule.
    pub async fn switch_schedule(&self, key: &str, enabled: bool, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO schedule_switches (schedule_key, enabled, set_at, set_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (schedule_key) DO UPDATE SET enabled = excluded.enabled, set_at = excluded.set_at, \
             set_by = excluded.set_by",
        )
        .bind(key)
        .bind(i64::from(enabled))
        .bind(now_ms())
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        record_audit_in(
            &mut tx,
            &NewAudit {
                tenant_id: None,
                actor,
                action: if enabled {
                    AUDIT_SCHEDULE_ENABLED
                } else {
                    AUDIT_SCHEDULE_DISABLED
                },
                target: key,
                details: serde_json::json!({}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every stored switch, by key. Cheap: each scheduler round reads it.
    pub async fn schedule_switches(&self) -> Result<Vec<ScheduleSwitch>, StoreError> {
        let rows =
            sqlx::query("SELECT schedule_key, enabled, set_at, set_by FROM schedule_switches ORDER BY schedule_key")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let enabled: i64 = r.try_get("enabled")?;
                Ok(ScheduleSwitch {
                    key: r.try_get("schedule_key")?,
                    enabled: enabled != 0,
                    set_at: r.try_get("set_at")?,
                    set_by: r.try_get("set_by")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Unavailable)
    }
}
