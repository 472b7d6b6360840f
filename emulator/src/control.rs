//! `$cbs` (put-token) and `$management` (READ) request/response nodes.

use fe2o3_amqp::acceptor::{LinkAcceptor, SupportedReceiverSettleModes};
use fe2o3_amqp::link::Receiver;
use fe2o3_amqp::types::{
    definitions::ReceiverSettleMode,
    messaging::{AmqpValue, ApplicationProperties, Body, Message, Properties},
    primitives::{Array, OrderedMap, SimpleValue, Symbol, Timestamp},
};
use serde_amqp::Value;

use eventhubs_protocol::{
    ARGUMENT_ERROR, ARGUMENT_OUT_OF_RANGE, EVENTHUB_ENTITY, NOT_FOUND, PARTITION_ENTITY,
    UNAUTHORIZED_ACCESS,
};

use crate::address::Node;
use crate::conn::{filler_properties, Acceptor, Conn};
use crate::replies::Msg;
use std::sync::Arc;

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
        Some(UNAUTHORIZED_ACCESS),
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
    eventhubs_protocol::sas::verify(token, &shared.key_name, &shared.key, now)
        .map(|t| t.expires_at)
        .map_err(|e| e.to_string())
}

fn put_token(request: &Msg, conn: &Conn) -> Msg {
    if app_str(request, "operation") != Some("put-token") {
        return status(
            400,
            "Unsupported operation on $cbs; only put-token is supported.",
            Some(ARGUMENT_ERROR),
            Value::Null,
        );
    }
    let kind = app_str(request, "type").unwrap_or_default();
    if kind != "jwt" && kind != "servicebus.windows.net:sastoken" {
        return status(
            400,
            &format!("Unsupported token type '{kind}'."),
            Some(ARGUMENT_ERROR),
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
                Some(NOT_FOUND),
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
            Some(NOT_FOUND),
            Value::Null,
        );
    };
    let mut map = OrderedMap::new();
    match app_str(request, "type") {
        Some(EVENTHUB_ENTITY) => {
            let ids: Vec<Value> = hub.partition_ids().iter().map(|id| s(id)).collect();
            map.insert(s("name"), s(&hub.name));
            map.insert(s("type"), s(EVENTHUB_ENTITY));
            map.insert(
                s("created_at"),
                Value::Timestamp(Timestamp::from_milliseconds(hub.created_at_ms)),
            );
            map.insert(s("partition_count"), Value::Int(ids.len() as i32));
            map.insert(s("partition_ids"), Value::Array(Array::from(ids)));
        }
        Some(PARTITION_ENTITY) => {
            let pid = app_str(request, "partition").unwrap_or_default();
            let Some(partition) = hub.partition(pid) else {
                return status(
                    400,
                    "The specified partition is invalid for an EventHub partition sender or receiver.",
                    Some(ARGUMENT_OUT_OF_RANGE),
                    Value::Null,
                );
            };
            let info = partition.info();
            map.insert(s("name"), s(&hub.name));
            map.insert(s("type"), s(PARTITION_ENTITY));
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
                Some(ARGUMENT_ERROR),
                Value::Null,
            )
        }
    }
    status(200, "OK", None, Value::Map(map))
}
