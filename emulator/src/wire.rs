//! Byte-level fix-ups of the frames the emulator writes, for what fe2o3 has no setting for.
//!
//! - pyamqp (the AMQP stack of Microsoft's Python SDK) reads performative fields by
//!   position. When its frame tracing is on (`logging_enable=True`) it builds a
//!   `DispositionFrame` from every disposition and needs all six fields, but fe2o3
//!   leaves out the trailing `batchable` field when it is false (which AMQP allows).
//!   Outgoing dispositions get the missing fields appended.
//! - The service refuses an oversized message with a *rejected disposition*
//!   (`amqp:link:message-size-exceeded`), but fe2o3 enforces the `max-message-size` it
//!   announces by detaching the link. So publishing links are attached with a larger
//!   hard limit (see [`hard_limit`]) that fe2o3 enforces, the attach frame is rewritten
//!   here to announce the configured limit, and the emulator rejects anything between
//!   the two itself.
//!
//! Every other byte passes through untouched.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const ATTACH: u8 = 0x12;
const DISPOSITION: u8 = 0x15;
const DISPOSITION_FIELDS: u32 = 6;
/// Fix-ups wait for a whole frame; anything bigger than this passes through as is.
const MAX_HELD: usize = 1 << 20;

/// The limit fe2o3 enforces on publishing links announcing `announced` bytes.
pub(crate) fn hard_limit(announced: u64) -> u64 {
    announced
        .saturating_mul(2)
        .max(announced.saturating_add(1 << 16))
}

/// Wraps a transport; see the module docs.
#[derive(Debug)]
pub(crate) struct WireFixes<S> {
    inner: S,
    /// The limit publishing links announce.
    announced_max: u64,
    /// Bytes written by fe2o3 that do not yet form a whole header or frame.
    pending: BytesMut,
    /// Bytes ready for the socket.
    out: BytesMut,
}

impl<S> WireFixes<S> {
    pub(crate) fn new(inner: S, announced_max: u64) -> Self {
        Self {
            inner,
            announced_max,
            pending: BytesMut::new(),
            out: BytesMut::new(),
        }
    }

    /// Moves every complete header or frame from `pending` to `out`, fixing dispositions.
    fn process(&mut self) {
        loop {
            if self.pending.len() < 8 {
                return;
            }
            if &self.pending[..4] == b"AMQP" {
                self.out.extend_from_slice(&self.pending.split_to(8));
                continue;
            }
            let size = u32::from_be_bytes([
                self.pending[0],
                self.pending[1],
                self.pending[2],
                self.pending[3],
            ]) as usize;
            if !(8..=MAX_HELD).contains(&size) {
                // Not something we understand: stop looking and pass everything on.
                let rest = self.pending.split();
                self.out.extend_from_slice(&rest);
                return;
            }
            if self.pending.len() < size {
                return;
            }
            let frame = self.pending.split_to(size);
            let fixed =
                fixed_disposition(&frame).or_else(|| announced_attach(&frame, self.announced_max));
            match fixed {
                Some(fixed) => self.out.extend_from_slice(&fixed),
                None => self.out.extend_from_slice(&frame),
            }
        }
    }
}

/// If `frame` is an AMQP disposition with fewer than six fields, the frame with the
/// missing fields appended (nulls, then `batchable = false`).
fn fixed_disposition(frame: &[u8]) -> Option<Vec<u8>> {
    let doff = usize::from(frame[4]) * 4;
    if frame[5] != 0 || doff < 8 || frame.len() < doff + 3 {
        return None;
    }
    let body = &frame[doff..];
    if body[0] != 0x00 || body[1] != 0x53 || body[2] != DISPOSITION {
        return None;
    }
    let list = &body[3..];
    let (count, items): (u32, &[u8]) = match *list.first()? {
        0x45 => (0, &[]),
        0xc0 => {
            let size = usize::from(*list.get(1)?);
            (u32::from(*list.get(2)?), list.get(3..2 + size)?)
        }
        0xd0 => {
            let size = u32::from_be_bytes(list.get(1..5)?.try_into().ok()?) as usize;
            let count = u32::from_be_bytes(list.get(5..9)?.try_into().ok()?);
            (count, list.get(9..5 + size)?)
        }
        _ => return None,
    };
    if count >= DISPOSITION_FIELDS {
        return None;
    }
    let mut fields = items.to_vec();
    // Nulls for any missing field before `batchable`, then `batchable = false`.
    fields.resize(
        items.len() + (DISPOSITION_FIELDS - 1 - count) as usize,
        0x40,
    );
    fields.push(0x42);
    let mut out = Vec::with_capacity(doff + 12 + fields.len());
    out.extend_from_slice(&frame[..doff]);
    out.extend_from_slice(&[0x00, 0x53, DISPOSITION]);
    if fields.len() < 255 {
        out.extend_from_slice(&[0xc0, (fields.len() + 1) as u8, DISPOSITION_FIELDS as u8]);
    } else {
        out.push(0xd0);
        out.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(&DISPOSITION_FIELDS.to_be_bytes());
    }
    out.extend_from_slice(&fields);
    let size = out.len() as u32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Some(out)
}

