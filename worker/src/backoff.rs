//! Retry delays: exponential with jitter, so a burst of failures (a
//! dependency down) does not come back as a synchronized burst of retries.

use std::time::Duration;

use kairos_core::config::JobPolicy;

/// Delay before the attempt after `attempt` (1-based): the exponential step
/// `initial * 2^(attempt-1)`, capped at `backoff_max`, of which a random half
/// is jittered ("equal jitter": never less than half the step).
pub fn retry_delay(policy: &JobPolicy, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let step = policy
        .backoff_initial
        .saturating_mul(1u32 << exp)
        .min(policy.backoff_max);
    let half = step / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_is_capped() {
        let p = JobPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..JobPolicy::default()
        };
        for _ in 0..100 {
            let d1 = retry_delay(&p, 1);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = retry_delay(&p, 3);
            assert!(
                d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
                "{d3:?}"
            );
            let d20 = retry_delay(&p, 20);
            assert!(
                d20 >= Duration::from_millis(500) && d20 <= Duration::from_secs(1),
                "{d20:?}"
            );
        }
    }
}
