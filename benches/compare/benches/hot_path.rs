//! Micro-benchmarks of the producer's per-event hot path, so that work on the core can
//! see where the time goes:
//!
//! - `enqueue`: one event through `Producer::enqueue` over a batch service that
//!   accepts every batch at once (no network), outcomes read by another task; keyless
//!   and keyed, 100-byte bodies, 4 partitions;
//! - `partition_key`: the service's hash of a key, and the partition it picks;
//! - `encode`: one event encoded and weighed into a batch (`Batch::try_push`), for a
//!   bare event, a keyed one, and one with properties and ids.
//!
//! ```text
//! cargo bench --manifest-path benches/compare/Cargo.toml --bench hot_path
//! ```

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use eventhubs_protocol::partition_key::{hash16, partition_index};
use futures_util::StreamExt;
use streaming_producer::{Batch, EventData, Producer};

/// Runs `iters` enqueues on a fresh producer over a service that accepts every batch.
fn enqueue(runtime: &tokio::runtime::Runtime, iters: u64, keyed: bool) -> Duration {
    runtime.block_on(async move {
        let accept_all =
            tower::service_fn(|_: Batch| async move { Ok::<_, std::convert::Infallible>(()) });
        let (mut producer, mut outcomes) = Producer::builder()
            .max_pending_events(100_000)
            .max_pending_bytes(256 << 20)
            .build_with_service(accept_all, (0..4).map(|p| p.to_string()).collect(), 1 << 20)
            .expect("a valid producer");
        let reader = tokio::spawn(async move {
            let mut n = 0usize;
            while let Some(o) = outcomes.next().await {
                n += o.events.len();
            }
            n
        });
        let body = bytes::Bytes::from(vec![b'x'; 100]);
        let keys: Vec<String> = (0..1000).map(|k| format!("device-{k}")).collect();
        let start = Instant::now();
        for i in 0..iters {
            let mut event = EventData::new(body.clone());
            if keyed {
                event = event.with_partition_key(keys[(i % 1000) as usize].as_str());
            }
            producer.enqueue(event).await.expect("the producer is open");
        }
        producer.close().await.expect("close");
        let elapsed = start.elapsed();
        assert_eq!(reader.await.unwrap() as u64, iters);
        elapsed
    })
}

fn bench_enqueue(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("enqueue");
    group.throughput(Throughput::Elements(1));
    group.bench_function("keyless_100B", |b| {
        b.iter_custom(|iters| enqueue(&runtime, iters, false))
    });
    group.bench_function("keyed_100B", |b| {
        b.iter_custom(|iters| enqueue(&runtime, iters, true))
    });
    group.finish();
}

fn bench_partition_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("partition_key");
    group.bench_function("hash16_short_key", |b| {
        b.iter(|| hash16(black_box("device-417")))
    });
    let long = "a-much-longer-partition-key-of-a-tenant-and-a-device-0123456789";
    group.bench_function("hash16_64B_key", |b| b.iter(|| hash16(black_box(long))));
    group.bench_function("partition_index_32", |b| {
        b.iter(|| partition_index(black_box("device-417"), black_box(32)))
    });
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    let body = bytes::Bytes::from(vec![b'x'; 100]);
    let shapes: [(&str, EventData); 3] = [
        ("bare_100B", EventData::new(body.clone())),
        (
            "keyed_100B",
            EventData::new(body.clone()).with_partition_key("device-417"),
        ),
        (
            "properties_and_ids_100B",
            EventData::new(body.clone())
                .with_message_id("msg-0001")
                .with_correlation_id("corr-0001")
                .with_content_type("application/json")
                .with_property("tenant", "contoso")
                .with_property("attempt", 3i64),
        ),
    ];
    for (name, event) in shapes {
        group.bench_function(name, |b| {
            // A fresh batch each time: its first push also sizes its vectors.
            b.iter_batched_ref(
                || (Batch::new("0"), Some(event.clone())),
                |(batch, event)| batch.try_push(event.take().unwrap(), 1 << 20).is_ok(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_enqueue, bench_partition_key, bench_encode);
criterion_main!(benches);
