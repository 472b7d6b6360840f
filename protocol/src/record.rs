//! Checksummed records for append-only files: the producer's spool and the emulator's
//! data directory share this framing (the `records` feature).
//!
//! A record is `[length: u32 LE][CRC32C of the body: u32 LE][body]`, the body a type
//! byte and its fields: integers little-endian, strings and byte strings prefixed with
//! their length as a `u32`. CRC32C (Castagnoli) is the checksum iSCSI, ext4's metadata
//! and Kafka's record batches use; the `crc32c` crate computes it with the CPU's
//! instruction where there is one.
//!
//! ```
//! use eventhubs_protocol::record::{self, RecordWriter};
//!
//! let mut file = Vec::new();
//! let len = RecordWriter::begin(&mut file, 7).str("orders").u64(42).end();
//! assert_eq!(len, file.len());
//!
//! let (kind, mut fields, read) = record::split(&file, 1 << 20).unwrap();
//! assert_eq!((kind, read), (7, len));
//! assert_eq!(fields.str(), Some("orders"));
//! assert_eq!(fields.u64(), Some(42));
//! assert_eq!(fields.end(), Some(()));
//!
//! // A flipped bit is caught; a record cut short is told apart from damage.
//! file[10] ^= 1;
//! assert_eq!(record::split(&file, 1 << 20).unwrap_err(), record::Bad::Checksum);
//! assert_eq!(record::split(&file[..5], 1 << 20).unwrap_err(), record::Bad::Truncated);
//! ```

/// A record's header: its body's length and checksum.
pub const HEADER: usize = 8;

/// Appends one record to a buffer: [`begin`](Self::begin), the fields, then
/// [`end`](Self::end), which fills in the header.
#[derive(Debug)]
pub struct RecordWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> RecordWriter<'a> {
    /// Starts a record of type `kind` at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>, kind: u8) -> Self {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER]);
        out.push(kind);
        Self { out, start }
    }

    /// A byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }

    /// A flag, as one byte 0 or 1.
    pub fn flag(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// A `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// An `i16`.
    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// An `i32`.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// An `i64`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A byte string, prefixed with its length.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.out.extend_from_slice(b);
        self
    }

    /// A string, prefixed with its length in bytes.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Fills in the header; returns the record's whole length.
    pub fn end(&mut self) -> usize {
        let body = &self.out[self.start + HEADER..];
        let len = body.len() as u32;
        let crc = crc32c::crc32c(body);
        self.out[self.start..self.start + 4].copy_from_slice(&len.to_le_bytes());
        self.out[self.start + 4..self.start + 8].copy_from_slice(&crc.to_le_bytes());
        self.out.len() - self.start
    }
}

