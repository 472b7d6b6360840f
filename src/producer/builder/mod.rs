//! Configuring and starting a producer: the options here, their checks and the
//! assembly of the producer in `assemble`, a generic AMQP broker's options and start
//! in `broker`, what TLS trusts in `tls`, and AMQP over WebSockets and proxies in
//! `web_sockets`.

mod adaptive;
mod assemble;
mod broker;
mod spool;
mod tls;
#[cfg(feature = "websockets")]
mod web_sockets;

use std::sync::Arc;
use std::time::Duration;

use tower::{BoxError, Layer, Service};

use crate::batch::Batch;
use crate::connect::Address;
use crate::credential::Credential;
use crate::route::{Partitioner, ServiceHash};
use crate::stack::{boxed, BatchService, MakeStack, StackContext, TraceLayer, UserLayer};
use streaming_producer_layers::retry::RetryPolicy;

/// Configures and builds a [`Producer`](crate::Producer).
pub struct ProducerBuilder {
    address: Address,
    /// A generic AMQP broker instead of Event Hubs.
    broker: Option<broker::Broker>,
    max_wait: Duration,
    max_pending_events: usize,
    max_pending_bytes: usize,
    max_concurrent_sends_per_partition: usize,
    try_timeout: Duration,
    delivery_timeout: Duration,
    identifier: Option<String>,
    layers: Vec<UserLayer>,
    stack: Option<MakeStack>,
    partitioner: Arc<dyn Partitioner>,
    sticky: bool,
    /// Keyless routing steers by the partitions' health (see `adaptive`).
    adaptive: bool,
    availability_timeout: Duration,
    /// Set explicitly (which a broker refuses), or the default.
    partition_refresh: Option<Duration>,
    retry: RetryPolicy,
    idempotent: bool,
    trace: Option<ConfigureTrace>,
    spool: spool::SpoolSettings,
}

/// Adjusts the default trace layer.
type ConfigureTrace = Box<dyn FnOnce(TraceLayer) -> TraceLayer + Send>;

impl std::fmt::Debug for ProducerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerBuilder")
            .field("hub", &self.address.hub)
            .field("broker", &self.broker)
            .field("namespace", &self.address.namespace)
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
            .field("stack", &self.stack.is_some())
            .field("sticky", &self.sticky)
            .field("adaptive", &self.adaptive)
            .field("availability_timeout", &self.availability_timeout)
            .field("retry", &self.retry)
            .field("idempotent", &self.idempotent)
            .field("trace", &self.trace.is_some())
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

impl Default for ProducerBuilder {
    fn default() -> Self {
        Self {
            address: Address::default(),
            broker: None,
            max_wait: Duration::from_millis(250),
            max_pending_events: 2500,
            max_pending_bytes: 64 << 20,
            max_concurrent_sends_per_partition: 1,
            try_timeout: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(120),
            identifier: None,
            layers: Vec::new(),
            stack: None,
            partitioner: Arc::new(ServiceHash),
            sticky: true,
            adaptive: true,
            availability_timeout: adaptive::AVAILABILITY_TIMEOUT,
            partition_refresh: None,
            retry: RetryPolicy::default(),
            idempotent: false,
            trace: None,
            spool: spool::SpoolSettings::default(),
        }
    }
}

impl ProducerBuilder {
    /// Adjusts the trace layer in every partition's stack: how each try's span is
    /// made and what happens as a try starts, succeeds or fails (see [`TraceLayer`]).
    ///
    /// ```no_run
    /// # async fn run(cs: &str) -> Result<(), streaming_producer::Error> {
    /// use std::time::Duration;
    /// use streaming_producer::{Batch, Producer};
    ///
    /// let (producer, outcomes) = Producer::builder()
    ///     .connection_string(cs)
    ///     .trace(|layer| {
    ///         layer.on_success(|batch: &Batch, latency: Duration, _span: &tracing::Span| {
    ///             if latency > Duration::from_secs(1) {
    ///                 tracing::warn!(partition = batch.partition(), ?latency, "slow publish");
    ///             }
    ///         })
    ///     })
    ///     .build()
    ///     .await?;
    /// # drop((producer, outcomes)); Ok(()) }
    /// ```
    pub fn trace(
        mut self,
        configure: impl FnOnce(TraceLayer) -> TraceLayer + Send + 'static,
    ) -> Self {
        self.trace = Some(Box::new(configure));
        self
    }

