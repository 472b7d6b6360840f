//! An event as read back from a partition, decoded from the service's message.

use std::time::SystemTime;

use bytes::Bytes;
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{Body, Message, MessageId};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};

use crate::amqp::time_of;
use crate::event::PropertyValue;
use eventhubs_protocol::{ENQUEUED_TIME, OFFSET, PARTITION_KEY, SEQUENCE_NUMBER};

/// An event read back from a partition, with what the service stamped on it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReceivedEvent {
    /// The partition it was read from.
    pub partition: String,
    /// Its sequence number in the partition (`x-opt-sequence-number`).
    pub sequence_number: i64,
    /// Its offset, as the service writes it (`x-opt-offset`).
    pub offset: String,
    /// When the service stored it (`x-opt-enqueued-time`).
    pub enqueued_time: Option<SystemTime>,
    /// The partition key it was published with, if any.
    pub partition_key: Option<String>,
    /// The message's content type, if set.
    pub content_type: Option<String>,
    /// The message id, if set (as text).
    pub message_id: Option<String>,
    /// The application properties, in the order they came.
    pub properties: Vec<(String, PropertyValue)>,
    /// The body: the data sections joined (an event has one), a string or binary
    /// value as its bytes, any other value in its debug form.
    pub body: Bytes,
}

impl ReceivedEvent {
    pub(super) fn from_message(partition: &str, message: Message<Body<Value>>) -> Self {
        let annotation = |name: &str| {
            message.message_annotations.as_ref().and_then(|a| {
                a.0.iter().find_map(|(k, v)| match k {
                    OwnedKey::Symbol(s) if s.as_str() == name => Some(v.clone()),
                    _ => None,
                })
            })
        };
        let sequence_number = match annotation(SEQUENCE_NUMBER) {
            Some(Value::Long(n)) => n,
            Some(Value::Int(n)) => i64::from(n),
            _ => -1,
        };
        let offset = match annotation(OFFSET) {
            Some(Value::String(s)) => s,
            Some(Value::Long(n)) => n.to_string(),
            _ => String::new(),
        };
        let enqueued_time = match annotation(ENQUEUED_TIME) {
            Some(Value::Timestamp(t)) => time_of(t.milliseconds()),
            _ => None,
        };
        let partition_key = match annotation(PARTITION_KEY) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let (content_type, message_id) = match &message.properties {
            Some(p) => (
                p.content_type.as_ref().map(|s| s.as_str().to_owned()),
                p.message_id.as_ref().map(message_id_text),
            ),
            None => (None, None),
        };
        let properties = message
            .application_properties
            .as_ref()
            .map(|props| {
                props
                    .0
                    .iter()
                    .map(|(k, v)| (k.clone(), property_value(v)))
                    .collect()
            })
            .unwrap_or_default();
        let body = match message.body {
            Body::Data(sections) => {
                let mut sections = sections.into_inner();
                if sections.len() == 1 {
                    Bytes::from(sections.pop().map(|d| d.0.into_vec()).unwrap_or_default())
                } else {
                    Bytes::from(
                        sections
                            .into_iter()
                            .flat_map(|d| d.0.into_vec())
                            .collect::<Vec<u8>>(),
                    )
                }
            }
            Body::Value(value) => match value.0 {
                Value::String(s) => Bytes::from(s),
                Value::Binary(b) => Bytes::from(b.into_vec()),
                other => Bytes::from(format!("{other:?}")),
            },
            Body::Sequence(seq) => Bytes::from(format!("{seq:?}")),
            Body::Empty => Bytes::new(),
        };
        Self {
            partition: partition.to_owned(),
            sequence_number,
            offset,
            enqueued_time,
            partition_key,
            content_type,
            message_id,
            properties,
            body,
        }
    }
}

fn message_id_text(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => format!("{u:?}"),
        MessageId::Binary(b) => format!("{b:?}"),
    }
}

fn property_value(v: &SimpleValue) -> PropertyValue {
    match v {
        SimpleValue::String(s) => PropertyValue::String(s.clone()),
        SimpleValue::Symbol(s) => PropertyValue::String(s.as_str().to_owned()),
        SimpleValue::Long(n) => PropertyValue::Long(*n),
        SimpleValue::Int(n) => PropertyValue::Int(*n),
        SimpleValue::Short(n) => PropertyValue::Int(i32::from(*n)),
        SimpleValue::Byte(n) => PropertyValue::Int(i32::from(*n)),
        SimpleValue::Uint(n) => PropertyValue::Long(i64::from(*n)),
        SimpleValue::Ushort(n) => PropertyValue::Int(i32::from(*n)),
        SimpleValue::Ubyte(n) => PropertyValue::Int(i32::from(*n)),
        SimpleValue::Double(d) => PropertyValue::Double(f64::from(*d)),
        SimpleValue::Float(f) => PropertyValue::Double(f64::from(f32::from(*f))),
        SimpleValue::Bool(b) => PropertyValue::Bool(*b),
        SimpleValue::Binary(b) => PropertyValue::Binary(Bytes::from(b.to_vec())),
        SimpleValue::Timestamp(t) => PropertyValue::Timestamp(t.milliseconds()),
        other => PropertyValue::String(format!("{other:?}")),
    }
}
