//! Batching on virtual time, over a recording batch service (no network): `max_wait`
//! is the age of the oldest event, and `forward` of a sparse stream still makes dense
//! batches because `poll_flush` is a hand-off; a full batch leaves at once; the pending
//! bounds (events and bytes) hold and refused events give back what they took; closing
//! never waits for outcomes to be read; user layers see every batch.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use streaming_producer::{Batch, EventData, Producer};
use tokio::time::Instant;

mod recorder;
use recorder::{recorder, slow_recorder, Published};

#[tokio::test(start_paused = true)]
async fn a_sparse_forwarded_stream_makes_batches_of_max_wait_worth_of_events() {
    let (service, log) = recorder();
    let (producer, mut outcomes) = Producer::builder()
        .max_wait(Duration::from_millis(250))
        .build_with_service(service, vec!["0".into()], 1 << 20)
        .unwrap();
    // One event every 10 ms for 2.5 s.
    let events = stream::unfold(0, |i| async move {
        if i == 250 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        Some((Ok(EventData::new(format!("e{i}"))), i + 1))
    });
    events.forward(producer).await.unwrap();
    let mut total = 0;
    while let Some(o) = outcomes.next().await {
        assert!(o.is_success());
        total += o.events.len();
    }
    assert_eq!(total, 250);
    let sizes: Vec<usize> = log.lock().unwrap().iter().map(|b| b.events).collect();
    // Every batch but the last (closed early by the end of the stream) holds the
    // events of one 250 ms window: 25, give or take one at the window's edges.
    let (last, full) = sizes.split_last().unwrap();
    assert!(full.len() >= 9, "{sizes:?}");
    assert!(full.iter().all(|n| (24..=26).contains(n)), "{sizes:?}");
    assert!(*last <= 26, "{sizes:?}");
}

