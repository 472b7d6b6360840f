//! Checking a run's outcomes against what was stored: the guarantees the matrix holds
//! the producer to, and the [`Tally`] its table prints.

use eventhubs_protocol::partition_key::partition_index;
use streaming_producer::BatchOutcome;

use crate::setup::{index_of, key, Setup, Stored};

#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) sent: usize,
    pub(crate) succeeded: usize,
    pub(crate) failed: usize,
    pub(crate) ambiguous: usize,
    pub(crate) stored: usize,
    pub(crate) duplicates: usize,
    pub(crate) lost: usize,
}

/// Checks the guarantees; `exactly_once` holds with idempotence unless the service
/// lost its state; `partition_counts` are the counts the hub had during the run.
pub(crate) fn check(
    setup: &Setup,
    outcomes: &[BatchOutcome],
    stores: &[Stored],
    exactly_once: bool,
    partition_counts: &[usize],
) -> Tally {
    let n = setup.events;
    let mut outcome_of: Vec<Option<&BatchOutcome>> = vec![None; n];
    for o in outcomes {
        for e in &o.events {
            let i = index_of(std::str::from_utf8(e.body()).unwrap());
            assert!(outcome_of[i].is_none(), "event {i} has two outcomes");
            outcome_of[i] = Some(o);
        }
    }
    let mut copies = vec![0usize; n];
    for store in stores {
        for (partition, bodies) in store {
            let mut last = None;
            for b in bodies {
                let i = index_of(b);
                copies[i] += 1;
                assert!(
                    partition_counts
                        .iter()
                        .any(|&c| partition_index(&key(i), c) == *partition),
                    "event {i} stored on partition {partition}, not where its key hashes"
                );
                // Order: a partition's events appear in enqueue order (a retried
                // batch may repeat events right after themselves).
                if copies[i] == 1 {
                    assert!(
                        last.is_none_or(|l| l < i),
                        "partition {partition}: event {i} stored after {last:?}"
                    );
                    last = Some(i);
                }
            }
        }
    }
    let mut t = Tally {
        sent: n,
        ..Tally::default()
    };
    for i in 0..n {
        let o = outcome_of[i].unwrap_or_else(|| panic!("event {i} has no outcome"));
        if copies[i] > 0 {
            t.stored += 1;
            t.duplicates += copies[i] - 1;
        }
        match &o.result {
            Ok(()) => {
                t.succeeded += 1;
                if copies[i] == 0 {
                    t.lost += 1;
                }
                if setup.idempotent && exactly_once {
                    assert!(
                        copies[i] <= 1,
                        "event {i} stored {} times with idempotence",
                        copies[i]
                    );
                }
            }
            Err(e) => {
                t.failed += 1;
                if e.is_ambiguous() {
                    t.ambiguous += 1;
                }
                assert!(
                    copies[i] == 0 || e.is_ambiguous(),
                    "event {i} is stored but reported failed without saying it may be: {e}"
                );
                if setup.idempotent && exactly_once {
                    assert!(copies[i] <= 1, "event {i} stored {} times", copies[i]);
                }
            }
        }
    }
    assert_eq!(t.lost, 0, "events reported published but not stored");
    t
}
