//! Receipts: one event's own result, for an application that waits on single events
//! (an HTTP request answered once its event is stored) rather than reading outcomes.
//!
//! The receipts of a batch share one [`Slot`], made when the batch's first receipt is
//! asked for: an event with a receipt costs a reference count, not an allocation. The
//! slot travels beside its batch (never inside the public [`Batch`](crate::Batch),
//! which is cloned for every try), the way the batch's capacity does, and the driver
//! fills it from the very outcome it queues on [`Outcomes`](crate::Outcomes): both see
//! the event, and neither waits for the other.

mod slot;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{EnqueueError, Producer};
use crate::{Error, EventData};
pub(crate) use slot::{BacklogReceipts, Receipts, Slot};

impl Producer {
    /// Waits for room, then accepts the event, as [`enqueue`](Self::enqueue) does, and
    /// gives its [`Receipt`]: a future of this one event's result,
    /// [`Delivered`](crate::Delivered) (its partition, and with idempotent retries its
    /// sequence number) or [`Failed`](crate::Failed) (the error, and the event back).
    ///
    /// Receipts and [`Outcomes`](crate::Outcomes) see the same outcome: the receipt is
    /// answered as the outcome is queued, whether or not the outcomes are read, and a
    /// receipt not awaited holds nothing up. An application that needs only receipts
    /// drops its `Outcomes` (their events then stop counting as pending as soon as
    /// they have an outcome); one that keeps it must read it, as ever, or the
    /// producer stops taking events.
    ///
    /// A receipt costs no allocation of its own: the receipts of a batch share one
    /// record of its outcome. To have many events in flight from one task, enqueue them
    /// and await their receipts later (the example below); each task of a server may
    /// also [`publish`](Self::publish) on a clone of the handle.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emulator = eventhubs_emulator::Emulator::builder().hub("eh1", 4).start().await?;
    /// use streaming_producer::{EventData, Producer};
    ///
    /// let (mut producer, outcomes) = Producer::builder()
    ///     .connection_string(&emulator.connection_string_for("eh1"))
    ///     .build()
    ///     .await?;
    /// drop(outcomes); // receipts only
    /// let mut receipts = Vec::new();
    /// for i in 0..100 {
    ///     let event = EventData::new(format!("order {i}")).with_partition_key("shop-1");
    ///     receipts.push(producer.enqueue_with_receipt(event).await?);
    /// }
    /// let mut partitions = std::collections::BTreeSet::new();
    /// for receipt in receipts {
    ///     let delivered = receipt.await?;
    ///     partitions.insert(delivered.partition().to_owned());
    /// }
    /// assert_eq!(partitions.len(), 1, "one key, one partition");
    /// producer.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_with_receipt(
        &mut self,
        event: EventData,
    ) -> Result<Receipt, EnqueueError> {
        if let Err(error) = std::future::poll_fn(|cx| self.poll_reserve(cx)).await {
            return Err(EnqueueError::new(error, event));
        }
        let receipt = self.accept(event, true)?;
        Ok(receipt.expect("asked for"))
    }

    /// Publishes one event and waits for its result: [`enqueue_with_receipt`] and
    /// the receipt awaited, as Kafka's `FutureProducer::send` does. The event is still
    /// batched with the others, so many callers publishing at once (each on its own
    /// clone of the handle) share batches.
    ///
    /// Dropping the future before it resolves never loses the event once it was
    /// accepted: it is published all the same, and its outcome comes out on
    /// [`Outcomes`](crate::Outcomes). A producer that is closed gives [`Failed`](crate::Failed)
    /// with [`Error::is_closed`] and the event back.
    ///
    /// [`enqueue_with_receipt`]: Self::enqueue_with_receipt
    pub async fn publish(&mut self, event: EventData) -> Delivery {
        self.enqueue_with_receipt(event).await?.await
    }
}

/// The result an event's [`Receipt`] resolves to.
pub type Delivery = Result<Delivered, Failed>;

