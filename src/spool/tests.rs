use std::path::PathBuf;
use std::time::Duration;

use streaming_producer_layers::batch::Stamp;

use super::backlog::{Fate, Item};
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

/// The backlog's events of `partition` (index, pinned, encoding), read as the loader
/// reads them, without taking them.
fn backlog(spool: &Spool, partition: &str) -> Vec<(u64, bool, Vec<u8>)> {
    spool
        .read_backlog(usize::MAX, usize::MAX)
        .unwrap()
        .into_iter()
        .filter_map(|item| match item {
            Item::Event(e) if e.partition == partition => Some(e),
            _ => None,
        })
        .filter(|e| spool.fate(&e.partition, e.index, e.recovered) != Fate::Done)
        .map(|e| (e.index, e.pinned, e.encoded))
        .collect()
}

fn bodies(spool: &Spool, partition: &str) -> Vec<Vec<u8>> {
    backlog(spool, partition).into_iter().map(|e| e.2).collect()
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
        assert_eq!(recovered.events, 0);
        for i in 0..10u8 {
            let partition = if i.is_multiple_of(2) { "0" } else { "1" };
            spool.append(partition, i == 5, &[i; 5], false).unwrap();
        }
        // Partition 0's first two have their outcome; so has partition 1's 2nd (out
        // of order).
        spool.done("0", &[(0, 2)]);
        spool.done("1", &[(1, 1)]);
        spool.durable(None).await.unwrap();
        // Dropped without a close: what a killed process leaves.
    }
    let (spool, recovered) = open(&dir);
    assert_eq!(bodies(&spool, "0"), [[4u8; 5], [6; 5], [8; 5]]);
    assert_eq!(bodies(&spool, "1"), [[1u8; 5], [5; 5], [7; 5], [9; 5]]);
    assert_eq!(recovered.events, 7);
    assert_eq!(spool.backlog(), 7);
    let one = backlog(&spool, "1");
    assert_eq!(one.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 2, 3, 4]);
    assert!(one[1].1 && !one[0].1, "pinned comes back");
    // New events follow the recovered ones' indexes.
    assert_eq!(spool.append("0", false, b"new", false).unwrap().0, 5);
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
    assert_eq!(recovered.events, 0);
}

#[tokio::test]
async fn a_torn_write_at_the_end_is_cut_at_the_last_whole_record() {
    let dir = scratch("torn");
    {
        let (spool, _) = open(&dir);
        for i in 0..3u8 {
            spool.append("0", false, &[i; 100], false).unwrap();
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
    let (spool, _) = open(&dir);
    assert_eq!(bodies(&spool, "0"), [[0u8; 100], [1; 100]]);
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
            spool.append("0", false, &[i; 100], false).unwrap();
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
            spool.append("0", false, &[i; 100], false).unwrap();
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
        spool.append("0", false, b"x", false).unwrap();
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
        spool.append("0", false, &[i as u8; 100], false).unwrap();
        spool.append("1", false, &[i as u8; 100], false).unwrap();
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
    let (spool, _) = Spool::open(&options, "sb://host/hub", false).unwrap();
    assert_eq!(bodies(&spool, "0").len(), 100);
    assert_eq!(bodies(&spool, "0")[0], [44u8; 100], "event 300 comes first");
    assert!(bodies(&spool, "1").is_empty());
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
            spool.append("0", false, &[i], false).unwrap();
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
    let (spool, recovered) = Spool::open(&options(&dir), "sb://host/hub", true).unwrap();
    assert!(recovered.idempotent);
    assert_eq!(recovered.numbered, [("0".to_owned(), stamp(102))]);
    // The service says it stored up to 102: event 4 (numbered 102) is reported as
    // stored, event 5 (103) is loaded.
    spool.resume("0", 42, 102);
    assert_eq!(spool.fate("0", 4, true), Fate::Stored(102));
    assert_eq!(spool.fate("0", 5, true), Fate::Load);
    // Another group: nothing was stored.
    spool.resume("0", 43, 200);
    assert_eq!(spool.fate("0", 4, true), Fate::Load);
}

#[tokio::test]
async fn events_spilled_while_memory_is_full_wait_in_the_backlog_in_order() {
    let dir = scratch("backlog");
    let (spool, _) = open(&dir);
    assert_eq!(
        spool.append("0", false, b"in memory", false).unwrap(),
        (0, false)
    );
    // Memory is full: this one goes to the backlog, and every later one with it.
    assert_eq!(spool.append("1", false, b"a", true).unwrap(), (0, true));
    assert_eq!(spool.append("0", false, b"b", false).unwrap(), (1, true));
    assert_eq!(spool.append("1", true, b"c", false).unwrap(), (1, true));
    assert_eq!((spool.backlog(), spool.backlog_of("1")), (3, 2));
    spool.durable(None).await.unwrap();
    let items = spool.read_backlog(2, usize::MAX).unwrap();
    let events: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Item::Event(e) => Some((e.partition.as_str(), e.encoded.as_slice(), e.recovered)),
            Item::Other { .. } => None,
        })
        .collect();
    assert_eq!(events, [("1", b"a".as_slice(), false), ("0", b"b", false)]);
    for item in items {
        match item {
            Item::Event(e) => spool.took(&e.partition, e.end),
            Item::Other { end } => spool.pass(end),
        }
    }
    assert_eq!(spool.backlog(), 1);
    // A cleared partition's backlog events are handed back when the loader gets to them.
    assert_eq!(spool.clear("1"), 1);
    let rest = spool.read_backlog(10, usize::MAX).unwrap();
    let Some(Item::Event(last)) = rest.into_iter().find(|i| matches!(i, Item::Event(_))) else {
        panic!("the last event")
    };
    assert_eq!(
        spool.fate(&last.partition, last.index, false),
        Fate::Cleared
    );
    spool.took(&last.partition, last.end);
    assert_eq!(spool.backlog(), 0);
    // No backlog: the next event goes to memory again.
    assert_eq!(spool.append("1", false, b"d", false).unwrap(), (2, false));
}

#[tokio::test]
async fn a_spool_that_cannot_be_written_says_so_and_takes_no_more() {
    let dir = scratch("broken");
    let options = SpoolOptions {
        max_bytes: 64 << 10,
        ..options(&dir)
    };
    let (spool, _) = Spool::open(&options, "sb://host/hub", false).unwrap();
    spool.append("0", false, b"kept", false).unwrap();
    spool.durable(None).await.unwrap();
    // The directory goes away under the writer: the next segment cannot be made, as
    // on a full disk.
    std::fs::remove_dir_all(&dir).unwrap();
    for _ in 0..100 {
        spool.append("0", false, &[1u8; 100], false).unwrap();
    }
    let error = spool.durable(None).await.unwrap_err();
    assert!(error.is_spool(), "{error}");
    assert!(
        error.to_string().contains("cannot write the spool"),
        "{error}"
    );
    let refused = spool.append("0", false, b"later", false).unwrap_err();
    assert!(refused.is_spool());
    assert!(spool.full().unwrap_err().is_spool());
}
