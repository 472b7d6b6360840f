//! [`Schedule`]: tower's exponential backoff with jitter, made from a [`RetryPolicy`].

use tower::retry::backoff::{
    Backoff as _, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff,
};
use tower::util::rng::HasherRng;

use super::RetryPolicy;

/// The waits between attempts that a [`RetryPolicy`] describes, growing with each:
/// the one schedule behind the producer's retries, its producer-state reads and its
/// reconnects.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// `None` when the policy's maximum delay is zero (tower's backoff refuses that),
    /// which means no wait at all.
    backoff: Option<ExponentialBackoff<HasherRng>>,
}

impl Schedule {
    /// The waits `policy` describes, from the first.
    pub fn new(policy: &RetryPolicy) -> Self {
        let backoff = ExponentialBackoffMaker::new(
            policy.initial_delay(),
            policy.max_delay().max(policy.initial_delay()),
            policy.jitter(),
            HasherRng::default(),
        )
        .ok()
        .map(|mut maker| maker.make_backoff());
        Self { backoff }
    }

    /// The wait before the next attempt.
    pub fn next_backoff(&mut self) -> tokio::time::Sleep {
        match &mut self.backoff {
            Some(backoff) => backoff.next_backoff(),
            None => tokio::time::sleep(std::time::Duration::ZERO),
        }
    }
}
