//! Store and forward against the in-process emulator over real AMQP: events a crash
//! left in the spool are published first by the next producer on it, reported as
//! recovered, and (with idempotent retries) stored exactly once.
//!
//! A crash here is a producer on a runtime of its own that is dropped mid-flight: its
//! tasks stop where they are and its connection goes, as when a process is killed
//! (what the spool's writer was handed still reaches the file, as a killed process's
//! writes are in the operating system). The kill -9 of a real process is in the CLI's
//! crash loop.

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use common::{bodies, emulator};
use eventhubs_emulator::{Emulator, EmulatorHandle, Fault};
use futures_util::{FutureExt as _, StreamExt as _};
use streaming_producer::{
    BatchOutcome, Durability, EventData, Outcomes, Producer, ProducerBuilder,
};

/// A fresh path under the system's temporary directory, removed (as a directory or
/// a file) when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("spool-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Scratch(dir)
}

fn spooled(emulator: &EmulatorHandle, dir: &std::path::Path) -> ProducerBuilder {
    Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .spool(dir)
        .max_wait(Duration::from_millis(5))
        .try_timeout(Duration::from_secs(2))
        .retry_policy(
            streaming_producer::RetryPolicy::default()
                .with_initial_delay(Duration::from_millis(20)),
        )
}

/// Runs `work` on a runtime of its own, then drops the runtime with whatever it
/// started still running: a crash of everything `work` built.
fn crash<W, F>(work: W) -> F::Output
where
    W: FnOnce() -> F + Send + 'static,
    F: Future,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let output = runtime.block_on(work());
        drop(runtime);
        output
    })
    .join()
    .unwrap()
}

async fn all_outcomes(outcomes: Outcomes) -> Vec<BatchOutcome> {
    outcomes.collect().await
}

fn outcome_bodies(outcomes: &[BatchOutcome], recovered: bool) -> Vec<String> {
    let mut all: Vec<String> = outcomes
        .iter()
        .filter(|o| o.recovered == recovered)
        .flat_map(|o| o.events.bodies())
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    all.sort();
    all
}

