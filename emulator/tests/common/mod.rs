//! A small AMQP client for the emulator's tests, written against fe2o3-amqp directly.
#![allow(dead_code, unreachable_pub)]

use eventhubs_emulator::EmulatorHandle;
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::{
    definitions::Fields,
    messaging::{
        annotations::OwnedKey, AmqpValue, ApplicationProperties, Body, Data, Message,
        MessageAnnotations, Outcome, Properties, Source,
    },
    primitives::{Binary, SimpleValue, Symbol},
};
use fe2o3_amqp::{Connection, Delivery, Sendable, Session};
use serde_amqp::Value;

pub const BATCH_FORMAT: u32 = 0x8001_3700;

pub type Msg = Message<Body<Value>>;

pub mod raw;

pub struct TestClient {
    pub connection: ConnectionHandle<()>,
    pub session: SessionHandle<()>,
    cbs: Option<(Sender, Receiver)>,
    mgmt: Option<(Sender, Receiver)>,
    next_id: u64,
    /// Receivers attached so far, for unique link names.
    links: u64,
    pub host: String,
}

impl TestClient {
    /// Connects with SASL ANONYMOUS and no token.
    pub async fn connect(emulator: &EmulatorHandle) -> Self {
        let url = format!("amqp://{}", emulator.addr());
        let mut connection = Connection::builder()
            .container_id("test-client")
            .sasl_profile(fe2o3_amqp::sasl_profile::SaslProfile::Anonymous)
            .open(url.as_str())
            .await
            .expect("connect");
        let session = Session::begin(&mut connection).await.expect("session");
        Self {
            connection,
            session,
            cbs: None,
            mgmt: None,
            next_id: 0,
            links: 0,
            host: emulator.addr().to_string(),
        }
    }

    /// Connects and puts a valid token for an hour.
    pub async fn authorized(emulator: &EmulatorHandle) -> Self {
        let mut client = Self::connect(emulator).await;
        let token = emulator.sas_token(&format!("sb://{}/eh1", client.host), 3600);
        let (code, _) = client
            .put_token(&token, "servicebus.windows.net:sastoken")
            .await;
        assert_eq!(code, 202, "put-token of a valid token");
        client
    }

    async fn request(&mut self, node: &str, mut message: Msg) -> Msg {
        self.next_id += 1;
        let reply_to = format!("{node}-reply-{}", self.next_id);
        let slot = if node == "$cbs" {
            &mut self.cbs
        } else {
            &mut self.mgmt
        };
        if slot.is_none() {
            let tx = Sender::attach(&mut self.session, format!("{node}-sender"), node)
                .await
                .expect("attach request link");
            let rx = Receiver::builder()
                .name(format!("{node}-receiver"))
                .source(node)
                .target(format!("{node}-client"))
                .attach(&mut self.session)
                .await
                .expect("attach reply link");
            *slot = Some((tx, rx));
        }
        let (tx, rx) = slot.as_mut().expect("links");
        message.properties = Some(Properties {
            message_id: Some(self.next_id.into()),
            reply_to: Some(format!("{node}-client")),
            ..Default::default()
        });
        let _ = reply_to;
        let outcome = tx.send(message).await.expect("send request");
        assert!(matches!(outcome, Outcome::Accepted(_)), "request accepted");
        let reply: Delivery<Body<Value>> = rx.recv().await.expect("reply");
        rx.accept(&reply).await.expect("accept reply");
        let reply = reply.into_message();
        let correlation = reply
            .properties
            .as_ref()
            .and_then(|p| p.correlation_id.clone());
        assert_eq!(
            correlation,
            Some(self.next_id.into()),
            "correlation-id echoes message-id"
        );
        reply
    }

    /// Sends a put-token for hub eh1 and returns (status-code, description).
    pub async fn put_token(&mut self, token: &str, kind: &str) -> (i32, String) {
        let audience = format!("sb://{}/eh1", self.host);
        self.put_token_as(&audience, token, kind).await
    }

    /// A SAS put-token with the given audience.
    pub async fn put_token_for(&mut self, audience: &str, token: &str) -> (i32, String) {
        self.put_token_as(audience, token, "servicebus.windows.net:sastoken")
            .await
    }

    async fn put_token_as(&mut self, audience: &str, token: &str, kind: &str) -> (i32, String) {
        let message = Message::builder()
            .application_properties(
                ApplicationProperties::builder()
                    .insert("operation", "put-token")
                    .insert("type", kind)
                    .insert("name", audience)
                    .build(),
            )
            .body(Body::Value(AmqpValue(Value::String(token.to_owned()))))
            .build();
        let reply = self.request("$cbs", message).await;
        status_of(&reply)
    }

