//! Hubs and the namespace's set of them.

use std::sync::{Arc, RwLock};

use super::disk::{self, DataDir};
use super::{Log, Partition};
use crate::clock::Clock;
use crate::config::HubConfig;

/// One event hub.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) name: String,
    pub(crate) created_at_ms: i64,
    /// Partitions can be added (as the service allows on some tiers), never removed.
    partitions: RwLock<Arc<[Arc<Partition>]>>,
    /// As configured; `consumer_groups` without `$Default`.
    config: HubConfig,
    clock: Arc<dyn Clock>,
    data: Option<Arc<DataDir>>,
}

impl Hub {
    fn open(
        config: HubConfig,
        created_at_ms: i64,
        clock: Arc<dyn Clock>,
        data: Option<Arc<DataDir>>,
    ) -> Result<Self, String> {
        let hub = Self {
            name: config.name.clone(),
            created_at_ms,
            partitions: RwLock::new(Arc::from([])),
            config,
            clock,
            data,
        };
        if let Some(data) = &hub.data {
            data.save_hub(&hub.config, created_at_ms)?;
        }
        let partitions = (0..hub.config.partitions as usize)
            .map(|i| hub.open_partition(i))
            .collect::<Result<Vec<_>, _>>()?;
        *hub.partitions.write().unwrap_or_else(|e| e.into_inner()) = partitions.into();
        Ok(hub)
    }

    fn open_partition(&self, index: usize) -> Result<Arc<Partition>, String> {
        let id = index.to_string();
        let log = match &self.data {
            Some(data) => {
                let (file, mut log) = data.open_partition(
                    &self.name,
                    &id,
                    disk::segment_bytes(self.config.retention),
                )?;
                log.file = Some(file);
                log
            }
            None => Log::default(),
        };
        let max_age_ms = self
            .config
            .retention_time
            .map(|t| t.as_millis().min(i64::MAX as u128) as i64);
        Ok(Arc::new(Partition::new(
            id,
            self.config.retention,
            max_age_ms,
            self.clock.clone(),
            log,
        )))
    }

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

    /// Grows the hub to `count` partitions; returns the new count. With a data
    /// directory the new partitions are on disk first; if that fails, the hub stays
    /// as it was.
    pub(crate) fn grow_to(&self, count: usize) -> usize {
        let mut parts = self.partitions.write().unwrap_or_else(|e| e.into_inner());
        if count > parts.len() {
            let grown: Result<Vec<_>, String> = (parts.len()..count)
                .map(|i| self.open_partition(i))
                .collect();
            let saved = grown.and_then(|grown| {
                if let Some(data) = &self.data {
                    let mut config = self.config.clone();
                    config.partitions = count as u32;
                    data.save_hub(&config, self.created_at_ms)?;
                }
                Ok(grown)
            });
            match saved {
                Ok(grown) => {
                    *parts = parts.iter().cloned().chain(grown).collect();
                }
                Err(e) => tracing::error!(hub = %self.name, "cannot add partitions: {e}"),
            }
        }
        parts.len()
    }

    pub(crate) fn has_consumer_group(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("$Default")
            || self
                .config
                .consumer_groups
                .iter()
                .any(|g| g.eq_ignore_ascii_case(name))
    }

    /// The consumer groups, `$Default` first.
    pub(crate) fn consumer_groups(&self) -> Vec<String> {
        std::iter::once("$Default".to_owned())
            .chain(self.config.consumer_groups.iter().cloned())
            .collect()
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
    /// The configured hubs, and with a data directory the hubs it holds: a hub in
    /// both takes the configuration given now (its partitions may grow, never shrink)
    /// and keeps its events.
    pub(crate) fn open(
        configured: &[HubConfig],
        now_ms: i64,
        clock: Arc<dyn Clock>,
        data: Option<(Arc<DataDir>, disk::StoredHubs)>,
    ) -> Result<Self, String> {
        let (data, mut stored) = match data {
            Some((dir, stored)) => (Some(dir), stored),
            None => (None, Vec::new()),
        };
        let mut hubs = Vec::new();
        for config in configured {
            let created_at = match stored
                .iter()
                .position(|(h, _)| h.name.eq_ignore_ascii_case(&config.name))
            {
                Some(i) => {
                    let (old, created_at) = stored.remove(i);
                    if config.partitions < old.partitions {
                        return Err(format!(
                            "hub '{}' has {} partitions in the data directory and is \
                             configured with {}; partitions can be added, never removed \
                             (configure {} or more, or start on another data directory)",
                            config.name, old.partitions, config.partitions, old.partitions
                        ));
                    }
                    created_at
                }
                None => now_ms,
            };
            hubs.push(Hub::open(
                config.clone(),
                created_at,
                clock.clone(),
                data.clone(),
            )?);
        }
        for (config, created_at) in stored {
            hubs.push(Hub::open(config, created_at, clock.clone(), data.clone())?);
        }
        Ok(Self {
            hubs: hubs.into_iter().map(Arc::new).collect(),
        })
    }

    pub(crate) fn hub(&self, name: &str) -> Option<&Arc<Hub>> {
        self.hubs.iter().find(|h| h.name.eq_ignore_ascii_case(name))
    }

    /// Every hub, in the order they were configured, then those only the data
    /// directory held.
    pub(crate) fn hubs(&self) -> &[Arc<Hub>] {
        &self.hubs
    }
}
