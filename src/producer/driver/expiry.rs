//! Expiry: batches still waiting to be sent when their delivery timeout passes fail.

use tokio::time::Instant;

use super::state::State;
use super::Driver;
use crate::route::Index;
use crate::Error;

impl Driver {
    /// Fails the batches still waiting to be sent whose delivery timeout has passed.
    pub(super) async fn expire(&mut self, state: &mut State) {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for i in Index::all(state.partitions.len()) {
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
}
