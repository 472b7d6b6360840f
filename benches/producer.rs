//! Producer throughput against the in-process emulator: events/s, CPU time per event
//! (process-wide, emulator included), and mean batch fill, for 100-byte events over 4
//! partitions: keyless, keyed, and with idempotent retries.
//!
//! `cargo bench -p streaming-producer --bench producer [-- EVENTS]`

use std::time::{Duration, Instant};

use eventhubs_emulator::{Emulator, HubConfig, Retention};
use futures_util::StreamExt;
use streaming_producer::{EventData, Producer};

/// CPU time of this process (user + system), from /proc.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

async fn run(label: &str, events: usize, keyed: bool, max_pending: usize, idempotent: bool) {
    let emulator = Emulator::builder()
        .hub_config(HubConfig::new("eh1", 4).retention(Retention::Bytes(32 << 20)))
        .start()
        .await
        .unwrap();
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_pending_events(max_pending)
        .max_pending_bytes(256 << 20)
        .idempotent_retries(idempotent)
        .build()
        .await
        .unwrap();
    let max = producer.max_batch_bytes();
    let reader = tokio::spawn(async move {
        let (mut ok, mut batches, mut bytes) = (0usize, 0usize, 0usize);
        while let Some(o) = outcomes.next().await {
            assert!(o.is_success(), "{:?}", o.result);
            ok += o.events.len();
            batches += 1;
            bytes += o.size_in_bytes;
        }
        (ok, batches, bytes)
    });
    let body = bytes::Bytes::from(vec![b'x'; 100]);
    let cpu0 = cpu_time();
    let start = Instant::now();
    for i in 0..events {
        let mut event = EventData::new(body.clone());
        if keyed {
            event = event.with_partition_key(format!("device-{}", i % 1000));
        }
        producer.enqueue(event).await.unwrap();
    }
    producer.close().await.unwrap();
    let (ok, batches, bytes) = reader.await.unwrap();
    let elapsed = start.elapsed();
    let cpu = cpu_time().zip(cpu0).map(|(a, b)| a.saturating_sub(b));
    assert_eq!(ok, events);
    let per_event_us = cpu
        .map(|c| format!("{:.2}", c.as_secs_f64() * 1e6 / events as f64))
        .unwrap_or_else(|| "n/a".into());
    println!(
        "{label:<28} {events:>9} {:>8.2} {:>12.0} {per_event_us:>10} {batches:>8} {:>7.1}%",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        100.0 * bytes as f64 / (batches as f64 * max as f64),
    );
    emulator.shutdown().await;
}

fn main() {
    let events: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        run("warm-up", 100_000, false, 100_000, false).await;
        println!(
            "{:<28} {:>9} {:>8} {:>12} {:>10} {:>8} {:>8}",
            "100-byte events, 4 partitions",
            "events",
            "seconds",
            "events/s",
            "CPU µs/ev",
            "batches",
            "fill"
        );
        run("keyless, 2500 pending", events, false, 2500, false).await;
        run("keyless, 100k pending", events, false, 100_000, false).await;
        run("keyed, 100k pending", events, true, 100_000, false).await;
        run("keyless idempotent, 100k", events, false, 100_000, true).await;
    });
}
