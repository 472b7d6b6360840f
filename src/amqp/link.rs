//! One partition's sender link, on a session of its own.
//!
//! Each partition link lives in its own AMQP session, as the .NET client does
//! (`AmqpConnectionScope.CreateSendingLinkAsync` opens a session per link) and as the
//! JS and Rust clients do. Its state sits behind the partition's own lock, so a
//! partition waiting for credit, attaching again or reading its producer state (which
//! is an attach) holds up nobody else. Only beginning a session goes through the
//! connection task: once per partition and connection.

use std::time::Duration;

use fe2o3_amqp::link::{LinkStateError, SendError, Sender};
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::SerializableBody;
use fe2o3_amqp::Sendable;

use super::props::{idempotent_properties, producer_state_of};
use super::{verdict, Amqp, Attach, ProducerState, Settlement, Wire};
use super::{IDEMPOTENT_PRODUCER, UNAUTHORIZED};
use crate::Error;

/// How often a send that waits for link credit looks at the credit again. Not much
/// shorter: a send cancelled after it took its credit (while the transfer waits for
/// room on the session) gives that one credit up.
const CREDIT_RECHECK: Duration = Duration::from_secs(1);

/// Local attach failures in a row (the session or connection went away under the
/// attach) before the attach gives up.
const LOCAL_ATTACH_FAILURES: u32 = 3;

/// Sessions that stop under a send, on a connection still live, before the send
/// gives up.
const SESSION_STOPS: u32 = 3;

/// A partition's link.
#[derive(Debug)]
pub(crate) struct Link {
    partition: String,
    state: tokio::sync::Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    attached: Option<Attached>,
    /// The idempotent producer group id and epoch, kept across re-attaches and
    /// reconnects so that the service recognises this producer.
    identity: Option<(i64, i16)>,
    /// A send was cut short (its caller's timeout dropped it) while it may have been
    /// part-way through a transfer of several frames: the link is not used again.
    cut: bool,
}

#[derive(Debug)]
struct Attached {
    /// The connection generation the session was begun on.
    generation: u64,
    session: SessionHandle<()>,
    sender: Option<Sender>,
    /// From the attach reply, on idempotent links.
    producer_state: Option<ProducerState>,
}

/// Marks the state as cut unless disarmed: dropped with the send future, it tells the
/// next user of the link that a transfer may have been left half-sent.
struct CutGuard<'a> {
    cut: &'a mut bool,
    armed: bool,
}

impl Drop for CutGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            *self.cut = true;
        }
    }
}

impl Link {
    pub(crate) fn new(partition: &str) -> Self {
        Self {
            partition: partition.to_owned(),
            state: tokio::sync::Mutex::default(),
        }
    }

    pub(crate) fn partition(&self) -> &str {
        &self.partition
    }

    /// Transfers `message` once the link has credit; returns its settlement and the
    /// connection generation it went out on. An error means nothing was transferred.
    pub(crate) async fn send(
        &self,
        amqp: &Amqp,
        message: &Wire,
    ) -> Result<(Settlement, u64), Error> {
        let mut handed = Handed::default();
        self.send_all(amqp, std::slice::from_ref(message), &mut handed)
            .await?;
        match (handed.settlements.pop(), handed.stopped) {
            (Some(settlement), _) => Ok((settlement, handed.generation)),
            (None, error) => Err(error.unwrap_or_else(Error::timeout)),
        }
    }

