//! How failed requests are retried: how many times, and how long to wait between
//! tries (exponential backoff with jitter). The producer's tower `Retry` policy and its
//! reconnects follow it.
//!
//! ```
//! use std::time::Duration;
//! use streaming_producer_layers::retry::RetryPolicy;
//!
//! let policy = RetryPolicy::default(); // 3 retries, 0.8 s doubling up to 60 s, 8% jitter
//! assert_eq!(policy.max_retries(), 3);
//! let exact = policy.with_jitter(0.0);
//! assert_eq!(exact.delay(0, 0.5), Duration::from_millis(800));
//! assert_eq!(exact.delay(2, 0.5), Duration::from_millis(3200));
//! ```

use std::time::Duration;

/// How often and how patiently to retry: exponential backoff with jitter.
///
/// The delay before retry `n` (0-based) is `min(initial × 2ⁿ, max) × (1 + jitter × u)`
/// with `u` uniform in `[0, 1)`, capped at `max`. The defaults are the .NET SDK's:
/// 3 retries, 0.8 s initial delay, 60 s maximum, 8% jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    max_retries: u32,
    initial_delay: Duration,
    max_delay: Duration,
    jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_delay: Duration::from_millis(800),
            max_delay: Duration::from_secs(60),
            jitter: 0.08,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self::default().with_max_retries(0)
    }

    /// How many times a failed request is tried again.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The delay before the first retry.
    pub fn with_initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The longest delay between tries.
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Random extra delay, as a fraction of the delay (0 for none).
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// How many times a failed request is tried again.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The delay before the first retry.
    pub fn initial_delay(&self) -> Duration {
        self.initial_delay
    }

    /// The longest delay between tries.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// Random extra delay, as a fraction of the delay.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The delay before retry `retry` (0-based), for a uniform sample `u` in `[0, 1)`.
    pub fn delay(&self, retry: u32, u: f64) -> Duration {
        let base = self
            .initial_delay
            .saturating_mul(2u32.saturating_pow(retry.min(31)))
            .min(self.max_delay);
        base.mul_f64(1.0 + self.jitter * u.clamp(0.0, 1.0))
            .min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_jitter_stays_within_it() {
        let p = RetryPolicy::default()
            .with_initial_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(5));
        assert_eq!(
            p.clone().with_jitter(0.0).delay(0, 0.9),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.clone().with_jitter(0.0).delay(2, 0.9),
            Duration::from_secs(4)
        );
        assert_eq!(
            p.clone().with_jitter(0.0).delay(10, 0.9),
            Duration::from_secs(5)
        );
        let jittered = p.with_jitter(0.5).delay(1, 0.5);
        assert_eq!(jittered, Duration::from_millis(2500));
    }
}
