//! Receipts: one event's own result, for an application that waits on single events
//! (an HTTP request answered once its event is stored) rather than reading outcomes.
//!
//! The receipts of a batch share one [`Slot`], made when the batch's first receipt is
//! asked for: an event with a receipt costs a reference count, not an allocation. The
//! slot travels beside its batch (never inside the public [`Batch`](crate::Batch),
//! which is cloned for every try), the way the batch's capacity does, and the driver
//! fills it from the very outcome it queues on [`Outcomes`](crate::Outcomes): both see
//! the event, and neither waits for the other.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use super::outcome::BatchOutcome;
use super::{EnqueueError, Producer};
use crate::{Error, EventData, Events};

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

/// The outcome of a batch (or of the part of one that a slot's events are), as its
/// receipts read it.
struct Resolution {
    partition: Arc<str>,
    /// The slot's events start here in the outcome.
    offset: u32,
    /// With idempotent retries, the outcome's first sequence number.
    first_sequence: Option<i32>,
    /// Why the batch failed, with its events (to hand each one back); `None` if it
    /// was stored.
    failure: Option<(Error, Events, String)>,
}

/// The shared record of a batch's outcome that its receipts wait on.
#[derive(Default)]
pub(crate) struct Slot {
    resolution: OnceLock<Resolution>,
    /// Receipts waiting on another task.
    wakers: Mutex<Vec<Waker>>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("filled", &self.resolution.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Slot {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A receipt for the event at `position` among the slot's events.
    pub(crate) fn receipt(self: &Arc<Self>, position: usize) -> Receipt {
        Receipt {
            slot: Some(self.clone()),
            position: position as u32,
            waker: None,
        }
    }

    /// Fills the slot from `outcome`, whose events from `offset` on are the slot's,
    /// and wakes its receipts.
    fn resolve(&self, outcome: &BatchOutcome, offset: u32) {
        let failure = outcome
            .result
            .as_ref()
            .err()
            .map(|e| (e.clone(), outcome.events.clone(), outcome.partition.clone()));
        self.fill(Resolution {
            partition: outcome.events.partition_shared(),
            offset,
            first_sequence: outcome.starting_sequence_number,
            failure,
        });
    }

    /// Fails the slot's events, which are lost (a spool backlog that cannot be read,
    /// or a producer that stopped without their outcome). A slot already filled
    /// keeps what it has.
    pub(crate) fn lose(&self, error: &Error) {
        if self.resolution.get().is_some() {
            return;
        }
        self.fill(Resolution {
            partition: Arc::from(""),
            offset: 0,
            first_sequence: None,
            failure: Some((error.clone(), Events::default(), String::new())),
        });
    }

    fn fill(&self, resolution: Resolution) {
        let _ = self.resolution.set(resolution);
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for waker in wakers {
            waker.wake();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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
        if slot.resolution.get().is_none() {
            let mut wakers = lock(&slot.wakers);
            // Checked again under the lock the driver takes after filling the slot,
            // so the fill cannot slip in between.
            if slot.resolution.get().is_none() {
                match this.waker.and_then(|i| wakers.get_mut(i)) {
                    Some(known) if known.will_wake(cx.waker()) => {}
                    Some(known) => known.clone_from(cx.waker()),
                    None => {
                        this.waker = Some(wakers.len());
                        wakers.push(cx.waker().clone());
                    }
                }
                return Poll::Pending;
            }
        }
        let slot = self.slot.take().expect("checked above");
        let position = self.position;
        Poll::Ready(delivery(slot, position))
    }
}

/// What a receipt resolves to, from its filled slot.
fn delivery(slot: Arc<Slot>, position: u32) -> Delivery {
    let resolution = slot.resolution.get().expect("filled");
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
    fn resolution(&self) -> &Resolution {
        self.slot
            .resolution
            .get()
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

/// The receipt slots of a batch's events: its own (the receipts asked for as it
/// filled), and those of events that joined it with a slot of their own (from the
/// spool's backlog), each at the place its events start in the batch.
#[derive(Debug, Default)]
pub(crate) struct Receipts {
    own: Option<Arc<Slot>>,
    joined: Vec<(u32, Arc<Slot>)>,
}

impl Receipts {
    /// A receipt for the event at `position` of the batch.
    pub(crate) fn receipt(&mut self, position: usize) -> Receipt {
        self.own.get_or_insert_with(Slot::new).receipt(position)
    }

    /// One event's receipts, held in `slot` (an event refused before batching).
    pub(crate) fn of(slot: Option<Arc<Slot>>) -> Self {
        Self {
            own: slot,
            joined: Vec::new(),
        }
    }

    /// An event with a slot of its own joined the batch at `position`.
    pub(crate) fn join(&mut self, position: usize, slot: Arc<Slot>) {
        self.joined.push((position as u32, slot));
    }

    /// Takes over `later`'s receipts, whose events now follow `offset` events.
    pub(crate) fn merge(&mut self, offset: usize, mut later: Receipts) {
        let offset = offset as u32;
        self.joined
            .extend(later.own.take().map(|slot| (offset, slot)));
        self.joined
            .extend(later.joined.drain(..).map(|(at, slot)| (at + offset, slot)));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.own.is_none() && self.joined.is_empty()
    }

    /// Fills every slot from the batch's `outcome`.
    pub(crate) fn resolve(mut self, outcome: &BatchOutcome) {
        if let Some(own) = self.own.take() {
            own.resolve(outcome, 0);
        }
        for (at, slot) in self.joined.drain(..) {
            slot.resolve(outcome, at);
        }
    }
}

/// The producer stopped without the events' outcome.
fn stopped() -> Error {
    Error::connection("the producer stopped before the event's outcome")
}

/// Receipts dropped without their batch's outcome (the producer's driver stopped)
/// fail rather than leave their awaiters waiting forever.
impl Drop for Receipts {
    fn drop(&mut self) {
        for slot in self.own.iter().chain(self.joined.iter().map(|(_, s)| s)) {
            slot.lose(&stopped());
        }
    }
}

/// The receipts of the spool's backlog: by partition id, then by index in the spool
/// (the backlog is on disk; its events' receipts wait here).
#[derive(Debug, Default)]
pub(crate) struct BacklogReceipts(HashMap<String, HashMap<u64, Arc<Slot>>>);

impl BacklogReceipts {
    /// Keeps the receipt slot of the backlog's event `index` of `partition`.
    pub(crate) fn insert(&mut self, partition: &str, index: u64, slot: Arc<Slot>) {
        self.0
            .entry(partition.to_owned())
            .or_default()
            .insert(index, slot);
    }

    /// Takes the receipt slot of the backlog's event `index` of `partition`.
    pub(crate) fn take(&mut self, partition: &str, index: u64) -> Option<Arc<Slot>> {
        self.0.get_mut(partition)?.remove(&index)
    }

    /// The receipt slots of `partition`, if it has any.
    pub(crate) fn of(&mut self, partition: &str) -> Option<&mut HashMap<u64, Arc<Slot>>> {
        self.0.get_mut(partition)
    }

    /// Fails every slot, with `error`: their events are lost.
    pub(crate) fn lose_all(&mut self, error: &Error) {
        for slot in self.0.drain().flat_map(|(_, slots)| slots.into_values()) {
            slot.lose(error);
        }
    }
}

/// Slots still here when the producer is gone fail rather than leave their receipts
/// waiting forever.
impl Drop for BacklogReceipts {
    fn drop(&mut self) {
        self.lose_all(&stopped());
    }
}

/// Fills the slot of the one event at `position` in `outcome` (an event that waited
/// in the spool's backlog).
pub(crate) fn answer(outcome: &BatchOutcome, position: usize, slot: &Slot) {
    slot.resolve(outcome, position as u32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receipts_dropped_without_an_outcome_fail_instead_of_waiting_forever() {
        let mut receipts = Receipts::default();
        let first = receipts.receipt(0);
        let second = receipts.receipt(1);
        let mut backlog = BacklogReceipts::default();
        let spilled = Slot::new();
        backlog.insert("0", 7, spilled.clone());
        let third = spilled.receipt(0);
        drop(receipts);
        drop(backlog);
        for receipt in [first, second, third] {
            let failed = receipt.await.unwrap_err();
            assert!(failed.error().to_string().contains("stopped"), "{failed}");
            assert!(failed.event().is_none());
        }
    }

    #[tokio::test]
    async fn a_receipt_waiting_on_another_task_is_woken_by_the_outcome() {
        let mut receipts = Receipts::default();
        let receipt = receipts.receipt(2);
        let waiting = tokio::spawn(receipt);
        tokio::task::yield_now().await;
        let events = Events::from_encoded("3", Vec::new(), Vec::new());
        let outcome = BatchOutcome {
            partition: "3".into(),
            events,
            size_in_bytes: 0,
            starting_sequence_number: Some(i32::MAX - 1),
            result: Ok(()),
            recovered: false,
        };
        receipts.resolve(&outcome);
        let delivered = waiting.await.unwrap().unwrap();
        assert_eq!(delivered.partition(), "3");
        assert_eq!(delivered.sequence_number(), Some(0), "wraps past i32::MAX");
    }
}
