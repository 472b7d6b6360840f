//! The producer handle and its methods (its `Sink` side is in `sink`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::capacity::Reservation;
use super::driver::{Inbox, Signal};
use super::lanes::Shared;
use super::{EnqueueError, Partition, ProducerBuilder};
use crate::amqp::Amqp;
use crate::route::{Ids, Index, Router};
use crate::Error;
use crate::{EventData, PartitionProperties};

/// A close in progress, as `poll_close` drives it.
type ClosingFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// Where `poll_close` is.
pub(super) enum CloseState {
    Open,
    Closing(ClosingFuture),
    Closed,
}

/// The producer: forward events into it as a [`Sink`](futures_sink::Sink), or call
/// [`enqueue`](Producer::enqueue). Build one with [`Producer::builder`].
///
/// Cloning gives another handle on the same producer; a clone starts without a
/// reserved slot.
///
/// # Backpressure
///
/// `poll_ready` (and so [`enqueue`](Self::enqueue), `SinkExt::send` and `forward`)
/// waits while `max_pending_events` events, or `max_pending_bytes` bytes of bodies,
/// are pending (with a [spool](ProducerBuilder::spool), only while the spool is full:
/// events beyond the bound in memory wait on disk). Pending counts every accepted event until its outcome is handed out
/// by [`Outcomes`](crate::Outcomes): in an open batch, waiting its turn, in flight,
/// being retried, or in an outcome not yet read. A producer whose outcomes are not
/// read therefore stops taking events; drop the `Outcomes` to ignore them. A partition
/// that cannot publish holds only its own events: the others go on as long as there
/// is room.
///
/// # Ordering
///
/// With one send in flight per partition (the default), a partition's events are
/// published in the order they were accepted, retries included: a batch is retried
/// before the next one of its partition goes. Events of different partitions have no
/// order. Above one send in flight, a failed batch can be overtaken by the next.
///
/// # Cancellation
///
/// - An [`enqueue`](Self::enqueue) future dropped before it resolves has not
///   accepted its event: the event is dropped with the future and gets no outcome.
///   Once it resolves `Ok`, the event is accepted and will have exactly one outcome.
/// - [`flush`](Self::flush), [`flush_partition`](Self::flush_partition) and
///   [`clear_partition`](Self::clear_partition) act when first polled; dropping them
///   later only stops the wait.
/// - [`close`](Self::close) and [`close_abandon`](Self::close_abandon) close the
///   producer when first polled; dropped later, the shutdown goes on in the background
///   as if every handle had been dropped.
///
/// # Drop behavior
///
/// Dropping every handle without closing publishes what is pending (as
/// [`close`](Self::close) would), but nothing waits for it: a program that exits right after loses what was not yet published. Close
/// the producer (or let `forward` close it) to know when everything is out; each
/// event's fate is in [`Outcomes`](crate::Outcomes) until that stream ends.
pub struct Producer {
    /// The lanes, the budget, the closed flag.
    pub(super) shared: Arc<Shared>,
    pub(super) router: Arc<Router>,
    pub(super) inbox: Inbox,
    /// The connection, for `$management` reads (`None` over a service of your own).
    pub(super) amqp: Option<Amqp>,
    /// Room for this handle's next event.
    pub(super) reservation: Reservation,
    /// This handle's copy of the partition ids.
    pub(super) ids: Ids,
    /// Encode buffers taken from the shared pool, a batch's worth at a time.
    pub(super) spare: Vec<Vec<u8>>,
    pub(super) closing: CloseState,
    /// A wait for room in a full spool.
    pub(super) spool_wait: Option<tokio_util::sync::ReusableBoxFuture<'static, ()>>,
    /// With a spool: how long more a wait for room in memory lasts before the event
    /// goes to the spool's backlog.
    pub(super) spill_timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
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
        Self::new(
            self.shared.clone(),
            self.router.clone(),
            self.inbox.clone(),
            self.amqp.clone(),
            self.reservation.share(),
        )
    }
}

