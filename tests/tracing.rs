//! The producer's spans. A test binary of its own: tracing caches callsite interest per
//! process, so a thread-local subscriber must not share the process with other tests.

use std::time::Duration;

use eventhubs_emulator::Emulator;
use futures_util::StreamExt;
use streaming_producer::{EventData, Producer};

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
