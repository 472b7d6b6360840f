//! What happened to each batch.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use crate::{Error, EventData};

/// The outcome of one batch: every event the producer accepted appears in exactly one.
#[derive(Debug)]
pub struct BatchOutcome {
    /// The partition the events were for (for an unknown partition id, that id).
    pub partition: String,
    /// The events, in the order they were published (or would have been).
    pub events: Vec<EventData>,
    /// Size of the batched message in encoded bytes (0 for an event refused alone
    /// before batching).
    pub size_in_bytes: usize,
    /// `Ok` if the service accepted the batch; otherwise why not. Events handed back by
    /// an abandoning close carry an error for which [`Error::is_abandoned`] is true.
    pub result: Result<(), Error>,
}

impl BatchOutcome {
    /// Whether the service accepted the batch.
    pub fn is_success(&self) -> bool {
        self.result.is_ok()
    }

    /// Whether the events were handed back unsent by an abandoning close.
    pub fn is_abandoned(&self) -> bool {
        matches!(&self.result, Err(e) if e.is_abandoned())
    }
}

/// The stream of [`BatchOutcome`]s, one per batch, ending after the producer closes.
///
/// # Backpressure
///
/// Outcomes wait in a bounded queue. A producer whose outcomes are not read stops
/// taking events once that queue is full; drop the stream to ignore outcomes.
#[derive(Debug)]
pub struct Outcomes {
    rx: mpsc::Receiver<BatchOutcome>,
}

impl Outcomes {
    pub(crate) fn new(rx: mpsc::Receiver<BatchOutcome>) -> Self {
        Self { rx }
    }
}

impl Stream for Outcomes {
    type Item = BatchOutcome;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BatchOutcome>> {
        self.rx.poll_recv(cx)
    }
}
