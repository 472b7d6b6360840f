//! AMQP frames as the splicing stream sees them (AMQP 1.0 §2.3.1): a four-byte size
//! (the whole frame's), the data offset in four-byte words, the type (0 for AMQP, 1 for
//! SASL), the channel, then the body; and the eight-byte protocol headers (`AMQP` and
//! a protocol id) that open the SASL and the AMQP exchanges (§2.2).

use bytes::{BufMut, Bytes};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Performatives' descriptor codes (AMQP 1.0 §2.7).
pub(super) const OPEN: u64 = 0x10;
pub(super) const BEGIN: u64 = 0x11;
pub(super) const FLOW: u64 = 0x13;
pub(super) const TRANSFER: u64 = 0x14;

/// The frame header this stream writes: size, data offset 2 (no extended header), type
/// 0, channel.
const HEADER_LEN: usize = 8;

/// The smallest `max-frame-size` a peer may announce (AMQP 1.0 §2.7.1,
/// MIN-MAX-FRAME-SIZE).
pub(super) const MIN_MAX_FRAME: usize = 512;

/// The largest frame the stream parses. The producer announces 64 KiB and fe2o3
/// writes no frame above what both ends announced, so a larger size is not AMQP at
/// all (an HTTP server's `HTTP` reads as a size of 1.2 GB): such a stream passes
/// through unparsed at once, for fe2o3 to refuse, rather than waiting for a frame
/// that never ends.
const MAX_PARSED: usize = 16 << 20;

/// The bytes at the start of `bytes` are not a frame (a size below the header's or
/// above [`MAX_PARSED`]).
#[derive(Debug)]
pub(super) struct Malformed;

/// The length of the protocol header or frame at the start of `bytes`, once all of it
/// is there.
pub(super) fn whole(bytes: &[u8]) -> Result<Option<usize>, Malformed> {
    let Some(size) = bytes.get(..4) else {
        return Ok(None);
    };
    let len = if size == b"AMQP" {
        8
    } else {
        let size = u32::from_be_bytes(size.try_into().expect("four bytes")) as usize;
        if !(HEADER_LEN..=MAX_PARSED).contains(&size) {
            return Err(Malformed);
        }
        size
    };
    Ok((bytes.len() >= len).then_some(len))
}

/// An AMQP frame's channel and body (`None` for a protocol header, a SASL frame or a
/// frame whose data offset is out of bounds).
pub(super) fn amqp(frame: &[u8]) -> Option<(u16, &[u8])> {
    if frame.starts_with(b"AMQP") || frame.len() < HEADER_LEN || frame[5] != 0 {
        return None;
    }
    let offset = usize::from(frame[4]) * 4;
    let body = frame.get(offset.max(HEADER_LEN)..)?;
    Some((u16::from_be_bytes([frame[6], frame[7]]), body))
}

/// The descriptor code of the performative that opens `body` (none for an empty frame,
/// a heartbeat).
pub(super) fn performative(body: &[u8]) -> Option<u64> {
    match body {
        [0x00, 0x53, code, ..] => Some(u64::from(*code)),
        [0x00, 0x80, rest @ ..] => Some(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?)),
        _ => None,
    }
}

/// The frame header and `performative` of a frame on `channel` whose payload, of
/// `payload_len` bytes, follows.
pub(super) fn head(channel: u16, performative: &[u8], payload_len: usize) -> Bytes {
    let size = HEADER_LEN + performative.len() + payload_len;
    let mut head = Vec::with_capacity(HEADER_LEN + performative.len());
    head.put_u32(u32::try_from(size).unwrap_or(u32::MAX));
    head.put_u8(2);
    head.put_u8(0);
    head.put_u16(channel);
    head.extend_from_slice(performative);
    Bytes::from(head)
}

/// A performative read from its encoding.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::io::Result<T> {
    serde_amqp::from_slice(bytes).map_err(|e| invalid("cannot read a performative", e))
}

/// A performative's encoding.
pub(super) fn encode<T: Serialize>(performative: &T) -> std::io::Result<Vec<u8>> {
    serde_amqp::to_vec(performative).map_err(|e| invalid("cannot write a performative", e))
}

fn invalid(what: &str, e: serde_amqp::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what}: {e}"))
}
