//! A batch as the message written on the wire (the service's answers to it are in
//! `verdict`).

use fe2o3_amqp::types::messaging::{Batch as AmqpBatch, Data, Message};
use fe2o3_amqp::types::primitives::Binary;
use fe2o3_amqp::Sendable;

use crate::batch::Batch;
use crate::codec::{self, Stamp, BATCH_FORMAT};
use eventhubs_protocol::sequence::advance;

/// A batch of pre-encoded events for one partition: its data sections behind an
/// `Arc`, shared with the batch rather than copied for each try.
pub(crate) type Wire = Sendable<std::sync::Arc<AmqpBatch<Data>>>;

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
