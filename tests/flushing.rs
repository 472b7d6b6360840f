//! Flushing and clearing, against the in-process emulator over real AMQP: `flush`
//! publishes what is open and waits for it (and only for it), `flush_partition` does so
//! for one partition, and `clear_partition` hands a partition's unsent events back.

use eventhubs_emulator::{Emulator, Fault, FaultKind};
use eventhubs_protocol::partition_key::partition_index;
use futures_util::{FutureExt, StreamExt};
use streaming_producer::{EventData, Partition};

mod common;
use common::{bodies, emulator, producer};

#[tokio::test]
async fn flush_publishes_open_batches_and_waits_for_their_outcomes() {
    let emulator = emulator(2).await;
    // A max_wait so long that only the flush can publish.
    let (mut producer, mut outcomes) = producer(&emulator, 3_600_000).await;
    for i in 0..10 {
        producer
            .enqueue(EventData::new(format!("f{i}")))
            .await
            .unwrap();
    }
    assert_eq!(producer.total_pending(), 10);
    producer.flush().await.unwrap();
    // The outcomes are already queued when flush returns; their events stay pending,
    // holding room under max_pending_events, until the outcomes are read.
    assert_eq!(producer.total_pending(), 10);
    let mut events = 0;
    while let Some(Some(o)) = outcomes.next().now_or_never() {
        assert!(o.is_success());
        events += o.events.len();
    }
    assert_eq!(events, 10);
    assert_eq!(producer.total_pending(), 0);
    assert_eq!(
        bodies(&emulator, "0").len() + bodies(&emulator, "1").len(),
        10
    );
}

#[tokio::test]
async fn a_flush_does_not_wait_for_events_enqueued_after_it() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    // Short max_wait: the later event really goes out, to a partition that never answers.
    let (mut producer, _outcomes) = producer(&emulator, 1).await;
    producer
        .enqueue(EventData::new("before").with_partition_id("0"))
        .await
        .unwrap();
    // Partition 1 stalls: an event there would never get an outcome.
    emulator.add_fault(Fault::new(FaultKind::Stall).partition("1"));
    let flush = producer.flush();
    let mut other = producer.clone();
    let (flushed, _) = tokio::join!(flush, async {
        other
            .enqueue(EventData::new("after").with_partition_id("1"))
            .await
            .unwrap();
    });
    flushed.unwrap();
    assert_eq!(bodies(&emulator, "0"), ["before"]);
    assert_eq!(producer.pending("1"), 1);
}

#[tokio::test]
async fn one_partition_is_flushed_by_id_or_by_key_and_the_others_keep_batching() {
    let emulator = emulator(4).await;
    let (mut producer, mut outcomes) = producer(&emulator, 3_600_000).await;
    let keyed = partition_index("user-7", 4).to_string();
    let other = if keyed == "0" { "1" } else { "0" };
    for i in 0..5 {
        producer
            .enqueue(EventData::new(format!("k{i}")).with_partition_key("user-7"))
            .await
            .unwrap();
        producer
            .enqueue(EventData::new(format!("o{i}")).with_partition_id(other))
            .await
            .unwrap();
    }
    producer
        .flush_partition(Partition::key("user-7"))
        .await
        .unwrap();
    // The keyed partition is done when flush_partition returns; the other still waits.
    assert_eq!(bodies(&emulator, &keyed), ["k0", "k1", "k2", "k3", "k4"]);
    assert!(bodies(&emulator, other).is_empty());
    let o = outcomes.next().now_or_never().flatten().expect("queued");
    assert!(o.is_success() && o.partition == keyed);
    // Read, its events are no longer pending.
    assert_eq!(producer.pending(&keyed), 0);
    assert_eq!(producer.pending(other), 5);
    producer
        .flush_partition(Partition::id(other))
        .await
        .unwrap();
    assert_eq!(bodies(&emulator, other).len(), 5);
    assert_eq!(producer.total_pending(), 5, "until its outcome is read");
    outcomes
        .next()
        .await
        .expect("the other partition's outcome");
    assert_eq!(producer.total_pending(), 0);
    let unknown = producer
        .flush_partition(Partition::id("9"))
        .await
        .unwrap_err();
    assert!(unknown.is_unknown_partition(), "{unknown}");
}

#[tokio::test]
async fn clearing_a_partition_hands_its_unsent_events_back_as_abandoned() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = producer(&emulator, 3_600_000).await;
    for i in 0..6 {
        producer
            .enqueue(EventData::new(format!("c{i}")).with_partition_id((i % 2).to_string()))
            .await
            .unwrap();
    }
    assert_eq!(
        producer.clear_partition(Partition::id("1")).await.unwrap(),
        3
    );
    let o = outcomes.next().await.unwrap();
    assert!(o.is_abandoned());
    assert_eq!(o.partition, "1");
    let bodies_back: Vec<_> = o.events.iter().map(|e| e.body().to_vec()).collect();
    assert_eq!(
        bodies_back,
        [b"c1".to_vec(), b"c3".to_vec(), b"c5".to_vec()]
    );
    assert_eq!(producer.pending("1"), 0);
    assert_eq!(producer.pending("0"), 3);
    // Nothing left to clear; the partition still takes events.
    assert_eq!(
        producer.clear_partition(Partition::id("1")).await.unwrap(),
        0
    );
    producer
        .enqueue(EventData::new("after").with_partition_id("1"))
        .await
        .unwrap();
    producer.close().await.unwrap();
    assert_eq!(bodies(&emulator, "1"), ["after"]);
    assert_eq!(bodies(&emulator, "0"), ["c0", "c2", "c4"]);
}
