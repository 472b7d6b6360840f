//! The driver: one task that arms each open batch's `max_wait` deadline, queues the
//! sealed batches per partition, dispatches each to its partition's tower stack when
//! that stack is ready, and queues outcomes. It hears of a batch when it opens and when
//! it is sealed, never of single events.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, watch};

mod dispatch;
mod early;
mod expiry;
mod health;
mod inbox;
mod linger;
mod report;
mod state;
mod timer;

pub(crate) use inbox::{inbox, Inbox, Signal, Signals};
use linger::Linger;
use state::{grow, Barrier, PartitionState, Sent, State};
use timer::Timer;

use super::capacity::Capacity;
use super::lanes::Shared;
use super::outcome::BatchOutcome;
use super::receipt::Receipts;
use crate::route::Router;
use crate::stack::Settings;

/// How long a close waits for the spool's last writes.
const SPOOL_CLOSE: Duration = Duration::from_secs(30);

pub(crate) struct Driver {
    pub(crate) signals: Signals,
    /// What each partition's stack is made from.
    pub(crate) stacks: Settings,
    pub(crate) outcomes: mpsc::Sender<(BatchOutcome, Capacity)>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) router: Arc<Router>,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_wait: Duration,
    /// From an event's acceptance to its outcome, at most.
    pub(crate) delivery_timeout: Duration,
    /// How long a partition may have work outstanding without progress before
    /// keyless events avoid it.
    pub(crate) availability_timeout: Duration,
    pub(crate) on_close: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Set once everything is reported and the connection is closed; dropped (which
    /// the handles also notice) if the driver dies.
    pub(crate) finished: watch::Sender<bool>,
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let mut state = State {
            partitions: (0..self.router.count())
                .map(|_| PartitionState::default())
                .collect(),
            linger: Linger::new(self.max_wait, self.signals.stash.clone()),
            in_flight: FuturesUnordered::new(),
            readying: FuturesUnordered::new(),
            barriers: Vec::new(),
            next_number: 0,
            unreported: 0,
            unreported_events: 0,
            starved_pending: false,
            next_expiry: None,
            next_health_check: None,
            scratch: Vec::new(),
        };
        let mut closing = false;
        let mut handles_gone = false;
        // With a spool, its loader says when it has put the last of the backlog into
        // the lanes (through the inbox, so its batches are here before that).
        let mut loader_done = self.shared.spool.is_none();
        // One timer for the whole run, moved only when its deadline changes: a timer
        // made anew on every turn of the loop costs a registration with the time
        // driver (and a wake-up of it) each time.
        let mut expiry_timer = Timer::new();
        let mut health_timer = Timer::new();
        // The batches the `max_wait` timer found due, reused.
        let mut due = Vec::new();
        loop {
            if closing && state.unreported == 0 && state.in_flight.is_empty() && loader_done {
                // A held batch waits for one sealed before it, which the inbox delivers
                // before the close.
                debug_assert!(state.partitions.iter().all(|p| p.held.is_empty()));
                break;
            }
            state.linger.arm();
            expiry_timer.arm(state.next_expiry);
            health_timer.arm(state.next_health_check);
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
                    Some(Signal::LoaderDone) => loader_done = true,
                    Some(Signal::HandlesGone) => {
                        closing = true;
                        self.sweep(&mut state);
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
                _ = state.linger.fired(), if state.linger.armed() => {
                    state.linger.due(tokio::time::Instant::now(), &mut due);
                    for (partition, generation) in due.drain(..) {
                        if let Some(sealed) = self.shared.seal_if(partition, Some(generation)) {
                            self.to_ready(&mut state, sealed);
                            self.dispatch(&mut state, partition);
                        }
                    }
                }
                Some((partition, service, ready)) = state.readying.next(), if !state.readying.is_empty() => {
                    self.ready(&mut state, partition, service, ready).await;
                }
                Some((partition, numbers, sent)) = state.in_flight.next(), if !state.in_flight.is_empty() => {
                    let Sent { batch, capacity, receipts, result, took } = sent;
                    state.partitions[partition].in_flight -= 1;
                    self.shared.stats.of(Some(partition.0)).sent(batch.len(), took, batch.retries());
                    let result = match result {
                        // The one place a failed outcome is said to be maybe stored: a
                        // try that reached the service without a verdict recorded it on
                        // the batch, and that holds whatever a later try said.
                        Err(error) if batch.may_have_been_stored() => Err(error.into_ambiguous()),
                        other => other,
                    };
                    let size_in_bytes = batch.size_in_bytes();
                    let starting_sequence_number = batch.starting_sequence_number();
                    // The encode buffers go back to the pool when the application
                    // drops the outcome.
                    let events = batch.into_events();
                    let outcome = BatchOutcome {
                        partition: self.router.id(partition),
                        size_in_bytes,
                        starting_sequence_number,
                        recovered: events.is_recovered(),
                        events,
                        result,
                    };
                    self.report(&mut state, outcome, (capacity, receipts), &numbers, Some(partition)).await;
                    self.dispatch(&mut state, partition);
                    self.publish_if_starved(&mut state, partition);
                }
                _ = health_timer.fired(), if state.next_health_check.is_some() => {
                    health_timer.armed = None;
                    self.check_health(&mut state);
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
        while let Some(signal) = self.signals.try_recv() {
            if let Signal::Refused { .. } = signal {
                self.handle(&mut state, signal).await;
            }
        }
        if let Some(close) = self.on_close.take() {
            close.await;
        }
        if let Some(spool) = &self.shared.spool {
            // Every outcome is reported: the spool's last records are written and
            // synced, and a spool whose events are all done is left empty.
            spool.close(SPOOL_CLOSE).await;
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
                state.linger.opened((partition, generation, opened));
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
                receipt,
            } => {
                let outcome = BatchOutcome {
                    partition,
                    events: vec![*event].into(),
                    size_in_bytes: 0,
                    starting_sequence_number: None,
                    result: Err(error),
                    recovered: false,
                };
                self.report(state, outcome, (capacity, Receipts::of(receipt)), &[], None)
                    .await;
            }
            Signal::Settled { outcome, capacity } => {
                self.report(state, *outcome, (capacity, Receipts::default()), &[], None)
                    .await;
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
                self.signals.fed();
                self.publish_idle(state);
            }
            Signal::Close { .. } | Signal::HandlesGone | Signal::LoaderDone => {
                unreachable!("close is handled by the loop")
            }
        }
    }
}
