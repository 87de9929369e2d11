//! Hot reload of `[nudges]`: the kind reads its rules and guards through a
//! [`NudgeRules`] handle, and the binary's config watcher (the one that
//! reloads schedules: file change or SIGHUP, whole file validated first)
//! publishes each valid new `[nudges]` on a watch channel that [`follow`]
//! applies. An invalid file is refused by the watcher with file, line and
//! key, and the rules in force stay.
//!
//! What a reload changes at once, in every worker: templates, channels,
//! audience, caps, quiet hours, the kill switch, dry runs, variants,
//! personalisation, tracking, and the rules the sweep evaluates. What an
//! event *reaches* the kind is decided at ingest by the derived
//! `[[rules]]` (event type and filter), which every API process reloads
//! from the same file (`kairos_api::live_rules`); the kind also re-checks
//! each event against its current rules, so a removed or narrowed rule
//! stops at once even in a worker that reloaded before the API.

use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::NudgesConfig;

/// The `[nudges]` in force; cheap to clone (clones share it).
#[derive(Debug, Clone)]
pub struct NudgeRules {
    current: Arc<RwLock<Arc<NudgesConfig>>>,
}

impl NudgeRules {
    /// A handle holding `config`.
    pub fn new(config: NudgesConfig) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(config))),
        }
    }

    /// The rules now (a snapshot: one job works with one version).
    pub fn current(&self) -> Arc<NudgesConfig> {
        match self.current.read() {
            Ok(g) => g.clone(),
            // A writer never panics while holding the lock (it only swaps
            // an Arc), but a poisoned lock still holds a whole value.
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the rules.
    pub fn replace(&self, config: Arc<NudgesConfig>) {
        match self.current.write() {
            Ok(mut g) => *g = config,
            Err(p) => *p.into_inner() = config,
        }
    }
}

/// Applies every `[nudges]` published on `rx`, until its sender (the
/// watcher, which stops with the process) is gone.
pub async fn follow(rules: NudgeRules, mut rx: watch::Receiver<Arc<NudgesConfig>>) {
    while rx.changed().await.is_ok() {
        let new = rx.borrow_and_update().clone();
        if *new != *rules.current() {
            tracing::info!(rules = new.rules.len(), "nudge rules reloaded");
            rules.replace(new);
        }
    }
}
