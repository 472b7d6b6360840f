//! Idempotent retries against the in-process emulator over real AMQP: every event is
//! numbered once, retries resend the same numbers, and the service's state decides
//! the fate of a batch whose outcome was lost.

use std::time::Duration;

use eventhubs_emulator::{Emulator, EmulatorHandle};
use futures_util::StreamExt;
use serde_amqp::Value;

mod common;
use common::annotation;
use streaming_producer::{Batch, BatchOutcome, EventData, Outcomes, Producer, RetryPolicy};

async fn emulator(partitions: u32) -> EmulatorHandle {
    Emulator::builder()
        .hub("eh1", partitions)
        .start()
        .await
        .unwrap()
}

async fn idempotent_producer(
    emulator: &EmulatorHandle,
    retry: RetryPolicy,
) -> (Producer, Outcomes) {
    Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        .retry_policy(retry)
        .try_timeout(Duration::from_secs(10))
        .idempotent_retries(true)
        .build()
        .await
        .unwrap()
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy::default().with_initial_delay(Duration::from_millis(10))
}

/// Body, sequence number, producer id and epoch of each stored event.
fn stored(emulator: &EmulatorHandle, partition: &str) -> Vec<(String, i32, i64, i16)> {
    emulator
        .events("eh1", partition)
        .unwrap()
        .iter()
        .map(|e| {
            let Some(Value::Int(seq)) = annotation(e, "com.microsoft:producer-sequence-number")
            else {
                panic!("no sequence number")
            };
            let Some(Value::Long(id)) = annotation(e, "com.microsoft:producer-id") else {
                panic!("no producer id")
            };
            let Some(Value::Short(epoch)) = annotation(e, "com.microsoft:producer-epoch") else {
                panic!("no epoch")
            };
            (String::from_utf8(e.body()).unwrap(), seq, id, epoch)
        })
        .collect()
}

fn bodies(emulator: &EmulatorHandle, partition: &str) -> Vec<String> {
    stored(emulator, partition)
        .into_iter()
        .map(|e| e.0)
        .collect()
}

/// Body and sequence number of each stored event.
fn numbered(emulator: &EmulatorHandle, partition: &str) -> Vec<(String, i32)> {
    stored(emulator, partition)
        .into_iter()
        .map(|e| (e.0, e.1))
        .collect()
}

fn pairs(expected: &[(&str, i32)]) -> Vec<(String, i32)> {
    expected.iter().map(|(b, n)| (b.to_string(), *n)).collect()
}

async fn next(outcomes: &mut Outcomes) -> BatchOutcome {
    tokio::time::timeout(Duration::from_secs(20), outcomes.next())
        .await
        .expect("an outcome in time")
        .expect("an outcome")
}

#[tokio::test]
async fn every_event_is_numbered_consecutively_per_partition() {
    let emulator = emulator(2).await;
    let (mut producer, outcomes) = idempotent_producer(&emulator, quick_retries()).await;
    // Outcomes hold capacity until read, so read them while enqueueing.
    let collector = tokio::spawn(outcomes.collect::<Vec<_>>());
    for i in 0..3000u32 {
        let event = EventData::new(format!("event {i}"))
            .with_partition_id(if i.is_multiple_of(3) { "0" } else { "1" });
        producer.enqueue(event).await.unwrap();
    }
    producer.close().await.unwrap();
    let results = collector.await.unwrap();
    assert!(results.iter().all(BatchOutcome::is_success));
    assert_eq!(results.iter().map(|o| o.events.len()).sum::<usize>(), 3000);
    for (partition, count) in [("0", 1000), ("1", 2000)] {
        let events = stored(&emulator, partition);
        assert_eq!(events.len(), count);
        // A new producer starts after the service's 0, one number per event.
        let sequences: Vec<i32> = events.iter().map(|e| e.1).collect();
        assert_eq!(sequences, (1..=count as i32).collect::<Vec<_>>());
        assert!(events.iter().all(|e| e.2 == events[0].2 && e.3 == 0));
        // Each outcome names the number of its first event.
        for o in results.iter().filter(|o| o.partition == partition) {
            let first = o.starting_sequence_number.expect("numbered");
            let body = String::from_utf8(o.events.bodies().next().unwrap().to_vec()).unwrap();
            let at = events.iter().position(|e| e.0 == body).unwrap();
            assert_eq!(events[at].1, first);
        }
    }
    // Each partition has its own producer group.
    assert_ne!(stored(&emulator, "0")[0].2, stored(&emulator, "1")[0].2);
}

#[tokio::test]
async fn a_retry_after_a_lost_acknowledgement_is_stored_once() {
    let emulator = emulator(1).await;
    // Stored, then the connection drops before the acknowledgement.
    emulator.add_fault("drop-connection,count=1".parse().unwrap());
    let (mut producer, mut outcomes) = idempotent_producer(&emulator, quick_retries()).await;
    producer.enqueue(EventData::new("once")).await.unwrap();
    let o = next(&mut outcomes).await;
    assert!(o.is_success(), "{:?}", o.result);
    producer.enqueue(EventData::new("twice")).await.unwrap();
    assert!(next(&mut outcomes).await.is_success());
    // Without idempotence the retry would store "once" twice (see producer.rs).
    assert_eq!(bodies(&emulator, "0"), ["once", "twice"]);
    let sequences: Vec<i32> = stored(&emulator, "0").iter().map(|e| e.1).collect();
    assert_eq!(sequences, [1, 2]);
}

