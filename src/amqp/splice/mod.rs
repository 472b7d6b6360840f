//! The batch's own bytes on fe2o3's link: a transfer path beside fe2o3's serializer.
//!
//! fe2o3 writes a message by serializing it: a batched message's data sections go one
//! by one through `serde_amqp`, each into a buffer of its own, then into a buffer for
//! the sequence, then into the payload, then into the frame. For a batch of small
//! events that serializing is most of the client's work, and the batch is already
//! encoded: its data sections are the events as they are kept. fe2o3's public API has
//! no way to hand it those bytes (its message bodies are a sealed set of serialized
//! types), so the producer hands fe2o3 a *stand-in*: a message of one small data
//! section that names the batch's payload, registered in [`StandIns`]. fe2o3 does all
//! the link's work for it as for any message (credit, delivery id and tag, the
//! unsettled map, the settlement future, detaches); the connection's stream
//! ([`Splice`]) finds the stand-in's transfer frame on its way out and writes, in its
//! place, the same transfer carrying the real payload, split over as many frames as
//! the peer's `max-frame-size` asks.
//!
//! A delivery of several frames counts as several transfers at the session level
//! (AMQP 1.0 §2.5.6: each transfer frame takes a transfer-id). fe2o3 counted one, so
//! the stream keeps, per session, how many frames it added and brings the two views
//! together in the session's flow frames: `next-outgoing-id` going out gains them,
//! `next-incoming-id` coming in loses them. Both ends see a consistent session.
//!
//! Files: here the register of stand-ins; `frame` (reading and writing frame
//! headers and performatives), `stream` (the stream that splices).

mod frame;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fe2o3_amqp::types::messaging::{Data, Message};
use fe2o3_amqp::types::primitives::Binary;
use fe2o3_amqp::Sendable;

pub(crate) use stream::Splice;

/// The encoded stand-in message: a data section (`00 53 75`) of 16 bytes (`a0 10`),
/// the register's mark and the payload's number.
const STAND_IN_LEN: usize = 5 + 16;
const STAND_IN_HEAD: [u8; 5] = [0x00, 0x53, 0x75, 0xa0, 0x10];

/// The payloads whose stand-ins are on their way to the wire, by number.
///
/// Shared by the producer's sends and by every connection's [`Splice`]. A payload
/// stays registered while its send is in progress ([`Ticket`]), so a transfer fe2o3
/// writes twice (which it does not) would carry the payload both times.
#[derive(Debug)]
pub(crate) struct StandIns {
    /// Eight random bytes that open every stand-in of this register, so that nothing
    /// else a connection carries is taken for one.
    mark: [u8; 8],
    next: AtomicU64,
    payloads: Mutex<HashMap<u64, Bytes>>,
}

impl Default for StandIns {
    fn default() -> Self {
        Self::new()
    }
}

impl StandIns {
    pub(crate) fn new() -> Self {
        // The std hasher's keys are random per process and per hasher: eight bytes
        // no one else's message will open with, without a dependency for them.
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(std::process::id().into());
        Self {
            mark: hasher.finish().to_be_bytes(),
            next: AtomicU64::new(1),
            payloads: Mutex::default(),
        }
    }

    /// Registers `payload` (the encoded body sections of a message) and returns the
    /// stand-in to send in its place, in `format`, and the ticket that keeps it
    /// registered.
    pub(crate) fn stand_in(
        self: &Arc<Self>,
        payload: Bytes,
        format: u32,
    ) -> (Sendable<Data>, Ticket) {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(number, payload);
        let mut name = [0u8; 16];
        name[..8].copy_from_slice(&self.mark);
        name[8..].copy_from_slice(&number.to_be_bytes());
        let message = Message::builder()
            .data(Data(Binary::from(name.to_vec())))
            .build();
        let sendable = Sendable::builder()
            .message(message)
            .message_format(format)
            .build();
        let ticket = Ticket {
            register: Arc::clone(self),
            number,
        };
        (sendable, ticket)
    }

    /// The payload a transfer's payload stands in for: `Some(None)` for a stand-in of
    /// this register whose send is over, `None` for anything else.
    pub(crate) fn payload_for(&self, transfer_payload: &[u8]) -> Option<Option<Bytes>> {
        let (head, name) = transfer_payload.split_at_checked(STAND_IN_HEAD.len())?;
        if head != STAND_IN_HEAD || name.len() != 16 || name[..8] != self.mark {
            return None;
        }
        let number = u64::from_be_bytes(name[8..].try_into().ok()?);
        Some(self.lock().get(&number).cloned())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Bytes>> {
        self.payloads.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    pub(crate) fn registered(&self) -> usize {
        self.lock().len()
    }
}

/// Keeps a payload registered while its send is in progress; dropped, the payload is
/// let go. A stand-in written after that (its send was cut short before fe2o3's
/// connection wrote it) goes out as an aborted transfer, which the peer discards.
#[derive(Debug)]
pub(crate) struct Ticket {
    register: Arc<StandIns>,
    number: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.register.lock().remove(&self.number);
    }
}
