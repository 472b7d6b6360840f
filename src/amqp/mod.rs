//! The AMQP side: one connection per producer, shared by every partition.
//!
//! A task owns the fe2o3 connection and a control session with the `$cbs` and
//! `$management` nodes: it connects (and after a lost connection reconnects, with
//! backoff, one attempt at a time), refreshes the token before it expires, begins
//! sessions and answers management reads. Each partition's sender link lives on a
//! session of its own behind the partition's own lock ([`link`]): transfers go from
//! the caller straight to the link, and a partition waiting for credit or attaching
//! again holds up no other. A send returns the delivery's settlement future, which
//! the caller awaits after letting go of the link, so pipelined sends on one link
//! overlap.
//!
//! Files: `task` (connecting, reconnecting, sessions, management reads), `cbs`
//! (putting tokens),
//! `link` (a partition's session and sender link: attach, credit, transfers), `wire`
//! (batches to payloads and messages, verdicts to errors), `props` and `management` (what the
//! attach and `$management` frames carry), `rpc` (request/response over a link pair),
//! `transport` (the layers under AMQP: TCP, a proxy's tunnel from `proxy`, TLS, a
//! WebSocket), `splice` (the stream over the transport that writes each batch's own
//! bytes where fe2o3 wrote a stand-in).

mod cbs;
mod link;
mod management;
mod props;
mod proxy;
mod rpc;
mod splice;
mod task;
mod transport;
mod verdict;
mod wire;

#[cfg(test)]
mod weight_tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fe2o3_amqp::link::delivery::DeliveryFut;
use fe2o3_amqp::link::SendError;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::Outcome;
use tokio::sync::{mpsc, oneshot, watch};

use crate::credential::Credential;
use crate::Error;

pub(crate) use rpc::Reply;
pub(crate) use verdict::{from_amqp_error, of_outcome, send_error};
#[cfg(test)]
pub(crate) use wire::serialized;
pub(crate) use wire::{payload, to_messages};

/// What the base service hands fe2o3 for a batch: a stand-in for its payload.
pub(crate) type Wire = fe2o3_amqp::Sendable<fe2o3_amqp::types::messaging::Data>;
pub(crate) use splice::Ticket;

pub(crate) use link::{Handed, Link};
pub(crate) use management::time_of;
use management::Management;
pub use management::{HubProperties, PartitionProperties};
pub(crate) use props::{roots_of, Roots};
pub(crate) use proxy::Proxy;

/// `max-message-size` assumed when a link announces none: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 20;

use task::Task;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `amqp://host:port` or `amqps://host:port`; over WebSockets
    /// `ws://host:port/path` or `wss://host:port/path`.
    pub(crate) url: String,
    /// The host, for the open frame, TLS and token audiences.
    pub(crate) host: String,
    /// Event Hubs, or a generic AMQP 1.0 broker.
    pub(crate) peer: Peer,
    /// Container id.
    pub(crate) identifier: String,
    /// Bound on connecting, attaching and each management call.
    pub(crate) timeout: Duration,
    /// Attach partition links as an idempotent producer.
    pub(crate) idempotent: bool,
    /// Backoff between failed connection attempts.
    pub(crate) reconnect: streaming_producer_layers::retry::RetryPolicy,
    /// Certificates trusted over TLS besides the public roots.
    pub(crate) roots: props::Roots,
    /// An HTTP proxy whose tunnel the connection goes through.
    pub(crate) proxy: Option<Proxy>,
}

