//! The producer's spans and warnings. A test binary of its own: tracing caches callsite
//! interest per process, so a thread-local subscriber must not share the process with
//! other tests.

use std::convert::Infallible;
use std::time::Duration;

use eventhubs_emulator::Emulator;
use futures_util::StreamExt;
use streaming_producer::{Batch, EventData, Producer};

/// Records the names and fields of new spans.
#[derive(Clone, Default)]
struct SpanLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl<S> tracing_subscriber::Layer<S> for SpanLog
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={v:?}", f.name()));
            }
        }
        let mut fields = Fields(attrs.metadata().name().to_owned());
        attrs.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[tokio::test]
async fn each_publish_try_gets_a_span_with_messaging_attributes() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let log = SpanLog::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(log.clone()));
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    for i in 0..3 {
        producer
            .enqueue(EventData::new(format!("s{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let mut seen = 0;
    while seen < 3 {
        seen += outcomes.next().await.unwrap().events.len();
    }
    let spans = log.0.lock().unwrap().clone();
    let publishes: Vec<&String> = spans
        .iter()
        .filter(|s| s.starts_with("eventhubs.publish"))
        .collect();
    assert!(!publishes.is_empty(), "{spans:?}");
    let first = publishes[0];
    assert!(first.contains("messaging.system=\"eventhubs\""), "{first}");
    assert!(
        first.contains("messaging.destination.partition.id=0"),
        "{first}"
    );
    let counted: u64 = publishes
        .iter()
        .filter_map(|s| s.split("messaging.batch.message_count=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, 3);
}

/// Records the level, message and fields of every event.
#[derive(Clone, Default)]
struct EventLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl EventLog {
    fn warnings(&self) -> Vec<String> {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .filter(|e| e.starts_with("WARN"))
            .cloned()
            .collect()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EventLog {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                match f.name() {
                    "message" => self.0.push_str(&format!(" {v:?}")),
                    name => self.0.push_str(&format!(" {name}={v:?}")),
                }
            }
        }
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

/// A producer of one partition over a batch service whose sends take `takes`, with
/// room for ten pending events, its warnings recorded in the returned log (for as long
/// as the guard lives).
fn bounded_producer(
    takes: Duration,
) -> (
    Producer,
    streaming_producer::Outcomes,
    EventLog,
    tracing::subscriber::DefaultGuard,
) {
    use tracing_subscriber::layer::SubscriberExt as _;
    let log = EventLog::default();
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(log.clone()));
    let service = tower::service_fn(move |_batch: Batch| async move {
        tokio::time::sleep(takes).await;
        Ok::<_, Infallible>(())
    });
    let (producer, outcomes) = Producer::builder()
        .max_pending_events(10)
        .max_wait(Duration::from_millis(10))
        .build_with_service(service, vec!["0".into()], 1 << 20)
        .unwrap();
    (producer, outcomes, log, guard)
}

#[tokio::test(start_paused = true)]
async fn a_producer_held_by_unread_outcomes_warns_once_and_says_so() {
    let (mut producer, outcomes, log, _guard) = bounded_producer(Duration::ZERO);
    for i in 0..10 {
        producer
            .enqueue(EventData::new(format!("e{i}")))
            .await
            .unwrap();
    }
    // The eleventh waits for room that only reading the outcomes gives back: a minute,
    // twice over, makes one warning.
    for _ in 0..2 {
        let eleventh = producer.enqueue(EventData::new("e10"));
        let waited = tokio::time::timeout(Duration::from_secs(60), eleventh).await;
        assert!(waited.is_err(), "no room while the outcomes are unread");
    }
    let warnings = log.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0];
    assert!(warning.contains("unread outcomes"), "{warning}");
    assert!(warning.contains("drop it to ignore outcomes"), "{warning}");
    assert!(warning.contains("unread_outcomes="), "{warning}");
    assert!(warning.contains("pending_events=10"), "{warning}");
    // Dropping the outcomes gives the room back.
    drop(outcomes);
    producer.enqueue(EventData::new("e10")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_producer_held_by_slow_sends_does_not_warn() {
    let (mut producer, mut outcomes, log, _guard) = bounded_producer(Duration::from_secs(32));
    let reader = tokio::spawn(async move {
        let mut read = 0;
        while let Some(outcome) = outcomes.next().await {
            read += outcome.events.len();
        }
        read
    });
    // Each send takes 32 s, so most of these wait that long for room; the outcomes are
    // read as they come, so nothing is to be said about them.
    for i in 0..30 {
        producer
            .enqueue(EventData::new(format!("e{i}")))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    assert_eq!(reader.await.unwrap(), 30);
    assert_eq!(log.warnings(), Vec::<String>::new());
}