    /// A `$management` READ with the given application properties.
    pub async fn management(&mut self, props: &[(&str, &str)]) -> Msg {
        let mut ap = ApplicationProperties::builder().insert("operation", "READ");
        for (k, v) in props {
            ap = ap.insert(*k, *v);
        }
        let message = Message::builder()
            .application_properties(ap.build())
            .body(Body::Empty)
            .build();
        self.request("$management", message).await
    }

    pub async fn sender(&mut self, address: &str) -> Sender {
        Sender::attach(&mut self.session, format!("sender-{address}"), address)
            .await
            .expect("attach sender")
    }

    pub async fn receiver(
        &mut self,
        address: &str,
        selector: Option<serde_amqp::described::Described<Value>>,
    ) -> Receiver {
        self.receiver_with(
            address,
            ReceiverOptions {
                selector,
                ..Default::default()
            },
        )
        .await
    }

    /// A receiver with an epoch, a name or desired capabilities; each gets a link name
    /// of its own, so several can read one partition from one session.
    pub async fn receiver_with(&mut self, address: &str, options: ReceiverOptions) -> Receiver {
        self.links += 1;
        let mut source = Source::builder().address(address);
        if let Some(filter) = options.selector {
            source = source.add_to_filter(
                Symbol::from("apache.org:selector-filter:string"),
                Some(filter),
            );
        }
        let mut builder = Receiver::builder()
            .name(format!("receiver-{address}-{}", self.links))
            .source(source.build())
            .target("client");
        let mut properties = Fields::default();
        if let Some(epoch) = options.epoch {
            properties.insert(Symbol::from("com.microsoft:epoch"), Value::Long(epoch));
        }
        if let Some(name) = options.name {
            properties.insert(
                Symbol::from("com.microsoft:receiver-name"),
                Value::String(name),
            );
        }
        if !properties.is_empty() {
            builder = builder.properties(properties);
        }
        for capability in options.capabilities {
            builder = builder.add_desired_capabilities(capability);
        }
        builder
            .attach(&mut self.session)
            .await
            .expect("attach receiver")
    }
}

/// How [`TestClient::receiver_with`] attaches, beyond the address.
#[derive(Default)]
pub struct ReceiverOptions {
    pub selector: Option<serde_amqp::described::Described<Value>>,
    /// `com.microsoft:epoch`, sent as a `long` as the SDKs do.
    pub epoch: Option<i64>,
    /// `com.microsoft:receiver-name`.
    pub name: Option<String>,
    pub capabilities: Vec<&'static str>,
}

