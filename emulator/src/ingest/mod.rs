//! Links on which clients publish: to the gateway or to one partition.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fe2o3_amqp::acceptor::{LinkAcceptor, SupportedReceiverSettleModes};
use fe2o3_amqp::link::{Receiver, RecvError};
use fe2o3_amqp::types::{
    definitions::{Fields, ReceiverSettleMode},
    messaging::Body,
    performatives::Attach,
    primitives::Symbol,
};
use serde_amqp::Value;

use crate::codec::{self, PRODUCER_SEQUENCE};
use crate::conn::{filler_properties, Acceptor, Conn, Shared};
use crate::fault::FaultKind;
use crate::rejection::Rejection;
use crate::store::{Hub, IdempotentAppend, NewEvent};
use eventhubs_protocol::partition_key::partition_index;

use eventhubs_protocol::{IDEMPOTENT_PRODUCER as IDEMPOTENT, PRODUCER_EPOCH, PRODUCER_ID};

mod split;

use split::split;

/// An accepted publishing link, before it is attached.
#[derive(Debug)]
pub(crate) struct IngestPlan {
    hub: Arc<Hub>,
    /// The partition of a partition link; `None` for the gateway.
    partition: Option<Arc<crate::store::Partition>>,
    idempotent: Option<Idempotent>,
}

#[derive(Debug, Clone, Copy)]
struct Idempotent {
    producer_id: i64,
    epoch: i16,
    last_sequence: i32,
}

impl Idempotent {
    fn announced(&self) -> [(&'static str, Value); 3] {
        [
            (PRODUCER_ID, Value::Long(self.producer_id)),
            (PRODUCER_EPOCH, Value::Short(self.epoch)),
            (PRODUCER_SEQUENCE, Value::Int(self.last_sequence)),
        ]
    }
}

fn property<'a>(attach: &'a Attach, key: &str) -> Option<&'a Value> {
    attach.properties.as_ref()?.get(&Symbol::from(key))
}

fn as_i64(v: Option<&Value>) -> Option<i64> {
    codec::as_integer(v?)
}

pub(crate) fn plan(
    attach: &Attach,
    conn: &Conn,
    hub: String,
    partition: Option<String>,
) -> Result<IngestPlan, Rejection> {
    let hub = conn
        .shared
        .store
        .hub(&hub)
        .cloned()
        .ok_or_else(|| Rejection::new("amqp:not-found", "hub vanished"))?;
    let partition = partition.and_then(|id| hub.partition(&id));
    let wants_idempotence = attach
        .desired_capabilities
        .as_ref()
        .is_some_and(|caps| caps.0.iter().any(|c| c.as_str() == IDEMPOTENT));
    let idempotent = if wants_idempotence {
        let Some(fixed) = &partition else {
            return Err(Rejection::new(
                "com.microsoft:argument-error",
                "Idempotent publishing requires a partition link; the gateway cannot be used.",
            ));
        };
        let epoch = as_i64(property(attach, PRODUCER_EPOCH));
        if epoch.is_some_and(|e| !(0..=i64::from(i16::MAX)).contains(&e)) {
            return Err(Rejection::new(
                "com.microsoft:argument-out-of-range",
                "The producer epoch must be between 0 and 32767.",
            ));
        }
        let producer_id = as_i64(property(attach, PRODUCER_ID))
            .unwrap_or_else(|| conn.shared.next_producer_id.fetch_add(1, Ordering::Relaxed));
        let sequence = as_i64(property(attach, PRODUCER_SEQUENCE))
            .map(|s| {
                i32::try_from(s).map_err(|_| {
                    Rejection::new(
                        "com.microsoft:argument-out-of-range",
                        "The producer sequence number must be an int.",
                    )
                })
            })
            .transpose()?;
        let state = fixed.attach_producer(producer_id, epoch.map(|e| e as i16), sequence)?;
        Some(Idempotent {
            producer_id,
            epoch: state.epoch,
            last_sequence: state.last_sequence,
        })
    } else {
        None
    };
    Ok(IngestPlan {
        hub,
        partition,
        idempotent,
    })
}

impl IngestPlan {
    /// fe2o3 merges the client's attach properties over the reply's, so the values the
    /// service chose (where the client sent null) are written into the incoming attach.
    pub(crate) fn prepare(&self, mut attach: Attach) -> Attach {
        if let Some(i) = self.idempotent {
            let props = attach.properties.get_or_insert_with(Fields::default);
            for (k, v) in i.announced() {
                props.insert(Symbol::from(k), v);
            }
        }
        attach
    }

    /// How long to hold the attach back, if a `slow-attach` fault fires on it. Gateway
    /// links are not partition links and are never held back.
    pub(crate) fn attach_delay(&self, shared: &Shared) -> Option<std::time::Duration> {
        let partition = self.partition.as_ref()?;
        match shared.attach_fault_for(&self.hub.name, &partition.id) {
            Some(FaultKind::SlowAttach(after)) => Some(after),
            _ => None,
        }
    }

    pub(crate) fn acceptor(&self, shared: &Shared) -> Acceptor {
        let mut properties: Fields = filler_properties();
        let mut builder = LinkAcceptor::builder()
            // fe2o3 enforces this hard limit by detaching; the wire layer announces
            // the configured one and `run` rejects what lies between (crate::wire).
            .max_message_size(crate::wire::hard_limit(shared.max_message_size))
            // pyamqp asks for `second` but only acts on settled dispositions.
            .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
            .fallback_receiver_settle_mode(ReceiverSettleMode::First);
        if let Some(i) = self.idempotent {
            for (k, v) in i.announced() {
                properties.insert(Symbol::from(k), v);
            }
            builder = builder.add_offered_capabilities(Symbol::from(IDEMPOTENT));
        }
        builder.properties(properties).build()
    }
}

