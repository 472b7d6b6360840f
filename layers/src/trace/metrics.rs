//! The trace layer's OpenTelemetry metrics (feature `opentelemetry`), from the global
//! meter provider as it is when the layer is made (set yours first; without one they
//! cost nothing):
//!
//! - `messaging.client.sent.messages` (counter, `{message}`): events per publish try,
//!   with `error.type` on failed tries (OpenTelemetry messaging conventions);
//! - `messaging.client.operation.duration` (histogram, `s`): duration of each publish
//!   try, with `error.type` on failed tries.
//!
//! Both carry [`common_attributes`] and `messaging.destination.partition.id`. The
//! producer's own instruments come from the same [`meter`] with the same attributes.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::KeyValue;

/// The publish instruments, shared by every partition's trace layer.
#[derive(Debug)]
pub(crate) struct PublishMetrics {
    sent: Counter<u64>,
    duration: Histogram<f64>,
    hub: String,
}

/// The meter of every instrument of the producer and its layers.
pub fn meter() -> opentelemetry::metrics::Meter {
    opentelemetry::global::meter("streaming-producer")
}

/// The attributes every instrument carries: `messaging.system` = `eventhubs`,
/// `messaging.operation.name` = `send` and `messaging.destination.name` = `hub`.
pub fn common_attributes(hub: &str) -> [KeyValue; 3] {
    [
        KeyValue::new("messaging.system", "eventhubs"),
        KeyValue::new("messaging.operation.name", "send"),
        KeyValue::new("messaging.destination.name", hub.to_owned()),
    ]
}

impl PublishMetrics {
    pub(crate) fn new(hub: &str) -> Arc<Self> {
        let meter = meter();
        Arc::new(Self {
            sent: meter
                .u64_counter("messaging.client.sent.messages")
                .with_unit("{message}")
                .with_description("Events the producer tried to publish, per try.")
                .build(),
            duration: meter
                .f64_histogram("messaging.client.operation.duration")
                .with_unit("s")
                .with_description("Duration of each publish try.")
                .build(),
            hub: hub.to_owned(),
        })
    }

    /// Records one publish try of `events` events.
    pub(crate) fn record(
        &self,
        partition: &str,
        events: usize,
        took: Duration,
        error: Option<&(dyn std::error::Error + 'static)>,
    ) {
        let mut attributes = Vec::with_capacity(5);
        attributes.extend(common_attributes(&self.hub));
        attributes.push(KeyValue::new(
            "messaging.destination.partition.id",
            partition.to_owned(),
        ));
        if let Some(e) = error {
            let kind = match e.downcast_ref::<crate::Error>() {
                Some(own) => own
                    .condition()
                    .map_or_else(|| error_type(own), str::to_owned),
                None if e.is::<tower::timeout::error::Elapsed>() => "timeout".to_owned(),
                None => "other".to_owned(),
            };
            attributes.push(KeyValue::new("error.type", kind));
        }
        self.sent.add(events as u64, &attributes);
        self.duration.record(took.as_secs_f64(), &attributes);
    }
}

/// A low-cardinality name for an error without an AMQP condition.
fn error_type(e: &crate::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_too_large() {
        "message_too_large"
    } else if e.is_closed() {
        "closed"
    } else if e.is_auth() {
        "unauthorized"
    } else {
        "connection"
    };
    kind.to_owned()
}
