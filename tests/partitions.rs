//! Where events go, against the in-process emulator over real AMQP: a partition's
//! events in order, keys on the partition the service hash names, a forwarded stream,
//! partition properties and a grown partition count.

use std::time::Duration;

use eventhubs_protocol::partition_key::partition_index;
use futures_util::StreamExt;
use streaming_producer::{BatchOutcome, EventData, Producer};

mod common;
use common::{bodies, emulator, outcomes_for, producer};

#[tokio::test]
async fn events_of_a_partition_are_published_in_order() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = producer(&emulator, 5).await;
    let sent: Vec<String> = (0..2000).map(|i| format!("e{i}")).collect();
    for body in &sent {
        producer
            .enqueue(EventData::new(body.clone()).with_partition_id("1"))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let results = outcomes_for(&mut outcomes, sent.len()).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    assert!(results.len() < sent.len(), "events were batched");
    assert_eq!(bodies(&emulator, "1"), sent);
    assert!(bodies(&emulator, "0").is_empty());
}

#[tokio::test]
async fn keys_land_on_the_partition_the_service_hash_names_and_are_stamped() {
    let emulator = emulator(4).await;
    let (mut producer, mut outcomes) = producer(&emulator, 5).await;
    let keys = ["alphabet", "TheBestParitionEver", "7", "131", "FWfAT"];
    for (i, key) in keys.iter().cycle().take(50).enumerate() {
        producer
            .enqueue(EventData::new(format!("{key}:{i}")).with_partition_key(*key))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let results = outcomes_for(&mut outcomes, 50).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    for key in keys {
        let partition = partition_index(key, 4).to_string();
        let stored = emulator.events("eh1", &partition).unwrap();
        let mine: Vec<_> = stored
            .iter()
            .filter(|e| e.partition_key().as_deref() == Some(key))
            .collect();
        assert_eq!(mine.len(), 10, "{key} on partition {partition}");
        assert!(mine
            .iter()
            .all(|e| String::from_utf8(e.body()).unwrap().starts_with(key)));
    }
}

#[tokio::test]
async fn a_stream_can_be_forwarded_into_the_producer() {
    let emulator = emulator(4).await;
    let (producer, mut outcomes) = producer(&emulator, 5).await;
    let events = futures_util::stream::iter((0..500).map(|i| Ok(EventData::new(format!("s{i}")))));
    events.forward(producer).await.unwrap();
    let results = outcomes_for(&mut outcomes, 500).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    let total: usize = (0..4)
        .map(|p| bodies(&emulator, &p.to_string()).len())
        .sum();
    assert_eq!(total, 500);
}

#[tokio::test]
async fn partition_properties_are_read_from_management() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = producer(&emulator, 1).await;
    let empty = producer.partition_properties("1").await.unwrap();
    assert!(empty.is_empty);
    assert_eq!(empty.last_enqueued_sequence_number, -1);
    assert_eq!(empty.last_enqueued_time, None);
    for i in 0..3 {
        producer
            .enqueue(EventData::new(format!("p{i}")).with_partition_id("1"))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let _ = outcomes_for(&mut outcomes, 3).await;
    let props = producer.partition_properties("1").await.unwrap();
    assert_eq!(props.id, "1");
    assert!(!props.is_empty);
    assert_eq!(props.last_enqueued_sequence_number, 2);
    assert!(props.last_enqueued_time.is_some());
    assert_eq!(producer.partition_ids(), ["0", "1"]);
    let e = producer.partition_properties("9").await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("status 400"), "{e}");
}

#[tokio::test]
async fn a_grown_partition_count_is_picked_up_and_keys_hash_over_it() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    assert_eq!(producer.partition_ids().len(), 2);
    emulator.grow_partitions("eh1", 4).unwrap();
    // The periodic refresh does the same; calling it makes the test deterministic.
    assert_eq!(producer.refresh_partitions().await.unwrap().len(), 4);
    // "7" hashes to partition 1 of 2 but to partition 3 of 4.
    assert_eq!(partition_index("7", 4), 3);
    producer
        .enqueue(EventData::new("seven").with_partition_key("7"))
        .await
        .unwrap();
    producer
        .enqueue(EventData::new("new").with_partition_id("3"))
        .await
        .unwrap();
    let results = outcomes_for(&mut outcomes, 2).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    assert_eq!(bodies(&emulator, "3"), ["seven", "new"]);
}
