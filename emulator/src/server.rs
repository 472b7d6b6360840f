//! Accepting connections, sessions and links, and deciding what each link is for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SessionAcceptor,
};
use fe2o3_amqp::types::performatives::Attach;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::address::{self, Node};
use crate::conn::{filler_properties, Conn, Shared};
use crate::rejection::Rejection;
use crate::sasl::Sasl;

/// Counts a live connection for as long as it is held.
struct Live(Arc<Shared>);

impl Live {
    fn new(shared: Arc<Shared>) -> Self {
        shared.connections.send_modify(|n| *n += 1);
        Self(shared)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.connections.send_modify(|n| *n -= 1);
    }
}

/// What a listener's connections speak under AMQP.
#[derive(Clone)]
pub(crate) struct Layers {
    /// TLS from the first byte, as on the service's port 5671 (and 443).
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// A WebSocket (over TLS if `tls`), as on the service's port 443.
    pub(crate) web_socket: bool,
}

/// Accepts connections on `listener` until `stop`, each speaking AMQP over `layers`.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    layers: Layers,
) {
    let mut stop_wait = stop.clone();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop_wait.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let live = Live::new(shared.clone());
                let shared = shared.clone();
                let stop = stop.clone();
                let layers = layers.clone();
                connections.spawn(async move {
                    if let Err(e) = connection(tcp, shared, stop, layers).await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    drop(live);
                });
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                // Out of file descriptors and the like: let the system recover a little.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    // Each connection sees the stop signal and closes; a peer that does not answer
    // its close gets a few seconds, then the connection is simply dropped.
    let drained = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a client may take over a TLS or WebSocket handshake.
const HANDSHAKE_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn connection(
    tcp: TcpStream,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    layers: Layers,
) -> Result<(), BoxError> {
    let _ = tcp.set_nodelay(true);
    let std_tcp = tcp.into_std()?;
    // A handle on the socket itself, for dropping the connection (a fault, a stop)
    // whatever stream sits on top of it.
    let socket = std_tcp.try_clone()?;
    let tcp = TcpStream::from_std(std_tcp)?;
    match layers.tls {
        None => over(tcp, layers.web_socket, socket, shared, stop).await,
        Some(tls) => {
            let stream = tokio::time::timeout(HANDSHAKE_LIMIT, tls.accept(tcp)).await??;
            over(stream, layers.web_socket, socket, shared, stop).await
        }
    }
}

/// AMQP over `stream`, or over a WebSocket on it.
async fn over<S>(
    stream: S,
    web_socket: bool,
    socket: std::net::TcpStream,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Result<(), BoxError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug + 'static,
{
    let max = shared.max_message_size;
    if web_socket {
        let stream =
            tokio::time::timeout(HANDSHAKE_LIMIT, crate::web_socket::accept(stream)).await??;
        amqp(
            crate::wire::WireFixes::new(stream, max),
            socket,
            shared,
            stop,
        )
        .await
    } else {
        amqp(
            crate::wire::WireFixes::new(stream, max),
            socket,
            shared,
            stop,
        )
        .await
    }
}

/// The AMQP connection over `stream`.
async fn amqp<S>(
    tcp: crate::wire::WireFixes<S>,
    socket: std::net::TcpStream,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BoxError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug + 'static,
{
    let plain_ok = Arc::new(AtomicBool::new(false));
    let acceptor = ConnectionAcceptor::builder()
        .container_id("eventhubs-emulator")
        .max_frame_size(65536u32)
        .channel_max(4095u16)
        .idle_time_out(120_000u32)
        .properties(filler_properties())
        .sasl_acceptor(Sasl {
            key_name: shared.key_name.clone(),
            key: shared.key.clone(),
            plain_ok: plain_ok.clone(),
        })
        .build();
    let open = tokio::time::timeout(std::time::Duration::from_secs(30), acceptor.accept(tcp));
    let mut handle = tokio::select! {
        r = open => r??,
        _ = stop.wait_for(|s| *s) => return Ok(()),
    };
    let conn = Arc::new(Conn::new(
        shared,
        plain_ok.load(Ordering::SeqCst),
        socket,
        stop.clone(),
    ));
    let session_acceptor = SessionAcceptor::builder()
        .handle_max(4095u32)
        .properties(filler_properties())
        .build();
    loop {
        let incoming = tokio::select! {
            s = handle.next_incoming_session() => s,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(incoming) = incoming else { break };
        match session_acceptor
            .accept_incoming_session(incoming, &mut handle)
            .await
        {
            Ok(session) => {
                let id = conn.next_session_id();
                tokio::spawn(run_session(session, id, conn.clone()));
            }
            Err(e) => {
                tracing::debug!("session refused: {e}");
                break;
            }
        }
    }
    if !conn.is_dropped() {
        let _ = handle.close().await;
    }
    Ok(())
}

fn target_address(attach: &Attach) -> Option<String> {
    match attach.target.as_deref()? {
        fe2o3_amqp::types::messaging::TargetArchetype::Target(t) => t.address.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn source_address(attach: &Attach) -> Option<String> {
    attach.source.as_ref()?.address.clone()
}

/// What an incoming attach asks for, once checked.
pub(crate) enum Plan {
    /// Client sends requests to `$cbs`/`$management`.
    Requests(Node),
    /// Client receives replies from `$cbs`/`$management`.
    Replies(Node),
    Ingest(crate::ingest::IngestPlan),
    Consume(crate::consume::ConsumePlan),
    Refuse(Rejection),
}

fn not_found(path: &str) -> Rejection {
    Rejection::new(
        "amqp:not-found",
        format!("The messaging entity 'emulator:{path}' could not be found."),
    )
}

fn bad_partition() -> Rejection {
    Rejection::new(
        "com.microsoft:argument-out-of-range",
        "The specified partition is invalid for an EventHub partition sender or receiver.",
    )
}

fn plan(attach: &Attach, conn: &Conn) -> Plan {
    use fe2o3_amqp::types::definitions::Role;
    let store = &conn.shared.store;
    match attach.role {
        // The client sends: we receive.
        Role::Sender => {
            let addr = target_address(attach).unwrap_or_default();
            match address::parse(&addr) {
                n @ (Node::Cbs | Node::Management) => Plan::Requests(n),
                Node::Gateway { hub } | Node::Partition { hub, .. }
                    if store.hub(&hub).is_none() =>
                {
                    Plan::Refuse(not_found(&format!("eventhub:{hub}")))
                }
                Node::Partition { hub, partition }
                    if store
                        .hub(&hub)
                        .is_some_and(|h| h.partition(&partition).is_none()) =>
                {
                    Plan::Refuse(bad_partition())
                }
                _ if !conn.authorized() => Plan::Refuse(conn.unauthorized()),
                Node::Gateway { hub } => crate::ingest::plan(attach, conn, hub, None)
                    .map(Plan::Ingest)
                    .unwrap_or_else(Plan::Refuse),
                Node::Partition { hub, partition } => {
                    crate::ingest::plan(attach, conn, hub, Some(partition))
                        .map(Plan::Ingest)
                        .unwrap_or_else(Plan::Refuse)
                }
                Node::Consumer { .. } | Node::Unknown(_) => Plan::Refuse(not_found(&addr)),
            }
        }
        // The client receives: we send.
        Role::Receiver => {
            let addr = source_address(attach).unwrap_or_default();
            match address::parse(&addr) {
                n @ (Node::Cbs | Node::Management) => Plan::Replies(n),
                Node::Consumer {
                    hub,
                    consumer_group,
                    partition,
                } => match store.hub(&hub) {
                    None => Plan::Refuse(not_found(&format!("eventhub:{hub}"))),
                    Some(h) if !h.has_consumer_group(&consumer_group) => {
                        Plan::Refuse(not_found(&format!("eventhub:{hub}~0|{consumer_group}")))
                    }
                    Some(h) if h.partition(&partition).is_none() => Plan::Refuse(bad_partition()),
                    Some(_) if !conn.authorized() => Plan::Refuse(conn.unauthorized()),
                    Some(h) => crate::consume::plan(attach, h.clone(), &consumer_group, &partition)
                        .map(Plan::Consume)
                        .unwrap_or_else(Plan::Refuse),
                },
                _ => Plan::Refuse(not_found(&addr)),
            }
        }
    }
}

async fn run_session(mut session: ListenerSessionHandle, session_id: u64, conn: Arc<Conn>) {
    let mut stop = conn.stop.clone();
    loop {
        let attach = tokio::select! {
            a = session.next_incoming_attach() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(attach) = attach else { break };
        let link_name = attach.name.clone();
        let result = match plan(&attach, &conn) {
            Plan::Requests(node) => {
                let acceptor = crate::control::request_acceptor();
                match acceptor.accept_incoming_attach(attach, &mut session).await {
                    Ok(LinkEndpoint::Receiver(r)) => {
                        tokio::spawn(crate::control::serve_requests(
                            r,
                            node,
                            session_id,
                            conn.clone(),
                        ));
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Plan::Replies(node) => {
                let target = target_address(&attach);
                let acceptor = crate::control::reply_acceptor();
                match acceptor.accept_incoming_attach(attach, &mut session).await {
                    Ok(LinkEndpoint::Sender(s)) => {
                        conn.replies
                            .add(node, session_id, link_name.clone(), target, s);
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Plan::Ingest(p) => {
                if let Some(after) = p.attach_delay(&conn.shared) {
                    conn.shared.held_attaches.send_modify(|n| *n += 1);
                    // Holds up this session's other attaches too: clients give each
                    // partition link a session of its own.
                    tokio::time::sleep(after).await;
                }
                let acceptor = p.acceptor(&conn.shared);
                let attach = p.prepare(attach);
                match acceptor.accept_incoming_attach(attach, &mut session).await {
                    Ok(LinkEndpoint::Receiver(r)) => {
                        tokio::spawn(crate::ingest::run(r, p, conn.clone()));
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Plan::Consume(p) => {
                let acceptor = crate::consume::acceptor();
                match acceptor.accept_incoming_attach(attach, &mut session).await {
                    Ok(LinkEndpoint::Sender(s)) => {
                        tokio::spawn(crate::consume::run(s, p, conn.clone()));
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Plan::Refuse(why) => {
                tracing::debug!(link = %link_name, condition = %why.condition, "refusing link");
                let acceptor = LinkAcceptor::builder()
                    .properties(filler_properties())
                    .max_message_size(conn.shared.max_message_size)
                    .build();
                // The close waits for the peer's detach: it runs on its own so that a
                // silent peer cannot hold up the session's other attaches.
                match acceptor.accept_incoming_attach(attach, &mut session).await {
                    Ok(LinkEndpoint::Sender(s)) => {
                        tokio::spawn(async move { s.close_with_error(why.to_error()).await });
                        Ok(())
                    }
                    Ok(LinkEndpoint::Receiver(r)) => {
                        tokio::spawn(async move { r.close_with_error(why.to_error()).await });
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(link = %link_name, "attach failed: {e}");
        }
    }
    conn.replies.remove_session(session_id);
    let _ = session.end().await;
}
