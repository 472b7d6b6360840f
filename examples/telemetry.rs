//! User telemetry: bursty, sparse events from many devices, forwarded as a stream.
//! Each device's readings are keyed by device id, so they stay in order on one partition.
//!
//! `cargo run --example telemetry` (embedded emulator; set EVENTHUBS_CONNECTION_STRING
//! with EntityPath for a real hub)

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use futures_util::{stream, StreamExt};
use streaming_producer::{EventData, Producer};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::report(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (connection_string, _emulator) = common::connect("telemetry", 4).await?;
    let (producer, mut outcomes) = Producer::builder()
        .connection_string(&connection_string)
        .max_wait(Duration::from_millis(100))
        .build()
        .await?;

    // Bursts of 200 readings, then a pause: a sparse, bursty source.
    let readings = stream::iter(0..2000u32).then(|i| async move {
        if i % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let device = format!("device-{}", i % 25);
        Ok(
            EventData::new(format!(r#"{{"device":"{device}","reading":{i}}}"#))
                .with_partition_key(device)
                .with_content_type("application/json"),
        )
    });
    let publishing = tokio::spawn(readings.forward(producer));

    let (mut events, mut batches) = (0, 0);
    while let Some(outcome) = outcomes.next().await {
        outcome.result?;
        events += outcome.events.len();
        batches += 1;
    }
    publishing.await??;
    println!("telemetry: {events} readings published in {batches} batches");
    assert_eq!(events, 2000);
    Ok(())
}
