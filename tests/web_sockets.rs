//! AMQP over WebSockets end to end, on the emulator's WebSocket listeners: plain
//! `ws://` (emulator mode), `wss://` with a certificate of a CA the test makes and
//! trusts, a generic broker's `ws://` URL, an HTTP proxy's tunnel (a relay in the
//! test that records what it was asked), and the errors of a proxy that refuses and
//! of a server that does not speak WebSockets.

mod common;

#[path = "web_sockets/relay.rs"]
mod relay;

use std::time::Duration;

use common::chain;

use eventhubs_emulator::{Emulator, EmulatorHandle, TlsIdentity, DEFAULT_KEY, DEFAULT_KEY_NAME};
use futures_util::StreamExt;
use relay::Relay;
use streaming_producer::{EventData, Producer, ProducerBuilder, Reader, StartPosition};

/// An emulator with a `ws://` listener and, on the TLS identity it makes for
/// localhost, a `wss://` one.
async fn emulator() -> EmulatorHandle {
    let any = || "127.0.0.1:0".parse().unwrap();
    let identity = TlsIdentity::generate(&["localhost", "127.0.0.1"]).unwrap();
    Emulator::builder()
        .hub("eh1", 2)
        .tls(identity, any())
        .web_sockets(any())
        .web_sockets_tls(any())
        .start()
        .await
        .unwrap()
}

