//! The AMQP side: one connection per producer, owned by one task.
//!
//! The connection task owns the fe2o3 connection, its session, the `$cbs` and
//! `$management` nodes and one sender link per partition. Callers talk to it through a
//! bounded channel; a send returns the delivery's settlement future, which the caller
//! awaits outside the task, so sends to different partitions (and pipelined sends on
//! one link) overlap. The task refreshes the token before it expires, and after a lost
//! connection it reconnects on the next request.

mod management;
mod props;
mod rpc;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::DeliveryFut;
use fe2o3_amqp::link::{SendError, Sender};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::Outcome;
use fe2o3_amqp::types::primitives::SimpleValue;
use fe2o3_amqp::{Connection, Session};
use serde_amqp::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::credential::Credential;
use crate::error::{Error, Kind};
use crate::PartitionProperties;

pub(crate) use rpc::Reply;
pub(crate) use wire::{from_amqp_error, send_error, to_wire, Wire};

use management::{parse_hub_properties, parse_partition_properties, status_error};
use props::{client_properties, idempotent_properties, producer_state_of, tls_connect};

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

struct Live {
    connection: ConnectionHandle<()>,
    session: SessionHandle<()>,
    cbs: rpc::Rpc,
    management: Option<rpc::Rpc>,
    senders: HashMap<String, Sender>,
    /// Idempotent producer state from each partition link's attach.
    producer_states: HashMap<String, ProducerState>,
    refresh_at: tokio::time::Instant,
}

struct Task {
    endpoint: Endpoint,
    live: Option<Live>,
    /// Idempotent producer group id and epoch per partition, kept across reconnects
    /// so that the service recognises this producer when a link is attached again.
    identities: HashMap<String, (i64, i16)>,
    generation: u64,
    lost: watch::Sender<u64>,
    /// Commands waiting for a reconnect, in arrival order.
    parked: std::collections::VecDeque<Command>,
    backoff: Option<Backoff>,
    /// Why the last connection attempt failed, while the producer is disconnected.
    why: Arc<std::sync::Mutex<Option<String>>>,
}

impl Command {
    /// Commands that wait for the connection while it cannot be made (their callers
    /// bound the wait by their delivery deadline) rather than fail at once.
    fn waits_for_connection(&self) -> bool {
        matches!(self, Command::Send { .. } | Command::ProducerState { .. })
    }

    /// Whether the caller stopped waiting for the reply.
    fn abandoned(&self) -> bool {
        match self {
            Command::Send { reply, .. } => reply.is_closed(),
            Command::ProducerState { reply, .. } => reply.is_closed(),
            _ => false,
        }
    }

    fn fail(self, error: Error) {
        match self {
            Command::Send { reply, .. } => drop(reply.send(Err(error))),
            Command::MaxMessageSize { reply, .. } => drop(reply.send(Err(error))),
            Command::Properties { reply } => drop(reply.send(Err(error))),
            Command::PartitionProperties { reply, .. } => drop(reply.send(Err(error))),
            Command::ProducerState { reply, .. } => drop(reply.send(Err(error))),
            Command::Close { reply } => drop(reply.send(())),
        }
    }
}

/// Failed connection attempts in a row, and when the next may be made.
struct Backoff {
    failures: u32,
    next_at: tokio::time::Instant,
}

