//! The routing policies: partitioners for keys, and the round-robin and sticky
//! choices for keyless events (both steered by the partitions' [`Health`]).

use super::health::Health;

/// Maps a partition key to a partition index.
///
/// The default is the service's own mapping (Jenkins lookup3, as
/// [`eventhubs_protocol::partition_key`] computes it), so keyed events land where the
/// service and every other SDK would put them. A custom partitioner (the buffered
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

/// The service's mapping: Jenkins lookup3, as in [`eventhubs_protocol::partition_key`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ServiceHash;

impl Partitioner for ServiceHash {
    fn partition_for_key(&self, key: &str, partition_count: usize) -> usize {
        eventhubs_protocol::partition_key::partition_index(key, partition_count)
    }
}

/// How events without a partition id or key are spread.
#[derive(Debug)]
pub(crate) enum Keyless {
    RoundRobin(RoundRobin),
    Sticky(Sticky),
}

/// Keyless events in turn over the partitions.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    /// Starts at partition 0, as the SDKs do.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The partition for the next event: the next in turn that `health` does not
    /// avoid.
    pub(crate) fn next(&mut self, partition_count: usize, health: &Health) -> usize {
        let n = partition_count.max(1);
        let p = health.next_available(self.next % n, n);
        self.next = (p + 1) % n;
        p
    }
}

/// Keyless events to one partition until a stick's worth (by weight, and optionally by
/// count) went there, then to the next: fuller batches and fewer sends, at the cost of
/// evenness over short spans. Kafka's producer made the same trade its default for
/// keyless records (KIP-480, "sticky partitioner", and KIP-794, which bounds each stick by
/// `batch.size` bytes).
#[derive(Debug, Clone)]
pub(crate) struct Sticky {
    current: usize,
    weight: usize,
    events: usize,
    max_weight: usize,
    max_events: usize,
}

/// Where [`Sticky::pick`] sends an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pick {
    /// The event's partition.
    pub(crate) partition: usize,
    /// The partition the router just moved away from (never the event's own): its
    /// stick is complete, so its open batch may be published now.
    pub(crate) left: Option<usize>,
}

impl Sticky {
    /// Sticks until `capacity` weight (e.g. a batch's bytes) went to one partition.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            current: 0,
            weight: 0,
            events: 0,
            max_weight: capacity.max(1),
            max_events: usize::MAX,
        }
    }

    /// Also moves on after `events` events, whatever they weigh.
    pub(crate) fn max_events(mut self, events: usize) -> Self {
        self.max_events = events.max(1);
        self
    }

    /// The partition for the next event of this `weight`.
    #[cfg(test)]
    pub(crate) fn next(&mut self, weight: usize, partition_count: usize) -> usize {
        let health = Health::new(partition_count, true);
        self.pick(weight, partition_count, &health).partition
    }

    /// The partition for the next event of this `weight`, and the partition left behind
    /// if this event starts a new stick. A stick that is complete moves on to the
    /// partition `health` finds least loaded; one on a partition `health` avoids
    /// moves on at once, unless every partition is avoided.
    #[inline]
    pub(crate) fn pick(&mut self, weight: usize, partition_count: usize, health: &Health) -> Pick {
        let n = partition_count.max(1);
        let mut left = None;
        let complete = self.events > 0
            && (self.weight + weight > self.max_weight || self.events >= self.max_events);
        let sick =
            health.any_avoided() && health.avoided(self.current % n) && health.avoided_count() < n;
        if complete || sick {
            let previous = self.current % n;
            self.current = health.next_after(previous, n);
            // With one partition there is nowhere to move to.
            left = (self.current != previous).then_some(previous);
            self.weight = 0;
            self.events = 0;
        }
        self.current %= n;
        self.weight += weight;
        self.events += 1;
        Pick {
            partition: self.current,
            left,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_where_the_service_puts_them() {
        assert_eq!(ServiceHash.partition_for_key("alphabet", 11), 4);
    }

    #[test]
    fn sticky_fills_one_partition_by_weight_before_moving_on() {
        let mut sticky = Sticky::new(100);
        let picks: Vec<usize> = (0..6).map(|_| sticky.next(40, 3)).collect();
        assert_eq!(picks, [0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn round_robin_cycles_from_zero_and_follows_a_changed_count() {
        let mut rr = RoundRobin::new();
        let health = Health::new(3, true);
        let picks: Vec<usize> = (0..5).map(|_| rr.next(3, &health)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1]);
        assert_eq!(rr.next(2, &health), 0);
        assert_eq!(rr.next(0, &health), 0, "no partitions is treated as one");
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
    fn sticky_says_which_partition_it_left() {
        let mut s = Sticky::new(100).max_events(2);
        let health = Health::new(3, true);
        let picks: Vec<Pick> = (0..5).map(|_| s.pick(10, 3, &health)).collect();
        let left: Vec<Option<usize>> = picks.iter().map(|p| p.left).collect();
        let parts: Vec<usize> = picks.iter().map(|p| p.partition).collect();
        assert_eq!(parts, [0, 0, 1, 1, 2]);
        assert_eq!(left, [None, None, Some(0), None, Some(1)]);
        // The weight bound still applies under the count bound.
        assert_eq!(
            s.pick(95, 3, &health),
            Pick {
                partition: 0,
                left: Some(2)
            }
        );
        assert_eq!(
            s.pick(10, 3, &health),
            Pick {
                partition: 1,
                left: Some(0)
            }
        );
        // A new stick on the only partition leaves nothing behind.
        let mut one = Sticky::new(100).max_events(1);
        assert_eq!(
            one.pick(10, 1, &health),
            Pick {
                partition: 0,
                left: None
            }
        );
        assert_eq!(
            one.pick(10, 1, &health),
            Pick {
                partition: 0,
                left: None
            }
        );
    }

    #[test]
    fn a_stick_leaves_a_partition_as_soon_as_it_is_avoided_and_skips_it() {
        let health = Health::new(3, true);
        let mut s = Sticky::new(1000);
        assert_eq!(s.pick(10, 3, &health).partition, 0);
        health.set_avoid(0, true);
        assert_eq!(
            s.pick(10, 3, &health),
            Pick {
                partition: 1,
                left: Some(0)
            }
        );
        health.set_avoid(2, true);
        let mut short = Sticky::new(10);
        let picks: Vec<usize> = (0..4)
            .map(|_| short.pick(10, 3, &health).partition)
            .collect();
        assert_eq!(
            picks,
            [1, 1, 1, 1],
            "the only partition not avoided takes every stick"
        );
        health.set_avoid(1, true);
        let all: Vec<usize> = (0..3)
            .map(|_| short.pick(10, 3, &health).partition)
            .collect();
        assert_eq!(all, [2, 0, 1], "every partition avoided: none is");
    }

    #[test]
    fn a_closure_is_a_partitioner() {
        let first = |_: &str, _: usize| 0usize;
        assert_eq!(first.partition_for_key("anything", 8), 0);
    }
}
