//! Reading partitions through consumer groups.

mod common;

use common::*;
use eventhubs_emulator::{Emulator, EmulatorHandle, HubConfig, Retention};
use fe2o3_amqp::types::messaging::{annotations::OwnedKey, Body};
use serde_amqp::{descriptor::Descriptor, primitives::Symbol, Value};

async fn seeded(count: usize) -> (EmulatorHandle, TestClient) {
    let emulator = Emulator::builder()
        .hub_config(HubConfig::new("eh1", 2).consumer_group("cg1"))
        .start()
        .await
        .unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1/Partitions/0").await;
    let events: Vec<Msg> = (0..count)
        .map(|i| event(&format!("m{i}"), Some("k")))
        .collect();
    assert!(sender
        .send(batch(&events, Some("k")))
        .await
        .unwrap()
        .is_accepted());
    (emulator, client)
}

async fn read(receiver: &mut fe2o3_amqp::Receiver, n: usize) -> Vec<Msg> {
    let mut out = Vec::new();
    for _ in 0..n {
        let d = receiver.recv::<Body<Value>>().await.expect("delivery");
        out.push(d.into_message());
    }
    out
}

fn body(m: &Msg) -> String {
    match &m.body {
        Body::Data(d) => String::from_utf8(d.iter().flat_map(|s| s.0.to_vec()).collect()).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn ann(m: &Msg, key: &str) -> Value {
    m.message_annotations
        .as_ref()
        .and_then(|a| a.0.get(&OwnedKey::Symbol(Symbol::from(key))).cloned())
        .unwrap_or_else(|| panic!("annotation {key} missing"))
}

#[tokio::test]
async fn a_reader_from_the_start_gets_every_event_with_service_annotations() {
    let (emulator, mut client) = seeded(5).await;
    let mut receiver = client
        .receiver(
            "eh1/ConsumerGroups/$default/Partitions/0",
            Some(selector("amqp.annotation.x-opt-offset > '-1'")),
        )
        .await;
    let got = read(&mut receiver, 5).await;
    assert_eq!(
        got.iter().map(body).collect::<Vec<_>>(),
        ["m0", "m1", "m2", "m3", "m4"]
    );
    let stored = emulator.events("eh1", "0").unwrap();
    for (m, e) in got.iter().zip(&stored) {
        assert_eq!(
            ann(m, "x-opt-sequence-number"),
            Value::Long(e.sequence_number)
        );
        assert_eq!(ann(m, "x-opt-offset"), Value::String(e.offset.to_string()));
        assert!(matches!(ann(m, "x-opt-enqueued-time"), Value::Timestamp(_)));
        assert_eq!(ann(m, "x-opt-partition-key"), Value::String("k".into()));
        // An `int`, -1 without geo-replication, on every transfer the service was
        // recorded making (azure-sdk-for-python, sdk/eventhub/azure-eventhub/tests/
        // amqpproxy_recordings/livetest/synctests/test_receive.*.json).
        assert_eq!(ann(m, "x-opt-sequence-number-epoch"), Value::Int(-1));
        assert!(
            m.delivery_annotations.is_none(),
            "no runtime metric asked for"
        );
    }
}

#[tokio::test]
async fn a_reader_with_no_filter_starts_at_the_beginning_of_the_partition() {
    // The service's default, recorded in azure-sdk-for-python (sdk/eventhub/
    // azure-eventhub/tests/amqpproxy_recordings/livetest/synctests/
    // test_send.test_send_list[pyamqp]-2.json): an attach with no filter is handed
    // sequence number 0, enqueued 11 s before.
    let (_emulator, mut client) = seeded(3).await;
    let mut receiver = client
        .receiver("eh1/ConsumerGroups/$Default/Partitions/0", None)
        .await;
    // Sent after the attach: a reader that started at the end would get it first.
    let mut sender = client.sender("eh1/Partitions/0").await;
    assert!(sender
        .send(event("fresh", None))
        .await
        .unwrap()
        .is_accepted());
    let first = read(&mut receiver, 1).await;
    assert_eq!(body(&first[0]), "m0");
    assert_eq!(ann(&first[0], "x-opt-sequence-number"), Value::Long(0));
    let rest = read(&mut receiver, 3).await;
    assert_eq!(
        rest.iter().map(body).collect::<Vec<_>>(),
        ["m1", "m2", "fresh"]
    );
}

#[tokio::test]
async fn sequence_number_offset_and_time_filters_start_where_they_say() {
    let (emulator, mut client) = seeded(6).await;
    let stored = emulator.events("eh1", "0").unwrap();
    let offset3 = stored[3].offset;
    let cases = [
        (
            selector("amqp.annotation.x-opt-sequence-number > '2'"),
            "m3",
        ),
        (selector("amqp.annotation.x-opt-sequence-number >= 2"), "m2"),
        (
            selector(&format!("amqp.annotation.x-opt-offset > '{offset3}'")),
            "m4",
        ),
        (
            selector(&format!("amqp.annotation.x-opt-offset >= {offset3}")),
            "m3",
        ),
        (
            selector(&format!(
                "amqp.annotation.x-opt-enqueued-time > '{}'",
                stored[0].enqueued_time_ms - 1
            )),
            "m0",
        ),
        // .NET's descriptor code and Python's symbol descriptor.
        (
            selector_with(
                Descriptor::Code(0x0000_0137_0000_000A),
                "amqp.annotation.x-opt-sequence-number > 4",
            ),
            "m5",
        ),
        (
            selector_with(
                Descriptor::Name(Symbol::from("apache.org:selector-filter:string")),
                "amqp.annotation.x-opt-sequence-number > '0'",
            ),
            "m1",
        ),
    ];
    for (filter, first) in cases {
        let mut receiver = client
            .receiver("eh1/ConsumerGroups/cg1/Partitions/0", Some(filter.clone()))
            .await;
        let got = read(&mut receiver, 1).await;
        assert_eq!(body(&got[0]), first, "{:?}", filter.value);
        receiver.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_latest_reader_sees_only_new_events_as_they_arrive() {
    let (_emulator, mut client) = seeded(3).await;
    let mut receiver = client
        .receiver(
            "eh1/ConsumerGroups/$Default/Partitions/0",
            Some(selector("amqp.annotation.x-opt-offset > '@latest'")),
        )
        .await;
    let mut sender = client.sender("eh1/Partitions/0").await;
    assert!(sender
        .send(event("fresh", None))
        .await
        .unwrap()
        .is_accepted());
    let got = read(&mut receiver, 1).await;
    assert_eq!(body(&got[0]), "fresh");
    assert_eq!(ann(&got[0], "x-opt-sequence-number"), Value::Long(3));
}

#[tokio::test]
async fn retention_drops_the_oldest_events() {
    let emulator = Emulator::builder()
        .hub_config(HubConfig::new("eh1", 1).retention(Retention::Events(3)))
        .start()
        .await
        .unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1/Partitions/0").await;
    let events: Vec<Msg> = (0..5).map(|i| event(&format!("r{i}"), None)).collect();
    assert!(sender
        .send(batch(&events, None))
        .await
        .unwrap()
        .is_accepted());
    assert_eq!(
        bodies(&emulator.events("eh1", "0").unwrap()),
        ["r2", "r3", "r4"]
    );
    let info = emulator.partition_info("eh1", "0").unwrap();
    assert_eq!(
        (info.begin_sequence_number, info.last_sequence_number),
        (2, 4)
    );
    let mut receiver = client
        .receiver(
            "eh1/ConsumerGroups/$Default/Partitions/0",
            Some(selector("amqp.annotation.x-opt-offset > '-1'")),
        )
        .await;
    assert_eq!(body(&read(&mut receiver, 1).await[0]), "r2");
}

#[tokio::test]
async fn a_bad_selector_is_refused() {
    let (_emulator, mut client) = seeded(1).await;
    let mut receiver = client
        .receiver(
            "eh1/ConsumerGroups/$Default/Partitions/0",
            Some(selector("amqp.annotation.x-opt-offset < '5'")),
        )
        .await;
    let why = detach_condition_of_receiver(&mut receiver).await;
    assert!(why.contains("InvalidField"), "{why}");
}

#[tokio::test]
async fn a_sequence_filter_past_the_end_waits_for_that_sequence_number() {
    let (_emulator, mut client) = seeded(3).await;
    let mut receiver = client
        .receiver(
            "eh1/ConsumerGroups/$Default/Partitions/0",
            Some(selector("amqp.annotation.x-opt-sequence-number > '5'")),
        )
        .await;
    let mut sender = client.sender("eh1/Partitions/0").await;
    let more: Vec<Msg> = (3..8).map(|i| event(&format!("m{i}"), None)).collect();
    assert!(sender.send(batch(&more, None)).await.unwrap().is_accepted());
    let got = read(&mut receiver, 2).await;
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["m6", "m7"]);
}

#[tokio::test]
async fn byte_retention_keeps_the_newest_events_within_the_budget() {
    let emulator = Emulator::builder()
        .hub_config(HubConfig::new("eh1", 1).retention(Retention::Bytes(1000)))
        .start()
        .await
        .unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1/Partitions/0").await;
    let body = "y".repeat(190);
    let events: Vec<Msg> = (0..20).map(|_| event(&body, None)).collect();
    assert!(sender
        .send(batch(&events, None))
        .await
        .unwrap()
        .is_accepted());
    let kept = emulator.events("eh1", "0").unwrap();
    let bytes: usize = kept.iter().map(|e| e.raw.len()).sum();
    assert!(bytes <= 1000, "{bytes} bytes kept");
    assert!(kept.len() >= 4, "only {} kept", kept.len());
    assert_eq!(
        kept.last().unwrap().sequence_number,
        19,
        "the newest is kept"
    );
}
