//! What keyless routing knows of each partition's state: whether to avoid it (the
//! driver says so when it is failing, or has had work outstanding without progress
//! for longer than the availability timeout: throttled, stalled, waiting for credit or
//! re-attaching), and how many events it has queued or in flight.
//!
//! Kafka's producer made its keyless partitioner aware of this for the same reason
//! (KIP-794): a sticky partitioner that ignores a slow partition keeps feeding it,
//! and the events it holds there are events that any other partition would take.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// One partition's state as routing sees it; the driver is its only writer.
#[derive(Debug, Default)]
struct PartitionHealth {
    avoid: AtomicBool,
    /// Events sealed for the partition and without an outcome yet.
    load: AtomicUsize,
}

/// Each partition's health, for the keyless router.
#[derive(Debug)]
pub(crate) struct Health {
    parts: Box<[PartitionHealth]>,
    /// How many partitions are avoided: 0 (the usual case) costs routing one load.
    avoided: AtomicUsize,
    /// Off: keyless routing ignores health and load, as it did before.
    enabled: bool,
}

impl Health {
    pub(crate) fn new(partitions: usize, enabled: bool) -> Self {
        Self {
            parts: (0..partitions)
                .map(|_| PartitionHealth::default())
                .collect(),
            avoided: AtomicUsize::new(0),
            enabled,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Marks `partition` avoided or not; returns whether that changed.
    pub(crate) fn set_avoid(&self, partition: usize, avoid: bool) -> bool {
        let Some(part) = self.parts.get(partition) else {
            return false;
        };
        let was = part.avoid.swap(avoid, Ordering::Release);
        if was != avoid {
            if avoid {
                self.avoided.fetch_add(1, Ordering::Release);
            } else {
                self.avoided.fetch_sub(1, Ordering::Release);
            }
        }
        was != avoid
    }

    /// Whether keyless events avoid `partition` now.
    pub(crate) fn avoided(&self, partition: usize) -> bool {
        self.parts
            .get(partition)
            .is_some_and(|p| p.avoid.load(Ordering::Acquire))
    }

    /// How many partitions are avoided.
    pub(crate) fn avoided_count(&self) -> usize {
        self.avoided.load(Ordering::Acquire)
    }

    /// Whether any partition is avoided.
    #[inline]
    pub(crate) fn any_avoided(&self) -> bool {
        self.avoided.load(Ordering::Acquire) > 0
    }

    /// `events` more events of `partition` sealed (positive) or reported (negative).
    pub(crate) fn add_load(&self, partition: usize, events: isize) {
        if let Some(part) = self.parts.get(partition) {
            if events >= 0 {
                part.load.fetch_add(events as usize, Ordering::Relaxed);
            } else {
                part.load
                    .fetch_sub(events.unsigned_abs(), Ordering::Relaxed);
            }
        }
    }

    fn load(&self, partition: usize) -> usize {
        self.parts
            .get(partition)
            .map_or(0, |p| p.load.load(Ordering::Relaxed))
    }

    /// Where a new run of keyless events goes after `previous`, among `count`
    /// partitions: the least loaded of those not avoided (of all, if every one is),
    /// the first after `previous` in turn among equals, so that with nothing queued
    /// anywhere this is plain rotation.
    pub(crate) fn next_after(&self, previous: usize, count: usize) -> usize {
        let n = count.max(1);
        let first = (previous + 1) % n;
        if !self.enabled {
            return first;
        }
        let skip_avoided = self.any_avoided() && self.avoided_count() < n;
        let mut best: Option<(usize, usize)> = None;
        for step in 0..n {
            let candidate = (first + step) % n;
            if skip_avoided && self.avoided(candidate) {
                continue;
            }
            let load = self.load(candidate);
            if load == 0 {
                // Nothing beats an empty partition.
                return candidate;
            }
            if best.is_none_or(|(_, least)| load < least) {
                best = Some((candidate, load));
            }
        }
        best.map_or(first, |(p, _)| p)
    }

    /// The next partition in turn from `next` that is not avoided (if any is not),
    /// for round-robin routing.
    pub(crate) fn next_available(&self, next: usize, count: usize) -> usize {
        let n = count.max(1);
        if !self.enabled || !self.any_avoided() {
            return next % n;
        }
        (0..n)
            .map(|step| (next + step) % n)
            .find(|&p| !self.avoided(p))
            .unwrap_or(next % n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_nothing_queued_and_nothing_avoided_runs_go_round_in_turn() {
        let health = Health::new(4, true);
        assert_eq!(health.next_after(0, 4), 1);
        assert_eq!(health.next_after(3, 4), 0);
        assert_eq!(health.next_after(5, 1), 0);
    }

    #[test]
    fn a_run_goes_to_the_least_loaded_partition_not_avoided() {
        let health = Health::new(4, true);
        health.add_load(1, 500);
        health.add_load(2, 100);
        health.add_load(3, 300);
        health.add_load(0, 200);
        assert_eq!(health.next_after(0, 4), 2);
        assert!(health.set_avoid(2, true));
        assert!(!health.set_avoid(2, true), "no change");
        assert_eq!(health.next_after(0, 4), 0);
        health.add_load(2, -100);
        assert_eq!(health.next_after(0, 4), 0, "still avoided, however empty");
        assert!(health.set_avoid(2, false));
        assert_eq!(health.next_after(0, 4), 2);
    }

    #[test]
    fn when_every_partition_is_avoided_none_is() {
        let health = Health::new(3, true);
        for p in 0..3 {
            health.set_avoid(p, true);
        }
        health.add_load(1, 10);
        assert_eq!(health.next_after(0, 3), 2);
        assert_eq!(health.next_available(1, 3), 1);
    }

    #[test]
    fn round_robin_skips_an_avoided_partition() {
        let health = Health::new(3, true);
        health.set_avoid(1, true);
        assert_eq!(health.next_available(1, 3), 2);
        assert_eq!(health.next_available(0, 3), 0);
    }

    #[test]
    fn switched_off_it_is_plain_rotation() {
        let health = Health::new(3, false);
        health.add_load(1, 10);
        health.set_avoid(1, true);
        assert_eq!(health.next_after(0, 3), 1);
        assert_eq!(health.next_available(1, 3), 1);
    }
}
