//! What the emulator is asked to serve: its hubs and how much history they keep.

use std::time::Duration;

/// How much of a partition's history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Keep at most this many events per partition.
    Events(usize),
    /// Keep at most this many bytes of encoded events per partition.
    Bytes(usize),
}

impl Default for Retention {
    /// 256 MiB per partition.
    fn default() -> Self {
        Retention::Bytes(256 << 20)
    }
}

/// Configuration of one event hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub(crate) name: String,
    pub(crate) partitions: u32,
    pub(crate) consumer_groups: Vec<String>,
    pub(crate) retention: Retention,
    pub(crate) retention_time: Option<Duration>,
}

impl HubConfig {
    /// A hub with `partitions` partitions (ids `"0"` to `"N-1"`) and the `$Default` group.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            consumer_groups: Vec::new(),
            retention: Retention::default(),
            retention_time: None,
        }
    }

    /// Adds a consumer group (names are case-insensitive, `$Default` always exists).
    pub fn consumer_group(mut self, name: impl Into<String>) -> Self {
        self.consumer_groups.push(name.into());
        self
    }

    /// How much history each partition keeps (default 256 MiB).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How long each event is kept: older events are dropped, whatever the size
    /// retention. Without it events are dropped only by size, unless the emulator has
    /// a [data directory](crate::EmulatorBuilder::data_dir), where they are kept an
    /// hour ([`DEFAULT_RETENTION_TIME`](crate::DEFAULT_RETENTION_TIME)) as in Microsoft's
    /// emulator.
    pub fn retention_time(mut self, time: Duration) -> Self {
        self.retention_time = Some(time);
        self
    }

    /// The size retention.
    pub fn retention_limit(&self) -> Retention {
        self.retention
    }

    /// The retention time, if one was set.
    pub fn retention_time_limit(&self) -> Option<Duration> {
        self.retention_time
    }

    /// The hub's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many partitions it has.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Its consumer groups besides `$Default`, as declared.
    pub fn consumer_groups(&self) -> &[String] {
        &self.consumer_groups
    }
}
