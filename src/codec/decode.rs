//! Reading back an event this crate encoded (see [`super::encode`]): the producer keeps
//! only the encoded form of a pending event and decodes it when the application reads
//! it from a batch or an outcome.
//!
//! The decoder reads the encoder's shapes only (the constructors it writes, AMQP 1.0
//! part 1 section 1.6); anything else makes it give up rather than guess.

use bytes::Bytes;

use super::PARTITION_KEY;
use crate::event::{EventData, PropertyValue};

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_be_bytes(self.array()?) as usize)
    }

    /// A variable-width value's bytes, after its constructor: one length byte for
    /// `small`, four for `large`.
    fn variable(&mut self, constructor: u8, small: u8, large: u8) -> Option<&'a [u8]> {
        let len = match constructor {
            c if c == small => self.u8()? as usize,
            c if c == large => self.u32()?,
            _ => return None,
        };
        self.take(len)
    }

    fn string(&mut self) -> Option<String> {
        let c = self.u8()?;
        self.string_after(c)
    }

    /// A string's bytes after its constructor `c`.
    fn string_after(&mut self, c: u8) -> Option<String> {
        String::from_utf8(self.variable(c, 0xa1, 0xb1)?.to_vec()).ok()
    }

    fn symbol(&mut self) -> Option<&'a [u8]> {
        let c = self.u8()?;
        self.variable(c, 0xa3, 0xb3)
    }

    /// A string, or `None` for null (`Some(None)`).
    fn nullable_string(&mut self) -> Option<Option<String>> {
        if self.bytes.first() == Some(&0x40) {
            self.u8()?;
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A list's or map's element count, after its constructor (`small` or `large`).
    fn count(&mut self, small: u8, large: u8) -> Option<usize> {
        match self.u8()? {
            c if c == small => {
                self.u8()?;
                Some(self.u8()? as usize)
            }
            c if c == large => {
                self.u32()?;
                self.u32()
            }
            _ => None,
        }
    }

    fn value(&mut self) -> Option<PropertyValue> {
        let c = self.u8()?;
        Some(match c {
            0xa1 | 0xb1 => PropertyValue::String(self.string_after(c)?),
            0x81 => PropertyValue::Long(i64::from_be_bytes(self.array()?)),
            0x71 => PropertyValue::Int(i32::from_be_bytes(self.array()?)),
            0x82 => PropertyValue::Double(f64::from_be_bytes(self.array()?)),
            0x41 => PropertyValue::Bool(true),
            0x42 => PropertyValue::Bool(false),
            0xa0 | 0xb0 => {
                PropertyValue::Binary(Bytes::copy_from_slice(self.variable(c, 0xa0, 0xb0)?))
            }
            0x83 => PropertyValue::Timestamp(i64::from_be_bytes(self.array()?)),
            _ => return None,
        })
    }

    /// Skips a message annotation's value: the idempotent annotations' fixed-width
    /// numbers.
    fn skip_annotation(&mut self) -> Option<()> {
        let width = match self.u8()? {
            0x61 => 2,
            0x71 => 4,
            0x81 => 8,
            _ => return None,
        };
        self.take(width).map(drop)
    }

    /// A section's descriptor: `0x00 0x53 code`.
    fn section(&mut self) -> Option<u8> {
        match self.array()? {
            [0x00, 0x53, code] => Some(code),
            _ => None,
        }
    }
}

/// The body of an encoded event, borrowed.
pub(crate) fn body(encoded: &[u8]) -> Option<&[u8]> {
    let mut r = Reader { bytes: encoded };
    loop {
        let code = r.section()?;
        if code == 0x75 {
            let c = r.u8()?;
            return r.variable(c, 0xa0, 0xb0);
        }
        // Annotations, properties and application properties are a map or a list:
        // skip them whole by their size.
        let len = match r.u8()? {
            0xc0 | 0xc1 => r.u8()? as usize,
            0xd0 | 0xd1 => r.u32()?,
            _ => return None,
        };
        r.take(len)?;
    }
}

/// The event `encoded` holds, routed by its partition key if it has one and
/// automatically otherwise.
pub(crate) fn event(encoded: &[u8]) -> Option<EventData> {
    let mut r = Reader { bytes: encoded };
    let mut code = r.section()?;
    let mut key = None;
    if code == 0x72 {
        for _ in 0..r.count(0xc1, 0xd1)? / 2 {
            if r.symbol()? == PARTITION_KEY {
                key = Some(r.string()?);
            } else {
                r.skip_annotation()?;
            }
        }
        code = r.section()?;
    }
    let mut ids = (None, None, None);
    if code == 0x73 {
        let fields = r.count(0xc0, 0xd0)?;
        ids.0 = r.nullable_string()?;
        if fields > 1 {
            for _ in 0..4 {
                (r.u8()? == 0x40).then_some(())?;
            }
            ids.1 = r.nullable_string()?;
        }
        if fields > 6 {
            ids.2 = Some(String::from_utf8(r.symbol()?.to_vec()).ok()?);
        }
        code = r.section()?;
    }
    let mut properties = Vec::new();
    if code == 0x74 {
        for _ in 0..r.count(0xc1, 0xd1)? / 2 {
            properties.push((r.string()?, r.value()?));
        }
        code = r.section()?;
    }
    (code == 0x75).then_some(())?;
    let c = r.u8()?;
    let body = r.variable(c, 0xa0, 0xb0)?;
    if !r.bytes.is_empty() {
        return None;
    }
    let mut event = EventData::new(Bytes::copy_from_slice(body));
    if let Some(key) = key {
        event = event.with_partition_key(key);
    }
    let (message_id, correlation_id, content_type) = ids;
    if let Some(id) = message_id {
        event = event.with_message_id(id);
    }
    if let Some(id) = correlation_id {
        event = event.with_correlation_id(id);
    }
    if let Some(ct) = content_type {
        event = event.with_content_type(ct);
    }
    for (name, value) in properties {
        event = event.with_property(name, value);
    }
    Some(event)
}