/// If `frame` is an attach announcing [`hard_limit`] of `announced`, the same attach
/// announcing `announced`.
fn announced_attach(frame: &[u8], announced: u64) -> Option<Vec<u8>> {
    use fe2o3_amqp::types::performatives::Performative;
    let doff = usize::from(frame[4]) * 4;
    if frame[5] != 0 || doff < 8 || frame.len() < doff + 3 {
        return None;
    }
    let body = &frame[doff..];
    if body[0] != 0x00 || body[1] != 0x53 || body[2] != ATTACH {
        return None;
    }
    let Ok(Performative::Attach(mut attach)) = serde_amqp::from_slice::<Performative>(body) else {
        return None;
    };
    if attach.max_message_size != Some(hard_limit(announced)) {
        return None;
    }
    attach.max_message_size = Some(announced);
    let encoded = serde_amqp::to_vec(&Performative::Attach(attach)).ok()?;
    let mut out = Vec::with_capacity(doff + encoded.len());
    out.extend_from_slice(&frame[..doff]);
    out.extend_from_slice(&encoded);
    let size = out.len() as u32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Some(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for WireFixes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> WireFixes<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WireFixes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Bound what is held: drain before taking more once a frame's worth is queued.
        if self.out.len() >= 64 * 1024 {
            ready!(self.poll_drain(cx))?;
        }
        self.pending.put_slice(buf);
        self.process();
        // Best effort now; whatever is left goes out on the next write or flush.
        if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Whatever never became a whole frame is sent as it is.
        let rest = self.pending.split();
        self.out.extend_from_slice(&rest);
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(performative: &[u8]) -> Vec<u8> {
        let mut f = ((8 + performative.len()) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&[2, 0, 0, 1]);
        f.extend_from_slice(performative);
        f
    }

    /// fe2o3's settled accept: role=receiver, first=0, last=0, settled=true, accepted.
    const SHORT_DISPOSITION: &[u8] = &[
        0x00, 0x53, 0x15, 0xc0, 0x09, 0x05, 0x41, 0x43, 0x43, 0x41, 0x00, 0x53, 0x24, 0x45,
    ];

    async fn through(chunks: &[&[u8]]) -> Vec<u8> {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut w = WireFixes::new(a, 1 << 20);
        for c in chunks {
            w.write_all(c).await.unwrap();
        }
        w.flush().await.unwrap();
        w.shutdown().await.unwrap();
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_short_disposition_gets_its_batchable_field() {
        let out = through(&[&frame(SHORT_DISPOSITION)]).await;
        let mut expected = SHORT_DISPOSITION.to_vec();
        expected[4] = 0x0a; // list size + 1
        expected[5] = 0x06; // six fields
        expected.push(0x42); // batchable = false
        assert_eq!(out, frame(&expected));
    }

    #[tokio::test]
    async fn other_frames_and_headers_pass_through_even_when_split() {
        let transfer = frame(&[0x00, 0x53, 0x14, 0x45, 1, 2, 3]);
        let full_disposition = frame(&[
            0x00, 0x53, 0x15, 0xc0, 0x07, 0x06, 0x41, 0x43, 0x43, 0x41, 0x40, 0x42,
        ]);
        let mut all = b"AMQP\x00\x01\x00\x00".to_vec();
        all.extend_from_slice(&transfer);
        all.extend_from_slice(&full_disposition);
        let pieces: Vec<&[u8]> = all.chunks(3).collect();
        assert_eq!(through(&pieces).await, all);
    }

    #[tokio::test]
    async fn an_attach_announcing_the_hard_limit_announces_the_configured_one() {
        use fe2o3_amqp::types::definitions::{ReceiverSettleMode, Role, SenderSettleMode};
        use fe2o3_amqp::types::performatives::{Attach, Performative};
        let attach = |max| Attach {
            name: "l".into(),
            handle: 0.into(),
            role: Role::Receiver,
            snd_settle_mode: SenderSettleMode::Mixed,
            rcv_settle_mode: ReceiverSettleMode::First,
            source: None,
            target: None,
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: None,
            max_message_size: Some(max),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        let encode = |max| {
            let body = serde_amqp::to_vec(&Performative::Attach(attach(max))).unwrap();
            frame(&body)
        };
        let announced = 1u64 << 20;
        assert_eq!(
            through(&[&encode(hard_limit(announced))]).await,
            encode(announced)
        );
        // Other values (request/response links) are left alone.
        assert_eq!(through(&[&encode(4096)]).await, encode(4096));
    }

    #[tokio::test]
    async fn bytes_that_are_not_frames_are_passed_on() {
        let junk = b"\xff\xff\xff\xffgarbage".to_vec();
        assert_eq!(through(&[&junk]).await, junk);
    }
}
