//! The driver's queues: which open batches go early when the producer is out of
//! capacity, the per-partition queues of sealed batches and their delivery deadlines,
//! dispatching to the partitions' stacks, and reporting outcomes.

use super::*;

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
    pub(super) fn publish_if_starved(&self, state: &mut State, partition: usize) {
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
    /// large enough.
    pub(super) fn publish_idle(&self, state: &mut State) {
        let min = self.early_minimum(state);
        let mut skipped = false;
        for partition in 0..self.router.count() {
            skipped |= self.publish_if_idle(state, partition, min);
        }
        state.starved_pending = skipped;
    }

    /// Seals and sends `partition`'s open batch if the partition is not sending and
    /// the batch holds at least `min` events; true if it was left open for being
    /// smaller.
    pub(super) fn publish_if_idle(&self, state: &mut State, partition: usize, min: usize) -> bool {
        if state.partitions.get(partition).is_some_and(|p| !p.idle()) {
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

    /// Takes every lane's open batch (no handle is left to do it).
    pub(super) fn sweep(&self, state: &mut State) {
        for partition in 0..self.shared.lanes() {
            if let Some(sealed) = self.shared.seal_if(partition, None) {
                self.to_ready(state, sealed);
            }
        }
    }

    pub(super) async fn abandon_all(&mut self, state: &mut State) {
        for i in 0..state.partitions.len() {
            self.abandon_ready(state, i).await;
        }
    }

    /// Hands back the batches of `partition` waiting to be sent, as abandoned; returns
    /// how many events they held.
    pub(super) async fn abandon_ready(&mut self, state: &mut State, partition: usize) -> usize {
        let mut abandoned = 0;
        while let Some(ready) = state.partitions[partition].ready.pop_front() {
            abandoned += ready.batch.len();
            self.fail_ready(state, partition, ready, Error::abandoned())
                .await;
        }
        abandoned
    }

    pub(super) async fn fail_ready(
        &mut self,
        state: &mut State,
        partition: usize,
        ready: Ready,
        error: Error,
    ) {
        let outcome = BatchOutcome {
            partition: ready.batch.partition().to_owned(),
            size_in_bytes: ready.batch.size_in_bytes(),
            starting_sequence_number: None,
            events: ready.batch.into_events(),
            result: Err(error),
        };
        self.report(
            state,
            outcome,
            ready.capacity,
            &[ready.number],
            Some(partition),
        )
        .await;
    }

    /// Fails the batches still waiting to be sent whose delivery timeout has passed.
    pub(super) async fn expire(&mut self, state: &mut State) {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for i in 0..state.partitions.len() {
            let mut expired = Vec::new();
            let ready = &mut state.partitions[i].ready;
            // Batches are queued oldest first, so the expired ones lead.
            while ready
                .front()
                .is_some_and(|r| r.batch.deadline().is_some_and(|d| d <= now))
            {
                expired.extend(ready.pop_front());
            }
            if let Some(d) = ready.front().and_then(|r| r.batch.deadline()) {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
            for ready in expired {
                self.fail_ready(state, i, ready, Error::delivery_timeout())
                    .await;
            }
        }
        state.next_expiry = next;
    }

    /// Queues a sealed batch for its partition's stack, with its delivery deadline.
    pub(super) fn to_ready(&self, state: &mut State, sealed: Sealed) {
        let Sealed {
            partition,
            mut batch,
            opened,
            capacity,
        } = sealed;
        grow(state, partition);
        let deadline = opened
            .checked_add(self.delivery_timeout)
            .unwrap_or_else(far_future);
        state.next_expiry = Some(state.next_expiry.map_or(deadline, |n| n.min(deadline)));
        batch.set_deadline(Some(deadline));
        let number = state.next_number;
        state.next_number += 1;
        state.unreported += 1;
        state.unreported_events += batch.len();
        let p = &mut state.partitions[partition];
        p.unreported += 1;
        p.ready.push_back(Ready {
            batch,
            number,
            capacity,
        });
    }

    pub(super) fn dispatch_all(&self, state: &mut State) {
        for i in 0..state.partitions.len() {
            self.dispatch(state, i);
        }
    }

    /// Asks `partition`'s stack whether it takes a batch now, if the partition has
    /// one waiting; [`ready`](Self::ready) sends it when the stack says so. The stack
    /// decides how many sends are in flight (tower's `ConcurrencyLimit` in the
    /// producer's own stack).
    pub(super) fn dispatch(&self, state: &mut State, partition: usize) {
        let p = &mut state.partitions[partition];
        if p.ready.is_empty() || p.readying {
            return;
        }
        let mut service = match p.service.take() {
            Some(service) => service,
            None => self.stacks.make(&self.router.id(partition)),
        };
        p.readying = true;
        state.readying.push(Box::pin(async move {
            let ready = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
            (partition, service, ready)
        }));
    }

    /// `partition`'s stack is ready: sends its next batch, bounded by the batch's
    /// delivery deadline. A stack that failed is dropped (a new one is made for the
    /// next batch) and its error fails the batch that waited for it.
    pub(super) async fn ready(
        &mut self,
        state: &mut State,
        partition: usize,
        mut service: BatchService,
        ready: Result<(), BoxError>,
    ) {
        let p = &mut state.partitions[partition];
        p.readying = false;
        if let Err(error) = ready {
            if let Some(ready) = p.ready.pop_front() {
                self.fail_ready(state, partition, ready, Error::from(error))
                    .await;
            }
            self.dispatch(state, partition);
            return;
        }
        if let Some(Ready {
            mut batch,
            number,
            mut capacity,
        }) = p.ready.pop_front()
        {
            // Batches sealed by max_wait while the partition was busy (a slow or
            // failing send) go out together while they fit, so a partition that fell
            // behind catches up with full batches, not a queue of small ones.
            let mut numbers = vec![number];
            while let Some(next) = p.ready.front() {
                if batch.size_in_bytes() + next.batch.size_in_bytes() > self.max_batch_bytes {
                    break;
                }
                let next = p.ready.pop_front().expect("looked at above");
                batch.append(next.batch);
                capacity.merge(next.capacity);
                numbers.push(next.number);
            }
            p.in_flight += 1;
            let deadline = batch.deadline();
            let call = service.call(batch.clone());
            state.in_flight.push(Box::pin(async move {
                let result = match deadline {
                    Some(d) => match tokio::time::timeout_at(d, call).await {
                        Ok(result) => result.map_err(Error::from),
                        Err(_) => Err(Error::delivery_timeout()),
                    },
                    None => call.await.map_err(Error::from),
                };
                (partition, numbers, batch, capacity, result)
            }));
        }
        // Ready with nothing to send (the batch expired or was cleared meanwhile):
        // the stack keeps its readiness for the next one.
        p.service = Some(service);
        self.dispatch(state, partition);
    }

    /// Queues an outcome and advances flush barriers. The events' capacity comes back
    /// when the outcome is handed out (or at once if nobody reads outcomes).
    pub(super) async fn report(
        &mut self,
        state: &mut State,
        outcome: BatchOutcome,
        capacity: Capacity,
        numbers: &[u64],
        partition: Option<usize>,
    ) {
        if let Some(p) = partition {
            state.unreported -= numbers.len();
            state.unreported_events -= outcome.events.len();
            state.partitions[p].unreported -= numbers.len();
        }
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
}

/// A timer kept for the driver's whole run and moved only when its deadline
/// changes.
pub(super) struct Timer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    pub(super) armed: Option<Instant>,
}

impl Timer {
    pub(super) fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(far_future())),
            armed: None,
        }
    }

    /// Sets the deadline (`None`: none); a no-op when it is the same.
    pub(super) fn arm(&mut self, deadline: Option<Instant>) {
        if self.armed != deadline {
            self.armed = deadline;
            self.sleep
                .as_mut()
                .reset(deadline.unwrap_or_else(far_future));
        }
    }

    /// Resolves at the deadline.
    pub(super) fn fired(&mut self) -> &mut Pin<Box<tokio::time::Sleep>> {
        &mut self.sleep
    }
}

/// Later than any deadline the driver sets.
pub(super) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// Makes room for partition `index` (the hub may have grown).
pub(super) fn grow(state: &mut State, index: usize) {
    if index >= state.partitions.len() {
        state
            .partitions
            .resize_with(index + 1, PartitionState::default);
    }
}
