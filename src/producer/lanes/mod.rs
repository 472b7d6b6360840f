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
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::capacity::{Budget, Capacity, Slot};

use crate::batch::{Batch, Filling};
use crate::event::EventData;
use crate::pool::BufferPool;
use crate::route::{Partitioner, RoundRobin, Sticky};
use crate::Error;

/// What the producer handles tell the driver, in one FIFO channel.
#[derive(Debug)]
pub(crate) enum Signal {
    /// A batch opened: publish it when its oldest event has waited `max_wait`, unless
    /// it is sealed before.
    Opened {
        partition: usize,
        generation: u64,
        opened: Instant,
    },
    /// A batch to publish.
    Sealed(Sealed),
    /// An event that can never be published (unknown partition, too large).
    Refused {
        partition: String,
        event: Box<EventData>,
        error: Error,
        capacity: Capacity,
    },
    /// Report when every batch received so far (of one partition, or of all) has its
    /// outcome.
    Flush {
        partition: Option<usize>,
        done: oneshot::Sender<()>,
    },
    /// Hand back one partition's batches not yet sent (and its open batch, taken
    /// here), as abandoned; report how many events.
    Clear {
        partition: usize,
        open: Option<Sealed>,
        done: oneshot::Sender<usize>,
    },
    /// A handle found no capacity: partitions that are not sending publish their open
    /// batches now rather than wait out `max_wait`, since no more events can come.
    Starved,
    /// Every lane has been swept (into `open` when abandoning, so that none of it is
    /// sent first): publish (or abandon) what is left, then stop.
    Close { abandon: bool, open: Vec<Sealed> },
}

/// A batch being sealed on its way to the driver.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) partition: usize,
    pub(crate) batch: Batch,
    /// When its first event was accepted.
    pub(crate) opened: Instant,
    pub(crate) capacity: Capacity,
}

#[derive(Debug)]
struct Open {
    batch: Filling,
    opened: Instant,
    capacity: Capacity,
    generation: u64,
}

/// A partition's lane: its open batch, and how many of its events are pending.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    open: Option<Open>,
    /// Events accepted and without an outcome yet.
    pending: usize,
    /// Numbers the batches opened here, so that a `max_wait` deadline finds its own.
    generation: u64,
    /// How many events the last batch sealed here held: room made up front for the
    /// next, so that filling it rarely grows (and copies) its vectors.
    last_len: usize,
}

