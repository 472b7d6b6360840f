//! Radio listeners: bursts when a show starts, then long quiet gaps. `max_wait` bounds how
//! long a lone event waits: the quiet-period events still go out within it.
//!
//! `cargo run --example radio_listeners`

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use streaming_producer::{EventData, Producer};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::report(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (connection_string, _emulator) = common::connect("listeners", 2).await?;
    let max_wait = Duration::from_millis(200);
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&connection_string)
        .max_wait(max_wait)
        .build()
        .await?;

    // A burst of 500 tune-ins: they travel in a few dense batches.
    let burst = 500;
    let burst_start = Instant::now();
    let sending = async {
        for i in 0..burst {
            producer
                .enqueue(EventData::new(format!("tune-in {i}")).with_partition_key("station-7"))
                .await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    // The burst's outcomes are read while it is sent: unread, they would hold the
    // producer's room.
    let reading = async {
        let (mut events, mut batches) = (0, 0);
        while events < burst {
            let outcome = outcomes.next().await.ok_or("the outcomes ended")?;
            outcome.result?;
            events += outcome.events.len();
            batches += 1;
        }
        Ok::<_, Box<dyn std::error::Error>>(batches)
    };
    let (sent, batches) = tokio::join!(sending, reading);
    sent?;
    println!(
        "burst: {burst} events in {} batch(es), all published after {:?}",
        batches?,
        burst_start.elapsed()
    );

    // Then a lone tune-out in a quiet hour: it waits at most max_wait, not for a full batch.
    let lone = Instant::now();
    producer
        .enqueue(EventData::new("tune-out").with_partition_key("station-7"))
        .await?;
    let outcome = outcomes.next().await.expect("the lone event's batch");
    let waited = lone.elapsed();
    outcome.result?;
    println!("lone event published after {waited:?} (max_wait {max_wait:?})");
    assert!(waited < max_wait * 5, "published within a few max_waits");
    producer.close().await?;
    Ok(())
}
