//! The spool's writer: a thread of its own that writes what was appended to the
//! segment files, syncs them as the durability policy says, deletes segments whose
//! events are all done, and publishes how far the log is durable. Appending never
//! waits for it: the disk is only ever touched here (and when the spool is opened).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::record::MAGIC;
use super::{Durability, Inner, Progress};

/// The file of segment `number` in `dir`.
pub(super) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("segment-{number:020}.log"))
}

struct Open {
    number: u64,
    file: File,
    /// Written since its last sync.
    dirty: bool,
}

pub(super) fn run(inner: Arc<Inner>) {
    let mut open: Option<Open> = None;
    let mut last_sync = Instant::now();
    // What was in the log when it was opened is on disk already.
    let mut written = inner.written.load(std::sync::atomic::Ordering::Acquire);
    let mut durable = written;
    // Once a write failed, nothing more is written; segments whose events are all done
    // are still deleted (which needs no room on a full disk), so that what the spool
    // no longer needs is not published again by the next producer.
    let mut broken = false;
    loop {
        let (chunks, delete, urgent, closing) = {
            let mut books = inner.lock();
            loop {
                let due = match inner.durability {
                    Durability::Interval(every) => {
                        written > durable && last_sync.elapsed() >= every
                    }
                    _ => false,
                };
                if !books.chunks.is_empty() || !books.delete.is_empty() || books.closing || due {
                    break;
                }
                if books.urgent && written > durable {
                    break;
                }
                books.writer_idle = true;
                books = match inner.durability {
                    Durability::Interval(every) if written > durable => {
                        let wait = every.saturating_sub(last_sync.elapsed());
                        match inner.work.wait_timeout(books, wait) {
                            Ok((b, _)) => b,
                            Err(e) => e.into_inner().0,
                        }
                    }
                    _ => inner.work.wait(books).unwrap_or_else(|e| e.into_inner()),
                };
            }
            books.writer_idle = false;
            (
                std::mem::take(&mut books.chunks),
                std::mem::take(&mut books.delete),
                std::mem::take(&mut books.urgent),
                books.closing,
            )
        };
        let chunks = if broken { Vec::new() } else { chunks.into() };
        let result = (|| -> std::io::Result<()> {
            for chunk in chunks {
                if open.as_ref().is_none_or(|o| o.number != chunk.segment) {
                    if let Some(done) = open.take() {
                        // A segment is complete on disk before the next one exists, so
                        // only the newest segment can end in a torn write.
                        if done.dirty && inner.durability != Durability::Os {
                            done.file.sync_data()?;
                        }
                    }
                    let path = segment_path(&inner.dir, chunk.segment);
                    let mut file = OpenOptions::new()
                        .create_new(true)
                        .append(true)
                        .open(&path)?;
                    file.write_all(MAGIC)?;
                    open = Some(Open {
                        number: chunk.segment,
                        file,
                        dirty: true,
                    });
                }
                let o = open.as_mut().expect("opened above");
                o.file.write_all(&chunk.bytes)?;
                o.dirty = true;
                written = chunk.end;
                inner
                    .written
                    .store(written, std::sync::atomic::Ordering::Release);
            }
            let sync = match inner.durability {
                Durability::Group => true,
                Durability::Interval(every) => urgent || closing || last_sync.elapsed() >= every,
                Durability::Os => false,
            };
            if let Some(o) = open.as_mut().filter(|o| o.dirty && !broken) {
                if sync {
                    o.file.sync_data()?;
                    o.dirty = false;
                    last_sync = Instant::now();
                }
            }
            if !broken && (sync || inner.durability == Durability::Os || open.is_none()) {
                durable = written;
            }
            if !delete.is_empty() {
                for number in delete {
                    match std::fs::remove_file(segment_path(&inner.dir, number)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                // Makes the deletions last, so deleted segments do not come back after
                // a power cut with events that were already done.
                File::open(&inner.dir)?.sync_all()?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                inner.progress.send_if_modified(|p| {
                    let moved = p.durable != durable;
                    p.durable = durable;
                    moved
                });
                inner.freed.notify_waiters();
            }
            Err(e) if !broken => {
                broken = true;
                written = durable;
                let why: Arc<str> = format!(
                    "cannot write the spool in {}: {e}; events already accepted are still \
                     published, but the spool takes no more until the producer is built \
                     again",
                    inner.dir.display()
                )
                .into();
                tracing::error!("{why}");
                inner.lock().broken = Some(why.clone());
                inner
                    .progress
                    .send_modify(|p: &mut Progress| p.broken = Some(why));
                inner.freed.notify_waiters();
                continue;
            }
            Err(e) => tracing::warn!("cleaning up the spool failed: {e}"),
        }
        if closing {
            let books = inner.lock();
            if books.chunks.is_empty() && books.delete.is_empty() {
                let empty = books.segments.iter().all(|s| s.live == 0);
                let numbers: Vec<u64> = books.segments.iter().map(|s| s.number).collect();
                drop(books);
                drop(open.take());
                if empty {
                    // Nothing is left to publish: a clean close leaves no segment behind.
                    for number in numbers {
                        let _ = std::fs::remove_file(segment_path(&inner.dir, number));
                    }
                    if let Ok(dir) = File::open(&inner.dir) {
                        let _ = dir.sync_all();
                    }
                }
                // The directory is free for the next producer.
                inner
                    .lock_file
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                inner.progress.send_modify(|p| p.closed = true);
                return;
            }
        }
    }
}
