//! Bad input never crashes or wedges the emulator, and one bad connection never
//! affects another.

mod common;

use common::raw::Raw;
use common::*;
use eventhubs_emulator::Emulator;
use fe2o3_amqp::types::{
    definitions::{Role, SenderSettleMode},
    performatives::Performative,
};

async fn still_serves(emulator: &eventhubs_emulator::EmulatorHandle, body: &str) {
    let mut client = TestClient::authorized(emulator).await;
    let mut sender = client.sender("eh1/Partitions/0").await;
    assert!(sender.send(event(body, None)).await.unwrap().is_accepted());
}

#[tokio::test]
async fn garbage_bytes_close_that_connection_only() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut bystander = TestClient::authorized(&emulator).await;
    let mut bystander_link = bystander.sender("eh1/Partitions/0").await;

    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xffu8; 64][..],
        b"AMQP\x09\x09\x09\x09",
        b"AMQP\x03\x01\x00\x00\x00\x00\x00\x01",
    ] {
        let mut raw = Raw::connect(emulator.addr()).await;
        raw.write(junk).await;
        assert!(
            raw.closed_by_peer().await,
            "the emulator hangs up on {junk:?}"
        );
    }
    assert!(bystander_link
        .send(event("still here", None))
        .await
        .unwrap()
        .is_accepted());
    still_serves(&emulator, "after garbage").await;
}

#[tokio::test]
async fn garbage_after_the_handshake_closes_that_connection_only() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut raw = Raw::connect(emulator.addr()).await;
    raw.handshake().await;
    raw.write(&[0, 0, 0, 12, 2, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef])
        .await;
    assert!(raw.closed_by_peer().await);
    still_serves(&emulator, "ok").await;
}

#[tokio::test]
async fn a_transfer_on_an_unattached_handle_does_not_wedge_the_connection() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut raw = Raw::connect(emulator.addr()).await;
    raw.handshake().await;
    raw.transfer(7, 0, false, &encode(&event("stray", None)))
        .await;
    // The stray transfer is dropped; the connection still works for a proper link.
    raw.attach(0, Role::Sender, "eh1/Partitions/0").await;
    raw.transfer(0, 1, false, &encode(&event("proper", None)))
        .await;
    let state = loop {
        match raw.next().await.expect("a disposition") {
            Performative::Disposition(d) => break format!("{:?}", d.state),
            _ => continue,
        }
    };
    assert!(state.contains("Accepted"), "{state}");
    assert_eq!(bodies(&emulator.events("eh1", "0").unwrap()), ["proper"]);
    still_serves(&emulator, "ok").await;
}

#[tokio::test]
async fn a_client_that_vanishes_mid_transfer_stores_nothing_and_harms_no_one() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut raw = Raw::connect(emulator.addr()).await;
    raw.handshake().await;
    raw.attach(0, Role::Sender, "eh1/Partitions/0").await;
    let message = encode(&event("half", None));
    raw.transfer(0, 0, true, &message[..message.len() / 2])
        .await;
    drop(raw);
    still_serves(&emulator, "whole").await;
    assert_eq!(bodies(&emulator.events("eh1", "0").unwrap()), ["whole"]);
}

#[tokio::test]
async fn an_undecodable_message_is_rejected_and_the_link_keeps_working() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut raw = Raw::connect(emulator.addr()).await;
    raw.handshake().await;
    raw.attach(0, Role::Sender, "eh1/Partitions/0").await;
    raw.transfer(0, 0, false, &[0xa0, 0xff, 0x01]).await;
    let good = encode(&event("good", None));
    raw.transfer(0, 1, false, &good).await;
    let mut states = Vec::new();
    while states.len() < 2 {
        match raw.next().await.expect("dispositions") {
            Performative::Disposition(d) => states.push(format!("{:?}", d.state)),
            _ => continue,
        }
    }
    assert!(
        states[0].contains("Rejected") && states[0].contains("DecodeError"),
        "{states:?}"
    );
    assert!(states[1].contains("Accepted"), "{states:?}");
    assert_eq!(bodies(&emulator.events("eh1", "0").unwrap()), ["good"]);
}

