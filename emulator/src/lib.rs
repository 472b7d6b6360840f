//! A local Azure Event Hubs: an AMQP 1.0 broker that speaks the Event Hubs dialect well
//! enough that Microsoft's own SDKs accept it.
//!
//! It is the embedded default of this project: tests, examples, benchmarks and the
//! `hubcat` CLI run on it with no Azure account, and its [fault scripts](Fault) are how
//! a producer's reliability is proven.
//!
//! What it speaks:
//!
//! - SASL `MSSBCBS`, `ANONYMOUS` and `PLAIN`; `$cbs` put-token with SAS signatures
//!   checked and expiry enforced, JWTs only when [configured](EmulatorBuilder::accept_jwt);
//! - `$management` READ of hub and partition properties with the exact AMQP types the
//!   SDKs insist on;
//! - sender links to the hub (gateway) and to `hub/Partitions/<id>` in all three address
//!   shapes, batched messages, partition-key routing with the service's
//!   hash, idempotent producers;
//! - receiver links `hub/ConsumerGroups/<cg>/Partitions/<id>` with selector filters on
//!   offset, sequence number and enqueued time (without one, from the partition's
//!   start), epoch (owner level) receivers that displace lower ones, and the
//!   last-enqueued-event delivery annotations for readers that desire runtime metrics.
//!
//! What it keeps: with a [data directory](EmulatorBuilder::data_dir), hubs, events,
//! sequence numbers, offsets and idempotent producers' state survive a restart and a
//! crash; [`EmulatorHandle::view`] reads what it holds, for a page or a tool.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use eventhubs_emulator::Emulator;
//!
//! let emulator = Emulator::builder().hub("eh1", 4).start().await.unwrap();
//! let cs = emulator.connection_string();
//! assert!(cs.starts_with("Endpoint=sb://127.0.0.1:"));
//! assert!(cs.ends_with(";UseDevelopmentEmulator=true"));
//! assert_eq!(emulator.events("eh1", "0").unwrap().len(), 0);
//! emulator.shutdown().await;
//! # }
//! ```
#![forbid(unsafe_code)]

mod address;
mod clock;
mod codec;
mod config;
mod conn;
mod consume;
mod control;
mod fault;
mod ingest;
mod listeners;
pub use eventhubs_protocol::sas;
mod rejection;
mod replies;
mod sasl;
mod server;
mod store;
mod tls;
mod view;
mod web_socket;
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{HubConfig, Retention};
pub use fault::{Fault, FaultKind, FaultParseError, Trigger};
pub use store::disk::DEFAULT_RETENTION_TIME;
pub use store::{PartitionInfo, StoredEvent};
pub use tls::{TlsError, TlsIdentity};
pub use view::{EmulatorView, EventSections, FaultSummary, HubSummary};

/// Default shared access key name, the one the official emulator documents.
pub const DEFAULT_KEY_NAME: &str = "RootManageSharedAccessKey";
/// Default shared access key, the placeholder the official emulator documents.
pub const DEFAULT_KEY: &str = "SAS_KEY_VALUE";
/// Default `max-message-size` announced on sender links: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 20;

/// Why the emulator could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is invalid; the text says how.
    Config(String),
    /// The listener could not be bound.
    Bind(std::io::Error),
    /// The data directory cannot be used: it is locked by another emulator, a file
    /// in it is damaged, or it cannot be read or written. The text names the file.
    Data(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(m) => write!(f, "invalid emulator configuration: {m}"),
            StartError::Bind(e) => write!(f, "cannot bind the emulator's listener: {e}"),
            StartError::Data(m) => write!(f, "data directory: {m}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind(e) => Some(e),
            StartError::Config(_) | StartError::Data(_) => None,
        }
    }
}

/// The hubs a data directory holds, as they were last configured, in name order;
/// empty if the directory does not exist. See [`EmulatorBuilder::data_dir`].
///
/// Reads without taking the directory's lock, so a running emulator's hubs can be
/// listed.
pub fn stored_hubs(dir: &Path) -> Result<Vec<HubConfig>, StartError> {
    store::disk::stored_hubs(dir)
        .map(|hubs| hubs.into_iter().map(|(h, _)| h).collect())
        .map_err(StartError::Data)
}

