//! How many events the lanes hold pending: accepted, and their outcome not handed out.

use std::sync::atomic::Ordering;

use super::Shared;
use crate::route::Index;

impl Shared {
    /// Pending events (see `Lane`) of the first `count` partitions.
    pub(crate) fn total_pending(&self, count: usize) -> usize {
        Index::all(count.min(self.lanes.len()))
            .map(|i| self.pending(i))
            .sum()
    }

    /// Pending events (see `Lane`) of `partition`.
    pub(crate) fn pending(&self, partition: Index) -> usize {
        match self.lanes.get(partition.0) {
            Some(_) => {
                let lane = self.lane(partition);
                lane.accepted
                    .saturating_sub(lane.settled.events.load(Ordering::Acquire))
            }
            None => 0,
        }
    }

    /// Pending events of `partition` and their bodies' bytes.
    pub(crate) fn pending_with_bytes(&self, partition: Index) -> (u64, u64) {
        match self.lanes.get(partition.0) {
            Some(_) => {
                let lane = self.lane(partition);
                let events = lane
                    .accepted
                    .saturating_sub(lane.settled.events.load(Ordering::Acquire));
                let bytes = lane
                    .accepted_bytes
                    .saturating_sub(lane.settled.bytes.load(Ordering::Relaxed));
                (events as u64, bytes as u64)
            }
            None => (0, 0),
        }
    }
}
