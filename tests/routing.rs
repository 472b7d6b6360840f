//! Routing on virtual time, over a recording batch service (no network): keyless
//! events go to one partition at a time (sticky runs of a quarter of the pending bound by
//! default) or round robin, and a custom partitioner decides where keys go.

use std::time::Duration;

use futures_util::StreamExt;
use streaming_producer::{EventData, Producer};
use tokio::time::Instant;

mod recorder;
use recorder::{recorder, Log};

/// (partition, events) of every batch published so far, in order.
fn batches(log: &Log) -> Vec<(String, usize)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|b| (b.partition.clone(), b.events))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn sticky_routing_fills_one_partition_before_the_next() {
    let (service, log) = recorder();
    let (mut producer, _outcomes) = Producer::builder()
        .max_wait(Duration::from_secs(3600))
        .delivery_timeout(Duration::from_secs(7200))
        .sticky_routing(true)
        .build_with_service(service, vec!["0".into(), "1".into(), "2".into()], 10_000)
        .unwrap();
    for _ in 0..250 {
        producer
            .enqueue(EventData::new(vec![b'x'; 100]))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    // Each partition got full batches in turn: 90 events of 108 encoded bytes fill 10 kB.
    let per_batch = batches(&log);
    assert_eq!(
        per_batch,
        [
            ("0".to_owned(), 90),
            ("1".to_owned(), 90),
            ("2".to_owned(), 70)
        ],
        "{per_batch:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn by_default_keyless_events_go_in_runs_of_a_quarter_of_the_pending_bound() {
    let (service, log) = recorder();
    let partitions: Vec<String> = (0..8).map(|p| p.to_string()).collect();
    let (mut producer, mut outcomes) = Producer::builder()
        .max_pending_events(400)
        .max_wait(Duration::from_secs(3600))
        .delivery_timeout(Duration::from_secs(7200))
        .build_with_service(service, partitions, 1 << 20)
        .unwrap();
    let start = Instant::now();
    for i in 0..300 {
        producer
            .enqueue(EventData::new(format!("{i}")))
            .await
            .unwrap();
    }
    // The runs the router left are published at once, long before `max_wait`; the
    // third run stays open, as it may still grow.
    for expected in ["0", "1"] {
        let outcome = outcomes.next().await.unwrap();
        assert!(outcome.is_success());
        assert_eq!(
            (outcome.partition.as_str(), outcome.events.len()),
            (expected, 100)
        );
    }
    assert_eq!(
        batches(&log),
        [("0".to_owned(), 100), ("1".to_owned(), 100)]
    );
    assert!(
        log.lock().unwrap().iter().all(|b| b.at == start),
        "published without waiting"
    );
    // The stick moves on over every partition and wraps around. (Unread outcomes hold
    // their capacity, so they are read as they come.)
    let reader = tokio::spawn(async move { while outcomes.next().await.is_some() {} });
    for i in 0..600 {
        producer
            .enqueue(EventData::new(format!("{i}")))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    reader.await.unwrap();
    let log = log.lock().unwrap();
    // A run may go out in two batches when the producer is at its bound (what is open
    // is published rather than left waiting), but runs never interleave.
    let mut order: Vec<&str> = log.iter().map(|b| b.partition.as_str()).collect();
    order.dedup();
    assert_eq!(order, ["0", "1", "2", "3", "4", "5", "6", "7", "0"]);
    assert!(log.iter().all(|b| b.events <= 100));
    assert_eq!(log.iter().map(|b| b.events).sum::<usize>(), 900);
}

#[tokio::test(start_paused = true)]
async fn round_robin_routing_spreads_keyless_events_one_at_a_time() {
    let (service, log) = recorder();
    let (mut producer, _outcomes) = Producer::builder()
        .sticky_routing(false)
        .build_with_service(service, vec!["0".into(), "1".into(), "2".into()], 1 << 20)
        .unwrap();
    for i in 0..10 {
        producer
            .enqueue(EventData::new(format!("{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let mut per_partition = batches(&log);
    per_partition.sort();
    assert_eq!(
        per_partition,
        [
            ("0".to_owned(), 4),
            ("1".to_owned(), 3),
            ("2".to_owned(), 3)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_custom_partitioner_decides_where_keys_go() {
    let (service, log) = recorder();
    let (mut producer, _outcomes) = Producer::builder()
        .partitioner(|key: &str, n: usize| key.len() % n)
        .build_with_service(service, vec!["0".into(), "1".into(), "2".into()], 1 << 20)
        .unwrap();
    for key in ["a", "bb", "ccc", "dddd"] {
        producer
            .enqueue(EventData::new(key).with_partition_key(key))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let mut placed = batches(&log);
    placed.sort();
    assert_eq!(
        placed,
        [
            ("0".to_owned(), 1),
            ("1".to_owned(), 2),
            ("2".to_owned(), 1)
        ]
    );
}