/// Builds and starts an emulator. See [`Emulator::builder`].
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    bind: SocketAddr,
    hubs: Vec<HubConfig>,
    max_message_size: u64,
    key_name: String,
    key: String,
    accept_jwt: bool,
    faults: Vec<Fault>,
    clock: Arc<dyn Clock>,
    /// The listeners besides the plain AMQP one (TLS, WebSockets).
    listeners: listeners::Options,
    data_dir: Option<PathBuf>,
    default_hub: Option<HubConfig>,
}

/// The emulator; start one with [`Emulator::builder`].
#[derive(Debug)]
pub struct Emulator(());

impl Emulator {
    /// A builder with no hubs, `127.0.0.1:0`, 1 MiB messages and the default key.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            hubs: Vec::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            key_name: DEFAULT_KEY_NAME.to_owned(),
            key: DEFAULT_KEY.to_owned(),
            accept_jwt: false,
            faults: Vec::new(),
            clock: Arc::new(SystemClock),
            listeners: listeners::Options::default(),
            data_dir: None,
            default_hub: None,
        }
    }
}

impl EmulatorBuilder {
    /// Adds a hub with `partitions` partitions (1..=1024).
    pub fn hub(self, name: impl Into<String>, partitions: u32) -> Self {
        self.hub_config(HubConfig::new(name, partitions))
    }

    /// Adds a hub with full configuration.
    pub fn hub_config(mut self, hub: HubConfig) -> Self {
        self.hubs.push(hub);
        self
    }

    /// The address to listen on (default `127.0.0.1:0`, an ephemeral port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The `max-message-size` announced on links and enforced (default 1 MiB).
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The shared access key name and key that SAS tokens must be signed with.
    pub fn key(mut self, key_name: impl Into<String>, key: impl Into<String>) -> Self {
        self.key_name = key_name.into();
        self.key = key.into();
        self
    }

    /// Accepts `jwt` put-tokens (their signature cannot be checked; only expiry is).
    pub fn accept_jwt(mut self, accept: bool) -> Self {
        self.accept_jwt = accept;
        self
    }

    /// Injects a fault from the start.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// The clock used for enqueued times and token expiry (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Keeps hubs, events, sequence numbers, offsets and idempotent producers' state
    /// in `dir` (created if missing), so that a restart on the same directory serves
    /// them again. Hubs the directory holds are served even if not configured; a
    /// configured hub keeps its events, takes its configuration from now (its
    /// partitions can grow, never shrink), and is kept for
    /// [`DEFAULT_RETENTION_TIME`] unless its [retention
    /// time](HubConfig::retention_time) is set.
    ///
    /// Each publish is written to its partition's file before it is acknowledged, so
    /// an acknowledged event survives the emulator being killed. It is not synced to
    /// the disk: a power cut can lose the last writes (the damage is cut off at the
    /// next start). One emulator at a time serves a directory.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use eventhubs_emulator::Emulator;
    ///
    /// let dir = std::env::temp_dir().join(format!("emulator-doc-{}", std::process::id()));
    /// let emulator = Emulator::builder().hub("eh1", 2).data_dir(&dir).start().await.unwrap();
    /// emulator.shutdown().await;
    ///
    /// // The hub comes back without being configured again.
    /// let again = Emulator::builder().data_dir(&dir).start().await.unwrap();
    /// assert!(again.partition_info("eh1", "1").is_some());
    /// again.shutdown().await;
    /// std::fs::remove_dir_all(&dir).unwrap();
    /// # }
    /// ```
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The hub to serve when no hub is configured and the data directory (if any)
    /// holds none.
    pub fn default_hub(mut self, hub: HubConfig) -> Self {
        self.default_hub = Some(hub);
        self
    }

