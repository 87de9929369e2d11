//! Fairness between tenants on one kind's queue.
//!
//! Each kind's queue is split into one sub-queue per tenant; a fetch serves
//! the tenants with ready jobs by weighted fair queuing (start-time fair
//! queuing over a virtual clock):
//! - every tenant with work has a virtual time; a fetch serves the lowest
//!   first, and a tenant that takes `n` jobs advances by `n / weight`, so
//!   while several tenants are backlogged each gets a share of the jobs
//!   proportional to its weight;
//! - a tenant that had no work enters at the kind's clock (the virtual time
//!   of the last tenant served), so it is served by the very next fetch —
//!   it neither waits behind another tenant's backlog nor saves up credit
//!   while idle;
//! - a tenant's jobs fetched and not yet acknowledged (leased) count
//!   against its `max_running`, across every worker, because the queue
//!   itself holds the count (Redis: the sub-queue's pending list; SQLite:
//!   its rows under lease), so a dead worker's jobs stop counting when
//!   their lease expires and nothing can leak.
//!
//! The guarantee: a job of a tenant below its limit is handed out by the
//! first fetch of its kind that starts after it was pushed (and finds a
//! free slot) — whatever the other tenants' backlogs. So its wait is its
//! idle wait plus the time until one slot of the kind frees (the shortest
//! remaining run among the jobs in flight) plus one fetch round trip. The
//! Redis backend runs this loop in Lua ([`super::redis`]), the SQLite one
//! in a write transaction ([`super::sqlite`]); both follow [`next`] and [`served`].

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use serde::Deserialize;

use crate::config::KeyError;

/// Highest weight accepted: shares are ratios, beyond this they only skew
/// the per-fetch quanta.
pub const MAX_WEIGHT: u32 = 1000;

/// `[queue.fairness]`: how a kind's queue is shared between tenants.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FairnessConfig {
    /// On (the default): weighted fair queuing between tenants, so one
    /// tenant's backlog does not delay another's jobs. Off: one
    /// first-in first-out queue per kind across tenants, and no
    /// `max_running` (the behaviour before fairness).
    pub enabled: bool,
    /// The weight of a tenant not listed under `tenants`.
    pub weight: NonZeroU32,
    /// The most jobs of one kind a tenant not listed under `tenants` may
    /// have fetched and not yet acknowledged, across all workers; 0: no
    /// limit but the kind's concurrency.
    pub max_running: u32,
    /// Per tenant (by id or name): its weight and limit.
    pub tenants: BTreeMap<String, TenantShare>,
}

/// `[queue.fairness.tenants.TENANT]`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TenantShare {
    /// Relative share while backlogged (default: `queue.fairness.weight`).
    pub weight: Option<NonZeroU32>,
    /// The tenant's limit per kind (default: `queue.fairness.max_running`;
    /// 0: none).
    pub max_running: Option<u32>,
}

impl Default for FairnessConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            weight: NonZeroU32::MIN,
            max_running: 0,
            tenants: BTreeMap::new(),
        }
    }
}

impl FairnessConfig {
    /// Checks the weights' range and the tenant keys; keys are relative to
    /// `[queue]` (`fairness.tenants.acme.weight`).
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.weight.get() > MAX_WEIGHT {
            return Err(("fairness.weight".into(), format!("must be between 1 and {MAX_WEIGHT}")));
        }
        for (tenant, share) in &self.tenants {
            if tenant.trim().is_empty() {
                return Err(("fairness.tenants".into(), "a tenant key must name a tenant".into()));
            }
            if share.weight.is_some_and(|w| w.get() > MAX_WEIGHT) {
                return Err((
                    format!("fairness.tenants.{tenant}.weight"),
                    format!("must be between 1 and {MAX_WEIGHT}"),
                ));
            }
        }
        Ok(())
    }

    /// `tenant`'s weight and limit (0: none).
    pub fn share(&self, tenant: &str) -> (u32, u32) {
        let listed = self.tenants.get(tenant);
        (
            listed.and_then(|s| s.weight).unwrap_or(self.weight).get(),
            listed.and_then(|s| s.max_running).unwrap_or(self.max_running),
        )
    }

    /// Adds, for each tenant listed by name, the same entry under its id
    /// (`names`: name → id), since messages carry ids. Returns the keys
    /// that are neither a known id nor a known name.
    pub fn resolve_names<'a>(&mut self, tenants: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
        let known: Vec<(&str, &str)> = tenants.into_iter().collect();
        let mut unknown = Vec::new();
        let mut by_id = Vec::new();
        for (key, share) in &self.tenants {
            if known.iter().any(|(_, id)| id == key) {
                continue;
            }
            match known.iter().find(|(name, _)| name == key) {
                Some((_, id)) => by_id.push(((*id).to_owned(), *share)),
                None => unknown.push(key.clone()),
            }
        }
        for (id, share) in by_id {
            self.tenants.entry(id).or_insert(share);
        }
        unknown
    }

    /// The sub-queue a tenant's message goes to: the tenant's own, or the
    /// kind's single FIFO (`""`) when fairness is off.
    pub fn sub_queue<'a>(&self, tenant: &'a str) -> &'a str {
        if self.enabled {
            tenant
        } else {
            ""
        }
    }
}

