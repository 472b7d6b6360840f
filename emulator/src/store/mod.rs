//! The event store: partitions, retained events and idempotent-producer state; hubs
//! and the namespace in `hub`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use eventhubs_protocol::sequence::advance;
use fe2o3_amqp_types::messaging::{Body, Message};
use serde_amqp::Value;
use tokio::sync::watch;

use crate::config::Retention;

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

#[derive(Debug)]
struct Log {
    events: VecDeque<StoredEvent>,
    bytes: usize,
    next_sequence: i64,
    next_offset: u64,
    last_enqueued_time_ms: Option<i64>,
    producers: HashMap<i64, ProducerState>,
}

/// One partition of a hub.
#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) id: String,
    log: Mutex<Log>,
    retention: Retention,
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
    fn new(id: String, retention: Retention) -> Self {
        Self {
            id,
            log: Mutex::new(Log {
                events: VecDeque::new(),
                bytes: 0,
                next_sequence: 0,
                next_offset: 0,
                last_enqueued_time_ms: None,
                producers: HashMap::new(),
            }),
            retention,
            tail: watch::channel(0).0,
            readers: Default::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log half-written in a way
        // that matters more than refusing all further traffic would.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends events under one lock and wakes consumers once.
    pub(crate) fn append(&self, events: Vec<NewEvent>, now_ms: i64) {
        if events.is_empty() {
            return;
        }
        let next = {
            let mut log = self.lock();
            for e in events {
                let len = e.raw.len();
                let stored = StoredEvent {
                    sequence_number: log.next_sequence,
                    offset: log.next_offset,
                    enqueued_time_ms: now_ms,
                    envelope_key: e.partition_key,
                    raw: e.raw,
                };
                log.next_sequence += 1;
                log.next_offset += len as u64;
                log.bytes += len;
                log.events.push_back(stored);
            }
            log.last_enqueued_time_ms = Some(now_ms);
            loop {
                let over = match self.retention {
                    Retention::Events(n) => log.events.len() > n,
                    Retention::Bytes(b) => log.bytes > b && log.events.len() > 1,
                };
                if !over {
                    break;
                }
                if let Some(old) = log.events.pop_front() {
                    log.bytes -= old.raw.len();
                }
            }
            log.next_sequence
        };
        self.tail.send_replace(next);
    }

    /// Idempotent append: checks the producer's sequence numbers first.
    pub(crate) fn append_idempotent(
        &self,
        producer_id: i64,
        epoch: i16,
        first_sequence: i32,
        events: Vec<NewEvent>,
        now_ms: i64,
    ) -> Result<IdempotentAppend, crate::rejection::Rejection> {
        let count = events.len() as u32;
        {
            let mut log = self.lock();
            let state = log.producers.entry(producer_id).or_insert(ProducerState {
                epoch,
                last_sequence: advance(first_sequence, u32::MAX >> 1),
                last_batch_first: None,
            });
            if epoch < state.epoch {
                return Err(crate::rejection::Rejection::new(
                    eventhubs_protocol::PRODUCER_EPOCH_STOLEN,
                    format!(
                        "The producer epoch {epoch} is lower than the current epoch {} of producer group {producer_id}.",
                        state.epoch
                    ),
                ));
            }
            let expected = advance(state.last_sequence, 1);
            let last = advance(first_sequence, count - 1);
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
                return Err(crate::rejection::Rejection::new(
                    eventhubs_protocol::OUT_OF_ORDER_SEQUENCE,
                    why,
                ));
            }
            state.last_batch_first = Some(first_sequence);
            state.last_sequence = last;
        }
        self.append(events, now_ms);
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
    ) -> Result<ProducerState, crate::rejection::Rejection> {
        let mut log = self.lock();
        match log.producers.get_mut(&producer_id) {
            Some(state) => {
                let epoch = epoch.unwrap_or(state.epoch);
                if epoch < state.epoch {
                    return Err(crate::rejection::Rejection::new(
                        eventhubs_protocol::PRODUCER_EPOCH_STOLEN,
                        format!(
                            "A producer with a higher epoch {} already exists for producer group {producer_id}.",
                            state.epoch
                        ),
                    ));
                }
                state.epoch = epoch;
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
                log.producers.insert(producer_id, state);
                Ok(state)
            }
        }
    }

    pub(crate) fn info(&self) -> PartitionInfo {
        let log = self.lock();
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
        let log = self.lock();
        let first = log.events.front().map(|e| e.sequence_number).unwrap_or(0);
        let skip = (from - first).max(0) as usize;
        log.events.iter().skip(skip).take(max).cloned().collect()
    }

    /// The sequence number of the first retained event `admits` takes, or the tail's
    /// if none.
    pub(crate) fn first_admitted(&self, admits: impl Fn(&StoredEvent) -> bool) -> i64 {
        let log = self.lock();
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

    pub(crate) fn all(&self) -> Vec<StoredEvent> {
        self.lock().events.iter().cloned().collect()
    }
}

/// What an idempotent append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdempotentAppend {
    Stored,
    Duplicate,
}
