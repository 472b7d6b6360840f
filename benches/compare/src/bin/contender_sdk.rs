//! Microsoft's Rust SDK as a contender: `BufferedProducerClient` from
//! `azure_messaging_eventhubs` 0.16, every event through `enqueue_event`, outcomes from
//! its success and failure handlers.
//!
//! The SDK keeps a bound per partition (`with_max_buffered_event_count_per_partition`,
//! 1,500 by default); the harness's `--pending` total is divided among the partitions
//! (rounded up), so 6,000 over 4 partitions is the SDK's default.
//!
//! With `--direct`: `ProducerClient` instead, each event a batch of its own
//! (`create_batch` with the event's key, `send_batch`), one send at a time: the SDK
//! sending one-event batches without the buffered producer's per-partition wait. One at
//! a time because that is what works: with 16 sends at a time on a hub of 128
//! partitions it stalls (100 of 300 events sent in 20 s, on the machine the results
//! come from), while one at a time sends 300 in 0.2 s.

use std::time::Instant;

use azure_messaging_eventhubs::{
    BufferedProducerClient, EnqueueEventOptions, EventDataBatchOptions, ProducerClient,
};
use compare::{Settings, SharedReport, Window};

#[tokio::main]
async fn main() {
    let s = Settings::from_args().unwrap_or_else(|e| compare::usage(e));
    let endpoint = s.host_port().unwrap_or_else(|e| compare::usage(e));
    if s.direct {
        direct(s, endpoint).await;
    }
    let per_partition = s.pending.div_ceil(s.partitions as usize);
    let epoch = Instant::now();
    let paced = s.rate > 0;
    let report = SharedReport::default();
    let on_ok = report.clone();
    let on_failed = report.clone();
    // The SDK always dials TLS for the namespace in the connection string; the custom
    // endpoint sends the socket to the plain emulator instead.
    let producer = BufferedProducerClient::builder()
        .with_custom_endpoint(format!("amqp://{endpoint}"))
        .with_max_wait_time(azure_core::time::Duration::milliseconds(
            s.max_wait.as_millis() as i64,
        ))
        .with_max_buffered_event_count_per_partition(per_partition)
        .with_on_send_succeeded(move |context| {
            let report = on_ok.clone();
            async move {
                let now = epoch.elapsed().as_nanos() as u64;
                let mut r = report.lock().unwrap();
                r.batches += 1;
                r.succeeded += context.events.len() as u64;
                if paced {
                    for event in &context.events {
                        if let Some(at) = event.body().and_then(compare::handed_over_at) {
                            r.latencies_ns.push(now.saturating_sub(at));
                        }
                    }
                }
            }
        })
        .with_on_send_failed(move |context| {
            let report = on_failed.clone();
            async move {
                let mut r = report.lock().unwrap();
                r.batches += 1;
                r.failed += context.events.len() as u64;
                r.first_error
                    .get_or_insert_with(|| context.error.to_string());
            }
        })
        .open_with_connection_string(&s.connection_string, Some(&s.hub))
        .await;
    let producer = match producer {
        Ok(p) => p,
        Err(e) => {
            eprintln!("contender_sdk: {e}");
            std::process::exit(1);
        }
    };
    let keys = compare::keys();
    let window = Window::start();
    let run = async {
        let paced_from = std::time::Instant::now();
        for i in 0..s.events {
            compare::pace_blocking(paced_from, s.rate, i);
            let options = s.keyed.then(|| EnqueueEventOptions {
                partition_key: Some(compare::key(&keys, i).to_string()),
                ..Default::default()
            });
            if let Err(e) = producer
                .enqueue_event(compare::body(i, s.size, paced.then_some(epoch)), options)
                .await
            {
                eprintln!("contender_sdk: enqueue failed: {e}");
                std::process::exit(1);
            }
        }
        if let Err(e) = producer.close().await {
            eprintln!("contender_sdk: close failed: {e}");
        }
    };
    let timed_out = tokio::time::timeout(s.deadline, run).await.is_err();
    compare::finish(&report, &window, &s, timed_out);
    std::process::exit(0);
}

/// `--direct`: every event a one-event batch through `ProducerClient`, one send at a
/// time.
async fn direct(s: Settings, endpoint: String) -> ! {
    use futures_util::StreamExt;
    let producer = match ProducerClient::builder()
        .with_custom_endpoint(format!("amqp://{endpoint}"))
        .open_with_connection_string(&s.connection_string, Some(&s.hub))
        .await
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("contender_sdk: {e}");
            std::process::exit(1);
        }
    };
    let keys = compare::keys();
    let report = SharedReport::default();
    let window = Window::start();
    let run = futures_util::stream::iter(0..s.events)
        .map(|i| {
            let (producer, keys, s) = (&producer, &keys, &s);
            async move {
                let options = EventDataBatchOptions {
                    partition_key: s.keyed.then(|| compare::key(keys, i).to_string()),
                    ..Default::default()
                };
                let batch = producer
                    .create_batch(Some(options))
                    .await
                    .map_err(|e| e.to_string())?;
                batch
                    .try_add_event_data(compare::body(i, s.size, None), None)
                    .map_err(|e| e.to_string())?;
                producer
                    .send_batch(batch, None)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .buffered(1)
        .for_each(|result: Result<(), String>| {
            let mut r = report.lock().unwrap();
            r.batches += 1;
            match result {
                Ok(()) => r.succeeded += 1,
                Err(e) => {
                    r.failed += 1;
                    r.first_error.get_or_insert(e);
                }
            }
            std::future::ready(())
        });
    let timed_out = tokio::time::timeout(s.deadline, run).await.is_err();
    compare::finish(&report, &window, &s, timed_out);
    std::process::exit(0);
}
