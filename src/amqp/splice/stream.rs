//! The stream under fe2o3's connection that writes each stand-in's payload in its
//! place, and keeps the sessions' transfer counts consistent on both ends.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use fe2o3_amqp::types::performatives::{Begin, Flow, Open, Transfer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{self, BEGIN, FLOW, MIN_MAX_FRAME, OPEN, TRANSFER};
use super::{StandIns, STAND_IN_LEN};

/// Bytes queued for the peer past which a write waits for them to drain. A stand-in's
/// payload is queued whole (it is shared, not copied), so this bounds what fe2o3 can
/// add behind one.
const HIGH_WATER: usize = 256 << 10;

/// How much a read asks of the transport at a time.
const READ_CHUNK: usize = 16 << 10;

/// Slices handed to one vectored write.
const MAX_SLICES: usize = 64;

/// Wraps the transport of a connection to Event Hubs; see the module docs of `splice`.
#[derive(Debug)]
pub(crate) struct Splice<S> {
    inner: S,
    stand_ins: Arc<StandIns>,
    /// Bytes written by fe2o3 that are not yet a whole frame.
    taken: BytesMut,
    /// Whole frames, or the parts of one, waiting for the transport.
    out: VecDeque<Bytes>,
    queued: usize,
    /// Read from the transport, not yet a whole frame.
    raw: BytesMut,
    /// Whole frames read, waiting for fe2o3.
    ready: VecDeque<Bytes>,
    /// After bytes that cannot be a frame, everything on that side passes as it is.
    opaque_out: bool,
    opaque_in: bool,
    /// The most the peer takes in one frame (its open frame's `max-frame-size`).
    peer_max_frame: usize,
    /// fe2o3 asked for queued bytes to be flushed and they are not written yet: they
    /// go when the connection next reads.
    behind: bool,
    /// The read gave way once for what is behind (see [`AsyncRead`] below).
    yielded: bool,
    /// By our channel: the transfer frames added to the session's count.
    added: HashMap<u16, u32>,
    /// The peer's channel of each session to ours (its begin's `remote-channel`).
    ours: HashMap<u16, u16>,
}

impl<S> Splice<S> {
    pub(crate) fn new(inner: S, stand_ins: Arc<StandIns>) -> Self {
        Self {
            inner,
            stand_ins,
            taken: BytesMut::new(),
            out: VecDeque::new(),
            queued: 0,
            raw: BytesMut::new(),
            ready: VecDeque::new(),
            opaque_out: false,
            opaque_in: false,
            peer_max_frame: MIN_MAX_FRAME,
            behind: false,
            yielded: false,
            added: HashMap::new(),
            ours: HashMap::new(),
        }
    }

