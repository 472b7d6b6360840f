//! The backlog: events in the log that are not in memory — accepted while the pending
//! bound in memory was full (up to the spool's own bound, so an outage is ridden out
//! on disk), or left by an earlier producer — read back in log order by the
//! producer's loader as memory frees.
//!
//! While there is a backlog every new event joins it, so each partition's events
//! reach the lanes in the order they were accepted. The loader reads records from the
//! cursor on (only what the writer has written), decides each event's fate
//! ([`Fate`]), and marks it taken under its lane's lock once it is in the lane, so an
//! event accepted after the backlog emptied always follows it.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::atomic::Ordering;

use streaming_producer_layers::batch::Stamp;

use super::record::{self, Record, MAGIC};
use super::writer::segment_path;
use super::Spool;
use crate::Error;

/// How much of the log one read takes.
const READ_AHEAD: u64 = 1 << 20;

/// A record the loader read from the backlog.
#[derive(Debug)]
pub(crate) enum Item {
    /// Not an event (a snapshot, a numbering, an outcome): the cursor moves past it.
    Other { end: u64 },
    /// An event.
    Event(Loaded),
}

/// An event read back from the log.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// Where the record ends in the log.
    pub(crate) end: u64,
    /// Appended by an earlier producer.
    pub(crate) recovered: bool,
    pub(crate) partition: String,
    pub(crate) index: u64,
    pub(crate) pinned: bool,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub(crate) accepted_ms: i64,
    pub(crate) encoded: Vec<u8>,
}

/// What becomes of an event read back from the backlog.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// It has its outcome already (a recovered event that was done): skip it.
    Done,
    /// Into its lane.
    Load,
    /// Recovered, and the service had stored it before the restart (its producer
    /// sequence number is given): reported as stored, not sent again.
    Stored(i32),
    /// Its partition was cleared while it was in the backlog: handed back as
    /// abandoned.
    Cleared,
}

impl Spool {
    /// How many events are in the backlog.
    pub(crate) fn backlog(&self) -> u64 {
        self.inner.lock().backlog
    }

    /// How many of `partition`'s events are in the backlog.
    pub(crate) fn backlog_of(&self, partition: &str) -> u64 {
        self.inner
            .lock()
            .parts
            .get(partition)
            .map_or(0, |p| p.backlog)
    }

    /// Resolves once there may be a backlog (at once if there is one), or when
    /// [`wake_loader`](Self::wake_loader) is called.
    pub(crate) async fn spilled(&self) {
        let notified = self.inner.spilled.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.backlog() > 0 {
            return;
        }
        notified.await;
    }

    /// Wakes whoever waits in [`spilled`](Self::spilled), to look again (at a close).
    pub(crate) fn wake_loader(&self) {
        self.inner.spilled.notify_one();
    }

    /// Told whenever the writer has written (or deleted) something: a loader that
    /// found nothing written yet to read waits on it.
    pub(crate) fn freed(&self) -> &tokio::sync::Notify {
        &self.inner.freed
    }

    /// Gives up the backlog (it cannot be read); returns how many events it held.
    pub(crate) fn give_up_backlog(&self) -> u64 {
        let mut books = self.inner.lock();
        let lost = books.backlog;
        books.backlog = 0;
        for part in books.parts.values_mut() {
            part.backlog = 0;
        }
        books.cursor = None;
        self.inner.cursor.send_replace(u64::MAX);
        lost
    }

    /// Resolves once the loader has taken (or passed) everything appended before the
    /// call.
    pub(crate) async fn loaded_past_now(&self) {
        let target = self.inner.lock().appended;
        let mut cursor = self.inner.cursor.subscribe();
        let _ = cursor.wait_for(|c| *c >= target).await;
    }

