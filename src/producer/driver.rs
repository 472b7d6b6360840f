//! The driver: one task that owns the open batches, dispatches each to its
//! partition's tower stack when that stack is ready, and queues outcomes.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tower::{BoxError, Service};

use streaming_producer_layers::batch::{Batcher, Sealed};

use super::outcome::BatchOutcome;
use super::Shared;
use crate::batch::Batch;
use crate::error::{Error, Kind};
use crate::stack::{BatchService, Settings};
use crate::EventData;

/// What the producer handles send to the driver, in one FIFO channel so that a flush
/// or close sees every event sent before it. Every command holds a slot: events a
/// capacity permit (given back when their outcome is handed out), control commands a
/// control permit (given back when the driver takes them).
#[derive(Debug)]
pub(crate) enum Command {
    Event {
        partition: usize,
        event: EventData,
        encoded: Vec<u8>,
    },
    /// An event that can never be published (unknown partition, too large).
    Refused {
        partition: String,
        event: EventData,
        error: Error,
    },
    Flush {
        done: oneshot::Sender<()>,
        _slot: OwnedSemaphorePermit,
    },
    /// Publishes one partition's open batch and reports when its earlier events are done.
    FlushPartition {
        partition: usize,
        done: oneshot::Sender<()>,
        _slot: OwnedSemaphorePermit,
    },
    /// Hands back one partition's events not yet sent, as abandoned; reports how many.
    ClearPartition {
        partition: usize,
        done: oneshot::Sender<usize>,
        _slot: OwnedSemaphorePermit,
    },
    Close {
        abandon: bool,
        _slot: OwnedSemaphorePermit,
    },
}

/// An event in an open batch: the event, its encoding, its number (for flush barriers).
type Item = (EventData, Vec<u8>, u64);

#[derive(Default)]
struct PartitionState {
    ready: VecDeque<(Batch, Vec<u64>)>,
    in_flight: usize,
    /// Events of this partition received and not yet reported.
    pending: usize,
    /// The partition's stack, made when it first publishes; `None` meanwhile and
    /// while a readiness check holds it.
    service: Option<BatchService>,
    /// A readiness check of the stack is under way.
    readying: bool,
}

struct Barrier {
    /// Only events of this partition count (all partitions if `None`).
    partition: Option<usize>,
    /// Events numbered below this were sent before the flush.
    before: u64,
    remaining: usize,
    done: oneshot::Sender<()>,
}

/// A send: the partition, the events' numbers, the batch (the driver's clone), and
/// what the stack answered (or the delivery deadline, if it came first).
type InFlight = Pin<Box<dyn Future<Output = (usize, Vec<u64>, Batch, Result<(), Error>)> + Send>>;

/// A partition's stack becoming ready (or failing to).
type Readying = Pin<Box<dyn Future<Output = (usize, BatchService, Result<(), BoxError>)> + Send>>;

pub(crate) struct Driver {
    pub(crate) commands: mpsc::Receiver<Command>,
    /// What each partition's stack is made from.
    pub(crate) stacks: Settings,
    pub(crate) outcomes: mpsc::Sender<BatchOutcome>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_wait: Duration,
    /// From an event's acceptance to its outcome, at most.
    pub(crate) delivery_timeout: Duration,
    pub(crate) concurrency: usize,
    /// At this many pending events no more can come in, so waiting for `max_wait`
    /// would only idle: batches that can be sent now are published at once.
    pub(crate) max_pending_events: usize,
    pub(crate) on_close: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Set once everything is reported and the connection is closed; dropped (which
    /// the handles also notice) if the driver dies.
    pub(crate) finished: watch::Sender<bool>,
}

struct State {
    /// The open batches: size-or-time batching per partition (layers/batch).
    batcher: Batcher<Item>,
    partitions: Vec<PartitionState>,
    in_flight: FuturesUnordered<InFlight>,
    readying: FuturesUnordered<Readying>,
    barriers: Vec<Barrier>,
    next_seq: u64,
    /// Events received and not yet reported.
    pending: usize,
    /// The earliest deadline of a batch waiting in a ready queue, if any.
    next_expiry: Option<Instant>,
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let mut state = State {
            batcher: Batcher::new(self.max_batch_bytes, self.max_wait),
            partitions: (0..self.shared.partition_count())
                .map(|_| PartitionState::default())
                .collect(),
            in_flight: FuturesUnordered::new(),
            readying: FuturesUnordered::new(),
            barriers: Vec::new(),
            next_seq: 0,
            pending: 0,
            next_expiry: None,
        };
        let mut closing = false;
        // Two timers for the whole run, moved only when their deadline changes: a
        // timer made anew on every turn of the loop (that is, for every event) costs a
        // timer registration and a wake-up of the time driver each time.
        let mut expiry_timer = Timer::new();
        let mut batch_timer = Timer::new();
        loop {
            if closing && state.pending == 0 && state.in_flight.is_empty() {
                break;
            }
            let deadline = state.batcher.next_deadline();
            expiry_timer.arm(state.next_expiry);
            batch_timer.arm(deadline);
            tokio::select! {
                command = self.commands.recv(), if !closing => match command {
                    Some(Command::Close { abandon, .. }) => {
                        self.commands.close();
                        // Everything sent before the close is still in the channel.
                        while let Ok(c) = self.commands.try_recv() {
                            if !matches!(c, Command::Close { .. }) {
                                self.handle(&mut state, c).await;
                            }
                        }
                        if abandon {
                            self.abandon_all(&mut state).await;
                        } else {
                            self.seal_all(&mut state);
                        }
                        closing = true;
                    }
                    Some(c) => self.handle(&mut state, c).await,
                    None => {
                        // Every handle is gone without a close: publish what is pending.
                        self.seal_all(&mut state);
                        closing = true;
                    }
                },
                Some((partition, service, ready)) = state.readying.next(), if !state.readying.is_empty() => {
                    self.ready(&mut state, partition, service, ready).await;
                }
                Some((partition, seqs, batch, result)) = state.in_flight.next(), if !state.in_flight.is_empty() => {
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
                    self.report(&mut state, outcome, &seqs, Some(partition)).await;
                    self.dispatch(&mut state, partition);
                }
                _ = expiry_timer.fired(), if state.next_expiry.is_some() => {
                    expiry_timer.armed = None;
                    self.expire(&mut state).await;
                }
                _ = batch_timer.fired(), if deadline.is_some() => {
                    batch_timer.armed = None;
                    for sealed in state.batcher.seal_expired(Instant::now()) {
                        let key = sealed.key;
                        self.to_ready(&mut state, sealed);
                        self.dispatch(&mut state, key);
                    }
                }
            }
            if closing {
                for i in 0..state.partitions.len() {
                    self.dispatch(&mut state, i);
                }
            }
        }
        if let Some(close) = self.on_close.take() {
            close.await;
        }
        self.finished.send_replace(true);
    }

