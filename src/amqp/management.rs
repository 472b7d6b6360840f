//! Reading `$management` replies: hub and partition properties, and status codes.

use std::time::{Duration, SystemTime};

use serde_amqp::Value;

use super::{HubProperties, Reply};
use crate::error::{Error, Kind};

pub(super) fn status_error(reply: &Reply, what: &str) -> Error {
    match reply.status {
        401 | 403 => Error::new(Kind::Auth(format!("{what}: {}", reply.description))),
        status => Error::new(Kind::Management {
            status,
            description: format!("{what}: {}", reply.description),
        }),
    }
}

pub(super) fn parse_hub_properties(reply: &Reply) -> Result<HubProperties, Error> {
    use fe2o3_amqp::types::messaging::{AmqpValue, Body};
    let bad = || {
        Error::new(Kind::Management {
            status: reply.status,
            description: "the hub's properties have no partition_ids".into(),
        })
    };
    let Body::Value(AmqpValue(Value::Map(map))) = &reply.body else {
        return Err(bad());
    };
    let ids = match map.get(&Value::String("partition_ids".into())) {
        Some(Value::Array(ids)) => ids.0.clone(),
        Some(Value::List(ids)) => ids.clone(),
        _ => return Err(bad()),
    };
    let partition_ids = ids
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(bad()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if partition_ids.is_empty() {
        return Err(bad());
    }
    Ok(HubProperties { partition_ids })
}

pub(super) fn parse_partition_properties(reply: &Reply) -> Result<PartitionProperties, Error> {
    use fe2o3_amqp::types::messaging::{AmqpValue, Body};
    let bad = |what: &str| {
        Error::new(Kind::Management {
            status: reply.status,
            description: format!("the partition's properties have no valid {what}"),
        })
    };
    let Body::Value(AmqpValue(Value::Map(map))) = &reply.body else {
        return Err(bad("body"));
    };
    let get = |k: &str| map.get(&Value::String(k.into()));
    let long = |k: &str| match get(k) {
        Some(Value::Long(v)) => Ok(*v),
        Some(Value::Int(v)) => Ok(i64::from(*v)),
        _ => Err(bad(k)),
    };
    let id = match get("partition") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(bad("partition")),
    };
    let last_enqueued_time = match get("last_enqueued_time_utc") {
        // The service's "never" is 0001-01-01.
        Some(Value::Timestamp(t)) if t.milliseconds() > -62_135_596_800_000 => {
            let ms = t.milliseconds();
            Some(if ms >= 0 {
                SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64)
            } else {
                SystemTime::UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
            })
        }
        _ => None,
    };
    Ok(PartitionProperties {
        id,
        begin_sequence_number: long("begin_sequence_number")?,
        last_enqueued_sequence_number: long("last_enqueued_sequence_number")?,
        last_enqueued_offset: match get("last_enqueued_offset") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(bad("last_enqueued_offset")),
        },
        last_enqueued_time,
        is_empty: matches!(get("is_partition_empty"), Some(Value::Bool(true))),
    })
}

/// A partition's state, as `$management` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProperties {
    /// The partition id.
    pub id: String,
    /// Sequence number of the oldest retained event.
    pub begin_sequence_number: i64,
    /// Sequence number of the newest event (-1 if none was ever stored).
    pub last_enqueued_sequence_number: i64,
    /// Offset of the newest event, as the service writes it.
    pub last_enqueued_offset: String,
    /// When the newest event was stored, if any was.
    pub last_enqueued_time: Option<std::time::SystemTime>,
    /// Whether the partition retains no event.
    pub is_empty: bool,
}