#[tokio::test]
async fn a_batch_stored_before_its_final_failure_is_reported_published() {
    let emulator = emulator(1).await;
    emulator.add_fault("drop-connection,count=1".parse().unwrap());
    // No retries: the lost acknowledgement is the batch's final failure, and only the
    // service's state can tell that it was stored.
    let (mut producer, mut outcomes) = idempotent_producer(&emulator, RetryPolicy::none()).await;
    producer.enqueue(EventData::new("stored")).await.unwrap();
    let o = next(&mut outcomes).await;
    assert!(o.is_success(), "{:?}", o.result);
    assert_eq!(o.starting_sequence_number, Some(1));
    producer.enqueue(EventData::new("next")).await.unwrap();
    assert!(next(&mut outcomes).await.is_success());
    assert_eq!(
        numbered(&emulator, "0"),
        pairs(&[("stored", 1), ("next", 2)])
    );
}

#[tokio::test]
async fn a_rejected_batch_fails_and_leaves_no_gap_in_the_numbers() {
    let emulator = emulator(1).await;
    emulator.add_fault(
        "reject,condition=amqp:unauthorized-access,count=1"
            .parse()
            .unwrap(),
    );
    let (mut producer, mut outcomes) = idempotent_producer(&emulator, quick_retries()).await;
    producer.enqueue(EventData::new("refused")).await.unwrap();
    let o = next(&mut outcomes).await;
    assert_eq!(
        o.result.unwrap_err().condition(),
        Some("amqp:unauthorized-access")
    );
    // The refused numbers are not skipped: the next batch takes them, so the service
    // does not see a gap (which it would refuse as out of order).
    for body in ["a", "b"] {
        producer.enqueue(EventData::new(body)).await.unwrap();
        let o = next(&mut outcomes).await;
        assert!(o.is_success(), "{:?}", o.result);
    }
    assert_eq!(numbered(&emulator, "0"), pairs(&[("a", 1), ("b", 2)]));
}

#[tokio::test]
async fn throttled_batches_are_stored_in_order_with_consecutive_numbers() {
    let emulator = emulator(1).await;
    emulator.add_fault("throttle,every=3,count=4".parse().unwrap());
    let (mut producer, mut outcomes) = idempotent_producer(&emulator, quick_retries()).await;
    for i in 0..20 {
        producer
            .enqueue(EventData::new(format!("{i}")))
            .await
            .unwrap();
        assert!(next(&mut outcomes).await.is_success());
    }
    let events = stored(&emulator, "0");
    assert_eq!(
        events.iter().map(|e| e.0.clone()).collect::<Vec<_>>(),
        (0..20).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(
        events.iter().map(|e| e.1).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn keyed_events_are_numbered_on_their_hashed_partition() {
    let emulator = emulator(4).await;
    let (mut producer, mut outcomes) = idempotent_producer(&emulator, quick_retries()).await;
    for i in 0..200 {
        producer
            .enqueue(EventData::new(format!("{i}")).with_partition_key(format!("user-{}", i % 7)))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    while let Some(o) = outcomes.next().await {
        assert!(o.is_success(), "{:?}", o.result);
    }
    let mut total = 0;
    for p in ["0", "1", "2", "3"] {
        let events = stored(&emulator, p);
        total += events.len();
        let sequences: Vec<i32> = events.iter().map(|e| e.1).collect();
        assert_eq!(sequences, (1..=events.len() as i32).collect::<Vec<_>>());
    }
    assert_eq!(total, 200);
}

#[tokio::test]
async fn a_refusal_as_out_of_order_costs_a_new_producer_group_not_the_events() {
    let emulator = emulator(1).await;
    let (mut producer, mut outcomes) = idempotent_producer(&emulator, RetryPolicy::none()).await;
    producer.enqueue(EventData::new("first")).await.unwrap();
    assert!(next(&mut outcomes).await.is_success());
    // The service says the numbers are wrong (as after it lost its state): the batch
    // is tried again under a new producer group, even with no retries configured.
    emulator.add_fault(
        "reject,condition=com.microsoft:out-of-order-sequence,count=1"
            .parse()
            .unwrap(),
    );
    producer
        .enqueue(EventData::new("refused once"))
        .await
        .unwrap();
    let o = next(&mut outcomes).await;
    assert!(o.is_success(), "{:?}", o.result);
    assert_eq!(o.starting_sequence_number, Some(1));
    producer.enqueue(EventData::new("after")).await.unwrap();
    let o = next(&mut outcomes).await;
    assert!(o.is_success(), "{:?}", o.result);
    let events = stored(&emulator, "0");
    assert_eq!(events.len(), 3);
    assert_eq!((events[0].0.as_str(), events[0].1), ("first", 1));
    // A new group, numbered from the start.
    assert_eq!((events[1].0.as_str(), events[1].1), ("refused once", 1));
    assert_eq!((events[2].0.as_str(), events[2].1), ("after", 2));
    assert_ne!(events[0].2, events[1].2);
    assert_eq!(events[1].2, events[2].2);
}

#[tokio::test]
async fn idempotence_refuses_more_than_one_send_at_a_time_per_partition() {
    let e = Producer::builder()
        .idempotent_retries(true)
        .max_concurrent_sends_per_partition(2)
        .connection_string("Endpoint=sb://localhost;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true;EntityPath=h")
        .build()
        .await
        .unwrap_err();
    assert!(e.is_config(), "{e}");
    assert!(
        e.to_string().contains("max_concurrent_sends_per_partition"),
        "{e}"
    );
}

#[tokio::test]
async fn idempotence_refuses_a_custom_batch_service() {
    let service =
        tower::service_fn(|_: Batch| async move { Ok::<_, std::convert::Infallible>(()) });
    let e = Producer::builder()
        .idempotent_retries(true)
        .build_with_service(service, vec!["0".into()], 1 << 20)
        .unwrap_err();
    assert!(e.is_config(), "{e}");
}
