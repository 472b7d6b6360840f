//! One try of [`AmqpSend`](super::AmqpSend) to a generic AMQP 1.0 broker, which takes
//! no batched messages: a message per event, transferred one after another within the
//! link's credit (no waiting for one's settlement before the next), and one verdict
//! for the batch folded from theirs.
//!
//! The fold: the batch succeeds once every event is accepted; otherwise it fails with
//! the first refusal, in the batch's order. Each acceptance is recorded on the batch,
//! so a retry sends only the events not yet accepted; if the batch finally fails with
//! some of its events accepted, it is marked as maybe stored
//! ([`Error::is_ambiguous`](crate::Error::is_ambiguous) on its outcome).

use std::sync::Arc;

use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::time::Instant;

use crate::amqp::{of_outcome, send_error, to_messages, Amqp, Handed, Link};
use crate::batch::Batch;
use crate::Error;

/// Marks the batch as maybe stored if the try ends (or is dropped) with messages
/// transferred and not settled, or with some of its events accepted and the batch
/// failed.
struct InDoubt<'a> {
    batch: &'a Batch,
    /// What the link transferred; filled during the transfers, so that a try cut
    /// short there still knows.
    handed: Handed,
    /// Transferred messages whose verdict has not come.
    unsettled: usize,
}

impl Drop for InDoubt<'_> {
    fn drop(&mut self) {
        if self.unsettled > 0 || !self.handed.settlements.is_empty() {
            self.batch.mark_maybe_stored();
        }
    }
}

/// One try: sends the events the broker has not accepted yet.
pub(super) async fn publish_each(amqp: Amqp, link: Arc<Link>, batch: Batch) -> Result<(), Error> {
    if batch.deadline().is_some_and(|d| d <= Instant::now()) {
        return Err(Error::delivery_timeout());
    }
    let pending = batch.unaccepted();
    if pending.is_empty() {
        return Ok(());
    }
    let messages = to_messages(&batch, &pending)?;
    let mut doubt = InDoubt {
        batch: &batch,
        handed: Handed::default(),
        unsettled: 0,
    };
    let sending = link.send_all(&amqp, &messages, &mut doubt.handed);
    let finished = match batch.deadline() {
        Some(d) => tokio::time::timeout_at(d, sending).await.ok(),
        None => Some(sending.await),
    };
    drop(messages);
    let stopped = match finished {
        Some(Ok(())) => doubt.handed.stopped.take(),
        // Nothing was transferred.
        Some(Err(e)) => return Err(e),
        // The deadline came while waiting for the connection or for credit.
        None => Some(
            amqp.why_disconnected()
                .map_or_else(Error::delivery_timeout, |why| {
                    Error::delivery_timeout().with_source(why)
                }),
        ),
    };
    let settlements = std::mem::take(&mut doubt.handed.settlements);
    if settlements.is_empty() {
        return Err(stopped.unwrap_or_else(Error::delivery_timeout));
    }
    doubt.unsettled = settlements.len();
    let generation = doubt.handed.generation;
    let mut verdicts: FuturesOrdered<_> = settlements.into_iter().collect();
    let lost = amqp.lost(generation);
    tokio::pin!(lost);
    let mut first_refusal = None;
    let mut index = pending.into_iter();
    loop {
        let verdict = tokio::select! {
            verdict = verdicts.next() => verdict,
            () = &mut lost => {
                return Err(Error::connection(
                    "the connection was lost before the broker settled every message",
                ))
            }
        };
        // A verdict per message sent, and a message per pending event.
        let Some((verdict, event)) = verdict.zip(index.next()) else {
            break;
        };
        doubt.unsettled -= 1;
        let refusal = match verdict {
            Ok(outcome) => match of_outcome(outcome) {
                Ok(()) => {
                    batch.mark_accepted(event);
                    continue;
                }
                Err(e) => e,
            },
            // The link or session ended with the message unsettled: it may be stored.
            Err(e) => {
                batch.mark_maybe_stored();
                send_error(e)
            }
        };
        first_refusal.get_or_insert(refusal);
    }
    match first_refusal.or(stopped) {
        None => Ok(()),
        Some(e) => {
            if batch.accepted_count() > 0 {
                batch.mark_maybe_stored();
            }
            Err(e)
        }
    }
}