/// What is at the other end, which decides how the connection is authorized, what a
/// partition's link is attached to and how a batch is written.
#[derive(Clone)]
pub(crate) enum Peer {
    /// Event Hubs (or its emulator): SASL ANONYMOUS and a token for the hub on
    /// `$cbs`; partition `P`'s link targets `HUB/Partitions/P`; a batch is one batched
    /// message (format `0x80013700`).
    EventHubs {
        hub: String,
        credential: Arc<dyn Credential>,
    },
    /// A generic AMQP 1.0 broker: SASL PLAIN with this login, or ANONYMOUS; each
    /// "partition" is a target address; a batch is one message per transfer.
    Broker { login: Option<(String, String)> },
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::EventHubs { hub, .. } => f.debug_struct("EventHubs").field("hub", hub).finish(),
            // The password stays out of logs.
            Peer::Broker { login } => f
                .debug_struct("Broker")
                .field("user", &login.as_ref().map(|(user, _)| user))
                .finish(),
        }
    }
}

fn no_management() -> Error {
    Error::config(
        "a generic AMQP broker has no $management node (hub and partition properties) \
         and takes no tokens: that needs Event Hubs",
    )
}

impl Endpoint {
    /// The hub's name; empty for a generic broker.
    pub(crate) fn hub(&self) -> &str {
        match &self.peer {
            Peer::EventHubs { hub, .. } => hub,
            Peer::Broker { .. } => "",
        }
    }

    /// Whether this is a generic broker rather than Event Hubs.
    pub(crate) fn is_broker(&self) -> bool {
        matches!(self.peer, Peer::Broker { .. })
    }

    /// Fails for a generic broker, which has no `$cbs` or `$management` node (no hub
    /// properties, partition ids or tokens).
    pub(crate) fn needs_event_hubs(&self) -> Result<(), Error> {
        match self.peer {
            Peer::EventHubs { .. } => Ok(()),
            Peer::Broker { .. } => Err(no_management()),
        }
    }

    /// The token for the hub, for `$cbs` and `$management` (Event Hubs only).
    pub(crate) async fn token(&self) -> Result<crate::credential::AccessToken, Error> {
        match &self.peer {
            Peer::EventHubs { credential, .. } => credential.token(&self.audience()).await,
            Peer::Broker { .. } => Err(no_management()),
        }
    }

    pub(crate) fn audience(&self) -> String {
        format!("amqps://{}/{}", self.host, self.hub())
    }

    /// The address a partition's sender link is attached to.
    pub(crate) fn target(&self, partition: &str) -> String {
        match &self.peer {
            Peer::EventHubs { hub, .. } => format!("{hub}/Partitions/{partition}"),
            Peer::Broker { .. } => partition.to_owned(),
        }
    }
}

pub(crate) use streaming_producer_layers::idempotency::{Attach, ProducerState};

use eventhubs_protocol::{IDEMPOTENT_PRODUCER, UNAUTHORIZED_ACCESS as UNAUTHORIZED};

/// A send in progress: its settlement future.
pub(crate) type Settlement = DeliveryFut<Result<Outcome, SendError>>;

enum Command {
    /// A new session; with `wait`, waits for the connection while it is being made
    /// again, else fails at once while it cannot be made.
    Session {
        wait: bool,
        reply: oneshot::Sender<Result<(SessionHandle<()>, u64), Error>>,
    },
    /// Puts a fresh token, if the connection of `generation` is still the live one.
    RefreshToken {
        generation: u64,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// A handle on the connection task and the partition links. Cloning shares them.
#[derive(Debug, Clone)]
pub(crate) struct Amqp {
    commands: mpsc::Sender<Command>,
    endpoint: Arc<Endpoint>,
    links: Arc<Mutex<HashMap<String, Arc<Link>>>>,
    management: Arc<Management>,
    /// The generation of the last connection that was lost (0: none yet).
    lost: watch::Receiver<u64>,
    why: Arc<Mutex<Option<String>>>,
    /// The batches' payloads on their way to the wire, behind their stand-ins.
    stand_ins: Arc<splice::StandIns>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Session { .. } => "Session",
            Command::RefreshToken { .. } => "RefreshToken",
            Command::Close { .. } => "Close",
        })
    }
}

