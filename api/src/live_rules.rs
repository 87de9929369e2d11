//! The event rules in force at ingest. Admins edit `[[rules]]` (and the
//! `[[nudges.rules]]` that derive rules from event triggers) in the config
//! file; the binary re-reads a changed, valid file and publishes the new
//! rules here, so a rule on a new event type applies to the next request
//! without restarting the API. Each request works with one snapshot: a
//! batch is never matched half against the old rules and half against the
//! new ones. The dashboard follows the nudge rules sentiment alerts
//! trigger the same way (whether "intervene → nudge" is offered).

use std::sync::Arc;

use kairos_core::rules::Rules;
use tokio::sync::watch;

/// What the API follows from the config file: one snapshot, from one
/// watcher, so the two never come from different versions of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct InForce {
    /// The event rules (`[[rules]]` and those nudge triggers derive).
    pub rules: Rules,
    /// Names of the nudge rules sentiment alerts trigger: what the
    /// dashboard's "intervene → nudge" would plan (none: not offered).
    pub alert_nudge_rules: Vec<String>,
}

/// A handle on what is in force now; cheap to clone (clones share it).
#[derive(Debug, Clone)]
pub struct LiveRules {
    rx: watch::Receiver<Arc<InForce>>,
}

impl LiveRules {
    /// Rules that never change (no file to follow: tests, composed configs).
    pub fn fixed(in_force: InForce) -> Self {
        // The sender goes away at once; a receiver keeps the last value.
        let (_, rx) = watch::channel(Arc::new(in_force));
        Self { rx }
    }

    /// Rules that follow what a config watcher publishes on `rx`.
    pub fn follow(rx: watch::Receiver<Arc<InForce>>) -> Self {
        Self { rx }
    }

    /// What is in force now (a snapshot, for one request).
    pub fn current(&self) -> Arc<InForce> {
        self.rx.borrow().clone()
    }
}
