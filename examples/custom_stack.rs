//! Each partition's batch stack assembled in another order than the producer's own:
//! a rate limit outside the retries (so a retry does not take a second slot), one
//! overall timeout around all tries of a batch, and a log line per try, over the
//! public layers and `AmqpSend`.
//!
//! `cargo run --example custom_stack`

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use streaming_producer::stack::{boxed, AmqpSend};
use streaming_producer::{Batch, EventData, Producer};
use tower::limit::RateLimitLayer;
use tower::timeout::TimeoutLayer;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::report(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (connection_string, _emulator) = common::connect("custom-stack", 4).await?;
    let tries = Arc::new(AtomicUsize::new(0));
    let counter = tries.clone();
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&connection_string)
        .max_wait(Duration::from_millis(20))
        // Called once per partition.
        .stack(move |ctx| {
            let counter = counter.clone();
            let partition = ctx.partition().to_owned();
            let connection = ctx.connection().expect("built from a connection string");
            boxed(
                ServiceBuilder::new()
                    // At most 20 batches a second per partition, whatever the retries.
                    .layer(RateLimitLayer::new(20, Duration::from_secs(1)))
                    .layer(ctx.concurrency_limit())
                    // All tries of a batch together within 30 s.
                    .layer(TimeoutLayer::new(Duration::from_secs(30)))
                    .layer(ctx.retry())
                    .map_request(move |batch: Batch| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        println!("partition {partition}: a try of {} events", batch.len());
                        batch
                    })
                    .layer(ctx.trace())
                    .layer(ctx.timeout())
                    .service(AmqpSend::new(connection)),
            )
        })
        .build()
        .await?;

    let sending = async {
        for i in 0..1000 {
            producer
                .enqueue(
                    EventData::new(format!("reading {i}"))
                        .with_partition_key(format!("sensor-{}", i % 8)),
                )
                .await?;
        }
        producer.close().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    // Outcomes are read while sending: unread, they would hold the producer's room.
    let reading = async {
        let mut published = 0;
        while let Some(outcome) = outcomes.next().await {
            outcome.result?;
            published += outcome.events.len();
        }
        Ok::<_, Box<dyn std::error::Error>>(published)
    };
    let (sent, published) = tokio::join!(sending, reading);
    sent?;
    let published = published?;
    println!(
        "published {published} events in {} tries",
        tries.load(Ordering::Relaxed)
    );
    assert_eq!(published, 1000);
    Ok(())
}
