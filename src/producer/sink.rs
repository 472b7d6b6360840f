//! The `Sink` side of the producer: reserving room for an event and accepting it.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};

use futures_sink::Sink;
use tokio::sync::mpsc;
use tokio_util::sync::ReusableBoxFuture;

use super::capacity::Budget;
use super::lanes::{Keyless, Signal};
use super::{EnqueueError, Producer};
use crate::batch::Batch;
use crate::codec;
use crate::Error;
use crate::{EventData, Routing};

impl Producer {
    pub(super) fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(Error::closed()));
        }
        if self.reserved.is_none() && !self.waiting_for_room {
            // The common case, without a future: `PollSemaphore` keeps polling (and
            // replacing) a boxed acquire future once it has had to wait at all, which
            // cost about 7% of the client's CPU at the bound. A try cannot overtake a
            // queued waiter: released permits go to waiters first.
            self.reserved = self.shared.budget.try_reserve();
        }
        if self.reserved.is_none() {
            match self.permits.poll_acquire(cx) {
                Poll::Ready(Some(permit)) => {
                    self.waiting_for_room = false;
                    self.stall.stop();
                    self.reserved = Some(Budget::slot_of(permit));
                }
                Poll::Ready(None) => return Poll::Ready(Err(Error::closed())),
                Poll::Pending => {
                    self.waiting_for_room = true;
                    // No room: what is open will not fill, so publish it now.
                    self.shared.starve(&self.signals);
                    self.stall.start();
                    self.stall.poll(cx, &self.shared.budget);
                    return Poll::Pending;
                }
            }
        }
        if self.bytes_wait.is_none() && self.shared.budget.bytes_full() {
            let budget = self.shared.budget.clone();
            self.bytes_wait = Some(ReusableBoxFuture::new(budget.bytes_available()));
        }
        if let Some(wait) = self.bytes_wait.as_mut() {
            if wait.poll(cx).is_pending() {
                self.shared.starve(&self.signals);
                self.stall.start();
                self.stall.poll(cx, &self.shared.budget);
                return Poll::Pending;
            }
            self.bytes_wait = None;
            self.stall.stop();
        }
        Poll::Ready(Ok(()))
    }

    /// Routes, encodes and adds the event to its partition's open batch; needs a
    /// reserved slot.
    pub(super) fn accept(&mut self, event: EventData) -> Result<(), EnqueueError> {
        let Some(slot) = self.reserved.take() else {
            return Err(EnqueueError::new(
                Error::config("poll_ready must succeed before start_send"),
                event,
            ));
        };
        #[cfg(feature = "opentelemetry")]
        let event = crate::trace_context::stamp(event);
        let version = self.shared.ids_version.load(Ordering::Acquire);
        if version != self.ids.0 {
            self.ids = (version, self.shared.ids());
        }
        let shared = &self.shared;
        let ids = &self.ids.1;
        if self.spare.is_empty() {
            self.spare = shared.buffers.take().unwrap_or_default();
        }
        let buffer = self.spare.pop().unwrap_or_default();
        let encoded = codec::encode_into(buffer, &event, shared.idempotent);
        let cost = Batch::cost(&encoded);
        let mut left = None;
        let routed = match event.routing() {
            Routing::PartitionId(id) => ids
                .iter()
                .position(|p| p == id)
                .ok_or_else(|| (id.clone(), Error::unknown_partition(id.clone()))),
            Routing::PartitionKey(key) => {
                Ok(shared.partitioner.partition_for_key(key, ids.len()) % ids.len())
            }
            Routing::Auto => Ok(
                match &mut *shared.keyless.lock().unwrap_or_else(|e| e.into_inner()) {
                    Keyless::RoundRobin(rr) => rr.next(ids.len()),
                    Keyless::Sticky(s) => {
                        let pick = s.pick(cost, ids.len());
                        left = pick.left;
                        pick.partition
                    }
                },
            ),
        };
        if let Some(left) = left {
            // The sticky router moved on: the partition it left gets nothing more for a
            // while, so its batch is complete. (A closed producer refuses the event
            // below.)
            let _ = shared.seal_and_send(&self.signals, left, |sealed| {
                sealed.map(Signal::Sealed).into_iter().collect()
            });
        }
        let refused = match routed {
            Ok(partition) if cost <= shared.max_batch_bytes => {
                return shared
                    .append(&self.signals, partition, event, encoded, cost, slot)
                    .map_err(|event| EnqueueError::new(Error::closed(), event));
            }
            Ok(partition) => (
                ids[partition].clone(),
                Error::too_large(cost, shared.max_batch_bytes),
            ),
            Err(refused) => refused,
        };
        // An event that can never be published still gets its outcome, and counts
        // until then.
        if shared.closed.load(Ordering::SeqCst) {
            shared.budget.unreserve(slot);
            return Err(EnqueueError::new(Error::closed(), event));
        }
        let (partition, error) = refused;
        let capacity = shared.capacity_of(slot, event.body().len());
        let signal = Signal::Refused {
            partition,
            event: Box::new(event),
            error,
            capacity,
        };
        match self.signals.send(signal) {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(Signal::Refused { event, .. })) => {
                Err(EnqueueError::new(Error::closed(), *event))
            }
            Err(_) => unreachable!("the signal sent was a refusal"),
        }
    }
}

/// A failed `start_send` hands the event back in the [`EnqueueError`].
impl Sink<EventData> for Producer {
    type Error = EnqueueError;

    fn poll_ready(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), EnqueueError>> {
        self.poll_reserve(cx)
            .map_err(|error| EnqueueError { error, event: None })
    }

    fn start_send(mut self: Pin<&mut Self>, event: EventData) -> Result<(), EnqueueError> {
        self.accept(event)
    }

    /// A hand-off: accepted events are already with the producer, so this is ready at
    /// once and `forward` of a sparse stream still builds dense batches. Use
    /// [`Producer::flush`] to publish now and wait for outcomes.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), EnqueueError>> {
        Poll::Ready(Ok(()))
    }

    /// Publishes everything and waits for every outcome, like [`Producer::close`].
    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), EnqueueError>> {
        if self.close_done {
            return Poll::Ready(Ok(()));
        }
        if self.closing.is_none() {
            let mut handle = self.clone();
            self.closing = Some(Box::pin(async move { handle.shutdown(false).await }));
        }
        let closing = self.closing.as_mut().expect("set above");
        let result = ready!(closing.as_mut().poll(cx));
        self.closing = None;
        self.close_done = true;
        Poll::Ready(result.map_err(|error| EnqueueError { error, event: None }))
    }
}
