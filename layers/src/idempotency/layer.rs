//! [`IdempotencyLayer`].

use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::state::{ProducerStates, StateReader};
use super::Idempotency;
use crate::retry::RetryPolicy;

/// Numbers batches for idempotent publishing (the partition links must be attached
/// as an idempotent producer, as the producer's `idempotent_retries(true)` does); see
/// the [module docs](super). Put it outside the retry layer, so that every retry
/// resends the same numbers.
#[derive(Debug, Clone)]
pub struct IdempotencyLayer {
    reader: StateReader,
}

impl IdempotencyLayer {
    /// Reads the partitions' producer states from `states`, each read bounded by
    /// `try_timeout` and retried as `policy` says.
    pub fn new(states: impl ProducerStates, policy: RetryPolicy, try_timeout: Duration) -> Self {
        Self {
            reader: StateReader::new(Arc::new(states), policy, try_timeout),
        }
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Idempotency<S> {
        Idempotency::new(inner, self.reader.clone())
    }
}
