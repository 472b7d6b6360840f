//! The event tier: each partition's open batch, filled by the producer handles in
//! their own task under that partition's lock. The driver hears of a batch only when
//! it opens (to arm its `max_wait` deadline) and when it is sealed, so an event costs
//! no channel message, no allocation of its own beyond its encoding, and no task
//! wake-up.
//!
//! Whatever seals a batch (it is full, a flush, a close) takes it out of its lane and
//! sends it to the driver while holding the lane's lock, so the driver receives a
//! partition's batches in the order they were filled, and a flush or close that
//! sweeps the lanes is received after every batch that holds an earlier event.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use super::capacity::{Budget, Capacity, Settled, Slot};
use crate::spool::Spool;
use crate::Error;

use super::receipt::{BacklogReceipts, Receipt, Receipts};
use super::stats::Stats;
use crate::batch::{Batch, Filling};
use crate::event::EventData;
use crate::pool::BufferPool;
use crate::route::Index;

/// Where a lane tells the driver of a batch that opened (to arm its `max_wait`
/// deadline) or was sealed (to publish it), under the lane's lock: the driver's inbox.
pub(crate) trait Outbox {
    /// A batch of `partition` opened at `opened`; `generation` tells it apart from the
    /// partition's earlier batches.
    fn opened(&self, partition: Index, generation: u64, opened: Instant);
    /// A batch to publish.
    fn sealed(&self, sealed: Sealed);
}

/// An event on its way into a lane: encoded, weighed, with its reserved slot (none:
/// memory is full, and the event goes to the spool's backlog).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) event: EventData,
    pub(crate) encoded: Vec<u8>,
    /// What it weighs in a batch, in bytes.
    pub(crate) cost: usize,
    pub(crate) slot: Option<Slot>,
    /// Whether it was enqueued with a receipt.
    pub(crate) receipt: bool,
}

/// A batch being sealed on its way to the driver.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) partition: Index,
    pub(crate) batch: Batch,
    /// When its oldest event's delivery timeout began (before `opened` for events
    /// that waited in the spool's backlog).
    pub(crate) oldest: Instant,
    pub(crate) capacity: Capacity,
    pub(crate) receipts: Receipts,
    /// Tells it apart from the partition's other batches (as in [`Outbox::opened`]).
    pub(crate) generation: u64,
}

#[derive(Debug)]
struct Open {
    batch: Filling,
    /// When its oldest event's delivery timeout began (when it opened, unless that
    /// event waited in the spool's backlog).
    oldest: Instant,
    capacity: Capacity,
    receipts: Receipts,
    generation: u64,
}

/// A partition's lane: its open batch, and how many of its events are pending.
///
/// An event is pending from its acceptance until its outcome is handed out (or
/// dropped unread), as long as it holds the producer's capacity: `accepted` counts up
/// here, under the lane's lock, and `settled` is counted by the capacity of the
/// event's batch when it is given back (once per batch, from whatever thread).
#[derive(Debug, Default)]
pub(crate) struct Lane {
    open: Option<Open>,
    accepted: usize,
    settled: Arc<Settled>,
    /// Bodies' bytes of the accepted events, as `settled` counts them.
    accepted_bytes: usize,
    /// Numbers the batches opened here, so that a `max_wait` deadline finds its own.
    generation: u64,
    /// How many events the last batch sealed here held: room made up front for the
    /// next, so that filling it rarely grows (and copies) its vectors.
    last_len: usize,
}

impl Lane {
    fn seal(
        &mut self,
        partition: Index,
        pool: &Arc<BufferPool>,
        spool: Option<&Spool>,
    ) -> Option<Sealed> {
        let open = self.open.take()?;
        self.last_len = open.batch.len();
        Some(Sealed {
            partition,
            batch: open.batch.seal(pool, spool),
            oldest: open.oldest,
            capacity: open.capacity,
            receipts: open.receipts,
            generation: open.generation,
        })
    }
}

/// What [`Shared::seal_at_least`] found.
#[derive(Debug)]
pub(crate) enum Take {
    Sealed(Sealed),
    /// The open batch holds fewer events than asked for; it stays open.
    TooSmall,
    /// No batch is open.
    Empty,
}

