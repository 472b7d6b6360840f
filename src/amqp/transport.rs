//! How the AMQP connection's bytes reach the peer, in layers: TCP, through an HTTP
//! proxy's tunnel if one is given; then TLS for `amqps://` and `wss://`; then, for
//! `ws://` and `wss://`, a WebSocket (AMQP over WebSockets, as the service serves it on
//! port 443 for networks that let nothing else out).

use std::fmt::Debug;

use tokio::io::{AsyncRead, AsyncWrite};

use super::props::tls_connect;
use super::Endpoint;
use crate::Error;

/// A stream the AMQP connection runs over, whatever its layers.
pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin + Debug {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + Debug> Io for T {}

/// The layers an endpoint's URL asks for.
struct Layers<'a> {
    tls: bool,
    web_socket: bool,
    /// `host:port`.
    authority: &'a str,
}

impl<'a> Layers<'a> {
    fn of(url: &'a str) -> Self {
        let (scheme, rest) = url.split_once("://").unwrap_or(("amqp", url));
        let authority = rest.split('/').next().unwrap_or(rest);
        Self {
            tls: matches!(scheme, "amqps" | "wss"),
            web_socket: matches!(scheme, "ws" | "wss"),
            authority,
        }
    }
}

/// The stream to `e`'s peer, every layer's handshake done.
pub(super) async fn connect(e: &Endpoint) -> Result<Box<dyn Io>, Error> {
    let layers = Layers::of(&e.url);
    let cannot = |err: std::io::Error| {
        Error::connection(format!("cannot connect to {}", e.url)).with_source(err)
    };
    let tcp = match &e.proxy {
        #[cfg(feature = "websockets")]
        Some(proxy) => super::proxy::tunnel(proxy, layers.authority).await?,
        #[cfg(not(feature = "websockets"))]
        Some(_) => return Err(no_web_sockets()),
        None => tokio::net::TcpStream::connect(layers.authority)
            .await
            .map_err(cannot)?,
    };
    // Nagle would hold back the small frames (flows, CBS requests) behind big ones.
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if layers.tls {
        // The service speaks TLS from the first byte, with no AMQP TLS header first.
        let stream = tls_connect(&e.host, tcp, &e.roots)
            .await
            .map_err(|err| tls_failure(e, err))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    if !layers.web_socket {
        return Ok(stream);
    }
    #[cfg(feature = "websockets")]
    return web_socket::handshake(e, stream).await;
    #[cfg(not(feature = "websockets"))]
    Err(no_web_sockets())
}

#[cfg(not(feature = "websockets"))]
fn no_web_sockets() -> Error {
    Error::config("this build has no AMQP over WebSockets: enable the `websockets` feature")
}

/// Why a TLS handshake failed, in words that say what to do.
fn tls_failure(e: &Endpoint, err: std::io::Error) -> Error {
    if let Some(why) = certificate_problem(&err, &e.host) {
        Error::connection(format!("cannot connect to {}: {why}", e.url)).with_source(err)
    } else if plaintext_server(&err) {
        let hint = if e.url.starts_with("wss") {
            "use ws:// (or, for the local emulator, UseDevelopmentEmulator=true) for a \
             WebSocket port without TLS"
        } else if e.is_broker() {
            "use amqp:// for a broker that speaks plain AMQP"
        } else {
            "if it is the local emulator, add UseDevelopmentEmulator=true to the \
             connection string"
        };
        Error::connection(format!(
            "cannot connect to {}: the server does not speak TLS; {hint}",
            e.url
        ))
        .with_source(err)
    } else {
        Error::connection(format!("cannot connect to {}", e.url)).with_source(err)
    }
}

/// What is wrong with the server's certificate, if that is why the TLS handshake
/// failed, in words that say what to do.
fn certificate_problem(err: &std::io::Error, host: &str) -> Option<String> {
    use tokio_rustls::rustls::{CertificateError, Error as Tls};
    let tls = err.get_ref()?.downcast_ref::<Tls>()?;
    let Tls::InvalidCertificate(problem) = tls else {
        return None;
    };
    Some(match problem {
        CertificateError::UnknownIssuer => "the server's certificate is not signed by a \
            certificate authority this client trusts (for a private CA, such as a local \
            emulator's, add it with add_root_certificate_pem)"
            .to_owned(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("the server's certificate is not for the host name '{host}'")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired".to_owned()
        }
        other => format!("the server's certificate was refused: {other:?}"),
    })
}

/// Whether a TLS handshake failed because the server answered in something other than
/// TLS (the emulator, which speaks plain AMQP): rustls then reads the AMQP header as a
/// record of an invalid content type.
fn plaintext_server(err: &std::io::Error) -> bool {
    use tokio_rustls::rustls::{Error as Tls, InvalidMessage};
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<Tls>())
        .is_some_and(|tls| matches!(tls, Tls::InvalidMessage(InvalidMessage::InvalidContentType)))
}

#[cfg(feature = "websockets")]
mod web_socket {
    use eventhubs_protocol::web_socket::tokio_tungstenite;
    use eventhubs_protocol::web_socket::{ByteStream, SUBPROTOCOL, SUBPROTOCOL_AMQP};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
    use tokio_tungstenite::tungstenite::Error as WsError;

    use super::{Endpoint, Io};
    use crate::Error;

    /// The WebSocket handshake for `e.url` over `stream`, asking for the service's
    /// subprotocol (a generic broker: the binding's `amqp`).
    pub(super) async fn handshake(e: &Endpoint, stream: Box<dyn Io>) -> Result<Box<dyn Io>, Error> {
        let subprotocol = if e.is_broker() {
            SUBPROTOCOL_AMQP
        } else {
            SUBPROTOCOL
        };
        let mut request = e.url.as_str().into_client_request().map_err(|err| {
            Error::config(format!("{} is not a WebSocket URL", e.url)).with_source(err)
        })?;
        request.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(subprotocol),
        );
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((socket, _)) => Ok(Box::new(ByteStream::new(socket))),
            Err(err) => Err(refusal(e, subprotocol, err)),
        }
    }

    /// Why the handshake failed, in words that say what to do.
    fn refusal(e: &Endpoint, subprotocol: &str, err: WsError) -> Error {
        let url = &e.url;
        let why = match &err {
            WsError::Http(response) => {
                let status = response.status();
                let hint = match status.as_u16() {
                    404 => ": no WebSocket endpoint at that path",
                    _ => "",
                };
                format!("the server refused the WebSocket upgrade with HTTP {status}{hint}")
            }
            WsError::Protocol(p) if format!("{p:?}").contains("SubProtocol") => {
                format!("the server did not agree to the WebSocket subprotocol {subprotocol} ({p})")
            }
            WsError::Io(_) | WsError::ConnectionClosed | WsError::AlreadyClosed => {
                return Error::connection(format!(
                    "cannot connect to {url}: the WebSocket handshake failed"
                ))
                .with_source(err)
            }
            // An AMQP port answers the upgrade request with an AMQP header, or closes.
            _ => {
                let hint = if e.proxy.is_some() {
                    "check the port"
                } else if e.is_broker() {
                    "check the port, or use amqp:// for a plain AMQP port"
                } else {
                    "check the port, or drop web_sockets for a plain AMQP port"
                };
                format!(
                    "the server does not speak WebSockets there (it did not answer the \
                     upgrade request in HTTP); {hint}"
                )
            }
        };
        // tungstenite's errors repeat their cause in their text: one line of it will do.
        Error::connection(format!("cannot connect to {url}: {why}")).with_source(err.to_string())
    }
}
