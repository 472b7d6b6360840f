//! `$management` READ: keys and AMQP types the SDKs insist on (reference §3).

mod common;

use common::*;
use eventhubs_emulator::Emulator;
use fe2o3_amqp::types::messaging::{AmqpValue, Body};
use serde_amqp::Value;

fn map_of(reply: &Msg) -> &serde_amqp::primitives::OrderedMap<Value, Value> {
    match &reply.body {
        Body::Value(AmqpValue(Value::Map(m))) => m,
        other => panic!("management body must be an amqp-value map, got {other:?}"),
    }
}

fn get<'a>(map: &'a serde_amqp::primitives::OrderedMap<Value, Value>, key: &str) -> &'a Value {
    map.get(&Value::String(key.to_owned()))
        .unwrap_or_else(|| panic!("key {key} (as an AMQP string) is missing"))
}

#[tokio::test]
async fn hub_properties_have_the_exact_types() {
    let emulator = Emulator::builder().hub("eh1", 3).start().await.unwrap();
    let mut client = TestClient::connect(&emulator).await;
    let token = emulator.sas_token("sb://x/eh1", 60);
    let reply = client
        .management(&[
            ("type", "com.microsoft:eventhub"),
            ("name", "eh1"),
            ("security_token", &token),
        ])
        .await;
    assert_eq!(status_of(&reply).0, 200);
    let map = map_of(&reply);
    assert_eq!(get(map, "name"), &Value::String("eh1".into()));
    assert!(matches!(get(map, "created_at"), Value::Timestamp(_)));
    assert_eq!(get(map, "partition_count"), &Value::Int(3));
    match get(map, "partition_ids") {
        Value::Array(ids) => assert_eq!(
            ids.0,
            ["0", "1", "2"].map(|s| Value::String(s.into())).to_vec()
        ),
        other => panic!("partition_ids must be an AMQP array, got {other:?}"),
    }
}

#[tokio::test]
async fn partition_properties_have_the_exact_types_and_follow_sends() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let token = emulator.sas_token("sb://x/eh1", 60);
    let props = [
        ("type", "com.microsoft:partition"),
        ("name", "eh1"),
        ("partition", "1"),
        ("security_token", token.as_str()),
    ];
    let empty = client.management(&props).await;
    assert_eq!(status_of(&empty).0, 200);
    let map = map_of(&empty);
    assert_eq!(get(map, "is_partition_empty"), &Value::Bool(true));
    assert_eq!(get(map, "last_enqueued_sequence_number"), &Value::Long(-1));
    assert_eq!(
        get(map, "last_enqueued_offset"),
        &Value::String("-1".into())
    );
    for key in [
        "type",
        "last_enqueued_sequence_number_epoch",
        "begin_sequence_number_epoch",
    ] {
        get(map, key);
    }

    let mut sender = client.sender("eh1/Partitions/1").await;
    for body in ["a", "b"] {
        assert!(sender.send(event(body, None)).await.unwrap().is_accepted());
    }
    let reply = client.management(&props).await;
    let map = map_of(&reply);
    assert_eq!(get(map, "name"), &Value::String("eh1".into()));
    assert_eq!(get(map, "partition"), &Value::String("1".into()));
    assert_eq!(get(map, "begin_sequence_number"), &Value::Long(0));
    assert_eq!(get(map, "last_enqueued_sequence_number"), &Value::Long(1));
    assert_eq!(get(map, "is_partition_empty"), &Value::Bool(false));
    assert!(matches!(get(map, "last_enqueued_offset"), Value::String(s) if s != "-1"));
    assert!(matches!(
        get(map, "last_enqueued_time_utc"),
        Value::Timestamp(_)
    ));
}

#[tokio::test]
async fn unknown_hub_partition_and_bad_token_get_error_statuses() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    let mut client = TestClient::connect(&emulator).await;
    let token = emulator.sas_token("sb://x/eh1", 60);
    let unknown_hub = client
        .management(&[
            ("type", "com.microsoft:eventhub"),
            ("name", "nope"),
            ("security_token", &token),
        ])
        .await;
    let (code, description) = status_of(&unknown_hub);
    assert_eq!(code, 404);
    assert!(description.contains("could not be found"), "{description}");

    let bad_partition = client
        .management(&[
            ("type", "com.microsoft:partition"),
            ("name", "eh1"),
            ("partition", "7"),
            ("security_token", &token),
        ])
        .await;
    assert_eq!(status_of(&bad_partition).0, 400);

    let forged =
        eventhubs_emulator::sas::sign("sb://x/eh1", "RootManageSharedAccessKey", "x", u64::MAX / 2);
    let refused = client
        .management(&[
            ("type", "com.microsoft:eventhub"),
            ("name", "eh1"),
            ("security_token", &forged),
        ])
        .await;
    assert_eq!(status_of(&refused).0, 401);

    let missing = client
        .management(&[("type", "com.microsoft:eventhub"), ("name", "eh1")])
        .await;
    assert_eq!(
        status_of(&missing).0,
        401,
        "no token on the request nor the connection"
    );
}
