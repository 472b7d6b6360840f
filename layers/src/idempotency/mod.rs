//! Idempotent retries: numbers each batch once, outside the retry layer, so every
//! retry resends the same producer sequence numbers and the service stores the batch
//! once, as the service's idempotent publishing expects (the .NET and JS SDKs'
//! `EnableIdempotentRetries`).
//!
//! The state of each partition is the producer group id and epoch the service gave
//! the link, and the last sequence number known to be stored; a batch gets the next
//! numbers. The rules keep numbers and events together:
//!
//! - A batch that succeeds moves the partition's numbers on.
//! - A batch that certainly was not stored (every try was refused, released or never
//!   reached the service) gives its numbers back: the next batch takes them, so the
//!   service sees no gap.
//! - A batch whose fate is unknown (a try reached the service and no verdict came
//!   back) keeps its numbers and is tried again with them, past the retry policy's
//!   count, until the service acknowledges it (a stored batch is acknowledged again
//!   as a duplicate) or its deadline passes. Only the service can settle its fate,
//!   and a state read right after the failure proves nothing: the service may still
//!   store a transfer it already received. If the deadline passes, the batch is
//!   reported failed and maybe stored, and the partition starts a new producer group
//!   (which the service numbers anew) before it sends anything else, so the old
//!   numbers never go to other events.
//! - A refusal as out of order means the service lost the producer's state (it was
//!   restarted, say): the partition starts a new producer group and the batch is
//!   tried again under it, once.
//!
//! Reading the state (attaching the link) is bounded by the try timeout and by the
//! batch's deadline, and retried as sends are.
//!
//! Files as in tower: `layer` ([`IdempotencyLayer`]), `state` (the producer state and
//! [`ProducerStates`], where the layer reads it), and here the service, [`Idempotency`].

mod layer;
mod state;
#[cfg(test)]
mod tests;

pub use layer::IdempotencyLayer;
use state::StateReader;
pub use state::{Attach, ProducerState, ProducerStates, ReadFuture};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use eventhubs_protocol::sequence::advance;
use eventhubs_protocol::OUT_OF_ORDER_SEQUENCE as OUT_OF_ORDER;
use tower::retry::Policy;
use tower::{BoxError, Service, ServiceExt as _};

use crate::batch::{PartitionBatch, Stamp};
use crate::error::{is_retryable, Error};
use crate::retry::{RetryPolicy, Schedule};

/// What the layer knows of a partition (absent: nothing yet, read the link's state).
#[derive(Debug, Clone, Copy)]
enum Known {
    /// The state the next batch follows.
    State(ProducerState),
    /// A batch's fate is unknown (or a call was cut short): start a new producer
    /// group before anything else is sent.
    NewGroup,
}

/// The service of [`IdempotencyLayer`].
#[derive(Clone)]
pub struct Idempotency<S> {
    inner: S,
    reader: StateReader,
    /// Per partition; absent until the first batch.
    states: Arc<Mutex<HashMap<String, Known>>>,
}

impl<S> Idempotency<S> {
    fn new(inner: S, reader: StateReader) -> Self {
        Self {
            inner,
            reader,
            states: Arc::default(),
        }
    }

    /// The service it wraps.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The service it wraps, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The service it wraps, taken out.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> std::fmt::Debug for Idempotency<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency").finish_non_exhaustive()
    }
}

impl<S, B> Service<B> for Idempotency<S>
where
    B: PartitionBatch,
    S: Service<B, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, batch: B) -> Self::Future {
        // The ready inner service serves the first try; a clone takes its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let reader = self.reader.clone();
        let states = self.states.clone();
        Box::pin(publish(inner, reader, states, batch))
    }
}

