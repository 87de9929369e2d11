//! The cron loop: fires every due tick of every schedule, once, whichever
//! replicas are alive.
//!
//! Each replica computes due ticks on its own; [`Firer::fire`] records a
//! tick and its jobs in one transaction whose first statement is an insert
//! keyed by (schedule, tick), so exactly one replica's fan-out commits and
//! a replica that dies mid-fan-out leaves the tick free for the others.
//! There is no leader to lose.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kairos_core::schedule::Misfire;
use kairos_core::store::Tenant;
use kairos_core::time::now_ms;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::fire::{Firer, Outcome};
use crate::plan::{apply_switches, plan, Planned};
use crate::Settings;

/// Longest pause between looks at the schedules.
const MAX_NAP: Duration = Duration::from_millis(250);
/// How many missed ticks are walked after a downtime before giving up on
/// counting them (every-second schedules after a long outage).
const MAX_WALK: usize = 100_000;

/// The cron loop of one scheduler replica.
pub struct Ticker {
    firer: Firer,
    config: watch::Receiver<Arc<Settings>>,
    /// Last tick handled per schedule key (epoch ms).
    cursors: HashMap<String, i64>,
    /// Tenants, re-read at most every [`TENANTS_TTL`]: the loop runs four
    /// times a second and the tenant list rarely changes.
    tenants: Option<(std::time::Instant, Vec<Tenant>)>,
}

/// How often old tick records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How long the tenant list is reused between rounds.
const TENANTS_TTL: Duration = Duration::from_secs(5);

impl Ticker {
    /// A ticker that reads schedules from `config` (updated on reload).
    pub fn new(firer: Firer, config: watch::Receiver<Arc<Settings>>) -> Self {
        Self {
            firer,
            config,
            cursors: HashMap::new(),
            tenants: None,
        }
    }

    async fn tenants(&mut self) -> Result<Vec<Tenant>, kairos_core::StoreError> {
        match &self.tenants {
            Some((at, list)) if at.elapsed() < TENANTS_TTL => Ok(list.clone()),
            _ => {
                let list = self.firer.store.list_tenants().await?;
                self.tenants = Some((std::time::Instant::now(), list.clone()));
                Ok(list)
            }
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut last_prune: Option<std::time::Instant> = None;
        loop {
            if let Err(e) = self.round().await {
                tracing::error!(error = %e, "scheduler round failed; will retry");
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(std::time::Instant::now());
                self.prune().await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(MAX_NAP) => {}
            }
        }
    }

    /// Deletes tick records older than `scheduler.tick_retention` (each
    /// schedule's latest is kept: restarts resume from it). Safe to run on
    /// every replica at once.
    async fn prune(&self) {
        let retention = self.config.borrow().scheduler.tick_retention;
        let before = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
        match self.firer.store.prune_ticks(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned old schedule ticks"),
            Err(e) => tracing::warn!(error = %e, "could not prune old schedule ticks; will try again"),
        }
    }

    /// One look at every schedule.
    pub async fn round(&mut self) -> Result<(), kairos_core::StoreError> {
        let config = self.config.borrow().clone();
        if config.schedules.is_empty() {
            return Ok(());
        }
        let tenants = self.tenants().await?;
        let mut plans = plan(&config.schedules, &tenants);
        // Read every round (a table of a few rows): a switch flipped on any
        // replica, the dashboard or the CLI holds here within one round.
        apply_switches(&mut plans, &self.firer.store.schedule_switches().await?);
        let now = now_ms();
        for p in &plans {
            if p.enabled {
                self.tick(&config, p, &tenants).await?;
            } else {
                // Off: nothing it would have fired counts as missed later.
                self.cursors.insert(p.key.clone(), now);
            }
        }
        Ok(())
    }

    async fn tick(
        &mut self,
        config: &Settings,
        p: &Planned,
        tenants: &[Tenant],
    ) -> Result<(), kairos_core::StoreError> {
        let now = now_ms();
        let cursor = match self.cursors.get(&p.key) {
            Some(c) => *c,
            None => {
                // A restarted replica resumes after the last recorded tick,
                // so nothing already fired fires again; a new schedule
                // starts from now (no backfill).
                let c = match self.firer.store.last_tick(&p.key).await? {
                    Some(t) => t.tick_at,
                    None => now,
                };
                // Switched on after its last tick: it starts from the
                // switch, so the ticks of the time it was off are not
                // caught up (nor recorded as misfires).
                let c = match &p.switch {
                    Some(s) if s.enabled => c.max(s.set_at.min(now)),
                    _ => c,
                };
                self.cursors.insert(p.key.clone(), c);
                c
            }
        };
        let threshold = i64::try_from(config.scheduler.misfire_threshold.as_millis()).unwrap_or(i64::MAX);
        let mut late = Vec::new();
        let mut on_time = Vec::new();
        let mut t = DateTime::<Utc>::from_timestamp_millis(cursor).unwrap_or_else(Utc::now);
        while let Some(next) = p.cron.next_after(t) {
            let ms = next.timestamp_millis();
            if ms > now {
                break;
            }
            if now - ms > threshold {
                late.push(ms);
                if late.len() > MAX_WALK {
                    late.drain(..late.len() - 1);
                }
            } else {
                on_time.push(ms);
            }
            t = next;
        }
        if let Some(&last_late) = late.last() {
            let outcome = match p.config.misfire {
                Misfire::Skip => Outcome::Skipped,
                Misfire::RunOnce => Outcome::CatchUp,
            };
            tracing::warn!(schedule = %p.key, missed = late.len(), policy = ?p.config.misfire, "ticks missed while no scheduler ran");
            self.firer.fire(config, p, tenants, last_late, outcome).await?;
            self.cursors.insert(p.key.clone(), last_late);
        }
        for ms in on_time {
            self.firer.fire(config, p, tenants, ms, Outcome::Fired).await?;
            self.cursors.insert(p.key.clone(), ms);
        }
        Ok(())
    }
}
