//! Protocol-agnostic building blocks for the streaming producer: tower middleware
//! (routing, batching, concurrency limits, idempotency, retry, tracing) and the
//! pure algorithms they rely on.
//!
//! This crate never depends on an AMQP implementation.
#![forbid(unsafe_code)]

pub mod partition_key;
