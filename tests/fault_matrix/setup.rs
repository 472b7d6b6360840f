//! A case's setup: the hub and its keys, the [`Setup`] of a run (delivery mode,
//! retries, bounds, timeouts), the emulator and the producer on it, the events enqueued
//! (body `e{i}`, key `k{i % KEYS}`), and what the emulator stored, read back.

use std::net::SocketAddr;
use std::time::Duration;

use eventhubs_emulator::{Emulator, EmulatorHandle};
use futures_util::StreamExt;
use streaming_producer::{
    BatchOutcome, EventData, Outcomes, Producer, ProducerBuilder, RetryPolicy,
};
use tokio::task::JoinHandle;

pub(crate) const HUB: &str = "eh1";

pub(crate) const KEYS: usize = 64;

#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) idempotent: bool,
    pub(crate) retries: bool,
    pub(crate) events: usize,
    pub(crate) max_pending: usize,
    pub(crate) try_timeout: Duration,
    pub(crate) delivery_timeout: Duration,
}

impl Setup {
    pub(crate) fn new(idempotent: bool, retries: bool) -> Self {
        Self {
            idempotent,
            retries,
            events: 3000,
            max_pending: 1000,
            try_timeout: Duration::from_secs(1),
            delivery_timeout: Duration::from_secs(30),
        }
    }

    pub(crate) fn mode(&self) -> &'static str {
        if self.idempotent {
            "idempotent"
        } else {
            "at least once"
        }
    }

    /// `builder` with the case's options: a short `max_wait`, its bounds, timeouts,
    /// retries and idempotence.
    pub(crate) fn configure(&self, builder: ProducerBuilder) -> ProducerBuilder {
        builder
            .max_wait(Duration::from_millis(5))
            .max_pending_events(self.max_pending)
            .try_timeout(self.try_timeout)
            .delivery_timeout(self.delivery_timeout)
            .retry_policy(self.policy())
            .idempotent_retries(self.idempotent)
    }

    pub(crate) fn policy(&self) -> RetryPolicy {
        // The default count (3), with delays short enough for a test suite.
        let quick = RetryPolicy::default()
            .with_initial_delay(Duration::from_millis(20))
            .with_max_delay(Duration::from_millis(500));
        if self.retries {
            quick
        } else {
            quick.with_max_retries(0)
        }
    }
}

pub(crate) fn body(i: usize) -> String {
    format!("e{i}")
}

pub(crate) fn key(i: usize) -> String {
    format!("k{}", i % KEYS)
}

pub(crate) fn index_of(body: &str) -> usize {
    body[1..].parse().expect("a body this suite wrote")
}

pub(crate) async fn emulator(partitions: u32, addr: Option<SocketAddr>) -> EmulatorHandle {
    let mut builder = Emulator::builder().hub(HUB, partitions);
    if let Some(addr) = addr {
        builder = builder.bind(addr);
    }
    builder.start().await.unwrap()
}

pub(crate) async fn producer(emulator: &EmulatorHandle, setup: &Setup) -> (Producer, Outcomes) {
    let builder = Producer::builder().connection_string(&emulator.connection_string_for(HUB));
    setup
        .configure(builder)
        .partition_refresh_interval(Duration::from_millis(100))
        .build()
        .await
        .unwrap()
}

pub(crate) fn collect(outcomes: Outcomes) -> JoinHandle<Vec<BatchOutcome>> {
    tokio::spawn(outcomes.collect::<Vec<_>>())
}

pub(crate) async fn enqueue(producer: &mut Producer, range: std::ops::Range<usize>) {
    for i in range {
        producer
            .enqueue(EventData::new(body(i)).with_partition_key(key(i)))
            .await
            .unwrap();
    }
}

/// What one emulator stored: per partition, the bodies in order.
pub(crate) type Stored = Vec<(usize, Vec<String>)>;

pub(crate) fn stored(emulator: &EmulatorHandle) -> Stored {
    (0..)
        .map_while(|p: usize| {
            let events = emulator.events(HUB, &p.to_string())?;
            Some((
                p,
                events
                    .iter()
                    .map(|e| String::from_utf8(e.body()).unwrap())
                    .collect(),
            ))
        })
        .collect()
}
