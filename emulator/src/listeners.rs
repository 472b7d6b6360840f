//! The listeners besides the plain AMQP one, each serving the same hubs: AMQP over TLS
//! (the service's port 5671), AMQP over WebSockets (`ws://`, as the emulator mode of
//! Microsoft's SDKs dials it), and AMQP over WebSockets with TLS (`wss://`, the
//! service's port 443): their options, their binding, and where a client finds them.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::server::Layers;
use crate::{EmulatorBuilder, EmulatorHandle, StartError, TlsIdentity};

/// What the builder was asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    tls: Option<(TlsIdentity, SocketAddr)>,
    web_sockets: Option<SocketAddr>,
    web_sockets_tls: Option<SocketAddr>,
}

/// Where the listeners listen, once bound.
#[derive(Debug, Default)]
pub(crate) struct Addrs {
    tls: Option<SocketAddr>,
    tls_ca_pem: Option<String>,
    web_sockets: Option<SocketAddr>,
    web_sockets_tls: Option<SocketAddr>,
}

/// The listeners bound, for `start` to serve.
pub(crate) struct Bound {
    pub(crate) addrs: Addrs,
    pub(crate) listeners: Vec<(TcpListener, Layers)>,
}

async fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr).await.map_err(StartError::Bind)?;
    let bound = listener.local_addr().map_err(StartError::Bind)?;
    Ok((listener, bound))
}

impl Options {
    /// Binds every listener asked for.
    pub(crate) async fn bind(&self) -> Result<Bound, StartError> {
        let mut addrs = Addrs::default();
        let mut listeners = Vec::new();
        let acceptor = match &self.tls {
            Some((identity, _)) => {
                let config = identity
                    .server_config()
                    .map_err(|e| StartError::Config(e.to_string()))?;
                addrs.tls_ca_pem = identity.ca_pem().map(str::to_owned);
                Some(tokio_rustls::TlsAcceptor::from(config))
            }
            None => None,
        };
        if let (Some((_, addr)), Some(tls)) = (&self.tls, &acceptor) {
            let (listener, bound) = listen(*addr).await?;
            addrs.tls = Some(bound);
            let tls = Some(tls.clone());
            listeners.push((
                listener,
                Layers {
                    tls,
                    web_socket: false,
                },
            ));
        }
        if let Some(addr) = self.web_sockets {
            let (listener, bound) = listen(addr).await?;
            addrs.web_sockets = Some(bound);
            listeners.push((
                listener,
                Layers {
                    tls: None,
                    web_socket: true,
                },
            ));
        }
        if let Some(addr) = self.web_sockets_tls {
            let Some(tls) = &acceptor else {
                return Err(StartError::Config(
                    "web_sockets_tls presents the TLS identity given to tls(identity, \
                     addr): give that too"
                        .into(),
                ));
            };
            let (listener, bound) = listen(addr).await?;
            addrs.web_sockets_tls = Some(bound);
            let tls = Some(tls.clone());
            listeners.push((
                listener,
                Layers {
                    tls,
                    web_socket: true,
                },
            ));
        }
        Ok(Bound { addrs, listeners })
    }
}

impl EmulatorBuilder {
    /// A second listener that speaks AMQP over TLS, as the service does on port 5671,
    /// presenting `identity`, on `addr` (`127.0.0.1:0` for an ephemeral port). Both
    /// listeners serve the same hubs.
    pub fn tls(mut self, identity: TlsIdentity, addr: SocketAddr) -> Self {
        self.listeners.tls = Some((identity, addr));
        self
    }

    /// A listener that speaks AMQP over WebSockets without TLS on `addr`
    /// (`127.0.0.1:0` for an ephemeral port), serving the same hubs: an upgrade
    /// request to `/$servicebus/websocket` asking for the subprotocol `AMQPWSB10` (the
    /// service's) or `amqp` (the binding's final name) is answered with it; any other
    /// request gets an HTTP error. Microsoft's SDKs dial `ws://` in emulator mode.
    pub fn web_sockets(mut self, addr: SocketAddr) -> Self {
        self.listeners.web_sockets = Some(addr);
        self
    }

