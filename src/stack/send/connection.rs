//! [`Connection`]: the producer's connection, as the stack's layers see it.

use streaming_producer_layers::idempotency::{Attach, ProducerStates, ReadFuture};

use crate::amqp::Amqp;

/// A handle on a producer's AMQP connection (one per producer, shared by every
/// partition's link, reconnected with backoff when lost), for building
/// [`AmqpSend`](crate::stack::AmqpSend) and
/// [`IdempotencyLayer`](crate::stack::IdempotencyLayer) in a stack of
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

/// The partition links, attached as an idempotent producer, report the state.
impl ProducerStates for Connection {
    fn read(&self, partition: &str, attach: Attach) -> ReadFuture {
        let (amqp, partition) = (self.amqp.clone(), partition.to_owned());
        Box::pin(async move { amqp.producer_state(&partition, attach).await })
    }
}
