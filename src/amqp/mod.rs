//! The AMQP side: one connection per producer, owned by one task.
//!
//! The connection task owns the fe2o3 connection, its session, the `$cbs` and
//! `$management` nodes and one sender link per partition. Callers talk to it through a
//! bounded channel; a send returns the delivery's settlement future, which the caller
//! awaits outside the task, so sends to different partitions (and pipelined sends on
//! one link) overlap. The task refreshes the token before it expires, and after a lost
//! connection it reconnects on the next request.
//!
//! Not yet independent: the task hands each transfer to its link itself, so a link
//! waiting for credit (or being attached) holds up the other partitions' transfers
//! meanwhile, for at most the try timeout.
//!
//! Files: `task` (connecting, reconnecting, serving commands), `links` (attaching
//! partition links, transfers, `$management` reads), `wire` (batches to messages,
//! verdicts to errors), `props` and `management` (what the attach and `$management`
//! frames carry), `rpc` (request/response over a link pair).

mod links;
mod management;
mod props;
mod rpc;
mod task;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp::link::delivery::DeliveryFut;
use fe2o3_amqp::link::SendError;
use fe2o3_amqp::types::messaging::Outcome;
use tokio::sync::{mpsc, oneshot, watch};

use crate::credential::Credential;
use crate::error::Error;
use crate::PartitionProperties;

pub(crate) use rpc::Reply;
pub(crate) use wire::{from_amqp_error, send_error, to_wire, Wire};

use task::Task;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `amqp://host:port` or `amqps://host:port`.
    pub(crate) url: String,
    /// The namespace host, for the open frame and token audiences.
    pub(crate) host: String,
    pub(crate) hub: String,
    pub(crate) credential: Arc<dyn Credential>,
    /// Container id.
    pub(crate) identifier: String,
    /// Bound on connecting, attaching and each management call.
    pub(crate) timeout: Duration,
    /// Attach partition links as an idempotent producer.
    pub(crate) idempotent: bool,
    /// Backoff between failed connection attempts.
    pub(crate) reconnect: streaming_producer_layers::retry::RetryPolicy,
}

impl Endpoint {
    fn audience(&self) -> String {
        format!("amqps://{}/{}", self.host, self.hub)
    }
}

/// Hub properties read from `$management`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HubProperties {
    pub(crate) partition_ids: Vec<String>,
}

/// An idempotent producer's state on one partition, as the service reported it when
/// the link was attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerState {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    /// The sequence number of the last event the service stored for this producer.
    pub(crate) last_sequence: i32,
}

use streaming_producer_layers::protocol::{
    IDEMPOTENT_PRODUCER, UNAUTHORIZED_ACCESS as UNAUTHORIZED,
};

/// How [`Amqp::producer_state`] gets the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attach {
    /// From the partition link as it is (attaching it if needed).
    Current,
    /// From a fresh attach as a new producer group, which the service numbers anew.
    NewProducer,
}

/// A send in progress: its settlement, and the connection generation it went out on.
pub(crate) type Settlement = DeliveryFut<Result<Outcome, SendError>>;

enum Command {
    Send {
        partition: String,
        message: Box<Wire>,
        reply: oneshot::Sender<Result<(Settlement, u64), Error>>,
    },
    MaxMessageSize {
        partition: String,
        reply: oneshot::Sender<Result<u64, Error>>,
    },
    Properties {
        reply: oneshot::Sender<Result<HubProperties, Error>>,
    },
    PartitionProperties {
        partition: String,
        reply: oneshot::Sender<Result<PartitionProperties, Error>>,
    },
    ProducerState {
        partition: String,
        attach: Attach,
        reply: oneshot::Sender<Result<ProducerState, Error>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// A handle on the connection task. Cloning shares the task.
#[derive(Debug, Clone)]
pub(crate) struct Amqp {
    commands: mpsc::Sender<Command>,
    /// The generation of the last connection that was lost (0: none yet).
    lost: watch::Receiver<u64>,
    why: Arc<std::sync::Mutex<Option<String>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Send { .. } => "Send",
            Command::MaxMessageSize { .. } => "MaxMessageSize",
            Command::Properties { .. } => "Properties",
            Command::PartitionProperties { .. } => "PartitionProperties",
            Command::ProducerState { .. } => "ProducerState",
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
        tokio::spawn(
            Task {
                endpoint,
                live: None,
                identities: HashMap::new(),
                generation: 0,
                lost: lost_tx,
                parked: Default::default(),
                backoff: None,
                why: Arc::clone(&why),
            }
            .run(rx),
        );
        Self {
            commands,
            lost,
            why,
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::closed())?;
        rx.await.map_err(|_| Error::closed())
    }

    /// Hands a batch to the partition's link; returns its settlement future.
    pub(crate) async fn send(
        &self,
        partition: &str,
        message: Wire,
    ) -> Result<(Settlement, u64), Error> {
        self.ask(|reply| Command::Send {
            partition: partition.to_owned(),
            message: Box::new(message),
            reply,
        })
        .await?
    }

    /// The `max-message-size` of a partition's link (attaching it if needed).
    pub(crate) async fn max_message_size(&self, partition: &str) -> Result<u64, Error> {
        self.ask(|reply| Command::MaxMessageSize {
            partition: partition.to_owned(),
            reply,
        })
        .await?
    }

    /// Reads the hub's properties.
    pub(crate) async fn properties(&self) -> Result<HubProperties, Error> {
        self.ask(|reply| Command::Properties { reply }).await?
    }

    /// Reads one partition's properties.
    pub(crate) async fn partition_properties(
        &self,
        partition: &str,
    ) -> Result<PartitionProperties, Error> {
        self.ask(|reply| Command::PartitionProperties {
            partition: partition.to_owned(),
            reply,
        })
        .await?
    }

    /// An idempotent producer's state on `partition`, attaching its link as `attach`
    /// says.
    pub(crate) async fn producer_state(
        &self,
        partition: &str,
        attach: Attach,
    ) -> Result<ProducerState, Error> {
        self.ask(|reply| Command::ProducerState {
            partition: partition.to_owned(),
            attach,
            reply,
        })
        .await?
    }

    /// Closes the connection and ends the task.
    pub(crate) async fn close(&self) {
        let _ = self.ask(|reply| Command::Close { reply }).await;
    }

    /// Why the last connection attempt failed, while the producer is disconnected.
    pub(crate) fn why_disconnected(&self) -> Option<String> {
        self.why.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves when the connection of `generation` is lost.
    pub(crate) async fn lost(&self, generation: u64) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|g| *g >= generation).await;
    }
}
