//! State shared by every connection and state per connection: the store, the faults,
//! the clock, who may use hubs, and where replies go.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockWriteGuard};

use fe2o3_amqp::acceptor::LinkAcceptor;
use fe2o3_amqp::types::{definitions::Fields, primitives::Symbol};
use serde_amqp::Value;
use tokio::sync::watch;

use crate::fault::ActiveFault;
use crate::rejection::Rejection;

/// State shared by every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: crate::store::Store,
    pub(crate) faults: RwLock<Vec<Arc<ActiveFault>>>,
    pub(crate) max_message_size: u64,
    pub(crate) key_name: String,
    pub(crate) key: String,
    pub(crate) accept_jwt: bool,
    pub(crate) clock: Arc<dyn crate::clock::Clock>,
    pub(crate) next_producer_id: std::sync::atomic::AtomicI64,
    /// Number of open connections.
    pub(crate) connections: watch::Sender<usize>,
    /// Number of attaches a `slow-attach` fault has held back so far.
    pub(crate) held_attaches: watch::Sender<usize>,
}

impl Shared {
    pub(crate) fn write_faults(&self) -> RwLockWriteGuard<'_, Vec<Arc<ActiveFault>>> {
        self.faults.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The first fault that fires for a transfer to `hub`/`partition`.
    pub(crate) fn fault_for(&self, hub: &str, partition: &str) -> Option<crate::fault::FaultKind> {
        let faults = self.faults.read().unwrap_or_else(|e| e.into_inner());
        faults
            .iter()
            .find_map(|f| f.check(hub, partition, false).cloned())
    }

    /// The first fault that fires for an attach of a publishing link to
    /// `hub`/`partition`.
    pub(crate) fn attach_fault_for(
        &self,
        hub: &str,
        partition: &str,
    ) -> Option<crate::fault::FaultKind> {
        let faults = self.faults.read().unwrap_or_else(|e| e.into_inner());
        faults
            .iter()
            .find_map(|f| f.check(hub, partition, true).cloned())
    }

    pub(crate) fn now_secs(&self) -> u64 {
        (self.clock.now_ms() / 1000).max(0) as u64
    }
}

/// Whether a connection may use hubs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    None,
    /// Until this time, in unix seconds.
    Until(u64),
    /// Authenticated by SASL PLAIN with the shared key.
    Always,
}

/// Per-connection state.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    access: Mutex<Access>,
    pub(crate) replies: crate::replies::ReplyRoutes,
    /// A second handle on the socket, to drop the connection from any task.
    socket: std::net::TcpStream,
    pub(crate) stop: watch::Receiver<bool>,
    dropped: AtomicBool,
    sessions: AtomicU64,
}

impl Conn {
    /// A connection that authenticated with SASL PLAIN (`plain`) or must put tokens.
    pub(crate) fn new(
        shared: Arc<Shared>,
        plain: bool,
        socket: std::net::TcpStream,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            shared,
            access: Mutex::new(if plain { Access::Always } else { Access::None }),
            replies: Default::default(),
            socket,
            stop,
            dropped: AtomicBool::new(false),
            sessions: AtomicU64::new(0),
        }
    }

    /// Whether the connection holds a valid token (or authenticated with PLAIN).
    pub(crate) fn authorized(&self) -> bool {
        match *self.access.lock().unwrap_or_else(|e| e.into_inner()) {
            Access::None => false,
            Access::Always => true,
            Access::Until(t) => t > self.shared.now_secs(),
        }
    }

    /// Records a valid token: access lasts until the latest expiry seen.
    pub(crate) fn grant_until(&self, expires_at: u64) {
        let mut access = self.access.lock().unwrap_or_else(|e| e.into_inner());
        *access = match *access {
            Access::Always => Access::Always,
            Access::Until(t) if t > expires_at && t > self.shared.now_secs() => Access::Until(t),
            _ => Access::Until(expires_at),
        };
    }

    /// A number for the next session of this connection.
    pub(crate) fn next_session_id(&self) -> u64 {
        self.sessions.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the connection was dropped: like the service, the emulator then stores
    /// and settles nothing more that came in on it.
    pub(crate) fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Drops the TCP connection at once, with no AMQP close.
    pub(crate) fn drop_connection(&self) {
        self.dropped.store(true, Ordering::SeqCst);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }

    pub(crate) fn unauthorized(&self) -> Rejection {
        Rejection::new(
            eventhubs_protocol::UNAUTHORIZED_ACCESS,
            "Unauthorized access. A valid token must be put on $cbs before a link is attached, and it must not have expired.",
        )
    }
}

/// Non-empty properties make fe2o3 write every field of a performative; pyamqp reads
/// performative fields by position and fails on elided trailing fields (spike notes).
pub(crate) fn filler_properties() -> Fields {
    let mut fields = Fields::default();
    fields.insert(
        Symbol::from("product"),
        Value::String("eventhubs-emulator".into()),
    );
    fields
}

/// A link acceptor with fe2o3's default dynamic-terminus handlers.
pub(crate) type Acceptor = LinkAcceptor<
    fn(fe2o3_amqp::types::messaging::Source) -> Option<fe2o3_amqp::types::messaging::Source>,
    fn(fe2o3_amqp::types::messaging::Target) -> Option<fe2o3_amqp::types::messaging::Target>,
>;
