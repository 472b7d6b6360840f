//! A streaming producer for Azure Event Hubs.
//!
//! Work in progress: the types here (events, connection strings, credentials, errors)
//! are the foundation of the producer described in `shared/DESIGN.md`.
#![forbid(unsafe_code)]

mod codec;
mod connection_string;
mod credential;
mod error;
mod event;

pub use connection_string::{ConnectionString, ConnectionStringCredentials};
pub use credential::{
    AccessToken, Credential, SasTokenCredential, SharedKeyCredential, TokenFuture, TokenKind,
};
pub use error::Error;
pub use event::{EventData, PropertyValue, Routing};