    /// A listener that speaks AMQP over WebSockets over TLS (`wss://`, the service's
    /// port 443) on `addr`, presenting the identity given to [`tls`](Self::tls), which
    /// it needs; otherwise like [`web_sockets`](Self::web_sockets).
    pub fn web_sockets_tls(mut self, addr: SocketAddr) -> Self {
        self.listeners.web_sockets_tls = Some(addr);
        self
    }
}

impl EmulatorHandle {
    /// `Endpoint=sb://{endpoint}` with the key, and `UseDevelopmentEmulator=true` if
    /// `emulator`.
    fn connection_string_at(&self, endpoint: &str, emulator: bool) -> String {
        let flag = if emulator {
            ";UseDevelopmentEmulator=true"
        } else {
            ""
        };
        format!(
            "Endpoint=sb://{endpoint};SharedAccessKeyName={};SharedAccessKey={}{flag}",
            self.shared.key_name, self.shared.key
        )
    }

    /// The address of the TLS listener, if the emulator has one
    /// ([`EmulatorBuilder::tls`]).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.extra.tls
    }

    /// The CA a client trusts to reach the TLS listeners, in PEM, if the emulator made
    /// its certificate ([`TlsIdentity::generate`]).
    pub fn tls_ca_pem(&self) -> Option<&str> {
        self.extra.tls_ca_pem.as_deref()
    }

    /// A connection string over TLS, without `EntityPath`, as a client reaches the
    /// service: `sb://HOST:PORT` without `UseDevelopmentEmulator`, so `amqps` on the TLS
    /// listener's port. `host` must be a name the certificate is for (`localhost` for
    /// one the emulator made); `None` without a TLS listener.
    pub fn tls_connection_string(&self, host: &str) -> Option<String> {
        let port = self.extra.tls?.port();
        Some(self.connection_string_at(&format!("{host}:{port}"), false))
    }

    /// [`tls_connection_string`](Self::tls_connection_string) for one hub.
    pub fn tls_connection_string_for(&self, host: &str, hub: &str) -> Option<String> {
        Some(format!(
            "{};EntityPath={hub}",
            self.tls_connection_string(host)?
        ))
    }

    /// The address of the WebSocket listener, if the emulator has one
    /// ([`EmulatorBuilder::web_sockets`]).
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.extra.web_sockets
    }

    /// A connection string for the WebSocket listener, without `EntityPath`: its
    /// address, with `UseDevelopmentEmulator=true`, so a client that connects over
    /// WebSockets dials `ws://ADDR/$servicebus/websocket`; `None` without one.
    pub fn ws_connection_string(&self) -> Option<String> {
        let addr = self.extra.web_sockets?;
        Some(self.connection_string_at(&addr.to_string(), true))
    }

    /// [`ws_connection_string`](Self::ws_connection_string) for one hub.
    pub fn ws_connection_string_for(&self, hub: &str) -> Option<String> {
        Some(format!("{};EntityPath={hub}", self.ws_connection_string()?))
    }

    /// The address of the WebSocket listener with TLS, if the emulator has one
    /// ([`EmulatorBuilder::web_sockets_tls`]).
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.extra.web_sockets_tls
    }

    /// A connection string for the WebSocket listener with TLS, as a client reaches
    /// the service: `sb://HOST:PORT` without `UseDevelopmentEmulator`, so a client that
    /// connects over WebSockets dials `wss://HOST:PORT/$servicebus/websocket`. `host`
    /// must be a name the certificate is for; `None` without that listener.
    pub fn wss_connection_string(&self, host: &str) -> Option<String> {
        let port = self.extra.web_sockets_tls?.port();
        Some(self.connection_string_at(&format!("{host}:{port}"), false))
    }

    /// [`wss_connection_string`](Self::wss_connection_string) for one hub.
    pub fn wss_connection_string_for(&self, host: &str, hub: &str) -> Option<String> {
        Some(format!(
            "{};EntityPath={hub}",
            self.wss_connection_string(host)?
        ))
    }
}
