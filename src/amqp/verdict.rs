//! What the service says of a batch or a link, as [`Error`]s: the one place where a
//! delivery's outcome, a rejection's or a detach's error condition, and fe2o3's send
//! failures become the producer's errors; and what a broker's refused login says.
//!
//! Whether a failed batch may have been stored is not decided here: the try that
//! loses track of its transfer records that on the batch
//! ([`Batch::mark_maybe_stored`](crate::Batch::mark_maybe_stored)), and the driver
//! marks the outcome's error ambiguous from it.

use fe2o3_amqp::link::SendError;
use fe2o3_amqp::types::definitions;
use fe2o3_amqp::types::messaging::Outcome;

use crate::Error;
use eventhubs_protocol::INTERNAL_ERROR;

/// The service's verdict on a delivery: `accepted` is success; `rejected` carries the
/// service's condition; `released` and `modified` are retryable failures.
pub(crate) fn of_outcome(outcome: Outcome) -> Result<(), Error> {
    match outcome {
        Outcome::Accepted(_) => Ok(()),
        Outcome::Rejected(rejected) => Err(match &rejected.error {
            Some(e) => from_amqp_error(e, false),
            None => Error::rejected(INTERNAL_ERROR, "rejected without an error"),
        }),
        Outcome::Released(_) => Err(Error::released()),
        Outcome::Modified(_) => Err(Error::modified()),
        #[allow(unreachable_patterns)]
        _ => Err(Error::not_accepted()),
    }
}

/// The name of an AMQP error condition, e.g. `amqp:link:message-size-exceeded`.
fn condition_name(condition: &definitions::ErrorCondition) -> String {
    match condition {
        definitions::ErrorCondition::Custom(s) => s.as_str().to_owned(),
        other => match serde_amqp::to_value(other) {
            Ok(serde_amqp::Value::Symbol(s)) => s.as_str().to_owned(),
            _ => format!("{other:?}"),
        },
    }
}

/// The service's error: a rejection of a delivery, or the reason a link was detached.
pub(crate) fn from_amqp_error(e: &definitions::Error, detached: bool) -> Error {
    let condition = condition_name(&e.condition);
    let description = e.description.clone().unwrap_or_default();
    if detached {
        Error::detached(condition, description)
    } else {
        Error::rejected(condition, description)
    }
}

/// A broker's refusal of a sender link, at its attach or by a detach soon after (as
/// the emulator and Event Hubs itself refuse): as [`from_amqp_error`], naming the
/// address, which a broker's own description may not.
pub(crate) fn attach_refused(e: &definitions::Error, address: &str) -> Error {
    let description = e.description.as_deref().unwrap_or("no description");
    Error::detached(
        condition_name(&e.condition),
        format!("the sender link to {address} was refused: {description}"),
    )
}

/// Maps a fe2o3 send error on a broker's link to `address`: as [`send_error`], and a
/// detach names the address.
pub(crate) fn broker_send_error(err: SendError, address: &str) -> Error {
    use fe2o3_amqp::link::{DetachError, LinkStateError};
    match &err {
        SendError::Detached(
            DetachError::RemoteDetachedWithError(e) | DetachError::RemoteClosedWithError(e),
        )
        | SendError::LinkStateError(
            LinkStateError::RemoteDetachedWithError(e) | LinkStateError::RemoteClosedWithError(e),
        ) => attach_refused(e, address).with_source(err),
        _ => send_error(err),
    }
}

/// Maps a fe2o3 send error.
pub(crate) fn send_error(err: SendError) -> Error {
    use fe2o3_amqp::link::{DetachError, LinkStateError};
    match &err {
        SendError::Detached(
            DetachError::RemoteDetachedWithError(e) | DetachError::RemoteClosedWithError(e),
        )
        | SendError::LinkStateError(
            LinkStateError::RemoteDetachedWithError(e) | LinkStateError::RemoteClosedWithError(e),
        ) => from_amqp_error(e, true).with_source(err),
        SendError::MessageSizeExceeded(m) => Error::too_large(m.size as usize, m.max_size as usize),
        _ => Error::connection("the link or connection failed").with_source(err),
    }
}

/// What a SASL exchange that failed says, if that is why the connection failed: a
/// wrong user name or password, or a mechanism the server does not offer.
pub(super) fn sasl_refusal(err: &fe2o3_amqp::connection::OpenError) -> Option<String> {
    use fe2o3_amqp::connection::OpenError;
    use fe2o3_amqp::types::sasl::SaslCode;
    match err {
        OpenError::SaslError { code, .. } => Some(match code {
            SaslCode::Auth => "wrong user name or password (SASL outcome auth)".to_owned(),
            other => format!("SASL outcome {other:?}"),
        }),
        // fe2o3 says so when the server's mechanisms lack the one it was given.
        OpenError::NotImplemented(Some(text)) if text.contains("is not supported") => {
            Some(if text.contains("PLAIN") {
                "it does not take a user name and password (no SASL PLAIN); give the URL \
                 without them to connect anonymously"
                    .to_owned()
            } else {
                "it needs a user name and password (no SASL ANONYMOUS): give them in the \
                 URL, amqp://user:password@host:port"
                    .to_owned()
            })
        }
        _ => None,
    }
}
