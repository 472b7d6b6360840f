//! OpenTelemetry metrics (feature `opentelemetry`), from the global meter provider
//! as it is when the producer is built (set yours first; without one they cost
//! nothing):
//!
//! - `messaging.client.sent.messages` (counter, `{message}`): events per publish try,
//!   with `error.type` on failed tries (OpenTelemetry messaging conventions);
//! - `messaging.client.operation.duration` (histogram, `s`): duration of each publish
//!   try, with `error.type` on failed tries;
//! - `eventhubs.producer.pending_events` (gauge, `{event}`): events enqueued and
//!   without an outcome yet, the producer's backpressure at a glance, per producer
//!   (`eventhubs.producer.identifier`: give producers of one process distinct
//!   identifiers, or their values overwrite each other).
//!
//! All carry `messaging.system` = `eventhubs`, `messaging.operation.name` = `send`
//! and `messaging.destination.name` (the hub); the first two also
//! `messaging.destination.partition.id`.

use std::sync::{Arc, Weak};
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

fn meter() -> opentelemetry::metrics::Meter {
    opentelemetry::global::meter("streaming-producer")
}

fn common(hub: &str) -> [KeyValue; 3] {
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
        attributes.extend(common(&self.hub));
        attributes.push(KeyValue::new(
            "messaging.destination.partition.id",
            partition.to_owned(),
        ));
        if let Some(e) = error {
            let kind = match e.downcast_ref::<crate::error::Error>() {
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
fn error_type(e: &crate::error::Error) -> String {
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

/// Registers the pending-events gauge for a producer. OpenTelemetry keeps the
/// callback for the life of the meter provider; once the producer is gone it reports
/// nothing.
pub(crate) fn pending_gauge<T: Send + Sync + 'static>(
    hub: &str,
    identifier: &str,
    shared: Weak<T>,
    pending: fn(&T) -> usize,
) {
    let mut attributes = common(hub).to_vec();
    attributes.push(KeyValue::new(
        "eventhubs.producer.identifier",
        identifier.to_owned(),
    ));
    meter()
        .u64_observable_gauge("eventhubs.producer.pending_events")
        .with_unit("{event}")
        .with_description("Events enqueued and without an outcome yet.")
        .with_callback(move |observer| {
            if let Some(shared) = shared.upgrade() {
                observer.observe(pending(&shared) as u64, &attributes);
            }
        })
        .build();
}
