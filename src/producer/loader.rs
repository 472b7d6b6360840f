//! The loader: a task that moves the spool's backlog into the lanes as memory frees.
//! The backlog holds the events accepted while the pending bound in memory was full
//! (the spool's own bound then applies, so an outage is ridden out on disk) and those
//! an earlier producer left in the spool. Events are read back in log order, a few
//! thousand at a time and never more than there are free slots for, then put into
//! their lanes (or straight into outcomes when their fate is known already); the
//! batches they went into fill as any do (sealed at once after a close).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fe2o3_amqp::types::messaging::Data;
use tokio::time::Instant;

use super::capacity::{Budget, Capacity, Slot};
use super::driver::{Inbox, Signal};
use super::lanes::{Loading, Outbox as _, Shared};
use super::{BatchOutcome, Partition};
use crate::batch::Batch;
use crate::codec;
use crate::route::{Index, Router};
use crate::spool::{Fate, Item, Loaded, Spool};
use crate::{Error, Events};

/// The most events one pass reads back.
const MAX_LOAD: usize = 4096;

/// The most bytes of records one pass reads back.
const MAX_LOAD_BYTES: usize = 4 << 20;

pub(crate) struct Loader {
    pub(crate) shared: Arc<Shared>,
    pub(crate) router: Arc<Router>,
    pub(crate) inbox: Inbox,
    pub(crate) spool: Spool,
    pub(crate) delivery_timeout: Duration,
    /// Whether the spool's recovered events were encoded for idempotent publishing.
    pub(crate) spool_idempotent: bool,
}

/// Backlog events whose outcome is known without publishing them, gathered into one
/// outcome.
struct Settle {
    partition: String,
    result: Result<(), Error>,
    first_sequence: Option<i32>,
    events: Vec<Loaded>,
    slots: Vec<Slot>,
}

