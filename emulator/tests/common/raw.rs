//! A hand-driven AMQP client: writes exactly the frames a test asks for, so tests can
//! break the rules a well-behaved client never would.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use fe2o3_amqp::types::{
    definitions::{ReceiverSettleMode, Role, SenderSettleMode},
    messaging::{Source, TargetArchetype},
    performatives::{Attach, Begin, Flow, Open, Performative, Transfer},
    primitives::{Binary, Symbol},
    sasl::SaslInit,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Raw {
    pub stream: TcpStream,
}

pub enum Frame {
    Amqp(u16, Box<Performative>),
    Sasl(Vec<u8>),
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("tcp connect"),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        // The peer may already have closed; tests look at what is read back.
        let _ = self.stream.write_all(bytes).await;
    }

    async fn write_frame(&mut self, kind: u8, channel: u16, body: &[u8], payload: &[u8]) {
        let size = (8 + body.len() + payload.len()) as u32;
        let mut f = size.to_be_bytes().to_vec();
        f.extend_from_slice(&[2, kind]);
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(body);
        f.extend_from_slice(payload);
        self.write(&f).await;
    }

    pub async fn send(&mut self, channel: u16, performative: Performative, payload: &[u8]) {
        let body = serde_amqp::to_vec(&performative).expect("encode performative");
        self.write_frame(0, channel, &body, payload).await;
    }

    /// The next frame, or `None` once the peer has closed the socket.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await.ok()?;
        let size = u32::from_be_bytes(size) as usize;
        let mut rest = vec![0u8; size.checked_sub(4)?];
        self.stream.read_exact(&mut rest).await.ok()?;
        let doff = usize::from(rest[0]) * 4;
        let channel = u16::from_be_bytes([rest[2], rest[3]]);
        let body = &rest[doff - 4..];
        if rest[1] == 1 {
            return Some(Frame::Sasl(body.to_vec()));
        }
        if body.is_empty() {
            return self_empty(channel);
        }
        let performative: Performative = serde_amqp::from_slice(body).ok()?;
        Some(Frame::Amqp(channel, Box::new(performative)))
    }

    /// The next AMQP performative, skipping heartbeats; `None` at end of stream.
    pub async fn next(&mut self) -> Option<Performative> {
        loop {
            match self.read_frame().await? {
                Frame::Amqp(_, p) => return Some(*p),
                Frame::Sasl(_) => continue,
            }
        }
    }

    /// Reads until the peer closes the socket; whether it did within 5 s (the emulator
    /// gives a silent client 30 s, so a hang-up inside 5 s is a reaction to the input).
    pub async fn closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let until_closed = async {
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), until_closed)
            .await
            .is_ok()
    }

    /// SASL PLAIN with the emulator's key, then Open and Begin on channel 0.
    pub async fn handshake(&mut self) {
        self.write(b"AMQP\x03\x01\x00\x00").await;
        let mut header = [0u8; 8];
        self.stream
            .read_exact(&mut header)
            .await
            .expect("sasl header");
        assert_eq!(&header, b"AMQP\x03\x01\x00\x00");
        assert!(
            matches!(self.read_frame().await, Some(Frame::Sasl(_))),
            "mechanisms"
        );
        let mut response = vec![0u8];
        response.extend_from_slice(eventhubs_emulator::DEFAULT_KEY_NAME.as_bytes());
        response.push(0);
        response.extend_from_slice(eventhubs_emulator::DEFAULT_KEY.as_bytes());
        let init = SaslInit {
            mechanism: Symbol::from("PLAIN"),
            initial_response: Some(Binary::from(response)),
            hostname: None,
        };
        let body = serde_amqp::to_vec(&init).expect("encode sasl-init");
        self.write_frame(1, 0, &body, &[]).await;
        assert!(
            matches!(self.read_frame().await, Some(Frame::Sasl(_))),
            "outcome"
        );
        self.write(b"AMQP\x00\x01\x00\x00").await;
        self.stream
            .read_exact(&mut header)
            .await
            .expect("amqp header");
        assert_eq!(&header, b"AMQP\x00\x01\x00\x00");
        let open = Open {
            container_id: "raw".into(),
            hostname: None,
            max_frame_size: 1_048_576.into(),
            channel_max: 16.into(),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(0, Performative::Open(open), &[]).await;
        assert!(matches!(self.next().await, Some(Performative::Open(_))));
        let begin = Begin {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window: 10_000,
            outgoing_window: 10_000,
            handle_max: 16.into(),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(0, Performative::Begin(begin), &[]).await;
        assert!(matches!(self.next().await, Some(Performative::Begin(_))));
    }

    /// Attaches a link and returns the peer's attach.
    pub async fn attach(&mut self, handle: u32, role: Role, address: &str) -> Attach {
        let (source, target) = match role {
            Role::Sender => (
                Some(Box::new(Source::builder().address("raw").build())),
                Some(Box::new(TargetArchetype::from(address))),
            ),
            Role::Receiver => (
                Some(Box::new(
                    Source::builder()
                        .address(address)
                        .add_to_filter(
                            Symbol::from("apache.org:selector-filter:string"),
                            Some(serde_amqp::described::Described {
                                descriptor: serde_amqp::descriptor::Descriptor::Code(
                                    0x0000_468C_0000_0004,
                                ),
                                value: serde_amqp::Value::String(
                                    "amqp.annotation.x-opt-offset > '-1'".into(),
                                ),
                            }),
                        )
                        .build(),
                )),
                Some(Box::new(TargetArchetype::from("raw"))),
            ),
        };
        let attach = Attach {
            name: format!("raw-{handle}"),
            handle: handle.into(),
            role,
            snd_settle_mode: SenderSettleMode::Unsettled,
            rcv_settle_mode: ReceiverSettleMode::First,
            source,
            target,
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: Some(0),
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(0, Performative::Attach(attach), &[]).await;
        loop {
            match self.next().await.expect("attach reply") {
                Performative::Attach(a) => return a,
                _ => continue,
            }
        }
    }

    pub async fn grant_credit(&mut self, handle: u32, credit: u32) {
        let flow = Flow {
            next_incoming_id: Some(0),
            incoming_window: 10_000,
            next_outgoing_id: 0,
            outgoing_window: 10_000,
            handle: Some(handle.into()),
            delivery_count: Some(0),
            link_credit: Some(credit),
            available: None,
            drain: false,
            echo: false,
            properties: None,
        };
        self.send(0, Performative::Flow(flow), &[]).await;
    }

    pub async fn transfer(&mut self, handle: u32, delivery_id: u32, more: bool, payload: &[u8]) {
        let transfer = Transfer {
            handle: handle.into(),
            delivery_id: Some(delivery_id),
            delivery_tag: Some(Binary::from(delivery_id.to_be_bytes().to_vec())),
            message_format: Some(0),
            settled: Some(false),
            more,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: false,
        };
        self.send(0, Performative::Transfer(transfer), payload)
            .await;
    }
}

fn self_empty(_channel: u16) -> Option<Frame> {
    // An empty frame is a heartbeat.
    Some(Frame::Sasl(Vec::new()))
}
