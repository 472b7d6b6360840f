//! [`RetryPolicy`]: how often and how patiently to retry.

use std::time::Duration;

/// How often and how patiently to retry: exponential backoff with jitter.
///
/// The waits between tries are tower's `ExponentialBackoff` ([`Schedule`](super::Schedule)):
/// they start at the initial delay and double up to the maximum, with random jitter
/// added. The defaults are the .NET SDK's: 3 retries, 0.8 s initial delay, 60 s
/// maximum, 8% jitter.
///
/// ```
/// use std::time::Duration;
/// use streaming_producer_layers::retry::RetryPolicy;
///
/// let policy = RetryPolicy::default().with_initial_delay(Duration::from_millis(100));
/// assert_eq!(policy.max_retries(), 3);
/// assert_eq!(policy.initial_delay(), Duration::from_millis(100));
/// assert_eq!(RetryPolicy::none().max_retries(), 0);
/// ```
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
}
