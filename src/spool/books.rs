//! What the spool keeps in memory of its log: each partition's event indexes and
//! numbering, and each segment's size and events still waiting for an outcome, so
//! that segments are deleted (oldest first) once all their events are done.

use std::collections::{BTreeMap, HashMap, VecDeque};

use streaming_producer_layers::batch::Stamp;

use super::record::{self, Base, PartitionState};

/// A segment of the log.
#[derive(Debug)]
pub(super) struct Segment {
    pub(super) number: u64,
    /// Its length on disk (once written).
    pub(super) bytes: u64,
    /// Its events without an outcome yet.
    pub(super) live: u64,
    /// Where its first record is in the log (as [`Books::appended`] counts).
    pub(super) start: u64,
}

/// A partition's events in the log.
#[derive(Debug, Default)]
pub(super) struct Part {
    /// The index its next event gets.
    pub(super) next: u64,
    /// Every event below this index has its outcome.
    pub(super) floor: u64,
    /// Events above the floor with their outcome (`start -> end`, disjoint): outcomes
    /// may come out of order with more than one send in flight.
    pub(super) done: BTreeMap<u64, u64>,
    /// Which segment holds which events: each run starts at an index and lasts until
    /// the next run's (or `next`).
    pub(super) runs: VecDeque<(u64, u64)>,
    pub(super) base: Option<Base>,
    /// Its events in the backlog (in the log, not in memory).
    pub(super) backlog: u64,
    /// Its events below this index were cleared while in the backlog.
    pub(super) cleared: u64,
    /// With idempotent retries, after a restart: the producer group the service
    /// resumed and the last sequence number it stored for it.
    pub(super) resumed: Option<(i64, i32)>,
}

impl Part {
    /// Whether the event at `index` has its outcome.
    pub(super) fn is_done(&self, index: u64) -> bool {
        index < self.floor
            || self
                .done
                .range(..=index)
                .next_back()
                .is_some_and(|(_, &end)| index < end)
    }

    pub(super) fn state(&self, partition: &str) -> PartitionState {
        PartitionState {
            partition: partition.to_owned(),
            next: self.next,
            floor: self.floor,
            base: self.base,
        }
    }

    /// Records that `first..end` have their outcome; calls `live` with each segment
    /// and how many of its events that settles.
    fn settle(&mut self, first: u64, end: u64, mut live: impl FnMut(u64, u64)) {
        for (i, &(start, segment)) in self.runs.iter().enumerate() {
            let stop = self.runs.get(i + 1).map_or(self.next, |r| r.0);
            let (a, b) = (first.max(start), end.min(stop));
            if a < b {
                live(segment, b - a);
            }
        }
        // Joins the range to its neighbours in `done`, then moves the floor.
        let (mut a, mut b) = (first, end);
        if let Some((&s, &e)) = self.done.range(..=a).next_back() {
            if e >= a {
                a = s;
                b = b.max(e);
                self.done.remove(&s);
            }
        }
        while let Some((&s, &e)) = self.done.range(a..=b).next() {
            b = b.max(e);
            self.done.remove(&s);
        }
        if a <= self.floor {
            self.floor = self.floor.max(b);
        } else {
            self.done.insert(a, b);
        }
        while self.runs.len() > 1 && self.runs[1].0 <= self.floor {
            self.runs.pop_front();
        }
    }
}

/// The spool's books.
#[derive(Debug)]
pub(super) struct Books {
    pub(super) destination: String,
    pub(super) idempotent: bool,
    pub(super) parts: HashMap<String, Part>,
    /// Oldest first; the last is the one being appended to.
    pub(super) segments: VecDeque<Segment>,
    /// A segment is closed for appends once it reaches this length.
    pub(super) segment_bytes: u64,
    /// The segments' lengths, in total.
    pub(super) total: u64,
    /// Bytes appended to the log since it was opened: what a wait for durability
    /// waits for.
    pub(super) appended: u64,
    /// Records for the writer, by segment.
    pub(super) chunks: VecDeque<Chunk>,
    /// Segments for the writer to delete.
    pub(super) delete: Vec<u64>,
    /// Something waits to be made durable now (a numbering change).
    pub(super) urgent: bool,
    /// Events in the log and not in memory (accepted while memory was full, or left
    /// by an earlier producer), waiting to be loaded.
    pub(super) backlog: u64,
    /// Where the loader goes on reading the log, while there is a backlog.
    pub(super) cursor: Option<u64>,
    /// Where this producer's own appends begin: records before it were recovered.
    pub(super) recovered_end: u64,
    /// The writer waits for work (so an append must wake it).
    pub(super) writer_idle: bool,
    pub(super) closing: bool,
    /// Why the log can no longer be written, once it cannot.
    pub(super) broken: Option<std::sync::Arc<str>>,
}

/// Records for one segment, and where the log stands after them.
#[derive(Debug)]
pub(super) struct Chunk {
    pub(super) segment: u64,
    pub(super) bytes: Vec<u8>,
    /// `Books::appended` after the last of them.
    pub(super) end: u64,
}

impl Books {
    pub(super) fn active(&self) -> u64 {
        self.segments
            .back()
            .expect("a segment is always open")
            .number
    }

    /// Bytes of the segments still on disk (or about to be).
    pub(super) fn bytes(&self) -> u64 {
        self.total
    }

