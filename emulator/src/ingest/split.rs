//! Reading a transfer: the events of a batched message (or a plain one), the key it
//! is routed by, and an idempotent link's sequence numbers.

use bytes::Bytes;
use eventhubs_protocol::sequence::advance;
use fe2o3_amqp::types::messaging::{Body, Message};
use serde_amqp::Value;

use crate::codec::{self, BATCH_FORMAT, PRODUCER_SEQUENCE};
use crate::rejection::Rejection;

/// The events of one transfer and the key it was routed by.
pub(super) struct Incoming {
    pub(super) events: Vec<Bytes>,
    /// The key the transfer routes by (envelope, else first event).
    pub(super) partition_key: Option<String>,
    /// The envelope's key, stored with every event of the batch.
    pub(super) envelope_key: Option<String>,
    /// The first event's `com.microsoft:producer-sequence-number`, for idempotent links.
    pub(super) first_sequence: Option<i32>,
    /// Encoded size of the transfer's message.
    pub(super) size: usize,
}

fn decode_error(what: impl std::fmt::Display) -> Rejection {
    Rejection::new("amqp:decode-error", what.to_string())
}

/// The producer sequence numbers of an idempotent link's events: present, `int`-sized
/// and consecutive; returns the first.
fn sequence_of(messages: &[Message<Body<Value>>]) -> Result<i32, Rejection> {
    let mut first = None;
    for (i, m) in messages.iter().enumerate() {
        let seq = codec::integer(&m.message_annotations, PRODUCER_SEQUENCE)
            .and_then(|s| i32::try_from(s).ok())
            .ok_or_else(|| {
                Rejection::new(
                    "com.microsoft:argument-error",
                    "An idempotent producer's events must carry an int com.microsoft:producer-sequence-number.",
                )
            })?;
        let start = *first.get_or_insert(seq);
        if seq != advance(start, i as u32) {
            return Err(Rejection::new(
                eventhubs_protocol::OUT_OF_ORDER_SEQUENCE,
                format!(
                    "The sequence numbers in the batch are not consecutive: {seq} at position {i} after {start}."
                ),
            ));
        }
    }
    first.ok_or_else(|| decode_error("A batch must carry at least one event."))
}

pub(super) fn split(
    mut message: Message<Body<Value>>,
    format: Option<u32>,
    idempotent: bool,
) -> Result<Incoming, Rejection> {
    let envelope_key = codec::partition_key(&message.message_annotations);
    if format != Some(BATCH_FORMAT) {
        let first_sequence = if idempotent {
            Some(sequence_of(std::slice::from_ref(&message))?)
        } else {
            None
        };
        let raw = codec::encode_message(&message).map_err(decode_error)?;
        return Ok(Incoming {
            size: raw.len(),
            events: vec![Bytes::from(raw)],
            partition_key: envelope_key,
            // A plain message's key is in the stored message itself.
            envelope_key: None,
            first_sequence,
        });
    }
    let size = codec::data_message_size(&mut message).map_err(decode_error)?;
    let Body::Data(sections) = message.body else {
        return Err(decode_error(
            "A batched message (format 0x80013700) must carry data sections.",
        ));
    };
    let events: Vec<Bytes> = sections
        .into_iter()
        .map(|d| Bytes::from(d.0.into_vec()))
        .collect();
    if let Some(i) = events.iter().position(|e| !codec::looks_like_message(e)) {
        return Err(decode_error(format!(
            "Event {i} of the batch is not an AMQP message."
        )));
    }
    // Inner events are decoded only when their annotations are needed: every event on
    // idempotent links, the first when the envelope carries no partition key.
    let needed = if idempotent {
        events.len()
    } else {
        usize::from(envelope_key.is_none()).min(events.len())
    };
    let decoded = events[..needed]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            codec::decode_message(e).map_err(|err| {
                decode_error(format!(
                    "Event {i} of the batch is not an AMQP message: {err}"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let partition_key = envelope_key.clone().or_else(|| {
        decoded
            .first()
            .and_then(|m| codec::partition_key(&m.message_annotations))
    });
    let first_sequence = if idempotent {
        Some(sequence_of(&decoded)?)
    } else {
        None
    };
    Ok(Incoming {
        events,
        partition_key,
        envelope_key,
        first_sequence,
        size,
    })
}
