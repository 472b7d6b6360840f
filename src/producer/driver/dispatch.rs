//! Dispatching: sealed batches queue per partition with their delivery deadlines,
//! go to the partition's stack when it is ready, and go out together while they fit
//! when the partition fell behind.

use tower::{BoxError, Service};

use super::state::{grow, Ready, Sent, State};
use super::timer::far_future;
use super::Driver;
use crate::producer::lanes::Sealed;
use crate::route::Index;
use crate::stack::BatchService;
use crate::Error;

impl Driver {
    /// Takes every lane's open batch (no handle is left to do it).
    pub(super) fn sweep(&self, state: &mut State) {
        for partition in Index::all(self.shared.lanes()) {
            if let Some(sealed) = self.shared.seal_if(partition, None) {
                self.to_ready(state, sealed);
            }
        }
    }

    /// Queues a sealed batch for its partition's stack, in the order the partition's
    /// batches were sealed.
    ///
    /// The handles send sealed batches through the inbox, and the driver seals some
    /// itself (on `max_wait`, early when starved): a batch the driver seals can reach
    /// this before the partition's previous batch, still in the inbox. It waits here
    /// for it. Every batch a lane opens is sealed once and comes here, and the lane
    /// numbers them one by one, so the wait ends.
    pub(super) fn to_ready(&self, state: &mut State, sealed: Sealed) {
        let partition = sealed.partition;
        grow(state, partition);
        let p = &mut state.partitions[partition];
        if sealed.generation != p.sealed_up_to + 1 {
            debug_assert!(sealed.generation > p.sealed_up_to, "sealed twice");
            p.held.push(sealed);
            return;
        }
        p.sealed_up_to = sealed.generation;
        self.queue_ready(state, sealed);
        loop {
            let p = &mut state.partitions[partition];
            let next = p.sealed_up_to + 1;
            let Some(i) = p.held.iter().position(|s| s.generation == next) else {
                break;
            };
            let sealed = p.held.swap_remove(i);
            p.sealed_up_to = next;
            self.queue_ready(state, sealed);
        }
    }

    /// Queues a sealed batch for its partition's stack, with its delivery deadline.
    fn queue_ready(&self, state: &mut State, sealed: Sealed) {
        let Sealed {
            partition,
            mut batch,
            oldest,
            capacity,
            receipts,
            generation,
        } = sealed;
        state.linger.sealed(partition, generation);
        let deadline = oldest
            .checked_add(self.delivery_timeout)
            .unwrap_or_else(far_future);
        state.next_expiry = Some(state.next_expiry.map_or(deadline, |n| n.min(deadline)));
        batch.set_deadline(Some(deadline));
        let idle = state.partitions[partition].unreported == 0;
        self.work_began(state, partition, batch.len(), idle);
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
            receipts,
        });
    }

    pub(super) fn dispatch_all(&self, state: &mut State) {
        for i in Index::all(state.partitions.len()) {
            self.dispatch(state, i);
        }
    }

    /// Asks `partition`'s stack whether it takes a batch now, if the partition has
    /// one waiting; [`ready`](Self::ready) sends it when the stack says so. The stack
    /// decides how many sends are in flight (tower's `ConcurrencyLimit` in the
    /// producer's own stack).
    pub(super) fn dispatch(&self, state: &mut State, partition: Index) {
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
        partition: Index,
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
            mut receipts,
        }) = p.ready.pop_front()
        {
            // Batches sealed by max_wait while the partition was busy (a slow or
            // failing send) go out together while they fit, so a partition that fell
            // behind catches up with full batches, not a queue of small ones.
            let mut numbers = vec![number];
            while let Some(next) = p.ready.front() {
                if batch.size_in_bytes() + next.batch.size_in_bytes() > self.max_batch_bytes
                    || batch.is_recovered() != next.batch.is_recovered()
                {
                    break;
                }
                let next = p.ready.pop_front().expect("looked at above");
                receipts.merge(batch.len(), next.receipts);
                batch.append(next.batch);
                capacity.merge(next.capacity);
                numbers.push(next.number);
            }
            p.in_flight += 1;
            let deadline = batch.deadline();
            self.shared.stats.of(Some(partition.0)).sending(batch.len());
            let started = tokio::time::Instant::now();
            let call = service.call(batch.clone());
            state.in_flight.push(Box::pin(async move {
                let result = match deadline {
                    Some(d) => match tokio::time::timeout_at(d, call).await {
                        Ok(result) => result.map_err(Error::from),
                        Err(_) => Err(Error::delivery_timeout()),
                    },
                    None => call.await.map_err(Error::from),
                };
                let sent = Sent {
                    batch,
                    capacity,
                    receipts,
                    result,
                    took: started.elapsed(),
                };
                (partition, numbers, sent)
            }));
        }
        // Ready with nothing to send (the batch expired or was cleared meanwhile):
        // the stack keeps its readiness for the next one.
        p.service = Some(service);
        self.dispatch(state, partition);
    }
}
