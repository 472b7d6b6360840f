//! A batch as written on the wire: one batched message for Event Hubs, or a message
//! per event for a generic broker (the answers to them are in `verdict`).

use bytes::Bytes;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Data, Message, MessageAnnotations, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Timestamp, Value};
use fe2o3_amqp::Sendable;

use crate::batch::Batch;
use crate::codec::{self, Stamp};
use crate::event::{EventData, PropertyValue, Routing};
use crate::Error;
use eventhubs_protocol::sequence::advance;
use eventhubs_protocol::{PARTITION_KEY, VBIN8_LIMIT};

/// The body of the batched message (format `0x80013700`) as it goes on the wire: one
/// data section per event, in one buffer, handed to the connection as it is (see
/// `splice`). When the batch is numbered (idempotent publishing) each section is
/// stamped with its sequence number here; the batch's own sections are not touched,
/// so every try writes the same numbers.
pub(crate) fn payload(batch: &Batch) -> Bytes {
    let sections = batch.sections();
    let len = sections
        .iter()
        .map(|Data(bytes)| codec::section_size(bytes.len()))
        .sum();
    let mut out = Vec::with_capacity(len);
    for (i, Data(bytes)) in sections.iter().enumerate() {
        // A data section (AMQP 1.0 §3.2.6): the descriptor, then the bytes as vbin8
        // or vbin32, as serde_amqp writes them.
        out.extend_from_slice(&[0x00, 0x53, 0x75]);
        if bytes.len() < VBIN8_LIMIT {
            out.extend_from_slice(&[0xa0, bytes.len() as u8]);
        } else {
            out.push(0xb0);
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        }
        let at = out.len();
        out.extend_from_slice(bytes);
        if let Some(first) = batch.stamp() {
            let sequence = advance(first.sequence, i as u32);
            codec::stamp(&mut out[at..], Stamp { sequence, ..first });
        }
    }
    Bytes::from(out)
}

/// The batched message as fe2o3 would serialize it from typed sections: what
/// [`payload`] must equal, byte for byte.
#[cfg(test)]
pub(crate) fn serialized(batch: &Batch) -> Vec<u8> {
    use fe2o3_amqp::types::messaging::message::__private::Serializable;
    use fe2o3_amqp::types::messaging::Batch as AmqpBatch;
    let sections: Vec<Data> = batch
        .sections()
        .iter()
        .enumerate()
        .map(|(i, Data(bytes))| {
            let mut copy = bytes.to_vec();
            if let Some(first) = batch.stamp() {
                let sequence = advance(first.sequence, i as u32);
                codec::stamp(&mut copy, Stamp { sequence, ..first });
            }
            Data(Binary::from(copy))
        })
        .collect();
    let message = Message::builder().body(AmqpBatch::from(sections)).build();
    serde_amqp::to_vec(&Serializable(message)).expect("a batch serializes")
}

/// One event as a message of its own (to a generic broker, which takes no batched
/// messages).
pub(crate) type Single = Sendable<Data>;

/// The events at `indices` as messages of their own: the partition key as the
/// `x-opt-partition-key` annotation, as in a batch; message id, correlation id and
/// content type as properties; the application properties; the body as one data
/// section. Read back from the batch's encoding, so each event is decoded and encoded
/// again here: a cost that only a broker's batches pay.
pub(crate) fn to_messages(batch: &Batch, indices: &[usize]) -> Result<Vec<Single>, Error> {
    let sections = batch.sections();
    indices
        .iter()
        .map(|&i| {
            let event = sections
                .get(i)
                .and_then(|Data(bytes)| codec::decode::event(bytes))
                .ok_or_else(|| {
                    Error::config(format!(
                        "event {i} of the batch for {} cannot be read back from its \
                         encoding",
                        batch.partition()
                    ))
                })?;
            Ok(single(&event))
        })
        .collect()
}

fn single(event: &EventData) -> Single {
    let message_annotations = match event.routing() {
        Routing::PartitionKey(key) => Some(
            MessageAnnotations::builder()
                .insert(Symbol::from(PARTITION_KEY), Value::String(key.clone()))
                .build(),
        ),
        _ => None,
    };
    let properties = (event.message_id().is_some()
        || event.correlation_id().is_some()
        || event.content_type().is_some())
    .then(|| {
        let mut p = Properties::builder();
        if let Some(id) = event.message_id() {
            p = p.message_id(id.to_owned());
        }
        if let Some(id) = event.correlation_id() {
            p = p.correlation_id(id.to_owned());
        }
        if let Some(ct) = event.content_type() {
            p = p.content_type(ct);
        }
        p.build()
    });
    let application_properties = (!event.properties().is_empty()).then(|| {
        event
            .properties()
            .iter()
            .fold(ApplicationProperties::builder(), |b, (name, value)| {
                b.insert(name.clone(), simple(value))
            })
            .build()
    });
    let message = Message {
        header: None,
        delivery_annotations: None,
        message_annotations,
        properties,
        application_properties,
        body: Data(Binary::from(event.body().to_vec())),
        footer: None,
    };
    Sendable::builder().message(message).build()
}

fn simple(value: &PropertyValue) -> SimpleValue {
    match value {
        PropertyValue::String(s) => SimpleValue::String(s.clone()),
        PropertyValue::Long(n) => SimpleValue::Long(*n),
        PropertyValue::Int(n) => SimpleValue::Int(*n),
        PropertyValue::Double(d) => SimpleValue::Double((*d).into()),
        PropertyValue::Bool(b) => SimpleValue::Bool(*b),
        PropertyValue::Binary(b) => SimpleValue::Binary(Binary::from(b.to_vec())),
        PropertyValue::Timestamp(ms) => SimpleValue::Timestamp(Timestamp::from_milliseconds(*ms)),
    }
}
