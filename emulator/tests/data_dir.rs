//! The data directory: what a restart finds, retention on disk, torn and damaged files.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use eventhubs_emulator::{
    Emulator, EmulatorBuilder, HubConfig, ManualClock, Retention, StartError, StoredEvent,
};
use serde_amqp::Value;

/// A directory of its own for a test, removed when the test is done with it.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("emulator-data-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The segment files of a partition, oldest first.
fn segments(dir: &Path, hub: &str, partition: &str) -> Vec<PathBuf> {
    let dir = dir
        .join("hubs")
        .join(hub)
        .join("partitions")
        .join(partition);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

async fn send(emulator: &eventhubs_emulator::EmulatorHandle, address: &str, events: &[Msg]) {
    let mut client = TestClient::authorized(emulator).await;
    let mut sender = client.sender(address).await;
    let outcome = sender.send(batch(events, None)).await.unwrap();
    assert!(outcome.is_accepted(), "{outcome:?}");
    sender.close().await.unwrap();
    client.connection.close().await.unwrap();
}

fn texts(prefix: &str, n: usize) -> Vec<Msg> {
    (0..n)
        .map(|i| event(&format!("{prefix}{i}"), None))
        .collect()
}

/// What a consumer sees of an event, without the body's encoding.
fn seen(e: &StoredEvent) -> (i64, u64, i64, Option<String>, Vec<u8>) {
    (
        e.sequence_number,
        e.offset,
        e.enqueued_time_ms,
        e.partition_key(),
        e.body(),
    )
}

fn on(dir: &Dir) -> EmulatorBuilder {
    Emulator::builder().data_dir(&dir.0)
}

#[tokio::test]
async fn a_restart_serves_the_hubs_events_and_numbers_it_had() {
    let dir = Dir::new("restart");
    let emulator = on(&dir)
        .hub_config(HubConfig::new("eh1", 3).consumer_group("audit"))
        .start()
        .await
        .unwrap();
    send(&emulator, "eh1/Partitions/1", &texts("a", 5)).await;
    let keyed: Vec<Msg> = (0..4)
        .map(|i| event(&format!("k{i}"), Some("customer-7")))
        .collect();
    send(&emulator, "eh1", &keyed).await;
    let before: Vec<Vec<_>> = (0..3)
        .map(|p| {
            emulator
                .events("eh1", &p.to_string())
                .unwrap()
                .iter()
                .map(seen)
                .collect()
        })
        .collect();
    let infos: Vec<_> = (0..3)
        .map(|p| emulator.partition_info("eh1", &p.to_string()).unwrap())
        .collect();
    assert_eq!(before.iter().map(Vec::len).sum::<usize>(), 9);
    emulator.shutdown().await;

    // Not configured again: the directory says what to serve.
    let again = on(&dir).start().await.unwrap();
    for p in 0..3 {
        let id = p.to_string();
        let after: Vec<_> = again.events("eh1", &id).unwrap().iter().map(seen).collect();
        assert_eq!(after, before[p], "partition {p}");
        assert_eq!(again.partition_info("eh1", &id).unwrap(), infos[p]);
    }
    assert!(
        before
            .iter()
            .flatten()
            .any(|e| e.3.as_deref() == Some("customer-7")),
        "partition keys come back"
    );

    // Numbering goes on where it stopped.
    send(&again, "eh1/Partitions/1", &texts("b", 2)).await;
    let events = again.events("eh1", "1").unwrap();
    let (old, new) = (&events[events.len() - 3], &events[events.len() - 2]);
    assert_eq!(seen(old), *before[1].last().unwrap());
    assert_eq!(new.sequence_number, old.sequence_number + 1);
    assert_eq!(new.offset, old.offset + old.raw.len() as u64);
    assert_eq!(new.body(), b"b0");

    // The declared consumer group is kept; an undeclared one is still refused.
    let mut client = TestClient::authorized(&again).await;
    let mut audit = client
        .receiver("eh1/ConsumerGroups/audit/Partitions/1", None)
        .await;
    let first = audit
        .recv::<fe2o3_amqp::types::messaging::Body<Value>>()
        .await
        .unwrap();
    audit.accept(&first).await.unwrap();
    let mut nope = client
        .receiver("eh1/ConsumerGroups/nope/Partitions/1", None)
        .await;
    let why = detach_condition_of_receiver(&mut nope).await;
    assert!(why.contains("NotFound"), "{why}");
    again.shutdown().await;
}

#[tokio::test]
async fn a_restart_keeps_idempotent_producers_where_they_were() {
    let dir = Dir::new("idempotent");
    let emulator = on(&dir).hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = idempotent_sender(
        &mut client,
        "p",
        "eh1/Partitions/0",
        &[("com.microsoft:producer-epoch", Value::Short(3))],
    )
    .await;
    let Some(Value::Long(id)) = announced(&sender, "com.microsoft:producer-id") else {
        panic!("no producer id");
    };
    // The group starts at 0, so its first event is numbered 1.
    let last = numbered(id, 3, 1, 4);
    assert!(sender.send(batch(&last, None)).await.unwrap().is_accepted());
    drop(sender);
    drop(client);
    emulator.shutdown().await;

    let again = on(&dir).start().await.unwrap();
    let mut client = TestClient::authorized(&again).await;
    let mut sender = idempotent_sender(
        &mut client,
        "p2",
        "eh1/Partitions/0",
        &[("com.microsoft:producer-id", Value::Long(id))],
    )
    .await;
    assert_eq!(
        announced(&sender, "com.microsoft:producer-epoch"),
        Some(Value::Short(3)),
        "the group's epoch"
    );
    assert_eq!(
        announced(&sender, "com.microsoft:producer-sequence-number"),
        Some(Value::Int(4)),
        "the group's last sequence number"
    );
    // The resend of the last batch before the restart is acknowledged, stored once.
    assert!(sender.send(batch(&last, None)).await.unwrap().is_accepted());
    assert_eq!(again.events("eh1", "0").unwrap().len(), 4);
    // A gap is refused; what follows on is stored.
    let gap = sender
        .send(batch(&numbered(id, 3, 9, 1), None))
        .await
        .unwrap();
    assert!(!gap.is_accepted(), "{gap:?}");
    let next = numbered(id, 3, 5, 2);
    assert!(sender.send(batch(&next, None)).await.unwrap().is_accepted());
    assert_eq!(again.events("eh1", "0").unwrap().len(), 6);
    // A lower epoch stays refused.
    let mut stale = idempotent_sender(
        &mut client,
        "stale",
        "eh1/Partitions/0",
        &[
            ("com.microsoft:producer-id", Value::Long(id)),
            ("com.microsoft:producer-epoch", Value::Short(2)),
        ],
    )
    .await;
    assert_eq!(
        detach_condition_of_sender(&mut stale).await,
        "com.microsoft:producer-epoch-stolen",
        "epoch 2 after epoch 3"
    );
    // A new producer group gets an id no group had before the restart.
    let mut other = TestClient::authorized(&again).await;
    let fresh = idempotent_sender(&mut other, "fresh", "eh1/Partitions/0", &[]).await;
    let Some(Value::Long(new_id)) = announced(&fresh, "com.microsoft:producer-id") else {
        panic!("no producer id");
    };
    assert!(new_id > id, "{new_id} after {id}");
    again.shutdown().await;
}

#[tokio::test]
async fn events_past_the_retention_time_go_and_so_do_their_files() {
    let dir = Dir::new("time");
    let clock = ManualClock::new(1_700_000_000_000);
    let emulator = on(&dir)
        .clock(clock.clone())
        .hub_config(HubConfig::new("eh1", 1).retention_time(Duration::from_secs(60)))
        .start()
        .await
        .unwrap();
    send(&emulator, "eh1/Partitions/0", &texts("old", 3)).await;
    clock.advance_ms(40_000);
    send(&emulator, "eh1/Partitions/0", &texts("new", 2)).await;
    assert_eq!(emulator.events("eh1", "0").unwrap().len(), 5);
    clock.advance_ms(30_000);
    // 70 s after the first three, 30 s after the last two.
    assert_eq!(
        bodies(&emulator.events("eh1", "0").unwrap()),
        ["new0", "new1"]
    );
    let info = emulator.partition_info("eh1", "0").unwrap();
    assert_eq!(
        (info.begin_sequence_number, info.last_sequence_number),
        (3, 4)
    );
    // The next publish starts a segment (the current one holds expired events), and
    // the one before goes once everything in it has.
    assert_eq!(segments(&dir.0, "eh1", "0").len(), 1);
    send(&emulator, "eh1/Partitions/0", &texts("newer", 1)).await;
    assert_eq!(segments(&dir.0, "eh1", "0").len(), 2);
    clock.advance_ms(31_000);
    assert_eq!(bodies(&emulator.events("eh1", "0").unwrap()), ["newer0"]);
    assert_eq!(
        segments(&dir.0, "eh1", "0").len(),
        1,
        "the old segment is deleted"
    );
    emulator.shutdown().await;

    // A restart an hour later finds nothing to serve, and numbers on.
    clock.advance_ms(3_600_000);
    let again = on(&dir).clock(clock.clone()).start().await.unwrap();
    assert!(again.events("eh1", "0").unwrap().is_empty());
    let info = again.partition_info("eh1", "0").unwrap();
    assert_eq!(
        (
            info.begin_sequence_number,
            info.last_sequence_number,
            info.is_empty
        ),
        (6, 5, true)
    );
    send(&again, "eh1/Partitions/0", &texts("later", 1)).await;
    assert_eq!(again.events("eh1", "0").unwrap()[0].sequence_number, 6);
    again.shutdown().await;
}

#[tokio::test]
async fn with_a_data_directory_events_are_kept_an_hour_by_default() {
    let dir = Dir::new("default-time");
    let clock = ManualClock::new(1_700_000_000_000);
    let emulator = on(&dir)
        .clock(clock.clone())
        .hub("eh1", 1)
        .start()
        .await
        .unwrap();
    send(&emulator, "eh1/Partitions/0", &texts("e", 1)).await;
    clock.advance_ms(3_600_000);
    assert_eq!(emulator.events("eh1", "0").unwrap().len(), 1, "an hour");
    clock.advance_ms(1);
    assert!(emulator.events("eh1", "0").unwrap().is_empty(), "past it");
    emulator.shutdown().await;
    let stored = eventhubs_emulator::stored_hubs(&dir.0).unwrap();
    assert_eq!(
        stored[0].retention_time_limit(),
        Some(eventhubs_emulator::DEFAULT_RETENTION_TIME)
    );
}

#[tokio::test]
async fn size_retention_deletes_old_segments_and_a_restart_keeps_the_same_events() {
    let dir = Dir::new("bytes");
    let hub = HubConfig::new("eh1", 1).retention(Retention::Bytes(300 << 10));
    let emulator = on(&dir).hub_config(hub.clone()).start().await.unwrap();
    let body = "x".repeat(10_000);
    for _ in 0..10 {
        let batch: Vec<Msg> = (0..10).map(|_| event(&body, None)).collect();
        send(&emulator, "eh1/Partitions/0", &batch).await;
    }
    let kept: Vec<_> = emulator
        .events("eh1", "0")
        .unwrap()
        .iter()
        .map(seen)
        .collect();
    assert!(kept.len() < 100 && kept.len() >= 29, "{} kept", kept.len());
    let on_disk: u64 = segments(&dir.0, "eh1", "0")
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    // A quarter of the retention per segment: at most the retention and two segments.
    let kept_bytes: usize = emulator
        .events("eh1", "0")
        .unwrap()
        .iter()
        .map(|e| e.raw.len())
        .sum();
    // A quarter of the retention per segment: at most what is kept and two segments.
    assert!(
        on_disk < kept_bytes as u64 + 2 * (75 << 10) + 20_000,
        "{on_disk} bytes on disk for {kept_bytes} kept"
    );
    assert!(on_disk >= kept_bytes as u64, "{on_disk} bytes on disk");
    emulator.shutdown().await;

    let again = on(&dir).hub_config(hub).start().await.unwrap();
    let after: Vec<_> = again.events("eh1", "0").unwrap().iter().map(seen).collect();
    assert_eq!(after, kept);
    again.shutdown().await;
}

/// Writes five events in two batches to partition 0 and stops; returns the newest
/// segment's path.
async fn two_batches(dir: &Dir) -> PathBuf {
    let emulator = on(dir).hub("eh1", 1).start().await.unwrap();
    send(&emulator, "eh1/Partitions/0", &texts("a", 3)).await;
    send(&emulator, "eh1/Partitions/0", &texts("b", 2)).await;
    emulator.shutdown().await;
    segments(&dir.0, "eh1", "0").pop().unwrap()
}

#[tokio::test]
async fn a_torn_last_write_is_cut_at_the_last_whole_record() {
    let dir = Dir::new("torn");
    let file = two_batches(&dir).await;
    let whole = std::fs::read(&file).unwrap();
    // The last batch's record, cut short in the middle.
    let cut = whole.len() - 7;
    std::fs::write(&file, &whole[..cut]).unwrap();
    let again = on(&dir).start().await.unwrap();
    assert_eq!(
        bodies(&again.events("eh1", "0").unwrap()),
        ["a0", "a1", "a2"]
    );
    send(&again, "eh1/Partitions/0", &texts("c", 1)).await;
    assert_eq!(again.events("eh1", "0").unwrap()[3].sequence_number, 3);
    again.shutdown().await;

    // Zeros where a write had not reached are torn too.
    let file = segments(&dir.0, "eh1", "0").pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(&[0; 100]);
    std::fs::write(&file, &bytes).unwrap();
    let again = on(&dir).start().await.unwrap();
    assert_eq!(
        bodies(&again.events("eh1", "0").unwrap()),
        ["a0", "a1", "a2", "c0"]
    );
    again.shutdown().await;
    assert_eq!(
        file.metadata().unwrap().len() as usize,
        len,
        "the zeros were cut"
    );
}

#[tokio::test]
async fn damage_before_whole_records_is_an_error_naming_the_file() {
    let dir = Dir::new("damaged");
    let file = two_batches(&dir).await;
    let mut bytes = std::fs::read(&file).unwrap();
    // A byte of the first batch's event ("a1"), with the second batch whole after it.
    let at = bytes.windows(2).position(|w| w == b"a1").unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let Err(StartError::Data(why)) = on(&dir).start().await else {
        panic!("a damaged file must stop the start");
    };
    assert!(why.contains(&file.display().to_string()), "{why}");
    assert!(why.contains("damaged at offset"), "{why}");
    assert!(why.contains("checksum"), "{why}");
    // Nothing was cut.
    assert_eq!(std::fs::read(&file).unwrap(), bytes);

    std::fs::write(dir.0.join("hubs/eh1/hub"), b"EHHUB01\nnonsense").unwrap();
    let Err(StartError::Data(why)) = on(&dir).start().await else {
        panic!("a damaged hub file must stop the start");
    };
    assert!(why.contains("hubs/eh1/hub is damaged"), "{why}");
}

#[tokio::test]
async fn one_emulator_at_a_time_serves_a_directory() {
    let dir = Dir::new("lock");
    let first = on(&dir).hub("eh1", 1).start().await.unwrap();
    let Err(StartError::Data(why)) = on(&dir).hub("eh1", 1).start().await else {
        panic!("the second must be refused");
    };
    assert!(why.contains("in use by another emulator"), "{why}");
    first.shutdown().await;
    on(&dir).start().await.unwrap().shutdown().await;
}

#[tokio::test]
async fn partitions_grow_across_a_restart_and_never_shrink() {
    let dir = Dir::new("grow");
    let emulator = on(&dir).hub("eh1", 2).start().await.unwrap();
    send(&emulator, "eh1/Partitions/1", &texts("a", 1)).await;
    assert_eq!(emulator.grow_partitions("eh1", 3), Some(3));
    send(&emulator, "eh1/Partitions/2", &texts("c", 1)).await;
    emulator.shutdown().await;

    let again = on(&dir).start().await.unwrap();
    assert_eq!(bodies(&again.events("eh1", "2").unwrap()), ["c0"]);
    again.shutdown().await;
    let Err(StartError::Data(why)) = on(&dir).hub("eh1", 2).start().await else {
        panic!("fewer partitions must be refused");
    };
    assert!(
        why.contains("has 3 partitions in the data directory"),
        "{why}"
    );
    let grown = on(&dir).hub("eh1", 4).start().await.unwrap();
    assert_eq!(bodies(&grown.events("eh1", "1").unwrap()), ["a0"]);
    assert!(grown.events("eh1", "3").unwrap().is_empty());
    grown.shutdown().await;
    assert_eq!(
        eventhubs_emulator::stored_hubs(&dir.0).unwrap()[0].partitions(),
        4
    );
}