    fn validate(&self, stored: &[(HubConfig, i64)]) -> Result<(), StartError> {
        let bad = |m: String| Err(StartError::Config(m));
        if self.hubs.is_empty() && stored.is_empty() {
            return bad("at least one hub is needed".into());
        }
        if self.data_dir.is_some() && self.max_message_size > store::disk::MAX_MESSAGE_SIZE {
            return bad(format!(
                "max-message-size {} is too large for a data directory (at most {} bytes)",
                self.max_message_size,
                store::disk::MAX_MESSAGE_SIZE
            ));
        }
        for (i, h) in self.hubs.iter().enumerate() {
            if h.name.is_empty() || h.name.contains('/') || h.name.starts_with('$') {
                return bad(format!("hub name '{}' is not valid", h.name));
            }
            if !(1..=1024).contains(&h.partitions) {
                return bad(format!(
                    "hub '{}' has {} partitions; 1..=1024 are allowed",
                    h.name, h.partitions
                ));
            }
            if self.hubs[..i]
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&h.name))
            {
                return bad(format!("hub '{}' is configured twice", h.name));
            }
            if matches!(h.retention, Retention::Events(0) | Retention::Bytes(0)) {
                return bad(format!("hub '{}' retains nothing", h.name));
            }
        }
        if self.max_message_size < 256 {
            return bad(format!(
                "max-message-size {} is too small (at least 256 bytes)",
                self.max_message_size
            ));
        }
        if self.key_name.is_empty() || self.key.is_empty() {
            return bad("the key name and key must not be empty".into());
        }
        Ok(())
    }

    /// Binds the listener and starts serving in the background.
    pub async fn start(mut self) -> Result<EmulatorHandle, StartError> {
        let data = match &self.data_dir {
            Some(dir) => {
                let open = store::disk::DataDir::open(dir).map_err(StartError::Data)?;
                let stored = store::disk::stored_hubs(dir).map_err(StartError::Data)?;
                for hub in &mut self.hubs {
                    hub.retention_time.get_or_insert(DEFAULT_RETENTION_TIME);
                }
                Some((Arc::new(open), stored))
            }
            None => None,
        };
        let stored = data.as_ref().map_or(&[][..], |(_, s)| s.as_slice());
        if self.hubs.is_empty() && stored.is_empty() {
            if let Some(mut hub) = self.default_hub.take() {
                if self.data_dir.is_some() {
                    hub.retention_time.get_or_insert(DEFAULT_RETENTION_TIME);
                }
                self.hubs.push(hub);
            }
        }
        self.validate(stored)?;
        let store = store::Store::open(&self.hubs, self.clock.now_ms(), self.clock.clone(), data)
            .map_err(StartError::Data)?;
        // Producer group ids go on from the highest a partition knows, so that a
        // restarted emulator never hands out a group's id again.
        let next_producer_id = store
            .hubs()
            .iter()
            .filter_map(|h| {
                h.partitions()
                    .iter()
                    .filter_map(|p| p.max_producer_id())
                    .max()
            })
            .max()
            .map_or(1, |id| id + 1);
        let listener = tokio::net::TcpListener::bind(self.bind)
            .await
            .map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let extra = self.listeners.bind().await?;
        let shared = Arc::new(conn::Shared {
            store,
            faults: RwLock::new(
                self.faults
                    .iter()
                    .cloned()
                    .map(fault::ActiveFault::new)
                    .collect(),
            ),
            max_message_size: self.max_message_size,
            key_name: self.key_name,
            key: self.key,
            accept_jwt: self.accept_jwt,
            clock: self.clock,
            next_producer_id: std::sync::atomic::AtomicI64::new(next_producer_id),
            connections: tokio::sync::watch::channel(0).0,
            held_attaches: tokio::sync::watch::channel(0).0,
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let extra_tasks = extra
            .listeners
            .into_iter()
            .map(|(listener, layers)| {
                tokio::spawn(server::serve(
                    listener,
                    shared.clone(),
                    stop_rx.clone(),
                    layers,
                ))
            })
            .collect();
        let plain = server::Layers {
            tls: None,
            web_socket: false,
        };
        let task = tokio::spawn(server::serve(listener, shared.clone(), stop_rx, plain));
        Ok(EmulatorHandle {
            addr,
            extra: extra.addrs,
            extra_tasks,
            shared,
            stop: stop_tx,
            task: Some(task),
        })
    }
}

/// A running emulator.
///
/// # Drop behavior
///
/// Dropping the handle stops accepting connections and closes the existing ones
/// (their tasks see the stop signal) in the background; [`shutdown`](Self::shutdown)
/// does the same and waits until every connection is closed (at most a few seconds
/// for peers that do not answer their close).
#[derive(Debug)]
pub struct EmulatorHandle {
    addr: SocketAddr,
    /// Where the listeners besides the plain AMQP one listen.
    extra: listeners::Addrs,
    extra_tasks: Vec<tokio::task::JoinHandle<()>>,
    shared: Arc<conn::Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EmulatorHandle {
    /// The address the emulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A connection string for this emulator, without `EntityPath`.
    pub fn connection_string(&self) -> String {
        format!(
            "Endpoint=sb://{};SharedAccessKeyName={};SharedAccessKey={};UseDevelopmentEmulator=true",
            self.addr, self.shared.key_name, self.shared.key
        )
    }

    /// A connection string for one hub (with `EntityPath`).
    pub fn connection_string_for(&self, hub: &str) -> String {
        format!("{};EntityPath={hub}", self.connection_string())
    }

    /// A SAS token for `resource`, valid for `ttl_secs` from the emulator's clock.
    pub fn sas_token(&self, resource: &str, ttl_secs: u64) -> String {
        let now = (self.shared.clock.now_ms() / 1000).max(0) as u64;
        sas::sign(
            resource,
            &self.shared.key_name,
            &self.shared.key,
            now + ttl_secs,
        )
    }

    /// A read-only view of the hubs, events and faults, which can be kept and cloned
    /// apart from the handle (for a page that shows them, say).
    pub fn view(&self) -> EmulatorView {
        EmulatorView(self.shared.clone())
    }

    /// The retained events of a partition, oldest first; `None` for an unknown hub or partition.
    pub fn events(&self, hub: &str, partition: &str) -> Option<Vec<StoredEvent>> {
        self.view().events(hub, partition)
    }

    /// The counters of a partition; `None` for an unknown hub or partition.
    pub fn partition_info(&self, hub: &str, partition: &str) -> Option<PartitionInfo> {
        self.view().partition_info(hub, partition)
    }

    /// The number of open client connections.
    pub fn connection_count(&self) -> usize {
        *self.shared.connections.borrow()
    }

    /// Waits until exactly `n` client connections are open (for tests: a vanished
    /// client's connection must go away).
    pub async fn wait_for_connection_count(&self, n: usize) {
        let mut rx = self.shared.connections.subscribe();
        let _ = rx.wait_for(|count| *count == n).await;
    }

    /// Waits until `slow-attach` faults have held back at least `n` attaches (for
    /// tests: a partition link is being attached, slowly).
    pub async fn wait_for_held_attaches(&self, n: usize) {
        let mut rx = self.shared.held_attaches.subscribe();
        let _ = rx.wait_for(|count| *count >= n).await;
    }

    /// Adds partitions to a hub while running (the service allows growing a hub on some
    /// tiers; partitions are never removed). Returns the new count, or `None` for an
    /// unknown hub.
    pub fn grow_partitions(&self, hub: &str, count: usize) -> Option<usize> {
        Some(self.shared.store.hub(hub)?.grow_to(count.min(1024)))
    }

    /// Adds a fault while running; it applies to transfers from now on.
    pub fn add_fault(&self, fault: Fault) {
        self.shared
            .write_faults()
            .push(fault::ActiveFault::new(fault));
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.write_faults().clear();
    }

    /// Stops accepting, closes every connection and waits for them to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        for task in self.extra_tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
