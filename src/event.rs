//! The event type and where it should go.

use bytes::Bytes;

/// Where an event is published.
///
/// A type, not two options: an event has a partition id, or a partition key, or
/// neither.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Routing {
    /// The producer chooses: sticky runs by default, or round-robin (see
    /// [`ProducerBuilder::sticky_routing`](crate::ProducerBuilder::sticky_routing)).
    #[default]
    Auto,
    /// This partition. An id the hub does not have fails the event with an error.
    PartitionId(String),
    /// The partition this key hashes to, exactly as the service hashes it; the key is
    /// also stamped on the event as `x-opt-partition-key`.
    PartitionKey(String),
}

/// A value of an application property.
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyValue {
    /// A string.
    String(String),
    /// A signed 64-bit integer.
    Long(i64),
    /// A 32-bit integer.
    Int(i32),
    /// A double.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// Bytes.
    Binary(Bytes),
    /// A timestamp, milliseconds since the Unix epoch.
    Timestamp(i64),
}

impl From<&str> for PropertyValue {
    fn from(v: &str) -> Self {
        PropertyValue::String(v.to_owned())
    }
}

impl From<String> for PropertyValue {
    fn from(v: String) -> Self {
        PropertyValue::String(v)
    }
}

impl From<i64> for PropertyValue {
    fn from(v: i64) -> Self {
        PropertyValue::Long(v)
    }
}

impl From<i32> for PropertyValue {
    fn from(v: i32) -> Self {
        PropertyValue::Int(v)
    }
}

impl From<f64> for PropertyValue {
    fn from(v: f64) -> Self {
        PropertyValue::Double(v)
    }
}

impl From<bool> for PropertyValue {
    fn from(v: bool) -> Self {
        PropertyValue::Bool(v)
    }
}

/// One event: a body, optional metadata, and its [`Routing`].
///
/// ```
/// use streaming_producer::{EventData, Routing};
///
/// let event = EventData::new("hello")
///     .with_partition_key("user-42")
///     .with_property("kind", "greeting")
///     .with_content_type("text/plain");
/// assert_eq!(event.routing(), &Routing::PartitionKey("user-42".into()));
/// assert_eq!(event.body(), "hello".as_bytes());
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct EventData {
    body: Bytes,
    routing: Routing,
    /// Boxed, as most events have none of them: an event is then 72 bytes rather than
    /// 160, and a batch's event vector (the producer's largest allocation per batch)
    /// shrinks to match.
    extras: Option<Box<Extras>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Extras {
    properties: Vec<(String, PropertyValue)>,
    message_id: Option<String>,
    correlation_id: Option<String>,
    content_type: Option<String>,
}

impl std::fmt::Debug for EventData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventData")
            .field("body", &self.body)
            .field("properties", &self.properties())
            .field("message_id", &self.message_id())
            .field("correlation_id", &self.correlation_id())
            .field("content_type", &self.content_type())
            .field("routing", &self.routing)
            .finish()
    }
}

impl EventData {
    /// An event with this body, routed automatically.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// Sets the routing.
    pub fn with_routing(mut self, routing: Routing) -> Self {
        self.routing = routing;
        self
    }

    /// Routes to this partition id.
    pub fn with_partition_id(self, id: impl Into<String>) -> Self {
        self.with_routing(Routing::PartitionId(id.into()))
    }

    /// Routes by this partition key.
    pub fn with_partition_key(self, key: impl Into<String>) -> Self {
        self.with_routing(Routing::PartitionKey(key.into()))
    }

    /// Adds an application property (a later one with the same name wins on the wire).
    pub fn with_property(
        mut self,
        name: impl Into<String>,
        value: impl Into<PropertyValue>,
    ) -> Self {
        self.extras_mut()
            .properties
            .push((name.into(), value.into()));
        self
    }

    /// Sets the message id.
    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.extras_mut().message_id = Some(id.into());
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.extras_mut().correlation_id = Some(id.into());
        self
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.extras_mut().content_type = Some(content_type.into());
        self
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The application properties, in the order they were added.
    pub fn properties(&self) -> &[(String, PropertyValue)] {
        self.extras.as_ref().map_or(&[], |e| &e.properties)
    }

    /// The message id.
    pub fn message_id(&self) -> Option<&str> {
        self.extras.as_ref()?.message_id.as_deref()
    }

    /// The correlation id.
    pub fn correlation_id(&self) -> Option<&str> {
        self.extras.as_ref()?.correlation_id.as_deref()
    }

    /// The content type.
    pub fn content_type(&self) -> Option<&str> {
        self.extras.as_ref()?.content_type.as_deref()
    }

    /// Where the event goes.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }
}

impl From<&'static str> for EventData {
    fn from(body: &'static str) -> Self {
        EventData::new(body)
    }
}

impl From<String> for EventData {
    fn from(body: String) -> Self {
        EventData::new(body)
    }
}

impl From<Vec<u8>> for EventData {
    fn from(body: Vec<u8>) -> Self {
        EventData::new(body)
    }
}

impl From<Bytes> for EventData {
    fn from(body: Bytes) -> Self {
        EventData::new(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_event_is_small_and_extras_read_back() {
        assert!(std::mem::size_of::<EventData>() <= 72);
        let plain = EventData::new("x");
        assert!(plain.properties().is_empty());
        assert_eq!(plain.message_id(), None);
        let full = EventData::new("x")
            .with_property("a", 1i64)
            .with_message_id("m")
            .with_correlation_id("c")
            .with_content_type("t");
        assert_eq!(full.properties().len(), 1);
        assert_eq!(
            (
                full.message_id(),
                full.correlation_id(),
                full.content_type()
            ),
            (Some("m"), Some("c"), Some("t"))
        );
        assert_ne!(plain, full);
        assert_eq!(full.clone(), full);
    }
}
