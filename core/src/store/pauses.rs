//! Paused job kinds: while a kind is listed in `paused_kinds`, no worker
//! fetches its jobs; they stay queued and nothing is lost. Every worker
//! process reads [`Store::paused_kinds`] every `worker.pause_poll` (one
//! read of a table of a few rows), so a pause takes hold everywhere within
//! that interval plus one fetch. Pausing and resuming are recorded in the
//! audit log in the same transaction.
//!
//! A tenant can be paused too, for one kind or all of its kinds
//! (`paused_tenants`). Queues are per kind, not per tenant, so such a pause
//! lives in the store, not on the queue: a worker that fetches a paused
//! tenant's job hands it back as `pending` without starting it
//! ([`Store::park_jobs`]), and the dispatcher skips `pending` rows of paused
//! tenants ([`Store::claim_pending`]) until the pause is lifted — then it
//! queues them like any job left pending. Other tenants' jobs are never held
//! back, and a paused tenant's backlog costs nothing while it waits.

use std::collections::BTreeSet;

use sqlx::Row;

use super::audit::{record_audit_in, NewAudit};
use super::{chunked_in, Store, StoreError};
use crate::time::now_ms;

/// Audit action of a pause.
pub const AUDIT_PAUSED: &str = "queue.paused";
/// Audit action of a resume.
pub const AUDIT_RESUMED: &str = "queue.resumed";
/// Audit action of a tenant's pause.
pub const AUDIT_TENANT_PAUSED: &str = "tenant.paused";
/// Audit action of a tenant's resume.
pub const AUDIT_TENANT_RESUMED: &str = "tenant.resumed";
/// The `kind` of a pause that covers all of a tenant's kinds.
pub const ALL_KINDS: &str = "*";

/// A paused tenant: one kind of it, or all (`kind` = [`ALL_KINDS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedTenant {
    /// The tenant.
    pub tenant_id: String,
    /// The job kind, or [`ALL_KINDS`].
    pub kind: String,
    /// Paused at (epoch ms).
    pub paused_at: i64,
    /// Who paused it (an audit actor).
    pub paused_by: String,
    /// Why, if given.
    pub reason: Option<String>,
}

/// Everything paused, as a worker needs it: which kinds it must not fetch,
/// and which (tenant, kind) jobs it must hand back unstarted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pauses {
    /// Kinds paused for every tenant.
    pub kinds: BTreeSet<String>,
    /// `(tenant, kind or ALL_KINDS)` pairs.
    pub tenants: BTreeSet<(String, String)>,
}

impl Pauses {
    /// Whether `kind` is paused for every tenant.
    pub fn kind_paused(&self, kind: &str) -> bool {
        self.kinds.contains(kind)
    }

    /// Whether `tenant`'s jobs of `kind` are held back by a tenant pause.
    pub fn tenant_paused(&self, tenant: &str, kind: &str) -> bool {
        !self.tenants.is_empty()
            && (self.tenants.contains(&(tenant.to_owned(), kind.to_owned()))
                || self.tenants.contains(&(tenant.to_owned(), ALL_KINDS.to_owned())))
    }
}

/// A paused job kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedKind {
    /// The job kind.
    pub kind: String,
    /// Paused at (epoch ms).
    pub paused_at: i64,
    /// Who paused it (an audit actor: `cli:<user>`, `dashboard:<user>`).
    pub paused_by: String,
    /// Why, if given.
    pub reason: Option<String>,
}

/// What one pause covers: a kind for every tenant (`paused_kinds`), or one
/// tenant's kind or [`ALL_KINDS`] (`paused_tenants`). Both are set and
/// lifted the same way (`Store::change_pause`); only the table and the audit
/// actions differ.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    Kind(&'a str),
    Tenant { tenant_id: &'a str, kind: &'a str },
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

impl<'a> Scope<'a> {
    /// The insert of the pause (nothing when it is in place already).
    fn insert(self, actor: &'a str, reason: Option<&'a str>) -> Query<'a> {
        let q = match self {
            Scope::Kind(kind) => sqlx::query(
                "INSERT INTO paused_kinds (kind, paused_at, paused_by, reason) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (kind) DO NOTHING",
            )
            .bind(kind),
            Scope::Tenant { tenant_id, kind } => sqlx::query(
                "INSERT INTO paused_tenants (tenant_id, kind, paused_at, paused_by, reason) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, kind) DO NOTHING",
            )
            .bind(tenant_id)
            .bind(kind),
        };
        q.bind(now_ms()).bind(actor).bind(reason)
    }

    /// The delete of the pause.
    fn delete(self) -> Query<'a> {
        match self {
            Scope::Kind(kind) => sqlx::query("DELETE FROM paused_kinds WHERE kind = $1").bind(kind),
            Scope::Tenant { tenant_id, kind } => {
                sqlx::query("DELETE FROM paused_tenants WHERE tenant_id = $1 AND kind = $2")
                    .bind(tenant_id)
                    .bind(kind)
            }
        }
    }

    /// The audit entry of `change`.
    fn audit(self, actor: &'a str, change: Change<'_>) -> NewAudit<'a> {
        let (tenant_id, kind, (paused, resumed)) = match self {
            Scope::Kind(kind) => (None, kind, (AUDIT_PAUSED, AUDIT_RESUMED)),
            Scope::Tenant { tenant_id, kind } => (Some(tenant_id), kind, (AUDIT_TENANT_PAUSED, AUDIT_TENANT_RESUMED)),
        };
        let (action, details) = match change {
            Change::Pause { reason } => (paused, serde_json::json!({ "reason": reason })),
            Change::Resume => (resumed, serde_json::json!({})),
        };
        NewAudit {
            tenant_id,
            actor,
            action,
            target: kind,
            details,
        }
    }
}

