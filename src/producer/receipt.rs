//! Receipts: one event's own result, for an application that waits on single events
//! (an HTTP request answered once its event is stored) rather than reading outcomes.
//!
//! A receipt's sending half travels beside its batch (never inside the public
//! [`Batch`](crate::Batch), which is cloned for every try), the way the batch's
//! capacity does, and is resolved by the driver from the very outcome it queues on
//! [`Outcomes`](crate::Outcomes): both see the event, and neither waits for the other.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::outcome::BatchOutcome;
use super::{EnqueueError, Producer};
use crate::{Error, EventData};

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
    /// A receipt costs one small allocation. To have many events in flight from one
    /// task, enqueue them and await their receipts later (the example below); each
    /// task of a server may also [`publish`](Self::publish) on a clone of the handle.
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
        let (tx, receipt) = Receipt::new();
        self.accept(event, Some(tx))?;
        Ok(receipt)
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

/// Where the driver sends an event's result.
pub(crate) type ReceiptTx = oneshot::Sender<Delivery>;

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
    rx: oneshot::Receiver<Delivery>,
}

impl Receipt {
    pub(crate) fn new() -> (ReceiptTx, Self) {
        let (tx, rx) = oneshot::channel();
        (tx, Self { rx })
    }
}

impl Future for Receipt {
    type Output = Delivery;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Delivery> {
        Pin::new(&mut self.rx).poll(cx).map(|sent| {
            // Every accepted event's receipt is resolved with its outcome; the sending
            // half goes unanswered only if the producer's driver died, which must not
            // leave the caller waiting forever.
            sent.unwrap_or_else(|_| {
                Err(Failed {
                    error: Error::connection("the producer stopped before the event's outcome"),
                    event: None,
                    partition: String::new(),
                })
            })
        })
    }
}

/// The service stored the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    partition: Arc<str>,
    sequence_number: Option<i32>,
}

impl Delivered {
    /// The partition id the event was stored in.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// With idempotent retries, the event's producer sequence number (the one the
    /// service deduplicates by); `None` otherwise.
    pub fn sequence_number(&self) -> Option<i32> {
        self.sequence_number
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

/// The receipts of a batch's events, by their place in it; empty (and unallocated)
/// for a batch whose events have none.
#[derive(Debug, Default)]
pub(crate) struct Receipts(Vec<(u32, ReceiptTx)>);

impl Receipts {
    /// The receipt of the event at `position`.
    pub(crate) fn push(&mut self, position: usize, tx: ReceiptTx) {
        self.0.push((position as u32, tx));
    }

    /// One event's receipt.
    pub(crate) fn one(tx: Option<ReceiptTx>) -> Self {
        Self(tx.map(|tx| (0, tx)).into_iter().collect())
    }

    /// Takes over `later`'s receipts, whose events now follow `offset` events.
    pub(crate) fn merge(&mut self, offset: usize, later: Receipts) {
        let offset = offset as u32;
        self.0
            .extend(later.0.into_iter().map(|(i, tx)| (i + offset, tx)));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Answers each receipt from its batch's `outcome`.
    pub(crate) fn resolve(self, outcome: &BatchOutcome) {
        for (position, tx) in self.0 {
            answer(outcome, position as usize, tx);
        }
    }
}

/// Answers the receipt of the event at `position` in `outcome`.
pub(crate) fn answer(outcome: &BatchOutcome, position: usize, tx: ReceiptTx) {
    // A dropped receipt costs nothing more: not even the decode of a failed event.
    if tx.is_closed() {
        return;
    }
    let delivery = match &outcome.result {
        Ok(()) => Ok(Delivered {
            partition: outcome.events.partition_shared(),
            sequence_number: outcome
                .starting_sequence_number
                .map(|first| eventhubs_protocol::sequence::advance(first, position as u32)),
        }),
        Err(error) => Err(Failed {
            error: error.clone(),
            event: outcome.events.get(position).map(Box::new),
            partition: outcome.partition.clone(),
        }),
    };
    let _ = tx.send(delivery);
}

/// A receipt lost with the events it was for (a spool backlog that cannot be read).
pub(crate) fn lost(tx: ReceiptTx, error: &Error) {
    let _ = tx.send(Err(Failed {
        error: error.clone(),
        event: None,
        partition: String::new(),
    }));
}
