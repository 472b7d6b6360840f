//! Partition links are independent: a partition whose link is slow to attach (or,
//! with idempotent retries, slow to report its producer state, which comes with the
//! attach) holds up no other partition. Against the in-process emulator over real
//! AMQP, with its `slow-attach` fault on one partition.

use std::time::Duration;

use eventhubs_emulator::{Emulator, EmulatorHandle, Fault, FaultKind};
use futures_util::StreamExt;
use streaming_producer::{EventData, Producer};

/// Far longer than the test may take: the held attach is never answered in time.
const HELD: Duration = Duration::from_secs(120);

/// How long the test waits for anything before it calls it a hang.
const PATIENCE: Duration = Duration::from_secs(20);

async fn emulator() -> EmulatorHandle {
    Emulator::builder()
        .hub("eh1", 2)
        .fault(Fault::new(FaultKind::SlowAttach(HELD)).partition("1"))
        .start()
        .await
        .unwrap()
}

async fn a_held_partition_does_not_delay_another(idempotent: bool) {
    let emulator = emulator().await;
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        // Long enough that partition 1's attach is still held when partition 0's
        // batch must go out.
        .try_timeout(HELD)
        .delivery_timeout(HELD * 2)
        .idempotent_retries(idempotent)
        .build()
        .await
        .unwrap();

    producer
        .enqueue(EventData::new("to the held partition").with_partition_id("1"))
        .await
        .unwrap();
    // Partition 1's link is now being attached, and the emulator holds the attach.
    tokio::time::timeout(PATIENCE, emulator.wait_for_held_attaches(1))
        .await
        .expect("partition 1's attach reached the emulator");

    producer
        .enqueue(EventData::new("to the free partition").with_partition_id("0"))
        .await
        .unwrap();
    let first = tokio::time::timeout(PATIENCE, outcomes.next())
        .await
        .expect("partition 0 published while partition 1 waited for its attach")
        .expect("an outcome");
    assert_eq!(first.partition, "0");
    assert!(first.is_success(), "{:?}", first.result);
    let stored = emulator.events("eh1", "0").unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body(), b"to the free partition");
    assert!(emulator.events("eh1", "1").unwrap().is_empty());
}

#[tokio::test]
async fn a_partition_slow_to_attach_does_not_delay_another() {
    a_held_partition_does_not_delay_another(false).await;
}

#[tokio::test]
async fn a_partition_slow_to_read_its_producer_state_does_not_delay_another() {
    a_held_partition_does_not_delay_another(true).await;
}
