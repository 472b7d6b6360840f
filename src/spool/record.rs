//! The spool's records: how each is laid out on disk and read back.
//!
//! A segment file starts with [`MAGIC`], then holds records, each
//! `[length: u32 LE][CRC32C of the body: u32 LE][body]`, the body a type byte and its
//! fields (integers little-endian, strings and byte strings prefixed with their
//! length). CRC32C (Castagnoli) is the checksum iSCSI, ext4's metadata and Kafka's
//! record batches use; the `crc32c` crate computes it with the CPU's instruction.

use streaming_producer_layers::batch::Stamp;

/// The first bytes of every segment file.
pub(crate) const MAGIC: &[u8; 8] = b"SPOOL01\n";

/// A record's header: its body's length and checksum.
pub(crate) const HEADER: usize = 8;

/// The largest body a record may have: an event of the largest message Event Hubs
/// takes (1 MB on every tier but Dedicated, 20 MB there) with room to spare. A length
/// above it is damage, not a record.
pub(crate) const MAX_BODY: usize = 64 << 20;

const SNAPSHOT: u8 = 1;
const EVENT: u8 = 2;
const DONE: u8 = 3;
const BASE: u8 = 4;

/// A partition's state as a segment's first record carries it, so that a segment
/// can be read without the ones before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionState {
    pub(crate) partition: String,
    /// The index the partition's next event gets.
    pub(crate) next: u64,
    /// Every event below this index has its outcome.
    pub(crate) floor: u64,
    pub(crate) base: Option<Base>,
}

/// Idempotent numbering from an event on: the event at `index` has `stamp`, and the
/// partition's later events follow it one each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Base {
    pub(crate) index: u64,
    pub(crate) stamp: Stamp,
}

impl Base {
    /// The numbers of the event at `index` (at or after the base's).
    pub(crate) fn stamp_of(&self, index: u64) -> Stamp {
        let step = (index.wrapping_sub(self.index) % (1 << 31)) as u32;
        Stamp {
            sequence: eventhubs_protocol::sequence::advance(self.stamp.sequence, step),
            ..self.stamp
        }
    }
}

/// A record, borrowed from the bytes it was read from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    /// The first record of each segment.
    Snapshot {
        /// Where the events go (the hub or broker), so that a spool is not replayed
        /// into another.
        destination: &'a str,
        /// Whether events were encoded for idempotent publishing.
        idempotent: bool,
        partitions: Vec<PartitionState>,
    },
    /// An accepted event, encoded as it is published.
    Event {
        partition: &'a str,
        index: u64,
        /// Routed by partition id (which the encoding does not say).
        pinned: bool,
        /// When it was accepted, in milliseconds since the Unix epoch.
        accepted_ms: i64,
        encoded: &'a [u8],
    },
    /// Events `first..first + count` of a partition have their outcome.
    Done {
        partition: &'a str,
        first: u64,
        count: u32,
    },
    /// The partition's events are numbered from here on as `base` says.
    Base { partition: &'a str, base: Base },
}

/// Appends records to a buffer.
pub(crate) struct Writer<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Writer<'a> {
    fn begin(out: &'a mut Vec<u8>, kind: u8) -> Self {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER]);
        out.push(kind);
        Self { out, start }
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn stamp(&mut self, s: Stamp) -> &mut Self {
        self.out.extend_from_slice(&s.producer_id.to_le_bytes());
        self.out.extend_from_slice(&s.epoch.to_le_bytes());
        self.out.extend_from_slice(&s.sequence.to_le_bytes());
        self
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.out.extend_from_slice(b);
        self
    }

    /// Fills in the header; returns the record's whole length.
    fn end(&mut self) -> usize {
        let body = &self.out[self.start + HEADER..];
        let len = body.len() as u32;
        let crc = crc32c::crc32c(body);
        self.out[self.start..self.start + 4].copy_from_slice(&len.to_le_bytes());
        self.out[self.start + 4..self.start + 8].copy_from_slice(&crc.to_le_bytes());
        self.out.len() - self.start
    }
}

