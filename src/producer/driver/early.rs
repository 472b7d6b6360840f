//! The early-publish policy: when the producer is out of capacity no more events can
//! come, so open batches large enough go before their `max_wait` rather than idle.

use super::state::State;
use super::Driver;
use crate::producer::lanes::Take;
use crate::route::Index;

impl Driver {
    /// The fewest events an open batch must hold to go before its `max_wait` while
    /// the producer is out of capacity: half a fair share of what the producer holds,
    /// while anything is on its way (its outcome will free capacity soon); a single
    /// event once nothing is. A producer that runs at its bound keeps sending batches
    /// of a useful size rather than a stream of small ones (each batch costs a
    /// transfer and a disposition), and never waits for `max_wait` with nothing on its
    /// way.
    pub(super) fn early_minimum(&self, state: &State) -> usize {
        if state.unreported_events == 0 {
            return 1;
        }
        let share = self.shared.budget.held_events() / (2 * self.router.count().max(1));
        share.max(1)
    }

    /// After a send: with no capacity left, no more events can come, so waiting out
    /// `max_wait` would only idle; the partition publishes its open batch now if it is
    /// large enough (every idle partition's, if one was too small before).
    pub(super) fn publish_if_starved(&self, state: &mut State, partition: Index) {
        if !self.shared.budget.exhausted() {
            return;
        }
        if state.starved_pending {
            self.publish_idle(state);
        } else {
            let min = self.early_minimum(state);
            if self.publish_if_idle(state, partition, min) {
                state.starved_pending = true;
            }
        }
    }

    /// Seals and sends the open batch of every partition that is not sending, if
    /// large enough. Only partitions with an open batch are looked at: with many
    /// partitions, this runs after every outcome while the producer is at its bound.
    pub(super) fn publish_idle(&self, state: &mut State) {
        let min = self.early_minimum(state);
        let mut skipped = false;
        let mut open = std::mem::take(&mut state.scratch);
        state.linger.open(&mut open);
        for partition in open.drain(..) {
            skipped |= self.publish_if_idle(state, partition, min);
        }
        state.scratch = open;
        state.starved_pending = skipped;
    }

    /// Seals and sends `partition`'s open batch if the partition is not sending and
    /// the batch holds at least `min` events; true if it was left open for being
    /// smaller.
    pub(super) fn publish_if_idle(&self, state: &mut State, partition: Index, min: usize) -> bool {
        if state.partitions.get(partition.0).is_some_and(|p| !p.idle()) {
            return false;
        }
        match self.shared.seal_at_least(partition, min) {
            Take::Sealed(sealed) => {
                self.to_ready(state, sealed);
                self.dispatch(state, partition);
                false
            }
            Take::TooSmall => true,
            Take::Empty => false,
        }
    }
}
