//! The events of a batch, kept once: as they are encoded for the wire.

use std::borrow::Borrow;
use std::sync::Arc;

use fe2o3_amqp::types::messaging::{Batch as Sections, Data};
use fe2o3_amqp::types::primitives::Binary;

use crate::codec::decode;
use crate::event::{EventData, Routing};
use crate::pool::BufferPool;

/// The events of a batch or of an outcome, in publishing order.
///
/// The producer keeps each event once, as the AMQP message it writes on the wire, and
/// lets go of the [`EventData`] it was given as soon as it is encoded. Reading an event
/// here decodes it back: the body, properties, ids, content type and routing are those
/// the event was enqueued with. Events routed by partition id come back with that id,
/// events routed by key with their key, the others with [`Routing::Auto`]. Nothing is
/// decoded unless it is read, so an application that only counts its outcomes' events
/// pays nothing for them, and pending events take half the memory they would if the
/// producer kept both forms.
///
/// ```
/// use streaming_producer::{Batch, EventData, Routing};
///
/// let mut batch = Batch::new("3");
/// batch.try_push(EventData::new("a").with_partition_key("k"), 1024).unwrap();
/// batch.try_push(EventData::new("b").with_property("n", 7i64), 1024).unwrap();
/// let events = batch.events();
/// assert_eq!(events.len(), 2);
/// assert_eq!(events.bodies().collect::<Vec<_>>(), [b"a".as_slice(), b"b"]);
/// let second = events.get(1).unwrap();
/// assert_eq!(second.properties()[0].0, "n");
/// assert_eq!(second.routing(), &Routing::Auto);
/// let all: Vec<EventData> = events.iter().collect();
/// assert_eq!(all[0], EventData::new("a").with_partition_key("k"));
/// ```
#[derive(Clone)]
pub struct Events {
    /// Each encoded event as a data section of the batched message, shared behind
    /// the `Arc` by every clone and written into each try's payload as it is.
    sections: Arc<Sections<Data>>,
    /// Indexes (ascending) of the encoded events routed by partition id.
    pinned: Vec<u32>,
    /// The partition the events are for (the batch's).
    partition: Arc<str>,
    /// Events that were never encoded (refused before batching), after the others.
    plain: Vec<EventData>,
    /// Where the encode buffers go once the last holder lets go of them.
    pool: Option<Arc<BufferPool>>,
    /// With a spool: where the events are in it, as runs of `(first index, count)`.
    spooled: Vec<(u64, u32)>,
    /// Accepted by an earlier producer on the spool and recovered from it.
    recovered: bool,
}

/// No sections: what a dropped or drained `Events` is left holding (a shared `Arc`,
/// so that costs no allocation).
fn no_sections() -> Arc<Sections<Data>> {
    static EMPTY: std::sync::LazyLock<Arc<Sections<Data>>> =
        std::sync::LazyLock::new(|| Arc::new(Sections::new(Vec::new())));
    EMPTY.clone()
}

impl Default for Events {
    fn default() -> Self {
        Self::empty("")
    }
}

impl Events {
    /// No events, for `partition` (sharing the empty sections, so no allocation).
    pub(crate) fn empty(partition: &str) -> Self {
        Self {
            sections: no_sections(),
            pinned: Vec::new(),
            partition: partition.into(),
            plain: Vec::new(),
            pool: None,
            spooled: Vec::new(),
            recovered: false,
        }
    }

    /// Events already encoded into `sections`, those at the `pinned` indexes
    /// (ascending) routed by partition id.
    pub(crate) fn from_encoded(partition: &str, sections: Vec<Data>, pinned: Vec<u32>) -> Self {
        Self {
            sections: Arc::new(Sections::new(sections)),
            pinned,
            partition: partition.into(),
            plain: Vec::new(),
            pool: None,
            spooled: Vec::new(),
            recovered: false,
        }
    }

    /// Marks where the events are in the spool, and whether they were recovered from
    /// it.
    pub(crate) fn spooled_at(mut self, spans: Vec<(u64, u32)>, recovered: bool) -> Self {
        self.spooled = spans;
        self.recovered = recovered;
        self
    }

    /// Where the events are in the spool (none without one).
    pub(crate) fn spooled(&self) -> &[(u64, u32)] {
        &self.spooled
    }

    /// Whether the events were recovered from the spool.
    pub(crate) fn is_recovered(&self) -> bool {
        self.recovered
    }

