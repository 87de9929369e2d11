//! The LLM client every job kind shares: `[llm]` config ([`LlmConfig`]),
//! chat completions against any OpenAI-compatible server ([`Llm`]), the
//! account's quota shared by all workers ([`LlmLimiter`], on
//! `kairos_core::token_bucket`), the grounding check of numbers
//! ([`grounding::ungrounded_numbers`]) and use counters ([`LlmCounters`]).
//!
//! Nothing here knows a job kind or a prompt: callers write their prompts,
//! check the text against their facts, and fall back to their own template
//! on any [`LlmError`] (recording it with [`Llm::record_fallback`]).

pub mod client;
pub mod config;
pub mod grounding;
pub mod limit;
pub mod metrics;

pub use client::{Llm, LlmError, LlmSetupError, Usage};
pub use config::LlmConfig;
pub use grounding::ungrounded_numbers;
pub use limit::LlmLimiter;
pub use metrics::{LlmCounters, LlmCountersSnapshot};
