//! The driver: one task that arms each open batch's `max_wait` deadline, queues the
//! sealed batches per partition, dispatches each to its partition's tower stack when
//! that stack is ready, and queues outcomes. It hears of a batch when it opens and when
//! it is sealed, never of single events.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::time::delay_queue::{DelayQueue, Key};
use tower::{BoxError, Service};

use super::capacity::Capacity;
use super::lanes::{Sealed, Shared, Signal, Take};
use super::outcome::BatchOutcome;
use crate::batch::Batch;
use crate::error::{Error, Kind};
use crate::stack::{BatchService, Settings};

/// A sealed batch waiting for its partition's stack, numbered in the order the driver
/// received it (for flush barriers).
struct Ready {
    batch: Batch,
    number: u64,
    capacity: Capacity,
}

#[derive(Default)]
struct PartitionState {
    ready: VecDeque<Ready>,
    in_flight: usize,
    /// Batches received and not yet reported.
    unreported: usize,
    /// The partition's stack, made when it first publishes; `None` meanwhile and
    /// while a readiness check holds it.
    service: Option<BatchService>,
    /// A readiness check of the stack is under way.
    readying: bool,
    /// The `max_wait` deadline of the batch opened last, while it is in the queue:
    /// removed when the next batch opens, so the queue holds one entry per partition
    /// at most, whatever `max_wait` is.
    deadline: Option<(u64, Key)>,
}

impl PartitionState {
    /// Neither sending nor about to.
    fn idle(&self) -> bool {
        self.in_flight == 0 && self.ready.is_empty() && !self.readying
    }
}

struct Barrier {
    /// Only batches of this partition count (all partitions if `None`).
    partition: Option<usize>,
    /// Batches numbered below this were received before the flush.
    before: u64,
    remaining: usize,
    done: oneshot::Sender<()>,
}

/// A send's result: the partition, the numbers of the batches it carried, the batch
/// (the driver's clone), their capacity, and what the stack answered (or the delivery
/// deadline, if it came first).
type InFlight =
    Pin<Box<dyn Future<Output = (usize, Vec<u64>, Batch, Capacity, Result<(), Error>)> + Send>>;

/// A partition's stack becoming ready (or failing to).
type Readying = Pin<Box<dyn Future<Output = (usize, BatchService, Result<(), BoxError>)> + Send>>;

