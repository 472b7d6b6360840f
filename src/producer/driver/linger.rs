//! The `max_wait` deadlines of open batches, on one timer.
//!
//! Every wake-up of the driver costs a thread wake-up when the runtime is idle, so the
//! driver is woken by time as seldom as it can be while no batch waits longer than
//! `max_wait`:
//!
//! - A batch's deadline is its opening plus `max_wait`. The driver keeps the deadlines
//!   in a heap and its one timer at the earliest.
//! - When the timer fires, every open batch that has waited at least three quarters of
//!   `max_wait` goes with the one that is due. Batches of several partitions that
//!   opened close together go out in one wake-up rather than one each.
//! - After batches went out on time, the driver lingers: it stays due to wake one
//!   `max_wait` later even with nothing open. A steady stream reopens a batch soon
//!   after, and [`Stash`] lets the handles leave word of it there instead of waking
//!   the driver; at the next tick, that batch has waited most of `max_wait` and goes.
//!   So a steady stream costs one timer wake-up per `max_wait`, not an opening signal
//!   and a timer each.
//!
//! The heap may hold deadlines of batches already sealed (full, flushed) or of older
//! generations; they are skipped when they come up, and dropped in one sweep when they
//! outnumber the partitions, so the heap stays in proportion to the partitions however
//! many batches open within `max_wait`.
//!
//! `tokio_util`'s `DelayQueue` keeps one timer too, but it yields only entries already
//! due, and "everything due within a quarter of `max_wait`" is the question here.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::timer::Timer;
use crate::route::Index;

/// A batch that opened: its partition, its generation, when.
pub(crate) type Opening = (Index, u64, Instant);

/// Where handles leave word of a batch that opened while the driver is due to wake
/// before that batch's deadline anyway: no signal, no wake-up. The driver takes
/// what is here every time it is about to wait, and says then until when it will
/// wake at the latest.
#[derive(Debug, Default)]
pub(crate) struct Stash(Mutex<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// A batch opened at or after this may be left here: the driver wakes before its
    /// deadline (`None`: the driver has promised no wake-up).
    from: Option<Instant>,
    opened: Vec<Opening>,
}

impl Stash {
    /// Leaves `opening` here if the driver will see it in time; false if the driver
    /// must be told.
    pub(crate) fn leave(&self, opening: Opening) -> bool {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if inner.from.is_some_and(|from| from <= opening.2) {
            inner.opened.push(opening);
            true
        } else {
            false
        }
    }

    /// Moves what was left here into `into`.
    fn take_only(&self, into: &mut Vec<Opening>) {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        into.append(&mut inner.opened);
    }

    /// Moves what was left here into `into`, and sets from when openings may be left
    /// here: those whose deadline is at or after `awake_by`, when the driver wakes at
    /// the latest.
    pub(crate) fn take(
        &self,
        into: &mut Vec<Opening>,
        awake_by: Option<Instant>,
        max_wait: Duration,
    ) {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        into.append(&mut inner.opened);
        inner.from = awake_by.map(|at| at.checked_sub(max_wait).unwrap_or(at));
    }
}

pub(super) struct Linger {
    max_wait: Duration,
    /// Deadlines, earliest first: (deadline, partition, generation).
    heap: BinaryHeap<Reverse<(Instant, Index, u64)>>,
    /// Each partition's generation whose deadline is in the heap and still counts.
    armed: Vec<Option<u64>>,
    /// How many entries of `armed` are set.
    live: usize,
    /// A wake-up kept while lingering after batches went out on time.
    tick: Option<Instant>,
    timer: Timer,
    stash: Arc<Stash>,
    taken: Vec<Opening>,
}

impl Linger {
    pub(super) fn new(max_wait: Duration, stash: Arc<Stash>) -> Self {
        Self {
            max_wait,
            heap: BinaryHeap::new(),
            armed: Vec::new(),
            live: 0,
            tick: None,
            timer: Timer::new(),
            stash,
            taken: Vec::new(),
        }
    }

