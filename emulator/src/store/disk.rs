//! The data directory: hubs, events and idempotent-producer state on disk, so that
//! they survive a restart and a crash.
//!
//! ```text
//! DIR/lock                                   held while an emulator serves DIR
//! DIR/hubs/<name>/hub                        the hub: partitions, groups, retention
//! DIR/hubs/<name>/partitions/<id>/<N>.log    a partition's segments
//! ```
//!
//! Files are written with the checksummed records of [`eventhubs_protocol::record`]. A
//! segment is named by the sequence number of its first event, and starts with the
//! partition's state at that point (next sequence number and offset, producer groups),
//! so the segments before it can be deleted once retention has dropped their events.
//! Each publish is one record written with one `write` before the publish is
//! acknowledged: an acknowledged event survives the process being killed. A record a
//! crash cut short at the end of the newest segment is cut off when the partition is
//! opened; damage anywhere else is an error naming the file and offset.
//!
//! Why not a storage crate: the log crates either sync on every commit or drop data
//! by age or size of their own choosing, and embedded databases store each value in a
//! B-tree or LSM tree; the emulator needs appends, and deleting whole segments as its
//! own retention (bytes, events or age, as the service counts them) drops events. The
//! producer's spool keeps its log the same way, on the same records.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use eventhubs_protocol::record::{self, Fields, RecordWriter};

use super::{Log, NewEvent, ProducerState};
use crate::config::{HubConfig, Retention};

/// The first bytes of a segment file.
const SEGMENT_MAGIC: &[u8; 8] = b"EHSEG01\n";
/// The first bytes of a hub file.
const HUB_MAGIC: &[u8; 8] = b"EHHUB01\n";

/// The largest record body: a batch of the largest message the emulator accepts
/// with a data directory, with room to spare. A length above it is damage.
const MAX_BODY: usize = 64 << 20;
/// The largest `max-message-size` the emulator accepts with a data directory.
pub(crate) const MAX_MESSAGE_SIZE: u64 = 32 << 20;

const HUB: u8 = 1;
const STATE: u8 = 2;
const BATCH: u8 = 3;
const PRODUCER: u8 = 4;

/// The retention time of a hub that sets none, when a data directory is used: an hour,
/// as Microsoft's emulator keeps events.
pub const DEFAULT_RETENTION_TIME: Duration = Duration::from_secs(3600);

/// An open data directory, locked for this emulator.
#[derive(Debug)]
pub(crate) struct DataDir {
    root: PathBuf,
    _lock: File,
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> String {
    format!("cannot {what} {}: {e}", path.display())
}

/// A hub's name as a directory name: letters, digits, `-` and `_` as they are, the
/// rest (`.` included, so no name is `.` or `..`) as `%XX`; lower-cased, as hub names
/// are case-insensitive.
fn dir_name(hub: &str) -> String {
    let mut out = String::new();
    for b in hub.to_ascii_lowercase().bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl DataDir {
    /// Creates the directory if needed and takes its lock, or says who holds it.
    pub(crate) fn open(root: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(root.join("hubs"))
            .map_err(|e| io_error(root, "create the data directory", e))?;
        use eventhubs_protocol::record::{lock_file, LockError};
        let path = root.join("lock");
        let file = lock_file(&path).map_err(|e| match e {
            LockError::Held { holder } => format!(
                "the data directory {} is in use by another emulator{}; one emulator \
                 serves a data directory at a time",
                root.display(),
                holder
                    .map(|h| format!(" (process {h})"))
                    .unwrap_or_default()
            ),
            LockError::Io(e) => io_error(&path, "lock", e),
        })?;
        Ok(Self {
            root: root.to_owned(),
            _lock: file,
        })
    }

    fn hub_dir(&self, hub: &str) -> PathBuf {
        self.root.join("hubs").join(dir_name(hub))
    }

    /// Writes a hub's file (whole, then renamed over the old one).
    pub(crate) fn save_hub(&self, hub: &HubConfig, created_at_ms: i64) -> Result<(), String> {
        let dir = self.hub_dir(&hub.name);
        std::fs::create_dir_all(dir.join("partitions")).map_err(|e| io_error(&dir, "create", e))?;
        let mut out = HUB_MAGIC.to_vec();
        let mut w = RecordWriter::begin(&mut out, HUB);
        w.str(&hub.name).u32(hub.partitions).i64(created_at_ms);
        match hub.retention {
            Retention::Events(n) => w.u8(0).u64(n as u64),
            Retention::Bytes(n) => w.u8(1).u64(n as u64),
        };
        match hub.retention_time {
            Some(t) => w.flag(true).u64(t.as_millis() as u64),
            None => w.flag(false),
        };
        w.u32(hub.consumer_groups.len() as u32);
        for g in &hub.consumer_groups {
            w.str(g);
        }
        w.end();
        let path = dir.join("hub");
        let new = dir.join("hub.new");
        std::fs::write(&new, &out)
            .and_then(|()| std::fs::rename(&new, &path))
            .map_err(|e| io_error(&path, "write", e))
    }

    /// Opens a partition's segments (creating the first if there is none) and reads
    /// them back.
    pub(super) fn open_partition(
        &self,
        hub: &str,
        partition: &str,
        segment_bytes: u64,
    ) -> Result<(PartitionFile, Log), String> {
        let dir = self.hub_dir(hub).join("partitions").join(partition);
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, "create", e))?;
        let numbers = segments(&dir)?;
        let mut log = Log::default();
        let count = numbers.len();
        let mut kept = Vec::with_capacity(count);
        for (i, number) in numbers.into_iter().enumerate() {
            if read_segment(&segment_path(&dir, number), i + 1 == count, &mut log)? {
                kept.push(number);
            }
        }
        // Appends go to a new segment, so that an old one holds only events from
        // before and can be deleted when they are. A newest segment with no events
        // (named by the next sequence number) is written over.
        let next = log.next_sequence.max(0) as u64;
        kept.retain(|&n| n != next);
        let mut file = PartitionFile {
            dir,
            current: None,
            segments: kept.into(),
            segment_bytes,
            buf: Vec::new(),
        };
        file.roll(&log)
            .map_err(|e| io_error(&file.dir, "start a segment in", e))?;
        Ok((file, log))
    }
}