    /// The partition the events are for.
    pub(crate) fn partition(&self) -> &str {
        &self.partition
    }

    /// The partition the events are for, shared (no copy).
    pub(crate) fn partition_shared(&self) -> Arc<str> {
        self.partition.clone()
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.sections.len() + self.plain.len()
    }

    /// Whether there is no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th event, decoded.
    pub fn get(&self, i: usize) -> Option<EventData> {
        match self.sections.get(i) {
            Some(Data(encoded)) => Some(self.decode(i, encoded)),
            None => self.plain.get(i - self.sections.len()).cloned(),
        }
    }

    /// The first event, decoded, as [`get(0)`](Self::get); `None` if there is none.
    ///
    /// ```
    /// use streaming_producer::{Batch, EventData};
    ///
    /// let mut batch = Batch::new("0");
    /// assert_eq!(batch.events().first(), None);
    /// batch.try_push(EventData::new("a"), 1024).unwrap();
    /// batch.try_push(EventData::new("b"), 1024).unwrap();
    /// assert_eq!(batch.events().first(), Some(EventData::new("a")));
    /// ```
    pub fn first(&self) -> Option<EventData> {
        self.get(0)
    }

    /// The last event, decoded, as [`get(len() - 1)`](Self::get); `None` if there is
    /// none.
    ///
    /// ```
    /// use streaming_producer::{Batch, EventData};
    ///
    /// let mut batch = Batch::new("0");
    /// assert_eq!(batch.events().last(), None);
    /// batch.try_push(EventData::new("a"), 1024).unwrap();
    /// batch.try_push(EventData::new("b"), 1024).unwrap();
    /// assert_eq!(batch.events().last(), Some(EventData::new("b")));
    /// ```
    pub fn last(&self) -> Option<EventData> {
        self.get(self.len().checked_sub(1)?)
    }

    /// The events, decoded one at a time.
    pub fn iter(&self) -> Iter<'_> {
        Decoding {
            events: self,
            next: 0,
        }
    }

    /// The bodies, borrowed: nothing is decoded or copied.
    pub fn bodies(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        let encoded = self
            .sections
            .iter()
            .map(|Data(bytes)| decode::body(bytes).unwrap_or(bytes.as_slice()));
        let plain = self.plain.iter().map(|e| e.body().as_ref());
        Bodies {
            inner: encoded.chain(plain),
            left: self.len(),
        }
    }

    /// All the events, decoded.
    pub fn to_vec(&self) -> Vec<EventData> {
        self.iter().collect()
    }

    fn decode(&self, i: usize, encoded: &[u8]) -> EventData {
        let event = decode::event(encoded).unwrap_or_else(|| {
            // Only this crate's encoder writes sections, so this does not happen; the
            // bytes are kept rather than lost if it ever did.
            EventData::new(encoded.to_vec())
        });
        if self.pinned.binary_search(&(i as u32)).is_ok() {
            event.with_routing(Routing::PartitionId(self.partition.to_string()))
        } else {
            event
        }
    }

    pub(crate) fn sections(&self) -> &Arc<Sections<Data>> {
        &self.sections
    }

    /// Adds an encoded event (the data section the caller made of it).
    pub(crate) fn push_encoded(&mut self, encoded: Vec<u8>, pinned: bool) {
        if pinned {
            self.pinned.push(self.sections.len() as u32);
        }
        Arc::make_mut(&mut self.sections).push(Data(Binary::from(encoded)));
    }

    /// Moves `later`'s events behind these (both for the same partition).
    pub(crate) fn append(&mut self, mut later: Events) {
        let offset = self.sections.len() as u32;
        self.pinned.extend(later.pinned.iter().map(|i| i + offset));
        let sections = std::mem::replace(&mut later.sections, no_sections());
        let sections = Arc::try_unwrap(sections).unwrap_or_else(|shared| (*shared).clone());
        Arc::make_mut(&mut self.sections).extend(sections.into_inner());
        self.plain.append(&mut later.plain);
        for (first, count) in std::mem::take(&mut later.spooled) {
            push_span(&mut self.spooled, first, count);
        }
    }

    /// Sends the encode buffers to `pool` when the last holder of these events drops
    /// them.
    pub(crate) fn recycle_into(&mut self, pool: &Arc<BufferPool>) {
        self.pool = Some(pool.clone());
    }
}

