//! Store and forward: the spool's bound and its backlog. Events that find memory full
//! wait on disk, up to the spool's bound, and come back in order as memory frees;
//! a crash's backlog is loaded within the memory bound; closing, abandoning and
//! clearing cover what waits on disk.

mod common;

use std::time::Duration;

use common::spool::{all_outcomes, crash, keyed, scratch, spooled, stored_in_key_order};
use common::{bodies, emulator};
use eventhubs_emulator::Fault;
use futures_util::FutureExt as _;
use streaming_producer::{BatchOutcome, EventData};

#[tokio::test]
async fn a_full_spool_holds_events_back_and_loses_none() {
    let emulator = emulator(1).await;
    let dir = scratch("full");
    emulator.add_fault("stall".parse::<Fault>().unwrap());
    let (mut producer, outcomes) = spooled(&emulator, &dir)
        .max_spool_bytes(64 << 10)
        .build()
        .await
        .unwrap();
    let mut accepted = 0;
    loop {
        let event = EventData::new(vec![b'x'; 1000]);
        match producer.enqueue(event).now_or_never() {
            Some(result) => {
                result.unwrap();
                accepted += 1;
            }
            // Full: the enqueue waits for room on disk.
            None => break,
        }
        assert!(accepted < 1000, "a 64 KiB spool took {accepted} KB");
    }
    assert!((50..70).contains(&accepted), "{accepted}");
    emulator.clear_faults();
    // Room comes back as the stalled batch is retried and stored.
    producer.enqueue(EventData::new("last")).await.unwrap();
    producer.close().await.unwrap();
    let outcomes = all_outcomes(outcomes).await;
    assert!(outcomes.iter().all(BatchOutcome::is_success));
    assert_eq!(bodies(&emulator, "0").len(), accepted + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_ridden_out_on_disk_beyond_the_memory_bound() {
    let emulator = emulator(4).await;
    let dir = scratch("outage");
    emulator.add_fault("stall".parse::<Fault>().unwrap());
    let (mut producer, outcomes) = spooled(&emulator, &dir)
        .max_pending_events(20)
        .delivery_timeout(Duration::from_secs(120))
        .build()
        .await
        .unwrap();
    let reader = tokio::spawn(all_outcomes(outcomes));
    // The service takes nothing, memory holds 20 events: the rest wait on disk.
    for n in 0..2000 {
        producer.enqueue(keyed(n, 50)).await.unwrap();
    }
    assert_eq!(producer.total_pending(), 2000);
    assert!(
        emulator.connection_count() > 0 && bodies(&emulator, "0").is_empty(),
        "the outage holds"
    );
    emulator.clear_faults();
    // A flush waits for the events on disk too.
    producer.flush().await.unwrap();
    assert_eq!(stored_in_key_order(&emulator, 4), 2000);
    producer.close().await.unwrap();
    let outcomes = reader.await.unwrap();
    assert!(outcomes.iter().all(BatchOutcome::is_success));
    assert!(outcomes.iter().all(|o| !o.recovered));
    assert_eq!(outcomes.iter().map(|o| o.events.len()).sum::<usize>(), 2000);
    assert_eq!(stored_in_key_order(&emulator, 4), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_left_by_a_crash_is_loaded_within_the_memory_bound() {
    let emulator = std::sync::Arc::new(emulator(4).await);
    let dir = scratch("big-backlog");
    emulator.add_fault("stall".parse::<Fault>().unwrap());
    let victim = spooled(&emulator, &dir).max_pending_events(20);
    crash(move || async move {
        let (mut producer, _outcomes) = victim.build().await.unwrap();
        for n in 0..1000 {
            producer.enqueue(keyed(n, 30)).await.unwrap();
        }
        producer.wait_durable().await.unwrap();
    });
    emulator.clear_faults();
    let (mut producer, outcomes) = spooled(&emulator, &dir)
        .max_pending_events(20)
        .build()
        .await
        .unwrap();
    assert_eq!(producer.recovered_events(), 1000);
    let reader = tokio::spawn(all_outcomes(outcomes));
    for n in 1000..1100 {
        producer.enqueue(keyed(n, 30)).await.unwrap();
    }
    producer.close().await.unwrap();
    let outcomes = reader.await.unwrap();
    assert!(
        outcomes.iter().all(BatchOutcome::is_success),
        "{outcomes:?}"
    );
    let recovered: usize = outcomes
        .iter()
        .filter(|o| o.recovered)
        .map(|o| o.events.len())
        .sum();
    assert_eq!(recovered, 1000);
    // Each key's events in the order they were accepted, across the crash.
    assert_eq!(stored_in_key_order(&emulator, 4), 1100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_abandoning_and_clearing_hand_the_backlog_back() {
    let emulator = emulator(2).await;
    let dir = scratch("abandon");
    emulator.add_fault("stall".parse::<Fault>().unwrap());
    let (mut producer, outcomes) = spooled(&emulator, &dir)
        .max_pending_events(10)
        .try_timeout(Duration::from_millis(200))
        .delivery_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let reader = tokio::spawn(all_outcomes(outcomes));
    for n in 0..300 {
        let event = EventData::new(format!("{n}")).with_partition_id((n % 2).to_string());
        producer.enqueue(event).await.unwrap();
    }
    let pending_one = producer.pending("1");
    let cleared = producer
        .clear_partition(streaming_producer::Partition::id("1"))
        .await
        .unwrap();
    assert!(cleared > 100, "{cleared} of {pending_one}");
    producer.close_abandon().await.unwrap();
    let outcomes = reader.await.unwrap();
    // Every event has exactly one outcome; none was stored.
    assert_eq!(outcomes.iter().map(|o| o.events.len()).sum::<usize>(), 300);
    assert!(outcomes.iter().all(|o| !o.is_success()));
    let abandoned: usize = outcomes
        .iter()
        .filter(|o| o.is_abandoned())
        .map(|o| o.events.len())
        .sum();
    assert!(abandoned >= 280, "{abandoned}");
    assert!(bodies(&emulator, "0").is_empty() && bodies(&emulator, "1").is_empty());
}
