//! The emulator's WebSocket listener as a WebSocket client sees it: which subprotocol it
//! answers, and the HTTP errors for a wrong path, no AMQP subprotocol, or no upgrade.

use eventhubs_emulator::{Emulator, EmulatorHandle};
use eventhubs_protocol::web_socket::tokio_tungstenite;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::Error as WsError;

async fn emulator() -> EmulatorHandle {
    Emulator::builder()
        .hub("eh1", 1)
        .web_sockets("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap()
}

/// The handshake's answer to an upgrade to `path` offering `subprotocols`: the
/// subprotocol chosen, or the HTTP status of a refusal.
async fn upgrade(emulator: &EmulatorHandle, path: &str, subprotocols: &str) -> Result<String, u16> {
    let addr = emulator.ws_addr().unwrap();
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if !subprotocols.is_empty() {
        let offered = HeaderValue::from_str(subprotocols).unwrap();
        request
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, offered);
    }
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(request, tcp).await {
        Ok((_, response)) => Ok(response.headers()[header::SEC_WEBSOCKET_PROTOCOL]
            .to_str()
            .unwrap()
            .to_owned()),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("unexpected handshake error: {other}"),
    }
}

#[tokio::test]
async fn the_services_subprotocol_is_preferred_and_the_bindings_taken() {
    let emulator = emulator().await;
    let path = "/$servicebus/websocket";
    assert_eq!(
        upgrade(&emulator, path, "AMQPWSB10").await.unwrap(),
        "AMQPWSB10"
    );
    assert_eq!(
        upgrade(&emulator, path, "amqp, AMQPWSB10").await.unwrap(),
        "AMQPWSB10"
    );
    assert_eq!(upgrade(&emulator, path, "amqp").await.unwrap(), "amqp");
    // .NET's path has a trailing slash.
    assert_eq!(
        upgrade(&emulator, "/$servicebus/websocket/", "amqp")
            .await
            .unwrap(),
        "amqp"
    );
}

#[tokio::test]
async fn a_wrong_path_no_amqp_subprotocol_or_no_upgrade_is_refused_in_http() {
    let emulator = emulator().await;
    assert_eq!(
        upgrade(&emulator, "/elsewhere", "AMQPWSB10").await,
        Err(404)
    );
    assert_eq!(
        upgrade(&emulator, "/$servicebus/websocket", "mqtt").await,
        Err(400)
    );
    assert_eq!(
        upgrade(&emulator, "/$servicebus/websocket", "").await,
        Err(400)
    );

    // A plain HTTP request (no upgrade), and an AMQP header where HTTP was due: the
    // connection ends instead of hanging (tungstenite closes it without an answer).
    for first in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"AMQP\x03\x01\x00\x00",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(emulator.ws_addr().unwrap())
            .await
            .unwrap();
        tcp.write_all(first).await.unwrap();
        if first.starts_with(b"AMQP") {
            // No HTTP request will come after it: the emulator must not wait for one.
            tcp.shutdown().await.unwrap();
        }
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{answer}"
        );
    }
    // Still serving.
    let path = "/$servicebus/websocket";
    assert_eq!(
        upgrade(&emulator, path, "AMQPWSB10").await.unwrap(),
        "AMQPWSB10"
    );
}
