//! Size-or-time batching per key, by weight: the batching rules of the producer,
//! protocol-agnostic.
//!
//! A batch for a key opens with its first item, whose arrival arms the deadline
//! (`max_wait` is the age of the oldest item, not an idle gap). A batch is sealed
//! when the next item would push it over `max_weight`, when it reaches `max_weight`
//! exactly, when its deadline passes, or on demand (flush, close).
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use streaming_producer_layers::batch::Batcher;
//!
//! let mut batcher = Batcher::new(100, Duration::from_millis(250));
//! let now = Instant::now();
//! assert!(batcher.push(0, "a", 60, now).is_empty());
//! // "b" does not fit beside "a": the batch holding "a" is sealed, "b" opens the next.
//! let sealed = batcher.push(0, "b", 60, now);
//! assert_eq!(sealed[0].items, ["a"]);
//! assert_eq!(batcher.next_deadline(), Some(now + Duration::from_millis(250)));
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// A sealed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed<T> {
    /// The key it was collected for.
    pub key: usize,
    /// Its items, in arrival order.
    pub items: Vec<T>,
    /// The sum of their weights.
    pub weight: usize,
    /// When its first item arrived.
    pub opened: Instant,
}

#[derive(Debug)]
struct Open<T> {
    items: Vec<T>,
    weight: usize,
    opened: Instant,
    deadline: Instant,
}

/// Open batches per key (keys are small integers, e.g. partition indices).
#[derive(Debug)]
pub struct Batcher<T> {
    max_weight: usize,
    max_wait: Duration,
    open: Vec<Option<Open<T>>>,
}

impl<T> Batcher<T> {
    /// Batches of at most `max_weight`, sealed at the latest `max_wait` after their first item.
    pub fn new(max_weight: usize, max_wait: Duration) -> Self {
        Self {
            max_weight,
            max_wait,
            open: Vec::new(),
        }
    }

    /// The most weight one batch may hold.
    pub fn max_weight(&self) -> usize {
        self.max_weight
    }

    /// Adds an item; returns the batches this sealed (the previous one if the item did
    /// not fit beside it, and the new one if it is now full). The caller keeps items
    /// heavier than `max_weight` out: they would form a batch of their own.
    pub fn push(&mut self, key: usize, item: T, weight: usize, now: Instant) -> Vec<Sealed<T>> {
        if key >= self.open.len() {
            self.open.resize_with(key + 1, || None);
        }
        let mut sealed = Vec::new();
        if self.open[key]
            .as_ref()
            .is_some_and(|o| o.weight + weight > self.max_weight)
        {
            sealed.extend(self.seal(key));
        }
        let deadline = now
            .checked_add(self.max_wait)
            .unwrap_or_else(|| far_future(now));
        let open = self.open[key].get_or_insert_with(|| Open {
            items: Vec::new(),
            weight: 0,
            opened: now,
            deadline,
        });
        open.items.push(item);
        open.weight += weight;
        if open.weight >= self.max_weight {
            sealed.extend(self.seal(key));
        }
        sealed
    }

    /// Seals the open batch of `key`, if any.
    pub fn seal(&mut self, key: usize) -> Option<Sealed<T>> {
        let open = self.open.get_mut(key)?.take()?;
        Some(Sealed {
            key,
            items: open.items,
            weight: open.weight,
            opened: open.opened,
        })
    }

    /// Seals every open batch.
    pub fn seal_all(&mut self) -> Vec<Sealed<T>> {
        (0..self.open.len()).filter_map(|k| self.seal(k)).collect()
    }

    /// Seals the batches whose deadline is at or before `now`.
    pub fn seal_expired(&mut self, now: Instant) -> Vec<Sealed<T>> {
        let due: Vec<usize> = (0..self.open.len())
            .filter(|k| self.open[*k].as_ref().is_some_and(|o| o.deadline <= now))
            .collect();
        due.into_iter().filter_map(|k| self.seal(k)).collect()
    }

    /// When the next open batch is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.iter().flatten().map(|o| o.deadline).min()
    }

    /// Whether `key` has an open batch.
    pub fn is_open(&self, key: usize) -> bool {
        self.open.get(key).is_some_and(Option::is_some)
    }
}

fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(100 * 365 * 24 * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, start: Instant) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_armed_by_the_first_item_only() {
        let start = Instant::now();
        let mut b = Batcher::new(1000, Duration::from_millis(100));
        for ms in [0, 40, 80, 99] {
            assert!(b.push(0, ms, 1, at(ms, start)).is_empty());
        }
        assert_eq!(b.next_deadline(), Some(at(100, start)));
        assert!(b.seal_expired(at(99, start)).is_empty());
        let sealed = b.seal_expired(at(100, start));
        assert_eq!(sealed[0].items, [0, 40, 80, 99]);
        assert_eq!(b.next_deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_that_reaches_its_weight_leaves_at_once() {
        let now = Instant::now();
        let mut b = Batcher::new(10, Duration::from_secs(60));
        assert!(b.push(3, 'a', 4, now).is_empty());
        let sealed = b.push(3, 'b', 6, now);
        assert_eq!(
            sealed,
            [Sealed {
                key: 3,
                items: vec!['a', 'b'],
                weight: 10,
                opened: now,
            }]
        );
        assert!(!b.is_open(3));
    }

    #[tokio::test(start_paused = true)]
    async fn keys_batch_independently_and_flush_seals_all() {
        let now = Instant::now();
        let mut b = Batcher::new(10, Duration::from_secs(60));
        b.push(0, 1, 3, now);
        b.push(2, 2, 3, now);
        b.push(0, 3, 3, now);
        let mut all = b.seal_all();
        all.sort_by_key(|s| s.key);
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].key, all[0].items.clone(), all[0].weight),
            (0, vec![1, 3], 6)
        );
        assert_eq!((all[1].key, all[1].items.clone()), (2, vec![2]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_max_wait_does_not_overflow() {
        let mut b = Batcher::new(10, Duration::MAX);
        b.push(0, (), 1, Instant::now());
        assert!(b.next_deadline().is_some());
    }
}
