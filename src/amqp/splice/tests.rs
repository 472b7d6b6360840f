//! The splicing stream over an in-memory pipe: what fe2o3 would write goes in, and the
//! frames that come out are read back as a peer would read them.

use std::sync::Arc;

use bytes::Bytes;
use fe2o3_amqp::types::definitions::{DeliveryTag, Handle};
use fe2o3_amqp::types::messaging::message::__private::Serializable;
use fe2o3_amqp::types::performatives::{Begin, Flow, Open, Transfer};
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::frame::{self, FLOW, TRANSFER};
use super::{Splice, StandIns, STAND_IN_LEN};

const CHANNEL: u16 = 3;
const PEER_CHANNEL: u16 = 9;
const FORMAT: u32 = 0x8001_3700;

fn frame_of<T: serde::Serialize>(channel: u16, performative: &T, payload: &[u8]) -> Vec<u8> {
    let performative = frame::encode(performative).unwrap();
    let mut bytes = frame::head(channel, &performative, payload.len()).to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

fn transfer(delivery_id: u32) -> Transfer {
    Transfer {
        handle: Handle(0),
        delivery_id: Some(delivery_id),
        delivery_tag: Some(DeliveryTag::from(vec![1, 2, 3, 4])),
        message_format: Some(FORMAT),
        settled: Some(false),
        more: false,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: true,
    }
}

fn flow(next_incoming_id: u32, next_outgoing_id: u32) -> Flow {
    Flow {
        next_incoming_id: Some(next_incoming_id),
        incoming_window: 5000,
        next_outgoing_id,
        outgoing_window: 5000,
        handle: None,
        delivery_count: None,
        link_credit: None,
        available: None,
        drain: false,
        echo: false,
        properties: None,
    }
}

/// The frames in `bytes`, as (channel, performative code, performative bytes, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u16, u64, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(len) = frame::whole(bytes).unwrap() {
        let (unit, rest) = bytes.split_at(len);
        bytes = rest;
        let (channel, body) = frame::amqp(unit).expect("an AMQP frame");
        let code = frame::performative(body).expect("a performative");
        let (performative, payload) = if code == TRANSFER {
            // The performative's own length: encode what it decodes to.
            let mut de =
                serde_amqp::de::Deserializer::new(serde_amqp::read::SliceReader::new(body));
            let t = <Transfer as serde::Deserialize>::deserialize(&mut de).expect("a transfer");
            let n = frame::encode(&t).unwrap().len();
            body.split_at(n)
        } else {
            (body, &[][..])
        };
        out.push((channel, code, performative.to_vec(), payload.to_vec()));
    }
    assert!(bytes.is_empty(), "no partial frame is left");
    out
}

