//! The event store: partitions, retained events and idempotent-producer state; hubs
//! and the namespace in `hub`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use eventhubs_protocol::sequence::advance;
use fe2o3_amqp_types::messaging::{Body, Message};
use serde_amqp::Value;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::Retention;
use crate::rejection::Rejection;

pub(crate) mod disk;
mod hub;
pub(crate) use hub::{Hub, Store};

/// One stored event, as the service would hand it to a consumer.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Sequence number in its partition, from 0.
    pub sequence_number: i64,
    /// Offset in its partition: the number of encoded bytes stored before it.
    pub offset: u64,
    /// When it was stored, milliseconds since the Unix epoch.
    pub enqueued_time_ms: i64,
    /// The key on the envelope of the batch it came in (it applies to every event of
    /// that batch); see [`StoredEvent::partition_key`].
    envelope_key: Option<String>,
    /// The event as the producer encoded it: a complete AMQP message.
    pub raw: Bytes,
}

impl StoredEvent {
    /// Decodes the stored AMQP message.
    pub fn message(&self) -> Result<Message<Body<Value>>, serde_amqp::Error> {
        crate::codec::decode_message(&self.raw)
    }

    pub(crate) fn envelope_key(&self) -> Option<String> {
        self.envelope_key.clone()
    }

    /// The partition key the event was sent with: the batch envelope's, else the
    /// event's own `x-opt-partition-key` annotation.
    pub fn partition_key(&self) -> Option<String> {
        self.envelope_key.clone().or_else(|| {
            self.message()
                .ok()
                .and_then(|m| crate::codec::partition_key(&m.message_annotations))
        })
    }

    /// The event's body: its `data` sections joined, or the string/binary of an
    /// `amqp-value` body. Empty if the message cannot be decoded.
    pub fn body(&self) -> Vec<u8> {
        self.message()
            .map(|m| crate::codec::body_bytes(&m.body))
            .unwrap_or_default()
    }
}

/// Counters of one partition, as `$management` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Sequence number of the oldest retained event (0 when empty).
    pub begin_sequence_number: i64,
    /// Sequence number of the newest event, -1 when nothing was ever stored.
    pub last_sequence_number: i64,
    /// Offset of the newest event, -1 when nothing was ever stored.
    pub last_offset: i64,
    /// Enqueued time of the newest event, if any.
    pub last_enqueued_time_ms: Option<i64>,
    /// Whether no event is retained.
    pub is_empty: bool,
    /// Events retained now.
    pub retained: usize,
}

/// State of an idempotent producer group on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerState {
    pub(crate) epoch: i16,
    pub(crate) last_sequence: i32,
    /// First sequence number of the last stored batch: an exact resend of that batch
    /// is acknowledged without being stored again.
    last_batch_first: Option<i32>,
}

#[derive(Debug, Default)]
struct Log {
    events: VecDeque<StoredEvent>,
    bytes: usize,
    next_sequence: i64,
    next_offset: u64,
    last_enqueued_time_ms: Option<i64>,
    producers: HashMap<i64, ProducerState>,
    /// With a data directory: where the log is written before it changes.
    file: Option<disk::PartitionFile>,
}

impl Log {
    /// Stores an event in memory, numbered as the next.
    fn push(&mut self, e: NewEvent, now_ms: i64) {
        let len = e.raw.len();
        self.events.push_back(StoredEvent {
            sequence_number: self.next_sequence,
            offset: self.next_offset,
            enqueued_time_ms: now_ms,
            envelope_key: e.partition_key,
            raw: e.raw,
        });
        self.next_sequence += 1;
        self.next_offset += len as u64;
        self.bytes += len;
    }

    /// Drops what retention no longer keeps, and the files that held only that.
    fn evict(&mut self, retention: Retention, max_age_ms: Option<i64>, now_ms: i64) {
        loop {
            let over = match retention {
                Retention::Events(n) => self.events.len() > n,
                Retention::Bytes(b) => self.bytes > b && self.events.len() > 1,
            };
            let expired = max_age_ms.is_some_and(|age| {
                self.events
                    .front()
                    .is_some_and(|e| now_ms.saturating_sub(e.enqueued_time_ms) > age)
            });
            if !(over || expired) {
                break;
            }
            if let Some(old) = self.events.pop_front() {
                self.bytes -= old.raw.len();
            }
        }
        let first_kept = self
            .events
            .front()
            .map_or(self.next_sequence, |e| e.sequence_number);
        if let Some(file) = &mut self.file {
            file.drop_before(first_kept);
        }
    }

