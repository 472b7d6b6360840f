//! The driver's inbox: what the producer handles tell the driver, in one FIFO channel,
//! and the flag that keeps "no room" from being said twice before the driver heard it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::event::EventData;
use crate::producer::capacity::Capacity;
use crate::producer::lanes::{Outbox, Sealed};
use crate::route::Index;
use crate::Error;

use super::linger::Stash;

/// A message to the driver.
#[derive(Debug)]
pub(crate) enum Signal {
    /// A batch opened: publish it when its oldest event has waited `max_wait`, unless
    /// it is sealed before.
    Opened {
        partition: Index,
        generation: u64,
        opened: Instant,
    },
    /// A batch to publish.
    Sealed(Sealed),
    /// An event that can never be published (unknown partition, too large).
    Refused {
        partition: String,
        event: Box<EventData>,
        error: Error,
        capacity: Capacity,
        receipt: Option<std::sync::Arc<crate::producer::receipt::Slot>>,
    },
    /// An outcome known before the events reach a lane (events recovered from the
    /// spool that the service already stored, or that can no longer be published).
    Settled {
        outcome: Box<crate::producer::BatchOutcome>,
        capacity: Capacity,
    },
    /// Report when every batch received so far (of one partition, or of all) has its
    /// outcome.
    Flush {
        partition: Option<Index>,
        done: oneshot::Sender<()>,
    },
    /// Hand back one partition's batches not yet sent (and its open batch, taken
    /// here), as abandoned; report how many events.
    Clear {
        partition: Index,
        open: Option<Sealed>,
        done: oneshot::Sender<usize>,
    },
    /// A handle found no capacity: partitions that are not sending publish their open
    /// batches now rather than wait out `max_wait`, since no more events can come.
    Starved,
    /// The spool's loader has put its last events into the lanes and stopped (after a
    /// close, with the backlog empty): every batch it sealed was sent before this.
    LoaderDone,
    /// The last producer handle is gone without a close: publish what is left, then
    /// stop (as when the inbox closes, which the spool's loader, holding a sender of
    /// its own, would otherwise keep from happening).
    HandlesGone,
    /// Every lane has been swept (into `open` when abandoning, so that none of it is
    /// sent first): publish (or abandon) what is left, then stop.
    Close { abandon: bool, open: Vec<Sealed> },
}

/// The handles' side of the inbox.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    // Signals are per batch (and per refused event), each bounded by the events'
    // capacity, so an unbounded channel stays small.
    signals: mpsc::UnboundedSender<Signal>,
    /// A [`Signal::Starved`] is on its way and not yet handled.
    starved: Arc<AtomicBool>,
    /// Openings the driver will see in time without a signal.
    stash: Arc<Stash>,
}

/// The driver's side of the inbox.
#[derive(Debug)]
pub(crate) struct Signals {
    signals: mpsc::UnboundedReceiver<Signal>,
    starved: Arc<AtomicBool>,
    pub(crate) stash: Arc<Stash>,
}

/// The inbox of a new driver.
pub(crate) fn inbox() -> (Inbox, Signals) {
    let (tx, rx) = mpsc::unbounded_channel();
    let starved = Arc::new(AtomicBool::new(false));
    let stash = Arc::new(Stash::default());
    (
        Inbox {
            signals: tx,
            starved: starved.clone(),
            stash: stash.clone(),
        },
        Signals {
            signals: rx,
            starved,
            stash,
        },
    )
}

impl Inbox {
    /// Sends `signal`; an error (handing it back) if the driver is gone.
    #[allow(clippy::result_large_err)]
    pub(crate) fn send(&self, signal: Signal) -> Result<(), Signal> {
        self.signals.send(signal).map_err(|e| e.0)
    }

    /// Sends `signal`; [`Error::is_closed`] if the driver is gone.
    pub(crate) fn send_or_closed(&self, signal: Signal) -> Result<(), Error> {
        self.send(signal).map_err(|_| Error::closed())
    }

    /// Asks the driver, once until it has heard, to publish what it can now.
    pub(crate) fn starve(&self) {
        if !self.starved.swap(true, Ordering::SeqCst) {
            let _ = self.signals.send(Signal::Starved);
        }
    }
}

impl Signals {
    /// The next signal; `None` once every handle is gone.
    pub(crate) async fn recv(&mut self) -> Option<Signal> {
        self.signals.recv().await
    }

    /// A signal already sent, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Signal> {
        self.signals.try_recv().ok()
    }

    /// Takes no more signals: later sends fail, handing their signal back.
    pub(crate) fn close(&mut self) {
        self.signals.close();
    }

    /// The driver heard the starved signal: the next one is sent.
    pub(crate) fn fed(&self) {
        self.starved.store(false, Ordering::SeqCst);
    }
}

/// The lanes tell the driver of opened and sealed batches through the inbox. Sends to
/// a driver that is gone are dropped: the handles learn of it from the closed flag.
impl Outbox for Inbox {
    fn opened(&self, partition: Index, generation: u64, opened: Instant) {
        if self.stash.leave((partition, generation, opened)) {
            return;
        }
        let _ = self.send(Signal::Opened {
            partition,
            generation,
            opened,
        });
    }

    fn sealed(&self, sealed: Sealed) {
        let _ = self.send(Signal::Sealed(sealed));
    }
}
