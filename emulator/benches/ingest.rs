//! Ingest rate of the emulator: full batches (format 0x80013700, just under the 1 MiB
//! `max-message-size`) of 100-byte and 1 KiB events, sent by fe2o3 clients on the same
//! machine, pipelined on one link per partition. Client and emulator share the cores,
//! so the numbers are a lower bound for the emulator alone. Each size runs in memory and
//! with a data directory (in the system's temporary directory), whose writes are
//! handed to the operating system before each acknowledgement.
//!
//! `cargo bench -p eventhubs-emulator --bench ingest [-- EVENTS_PER_SIZE]`

use std::time::{Duration, Instant};

use eventhubs_emulator::{Emulator, EmulatorHandle, HubConfig, Retention};
use fe2o3_amqp::types::{
    messaging::{Body, Data, Message},
    primitives::Binary,
};
use fe2o3_amqp::{Connection, Sendable, Sender, Session};
use serde_amqp::Value;

const PARTITIONS: usize = 4;
const IN_FLIGHT: usize = 4;

fn full_batch(body_size: usize, max_message_size: usize) -> (Sendable<Body<Value>>, usize) {
    use fe2o3_amqp::types::messaging::message::__private::Serializable;
    let event: Message<Body<Value>> = Message::builder()
        .body(Body::Data(
            vec![Data(Binary::from(vec![b'x'; body_size]))].into(),
        ))
        .build();
    let encoded = serde_amqp::to_vec(&Serializable(&event)).unwrap();
    let per_event = encoded.len() + if encoded.len() <= 255 { 5 } else { 8 };
    let count = (max_message_size - 64) / per_event;
    let sections: Vec<Data> = (0..count)
        .map(|_| Data(Binary::from(encoded.clone())))
        .collect();
    let envelope: Message<Body<Value>> =
        Message::builder().body(Body::Data(sections.into())).build();
    let sendable = Sendable::builder()
        .message(envelope)
        .message_format(0x8001_3700)
        .build();
    (sendable, count)
}

async fn publisher(
    addr: std::net::SocketAddr,
    partition: usize,
    batch: Sendable<Body<Value>>,
    batches: usize,
) {
    let url = format!(
        "amqp://{}:{}@{addr}",
        eventhubs_emulator::DEFAULT_KEY_NAME,
        eventhubs_emulator::DEFAULT_KEY
    );
    let mut connection = Connection::open(format!("bench-{partition}"), url.as_str())
        .await
        .unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "bench", format!("eh1/Partitions/{partition}"))
        .await
        .unwrap();
    let mut pending = std::collections::VecDeque::new();
    for _ in 0..batches {
        if pending.len() == IN_FLIGHT {
            let fut: fe2o3_amqp::link::delivery::DeliveryFut<_> = pending.pop_front().unwrap();
            let outcome: Result<_, _> = fut.await;
            assert!(outcome.unwrap().is_accepted());
        }
        pending.push_back(sender.send_batchable_ref(&batch).await.unwrap());
    }
    for fut in pending {
        assert!(fut.await.unwrap().is_accepted());
    }
    sender.close().await.unwrap();
    session.end().await.unwrap();
    connection.close().await.unwrap();
}

/// Events stored so far over all partitions.
fn stored_total(emulator: &EmulatorHandle) -> i64 {
    (0..PARTITIONS)
        .map(|p| {
            emulator
                .partition_info("eh1", &p.to_string())
                .unwrap()
                .last_sequence_number
                + 1
        })
        .sum()
}

async fn run(emulator: &EmulatorHandle, body_size: usize, events: usize) -> (f64, Duration, usize) {
    let (batch, per_batch) = full_batch(
        body_size,
        eventhubs_emulator::DEFAULT_MAX_MESSAGE_SIZE as usize,
    );
    let batches = events.div_ceil(per_batch * PARTITIONS);
    let before: i64 = stored_total(emulator);
    let start = Instant::now();
    let tasks: Vec<_> = (0..PARTITIONS)
        .map(|p| tokio::spawn(publisher(emulator.addr(), p, batch.clone(), batches)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let after: i64 = stored_total(emulator);
    let stored = (after - before) as usize;
    assert_eq!(
        stored,
        batches * per_batch * PARTITIONS,
        "every event stored"
    );
    (stored as f64 / elapsed.as_secs_f64(), elapsed, per_batch)
}

fn main() {
    let events: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("emulator ingest, {PARTITIONS} partitions, full 1 MiB batches, {IN_FLIGHT} in flight per link");
        println!(
            "{:>10} {:>10} {:>12} {:>10} {:>14} {:>10}",
            "store", "event", "events", "seconds", "events/s", "MiB/s"
        );
        let dir = std::env::temp_dir().join(format!("emulator-ingest-{}", std::process::id()));
        for on_disk in [false, true] {
            let _ = std::fs::remove_dir_all(&dir);
            let mut builder = Emulator::builder().hub_config(
                HubConfig::new("eh1", PARTITIONS as u32).retention(Retention::Bytes(64 << 20)),
            );
            if on_disk {
                builder = builder.data_dir(&dir);
            }
            let emulator = builder.start().await.unwrap();
            // Warm-up: connections, allocator, page cache.
            run(&emulator, 100, 200_000).await;
            for body in [100usize, 1024] {
                let n = if body == 100 { events } else { events / 4 };
                let (rate, elapsed, per_batch) = run(&emulator, body, n).await;
                println!(
                    "{:>10} {:>8} B {:>12} {:>10.2} {:>14.0} {:>10.1}   ({per_batch} events per batch)",
                    if on_disk { "data dir" } else { "memory" },
                    body,
                    n,
                    elapsed.as_secs_f64(),
                    rate,
                    rate * body as f64 / (1 << 20) as f64,
                );
            }
            emulator.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
