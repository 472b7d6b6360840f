//! Kafka-style publishing: stream events into the producer and handle per-batch
//! results as delivery reports, re-publishing what failed with a retryable error.
//! (`send_all` feeds the stream without closing the producer, which `forward` would do.)
//!
//! `cargo run --example kafka_style`

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use futures_util::{stream, SinkExt, StreamExt};
use streaming_producer::{EnqueueError, EventData, Events, Producer, RetryPolicy};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::report(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (connection_string, emulator) = common::connect("clicks", 4).await?;
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
    // Failed events are re-published by a task of their own: the loop below must go on
    // reading reports, as reading them is what gives the producer its room back.
    let (retry, mut retries) = tokio::sync::mpsc::unbounded_channel::<Events>();
    let mut republisher = producer.clone();
    let republishing = tokio::spawn(async move {
        while let Some(events) = retries.recv().await {
            republisher.enqueue_all(events).await?;
        }
        Ok::<_, EnqueueError>(())
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
                retry
                    .send(report.events)
                    .map_err(|_| "the republishing task ended")?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    drop(retry);
    feeding.await??;
    republishing.await??;
    producer.close().await?;
    println!("delivered {delivered} clicks, {republished} of them after a retryable failure");
    assert_eq!(delivered, 1000);
    Ok(())
}
