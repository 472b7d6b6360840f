//! Configuring and connecting a [`Reader`]: where it reads from, how it connects, and
//! the checks at `build`.

use std::sync::Arc;
use std::time::Duration;

use super::Reader;
use crate::amqp::{Amqp, Endpoint, Peer};
use crate::connect::{Address, BrokerUrl};
use crate::credential::Credential;
use crate::Error;
use streaming_producer_layers::retry::RetryPolicy;

/// Configures and connects a [`Reader`].
#[derive(Debug)]
pub struct ReaderBuilder {
    address: Address,
    /// A generic AMQP broker's URL, instead of a hub.
    broker: Option<String>,
    consumer_group: String,
    prefetch: u32,
    timeout: Duration,
}

impl Default for ReaderBuilder {
    fn default() -> Self {
        Self {
            address: Address::default(),
            broker: None,
            consumer_group: "$Default".to_owned(),
            prefetch: 300,
            timeout: Duration::from_secs(60),
        }
    }
}

impl ReaderBuilder {
    /// The namespace's (or the hub's) connection string.
    pub fn connection_string(mut self, connection_string: &str) -> Self {
        self.address.connection_string = Some(connection_string.to_owned());
        self
    }

    /// The namespace by its fully qualified name, instead of a connection string; see
    /// [`ProducerBuilder::fully_qualified_namespace`](crate::ProducerBuilder::fully_qualified_namespace).
    pub fn fully_qualified_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.address.namespace = Some(namespace.into());
        self
    }

    /// The namespace is a local emulator (plain AMQP); see
    /// [`ProducerBuilder::use_development_emulator`](crate::ProducerBuilder::use_development_emulator).
    pub fn use_development_emulator(mut self, emulator: bool) -> Self {
        self.address.development_emulator = emulator;
        self
    }

    /// The event hub, if the connection string has no `EntityPath`.
    pub fn hub(mut self, hub: impl Into<String>) -> Self {
        self.address.hub = Some(hub.into());
        self
    }

    /// A token provider; overrides the connection string's credentials.
    pub fn credential(mut self, credential: impl Credential) -> Self {
        self.address.credential = Some(Arc::new(credential));
        self
    }

    /// A generic AMQP 1.0 broker instead of Event Hubs (see
    /// [`ProducerBuilder::amqp_broker`](crate::ProducerBuilder::amqp_broker)): a
    /// [`read`](Reader::read) of such a reader takes the messages of a queue (its
    /// address in place of a partition id) from its head, accepting each one it
    /// yields, so that the broker removes it.
    pub fn amqp_broker(mut self, url: &str) -> Self {
        self.broker = Some(url.to_owned());
        self
    }

    /// Trusts the certificates of `pem` over TLS besides the public roots; see
    /// [`ProducerBuilder::add_root_certificate_pem`](crate::ProducerBuilder::add_root_certificate_pem).
    pub fn add_root_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.address.root_certificates.push(pem.as_ref().to_vec());
        self
    }

    /// Connects with AMQP over WebSockets; see
    /// [`ProducerBuilder::web_sockets`](crate::ProducerBuilder::web_sockets). Needs the
    /// crate's `websockets` feature.
    #[cfg(feature = "websockets")]
    pub fn web_sockets(mut self, web_sockets: bool) -> Self {
        self.address.web_sockets = web_sockets;
        self
    }

    /// Goes through an HTTP proxy's tunnel; see
    /// [`ProducerBuilder::proxy`](crate::ProducerBuilder::proxy). Needs the crate's
    /// `websockets` feature.
    #[cfg(feature = "websockets")]
    pub fn proxy(mut self, url: &str) -> Self {
        self.address.proxy = Some(url.to_owned());
        self
    }

    /// The consumer group reads go through (default `$Default`).
    pub fn consumer_group(mut self, group: impl Into<String>) -> Self {
        self.consumer_group = group.into();
        self
    }

    /// How many events the service may send ahead of what the reader has taken
    /// (link credit; default 300).
    pub fn prefetch(mut self, events: u32) -> Self {
        self.prefetch = events;
        self
    }

    /// Bound on connecting, attaching and each `$management` read (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects and reads the hub's properties, so that a wrong hub or credential
    /// fails here.
    pub async fn build(self) -> Result<Reader, Error> {
        if self.consumer_group.is_empty() {
            return Err(Error::config("the consumer group name is empty"));
        }
        if self.prefetch == 0 {
            return Err(Error::config("prefetch must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(Error::config("the timeout must be positive"));
        }
        let (url, host, peer, proxy) = match &self.broker {
            Some(url) => {
                self.address.refuse_with_broker()?;
                let broker = BrokerUrl::parse(url)?;
                let proxy = self.address.broker_proxy(&broker)?;
                let login = broker.login;
                (broker.url, broker.host, Peer::Broker { login }, proxy)
            }
            None => {
                let address = self.address.resolve()?;
                let hub = address.hub;
                let credential = address.credential;
                let peer = Peer::EventHubs { hub, credential };
                (address.url, address.host, peer, address.proxy)
            }
        };
        let roots = self.address.roots()?;
        let amqp = Amqp::spawn(Endpoint {
            url,
            host,
            peer,
            roots,
            proxy,
            identifier: format!("hubcat-reader-{}", std::process::id()),
            timeout: self.timeout,
            idempotent: false,
            reconnect: RetryPolicy::default(),
        });
        let reader = Reader {
            amqp,
            consumer_group: self.consumer_group,
            prefetch: self.prefetch,
        };
        // A wrong hub, address or credential fails here rather than on the first read.
        let checked = if reader.amqp.endpoint().is_broker() {
            match reader.amqp.session(false).await {
                Ok((mut session, _)) => {
                    let _ = tokio::time::timeout(self.timeout, session.end()).await;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            reader.hub_properties().await.map(drop)
        };
        if let Err(e) = checked {
            reader.amqp.close().await;
            return Err(e);
        }
        Ok(reader)
    }
}
