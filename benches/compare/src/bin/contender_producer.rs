//! This producer as a contender: every event through `Producer::enqueue`, every
//! outcome read from the `Outcomes` stream; or, with `--receipts`, every event through
//! `Producer::enqueue_with_receipt` and every result read from its receipt.

use std::collections::VecDeque;
use std::time::Instant;

use compare::{Settings, SharedReport, Window};
use futures_util::{FutureExt, StreamExt};
use streaming_producer::{Delivery, Durability, EventData, Producer, ProducerBuilder, Receipt};

/// With `--spool POLICY`: store and forward in a fresh directory under the system's
/// temporary one (removed at the end), synced as the policy says.
fn spooled(builder: ProducerBuilder, policy: &str, dir: &std::path::Path) -> ProducerBuilder {
    let durability = match policy {
        "group" => Durability::Group,
        "os" => Durability::Os,
        "100ms" => Durability::Interval(std::time::Duration::from_millis(100)),
        other => compare::usage(format!("--spool: unknown policy {other}")),
    };
    builder.spool(dir).spool_durability(durability)
}

#[tokio::main]
async fn main() {
    let s = Settings::from_args().unwrap_or_else(|e| compare::usage(e));
    let spool_dir = std::env::temp_dir().join(format!("compare-spool-{}", std::process::id()));
    let mut builder = Producer::builder();
    if let Some(policy) = &s.spool {
        builder = spooled(builder, policy, &spool_dir);
    }
    if let Some(timeout) = s.delivery_timeout {
        builder = builder.delivery_timeout(timeout);
    }
    let (mut producer, mut outcomes) = match builder
        .connection_string(&s.connection_string)
        .hub(s.hub.clone())
        .max_pending_events(s.pending)
        // The event bound is the one under test: the byte budget never binds first.
        .max_pending_bytes((64 << 20).max(s.pending * (s.size + 512)))
        .max_wait(s.max_wait)
        .build()
        .await
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("contender_producer: {e}");
            std::process::exit(1);
        }
    };
    let epoch = Instant::now();
    let paced = s.rate > 0;
    let report = SharedReport::default();
    let reader_report = report.clone();
    let receipts_only = s.receipts;
    let until_stored = s.until_stored;
    let window = std::sync::Arc::new(Window::start());
    // When the last event was stored: the window's end with --until-stored.
    let last_stored = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (reader_window, reader_stored) = (window.clone(), last_stored.clone());
    let reader = tokio::spawn(async move {
        if receipts_only {
            // Results come from the receipts; nobody reads the outcomes.
            drop(outcomes);
            return;
        }
        while let Some(outcome) = outcomes.next().await {
            let now = epoch.elapsed().as_nanos() as u64;
            let mut r = reader_report.lock().unwrap();
            r.batches += 1;
            let n = outcome.events.len() as u64;
            match &outcome.result {
                Ok(()) => {
                    r.succeeded += n;
                    // A mark reads the process's CPU clock, a system call: only the
                    // runs whose window closes with the last event stored take one.
                    if until_stored {
                        *reader_stored.lock().unwrap() = Some(reader_window.mark());
                    }
                }
                Err(e) => {
                    r.failed += n;
                    r.first_error.get_or_insert_with(|| e.to_string());
                }
            }
            if paced {
                for body in outcome.events.bodies() {
                    if let Some(at) = compare::handed_over_at(body) {
                        r.latencies_ns.push(now.saturating_sub(at));
                    }
                }
            }
        }
    });
    let keys = compare::keys();
    let written = compare::disk_write_bytes();
    let mut receipts: VecDeque<Receipt> = VecDeque::new();
    let count = |delivery: Delivery| {
        let mut r = report.lock().unwrap();
        match delivery {
            Ok(_) => r.succeeded += 1,
            Err(failed) => {
                r.failed += 1;
                r.first_error.get_or_insert_with(|| failed.to_string());
            }
        }
    };
    let run = async {
        let paced_from = std::time::Instant::now();
        for i in 0..s.events {
            compare::pace_blocking(paced_from, s.rate, i);
            let mut event = EventData::new(compare::body(i, s.size, paced.then_some(epoch)));
            if s.keyed {
                event = event.with_partition_key(compare::key(&keys, i));
            }
            let enqueued = if s.receipts {
                producer
                    .enqueue_with_receipt(event)
                    .await
                    .map(|receipt| receipts.push_back(receipt))
            } else {
                producer.enqueue(event).await
            };
            if let Err(e) = enqueued {
                eprintln!("contender_producer: enqueue failed: {}", e.error());
                std::process::exit(1);
            }
            // The receipts resolved so far, in order (they resolve batch by batch).
            // Unconstrained: this task seldom yields, and once its cooperative budget
            // is spent tokio would answer "not yet" for a receipt already resolved.
            while let Some(delivery) = receipts
                .front_mut()
                .and_then(|r| tokio::task::unconstrained(r).now_or_never())
            {
                receipts.pop_front();
                count(delivery);
            }
        }
        if let Err(e) = producer.close().await {
            eprintln!("contender_producer: close failed: {e}");
        }
        for receipt in receipts.drain(..) {
            count(receipt.await);
        }
        if s.receipts {
            let stats = producer.stats().total;
            report.lock().unwrap().batches = stats.batches_published + stats.batches_failed;
        }
        reader.await.expect("the outcome reader panicked");
    };
    let timed_out = tokio::time::timeout(s.deadline, run).await.is_err();
    if s.spool.is_some() {
        report.lock().unwrap().disk_bytes =
            Some(compare::disk_write_bytes().saturating_sub(written));
        let _ = std::fs::remove_dir_all(&spool_dir);
    }
    let stored_at = *last_stored.lock().unwrap();
    match stored_at {
        Some(mark) if s.until_stored => compare::finish_at(&report, mark, &s, timed_out),
        _ => compare::finish(&report, &window, &s, timed_out),
    }
    std::process::exit(0);
}
