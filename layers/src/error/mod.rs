//! [`Error`]: one opaque type with predicates, in the manner of hyper's `Error`.

mod kind;

use std::fmt;

use eventhubs_protocol as protocol;
use kind::{Kind, RETRYABLE_CONDITIONS};
use tower::BoxError;

/// An error of the producer.
///
/// Inspect it with the `is_*` predicates; [`is_retryable`](Error::is_retryable) says
/// whether trying the same operation again may succeed. `Display` describes this
/// level only; the cause, if any, is in [`source`](std::error::Error::source).
///
/// A transport or a layer of yours makes one with [`Error::transport`] (or with the
/// constructor of the case it meets, such as [`Error::rejected`] for a service's
/// verdict), or converts any boxed error with `From<BoxError>`, which recovers this
/// producer's own errors and takes tower's `Elapsed` (from `TimeoutLayer`) as a
/// retryable timeout:
///
/// ```
/// use streaming_producer_layers::Error;
///
/// let e = Error::transport(true, "the socket closed");
/// assert!(e.is_retryable() && !e.is_ambiguous());
/// let boxed: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
/// assert!(Error::from(boxed).is_timeout());
/// let back: tower::BoxError = Box::new(Error::transport(false, "refused").into_ambiguous());
/// assert!(Error::from(back).is_ambiguous());
/// ```
///
/// Cloning is cheap (the source is shared, not copied), so one failure can be told to
/// every receiver of it: a batch's outcome and each of its events' receipts.
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

/// The source of an error, shared by its clones.
type Source = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// Boxed, so that a `Result<_, Error>` stays one pointer wide.
#[derive(Clone)]
struct Inner {
    kind: Kind,
    source: Option<Source>,
    /// The batch may have been stored although this error says it failed.
    ambiguous: bool,
}

