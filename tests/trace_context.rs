//! Trace context on events (feature `opentelemetry`, on for the tests): an event
//! enqueued inside a traced span carries that span's W3C `traceparent`. A test binary
//! of its own, as it installs a thread-local subscriber.

use std::time::Duration;

use eventhubs_emulator::Emulator;
use fe2o3_amqp::types::primitives::SimpleValue;
use futures_util::StreamExt;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use streaming_producer::{EventData, Producer};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

#[tokio::test]
async fn events_enqueued_in_a_traced_span_carry_its_traceparent() {
    // Spans are recorded and sampled; nothing is exported.
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        .build()
        .await
        .unwrap();

    let request = tracing::info_span!("handle request");
    let expected = {
        let context = request.context();
        let span = context.span();
        let sc = span.span_context();
        assert!(sc.is_valid());
        format!("00-{}-{}-01", sc.trace_id(), sc.span_id())
    };
    {
        let _entered = request.enter();
        producer.enqueue(EventData::new("traced")).await.unwrap();
        // A context the application set itself is kept.
        let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        producer
            .enqueue(EventData::new("own").with_property("traceparent", own))
            .await
            .unwrap();
    }
    producer.enqueue(EventData::new("untraced")).await.unwrap();
    producer.close().await.unwrap();
    while let Some(o) = outcomes.next().await {
        assert!(o.is_success(), "{:?}", o.result);
    }

    let stored = emulator.events("eh1", "0").unwrap();
    let property = |i: usize, name: &str| {
        let m = stored[i].message().unwrap();
        m.application_properties
            .and_then(|p| p.0.get(name).cloned())
            .map(|v| match v {
                SimpleValue::String(s) => s,
                other => panic!("{name} is {other:?}"),
            })
    };
    assert_eq!(
        property(0, "traceparent").as_deref(),
        Some(expected.as_str())
    );
    assert_eq!(
        property(0, "Diagnostic-Id").as_deref(),
        Some(expected.as_str())
    );
    assert_eq!(
        property(1, "traceparent").as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(property(1, "Diagnostic-Id"), None);
    assert_eq!(property(2, "traceparent"), None);
}
