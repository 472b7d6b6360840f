//! What the driver keeps while it runs: each partition's queue of sealed batches, its
//! stack and sends in flight, the `max_wait` deadlines, and flush barriers.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use futures_util::stream::FuturesUnordered;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::BoxError;

use super::linger::Linger;
use crate::batch::Batch;
use crate::producer::capacity::Capacity;
use crate::producer::lanes::Sealed;
use crate::producer::receipt::Receipts;
use crate::route::Index;
use crate::stack::BatchService;
use crate::Error;

/// A sealed batch waiting for its partition's stack, numbered in the order the driver
/// received it (for flush barriers).
pub(super) struct Ready {
    pub(super) batch: Batch,
    pub(super) number: u64,
    pub(super) capacity: Capacity,
    pub(super) receipts: Receipts,
}

#[derive(Default)]
pub(super) struct PartitionState {
    pub(super) ready: VecDeque<Ready>,
    pub(super) in_flight: usize,
    /// Batches received and not yet reported.
    pub(super) unreported: usize,
    /// The partition's stack, made when it first publishes; `None` meanwhile and
    /// while a readiness check holds it.
    pub(super) service: Option<BatchService>,
    /// A readiness check of the stack is under way.
    pub(super) readying: bool,
    /// The generation of the partition's batch queued last (batches are queued in
    /// the order the lane sealed them).
    pub(super) sealed_up_to: u64,
    /// Batches sealed after one that is not here yet (see `Driver::to_ready`).
    pub(super) held: Vec<Sealed>,
    /// When it last made progress: an outcome, or work after none was outstanding.
    pub(super) progress_at: Option<Instant>,
    /// Avoided by keyless events until then: its last batch failed.
    pub(super) failing_until: Option<Instant>,
    /// Failed batches in a row.
    pub(super) failures: u32,
}

impl PartitionState {
    /// Neither sending nor about to.
    pub(super) fn idle(&self) -> bool {
        self.in_flight == 0 && self.ready.is_empty() && !self.readying
    }
}

pub(super) struct Barrier {
    /// Only batches of this partition count (all partitions if `None`).
    pub(super) partition: Option<Index>,
    /// Batches numbered below this were received before the flush.
    pub(super) before: u64,
    pub(super) remaining: usize,
    pub(super) done: oneshot::Sender<()>,
}

/// A send in flight: its partition, its batches' numbers, and what comes back with
/// the result.
pub(super) type InFlight = Pin<Box<dyn Future<Output = (Index, Vec<u64>, Sent)> + Send>>;

/// A batch that was sent (the driver's clone), with its capacity and receipts, and
/// what the stack answered (or the delivery deadline, if it came first).
pub(super) struct Sent {
    pub(super) batch: Batch,
    pub(super) capacity: Capacity,
    pub(super) receipts: Receipts,
    pub(super) result: Result<(), Error>,
    /// From the stack's call to its result.
    pub(super) took: std::time::Duration,
}

/// A partition's stack becoming ready (or failing to).
pub(super) type Readying =
    Pin<Box<dyn Future<Output = (Index, BatchService, Result<(), BoxError>)> + Send>>;

pub(super) struct State {
    pub(super) partitions: Vec<PartitionState>,
    /// The `max_wait` deadline of each open batch.
    pub(super) linger: Linger,
    pub(super) in_flight: FuturesUnordered<InFlight>,
    pub(super) readying: FuturesUnordered<Readying>,
    pub(super) barriers: Vec<Barrier>,
    pub(super) next_number: u64,
    /// Batches received and not yet reported.
    pub(super) unreported: usize,
    /// Events in those batches.
    pub(super) unreported_events: usize,
    /// While starved, a partition's open batch was too small to go early: every idle
    /// partition is looked at again after the next send.
    pub(super) starved_pending: bool,
    /// The earliest delivery deadline of a batch waiting in a ready queue, if any.
    pub(super) next_expiry: Option<Instant>,
    /// When partitions' progress is checked next (for adaptive routing).
    pub(super) next_health_check: Option<Instant>,
    /// Reused for lists of partitions.
    pub(super) scratch: Vec<Index>,
}

/// Makes room for partition `index` (the hub may have grown).
pub(super) fn grow(state: &mut State, index: Index) {
    if index.0 >= state.partitions.len() {
        state
            .partitions
            .resize_with(index.0 + 1, PartitionState::default);
    }
}