impl Error {
    fn new(kind: Kind) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                source: None,
                ambiguous: false,
            }),
        }
    }

    /// An error of a transport or layer of yours: `retryable` says whether trying the
    /// same batch again may succeed; `source` is the cause.
    pub fn transport(retryable: bool, source: impl Into<BoxError>) -> Self {
        Self::new(Kind::Transport { retryable }).with_source(source)
    }

    /// Marks the error as one after which the batch may have been stored (its transfer
    /// reached the service and no verdict came back): see [`is_ambiguous`](Self::is_ambiguous).
    /// The producer marks a failed outcome's error so when a try of the batch recorded
    /// that doubt on the batch; a transport records it there, not on its error.
    pub fn into_ambiguous(mut self) -> Self {
        self.inner.ambiguous = true;
        self
    }

    /// The same error, caused by `source`.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(Source::from(source.into()));
        self
    }

    /// The service settled the batch as `rejected`, with this error condition.
    pub fn rejected(condition: impl Into<String>, description: impl Into<String>) -> Self {
        Self::new(Kind::Rejected {
            condition: condition.into(),
            description: description.into(),
        })
    }

    /// The service settled the batch as `released`: it did not take it, and a retry
    /// may succeed.
    pub fn released() -> Self {
        Self::new(Kind::NotAccepted("released"))
    }

    /// The service settled the batch as `modified`: it did not take it, and a retry
    /// may succeed.
    pub fn modified() -> Self {
        Self::new(Kind::NotAccepted("modified"))
    }

    /// The service settled the batch with an outcome that is none of the four the
    /// protocol defines.
    pub fn not_accepted() -> Self {
        Self::new(Kind::NotAccepted("did not accept"))
    }

    /// The service detached the link with this error condition.
    pub fn detached(condition: impl Into<String>, description: impl Into<String>) -> Self {
        Self::new(Kind::Detached {
            condition: condition.into(),
            description: description.into(),
        })
    }

    /// The connection could not be made, or was lost; `why` says how.
    pub fn connection(why: impl Into<String>) -> Self {
        Self::new(Kind::Connection(why.into()))
    }

    /// The service refused the credentials; `why` says how.
    pub fn auth(why: impl Into<String>) -> Self {
        Self::new(Kind::Auth(why.into()))
    }

    /// One try or request did not finish in time (retryable).
    pub fn timeout() -> Self {
        Self::new(Kind::Timeout)
    }

    /// The events waited their whole delivery timeout without being published.
    pub fn delivery_timeout() -> Self {
        Self::new(Kind::DeliveryTimeout)
    }

    /// An event takes `size` bytes where a batch holds at most `max`.
    pub fn too_large(size: usize, max: usize) -> Self {
        Self::new(Kind::TooLarge { size, max })
    }

    /// A `$management` request failed with this status.
    pub fn management(status: i32, description: impl Into<String>) -> Self {
        Self::new(Kind::Management {
            status,
            description: description.into(),
        })
    }

    /// The connection string is malformed; `why` names the problem.
    pub fn connection_string(why: impl Into<String>) -> Self {
        Self::new(Kind::ConnectionString(why.into()))
    }

    /// An option or argument is invalid; `why` names it.
    pub fn config(why: impl Into<String>) -> Self {
        Self::new(Kind::Config(why.into()))
    }

    /// The producer is closed (or closing) and takes no more events.
    pub fn closed() -> Self {
        Self::new(Kind::Closed)
    }

    /// The event names a partition (`id`) the hub does not have.
    pub fn unknown_partition(id: impl Into<String>) -> Self {
        Self::new(Kind::UnknownPartition(id.into()))
    }

    /// The producer's spool (its log on disk) cannot be opened, read or written; `why`
    /// names the file and the cause.
    pub fn spool(why: impl Into<String>) -> Self {
        Self::new(Kind::Spool(why.into()))
    }

    /// The event was handed back unsent.
    pub fn abandoned() -> Self {
        Self::new(Kind::Abandoned)
    }

    fn kind(&self) -> &Kind {
        &self.inner.kind
    }

    /// Whether trying again may succeed: lost connections, timeouts, throttling,
    /// transient service errors, released or modified batches.
    pub fn is_retryable(&self) -> bool {
        match self.kind() {
            Kind::Connection(_) | Kind::Timeout | Kind::NotAccepted(_) => true,
            // A link closed for want of a valid token: the next try attaches again with
            // a fresh one, and a token the service refuses then fails as `Auth`.
            Kind::Detached { condition, .. } if condition == protocol::UNAUTHORIZED_ACCESS => true,
            Kind::Rejected { condition, .. } | Kind::Detached { condition, .. } => {
                RETRYABLE_CONDITIONS.contains(&condition.as_str())
            }
            Kind::Management { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            Kind::ConnectionString(_)
            | Kind::Config(_)
            | Kind::Auth(_)
            | Kind::Closed
            | Kind::UnknownPartition(_)
            | Kind::TooLarge { .. }
            | Kind::DeliveryTimeout
            | Kind::Spool(_)
            | Kind::Abandoned => false,
            Kind::Transport { retryable } => *retryable,
        }
    }

    /// Whether the batch may have been stored although it is reported failed: its
    /// transfer reached the service (or may have) and no verdict came back, as when
    /// the connection drops or a try times out while the service holds the batch.
    /// Any other failed outcome was certainly not stored. With idempotent retries
    /// such a batch is retried with its numbers until acknowledged, so this is only
    /// seen once its delivery timeout passed or the service refused the retry.
    pub fn is_ambiguous(&self) -> bool {
        self.inner.ambiguous
    }

    /// The hub, partition or entity does not exist (`amqp:not-found`, or a 404 from
    /// `$management`).
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind(), Kind::Management { status: 404, .. })
            || self.condition() == Some(protocol::NOT_FOUND)
    }

    /// The connection could not be made or was lost.
    pub fn is_connection(&self) -> bool {
        matches!(self.kind(), Kind::Connection(_))
    }

    /// The connection string is malformed.
    pub fn is_connection_string(&self) -> bool {
        matches!(self.kind(), Kind::ConnectionString(_))
    }

    /// An option or argument is invalid.
    pub fn is_config(&self) -> bool {
        matches!(self.kind(), Kind::Config(_))
    }

    /// The service refused the credentials.
    pub fn is_auth(&self) -> bool {
        matches!(self.kind(), Kind::Auth(_))
    }

    /// The producer is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind(), Kind::Closed)
    }

    /// The operation timed out: one try, or the whole delivery timeout
    /// (the producer's `ProducerBuilder::delivery_timeout`).
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind(), Kind::Timeout | Kind::DeliveryTimeout)
    }

    /// The event names a partition the hub does not have.
    pub fn is_unknown_partition(&self) -> bool {
        matches!(self.kind(), Kind::UnknownPartition(_))
    }

    /// The event is larger than any batch can be.
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind(), Kind::TooLarge { .. })
            || self.condition() == Some(protocol::MESSAGE_SIZE_EXCEEDED)
    }

    /// The event was handed back unsent, by the producer's `Producer::close_abandon` or
    /// `Producer::clear_partition`.
    pub fn is_abandoned(&self) -> bool {
        matches!(self.kind(), Kind::Abandoned)
    }

    /// The producer's spool (its log on disk) failed: it cannot be opened (held by
    /// another producer, damaged) or written (a full disk).
    pub fn is_spool(&self) -> bool {
        matches!(self.kind(), Kind::Spool(_))
    }

    /// The AMQP error condition the service gave, if any.
    pub fn condition(&self) -> Option<&str> {
        match self.kind() {
            Kind::Rejected { condition, .. } | Kind::Detached { condition, .. } => Some(condition),
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", self.kind());
        if self.inner.ambiguous {
            d.field("ambiguous", &true);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind().fmt(f)?;
        if self.inner.ambiguous {
            f.write_str(" (the batch may have been stored)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Whether a boxed error (as tower layers pass them) is worth another try: the
/// producer's own errors say so themselves, tower's `Elapsed` (a try timed out) is,
/// anything else is not.
pub fn is_retryable(error: &(dyn std::error::Error + 'static)) -> bool {
    match error.downcast_ref::<Error>() {
        Some(own) => own.is_retryable(),
        None => error.is::<tower::timeout::error::Elapsed>(),
    }
}

/// Recovers an [`Error`] that was boxed (by a tower layer, say); tower's `Elapsed`
/// becomes a retryable timeout; anything else a transport error that is not retryable,
/// with the original as its source.
impl From<BoxError> for Error {
    fn from(error: BoxError) -> Self {
        let error = match error.downcast::<Error>() {
            Ok(own) => return *own,
            Err(other) => other,
        };
        if error.is::<tower::timeout::error::Elapsed>() {
            return Self::new(Kind::Timeout).with_source(error);
        }
        Self::new(Kind::Transport { retryable: false }).with_source(error)
    }
}

#[cfg(test)]
mod tests;
