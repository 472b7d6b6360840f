//! [`EventHubsRetry`]: which failures are worth another try, how long to wait, and
//! when to stop.

use tower::retry::Policy;
use tower::BoxError;

use tokio::time::Instant;

use super::{RetryPolicy, Schedule};
use crate::batch::PartitionBatch;
use crate::error::{is_retryable, Error};

/// Event Hubs' retry policy for tower's [`Retry`](tower::retry::Retry): retries the
/// errors that say so ([`Error::is_retryable`], and tower's `Elapsed` for a try that
/// timed out), at most [`RetryPolicy::max_retries`] times, waiting with tower's
/// exponential backoff with jitter, and never starting a try at or after the batch's
/// [deadline](PartitionBatch::deadline). Resends a clone of the batch.
///
/// ```
/// use std::time::Duration;
/// use streaming_producer_layers::retry::{EventHubsRetry, RetryPolicy};
///
/// let layer = tower::retry::RetryLayer::new(EventHubsRetry::new(
///     RetryPolicy::default().with_max_retries(5).with_initial_delay(Duration::from_millis(100)),
/// ));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct EventHubsRetry {
    policy: RetryPolicy,
    /// Per request: tower's `Retry` clones the policy for each one.
    retries: u32,
    backoff: Schedule,
}

impl EventHubsRetry {
    /// A policy retrying as `policy` says.
    pub fn new(policy: RetryPolicy) -> Self {
        let backoff = Schedule::new(&policy);
        Self {
            policy,
            retries: 0,
            backoff,
        }
    }

    /// The wait before the next try, if there is to be one: the failure is worth
    /// retrying, retries are left, and the try would start before `deadline`.
    pub(crate) fn next(
        &mut self,
        deadline: Option<Instant>,
        retryable: bool,
    ) -> Option<tokio::time::Sleep> {
        if !retryable || self.retries >= self.policy.max_retries() {
            return None;
        }
        let sleep = self.backoff.next_backoff();
        if deadline.is_some_and(|d| sleep.deadline() >= d) {
            return None;
        }
        self.retries += 1;
        Some(sleep)
    }
}

impl<B: PartitionBatch> Policy<B, (), BoxError> for EventHubsRetry {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, batch: &mut B, result: &mut Result<(), BoxError>) -> Option<Self::Future> {
        let retry = match result {
            Ok(()) => None,
            Err(e) => self.next(batch.deadline(), is_retryable(e.as_ref())),
        };
        if retry.is_some() {
            batch.note_retry();
        }
        retry
    }

    fn clone_request(&mut self, batch: &B) -> Option<B> {
        Some(batch.clone())
    }
}

impl<B: PartitionBatch> Policy<B, (), Error> for EventHubsRetry {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, batch: &mut B, result: &mut Result<(), Error>) -> Option<Self::Future> {
        let retry = match result {
            Ok(()) => None,
            Err(e) => self.next(batch.deadline(), e.is_retryable()),
        };
        if retry.is_some() {
            batch.note_retry();
        }
        retry
    }

    fn clone_request(&mut self, batch: &B) -> Option<B> {
        Some(batch.clone())
    }
}