    fn queue(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.queued += bytes.len();
            self.out.push_back(bytes);
        }
    }

    /// Takes what fe2o3 wrote: each whole frame is queued as it is, or spliced.
    fn take(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.opaque_out {
            self.queue(Bytes::copy_from_slice(buf));
            return Ok(());
        }
        self.taken.extend_from_slice(buf);
        loop {
            match frame::whole(&self.taken) {
                Ok(Some(len)) => {
                    let unit = self.taken.split_to(len).freeze();
                    self.outgoing(unit)?;
                }
                Ok(None) => return Ok(()),
                Err(frame::Malformed) => {
                    self.opaque_out = true;
                    let rest = self.taken.split().freeze();
                    self.queue(rest);
                    return Ok(());
                }
            }
        }
    }

    fn outgoing(&mut self, unit: Bytes) -> io::Result<()> {
        let Some((channel, body)) = frame::amqp(&unit) else {
            self.queue(unit);
            return Ok(());
        };
        match frame::performative(body) {
            Some(TRANSFER) if body.len() > STAND_IN_LEN => {
                let (performative, tail) = body.split_at(body.len() - STAND_IN_LEN);
                match self.stand_ins.payload_for(tail) {
                    // A payload that fits goes in one frame behind fe2o3's own
                    // performative, as it wrote it.
                    Some(Some(payload))
                        if 8 + performative.len() + payload.len() <= self.peer_max_frame =>
                    {
                        self.queue(frame::head(channel, performative, payload.len()));
                        self.queue(payload);
                        Ok(())
                    }
                    Some(Some(payload)) => {
                        let transfer = frame::decode::<Transfer>(performative)?;
                        self.splice(channel, transfer, payload)
                    }
                    Some(None) => {
                        let transfer = frame::decode::<Transfer>(performative)?;
                        self.abort(channel, transfer)
                    }
                    None => {
                        self.queue(unit);
                        Ok(())
                    }
                }
            }
            Some(FLOW) => match self.added.get(&channel).copied().unwrap_or(0) {
                0 => {
                    self.queue(unit);
                    Ok(())
                }
                added => {
                    let mut flow = frame::decode::<Flow>(body)?;
                    flow.next_outgoing_id = flow.next_outgoing_id.wrapping_add(added);
                    let performative = frame::encode(&flow)?;
                    self.queue(frame::head(channel, &performative, 0));
                    Ok(())
                }
            },
            Some(BEGIN) => {
                // A new session on the channel: nothing added to it yet.
                self.added.remove(&channel);
                self.queue(unit);
                Ok(())
            }
            _ => {
                self.queue(unit);
                Ok(())
            }
        }
    }

    /// Queues `transfer` with `payload`, which does not fit one frame, over as many
    /// frames as the peer's frame size asks: the first keeps fe2o3's performative (with
    /// `more` set), the others carry
    /// the link's handle alone (AMQP 1.0 §2.7.5: a continuation transfer may leave out
    /// the delivery id, tag and message format), the last with `more` unset.
    fn splice(&mut self, channel: u16, transfer: Transfer, mut payload: Bytes) -> io::Result<()> {
        let max = self.peer_max_frame;
        let continuation = Transfer {
            handle: transfer.handle.clone(),
            delivery_id: None,
            delivery_tag: None,
            message_format: None,
            settled: transfer.settled,
            more: true,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: transfer.batchable,
        };
        let opening = frame::encode(&Transfer {
            more: true,
            ..transfer
        })?;
        let middle = frame::encode(&continuation)?;
        let last = frame::encode(&Transfer {
            more: false,
            ..continuation
        })?;
        let room = |performative: &[u8]| {
            max.checked_sub(8 + performative.len())
                .filter(|room| *room > 0)
                .ok_or_else(|| io::Error::other("the peer's frame size leaves no room"))
        };
        let (first_room, middle_room, last_room) = (room(&opening)?, room(&middle)?, room(&last)?);
        // Each frame but the last leaves at least a byte for it.
        let first = payload.split_to(first_room.min(payload.len() - 1));
        self.queue(frame::head(channel, &opening, first.len()));
        self.queue(first);
        let mut frames = 1u32;
        while payload.len() > last_room {
            let part = payload.split_to(middle_room.min(payload.len() - 1));
            self.queue(frame::head(channel, &middle, part.len()));
            self.queue(part);
            frames += 1;
        }
        self.queue(frame::head(channel, &last, payload.len()));
        self.queue(payload);
        let added = self.added.entry(channel).or_default();
        *added = added.wrapping_add(frames);
        Ok(())
    }

    /// A stand-in whose send is over (cut short before fe2o3 wrote it): its transfer
    /// goes out aborted, which the peer discards (AMQP 1.0 §2.6.14).
    fn abort(&mut self, channel: u16, transfer: Transfer) -> io::Result<()> {
        let aborted = frame::encode(&Transfer {
            more: false,
            aborted: true,
            ..transfer
        })?;
        self.queue(frame::head(channel, &aborted, 0));
        Ok(())
    }

    /// Sorts out what was read: each whole frame goes to fe2o3, the peer's session
    /// flows with the transfers this stream added taken off.
    fn incoming(&mut self) -> io::Result<()> {
        if self.opaque_in {
            let rest = self.raw.split().freeze();
            self.ready.push_back(rest);
            return Ok(());
        }
        loop {
            let len = match frame::whole(&self.raw) {
                Ok(Some(len)) => len,
                Ok(None) => return Ok(()),
                Err(frame::Malformed) => {
                    self.opaque_in = true;
                    let rest = self.raw.split().freeze();
                    self.ready.push_back(rest);
                    return Ok(());
                }
            };
            let unit = self.raw.split_to(len).freeze();
            let unit = self.read_frame(unit)?;
            self.ready.push_back(unit);
        }
    }

    fn read_frame(&mut self, unit: Bytes) -> io::Result<Bytes> {
        let Some((channel, body)) = frame::amqp(&unit) else {
            return Ok(unit);
        };
        match frame::performative(body) {
            Some(OPEN) => {
                let open = frame::decode::<Open>(body)?;
                self.peer_max_frame = usize::try_from(open.max_frame_size.0)
                    .unwrap_or(usize::MAX)
                    .max(MIN_MAX_FRAME);
            }
            Some(BEGIN) => {
                if let Some(ours) = frame::decode::<Begin>(body)?.remote_channel {
                    self.ours.insert(channel, ours);
                }
            }
            Some(FLOW) => {
                let added = self
                    .ours
                    .get(&channel)
                    .and_then(|ours| self.added.get(ours))
                    .copied()
                    .unwrap_or(0);
                if added != 0 {
                    let mut flow = frame::decode::<Flow>(body)?;
                    if let Some(next) = flow.next_incoming_id.as_mut() {
                        *next = next.wrapping_sub(added);
                        let performative = frame::encode(&flow)?;
                        return Ok(frame::head(channel, &performative, 0));
                    }
                }
            }
            _ => {}
        }
        Ok(unit)
    }

    /// Writes queued bytes until none are left or the transport is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        S: AsyncWrite + Unpin,
    {
        while !self.out.is_empty() {
            let slices: Vec<io::IoSlice<'_>> = self
                .out
                .iter()
                .take(MAX_SLICES)
                .map(|b| io::IoSlice::new(b))
                .collect();
            let written = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.queued -= written;
            let mut left = written;
            while left > 0 {
                let front = self.out.front_mut().expect("written bytes were queued");
                if front.len() <= left {
                    left -= front.len();
                    self.out.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Splice<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.queued >= HIGH_WATER {
            match this.poll_drain(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if this.queued >= HIGH_WATER => return Poll::Pending,
                _ => {}
            }
        }
        this.take(buf)?;
        Poll::Ready(Ok(buf.len()))
    }

    /// Leaves the bytes queued, below the high-water mark, until the connection next
    /// reads (see [`Splice::poll_behind`]).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.queued < HIGH_WATER {
            this.behind = true;
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        this.behind = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncWrite + Unpin> Splice<S> {
    /// Writes what a flush left behind.
    ///
    /// fe2o3 flushes after every frame, so each frame would be a system call of its
    /// own. A flush here only marks the queued bytes, and they are written when the
    /// connection next reads: fe2o3's connection task reads whenever it has nothing
    /// else to do, and every wait for the peer is a read, so nothing is left unwritten
    /// while the connection waits. Frames the task sends in between (the transfers of
    /// batches dispatched together, a flow) share one write.
    fn poll_behind(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.behind {
            return Ok(());
        }
        // Pending: the transport wakes the task when it takes more; the read goes on.
        if let Poll::Ready(result) = self.poll_drain(cx) {
            result?;
            if let Poll::Ready(result) = Pin::new(&mut self.inner).poll_flush(cx) {
                result?;
                self.behind = false;
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Splice<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Once, the connection's task gives way before the write, as
        // `tokio::task::yield_now` does: it runs again once the runtime's other ready
        // tasks (a session, the producer's driver) have run, so the frames they send
        // meanwhile share the write; and, unlike a plain wake, without calling another
        // worker thread to take it.
        if this.behind && !this.yielded {
            this.yielded = true;
            if std::pin::pin!(tokio::task::yield_now())
                .poll(cx)
                .is_pending()
            {
                return Poll::Pending;
            }
        }
        this.yielded = false;
        this.poll_behind(cx)?;
        loop {
            if let Some(front) = this.ready.front_mut() {
                let n = front.len().min(buf.remaining());
                buf.put_slice(&front[..n]);
                front.advance(n);
                if front.is_empty() {
                    this.ready.pop_front();
                }
                return Poll::Ready(Ok(()));
            }
            this.raw.reserve(READ_CHUNK);
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.raw
            ))?;
            if read == 0 {
                // The end: a partial frame left over goes to fe2o3 as it is.
                if this.raw.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let rest = this.raw.split().freeze();
                this.ready.push_back(rest);
                continue;
            }
            this.incoming()?;
        }
    }
}
