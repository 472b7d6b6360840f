//! Receivers that desire `com.microsoft:enable-receiver-runtime-metric` (Python's
//! `track_last_enqueued_event_properties=True`): every delivery carries the partition's
//! last enqueued event, as the service sends it (recorded in azure-sdk-for-python,
//! sdk/eventhub/azure-eventhub/tests/amqpproxy_recordings/livetest/synctests/
//! test_receive.test_receive_with_event_position_sync[pyamqp-offset-False-Exclusive]-5.json).

mod common;

use common::*;
use eventhubs_emulator::{Emulator, ManualClock};
use fe2o3_amqp::types::messaging::{annotations::OwnedKey, Body};
use fe2o3_amqp::types::primitives::Timestamp;
use serde_amqp::{primitives::Symbol, Value};

const T0: i64 = 1_750_000_000_000;

fn delivery_annotation(m: &Msg, key: &str) -> Value {
    m.delivery_annotations
        .as_ref()
        .and_then(|a| a.0.get(&OwnedKey::Symbol(Symbol::from(key))).cloned())
        .unwrap_or_else(|| panic!("delivery annotation {key} missing: {m:?}"))
}

fn at(ms: i64) -> Value {
    Value::Timestamp(Timestamp::from_milliseconds(ms))
}

#[tokio::test]
async fn each_delivery_carries_the_last_enqueued_event_with_the_services_types() {
    let clock = ManualClock::new(T0);
    let emulator = Emulator::builder()
        .hub("eh1", 1)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1/Partitions/0").await;
    let events: Vec<Msg> = (0..3).map(|i| event(&format!("m{i}"), None)).collect();
    assert!(sender
        .send(batch(&events, None))
        .await
        .unwrap()
        .is_accepted());
    // Read later than stored: the retrieval time is the reader's, not the enqueue's.
    clock.advance_ms(6_000);
    let mut receiver = client
        .receiver_with(
            "eh1/ConsumerGroups/$Default/Partitions/0",
            ReceiverOptions {
                selector: Some(selector("amqp.annotation.x-opt-offset > '-1'")),
                capabilities: vec!["com.microsoft:enable-receiver-runtime-metric"],
                ..Default::default()
            },
        )
        .await;
    let last_offset = emulator.events("eh1", "0").unwrap()[2].offset;
    for _ in 0..3 {
        let m = receiver
            .recv::<Body<Value>>()
            .await
            .expect("delivery")
            .into_message();
        assert_eq!(
            delivery_annotation(&m, "last_enqueued_sequence_number"),
            Value::Long(2)
        );
        assert_eq!(
            delivery_annotation(&m, "last_enqueued_offset"),
            Value::String(last_offset.to_string())
        );
        assert_eq!(delivery_annotation(&m, "last_enqueued_time_utc"), at(T0));
        assert_eq!(
            delivery_annotation(&m, "runtime_info_retrieval_time_utc"),
            at(T0 + 6_000)
        );
        assert_eq!(
            delivery_annotation(&m, "last_enqueued_sequence_number_epoch"),
            Value::Int(-1)
        );
    }
    // A new event moves the partition's end, and the next delivery says so.
    clock.advance_ms(4_000);
    assert!(sender.send(event("m3", None)).await.unwrap().is_accepted());
    let m = receiver
        .recv::<Body<Value>>()
        .await
        .expect("delivery")
        .into_message();
    assert_eq!(
        delivery_annotation(&m, "last_enqueued_sequence_number"),
        Value::Long(3)
    );
    assert_eq!(
        delivery_annotation(&m, "last_enqueued_time_utc"),
        at(T0 + 10_000)
    );
    assert_eq!(
        delivery_annotation(&m, "runtime_info_retrieval_time_utc"),
        at(T0 + 10_000)
    );
}
