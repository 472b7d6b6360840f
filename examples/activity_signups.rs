//! Activity sign-ups: every sign-up for an activity is keyed by the activity, so all of
//! them land on one partition, in order, where a consumer can count seats without
//! coordinating with other partitions.
//!
//! `cargo run --example activity_signups`

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use streaming_producer::{EventData, Producer};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::report(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (connection_string, _emulator) = common::connect("signups", 4).await?;
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&connection_string)
        .max_wait(Duration::from_millis(20))
        .build()
        .await?;

    let activities = ["climbing", "pottery", "salsa", "chess", "rowing", "choir"];
    let sending = async {
        for (i, activity) in activities.iter().cycle().take(120).enumerate() {
            producer
                .enqueue(
                    EventData::new(format!("member {i} signs up for {activity}"))
                        .with_partition_key(*activity),
                )
                .await?;
        }
        producer.close().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    // Outcomes are read while sending: unread, they would hold the producer's room.
    let reading = async {
        let mut partitions_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        while let Some(outcome) = outcomes.next().await {
            outcome.result?;
            for body in outcome.events.bodies() {
                let text = String::from_utf8_lossy(body).into_owned();
                let activity = text.rsplit(' ').next().unwrap_or_default().to_owned();
                partitions_of
                    .entry(activity)
                    .or_default()
                    .insert(outcome.partition.clone());
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(partitions_of)
    };
    let (sent, partitions_of) = tokio::join!(sending, reading);
    sent?;
    let partitions_of = partitions_of?;
    for (activity, partitions) in &partitions_of {
        println!("{activity:>9}: partition {partitions:?}");
        assert_eq!(partitions.len(), 1, "one activity, one partition");
    }
    Ok(())
}