/// One tenant sub-queue as a fetch sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Sub-queue (tenant id; `""` for the FIFO of fairness off).
    pub tenant: String,
    /// Its virtual time, already lifted to the clock.
    pub vtime: f64,
    /// Weight.
    pub weight: u32,
    /// Jobs it may still take in this fetch (limit minus leased).
    pub room: usize,
    /// No ready job was left the last time it was asked.
    pub exhausted: bool,
}

/// How many jobs to ask of the next tenant, and which one: the lowest
/// virtual time among those with room and work, its quantum being its
/// weighted share of the whole fetch (at least 1). `None`: nothing left to
/// ask. The Redis Lua script implements the same rule.
pub fn next(candidates: &[Candidate], max: usize, left: usize) -> Option<(usize, usize)> {
    let wsum: u64 = candidates
        .iter()
        .filter(|c| c.room > 0)
        .map(|c| u64::from(c.weight))
        .sum();
    let (i, best) = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.exhausted && c.room > 0)
        .min_by(|(_, a), (_, b)| a.vtime.total_cmp(&b.vtime))?;
    let quantum = usize::try_from((max as u64 * u64::from(best.weight)).div_ceil(wsum.max(1))).unwrap_or(max);
    Some((i, left.min(best.room).min(quantum.max(1))))
}

/// Records that candidate `i` was asked for `want` jobs and got `got`.
pub fn served(candidates: &mut [Candidate], clock: &mut f64, i: usize, want: usize, got: usize) {
    let c = &mut candidates[i];
    if *clock < c.vtime {
        *clock = c.vtime;
    }
    c.vtime += got as f64 / f64::from(c.weight);
    c.room = c.room.saturating_sub(got);
    if got < want {
        c.exhausted = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(t: &str, vtime: f64, weight: u32) -> Candidate {
        Candidate {
            tenant: t.into(),
            vtime,
            weight,
            room: usize::MAX,
            exhausted: false,
        }
    }

    /// Two backlogged tenants with weights 2 and 1 share fetches 2:1,
    /// whatever the batch size.
    #[test]
    fn weights_share_fetches() {
        for max in [1usize, 3, 10, 128] {
            let mut cs = vec![cand("a", 0.0, 2), cand("b", 0.0, 1)];
            let mut clock = 0.0;
            let mut taken = [0usize; 2];
            for _ in 0..300 {
                let mut left = max;
                while let Some((i, want)) = next(&cs, max, left) {
                    served(&mut cs, &mut clock, i, want, want);
                    taken[i] += want;
                    left -= want;
                    if left == 0 {
                        break;
                    }
                }
            }
            let ratio = taken[0] as f64 / taken[1] as f64;
            assert!((1.8..=2.2).contains(&ratio), "max {max}: {taken:?}");
        }
    }

    /// A newcomer at the clock goes before a backlogged tenant ahead of it.
    #[test]
    fn a_newcomer_is_served_first() {
        let cs = vec![cand("a", 40.0, 1), cand("b", 39.0, 1)];
        assert_eq!(next(&cs, 8, 8), Some((1, 4)));
    }

    #[test]
    fn names_resolve_to_ids() {
        let mut f = FairnessConfig::default();
        f.tenants.insert(
            "acme".into(),
            TenantShare {
                weight: NonZeroU32::new(3),
                max_running: Some(2),
            },
        );
        f.tenants.insert(
            "ghost".into(),
            TenantShare {
                weight: None,
                max_running: None,
            },
        );
        let unknown = f.resolve_names([("acme", "id-1"), ("other", "id-2")]);
        assert_eq!(unknown, vec!["ghost".to_string()]);
        assert_eq!(f.share("id-1"), (3, 2));
        assert_eq!(f.share("id-2"), (1, 0));
    }
}