/// Appends an event record; returns its length.
pub(crate) fn put_event(
    out: &mut Vec<u8>,
    partition: &str,
    index: u64,
    pinned: bool,
    accepted_ms: i64,
    encoded: &[u8],
) -> usize {
    Writer::begin(out, EVENT)
        .bytes(partition.as_bytes())
        .u64(index)
        .u8(u8::from(pinned))
        .u64(accepted_ms as u64)
        .bytes(encoded)
        .end()
}

/// The length of the event record [`put_event`] would write.
pub(crate) fn event_len(partition: &str, encoded: &[u8]) -> usize {
    HEADER + 1 + 4 + partition.len() + 8 + 1 + 8 + 4 + encoded.len()
}

pub(crate) fn put_done(out: &mut Vec<u8>, partition: &str, first: u64, count: u32) -> usize {
    Writer::begin(out, DONE)
        .bytes(partition.as_bytes())
        .u64(first)
        .u32(count)
        .end()
}

pub(crate) fn put_base(out: &mut Vec<u8>, partition: &str, base: Base) -> usize {
    Writer::begin(out, BASE)
        .bytes(partition.as_bytes())
        .u64(base.index)
        .stamp(base.stamp)
        .end()
}

pub(crate) fn put_snapshot<'p>(
    out: &mut Vec<u8>,
    destination: &str,
    idempotent: bool,
    partitions: impl ExactSizeIterator<Item = &'p PartitionState>,
) -> usize {
    let mut w = Writer::begin(out, SNAPSHOT);
    w.bytes(destination.as_bytes())
        .u8(u8::from(idempotent))
        .u32(partitions.len() as u32);
    for p in partitions {
        w.bytes(p.partition.as_bytes()).u64(p.next).u64(p.floor);
        match p.base {
            Some(base) => w.u8(1).u64(base.index).stamp(base.stamp),
            None => w.u8(0),
        };
    }
    w.end()
}

/// Why the bytes at an offset are not a record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bad {
    /// Fewer bytes are left than the record needs: a write cut short.
    Truncated,
    /// The length is impossible.
    Length(u32),
    /// The checksum does not match.
    Checksum,
    /// The checksum matches but the fields do not parse (a record of a newer
    /// version, say).
    Malformed(&'static str),
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bad::Truncated => f.write_str("the record is cut short"),
            Bad::Length(len) => write!(f, "impossible record length {len}"),
            Bad::Checksum => f.write_str("checksum (CRC32C) mismatch"),
            Bad::Malformed(why) => write!(f, "malformed record: {why}"),
        }
    }
}

