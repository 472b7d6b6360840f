//! The `Sink` side of the producer: reserving room for an event and accepting it.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};

use futures_sink::Sink;
use tokio_util::sync::ReusableBoxFuture;

use super::driver::Signal;
use super::handle::CloseState;
use super::lanes::{Entry, Outbox as _};
use super::receipt::{Receipt, Slot as ReceiptSlot};
use super::{EnqueueError, Producer};
use crate::batch::Batch;
use crate::codec;
use crate::route::Route;
use crate::Error;
use crate::{EventData, Routing};

/// How long an event waits for room in memory before it goes to the spool's backlog
/// instead: longer than the pending bound's ordinary waits under load (where events
/// are better kept in memory), short enough that an outage is ridden out on disk.
const SPILL_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

impl Producer {
    pub(super) fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(Error::closed()));
        }
        if let Some(spool) = &self.shared.spool {
            // With a spool, an event takes a slot in memory, waiting for one as long as
            // SPILL_AFTER at most; past that (an outage), or while events accepted
            // earlier wait on disk (they keep their order), it goes to the spool's
            // backlog. Every event is in the spool, so its bound comes first.
            loop {
                let admit = match self.spool_wait {
                    None => spool.admit()?,
                    Some(_) => None,
                };
                if let Some(backlog) = admit {
                    if !backlog {
                        let inbox = &self.inbox;
                        match self.reservation.poll_reserve(cx, || inbox.starve()) {
                            Poll::Ready(result) => {
                                self.spill_timer = None;
                                return Poll::Ready(result);
                            }
                            Poll::Pending => {
                                let timer = self.spill_timer.get_or_insert_with(|| {
                                    Box::pin(tokio::time::sleep(SPILL_AFTER))
                                });
                                if timer.as_mut().poll(cx).is_pending() {
                                    return Poll::Pending;
                                }
                                self.spill_timer = None;
                            }
                        }
                    }
                    self.reservation.spill();
                    return Poll::Ready(Ok(()));
                }
                let wait = self
                    .spool_wait
                    .get_or_insert_with(|| ReusableBoxFuture::new(spool.clone().room()));
                if wait.poll(cx).is_pending() {
                    self.inbox.starve();
                    return Poll::Pending;
                }
                self.spool_wait = None;
            }
        }
        let inbox = &self.inbox;
        self.reservation.poll_reserve(cx, || inbox.starve())
    }

    /// Routes, encodes and adds the event to its partition's open batch; needs a
    /// reserved slot. Gives the event's receipt if `receipt` asks for one.
    pub(super) fn accept(
        &mut self,
        event: EventData,
        receipt: bool,
    ) -> Result<Option<Receipt>, EnqueueError> {
        let slot = self.reservation.take();
        let spill = self.reservation.take_spill();
        if slot.is_none() && !spill {
            return Err(EnqueueError::new(
                Error::config("poll_ready must succeed before start_send"),
                event,
            ));
        }
        #[cfg(feature = "opentelemetry")]
        let event = crate::trace_context::stamp(event);
        let shared = &self.shared;
        let ids = self.router.current(&mut self.ids);
        if self.spare.is_empty() {
            self.spare = shared.buffers.take().unwrap_or_default();
        }
        let buffer = self.spare.pop().unwrap_or_default();
        let encoded = codec::encode_into(buffer, &event, shared.idempotent);
        let cost = Batch::cost(&encoded);
        let refused = match self.router.route(ids, event.routing(), cost) {
            Ok(Route { partition, left }) => {
                if let Some(left) = left {
                    // The sticky router moved on: the partition it left gets nothing
                    // more for a while, so its batch is complete. (A closed producer
                    // refuses the event below.)
                    shared.seal_with(left, |sealed| sealed.map(|s| self.inbox.sealed(s)));
                }
                if cost <= shared.max_batch_bytes {
                    let entry = Entry {
                        event,
                        encoded,
                        cost,
                        slot,
                        receipt,
                    };
                    return shared
                        .append(&self.inbox, partition, &ids[partition], entry)
                        .map_err(|(error, event)| EnqueueError::new(error, event));
                }
                (
                    ids[partition].clone(),
                    Error::too_large(cost, shared.max_batch_bytes),
                )
            }
            Err(error) => {
                let id = match event.routing() {
                    Routing::PartitionId(id) => id.clone(),
                    _ => String::new(),
                };
                (id, error)
            }
        };
        // An event that can never be published still gets its outcome, and counts
        // until then; one bound for the spool's backlog (there was no room in memory
        // for its outcome) is handed back with the error instead.
        let Some(slot) = slot else {
            return Err(EnqueueError::new(refused.1, event));
        };
        if shared.closed.load(Ordering::SeqCst) {
            shared.budget.unreserve(slot);
            return Err(EnqueueError::new(Error::closed(), event));
        }
        let (partition, error) = refused;
        let capacity = shared.capacity_of(slot, event.body().len());
        let receipt_slot = receipt.then(ReceiptSlot::new);
        let receipt = receipt_slot.as_ref().map(|s| s.receipt(0));
        let signal = Signal::Refused {
            partition,
            event: Box::new(event),
            error,
            capacity,
            receipt: receipt_slot,
        };
        match self.inbox.send(signal) {
            Ok(()) => Ok(receipt),
            Err(Signal::Refused { event, .. }) => Err(EnqueueError::new(Error::closed(), *event)),
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
        self.accept(event, false).map(drop)
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
        loop {
            match &mut self.closing {
                CloseState::Closed => return Poll::Ready(Ok(())),
                CloseState::Open => {
                    let mut handle = self.clone();
                    self.closing =
                        CloseState::Closing(Box::pin(async move { handle.shutdown(false).await }));
                }
                CloseState::Closing(closing) => {
                    let result = ready!(closing.as_mut().poll(cx));
                    self.closing = CloseState::Closed;
                    return Poll::Ready(
                        result.map_err(|error| EnqueueError { error, event: None }),
                    );
                }
            }
        }
    }
}
