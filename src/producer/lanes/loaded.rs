//! Events the spool's loader brings back from the backlog into the lanes.

use tokio::time::Instant;

use super::{Outbox, Shared};
use crate::producer::capacity::Slot;
use crate::route::Index;

/// An event the loader brings back from the spool's backlog into a lane.
#[derive(Debug)]
pub(crate) struct Loading<'a> {
    pub(crate) partition: Index,
    pub(crate) id: &'a str,
    pub(crate) pinned: bool,
    pub(crate) encoded: Vec<u8>,
    pub(crate) cost: usize,
    /// Its index in the spool.
    pub(crate) spooled: u64,
    pub(crate) slot: Slot,
    /// Its body's length.
    pub(crate) body: usize,
    pub(crate) recovered: bool,
    /// When its delivery timeout began.
    pub(crate) accepted: Instant,
}

impl Shared {
    /// Adds an event the loader brought back from the spool's backlog to its
    /// partition's open batch, and calls `taken` under the lane's lock (so an event
    /// accepted after the backlog emptied follows it).
    pub(crate) fn append_loaded(
        &self,
        out: &impl Outbox,
        event: Loading<'_>,
        taken: impl FnOnce(),
    ) {
        let Loading {
            partition,
            id,
            pinned,
            encoded,
            cost,
            spooled,
            slot,
            body,
            recovered,
            accepted,
        } = event;
        let mut lane = self.lane(partition);
        let open = self.fill(
            &mut lane,
            out,
            partition,
            id,
            (pinned, encoded, cost),
            Some(spooled),
            (recovered, Some(accepted)),
            (slot, body),
        );
        if let Some(receipt) = self.backlog_receipts.take(id, spooled) {
            open.receipts.join(open.batch.len() - 1, receipt);
        }
        taken();
        self.seal_if_full(&mut lane, out, partition);
    }
}