/// The last handle gone tells the driver (and the spool's loader), which then
/// publish what is left.
impl Drop for Producer {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _ = self.inbox.send(Signal::HandlesGone);
            if let Some(spool) = &self.shared.spool {
                spool.wake_loader();
            }
        }
    }
}

impl Producer {
    /// A handle, unreserved and open.
    pub(super) fn new(
        shared: Arc<Shared>,
        router: Arc<Router>,
        inbox: Inbox,
        amqp: Option<Amqp>,
        reservation: Reservation,
    ) -> Self {
        shared.handles.fetch_add(1, Ordering::SeqCst);
        Self {
            ids: router.snapshot(),
            shared,
            router,
            inbox,
            amqp,
            reservation,
            spare: Vec::new(),
            closing: CloseState::Open,
            spool_wait: None,
            spill_timer: None,
        }
    }

    /// A builder with the defaults: `max_wait` 250 ms, 2500 pending events, 64 MiB of
    /// pending bodies, one send in flight per partition, 60 s per try, 2 minutes from
    /// acceptance to outcome.
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::default()
    }

    /// Pending events, in total: accepted and with no outcome handed out yet (an
    /// outcome queued and not read from [`Outcomes`](crate::Outcomes) still counts),
    /// as `max_pending_events` counts them. Events refused at once (an unknown
    /// partition, too large) hold room until their outcome is read too, but belong to
    /// no partition and are not counted here.
    pub fn total_pending(&self) -> usize {
        let backlog = self
            .shared
            .spool
            .as_ref()
            .map_or(0, |s| s.backlog() as usize);
        self.shared.total_pending(self.router.count()) + backlog
    }

    /// Pending events of one partition id (as [`total_pending`](Self::total_pending)
    /// counts them); 0 for an id the hub does not have.
    pub fn pending(&self, partition: &str) -> usize {
        let backlog = self
            .shared
            .spool
            .as_ref()
            .map_or(0, |s| s.backlog_of(partition) as usize);
        self.router
            .resolve(&Partition::id(partition))
            .map_or(0, |i| self.shared.pending(i) + backlog)
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
        self.router.refresh(properties.partition_ids);
        Ok(self.partition_ids())
    }

    /// The hub's partition ids.
    pub fn partition_ids(&self) -> Vec<String> {
        self.router.ids().to_vec()
    }

    /// With a [spool](ProducerBuilder::spool): resolves once every event this producer
    /// accepted before the call is durable in the spool, as its
    /// [`Durability`](crate::Durability) defines durable (synced to the disk, or handed
    /// to the operating system), and so would be published by a producer built on
    /// the spool after a crash. It does not hurry the policy: with
    /// `Durability::Interval` it waits for the next sync. Accepting events never
    /// waits for the disk; this is the way to.
    ///
    /// Fails with [`Error::is_spool`] if the spool can no longer be written, and with
    /// [`Error::is_config`] on a producer without a spool.
    ///
    /// The point it waits for is taken when this is called; the future borrows
    /// nothing, so it can be awaited elsewhere while the producer takes more events.
    pub fn wait_durable(&self) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let spool = self.shared.spool.clone();
        let target = spool.as_ref().map(|s| s.appended());
        async move {
            match spool {
                Some(spool) => spool.durable(target).await,
                None => Err(Error::config(
                    "wait_durable needs a spool (ProducerBuilder::spool)",
                )),
            }
        }
    }

    /// How many events the [spool](ProducerBuilder::spool) held when the producer
    /// was built: an earlier producer's events, published before any of this one's
    /// on their partitions, their outcomes marked
    /// [`recovered`](crate::BatchOutcome::recovered). 0 without a spool.
    pub fn recovered_events(&self) -> usize {
        self.shared.recovered
    }

    /// Waits for room, then accepts the event. Fails only when the producer is closed
    /// (handing the event back); every accepted event gets an outcome.
    pub async fn enqueue(&mut self, event: EventData) -> Result<(), EnqueueError> {
        if let Err(error) = std::future::poll_fn(|cx| self.poll_reserve(cx)).await {
            return Err(EnqueueError::new(error, event));
        }
        self.accept(event, false).map(drop)
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
        self.loaded().await;
        self.shared.seal_all(&self.inbox, self.router.count());
        let (done, answer) = oneshot::channel();
        self.inbox.send_or_closed(Signal::Flush {
            partition: None,
            done,
        })?;
        answer.await.map_err(|_| Error::closed())
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
        let partition = self.router.resolve(&partition)?;
        self.loaded().await;
        let (done, answer) = oneshot::channel();
        self.shared.seal_with(partition, |sealed| {
            if let Some(sealed) = sealed {
                self.inbox.send_or_closed(Signal::Sealed(sealed))?;
            }
            self.inbox.send_or_closed(Signal::Flush {
                partition: Some(partition),
                done,
            })
        })?;
        answer.await.map_err(|_| Error::closed())
    }

    /// Hands back the events of one partition that are not yet being sent (its open
    /// batch and batches waiting their turn) in outcomes marked abandoned
    /// ([`BatchOutcome::is_abandoned`](super::BatchOutcome::is_abandoned)); returns how many. A send already in flight
    /// finishes. The producer stays open, and the partition takes new events.
    pub async fn clear_partition(&self, partition: Partition) -> Result<usize, Error> {
        let partition: Index = self.router.resolve(&partition)?;
        let (done, answer) = oneshot::channel();
        let id = self.router.id(partition);
        // Under the lane's lock, so the backlog's events and the lane's are counted
        // at one point.
        let on_disk = self.shared.seal_with(partition, |open| {
            let on_disk = self.shared.spool.as_ref().map_or(0, |s| s.clear(&id));
            self.inbox.send_or_closed(Signal::Clear {
                partition,
                open,
                done,
            })?;
            Ok::<_, Error>(on_disk)
        })?;
        if on_disk > 0 {
            if let Some(spool) = &self.shared.spool {
                spool.wake_loader();
            }
        }
        let in_memory = answer.await.map_err(|_| Error::closed())?;
        Ok(in_memory + on_disk as usize)
    }

    /// With a spool: waits until the loader has brought in (or settled) every event
    /// of the backlog accepted before the call.
    async fn loaded(&self) {
        if let Some(spool) = &self.shared.spool {
            spool.loaded_past_now().await;
        }
    }

    /// Publishes everything pending, waits for every outcome, then closes the
    /// connection. Later enqueues fail with [`Error::is_closed`]. With a spool, what
    /// waits on disk is published too (see [`Outcomes`](crate::Outcomes) on reading
    /// outcomes meanwhile).
    pub async fn close(&mut self) -> Result<(), Error> {
        self.shutdown(false).await
    }

    /// Stops publishing: events not yet handed to the service come back in outcomes
    /// marked abandoned ([`BatchOutcome::is_abandoned`](super::BatchOutcome::is_abandoned)); sends already in flight
    /// finish first. Then closes the connection.
    pub async fn close_abandon(&mut self) -> Result<(), Error> {
        self.shutdown(true).await
    }

    pub(super) async fn shutdown(&mut self, abandon: bool) -> Result<(), Error> {
        // Set before the sweep: an event that gets into a lane after the sweep sees it
        // there (under the lane's lock) and is handed back.
        if abandon {
            self.shared.abandoning.store(true, Ordering::SeqCst);
        }
        self.shared.closed.store(true, Ordering::SeqCst);
        self.reservation.release();
        if let Some(spool) = &self.shared.spool {
            spool.wake_loader();
        }
        // Failing sends mean the driver is done already (another handle's close got
        // there first); either way the producer is done once the driver says so.
        let count = self.router.count();
        let open = if abandon {
            self.shared.take_all(count)
        } else {
            self.shared.seal_all(&self.inbox, count);
            Vec::new()
        };
        let _ = self.inbox.send(Signal::Close { abandon, open });
        let mut finished = self.shared.finished.clone();
        finished
            .wait_for(|done| *done)
            .await
            .map(|_| ())
            .map_err(|_| Error::connection("the producer's driver stopped unexpectedly"))
    }
}
