//! Hubs and the namespace's set of them.

use std::sync::{Arc, RwLock};

use super::Partition;
use crate::config::{HubConfig, Retention};

/// One event hub.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) name: String,
    pub(crate) created_at_ms: i64,
    /// Partitions can be added (as the service allows on some tiers), never removed.
    partitions: RwLock<Arc<[Arc<Partition>]>>,
    retention: Retention,
    consumer_groups: Vec<String>,
}

impl Hub {
    /// The partitions now.
    pub(crate) fn partitions(&self) -> Arc<[Arc<Partition>]> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn partition(&self, id: &str) -> Option<Arc<Partition>> {
        self.partitions().iter().find(|p| p.id == id).cloned()
    }

    /// Grows the hub to `count` partitions; returns the new count.
    pub(crate) fn grow_to(&self, count: usize) -> usize {
        let mut parts = self.partitions.write().unwrap_or_else(|e| e.into_inner());
        if count > parts.len() {
            let mut grown: Vec<Arc<Partition>> = parts.iter().cloned().collect();
            grown.extend(
                (parts.len()..count)
                    .map(|i| Arc::new(Partition::new(i.to_string(), self.retention))),
            );
            *parts = grown.into();
        }
        parts.len()
    }

    pub(crate) fn has_consumer_group(&self, name: &str) -> bool {
        self.consumer_groups
            .iter()
            .any(|g| g.eq_ignore_ascii_case(name))
    }

    pub(crate) fn partition_ids(&self) -> Vec<String> {
        self.partitions().iter().map(|p| p.id.clone()).collect()
    }
}

/// Every hub of the namespace.
#[derive(Debug, Default)]
pub(crate) struct Store {
    hubs: Vec<Arc<Hub>>,
}

impl Store {
    pub(crate) fn new(hubs: &[HubConfig], created_at_ms: i64) -> Self {
        let hubs = hubs
            .iter()
            .map(|h| {
                let mut groups = vec!["$Default".to_owned()];
                groups.extend(h.consumer_groups.iter().cloned());
                Arc::new(Hub {
                    name: h.name.clone(),
                    created_at_ms,
                    partitions: RwLock::new(
                        (0..h.partitions)
                            .map(|i| Arc::new(Partition::new(i.to_string(), h.retention)))
                            .collect(),
                    ),
                    retention: h.retention,
                    consumer_groups: groups,
                })
            })
            .collect();
        Self { hubs }
    }

    pub(crate) fn hub(&self, name: &str) -> Option<&Arc<Hub>> {
        self.hubs.iter().find(|h| h.name.eq_ignore_ascii_case(name))
    }
}