/// The future of one event's result, from
/// [`Producer::enqueue_with_receipt`](crate::Producer::enqueue_with_receipt): it
/// resolves when the outcome of the event's batch is known, to [`Delivered`] or to
/// [`Failed`] (which hands the event back).
///
/// It borrows nothing, so it can be awaited on another task while the producer takes
/// more events. Dropping it changes nothing for the event: it is published all the
/// same, and its outcome still comes out on [`Outcomes`](crate::Outcomes).
#[derive(Debug)]
#[must_use = "a receipt does nothing unless awaited; drop it to ignore the result"]
pub struct Receipt {
    /// Taken when the receipt resolves (it moves into the `Delivered`).
    slot: Option<Arc<Slot>>,
    position: u32,
    /// Where this receipt's waker is among the slot's, once it waited: a batch's
    /// receipts may wait on as many tasks, so a poll again must not search them all.
    waker: Option<usize>,
}

impl Future for Receipt {
    type Output = Delivery;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Delivery> {
        let this = &mut *self;
        let Some(slot) = &this.slot else {
            panic!("a Receipt polled after it resolved");
        };
        if slot.poll_filled(cx, &mut this.waker).is_pending() {
            return Poll::Pending;
        }
        let slot = this.slot.take().expect("checked above");
        Poll::Ready(delivery(slot, this.position))
    }
}

/// What a receipt resolves to, from its filled slot.
fn delivery(slot: Arc<Slot>, position: u32) -> Delivery {
    let resolution = slot.resolution().expect("filled");
    match &resolution.failure {
        None => Ok(Delivered { slot, position }),
        Some((error, events, partition)) => Err(Failed {
            error: error.clone(),
            event: events
                .get((resolution.offset + position) as usize)
                .map(Box::new),
            partition: partition.clone(),
        }),
    }
}

/// The service stored the event.
#[derive(Clone)]
pub struct Delivered {
    /// The filled slot of the event's batch, shared with its other receipts.
    slot: Arc<Slot>,
    position: u32,
}

impl Delivered {
    fn resolution(&self) -> &slot::Resolution {
        self.slot
            .resolution()
            .expect("a delivered event's slot is filled")
    }

    /// The partition id the event was stored in.
    pub fn partition(&self) -> &str {
        &self.resolution().partition
    }

    /// With idempotent retries, the event's producer sequence number (the one the
    /// service deduplicates by); `None` otherwise.
    pub fn sequence_number(&self) -> Option<i32> {
        let r = self.resolution();
        r.first_sequence
            .map(|first| eventhubs_protocol::sequence::advance(first, r.offset + self.position))
    }
}

impl std::fmt::Debug for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivered")
            .field("partition", &self.partition())
            .field("sequence_number", &self.sequence_number())
            .finish()
    }
}

impl PartialEq for Delivered {
    fn eq(&self, other: &Self) -> bool {
        self.partition() == other.partition() && self.sequence_number() == other.sequence_number()
    }
}

/// The event was not stored (or may not have been): why, and the event back.
#[derive(Debug)]
pub struct Failed {
    error: Error,
    event: Option<Box<EventData>>,
    partition: String,
}

impl Failed {
    /// Why the event failed. [`Error::is_ambiguous`] means its batch may have been
    /// stored all the same; [`Error::is_abandoned`] that it was handed back unsent.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// Whether the event may have been stored although it is reported failed (see
    /// [`Error::is_ambiguous`]).
    pub fn is_ambiguous(&self) -> bool {
        self.error.is_ambiguous()
    }

    /// The partition id the event was for (empty if it was refused before it had
    /// one, such as by a closed producer).
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The event, as it was enqueued (decoded back from its encoding). `None` only
    /// for an event lost with a damaged [spool](crate::ProducerBuilder::spool) backlog,
    /// or if the producer stopped without an outcome for it.
    pub fn event(&self) -> Option<&EventData> {
        self.event.as_deref()
    }

    /// Takes the event back, as [`event`](Self::event) gives it.
    pub fn into_event(self) -> Option<EventData> {
        self.event.map(|e| *e)
    }

    /// Takes the error and the event apart.
    pub fn into_parts(self) -> (Error, Option<EventData>) {
        (self.error, self.event.map(|e| *e))
    }
}

impl From<EnqueueError> for Failed {
    /// An event that was never accepted (the producer closed).
    fn from(refused: EnqueueError) -> Self {
        let error = refused.error().clone();
        Self {
            error,
            event: refused.into_event().map(Box::new),
            partition: String::new(),
        }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.partition.is_empty() {
            write!(f, "the event was not published: {}", self.error)
        } else {
            write!(
                f,
                "the event for partition {} was not published: {}",
                self.partition, self.error
            )
        }
    }
}

impl std::error::Error for Failed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
