//! A batch: events of one partition, encoded, weighed in bytes.

use std::sync::{Arc, Mutex};

use fe2o3_amqp::types::messaging::{Batch as Sections, Data};

use streaming_producer_layers::PartitionBatch;

use crate::codec::{self, section_size, Stamp};
use crate::event::{EventData, Routing};
use crate::events::Events;
use crate::spool::Spool;

/// Events for one partition, AMQP-encoded, ready to be published as one batched
/// message.
///
/// A batch is what travels through each partition's tower stack. Cloning it is cheap
/// (the encoded events sit behind an `Arc`), so a retry layer resends a clone and the
/// producer keeps one to report the outcome with: nothing is lost whatever a layer
/// returns.
/// What a try learns (the sequence numbers given to it, whether it may have been
/// stored) is shared by every clone.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each event encoded as a whole AMQP message, as the batched message's data
    /// sections: written into each try's payload as they are, never encoded again.
    events: Events,
    size: usize,
    /// When its events' delivery timeout runs out (from the oldest event's acceptance).
    deadline: Option<tokio::time::Instant>,
    tries: Mutex<Tries>,
    /// The spool its events are in, if the producer has one.
    spool: Option<Spool>,
}

/// What tries of the batch learned; shared by its clones.
#[derive(Debug, Default, Clone)]
struct Tries {
    /// With idempotent publishing: the first event's numbers; the others follow.
    stamp: Option<Stamp>,
    /// A try reached the service (or may have) and brought back no verdict.
    maybe_stored: bool,
    /// Sent one message per event (to a generic broker): which events the broker
    /// accepted, so that a retry sends only the others. Empty until one is.
    accepted: Vec<bool>,
    /// With a spool: where the log must be durable before the batch goes out, after
    /// its numbering was logged.
    barrier: Option<u64>,
    /// Tries the retry policy made beyond the first.
    retries: u32,
}

impl Clone for Inner {
    fn clone(&self) -> Self {
        Self {
            events: self.events.clone(),
            size: self.size,
            deadline: self.deadline,
            tries: Mutex::new(lock(&self.tries).clone()),
            spool: self.spool.clone(),
        }
    }
}

/// Whether the event was routed by partition id (which its encoding does not say).
pub(crate) fn pinned(event: &EventData) -> bool {
    matches!(event.routing(), Routing::PartitionId(_))
}

/// A batch being filled in its partition's lane: plain vectors, so adding an event
/// costs no atomic uniqueness check (`Arc::make_mut` makes one per call, and a
/// [`Batch`] needs two per event); it becomes a `Batch` when sealed.
#[derive(Debug)]
pub(crate) struct Filling {
    partition: String,
    sections: Vec<Data>,
    pinned: Vec<u32>,
    size: usize,
    /// Where its events are in the spool.
    spooled: Vec<(u64, u32)>,
    /// Its events were recovered from the spool.
    recovered: bool,
}

impl Filling {
    /// An empty batch for `partition`, with room for `events` events.
    pub(crate) fn new(partition: String, events: usize, recovered: bool) -> Self {
        Self {
            partition,
            sections: Vec::with_capacity(events),
            pinned: Vec::new(),
            size: 0,
            spooled: Vec::new(),
            recovered,
        }
    }

    /// Whether its events were recovered from the spool.
    pub(crate) fn is_recovered(&self) -> bool {
        self.recovered
    }

    pub(crate) fn len(&self) -> usize {
        self.sections.len()
    }

    /// What the batch weighs so far, as [`Batch::size_in_bytes`].
    pub(crate) fn size_in_bytes(&self) -> usize {
        self.size
    }

    /// As [`Batch::push`]; `spooled` is the event's index in the spool, if it is in
    /// one.
    pub(crate) fn push(&mut self, pinned: bool, encoded: Vec<u8>, spooled: Option<u64>) {
        self.size += Batch::cost(&encoded);
        if pinned {
            self.pinned.push(self.sections.len() as u32);
        }
        self.sections.push(Data(encoded.into()));
        if let Some(index) = spooled {
            crate::events::push_span(&mut self.spooled, index, 1);
        }
    }