async fn publish<S, B>(
    inner: S,
    reader: StateReader,
    states: Arc<Mutex<HashMap<String, Known>>>,
    batch: B,
) -> Result<(), BoxError>
where
    B: PartitionBatch,
    S: Service<B, Response = ()> + Clone,
    S::Error: Into<BoxError>,
{
    let partition = batch.partition().to_owned();
    let deadline = batch.deadline();
    // Until this batch's fate is known, a batch after it (should this call be cut
    // short) starts a new producer group.
    let known = lock(&states).insert(partition.clone(), Known::NewGroup);
    let mut state = match known {
        Some(Known::State(state)) => state,
        _ => {
            // The link attached for the first batch reports the service's state; after
            // an unknown fate, a new producer group is started.
            let attach = match known {
                None => Attach::Current,
                _ => Attach::NewProducer,
            };
            match reader.read(&partition, attach, deadline).await {
                Ok(state) => state,
                Err(error) => {
                    // Nothing was sent: what was known still holds.
                    let mut states = lock(&states);
                    match known {
                        Some(k) => states.insert(partition, k),
                        None => states.remove(&partition),
                    };
                    return Err(error.into());
                }
            }
        }
    };
    // A batch whose fate is unknown is tried again with its numbers by tower's
    // `Retry`, past the retry count, until the service answers or time runs out.
    let inner = inner.map_err(into_box_error::<S::Error>);
    let mut retry = tower::retry::Retry::new(UnknownFate::new(&reader.policy), inner);
    let mut first_try = true;
    let mut renumbered = false;
    loop {
        batch.set_stamp(Some(Stamp {
            sequence: advance(state.last_sequence, 1),
            producer_id: state.producer_id,
            epoch: state.epoch,
        }));
        let result = if std::mem::take(&mut first_try) {
            // The service was made ready by `poll_ready`.
            retry.call(batch.clone()).await
        } else {
            match retry.ready().await {
                Ok(ready) => ready.call(batch.clone()).await,
                Err(e) => Err(e),
            }
        };
        let error = match result {
            Ok(()) => {
                let published = ProducerState {
                    last_sequence: advance(state.last_sequence, batch.len() as u32),
                    ..state
                };
                lock(&states).insert(partition, Known::State(published));
                return Ok(());
            }
            Err(e) => e,
        };
        let condition = error.downcast_ref::<Error>().and_then(Error::condition);
        if condition == Some(OUT_OF_ORDER) && !renumbered {
            // The service does not know this producer's numbers (it lost its state):
            // a new group, and the batch once more under it.
            renumbered = true;
            tracing::warn!(
                partition,
                "the service refused the numbers as out of order; starting a new producer group"
            );
            match reader.read(&partition, Attach::NewProducer, deadline).await {
                Ok(fresh) => {
                    state = fresh;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(partition, "starting a new producer group failed: {e}");
                    return Err(error);
                }
            }
        }
        if batch.may_have_been_stored() {
            // The entry stays NewGroup: these numbers are never given to other events.
            return Err(error);
        }
        // Certainly not stored: the next batch takes the same numbers.
        lock(&states).insert(partition, Known::State(state));
        return Err(error);
    }
}

/// tower `Retry` policy for a batch whose fate is unknown (a try reached the service
/// and no verdict came back): its numbers stay with it, so it is tried again with
/// them, whatever the retry count, while the failure is retryable and the next try
/// would start before the batch's deadline (with no deadline, up to the retry
/// count). Only the service can settle such a batch's fate.
#[derive(Clone)]
struct UnknownFate {
    backoff: Schedule,
    max_retries: u32,
    again: u32,
}

impl UnknownFate {
    fn new(policy: &RetryPolicy) -> Self {
        Self {
            backoff: Schedule::new(policy),
            max_retries: policy.max_retries(),
            again: 0,
        }
    }
}

impl<B: PartitionBatch> Policy<B, (), BoxError> for UnknownFate {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, batch: &mut B, result: &mut Result<(), BoxError>) -> Option<Self::Future> {
        let Err(error) = result else { return None };
        if !batch.may_have_been_stored() || !is_retryable(error.as_ref()) {
            return None;
        }
        let sleep = self.backoff.next_backoff();
        let in_time = match batch.deadline() {
            Some(d) => sleep.deadline() < d,
            None => self.again < self.max_retries,
        };
        if !in_time {
            return None;
        }
        tracing::debug!(
            partition = batch.partition(),
            "the batch's fate is unknown ({error}); trying again with its numbers"
        );
        self.again += 1;
        Some(sleep)
    }

    fn clone_request(&mut self, batch: &B) -> Option<B> {
        Some(batch.clone())
    }
}

fn into_box_error<E: Into<BoxError>>(error: E) -> BoxError {
    error.into()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
