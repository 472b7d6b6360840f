//! The emulator's health probe, as Microsoft's Event Hubs emulator serves it on port
//! 5300: `GET /health` answers 200 with `{"status":"healthy","message":"Service is
//! healthy."}`. It is served once the AMQP listener is up, so test harnesses and compose
//! files written for Microsoft's emulator can wait on it.

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};

/// The port Microsoft's emulator serves its health probe on.
pub(crate) const DEFAULT_PORT: u16 = 5300;

/// Starts serving the probe on `addr` until the process ends; call it once the AMQP
/// listener is up. Returns the address served (the port picked, for port 0).
pub(crate) async fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route(
        "/health",
        get(|| async {
            Json(serde_json::json!({"status": "healthy", "message": "Service is healthy."}))
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the health probe's listener stopped");
        }
    });
    Ok(addr)
}

/// Where the probe goes when not given: beside the AMQP listener on port 5300, or on a
/// free port when the AMQP listener took one (port 0), so that emulators started side
/// by side for tests never compete for 5300.
pub(crate) fn default_addr(bind: SocketAddr) -> SocketAddr {
    let port = if bind.port() == 0 { 0 } else { DEFAULT_PORT };
    SocketAddr::new(bind.ip(), port)
}
