//! The builder's options for keyless routing that steers by the partitions' health.

use std::time::Duration;

use super::ProducerBuilder;

/// How long a partition may have work outstanding without any outcome before keyless
/// events avoid it: well above a healthy send's round trip, even to a busy namespace,
/// and below the retry policy's first back-off, so that a throttled partition is
/// avoided while it retries.
pub(super) const AVAILABILITY_TIMEOUT: Duration = Duration::from_secs(1);

impl ProducerBuilder {
    /// Whether keyless events steer by each partition's health (default `true`).
    ///
    /// On, a run of keyless events (see [`sticky_routing`](Self::sticky_routing)) goes to
    /// the partition with the fewest events queued or in flight, and no keyless event
    /// goes to a partition that is failing (its last batch failed: avoided for
    /// [`partition_availability_timeout`](Self::partition_availability_timeout),
    /// doubling while it keeps failing) or that has had batches outstanding without an
    /// outcome for longer than that timeout (throttled and retrying, stalled, waiting
    /// for credit, re-attaching). It gets keyless events again once it recovers. Keyed
    /// events and events with a partition id are never moved. If every partition is
    /// avoided, none is. Kafka's producer does the same for keyless records
    /// ([KIP-794](https://cwiki.apache.org/confluence/display/KAFKA/KIP-794%3A+Strictly+Uniform+Sticky+Partitioner)).
    ///
    /// Off, keyless events go round the partitions in turn whatever their state.
    /// [`Producer::stats`](crate::Producer::stats) says which partitions are avoided.
    pub fn adaptive_routing(mut self, adaptive: bool) -> Self {
        self.adaptive = adaptive;
        self
    }

    /// How long a partition may have batches outstanding without an outcome before
    /// keyless events avoid it, and how long a failing partition is avoided at first
    /// (default 1 s; see [`adaptive_routing`](Self::adaptive_routing)). Like Kafka's
    /// `partitioner.availability.timeout.ms`.
    pub fn partition_availability_timeout(mut self, timeout: Duration) -> Self {
        self.availability_timeout = timeout;
        self
    }
}
