//! A batch: events of one partition, encoded, weighed in bytes.

use bytes::Bytes;

use crate::codec::{self, section_size, Stamp};
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
    /// When its events' delivery timeout runs out (from the oldest event's acceptance).
    deadline: Option<tokio::time::Instant>,
    /// A try reached the service (or may have) and brought back no verdict.
    maybe_stored: bool,
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

    /// Encodes `event` (its key, if it has one, as `x-opt-partition-key`) and adds it
    /// if the batched message then weighs at most `max_size_in_bytes` (a link's
    /// `max-message-size`); otherwise hands it back and leaves the batch as it was.
    ///
    /// For a batch service of your own, or to publish a batch through
    /// [`AmqpSend`](crate::AmqpSend) yourself. The producer fills its batches this way.
    ///
    /// ```
    /// use streaming_producer::{Batch, EventData};
    ///
    /// let mut batch = Batch::new("0");
    /// assert!(batch.try_push(EventData::new("small"), 1024).is_ok());
    /// let refused = batch.try_push(EventData::new(vec![0u8; 2000]), 1024);
    /// assert_eq!(refused.unwrap_err().body().len(), 2000);
    /// assert_eq!(batch.len(), 1);
    /// assert!(batch.size_in_bytes() <= 1024);
    /// ```
    // The refused event comes back by value, as `TrySendError<T>` does in tokio.
    #[allow(clippy::result_large_err)]
    pub fn try_push(
        &mut self,
        event: EventData,
        max_size_in_bytes: usize,
    ) -> Result<(), EventData> {
        let encoded = codec::encode(&event, false);
        if self.size + Self::cost(&encoded) > max_size_in_bytes {
            return Err(event);
        }
        self.push(event, encoded);
        Ok(())
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

    /// Moves the events of `later` (for the same partition, not yet numbered) behind
    /// this batch's; the deadline stays the earlier one.
    pub(crate) fn append(&mut self, later: Batch) {
        debug_assert!(self.stamp.is_none() && later.stamp.is_none());
        self.size += later.size;
        self.events.extend(later.events);
        self.encoded.extend(later.encoded);
        self.deadline = match (self.deadline, later.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
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

    /// When the delivery timeout of the batch's oldest event runs out: no try starts
    /// after it and a try in progress is cut short by it. `None` for no limit.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.deadline
    }

    /// Sets the deadline (see [`deadline`](Self::deadline)).
    pub fn set_deadline(&mut self, deadline: Option<tokio::time::Instant>) {
        self.deadline = deadline;
    }

    /// Whether a try of this batch reached the service, or may have, without a
    /// verdict coming back (a lost connection, a try timed out after the transfer):
    /// the service may hold the batch even if it is finally reported failed.
    pub fn may_have_been_stored(&self) -> bool {
        self.maybe_stored
    }

    pub(crate) fn set_maybe_stored(&mut self) {
        self.maybe_stored = true;
    }

    pub(crate) fn stamp(&self) -> Option<Stamp> {
        self.stamp
    }

    pub(crate) fn set_stamp(&mut self, stamp: Option<Stamp>) {
        self.stamp = stamp;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp::types::messaging::message::__private::Serializable;

    /// The batched message exactly as the base service hands it to fe2o3.
    fn wire_len(batch: &Batch) -> usize {
        let wire = crate::base::to_wire(batch);
        serde_amqp::to_vec(&Serializable(wire.message))
            .unwrap()
            .len()
    }

    #[test]
    fn try_push_fills_up_to_the_limit_weighing_the_message_as_it_is_written() {
        let max = 4096;
        let mut batch = Batch::new("0");
        let mut refused = None;
        for i in 0..1000 {
            let event = EventData::new(vec![b'x'; 37 + i % 300])
                .with_partition_key(format!("key-{i}"))
                .with_property("n", i as i64);
            if let Err(e) = batch.try_push(event, max) {
                refused = Some(e);
                break;
            }
            assert_eq!(
                batch.size_in_bytes(),
                wire_len(&batch),
                "after {} events",
                i + 1
            );
        }
        let refused = refused.expect("a 4 KiB batch cannot take 1000 events");
        assert!(batch.size_in_bytes() <= max);
        let before = (batch.len(), batch.size_in_bytes());
        assert!(batch.try_push(refused, max).is_err(), "still does not fit");
        assert_eq!(
            (batch.len(), batch.size_in_bytes()),
            before,
            "a refusal changes nothing"
        );
    }
}
