//! Publishing: addresses, batches, routing, size limits and entity errors.

mod common;

use common::*;
use eventhubs_emulator::Emulator;
use eventhubs_protocol::partition_key::partition_index;

#[tokio::test]
async fn the_three_address_shapes_reach_the_same_partition() {
    let emulator = Emulator::builder().hub("eh1", 4).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let host = client.host.clone();
    for (i, address) in [
        "eh1/Partitions/2".to_owned(),
        "/eh1/Partitions/2".to_owned(),
        format!("amqps://{host}/eh1/Partitions/2"),
        "EH1/partitions/2".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let mut sender = client.sender(address).await;
        let outcome = sender.send(event(&format!("e{i}"), None)).await.unwrap();
        assert!(outcome.is_accepted(), "{address}");
    }
    assert_eq!(
        bodies(&emulator.events("eh1", "2").unwrap()),
        ["e0", "e1", "e2", "e3"]
    );
}

#[tokio::test]
async fn every_attach_announces_max_message_size() {
    let emulator = Emulator::builder()
        .hub("eh1", 1)
        .max_message_size(300_000)
        .start()
        .await
        .unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    for address in ["eh1", "eh1/Partitions/0"] {
        let sender = client.sender(address).await;
        assert_eq!(sender.max_message_size(), Some(300_000), "{address}");
    }
}

#[tokio::test]
async fn a_batch_is_split_into_its_events_in_order() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1/Partitions/1").await;
    let events: Vec<Msg> = (0..100).map(|i| event(&format!("b{i}"), None)).collect();
    assert!(sender
        .send(batch(&events, None))
        .await
        .unwrap()
        .is_accepted());
    let stored = emulator.events("eh1", "1").unwrap();
    let expected: Vec<String> = (0..100).map(|i| format!("b{i}")).collect();
    assert_eq!(bodies(&stored), expected);
    let sequence: Vec<i64> = stored.iter().map(|e| e.sequence_number).collect();
    assert_eq!(sequence, (0..100).collect::<Vec<_>>());
    assert!(stored.windows(2).all(|w| w[0].offset < w[1].offset));
}

#[tokio::test]
async fn a_plain_message_with_several_data_sections_is_one_event() {
    use fe2o3_amqp::types::{
        messaging::{Body, Data, Message},
        primitives::Binary,
    };
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1").await;
    let message: Msg = Message::builder()
        .body(Body::Data(
            vec![
                Data(Binary::from(b"ab".to_vec())),
                Data(Binary::from(b"cd".to_vec())),
            ]
            .into(),
        ))
        .build();
    assert!(sender.send(message).await.unwrap().is_accepted());
    assert_eq!(bodies(&emulator.events("eh1", "0").unwrap()), ["abcd"]);
}

#[tokio::test]
async fn the_gateway_routes_keys_with_the_service_hash_and_stamps_them() {
    let emulator = Emulator::builder().hub("eh1", 11).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1").await;
    let keys = [
        "alphabet",
        "TheBestParitionEver",
        "7",
        "131",
        "FWfAT",
        "$0cb",
    ];
    for key in keys {
        let events = [
            event(&format!("{key}-1"), Some(key)),
            event(&format!("{key}-2"), Some(key)),
        ];
        assert!(sender
            .send(batch(&events, Some(key)))
            .await
            .unwrap()
            .is_accepted());
    }
    // One plain (format 0) keyed event too.
    assert!(sender
        .send(event("plain", Some("alphabet")))
        .await
        .unwrap()
        .is_accepted());
    assert_eq!(partition_index("alphabet", 11), 4, "JS SDK vector");
    for key in keys {
        let partition = partition_index(key, 11).to_string();
        let stored = emulator.events("eh1", &partition).unwrap();
        let mine: Vec<_> = stored
            .iter()
            .filter(|e| e.partition_key().as_deref() == Some(key))
            .collect();
        assert!(mine.len() >= 2, "{key} on partition {partition}");
        let message = mine[0].message().unwrap();
        let stamped = message
            .message_annotations
            .as_ref()
            .and_then(|a| {
                a.0.get(
                    &fe2o3_amqp::types::messaging::annotations::OwnedKey::Symbol(
                        "x-opt-partition-key".into(),
                    ),
                )
            })
            .cloned();
        assert_eq!(stamped, Some(serde_amqp::Value::String(key.into())));
    }
    let total: usize = (0..11)
        .map(|p| emulator.events("eh1", &p.to_string()).unwrap().len())
        .sum();
    assert_eq!(total, keys.len() * 2 + 1);
}

#[tokio::test]
async fn a_key_on_the_first_inner_event_routes_when_the_envelope_has_none() {
    let emulator = Emulator::builder().hub("eh1", 11).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1").await;
    let events = [event("k1", Some("alphabet")), event("k2", Some("alphabet"))];
    assert!(sender
        .send(batch(&events, None))
        .await
        .unwrap()
        .is_accepted());
    assert_eq!(bodies(&emulator.events("eh1", "4").unwrap()), ["k1", "k2"]);
}

#[tokio::test]
async fn unkeyed_gateway_sends_are_spread_round_robin() {
    let emulator = Emulator::builder().hub("eh1", 4).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1").await;
    for i in 0..8 {
        assert!(sender
            .send(event(&format!("r{i}"), None))
            .await
            .unwrap()
            .is_accepted());
    }
    for p in 0..4 {
        assert_eq!(
            emulator.events("eh1", &p.to_string()).unwrap().len(),
            2,
            "partition {p}"
        );
    }
}

#[tokio::test]
async fn unknown_hubs_and_partitions_are_refused_with_the_service_wording() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("nope").await;
    assert_eq!(
        detach_condition_of_sender(&mut sender).await,
        "amqp:not-found"
    );
    let mut sender = client.sender("eh1/Partitions/9").await;
    assert_eq!(
        detach_condition_of_sender(&mut sender).await,
        "com.microsoft:argument-out-of-range"
    );
    let mut receiver = client
        .receiver("eh1/ConsumerGroups/nogroup/Partitions/0", None)
        .await;
    let why = detach_condition_of_receiver(&mut receiver).await;
    assert!(
        why.contains("NotFound") && why.contains("could not be found"),
        "{why}"
    );
}
