//! A generic AMQP 1.0 broker in place of Event Hubs: its option, its checks and its
//! start.

use std::collections::HashSet;

use super::ProducerBuilder;
use crate::amqp::{Amqp, Peer};
use crate::connect::BrokerUrl;
use crate::producer::{Outcomes, Producer, MAX_PARTITIONS};
use crate::Error;

/// A broker's URL and the addresses that stand in for partitions.
#[derive(Debug)]
pub(super) struct Broker {
    url: String,
    addresses: Vec<String>,
}

impl ProducerBuilder {
    /// Publishes to a generic AMQP 1.0 broker (RabbitMQ's AMQP 1.0 plugin, Apache
    /// Qpid, ActiveMQ, Solace...) instead of Event Hubs. `url` is
    /// `amqp://user:password@host:port` (SASL PLAIN; percent-encode any `@`, `:` or
    /// `/` in them), `amqp://host:port` (SASL ANONYMOUS) or `amqps://…` for TLS;
    /// `addresses` are the target addresses that stand in for partitions, in a fixed
    /// order: events with a partition key go to `addresses[hash(key) % n]`, with the
    /// same hash as Event Hubs (or the [`partitioner`](Self::partitioner) given),
    /// keyless events are spread as [`sticky_routing`](Self::sticky_routing) says, and
    /// an event's [partition id](crate::EventData::with_partition_id) is one of the
    /// addresses. Each address is attached at build, so a wrong URL or login fails
    /// there, and so does a wrong address if the broker refuses its attach; a broker
    /// that refuses a link by detaching it right after the attach (as Event Hubs does)
    /// fails the events sent there, with an error that names the address.
    ///
    /// Such brokers take no batched messages, so a batch is sent as one message per
    /// event (the key as the `x-opt-partition-key` annotation, as Event Hubs has it),
    /// one after another on the address's link within its credit, without waiting for
    /// one's settlement before the next. Each batch still has one outcome: it
    /// succeeds once the broker has accepted every event; otherwise it fails with the
    /// broker's first refusal, in the batch's order. A retry sends only the events not
    /// yet accepted, so a retry never stores an event twice, but a retried event may
    /// be stored after later events of its batch. A batch that finally fails after
    /// the broker accepted some of its events has an error for which
    /// [`Error::is_ambiguous`] is true. Delivery is at least once: an acknowledgement
    /// lost with the connection leaves its event to be sent again.
    ///
    /// What needs Event Hubs is refused at build: [idempotent
    /// retries](Self::idempotent_retries), a [partition refresh
    /// interval](Self::partition_refresh_interval), and a connection string,
    /// namespace, hub or credential.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::SinkExt;
    /// use streaming_producer::{EventData, Producer};
    ///
    /// let (mut producer, _outcomes) = Producer::builder()
    ///     .amqp_broker(
    ///         "amqp://app:secret@127.0.0.1:5672",
    ///         ["/queue/orders-0", "/queue/orders-1"],
    ///     )
    ///     .build()
    ///     .await?;
    /// producer.send(EventData::new("paid").with_partition_key("order-17")).await?;
    /// producer.close().await?;
    /// # Ok(()) }
    /// ```
    pub fn amqp_broker(
        mut self,
        url: &str,
        addresses: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.broker = Some(Broker {
            url: url.to_owned(),
            addresses: addresses.into_iter().map(Into::into).collect(),
        });
        self
    }

    fn check_broker(&self, addresses: &[String]) -> Result<(), Error> {
        self.address.refuse_with_broker()?;
        if self.idempotent {
            return Err(Error::config(
                "idempotent_retries needs Event Hubs' idempotent producer state, which a \
                 generic AMQP broker does not keep; to a broker, delivery is at least once",
            ));
        }
        if self.partition_refresh.is_some() {
            return Err(Error::config(
                "partition_refresh_interval reads a hub's partition ids again; a broker's \
                 addresses are the ones given to amqp_broker",
            ));
        }
        if addresses.is_empty() {
            return Err(Error::config(
                "amqp_broker needs at least one address (a queue or topic to publish to)",
            ));
        }
        if addresses.len() > MAX_PARTITIONS {
            return Err(Error::config(format!(
                "amqp_broker takes at most {MAX_PARTITIONS} addresses, not {}",
                addresses.len()
            )));
        }
        let mut seen = HashSet::new();
        for address in addresses {
            if address.trim().is_empty() {
                return Err(Error::config("an address given to amqp_broker is empty"));
            }
            if !seen.insert(address) {
                return Err(Error::config(format!(
                    "the address '{address}' is given to amqp_broker twice: keys would \
                     hash to it as two partitions"
                )));
            }
        }
        Ok(())
    }

    /// Connects, attaches every address's link, and starts the producer.
    pub(super) async fn build_broker(
        mut self,
        broker: Broker,
    ) -> Result<(Producer, Outcomes), Error> {
        let Broker { url, addresses } = broker;
        self.check_broker(&addresses)?;
        let url = BrokerUrl::parse(&url)?;
        // A broker has no idempotent producers: what the spool holds is sent again.
        self.open_spool(&url.url).await?;
        let login = url.login.clone();
        let roots = self.address.roots()?;
        let proxy = self.address.broker_proxy(&url)?;
        let amqp = self.spawn(
            roots,
            proxy,
            url.url.clone(),
            url.host.clone(),
            Peer::Broker { login },
        );
        match self.attach_all(&amqp, &addresses).await {
            Ok(max) => {
                // The smallest link's limit bounds every batch, so each of its messages
                // fits whichever address it goes to.
                let max = usize::try_from(max).unwrap_or(usize::MAX);
                let (producer, outcomes) = self.launch(&amqp, &url.url, addresses, max);
                producer.shared.loader_go.send_replace(true);
                Ok((producer, outcomes))
            }
            Err(e) => {
                amqp.close().await;
                Err(e)
            }
        }
    }

    /// Connects, failing at once if the broker cannot be reached (rather than waiting
    /// to reconnect, as sends do), then attaches every address's link, each within the
    /// try timeout; returns the smallest `max-message-size`.
    async fn attach_all(&self, amqp: &Amqp, addresses: &[String]) -> Result<u64, Error> {
        let bounded = |what: String| move |_| Error::timeout().with_source(what);
        let (mut session, _) = tokio::time::timeout(self.try_timeout, amqp.session(false))
            .await
            .map_err(bounded(format!("connecting to {}", amqp.endpoint().url)))??;
        let _ = tokio::time::timeout(self.try_timeout, session.end()).await;
        // The first address alone, so that a refused login is tried once (brokers slow
        // down failed logins: RabbitMQ by seconds), then the others together.
        let Some((first, others)) = addresses.split_first() else {
            return Err(Error::config("amqp_broker needs at least one address"));
        };
        let mut max = u64::MAX;
        for batch in [vec![first], others.iter().collect()] {
            let sizes = futures_util::future::join_all(batch.into_iter().map(|a| {
                let attach = amqp.max_message_size(a);
                async move {
                    tokio::time::timeout(self.try_timeout, attach)
                        .await
                        .map_err(bounded(format!("attaching a sender to {a}")))?
                }
            }))
            .await;
            for size in sizes {
                max = max.min(size?);
            }
        }
        Ok(max)
    }
}
