//! The record of a batch's outcome that its receipts share ([`Slot`]), the slots
//! that travel beside a batch ([`Receipts`]), and those of events waiting in the
//! spool's backlog ([`BacklogReceipts`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use super::Receipt;
use crate::producer::outcome::BatchOutcome;
use crate::{Error, Events};

/// The outcome of a batch (or of the part of one that a slot's events are), as its
/// receipts read it.
pub(super) struct Resolution {
    pub(super) partition: Arc<str>,
    /// The slot's events start here in the outcome.
    pub(super) offset: u32,
    /// With idempotent retries, the outcome's first sequence number.
    pub(super) first_sequence: Option<i32>,
    /// Why the batch failed, with its events (to hand each one back); `None` if it
    /// was stored.
    pub(super) failure: Option<(Error, Events, String)>,
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

    /// The batch's outcome, once the slot is filled.
    pub(super) fn resolution(&self) -> Option<&Resolution> {
        self.resolution.get()
    }

    /// Ready once the slot is filled; until then `cx`'s waker is kept, at the place
    /// `waker` remembers (a batch's receipts may wait on as many tasks, so a poll
    /// again must not search them all).
    pub(super) fn poll_filled(&self, cx: &mut Context<'_>, waker: &mut Option<usize>) -> Poll<()> {
        if self.resolution.get().is_some() {
            return Poll::Ready(());
        }
        let mut wakers = lock(&self.wakers);
        // Checked again under the lock the driver takes after filling the slot, so
        // the fill cannot slip in between.
        if self.resolution.get().is_some() {
            return Poll::Ready(());
        }
        match waker.and_then(|i| wakers.get_mut(i)) {
            Some(known) if known.will_wake(cx.waker()) => {}
            Some(known) => known.clone_from(cx.waker()),
            None => {
                *waker = Some(wakers.len());
                wakers.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }

    /// Fills the slot from `outcome`, whose events from `offset` on are the slot's,
    /// and wakes its receipts.
    pub(super) fn resolve(&self, outcome: &BatchOutcome, offset: u32) {
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

/// The receipts of the spool's backlog, by partition id and index in the spool (the
/// backlog is on disk; its events' receipts wait here), with their count, so that
/// loading and reporting cost nothing while there are none.
#[derive(Debug, Default)]
pub(crate) struct BacklogReceipts {
    waiting: Mutex<HashMap<String, HashMap<u64, Arc<Slot>>>>,
    count: AtomicUsize,
}

impl BacklogReceipts {
    /// A receipt for the backlog's event `index` of `partition`.
    pub(crate) fn receipt(&self, partition: &str, index: u64) -> Receipt {
        let slot = Slot::new();
        lock(&self.waiting)
            .entry(partition.to_owned())
            .or_default()
            .insert(index, slot.clone());
        self.count.fetch_add(1, Ordering::Release);
        slot.receipt(0)
    }

    /// Takes the receipt slot of the backlog's event `index` of `partition` (as the
    /// event leaves the backlog for a batch).
    pub(crate) fn take(&self, partition: &str, index: u64) -> Option<Arc<Slot>> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let slot = lock(&self.waiting).get_mut(partition)?.remove(&index)?;
        self.count.fetch_sub(1, Ordering::Release);
        Some(slot)
    }

    /// Fills the slots of `outcome`'s events that waited here (events of the backlog
    /// settled without a batch: stored before a crash, cleared, abandoned, expired).
    pub(crate) fn answer(&self, outcome: &BatchOutcome) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut waiting = lock(&self.waiting);
        let Some(of_partition) = waiting.get_mut(&outcome.partition) else {
            return;
        };
        let mut position = 0;
        for &(first, count) in outcome.events.spooled() {
            for index in first..first + u64::from(count) {
                if let Some(slot) = of_partition.remove(&index) {
                    self.count.fetch_sub(1, Ordering::Release);
                    slot.resolve(outcome, position);
                }
                position += 1;
            }
        }
    }

    /// Fails every slot, with `error`: their events are lost.
    pub(crate) fn lose_all(&self, error: &Error) {
        let waiting = std::mem::take(&mut *lock(&self.waiting));
        self.count.store(0, Ordering::Release);
        for slot in waiting.into_values().flat_map(HashMap::into_values) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receipts_dropped_without_an_outcome_fail_instead_of_waiting_forever() {
        let mut receipts = Receipts::default();
        let first = receipts.receipt(0);
        let second = receipts.receipt(1);
        let backlog = BacklogReceipts::default();
        let third = backlog.receipt("0", 7);
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
