//! The connection task: connects (SASL, and for Event Hubs a `$cbs` token), reconnects with backoff while
//! the service cannot be reached, parks the session requests waiting for it, refreshes
//! the token, begins the partition links' sessions and answers management reads.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::{Connection, Session};
use tokio::sync::{mpsc, watch};

use super::cbs::put_token;
use super::props::client_properties;
use super::splice::{Splice, StandIns};
use super::{rpc, transport, verdict, Command, Endpoint, Peer};
use crate::Error;
use streaming_producer_layers::retry::Schedule;

/// The longest a close waits for the service to answer.
pub(super) const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

struct Live {
    connection: ConnectionHandle<()>,
    /// The session of `$cbs` (a generic broker's connection has one too, unused, so
    /// that both kinds close alike).
    session: SessionHandle<()>,
    /// Event Hubs' `$cbs` node and when to put the next token; none for a broker.
    cbs: Option<(rpc::Rpc, tokio::time::Instant)>,
}

pub(super) struct Task {
    endpoint: Arc<Endpoint>,
    live: Option<Live>,
    generation: u64,
    lost: watch::Sender<u64>,
    /// Session requests waiting for a reconnect, in arrival order.
    parked: VecDeque<Command>,
    backoff: Option<Backoff>,
    /// Why the last connection attempt failed, while the producer is disconnected.
    why: Arc<Mutex<Option<String>>>,
    /// The batches' payloads behind their stand-ins, for each connection's stream.
    stand_ins: Arc<StandIns>,
}

impl Command {
    /// Commands that wait for the connection while it cannot be made (their callers
    /// bound the wait by their delivery deadline) rather than fail at once.
    fn waits_for_connection(&self) -> bool {
        matches!(self, Command::Session { wait: true, .. })
    }

    /// Whether the caller stopped waiting for the reply.
    fn abandoned(&self) -> bool {
        match self {
            Command::Session { reply, .. } => reply.is_closed(),
            _ => false,
        }
    }

    fn fail(self, error: Error) {
        match self {
            Command::Session { reply, .. } => drop(reply.send(Err(error))),
            Command::RefreshToken { reply, .. } => drop(reply.send(Err(error))),
            Command::Close { reply } => drop(reply.send(())),
        }
    }
}

/// Failed connection attempts in a row, and when the next may be made.
pub(super) struct Backoff {
    failures: u32,
    next_at: tokio::time::Instant,
    /// tower's backoff, made from the reconnect policy at the first failure.
    schedule: Schedule,
}

