//! Batches are weighed exactly as they are written on the wire, and read back as they
//! were enqueued: every shape and size of event, checked against fe2o3's serialized
//! length of the message fe2o3 would serialize from them (which the payload the
//! base service writes equals, byte for byte) and against the events themselves.

use std::sync::Arc;

use crate::batch::{Batch, Filling};
use crate::codec::{self, Stamp};
use crate::event::EventData;
use crate::event::PropertyValue;
use crate::pool::BufferPool;
use bytes::Bytes;
use streaming_producer_layers::PartitionBatch as _;

/// The batched message exactly as the base service writes it, checked against fe2o3's
/// serialization of the same sections.
fn wire_len(batch: &Batch) -> usize {
    let payload = super::payload(batch);
    let fe2o3 = super::serialized(batch);
    assert_eq!(payload[..], fe2o3[..], "the payload is what fe2o3 writes");
    payload.len()
}

fn pool() -> Arc<BufferPool> {
    Arc::new(BufferPool::new(1000))
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
            .map(|i| if (i + n).is_multiple_of(7) { 'é' } else { 'k' })
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
        let mut filling = Filling::new("3".into(), 0, false);
        for _ in 0..200 {
            let event = random_event(&mut rng);
            let encoded = codec::encode(&event, idempotent);
            if filling.size_in_bytes() + Batch::cost(&encoded) > max {
                continue;
            }
            filling.push(crate::batch::pinned(&event), encoded, None);
        }
        let batch = filling.seal(&pool(), None);
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

#[test]
fn random_event_shapes_read_back_as_they_were_enqueued() {
    for seed in 0..300u64 {
        let mut rng = Rng(seed);
        let idempotent = rng.below(2) == 0;
        let (mut first, mut second) = (
            Filling::new("3".into(), 0, false),
            Filling::new("3".into(), 0, false),
        );
        let mut enqueued = Vec::new();
        for i in 0..40 {
            let event = random_event(&mut rng);
            let encoded = codec::encode(&event, idempotent);
            let half = if i < 25 { &mut first } else { &mut second };
            half.push(crate::batch::pinned(&event), encoded, None);
            enqueued.push(event);
        }
        let mut first = first.seal(&pool(), None);
        first.append(second.seal(&pool(), None));
        let events = first.events();
        assert_eq!(events.len(), enqueued.len(), "seed {seed}");
        assert_eq!(events.iter().collect::<Vec<_>>(), enqueued, "seed {seed}");
        assert!(
            events
                .bodies()
                .eq(enqueued.iter().map(|e| e.body().as_ref())),
            "seed {seed}"
        );
        assert_eq!(events.get(7).as_ref(), enqueued.get(7), "seed {seed}");
        assert_eq!(events.get(enqueued.len()), None);
    }
}

#[test]
fn events_refused_before_batching_come_back_as_they_were() {
    let event = EventData::new("lost").with_partition_id("9");
    let events = crate::Events::from(vec![event.clone()]);
    assert_eq!(events.len(), 1);
    assert_eq!(events.get(0), Some(event.clone()));
    assert_eq!(events.bodies().collect::<Vec<_>>(), [b"lost".as_slice()]);
    assert_eq!(events.into_iter().collect::<Vec<_>>(), [event]);
}

#[test]
fn numbered_batches_are_written_stamped_without_touching_their_own_sections() {
    use fe2o3_amqp::types::messaging::Data;
    let pool = Arc::new(BufferPool::new(100));
    let mut filling = Filling::new("0".into(), 0, false);
    for i in 0..300 {
        // Short and long sections: vbin8 and vbin32 encodings.
        let event = EventData::new(vec![b'e'; 1 + i % 400]).with_property("i", i as i64);
        let encoded = codec::encode(&event, true);
        filling.push(crate::batch::pinned(&event), encoded, None);
    }
    let batch = filling.seal(&pool, None);
    let before = batch.events().to_vec();
    let own = |batch: &Batch| -> Vec<Vec<u8>> {
        batch.sections().iter().map(|Data(b)| b.to_vec()).collect()
    };
    let own_before = own(&batch);
    let unstamped = super::payload(&batch);
    assert_eq!(unstamped[..], super::serialized(&batch)[..]);
    batch.set_stamp(Some(Stamp {
        sequence: i32::MAX - 100,
        producer_id: 7,
        epoch: 1,
    }));
    let first_try = super::payload(&batch);
    assert_eq!(first_try.len(), unstamped.len(), "stamping keeps the size");
    assert_ne!(first_try, unstamped, "the sections are stamped");
    assert_eq!(
        first_try[..],
        super::serialized(&batch)[..],
        "stamped as fe2o3 would write the stamped sections (numbers wrapping past i32::MAX)"
    );
    assert_eq!(
        super::payload(&batch),
        first_try,
        "every try writes the same numbers"
    );
    assert_eq!(
        own(&batch),
        own_before,
        "the batch's own sections are not stamped"
    );
    assert_eq!(batch.events().to_vec(), before);
}