    /// Writes a batch to the data directory, if there is one, before it is stored.
    fn write_batch(
        &mut self,
        events: &[NewEvent],
        now_ms: i64,
        producer: Option<(i64, &ProducerState)>,
        max_age_ms: Option<i64>,
    ) -> Result<(), Rejection> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        let written = file.write_batch(self, events, now_ms, producer, max_age_ms);
        self.file = Some(file);
        written.map_err(disk_error)
    }

    /// Writes a producer group's state to the data directory, if there is one.
    fn write_producer(&mut self, id: i64, state: &ProducerState) -> Result<(), Rejection> {
        match &mut self.file {
            Some(file) => file.write_producer(id, state).map_err(disk_error),
            None => Ok(()),
        }
    }
}

fn disk_error(e: std::io::Error) -> Rejection {
    tracing::error!("cannot write to the data directory: {e}");
    Rejection::new(
        "amqp:internal-error",
        format!("The emulator cannot write to its data directory: {e}."),
    )
}

/// One partition of a hub.
#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) id: String,
    log: Mutex<Log>,
    retention: Retention,
    /// Events older than this many milliseconds are dropped.
    max_age_ms: Option<i64>,
    clock: Arc<dyn Clock>,
    /// The next sequence number to be stored; consumers wait on it.
    tail: watch::Sender<i64>,
    /// Who reads it, by consumer group, and who owns it by epoch.
    pub(crate) readers: crate::consume::Readers,
}

/// An event ready to be appended.
#[derive(Debug)]
pub(crate) struct NewEvent {
    pub(crate) raw: Bytes,
    pub(crate) partition_key: Option<String>,
}

