//! Opening a spool: its lock, then every segment read back in order, a torn tail cut
//! at the last whole record, and the events still without an outcome handed to the
//! producer to publish first.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::{Condvar, Mutex};

use streaming_producer_layers::batch::Stamp;
use tokio::sync::{watch, Notify};

use super::books::{Books, Part, Segment};
use eventhubs_protocol::record::End;

use super::record::{self, Base, Record, MAGIC};
use super::writer::segment_path;
use super::{Inner, Progress, SpoolOptions};
use crate::Error;

/// What a spool held when it was opened: its events without an outcome are the
/// producer's first backlog.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// How many events.
    pub(crate) events: usize,
    /// Whether its events were encoded for idempotent publishing.
    pub(crate) idempotent: bool,
    /// With idempotent numbering: each partition's first event's numbers, which tell
    /// the producer group to resume.
    pub(crate) numbered: Vec<(String, Stamp)>,
}

/// An event of the replay: the segment it is in.
struct Found {
    segment: u64,
}

#[derive(Default)]
struct Replayed {
    destination: Option<String>,
    idempotent: bool,
    parts: HashMap<String, (u64, Option<Base>)>,
    events: HashMap<String, BTreeMap<u64, Found>>,
}

impl Replayed {
    fn apply(&mut self, segment: u64, record: Record<'_>) {
        match record {
            Record::Snapshot {
                destination,
                idempotent,
                partitions,
            } => {
                self.destination = Some(destination.to_owned());
                self.idempotent = idempotent;
                for p in partitions {
                    if let Some(events) = self.events.get_mut(&p.partition) {
                        *events = events.split_off(&p.floor);
                    }
                    let entry = self.parts.entry(p.partition).or_default();
                    entry.0 = entry.0.max(p.next);
                    entry.1 = p.base;
                }
            }
            Record::Event {
                partition, index, ..
            } => {
                let entry = self.parts.entry(partition.to_owned()).or_default();
                entry.0 = entry.0.max(index + 1);
                self.events
                    .entry(partition.to_owned())
                    .or_default()
                    .insert(index, Found { segment });
            }
            Record::Done {
                partition,
                first,
                count,
            } => {
                if let Some(events) = self.events.get_mut(partition) {
                    let end = first + u64::from(count);
                    let mut later = events.split_off(&first);
                    let mut after = later.split_off(&end);
                    events.append(&mut after);
                }
            }
            Record::Base { partition, base } => {
                self.parts.entry(partition.to_owned()).or_default().1 = Some(base);
            }
        }
    }
}

fn io(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::spool(format!("cannot {what} {}: {e}", path.display()))
}

/// Takes the spool's lock, or says who holds it.
fn lock(dir: &Path) -> Result<File, Error> {
    use eventhubs_protocol::record::{lock_file, LockError};
    let path = dir.join("lock");
    lock_file(&path).map_err(|e| match e {
        LockError::Held { holder } => Error::spool(format!(
            "the spool in {} is in use by another producer{}; a spool serves one \
             producer at a time",
            dir.display(),
            holder
                .map(|h| format!(" (process {h})"))
                .unwrap_or_default()
        )),
        LockError::Io(e) => io(&path, "lock", e),
    })
}

