//! Recovery: the events a spool held when the producer was built go into their
//! partitions' lanes before the application gets the producer, so each partition
//! publishes them before anything new. With idempotent retries, the service is asked
//! how far the spooled producer group got first: the events it already stored are
//! reported (as stored) and not sent again.

use std::time::Duration;

use fe2o3_amqp::types::messaging::Data;

use super::capacity::Capacity;
use super::driver::Signal;
use super::lanes::Outbox as _;
use super::{BatchOutcome, Partition, Producer};
use crate::amqp::{Amqp, Attach};
use crate::batch::Batch;
use crate::codec;
use crate::spool::{Recovered, RecoveredEvent};
use crate::{Error, Events};

/// Tells the links of the recovered partitions which producer group and owner level
/// they published under, so that their first attach resumes that group: the service
/// then reports how far the group got.
pub(crate) fn resume_groups(amqp: &Amqp, recovered: &Recovered) {
    for part in &recovered.partitions {
        if let Some(stamp) = part.events.iter().find_map(|e| e.stamp) {
            amqp.link(&part.partition)
                .resume(stamp.producer_id, stamp.epoch);
        }
    }
}

/// Puts the recovered events into their lanes (or straight into outcomes when their
/// fate is known already); with idempotent retries over `amqp`, asks the service first
/// which of them it stored.
pub(crate) async fn recover(
    producer: &Producer,
    amqp: Option<&Amqp>,
    mut recovered: Recovered,
    try_timeout: Duration,
) -> Result<(), Error> {
    // The partitions' states are read together: each read may take a try timeout.
    let reads = recovered.partitions.iter().map(|part| async move {
        match (amqp, producer.shared.idempotent) {
            (Some(amqp), true)
                if producer
                    .router
                    .resolve(&Partition::id(&part.partition))
                    .is_ok() =>
            {
                stored(amqp, &part.partition, &part.events, try_timeout).await
            }
            _ => Ok(0),
        }
    });
    let stored_counts = futures_util::future::try_join_all(reads).await?;
    place(producer, std::mem::take(&mut recovered), &stored_counts)
}

/// Puts the recovered events into their lanes, the first `stored[i]` events of the
/// `i`th partition straight into a succeeded outcome.
pub(crate) fn place(
    producer: &Producer,
    recovered: Recovered,
    stored: &[usize],
) -> Result<(), Error> {
    let shared = &producer.shared;
    let reencode = recovered.idempotent != shared.idempotent;
    for (part, &stored) in recovered.partitions.into_iter().zip(stored) {
        let mut events = part.events;
        let index = match producer.router.resolve(&Partition::id(&part.partition)) {
            Ok(index) => index,
            Err(error) => {
                // The destination no longer has this partition (or address).
                settle(producer, &part.partition, events, None, Err(error))?;
                continue;
            }
        };
        let id = producer.router.id(index);
        if stored > 0 {
            let rest = events.split_off(stored.min(events.len()));
            let first = events[0].stamp.map(|s| s.sequence);
            tracing::info!(
                partition = id,
                events = events.len(),
                "events recovered from the spool were already stored"
            );
            settle(producer, &id, events, first, Ok(()))?;
            events = rest;
        }
        for event in events {
            let encoded = if reencode {
                match codec::decode::event(&event.encoded) {
                    Some(decoded) => codec::encode(&decoded, shared.idempotent),
                    None => event.encoded,
                }
            } else {
                event.encoded
            };
            let cost = Batch::cost(&encoded);
            if cost > shared.max_batch_bytes {
                let error = Error::too_large(cost, shared.max_batch_bytes);
                let event = RecoveredEvent { encoded, ..event };
                settle(producer, &id, vec![event], None, Err(error))?;
                continue;
            }
            let slot = shared.budget.try_reserve().ok_or_else(no_room)?;
            shared.append_recovered(
                &producer.inbox,
                index,
                &id,
                (event.pinned, encoded, cost),
                event.index,
                slot,
            );
        }
        // What is left in the lane goes now, and before any new event.
        shared.seal_with(index, |sealed| sealed.map(|s| producer.inbox.sealed(s)));
    }
    Ok(())
}

/// How many of a partition's recovered events (from the first) the service already
/// stored, by the last sequence number it reports for their producer group.
async fn stored(
    amqp: &Amqp,
    partition: &str,
    events: &[RecoveredEvent],
    try_timeout: Duration,
) -> Result<usize, Error> {
    let Some(first) = events.first().and_then(|e| e.stamp) else {
        return Ok(0);
    };
    let link = amqp.link(partition);
    let state = tokio::time::timeout(try_timeout, link.producer_state(amqp, Attach::Current))
        .await
        .map_err(|_| {
            Error::timeout().with_source(format!(
                "reading partition {partition}'s producer state to recover the spool"
            ))
        })??;
    if state.producer_id != first.producer_id {
        tracing::warn!(
            partition,
            spooled = first.producer_id,
            service = state.producer_id,
            "the service did not resume the spooled producer group; its events are sent again"
        );
        return Ok(0);
    }
    // An event is stored if its number is at or before the service's last, within
    // half the sequence space (the numbers wrap).
    let half = 1i64 << 30;
    Ok(events
        .iter()
        .take_while(|e| {
            e.stamp.is_some_and(|s| {
                s.producer_id == state.producer_id
                    && (i64::from(state.last_sequence) - i64::from(s.sequence)).rem_euclid(1 << 31)
                        < half
            })
        })
        .count())
}

fn no_room() -> Error {
    Error::spool("no room for the events recovered from the spool")
}

/// Reports recovered events whose fate is known without publishing them.
fn settle(
    producer: &Producer,
    partition: &str,
    events: Vec<RecoveredEvent>,
    starting_sequence_number: Option<i32>,
    result: Result<(), Error>,
) -> Result<(), Error> {
    let shared = &producer.shared;
    let mut capacity = Capacity::new(&shared.budget);
    let mut spans = Vec::new();
    let mut pinned = Vec::new();
    let mut sections = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let slot = shared.budget.try_reserve().ok_or_else(no_room)?;
        let bytes = event.encoded.len();
        shared.budget.count_bytes(bytes);
        capacity.add(slot, bytes);
        crate::events::push_span(&mut spans, event.index, 1);
        if event.pinned {
            pinned.push(i as u32);
        }
        sections.push(Data(event.encoded.into()));
    }
    let events = Events::from_encoded(partition, sections, pinned).spooled_at(spans, true);
    let outcome = BatchOutcome {
        partition: partition.to_owned(),
        events,
        size_in_bytes: 0,
        starting_sequence_number,
        result,
        recovered: true,
    };
    producer.inbox.send_or_closed(Signal::Settled {
        outcome: Box::new(outcome),
        capacity,
    })
}
