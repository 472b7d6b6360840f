//! The producer: a [`Sink`](futures_sink::Sink) of events and a stream of outcomes.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::{SinkExt, StreamExt};
//! use streaming_producer::{EventData, Producer};
//! # let emulator = eventhubs_emulator::Emulator::builder().hub("eh1", 4).start().await?;
//! # let connection_string = emulator.connection_string_for("eh1");
//!
//! let (mut producer, mut outcomes) = Producer::builder()
//!     .connection_string(&connection_string)
//!     .build()
//!     .await?;
//! producer.send(EventData::new("hello").with_partition_key("user-1")).await?;
//! producer.close().await?;
//! let outcome = outcomes.next().await.expect("one batch");
//! assert!(outcome.is_success());
//! assert_eq!(outcome.events.len(), 1);
//! # Ok(()) }
//! ```
//!
//! # Backpressure
//!
//! `poll_ready` waits while `max_pending_events` events (or `max_pending_bytes` bytes
//! of bodies) are pending, counting events in open batches, in flight and with
//! outcomes not yet queued. Events leave the count when their outcome is queued.
//!
//! # Ordering
//!
//! With one send in flight per partition (the default), the events of a partition are
//! published in the order they were accepted.
//!
//! # Drop behavior
//!
//! Dropping every producer handle without closing publishes what is pending (as a
//! close would), but nothing waits for it; close the producer to know when it is done.

mod driver;
mod outcome;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_sink::Sink;
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio_util::sync::{PollSemaphore, ReusableBoxFuture};
use tower::util::BoxCloneService;
use tower::{Layer, Service};

pub use outcome::{BatchOutcome, Outcomes};

use crate::amqp::{Amqp, Endpoint};
use crate::base::{AmqpSend, SendFailure};
use crate::batch::Batch;
use crate::codec;
use crate::connection_string::{ConnectionString, ConnectionStringCredentials};
use crate::credential::{Credential, SasTokenCredential, SharedKeyCredential};
use crate::error::{Error, Kind};
use crate::idempotent::Idempotent;
use crate::{EventData, PartitionProperties, Routing};
use driver::{Command, Driver, Stack};
use streaming_producer_layers::retry::{RetryLayer, RetryPolicy};
use streaming_producer_layers::route::{Partitioner, RoundRobin, ServiceHash, Sticky};

/// A close in progress, as `poll_close` drives it.
type ClosingFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// Command-channel slots for flush and close, beside one per pending event.
const CONTROL_SLOTS: usize = 64;

/// The most partitions an Event Hub can have.
const MAX_PARTITIONS: usize = 1024;

/// How events without a partition id or key are spread.
#[derive(Debug)]
enum Keyless {
    RoundRobin(RoundRobin),
    Sticky(Sticky),
}

/// State shared by the producer handles and the driver.
pub(crate) struct Shared {
    /// Events are encoded with room for the idempotent annotations.
    idempotent: bool,
    partition_ids: RwLock<Arc<[String]>>,
    pending_per_partition: Vec<AtomicUsize>,
    events: Arc<Semaphore>,
    max_pending_bytes: usize,
    pending_bytes: AtomicUsize,
    bytes_freed: Notify,
    partitioner: Arc<dyn Partitioner>,
    keyless: Mutex<Keyless>,
    max_batch_bytes: usize,
    closed: AtomicBool,
    /// Slots in the command channel for flush and close commands.
    control: Arc<Semaphore>,
    /// Becomes true when the driver has reported everything and closed the connection.
    finished: watch::Receiver<bool>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("partition_ids", &self.partition_ids)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("keyless", &self.keyless)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn total_pending(&self) -> usize {
        self.pending_per_partition
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .sum()
    }

