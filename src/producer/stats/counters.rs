//! The counters the driver keeps per partition as it sends and reports batches, and
//! their snapshot: [`Stats`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::{Latency, PartitionStats, ProducerStats, SendStats};

/// Latency percentiles cover the last one to two of these.
const WINDOW: Duration = Duration::from_secs(10);

/// Send latencies are kept in microseconds, from 1 µs to an hour.
const LATENCY_MAX_MICROS: u64 = 3_600_000_000;

/// What the driver counts per partition.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    batches_published: AtomicU64,
    events_published: AtomicU64,
    bytes_published: AtomicU64,
    batches_failed: AtomicU64,
    events_failed: AtomicU64,
    events_abandoned: AtomicU64,
    retries: AtomicU64,
    in_flight_batches: AtomicUsize,
    in_flight_events: AtomicUsize,
    last_error: Mutex<Option<String>>,
    latency: Mutex<Option<Window>>,
}

/// Latencies of the window under way and of the one before.
#[derive(Debug)]
struct Window {
    started: Instant,
    current: Histogram<u64>,
    previous: Option<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 1).expect("valid bounds")
}

impl Window {
    fn record(&mut self, took: Duration) {
        let now = Instant::now();
        if now.duration_since(self.started) >= WINDOW {
            let old = std::mem::replace(&mut self.current, histogram());
            // A window more than one old has nothing recent in it.
            self.previous = (now.duration_since(self.started) < 2 * WINDOW).then_some(old);
            self.started = now;
        }
        let micros = (took.as_micros() as u64).clamp(1, LATENCY_MAX_MICROS);
        self.current.saturating_record(micros);
    }

