//! What the commands that talk to a hub share: where it is (or, instead, a generic
//! AMQP 1.0 broker), a producer builder and a reader of it.

use clap::Args;
use streaming_producer::{Error, Producer, ProducerBuilder, Reader};

/// The environment variable that stands in for `--connection-string`.
pub(crate) const CONNECTION_STRING_ENV: &str = "EVENTHUBS_CONNECTION_STRING";

/// The namespace and hub a command talks to.
#[derive(Debug, Args)]
pub(crate) struct HubArgs {
    /// Connection string of the namespace (or of the hub, with EntityPath); without it,
    /// the EVENTHUBS_CONNECTION_STRING environment variable's.
    #[arg(long, value_name = "CONNECTION_STRING")]
    connection_string: Option<String>,
    /// The event hub, if the connection string has no EntityPath.
    #[arg(long)]
    pub(crate) hub: Option<String>,
    /// A generic AMQP 1.0 broker instead of Event Hubs: amqp://user:password@host:port,
    /// amqp://host:port (anonymous) or amqps://... for TLS; its queues or topics are
    /// given with --address.
    #[arg(long, value_name = "URL", requires = "addresses",
          conflicts_with_all = ["connection_string", "hub"])]
    pub(crate) amqp_url: Option<String>,
    /// With --amqp-url: an address (queue or topic) that stands in for a partition;
    /// repeat for several. Keys hash over them in the order given, as over a hub's
    /// partitions.
    #[arg(long = "address", value_name = "ADDRESS", requires = "amqp_url")]
    pub(crate) addresses: Vec<String>,
    /// Trust the CA certificates of this PEM file over TLS, besides the public roots
    /// (`hubcat emulator --tls-ca-out` writes the one it makes).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
    /// Connect with AMQP over WebSockets (wss://HOST:443/$servicebus/websocket; to the
    /// emulator, ws:// on the connection string's port), for networks that let only
    /// HTTPS out. With --amqp-url, give a ws:// or wss:// URL instead.
    #[arg(long, conflicts_with = "amqp_url")]
    pub(crate) web_sockets: bool,
    /// Go through this HTTP proxy's tunnel: http://host:port or
    /// http://user:password@host:port. Needs --web-sockets (or a ws:// or wss://
    /// --amqp-url).
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
}

impl HubArgs {
    /// A producer builder for the hub, or for the broker of `--amqp-url`.
    pub(crate) fn producer_builder(&self) -> Result<ProducerBuilder, String> {
        let mut builder = match &self.amqp_url {
            Some(url) => Producer::builder().amqp_broker(url, self.addresses.iter()),
            None => Producer::builder().connection_string(&self.connection_string()?),
        };
        if let Some(hub) = &self.hub {
            builder = builder.hub(hub.clone());
        }
        if let Some(pem) = self.tls_ca()? {
            builder = builder.add_root_certificate_pem(pem);
        }
        builder = builder.web_sockets(self.web_sockets);
        if let Some(proxy) = &self.proxy {
            builder = builder.proxy(proxy);
        }
        Ok(builder)
    }

    /// The PEM of `--tls-ca`, read.
    fn tls_ca(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(path) = &self.tls_ca else {
            return Ok(None);
        };
        std::fs::read(path)
            .map(Some)
            .map_err(|e| format!("--tls-ca: cannot read {}: {e}", path.display()))
    }

    /// The connection string: `--connection-string`, else the environment's. Read by
    /// hand rather than by clap's `env`, so that an error can say which it was.
    pub(crate) fn connection_string(&self) -> Result<String, String> {
        if let Some(cs) = &self.connection_string {
            return Ok(cs.clone());
        }
        match std::env::var(CONNECTION_STRING_ENV) {
            Ok(cs) if !cs.trim().is_empty() => Ok(cs),
            _ => Err(format!(
                "no connection string: give --connection-string, or set \
                 {CONNECTION_STRING_ENV} (`hubcat emulator` runs a local emulator and prints \
                 its connection string)"
            )),
        }
    }

    /// An error of connecting, with a hint where a flag of hubcat's is the fix, and
    /// where the connection string came from if the user did not type it.
    pub(crate) fn explain(&self, e: &Error) -> String {
        // The library names its builder method where the fix here is a flag.
        self.explain_in_library_words(e)
            .replace(
                "add it with add_root_certificate_pem",
                "trust it with --tls-ca FILE",
            )
            .replace("drop web_sockets", "drop --web-sockets")
            .replace("add web_sockets(true)", "add --web-sockets")
    }

    fn explain_in_library_words(&self, e: &Error) -> String {
        if self.amqp_url.is_some() {
            let text = crate::chain(e);
            return if e.is_not_found() {
                format!("{text} (check --address)")
            } else {
                text
            };
        }
        explain(e, self.hub.is_some(), self.connection_string.is_none())
    }

    /// A reader of the hub, through `consumer_group`.
    pub(crate) async fn reader(&self, consumer_group: &str) -> Result<Reader, String> {
        let mut builder = match &self.amqp_url {
            Some(url) => Reader::builder().amqp_broker(url),
            None => Reader::builder()
                .connection_string(&self.connection_string()?)
                .consumer_group(consumer_group),
        };
        if let Some(hub) = &self.hub {
            builder = builder.hub(hub.clone());
        }
        if let Some(pem) = self.tls_ca()? {
            builder = builder.add_root_certificate_pem(pem);
        }
        builder = builder.web_sockets(self.web_sockets);
        if let Some(proxy) = &self.proxy {
            builder = builder.proxy(proxy);
        }
        builder.build().await.map_err(|e| self.explain(&e))
    }
}

/// An error of connecting, with a hint where a flag of hubcat's is the fix;
/// `hub_given` says whether `--hub` was, `from_env` whether the connection string came
/// from the environment.
pub(crate) fn explain(e: &Error, hub_given: bool, from_env: bool) -> String {
    let mut text = crate::chain(e);
    let mut hints = Vec::new();
    if text.contains("no event hub named") && !hub_given {
        // The library's wording names its builder method; here the fix is a flag.
        let named = text.replace("(ProducerBuilder::hub)", "with --hub NAME");
        if named == text {
            hints.push("give it with --hub NAME".to_owned());
        }
        text = named;
    } else if e.is_not_found() {
        hints.push("check --hub or EntityPath".to_owned());
    }
    if from_env {
        hints.push(format!(
            "the connection string came from {CONNECTION_STRING_ENV}"
        ));
    }
    if hints.is_empty() {
        text
    } else {
        format!("{text} ({})", hints.join("; "))
    }
}
