//! Recovery: the events a spool held when the producer was built are its first
//! backlog, which the loader publishes before anything new. With idempotent retries
//! the spooled producer groups are resumed, and the service says how far each got:
//! the events it already stored are reported as stored, not sent again.

use std::time::Duration;

use super::{Partition, Producer};
use crate::amqp::{Amqp, Attach};
use crate::spool::Recovered;
use crate::Error;

/// Tells the links of the recovered partitions which producer group and owner level
/// they published under, so that their first attach resumes that group: the service
/// then reports how far the group got.
pub(crate) fn resume_groups(amqp: &Amqp, recovered: &Recovered) {
    for (partition, stamp) in &recovered.numbered {
        amqp.link(partition).resume(stamp.producer_id, stamp.epoch);
    }
}

/// With idempotent retries: asks the service, for each recovered partition, the last
/// number it stored for the spooled producer group, so that the loader reports the
/// events up to it as stored.
pub(crate) async fn recover(
    producer: &Producer,
    amqp: &Amqp,
    recovered: &Recovered,
    try_timeout: Duration,
) -> Result<(), Error> {
    let Some(spool) = &producer.shared.spool else {
        return Ok(());
    };
    if !producer.shared.idempotent {
        return Ok(());
    }
    // The partitions' states are read together: each read may take a try timeout.
    let reads = recovered
        .numbered
        .iter()
        .map(|(partition, first)| async move {
            if producer.router.resolve(&Partition::id(partition)).is_err() {
                return Ok(());
            }
            let link = amqp.link(partition);
            let state =
                tokio::time::timeout(try_timeout, link.producer_state(amqp, Attach::Current))
                    .await
                    .map_err(|_| {
                        Error::timeout().with_source(format!(
                            "reading partition {partition}'s producer state to recover the spool"
                        ))
                    })??;
            if state.producer_id == first.producer_id {
                spool.resume(partition, state.producer_id, state.last_sequence);
            } else {
                tracing::warn!(
                partition = partition.as_str(),
                spooled = first.producer_id,
                service = state.producer_id,
                "the service did not resume the spooled producer group; its events are sent again"
            );
            }
            Ok::<_, Error>(())
        });
    futures_util::future::try_join_all(reads).await?;
    Ok(())
}
