//! Protocol-agnostic building blocks for the streaming producer: tower middleware
//! (routing, batching, concurrency limits, idempotency, retry, tracing) and the
//! pure algorithms they rely on.
//!
//! This crate never depends on an AMQP implementation. It also holds the service
//! algorithms that the producer and the emulator share: the partition-key hash,
//! shared access signatures and idempotent producer sequence numbers.
#![forbid(unsafe_code)]

pub mod batch;
pub mod partition_key;
pub mod retry;
pub mod route;
pub mod sas;
pub mod sequence;