enum Settle {
    Accept,
    Reject(Rejection),
    Release,
    DelayThenAccept(std::time::Duration),
    Never,
    Detach(Rejection),
    DropConnection,
}

pub(crate) async fn run(mut receiver: Receiver, plan: IngestPlan, conn: Arc<Conn>) {
    let mut stop = conn.stop.clone();
    let mut round_robin = 0usize;
    let hub = plan.hub.clone();
    loop {
        let delivery = tokio::select! {
            d = receiver.recv::<Body<Value>>() => d,
            _ = stop.wait_for(|s| *s) => break,
        };
        let delivery = match delivery {
            Ok(d) => d,
            Err(RecvError::MessageDecode(e)) => {
                let why = Rejection::new("amqp:decode-error", e.source.to_string());
                let _ = receiver.reject(e.info, why.to_error()).await;
                continue;
            }
            Err(e) => {
                // Includes message-size-exceeded, for which fe2o3 has already detached.
                tracing::debug!("publishing link ended: {e}");
                return;
            }
        };
        // A transfer read from the buffers of a connection that was dropped meanwhile
        // (by a fault on another link) is forgotten, as the service forgets it.
        if conn.is_dropped() {
            return;
        }
        if !conn.authorized() {
            let _ = receiver
                .close_with_error(conn.unauthorized().to_error())
                .await;
            return;
        }
        let format = *delivery.message_format();
        let (info, message) = delivery.into_parts();
        let incoming = match split(message, format, plan.idempotent.is_some()) {
            Ok(i) => i,
            Err(why) => {
                let _ = receiver.reject(info, why.to_error()).await;
                continue;
            }
        };
        let max = conn.shared.max_message_size;
        if incoming.size as u64 > max {
            let why = Rejection::new(
                "amqp:link:message-size-exceeded",
                format!(
                    "The received message (size: {} bytes) exceeds the limit ({max} bytes) currently allowed on the link.",
                    incoming.size
                ),
            );
            if receiver.reject(info, why.to_error()).await.is_err() {
                return;
            }
            continue;
        }
        let partition = match (&plan.partition, &incoming.partition_key) {
            (Some(p), _) => p.clone(),
            (None, key) => {
                let parts = hub.partitions();
                let index = match key {
                    Some(key) => partition_index(key, parts.len()),
                    None => {
                        let i = round_robin % parts.len();
                        round_robin = (i + 1) % parts.len();
                        i
                    }
                };
                parts[index].clone()
            }
        };
        let now = conn.shared.clock.now_ms();
        let key = incoming.envelope_key;
        let new_events = || -> Vec<NewEvent> {
            incoming
                .events
                .iter()
                .map(|raw| NewEvent {
                    raw: raw.clone(),
                    partition_key: key.clone(),
                })
                .collect()
        };
        let store = |events: Vec<NewEvent>| -> Result<(), Rejection> {
            if conn.is_dropped() {
                return Err(Rejection::new(
                    "amqp:connection:forced",
                    "The connection was dropped.",
                ));
            }
            match plan.idempotent {
                None => partition.append(events, now),
                Some(i) => {
                    // `split` always sets it on idempotent links.
                    let first = incoming.first_sequence.unwrap_or_default();
                    partition
                        .append_idempotent(i.producer_id, i.epoch, first, events, now)
                        .map(|r| {
                            if r == IdempotentAppend::Duplicate {
                                tracing::debug!("duplicate idempotent batch acknowledged");
                            }
                        })
                }
            }
        };
        let settle = match conn.shared.fault_for(&hub.name, &partition.id) {
            // Fires on attaches, never here.
            None | Some(FaultKind::SlowAttach(_)) => match store(new_events()) {
                Ok(()) => Settle::Accept,
                Err(why) => Settle::Reject(why),
            },
            Some(FaultKind::Reject {
                condition,
                description,
            }) => Settle::Reject(Rejection::new(
                &condition,
                description.unwrap_or_else(|| format!("Injected fault: {condition}.")),
            )),
            Some(FaultKind::Throttle) => Settle::Reject(Rejection::new(
                eventhubs_protocol::SERVER_BUSY,
                "The request was terminated because the namespace is being throttled (injected fault).",
            )),
            Some(FaultKind::Release) => Settle::Release,
            Some(FaultKind::Delay(d)) => match store(new_events()) {
                Ok(()) => Settle::DelayThenAccept(d),
                Err(why) => Settle::Reject(why),
            },
            Some(FaultKind::Stall) => Settle::Never,
            Some(FaultKind::Detach {
                condition,
                description,
            }) => Settle::Detach(Rejection::new(
                &condition,
                description.unwrap_or_else(|| format!("Injected fault: {condition}.")),
            )),
            Some(FaultKind::DropConnection) => {
                let _ = store(new_events());
                Settle::DropConnection
            }
        };
        let done = match settle {
            Settle::Accept => receiver.accept(info).await.is_err(),
            Settle::Reject(why) => receiver.reject(info, why.to_error()).await.is_err(),
            Settle::Release => receiver.release(info).await.is_err(),
            Settle::DelayThenAccept(d) => {
                let disposer = receiver.disposer();
                let conn = conn.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    if !conn.is_dropped() {
                        let _ = disposer.accept(info).await;
                    }
                });
                false
            }
            Settle::Never => false,
            Settle::Detach(why) => {
                let _ = receiver.close_with_error(why.to_error()).await;
                return;
            }
            Settle::DropConnection => {
                conn.drop_connection();
                return;
            }
        };
        if done {
            return;
        }
    }
    let _ = receiver.close().await;
}
