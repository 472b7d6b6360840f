//! AMQP over WebSockets, as Event Hubs serves it on port 443 for networks that let
//! nothing else out: the path, the subprotocols, and a byte stream over a WebSocket
//! for an AMQP implementation that reads and writes bytes.
//!
//! The binding is OASIS's AMQP WebSocket Binding
//! (<https://docs.oasis-open.org/amqp-bindmap/amqp-wsb/v1.0/amqp-wsb-v1.0.html>): the
//! AMQP bytes travel in binary messages, in both directions, cut anywhere. Its drafts
//! named the subprotocol `AMQPWSB10`, which the service and Microsoft's SDKs still use
//! (azure-sdk-for-python's `_pyamqp/constants.py`, `AMQP_WS_SUBPROTOCOL`); the final
//! text names it `amqp`, which generic brokers (Qpid, RabbitMQ, ActiveMQ) ask for.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

pub use tokio_tungstenite;

/// The path of the service's WebSocket endpoint.
pub const PATH: &str = crate::WEB_SOCKET_PATH;
/// The subprotocol the service and Microsoft's SDKs speak.
pub const SUBPROTOCOL: &str = "AMQPWSB10";
/// The subprotocol of the binding's final text, which generic brokers ask for.
pub const SUBPROTOCOL_AMQP: &str = "amqp";
/// The port of `wss://` (HTTPS), the one port such networks let out.
pub const TLS_PORT: u16 = 443;
/// The port of `ws://` (HTTP), for a `ws://` URL without one.
pub const PLAIN_PORT: u16 = 80;

/// Whether `path` (of a WebSocket upgrade request) is the service's endpoint.
pub fn is_endpoint_path(path: &str) -> bool {
    path.strip_suffix('/').unwrap_or(path) == PATH
}

/// The subprotocol to answer a client that offered `offered` (the comma-separated
/// `Sec-WebSocket-Protocol` values): `AMQPWSB10` if offered, else `amqp`, else none.
pub fn choose_subprotocol<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    let offered: Vec<&str> = offered
        .into_iter()
        .flat_map(|header| header.split(','))
        .map(str::trim)
        .collect();
    [SUBPROTOCOL, SUBPROTOCOL_AMQP]
        .into_iter()
        .find(|wanted| offered.iter().any(|o| o.eq_ignore_ascii_case(wanted)))
}

/// The bytes of a WebSocket's binary messages as one stream, both ways: what an AMQP
/// implementation that takes an `AsyncRead + AsyncWrite` needs to run over a
/// WebSocket. Each write goes out as one binary message; a text message coming in is
/// an error (the binding has none); a close, or the end of the stream, reads as the end.
#[derive(Debug)]
pub struct ByteStream<S> {
    socket: WebSocketStream<S>,
    /// What is left of the last binary message read.
    unread: Bytes,
}

impl<S> ByteStream<S> {
    /// Over a WebSocket whose handshake is done.
    pub fn new(socket: WebSocketStream<S>) -> Self {
        Self {
            socket,
            unread: Bytes::new(),
        }
    }

    /// The WebSocket underneath.
    pub fn get_ref(&self) -> &WebSocketStream<S> {
        &self.socket
    }
}

fn io_error(error: WsError) -> io::Error {
    match error {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::NotConnected, error)
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ByteStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.unread.is_empty() {
            match ready!(Pin::new(&mut self.socket).poll_next(cx)) {
                Some(Ok(Message::Binary(bytes))) => self.unread = bytes,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text message came where AMQP over WebSockets has only binary ones",
                    )))
                }
                // Pings are answered by tungstenite itself; a close is the end.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
        let n = buf.remaining().min(self.unread.len());
        buf.put_slice(&self.unread[..n]);
        self.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ByteStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut socket = Pin::new(&mut self.socket);
        ready!(socket.as_mut().poll_ready(cx)).map_err(io_error)?;
        socket
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.socket).poll_close(cx)) {
            // The peer closed first: shut down all the same.
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_is_taken_with_or_without_a_trailing_slash() {
        assert!(is_endpoint_path("/$servicebus/websocket"));
        assert!(is_endpoint_path("/$servicebus/websocket/"));
        assert!(!is_endpoint_path("/"));
        assert!(!is_endpoint_path("/$servicebus/websocket/x"));
    }

    #[test]
    fn the_services_subprotocol_wins_then_the_standard_one() {
        assert_eq!(choose_subprotocol(["amqp, AMQPWSB10"]), Some(SUBPROTOCOL));
        assert_eq!(
            choose_subprotocol(["binary", "amqp"]),
            Some(SUBPROTOCOL_AMQP)
        );
        assert_eq!(choose_subprotocol(["amqpwsb10"]), Some(SUBPROTOCOL));
        assert_eq!(choose_subprotocol(["mqtt"]), None);
        assert_eq!(choose_subprotocol([]), None);
    }
}
