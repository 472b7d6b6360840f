//! Links on which clients read a partition through a consumer group.

use std::sync::Arc;

use fe2o3_amqp::acceptor::{LinkAcceptor, SupportedSenderSettleModes};
use fe2o3_amqp::link::Sender;
use fe2o3_amqp::types::{
    definitions::SenderSettleMode,
    messaging::{
        annotations::OwnedKey, Body, Data, DeliveryAnnotations, Message, MessageAnnotations,
    },
    performatives::Attach,
    primitives::{Symbol, Timestamp},
};
use serde_amqp::Value;

use crate::codec;
use crate::conn::{filler_properties, Acceptor, Conn};
use crate::rejection::Rejection;
use crate::store::{Hub, PartitionInfo, StoredEvent};

use eventhubs_protocol::{
    CONSUMER_EPOCH, LAST_ENQUEUED_OFFSET, LAST_ENQUEUED_SEQUENCE_NUMBER,
    LAST_ENQUEUED_SEQUENCE_NUMBER_EPOCH, LAST_ENQUEUED_TIME, RECEIVER_NAME,
    RECEIVER_RUNTIME_METRIC, RUNTIME_INFO_RETRIEVAL_TIME, SELECTOR_FILTER as SELECTOR,
    SEQUENCE_NUMBER_EPOCH,
};

mod filter;
mod owners;

use filter::StartFilter;
pub(crate) use owners::Readers;
use owners::{Claim, Registration};

/// The replication epoch the service stamps on a namespace without geo-replication.
const NO_REPLICATION_EPOCH: i32 = -1;

/// An accepted reading link, before it is attached.
#[derive(Debug)]
pub(crate) struct ConsumePlan {
    partition: Arc<crate::store::Partition>,
    start: i64,
    /// Checked on each event until one passes (offsets and times only grow).
    filter: Option<StartFilter>,
    /// The reader's place on the partition, held for as long as the link runs.
    registration: Registration,
    /// Whether each delivery carries the partition's last enqueued event.
    runtime_metric: bool,
}

fn selector(attach: &Attach) -> Option<&str> {
    let filter = attach.source.as_ref()?.filter.as_ref()?;
    match filter.get(&Symbol::from(SELECTOR))? {
        Value::Described(d) => match &d.value {
            Value::String(s) => Some(s),
            _ => None,
        },
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn claim(attach: &Attach) -> Claim {
    let property = |key: &str| attach.properties.as_ref()?.get(&Symbol::from(key));
    Claim {
        epoch: property(CONSUMER_EPOCH).and_then(codec::as_integer),
        name: match property(RECEIVER_NAME) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        },
    }
}

fn desires(attach: &Attach, capability: &str) -> bool {
    attach
        .desired_capabilities
        .as_ref()
        .is_some_and(|caps| caps.0.iter().any(|c| c.as_str() == capability))
}

pub(crate) fn plan(
    attach: &Attach,
    hub: Arc<Hub>,
    consumer_group: &str,
    partition: &str,
) -> Result<ConsumePlan, Rejection> {
    let p = hub
        .partition(partition)
        .ok_or_else(|| Rejection::new("com.microsoft:argument-out-of-range", "bad partition"))?;
    let filter = selector(attach).map(StartFilter::parse).transpose()?;
    let start = match &filter {
        // Without a filter the service starts at the beginning of the partition:
        // Microsoft's recorded live run (azure-sdk-for-python,
        // sdk/eventhub/azure-eventhub/tests/amqpproxy_recordings/livetest/synctests/test_send.test_send_list[pyamqp]-2.json)
        // attaches with no filter and is handed sequence number 0, enqueued 11 s
        // earlier. Reading from 0 yields whatever is retained.
        None => 0,
        Some(StartFilter::Latest) => p.tail(),
        Some(filter) => filter.position(&p),
    };
    // Checked last, so that a link refused for its filter displaces nobody.
    let registration = p.readers.join(consumer_group, claim(attach))?;
    Ok(ConsumePlan {
        partition: p,
        start,
        filter: filter.filter(|f| *f != StartFilter::Latest),
        registration,
        runtime_metric: desires(attach, RECEIVER_RUNTIME_METRIC),
    })
}

/// Deliveries go out pre-settled, so a client that never settles costs no memory.
/// fe2o3 echoes the client's attach properties (its epoch among them) in the reply,
/// as the service does; the runtime-metric capability is not offered back, as the
/// service does not (recorded in azure-sdk-for-python,
/// `.../synctests/test_receive.test_receive_with_event_position_sync[pyamqp-offset-False-Exclusive]-5.json`).
pub(crate) fn acceptor() -> Acceptor {
    LinkAcceptor::builder()
        .properties(filler_properties())
        .supported_sender_settle_modes(SupportedSenderSettleModes::Settled)
        .fallback_sender_settle_mode(SenderSettleMode::Settled)
        .build()
}

/// The partition's last enqueued event as read at `retrieved_ms`.
#[derive(Debug, Clone, Copy)]
struct RuntimeInfo {
    info: PartitionInfo,
    retrieved_ms: i64,
}

fn symbol(key: &str) -> OwnedKey {
    OwnedKey::Symbol(Symbol::from(key))
}

/// The event as the service delivers it. Names, sections and AMQP types are those of
/// the service's transfers recorded in azure-sdk-for-python's
/// `sdk/eventhub/azure-eventhub/tests/amqpproxy_recordings/livetest/synctests/`:
/// message annotations `x-opt-sequence-number-epoch` (int), `x-opt-sequence-number`
/// (long), `x-opt-offset` (string), `x-opt-enqueued-time` (timestamp), after those the
/// publisher set (`x-opt-partition-key`, a string); with runtime metrics, delivery
/// annotations `last_enqueued_sequence_number_epoch` (int),
/// `last_enqueued_sequence_number` (long), `last_enqueued_offset` (string),
/// `last_enqueued_time_utc` and `runtime_info_retrieval_time_utc` (timestamps).
fn to_delivery(e: &StoredEvent, runtime: Option<RuntimeInfo>) -> Message<Body<Value>> {
    let mut message = codec::decode_message(&e.raw).unwrap_or_else(|_| Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: None,
        application_properties: None,
        body: Body::Data(vec![Data(e.raw.to_vec().into())].into()),
        footer: None,
    });
    let annotations = message
        .message_annotations
        .get_or_insert_with(MessageAnnotations::default);
    let mut put = |k: &str, v: Value| {
        annotations.0.insert(symbol(k), v);
    };
    if let Some(key) = e.envelope_key() {
        put(codec::PARTITION_KEY, Value::String(key));
    }
    put(SEQUENCE_NUMBER_EPOCH, Value::Int(NO_REPLICATION_EPOCH));
    put(codec::SEQUENCE_NUMBER, Value::Long(e.sequence_number));
    put(codec::OFFSET, Value::String(e.offset.to_string()));
    put(
        codec::ENQUEUED_TIME,
        Value::Timestamp(Timestamp::from_milliseconds(e.enqueued_time_ms)),
    );
    if let Some(RuntimeInfo { info, retrieved_ms }) = runtime {
        let annotations = message
            .delivery_annotations
            .get_or_insert_with(DeliveryAnnotations::default);
        let time = |ms: i64| Value::Timestamp(Timestamp::from_milliseconds(ms));
        for (k, v) in [
            (
                LAST_ENQUEUED_SEQUENCE_NUMBER_EPOCH,
                Value::Int(NO_REPLICATION_EPOCH),
            ),
            (
                LAST_ENQUEUED_SEQUENCE_NUMBER,
                Value::Long(info.last_sequence_number),
            ),
            (
                LAST_ENQUEUED_OFFSET,
                Value::String(info.last_offset.to_string()),
            ),
            (
                LAST_ENQUEUED_TIME,
                time(info.last_enqueued_time_ms.unwrap_or(e.enqueued_time_ms)),
            ),
            (RUNTIME_INFO_RETRIEVAL_TIME, time(retrieved_ms)),
        ] {
            annotations.0.insert(symbol(k), v);
        }
    }
    message
}