    async fn handle(&mut self, state: &mut State, command: Command) {
        match command {
            Command::Event {
                partition,
                event,
                encoded,
            } => {
                let seq = state.next_seq;
                state.next_seq += 1;
                state.pending += 1;
                grow(state, partition);
                state.partitions[partition].pending += 1;
                let cost = Batch::cost(&encoded);
                for sealed in
                    state
                        .batcher
                        .push(partition, (event, encoded, seq), cost, Instant::now())
                {
                    self.to_ready(state, sealed);
                }
                if state.pending >= self.max_pending_events {
                    // No room for more events: publish what can go now instead of
                    // waiting out max_wait. Partitions busy sending keep filling.
                    for i in 0..state.partitions.len().max(partition + 1) {
                        let idle = state
                            .partitions
                            .get(i)
                            .is_none_or(|p| p.in_flight < self.concurrency && p.ready.is_empty());
                        if idle {
                            if let Some(sealed) = state.batcher.seal(i) {
                                self.to_ready(state, sealed);
                            }
                        }
                        if i < state.partitions.len() {
                            self.dispatch(state, i);
                        }
                    }
                } else if partition < state.partitions.len() {
                    self.dispatch(state, partition);
                }
            }
            Command::Refused {
                partition,
                event,
                error,
            } => {
                let seq = state.next_seq;
                state.next_seq += 1;
                state.pending += 1;
                let outcome = BatchOutcome {
                    partition,
                    events: vec![event],
                    size_in_bytes: 0,
                    starting_sequence_number: None,
                    result: Err(error),
                };
                self.report(state, outcome, &[seq], None).await;
            }
            Command::Flush { done, .. } => {
                self.seal_all(state);
                for i in 0..state.partitions.len() {
                    self.dispatch(state, i);
                }
                if state.pending == 0 {
                    let _ = done.send(());
                } else {
                    state.barriers.push(Barrier {
                        partition: None,
                        before: state.next_seq,
                        remaining: state.pending,
                        done,
                    });
                }
            }
            Command::FlushPartition {
                partition, done, ..
            } => {
                self.seal_partition(state, partition);
                self.dispatch(state, partition);
                let remaining = state.partitions[partition].pending;
                if remaining == 0 {
                    let _ = done.send(());
                } else {
                    state.barriers.push(Barrier {
                        partition: Some(partition),
                        before: state.next_seq,
                        remaining,
                        done,
                    });
                }
            }
            Command::ClearPartition {
                partition, done, ..
            } => {
                self.seal_partition(state, partition);
                let cleared = self.abandon_ready(state, partition).await;
                let _ = done.send(cleared);
            }
            Command::Close { .. } => unreachable!("close is handled by the loop"),
        }
    }

    async fn abandon_all(&mut self, state: &mut State) {
        self.seal_all(state);
        for i in 0..state.partitions.len() {
            self.abandon_ready(state, i).await;
        }
    }

