//! Encoding events to AMQP, once, and weighing batches in encoded bytes.
//!
//! Events are encoded by hand (AMQP 1.0 part 1 types, part 3 message sections): the
//! producer needs the exact byte count of each event to fill batches, and it never
//! encodes an event twice.

use bytes::BufMut;

pub(crate) mod decode;

use crate::event::{EventData, PropertyValue, Routing};

use eventhubs_protocol as names;
pub(crate) use eventhubs_protocol::{data_section_size as section_size, BATCH_FORMAT};

const PARTITION_KEY: &[u8] = names::PARTITION_KEY.as_bytes();

fn described(out: &mut Vec<u8>, code: u8) {
    out.put_slice(&[0x00, 0x53, code]);
}

fn variable(out: &mut Vec<u8>, small: u8, large: u8, bytes: &[u8]) {
    if bytes.len() <= 255 {
        out.put_u8(small);
        out.put_u8(bytes.len() as u8);
    } else {
        out.put_u8(large);
        out.put_u32(bytes.len() as u32);
    }
    out.put_slice(bytes);
}

fn string(out: &mut Vec<u8>, s: &str) {
    variable(out, 0xa1, 0xb1, s.as_bytes());
}

fn symbol(out: &mut Vec<u8>, s: &[u8]) {
    variable(out, 0xa3, 0xb3, s);
}

/// A list or map: `items` already encoded, `count` elements (2 per map entry).
fn compound(out: &mut Vec<u8>, small: u8, large: u8, count: usize, items: &[u8]) {
    if items.len() < 255 && count <= 255 {
        out.put_u8(small);
        out.put_u8(items.len() as u8 + 1);
        out.put_u8(count as u8);
    } else {
        out.put_u8(large);
        out.put_u32(items.len() as u32 + 4);
        out.put_u32(count as u32);
    }
    out.put_slice(items);
}

fn value(out: &mut Vec<u8>, v: &PropertyValue) {
    match v {
        PropertyValue::String(s) => string(out, s),
        PropertyValue::Long(n) => {
            out.put_u8(0x81);
            out.put_i64(*n);
        }
        PropertyValue::Int(n) => {
            out.put_u8(0x71);
            out.put_i32(*n);
        }
        PropertyValue::Double(d) => {
            out.put_u8(0x82);
            out.put_f64(*d);
        }
        PropertyValue::Bool(b) => out.put_u8(if *b { 0x41 } else { 0x42 }),
        PropertyValue::Binary(b) => variable(out, 0xa0, 0xb0, b),
        PropertyValue::Timestamp(ms) => {
            out.put_u8(0x83);
            out.put_i64(*ms);
        }
    }
}

const PRODUCER_SEQUENCE: &[u8] = names::PRODUCER_SEQUENCE.as_bytes();
const PRODUCER_ID: &[u8] = names::PRODUCER_ID.as_bytes();
const PRODUCER_EPOCH: &[u8] = names::PRODUCER_EPOCH.as_bytes();

/// The idempotent annotations an event of an idempotent producer carries: its sequence
/// number (`int`), the producer group id (`long`) and the owner level (`short`).
pub(crate) use streaming_producer_layers::batch::Stamp;

/// Encodes an event as a complete AMQP message: message-annotations (the partition
/// key, and with `idempotent` room for the idempotent annotations), properties
/// (message id, correlation id, content type), application properties, and the body
/// as one `data` section.
///
/// The idempotent annotations come first, with fixed-width values, so that
/// [`stamp`] can write the real numbers in place when the batch is sent.
pub(crate) fn encode(event: &EventData, idempotent: bool) -> Vec<u8> {
    encode_into(Vec::new(), event, idempotent)
}