    /// A batch opened: it goes by `opened + max_wait`.
    pub(super) fn opened(&mut self, (partition, generation, opened): Opening) {
        if partition.0 >= self.armed.len() {
            self.armed.resize(partition.0 + 1, None);
        }
        let armed = &mut self.armed[partition.0];
        // Generations only grow; an opening heard late (through the inbox, after a
        // later one was left in the stash) changes nothing.
        if armed.is_some_and(|g| g >= generation) {
            return;
        }
        if armed.is_none() {
            self.live += 1;
        }
        *armed = Some(generation);
        let deadline = opened
            .checked_add(self.max_wait)
            .unwrap_or_else(super::timer::far_future);
        self.heap.push(Reverse((deadline, partition, generation)));
    }

    /// A batch was sealed (whatever sealed it): its deadline no longer counts.
    pub(super) fn sealed(&mut self, partition: Index, generation: u64) {
        if let Some(armed) = self.armed.get_mut(partition.0) {
            if *armed == Some(generation) {
                *armed = None;
                self.live -= 1;
            }
        }
    }

    /// Puts into `into` every partition with an open batch, as far as the driver has
    /// heard (openings left in the stash included).
    pub(super) fn open(&mut self, into: &mut Vec<Index>) {
        self.stash.take_only(&mut self.taken);
        self.hear_taken();
        into.extend(
            self.armed
                .iter()
                .enumerate()
                .filter(|(_, armed)| armed.is_some())
                .map(|(i, _)| Index(i)),
        );
    }

    /// Hears the openings taken from the stash.
    fn hear_taken(&mut self) {
        let mut taken = std::mem::take(&mut self.taken);
        for opening in taken.drain(..) {
            self.opened(opening);
        }
        self.taken = taken;
    }

    /// Whether `generation`'s deadline is still the one of `partition`'s open batch.
    fn counts(&self, partition: Index, generation: u64) -> bool {
        self.armed.get(partition.0).copied().flatten() == Some(generation)
    }

    /// Before the driver waits: takes the stash's openings, drops deadlines that no
    /// longer count from the top (and all of them when they outnumber the live ones),
    /// and sets the timer.
    pub(super) fn arm(&mut self) {
        let awake_by = self.next();
        self.stash.take(&mut self.taken, awake_by, self.max_wait);
        self.hear_taken();
        if self.heap.len() > 2 * self.live + 64 {
            let heap = std::mem::take(&mut self.heap);
            self.heap = heap
                .into_iter()
                .filter(|Reverse((_, p, g))| self.counts(*p, *g))
                .collect();
        }
        let next = self.next();
        self.timer.arm(next);
    }

    /// The earliest deadline that counts, or the linger tick if earlier.
    fn next(&mut self) -> Option<Instant> {
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.counts(top.1, top.2) {
                break;
            }
            self.heap.pop();
        }
        let top = self.heap.peek().map(|Reverse((at, ..))| *at);
        match (top, self.tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the timer is set.
    pub(super) fn armed(&self) -> bool {
        self.timer.armed.is_some()
    }

    /// Resolves when the timer fires.
    pub(super) async fn fired(&mut self) {
        self.timer.fired().await;
        self.timer.armed = None;
    }

    /// The timer fired at `now`: the batches to seal (partition, generation), every
    /// one that has waited three quarters of `max_wait`. Lingers for one more
    /// `max_wait` if any.
    pub(super) fn due(&mut self, now: Instant, into: &mut Vec<(Index, u64)>) {
        let by = now
            .checked_add(self.max_wait / 4)
            .unwrap_or_else(super::timer::far_future);
        while let Some(Reverse(top)) = self.heap.peek() {
            if top.0 > by {
                break;
            }
            let Reverse((_, partition, generation)) = self.heap.pop().expect("peeked");
            if self.counts(partition, generation) {
                self.sealed(partition, generation);
                into.push((partition, generation));
            }
        }
        if !into.is_empty() {
            self.tick = now.checked_add(self.max_wait);
        } else if self.tick.is_some_and(|t| t <= now) {
            self.tick = None;
        }
    }
}
