//! [`Reservation`]: a handle's room for its next event, reserved by `poll_ready` and
//! spent by `start_send`.

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_util::sync::{PollSemaphore, ReusableBoxFuture};

use super::{Budget, Slot, StallWatch};
use crate::Error;

/// A handle's reservation: the slot reserved for its next event, and the waits for one
/// (an event permit, then room in the byte budget). Each handle has its own; a clone
/// of a handle starts unreserved.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    permits: PollSemaphore,
    /// The slot reserved for the next event.
    reserved: Option<Slot>,
    /// Memory is full and the next event goes to the spool's backlog instead.
    spill: bool,
    /// `permits` has a wait for room queued: its permit must be taken from there.
    waiting_for_room: bool,
    bytes_wait: Option<ReusableBoxFuture<'static, ()>>,
    /// Warns when a wait for room is held up by unread outcomes.
    stall: StallWatch,
}

impl Reservation {
    pub(crate) fn new(budget: &Arc<Budget>, stall: StallWatch) -> Self {
        Self {
            budget: budget.clone(),
            permits: PollSemaphore::new(budget.events.clone()),
            reserved: None,
            spill: false,
            waiting_for_room: false,
            bytes_wait: None,
            stall,
        }
    }

    /// Another handle's reservation on the same budget, unreserved.
    pub(crate) fn share(&self) -> Self {
        Self {
            budget: self.budget.clone(),
            permits: self.permits.clone(),
            reserved: None,
            spill: false,
            waiting_for_room: false,
            bytes_wait: None,
            stall: self.stall.share(),
        }
    }

    /// Ready once a slot is reserved and the byte budget has room; `starve` is called
    /// each time it must wait (no room: what is open will not fill, so it may be
    /// published now). [`Error::is_closed`] once the budget is closed.
    pub(crate) fn poll_reserve(
        &mut self,
        cx: &mut Context<'_>,
        starve: impl Fn(),
    ) -> Poll<Result<(), Error>> {
        if self.reserved.is_none() && !self.waiting_for_room {
            // The common case, without a future: `PollSemaphore` keeps polling (and
            // replacing) a boxed acquire future once it has had to wait at all, a cost
            // per event at the bound. A try cannot overtake a queued waiter: released
            // permits go to waiters first.
            self.reserved = self.budget.try_reserve();
        }
        if self.reserved.is_none() {
            match self.permits.poll_acquire(cx) {
                Poll::Ready(Some(permit)) => {
                    self.waiting_for_room = false;
                    self.stall.stop();
                    self.reserved = Some(Budget::slot_of(permit));
                }
                Poll::Ready(None) => return Poll::Ready(Err(Error::closed())),
                Poll::Pending => {
                    self.waiting_for_room = true;
                    starve();
                    self.stall.start();
                    self.stall.poll(cx, &self.budget);
                    return Poll::Pending;
                }
            }
        }
        if self.bytes_wait.is_none() && self.budget.bytes_full() {
            let budget = self.budget.clone();
            self.bytes_wait = Some(ReusableBoxFuture::new(budget.bytes_available()));
        }
        if let Some(wait) = self.bytes_wait.as_mut() {
            if wait.poll(cx).is_pending() {
                starve();
                self.stall.start();
                self.stall.poll(cx, &self.budget);
                return Poll::Pending;
            }
            self.bytes_wait = None;
            self.stall.stop();
        }
        Poll::Ready(Ok(()))
    }

    /// The reserved slot, taken for an event.
    pub(crate) fn take(&mut self) -> Option<Slot> {
        self.reserved.take()
    }

    /// With a spool: the next event goes to the backlog.
    pub(crate) fn spill(&mut self) {
        self.spill = true;
    }

    /// Whether the next event was to go to the backlog (the mark is taken).
    pub(crate) fn take_spill(&mut self) -> bool {
        std::mem::take(&mut self.spill)
    }

    /// Gives back the reserved slot, if any.
    pub(crate) fn release(&mut self) {
        self.spill = false;
        if let Some(slot) = self.reserved.take() {
            self.budget.unreserve(slot);
        }
    }
}

/// A slot reserved and never used goes back with the reservation.
impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}
