//! Reading a hub back: its properties, and one partition's events from a start
//! position. Meant for tools and tests (it is what `hubcat tail` and `hubcat info`
//! use), not as a full consumer: there is no checkpointing, load balancing or
//! ownership.
//!
//! Files: `received` (what a read yields, decoded from the service's messages).

mod received;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::link::Receiver;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{ReceiverSettleMode, SenderSettleMode};
use fe2o3_amqp::types::messaging::{Body, Source};
use fe2o3_amqp::types::primitives::Value;
use futures_util::Stream;
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;

use crate::amqp::{Amqp, Endpoint, HubProperties, PartitionProperties, Peer};
use crate::connect::{Address, BrokerUrl};
use crate::credential::Credential;
use crate::Error;
use eventhubs_protocol::{SELECTOR_FILTER, SELECTOR_FILTER_CODE};
use streaming_producer_layers::retry::RetryPolicy;

pub use received::ReceivedEvent;

/// Where a read starts in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest event the partition retains.
    Earliest,
    /// Only events stored after the read starts.
    Latest,
    /// The event with this sequence number (inclusive), or the first one after it.
    SequenceNumber(i64),
    /// The first event stored after this time.
    EnqueuedTime(SystemTime),
}

impl StartPosition {
    /// The selector filter's expression, as the service reads it.
    fn expression(&self) -> String {
        match self {
            StartPosition::Earliest => "amqp.annotation.x-opt-offset > '-1'".to_owned(),
            StartPosition::Latest => "amqp.annotation.x-opt-offset > '@latest'".to_owned(),
            StartPosition::SequenceNumber(n) => {
                format!("amqp.annotation.x-opt-sequence-number >= '{n}'")
            }
            StartPosition::EnqueuedTime(t) => {
                let ms = match t.duration_since(SystemTime::UNIX_EPOCH) {
                    Ok(d) => d.as_millis() as i64,
                    Err(e) => -(e.duration().as_millis() as i64),
                };
                format!("amqp.annotation.x-opt-enqueued-time > '{ms}'")
            }
        }
    }
}

/// Configures and connects a [`Reader`].
#[derive(Debug)]
pub struct ReaderBuilder {
    address: Address,
    /// A generic AMQP broker's URL, instead of a hub.
    broker: Option<String>,
    /// PEM texts of certificates to trust over TLS besides the public roots.
    root_certificates: Vec<Vec<u8>>,
    consumer_group: String,
    prefetch: u32,
    timeout: Duration,
}

impl Default for ReaderBuilder {
    fn default() -> Self {
        Self {
            address: Address::default(),
            broker: None,
            root_certificates: Vec::new(),
            consumer_group: "$Default".to_owned(),
            prefetch: 300,
            timeout: Duration::from_secs(60),
        }
    }
}

impl ReaderBuilder {
    /// The namespace's (or the hub's) connection string.
    pub fn connection_string(mut self, connection_string: &str) -> Self {
        self.address.connection_string = Some(connection_string.to_owned());
        self
    }

