//! What the store-and-forward tests share: scratch directories, producers on a spool,
//! a crash of a producer (its runtime dropped mid-flight), and keyed events read back.
#![allow(dead_code)] // each test file uses a part of it

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use eventhubs_emulator::EmulatorHandle;
use futures_util::StreamExt as _;
use streaming_producer::{BatchOutcome, EventData, Outcomes, Producer, ProducerBuilder};

use super::bodies;

/// A fresh path under the system's temporary directory, removed (as a directory or
/// a file) when dropped.
pub(crate) struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(crate) fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("spool-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Scratch(dir)
}

pub(crate) fn spooled(emulator: &EmulatorHandle, dir: &std::path::Path) -> ProducerBuilder {
    Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .spool(dir)
        .max_wait(Duration::from_millis(5))
        .try_timeout(Duration::from_secs(2))
        .retry_policy(
            streaming_producer::RetryPolicy::default()
                .with_initial_delay(Duration::from_millis(20)),
        )
}

/// Runs `work` on a runtime of its own, then drops the runtime with whatever it
/// started still running: a crash of everything `work` built.
pub(crate) fn crash<W, F>(work: W) -> F::Output
where
    W: FnOnce() -> F + Send + 'static,
    F: Future,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let output = runtime.block_on(work());
        drop(runtime);
        output
    })
    .join()
    .unwrap()
}

pub(crate) async fn all_outcomes(outcomes: Outcomes) -> Vec<BatchOutcome> {
    outcomes.collect().await
}

/// Events keyed over `keys` keys, numbered in their body (`key:n`).
pub(crate) fn keyed(n: usize, keys: usize) -> EventData {
    let key = format!("k{}", n % keys);
    EventData::new(format!("{key}:{n}")).with_partition_key(key)
}

/// Every stored event's `(key, n)`, per partition in stored order: checks that each
/// key's events are in order and returns how many were stored.
pub(crate) fn stored_in_key_order(emulator: &EmulatorHandle, partitions: u32) -> usize {
    let mut stored = 0;
    for p in 0..partitions {
        let mut last: std::collections::HashMap<String, usize> = Default::default();
        for body in bodies(emulator, &p.to_string()) {
            let (key, n) = body.split_once(':').unwrap();
            let n: usize = n.parse().unwrap();
            if let Some(before) = last.insert(key.to_owned(), n) {
                assert!(before < n, "{key}: {n} after {before}");
            }
            stored += 1;
        }
    }
    stored
}
