//! A receipt per event: request handlers that answer only once their event is stored,
//! as an HTTP endpoint for orders would. Each handler task publishes on its own clone
//! of the producer and waits for its event's result; the producer batches all of them
//! together. With idempotent retries each receipt carries the event's producer
//! sequence number, so an order can be traced to where it is stored.
//!
//! At the end, `Producer::stats()` says what was published, how full batches were
//! and how long sends took.
//!
//! `cargo run --example receipts`

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use streaming_producer::{EventData, Producer};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::report(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (connection_string, _emulator) = common::connect("orders", 4).await?;
    let (producer, outcomes) = Producer::builder()
        .connection_string(&connection_string)
        .idempotent_retries(true)
        .max_wait(Duration::from_millis(20))
        .build()
        .await?;
    // The handlers read their receipts; nobody reads the batch outcomes.
    drop(outcomes);

    // 500 "requests" at once, each from a task of its own. However many come, the
    // producer's pending bound holds them back, and each handler waits only for its
    // own event.
    let mut handlers = tokio::task::JoinSet::new();
    for order in 0..500u32 {
        let mut producer = producer.clone();
        handlers.spawn(async move {
            let customer = format!("customer-{}", order % 37);
            let event = EventData::new(format!(r#"{{"order":{order},"customer":"{customer}"}}"#))
                .with_partition_key(customer)
                .with_content_type("application/json");
            // The answer to the request: where the order is stored, or why not.
            match producer.publish(event).await {
                Ok(delivered) => Ok((order, delivered)),
                Err(failed) => Err(format!("order {order}: {failed}")),
            }
        });
    }
    let mut stored = Vec::new();
    while let Some(answer) = handlers.join_next().await {
        stored.push(answer??);
    }
    stored.sort_by_key(|(order, _)| *order);
    for (order, delivered) in stored.iter().take(3) {
        println!(
            "order {order}: stored in partition {} as producer sequence number {}",
            delivered.partition(),
            delivered
                .sequence_number()
                .map_or("-".to_owned(), |n| n.to_string())
        );
    }

    let mut producer = producer;
    producer.close().await?;
    let stats = producer.stats();
    println!(
        "{} orders stored in {} batches ({:.1} events a batch); send latency p50 {:.1} ms, p99 {:.1} ms",
        stats.total.events_published,
        stats.total.batches_published,
        stats.total.mean_batch_events,
        stats.total.send_latency.p50_ms,
        stats.total.send_latency.p99_ms,
    );
    assert_eq!(stored.len(), 500);
    assert_eq!(stats.total.events_published, 500);
    Ok(())
}