    /// Adds the recent latencies to `into`.
    fn add_recent(&self, into: &mut Histogram<u64>) {
        let age = self.started.elapsed();
        if age < WINDOW {
            let _ = into.add(&self.current);
            if let Some(previous) = &self.previous {
                let _ = into.add(previous);
            }
        } else if age < 2 * WINDOW {
            let _ = into.add(&self.current);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Counters {
    /// A send of `events` events began.
    pub(crate) fn sending(&self, events: usize) {
        self.in_flight_batches.fetch_add(1, Ordering::Relaxed);
        self.in_flight_events.fetch_add(events, Ordering::Relaxed);
    }

    /// A send of `events` events that began with [`sending`](Self::sending) ended
    /// after `took`, having been retried `retries` times.
    pub(crate) fn sent(&self, events: usize, took: Duration, retries: u32) {
        self.in_flight_batches.fetch_sub(1, Ordering::Relaxed);
        self.in_flight_events.fetch_sub(events, Ordering::Relaxed);
        self.retries
            .fetch_add(u64::from(retries), Ordering::Relaxed);
        let mut latency = lock(&self.latency);
        latency
            .get_or_insert_with(|| Window {
                started: Instant::now(),
                current: histogram(),
                previous: None,
            })
            .record(took);
    }

    /// A batch's outcome: stored (with its encoded size), failed, or abandoned.
    pub(crate) fn outcome(&self, events: usize, bytes: usize, result: &Result<(), crate::Error>) {
        let events = events as u64;
        match result {
            Ok(()) => {
                self.batches_published.fetch_add(1, Ordering::Relaxed);
                self.events_published.fetch_add(events, Ordering::Relaxed);
                self.bytes_published
                    .fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Err(e) if e.is_abandoned() => {
                self.events_abandoned.fetch_add(events, Ordering::Relaxed);
            }
            Err(e) => {
                self.batches_failed.fetch_add(1, Ordering::Relaxed);
                self.events_failed.fetch_add(events, Ordering::Relaxed);
                *lock(&self.last_error) = Some(e.to_string());
            }
        }
    }

    /// Events stored so far (for the OpenTelemetry counter).
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    pub(crate) fn events_published(&self) -> u64 {
        self.events_published.load(Ordering::Relaxed)
    }

    /// Events that failed so far (for the OpenTelemetry counter).
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    pub(crate) fn events_failed(&self) -> u64 {
        self.events_failed.load(Ordering::Relaxed)
    }

    /// Retries so far (for the OpenTelemetry counter).
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// These counters as numbers, with `pending` (events, bytes) from the lanes.
    fn read(
        &self,
        pending: (u64, u64),
        max_batch_bytes: usize,
    ) -> (SendStats, Option<Histogram<u64>>) {
        let batches = self.batches_published.load(Ordering::Relaxed);
        let events = self.events_published.load(Ordering::Relaxed);
        let bytes = self.bytes_published.load(Ordering::Relaxed);
        let mut stats = SendStats {
            pending_events: pending.0,
            pending_bytes: pending.1,
            in_flight_batches: self.in_flight_batches.load(Ordering::Relaxed) as u64,
            in_flight_events: self.in_flight_events.load(Ordering::Relaxed) as u64,
            batches_published: batches,
            events_published: events,
            bytes_published: bytes,
            batches_failed: self.batches_failed.load(Ordering::Relaxed),
            events_failed: self.events_failed.load(Ordering::Relaxed),
            events_abandoned: self.events_abandoned.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
            ..SendStats::default()
        };
        stats.set_means(max_batch_bytes);
        let recent = lock(&self.latency).as_ref().map(|window| {
            let mut recent = histogram();
            window.add_recent(&mut recent);
            recent
        });
        if let Some(recent) = &recent {
            stats.send_latency = Latency::of(recent);
        }
        (stats, recent)
    }
}

/// The driver's counters for every partition the hub can have, and for events that
/// never had one.
#[derive(Debug)]
pub(crate) struct Stats {
    partitions: Box<[Counters]>,
    /// Events refused before they had a partition (an unknown partition id).
    unrouted: Counters,
    max_batch_bytes: usize,
}

/// What [`Stats::snapshot`] reads of one partition besides the counters.
pub(crate) struct PartitionState {
    pub(crate) id: String,
    pub(crate) available: bool,
    /// Pending events and their bodies' bytes.
    pub(crate) pending: (u64, u64),
}

impl Stats {
    pub(crate) fn new(partitions: usize, max_batch_bytes: usize) -> Self {
        Self {
            partitions: (0..partitions).map(|_| Counters::default()).collect(),
            unrouted: Counters::default(),
            max_batch_bytes,
        }
    }

    /// The counters of the partition at `index`, or those of events with none.
    pub(crate) fn of(&self, index: Option<usize>) -> &Counters {
        index
            .and_then(|i| self.partitions.get(i))
            .unwrap_or(&self.unrouted)
    }

    /// Every partition's counters and the unrouted ones, for the OpenTelemetry
    /// callbacks.
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    pub(crate) fn all(&self) -> impl Iterator<Item = &Counters> {
        self.partitions
            .iter()
            .chain(std::iter::once(&self.unrouted))
    }

    /// The snapshot, from the state of each partition `parts` gives (in index order).
    pub(crate) fn snapshot(
        &self,
        parts: impl IntoIterator<Item = PartitionState>,
        backlog: u64,
    ) -> ProducerStats {
        let mut total = SendStats::default();
        let mut latency = histogram();
        let mut partitions = Vec::new();
        for (counters, part) in self.partitions.iter().zip(parts) {
            let (stats, recent) = counters.read(part.pending, self.max_batch_bytes);
            total.add(&stats);
            if let Some(recent) = recent {
                let _ = latency.add(&recent);
            }
            partitions.push(PartitionStats {
                id: part.id,
                available: part.available,
                stats,
            });
        }
        let (unrouted, _) = self.unrouted.read((0, 0), self.max_batch_bytes);
        total.add(&unrouted);
        total.set_means(self.max_batch_bytes);
        total.send_latency = Latency::of(&latency);
        ProducerStats {
            unix_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            total,
            backlog_events: backlog,
            partitions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn latency_covers_the_last_window_or_two() {
        let counters = Counters::default();
        for ms in [1u64, 2, 3, 4, 100] {
            counters.sending(1);
            counters.sent(1, Duration::from_millis(ms), 0);
        }
        let (stats, _) = counters.read((0, 0), 1000);
        assert_eq!(stats.send_latency.count, 5);
        assert!(
            (2.8..=3.2).contains(&stats.send_latency.p50_ms),
            "{stats:?}"
        );
        assert!(
            (94.0..=106.0).contains(&stats.send_latency.max_ms),
            "{stats:?}"
        );
        assert_eq!(stats.in_flight_batches, 0);
        tokio::time::advance(WINDOW).await;
        counters.sending(1);
        counters.sent(1, Duration::from_millis(7), 1);
        let (stats, _) = counters.read((0, 0), 1000);
        assert_eq!(
            stats.send_latency.count, 6,
            "the window before still counts"
        );
        assert_eq!(stats.retries, 1);
        tokio::time::advance(2 * WINDOW).await;
        let (stats, _) = counters.read((0, 0), 1000);
        assert_eq!(stats.send_latency, Latency::default(), "nothing recent");
    }

    #[test]
    fn outcomes_count_as_stored_failed_or_abandoned_with_means() {
        let counters = Counters::default();
        counters.outcome(10, 500, &Ok(()));
        counters.outcome(30, 1500, &Ok(()));
        counters.outcome(5, 100, &Err(crate::Error::rejected("amqp:x", "no")));
        counters.outcome(7, 100, &Err(crate::Error::abandoned()));
        let (stats, _) = counters.read((3, 30), 4000);
        assert_eq!(
            (
                stats.batches_published,
                stats.events_published,
                stats.bytes_published
            ),
            (2, 40, 2000)
        );
        assert_eq!((stats.batches_failed, stats.events_failed), (1, 5));
        assert_eq!(stats.events_abandoned, 7);
        assert_eq!(stats.mean_batch_events, 20.0);
        assert_eq!(stats.mean_batch_fill, 0.25);
        assert!(stats.last_error.unwrap().contains("amqp:x"));
        assert_eq!((stats.pending_events, stats.pending_bytes), (3, 30));
    }
}
