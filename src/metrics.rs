//! The producer's own OpenTelemetry instrument (feature `opentelemetry`), beside the
//! trace layer's publish metrics (`streaming_producer_layers::trace::metrics`), from
//! the same meter and with the same attributes:
//!
//! - `eventhubs.producer.pending_events` (gauge, `{event}`): events enqueued whose
//!   outcome has not been read yet (`Producer::total_pending`), the producer's
//!   backpressure at a glance, per producer
//!   (`eventhubs.producer.identifier`: give producers of one process distinct
//!   identifiers, or their values overwrite each other).

use std::sync::Weak;

use opentelemetry::KeyValue;
use streaming_producer_layers::trace::metrics::{common_attributes, meter};

/// Registers the pending-events gauge for a producer. OpenTelemetry keeps the
/// callback for the life of the meter provider; once the producer is gone it reports
/// nothing.
pub(crate) fn pending_gauge<T: Send + Sync + 'static>(
    hub: &str,
    identifier: &str,
    shared: Weak<T>,
    pending: fn(&T) -> usize,
) {
    let mut attributes = common_attributes(hub).to_vec();
    attributes.push(KeyValue::new(
        "eventhubs.producer.identifier",
        identifier.to_owned(),
    ));
    meter()
        .u64_observable_gauge("eventhubs.producer.pending_events")
        .with_unit("{event}")
        .with_description("Events enqueued whose outcome has not been read yet.")
        .with_callback(move |observer| {
            if let Some(shared) = shared.upgrade() {
                observer.observe(pending(&shared) as u64, &attributes);
            }
        })
        .build();
}