/// Hubs as a data directory holds them: each as last configured, and when it was
/// created (milliseconds since the Unix epoch).
pub(crate) type StoredHubs = Vec<(HubConfig, i64)>;

/// The hubs a data directory holds (without taking its lock).
pub(crate) fn stored_hubs(root: &Path) -> Result<StoredHubs, String> {
    if root.exists() && !root.is_dir() {
        return Err(format!("{} is not a directory", root.display()));
    }
    let hubs = root.join("hubs");
    let entries = match std::fs::read_dir(&hubs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&hubs, "read", e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(&hubs, "read", e))?;
        let path = entry.path().join("hub");
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // A hub whose directory was made and whose file was not yet written: a
            // crash during its first start, with nothing in it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&path, "read", e)),
        };
        out.push(read_hub(&bytes).map_err(|why| {
            format!(
                "{} is damaged: {why}; it is not a hub file this emulator wrote",
                path.display()
            )
        })?);
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(out)
}

fn read_hub(bytes: &[u8]) -> Result<(HubConfig, i64), String> {
    let body = bytes
        .strip_prefix(HUB_MAGIC)
        .ok_or("it does not start as a hub file")?;
    let (kind, mut f, len) = record::split(body, MAX_BODY).map_err(|e| e.to_string())?;
    if kind != HUB || len != body.len() {
        return Err("it holds more or other than a hub record".into());
    }
    let parse = |f: &mut Fields<'_>| -> Option<(HubConfig, i64)> {
        let name = f.str()?.to_owned();
        let partitions = f.u32()?;
        let created_at = f.i64()?;
        let retention = match (f.u8()?, f.u64()? as usize) {
            (0, n) => Retention::Events(n),
            (1, n) => Retention::Bytes(n),
            _ => return None,
        };
        let retention_time = if f.flag()? {
            Some(Duration::from_millis(f.u64()?))
        } else {
            None
        };
        let mut hub = HubConfig::new(name, partitions).retention(retention);
        hub.retention_time = retention_time;
        for _ in 0..f.u32()? {
            hub = hub.consumer_group(f.str()?);
        }
        Some((hub, created_at))
    };
    let hub = parse(&mut f).ok_or("its fields do not parse")?;
    f.end().ok_or("its record has bytes left over")?;
    Ok(hub)
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.log"))
}

