//! What the producer's integration tests share: an emulator with one hub (`eh1`),
//! producers on it, and reading back what it stored and what the producer reported.
//! Each test file uses some of these; those that some file does not use allow
//! `dead_code`.

pub(crate) mod spool;

use std::time::Duration;

use eventhubs_emulator::{Emulator, EmulatorHandle};
use futures_util::StreamExt;
use streaming_producer::{BatchOutcome, Outcomes, Producer, ProducerBuilder, RetryPolicy};

#[allow(dead_code)]
pub(crate) async fn emulator(partitions: u32) -> EmulatorHandle {
    Emulator::builder()
        .hub("eh1", partitions)
        .start()
        .await
        .unwrap()
}

#[allow(dead_code)]
pub(crate) async fn producer(emulator: &EmulatorHandle, max_wait_ms: u64) -> (Producer, Outcomes) {
    Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(max_wait_ms))
        .try_timeout(Duration::from_secs(10))
        // Tests that wait on flush or close set max_wait out of reach.
        .delivery_timeout(Duration::from_millis(max_wait_ms) + Duration::from_secs(120))
        .build()
        .await
        .unwrap()
}

/// A producer that holds at most `max_pending` events, with a 10 s try timeout.
#[allow(dead_code)]
pub(crate) fn bounded(
    emulator: &EmulatorHandle,
    max_wait: Duration,
    max_pending: usize,
) -> ProducerBuilder {
    Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(max_wait)
        .max_pending_events(max_pending)
        .try_timeout(Duration::from_secs(10))
}

#[allow(dead_code)]
pub(crate) fn bodies(emulator: &EmulatorHandle, partition: &str) -> Vec<String> {
    emulator
        .events("eh1", partition)
        .unwrap()
        .iter()
        .map(|e| String::from_utf8(e.body()).unwrap())
        .collect()
}

/// Collects outcomes until `events` events are accounted for.
#[allow(dead_code)]
pub(crate) async fn outcomes_for(outcomes: &mut Outcomes, events: usize) -> Vec<BatchOutcome> {
    let mut seen = 0;
    let mut all = Vec::new();
    while seen < events {
        let o = outcomes.next().await.expect("an outcome");
        seen += o.events.len();
        all.push(o);
    }
    all
}

#[allow(dead_code)]
pub(crate) async fn producer_retrying(
    emulator: &EmulatorHandle,
    policy: RetryPolicy,
) -> (Producer, Outcomes) {
    Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        .retry_policy(policy)
        .build()
        .await
        .unwrap()
}

/// The error and its causes, as one line.
#[allow(dead_code)]
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// The message annotation `name` of a stored event (such as
/// `com.microsoft:producer-sequence-number`), if it has one.
#[allow(dead_code)]
pub(crate) fn annotation(
    event: &eventhubs_emulator::StoredEvent,
    name: &str,
) -> Option<serde_amqp::Value> {
    use fe2o3_amqp::types::messaging::annotations::OwnedKey;
    let message = event.message().expect("a stored event decodes");
    let annotations = message.message_annotations?;
    annotations.0.get(&OwnedKey::Symbol(name.into())).cloned()
}
