//! Links on which clients read a partition through a consumer group.

use std::sync::Arc;

use fe2o3_amqp::acceptor::{LinkAcceptor, SupportedSenderSettleModes};
use fe2o3_amqp::link::Sender;
use fe2o3_amqp::types::{
    definitions::SenderSettleMode,
    messaging::{annotations::OwnedKey, Body, Data, Message, MessageAnnotations},
    performatives::Attach,
    primitives::{Symbol, Timestamp},
};
use serde_amqp::Value;

use crate::codec;
use crate::conn::{filler_properties, Acceptor, Conn};
use crate::rejection::Rejection;
use crate::store::{Hub, StoredEvent};

use eventhubs_protocol::{CONSUMER_EPOCH, RECEIVER_NAME, SELECTOR_FILTER as SELECTOR};

mod filter;
mod owners;

use filter::StartFilter;
pub(crate) use owners::Readers;
use owners::{Claim, Registration};

/// An accepted reading link, before it is attached.
#[derive(Debug)]
pub(crate) struct ConsumePlan {
    partition: Arc<crate::store::Partition>,
    start: i64,
    /// Checked on each event until one passes (offsets and times only grow).
    filter: Option<StartFilter>,
    /// The reader's place on the partition, held for as long as the link runs.
    registration: Registration,
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
    })
}

/// Deliveries go out pre-settled, so a client that never settles costs no memory.
/// fe2o3 echoes the client's attach properties (its epoch among them) in the reply,
/// as the service does.
pub(crate) fn acceptor() -> Acceptor {
    LinkAcceptor::builder()
        .properties(filler_properties())
        .supported_sender_settle_modes(SupportedSenderSettleModes::Settled)
        .fallback_sender_settle_mode(SenderSettleMode::Settled)
        .build()
}

fn to_delivery(e: &StoredEvent) -> Message<Body<Value>> {
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
        annotations.0.insert(OwnedKey::Symbol(Symbol::from(k)), v);
    };
    put(codec::SEQUENCE_NUMBER, Value::Long(e.sequence_number));
    put(codec::OFFSET, Value::String(e.offset.to_string()));
    put(
        codec::ENQUEUED_TIME,
        Value::Timestamp(Timestamp::from_milliseconds(e.enqueued_time_ms)),
    );
    if let Some(key) = &e.envelope_key() {
        put(codec::PARTITION_KEY, Value::String(key.clone()));
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
            let message = to_delivery(&e);
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