impl Task {
    pub(super) fn new(
        endpoint: Arc<Endpoint>,
        lost: watch::Sender<u64>,
        why: Arc<Mutex<Option<String>>>,
        stand_ins: Arc<StandIns>,
    ) -> Self {
        Self {
            endpoint,
            live: None,
            generation: 0,
            lost,
            parked: VecDeque::new(),
            backoff: None,
            why,
            stand_ins,
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let refresh_at = self
                .live
                .as_ref()
                .and_then(|l| l.cbs.as_ref().map(|(_, at)| *at));
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
                    _ = sleep_until(refresh_at) => {
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
            Command::Session { wait, reply } => {
                if reply.is_closed() {
                    return;
                }
                match self.begin_session().await {
                    // The connection went away meanwhile: the request waits for the
                    // reconnect.
                    Err(_) if self.found_connection_closed() && wait => {
                        self.parked.push_front(Command::Session { wait, reply });
                    }
                    result => drop(reply.send(result)),
                }
            }
            Command::RefreshToken { generation, reply } => {
                let result = if generation == self.generation {
                    self.refresh_token().await
                } else {
                    Ok(())
                };
                let _ = reply.send(result);
            }
            Command::Close { reply } => {
                self.shutdown().await;
                let _ = reply.send(());
            }
        }
    }

    /// Begins a session for a partition link on the live connection.
    async fn begin_session(&mut self) -> Result<(SessionHandle<()>, u64), Error> {
        let timeout = self.endpoint.timeout;
        let live = self.connect().await?;
        let session = tokio::time::timeout(timeout, Session::begin(&mut live.connection))
            .await
            .map_err(|_| Error::timeout())?
            .map_err(|err| Error::connection("cannot begin a session").with_source(err))?;
        Ok((session, self.generation))
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
                if let Some((cbs, _)) = live.cbs.take() {
                    cbs.close().await;
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
                .unwrap_or_else(|_| Err(Error::timeout()));
            match opened {
                Ok(live) => {
                    self.generation += 1;
                    self.live = Some(live);
                    self.backoff = None;
                    *self.why.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                Err(e) => {
                    let reconnect = &self.endpoint.reconnect;
                    let backoff = self.backoff.get_or_insert_with(|| Backoff {
                        failures: 0,
                        next_at: tokio::time::Instant::now(),
                        schedule: Schedule::new(reconnect),
                    });
                    backoff.failures += 1;
                    backoff.next_at = backoff.schedule.next_backoff().deadline();
                    tracing::debug!(failures = backoff.failures, "cannot connect: {e}");
                    *self.why.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(self.live.as_mut().expect("just connected"))
    }

    async fn open(&self) -> Result<Live, Error> {
        let e = &self.endpoint;
        let stream = transport::connect(e).await?;
        // Batches go to Event Hubs as their own bytes, spliced in under fe2o3; a
        // generic broker takes a message per event, which fe2o3 writes itself.
        let stream: Box<dyn transport::Io> = if e.is_broker() {
            stream
        } else {
            Box::new(Splice::new(stream, Arc::clone(&self.stand_ins)))
        };
        // Event Hubs authorizes with a token on `$cbs` after an anonymous SASL
        // exchange; a generic broker with SASL alone.
        let sasl = match &e.peer {
            Peer::Broker {
                login: Some((username, password)),
            } => SaslProfile::Plain {
                username: username.clone(),
                password: password.clone(),
            },
            _ => SaslProfile::Anonymous,
        };
        let opened = Connection::builder()
            .container_id(e.identifier.clone())
            .hostname(e.host.as_str())
            // TLS, if any, is a layer of the stream already.
            .scheme("amqp")
            .sasl_profile(sasl)
            .max_frame_size(65536u32)
            // A session per partition link (and one for `$cbs` and `$management`):
            // fe2o3's default of 255 channels would not do for a hub of 1,024
            // partitions. The service's open frame says how many it takes.
            .channel_max(u16::MAX)
            .properties(client_properties())
            .open_with_stream(stream)
            .await;
        let mut connection =
            opened.map_err(
                |err| match verdict::sasl_refusal(&err).filter(|_| e.is_broker()) {
                    // Not retried: the same login would be refused again.
                    Some(why) => {
                        Error::auth(format!("{} refused the login: {why}", e.url)).with_source(err)
                    }
                    None => {
                        Error::connection(format!("cannot connect to {}", e.url)).with_source(err)
                    }
                },
            )?;
        let mut session = Session::begin(&mut connection)
            .await
            .map_err(|err| Error::connection("cannot begin a session").with_source(err))?;
        let cbs = match e.peer {
            Peer::EventHubs { .. } => {
                let mut cbs = rpc::Rpc::attach(&mut session, "$cbs").await?;
                let refresh_at = put_token(&mut cbs, e).await?;
                Some((cbs, refresh_at))
            }
            Peer::Broker { .. } => None,
        };
        Ok(Live {
            connection,
            session,
            cbs,
        })
    }

    async fn refresh_token(&mut self) -> Result<(), Error> {
        let endpoint = Arc::clone(&self.endpoint);
        if let Some(live) = self.live.as_mut() {
            if let Some((cbs, refresh_at)) = live.cbs.as_mut() {
                *refresh_at = put_token(cbs, &endpoint).await?;
            }
        }
        Ok(())
    }
}

/// Sleeps until `at`; never, without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
