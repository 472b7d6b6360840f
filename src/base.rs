//! The base service: publishes one batch on its partition's link.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use fe2o3_amqp::link::SendError;
use fe2o3_amqp::types::definitions;
use fe2o3_amqp::types::messaging::{Batch as AmqpBatch, Data, Message, Outcome};
use fe2o3_amqp::types::primitives::Binary;
use fe2o3_amqp::Sendable;

use crate::amqp::Amqp;
use crate::batch::Batch;
use crate::codec::{self, Stamp, BATCH_FORMAT};
use crate::error::{Error, Kind};
use streaming_producer_layers::sequence::advance;

/// A failed publish: the error, and the batch handed back.
#[derive(Debug)]
pub struct SendFailure {
    /// What went wrong.
    pub error: Error,
    /// The batch, unchanged.
    pub batch: Batch,
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "publishing {} events to partition {} failed",
            self.batch.len(),
            self.batch.partition()
        )
    }
}

impl streaming_producer_layers::retry::Retryable<Batch> for SendFailure {
    fn is_retryable(&self) -> bool {
        self.error.is_retryable()
    }

    fn into_request(self) -> Result<Batch, Self> {
        Ok(self.batch)
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.batch.deadline()
    }
}

impl std::error::Error for SendFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Publishes a [`Batch`] as one batched AMQP message (format `0x80013700`) on the
/// partition's sender link and maps the disposition: `accepted` is success;
/// `rejected` carries the service's condition; `released` and `modified` are
/// (retryable) failures. Each try is bounded by the try timeout; a connection lost
/// while waiting fails the batch at once.
#[derive(Debug, Clone)]
pub struct AmqpSend {
    amqp: Amqp,
    try_timeout: Duration,
    #[cfg(feature = "opentelemetry")]
    metrics: std::sync::Arc<crate::metrics::PublishMetrics>,
}

impl AmqpSend {
    pub(crate) fn new(amqp: Amqp, try_timeout: Duration, hub: &str) -> Self {
        #[cfg(not(feature = "opentelemetry"))]
        let _ = hub;
        Self {
            amqp,
            try_timeout,
            #[cfg(feature = "opentelemetry")]
            metrics: crate::metrics::PublishMetrics::new(hub),
        }
    }
}

/// The name of an AMQP error condition, e.g. `amqp:link:message-size-exceeded`.
pub(crate) fn condition_name(condition: &definitions::ErrorCondition) -> String {
    match condition {
        definitions::ErrorCondition::Custom(s) => s.as_str().to_owned(),
        other => match serde_amqp::to_value(other) {
            Ok(serde_amqp::Value::Symbol(s)) => s.as_str().to_owned(),
            _ => format!("{other:?}"),
        },
    }
}

pub(crate) fn from_amqp_error(e: &definitions::Error, detached: bool) -> Error {
    let condition = condition_name(&e.condition);
    let description = e.description.clone().unwrap_or_default();
    Error::new(if detached {
        Kind::Detached {
            condition,
            description,
        }
    } else {
        Kind::Rejected {
            condition,
            description,
        }
    })
}

/// Maps a fe2o3 send error.
pub(crate) fn send_error(err: SendError) -> Error {
    use fe2o3_amqp::link::{DetachError, LinkStateError};
    match &err {
        SendError::Detached(
            DetachError::RemoteDetachedWithError(e) | DetachError::RemoteClosedWithError(e),
        )
        | SendError::LinkStateError(
            LinkStateError::RemoteDetachedWithError(e) | LinkStateError::RemoteClosedWithError(e),
        ) => from_amqp_error(e, true).with_source(err),
        SendError::MessageSizeExceeded(m) => Error::new(Kind::TooLarge {
            size: m.size as usize,
            max: m.max_size as usize,
        }),
        _ => Error::connection("the link or connection failed").with_source(err),
    }
}

pub(crate) fn to_wire(batch: &Batch) -> crate::amqp::Wire {
    let stamp = batch.stamp();
    let sections: Vec<Data> = batch
        .encoded()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut bytes = e.to_vec();
            if let Some(first) = stamp {
                let sequence = advance(first.sequence, i as u32);
                codec::stamp(&mut bytes, Stamp { sequence, ..first });
            }
            Data(Binary::from(bytes))
        })
        .collect();
    let message = Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: None,
        application_properties: None,
        body: AmqpBatch::from(sections),
        footer: None,
    };
    Sendable::builder()
        .message(message)
        .message_format(BATCH_FORMAT)
        .build()
}