/// Adds `count` events from index `first` to `spans`, joining the last run when they
/// follow it.
pub(crate) fn push_span(spans: &mut Vec<(u64, u32)>, first: u64, count: u32) {
    match spans.last_mut() {
        Some((start, n)) if *start + u64::from(*n) == first => *n += count,
        _ => spans.push((first, count)),
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        let sections = std::mem::replace(&mut self.sections, no_sections());
        if let Ok(sections) = Arc::try_unwrap(sections) {
            pool.put(
                sections
                    .into_inner()
                    .into_iter()
                    .map(|Data(bytes)| bytes.into_vec())
                    .collect(),
            );
        }
    }
}

impl From<Vec<EventData>> for Events {
    /// Events kept as they are, not encoded.
    fn from(plain: Vec<EventData>) -> Self {
        let mut new = Self::default();
        new.plain = plain;
        new
    }
}

impl PartialEq for Events {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// An iterator over [`Events`], borrowed ([`Iter`]) or owned ([`IntoIter`]), decoding
/// each event as it comes.
#[derive(Debug)]
pub struct Decoding<E> {
    events: E,
    next: usize,
}

/// An iterator over borrowed [`Events`].
pub type Iter<'a> = Decoding<&'a Events>;

/// An iterator that owns its [`Events`].
pub type IntoIter = Decoding<Events>;

impl<E: Borrow<Events>> Iterator for Decoding<E> {
    type Item = EventData;

    fn next(&mut self) -> Option<EventData> {
        let event = self.events.borrow().get(self.next)?;
        self.next += 1;
        Some(event)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.events.borrow().len() - self.next;
        (left, Some(left))
    }
}

impl<E: Borrow<Events>> ExactSizeIterator for Decoding<E> {}

impl<'a> IntoIterator for &'a Events {
    type Item = EventData;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Events {
    type Item = EventData;
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        Decoding {
            events: self,
            next: 0,
        }
    }
}

struct Bodies<I> {
    inner: I,
    left: usize,
}

impl<'a, I: Iterator<Item = &'a [u8]>> Iterator for Bodies<I> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let body = self.inner.next()?;
        self.left -= 1;
        Some(body)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<'a, I: Iterator<Item = &'a [u8]>> ExactSizeIterator for Bodies<I> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Batch;

    fn encoded(events: Vec<EventData>) -> Events {
        let mut batch = Batch::new("2");
        for event in events {
            batch.try_push(event, 1 << 20).unwrap();
        }
        batch.into_events()
    }

    #[test]
    fn first_and_last_of_no_events_are_none() {
        assert_eq!(Events::default().first(), None);
        assert_eq!(Events::default().last(), None);
        assert_eq!(encoded(Vec::new()).first(), None);
        assert_eq!(encoded(Vec::new()).last(), None);
    }

    #[test]
    fn first_and_last_of_one_event_are_that_event() {
        let events = encoded(vec![EventData::new("only")]);
        assert_eq!(events.first(), Some(EventData::new("only")));
        assert_eq!(events.last(), Some(EventData::new("only")));
    }

    #[test]
    fn first_and_last_are_decoded_as_get_decodes_them() {
        let events = encoded(vec![
            EventData::new("a").with_partition_id("2"),
            EventData::new("b"),
            EventData::new("c").with_partition_key("k"),
        ]);
        assert_eq!(events.first(), events.get(0));
        assert_eq!(events.last(), events.get(2));
        let first = events.first().unwrap();
        assert_eq!(first.body().as_ref(), b"a");
        assert_eq!(first.routing(), &Routing::PartitionId("2".into()));
        assert_eq!(
            events.last(),
            Some(EventData::new("c").with_partition_key("k"))
        );
    }

    #[test]
    fn the_last_of_encoded_and_plain_events_is_the_last_plain_one() {
        let mut events = encoded(vec![EventData::new("encoded")]);
        events.append(Events::from(vec![
            EventData::new("plain 1"),
            EventData::new("plain 2"),
        ]));
        assert_eq!(events.first(), Some(EventData::new("encoded")));
        assert_eq!(events.last(), Some(EventData::new("plain 2")));
        let plain = Events::from(vec![EventData::new("x"), EventData::new("y")]);
        assert_eq!(plain.first(), Some(EventData::new("x")));
        assert_eq!(plain.last(), Some(EventData::new("y")));
    }
}