/// The lanes, with what the handles and the driver share of them: the capacity they
/// hold, the encode buffers they recycle, and whether the producer is closed.
pub(crate) struct Shared {
    /// Events are encoded with room for the idempotent annotations.
    pub(crate) idempotent: bool,
    /// One per partition the hub can have, so a grown hub needs no new lanes.
    lanes: Vec<Mutex<Lane>>,
    pub(crate) budget: Arc<Budget>,
    pub(crate) max_batch_bytes: usize,
    /// Encode buffers of published batches, for the handles to reuse.
    pub(crate) buffers: Arc<BufferPool>,
    pub(crate) closed: AtomicBool,
    /// Becomes true when the driver has reported everything and closed the connection.
    pub(crate) finished: tokio::sync::watch::Receiver<bool>,
    /// The log on disk each accepted event is appended to, with store and forward.
    pub(crate) spool: Option<Spool>,
    /// How many events the spool held when the producer was built.
    pub(crate) recovered: usize,
    /// A close that abandons pending events is under way (the loader hands the
    /// spool's backlog back too).
    pub(crate) abandoning: AtomicBool,
    /// How many producer handles there are: the last one gone tells the driver.
    pub(crate) handles: AtomicUsize,
    /// Set once the producer is built (recovery done): the spool's loader waits for
    /// it, so that it knows what the service already stored before it loads.
    pub(crate) loader_go: tokio::sync::watch::Sender<bool>,
    /// The receipts of events in the spool's backlog, by partition id and index in
    /// the spool (the backlog is on disk; its events' receipts wait here).
    pub(crate) backlog_receipts: BacklogReceipts,
    /// What the driver counts of each partition's sends and outcomes.
    pub(crate) stats: Stats,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("lanes", &self.lanes.len())
            .field("max_batch_bytes", &self.max_batch_bytes)
            .finish_non_exhaustive()
    }
}

/// What [`Shared::new`] makes the lanes of.
#[derive(Debug)]
pub(crate) struct LaneSettings {
    /// Encode events with room for the idempotent annotations.
    pub(crate) idempotent: bool,
    /// How many lanes: the most partitions the hub may grow to.
    pub(crate) lanes: usize,
    /// The largest batch, in encoded bytes.
    pub(crate) max_batch_bytes: usize,
    pub(crate) spool: Option<Spool>,
    /// How many events the spool held when it was opened.
    pub(crate) recovered: usize,
}

impl Shared {
    pub(crate) fn new(
        settings: LaneSettings,
        budget: Arc<Budget>,
        finished: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let budget_events = budget.max_events();
        Self {
            idempotent: settings.idempotent,
            lanes: (0..settings.lanes).map(|_| Mutex::default()).collect(),
            budget,
            max_batch_bytes: settings.max_batch_bytes,
            buffers: Arc::new(BufferPool::new(budget_events)),
            closed: AtomicBool::new(false),
            finished,
            spool: settings.spool,
            recovered: settings.recovered,
            abandoning: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
            loader_go: tokio::sync::watch::Sender::new(false),
            backlog_receipts: BacklogReceipts::default(),
            stats: Stats::new(settings.lanes, settings.max_batch_bytes),
        }
    }

    fn lane(&self, partition: Index) -> MutexGuard<'_, Lane> {
        self.lanes[partition]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an encoded event to the open batch of `partition` (whose id is `id`),
    /// opening one or sealing the full one first as needed, and tells `out` what the
    /// driver must know. With a spool, the event is appended to it first, under the
    /// same lock, so the spool holds each partition's events in publishing order. If
    /// the producer was closed before the event got in, or the spool cannot take it,
    /// the event comes back with the error. The event's receipt, if it asked for one.
    // The event comes back by value, as `TrySendError<T>` does in tokio.
    // Inlined into the handle's accept, its one caller: it runs once per event.
    #[inline]
    #[allow(clippy::result_large_err)]
    pub(crate) fn append(
        &self,
        out: &impl Outbox,
        partition: Index,
        id: &str,
        entry: Entry,
    ) -> Result<Option<Receipt>, (Error, EventData)> {
        let Entry {
            event,
            encoded,
            cost,
            slot,
            receipt,
        } = entry;
        let body = event.body().len();
        let pinned = crate::batch::pinned(&event);
        let mut lane = self.lane(partition);
        // Checked under the lane's lock: a close sets the flag, then sweeps every lane
        // under its lock, so no event gets into a lane after the sweep.
        if self.closed.load(Ordering::SeqCst) {
            if let Some(slot) = slot {
                self.budget.unreserve(slot);
            }
            return Err((Error::closed(), event));
        }
        let spooled = match &self.spool {
            Some(spool) => match spool.append(id, pinned, &encoded, slot.is_none()) {
                // Memory is full, or the backlog holds events accepted earlier: the
                // event joins the backlog, and the loader brings it in its turn.
                Ok((index, true)) => {
                    if let Some(slot) = slot {
                        self.budget.unreserve(slot);
                    }
                    return Ok(receipt.then(|| self.backlog_receipts.receipt(id, index)));
                }
                Ok((index, false)) => Some(index),
                Err(error) => {
                    if let Some(slot) = slot {
                        self.budget.unreserve(slot);
                    }
                    return Err((error, event));
                }
            },
            None => None,
        };
        let Some(slot) = slot else {
            return Err((
                Error::config("poll_ready must succeed before start_send"),
                event,
            ));
        };
        drop(event);
        let open = self.fill(
            &mut lane,
            out,
            partition,
            id,
            (pinned, encoded, cost),
            spooled,
            (false, None),
            (slot, body),
        );
        let receipt = receipt.then(|| open.receipts.receipt(open.batch.len() - 1));
        self.seal_if_full(&mut lane, out, partition);
        Ok(receipt)
    }