async fn publish(send: AmqpSend, batch: Batch) -> Result<Batch, SendFailure> {
    use tracing::Instrument as _;
    let AmqpSend {
        amqp,
        try_timeout,
        #[cfg(feature = "opentelemetry")]
        metrics,
    } = send;
    #[cfg(feature = "opentelemetry")]
    let (started, partition, events) = (
        std::time::Instant::now(),
        batch.partition().to_owned(),
        batch.len(),
    );
    // One span per try, named and tagged after the OpenTelemetry messaging conventions.
    let span = tracing::info_span!(
        "eventhubs.publish",
        otel.kind = "producer",
        messaging.system = "eventhubs",
        messaging.operation.name = "send",
        messaging.destination.partition.id = %batch.partition(),
        messaging.batch.message_count = batch.len() as u64,
        messaging.batch.size_bytes = batch.size_in_bytes() as u64,
        error.type = tracing::field::Empty,
    );
    let result = try_publish(amqp, try_timeout, batch)
        .instrument(span.clone())
        .await;
    if let Err(failure) = &result {
        span.record("error.type", failure.error.to_string());
    }
    #[cfg(feature = "opentelemetry")]
    metrics.record(
        &partition,
        events,
        started.elapsed(),
        result.as_ref().err().map(|f| &f.error),
    );
    result
}

/// One try. Handing the batch to the link waits for the connection (shared by every
/// partition, reconnecting with backoff) and for link credit, up to the batch's
/// deadline: nothing has reached the service yet, so that wait is not a try. From the
/// transfer on, the try is bounded by `try_timeout` and the deadline, and a failure
/// without a verdict from the service marks the batch as maybe stored.
async fn try_publish(
    amqp: Amqp,
    try_timeout: Duration,
    mut batch: Batch,
) -> Result<Batch, SendFailure> {
    let deadline = batch.deadline();
    let expired = || deadline.is_some_and(|d| d <= Instant::now());
    if expired() {
        return Err(SendFailure {
            error: Error::delivery_timeout(),
            batch,
        });
    }
    let handed = until(deadline, amqp.send(batch.partition(), to_wire(&batch))).await;
    let (settlement, generation) = match handed {
        Some(Ok(sent)) => sent,
        Some(Err(error)) => return Err(SendFailure { error, batch }),
        // The connection task gives up a send whose caller is gone, so nothing was
        // transferred (short of the deadline passing within the hand-over itself).
        None => {
            let error = amqp
                .why_disconnected()
                .map_or_else(Error::delivery_timeout, |why| {
                    Error::delivery_timeout().with_source(why)
                });
            return Err(SendFailure { error, batch });
        }
    };
    let try_deadline = Instant::now() + try_timeout;
    let limit = deadline.map_or(try_deadline, |d| d.min(try_deadline));
    let verdict = tokio::time::timeout_at(limit, async {
        tokio::select! {
            outcome = settlement => match outcome {
                Ok(Outcome::Accepted(_)) => Ok(()),
                Ok(Outcome::Rejected(r)) => Err(r
                    .error
                    .as_ref()
                    .map(|e| from_amqp_error(e, false))
                    .unwrap_or_else(|| Error::new(Kind::Rejected {
                        condition: "amqp:internal-error".into(),
                        description: "rejected without an error".into(),
                    }))),
                Ok(Outcome::Released(_)) => Err(Error::new(Kind::NotAccepted("released"))),
                Ok(Outcome::Modified(_)) => Err(Error::new(Kind::NotAccepted("modified"))),
                #[allow(unreachable_patterns)]
                Ok(_) => Err(Error::new(Kind::NotAccepted("did not accept"))),
                // The link or session ended with the delivery unsettled.
                Err(e) => Err(send_error(e).into_ambiguous()),
            },
            _ = amqp.lost(generation) => Err(Error::connection(
                "the connection was lost before the batch was settled",
            )
            .into_ambiguous()),
        }
    })
    .await;
    let error = match verdict {
        Ok(Ok(())) => return Ok(batch),
        Ok(Err(error)) => error,
        Err(_) if expired() => Error::delivery_timeout().into_ambiguous(),
        Err(_) => Error::new(Kind::Timeout).into_ambiguous(),
    };
    if error.is_ambiguous() {
        batch.set_maybe_stored();
    }
    Err(SendFailure { error, batch })
}

/// Runs `work` until `deadline` (forever without one); `None` if the deadline came first.
async fn until<F: Future>(deadline: Option<Instant>, work: F) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, work).await.ok(),
        None => Some(work.await),
    }
}

impl tower::Service<Batch> for AmqpSend {
    type Response = Batch;
    type Error = SendFailure;
    type Future = Pin<Box<dyn Future<Output = Result<Batch, SendFailure>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        Box::pin(publish(self.clone(), batch))
    }
}
