//! A partition's idempotent producer state, and how the layer reads it from the
//! transport: [`ProducerStates`], bounded and retried by [`StateReader`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::retry::Policy;
use tower::ServiceExt as _;

use crate::error::Error;
use crate::retry::{EventHubsRetry, RetryPolicy};

/// An idempotent producer's state on one partition, as the service reported it when
/// the partition's link was attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerState {
    /// The producer group id.
    pub producer_id: i64,
    /// The producer group's owner level.
    pub epoch: i16,
    /// The sequence number of the last event the service stored for this producer.
    pub last_sequence: i32,
}

/// How a state is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// From the partition link as it is (attaching it if needed).
    Current,
    /// From a fresh attach as a new producer group, which the service numbers anew.
    NewProducer,
}

/// The future of [`ProducerStates::read`].
pub type ReadFuture = Pin<Box<dyn Future<Output = Result<ProducerState, Error>> + Send>>;

/// Where [`IdempotencyLayer`](super::IdempotencyLayer) reads a partition's producer
/// state: the transport, which attaches the partition's link as an idempotent producer
/// (the producer's `Connection` is one).
///
/// A read happens once per partition and after a batch whose fate is unknown, so it
/// is boxed rather than generic.
pub trait ProducerStates: Send + Sync + 'static {
    /// The state of `partition`, read as `attach` says.
    fn read(&self, partition: &str, attach: Attach) -> ReadFuture;
}

/// Reads producer states, each read bounded and retried like a send.
#[derive(Clone)]
pub(super) struct StateReader {
    states: Arc<dyn ProducerStates>,
    pub(super) policy: RetryPolicy,
    try_timeout: Duration,
}

impl StateReader {
    pub(super) fn new(
        states: Arc<dyn ProducerStates>,
        policy: RetryPolicy,
        try_timeout: Duration,
    ) -> Self {
        Self {
            states,
            policy,
            try_timeout,
        }
    }

    /// Reads the state, each read bounded by the try timeout, retried as sends are
    /// (tower's `Retry` with the producer's policy), and all of it bounded by
    /// `deadline`.
    pub(super) async fn read(
        &self,
        partition: &str,
        attach: Attach,
        deadline: Option<Instant>,
    ) -> Result<ProducerState, Error> {
        let (states, partition, try_timeout) =
            (self.states.clone(), partition.to_owned(), self.try_timeout);
        let read = tower::service_fn(move |read: StateRead| {
            let call = states.read(&partition, read.attach);
            async move {
                let limit = Instant::now() + try_timeout;
                let limit = read.deadline.map_or(limit, |d| d.min(limit));
                tokio::time::timeout_at(limit, call)
                    .await
                    .unwrap_or_else(|_| {
                        Err(if read.deadline.is_some_and(|d| d <= Instant::now()) {
                            Error::delivery_timeout()
                        } else {
                            Error::timeout()
                        })
                    })
            }
        });
        let policy = EventHubsRetry::new(self.policy.clone());
        tower::retry::Retry::new(policy, read)
            .oneshot(StateRead { attach, deadline })
            .await
    }
}

impl std::fmt::Debug for StateReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateReader")
            .field("policy", &self.policy)
            .field("try_timeout", &self.try_timeout)
            .finish_non_exhaustive()
    }
}

/// A read of a partition's idempotent producer state, retried by the same policy as
/// the batch it is read for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StateRead {
    attach: Attach,
    /// The deadline of the batch the state is read for.
    deadline: Option<Instant>,
}

impl Policy<StateRead, ProducerState, Error> for EventHubsRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        read: &mut StateRead,
        result: &mut Result<ProducerState, Error>,
    ) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(e) => self.next(read.deadline, e.is_retryable()),
        }
    }

    fn clone_request(&mut self, read: &StateRead) -> Option<StateRead> {
        Some(*read)
    }
}
