//! A streaming producer for Azure Event Hubs.
//!
//! Work in progress: the types here (events, connection strings, credentials, errors)
//! are the foundation of the producer described in `shared/DESIGN.md`.
#![forbid(unsafe_code)]

mod amqp;
mod base;
mod batch;
mod codec;
mod connection_string;
mod credential;
mod error;
mod event;
mod producer;

pub use base::{AmqpSend, SendFailure};
pub use batch::Batch;
pub use connection_string::{ConnectionString, ConnectionStringCredentials};
pub use credential::{
    AccessToken, Credential, SasTokenCredential, SharedKeyCredential, TokenFuture, TokenKind,
};
pub use error::Error;
pub use event::{EventData, PropertyValue, Routing};
pub use producer::{BatchOutcome, EnqueueError, Outcomes, Producer, ProducerBuilder};

/// `max-message-size` assumed when a link announces none: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 20;