    /// Reads up to `max_events` events (and `max_bytes` of records) of the backlog
    /// from the cursor on, as far as the writer has written. Blocks on the disk.
    pub(crate) fn read_backlog(
        &self,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<Item>, Error> {
        let (cursor, recovered_end, segments) = {
            let books = self.inner.lock();
            let Some(cursor) = books.cursor else {
                return Ok(Vec::new());
            };
            let segments: Vec<(u64, u64, u64)> = books
                .segments
                .iter()
                .map(|s| (s.number, s.start, s.start + s.bytes - MAGIC.len() as u64))
                .filter(|&(_, _, end)| end > cursor)
                .collect();
            (cursor, books.recovered_end, segments)
        };
        let written = self.inner.written.load(Ordering::Acquire);
        let mut items = Vec::new();
        let (mut at, mut events, mut bytes) = (cursor, 0, 0);
        for (number, start, end) in segments {
            let until = end.min(written);
            if at >= until || events >= max_events || bytes >= max_bytes {
                break;
            }
            let path = segment_path(&self.inner.dir, number);
            let file = File::open(&path)
                .map_err(|e| Error::spool(format!("cannot read {}: {e}", path.display())))?;
            let offset = MAGIC.len() as u64 + (at - start);
            let read = |len: u64| -> Result<Vec<u8>, Error> {
                let mut buffer = vec![0; len as usize];
                let n = file
                    .read_at(&mut buffer, offset)
                    .map_err(|e| Error::spool(format!("cannot read {}: {e}", path.display())))?;
                buffer.truncate(n);
                Ok(buffer)
            };
            let mut buffer = read((until - at).min(READ_AHEAD))?;
            // A record larger than the read: read it whole.
            if let Some(head) = buffer.get(..4) {
                let len = record::HEADER as u64
                    + u64::from(u32::from_le_bytes(head.try_into().expect("4 bytes")));
                if len > buffer.len() as u64 && len <= until - at {
                    buffer = read(len)?;
                }
            }
            let mut taken = 0;
            while events < max_events && bytes < max_bytes {
                let rest = &buffer[taken..];
                if rest.is_empty() {
                    break;
                }
                let (record, len) = match record::read(rest) {
                    Ok(r) => r,
                    // The rest of the record is further on (read again next time).
                    Err(record::Bad::Truncated) => break,
                    Err(bad) => {
                        return Err(Error::spool(format!(
                            "the spool segment {} is damaged at offset {}: {bad}",
                            path.display(),
                            offset + taken as u64
                        )))
                    }
                };
                let end = at + taken as u64 + len as u64;
                items.push(match record {
                    Record::Event {
                        partition,
                        index,
                        pinned,
                        accepted_ms,
                        encoded,
                    } => {
                        events += 1;
                        Item::Event(Loaded {
                            end,
                            recovered: end <= recovered_end,
                            partition: partition.to_owned(),
                            index,
                            pinned,
                            accepted_ms,
                            encoded: encoded.to_vec(),
                        })
                    }
                    _ => Item::Other { end },
                });
                taken += len;
                bytes += len;
            }
            at += taken as u64;
            if at < until {
                // Stopped inside this segment: the next read starts there.
                break;
            }
        }
        Ok(items)
    }

    /// What becomes of a backlog event.
    pub(crate) fn fate(&self, partition: &str, index: u64, recovered: bool) -> Fate {
        let books = self.inner.lock();
        let Some(part) = books.parts.get(partition) else {
            return Fate::Load;
        };
        if part.is_done(index) {
            return Fate::Done;
        }
        if index < part.cleared {
            return Fate::Cleared;
        }
        if let (true, Some((producer_id, last)), Some(base)) = (recovered, part.resumed, part.base)
        {
            if base.index <= index {
                let stamp: Stamp = base.stamp_of(index);
                let behind = (i64::from(last) - i64::from(stamp.sequence)).rem_euclid(1 << 31);
                if stamp.producer_id == producer_id && behind < 1 << 30 {
                    return Fate::Stored(stamp.sequence);
                }
            }
        }
        Fate::Load
    }

    /// The cursor moves past a record that is not a backlog event.
    pub(crate) fn pass(&self, end: u64) {
        let mut books = self.inner.lock();
        self.advance(&mut books, end);
    }

    /// A backlog event of `partition` (its record ending at `end`) is in its lane or
    /// has its outcome; call it under the lane's lock for one put in a lane.
    pub(crate) fn took(&self, partition: &str, end: u64) {
        let mut books = self.inner.lock();
        books.backlog = books.backlog.saturating_sub(1);
        if let Some(part) = books.parts.get_mut(partition) {
            part.backlog = part.backlog.saturating_sub(1);
        }
        self.advance(&mut books, end);
    }

    fn advance(&self, books: &mut super::books::Books, end: u64) {
        if books.backlog == 0 {
            books.cursor = None;
            self.inner.cursor.send_replace(u64::MAX);
        } else {
            books.cursor = Some(end.max(books.cursor.unwrap_or(0)));
            self.inner.cursor.send_replace(end);
        }
    }

    /// Hands `partition`'s backlog back (as abandoned, when the loader reaches it);
    /// returns how many events it holds.
    pub(crate) fn clear(&self, partition: &str) -> u64 {
        let mut books = self.inner.lock();
        match books.parts.get_mut(partition) {
            Some(part) => {
                part.cleared = part.next;
                part.backlog
            }
            None => 0,
        }
    }

    /// After a restart with idempotent retries: the service resumed `partition`'s
    /// producer group `producer_id` and last stored number `last` for it.
    pub(crate) fn resume(&self, partition: &str, producer_id: i64, last: i32) {
        if let Some(part) = self.inner.lock().parts.get_mut(partition) {
            part.resumed = Some((producer_id, last));
        }
    }
}
