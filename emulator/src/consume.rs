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
use crate::store::{Hub, StoredEvent};

use crate::rejection::Rejection;

use eventhubs_protocol::SELECTOR_FILTER as SELECTOR;

/// Where a reader starts, from the selector filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartFilter {
    /// Events whose `field` is greater than (or equal to, if `inclusive`) `value`.
    After {
        field: Field,
        value: i64,
        inclusive: bool,
    },
    /// Only events stored after the link attached (`@latest`).
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Offset,
    SequenceNumber,
    EnqueuedTime,
}

impl StartFilter {
    pub(crate) fn admits(&self, e: &StoredEvent) -> bool {
        match *self {
            StartFilter::Latest => false,
            StartFilter::After {
                field,
                value,
                inclusive,
            } => {
                let v = match field {
                    Field::Offset => e.offset as i64,
                    Field::SequenceNumber => e.sequence_number,
                    Field::EnqueuedTime => e.enqueued_time_ms,
                };
                v > value || (inclusive && v == value)
            }
        }
    }

    /// The sequence number a reader with this filter starts at in `partition`. For
    /// sequence numbers that is exact even past the end; for offsets and times it is
    /// the first retained match or the tail (the reader keeps checking the filter on
    /// what arrives later).
    pub(crate) fn position(&self, partition: &crate::store::Partition) -> i64 {
        if let StartFilter::After {
            field: Field::SequenceNumber,
            value,
            inclusive,
        } = *self
        {
            return value.saturating_add(i64::from(!inclusive)).max(0);
        }
        partition.first_admitted(|e| self.admits(e))
    }

    /// Parses `amqp.annotation.x-opt-offset > '-1'` and its variants (quoted or not,
    /// `>` or `>=`, offset / sequence number / enqueued time, `@latest`).
    pub(crate) fn parse(expression: &str) -> Result<Self, Rejection> {
        let bad = || {
            Rejection::new(
                "amqp:invalid-field",
                format!("The selector filter '{expression}' is not supported."),
            )
        };
        let rest = expression
            .trim()
            .strip_prefix("amqp.annotation.")
            .ok_or_else(bad)?;
        let (field, rest) = [
            ("x-opt-offset", Field::Offset),
            ("x-opt-sequence-number", Field::SequenceNumber),
            ("x-opt-enqueued-time", Field::EnqueuedTime),
        ]
        .into_iter()
        .find_map(|(name, f)| rest.strip_prefix(name).map(|r| (f, r.trim_start())))
        .ok_or_else(bad)?;
        let (inclusive, rest) = if let Some(r) = rest.strip_prefix(">=") {
            (true, r)
        } else if let Some(r) = rest.strip_prefix('>') {
            (false, r)
        } else {
            return Err(bad());
        };
        let value = rest.trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(value);
        if value == "@latest" {
            return Ok(StartFilter::Latest);
        }
        let value: i64 = value.parse().map_err(|_| bad())?;
        Ok(StartFilter::After {
            field,
            value,
            inclusive,
        })
    }
}

/// An accepted reading link, before it is attached.
#[derive(Debug)]
pub(crate) struct ConsumePlan {
    partition: Arc<crate::store::Partition>,
    start: i64,
    /// Checked on each event until one passes (offsets and times only grow).
    filter: Option<StartFilter>,
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

pub(crate) fn plan(
    attach: &Attach,
    hub: Arc<Hub>,
    partition: &str,
) -> Result<ConsumePlan, Rejection> {
    let p = hub
        .partition(partition)
        .ok_or_else(|| Rejection::new("com.microsoft:argument-out-of-range", "bad partition"))?;
    // Without a filter a reader starts at the end, as the service's default is `@latest`.
    let filter = selector(attach).map(StartFilter::parse).transpose()?;
    let start = match &filter {
        None | Some(StartFilter::Latest) => p.tail(),
        Some(filter) => filter.position(&p),
    };
    Ok(ConsumePlan {
        partition: p,
        start,
        filter: filter.filter(|f| *f != StartFilter::Latest),
    })
}

/// Deliveries go out pre-settled, so a client that never settles costs no memory.
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

pub(crate) async fn run(mut sender: Sender, plan: ConsumePlan, conn: Arc<Conn>) {
    let partition = &plan.partition;
    let mut stop = conn.stop.clone();
    let mut tail = partition.subscribe();
    let mut next = plan.start;
    let mut filter = plan.filter;
    'outer: loop {
        let batch = partition.read_from(next, 64);
        if batch.is_empty() {
            tokio::select! {
                changed = tail.changed() => if changed.is_err() { break },
                _ = stop.wait_for(|s| *s) => break,
                _ = sender.on_detach() => return,
            }
            continue;
        }
        if !conn.authorized() {
            let _ = sender
                .close_with_error(conn.unauthorized().to_error())
                .await;
            return;
        }
        for e in batch {
            next = e.sequence_number + 1;
            if let Some(f) = &filter {
                if !f.admits(&e) {
                    continue;
                }
                filter = None;
            }
            let message = to_delivery(&e);
            let sent = tokio::select! {
                r = sender.send_batchable(message) => r.is_ok(),
                _ = stop.wait_for(|s| *s) => break 'outer,
            };
            if !sent {
                return;
            }
        }
    }
    let _ = sender.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(field: Field, value: i64, inclusive: bool) -> StartFilter {
        StartFilter::After {
            field,
            value,
            inclusive,
        }
    }

    #[test]
    fn every_sdk_form_of_the_selector_parses() {
        let cases = [
            (
                "amqp.annotation.x-opt-offset > '-1'",
                after(Field::Offset, -1, false),
            ),
            (
                "amqp.annotation.x-opt-offset > -1",
                after(Field::Offset, -1, false),
            ),
            (
                "amqp.annotation.x-opt-offset >= '120'",
                after(Field::Offset, 120, true),
            ),
            (
                "amqp.annotation.x-opt-sequence-number > '5'",
                after(Field::SequenceNumber, 5, false),
            ),
            (
                "amqp.annotation.x-opt-sequence-number >= 12345",
                after(Field::SequenceNumber, 12345, true),
            ),
            (
                "amqp.annotation.x-opt-enqueued-time > '1700000000000'",
                after(Field::EnqueuedTime, 1_700_000_000_000, false),
            ),
            (
                "amqp.annotation.x-opt-offset > '@latest'",
                StartFilter::Latest,
            ),
            (
                "amqp.annotation.x-opt-offset > @latest",
                StartFilter::Latest,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(StartFilter::parse(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn unsupported_selectors_are_refused() {
        for text in [
            "",
            "amqp.annotation.x-opt-offset",
            "amqp.annotation.x-opt-offset < '5'",
            "amqp.annotation.x-opt-other > '5'",
            "amqp.annotation.x-opt-offset > 'abc'",
            "sys.foo > 1",
        ] {
            let e = StartFilter::parse(text).unwrap_err();
            assert_eq!(e.condition, "amqp:invalid-field", "{text}");
        }
    }
}
