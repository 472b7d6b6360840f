//! Store and forward: the spool, a log on disk of the events the producer accepted
//! and has not yet reported, so that they survive the process.
//!
//! An event is appended to the log as it is accepted, under its partition's lane lock
//! (so the log holds each partition's events in the order they are published), and
//! becomes durable when the writer thread syncs the log as the [`Durability`] policy
//! says. Once the event's outcome is final its event is marked done in the log, and a
//! segment whose events are all done is deleted, oldest first. A producer built on a
//! spool that holds events publishes them before anything new on their partitions.
//!
//! With idempotent retries, the numbers each partition's batches were published with
//! are logged with the events (a base record whenever the numbering does not simply
//! follow on), so a restart knows the producer group and the numbers of every
//! spooled event, asks the service how far that group got, and resends only the rest
//! under the same numbers.
//!
//! Why a log of our own: the crates that offer a log or store on disk either sync on
//! every commit (okaywal, redb), drop data by segment age or size rather than when
//! each event is done (walcraft, queue-file), or are a whole LSM tree with background
//! compaction threads and a value written several times (fjall), for records that
//! live a few milliseconds. The spool needs only appends, group commit, and deleting
//! segments whose events are all done.
//!
//! Files: `record` (the records on disk), `books` (what is kept in memory of the log),
//! `writer` (the thread that writes and syncs), `replay` (opening and recovery).

mod backlog;
mod books;
mod record;
mod replay;
#[cfg(test)]
mod tests;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use streaming_producer_layers::batch::Stamp;
use tokio::sync::{watch, Notify};

use crate::Error;
pub(crate) use backlog::{Fate, Item, Loaded};
use books::Books;
pub(crate) use replay::Recovered;

/// When the spool's writes are made durable: synced to the disk with `fdatasync`
/// (so they survive a power cut), or only handed to the operating system (they
/// survive the process being killed, not the machine stopping).
///
/// Appending an event never waits for the disk whatever the policy: the writer is a
/// thread of its own. [`Producer::wait_durable`](crate::Producer::wait_durable) waits
/// until what was accepted before it is durable as the policy defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Group commit: the writer writes what was appended and syncs it, then does the
    /// same with whatever was appended meanwhile. One sync covers every event of the
    /// group, so the busier the producer the more events each sync covers. Durable
    /// means synced. The default.
    #[default]
    Group,
    /// Writes as events come and syncs at most this often (Kafka's `flush.ms`,
    /// Vector's disk buffer): up to this much of the newest events can be lost to a
    /// power cut. Durable means synced.
    Interval(Duration),
    /// Writes as events come and never syncs: the operating system writes them back
    /// when it chooses. Durable means handed to the operating system, which survives
    /// the process being killed but not a power cut or a kernel crash.
    Os,
}

/// How the builder configures a spool.
#[derive(Debug, Clone)]
pub(crate) struct SpoolOptions {
    pub(crate) dir: PathBuf,
    pub(crate) durability: Durability,
    pub(crate) max_bytes: u64,
}

/// How far appends may run ahead of the writer before accepting waits: a disk slower
/// than the network would otherwise leave appended records piling up in memory.
const MAX_UNWRITTEN: u64 = 64 << 20;

/// The default bound on a spool's size on disk.
pub(crate) const DEFAULT_MAX_SPOOL_BYTES: u64 = 1 << 30;

/// Where the writer stands, for those who wait on it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// Bytes of the log that are durable (see [`Books::appended`]).
    durable: u64,
    broken: Option<Arc<str>>,
    /// The writer has stopped after a close.
    closed: bool,
}

