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

use std::time::Duration;

use common::spool::{all_outcomes, crash, scratch, spooled};
use common::{bodies, emulator};
use eventhubs_emulator::{Emulator, EmulatorHandle, Fault};
use streaming_producer::{BatchOutcome, Durability, EventData, Producer};

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
