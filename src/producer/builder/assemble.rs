//! Checking the options and assembling a producer: the connection, the lanes, the
//! per-partition stacks and the driver.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tower::{BoxError, Service};

use super::ProducerBuilder;
use crate::amqp::{Amqp, Endpoint, Peer, Proxy, Roots};
use crate::batch::Batch;
use crate::producer::capacity::{Budget, Reservation, StallWatch};
use crate::producer::driver::{inbox, Driver};
use crate::producer::lanes::{LaneSettings, Shared};
use crate::producer::loader::Loader;
use crate::producer::outcome::unread;
use crate::producer::recover::{recover, resume_groups};
use crate::producer::{Outcomes, Producer, MAX_PARTITIONS};
use crate::route::{Keyless, RoundRobin, Router, Sticky};
use crate::stack::{boxed_clone, Base, Connection, Settings, TraceLayer};
use crate::Error;

/// How often the hub's partition ids are read again unless the builder says.
const DEFAULT_PARTITION_REFRESH: Duration = Duration::from_secs(30);

/// How many sticks of keyless events the pending bound holds (see [`Sticky`]).
const STICKS_IN_BUDGET: usize = 4;

/// Reads the partition ids every `period` until the producer is gone or closed.
async fn refresh_partitions(
    shared: Weak<Shared>,
    router: Weak<Router>,
    amqp: Amqp,
    period: Duration,
) {
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match shared.upgrade() {
            Some(s) if !s.closed.load(Ordering::SeqCst) => {}
            _ => return,
        }
        match amqp.properties().await {
            Ok(p) => {
                if let Some(router) = router.upgrade() {
                    router.refresh(p.partition_ids);
                }
            }
            Err(e) if e.is_closed() => return,
            Err(e) => tracing::debug!("partition refresh failed: {e}"),
        }
    }
}

impl ProducerBuilder {
    pub(super) fn validate(&self) -> Result<(), Error> {
        if !(1..=1 << 24).contains(&self.max_pending_events) {
            return Err(Error::config(
                "max_pending_events must be between 1 and 16,777,216",
            ));
        }
        if self.max_pending_bytes == 0 {
            return Err(Error::config("max_pending_bytes must be at least 1"));
        }
        if self.max_concurrent_sends_per_partition == 0 {
            return Err(Error::config(
                "max_concurrent_sends_per_partition must be at least 1",
            ));
        }
        if self.try_timeout.is_zero() {
            return Err(Error::config("try_timeout must be positive"));
        }
        if self.availability_timeout.is_zero() {
            return Err(Error::config(
                "partition_availability_timeout must be positive (adaptive_routing(false) \
                 turns the avoidance off)",
            ));
        }
        if self.delivery_timeout <= self.max_wait {
            return Err(Error::config(format!(
                "delivery_timeout ({:?}) must be longer than max_wait ({:?}): an event may \
                 wait max_wait in its batch before it is even sent",
                self.delivery_timeout, self.max_wait
            )));
        }
        self.check_spool()?;
        if self.idempotent && self.max_concurrent_sends_per_partition > 1 {
            return Err(Error::config(
                "idempotent_retries needs max_concurrent_sends_per_partition = 1: \
                 the service takes an idempotent producer's batches strictly in sequence",
            ));
        }
        Ok(())
    }

    /// Connects, reads the hub's partitions and the link's `max-message-size`, and
    /// starts the producer.
    pub async fn build(mut self) -> Result<(Producer, Outcomes), Error> {
        self.validate()?;
        if let Some(broker) = self.broker.take() {
            return self.build_broker(broker).await;
        }
        let address = self.address.resolve()?;
        let hub_name = address.hub.clone();
        let roots = self.address.roots()?;
        let recovered = self
            .open_spool(&format!("{}/{}", address.host, address.hub))
            .await?;
        let try_timeout = self.try_timeout;
        let amqp = self.spawn(
            roots,
            address.proxy,
            address.url,
            address.host,
            Peer::EventHubs {
                hub: address.hub,
                credential: address.credential,
            },
        );
        resume_groups(&amqp, &recovered);
        let started = async {
            let properties = amqp.properties().await?;
            let max = amqp.max_message_size(&properties.partition_ids[0]).await?;
            Ok::<_, Error>((properties, max))
        };
        let (properties, max) = match started.await {
            Ok(v) => v,
            Err(e) => {
                amqp.close().await;
                return Err(e);
            }
        };
        let refresh = self.partition_refresh.unwrap_or(DEFAULT_PARTITION_REFRESH);
        let (mut producer, outcomes) =
            self.launch(&amqp, &hub_name, properties.partition_ids, max as usize);
        let recovered = recover(&producer, &amqp, &recovered, try_timeout).await;
        producer.shared.loader_go.send_replace(true);
        if let Err(e) = recovered {
            let _ = producer.close_abandon().await;
            return Err(e);
        }
        tokio::spawn(refresh_partitions(
            Arc::downgrade(&producer.shared),
            Arc::downgrade(&producer.router),
            amqp,
            refresh,
        ));
        Ok((producer, outcomes))
    }

    /// Starts the connection task (the connection itself is made on first use).
    pub(super) fn spawn(
        &self,
        roots: Roots,
        proxy: Option<Proxy>,
        url: String,
        host: String,
        peer: Peer,
    ) -> Amqp {
        Amqp::spawn(Endpoint {
            url,
            host,
            peer,
            roots,
            proxy,
            identifier: self.container_id(),
            timeout: self.try_timeout,
            idempotent: self.idempotent,
            reconnect: self.retry.clone(),
        })
    }

    fn container_id(&self) -> String {
        self.identifier
            .clone()
            .unwrap_or_else(|| format!("streaming-producer-{}", std::process::id()))
    }

