//! Kafka-style publishing: each record sent with its own delivery future (as
//! rdkafka's `FutureProducer::send` gives one), and a record whose delivery failed
//! with a retryable error sent again by the application. The producer still batches:
//! the receipts of many records in flight resolve as their batches' outcomes come.
//!
//! `cargo run --example kafka_style`

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use streaming_producer::{EventData, Producer, RetryPolicy};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::report(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (connection_string, emulator) = common::connect("clicks", 4).await?;
    if let Some(emulator) = &emulator {
        // Make the service throttle every third transfer, to have failures to handle.
        emulator.add_fault("throttle,every=3".parse()?);
    }
    let (mut producer, outcomes) = Producer::builder()
        .connection_string(&connection_string)
        .max_wait(Duration::from_millis(5))
        // A small bound, so that the clicks go in many batches.
        .max_pending_events(200)
        // No built-in retries here: the application handles delivery reports itself.
        .retry_policy(RetryPolicy::none())
        .build()
        .await?;
    // Receipts only: the batch outcomes are not read, so they are dropped.
    drop(outcomes);

    // Every record's delivery future; enqueueing waits only for room (the pending
    // bound), so at most that many are ever in flight however many records there are.
    let mut deliveries = FuturesUnordered::new();
    for i in 0..1000 {
        let click = EventData::new(format!("click {i}"));
        deliveries.push(producer.enqueue_with_receipt(click).await?);
    }
    let (mut delivered, mut resent) = (0, 0);
    while let Some(delivery) = deliveries.next().await {
        match delivery {
            Ok(_) => delivered += 1,
            Err(failed) if failed.error().is_retryable() => {
                resent += 1;
                let click = failed
                    .into_event()
                    .ok_or("a failed record came back empty")?;
                deliveries.push(producer.enqueue_with_receipt(click).await?);
            }
            Err(failed) => return Err(failed.into()),
        }
    }
    producer.close().await?;
    println!("delivered {delivered} clicks, {resent} of them sent again after a retryable failure");
    assert_eq!(delivered, 1000);
    Ok(())
}
