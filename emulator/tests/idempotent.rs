//! Idempotent producers.

mod common;

use common::*;
use eventhubs_emulator::Emulator;
use serde_amqp::Value;

fn rejected_condition(outcome: &fe2o3_amqp::types::messaging::Outcome) -> String {
    match outcome {
        fe2o3_amqp::types::messaging::Outcome::Rejected(r) => {
            error_condition(r.error.as_ref().expect("rejection carries an error"))
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn the_attach_reply_announces_the_producer_state() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let sender = idempotent_sender(&mut client, "p", "eh1/Partitions/0", &[]).await;
    assert!(matches!(
        announced(&sender, "com.microsoft:producer-id"),
        Some(Value::Long(_))
    ));
    assert_eq!(
        announced(&sender, "com.microsoft:producer-epoch"),
        Some(Value::Short(0))
    );
    assert_eq!(
        announced(&sender, "com.microsoft:producer-sequence-number"),
        Some(Value::Int(0))
    );
}

#[tokio::test]
async fn duplicates_are_acknowledged_but_stored_once_and_gaps_are_refused() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = idempotent_sender(&mut client, "p", "eh1/Partitions/1", &[]).await;
    let Some(Value::Long(id)) = announced(&sender, "com.microsoft:producer-id") else {
        panic!("no producer id");
    };
    let first = numbered(id, 0, 1, 5);
    assert!(sender
        .send(batch(&first, None))
        .await
        .unwrap()
        .is_accepted());
    // The retry of an ambiguous send: same numbers again.
    assert!(sender
        .send(batch(&first, None))
        .await
        .unwrap()
        .is_accepted());
    assert_eq!(emulator.events("eh1", "1").unwrap().len(), 5);

    let gap = numbered(id, 0, 10, 2);
    let outcome = sender.send(batch(&gap, None)).await.unwrap();
    assert_eq!(
        rejected_condition(&outcome),
        "com.microsoft:out-of-order-sequence"
    );

    let next = numbered(id, 0, 6, 3);
    assert!(sender.send(batch(&next, None)).await.unwrap().is_accepted());
    assert_eq!(bodies(&emulator.events("eh1", "1").unwrap()).len(), 8);

    // A re-attach with the same producer id learns where the group stands.
    let again = idempotent_sender(
        &mut client,
        "p2",
        "eh1/Partitions/1",
        &[("com.microsoft:producer-id", Value::Long(id))],
    )
    .await;
    assert_eq!(
        announced(&again, "com.microsoft:producer-sequence-number"),
        Some(Value::Int(8))
    );
}

#[tokio::test]
async fn a_higher_epoch_steals_the_producer_group() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let id = Value::Long(4242);
    let mut old = idempotent_sender(
        &mut client,
        "old",
        "eh1/Partitions/0",
        &[
            ("com.microsoft:producer-id", id.clone()),
            ("com.microsoft:producer-epoch", Value::Short(1)),
        ],
    )
    .await;
    assert!(old
        .send(batch(&numbered(4242, 1, 1, 2), None))
        .await
        .unwrap()
        .is_accepted());

    let mut new = idempotent_sender(
        &mut client,
        "new",
        "eh1/Partitions/0",
        &[
            ("com.microsoft:producer-id", id.clone()),
            ("com.microsoft:producer-epoch", Value::Short(2)),
        ],
    )
    .await;
    assert_eq!(
        announced(&new, "com.microsoft:producer-epoch"),
        Some(Value::Short(2))
    );
    let outcome = old
        .send(batch(&numbered(4242, 1, 3, 1), None))
        .await
        .unwrap();
    assert_eq!(
        rejected_condition(&outcome),
        "com.microsoft:producer-epoch-stolen"
    );
    assert!(new
        .send(batch(&numbered(4242, 2, 3, 1), None))
        .await
        .unwrap()
        .is_accepted());

    let mut lower = idempotent_sender(
        &mut client,
        "lower",
        "eh1/Partitions/0",
        &[
            ("com.microsoft:producer-id", id),
            ("com.microsoft:producer-epoch", Value::Short(1)),
        ],
    )
    .await;
    assert_eq!(
        detach_condition_of_sender(&mut lower).await,
        "com.microsoft:producer-epoch-stolen"
    );
    assert_eq!(emulator.events("eh1", "0").unwrap().len(), 3);
}

