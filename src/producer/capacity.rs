//! The producer's capacity: a bound on pending events (semaphore permits) and on
//! their bodies' bytes, held by the events as RAII values until their outcome is
//! handed out or dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Capacity that events hold until their outcome is handed out or dropped: their
/// event permits and their bodies' bytes, given back when this is dropped.
#[derive(Debug)]
pub(crate) struct Capacity {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
    budget: Arc<Budget>,
}

impl Capacity {
    pub(crate) fn new(budget: &Arc<Budget>) -> Self {
        Self {
            permit: None,
            bytes: 0,
            budget: budget.clone(),
        }
    }

    /// One event's capacity; its bytes are counted in the budget already.
    pub(crate) fn add(&mut self, permit: OwnedSemaphorePermit, bytes: usize) {
        match &mut self.permit {
            Some(p) => p.merge(permit),
            None => self.permit = Some(permit),
        }
        self.bytes += bytes;
    }

    /// Takes over `other`'s capacity.
    pub(crate) fn merge(&mut self, mut other: Capacity) {
        if let Some(permit) = other.permit.take() {
            match &mut self.permit {
                Some(p) => p.merge(permit),
                None => self.permit = Some(permit),
            }
        }
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Capacity {
    fn drop(&mut self) {
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
