//! `$cbs` (put-token) and `$management` (READ) request/response nodes.

use std::sync::Mutex;

use fe2o3_amqp::acceptor::{LinkAcceptor, SupportedReceiverSettleModes};
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::types::{
    definitions::ReceiverSettleMode,
    messaging::{AmqpValue, ApplicationProperties, Body, Message, Properties},
    primitives::{Array, OrderedMap, SimpleValue, Symbol, Timestamp},
};
use serde_amqp::Value;
use tokio::sync::mpsc;

use crate::address::Node;
use crate::server::Acceptor;
use crate::server::{filler_properties, Conn};
use std::sync::Arc;

type Msg = Message<Body<Value>>;

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
    async fn find_or_wait(
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

const REQUEST_MAX_BYTES: u64 = 256 * 1024;

/// Links on which clients send requests. Requests may arrive pre-settled (.NET).
pub(crate) fn request_acceptor() -> Acceptor {
    LinkAcceptor::builder()
        .properties(filler_properties())
        // Tokens are small; this bounds what an unauthenticated client can make us hold.
        .max_message_size(REQUEST_MAX_BYTES)
        .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
        .fallback_receiver_settle_mode(ReceiverSettleMode::First)
        .build()
}

/// Links on which clients receive replies.
pub(crate) fn reply_acceptor() -> Acceptor {
    LinkAcceptor::builder()
        .properties(filler_properties())
        .build()
}

pub(crate) async fn serve_requests(
    mut receiver: Receiver,
    node: Node,
    session: u64,
    conn: Arc<Conn>,
) {
    let mut stop = conn.stop.clone();
    loop {
        let delivery = tokio::select! {
            d = receiver.recv::<Body<Value>>() => d,
            _ = stop.wait_for(|s| *s) => break,
        };
        let delivery = match delivery {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!("request link ended: {e}");
                break;
            }
        };
        let _ = receiver.accept(&delivery).await;
        let request = delivery.into_message();
        let reply_to = request.properties.as_ref().and_then(|p| p.reply_to.clone());
        let response = match node {
            Node::Cbs => put_token(&request, &conn),
            _ => management(&request, &conn),
        };
        let response = with_correlation(response, &request);
        match conn
            .replies
            .find_or_wait(reply_to.as_deref(), &node, session)
            .await
        {
            Some(tx) => {
                let _ = tx.send(response).await;
            }
            None => tracing::debug!(?reply_to, "no reply link for a {node:?} request"),
        }
    }
    let _ = receiver.close().await;
}

fn app_prop<'a>(m: &'a Msg, key: &str) -> Option<&'a SimpleValue> {
    m.application_properties.as_ref()?.0.get(key)
}

fn app_str<'a>(m: &'a Msg, key: &str) -> Option<&'a str> {
    match app_prop(m, key)? {
        SimpleValue::String(s) => Some(s),
        SimpleValue::Symbol(s) => Some(s.as_str()),
        _ => None,
    }
}

fn status(code: i32, description: &str, condition: Option<&str>, body: Value) -> Msg {
    let mut props = ApplicationProperties::default();
    props.0.insert("status-code".into(), SimpleValue::Int(code));
    props.0.insert(
        "status-description".into(),
        SimpleValue::String(description.into()),
    );
    if let Some(c) = condition {
        props.0.insert(
            "error-condition".into(),
            SimpleValue::Symbol(Symbol::from(c)),
        );
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: None,
        application_properties: Some(props),
        body: Body::Value(AmqpValue(body)),
        footer: None,
    }
}

fn with_correlation(mut response: Msg, request: &Msg) -> Msg {
    let req = request.properties.as_ref();
    response.properties = Some(Properties {
        // The same AMQP type as the request's message-id: JS and .NET compare them.
        correlation_id: req.and_then(|p| p.message_id.clone()),
        to: req.and_then(|p| p.reply_to.clone()),
        ..Default::default()
    });
    response
}

fn unauthorized(why: impl std::fmt::Display) -> Msg {
    status(
        401,
        &format!("Unauthorized: {why}"),
        Some("amqp:unauthorized-access"),
        Value::Null,
    )
}

/// Checks a SAS or (if allowed) JWT token; returns its expiry in unix seconds.
fn check_token(conn: &Conn, token: &str, expiration: Option<i64>) -> Result<u64, String> {
    let jwt = !token.starts_with("SharedAccessSignature ");
    let shared = &conn.shared;
    let now = shared.now_secs();
    if jwt {
        if !shared.accept_jwt {
            return Err("this emulator does not accept JWT tokens".into());
        }
        let expires = expiration
            .map(|ms| (ms / 1000).max(0) as u64)
            .unwrap_or(now + 3600);
        return if expires > now {
            Ok(expires)
        } else {
            Err("the token has expired".into())
        };
    }
    crate::sas::verify(token, &shared.key_name, &shared.key, now)
        .map(|t| t.expires_at)
        .map_err(|e| e.to_string())
}

