//! Building blocks of the streaming producer that need no AMQP implementation: the
//! retry policy.
#![forbid(unsafe_code)]

pub mod retry;