#[tokio::test(start_paused = true)]
async fn max_wait_counts_from_the_oldest_event_not_from_the_last() {
    let (service, log) = recorder();
    let (mut producer, _outcomes) = Producer::builder()
        .max_wait(Duration::from_millis(100))
        .build_with_service(service, vec!["0".into()], 1 << 20)
        .unwrap();
    let start = Instant::now();
    // A steady trickle that never leaves a 100 ms gap must still be published at 100 ms.
    for i in 0..30 {
        producer
            .enqueue(EventData::new(format!("t{i}")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(9)).await;
    }
    let first = log.lock().unwrap()[0].clone();
    assert_eq!(first.at - start, Duration::from_millis(100));
    assert_eq!(first.events, 12, "events at 0, 9, ..., 99 ms");
}

#[tokio::test(start_paused = true)]
async fn batches_of_partitions_that_open_together_go_together_within_max_wait() {
    let (service, log) = recorder();
    let ids: Vec<String> = (0..4).map(|p| p.to_string()).collect();
    let (mut producer, mut outcomes) = Producer::builder()
        .max_wait(Duration::from_millis(100))
        .build_with_service(service, ids.clone(), 1 << 20)
        .unwrap();
    let start = Instant::now();
    // One event a millisecond, each partition in turn, for a second.
    let events = 1000;
    for i in 0..events {
        let event = EventData::new(format!("{i}")).with_partition_id(ids[i % 4].clone());
        producer.enqueue(event).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    producer.close().await.unwrap();
    // Each batch: its partition, and when its oldest event was enqueued.
    let mut oldest = Vec::new();
    while let Some(o) = outcomes.next().await {
        assert!(o.is_success());
        let first: u64 = std::str::from_utf8(o.events.bodies().next().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        oldest.push((o.partition.clone(), start + Duration::from_millis(first)));
    }
    let log = log.lock().unwrap();
    assert_eq!(log.iter().map(|b| b.events).sum::<usize>(), events);
    // Outcomes come in each partition's order, as the service saw the batches.
    let mut published = Vec::new();
    for id in &ids {
        let sent = log.iter().filter(|b| &b.partition == id);
        let opened = oldest.iter().filter(|(p, _)| p == id);
        for (b, (_, at)) in sent.zip(opened) {
            published.push((b.at, b.at - *at));
        }
    }
    assert_eq!(published.len(), log.len());
    // The last batches went when the producer closed; every other one went when its
    // oldest event had waited between three quarters of max_wait and max_wait.
    let closed = published.iter().map(|(at, _)| *at).max().unwrap();
    for (at, waited) in &published {
        if *at < closed {
            assert!(
                (Duration::from_millis(75)..=Duration::from_millis(100)).contains(waited),
                "waited {waited:?}"
            );
        }
    }
    // The four partitions' batches open within 4 ms of one another, so they go at the
    // same instants: one timer for all four, not one each.
    let mut instants: Vec<Instant> = published.iter().map(|(at, _)| *at).collect();
    instants.sort();
    instants.dedup();
    assert!(log.len() >= 36, "{} batches", log.len());
    assert!(
        instants.len() * 4 <= log.len() + 8,
        "{} batches went at {} instants",
        log.len(),
        instants.len()
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_leaves_at_once_and_fills_the_size_limit() {
    let (service, log) = recorder();
    let limit = 64 * 1024;
    let (mut producer, _outcomes) = Producer::builder()
        .max_wait(Duration::from_secs(3600))
        .delivery_timeout(Duration::from_secs(7200))
        .max_pending_events(10_000)
        .build_with_service(service, vec!["0".into()], limit)
        .unwrap();
    let start = Instant::now();
    for _ in 0..2000 {
        producer
            .enqueue(EventData::new(vec![b'x'; 100]))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let log = log.lock().unwrap();
    let (full, rest) = log.split_at(log.len() - 1);
    assert!(!full.is_empty());
    for Published { at, bytes, .. } in full {
        assert_eq!(*at, start, "full batches do not wait for max_wait");
        assert!(*bytes <= limit);
        assert!(*bytes * 100 >= limit * 95, "{bytes} of {limit} bytes");
    }
    let events: usize = log.iter().map(|b| b.events).sum();
    assert_eq!(events, 2000);
    assert!(rest[0].bytes <= limit);
}

#[tokio::test(start_paused = true)]
async fn refused_events_give_back_exactly_the_capacity_they_took() {
    let (service, _log) = recorder();
    let (mut producer, mut outcomes) = Producer::builder()
        .max_pending_events(2)
        .max_pending_bytes(1000)
        .build_with_service(service, vec!["0".into()], 1 << 20)
        .unwrap();
    // Many more refused events than the producer has room for: each must free its slot.
    for i in 0..50 {
        producer
            .enqueue(EventData::new(vec![b'z'; 600]).with_partition_id("nope"))
            .await
            .unwrap();
        let o = outcomes.next().await.unwrap();
        assert!(o.result.unwrap_err().is_unknown_partition(), "event {i}");
    }
    assert_eq!(producer.total_pending(), 0);
    producer.enqueue(EventData::new("fine")).await.unwrap();
    producer.flush().await.unwrap();
    assert!(outcomes.next().await.unwrap().is_success());
}

#[tokio::test(start_paused = true)]
async fn closing_never_waits_for_outcomes_to_be_read() {
    let (service, _log) = recorder();
    let (mut producer, mut outcomes) = Producer::builder()
        .max_pending_events(5000)
        // Room for one event per batch: 3000 batches, more than any fixed queue.
        .build_with_service(service, vec!["0".into()], 200)
        .unwrap();
    for i in 0..3000 {
        producer
            .enqueue(EventData::new(format!("{i:>100}")))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let mut events = 0;
    while let Some(o) = outcomes.next().await {
        assert!(o.is_success());
        events += o.events.len();
    }
    assert_eq!(events, 3000);
}

#[tokio::test(start_paused = true)]
async fn the_byte_budget_holds_and_unread_outcomes_count_against_it() {
    let (service, _log) = recorder();
    let (mut producer, mut outcomes) = Producer::builder()
        .max_pending_bytes(1000)
        .max_wait(Duration::from_millis(1))
        .build_with_service(service, vec!["0".into()], 1 << 20)
        .unwrap();
    producer
        .enqueue(EventData::new(vec![b'a'; 600]))
        .await
        .unwrap();
    producer
        .enqueue(EventData::new(vec![b'b'; 600]))
        .await
        .unwrap();
    producer.flush().await.unwrap();
    // 1200 bytes pending (published, outcome unread): over budget, no room.
    let mut other = producer.clone();
    let mut third = Box::pin(async move { other.enqueue(EventData::new("c")).await });
    assert!(futures_util::poll!(&mut third).is_pending());
    // Reading the outcome hands the bytes back and lets the third event in.
    let first = outcomes.next().await.unwrap();
    assert_eq!(first.events.len(), 2);
    third.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn closing_the_sink_twice_is_fine() {
    use futures_util::SinkExt;
    let (service, _log) = recorder();
    let (mut producer, _outcomes) = Producer::builder()
        .build_with_service(service, vec!["0".into()], 1 << 20)
        .unwrap();
    producer.send(EventData::new("x")).await.unwrap();
    SinkExt::close(&mut producer).await.unwrap();
    SinkExt::close(&mut producer).await.unwrap();
    let err = producer.send(EventData::new("late")).await.unwrap_err();
    assert!(err.error().is_closed());
}

#[tokio::test(start_paused = true)]
async fn user_layers_see_every_batch() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (service, log) = recorder();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let (mut producer, _outcomes) = Producer::builder()
        .layer(tower::util::MapRequestLayer::new(move |batch: Batch| {
            counter.fetch_add(batch.len(), Ordering::SeqCst);
            batch
        }))
        .build_with_service(service, vec!["0".into(), "1".into()], 1 << 20)
        .unwrap();
    for i in 0..10 {
        producer
            .enqueue(EventData::new(format!("l{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 10);
    assert_eq!(
        log.lock().unwrap().iter().map(|b| b.events).sum::<usize>(),
        10
    );
}

#[tokio::test(start_paused = true)]
async fn a_producer_at_its_bound_sends_useful_batches_and_never_waits_out_max_wait() {
    // Each send takes 10 ms, so sends are on their way while the producer is full.
    let (service, log) = slow_recorder(Duration::from_millis(10));
    let max_wait = Duration::from_secs(3600);
    let ids: Vec<String> = (0..4).map(|p| p.to_string()).collect();
    let (mut producer, outcomes) = Producer::builder()
        .max_wait(max_wait)
        .delivery_timeout(max_wait * 2)
        .max_pending_events(400)
        .build_with_service(service, ids, 1 << 20)
        .unwrap();
    let reader = tokio::spawn(count_successes(outcomes));
    let start = Instant::now();
    for i in 0..20_000 {
        producer
            .enqueue(EventData::new(format!("e{i}")))
            .await
            .unwrap();
    }
    let enqueued_in = start.elapsed();
    producer.close().await.unwrap();
    assert_eq!(reader.await.unwrap(), 20_000);
    // Out of capacity, the producer sends what it has instead of waiting for max_wait.
    assert!(enqueued_in < max_wait, "{enqueued_in:?}");
    // But not a stream of tiny batches: while sends are on their way, a batch goes
    // early only with at least half a fair share (400 / 4 / 2 = 50 events).
    let sizes: Vec<usize> = log.lock().unwrap().iter().map(|b| b.events).collect();
    let mean = 20_000 / sizes.len();
    assert!(
        mean >= 50,
        "mean {mean} of {} batches: {sizes:?}",
        sizes.len()
    );
}

/// A partition's batches reach the service in the order of their events, whether the
/// handle sealed a batch (full) or the driver did (on `max_wait`): on real time, with
/// batches that fill about as fast as `max_wait` runs out, the two race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitions_batches_go_in_order_whoever_sealed_them() {
    type Seen = Arc<std::sync::Mutex<Vec<(String, Vec<u64>)>>>;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let service = tower::service_fn(move |batch: Batch| {
        let numbers = batch
            .events()
            .bodies()
            .map(|b| std::str::from_utf8(b).unwrap().parse().unwrap())
            .collect();
        s.lock()
            .unwrap()
            .push((batch.partition().to_owned(), numbers));
        async { Ok::<_, std::convert::Infallible>(()) }
    });
    let ids: Vec<String> = (0..16).map(|p| p.to_string()).collect();
    let (mut producer, outcomes) = Producer::builder()
        .max_wait(Duration::from_millis(1))
        .max_pending_events(100_000)
        .build_with_service(service, ids.clone(), 2 << 10)
        .unwrap();
    let reader = tokio::spawn(count_successes(outcomes));
    let events = 1_000_000u64;
    for i in 0..events {
        let event = EventData::new(i.to_string()).with_partition_id(ids[i as usize % 16].clone());
        producer.enqueue(event).await.unwrap();
    }
    producer.close().await.unwrap();
    assert_eq!(reader.await.unwrap(), events as usize);
    let seen = seen.lock().unwrap();
    for id in &ids {
        let numbers: Vec<u64> = seen
            .iter()
            .filter(|(p, _)| p == id)
            .flat_map(|(_, n)| n.iter().copied())
            .collect();
        assert_eq!(numbers.len() as u64, events / 16);
        let out_of_order = numbers.windows(2).filter(|w| w[0] >= w[1]).count();
        assert_eq!(out_of_order, 0, "partition {id}: events out of order");
    }
}

/// Reads every outcome, each a success; how many events they held.
async fn count_successes(mut outcomes: streaming_producer::Outcomes) -> usize {
    let mut events = 0;
    while let Some(o) = outcomes.next().await {
        assert!(o.is_success());
        events += o.events.len();
    }
    events
}

/// A `max_wait` far beyond any instant the clock can name (with a `delivery_timeout`
/// longer still) means "until full or flushed", and nothing overflows on the way.
#[tokio::test(start_paused = true)]
async fn a_max_wait_past_the_end_of_time_waits_for_a_flush() {
    let (service, log) = recorder();
    let (mut producer, outcomes) = Producer::builder()
        .max_wait(Duration::MAX / 2)
        .delivery_timeout(Duration::MAX)
        .build_with_service(service, vec!["0".into(), "1".into()], 1 << 20)
        .unwrap();
    let reader = tokio::spawn(count_successes(outcomes));
    for i in 0..10 {
        let event = EventData::new(format!("{i}")).with_partition_id((i % 2).to_string());
        producer.enqueue(event).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(
        log.lock().unwrap().is_empty(),
        "nothing goes before a flush"
    );
    producer.flush().await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 2);
    producer.close().await.unwrap();
    assert_eq!(reader.await.unwrap(), 10);
}
