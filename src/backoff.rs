//! tower's exponential backoff with jitter, made from a [`RetryPolicy`]: the one
//! schedule behind retries, state reads and reconnects.

use tower::retry::backoff::{ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::util::rng::HasherRng;

use streaming_producer_layers::retry::RetryPolicy;

/// The backoff `policy` describes; `None` when its maximum delay is zero (tower's
/// backoff refuses that), which means no wait at all.
pub(crate) fn exponential(policy: &RetryPolicy) -> Option<ExponentialBackoff<HasherRng>> {
    ExponentialBackoffMaker::new(
        policy.initial_delay(),
        policy.max_delay().max(policy.initial_delay()),
        policy.jitter(),
        HasherRng::default(),
    )
    .ok()
    .map(|mut maker| maker.make_backoff())
}