impl Lane {
    fn seal(&mut self, partition: usize, pool: &Arc<BufferPool>) -> Option<Sealed> {
        let open = self.open.take()?;
        self.last_len = open.batch.len();
        Some(Sealed {
            partition,
            batch: open.batch.seal(pool),
            opened: open.opened,
            capacity: open.capacity,
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

/// How events without a partition id or key are spread.
#[derive(Debug)]
pub(crate) enum Keyless {
    RoundRobin(RoundRobin),
    Sticky(Sticky),
}

/// State shared by the producer handles and the driver.
pub(crate) struct Shared {
    /// Events are encoded with room for the idempotent annotations.
    pub(crate) idempotent: bool,
    pub(crate) partition_ids: RwLock<Arc<[String]>>,
    /// Bumped when the partition ids change, so that a handle's copy is checked with
    /// one load per event.
    pub(crate) ids_version: AtomicUsize,
    /// One per partition the hub can have, so a grown hub needs no new lanes.
    lanes: Vec<Mutex<Lane>>,
    pub(crate) budget: Arc<Budget>,
    pub(crate) partitioner: Arc<dyn Partitioner>,
    pub(crate) keyless: Mutex<Keyless>,
    pub(crate) max_batch_bytes: usize,
    /// Encode buffers of published batches, for the handles to reuse.
    pub(crate) buffers: Arc<BufferPool>,
    pub(crate) closed: AtomicBool,
    /// A [`Signal::Starved`] is on its way and not yet handled.
    starved: AtomicBool,
    /// Becomes true when the driver has reported everything and closed the connection.
    pub(crate) finished: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("partition_ids", &self.partition_ids)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("keyless", &self.keyless)
            .finish_non_exhaustive()
    }
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        idempotent: bool,
        partition_ids: Vec<String>,
        lanes: usize,
        budget: Arc<Budget>,
        partitioner: Arc<dyn Partitioner>,
        keyless: Keyless,
        max_batch_bytes: usize,
        finished: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let budget_events = budget.max_events();
        Self {
            idempotent,
            lanes: (0..lanes.max(partition_ids.len()))
                .map(|_| Mutex::default())
                .collect(),
            partition_ids: RwLock::new(partition_ids.into()),
            ids_version: AtomicUsize::new(0),
            budget,
            partitioner,
            keyless: Mutex::new(keyless),
            max_batch_bytes,
            buffers: Arc::new(BufferPool::new(budget_events)),
            closed: AtomicBool::new(false),
            starved: AtomicBool::new(false),
            finished,
        }
    }

    fn lane(&self, partition: usize) -> MutexGuard<'_, Lane> {
        self.lanes[partition]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn ids(&self) -> Arc<[String]> {
        self.partition_ids
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn partition_count(&self) -> usize {
        self.ids().len()
    }

    pub(crate) fn partition_id(&self, index: usize) -> String {
        self.ids().get(index).cloned().unwrap_or_default()
    }

    /// Adopts a refreshed list of partition ids if it has more partitions (partitions
    /// are added, never removed); returns whether it changed.
    pub(crate) fn refresh_ids(&self, ids: Vec<String>) -> bool {
        let mut current = self
            .partition_ids
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let grows = ids.len() > current.len()
            && ids.len() <= self.lanes.len()
            && ids.starts_with(&current[..]);
        if grows {
            tracing::info!(
                from = current.len(),
                to = ids.len(),
                "the hub has more partitions"
            );
            *current = ids.into();
            self.ids_version.fetch_add(1, Ordering::Release);
        }
        grows
    }

    pub(crate) fn total_pending(&self) -> usize {
        (0..self.partition_count())
            .map(|i| self.lane(i).pending)
            .sum()
    }

    pub(crate) fn pending(&self, partition: usize) -> usize {
        if partition < self.lanes.len() {
            self.lane(partition).pending
        } else {
            0
        }
    }

    /// Events of `partition` got their outcome.
    pub(crate) fn settled(&self, partition: usize, count: usize) {
        if partition < self.lanes.len() {
            let mut lane = self.lane(partition);
            lane.pending = lane.pending.saturating_sub(count);
        }
    }

    /// Adds an encoded event (weighing `cost` bytes in a batch) to its partition's
    /// open batch, opening one or sealing the full one first as needed, and tells the
    /// driver what it must know. If the producer was closed before the event got in,
    /// the event comes back.
    // The event comes back by value, as `TrySendError<T>` does in tokio.
    #[allow(clippy::result_large_err)]
    pub(crate) fn append(
        &self,
        signals: &mpsc::UnboundedSender<Signal>,
        partition: usize,
        event: EventData,
        encoded: Vec<u8>,
        cost: usize,
        slot: Slot,
    ) -> Result<(), EventData> {
        let body = event.body().len();
        let mut lane = self.lane(partition);
        // Checked under the lane's lock: a close sets the flag, then sweeps every lane
        // under its lock, so no event gets into a lane after the sweep.
        if self.closed.load(Ordering::SeqCst) {
            self.budget.unreserve(slot);
            return Err(event);
        }
        if lane
            .open
            .as_ref()
            .is_some_and(|o| o.batch.size_in_bytes() + cost > self.max_batch_bytes)
        {
            let full = lane.seal(partition, &self.buffers).expect("open");
            let _ = signals.send(Signal::Sealed(full));
        }
        if lane.open.is_none() {
            lane.generation += 1;
            let opened = Instant::now();
            let batch = Filling::new(self.partition_id(partition), lane.last_len);
            lane.open = Some(Open {
                batch,
                opened,
                capacity: Capacity::new(&self.budget),
                generation: lane.generation,
            });
            let _ = signals.send(Signal::Opened {
                partition,
                generation: lane.generation,
                opened,
            });
        }
        self.budget.count_bytes(body);
        lane.pending += 1;
        let open = lane.open.as_mut().expect("opened above");
        open.batch.push(&event, encoded);
        open.capacity.add(slot, body);
        if open.batch.size_in_bytes() >= self.max_batch_bytes {
            let full = lane.seal(partition, &self.buffers).expect("open");
            let _ = signals.send(Signal::Sealed(full));
        }
        Ok(())
    }

    /// A refused event's capacity (its bytes counted now).
    pub(crate) fn capacity_of(&self, slot: Slot, bytes: usize) -> Capacity {
        self.budget.count_bytes(bytes);
        let mut capacity = Capacity::new(&self.budget);
        capacity.add(slot, bytes);
        capacity
    }

    /// Seals `partition`'s open batch and sends the signals `make` makes of it, under
    /// the lane's lock (so nothing of the partition gets between them); an error if
    /// the driver is gone.
    pub(crate) fn seal_and_send(
        &self,
        signals: &mpsc::UnboundedSender<Signal>,
        partition: usize,
        make: impl FnOnce(Option<Sealed>) -> Vec<Signal>,
    ) -> Result<(), Error> {
        let mut lane = self.lane(partition);
        for signal in make(lane.seal(partition, &self.buffers)) {
            signals.send(signal).map_err(|_| Error::closed())?;
        }
        Ok(())
    }

    /// Seals every partition's open batch and sends them; an error if the driver is
    /// gone.
    pub(crate) fn seal_all(&self, signals: &mpsc::UnboundedSender<Signal>) -> Result<(), Error> {
        for partition in 0..self.partition_count() {
            self.seal_and_send(signals, partition, |sealed| {
                sealed.map(Signal::Sealed).into_iter().collect()
            })?;
        }
        Ok(())
    }

    /// Takes every partition's open batch.
    pub(crate) fn take_all(&self) -> Vec<Sealed> {
        (0..self.partition_count())
            .filter_map(|p| self.seal_if(p, None))
            .collect()
    }

    /// Seals `partition`'s open batch if the driver's `generation` is still the open
    /// one (its `max_wait` ran out), or unconditionally with `None`.
    pub(crate) fn seal_if(&self, partition: usize, generation: Option<u64>) -> Option<Sealed> {
        let mut lane = self.lane(partition);
        let current = lane.open.as_ref().map(|o| o.generation);
        match (current, generation) {
            (Some(open), Some(wanted)) if open != wanted => None,
            _ => lane.seal(partition, &self.buffers),
        }
    }

    /// Seals `partition`'s open batch if it holds at least `min` events.
    pub(crate) fn seal_at_least(&self, partition: usize, min: usize) -> Take {
        let mut lane = self.lane(partition);
        match &lane.open {
            None => Take::Empty,
            Some(open) if open.batch.len() < min => Take::TooSmall,
            Some(_) => lane
                .seal(partition, &self.buffers)
                .map_or(Take::Empty, Take::Sealed),
        }
    }

    /// Asks the driver, once per episode, to publish what it can now.
    pub(crate) fn starve(&self, signals: &mpsc::UnboundedSender<Signal>) {
        if !self.starved.swap(true, Ordering::SeqCst) {
            let _ = signals.send(Signal::Starved);
        }
    }

    /// The driver took the starved signal.
    pub(crate) fn fed(&self) {
        self.starved.store(false, Ordering::SeqCst);
    }

    pub(crate) fn lanes(&self) -> usize {
        self.lanes.len()
    }
}

#[cfg(test)]
mod tests;
