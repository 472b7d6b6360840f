//! A custom tower layer in the producer's stack: here one that counts events per
//! partition as batches go out. Any `tower::Layer` over `Batch` services fits.
//!
//! `cargo run --example custom_layer`

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use streaming_producer::{Batch, EventData, Producer};
use tower::util::MapRequestLayer;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::report(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (connection_string, _emulator) = common::connect("audited", 3).await?;
    let sent: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let audit = sent.clone();
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&connection_string)
        .max_wait(Duration::from_millis(10))
        .layer(MapRequestLayer::new(move |batch: Batch| {
            *audit
                .lock()
                .unwrap()
                .entry(batch.partition().to_owned())
                .or_default() += batch.len();
            batch
        }))
        .build()
        .await?;

    let sending = async {
        for i in 0..300 {
            producer
                .enqueue(EventData::new(format!("event {i}")))
                .await?;
        }
        producer.close().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    // Outcomes are read while sending: unread, they would hold the producer's room.
    let reading = async {
        while let Some(outcome) = outcomes.next().await {
            outcome.result?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let (sending, reading) = tokio::join!(sending, reading);
    sending?;
    reading?;
    let sent = sent.lock().unwrap();
    println!("events per partition, as seen by the layer: {sent:?}");
    assert_eq!(sent.values().sum::<usize>(), 300);
    Ok(())
}
