//! The producer's capacity: a bound on pending events (semaphore permits) and on
//! their bodies' bytes, held by the events as RAII values until their outcome is
//! handed out or dropped.
//!
//! Files: `reserve` (a handle's [`Reservation`] of room for its next event) and
//! `stall` (the warning when unread outcomes hold that room).

mod reserve;
mod stall;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub(crate) use reserve::Reservation;
pub(crate) use stall::StallWatch;

/// One event's permit, taken from the budget's semaphore for a handle's next event
/// and not yet in a [`Capacity`]: given to one with [`Capacity::add`], or back with
/// [`Budget::unreserve`].
///
/// Permits travel as counts rather than as `OwnedSemaphorePermit`s because an owned
/// permit costs two atomic operations per event on the semaphore's `Arc` (a clone to
/// acquire it, a drop when it is merged into the batch's), on a cache line the
/// outcome reader's thread writes too: per-event work that need only be per batch.
/// `Capacity` (and the [`Reservation`] that holds a `Slot`) give the permits back on
/// drop, so they stay owned values all the same.
#[must_use = "a slot not given back leaks a permit"]
#[derive(Debug)]
pub(crate) struct Slot(());

/// A lane's settled events and their bodies' bytes: counted up by the capacity of
/// its batches as each is given back.
#[derive(Debug, Default)]
pub(crate) struct Settled {
    pub(crate) events: AtomicUsize,
    pub(crate) bytes: AtomicUsize,
}

/// Capacity that events hold until their outcome is handed out or dropped: their
/// event permits and their bodies' bytes, given back when this is dropped.
#[derive(Debug)]
pub(crate) struct Capacity {
    /// Permits taken from `budget.events` (forgotten there), given back on drop.
    events: usize,
    bytes: usize,
    budget: Arc<Budget>,
    /// The count of settled events of the partition's lane, if the events have one:
    /// they stop being pending there when this is dropped, as they stop holding the
    /// budget.
    settled: Option<Arc<Settled>>,
}

impl Capacity {
    /// Capacity of events that belong to no partition.
    pub(crate) fn new(budget: &Arc<Budget>) -> Self {
        Self {
            events: 0,
            bytes: 0,
            budget: budget.clone(),
            settled: None,
        }
    }

    /// Capacity of events of a lane whose settled events `settled` counts.
    pub(crate) fn for_lane(budget: &Arc<Budget>, settled: &Arc<Settled>) -> Self {
        let mut capacity = Self::new(budget);
        capacity.settled = Some(settled.clone());
        capacity
    }

    /// One event's capacity; its bytes are counted in the budget already.
    pub(crate) fn add(&mut self, slot: Slot, bytes: usize) {
        let Slot(()) = slot;
        self.events += 1;
        self.bytes += bytes;
    }

    /// Takes over `other`'s capacity.
    pub(crate) fn merge(&mut self, mut other: Capacity) {
        debug_assert!(
            self.settled.is_none()
                || other.settled.is_none()
                || self.settled.as_ref().map(Arc::as_ptr)
                    == other.settled.as_ref().map(Arc::as_ptr),
            "capacities of one lane"
        );
        self.events += std::mem::take(&mut other.events);
        self.bytes += std::mem::take(&mut other.bytes);
        if self.settled.is_none() {
            self.settled = other.settled.take();
        }
    }
}

impl Drop for Capacity {
    fn drop(&mut self) {
        if let Some(settled) = &self.settled {
            settled.bytes.fetch_add(self.bytes, Ordering::Relaxed);
            settled.events.fetch_add(self.events, Ordering::Release);
        }
        if self.events > 0 {
            self.budget.events.add_permits(self.events);
        }
        if self.bytes > 0 {
            self.budget.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
            self.budget.freed.notify_waiters();
        }
    }
}

/// The bound on pending events (a semaphore of permits) and on their bodies' bytes.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) events: Arc<Semaphore>,
    max_events: usize,
    bytes: AtomicUsize,
    max_bytes: usize,
    freed: Notify,
}

impl Budget {
    pub(crate) fn new(max_events: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            events: Arc::new(Semaphore::new(max_events)),
            max_events,
            bytes: AtomicUsize::new(0),
            max_bytes,
            freed: Notify::new(),
        })
    }

    /// Takes one event's permit if one is free at once (never ahead of a queued
    /// waiter: released permits go to waiters first).
    pub(crate) fn try_reserve(&self) -> Option<Slot> {
        let permit = self.events.try_acquire().ok()?;
        permit.forget();
        Some(Slot(()))
    }

    /// The slot of a permit that had to be waited for.
    pub(crate) fn slot_of(permit: OwnedSemaphorePermit) -> Slot {
        debug_assert_eq!(permit.num_permits(), 1);
        permit.forget();
        Slot(())
    }

    /// Gives back a slot that no event took.
    pub(crate) fn unreserve(&self, slot: Slot) {
        let Slot(()) = slot;
        self.events.add_permits(1);
    }

    /// Counts `bytes` more of pending bodies (given back by the [`Capacity`] they go
    /// into).
    pub(crate) fn count_bytes(&self, bytes: usize) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn pending_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether no more events can be accepted until some capacity comes back.
    pub(crate) fn exhausted(&self) -> bool {
        self.events.available_permits() == 0 || self.bytes_full()
    }

    /// The bound on pending events.
    pub(crate) fn max_events(&self) -> usize {
        self.max_events
    }

    /// Events pending (accepted, without an outcome handed out yet).
    pub(crate) fn held_events(&self) -> usize {
        self.max_events
            .saturating_sub(self.events.available_permits())
    }

    pub(crate) fn bytes_full(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) >= self.max_bytes
    }

    /// Resolves once the byte budget has room.
    pub(crate) async fn bytes_available(self: Arc<Self>) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between is not missed.
            freed.as_mut().enable();
            if !self.bytes_full() {
                return;
            }
            freed.await;
        }
    }
}
