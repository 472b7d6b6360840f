//! Backpressure and capacity, against the in-process emulator over real AMQP:
//! `max_pending_events` bounds what is pending, a stuck partition stalls no other while
//! there is room, a slot reserved by `poll_ready` goes back with its handle, and batches
//! filled to the last byte are accepted.

use std::time::Duration;

use eventhubs_emulator::{EmulatorHandle, Fault, FaultKind};
use futures_util::{FutureExt, StreamExt};
use streaming_producer::{BatchOutcome, EventData, Outcomes, Producer};

mod common;
use common::{bodies, bounded, emulator, outcomes_for};

/// A two-partition emulator whose partition 0 never answers, and a producer on it that
/// publishes at once and holds at most `max_pending` events.
async fn stuck_partition_0(max_pending: usize) -> (EmulatorHandle, Producer, Outcomes) {
    let emulator = emulator(2).await;
    emulator.add_fault(Fault::new(FaultKind::Stall).partition("0"));
    let (producer, outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        .max_pending_events(max_pending)
        .build()
        .await
        .unwrap();
    (emulator, producer, outcomes)
}

#[tokio::test]
async fn backpressure_bounds_pending_events() {
    let (_emulator, mut producer, outcomes) = stuck_partition_0(5).await;
    for i in 0..5 {
        producer
            .enqueue(EventData::new(format!("stuck{i}")).with_partition_id("0"))
            .await
            .unwrap();
    }
    // Five events are pending on a partition that never answers: no room for a sixth.
    assert!(producer
        .enqueue(EventData::new("sixth").with_partition_id("1"))
        .now_or_never()
        .is_none());
    assert_eq!(producer.total_pending(), 5);
    drop(outcomes);
}

#[tokio::test]
async fn with_room_a_stuck_partition_stalls_no_other() {
    let (_emulator, mut producer, mut outcomes) = stuck_partition_0(50).await;
    producer
        .enqueue(EventData::new("stuck").with_partition_id("0"))
        .await
        .unwrap();
    for i in 0..10 {
        producer
            .enqueue(EventData::new(format!("free{i}")).with_partition_id("1"))
            .await
            .unwrap();
    }
    // The other partition keeps publishing while partition 0 is stuck.
    let results = outcomes_for(&mut outcomes, 10).await;
    assert!(results.iter().all(|o| o.is_success() && o.partition == "1"));
    assert_eq!(producer.pending("0"), 1);
}

#[tokio::test]
async fn batches_filled_to_the_last_byte_are_accepted() {
    // Tiny events fill a batch to within a few bytes of the link's 1 MiB; the service
    // (here the emulator) must weigh it as it is written and take it.
    let emulator = emulator(1).await;
    let (mut producer, outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_secs(60))
        .max_pending_events(120_000)
        .build()
        .await
        .unwrap();
    let collector = tokio::spawn(outcomes.collect::<Vec<_>>());
    for i in 0..120_000u32 {
        let body = [(i % 251) as u8; 5];
        producer
            .enqueue(EventData::new(body.to_vec()))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let results = collector.await.unwrap();
    assert!(
        results.iter().all(BatchOutcome::is_success),
        "{:?}",
        results.iter().find(|o| !o.is_success()).map(|o| &o.result)
    );
    let fullest = results.iter().map(|o| o.size_in_bytes).max().unwrap();
    assert!(fullest > producer.max_batch_bytes() - 16, "{fullest}");
    assert_eq!(emulator.events("eh1", "0").unwrap().len(), 120_000);
}

#[tokio::test]
async fn a_slot_reserved_by_poll_ready_goes_back_with_its_handle() {
    use futures_util::Sink;
    let emulator = emulator(1).await;
    let (mut producer, mut outcomes) = bounded(&emulator, Duration::from_millis(1), 2)
        .build()
        .await
        .unwrap();
    // Two handles each reserve the room for one event, and never use it.
    let mut clones = [producer.clone(), producer.clone()];
    for clone in &mut clones {
        let ready =
            futures_util::future::poll_fn(|cx| std::pin::Pin::new(&mut *clone).poll_ready(cx));
        assert!(matches!(ready.now_or_never(), Some(Ok(()))));
    }
    assert!(producer
        .enqueue(EventData::new("no room"))
        .now_or_never()
        .is_none());
    // Dropping a handle gives its slot back: the waiting handle gets it.
    let [first, second] = clones;
    let ten = Duration::from_secs(10);
    drop(first);
    tokio::time::timeout(ten, producer.enqueue(EventData::new("one")))
        .await
        .expect("the dropped handle's slot came back")
        .unwrap();
    drop(second);
    tokio::time::timeout(ten, producer.enqueue(EventData::new("two")))
        .await
        .expect("the dropped handle's slot came back")
        .unwrap();
    let results = outcomes_for(&mut outcomes, 2).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    // Both slots are free again once the outcomes are read.
    producer.enqueue(EventData::new("three")).await.unwrap();
    producer.enqueue(EventData::new("four")).await.unwrap();
    producer.close().await.unwrap();
    assert_eq!(bodies(&emulator, "0"), ["one", "two", "three", "four"]);
}