/// A splicing stream whose peer (the other end of the pipe) announced `max_frame` and
/// began the session on `CHANNEL` from its `PEER_CHANNEL`.
async fn spliced(max_frame: u32) -> (Splice<DuplexStream>, DuplexStream, Arc<StandIns>) {
    let (ours, mut peer) = tokio::io::duplex(8 << 20);
    let stand_ins = Arc::new(StandIns::new());
    let mut splice = Splice::new(ours, Arc::clone(&stand_ins));
    let open = Open {
        container_id: "peer".into(),
        hostname: None,
        max_frame_size: max_frame.into(),
        channel_max: 100.into(),
        idle_time_out: None,
        outgoing_locales: None,
        incoming_locales: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    let begin = Begin {
        remote_channel: Some(CHANNEL),
        next_outgoing_id: 1,
        incoming_window: 5000,
        outgoing_window: 5000,
        handle_max: Handle(u32::MAX),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    let mut from_peer = b"AMQP\x00\x01\x00\x00".to_vec();
    from_peer.extend(frame_of(0, &open, &[]));
    from_peer.extend(frame_of(PEER_CHANNEL, &begin, &[]));
    peer.write_all(&from_peer).await.unwrap();
    let mut seen = vec![0u8; from_peer.len()];
    splice.read_exact(&mut seen).await.unwrap();
    assert_eq!(
        seen, from_peer,
        "what the peer sends reaches fe2o3 as it is"
    );
    (splice, peer, stand_ins)
}

/// What is in the pipe now, read without waiting.
fn in_pipe(peer: &mut DuplexStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(read) = peer.read_buf(&mut out).now_or_never() {
        if read.unwrap() == 0 {
            break;
        }
    }
    out
}

/// Polls the splice's read side once, as fe2o3's connection task does whenever it
/// waits; the peer has sent nothing, so nothing is read.
fn poll_read(splice: &mut Splice<DuplexStream>) {
    let mut none = [0u8; 1];
    assert!(
        splice.read(&mut none).now_or_never().is_none(),
        "the peer sent nothing"
    );
}

/// Flushes what was written and lets the splice write it, as the connection's next
/// read does (it gives way once first), then takes what reached the peer.
async fn written(splice: &mut Splice<DuplexStream>, peer: &mut DuplexStream) -> Vec<u8> {
    splice.flush().await.unwrap();
    poll_read(splice);
    poll_read(splice);
    in_pipe(peer)
}

#[test]
fn the_stand_in_is_written_by_fe2o3_as_the_stream_expects_it() {
    let stand_ins = Arc::new(StandIns::new());
    let (message, _ticket) = stand_ins.stand_in(Bytes::from_static(b"payload"), FORMAT);
    assert_eq!(message.message_format, FORMAT);
    let encoded = serde_amqp::to_vec(&Serializable(message.message)).unwrap();
    assert_eq!(encoded.len(), STAND_IN_LEN);
    assert_eq!(
        stand_ins.payload_for(&encoded),
        Some(Some(Bytes::from_static(b"payload")))
    );
    assert_eq!(stand_ins.payload_for(&encoded[1..]), None);
    let other = Arc::new(StandIns::new());
    assert_eq!(other.payload_for(&encoded), None, "another register's mark");
}

#[test]
fn a_payload_is_registered_while_its_ticket_lives() {
    let stand_ins = Arc::new(StandIns::new());
    let (message, ticket) = stand_ins.stand_in(Bytes::from_static(b"p"), FORMAT);
    let encoded = serde_amqp::to_vec(&Serializable(message.message)).unwrap();
    assert_eq!(stand_ins.registered(), 1);
    drop(ticket);
    assert_eq!(stand_ins.registered(), 0);
    assert_eq!(stand_ins.payload_for(&encoded), Some(None));
}

#[tokio::test]
async fn a_stand_in_goes_out_as_its_payload_over_frames_the_peer_takes() {
    let max_frame = 1024;
    let (mut splice, mut peer, stand_ins) = spliced(max_frame).await;
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let (message, _ticket) = stand_ins.stand_in(Bytes::from(payload.clone()), FORMAT);
    let stand_in = serde_amqp::to_vec(&Serializable(message.message)).unwrap();
    // fe2o3 writes the stand-in's frame, a byte at a time for good measure.
    let bytes = frame_of(CHANNEL, &transfer(7), &stand_in);
    for b in &bytes {
        splice.write_all(std::slice::from_ref(b)).await.unwrap();
    }
    let out = written(&mut splice, &mut peer).await;
    let frames = frames(&out);
    assert!(frames.len() > 10, "split over {} frames", frames.len());
    let mut carried = Vec::new();
    for (i, (channel, code, performative, part)) in frames.iter().enumerate() {
        assert_eq!((*channel, *code), (CHANNEL, TRANSFER));
        assert!(8 + performative.len() + part.len() <= max_frame as usize);
        let t: Transfer = serde_amqp::from_slice(performative).unwrap();
        let last = i == frames.len() - 1;
        assert_eq!(t.more, !last, "frame {i}");
        assert_eq!(t.handle, Handle(0));
        if i == 0 {
            assert_eq!(t.delivery_id, Some(7));
            assert_eq!(t.delivery_tag, Some(DeliveryTag::from(vec![1, 2, 3, 4])));
            assert_eq!(t.message_format, Some(FORMAT));
            assert!(t.batchable);
        } else {
            assert_eq!((t.delivery_id, t.message_format), (None, None));
        }
        carried.extend_from_slice(part);
    }
    assert_eq!(carried, payload);

    // The session's flows agree with the frames that went out, both ways.
    let added = frames.len() as u32 - 1;
    splice
        .write_all(&frame_of(CHANNEL, &flow(1, 8), &[]))
        .await
        .unwrap();
    let out = written(&mut splice, &mut peer).await;
    let (_, code, performative, _) = &frames_of_one(&out);
    assert_eq!(*code, FLOW);
    let sent: Flow = serde_amqp::from_slice(performative).unwrap();
    assert_eq!(sent.next_outgoing_id, 8 + added);
    let from_peer = frame_of(PEER_CHANNEL, &flow(8 + added, 1), &[]);
    peer.write_all(&from_peer).await.unwrap();
    let mut seen = vec![0u8; 64];
    let n = splice.read(&mut seen).await.unwrap();
    let (_, code, performative, _) = &frames_of_one(&seen[..n]);
    assert_eq!(*code, FLOW);
    let read: Flow = serde_amqp::from_slice(performative).unwrap();
    assert_eq!(read.next_incoming_id, Some(8), "fe2o3 sees its own count");

    // A new session on the channel starts from nothing added.
    let begin = Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: 10,
        outgoing_window: 10,
        handle_max: Handle(10),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    splice
        .write_all(&frame_of(CHANNEL, &begin, &[]))
        .await
        .unwrap();
    let flow_bytes = frame_of(CHANNEL, &flow(0, 3), &[]);
    splice.write_all(&flow_bytes).await.unwrap();
    let out = written(&mut splice, &mut peer).await;
    assert!(out.ends_with(&flow_bytes), "passed as it is");
}

fn frames_of_one(bytes: &[u8]) -> (u16, u64, Vec<u8>, Vec<u8>) {
    let mut all = frames(bytes);
    assert_eq!(all.len(), 1);
    all.remove(0)
}

#[tokio::test]
async fn a_payload_that_fits_goes_in_one_frame_and_adds_nothing() {
    let (mut splice, mut peer, stand_ins) = spliced(65536).await;
    let (message, _ticket) = stand_ins.stand_in(Bytes::from_static(b"small"), FORMAT);
    let stand_in = serde_amqp::to_vec(&Serializable(message.message)).unwrap();
    splice
        .write_all(&frame_of(CHANNEL, &transfer(1), &stand_in))
        .await
        .unwrap();
    let flow_bytes = frame_of(CHANNEL, &flow(1, 2), &[]);
    splice.write_all(&flow_bytes).await.unwrap();
    let out = written(&mut splice, &mut peer).await;
    let all = frames(&out);
    assert_eq!(all.len(), 2);
    let t: Transfer = serde_amqp::from_slice(&all[0].2).unwrap();
    assert_eq!(t, transfer(1));
    assert_eq!(all[0].3, b"small");
    assert!(
        out.ends_with(&flow_bytes),
        "nothing added: the flow is as it was"
    );
}

#[tokio::test]
async fn a_stand_in_whose_send_is_over_goes_out_aborted() {
    let (mut splice, mut peer, stand_ins) = spliced(65536).await;
    let (message, ticket) = stand_ins.stand_in(Bytes::from_static(b"late"), FORMAT);
    drop(ticket);
    let stand_in = serde_amqp::to_vec(&Serializable(message.message)).unwrap();
    splice
        .write_all(&frame_of(CHANNEL, &transfer(4), &stand_in))
        .await
        .unwrap();
    let out = written(&mut splice, &mut peer).await;
    let (_, code, performative, payload) = frames_of_one(&out);
    assert_eq!(code, TRANSFER);
    let t: Transfer = serde_amqp::from_slice(&performative).unwrap();
    assert!(t.aborted && !t.more);
    assert_eq!(t.delivery_id, Some(4));
    assert!(payload.is_empty(), "the stand-in never reaches the peer");
}

#[tokio::test]
async fn everything_else_passes_as_it_is() {
    let (mut splice, mut peer, _stand_ins) = spliced(65536).await;
    let mut bytes = b"AMQP\x00\x01\x00\x00".to_vec();
    bytes.extend(frame_of(CHANNEL, &transfer(2), b"an ordinary message"));
    bytes.extend(frame_of(CHANNEL, &flow(3, 4), &[]));
    // A heartbeat: a frame with no body.
    bytes.extend(frame::head(0, &[], 0));
    for chunk in bytes.chunks(7) {
        splice.write_all(chunk).await.unwrap();
    }
    assert_eq!(written(&mut splice, &mut peer).await, bytes);
}

#[tokio::test]
async fn a_peer_that_does_not_speak_amqp_is_passed_on_at_once() {
    let (ours, mut peer) = tokio::io::duplex(1 << 16);
    let mut splice = Splice::new(ours, Arc::new(StandIns::new()));
    let answer = b"HTTP/1.1 400 Bad Request\r\n\r\n";
    peer.write_all(answer).await.unwrap();
    let mut seen = vec![0u8; answer.len()];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        splice.read_exact(&mut seen),
    )
    .await
    .expect("not held back waiting for a 1.2 GB frame")
    .unwrap();
    assert_eq!(&seen[..], answer);
}

#[tokio::test]
async fn flushed_frames_wait_for_the_connection_to_read_and_share_a_write() {
    let (mut splice, mut peer, _) = spliced(65536).await;
    let one = frame_of(CHANNEL, &flow(1, 1), &[]);
    let two = frame_of(CHANNEL, &flow(2, 2), &[]);
    splice.write_all(&one).await.unwrap();
    splice.flush().await.unwrap();
    splice.write_all(&two).await.unwrap();
    splice.flush().await.unwrap();
    assert!(in_pipe(&mut peer).is_empty(), "a flush leaves them behind");
    // The connection waits: its read gives way once, then writes both at once.
    poll_read(&mut splice);
    assert!(in_pipe(&mut peer).is_empty(), "the read gave way first");
    poll_read(&mut splice);
    assert_eq!(in_pipe(&mut peer), [one.clone(), two].concat());
    // Closing writes what is behind too.
    splice.write_all(&one).await.unwrap();
    splice.flush().await.unwrap();
    splice.shutdown().await.unwrap();
    assert_eq!(in_pipe(&mut peer), one);
}