impl Loader {
    fn done(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst) || self.shared.handles.load(Ordering::SeqCst) == 0
    }

    /// Loads until the producer is closed (or its handles are gone) and the backlog
    /// is empty, then tells the driver.
    pub(crate) async fn run(self) {
        self.work().await;
        let _ = self.inbox.send(Signal::LoaderDone);
    }

    async fn work(&self) {
        let mut go = self.shared.loader_go.subscribe();
        if go.wait_for(|go| *go).await.is_err() {
            return;
        }
        loop {
            while self.spool.backlog() == 0 {
                if self.done() {
                    return;
                }
                self.spool.spilled().await;
            }
            // Room in memory for at least one event, and for as many as there are in
            // the backlog (up to a pass's worth) if it is free now.
            let Ok(first) = self.shared.budget.events.clone().acquire_owned().await else {
                return;
            };
            let mut slots = vec![Budget::slot_of(first)];
            let want = usize::try_from(self.spool.backlog())
                .unwrap_or(MAX_LOAD)
                .min(MAX_LOAD);
            while slots.len() < want {
                match self.shared.budget.try_reserve() {
                    Some(slot) => slots.push(slot),
                    None => break,
                }
            }
            self.shared.budget.clone().bytes_available().await;
            let written = self.spool.freed().notified();
            tokio::pin!(written);
            written.as_mut().enable();
            let spool = self.spool.clone();
            let n = slots.len();
            let read =
                tokio::task::spawn_blocking(move || spool.read_backlog(n, MAX_LOAD_BYTES)).await;
            let items = match read {
                Ok(Ok(items)) => items,
                Ok(Err(error)) => {
                    for slot in slots {
                        self.shared.budget.unreserve(slot);
                    }
                    self.unreadable(error);
                    continue;
                }
                Err(_) => return,
            };
            if items.is_empty() {
                // What is to be read is not written yet.
                for slot in slots {
                    self.shared.budget.unreserve(slot);
                }
                written.await;
                continue;
            }
            self.take(items, slots);
        }
    }

    /// Puts a pass's events where they go; gives back the slots left over.
    fn take(&self, items: Vec<Item>, slots: Vec<Slot>) {
        let mut slots = slots.into_iter();
        let mut touched: Vec<Index> = Vec::new();
        let mut settle: Option<Settle> = None;
        let abandon = self.shared.abandoning.load(Ordering::SeqCst);
        for item in items {
            let event = match item {
                Item::Other { end } => {
                    self.spool.pass(end);
                    continue;
                }
                Item::Event(event) => event,
            };
            let fate = self
                .spool
                .fate(&event.partition, event.index, event.recovered);
            if fate == Fate::Done {
                self.spool.pass(event.end);
                continue;
            }
            let Some(slot) = slots.next() else {
                // Cannot happen: a pass reads no more events than it has slots for.
                break;
            };
            let (result, first_sequence, event, slot) = match fate {
                Fate::Stored(sequence) => (Ok(()), Some(sequence), event, slot),
                _ if abandon || fate == Fate::Cleared => {
                    (Err(Error::abandoned()), None, event, slot)
                }
                _ => match self.load(event, slot, &mut touched) {
                    Ok(()) => continue,
                    Err((error, event, slot)) => (Err(error), None, event, slot),
                },
            };
            self.spool.took(&event.partition, event.end);
            let joins = settle.as_ref().is_some_and(|s| {
                s.partition == event.partition
                    && s.result.is_ok() == result.is_ok()
                    && s.events
                        .last()
                        .is_some_and(|l| l.recovered == event.recovered)
            });
            if !joins {
                if let Some(done) = settle.take() {
                    self.settle(done);
                }
                settle = Some(Settle {
                    partition: event.partition.clone(),
                    result,
                    first_sequence,
                    events: Vec::new(),
                    slots: Vec::new(),
                });
            }
            let s = settle.as_mut().expect("set above");
            s.events.push(event);
            s.slots.push(slot);
        }
        if let Some(done) = settle.take() {
            self.settle(done);
        }
        for slot in slots {
            self.shared.budget.unreserve(slot);
        }
        // After a close nothing else seals the lanes: the loaded events go now.
        // Otherwise their batches fill as any do, up to `max_wait`.
        if self.shared.closed.load(Ordering::SeqCst) {
            for partition in touched {
                self.shared
                    .seal_with(partition, |sealed| sealed.map(|s| self.inbox.sealed(s)));
            }
        }
    }

    /// Puts a backlog event into its lane, or says why it cannot go.
    #[allow(clippy::result_large_err)]
    fn load(
        &self,
        event: Loaded,
        slot: Slot,
        touched: &mut Vec<Index>,
    ) -> Result<(), (Error, Loaded, Slot)> {
        let index = match self.router.resolve(&Partition::id(&event.partition)) {
            Ok(index) => index,
            // The destination no longer has this partition (or address).
            Err(error) => return Err((error, event, slot)),
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let waited = Duration::from_millis(now_ms.saturating_sub(event.accepted_ms).max(0) as u64);
        // A recovered event's delivery timeout counts from the restart; one accepted
        // by this producer counts from its acceptance, time on disk included.
        let accepted = if event.recovered {
            Instant::now()
        } else {
            if waited >= self.delivery_timeout {
                return Err((Error::delivery_timeout(), event, slot));
            }
            Instant::now()
                .checked_sub(waited)
                .unwrap_or_else(Instant::now)
        };
        let shared = &self.shared;
        let mut event = event;
        if event.recovered && self.spool_idempotent != shared.idempotent {
            if let Some(decoded) = codec::decode::event(&event.encoded) {
                event.encoded = codec::encode(&decoded, shared.idempotent);
            }
        }
        let cost = Batch::cost(&event.encoded);
        if cost > shared.max_batch_bytes {
            return Err((Error::too_large(cost, shared.max_batch_bytes), event, slot));
        }
        let id = self.router.id(index);
        let Loaded {
            end,
            recovered,
            pinned,
            encoded,
            index: spooled,
            ..
        } = event;
        let body = codec::decode::body(&encoded).map_or(encoded.len(), <[u8]>::len);
        let spool = &self.spool;
        shared.append_loaded(
            &self.inbox,
            Loading {
                partition: index,
                id: &id,
                pinned,
                encoded,
                cost,
                spooled,
                slot,
                body,
                recovered,
                accepted,
            },
            || spool.took(&id, end),
        );
        if !touched.contains(&index) {
            touched.push(index);
        }
        Ok(())
    }

    /// Reports backlog events whose fate is known without publishing them.
    fn settle(&self, settle: Settle) {
        let shared = &self.shared;
        let mut capacity = Capacity::new(&shared.budget);
        let mut spans = Vec::new();
        let mut pinned = Vec::new();
        let mut sections = Vec::with_capacity(settle.events.len());
        let recovered = settle.events.iter().all(|e| e.recovered);
        for (i, (event, slot)) in settle.events.into_iter().zip(settle.slots).enumerate() {
            let bytes =
                codec::decode::body(&event.encoded).map_or(event.encoded.len(), <[u8]>::len);
            shared.budget.count_bytes(bytes);
            capacity.add(slot, bytes);
            crate::events::push_span(&mut spans, event.index, 1);
            if event.pinned {
                pinned.push(i as u32);
            }
            sections.push(Data(event.encoded.into()));
        }
        let events =
            Events::from_encoded(&settle.partition, sections, pinned).spooled_at(spans, recovered);
        let outcome = BatchOutcome {
            partition: settle.partition,
            events,
            size_in_bytes: 0,
            starting_sequence_number: settle.first_sequence,
            result: settle.result,
            recovered,
        };
        let _ = self.inbox.send_or_closed(Signal::Settled {
            outcome: Box::new(outcome),
            capacity,
        });
    }

    /// The backlog cannot be read (a damaged record, an I/O error): its events are
    /// given up, said in an outcome with the error (and no events) and in the log.
    fn unreadable(&self, error: Error) {
        let lost = self.spool.give_up_backlog();
        tracing::error!(events = lost, "the spool's backlog cannot be read: {error}");
        self.shared.backlog_receipts.lose_all(&error);
        let outcome = BatchOutcome {
            partition: String::new(),
            events: Events::default(),
            size_in_bytes: 0,
            starting_sequence_number: None,
            result: Err(error.with_source(format!("{lost} events of the spool's backlog are lost"))),
            recovered: false,
        };
        let _ = self.inbox.send_or_closed(Signal::Settled {
            outcome: Box::new(outcome),
            capacity: Capacity::new(&self.shared.budget),
        });
    }
}
