//! OpenTelemetry metrics (feature `opentelemetry`, on for the tests). A test binary of
//! its own: the meter provider is process-global.

use std::collections::HashMap;
use std::time::Duration;

use eventhubs_emulator::Emulator;
use futures_util::StreamExt;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use streaming_producer::{EventData, Producer, RetryPolicy};

/// Per metric name: (attributes as `key=value` text, value) of each data point.
type Points = HashMap<String, Vec<(String, f64)>>;

fn points(exporter: &InMemoryMetricExporter) -> Points {
    let mut out = Points::new();
    for resource in exporter.get_finished_metrics().unwrap() {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics() {
                let entry = out.entry(metric.name().to_owned()).or_default();
                let text = |attrs: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
                    let mut kv: Vec<String> =
                        attrs.map(|kv| format!("{}={}", kv.key, kv.value)).collect();
                    kv.sort();
                    kv.join(",")
                };
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        for p in sum.data_points() {
                            entry.push((text(&mut p.attributes()), p.value() as f64));
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                        for p in gauge.data_points() {
                            entry.push((text(&mut p.attributes()), p.value() as f64));
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            entry.push((text(&mut p.attributes()), p.count() as f64));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn publish_tries_and_pending_events_are_measured() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());

    let emulator = Emulator::builder().hub("metered", 2).start().await.unwrap();
    // The first try on partition 1 is throttled, then retried; the first batch on
    // partition 0 is stored but acknowledged only after 3 s, and with one send in
    // flight per partition all six events of partition 0 wait for it.
    emulator.add_fault("throttle,partition=1,count=1".parse().unwrap());
    emulator.add_fault("delay,ms=3000,partition=0,count=1".parse().unwrap());
    let (mut producer, outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("metered"))
        .max_wait(Duration::from_millis(1))
        .retry_policy(RetryPolicy::default().with_initial_delay(Duration::from_millis(5)))
        .build()
        .await
        .unwrap();
    for i in 0..10 {
        let partition = if i < 6 { "0" } else { "1" };
        producer
            .enqueue(EventData::new(format!("{i}")).with_partition_id(partition))
            .await
            .unwrap();
    }
    provider.force_flush().unwrap();
    let pending = points(&exporter)
        .remove("eventhubs.producer.pending_events")
        .expect("the pending gauge");
    assert!(
        pending.iter().any(|(attrs, v)| (6.0..=10.0).contains(v)
            && attrs.contains("messaging.destination.name=metered")
            && attrs.contains("eventhubs.producer.identifier=")),
        "{pending:?}"
    );

    producer.close().await.unwrap();
    let outcomes: Vec<_> = outcomes.collect().await;
    assert!(outcomes.iter().all(|o| o.is_success()));
    exporter.reset();
    provider.force_flush().unwrap();
    let all = points(&exporter);

    let sent = &all["messaging.client.sent.messages"];
    let total = |filter: &dyn Fn(&str) -> bool| -> f64 {
        sent.iter().filter(|(a, _)| filter(a)).map(|(_, v)| v).sum()
    };
    assert!(sent
        .iter()
        .all(|(a, _)| a.contains("messaging.system=eventhubs")
            && a.contains("messaging.operation.name=send")));
    let ok = |a: &str| !a.contains("error.type");
    assert_eq!(
        total(&|a| ok(a) && a.contains("partition.id=0")),
        6.0,
        "{sent:?}"
    );
    assert_eq!(
        total(&|a| ok(a) && a.contains("partition.id=1")),
        4.0,
        "{sent:?}"
    );
    // The throttled try is counted with its condition.
    assert!(
        total(&|a| a.contains("error.type=com.microsoft:server-busy")) >= 1.0,
        "{sent:?}"
    );
    // The producer's own counters read what `stats()` reads.
    let stats = producer.stats();
    let counter = |name: &str| -> f64 {
        all[name]
            .iter()
            .filter(|(a, _)| a.contains("messaging.destination.name=metered"))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(counter("eventhubs.producer.published_events"), 10.0);
    assert_eq!(stats.total.events_published, 10);
    assert_eq!(counter("eventhubs.producer.failed_events"), 0.0);
    assert_eq!(
        counter("eventhubs.producer.retries"),
        stats.total.retries as f64
    );
    assert!(stats.partitions[1].stats.retries >= 1, "{stats:?}");
    let durations = &all["messaging.client.operation.duration"];
    let tries: f64 = durations.iter().map(|(_, count)| count).sum();
    assert!(tries >= 3.0, "{durations:?}");
    provider.shutdown().unwrap();
}
