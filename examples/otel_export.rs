//! OpenTelemetry export. The producer's `tracing` spans (one per publish try, tagged
//! with the messaging conventions) go to OpenTelemetry through `tracing-opentelemetry`;
//! with the `opentelemetry` feature the producer also records metrics (events sent and
//! try durations per partition, pending events) and stamps each event enqueued inside
//! a span with that span's `traceparent`, so consumers continue the trace.
//!
//! `cargo run --example otel_export` prints spans and metrics with the stdout
//! exporters. `cargo run --example otel_export --features otlp` sends them over
//! OTLP/HTTP to a collector at `OTEL_EXPORTER_OTLP_ENDPOINT` (default
//! `http://localhost:4318`).

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use futures_util::StreamExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use streaming_producer::{EventData, Producer};
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

type Providers = (SdkTracerProvider, SdkMeterProvider);

#[cfg(not(feature = "otlp"))]
fn providers() -> Result<Providers, Box<dyn std::error::Error>> {
    let traces = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    let metrics = SdkMeterProvider::builder()
        .with_periodic_exporter(opentelemetry_stdout::MetricExporter::default())
        .build();
    Ok((traces, metrics))
}

#[cfg(feature = "otlp")]
fn providers() -> Result<Providers, Box<dyn std::error::Error>> {
    use opentelemetry_otlp::WithExportConfig as _;
    // The standard variable names the collector's base address.
    let base = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .unwrap_or_else(|_| "http://localhost:4318".to_owned());
    let base = base.trim_end_matches('/');
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/traces"))
        .build()?;
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/metrics"))
        .build()?;
    // Batch and periodic export run on their own threads, where the blocking HTTP
    // client may block.
    Ok((
        SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .build(),
        SdkMeterProvider::builder()
            .with_periodic_exporter(metrics)
            .build(),
    ))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::report(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (traces, metrics) = providers()?;
    // Set before the producer is built: it takes its instruments from the global
    // meter provider.
    opentelemetry::global::set_meter_provider(metrics.clone());
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(traces.tracer("otel_export example")))
        .init();

    let (connection_string, _emulator) = common::connect("traced", 2).await?;
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&connection_string)
        .max_wait(Duration::from_millis(10))
        .build()
        .await?;
    // Events enqueued while handling a request carry the request's trace context.
    let sending = async {
        async {
            for i in 0..50 {
                producer
                    .enqueue(EventData::new(format!("traced event {i}")))
                    .await?;
            }
            Ok::<_, streaming_producer::EnqueueError>(())
        }
        .instrument(tracing::info_span!("handle request"))
        .await?;
        producer.close().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    // Outcomes are read while sending: unread, they would hold the producer's room.
    let reading = async {
        let mut batches = 0;
        while let Some(outcome) = outcomes.next().await {
            outcome.result?;
            batches += 1;
        }
        Ok::<_, Box<dyn std::error::Error>>(batches)
    };
    let (sent, batches) = tokio::join!(sending, reading);
    sent?;
    let batches = batches?;
    traces.force_flush()?;
    metrics.force_flush()?;
    traces.shutdown()?;
    metrics.shutdown()?;
    println!("exported one publish span per batch ({batches} batches) and the producer's metrics");
    Ok(())
}
