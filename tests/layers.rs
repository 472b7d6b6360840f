//! Composability: tower's own layers (none of them written for this producer, and
//! `RateLimit` not `Clone`) and a stack assembled in another order, against the
//! emulator over AMQP.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use eventhubs_emulator::Emulator;
use futures_util::StreamExt;
use streaming_producer::stack::{boxed, AmqpSend};
use streaming_producer::{Batch, BatchOutcome, EventData, Outcomes, Producer};
use tower::{BoxError, Service, ServiceBuilder};

static COUNTED: AtomicUsize = AtomicUsize::new(0);

/// A hand-written middleware: counts the events of every try.
struct MyCounting<S> {
    inner: S,
}

impl<S> Service<Batch> for MyCounting<S>
where
    S: Service<Batch, Response = ()>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        COUNTED.fetch_add(batch.len(), Ordering::SeqCst);
        let call = self.inner.call(batch);
        Box::pin(async move { call.await.map_err(Into::into) })
    }
}

async fn drain(mut outcomes: Outcomes) -> Vec<BatchOutcome> {
    let mut all = Vec::new();
    while let Some(o) = outcomes.next().await {
        all.push(o);
    }
    all
}

#[tokio::test]
async fn tower_stock_layers_and_a_layer_fn_compose_and_publish_every_event() {
    let emulator = Emulator::builder().hub("eh1", 4).start().await.unwrap();
    let cs = emulator.connection_string_for("eh1");
    let (mut producer, outcomes) = Producer::builder()
        .connection_string(&cs)
        .layer(tower::layer::layer_fn(|inner| MyCounting { inner }))
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(10)))
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .layer(tower::limit::RateLimitLayer::new(
            5,
            Duration::from_millis(100),
        ))
        .max_wait(Duration::from_millis(5))
        .build()
        .await
        .unwrap();
    let reader = tokio::spawn(drain(outcomes));
    for i in 0..2000 {
        producer
            .enqueue(EventData::new(format!("e{i}")).with_partition_key(format!("k{}", i % 17)))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let outcomes = reader.await.unwrap();
    let published: usize = outcomes
        .iter()
        .map(|o| {
            assert!(o.is_success(), "{:?}", o.result);
            o.events.len()
        })
        .sum();
    assert_eq!(published, 2000);
    assert_eq!(
        COUNTED.load(Ordering::SeqCst),
        2000,
        "every try passed the layer"
    );
    let stored: usize = (0..4)
        .map(|p| emulator.events("eh1", &p.to_string()).unwrap().len())
        .sum();
    assert_eq!(stored, 2000);
}

#[tokio::test]
async fn a_stack_in_another_order_publishes_through_the_public_layers() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    let cs = emulator.connection_string_for("eh1");
    let tries = Arc::new(AtomicUsize::new(0));
    let seen = tries.clone();
    let (mut producer, outcomes) = Producer::builder()
        .connection_string(&cs)
        .max_wait(Duration::from_millis(5))
        .stack(move |ctx| {
            let seen = seen.clone();
            let send = AmqpSend::new(ctx.connection().expect("an AMQP producer"));
            boxed(
                ServiceBuilder::new()
                    // One rate limit for all tries of a batch, outside the retries.
                    .layer(tower::limit::RateLimitLayer::new(
                        100,
                        Duration::from_secs(1),
                    ))
                    .layer(ctx.concurrency_limit())
                    .layer(ctx.retry())
                    .map_request(move |batch: Batch| {
                        seen.fetch_add(1, Ordering::SeqCst);
                        batch
                    })
                    .layer(ctx.timeout())
                    .layer(ctx.trace())
                    .service(send),
            )
        })
        .build()
        .await
        .unwrap();
    let reader = tokio::spawn(drain(outcomes));
    for i in 0..500 {
        producer
            .enqueue(EventData::new(format!("e{i}")).with_partition_id((i % 2).to_string()))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let outcomes = reader.await.unwrap();
    assert!(outcomes.iter().all(|o| o.is_success()));
    assert_eq!(outcomes.iter().map(|o| o.events.len()).sum::<usize>(), 500);
    assert_eq!(
        tries.load(Ordering::SeqCst),
        outcomes.len(),
        "one try per batch"
    );
    for p in ["0", "1"] {
        assert_eq!(
            emulator.events("eh1", p).unwrap().len(),
            250,
            "partition {p}"
        );
    }
}