/// Reads the record at the start of `bytes`; returns it and its whole length.
pub(crate) fn read(bytes: &[u8]) -> Result<(Record<'_>, usize), Bad> {
    if bytes.len() < HEADER {
        return Err(Bad::Truncated);
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if len == 0 || len as usize > MAX_BODY {
        return Err(Bad::Length(len));
    }
    let end = HEADER + len as usize;
    if bytes.len() < end {
        return Err(Bad::Truncated);
    }
    let body = &bytes[HEADER..end];
    if crc32c::crc32c(body) != crc {
        return Err(Bad::Checksum);
    }
    let record = parse(body).ok_or(Bad::Malformed("fields do not match the record type"))?;
    Ok((record, end))
}

struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
    fn stamp(&mut self) -> Option<Stamp> {
        let producer_id = i64::from_le_bytes(self.take(8)?.try_into().ok()?);
        let epoch = i16::from_le_bytes(self.take(2)?.try_into().ok()?);
        let sequence = i32::from_le_bytes(self.take(4)?.try_into().ok()?);
        Some(Stamp {
            sequence,
            producer_id,
            epoch,
        })
    }
    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn end(self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

fn parse(body: &[u8]) -> Option<Record<'_>> {
    let mut f = Fields(&body[1..]);
    let record = match body[0] {
        SNAPSHOT => {
            let destination = f.str()?;
            let idempotent = f.flag()?;
            let count = f.u32()?;
            let mut partitions = Vec::new();
            for _ in 0..count {
                let partition = f.str()?.to_owned();
                let next = f.u64()?;
                let floor = f.u64()?;
                let base = if f.flag()? {
                    let index = f.u64()?;
                    Some(Base {
                        index,
                        stamp: f.stamp()?,
                    })
                } else {
                    None
                };
                partitions.push(PartitionState {
                    partition,
                    next,
                    floor,
                    base,
                });
            }
            Record::Snapshot {
                destination,
                idempotent,
                partitions,
            }
        }
        EVENT => Record::Event {
            partition: f.str()?,
            index: f.u64()?,
            pinned: f.flag()?,
            accepted_ms: f.u64()? as i64,
            encoded: f.bytes()?,
        },
        DONE => Record::Done {
            partition: f.str()?,
            first: f.u64()?,
            count: f.u32()?,
        },
        BASE => {
            let partition = f.str()?;
            let index = f.u64()?;
            Record::Base {
                partition,
                base: Base {
                    index,
                    stamp: f.stamp()?,
                },
            }
        }
        _ => return None,
    };
    f.end()?;
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(sequence: i32) -> Stamp {
        Stamp {
            sequence,
            producer_id: 7,
            epoch: 2,
        }
    }

    #[test]
    fn every_record_reads_back_as_written() {
        let mut out = Vec::new();
        let state = PartitionState {
            partition: "3".into(),
            next: 10,
            floor: 4,
            base: Some(Base {
                index: 2,
                stamp: stamp(100),
            }),
        };
        let a = put_snapshot(&mut out, "sb://h/eh", true, [&state].into_iter());
        let b = put_event(&mut out, "3", 9, true, 1_700_000_000_000, b"encoded");
        assert_eq!(b, event_len("3", b"encoded"));
        let c = put_done(&mut out, "3", 4, 5);
        let d = put_base(
            &mut out,
            "3",
            Base {
                index: 9,
                stamp: stamp(i32::MAX),
            },
        );
        assert_eq!(out.len(), a + b + c + d);
        let (r, n) = read(&out).unwrap();
        assert_eq!(n, a);
        assert_eq!(
            r,
            Record::Snapshot {
                destination: "sb://h/eh",
                idempotent: true,
                partitions: vec![state]
            }
        );
        let (r, n) = read(&out[a..]).unwrap();
        assert_eq!(n, b);
        assert_eq!(
            r,
            Record::Event {
                partition: "3",
                index: 9,
                pinned: true,
                accepted_ms: 1_700_000_000_000,
                encoded: b"encoded"
            }
        );
        let (r, _) = read(&out[a + b..]).unwrap();
        assert_eq!(
            r,
            Record::Done {
                partition: "3",
                first: 4,
                count: 5
            }
        );
        let (r, _) = read(&out[a + b + c..]).unwrap();
        let Record::Base { base, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(base.stamp_of(9).sequence, i32::MAX);
        assert_eq!(
            base.stamp_of(11).sequence,
            1,
            "wraps to 0 as the service does"
        );
    }

    #[test]
    fn damage_is_told_apart() {
        let mut out = Vec::new();
        put_event(&mut out, "0", 1, false, 0, b"0123456789");
        assert_eq!(read(&out[..5]).unwrap_err(), Bad::Truncated);
        assert_eq!(read(&out[..out.len() - 1]).unwrap_err(), Bad::Truncated);
        for bit in [HEADER * 8 + 3, out.len() * 8 - 1] {
            let mut flipped = out.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(read(&flipped).unwrap_err(), Bad::Checksum, "bit {bit}");
        }
        let mut huge = out.clone();
        huge[3] = 0xff;
        assert!(matches!(read(&huge).unwrap_err(), Bad::Length(_)));
        assert!(matches!(read(&[0u8; 16]).unwrap_err(), Bad::Length(0)));
    }
}
