//! Routing events without an explicit partition: partitioners for keys, and the
//! round-robin and sticky choices for keyless events.
//!
//! ```
//! use streaming_producer_layers::route::{Partitioner, ServiceHash, Sticky};
//!
//! assert_eq!(ServiceHash.partition_for_key("alphabet", 11), 4);
//!
//! // Sticky: keyless events fill one partition's batch (by weight) before moving on.
//! let mut sticky = Sticky::new(100);
//! let picks: Vec<usize> = (0..6).map(|_| sticky.next(40, 3)).collect();
//! assert_eq!(picks, [0, 0, 1, 1, 2, 2]);
//! ```

/// Maps a partition key to a partition index.
///
/// The default, [`ServiceHash`], is the service's own mapping, so keyed events land where
/// the service and every other SDK would put them. A custom partitioner (the buffered
/// producer proposal lists one as a future enhancement) trades that for your own
/// distribution; a closure `Fn(&str, usize) -> usize` works too.
pub trait Partitioner: Send + Sync + 'static {
    /// The index (in `0..partition_count`) of the partition for `key`.
    fn partition_for_key(&self, key: &str, partition_count: usize) -> usize;
}

impl<F> Partitioner for F
where
    F: Fn(&str, usize) -> usize + Send + Sync + 'static,
{
    fn partition_for_key(&self, key: &str, partition_count: usize) -> usize {
        self(key, partition_count)
    }
}

/// The service's mapping: Jenkins lookup3, as in [`crate::partition_key`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceHash;

impl Partitioner for ServiceHash {
    fn partition_for_key(&self, key: &str, partition_count: usize) -> usize {
        crate::partition_key::partition_index(key, partition_count)
    }
}

/// Keyless events in turn over the partitions.
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    /// Starts at partition 0, as the SDKs do.
    pub fn new() -> Self {
        Self::default()
    }

    /// The partition for the next event.
    pub fn next(&mut self, partition_count: usize) -> usize {
        let n = partition_count.max(1);
        let p = self.next % n;
        self.next = (p + 1) % n;
        p
    }
}

/// Keyless events to one partition until a batch's worth (by weight) went there, then
/// to the next: fuller batches, fewer sends, at the cost of evenness over short spans.
#[derive(Debug, Clone)]
pub struct Sticky {
    current: usize,
    filled: usize,
    capacity: usize,
}

impl Sticky {
    /// Sticks until `capacity` weight (e.g. a batch's bytes) went to one partition.
    pub fn new(capacity: usize) -> Self {
        Self {
            current: 0,
            filled: 0,
            capacity: capacity.max(1),
        }
    }

    /// The partition for the next event of this `weight`.
    pub fn next(&mut self, weight: usize, partition_count: usize) -> usize {
        let n = partition_count.max(1);
        if self.filled > 0 && self.filled + weight > self.capacity {
            self.current = (self.current + 1) % n;
            self.filled = 0;
        }
        self.current %= n;
        self.filled += weight;
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cycles_from_zero_and_follows_a_changed_count() {
        let mut rr = RoundRobin::new();
        let picks: Vec<usize> = (0..5).map(|_| rr.next(3)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1]);
        assert_eq!(rr.next(2), 0);
        assert_eq!(rr.next(0), 0, "no partitions is treated as one");
    }

    #[test]
    fn sticky_moves_on_when_the_next_event_would_overflow() {
        let mut s = Sticky::new(100);
        assert_eq!(s.next(60, 2), 0);
        assert_eq!(s.next(40, 2), 0, "exactly full still fits");
        assert_eq!(s.next(1, 2), 1);
        assert_eq!(
            s.next(500, 2),
            0,
            "an event heavier than the capacity gets a partition alone"
        );
        assert_eq!(s.next(1, 2), 1);
    }

    #[test]
    fn a_closure_is_a_partitioner() {
        let first = |_: &str, _: usize| 0usize;
        assert_eq!(first.partition_for_key("anything", 8), 0);
    }
}
