//! Between the producer's types and fe2o3's: a batch as the message written on the
//! wire, and the service's verdicts and link failures as [`Error`]s.

use fe2o3_amqp::link::SendError;
use fe2o3_amqp::types::definitions;
use fe2o3_amqp::types::messaging::{Batch as AmqpBatch, Data, Message};
use fe2o3_amqp::types::primitives::Binary;
use fe2o3_amqp::Sendable;

use crate::batch::Batch;
use crate::codec::{self, Stamp, BATCH_FORMAT};
use crate::Error;
use eventhubs_protocol::sequence::advance;

/// A batch of pre-encoded events for one partition: its data sections behind an
/// `Arc`, shared with the batch rather than copied for each try.
pub(crate) type Wire = Sendable<std::sync::Arc<AmqpBatch<Data>>>;

/// The name of an AMQP error condition, e.g. `amqp:link:message-size-exceeded`.
pub(crate) fn condition_name(condition: &definitions::ErrorCondition) -> String {
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

/// The batched message (format `0x80013700`): one data section per event. The
/// sections are the batch's own; only when the batch is numbered (idempotent
/// publishing) is a copy made, each section stamped with its sequence number, in
/// buffers from the batch's pool (see [`recycle`]).
pub(crate) fn to_wire(batch: &Batch) -> Wire {
    let sections = match batch.stamp() {
        None => batch.sections().clone(),
        Some(first) => {
            let pool = batch.events().pool();
            let mut spare = Vec::new();
            let copies = batch
                .sections()
                .iter()
                .enumerate()
                .map(|(i, Data(bytes))| {
                    if spare.is_empty() {
                        spare = pool.and_then(|p| p.take()).unwrap_or_default();
                    }
                    let mut copy = spare.pop().unwrap_or_default();
                    copy.clear();
                    copy.extend_from_slice(bytes);
                    let sequence = advance(first.sequence, i as u32);
                    codec::stamp(&mut copy, Stamp { sequence, ..first });
                    Data(Binary::from(copy))
                })
                .collect();
            if let (Some(pool), false) = (pool, spare.is_empty()) {
                pool.put(spare);
            }
            std::sync::Arc::new(copies)
        }
    };
    let message = Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: None,
        application_properties: None,
        body: sections,
        footer: None,
    };
    Sendable::builder()
        .message(message)
        .message_format(BATCH_FORMAT)
        .build()
}

/// After a try's transfer: the stamped copies [`to_wire`] made go back to the batch's
/// pool. (Sections that are the batch's own are shared, not copied, and stay.)
pub(crate) fn recycle(wire: Wire, batch: &Batch) {
    let (Some(pool), Some(_)) = (batch.events().pool(), batch.stamp()) else {
        return;
    };
    if let Ok(copies) = std::sync::Arc::try_unwrap(wire.message.body) {
        pool.put(
            copies
                .into_inner()
                .into_iter()
                .map(|Data(bytes)| bytes.into_vec())
                .collect(),
        );
    }
}