/// [`encode`] into `out`, a spare buffer (what it held is dropped).
pub(crate) fn encode_into(mut out: Vec<u8>, event: &EventData, idempotent: bool) -> Vec<u8> {
    let body = event.body();
    out.clear();
    out.reserve(body.len() + 64);
    let mut scratch = Vec::new();
    let key = match event.routing() {
        Routing::PartitionKey(key) => Some(key),
        _ => None,
    };
    if idempotent || key.is_some() {
        let mut count = 0;
        if idempotent {
            symbol(&mut scratch, PRODUCER_SEQUENCE);
            scratch.put_u8(0x71);
            scratch.put_i32(0);
            symbol(&mut scratch, PRODUCER_ID);
            scratch.put_u8(0x81);
            scratch.put_i64(0);
            symbol(&mut scratch, PRODUCER_EPOCH);
            scratch.put_u8(0x61);
            scratch.put_i16(0);
            count += 6;
        }
        if let Some(key) = key {
            symbol(&mut scratch, PARTITION_KEY);
            string(&mut scratch, key);
            count += 2;
        }
        described(&mut out, 0x72);
        compound(&mut out, 0xc1, 0xd1, count, &scratch);
        scratch.clear();
    }
    let (message_id, correlation_id, content_type) = (
        event.message_id(),
        event.correlation_id(),
        event.content_type(),
    );
    if message_id.is_some() || correlation_id.is_some() || content_type.is_some() {
        // Fields up to the last one set: message-id, user-id, to, subject, reply-to,
        // correlation-id, content-type.
        let fields = if content_type.is_some() {
            7
        } else if correlation_id.is_some() {
            6
        } else {
            1
        };
        match message_id {
            Some(id) => string(&mut scratch, id),
            None => scratch.put_u8(0x40),
        }
        if fields > 1 {
            scratch.put_slice(&[0x40; 4]);
            match correlation_id {
                Some(id) => string(&mut scratch, id),
                None => scratch.put_u8(0x40),
            }
        }
        if let Some(ct) = content_type {
            symbol(&mut scratch, ct.as_bytes());
        }
        described(&mut out, 0x73);
        compound(&mut out, 0xc0, 0xd0, fields, &scratch);
        scratch.clear();
    }
    if !event.properties().is_empty() {
        for (name, v) in event.properties() {
            string(&mut scratch, name);
            value(&mut scratch, v);
        }
        described(&mut out, 0x74);
        compound(&mut out, 0xc1, 0xd1, event.properties().len() * 2, &scratch);
    }
    described(&mut out, 0x75);
    variable(&mut out, 0xa0, 0xb0, body);
    out
}

