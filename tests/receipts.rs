//! Receipts per event, over real AMQP to the emulator: each resolves with its event's
//! own result, whether or not the outcome stream is read; a failure hands the event
//! back with the error (and its doubt); a dropped receipt loses nothing.

use std::collections::HashMap;
use std::time::Duration;

use eventhubs_emulator::EmulatorHandle;
use serde_amqp::Value;
use streaming_producer::{EventData, Producer, RetryPolicy};

mod common;
use common::spool::{scratch, spooled};
use common::{bodies, bounded, emulator, outcomes_for, producer};

/// Body and producer sequence number of each event `partition` stored.
fn sequence_numbers(emulator: &EmulatorHandle, partition: &str) -> HashMap<String, i32> {
    emulator
        .events("eh1", partition)
        .unwrap()
        .iter()
        .map(|e| {
            let Some(Value::Int(seq)) =
                common::annotation(e, "com.microsoft:producer-sequence-number")
            else {
                panic!("no sequence number")
            };
            (String::from_utf8(e.body()).unwrap(), seq)
        })
        .collect()
}

#[tokio::test]
async fn each_receipt_names_its_partition_and_sequence_number_as_stored() {
    let emulator = emulator(4).await;
    let (mut producer, outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .idempotent_retries(true)
        .max_wait(Duration::from_millis(5))
        .build()
        .await
        .unwrap();
    drop(outcomes);
    let mut receipts = Vec::new();
    for i in 0..500 {
        let event = EventData::new(format!("e{i}")).with_partition_key(format!("k{}", i % 7));
        receipts.push((i, producer.enqueue_with_receipt(event).await.unwrap()));
    }
    let mut delivered = Vec::new();
    for (i, receipt) in receipts {
        delivered.push((i, receipt.await.expect("delivered")));
    }
    producer.close().await.unwrap();
    let stored: Vec<HashMap<String, i32>> = (0..4)
        .map(|p| sequence_numbers(&emulator, &p.to_string()))
        .collect();
    for (i, d) in delivered {
        let partition: usize = d.partition().parse().unwrap();
        assert_eq!(
            stored[partition].get(&format!("e{i}")).copied(),
            d.sequence_number(),
            "event {i}: the receipt's partition holds it under the receipt's number"
        );
    }
    assert_eq!(stored.iter().map(HashMap::len).sum::<usize>(), 500);
}

#[tokio::test]
async fn without_idempotence_a_receipt_has_a_partition_and_no_sequence_number() {
    let emulator = emulator(2).await;
    let (mut producer, _outcomes) = producer(&emulator, 1).await;
    let delivered = producer
        .publish(EventData::new("one").with_partition_id("1"))
        .await
        .unwrap();
    assert_eq!(delivered.partition(), "1");
    assert_eq!(delivered.sequence_number(), None);
    assert_eq!(bodies(&emulator, "1"), ["one"]);
}

#[tokio::test]
async fn receipts_resolve_while_the_outcomes_wait_unread_and_both_see_every_event() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = producer(&emulator, 1).await;
    let mut receipts = Vec::new();
    for i in 0..50 {
        let event = EventData::new(format!("{i}"));
        receipts.push(producer.enqueue_with_receipt(event).await.unwrap());
    }
    // Nothing has read the outcomes yet: the receipts do not wait for that.
    let mut partitions = HashMap::<String, usize>::new();
    for receipt in receipts {
        *partitions
            .entry(receipt.await.unwrap().partition().to_owned())
            .or_default() += 1;
    }
    let reported = outcomes_for(&mut outcomes, 50).await;
    let mut from_outcomes = HashMap::<String, usize>::new();
    for o in &reported {
        assert!(o.is_success());
        *from_outcomes.entry(o.partition.clone()).or_default() += o.events.len();
    }
    assert_eq!(partitions, from_outcomes);
}

#[tokio::test]
async fn a_failed_event_comes_back_with_its_error() {
    let emulator = emulator(2).await;
    emulator.add_fault(
        "reject,condition=amqp:unauthorized-access,partition=1"
            .parse()
            .unwrap(),
    );
    let (mut producer, _outcomes) = producer(&emulator, 1).await;
    let event = EventData::new("denied")
        .with_partition_id("1")
        .with_property("order", 42i64);
    let failed = producer.publish(event.clone()).await.unwrap_err();
    assert_eq!(failed.error().condition(), Some("amqp:unauthorized-access"));
    assert!(!failed.is_ambiguous(), "a rejection is a verdict");
    assert_eq!(failed.partition(), "1");
    assert_eq!(failed.into_event(), Some(event));

    // Refused before batching: an unknown partition, and an event too large.
    let unknown = EventData::new("nowhere").with_partition_id("9");
    let failed = producer.publish(unknown.clone()).await.unwrap_err();
    assert!(failed.error().is_unknown_partition());
    assert_eq!(failed.event(), Some(&unknown));
    let huge = EventData::new(vec![0u8; producer.max_batch_bytes() + 1]);
    let failed = producer.publish(huge).await.unwrap_err();
    assert!(failed.error().is_too_large(), "{failed}");
    assert_eq!(
        failed.event().map(|e| e.body().len()),
        Some(producer.max_batch_bytes() + 1)
    );
}