    /// Starts the producer over `amqp`, which closes with it; `destination` names the
    /// hub (or broker) in traces and metrics.
    pub(super) fn launch(
        self,
        amqp: &Amqp,
        destination: &str,
        partition_ids: Vec<String>,
        max_batch_bytes: usize,
    ) -> (Producer, Outcomes) {
        #[cfg(feature = "opentelemetry")]
        let identifier = self.container_id();
        let base = Base::Amqp(Connection::new(amqp.clone()));
        let closer = amqp.clone();
        let on_close: Pin<Box<dyn Future<Output = ()> + Send>> =
            Box::pin(async move { closer.close().await });
        let (mut producer, outcomes) = self.start(
            base,
            destination,
            partition_ids,
            max_batch_bytes,
            Some(on_close),
        );
        producer.amqp = Some(amqp.clone());
        #[cfg(feature = "opentelemetry")]
        crate::metrics::pending_gauge(
            destination,
            &identifier,
            Arc::downgrade(&producer.shared),
            |shared: &Shared| shared.total_pending(MAX_PARTITIONS),
        );
        #[cfg(feature = "opentelemetry")]
        crate::metrics::outcome_counters(
            destination,
            &identifier,
            Arc::downgrade(&producer.shared),
            |shared: &Shared| shared.stats.all().collect(),
        );
        (producer, outcomes)
    }

    /// Starts a producer over your own batch service instead of the AMQP connection:
    /// for other transports, and for tests. Each partition's stack gets a clone of
    /// `service` at its bottom. `max_batch_bytes` plays the part of the link's
    /// `max-message-size`.
    pub fn build_with_service<S>(
        mut self,
        service: S,
        partition_ids: Vec<String>,
        max_batch_bytes: usize,
    ) -> Result<(Producer, Outcomes), Error>
    where
        S: Service<Batch, Response = ()> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        self.validate()?;
        if partition_ids.is_empty() {
            return Err(Error::config("at least one partition id is needed"));
        }
        if max_batch_bytes == 0 {
            return Err(Error::config("max_batch_bytes must be positive"));
        }
        if self.idempotent {
            return Err(Error::config(
                "idempotent_retries needs the service's producer state, which only the \
                 AMQP connection of build() has",
            ));
        }
        // This builder is not async: the spool is opened on the caller's thread.
        self.open_spool_here(&format!("service:{}", partition_ids.join(",")))?;
        let base = Base::Custom(boxed_clone(service));
        let (producer, outcomes) = self.start(base, "", partition_ids, max_batch_bytes, None);
        producer.shared.loader_go.send_replace(true);
        Ok((producer, outcomes))
    }

    pub(super) fn start(
        mut self,
        base: Base,
        hub: &str,
        partition_ids: Vec<String>,
        max_batch_bytes: usize,
        on_close: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    ) -> (Producer, Outcomes) {
        let stacks = Settings {
            base,
            retry: self.retry.clone(),
            try_timeout: self.try_timeout,
            concurrency: self.max_concurrent_sends_per_partition,
            idempotent: self.idempotent,
            layers: self.layers,
            make: self.stack,
            trace: match self.trace {
                Some(configure) => configure(TraceLayer::new(hub)),
                None => TraceLayer::new(hub),
            },
        };
        let max_pending_events = self.max_pending_events;
        let budget = Budget::new(max_pending_events, self.max_pending_bytes);
        let spool = self.spool.opened.take();
        let (finished_tx, finished) = watch::channel(false);
        let keyless = if self.sticky {
            // A stick is a quarter of the pending bound (capped by a batch's size), so
            // about four batches can be filling or in flight at once, on as many
            // partitions, however many partitions the hub has.
            let sticks = STICKS_IN_BUDGET;
            Keyless::Sticky(
                Sticky::new(max_batch_bytes.min(self.max_pending_bytes / sticks))
                    .max_events(self.max_pending_events / sticks),
            )
        } else {
            Keyless::RoundRobin(RoundRobin::new())
        };
        // A lane for the most partitions a hub can have, so a refreshed partition list
        // never needs new ones.
        let router = Arc::new(Router::new(
            partition_ids,
            MAX_PARTITIONS,
            self.partitioner,
            keyless,
            self.adaptive,
        ));
        let lanes = LaneSettings {
            idempotent: self.idempotent,
            lanes: MAX_PARTITIONS.max(router.count()),
            max_batch_bytes,
            spool,
            recovered: self.spool.recovered_events,
        };
        let shared = Arc::new(Shared::new(lanes, budget.clone(), finished));
        let (inbox, signals) = inbox();
        // Every queued outcome holds at least one event's capacity, so this never fills.
        let (outcomes_tx, outcomes_rx) = mpsc::channel(max_pending_events + 1);
        let reservation = Reservation::new(&budget, StallWatch::new(unread(&outcomes_tx)));
        tokio::spawn(
            Driver {
                signals,
                stacks,
                outcomes: outcomes_tx,
                shared: shared.clone(),
                router: router.clone(),
                max_batch_bytes,
                max_wait: self.max_wait,
                delivery_timeout: self.delivery_timeout,
                availability_timeout: self.availability_timeout,
                on_close,
                finished: finished_tx,
            }
            .run(),
        );
        let producer = Producer::new(
            shared.clone(),
            router.clone(),
            inbox.clone(),
            None,
            reservation,
        );
        if let Some(spool) = shared.spool.clone() {
            // Spawned once the first handle counts, which keeps it going.
            tokio::spawn(
                Loader {
                    shared,
                    router,
                    inbox,
                    spool,
                    delivery_timeout: self.delivery_timeout,
                    spool_idempotent: self.spool.recovered_idempotent,
                }
                .run(),
            );
        }
        (producer, Outcomes::new(outcomes_rx))
    }
}