    fn ids(&self) -> Arc<[String]> {
        self.partition_ids
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn partition_count(&self) -> usize {
        self.ids().len()
    }

    /// Adopts a refreshed list of partition ids if it has more partitions (partitions
    /// are added, never removed); returns whether it changed.
    pub(crate) fn refresh_ids(&self, ids: Vec<String>) -> bool {
        let mut current = self
            .partition_ids
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let grows = ids.len() > current.len()
            && ids.len() <= self.pending_per_partition.len()
            && ids.starts_with(&current[..]);
        if grows {
            tracing::info!(
                from = current.len(),
                to = ids.len(),
                "the hub has more partitions"
            );
            *current = ids.into();
        }
        grows
    }

    pub(crate) fn partition_id(&self, index: usize) -> String {
        self.ids().get(index).cloned().unwrap_or_default()
    }

    /// Events of `partition` got their outcome.
    pub(crate) fn settled(&self, partition: Option<usize>, count: usize) {
        if let Some(p) = partition.and_then(|i| self.pending_per_partition.get(i)) {
            p.fetch_sub(count, Ordering::Relaxed);
        }
    }

    /// Gives back the capacity of events whose outcome was handed out (or dropped).
    pub(crate) fn release(&self, count: usize, bytes: usize) {
        self.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.bytes_freed.notify_waiters();
        self.events.add_permits(count);
    }

    /// Resolves once the byte budget has room.
    async fn bytes_available(self: Arc<Self>) {
        loop {
            let freed = self.bytes_freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between is not missed.
            freed.as_mut().enable();
            if self.pending_bytes.load(Ordering::Relaxed) < self.max_pending_bytes {
                return;
            }
            freed.await;
        }
    }
}

/// A partition, named by its id or by a partition key (the partition the key is
/// routed to, as for an event with that key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partition {
    /// A partition id, e.g. `"0"`.
    Id(String),
    /// A partition key.
    Key(String),
}

impl Partition {
    /// The partition with this id.
    pub fn id(id: impl Into<String>) -> Self {
        Self::Id(id.into())
    }

    /// The partition this key is routed to.
    pub fn key(key: impl Into<String>) -> Self {
        Self::Key(key.into())
    }
}

/// The producer: forward events into it as a [`Sink`], or call
/// [`enqueue`](Producer::enqueue). Build one with [`Producer::builder`].
///
/// Cloning gives another handle on the same producer; a clone starts without a
/// reserved slot.
pub struct Producer {
    shared: Arc<Shared>,
    amqp: Option<Amqp>,
    commands: mpsc::Sender<Command>,
    permits: PollSemaphore,
    reserved: bool,
    bytes_wait: Option<ReusableBoxFuture<'static, ()>>,
    closing: Option<ClosingFuture>,
    close_done: bool,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("total_pending", &self.total_pending())
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Clone for Producer {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            amqp: self.amqp.clone(),
            commands: self.commands.clone(),
            permits: self.permits.clone(),
            reserved: false,
            bytes_wait: None,
            closing: None,
            close_done: false,
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if self.reserved {
            self.shared.events.add_permits(1);
        }
    }
}

/// An event that was not accepted, handed back with the reason.
#[derive(Debug)]
pub struct EnqueueError {
    error: Error,
    event: Option<Box<EventData>>,
}

impl EnqueueError {
    /// Why the event was not accepted.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The event, back (`None` when no event was involved, as for a failed
    /// `poll_ready`).
    pub fn into_event(self) -> Option<EventData> {
        self.event.map(|e| *e)
    }

    fn new(error: Error, event: EventData) -> Self {
        Self {
            error,
            event: Some(Box::new(event)),
        }
    }
}

impl std::fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the event was not accepted: {}", self.error)
    }
}

