//! A batch: events of one partition, encoded, weighed in bytes.

use std::sync::{Arc, Mutex};

use fe2o3_amqp::types::messaging::{Batch as Sections, Data};
use fe2o3_amqp::types::primitives::Binary;

use crate::codec::{self, section_size, Stamp};
use crate::event::EventData;

/// Events for one partition, with their AMQP encodings, ready to be published as one
/// batched message.
///
/// A batch is what travels through each partition's tower stack. Cloning it is cheap
/// (the events sit behind an `Arc`), so a retry layer resends a clone and the producer
/// keeps one to report the outcome with: nothing is lost whatever a layer returns.
/// What a try learns (the sequence numbers given to it, whether it may have been
/// stored) is shared by every clone.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    partition: String,
    events: Vec<EventData>,
    /// Each event encoded as a whole AMQP message, as the batched message's data
    /// sections: handed to the link as they are (behind the `Arc`), never copied.
    sections: Arc<Sections<Data>>,
    size: usize,
    /// When its events' delivery timeout runs out (from the oldest event's acceptance).
    deadline: Option<tokio::time::Instant>,
    tries: Mutex<Tries>,
}

/// What tries of the batch learned; shared by its clones.
#[derive(Debug, Default, Clone, Copy)]
struct Tries {
    /// With idempotent publishing: the first event's numbers; the others follow.
    stamp: Option<Stamp>,
    /// A try reached the service (or may have) and brought back no verdict.
    maybe_stored: bool,
}

