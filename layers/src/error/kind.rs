//! [`Kind`]: what an [`Error`](super::Error) is, with its text, and which service
//! conditions are worth another try.

use std::fmt;

use eventhubs_protocol as protocol;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// The connection string is malformed; the text names the problem.
    ConnectionString(String),
    /// An option or argument is invalid.
    Config(String),
    /// The service refused the credentials.
    Auth(String),
    /// The connection could not be made, or was lost.
    Connection(String),
    /// The service settled the batch with `rejected` and this condition.
    Rejected {
        condition: String,
        description: String,
    },
    /// The service settled the batch with `released` or `modified`.
    NotAccepted(&'static str),
    /// The link was detached by the service with this condition.
    Detached {
        condition: String,
        description: String,
    },
    /// The operation did not finish in time.
    Timeout,
    /// The events waited their whole delivery timeout without being published.
    DeliveryTimeout,
    /// The producer is closed (or closing) and takes no more events.
    Closed,
    /// The event names a partition the hub does not have.
    UnknownPartition(String),
    /// The event can never fit a batch.
    TooLarge { size: usize, max: usize },
    /// A `$management` request failed with this status.
    Management { status: i32, description: String },
    /// The event was handed back unsent (close_abandon, clear_partition).
    Abandoned,
    /// A transport's or layer's own failure.
    Transport { retryable: bool },
    /// The producer's spool (its log on disk) cannot be opened, read or written.
    Spool(String),
}

/// Conditions after which the same send may succeed (aligned with
/// the .NET and Rust SDKs' choices).
pub(super) const RETRYABLE_CONDITIONS: &[&str] = &[
    protocol::SERVER_BUSY,
    protocol::TIMEOUT,
    protocol::OPERATION_CANCELLED,
    protocol::ENTITY_UPDATED,
    protocol::CONTAINER_CLOSE,
    protocol::INTERNAL_ERROR,
    "amqp:link:detach-forced",
    "amqp:connection:forced",
    "amqp:connection:framing-error",
    "amqp:illegal-state",
];

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::ConnectionString(why) => write!(f, "invalid connection string: {why}"),
            Kind::Config(why) => write!(f, "invalid configuration: {why}"),
            Kind::Auth(why) => write!(f, "authorization failed: {why}"),
            Kind::Connection(why) => write!(f, "connection failed: {why}"),
            Kind::Rejected {
                condition,
                description,
            } => write!(
                f,
                "the service rejected the batch ({condition}): {description}"
            ),
            Kind::NotAccepted(outcome) => write!(f, "the service {outcome} the batch"),
            Kind::Detached {
                condition,
                description,
            } => write!(f, "the link was detached ({condition}): {description}"),
            Kind::Timeout => f.write_str("the operation timed out"),
            Kind::DeliveryTimeout => f.write_str("not published within the delivery timeout"),
            Kind::Closed => f.write_str("the producer is closed"),
            Kind::UnknownPartition(id) => write!(f, "the hub has no partition '{id}'"),
            Kind::TooLarge { size, max } => write!(
                f,
                "the event takes {size} bytes, more than a batch can hold ({max} bytes)"
            ),
            Kind::Management {
                status: 404,
                description,
            } => write!(f, "{description} (status 404)"),
            Kind::Management {
                status,
                description,
            } => write!(
                f,
                "management request failed with status {status}: {description}"
            ),
            Kind::Abandoned => f.write_str("the event was abandoned before it was sent"),
            Kind::Transport { .. } => f.write_str("the transport failed"),
            Kind::Spool(why) => write!(f, "spool: {why}"),
        }
    }
}
