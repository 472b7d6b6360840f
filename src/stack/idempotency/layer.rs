//! [`IdempotencyLayer`], and the producer-state reads its services make.

use std::sync::Arc;
use std::time::Duration;

use streaming_producer_layers::retry::RetryPolicy;
use tokio::time::Instant;
use tower::{Layer, ServiceExt as _};

use super::Idempotency;
use crate::amqp::{Amqp, Attach, ProducerState};
use crate::error::{Error, Kind};
use crate::stack::retry::StateRead;
use crate::stack::{Connection, EventHubsRetry};

/// Numbers batches for idempotent publishing (the partition links must be attached
/// as an idempotent producer, as `idempotent_retries(true)` does); see the module
/// docs. Put it outside the retry layer, so that every retry resends the same numbers.
#[derive(Debug, Clone)]
pub struct IdempotencyLayer {
    reader: StateReader,
}

impl IdempotencyLayer {
    /// Reads the partitions' producer state over `connection`, each read bounded by
    /// `try_timeout` and retried as `policy` says.
    pub fn new(connection: &Connection, policy: RetryPolicy, try_timeout: Duration) -> Self {
        Self {
            reader: StateReader {
                amqp: connection.amqp().clone(),
                policy,
                try_timeout,
            },
        }
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Idempotency<S> {
        Idempotency {
            inner,
            reader: self.reader.clone(),
            states: Arc::default(),
        }
    }
}

/// Reads producer states, each read bounded and retried like a send.
#[derive(Clone)]
pub(super) struct StateReader {
    amqp: Amqp,
    pub(super) policy: RetryPolicy,
    try_timeout: Duration,
}

impl StateReader {
    /// Reads the state, each read bounded by the try timeout, retried as sends are
    /// (tower's `Retry` with the producer's policy), and all of it bounded by
    /// `deadline`.
    pub(super) async fn read(
        &self,
        partition: &str,
        attach: Attach,
        deadline: Option<Instant>,
    ) -> Result<ProducerState, Error> {
        let (amqp, partition, try_timeout) =
            (self.amqp.clone(), partition.to_owned(), self.try_timeout);
        let read = tower::service_fn(move |read: StateRead| {
            let (amqp, partition) = (amqp.clone(), partition.clone());
            async move {
                let limit = Instant::now() + try_timeout;
                let limit = read.deadline.map_or(limit, |d| d.min(limit));
                tokio::time::timeout_at(limit, amqp.producer_state(&partition, read.attach))
                    .await
                    .unwrap_or_else(|_| {
                        Err(if read.deadline.is_some_and(|d| d <= Instant::now()) {
                            Error::delivery_timeout()
                        } else {
                            Error::new(Kind::Timeout)
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
