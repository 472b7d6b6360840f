//! `$management` READ: keys and AMQP types the SDKs insist on.

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

/// A put-token request for hub `eh1` with a valid token, with `message_id` and
/// `reply_to` set.
fn put_token_request(
    emulator: &eventhubs_emulator::EmulatorHandle,
    reply_to: Option<&str>,
    message_id: fe2o3_amqp::types::messaging::MessageId,
) -> Msg {
    use fe2o3_amqp::types::messaging::{ApplicationProperties, Message, Properties};
    let token = emulator.sas_token("sb://x/eh1", 60);
    let mut request: Msg = Message::builder()
        .application_properties(
            ApplicationProperties::builder()
                .insert("operation", "put-token")
                .insert("type", "servicebus.windows.net:sastoken")
                .insert("name", "sb://x/eh1")
                .build(),
        )
        .body(Body::Value(AmqpValue(Value::String(token))))
        .build();
    request.properties = Some(Properties {
        message_id: Some(message_id),
        reply_to: reply_to.map(str::to_owned),
        ..Default::default()
    });
    request
}

async fn put_token_raw(
    emulator: &eventhubs_emulator::EmulatorHandle,
    receiver_name: &str,
    receiver_target: Option<&str>,
    reply_to: Option<&str>,
    message_id: fe2o3_amqp::types::messaging::MessageId,
) -> (fe2o3_amqp::types::messaging::MessageId, i32) {
    let mut client = TestClient::connect(emulator).await;
    let mut tx = fe2o3_amqp::Sender::attach(&mut client.session, "req", "$cbs")
        .await
        .unwrap();
    let mut builder = fe2o3_amqp::Receiver::builder()
        .name(receiver_name)
        .source("$cbs");
    if let Some(t) = receiver_target {
        builder = builder.target(t);
    }
    let mut rx = builder.attach(&mut client.session).await.unwrap();
    let request = put_token_request(emulator, reply_to, message_id);
    assert!(tx.send(request).await.unwrap().is_accepted());
    let reply = rx.recv::<Body<Value>>().await.unwrap().into_message();
    let correlation = reply
        .properties
        .as_ref()
        .and_then(|p| p.correlation_id.clone())
        .expect("correlation-id");
    (correlation, status_of(&reply).0)
}

#[tokio::test]
async fn replies_reach_python_style_links_without_reply_to() {
    use fe2o3_amqp::types::{messaging::MessageId, primitives::Uuid};
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let id = MessageId::Uuid(Uuid::from([7u8; 16]));
    let (correlation, code) =
        put_token_raw(&emulator, "py-rx", Some("$cbs"), None, id.clone()).await;
    assert_eq!((correlation, code), (id, 202));
}

#[tokio::test]
async fn replies_reach_js_style_links_named_by_reply_to() {
    use fe2o3_amqp::types::messaging::MessageId;
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let id = MessageId::String("a-string-id".into());
    let (correlation, code) =
        put_token_raw(&emulator, "cbs-1234", None, Some("cbs-1234"), id.clone()).await;
    assert_eq!((correlation, code), (id, 202));
}

#[tokio::test]
async fn a_grown_hub_reports_and_routes_over_its_new_partitions() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    assert_eq!(emulator.grow_partitions("eh1", 4), Some(4));
    assert_eq!(emulator.grow_partitions("eh1", 3), Some(4), "never shrinks");
    assert_eq!(emulator.grow_partitions("nope", 4), None);
    let mut client = TestClient::authorized(&emulator).await;
    let token = emulator.sas_token("sb://x/eh1", 60);
    let reply = client
        .management(&[
            ("type", "com.microsoft:eventhub"),
            ("name", "eh1"),
            ("security_token", &token),
        ])
        .await;
    assert_eq!(get(map_of(&reply), "partition_count"), &Value::Int(4));
    let mut sender = client.sender("eh1/Partitions/3").await;
    assert!(sender
        .send(event("on the new partition", None))
        .await
        .unwrap()
        .is_accepted());
    let mut gateway = client.sender("eh1").await;
    assert!(gateway
        .send(event("seven", Some("7")))
        .await
        .unwrap()
        .is_accepted());
    assert_eq!(
        bodies(&emulator.events("eh1", "3").unwrap()),
        ["on the new partition", "seven"]
    );
}

/// The Rust SDK's way: a new session with a `$cbs` link pair named and addressed as
/// before for every token, while an earlier session's reply link may still be open.
/// Its request can be read before its own reply link is registered; the reply must
/// still reach the request's session, not the earlier one (where it was lost and the
/// client waited for good).
#[tokio::test]
async fn a_reply_goes_to_the_requests_session_when_another_has_a_link_of_the_same_name() {
    use fe2o3_amqp::types::messaging::MessageId;
    use std::time::Duration;
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::connect(&emulator).await;
    let mut earlier = fe2o3_amqp::Receiver::builder()
        .name("rust_amqp_cbs-mgmt-receiver")
        .source("$cbs")
        .target("rust_amqp_cbs")
        .attach(&mut client.session)
        .await
        .unwrap();

    let mut session = fe2o3_amqp::Session::begin(&mut client.connection)
        .await
        .unwrap();
    let mut tx = fe2o3_amqp::Sender::attach(&mut session, "rust_amqp_cbs-mgmt-sender", "$cbs")
        .await
        .unwrap();
    let id = MessageId::String("second-session".into());
    let request = put_token_request(&emulator, Some("rust_amqp_cbs"), id.clone());
    // The request is settled before the reply link exists: the emulator holds the reply.
    assert!(tx.send(request).await.unwrap().is_accepted());
    let mut rx = fe2o3_amqp::Receiver::builder()
        .name("rust_amqp_cbs-mgmt-receiver")
        .source("$cbs")
        .target("rust_amqp_cbs")
        .attach(&mut session)
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), rx.recv::<Body<Value>>())
        .await
        .expect("the reply reaches the request's own session")
        .unwrap()
        .into_message();
    let correlation = reply
        .properties
        .as_ref()
        .and_then(|p| p.correlation_id.clone());
    assert_eq!((correlation, status_of(&reply).0), (Some(id), 202));
    // Nothing went to the earlier session's link.
    let stray =
        tokio::time::timeout(Duration::from_millis(200), earlier.recv::<Body<Value>>()).await;
    assert!(
        stray.is_err(),
        "a reply reached the earlier session: {stray:?}"
    );
}
