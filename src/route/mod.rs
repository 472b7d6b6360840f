//! Where events go: the [`Router`] owns the hub's partition ids (and a version that
//! says when they changed), the partitioner for keys and the keyless state, and is the
//! one place a partition id, a partition key or nothing becomes a partition index, for
//! the events the handles accept and for the partitions the API names.

mod health;
mod policy;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub(crate) use health::Health;
pub use policy::Partitioner;
pub(crate) use policy::{Keyless, RoundRobin, ServiceHash, Sticky};

use crate::{Error, Routing};

/// A partition of the hub, named by its id or by a partition key, for
/// [`Producer::flush_partition`](crate::Producer::flush_partition) and [`Producer::clear_partition`](crate::Producer::clear_partition). A key names the
/// partition events with that key are routed to (by the builder's
/// [`partitioner`](crate::ProducerBuilder::partitioner), the service's hash unless one is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partition {
    /// A partition id, e.g. `"0"`.
    Id(String),
    /// A partition key.
    Key(String),
}

impl Partition {
    /// The partition with this id.
    pub fn id(id: impl Into<String>) -> Self {
        Self::Id(id.into())
    }

    /// The partition this key is routed to.
    pub fn key(key: impl Into<String>) -> Self {
        Self::Key(key.into())
    }
}

/// A partition's index into the hub's partition ids (as the lanes and the driver
/// number partitions), as opposed to its id (a string) or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Index(pub(crate) usize);

impl Index {
    /// Every index below `count`.
    pub(crate) fn all(count: usize) -> impl Iterator<Item = Index> {
        (0..count).map(Index)
    }
}

impl std::fmt::Display for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Per-partition vectors (the lanes, the driver's partitions, the ids) are indexed by
/// partition index.
impl<T> std::ops::Index<Index> for [T] {
    type Output = T;

    fn index(&self, index: Index) -> &T {
        &self[index.0]
    }
}

impl<T> std::ops::IndexMut<Index> for [T] {
    fn index_mut(&mut self, index: Index) -> &mut T {
        &mut self[index.0]
    }
}

impl<T> std::ops::Index<Index> for Vec<T> {
    type Output = T;

    fn index(&self, index: Index) -> &T {
        &self[index.0]
    }
}

impl<T> std::ops::IndexMut<Index> for Vec<T> {
    fn index_mut(&mut self, index: Index) -> &mut T {
        &mut self[index.0]
    }
}

/// The hub's partition ids and how events are spread over them.
pub(crate) struct Router {
    ids: RwLock<Arc<[String]>>,
    /// Bumped when the ids change, so that a handle's copy is checked with one load
    /// per event.
    version: AtomicUsize,
    /// The most partitions the ids may grow to (the lanes made up front).
    max_partitions: usize,
    partitioner: Arc<dyn Partitioner>,
    keyless: Mutex<Keyless>,
    /// Each partition's health, which keyless routing steers by.
    pub(crate) health: Health,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("ids", &self.ids())
            .field("keyless", &self.keyless)
            .finish_non_exhaustive()
    }
}

/// A handle's copy of the partition ids, as of a version of the router's.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    version: usize,
    ids: Arc<[String]>,
}

/// Where [`Router::route`] sends an event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The event's partition.
    pub(crate) partition: Index,
    /// A partition the sticky router just moved away from: its run of keyless events
    /// is complete, so its open batch may be published now.
    pub(crate) left: Option<Index>,
}

impl Router {
    pub(crate) fn new(
        ids: Vec<String>,
        max_partitions: usize,
        partitioner: Arc<dyn Partitioner>,
        keyless: Keyless,
        adaptive: bool,
    ) -> Self {
        let max_partitions = max_partitions.max(ids.len());
        Self {
            health: Health::new(max_partitions, adaptive),
            max_partitions,
            ids: RwLock::new(ids.into()),
            version: AtomicUsize::new(0),
            partitioner,
            keyless: Mutex::new(keyless),
        }
    }