    /// Puts an encoded event (`(pinned, encoding, cost)`) into the lane's open batch,
    /// sealing the open one first if it is full or of the other kind (recovered or
    /// not) and opening one if needed. `accepted` is when the event's delivery
    /// timeout began, if not now. The event's capacity (`slot`, and `body`, its body's
    /// bytes) goes with the batch. Returns the open batch, the event last in it.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn fill<'a>(
        &self,
        lane: &'a mut Lane,
        out: &impl Outbox,
        partition: Index,
        id: &str,
        (pinned, encoded, cost): (bool, Vec<u8>, usize),
        spooled: Option<u64>,
        (recovered, accepted): (bool, Option<Instant>),
        (slot, body): (Slot, usize),
    ) -> &'a mut Open {
        if lane.open.as_ref().is_some_and(|o| {
            o.batch.size_in_bytes() + cost > self.max_batch_bytes
                || o.batch.is_recovered() != recovered
        }) {
            let sealed = lane.seal(partition, &self.buffers, self.spool.as_ref());
            out.sealed(sealed.expect("open"));
        }
        if lane.open.is_none() {
            lane.generation += 1;
            let opened = Instant::now();
            let batch = Filling::new(id.to_owned(), lane.last_len, recovered);
            lane.open = Some(Open {
                batch,
                oldest: opened,
                capacity: Capacity::for_lane(&self.budget, &lane.settled),
                receipts: Receipts::default(),
                generation: lane.generation,
            });
            out.opened(partition, lane.generation, opened);
        }
        lane.accepted += 1;
        lane.accepted_bytes += body;
        self.budget.count_bytes(body);
        let open = lane.open.as_mut().expect("opened above");
        if let Some(accepted) = accepted {
            open.oldest = open.oldest.min(accepted);
        }
        open.batch.push(pinned, encoded, spooled);
        open.capacity.add(slot, body);
        open
    }

    #[inline]
    fn seal_if_full(&self, lane: &mut Lane, out: &impl Outbox, partition: Index) {
        if lane
            .open
            .as_ref()
            .is_some_and(|o| o.batch.size_in_bytes() >= self.max_batch_bytes)
        {
            let sealed = lane.seal(partition, &self.buffers, self.spool.as_ref());
            out.sealed(sealed.expect("open"));
        }
    }

    /// A refused event's capacity (its bytes counted now).
    pub(crate) fn capacity_of(&self, slot: Slot, bytes: usize) -> Capacity {
        self.budget.count_bytes(bytes);
        let mut capacity = Capacity::new(&self.budget);
        capacity.add(slot, bytes);
        capacity
    }

    /// Seals `partition`'s open batch and hands it (if there was one) to `send`, under
    /// the lane's lock, so nothing of the partition gets between them.
    pub(crate) fn seal_with<R>(
        &self,
        partition: Index,
        send: impl FnOnce(Option<Sealed>) -> R,
    ) -> R {
        let mut lane = self.lane(partition);
        send(lane.seal(partition, &self.buffers, self.spool.as_ref()))
    }

    /// Seals the open batch of each of the first `count` partitions and tells `out`.
    pub(crate) fn seal_all(&self, out: &impl Outbox, count: usize) {
        for partition in Index::all(count.min(self.lanes.len())) {
            self.seal_with(partition, |sealed| sealed.map(|s| out.sealed(s)));
        }
    }

    /// Takes the open batch of each of the first `count` partitions.
    pub(crate) fn take_all(&self, count: usize) -> Vec<Sealed> {
        Index::all(count.min(self.lanes.len()))
            .filter_map(|p| self.seal_if(p, None))
            .collect()
    }

    /// Seals `partition`'s open batch if the driver's `generation` is still the open
    /// one (its `max_wait` ran out), or unconditionally with `None`.
    pub(crate) fn seal_if(&self, partition: Index, generation: Option<u64>) -> Option<Sealed> {
        let mut lane = self.lane(partition);
        let current = lane.open.as_ref().map(|o| o.generation);
        match (current, generation) {
            (Some(open), Some(wanted)) if open != wanted => None,
            _ => lane.seal(partition, &self.buffers, self.spool.as_ref()),
        }
    }

    /// Seals `partition`'s open batch if it holds at least `min` events.
    pub(crate) fn seal_at_least(&self, partition: Index, min: usize) -> Take {
        let mut lane = self.lane(partition);
        match &lane.open {
            None => Take::Empty,
            Some(open) if open.batch.len() < min => Take::TooSmall,
            Some(_) => lane
                .seal(partition, &self.buffers, self.spool.as_ref())
                .map_or(Take::Empty, Take::Sealed),
        }
    }

    pub(crate) fn lanes(&self) -> usize {
        self.lanes.len()
    }
}

mod loaded;
mod pending;
#[cfg(test)]
mod tests;

pub(crate) use loaded::Loading;
