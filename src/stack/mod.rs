//! Each partition's batch stack: the tower layers a batch passes through on its way
//! to the service, one instance per partition.
//!
//! The producer's own order, outermost first:
//!
//! | layer | what it does |
//! |---|---|
//! | tower's [`ConcurrencyLimit`](tower::limit::ConcurrencyLimit) | `max_concurrent_sends_per_partition` batches in flight (pipelined on the link above 1) |
//! | [`Idempotency`] | with idempotent retries: numbers the batch once, for all its tries |
//! | tower's [`Retry`](tower::retry::Retry) with [`EventHubsRetry`] | retryable errors, exponential backoff with jitter, none past the delivery deadline |
//! | [`Trace`] | a `tracing` span per try, with the OpenTelemetry messaging attributes, and hooks ([`TraceLayer`]) |
//! | tower's [`Timeout`](tower::timeout::Timeout) | `try_timeout` per try |
//! | your layers | [`ProducerBuilder::layer`](crate::ProducerBuilder::layer), the last added outermost |
//! | [`AmqpSend`] | the batched message on the partition's link |
//!
//! Every layer is public, so [`ProducerBuilder::stack`](crate::ProducerBuilder::stack)
//! can assemble them in another order from a [`StackContext`]. Services speak
//! [`Batch`] in, `()` out, and any error that converts into [`BoxError`]; the producer
//! keeps a clone of each batch it hands in, so a layer can never lose events, and it
//! reads the producer's [`Error`](crate::Error) back from the boxed one.
//!
//! The idempotency, retry and trace layers come from the `streaming-producer-layers`
//! crate, which holds them with no AMQP implementation under them (generic over the
//! batch they carry: [`PartitionBatch`](streaming_producer_layers::PartitionBatch));
//! they are re-exported here for the producer's [`Batch`]. The base service,
//! [`AmqpSend`], and the [`Connection`] it publishes over are this crate's (`send/`:
//! the service, its `connection.rs` and the try in `future.rs`).

mod send;

use std::time::Duration;

use tower::buffer::Buffer;
use tower::limit::ConcurrencyLimitLayer;
use tower::retry::RetryLayer;
use tower::timeout::TimeoutLayer;
use tower::util::{BoxCloneService, BoxService};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

pub use send::{AmqpSend, Connection};
pub use streaming_producer_layers::idempotency::{Idempotency, IdempotencyLayer};
pub use streaming_producer_layers::retry::EventHubsRetry;
pub use streaming_producer_layers::trace::{
    DefaultMakeSpan, DefaultOnFailure, MakeSpan, OnFailure, OnSuccess, OnTry,
};

use crate::batch::Batch;
use streaming_producer_layers::retry::RetryPolicy;

/// The trace layer ([`streaming_producer_layers::trace::TraceLayer`]) for the
/// producer's [`Batch`]: a `tracing` span per try, named `eventhubs.publish` and
/// tagged after the OpenTelemetry messaging conventions, with hooks; with the
/// `opentelemetry` feature it also records the publish metrics.
///
/// ```
/// use std::time::Duration;
/// use streaming_producer::stack::TraceLayer;
///
/// let layer = TraceLayer::new("telemetry")
///     .on_success(|batch: &streaming_producer::Batch, latency: Duration, _span: &tracing::Span| {
///         tracing::debug!(events = batch.len(), ?latency, "stored");
///     })
///     .on_failure(
///         |_batch: &streaming_producer::Batch,
///          error: &tower::BoxError,
///          _latency: Duration,
///          span: &tracing::Span| {
///             span.record("error.type", tracing::field::display(error));
///             tracing::warn!("a try failed: {error}");
///         },
///     );
/// # drop(layer);
/// ```
pub type TraceLayer = streaming_producer_layers::trace::TraceLayer<Batch>;

/// The service of [`TraceLayer`].
pub type Trace<S> = streaming_producer_layers::trace::Trace<S, Batch>;

/// A partition's batch service, boxed: what [`ProducerBuilder::layer`] wraps and what
/// [`ProducerBuilder::stack`] returns.
///
/// [`ProducerBuilder::layer`]: crate::ProducerBuilder::layer
/// [`ProducerBuilder::stack`]: crate::ProducerBuilder::stack
pub type BatchService = BoxService<Batch, (), BoxError>;

/// A batch service that can be cloned, as tower's `Retry` needs of what it wraps.
pub type CloneBatchService = BoxCloneService<Batch, (), BoxError>;

/// Boxes any batch service whose error converts into [`BoxError`].
pub fn boxed<S>(service: S) -> BatchService
where
    S: Service<Batch, Response = ()> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    BoxService::new(service.map_err(|e: S::Error| -> BoxError { e.into() }))
}

/// Boxes a cloneable batch service whose error converts into [`BoxError`].
pub(crate) fn boxed_clone<S>(service: S) -> CloneBatchService
where
    S: Service<Batch, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    CloneBatchService::new(service.map_err(|e: S::Error| -> BoxError { e.into() }))
}

