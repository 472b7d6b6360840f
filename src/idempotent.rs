//! Idempotent retries: numbers each batch once, outside the retry layer, so every
//! retry resends the same producer sequence numbers and the service stores the batch
//! once, as the service's idempotent publishing expects (the .NET and JS SDKs'
//! `EnableIdempotentRetries`).
//!
//! The state of each partition is the producer group id and epoch the service gave
//! the link, and the last sequence number known to be stored. A batch gets the next
//! numbers; when it succeeds they become the last stored. When it fails for good,
//! whether the service stored it is unknown (a lost acknowledgement looks like any
//! other failure), so the layer attaches the partition's link again and reads the
//! service's own last sequence number: if it is the batch's last, the batch was
//! stored and is reported as published; if it is the number before the batch (and
//! the service did not refuse the numbers as out of order), it was not, and the next
//! batch takes the same numbers. Either way nothing is stored twice
//! and no later batch is numbered into a gap or dropped as a duplicate.
//!
//! Any other answer means the producer's state and the service's disagree. Then the layer does what the .NET SDK does after such a
//! desync (azure-sdk-for-net#25586): it attaches as a new producer group, which the
//! service numbers from scratch, rather than risk its next events being taken for
//! duplicates and dropped.

//!
//! Reading the state is bounded by the try timeout and retried as sends are. If it
//! still fails (the service stays unreachable), the batch is reported failed, though
//! it may have been stored, and the next batch reads the state afresh first.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use streaming_producer_layers::retry::RetryPolicy;
use streaming_producer_layers::sequence::advance;
use tower::Service;

use crate::amqp::{Amqp, Attach, ProducerState};
use crate::base::SendFailure;
use crate::batch::Batch;
use crate::codec::Stamp;
use crate::error::{Error, Kind};

/// What the layer knows of a partition.
#[derive(Debug, Clone, Copy)]
enum Known {
    /// The service's state, the next batch follows it.
    State(ProducerState),
    /// Unknown since a failure: attach again to read it.
    Stale,
}

/// Numbers batches for idempotent publishing; see the module docs.
#[derive(Clone)]
pub(crate) struct Idempotent<S> {
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
    async fn read(&self, partition: &str, attach: Attach) -> Result<ProducerState, Error> {
        let mut retry = 0;
        loop {
            let result = tokio::time::timeout(
                self.try_timeout,
                self.amqp.producer_state(partition, attach),
            )
            .await
            .unwrap_or_else(|_| Err(Error::new(Kind::Timeout)));
            match result {
                Err(e) if e.is_retryable() && retry < self.policy.max_retries() => {
                    // Jitter is not needed for a read that only this producer makes.
                    tokio::time::sleep(self.policy.delay(retry, 0.5)).await;
                    retry += 1;
                }
                other => return other,
            }
        }
    }
}

impl<S> std::fmt::Debug for Idempotent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotent").finish_non_exhaustive()
    }
}

impl<S> Idempotent<S> {
    pub(crate) fn new(inner: S, amqp: Amqp, policy: RetryPolicy, try_timeout: Duration) -> Self {
        Self {
            inner,
            reader: StateReader {
                amqp,
                policy,
                try_timeout,
            },
            states: Arc::default(),
        }
    }
}

impl<S> Service<Batch> for Idempotent<S>
where
    S: Service<Batch, Response = Batch, Error = SendFailure> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Batch;
    type Error = SendFailure;
    type Future = Pin<Box<dyn Future<Output = Result<Batch, SendFailure>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut batch: Batch) -> Self::Future {
        // The ready inner service goes with this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let reader = self.reader.clone();
        let states = self.states.clone();
        Box::pin(async move {
            let partition = batch.partition().to_owned();
            // Unknown from here until this batch's fate is known.
            let known = lock(&states).insert(partition.clone(), Known::Stale);
            let state = match known {
                Some(Known::State(state)) => state,
                // The link attached for the first batch reports the service's state.
                None => match reader.read(&partition, Attach::Current).await {
                    Ok(state) => state,
                    Err(error) => return Err(SendFailure { error, batch }),
                },
                Some(Known::Stale) => match reader.read(&partition, Attach::Again).await {
                    Ok(state) => state,
                    Err(error) => return Err(SendFailure { error, batch }),
                },
            };
            let count = batch.len() as u32;
            let first = advance(state.last_sequence, 1);
            let last = advance(state.last_sequence, count);
            batch.set_stamp(Some(Stamp {
                sequence: first,
                producer_id: state.producer_id,
                epoch: state.epoch,
            }));
            match inner.call(batch).await {
                Ok(batch) => {
                    let published = ProducerState {
                        last_sequence: last,
                        ..state
                    };
                    lock(&states).insert(partition, Known::State(published));
                    Ok(batch)
                }
                Err(failure) => {
                    match settle(&reader, &partition, state, last, &failure.error).await {
                        Ok((now, stored)) => {
                            lock(&states).insert(partition.clone(), Known::State(now));
                            if stored {
                                tracing::debug!(
                                    partition,
                                    first,
                                    last,
                                    "the service had stored the batch despite: {}",
                                    failure.error
                                );
                                Ok(failure.batch)
                            } else {
                                Err(failure)
                            }
                        }
                        // Still unknown (the entry stays stale): the next batch reads again.
                        Err(error) => {
                            tracing::debug!(
                                partition,
                                "reading the producer state failed: {error}"
                            );
                            Err(failure)
                        }
                    }
                }
            }
        })
    }
}

/// After a batch numbered after `before` up to `last` failed for good: the state to
/// number the next batch from, and whether the service had stored the batch.
async fn settle(
    reader: &StateReader,
    partition: &str,
    before: ProducerState,
    last: i32,
    error: &Error,
) -> Result<(ProducerState, bool), Error> {
    // A producer with a higher epoch fenced this one off: attaching again fails the
    // same way, and so does every later batch, as it should.
    let now = reader.read(partition, Attach::Again).await?;
    let same = now.producer_id == before.producer_id && now.epoch == before.epoch;
    if same && now.last_sequence == last {
        return Ok((now, true));
    }
    let refused_numbers = error.condition() == Some("com.microsoft:out-of-order-sequence");
    if same && now.last_sequence == before.last_sequence && !refused_numbers {
        return Ok((now, false));
    }
    tracing::warn!(
        partition,
        expected = before.last_sequence,
        service = now.last_sequence,
        "the service's producer state disagrees; starting a new producer group"
    );
    let fresh = reader.read(partition, Attach::NewProducer).await?;
    Ok((fresh, false))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
