//! Closing and cancellation, against the in-process emulator over real AMQP: `close`
//! publishes everything pending, `close_abandon` hands it back, and a cancelled enqueue
//! or close leaves the producer consistent.

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use streaming_producer::{BatchOutcome, EventData};

mod common;
use common::{bodies, bounded, emulator, outcomes_for, producer};

#[tokio::test]
async fn close_publishes_everything_pending() {
    let emulator = emulator(3).await;
    let (mut producer, mut outcomes) = producer(&emulator, 3_600_000).await;
    for i in 0..100 {
        producer
            .enqueue(EventData::new(format!("c{i}")))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let results = outcomes_for(&mut outcomes, 100).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    assert!(
        outcomes.next().await.is_none(),
        "the stream ends after close"
    );
    let total: usize = (0..3)
        .map(|p| bodies(&emulator, &p.to_string()).len())
        .sum();
    assert_eq!(total, 100);
    let err = producer.enqueue(EventData::new("late")).await.unwrap_err();
    assert!(err.error().is_closed());
    assert_eq!(err.into_event().unwrap().body().as_ref(), b"late");
}

#[tokio::test]
async fn close_abandon_hands_unsent_events_back() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = producer(&emulator, 3_600_000).await;
    for i in 0..20 {
        producer
            .enqueue(EventData::new(format!("a{i}")))
            .await
            .unwrap();
    }
    producer.close_abandon().await.unwrap();
    let results = outcomes_for(&mut outcomes, 20).await;
    assert!(results.iter().all(BatchOutcome::is_abandoned));
    let mut returned: Vec<String> = results
        .iter()
        .flat_map(|o| {
            o.events
                .iter()
                .map(|e| String::from_utf8(e.body().to_vec()).unwrap())
        })
        .collect();
    returned.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    expected.sort();
    assert_eq!(returned, expected);
    assert!(bodies(&emulator, "0").is_empty() && bodies(&emulator, "1").is_empty());
}

#[tokio::test]
async fn a_cancelled_enqueue_accepts_nothing_and_a_cancelled_close_still_publishes() {
    let emulator = emulator(1).await;
    let (mut producer, mut outcomes) = bounded(&emulator, Duration::from_secs(3600), 1)
        .delivery_timeout(Duration::from_secs(7200))
        .build()
        .await
        .unwrap();
    producer.enqueue(EventData::new("accepted")).await.unwrap();
    // No room: the enqueue waits, and is dropped while it waits.
    assert!(producer
        .enqueue(EventData::new("never accepted"))
        .now_or_never()
        .is_none());
    assert_eq!(producer.total_pending(), 1);
    // A close polled once and dropped has closed the producer, and the shutdown goes on.
    assert!(producer.close().now_or_never().is_none());
    let e = producer
        .enqueue(EventData::new("too late"))
        .await
        .unwrap_err();
    assert!(e.error().is_closed(), "{}", e.error());
    let mut published = Vec::new();
    while let Some(outcome) = tokio::time::timeout(Duration::from_secs(10), outcomes.next())
        .await
        .expect("the shutdown publishes and ends the outcomes")
    {
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        published.extend(outcome.events.iter().map(|e| e.body().clone()));
    }
    assert_eq!(published, ["accepted"]);
    assert_eq!(bodies(&emulator, "0"), ["accepted"]);
}