    /// The namespace by its fully qualified name, instead of a connection string; see
    /// [`ProducerBuilder::fully_qualified_namespace`](crate::ProducerBuilder::fully_qualified_namespace).
    pub fn fully_qualified_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.address.namespace = Some(namespace.into());
        self
    }

    /// The namespace is a local emulator (plain AMQP); see
    /// [`ProducerBuilder::use_development_emulator`](crate::ProducerBuilder::use_development_emulator).
    pub fn use_development_emulator(mut self, emulator: bool) -> Self {
        self.address.development_emulator = emulator;
        self
    }

    /// The event hub, if the connection string has no `EntityPath`.
    pub fn hub(mut self, hub: impl Into<String>) -> Self {
        self.address.hub = Some(hub.into());
        self
    }

    /// A token provider; overrides the connection string's credentials.
    pub fn credential(mut self, credential: impl Credential) -> Self {
        self.address.credential = Some(Arc::new(credential));
        self
    }

    /// A generic AMQP 1.0 broker instead of Event Hubs (see
    /// [`ProducerBuilder::amqp_broker`](crate::ProducerBuilder::amqp_broker)): a
    /// [`read`](Reader::read) of such a reader takes the messages of a queue (its
    /// address in place of a partition id) from its head, accepting each one it
    /// yields, so that the broker removes it.
    pub fn amqp_broker(mut self, url: &str) -> Self {
        self.broker = Some(url.to_owned());
        self
    }

    /// Trusts the certificates of `pem` over TLS besides the public roots; see
    /// [`ProducerBuilder::add_root_certificate_pem`](crate::ProducerBuilder::add_root_certificate_pem).
    pub fn add_root_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.root_certificates.push(pem.as_ref().to_vec());
        self
    }

    /// Connects with AMQP over WebSockets; see
    /// [`ProducerBuilder::web_sockets`](crate::ProducerBuilder::web_sockets). Needs the
    /// crate's `websockets` feature.
    #[cfg(feature = "websockets")]
    pub fn web_sockets(mut self, web_sockets: bool) -> Self {
        self.address.web_sockets = web_sockets;
        self
    }

    /// Goes through an HTTP proxy's tunnel; see
    /// [`ProducerBuilder::proxy`](crate::ProducerBuilder::proxy). Needs the crate's
    /// `websockets` feature.
    #[cfg(feature = "websockets")]
    pub fn proxy(mut self, url: &str) -> Self {
        self.address.proxy = Some(url.to_owned());
        self
    }

    /// The consumer group reads go through (default `$Default`).
    pub fn consumer_group(mut self, group: impl Into<String>) -> Self {
        self.consumer_group = group.into();
        self
    }

    /// How many events the service may send ahead of what the reader has taken
    /// (link credit; default 300).
    pub fn prefetch(mut self, events: u32) -> Self {
        self.prefetch = events;
        self
    }

    /// Bound on connecting, attaching and each `$management` read (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects and reads the hub's properties, so that a wrong hub or credential
    /// fails here.
    pub async fn build(self) -> Result<Reader, Error> {
        if self.consumer_group.is_empty() {
            return Err(Error::config("the consumer group name is empty"));
        }
        if self.prefetch == 0 {
            return Err(Error::config("prefetch must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(Error::config("the timeout must be positive"));
        }
        let (url, host, peer, proxy) = match &self.broker {
            Some(url) => {
                self.address.refuse_with_broker()?;
                let broker = BrokerUrl::parse(url)?;
                let proxy = self.address.broker_proxy(&broker)?;
                let login = broker.login;
                (broker.url, broker.host, Peer::Broker { login }, proxy)
            }
            None => {
                let address = self.address.resolve()?;
                let hub = address.hub;
                let credential = address.credential;
                let peer = Peer::EventHubs { hub, credential };
                (address.url, address.host, peer, address.proxy)
            }
        };
        let roots = crate::amqp::roots_of(&self.root_certificates)?;
        let amqp = Amqp::spawn(Endpoint {
            url,
            host,
            peer,
            roots,
            proxy,
            identifier: format!("hubcat-reader-{}", std::process::id()),
            timeout: self.timeout,
            idempotent: false,
            reconnect: RetryPolicy::default(),
        });
        let reader = Reader {
            amqp,
            consumer_group: self.consumer_group,
            prefetch: self.prefetch,
        };
        // A wrong hub, address or credential fails here rather than on the first read.
        let checked = if reader.amqp.endpoint().is_broker() {
            match reader.amqp.session(false).await {
                Ok((mut session, _)) => {
                    let _ = tokio::time::timeout(self.timeout, session.end()).await;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            reader.hub_properties().await.map(drop)
        };
        if let Err(e) = checked {
            reader.amqp.close().await;
            return Err(e);
        }
        Ok(reader)
    }
}

/// A connection for reading a hub back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use futures_util::{SinkExt, StreamExt};
/// use streaming_producer::{EventData, Producer, Reader, StartPosition};
///
/// let emulator = eventhubs_emulator::Emulator::builder().hub("orders", 2).start().await?;
/// let cs = emulator.connection_string_for("orders");
/// let (mut producer, _outcomes) = Producer::builder().connection_string(&cs).build().await?;
/// producer.send(EventData::new("hello").with_partition_id("1")).await?;
/// producer.close().await?;
///
/// let reader = Reader::builder().connection_string(&cs).build().await?;
/// assert_eq!(reader.hub_properties().await?.partition_ids, ["0", "1"]);
/// let events = reader.read("1", StartPosition::Earliest);
/// let first = Box::pin(events).next().await.expect("one event")?;
/// assert_eq!(&first.body[..], b"hello");
/// assert_eq!(first.sequence_number, 0);
/// reader.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Reader {
    amqp: Amqp,
    consumer_group: String,
    prefetch: u32,
}

impl Reader {
    /// Starts configuring a reader.
    pub fn builder() -> ReaderBuilder {
        ReaderBuilder::default()
    }

    /// The hub this reader reads (empty for a generic broker).
    pub fn hub(&self) -> &str {
        self.amqp.endpoint().hub()
    }

    /// The hub's properties, read from `$management`.
    pub async fn hub_properties(&self) -> Result<HubProperties, Error> {
        self.amqp.properties().await
    }

    /// One partition's properties, read from `$management`.
    pub async fn partition_properties(
        &self,
        partition: &str,
    ) -> Result<PartitionProperties, Error> {
        self.amqp.partition_properties(partition).await
    }

    /// The events of `partition` from `from` on, as they arrive: the stream waits for
    /// new events and ends only with an error (yielded last) or when dropped.
    ///
    /// With a generic broker, `partition` is a queue's address, read from its head
    /// (only [`StartPosition::Earliest`] applies), and each message is accepted, so
    /// taken off the queue, as it is yielded.
    pub fn read(
        &self,
        partition: &str,
        from: StartPosition,
    ) -> impl Stream<Item = Result<ReceivedEvent, Error>> + Send + 'static {
        let amqp = self.amqp.clone();
        let endpoint = amqp.endpoint();
        let address = if endpoint.is_broker() {
            partition.to_owned()
        } else {
            format!(
                "{}/ConsumerGroups/{}/Partitions/{partition}",
                endpoint.hub(),
                self.consumer_group
            )
        };
        let name = format!("{}-read-{partition}", endpoint.identifier);
        let partition = partition.to_owned();
        let prefetch = self.prefetch;
        let start = Open {
            amqp,
            address,
            name,
            from,
            prefetch,
        };
        futures_util::stream::unfold(State::Start(start), move |state| {
            let partition = partition.clone();
            async move {
                let mut link = match state {
                    State::Done => return None,
                    State::Start(open) => match open.attach().await {
                        Ok(link) => link,
                        Err(e) => return Some((Err(e), State::Done)),
                    },
                    State::Reading(link) => link,
                };
                match link.next(&partition).await {
                    Ok(event) => Some((Ok(event), State::Reading(link))),
                    Err(e) => {
                        link.close().await;
                        Some((Err(e), State::Done))
                    }
                }
            }
        })
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.amqp.close().await;
    }
}

/// A read not yet attached.
struct Open {
    amqp: Amqp,
    address: String,
    name: String,
    from: StartPosition,
    prefetch: u32,
}

enum State {
    Start(Open),
    Reading(Box<Attached>),
    Done,
}

/// An attached reading link and the session it lives on.
struct Attached {
    session: SessionHandle<()>,
    receiver: Receiver,
}

impl Open {
    async fn attach(self) -> Result<Box<Attached>, Error> {
        let endpoint = self.amqp.endpoint();
        let (timeout, broker) = (endpoint.timeout, endpoint.is_broker());
        if broker && self.from != StartPosition::Earliest {
            return Err(Error::config(format!(
                "a broker's queue is read from its head: {:?} needs Event Hubs",
                self.from
            )));
        }
        let (mut session, _generation) = self.amqp.session(true).await?;
        let source = Source::builder().address(self.address.as_str());
        let source = if broker {
            source.build()
        } else {
            let filter = Described {
                descriptor: Descriptor::Code(SELECTOR_FILTER_CODE),
                value: Value::String(self.from.expression()),
            };
            source.add_to_filter(SELECTOR_FILTER, filter).build()
        };
        // A broker's message is taken off its queue once accepted, so it is sent
        // unsettled and accepted as it is read: one not read yet goes back to the
        // queue if the reader stops. Event Hubs' events stay in their partition.
        let settle = if broker {
            SenderSettleMode::Unsettled
        } else {
            SenderSettleMode::Settled
        };
        let attach = Receiver::builder()
            .name(self.name)
            .source(source)
            .target("hubcat")
            .sender_settle_mode(settle)
            .receiver_settle_mode(ReceiverSettleMode::First)
            .credit_mode(CreditMode::Auto(self.prefetch))
            .attach(&mut session);
        let receiver = tokio::time::timeout(timeout, attach)
            .await
            .map_err(|_| Error::timeout())?
            .map_err(|err| {
                let refused = match &err {
                    fe2o3_amqp::link::ReceiverAttachError::RemoteClosedWithError(e) => {
                        Some(crate::amqp::from_amqp_error(e, true))
                    }
                    _ => None,
                };
                refused
                    .unwrap_or_else(|| {
                        Error::connection(format!("cannot attach a receiver to {}", self.address))
                    })
                    .with_source(err)
            })?;
        Ok(Box::new(Attached { session, receiver }))
    }
}

impl Attached {
    async fn next(&mut self, partition: &str) -> Result<ReceivedEvent, Error> {
        let delivery = self
            .receiver
            .recv::<Body<Value>>()
            .await
            .map_err(|err| match &err {
                fe2o3_amqp::link::RecvError::LinkStateError(
                    fe2o3_amqp::link::LinkStateError::RemoteDetachedWithError(e)
                    | fe2o3_amqp::link::LinkStateError::RemoteClosedWithError(e),
                ) => crate::amqp::from_amqp_error(e, true).with_source(err),
                _ => Error::connection("the reading link failed").with_source(err),
            })?;
        // Settled on send, as asked, this is nothing; a service that does not settle
        // on send gets the event accepted.
        let _ = self.receiver.accept(&delivery).await;
        Ok(ReceivedEvent::from_message(
            partition,
            delivery.into_message(),
        ))
    }

    async fn close(self: Box<Self>) {
        let Attached {
            mut session,
            receiver,
        } = *self;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = receiver.close().await;
            let _ = session.end().await;
        })
        .await;
    }
}