/// Setting or lifting a pause.
#[derive(Debug, Clone, Copy)]
enum Change<'a> {
    Pause { reason: Option<&'a str> },
    Resume,
}

impl Store {
    /// Sets or lifts the pause of `scope`, with its audit entry by `actor`
    /// in the same transaction. False (and nothing recorded) when nothing
    /// changed: the pause was in place already, or there was none to lift.
    async fn change_pause(&self, scope: Scope<'_>, change: Change<'_>, actor: &str) -> Result<bool, StoreError> {
        let query = match change {
            Change::Pause { reason } => scope.insert(actor, reason),
            Change::Resume => scope.delete(),
        };
        let mut tx = self.pool.begin().await?;
        if query.execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(false);
        }
        record_audit_in(&mut tx, &scope.audit(actor, change)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Pauses `kind` for every worker; recorded in the audit log as
    /// `queue.paused` by `actor`. Returns false (and records nothing) when
    /// it was already paused. The caller checks `kind` is a known kind.
    pub async fn pause_kind(&self, kind: &str, actor: &str, reason: Option<&str>) -> Result<bool, StoreError> {
        self.change_pause(Scope::Kind(kind), Change::Pause { reason }, actor)
            .await
    }

    /// Resumes `kind`: workers fetch it again within their pause poll.
    /// Recorded as `queue.resumed` by `actor`. Returns false (and records
    /// nothing) when it was not paused.
    pub async fn resume_kind(&self, kind: &str, actor: &str) -> Result<bool, StoreError> {
        self.change_pause(Scope::Kind(kind), Change::Resume, actor).await
    }

    /// The paused kinds, by kind. Cheap: workers call it every
    /// `worker.pause_poll`.
    pub async fn paused_kinds(&self) -> Result<Vec<PausedKind>, StoreError> {
        let rows = sqlx::query("SELECT kind, paused_at, paused_by, reason FROM paused_kinds ORDER BY kind")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PausedKind {
                    kind: r.try_get("kind")?,
                    paused_at: r.try_get("paused_at")?,
                    paused_by: r.try_get("paused_by")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Unavailable)
    }
}

impl Store {
    /// Pauses `tenant_id`'s jobs of `kind` (`None`: all its kinds) for every
    /// worker; recorded as `tenant.paused` by `actor`. Returns false (and
    /// records nothing) when that pause was already in place. The caller
    /// checks the tenant and kind exist.
    pub async fn pause_tenant(
        &self,
        tenant_id: &str,
        kind: Option<&str>,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let kind = kind.unwrap_or(ALL_KINDS);
        self.change_pause(Scope::Tenant { tenant_id, kind }, Change::Pause { reason }, actor)
            .await
    }

    /// Lifts the pause of `tenant_id`'s `kind` (`None`: the all-kinds
    /// pause); its parked jobs are queued by the dispatcher's next round.
    /// Recorded as `tenant.resumed`. Returns false when there was no such pause.
    pub async fn resume_tenant(&self, tenant_id: &str, kind: Option<&str>, actor: &str) -> Result<bool, StoreError> {
        let kind = kind.unwrap_or(ALL_KINDS);
        self.change_pause(Scope::Tenant { tenant_id, kind }, Change::Resume, actor)
            .await
    }

    /// The tenant pauses, by tenant and kind.
    pub async fn paused_tenants(&self) -> Result<Vec<PausedTenant>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, kind, paused_at, paused_by, reason FROM paused_tenants ORDER BY tenant_id, kind",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PausedTenant {
                    tenant_id: r.try_get("tenant_id")?,
                    kind: r.try_get("kind")?,
                    paused_at: r.try_get("paused_at")?,
                    paused_by: r.try_get("paused_by")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Unavailable)
    }

    /// Every pause, kinds and tenants: what a worker polls every
    /// `worker.pause_poll` (two reads of tables of a few rows).
    pub async fn pauses(&self) -> Result<Pauses, StoreError> {
        let kinds = self.paused_kinds().await?.into_iter().map(|p| p.kind).collect();
        let tenants = sqlx::query("SELECT tenant_id, kind FROM paused_tenants")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("tenant_id")?, r.try_get("kind")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::Unavailable)?;
        Ok(Pauses { kinds, tenants })
    }

    /// Hands fetched, unstarted jobs of a paused tenant back to the store:
    /// `queued` or `retrying` rows become `pending` (attempts and history
    /// kept), which the dispatcher queues again once the pause is lifted.
    /// Returns the ids parked; the caller acknowledges those deliveries. A
    /// row in another state (its producer has not marked it queued yet, a
    /// duplicate delivery of a running or finished job) is not touched.
    pub async fn park_jobs(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let template = format!(
            "UPDATE job_runs SET state = 'pending' WHERE state IN ('queued', 'retrying') AND id IN ({}) RETURNING id",
            self.in_lock_order()
        );
        let mut parked = Vec::with_capacity(ids.len());
        for (sql, chunk) in chunked_in(&template, 0, ids) {
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                parked.push(row.try_get("id")?);
            }
        }
        Ok(parked)
    }
}
