//! Where a client connects and how it authenticates: from a connection string, or
//! from a fully qualified namespace, a hub name and a credential. Shared by
//! [`ProducerBuilder`](crate::ProducerBuilder) and [`ReaderBuilder`](crate::ReaderBuilder).

use std::sync::Arc;

use crate::amqp::Proxy;
use crate::connection_string::{ConnectionString, ConnectionStringCredentials};
use crate::credential::{Credential, SasTokenCredential, SharedKeyCredential};
use crate::Error;
use eventhubs_protocol::WEB_SOCKET_PATH;

/// The options a builder collects about the namespace, the hub and the credential.
#[derive(Debug, Default)]
pub(crate) struct Address {
    pub(crate) connection_string: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) hub: Option<String>,
    pub(crate) credential: Option<Arc<dyn Credential>>,
    pub(crate) development_emulator: bool,
    /// AMQP over WebSockets rather than AMQP over TCP.
    pub(crate) web_sockets: bool,
    /// An HTTP proxy's URL, for its tunnel.
    pub(crate) proxy: Option<String>,
    /// PEM texts of certificates to trust over TLS besides the public roots.
    pub(crate) root_certificates: Vec<Vec<u8>>,
}

/// An [`Address`] checked and made whole.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// `amqps://host:5671`, or `amqp://host:5672` for the emulator; over WebSockets
    /// `wss://host:443/$servicebus/websocket`, or `ws://host:port/…` for the emulator.
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) hub: String,
    pub(crate) credential: Arc<dyn Credential>,
    pub(crate) proxy: Option<Proxy>,
}

impl Address {
    /// The certificates given to trust, read.
    pub(crate) fn roots(&self) -> Result<crate::amqp::Roots, Error> {
        crate::amqp::roots_of(&self.root_certificates)
    }

    /// With a generic broker, which takes the place of all of these: an error naming
    /// the first that was given too.
    pub(crate) fn refuse_with_broker(&self) -> Result<(), Error> {
        let given = [
            (self.connection_string.is_some(), "a connection string"),
            (self.namespace.is_some(), "a fully qualified namespace"),
            (self.hub.is_some(), "a hub"),
            (self.credential.is_some(), "a credential"),
            (self.development_emulator, "use_development_emulator"),
        ];
        match given.iter().find(|(set, _)| *set) {
            Some((_, what)) => Err(Error::config(format!(
                "amqp_broker takes the place of Event Hubs' namespace, hub and credential: \
                 give either a broker or {what}, not both"
            ))),
            None => Ok(()),
        }
    }

