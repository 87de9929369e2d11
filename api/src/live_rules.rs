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

/// A handle on a part of the config now in force; cheap to clone (clones
/// share it).
#[derive(Debug, Clone)]
pub struct Live<T> {
    rx: watch::Receiver<Arc<T>>,
}

/// The event rules in force.
pub type LiveRules = Live<Rules>;

impl<T> Live<T> {
    /// A value that never changes (no file to follow: tests, composed configs).
    pub fn fixed(value: T) -> Self {
        // The sender goes away at once; a receiver keeps the last value.
        let (_, rx) = watch::channel(Arc::new(value));
        Self { rx }
    }

    /// The value a config watcher publishes on `rx`.
    pub fn follow(rx: watch::Receiver<Arc<T>>) -> Self {
        Self { rx }
    }

    /// The value now (a snapshot, for one request).
    pub fn current(&self) -> Arc<T> {
        self.rx.borrow().clone()
    }
}