/// Reads a record's fields in the order they were written; each read is `None` when
/// the bytes left do not hold the field.
#[derive(Debug)]
pub struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// A byte.
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// A flag; a byte other than 0 or 1 is no flag.
    pub fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// An `i16`.
    pub fn i16(&mut self) -> Option<i16> {
        self.array().map(i16::from_le_bytes)
    }

    /// An `i32`.
    pub fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_le_bytes)
    }

    /// An `i64`.
    pub fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }

    /// A byte string.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A string; bytes that are not UTF-8 are no string.
    pub fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// `Some` when every byte was read: a record with bytes left over is not the
    /// record its type says.
    pub fn end(self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

/// Why the bytes at an offset are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
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

impl std::error::Error for Bad {}

/// Checks the record at the start of `bytes`, whose body may be at most `max_body`
/// bytes; returns its type, its fields and its whole length.
pub fn split(bytes: &[u8], max_body: usize) -> Result<(u8, Fields<'_>, usize), Bad> {
    let Some((len, crc)) = bytes.get(..HEADER).map(|h| (u32_at(h, 0), u32_at(h, 4))) else {
        return Err(Bad::Truncated);
    };
    if len == 0 || len as usize > max_body {
        return Err(Bad::Length(len));
    }
    let end = HEADER + len as usize;
    let body = bytes.get(HEADER..end).ok_or(Bad::Truncated)?;
    if crc32c::crc32c(body) != crc {
        return Err(Bad::Checksum);
    }
    Ok((body[0], Fields(&body[1..]), end))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Whether `rest`, the bytes from a record that [`split`] refused (for `bad`) to the
/// end of the file, is a write a crash interrupted rather than damage: a record cut
/// short, zeros where the write had not reached, or a last record whose bytes did not
/// all reach the disk. Only the end of the newest file can be torn; anything else is
/// damage to report.
pub fn torn(rest: &[u8], bad: &Bad) -> bool {
    match bad {
        Bad::Truncated => true,
        _ => {
            rest.iter().all(|b| *b == 0)
                || (rest.len() >= 4 && HEADER + u32_at(rest, 0) as usize == rest.len())
        }
    }
}

/// Where [`read_all`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// At the end of the bytes, after a whole record.
    Whole,
    /// At `at`, where a write a crash interrupted begins (see [`torn`]): the bytes
    /// from there can be cut, if the file is the newest one written to.
    Torn {
        /// The offset of the torn record.
        at: usize,
        /// What is wrong with it.
        bad: Bad,
    },
    /// At `at`, where the bytes are damaged and whole records follow.
    Damaged {
        /// The offset of the damaged record.
        at: usize,
        /// What is wrong with it.
        bad: Bad,
    },
}

/// Reads the records of `bytes` from offset `start` to the end, handing each one's type
/// and fields to `apply`, which returns `None` when they do not parse (a
/// [`Bad::Malformed`] record). Returns where it stopped and why.
pub fn read_all(
    bytes: &[u8],
    start: usize,
    max_body: usize,
    mut apply: impl FnMut(u8, Fields<'_>) -> Option<()>,
) -> End {
    let mut at = start;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let read = split(rest, max_body).and_then(|(kind, fields, len)| {
            apply(kind, fields)
                .map(|()| len)
                .ok_or(Bad::Malformed("fields do not match the record type"))
        });
        match read {
            Ok(len) => at += len,
            Err(bad) if torn(rest, &bad) => return End::Torn { at, bad },
            Err(bad) => return End::Damaged { at, bad },
        }
    }
    End::Whole
}

/// Why [`lock_file`] could not take a lock.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; the id it wrote, if it could be read.
    Held {
        /// The process id the holder wrote into the file.
        holder: Option<String>,
    },
    /// The file could not be opened or locked.
    Io(std::io::Error),
}

