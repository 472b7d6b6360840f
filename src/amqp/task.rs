//! The connection task: connects (SASL, `$cbs` token), reconnects with backoff while
//! the service cannot be reached, parks the sends waiting for it, refreshes the token,
//! and serves the handle's commands in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::Sender;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::primitives::SimpleValue;
use fe2o3_amqp::{Connection, Session};
use serde_amqp::Value;
use tokio::sync::{mpsc, watch};

use super::management::status_error;
use super::management::{parse_hub_properties, parse_partition_properties};
use super::props::{client_properties, tls_connect};
use super::{rpc, Command, Endpoint, ProducerState};
use crate::error::{Error, Kind};

/// The longest a close waits for the service to answer.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

pub(super) struct Live {
    pub(super) connection: ConnectionHandle<()>,
    pub(super) session: SessionHandle<()>,
    pub(super) cbs: rpc::Rpc,
    pub(super) management: Option<rpc::Rpc>,
    pub(super) senders: HashMap<String, Sender>,
    /// Idempotent producer state from each partition link's attach.
    pub(super) producer_states: HashMap<String, ProducerState>,
    pub(super) refresh_at: tokio::time::Instant,
}

pub(super) struct Task {
    pub(super) endpoint: Endpoint,
    pub(super) live: Option<Live>,
    /// Idempotent producer group id and epoch per partition, kept across reconnects
    /// so that the service recognises this producer when a link is attached again.
    pub(super) identities: HashMap<String, (i64, i16)>,
    pub(super) generation: u64,
    pub(super) lost: watch::Sender<u64>,
    /// Commands waiting for a reconnect, in arrival order.
    pub(super) parked: std::collections::VecDeque<Command>,
    pub(super) backoff: Option<Backoff>,
    /// Why the last connection attempt failed, while the producer is disconnected.
    pub(super) why: Arc<std::sync::Mutex<Option<String>>>,
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
pub(super) struct Backoff {
    failures: u32,
    next_at: tokio::time::Instant,
}

impl Task {
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
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
    pub(super) async fn connect(&mut self) -> Result<&mut Live, Error> {
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

    pub(super) async fn refresh_token(&mut self) -> Result<(), Error> {
        let endpoint = self.endpoint.clone();
        if let Some(live) = self.live.as_mut() {
            live.refresh_at = put_token(&mut live.cbs, &endpoint).await?;
        }
        Ok(())
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
