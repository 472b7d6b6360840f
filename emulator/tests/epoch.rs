//! Epoch (owner level) receivers: one owner per partition and consumer group, as the
//! service keeps it (Microsoft's live test `test_receive_owner_level` in
//! azure-sdk-for-python, sdk/eventhub/azure-eventhub/tests/livetest/synctests/test_receive.py,
//! and its recorded run).

mod common;

use common::*;
use eventhubs_emulator::{Emulator, EmulatorHandle, HubConfig};
use fe2o3_amqp::types::messaging::Body;
use serde_amqp::Value;

const P0: &str = "eh1/ConsumerGroups/$Default/Partitions/0";

async fn emulator() -> EmulatorHandle {
    Emulator::builder()
        .hub_config(HubConfig::new("eh1", 2).consumer_group("cg1"))
        .start()
        .await
        .unwrap()
}

fn from_start(epoch: Option<i64>) -> ReceiverOptions {
    ReceiverOptions {
        selector: Some(selector("amqp.annotation.x-opt-offset > '-1'")),
        epoch,
        ..Default::default()
    }
}

async fn next_body(receiver: &mut fe2o3_amqp::Receiver) -> String {
    let d = receiver.recv::<Body<Value>>().await.expect("delivery");
    match d.into_message().body {
        Body::Data(d) => String::from_utf8(d.iter().flat_map(|s| s.0.to_vec()).collect()).unwrap(),
        other => panic!("{other:?}"),
    }
}

/// Publishes one event to `partition`; readers that were displaced before it must not
/// see it, so a test fails (rather than hangs) where a reader is wrongly kept.
async fn publish(client: &mut TestClient, partition: &str, body: &str) {
    let mut sender = client.sender(&format!("eh1/Partitions/{partition}")).await;
    assert!(sender.send(event(body, None)).await.unwrap().is_accepted());
}

fn assert_stolen(end: &LinkEnd, description: &str) {
    assert_eq!(end.condition, "amqp:link:stolen", "{end:?}");
    assert!(end.closed, "the service closes the link: {end:?}");
    assert_eq!(end.description, description);
}

#[tokio::test]
async fn an_epoch_receiver_closes_the_receivers_without_one() {
    let emulator = emulator().await;
    let mut client = TestClient::authorized(&emulator).await;
    let mut plain = client.receiver_with(P0, from_start(None)).await;
    let mut owner = client.receiver_with(P0, from_start(Some(1))).await;
    publish(&mut client, "0", "after").await;
    assert_eq!(next_body(&mut owner).await, "after");
    // The text recorded from the service (test_receive_owner_level[pyamqp]-4.json),
    // without its tracking ids: a receiver without an epoch is quoted with ''.
    assert_stolen(
        &end_of_receiver(&mut plain).await,
        "New receiver 'nil' with higher epoch of '1' is created hence current receiver 'nil' with epoch '' is getting disconnected. If you are recreating the receiver, make sure a higher epoch is used.",
    );
}

#[tokio::test]
async fn a_higher_epoch_closes_a_lower_one_and_of_equal_epochs_the_newer_wins() {
    let emulator = emulator().await;
    let mut client = TestClient::authorized(&emulator).await;
    let mut first = client.receiver_with(P0, from_start(Some(1))).await;
    let mut second = client.receiver_with(P0, from_start(Some(2))).await;
    let mut third = client
        .receiver_with(
            P0,
            ReceiverOptions {
                name: Some("third".into()),
                ..from_start(Some(2))
            },
        )
        .await;
    publish(&mut client, "0", "after").await;
    assert_eq!(next_body(&mut third).await, "after");
    assert_stolen(
        &end_of_receiver(&mut first).await,
        "New receiver 'nil' with higher epoch of '2' is created hence current receiver 'nil' with epoch '1' is getting disconnected. If you are recreating the receiver, make sure a higher epoch is used.",
    );
    assert_stolen(
        &end_of_receiver(&mut second).await,
        "New receiver 'third' with higher epoch of '2' is created hence current receiver 'nil' with epoch '2' is getting disconnected. If you are recreating the receiver, make sure a higher epoch is used.",
    );
}

#[tokio::test]
async fn a_lower_epoch_or_none_is_refused_while_a_higher_one_owns_the_partition() {
    let emulator = emulator().await;
    let mut client = TestClient::authorized(&emulator).await;
    let mut owner = client.receiver_with(P0, from_start(Some(5))).await;
    let mut lower = client.receiver_with(P0, from_start(Some(4))).await;
    let mut plain = client.receiver_with(P0, from_start(None)).await;
    publish(&mut client, "0", "after").await;
    assert_eq!(
        next_body(&mut owner).await,
        "after",
        "refusals leave the owner be"
    );
    assert_stolen(
        &end_of_receiver(&mut lower).await,
        "Receiver 'nil' with a higher epoch '5' already exists. Receiver 'nil' with epoch 4 cannot be created. Make sure you are creating receiver with increasing epoch value to ensure connectivity, or ensure all old epoch receivers are closed or disconnected.",
    );
    assert_stolen(
        &end_of_receiver(&mut plain).await,
        "At least one receiver for the endpoint is created with epoch of '5', and so non-epoch receiver is not allowed. Either reconnect with a higher epoch, or make sure all epoch receivers are closed or disconnected.",
    );
}

#[tokio::test]
async fn an_owner_holds_only_its_own_partition_and_consumer_group() {
    let emulator = emulator().await;
    let mut client = TestClient::authorized(&emulator).await;
    let mut owner = client
        .receiver_with("eh1/ConsumerGroups/cg1/Partitions/0", from_start(Some(1)))
        .await;
    let mut other_group = client.receiver_with(P0, from_start(None)).await;
    let mut other_partition = client
        .receiver_with("eh1/ConsumerGroups/cg1/Partitions/1", from_start(None))
        .await;
    publish(&mut client, "0", "zero").await;
    publish(&mut client, "1", "one").await;
    assert_eq!(next_body(&mut owner).await, "zero");
    assert_eq!(next_body(&mut other_group).await, "zero");
    assert_eq!(next_body(&mut other_partition).await, "one");
}
