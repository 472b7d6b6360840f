//! OpenTelemetry export: the producer's `tracing` spans (one per publish try, tagged
//! with the messaging conventions) go to OpenTelemetry through `tracing-opentelemetry`;
//! this example prints them with the stdout exporter. Swap in an OTLP exporter for a
//! collector.
//!
//! `cargo run --example otel_export`

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use futures_util::StreamExt;
use opentelemetry::trace::TracerProvider as _;
use streaming_producer::{EventData, Producer};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
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