impl Amqp {
    /// Starts the connection task; the connection itself is made on first use.
    pub(crate) fn spawn(endpoint: Endpoint) -> Self {
        let (commands, rx) = mpsc::channel(64);
        let (lost_tx, lost) = watch::channel(0);
        let why = Arc::default();
        let endpoint = Arc::new(endpoint);
        let stand_ins = Arc::new(splice::StandIns::new());
        let task = Task::new(
            Arc::clone(&endpoint),
            lost_tx,
            Arc::clone(&why),
            Arc::clone(&stand_ins),
        );
        tokio::spawn(task.run(rx));
        Self {
            commands,
            endpoint,
            links: Arc::default(),
            management: Arc::default(),
            lost,
            why,
            stand_ins,
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The message to send for a batched message whose body is `payload`, and the
    /// ticket that keeps the payload ready for the connection until the send is over.
    pub(crate) fn stand_in(&self, payload: bytes::Bytes) -> (Wire, Ticket) {
        self.stand_ins.stand_in(payload, crate::codec::BATCH_FORMAT)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::closed())?;
        rx.await.map_err(|_| Error::closed())
    }

    /// The partition's link (not attached until first used).
    pub(crate) fn link(&self, partition: &str) -> Arc<Link> {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(link) = links.get(partition) {
            return Arc::clone(link);
        }
        let link = Arc::new(Link::new(partition));
        links.insert(partition.to_owned(), Arc::clone(&link));
        link
    }

    /// A new session, and the generation of its connection; with `wait`, waits while
    /// the connection is being made again (partition links: their callers bound the
    /// wait), else fails at once while it cannot be made (management reads).
    pub(crate) async fn session(&self, wait: bool) -> Result<(SessionHandle<()>, u64), Error> {
        self.ask(|reply| Command::Session { wait, reply }).await?
    }

    /// Puts a fresh token on the connection of `generation` (nothing to do if that
    /// connection is gone: its successor has a fresh one).
    pub(crate) async fn refresh_token(&self, generation: u64) -> Result<(), Error> {
        self.ask(|reply| Command::RefreshToken { generation, reply })
            .await?
    }

    /// The `max-message-size` of a partition's link (attaching it if needed).
    pub(crate) async fn max_message_size(&self, partition: &str) -> Result<u64, Error> {
        self.link(partition).max_message_size(self).await
    }

    /// Reads the hub's properties.
    pub(crate) async fn properties(&self) -> Result<HubProperties, Error> {
        self.endpoint.needs_event_hubs()?;
        let reply = self.management.read(self, None).await?;
        management::parse_hub_properties(&reply)
    }

    /// Reads one partition's properties.
    pub(crate) async fn partition_properties(
        &self,
        partition: &str,
    ) -> Result<PartitionProperties, Error> {
        self.endpoint.needs_event_hubs()?;
        let reply = self.management.read(self, Some(partition)).await?;
        management::parse_partition_properties(&reply)
    }

    /// An idempotent producer's state on `partition`, attaching its link as `attach`
    /// says.
    pub(crate) async fn producer_state(
        &self,
        partition: &str,
        attach: Attach,
    ) -> Result<ProducerState, Error> {
        self.link(partition).producer_state(self, attach).await
    }

    /// Closes the links, then the connection, and ends the task.
    pub(crate) async fn close(&self) {
        let links: Vec<_> = {
            let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
            links.drain().map(|(_, link)| link).collect()
        };
        let closing = links.iter().map(|link| link.close(task::SHUTDOWN_LIMIT));
        futures_util::future::join_all(closing).await;
        self.management.close(task::SHUTDOWN_LIMIT).await;
        let _ = self.ask(|reply| Command::Close { reply }).await;
    }

    /// Why the last connection attempt failed, while the producer is disconnected.
    pub(crate) fn why_disconnected(&self) -> Option<String> {
        self.why.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the connection of `generation` is known to be lost.
    pub(crate) fn is_lost(&self, generation: u64) -> bool {
        *self.lost.borrow() >= generation
    }

    /// Resolves when the connection of `generation` is lost.
    pub(crate) async fn lost(&self, generation: u64) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|g| *g >= generation).await;
    }
}