impl std::error::Error for EnqueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl Producer {
    /// A builder with the defaults: `max_wait` 250 ms, 2500 pending events, 64 MiB of
    /// pending bodies, one send in flight per partition, 60 s per try, 2 minutes from
    /// acceptance to outcome.
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::default()
    }

    /// Events accepted and without an outcome yet, in total.
    pub fn total_pending(&self) -> usize {
        self.shared.total_pending()
    }

    /// Events accepted and without an outcome yet, for one partition id.
    pub fn pending(&self, partition: &str) -> usize {
        self.shared
            .ids()
            .iter()
            .position(|id| id == partition)
            .and_then(|i| self.shared.pending_per_partition.get(i))
            .map(|p| p.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// The largest batch, in encoded bytes (the link's `max-message-size`).
    pub fn max_batch_bytes(&self) -> usize {
        self.shared.max_batch_bytes
    }

    /// Reads a partition's properties from `$management`.
    pub async fn partition_properties(
        &self,
        partition: &str,
    ) -> Result<PartitionProperties, Error> {
        match &self.amqp {
            Some(amqp) => amqp.partition_properties(partition).await,
            None => Err(Error::config(
                "a producer over a custom service has no management connection",
            )),
        }
    }

    /// Reads the hub's partition ids now and applies a grown count (the producer also
    /// does this every `partition_refresh_interval`); returns the ids in use.
    pub async fn refresh_partitions(&self) -> Result<Vec<String>, Error> {
        let amqp = self.amqp.as_ref().ok_or_else(|| {
            Error::config("a producer over a custom service has no management connection")
        })?;
        let properties = amqp.properties().await?;
        self.shared.refresh_ids(properties.partition_ids);
        Ok(self.partition_ids())
    }

    /// The hub's partition ids.
    pub fn partition_ids(&self) -> Vec<String> {
        self.shared.ids().to_vec()
    }

    /// Waits for room, then accepts the event. Fails only when the producer is closed
    /// (handing the event back); every accepted event gets an outcome.
    pub async fn enqueue(&mut self, event: EventData) -> Result<(), EnqueueError> {
        if let Err(error) = std::future::poll_fn(|cx| self.poll_reserve(cx)).await {
            return Err(EnqueueError::new(error, event));
        }
        self.accept(event)
    }

    /// [`enqueue`](Self::enqueue)s each event in turn.
    pub async fn enqueue_all(
        &mut self,
        events: impl IntoIterator<Item = EventData>,
    ) -> Result<(), EnqueueError> {
        for event in events {
            self.enqueue(event).await?;
        }
        Ok(())
    }

    /// Publishes every open batch now and resolves once every event accepted before
    /// the call has its outcome queued. Other handles may keep enqueueing meanwhile;
    /// their later events do not delay it.
    pub async fn flush(&self) -> Result<(), Error> {
        let (done, wait) = oneshot::channel();
        self.control(|slot| Command::Flush { done, _slot: slot })
            .await?;
        wait.await.map_err(|_| Error::closed())
    }

    /// Publishes the open batch of one partition now and resolves once every event
    /// accepted for that partition before the call has its outcome queued. Other
    /// partitions keep batching as usual.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emulator = eventhubs_emulator::Emulator::builder().hub("eh1", 4).start().await?;
    /// use std::time::Duration;
    /// use streaming_producer::{EventData, Partition, Producer};
    ///
    /// let (mut producer, _outcomes) = Producer::builder()
    ///     .connection_string(&emulator.connection_string_for("eh1"))
    ///     .max_wait(Duration::from_secs(60))
    ///     .build()
    ///     .await?;
    /// producer.enqueue(EventData::new("now").with_partition_key("user-1")).await?;
    /// producer.enqueue(EventData::new("later").with_partition_id("0")).await?;
    /// producer.flush_partition(Partition::key("user-1")).await?;
    /// assert_eq!(producer.pending("0"), 1);
    /// # producer.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn flush_partition(&self, partition: Partition) -> Result<(), Error> {
        let partition = self.resolve(&partition)?;
        let (done, wait) = oneshot::channel();
        self.control(|slot| Command::FlushPartition {
            partition,
            done,
            _slot: slot,
        })
        .await?;
        wait.await.map_err(|_| Error::closed())
    }

    /// Hands back the events of one partition that are not yet being sent (its open
    /// batch and batches waiting their turn) in outcomes marked abandoned
    /// ([`BatchOutcome::is_abandoned`]); returns how many. A send already in flight
    /// finishes. The producer stays open, and the partition takes new events.
    pub async fn clear_partition(&self, partition: Partition) -> Result<usize, Error> {
        let partition = self.resolve(&partition)?;
        let (done, wait) = oneshot::channel();
        self.control(|slot| Command::ClearPartition {
            partition,
            done,
            _slot: slot,
        })
        .await?;
        wait.await.map_err(|_| Error::closed())
    }

    /// The index of a partition named by id or key.
    fn resolve(&self, partition: &Partition) -> Result<usize, Error> {
        let ids = self.shared.ids();
        match partition {
            Partition::Id(id) => ids
                .iter()
                .position(|p| p == id)
                .ok_or_else(|| Error::new(Kind::UnknownPartition(id.clone()))),
            Partition::Key(key) => {
                Ok(self.shared.partitioner.partition_for_key(key, ids.len()) % ids.len())
            }
        }
    }

    /// Sends a control command (flush, clear) through the event channel, so that it
    /// comes after every event sent before it.
    async fn control(
        &self,
        make: impl FnOnce(tokio::sync::OwnedSemaphorePermit) -> Command,
    ) -> Result<(), Error> {
        let slot = self
            .shared
            .control
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::closed())?;
        self.commands
            .send(make(slot))
            .await
            .map_err(|_| Error::closed())
    }

    /// Publishes everything pending, waits for every outcome, then closes the
    /// connection. Later enqueues fail with [`Error::is_closed`].
    pub async fn close(&mut self) -> Result<(), Error> {
        self.shutdown(false).await
    }

    /// Stops publishing: events not yet handed to the service come back in outcomes
    /// marked abandoned ([`BatchOutcome::is_abandoned`]); sends already in flight
    /// finish first. Then closes the connection.
    pub async fn close_abandon(&mut self) -> Result<(), Error> {
        self.shutdown(true).await
    }

    async fn shutdown(&mut self, abandon: bool) -> Result<(), Error> {
        self.shared.closed.store(true, Ordering::SeqCst);
        // A failed send means another handle's close got there first; either way the
        // producer is done once the driver says so.
        if let Ok(slot) = self.shared.control.clone().acquire_owned().await {
            let _ = self
                .commands
                .send(Command::Close {
                    abandon,
                    _slot: slot,
                })
                .await;
        }
        let mut finished = self.shared.finished.clone();
        finished
            .wait_for(|done| *done)
            .await
            .map(|_| ())
            .map_err(|_| Error::connection("the producer's driver stopped unexpectedly"))
    }

    fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(Error::closed()));
        }
        if !self.reserved {
            match ready!(self.permits.poll_acquire(cx)) {
                Some(permit) => {
                    permit.forget();
                    self.reserved = true;
                }
                None => return Poll::Ready(Err(Error::closed())),
            }
        }
        if self.shared.pending_bytes.load(Ordering::Relaxed) >= self.shared.max_pending_bytes {
            let shared = self.shared.clone();
            match &mut self.bytes_wait {
                Some(wait) => wait.set(shared.bytes_available()),
                None => self.bytes_wait = Some(ReusableBoxFuture::new(shared.bytes_available())),
            }
        }
        if let Some(wait) = self.bytes_wait.as_mut() {
            ready!(wait.poll(cx));
            self.bytes_wait = None;
        }
        Poll::Ready(Ok(()))
    }

    /// Routes, encodes and hands the event to the driver; needs a reserved slot.
    fn accept(&mut self, event: EventData) -> Result<(), EnqueueError> {
        if !self.reserved {
            return Err(EnqueueError::new(
                Error::config("poll_ready must succeed before start_send"),
                event,
            ));
        }
        #[cfg(feature = "opentelemetry")]
        let event = crate::trace_context::stamp(event);
        let ids = self.shared.ids();
        let encoded = codec::encode(&event, self.shared.idempotent);
        let cost = Batch::cost(&encoded);
        let routed = match event.routing() {
            Routing::PartitionId(id) => ids
                .iter()
                .position(|p| p == id)
                .ok_or_else(|| (id.clone(), Error::new(Kind::UnknownPartition(id.clone())))),
            Routing::PartitionKey(key) => {
                Ok(self.shared.partitioner.partition_for_key(key, ids.len()) % ids.len())
            }
            Routing::Auto => Ok(
                match &mut *self
                    .shared
                    .keyless
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                {
                    Keyless::RoundRobin(rr) => rr.next(ids.len()),
                    Keyless::Sticky(s) => s.next(cost, ids.len()),
                },
            ),
        };
        let command = match routed {
            Ok(_) if cost > self.shared.max_batch_bytes => Command::Refused {
                partition: ids[routed.as_ref().copied().unwrap_or(0)].clone(),
                event,
                error: Error::new(Kind::TooLarge {
                    size: cost,
                    max: self.shared.max_batch_bytes,
                }),
            },
            Ok(partition) => {
                self.shared.pending_per_partition[partition].fetch_add(1, Ordering::Relaxed);
                Command::Event {
                    partition,
                    event,
                    encoded,
                }
            }
            Err((partition, error)) => Command::Refused {
                partition,
                event,
                error,
            },
        };
        // Every accepted event, refused ones included, counts until its outcome is
        // reported, where the driver gives back exactly these bytes.
        let body_len = match &command {
            Command::Event { event, .. } | Command::Refused { event, .. } => event.body().len(),
            _ => 0,
        };
        self.shared
            .pending_bytes
            .fetch_add(body_len, Ordering::Relaxed);
        match self.commands.try_send(command) {
            Ok(()) => {
                self.reserved = false;
                Ok(())
            }
            Err(e) => {
                self.shared
                    .pending_bytes
                    .fetch_sub(body_len, Ordering::Relaxed);
                let command = e.into_inner();
                let event = match command {
                    Command::Event {
                        event, partition, ..
                    } => {
                        self.shared.pending_per_partition[partition]
                            .fetch_sub(1, Ordering::Relaxed);
                        event
                    }
                    Command::Refused { event, .. } => event,
                    _ => unreachable!("only events are sent here"),
                };
                Err(EnqueueError::new(Error::closed(), event))
            }
        }
    }
}