    /// Transfers `messages` in order, each once the link has credit, without waiting
    /// for one's settlement before the next (pipelined within the link's credit).
    /// What was transferred goes into `handed` as it is, so a caller that stops
    /// waiting still knows. An error means none was transferred; once one is, the
    /// rest go out on the same link or not at all ([`Handed::stopped`]).
    pub(crate) async fn send_all<T: SerializableBody>(
        &self,
        amqp: &Amqp,
        messages: &[Sendable<T>],
        handed: &mut Handed,
    ) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        let mut link_failures = 0;
        let mut session_stops = 0;
        let mut reauthorized = false;
        let puts_tokens = !amqp.endpoint().is_broker();
        while let Some(message) = messages.get(handed.settlements.len()) {
            let first = handed.settlements.is_empty();
            if first {
                self.attach(&mut state, amqp).await?;
            }
            let (generation, credit) = {
                let State { attached, cut, .. } = &mut *state;
                let attached = attached.as_mut().expect("attached above");
                let sender = attached.sender.as_mut().expect("attached above");
                let generation = attached.generation;
                let mut guard = CutGuard { cut, armed: true };
                let credit = tokio::select! {
                    // A transfer handed over is reported even if the connection went.
                    biased;
                    credit = send_when_credit(sender, message, amqp.endpoint().timeout) => credit,
                    () = amqp.lost(generation) => Credit::ConnectionLost,
                };
                guard.armed = false;
                (generation, credit)
            };
            // Once some went out on this link, a failure ends the transfers: the
            // others are not sent on another link behind their backs, out of order.
            let err = match credit {
                Credit::Sent(Ok(settlement)) => {
                    handed.generation = generation;
                    handed.settlements.push(settlement);
                    continue;
                }
                Credit::Sent(Err(err)) => {
                    state.attached = None;
                    if !first {
                        handed.stopped = Some(if puts_tokens {
                            verdict::send_error(err)
                        } else {
                            verdict::broker_send_error(err, &self.partition)
                        });
                        return Ok(());
                    }
                    err
                }
                // No credit for a whole try: nothing was transferred. A fresh link on
                // the next try gets credit anew.
                Credit::TimedOut => {
                    state.attached = None;
                    if !first {
                        handed.stopped = Some(Error::timeout());
                        return Ok(());
                    }
                    return Err(Error::timeout());
                }
                // Nothing was transferred: the next round waits for the reconnect.
                Credit::ConnectionLost => {
                    state.attached = None;
                    if !first {
                        handed.stopped = Some(Error::connection(
                            "the connection was lost during the transfers",
                        ));
                        return Ok(());
                    }
                    continue;
                }
            };
            // Nothing was transferred, so one more try on a fresh link is safe.
            if let SendError::LinkStateError(LinkStateError::SessionStopped(_)) = err {
                // The session or its connection stopped: the next round begins a new
                // session, waiting for the reconnect if need be. A service that keeps
                // ending sessions on a live connection gets a few rounds, not a spin.
                session_stops += 1;
                if session_stops <= SESSION_STOPS || amqp.is_lost(generation) {
                    continue;
                }
            }
            let link_gone = matches!(err, SendError::LinkStateError(_) | SendError::Detached(_));
            let error = if puts_tokens {
                verdict::send_error(err)
            } else {
                verdict::broker_send_error(err, &self.partition)
            };
            if link_gone && error.condition() == Some(UNAUTHORIZED) && !reauthorized && puts_tokens
            {
                // Closed for want of a valid token (it expired early by the service's
                // clock, say): put a fresh one, then attach again.
                tracing::debug!(
                    partition = self.partition,
                    "link closed as unauthorized; putting a fresh token"
                );
                reauthorized = true;
                amqp.refresh_token(generation).await?;
                continue;
            }
            link_failures += 1;
            if !link_gone || link_failures > 1 {
                return Err(error);
            }
        }
        Ok(())
    }

    /// The link's `max-message-size` (attaching it if needed).
    pub(crate) async fn max_message_size(&self, amqp: &Amqp) -> Result<u64, Error> {
        let mut state = self.state.lock().await;
        self.attach(&mut state, amqp).await?;
        let sender = state.attached.as_ref().and_then(|a| a.sender.as_ref());
        Ok(sender
            .and_then(Sender::max_message_size)
            .unwrap_or(crate::amqp::DEFAULT_MAX_MESSAGE_SIZE))
    }

    /// Makes the link's first attach resume an idempotent producer group (one that a
    /// spool recorded), unless it already has one.
    pub(crate) fn resume(&self, producer_id: i64, epoch: i16) {
        if let Ok(mut state) = self.state.try_lock() {
            if state.identity.is_none() && state.attached.is_none() {
                state.identity = Some((producer_id, epoch));
            }
        }
    }

    /// The idempotent producer state, from the link as it is or from a fresh attach.
    pub(crate) async fn producer_state(
        &self,
        amqp: &Amqp,
        attach: Attach,
    ) -> Result<ProducerState, Error> {
        if !amqp.endpoint().idempotent {
            return Err(Error::config("the producer is not idempotent"));
        }
        let mut state = self.state.lock().await;
        if attach == Attach::NewProducer {
            state.identity = None;
            let old = state.attached.as_mut().and_then(|a| a.sender.take());
            if let Some(sender) = old {
                let _ = tokio::time::timeout(amqp.endpoint().timeout, sender.close()).await;
            }
        }
        self.attach(&mut state, amqp).await?;
        state
            .attached
            .as_ref()
            .and_then(|a| a.producer_state)
            .ok_or_else(|| Error::connection("the partition link has no producer state"))
    }

    /// Detaches the link and ends its session, waiting at most `limit`.
    pub(crate) async fn close(&self, limit: Duration) {
        let polite = async {
            let attached = self.state.lock().await.attached.take();
            if let Some(mut attached) = attached {
                if let Some(sender) = attached.sender.take() {
                    let _ = sender.close().await;
                }
                let _ = attached.session.end().await;
            }
        };
        let _ = tokio::time::timeout(limit, polite).await;
    }

    /// Makes sure the partition has a live session and an attached sender. An attach
    /// refused as unauthorized (the token expired early by the service's clock, say)
    /// puts a fresh token and tries once more.
    async fn attach(&self, state: &mut State, amqp: &Amqp) -> Result<(), Error> {
        if std::mem::take(&mut state.cut) {
            state.attached = None;
        }
        let mut reauthorized = false;
        let mut local_failures = 0;
        loop {
            let stale = state
                .attached
                .as_ref()
                .is_some_and(|a| a.session.is_ended() || amqp.is_lost(a.generation));
            if stale {
                state.attached = None;
            }
            if state.attached.as_ref().is_some_and(|a| a.sender.is_some()) {
                return Ok(());
            }
            if state.attached.is_none() {
                let (session, generation) = amqp.session(true).await?;
                state.attached = Some(Attached {
                    generation,
                    session,
                    sender: None,
                    producer_state: None,
                });
            }
            let generation = state.attached.as_ref().map_or(0, |a| a.generation);
            match self.attach_sender(state, amqp).await {
                Ok(()) => return Ok(()),
                Err(Refusal::Remote(e))
                    if e.condition() == Some(UNAUTHORIZED)
                        && !reauthorized
                        && !amqp.endpoint().is_broker() =>
                {
                    tracing::debug!(
                        partition = self.partition,
                        "attach refused as unauthorized; putting a fresh token"
                    );
                    reauthorized = true;
                    amqp.refresh_token(generation).await?;
                }
                Err(Refusal::Remote(e)) => return Err(e),
                Err(Refusal::Local(e)) => {
                    // The session (or its connection) went away under the attach: begin
                    // another, after the reconnect if there is one to wait for.
                    state.attached = None;
                    local_failures += 1;
                    if local_failures >= LOCAL_ATTACH_FAILURES {
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn attach_sender(&self, state: &mut State, amqp: &Amqp) -> Result<(), Refusal> {
        let endpoint = amqp.endpoint();
        let attached = state.attached.as_mut().expect("a session is begun first");
        let address = endpoint.target(&self.partition);
        let mut builder = Sender::builder()
            .name(format!("{}-{}", endpoint.identifier, self.partition))
            .target(address.as_str());
        if endpoint.idempotent {
            builder = builder
                .add_desired_capabilities(IDEMPOTENT_PRODUCER)
                .properties(idempotent_properties(state.identity));
        }
        let generation = attached.generation;
        let attach = tokio::time::timeout(endpoint.timeout, builder.attach(&mut attached.session));
        let answered = tokio::select! {
            answered = attach => answered,
            // The connection went while the attach waited for its answer.
            () = amqp.lost(generation) => {
                return Err(Refusal::Local(Error::connection(
                    "the connection was lost during the attach",
                )))
            }
        };
        let sender = answered
            .map_err(|_| Refusal::Local(Error::timeout()))?
            .map_err(|err| match &err {
                fe2o3_amqp::link::SenderAttachError::RemoteClosedWithError(e) => {
                    let refused = if endpoint.is_broker() {
                        verdict::attach_refused(e, &address)
                    } else {
                        verdict::from_amqp_error(e, true)
                    };
                    Refusal::Remote(refused.with_source(err))
                }
                _ => Refusal::Local(
                    Error::connection(format!("cannot attach a sender to {address}"))
                        .with_source(err),
                ),
            })?;
        if endpoint.idempotent {
            let Some(producer_state) = sender.properties(|p| producer_state_of(p.as_ref())) else {
                let _ = tokio::time::timeout(endpoint.timeout, sender.close()).await;
                return Err(Refusal::Remote(Error::config(format!(
                    "the service did not grant idempotent publishing on partition {}: its \
                     attach reply has no producer state",
                    self.partition
                ))));
            };
            state.identity = Some((producer_state.producer_id, producer_state.epoch));
            attached.producer_state = Some(producer_state);
        }
        attached.sender = Some(sender);
        Ok(())
    }
}

/// What [`Link::send_all`] handed to the session.
#[derive(Default)]
pub(crate) struct Handed {
    /// The settlement of each message transferred, in order.
    pub(crate) settlements: Vec<Settlement>,
    /// The connection generation they went out on.
    pub(crate) generation: u64,
    /// Why the messages after those were not transferred, if they were not.
    pub(crate) stopped: Option<Error>,
}

/// Why an attach failed.
enum Refusal {
    /// The service refused it.
    Remote(Error),
    /// It never got an answer: the session or connection went away, or time ran out.
    Local(Error),
}

/// How a wait for link credit ended.
enum Credit {
    /// The transfer was handed to the session (or the link failed).
    Sent(Result<Settlement, SendError>),
    /// No credit came within the limit; nothing was transferred.
    TimedOut,
    /// The connection was lost while the send waited; nothing was transferred.
    ConnectionLost,
}

/// Hands `message` to the link once it has credit, waiting at most `limit`.
///
/// fe2o3 0.18 wakes a send waiting for credit with `Notify::notify_waiters`, which
/// keeps no permit: credit that arrives between the send's check and its wait (the
/// flow that follows an attach reply, say) is never announced, and the send would
/// wait for good with credit in hand. The race is rare but real, and the more links a
/// producer attaches the likelier it is. A transfer not yet handed to the session is
/// forgotten when its future is dropped, so the send is started again every
/// [`CREDIT_RECHECK`], which looks at the credit afresh.
async fn send_when_credit<T: SerializableBody>(
    sender: &mut Sender,
    message: &Sendable<T>,
    limit: Duration,
) -> Credit {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let wait =
            CREDIT_RECHECK.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        if let Ok(sent) = tokio::time::timeout(wait, sender.send_batchable_ref(message)).await {
            return Credit::Sent(sent);
        }
        if tokio::time::Instant::now() >= deadline {
            return Credit::TimedOut;
        }
    }
}
