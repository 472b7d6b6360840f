//! [`Producer::stats`](crate::Producer::stats): a snapshot of what the producer did and
//! holds, per partition and in total, from counters the driver keeps as it reports
//! each batch (the OpenTelemetry metrics read the same counters).

mod counters;

use super::Producer;
use crate::route::Index;
#[cfg(feature = "opentelemetry")]
pub(crate) use counters::Counters;
pub(crate) use counters::{PartitionState, Stats};
use hdrhistogram::Histogram;

/// A snapshot of the producer: each partition's numbers, and their sum.
///
/// Counts (`*_published`, `*_failed`, `retries`, ...) run from the producer's start;
/// `pending_*` and `in_flight_*` are the state now; `send_latency` covers the last 10
/// to 20 seconds. With the `serde` feature it is `serde::Serialize`, which is how
/// `hubcat send --stats FILE` writes it as JSON lines.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ProducerStats {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Every partition's numbers added up (latency over all of their sends), with
    /// the events refused before they had a partition (an unknown partition id).
    pub total: SendStats,
    /// Events waiting on disk in the [spool](crate::ProducerBuilder::spool)'s backlog
    /// (also in `pending_events`).
    pub backlog_events: u64,
    /// Each partition of the hub, in the order of its ids.
    pub partitions: Vec<PartitionStats>,
}

/// One partition's numbers.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct PartitionStats {
    /// The partition id.
    pub id: String,
    /// Whether keyless events may go to it now: `false` while
    /// [adaptive routing](crate::ProducerBuilder::adaptive_routing) avoids it.
    pub available: bool,
    /// Its numbers.
    pub stats: SendStats,
}

/// What a partition (or the whole producer) holds and has done.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SendStats {
    /// Events accepted and without an outcome handed out yet, as
    /// [`Producer::pending`](crate::Producer::pending) counts them.
    pub pending_events: u64,
    /// Their bodies' bytes (of the events in memory).
    pub pending_bytes: u64,
    /// Batches being sent now (tries and retries included).
    pub in_flight_batches: u64,
    /// Their events.
    pub in_flight_events: u64,
    /// Batches the service stored.
    pub batches_published: u64,
    /// Events the service stored.
    pub events_published: u64,
    /// The stored batches' encoded bytes.
    pub bytes_published: u64,
    /// Batches that failed (abandoned ones are not failures).
    pub batches_failed: u64,
    /// Events of failed batches, and events refused before batching.
    pub events_failed: u64,
    /// Events handed back unsent (an abandoning close, a cleared partition).
    pub events_abandoned: u64,
    /// Tries beyond the first, by the producer's retry policy.
    pub retries: u64,
    /// The last failure's error, as text.
    pub last_error: Option<String>,
    /// How full the stored batches were on average: their bytes over the largest a
    /// batch may be (0 before any).
    pub mean_batch_fill: f64,
    /// Events per stored batch on average (0 before any).
    pub mean_batch_events: f64,
    /// How long sends took, from the stack's call to its result (retries included).
    pub send_latency: Latency,
}

/// Send latency percentiles, in milliseconds, within about 6% (an HdrHistogram with
/// one significant digit: small enough to keep one per partition).
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Latency {
    /// Sends measured.
    pub count: u64,
    /// The median.
    pub p50_ms: f64,
    /// The 90th percentile.
    pub p90_ms: f64,
    /// The 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
}

impl Producer {
    /// A snapshot of the producer's numbers, per partition and in total: what is
    /// pending and in flight now, what was published and what failed, retries, the
    /// last error, how full batches are, and send latency percentiles.
    ///
    /// Cheap enough to call every second (a lock per partition, briefly); the
    /// OpenTelemetry metrics read the same counters.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emulator = eventhubs_emulator::Emulator::builder().hub("eh1", 2).start().await?;
    /// use streaming_producer::{EventData, Producer};
    ///
    /// let (mut producer, _outcomes) = Producer::builder()
    ///     .connection_string(&emulator.connection_string_for("eh1"))
    ///     .build()
    ///     .await?;
    /// producer.publish(EventData::new("one").with_partition_id("1")).await?;
    /// let stats = producer.stats();
    /// assert_eq!(stats.total.events_published, 1);
    /// assert_eq!(stats.partitions[1].id, "1");
    /// assert_eq!(stats.partitions[1].stats.batches_published, 1);
    /// assert_eq!(stats.total.send_latency.count, 1);
    /// # producer.close().await?;
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> ProducerStats {
        let spool = self.shared.spool.as_ref();
        let ids = self.router.ids();
        let parts = ids.iter().enumerate().map(|(i, id)| {
            let (events, bytes) = self.shared.pending_with_bytes(Index(i));
            let backlog = spool.map_or(0, |s| s.backlog_of(id));
            PartitionState {
                id: id.clone(),
                available: !self.router.health.avoided(i),
                pending: (events + backlog, bytes),
            }
        });
        self.shared
            .stats
            .snapshot(parts, spool.map_or(0, |s| s.backlog()))
    }
}

impl SendStats {
    pub(super) fn set_means(&mut self, max_batch_bytes: usize) {
        if self.batches_published > 0 {
            let batches = self.batches_published as f64;
            self.mean_batch_events = self.events_published as f64 / batches;
            self.mean_batch_fill =
                self.bytes_published as f64 / batches / max_batch_bytes.max(1) as f64;
        }
    }

    /// Adds `other`'s counts and state to these (the latency and means are made
    /// from the sums afterwards).
    pub(super) fn add(&mut self, other: &SendStats) {
        self.pending_events += other.pending_events;
        self.pending_bytes += other.pending_bytes;
        self.in_flight_batches += other.in_flight_batches;
        self.in_flight_events += other.in_flight_events;
        self.batches_published += other.batches_published;
        self.events_published += other.events_published;
        self.bytes_published += other.bytes_published;
        self.batches_failed += other.batches_failed;
        self.events_failed += other.events_failed;
        self.events_abandoned += other.events_abandoned;
        self.retries += other.retries;
        if other.last_error.is_some() {
            self.last_error.clone_from(&other.last_error);
        }
    }
}

impl Latency {
    pub(super) fn of(h: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}
