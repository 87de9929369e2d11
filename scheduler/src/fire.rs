//! Firing one tick of a planned schedule: build its jobs, record the tick
//! and the jobs in one transaction (the exactly-once point), then queue them.

use std::sync::Arc;
use std::time::Duration;

use kairos_core::enqueue::{enqueue_recorded, NewJob};
use kairos_core::schedule::FanOut;
use kairos_core::store::Tenant;
use kairos_core::{Queue, Store, StoreError};
use serde_json::{json, Value};

use crate::plan::{Planned, Targets};
use crate::Settings;

/// Tenant id recorded on jobs of schedules without fan-out.
pub const SYSTEM_TENANT: &str = "_system";

/// Namespace of deterministic job ids for schedule ticks.
const JOB_NS: uuid::Uuid = uuid::Uuid::from_u128(0x6b61_6972_6f73_2d73_6368_6564_756c_6572);

/// How a tick is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// On time.
    Fired,
    /// The one catch-up of `misfire = "run_once"`.
    CatchUp,
    /// Missed while down, `misfire = "skip"`: recorded, no jobs.
    Skipped,
    /// Fired by hand (`kairos schedules run`, admin API).
    Manual,
}

impl Outcome {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Fired => "fired",
            Outcome::CatchUp => "catch_up",
            Outcome::Skipped => "skipped",
            Outcome::Manual => "manual",
        }
    }
}

/// Everything firing needs.
#[derive(Clone)]
pub struct Firer {
    /// The store.
    pub store: Store,
    /// The queue.
    pub queue: Arc<dyn Queue>,
    /// This replica's id, recorded on the ticks it fires.
    pub replica: String,
}

impl Firer {
    /// Fires `tick_ms` of `plan`. Returns the number of jobs created, or
    /// `None` when the tick had already been recorded (by anyone).
    pub async fn fire(
        &self,
        config: &Settings,
        plan: &Planned,
        tenants: &[Tenant],
        tick_ms: i64,
        outcome: Outcome,
    ) -> Result<Option<usize>, StoreError> {
        let jobs = if outcome == Outcome::Skipped {
            Vec::new()
        } else {
            self.jobs(config, plan, tenants, tick_ms).await?
        };
        if !self
            .store
            .record_tick(&plan.key, tick_ms, outcome.as_str(), &self.replica, &jobs)
            .await?
        {
            return Ok(None);
        }
        // Counted by the replica whose record won, so once per tick.
        kairos_core::metrics::schedule_tick(&plan.key, outcome.as_str());
        if outcome != Outcome::Fired {
            kairos_core::metrics::schedule_misfire(&plan.key);
        }
        if !jobs.is_empty() {
            // Recorded is what counts: if queueing fails the jobs stay
            // pending and the dispatcher (any replica) queues them.
            if let Err(e) = enqueue_recorded(&self.store, self.queue.as_ref(), &jobs).await {
                tracing::error!(schedule = %plan.key, error = %e, "queue unavailable; the dispatcher will queue this tick's jobs")
            }
        }
        tracing::info!(schedule = %plan.key, tick = %kairos_core::time::to_rfc3339(tick_ms), outcome = outcome.as_str(), jobs = jobs.len(), "schedule tick");
        Ok(Some(jobs.len()))
    }

    async fn jobs(
        &self,
        config: &Settings,
        plan: &Planned,
        tenants: &[Tenant],
        tick_ms: i64,
    ) -> Result<Vec<NewJob>, StoreError> {
        let s = &plan.config;
        let max_attempts = config.jobs.get(&s.job).max_attempts;
        let tick = kairos_core::time::to_rfc3339(tick_ms);
        let base = |extra: Value| -> String {
            let mut payload = s.payload.clone();
            payload.insert("schedule".into(), json!(s.name));
            payload.insert("tick".into(), json!(tick));
            if let Value::Object(extra) = extra {
                payload.extend(extra);
            }
            Value::Object(payload).to_string()
        };
        let job = |tenant_id: &str, discriminator: &str, payload: String| {
            let id = uuid::Uuid::new_v5(
                &JOB_NS,
                format!("{}|{tick_ms}|{tenant_id}|{discriminator}", plan.key).as_bytes(),
            );
            NewJob {
                run_after: jitter(s.jitter, &id).map(|d| tick_ms + d),
                id: id.to_string(),
                tenant_id: tenant_id.to_owned(),
                kind: s.job.clone(),
                event_id: None,
                payload,
                max_attempts,
            }
        };
        let targets: Vec<&Tenant> = match &plan.targets {
            Targets::System => return Ok(vec![job(SYSTEM_TENANT, "", base(json!({})))]),
            Targets::Tenant(t) => vec![t],
            Targets::AllTenantsExcept(skip) => tenants.iter().filter(|t| !skip.contains(&t.name)).collect(),
        };
        let mut jobs = Vec::new();
        for t in targets {
            match s.fan_out {
                FanOut::PerAccount => {
                    let accounts = self.store.account_ids(&t.id).await?;
                    for (i, chunk) in accounts.chunks(s.chunk_size).enumerate() {
                        jobs.push(job(&t.id, &i.to_string(), base(json!({ "account_ids": chunk }))));
                    }
                }
                _ => jobs.push(job(&t.id, "", base(json!({})))),
            }
        }
        Ok(jobs)
    }
}

/// A delay in [0, max) derived from the job id: stable if the tick is
/// fired again, spread across jobs.
fn jitter(max: Duration, id: &uuid::Uuid) -> Option<i64> {
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if max_ms == 0 {
        return None;
    }
    let h = id.as_u64_pair().0;
    i64::try_from(h % max_ms).ok()
}
