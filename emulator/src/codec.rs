//! Decoding and inspecting AMQP messages.

use fe2o3_amqp_types::messaging::{
    annotations::OwnedKey, message::DecodeIntoMessage, Body, Message, MessageAnnotations,
};
use serde_amqp::{primitives::Symbol, read::SliceReader, Value};

pub(crate) use eventhubs_protocol::{
    BATCH_FORMAT, ENQUEUED_TIME, OFFSET, PARTITION_KEY, PRODUCER_SEQUENCE, SEQUENCE_NUMBER,
};

/// Decodes one complete AMQP message; a message without a body section is allowed.
pub(crate) fn decode_message(bytes: &[u8]) -> Result<Message<Body<Value>>, serde_amqp::Error> {
    <Body<Value> as DecodeIntoMessage>::decode_message_from_reader(SliceReader::new(bytes))
}

/// Encodes a message as it would go on the wire.
pub(crate) fn encode_message(message: &Message<Body<Value>>) -> Result<Vec<u8>, serde_amqp::Error> {
    use fe2o3_amqp_types::messaging::message::__private::Serializable;
    serde_amqp::to_vec(&Serializable(message))
}

pub(crate) fn annotation<'a>(
    annotations: &'a Option<MessageAnnotations>,
    key: &str,
) -> Option<&'a Value> {
    annotations
        .as_ref()?
        .0
        .get(&OwnedKey::Symbol(Symbol::from(key)))
}

/// The `x-opt-partition-key` annotation when it is a string.
pub(crate) fn partition_key(annotations: &Option<MessageAnnotations>) -> Option<String> {
    match annotation(annotations, PARTITION_KEY)? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// An integer annotation of any width.
pub(crate) fn integer(annotations: &Option<MessageAnnotations>, key: &str) -> Option<i64> {
    as_integer(annotation(annotations, key)?)
}

/// An integer value of any width, if it fits an `i64`.
pub(crate) fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Byte(v) => Some(i64::from(*v)),
        Value::Short(v) => Some(i64::from(*v)),
        Value::Int(v) => Some(i64::from(*v)),
        Value::Long(v) => Some(*v),
        Value::Ubyte(v) => Some(i64::from(*v)),
        Value::Ushort(v) => Some(i64::from(*v)),
        Value::Uint(v) => Some(i64::from(*v)),
        Value::Ulong(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// Encoded size of a message whose body is `data` sections, computed without encoding
/// the body: each section is a described binary (3 bytes of descriptor, then `vbin8`
/// or `vbin32`).
pub(crate) fn data_message_size(
    message: &mut Message<Body<Value>>,
) -> Result<usize, serde_amqp::Error> {
    let body = std::mem::replace(&mut message.body, Body::Empty);
    let rest = encode_message(message).map(|v| v.len());
    message.body = body;
    // An empty body is written as something (an `amqp-value` of null): take it off.
    let empty: Message<Body<Value>> = Message::builder().body(Body::Empty).build();
    let empty_body = encode_message(&empty)?.len();
    let sections: usize = match &message.body {
        Body::Data(d) => d
            .iter()
            .map(|s| eventhubs_protocol::data_section_size(s.0.len()))
            .sum(),
        _ => 0,
    };
    Ok(rest? - empty_body + sections)
}

/// Whether `bytes` can be the start of an AMQP message: a described section
/// (header, annotations, properties or a body section).
pub(crate) fn looks_like_message(bytes: &[u8]) -> bool {
    matches!(bytes, [0x00, 0x53, 0x70..=0x78, ..])
        || matches!(bytes, [0x00, 0x80, 0, 0, 0, 0, 0, 0, 0x70..=0x78, ..])
}

/// A body as bytes: `data` sections joined, or the bytes of a string or binary value.
pub(crate) fn body_bytes(body: &Body<Value>) -> Vec<u8> {
    match body {
        Body::Data(sections) => sections.iter().flat_map(|d| d.0.iter().copied()).collect(),
        Body::Value(v) => match &v.0 {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Binary(b) => b.to_vec(),
            other => format!("{other:?}").into_bytes(),
        },
        Body::Sequence(_) | Body::Empty => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::messaging::Data;
    use serde_amqp::primitives::Binary;

    #[test]
    fn a_data_message_is_weighed_as_it_is_encoded() {
        for lens in [vec![5usize; 3], vec![254, 255, 256], vec![0, 1000, 70_000]] {
            let sections: Vec<Data> = lens
                .iter()
                .map(|n| Data(Binary::from(vec![7u8; *n])))
                .collect();
            let mut message: Message<Body<Value>> =
                Message::builder().body(Body::Data(sections.into())).build();
            let encoded = encode_message(&message).unwrap().len();
            assert_eq!(
                data_message_size(&mut message).unwrap(),
                encoded,
                "{lens:?}"
            );
        }
    }
}
