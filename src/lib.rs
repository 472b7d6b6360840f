//! A streaming producer for Azure Event Hubs: the application hands over events one at
//! a time, the producer routes them to partitions, packs them into batches as large as
//! the link allows, publishes a batch when it is full or when its oldest event has
//! waited `max_wait`, and reports what happened to every batch.
//!
//! - [`Producer`] is a [`futures_sink::Sink`] of [`EventData`]: forward any stream into
//!   it, or call [`Producer::enqueue`].
//! - [`Outcomes`] is a stream of [`BatchOutcome`]s: every accepted event appears in
//!   exactly one, succeeded, failed (with the [`Error`] and the events) or abandoned.
//!   The producer keeps a pending event only as it will be written on the wire; an
//!   outcome's [`Events`] decode it back when read.
//! - An event may also get a [`Receipt`] of its own
//!   ([`Producer::enqueue_with_receipt`], [`Producer::publish`]): a future of its result,
//!   [`Delivered`] or [`Failed`] with the event back.
//! - Between the two, each partition has its own tower stack of public layers
//!   (tower's concurrency limit, retry and timeout, idempotency, tracing; see
//!   [`stack`]) over [`AmqpSend`], the base service that publishes a [`Batch`] on an
//!   AMQP 1.0 link (fe2o3-amqp). Add any tower layer of yours with
//!   [`ProducerBuilder::layer`], or assemble the stack in another order with
//!   [`ProducerBuilder::stack`].
//!
//! # Example
//!
//! Runs against the embedded emulator (crate `eventhubs-emulator`); with a real
//! namespace, pass its connection string instead.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::{stream, StreamExt};
//! use streaming_producer::{EventData, Producer};
//!
//! let emulator = eventhubs_emulator::Emulator::builder().hub("telemetry", 4).start().await?;
//! let (producer, mut outcomes) = Producer::builder()
//!     .connection_string(&emulator.connection_string_for("telemetry"))
//!     .max_wait(std::time::Duration::from_millis(50))
//!     .build()
//!     .await?;
//!
//! // Any stream of events: here 10,000 readings keyed by device.
//! let readings = stream::iter(0..10_000).map(|i| {
//!     Ok(EventData::new(format!("{{\"device\":\"d{}\",\"value\":{i}}}", i % 10))
//!         .with_partition_key(format!("d{}", i % 10)))
//! });
//! // `forward` closes the producer at the end: everything is published.
//! let sending = readings.forward(producer);
//! // The outcomes are read while sending: an outcome holds its events' place among the
//! // pending ones until it is read.
//! let reading = async {
//!     let mut published = 0;
//!     while let Some(outcome) = outcomes.next().await {
//!         match &outcome.result {
//!             Ok(()) => published += outcome.events.len(),
//!             Err(e) => eprintln!("{} events failed on {}: {e}", outcome.events.len(), outcome.partition),
//!         }
//!     }
//!     published
//! };
//! let (sent, published) = tokio::join!(sending, reading);
//! sent?;
//! assert_eq!(published, 10_000);
//! # Ok(()) }
//! ```
//!
//! Read the outcomes concurrently with sending (as here, or in a task of their own), or
//! drop [`Outcomes`] to ignore them: a producer whose outcomes go unread stops at its
//! pending bound, and says so in a `tracing` warning after a few seconds.
//!
//! # Guarantees
//!
//! - **Nothing is lost silently**: every event accepted by `start_send`/`enqueue` gets an
//!   outcome; an event that can never be sent (too large, unknown partition) fails alone.
//! - **Ordering**: with one send in flight per partition (the default), a partition's
//!   events are published in the order they were accepted.
//! - **Bounded memory**: pending events are bounded in count and bytes, in-flight ones
//!   included; a partition that cannot publish does not stop the others.
//! - **Flush and close**: `poll_flush` is a hand-off (so `forward` of a sparse stream still
//!   makes dense batches); [`Producer::flush`] publishes now and waits for the outcomes of
//!   earlier events; [`Producer::close`] publishes everything and closes the connection;
//!   [`Producer::close_abandon`] hands unsent events back.
//! - **Idempotent retries** ([`ProducerBuilder::idempotent_retries`]): events are
//!   numbered once per partition, so a retried batch is stored once; a batch whose
//!   fate is unknown keeps its numbers and is tried again until the service
//!   acknowledges it or its delivery timeout passes.
//!
//! # Receipts, adaptive routing and statistics
//!
//! - **Receipts**: [`Producer::publish`] waits for one event's result, as Kafka's
//!   `FutureProducer::send` does; [`Producer::enqueue_with_receipt`] returns the
//!   [`Receipt`] once the event is accepted, to await later. Receipts and [`Outcomes`]
//!   see the same outcome, and neither waits for the other: an application that needs
//!   only receipts drops its `Outcomes`.
//! - **Adaptive keyless routing** ([`ProducerBuilder::adaptive_routing`], on by
//!   default): each run of keyless events goes to the least loaded partition, and none
//!   to a partition that is failing or has had batches outstanding without an outcome
//!   for [`ProducerBuilder::partition_availability_timeout`] (throttled, stalled,
//!   waiting for credit, re-attaching), until it recovers. Keyed and partition-id
//!   events are never moved.
//! - **Statistics**: [`Producer::stats`] is a [`ProducerStats`] snapshot per partition
//!   and in total (pending, in flight, published, failed, retries, the last error,
//!   batch fill, send latency percentiles), `serde::Serialize` with the `serde` feature.
//!
//! # Store and forward
//!
//! Without a spool, the events between acceptance and outcome live only in memory: a
//! killed process loses them, with no outcome. With [`ProducerBuilder::spool`]`(dir)`,
//! each accepted event is also appended to a log in `dir` (checksummed records in
//! segment files, written and synced by a thread of its own, so accepting never waits
//! for the disk) and marked done there once its outcome is final. The next producer
//! built on `dir` publishes what the log still holds before anything new on those
//! partitions, and reports it in outcomes marked [`BatchOutcome::recovered`].
//!
//! What survives what: the writer hands each group of appended events to the operating
//! system moments after they are accepted, under every [`Durability`] policy (set with
//! [`ProducerBuilder::spool_durability`]); once handed over they survive the process
//! being killed. Surviving the machine stopping needs them synced to the disk:
//!
//! | policy | synced | "durable" means | lost to a power cut |
//! |---|---|---|---|
//! | [`Durability::Group`] (default) | after each group of appends | synced | nothing durable |
//! | [`Durability::Interval`]`(d)` | at most every `d` | synced | nothing durable: at most `d` of the newest events |
//! | [`Durability::Os`] | never | handed to the operating system | what it had not written back |
//!
//! Events accepted but not yet handed over when the process dies are lost with it.
//! [`Producer::wait_durable`] resolves once everything accepted before it is durable,
//! for an application that needs to know (to acknowledge its own input, say).
//!
//! With [`idempotent_retries`](ProducerBuilder::idempotent_retries) the log also holds
//! each partition's producer group, owner level and sequence numbers; the next producer
//! resumes the group, learns from the service how far it got, reports the events it
//! stored as succeeded (without sending them again) and resends the rest with their
//! numbers: across the crash, each event is stored exactly once. Without idempotent
//! retries a batch stored just before the crash is stored again (at least once).
//!
//! With a spool, an outage is ridden out on disk rather than in memory: an event that
//! finds the pending bound in memory full for 50 ms is accepted into the spool only (and read
//! back in its turn as memory frees, each partition's order kept), so accepting waits
//! only once the spool holds [`ProducerBuilder::max_spool_bytes`]; events a restart
//! finds come back the same way.
//!
//! A second producer on the same directory, a damaged log (named by file and
//! offset; a record torn by the crash at the end of the newest segment is cut off
//! instead) and a log of events for another hub fail the build with
//! [`Error::is_spool`]. A disk that fills up stops the spool, not the producer: the
//! events already accepted are still published, and new ones are refused with
//! [`Error::is_spool`].
//!
//! # Coming from .NET's `EventHubBufferedProducerClient` or from Kafka
//!
//! One difference in behavior: events with neither a partition id nor a key go to one
//! partition at a time, in runs of a quarter of the pending bound, where .NET spreads
//! them round-robin one by one. Batches then stay full on hubs with many partitions;
//! [`ProducerBuilder::sticky_routing`]`(false)` gives the round-robin way.
//!
//! The .NET proposal this producer implements, and Kafka's producer, by name:
//!
//! | .NET | Kafka producer | here |
//! |---|---|---|
//! | `EnqueueEventAsync`, `EnqueueEventsAsync` | `send` | [`Producer::enqueue`], [`Producer::enqueue_all`], or the [`Sink`](futures_sink::Sink) (`send`, `send_all`, `forward`) |
//! | — | `send` with its future (rdkafka's `FutureProducer::send`) | [`Producer::publish`], or [`Producer::enqueue_with_receipt`] and its [`Receipt`] |
//! | `SendEventBatchSucceededAsync` handler | the send callback, on success | an item of [`Outcomes`] whose `result` is `Ok(())` |
//! | `SendEventBatchFailedAsync` handler | the send callback, with an exception | an item of [`Outcomes`] whose `result` is the [`Error`], with the events |
//! | `FlushAsync` | `flush` | [`Producer::flush`] (and [`Producer::flush_partition`]) |
//! | `CloseAsync(flush: true)`, `DisposeAsync` | `close` | [`Producer::close`] (or the end of `forward`) |
//! | `CloseAsync(flush: false)` | `close(Duration.ZERO)` | [`Producer::close_abandon`]: unsent events come back as abandoned outcomes |
//! | `GetBufferedEventCount`, `TotalBufferedEventCount` | — | [`Producer::pending`], [`Producer::total_pending`] |
//! | `GetPartitionIdsAsync`, `GetPartitionPropertiesAsync` | `partitionsFor` | [`Producer::partition_ids`], [`Producer::partition_properties`] |
//! | `MaximumWaitTime` | `linger.ms` | [`ProducerBuilder::max_wait`] |
//! | `MaximumEventBufferLengthPerPartition` | `buffer.memory` | [`ProducerBuilder::max_pending_events`] (for all partitions together) and [`ProducerBuilder::max_pending_bytes`] |
//! | `MaximumConcurrentSendsPerPartition` | `max.in.flight.requests.per.connection` | [`ProducerBuilder::max_concurrent_sends_per_partition`] |
//! | `EnableIdempotentRetries` | `enable.idempotence` | [`ProducerBuilder::idempotent_retries`] |
//! | `RetryOptions.MaximumRetries`, `.Delay`, `.MaximumDelay` | `retries`, `retry.backoff.ms`, `retry.backoff.max.ms` | [`ProducerBuilder::retry_policy`] with a [`RetryPolicy`] (`RetryPolicy::default().with_max_retries(n).with_initial_delay(d).with_max_delay(m)`) |
//! | `RetryOptions.TryTimeout` | `request.timeout.ms` | [`ProducerBuilder::try_timeout`] |
//! | — | `delivery.timeout.ms` | [`ProducerBuilder::delivery_timeout`] |
//! | `Identifier` | `client.id` | [`ProducerBuilder::identifier`] |
//! | `SendEventOptions.PartitionKey`, `.PartitionId` | the record's key, partition | [`EventData::with_partition_key`], [`EventData::with_partition_id`] |
//! | — | `partitioner.class` | [`ProducerBuilder::partitioner`] |
//! | — | `partitioner.availability.timeout.ms`, `partitioner.adaptive.partitioning.enable` | [`ProducerBuilder::partition_availability_timeout`], [`ProducerBuilder::adaptive_routing`] |
//! | — | `statistics.interval.ms` and the statistics callback | [`Producer::stats`] |
//! | — | interceptors | [`ProducerBuilder::layer`] (any tower layer), [`ProducerBuilder::stack`], [`ProducerBuilder::trace`] hooks |
//! | `new(connectionString, eventHubName)` | `bootstrap.servers` with SASL | [`ProducerBuilder::connection_string`] and [`ProducerBuilder::hub`] |
//! | `new(fullyQualifiedNamespace, eventHubName, credential)` | | [`ProducerBuilder::fully_qualified_namespace`], [`ProducerBuilder::hub`], [`ProducerBuilder::credential`] |
//!
//! Beyond the proposal: the rows without a .NET name, and
//! [`Producer::clear_partition`].
//!
//! # Features
//!
//! - `opentelemetry`: stamps the current `tracing` span's W3C trace context on each
//!   event (`traceparent`, `Diagnostic-Id`) through `tracing-opentelemetry`, and
//!   records OpenTelemetry metrics (`messaging.client.sent.messages`,
//!   `messaging.client.operation.duration`, `eventhubs.producer.pending_events`,
//!   `eventhubs.producer.published_events`, `eventhubs.producer.failed_events`,
//!   `eventhubs.producer.retries`) from the global meter provider as it is when the
//!   producer is built.
//! - `serde`: `serde::Serialize` for [`ProducerStats`] and its parts.
//! - `otlp`: only for the `otel_export` example, which then exports over OTLP/HTTP.
//! - `azure-identity`: `AzureTokenCredential` adapts `azure_core`'s `TokenCredential`,
//!   so `azure_identity`'s `DefaultAzureCredential` (or any Entra ID credential) can
//!   authenticate the producer with [`ProducerBuilder::credential`]. It needs Rust 1.88
//!   (azure_core's minimum; the crate needs 1.89 in any case).
//!
//! Without features, each publish try is still a `tracing` span (`eventhubs.publish`)
//! with the OpenTelemetry messaging attributes.
//!
//! TLS is rustls's, with the `CryptoProvider` the application installed as the process
//! default (`CryptoProvider::install_default`, before the first connection), else ring's,
//! which this crate compiles in.
#![forbid(unsafe_code)]