/// The segment numbers in `dir`, in order.
fn segments(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, "read", e))? {
        let entry = entry.map_err(|e| io(dir, "read", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("segment-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Reads one segment into `replayed`. In the newest segment, a record cut short or
/// damaged at the very end of the file is a write the crash interrupted: the file is
/// cut there. Anywhere else damage is an error that names the file and offset.
fn read_segment(
    path: &Path,
    number: u64,
    newest: bool,
    replayed: &mut Replayed,
) -> Result<(), Error> {
    let bytes = std::fs::read(path).map_err(|e| io(path, "read", e))?;
    let damaged = |offset: usize, why: &dyn std::fmt::Display| {
        Error::spool(format!(
            "the spool segment {} is damaged at offset {offset}: {why}; the records after \
             it are intact, so this is not a write cut short by a crash. Nothing was \
             skipped: move the segment away to start without its events",
            path.display()
        ))
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        if newest && MAGIC.starts_with(&bytes) {
            // Created, and the crash came before its first bytes were written.
            tracing::warn!(segment = %path.display(), "removing an empty spool segment");
            std::fs::remove_file(path).map_err(|e| io(path, "remove", e))?;
            return Ok(());
        }
        return Err(Error::spool(format!(
            "{} is not a spool segment (it does not start as one)",
            path.display()
        )));
    }
    let at = match eventhubs_protocol::record::read_all(
        &bytes,
        MAGIC.len(),
        record::MAX_BODY,
        |kind, fields| {
            replayed.apply(number, record::parse(kind, fields)?);
            Some(())
        },
    ) {
        End::Whole => return Ok(()),
        End::Torn { at, bad } if newest => {
            tracing::warn!(
                segment = %path.display(),
                offset = at,
                cut = bytes.len() - at,
                "cutting a torn write at the end of the spool ({bad})"
            );
            at
        }
        End::Torn { at, bad } | End::Damaged { at, bad } => return Err(damaged(at, &bad)),
    };
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io(path, "open", e))?;
    file.set_len(at as u64)
        .and_then(|()| file.sync_all())
        .map_err(|e| io(path, "cut the torn end of", e))
}

pub(super) fn open(
    options: &SpoolOptions,
    destination: &str,
    idempotent: bool,
) -> Result<(Inner, Recovered), Error> {
    let dir = &options.dir;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, "create the spool directory", e))?;
    let lock = lock(dir)?;
    let numbers = segments(dir)?;
    let mut replayed = Replayed::default();
    for (i, &number) in numbers.iter().enumerate() {
        let newest = i + 1 == numbers.len();
        read_segment(&segment_path(dir, number), number, newest, &mut replayed)?;
    }
    let pending: usize = replayed.events.values().map(BTreeMap::len).sum();
    if pending > 0 {
        if let Some(theirs) = replayed
            .destination
            .as_deref()
            .filter(|d| *d != destination)
        {
            return Err(Error::spool(format!(
                "the spool in {} holds {pending} events for {theirs}, not for {destination}; \
                 open it with a producer for {theirs}, or give this one another spool",
                dir.display()
            )));
        }
    }
    // Segments and partitions as the replay left them.
    let mut live: BTreeMap<u64, u64> = numbers.iter().map(|n| (*n, 0)).collect();
    let mut parts: HashMap<String, Part> = HashMap::new();
    let mut recovered = Recovered {
        events: pending,
        idempotent: replayed.idempotent,
        numbered: Vec::new(),
    };
    let mut names: Vec<_> = replayed.parts.keys().cloned().collect();
    names.sort();
    for name in names {
        let (next, base) = replayed.parts[&name];
        let events = replayed.events.remove(&name).unwrap_or_default();
        let mut part = Part {
            next,
            floor: events.keys().next().copied().unwrap_or(next),
            base,
            backlog: events.len() as u64,
            ..Part::default()
        };
        if let Some(stamp) = events
            .keys()
            .find_map(|&i| base.filter(|b| b.index <= i).map(|b| b.stamp_of(i)))
        {
            recovered.numbered.push((name.clone(), stamp));
        }
        let mut expected = part.floor;
        for (index, found) in &events {
            if *index > expected {
                part.done.insert(expected, *index);
            }
            expected = index + 1;
            *live.entry(found.segment).or_default() += 1;
            if part.runs.back().is_none_or(|r| r.1 != found.segment) {
                part.runs.push_back((*index, found.segment));
            }
        }
        if expected < next && !events.is_empty() {
            part.done.insert(expected, next);
        }
        parts.insert(name, part);
    }
    // Segments whose events are all done go, oldest first; a later one with done
    // events only stays while an older one is kept (its done records may be what
    // says the older one's events are done). The kept ones are placed in the log's
    // positions one after the other.
    let mut segments = VecDeque::new();
    let mut keep = false;
    let mut appended = 0;
    for (number, live) in &live {
        keep |= *live > 0;
        let path = segment_path(dir, *number);
        if keep {
            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            segments.push_back(Segment {
                number: *number,
                bytes,
                live: *live,
                start: appended,
            });
            appended += bytes.saturating_sub(MAGIC.len() as u64);
        } else {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path, "remove", e)),
            }
        }
    }
    let next_segment = numbers.last().map_or(1, |n| n + 1);
    let segment_bytes = (options.max_bytes / 8).clamp(4 << 10, 16 << 20);
    let total = segments.iter().map(|s| s.bytes).sum();
    let mut books = Books {
        destination: destination.to_owned(),
        idempotent,
        parts,
        segments,
        segment_bytes,
        total,
        appended,
        chunks: VecDeque::new(),
        delete: Vec::new(),
        urgent: false,
        writer_idle: false,
        closing: false,
        broken: None,
        backlog: pending as u64,
        cursor: (pending > 0).then_some(0),
        recovered_end: appended,
    };
    books.start_segment(next_segment);
    let inner = Inner {
        dir: dir.clone(),
        durability: options.durability,
        max_bytes: options.max_bytes,
        books: Mutex::new(books),
        work: Condvar::new(),
        progress: watch::Sender::new(Progress {
            durable: appended,
            ..Progress::default()
        }),
        freed: Notify::new(),
        written: std::sync::atomic::AtomicU64::new(appended),
        spilled: Notify::new(),
        cursor: watch::Sender::new(if pending > 0 { 0 } else { u64::MAX }),
        lock_file: Mutex::new(Some(lock)),
    };
    Ok((inner, recovered))
}
