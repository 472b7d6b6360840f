//! Keyless routing that sees each partition's health, over real AMQP to the emulator
//! with its fault scripts: once the producer notices that a partition stalls or is
//! throttled, no keyless event goes there; keyed and partition-id events still do;
//! and keyless events go there again once it recovers.

use std::time::Duration;

use eventhubs_emulator::EmulatorHandle;
use streaming_producer::{EventData, Partition, Producer, RetryPolicy};

mod common;
use common::emulator;

/// A producer that notices a sick partition after 200 ms, and keeps retrying a batch
/// (every try cut at 300 ms) rather than failing it while the test runs.
async fn producer(emulator: &EmulatorHandle) -> Producer {
    let (producer, outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(2))
        .max_pending_events(400)
        .partition_availability_timeout(Duration::from_millis(200))
        .try_timeout(Duration::from_millis(300))
        .delivery_timeout(Duration::from_secs(120))
        .retry_policy(
            RetryPolicy::default()
                .with_max_retries(1000)
                .with_initial_delay(Duration::from_millis(20))
                .with_max_delay(Duration::from_millis(100)),
        )
        .build()
        .await
        .unwrap();
    drop(outcomes);
    producer
}

/// Keyless events numbered from `from`, until the producer says partition 2 is not
/// available; returns the next number.
async fn until_avoided(producer: &mut Producer, from: usize) -> usize {
    let mut next = from;
    while producer.stats().partitions[2].available {
        producer
            .enqueue(EventData::new(next.to_string()))
            .await
            .unwrap();
        next += 1;
        if next.is_multiple_of(50) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(next < from + 200_000, "partition 2 was never avoided");
    }
    next
}

/// The numbers stored in `partition`.
fn stored(emulator: &EmulatorHandle, partition: &str) -> Vec<usize> {
    common::bodies(emulator, partition)
        .iter()
        .filter_map(|b| b.parse().ok())
        .collect()
}

/// Keyless events `from..to`, then waits until the healthy partitions stored them.
async fn keyless_while_sick(producer: &mut Producer, from: usize, to: usize) {
    for i in from..to {
        producer
            .enqueue(EventData::new(i.to_string()))
            .await
            .unwrap();
    }
    for healthy in ["0", "1", "3"] {
        producer
            .flush_partition(Partition::id(healthy))
            .await
            .unwrap();
    }
}

async fn avoided_then_recovered(fault: &str) {
    let emulator = emulator(4).await;
    emulator.add_fault(fault.parse().unwrap());
    let mut producer = producer(&emulator).await;
    let noticed = until_avoided(&mut producer, 0).await;
    let held = producer.pending("2");
    keyless_while_sick(&mut producer, noticed, noticed + 3000).await;

    // Nothing keyless reached partition 2 after the producer noticed.
    assert_eq!(producer.pending("2"), held, "partition 2 got no new events");
    let mut after: Vec<usize> = ["0", "1", "3"]
        .iter()
        .flat_map(|p| stored(&emulator, p))
        .filter(|&n| n >= noticed)
        .collect();
    after.sort_unstable();
    assert_eq!(
        after,
        (noticed..noticed + 3000).collect::<Vec<_>>(),
        "every later keyless event went to a healthy partition"
    );
    // Keyed and partition-id events are never moved.
    producer
        .enqueue(EventData::new("pinned").with_partition_id("2"))
        .await
        .unwrap();
    assert_eq!(producer.pending("2"), held + 1);

    // The partition recovers: its retried batches go through, and keyless events go
    // there again.
    emulator.clear_faults();
    producer.flush_partition(Partition::id("2")).await.unwrap();
    assert!(producer.stats().partitions[2].available);
    let start = noticed + 3000;
    for i in start..start + 2000 {
        producer
            .enqueue(EventData::new(i.to_string()))
            .await
            .unwrap();
        if i.is_multiple_of(100) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    producer.close().await.unwrap();
    assert!(
        stored(&emulator, "2").iter().any(|&n| n >= start),
        "keyless events reach partition 2 again"
    );
    let stats = producer.stats();
    assert_eq!(stats.total.events_failed, 0, "{stats:?}");
    assert!(stats.partitions[2].stats.retries > 0, "{stats:?}");
}

#[tokio::test]
async fn a_stalled_partition_gets_no_keyless_events_until_it_recovers() {
    avoided_then_recovered("stall,partition=2").await;
}

#[tokio::test]
async fn a_throttled_partition_gets_no_keyless_events_until_it_recovers() {
    avoided_then_recovered("throttle,partition=2").await;
}

/// Two partitions, the second refusing every batch with a condition not worth a retry.
async fn refusing_partition_1() -> EmulatorHandle {
    let emulator = emulator(2).await;
    emulator.add_fault(
        "reject,condition=amqp:unauthorized-access,partition=1"
            .parse()
            .unwrap(),
    );
    emulator
}

#[tokio::test]
async fn a_failing_partition_is_avoided_and_switched_off_it_is_not() {
    for adaptive in [true, false] {
        let emulator = refusing_partition_1().await;
        let (mut producer, _outcomes) = Producer::builder()
            .connection_string(&emulator.connection_string_for("eh1"))
            .max_wait(Duration::from_millis(1))
            .adaptive_routing(adaptive)
            .sticky_routing(false)
            .partition_availability_timeout(Duration::from_secs(60))
            .build()
            .await
            .unwrap();
        let failed = producer
            .publish(EventData::new("denied").with_partition_id("1"))
            .await
            .unwrap_err();
        assert!(failed.error().condition().is_some());
        assert_eq!(producer.stats().partitions[1].available, !adaptive);
        let mut partitions = Vec::new();
        for i in 0..10 {
            let result = producer.publish(EventData::new(i.to_string())).await;
            partitions.push(match result {
                Ok(d) => d.partition().to_owned(),
                Err(f) => f.partition().to_owned(),
            });
        }
        let to_failing = partitions.iter().filter(|p| *p == "1").count();
        if adaptive {
            assert_eq!(to_failing, 0, "{partitions:?}");
        } else {
            assert_eq!(to_failing, 5, "round robin as before: {partitions:?}");
        }
        producer.close().await.unwrap();
    }
}

#[tokio::test]
async fn an_availability_timeout_of_any_length_is_taken() {
    let emulator = refusing_partition_1().await;
    let (mut producer, _outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        .partition_availability_timeout(Duration::MAX)
        .build()
        .await
        .unwrap();
    for _ in 0..2 {
        let failed = producer
            .publish(EventData::new("x").with_partition_id("1"))
            .await
            .unwrap_err();
        assert!(failed.error().condition().is_some(), "{failed}");
    }
    assert!(!producer.stats().partitions[1].available);
    producer.close().await.unwrap();
    let zero = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .partition_availability_timeout(Duration::ZERO)
        .build()
        .await;
    assert!(zero.unwrap_err().is_config());
}
