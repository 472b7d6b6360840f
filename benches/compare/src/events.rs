//! The events the contenders send: their keys and bodies (which carry the hand-over
//! time), the pace they are handed over at, and how many fit in a full batch.

use std::time::{Duration, Instant};

/// The partition key of event `i`: 1,000 distinct keys, in turn.
pub fn key(keys: &[String], i: u64) -> &str {
    &keys[(i % keys.len() as u64) as usize]
}

/// The 1,000 partition keys, made once so that no contender pays for formatting them.
pub fn keys() -> Vec<String> {
    (0..1000).map(|k| format!("device-{k}")).collect()
}

/// A body of `size` bytes: the event's index and the nanoseconds since `epoch` at
/// which it is handed over, then filler. Without an epoch (the throughput runs, which
/// measure no latency) the time is 0 and the clock is not read: at a million events a
/// second a clock read per event is a cost no contender should carry for nothing.
pub fn body(i: u64, size: usize, epoch: Option<Instant>) -> Vec<u8> {
    let mut body = vec![b'x'; size];
    body[..8].copy_from_slice(&i.to_le_bytes());
    let nanos = epoch.map_or(0, |e| e.elapsed().as_nanos() as u64);
    body[8..16].copy_from_slice(&nanos.to_le_bytes());
    body
}

/// The hand-over time written into a body by [`body`], as nanoseconds since the epoch.
pub fn handed_over_at(body: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(body.get(8..16)?.try_into().ok()?))
}

/// Hands events over at `rate` per second (when `rate` > 0): waits until event `i` is due.
pub async fn pace(start: tokio::time::Instant, rate: u64, i: u64) {
    if let Some(nanos) = (i * 1_000_000_000).checked_div(rate) {
        tokio::time::sleep_until(start + Duration::from_nanos(nanos)).await;
    }
}

/// As [`pace`], for the thread that hands events over: it sleeps on its own (a
/// `#[tokio::main]` loop runs on the process's main thread, not a runtime worker), so
/// the source's waiting wakes no thread of the producer under test.
pub fn pace_blocking(start: Instant, rate: u64, i: u64) {
    if let Some(nanos) = (i * 1_000_000_000).checked_div(rate) {
        let due = start + Duration::from_nanos(nanos);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// Bytes a data section of `len` bytes takes: descriptor (3), then vbin8 below 255
/// bytes or vbin32 (AMQP 1.0 §1.6.19, §3.2.6; serde_amqp writes 255 bytes as vbin32).
pub fn section_size(len: usize) -> usize {
    3 + if len < 255 { 2 } else { 5 } + len
}

/// How many events of `size` body bytes (and nothing else) fit in a batched message of
/// `max` bytes: each event is a whole message (one data section), which the batch
/// carries in a data section of its own.
pub fn events_per_full_batch(size: usize, max: usize) -> usize {
    max / section_size(section_size(size))
}
