//! Encode buffers handed back for reuse.
//!
//! fe2o3 takes a batched message as one `Data` section per event, each owning its
//! bytes, so every event is encoded into a buffer of its own. Handles allocate those
//! buffers in the application's task, and the outcome that holds them is dropped in
//! another: with glibc's allocator a small block freed on another thread than the one
//! that allocated it is expensive (in `_int_free` and the chunk merging it triggers),
//! and there would be one such free per event. When an outcome's events are dropped
//! their buffers come back here instead, a batch's worth at a time, and handles take
//! them a batch's worth at a time: one lock per batch on each side, none per event.

use std::sync::Mutex;

/// Buffers larger than this go back to the allocator: a rare large event must not pin
/// its memory for the producer's lifetime.
const MAX_REUSED_CAPACITY: usize = 4096;

/// Spare encode buffers, in batch-sized chunks.
#[derive(Debug)]
pub(crate) struct BufferPool {
    inner: Mutex<Spare>,
    /// At most this many buffers are kept.
    max_buffers: usize,
}

#[derive(Debug, Default)]
struct Spare {
    chunks: Vec<Vec<Vec<u8>>>,
    buffers: usize,
}

impl BufferPool {
    /// Keeps at most `max_buffers` buffers (the producer's pending bound: no more are
    /// ever in use at once).
    pub(crate) fn new(max_buffers: usize) -> Self {
        Self {
            inner: Mutex::default(),
            max_buffers,
        }
    }

    /// Takes back the buffers of a published batch; those over the bound, or too large,
    /// are freed.
    pub(crate) fn put(&self, mut buffers: Vec<Vec<u8>>) {
        buffers.retain(|b| b.capacity() <= MAX_REUSED_CAPACITY);
        if buffers.is_empty() {
            return;
        }
        let mut spare = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.max_buffers.saturating_sub(spare.buffers);
        buffers.truncate(room);
        if !buffers.is_empty() {
            spare.buffers += buffers.len();
            spare.chunks.push(buffers);
        }
    }

    /// A chunk of spare buffers, if there are any (their contents are stale).
    pub(crate) fn take(&self) -> Option<Vec<Vec<u8>>> {
        let mut spare = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let chunk = spare.chunks.pop()?;
        spare.buffers -= chunk.len();
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| Vec::with_capacity(10)).collect()
    }

    #[test]
    fn keeps_at_most_its_bound_and_no_large_buffers() {
        let pool = BufferPool::new(3);
        pool.put(vec![Vec::with_capacity(10), Vec::with_capacity(1 << 20)]);
        pool.put(small(5));
        let first = pool.take().unwrap();
        let second = pool.take().unwrap();
        assert_eq!(
            first.len() + second.len(),
            3,
            "bound kept, the large one freed"
        );
        assert!(first
            .iter()
            .chain(&second)
            .all(|b| b.capacity() <= MAX_REUSED_CAPACITY));
        assert!(pool.take().is_none());
        // Taking made room again.
        pool.put(small(2));
        assert_eq!(pool.take().map(|c| c.len()), Some(2));
    }
}
