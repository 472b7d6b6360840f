//! A batch: events of one partition, encoded, weighed in bytes.

use bytes::Bytes;

use crate::codec::{section_size, Stamp};
use crate::event::EventData;

/// Events for one partition, with their AMQP encodings, ready to be published as one
/// batched message.
///
/// A batch is what travels through the tower stack: layers see it as the request, and
/// services hand it back in the response or the error, so nothing is lost on failure.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    partition: String,
    events: Vec<EventData>,
    encoded: Vec<Bytes>,
    size: usize,
    /// With idempotent publishing: the first event's numbers; the others follow.
    stamp: Option<Stamp>,
}

impl Batch {
    /// An empty batch for `partition`.
    pub fn new(partition: impl Into<String>) -> Self {
        Self {
            partition: partition.into(),
            ..Self::default()
        }
    }

    /// The partition the batch goes to.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The events, in publishing order.
    pub fn events(&self) -> &[EventData] {
        &self.events
    }

    /// Takes the events out.
    pub fn into_events(self) -> Vec<EventData> {
        self.events
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Size of the batched message in encoded bytes.
    pub fn size_in_bytes(&self) -> usize {
        self.size
    }

    /// The bytes `encoded` would add.
    pub(crate) fn cost(encoded: &Bytes) -> usize {
        section_size(encoded.len())
    }

    /// Adds an event with its encoding (the caller checked that it fits).
    pub(crate) fn push(&mut self, event: EventData, encoded: Bytes) {
        self.size += Self::cost(&encoded);
        self.events.push(event);
        self.encoded.push(encoded);
    }

    pub(crate) fn encoded(&self) -> &[Bytes] {
        &self.encoded
    }

    /// With idempotent retries: the producer sequence number of the first event; the
    /// others follow it, one each (wrapping from `i32::MAX` to 0). Set once the batch
    /// is numbered for publishing, and kept across retries.
    pub fn starting_sequence_number(&self) -> Option<i32> {
        self.stamp.map(|s| s.sequence)
    }

    pub(crate) fn stamp(&self) -> Option<Stamp> {
        self.stamp
    }

    pub(crate) fn set_stamp(&mut self, stamp: Option<Stamp>) {
        self.stamp = stamp;
    }
}
