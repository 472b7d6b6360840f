//! Each partition's health, as the driver sees it and tells the router: a partition
//! is avoided by keyless events while its last batch failed (for the availability
//! timeout, doubling with each failure in a row) or while it has had batches
//! outstanding with no outcome for longer than that (throttled and retrying, stalled,
//! waiting for credit, re-attaching). Its load (events sealed and not reported) steers
//! each new run of keyless events to the least busy partition.

use std::time::Duration;

use tokio::time::Instant;

use super::state::State;
use super::timer::far_future;
use super::Driver;
use crate::route::Index;
use crate::Error;

/// A failing partition is avoided for at most this many doublings of the timeout.
const MAX_DOUBLINGS: u32 = 5;

impl Driver {
    /// How often outstanding work is checked for progress: a fraction of the timeout,
    /// so a partition is avoided within a quarter of it after it ran out.
    fn health_tick(&self) -> Duration {
        (self.availability_timeout / 4).max(Duration::from_millis(1))
    }

    /// The next check, `health_tick` from `now` (however long the timeout).
    fn next_check(&self, now: Instant) -> Instant {
        now.checked_add(self.health_tick())
            .unwrap_or_else(far_future)
    }

    /// `events` events of `partition` were sealed; it had nothing outstanding if
    /// `idle`.
    pub(super) fn work_began(
        &self,
        state: &mut State,
        partition: Index,
        events: usize,
        idle: bool,
    ) {
        let health = &self.router.health;
        if !health.enabled() {
            return;
        }
        health.add_load(partition.0, events as isize);
        if idle {
            state.partitions[partition].progress_at = Some(Instant::now());
        }
        state
            .next_health_check
            .get_or_insert_with(|| self.next_check(Instant::now()));
    }

    /// An outcome of `partition` was reported: it made progress, and failed or not.
    pub(super) fn progressed(
        &self,
        state: &mut State,
        partition: Index,
        events: usize,
        result: &Result<(), Error>,
    ) {
        let health = &self.router.health;
        if !health.enabled() {
            return;
        }
        health.add_load(partition.0, -(events as isize));
        let now = Instant::now();
        let p = &mut state.partitions[partition];
        p.progress_at = Some(now);
        match result {
            Ok(()) => {
                p.failures = 0;
                p.failing_until = None;
            }
            // Handed back unsent: says nothing of the partition.
            Err(e) if e.is_abandoned() => {}
            Err(_) => {
                let doublings = p.failures.min(MAX_DOUBLINGS);
                p.failures = p.failures.saturating_add(1);
                let avoided = self
                    .availability_timeout
                    .checked_mul(1 << doublings)
                    .unwrap_or(Duration::MAX);
                p.failing_until = Some(now.checked_add(avoided).unwrap_or_else(far_future));
                let next = self.next_check(now);
                state.next_health_check.get_or_insert(next);
            }
        }
        let p = &state.partitions[partition];
        self.set_avoid(partition, p.failing_until.is_some());
    }

    /// Marks partitions late or recovered, and sets when to check again (not at all
    /// while nothing is outstanding or failing: nothing can change until then).
    pub(super) fn check_health(&self, state: &mut State) {
        let now = Instant::now();
        let mut again = false;
        for i in Index::all(state.partitions.len()) {
            let p = &mut state.partitions[i];
            if p.failing_until.is_some_and(|until| until <= now) {
                p.failing_until = None;
            }
            let outstanding = p.unreported > 0;
            let late = outstanding
                && p.progress_at
                    .is_some_and(|t| now.duration_since(t) >= self.availability_timeout);
            again |= outstanding || p.failing_until.is_some();
            let avoid = late || p.failing_until.is_some();
            self.set_avoid(i, avoid);
        }
        state.next_health_check = again.then(|| self.next_check(now));
    }

    fn set_avoid(&self, partition: Index, avoid: bool) {
        if self.router.health.set_avoid(partition.0, avoid) {
            let id = self.router.id(partition);
            if avoid {
                tracing::info!(partition = %id, "keyless events avoid the partition: it is failing or has made no progress");
            } else {
                tracing::info!(partition = %id, "keyless events go to the partition again");
            }
        }
    }
}
