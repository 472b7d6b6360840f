//! [`PartitionBatch`]: what the layers ask of the batch they carry, and [`Stamp`], the
//! numbers an idempotent batch is published with.

use tokio::time::Instant;

/// A batch of events for one partition, as the layers of its stack see it.
///
/// The producer's `Batch` implements it. Clones are expected to be cheap (tower's
/// `Retry` resends a clone for each try) and to share what tries learn: the
/// [stamp](Self::set_stamp) and whether a try [may have stored](Self::may_have_been_stored)
/// the batch.
pub trait PartitionBatch: Clone + Send + 'static {
    /// The partition the batch goes to.
    fn partition(&self) -> &str;

    /// How many events it holds.
    fn len(&self) -> usize;

    /// Whether it holds no event.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size of the message that carries it, in bytes.
    fn size_in_bytes(&self) -> usize;

    /// When its events' delivery timeout runs out: no try starts at or after it.
    /// `None` for no limit.
    fn deadline(&self) -> Option<Instant>;

    /// Whether a try reached the service (or may have) without a verdict coming back,
    /// as every clone has seen it.
    fn may_have_been_stored(&self) -> bool;

    /// Numbers the batch for idempotent publishing (`None` removes the numbers); every
    /// clone sees it. The transport writes the numbers into the events it sends.
    fn set_stamp(&self, stamp: Option<Stamp>);

    /// A try failed and the retry policy sends the batch again (for the producer's
    /// statistics; every clone sees it). Does nothing unless the batch counts them.
    fn note_retry(&self) {}
}

/// The numbers an idempotent producer publishes a batch with: the producer group, its
/// owner level (epoch), and the first event's producer sequence number (the others
/// follow it, one each, wrapping from `i32::MAX` to 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The first event's producer sequence number.
    pub sequence: i32,
    /// The producer group id the service gave.
    pub producer_id: i64,
    /// The producer group's owner level.
    pub epoch: i16,
}

/// A batch of plain strings, for testing the layers without a transport.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::{PartitionBatch, Stamp};

    #[derive(Debug, Clone)]
    pub(crate) struct TestBatch {
        partition: String,
        pub(crate) events: Arc<Vec<String>>,
        deadline: Option<Instant>,
        /// The stamp and "may have been stored", shared by clones as a real batch's.
        tries: Arc<Mutex<(Option<Stamp>, bool)>>,
    }

    impl TestBatch {
        pub(crate) fn new(partition: &str, events: &[&str]) -> Self {
            Self {
                partition: partition.to_owned(),
                events: Arc::new(events.iter().map(|e| (*e).to_owned()).collect()),
                deadline: None,
                tries: Arc::default(),
            }
        }

        pub(crate) fn with_deadline(mut self, deadline: Instant) -> Self {
            self.deadline = Some(deadline);
            self
        }

        pub(crate) fn mark_maybe_stored(&self) {
            self.tries.lock().unwrap().1 = true;
        }

        pub(crate) fn stamp(&self) -> Option<Stamp> {
            self.tries.lock().unwrap().0
        }
    }

    impl PartitionBatch for TestBatch {
        fn partition(&self) -> &str {
            &self.partition
        }

        fn len(&self) -> usize {
            self.events.len()
        }

        fn size_in_bytes(&self) -> usize {
            self.events.iter().map(String::len).sum()
        }

        fn deadline(&self) -> Option<Instant> {
            self.deadline
        }

        fn may_have_been_stored(&self) -> bool {
            self.tries.lock().unwrap().1
        }

        fn set_stamp(&self, stamp: Option<Stamp>) {
            self.tries.lock().unwrap().0 = stamp;
        }
    }
}
