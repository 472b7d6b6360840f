//! Reporting: outcomes queued for the application, flush barriers advanced, and the
//! batches that fail or are abandoned before they are sent.

use tokio::sync::mpsc;

use super::state::{Ready, State};
use super::Driver;
use crate::producer::capacity::Capacity;
use crate::producer::outcome::BatchOutcome;
use crate::producer::receipt::Receipts;
use crate::route::Index;
use crate::stack::Base;
use crate::Error;

impl Driver {
    /// Answers the events' receipts, queues the outcome and advances flush barriers.
    /// The events' capacity comes back when the outcome is handed out (or at once if
    /// nobody reads outcomes).
    pub(super) async fn report(
        &mut self,
        state: &mut State,
        mut outcome: BatchOutcome,
        (capacity, receipts): (Capacity, Receipts),
        numbers: &[u64],
        partition: Option<Index>,
    ) {
        if let Err(e) = &mut outcome.result {
            self.say_why_disconnected(e);
        }
        if !receipts.is_empty() {
            receipts.resolve(&outcome);
        }
        if let Some(spool) = &self.shared.spool {
            spool.done(&outcome.partition, outcome.events.spooled());
            self.shared.backlog_receipts.answer(&outcome);
        }
        if let Some(p) = partition {
            state.unreported -= numbers.len();
            state.unreported_events -= outcome.events.len();
            state.partitions[p].unreported -= numbers.len();
            self.progressed(state, p, outcome.events.len(), &outcome.result);
        }
        let counted = partition.or_else(|| {
            self.router
                .resolve(&crate::Partition::id(outcome.partition.as_str()))
                .ok()
        });
        self.shared.stats.of(counted.map(|p| p.0)).outcome(
            outcome.events.len(),
            outcome.size_in_bytes,
            &outcome.result,
        );
        match self.outcomes.try_send((outcome, capacity)) {
            // Dropped with the outcome if nobody reads outcomes any more.
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            // Cannot happen: every queued outcome holds at least one capacity slot and
            // the queue has room for all of them. Waiting is still correct.
            Err(mpsc::error::TrySendError::Full(item)) => {
                let _ = self.outcomes.send(item).await;
            }
        }
        let mut i = 0;
        while i < state.barriers.len() {
            let b = &mut state.barriers[i];
            if b.partition.is_none() || b.partition == partition {
                b.remaining -= numbers.iter().filter(|n| **n < b.before).count();
            }
            if b.remaining == 0 {
                let _ = state.barriers.swap_remove(i).done.send(());
            } else {
                i += 1;
            }
        }
    }

    /// A timeout while the connection cannot be made says why (the last connection
    /// attempt's error), where the timeout itself does not: "refused" tells the
    /// application more than "timed out".
    fn say_why_disconnected(&self, error: &mut Error) {
        use std::error::Error as _;
        if !error.is_timeout() || error.source().is_some() {
            return;
        }
        let why = match &self.stacks.base {
            Base::Amqp(connection) => connection.amqp().why_disconnected(),
            Base::Custom(_) => None,
        };
        if let Some(why) = why {
            let taken = std::mem::replace(error, Error::closed());
            *error = taken.with_source(format!("while disconnected: {why}"));
        }
    }

    pub(super) async fn fail_ready(
        &mut self,
        state: &mut State,
        partition: Index,
        ready: Ready,
        error: Error,
    ) {
        let outcome = BatchOutcome {
            partition: ready.batch.partition().to_owned(),
            size_in_bytes: ready.batch.size_in_bytes(),
            starting_sequence_number: None,
            recovered: ready.batch.is_recovered(),
            events: ready.batch.into_events(),
            result: Err(error),
        };
        self.report(
            state,
            outcome,
            (ready.capacity, ready.receipts),
            &[ready.number],
            Some(partition),
        )
        .await;
    }

    pub(super) async fn abandon_all(&mut self, state: &mut State) {
        for i in Index::all(state.partitions.len()) {
            self.abandon_ready(state, i).await;
        }
    }

    /// Hands back the batches of `partition` waiting to be sent, as abandoned; returns
    /// how many events they held.
    pub(super) async fn abandon_ready(&mut self, state: &mut State, partition: Index) -> usize {
        let mut abandoned = 0;
        while let Some(ready) = state.partitions[partition].ready.pop_front() {
            abandoned += ready.batch.len();
            self.fail_ready(state, partition, ready, Error::abandoned())
                .await;
        }
        abandoned
    }
}