/// A failed `start_send` hands the event back in the [`EnqueueError`].
impl Sink<EventData> for Producer {
    type Error = EnqueueError;

    fn poll_ready(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), EnqueueError>> {
        self.poll_reserve(cx)
            .map_err(|error| EnqueueError { error, event: None })
    }

    fn start_send(mut self: Pin<&mut Self>, event: EventData) -> Result<(), EnqueueError> {
        self.accept(event)
    }

    /// A hand-off: accepted events are already with the producer, so this is ready at
    /// once and `forward` of a sparse stream still builds dense batches. Use
    /// [`Producer::flush`] to publish now and wait for outcomes.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), EnqueueError>> {
        Poll::Ready(Ok(()))
    }

    /// Publishes everything and waits for every outcome, like [`Producer::close`].
    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), EnqueueError>> {
        if self.close_done {
            return Poll::Ready(Ok(()));
        }
        if self.closing.is_none() {
            let mut handle = self.clone();
            self.closing = Some(Box::pin(async move { handle.shutdown(false).await }));
        }
        let closing = self.closing.as_mut().expect("set above");
        let result = ready!(closing.as_mut().poll(cx));
        self.closing = None;
        self.close_done = true;
        Poll::Ready(result.map_err(|error| EnqueueError { error, event: None }))
    }
}

