//! The spool's records: how each is laid out on disk and read back.
//!
//! A segment file starts with [`MAGIC`], then holds records framed as
//! [`eventhubs_protocol::record`] says (length, CRC32C, then a type byte and fields).

use eventhubs_protocol::record::{self, Fields, RecordWriter};
pub(crate) use eventhubs_protocol::record::{Bad, HEADER};
use streaming_producer_layers::batch::Stamp;

/// The first bytes of every segment file.
pub(crate) const MAGIC: &[u8; 8] = b"SPOOL01\n";

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

/// Numbers of an idempotent batch, as records carry them.
trait StampField {
    fn stamp(&mut self, s: Stamp) -> &mut Self;
}

impl StampField for RecordWriter<'_> {
    fn stamp(&mut self, s: Stamp) -> &mut Self {
        self.i64(s.producer_id).i16(s.epoch).i32(s.sequence)
    }
}

fn read_stamp(f: &mut Fields<'_>) -> Option<Stamp> {
    Some(Stamp {
        producer_id: f.i64()?,
        epoch: f.i16()?,
        sequence: f.i32()?,
    })
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
    RecordWriter::begin(out, EVENT)
        .str(partition)
        .u64(index)
        .flag(pinned)
        .u64(accepted_ms as u64)
        .bytes(encoded)
        .end()
}

/// The length of the event record [`put_event`] would write.
pub(crate) fn event_len(partition: &str, encoded: &[u8]) -> usize {
    HEADER + 1 + 4 + partition.len() + 8 + 1 + 8 + 4 + encoded.len()
}

pub(crate) fn put_done(out: &mut Vec<u8>, partition: &str, first: u64, count: u32) -> usize {
    RecordWriter::begin(out, DONE)
        .str(partition)
        .u64(first)
        .u32(count)
        .end()
}

pub(crate) fn put_base(out: &mut Vec<u8>, partition: &str, base: Base) -> usize {
    RecordWriter::begin(out, BASE)
        .str(partition)
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
    let mut w = RecordWriter::begin(out, SNAPSHOT);
    w.str(destination)
        .flag(idempotent)
        .u32(partitions.len() as u32);
    for p in partitions {
        w.str(&p.partition).u64(p.next).u64(p.floor);
        match p.base {
            Some(base) => w.u8(1).u64(base.index).stamp(base.stamp),
            None => w.u8(0),
        };
    }
    w.end()
}

/// Reads the record at the start of `bytes`; returns it and its whole length.
pub(crate) fn read(bytes: &[u8]) -> Result<(Record<'_>, usize), Bad> {
    let (kind, fields, len) = record::split(bytes, MAX_BODY)?;
    let record =
        parse(kind, fields).ok_or(Bad::Malformed("fields do not match the record type"))?;
    Ok((record, len))
}

/// The record of type `kind` with these fields, if they parse as its type says.
pub(crate) fn parse(kind: u8, mut f: Fields<'_>) -> Option<Record<'_>> {
    let record = match kind {
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
                        stamp: read_stamp(&mut f)?,
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
                    stamp: read_stamp(&mut f)?,
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
