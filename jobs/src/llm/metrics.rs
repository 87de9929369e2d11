//! Counters of LLM use: calls by outcome, retries, tokens and template
//! fallbacks. Each [`super::Llm`] (and its clones) keeps one set; every
//! call also emits a `tracing` event (target `kairos::llm`, field
//! `event = "llm.call"` or `"llm.fallback"`). A metrics exporter reads
//! [`LlmCounters::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

use super::client::{LlmError, Usage};

/// Live counters (relaxed atomics: totals, not a consistent cut).
#[derive(Debug, Default)]
pub struct LlmCounters {
    succeeded: AtomicU64,
    unavailable: AtomicU64,
    over_quota: AtomicU64,
    invalid: AtomicU64,
    rejected: AtomicU64,
    not_configured: AtomicU64,
    retries: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    fallbacks: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LlmCountersSnapshot {
    /// Calls that returned text.
    pub succeeded: u64,
    /// Calls that ended [`LlmError::Unavailable`].
    pub unavailable: u64,
    /// Calls that ended [`LlmError::OverQuota`].
    pub over_quota: u64,
    /// Calls that ended [`LlmError::Invalid`] (including JSON that did not fit).
    pub invalid: u64,
    /// Calls that ended [`LlmError::Rejected`].
    pub rejected: u64,
    /// Calls made without an LLM configured.
    pub not_configured: u64,
    /// HTTP attempts repeated after a retryable failure.
    pub retries: u64,
    /// Prompt tokens the server reported (successful and invalid replies).
    pub prompt_tokens: u64,
    /// Completion tokens the server reported (successful and invalid replies).
    pub completion_tokens: u64,
    /// Texts replaced by a template ([`super::Llm::record_fallback`]).
    pub fallbacks: u64,
}

impl LlmCountersSnapshot {
    /// Calls of every outcome.
    pub fn calls(&self) -> u64 {
        self.succeeded + self.unavailable + self.over_quota + self.invalid + self.rejected + self.not_configured
    }
}

impl LlmCounters {
    /// A consistent-enough copy for export.
    pub fn snapshot(&self) -> LlmCountersSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LlmCountersSnapshot {
            succeeded: g(&self.succeeded),
            unavailable: g(&self.unavailable),
            over_quota: g(&self.over_quota),
            invalid: g(&self.invalid),
            rejected: g(&self.rejected),
            not_configured: g(&self.not_configured),
            retries: g(&self.retries),
            prompt_tokens: g(&self.prompt_tokens),
            completion_tokens: g(&self.completion_tokens),
            fallbacks: g(&self.fallbacks),
        }
    }

    fn tokens(&self, usage: Usage) {
        self.prompt_tokens
            .fetch_add(u64::from(usage.prompt_tokens), Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(u64::from(usage.completion_tokens), Ordering::Relaxed);
    }

    pub(super) fn succeeded(&self, usage: Usage) {
        self.succeeded.fetch_add(1, Ordering::Relaxed);
        self.tokens(usage);
    }

    pub(super) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn failed(&self, e: &LlmError) {
        let counter = match e {
            LlmError::NotConfigured => &self.not_configured,
            LlmError::Unavailable { .. } => &self.unavailable,
            LlmError::OverQuota { .. } => &self.over_quota,
            LlmError::Invalid { .. } => &self.invalid,
            LlmError::Rejected { .. } => &self.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.tokens(e.usage());
    }
}
