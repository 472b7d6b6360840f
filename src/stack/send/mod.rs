//! The base service: publishes one batch on its partition's link.
//!
//! Files as in tower: `connection` ([`Connection`], what the service is made from),
//! `future` (one try: a batched message to Event Hubs), `each` (one try to a generic
//! broker: a message per event), and here the service, [`AmqpSend`].

mod connection;
mod each;
mod future;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::amqp::{Amqp, Link};
use crate::batch::Batch;
use crate::Error;

pub use connection::Connection;
use each::publish_each;
use future::publish;

/// Publishes a [`Batch`] as one batched AMQP message (format `0x80013700`) on the
/// partition's sender link (to a generic broker: a message per event, see
/// [`ProducerBuilder::amqp_broker`](crate::ProducerBuilder::amqp_broker)) and maps the
/// disposition: `accepted` is success;
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
        if self.amqp.endpoint().is_broker() {
            Box::pin(publish_each(self.amqp.clone(), link, batch))
        } else {
            Box::pin(publish(self.amqp.clone(), link, batch))
        }
    }
}