    /// Hands back the batches of `partition` waiting to be sent, as abandoned; returns
    /// how many events they held.
    async fn abandon_ready(&mut self, state: &mut State, partition: usize) -> usize {
        let mut abandoned = 0;
        while let Some((batch, seqs)) = state.partitions[partition].ready.pop_front() {
            abandoned += seqs.len();
            let outcome = BatchOutcome {
                partition: batch.partition().to_owned(),
                size_in_bytes: batch.size_in_bytes(),
                starting_sequence_number: None,
                events: batch.into_events(),
                result: Err(Error::new(Kind::Abandoned)),
            };
            self.report(state, outcome, &seqs, Some(partition)).await;
        }
        abandoned
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
                .is_some_and(|(b, _)| b.deadline().is_some_and(|d| d <= now))
            {
                expired.extend(ready.pop_front());
            }
            if let Some(d) = ready.front().and_then(|(b, _)| b.deadline()) {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
            for (batch, seqs) in expired {
                let outcome = BatchOutcome {
                    partition: batch.partition().to_owned(),
                    size_in_bytes: batch.size_in_bytes(),
                    starting_sequence_number: None,
                    events: batch.into_events(),
                    result: Err(Error::delivery_timeout()),
                };
                self.report(state, outcome, &seqs, Some(i)).await;
            }
        }
        state.next_expiry = next;
    }

    /// Moves a sealed batch to its partition's queue of batches ready to send.
    fn to_ready(&self, state: &mut State, sealed: Sealed<Item>) {
        grow(state, sealed.key);
        let deadline = sealed
            .opened
            .checked_add(self.delivery_timeout)
            .unwrap_or_else(|| sealed.opened + Duration::from_secs(100 * 365 * 24 * 3600));
        state.next_expiry = Some(state.next_expiry.map_or(deadline, |n| n.min(deadline)));
        let mut batch = Batch::new(self.shared.partition_id(sealed.key));
        batch.set_deadline(Some(deadline));
        let mut seqs = Vec::with_capacity(sealed.items.len());
        for (event, encoded, seq) in sealed.items {
            batch.push(event, encoded);
            seqs.push(seq);
        }
        state.partitions[sealed.key].ready.push_back((batch, seqs));
    }

    /// Seals the open batch of `partition`, if any, into its ready queue.
    fn seal_partition(&self, state: &mut State, partition: usize) {
        grow(state, partition);
        if let Some(sealed) = state.batcher.seal(partition) {
            self.to_ready(state, sealed);
        }
    }

    fn seal_all(&self, state: &mut State) {
        for sealed in state.batcher.seal_all() {
            self.to_ready(state, sealed);
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
            if let Some((batch, seqs)) = p.ready.pop_front() {
                let outcome = BatchOutcome {
                    partition: batch.partition().to_owned(),
                    size_in_bytes: batch.size_in_bytes(),
                    starting_sequence_number: None,
                    events: batch.into_events(),
                    result: Err(Error::from(error)),
                };
                self.report(state, outcome, &seqs, Some(partition)).await;
            }
            self.dispatch(state, partition);
            return;
        }
        if let Some((mut batch, mut seqs)) = p.ready.pop_front() {
            // Batches sealed by max_wait while the partition was busy (a slow or
            // failing send) go out together while they fit, so a partition that fell
            // behind catches up with full batches, not a queue of small ones.
            while let Some((next, _)) = p.ready.front() {
                if batch.size_in_bytes() + next.size_in_bytes() > self.max_batch_bytes {
                    break;
                }
                let (next, more) = p.ready.pop_front().expect("looked at above");
                batch.append(next);
                seqs.extend(more);
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
                (partition, seqs, batch, result)
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
        seqs: &[u64],
        partition: Option<usize>,
    ) {
        // Count by what went in, whatever a user layer handed back.
        let count = seqs.len();
        state.pending -= count;
        if let Some(p) = partition.and_then(|p| state.partitions.get_mut(p)) {
            p.pending -= count;
        }
        self.shared.settled(partition, count);
        match self.outcomes.try_send(outcome) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(outcome)) => {
                self.shared.release(count, body_bytes(&outcome));
            }
            // Cannot happen: every queued outcome holds at least one capacity slot and
            // the queue has room for all of them. Waiting is still correct.
            Err(mpsc::error::TrySendError::Full(outcome)) => {
                if let Err(e) = self.outcomes.send(outcome).await {
                    self.shared.release(count, body_bytes(&e.0));
                }
            }
        }
        let mut i = 0;
        while i < state.barriers.len() {
            let b = &mut state.barriers[i];
            if b.partition.is_none() || b.partition == partition {
                b.remaining -= seqs.iter().filter(|s| **s < b.before).count();
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

pub(crate) fn body_bytes(outcome: &BatchOutcome) -> usize {
    outcome.events.iter().map(|e| e.body().len()).sum()
}
