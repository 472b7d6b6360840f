//! OpenTelemetry export: the producer's `tracing` spans (one per publish try, tagged
//! with the messaging conventions) go to OpenTelemetry through `tracing-opentelemetry`.
//!
//! `cargo run --example otel_export` prints them with the stdout exporter.
//! `cargo run --example otel_export --features otlp` sends them over OTLP/HTTP to a
//! collector at `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://localhost:4318`).

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use futures_util::StreamExt;
use opentelemetry::trace::TracerProvider as _;
use streaming_producer::{EventData, Producer};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

type Provider = opentelemetry_sdk::trace::SdkTracerProvider;

#[cfg(not(feature = "otlp"))]
fn provider() -> Result<Provider, Box<dyn std::error::Error>> {
    Ok(Provider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build())
}

#[cfg(feature = "otlp")]
fn provider() -> Result<Provider, Box<dyn std::error::Error>> {
    use opentelemetry_otlp::WithExportConfig as _;
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    // The standard variable names the collector's base address; traces go to /v1/traces.
    if let Ok(base) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        builder = builder.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    // The batch processor exports from its own thread, where the blocking HTTP client
    // may block.
    Ok(Provider::builder()
        .with_batch_exporter(builder.build()?)
        .build())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = provider()?;
    let tracer = provider.tracer("otel_export example");
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .init();

    let (connection_string, _emulator) = common::connect("traced", 2).await;
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&connection_string)
        .max_wait(Duration::from_millis(10))
        .build()
        .await?;
    for i in 0..50 {
        producer
            .enqueue(EventData::new(format!("traced event {i}")))
            .await?;
    }
    producer.close().await?;
    let mut batches = 0;
    while let Some(outcome) = outcomes.next().await {
        outcome.result?;
        batches += 1;
    }
    provider.force_flush()?;
    provider.shutdown()?;
    println!("exported one span per published batch: {batches} batches");
    Ok(())
}
