//! Where `$cbs` and `$management` replies go: the server-side sender links whose
//! source is one of those nodes, found by the request's reply-to address.

use std::sync::Mutex;

use fe2o3_amqp::link::Sender;
use fe2o3_amqp::types::messaging::{Body, Message};
use serde_amqp::Value;
use tokio::sync::mpsc;

use crate::address::Node;

pub(crate) type Msg = Message<Body<Value>>;

/// Where replies go: server-side sender links whose source is `$cbs` or `$management`.
#[derive(Debug, Default)]
pub(crate) struct ReplyRoutes {
    routes: Mutex<Vec<Route>>,
    /// Signalled when a reply link is added.
    added: tokio::sync::Notify,
}

#[derive(Debug)]
struct Route {
    node: Node,
    session: u64,
    name: String,
    target: Option<String>,
    tx: mpsc::Sender<Msg>,
}

impl ReplyRoutes {
    /// Registers a reply link and starts the task that owns it.
    pub(crate) fn add(
        &self,
        node: Node,
        session: u64,
        name: String,
        target: Option<String>,
        mut sender: Sender,
    ) {
        let (tx, mut rx) = mpsc::channel::<Msg>(64);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => {
                            if sender.send_batchable(m).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                    _ = sender.on_detach() => break,
                }
            }
            let _ = sender.close().await;
        });
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        // A re-attached link name replaces the old route (the Rust SDK re-uses names).
        routes.retain(|r| !(r.tx.is_closed() || (r.name == name && r.session == session)));
        routes.push(Route {
            node,
            session,
            name,
            target,
            tx,
        });
        drop(routes);
        self.added.notify_waiters();
    }

    pub(crate) fn remove_session(&self, session: u64) {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| r.session != session);
    }

    /// Routing rule: reply-to matches a link name or target address;
    /// otherwise the link whose source is the node. A link on the request's own
    /// session comes first; with `any_session`, another session's link will do.
    ///
    /// Clients re-use reply addresses: the Rust SDK opens a session with a `$cbs` link
    /// pair named and addressed alike for every token it puts. An earlier session's
    /// reply link may still be open when the next request arrives, before its own
    /// reply link is registered; a reply sent there is lost, and the client waits for
    /// it for good.
    fn find(
        &self,
        reply_to: Option<&str>,
        node: &Node,
        session: u64,
        any_session: bool,
    ) -> Option<mpsc::Sender<Msg>> {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let open = || {
            routes
                .iter()
                .rev()
                .filter(|r| !r.tx.is_closed() && (any_session || r.session == session))
        };
        reply_to
            .and_then(|to| open().find(|r| r.name == to || r.target.as_deref() == Some(to)))
            .or_else(|| open().find(|r| &r.node == node))
            .map(|r| r.tx.clone())
    }

    /// [`find`](Self::find) on the request's session, waiting a little for the reply
    /// link: a client may send its first request as soon as its reply link's attach
    /// is answered, and the request can be read before the link is registered here.
    /// Only when none comes is a link of another session used.
    pub(crate) async fn find_or_wait(
        &self,
        reply_to: Option<&str>,
        node: &Node,
        session: u64,
    ) -> Option<mpsc::Sender<Msg>> {
        let deadline = tokio::time::Instant::now() + REPLY_LINK_WAIT;
        loop {
            let added = self.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if let Some(tx) = self.find(reply_to, node, session, false) {
                return Some(tx);
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return self.find(reply_to, node, session, true);
            }
        }
    }
}

/// How long a request waits for its reply link to be registered.
const REPLY_LINK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