fn put_token(request: &Msg, conn: &Conn) -> Msg {
    if app_str(request, "operation") != Some("put-token") {
        return status(
            400,
            "Unsupported operation on $cbs; only put-token is supported.",
            Some("com.microsoft:argument-error"),
            Value::Null,
        );
    }
    let kind = app_str(request, "type").unwrap_or_default();
    if kind != "jwt" && kind != "servicebus.windows.net:sastoken" {
        return status(
            400,
            &format!("Unsupported token type '{kind}'."),
            Some("com.microsoft:argument-error"),
            Value::Null,
        );
    }
    let token = match &request.body {
        Body::Value(AmqpValue(Value::String(s))) => s.as_str(),
        _ => return unauthorized("the put-token body must be the token string"),
    };
    // The real service fails put-token for an entity that does not exist; clients
    // (JS especially) rely on that instead of on a later link detach.
    let audience = app_str(request, "name").unwrap_or_default();
    if let Some(hub) = audience_hub(audience) {
        if conn.shared.store.hub(hub).is_none() {
            return status(
                404,
                &format!("The messaging entity '{audience}' could not be found."),
                Some("amqp:not-found"),
                Value::Null,
            );
        }
    }
    let expiration = match app_prop(request, "expiration") {
        Some(SimpleValue::Timestamp(t)) => Some(t.milliseconds()),
        _ => None,
    };
    // The token's form decides, not `type`: azure_core_amqp sends SAS tokens as "jwt".
    match check_token(conn, token, expiration) {
        Ok(expires_at) => {
            conn.grant_until(expires_at);
            status(202, "Accepted", None, Value::Null)
        }
        Err(why) => unauthorized(why),
    }
}

/// The hub an audience URI names (`sb://host/hub/...`, `amqps://host/hub`), if any.
fn audience_hub(audience: &str) -> Option<&str> {
    let path = match audience.find("://") {
        Some(i) => audience[i + 3..]
            .split_once('/')
            .map(|(_, p)| p)
            .unwrap_or(""),
        None => audience,
    };
    path.split('/').find(|s| !s.is_empty())
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

/// The service's timestamp for "never" (0001-01-01), which SDKs map to "not set".
const NO_TIME_MS: i64 = -62_135_596_800_000;

fn management(request: &Msg, conn: &Conn) -> Msg {
    if app_str(request, "operation") != Some("READ") {
        return status(
            501,
            "Only the READ operation is supported by this emulator.",
            Some("amqp:not-implemented"),
            Value::Null,
        );
    }
    match app_str(request, "security_token") {
        Some(token) => {
            if let Err(why) = check_token(conn, token, None) {
                return unauthorized(why);
            }
        }
        None if conn.authorized() => {}
        None => return unauthorized("the request has no security_token"),
    }
    let hub_name = app_str(request, "name").unwrap_or_default();
    let Some(hub) = conn.shared.store.hub(hub_name) else {
        return status(
            404,
            &format!("The messaging entity 'emulator:eventhub:{hub_name}' could not be found."),
            Some("amqp:not-found"),
            Value::Null,
        );
    };
    let mut map = OrderedMap::new();
    match app_str(request, "type") {
        Some("com.microsoft:eventhub") => {
            let ids: Vec<Value> = hub.partition_ids().iter().map(|id| s(id)).collect();
            map.insert(s("name"), s(&hub.name));
            map.insert(s("type"), s("com.microsoft:eventhub"));
            map.insert(
                s("created_at"),
                Value::Timestamp(Timestamp::from_milliseconds(hub.created_at_ms)),
            );
            map.insert(s("partition_count"), Value::Int(ids.len() as i32));
            map.insert(s("partition_ids"), Value::Array(Array::from(ids)));
        }
        Some("com.microsoft:partition") => {
            let pid = app_str(request, "partition").unwrap_or_default();
            let Some(partition) = hub.partition(pid) else {
                return status(
                    400,
                    "The specified partition is invalid for an EventHub partition sender or receiver.",
                    Some("com.microsoft:argument-out-of-range"),
                    Value::Null,
                );
            };
            let info = partition.info();
            map.insert(s("name"), s(&hub.name));
            map.insert(s("type"), s("com.microsoft:partition"));
            map.insert(s("partition"), s(pid));
            map.insert(
                s("begin_sequence_number"),
                Value::Long(info.begin_sequence_number),
            );
            map.insert(
                s("last_enqueued_sequence_number"),
                Value::Long(info.last_sequence_number),
            );
            map.insert(s("begin_sequence_number_epoch"), Value::Long(0));
            map.insert(s("last_enqueued_sequence_number_epoch"), Value::Long(0));
            map.insert(s("last_enqueued_offset"), s(&info.last_offset.to_string()));
            map.insert(
                s("last_enqueued_time_utc"),
                Value::Timestamp(Timestamp::from_milliseconds(
                    info.last_enqueued_time_ms.unwrap_or(NO_TIME_MS),
                )),
            );
            map.insert(s("is_partition_empty"), Value::Bool(info.is_empty));
        }
        other => {
            return status(
                400,
                &format!("Unsupported management type {other:?}."),
                Some("com.microsoft:argument-error"),
                Value::Null,
            )
        }
    }
    status(200, "OK", None, Value::Map(map))
}