/// The segments of a partition directory, oldest first.
fn segments(dir: &Path) -> Result<Vec<u64>, String> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, "read", e))? {
        let entry = entry.map_err(|e| io_error(dir, "read", e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".log").and_then(|n| n.parse().ok()) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Reads one segment into `log`. In the newest segment a record cut short or damaged
/// at the very end of the file is a write a crash interrupted: the file is cut there.
/// Returns whether the segment holds a record (an empty newest segment is removed).
fn read_segment(path: &Path, newest: bool, log: &mut Log) -> Result<bool, String> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, "read", e))?;
    let damaged = |offset: usize, why: &dyn std::fmt::Display| {
        format!(
            "the data file {} is damaged at offset {offset}: {why}; this is not a write cut \
             short by a crash (whole records follow, or it is not the newest file). \
             Nothing was skipped: move the file (or the data directory) away to start \
             without it",
            path.display()
        )
    };
    if !bytes.starts_with(SEGMENT_MAGIC) {
        if newest && SEGMENT_MAGIC.starts_with(&bytes) {
            // Created, and the crash came before its first bytes were written.
            std::fs::remove_file(path).map_err(|e| io_error(path, "remove", e))?;
            return Ok(false);
        }
        return Err(damaged(0, &"it does not start as a segment file"));
    }
    let at = match record::read_all(&bytes, SEGMENT_MAGIC.len(), MAX_BODY, |kind, f| {
        apply(kind, f, log)
    }) {
        record::End::Whole => return Ok(true),
        record::End::Torn { at, bad } if newest => {
            tracing::warn!(
                file = %path.display(),
                offset = at,
                cut = bytes.len() - at,
                "cutting a torn write at the end of a partition's data ({bad})"
            );
            at
        }
        record::End::Torn { at, bad } | record::End::Damaged { at, bad } => {
            return Err(damaged(at, &bad))
        }
    };
    if at == SEGMENT_MAGIC.len() {
        // Not even its first record was whole.
        std::fs::remove_file(path).map_err(|e| io_error(path, "remove", e))?;
        return Ok(false);
    }
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(at as u64))
        .map_err(|e| io_error(path, "cut the torn end of", e))?;
    Ok(true)
}

fn write_producer(w: &mut RecordWriter<'_>, id: i64, state: &ProducerState) {
    w.i64(id).i16(state.epoch).i32(state.last_sequence);
    match state.last_batch_first {
        Some(first) => w.flag(true).i32(first),
        None => w.flag(false),
    };
}

fn read_producer(f: &mut Fields<'_>) -> Option<(i64, ProducerState)> {
    let id = f.i64()?;
    let epoch = f.i16()?;
    let last_sequence = f.i32()?;
    let last_batch_first = if f.flag()? { Some(f.i32()?) } else { None };
    Some((
        id,
        ProducerState {
            epoch,
            last_sequence,
            last_batch_first,
        },
    ))
}

/// Applies one record to the log being read back; `None` if its fields do not parse
/// or do not follow on from what came before.
fn apply(kind: u8, mut f: Fields<'_>, log: &mut Log) -> Option<()> {
    match kind {
        STATE => {
            log.next_sequence = f.i64()?;
            log.next_offset = f.u64()?;
            log.last_enqueued_time_ms = if f.flag()? { Some(f.i64()?) } else { None };
            let mut producers = HashMap::new();
            for _ in 0..f.u32()? {
                let (id, state) = read_producer(&mut f)?;
                producers.insert(id, state);
            }
            log.producers = producers;
            // Events before the state are those of older segments, which retention
            // may have deleted: keep only what follows on.
            if log.events.back().map(|e| e.sequence_number + 1) != Some(log.next_sequence) {
                log.events.clear();
                log.bytes = 0;
            }
        }
        BATCH => {
            let enqueued = f.i64()?;
            let first = f.i64()?;
            if first != log.next_sequence {
                return None;
            }
            if f.flag()? {
                let (id, state) = read_producer(&mut f)?;
                log.producers.insert(id, state);
            }
            for _ in 0..f.u32()? {
                let key = if f.flag()? {
                    Some(f.str()?.to_owned())
                } else {
                    None
                };
                let raw = f.bytes()?;
                log.push(
                    NewEvent {
                        raw: Bytes::copy_from_slice(raw),
                        partition_key: key,
                    },
                    enqueued,
                );
            }
            log.last_enqueued_time_ms = Some(enqueued);
        }
        PRODUCER => {
            let (id, state) = read_producer(&mut f)?;
            log.producers.insert(id, state);
        }
        _ => return None,
    }
    f.end()
}

/// The segment being appended to.
#[derive(Debug)]
struct Segment {
    number: u64,
    file: File,
    bytes: u64,
    /// Enqueued time of its first event, if it has one.
    oldest_ms: Option<i64>,
}

/// A partition's files, held in its log's lock.
#[derive(Debug)]
pub(crate) struct PartitionFile {
    dir: PathBuf,
    current: Option<Segment>,
    /// The older segments, oldest first.
    segments: VecDeque<u64>,
    /// A segment this large is followed by a new one.
    segment_bytes: u64,
    buf: Vec<u8>,
}

