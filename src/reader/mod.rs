//! Reading a hub back: its properties, and one partition's events from a start
//! position. Meant for tools and tests (it is what `hubcat tail` and `hubcat info`
//! use), not as a full consumer: there is no checkpointing, load balancing or
//! ownership.
//!
//! Files: `builder` (the reader's options and connecting), `received` (what a read
//! yields, decoded from the service's messages).

mod builder;
mod received;

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

use crate::amqp::{Amqp, HubProperties, PartitionProperties};
use crate::Error;
use eventhubs_protocol::{SELECTOR_FILTER, SELECTOR_FILTER_CODE};

pub use builder::ReaderBuilder;
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