pub(crate) struct Driver {
    pub(crate) signals: mpsc::UnboundedReceiver<Signal>,
    /// What each partition's stack is made from.
    pub(crate) stacks: Settings,
    pub(crate) outcomes: mpsc::Sender<(BatchOutcome, Capacity)>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_wait: Duration,
    /// From an event's acceptance to its outcome, at most.
    pub(crate) delivery_timeout: Duration,
    pub(crate) on_close: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Set once everything is reported and the connection is closed; dropped (which
    /// the handles also notice) if the driver dies.
    pub(crate) finished: watch::Sender<bool>,
}

struct State {
    partitions: Vec<PartitionState>,
    /// The `max_wait` deadline of each open batch: (partition, generation).
    open: DelayQueue<(usize, u64)>,
    in_flight: FuturesUnordered<InFlight>,
    readying: FuturesUnordered<Readying>,
    barriers: Vec<Barrier>,
    next_number: u64,
    /// Batches received and not yet reported.
    unreported: usize,
    /// Events in those batches.
    unreported_events: usize,
    /// While starved, a partition's open batch was too small to go early: every idle
    /// partition is looked at again after the next send.
    starved_pending: bool,
    /// The earliest delivery deadline of a batch waiting in a ready queue, if any.
    next_expiry: Option<Instant>,
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let mut state = State {
            partitions: (0..self.shared.partition_count())
                .map(|_| PartitionState::default())
                .collect(),
            open: DelayQueue::new(),
            in_flight: FuturesUnordered::new(),
            readying: FuturesUnordered::new(),
            barriers: Vec::new(),
            next_number: 0,
            unreported: 0,
            unreported_events: 0,
            starved_pending: false,
            next_expiry: None,
        };
        let mut closing = false;
        let mut handles_gone = false;
        // One timer for the whole run, moved only when its deadline changes: a timer
        // made anew on every turn of the loop costs a registration with the time
        // driver (and a wake-up of it) each time.
        let mut expiry_timer = Timer::new();
        loop {
            if closing && state.unreported == 0 && state.in_flight.is_empty() {
                break;
            }
            expiry_timer.arm(state.next_expiry);
            tokio::select! {
                signal = self.signals.recv(), if !handles_gone => match signal {
                    Some(Signal::Close { abandon, open }) => {
                        closing = true;
                        for sealed in open {
                            self.to_ready(&mut state, sealed);
                        }
                        if abandon {
                            self.abandon_all(&mut state).await;
                        }
                        self.dispatch_all(&mut state);
                    }
                    Some(signal) => self.handle(&mut state, signal).await,
                    None => {
                        // Every handle is gone (without a close, or after one):
                        // publish what is left in the lanes.
                        handles_gone = true;
                        closing = true;
                        self.sweep(&mut state);
                        self.dispatch_all(&mut state);
                    }
                },
                Some(expired) = state.open.next(), if !state.open.is_empty() => {
                    let (partition, generation) = expired.into_inner();
                    let p = &mut state.partitions[partition];
                    if p.deadline.as_ref().is_some_and(|(g, _)| *g == generation) {
                        p.deadline = None;
                    }
                    if let Some(sealed) = self.shared.seal_if(partition, Some(generation)) {
                        self.to_ready(&mut state, sealed);
                        self.dispatch(&mut state, partition);
                    }
                }
                Some((partition, service, ready)) = state.readying.next(), if !state.readying.is_empty() => {
                    self.ready(&mut state, partition, service, ready).await;
                }
                Some((partition, numbers, batch, capacity, result)) = state.in_flight.next(), if !state.in_flight.is_empty() => {
                    state.partitions[partition].in_flight -= 1;
                    let result = match result {
                        // A try that reached the service without a verdict makes the
                        // whole outcome ambiguous, whatever a later try said.
                        Err(error) if batch.may_have_been_stored() => Err(error.into_ambiguous()),
                        other => other,
                    };
                    let outcome = BatchOutcome {
                        partition: self.shared.partition_id(partition),
                        size_in_bytes: batch.size_in_bytes(),
                        starting_sequence_number: batch.starting_sequence_number(),
                        events: batch.into_events(),
                        result,
                    };
                    self.report(&mut state, outcome, capacity, &numbers, Some(partition)).await;
                    self.dispatch(&mut state, partition);
                    self.publish_if_starved(&mut state, partition);
                }
                _ = expiry_timer.fired(), if state.next_expiry.is_some() => {
                    expiry_timer.armed = None;
                    self.expire(&mut state).await;
                }
            }
        }
        // Signals sent meanwhile (an event refused as the producer closed) are
        // answered; later sends fail, handing their event back.
        self.signals.close();
        while let Ok(signal) = self.signals.try_recv() {
            if let Signal::Refused { .. } = signal {
                self.handle(&mut state, signal).await;
            }
        }
        if let Some(close) = self.on_close.take() {
            close.await;
        }
        self.finished.send_replace(true);
    }