type LayerFn = Box<dyn FnOnce(Stack) -> Stack + Send>;

/// Reads the partition ids every `period` until the producer is gone or closed.
async fn refresh_partitions(shared: std::sync::Weak<Shared>, amqp: Amqp, period: Duration) {
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match shared.upgrade() {
            Some(s) if !s.closed.load(Ordering::SeqCst) => {}
            _ => return,
        }
        match amqp.properties().await {
            Ok(p) => {
                if let Some(s) = shared.upgrade() {
                    s.refresh_ids(p.partition_ids);
                }
            }
            Err(e) if e.is_closed() => return,
            Err(e) => tracing::debug!("partition refresh failed: {e}"),
        }
    }
}

/// Configures and builds a [`Producer`].
pub struct ProducerBuilder {
    connection_string: Option<String>,
    hub: Option<String>,
    credential: Option<Arc<dyn Credential>>,
    max_wait: Duration,
    max_pending_events: usize,
    max_pending_bytes: usize,
    max_concurrent_sends_per_partition: usize,
    try_timeout: Duration,
    delivery_timeout: Duration,
    identifier: Option<String>,
    layers: Vec<LayerFn>,
    partitioner: Arc<dyn Partitioner>,
    sticky: bool,
    partition_refresh: Duration,
    retry: RetryPolicy,
    idempotent: bool,
}

impl std::fmt::Debug for ProducerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerBuilder")
            .field("hub", &self.hub)
            .field("max_wait", &self.max_wait)
            .field("max_pending_events", &self.max_pending_events)
            .field("max_pending_bytes", &self.max_pending_bytes)
            .field(
                "max_concurrent_sends_per_partition",
                &self.max_concurrent_sends_per_partition,
            )
            .field("try_timeout", &self.try_timeout)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("identifier", &self.identifier)
            .field("layers", &self.layers.len())
            .field("sticky", &self.sticky)
            .field("retry", &self.retry)
            .field("idempotent", &self.idempotent)
            .finish_non_exhaustive()
    }
}

impl Default for ProducerBuilder {
    fn default() -> Self {
        Self {
            connection_string: None,
            hub: None,
            credential: None,
            max_wait: Duration::from_millis(250),
            max_pending_events: 2500,
            max_pending_bytes: 64 << 20,
            max_concurrent_sends_per_partition: 1,
            try_timeout: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(120),
            identifier: None,
            layers: Vec::new(),
            partitioner: Arc::new(ServiceHash),
            sticky: false,
            partition_refresh: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            idempotent: false,
        }
    }
}

impl ProducerBuilder {
    /// The connection string (`Endpoint=sb://...;SharedAccessKeyName=...;...`).
    pub fn connection_string(mut self, connection_string: &str) -> Self {
        self.connection_string = Some(connection_string.to_owned());
        self
    }

    /// The event hub, if the connection string has no `EntityPath`.
    pub fn hub(mut self, hub: impl Into<String>) -> Self {
        self.hub = Some(hub.into());
        self
    }

    /// A token provider; overrides the connection string's credentials.
    pub fn credential(mut self, credential: impl Credential) -> Self {
        self.credential = Some(Arc::new(credential));
        self
    }