/// Publishes `body` to partition 1 with `builder`, and checks its outcome.
async fn publish(builder: ProducerBuilder, body: &str) {
    let (mut producer, mut outcomes) = builder
        .max_wait(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    producer
        .enqueue(EventData::new(body.to_owned()).with_partition_id("1"))
        .await
        .unwrap();
    let outcome = outcomes.next().await.unwrap();
    assert!(outcome.is_success(), "{:?}", outcome.result);
    producer.close().await.unwrap();
}

/// The first event of partition 1, read with `reader`.
async fn first_body(reader: Reader) -> Vec<u8> {
    let body = {
        let mut read = Box::pin(reader.read("1", StartPosition::Earliest));
        read.next().await.unwrap().unwrap().body.to_vec()
    };
    reader.close().await;
    body
}

#[tokio::test]
async fn the_producer_and_the_reader_go_over_plain_web_sockets_to_the_emulator() {
    let emulator = emulator().await;
    let cs = emulator.ws_connection_string_for("eh1").unwrap();
    let port = emulator.ws_addr().unwrap().port();
    assert!(cs.starts_with(&format!("Endpoint=sb://127.0.0.1:{port};")));
    assert!(cs.contains("UseDevelopmentEmulator=true"));

    publish(
        Producer::builder().connection_string(&cs).web_sockets(true),
        "over ws",
    )
    .await;
    assert_eq!(emulator.events("eh1", "1").unwrap()[0].body(), b"over ws");
    let reader = Reader::builder()
        .connection_string(&cs)
        .web_sockets(true)
        .build()
        .await
        .unwrap();
    assert_eq!(first_body(reader).await, b"over ws");
}

#[tokio::test]
async fn over_wss_the_emulators_certificate_is_checked_and_trusted_by_its_ca() {
    let emulator = emulator().await;
    let ca = emulator.tls_ca_pem().unwrap().to_owned();
    let cs = emulator
        .wss_connection_string_for("localhost", "eh1")
        .unwrap();
    assert!(!cs.contains("UseDevelopmentEmulator"));

    publish(
        Producer::builder()
            .connection_string(&cs)
            .web_sockets(true)
            .add_root_certificate_pem(&ca),
        "over wss",
    )
    .await;
    let reader = Reader::builder()
        .connection_string(&cs)
        .web_sockets(true)
        .add_root_certificate_pem(&ca)
        .build()
        .await
        .unwrap();
    assert_eq!(first_body(reader).await, b"over wss");

    // Without the CA, TLS under the WebSocket refuses the certificate.
    let e = Producer::builder()
        .connection_string(&cs)
        .web_sockets(true)
        .build()
        .await
        .unwrap_err();
    assert!(
        chain(&e).contains("not signed by a certificate authority"),
        "{}",
        chain(&e)
    );
    assert!(chain(&e).contains("wss://localhost:"), "{}", chain(&e));
}

#[tokio::test]
async fn a_generic_broker_url_may_be_ws_with_the_binding_subprotocol() {
    let emulator = emulator().await;
    let addr = emulator.ws_addr().unwrap();
    // As a broker, the client asks for the subprotocol `amqp`, which the emulator takes.
    let url = format!("ws://{DEFAULT_KEY_NAME}:{DEFAULT_KEY}@{addr}/$servicebus/websocket");
    let (mut producer, mut outcomes) = Producer::builder()
        .amqp_broker(&url, ["eh1/Partitions/0"])
        .max_wait(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    producer
        .enqueue(EventData::new("broker over ws"))
        .await
        .unwrap();
    assert!(outcomes.next().await.unwrap().is_success());
    producer.close().await.unwrap();
    assert_eq!(
        emulator.events("eh1", "0").unwrap()[0].body(),
        b"broker over ws"
    );

    // A path the server has no WebSocket endpoint at: its HTTP status says so.
    let url = format!("ws://{DEFAULT_KEY_NAME}:{DEFAULT_KEY}@{addr}/elsewhere");
    let e = Producer::builder()
        .amqp_broker(&url, ["eh1/Partitions/0"])
        .build()
        .await
        .unwrap_err();
    assert!(chain(&e).contains("HTTP 404 Not Found"), "{}", chain(&e));
}

#[tokio::test]
async fn through_a_proxy_the_tunnel_goes_to_the_web_socket_port_with_the_login() {
    let emulator = emulator().await;
    let relay = Relay::start(None).await;
    let proxy = relay.url.replace("http://", "http://me:p%40ss@");
    let cs = emulator.ws_connection_string_for("eh1").unwrap();
    publish(
        Producer::builder()
            .connection_string(&cs)
            .web_sockets(true)
            .proxy(&proxy),
        "through a proxy",
    )
    .await;
    let reader = Reader::builder()
        .connection_string(&cs)
        .web_sockets(true)
        .proxy(&proxy)
        .build()
        .await
        .unwrap();
    assert_eq!(first_body(reader).await, b"through a proxy");

    let asked = relay.asked();
    let ws = emulator.ws_addr().unwrap().to_string();
    assert_eq!(asked.len(), 2, "{asked:?}");
    for tunnel in &asked {
        assert_eq!(tunnel.target, ws);
        // base64("me:p@ss")
        assert_eq!(tunnel.authorization.as_deref(), Some("Basic bWU6cEBzcw=="));
    }

    // TLS runs end to end through the tunnel, to the name the certificate is for.
    let cs = emulator
        .wss_connection_string_for("localhost", "eh1")
        .unwrap();
    publish(
        Producer::builder()
            .connection_string(&cs)
            .web_sockets(true)
            .add_root_certificate_pem(emulator.tls_ca_pem().unwrap())
            .proxy(&relay.url),
        "wss through a proxy",
    )
    .await;
    let last = relay.asked().pop().unwrap();
    let wss = emulator.wss_addr().unwrap().port();
    assert_eq!(last.target, format!("localhost:{wss}"));
    assert_eq!(last.authorization, None);
}

#[tokio::test]
async fn a_proxy_that_refuses_fails_the_build_with_its_status_line() {
    let emulator = emulator().await;
    let cs = emulator.ws_connection_string_for("eh1").unwrap();
    let forbidding = Relay::start(Some("403 Forbidden")).await;
    let e = Producer::builder()
        .connection_string(&cs)
        .web_sockets(true)
        .proxy(&forbidding.url)
        .build()
        .await
        .unwrap_err();
    let text = chain(&e);
    assert!(e.is_connection(), "{text}");
    assert!(
        text.contains(&format!("the proxy {}", forbidding.url)),
        "{text}"
    );
    assert!(text.contains("refused the tunnel to 127.0.0.1:"), "{text}");
    assert!(text.contains("HTTP/1.1 403 Forbidden"), "{text}");

    // 407: the credentials are wrong or missing, and trying again will not help.
    let wanting = Relay::start(Some("407 Proxy Authentication Required")).await;
    let e = Producer::builder()
        .connection_string(&cs)
        .web_sockets(true)
        .proxy(&wanting.url)
        .build()
        .await
        .unwrap_err();
    assert!(e.is_auth() && !e.is_retryable(), "{}", chain(&e));
    assert!(
        chain(&e).contains("http://user:password@host:port"),
        "{}",
        chain(&e)
    );

    // A proxy that is not there.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let e = Producer::builder()
        .connection_string(&cs)
        .web_sockets(true)
        .proxy(&gone)
        .build()
        .await
        .unwrap_err();
    assert!(
        chain(&e).contains(&format!("the proxy {gone}: cannot connect")),
        "{}",
        chain(&e)
    );
}

#[tokio::test]
async fn a_server_that_does_not_speak_web_sockets_or_a_proxy_without_them_fail_clearly() {
    let emulator = emulator().await;
    // The plain AMQP port, asked for a WebSocket upgrade.
    let cs = emulator.connection_string_for("eh1");
    let e = Producer::builder()
        .connection_string(&cs)
        .web_sockets(true)
        .build()
        .await
        .unwrap_err();
    let text = chain(&e);
    let port = emulator.addr().port();
    assert!(
        text.contains(&format!(
            "cannot connect to ws://127.0.0.1:{port}/$servicebus/websocket"
        )),
        "{text}"
    );
    assert!(text.contains("does not speak WebSockets"), "{text}");

    // A proxy carries WebSockets only, as in the .NET SDK.
    let e = Producer::builder()
        .connection_string(&cs)
        .proxy("http://127.0.0.1:3128")
        .build()
        .await
        .unwrap_err();
    assert!(
        e.is_config() && e.to_string().contains("web_sockets(true)"),
        "{e}"
    );
    let e = Producer::builder()
        .connection_string(&cs)
        .web_sockets(true)
        .proxy("socks5://127.0.0.1:1080")
        .build()
        .await
        .unwrap_err();
    assert!(
        e.is_config() && e.to_string().contains("scheme 'socks5'"),
        "{e}"
    );
}

/// What a WebSocket server at a fresh port is asked for by the first client: the path
/// and the `Sec-WebSocket-Protocol` offered. It refuses the upgrade after looking.
// tungstenite's callback returns its error response by value.
#[allow(clippy::result_large_err)]
async fn what_is_asked() -> (u16, tokio::task::JoinHandle<(String, String)>) {
    use eventhubs_protocol::web_socket::tokio_tungstenite::{self, tungstenite};
    use tungstenite::handshake::server::{ErrorResponse, Request, Response};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut seen = (String::new(), String::new());
        let look = |request: &Request, _: Response| -> Result<Response, ErrorResponse> {
            let protocol = &request.headers()["sec-websocket-protocol"];
            seen = (
                request.uri().path().to_owned(),
                protocol.to_str().unwrap().to_owned(),
            );
            Err(ErrorResponse::new(None))
        };
        let _ = tokio_tungstenite::accept_hdr_async(tcp, look).await;
        seen
    });
    (port, asked)
}

#[tokio::test]
async fn event_hubs_asks_for_amqpwsb10_and_a_broker_for_amqp_at_their_paths() {
    let (port, asked) = what_is_asked().await;
    let cs = format!(
        "Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName={DEFAULT_KEY_NAME};\
         SharedAccessKey={DEFAULT_KEY};UseDevelopmentEmulator=true;EntityPath=eh1"
    );
    let built = Producer::builder()
        .connection_string(&cs)
        .web_sockets(true)
        .build()
        .await;
    assert!(built.is_err());
    let (path, protocol) = asked.await.unwrap();
    assert_eq!(
        (path.as_str(), protocol.as_str()),
        ("/$servicebus/websocket", "AMQPWSB10")
    );

    let (port, asked) = what_is_asked().await;
    let url = format!("ws://127.0.0.1:{port}/ws");
    let built = Producer::builder().amqp_broker(&url, ["q"]).build().await;
    assert!(built.is_err());
    let (path, protocol) = asked.await.unwrap();
    assert_eq!((path.as_str(), protocol.as_str()), ("/ws", "amqp"));
}
