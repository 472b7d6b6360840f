//! The producer's own OpenTelemetry instrument (feature `opentelemetry`), beside the
//! trace layer's publish metrics (`streaming_producer_layers::trace::metrics`), from
//! the same meter and with the same attributes:
//!
//! - `eventhubs.producer.pending_events` (gauge, `{event}`): events enqueued whose
//!   outcome has not been read yet (`Producer::total_pending`), the producer's
//!   backpressure at a glance, per producer
//!   (`eventhubs.producer.identifier`: give producers of one process distinct
//!   identifiers, or their values overwrite each other);
//! - `eventhubs.producer.published_events`, `eventhubs.producer.failed_events` and
//!   `eventhubs.producer.retries` (counters, `{event}` and `{retry}`): events stored,
//!   events that failed, and tries beyond the first, with the same attributes. They
//!   read the counters [`Producer::stats`](crate::Producer::stats) reads.

use std::sync::Weak;

use crate::producer::Counters;

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

/// An observable counter: its name, unit and description, and what it reads.
type Instrument = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Counters) -> u64,
);

/// Registers the producer's outcome counters, read from the statistics' counters.
pub(crate) fn outcome_counters<T: Send + Sync + 'static>(
    hub: &str,
    identifier: &str,
    shared: Weak<T>,
    counters: fn(&T) -> Vec<&Counters>,
) {
    let mut attributes = common_attributes(hub).to_vec();
    attributes.push(KeyValue::new(
        "eventhubs.producer.identifier",
        identifier.to_owned(),
    ));
    let instruments: [Instrument; 3] = [
        (
            "eventhubs.producer.published_events",
            "{event}",
            "Events the service stored.",
            Counters::events_published,
        ),
        (
            "eventhubs.producer.failed_events",
            "{event}",
            "Events whose batch failed, or that were refused before batching.",
            Counters::events_failed,
        ),
        (
            "eventhubs.producer.retries",
            "{retry}",
            "Publish tries beyond the first.",
            Counters::retries,
        ),
    ];
    for (name, unit, description, read) in instruments {
        let shared = shared.clone();
        let attributes = attributes.clone();
        meter()
            .u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |observer| {
                if let Some(shared) = shared.upgrade() {
                    let sum = counters(&shared).into_iter().map(read).sum();
                    observer.observe(sum, &attributes);
                }
            })
            .build();
    }
}