#[tokio::test]
async fn a_layer_error_fails_the_batch_with_its_events_and_the_cause() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let cs = emulator.connection_string_for("eh1");
    let (mut producer, outcomes) = Producer::builder()
        .connection_string(&cs)
        .layer(tower::filter::FilterLayer::new(|batch: Batch| {
            if batch
                .events()
                .iter()
                .any(|e| e.body().as_ref() == b"poison")
            {
                Err(BoxError::from("refused by the filter"))
            } else {
                Ok(batch)
            }
        }))
        .build()
        .await
        .unwrap();
    let reader = tokio::spawn(drain(outcomes));
    producer.enqueue(EventData::new("poison")).await.unwrap();
    producer.flush().await.unwrap();
    producer.enqueue(EventData::new("fine")).await.unwrap();
    producer.close().await.unwrap();
    let outcomes = reader.await.unwrap();
    assert_eq!(outcomes.len(), 2);
    let error = outcomes[0].result.as_ref().unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(
        std::error::Error::source(error).map(|s| s.to_string()),
        Some("refused by the filter".to_owned())
    );
    assert_eq!(
        outcomes[0].events.get(0).unwrap().body().as_ref(),
        b"poison"
    );
    assert!(outcomes[1].is_success());
}

#[tokio::test]
async fn trace_hooks_see_every_try_and_its_fate() {
    use eventhubs_emulator::{Fault, FaultKind};
    use streaming_producer::RetryPolicy;

    #[derive(Default)]
    struct Seen {
        tries: AtomicUsize,
        succeeded: AtomicUsize,
        failed: AtomicUsize,
        spans: AtomicUsize,
        failures: std::sync::Mutex<Vec<String>>,
    }
    let seen = Arc::new(Seen::default());
    // Every third transfer is refused as busy, and retried.
    let emulator = Emulator::builder()
        .hub("eh1", 2)
        .fault(Fault::new(FaultKind::Throttle).every(3))
        .start()
        .await
        .unwrap();
    let (s1, s2, s3, s4) = (seen.clone(), seen.clone(), seen.clone(), seen.clone());
    let (mut producer, outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        .retry_policy(RetryPolicy::default().with_initial_delay(Duration::from_millis(1)))
        .trace(move |layer| {
            layer
                .make_span(move |batch: &Batch| {
                    s1.spans.fetch_add(1, Ordering::SeqCst);
                    tracing::info_span!("my.publish", partition = batch.partition())
                })
                .on_try(move |_: &Batch, _: &tracing::Span| {
                    s2.tries.fetch_add(1, Ordering::SeqCst);
                })
                .on_success(move |batch: &Batch, _: Duration, _: &tracing::Span| {
                    assert!(!batch.is_empty());
                    s3.succeeded.fetch_add(1, Ordering::SeqCst);
                })
                .on_failure(
                    move |_: &Batch, error: &BoxError, _: Duration, _: &tracing::Span| {
                        s4.failed.fetch_add(1, Ordering::SeqCst);
                        s4.failures.lock().unwrap().push(error.to_string());
                    },
                )
        })
        .build()
        .await
        .unwrap();
    // Ten rounds of a batch per partition.
    for round in 0..10 {
        for p in 0..2 {
            producer
                .enqueue(EventData::new(format!("t{round}")).with_partition_id(p.to_string()))
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
    }
    producer.close().await.unwrap();
    let results = drain(outcomes).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    let tries = seen.tries.load(Ordering::SeqCst);
    let succeeded = seen.succeeded.load(Ordering::SeqCst);
    let failed = seen.failed.load(Ordering::SeqCst);
    assert_eq!(seen.spans.load(Ordering::SeqCst), tries, "a span per try");
    assert_eq!(succeeded, results.len(), "one success per batch");
    assert_eq!(tries, succeeded + failed);
    assert!(failed >= 1, "every third transfer was refused");
    let failures = seen.failures.lock().unwrap();
    assert!(
        failures.iter().all(|f| f.contains("server-busy")),
        "{failures:?}"
    );
}
