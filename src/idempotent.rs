//! Idempotent retries: numbers each batch once, outside the retry layer, so every
//! retry resends the same producer sequence numbers and the service stores the batch
//! once (reference §5, DESIGN.md contract 7).
//!
//! The state of each partition is the producer group id and epoch the service gave
//! the link, and the last sequence number known to be stored. A batch gets the next
//! numbers; when it succeeds they become the last stored. When it fails for good,
//! whether the service stored it is unknown (a lost acknowledgement looks like any
//! other failure), so the layer attaches the partition's link again and reads the
//! service's own last sequence number: if it is the batch's last, the batch was
//! stored and is reported as published; otherwise it was not, and the next batch
//! continues from the service's number. Either way nothing is stored twice and no
//! later batch is numbered into a gap or dropped as a duplicate.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use streaming_producer_layers::sequence::advance;
use tower::Service;

use crate::amqp::{Amqp, ProducerState};
use crate::base::SendFailure;
use crate::batch::Batch;
use crate::codec::Stamp;

/// Numbers batches for idempotent publishing; see the module docs.
#[derive(Clone)]
pub(crate) struct Idempotent<S> {
    inner: S,
    amqp: Amqp,
    /// Per partition: the known state, or none when it must be read from the service
    /// before the next batch is numbered.
    states: Arc<Mutex<HashMap<String, ProducerState>>>,
}

impl<S> std::fmt::Debug for Idempotent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotent").finish_non_exhaustive()
    }
}

impl<S> Idempotent<S> {
    pub(crate) fn new(inner: S, amqp: Amqp) -> Self {
        Self {
            inner,
            amqp,
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
        let amqp = self.amqp.clone();
        let states = self.states.clone();
        Box::pin(async move {
            let partition = batch.partition().to_owned();
            let known = lock(&states).get(&partition).copied();
            let state = match known {
                Some(state) => state,
                // Not numbered yet, or unknown since a failure: ask the service.
                None => match amqp.producer_state(&partition, false).await {
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
            // Until this batch's fate is known, the partition's state is unknown.
            lock(&states).remove(&partition);
            match inner.call(batch).await {
                Ok(batch) => {
                    let published = ProducerState {
                        last_sequence: last,
                        ..state
                    };
                    lock(&states).insert(partition, published);
                    Ok(batch)
                }
                Err(failure) => match amqp.producer_state(&partition, true).await {
                    Ok(now) => {
                        lock(&states).insert(partition.clone(), now);
                        let stored = now.producer_id == state.producer_id
                            && now.last_sequence == last
                            && last != state.last_sequence;
                        if stored {
                            tracing::debug!(
                                partition,
                                first,
                                last,
                                "the service had stored the batch despite the failure: {}",
                                failure.error
                            );
                            Ok(failure.batch)
                        } else {
                            Err(failure)
                        }
                    }
                    // Still unknown: the next batch asks again.
                    Err(error) => {
                        tracing::debug!(partition, "reading the producer state failed: {error}");
                        Err(failure)
                    }
                },
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
