//! [`Connection`]: the producer's connection, as the stack's layers see it.

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