    /// The partition ids now.
    pub(crate) fn ids(&self) -> Arc<[String]> {
        self.ids.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many partitions there are now.
    pub(crate) fn count(&self) -> usize {
        self.ids().len()
    }

    /// The id of the partition at `index` (empty if there is none).
    pub(crate) fn id(&self, index: Index) -> String {
        self.ids().get(index.0).cloned().unwrap_or_default()
    }

    /// A copy of the ids for a handle.
    pub(crate) fn snapshot(&self) -> Ids {
        Ids {
            version: self.version.load(Ordering::Acquire),
            ids: self.ids(),
        }
    }

    /// The handle's copy `ids`, brought up to date if the ids changed.
    #[inline]
    pub(crate) fn current<'a>(&self, ids: &'a mut Ids) -> &'a [String] {
        if self.version.load(Ordering::Acquire) != ids.version {
            *ids = self.snapshot();
        }
        &ids.ids
    }

    /// Adopts a refreshed list of partition ids if it has more partitions (partitions
    /// are added, never removed); returns whether it changed.
    pub(crate) fn refresh(&self, ids: Vec<String>) -> bool {
        let mut current = self.ids.write().unwrap_or_else(|e| e.into_inner());
        let grows = ids.len() > current.len()
            && ids.len() <= self.max_partitions
            && ids.starts_with(&current[..]);
        if grows {
            tracing::info!(
                from = current.len(),
                to = ids.len(),
                "the hub has more partitions"
            );
            *current = ids.into();
            self.version.fetch_add(1, Ordering::Release);
        }
        grows
    }

    /// The partition of an event routed as `routing` that weighs `weight` bytes in a
    /// batch, among `ids` (a handle's current copy).
    #[inline]
    pub(crate) fn route(
        &self,
        ids: &[String],
        routing: &Routing,
        weight: usize,
    ) -> Result<Route, Error> {
        let partition = match routing {
            Routing::PartitionId(id) => index_of(ids, id)?,
            Routing::PartitionKey(key) => self.for_key(key, ids.len()),
            Routing::Auto => {
                return Ok(
                    match &mut *self.keyless.lock().unwrap_or_else(|e| e.into_inner()) {
                        Keyless::RoundRobin(rr) => Route {
                            partition: Index(rr.next(ids.len(), &self.health)),
                            left: None,
                        },
                        Keyless::Sticky(sticky) => {
                            let pick = sticky.pick(weight, ids.len(), &self.health);
                            Route {
                                partition: Index(pick.partition),
                                left: pick.left.map(Index),
                            }
                        }
                    },
                )
            }
        };
        Ok(Route {
            partition,
            left: None,
        })
    }

    /// The index of a partition the API names by id or by key.
    pub(crate) fn resolve(&self, partition: &Partition) -> Result<Index, Error> {
        let ids = self.ids();
        match partition {
            Partition::Id(id) => index_of(&ids, id),
            Partition::Key(key) => Ok(self.for_key(key, ids.len())),
        }
    }

    /// The partition for `key` among `count`; a custom partitioner's answer is kept in
    /// range.
    fn for_key(&self, key: &str, count: usize) -> Index {
        Index(self.partitioner.partition_for_key(key, count) % count.max(1))
    }
}

fn index_of(ids: &[String], id: &str) -> Result<Index, Error> {
    ids.iter()
        .position(|p| p == id)
        .map(Index)
        .ok_or_else(|| Error::unknown_partition(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(ids: &[&str], keyless: Keyless) -> Router {
        let ids = ids.iter().map(|id| (*id).to_owned()).collect();
        Router::new(ids, 8, Arc::new(ServiceHash), keyless, true)
    }

    #[test]
    fn ids_keys_and_nothing_each_become_an_index() {
        let router = router(&["a", "b", "c"], Keyless::RoundRobin(RoundRobin::new()));
        let ids = router.ids();
        let id = Routing::PartitionId("c".into());
        assert_eq!(router.route(&ids, &id, 10).unwrap().partition, Index(2));
        let key = Routing::PartitionKey("alphabet".into());
        let by_key = router.route(&ids, &key, 10).unwrap().partition;
        assert_eq!(
            by_key,
            Index(eventhubs_protocol::partition_key::partition_index(
                "alphabet", 3
            ))
        );
        assert_eq!(router.resolve(&Partition::key("alphabet")).unwrap(), by_key);
        let auto: Vec<Index> = (0..4)
            .map(|_| router.route(&ids, &Routing::Auto, 10).unwrap().partition)
            .collect();
        assert_eq!(auto, [0, 1, 2, 0].map(Index));
        let unknown = router.route(&ids, &Routing::PartitionId("z".into()), 10);
        assert!(unknown.unwrap_err().is_unknown_partition());
        assert!(router
            .resolve(&Partition::id("z"))
            .unwrap_err()
            .is_unknown_partition());
    }

    #[test]
    fn a_custom_partitioner_out_of_range_is_brought_into_range() {
        let wild = |_: &str, _: usize| 7usize;
        let ids: Vec<String> = vec!["0".into(), "1".into(), "2".into()];
        let router = Router::new(
            ids,
            8,
            Arc::new(wild),
            Keyless::RoundRobin(RoundRobin::new()),
            true,
        );
        assert_eq!(router.resolve(&Partition::key("k")).unwrap(), Index(1));
    }

    #[test]
    fn a_handles_copy_follows_grown_ids_and_only_grown_ones() {
        let router = router(&["0", "1"], Keyless::RoundRobin(RoundRobin::new()));
        let mut copy = router.snapshot();
        assert!(
            !router.refresh(vec!["0".into()]),
            "partitions are never removed"
        );
        assert!(
            !router.refresh(vec!["1".into(), "0".into(), "2".into()]),
            "nor reordered"
        );
        assert!(router.refresh(vec!["0".into(), "1".into(), "2".into()]));
        assert_eq!(router.current(&mut copy), ["0", "1", "2"]);
        let too_many = (0..9).map(|i| i.to_string()).collect();
        assert!(
            !router.refresh(too_many),
            "no more than the lanes made up front"
        );
    }

    #[test]
    fn the_sticky_router_says_which_partition_it_left() {
        let router = router(&["0", "1"], Keyless::Sticky(Sticky::new(100).max_events(2)));
        let ids = router.ids();
        let routes: Vec<Route> = (0..3)
            .map(|_| router.route(&ids, &Routing::Auto, 10).unwrap())
            .collect();
        let left: Vec<Option<Index>> = routes.iter().map(|r| r.left).collect();
        assert_eq!(left, [None, None, Some(Index(0))]);
    }
}