/// A user layer, applied once per partition.
pub(crate) type UserLayer = Box<dyn Fn(BatchService) -> BatchService + Send + Sync>;

/// A whole stack of the user's making, per partition.
pub(crate) type MakeStack = Box<dyn Fn(&StackContext<'_>) -> BatchService + Send + Sync>;

/// What publishes at the bottom of every stack.
#[derive(Clone)]
pub(crate) enum Base {
    /// The producer's AMQP connection.
    Amqp(Connection),
    /// A service given to `build_with_service`.
    Custom(CloneBatchService),
}

/// Everything a partition's stack is made from; the producer keeps one and makes a
/// stack for each partition as it first publishes to it.
pub(crate) struct Settings {
    pub(crate) base: Base,
    pub(crate) retry: RetryPolicy,
    pub(crate) try_timeout: Duration,
    pub(crate) concurrency: usize,
    pub(crate) idempotent: bool,
    pub(crate) layers: Vec<UserLayer>,
    pub(crate) make: Option<MakeStack>,
    pub(crate) trace: TraceLayer,
}

impl Settings {
    /// The stack of `partition`.
    pub(crate) fn make(&self, partition: &str) -> BatchService {
        let context = StackContext {
            partition,
            settings: self,
        };
        match &self.make {
            Some(make) => make(&context),
            None => context.default_stack(),
        }
    }
}

/// What a stack of your own is made from: the producer's settings and its layers for
/// one partition. See [`ProducerBuilder::stack`](crate::ProducerBuilder::stack).
pub struct StackContext<'a> {
    partition: &'a str,
    settings: &'a Settings,
}

impl std::fmt::Debug for StackContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackContext")
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl StackContext<'_> {
    /// The partition this stack publishes to.
    pub fn partition(&self) -> &str {
        self.partition
    }

    /// The producer's AMQP connection (`None` for a producer over a service of your
    /// own, made with `build_with_service`).
    pub fn connection(&self) -> Option<&Connection> {
        match &self.settings.base {
            Base::Amqp(connection) => Some(connection),
            Base::Custom(_) => None,
        }
    }

    /// The service at the bottom: [`AmqpSend`] over the producer's connection, or the
    /// service given to `build_with_service`.
    pub fn base(&self) -> CloneBatchService {
        match &self.settings.base {
            Base::Amqp(connection) => boxed_clone(AmqpSend::new(connection)),
            Base::Custom(service) => service.clone(),
        }
    }

    /// tower's concurrency limit at `max_concurrent_sends_per_partition`.
    pub fn concurrency_limit(&self) -> ConcurrencyLimitLayer {
        ConcurrencyLimitLayer::new(self.settings.concurrency)
    }

    /// The idempotency layer, when the producer has idempotent retries and a
    /// connection; `None` otherwise.
    pub fn idempotency(&self) -> Option<IdempotencyLayer> {
        match (&self.settings.base, self.settings.idempotent) {
            (Base::Amqp(connection), true) => Some(IdempotencyLayer::new(
                connection.clone(),
                self.settings.retry.clone(),
                self.settings.try_timeout,
            )),
            _ => None,
        }
    }

    /// tower's retry layer with the producer's retry policy.
    pub fn retry(&self) -> RetryLayer<EventHubsRetry> {
        RetryLayer::new(EventHubsRetry::new(self.settings.retry.clone()))
    }

    /// A span per try.
    pub fn trace(&self) -> TraceLayer {
        self.settings.trace.clone()
    }

    /// tower's timeout at `try_timeout`.
    pub fn timeout(&self) -> TimeoutLayer {
        TimeoutLayer::new(self.settings.try_timeout)
    }

    /// `inner` wrapped in the layers given to [`ProducerBuilder::layer`] (the last
    /// added outermost). Those need not be `Clone`, so when there are any, the result
    /// is behind tower's `Buffer` (a small task per partition) to be cloned for
    /// retries; without any, `inner` comes back as it was.
    ///
    /// [`ProducerBuilder::layer`]: crate::ProducerBuilder::layer
    pub fn user_layers(&self, inner: CloneBatchService) -> CloneBatchService {
        if self.settings.layers.is_empty() {
            return inner;
        }
        let service = self
            .settings
            .layers
            .iter()
            .fold(BoxService::new(inner), |service, layer| layer(service));
        let (buffer, worker) = Buffer::pair(service, self.settings.concurrency.max(1));
        tokio::spawn(worker);
        CloneBatchService::new(buffer)
    }

    /// The producer's own stack (see the [module docs](self)).
    pub fn default_stack(&self) -> BatchService {
        boxed(
            ServiceBuilder::new()
                .layer(self.concurrency_limit())
                .option_layer(self.idempotency())
                .layer(self.retry())
                .layer(self.trace())
                .layer(self.timeout())
                .service(self.user_layers(self.base())),
        )
    }
}