mod amqp;
#[cfg(feature = "azure-identity")]
mod azure_identity;
mod batch;
mod codec;
mod connect;
mod connection_string;
mod credential;
mod event;
pub mod events;
#[cfg(feature = "opentelemetry")]
mod metrics;
mod pool;
mod producer;
mod reader;
mod route;
mod spool;
pub mod stack;
#[cfg(feature = "opentelemetry")]
mod trace_context;

pub use amqp::{HubProperties, PartitionProperties, DEFAULT_MAX_MESSAGE_SIZE};
#[cfg(feature = "azure-identity")]
pub use azure_identity::{AzureTokenCredential, EVENT_HUBS_SCOPE};
pub use batch::Batch;
pub use connection_string::{ConnectionString, ConnectionStringCredentials};
pub use credential::{
    AccessToken, Credential, SasTokenCredential, SharedKeyCredential, TokenFuture, TokenKind,
};
pub use event::{EventData, PropertyValue, Routing};
pub use events::Events;
pub use producer::{
    BatchOutcome, Delivered, Delivery, EnqueueError, Failed, Latency, Outcomes, Partition,
    PartitionStats, Producer, ProducerBuilder, ProducerStats, Receipt, SendStats,
};
pub use reader::{Reader, ReaderBuilder, ReceivedEvent, StartPosition};
pub use route::Partitioner;
pub use spool::Durability;
pub use stack::AmqpSend;
pub use streaming_producer_layers::retry::RetryPolicy;
pub use streaming_producer_layers::Error;

/// The README's code, compiled as doctests so that its quick start stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
