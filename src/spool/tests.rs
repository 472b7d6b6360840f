use std::path::PathBuf;
use std::time::Duration;

use streaming_producer_layers::batch::Stamp;

use super::*;

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
    let dir = std::env::temp_dir().join(format!("spool-unit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Scratch(dir)
}

fn options(dir: &std::path::Path) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_owned(),
        durability: Durability::Group,
        max_bytes: DEFAULT_MAX_SPOOL_BYTES,
    }
}

fn open(dir: &std::path::Path) -> (Spool, Recovered) {
    Spool::open(&options(dir), "sb://host/hub", false).unwrap()
}

fn bodies(recovered: &Recovered, partition: &str) -> Vec<Vec<u8>> {
    recovered
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .map(|p| p.events.iter().map(|e| e.encoded.clone()).collect())
        .unwrap_or_default()
}

fn segment_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn events_without_an_outcome_come_back_in_order_after_a_crash() {
    let dir = scratch("order");
    {
        let (spool, recovered) = open(&dir);
        assert_eq!(recovered.events(), 0);
        for i in 0..10u8 {
            let partition = if i.is_multiple_of(2) { "0" } else { "1" };
            spool.append(partition, i == 5, &[i; 5]).unwrap();
        }
        // Partition 0's first two have their outcome; so has partition 1's 2nd (out
        // of order).
        spool.done("0", &[(0, 2)]);
        spool.done("1", &[(1, 1)]);
        spool.durable(None).await.unwrap();
        // Dropped without a close: what a killed process leaves.
    }
    let (spool, recovered) = open(&dir);
    assert_eq!(bodies(&recovered, "0"), [[4u8; 5], [6; 5], [8; 5]]);
    assert_eq!(bodies(&recovered, "1"), [[1u8; 5], [5; 5], [7; 5], [9; 5]]);
    let one = &recovered.partitions[1];
    assert_eq!(
        one.events.iter().map(|e| e.index).collect::<Vec<_>>(),
        [0, 2, 3, 4]
    );
    assert!(one.events[1].pinned && !one.events[0].pinned);
    // New events follow the recovered ones' indexes.
    assert_eq!(spool.append("0", false, b"new").unwrap(), 5);
    spool.done("0", &[(2, 4)]);
    spool.done("1", &[(0, 1), (2, 3)]);
    spool.close(Duration::from_secs(10)).await;
    assert!(
        segment_files(&dir).is_empty(),
        "a spool whose events are all done is left empty: {:?}",
        segment_files(&dir)
    );
    drop(spool);
    let (_spool, recovered) = open(&dir);
    assert_eq!(recovered.events(), 0);
}

#[tokio::test]
async fn a_torn_write_at_the_end_is_cut_at_the_last_whole_record() {
    let dir = scratch("torn");
    {
        let (spool, _) = open(&dir);
        for i in 0..3u8 {
            spool.append("0", false, &[i; 100]).unwrap();
        }
        spool.durable(None).await.unwrap();
    }
    let newest = segment_files(&dir).pop().unwrap();
    let len = std::fs::metadata(&newest).unwrap().len();
    // The crash came in the middle of the third record.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap();
    file.set_len(len - 40).unwrap();
    drop(file);
    let (_spool, recovered) = open(&dir);
    assert_eq!(bodies(&recovered, "0"), [[0u8; 100], [1; 100]]);
    assert_eq!(
        std::fs::metadata(&newest).unwrap().len(),
        len - record::event_len("0", &[0; 100]) as u64,
        "the file is cut where the torn record began"
    );
}