    /// The connection string (`Endpoint=sb://...;SharedAccessKeyName=...;...`).
    pub fn connection_string(mut self, connection_string: &str) -> Self {
        self.address.connection_string = Some(connection_string.to_owned());
        self
    }

    /// The namespace, by its fully qualified name (`my-ns.servicebus.windows.net`),
    /// instead of a connection string: give the [`hub`](Self::hub) and a
    /// [`credential`](Self::credential) too. This is the .NET client's
    /// `(fullyQualifiedNamespace, eventHubName, credential)` constructor.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), streaming_producer::Error> {
    /// use streaming_producer::{Producer, SharedKeyCredential};
    ///
    /// let (producer, outcomes) = Producer::builder()
    ///     .fully_qualified_namespace("my-ns.servicebus.windows.net")
    ///     .hub("telemetry")
    ///     .credential(SharedKeyCredential::new("send-only", "the key"))
    ///     .build()
    ///     .await?;
    /// # drop((producer, outcomes)); Ok(()) }
    /// ```
    pub fn fully_qualified_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.address.namespace = Some(namespace.into());
        self
    }

    /// With [`fully_qualified_namespace`](Self::fully_qualified_namespace): the
    /// namespace is a local emulator, reached over plain AMQP (port 5672 unless the
    /// namespace names one), as `UseDevelopmentEmulator=true` says in a connection
    /// string.
    pub fn use_development_emulator(mut self, emulator: bool) -> Self {
        self.address.development_emulator = emulator;
        self
    }

    /// The event hub, if the connection string has no `EntityPath` (or with a fully
    /// qualified namespace).
    pub fn hub(mut self, hub: impl Into<String>) -> Self {
        self.address.hub = Some(hub.into());
        self
    }

    /// A token provider; overrides the connection string's credentials.
    pub fn credential(mut self, credential: impl Credential) -> Self {
        self.address.credential = Some(Arc::new(credential));
        self
    }

    /// How long the oldest event of an open batch may wait before the batch is published.
    ///
    /// A batch goes when its oldest event has waited this long, unless it fills first.
    /// When one batch goes on time, others that have waited at least three quarters of
    /// `max_wait` go with it, so partitions whose batches opened close together cost
    /// the producer one timer wake-up, not one each.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// How many events may be pending (in open batches, in flight, or in an outcome not
    /// yet read).
    /// The default, 2,500, is the proposal's.
    ///
    /// It also sets how full batches get when events come faster than the service
    /// takes them. Keyless events go to one partition at a time, in runs of a quarter
    /// of the bound (see [`sticky_routing`](Self::sticky_routing)), so a batch holds at
    /// most that many; keyed events spread by key, so a partition's batch holds at most
    /// its share. A 1 MiB batch holds about 9,500 events of 100 bytes, while a run at the
    /// default bound is 625 events, so such batches stay small (`hubcat demo --size 100
    /// --max-pending N` prints the mean batch fill and the latency for any bound). For
    /// full batches, allow about `4 × max_batch_bytes / event size` pending events for keyless events (`partitions × max_batch_bytes /
    /// event size` for keyed ones), with [`max_pending_bytes`](Self::max_pending_bytes)
    /// to match; fewer, fuller batches cost the service fewer requests, at the price of
    /// memory and latency. At low rates a batch holds what arrives within
    /// [`max_wait`](Self::max_wait), whatever the bound.
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
    /// ([`Error::is_retryable`](crate::Error::is_retryable)), with exponential backoff; the default is 3 retries
    /// from 0.8 s, doubling, at most 60 s apart, and none after the delivery timeout.
    /// With one send in flight per partition, retries keep the partition's order. A
    /// retried send whose first try was stored after all (a lost acknowledgement) is
    /// stored twice: delivery is at least once (see
    /// [`idempotent_retries`](Self::idempotent_retries)). The same backoff spaces the
    /// attempts to reconnect while the service cannot be reached: one attempt at a
    /// time for all partitions, whose sends wait for it within their try (bounded by
    /// `try_timeout`) and, beyond the retries, not past the delivery timeout.
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
    /// is reported failed with [`Error::is_ambiguous`](crate::Error::is_ambiguous) and the partition starts a new
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

    /// Bound on one try to publish a batch (tower's `Timeout` around each try: the
    /// wait for the connection and for link credit, the transfer and the service's
    /// verdict), and on each connection attempt, link attach and management call;
    /// default 60 s. A try that times out is retried like any transient failure; if
    /// it timed out after its transfer, the batch may have been stored
    /// ([`Error::is_ambiguous`](crate::Error::is_ambiguous) if it finally fails).
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
    /// which [`Error::is_timeout`](crate::Error::is_timeout) is true. So [`Producer::close`](crate::Producer::close) returns within it
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

    /// How events without a partition id or key are spread.
    ///
    /// `true` (the default) is sticky: a run of keyless events goes to one partition,
    /// then the next run to the next partition. A run ends after a quarter of
    /// [`max_pending_events`](Self::max_pending_events) (or of the pending bytes, or a
    /// batch's size, whichever comes first), and its batch is published then. Batches are
    /// as full as the pending bound allows whatever the partition count, which matters
    /// most on hubs with many partitions: round-robin over 1,024 partitions with 6,000
    /// pending events makes batches of about 5 events. Over time every partition gets an
    /// equal share. Kafka's producer made the same choice its default for keyless records
    /// ([KIP-480](https://cwiki.apache.org/confluence/display/KAFKA/KIP-480%3A+Sticky+Partitioner)).
    ///
    /// `false` spreads them round-robin, one event at a time, as the .NET buffered
    /// producer does.
    pub fn sticky_routing(mut self, sticky: bool) -> Self {
        self.sticky = sticky;
        self
    }

    /// How often the hub's partition ids are read again (default 30 s); a grown
    /// partition count is applied at once, so keys hash over the new count as the
    /// service does.
    pub fn partition_refresh_interval(mut self, interval: Duration) -> Self {
        self.partition_refresh = Some(interval);
        self
    }

    /// A name for this producer (the AMQP container id).
    pub fn identifier(mut self, identifier: impl Into<String>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }

    /// Adds a tower layer of yours to every partition's batch stack (one instance per
    /// partition: `layer` is called once for each); the last added is outermost. Your
    /// layers sit inside the try timeout, the trace span and the retry layer, so each
    /// try passes through them (see [`stack`](crate::stack) for the whole order).
    ///
    /// Any layer fits whose service takes a [`Batch`], answers `()` and fails with an
    /// error that converts into [`BoxError`]; it need not be `Clone` (tower's
    /// `RateLimit` is not): the layers are then put behind tower's `Buffer` so that
    /// retries can clone them. The producer keeps a clone of each batch, so events are
    /// reported whatever a layer returns, and its own errors are read back from the
    /// boxed ones ([`Error::from`](crate::Error::from)). A layer that waits (a rate limit, say) is cut
    /// short by `try_timeout` and, at the latest, by the batch's delivery deadline.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emulator = eventhubs_emulator::Emulator::builder().hub("eh1", 2).start().await?;
    /// # let connection_string = emulator.connection_string_for("eh1");
    /// use std::time::Duration;
    /// use streaming_producer::Producer;
    ///
    /// let (mut producer, _outcomes) = Producer::builder()
    ///     .connection_string(&connection_string)
    ///     .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(10)))
    ///     .layer(tower::limit::RateLimitLayer::new(50, Duration::from_secs(1)))
    ///     .build()
    ///     .await?;
    /// # producer.close().await?;
    /// # Ok(()) }
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BatchService> + Send + Sync + 'static,
        L::Service: Service<Batch, Response = ()> + Send + 'static,
        <L::Service as Service<Batch>>::Error: Into<BoxError>,
        <L::Service as Service<Batch>>::Future: Send + 'static,
    {
        self.layers
            .push(Box::new(move |inner| boxed(layer.layer(inner))));
        self
    }

    /// Assembles each partition's batch stack yourself: `make` is called once per
    /// partition with a [`StackContext`] that hands out the producer's own layers
    /// (concurrency limit, idempotency, retry, trace, timeout), the layers given to
    /// [`layer`](Self::layer), and the base service, so you can stack them in another
    /// order or leave some out. Without it, the producer uses
    /// [`StackContext::default_stack`]. `examples/custom_stack.rs` shows one.
    pub fn stack<F>(mut self, make: F) -> Self
    where
        F: Fn(&StackContext<'_>) -> BatchService + Send + Sync + 'static,
    {
        self.stack = Some(Box::new(make));
        self
    }
}