    pub(crate) fn resolve(&self) -> Result<Resolved, Error> {
        let cs: ConnectionString = match (&self.connection_string, &self.namespace) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "give either a connection string or a fully qualified namespace, not both",
                ))
            }
            (Some(text), None) => {
                let cs: ConnectionString = text.parse()?;
                if self.development_emulator && !cs.is_development_emulator() {
                    return Err(Error::config(
                        "use_development_emulator goes with a fully qualified namespace; \
                         with a connection string, add UseDevelopmentEmulator=true to it",
                    ));
                }
                cs
            }
            (None, Some(ns)) => ConnectionString::namespace(ns, self.development_emulator)?,
            (None, None) => {
                return Err(Error::config(
                    "no namespace: give a connection string, or a fully qualified namespace \
                     with a hub and a credential",
                ))
            }
        };
        let hub = cs.resolve_hub(self.hub.as_deref())?;
        let credential: Arc<dyn Credential> = match (&self.credential, cs.credentials()) {
            (Some(c), _) => c.clone(),
            (None, Some(ConnectionStringCredentials::SharedKey { name, key })) => {
                Arc::new(SharedKeyCredential::new(name.clone(), key.clone()))
            }
            (None, Some(ConnectionStringCredentials::SharedAccessSignature(sas))) => {
                Arc::new(SasTokenCredential::new(sas.clone())?)
            }
            (None, None) if self.namespace.is_some() => {
                return Err(Error::config(
                    "no credential: a fully qualified namespace needs one (a \
                     SharedKeyCredential, a SasTokenCredential or a token credential)",
                ))
            }
            (None, None) => {
                return Err(Error::config(
                    "no credentials: the connection string has none and no credential was \
                     given",
                ))
            }
        };
        let url = if self.web_sockets {
            web_socket_url(&cs)
        } else {
            cs.amqp_url()
        };
        Ok(Resolved {
            url,
            host: cs.host().to_owned(),
            hub,
            credential,
            proxy: self.proxy(self.web_sockets)?,
        })
    }

    /// A broker's proxy, read: over WebSockets if its URL is `ws://` or `wss://`.
    pub(crate) fn broker_proxy(&self, broker: &BrokerUrl) -> Result<Option<Proxy>, Error> {
        let web_sockets = broker.url.starts_with("ws");
        if self.web_sockets && !web_sockets {
            return Err(Error::config(
                "a broker's URL says how to reach it: for AMQP over WebSockets give a \
                 ws:// or wss:// URL with the path of its WebSocket endpoint, rather than \
                 web_sockets(true)",
            ));
        }
        self.proxy(web_sockets)
    }

    /// The proxy, read; `web_sockets` says whether the connection goes over them,
    /// which a proxy needs.
    pub(crate) fn proxy(&self, web_sockets: bool) -> Result<Option<Proxy>, Error> {
        let Some(text) = &self.proxy else {
            return Ok(None);
        };
        if !web_sockets {
            // As the .NET SDK has it (a proxy with AmqpTcp is an error there; Python's
            // `http_proxy` turns WebSockets on): a proxy that lets port 443 out passes
            // WebSockets, and AMQP's own ports are what it is there to avoid.
            return Err(Error::config(
                "a proxy carries AMQP over WebSockets only: add web_sockets(true) (for a \
                 broker, a ws:// or wss:// URL)",
            ));
        }
        Proxy::parse(text).map(Some)
    }
}

/// Where a connection string's namespace takes AMQP over WebSockets:
/// `wss://HOST:443/$servicebus/websocket`, or for the emulator `ws://HOST:PORT/…` on
/// the endpoint's port; an explicit port wins, as in the .NET SDK's
/// `AmqpConnectionScope.CreateTransportSettingsForWebSockets`.
fn web_socket_url(cs: &ConnectionString) -> String {
    let (scheme, default_port) = if cs.is_development_emulator() {
        ("ws", 80)
    } else {
        ("wss", 443)
    };
    let port = cs.port().unwrap_or(default_port);
    let host = cs.host();
    // An IPv6 address goes in brackets, as in any URL.
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("{scheme}://{host}:{port}{WEB_SOCKET_PATH}")
}

/// A generic AMQP 1.0 broker's URL, checked: `amqp://user:password@host:port` (SASL
/// PLAIN) or `amqp://host:port` (SASL ANONYMOUS); `amqps://` for TLS; `ws://` and
/// `wss://` (with the path of the broker's WebSocket endpoint) for AMQP over WebSockets.
#[derive(Clone)]
pub(crate) struct BrokerUrl {
    /// `amqp://host:port` or `amqps://host:port` (`ws://host:port/path`,
    /// `wss://host:port/path`), without the credentials (safe to print).
    pub(crate) url: String,
    pub(crate) host: String,
    /// The SASL PLAIN user name and password, percent-decoded.
    pub(crate) login: Option<(String, String)>,
}