    /// How long the oldest event of an open batch may wait before the batch is published.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// How many events may be pending (in open batches, in flight, awaiting outcome).
    pub fn max_pending_events(mut self, n: usize) -> Self {
        self.max_pending_events = n;
        self
    }

    /// How many bytes of event bodies may be pending.
    pub fn max_pending_bytes(mut self, n: usize) -> Self {
        self.max_pending_bytes = n;
        self
    }

    /// Sends in flight per partition. Above 1, events of a partition may be stored out
    /// of order when a send fails and a later one succeeds.
    pub fn max_concurrent_sends_per_partition(mut self, n: usize) -> Self {
        self.max_concurrent_sends_per_partition = n;
        self
    }

    /// How failed batches are retried: only retryable errors
    /// ([`Error::is_retryable`]), with exponential backoff; the default is 3 retries
    /// from 0.8 s, doubling, at most 60 s apart, and none after the delivery timeout.
    /// With one send in flight per partition, retries keep the partition's order. A
    /// retried send whose first try was stored after all (a lost acknowledgement) is
    /// stored twice: delivery is at least once (see
    /// [`idempotent_retries`](Self::idempotent_retries)). The same backoff spaces the
    /// attempts to reconnect while the service cannot be reached: one attempt at a
    /// time for all partitions, and waiting for the connection is not a try.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Idempotent retries (default off): each partition's events are numbered
    /// (`com.microsoft:producer-sequence-number`, with a producer group id and epoch
    /// the service assigns), so a batch retried after a lost acknowledgement is
    /// stored once, not twice. A batch whose fate is unknown (its transfer reached
    /// the service and no verdict came back) is retried with the same numbers until
    /// the service acknowledges it or its [delivery
    /// timeout](Self::delivery_timeout) passes, whatever the retry policy's count;
    /// numbers never go to other events meanwhile. If the deadline passes, the batch
    /// is reported failed with [`Error::is_ambiguous`] and the partition starts a new
    /// producer group before it sends anything else. A refusal as out of order (the
    /// service lost its state, say after a restart) costs a new producer group and
    /// one more try, not the events. Needs one send in flight per partition (the
    /// default); keyed events are routed by the producer and published on their
    /// partition's link with the key. Every event carries about 120 bytes of
    /// annotations more.
    pub fn idempotent_retries(mut self, enabled: bool) -> Self {
        self.idempotent = enabled;
        self
    }

    /// Bound on one try to publish a batch, from its transfer to the service's
    /// verdict (and on each connection attempt and link attach); default 60 s. A try
    /// that times out is retried like any transient failure.
    pub fn try_timeout(mut self, timeout: Duration) -> Self {
        self.try_timeout = timeout;
        self
    }

    /// The longest time from an event's acceptance to its outcome (Kafka's
    /// `delivery.timeout.ms`), default 2 minutes like Kafka's. It counts everything: the
    /// wait in an open batch (at most `max_wait`), waiting to be sent, waiting for the
    /// connection while it cannot be re-established, every try (each also bounded by
    /// `try_timeout`), and the backoff between them. No retry starts after it; a try in
    /// progress is cut short by it; events still waiting fail at it with an error for
    /// which [`Error::is_timeout`] is true. So [`Producer::close`] returns within it
    /// (plus a few seconds to close the connection) even when the service is gone for
    /// good. It must be longer than `max_wait`, or no event could ever be published.
    ///
    /// With idempotent retries, a batch whose fate is unknown is retried with its
    /// numbers until this deadline, whatever the retry policy's count.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streaming_producer::Producer;
    ///
    /// let builder = Producer::builder()
    ///     .max_wait(Duration::from_millis(100))
    ///     .try_timeout(Duration::from_secs(10))
    ///     .delivery_timeout(Duration::from_secs(30));
    /// # let _ = builder;
    /// ```
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// Maps partition keys to partitions; the default is the service's own hash, so
    /// keyed events land where any other producer would put them.
    pub fn partitioner(mut self, partitioner: impl Partitioner) -> Self {
        self.partitioner = Arc::new(partitioner);
        self
    }

    /// Keyless events: `false` (the default) spreads them round-robin, one event at a
    /// time; `true` fills one partition's batch before moving to the next, for fuller
    /// batches at low rates.
    pub fn sticky_routing(mut self, sticky: bool) -> Self {
        self.sticky = sticky;
        self
    }