impl PartitionFile {
    /// Starts a new segment with the log's state as its first record.
    fn roll(&mut self, log: &Log) -> std::io::Result<()> {
        let number = log.next_sequence.max(0) as u64;
        let mut out = SEGMENT_MAGIC.to_vec();
        let mut w = RecordWriter::begin(&mut out, STATE);
        w.i64(log.next_sequence).u64(log.next_offset);
        match log.last_enqueued_time_ms {
            Some(t) => w.flag(true).i64(t),
            None => w.flag(false),
        };
        w.u32(log.producers.len() as u32);
        for (id, state) in &log.producers {
            write_producer(&mut w, *id, state);
        }
        w.end();
        let path = segment_path(&self.dir, number);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        file.write_all(&out)?;
        if let Some(old) = self.current.take() {
            if old.number != number {
                self.segments.push_back(old.number);
            }
        }
        self.current = Some(Segment {
            number,
            file,
            bytes: out.len() as u64,
            oldest_ms: None,
        });
        Ok(())
    }

    /// Writes a batch of events (and the producer state it leaves) before they are
    /// stored in memory. Starts a new segment first when the current one is full, or
    /// holds events older than the retention time (so that it can be deleted).
    pub(super) fn write_batch(
        &mut self,
        log: &Log,
        events: &[NewEvent],
        now_ms: i64,
        producer: Option<(i64, &ProducerState)>,
        max_age_ms: Option<i64>,
    ) -> std::io::Result<()> {
        // Only a segment with events is full or old.
        let roll = self.current.as_ref().is_none_or(|s| {
            s.oldest_ms.is_some_and(|oldest| {
                s.bytes >= self.segment_bytes
                    || max_age_ms.is_some_and(|age| now_ms.saturating_sub(oldest) > age)
            })
        });
        if roll {
            self.roll(log)?;
        }
        let mut out = std::mem::take(&mut self.buf);
        out.clear();
        let mut w = RecordWriter::begin(&mut out, BATCH);
        w.i64(now_ms).i64(log.next_sequence);
        match producer {
            Some((id, state)) => {
                w.flag(true);
                write_producer(&mut w, id, state);
            }
            None => {
                w.flag(false);
            }
        }
        w.u32(events.len() as u32);
        for e in events {
            match &e.partition_key {
                Some(k) => w.flag(true).str(k),
                None => w.flag(false),
            };
            w.bytes(&e.raw);
        }
        w.end();
        let written = self.append(&out);
        self.buf = out;
        written?;
        if let Some(s) = &mut self.current {
            s.oldest_ms.get_or_insert(now_ms);
        }
        Ok(())
    }

    /// Records a producer group's new state (an attach that set or raised its epoch).
    pub(super) fn write_producer(&mut self, id: i64, state: &ProducerState) -> std::io::Result<()> {
        let mut out = Vec::new();
        let mut w = RecordWriter::begin(&mut out, PRODUCER);
        write_producer(&mut w, id, state);
        w.end();
        self.append(&out)
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let segment = self
            .current
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no segment is open"))?;
        if let Err(e) = segment.file.write_all(bytes) {
            // A part may have been written: cut it, so that the next record follows
            // the last whole one (and is written there, not after a hole).
            let _ = segment.file.set_len(segment.bytes);
            let _ = segment.file.seek(std::io::SeekFrom::Start(segment.bytes));
            return Err(e);
        }
        segment.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Deletes the older segments whose events all come before `first_kept`.
    pub(super) fn drop_before(&mut self, first_kept: i64) {
        while !self.segments.is_empty() {
            let next = self
                .segments
                .get(1)
                .copied()
                .or(self.current.as_ref().map(|s| s.number));
            if next.is_none_or(|n| n as i64 > first_kept) {
                break;
            }
            let oldest = self.segments.pop_front().expect("checked above");
            let path = segment_path(&self.dir, oldest);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), "cannot delete a segment past retention: {e}");
            }
        }
    }
}

/// The segment size for a hub's retention: a quarter of its bytes, so that a
/// partition's files hold at most a quarter more than it retains, within 64 KiB and
/// 64 MiB.
pub(crate) fn segment_bytes(retention: Retention) -> u64 {
    match retention {
        Retention::Bytes(n) => (n as u64 / 4).clamp(64 << 10, 64 << 20),
        Retention::Events(_) => 16 << 20,
    }
}
