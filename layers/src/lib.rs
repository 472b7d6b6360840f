//! Building blocks of the streaming producer that need no AMQP implementation: the
//! retry policy, partitioners, and what the producer and the
//! emulator share of the service: the partition-key hash, shared access signatures,
//! idempotent producer sequence numbers, and the protocol's names and sizes.
#![forbid(unsafe_code)]

pub mod partition_key;
pub mod protocol;
pub mod retry;
pub mod route;
pub mod sas;
pub mod sequence;