#[tokio::test]
async fn a_flipped_bit_before_whole_records_is_an_error_naming_file_and_offset() {
    let dir = scratch("flip");
    {
        let (spool, _) = open(&dir);
        for i in 0..3u8 {
            spool.append("0", false, &[i; 100]).unwrap();
        }
        spool.durable(None).await.unwrap();
    }
    let newest = segment_files(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let second = bytes.len() - 2 * record::event_len("0", &[0; 100]);
    bytes[second + 50] ^= 0x10;
    std::fs::write(&newest, &bytes).unwrap();
    let error = Spool::open(&options(&dir), "sb://host/hub", false).unwrap_err();
    assert!(error.is_spool(), "{error}");
    let text = error.to_string();
    assert!(text.contains(&newest.display().to_string()), "{text}");
    assert!(text.contains(&format!("offset {second}")), "{text}");
    assert!(text.contains("checksum"), "{text}");
    // Nothing was cut: the damage is still there for a person to look at.
    assert_eq!(std::fs::read(&newest).unwrap(), bytes);
}

#[tokio::test]
async fn damage_in_an_older_segment_is_an_error_even_at_its_end() {
    let dir = scratch("older");
    let options = SpoolOptions {
        max_bytes: 64 << 10,
        ..options(&dir)
    };
    {
        let (spool, _) = Spool::open(&options, "sb://host/hub", false).unwrap();
        for i in 0..200u8 {
            spool.append("0", false, &[i; 100]).unwrap();
        }
        spool.durable(None).await.unwrap();
    }
    let files = segment_files(&dir);
    assert!(files.len() > 2, "{files:?}");
    let first = &files[0];
    let len = std::fs::metadata(first).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(first)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let error = Spool::open(&options, "sb://host/hub", false).unwrap_err();
    assert!(
        error.to_string().contains(&first.display().to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn a_second_producer_cannot_open_the_same_spool() {
    let dir = scratch("lock");
    let (_first, _) = open(&dir);
    let error = Spool::open(&options(&dir), "sb://host/hub", false).unwrap_err();
    assert!(error.is_spool());
    let text = error.to_string();
    assert!(text.contains("in use by another producer"), "{text}");
    assert!(text.contains(&std::process::id().to_string()), "{text}");
}

#[tokio::test]
async fn events_for_another_destination_are_not_replayed_there() {
    let dir = scratch("destination");
    {
        let (spool, _) = open(&dir);
        spool.append("0", false, b"x").unwrap();
        spool.durable(None).await.unwrap();
    }
    let error = Spool::open(&options(&dir), "sb://host/other", false).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("holds 1 events for sb://host/hub, not for sb://host/other"),
        "{text}"
    );
}

#[tokio::test]
async fn segments_are_deleted_oldest_first_once_their_events_are_done() {
    let dir = scratch("segments");
    let options = SpoolOptions {
        max_bytes: 64 << 10,
        ..options(&dir)
    };
    let (spool, _) = Spool::open(&options, "sb://host/hub", false).unwrap();
    for i in 0..400u32 {
        spool.append("0", false, &[i as u8; 100]).unwrap();
        spool.append("1", false, &[i as u8; 100]).unwrap();
    }
    spool.durable(None).await.unwrap();
    let many = segment_files(&dir).len();
    assert!(many > 8, "{many}");
    assert!(spool.full().unwrap(), "80 KiB of events in a 64 KiB spool");
    // Partition 1's events all done, partition 0's not: nothing can go.
    spool.done("1", &[(0, 400)]);
    spool.durable(None).await.unwrap();
    assert_eq!(segment_files(&dir).len(), many);
    spool.done("0", &[(0, 300)]);
    spool.durable(None).await.unwrap();
    let left = segment_files(&dir).len();
    assert!(left < many / 2, "{left} of {many}");
    assert!(!spool.full().unwrap());
    drop(spool);
    let (_spool, recovered) = Spool::open(&options, "sb://host/hub", false).unwrap();
    assert_eq!(bodies(&recovered, "0").len(), 100);
    assert_eq!(
        bodies(&recovered, "0")[0],
        [44u8; 100],
        "event 300 comes first"
    );
    assert!(bodies(&recovered, "1").is_empty());
}

#[tokio::test]
async fn numbering_is_logged_only_where_it_does_not_follow_on() {
    let dir = scratch("numbers");
    let stamp = |sequence| Stamp {
        sequence,
        producer_id: 42,
        epoch: 1,
    };
    {
        let (spool, _) = Spool::open(&options(&dir), "sb://host/hub", true).unwrap();
        for i in 0..6u8 {
            spool.append("0", false, &[i]).unwrap();
        }
        let first = spool
            .numbered("0", 0, stamp(100))
            .expect("a first numbering");
        spool.durable(Some(first)).await.unwrap();
        assert_eq!(spool.numbered("0", 2, stamp(102)), None, "follows on");
        spool.done("0", &[(0, 2)]);
        // The batch of events 2 and 3 certainly failed: its numbers go to the next.
        spool.done("0", &[(2, 2)]);
        assert!(spool.numbered("0", 4, stamp(102)).is_some());
        spool.durable(None).await.unwrap();
    }
    let (_spool, recovered) = Spool::open(&options(&dir), "sb://host/hub", true).unwrap();
    assert!(recovered.idempotent);
    let stamps: Vec<_> = recovered.partitions[0]
        .events
        .iter()
        .map(|e| (e.index, e.stamp.map(|s| s.sequence)))
        .collect();
    assert_eq!(stamps, [(4, Some(102)), (5, Some(103))]);
    assert_eq!(recovered.partitions[0].events[0].stamp, Some(stamp(102)));
}

#[tokio::test]
async fn a_spool_that_cannot_be_written_says_so_and_takes_no_more() {
    let dir = scratch("broken");
    let options = SpoolOptions {
        max_bytes: 64 << 10,
        ..options(&dir)
    };
    let (spool, _) = Spool::open(&options, "sb://host/hub", false).unwrap();
    spool.append("0", false, b"kept").unwrap();
    spool.durable(None).await.unwrap();
    // The directory goes away under the writer: the next segment cannot be made, as
    // on a full disk.
    std::fs::remove_dir_all(&dir).unwrap();
    for _ in 0..100 {
        spool.append("0", false, &[1u8; 100]).unwrap();
    }
    let error = spool.durable(None).await.unwrap_err();
    assert!(error.is_spool(), "{error}");
    assert!(
        error.to_string().contains("cannot write the spool"),
        "{error}"
    );
    let refused = spool.append("0", false, b"later").unwrap_err();
    assert!(refused.is_spool());
    assert!(spool.full().unwrap_err().is_spool());
}