impl Partition {
    /// A partition with `log` (empty, or read back from the data directory).
    fn new(
        id: String,
        retention: Retention,
        max_age_ms: Option<i64>,
        clock: Arc<dyn Clock>,
        mut log: Log,
    ) -> Self {
        log.evict(retention, max_age_ms, clock.now_ms());
        let next = log.next_sequence;
        Self {
            id,
            log: Mutex::new(log),
            retention,
            max_age_ms,
            clock,
            tail: watch::channel(next).0,
            readers: Default::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log half-written in a way
        // that matters more than refusing all further traffic would.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The log, with what has outlived the retention time dropped.
    fn lock_now(&self) -> MutexGuard<'_, Log> {
        let mut log = self.lock();
        if self.max_age_ms.is_some() {
            log.evict(self.retention, self.max_age_ms, self.clock.now_ms());
        }
        log
    }

    /// Appends events under one lock and wakes consumers once.
    pub(crate) fn append(&self, events: Vec<NewEvent>, now_ms: i64) -> Result<(), Rejection> {
        let mut log = self.lock();
        self.store(&mut log, events, now_ms, None)
    }

    /// Writes the events (and the producer state they leave) to the data directory,
    /// then stores them and wakes consumers once.
    fn store(
        &self,
        log: &mut Log,
        events: Vec<NewEvent>,
        now_ms: i64,
        producer: Option<(i64, &ProducerState)>,
    ) -> Result<(), Rejection> {
        if events.is_empty() {
            return Ok(());
        }
        log.write_batch(&events, now_ms, producer, self.max_age_ms)?;
        if let Some((id, state)) = producer {
            log.producers.insert(id, *state);
        }
        for e in events {
            log.push(e, now_ms);
        }
        log.last_enqueued_time_ms = Some(now_ms);
        log.evict(self.retention, self.max_age_ms, now_ms);
        self.tail.send_replace(log.next_sequence);
        Ok(())
    }

    /// Idempotent append: checks the producer's sequence numbers first.
    pub(crate) fn append_idempotent(
        &self,
        producer_id: i64,
        epoch: i16,
        first_sequence: i32,
        events: Vec<NewEvent>,
        now_ms: i64,
    ) -> Result<IdempotentAppend, Rejection> {
        let count = events.len() as u32;
        let mut log = self.lock();
        let state = log
            .producers
            .get(&producer_id)
            .copied()
            .unwrap_or(ProducerState {
                epoch,
                last_sequence: advance(first_sequence, u32::MAX >> 1),
                last_batch_first: None,
            });
        if epoch < state.epoch {
            return Err(Rejection::new(
                eventhubs_protocol::PRODUCER_EPOCH_STOLEN,
                format!(
                    "The producer epoch {epoch} is lower than the current epoch {} of producer group {producer_id}.",
                    state.epoch
                ),
            ));
        }
        let expected = advance(state.last_sequence, 1);
        let last = advance(first_sequence, count.saturating_sub(1));
        if first_sequence != expected {
            if state.last_batch_first == Some(first_sequence) && last == state.last_sequence {
                // The retry of the last batch: acknowledged, stored once.
                return Ok(IdempotentAppend::Duplicate);
            }
            let why = if first_sequence < expected {
                format!(
                    "The sequence number {first_sequence} of producer group {producer_id} is an old sequence number; the last published sequence number is {}.",
                    state.last_sequence
                )
            } else {
                format!(
                    "The sequence number {first_sequence} of producer group {producer_id} is out of order; expected {expected}."
                )
            };
            return Err(Rejection::new(
                eventhubs_protocol::OUT_OF_ORDER_SEQUENCE,
                why,
            ));
        }
        let state = ProducerState {
            last_batch_first: Some(first_sequence),
            last_sequence: last,
            ..state
        };
        self.store(&mut log, events, now_ms, Some((producer_id, &state)))?;
        Ok(IdempotentAppend::Stored)
    }

    /// Registers an idempotent producer link and returns the state it announces.
    ///
    /// Values the client sent are echoed (the SDKs track them locally); `None` means
    /// "let the service choose" and is filled from the group's state, or defaults for a
    /// new group. A lower epoch than the group's is refused; a higher one takes over.
    pub(crate) fn attach_producer(
        &self,
        producer_id: i64,
        epoch: Option<i16>,
        sequence: Option<i32>,
    ) -> Result<ProducerState, Rejection> {
        let mut log = self.lock();
        match log.producers.get(&producer_id).copied() {
            Some(state) => {
                let epoch = epoch.unwrap_or(state.epoch);
                if epoch < state.epoch {
                    return Err(Rejection::new(
                        eventhubs_protocol::PRODUCER_EPOCH_STOLEN,
                        format!(
                            "A producer with a higher epoch {} already exists for producer group {producer_id}.",
                            state.epoch
                        ),
                    ));
                }
                if epoch != state.epoch {
                    let raised = ProducerState { epoch, ..state };
                    log.write_producer(producer_id, &raised)?;
                    log.producers.insert(producer_id, raised);
                }
                Ok(ProducerState {
                    epoch,
                    last_sequence: sequence.unwrap_or(state.last_sequence),
                    last_batch_first: None,
                })
            }
            None => {
                let state = ProducerState {
                    epoch: epoch.unwrap_or(0),
                    last_sequence: sequence.unwrap_or(0),
                    last_batch_first: None,
                };
                log.write_producer(producer_id, &state)?;
                log.producers.insert(producer_id, state);
                Ok(state)
            }
        }
    }

    /// The highest producer group id this partition knows, if any.
    pub(crate) fn max_producer_id(&self) -> Option<i64> {
        self.lock().producers.keys().max().copied()
    }

    pub(crate) fn info(&self) -> PartitionInfo {
        let log = self.lock_now();
        let stored_any = log.next_sequence > 0;
        let last = log.events.back();
        PartitionInfo {
            begin_sequence_number: log
                .events
                .front()
                .map(|e| e.sequence_number)
                .unwrap_or(log.next_sequence),
            last_sequence_number: log.next_sequence - 1,
            last_offset: if stored_any {
                last.map(|e| e.offset as i64).unwrap_or(-1)
            } else {
                -1
            },
            last_enqueued_time_ms: log.last_enqueued_time_ms,
            is_empty: log.events.is_empty(),
            retained: log.events.len(),
        }
    }

    /// Retained events from sequence number `from` on, at most `max`.
    pub(crate) fn read_from(&self, from: i64, max: usize) -> Vec<StoredEvent> {
        let log = self.lock_now();
        let first = log.events.front().map(|e| e.sequence_number).unwrap_or(0);
        let skip = (from - first).max(0) as usize;
        log.events.iter().skip(skip).take(max).cloned().collect()
    }

    /// The sequence number of the first retained event `admits` takes, or the tail's
    /// if none.
    pub(crate) fn first_admitted(&self, admits: impl Fn(&StoredEvent) -> bool) -> i64 {
        let log = self.lock_now();
        log.events
            .iter()
            .find(|e| admits(e))
            .map(|e| e.sequence_number)
            .unwrap_or(log.next_sequence)
    }

    pub(crate) fn tail(&self) -> i64 {
        *self.tail.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        self.tail.subscribe()
    }

    /// The newest `max` retained events, oldest first.
    pub(crate) fn latest(&self, max: usize) -> Vec<StoredEvent> {
        let log = self.lock_now();
        let skip = log.events.len().saturating_sub(max);
        log.events.iter().skip(skip).cloned().collect()
    }

    pub(crate) fn all(&self) -> Vec<StoredEvent> {
        self.lock_now().events.iter().cloned().collect()
    }
}

/// What an idempotent append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdempotentAppend {
    Stored,
    Duplicate,
}
