//! Kafka-style publishing: stream events into the producer and handle per-batch
//! results as delivery reports, re-publishing what failed with a retryable error.
//! (`send_all` feeds the stream without closing the producer, which `forward` would do.)
//!
//! `cargo run --example kafka_style`

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use futures_util::{stream, SinkExt, StreamExt};
use streaming_producer::{EventData, Producer, RetryPolicy};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (connection_string, emulator) = common::connect("clicks", 4).await;
    if let Some(emulator) = &emulator {
        // Make the service throttle every fifth batch, to have failures to handle.
        emulator.add_fault("throttle,every=3".parse()?);
    }
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&connection_string)
        .max_wait(Duration::from_millis(5))
        // No built-in retries here: the application handles delivery reports itself.
        .retry_policy(RetryPolicy::none())
        .build()
        .await?;
    let mut sink = producer.clone();
    let feeding = tokio::spawn(async move {
        let mut clicks = stream::iter(0..1000).map(|i| Ok(EventData::new(format!("click {i}"))));
        sink.send_all(&mut clicks).await
    });

    let (mut delivered, mut republished) = (0, 0);
    while delivered < 1000 {
        let report = outcomes
            .next()
            .await
            .expect("reports until all are delivered");
        match report.result {
            Ok(()) => delivered += report.events.len(),
            Err(e) if e.is_retryable() => {
                republished += report.events.len();
                producer.enqueue_all(report.events).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    feeding.await??;
    producer.close().await?;
    println!("delivered {delivered} clicks, {republished} of them after a retryable failure");
    assert_eq!(delivered, 1000);
    Ok(())
}
