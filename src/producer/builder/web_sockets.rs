//! AMQP over WebSockets and HTTP proxies, for networks that let only port 443 out.

use super::ProducerBuilder;

impl ProducerBuilder {
    /// Connects with AMQP over WebSockets rather than over TCP, as the Azure SDKs do
    /// with their WebSockets transport (.NET's `EventHubsTransportType.AmqpWebSockets`,
    /// Python's `TransportType.AmqpOverWebsocket`): to the service at
    /// `wss://HOST:443/$servicebus/websocket` with the subprotocol `AMQPWSB10`, for
    /// networks whose firewall lets only HTTPS's port out; to a local emulator
    /// (`UseDevelopmentEmulator=true`) at `ws://HOST:PORT/$servicebus/websocket` on the
    /// connection string's port (`hubcat emulator --ws-bind` serves one). A port in the
    /// connection string wins over 443. A generic broker takes a `ws://` or `wss://`
    /// URL instead (see [`amqp_broker`](Self::amqp_broker)).
    ///
    /// Everything above the transport is the same: `$cbs` tokens, links, batches.
    /// Needs the crate's `websockets` feature.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), streaming_producer::Error> {
    /// use streaming_producer::Producer;
    ///
    /// let (producer, outcomes) = Producer::builder()
    ///     .connection_string(
    ///         "Endpoint=sb://my-namespace.servicebus.windows.net/;\
    ///          SharedAccessKeyName=send;SharedAccessKey=KEY;EntityPath=orders",
    ///     )
    ///     .web_sockets(true)
    ///     .build()
    ///     .await?;
    /// # drop((producer, outcomes)); Ok(()) }
    /// ```
    pub fn web_sockets(mut self, web_sockets: bool) -> Self {
        self.address.web_sockets = web_sockets;
        self
    }

    /// Goes through an HTTP proxy: `http://host:port`, or `http://user:password@host:port`
    /// for Basic authentication (percent-encode any `@`, `:` or `/` in them). The
    /// connection asks the proxy for a tunnel (`CONNECT HOST:443`), and TLS and the
    /// WebSocket run through it end to end. A proxy that refuses fails the connection
    /// with its status line (`407 Proxy Authentication Required` is not retried).
    ///
    /// As in the .NET SDK (whose proxy option needs `AmqpWebSockets`), a proxy carries
    /// AMQP over WebSockets only: it needs [`web_sockets(true)`](Self::web_sockets) (or
    /// a broker's `ws://`/`wss://` URL), else [`build`](Self::build) fails. Checked at
    /// `build`. Needs the crate's `websockets` feature.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), streaming_producer::Error> {
    /// use streaming_producer::Producer;
    ///
    /// let (producer, outcomes) = Producer::builder()
    ///     .connection_string(
    ///         "Endpoint=sb://my-namespace.servicebus.windows.net/;\
    ///          SharedAccessKeyName=send;SharedAccessKey=KEY;EntityPath=orders",
    ///     )
    ///     .web_sockets(true)
    ///     .proxy("http://proxy.internal:3128")
    ///     .build()
    ///     .await?;
    /// # drop((producer, outcomes)); Ok(()) }
    /// ```
    pub fn proxy(mut self, url: &str) -> Self {
        self.address.proxy = Some(url.to_owned());
        self
    }
}
