//! The partition links: attaching them (as an idempotent producer when asked),
//! handing transfers to them once they have credit, and `$management` reads.

use std::time::Duration;

use fe2o3_amqp::link::{SendError, Sender};
use fe2o3_amqp::types::primitives::SimpleValue;
use serde_amqp::Value;
use tokio::sync::oneshot;

use super::management::status_error;
use super::props::{idempotent_properties, producer_state_of};
use super::task::Task;
use super::{rpc, wire, Attach, ProducerState, Reply, Settlement, Wire};
use super::{IDEMPOTENT_PRODUCER, UNAUTHORIZED};
use crate::error::{Error, Kind};

/// How often a send that waits for link credit looks at the credit again. Not much
/// shorter: a send cancelled after it took its credit (while the transfer waits for
/// room on the session) gives that one credit up.
const CREDIT_RECHECK: Duration = Duration::from_secs(1);

impl Task {
    /// The partition's sender link, attached if needed. An attach refused as
    /// unauthorized (the token expired early by the service's clock, say) puts a
    /// fresh token and tries once more.
    pub(super) async fn sender(&mut self, partition: &str) -> Result<&mut Sender, Error> {
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

    pub(super) async fn attach_sender(&mut self, partition: &str) -> Result<(), Error> {
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

    pub(super) async fn producer_state(
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
    pub(super) async fn send(
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
    pub(super) async fn read(&mut self, partition: Option<String>) -> Result<Reply, Error> {
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
