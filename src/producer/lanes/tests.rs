//! The lanes on their own: signals per batch, capacity, deadlines and close.

use super::*;
use crate::codec;
use crate::route::ServiceHash;

fn shared(max_batch_bytes: usize) -> (Shared, tokio::sync::watch::Sender<bool>) {
    let (finished_tx, finished) = tokio::sync::watch::channel(false);
    let shared = Shared::new(
        false,
        vec!["0".into(), "1".into()],
        4,
        Budget::new(100_000, 1 << 30),
        Arc::new(ServiceHash),
        Keyless::RoundRobin(RoundRobin::new()),
        max_batch_bytes,
        finished,
    );
    (shared, finished_tx)
}

fn add(shared: &Shared, signals: &mpsc::UnboundedSender<Signal>, partition: usize, i: usize) {
    let event = EventData::new(format!("event {i:05}"));
    let encoded = codec::encode(&event, false);
    let cost = Batch::cost(&encoded);
    let slot = shared.budget.try_reserve().unwrap();
    assert!(shared
        .append(signals, partition, event, encoded, cost, slot)
        .is_ok());
}

#[tokio::test]
async fn the_driver_hears_of_batches_not_of_events() {
    let (shared, _finished) = shared(1000);
    let (signals, mut rx) = mpsc::unbounded_channel();
    for i in 0..1000 {
        add(&shared, &signals, i % 2, i);
    }
    let (mut opened, mut sealed, mut events) = (0, 0, 0);
    while let Ok(signal) = rx.try_recv() {
        match signal {
            Signal::Opened { .. } => opened += 1,
            Signal::Sealed(s) => {
                assert!(s.batch.size_in_bytes() <= 1000);
                for e in s.batch.events() {
                    let i: usize = std::str::from_utf8(&e.body()[6..])
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert_eq!(i % 2, s.partition, "event {i} in its partition's batch");
                }
                sealed += 1;
                events += s.batch.len();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // 1000 events of 23 encoded bytes: about 40 per 1000-byte batch.
    assert!((20..=30).contains(&sealed), "{sealed} batches");
    assert_eq!(
        opened,
        sealed + 2,
        "each partition has one batch still open"
    );
    assert_eq!(shared.total_pending(), 1000);
    assert_eq!(shared.pending(0) + shared.pending(1), 1000);
    let open: usize = shared.take_all().iter().map(|s| s.batch.len()).sum();
    assert_eq!(events + open, 1000, "every event is in exactly one batch");
}

#[tokio::test]
async fn capacity_comes_back_when_the_batch_is_dropped() {
    let (shared, _finished) = shared(1 << 20);
    let (signals, _rx) = mpsc::unbounded_channel();
    for i in 0..10 {
        add(&shared, &signals, 0, i);
    }
    assert_eq!(shared.budget.events.available_permits(), 100_000 - 10);
    let batch = shared.seal_if(0, None).expect("open");
    assert_eq!(batch.batch.len(), 10);
    drop(batch);
    assert_eq!(shared.budget.events.available_permits(), 100_000);
    assert!(!shared.budget.bytes_full());
    assert_eq!(shared.budget.pending_bytes(), 0);
}

#[tokio::test]
async fn a_deadline_seals_only_the_batch_that_armed_it() {
    let (shared, _finished) = shared(1 << 20);
    let (signals, mut rx) = mpsc::unbounded_channel();
    add(&shared, &signals, 1, 0);
    let Ok(Signal::Opened { generation, .. }) = rx.try_recv() else {
        panic!("no opened signal")
    };
    // Flushed meanwhile; a new batch opens.
    assert!(shared.seal_if(1, None).is_some());
    add(&shared, &signals, 1, 1);
    assert!(
        shared.seal_if(1, Some(generation)).is_none(),
        "not the batch it armed"
    );
    let Ok(Signal::Opened { generation, .. }) = rx.try_recv() else {
        panic!("no opened signal")
    };
    assert_eq!(shared.seal_if(1, Some(generation)).unwrap().batch.len(), 1);
}

#[tokio::test]
async fn an_event_after_close_is_handed_back() {
    let (shared, _finished) = shared(1 << 20);
    let (signals, _rx) = mpsc::unbounded_channel();
    shared.closed.store(true, Ordering::SeqCst);
    let event = EventData::new("late");
    let encoded = codec::encode(&event, false);
    let slot = shared.budget.try_reserve().unwrap();
    let cost = Batch::cost(&encoded);
    match shared.append(&signals, 0, event, encoded, cost, slot) {
        Err(event) => assert_eq!(event.body().as_ref(), b"late"),
        Ok(()) => panic!("accepted after close"),
    }
    assert_eq!(shared.budget.events.available_permits(), 100_000);
    assert_eq!(shared.total_pending(), 0);
}