    async fn handle(&mut self, state: &mut State, signal: Signal) {
        match signal {
            Signal::Opened {
                partition,
                generation,
                opened,
            } => {
                grow(state, partition);
                let deadline = opened.checked_add(self.max_wait).unwrap_or_else(far_future);
                state.open.insert_at((partition, generation), deadline);
            }
            Signal::Sealed(sealed) => {
                let partition = sealed.partition;
                self.to_ready(state, sealed);
                self.dispatch(state, partition);
            }
            Signal::Refused {
                partition,
                event,
                error,
                capacity,
            } => {
                let outcome = BatchOutcome {
                    partition,
                    events: vec![*event],
                    size_in_bytes: 0,
                    starting_sequence_number: None,
                    result: Err(error),
                };
                self.report(state, outcome, capacity, &[], None).await;
            }
            Signal::Flush { partition, done } => {
                let remaining = match partition {
                    Some(p) => {
                        grow(state, p);
                        self.dispatch(state, p);
                        state.partitions[p].unreported
                    }
                    None => {
                        self.dispatch_all(state);
                        state.unreported
                    }
                };
                if remaining == 0 {
                    let _ = done.send(());
                } else {
                    state.barriers.push(Barrier {
                        partition,
                        before: state.next_number,
                        remaining,
                        done,
                    });
                }
            }
            Signal::Clear {
                partition,
                open,
                done,
            } => {
                // The open batch holds the newest events: it goes behind the queue.
                if let Some(sealed) = open {
                    self.to_ready(state, sealed);
                }
                grow(state, partition);
                let cleared = self.abandon_ready(state, partition).await;
                let _ = done.send(cleared);
            }
            Signal::Starved => {
                self.shared.fed();
                self.publish_idle(state);
            }
            Signal::Close { .. } => unreachable!("close is handled by the loop"),
        }
    }

    /// The fewest events an open batch must hold to go before its `max_wait` while
    /// the producer is out of capacity: half a fair share of what the producer holds,
    /// while anything is on its way (its outcome will free capacity soon); a single
    /// event once nothing is. A producer that runs at its bound keeps sending batches
    /// of a useful size rather than a stream of small ones (each batch costs a
    /// transfer and a disposition), and never waits for `max_wait` with nothing on its
    /// way.
    fn early_minimum(&self, state: &State) -> usize {
        if state.unreported_events == 0 {
            return 1;
        }
        let share = self.shared.budget.held_events() / (2 * self.shared.partition_count().max(1));
        share.max(1)
    }

    /// After a send: with no capacity left, no more events can come, so waiting out
    /// `max_wait` would only idle; the partition publishes its open batch now if it is
    /// large enough (every idle partition's, if one was too small before).
    fn publish_if_starved(&self, state: &mut State, partition: usize) {
        if !self.shared.budget.exhausted() {
            return;
        }
        if state.starved_pending {
            self.publish_idle(state);
        } else {
            let min = self.early_minimum(state);
            if self.publish_if_idle(state, partition, min) {
                state.starved_pending = true;
            }
        }
    }

    /// Seals and sends the open batch of every partition that is not sending, if
    /// large enough.
    fn publish_idle(&self, state: &mut State) {
        let min = self.early_minimum(state);
        let mut skipped = false;
        for partition in 0..self.shared.partition_count() {
            skipped |= self.publish_if_idle(state, partition, min);
        }
        state.starved_pending = skipped;
    }

    /// Seals and sends `partition`'s open batch if the partition is not sending and
    /// the batch holds at least `min` events; true if it was left open for being
    /// smaller.
    fn publish_if_idle(&self, state: &mut State, partition: usize, min: usize) -> bool {
        if state.partitions.get(partition).is_some_and(|p| !p.idle()) {
            return false;
        }
        match self.shared.seal_at_least(partition, min) {
            Take::Sealed(sealed) => {
                self.to_ready(state, sealed);
                self.dispatch(state, partition);
                false
            }
            Take::TooSmall => true,
            Take::Empty => false,
        }
    }

    /// Takes every lane's open batch (no handle is left to do it).
    fn sweep(&self, state: &mut State) {
        for partition in 0..self.shared.lanes() {
            if let Some(sealed) = self.shared.seal_if(partition, None) {
                self.to_ready(state, sealed);
            }
        }
    }

