//! The tower layers of streaming-producer's per-partition stack, with no AMQP
//! implementation under them.
//!
//! Each partition of a producer publishes through its own stack of tower services:
//! tower's `ConcurrencyLimit`, then [`Idempotency`](idempotency::Idempotency), tower's
//! `Retry` with [`EventHubsRetry`](retry::EventHubsRetry), [`Trace`](trace::Trace),
//! tower's `Timeout`, the application's own layers, and the transport at the bottom.
//! This crate holds the layers the producer adds to tower's, and what they need to
//! speak about:
//!
//! | module | what it holds |
//! |---|---|
//! | [`batch`] | [`PartitionBatch`], what a layer may ask of the batch it carries |
//! | [`error`] | [`Error`], the one error every layer, transport and the producer speak |
//! | [`retry`] | [`RetryPolicy`](retry::RetryPolicy), its backoff, and [`EventHubsRetry`](retry::EventHubsRetry) for tower's `Retry` |
//! | [`idempotency`] | [`IdempotencyLayer`](idempotency::IdempotencyLayer): a batch's producer sequence numbers, kept across its retries |
//! | [`trace`] | [`TraceLayer`](trace::TraceLayer): a span per try, with hooks (and OpenTelemetry metrics with the `opentelemetry` feature) |
//!
//! Applications use these through `streaming_producer::stack`, which re-exports them
//! for the producer's own batch type.
//!
//! # Why a trait for the batch and a type for the error
//!
//! The batch is a trait, [`PartitionBatch`], in the manner of tower's `retry::Policy`:
//! a batch holds its events as the transport encodes them for the wire, which is the
//! business of the transport's crate, and a layer needs only its partition, size,
//! deadline and what its tries learned. So these layers carry any batch type, and
//! their tests need no broker.
//!
//! The error is a concrete type, [`Error`]: a tower stack passes errors up as
//! `BoxError`, and a layer above (tower's `Retry`, the producer reporting an outcome)
//! can read one back only by downcasting to a type it knows. One error type shared by
//! the transport, every layer and the producer keeps its predicates
//! ([`is_retryable`](Error::is_retryable), [`is_ambiguous`](Error::is_ambiguous), ...)
//! through any number of user layers in between. Nothing in it is tied to AMQP.
#![forbid(unsafe_code)]

pub mod batch;
pub mod error;
pub mod idempotency;
pub mod retry;
pub mod trace;

pub use batch::PartitionBatch;
pub use error::Error;
