//! `flush` publishes what is pending and waits for its outcomes; `close_abandon` hands
//! events that were not sent yet back to the application (here, to save them for later).
//!
//! `cargo run --example flush_and_abandon`

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
    let (connection_string, _emulator) = common::connect("jobs", 2).await?;
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&connection_string)
        // Batches would wait a long time on their own...
        .max_wait(Duration::from_secs(3600))
        .delivery_timeout(Duration::from_secs(7200))
        .build()
        .await?;

    let sending = async {
        for i in 0..10 {
            producer.enqueue(EventData::new(format!("job {i}"))).await?;
        }
        // ...but a flush publishes them now and returns once they have outcomes.
        producer.flush().await?;
        println!("flushed: the first ten jobs have their outcomes");

        for i in 10..15 {
            producer.enqueue(EventData::new(format!("job {i}"))).await?;
        }
        // Shutting down in a hurry: the last five come back instead of being published.
        producer.close_abandon().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    // Outcomes are read while sending: unread, they would hold the producer's room.
    let reading = async {
        let (mut published, mut handed_back) = (0, Vec::new());
        while let Some(outcome) = outcomes.next().await {
            if outcome.is_abandoned() {
                handed_back.extend(outcome.events);
            } else {
                outcome.result?;
                published += outcome.events.len();
            }
        }
        Ok::<_, Box<dyn std::error::Error>>((published, handed_back))
    };
    let (sent, read) = tokio::join!(sending, reading);
    sent?;
    let (published, handed_back) = read?;
    println!("published {published}, handed back {}", handed_back.len());
    assert_eq!((published, handed_back.len()), (10, 5));
    Ok(())
}
