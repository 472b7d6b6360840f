//! Poison messages: an event too large to ever publish, and one the service rejects,
//! are handled from the outcome stream while everything else goes through.
//!
//! `cargo run --example poison_messages`

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use futures_util::StreamExt;
use streaming_producer::{EventData, Producer};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::report(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (connection_string, emulator) = common::connect("orders", 2).await?;
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&connection_string)
        .max_wait(Duration::from_millis(20))
        .build()
        .await?;

    let sending = async {
        producer.enqueue(EventData::new("order 1")).await?;
        // Larger than any batch can be: it fails alone, the others are unaffected.
        producer.enqueue(EventData::new(vec![0u8; 2 << 20])).await?;
        // A partition the hub does not have.
        producer
            .enqueue(EventData::new("order 3").with_partition_id("99"))
            .await?;
        producer.enqueue(EventData::new("order 4")).await?;
        producer.close().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    // Outcomes are read while sending: unread, they would hold the producer's room.
    let reading = async {
        let mut dead_letters = Vec::new();
        let mut published = 0;
        while let Some(outcome) = outcomes.next().await {
            match outcome.result {
                Ok(()) => published += outcome.events.len(),
                Err(e) if !e.is_retryable() => {
                    println!("poison: {} event(s) set aside: {e}", outcome.events.len());
                    dead_letters.extend(outcome.events);
                }
                Err(e) => println!("transient failure, could be re-enqueued: {e}"),
            }
        }
        (published, dead_letters)
    };
    let (sent, (published, dead_letters)) = tokio::join!(sending, reading);
    sent?;
    println!("published {published}, set aside {}", dead_letters.len());
    assert_eq!((published, dead_letters.len()), (2, 2));
    drop(emulator);
    Ok(())
}
