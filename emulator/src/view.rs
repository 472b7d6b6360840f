//! A read-only view of a running emulator, for pages and tools that show what is in
//! it: hubs, partitions, events in full, and the faults in force.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fe2o3_amqp_types::messaging::{annotations::OwnedKey, MessageId};
use serde_amqp::Value;

use crate::{Fault, PartitionInfo, StoredEvent};

/// What a running emulator holds, read as it changes; get one with
/// [`EmulatorHandle::view`](crate::EmulatorHandle::view). Cloning is cheap, and a view
/// keeps working for as long as the emulator's state is alive.
#[derive(Debug, Clone)]
pub struct EmulatorView(pub(crate) Arc<crate::conn::Shared>);

/// A hub as the view sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubSummary {
    /// Its name.
    pub name: String,
    /// When it was created, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Its partitions, by id, with their counters.
    pub partitions: Vec<(String, PartitionInfo)>,
    /// Its consumer groups, `$Default` first.
    pub consumer_groups: Vec<String>,
}

/// A fault in force and how often it has fired.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FaultSummary {
    /// The fault, as injected.
    pub fault: Fault,
    /// Transfers (or attaches) it applied to.
    pub seen: u64,
    /// Times it fired, within its limit.
    pub fired: u64,
}

impl EmulatorView {
    /// Every hub, in the order they were configured.
    pub fn hubs(&self) -> Vec<HubSummary> {
        self.0
            .store
            .hubs()
            .iter()
            .map(|h| HubSummary {
                name: h.name.clone(),
                created_at_ms: h.created_at_ms,
                partitions: h
                    .partitions()
                    .iter()
                    .map(|p| (p.id.clone(), p.info()))
                    .collect(),
                consumer_groups: h.consumer_groups(),
            })
            .collect()
    }

    /// The retained events of a partition, oldest first; `None` for an unknown hub or
    /// partition.
    pub fn events(&self, hub: &str, partition: &str) -> Option<Vec<StoredEvent>> {
        Some(self.0.store.hub(hub)?.partition(partition)?.all())
    }

    /// The newest `max` events of a partition, oldest first.
    pub fn latest_events(
        &self,
        hub: &str,
        partition: &str,
        max: usize,
    ) -> Option<Vec<StoredEvent>> {
        Some(self.0.store.hub(hub)?.partition(partition)?.latest(max))
    }

    /// The counters of a partition; `None` for an unknown hub or partition.
    pub fn partition_info(&self, hub: &str, partition: &str) -> Option<PartitionInfo> {
        Some(self.0.store.hub(hub)?.partition(partition)?.info())
    }

    /// The faults in force, in the order they were added.
    pub fn faults(&self) -> Vec<FaultSummary> {
        let faults = self.0.faults.read().unwrap_or_else(|e| e.into_inner());
        faults
            .iter()
            .map(|f| {
                let fired = f.fired.load(Ordering::Relaxed);
                FaultSummary {
                    fault: f.fault.clone(),
                    seen: f.seen.load(Ordering::Relaxed),
                    fired: f.fault.limit.map_or(fired, |limit| fired.min(limit)),
                }
            })
            .collect()
    }
}

/// An event's sections with their values as text, to show it. Maps keep their order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventSections {
    /// The AMQP properties section's fields that are set (`message-id`,
    /// `content-type`, ...), by their AMQP names.
    pub properties: Vec<(String, String)>,
    /// The application properties.
    pub application_properties: Vec<(String, String)>,
    /// The message annotations: the partition key, an idempotent producer's numbers,
    /// and whatever else the producer set.
    pub annotations: Vec<(String, String)>,
}