    /// How often the hub's partition ids are read again (default 30 s); a grown
    /// partition count is applied at once, so keys hash over the new count as the
    /// service does.
    pub fn partition_refresh_interval(mut self, interval: Duration) -> Self {
        self.partition_refresh = interval;
        self
    }

    /// A name for this producer (the AMQP container id).
    pub fn identifier(mut self, identifier: impl Into<String>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }

    /// Wraps the batch-level stack in a tower layer of yours; the last added is outermost.
    /// Your layers sit inside the retry layer, so each try passes through them. A layer
    /// that waits (a rate limit, say) should give up at the batch's
    /// [`Batch::deadline`]; the producer's own layers do, and that is what bounds
    /// `close()`.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Stack> + Send + 'static,
        L::Service: Service<Batch, Response = Batch, Error = SendFailure> + Clone + Send + 'static,
        <L::Service as Service<Batch>>::Future: Send + 'static,
    {
        self.layers.push(Box::new(move |stack| {
            BoxCloneService::new(layer.layer(stack))
        }));
        self
    }

    fn validate(&self) -> Result<(), Error> {
        if !(1..=1 << 24).contains(&self.max_pending_events) {
            return Err(Error::config(
                "max_pending_events must be between 1 and 16,777,216",
            ));
        }
        if self.max_pending_bytes == 0 {
            return Err(Error::config("max_pending_bytes must be at least 1"));
        }
        if self.max_concurrent_sends_per_partition == 0 {
            return Err(Error::config(
                "max_concurrent_sends_per_partition must be at least 1",
            ));
        }
        if self.try_timeout.is_zero() {
            return Err(Error::config("try_timeout must be positive"));
        }
        if self.delivery_timeout <= self.max_wait {
            return Err(Error::config(format!(
                "delivery_timeout ({:?}) must be longer than max_wait ({:?}): an event may \
                 wait max_wait in its batch before it is even sent",
                self.delivery_timeout, self.max_wait
            )));
        }
        if self.idempotent && self.max_concurrent_sends_per_partition > 1 {
            return Err(Error::config(
                "idempotent_retries needs max_concurrent_sends_per_partition = 1: \
                 the service takes an idempotent producer's batches strictly in sequence",
            ));
        }
        Ok(())
    }

    /// Connects, reads the hub's partitions and the link's `max-message-size`, and
    /// starts the producer.
    pub async fn build(self) -> Result<(Producer, Outcomes), Error> {
        self.validate()?;
        let text = self
            .connection_string
            .as_deref()
            .ok_or_else(|| Error::config("a connection string is needed"))?;
        let cs: ConnectionString = text.parse()?;
        let hub = cs.resolve_hub(self.hub.as_deref())?;
        let credential: Arc<dyn Credential> =
            match (&self.credential, cs.credentials()) {
                (Some(c), _) => c.clone(),
                (None, Some(ConnectionStringCredentials::SharedKey { name, key })) => {
                    Arc::new(SharedKeyCredential::new(name.clone(), key.clone()))
                }
                (None, Some(ConnectionStringCredentials::SharedAccessSignature(sas))) => {
                    Arc::new(SasTokenCredential::new(sas.clone())?)
                }
                (None, None) => return Err(Error::config(
                    "no credentials: the connection string has none and no credential was given",
                )),
            };
        let identifier = self
            .identifier
            .clone()
            .unwrap_or_else(|| format!("streaming-producer-{}", std::process::id()));
        #[cfg(feature = "opentelemetry")]
        let identifier_for_metrics = identifier.clone();
        let hub_name = hub.clone();
        let amqp = Amqp::spawn(Endpoint {
            url: cs.amqp_url(),
            host: cs.host().to_owned(),
            hub,
            credential,
            identifier,
            timeout: self.try_timeout,
            idempotent: self.idempotent,
            reconnect: self.retry.clone(),
        });
        let started = async {
            let properties = amqp.properties().await?;
            let max = amqp.max_message_size(&properties.partition_ids[0]).await?;
            Ok::<_, Error>((properties, max))
        };
        let (properties, max) = match started.await {
            Ok(v) => v,
            Err(e) => {
                amqp.close().await;
                return Err(e);
            }
        };
        let base = BoxCloneService::new(AmqpSend::new(amqp.clone(), self.try_timeout, &hub_name));
        let closer = amqp.clone();
        let on_close: Pin<Box<dyn Future<Output = ()> + Send>> =
            Box::pin(async move { closer.close().await });
        let refresh = self.partition_refresh;
        let idempotency = self.idempotent.then(|| amqp.clone());
        let (mut producer, outcomes) = self.start(
            base,
            properties.partition_ids,
            max as usize,
            Some(on_close),
            idempotency,
        );
        tokio::spawn(refresh_partitions(
            Arc::downgrade(&producer.shared),
            amqp.clone(),
            refresh,
        ));
        producer.amqp = Some(amqp);
        #[cfg(feature = "opentelemetry")]
        crate::metrics::pending_gauge(
            &hub_name,
            &identifier_for_metrics,
            Arc::downgrade(&producer.shared),
            Shared::total_pending,
        );
        Ok((producer, outcomes))
    }

