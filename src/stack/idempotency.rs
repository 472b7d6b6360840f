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

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use streaming_producer_layers::retry::RetryPolicy;
use streaming_producer_layers::sequence::advance;
use tokio::time::Instant;
use tower::{Service, ServiceExt as _};

use tower::{BoxError, Layer};

use super::retry::StateRead;
use super::{Connection, EventHubsRetry};
use crate::amqp::{Amqp, Attach, ProducerState};
use crate::batch::Batch;
use crate::codec::Stamp;
use crate::error::{is_retryable, Error, Kind};

/// What the layer knows of a partition (absent: nothing yet, read the link's state).
#[derive(Debug, Clone, Copy)]
enum Known {
    /// The state the next batch follows.
    State(ProducerState),
    /// A batch's fate is unknown (or a call was cut short): start a new producer
    /// group before anything else is sent.
    NewGroup,
}

use streaming_producer_layers::protocol::OUT_OF_ORDER_SEQUENCE as OUT_OF_ORDER;

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

/// The service of [`IdempotencyLayer`].
#[derive(Clone)]
pub struct Idempotency<S> {
    inner: S,
    reader: StateReader,
    /// Per partition; absent until the first batch.
    states: Arc<Mutex<HashMap<String, Known>>>,
}

/// Reads producer states, each read bounded and retried like a send.
#[derive(Clone)]
struct StateReader {
    amqp: Amqp,
    policy: RetryPolicy,
    try_timeout: Duration,
}

impl StateReader {
    /// Reads the state, each read bounded by the try timeout, retried as sends are
    /// (tower's `Retry` with the producer's policy), and all of it bounded by
    /// `deadline`.
    async fn read(
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

impl<S> std::fmt::Debug for Idempotency<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency").finish_non_exhaustive()
    }
}

impl<S> Service<Batch> for Idempotency<S>
where
    S: Service<Batch, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        // The ready inner service serves the first try; a clone takes its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let reader = self.reader.clone();
        let states = self.states.clone();
        Box::pin(publish(inner, reader, states, batch))
    }
}

async fn publish<S>(
    mut inner: S,
    reader: StateReader,
    states: Arc<Mutex<HashMap<String, Known>>>,
    batch: Batch,
) -> Result<(), BoxError>
where
    S: Service<Batch, Response = ()>,
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
    let mut first_try = true;
    let mut renumbered = false;
    let mut again = 0;
    loop {
        let first = advance(state.last_sequence, 1);
        batch.set_stamp(Some(Stamp {
            sequence: first,
            producer_id: state.producer_id,
            epoch: state.epoch,
        }));
        let result: Result<(), BoxError> = if std::mem::take(&mut first_try) {
            inner.call(batch.clone()).await.map_err(Into::into)
        } else {
            let ready: Result<(), BoxError> =
                std::future::poll_fn(|cx| inner.poll_ready(cx).map_err(Into::into)).await;
            match ready {
                Ok(()) => inner.call(batch.clone()).await.map_err(Into::into),
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
            // Its numbers stay with it until the service answers or time runs out.
            let delay = reader.policy.delay(again, 0.5);
            let in_time = match deadline {
                Some(d) => Instant::now() + delay < d,
                None => again < reader.policy.max_retries(),
            };
            if is_retryable(error.as_ref()) && in_time {
                tracing::debug!(
                    partition,
                    first,
                    "the batch's fate is unknown ({error}); trying again with its numbers"
                );
                tokio::time::sleep(delay).await;
                again += 1;
                continue;
            }
            // The entry stays NewGroup: these numbers are never given to other events.
            return Err(error);
        }
        // Certainly not stored: the next batch takes the same numbers.
        lock(&states).insert(partition, Known::State(state));
        return Err(error);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
