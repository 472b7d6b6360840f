//! The server side of AMQP over WebSockets: the upgrade of a connection to the
//! emulator's WebSocket listener, answered as the service answers it.

use eventhubs_protocol::web_socket::tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request, Response,
};
use eventhubs_protocol::web_socket::tokio_tungstenite::tungstenite::http::{
    header, HeaderValue, StatusCode,
};
use eventhubs_protocol::web_socket::{self, tokio_tungstenite, ByteStream};
use tokio::io::{AsyncRead, AsyncWrite};

/// Takes the upgrade request on `stream`: the service's path (`/$servicebus/websocket`,
/// with or without a trailing `/`) and a subprotocol of AMQP's, `AMQPWSB10` (the
/// service's) or `amqp` (the binding's final name), answered with the one chosen. Any
/// other request gets an HTTP error that says what was wrong.
pub(crate) async fn accept<S>(
    stream: S,
) -> Result<ByteStream<S>, tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let socket = tokio_tungstenite::accept_hdr_async(stream, answer).await?;
    Ok(ByteStream::new(socket))
}

// tungstenite's callback signature returns the error response by value.
#[allow(clippy::result_large_err)]
fn answer(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    if !web_socket::is_endpoint_path(request.uri().path()) {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!(
                "AMQP over WebSockets is at {}, not {}",
                web_socket::PATH,
                request.uri().path()
            ),
        ));
    }
    let offered = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok());
    let Some(chosen) = web_socket::choose_subprotocol(offered) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "ask for the WebSocket subprotocol {} (or {})",
                web_socket::SUBPROTOCOL,
                web_socket::SUBPROTOCOL_AMQP
            ),
        ));
    };
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(chosen),
    );
    Ok(response)
}

fn refuse(status: StatusCode, why: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why));
    *response.status_mut() = status;
    response
}