pub(crate) struct Inner {
    dir: PathBuf,
    durability: Durability,
    max_bytes: u64,
    books: Mutex<Books>,
    /// Wakes the writer.
    work: Condvar,
    progress: watch::Sender<Progress>,
    /// Told when segments are deleted (room on disk), records are written, or the
    /// writer fails.
    freed: Notify,
    /// How far the writer has written the log (as [`Books::appended`] counts it).
    written: std::sync::atomic::AtomicU64,
    /// Told when an event joins the backlog.
    spilled: Notify,
    /// Where the loader's cursor is (`u64::MAX` without a backlog).
    cursor: watch::Sender<u64>,
    /// Held until the writer stops after a close (or the spool goes): a second
    /// producer on the directory is refused meanwhile.
    lock_file: Mutex<Option<std::fs::File>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The spool of a producer: shared by its lanes (appends), its batches (numbering),
/// its driver (outcomes) and its handles (waits).
#[derive(Clone)]
pub(crate) struct Spool {
    /// Dropped first: the last handle stops the writer before the lock goes.
    _writer: Arc<WriterThread>,
    inner: Arc<Inner>,
}

/// The writer thread, stopped (after writing what is left) when the last handle of
/// the spool goes, so that the spool's lock is free again once it has gone.
struct WriterThread {
    inner: Arc<Inner>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        {
            let mut books = self.inner.lock();
            books.closing = true;
            books.writer_idle = false;
            self.inner.work.notify_one();
        }
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.inner.dir)
            .field("durability", &self.inner.durability)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (or creates) the spool in `options.dir` for a producer publishing to
    /// `destination`, replays it, and starts its writer. Blocks on the disk.
    pub(crate) fn open(
        options: &SpoolOptions,
        destination: &str,
        idempotent: bool,
    ) -> Result<(Self, Recovered), Error> {
        let (inner, recovered) = replay::open(options, destination, idempotent)?;
        let inner = Arc::new(inner);
        let writer = inner.clone();
        let thread = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer::run(writer))
            .map_err(|e| Error::spool(format!("cannot start the spool's writer thread: {e}")))?;
        let writer = Arc::new(WriterThread {
            inner: inner.clone(),
            thread: Mutex::new(Some(thread)),
        });
        Ok((
            Self {
                _writer: writer,
                inner,
            },
            recovered,
        ))
    }

    fn wake(&self, books: &mut Books) {
        if books.writer_idle {
            books.writer_idle = false;
            self.inner.work.notify_one();
        }
    }

    fn broken(why: &str) -> Error {
        Error::spool(why.to_owned())
    }

    /// Appends an accepted event of `partition`; returns its index in the partition,
    /// and whether it went into the backlog (with `spill`, or because there is one)
    /// rather than into its lane.
    pub(crate) fn append(
        &self,
        partition: &str,
        pinned: bool,
        encoded: &[u8],
        spill: bool,
    ) -> Result<(u64, bool), Error> {
        let len = record::event_len(partition, encoded);
        if len > record::MAX_BODY {
            return Err(Error::spool(format!(
                "an event of {} bytes is larger than a spool record can be",
                encoded.len()
            )));
        }
        let accepted_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut books = self.inner.lock();
        if let Some(why) = &books.broken {
            return Err(Self::broken(why));
        }
        books.room(len);
        let spill = spill || books.backlog > 0;
        let index = books.add_event(partition, spill);
        record::put_event(
            books.buffer(),
            partition,
            index,
            pinned,
            accepted_ms,
            encoded,
        );
        books.wrote(len);
        self.wake(&mut books);
        if spill {
            if let Some(cursor) = books.cursor {
                self.inner.cursor.send_if_modified(|c| {
                    let moved = *c == u64::MAX;
                    if moved {
                        *c = cursor;
                    }
                    moved
                });
            }
            drop(books);
            self.inner.spilled.notify_one();
        }
        Ok((index, spill))
    }

    /// Events of `partition` have their outcome: `spans` of `(first index, count)`.
    pub(crate) fn done(&self, partition: &str, spans: &[(u64, u32)]) {
        if spans.is_empty() {
            return;
        }
        let mut books = self.inner.lock();
        let mut freed = false;
        for &(first, count) in spans {
            freed |= books.settle(partition, first, count);
            if books.broken.is_none() {
                let mut out = Vec::new();
                let len = record::put_done(&mut out, partition, first, count);
                books.room(len).extend_from_slice(&out);
                books.wrote(len);
            }
        }
        if freed {
            self.wake(&mut books);
            self.inner.freed.notify_waiters();
        }
    }

    /// An idempotent batch of `partition` starting at index `first` got `stamp`: if
    /// that is not how the log numbers it, the new numbering is logged, and the
    /// returned position must be durable before the batch is sent (see
    /// [`durable`](Self::durable)), so that a restart knows the numbers it went with.
    pub(crate) fn numbered(&self, partition: &str, first: u64, stamp: Stamp) -> Option<u64> {
        let mut books = self.inner.lock();
        if books.broken.is_some() || !books.numbered(partition, first, stamp) {
            return None;
        }
        books.urgent = true;
        let target = books.appended;
        self.wake(&mut books);
        Some(target)
    }

    /// Where the log stands: what a wait for everything appended so far waits for.
    pub(crate) fn appended(&self) -> u64 {
        let mut books = self.inner.lock();
        let target = books.appended;
        self.wake(&mut books);
        target
    }

    /// Resolves once the log is durable up to `target` (a position [`numbered`] or
    /// [`appended`](Self::appended) returned, or everything appended so far with
    /// `None`).
    ///
    /// [`numbered`]: Self::numbered
    pub(crate) async fn durable(&self, target: Option<u64>) -> Result<(), Error> {
        let target = match target {
            Some(t) => t,
            None => {
                let mut books = self.inner.lock();
                let target = books.appended;
                self.wake(&mut books);
                target
            }
        };
        let mut progress = self.inner.progress.subscribe();
        let progress = progress
            .wait_for(|p| p.durable >= target || p.broken.is_some() || p.closed)
            .await
            .map_err(|_| Error::spool("the spool's writer stopped"))?;
        match &progress.broken {
            Some(why) if progress.durable < target => Err(Self::broken(why)),
            _ if progress.durable < target => Err(Error::closed()),
            _ => Ok(()),
        }
    }

    /// Whether the spool holds `max_spool_bytes` or more, or the writer has fallen
    /// [`MAX_UNWRITTEN`] behind, or the spool can no longer be written (then the
    /// error).
    pub(crate) fn full(&self) -> Result<bool, Error> {
        Ok(self.admit()?.is_none())
    }

    /// Whether an event may be accepted now, and where to: `None` while the spool is
    /// [full](Self::full), else whether a backlog waits (then the event joins it).
    /// One look at the books, for `poll_ready`.
    pub(crate) fn admit(&self) -> Result<Option<bool>, Error> {
        let books = self.inner.lock();
        if let Some(why) = &books.broken {
            return Err(Self::broken(why));
        }
        let written = self
            .inner
            .written
            .load(std::sync::atomic::Ordering::Acquire);
        let full = books.bytes() >= self.inner.max_bytes
            || books.appended.saturating_sub(written) > MAX_UNWRITTEN;
        Ok((!full).then_some(books.backlog > 0))
    }

    /// Resolves once the spool has room (or fails).
    pub(crate) async fn room(self) {
        loop {
            let freed = self.inner.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if !matches!(self.full(), Ok(true)) {
                return;
            }
            freed.await;
        }
    }

    /// Writes what is left, syncs it, and stops the writer; a spool whose events are
    /// all done is left empty. Waits for the writer at most `limit`.
    pub(crate) async fn close(&self, limit: Duration) {
        {
            let mut books = self.inner.lock();
            books.closing = true;
            books.writer_idle = false;
            self.inner.work.notify_one();
        }
        let mut progress = self.inner.progress.subscribe();
        let _ = tokio::time::timeout(limit, progress.wait_for(|p| p.closed || p.broken.is_some()))
            .await;
    }
}