impl Clone for Inner {
    fn clone(&self) -> Self {
        Self {
            partition: self.partition.clone(),
            events: self.events.clone(),
            sections: self.sections.clone(),
            size: self.size,
            deadline: self.deadline,
            tries: Mutex::new(*lock(&self.tries)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            partition: String::new(),
            events: Vec::new(),
            sections: Arc::new(Sections::new(Vec::new())),
            size: 0,
            deadline: None,
            tries: Mutex::default(),
        }
    }
}

impl Batch {
    /// An empty batch for `partition`.
    pub fn new(partition: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                partition: partition.into(),
                ..Inner::default()
            }),
        }
    }

    /// An empty batch with room for `events` events.
    pub(crate) fn with_capacity(partition: String, events: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                partition,
                events: Vec::with_capacity(events),
                sections: Arc::new(Sections::new(Vec::with_capacity(events))),
                ..Inner::default()
            }),
        }
    }

    /// For changes before the batch is published: a batch shared with clones is
    /// copied first, so the clones keep what they had.
    fn inner_mut(&mut self) -> &mut Inner {
        Arc::make_mut(&mut self.inner)
    }

    /// The partition the batch goes to.
    pub fn partition(&self) -> &str {
        &self.inner.partition
    }

    /// The events, in publishing order.
    pub fn events(&self) -> &[EventData] {
        &self.inner.events
    }

    /// Takes the events out (copying them if a clone of the batch is still alive).
    pub fn into_events(self) -> Vec<EventData> {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner.events,
            Err(shared) => shared.events.clone(),
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.inner.events.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.inner.events.is_empty()
    }

    /// Size of the batched message in encoded bytes.
    pub fn size_in_bytes(&self) -> usize {
        self.inner.size
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
        if self.size_in_bytes() + Self::cost(&encoded) > max_size_in_bytes {
            return Err(event);
        }
        self.push(event, encoded);
        Ok(())
    }

    /// The bytes `encoded` would add.
    pub(crate) fn cost(encoded: &[u8]) -> usize {
        section_size(encoded.len())
    }

    /// Adds an event with its encoding (the caller checked that it fits).
    pub(crate) fn push(&mut self, event: EventData, encoded: Vec<u8>) {
        let inner = self.inner_mut();
        inner.size += Self::cost(&encoded);
        inner.events.push(event);
        Arc::make_mut(&mut inner.sections).push(Data(Binary::from(encoded)));
    }

    /// Moves the events of `later` (for the same partition, not yet numbered) behind
    /// this batch's; the deadline stays the earlier one.
    pub(crate) fn append(&mut self, later: Batch) {
        debug_assert!(self.stamp().is_none() && later.stamp().is_none());
        let later = Arc::try_unwrap(later.inner).unwrap_or_else(|shared| (*shared).clone());
        let sections = Arc::try_unwrap(later.sections).unwrap_or_else(|shared| (*shared).clone());
        let inner = self.inner_mut();
        inner.size += later.size;
        inner.events.extend(later.events);
        Arc::make_mut(&mut inner.sections).extend(sections);
        inner.deadline = match (inner.deadline, later.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// The data sections, shared (not copied) with every clone and every try.
    pub(crate) fn sections(&self) -> &Arc<Sections<Data>> {
        &self.inner.sections
    }

    /// With idempotent retries: the producer sequence number of the first event; the
    /// others follow it, one each (wrapping from `i32::MAX` to 0). Set once the batch
    /// is numbered for publishing, and kept across retries.
    pub fn starting_sequence_number(&self) -> Option<i32> {
        self.stamp().map(|s| s.sequence)
    }

    /// When the delivery timeout of the batch's oldest event runs out: no try starts
    /// after it and a try in progress is cut short by it. `None` for no limit.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.inner.deadline
    }

    /// Sets the deadline (see [`deadline`](Self::deadline)).
    pub fn set_deadline(&mut self, deadline: Option<tokio::time::Instant>) {
        self.inner_mut().deadline = deadline;
    }

    /// Whether a try of this batch reached the service, or may have, without a
    /// verdict coming back (a lost connection, a try timed out after the transfer):
    /// the service may hold the batch even if it is finally reported failed.
    pub fn may_have_been_stored(&self) -> bool {
        lock(&self.inner.tries).maybe_stored
    }

    /// Records that a try may have reached the service without a verdict (see
    /// [`may_have_been_stored`](Self::may_have_been_stored)); every clone sees it. A
    /// transport of your own calls this when it loses track of a transfer.
    pub fn mark_maybe_stored(&self) {
        lock(&self.inner.tries).maybe_stored = true;
    }

    pub(crate) fn stamp(&self) -> Option<Stamp> {
        lock(&self.inner.tries).stamp
    }

    /// Numbers the batch (idempotent publishing); every clone sees it.
    pub(crate) fn set_stamp(&self, stamp: Option<Stamp>) {
        lock(&self.inner.tries).stamp = stamp;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::PropertyValue;
    use bytes::Bytes;
    use fe2o3_amqp::types::messaging::message::__private::Serializable;

    /// The batched message exactly as the base service hands it to fe2o3.
    fn wire_len(batch: &Batch) -> usize {
        let wire = crate::amqp::to_wire(batch);
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

    /// SplitMix64 (Steele, Lea, Flood 2014): a small seeded generator, so every run
    /// checks the same shapes and a failure names its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// A length that often sits on an encoding boundary (254/255/256 bytes).
        fn len(&mut self, most: u64) -> usize {
            const EDGES: [u64; 8] = [0, 1, 5, 253, 254, 255, 256, 257];
            if self.below(2) == 0 {
                EDGES[self.below(8) as usize] as usize
            } else {
                self.below(most + 1) as usize
            }
        }

        fn text(&mut self, most: u64) -> String {
            let n = self.len(most);
            // Some multi-byte characters, so bytes and characters differ.
            (0..n)
                .map(|i| if (i + n) % 7 == 0 { 'é' } else { 'k' })
                .collect()
        }
    }

    fn random_event(rng: &mut Rng) -> EventData {
        let body_len = if rng.below(50) == 0 {
            70_000
        } else {
            rng.len(400)
        };
        let mut event = EventData::new(vec![b'x'; body_len]);
        match rng.below(3) {
            0 => event = event.with_partition_key(rng.text(300)),
            1 => event = event.with_partition_id("3"),
            _ => {}
        }
        if rng.below(3) == 0 {
            event = event.with_message_id(rng.text(300));
        }
        if rng.below(4) == 0 {
            event = event.with_correlation_id(rng.text(40));
        }
        if rng.below(4) == 0 {
            event = event.with_content_type(rng.text(40));
        }
        for p in 0..rng.below(4).pow(3) {
            let name = format!("{p}{}", rng.text(20));
            event = match rng.below(7) {
                0 => event.with_property(name, rng.text(300)),
                1 => event.with_property(name, rng.next() as i64),
                2 => event.with_property(name, rng.next() as i32),
                3 => event.with_property(name, rng.next() as f64),
                4 => event.with_property(name, rng.below(2) == 0),
                5 => event.with_property(
                    name,
                    PropertyValue::Binary(Bytes::from(vec![1u8; rng.len(300)])),
                ),
                _ => event.with_property(name, PropertyValue::Timestamp(rng.next() as i64)),
            };
        }
        event
    }

    #[test]
    fn random_event_shapes_weigh_exactly_what_fe2o3_writes() {
        for seed in 0..300u64 {
            let mut rng = Rng(seed);
            let idempotent = rng.below(2) == 0;
            let max = 1024 + rng.below(300_000) as usize;
            let mut batch = Batch::new("3");
            for _ in 0..200 {
                let event = random_event(&mut rng);
                let encoded = codec::encode(&event, idempotent);
                if batch.size_in_bytes() + Batch::cost(&encoded) > max {
                    continue;
                }
                batch.push(event, encoded);
            }
            if idempotent {
                batch.set_stamp(Some(Stamp {
                    sequence: i32::MAX - rng.below(100) as i32,
                    producer_id: rng.next() as i64,
                    epoch: rng.next() as i16,
                }));
            }
            assert!(batch.size_in_bytes() <= max, "seed {seed}");
            assert_eq!(
                batch.size_in_bytes(),
                wire_len(&batch),
                "seed {seed}: {} events, idempotent {idempotent}",
                batch.len()
            );
        }
    }
}
