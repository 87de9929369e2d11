//! Per-tenant token buckets. Each API process enforces the limit on its own
//! traffic: with N API replicas behind a balancer a tenant gets at most N
//! times its rate, which is the usual trade for not paying a shared round
//! trip per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by tenant id.
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
    default_rate: u32,
    burst: u32,
}

impl RateLimiter {
    /// Limits of `default_rate` events/s with `burst` extra, unless a
    /// tenant's own rate is given to [`RateLimiter::check`].
    pub fn new(default_rate: u32, burst: u32) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            default_rate,
            burst,
        }
    }

    /// Takes `cost` events from the tenant's bucket, or says how long until
    /// they are available. A batch larger than the bucket passes when the
    /// bucket is full and leaves it in debt, so large batches are slowed to
    /// the rate rather than refused forever.
    pub fn check(&self, tenant: &str, rate: Option<u32>, cost: usize) -> Result<(), Duration> {
        let rate = f64::from(rate.unwrap_or(self.default_rate).max(1));
        let capacity = f64::from(self.burst).max(rate);
        let cost = cost as f64;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(capacity);
        b.last = now;
        let needed = cost.min(capacity);
        if b.tokens >= needed {
            b.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((needed - b.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_burst_and_is_per_tenant() {
        let rl = RateLimiter::new(10, 20);
        assert!(rl.check("a", None, 20).is_ok());
        let wait = rl.check("a", None, 5).unwrap_err();
        assert!(
            wait > Duration::from_millis(300) && wait <= Duration::from_millis(600),
            "{wait:?}"
        );
        assert!(rl.check("b", None, 20).is_ok());
        // A tenant's own rate raises its capacity.
        assert!(rl.check("c", Some(100), 100).is_ok());
    }
}
