//! The event rules in force at ingest. Admins edit `[[rules]]` (and the
//! `[[nudges.rules]]` that derive rules from event triggers) in the config
//! file; the binary re-reads a changed, valid file and publishes the new
//! rules here, so a rule on a new event type applies to the next request
//! without restarting the API. Each request works with one snapshot: a
//! batch is never matched half against the old rules and half against the
//! new ones.

use std::sync::Arc;

use kairos_core::rules::Rules;
use tokio::sync::watch;

/// A handle on the rules now in force; cheap to clone (clones share it).
#[derive(Debug, Clone)]
pub struct LiveRules {
    rx: watch::Receiver<Arc<Rules>>,
}

impl LiveRules {
    /// Rules that never change (no file to follow: tests, composed configs).
    pub fn fixed(rules: Rules) -> Self {
        // The sender goes away at once; a receiver keeps the last value.
        let (_, rx) = watch::channel(Arc::new(rules));
        Self { rx }
    }

    /// Rules that follow what a config watcher publishes on `rx`.
    pub fn follow(rx: watch::Receiver<Arc<Rules>>) -> Self {
        Self { rx }
    }

    /// The rules now (a snapshot, for one request).
    pub fn current(&self) -> Arc<Rules> {
        self.rx.borrow().clone()
    }
}
