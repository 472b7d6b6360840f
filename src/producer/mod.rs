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

mod builder;
mod driver;
mod outcome;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{ready, Context, Poll};

use futures_sink::Sink;
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio_util::sync::{PollSemaphore, ReusableBoxFuture};

pub use builder::ProducerBuilder;
pub use outcome::{BatchOutcome, Outcomes};

use crate::amqp::Amqp;
use crate::batch::Batch;
use crate::codec;
use crate::error::{Error, Kind};
use crate::{EventData, PartitionProperties, Routing};
use driver::Command;
use streaming_producer_layers::route::{Partitioner, RoundRobin, Sticky};

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
        self.control(|done, slot| Command::Flush { done, _slot: slot })
            .await
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
        self.control(|done, slot| Command::FlushPartition {
            partition,
            done,
            _slot: slot,
        })
        .await
    }

    /// Hands back the events of one partition that are not yet being sent (its open
    /// batch and batches waiting their turn) in outcomes marked abandoned
    /// ([`BatchOutcome::is_abandoned`]); returns how many. A send already in flight
    /// finishes. The producer stays open, and the partition takes new events.
    pub async fn clear_partition(&self, partition: Partition) -> Result<usize, Error> {
        let partition = self.resolve(&partition)?;
        self.control(|done, slot| Command::ClearPartition {
            partition,
            done,
            _slot: slot,
        })
        .await
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
    /// comes after every event sent before it, and waits for the driver's answer.
    async fn control<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>, tokio::sync::OwnedSemaphorePermit) -> Command,
    ) -> Result<T, Error> {
        let slot = self
            .shared
            .control
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::closed())?;
        let (done, answer) = oneshot::channel();
        self.commands
            .send(make(done, slot))
            .await
            .map_err(|_| Error::closed())?;
        answer.await.map_err(|_| Error::closed())
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
