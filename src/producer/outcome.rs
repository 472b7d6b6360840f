//! What happened to each batch.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use super::capacity::Capacity;
use crate::{Error, Events};

/// The outcome of one batch: every event the producer accepted appears in exactly one.
#[derive(Debug)]
#[non_exhaustive]
pub struct BatchOutcome {
    /// The partition the events were for (for an unknown partition id, that id).
    pub partition: String,
    /// The events, in the order they were published (or would have been); decoded
    /// only when read, see [`Events`].
    pub events: Events,
    /// Size of the batched message in encoded bytes (0 for an event refused alone
    /// before batching).
    pub size_in_bytes: usize,
    /// With idempotent retries, the producer sequence number of the first event
    /// (the others follow it); `None` otherwise, or if the batch was never numbered.
    pub starting_sequence_number: Option<i32>,
    /// `Ok` if the service accepted the batch; otherwise why not. Events handed back
    /// unsent carry an error for which [`Error::is_abandoned`] is true; an error for
    /// which [`Error::is_ambiguous`] is true means the batch may have been stored.
    pub result: Result<(), Error>,
    /// Whether the events were accepted by an earlier producer on the same
    /// [spool](crate::ProducerBuilder::spool) (before a crash or a restart) and
    /// recovered from it: the application learns their fate here, and can tell them
    /// by their body, properties or message id.
    pub recovered: bool,
}

impl BatchOutcome {
    /// Whether the service accepted the batch.
    pub fn is_success(&self) -> bool {
        self.result.is_ok()
    }

    /// Whether the events were handed back unsent (by an abandoning close or by
    /// clearing their partition).
    pub fn is_abandoned(&self) -> bool {
        matches!(&self.result, Err(e) if e.is_abandoned())
    }
}

/// The stream of [`BatchOutcome`]s, one per batch, ending after the producer closes.
///
/// # Backpressure
///
/// An event keeps its place in the producer's capacity until its outcome is handed
/// out here, so outcomes waiting to be read count against `max_pending_events` and
/// `max_pending_bytes`: a producer whose outcomes are not read stops taking events.
/// Closing never waits for outcomes to be read, but for one case: with a
/// [spool](crate::ProducerBuilder::spool), events waiting on disk (accepted while
/// memory was full) are brought into memory to be published, which takes the room
/// unread outcomes hold. Drop the stream to ignore outcomes.
/// A handle that has waited a few seconds for room held by unread outcomes says so,
/// once, in a `tracing` warning.
#[derive(Debug)]
pub struct Outcomes {
    /// Each outcome with its events' capacity, given back as the outcome is handed
    /// out (or dropped with the stream).
    rx: mpsc::Receiver<(BatchOutcome, Capacity)>,
}

impl Outcomes {
    pub(crate) fn new(rx: mpsc::Receiver<(BatchOutcome, Capacity)>) -> Self {
        Self { rx }
    }
}

impl Stream for Outcomes {
    type Item = BatchOutcome;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BatchOutcome>> {
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|(outcome, _capacity)| outcome))
    }
}

/// Counts the outcomes queued on `outcomes` and not yet read, without holding the
/// queue open.
pub(super) fn unread(
    outcomes: &mpsc::Sender<(BatchOutcome, Capacity)>,
) -> impl Fn() -> usize + Send + Sync + 'static {
    let outcomes = outcomes.downgrade();
    move || {
        outcomes
            .upgrade()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }
}