/// What ended a wait of the reading loop.
enum Wake {
    More,
    Stop,
    Detached,
    Displaced(Rejection),
}

pub(crate) async fn run(mut sender: Sender, plan: ConsumePlan, conn: Arc<Conn>) {
    let ConsumePlan {
        partition,
        start,
        mut filter,
        mut registration,
        runtime_metric,
    } = plan;
    let mut stop = conn.stop.clone();
    let mut tail = partition.subscribe();
    let mut next = start;
    let why = 'outer: loop {
        let batch = partition.read_from(next, 64);
        if batch.is_empty() {
            // Biased: a reader displaced before new events arrived never sees them.
            let wake = tokio::select! {
                biased;
                why = registration.displaced() => Wake::Displaced(why),
                changed = tail.changed() => if changed.is_err() { Wake::Stop } else { Wake::More },
                _ = stop.wait_for(|s| *s) => Wake::Stop,
                _ = sender.on_detach() => Wake::Detached,
            };
            match wake {
                Wake::More => continue,
                Wake::Stop => break None,
                Wake::Detached => return,
                Wake::Displaced(why) => break Some(why),
            }
        }
        if !conn.authorized() {
            break Some(conn.unauthorized());
        }
        let runtime = runtime_metric.then(|| RuntimeInfo {
            info: partition.info(),
            retrieved_ms: conn.shared.clock.now_ms(),
        });
        for e in batch {
            next = e.sequence_number + 1;
            if let Some(f) = &filter {
                if !f.admits(&e) {
                    continue;
                }
                filter = None;
            }
            if let Some(why) = registration.displaced_now() {
                break 'outer Some(why);
            }
            let message = to_delivery(&e, runtime);
            let wake = tokio::select! {
                biased;
                why = registration.displaced() => Wake::Displaced(why),
                r = sender.send_batchable(message) => if r.is_ok() { Wake::More } else { Wake::Detached },
                _ = stop.wait_for(|s| *s) => Wake::Stop,
            };
            match wake {
                Wake::More => {}
                Wake::Stop => break 'outer None,
                Wake::Detached => return,
                Wake::Displaced(why) => break 'outer Some(why),
            }
        }
    };
    match why {
        Some(why) => {
            let _ = sender.close_with_error(why.to_error()).await;
        }
        None => {
            let _ = sender.close().await;
        }
    }
}