impl Task {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let refresh_at = self.live.as_ref().map(|l| l.refresh_at);
            let retry_at = match (&self.backoff, self.parked.is_empty()) {
                (_, true) => None,
                (Some(b), false) => Some(b.next_at),
                (None, false) => Some(tokio::time::Instant::now()),
            };
            let command = match self.live.as_mut() {
                Some(live) => tokio::select! {
                    c = commands.recv() => c,
                    _ = live.connection.on_close() => {
                        self.connection_lost();
                        continue;
                    }
                    _ = tokio::time::sleep_until(refresh_at.unwrap_or_else(tokio::time::Instant::now)) => {
                        if let Err(e) = self.refresh_token().await {
                            tracing::warn!("token refresh failed: {e}");
                            self.connection_lost();
                        }
                        continue;
                    }
                },
                None => match retry_at {
                    Some(at) => tokio::select! {
                        c = commands.recv() => c,
                        _ = tokio::time::sleep_until(at) => {
                            self.reconnect_parked().await;
                            continue;
                        }
                    },
                    None => commands.recv().await,
                },
            };
            let Some(command) = command else { break };
            if let Command::Close { reply } = command {
                for parked in self.parked.drain(..) {
                    parked.fail(Error::closed());
                }
                self.shutdown().await;
                let _ = reply.send(());
                return;
            }
            if self.live.is_none() {
                if command.abandoned() {
                    continue;
                }
                let waiting = self
                    .backoff
                    .as_ref()
                    .is_some_and(|b| b.next_at > tokio::time::Instant::now());
                if command.waits_for_connection() {
                    // In line behind the others, so a partition's sends keep their order.
                    if waiting || !self.parked.is_empty() {
                        self.parked.push_back(command);
                        continue;
                    }
                    match self.connect().await {
                        Ok(_) => {}
                        Err(e) if e.is_retryable() => {
                            self.parked.push_back(command);
                            continue;
                        }
                        Err(e) => {
                            command.fail(e);
                            continue;
                        }
                    }
                } else if waiting {
                    // Management reads fail at once rather than wait for a reconnect.
                    let why = self.why.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    command.fail(Error::connection(why.unwrap_or_default()));
                    continue;
                }
            }
            self.handle(command).await;
        }
        for parked in self.parked.drain(..) {
            parked.fail(Error::closed());
        }
        self.shutdown().await;
    }

    /// One connection attempt for every command waiting for it; on success they are
    /// served in the order they came.
    async fn reconnect_parked(&mut self) {
        self.parked.retain(|c| !c.abandoned());
        if self.parked.is_empty() {
            return;
        }
        match self.connect().await {
            Ok(_) => {
                // Should the connection fail again meanwhile, the rest wait on.
                while self.live.is_some() {
                    let Some(command) = self.parked.pop_front() else {
                        break;
                    };
                    self.handle(command).await;
                }
            }
            // The backoff grew; they wait for the next attempt.
            Err(e) if e.is_retryable() => {}
            Err(e) => {
                let message = e.to_string();
                let mut first = Some(e);
                for parked in self.parked.drain(..) {
                    let error = first
                        .take()
                        .unwrap_or_else(|| Error::connection(message.clone()));
                    parked.fail(error);
                }
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Send {
                partition,
                message,
                mut reply,
            } => {
                // A caller that gave up (its deadline passed) reported the batch as
                // failed already: sending it now would publish it behind its back.
                if reply.is_closed() {
                    return;
                }
                match self.send(&partition, &message, &mut reply).await {
                    Some(Err(_)) if self.found_connection_closed() => {
                        // Nothing was transferred: the send waits for the reconnect.
                        self.parked.push_front(Command::Send {
                            partition,
                            message,
                            reply,
                        });
                    }
                    Some(result) => drop(reply.send(result)),
                    None => {}
                }
            }
            Command::MaxMessageSize { partition, reply } => {
                let result = self.sender(&partition).await.map(|s| {
                    s.max_message_size()
                        .unwrap_or(crate::DEFAULT_MAX_MESSAGE_SIZE)
                });
                let _ = reply.send(result);
            }
            Command::Properties { reply } => {
                let result = self.read(None).await.and_then(|r| parse_hub_properties(&r));
                let _ = reply.send(result);
            }
            Command::PartitionProperties { partition, reply } => {
                let result = self
                    .read(Some(partition))
                    .await
                    .and_then(|r| parse_partition_properties(&r));
                let _ = reply.send(result);
            }
            Command::ProducerState {
                partition,
                attach,
                reply,
            } => {
                if reply.is_closed() {
                    return;
                }
                match self.producer_state(&partition, attach).await {
                    Err(_) if self.found_connection_closed() => {
                        self.parked.push_front(Command::ProducerState {
                            partition,
                            attach,
                            reply,
                        });
                    }
                    result => drop(reply.send(result)),
                }
            }
            Command::Close { reply } => {
                self.shutdown().await;
                let _ = reply.send(());
            }
        }
    }

    /// Whether the connection turned out to be closed (the task had not seen it yet);
    /// if so it is forgotten, and the next command connects again.
    fn found_connection_closed(&mut self) -> bool {
        let closed = self
            .live
            .as_ref()
            .is_some_and(|live| live.connection.is_closed());
        if closed {
            self.connection_lost();
        }
        closed
    }

    fn connection_lost(&mut self) {
        if self.live.take().is_some() {
            tracing::debug!(generation = self.generation, "connection lost");
            self.lost.send_replace(self.generation);
        }
    }

    /// Closes links, session and connection, politely but within a bound: a service
    /// that stopped answering must not hold up the producer's close.
    async fn shutdown(&mut self) {
        if let Some(mut live) = self.live.take() {
            let polite = async {
                let senders = live.senders.drain().map(|(_, sender)| sender.close());
                futures_util::future::join_all(senders).await;
                live.cbs.close().await;
                if let Some(m) = live.management.take() {
                    m.close().await;
                }
                let _ = live.session.end().await;
                let _ = live.connection.close().await;
            };
            if tokio::time::timeout(SHUTDOWN_LIMIT, polite).await.is_err() {
                tracing::debug!("the service did not answer the close in time");
            }
            self.lost.send_replace(self.generation);
        }
    }

    /// Connects if not connected. A failure is remembered: commands that wait for the
    /// connection make the next attempt only after a backoff that grows with each
    /// failure in a row (the producer's retry policy), so an unreachable service gets
    /// one attempt at a time, not one per partition and batch.
    async fn connect(&mut self) -> Result<&mut Live, Error> {
        if self.live.is_none() {
            let timeout = self.endpoint.timeout;
            let opened = tokio::time::timeout(timeout, self.open())
                .await
                .unwrap_or_else(|_| Err(Error::new(Kind::Timeout)));
            match opened {
                Ok(live) => {
                    self.generation += 1;
                    self.live = Some(live);
                    self.backoff = None;
                    *self.why.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                Err(e) => {
                    let failures = self.backoff.as_ref().map_or(0, |b| b.failures) + 1;
                    let delay = self.endpoint.reconnect.delay(failures - 1, 0.5);
                    tracing::debug!(failures, ?delay, "cannot connect: {e}");
                    self.backoff = Some(Backoff {
                        failures,
                        next_at: tokio::time::Instant::now() + delay,
                    });
                    *self.why.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(self.live.as_mut().expect("just connected"))
    }

    async fn open(&self) -> Result<Live, Error> {
        let e = &self.endpoint;
        let cannot = |err: crate::error::BoxError| {
            Error::connection(format!("cannot connect to {}", e.url)).with_source(err)
        };
        let (tls, authority) = match e.url.split_once("://") {
            Some(("amqps", rest)) => (true, rest),
            Some((_, rest)) => (false, rest),
            None => (false, e.url.as_str()),
        };
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|err| cannot(Box::new(err)))?;
        // Nagle would hold back the small frames (flows, CBS requests) behind big ones.
        let _ = tcp.set_nodelay(true);
        let builder = Connection::builder()
            .container_id(e.identifier.clone())
            .hostname(e.host.as_str())
            .scheme("amqp")
            .sasl_profile(SaslProfile::Anonymous)
            .max_frame_size(65536u32)
            .properties(client_properties());
        let opened = if tls {
            // The service speaks TLS from the first byte, with no AMQP TLS header first.
            let stream = tls_connect(&e.host, tcp)
                .await
                .map_err(|err| cannot(Box::new(err)))?;
            builder.open_with_stream(stream).await
        } else {
            builder.open_with_stream(tcp).await
        };
        let mut connection = opened.map_err(|err| cannot(Box::new(err)))?;
        let mut session = Session::begin(&mut connection)
            .await
            .map_err(|err| Error::connection("cannot begin a session").with_source(err))?;
        let cbs = rpc::Rpc::attach(&mut session, "$cbs").await?;
        let mut live = Live {
            connection,
            session,
            cbs,
            management: None,
            senders: HashMap::new(),
            producer_states: HashMap::new(),
            refresh_at: tokio::time::Instant::now(),
        };
        live.refresh_at = put_token(&mut live.cbs, e).await?;
        Ok(live)
    }

    async fn refresh_token(&mut self) -> Result<(), Error> {
        let endpoint = self.endpoint.clone();
        if let Some(live) = self.live.as_mut() {
            live.refresh_at = put_token(&mut live.cbs, &endpoint).await?;
        }
        Ok(())
    }

    /// The partition's sender link, attached if needed. An attach refused as
    /// unauthorized (the token expired early by the service's clock, say) puts a
    /// fresh token and tries once more.
    async fn sender(&mut self, partition: &str) -> Result<&mut Sender, Error> {
        if let Err(e) = self.attach_sender(partition).await {
            if e.condition() != Some(UNAUTHORIZED) {
                return Err(e);
            }
            tracing::debug!(
                partition,
                "attach refused as unauthorized; putting a fresh token"
            );
            self.refresh_token().await?;
            self.attach_sender(partition).await?;
        }
        let live = self.live.as_mut().expect("connected by the attach");
        Ok(live.senders.get_mut(partition).expect("attached above"))
    }

    async fn attach_sender(&mut self, partition: &str) -> Result<(), Error> {
        // The common case, once per batch: the link is there.
        if self
            .live
            .as_ref()
            .is_some_and(|live| live.senders.contains_key(partition))
        {
            return Ok(());
        }
        let address = format!("{}/Partitions/{partition}", self.endpoint.hub);
        let timeout = self.endpoint.timeout;
        let identifier = self.endpoint.identifier.clone();
        let idempotent = self.endpoint.idempotent;
        let identity = self.identities.get(partition).copied();
        let mut learned = None;
        let live = self.connect().await?;
        if !live.senders.contains_key(partition) {
            let mut builder = Sender::builder()
                .name(format!("{identifier}-{partition}"))
                .target(address.as_str());
            if idempotent {
                builder = builder
                    .add_desired_capabilities(IDEMPOTENT_PRODUCER)
                    .properties(idempotent_properties(identity));
            }
            let attach = builder.attach(&mut live.session);
            let sender = tokio::time::timeout(timeout, attach)
                .await
                .map_err(|_| Error::new(Kind::Timeout))?
                .map_err(|err| match &err {
                    fe2o3_amqp::link::SenderAttachError::RemoteClosedWithError(e) => {
                        wire::from_amqp_error(e, true).with_source(err)
                    }
                    _ => Error::connection(format!("cannot attach a sender to {address}"))
                        .with_source(err),
                })?;
            if idempotent {
                let state = sender.properties(|p| producer_state_of(p.as_ref()));
                let Some(state) = state else {
                    let _ = tokio::time::timeout(timeout, sender.close()).await;
                    return Err(Error::config(format!(
                        "the service did not grant idempotent publishing on partition \
                         {partition}: its attach reply has no producer state"
                    )));
                };
                learned = Some((state.producer_id, state.epoch));
                live.producer_states.insert(partition.to_owned(), state);
            }
            live.senders.insert(partition.to_owned(), sender);
        }
        if let Some(identity) = learned {
            self.identities.insert(partition.to_owned(), identity);
        }
        Ok(())
    }

    async fn producer_state(
        &mut self,
        partition: &str,
        attach: Attach,
    ) -> Result<ProducerState, Error> {
        if !self.endpoint.idempotent {
            return Err(Error::config("the producer is not idempotent"));
        }
        if attach == Attach::NewProducer {
            self.identities.remove(partition);
        }
        if attach != Attach::Current {
            let old = self
                .live
                .as_mut()
                .and_then(|live| live.senders.remove(partition));
            if let Some(sender) = old {
                let _ = tokio::time::timeout(self.endpoint.timeout, sender.close()).await;
            }
        }
        self.sender(partition).await?;
        self.live
            .as_ref()
            .and_then(|live| live.producer_states.get(partition).copied())
            .ok_or_else(|| Error::connection("the partition link has no producer state"))
    }

    /// Transfers `message` on the partition's link; `None` if the caller went away
    /// while the link waited for credit (then nothing was transferred).
    async fn send(
        &mut self,
        partition: &str,
        message: &Wire,
        reply: &mut oneshot::Sender<Result<(Settlement, u64), Error>>,
    ) -> Option<Result<(Settlement, u64), Error>> {
        let mut attempt = 0;
        let mut reauthorized = false;
        loop {
            attempt += 1;
            let timeout = self.endpoint.timeout;
            let sender = match self.sender(partition).await {
                Ok(sender) => sender,
                Err(e) => return Some(Err(e)),
            };
            let sent = match send_when_credit(sender, message, timeout, reply).await {
                Credit::Sent(sent) => sent,
                Credit::CallerGone => return None,
                Credit::TimedOut => {
                    // No credit for a whole try: nothing was transferred. A fresh link
                    // on the next try gets credit anew.
                    if let Some(live) = self.live.as_mut() {
                        live.senders.remove(partition);
                    }
                    return Some(Err(Error::new(Kind::Timeout)));
                }
            };
            match sent {
                Ok(settlement) => return Some(Ok((settlement, self.generation))),
                Err(err) => {
                    // The link is unusable (detached by the service, or its session
                    // ended): forget it. Nothing was transferred, so one more try on a
                    // freshly attached link is safe.
                    if let Some(live) = self.live.as_mut() {
                        live.senders.remove(partition);
                    }
                    let link_gone =
                        matches!(err, SendError::LinkStateError(_) | SendError::Detached(_));
                    let error = wire::send_error(err);
                    if link_gone && error.condition() == Some(UNAUTHORIZED) && !reauthorized {
                        // Closed for want of a valid token (it expired early by the
                        // service's clock, say): put a fresh one, then attach again.
                        tracing::debug!(
                            partition,
                            "link closed as unauthorized; putting a fresh token"
                        );
                        reauthorized = true;
                        if let Err(e) = self.refresh_token().await {
                            return Some(Err(e));
                        }
                        continue;
                    }
                    if !link_gone || attempt > 1 {
                        return Some(Err(error));
                    }
                }
            }
        }
    }

    /// A `$management` READ of the hub (`partition: None`) or of one partition.
    async fn read(&mut self, partition: Option<String>) -> Result<Reply, Error> {
        let endpoint = self.endpoint.clone();
        let live = self.connect().await?;
        if live.management.is_none() {
            live.management = Some(rpc::Rpc::attach(&mut live.session, "$management").await?);
        }
        let token = endpoint.credential.token(&endpoint.audience()).await?;
        let rpc = live.management.as_mut().expect("attached above");
        let kind = if partition.is_some() {
            "com.microsoft:partition"
        } else {
            "com.microsoft:eventhub"
        };
        let mut properties = vec![
            ("operation", SimpleValue::String("READ".into())),
            ("type", SimpleValue::String(kind.into())),
            ("name", SimpleValue::String(endpoint.hub.clone())),
            ("security_token", SimpleValue::String(token.token)),
        ];
        if let Some(p) = partition {
            properties.push(("partition", SimpleValue::String(p)));
        }
        let reply = rpc.call(&properties, Value::Null, endpoint.timeout).await?;
        if reply.status != 200 {
            return Err(status_error(&reply, &format!("reading {kind} properties")));
        }
        Ok(reply)
    }
}

/// How often a send that waits for link credit looks at the credit again. Not much
/// shorter: a send cancelled after it took its credit (while the transfer waits for
/// room on the session) gives that one credit up.
const CREDIT_RECHECK: Duration = Duration::from_secs(1);

/// The longest a close waits for the service to answer.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// How a wait for link credit ended.
enum Credit {
    /// The transfer was handed to the session (or the link failed).
    Sent(Result<Settlement, SendError>),
    /// No credit came within the limit; nothing was transferred.
    TimedOut,
    /// The caller stopped waiting; nothing was transferred.
    CallerGone,
}

/// Hands `message` to the link once it has credit, waiting at most `limit` and only
/// while the caller still waits for the `reply`.
///
/// fe2o3 0.18 wakes a send waiting for credit with `Notify::notify_waiters`, which
/// keeps no permit: credit that arrives between the send's check and its wait (the
/// flow that follows an attach reply, say) is never announced, and the send would
/// wait for good with credit in hand, holding up the connection task and with it
/// every partition. Seen in 2 of 30 runs of 100,000 events over 1,024 partitions.
/// Cancelling a send is safe in fe2o3 (a link has one sender, and a transfer not yet
/// handed to the session is forgotten), so the send is started again every
/// [`CREDIT_RECHECK`], which looks at the credit afresh.
async fn send_when_credit<T>(
    sender: &mut Sender,
    message: &Wire,
    limit: Duration,
    reply: &mut oneshot::Sender<T>,
) -> Credit {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let wait =
            CREDIT_RECHECK.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        tokio::select! {
            // A transfer that went out is reported even if the caller left meanwhile.
            biased;
            sent = tokio::time::timeout(wait, sender.send_batchable_ref(message)) => {
                if let Ok(sent) = sent {
                    return Credit::Sent(sent);
                }
            }
            _ = reply.closed() => return Credit::CallerGone,
        }
        if tokio::time::Instant::now() >= deadline {
            return Credit::TimedOut;
        }
    }
}

/// Puts a token for the hub on `$cbs`; returns when to refresh it.
async fn put_token(cbs: &mut rpc::Rpc, endpoint: &Endpoint) -> Result<tokio::time::Instant, Error> {
    let audience = endpoint.audience();
    let token = endpoint.credential.token(&audience).await?;
    let expires_ms = token
        .expires_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let reply = cbs
        .call(
            &[
                ("operation", SimpleValue::String("put-token".into())),
                ("type", SimpleValue::String(token.kind.cbs_type().into())),
                ("name", SimpleValue::String(audience)),
                (
                    "expiration",
                    SimpleValue::Timestamp(
                        fe2o3_amqp::types::primitives::Timestamp::from_milliseconds(expires_ms),
                    ),
                ),
            ],
            Value::String(token.token),
            endpoint.timeout,
        )
        .await?;
    if !(200..300).contains(&reply.status) {
        return Err(status_error(&reply, "the token was refused"));
    }
    // Refresh six minutes before expiry (as the Rust SDK does), or at half the
    // remaining validity for short-lived tokens.
    let remaining = token
        .expires_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let lead = Duration::from_secs(360).min(remaining / 2);
    // Never sooner than a second from now, so a token that is (nearly) expired cannot
    // make the refresh spin.
    let delay = remaining.saturating_sub(lead).max(Duration::from_secs(1));
    Ok(tokio::time::Instant::now() + delay)
}
