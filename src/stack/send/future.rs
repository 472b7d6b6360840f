//! One try of [`AmqpSend`](super::AmqpSend): the transfer and the service's verdict.

use std::sync::Arc;

use tokio::time::Instant;

use crate::amqp::{of_outcome, payload, send_error, Amqp, Link};
use crate::batch::Batch;
use crate::Error;

/// Marks the batch as maybe stored unless the try ends with the service's verdict:
/// dropped (a timeout cut the try short) or failed without one. This is the one place
/// a try decides that; the outcome's error says so later
/// ([`Error::is_ambiguous`]).
struct InDoubt<'a> {
    batch: &'a Batch,
    settled: bool,
}

impl Drop for InDoubt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.batch.mark_maybe_stored();
        }
    }
}

/// One try.
pub(super) async fn publish(amqp: Amqp, link: Arc<Link>, batch: Batch) -> Result<(), Error> {
    if batch.deadline().is_some_and(|d| d <= Instant::now()) {
        return Err(Error::delivery_timeout());
    }
    // With a spool, the batch's numbers are on disk before they are on the wire.
    batch.numbering_durable().await;
    // Waits for the connection and for credit; an error here means nothing was
    // transferred. Cut short while waiting, nothing is transferred either.
    // The ticket keeps the payload ready for the connection until the try is over.
    let (message, _ticket) = amqp.stand_in(payload(&batch));
    let send = link.send(&amqp, &message);
    let handed = match batch.deadline() {
        Some(d) => tokio::time::timeout_at(d, send).await.ok(),
        None => Some(send.await),
    };
    let (settlement, generation) = match handed {
        Some(sent) => sent?,
        // Waiting for the connection (or credit) until the deadline: say why.
        None => {
            return Err(amqp
                .why_disconnected()
                .map_or_else(Error::delivery_timeout, |why| {
                    Error::delivery_timeout().with_source(why)
                }))
        }
    };
    let mut doubt = InDoubt {
        batch: &batch,
        settled: false,
    };
    tokio::select! {
        outcome = settlement => match outcome {
            Ok(outcome) => {
                doubt.settled = true;
                of_outcome(outcome)
            }
            // The link or session ended with the delivery unsettled.
            Err(e) => Err(send_error(e)),
        },
        _ = amqp.lost(generation) => Err(Error::connection(
            "the connection was lost before the batch was settled",
        )),
    }
}