impl StoredEvent {
    /// The event's properties, application properties and annotations as text; `None`
    /// if it cannot be decoded.
    pub fn sections(&self) -> Option<EventSections> {
        let m = self.message().ok()?;
        let mut out = EventSections::default();
        if let Some(p) = &m.properties {
            let mut put = |name: &str, v: Option<String>| {
                if let Some(v) = v {
                    out.properties.push((name.to_owned(), v));
                }
            };
            put("message-id", p.message_id.as_ref().map(message_id));
            put("user-id", p.user_id.as_ref().map(|b| hex(b.as_ref())));
            put("to", p.to.clone());
            put("subject", p.subject.clone());
            put("reply-to", p.reply_to.clone());
            put("correlation-id", p.correlation_id.as_ref().map(message_id));
            put("content-type", p.content_type.as_ref().map(|s| s.0.clone()));
            put(
                "content-encoding",
                p.content_encoding.as_ref().map(|s| s.0.clone()),
            );
            put(
                "absolute-expiry-time",
                p.absolute_expiry_time
                    .as_ref()
                    .map(|t| t.milliseconds().to_string()),
            );
            put(
                "creation-time",
                p.creation_time
                    .as_ref()
                    .map(|t| t.milliseconds().to_string()),
            );
            put("group-id", p.group_id.clone());
            put("group-sequence", p.group_sequence.map(|n| n.to_string()));
            put("reply-to-group-id", p.reply_to_group_id.clone());
        }
        if let Some(a) = &m.application_properties {
            out.application_properties =
                a.0.iter()
                    .map(|(k, v)| (k.clone(), text(&Value::from(v.clone()))))
                    .collect();
        }
        if let Some(a) = &m.message_annotations {
            out.annotations =
                a.0.iter()
                    .map(|(k, v)| {
                        let key = match k {
                            OwnedKey::Symbol(s) => s.0.clone(),
                            OwnedKey::Ulong(n) => n.to_string(),
                        };
                        (key, text(v))
                    })
                    .collect();
        }
        // The key of the batch's envelope applies to the event too.
        if let Some(key) = self.envelope_key() {
            if !out
                .annotations
                .iter()
                .any(|(k, _)| k == eventhubs_protocol::PARTITION_KEY)
            {
                out.annotations
                    .push((eventhubs_protocol::PARTITION_KEY.to_owned(), key));
            }
        }
        Some(out)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn message_id(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => hex(u.as_ref()),
        MessageId::Binary(b) => hex(b.as_ref()),
    }
}

/// An AMQP value as text: numbers and strings as they are, binaries in hex,
/// timestamps in milliseconds since the Unix epoch, lists and maps in brackets.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Ubyte(n) => n.to_string(),
        Value::Ushort(n) => n.to_string(),
        Value::Uint(n) => n.to_string(),
        Value::Ulong(n) => n.to_string(),
        Value::Byte(n) => n.to_string(),
        Value::Short(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Long(n) => n.to_string(),
        Value::Float(n) => n.to_string(),
        Value::Double(n) => n.to_string(),
        Value::Char(c) => c.to_string(),
        Value::Timestamp(t) => t.milliseconds().to_string(),
        Value::Uuid(u) => hex(u.as_ref()),
        Value::Binary(b) => hex(b.as_ref()),
        Value::String(s) => s.clone(),
        Value::Symbol(s) => s.0.clone(),
        Value::List(items) | Value::Array(serde_amqp::primitives::Array(items)) => {
            let items: Vec<String> = items.iter().map(text).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Map(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", text(k), text(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_amqp::primitives::{Binary, Timestamp};

    #[test]
    fn values_read_as_text() {
        assert_eq!(text(&Value::Long(-5)), "-5");
        assert_eq!(text(&Value::Binary(Binary::from(vec![0, 0xab]))), "00ab");
        assert_eq!(
            text(&Value::Timestamp(Timestamp::from_milliseconds(
                1_700_000_000_123
            ))),
            "1700000000123"
        );
        assert_eq!(
            text(&Value::List(vec![Value::Int(1), Value::String("a".into())])),
            "[1, a]"
        );
    }
}