#[tokio::test]
async fn idempotent_publishing_to_the_gateway_is_refused() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = idempotent_sender(&mut client, "g", "eh1", &[]).await;
    assert_eq!(
        detach_condition_of_sender(&mut sender).await,
        "com.microsoft:argument-error"
    );
}

#[tokio::test]
async fn null_properties_are_filled_in_by_the_service() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let sender = idempotent_sender(
        &mut client,
        "partial",
        "eh1/Partitions/0",
        &[
            ("com.microsoft:producer-epoch", Value::Short(1)),
            ("com.microsoft:producer-id", Value::Null),
            ("com.microsoft:producer-sequence-number", Value::Null),
        ],
    )
    .await;
    assert!(matches!(
        announced(&sender, "com.microsoft:producer-id"),
        Some(Value::Long(_))
    ));
    assert_eq!(
        announced(&sender, "com.microsoft:producer-epoch"),
        Some(Value::Short(1))
    );
    assert_eq!(
        announced(&sender, "com.microsoft:producer-sequence-number"),
        Some(Value::Int(0))
    );
}

#[tokio::test]
async fn a_stale_sequence_number_is_refused_as_old() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let id = 77;
    let mut first = idempotent_sender(
        &mut client,
        "first",
        "eh1/Partitions/0",
        &[("com.microsoft:producer-id", Value::Long(id))],
    )
    .await;
    assert!(first
        .send(batch(&numbered(id, 0, 1, 5), None))
        .await
        .unwrap()
        .is_accepted());
    // A second producer of the group that believes only 1 was published.
    let mut stale = idempotent_sender(
        &mut client,
        "stale",
        "eh1/Partitions/0",
        &[
            ("com.microsoft:producer-id", Value::Long(id)),
            ("com.microsoft:producer-sequence-number", Value::Int(1)),
        ],
    )
    .await;
    let outcome = stale
        .send(batch(&numbered(id, 0, 2, 1), None))
        .await
        .unwrap();
    assert_eq!(
        rejected_condition(&outcome),
        "com.microsoft:out-of-order-sequence"
    );
    let fe2o3_amqp::types::messaging::Outcome::Rejected(r) = outcome else {
        unreachable!()
    };
    let description = r.error.unwrap().description.unwrap_or_default();
    assert!(description.contains("old sequence"), "{description}");
    assert_eq!(emulator.events("eh1", "0").unwrap().len(), 5);
}

#[tokio::test]
async fn a_batch_with_a_gap_inside_is_refused_whole() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let id = 5;
    let mut sender = idempotent_sender(
        &mut client,
        "gap",
        "eh1/Partitions/0",
        &[("com.microsoft:producer-id", Value::Long(id))],
    )
    .await;
    let mut events = numbered(id, 0, 1, 2);
    events.extend(numbered(id, 0, 4, 1));
    let outcome = sender.send(batch(&events, None)).await.unwrap();
    assert_eq!(
        rejected_condition(&outcome),
        "com.microsoft:out-of-order-sequence"
    );
    assert!(emulator.events("eh1", "0").unwrap().is_empty());
    // A single (format 0) numbered event is checked too.
    let single = numbered(id, 0, 1, 1).remove(0);
    assert!(sender.send(single).await.unwrap().is_accepted());
    assert_eq!(bodies(&emulator.events("eh1", "0").unwrap()), ["s1"]);
}

#[tokio::test]
async fn a_negative_epoch_is_refused() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = idempotent_sender(
        &mut client,
        "neg",
        "eh1/Partitions/0",
        &[("com.microsoft:producer-epoch", Value::Short(-1))],
    )
    .await;
    assert_eq!(
        detach_condition_of_sender(&mut sender).await,
        "com.microsoft:argument-out-of-range"
    );
}