    /// Starts a producer over your own batch service instead of the AMQP connection:
    /// for other transports, and for tests. `max_batch_bytes` plays the part of the
    /// link's `max-message-size`.
    pub fn build_with_service<S>(
        self,
        service: S,
        partition_ids: Vec<String>,
        max_batch_bytes: usize,
    ) -> Result<(Producer, Outcomes), Error>
    where
        S: Service<Batch, Response = Batch, Error = SendFailure> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        self.validate()?;
        if partition_ids.is_empty() {
            return Err(Error::config("at least one partition id is needed"));
        }
        if max_batch_bytes == 0 {
            return Err(Error::config("max_batch_bytes must be positive"));
        }
        if self.idempotent {
            return Err(Error::config(
                "idempotent_retries needs the service's producer state, which only the \
                 AMQP connection of build() has",
            ));
        }
        Ok(self.start(
            BoxCloneService::new(service),
            partition_ids,
            max_batch_bytes,
            None,
            None,
        ))
    }

    fn start(
        self,
        base: Stack,
        partition_ids: Vec<String>,
        max_batch_bytes: usize,
        on_close: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
        idempotency: Option<Amqp>,
    ) -> (Producer, Outcomes) {
        // Idempotency wraps Retry, which wraps the user's layers, which wrap the base
        // service: a retry resends the batch as it was numbered.
        let stack = self
            .layers
            .into_iter()
            .fold(base, |stack, layer| layer(stack));
        let mut stack = BoxCloneService::new(RetryLayer::new(self.retry.clone()).layer(stack));
        if let Some(amqp) = idempotency {
            stack = BoxCloneService::new(Idempotent::new(
                stack,
                amqp,
                self.retry.clone(),
                self.try_timeout,
            ));
        }
        let events = Arc::new(Semaphore::new(self.max_pending_events));
        let (finished_tx, finished) = watch::channel(false);
        let shared = Arc::new(Shared {
            idempotent: self.idempotent,
            // Room for the most partitions a hub can have, so a refreshed partition
            // list never needs new counters.
            pending_per_partition: (0..partition_ids.len().max(MAX_PARTITIONS))
                .map(|_| AtomicUsize::new(0))
                .collect(),
            partition_ids: RwLock::new(partition_ids.into()),
            events: events.clone(),
            max_pending_bytes: self.max_pending_bytes,
            pending_bytes: AtomicUsize::new(0),
            bytes_freed: Notify::new(),
            partitioner: self.partitioner,
            keyless: Mutex::new(if self.sticky {
                Keyless::Sticky(Sticky::new(max_batch_bytes))
            } else {
                Keyless::RoundRobin(RoundRobin::new())
            }),
            max_batch_bytes,
            closed: AtomicBool::new(false),
            control: Arc::new(Semaphore::new(CONTROL_SLOTS)),
            finished,
        });
        // Room for every permitted event plus control commands: an event holding a
        // permit never finds the channel full.
        let (commands, rx) = mpsc::channel(self.max_pending_events + CONTROL_SLOTS);
        // Every queued outcome holds at least one event's capacity, so this never fills.
        let (outcomes_tx, outcomes_rx) = mpsc::channel(self.max_pending_events + CONTROL_SLOTS);
        tokio::spawn(
            Driver {
                commands: rx,
                stack,
                outcomes: outcomes_tx,
                shared: shared.clone(),
                max_batch_bytes,
                max_wait: self.max_wait,
                delivery_timeout: self.delivery_timeout,
                concurrency: self.max_concurrent_sends_per_partition,
                max_pending_events: self.max_pending_events,
                on_close,
                finished: finished_tx,
            }
            .run(),
        );
        let shared_for_outcomes = shared.clone();
        let producer = Producer {
            shared,
            amqp: None,
            commands,
            permits: PollSemaphore::new(events),
            reserved: false,
            bytes_wait: None,
            closing: None,
            close_done: false,
        };
        (producer, Outcomes::new(outcomes_rx, shared_for_outcomes))
    }
}