#[tokio::test]
async fn a_batch_that_may_have_been_stored_fails_its_receipts_as_ambiguous() {
    let emulator = emulator(1).await;
    // The transfer reaches the service and no verdict ever comes back.
    emulator.add_fault("stall".parse().unwrap());
    let (mut producer, _outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        .try_timeout(Duration::from_millis(200))
        .delivery_timeout(Duration::from_millis(600))
        .retry_policy(RetryPolicy::default().with_initial_delay(Duration::from_millis(10)))
        .build()
        .await
        .unwrap();
    let failed = producer
        .publish(EventData::new("in doubt"))
        .await
        .unwrap_err();
    assert!(failed.is_ambiguous(), "{failed}");
    assert_eq!(failed.event().unwrap().body().as_ref(), b"in doubt");
    producer.close_abandon().await.unwrap();
}

#[tokio::test]
async fn a_dropped_receipt_loses_nothing() {
    let emulator = emulator(1).await;
    let (mut producer, mut outcomes) = producer(&emulator, 1).await;
    for i in 0..20 {
        let receipt = producer
            .enqueue_with_receipt(EventData::new(format!("{i}")))
            .await
            .unwrap();
        drop(receipt);
    }
    // A publish dropped after its event was accepted (the first poll accepts it, as
    // there is room) leaves it published too.
    {
        let publish = producer.publish(EventData::new("20"));
        futures_util::pin_mut!(publish);
        assert!(futures_util::poll!(publish.as_mut()).is_pending());
    }
    producer.close().await.unwrap();
    let reported = outcomes_for(&mut outcomes, 21).await;
    assert!(reported.iter().all(|o| o.is_success()));
    let expected: Vec<String> = (0..21).map(|i| i.to_string()).collect();
    assert_eq!(bodies(&emulator, "0"), expected);
}

#[tokio::test]
async fn a_closed_producer_fails_a_publish_with_the_event_back() {
    let emulator = emulator(1).await;
    let (mut producer, _outcomes) = producer(&emulator, 1).await;
    producer.close().await.unwrap();
    let failed = producer.publish(EventData::new("late")).await.unwrap_err();
    assert!(failed.error().is_closed());
    assert_eq!(failed.into_event(), Some(EventData::new("late")));
}

#[tokio::test]
async fn receipts_of_events_that_waited_in_the_spools_backlog_resolve_too() {
    let emulator = emulator(2).await;
    // Each batch waits 100 ms for its verdict, so memory (8 events) fills and the
    // rest of the events wait on disk, in the spool's backlog.
    emulator.add_fault("delay,ms=100".parse().unwrap());
    let dir = scratch("receipts-backlog");
    let (mut producer, outcomes) = spooled(&emulator, &dir)
        .max_pending_events(8)
        .build()
        .await
        .unwrap();
    drop(outcomes);
    let mut receipts = Vec::new();
    for i in 0..200 {
        let event = EventData::new(format!("{i}")).with_partition_key(format!("{}", i % 3));
        receipts.push(producer.enqueue_with_receipt(event).await.unwrap());
    }
    let spilled = producer.total_pending();
    assert!(spilled > 8, "{spilled} pending: the backlog held some");
    for receipt in receipts {
        receipt.await.expect("delivered");
    }
    producer.close().await.unwrap();
    let stored = bodies(&emulator, "0").len() + bodies(&emulator, "1").len();
    assert_eq!(stored, 200);
}

#[tokio::test]
async fn a_bounded_producer_with_receipts_and_no_outcome_reader_never_stalls() {
    let emulator = emulator(2).await;
    let (mut producer, outcomes) = bounded(&emulator, Duration::from_millis(1), 16)
        .build()
        .await
        .unwrap();
    drop(outcomes);
    let mut receipts = Vec::new();
    for i in 0..1000 {
        receipts.push(
            producer
                .enqueue_with_receipt(EventData::new(format!("{i}")))
                .await
                .unwrap(),
        );
    }
    let delivered = futures_util::future::join_all(receipts).await;
    assert!(delivered.iter().all(Result::is_ok));
    producer.close().await.unwrap();
    let stored = bodies(&emulator, "0").len() + bodies(&emulator, "1").len();
    assert_eq!(stored, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_of_one_batch_awaited_on_many_tasks_all_resolve() {
    let emulator = emulator(1).await;
    let (producer, _outcomes) = producer(&emulator, 50).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let mut producer = producer.clone();
        tasks.spawn(async move { producer.publish(EventData::new(format!("{i}"))).await });
    }
    let mut partitions = Vec::new();
    while let Some(delivery) = tasks.join_next().await {
        partitions.push(delivery.unwrap().expect("delivered").partition().to_owned());
    }
    assert_eq!(partitions, vec!["0".to_owned(); 64]);
    let stats = producer.stats();
    assert!(
        stats.total.batches_published < 64,
        "the tasks' events shared batches: {stats:?}"
    );
}