/// Takes an exclusive lock on the file at `path` (created if missing) for as long as
/// the returned file is open, and writes this process's id into it so that a refused
/// process can say who holds it. The operating system releases the lock when the
/// process ends, however it ends.
pub fn lock_file(path: &std::path::Path) -> Result<std::fs::File, LockError> {
    use std::io::{Read, Seek, Write};
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(LockError::Io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = Some(holder.trim().to_owned()).filter(|h| !h.is_empty());
            return Err(LockError::Held { holder });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
    }
    // Who holds it, for the message of whoever is refused (the lock is what counts).
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_reads_back_as_written() {
        let mut out = vec![9, 9];
        let len = RecordWriter::begin(&mut out, 3)
            .u8(1)
            .flag(true)
            .u32(u32::MAX)
            .u64(7)
            .i16(-2)
            .i32(i32::MIN)
            .i64(-1_700_000_000_000)
            .bytes(b"\x00\xff")
            .str("$Default")
            .end();
        assert_eq!(len, out.len() - 2);
        let (kind, mut f, n) = split(&out[2..], 1 << 20).unwrap();
        assert_eq!((kind, n), (3, len));
        assert_eq!(f.u8(), Some(1));
        assert_eq!(f.flag(), Some(true));
        assert_eq!(f.u32(), Some(u32::MAX));
        assert_eq!(f.u64(), Some(7));
        assert_eq!(f.i16(), Some(-2));
        assert_eq!(f.i32(), Some(i32::MIN));
        assert_eq!(f.i64(), Some(-1_700_000_000_000));
        assert_eq!(f.bytes(), Some(&b"\x00\xff"[..]));
        assert_eq!(f.str(), Some("$Default"));
        assert_eq!(f.u8(), None, "nothing is left");
        assert_eq!(f.end(), Some(()));
    }

    #[test]
    fn damage_is_told_apart_from_a_torn_write() {
        let mut out = Vec::new();
        RecordWriter::begin(&mut out, 1).bytes(b"0123456789").end();
        for cut in [5, out.len() - 1] {
            let bad = split(&out[..cut], 64).unwrap_err();
            assert_eq!(bad, Bad::Truncated);
            assert!(torn(&out[..cut], &bad));
        }
        for bit in [HEADER * 8 + 3, out.len() * 8 - 1] {
            let mut flipped = out.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let bad = split(&flipped, 64).unwrap_err();
            assert_eq!(bad, Bad::Checksum, "bit {bit}");
            assert!(torn(&flipped, &bad), "the last record, whole in length");
            let mut followed = flipped.clone();
            followed.extend_from_slice(&out);
            assert!(!torn(&followed, &bad), "a whole record follows: damage");
        }
        let mut huge = out.clone();
        huge[3] = 0xff;
        assert!(matches!(split(&huge, 64).unwrap_err(), Bad::Length(_)));
        let zeros = [0u8; 16];
        let bad = split(&zeros, 64).unwrap_err();
        assert_eq!(bad, Bad::Length(0));
        assert!(torn(&zeros, &bad));
    }

    #[test]
    fn reading_all_records_stops_at_a_torn_or_damaged_one() {
        let mut file = b"HEAD".to_vec();
        let first = RecordWriter::begin(&mut file, 1).u64(1).end();
        RecordWriter::begin(&mut file, 1).u64(2).end();
        let read = |bytes: &[u8]| {
            let mut seen = Vec::new();
            let end = read_all(bytes, 4, 64, |kind, mut f| {
                seen.push(f.u64()?);
                (kind == 1).then_some(())?;
                f.end()
            });
            (end, seen)
        };
        assert_eq!(read(&file), (End::Whole, vec![1, 2]));
        let cut = &file[..file.len() - 3];
        assert_eq!(
            read(cut),
            (
                End::Torn {
                    at: 4 + first,
                    bad: Bad::Truncated
                },
                vec![1]
            )
        );
        let mut damaged = file.clone();
        damaged[4 + HEADER + 2] ^= 1;
        assert_eq!(
            read(&damaged).0,
            End::Damaged {
                at: 4,
                bad: Bad::Checksum
            }
        );
        let mut other = file.clone();
        RecordWriter::begin(&mut other, 9).u64(3).end();
        assert!(matches!(
            read(&other).0,
            End::Torn {
                bad: Bad::Malformed(_),
                ..
            }
        ));
    }

    #[test]
    fn a_lock_is_held_until_its_file_is_closed() {
        let path = std::env::temp_dir().join(format!("record-lock-{}", std::process::id()));
        let held = lock_file(&path).unwrap();
        match lock_file(&path) {
            Err(LockError::Held { holder }) => {
                assert_eq!(holder, Some(std::process::id().to_string()))
            }
            other => panic!("{other:?}"),
        }
        drop(held);
        drop(lock_file(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_field_past_the_end_is_none() {
        let mut out = Vec::new();
        RecordWriter::begin(&mut out, 2).u32(100).end();
        let (_, mut f, _) = split(&out, 64).unwrap();
        assert_eq!(f.bytes(), None, "declares 100 bytes, has none");
        let mut out = Vec::new();
        RecordWriter::begin(&mut out, 2).u8(2).end();
        let (_, mut f, _) = split(&out, 64).unwrap();
        assert_eq!(f.flag(), None);
    }
}