    /// The buffer to append the next record of `len` bytes to: a new segment (which
    /// starts with a snapshot of the partitions) when the open one is full.
    pub(super) fn room(&mut self, len: usize) -> &mut Vec<u8> {
        let open = self.segments.back().expect("a segment is always open");
        if open.bytes + len as u64 > self.segment_bytes && open.bytes > record::MAGIC.len() as u64 {
            let number = open.number + 1;
            self.start_segment(number);
        }
        self.buffer()
    }

    /// Opens segment `number`, its first record a snapshot.
    pub(super) fn start_segment(&mut self, number: u64) {
        self.segments.push_back(Segment {
            number,
            bytes: record::MAGIC.len() as u64,
            live: 0,
            start: self.appended,
        });
        self.total += record::MAGIC.len() as u64;
        let mut parts: Vec<_> = self.parts.iter().map(|(id, p)| p.state(id)).collect();
        parts.sort_by(|a, b| a.partition.cmp(&b.partition));
        let mut snapshot = Vec::new();
        let len = record::put_snapshot(
            &mut snapshot,
            &self.destination,
            self.idempotent,
            parts.iter(),
        );
        self.buffer().extend_from_slice(&snapshot);
        self.wrote(len);
    }

    /// The buffer of the open segment's records.
    pub(super) fn buffer(&mut self) -> &mut Vec<u8> {
        let active = self.active();
        if self.chunks.back().is_none_or(|c| c.segment != active) {
            self.chunks.push_back(Chunk {
                segment: active,
                bytes: Vec::new(),
                end: self.appended,
            });
        }
        &mut self.chunks.back_mut().expect("pushed above").bytes
    }

    /// Counts a record of `len` bytes just put in the open segment's buffer.
    pub(super) fn wrote(&mut self, len: usize) {
        self.appended += len as u64;
        self.total += len as u64;
        self.segments.back_mut().expect("open").bytes += len as u64;
        self.chunks.back_mut().expect("written to").end = self.appended;
    }

    /// An event of `partition` goes into the open segment (into the backlog with
    /// `spill`): its index.
    pub(super) fn add_event(&mut self, partition: &str, spill: bool) -> u64 {
        let active = self.active();
        if spill {
            self.backlog += 1;
            self.cursor.get_or_insert(self.appended);
        }
        let part = match self.parts.get_mut(partition) {
            Some(part) => part,
            None => self.parts.entry(partition.to_owned()).or_default(),
        };
        let index = part.next;
        part.next += 1;
        part.backlog += u64::from(spill);
        if part.runs.back().is_none_or(|r| r.1 != active) {
            part.runs.push_back((index, active));
        }
        self.segments.back_mut().expect("open").live += 1;
        index
    }

    /// Events `first..first + count` of `partition` have their outcome. Returns whether
    /// segments became free to delete.
    pub(super) fn settle(&mut self, partition: &str, first: u64, count: u32) -> bool {
        let Some(part) = self.parts.get_mut(partition) else {
            return false;
        };
        let segments = &mut self.segments;
        let front = segments.front().map_or(0, |s| s.number);
        part.settle(first, first + u64::from(count), |segment, n| {
            if let Some(s) = segment
                .checked_sub(front)
                .and_then(|i| segments.get_mut(i as usize))
            {
                s.live = s.live.saturating_sub(n);
            }
        });
        let mut freed = false;
        while self.segments.len() > 1 && self.segments[0].live == 0 {
            let gone = self.segments.pop_front().expect("looked at");
            self.total -= gone.bytes;
            self.delete.push(gone.number);
            freed = true;
        }
        freed
    }

    /// The stamp an idempotent batch of `partition` starting at `first` got: if the
    /// log would number it otherwise, the new numbering is recorded (and `true`
    /// returned: it must be durable before the batch goes out).
    pub(super) fn numbered(&mut self, partition: &str, first: u64, stamp: Stamp) -> bool {
        let Some(part) = self.parts.get_mut(partition) else {
            return false;
        };
        let expected = part
            .base
            .filter(|b| b.index <= first)
            .map(|b| b.stamp_of(first));
        if expected == Some(stamp) {
            return false;
        }
        let base = Base {
            index: first,
            stamp,
        };
        part.base = Some(base);
        let mut out = Vec::new();
        let len = record::put_base(&mut out, partition, base);
        self.room(len).extend_from_slice(&out);
        self.wrote(len);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_out_of_order_move_the_floor_once_the_gap_closes() {
        let mut part = Part {
            next: 10,
            runs: VecDeque::from([(0, 1), (4, 2)]),
            ..Part::default()
        };
        let mut settled = Vec::new();
        part.settle(6, 8, |s, n| settled.push((s, n)));
        assert_eq!(part.floor, 0);
        part.settle(2, 5, |s, n| settled.push((s, n)));
        assert_eq!(settled, [(2, 2), (1, 2), (2, 1)]);
        assert_eq!(part.floor, 0);
        part.settle(0, 2, |_, _| {});
        assert_eq!(part.floor, 5);
        part.settle(5, 6, |_, _| {});
        assert_eq!(part.floor, 8);
        assert!(part.done.is_empty());
        assert_eq!(part.runs, [(4, 2)]);
    }
}
