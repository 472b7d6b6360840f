//! `$management` reads of hub and partition properties, on a session of their own
//! (so a read waiting for its reply holds up neither the connection task nor a
//! partition), and what their replies say.

use std::time::{Duration, SystemTime};

use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::primitives::SimpleValue;
use serde_amqp::Value;

use super::{rpc, Amqp, Reply};
use crate::Error;

/// The `$management` node: its session and request/response links, once attached.
#[derive(Debug, Default)]
pub(crate) struct Management {
    node: tokio::sync::Mutex<Option<Node>>,
}

#[derive(Debug)]
struct Node {
    generation: u64,
    session: SessionHandle<()>,
    rpc: rpc::Rpc,
}

impl Management {
    /// A READ of the hub (`partition: None`) or of one partition, bounded by the
    /// endpoint's timeout as a whole (waiting for a connection included).
    pub(crate) async fn read(&self, amqp: &Amqp, partition: Option<&str>) -> Result<Reply, Error> {
        let timeout = amqp.endpoint().timeout;
        tokio::time::timeout(timeout, self.read_now(amqp, partition))
            .await
            .unwrap_or_else(|_| {
                Err(match amqp.why_disconnected() {
                    Some(why) => Error::connection(why),
                    None => Error::timeout(),
                })
            })
    }

    async fn read_now(&self, amqp: &Amqp, partition: Option<&str>) -> Result<Reply, Error> {
        let endpoint = amqp.endpoint();
        let mut node = self.node.lock().await;
        let stale = node
            .as_ref()
            .is_none_or(|n| n.session.is_ended() || amqp.is_lost(n.generation));
        if stale {
            *node = None;
            let (mut session, generation) = amqp.session(false).await?;
            let rpc = rpc::Rpc::attach(&mut session, "$management").await?;
            *node = Some(Node {
                generation,
                session,
                rpc,
            });
        }
        let Node {
            generation, rpc, ..
        } = node.as_mut().expect("attached above");
        let generation = *generation;
        let token = endpoint.token().await?;
        let kind = if partition.is_some() {
            eventhubs_protocol::PARTITION_ENTITY
        } else {
            eventhubs_protocol::EVENTHUB_ENTITY
        };
        let mut properties = vec![
            ("operation", SimpleValue::String("READ".into())),
            ("type", SimpleValue::String(kind.into())),
            ("name", SimpleValue::String(endpoint.hub().to_owned())),
            ("security_token", SimpleValue::String(token.token)),
        ];
        if let Some(p) = partition {
            properties.push(("partition", SimpleValue::String(p.to_owned())));
        }
        let reply = tokio::select! {
            reply = rpc.call(&properties, Value::Null, endpoint.timeout) => reply,
            () = amqp.lost(generation) => {
                Err(Error::connection("the connection was lost during a management read"))
            }
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                // The node may be unusable: attach it afresh next time.
                *node = None;
                return Err(e);
            }
        };
        if reply.status != 200 {
            return Err(status_error(&reply, &format!("reading {kind} properties")));
        }
        Ok(reply)
    }

    /// Detaches the node and ends its session, waiting at most `limit`.
    pub(crate) async fn close(&self, limit: Duration) {
        let polite = async {
            if let Some(mut node) = self.node.lock().await.take() {
                node.rpc.close().await;
                let _ = node.session.end().await;
            }
        };
        let _ = tokio::time::timeout(limit, polite).await;
    }
}

pub(super) fn status_error(reply: &Reply, what: &str) -> Error {
    match reply.status {
        401 | 403 => Error::auth(format!("{what}: {}", reply.description)),
        status => Error::management(status, format!("{what}: {}", reply.description)),
    }
}

pub(super) fn parse_hub_properties(reply: &Reply) -> Result<HubProperties, Error> {
    use fe2o3_amqp::types::messaging::{AmqpValue, Body};
    let bad = || Error::management(reply.status, "the hub's properties have no partition_ids");
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
    let name = match map.get(&Value::String("name".into())) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let created_at = match map.get(&Value::String("created_at".into())) {
        Some(Value::Timestamp(t)) => time_of(t.milliseconds()),
        _ => None,
    };
    Ok(HubProperties {
        name,
        created_at,
        partition_ids,
    })
}

pub(super) fn parse_partition_properties(reply: &Reply) -> Result<PartitionProperties, Error> {
    use fe2o3_amqp::types::messaging::{AmqpValue, Body};
    let bad = |what: &str| {
        Error::management(
            reply.status,
            format!("the partition's properties have no valid {what}"),
        )
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
        Some(Value::Timestamp(t)) => time_of(t.milliseconds()),
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

/// A time in milliseconds since the Unix epoch; `None` for the service's "never"
/// (0001-01-01) and anything before it.
pub(crate) fn time_of(ms: i64) -> Option<SystemTime> {
    if ms <= -62_135_596_800_000 {
        return None;
    }
    Some(if ms >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    })
}

/// An event hub's properties, as `$management` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubProperties {
    /// The hub's name.
    pub name: String,
    /// When the hub was created, if the service says.
    pub created_at: Option<SystemTime>,
    /// The partition ids, in the service's order.
    pub partition_ids: Vec<String>,
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