impl std::fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerUrl")
            .field("url", &self.url)
            .field("user", &self.login.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl BrokerUrl {
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        let shape = "expected amqp://user:password@host:port, amqp://host:port, amqps://…, \
                     or ws://…/path and wss://…/path over WebSockets";
        let bad = |why: String| Error::config(format!("the broker URL {why} ({shape})"));
        let parsed = url::Url::parse(text.trim())
            .map_err(|e| bad(format!("'{}' is not a URL: {e}", redact(text))))?;
        let (scheme, default_port) = match parsed.scheme() {
            "amqp" => ("amqp", 5672),
            "amqps" => ("amqps", 5671),
            "ws" if cfg!(feature = "websockets") => ("ws", 80),
            "wss" if cfg!(feature = "websockets") => ("wss", 443),
            "ws" | "wss" => {
                return Err(Error::config(
                    "this build has no AMQP over WebSockets: enable the `websockets` feature",
                ))
            }
            other => return Err(bad(format!("has the scheme '{other}'"))),
        };
        let web_socket = matches!(scheme, "ws" | "wss");
        let host = match parsed.host_str() {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => return Err(bad("has no host".to_owned())),
        };
        // Over WebSockets the path is the endpoint's; otherwise there is none.
        if (!web_socket && !matches!(parsed.path(), "" | "/")) || parsed.query().is_some() {
            return Err(bad(format!(
                "'{}' has a path or query; the broker's addresses are given apart from it",
                redact(text)
            )));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| bad("has a user or password that is not UTF-8".to_owned()))
        };
        let login = match (parsed.username(), parsed.password()) {
            ("", None) => None,
            ("", Some(_)) => return Err(bad("has a password but no user name".to_owned())),
            (user, password) => Some((decode(user)?, decode(password.unwrap_or(""))?)),
        };
        let port = parsed.port().unwrap_or(default_port);
        // IPv6 hosts keep their brackets in `host_str`, as a socket address needs.
        let path = if web_socket { parsed.path() } else { "" };
        Ok(Self {
            url: format!("{scheme}://{host}:{port}{path}"),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            login,
        })
    }
}

/// `text` with any password replaced, for error messages.
fn redact(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(start), Some(at)) if at > start => match text[start + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &text[..start + 3], &text[at..]),
            None => text.to_owned(),
        },
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_give_the_login_and_a_printable_url() {
        let b = BrokerUrl::parse("amqp://ci:p%40ss%3Aw@127.0.0.1:5682").unwrap();
        assert_eq!(b.url, "amqp://127.0.0.1:5682");
        assert_eq!(b.host, "127.0.0.1");
        assert_eq!(b.login, Some(("ci".into(), "p@ss:w".into())));
        assert!(!format!("{b:?}").contains("p@ss"));

        let b = BrokerUrl::parse("amqps://broker.example").unwrap();
        assert_eq!(b.url, "amqps://broker.example:5671");
        assert_eq!(b.login, None);
        let b = BrokerUrl::parse("amqp://[::1]/").unwrap();
        assert_eq!(
            (b.url.as_str(), b.host.as_str()),
            ("amqp://[::1]:5672", "::1")
        );
        let b = BrokerUrl::parse("amqp://guest@h").unwrap();
        assert_eq!(b.login, Some(("guest".into(), String::new())));
    }

    #[test]
    fn web_sockets_go_to_443_on_the_service_and_to_the_endpoints_port_on_the_emulator() {
        let url = |cs: &str| web_socket_url(&cs.parse().unwrap());
        let key = "SharedAccessKeyName=k;SharedAccessKey=v";
        assert_eq!(
            url(&format!("Endpoint=sb://ns.servicebus.windows.net/;{key}")),
            "wss://ns.servicebus.windows.net:443/$servicebus/websocket"
        );
        assert_eq!(
            url(&format!("Endpoint=sb://ns.example:8443;{key}")),
            "wss://ns.example:8443/$servicebus/websocket"
        );
        assert_eq!(
            url(&format!(
                "Endpoint=sb://127.0.0.1:5673;{key};UseDevelopmentEmulator=true"
            )),
            "ws://127.0.0.1:5673/$servicebus/websocket"
        );
        let b = BrokerUrl::parse("wss://u:p@broker.example/ws").unwrap();
        assert_eq!(b.url, "wss://broker.example:443/ws");
        let b = BrokerUrl::parse("ws://broker.example:15675").unwrap();
        assert_eq!(b.url, "ws://broker.example:15675/");
    }

    #[test]
    fn bad_broker_urls_say_why_without_the_password() {
        for (text, why) in [
            ("broker:5672", "scheme 'broker'"),
            ("http://h", "scheme 'http'"),
            ("amqp://", "has no host"),
            ("amqp://u:secret@h/vhost", "path or query"),
            ("amqp://u:secret@h?x=1", "path or query"),
            ("amqp://:secret@h", "no user name"),
            ("not a url", "is not a URL"),
        ] {
            let e = BrokerUrl::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains("amqp://user:password@host:port"), "{text}: {e}");
            assert!(!e.contains("secret"), "{text}: {e}");
        }
    }
}