/// Writes `stamp` into an event encoded by [`encode`] with `idempotent`. Bytes of any
/// other shape are left as they are (the service then refuses the event for lacking
/// its numbers) rather than overwritten blindly.
pub(crate) fn stamp(encoded: &mut [u8], stamp: Stamp) {
    // Descriptor (3 bytes), then the map's constructor, size and count: 1 + 1 + 1
    // bytes for map8, 1 + 4 + 4 for map32.
    let start = match encoded.get(..4) {
        Some([0x00, 0x53, 0x72, 0xc1]) => 6,
        Some([0x00, 0x53, 0x72, 0xd1]) => 12,
        _ => return,
    };
    let fields: [(&[u8], &[u8]); 3] = [
        (PRODUCER_SEQUENCE, &stamp.sequence.to_be_bytes()),
        (PRODUCER_ID, &stamp.producer_id.to_be_bytes()),
        (PRODUCER_EPOCH, &stamp.epoch.to_be_bytes()),
    ];
    // Check the whole layout before writing anything: symbol8 header, the name, the
    // value's constructor byte, the value.
    let mut at = start;
    let mut places = [0usize; 3];
    for (i, (name, value)) in fields.iter().enumerate() {
        let value_at = at + 2 + name.len() + 1;
        if encoded.get(at + 2..at + 2 + name.len()) != Some(*name)
            || encoded.len() < value_at + value.len()
        {
            return;
        }
        places[i] = value_at;
        at = value_at + value.len();
    }
    for ((_, value), at) in fields.iter().zip(places) {
        encoded[at..at + value.len()].copy_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use fe2o3_amqp::types::messaging::{
        annotations::OwnedKey, message::DecodeIntoMessage, Body, Message, MessageId,
    };
    use fe2o3_amqp::types::primitives::SimpleValue;
    use serde_amqp::{read::SliceReader, Value};

    fn encode_plain(event: &EventData) -> Vec<u8> {
        encode(event, false)
    }

    fn decode(bytes: &[u8]) -> Message<Body<Value>> {
        <Body<Value> as DecodeIntoMessage>::decode_message_from_reader(SliceReader::new(bytes))
            .expect("a valid AMQP message")
    }

    #[test]
    fn a_plain_event_is_one_data_section() {
        let bytes = encode_plain(&EventData::new("hello"));
        assert_eq!(&bytes[..], b"\x00\x53\x75\xa0\x05hello");
        let m = decode(&bytes);
        assert!(m.message_annotations.is_none() && m.properties.is_none());
    }

    #[test]
    fn every_field_round_trips_through_a_real_decoder() {
        let event = EventData::new(vec![7u8; 300])
            .with_partition_key("user-1")
            .with_message_id("m-1")
            .with_correlation_id("c-1")
            .with_content_type("application/json")
            .with_property("s", "text")
            .with_property("l", 42i64)
            .with_property("i", 7i32)
            .with_property("b", true)
            .with_property("d", 1.5f64)
            .with_property("t", PropertyValue::Timestamp(1_700_000_000_000))
            .with_property("x", PropertyValue::Binary(Bytes::from_static(b"\x01\x02")));
        let m = decode(&encode_plain(&event));
        let key = m
            .message_annotations
            .as_ref()
            .unwrap()
            .0
            .get(&OwnedKey::Symbol("x-opt-partition-key".into()))
            .cloned();
        assert_eq!(key, Some(Value::String("user-1".into())));
        let p = m.properties.unwrap();
        assert_eq!(p.message_id, Some(MessageId::String("m-1".into())));
        assert_eq!(p.correlation_id, Some(MessageId::String("c-1".into())));
        assert_eq!(
            p.content_type.map(|s| s.to_string()),
            Some("application/json".into())
        );
        let ap = m.application_properties.unwrap().0;
        assert_eq!(ap.get("s"), Some(&SimpleValue::String("text".into())));
        assert_eq!(ap.get("l"), Some(&SimpleValue::Long(42)));
        assert_eq!(ap.get("i"), Some(&SimpleValue::Int(7)));
        assert_eq!(ap.get("b"), Some(&SimpleValue::Bool(true)));
        assert!(matches!(ap.get("d"), Some(SimpleValue::Double(_))));
        assert!(matches!(ap.get("t"), Some(SimpleValue::Timestamp(_))));
        assert!(matches!(ap.get("x"), Some(SimpleValue::Binary(_))));
        match m.body {
            Body::Data(d) => assert_eq!(d[0].0.as_slice(), &[7u8; 300][..]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_a_correlation_id_or_content_type_still_encodes() {
        let m = decode(&encode_plain(&EventData::new("x").with_correlation_id("c")));
        assert_eq!(
            m.properties.unwrap().correlation_id,
            Some(MessageId::String("c".into()))
        );
        let m = decode(&encode_plain(&EventData::new("x").with_content_type("t")));
        assert_eq!(
            m.properties.unwrap().content_type.map(|s| s.to_string()),
            Some("t".into())
        );
    }

    #[test]
    fn large_property_maps_use_32_bit_encodings() {
        let mut event = EventData::new("x");
        for i in 0..200 {
            event = event.with_property(format!("key-{i}"), "a value that takes some room");
        }
        let m = decode(&encode_plain(&event));
        assert_eq!(m.application_properties.unwrap().0.len(), 200);
    }

    #[test]
    fn section_sizes_match_what_fe2o3_writes_on_the_wire() {
        use fe2o3_amqp::types::messaging::Data;
        use fe2o3_amqp::types::primitives::Binary;
        for len in [0usize, 1, 250, 254, 255, 256, 70_000] {
            let wire = serde_amqp::to_vec(&Data(Binary::from(vec![0u8; len]))).unwrap();
            assert_eq!(wire.len(), section_size(len), "len {len}");
        }
    }

    fn annotation(m: &Message<Body<Value>>, name: &str) -> Option<Value> {
        m.message_annotations
            .as_ref()?
            .0
            .get(&OwnedKey::Symbol(name.into()))
            .cloned()
    }

    #[test]
    fn stamped_idempotent_annotations_decode_with_their_amqp_types() {
        let stamp_of = |sequence| Stamp {
            sequence,
            producer_id: 0x0102_0304_0506_0708,
            epoch: 7,
        };
        for event in [
            EventData::new("plain"),
            EventData::new(vec![1u8; 300]).with_partition_key("k"),
            // A key long enough to push the annotations map past 255 bytes (map32).
            EventData::new("long key").with_partition_key("k".repeat(300)),
        ] {
            let unstamped = encode(&event, true);
            assert_eq!(unstamped.len(), encode(&event, true).len());
            let mut bytes = unstamped.to_vec();
            stamp(&mut bytes, stamp_of(i32::MAX));
            assert_eq!(bytes.len(), unstamped.len(), "stamping never resizes");
            let m = decode(&bytes);
            assert_eq!(
                annotation(&m, names::PRODUCER_SEQUENCE),
                Some(Value::Int(i32::MAX))
            );
            assert_eq!(
                annotation(&m, names::PRODUCER_ID),
                Some(Value::Long(0x0102_0304_0506_0708))
            );
            assert_eq!(annotation(&m, names::PRODUCER_EPOCH), Some(Value::Short(7)));
            if let Routing::PartitionKey(key) = event.routing() {
                assert_eq!(
                    annotation(&m, "x-opt-partition-key"),
                    Some(Value::String(key.clone()))
                );
            }
            match m.body {
                Body::Data(d) => assert_eq!(d[0].0.as_slice(), event.body()),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn stamping_leaves_bytes_of_another_shape_alone() {
        let stamp_of = Stamp {
            sequence: 5,
            producer_id: 6,
            epoch: 7,
        };
        for event in [
            EventData::new("plain"),
            EventData::new("k").with_partition_key("k"),
        ] {
            let plain = encode(&event, false);
            let mut bytes = plain.to_vec();
            stamp(&mut bytes, stamp_of);
            assert_eq!(bytes, plain.to_vec());
        }
        let mut truncated = encode(&EventData::new("x"), true).to_vec();
        truncated.truncate(40);
        let before = truncated.clone();
        stamp(&mut truncated, stamp_of);
        assert_eq!(truncated, before);
    }
}
