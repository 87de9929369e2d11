//! `probe`: a diagnostic job for operators. It does nothing unless its
//! event's `data.probe` asks it to sleep, fail some attempts, fail for good
//! or panic — so ops can smoke-test a deployment and drill failure handling
//! (retries, dead letters, timeouts, worker crashes) without touching real
//! work. Benchmarks use it as the no-op job.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::{Job, JobContext, JobError, JobOutput};

/// The job kind.
pub const KIND: &str = "probe";

/// The probe job.
#[derive(Debug, Clone, Copy)]
pub struct Probe;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Instructions {
    sleep_ms: u64,
    /// Fail attempts 1..=fail_attempts, then succeed.
    fail_attempts: u32,
    permanent: bool,
    panic: bool,
}

/// What a probe is told to do: an event (or a schedule payload) whose
/// `data.probe` holds the instructions; anything else is a no-op.
#[derive(Debug, Default, Deserialize)]
pub struct Payload {
    #[serde(default)]
    data: PayloadData,
}

#[derive(Debug, Default, Deserialize)]
struct PayloadData {
    #[serde(default)]
    probe: Instructions,
}

#[async_trait]
impl Job for Probe {
    const KIND: &'static str = KIND;
    type Payload = Payload;

    async fn run(&self, ctx: &JobContext, payload: Payload) -> Result<JobOutput, JobError> {
        let ins = payload.data.probe;
        if ins.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(ins.sleep_ms)).await;
        }
        if ins.panic {
            panic!("probe asked to panic on attempt {}", ctx.attempt);
        }
        if ins.permanent {
            return Err(JobError::Permanent("probe asked to fail permanently".into()));
        }
        if ctx.attempt <= ins.fail_attempts {
            return Err(JobError::Retryable(format!(
                "probe asked to fail attempt {} of the first {}",
                ctx.attempt, ins.fail_attempts
            )));
        }
        Ok(JobOutput { result_ref: None })
    }
}