pub fn status_of(reply: &Msg) -> (i32, String) {
    let props = &reply.application_properties.as_ref().expect("app props").0;
    let code = match props.get("status-code") {
        Some(SimpleValue::Int(c)) => *c,
        other => panic!("status-code must be an AMQP int, got {other:?}"),
    };
    let description = match props.get("status-description") {
        Some(SimpleValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    (code, description)
}

/// One event with a data body and optional partition key.
pub fn event(body: &str, key: Option<&str>) -> Msg {
    let mut message = Message::builder()
        .body(Body::Data(
            vec![Data(Binary::from(body.as_bytes().to_vec()))].into(),
        ))
        .build();
    if let Some(k) = key {
        message.message_annotations = Some(annotations(&[(
            "x-opt-partition-key",
            Value::String(k.to_owned()),
        )]));
    }
    message
}

pub fn annotations(pairs: &[(&str, Value)]) -> MessageAnnotations {
    let mut a = MessageAnnotations::default();
    for (k, v) in pairs {
        a.0.insert(OwnedKey::Symbol(Symbol::from(*k)), v.clone());
    }
    a
}

pub fn encode(message: &Msg) -> Vec<u8> {
    use fe2o3_amqp::types::messaging::message::__private::Serializable;
    serde_amqp::to_vec(&Serializable(message)).expect("encode")
}

/// A batched message (format 0x80013700) of `events`, with the key on the envelope.
pub fn batch(events: &[Msg], key: Option<&str>) -> Sendable<Body<Value>> {
    let sections: Vec<Data> = events
        .iter()
        .map(|e| Data(Binary::from(encode(e))))
        .collect();
    let mut envelope = Message::builder().body(Body::Data(sections.into())).build();
    if let Some(k) = key {
        envelope.message_annotations = Some(annotations(&[(
            "x-opt-partition-key",
            Value::String(k.to_owned()),
        )]));
    }
    Sendable::builder()
        .message(envelope)
        .message_format(BATCH_FORMAT)
        .build()
}

pub fn bodies(events: &[eventhubs_emulator::StoredEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8(e.body()).expect("utf8"))
        .collect()
}

pub fn error_condition(e: &fe2o3_amqp::types::definitions::Error) -> String {
    use fe2o3_amqp::types::definitions::ErrorCondition;
    match &e.condition {
        ErrorCondition::Custom(s) => s.as_str().to_owned(),
        other => {
            let v = serde_amqp::to_value(other).expect("condition");
            match v {
                Value::Symbol(s) => s.as_str().to_owned(),
                other => format!("{other:?}"),
            }
        }
    }
}

/// The condition of the error a link was detached with.
pub async fn detach_condition_of_sender(sender: &mut Sender) -> String {
    use fe2o3_amqp::link::DetachError;
    match sender.on_detach().await {
        DetachError::RemoteDetachedWithError(e) | DetachError::RemoteClosedWithError(e) => {
            error_condition(&e)
        }
        other => panic!("expected a detach with an error, got {other:?}"),
    }
}

/// The error a receiving link was ended with, and whether the detach closed it.
#[derive(Debug)]
pub struct LinkEnd {
    pub condition: String,
    pub description: String,
    pub closed: bool,
}

/// Waits for the emulator to end a receiving link with an error; panics if a delivery
/// comes first.
pub async fn end_of_receiver(receiver: &mut Receiver) -> LinkEnd {
    use fe2o3_amqp::link::{LinkStateError, RecvError};
    let (e, closed) = match receiver.recv::<Body<Value>>().await {
        Err(RecvError::LinkStateError(LinkStateError::RemoteClosedWithError(e))) => (e, true),
        Err(RecvError::LinkStateError(LinkStateError::RemoteDetachedWithError(e))) => (e, false),
        Err(other) => panic!("expected the link to end with an error, got {other:?}"),
        Ok(d) => panic!(
            "expected the link to end, got a delivery: {:?}",
            d.into_message().body
        ),
    };
    LinkEnd {
        condition: error_condition(&e),
        description: e.description.clone().unwrap_or_default(),
        closed,
    }
}

pub async fn detach_condition_of_receiver(receiver: &mut Receiver) -> String {
    use fe2o3_amqp::link::RecvError;
    match receiver.recv::<Body<Value>>().await {
        Err(RecvError::LinkStateError(e)) => format!("{e:?}"),
        Err(other) => format!("{other:?}"),
        Ok(_) => panic!("expected the link to be detached"),
    }
}

/// A selector filter with the Rust/JS descriptor code.
pub fn selector(expression: &str) -> serde_amqp::described::Described<Value> {
    selector_with(
        serde_amqp::descriptor::Descriptor::Code(0x0000_468C_0000_0004),
        expression,
    )
}

pub fn selector_with(
    descriptor: serde_amqp::descriptor::Descriptor,
    expression: &str,
) -> serde_amqp::described::Described<Value> {
    serde_amqp::described::Described {
        descriptor,
        value: Value::String(expression.to_owned()),
    }
}

pub const IDEMPOTENT: &str = "com.microsoft:idempotent-producer";

/// A publishing link that desires idempotent publishing, with these link properties.
pub async fn idempotent_sender(
    client: &mut TestClient,
    name: &str,
    address: &str,
    props: &[(&str, Value)],
) -> Sender {
    let mut fields = Fields::default();
    for (k, v) in props {
        fields.insert(Symbol::from(*k), v.clone());
    }
    Sender::builder()
        .name(name)
        .target(address)
        .add_desired_capabilities(IDEMPOTENT)
        .properties(fields)
        .attach(&mut client.session)
        .await
        .expect("attach")
}

/// A property the emulator announced on a link's attach.
pub fn announced(sender: &Sender, key: &str) -> Option<Value> {
    sender.properties(|p| p.as_ref().and_then(|p| p.get(&Symbol::from(key)).cloned()))
}

/// Events stamped as an idempotent producer stamps them: `count` from `first`.
pub fn numbered(producer_id: i64, epoch: i16, first: i32, count: i32) -> Vec<Msg> {
    (first..first + count)
        .map(|seq| {
            let mut e = event(&format!("s{seq}"), None);
            e.message_annotations = Some(annotations(&[
                ("com.microsoft:producer-sequence-number", Value::Int(seq)),
                ("com.microsoft:producer-id", Value::Long(producer_id)),
                ("com.microsoft:producer-epoch", Value::Short(epoch)),
            ]));
            e
        })
        .collect()
}