fn disposition_state(p: &Performative) -> Option<String> {
    match p {
        Performative::Disposition(d) => Some(format!("{:?}", d.state)),
        Performative::Detach(d) => Some(format!("detached: {:?}", d.error)),
        _ => None,
    }
}

#[tokio::test]
async fn an_oversized_transfer_is_rejected_and_the_link_keeps_working() {
    let emulator = Emulator::builder()
        .hub("eh1", 1)
        .max_message_size(4096)
        .start()
        .await
        .unwrap();
    let mut raw = Raw::connect(emulator.addr()).await;
    raw.handshake().await;
    let reply = raw.attach(0, Role::Sender, "eh1/Partitions/0").await;
    assert_eq!(
        reply.max_message_size,
        Some(4096),
        "the configured limit is announced"
    );
    // A client that ignores the announced limit, by a little and by a lot.
    for (id, size) in [(0u32, 4200usize), (1, 5000)] {
        let big = encode(&event(&"x".repeat(size), None));
        raw.transfer(0, id, false, &big).await;
        let state = loop {
            if let Some(s) = disposition_state(&raw.next().await.expect("an answer")) {
                break s;
            }
        };
        assert!(
            state.contains("Rejected") && state.contains("MessageSizeExceeded"),
            "{state}"
        );
    }
    raw.transfer(0, 2, false, &encode(&event("small", None)))
        .await;
    let state = loop {
        if let Some(s) = disposition_state(&raw.next().await.expect("an answer")) {
            break s;
        }
    };
    assert!(state.contains("Accepted"), "{state}");
    assert_eq!(bodies(&emulator.events("eh1", "0").unwrap()), ["small"]);
}

#[tokio::test]
async fn a_batch_holding_something_other_than_messages_is_rejected() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1/Partitions/0").await;
    use fe2o3_amqp::types::{
        messaging::{Body, Data, Message},
        primitives::Binary,
    };
    let envelope: Msg = Message::builder()
        .body(Body::Data(
            vec![
                Data(Binary::from(encode(&event("fine", None)))),
                Data(Binary::from(b"not a message".to_vec())),
            ]
            .into(),
        ))
        .build();
    let batch = fe2o3_amqp::Sendable::builder()
        .message(envelope)
        .message_format(BATCH_FORMAT)
        .build();
    let outcome = sender.send(batch).await.unwrap();
    assert!(
        format!("{outcome:?}").contains("DecodeError"),
        "{outcome:?}"
    );
    assert!(
        emulator.events("eh1", "0").unwrap().is_empty(),
        "nothing of it is stored"
    );
}

#[tokio::test]
async fn consumer_deliveries_are_pre_settled() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    still_serves(&emulator, "one").await;
    still_serves(&emulator, "two").await;
    let mut raw = Raw::connect(emulator.addr()).await;
    raw.handshake().await;
    let reply = raw
        .attach(
            0,
            Role::Receiver,
            "eh1/ConsumerGroups/$Default/Partitions/0",
        )
        .await;
    assert_eq!(reply.snd_settle_mode, SenderSettleMode::Settled);
    raw.grant_credit(0, 10).await;
    let mut settled = Vec::new();
    while settled.len() < 2 {
        if let Performative::Transfer(t) = raw.next().await.expect("transfers") {
            settled.push(t.settled);
        }
    }
    assert_eq!(settled, [Some(true), Some(true)]);
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_others() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let _silent = Raw::connect(emulator.addr()).await;
    let mut half = Raw::connect(emulator.addr()).await;
    half.write(b"AMQP\x03\x01\x00\x00").await;
    still_serves(&emulator, "ok").await;
}
