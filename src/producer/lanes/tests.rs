//! The lanes on their own: signals per batch, capacity, deadlines and close.

use std::collections::VecDeque;

use super::*;
use crate::codec;

fn shared(max_batch_bytes: usize) -> (Shared, tokio::sync::watch::Sender<bool>) {
    let (finished_tx, finished) = tokio::sync::watch::channel(false);
    let settings = LaneSettings {
        idempotent: false,
        lanes: 4,
        max_batch_bytes,
        spool: None,
        recovered: 0,
    };
    let shared = Shared::new(settings, Budget::new(100_000, 1 << 30), finished);
    (shared, finished_tx)
}

/// What the lanes told the driver.
#[derive(Debug)]
enum Told {
    Opened { generation: u64 },
    Sealed(Sealed),
}

/// An outbox that records what it is told, in order.
#[derive(Default)]
struct Recorder(Mutex<VecDeque<Told>>);

impl Recorder {
    fn next(&self) -> Option<Told> {
        self.0.lock().unwrap().pop_front()
    }
}

impl Outbox for Recorder {
    fn opened(&self, _partition: Index, generation: u64, _opened: Instant) {
        self.0
            .lock()
            .unwrap()
            .push_back(Told::Opened { generation });
    }

    fn sealed(&self, sealed: Sealed) {
        self.0.lock().unwrap().push_back(Told::Sealed(sealed));
    }
}

fn add(shared: &Shared, out: &Recorder, partition: Index, i: usize) {
    let event = EventData::new(format!("event {i:05}"));
    let encoded = codec::encode(&event, false);
    let cost = Batch::cost(&encoded);
    let slot = shared.budget.try_reserve().unwrap();
    let id = partition.to_string();
    let entry = Entry {
        event,
        encoded,
        cost,
        slot: Some(slot),
        receipt: false,
    };
    assert!(shared.append(out, partition, &id, entry).is_ok());
}

#[tokio::test]
async fn the_driver_hears_of_batches_not_of_events() {
    let (shared, _finished) = shared(1000);
    let out = Recorder::default();
    for i in 0..1000 {
        add(&shared, &out, Index(i % 2), i);
    }
    let (mut opened, mut sealed, mut events) = (0, 0, 0);
    // Sealed batches kept: their events are pending until their capacity is given back.
    let mut kept = Vec::new();
    while let Some(told) = out.next() {
        match told {
            Told::Opened { .. } => opened += 1,
            Told::Sealed(s) => {
                assert!(s.batch.size_in_bytes() <= 1000);
                for e in s.batch.events() {
                    let i: usize = std::str::from_utf8(&e.body()[6..])
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert_eq!(
                        Index(i % 2),
                        s.partition,
                        "event {i} in its partition's batch"
                    );
                }
                sealed += 1;
                events += s.batch.len();
                kept.push(s);
            }
        }
    }
    // 1000 events of 23 encoded bytes: about 40 per 1000-byte batch.
    assert!((20..=30).contains(&sealed), "{sealed} batches");
    assert_eq!(
        opened,
        sealed + 2,
        "each partition has one batch still open"
    );
    assert_eq!(shared.total_pending(2), 1000);
    assert_eq!(shared.pending(Index(0)) + shared.pending(Index(1)), 1000);
    let open = shared.take_all(2);
    let in_open: usize = open.iter().map(|s| s.batch.len()).sum();
    assert_eq!(
        events + in_open,
        1000,
        "every event is in exactly one batch"
    );
    drop(kept);
    assert_eq!(
        shared.total_pending(2),
        in_open,
        "the sealed batches' events settled"
    );
    drop(open);
    assert_eq!(shared.total_pending(2), 0);
}

#[tokio::test]
async fn capacity_comes_back_when_the_batch_is_dropped() {
    let (shared, _finished) = shared(1 << 20);
    let out = Recorder::default();
    for i in 0..10 {
        add(&shared, &out, Index(0), i);
    }
    assert_eq!(shared.budget.events.available_permits(), 100_000 - 10);
    let batch = shared.seal_if(Index(0), None).expect("open");
    assert_eq!(batch.batch.len(), 10);
    drop(batch);
    assert_eq!(shared.budget.events.available_permits(), 100_000);
    assert!(!shared.budget.bytes_full());
    assert_eq!(shared.budget.pending_bytes(), 0);
}

#[tokio::test]
async fn a_deadline_seals_only_the_batch_that_armed_it() {
    let (shared, _finished) = shared(1 << 20);
    let out = Recorder::default();
    add(&shared, &out, Index(1), 0);
    let Some(Told::Opened { generation }) = out.next() else {
        panic!("no opened signal")
    };
    // Flushed meanwhile; a new batch opens.
    assert!(shared.seal_if(Index(1), None).is_some());
    add(&shared, &out, Index(1), 1);
    assert!(
        shared.seal_if(Index(1), Some(generation)).is_none(),
        "not the batch it armed"
    );
    let Some(Told::Opened { generation }) = out.next() else {
        panic!("no opened signal")
    };
    assert_eq!(
        shared
            .seal_if(Index(1), Some(generation))
            .unwrap()
            .batch
            .len(),
        1
    );
}

#[tokio::test]
async fn an_event_after_close_is_handed_back() {
    let (shared, _finished) = shared(1 << 20);
    let out = Recorder::default();
    shared.closed.store(true, Ordering::SeqCst);
    let event = EventData::new("late");
    let encoded = codec::encode(&event, false);
    let slot = shared.budget.try_reserve().unwrap();
    let cost = Batch::cost(&encoded);
    let entry = Entry {
        event,
        encoded,
        cost,
        slot: Some(slot),
        receipt: false,
    };
    match shared.append(&out, Index(0), "0", entry) {
        Err((error, event)) => {
            assert!(error.is_closed());
            assert_eq!(event.body().as_ref(), b"late");
        }
        Ok(_) => panic!("accepted after close"),
    }
    assert_eq!(shared.budget.events.available_permits(), 100_000);
    assert_eq!(shared.total_pending(2), 0);
    assert!(out.next().is_none(), "the driver is told nothing");
}
