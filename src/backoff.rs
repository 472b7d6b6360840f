//! tower's exponential backoff with jitter, made from a [`RetryPolicy`]: the one
//! schedule behind retries, state reads and reconnects.

use tower::retry::backoff::{
    Backoff as _, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff,
};
use tower::util::rng::HasherRng;

use streaming_producer_layers::retry::RetryPolicy;

/// The waits between attempts that a [`RetryPolicy`] describes, growing with each.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    /// `None` when the policy's maximum delay is zero (tower's backoff refuses that),
    /// which means no wait at all.
    backoff: Option<ExponentialBackoff<HasherRng>>,
}

impl Schedule {
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
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
    pub(crate) fn next(&mut self) -> tokio::time::Sleep {
        match &mut self.backoff {
            Some(backoff) => backoff.next_backoff(),
            None => tokio::time::sleep(std::time::Duration::ZERO),
        }
    }
}