    /// The batch, its encode buffers going back to `pool` once its events are dropped.
    pub(crate) fn seal(self, pool: &Arc<crate::pool::BufferPool>, spool: Option<&Spool>) -> Batch {
        let mut events = Events::from_encoded(&self.partition, self.sections, self.pinned)
            .spooled_at(self.spooled, self.recovered);
        events.recycle_into(pool);
        Batch {
            inner: Arc::new(Inner {
                events,
                size: self.size,
                spool: spool.cloned(),
                ..Inner::default()
            }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Batch {
    /// An empty batch for `partition`.
    pub fn new(partition: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                events: Events::empty(&partition.into()),
                ..Inner::default()
            }),
        }
    }

    /// For changes before the batch is published: a batch shared with clones is
    /// copied first, so the clones keep what they had.
    fn inner_mut(&mut self) -> &mut Inner {
        Arc::make_mut(&mut self.inner)
    }

    /// The partition the batch goes to.
    pub fn partition(&self) -> &str {
        self.inner.events.partition()
    }

    /// The events, in publishing order (decoded when read).
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// Takes the events out (sharing them with any clone of the batch still alive).
    pub fn into_events(self) -> Events {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner.events,
            Err(shared) => shared.events.clone(),
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.inner.events.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.inner.events.is_empty()
    }

    /// Size of the batched message in encoded bytes.
    pub fn size_in_bytes(&self) -> usize {
        self.inner.size
    }

    /// Encodes `event` (its key, if it has one, as `x-opt-partition-key`) and adds it
    /// if the batched message then weighs at most `max_size_in_bytes` (a link's
    /// `max-message-size`); otherwise hands it back and leaves the batch as it was.
    ///
    /// For a batch service of your own, or to publish a batch through
    /// [`AmqpSend`](crate::AmqpSend) yourself. The producer does not fill its batches
    /// this way: each partition's lane fills a batch of the crate's own, which costs
    /// less per event, and makes a `Batch` of it when it is sealed.
    ///
    /// ```
    /// use streaming_producer::{Batch, EventData};
    ///
    /// let mut batch = Batch::new("0");
    /// assert!(batch.try_push(EventData::new("small"), 1024).is_ok());
    /// let refused = batch.try_push(EventData::new(vec![0u8; 2000]), 1024);
    /// assert_eq!(refused.unwrap_err().body().len(), 2000);
    /// assert_eq!(batch.len(), 1);
    /// assert!(batch.size_in_bytes() <= 1024);
    /// ```
    // The refused event comes back by value, as `TrySendError<T>` does in tokio.
    #[allow(clippy::result_large_err)]
    pub fn try_push(
        &mut self,
        event: EventData,
        max_size_in_bytes: usize,
    ) -> Result<(), EventData> {
        let encoded = codec::encode(&event, false);
        if self.size_in_bytes() + Self::cost(&encoded) > max_size_in_bytes {
            return Err(event);
        }
        self.push(&event, encoded);
        Ok(())
    }

    /// The bytes `encoded` would add.
    pub(crate) fn cost(encoded: &[u8]) -> usize {
        section_size(encoded.len())
    }

    /// Adds an event's encoding (the caller checked that it fits); the event itself
    /// is not kept.
    pub(crate) fn push(&mut self, event: &EventData, encoded: Vec<u8>) {
        let inner = self.inner_mut();
        inner.size += Self::cost(&encoded);
        inner.events.push_encoded(encoded, pinned(event));
    }

    /// Whether its events were recovered from the spool.
    pub(crate) fn is_recovered(&self) -> bool {
        self.inner.events.is_recovered()
    }

    /// With a spool, once a numbering was logged for this batch: waits until the log
    /// is durable that far, so that a restart knows the numbers the batch goes out
    /// with. A spool that cannot be written any more does not hold the batch up.
    pub(crate) async fn numbering_durable(&self) {
        let barrier = lock(&self.inner.tries).barrier;
        if let (Some(target), Some(spool)) = (barrier, &self.inner.spool) {
            if let Err(e) = spool.durable(Some(target)).await {
                tracing::warn!(
                    partition = self.partition(),
                    "sending without the spool's record of the batch's numbers: {e}"
                );
            }
        }
    }

    /// Moves the events of `later` (for the same partition, not yet numbered) behind
    /// this batch's; the deadline stays the earlier one.
    pub(crate) fn append(&mut self, later: Batch) {
        debug_assert!(self.stamp().is_none() && later.stamp().is_none());
        let later = Arc::try_unwrap(later.inner).unwrap_or_else(|shared| (*shared).clone());
        let inner = self.inner_mut();
        inner.size += later.size;
        inner.events.append(later.events);
        inner.deadline = match (inner.deadline, later.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// The data sections, shared (not copied) with every clone and every try.
    pub(crate) fn sections(&self) -> &Arc<Sections<Data>> {
        self.inner.events.sections()
    }

    /// With idempotent retries: the producer sequence number of the first event; the
    /// others follow it, one each (wrapping from `i32::MAX` to 0). Set once the batch
    /// is numbered for publishing, and kept across retries.
    pub fn starting_sequence_number(&self) -> Option<i32> {
        self.stamp().map(|s| s.sequence)
    }

    /// When the delivery timeout of the batch's oldest event runs out: no try starts
    /// after it and a try in progress is cut short by it. `None` for no limit.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.inner.deadline
    }

    /// Sets the deadline (see [`deadline`](Self::deadline)).
    pub fn set_deadline(&mut self, deadline: Option<tokio::time::Instant>) {
        self.inner_mut().deadline = deadline;
    }

    /// Whether a try of this batch reached the service, or may have, without a
    /// verdict coming back (a lost connection, a try timed out after the transfer):
    /// the service may hold the batch even if it is finally reported failed.
    pub fn may_have_been_stored(&self) -> bool {
        lock(&self.inner.tries).maybe_stored
    }

    /// Records that a try may have reached the service without a verdict (see
    /// [`may_have_been_stored`](Self::may_have_been_stored)); every clone sees it. A
    /// transport of your own calls this when it loses track of a transfer.
    pub fn mark_maybe_stored(&self) {
        lock(&self.inner.tries).maybe_stored = true;
    }

    /// Sent one message per event: the events the broker has not accepted yet, by
    /// their place in the batch.
    pub(crate) fn unaccepted(&self) -> Vec<usize> {
        let tries = lock(&self.inner.tries);
        (0..self.len())
            .filter(|&i| !tries.accepted.get(i).copied().unwrap_or(false))
            .collect()
    }

    /// Records that the broker accepted the event at `index`; every clone sees it.
    pub(crate) fn mark_accepted(&self, index: usize) {
        let mut tries = lock(&self.inner.tries);
        if tries.accepted.len() < self.len() {
            tries.accepted.resize(self.len(), false);
        }
        if let Some(slot) = tries.accepted.get_mut(index) {
            *slot = true;
        }
    }

    /// How many of the batch's events the broker accepted (sent one message per
    /// event).
    pub(crate) fn accepted_count(&self) -> usize {
        lock(&self.inner.tries)
            .accepted
            .iter()
            .filter(|a| **a)
            .count()
    }

    pub(crate) fn stamp(&self) -> Option<Stamp> {
        lock(&self.inner.tries).stamp
    }

    /// Tries the retry policy made beyond the first, over every clone.
    pub(crate) fn retries(&self) -> u32 {
        lock(&self.inner.tries).retries
    }
}

/// What the stack's layers ask of a batch; each method is the inherent one of the
/// same name, but for the stamp, which only the idempotency layer sets.
impl PartitionBatch for Batch {
    fn partition(&self) -> &str {
        Batch::partition(self)
    }

    fn len(&self) -> usize {
        Batch::len(self)
    }

    fn size_in_bytes(&self) -> usize {
        Batch::size_in_bytes(self)
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        Batch::deadline(self)
    }

    fn may_have_been_stored(&self) -> bool {
        Batch::may_have_been_stored(self)
    }

    fn set_stamp(&self, stamp: Option<Stamp>) {
        let barrier = match (stamp, &self.inner.spool) {
            (Some(stamp), Some(spool)) => self
                .inner
                .events
                .spooled()
                .first()
                .and_then(|&(first, _)| spool.numbered(self.partition(), first, stamp)),
            _ => None,
        };
        let mut tries = lock(&self.inner.tries);
        tries.stamp = stamp;
        if barrier.is_some() {
            tries.barrier = barrier;
        }
    }

    fn note_retry(&self) {
        let mut tries = lock(&self.inner.tries);
        tries.retries = tries.retries.saturating_add(1);
    }
}
