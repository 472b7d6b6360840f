//! The producer: a [`Sink`](futures_sink::Sink) of events and a stream of outcomes.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::{SinkExt, StreamExt};
//! use streaming_producer::{EventData, Producer};
//! # let emulator = eventhubs_emulator::Emulator::builder().hub("eh1", 4).start().await?;
//! # let connection_string = emulator.connection_string_for("eh1");
//!
//! let (mut producer, mut outcomes) = Producer::builder()
//!     .connection_string(&connection_string)
//!     .build()
//!     .await?;
//! producer.send(EventData::new("hello").with_partition_key("user-1")).await?;
//! producer.close().await?;
//! let outcome = outcomes.next().await.expect("one batch");
//! assert!(outcome.is_success());
//! assert_eq!(outcome.events.len(), 1);
//! # Ok(()) }
//! ```
//!
//! The contracts (backpressure, ordering, cancellation, drop) are on [`Producer`].

mod builder;
mod capacity;
mod driver;
mod handle;
mod lanes;
mod loader;
mod outcome;
mod receipt;
mod recover;
mod sink;
mod stats;

pub use crate::route::Partition;
pub use builder::ProducerBuilder;
pub use handle::Producer;
pub use outcome::{BatchOutcome, Outcomes};
pub use receipt::{Delivered, Delivery, Failed, Receipt};
#[cfg(feature = "opentelemetry")]
pub(crate) use stats::Counters;
pub use stats::{Latency, PartitionStats, ProducerStats, SendStats};

use crate::event::EventData;
use crate::Error;

/// The most partitions an Event Hub can have.
const MAX_PARTITIONS: usize = 1024;

/// An event that was not accepted, handed back with the reason.
#[derive(Debug)]
pub struct EnqueueError {
    error: Error,
    event: Option<Box<EventData>>,
}

impl EnqueueError {
    /// Why the event was not accepted.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The event, back (`None` when no event was involved, as for a failed
    /// `poll_ready`).
    pub fn into_event(self) -> Option<EventData> {
        self.event.map(|e| *e)
    }

    fn new(error: Error, event: EventData) -> Self {
        Self {
            error,
            event: Some(Box::new(event)),
        }
    }
}

impl std::fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the event was not accepted: {}", self.error)
    }
}

impl std::error::Error for EnqueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
