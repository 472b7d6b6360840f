//! Errors and refusals, against the in-process emulator over real AMQP: an oversized
//! event or an unknown partition fails that event alone with a typed error; throttled
//! and ambiguous failures are retried, permanent rejections are not.

use std::time::Duration;

use eventhubs_emulator::Emulator;
use futures_util::StreamExt;
use streaming_producer::{BatchOutcome, EventData, RetryPolicy};

mod common;
use common::{bodies, emulator, outcomes_for, producer, producer_retrying};

#[tokio::test]
async fn an_oversized_event_fails_alone() {
    let emulator = Emulator::builder()
        .hub("eh1", 1)
        .max_message_size(64 * 1024)
        .start()
        .await
        .unwrap();
    let (mut producer, mut outcomes) = producer(&emulator, 3_600_000).await;
    producer.enqueue(EventData::new("small-1")).await.unwrap();
    producer
        .enqueue(EventData::new(vec![b'x'; 100 * 1024]))
        .await
        .unwrap();
    producer.enqueue(EventData::new("small-2")).await.unwrap();
    producer.close().await.unwrap();
    let results = outcomes_for(&mut outcomes, 3).await;
    let failed: Vec<_> = results.iter().filter(|o| !o.is_success()).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].events.len(), 1);
    assert!(failed[0].result.as_ref().unwrap_err().is_too_large());
    assert_eq!(bodies(&emulator, "0"), ["small-1", "small-2"]);
}

#[tokio::test]
async fn an_unknown_partition_id_fails_that_event_with_a_typed_error() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = producer(&emulator, 1).await;
    producer
        .enqueue(EventData::new("lost").with_partition_id("7"))
        .await
        .unwrap();
    let o = outcomes.next().await.unwrap();
    assert_eq!(o.partition, "7");
    assert!(o.result.unwrap_err().is_unknown_partition());
    assert_eq!(o.events.get(0).unwrap().body().as_ref(), b"lost");
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy::default().with_initial_delay(Duration::from_millis(10))
}

#[tokio::test]
async fn throttled_batches_are_retried_and_stored_once() {
    let emulator = emulator(1).await;
    emulator.add_fault("throttle,count=2".parse().unwrap());
    let (mut producer, mut outcomes) = producer_retrying(&emulator, quick_retries()).await;
    producer.enqueue(EventData::new("busy")).await.unwrap();
    producer.enqueue(EventData::new("then fine")).await.unwrap();
    let results = outcomes_for(&mut outcomes, 2).await;
    assert!(results.iter().all(BatchOutcome::is_success), "{results:?}");
    // Order holds across the retries.
    assert_eq!(bodies(&emulator, "0").concat(), "busythen fine");
}

#[tokio::test]
async fn an_ambiguous_failure_is_retried_at_least_once() {
    let emulator = emulator(1).await;
    // Stored, then the connection drops before the acknowledgement.
    emulator.add_fault("drop-connection,count=1".parse().unwrap());
    let (mut producer, mut outcomes) = producer_retrying(&emulator, quick_retries()).await;
    producer.enqueue(EventData::new("maybe")).await.unwrap();
    assert!(outcomes.next().await.unwrap().is_success());
    // Without idempotent publishing the retry stores it again: at least once.
    assert_eq!(bodies(&emulator, "0"), ["maybe", "maybe"]);
}

#[tokio::test]
async fn permanent_rejections_are_not_retried() {
    let emulator = emulator(1).await;
    emulator.add_fault(
        "reject,condition=amqp:unauthorized-access,count=1"
            .parse()
            .unwrap(),
    );
    let (mut producer, mut outcomes) = producer_retrying(&emulator, quick_retries()).await;
    producer.enqueue(EventData::new("denied")).await.unwrap();
    let o = outcomes.next().await.unwrap();
    let error = o.result.unwrap_err();
    assert_eq!(error.condition(), Some("amqp:unauthorized-access"));
    // A refusal is a verdict: certainly not stored.
    assert!(!error.is_ambiguous(), "{error}");
    assert!(bodies(&emulator, "0").is_empty());
}