    async fn abandon_all(&mut self, state: &mut State) {
        for i in 0..state.partitions.len() {
            self.abandon_ready(state, i).await;
        }
    }

    /// Hands back the batches of `partition` waiting to be sent, as abandoned; returns
    /// how many events they held.
    async fn abandon_ready(&mut self, state: &mut State, partition: usize) -> usize {
        let mut abandoned = 0;
        while let Some(ready) = state.partitions[partition].ready.pop_front() {
            abandoned += ready.batch.len();
            self.fail_ready(state, partition, ready, Error::new(Kind::Abandoned))
                .await;
        }
        abandoned
    }

    async fn fail_ready(
        &mut self,
        state: &mut State,
        partition: usize,
        ready: Ready,
        error: Error,
    ) {
        let outcome = BatchOutcome {
            partition: ready.batch.partition().to_owned(),
            size_in_bytes: ready.batch.size_in_bytes(),
            starting_sequence_number: None,
            events: ready.batch.into_events(),
            result: Err(error),
        };
        self.report(
            state,
            outcome,
            ready.capacity,
            &[ready.number],
            Some(partition),
        )
        .await;
    }

    /// Fails the batches still waiting to be sent whose delivery timeout has passed.
    async fn expire(&mut self, state: &mut State) {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for i in 0..state.partitions.len() {
            let mut expired = Vec::new();
            let ready = &mut state.partitions[i].ready;
            // Batches are queued oldest first, so the expired ones lead.
            while ready
                .front()
                .is_some_and(|r| r.batch.deadline().is_some_and(|d| d <= now))
            {
                expired.extend(ready.pop_front());
            }
            if let Some(d) = ready.front().and_then(|r| r.batch.deadline()) {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
            for ready in expired {
                self.fail_ready(state, i, ready, Error::delivery_timeout())
                    .await;
            }
        }
        state.next_expiry = next;
    }

    /// Queues a sealed batch for its partition's stack, with its delivery deadline.
    fn to_ready(&self, state: &mut State, sealed: Sealed) {
        let Sealed {
            partition,
            mut batch,
            opened,
            capacity,
        } = sealed;
        grow(state, partition);
        let deadline = opened
            .checked_add(self.delivery_timeout)
            .unwrap_or_else(far_future);
        state.next_expiry = Some(state.next_expiry.map_or(deadline, |n| n.min(deadline)));
        batch.set_deadline(Some(deadline));
        let number = state.next_number;
        state.next_number += 1;
        state.unreported += 1;
        state.unreported_events += batch.len();
        let p = &mut state.partitions[partition];
        p.unreported += 1;
        p.ready.push_back(Ready {
            batch,
            number,
            capacity,
        });
    }

    fn dispatch_all(&self, state: &mut State) {
        for i in 0..state.partitions.len() {
            self.dispatch(state, i);
        }
    }

    /// Asks `partition`'s stack whether it takes a batch now, if the partition has
    /// one waiting; [`ready`](Self::ready) sends it when the stack says so. The stack
    /// decides how many sends are in flight (tower's `ConcurrencyLimit` in the
    /// producer's own stack).
    fn dispatch(&self, state: &mut State, partition: usize) {
        let p = &mut state.partitions[partition];
        if p.ready.is_empty() || p.readying {
            return;
        }
        let mut service = match p.service.take() {
            Some(service) => service,
            None => self.stacks.make(&self.shared.partition_id(partition)),
        };
        p.readying = true;
        state.readying.push(Box::pin(async move {
            let ready = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
            (partition, service, ready)
        }));
    }

    /// `partition`'s stack is ready: sends its next batch, bounded by the batch's
    /// delivery deadline. A stack that failed is dropped (a new one is made for the
    /// next batch) and its error fails the batch that waited for it.
    async fn ready(
        &mut self,
        state: &mut State,
        partition: usize,
        mut service: BatchService,
        ready: Result<(), BoxError>,
    ) {
        let p = &mut state.partitions[partition];
        p.readying = false;
        if let Err(error) = ready {
            if let Some(ready) = p.ready.pop_front() {
                self.fail_ready(state, partition, ready, Error::from(error))
                    .await;
            }
            self.dispatch(state, partition);
            return;
        }
        if let Some(Ready {
            mut batch,
            number,
            mut capacity,
        }) = p.ready.pop_front()
        {
            // Batches sealed by max_wait while the partition was busy (a slow or
            // failing send) go out together while they fit, so a partition that fell
            // behind catches up with full batches, not a queue of small ones.
            let mut numbers = vec![number];
            while let Some(next) = p.ready.front() {
                if batch.size_in_bytes() + next.batch.size_in_bytes() > self.max_batch_bytes {
                    break;
                }
                let next = p.ready.pop_front().expect("looked at above");
                batch.append(next.batch);
                capacity.merge(next.capacity);
                numbers.push(next.number);
            }
            p.in_flight += 1;
            let deadline = batch.deadline();
            let call = service.call(batch.clone());
            state.in_flight.push(Box::pin(async move {
                let result = match deadline {
                    Some(d) => match tokio::time::timeout_at(d, call).await {
                        Ok(result) => result.map_err(Error::from),
                        Err(_) => Err(Error::delivery_timeout()),
                    },
                    None => call.await.map_err(Error::from),
                };
                (partition, numbers, batch, capacity, result)
            }));
        }
        // Ready with nothing to send (the batch expired or was cleared meanwhile):
        // the stack keeps its readiness for the next one.
        p.service = Some(service);
        self.dispatch(state, partition);
    }

    /// Queues an outcome and advances flush barriers. The events' capacity comes back
    /// when the outcome is handed out (or at once if nobody reads outcomes).
    async fn report(
        &mut self,
        state: &mut State,
        outcome: BatchOutcome,
        capacity: Capacity,
        numbers: &[u64],
        partition: Option<usize>,
    ) {
        if let Some(p) = partition {
            self.shared.settled(p, outcome.events.len());
            state.unreported -= numbers.len();
            state.unreported_events -= outcome.events.len();
            state.partitions[p].unreported -= numbers.len();
        }
        match self.outcomes.try_send((outcome, capacity)) {
            // Dropped with the outcome if nobody reads outcomes any more.
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            // Cannot happen: every queued outcome holds at least one capacity slot and
            // the queue has room for all of them. Waiting is still correct.
            Err(mpsc::error::TrySendError::Full(item)) => {
                let _ = self.outcomes.send(item).await;
            }
        }
        let mut i = 0;
        while i < state.barriers.len() {
            let b = &mut state.barriers[i];
            if b.partition.is_none() || b.partition == partition {
                b.remaining -= numbers.iter().filter(|n| **n < b.before).count();
            }
            if b.remaining == 0 {
                let _ = state.barriers.swap_remove(i).done.send(());
            } else {
                i += 1;
            }
        }
    }
}

/// A timer kept for the driver's whole run and moved only when its deadline
/// changes.
struct Timer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
}

impl Timer {
    fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(far_future())),
            armed: None,
        }
    }

    /// Sets the deadline (`None`: none); a no-op when it is the same.
    fn arm(&mut self, deadline: Option<Instant>) {
        if self.armed != deadline {
            self.armed = deadline;
            self.sleep
                .as_mut()
                .reset(deadline.unwrap_or_else(far_future));
        }
    }

    /// Resolves at the deadline.
    fn fired(&mut self) -> &mut Pin<Box<tokio::time::Sleep>> {
        &mut self.sleep
    }
}

/// Later than any deadline the driver sets.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// Makes room for partition `index` (the hub may have grown).
fn grow(state: &mut State, index: usize) {
    if index >= state.partitions.len() {
        state
            .partitions
            .resize_with(index + 1, PartitionState::default);
    }
}
