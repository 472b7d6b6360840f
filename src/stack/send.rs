//! The base service: publishes one batch on its partition's link.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use fe2o3_amqp::types::messaging::Outcome;
use tokio::time::Instant;

use crate::amqp::{to_wire, Amqp, Link};
use crate::batch::Batch;
use crate::error::{Error, Kind};

/// A handle on a producer's AMQP connection (one per producer, shared by every
/// partition's link, reconnected with backoff when lost), for building
/// [`AmqpSend`] and [`IdempotencyLayer`](super::IdempotencyLayer) in a stack of
/// your own. Cloning shares the connection.
#[derive(Debug, Clone)]
pub struct Connection {
    amqp: Amqp,
}

impl Connection {
    pub(crate) fn new(amqp: Amqp) -> Self {
        Self { amqp }
    }

    pub(crate) fn amqp(&self) -> &Amqp {
        &self.amqp
    }
}

/// Publishes a [`Batch`] as one batched AMQP message (format `0x80013700`) on the
/// partition's sender link and maps the disposition: `accepted` is success;
/// `rejected` carries the service's condition; `released` and `modified` are
/// retryable failures; a connection lost before the verdict fails the batch at once,
/// marked as [maybe stored](Batch::may_have_been_stored).
///
/// A try waits for the connection (while it is being re-established) and for link
/// credit before the transfer; bound it with tower's `Timeout` (the producer's stack
/// does, at `try_timeout`). A try cut short after its transfer marks the batch as
/// maybe stored too. No try starts after the batch's deadline.
#[derive(Debug, Clone)]
pub struct AmqpSend {
    amqp: Amqp,
    /// The link of the last batch's partition (a stack serves one partition).
    link: Option<Arc<Link>>,
}

impl AmqpSend {
    /// Publishes over `connection`.
    pub fn new(connection: &Connection) -> Self {
        Self {
            amqp: connection.amqp().clone(),
            link: None,
        }
    }
}

impl tower::Service<Batch> for AmqpSend {
    type Response = ();
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        let link = match &self.link {
            Some(link) if link.partition() == batch.partition() => Arc::clone(link),
            _ => {
                let link = self.amqp.link(batch.partition());
                self.link = Some(Arc::clone(&link));
                link
            }
        };
        Box::pin(publish(self.amqp.clone(), link, batch))
    }
}

/// Marks the batch as maybe stored unless the try ends with the service's verdict:
/// dropped (a timeout cut the try short) or failed without one.
struct InDoubt<'a> {
    batch: &'a Batch,
    settled: bool,
}

impl Drop for InDoubt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.batch.mark_maybe_stored();
        }
    }
}

/// One try.
async fn publish(amqp: Amqp, link: Arc<Link>, batch: Batch) -> Result<(), Error> {
    if batch.deadline().is_some_and(|d| d <= Instant::now()) {
        return Err(Error::delivery_timeout());
    }
    // Waits for the connection and for credit; an error here means nothing was
    // transferred. Cut short while waiting, nothing is transferred either.
    let message = to_wire(&batch);
    let send = link.send(&amqp, &message);
    let handed = match batch.deadline() {
        Some(d) => tokio::time::timeout_at(d, send).await.ok(),
        None => Some(send.await),
    };
    let (settlement, generation) = match handed {
        Some(sent) => sent?,
        // Waiting for the connection (or credit) until the deadline: say why.
        None => {
            return Err(amqp
                .why_disconnected()
                .map_or_else(Error::delivery_timeout, |why| {
                    Error::delivery_timeout().with_source(why)
                }))
        }
    };
    let mut doubt = InDoubt {
        batch: &batch,
        settled: false,
    };
    let verdict = tokio::select! {
        outcome = settlement => match outcome {
            Ok(Outcome::Accepted(_)) => Ok(()),
            Ok(Outcome::Rejected(r)) => Err(r
                .error
                .as_ref()
                .map(|e| crate::amqp::from_amqp_error(e, false))
                .unwrap_or_else(|| Error::new(Kind::Rejected {
                    condition: "amqp:internal-error".into(),
                    description: "rejected without an error".into(),
                }))),
            Ok(Outcome::Released(_)) => Err(Error::new(Kind::NotAccepted("released"))),
            Ok(Outcome::Modified(_)) => Err(Error::new(Kind::NotAccepted("modified"))),
            #[allow(unreachable_patterns)]
            Ok(_) => Err(Error::new(Kind::NotAccepted("did not accept"))),
            // The link or session ended with the delivery unsettled.
            Err(e) => Err(crate::amqp::send_error(e).into_ambiguous()),
        },
        _ = amqp.lost(generation) => Err(Error::connection(
            "the connection was lost before the batch was settled",
        )
        .into_ambiguous()),
    };
    doubt.settled = !verdict.as_ref().is_err_and(Error::is_ambiguous);
    verdict
}
