//! What the emulator is asked to serve: its hubs and how much history they keep.

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
}

impl HubConfig {
    /// A hub with `partitions` partitions (ids `"0"` to `"N-1"`) and the `$Default` group.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            consumer_groups: Vec::new(),
            retention: Retention::default(),
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