/// Waits until the emulator holds `n` events on `partition` (it stores them as the
/// transfers arrive).
async fn stored(emulator: &EmulatorHandle, partition: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while bodies(emulator, partition).len() < n {
        assert!(tokio::time::Instant::now() < deadline, "never stored {n}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_crash_left_are_published_first_and_reported_recovered() {
    for durability in [
        Durability::Group,
        Durability::Interval(Duration::from_millis(50)),
        Durability::Os,
    ] {
        let emulator = emulator(2).await;
        let dir = scratch(&format!("first-{durability:?}"));
        let builder = spooled(&emulator, &dir)
            .spool_durability(durability)
            // The victim's batches are still open when it dies.
            .max_wait(Duration::from_secs(3600))
            .delivery_timeout(Duration::from_secs(7200));
        crash(move || async move {
            let (mut producer, _outcomes) = builder.build().await.unwrap();
            for i in 0..10 {
                let event = EventData::new(format!("old-{i}"))
                    .with_partition_id((i % 2).to_string())
                    .with_message_id(format!("m-{i}"));
                producer.enqueue(event).await.unwrap();
            }
            producer.wait_durable().await.unwrap();
        });
        assert!(bodies(&emulator, "0").is_empty(), "{durability:?}");

        let (mut producer, outcomes) = spooled(&emulator, &dir)
            .spool_durability(durability)
            .build()
            .await
            .unwrap();
        for i in 0..4 {
            let event = EventData::new(format!("new-{i}")).with_partition_id((i % 2).to_string());
            producer.enqueue(event).await.unwrap();
        }
        producer.close().await.unwrap();
        let outcomes = all_outcomes(outcomes).await;
        assert!(outcomes.iter().all(BatchOutcome::is_success));
        let old: Vec<_> = (0..10).map(|i| format!("old-{i}")).collect();
        let mut expected = old.clone();
        expected.sort();
        assert_eq!(
            outcome_bodies(&outcomes, true),
            expected,
            "{durability:?} {outcomes:?}"
        );
        assert_eq!(outcome_bodies(&outcomes, false).len(), 4);
        // What the application matches recovered events by comes back with them.
        let first = outcomes.iter().find(|o| o.recovered).unwrap();
        let event = first.events.get(0).unwrap();
        assert!(event.message_id().is_some_and(|m| m.starts_with("m-")));
        assert_eq!(
            event.routing(),
            &streaming_producer::Routing::PartitionId(first.partition.clone())
        );
        // Each partition: the recovered events first, in their order, then the new.
        assert_eq!(
            bodies(&emulator, "0"),
            ["old-0", "old-2", "old-4", "old-6", "old-8", "new-0", "new-2"]
        );
        assert_eq!(
            bodies(&emulator, "1"),
            ["old-1", "old-3", "old-5", "old-7", "old-9", "new-1", "new-3"]
        );
        // A clean close leaves nothing to recover.
        let (producer, outcomes) = spooled(&emulator, &dir).build().await.unwrap();
        drop(producer);
        assert!(all_outcomes(outcomes).await.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_idempotent_retries_what_was_stored_before_the_crash_is_not_stored_again() {
    let emulator = std::sync::Arc::new(emulator(2).await);
    let dir = scratch("exactly-once");
    // Stored, but the verdict never comes back before the crash.
    emulator.add_fault("delay,ms=600000".parse::<Fault>().unwrap());
    let builder = spooled(&emulator, &dir).idempotent_retries(true);
    let accepted = crash({
        let emulator_events = emulator.clone();
        move || async move {
            let (mut producer, _outcomes) = builder.build().await.unwrap();
            for i in 0..40 {
                let event =
                    EventData::new(format!("e-{i:02}")).with_partition_id((i % 2).to_string());
                producer.enqueue(event).await.unwrap();
                if i == 1 {
                    // The first batch of each partition is on the wire (and stored)
                    // before the others are accepted: they wait their turn behind it.
                    stored(&emulator_events, "0", 1).await;
                    stored(&emulator_events, "1", 1).await;
                }
            }
            producer.wait_durable().await.unwrap();
            40
        }
    });
    assert_eq!(bodies(&emulator, "0"), ["e-00"]);
    assert_eq!(bodies(&emulator, "1"), ["e-01"]);
    emulator.clear_faults();

    let (mut producer, outcomes) = spooled(&emulator, &dir)
        .idempotent_retries(true)
        .build()
        .await
        .unwrap();
    producer.close().await.unwrap();
    let outcomes = all_outcomes(outcomes).await;
    assert!(
        outcomes.iter().all(|o| o.recovered && o.is_success()),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().map(|o| o.events.len()).sum::<usize>(),
        accepted
    );
    // The batches stored before the crash come back as stored, without a send.
    let already: Vec<_> = outcomes.iter().filter(|o| o.size_in_bytes == 0).collect();
    assert_eq!(already.len(), 2, "{outcomes:?}");
    for partition in ["0", "1"] {
        let expected: Vec<_> = (0..40)
            .filter(|i| (i % 2).to_string() == partition)
            .map(|i| format!("e-{i:02}"))
            .collect();
        assert_eq!(
            bodies(&emulator, partition),
            expected,
            "each once, in order"
        );
    }
}

#[tokio::test]
async fn a_second_producer_on_a_spool_in_use_is_refused() {
    let emulator = emulator(1).await;
    let dir = scratch("lock");
    let (mut first, _outcomes) = spooled(&emulator, &dir).build().await.unwrap();
    let error = spooled(&emulator, &dir).build().await.unwrap_err();
    assert!(error.is_spool(), "{error}");
    assert!(
        error.to_string().contains("in use by another producer"),
        "{error}"
    );
    first.close().await.unwrap();
    // Free again once the first is closed.
    let (mut second, _outcomes) = spooled(&emulator, &dir).build().await.unwrap();
    second.close().await.unwrap();
}

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

#[tokio::test]
async fn spool_options_are_checked() {
    let emulator = emulator(1).await;
    let cs = emulator.connection_string_for("eh1");
    let error = Producer::builder()
        .connection_string(&cs)
        .max_spool_bytes(1 << 20)
        .build()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("need a spool"), "{error}");
    let error = spooled(&emulator, &scratch("small"))
        .max_spool_bytes(1000)
        .build()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("at least 65536"), "{error}");
    let (producer, _outcomes) = Producer::builder()
        .connection_string(&cs)
        .build()
        .await
        .unwrap();
    assert!(producer.wait_durable().await.unwrap_err().is_config());
    // A spool directory that cannot be made: a file is in the way.
    let file = scratch("file");
    std::fs::write(&file, b"").unwrap();
    let error = spooled(&emulator, &file).build().await.unwrap_err();
    assert!(
        error.is_spool() && error.to_string().contains(&file.display().to_string()),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_a_broker_what_a_crash_left_is_published_and_a_vanished_address_fails() {
    let emulator = Emulator::builder()
        .key("spool", "pw")
        .hub("eh1", 2)
        .start()
        .await
        .unwrap();
    let url = format!("amqp://spool:pw@{}", emulator.addr());
    let dir = scratch("broker");
    let (zero, one) = ("eh1/Partitions/0", "eh1/Partitions/1");
    let builder = |addresses: &[&str]| {
        Producer::builder()
            .amqp_broker(&url, addresses.iter().copied())
            .spool(&*dir)
            .max_wait(Duration::from_millis(5))
    };
    let victim = builder(&[zero, one])
        .max_wait(Duration::from_secs(3600))
        .delivery_timeout(Duration::from_secs(7200));
    crash(move || async move {
        let (mut producer, _outcomes) = victim.build().await.unwrap();
        for i in 0..6 {
            let to = if i % 2 == 0 { zero } else { one };
            let event = EventData::new(format!("b-{i}")).with_partition_id(to);
            producer.enqueue(event).await.unwrap();
        }
        producer.wait_durable().await.unwrap();
    });
    // The next producer publishes to the first address only.
    let (mut producer, outcomes) = builder(&[zero]).build().await.unwrap();
    assert_eq!(producer.recovered_events(), 6);
    producer.close().await.unwrap();
    let outcomes = all_outcomes(outcomes).await;
    assert!(outcomes.iter().all(|o| o.recovered));
    let (stored, failed): (Vec<_>, Vec<_>) = outcomes.iter().partition(|o| o.is_success());
    assert_eq!(
        stored.iter().map(|o| o.events.len()).sum::<usize>(),
        3,
        "{outcomes:?}"
    );
    // An event that can no longer be published still gets its outcome.
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].partition, one);
    assert_eq!(failed[0].events.len(), 3);
    assert!(failed[0]
        .result
        .as_ref()
        .unwrap_err()
        .is_unknown_partition());
    assert_eq!(bodies(&emulator, "0"), ["b-0", "b-2", "b-4"]);
    assert!(bodies(&emulator, "1").is_empty());
}

/// Events keyed over `keys` keys, numbered in their body (`key:n`).
fn keyed(n: usize, keys: usize) -> EventData {
    let key = format!("k{}", n % keys);
    EventData::new(format!("{key}:{n}")).with_partition_key(key)
}

/// Every stored event's `(key, n)`, per partition in stored order: checks that each
/// key's events are in order and returns how many were stored.
fn stored_in_key_order(emulator: &EmulatorHandle, partitions: u32) -> usize {
    let mut stored = 0;
    for p in 0..partitions {
        let mut last: std::collections::HashMap<String, usize> = Default::default();
        for body in bodies(emulator, &p.to_string()) {
            let (key, n) = body.split_once(':').unwrap();
            let n: usize = n.parse().unwrap();
            if let Some(before) = last.insert(key.to_owned(), n) {
                assert!(before < n, "{key}: {n} after {before}");
            }
            stored += 1;
        }
    }
    stored
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
